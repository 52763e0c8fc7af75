"""Private pieces shared by :mod:`expost.nn.functional` and the loss modules.

Three layers, as in the numpy core:

* resolving a utility (``Utility``, array-like or tensor) to a validated core
  :class:`~expost.Utility` or a checked tensor, and converting it once to a
  :class:`TorchUtility` in the compute dtype and on the logits' device;
* input checks (:func:`check_inputs`) that run before any kernel, with the
  messages of :func:`expost._validation._error`;
* kernels (``_ce``, ``_brier``, ``log_scores``) on class-last 2-D inputs that
  assume valid input.

Numerical stability: every logarithm of a probability is a ``log_softmax`` or a
``logsumexp`` (never ``log(softmax(.))``), half-precision logits are upcast to
float32 before any reduction, and zero utilities enter log space as ``-inf``
through a double ``where`` so that no NaN reaches a gradient.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._utility import Utility, as_utility
from .._validation import _error, check_choice
from .._validation import describe as _describe_array

REDUCTIONS = ("mean", "sum", "none", "weighted_mean")
BASES = ("log", "brier")


def describe(x: Any) -> str:
    """Say briefly what ``x`` is (tensors included), for error messages."""
    if isinstance(x, Tensor):
        where = "" if x.device.type == "cpu" else f" on {x.device}"
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}{where}"
    return _describe_array(x)


def check_reduction(reduction: Any) -> str:
    return check_choice(reduction, "reduction", REDUCTIONS)


_COMPUTE_DTYPES = {torch.float32: torch.float32, torch.float64: torch.float64}


def compute_dtype(logits: Tensor) -> torch.dtype:
    """The logits' dtype promoted to at least float32 (half and bfloat16 accumulate in float32)."""
    dtype = _COMPUTE_DTYPES.get(logits.dtype)  # (a dict lookup: this runs on every call)
    return torch.promote_types(logits.dtype, torch.float32) if dtype is None else dtype


# ---------------------------------------------------------------- utilities
class TorchUtility:
    """A utility as the kernels need it, in one dtype on one device.

    ``weights`` (n_classes,) for a diagonal utility (class weights, Eq 14), else
    ``columns`` (n_classes, n_actions), row ``y`` being :math:`u(\\cdot, y)`, so that
    gathering the rows of the targets is one contiguous ``index_select``.
    :meth:`scaled` caches the table times a constant (``1 / N`` for the paper's
    plain mean, ``-1`` or ``-1 / N`` for a dot product), so that a reduction is one
    fused kernel with no extra node in the autograd graph.
    """

    __slots__ = ("_scaled", "columns", "n_actions", "n_classes", "weights")

    def __init__(
        self, weights: Tensor | None, columns: Tensor | None, n_actions: int, n_classes: int
    ) -> None:
        self.weights = weights
        self.columns = columns
        self.n_actions = n_actions
        self.n_classes = n_classes
        self._scaled: dict[float, Tensor] = {}

    @property
    def table(self) -> Tensor:
        out = self.weights if self.weights is not None else self.columns
        assert out is not None
        return out

    def scaled(self, factor: float) -> Tensor:
        """The table times ``factor`` (cached unless it carries a gradient)."""
        out = self._scaled.get(factor)
        if out is None:
            if self.table.requires_grad:  # part of this call's graph: never cached
                return self.table * factor
            with torch.inference_mode(False):  # cached: usable later with autograd
                out = self.table * factor
            if len(self._scaled) >= 8:  # batch sizes seen: the usual one and a last one
                self._scaled.clear()
            self._scaled[factor] = out
        return out


