"""The human objective: a nonnegative, nondegenerate utility matrix u[a, y]."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import _error, as_float_array, check_int, check_number, check_prior, describe

__all__ = ["Utility", "as_utility", "first_identical_actions", "is_diagonal_matrix"]


def is_diagonal_matrix(m: NDArray[Any]) -> bool:
    """A square matrix with zeros off the diagonal (class weights, Eq 14).

    Counted, not subtracted: no temporary of m's size, and cheap enough for every call
    of the decision layer."""
    return m.shape[0] == m.shape[1] and bool(np.count_nonzero(m) == np.count_nonzero(np.diagonal(m)))


def first_identical_actions(m: NDArray[Any]) -> NDArray[np.intp] | None:
    """For each action (row of ``m``), the lowest action whose row is identical to it.

    ``None`` when all rows differ (the common case). Identical actions have equal
    expected utilities under every q, but a matrix product may round them
    differently (they sit at different places in its kernel), so an argmax over
    the product can pick the higher one; mapping each decision through this
    array sends such ties to the lowest index, as the tie rule of Eq 5 says.
    Rows are compared exactly (``-0.0 == 0.0``).
    """
    n = m.shape[0]
    if n < 2:
        return None
    sums = np.sort(np.add.reduce(m, axis=1))  # equal rows have sums within rounding
    if not (np.diff(sums) <= 1e-9 * max(abs(float(sums[0])), abs(float(sums[-1])))).any():
        return None
    rows = np.asarray(m) + 0.0  # -0.0 + 0.0 is 0.0: equal rows, equal bytes
    seen: dict[bytes, int] = {}
    first = np.array([seen.setdefault(rows[a].tobytes(), a) for a in range(n)], dtype=np.intp)
    if len(seen) == n:
        return None
    return first


class Utility:
    r"""An immutable utility matrix over actions (rows) and true classes (columns).

    ``u[a, y]`` is the human's utility of taking action ``a`` when the true
    class is ``y``. The paper's results need ``u`` nonnegative and
    *nondegenerate* (Eq 1): every class has some action of positive utility,

    .. math:: \forall y \;\exists a:\; u(a, y) > 0 .

    Parameters
    ----------
    matrix : array-like of shape (n_actions, n_classes)
        Finite, nonnegative, nondegenerate utilities. Copied; the copy is
        read-only.
    actions, classes : sequence, optional
        Labels of the rows and columns (default ``0..n-1``). They are kept for
        display and for matching estimators' ``classes_``; all computations are
        by position.

    Examples
    --------
    >>> import expost
    >>> u = expost.Utility.from_class_weights([1.0, 99.0])
    >>> u.matrix
    array([[ 1.,  0.],
           [ 0., 99.]])
    >>> u.is_diagonal, u.class_weights
    (True, array([ 1., 99.]))
    """

    __slots__ = ("_actions", "_classes", "_matrix")

    def __init__(
        self,
        matrix: ArrayLike,
        *,
        actions: Sequence[Any] | None = None,
        classes: Sequence[Any] | None = None,
    ) -> None:
        if isinstance(matrix, Utility):
            actions = matrix.actions if actions is None else actions
            classes = matrix.classes if classes is None else classes
            matrix = matrix.matrix
        arr = as_float_array(matrix, "utility")
        if arr.ndim != 2:
            raise ValueError(_error("utility", "a 2-D matrix u[action, class]", describe(arr)))
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(_error("utility", "a non-empty matrix", describe(arr)))
        arr = np.array(arr, dtype=np.float64, copy=True)
        if not np.isfinite(arr).all():
            a, y = np.argwhere(~np.isfinite(arr))[0]
            raise ValueError(_error("utility", "finite", f"{arr[a, y]} at action {a}, class {y}"))
        if (arr < 0).any():
            a, y = np.argwhere(arr < 0)[0]
            raise ValueError(
                _error(
                    "utility",
                    "nonnegative (shift costs or utilities to be >= 0; see Utility.from_costs)",
                    f"{arr[a, y]:.6g} at action {a}, class {y}",
                )
            )
        arr += 0.0  # -0.0 becomes 0.0: equal utilities have equal bytes, so equal hashes
        degenerate = np.flatnonzero(~(arr > 0).any(axis=0))
        if degenerate.size:
            raise ValueError(
                _error(
                    "utility",
                    "nondegenerate (Eq 1: every class needs an action with positive utility)",
                    f"class {int(degenerate[0])} with zero utility for every action",
                )
            )
        arr.setflags(write=False)
        self._matrix: NDArray[np.float64] = arr.astype(np.float64, copy=False)
        self._actions = _labels(actions, arr.shape[0], "actions")
        self._classes = _labels(classes, arr.shape[1], "classes")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_class_weights(
        cls, weights: ArrayLike, *, classes: Sequence[Any] | None = None
    ) -> Utility:
        r"""Class weights as a diagonal utility, Eq 14: :math:`u^w(a, y) = w_y 1\{a = y\}`.

        Weights must be strictly positive (:math:`w \in \mathbb{R}^m_{++}`).

        >>> Utility.from_class_weights([2.0, 1.0, 1.0]).matrix.diagonal()
        array([2., 1., 1.])
        """
        w = as_float_array(weights, "weights").astype(np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(
                _error("weights", "a non-empty 1-D array of class weights", describe(w))
            )
        if not np.isfinite(w).all():
            raise ValueError(_error("weights", "finite", "a NaN or inf weight"))
        if (w <= 0).any():
            j = int(np.flatnonzero(w <= 0)[0])
            raise ValueError(
                _error(
                    "weights",
                    "strictly positive class weights (Eq 14)",
                    f"{w[j]:.6g} for class {j}",
                )
            )
        return cls(np.diag(w), actions=classes, classes=classes)

    @classmethod
    def emphasize(cls, n_classes: int, emphasized: int, ratio: float = 99.0) -> Utility:
        r"""The paper's experimental objective: class ``emphasized`` weighted ``ratio`` : 1.

        :math:`w_y = \text{ratio}` for the emphasised class and 1 for every other
        (Section 3); apply :meth:`normalized` with the training prior for Eq 21.

        >>> Utility.emphasize(3, 1, ratio=99).class_weights
        array([ 1., 99.,  1.])
        """
        n_classes = check_int(n_classes, "n_classes", minimum=2)
        index = f"a class index in [0, {n_classes})"
        emphasized = check_int(emphasized, "emphasized", expected=index, wrong_type=TypeError)
        if not 0 <= emphasized < n_classes:
            raise ValueError(_error("emphasized", index, describe(emphasized)))
        ratio = check_number(ratio, "ratio", minimum=0.0, expected="a positive finite number")
        w = np.ones(int(n_classes))
        w[int(emphasized)] = ratio
        return cls.from_class_weights(w)

    @classmethod
    def from_costs(
        cls,
        costs: ArrayLike,
        *,
        shift: Literal["column", "global"] = "column",
        actions: Sequence[Any] | None = None,
        classes: Sequence[Any] | None = None,
    ) -> Utility:
        r"""Utilities from a cost matrix ``c[a, y]`` (cost of action ``a`` when the class is ``y``).

        Costs are turned into nonnegative utilities by an affine shift:

        * ``shift="column"`` (default): :math:`u(a, y) = \max_{a'} c(a', y) - c(a, y)`,
          the *regret* form. A zero-diagonal cost matrix
          :math:`c(a, y) = w_y 1\{a \ne y\}` becomes exactly the class weights
          :math:`w_y 1\{a = y\}` of Eq 14.
        * ``shift="global"``: :math:`u(a, y) = \max_{a', y'} c(a', y') - c(a, y)`.

        Why it matters (footnote 6): adding a constant (or any per-class
        constant) to ``u`` leaves the expected-utility decisions (Eq 5)
        unchanged, but it changes the utility-weighted loss (Eq 6) and the
        optimal weighted prediction :math:`p^u` (Eq 8), so it changes what
        Weighted Training trains. The column shift is the one under which the
        weighted loss of a cost matrix with a zero diagonal is the usual
        class-weighted cross-entropy.

        >>> Utility.from_costs([[0.0, 5.0], [1.0, 0.0]]).matrix
        array([[1., 0.],
               [0., 5.]])
        """
        c = as_float_array(costs, "costs").astype(np.float64)
        if c.ndim != 2 or c.size == 0:
            raise ValueError(
                _error("costs", "a non-empty 2-D matrix c[action, class]", describe(c))
            )
        if not np.isfinite(c).all():
            raise ValueError(_error("costs", "finite", "a NaN or inf entry"))
        with np.errstate(over="ignore"):
            if shift == "column":
                u = c.max(axis=0, keepdims=True) - c
            elif shift == "global":
                u = c.max() - c
            else:
                raise ValueError(_error("shift", "'column' or 'global'", describe(shift)))
        if not np.isfinite(u).all():
            a, y = np.argwhere(~np.isfinite(u))[0]
            raise ValueError(_error("costs", f"costs whose differences (the {shift!r} shift) are "
                                    "finite", f"a difference beyond float64's range at action "
                                    f"{a}, class {y} (scale the costs down)"))
        try:
            return cls(u, actions=actions, classes=classes)
        except ValueError as exc:
            raise ValueError(
                f"`costs` give a degenerate utility after the {shift!r} shift: "
                f"some class has the same cost for every action ({exc})"
            ) from None

    @classmethod
    def inverse_prior(cls, prior: ArrayLike) -> Utility:
        r"""Inverse-prior class weights :math:`w_y = 1 / \mu_y` (footnote 13, Appendix A.4).

        Weighting by the inverse training prior makes the weighted class
        frequencies uniform, :math:`w_y \mu_y = w_{y'} \mu_{y'}`. Chain with
        :meth:`normalized` (``Utility.inverse_prior(mu).normalized(mu)``) for Eq 21.

        >>> Utility.inverse_prior([0.8, 0.2]).class_weights
        array([1.25, 5.  ])
        """
        mu = check_prior(prior, "prior")
        with np.errstate(over="ignore"):
            w = 1.0 / mu
        if not np.isfinite(w).all():
            j = int(np.flatnonzero(~np.isfinite(w))[0])
            raise ValueError(_error("prior", "class probabilities whose inverses are finite "
                                    "(each at least about 5.6e-309)", f"{mu[j]:.3g} for class {j}"))
        return cls.from_class_weights(w)

    # ------------------------------------------------------------------ normalisation
    def normalized(self, prior: ArrayLike) -> Utility:
        r"""Rescale so the weighted log loss of predicting the prior is unchanged (Eq 21).

        Returns :math:`k u` with :math:`k` chosen so that
        :math:`\bar\ell^u(\mu, \mu) = \bar\ell(\mu, \mu)`, i.e.

        .. math:: k \sum_y \mu_y \sum_a u(a, y)\,(-\log \mu_a) = \sum_y \mu_y (-\log \mu_y).

        For class weights on balanced data the weights then sum to ``m``
        (footnote 14). Scaling by a positive constant leaves decisions and
        :math:`p^u` unchanged. Needs as many actions as classes (the prior is
        predicted over actions).

        >>> u = Utility.from_class_weights([1.0, 3.0]).normalized([0.5, 0.5])
        >>> u.class_weights
        array([0.5, 1.5])
        """
        if self.n_actions != self.n_classes:
            raise ValueError(
                "Eq 21 normalisation predicts the prior over actions, so it needs as many "
                f"actions as classes; this utility has {self.n_actions} actions and "
                f"{self.n_classes} classes."
            )
        mu = check_prior(prior, "prior", n_classes=self.n_classes)
        if mu.size == 1:
            return self
        neglog = -np.log(mu)
        entropy = float(mu @ neglog)
        unit = self._matrix / self._matrix.max()  # scale first: no overflow for tiny utilities
        weighted = float(neglog @ unit @ mu)
        if entropy == 0.0 or weighted == 0.0:
            raise ValueError(
                _error(
                    "prior", "a prior for which Eq 21 is defined (positive entropy)", describe(mu)
                )
            )
        return Utility(unit * (entropy / weighted), actions=self._actions, classes=self._classes)

    # ------------------------------------------------------------------ properties
    @property
    def matrix(self) -> NDArray[np.float64]:
        """The read-only float64 matrix ``u[a, y]``."""
        return self._matrix

    @property
    def n_actions(self) -> int:
        return int(self._matrix.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self._matrix.shape[1])

    @property
    def actions(self) -> tuple[Any, ...]:
        return self._actions

    @property
    def classes(self) -> tuple[Any, ...]:
        return self._classes

    @property
    def is_diagonal(self) -> bool:
        """True for a square matrix with zeros off the diagonal (class weights, Eq 14)."""
        return is_diagonal_matrix(self._matrix)

    @property
    def class_weights(self) -> NDArray[np.float64]:
        """The diagonal ``w`` of a class-weight utility; ValueError for a general matrix."""
        if not self.is_diagonal:
            raise ValueError(
                "`class_weights` exist only for a diagonal utility (Eq 14); this one has "
                f"shape {self._matrix.shape} with nonzero off-diagonal entries."
            )
        w = np.diagonal(self._matrix).copy()
        w.setflags(write=False)
        return w

    # ------------------------------------------------------------------ dunder
    def __array__(self, dtype: Any = None, copy: Any = None) -> NDArray[Any]:
        if dtype is None or np.dtype(dtype) == self._matrix.dtype:
            return self._matrix.copy() if copy else self._matrix
        return self._matrix.astype(dtype)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Utility):
            return NotImplemented
        return (
            self._actions == other._actions
            and self._classes == other._classes
            and np.array_equal(self._matrix, other._matrix)
        )

    def __hash__(self) -> int:
        return hash((self._matrix.shape, self._matrix.tobytes(), self._actions, self._classes))

    def __repr__(self) -> str:
        if self.is_diagonal:
            return f"Utility.from_class_weights({np.diagonal(self._matrix).tolist()!r})"
        return f"Utility({self._matrix.tolist()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._matrix.copy(), self._actions, self._classes))


def _rebuild(matrix: Any, actions: Any, classes: Any) -> Utility:
    return Utility(matrix, actions=actions, classes=classes)


def _labels(labels: Sequence[Any] | None, n: int, name: str) -> tuple[Any, ...]:
    if labels is None:
        return tuple(range(n))
    out = tuple(np.asarray(labels).tolist()) if isinstance(labels, np.ndarray) else tuple(labels)
    if len(out) != n:
        raise ValueError(_error(name, f"{n} labels", f"{len(out)} label{'' if len(out) == 1 else 's'}"))
    try:
        distinct = len(set(out))
    except TypeError:  # a list among the labels, say
        bad = next(x for x in out if not _hashable(x))
        raise TypeError(_error(name, "hashable labels (strings, numbers, tuples)",
                               f"the {type(bad).__name__} {bad!r}")) from None
    if distinct != n:
        raise ValueError(_error(name, "distinct labels", repr(out)))
    return out


def _hashable(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def as_utility(utility: Utility | ArrayLike, name: str = "utility") -> Utility:
    """Accept a :class:`Utility` or anything its constructor takes."""
    if isinstance(utility, Utility):
        return utility
    if utility is None:
        raise TypeError(_error(name, "a Utility or a utility matrix", "None"))
    return Utility(utility)
