r"""The training regimes compared side by side, and how each one is evaluated.

A *regime* is a pair (training, view): how the model is trained, and how its
predictions are turned into the prediction and the decisions that are scored
under the experiment's objective :math:`u`. Regimes that share a training
share one model (one ``train_key``): ``expost`` and ``unweighted_raw`` are two
views of a single unweighted training, never two trainings.

============== ============================================== =====================================
regime         training                                       evaluated prediction / decision
============== ============================================== =====================================
weighted       utility-weighted CE with :math:`u` (Eq 24)     :math:`P^u` as is / argmax (Eq 9)
expost         unweighted CE                                  :math:`p^u(P)` (Eq 8) / Eq 5
unweighted_raw unweighted CE (the same model as ``expost``)   :math:`P` as is / argmax
inverse_prior  CE weighted by :math:`1/\mu`, normalised       :math:`p^u(\hat q)` with :math:`\hat q`
                                                              recovered by Theorem 2 (Eq 27)
resampled      CE on a cost-proportionate resample            as is / argmax
metacost       CE on labels relabelled by :math:`\delta^u`     as is / argmax
============== ============================================== =====================================

Why ``inverse_prior`` is evaluated through Theorem 2: a model trained with
inverse-prior weights :math:`w_y \propto 1/\mu_y` predicts :math:`p^w(q)`, the
posterior under a uniform prior (Proposition 3). Scoring it as it is would
judge a model for the balanced objective on the experiment's objective; instead
its beliefs are recovered exactly (:math:`\hat q_y \propto p_y / w_y`, Eq 27)
and then adjusted with Theorem 1 like Ex Post Weighting, so the comparison
isolates what the inverse-prior *training* did to learning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from .._decisions import _decide, _weighted_prediction
from .._recalibration import recover_posterior
from .._utility import Utility
from .._validation import _error, describe

__all__ = [
    "REGIME_NAMES",
    "REGIME_SPECS",
    "TRAININGS",
    "Regime",
    "TrainingKind",
    "plan_trainings",
    "regime_colour",
    "regime_label",
    "regime_order",
    "regime_view",
    "run_id",
    "train_key",
]

View = Literal["as_is", "ex_post", "recovered_ex_post"]


@dataclass(frozen=True)
class TrainingKind:
    r"""How one kind of training works.

    Attributes
    ----------
    name : str
        The training's name (the prefix of its ``train_key``).
    weighted : {"objective", "inverse_prior", None}
        Which utility the utility-weighted loss uses; None for plain
        (unweighted) cross-entropy.
    sampler : {"uniform", "cost_proportionate"}
        A uniform permutation each epoch, or a cost-proportionate resample
        (class :math:`y` drawn in proportion to :math:`\sum_a u(a, y)`).
    relabel_from : str or None
        For MetaCost: the training whose model relabels the training set.
    """

    name: str
    weighted: Literal["objective", "inverse_prior"] | None
    sampler: Literal["uniform", "cost_proportionate"]
    relabel_from: str | None = None


@dataclass(frozen=True)
class Regime:
    """A regime: which training, which view of its predictions is scored, and how it is shown.

    ``label`` and ``colour`` are what the tables and figures show (the paper's
    colours: Weighted Training red, Ex Post Weighting blue, Unweighted Raw black).
    """

    name: str
    training: str
    view: View
    label: str
    colour: str


TRAININGS: Final[dict[str, TrainingKind]] = {
    "weighted": TrainingKind("weighted", "objective", "uniform"),
    "unweighted": TrainingKind("unweighted", None, "uniform"),
    "inverse_prior": TrainingKind("inverse_prior", "inverse_prior", "uniform"),
    "resampled": TrainingKind("resampled", None, "cost_proportionate"),
    "metacost": TrainingKind("metacost", None, "uniform", relabel_from="unweighted"),
}

#: The one registry of regimes: the config's allowed names, the report's order,
#: labels and colours all derive from it.
REGIME_SPECS: Final[dict[str, Regime]] = {
    r.name: r
    for r in (
        Regime("weighted", "weighted", "as_is", "Weighted Training", "tab:red"),
        Regime("expost", "unweighted", "ex_post", "Ex Post Weighting", "tab:blue"),
        Regime("unweighted_raw", "unweighted", "as_is", "Unweighted Raw", "black"),
        Regime("inverse_prior", "inverse_prior", "recovered_ex_post", "Inverse-Prior Weighting",
               "tab:purple"),
        Regime("resampled", "resampled", "as_is", "Cost-Proportionate Resampling", "tab:orange"),
        Regime("metacost", "metacost", "as_is", "MetaCost", "tab:green"),
    )
}

#: Regime names in the registry's order.
REGIME_NAMES: Final[tuple[str, ...]] = tuple(REGIME_SPECS)


def regime_label(regime: str) -> str:
    """Display label of a regime (its own name for a regime the registry does not know)."""
    spec = REGIME_SPECS.get(regime)
    return spec.label if spec is not None else str(regime)


def regime_colour(regime: str) -> str:
    """Colour of a regime in the figures (grey for a regime the registry does not know)."""
    spec = REGIME_SPECS.get(regime)
    return spec.colour if spec is not None else "tab:gray"


def regime_order(regime: str) -> tuple[int, str]:
    """Sort key: the registry's order, unknown regimes after it by name."""
    return (REGIME_NAMES.index(regime), "") if regime in REGIME_SPECS else (len(REGIME_NAMES), regime)


