"""The logistic-regression probe behind ``objective.emphasized: hardest``, and where it runs.

:func:`probe_recall` fits the probe and scores it; it imports scikit-learn, which
costs 1.5-2.5 s. ``expost run`` has the report helper (:mod:`expost.report.helper`)
import scikit-learn while the run imports torch, and has it run the probe, through
:func:`probe_runner`; :func:`run_probe` uses that runner when one is set and it
answers (an array of one recall per class), and fits the probe here otherwise.
Either way the answer is the same: the same function on the same arrays.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import numpy as np
from numpy.typing import NDArray

__all__ = ["PROBE_MODULES", "probe_recall", "probe_runner", "run_probe"]

#: What :func:`probe_recall` imports (a helper imports them ahead of the request).
PROBE_MODULES = ("sklearn.linear_model", "sklearn.preprocessing")

#: ``runner(xtr, ytr, xva, yva, n_classes)``: the recall array, or None if it could not.
Runner = Callable[[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64],
                   NDArray[np.int64], int], "NDArray[np.float64] | None"]

_RUNNER: ContextVar[Runner | None] = ContextVar("expost_probe_runner", default=None)


def probe_recall(xtr: NDArray[np.float64], ytr: NDArray[np.int64], xva: NDArray[np.float64],
                 yva: NDArray[np.int64], n_classes: int) -> NDArray[np.float64]:
    """Validation recall of each class (inf for a class absent from ``yva``) of a
    multinomial logistic regression (scikit-learn's, ``max_iter=300``) fitted on the
    standardised training rows ``xtr`` and labels ``ytr``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(xtr)
    probe = LogisticRegression(max_iter=300).fit(scaler.transform(xtr), ytr)
    pred = probe.predict(scaler.transform(xva))
    return np.array([np.mean(pred[yva == c] == c) if np.any(yva == c) else np.inf
                     for c in range(n_classes)])


@contextlib.contextmanager
def probe_runner(runner: Runner | None) -> Iterator[None]:
    """Within the block, :func:`run_probe` asks ``runner`` first (None: fit here)."""
    token = _RUNNER.set(runner)
    try:
        yield
    finally:
        _RUNNER.reset(token)


def run_probe(xtr: NDArray[np.float64], ytr: NDArray[np.int64], xva: NDArray[np.float64],
              yva: NDArray[np.int64], n_classes: int) -> NDArray[np.float64]:
    """:func:`probe_recall`, from the current runner if it answers, else computed here."""
    runner = _RUNNER.get()
    if runner is not None:
        recall = runner(xtr, ytr, xva, yva, n_classes)
        if recall is not None and np.shape(recall) == (n_classes,):
            return np.asarray(recall, dtype=np.float64)
    return probe_recall(xtr, ytr, xva, yva, n_classes)
