"""Each flag fires on a store built to trigger it and stays silent on one that does not;
the verdict, the partial-experiment title and the CLI's --select / --format json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from expost.report._data import gather
from expost.report.flags import diverged_runs, late_best_flags, one_class_flags
from test_report_cli import cli, write_store
from test_report_data import SEEDS, FakeStore


def curve_records(best_at, n=10, regimes=("weighted", "expost")):
    """Runs whose weighted loss and utility are best at interval ``best_at``."""
    return [{"run_id": f"{g}-s{s}", "regime": g, "seed": s, "interval": t, "step": t + 1,
             "epoch": float(t + 1), "weighted_loss": 0.5 + 0.01 * abs(t - best_at) + 0.1 * s
             + (0.0 if g == "expost" else 0.05),
             "classification_utility": 0.9 - 0.01 * abs(t - best_at)}
            for g in regimes for s in SEEDS for t in range(n)]


# ---------------------------------------------------------------- late best interval
def test_late_best_fires_at_the_last_tenth_and_not_before():
    assert late_best_flags(curve_records(best_at=7), ["weighted_loss"]) == []  # 8th of 10
    flags = late_best_flags(curve_records(best_at=9), ["weighted_loss", "classification_utility"])
    assert [f.kind for f in flags] == ["late_best", "late_best"]
    assert flags[0].text.startswith("Weighted Loss: 10 of 10 runs have their best interval "
                                    "among their last 10% (1 of 10 intervals)")
    assert set(flags[0].runs) == {f"{g}-s{s}" for g in ("weighted", "expost") for s in SEEDS}


def test_late_best_needs_half_of_the_runs():
    """On a noisy plateau about one run in ten is late by chance: that is not a flag."""
    recs = curve_records(best_at=4)
    late = {"weighted-s0", "expost-s3"}  # 2 of 10 runs: their last interval is their best
    recs = [dict(r, weighted_loss=0.0) if r["run_id"] in late and r["interval"] == 9 else r
            for r in recs]
    assert late_best_flags(recs, ["weighted_loss"]) == []
    late |= {"weighted-s1", "weighted-s2", "expost-s0"}  # 5 of 10
    recs = [dict(r, weighted_loss=0.0) if r["run_id"] in late and r["interval"] == 9 else r
            for r in recs]
    (flag,) = late_best_flags(recs, ["weighted_loss"])
    assert set(flag.runs) == late and flag.text.startswith("Weighted Loss: 5 of 10 runs")


def test_late_best_in_the_report_and_table(tmp_path):
    late = FakeStore(tmp_path, records=curve_records(best_at=9), failed=False,
                     regimes=("weighted", "expost"))
    data = gather(late, tmp_path, n_boot=50)
    assert [f.kind for f in data.flags] == ["late_best", "late_best"]
    assert "Flag: Weighted Loss: 10 of 10 runs have their best interval" in \
        data.table.to_markdown()
    early = FakeStore(tmp_path, records=curve_records(best_at=4), failed=False,
                      regimes=("weighted", "expost"))
    assert gather(early, tmp_path, n_boot=50).flags == []


def test_late_best_counts_the_runs_table1_compares(tmp_path):
    """Counted over every regime, a third regime's runs (Unweighted Raw, early) diluted the
    flag: 6 of Table 1's 10 runs late read as 6 of 15, and no flag."""
    late = {"weighted-s0", "weighted-s1", "weighted-s2", "expost-s0", "expost-s1", "expost-s2"}
    recs = [dict(r, weighted_loss=0.0) if r["run_id"] in late and r["interval"] == 9 else r
            for r in curve_records(best_at=4, regimes=("weighted", "expost", "unweighted_raw"))]
    assert late_best_flags(recs, ["weighted_loss"]) == []  # 6 of 15: the old count
    data = gather(FakeStore(tmp_path, records=recs, failed=False), tmp_path, n_boot=50)
    (flag,) = [f for f in data.flags if f.kind == "late_best"]
    assert flag.text.startswith("Weighted Loss: 6 of 10 runs have their best interval")
    assert set(flag.runs) == late


# ---------------------------------------------------------------- one class for everything
class DecisionStore(FakeStore):
    """A FakeStore with stored predictions: ``weighted`` predicts class 0 for every example."""

    def __init__(self, run_dir, *, constant):
        super().__init__(run_dir, records=curve_records(best_at=4), failed=False,
                         regimes=("weighted", "expost"))
        self.constant = constant
        self._runs = [dict(r, train_key=f"{r['regime']}-s{r['seed']}") for r in self._runs]

    def probabilities(self, train_key, interval):
        rng = np.random.default_rng(len(train_key) + interval)
        q = rng.dirichlet(np.ones(3), size=40)
        if train_key.startswith("weighted") and self.constant:
            q = np.tile([0.98, 0.01, 0.01], (40, 1))  # class 0 wins even with weight 99 on 1
        return q


def test_one_class_fires_for_a_constant_decider_only(tmp_path):
    data = gather(DecisionStore(tmp_path, constant=True), tmp_path, n_boot=50)
    flags = [f for f in data.flags if f.kind == "one_class"]
    assert len(flags) == 1
    assert f"Flag: {flags[0].text}" in data.table.to_markdown()  # a Table 1 footnote too
    assert flags[0].text.startswith("Weighted Training decides one class ('zero') for every test "
                                    "example in 5 of 5 runs")
    assert set(flags[0].runs) == {f"weighted-s{s}" for s in SEEDS}
    quiet = gather(DecisionStore(tmp_path, constant=False), tmp_path, n_boot=50)
    assert [f for f in quiet.flags if f.kind == "one_class"] == []


