"""Table 1 and best_intervals: every cell against hand-computed answers."""

from __future__ import annotations

import copy
import csv
import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import expost
from expost.report import Table1, best_intervals, table1
from test_report_data import CU, IU, IW, SEEDS, TIE_SEED, WL, known_records


def gain(b, t, *, loss):
    """Table 1's % gain written out by hand (footnote 15)."""
    return 100.0 * ((b - t) if loss else (t - b)) / abs(b)


# ---------------------------------------------------------------- best_intervals
def test_best_intervals_min_for_loss_max_for_utility_earliest_on_ties():
    recs = known_records()
    wl = {(r["regime"], r["seed"]): r for r in best_intervals(recs, "weighted_loss")}
    cu = {(r["regime"], r["seed"]): r for r in best_intervals(recs, "classification_utility")}
    for g in WL:
        for s in SEEDS:
            assert wl[g, s]["interval"] == IW[s]
            assert wl[g, s]["weighted_loss"] == pytest.approx(WL[g][s])
            assert cu[g, s]["interval"] == IU[s]  # ties (seed 0: intervals 4 and 5) -> 4
            assert cu[g, s]["classification_utility"] == pytest.approx(CU[g][s])
    assert cu["expost", TIE_SEED]["interval"] == 4


def test_best_intervals_order_and_copies():
    recs = known_records()
    before = copy.deepcopy(recs)
    best = best_intervals(recs, "weighted_loss")
    assert [(r["regime"], r["seed"]) for r in best] == [
        (g, s) for g in ("weighted", "expost", "unweighted_raw") for s in SEEDS]
    best[0]["weighted_loss"] = -1.0  # a copy: the caller's records stay as they were
    assert recs == before


def test_best_intervals_other_directions_and_nan():
    recs = known_records()
    acc = best_intervals(recs, "accuracy")  # max at interval 3
    assert {r["interval"] for r in acc} == {3}
    cal = best_intervals(recs, "calibration_error")  # min at interval 0
    assert {r["interval"] for r in cal} == {0}
    rec = best_intervals(recs, "emphasized_recall")  # None at 0 is skipped; max at 5
    assert {r["interval"] for r in rec} == {5}
    only_nan = [{"run_id": "a", "regime": "weighted", "interval": t, "weighted_loss": None}
                for t in range(3)]
    (b,) = best_intervals(only_nan, "weighted_loss")
    assert b["interval"] == 0 and np.isnan(b["weighted_loss"])


def test_best_intervals_accepts_a_dataframe():
    pd = pytest.importorskip("pandas")
    recs = known_records()
    a = best_intervals(pd.DataFrame(recs), "weighted_loss")
    b = best_intervals(recs, "weighted_loss")
    assert [(r["run_id"], r["interval"]) for r in a] == [(r["run_id"], r["interval"]) for r in b]


@pytest.mark.parametrize(
    ("records", "metric", "exc", "match"),
    [
        ([], "nope", ValueError, "`metric` must be one of"),
        ("abc", "weighted_loss", TypeError, "`records` must be a list"),
        ([1, 2], "weighted_loss", TypeError, r"`records\[0\]` must be a mapping"),
        ([{"run_id": "a", "regime": "weighted", "interval": 0}], "weighted_loss", ValueError,
         "without 'weighted_loss'"),
        ([{"run_id": "a", "regime": "weighted", "interval": 0.5, "weighted_loss": 1.0}],
         "weighted_loss", ValueError, "must be an integer"),
        ([{"run_id": "a", "regime": "weighted", "interval": 0, "weighted_loss": "x"}],
         "weighted_loss", TypeError, "must be a number"),
        ([{"run_id": "a", "regime": "weighted", "interval": 0, "weighted_loss": 1.0}] * 2,
         "weighted_loss", ValueError, "one record per"),
    ],
)
def test_best_intervals_bad_input(records, metric, exc, match):
    with pytest.raises(exc, match=match):
        best_intervals(records, metric)


