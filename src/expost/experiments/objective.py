r"""The experiment's objective: the config sections that describe it, and its resolution
into the normalised utility once the data set is known.

Each objective section produces its raw utility (:meth:`raw_utility`: Eq 14 for
class weights and class emphasis, a full matrix, or inverse training priors);
:func:`resolve_objective` then normalises it with Eq 21 on the training prior
:math:`\mu` (:meth:`expost.Utility.normalized`):

.. math:: k \sum_y \mu_y \sum_a u(a, y) (-\log \mu_a) = \sum_y \mu_y (-\log \mu_y).

Class names are turned into indices in one place, :func:`class_index`, for the
config and the command line alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, field_validator, model_validator

from .._utility import Utility
from .._validation import describe
from ._probe import run_probe
from ._schema import ConfigError, _Section

__all__ = [
    "ClassWeightsObjective",
    "EmphasizeObjective",
    "InversePriorObjective",
    "MatrixObjective",
    "Objective",
    "ResolvedObjective",
    "class_index",
    "hardest_class",
    "reported_recall_class",
    "resolve_objective",
]


# ---------------------------------------------------------------- config sections
class EmphasizeObjective(_Section):
    """The paper's objective: one class weighted ``ratio`` : 1 (Section 3).

    ``emphasized`` is a class index, a class name, or ``"hardest"``: the class
    with the lowest validation recall of a quick multinomial logistic-regression
    probe on the (flattened) training inputs, unless the data set names its
    hardest class in ``meta["hardest_class"]``.
    """

    kind: Literal["emphasize"]
    emphasized: int | str = "hardest"
    ratio: float = Field(99.0, gt=0, allow_inf_nan=False)

    @field_validator("emphasized", mode="before")
    @classmethod
    def _class(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ValueError(f"must be a class index, a class name or 'hardest', got {describe(v)}")
        if isinstance(v, int) and v < 0:
            raise ValueError(f"must be a nonnegative class index, got {v}")
        return v

    def raw_utility(self, data: Any, prior: NDArray[np.float64]) -> tuple[Utility, int | None, str]:
        """Eq 14 with the emphasised class weighted ``ratio`` : 1 (before Eq 21)."""
        if self.emphasized == "hardest":
            emphasized, note = hardest_class(data)
        else:
            emphasized = _config_class_index(self.emphasized, data.class_names, "objective.emphasized")
            note = f"emphasized class {data.class_names[emphasized]!r}"
        return (Utility.emphasize(data.n_classes, emphasized, self.ratio), emphasized,
                note + f", ratio {self.ratio:g}:1")


class ClassWeightsObjective(_Section):
    """Class weights (Eq 14): a list (one per class, in order) or ``{class name: weight}``
    (classes not named get weight 1)."""

    kind: Literal["class_weights"]
    weights: list[float] | dict[str, float]

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, v: Any) -> Any:
        if isinstance(v, Mapping):
            items = [(f"[{k!r}]", k, x) for k, x in v.items()]
        elif isinstance(v, (list, tuple)):
            items = [(f"[{i}]", i, x) for i, x in enumerate(v)]
        else:
            raise ValueError("must be a list of class weights (one per class) or a mapping "
                             f"class name -> weight, got {describe(v)}")
        if not items:
            raise ValueError("must give at least one weight")
        for where, key, x in items:
            if isinstance(key, Mapping) or not isinstance(key, (str, int)):
                raise ValueError(f"class names must be strings, got {describe(key)}")
            ok = isinstance(x, (int, float)) and not isinstance(x, bool)
            if not ok or not np.isfinite(x) or x <= 0:
                raise ValueError(f"{where} must be a positive finite weight, got {describe(x)}")
        return dict(v) if isinstance(v, Mapping) else [float(x) for x in v]

    def raw_utility(self, data: Any, prior: NDArray[np.float64]) -> tuple[Utility, int | None, str]:
        """Eq 14 with these weights (classes a mapping does not name weigh 1)."""
        m, w = data.n_classes, self.weights
        if isinstance(w, dict):
            vec = np.ones(m)
            for name, value in w.items():
                vec[_config_class_index(name, data.class_names, "objective.weights")] = value
        else:
            if len(w) != m:
                raise ConfigError(
                    f"Invalid experiment config: objective.weights: expected {m} weights (one "
                    f"per class: {', '.join(data.class_names)}), got {len(w)}."
                )
            vec = np.asarray(w, dtype=np.float64)
        return Utility.from_class_weights(vec), None, "class weights"


class MatrixObjective(_Section):
    """A full utility matrix ``utility[a][y]``, or a cost matrix ``costs[a][y]`` turned into
    utilities by ``shift`` (:meth:`expost.Utility.from_costs`)."""

    kind: Literal["matrix"]
    utility: list[list[float]] | None = None
    costs: list[list[float]] | None = None
    shift: Literal["column", "global"] = "column"

    @model_validator(mode="after")
    def _one(self) -> MatrixObjective:
        if (self.utility is None) == (self.costs is None):
            raise ValueError("give exactly one of 'utility' and 'costs'")
        try:
            u = self.matrix_utility()
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        if u.n_actions != u.n_classes:
            raise ValueError(f"must be square (one action per class), got shape {u.matrix.shape}")
        return self

    def matrix_utility(self) -> Utility:
        """The utility this section describes (the costs converted with ``shift``)."""
        if self.utility is not None:
            return Utility(self.utility)
        return Utility.from_costs(self.costs, shift=self.shift)  # type: ignore[arg-type]

    def raw_utility(self, data: Any, prior: NDArray[np.float64]) -> tuple[Utility, int | None, str]:
        """The matrix as given, checked against the data set's number of classes."""
        raw, m = self.matrix_utility(), data.n_classes
        if raw.n_classes != m:
            raise ConfigError(
                f"Invalid experiment config: objective: the matrix is {raw.matrix.shape[0]} x "
                f"{raw.matrix.shape[1]}, the data set has {m} classes."
            )
        note = "utility matrix" if self.utility is not None else (
            f"costs with the {self.shift!r} shift")
        return raw, None, note