def train_key(training: str, seed: int) -> str:
    """The key of one training, shared by the runs that are views of it."""
    return f"{training}-s{int(seed)}"


def run_id(regime: str, seed: int) -> str:
    """The id of one run (one regime, one seed)."""
    return f"{regime}-s{int(seed)}"


def plan_trainings(regimes: list[str] | tuple[str, ...], seeds: list[int] | tuple[int, ...]
                   ) -> list[tuple[str, str, int, list[tuple[str, str]]]]:
    """The trainings an experiment needs, in an order that respects dependencies.

    Returns ``(train_key, training, seed, runs)`` tuples, ``runs`` being the
    ``(run_id, regime)`` pairs evaluated from that training (possibly none: the
    unweighted training MetaCost relabels with is trained even when neither
    ``expost`` nor ``unweighted_raw`` is asked for). For each seed, trainings
    come in the order of :data:`TRAININGS`, so a MetaCost training always
    follows the training it depends on.

    >>> [(k, [r for r, _ in runs]) for k, _, _, runs in plan_trainings(
    ...     ["weighted", "expost", "unweighted_raw"], [0])]
    [('weighted-s0', ['weighted-s0']), ('unweighted-s0', ['expost-s0', 'unweighted_raw-s0'])]
    """
    unknown = [r for r in regimes if r not in REGIME_SPECS]
    if unknown:
        raise ValueError(_error("regimes", f"names from {tuple(REGIME_SPECS)}", describe(unknown[0])))
    needed: dict[str, list[str]] = {}
    for r in regimes:
        spec = REGIME_SPECS[r]
        needed.setdefault(spec.training, []).append(r)
        dep = TRAININGS[spec.training].relabel_from
        if dep is not None:
            needed.setdefault(dep, [])
    out = []
    for seed in seeds:
        for training in TRAININGS:
            if training in needed:
                runs = [(run_id(r, seed), r) for r in needed[training]]
                out.append((train_key(training, seed), training, int(seed), runs))
    return out


def regime_view(
    regime: str,
    q: NDArray[np.floating],
    utility: Utility,
    *,
    training_utility: Utility | None = None,
) -> tuple[NDArray[np.floating], NDArray[np.intp]]:
    r"""The prediction and the decisions a regime is scored on.

    Parameters
    ----------
    regime : str
        A name of :data:`REGIME_SPECS`.
    q : ndarray of shape (n_samples, n_classes)
        The model's predicted probabilities (rows on the simplex).
    utility : Utility
        The experiment's (normalised) objective :math:`u`.
    training_utility : Utility, optional
        The utility the model was trained with; needed for the
        ``recovered_ex_post`` view (``inverse_prior``), whose beliefs are
        recovered with Theorem 2 before :math:`p^u` is applied.

    Returns
    -------
    p : ndarray of shape (n_samples, n_classes)
        ``q`` itself (``as_is``), or :math:`p^u(q) = Uq / \iota^\top U q` (Eq 8).
    decisions : ndarray of intp
        ``argmax p`` (Eq 9) for the ``as_is`` view; the expected-utility rule
        :math:`\arg\max_a (Uq)_a` (Eq 5) for the ex post views.

    Examples
    --------
    >>> import numpy as np, expost
    >>> u = expost.Utility.from_class_weights([1.0, 99.0])
    >>> q = np.array([[0.9, 0.1]])
    >>> regime_view("unweighted_raw", q, u)[1], regime_view("expost", q, u)[1]
    (array([0]), array([1]))
    """
    try:
        spec = REGIME_SPECS[regime]
    except KeyError:
        raise ValueError(_error("regime", f"one of {tuple(REGIME_SPECS)}", describe(regime))) from None
    if spec.view == "as_is":
        return q, np.argmax(q, axis=1)
    if spec.view == "recovered_ex_post":
        if training_utility is None:
            raise ValueError(
                _error("training_utility", f"the utility the {regime!r} model was trained with",
                       "None")
            )
        q = recover_posterior(q, training_utility)
    return _weighted_prediction(q, utility.matrix), _decide(q, utility.matrix)