def core_utility(utility: Any, name: str = "utility") -> Utility:
    """A validated core :class:`Utility` from a Utility, array-like or tensor.

    A 1-D input is class weights (Eq 14), like ``F.cross_entropy``'s ``weight``.
    Tensors are checked on a float64 CPU copy (a device sync for CUDA tensors).
    """
    if isinstance(utility, Utility):
        return utility
    if isinstance(utility, Tensor):
        if utility.is_complex() or utility.dtype == torch.bool:
            raise TypeError(_error(name, "a real (floating or integer) tensor", describe(utility)))
        arr: Any = utility.detach().to("cpu", torch.float64).numpy()
    else:
        arr = utility
    if utility is not None and not isinstance(utility, (str, bytes)) and np.ndim(arr) == 1:
        try:
            return Utility.from_class_weights(arr)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"`{name}` (1-D, read as class weights): {exc}") from None
    return as_utility(arr, name)


_CACHE: OrderedDict[tuple[int, torch.dtype, torch.device], tuple[Utility, TorchUtility]] = (
    OrderedDict()
)
_CACHE_SIZE = 16
_CACHE_LOCK = threading.Lock()


def from_core(u: Utility, dtype: torch.dtype, device: torch.device) -> TorchUtility:
    """Convert a core Utility once per (utility, dtype, device); later calls reuse it.

    ``Utility`` is immutable, so a small identity-keyed cache is safe (it holds a
    reference to the utility, so an ``id`` is never reused while cached).
    """
    key = (id(u), dtype, device)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0] is u:
            _CACHE.move_to_end(key)
            return hit[1]
    with torch.inference_mode(False):  # cached: usable later with autograd
        if u.is_diagonal:
            weights = torch.as_tensor(np.array(u.class_weights), dtype=dtype, device=device)
            tu = TorchUtility(weights, None, u.n_actions, u.n_classes)
        else:
            cols = np.array(u.matrix.T, order="C")  # a writable copy, row y = u(., y)
            tu = TorchUtility(
                None, torch.as_tensor(cols, dtype=dtype, device=device), u.n_actions, u.n_classes
            )
    with _CACHE_LOCK:
        _CACHE[key] = (u, tu)
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return tu


def check_utility_tensor(utility: Tensor, validate: bool) -> tuple[int, int]:
    """Shape (and, if ``validate``, value) checks of a tensor utility.

    Returns ``(n_actions, n_classes)``.
    """
    if utility.ndim not in (1, 2):
        raise ValueError(
            _error(
                "utility",
                "a 1-D tensor of class weights or a 2-D matrix u[action, class]",
                describe(utility),
            )
        )
    if validate or utility.is_complex() or utility.dtype == torch.bool:
        core_utility(utility)  # the core's checks and messages: nonnegative, finite, Eq 1
    if utility.ndim == 1:
        return utility.shape[0], utility.shape[0]
    return utility.shape[0], utility.shape[1]


def from_tensor(utility: Tensor, dtype: torch.dtype, device: torch.device) -> TorchUtility:
    """A tensor utility as the kernels need it; differentiable (gradients reach ``utility``).

    A 1-D tensor is class weights; a 2-D tensor always takes the general path
    (detecting a diagonal matrix would cost a device sync on every call).
    """
    t = utility.to(device=device, dtype=dtype)
    if t.ndim == 1:
        return TorchUtility(t, None, t.shape[0], t.shape[0])
    return TorchUtility(None, t.t().contiguous(), t.shape[0], t.shape[1])


def resolve(utility: Any, validate: bool) -> tuple[Utility | Tensor, int, int]:
    """Check a functional-form utility; return it (core Utility or tensor) and its shape."""
    if isinstance(utility, Tensor):
        n_actions, n_classes = check_utility_tensor(utility, validate)
        return utility, n_actions, n_classes
    u = core_utility(utility)
    return u, u.n_actions, u.n_classes


def to_torch(u: Utility | Tensor, dtype: torch.dtype, device: torch.device) -> TorchUtility:
    return from_core(u, dtype, device) if isinstance(u, Utility) else from_tensor(u, dtype, device)


