"""Input checks shared by every public function.

All errors use one template, :func:`_error`, so that a message always names the
argument, what was expected and what arrived::

    `q` must be rows of class probabilities (each row summing to 1), got ...

Public functions call the ``check_*`` helpers at the edge and then work on
validated arrays; the private ``_core`` helpers assume valid input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._rows import any_sign_bit, value_range

__all__ = [
    "check_int",
    "check_labels",
    "check_prior",
    "check_probabilities",
    "check_random_state",
    "check_reduction",
    "check_rows",
    "describe",
    "reduce",
]

REDUCTIONS = ("none", "mean", "sum")


def describe(x: Any) -> str:
    """Say briefly what ``x`` is, for error messages."""
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape} and dtype {x.dtype}"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of length {len(x)}"
    if isinstance(x, str):
        return f"the string {x!r}"
    if x is None:
        return "None"
    return (
        f"{type(x).__name__} {x!r}" if np.isscalar(x) else f"an object of type {type(x).__name__}"
    )


def _error(name: str, expected: str, got: str) -> str:
    return f"`{name}` must be {expected}, got {got}."


def as_float_array(x: ArrayLike, name: str) -> NDArray[np.floating]:
    """Convert to a floating array without copying floating input of this machine's byte order.

    float16 is promoted to float32 (numpy has no fast half-precision kernels);
    integer and boolean input becomes float64; an array of the other byte order
    (big-endian data on a little-endian machine) becomes a copy in the native one.
    Non-numeric input raises TypeError.
    """
    return _as_float(x, name)[0]


def _as_float(x: ArrayLike, name: str) -> tuple[NDArray[np.floating], bool]:
    """:func:`as_float_array`, and whether ``x`` was float16 (then the array is a new copy)."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(_error(name, "a numeric array", describe(x)))
    if np.ma.isMaskedArray(x) and np.ma.getmask(x) is not np.ma.nomask and np.ma.getmask(x).any():
        raise ValueError(_error(name, "an array without masked entries (np.asarray would use the "
                                "values under the mask; fill them or drop their rows first)",
                                f"a masked array with {int(np.ma.getmask(x).sum())} masked of "
                                f"{np.ma.getmask(x).size} entries"))
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(_error(name, "a numeric array", describe(x))) from exc
    if not arr.dtype.isnative:  # big-endian data on this machine, say: a native copy, so
        arr = arr.astype(arr.dtype.newbyteorder("="))  # that bit-level checks read the right bits
    if arr.dtype == np.float16:
        return arr.astype(np.float32), True
    if arr.dtype.kind == "f":
        return arr, False
    if arr.dtype.kind in "iub":
        return arr.astype(np.float64), False
    raise TypeError(_error(name, "a numeric (real, floating) array", describe(arr)))


def _default_atol(dtype: np.dtype[Any], n: int) -> float:
    # Rounding in a sum of n entries: generous multiple of machine epsilon,
    # never tighter than 1e-6 so float64 softmax outputs always pass.
    return float(max(1e-6, 64.0 * np.finfo(dtype).eps * max(n, 1)))


def _half_atol(n: int) -> float:
    """The simplex tolerance for float16 rows: rounding each entry to float16 moves a row's
    sum by up to half of float16's epsilon (4.9e-4); eight epsilons (7.8e-3) also cover a
    softmax computed in float16, and still refuse a row that sums to 0.99."""
    return max(_default_atol(np.dtype(np.float32), n), 8.0 * float(np.finfo(np.float16).eps))


def _row_at(i: int, j: int | None = None) -> str:
    """Where row ``i`` (and column ``j``) of an array is, for messages: indices from 0."""
    return f"row {i}" if j is None else f"row {i}, column {j}"


#: ``at(i, j=None)``: how a message names row ``i`` (and column ``j``) of the checked
#: rows, both counted from 0 (the command line names a file's own rows and columns).
RowNamer = Callable[..., str]


