"""Hypothesis strategies for the paper's objects: distributions, utilities, labels.

Import in tests as ``from strategies import simplex, utilities, ...`` (``tests/``
is on ``pythonpath``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import expost

_pos = st.floats(
    min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False, allow_subnormal=False
)


@st.composite
def simplex(draw, m: int, *, min_mass: float = 1e-4) -> np.ndarray:
    """One distribution over m classes with every entry >= min_mass / m-ish."""
    raw = draw(hnp.arrays(np.float64, (m,), elements=st.floats(0.0, 1.0)))
    raw = raw + min_mass
    if raw.sum() == 0:
        raw = np.ones(m)
    return raw / raw.sum()


@st.composite
def simplex_rows(draw, n: int, m: int, *, min_mass: float = 1e-4) -> np.ndarray:
    raw = draw(hnp.arrays(np.float64, (n, m), elements=st.floats(0.0, 1.0)))
    raw = raw + min_mass
    return raw / raw.sum(axis=1, keepdims=True)


@st.composite
def class_weights(draw, m: int) -> np.ndarray:
    return draw(hnp.arrays(np.float64, (m,), elements=_pos))


@st.composite
def utilities(
    draw, m: int, n_actions: int | None = None, *, square: bool = False
) -> expost.Utility:
    """A nonnegative, nondegenerate utility; sometimes diagonal, sometimes sparse."""
    a = m if (square or n_actions is None) else n_actions
    kind = draw(st.sampled_from(["full", "diagonal", "sparse"])) if a == m else "full"
    if kind == "diagonal":
        return expost.Utility.from_class_weights(draw(class_weights(m)))
    mat = draw(hnp.arrays(np.float64, (a, m), elements=st.one_of(st.just(0.0), _pos)))
    if kind == "sparse":
        mask = draw(hnp.arrays(np.bool_, (a, m)))
        mat = np.where(mask, mat, 0.0)
    # make it nondegenerate: each class gets a positive entry somewhere
    for y in range(m):
        if not (mat[:, y] > 0).any():
            mat[draw(st.integers(0, a - 1)), y] = draw(_pos)
    return expost.Utility(mat)


n_classes = st.integers(min_value=2, max_value=6)
