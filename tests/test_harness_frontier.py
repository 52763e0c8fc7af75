"""The vectorised ex post frontier against the core's one-utility functions."""

from __future__ import annotations

import importlib
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from threadpoolctl import threadpool_limits

import expost
from expost.experiments.evaluate import (
    FRONTIER_METRICS,
    decode_probabilities,
    encode_log_probs,
    frontier,
    stack_utilities,
)
from strategies import simplex_rows, utilities

# The modules of the metric engine's block settings (patched by _blocks below).
engine_module = importlib.import_module("expost._batched_metrics")
log_ratios_module = importlib.import_module("expost._log_ratios")


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
    lp = np.log(np.array([[0.5, 0.25, 0.25], [0.2, 0.4, 0.4], [1 / 3, 1 / 3, 1 / 3],
                          [0.2, 0.4, 0.4]]))
    q = decode_probabilities(encode_log_probs(lp))
    y = np.array([1, 2, 2, 1])
    us = [expost.Utility.from_class_weights(w) for w in ([1, 2, 2], [1, 1, 1], [2, 1, 1])]
    us.append(expost.Utility(np.ones((3, 3)) + np.eye(3)))
    _check(q, y, us, "ex_post")
    _check(q, y, us, "as_is")
    _check(q, y, us[:3], "ex_post")  # class weights only: the diagonal path


def test_frontier_zero_probabilities_give_inf_like_the_core():
    q = np.array([[1.0, 0.0], [0.3, 0.7]])
    y = np.array([1, 1])
    us = [expost.Utility.from_class_weights([1, 3]), expost.Utility([[1.0, 0.0], [0.5, 2.0]])]
    for view in ("ex_post", "as_is"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # log 0 is expected here: no RuntimeWarning
            got = frontier(q, y, us, view=view)
        for k, u in enumerate(us):
            want = _core(q, y, u, view)
            for name in ("weighted_loss", "log_loss", "classification_utility"):
                assert got[name][k] == pytest.approx(want[name], rel=1e-12), (name, k, view)


# Block settings of the dense path (_BLOCK, _BLOCK_COLUMNS, _MAX_ROWS, _LOG2_SPAN): tiny
# blocks give several utility chunks and row blocks per class, and a small span makes the
# running products flush often, scale columns (wide bounds) or log every entry (g = 1).
SMALL_BLOCKS = [(48, 9, 5, 40.0), (200, 30, 7, 60.0), (64, 1, 255, 3.0), (512, 64, 3, 1000.0),
                (64, 8, 2, 1000.0)]


@contextmanager
def _blocks(setting):
    with pytest.MonkeyPatch.context() as mp:
        if setting is not None:
            mp.setattr(engine_module, "_DIRECT_UTILITIES", 0)  # the blocks, however few utilities
            modules = (engine_module, engine_module, engine_module, log_ratios_module)
            for module, name, value in zip(
                    modules, ("_BLOCK", "_BLOCK_COLUMNS", "_MAX_ROWS", "_LOG2_SPAN"), setting,
                    strict=True):
                mp.setattr(module, name, value)
        yield


@given(data=st.data(), n=st.integers(1, 60), m=st.integers(2, 5), k=st.integers(1, 7),
       blocks=st.sampled_from(SMALL_BLOCKS))
def test_dense_blocks_equal_the_core(data, n, m, k, blocks):
    q = data.draw(simplex_rows(n, m))
    y = data.draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n).map(np.array))
    us = [data.draw(utilities(m, square=True)) for _ in range(k)]
    full = data.draw(hnp.arrays(np.float64, (m, m), elements=st.floats(0.1, 10.0)))
    us.append(expost.Utility(full))  # never diagonal: the dense path
    assume(all(_clear_decisions(q, u, "ex_post") for u in us))
    with _blocks(blocks):
        _check(q, y, us, "ex_post")


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("blocks", [None, *SMALL_BLOCKS])
def test_dense_path_equals_the_core_on_stored_predictions(blocks, rng):
    # float16-stored predictions (exact ties in q) and utilities with repeated rows
    # (exact ties in Uq, broken to the lowest action like expost.decide), zeros (rows
    # logged directly), entries spanning many orders of magnitude, and rows of very
    # different scales (p^u far below 1: the bounds of the ratios limit the products).
    n, m = 700, 6
    logits = rng.normal(0, 2, (n, m))
    q = decode_probabilities(encode_log_probs(logits - np.log(np.exp(logits).sum(1, keepdims=True))))
    y = rng.integers(0, m, n)
    us = []
    for j in range(12):
        mat = rng.uniform(0.1, 2, (m, m))
        if j % 3 == 1:
            mat[2] = mat[0]  # actions 0 and 2 always tie
            mat[4] = mat[1]
        if j % 4 == 2:
            mat = mat * (rng.random((m, m)) < 0.5) + np.diag(rng.uniform(0.5, 1, m))
        if j % 5 == 3:
            mat = mat * 1e-80 * 10.0 ** rng.uniform(0, 30, (m, m))  # tiny and wide
        if j % 5 == 4:
            mat = mat * 10.0 ** np.linspace(-20, 20, m)[:, None]  # actions of many scales
        us.append(expost.Utility(mat))
    with _blocks(blocks):
        got = frontier(q, y, us)
    ties = 0
    for k, u in enumerate(us):
        want = _core(q, y, u, "ex_post")
        ties += np.sum(np.sort(q @ u.matrix.T, axis=1)[:, -1] == np.sort(q @ u.matrix.T,
                                                                          axis=1)[:, -2])
        for name in FRONTIER_METRICS:  # relative only: the tiny utilities' losses are ~1e-78
            np.testing.assert_allclose(got[name][k], want[name], rtol=1e-10, atol=0,
                                       err_msg=f"{name}, utility {k}")
    assert ties > n  # the tie-breaking path ran


