r"""The metric engine's fast path: class weights with one emphasised class each.

This core module owns the ex post scoring of emphasis-style class weights
(:math:`w_{ka} = b_k` but at one class :math:`e_k`), in O(n) per utility: recognising
the form (:func:`_emphasis_form`), the largest and second largest probabilities below
and above each sample's class (:func:`_top_two`) and the sums per utility
(:class:`_EmphasisScores`), equal to the general path's
(:class:`expost._batched_metrics._UtilityChunk`) decisions exactly and losses to rounding.
:func:`expost._batched_metrics.batched_metrics` chooses it. numpy only.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ._class_blocks import Totals, _ClassStats, _row_blocks, _run_jobs
from ._log_ratios import _LogRatios, _ratio_factors_by_column

_FAST_BLOCK = 1 << 16  # float64 values of one (samples x utilities) array of the fast path
_FAST_UTILITIES = 512  # utilities per block of the fast path


def _emphasis_form(w: NDArray[np.float64]
                   ) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]] | None:
    """Class weights with one emphasised class each: (e, t, b), w_k[e_k] = t_k, else b_k.

    None unless every row of ``w`` has all its weights but at most one equal. A row of
    equal weights gets e = 0.

    >>> _emphasis_form(np.array([[1.0, 5.0, 1.0], [2.0, 2.0, 2.0]]))
    (array([1, 0]), array([5., 2.]), array([1., 2.]))
    >>> _emphasis_form(np.array([[1.0, 5.0, 3.0]])) is None
    True
    """
    m = w.shape[1]
    b = w[:, -1] if m < 3 else np.where(w[:, 0] == w[:, 1], w[:, 0], w[:, 2])
    odd = w != b[:, None]
    if np.any(odd.sum(axis=1) > 1):
        return None
    e = np.argmax(odd, axis=1)
    return e, w[np.arange(w.shape[0]), e], b


def _top_two(qs: NDArray[np.float64], stats: _ClassStats, side: str
             ) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.float64]]:
    """Per sample of class c, the largest q_ia over the actions a below c (or above c),
    the lowest action that has it, and the second largest (-inf where none)."""
    n, m = qs.shape
    top, second, arg = np.full(n, -np.inf), np.full(n, -np.inf), np.full(n, -1, dtype=np.intp)
    for c in stats.classes:
        rows = slice(stats.starts[c], stats.starts[c + 1])
        a0, a1 = (0, c) if side == "below" else (c + 1, m)
        if a1 <= a0:
            continue
        block = qs[rows, a0:a1]
        at = np.argmax(block, axis=1)
        each = np.arange(block.shape[0])
        top[rows], arg[rows] = block[each, at], at + a0
        if a1 - a0 > 1:
            rest = block.copy()
            rest[each, at] = -np.inf
            second[rows] = rest.max(axis=1)
    return top, arg, second


class _EmphasisScores:
    r"""The ex post sums of class weights with one emphasised class each, O(n) per utility.

    For :math:`w_{ka} = b_k` (:math:`a \ne e_k`) and :math:`w_{k e_k} = t_k` the
    decision (Eq 5) is the true class c when :math:`w_c q_{ic}` beats the actions below
    c strictly and those above weakly (ties to the lowest action); the largest of
    :math:`\mathrm{fl}(b q_{ia})` over a set of actions is :math:`\mathrm{fl}(b \max_a
    q_{ia})` (rounding is monotone), so per sample the largest and second largest
    :math:`q_{ia}` below and above its class, computed once (:func:`_top_two`), give
    the largest competitor without e, and :math:`t q_{ie}` the one at e: the same
    products the general path compares, hence the same decisions, exactly. The loss
    takes the general path's route: :math:`\log p_c` from running products.
    """

    def __init__(self, w: NDArray[np.float64], e: NDArray[np.intp], t: NDArray[np.float64],
                 b: NDArray[np.float64], stats: _ClassStats) -> None:
        self.w, self.e, self.t, self.b, self.stats = w, e, t, b, stats
        self.below, self.above = _top_two(stats.qs, stats, "below"), _top_two(stats.qs, stats,
                                                                                "above")

    def add_to(self, totals: Totals, n_jobs: int) -> None:
        """The sums of every utility, block by block of utilities sharing e."""
        jobs = []
        for e in np.unique(self.e):
            idx = np.flatnonzero(self.e == e)
            jobs += [(int(e), idx[j:j + _FAST_UTILITIES])
                     for j in range(0, idx.size, _FAST_UTILITIES)]
        _run_jobs(lambda job: self._score(job[0], job[1], totals), jobs, n_jobs)

    def _competitors(self, e: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per sample, the largest q_ia without e below its class and above it."""
        (top_lo, arg_lo, sec_lo), (top_hi, arg_hi, sec_hi) = self.below, self.above
        return (np.where(arg_lo == e, sec_lo, top_lo), np.where(arg_hi == e, sec_hi, top_hi))

    @staticmethod
    def _denominators(qb: NDArray[np.float64], e: int, b: NDArray[np.float64],
                      at_e: NDArray[np.float64]) -> NDArray[np.float64]:
        r""":math:`\langle w_k, q_i\rangle = b_k \sum_{a \ne e} q_{ia} + t_k q_{ie}`, (samples, kb).

        ``at_e`` holds :math:`t_k q_{ie}`. An outer product and a sum instead of the
        (samples x m) @ (m x kb) product: the sum without e is taken over the row (not
        as a difference with the row sum, which would cancel where q_ie is near 1), so
        it equals the product to rounding.
        """
        rest = qb[:, :e].sum(axis=1) + qb[:, e + 1:].sum(axis=1)
        d = np.multiply.outer(rest, b)
        d += at_e
        return d

    def _score(self, e: int, idx: NDArray[np.intp], totals: Totals) -> None:
        stats, kb = self.stats, idx.size
        b, t = self.b[idx], self.t[idx]
        cs = np.ascontiguousarray(self.w[idx].T)  # (m, kb)
        dlo, dhi = stats.all_bounds(self.w[idx])  # (kb, m): of the denominators, > 0 by Eq 1
        diag = np.arange(cs.shape[0])
        factors = _ratio_factors_by_column(cs.T * stats.qmin[diag, diag],
                                           cs.T * stats.qmax[diag, diag], dlo, dhi)
        low_q, high_q = self._competitors(e)
        loss, utility, log_loss = (np.zeros(kb) for _ in range(3))
        rows_max = max(1, _FAST_BLOCK // kb)
        for c in stats.classes:
            wc = cs[c]
            acc = _LogRatios(int(factors[c]), (1, kb))
            right = np.zeros(kb, dtype=np.int64)
            for r0, r1 in _row_blocks(stats.starts, c, rows_max):
                qb = stats.qs[r0:r1]
                v = np.multiply.outer(qb[:, c], wc)  # w_c q_ic, as the general path's z[c]
                low = np.multiply.outer(low_q[r0:r1], b)
                high = np.multiply.outer(high_q[r0:r1], b)
                at_e = v if c == e else np.multiply.outer(qb[:, e], t)  # t q_ie
                if c != e:
                    np.maximum(low if e < c else high, at_e, out=low if e < c else high)
                hit = v > low
                hit &= v >= high
                right += np.count_nonzero(hit, axis=0)
                acc.add(v[None], self._denominators(qb, e, b, at_e))
            slog = acc.result()[0]
            utility += wc * right
            loss += wc * slog
            log_loss -= slog
            totals["hits_by_class"][idx, c] = right
        totals["weighted_loss"][idx] = loss
        totals["utility"][idx] = utility
        totals["log_loss"][idx] = log_loss