class InversePriorObjective(_Section):
    """Inverse training-prior class weights :math:`w_y = 1/\\mu_y` (footnote 13)."""

    kind: Literal["inverse_prior"]

    def raw_utility(self, data: Any, prior: NDArray[np.float64]) -> tuple[Utility, int | None, str]:
        """Weights :math:`1/\\mu_y` on the training prior."""
        return Utility.inverse_prior(prior), None, "inverse training prior"


Objective = Annotated[
    EmphasizeObjective | ClassWeightsObjective | MatrixObjective | InversePriorObjective,
    Field(discriminator="kind"),
]


@dataclass(frozen=True)
class ResolvedObjective:
    """The objective of one experiment once the data set is known.

    Attributes
    ----------
    utility : Utility
        The normalised utility (Eq 21 on ``prior``) used for training the
        ``weighted`` regime and for every evaluation.
    inverse_prior_utility : Utility
        Normalised inverse-prior weights (the ``inverse_prior`` regime's training).
    prior : ndarray
        The training prior :math:`\\mu`.
    emphasized : int or None
        The emphasised class (``emphasize`` objectives).
    note : str
        How the objective was resolved (e.g. how "hardest" was chosen).
    """

    utility: Utility
    inverse_prior_utility: Utility
    prior: NDArray[np.float64]
    emphasized: int | None
    note: str