# ---------------------------------------------------------------- table1 cells
def test_table1_every_cell():
    recs = known_records()
    before = copy.deepcopy(recs)
    tab = table1(recs, n_boot=500)
    assert isinstance(tab, Table1)
    assert recs == before  # not mutated
    assert tab.n_runs == {"weighted": 5, "expost": 5}
    expected = {
        ("weighted_loss", "Mean"): (0.81, 0.75), ("weighted_loss", "Min"): (0.79, 0.73),
        ("weighted_loss", "Max"): (0.83, 0.77),
        ("classification_utility", "Mean"): (0.29, 0.31),
        ("classification_utility", "Min"): (0.27, 0.29),
        ("classification_utility", "Max"): (0.31, 0.33),
    }
    assert [(r.metric, r.statistic) for r in tab.rows] == list(expected)
    for (metric, stat), (b, t) in expected.items():
        row = tab.cell(metric, stat)
        assert row.baseline == pytest.approx(b, abs=1e-12)
        assert row.treatment == pytest.approx(t, abs=1e-12)
        assert row.pct_gain == pytest.approx(gain(b, t, loss=metric == "weighted_loss"), abs=1e-9)
    # The numbers written out, so a formula slip in both places still fails.
    assert tab.cell("weighted_loss", "Mean").pct_gain == pytest.approx(7.407407, abs=1e-6)
    assert tab.cell("weighted_loss", "Min").pct_gain == pytest.approx(7.594937, abs=1e-6)
    assert tab.cell("weighted_loss", "Max").pct_gain == pytest.approx(7.228916, abs=1e-6)
    assert tab.cell("classification_utility", "Mean").pct_gain == pytest.approx(6.896552, abs=1e-6)
    assert tab.cell("classification_utility", "Min").pct_gain == pytest.approx(7.407407, abs=1e-6)
    assert tab.cell("classification_utility", "Max").pct_gain == pytest.approx(6.451613, abs=1e-6)


def test_table1_gain_is_row_by_row_not_mean_of_run_gains():
    tab = table1(known_records(), n_boot=0)
    per_run = [gain(b, t, loss=True) for b, t in zip(WL["weighted"], WL["expost"], strict=True)]
    mean_row = tab.cell("weighted_loss", "Mean").pct_gain
    assert mean_row != pytest.approx(float(np.mean(per_run)), abs=1e-6)
    assert tab.cell("weighted_loss", "Min").pct_gain != pytest.approx(min(per_run), abs=1e-6)


def test_table1_uses_expost_percent_gain(monkeypatch):
    """One computation, one place: the table calls expost.percent_gain."""
    import expost.report.table as table_mod

    calls = []

    def spy(b, t, *, higher_is_better):
        calls.append(higher_is_better)
        return expost.percent_gain(b, t, higher_is_better=higher_is_better)

    monkeypatch.setattr(table_mod, "percent_gain", spy)
    table1(known_records(), n_boot=0)
    assert calls == [False] * 3 + [True] * 3


def test_table1_paper_footnote_15():
    recs = [{"run_id": g, "regime": g, "seed": 0, "interval": 0, "weighted_loss": v,
             "classification_utility": u}
            for g, v, u in (("weighted", 0.805, 0.292), ("expost", 0.749, 0.309))]
    tab = table1(recs, n_boot=0)
    assert round(tab.cell("weighted_loss", "Mean").pct_gain, 2) == 6.96
    assert round(tab.cell("classification_utility", "Mean").pct_gain, 2) == 5.82


def test_table1_other_pair_and_swap():
    recs = known_records()
    tab = table1(recs, baseline="unweighted_raw", treatment="weighted", n_boot=0)
    row = tab.cell("weighted_loss", "Mean")
    assert (row.baseline, row.treatment) == pytest.approx((1.10, 0.81))
    assert row.pct_gain == pytest.approx(gain(1.10, 0.81, loss=True))
    swapped = table1(recs, baseline="expost", treatment="weighted", n_boot=0)
    for a, b in zip(table1(recs, n_boot=0).rows, swapped.rows, strict=True):
        assert (a.baseline, a.treatment) == (b.treatment, b.baseline)
        assert np.sign(a.pct_gain) == -np.sign(b.pct_gain)


