"""Shared pieces of the scikit-learn layer: matching a Utility to ``classes_``, sample utilities.

Label rules (one place, used by both estimators and the scorers):

* The columns of a utility are classes. A :class:`~expost.Utility` whose class
  labels are the defaults ``0..m-1`` (or a plain array) is read *by position*
  in the estimator's ``classes_`` order (sorted labels, as scikit-learn). A
  Utility with other class labels is aligned *by label*; a label missing on
  either side is an error.
* The rows are actions. Their labels are the Utility's action labels; a square
  Utility with default action labels takes its class labels as action labels
  (action ``i`` is "predict class ``i``"). When the action labels are exactly
  the class labels, the rows are reordered to ``classes_`` order, so that
  ``actions_ == classes_``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._utility import Utility, as_utility
from .._validation import _error, as_float_array, describe

__all__ = [
    "action_labels",
    "align_proba_columns",
    "align_utility",
    "check_sample_utility",
    "label_indices",
    "sample_expected_utility",
]


def _is_default(labels: tuple[Any, ...]) -> bool:
    return labels == tuple(range(len(labels)))


def _label_array(labels: list[Any]) -> NDArray[Any]:
    """A 1-D array of labels: homogeneous when numpy keeps them as they are, else object."""
    arr = np.asarray(labels)
    if arr.ndim == 1 and arr.dtype != object and arr.tolist() == labels:
        return arr
    out = np.empty(len(labels), dtype=object)
    out[:] = labels
    return out


def action_labels(u: Utility) -> list[Any]:
    """Labels of the rows: the action labels, or the class labels for a square default."""
    if u.n_actions == u.n_classes and _is_default(u.actions):
        return list(u.classes)
    return list(u.actions)


def label_indices(
    values: ArrayLike,
    labels: list[Any],
    name: str,
    what: str,
    *,
    owner: str = "the utility's",
) -> NDArray[np.intp]:
    """Positions of ``values`` in ``labels``; a value that is not a label is a ValueError."""
    vals = np.asarray(values)
    if vals.ndim != 1:
        raise ValueError(_error(name, f"a 1-D array of {what} labels", describe(vals)))
    uniq, inverse = np.unique(vals, return_inverse=True)
    lookup = {lab: i for i, lab in enumerate(labels)}
    pos = np.empty(len(uniq), dtype=np.intp)
    hint = (
        " (name them with Utility(..., actions=..., classes=...))" if owner == "the utility's" else ""
    )
    for j, v in enumerate(uniq.tolist()):
        if v not in lookup:
            raise ValueError(
                _error(name, f"{what} labels among {owner} {what} labels {labels!r}{hint}",
                       f"the label {v!r}")
            )
        pos[j] = lookup[v]
    return pos[inverse.ravel()]


def align_proba_columns(
    proba: NDArray[np.floating],
    columns: ArrayLike,
    labels: ArrayLike,
    *,
    name: str = "the estimator's predict_proba columns",
    what: str = "class",
    owner: str = "the estimator's",
) -> NDArray[np.floating]:
    """Put the columns of ``proba`` (labelled ``columns``) in the order of ``labels``.

    A label that no column has (a class a cross-validation fold missed, an
    action a model never predicts) gets probability 0; a column whose label
    is not in ``labels`` is a ValueError naming ``name``. Returns ``proba``
    itself when its columns already are ``labels``.

    >>> align_proba_columns(np.array([[0.25, 0.75]]), ["b", "c"], ["a", "b", "c"])
    array([[0.  , 0.25, 0.75]])
    """
    label_list = np.asarray(labels).tolist()
    cols = label_indices(columns, label_list, name, what, owner=owner)
    if len(cols) == len(label_list) and np.array_equal(cols, np.arange(len(label_list))):
        return proba
    out = np.zeros((proba.shape[0], len(label_list)), dtype=proba.dtype)
    out[:, cols] = proba
    return out


def align_utility(
    utility: Utility | ArrayLike | None,
    classes: ArrayLike,
    *,
    name: str = "utility",
    actions_are_classes: bool = False,
) -> tuple[Utility, NDArray[Any]]:
    """Match ``utility`` to an estimator's ``classes_``.

    Returns the Utility with its columns in ``classes`` order (class labels set
    to ``classes``) and the array of action labels (one per row). ``None`` is
    the identity (plain accuracy decisions). With ``actions_are_classes`` the
    actions must be the classes (Weighted Training trains a model over
    actions): the Utility must be square and its rows are put in ``classes``
    order too.
    """
    cls_arr = np.asarray(classes)
    cls_list = cls_arr.tolist()
    m = len(cls_list)
    if utility is None:
        ident = Utility(np.eye(m), actions=cls_list, classes=cls_list)
        return ident, cls_arr.copy()
    u = as_utility(utility, name)
    if u.n_classes != m:
        raise ValueError(
            _error(
                name,
                f"{m} columns, one per class in classes_ {cls_list!r}",
                f"a utility with {u.n_classes} columns (shape {u.matrix.shape})",
            )
        )
    # ---- columns: by position (default labels) or by label
    if _is_default(u.classes):
        col_order = np.arange(m)
        col_labels = cls_list  # the class label of each original column
    else:
        missing = [c for c in cls_list if c not in u.classes]
        extra = [c for c in u.classes if c not in cls_list]
        if missing or extra:
            raise ValueError(
                _error(
                    name,
                    f"class labels matching classes_ {cls_list!r} (its columns are aligned "
                    "by label because it has non-default class labels)",
                    f"class labels {list(u.classes)!r}"
                    + (f", missing {missing!r}" if missing else "")
                    + (f", with unknown {extra!r}" if extra else ""),
                )
            )
        col_order = np.array([u.classes.index(c) for c in cls_list], dtype=np.intp)
        col_labels = list(u.classes)
    # ---- rows: action labels
    labels = action_labels(u)
    if u.n_actions == m and _is_default(u.actions):
        labels = list(col_labels)
    same_as_classes = len(labels) == m and set(labels) == set(cls_list)
    if same_as_classes:
        row_order = np.array([labels.index(c) for c in cls_list], dtype=np.intp)
        labels = cls_list
    else:
        if actions_are_classes:
            raise ValueError(
                _error(
                    name,
                    "a square utility whose actions are the classes "
                    f"{cls_list!r} (Weighted Training predicts a distribution over classes)",
                    f"shape {u.matrix.shape} with action labels {list(u.actions)!r}",
                )
            )
        row_order = np.arange(u.n_actions)
    matrix = u.matrix[np.ix_(row_order, col_order)]
    aligned = Utility(matrix, actions=labels, classes=cls_list)
    if same_as_classes:
        return aligned, cls_arr.copy()
    return aligned, _label_array(labels)


def check_sample_utility(
    sample_utility: ArrayLike,
    *,
    n_samples: int,
    n_actions: int,
    n_classes: int,
    name: str = "sample_utility",
) -> NDArray[np.floating]:
    r"""Check example-dependent utilities :math:`u_i(a, y)` (Appendix A.3, :math:`c(x, y, a)`).

    Expects shape ``(n_samples, n_actions, n_classes)``, finite, nonnegative.
    Returns a floating array (a view of floating input; never modified).
    """
    arr = as_float_array(sample_utility, name)
    expected = (n_samples, n_actions, n_classes)
    if arr.shape != expected:
        raise ValueError(
            _error(
                name,
                f"an array of shape (n_samples, n_actions, n_classes) = {expected}",
                describe(arr),
            )
        )
    if not np.isfinite(arr).all():
        i, a, y = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            _error(name, "finite", f"{arr[i, a, y]} at sample {i}, action {a}, class {y}")
        )
    if (arr < 0).any():
        i, a, y = np.argwhere(arr < 0)[0]
        raise ValueError(
            _error(name, "nonnegative", f"{arr[i, a, y]:.6g} at sample {i}, action {a}, class {y}")
        )
    return arr


def sample_expected_utility(
    q: NDArray[np.floating], sample_utility: NDArray[np.floating]
) -> NDArray[np.floating]:
    r"""Per-sample expected utility :math:`\bar u_i(a, q_i) = \sum_y u_i(a, y)\, q_{iy}`.

    Eq 3 with an example-dependent utility (Appendix A.3); inputs already checked.
    """
    return np.einsum("iay,iy->ia", sample_utility.astype(q.dtype, copy=False), q)
