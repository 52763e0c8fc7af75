r"""Ex post decisions: expected utility, the optimal weighted prediction, argmax rules.

Rows of ``q`` are class distributions (calibrated probabilities). All functions
accept any floating dtype and compute in it (float16 is promoted to float32,
integers to float64); they never modify their inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._utility import Utility, as_utility
from ._validation import _error, check_probabilities, check_rows, probability_atol

__all__ = ["decide", "elkan_threshold", "expected_utility", "weighted_prediction"]


# ---------------------------------------------------------------- private cores
#: Rows per block: a block of q (and its output) stays in cache between the
#: check, the product and the normalisation, so q is read from memory once and
#: no temporary grows with the input.
BLOCK_ROWS = 16384

Kernel = Callable[[NDArray[np.floating], NDArray[Any]], None]


def _blockwise(
    q: NDArray[np.floating],
    out: NDArray[Any],
    kernel: Kernel,
    *,
    check_as: str | None = None,
) -> NDArray[Any]:
    """Run ``kernel(q_block, out_block)`` over row blocks; check each block first if asked."""
    tol = probability_atol(q) if check_as is not None else 0.0
    for start in range(0, q.shape[0], BLOCK_ROWS):
        block = q[start : start + BLOCK_ROWS]
        if check_as is not None:
            check_rows(block, check_as, tol, offset=start)
        kernel(block, out[start : start + BLOCK_ROWS])
    return out


def _eu_kernel(u: NDArray[np.float64], dtype: np.dtype[Any]) -> Kernel:
    ut = u.T.astype(dtype)

    def kernel(block: NDArray[np.floating], out: NDArray[Any]) -> None:
        np.matmul(block, ut, out=out)

    return kernel


def _wp_kernel(u: NDArray[np.float64], dtype: np.dtype[Any]) -> Kernel:
    # Uq / 1'Uq; the denominator is q . (1'U), a matrix-vector product.
    ut, colsum = u.T.astype(dtype), u.sum(axis=0).astype(dtype)

    def kernel(block: NDArray[np.floating], out: NDArray[Any]) -> None:
        np.matmul(block, ut, out=out)
        out /= (block @ colsum)[:, None]

    return kernel


def _decide_kernel(u: NDArray[np.float64], dtype: np.dtype[Any]) -> Kernel:
    ut = u.T.astype(dtype)

    def kernel(block: NDArray[np.floating], out: NDArray[Any]) -> None:
        np.argmax(block @ ut, axis=1, out=out)

    return kernel


def _expected_utility(
    q: NDArray[np.floating], u: NDArray[np.float64], *, check_as: str | None = None
) -> NDArray[np.floating]:
    out = np.empty((q.shape[0], u.shape[0]), dtype=q.dtype)
    return _blockwise(q, out, _eu_kernel(u, q.dtype), check_as=check_as)


def _weighted_prediction(
    q: NDArray[np.floating], u: NDArray[np.float64], *, check_as: str | None = None
) -> NDArray[np.floating]:
    out = np.empty((q.shape[0], u.shape[0]), dtype=q.dtype)
    return _blockwise(q, out, _wp_kernel(u, q.dtype), check_as=check_as)


def _decide(
    q: NDArray[np.floating], u: NDArray[np.float64], *, check_as: str | None = None
) -> NDArray[np.intp]:
    out = np.empty(q.shape[0], dtype=np.intp)
    return _blockwise(q, out, _decide_kernel(u, q.dtype), check_as=check_as)


def _prepare(
    q: ArrayLike, utility: Utility | ArrayLike, name: str = "q"
) -> tuple[NDArray[np.floating], bool, Utility]:
    """Type and shape checks; the values are checked block by block by the caller's kernel."""
    u = as_utility(utility)
    arr, was_1d = check_probabilities(q, name, n_columns=u.n_classes, values=False)
    return arr, was_1d, u


# ---------------------------------------------------------------- public API
def expected_utility(q: ArrayLike, utility: Utility | ArrayLike) -> NDArray[np.floating]:
    r"""Expected utility of every action under class distribution ``q`` (Eq 3).

    .. math:: \bar u(a, q) = \langle u(a, \cdot), q \rangle = (U q)_a

    Parameters
    ----------
    q : array-like of shape (n_samples, n_classes) or (n_classes,)
        Class distributions.
    utility : Utility or array-like of shape (n_actions, n_classes)

    Returns
    -------
    ndarray of shape (n_samples, n_actions) (or (n_actions,)), in q's floating dtype.

    Examples
    --------
    >>> import expost
    >>> expost.expected_utility([0.9, 0.1], expost.Utility.from_class_weights([1, 99]))
    array([0.9, 9.9])
    """
    arr, was_1d, u = _prepare(q, utility)
    out = _expected_utility(arr, u.matrix, check_as="q")
    return out[0] if was_1d else out


