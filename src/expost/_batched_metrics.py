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

from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from ._class_blocks import Totals, _ClassStats, _row_blocks, _run_jobs
from ._emphasis_metrics import _emphasis_form, _EmphasisScores
from ._log_ratios import _LogRatios, _ratio_factors, _xlogy_sum

#: The metrics :func:`batched_metrics` returns (the harness's metrics but the calibration error).
BATCHED_METRICS: Final[tuple[str, ...]] = (
    "weighted_loss", "classification_utility", "log_loss", "accuracy", "emphasized_recall")

_BLOCK = 1 << 19  # float64 values of one block (actions x samples x utilities): 4 MiB
_BLOCK_COLUMNS = 4096  # actions x utilities per block
_MAX_ROWS = 255  # samples per block: decision counts accumulate in uint8
_DIRECT_UTILITIES = 4  # at most this many utilities (the harness scores one): the direct path
_DIRECT_VALUES = 1 << 20  # ... when one utility's (samples x actions) values fit in 8 MiB


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
    return metrics_given(q, labels, u, view=view, recall_of=recall_of, n_jobs=n_jobs,
                         weights=_class_weights(u), counts=np.bincount(labels, minlength=u.shape[-1]))


def metrics_given(q: NDArray[np.float64], labels: NDArray[np.intp], u: NDArray[np.float64],
                  *, view: str, recall_of: NDArray[np.intp], weights: NDArray[np.float64] | None,
                  counts: NDArray[np.intp], n_jobs: int = 1) -> dict[str, NDArray[np.float64]]:
    """:func:`batched_metrics` given ``u``'s class weights (``_class_weights(u)``) and the
    labels' counts (``np.bincount(labels, minlength=n_classes)``): for a caller that
    scores the same utilities and labels many times (the harness, every interval)."""
    n_a = u.shape[-1] if weights is not None else u.shape[1]
    direct = u.shape[0] <= _DIRECT_UTILITIES and q.shape[0] * n_a <= _DIRECT_VALUES
    if view == "ex_post" and direct:
        totals = _ex_post_direct(q, labels, u, weights)
    else:
        order = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
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
    present = np.flatnonzero(np.diff(starts))  # classes with samples (reduceat needs rows)
    if present.size:  # row by row, in the samples' order, as a loop of sums over each class
        logs[present] = np.add.reduceat(logq[order], starts[present], axis=0)
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
def _ex_post_direct(q: NDArray[np.float64], labels: NDArray[np.intp], u: NDArray[np.float64],
                    weights: NDArray[np.float64] | None) -> Totals:
    r"""Sums over samples for a few utilities, each over all samples at once (no blocks).

    The harness scores one utility per call: there the per-class blocks, bounds and
    running products of the batched paths cost more than they save. Per utility:
    :math:`z_i = U q_i` (class weights: :math:`w_a q_{ia}`, the products the batched
    paths compare), :math:`d_i = (\iota^\top U) q_i`, the decisions by ``argmax``
    (ties to the lowest action, as :func:`expost.decide`) and :math:`\log(z_{ia} / d_i)`
    value by value. The decisions equal the batched paths' exactly for class weights
    (the same products) and the losses to rounding.
    """
    n_k, m = u.shape[0], u.shape[-1]
    rows = np.arange(q.shape[0])
    totals = {"weighted_loss": np.zeros(n_k), "utility": np.zeros(n_k),
              "log_loss": np.zeros(n_k), "hits_by_class": np.zeros((n_k, m))}
    for k in range(n_k):
        if weights is not None:
            w = weights[k]
            z, d = q * w, q @ w
        else:
            mat = u[k]
            z, d = q @ mat.T, q @ mat.sum(axis=0)
        dec = np.argmax(z, axis=1)
        hits = np.bincount(labels[dec == labels], minlength=m)
        totals["hits_by_class"][k] = hits
        # The utility class by class, summed in class order as the batched paths sum it.
        if weights is not None:
            per_class = w * hits
        else:
            conf = np.zeros((mat.shape[0], m))  # decision a, class c
            np.add.at(conf, (dec, labels), 1.0)
            per_class = (mat * conf).sum(axis=0)
        totals["utility"][k] = np.cumsum(per_class)[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            if weights is not None:  # only the true class's log p counts
                log_py = np.log(z[rows, labels] / d)
                totals["weighted_loss"][k] = _xlogy_sum(w[labels], log_py)
            else:
                logp = np.log(z / d[:, None])
                totals["weighted_loss"][k] = _xlogy_sum(mat[:, labels].T, logp).sum()
                log_py = (logp[rows, labels] if mat.shape[0] >= m or labels.max() < mat.shape[0]
                          else np.full(1, np.nan))  # p over fewer actions than classes
        totals["log_loss"][k] = -log_py.sum()
    return totals


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
