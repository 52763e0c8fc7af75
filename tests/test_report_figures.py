"""Figures: per-run curves with best points (Figures 1, 4-9) and Figure 2."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from expost._incentives import binary_incentive_curves
from expost.experiments.regimes import regime_colour
from expost.report import best_intervals, plot_curves, plot_theory
from test_report_data import CU, IU, IW, SEEDS, WL, known_records


def _markers(ax):
    return [ln for ln in ax.lines if ln.get_marker() == "o"]


def _curves(ax):
    return [ln for ln in ax.lines if ln.get_marker() in ("None", None, "")]


def test_curves_one_line_per_run_best_points_where_table_picks_them():
    recs = known_records()
    before = copy.deepcopy(recs)
    fig = plot_curves(recs, "weighted_loss")
    assert isinstance(fig, Figure)
    assert recs == before
    ax = fig.axes[0]
    assert len(_curves(ax)) == 15 and len(_markers(ax)) == 15
    pts = {(float(m.get_xdata()[0]), float(m.get_ydata()[0]), to_rgba(m.get_color()))
           for m in _markers(ax)}
    want = {(float(IW[s] + 1), WL[g][s], to_rgba(regime_colour(g))) for g in WL for s in SEEDS}
    assert len(pts) == len(want)
    for x, y, c in want:
        assert any(abs(x - a) < 1e-12 and abs(y - b) < 1e-12 and c == col for a, b, col in pts)
    assert ax.get_xlabel() == "Training epoch" and ax.get_ylabel() == "Weighted Loss"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["Weighted Training", "Ex Post Weighting", "Unweighted Raw"]


def test_utility_curves_mark_the_maximum():
    fig = plot_curves(known_records(), "classification_utility", x="interval",
                      regimes=["expost"])
    ax = fig.axes[0]
    got = np.array(sorted((float(m.get_xdata()[0]), float(m.get_ydata()[0]))
                          for m in _markers(ax)))
    want = np.array(sorted((float(IU[s]), CU["expost"][s]) for s in SEEDS))
    assert np.allclose(got, want, rtol=0, atol=1e-12)
    assert ax.get_xlabel() == "Training interval"


def test_marked_points_come_from_best_intervals(monkeypatch):
    import expost.report.figures as figures_mod

    calls = []

    def spy(records, metric):
        calls.append(metric)
        return best_intervals(records, metric)

    monkeypatch.setattr(figures_mod, "best_intervals", spy)
    plot_curves(known_records(), "accuracy")
    assert calls == ["accuracy"]


def test_x_axis_auto_uses_steps_when_epochs_are_fractional():
    ax = plot_curves(known_records(epoch_per_interval=0.5), "weighted_loss").axes[0]
    assert ax.get_xlabel() == "Training step"
    xs = sorted({float(x) for ln in _curves(ax) for x in ln.get_xdata()})
    assert xs == [50.0 * (t + 1) for t in range(6)]
    ax = plot_curves(known_records(epoch_per_interval=0.5), "weighted_loss", x="epoch").axes[0]
    assert ax.get_xlabel() == "Training epoch"


def test_average_curves_figure_1():
    fig = plot_curves(known_records(), "weighted_loss", average=True)
    ax = fig.axes[0]
    curves = _curves(ax)
    # 3 mean curves + 3 dotted best-value lines (axhline)
    solid = [c for c in curves if c.get_linestyle() == "-"]
    dotted = [c for c in curves if c.get_linestyle() == ":"]
    assert len(solid) == 3 and len(dotted) == 3 and len(_markers(ax)) == 3
    recs = known_records()
    for line, g in zip(solid, ("weighted", "expost", "unweighted_raw"), strict=True):
        want = [np.mean([r["weighted_loss"] for r in recs
                         if r["regime"] == g and r["interval"] == t]) for t in range(6)]
        assert np.allclose(line.get_ydata(), want)
        assert to_rgba(line.get_color()) == to_rgba(regime_colour(g))
    for m, d in zip(_markers(ax), dotted, strict=True):
        assert float(d.get_ydata()[0]) == pytest.approx(float(m.get_ydata()[0]))
    assert "mean of 5 runs" in ax.get_legend().get_texts()[0].get_text()


def test_save_png_and_pdf(tmp_path):
    fig = plot_curves(known_records(), "weighted_loss", path=tmp_path / "f" / "curves.png",
                      pdf=True)
    png = (tmp_path / "f" / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert (tmp_path / "f" / "curves.pdf").read_bytes()[:5] == b"%PDF-"
    assert fig.get_size_inches()[0] > 0


def test_library_leaves_pyplot_alone():
    import matplotlib.pyplot as plt

    plt.close("all")
    plot_curves(known_records(), "weighted_loss")
    plot_theory(binary_incentive_curves(9.0, grid=21))
    assert plt.get_fignums() == []


def test_draw_into_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_curves(known_records(), "log_loss", ax=ax, logy=True) is fig
    assert ax.get_yscale() == "log"


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"metric": "f1"}, ValueError, "`metric` must be one of"),
        ({"x": "time"}, ValueError, "`x` must be one of"),
        ({"regimes": ["metacost"]}, ValueError, r"`regimes\[0\]` must be a regime present"),
    ],
)
def test_curves_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        plot_curves(known_records(), **kwargs)


def test_curves_missing_axis_and_empty():
    recs = [{k: v for k, v in r.items() if k != "step"} for r in known_records()]
    with pytest.raises(ValueError, match="`x` must be an axis every record has"):
        plot_curves(recs, x="step")
    with pytest.raises(ValueError, match="at least one run"):
        plot_curves([])


# ---------------------------------------------------------------- Figure 2
def test_theory_three_panels_hold_the_curves():
    c = binary_incentive_curves(99.0, grid=49)
    fig = plot_theory(c)
    assert [ax.get_title() for ax in fig.axes] == [
        "Optimal prediction", "Marginal learning loss", "Learning loss"]
    for ax, (w, ref) in zip(fig.axes, [(c.prediction, c.reference_prediction),
                                       (c.marginal, c.reference_marginal),
                                       (c.loss, c.reference_loss)], strict=True):
        ref_line, w_line = ax.lines
        assert np.allclose(w_line.get_xdata(), c.q1) and np.allclose(ref_line.get_xdata(), c.q1)
        assert np.allclose(w_line.get_ydata(), w) and np.allclose(ref_line.get_ydata(), ref)
        assert to_rgba(w_line.get_color()) == to_rgba(regime_colour("weighted"))
        assert to_rgba(ref_line.get_color()) == to_rgba(regime_colour("expost"))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["Ex Post Weighting ($w_1 = w_2$)", "Weighted Training ($w_1 = 99\\, w_2$)"]


def test_theory_from_ratio_and_infinite_ends(tmp_path):
    fig = plot_theory(4.0, path=tmp_path / "fig2.png")
    assert (tmp_path / "fig2.png").exists()
    assert "w_1 = 4" in fig.axes[0].get_legend().get_texts()[1].get_text()
    # q1 = 0 and 1 make the marginal learning loss infinite: drawn as gaps, not as inf.
    c = binary_incentive_curves(99.0, grid=[0.0, 0.5, 1.0])
    ax = plot_theory(c).axes[1]
    y = ax.lines[1].get_ydata()
    assert np.isnan(y[0]) and np.isnan(y[-1]) and np.isfinite(y[1])
    assert np.all(np.isfinite(ax.get_ylim()))


def test_theory_bad_input():
    with pytest.raises(TypeError, match="`curves` must be the IncentiveCurves"):
        plot_theory({"q1": [0.5]})
    with pytest.raises(ValueError, match="weight_ratio"):
        plot_theory(-1.0)