def weighted_prediction(q: ArrayLike, utility: Utility | ArrayLike) -> NDArray[np.floating]:
    r"""The optimal utility-weighted prediction :math:`p^u(q)` (Theorem 1, Eq 8).

    .. math:: p^u_a(q) = \frac{\bar u(a, q)}{\sum_{a'} \bar u(a', q)} = \frac{(Uq)_a}{\iota^\top U q}

    It minimises the expected utility-weighted loss (Eq 7) for every strictly
    proper base loss. For class weights it is Eq 16,
    :math:`p^w_y(q) = w_y q_y / \langle w, q \rangle`. This is *Ex Post
    Weighting*: apply it to the calibrated predictions of an unweighted model.

    Parameters
    ----------
    q : array-like of shape (n_samples, n_classes) or (n_classes,)
    utility : Utility or array-like of shape (n_actions, n_classes)

    Returns
    -------
    ndarray of shape (n_samples, n_actions) (or (n_actions,)), rows on the
    simplex, in q's floating dtype.

    Examples
    --------
    >>> import expost
    >>> expost.weighted_prediction([0.9, 0.1], expost.Utility.from_class_weights([1, 99]))
    array([0.08333333, 0.91666667])
    """
    arr, was_1d, u = _prepare(q, utility)
    out = _weighted_prediction(arr, u.matrix, check_as="q")
    return out[0] if was_1d else out


def decide(q: ArrayLike, utility: Utility | ArrayLike) -> NDArray[np.intp]:
    r"""Expected-utility-maximising actions (Eq 5); equal to :math:`\arg\max_a p^u_a(q)` (Eq 9).

    .. math:: \delta^u(q) = \arg\max_a \bar u(a, q)

    Ties go to the lowest action index. Returns action *indices*; map them
    through ``utility.actions`` for labels.

    Parameters
    ----------
    q : array-like of shape (n_samples, n_classes) or (n_classes,)
    utility : Utility or array-like of shape (n_actions, n_classes)

    Returns
    -------
    ndarray of intp of shape (n_samples,) (a scalar for 1-D ``q``).

    Examples
    --------
    >>> import expost
    >>> expost.decide([[0.9, 0.1], [0.999, 0.001]], expost.Utility.from_class_weights([1, 99]))
    array([1, 0])
    """
    arr, was_1d, u = _prepare(q, utility)
    out = _decide(arr, u.matrix, check_as="q")
    return out[0] if was_1d else out


def elkan_threshold(utility: Utility | ArrayLike) -> float:
    r"""Elkan's (2001) threshold on :math:`q_1` for a binary decision (Appendix A.1).

    The probability of class 1 at which both actions have equal expected utility;
    action 1 is optimal for :math:`q_1 \ge q_1^c`:

    .. math:: q_1^c = \frac{u(0,0) - u(1,0)}{u(0,0) - u(1,0) + u(1,1) - u(0,1)}

    For class weights :math:`(w_0, w_1)` it is :math:`w_0 / (w_0 + w_1)`. In cost
    terms (``Utility.from_costs``) it is Elkan's
    :math:`(c_{10} - c_{00}) / (c_{10} - c_{00} + c_{01} - c_{11})`.

    Parameters
    ----------
    utility : Utility or array-like of shape (2, 2)
        Must be "reasonable": each correct action strictly better than the
        wrong one for its class.

    Examples
    --------
    >>> import expost
    >>> expost.elkan_threshold(expost.Utility.from_class_weights([1, 99]))
    0.01
    """
    u = as_utility(utility)
    if u.matrix.shape != (2, 2):
        raise ValueError(_error("utility", "a 2 x 2 (binary) utility", f"shape {u.matrix.shape}"))
    m = u.matrix
    gain0 = m[0, 0] - m[1, 0]  # value of acting correctly when the class is 0
    gain1 = m[1, 1] - m[0, 1]
    if gain0 <= 0 or gain1 <= 0:
        raise ValueError(
            _error(
                "utility",
                "a reasonable binary utility (u[0,0] > u[1,0] and u[1,1] > u[0,1])",
                f"{m.tolist()}",
            )
        )
    return float(gain0 / (gain0 + gain1))