def test_one_class_uses_the_regime_view():
    """Ex Post Weighting decides through U: the same constant q gives class 1 under 99:1."""
    store = DecisionStore(None, constant=True)
    store._runs = [dict(r, train_key="weighted-s0") for r in store._runs]  # every run: q const
    info = store.experiment_info()
    info["utility"] = np.diag([1.0, 99.0, 1.0]).tolist()
    best = [{"run_id": r["run_id"], "regime": r["regime"], "interval": 0} for r in store.runs()]
    texts = [f.text for f in one_class_flags(store, info, store.runs(), best)]
    assert any(t.startswith("Weighted Training decides one class ('zero')") for t in texts)
    assert any("Ex Post Weighting decides one class ('<script>" in t for t in texts)


# ---------------------------------------------------------------- diverged
def test_diverged_status_and_non_finite_losses():
    runs = [{"run_id": "a", "status": "diverged", "train_key": "ka"},
            {"run_id": "b", "status": "finished", "train_key": "kb"},
            {"run_id": "c", "status": "finished", "train_key": "kc"},
            {"run_id": "d", "status": "finished", "train_key": "kd"}]
    recs = [{"run_id": "c", "interval": 3, "weighted_loss": float("inf"), "log_loss": 1.0},
            {"run_id": "d", "interval": 0, "weighted_loss": 0.3, "log_loss": 1.0}]
    rows = [{"train_key": "kb", "interval": 2, "train_loss": float("nan"), "val_loss": 1.0}]
    out = diverged_runs(runs, recs, rows)
    assert set(out) == {"a", "b", "c"}
    assert out["b"] == "non-finite train_loss nan at interval 2"
    assert out["c"] == "test weighted_loss inf at interval 3"
    assert diverged_runs(runs[1:2], recs[1:], []) == {}


def test_diverged_runs_are_left_out_of_table1_with_a_footnote(tmp_path):
    store = FakeStore(tmp_path, failed=False, statuses={("weighted", 2): "diverged"})
    data = gather(store, tmp_path, n_boot=50)
    assert data.table.n_runs == {"weighted": 4, "expost": 5}
    assert data.table.paired["weighted_loss"].seeds == (0, 1, 3, 4)
    assert "Flag: 1 run diverged and is left out of Table 1: weighted-s2 (marked diverged" in \
        data.table.to_markdown()
    assert [f.kind for f in data.flags].count("diverged") == 1
    clean = gather(FakeStore(tmp_path, failed=False), tmp_path, n_boot=50)
    assert "diverged" not in clean.table.to_markdown()
    assert not [f for f in clean.flags if f.kind == "diverged"]


# ---------------------------------------------------------------- title, verdict, CLI
def test_partial_experiment_says_so_in_its_title(tmp_path, capsys):
    write_store(tmp_path, unfinished=("weighted-s0",))
    assert cli(["table", str(tmp_path), "--bootstrap", "0"]) == 0
    err = capsys.readouterr().err
    title = err.splitlines()[0]
    assert title.startswith("Table 1: demo <b>& / digits / mlp (partial: 14 of 15 runs finished "
                            "(1 running))")
    full = tmp_path / "full"
    write_store(full)
    assert cli(["table", str(full), "--bootstrap", "0"]) == 0
    assert "partial" not in capsys.readouterr().err


def test_verdict_names_the_class_and_says_no_significant_difference(tmp_path, capsys):
    write_store(tmp_path)
    assert cli(["table", str(tmp_path), "--bootstrap", "400"]) == 0
    err = capsys.readouterr().err
    assert ("Verdict: Ex Post Weighting against Weighted Training, emphasised class "
            "'<script>alert(1)</script>' (class 1), weight ratio 99:1") in err
    assert "Weighted Loss, interval chosen on test (the paper's protocol): Ex Post Weighting " \
           "better by 7.4% [" in err
    assert "better in 5/5 seeds, sign test p = 0.0625" in err
    # utility: expost better in 3 of 5 seeds (0.30>0.29, 0.32>0.30, 0.31>0.28, 0.29<0.31, 0.33>0.27
    # is 4 of 5) -- the written-out count from test_report_data.CU
    assert "Classification Utility" in err and "4/5 seeds" in err


def test_json_format_and_select_val(tmp_path, capsys):
    write_store(tmp_path, val=True)
    assert cli(["table", str(tmp_path), "--format", "json", "--bootstrap", "100"]) == 0
    cap = capsys.readouterr()
    data = json.loads(cap.out)
    assert cap.err == ""
    assert data["table"]["protocol"] == "test" and data["partial"] is None
    assert data["table"]["n_runs"] == {"weighted": 5, "expost": 5}
    assert len(data["table"]["runs"]["weighted"]) == 5
    assert data["verdict"][0]["significance"] == "pos"
    # 3 of 10 runs (seed 4) have their best weighted loss at the last interval: fewer than
    # half, silent; write_store's predictions decide several classes: silent
    assert data["flags"] == []
    assert cli(["table", str(tmp_path), "--format", "json", "--select", "val",
                "--bootstrap", "0"]) == 0
    val = json.loads(capsys.readouterr().out)
    assert val["table"]["protocol"] == "val"
    # write_store's validation curves are best at interval 0: the test values there
    mean = next(r for r in val["table"]["rows"] if r["metric"] == "weighted_loss"
            and r["statistic"] == "Mean")
    assert mean["baseline"] == pytest.approx(np.mean([0.80, 0.82, 0.79, 0.81, 0.83])
                                             + 0.01 * np.mean([3, 4, 5, 2, 6]))


def test_select_val_without_validation_metrics_is_one_clear_line(tmp_path, capsys):
    write_store(tmp_path)
    assert cli(["table", str(tmp_path), "--select", "val"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("expost table: error: --select val: the store holds no validation")
    assert len(err.strip().splitlines()) == 1