# ---------------------------------------------------------------- input checks
def check_logits(logits: Any, n_columns: int, what: str, name: str = "logits") -> None:
    if not isinstance(logits, Tensor):
        raise TypeError(_error(name, "a torch.Tensor of logits", describe(logits)))
    if not logits.is_floating_point():
        raise TypeError(
            _error(
                name,
                "a floating-point tensor of logits (float16, bfloat16, float32 or float64)",
                describe(logits),
            )
        )
    if logits.ndim < 2:
        raise ValueError(
            _error(
                name,
                f"a tensor of shape (N, {n_columns}) or (N, {n_columns}, d1, ...) "
                f"with the {what} along dim 1",
                describe(logits),
            )
        )
    if logits.shape[1] != n_columns:
        raise ValueError(
            _error(
                name,
                f"{n_columns} entries along dim 1 (one per {what[:-1]} of the utility)",
                f"{logits.shape[1]} ({describe(logits)})",
            )
        )
    if logits.numel() == 0:
        raise ValueError(_error(name, "a non-empty batch", describe(logits)))


_INTEGER_DTYPES = frozenset({torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64})


def check_target(target: Any, logits: Tensor, n_classes: int, validate: bool) -> Tensor:
    """Integer class indices shaped like ``logits`` without dim 1; returned as int64.

    With ``validate`` the range is checked with one ``aminmax`` (a device sync on CUDA).
    """
    if not isinstance(target, Tensor):
        raise TypeError(_error("target", "a torch.Tensor of class indices", describe(target)))
    if target.dtype not in _INTEGER_DTYPES:
        raise TypeError(
            _error(
                "target", "an integer tensor of class indices (e.g. torch.long)", describe(target)
            )
        )
    shape = logits.shape
    if (
        target.ndim != len(shape) - 1
        or target.shape[0] != shape[0]
        or (len(shape) > 2 and target.shape[1:] != shape[2:])
    ):
        raise ValueError(
            _error(
                "target",
                f"a tensor of shape {tuple(shape[:1] + shape[2:])} (the logits' shape "
                "without dim 1)",
                describe(target),
            )
        )
    if target.get_device() != logits.get_device():  # ints: cheaper than comparing devices
        raise ValueError(
            _error("target", f"a tensor on the logits' device ({logits.device})", describe(target))
        )
    if validate:
        bounds = torch.aminmax(target)
        if target.is_cuda:  # one device sync for both
            lo, hi = torch.stack(bounds).tolist()
        else:
            lo, hi = bounds.min.item(), bounds.max.item()
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                _error(
                    "target",
                    f"class indices in [0, {n_classes})",
                    f"the index {lo if lo < 0 else hi}",
                )
            )
    return target if target.dtype == torch.long else target.long()


def check_inputs(
    logits: Any, target: Any, n_actions: int, n_classes: int, validate: bool
) -> Tensor:
    """Logits over actions and targets over classes; returns the targets as int64."""
    if (  # the common valid case in one test, then the detailed checks for a message
        not isinstance(logits, Tensor)
        or not logits.is_floating_point()
        or logits.ndim < 2
        or logits.shape[1] != n_actions
        or logits.numel() == 0
    ):
        check_logits(logits, n_actions, "actions")
    return check_target(target, logits, n_classes, validate)


# ---------------------------------------------------------------- kernels
def _class_last(x: Tensor) -> Tensor:
    """(N, K, d1, ...) -> (N * d1 * ..., K); a no-op for 2-D input."""
    return x if x.ndim == 2 else x.movedim(1, -1).reshape(-1, x.shape[1])