def check_probabilities(
    p: ArrayLike,
    name: str,
    *,
    n_columns: int | None = None,
    column_name: str = "class",
    atol: float | None = None,
    values: bool = True,
    at: RowNamer | None = None,
) -> tuple[NDArray[np.floating], bool]:
    """Check rows of probability distributions.

    Accepts a 1-D distribution (one row) or a 2-D array of rows. Returns the
    floating 2-D array (a view when possible, never a modified copy of the
    caller's data) and whether the input was 1-D, so results can be squeezed.

    With ``values=False`` only the type and shape are checked; the caller then
    runs :func:`check_rows` on each block it processes (one pass over the data
    instead of two).

    float16 rows are promoted to float32 (a new array), checked against float16's
    rounding (:func:`_half_atol`, unless ``atol`` is given) whatever ``values``
    says, and divided by their sums, so that every later check and computation
    sees rows on the simplex to float32's rounding.

    ``at(i, j=None)`` names row ``i`` (and column ``j``), counted from 0, in an error
    (default: ``row i``, ``row i, column j``); the command line names a file's rows.
    """
    arr, half = _as_float(p, name)
    was_1d = arr.ndim == 1
    if arr.ndim not in (1, 2):
        raise ValueError(
            _error(name, "a 1-D distribution or a 2-D array of row distributions", describe(arr))
        )
    arr2 = arr[None, :] if was_1d else arr
    if arr2.shape[0] == 0 or arr2.shape[1] == 0:
        raise ValueError(_error(name, "a non-empty array", describe(arr)))
    if n_columns is not None and arr2.shape[1] != n_columns:
        raise ValueError(
            _error(
                name,
                f"an array with {n_columns} columns (one per {column_name})",
                f"{arr2.shape[1]} columns ({describe(arr)})",
            )
        )
    if half:
        check_rows(arr2, name, _half_atol(arr2.shape[1]) if atol is None else float(atol), at=at)
        arr2 /= arr2 @ np.ones(arr2.shape[1], dtype=arr2.dtype)[:, None]  # our own copy
    elif values:
        check_rows(arr2, name, probability_atol(arr2, atol), at=at)
    return arr2, was_1d


def probability_atol(arr: NDArray[np.floating], atol: float | None = None) -> float:
    """The tolerance of the simplex check for rows of ``arr`` (``atol`` if given)."""
    return _default_atol(arr.dtype, arr.shape[1]) if atol is None else float(atol)


def check_rows(rows: NDArray[np.floating], name: str, tol: float, offset: int = 0,
               at: RowNamer | None = None) -> None:
    """Finite, nonnegative rows summing to 1 within ``tol``; an error names the first bad
    row (counted from ``offset``, or named by ``at``) and what is wrong with it.

    One row-sum pass (a matrix-vector product, which also detects NaN and inf:
    they propagate into the row's sum) and one minimum pass; only a bad input pays
    for finding its first bad row.
    """
    sums = rows @ np.ones(rows.shape[1], dtype=rows.dtype)
    with np.errstate(invalid="ignore"):
        if (np.isfinite(sums).all() and rows.min() >= -tol
                and np.abs(sums - 1.0).max() <= tol):
            return
        finite, nonnegative = np.isfinite(rows), rows >= -tol
        bad = ~finite.all(axis=1) | ~nonnegative.all(axis=1) | ~(np.abs(sums - 1.0) <= tol)
    i = int(np.argmax(bad))
    where = at or (lambda k, j=None: _row_at(offset + k, j))
    if not finite[i].all():
        j = int(np.argmin(finite[i]))
        raise ValueError(_error(name, "finite (no NaN or inf)", f"{rows[i, j]} at {where(i, j)}"))
    if not nonnegative[i].all():
        j = int(np.argmin(nonnegative[i]))
        raise ValueError(_error(name, "nonnegative probabilities",
                                f"{float(rows[i, j]):.6g} at {where(i, j)}"))
    raise ValueError(_error(name, f"rows on the probability simplex (each summing to 1 within "
                            f"{tol:.1e})", f"{where(i)} summing to {float(sums[i]):.6g}"))


def check_labels(
    y: ArrayLike, name: str, *, n_classes: int, n_samples: int | None = None
) -> NDArray[np.intp]:
    """Check integer class labels in ``[0, n_classes)``; return an intp array."""
    if isinstance(y, (str, bytes)) or y is None:
        raise TypeError(_error(name, "an array of integer class labels", describe(y)))
    arr = np.asarray(y)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1:
        raise ValueError(_error(name, "a 1-D array of class labels", describe(arr)))
    if arr.size == 0:
        raise ValueError(_error(name, "a non-empty array of class labels", describe(arr)))
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise ValueError(
                _error(
                    name,
                    "integer class labels",
                    "non-integer values (e.g. "
                    f"{arr[~np.isfinite(arr) | (arr != np.round(arr))][0]!r})",
                )
            )
    elif arr.dtype.kind not in "iu":
        raise TypeError(_error(name, "an array of integer class labels", describe(arr)))
    if n_samples is not None and arr.shape[0] != n_samples:
        raise ValueError(_error(name, f"one label per row ({n_samples})", f"{arr.shape[0]} labels"))
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(_error(name, f"class labels in [0, {n_classes})", f"the label {bad!r}"))
    return arr.astype(np.intp, copy=False)


