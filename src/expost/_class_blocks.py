"""The samples of one prediction set grouped by true class, shared by the metric engine's paths.

This core module owns what both ex post paths of the metric engine
(:mod:`expost._batched_metrics`'s general :class:`~expost._batched_metrics._UtilityChunk`
and :mod:`expost._emphasis_metrics`'s fast path) score over: the per-class bounds of
:math:`v^\top q_i` (:class:`_ClassStats`), the blocks of rows of one class
(:func:`_row_blocks`), the threads that share the utilities (:func:`_run_jobs`) and the
type of the sums over samples (``Totals``). numpy only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import NDArray

Totals = dict[str, NDArray[np.float64]]


@dataclass(frozen=True)
class _ClassStats:
    r"""The samples sorted by true class, and per class what bounds :math:`v^\top q_i`.

    From the smallest and largest :math:`q_{ic}` of every column (``qmin``, ``qmax``)
    and the row sums of q's positive and negative parts (q may be off the simplex by
    the validation tolerance, entries down to -atol), for :math:`v \ge 0`:
    :math:`\max(v^\top q_{min}, \min(v) \sum q^+ + \max(v) \sum q^-) \le v^\top q \le
    \min(v^\top q_{max}, \max(v) \sum q^+)`.
    """

    qs: NDArray[np.float64]
    starts: NDArray[np.intp]
    classes: list[int]
    pos_lo: NDArray[np.float64]
    pos_hi: NDArray[np.float64]
    neg_lo: NDArray[np.float64]
    qmin: NDArray[np.float64]
    qmax: NDArray[np.float64]

    @classmethod
    def of(cls, qs: NDArray[np.float64], starts: NDArray[np.intp]) -> _ClassStats:
        m = starts.size - 1
        pos, neg = np.maximum(qs, 0.0).sum(axis=1), np.minimum(qs, 0.0).sum(axis=1)
        classes = [int(c) for c in np.flatnonzero(np.diff(starts))]  # the classes present
        p_lo, p_hi, n_lo = (np.zeros(m) for _ in range(3))
        qmin, qmax = np.zeros((m, qs.shape[1])), np.zeros((m, qs.shape[1]))
        for c in classes:
            rows = slice(starts[c], starts[c + 1])
            p_lo[c], p_hi[c], n_lo[c] = pos[rows].min(), pos[rows].max(), neg[rows].min()
            qmin[c], qmax[c] = qs[rows].min(axis=0), qs[rows].max(axis=0)
        return cls(qs, starts, classes, p_lo, p_hi, n_lo, qmin, qmax)

    def all_bounds(self, mat: NDArray[np.float64]
                   ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Bounds of mat @ q_i for the samples of every class: (..., n_classes) each."""
        bottom, top = mat.min(axis=-1)[..., None], mat.max(axis=-1)[..., None]
        lo = np.maximum(mat @ self.qmin.T, bottom * self.pos_lo + top * self.neg_lo)
        return lo, np.minimum(mat @ self.qmax.T, top * self.pos_hi)

    def bounds(self, mat: NDArray[np.float64]
               ) -> Callable[[int], tuple[NDArray[np.float64], NDArray[np.float64]]]:
        """Bounds of mat @ q_i (mat's last axis over classes) for the samples of class c.

        Computed for every class at once (two products, not two per class), then looked up.
        """
        lo, hi = self.all_bounds(mat)

        def of_class(c: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
            return lo[..., c], hi[..., c]

        return of_class


def _run_jobs(score: Callable[[Any], None], jobs: list[Any], n_jobs: int) -> None:
    """``score`` of every job, in up to ``n_jobs`` threads (each job writes its own slices)."""
    if n_jobs == 1 or len(jobs) == 1:
        for job in jobs:
            score(job)
    else:  # numpy's loops and BLAS release the GIL: the threads run side by side
        from concurrent.futures import ThreadPoolExecutor  # not at import (start-up time)

        with ThreadPoolExecutor(max_workers=min(n_jobs, len(jobs))) as pool:
            list(pool.map(score, jobs))


def _row_blocks(starts: NDArray[np.intp], c: int, rows_max: int) -> list[tuple[int, int]]:
    """The samples of class c in blocks of at most ``rows_max`` rows, of even sizes."""
    s0, s1 = int(starts[c]), int(starts[c + 1])
    n_blocks = -(-(s1 - s0) // rows_max)
    if n_blocks == 1:
        return [(s0, s1)]
    edges = np.linspace(s0, s1, n_blocks + 1).round().astype(np.intp)
    return [(int(r0), int(r1)) for r0, r1 in pairwise(edges)]
