"""Kernels of :mod:`expost.nn`: losses, ex post log-probabilities and decisions.

They take checked inputs (:mod:`expost.nn._checks`) and a utility already
converted to tensors (:mod:`expost.nn._convert`), and assume both are valid.

Numerical stability: every logarithm of a probability is a ``log_softmax`` or a
``logsumexp`` (never ``log(softmax(.))``); half-precision logits are upcast to
float32 before any reduction; a zero utility times ``log 0`` is 0, as in the
numpy core's ``xlogy``, with finite gradients (:func:`_zero_where_no_utility`); and zero
utilities enter log space as ``-inf`` through a double ``where``
(:func:`log_scores`), so that no NaN reaches a value or a gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import compute_dtype
from ._convert import TorchUtility


def _class_last(x: Tensor) -> Tensor:
    """(N, K, d1, ...) -> (N * d1 * ..., K); a no-op for 2-D input."""
    return x if x.ndim == 2 else x.movedim(1, -1).reshape(-1, x.shape[1])


def _restore(out: Tensor, x: Tensor) -> Tensor:
    """(M, A) class-last back to (N, A, d1, ...) for input ``x`` of shape (N, C, d1, ...)."""
    if x.ndim == 2:
        return out
    return out.reshape((x.shape[0], *x.shape[2:], out.shape[-1])).movedim(-1, 1)


def _reduce(per: Tensor, mass: Tensor, reduction: str, shape: torch.Size) -> Tensor:
    """Reduce flat per-sample losses; the total of ``mass`` divides a ``"weighted_mean"``."""
    if reduction == "mean":  # the paper's objective: a plain sample mean (not weighted)
        return per.mean()
    if reduction == "sum":
        return per.sum()
    if reduction == "weighted_mean":
        return per.sum() / mass.sum()
    return per.reshape(shape)


def _zero_where_no_utility(u: Tensor, logp: Tensor) -> Tensor:
    r"""``logp`` with ``-inf`` read as 0 where ``u == 0``, so that ``u * out`` is ``xlogy``.

    Numerical stability: ``log_softmax`` is ``-inf`` exactly where a probability
    underflows to 0 (a ``-inf`` logit, or a gap beyond the dtype's range), and
    ``0 * -inf`` is NaN. The numpy core takes :math:`0 \log 0 = 0` (``xlogy``);
    here the factor is 0 where ``u == 0``, so the term is 0 and the logits get a
    zero gradient from it (not NaN). A utility that needs a gradient gets
    :math:`\log p_a` at its zero entries, as on the others (0 where
    :math:`p_a = 0`): there the factor is ``logp`` with only ``-inf`` read as 0.
    Where ``u > 0`` and :math:`p_a = 0` the factor stays ``-inf``: the loss is
    ``+inf``, as in numpy.
    """
    if u.requires_grad:
        return torch.where(u == 0, logp.nan_to_num(nan=math.nan, neginf=0.0), logp)
    return logp.masked_fill(u == 0, 0.0)  # one pass fewer (the cost of the guard)


def _cross_entropy(x: Tensor, y: Tensor, tu: TorchUtility, reduction: str) -> Tensor:
    r"""Eq 24 (Eq 15 for class weights): :math:`-\sum_a u(a, y) \log p_a`, reduced."""
    w = tu.weights
    if w is not None and not w.requires_grad:
        # Eq 15, O(N): torch's fused log_softmax + weighted nll (a gather), which handles
        # any (N, C, d1, ...) shape itself. Targets are validated: ignore_index never fires.
        if reduction == "mean":  # the paper's plain mean: sum_i (w_{y_i} / N) l_i
            return F.cross_entropy(x, y, weight=w * (1.0 / y.numel()), reduction="sum")
        if reduction == "weighted_mean":  # sum_i w_{y_i} l_i / sum_i w_{y_i}
            return F.cross_entropy(x, y, weight=w)
        return F.cross_entropy(x, y, weight=w, reduction=reduction)
    x2, y2 = _class_last(x), y.reshape(-1)
    if w is not None:  # class weights that need a gradient (nll_loss has none for them)
        mass = w.index_select(0, y2)
        per = mass * F.cross_entropy(x2, y2, reduction="none")
        return _reduce(per, mass, reduction, y.shape)
    # Eq 24: -<log_softmax(x), u(., y)>, with 0 * log 0 = 0 unless no entry is zero.
    # For "mean" and "sum" the batch is one dot product, its factor (-1/N or -1) put
    # on the small table rather than on the result (no extra node in the graph).
    assert tu.columns is not None
    one_dot = reduction in ("mean", "sum")
    table = tu.columns
    if one_dot:
        table = table * (-1.0 / y2.numel() if reduction == "mean" else -1.0)
    cols = table.index_select(0, y2)  # (M, n_actions): u(., y_i), times the factor
    logp = torch.log_softmax(x2, dim=-1)
    if not tu.positive:
        logp = _zero_where_no_utility(cols, logp)
    if one_dot:
        return torch.dot(logp.reshape(-1), cols.reshape(-1))
    per = -(logp * cols).sum(-1)
    return _reduce(per, cols, reduction, y.shape)


def _brier(x: Tensor, y: Tensor, tu: TorchUtility, reduction: str) -> Tensor:
    """Footnote 19: :math:`\\sum_a u(a, y) \\lVert p - e_a \\rVert^2`, reduced."""
    # sum_a u(a, y) ||p - e_a||^2 = s_y (||p||^2 + 1) - 2 <u(., y), p>,
    # s_y = sum_a u(a, y): the same expansion as the numpy core's _weighted_loss.
    x2, y2 = _class_last(x), y.reshape(-1)
    p = torch.softmax(x2, dim=-1)
    sq1 = (p * p).sum(-1) + 1.0
    if tu.weights is not None:
        mass = tu.weights.index_select(0, y2)
        per = mass * (sq1 - 2.0 * p.gather(1, y2.unsqueeze(1)).squeeze(1))
    else:
        assert tu.columns is not None
        cols = tu.columns.index_select(0, y2)
        mass = cols.sum(-1)
        per = mass * sq1 - 2.0 * (cols * p).sum(-1)
    return _reduce(per, mass, reduction, y.shape)


def weighted_loss(
    base: str, logits: Tensor, y: Tensor, tu: TorchUtility, reduction: str, dtype: torch.dtype
) -> Tensor:
    """Kernel dispatch after validation: upcast to ``dtype``, then the base loss's kernel."""
    x = logits if logits.dtype == dtype else logits.to(dtype)
    return (_cross_entropy if base == "log" else _brier)(x, y, tu, reduction)


def log_scores(x: Tensor, tu: TorchUtility) -> Tensor:
    r"""Unnormalised :math:`\log (U q)_a` for class-last 2-D logits ``x`` (any additive constant).

    Diagonal: ``x + log w`` (the softmax normaliser is a per-row constant). Full
    ``U``: :math:`\operatorname{logsumexp}_c(\log q_c + \log u(a, c))` with
    :math:`\log 0 = -\infty`; an action with zero utility for every class scores
    ``-inf``. Memory O(rows x actions x classes).
    """
    if tu.weights is not None:
        return x + tu.weights.log()
    assert tu.columns is not None
    u = tu.columns.t()  # (n_actions, n_classes)
    pos = u > 0
    dead = ~pos.any(dim=1)  # actions no class rewards
    # Double where: log is only evaluated on positive entries, so zeros give -inf
    # without a NaN in any gradient; dead rows get 0 here and -inf after the logsumexp.
    zero_log = torch.where(dead[:, None], 0.0, float("-inf")).to(u.dtype)
    logu = torch.where(pos, torch.where(pos, u, 1.0).log(), zero_log)
    s = torch.logsumexp(torch.log_softmax(x, dim=-1).unsqueeze(-2) + logu, dim=-1)
    return s.masked_fill(dead, float("-inf"))


def log_probs(logits: Tensor, tu: TorchUtility) -> Tensor:
    """:math:`\\log p^u(\\operatorname{softmax}(z))` along dim 1 (Eq 8)."""
    dtype = compute_dtype(logits)
    x = logits if logits.dtype == dtype else logits.to(dtype)
    if tu.weights is not None:  # log_softmax(logits + log w) along dim 1, any shape
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return torch.log_softmax(x + tu.weights.log().view(shape), dim=1)
    out = torch.log_softmax(log_scores(_class_last(x), tu), dim=-1)
    return _restore(out, x)


def decide(logits: Tensor, tu: TorchUtility) -> Tensor:
    """:math:`\\arg\\max_a (U q)_a` along dim 1 (Eq 5, Eq 9), without a gradient."""
    dtype = compute_dtype(logits)
    with torch.no_grad():
        x = logits if logits.dtype == dtype else logits.to(dtype)
        if tu.weights is not None:  # argmax_a (logits_a + log w_a), along dim 1
            shape = (1, -1) + (1,) * (x.ndim - 2)
            return (x + tu.weights.log().view(shape)).argmax(dim=1)
        best = log_scores(_class_last(x), tu).argmax(dim=-1)
        first = tu.identical_actions()  # identical actions, rounded apart: the lowest
        if first is not None:
            best = first[best]
        return best.reshape((x.shape[0], *x.shape[2:]))
