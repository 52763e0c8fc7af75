"""Stored-probability encoding, the regimes' views and the per-interval metrics."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import log_softmax

import expost
from expost.cli import main
from expost.experiments.evaluate import (
    LOG_PROB_FLOOR,
    IntervalScorer,
    decode_probabilities,
    encode_log_probs,
    frontier,
    interval_metrics,
    recall_class,
)
from expost.experiments.metrics import METRICS
from expost.experiments.regimes import (
    REGIME_SPECS,
    TRAININGS,
    plan_trainings,
    regime_view,
)
from strategies import class_weights, simplex_rows, utilities


# ---------------------------------------------------------------- encoding
@given(logits=hnp.arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(2, 12)),
                         elements=st.floats(-60, 60)))
def test_float16_log_probs_keep_relative_precision(logits):
    lp = log_softmax(logits, axis=1)
    stored = encode_log_probs(lp)
    assert stored.dtype == np.float16
    q = decode_probabilities(stored)
    assert q.dtype == np.float64
    assert np.allclose(q.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (q > 0).all(), "no probability underflows to zero (the log loss stays finite)"
    m = lp.shape[1]
    # float16 rounds |log p| with relative error 2^-11; renormalising shifts by at most
    # 2^-11 * entropy <= 2^-11 * log m.
    bound = 2.0**-11 * (np.abs(lp) + np.log(m)) + 1e-6
    assert (np.abs(np.log(q) - lp) <= bound).all()


def test_encoding_floor_determinism_and_no_mutation():
    lp = np.array([[0.0, -1e4, -np.inf]])
    before = lp.copy()
    stored = encode_log_probs(lp)
    assert stored.tolist() == [[0.0, LOG_PROB_FLOOR, LOG_PROB_FLOOR]]
    assert np.array_equal(lp, before)
    a, b = decode_probabilities(stored), decode_probabilities(stored.copy())
    assert np.array_equal(a, b) and (a > 0).all()
    assert np.array_equal(stored, encode_log_probs(lp))


@pytest.mark.parametrize("bad", [np.array([[np.nan, 0.0]]), np.array([[np.inf, 0.0]]),
                                 np.zeros(3), np.zeros((2, 2), dtype=int)])
def test_encoding_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="`log_probs` must be"):
        encode_log_probs(bad)


# ---------------------------------------------------------------- regimes
def test_regime_names_are_the_shared_ones():
    # the config accepts exactly the registry's regimes, and the report orders by it
    from expost.experiments.config import load_config
    from expost.report.records import regimes_present

    for name in REGIME_SPECS:
        assert load_config(overrides=[f"regimes=[{name}]"]).regimes == [name]
    with pytest.raises(ValueError, match="regimes"):
        load_config(overrides=["regimes=[expost_weighting]"])
    shuffled = [{"run_id": f"{r}-s0", "regime": r, "interval": 0} for r in reversed(REGIME_SPECS)]
    assert regimes_present(shuffled) == list(REGIME_SPECS)
    for spec in REGIME_SPECS.values():
        assert spec.training in TRAININGS and spec.label and spec.colour


def test_plan_shares_one_unweighted_training():
    plan = plan_trainings(["unweighted_raw", "weighted", "expost"], [0, 3])
    keys = [k for k, *_ in plan]
    assert keys == ["weighted-s0", "unweighted-s0", "weighted-s3", "unweighted-s3"]
    runs = dict((k, [r for r, _ in rs]) for k, _, _, rs in plan)
    assert runs["unweighted-s3"] == ["unweighted_raw-s3", "expost-s3"]


def test_plan_metacost_depends_on_unweighted():
    plan = plan_trainings(["metacost"], [1])
    assert [(k, [r for r, _ in rs]) for k, _, _, rs in plan] == [
        ("unweighted-s1", []), ("metacost-s1", ["metacost-s1"])]
    with pytest.raises(ValueError, match="`regimes` must be names from"):
        plan_trainings(["nope"], [0])


@given(q=simplex_rows(12, 4), u=utilities(4, square=True), w=class_weights(4))
def test_regime_views(q, u, w):
    p, d = regime_view("unweighted_raw", q, u)
    assert p is q and np.array_equal(d, np.argmax(q, axis=1))
    p, d = regime_view("expost", q, u)
    assert np.allclose(p, expost.weighted_prediction(q, u), rtol=1e-12, atol=0)
    assert np.array_equal(d, expost.decide(q, u))
    # inverse_prior: a model trained with weights w predicts p^w(q); its view recovers q
    # (Theorem 2) and applies p^u, i.e. what Ex Post Weighting would do with q itself.
    uw = expost.Utility.from_class_weights(w)
    p, d = regime_view("inverse_prior", expost.weighted_prediction(q, uw), u, training_utility=uw)
    assert np.allclose(p, expost.weighted_prediction(q, u), rtol=1e-9, atol=1e-12)


def test_regime_view_errors():
    q = np.array([[0.5, 0.5]])
    u = expost.Utility.from_class_weights([1.0, 2.0])
    with pytest.raises(ValueError, match="`regime` must be one of"):
        regime_view("weighted_training", q, u)
    with pytest.raises(ValueError, match="`training_utility` must be"):
        regime_view("inverse_prior", q, u)


# ---------------------------------------------------------------- metrics
def test_recall_class():
    u = expost.Utility([[1.0, 0.0, 2.0], [0.0, 5.0, 0.0], [0.0, 0.0, 3.0]])
    assert recall_class(u) == 1  # column sums (1, 5, 5): ties go to the lowest index
    assert recall_class(u, 0) == 0
    with pytest.raises(ValueError, match="`emphasized` must be a class index in"):
        recall_class(u, 3)


@pytest.mark.parametrize("regime", sorted(REGIME_SPECS))
def test_interval_metrics_by_hand(regime, rng):
    n, m = 300, 4
    q = rng.dirichlet(np.ones(m) * 0.7, size=n)
    y = rng.integers(0, m, n)
    u = expost.Utility.emphasize(m, 2, 9.0).normalized(np.bincount(y, minlength=m) / n)
    uw = expost.Utility.inverse_prior([0.4, 0.3, 0.2, 0.1]).normalized([0.4, 0.3, 0.2, 0.1])
    q_in, y_in = q.copy(), y.copy()
    got = interval_metrics(q, y, u, regime, recall_of=2, training_utility=uw)
    assert list(got) == list(METRICS)
    assert np.array_equal(q, q_in) and np.array_equal(y, y_in)
    view = REGIME_SPECS[regime].view
    if view == "as_is":
        p, d = q, q.argmax(axis=1)
    else:
        qq = q if view == "ex_post" else expost.recover_posterior(q, uw)
        eu = qq @ u.matrix.T
        p, d = eu / eu.sum(axis=1, keepdims=True), eu.argmax(axis=1)
    w = np.diagonal(u.matrix)
    assert np.isclose(got["weighted_loss"], np.mean(-w[y] * np.log(p[np.arange(n), y])),
                      rtol=1e-12)
    assert np.isclose(got["classification_utility"], np.mean(np.where(d == y, w[y], 0.0)),
                      rtol=1e-12)
    assert np.isclose(got["log_loss"], np.mean(-np.log(p[np.arange(n), y])), rtol=1e-12)
    assert got["accuracy"] == np.mean(d == y)
    assert got["emphasized_recall"] == np.mean(d[y == 2] == 2)
    assert np.isclose(got["calibration_error"],
                      expost.calibration_error(p, y, norm="l1", n_bins=15), rtol=1e-12)


def test_interval_metrics_needs_the_recall_class():
    q = np.array([[0.6, 0.4], [0.3, 0.7]])
    with pytest.raises(ValueError, match="at least one sample of the recall class 1"):
        interval_metrics(q, [0, 0], expost.Utility.from_class_weights([1, 2]), "expost",
                         recall_of=1)


@pytest.mark.parametrize("dense", [False, True], ids=["class_weights", "dense"])
@pytest.mark.parametrize("regime", sorted(REGIME_SPECS))
def test_the_interval_scorer_is_interval_metrics_bit_for_bit(regime, dense, rng):
    m = 4
    y_test, y_val = rng.integers(0, m, 300), rng.integers(0, m, 120)
    y_test[0] = y_val[0] = 2
    u = expost.Utility.emphasize(m, 2, 9.0).normalized(np.bincount(y_test, minlength=m) / 300)
    if dense:  # the matrix product's kernel, not the class weights'
        u = expost.Utility(u.matrix + 0.25 * rng.uniform(size=(m, m)))
    uw = expost.Utility.inverse_prior([0.4, 0.3, 0.2, 0.1]).normalized([0.4, 0.3, 0.2, 0.1])
    scorer = IntervalScorer(u, {"test": y_test, "val": y_val}, recall_of=2, training_utility=uw)
    for _ in range(3):  # the set-up made once serves every call, on new predictions each time
        q_test = rng.dirichlet(np.ones(m) * 0.7, size=300)
        q_val = rng.dirichlet(np.ones(m) * 0.7, size=120)
        for split, q, y in (("test", q_test, y_test), ("val", q_val, y_val)):
            got = scorer(q, split, regime)
            want = interval_metrics(q, y, u, regime, recall_of=2, training_utility=uw)
            assert list(got) == list(want) == list(METRICS)
            assert [float(v).hex() for v in got.values()] == [v.hex() for v in want.values()]


def test_the_interval_scorer_checks_its_arguments_once(rng):
    u = expost.Utility.from_class_weights([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"`labels\['val'\]` must .*recall class 1"):
        IntervalScorer(u, {"test": [0, 1, 2], "val": [0, 2, 2]}, recall_of=1)
    with pytest.raises(ValueError, match=r"`labels\['test'\]`"):
        IntervalScorer(u, {"test": [0, 1, 3]}, recall_of=1)
    with pytest.raises(ValueError, match="`recall_of`"):
        IntervalScorer(u, {"test": [0, 1, 2]}, recall_of=3)
    scorer = IntervalScorer(u, {"test": [0, 1, 2]}, recall_of=1)
    with pytest.raises(ValueError, match=r"`q` must be one row per label of 'test' \(3\), got 4 rows"):
        scorer(rng.dirichlet(np.ones(3), size=4), "test", "expost")


def test_interval_metrics_checks_q():
    u = expost.Utility.from_class_weights([1.0, 2.0])
    for bad in ([[0.6, 0.6], [0.3, 0.7]], [[1.2, -0.2], [0.3, 0.7]], [[0.5, 0.5, 0.0]],
                [0.5, 0.5]):
        with pytest.raises(ValueError, match="`q`"):
            interval_metrics(np.array(bad), [0, 1][:len(np.atleast_2d(bad))], u, "expost",
                             recall_of=1)


def test_frontier_takes_the_recall_class(rng):
    q = rng.dirichlet(np.ones(4), size=200)
    y = rng.integers(0, 4, 200)
    us = [expost.Utility.emphasize(4, 3, 0.5), expost.Utility.emphasize(4, 1, 5.0)]
    for view in ("ex_post", "as_is"):
        default = frontier(q, y, us, view=view)["emphasized_recall"]
        chosen = frontier(q, y, us, view=view, recall_of=[3, 2])["emphasized_recall"]
        for k, (u, r) in enumerate(zip(us, (3, 2), strict=True)):
            d = expost.decide(q, u) if view == "ex_post" else q.argmax(axis=1)
            assert chosen[k] == np.mean(d[y == r] == r)
            assert default[k] == np.mean(d[y == recall_class(u)] == recall_class(u))
        assert np.array_equal(frontier(q, y, us, view=view, recall_of=3)["emphasized_recall"][:1],
                              chosen[:1])
    with pytest.raises(ValueError, match="`recall_of` must"):
        frontier(q, y, us, recall_of=[0, 4])
    with pytest.raises(ValueError, match="`recall_of` must"):
        frontier(q, y, us, recall_of=[0, 1, 2])


# ---------------------------------------------------------------- one engine, end to end
def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter that imports this checkout's expost."""
    src = str(Path(expost.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_frontier_export_is_the_function_after_every_submodule_is_imported():
    out = _python(
        "import importlib, pkgutil, types, expost.experiments as ex\n"
        "from expost.cli import build_parser\n"
        "build_parser()\n"
        "for mod in pkgutil.walk_packages(ex.__path__, 'expost.experiments.'):\n"
        "    if not mod.name.split('.')[-1].startswith(('chestx', 'cifar', 'medmnist', 'vit',"
        " 'densenet')):\n"
        "        importlib.import_module(mod.name)\n"
        "from expost.experiments import frontier\n"
        "assert isinstance(frontier, types.FunctionType), frontier\n"
        "assert all(not isinstance(getattr(ex, n), types.ModuleType) for n in ex.__all__)\n"
        "print(frontier.__module__)\n")
    assert out.strip() == "expost.experiments.evaluate"


def test_decide_imports_neither_matplotlib_nor_torch(tmp_path):
    (tmp_path / "u.csv").write_text("a,b\n1,0\n0,4\n")
    (tmp_path / "p.csv").write_text("a,b\n0.7,0.3\n0.9,0.1\n")
    out = _python(
        "import sys\n"
        "from expost.cli import main\n"
        f"rc = main(['decide', '--utility', {str(tmp_path / 'u.csv')!r}, '--probs', "
        f"{str(tmp_path / 'p.csv')!r}, '--out', {str(tmp_path / 'd.csv')!r}])\n"
        "heavy = sorted(m for m in ('matplotlib', 'torch') if m in sys.modules)\n"
        "print(rc, heavy)\n")
    assert out.strip() == "0 []"
    assert [r["decision"] for r in csv.DictReader(open(tmp_path / "d.csv"))] == ["1", "0"]


# The recall bug's case: class 3 emphasised 0.5 : 1, so the class with the largest
# total weight (the frontier's old choice of recall class) is another one.
SMALL = {
    "name": "engine",
    "dataset": {"name": "digits", "options": {"flatten": True}},
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "objective": {"kind": "emphasize", "emphasized": 3, "ratio": 0.5},
    "regimes": ["weighted", "expost", "unweighted_raw", "inverse_prior", "resampled",
                "metacost"],
    "seeds": [0],
    "optimizer": {"name": "adam", "lr": 0.01},
    "training": {"epochs": 2, "batch_size": 128},
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from expost.experiments.runners import run_experiment

    return run_experiment(SMALL, output_dir=tmp_path_factory.mktemp("engine") / "exp",
                          progress=False)


def _evaluate(run_dir, out, *options):
    assert main(["evaluate", str(run_dir), *options, "--out", str(out), "--bootstrap", "0"]) == 0
    return list(csv.DictReader(open(out)))


def test_harness_and_expost_evaluate_give_identical_metrics(small_run, tmp_path, capsys):
    from expost.experiments.store import ResultStore

    with ResultStore(small_run) as s:
        info = s.experiment_info()
        stored = {(r["run_id"], r["interval"]): r for r in s.interval_records("test")}
    u = expost.Utility(info["utility"])
    assert info["recall_class"] == 3 != recall_class(u)
    ucsv = tmp_path / "u.csv"
    with open(ucsv, "w", newline="") as fh:
        csv.writer(fh).writerows([info["class_names"], *info["utility"]])
    by_file = _evaluate(small_run, tmp_path / "a.csv", "--utility", str(ucsv), "--no-normalize")
    by_emphasis = _evaluate(small_run, tmp_path / "b.csv", "--emphasize", "3", "--ratio", "0.5")
    capsys.readouterr()
    assert len(by_file) == len(by_emphasis) == len(stored) == 6 * 2
    for rows in (by_file, by_emphasis):
        for row in rows:
            ref = stored[(row["run_id"], int(row["interval"]))]
            for m in METRICS:
                assert float(row[m]) == pytest.approx(ref[m], rel=1e-12, abs=1e-12), (m, row)


def _tables(text):
    """{utility label: the lines of its section} of `expost evaluate`'s output."""
    out, cur = {}, None
    for line in text.splitlines():
        if line.startswith("## Utility: "):
            cur = line
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return out


def test_evaluate_labels_weighted_training_trained_for_another_objective(small_run, tmp_path,
                                                                         capsys):
    # the run's objective: class 3 at 0.5:1; --ratio 0.5 is it, 9 is a new objective
    _evaluate(small_run, tmp_path / "e.csv", "--emphasize", "3", "--ratio", "0.5", "9")
    sections = _tables(capsys.readouterr().out)
    assert len(sections) == 2
    (own_head, own), (new_head, new) = sections.items()
    assert "0.5:1" in own_head and "not the run's objective" not in own_head
    assert "| Weighted Loss: Weighted Training | Weighted Loss: Ex Post Weighting |" in own[0]
    assert "9:1" in new_head and "not the run's objective" in new_head
    text = "\n".join(new)
    # every "Weighted Training" in the new objective's table is qualified
    assert text.count("Weighted Training") == text.count(
        "Weighted Training (trained for the run's objective: emphasized class '3', ratio 0.5:1)")
    assert text.count("Weighted Training") >= 2 and "Ex Post Weighting" in text
    assert "Ex Post Weighting (trained" not in text  # Ex Post needs no retraining


def test_evaluate_streams_the_same_numbers_as_the_full_records(small_run, tmp_path, capsys):
    from expost.experiments.reevaluate import (
        BestIntervals,
        evaluate_run_dir,
        experiment_info,
        iter_scores,
        utilities_for_run,
    )
    from expost.report import table1

    info = experiment_info(small_run)
    us, labels, recall = utilities_for_run(info, emphasize="3", ratios=[0.5, 4.0, 30.0])
    full = evaluate_run_dir(small_run, us, recall_of=recall)
    best = BestIntervals(len(us), ("weighted_loss", "classification_utility"))
    for run, metrics in iter_scores(small_run, us, recall_of=recall):
        best.add(run, metrics)
    for k in range(len(us)):
        a, b = table1(full[k], n_boot=50), table1(best.records(k), n_boot=50)
        assert a.rows == b.rows and a.n_runs == b.n_runs and a.bootstrap == b.bootstrap
    # the CSV streamed by the command holds the same records
    rows = _evaluate(small_run, tmp_path / "s.csv", "--emphasize", "3", "--ratio", "0.5", "4",
                     "30")
    capsys.readouterr()
    by_key = {(r["utility"], r["run_id"], int(r["interval"])): r for r in rows}
    assert len(by_key) == len(rows) == sum(len(f) for f in full)
    for k, lab in enumerate(labels):
        for rec in full[k]:
            row = by_key[(lab, rec["run_id"], rec["interval"])]
            for m in METRICS:
                assert float(row[m]) == pytest.approx(rec[m], rel=1e-15, abs=0, nan_ok=True)


@pytest.mark.parametrize("status", ["interrupted", "failed", "diverged", "pending"])
def test_evaluate_counts_the_runs_table_counts(small_run, tmp_path, capsys, status):
    """An unfinished or diverged run was scored into `expost evaluate`'s Table 1 and CSV
    with no note (`expost table` leaves it out): now both count the same runs, and
    evaluate says which it left out; with no finished run at all it is an error."""
    import shutil
    import sqlite3

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    with sqlite3.connect(run / "results.sqlite") as db:
        db.execute("UPDATE trainings SET status = ? WHERE train_key = 'weighted-s0'", (status,))
    rows = _evaluate(run, tmp_path / "e.csv", "--emphasize", "3", "--ratio", "0.5")
    out = capsys.readouterr().out
    assert {r["run_id"] for r in rows} == {"expost-s0", "unweighted_raw-s0", "inverse_prior-s0",
                                           "resampled-s0", "metacost-s0"}
    if status == "diverged":
        assert "Flag: 1 run diverged and is left out of Table 1: weighted-s0" in out
    else:
        assert (f"Partial: 5 of 6 runs finished (1 {status}); only the finished runs are "
                "counted.") in out
    assert main(["table", str(run), "--bootstrap", "0"]) == 0
    assert "Weighted Training" not in capsys.readouterr().out  # table left it out too
    with sqlite3.connect(run / "results.sqlite") as db:
        db.execute("UPDATE trainings SET status = 'pending'")
    assert main(["evaluate", str(run), "--emphasize", "3", "--bootstrap", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("expost evaluate: error: No finished runs in") and "6 pending" in err


def test_evaluate_labels_two_files_of_one_name_apart(small_run, tmp_path, capsys):
    """Two --utility files named u.csv both gave rows labelled 'u' (and two tables titled
    'Utility: u'); now each is labelled by its path. A file or a ratio given twice is refused."""
    from expost.experiments.reevaluate import experiment_info

    m = len(experiment_info(small_run)["class_names"])
    files = []
    for sub, w in (("a", 1.0), ("b", 5.0)):
        (tmp_path / sub).mkdir()
        u = np.eye(m)
        u[3, 3] = w
        np.savetxt(tmp_path / sub / "u.csv", u, delimiter=",")
        files += ["--utility", str(tmp_path / sub / "u.csv")]
    rows = _evaluate(small_run, tmp_path / "e.csv", *files)
    labels = {str(tmp_path / "a" / "u.csv"), str(tmp_path / "b" / "u.csv")}
    assert {r["utility"] for r in rows} == labels
    assert {h[len("## Utility: "):].split(" (")[0] for h in _tables(capsys.readouterr().out)} == labels
    one = str(tmp_path / "a" / "u.csv")
    assert main(["evaluate", str(small_run), "--utility", one, "--utility", one]) == 1
    assert "is given twice" in capsys.readouterr().err
    assert main(["evaluate", str(small_run), "--emphasize", "3", "--ratio", "2", "2"]) == 1
    assert "each ratio once, got 2 2" in capsys.readouterr().err


def test_utility_stack_holds_class_weights_not_one_matrix_per_utility(tmp_path):
    """`expost evaluate`'s utilities: checked once, kept as weights (memory independent of
    a matrix per utility), the same utilities, labels and recall classes as the list form."""
    import tracemalloc

    from expost.experiments.reevaluate import utilities_for_run, utility_stack

    m = 100
    prior = np.linspace(1.0, 2.0, m)
    prior /= prior.sum()
    info = {"class_names": [f"c{c}" for c in range(m)], "train_prior": prior.tolist(),
            "utility": expost.Utility.emphasize(m, 7, 3.0).normalized(prior).matrix.tolist(),
            "recall_class": 7}
    ratios = [float(r) for r in np.geomspace(1.01, 1000.0, 2000)]
    tracemalloc.start()
    try:
        stack = utility_stack(info, emphasize="c7", ratios=ratios)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stack.values.shape == (2000, m)
    assert peak < 8 * 2**20, peak / 2**20  # a 100 x 100 matrix per utility: 160 MB
    us, labels, recall = utilities_for_run(info, emphasize="c7", ratios=ratios[:50])
    assert stack.labels[:50] == labels and stack.recall_of[:50] == recall == [7] * 50
    for k, u in enumerate(us):
        assert np.array_equal(np.diag(stack.values[k]), u.matrix)
    # files: a diagonal one keeps the weights form, a dense one turns the stack into matrices
    diag, dense = tmp_path / "diag.csv", tmp_path / "dense.csv"
    np.savetxt(diag, np.diag(np.arange(1.0, m + 1)), delimiter=",")
    np.savetxt(dense, np.ones((m, m)) + np.eye(m), delimiter=",")
    assert utility_stack(info, utility_files=[diag], emphasize="c7").values.shape == (2, m)
    mixed = utility_stack(info, utility_files=[diag, dense], emphasize="c7", ratios=[3.0])
    us, labels, recall = utilities_for_run(info, utility_files=[diag, dense], emphasize="c7",
                                           ratios=[3.0])
    assert mixed.values.shape == (3, m, m)
    assert mixed.labels == labels == ["diag", "dense", "emphasize c7 3:1"]
    assert mixed.recall_of == recall == [99, int(np.argmax((np.ones((m, m)) + np.eye(m)).T
                                                           @ np.ones(m))), 7]
    for k, u in enumerate(us):
        assert np.array_equal(mixed.values[k], u.matrix)
    with pytest.raises(ValueError, match="give --utility"):
        utility_stack(info)


@pytest.mark.parametrize("trained_with", ["identity", "class_weights", "dense"])
def test_the_validation_loss_is_weighted_loss_bit_for_bit(trained_with, rng):
    from expost.experiments.train import _ValidationLoss

    m = 4
    y = rng.integers(0, m, 150)
    utility = {"identity": None,
               "class_weights": expost.Utility.from_class_weights([1.0, 2.0, 9.0, 0.5]),
               "dense": expost.Utility(rng.uniform(0.1, 2.0, (m, m)))}[trained_with]
    loss = _ValidationLoss(utility, y, m)
    for _ in range(2):
        q = rng.dirichlet(np.ones(m), size=150)
        want = expost.weighted_loss(q, y, np.eye(m) if utility is None else utility,
                                    reduction="mean")
        assert loss(q).hex() == float(want).hex()
    with pytest.raises(ValueError, match=r"`q` must be shape \(150, 4\), got shape \(149, 4\)"):
        loss(q[1:])
    with pytest.raises(ValueError, match="`val_labels`"):
        _ValidationLoss(utility, np.array([0, 4]), m)


def test_calibration_bins_made_once_are_not_shared_with_callers():
    q = np.array([[0.8, 0.2], [0.3, 0.7], [0.55, 0.45]])
    first = expost.reliability_curve(q, [0, 1, 1], n_bins=4)
    first.edges[:] = -1.0  # a caller's copy
    again = expost.reliability_curve(q, [0, 1, 1], n_bins=4)
    np.testing.assert_array_equal(again.edges, [0.0, 0.25, 0.5, 0.75, 1.0])
    # bins [0.75, 1]: 0.8, a hit; [0.5, 0.75): 0.7 a hit and 0.55 a miss
    assert expost.calibration_error(q, [0, 1, 1], n_bins=4) == pytest.approx(
        (abs(1 - 0.8) + abs(1 - (0.7 + 0.55))) / 3)