def _plain(per: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":  # the paper's objective: a plain sample mean (not weighted)
        return per.mean()
    if reduction == "sum":
        return per.sum()
    return per


def _ce(x: Tensor, y: Tensor, tu: TorchUtility, reduction: str) -> Tensor:
    w = tu.weights
    if w is not None and not w.requires_grad:
        # Eq 15, O(N): torch's fused log_softmax + weighted nll (a gather), which handles
        # any (N, C, d1, ...) shape itself. Targets are validated: ignore_index never fires.
        if reduction == "mean":  # the paper's plain mean: sum_i (w_{y_i} / N) l_i
            return F.cross_entropy(x, y, weight=tu.scaled(1.0 / y.numel()), reduction="sum")
        if reduction == "weighted_mean":  # sum_i w_{y_i} l_i / sum_i w_{y_i}
            return F.cross_entropy(x, y, weight=w)
        return F.cross_entropy(x, y, weight=w, reduction=reduction)
    x2, y2 = _class_last(x), y.reshape(-1)
    if w is not None:  # class weights that need a gradient (nll_loss has none for them)
        wy = w.index_select(0, y2)
        per = wy * F.cross_entropy(x2, y2, reduction="none")
        if reduction == "weighted_mean":
            return per.sum() / wy.sum()
        return per.reshape(y.shape) if reduction == "none" else _plain(per, reduction)
    # Eq 24: -<log_softmax(x), u(., y)>. For "sum" and "mean" the whole batch is one
    # dot product of log_softmax(x) with the gathered columns, pre-scaled by -1 or -1/N.
    logp = torch.log_softmax(x2, dim=-1)
    if reduction in ("mean", "sum"):
        factor = -1.0 / y2.numel() if reduction == "mean" else -1.0
        cols = tu.scaled(factor).index_select(0, y2)  # (M, n_actions): factor * u(., y_i)
        return torch.dot(logp.reshape(-1), cols.reshape(-1))
    cols = tu.table.index_select(0, y2)
    per = -(logp * cols).sum(-1)
    if reduction == "weighted_mean":
        return per.sum() / cols.sum()
    return per.reshape(y.shape)


def _brier(x: Tensor, y: Tensor, tu: TorchUtility, reduction: str) -> Tensor:
    # Footnote 19: sum_a u(a, y) ||p - e_a||^2 = s_y (||p||^2 + 1) - 2 <u(., y), p>,
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
    if reduction == "weighted_mean":
        return per.sum() / mass.sum()
    return per.reshape(y.shape) if reduction == "none" else _plain(per, reduction)


def weighted_loss(
    base: str, logits: Tensor, y: Tensor, tu: TorchUtility, reduction: str, dtype: torch.dtype
) -> Tensor:
    """Kernel dispatch after validation: upcast to ``dtype``, then the base loss's kernel."""
    x = logits if logits.dtype == dtype else logits.to(dtype)
    return (_ce if base == "log" else _brier)(x, y, tu, reduction)


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
    dtype = compute_dtype(logits)
    x = logits if logits.dtype == dtype else logits.to(dtype)
    if tu.weights is not None:  # log_softmax(logits + log w) along dim 1, any shape
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return torch.log_softmax(x + tu.weights.log().view(shape), dim=1)
    out = torch.log_softmax(log_scores(_class_last(x), tu), dim=-1)
    return _restore(out, x)


def decide(logits: Tensor, tu: TorchUtility) -> Tensor:
    dtype = compute_dtype(logits)
    with torch.no_grad():
        x = logits if logits.dtype == dtype else logits.to(dtype)
        if tu.weights is not None:  # argmax_a (logits_a + log w_a), along dim 1
            shape = (1, -1) + (1,) * (x.ndim - 2)
            return (x + tu.weights.log().view(shape)).argmax(dim=1)
        scores = log_scores(_class_last(x), tu)
        return scores.argmax(dim=-1).reshape((x.shape[0], *x.shape[2:]))


def _restore(out: Tensor, x: Tensor) -> Tensor:
    """(M, A) class-last back to (N, A, d1, ...) for input ``x`` of shape (N, C, d1, ...)."""
    if x.ndim == 2:
        return out
    return out.reshape((x.shape[0], *x.shape[2:], out.shape[-1])).movedim(-1, 1)
