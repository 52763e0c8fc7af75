"""``torch.nn.Module`` forms of the utility-weighted losses.

Built from the same private pieces as :mod:`expost.nn.functional`; the modules
only add state: the utility as a float64 registered buffer, converted for the
kernels through the same :func:`expost.nn._convert.from_core` as the functional
form, so that both forms compute with the same tensors and agree to the last bit.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from .._validation import _error
from . import _checks, _convert, _kernels

__all__ = ["UtilityWeightedBrier", "UtilityWeightedCrossEntropy"]


def _version(t: Tensor) -> int:
    try:
        return int(t._version)
    except RuntimeError:  # inference tensors keep no version counter (and cannot change)
        return -1


class _UtilityWeightedLoss(torch.nn.Module):
    _base: ClassVar[str]
    utility: Tensor

    def __init__(
        self,
        utility: Any,
        reduction: str = "mean",
        *,
        normalize_prior: ArrayLike | None = None,
        validate: bool = True,
    ) -> None:
        super().__init__()
        self.reduction = _checks.check_reduction(reduction)
        self.validate = bool(validate)
        u = _convert.core_utility(utility)
        if normalize_prior is not None:
            try:
                u = u.normalized(normalize_prior)  # Eq 21, the core's normalisation
            except (TypeError, ValueError) as exc:  # the core names its own argument, `prior`
                raise type(exc)(str(exc).replace("`prior`", "`normalize_prior`", 1)) from None
        self.normalized = normalize_prior is not None
        device = utility.device if isinstance(utility, Tensor) else None
        # float64, the core's precision, so that the module computes with the same values
        # as the functional form given the same utility.
        self.register_buffer(
            "utility", torch.tensor(np.array(u.matrix), dtype=torch.float64, device=device)
        )
        self._refresh(self.utility)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Check an incoming utility before torch copies it into the buffer, so that a
        # failed load leaves the module as it was (the copy then triggers a refresh).
        incoming = state_dict.get(prefix + "utility")
        if isinstance(incoming, Tensor):
            _convert.core_utility(incoming)
        super()._load_from_state_dict(state_dict, prefix, *args)

    # The buffer is the single source of truth. The core Utility read from it (checked,
    # on the CPU) is redone whenever the buffer is replaced (.to(), assignment) or
    # changed in place (load_state_dict, copy_); the kernels' tensors come from it
    # through the same conversion as the functional form's (_convert.from_core).
    def _refresh(self, buf: Tensor) -> None:
        self._core = _convert.core_utility(buf)  # the core's checks (a small CPU copy)
        self._source = buf
        self._source_version = _version(buf)

    @property
    def _diagonal(self) -> bool:
        return self._core.is_diagonal

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        buf = self._buffers["utility"]  # (not self.utility: Module.__getattr__ is slow)
        assert buf is not None
        n_actions, n_classes = buf.shape
        y = _checks.check_inputs(logits, target, n_actions, n_classes, self.validate)
        if logits.get_device() != buf.get_device():
            raise ValueError(
                _error(
                    "logits",
                    f"on the loss module's device ({buf.device}; move the module "
                    "with .to(device))",
                    _checks.describe(logits),
                )
            )
        if buf is not self._source or _version(buf) != self._source_version:
            self._refresh(buf)
        dtype = _checks.compute_dtype(logits)
        tu = _convert.from_core(self._core, dtype, buf.device)
        return _kernels.weighted_loss(self._base, logits, y, tu, self.reduction, dtype)

    def extra_repr(self) -> str:
        n_actions, n_classes = self.utility.shape
        values = self.utility.detach().to("cpu", torch.float64)
        if self._diagonal:
            w = values.diagonal()
            if n_classes <= 6:
                what = "class weights [" + ", ".join(f"{float(v):.4g}" for v in w) + "]"
            else:
                what = (
                    f"class weights over {n_classes} classes in "
                    f"[{float(w.min()):.4g}, {float(w.max()):.4g}]"
                )
        else:
            what = f"matrix of {n_actions} actions x {n_classes} classes"
        parts = [f"utility={what}", f"reduction={self.reduction!r}"]
        if self.normalized:
            parts.append("normalized (Eq 21)")
        if not self.validate:
            parts.append("validate=False")
        return ", ".join(parts)


class UtilityWeightedCrossEntropy(_UtilityWeightedLoss):
    r"""Utility-weighted (doubly-weighted) cross-entropy from logits (Eq 6, 15, 24).

    .. math:: \ell^u(p, y) = -\sum_a u(a, y) \log p_a, \qquad p = \operatorname{softmax}(z)

    The module form of :func:`expost.nn.functional.utility_weighted_cross_entropy`.

    Parameters
    ----------
    utility : Utility, array-like or Tensor of shape (n_actions, n_classes) or (m,)
        Checked by the numpy core and stored as the float64 buffer ``utility``
        (in ``state_dict``; moves and casts with ``.to()``). A 1-D input is class
        weights (Eq 14); a diagonal utility uses the O(N) class-weight path.
    reduction : {"mean", "sum", "none", "weighted_mean"}
        ``"mean"`` (default) is the paper's plain sample mean; ``"weighted_mean"``
        reproduces ``F.cross_entropy(weight=...)``'s division by the batch's total
        weight.
    normalize_prior : array-like of shape (n_classes,), optional
        The training prior :math:`\mu`; rescales the utility with
        :meth:`expost.Utility.normalized` so that predicting the prior costs
        its entropy, :math:`\bar\ell^u(\mu, \mu) = \bar\ell(\mu, \mu)` (Eq 21).
    validate : bool, default True
        Check target ranges on every call (one ``aminmax``; a sync on CUDA).

    Examples
    --------
    >>> import torch, expost
    >>> from expost.nn import UtilityWeightedCrossEntropy
    >>> mu = torch.tensor([0.5, 0.3, 0.2])
    >>> loss = UtilityWeightedCrossEntropy(expost.Utility.emphasize(3, 1, ratio=99),
    ...                                    reduction="none", normalize_prior=mu.numpy())
    >>> loss
    UtilityWeightedCrossEntropy(utility=class weights [0.02827, 2.798, 0.02827],
                                reduction='none', normalized (Eq 21))

    Eq 21: predicting the prior costs its entropy, as it does unweighted.

    >>> per_class = loss(mu.log().expand(3, 3), torch.tensor([0, 1, 2]))
    >>> round(float(mu @ per_class), 4), round(float(-(mu * mu.log()).sum()), 4)
    (1.0297, 1.0297)
    """

    _base = "log"


class UtilityWeightedBrier(_UtilityWeightedLoss):
    r"""Utility-weighted Brier loss from logits (Eq 6 with the Brier score, footnote 19).

    .. math:: \ell^u(p, y) = \sum_a u(a, y)\, \lVert p - e_a \rVert^2,
              \qquad p = \operatorname{softmax}(z)

    The module form of :func:`expost.nn.functional.utility_weighted_brier`;
    parameters as in :class:`UtilityWeightedCrossEntropy` (``normalize_prior``
    applies the same Eq 21 scaling, which is defined by the log loss).

    Examples
    --------
    >>> import torch, expost
    >>> from expost.nn import UtilityWeightedBrier
    >>> loss = UtilityWeightedBrier([[1.0, 0.0], [0.5, 2.0]])
    >>> loss
    UtilityWeightedBrier(utility=matrix of 2 actions x 2 classes, reduction='mean')
    >>> loss(torch.zeros(2, 2), torch.tensor([0, 1]))
    tensor(0.8750)
    """

    _base = "brier"