def test_table1_only_uses_the_two_regimes_and_metrics_choice():
    recs = known_records()
    only_pair = [r for r in recs if r["regime"] != "unweighted_raw"]
    a = table1(recs, metrics=("accuracy", "weighted_loss"), n_boot=100)
    b = table1(only_pair, metrics=("accuracy", "weighted_loss"), n_boot=100)
    assert a.rows == b.rows and a.bootstrap == b.bootstrap
    assert a.metrics == ("accuracy", "weighted_loss")
    # The same resampled runs serve every metric: a metric's interval does not
    # depend on which other metrics are in the table.
    c = table1(recs, metrics=("weighted_loss",), n_boot=100)
    assert c.bootstrap["weighted_loss"] == a.bootstrap["weighted_loss"]


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_deterministic_contains_point_and_bounded():
    recs = known_records()
    a = table1(recs, n_boot=2000, seed=3)
    b = table1(recs, n_boot=2000, seed=3)
    c = table1(recs, n_boot=2000, seed=4)
    assert a.bootstrap == b.bootstrap
    assert a.bootstrap != c.bootstrap
    for m, loss in (("weighted_loss", True), ("classification_utility", False)):
        lo, hi = a.bootstrap[m]
        point = a.cell(m, "Mean").pct_gain
        assert lo < point < hi
        # Resampled means stay within [min, max] of each regime's runs.
        vb, vt = (WL if loss else CU)["weighted"], (WL if loss else CU)["expost"]
        worst = gain(min(vb), max(vt), loss=True) if loss else gain(max(vb), min(vt), loss=False)
        best = gain(max(vb), min(vt), loss=True) if loss else gain(min(vb), max(vt), loss=False)
        assert worst <= lo and hi <= best


def test_bootstrap_matches_its_definition():
    """paired=False: percentile interval of the gain of resampled means, runs resampled
    within each regime (the interval before seeds were paired)."""
    recs = known_records()
    tab = table1(recs, n_boot=400, seed=11, level=0.9, paired=False)
    rng = np.random.default_rng(11)
    ib = rng.integers(0, 5, size=(400, 5))
    it = rng.integers(0, 5, size=(400, 5))
    vb, vt = np.array(WL["weighted"]), np.array(WL["expost"])
    g = 100.0 * (vb[ib].mean(1) - vt[it].mean(1)) / vb[ib].mean(1)
    assert tab.bootstrap["weighted_loss"] == pytest.approx(tuple(np.quantile(g, [0.05, 0.95])))


def test_bootstrap_collapses_without_spread_and_can_be_off():
    recs = [{"run_id": f"{g}{s}", "regime": g, "seed": s, "interval": 0,
             "weighted_loss": v, "classification_utility": 0.5}
            for g, v in (("weighted", 0.8), ("expost", 0.6)) for s in range(5)]
    tab = table1(recs, n_boot=300)
    lo, hi = tab.bootstrap["weighted_loss"]
    assert lo == pytest.approx(25.0) and hi == pytest.approx(25.0)
    assert table1(recs, n_boot=0).bootstrap is None


