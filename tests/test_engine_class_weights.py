"""The metric engine's fast path for emphasis-style class weights against its general path.

The fast path (:class:`expost._emphasis_metrics._EmphasisScores`) is chosen by the
utilities' structure; forcing the general exact path (``_emphasis_form`` returning
None) must give the same decisions, hence the same classification utility,
accuracy, recall and per-class hits, exactly, and the same losses to rounding.
"""

from __future__ import annotations

import importlib
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expost.experiments.evaluate import score_regime, stack_utilities
from strategies import simplex_rows

engine = importlib.import_module("expost._batched_metrics")
emphasis = importlib.import_module("expost._emphasis_metrics")

EXACT = ("classification_utility", "accuracy", "emphasized_recall")
ROUNDED = ("weighted_loss", "log_loss")


def _both_paths(q, y, w, monkeypatch, n_jobs=1):
    recall = np.argmax(w, axis=1)
    with monkeypatch.context() as mp:
        mp.setattr(engine, "_DIRECT_UTILITIES", 0)  # the batched paths, however few utilities
        fast = engine.batched_metrics(q, y, w, view="ex_post", recall_of=recall, n_jobs=n_jobs)
        mp.setattr(engine, "_emphasis_form", lambda w: None)
        general = engine.batched_metrics(q, y, w, view="ex_post", recall_of=recall)
    return fast, general


def _assert_same(fast, general):
    for name in EXACT:
        assert np.array_equal(fast[name], general[name], equal_nan=True), name
    for name in ROUNDED:
        np.testing.assert_allclose(fast[name], general[name], rtol=1e-12, atol=0, err_msg=name)


@st.composite
def emphasis_weights(draw, k: int, m: int, ratios=(0.25, 0.5, 1.0, 2.0, 3.0, 7.5, 99.0)):
    e = np.array(draw(st.lists(st.integers(0, m - 1), min_size=k, max_size=k)))
    r = np.array(draw(st.lists(st.sampled_from(ratios), min_size=k, max_size=k)))
    scale = np.array(draw(st.lists(st.sampled_from([1.0, 0.3, 1.7]), min_size=k, max_size=k)))
    w = np.ones((k, m)) * scale[:, None]
    w[np.arange(k), e] *= r
    return w


def _draw_probabilities(data, n: int, m: int, tied: bool) -> np.ndarray:
    """Random rows of the simplex, or (``tied``) rows on a coarse grid: exact ties between
    classes, and with w_e q_e."""
    if not tied:
        return data.draw(simplex_rows(n, m))
    grid = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n * m, max_size=n * m)))
    q = grid.reshape(n, m) + 1.0
    return q / q.sum(axis=1, keepdims=True)


@settings(deadline=None, max_examples=60)
@given(data=st.data(), n=st.integers(1, 60), m=st.integers(2, 7), k=st.integers(1, 9),
       tied=st.booleans(), small_blocks=st.booleans())
def test_fast_path_equals_the_general_path(data, n, m, k, tied, small_blocks):
    """Random and exactly tied probabilities, several emphasised classes, small blocks."""
    q = _draw_probabilities(data, n, m, tied)
    y = np.array(data.draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n)))
    w = data.draw(emphasis_weights(k, m))
    with pytest.MonkeyPatch.context() as mp:
        if small_blocks:
            mp.setattr(emphasis, "_FAST_BLOCK", 8)
            mp.setattr(emphasis, "_FAST_UTILITIES", 2)
        fast, general = _both_paths(q, y, w, mp)
    _assert_same(fast, general)


@settings(deadline=None, max_examples=60)
@given(data=st.data(), n=st.integers(1, 60), m=st.integers(2, 7), k=st.integers(1, 4),
       tied=st.booleans(), emphasis_style=st.booleans())
def test_direct_path_for_few_utilities_equals_the_batched_paths(data, n, m, k, tied,
                                                                emphasis_style):
    """The harness's path (a few utilities, all samples at once) against both batched paths:
    decisions exactly (ties to the lowest action), losses to rounding."""
    q = _draw_probabilities(data, n, m, tied)
    y = np.array(data.draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n)))
    if emphasis_style:
        w = data.draw(emphasis_weights(k, m))
    else:
        w = np.array(data.draw(st.lists(st.lists(st.sampled_from([0.5, 1.0, 2.0, 7.0]),
                                                 min_size=m, max_size=m),
                                        min_size=k, max_size=k)))
    direct = engine.batched_metrics(q, y, w, view="ex_post", recall_of=np.argmax(w, axis=1))
    with pytest.MonkeyPatch.context() as mp:
        fast, general = _both_paths(q, y, w, mp)
    _assert_same(direct, general)
    _assert_same(direct, fast)


def test_direct_path_is_taken_for_few_utilities_only(monkeypatch, rng):
    q = rng.dirichlet(np.ones(4), size=50)
    y = rng.integers(0, 4, 50)
    calls = []
    real = engine._ex_post_direct
    monkeypatch.setattr(engine, "_ex_post_direct", lambda *a: calls.append(a[2].shape) or real(*a))
    for k in (1, engine._DIRECT_UTILITIES, engine._DIRECT_UTILITIES + 1):
        engine.batched_metrics(q, y, np.ones((k, 4)), view="ex_post", recall_of=np.zeros(k, int))
    assert calls == [(1, 4), (engine._DIRECT_UTILITIES, 4)]
    monkeypatch.setattr(engine, "_DIRECT_VALUES", 199)  # 50 samples x 4 actions: too many
    engine.batched_metrics(q, y, np.ones((1, 4)), view="ex_post", recall_of=np.zeros(1, int))
    assert len(calls) == 2