# ---------------------------------------------------------------- resolution
def class_index(value: int | str, class_names: Sequence[str], where: str) -> int:
    """The index of a class given by name or by index.

    A string that is not a class name but a whole number is read as an index
    (so ``--emphasize 3`` works on the command line). The ValueError names
    ``where`` (an option or a config key), the value and the classes.

    >>> class_index("b", ["a", "b"], "objective.emphasized"), class_index("1", ["a", "b"], "x")
    (1, 1)
    """
    names = [str(c) for c in class_names]
    if isinstance(value, str) and value in names:
        return names.index(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if not 0 <= value < len(names):
            raise ValueError(f"{where}: class index {value} is out of range (the data set has "
                             f"{len(names)} classes: 0..{len(names) - 1}).")
        return int(value)
    raise ValueError(f"{where}: {value!r} is not a class of the data set: neither a class name "
                     f"nor an index (classes: {', '.join(names)}).")


def _config_class_index(value: int | str, class_names: Sequence[str], where: str) -> int:
    try:
        return class_index(value, class_names, where)
    except ValueError as exc:
        raise ConfigError(f"Invalid experiment config: {exc}") from None


def hardest_class(data: Any, *, max_rows: int = 5000) -> tuple[int, str]:
    """The class a quick probe finds hardest: lowest validation recall.

    A multinomial logistic regression on standardised, flattened training
    inputs (at most ``max_rows``, stratified, fixed seed) scored on the
    validation split; deterministic. ``data.meta["hardest_class"]`` wins when set.
    Needs in-memory inputs (a TensorDataset).
    """
    if "hardest_class" in data.meta:
        c = data.meta["hardest_class"]
        idx = _config_class_index(c, data.class_names, "objective.emphasized")
        return idx, f"hardest class {data.class_names[idx]!r} as named by the data set"
    import torch

    if not isinstance(data.train, torch.utils.data.TensorDataset) or not isinstance(
            data.val, torch.utils.data.TensorDataset):
        raise ConfigError(
            "Invalid experiment config: objective.emphasized: 'hardest' needs an in-memory "
            f"data set to probe; name the class for {data.name!r} instead "
            f"(classes: {', '.join(data.class_names)})."
        )
    rng = np.random.default_rng(0)
    ytr = data.train_labels
    keep = np.arange(ytr.size) if ytr.size <= max_rows else np.sort(
        rng.choice(ytr.size, max_rows, replace=False))
    xtr = data.train.tensors[0][torch.as_tensor(keep)].reshape(keep.size, -1).double().numpy()
    xva = data.val.tensors[0].reshape(len(data.val), -1).double().numpy()
    recall = run_probe(xtr, np.asarray(ytr[keep], dtype=np.int64), xva,
                       np.asarray(data.val_labels, dtype=np.int64), data.n_classes)
    idx = int(np.argmin(recall))
    return idx, (f"hardest class {data.class_names[idx]!r}: lowest validation recall "
                 f"({recall[idx]:.3f}) of a logistic-regression probe")


def resolve_objective(objective: Any, data: Any) -> ResolvedObjective:
    """The normalised utility (Eq 21 on the training prior) of a config's objective.

    Parameters
    ----------
    objective : an objective section of :class:`~expost.experiments.config.ExperimentConfig`
    data : DataSplits
        Supplies the class names, the training prior and (for "hardest") the data.

    Examples
    --------
    >>> from expost.experiments.config import load_config
    >>> from expost.experiments.datasets import load_dataset
    >>> cfg = load_config(overrides=["objective={kind: emphasize, emphasized: 3}"])
    >>> r = resolve_objective(cfg.objective, load_dataset("digits"))
    >>> r.emphasized, bool(r.utility.is_diagonal)
    (3, True)
    """
    counts = np.bincount(data.train_labels, minlength=data.n_classes)
    if (counts == 0).any():
        missing = [data.class_names[i] for i in np.flatnonzero(counts == 0)]
        raise ConfigError(
            f"The training split of {data.name!r} has no example of the class(es) {missing}; "
            "Eq 21 needs a strictly positive training prior."
        )
    prior = counts / counts.sum()
    raw, emphasized, note = objective.raw_utility(data, prior)
    inverse = Utility.inverse_prior(prior).normalized(prior)
    return ResolvedObjective(raw.normalized(prior), inverse, prior, emphasized,
                             note + ", normalised with Eq 21 on the training prior")


def reported_recall_class(resolved: ResolvedObjective, data: Any) -> int:
    """The class whose recall an experiment reports, checked against the evaluation splits.

    An emphasised class must have examples in the test and validation splits (else
    ConfigError saying how many each split holds). An objective that emphasises no
    class (``inverse_prior``, class weights, a matrix) reports the class of largest
    total utility weight (:func:`~expost.experiments.evaluate.recall_class`; for
    ``inverse_prior`` the rarest training class) among those present in both splits,
    and warns when that is not the overall largest. Classes absent from an evaluation
    split are named in a warning (their recall there is undefined).

    >>> from expost.experiments.config import load_config
    >>> from expost.experiments.datasets import load_dataset
    >>> data = load_dataset("digits")
    >>> r = resolve_objective(load_config(overrides=["objective={kind: emphasize, "
    ...                                              "emphasized: 3}"]).objective, data)
    >>> reported_recall_class(r, data)
    3
    """
    import warnings

    counts = {s: np.bincount(data.labels(s), minlength=data.n_classes) for s in ("test", "val")}
    absent = {s: [data.class_names[i] for i in np.flatnonzero(c == 0)] for s, c in counts.items()}
    if absent["test"] or absent["val"]:
        warnings.warn(
            f"The data set {data.name!r} has classes without evaluation examples (test: "
            f"{absent['test'] or 'none'}; validation: {absent['val'] or 'none'}); their recall "
            "is undefined there and model selection ignores them. Use more data (or, for "
            "partial data, more of the image archives).", UserWarning, stacklevel=2)
    weights = resolved.utility.matrix.sum(axis=0)
    if resolved.emphasized is not None:
        k = int(resolved.emphasized)
        empty = [s for s in ("test", "val") if counts[s][k] == 0]
        if empty:
            raise ConfigError(
                f"The emphasised class {data.class_names[k]!r} has no example in the "
                f"{' and '.join('validation' if s == 'val' else s for s in empty)} split of "
                f"{data.name!r} (test: {int(counts['test'][k])}, validation: "
                f"{int(counts['val'][k])} examples), so its recall cannot be reported; use "
                "more data or emphasise another class (objective.emphasized).")
        return k
    present = np.flatnonzero((counts["test"] > 0) & (counts["val"] > 0))
    if present.size == 0:
        raise ConfigError(f"No class of {data.name!r} has examples in both the test and the "
                          "validation split; use more data.")
    best = int(np.argmax(weights))
    chosen = int(present[np.argmax(weights[present])])
    if chosen != best:
        warnings.warn(
            f"The objective ({resolved.note.split(',')[0]}) emphasises no class; the recall "
            f"reported is that of the class with the largest utility weight present in the "
            f"test and validation splits, {data.class_names[chosen]!r} (the largest overall, "
            f"{data.class_names[best]!r}, has no example in one of them).", UserWarning,
            stacklevel=2)
    return chosen
