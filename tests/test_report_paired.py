"""Paired uncertainty (seeds resampled jointly, win count, sign test) and --select val."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import binomtest

from expost.report import table1
from expost.report.paired import sign_test


def seed_records(wt, epw, *, metric_u=None, intervals=1):
    """One record per (regime, seed, interval) with the given best values per seed."""
    recs = []
    for g, vals in (("weighted", wt), ("expost", epw)):
        for s, v in enumerate(vals):
            for t in range(intervals):
                recs.append({"run_id": f"{g}-{s}", "regime": g, "seed": s, "interval": t,
                             "weighted_loss": v + 0.05 * t,
                             "classification_utility": 0.5 if metric_u is None else metric_u[g][s]})
    return recs


# ---------------------------------------------------------------- sign test
@pytest.mark.parametrize(("w", "l"), [(5, 0), (0, 5), (4, 1), (3, 3), (9, 2), (1, 0), (12, 7)])
def test_sign_test_is_the_exact_binomial_test(w, l):
    assert sign_test(w, l) == pytest.approx(binomtest(w, w + l, 0.5).pvalue, rel=1e-12)


def test_sign_test_written_out():
    assert sign_test(5, 0) == 2 / 32
    assert sign_test(4, 1) == 2 * 6 / 32
    assert sign_test(0, 0) == 1.0


# ---------------------------------------------------------------- paired bootstrap
def test_paired_bootstrap_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    seed_effect = rng.normal(0, 0.2, 6)
    wt = 1.0 + seed_effect
    epw = 0.9 + seed_effect + rng.normal(0, 0.01, 6)
    tab = table1(seed_records(wt, epw), n_boot=500, seed=7, level=0.9)
    idx = np.random.default_rng(7).integers(0, 6, size=(500, 6))
    mb, mt = wt[idx].mean(1), epw[idx].mean(1)
    direct = np.quantile(100 * (mb - mt) / np.abs(mb), [0.05, 0.95])
    assert tab.bootstrap["weighted_loss"] == pytest.approx(tuple(direct), rel=1e-12)
    pg = tab.paired["weighted_loss"]
    assert pg.seeds == tuple(range(6))
    wins = int(np.sum(epw < wt))
    assert (pg.wins, pg.losses, pg.ties) == (wins, 6 - wins, 0)
    assert pg.sign_p == pytest.approx(binomtest(wins, 6, 0.5).pvalue)


def test_pairing_matters_large_seed_effect_consistent_gain():
    """Seeds differ a lot, the gain within each seed is steady: the paired interval is
    much narrower than one that resamples each regime on its own."""
    seed_effect = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    wt = 1.0 + seed_effect
    epw = 0.9 + seed_effect + np.array([0.0, 0.01, -0.01, 0.02, -0.02])
    recs = seed_records(wt, epw)
    paired = table1(recs, n_boot=2000, seed=0).bootstrap["weighted_loss"]
    unpaired = table1(recs, n_boot=2000, seed=0, paired=False).bootstrap["weighted_loss"]
    assert paired[1] - paired[0] < 0.25 * (unpaired[1] - unpaired[0])
    assert paired[0] > 0 > unpaired[0]  # significant only when the pairing is used
    tab = table1(recs, n_boot=2000, seed=0)
    assert tab.paired["weighted_loss"].wins == 5
    assert "5/5 seeds, sign test p = 0.0625" in tab.to_markdown()
    assert "seeds resampled jointly (paired" in tab.to_markdown()


@pytest.mark.parametrize("n_seeds", [1, 2, 3, 4])
def test_no_interval_with_fewer_than_five_seeds(n_seeds):
    """With 3 seeds the '95% interval' was about the range of their gains, and excluded 0
    whenever they agreed in sign (sign test p = 0.25): the report called it significant."""
    recs = seed_records([0.8, 0.82, 0.81, 0.9][:n_seeds], [0.7, 0.71, 0.72, 0.8][:n_seeds])
    tab = table1(recs, n_boot=500)
    assert tab.bootstrap == {"weighted_loss": None, "classification_utility": None}
    md = tab.to_markdown()
    ci_line = next(x for x in md.splitlines() if x.startswith("| Mean % gain"))
    assert "[" not in ci_line and "–" in ci_line  # no zero-width "[19.58, 19.58]"
    assert f"{n_seeds} seed" in md and "an interval needs at least 5" in md
    assert tab.significance("weighted_loss") == "ns"  # every seed better, but too few of them
    data = json.loads(tab.to_json())
    assert data["gains"]["weighted_loss"]["ci"] is None
    assert "at least 5" in data["gains"]["weighted_loss"]["no_interval_because"]


def test_unpaired_seeds_are_not_paired():
    """Only seeds run by both regimes pair up; the others count in the rows only."""
    recs = seed_records([0.8, 0.82, 0.81, 0.9], [0.7, 0.71, 0.72])
    tab = table1(recs, n_boot=100)
    assert tab.n_runs == {"weighted": 4, "expost": 3}
    assert tab.paired["weighted_loss"].seeds == (0, 1, 2)


def test_json_is_machine_readable():
    recs = seed_records([0.8, 0.82, 0.81, 0.8, 0.82], [0.7, 0.71, 0.83, 0.7, 0.71])
    data = json.loads(table1(recs, n_boot=200).to_json())
    assert data["protocol"] == "test" and data["baseline"] == "weighted"
    assert data["runs"] == {"weighted": [f"weighted-{s}" for s in range(5)],
                            "expost": [f"expost-{s}" for s in range(5)]}
    mean = [r for r in data["rows"] if r["metric"] == "weighted_loss" and r["statistic"] == "Mean"]
    assert mean[0]["baseline"] == pytest.approx(4.05 / 5) and mean[0]["treatment"] == pytest.approx(3.65 / 5)
    g = data["gains"]["weighted_loss"]
    assert (g["wins"], g["losses"], g["n_seeds"]) == (4, 1, 5)
    assert g["ci"][0] <= g["mean_pct_gain"] <= g["ci"][1]


@pytest.mark.parametrize("n_boot", [1, 2, 39])
def test_too_few_resamples_give_no_interval(n_boot):
    """One resample gave a zero-width '95% CI' that excluded 0, which the verdict called
    significant (`expost table RUN --bootstrap 1`)."""
    recs = seed_records([0.8, 0.82, 0.81, 0.9, 0.85], [0.7, 0.71, 0.72, 0.8, 0.75])
    for paired in (False, True):
        tab = table1(recs, n_boot=n_boot, paired=paired)
        assert tab.bootstrap == {"weighted_loss": None, "classification_utility": None}
        assert tab.significance("weighted_loss") == "ns"
    assert tab.paired["weighted_loss"].reason == (f"{n_boot} bootstrap resamples; a 95% interval "
                                                  "needs at least 40")
    assert table1(recs, n_boot=40).bootstrap["weighted_loss"] is not None
    assert table1(recs, n_boot=20, level=0.9).bootstrap["weighted_loss"] is not None


# ---------------------------------------------------------------- a baseline of 0
@pytest.mark.parametrize("paired", [True, False])
def test_a_baseline_mean_of_zero_gives_no_gain_and_no_interval(paired, recwarn):
    """Weighted Training's classification utility is 0 in every seed (an extreme ratio can
    do it): the % gain divides by 0. It was printed as inf with an interval of NaNs, which
    the report read as significant and worded "Ex Post Weighting worse by -inf%"."""
    from expost.report.verdict import verdict_lines

    cu = {"weighted": [0.0] * 5, "expost": [0.1, 0.2, 0.3, 0.4, 0.5]}
    tab = table1(seed_records([0.8, 0.82, 0.81, 0.9, 0.85], [0.7, 0.71, 0.72, 0.8, 0.75], metric_u=cu),
                 n_boot=300, paired=paired)
    m = "classification_utility"
    assert math.isinf(tab.cell(m, "Mean").pct_gain)  # the data keep the arithmetic
    assert tab.bootstrap[m] is None and tab.significance(m) == "ns"
    assert tab.bootstrap["weighted_loss"] is not None  # the other metric is untouched
    if paired:
        assert tab.paired[m].reason == ("the Weighted Training mean is 0 in 300 of 300 "
                                        "resamples, where the % gain is undefined")
    rows = [x for x in tab.to_markdown().splitlines() if x.startswith(("| Mean |", "| Min |"))]
    assert all(x.endswith("| – |") for x in rows) and "inf" not in tab.to_markdown()
    assert "–: no % gain, B being 0" in tab.to_markdown()
    assert "inf" not in tab.to_latex() and "inf" not in tab.to_html()
    (line,) = [v for v in verdict_lines({"test": tab}, {})[1] if v.metric == m]
    assert line.significance == "ns"
    assert "no % gain, Weighted Training's mean being 0, better in 5/5 seeds" in line.text
    assert json.loads(tab.to_json())["gains"][m]["ci"] is None
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_some_resamples_with_a_baseline_mean_of_zero_give_no_interval():
    """The Mean row's gain exists (B > 0), but resamples of the zero seeds alone do not."""
    cu = {"weighted": [0.0, 0.0, 0.0, 0.0, 0.3], "expost": [0.1, 0.2, 0.3, 0.4, 0.5]}
    tab = table1(seed_records([0.8, 0.82, 0.81, 0.9, 0.85], [0.7, 0.71, 0.72, 0.8, 0.75], metric_u=cu),
                 n_boot=400, seed=1)
    m = "classification_utility"
    assert tab.cell(m, "Mean").pct_gain == pytest.approx(100 * (0.3 - 0.06) / 0.06)
    idx = np.random.default_rng(1).integers(0, 5, size=(400, 5))
    zero = int(np.sum(np.array(cu["weighted"])[idx].mean(1) == 0))
    assert 0 < zero < 400
    assert tab.bootstrap[m] is None
    assert tab.paired[m].reason.startswith(f"the Weighted Training mean is 0 in {zero} of 400")
    assert tab.significance(m) == "ns"


