r"""Utility-weighted training objectives and ex post predictions from logits.

Functional forms of :class:`expost.nn.UtilityWeightedCrossEntropy` and
:class:`expost.nn.UtilityWeightedBrier`, plus the ex post adjustment of an
unweighted model's logits (Theorem 1) and its decisions.

Conventions, shared by every function here:

* ``utility`` is an :class:`expost.Utility`, an array-like or a tensor of shape
  (n_actions, n_classes); a 1-D input of length m is class weights (Eq 14), like
  ``F.cross_entropy``'s ``weight``. Array-likes are checked by the numpy core; a
  :class:`~expost.Utility` is converted to a tensor once per dtype and device and
  reused. Tensors keep their autograd graph (gradients reach them) and are
  checked on a CPU copy when ``validate`` is true; a 2-D tensor always takes the
  general path (pass a ``Utility`` or 1-D weights for the O(N) class-weight path).
* ``logits`` have shape (N, K) or (N, K, d1, ...) with K along dim 1, like
  ``F.cross_entropy``; ``target`` has shape (N, d1, ...) and any integer dtype.
* float16 / bfloat16 logits are upcast to float32 before any reduction, under
  ``torch.autocast`` too; results are in the logits' dtype promoted to at least
  float32.
* Inputs are checked before any kernel runs. With ``validate=True`` (default)
  this includes the target range, one ``aminmax`` that is a device sync on CUDA;
  ``validate=False`` skips it and the value checks of a tensor utility (then an
  out-of-range target is undefined behaviour, as in ``F.cross_entropy``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from . import _checks, _convert, _kernels

__all__ = [
    "decide",
    "expost_log_probs",
    "utility_weighted_brier",
    "utility_weighted_cross_entropy",
]


def _loss(
    base: str, logits: Any, target: Any, utility: Any, reduction: str, validate: bool
) -> Tensor:
    reduction = _checks.check_reduction(reduction)
    u, n_actions, n_classes = _convert.resolve(utility, validate)
    y = _checks.check_inputs(logits, target, n_actions, n_classes, validate)
    dtype = _checks.compute_dtype(logits)
    tu = _convert.to_torch(u, dtype, logits.device)
    return _kernels.weighted_loss(base, logits, y, tu, reduction, dtype)


def _ex_post_utility(logits: Any, utility: Any, validate: bool) -> _convert.TorchUtility:
    """Check logits over classes and convert the utility for the ex post kernels."""
    u, _, n_classes = _convert.resolve(utility, validate)
    _checks.check_logits(logits, n_classes, "classes")
    return _convert.to_torch(u, _checks.compute_dtype(logits), logits.device)


def utility_weighted_cross_entropy(
    logits: Tensor,
    target: Tensor,
    utility: Any,
    reduction: str = "mean",
    *,
    validate: bool = True,
) -> Tensor:
    r"""Utility-weighted (doubly-weighted) cross-entropy from logits (Eq 6, Eq 24).

    With :math:`p = \operatorname{softmax}(z)` over actions,

    .. math:: \ell^u(p, y) = -\langle \log p, u(\cdot, y) \rangle
              = -\sum_a u(a, y) \log p_a ,

    computed as ``-(log_softmax(logits) * U[:, target].T).sum(-1)`` with
    :math:`0 \log 0 = 0`, as the numpy core's ``xlogy``: a ``-inf`` logit on an
    action of zero utility adds nothing, and gradients stay finite. For class
    weights it is :math:`-w_y \log p_y` (Eq 15), computed by torch's fused
    weighted cross-entropy in O(N).

    Parameters
    ----------
    logits : Tensor of shape (N, n_actions) or (N, n_actions, d1, ...)
        Unnormalised scores over actions (for classification, actions are classes).
    target : Tensor of shape (N,) or (N, d1, ...)
        Integer class indices in ``[0, n_classes)``.
    utility : Utility, array-like or Tensor of shape (n_actions, n_classes) or (m,)
    reduction : {"mean", "sum", "none", "weighted_mean"}
        ``"mean"`` is the paper's objective, the plain sample mean of
        :math:`\ell^u`. ``"weighted_mean"`` divides the sum by
        :math:`\sum_i \sum_a u(a, y_i)` instead (for class weights
        :math:`\sum_i w_{y_i}`), which is what ``F.cross_entropy(weight=w)``
        calls "mean": a different, batch-dependent objective.
    validate : bool, default True
        Check the target range (a device sync on CUDA) and a tensor utility's values.

    Returns
    -------
    Tensor
        A scalar, or per-sample losses of shape ``target.shape`` for ``"none"``,
        in the logits' dtype promoted to at least float32.

    Examples
    --------
    >>> import torch, expost
    >>> from expost.nn.functional import utility_weighted_cross_entropy
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> target = torch.tensor([0, 1])
    >>> u = expost.Utility.from_class_weights([1.0, 9.0])
    >>> utility_weighted_cross_entropy(logits, target, u, reduction="none")
    tensor([0.1269, 2.8193])
    >>> utility_weighted_cross_entropy(logits, target, u)  # plain mean
    tensor(1.4731)

    A masked action (logit ``-inf``) of zero utility for the target adds
    :math:`0 \log 0 = 0`: here :math:`-(2 \log 0.5 + 1 \log 0.5) = 3 \log 2`.

    >>> u = expost.Utility([[1.0, 0.0], [0.5, 2.0], [0.0, 1.0]])  # 3 actions, 2 classes
    >>> utility_weighted_cross_entropy(torch.tensor([[-torch.inf, 0.0, 0.0]]),
    ...                                torch.tensor([1]), u, reduction="none")
    tensor([2.0794])
    """
    return _loss("log", logits, target, utility, reduction, validate)


def utility_weighted_brier(
    logits: Tensor,
    target: Tensor,
    utility: Any,
    reduction: str = "mean",
    *,
    validate: bool = True,
) -> Tensor:
    r"""Utility-weighted Brier loss from logits (Eq 6 with the Brier score, footnote 19).

    With :math:`p = \operatorname{softmax}(z)` over actions and :math:`e_a` the
    a-th unit vector,

    .. math:: \ell^u(p, y) = \sum_a u(a, y)\, \lVert p - e_a \rVert^2
              = s_y (\lVert p \rVert^2 + 1) - 2 \langle u(\cdot, y), p \rangle,
              \quad s_y = \sum_a u(a, y).

    For class weights it is :math:`w_y \lVert p - e_y \rVert^2`.

    Parameters
    ----------
    logits, target, utility, reduction, validate
        As in :func:`utility_weighted_cross_entropy`; ``"weighted_mean"``
        divides by :math:`\sum_i s_{y_i}`.

    Returns
    -------
    Tensor
        A scalar, or per-sample losses of shape ``target.shape`` for ``"none"``.

    Examples
    --------
    >>> import torch, expost
    >>> from expost.nn.functional import utility_weighted_brier
    >>> u = expost.Utility.from_class_weights([1.0, 9.0])
    >>> utility_weighted_brier(torch.zeros(1, 2), torch.tensor([1]), u, reduction="none")
    tensor([4.5000])
    """
    return _loss("brier", logits, target, utility, reduction, validate)


def expost_log_probs(logits: Tensor, utility: Any, *, validate: bool = True) -> Tensor:
    r"""Log of the optimal utility-weighted prediction :math:`\log p^u(q)` from logits (Eq 8).

    Ex Post Weighting from logits: ``logits`` are an unweighted model's scores
    over *classes*, the output is over *actions*:

    .. math:: \log p^u_a(q) = \log (U q)_a - \log \iota^\top U q .

    For class weights (Eq 16) this is ``log_softmax(logits + log w)``. For a
    general ``U`` it is computed in log space,
    :math:`\operatorname{logsumexp}_c(\log q_c + \log u(a, c))` normalised over
    actions, so tiny probabilities never underflow; zero utilities enter as
    :math:`-\infty` without NaN gradients (an action with zero utility for every
    class gets :math:`-\infty`, and gradients with respect to zero entries of a
    tensor ``U`` are zero). Memory: O(N x n_actions x n_classes) for a general ``U``.

    Parameters
    ----------
    logits : Tensor of shape (N, n_classes) or (N, n_classes, d1, ...)
    utility : Utility, array-like or Tensor of shape (n_actions, n_classes) or (m,)
    validate : bool, default True
        Check a tensor utility's values.

    Returns
    -------
    Tensor of shape (N, n_actions) or (N, n_actions, d1, ...)
        ``.exp()`` equals :func:`expost.weighted_prediction` of ``softmax(logits)``.

    Examples
    --------
    >>> import torch, expost
    >>> from expost.nn.functional import expost_log_probs
    >>> u = expost.Utility.from_class_weights([1.0, 99.0])
    >>> expost_log_probs(torch.log(torch.tensor([[0.9, 0.1]])), u).exp()
    tensor([[0.0833, 0.9167]])
    """
    return _kernels.log_probs(logits, _ex_post_utility(logits, utility, validate))


def decide(logits: Tensor, utility: Any, *, validate: bool = True) -> Tensor:
    r"""Expected-utility-maximising actions from logits over classes (Eq 5, Eq 9).

    .. math:: \delta^u(q) = \arg\max_a (U q)_a = \arg\max_a p^u_a(q),
              \quad q = \operatorname{softmax}(z)

    computed as the argmax of the unnormalised log scores of
    :func:`expost_log_probs` (for class weights ``argmax(logits + log w)``).
    Ties go to the lowest action index; identical actions (equal rows of U),
    whose scores can round apart, always go to the lowest of them. No gradient.

    Parameters
    ----------
    logits : Tensor of shape (N, n_classes) or (N, n_classes, d1, ...)
    utility : Utility, array-like or Tensor of shape (n_actions, n_classes) or (m,)
    validate : bool, default True

    Returns
    -------
    Tensor of int64 of shape (N,) or (N, d1, ...)
        Action indices, as :func:`expost.decide` of ``softmax(logits)``.

    Examples
    --------
    >>> import torch, expost
    >>> from expost.nn.functional import decide
    >>> q = torch.tensor([[0.9, 0.1], [0.999, 0.001]])
    >>> decide(q.log(), expost.Utility.from_class_weights([1.0, 99.0]))
    tensor([1, 0])
    """
    return _kernels.decide(logits, _ex_post_utility(logits, utility, validate))
