r"""The ex post frontier: many objectives evaluated at once on stored predictions.

An unweighted model is trained once; Ex Post Weighting then serves *any*
objective :math:`u` by Theorem 1, :math:`p^u(q) = Uq / \iota^\top U q`. Given
stored probabilities ``q`` (n x m) and K utilities, :func:`frontier` returns,
for every utility, the metrics the harness stores (except the calibration
error), vectorised over utilities:

.. math::

    \text{weighted\_loss}_k = -\frac1n \sum_i \sum_a u_k(a, y_i) \log p^{u_k}_a(q_i)
    \quad\text{(Eq 6 at } p^{u_k}(q_i)\text{)},

classification utility :math:`\frac1n \sum_i u_k(\delta^{u_k}(q_i), y_i)` (Eq 5),
log loss :math:`-\frac1n\sum_i \log p^{u_k}_{y_i}(q_i)`, accuracy and the recall
of each utility's recall class (the class with the largest total weight).

How it stays fast (1,000 dense 15 x 15 utilities on 20,000 samples in under a
second on one core; ``n_jobs=2`` shares the utilities between two threads):
samples are grouped by true class c, so that :math:`\sum_i \sum_a u(a, c) \log
p_{ia} = \sum_a u(a, c) \sum_i \log p_{ia}`; one matrix product per block of
samples and utilities gives every :math:`(U_k q_i)_a`; decisions are counted per
action with two vectorised passes (no ``argmax`` over a short axis); and the sums
of logarithms over samples are logarithms of ratios of running products, one
logarithm per dozens of values (products of bounded factors cannot overflow; see
:class:`_LogRatios`). A class-weight stack replaces the matrix product by
:math:`(W q)_a = w_a q_a` and logs only the true class. Memory stays at a few MiB
whatever n and K. The result equals the core's one-utility functions
(:func:`expost.weighted_loss` of :func:`expost.weighted_prediction`,
:func:`expost.decide`) to rounding; the tests check it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import pairwise
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._utility import Utility
from .._validation import _error, check_labels, check_probabilities, describe

__all__ = ["FRONTIER_METRICS", "frontier", "stack_utilities"]

#: The metrics :func:`frontier` returns (the harness's metrics but the calibration error).
FRONTIER_METRICS: Final[tuple[str, ...]] = (
    "weighted_loss", "classification_utility", "log_loss", "accuracy", "emphasized_recall")

_BLOCK = 1 << 19  # float64 values of one block (actions x samples x utilities): 4 MiB
_BLOCK_COLUMNS = 4096  # actions x utilities per block
_MAX_ROWS = 255  # samples per block: decision counts accumulate in uint8
_LOG2_SPAN = 1000.0  # products stay in [2^-1000, 2^1000]: normal float64, 22 bits to spare


def stack_utilities(utilities: Utility | ArrayLike | Sequence[Utility | ArrayLike]
                    ) -> NDArray[np.float64]:
    """Stack utilities into a (K, n_actions, n_classes) float64 array, checking each.

    Accepts one utility, a sequence of utilities or matrices, or a 3-D array.
    Every matrix must be finite, nonnegative and nondegenerate (Eq 1).

    >>> import expost
    >>> stack_utilities([expost.Utility.from_class_weights([1, 2]), [[1, 0], [0, 3]]]).shape
    (2, 2, 2)
    """
    if isinstance(utilities, Utility):
        return utilities.matrix[None].copy()
    if isinstance(utilities, np.ndarray) and utilities.ndim == 3:
        items: Sequence[Utility | ArrayLike] = list(utilities)
    elif isinstance(utilities, np.ndarray) and utilities.ndim == 2:
        items = [utilities]
    elif isinstance(utilities, (list, tuple)):
        items = utilities
        if items and not isinstance(items[0], Utility) and np.ndim(items[0]) == 1:
            items = [utilities]  # one matrix given as a list of rows
    else:
        raise TypeError(_error("utilities", "a utility, a sequence of utilities or a 3-D array",
                               describe(utilities)))
    if len(items) == 0:
        raise ValueError(_error("utilities", "at least one utility", "none"))
    mats = []
    for k, u in enumerate(items):
        try:
            mats.append(u.matrix if isinstance(u, Utility) else Utility(u).matrix)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"`utilities[{k}]`: {exc}") from None
    shapes = {m.shape for m in mats}
    if len(shapes) != 1:
        raise ValueError(_error("utilities", "matrices of one shape", f"shapes {sorted(shapes)}"))
    return np.stack(mats).astype(np.float64, copy=False)


def _xlogy_sum(coef: NDArray[np.float64], logs: NDArray[np.float64]) -> NDArray[np.float64]:
    """sum over the last axis of coef * logs with 0 * (-inf) = 0 (the xlogy convention)."""
    with np.errstate(invalid="ignore"):
        prod = coef * logs
    prod[coef == 0] = 0.0
    return prod.sum(axis=-1)


def _ratio_factors(lo: NDArray[np.float64], hi: NDArray[np.float64],
                   dlo: NDArray[np.float64], dhi: NDArray[np.float64]) -> int:
    r"""Most factors g of one running product in :class:`_LogRatios` (1: no products).

    For :math:`x \in [lo, hi]` and :math:`d \in [dlo, dhi]` (all positive), the
    products of g values of x, of d and of x / d lie in :math:`[2^{-g e}, 2^{g e}]` with
    e the largest :math:`|\log_2|` of the bounds and of their ratios: normal float64
    numbers for :math:`g e \le 1000`.
    """
    if not (np.all(lo > 0) and np.all(dlo > 0)):
        return 1
    l_lo, l_hi, d_lo, d_hi = np.log2(lo), np.log2(hi), np.log2(dlo), np.log2(dhi)
    e = max(float(np.max(np.abs(v))) for v in (l_lo, l_hi, d_lo, d_hi, l_lo - d_hi, l_hi - d_lo))
    return max(1, int(_LOG2_SPAN // max(e, 1.0)))


class _LogRatios:
    r"""Sums over samples of :math:`\log(x / d)` for a stream of blocks, from products.

    Blocks are ``x`` of shape (..., n, kb) and ``d`` of shape (n, kb) (samples on
    axis -2). The products of x and of d over samples are carried from block to block
    until they hold ``g`` factors (:func:`_ratio_factors`); then the logarithm of their
    ratio is added: one logarithm per g values instead of one per value (a logarithm
    costs about twenty multiplications). Taking the logarithm of the *ratio*, not the
    difference of two logarithms, keeps :math:`\log p` accurate when p is close to 1.
    Rounding: a product of g factors carries a relative error of at most g ulps (about
    :math:`\sqrt g` in practice), the order of summing g logarithms.
    """

    def __init__(self, g: int, shape: tuple[int, ...]) -> None:
        self.g = g
        self.total = np.zeros(shape)
        self.px = np.ones(shape)
        self.pd = np.ones(shape[-1])
        self.factors = 0

    def add(self, x: NDArray[np.float64], d: NDArray[np.float64]) -> None:
        n = x.shape[-2]
        if self.g < 2:  # no safe products: one logarithm per value
            with np.errstate(divide="ignore", invalid="ignore"):
                self.total += np.log(x / d).sum(axis=-2)
            return
        if n >= self.g:  # the block alone fills products: group its rows i, i + nb, ...
            nb = -(-n // (self.g - 1))
            gg = n // nb
            px = np.multiply.reduce(x[..., :gg * nb, :].reshape(*x.shape[:-2], gg, nb, -1),
                                    axis=-3)
            pd = np.multiply.reduce(d[:gg * nb].reshape(gg, nb, -1), axis=0)
            rem = n - gg * nb  # < nb leftover rows: one more factor for the first rem
            if rem:
                px[..., :rem, :] *= x[..., gg * nb:, :]
                pd[:rem] *= d[gg * nb:]
            px /= pd
            self.total += np.log(px).sum(axis=-2)
            return
        if self.factors + n > self.g:
            self._flush()
        self.px *= np.multiply.reduce(x, axis=-2)
        self.pd *= np.multiply.reduce(d, axis=0)
        self.factors += n

    def _flush(self) -> None:
        if self.factors:
            self.total += np.log(self.px / self.pd)
            self.px.fill(1.0)
            self.pd.fill(1.0)
            self.factors = 0

    def result(self) -> NDArray[np.float64]:
        self._flush()
        return self.total


def _ex_post(qa: NDArray[np.float64], u: NDArray[np.float64], order: NDArray[np.intp],
             starts: NDArray[np.intp], diagonal: bool, n_jobs: int,
             out: dict[str, NDArray[np.float64]]) -> dict[str, NDArray[np.float64]]:
    r"""The ex post metrics of all utilities, block by block (the ``"ex_post"`` view).

    A block is ``nr <= 255`` samples of one true class c times ``kb`` utilities. One
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
      as the bounds allow. The factors are bounded through the smallest and largest
      :math:`q_{ic'}` of each column over the class's samples, and on the simplex by
      :math:`\min_{c'} u(a, c') \le (Uq)_a \le \max_{c'} u(a, c')`; an action without a
      positive lower bound (a zero in U's row where q has zeros) is logged value by value.

    Class weights (``diagonal``) need no matrix product, :math:`z_{ai} = w_a q_{ia}`,
    and only the true class's :math:`\log p_c`; the decision is c when :math:`w_c q_c`
    beats the actions below c strictly and those above weakly (two maxima).
    """
    n_k, n_a = u.shape[:2]
    n = qa.shape[0]
    colsum = u.sum(axis=1)  # (K, m): total weight of each class, sum_a u(a, c)
    rclass = np.argmax(colsum, axis=1)  # recall class of each utility (ties: lowest index)
    counts = np.diff(starts)
    qs = qa[order]  # samples sorted by true class
    # Bounds of v.q_i (v >= 0: a row of U, or 1'U) over the samples i of each class,
    # from the smallest and largest q_ic of every column c (qmin, qmax) and from the
    # row sums of q's positive and negative parts (q may be off the simplex by the
    # validation tolerance, entries down to -atol):
    #   max(v.qmin, min(v) sum(q+) + max(v) sum(q-)) <= v.q <= min(v.qmax, max(v) sum(q+)).
    pos, neg = np.maximum(qs, 0.0).sum(axis=1), np.minimum(qs, 0.0).sum(axis=1)
    cls = [int(c) for c in np.flatnonzero(counts)]  # the classes present
    p_lo, p_hi, n_lo = (np.zeros(len(counts)) for _ in range(3))
    qmin, qmax = np.zeros((len(counts), qs.shape[1])), np.zeros((len(counts), qs.shape[1]))
    for c in cls:
        rows = slice(starts[c], starts[c + 1])
        p_lo[c], p_hi[c], n_lo[c] = pos[rows].min(), pos[rows].max(), neg[rows].min()
        qmin[c], qmax[c] = qs[rows].min(axis=0), qs[rows].max(axis=0)

    def bounds(mat: NDArray[np.float64]) -> Callable[[int], tuple[NDArray[np.float64], ...]]:
        """Bounds of mat @ q_i (mat's last axis over classes) for the samples of class c."""
        bottom, top = mat.min(axis=-1), mat.max(axis=-1)

        def of_class(c: int) -> tuple[NDArray[np.float64], ...]:
            lo = np.maximum(mat @ qmin[c], bottom * p_lo[c] + top * n_lo[c])
            return lo, np.minimum(mat @ qmax[c], top * p_hi[c])

        return of_class

    first, ll, cu, hits, rhits = (np.zeros(n_k) for _ in range(5))
    # Chunks of utilities of at most _BLOCK_COLUMNS actions in all, an even number of
    # them (two threads share the work evenly); each chunk writes its own slices. The
    # chunks do not depend on n_jobs, so neither do the results, to the last bit.
    n_chunks = -(-n_k * n_a // _BLOCK_COLUMNS)
    kb_max = -(-n_k // min(n_k, n_chunks + n_chunks % 2))
    rows_max = max(1, min(_MAX_ROWS, _BLOCK // (n_a * kb_max)))

    def chunk(ks: slice) -> None:
        kb = ks.stop - ks.start
        zbuf = np.empty(n_a * rows_max * kb)
        eqbuf = np.empty(n_a * rows_max * kb, dtype=bool)
        bbuf, bbuf2, dbuf = (np.empty(rows_max * kb) for _ in range(3))
        uk = u[ks]
        cs = np.ascontiguousarray(colsum[ks].T)  # (m, kb)
        den_bounds = bounds(colsum[ks])
        if diagonal:
            wd = cs  # (m, kb): w_j[a], the diagonal
        else:
            w3 = np.ascontiguousarray(uk.transpose(1, 2, 0))  # (A, m, kb): U_j[a, :]
            z_bounds = bounds(np.ascontiguousarray(uk.transpose(1, 0, 2)))  # (A, kb)
        for c in cls:
            s0, s1 = int(starts[c]), int(starts[c + 1])
            dlo, dhi = den_bounds(c)  # of the denominators: > 0 by Eq 1
            if not diagonal:
                lo, hi = z_bounds(c)
                bounded = lo > 0  # the rest: q off the simplex, or zeros in U and in q
                unbounded = np.nonzero(~bounded)  # set to 1 before the products
                g = _ratio_factors(np.where(bounded, lo, 1.0), np.where(bounded, hi, 1.0),
                                   dlo, dhi)
            n_blocks = -(-(s1 - s0) // rows_max)
            edges = np.linspace(s0, s1, n_blocks + 1).round().astype(np.intp)
            if diagonal:  # log p_c only, of w_c q_ic in [w_c qmin_c, w_c qmax_c]
                wc = wd[c]
                acc = _LogRatios(_ratio_factors(wc * qmin[c, c], wc * qmax[c, c], dlo, dhi),
                                 (1, kb))
                right = np.zeros(kb, dtype=np.int64)
            else:
                uc = uk[:, :, c].T  # (A, kb): u_j(a, c)
                need = uc > 0  # the log p of actions with positive weight (and of a = c)
                if c < n_a:
                    need[c] = True
                direct = np.nonzero(need & ~bounded)
                slog_direct = np.zeros(direct[0].size)
                acc = _LogRatios(g, (n_a, kb))
                cnt = np.zeros((n_a, kb), dtype=np.int64)
            for r0, r1 in pairwise(edges):
                nr = int(r1 - r0)
                qb = qs[r0:r1]
                z = zbuf[:n_a * nr * kb].reshape(n_a, nr, kb)
                d = np.matmul(qb, cs, out=dbuf[:nr * kb].reshape(nr, kb))  # 1'U_j q_i
                if diagonal:
                    np.multiply(qb.T[:, :, None], wd[:, None, :], out=z)  # w_a q_ia
                    ok = eqbuf[:nr * kb].reshape(nr, kb)
                    ok.fill(True)
                    if c > 0:  # beat the actions below c strictly
                        low = np.maximum.reduce(z[:c], axis=0, out=bbuf[:nr * kb].reshape(nr, kb))
                        np.greater(z[c], low, out=ok)
                    if c < n_a - 1:  # and those above weakly
                        top = np.maximum.reduce(z[c + 1:], axis=0,
                                                out=bbuf2[:nr * kb].reshape(nr, kb))
                        ok &= z[c] >= top
                    right += np.add.reduce(ok.view(np.uint8), axis=0, dtype=np.uint8)
                    acc.add(z[c:c + 1], d)
                    continue
                np.matmul(qb, w3, out=z)
                best = np.maximum.reduce(z, axis=0, out=bbuf[:nr * kb].reshape(nr, kb))
                eq = eqbuf[:n_a * nr * kb].reshape(n_a, nr, kb)
                np.greater_equal(z, best, out=eq)
                cnt_r = np.add.reduce(eq.view(np.uint8), axis=1, dtype=np.uint8)  # nr <= 255
                if int(cnt_r.sum(dtype=np.int64)) > nr * kb:  # exact ties: recount
                    cnt_r = cnt_r.astype(np.int64)
                    for j in np.flatnonzero(cnt_r.sum(axis=0) > nr):
                        cnt_r[:, j] = np.bincount(np.argmax(z[:, :, j], axis=0), minlength=n_a)
                cnt += cnt_r
                if direct[0].size:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        slog_direct += np.log(z[direct[0], :, direct[1]]
                                              / d.T[direct[1]]).sum(axis=1)
                if unbounded[0].size:
                    z[unbounded[0], :, unbounded[1]] = 1.0
                acc.add(z, d)  # z is overwritten: the decisions are done
            slog = acc.result()  # (A, kb) or (1, kb): sum over the class of log p_a
            if diagonal:
                cu[ks] += wc * right
                first[ks] += wc * slog[0]
                ll[ks] -= slog[0]
            else:
                slog[direct] = slog_direct
                right = cnt[c] if c < n_a else np.zeros(kb, dtype=np.int64)
                cu[ks] += (uc * cnt).sum(axis=0)
                first[ks] += _xlogy_sum(uc.T, slog.T)
                ll[ks] -= slog[c] if c < n_a else np.nan
            hits[ks] += right
            rhits[ks] += np.where(rclass[ks] == c, right, 0)

    chunks = [slice(k0, min(n_k, k0 + kb_max)) for k0 in range(0, n_k, kb_max)]
    if n_jobs == 1 or len(chunks) == 1:
        for ks in chunks:
            chunk(ks)
    else:  # numpy's loops and BLAS release the GIL: the threads run side by side
        with ThreadPoolExecutor(max_workers=min(n_jobs, len(chunks))) as pool:
            list(pool.map(chunk, chunks))
    out["weighted_loss"] = (0.0 - first) / n  # not -0.0 for a zero loss
    out["classification_utility"] = cu / n
    out["log_loss"] = ll / n
    out["accuracy"] = hits / n
    present = counts[rclass] > 0
    out["emphasized_recall"] = np.where(present, rhits / np.maximum(counts[rclass], 1), np.nan)
    return out


def frontier(
    q: ArrayLike,
    y: ArrayLike,
    utilities: Utility | ArrayLike | Sequence[Utility | ArrayLike],
    *,
    view: Literal["ex_post", "as_is"] = "ex_post",
    n_jobs: int = 1,
) -> dict[str, NDArray[np.float64]]:
    r"""Metrics of K objectives at once on one set of predictions (the ex post frontier).

    Parameters
    ----------
    q : array-like of shape (n_samples, n_classes)
        Predicted probabilities (e.g. :meth:`ResultStore.probabilities
        <expost.experiments.store.ResultStore.probabilities>`).
    y : array-like of shape (n_samples,)
        True classes.
    utilities : Utility, sequence of utilities, or array of shape (K, n_actions, n_classes)
        The objectives; scale matters for the weighted loss (normalise them with
        :meth:`expost.Utility.normalized` first, as the harness does).
    view : {"ex_post", "as_is"}
        ``"ex_post"`` scores :math:`p^{u_k}(q)` and the decisions of Eq 5 (Ex
        Post Weighting); ``"as_is"`` scores ``q`` itself with ``argmax q``
        decisions (a model trained for one objective, judged by others).
    n_jobs : int, default 1
        Threads for the ``"ex_post"`` view, each over its own share of the utilities
        (``-1``: one per CPU). The results do not depend on it.

    Returns
    -------
    dict
        ``{metric: ndarray of shape (K,)}`` for the metrics of :data:`FRONTIER_METRICS`.

    Examples
    --------
    >>> import numpy as np, expost
    >>> q = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])
    >>> us = [expost.Utility.from_class_weights([1.0, r]) for r in (1.0, 9.0)]
    >>> f = frontier(q, [0, 1, 1], us)
    >>> f["classification_utility"].round(3)
    array([0.667, 6.333])
    >>> round(float(f["weighted_loss"][1]), 6) == round(float(expost.weighted_loss(
    ...     expost.weighted_prediction(q, us[1]), [0, 1, 1], us[1], reduction="mean")), 6)
    True
    """
    if view not in ("ex_post", "as_is"):
        raise ValueError(_error("view", "'ex_post' or 'as_is'", describe(view)))
    if not isinstance(n_jobs, (int, np.integer)) or isinstance(n_jobs, bool):
        raise TypeError(_error("n_jobs", "an integer", describe(n_jobs)))
    if n_jobs < 1 and n_jobs != -1:
        raise ValueError(_error("n_jobs", "a positive number of threads or -1", describe(n_jobs)))
    jobs = (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)
    with _one_blas_thread():
        return _frontier(q, y, utilities, view, jobs)


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """The products here are small: BLAS threads only spin. Limit them while computing."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _frontier(q: ArrayLike, y: ArrayLike, utilities: Any, view: str, n_jobs: int
              ) -> dict[str, NDArray[np.float64]]:
    u = stack_utilities(utilities)
    n_k, n_a, m = u.shape
    arr, _ = check_probabilities(q, "q", n_columns=m)
    qa = np.asarray(arr, dtype=np.float64)
    labels = check_labels(y, "y", n_classes=m, n_samples=qa.shape[0])
    n = qa.shape[0]
    colsum = u.sum(axis=1)  # (K, m): total weight of each class, sum_a u(a, c)
    rclass = np.argmax(colsum, axis=1)  # recall class of each utility (ties: lowest index)
    out = {k: np.zeros(n_k) for k in FRONTIER_METRICS}
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=m)
    starts = np.concatenate([[0], np.cumsum(counts)])
    diagonal = n_a == m and not np.any(u * (1.0 - np.eye(m))[None])

    if view == "as_is":
        with np.errstate(divide="ignore"):
            logq = np.log(qa)
        dec = np.argmax(qa, axis=1)
        conf = np.zeros((n_a, m))  # confusion counts: decision a, class c
        np.add.at(conf, (dec, labels), 1.0)
        ls = np.zeros((m, n_a)) if n_a == m else None
        for c in range(m):
            rows = order[starts[c]:starts[c + 1]]
            if ls is not None and rows.size:
                ls[c] = logq[rows].sum(axis=0)
        if ls is None:
            raise ValueError(_error("utilities", "square matrices for the 'as_is' view "
                                    "(q is over classes)", f"shape {u.shape[1:]}"))
        # weighted loss: -(1/n) sum_c sum_a u(a, c) sum_{i in c} log q_ia
        out["weighted_loss"] = -_xlogy_sum(np.transpose(u, (0, 2, 1)).reshape(n_k, -1),
                                           np.broadcast_to(ls.reshape(-1), (n_k, m * n_a))) / n
        out["classification_utility"] = np.einsum("kac,ac->k", u, conf) / n
        with np.errstate(divide="ignore"):
            out["log_loss"][:] = -logq[np.arange(n), labels].mean()
        out["accuracy"][:] = np.trace(conf) / n
        present = counts[rclass] > 0
        out["emphasized_recall"] = np.where(
            present, conf[rclass, rclass] / np.maximum(counts[rclass], 1), np.nan)
        return out

    return _ex_post(qa, u, order, starts, diagonal, n_jobs, out)