# ---------------------------------------------------------------- property: brute force
@given(
    st.integers(1, 6), st.integers(1, 6), st.integers(1, 5),
    st.lists(st.floats(0.05, 5.0), min_size=40, max_size=40), st.randoms(use_true_random=False),
)
def test_table1_matches_brute_force(n_b, n_t, n_int, pool, rnd):
    values = iter(pool * 8)
    recs, raw = [], {}
    for g, n in (("weighted", n_b), ("expost", n_t)):
        for s in range(n):
            for t in range(n_int):
                wl, cu = next(values), next(values) / 10
                raw.setdefault(g, {}).setdefault(s, []).append((wl, cu))
                recs.append({"run_id": f"{g}/{s}", "regime": g, "seed": s, "interval": t,
                             "weighted_loss": wl, "classification_utility": cu})
    rnd.shuffle(recs)
    tab = table1(recs, n_boot=50)
    for idx, metric, pick, loss in ((0, "weighted_loss", min, True),
                                    (1, "classification_utility", max, False)):
        best = {g: [pick(v[idx] for v in raw[g][s]) for s in sorted(raw[g])] for g in raw}
        for stat, f in (("Mean", lambda x: sum(x) / len(x)), ("Min", min), ("Max", max)):
            b, t = f(best["weighted"]), f(best["expost"])
            row = tab.cell(metric, stat)
            assert row.baseline == pytest.approx(b) and row.treatment == pytest.approx(t)
            assert row.pct_gain == pytest.approx(gain(b, t, loss=loss))
        if min(n_b, n_t) >= 5:  # seeds 0..n-1: min(n_b, n_t) paired seeds
            lo, hi = tab.bootstrap[metric]
            assert lo <= hi
        else:  # too few seeds: no interval, and the table says why
            assert tab.bootstrap[metric] is None
            assert "an interval needs at least 5" in tab.paired[metric].reason


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"baseline": "resampled"}, ValueError, r"`baseline` must be a regime with finished runs"),
        ({"treatment": "metacost"}, ValueError, r"`treatment` must be a regime with finished"),
        ({"treatment": "weighted"}, ValueError, r"`treatment` must be a regime other than"),
        ({"baseline": 3}, TypeError, r"`baseline` must be a regime name"),
        ({"metrics": ("weighted_loss", "f1")}, ValueError, r"`metrics\[1\]` must be one of"),
        ({"metrics": ()}, ValueError, r"`metrics` must be at least one"),
        ({"metrics": ("accuracy", "accuracy")}, ValueError, r"`metrics` must be distinct"),
        ({"n_boot": -1}, ValueError, r"`n_boot` must be an integer >= 0"),
        ({"n_boot": 10.5}, ValueError, r"`n_boot` must be an integer"),
        ({"seed": -2}, ValueError, r"`seed` must be an integer >= 0"),
        ({"level": 1.0}, ValueError, r"`level` must be a coverage in \(0, 1\)"),
    ],
)
def test_table1_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        table1(known_records(), **kwargs)


def test_table1_no_records():
    with pytest.raises(ValueError, match="at least one finished run"):
        table1([])


# ---------------------------------------------------------------- formats
def test_markdown_layout():
    md = table1(known_records(), n_boot=200).to_markdown()
    lines = md.splitlines()
    assert lines[0] == (
        "|  | Weighted Loss: Weighted Training | Weighted Loss: Ex Post Weighting | "
        "Weighted Loss: % Gain | Classification Utility: Weighted Training | "
        "Classification Utility: Ex Post Weighting | Classification Utility: % Gain |")
    assert lines[2] == "| Mean | 0.810 | 0.750 | 7.41 | 0.290 | 0.310 | 6.90 |"
    assert lines[3] == "| Min | 0.790 | 0.730 | 7.59 | 0.270 | 0.290 | 7.41 |"
    assert lines[4] == "| Max | 0.830 | 0.770 | 7.23 | 0.310 | 0.330 | 6.45 |"
    assert lines[5].startswith("| Mean % gain, 95% CI |  |  | [")
    assert "5 Weighted Training and 5 Ex Post Weighting runs" in md
    assert "200 resamples" in md


def test_csv_full_precision_roundtrip():
    tab = table1(known_records(), n_boot=100)
    rows = list(csv.DictReader(io.StringIO(tab.to_csv())))
    assert len(rows) == 6
    for row, r in zip(rows, tab.rows, strict=True):
        assert (row["metric"], row["statistic"]) == (r.metric, r.statistic)
        assert float(row["baseline_value"]) == r.baseline
        assert float(row["treatment_value"]) == r.treatment
        assert float(row["pct_gain"]) == r.pct_gain
        assert (row["baseline"], row["treatment"]) == ("weighted", "expost")
        assert row["n_baseline"] == "5"
        if r.statistic == "Mean":
            assert (float(row["pct_gain_ci_low"]), float(row["pct_gain_ci_high"])) == \
                tab.bootstrap[r.metric]
        else:
            assert row["pct_gain_ci_low"] == ""