@pytest.mark.parametrize("case", ["dense", "class weights"])
def test_losses_stay_accurate_when_p_is_close_to_one(case, rng):
    # Large weights on an action with p^u near 1: the loss is a small difference of
    # large logarithms, log z - log 1'Uz. Summing logs of z and of 1'Uq separately and
    # subtracting lost ~4e-10 (dense, found by hypothesis) and ~8e-10 (class weights)
    # relative to the core; logs of ratios of products do not.
    if case == "dense":
        q, y = np.full((39, 3), 1 / 3), np.zeros(39, dtype=int)
        u = expost.Utility([[693.0, 306.5, 0.0], [0.0, 0.0, 0.0078125], [0.0, 0.0, 0.0]])
    else:
        q, y = rng.dirichlet([5, 5], 60), np.zeros(60, dtype=int)
        u = expost.Utility.from_class_weights([1e4, 1e-2])
    _check(q, y, [u], "ex_post")


@pytest.mark.parametrize("blocks", [None, (64, 8, 2, 1000.0)])
def test_dense_path_with_q_off_the_simplex_within_tolerance(blocks, rng):
    # check_probabilities accepts entries down to -atol: (Uq)_a is then not bounded
    # below by min_c u(a, c). Here q_0 = -9.99e-10 and u(0, .) = (1, 1e-9, ...): (Uq)_0
    # is about 1e-12, a thousand times below that bound; products of such values
    # assuming the bound would underflow.
    n, m = 300, 4
    q = rng.dirichlet(np.ones(m - 1), size=n) * (1 + 9.99e-10)
    q = np.column_stack([np.full(n, -9.99e-10), q])
    y = rng.integers(0, m, n)
    mats = [np.vstack([[1.0] + [1e-9] * (m - 1), rng.uniform(0.5, 1, (m - 1, m))])
            for _ in range(3)]
    us = [expost.Utility(mat) for mat in mats]
    assert np.all(q @ mats[0].T > 0) and np.any(q @ mats[0][0] < 1e-9)
    with _blocks(blocks):
        _check(q, y, us, "ex_post")


@pytest.mark.parametrize("blocks", [None, (64, 8, 2, 1000.0)])
def test_sparse_utilities_on_confident_predictions(blocks, rng):
    # Rows of U with zeros have no lower bound from U alone; the smallest q (1e-14 here,
    # confident predictions) gives one, (Uq)_a >= q_min sum_c u(a, c), tight for action
    # 0 below: the products of its values run close to the float64 limits.
    n, m = 200, 3
    q = rng.dirichlet(np.ones(m - 1), size=n)
    q = np.column_stack([1e-14 * (1 + rng.random(n)), q * (1 - 2e-14)])
    y = rng.integers(0, m, n)
    us = [expost.Utility([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.5, 0.5, 0.5]]),
          expost.Utility([[2.0, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])]
    with _blocks(blocks):
        _check(q, y, us, "ex_post")


