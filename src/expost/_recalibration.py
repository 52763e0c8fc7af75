r"""Analytic recalibration: inverting Theorem 1, and prior shift (Appendix A.4, A.5)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _decisions
from ._decisions import Check, _blockwise, _scaled, _wp_kernel
from ._utility import Utility, as_utility
from ._validation import (
    _error,
    check_choice,
    check_int,
    check_number,
    check_prior,
    check_probabilities,
)

__all__ = ["PriorEstimate", "adjust_prior", "estimate_target_prior", "recover_posterior"]


def _inverse(u: Utility) -> NDArray[np.float64]:
    """U^-1 (scaled by a power of two), read-only: cached for a small U, as the kernels'
    preparation is (``_decisions.PREPARED_ENTRIES``)."""
    m = u.matrix
    if m.size > _decisions.PREPARED_ENTRIES:
        return _inverse_of(m)
    return _inverse_by_bytes(m.shape, np.ascontiguousarray(m, dtype=np.float64).tobytes())


@lru_cache(maxsize=_decisions.PREPARED_CACHE)
def _inverse_by_bytes(shape: tuple[int, ...], data: bytes) -> NDArray[np.float64]:
    return _inverse_of(np.frombuffer(data, dtype=np.float64).reshape(shape))


def _inverse_of(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    m = _scaled(matrix)  # exact; Eq 26 is invariant to scaling U, and U near 1e308 inverts cleanly
    if m.shape[0] != m.shape[1]:
        raise ValueError(
            f"`utility` must be square to be inverted (Theorem 2), got shape {m.shape}; "
            "recover posteriors empirically instead (expost.learned_posteriors or "
            "expost.fit_vector_scaling on held-out data)."
        )
    cond = np.linalg.cond(m)
    if not np.isfinite(cond) or cond > 1e12:
        raise ValueError(
            f"`utility` is singular (condition number {cond:.3g}), so p^u is not invertible and "
            "Theorem 2 does not apply: several posteriors map to the same prediction. Recalibrate "
            "empirically instead (expost.learned_posteriors or expost.fit_vector_scaling on "
            "held-out data)."
        )
    inv = np.array(np.linalg.inv(m), dtype=np.float64)
    inv.flags.writeable = False
    return inv


def recover_posterior(
    p: ArrayLike,
    utility: Utility | ArrayLike,
    *,
    invalid: Literal["clip", "raise", "keep"] = "clip",
) -> NDArray[np.floating]:
    r"""Recover the posterior q behind a utility-weighted prediction (Theorem 2, Eq 26).

    .. math:: [p^u]^{-1}(p) = \frac{U^{-1} p}{\iota^\top U^{-1} p}

    For class weights this is Eq 27, :math:`q_y \propto p_y / w_y`. It undoes
    :func:`weighted_prediction` exactly: ``recover_posterior(weighted_prediction(q, u), u) == q``
    (to rounding).

    U is scaled by a power of two before it is inverted (exact; Eq 26 is
    invariant to scaling U), so utilities near 1e308 or 5e-324 invert cleanly.
    The result is computed as Eq 8 with :math:`U^{-1}` in place of U (see
    :func:`weighted_prediction`): equal to the naive formula to rounding, not
    bit for bit.

    Parameters
    ----------
    p : array-like of shape (n_samples, n_classes) or (n_classes,)
        Predictions of a model trained with the utility-weighted loss.
    utility : Utility or array-like, square and invertible
        A singular ``U`` raises a ValueError (recalibrate empirically instead).
    invalid : {"clip", "raise", "keep"}
        What to do with a row of ``p`` outside the image of :math:`p^u` (its
        inversion leaves the simplex): clip negatives to zero and renormalise,
        raise a ValueError, or return the signed solution as it is.

    Returns
    -------
    ndarray like ``p``, in its floating dtype.

    Examples
    --------
    >>> import expost
    >>> u = expost.Utility.from_class_weights([1, 99])
    >>> recover_posterior([0.08333333, 0.91666667], u).round(6)
    array([0.9, 0.1])
    """
    check_choice(invalid, "invalid", ("clip", "raise", "keep"))
    uu = as_utility(utility)
    inv = _inverse(uu)
    arr, was_1d = check_probabilities(p, "p", n_columns=uu.n_classes, values=False)
    out = np.empty_like(arr)
    tol = 64 * np.finfo(out.dtype).eps * max(1.0, float(np.linalg.norm(inv, np.inf)))
    # Eq 26 is Eq 8 with U^-1 in place of U. Unless invalid="keep", its kernel reports
    # each block's least entry (NaN where one is NaN or infinite: where 1'U^-1 p = 0) and
    # writes rounding-level negatives (q with zeros), those in [-tol, 0), as 0 (a block
    # with a row outside the image keeps that row's larger negatives for the code below).
    forward = _wp_kernel(inv, arr.dtype, clip_tol=None if invalid == "keep" else tol)
    outside = False  # does any row leave the simplex? (checked block by block, in cache)

    def kernel(block: NDArray[np.floating], dest: NDArray[np.floating], check: Check) -> None:
        nonlocal outside
        least = forward(block, dest, check)
        if least is not None and not least >= -tol:
            outside = True  # handled below, once for the whole array

    _blockwise(arr, out, kernel, check_as="p")  # rows outside the image: below
    if outside:
        ones = np.ones(out.shape[1], dtype=out.dtype)
        bad = ~np.isfinite(out @ ones)  # no positive rescaling of U^-1 p reaches the simplex
        if invalid == "raise":
            rows = np.flatnonzero(bad | (out.min(axis=1) < -tol))
            raise ValueError(
                _error(
                    "p",
                    "utility-weighted predictions in the image of p^u (Theorem 2)",
                    f"row {int(rows[0])}, whose inversion leaves the simplex",
                )
            )
        if bad.any():
            out[bad] = arr[bad] @ inv.T.astype(arr.dtype)  # U^-1 p as it is, clipped below
        np.copyto(out, 0.0, where=out < 0)  # a bool temporary, on this rare path only
        sums = out @ ones
        empty = sums <= 0
        if empty.any():  # nothing left after clipping: no information, uniform
            out[empty] = 1.0 / out.shape[1]
            sums[empty] = 1.0
        out /= sums[:, None]
    return out[0] if was_1d else out


def adjust_prior(
    q: ArrayLike, source_prior: ArrayLike, target_prior: ArrayLike
) -> NDArray[np.floating]:
    r"""Posteriors under a new class prior (Proposition 3; Saerens et al. 2002, Eq 25).

    .. math:: p_y(x) = \frac{\bar w_y q_y(x)}{\langle \bar w, q(x)\rangle},
       \quad \bar w_y = \bar p_y / \bar q_y

    Valid when the class-conditional feature distributions stay fixed. It is
    the class-weight adjustment of Eq 16 with :math:`w = \bar p / \bar q`.

    Parameters
    ----------
    q : array-like of shape (n_samples, n_classes) or (n_classes,)
        Posteriors under the source (training) prior.
    source_prior : array-like of shape (n_classes,), strictly positive
    target_prior : array-like of shape (n_classes,), nonnegative

    Examples
    --------
    >>> adjust_prior([0.5, 0.5], [0.9, 0.1], [0.5, 0.5]).round(3)
    array([0.1, 0.9])
    """
    arr, was_1d = check_probabilities(q, "q")
    src = check_prior(source_prior, "source_prior", n_classes=arr.shape[1])
    tgt = check_prior(target_prior, "target_prior", n_classes=arr.shape[1], strictly_positive=False)
    w = (tgt / src).astype(arr.dtype)
    out = arr * w
    den = out.sum(axis=1, keepdims=True)
    if (den <= 0).any():
        row = int(np.flatnonzero(den[:, 0] <= 0)[0])
        raise ValueError(
            _error(
                "target_prior",
                "positive on some class each row of `q` supports",
                f"zero mass for row {row}",
            )
        )
    out /= den
    return out[0] if was_1d else out


class PriorEstimate(tuple):  # type: ignore[type-arg,unused-ignore]
    """Result of :func:`estimate_target_prior`.

    Unpacks as ``prior, posteriors = estimate``; ``n_iter`` and ``converged``
    are attributes.
    """

    prior: NDArray[np.float64]
    posteriors: NDArray[np.floating]
    n_iter: int
    converged: bool

    def __new__(
        cls,
        prior: NDArray[np.float64],
        posteriors: NDArray[np.floating],
        n_iter: int,
        converged: bool,
    ) -> PriorEstimate:
        self = super().__new__(cls, (prior, posteriors))
        self.prior, self.posteriors = prior, posteriors
        self.n_iter, self.converged = n_iter, converged
        return self

    def __getnewargs__(self) -> tuple[object, ...]:
        return (self.prior, self.posteriors, self.n_iter, self.converged)

    def __repr__(self) -> str:
        return (
            f"PriorEstimate(prior={self.prior!r}, n_iter={self.n_iter}, converged={self.converged})"
        )


def estimate_target_prior(
    q: ArrayLike,
    source_prior: ArrayLike,
    *,
    tol: float = 1e-8,
    max_iter: int = 1000,
) -> PriorEstimate:
    r"""Estimate an unknown target prior by EM (Saerens, Latinne and Decaestecker 2002).

    Given source-prior posteriors :math:`q(x_i)` on unlabelled target data,
    iterate

    .. math:: p^{(s)}(x_i) = \text{adjust\_prior}(q(x_i), \bar q, \bar p^{(s)}), \qquad
              \bar p^{(s+1)} = \frac1n \sum_i p^{(s)}(x_i)

    from :math:`\bar p^{(0)} = \bar q` until the prior moves less than ``tol`` (max-norm).

    Returns
    -------
    PriorEstimate
        Unpacks as ``(prior, posteriors)``; also has ``n_iter`` and ``converged``.

    Examples
    --------
    >>> est = estimate_target_prior([[0.5, 0.5], [0.5, 0.5]], [0.5, 0.5])
    >>> est.prior, est.converged
    (array([0.5, 0.5]), True)
    """
    arr, was_1d = check_probabilities(q, "q")
    src = check_prior(source_prior, "source_prior", n_classes=arr.shape[1])
    max_iter = check_int(max_iter, "max_iter", minimum=1, expected="a positive integer")
    tol = check_number(tol, "tol", minimum=0.0, expected="a positive number")
    q64 = arr.astype(np.float64)
    prior = src.copy()
    post = q64
    converged = False
    n_iter = 0
    for _ in range(int(max_iter)):
        n_iter += 1
        post = q64 * (prior / src)
        post /= post.sum(axis=1, keepdims=True)
        new = post.mean(axis=0)
        delta = float(np.max(np.abs(new - prior)))
        prior = new
        if delta < tol:
            converged = True
            break
    post = q64 * (prior / src)
    post /= post.sum(axis=1, keepdims=True)
    posteriors = post.astype(arr.dtype, copy=False)
    return PriorEstimate(prior, posteriors[0] if was_1d else posteriors, n_iter, converged)
