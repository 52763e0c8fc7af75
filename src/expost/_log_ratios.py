r"""Sums of logarithms over samples, one logarithm per dozens of values.

The batched metric engine (:mod:`expost._batched_metrics`) needs, for every
utility and action, :math:`\sum_i \log(x_i / d_i)` over the samples of a class.
A logarithm costs about twenty multiplications, so the values are multiplied
into running products and the logarithm of the *ratio* of the products is taken
once the products hold as many factors as their bounds allow: products of
bounded factors cannot overflow or underflow, and the logarithm of a ratio (not a
difference of two logarithms) keeps :math:`\log p` accurate when p is close to 1.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

#: Products stay in [2^-1000, 2^1000]: normal float64 numbers, 22 bits to spare.
_LOG2_SPAN = 1000.0


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
    column = [np.asarray(v)[..., None] for v in (lo, hi, dlo, dhi)]
    return int(_ratio_factors_by_column(*column)[0])


def _ratio_factors_by_column(lo: NDArray[np.float64], hi: NDArray[np.float64],
                             dlo: NDArray[np.float64], dhi: NDArray[np.float64]
                             ) -> NDArray[np.intp]:
    """:func:`_ratio_factors` of each column (last axis) of the bounds: many classes at once."""
    lo, hi, dlo, dhi = np.broadcast_arrays(lo, hi, dlo, dhi)
    rest = tuple(range(lo.ndim - 1))
    positive = np.all(lo > 0, axis=rest) & np.all(dlo > 0, axis=rest)
    with np.errstate(divide="ignore", invalid="ignore"):
        l_lo, l_hi, d_lo, d_hi = np.log2(lo), np.log2(hi), np.log2(dlo), np.log2(dhi)
        e = np.max(np.abs(np.stack([l_lo, l_hi, d_lo, d_hi, l_lo - d_hi, l_hi - d_lo])),
                   axis=(0, *(a + 1 for a in rest)))
        g = np.maximum(1.0, _LOG2_SPAN // np.maximum(e, 1.0))
    return np.where(positive, g, 1.0).astype(np.intp)


class _LogRatios:
    r"""Sums over samples of :math:`\log(x / d)` for a stream of blocks, from products.

    Blocks are ``x`` of shape (..., n, kb) and ``d`` of shape (n, kb) (samples on
    axis -2). The products of x and of d over samples are carried from block to block
    until they hold ``g`` factors (:func:`_ratio_factors`); then the logarithm of their
    ratio is added: one logarithm per g values instead of one per value. Rounding: a
    product of g factors carries a relative error of at most g ulps (about
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
            self._add_long_block(x, d)
            return
        if self.factors + n > self.g:
            self._flush()
        self.px *= np.multiply.reduce(x, axis=-2)
        self.pd *= np.multiply.reduce(d, axis=0)
        self.factors += n

    def _add_long_block(self, x: NDArray[np.float64], d: NDArray[np.float64]) -> None:
        n = x.shape[-2]
        nb = -(-n // (self.g - 1))
        gg = n // nb
        px = np.multiply.reduce(x[..., :gg * nb, :].reshape(*x.shape[:-2], gg, nb, -1), axis=-3)
        pd = np.multiply.reduce(d[:gg * nb].reshape(gg, nb, -1), axis=0)
        rem = n - gg * nb  # < nb leftover rows: one more factor for the first rem
        if rem:
            px[..., :rem, :] *= x[..., gg * nb:, :]
            pd[:rem] *= d[gg * nb:]
        px /= pd
        self.total += np.log(px).sum(axis=-2)

    def _flush(self) -> None:
        if self.factors:
            self.total += np.log(self.px / self.pd)
            self.px.fill(1.0)
            self.pd.fill(1.0)
            self.factors = 0

    def result(self) -> NDArray[np.float64]:
        self._flush()
        return self.total