def test_a_best_value_that_is_not_a_number_gives_no_interval():
    cu = {"weighted": [0.5, float("nan"), 0.5, 0.5, 0.5], "expost": [0.6] * 5}
    tab = table1(seed_records([0.8, 0.82, 0.81, 0.9, 0.85], [0.7, 0.71, 0.72, 0.8, 0.75], metric_u=cu),
                 n_boot=100)
    m = "classification_utility"
    assert tab.bootstrap[m] is None and tab.significance(m) == "ns"
    assert tab.paired[m].reason == "a Weighted Training run's best value is not a finite number"


# ---------------------------------------------------------------- --select val
def test_select_val_reports_the_test_value_of_the_validation_best_interval():
    """A hand-built pair of splits: validation is best at interval 1, test at interval 3."""
    test, val = [], []
    test_curve = {"weighted": [0.9, 0.85, 0.8, 0.7], "expost": [0.8, 0.75, 0.6, 0.5]}
    val_curve = {"weighted": [0.9, 0.6, 0.7, 0.8], "expost": [0.8, 0.9, 0.5, 0.95]}
    for g in test_curve:
        for s in range(3):
            for t in range(4):
                base = {"run_id": f"{g}-{s}", "regime": g, "seed": s, "interval": t,
                        "classification_utility": 0.1 * t}
                test.append({**base, "weighted_loss": test_curve[g][t] + 0.01 * s})
                val.append({**base, "weighted_loss": val_curve[g][t] + 0.01 * s,
                            "classification_utility": 0.3 - 0.1 * t})
    by_test = table1(test, n_boot=0)
    by_val = table1(test, n_boot=0, select="val", val_records=val)
    # test protocol: interval 3 for both regimes
    assert by_test.cell("weighted_loss", "Mean").baseline == pytest.approx(0.71)
    assert by_test.cell("weighted_loss", "Mean").treatment == pytest.approx(0.51)
    # validation protocol: weighted picks interval 1 (test 0.85), expost interval 2 (test 0.6)
    assert by_val.cell("weighted_loss", "Mean").baseline == pytest.approx(0.86)
    assert by_val.cell("weighted_loss", "Mean").treatment == pytest.approx(0.61)
    assert {r["interval"] for r in by_val.best["weighted_loss"]} == {1, 2}
    # utility: validation is best at interval 0, where the test utility is 0
    assert by_val.cell("classification_utility", "Max").treatment == pytest.approx(0.0)
    assert by_val.protocol == "val" and "validation" in by_val.to_markdown()
    assert "the paper's protocol" in by_test.to_markdown()


def test_select_val_errors():
    recs = seed_records([0.8, 0.82, 0.81], [0.7, 0.71, 0.72])
    with pytest.raises(ValueError, match=r"`val_records` must be the validation records"):
        table1(recs, select="val")
    with pytest.raises(ValueError, match=r"`select` must be one of"):
        table1(recs, select="train")
    missing = [r for r in recs if r["run_id"] != "expost-1"]
    with pytest.raises(ValueError, match=r"`select_by` must be a defined 'weighted_loss' for "
                                         r"every run, got none for regime 'expost', run 'expost-1'"):
        table1(recs, select="val", val_records=missing)
    assert math.isfinite(table1(recs, select="val", val_records=recs, n_boot=0)
                         .cell("weighted_loss", "Mean").pct_gain)


def test_the_verdict_never_prints_a_negative_zero():
    from expost.report.verdict import _signed

    assert [_signed(x) for x in (-0.04, 0.04, -0.0, 0.06, -0.06, 12.345)] == [
        "0.0", "0.0", "0.0", "+0.1", "-0.1", "+12.3"]
