"""The float16 precision figures stated in docs/experiments.md and experiments/evaluate.py."""

from __future__ import annotations

import numpy as np
import pytest

from expost.experiments.evaluate import decode_probabilities, encode_log_probs

# (log p range, the largest relative error of p the docs state, in %)
STATED = [((-1, 0), 0.024), ((-5, -1), 0.20), ((-10, -5), 0.39), ((-20, -10), 0.78),
          ((-100, -20), 3.2), ((-700, -100), 28.0)]


@pytest.mark.parametrize(("bounds", "stated"), STATED)
def test_stated_relative_error_of_a_stored_probability(bounds, stated):
    s = np.random.default_rng(0).uniform(*bounds, (1_000_000, 1))
    rel = np.abs(np.expm1(encode_log_probs(s).astype(np.float64) - s))
    worst = 100 * rel.max()
    # the figure is the measured worst case, rounded to two significant digits
    assert worst == pytest.approx(stated, rel=0.03)


def test_decoded_probabilities_keep_the_stated_precision():
    """Decoding renormalises: large probabilities stay within a few hundredths of a percent."""
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1.5, size=(20000, 4))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    q = decode_probabilities(encode_log_probs(logp))
    p = np.exp(logp)
    big = p > np.exp(-1)
    assert np.max(np.abs(q[big] / p[big] - 1)) < 2 * 0.024e-2  # own rounding + the row's sum
