r"""The metric engine: many utilities scored at once on one set of predictions.

Given probabilities ``q`` (n x m), true classes and K utilities,
:func:`batched_metrics` returns, for every utility, the metrics the harness
stores (all but the calibration error), vectorised over utilities. The harness
(:func:`expost.experiments.evaluate.interval_metrics`), ``expost evaluate`` and
the ex post frontier (:func:`expost.experiments.frontier`) all score through it,
and so do the alignment gains of Eq 19-20 (:func:`expost.internal_alignment_gain`).
Inputs are assumed valid: the public callers check them.

How it stays fast (1,000 dense 15 x 15 utilities on 20,000 samples in about a
second on one core; ``n_jobs=2`` shares the utilities between two threads):
samples are grouped by true class c, so that :math:`\sum_i \sum_a u(a, c) \log
p_{ia} = \sum_a u(a, c) \sum_i \log p_{ia}`; one matrix product per block of
samples and utilities gives every :math:`(U_k q_i)_a`; decisions are counted per
action with two vectorised passes (no ``argmax`` over a short axis); and the sums
of logarithms over samples are logarithms of ratios of running products
(:class:`expost._log_ratios._LogRatios`). A class-weight stack replaces the
matrix product by :math:`(W q)_a = w_a q_a` and logs only the true class. Memory
stays at a few MiB whatever n and K. The result equals the core's one-utility
functions (:func:`expost.weighted_loss` of :func:`expost.weighted_prediction`,
:func:`expost.decide`) to rounding; the tests check it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from ._log_ratios import _LogRatios, _ratio_factors, _xlogy_sum

#: The metrics :func:`batched_metrics` returns (the harness's metrics but the calibration error).
BATCHED_METRICS: Final[tuple[str, ...]] = (
    "weighted_loss", "classification_utility", "log_loss", "accuracy", "emphasized_recall")

_BLOCK = 1 << 19  # float64 values of one block (actions x samples x utilities): 4 MiB
_BLOCK_COLUMNS = 4096  # actions x utilities per block
_MAX_ROWS = 255  # samples per block: decision counts accumulate in uint8

Totals = dict[str, NDArray[np.float64]]


def batched_metrics(q: NDArray[np.float64], labels: NDArray[np.intp], u: NDArray[np.float64],
                    *, view: str, recall_of: NDArray[np.intp], n_jobs: int = 1
                    ) -> dict[str, NDArray[np.float64]]:
    r"""The metrics of K utilities on one set of predictions (the one metric engine).

    With :math:`(p_i, d_i)` the view's prediction and decision for utility
    :math:`u_k` (``"ex_post"``: :math:`p^{u_k}(q_i)` of Eq 8 and the decision of
    Eq 5; ``"as_is"``: :math:`q_i` and :math:`\arg\max_a q_{ia}`, Eq 9):

    .. math::

        \text{weighted\_loss}_k = -\frac1n \sum_i \sum_a u_k(a, y_i) \log p_{ia}
        \quad\text{(Eq 6)},\qquad
        \text{classification\_utility}_k = \frac1n \sum_i u_k(d_i, y_i),

    the log loss :math:`-\frac1n\sum_i \log p_{i y_i}`, the accuracy, and the recall
    of class ``recall_of[k]`` (NaN when no sample has that class).

    Parameters
    ----------
    q : ndarray of shape (n_samples, n_classes), float64
        Checked probabilities (``"as_is"``: one column per action of ``u``).
    labels : ndarray of intp, shape (n_samples,)
        Checked true classes.
    u : ndarray of shape (K, n_actions, n_classes), or (K, n_classes)
        Checked utilities; a 2-D ``u`` holds class weights (Eq 14: the utility
        ``diag(u[k])``), scored without K square matrices.
    view : {"ex_post", "as_is"}
    recall_of : ndarray of intp, shape (K,)
        The class whose recall is ``emphasized_recall``, per utility.
    n_jobs : int
        Threads for the ``"ex_post"`` view; the results do not depend on it.

    Examples
    --------
    >>> import numpy as np
    >>> q = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])
    >>> u = np.array([np.diag([1.0, 9.0])])
    >>> m = batched_metrics(q, np.array([0, 1, 1]), u, view="ex_post", recall_of=np.array([1]))
    >>> m["classification_utility"], m["emphasized_recall"]
    (array([6.]), array([1.]))
    """
    m = u.shape[-1]
    counts = np.bincount(labels, minlength=m)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    weights = _class_weights(u)
    if view == "as_is":
        totals = _as_is_totals(q, labels, u, weights, order, starts)
    else:
        totals = _ex_post_totals(q[order], u, weights, starts, n_jobs)
    return _means(totals, q.shape[0], counts, recall_of)


def _class_weights(u: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """The (K, m) class weights of a stack of diagonal utilities (Eq 14), else None (no copy of u)."""
    if u.ndim == 2:
        return u
    if u.shape[1] != u.shape[2]:
        return None
    diag = np.einsum("kaa->ka", u)  # a view
    return diag.copy() if np.count_nonzero(u) == np.count_nonzero(diag) else None


def _as_matrices(u: NDArray[np.float64], ks: slice) -> NDArray[np.float64]:
    """Utilities ``ks`` as (kb, A, m) matrices (class weights: one chunk's diagonals)."""
    if u.ndim == 3:
        return u[ks]
    w = u[ks]
    out = np.zeros((w.shape[0], w.shape[1], w.shape[1]))
    np.einsum("kaa->ka", out)[...] = w
    return out


def _means(totals: Totals, n: int, counts: NDArray[np.intp], recall_of: NDArray[np.intp]
           ) -> dict[str, NDArray[np.float64]]:
    """The metrics from the sums over samples: per-class hits give the recall."""
    rows = np.arange(recall_of.size)
    members = counts[recall_of]
    right = totals["hits_by_class"][rows, recall_of]
    return {
        "weighted_loss": (0.0 - totals["weighted_loss"]) / n,  # not -0.0 for a zero loss
        "classification_utility": totals["utility"] / n,
        "log_loss": totals["log_loss"] / n,
        "accuracy": totals["hits_by_class"].sum(axis=1) / n,
        "emphasized_recall": np.where(members > 0, right / np.maximum(members, 1), np.nan),
    }


# ---------------------------------------------------------------- the "as_is" view
def _as_is_totals(q: NDArray[np.float64], labels: NDArray[np.intp], u: NDArray[np.float64],
                  weights: NDArray[np.float64] | None, order: NDArray[np.intp],
                  starts: NDArray[np.intp]) -> Totals:
    r"""Sums over samples for predictions taken as they are (q over the actions of u)."""
    n_k, m = u.shape[0], u.shape[-1]
    n_a = m if weights is not None else u.shape[1]
    n = q.shape[0]
    with np.errstate(divide="ignore"):
        logq = np.log(q)
    conf = np.zeros((n_a, m))  # confusion counts: decision a, class c
    np.add.at(conf, (np.argmax(q, axis=1), labels), 1.0)
    logs = np.zeros((m, n_a))  # sum over the samples of class c of log q_ia
    for c in range(m):
        rows = order[starts[c]:starts[c + 1]]
        if rows.size:
            logs[c] = logq[rows].sum(axis=0)
    hits = np.zeros(m)
    hits[:min(n_a, m)] = np.diagonal(conf)
    if weights is not None:  # class weights: only the diagonal counts
        loss = _xlogy_sum(weights, np.broadcast_to(np.diagonal(logs), weights.shape))
        utility = weights @ hits
    else:  # -sum_c sum_a u(a, c) sum_{i in c} log q_ia
        loss = _xlogy_sum(np.transpose(u, (0, 2, 1)).reshape(n_k, -1),
                          np.broadcast_to(logs.reshape(-1), (n_k, m * n_a)))
        utility = np.einsum("kac,ac->k", u, conf)
    # p over actions: the log loss of a class needs one column per class
    log_loss = -logq[np.arange(n), labels].sum() if n_a == m else np.nan
    return {"weighted_loss": loss, "utility": utility,
            "log_loss": np.full(n_k, log_loss), "hits_by_class": np.broadcast_to(hits, (n_k, m))}


# ---------------------------------------------------------------- the "ex_post" view
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

    def bounds(self, mat: NDArray[np.float64]
               ) -> Callable[[int], tuple[NDArray[np.float64], NDArray[np.float64]]]:
        """Bounds of mat @ q_i (mat's last axis over classes) for the samples of class c."""
        bottom, top = mat.min(axis=-1), mat.max(axis=-1)

        def of_class(c: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
            lo = np.maximum(mat @ self.qmin[c], bottom * self.pos_lo[c] + top * self.neg_lo[c])
            return lo, np.minimum(mat @ self.qmax[c], top * self.pos_hi[c])

        return of_class


def _ex_post_totals(qs: NDArray[np.float64], u: NDArray[np.float64],
                    weights: NDArray[np.float64] | None, starts: NDArray[np.intp],
                    n_jobs: int) -> Totals:
    """Sums over samples of all utilities, chunk by chunk of utilities (one per thread).

    Emphasis-style class weights take the fast path (:class:`_EmphasisScores`), any
    other utilities the general one (:class:`_UtilityChunk`).
    """
    n_k, m = u.shape[0], u.shape[-1]
    n_a = m if weights is not None else u.shape[1]
    stats = _ClassStats.of(qs, starts)
    diagonal = weights is not None
    totals = {"weighted_loss": np.zeros(n_k), "utility": np.zeros(n_k),
              "log_loss": np.zeros(n_k), "hits_by_class": np.zeros((n_k, m))}
    form = None if weights is None else _emphasis_form(weights)
    if weights is not None and form is not None:
        _EmphasisScores(weights, *form, stats).add_to(totals, n_jobs)
        return totals
    # Chunks of utilities of at most _BLOCK_COLUMNS actions in all, an even number of
    # them (two threads share the work evenly); each chunk writes its own slices. The
    # chunks do not depend on n_jobs, so neither do the results, to the last bit.
    n_chunks = -(-n_k * n_a // _BLOCK_COLUMNS)
    kb_max = -(-n_k // min(n_k, n_chunks + n_chunks % 2))
    rows_max = max(1, min(_MAX_ROWS, _BLOCK // (n_a * kb_max)))
    chunks = [slice(k0, min(n_k, k0 + kb_max)) for k0 in range(0, n_k, kb_max)]

    def score(ks: slice) -> None:
        _UtilityChunk(_as_matrices(u, ks), stats, rows_max, diagonal).add_to(totals, ks)

    _run_jobs(score, chunks, n_jobs)
    return totals


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


class _UtilityChunk:
    r"""The ex post sums of a chunk of kb utilities, class by class, block by block.

    A block is ``nr <= 255`` samples of one true class c times the kb utilities. One
    batched matrix product gives :math:`z_{aij} = (U_j q_i)_a` for all of them, laid
    out (action, sample, utility) so that every pass runs over long rows, and a small
    one the denominators :math:`d_{ij} = \iota^\top U_j q_i`. Then:

    - decisions (Eq 5): the maximum over actions, and ``z >= max`` counts, per action
      and utility, the samples whose decision it is, so that :math:`\sum_i u(\delta_i,
      c) = \sum_a u(a, c)\, \#\{i: \delta_i = a\}`. A utility whose counts add up to
      more than ``nr`` has an exact tie and is recounted with ``argmax`` (ties go to
      the lowest action, as in :func:`expost.decide`);
    - losses: :math:`\sum_a u(a, c) \sum_i \log p_{ai}` with :math:`\sum_i \log p_{ai}
      = \sum_i \log (z_{ai} / d_i)` from running products (:class:`_LogRatios`), as long
      as the bounds allow (:class:`_ClassStats`, and on the simplex :math:`\min_{c'}
      u(a, c') \le (Uq)_a \le \max_{c'} u(a, c')`); an action without a positive lower
      bound (a zero in U's row where q has zeros) is logged value by value.

    Class weights (``diagonal``) need no matrix product, :math:`z_{ai} = w_a q_{ia}`,
    and only the true class's :math:`\log p_c`; the decision is c when :math:`w_c q_c`
    beats the actions below c strictly and those above weakly (two maxima).
    """

    def __init__(self, uk: NDArray[np.float64], stats: _ClassStats, rows_max: int,
                 diagonal: bool) -> None:
        self.uk, self.stats, self.rows_max, self.diagonal = uk, stats, rows_max, diagonal
        kb, n_a = uk.shape[:2]
        self.zbuf = np.empty(n_a * rows_max * kb)
        self.eqbuf = np.empty(n_a * rows_max * kb, dtype=bool)
        self.bbuf, self.bbuf2, self.dbuf = (np.empty(rows_max * kb) for _ in range(3))
        colsum = uk.sum(axis=1)  # (kb, m): total weight of each class, sum_a u(a, c)
        self.cs = np.ascontiguousarray(colsum.T)  # (m, kb); for class weights w_j[a]
        self.den_bounds = stats.bounds(colsum)
        if not diagonal:
            self.w3 = np.ascontiguousarray(uk.transpose(1, 2, 0))  # (A, m, kb): U_j[a, :]
            self.z_bounds = stats.bounds(np.ascontiguousarray(uk.transpose(1, 0, 2)))

    def add_to(self, totals: Totals, ks: slice) -> None:
        """Add the chunk's sums over every class to the slices ``ks`` of ``totals``."""
        loss, utility, log_loss = (np.zeros(self.uk.shape[0]) for _ in range(3))
        for c in self.stats.classes:
            step = self._diagonal_class if self.diagonal else self._dense_class
            c_utility, c_loss, c_log_loss, right = step(c)
            utility += c_utility
            loss += c_loss
            log_loss -= c_log_loss
            totals["hits_by_class"][ks, c] = right
        totals["weighted_loss"][ks] = loss
        totals["utility"][ks] = utility
        totals["log_loss"][ks] = log_loss

    def _products(self, r0: int, r1: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """z = (U_j q_i)_a, laid out (action, sample, utility), and d = 1'U_j q_i."""
        kb, n_a = self.uk.shape[:2]
        nr, qb = r1 - r0, self.stats.qs[r0:r1]
        z = self.zbuf[:n_a * nr * kb].reshape(n_a, nr, kb)
        d = np.matmul(qb, self.cs, out=self.dbuf[:nr * kb].reshape(nr, kb))
        if self.diagonal:
            np.multiply(qb.T[:, :, None], self.cs[:, None, :], out=z)  # w_a q_ia
        else:
            np.matmul(qb, self.w3, out=z)
        return z, d

    def _diagonal_class(self, c: int) -> tuple[NDArray[Any], ...]:
        """Class weights: log p_c only, of w_c q_ic in [w_c qmin_c, w_c qmax_c]."""
        kb, n_a = self.uk.shape[:2]
        dlo, dhi = self.den_bounds(c)  # of the denominators: > 0 by Eq 1
        wc = self.cs[c]
        acc = _LogRatios(_ratio_factors(wc * self.stats.qmin[c, c], wc * self.stats.qmax[c, c],
                                        dlo, dhi), (1, kb))
        right = np.zeros(kb, dtype=np.int64)
        for r0, r1 in _row_blocks(self.stats.starts, c, self.rows_max):
            nr = r1 - r0
            z, d = self._products(r0, r1)
            ok = self.eqbuf[:nr * kb].reshape(nr, kb)
            ok.fill(True)
            if c > 0:  # beat the actions below c strictly
                low = np.maximum.reduce(z[:c], axis=0, out=self.bbuf[:nr * kb].reshape(nr, kb))
                np.greater(z[c], low, out=ok)
            if c < n_a - 1:  # and those above weakly
                top = np.maximum.reduce(z[c + 1:], axis=0,
                                        out=self.bbuf2[:nr * kb].reshape(nr, kb))
                ok &= z[c] >= top
            right += np.add.reduce(ok.view(np.uint8), axis=0, dtype=np.uint8)
            acc.add(z[c:c + 1], d)
        slog = acc.result()[0]
        return wc * right, wc * slog, slog, right

    def _dense_class(self, c: int) -> tuple[NDArray[Any], ...]:
        """Any utilities: decisions counted per action, log p of every weighted action."""
        kb, n_a = self.uk.shape[:2]
        dlo, dhi = self.den_bounds(c)
        lo, hi = self.z_bounds(c)
        bounded = lo > 0  # the rest: q off the simplex, or zeros in U and in q
        unbounded = np.nonzero(~bounded)  # set to 1 before the products
        g = _ratio_factors(np.where(bounded, lo, 1.0), np.where(bounded, hi, 1.0), dlo, dhi)
        uc = self.uk[:, :, c].T  # (A, kb): u_j(a, c)
        need = uc > 0  # the log p of actions with positive weight (and of a = c)
        if c < n_a:
            need[c] = True
        direct = np.nonzero(need & ~bounded)
        slog_direct = np.zeros(direct[0].size)
        acc = _LogRatios(g, (n_a, kb))
        cnt = np.zeros((n_a, kb), dtype=np.int64)
        for r0, r1 in _row_blocks(self.stats.starts, c, self.rows_max):
            z, d = self._products(r0, r1)
            cnt += self._decision_counts(z, r1 - r0)
            if direct[0].size:
                with np.errstate(divide="ignore", invalid="ignore"):
                    slog_direct += np.log(z[direct[0], :, direct[1]] / d.T[direct[1]]).sum(axis=1)
            if unbounded[0].size:
                z[unbounded[0], :, unbounded[1]] = 1.0
            acc.add(z, d)  # z is overwritten: the decisions are done
        slog = acc.result()  # (A, kb): sum over the class of log p_a
        slog[direct] = slog_direct
        right = cnt[c] if c < n_a else np.zeros(kb, dtype=np.int64)
        log_p_c = slog[c] if c < n_a else np.full(kb, np.nan)
        return (uc * cnt).sum(axis=0), _xlogy_sum(uc.T, slog.T), log_p_c, right

    def _decision_counts(self, z: NDArray[np.float64], nr: int) -> NDArray[np.integer]:
        """Per action and utility, the samples of the block whose decision (Eq 5) it is."""
        kb, n_a = self.uk.shape[:2]
        best = np.maximum.reduce(z, axis=0, out=self.bbuf[:nr * kb].reshape(nr, kb))
        eq = self.eqbuf[:n_a * nr * kb].reshape(n_a, nr, kb)
        np.greater_equal(z, best, out=eq)
        counts = np.add.reduce(eq.view(np.uint8), axis=1, dtype=np.uint8)  # nr <= 255
        if int(counts.sum(dtype=np.int64)) > nr * kb:  # exact ties: recount
            counts = counts.astype(np.int64)
            for j in np.flatnonzero(counts.sum(axis=0) > nr):
                counts[:, j] = np.bincount(np.argmax(z[:, :, j], axis=0), minlength=n_a)
        return counts


# ---------------------------------------------------------------- emphasis-style class weights
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

    def _score(self, e: int, idx: NDArray[np.intp], totals: Totals) -> None:
        stats, kb = self.stats, idx.size
        b, t = self.b[idx], self.t[idx]
        cs = np.ascontiguousarray(self.w[idx].T)  # (m, kb)
        den_bounds = stats.bounds(self.w[idx])
        low_q, high_q = self._competitors(e)
        loss, utility, log_loss = (np.zeros(kb) for _ in range(3))
        rows_max = max(1, _FAST_BLOCK // kb)
        for c in stats.classes:
            wc = cs[c]
            dlo, dhi = den_bounds(c)
            acc = _LogRatios(_ratio_factors(wc * stats.qmin[c, c], wc * stats.qmax[c, c],
                                            dlo, dhi), (1, kb))
            right = np.zeros(kb, dtype=np.int64)
            for r0, r1 in _row_blocks(stats.starts, c, rows_max):
                qb = stats.qs[r0:r1]
                v = np.multiply.outer(qb[:, c], wc)  # w_c q_ic, as the general path's z[c]
                low = np.multiply.outer(low_q[r0:r1], b)
                high = np.multiply.outer(high_q[r0:r1], b)
                if c != e:
                    np.maximum(low if e < c else high, np.multiply.outer(qb[:, e], t),
                               out=low if e < c else high)
                hit = v > low
                hit &= v >= high
                right += np.count_nonzero(hit, axis=0)
                acc.add(v[None], qb @ cs)
            slog = acc.result()[0]
            utility += wc * right
            loss += wc * slog
            log_loss -= slog
            totals["hits_by_class"][idx, c] = right
        totals["weighted_loss"][idx] = loss
        totals["utility"][idx] = utility
        totals["log_loss"][idx] = log_loss


def weighted_losses(q: NDArray[np.float64], labels: NDArray[np.intp], u: NDArray[np.float64],
                    *, view: str, base: str = "log") -> NDArray[np.float64]:
    r"""The mean utility-weighted loss (Eq 6) of each utility's view of ``q``, shape (K,).

    The log base is :func:`batched_metrics`'s ``weighted_loss``; the Brier base
    (footnote 19), which the harness does not report, is the core's per-sample
    loss of each utility's prediction (:math:`q` or :math:`p^{u_k}(q)`, Eq 8).

    >>> import numpy as np
    >>> q, y, u = np.array([[0.5, 0.5]]), np.array([1]), np.array([np.diag([1.0, 3.0])])
    >>> weighted_losses(q, y, u, view="as_is").round(4), weighted_losses(q, y, u,
    ...     view="as_is", base="brier")
    (array([2.0794]), array([1.5]))
    """
    if base == "log":
        recall_of = np.zeros(u.shape[0], dtype=np.intp)
        return batched_metrics(q, labels, u, view=view, recall_of=recall_of)["weighted_loss"]
    from ._decisions import _weighted_prediction
    from ._scoring import _weighted_loss  # the per-sample losses import this module

    return np.array([_weighted_loss(q if view == "as_is" else _weighted_prediction(q, mat),
                                    labels, mat, base).mean(dtype=np.float64) for mat in u])
