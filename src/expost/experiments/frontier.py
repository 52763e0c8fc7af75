r"""The ex post frontier: many objectives evaluated at once on stored predictions.

An unweighted model is trained once; Ex Post Weighting then serves *any*
objective :math:`u` by Theorem 1, :math:`p^u(q) = Uq / \iota^\top U q`. Given
stored probabilities ``q`` (n x m) and K utilities, :func:`frontier` returns,
for every utility, the metrics the harness stores (except the calibration
error), vectorised over utilities:

.. math::

    \text{weighted\_loss}_k = \frac1n \sum_i \Big[ -\sum_a u_k(a, y_i) \log (U_k q_i)_a
        + \Big(\sum_a u_k(a, y_i)\Big) \log \iota^\top U_k q_i \Big]
    \quad\text{(Eq 6 at } p^{u_k}(q_i)\text{)},

classification utility :math:`\frac1n \sum_i u_k(\delta^{u_k}(q_i), y_i)` (Eq 5),
log loss :math:`-\frac1n\sum_i \log p^{u_k}_{y_i}(q_i)`, accuracy and the recall
of each utility's recall class (the class with the largest total weight).

How it stays fast: samples are grouped by true class, so every sum over
samples of a class is a column sum; logarithms are taken only of
:math:`(U_k q)_a` for actions with :math:`u_k(a, c) > 0` (a class-weight
utility needs one per sample, not m); and a class-weight stack skips the
matrix products altogether (:math:`(W q)_a = w_a q_a`). The result equals the
core's one-utility functions (:func:`expost.weighted_loss` of
:func:`expost.weighted_prediction`, :func:`expost.decide`) to rounding; the
tests check it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._utility import Utility
from .._validation import _error, check_labels, check_probabilities, describe

__all__ = ["FRONTIER_METRICS", "frontier", "stack_utilities"]

#: The metrics :func:`frontier` returns (the harness's metrics but the calibration error).
FRONTIER_METRICS: Final[tuple[str, ...]] = (
    "weighted_loss", "classification_utility", "log_loss", "accuracy", "emphasized_recall")

_BLOCK_ELEMENTS = 1 << 16  # utilities x samples per block: a few arrays of it stay in cache


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


def _sum_log_bounded(x: NDArray[np.float64], lo: NDArray[np.float64], hi: NDArray[np.float64]
                     ) -> NDArray[np.float64]:
    r"""Row sums of ``log x`` for positive rows bounded by ``lo[k] <= x[k, j] <= hi[k]``.

    With :math:`y = x / lo \in [1, 2^e]`, a product of :math:`g \le 1000 / e` values of
    :math:`y` stays below :math:`2^{1000}`, so :math:`\sum_j \log x_{kj} = n \log lo_k +
    \sum_{\text{groups}} \log \prod_{j \in \text{group}} y_{kj}`: one logarithm per
    group instead of one per value (logarithms dominate the frontier's cost otherwise).
    Rounding: a product of g values carries a relative error of about g ulps, the same
    order as summing g logarithms.
    """
    kc, n = x.shape
    spread = float(np.max(np.log2(hi / lo)))
    g = n if spread <= 0 else int(max(1, min(n, 1000.0 // spread)))
    nb = -(-n // g)
    y = np.empty((kc, nb * g))
    np.divide(x, lo[:, None], out=y[:, :n])
    y[:, n:] = 1.0
    prod = y.reshape(kc, nb, g).prod(axis=2)
    return np.log(prod).sum(axis=1) + n * np.log(lo)


def _xlogy_sum(coef: NDArray[np.float64], logs: NDArray[np.float64]) -> NDArray[np.float64]:
    """sum over the last axis of coef * logs with 0 * (-inf) = 0 (the xlogy convention)."""
    with np.errstate(invalid="ignore"):
        prod = coef * logs
    prod[coef == 0] = 0.0
    return prod.sum(axis=-1)


def frontier(
    q: ArrayLike,
    y: ArrayLike,
    utilities: Utility | ArrayLike | Sequence[Utility | ArrayLike],
    *,
    view: Literal["ex_post", "as_is"] = "ex_post",
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
    with _one_blas_thread():
        return _frontier(q, y, utilities, view)


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


def _frontier(q: ArrayLike, y: ArrayLike, utilities: Any, view: str
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

    first = np.zeros(n_k)   # sum_i sum_a u(a, y_i) log (Uq_i)_a
    second = np.zeros(n_k)  # sum_i colsum(y_i) log (1'Uq_i)
    ll = np.zeros(n_k)      # sum_i -log p^u_{y_i}
    cu = np.zeros(n_k)
    hits = np.zeros(n_k)
    recall = np.full(n_k, np.nan)
    with np.errstate(divide="ignore"):
        logq = np.log(qa)
    col_lo, col_hi = colsum.min(axis=1), colsum.max(axis=1)  # > 0 by Eq 1
    for c in range(m):
        rows = order[starts[c]:starts[c + 1]]
        nc = rows.size
        if nc == 0:
            continue
        # Blocks are (utilities x samples of class c): the inner loops run over samples.
        qct = np.ascontiguousarray(qa[rows].T)  # (m, nc)
        sum_logq_c = logq[rows, c].sum()
        chunk = max(1, min(n_k, _BLOCK_ELEMENTS // (nc * (1 if diagonal else n_a))))
        for k0 in range(0, n_k, chunk):
            ks = slice(k0, min(n_k, k0 + chunk))
            kc = ks.stop - ks.start
            den = colsum[ks] @ qct  # (kc, nc): 1'Uq, a convex combination of column sums
            sum_logden = _sum_log_bounded(den, col_lo[ks], col_hi[ks])
            second[ks] += colsum[ks, c] * sum_logden
            if diagonal:
                wt = np.ascontiguousarray(np.diagonal(u[ks], axis1=1, axis2=2).T)[:, :, None]
                wc = wt[c, :, 0]  # wt: (m, kc, 1), broadcast against a row of samples
                # Is the decision (Eq 5, ties to the lowest action) the true class c?
                # w_c q_c must beat every action below c strictly and every action above
                # c weakly: one running maximum, nudged up one ulp after the actions
                # below c, and no argmax over actions.
                best = np.full((kc, nc), -np.inf)
                za = np.empty((kc, nc))
                for a in range(m):
                    if a == c:
                        np.nextafter(best, np.inf, out=best)
                        continue
                    np.maximum(best, np.multiply(wt[a], qct[a], out=za), out=best)
                np.multiply(wt[c], qct[c], out=za)
                right = np.count_nonzero(za >= best, axis=1)
                s_true = nc * np.log(wc) + sum_logq_c  # sum_i log (Wq_i)_c
                first[ks] += wc * s_true
                ll[ks] += sum_logden - s_true
                cu[ks] += wc * right
            else:
                uc = u[ks]  # (kc, A, m)
                z = (uc.reshape(kc * n_a, m) @ qct).reshape(kc, n_a, nc)  # (U_j q_i)_a
                ua_c = uc[:, :, c]  # (kc, A): u(a, c)
                need = np.flatnonzero((ua_c > 0).any(axis=0) | (np.arange(n_a) == c))
                # sum_i log (Uq_i)_a for the actions that matter; a row a of U without
                # zeros bounds (Uq)_a by its min and max, so products replace most logs
                slog = np.zeros((kc, n_a))
                zn = z[:, need].reshape(-1, nc)
                lo, hi = uc[:, need].min(axis=2).ravel(), uc[:, need].max(axis=2).ravel()
                pos = lo > 0
                flat = np.empty(zn.shape[0])
                if pos.all():
                    flat = _sum_log_bounded(zn, lo, hi)
                else:
                    with np.errstate(divide="ignore"):
                        flat[~pos] = np.log(zn[~pos]).sum(axis=1)
                    if pos.any():
                        flat[pos] = _sum_log_bounded(zn[pos], lo[pos], hi[pos])
                slog[:, need] = flat.reshape(kc, need.size)
                first[ks] += _xlogy_sum(ua_c, slog)
                s_true = slog[:, c]
                dec = np.argmax(z, axis=1)  # (kc, nc): Eq 5, ties to the lowest action
                gain = ua_c[np.arange(kc)[:, None], dec]  # u(decision, c)
                right = np.count_nonzero(dec == c, axis=1)
                ll[ks] += sum_logden - s_true
                cu[ks] += gain.sum(axis=1)
            hits[ks] += right
            mine = rclass[ks] == c
            recall[ks][mine] = right[mine] / nc
    out["weighted_loss"] = (second - first) / n
    out["classification_utility"] = cu / n
    out["log_loss"] = ll / n
    out["accuracy"] = hits / n
    out["emphasized_recall"] = recall
    return out