def test_exact_ties_between_the_emphasised_class_and_the_others(monkeypatch):
    """w_e q_e equal to b q_a in floating point: the lowest action wins on both paths."""
    q = np.array([[0.2, 0.4, 0.4], [0.4, 0.2, 0.4], [0.4, 0.4, 0.2], [0.25, 0.5, 0.25]])
    y = np.array([0, 1, 2, 0])
    w = np.array([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    fast, general = _both_paths(q, y, w, monkeypatch)
    _assert_same(fast, general)
    # row 0: 2 * 0.2 ties 0.4 at actions 1 and 2: action 0 wins (lowest index), a hit
    assert fast["accuracy"][0] == 0.5


def test_fast_path_on_a_larger_problem_and_in_threads(monkeypatch, rng):
    n, m, k = 2000, 30, 700  # two blocks of utilities, two emphasised classes
    q = rng.dirichlet(np.ones(m) * 0.3, size=n)
    y = rng.integers(0, m, n)
    w = np.ones((k, m))
    w[np.arange(k), np.where(np.arange(k) % 2, 3, 17)] = np.geomspace(0.01, 1000.0, k)
    fast, general = _both_paths(q, y, w, monkeypatch, n_jobs=2)
    _assert_same(fast, general)


def test_the_fast_path_is_chosen_by_structure_only():
    assert emphasis._emphasis_form(np.array([[1.0, 2.0, 3.0]])) is None
    e, t, b = emphasis._emphasis_form(np.array([[4.0, 1.0, 1.0], [1.0, 1.0, 1.0]]))
    assert e.tolist() == [0, 0] and t.tolist() == [4.0, 1.0] and b.tolist() == [1.0, 1.0]
    e, t, b = emphasis._emphasis_form(np.array([[2.0, 5.0], [3.0, 3.0]]))  # m = 2: always
    assert e.tolist() == [0, 0] and t.tolist() == [2.0, 3.0] and b.tolist() == [5.0, 3.0]


@pytest.mark.parametrize("view", ["ex_post", "as_is"])
def test_weights_and_diagonal_matrices_score_alike(view, rng):
    """(K, m) class weights and the (K, m, m) diagonal stack: the same metrics."""
    n, m = 300, 5
    q = rng.dirichlet(np.ones(m), size=n)
    y = rng.integers(0, m, n)
    w = rng.uniform(0.5, 3.0, (6, m))
    w[:3] = 1.0
    w[np.arange(3), [0, 2, 4]] = [5.0, 0.5, 9.0]  # three emphasis rows, three general ones
    mats = stack_utilities([np.diag(row) for row in w])
    assert mats.shape == (6, m, m)
    assert np.array_equal(stack_utilities([np.diag(row) for row in w], class_weights=True), w)
    recall = np.argmax(w, axis=1)
    a = score_regime(q, y, w, "expost" if view == "ex_post" else "unweighted_raw",
                     recall_of=recall)
    b = score_regime(q, y, mats, "expost" if view == "ex_post" else "unweighted_raw",
                     recall_of=recall)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=0, err_msg=name)


def test_class_weights_need_no_square_matrix_per_utility(rng):
    """Memory independent of K's square matrices: 2,000 x 60 x 60 float64 would be 58 MB."""
    n, m, k = 500, 60, 2000
    q = rng.dirichlet(np.ones(m), size=n)
    y = rng.integers(0, m, n)
    w = np.ones((k, m))
    w[:, 4] = np.geomspace(1.0, 100.0, k)
    tracemalloc.start()
    try:
        for view in ("ex_post", "as_is"):
            engine.batched_metrics(q, y, w, view=view, recall_of=np.full(k, 4))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 * 2**20, peak / 2**20


def test_ratio_factors_of_every_class_at_once_equal_one_class_at_a_time(rng):
    """The fast path takes the running products' sizes for all classes in one go."""
    log_ratios = importlib.import_module("expost._log_ratios")
    kb, m = 7, 6
    spans = 10.0 * (1 + np.arange(m))  # columns of different widths: different sizes
    lo = 10.0 ** (rng.uniform(-1, 0, (kb, m)) * spans)
    hi = lo * 10.0 ** rng.uniform(0, 2, (kb, m))
    dlo = 10.0 ** rng.uniform(-3, 0, (kb, m))
    dhi = dlo * 10.0 ** rng.uniform(0, 3, (kb, m))
    lo[3, 1] = 0.0  # a class without a positive lower bound: no products (1)
    dlo[0, 4] = -1e-300
    got = log_ratios._ratio_factors_by_column(lo, hi, dlo, dhi)
    want = [log_ratios._ratio_factors(lo[:, c], hi[:, c], dlo[:, c], dhi[:, c]) for c in range(m)]
    assert got.tolist() == want
    assert got[1] == got[4] == 1 and len(set(want)) > 2
