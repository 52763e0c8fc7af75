"""Every private scikit-learn name this subpackage uses, in one place.

``expost[sklearn]`` supports ``scikit-learn>=1.6``. The names below are
private in scikit-learn (a leading underscore, or a private module): they may
move or change between releases, so no other module imports them; each is
re-exported here under a plain name, with a fallback where it moved between
1.6 and the newest release. ``tests/test_estimators_compat.py`` checks that no
other module of :mod:`expost.estimators` imports a private scikit-learn name.

* :data:`TEMPERATURE_CALIBRATION` -- whether
  :class:`~sklearn.calibration.CalibratedClassifierCV` has
  ``method="temperature"`` (scikit-learn 1.8); a module flag, so a test can
  force the fallback.
* :func:`calibrated_temperature` -- the inverse temperature a fitted
  ``CalibratedClassifierCV(method="temperature")`` holds, read from its
  private calibrator.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import sklearn

# -- names whose home is stable from 1.6 to 1.9
from sklearn.base import _fit_context as fit_context
from sklearn.metrics._scorer import _Scorer as Scorer
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.metadata_routing import _raise_for_params as raise_for_params
from sklearn.utils.validation import _check_method_params as check_method_params
from sklearn.utils.validation import _check_sample_weight

# -- names that moved: _safe_indexing lives in sklearn.utils._indexing (re-exported
# from sklearn.utils for backward compatibility)
try:
    from sklearn.utils._indexing import _safe_indexing as safe_indexing
except ImportError:  # pragma: no cover - older layouts
    from sklearn.utils import _safe_indexing as safe_indexing

__all__ = [
    "TEMPERATURE_CALIBRATION",
    "HasMethods",
    "Scorer",
    "StrOptions",
    "calibrated_temperature",
    "check_method_params",
    "check_sample_weight",
    "fit_context",
    "raise_for_params",
    "routing_enabled",
    "safe_indexing",
]

#: (major, minor) of the installed scikit-learn.
SKLEARN_VERSION: tuple[int, ...] = tuple(int(part) for part in re.findall(r"\d+", sklearn.__version__)[:2])

#: ``CalibratedClassifierCV(method="temperature")`` exists (scikit-learn >= 1.8).
TEMPERATURE_CALIBRATION: bool = SKLEARN_VERSION >= (1, 8)

# `only_non_negative` became `ensure_non_negative` (scikit-learn 1.6 has the new name;
# the fallback keeps a development snapshot with the old one working).
_NON_NEGATIVE = (
    "ensure_non_negative"
    if "ensure_non_negative" in inspect.signature(_check_sample_weight).parameters
    else "only_non_negative"
)


def check_sample_weight(sample_weight: Any, X: Any, *, dtype: Any = None) -> Any:
    """scikit-learn's sample-weight check: ``None`` becomes ones; negative weights are an error."""
    return _check_sample_weight(sample_weight, X, dtype=dtype, **{_NON_NEGATIVE: True})


def routing_enabled() -> bool:
    """Whether metadata routing is on (``sklearn.set_config(enable_metadata_routing=True)``)."""
    return bool(sklearn.get_config().get("enable_metadata_routing", False))


def calibrated_temperature(calibrated: Any) -> float:
    """The inverse temperature ``beta`` of a fitted ``CalibratedClassifierCV(method="temperature")``.

    With ``ensemble=False`` there is one calibrated classifier with one
    calibrator, whose ``beta_`` multiplies the logits (``softmax(beta * z)``).
    """
    (pair,) = calibrated.calibrated_classifiers_
    (calibrator,) = pair.calibrators
    return float(calibrator.beta_)
