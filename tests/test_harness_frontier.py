"""The vectorised ex post frontier against the core's one-utility functions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import expost
from expost.experiments.evaluate import decode_probabilities, encode_log_probs
from expost.experiments.frontier import FRONTIER_METRICS, frontier, stack_utilities
from strategies import simplex_rows, utilities


def _core(q, y, u, view):
    """The frontier's metrics for one utility, from the core's public functions."""
    if view == "ex_post":
        p, d = expost.weighted_prediction(q, u), expost.decide(q, u)
    else:
        p, d = q, np.argmax(q, axis=1)
    r = int(np.argmax(u.matrix.sum(axis=0)))
    with np.errstate(divide="ignore"):
        return {
            "weighted_loss": expost.weighted_loss(p, y, u, reduction="mean"),
            "classification_utility": expost.classification_utility(d, y, u, reduction="mean"),
            "log_loss": expost.log_loss(p, y, reduction="mean"),
            "accuracy": np.mean(d == y),
            "emphasized_recall": np.mean(d[y == r] == r) if np.any(y == r) else np.nan,
        }


def _clear_decisions(q, u, view):
    """No near-ties at the top (the two implementations may round a tie differently)."""
    s = np.sort(q @ u.matrix.T if view == "ex_post" else q, axis=1)
    return np.all(s[:, -1] - s[:, -2] > 1e-9 * np.maximum(1.0, s[:, -1]))


def _check(q, y, us, view):
    got = frontier(q, y, us, view=view)
    assert set(got) == set(FRONTIER_METRICS)
    for k, u in enumerate(us):
        want = _core(q, y, u, view)
        for name in FRONTIER_METRICS:
            np.testing.assert_allclose(got[name][k], want[name], rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name}, utility {k}, view {view}")


@given(data=st.data(), n=st.integers(1, 40), m=st.integers(2, 6), k=st.integers(1, 5),
       view=st.sampled_from(["ex_post", "as_is"]))
def test_frontier_equals_the_core(data, n, m, k, view):
    q = data.draw(simplex_rows(n, m))
    y = data.draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n).map(np.array))
    us = [data.draw(utilities(m, square=True)) for _ in range(k)]
    assume(all(_clear_decisions(q, u, view) for u in us))
    q_in, y_in = q.copy(), y.copy()
    _check(q, y, us, view)
    assert np.array_equal(q, q_in) and np.array_equal(y, y_in)


@pytest.mark.parametrize("kind", ["diagonal", "dense", "sparse", "rectangular"])
def test_frontier_larger_problem(kind, rng):
    n, m, k = 3000, 7, 23
    q = rng.dirichlet(np.ones(m) * 0.5, size=n)
    y = rng.integers(0, m, n)
    us = []
    for _ in range(k):
        if kind == "diagonal":
            us.append(expost.Utility.from_class_weights(rng.uniform(0.05, 20, m)))
        elif kind == "rectangular":
            us.append(expost.Utility(rng.uniform(0, 2, (m + 2, m))))
        else:
            mat = rng.uniform(0, 3, (m, m))
            if kind == "sparse":
                mat = mat * (rng.random((m, m)) < 0.3) + np.diag(rng.uniform(0.1, 1, m))
            us.append(expost.Utility(mat))
    if kind == "rectangular":  # p^u is over actions; the log loss of a class does not apply
        got = frontier(q, y, us)
        for j, u in enumerate(us):
            wl = expost.weighted_loss(expost.weighted_prediction(q, u), y, u, reduction="mean")
            cu = expost.classification_utility(expost.decide(q, u), y, u, reduction="mean")
            assert np.isclose(got["weighted_loss"][j], wl, rtol=1e-10)
            assert np.isclose(got["classification_utility"][j], cu, rtol=1e-10)
        return
    for view in ("ex_post", "as_is"):
        _check(q, y, us, view)


def test_frontier_on_stored_predictions_with_ties():
    # float16 log-probabilities make exact ties common: both sides break them to the
    # lowest action, so even tied rows agree exactly.
    lp = np.log(np.array([[0.5, 0.25, 0.25], [0.2, 0.4, 0.4], [1 / 3, 1 / 3, 1 / 3]]))
    q = decode_probabilities(encode_log_probs(lp))
    y = np.array([1, 2, 2])
    us = [expost.Utility.from_class_weights(w) for w in ([1, 2, 2], [1, 1, 1], [2, 1, 1])]
    us.append(expost.Utility(np.ones((3, 3)) + np.eye(3)))
    _check(q, y, us, "ex_post")
    _check(q, y, us, "as_is")


def test_frontier_zero_probabilities_give_inf_like_the_core():
    q = np.array([[1.0, 0.0], [0.3, 0.7]])
    y = np.array([1, 1])
    us = [expost.Utility.from_class_weights([1, 3]), expost.Utility([[1.0, 0.0], [0.5, 2.0]])]
    for view in ("ex_post", "as_is"):
        got = frontier(q, y, us, view=view)
        for k, u in enumerate(us):
            want = _core(q, y, u, view)
            for name in ("weighted_loss", "log_loss", "classification_utility"):
                assert got[name][k] == pytest.approx(want[name], rel=1e-12), (name, k, view)


def test_recall_is_nan_without_the_class():
    q = np.array([[0.9, 0.1], [0.8, 0.2]])
    got = frontier(q, [0, 0], [expost.Utility.from_class_weights([1, 5])])
    assert np.isnan(got["emphasized_recall"][0])


def test_stack_utilities_checks():
    assert stack_utilities(expost.Utility.from_class_weights([1, 2])).shape == (1, 2, 2)
    assert stack_utilities([[1, 0], [0, 2]]).shape == (1, 2, 2)  # one matrix as nested lists
    assert stack_utilities(np.ones((4, 3, 3))).shape == (4, 3, 3)
    with pytest.raises(ValueError, match=r"`utilities\[1\]`: `utility` must be nonnegative"):
        stack_utilities([np.eye(2), -np.eye(2)])
    with pytest.raises(ValueError, match="matrices of one shape"):
        stack_utilities([np.eye(2), np.eye(3)])
    with pytest.raises(ValueError, match="at least one utility"):
        stack_utilities([])
    with pytest.raises(TypeError, match="`utilities` must be"):
        stack_utilities("eye")
    with pytest.raises(ValueError, match="`view` must be"):
        frontier(np.eye(2), [0, 1], np.eye(2), view="raw")
    with pytest.raises(ValueError, match="`q` must be"):
        frontier(np.array([[0.5, 0.6]]), [0], np.eye(2))
