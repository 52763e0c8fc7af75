"""Stored predictions re-evaluated under other utilities: the work behind ``expost evaluate``.

The harness stores every interval's test-set predictions; here they are scored
again under any utilities, through the same engine the harness used when it
stored its metrics (:func:`~expost.experiments.evaluate.score_regime`), so the
run's own objective reproduces the stored metrics, recall included.

Under a utility other than the run's own objective, Ex Post Weighting (and the
other regimes whose training ignores the objective) is legitimate: that is the
point of it. A model *trained for* the objective (``weighted``, ``resampled``,
``metacost``) was trained for the run's objective, not for the new one, and is
labelled so (:func:`trained_for_label`); Weighted Training under a new objective
needs a new training (a new ``expost run`` with that objective).

Which class's recall is reported (``emphasized_recall``), per utility: the
emphasised class of ``--emphasize``; the experiment's own recall class for its
own objective; else :func:`~expost.experiments.evaluate.recall_class`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from .._csv_input import read_csv_matrix
from .._utility import Utility, is_diagonal_matrix
from .._validation import _error
from .evaluate import (
    as_matrix,
    checked_matrix,
    one_blas_thread,
    recall_class,
    score_regime,
    stack_utilities,
)
from .metrics import METRICS, higher_is_better
from .objective import class_index
from .regimes import REGIME_SPECS, TRAININGS, regime_label
from .store import ResultStore

__all__ = ["BestIntervals", "UtilityStack", "evaluate_run_dir", "experiment_info",
           "is_own_objective", "iter_scores", "recall_classes", "trained_for_label",
           "utilities_for_run", "utility_stack"]

#: With more utilities than this, ``evaluate_run_dir`` skips the calibration error (NaN).
MAX_CALIBRATED_UTILITIES = 16


def experiment_info(run_dir: str | Path) -> dict[str, Any]:
    """The stored description of the experiment in ``run_dir`` (class names, prior, ...)."""
    with ResultStore(run_dir, readonly=True) as store:
        return store.experiment_info()


class UtilityStack(NamedTuple):
    """Checked utilities in the metric engine's form, with their labels and recall classes.

    ``values`` is (K, n_classes) class weights when every utility is diagonal, else
    (K, n_actions, n_classes) matrices (:func:`~expost.experiments.evaluate.stack_utilities`
    with ``class_weights=True``). :func:`iter_scores` takes it as it is.
    """

    values: NDArray[np.float64]
    labels: list[str]
    recall_of: list[int]


def _iter_utilities(
    info: dict[str, Any], utility_files: Sequence[str | Path], emphasize: str | None,
    ratios: Sequence[float] | None, normalize: bool,
) -> Iterator[tuple[Utility, str, int | None]]:
    """The utilities of :func:`utilities_for_run`, one at a time: (utility, label, emphasised)."""
    class_names = list(info["class_names"])
    m = len(class_names)
    prior = np.asarray(info["train_prior"], dtype=np.float64)

    def finish(u: Utility) -> Utility:
        return u.normalized(prior) if normalize else u

    labels = _file_labels(utility_files)
    if ratios is not None and len(set(ratios)) != len(ratios):
        raise ValueError(f"`--ratio`: each ratio once, got {' '.join(f'{r:g}' for r in ratios)} "
                         "(the results of a repeated one would be indistinguishable).")
    for path, label in zip(utility_files, labels, strict=True):
        mat, header = read_csv_matrix(path, "--utility", class_names=class_names)
        if header is not None and header != class_names:
            raise ValueError(f"`--utility`: the header of {path!r} names the classes {header}, "
                             f"the experiment's classes are {class_names} (in this order).")
        u = Utility(mat)
        if u.matrix.shape != (m, m):
            raise ValueError(f"`--utility`: expected a {m} x {m} matrix (one row per action, one "
                             f"column per class), got {u.matrix.shape[0]} x {u.matrix.shape[1]}.")
        yield finish(u), label, None
    if emphasize is not None:
        idx = class_index(emphasize, class_names, "`--emphasize`")
        for r in ratios or [99.0]:
            yield finish(Utility.emphasize(m, idx, r)), f"emphasize {class_names[idx]} {r:g}:1", idx
    if not utility_files and emphasize is None:
        raise ValueError("give --utility U.csv or --emphasize CLASS [--ratio R ...].")


def _file_labels(paths: Sequence[str | Path]) -> list[str]:
    """Each ``--utility`` file's label: its name without the suffix, or the path as given
    where two files share a name (``a/u.csv`` and ``b/u.csv`` gave two utilities labelled
    ``u``). A file given twice is refused."""
    seen: dict[Path, str] = {}
    for p in paths:
        key = Path(p).resolve()
        if key in seen:
            raise ValueError(f"`--utility`: {str(p)!r} is given twice (as {seen[key]!r} too); "
                             "give each file once.")
        seen[key] = str(p)
    stems = [Path(p).stem for p in paths]
    return [stem if stems.count(stem) == 1 else str(p) for stem, p in zip(stems, paths, strict=True)]


def utilities_for_run(
    info: dict[str, Any],
    *,
    utility_files: Sequence[str | Path] = (),
    emphasize: str | None = None,
    ratios: Sequence[float] | None = None,
    normalize: bool = True,
) -> tuple[list[Utility], list[str], list[int]]:
    """The utilities to evaluate a stored experiment under, their labels and recall classes.

    ``utility_files`` are CSV matrices u[action, class] (optional header of the
    experiment's class names, in order); ``emphasize`` a class name or index,
    weighted ``r`` : 1 for each of ``ratios`` (default 99). Unless ``normalize``
    is False, each utility is normalised on the training prior (Eq 21).
    :func:`utility_stack` gives the same utilities without one object per utility.
    """
    items = list(_iter_utilities(info, utility_files, emphasize, ratios, normalize))
    utilities = [u for u, _, _ in items]
    return (utilities, [lab for _, lab, _ in items],
            recall_classes(info, utilities, [e for _, _, e in items]))


def utility_stack(
    info: dict[str, Any],
    *,
    utility_files: Sequence[str | Path] = (),
    emphasize: str | None = None,
    ratios: Sequence[float] | None = None,
    normalize: bool = True,
) -> UtilityStack:
    """The utilities of :func:`utilities_for_run` as one checked :class:`UtilityStack`.

    Each utility is built, checked and normalised once and kept only in the engine's
    form: class weights (``--emphasize``, diagonal files) as one row of weights, so
    memory grows by n_classes floats per utility, not by a matrix and an object.
    """
    rows: list[NDArray[np.float64]] = []
    diagonal = True
    labels: list[str] = []
    recall: list[int] = []
    for u, label, emphasized in _iter_utilities(info, utility_files, emphasize, ratios,
                                                normalize):
        mat = u.matrix
        if diagonal and not is_diagonal_matrix(mat):  # from here on, matrices
            diagonal = False
            rows = [np.diag(w) for w in rows]
        rows.append(np.diagonal(mat).copy() if diagonal else mat)
        labels.append(label)
        recall.append(_recall_class_of(info, mat, emphasized))
    return UtilityStack(np.stack(rows), labels, recall)


def is_own_objective(info: dict[str, Any], matrix: Any) -> bool:
    """Whether ``matrix`` is the stored experiment's own (normalised) objective, to 1e-12.

    >>> is_own_objective({"utility": [[1.0, 0.0], [0.0, 2.0]]}, [[1.0, 0.0], [0.0, 2.0]])
    True
    """
    own = np.asarray(info.get("utility", []), dtype=np.float64)
    mat = np.asarray(matrix, dtype=np.float64)
    return own.shape == mat.shape and bool(np.allclose(mat, own, rtol=1e-12, atol=0.0))


def trained_for_label(info: dict[str, Any], regime: str, own: bool) -> str:
    """How ``regime`` is labelled in a table under a utility (``own``: the run's objective).

    A regime whose training depends on the objective is, under another utility,
    labelled with the objective it was trained for.

    >>> info = {"objective_note": "emphasized class '8', ratio 99:1, normalised with Eq 21"}
    >>> trained_for_label(info, "weighted", own=False)
    "Weighted Training (trained for the run's objective: emphasized class '8', ratio 99:1)"
    >>> trained_for_label(info, "expost", own=False), trained_for_label(info, "weighted", True)
    ('Ex Post Weighting', 'Weighted Training')
    """
    spec = REGIME_SPECS.get(regime)
    kind = TRAININGS[spec.training] if spec is not None else None
    uses_objective = kind is not None and (kind.weighted == "objective" or kind.sampler
                                           == "cost_proportionate" or kind.relabel_from is not None)
    if own or not uses_objective:
        return regime_label(regime)
    note = str(info.get("objective_note") or "").split(", normalised")[0]
    return f"{regime_label(regime)} (trained for the run's objective{': ' + note if note else ''})"


def recall_classes(info: dict[str, Any], utilities: Sequence[Utility | Any] | NDArray[Any],
                   emphasized: Sequence[int | None] | None = None) -> list[int]:
    """Per utility, the class whose recall is reported (see the module's docstring).

    >>> import expost
    >>> info = {"utility": [[1.0, 0.0], [0.0, 0.5]], "recall_class": 1}
    >>> us = [expost.Utility(info["utility"]), expost.Utility.from_class_weights([2, 0.5])]
    >>> recall_classes(info, us), recall_classes(info, us, [None, 1])
    ([1, 0], [1, 1])
    """
    return [_recall_class_of(info, mat, None if emphasized is None else emphasized[k])
            for k, mat in enumerate(checked_matrix(u, k) for k, u in enumerate(utilities))]


def _recall_class_of(info: dict[str, Any], mat: NDArray[np.float64], chosen: int | None) -> int:
    if chosen is None and info.get("recall_class") is not None and is_own_objective(info, mat):
        chosen = int(info["recall_class"])  # the objective's own: the stored metrics' class
    return recall_class(mat, chosen)


def iter_scores(run_dir: str | Path,
                utilities: UtilityStack | Sequence[Utility | Any] | NDArray[np.float64],
                *, recall_of: Sequence[int] | None = None, n_jobs: int | None = None,
                run_ids: Collection[str] | None = None
                ) -> Iterator[tuple[dict[str, Any], dict[str, NDArray[np.float64]]]]:
    """``(run, metrics)`` for every run (or those in ``run_ids``) and stored interval,
    all utilities at once.

    ``run`` holds ``run_id``, ``regime``, ``seed``, ``interval``, ``step`` and
    ``epoch``; ``metrics`` maps each name of ``METRICS`` to an array of shape (K,).
    The utilities are checked once, here (a :class:`UtilityStack` is checked already,
    and brings its recall classes); each interval is decoded once and
    scored with :func:`~expost.experiments.evaluate.score_regime` through its
    regime's view (``as_is``, ``ex_post``, or ``recovered_ex_post`` for
    ``inverse_prior``). With at most 16 utilities the calibration error is
    computed too; otherwise it is NaN. Nothing is held across intervals: memory
    does not grow with the number of intervals or runs. ``n_jobs`` threads (default:
    two, or one on a one-CPU machine) share the utilities; the results do not depend
    on it.
    """
    jobs = min(2, os.cpu_count() or 1) if n_jobs is None else n_jobs
    if isinstance(utilities, UtilityStack):  # checked already
        items: Any = None
        stack = utilities.values
        recall_of = utilities.recall_of if recall_of is None else recall_of
    else:
        items = utilities if isinstance(utilities, np.ndarray) else list(utilities)
        stack = stack_utilities(items, class_weights=True)  # class weights: (K, m), not K matrices
    with ResultStore(run_dir, readonly=True) as store, one_blas_thread():
        info = store.experiment_info()
        if recall_of is not None and len(recall_of) != stack.shape[0]:
            raise ValueError(_error("recall_of", f"{stack.shape[0]} classes, one per utility",
                                    f"{len(recall_of)}"))
        recall = np.asarray(recall_classes(info, items) if recall_of is None else
                            [recall_class(as_matrix(stack, k), r) for k, r in
                             enumerate(recall_of)], dtype=np.intp)
        y = store.array("test_labels").astype(np.intp)
        by_key: dict[str, list[dict[str, Any]]] = {}
        for run in store.runs():
            if run_ids is None or str(run["run_id"]) in run_ids:
                by_key.setdefault(run["train_key"], []).append(run)
        u_ip = Utility(info["inverse_prior_utility"]) if info.get(
            "inverse_prior_utility") else None
        calibration = stack.shape[0] <= MAX_CALIBRATED_UTILITIES
        for key, interval, step, epoch, q in store.iter_probabilities():
            for run in by_key.get(key, []):
                metrics = score_regime(q, y, stack, run["regime"], recall_of=recall,
                                       training_utility=u_ip, calibration=calibration,
                                       n_jobs=jobs)
                yield ({"run_id": run["run_id"], "regime": run["regime"], "seed": run["seed"],
                        "interval": interval, "step": step, "epoch": epoch}, metrics)


def evaluate_run_dir(run_dir: str | Path, utilities: Sequence[Utility | Any], *,
                     recall_of: Sequence[int] | None = None) -> list[list[dict[str, Any]]]:
    """Per utility, the per-interval test records of every run under that utility.

    The records of :func:`iter_scores`, one dict per utility, run and interval
    (for many utilities and intervals prefer :func:`iter_scores`, which holds
    none of them). ``recall_of`` defaults to :func:`recall_classes`.
    """
    stack = stack_utilities(list(utilities))
    out: list[list[dict[str, Any]]] = [[] for _ in range(stack.shape[0])]
    for run, metrics in iter_scores(run_dir, stack, recall_of=recall_of):
        for k in range(stack.shape[0]):
            out[k].append({**run, **{name: float(v[k]) for name, v in metrics.items()}})
    return out


_WHEN = ("interval", "step", "epoch")


class BestIntervals:
    """Per utility and run, the record of the best interval of each of ``metrics``, streamed.

    The Table 1 protocol of :func:`expost.report.best_intervals` (minimum for
    losses, maximum otherwise, ties to the earliest interval, NaN skipped, the
    first record when no value is defined), kept as arrays over utilities while
    the intervals stream past: memory grows with the runs and the utilities, not
    with the intervals. :meth:`records` gives per utility the records Table 1 needs
    (``best_intervals`` of them picks the same values).

    >>> import numpy as np
    >>> b = BestIntervals(2, ["weighted_loss"])
    >>> for t, v in enumerate([[0.5, 0.4], [0.3, 0.6], [0.3, np.nan]]):
    ...     b.add({"run_id": "r", "regime": "expost", "interval": t, "step": t, "epoch": t},
    ...           {"weighted_loss": np.array(v)})
    >>> [[(r["interval"], r["weighted_loss"]) for r in b.records(k)] for k in range(2)]
    [[(1, 0.3)], [(0, 0.4)]]
    """

    def __init__(self, n_utilities: int, metrics: Sequence[str]) -> None:
        self.n, self.metrics = n_utilities, tuple(metrics)
        # run_id -> metric -> (interval of the best, value, {name: values at the best})
        self.runs: dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]] = {}

    def add(self, run: dict[str, Any], metrics: dict[str, NDArray[np.float64]]) -> None:
        """One interval of one run: ``metrics`` maps names to arrays of shape (K,)."""
        best = self.runs.setdefault(run["run_id"], (dict(run), {}))[1]
        for m in self.metrics:
            v = metrics[m]
            if m not in best:
                best[m] = {**{t: np.full(self.n, run[t]) for t in _WHEN},
                           **{name: np.array(a, dtype=np.float64) for name, a in metrics.items()}}
                continue
            cur = best[m][m]
            better = (v > cur) if higher_is_better(m) else (v < cur)
            better |= np.isnan(cur) & ~np.isnan(v)
            if better.any():
                for t in _WHEN:
                    best[m][t][better] = run[t]
                for name, a in metrics.items():
                    best[m][name][better] = a[better]

    def records(self, k: int) -> list[dict[str, Any]]:
        """Utility ``k``: per run, the record of the best interval of each metric."""
        out = []
        for meta, best in self.runs.values():
            seen = set()
            for m in self.metrics:
                t = int(best[m]["interval"][k])
                if t not in seen:  # one record per interval
                    seen.add(t)
                    out.append({**meta, "interval": t, "step": int(best[m]["step"][k]),
                                "epoch": float(best[m]["epoch"][k]),
                                **{name: float(best[m][name][k]) for name in METRICS
                                   if name in best[m]}})
        return out
