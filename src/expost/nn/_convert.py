"""One conversion path from a utility to the tensors the kernels use.

A utility arrives as an :class:`expost.Utility`, an array-like or a tensor. The
numpy core checks it (:func:`core_utility`), and :func:`convert` turns its table
into a :class:`TorchUtility` in the compute dtype on the logits' device, rounding
float64 values once. Both forms reach the kernels through :func:`from_core`, so
they compute with the same tensors and agree to the last bit:

* the functional form passes its core ``Utility``;
* a module passes the core ``Utility`` read from its float64 buffer ``utility``
  (read again whenever the buffer changes).

A tensor utility passed to the functional form is converted on every call and
keeps its autograd graph.

One cache only, in :func:`from_core`: a ``Utility`` is immutable, and keeping its
tensors per (utility, dtype, device) saves a conversion and, on an accelerator, a
host-to-device copy per call (a blocking copy in PyTorch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._utility import Utility, as_utility, first_identical_actions
from .._validation import _error
from ._checks import describe

#: Up to this many comparisons (actions squared times classes), identical actions are
#: found on the utility's device (:meth:`TorchUtility.identical_actions`).
_ON_DEVICE_COMPARISONS = 1 << 24


class TorchUtility:
    r"""A utility as the kernels need it, in one dtype on one device.

    ``weights`` (n_classes,) for a diagonal utility (class weights, Eq 14), else
    ``columns`` (n_classes, n_actions), row ``y`` being :math:`u(\cdot, y)`, so that
    gathering the rows of the targets is one contiguous ``index_select``.
    ``positive`` says that every entry is known to be positive: then no
    :math:`0 \log 0` can arise and the log loss skips its guard.
    """

    __slots__ = ("_first", "columns", "n_actions", "n_classes", "positive", "weights")

    def __init__(
        self,
        weights: Tensor | None,
        columns: Tensor | None,
        n_actions: int,
        n_classes: int,
        positive: bool = False,
    ) -> None:
        self.weights = weights
        self.columns = columns
        self.n_actions = n_actions
        self.n_classes = n_classes
        self.positive = positive
        self._first: tuple[Tensor | None] | None = None  # (identical_actions(),) once computed

    def identical_actions(self) -> Tensor | None:
        """Each action's lowest identical action, an index tensor on the table's device
        (None for class weights, or when a large table has no identical actions).

        Computed once per conversion. Up to ``_ON_DEVICE_COMPARISONS`` comparisons
        (actions squared times classes) every pair of rows is compared on the device,
        with no copy to the host and so no device sync; a larger table is copied to
        the host for :func:`expost._utility.first_identical_actions`.
        """
        if self._first is None:
            first = None
            if self.columns is not None:
                u = self.columns.detach().t()
                n_actions, n_classes = u.shape
                if n_actions * n_actions * n_classes <= _ON_DEVICE_COMPARISONS:
                    same = (u.unsqueeze(1) == u.unsqueeze(0)).all(dim=2)
                    first = same.to(torch.uint8).argmax(dim=1)  # the first True of each row
                else:
                    found = first_identical_actions(u.cpu().numpy())
                    first = None if found is None else torch.from_numpy(found).to(u.device)
            self._first = (first,)
        return self._first[0]


def convert(
    table: Tensor,
    dtype: torch.dtype,
    device: torch.device,
    *,
    diagonal: bool = False,
    positive: bool = False,
) -> TorchUtility:
    """The one conversion: a utility table to ``dtype`` on ``device``, shaped for the kernels.

    ``table`` is 1-D class weights (Eq 14) or a matrix ``u[action, class]``; a
    matrix known to be ``diagonal`` gives its diagonal as class weights, and one
    known to be ``positive`` everywhere lets the log loss skip its zero-utility
    guard. The values are rounded once, from the table's dtype to
    ``dtype``; gradients reach ``table``.
    """
    if table.ndim == 1:
        w = table.to(device=device, dtype=dtype)
        return TorchUtility(w, None, w.shape[0], w.shape[0])
    n_actions, n_classes = table.shape
    if diagonal:
        w = table.diagonal().to(device=device, dtype=dtype)
        return TorchUtility(w, None, n_actions, n_classes)
    columns = table.t().to(device=device, dtype=dtype, memory_format=torch.contiguous_format)
    return TorchUtility(None, columns, n_actions, n_classes, positive)


# The one cache: converted tensors per (utility, dtype, device), keyed by the
# utility's identity (hashing a Utility by value would read its whole matrix on every
# call). Each entry holds its utility, so an id is never reused while cached. Only
# single dict operations, each atomic, so no lock: a race at worst converts twice.
_CONVERTED: dict[tuple[int, torch.dtype, torch.device], tuple[Utility, TorchUtility]] = {}
_MAX_CONVERTED = 16


def from_core(u: Utility, dtype: torch.dtype, device: torch.device) -> TorchUtility:
    """:func:`convert` of a core Utility's float64 matrix, kept per (utility, dtype, device).

    Safe to keep: a ``Utility`` is immutable. Made outside inference mode, so that
    a first call under ``torch.inference_mode`` does not leave tensors behind that
    a later training step cannot use.
    """
    key = (id(u), dtype, device)
    hit = _CONVERTED.get(key)
    if hit is not None and hit[0] is u:
        return hit[1]
    positive = bool(np.all(u.matrix > 0))
    with torch.inference_mode(False):
        table = torch.from_numpy(np.array(u.matrix))  # a writable float64 copy
        tu = convert(table, dtype, device, diagonal=u.is_diagonal, positive=positive)
    if len(_CONVERTED) >= _MAX_CONVERTED:
        _CONVERTED.clear()
    _CONVERTED[key] = (u, tu)
    return tu


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


def resolve(utility: Any, validate: bool) -> tuple[Utility | Tensor, int, int]:
    """Check a functional-form utility; return it (core Utility or tensor) and its shape."""
    if isinstance(utility, Tensor):
        n_actions, n_classes = check_utility_tensor(utility, validate)
        return utility, n_actions, n_classes
    u = core_utility(utility)
    return u, u.n_actions, u.n_classes


def to_torch(u: Utility | Tensor, dtype: torch.dtype, device: torch.device) -> TorchUtility:
    """A resolved functional-form utility as kernel tensors.

    A tensor keeps its autograd graph; a 2-D tensor always takes the general path
    (detecting a diagonal matrix would cost a device sync on every call).
    """
    if isinstance(u, Utility):
        return from_core(u, dtype, device)
    return convert(u, dtype, device)