@pytest.mark.parametrize("blocks", [None, (64, 8, 2, 1000.0)])
@pytest.mark.parametrize("large", [0.1, 0.9])
def test_products_run_close_to_the_float64_limits(large, blocks, rng):
    # The data's smallest and largest q of each class bound (Uq)_a: action 0 below
    # ranges over [1e-14, 0.5] (the lower bound sets the length of the products) and,
    # scaled by 1e12, over [0.01, 5e11] (the upper bound does). Mostly small values
    # (large = 0.1) or mostly large ones (0.9): products longer than the bounds allow
    # would underflow or overflow.
    n, m = 300, 3
    q0 = np.where(np.arange(n) % 10 < 10 * large, 0.5, 1e-14)
    q = np.column_stack([q0, rng.dirichlet(np.ones(m - 1), size=n) * (1 - q0)[:, None]])
    y = rng.integers(0, m, n)
    us = [expost.Utility([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]),
          expost.Utility([[1e12, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])]
    with _blocks(blocks):
        _check(q, y, us, "ex_post")


@pytest.mark.parametrize("direct", [True, False])
def test_identical_actions_decide_alike_in_the_engine_and_the_core(direct, rng, monkeypatch):
    # Every action of an all-ones U ties, and so do the repeated rows of the second U;
    # with two BLAS threads expost.decide's product rounded the ones apart (a third of
    # these rows went to other actions than 0) until it took one action of each group
    # of identical rows. The engine's products (float64, by sample) did not.
    n, m = 4000, 40
    q = rng.dirichlet(np.full(m, 0.5), size=n)
    y = rng.integers(0, m, n)
    half = rng.uniform(0.1, 1.0, (m, m))
    half[: m // 2] = rng.uniform(0.5, 1.5, m)
    us = [expost.Utility(np.ones((m, m))), expost.Utility(half)]
    if not direct:
        monkeypatch.setattr(engine_module, "_DIRECT_UTILITIES", 0)
    with threadpool_limits(2, user_api="blas"):
        got = frontier(q, y, us)
        wants = [_core(q, y, u, "ex_post") for u in us]
    for k, want in enumerate(wants):
        assert got["accuracy"][k] == want["accuracy"]
        assert got["emphasized_recall"][k] == want["emphasized_recall"]
    assert got["accuracy"][0] == np.mean(y == 0)  # every decision is action 0


def test_dense_path_with_fewer_actions_than_classes(rng):
    n, m = 300, 5
    q = rng.dirichlet(np.ones(m), size=n)
    y = rng.integers(0, m, n)
    us = [expost.Utility(rng.uniform(0, 1, (3, m))) for _ in range(4)]
    got = frontier(q, y, us)
    for j, u in enumerate(us):
        d = expost.decide(q, u)
        wl = expost.weighted_loss(expost.weighted_prediction(q, u), y, u, reduction="mean")
        cu = expost.classification_utility(d, y, u, reduction="mean")
        assert got["weighted_loss"][j] == pytest.approx(wl, rel=1e-10)
        assert got["classification_utility"][j] == pytest.approx(cu, rel=1e-10)
        assert got["accuracy"][j] == pytest.approx(np.mean(d == y), rel=1e-12)
    assert np.isnan(got["log_loss"]).all()  # p^u is over 3 actions: classes 3, 4 have none


@pytest.mark.parametrize("kind", ["dense", "class weights"])
def test_threads_give_the_same_results(kind, rng):
    n, m = 900, 5
    q = rng.dirichlet(np.ones(m), size=n)
    y = rng.integers(0, m, n)
    if kind == "dense":
        us = [expost.Utility(rng.uniform(0, 1, (m, m))) for _ in range(40)]
    else:
        us = [expost.Utility.from_class_weights(rng.uniform(0.1, 10, m)) for _ in range(40)]
    with _blocks((512, 20, 64, 1000.0)):  # 10 chunks of 4 utilities
        one = frontier(q, y, us)
        for n_jobs in (2, 3, -1):
            got = frontier(q, y, us, n_jobs=n_jobs)
            for name in FRONTIER_METRICS:
                np.testing.assert_array_equal(got[name], one[name], err_msg=name)
    _check(q, y, us[:5], "ex_post")


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
    with pytest.raises(ValueError, match="`n_jobs` must be a positive number of threads or -1"):
        frontier(np.eye(2), [0, 1], np.eye(2), n_jobs=0)
    with pytest.raises(TypeError, match="`n_jobs` must be an integer"):
        frontier(np.eye(2), [0, 1], np.eye(2), n_jobs=2.0)