def check_prior(
    prior: ArrayLike, name: str, *, n_classes: int | None = None, strictly_positive: bool = True
) -> NDArray[np.float64]:
    """Check a class prior: 1-D, finite, (strictly) positive, summing to 1."""
    arr = as_float_array(prior, name).astype(np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(_error(name, "a non-empty 1-D probability vector", describe(arr)))
    if n_classes is not None and arr.size != n_classes:
        raise ValueError(
            _error(name, f"{n_classes} entries (one per class)", f"{arr.size} entries")
        )
    if not np.isfinite(arr).all():
        raise ValueError(_error(name, "finite", "a NaN or inf entry"))
    if strictly_positive and (arr <= 0).any():
        j = int(np.flatnonzero(arr <= 0)[0])
        raise ValueError(
            _error(name, "strictly positive class probabilities", f"{arr[j]:.6g} for class {j}")
        )
    if (arr < 0).any():
        j = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(_error(name, "nonnegative", f"{arr[j]:.6g} for class {j}"))
    if abs(arr.sum() - 1.0) > 1e-6:
        raise ValueError(
            _error(name, "a probability vector summing to 1", f"a sum of {arr.sum():.6g}")
        )
    return arr


def check_reduction(reduction: str, name: str = "reduction") -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(_error(name, f"one of {REDUCTIONS}", describe(reduction)))
    return reduction


def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = None,
    expected: str | None = None,
    wrong_type: type[Exception] = ValueError,
) -> int:
    """An integer (``bool`` excluded) of at least ``minimum``; return it as ``int``.

    A value of another type raises ``wrong_type`` (``ValueError`` by default: 2.5
    where a count is expected is a bad value; pass ``TypeError`` where the type
    is the point), a value below ``minimum`` raises ``ValueError``. ``expected``
    replaces the default wording ("an integer >= minimum") in both messages.

    >>> check_int(3, "n_bins", minimum=1)
    3
    >>> check_int(True, "n_bins", minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: `n_bins` must be an integer >= 1, got bool True.
    """
    text = expected or ("an integer" if minimum is None else f"an integer >= {minimum}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise wrong_type(_error(name, text, describe(value)))
    if minimum is not None and value < minimum:
        raise ValueError(_error(name, text, describe(value)))
    return int(value)


def check_number(value: Any, name: str, *, minimum: float | None = None,
                 strict: bool = True, expected: str | None = None) -> float:
    """A finite real number (``bool`` and complex excluded) above ``minimum`` (or at least
    it with ``strict=False``); return it as ``float``. Another type raises TypeError,
    another value ValueError, both naming ``name``.

    >>> check_number(1e-8, "tol", minimum=0)
    1e-08
    >>> check_number("1e-8", "tol", minimum=0)
    Traceback (most recent call last):
    ...
    TypeError: `tol` must be a finite number > 0, got the string '1e-8'.
    """
    bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
    text = expected or f"a finite number{bound}"
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number))
            or isinstance(value, (complex, np.complexfloating))):
        raise TypeError(_error(name, text, describe(value)))
    v = float(value)
    if not math.isfinite(v) or (minimum is not None and (v <= minimum if strict else v < minimum)):
        raise ValueError(_error(name, text, describe(value)))
    return v


def check_random_state(random_state: Any, name: str = "random_state") -> np.random.Generator:
    """None, an integer seed (not bool) or a numpy ``Generator``; return a ``Generator``."""
    if isinstance(random_state, (bool, np.bool_)):
        raise TypeError(_error(name, "None, an integer seed or a Generator", "a bool"))
    if random_state is None or isinstance(random_state, (np.random.Generator, int, np.integer)):
        return np.random.default_rng(random_state)
    raise TypeError(_error(name, "None, an integer seed or a numpy Generator", describe(random_state)))


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(_error(name, f"one of {choices}", describe(value)))
    return value


def reduce(values: NDArray[np.floating], reduction: str) -> Any:
    """Apply ``reduction`` ('none', 'mean', 'sum') to per-sample values."""
    if reduction == "none":
        return values
    if reduction == "mean":
        return values.mean(dtype=np.float64)
    return values.sum(dtype=np.float64)


def check_rows_given_sums(
    rows: NDArray[np.floating], sums: NDArray[np.floating], name: str, tol: float, offset: int = 0
) -> None:
    """:func:`check_rows` for a caller that already has the row sums (from its own product).

    The common case, every row valid, costs one pass over ``rows`` and one over ``sums``
    for their least and greatest (``_rows.value_range``). The pass over ``rows`` ORs the
    entries' bits: none may have its sign bit set (a NaN may pass it, but not the sums'
    test: NaN and inf propagate into a row's sum and fail the comparisons). Anything
    else goes to :func:`check_rows`, which finds and names the bad row with the usual
    message, and accepts what is valid after all (-0.0, or a negative entry within
    ``tol``).
    """
    if _no_sign_bit(rows, tol):
        low, high = value_range(sums)  # NaN in both where a sum is NaN: fails below
        if low >= 1.0 - tol and high <= 1.0 + tol:
            return
    check_rows(rows, name, tol, offset)


def _no_sign_bit(rows: NDArray[np.floating], tol: float) -> bool:
    """No entry of ``rows`` has its sign bit set (each is +0.0 or more, or NaN): one OR over
    the bits (``_rows.any_sign_bit``), cheaper than a float minimum. Other float sizes:
    the minimum, >= -tol."""
    if rows.dtype.itemsize not in (4, 8):
        return bool(np.minimum.reduce(rows, axis=None) >= -tol)
    return not any_sign_bit(rows)
