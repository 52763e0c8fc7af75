"""calibration_error(kind="positive"): the binary calibration error of netcal / torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest

import expost

torch = pytest.importorskip("torch")
tm = pytest.importorskip("torchmetrics.functional.classification")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("norm", "tm_norm"), [("l1", "l1"), ("max", "max"), ("l2", "l2")])
@pytest.mark.parametrize("n_bins", [5, 15])
def test_positive_equals_torchmetrics_binary(seed, norm, tm_norm, n_bins):
    rng = np.random.default_rng(seed)
    p1 = rng.beta(0.6, 2.0, size=500)  # skewed, like a rare positive class
    y = (rng.random(500) < np.clip(p1 * 1.4, 0, 1)).astype(int)  # miscalibrated on purpose
    p = np.column_stack([1.0 - p1, p1])
    ours = expost.calibration_error(p, y, kind="positive", norm=norm, n_bins=n_bins)
    ref = float(tm.binary_calibration_error(torch.tensor(p1), torch.tensor(y), n_bins=n_bins,
                                            norm=tm_norm))
    assert ours == pytest.approx(ref, abs=1e-9)
    # ... and it is not the top-label error, which torchmetrics does not report for binary data
    assert ours != pytest.approx(expost.calibration_error(p, y, norm=norm, n_bins=n_bins),
                                 abs=1e-6)


def test_positive_reliability_curve_is_consistent_with_the_error():
    rng = np.random.default_rng(5)
    p1 = rng.random(300)
    y = (rng.random(300) < p1**2).astype(int)
    p = np.column_stack([1.0 - p1, p1])
    c = expost.reliability_curve(p, y, n_bins=10, kind="positive")
    assert c.confidence.shape == (10,)
    ne = c.counts > 0
    ece = float(np.sum(c.counts[ne] / 300 * np.abs(c.accuracy[ne] - c.confidence[ne])))
    assert ece == pytest.approx(expost.calibration_error(p, y, n_bins=10, kind="positive"))
    # the accuracy of a bin is the positive frequency of its rows
    first = (p1 < 0.1)
    assert c.accuracy[0] == pytest.approx(y[first].mean())


def test_positive_needs_two_columns():
    p = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"`p` must be two columns .*kind='positive'.*got 3 columns"):
        expost.calibration_error(p, [0, 1, 2, 0], kind="positive")
    with pytest.raises(ValueError, match=r"`kind` must be one of"):
        expost.calibration_error(p, [0, 1, 2, 0], kind="binary")