def test_latex_booktabs_layout_and_escaping():
    tab = table1(known_records(), n_boot=100)
    tex = tab.to_latex(title="Weight: Cat & 99% (CIFAR_10)")
    assert tex.startswith(r"\begin{tabular}{lrrrrrr}" + "\n" + r"\toprule")
    assert r"\multicolumn{3}{c}{Weighted Loss} & \multicolumn{3}{c}{Classification Utility}" in tex
    assert r"\cmidrule(lr){2-4} \cmidrule(lr){5-7}" in tex
    assert r"\textit{Weighted Training} & \textit{Ex Post Weighting} & \textit{\% Gain}" in tex
    assert "Mean & 0.810 & 0.750 & 7.41 & 0.290 & 0.310 & 6.90 \\\\" in tex
    assert "Min & 0.790 & 0.730 & 7.59 & 0.270 & 0.290 & 7.41 \\\\" in tex
    assert r"Weight: Cat \& 99\% (CIFAR\_10)" in tex
    assert tab.to_latex(footnote=False).rstrip().endswith(r"\bottomrule" + "\n" + r"\end{tabular}")
    # the footnote (protocol, runs, interval, flags) follows, escaped: it was dropped
    assert (r"\end{tabular}" + "\n" + r"\par\smallskip" + "\n" + r"{\footnotesize Per run, the "
            r"best test-set interval") in tex
    assert r"Interval: 95\% percentile bootstrap" in tex and tex.rstrip().endswith(r"\par}")
    wrapped = tab.to_latex(caption="Table 1", label="tab:one")
    assert wrapped.startswith(r"\begin{table}") and r"\label{tab:one}" in wrapped


def test_html_table_escapes_unknown_regime_names():
    recs = [{"run_id": f"{g}{s}", "regime": g, "seed": s, "interval": 0, "weighted_loss": v + s,
             "classification_utility": 0.5}
            for g, v in (("weighted", 0.8), ("<b>mine</b>", 0.6)) for s in range(2)]
    out = table1(recs, treatment="<b>mine</b>", n_boot=10).to_html()
    assert "<b>mine</b>" not in out and "&lt;b&gt;mine&lt;/b&gt;" in out
    assert out.count("<tr") == 6  # two header rows, Mean, Min, Max, CI


def test_markdown_escapes_what_would_break_the_table_or_run_as_html():
    """A regime (or class) name with '|' added cells to the header row, one with a line
    break split it, and '<script>' in a footnote was raw HTML to a markdown renderer."""
    recs = [{"run_id": f"{g}{s}", "regime": g, "seed": s, "interval": 0,
             "weighted_loss": v + 0.01 * s, "classification_utility": 0.5}
            for g, v in (("a|b\nc", 0.8), ("<script>x</script>", 0.6)) for s in range(5)]
    tab = table1(recs, baseline="a|b\nc", treatment="<script>x</script>", n_boot=50,
                 notes=("Flag: a class named '<b>|</b>'.",))
    md = tab.to_markdown()
    head, rule = md.splitlines()[:2]
    assert head.replace("\\|", "").count("|") == rule.count("|")  # one cell per column
    assert "a\\|b c" in head and "\\<script>x\\</script>" in head
    assert "<script>" not in md.replace("\\<script>", "") and "<b>" not in md.replace("\\<b>", "")
    assert "/ |B| with" in md  # outside a cell a '|' stays as written


def test_the_footnote_says_when_the_interval_takes_fewer_seeds_than_the_rows():
    recs = [{"run_id": f"{g}{s}", "regime": g, "seed": s, "interval": 0,
             "weighted_loss": v + 0.01 * s, "classification_utility": 0.5}
            for g, v, seeds in (("weighted", 0.8, range(6)), ("expost", 0.6, range(5)))
            for s in seeds]
    tab = table1(recs, n_boot=50)
    assert tab.n_runs == {"weighted": 6, "expost": 5}
    assert ("The interval and k/n take the 5 seeds with runs of both regimes; the rows take "
            "every run.") in tab.to_markdown()
    even = [r for r in recs if r["seed"] < 5]
    assert "take the 5 seeds" not in table1(even, n_boot=50).to_markdown()
