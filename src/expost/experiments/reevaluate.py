"""Stored predictions re-evaluated under other utilities: the work behind ``expost evaluate``.

The harness stores every interval's test-set predictions; here they are scored
again under any utilities, through the same engine the harness used when it
stored its metrics (:func:`~expost.experiments.evaluate.score_regime`), so the
run's own objective reproduces the stored metrics, recall included.

Which class's recall is reported (``emphasized_recall``), per utility: the
emphasised class of ``--emphasize``; the experiment's own recall class for its
own objective; else :func:`~expost.experiments.evaluate.recall_class`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._csv_input import read_csv_matrix
from .._utility import Utility
from .evaluate import one_blas_thread, recall_class, score_regime, stack_utilities
from .objective import class_index
from .store import ResultStore

__all__ = ["evaluate_run_dir", "experiment_info", "recall_classes", "utilities_for_run"]

#: With more utilities than this, ``evaluate_run_dir`` skips the calibration error (NaN).
MAX_CALIBRATED_UTILITIES = 16


def experiment_info(run_dir: str | Path) -> dict[str, Any]:
    """The stored description of the experiment in ``run_dir`` (class names, prior, ...)."""
    with ResultStore(run_dir, readonly=True) as store:
        return store.experiment_info()


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
    """
    class_names = list(info["class_names"])
    m = len(class_names)
    prior = np.asarray(info["train_prior"], dtype=np.float64)
    utilities, labels, emphasized = [], [], []
    for path in utility_files:
        mat, header = read_csv_matrix(path, "--utility", class_names=class_names)
        if header is not None and header != class_names:
            raise ValueError(f"`--utility`: the header of {path!r} names the classes {header}, "
                             f"the experiment's classes are {class_names} (in this order).")
        utilities.append(Utility(mat))
        labels.append(Path(path).stem)
        emphasized.append(None)
    if emphasize is not None:
        idx = class_index(emphasize, class_names, "`--emphasize`")
        for r in ratios or [99.0]:
            utilities.append(Utility.emphasize(m, idx, r))
            labels.append(f"emphasize {class_names[idx]} {r:g}:1")
            emphasized.append(idx)
    if not utilities:
        raise ValueError("give --utility U.csv or --emphasize CLASS [--ratio R ...].")
    for u in utilities:
        if u.matrix.shape != (m, m):
            raise ValueError(f"`--utility`: expected a {m} x {m} matrix (one row per action, one "
                             f"column per class), got {u.matrix.shape[0]} x {u.matrix.shape[1]}.")
    if normalize:
        utilities = [u.normalized(prior) for u in utilities]
    return utilities, labels, recall_classes(info, utilities, emphasized)


def recall_classes(info: dict[str, Any], utilities: Sequence[Utility | Any],
                   emphasized: Sequence[int | None] | None = None) -> list[int]:
    """Per utility, the class whose recall is reported (see the module's docstring).

    >>> import expost
    >>> info = {"utility": [[1.0, 0.0], [0.0, 0.5]], "recall_class": 1}
    >>> us = [expost.Utility(info["utility"]), expost.Utility.from_class_weights([2, 0.5])]
    >>> recall_classes(info, us), recall_classes(info, us, [None, 1])
    ([1, 0], [1, 1])
    """
    own = np.asarray(info.get("utility", []), dtype=np.float64)
    stack = stack_utilities(list(utilities))
    out = []
    for k, mat in enumerate(stack):
        chosen = None if emphasized is None else emphasized[k]
        if chosen is None and info.get("recall_class") is not None and own.shape == mat.shape \
                and np.allclose(mat, own, rtol=1e-12, atol=0.0):
            chosen = int(info["recall_class"])  # the objective's own: the stored metrics' class
        out.append(recall_class(mat, chosen))
    return out


def evaluate_run_dir(run_dir: str | Path, utilities: Sequence[Utility | Any], *,
                     recall_of: Sequence[int] | None = None) -> list[list[dict[str, Any]]]:
    """Per utility, the per-interval test records of every run under that utility.

    Computed from the stored probabilities with
    :func:`~expost.experiments.evaluate.score_regime` (all utilities at once, the
    harness's own route); each run is scored through its regime's view (``as_is``,
    ``ex_post``, or ``recovered_ex_post`` for ``inverse_prior``). ``recall_of``
    defaults to :func:`recall_classes`. With at most 16 utilities the calibration
    error is computed too; otherwise it is NaN.
    """
    stack = stack_utilities(list(utilities))
    with ResultStore(run_dir, readonly=True) as store, one_blas_thread():
        info = store.experiment_info()
        recall = np.asarray(recall_classes(info, list(stack)) if recall_of is None
                            else [recall_class(u, r) for u, r in zip(stack, recall_of, strict=True)],
                            dtype=np.intp)
        y = store.array("test_labels").astype(np.intp)
        by_key: dict[str, list[dict[str, Any]]] = {}
        for run in store.runs():
            by_key.setdefault(run["train_key"], []).append(run)
        u_ip = Utility(info["inverse_prior_utility"]) if info.get(
            "inverse_prior_utility") else None
        out: list[list[dict[str, Any]]] = [[] for _ in range(stack.shape[0])]
        for key, interval, step, epoch, q in store.iter_probabilities():
            for run in by_key.get(key, []):
                metrics = score_regime(q, y, stack, run["regime"], recall_of=recall,
                                       training_utility=u_ip,
                                       calibration=stack.shape[0] <= MAX_CALIBRATED_UTILITIES)
                for k in range(stack.shape[0]):
                    out[k].append({"run_id": run["run_id"], "regime": run["regime"],
                                   "seed": run["seed"], "interval": interval, "step": step,
                                   "epoch": epoch,
                                   **{name: float(v[k]) for name, v in metrics.items()}})
    return out
