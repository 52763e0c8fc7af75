"""The HTML report and build_outputs, on an in-memory store; a Chromium screenshot."""

from __future__ import annotations

import base64
import csv
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from expost.report import build_outputs, table1, write_report
from expost.report._data import emphasis_ratio, gather
from test_report_data import SEEDS, FakeStore, known_records

CHROMIUM = Path("/usr/bin/chromium")


def screenshot(page: Path, tmp_path: Path, *, height: int) -> Path:
    """A headless-Chromium screenshot of ``page``, 1100 pixels wide."""
    shot = tmp_path / "shot.png"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
           f"--window-size=1100,{height}", f"--screenshot={shot}", page.as_uri()]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    return shot


def small_store(run_dir, *, regimes=("weighted", "expost"), **kwargs):
    """Two metrics, no emphasised class: three figures, so building is quick."""
    keep = ("run_id", "regime", "seed", "interval", "step", "epoch", "weighted_loss",
            "classification_utility")
    recs = [{k: r[k] for k in keep} for r in known_records(regimes=regimes)]
    store = FakeStore(run_dir, records=recs, regimes=regimes, failed=False, **kwargs)
    store._info["emphasized"] = None
    store._info["config"]["objective"] = {"kind": "inverse_prior"}
    return store


def _finished_records():
    return [r for r in known_records() if r["run_id"] != "weighted-s9"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    store = FakeStore(root)
    before = (store.experiment_info(), store.runs(), store.interval_records())
    out = build_outputs(store, quiet=True, n_boot=300)
    assert (store.experiment_info(), store.runs(), store.interval_records()) == before
    return root, out


def test_build_outputs_writes_every_file(built):
    root, out = built
    rep = root / "report"
    assert out["table1_md"] == rep / "table1.md"
    assert out["table1_csv"] == rep / "table1.csv"
    assert out["table1_tex"] == rep / "table1.tex"
    assert out["report_html"] == rep / "report.html"
    figs = {k: v for k, v in out.items() if k.startswith("figure_")}
    assert set(figs) == {
        "figure_mean_weighted_loss", "figure_curves_weighted_loss",
        "figure_curves_classification_utility", "figure_curves_log_loss",
        "figure_curves_accuracy", "figure_curves_emphasized_recall",
        "figure_curves_calibration_error", "figure_theory",
        "figure_gain_over_intervals"}  # the store holds no predictions: no risk, no reliability
    for p in figs.values():
        assert p.parent == rep / "figures" and p.read_bytes()[:4] == b"\x89PNG"


def test_build_outputs_table_is_the_finished_runs_table(built):
    root, out = built
    want = table1(_finished_records(), n_boot=300)  # the failed run's 0.01 loss never counts
    assert out["table1_markdown"] == want.to_markdown()
    assert (root / "report" / "table1.md").read_text() == want.to_markdown()
    assert (root / "report" / "table1.tex").read_text() == want.to_latex()
    rows = list(csv.DictReader(io.StringIO((root / "report" / "table1.csv").read_text())))
    assert float(rows[0]["baseline_value"]) == pytest.approx(0.81)
    assert "| Mean | 0.810 | 0.750 | 7.41 |" in out["table1_markdown"]


def test_report_is_self_contained_and_escaped(built):
    root, out = built
    page = out["report_html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # no external assets: no scripts, stylesheets, or remote URLs
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", page)
    assert "http://" not in page and "https://" not in page
    # user-controlled strings arrive escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "demo &lt;b&gt;&amp;" in page and "linux &lt;test&gt;" in page
    # the figures are inlined PNGs that decode
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == 9  # the 8 figures and the gain over intervals
    for b64 in imgs:
        assert base64.b64decode(b64)[:4] == b"\x89PNG"
    assert (root / "report" / "figures" / "theory.png").read_bytes() == base64.b64decode(imgs[-1])


def test_report_content(built):
    _, out = built
    page = out["report_html"].read_text(encoding="utf-8")
    for text in ("Table 1", "Weighted Training", "Ex Post Weighting", "7.41", "6.90",
                 "Unweighted Raw vs Weighted Training", "0123456789abcdef", "abc123",
                 "version: numpy", np.__version__, "Runs and timings", "weighted-s9", "failed",
                 "12.50", "Configuration", "ratio: 99.0", "2.9406"):
        assert text in page, text
    # provenance: one timing row per run
    assert page.count("<td>10.00</td>") == 15


def test_write_report_default_and_explicit_paths(tmp_path, monkeypatch):
    store = small_store(tmp_path)
    p = write_report(store, n_boot=50)
    assert p == tmp_path / "report" / "report.html" and p.exists()
    assert p.read_text().count("data:image/png;base64,") == 4  # 3 and the gain over intervals
    monkeypatch.setattr("expost.report.html.make_figures", lambda data: [])  # speed only
    q = write_report(store, tmp_path / "x" / "r.html", n_boot=50)
    assert q == tmp_path / "x" / "r.html" and q.stat().st_size > 5_000


def test_report_without_a_pair_and_without_emphasis(tmp_path):
    store = small_store(tmp_path, regimes=("weighted",))
    out = build_outputs(store, quiet=True, n_boot=10)
    assert "only Weighted Training has finished runs" in out["table1_markdown"]
    assert "table1_md" not in out and not (tmp_path / "report" / "table1.md").exists()
    assert "figure_theory" not in out
    assert "only Weighted Training has finished runs" in out["report_html"].read_text()


def test_inverse_prior_experiment_uses_it_as_baseline(tmp_path):
    store = small_store(tmp_path)
    store._records = [dict(r, regime="inverse_prior", run_id=r["run_id"].replace("weighted", "ip"))
                      if r["regime"] == "weighted" else r for r in store._records]
    store._runs = [dict(r, regime="inverse_prior", run_id=r["run_id"].replace("weighted", "ip"))
                   if r["regime"] == "weighted" else r for r in store._runs]
    data = gather(store, tmp_path, n_boot=10)
    assert (data.table.baseline, data.table.treatment) == ("inverse_prior", "expost")
    assert "Inverse-Prior Weighting" in data.table.to_markdown()
    assert data.comparisons == []


def test_errors(tmp_path):
    statuses = {(g, s): "running" for g in ("weighted", "expost", "unweighted_raw") for s in SEEDS}
    store = FakeStore(tmp_path, statuses=statuses)
    with pytest.raises(ValueError, match=r"No finished runs .*1 failed, 15 running"):
        build_outputs(store, quiet=True)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        write_report(tmp_path / "nope")
    with pytest.raises(TypeError, match="`run_dir` must be an experiment directory"):
        build_outputs(42)
    nameless = FakeStore(None)
    with pytest.raises(ValueError, match="`out_dir` must be given"):
        build_outputs(nameless, quiet=True)
    with pytest.raises(ValueError, match="`out` must be given"):
        write_report(nameless)


def test_outputs_never_replace_the_experiments_state(tmp_path):
    """From Python as from the command line: a report over results.sqlite (existing or not
    yet), or figures and tables inside the checkpoints, are refused before anything is written."""
    store = small_store(tmp_path)
    (tmp_path / "results.sqlite").write_bytes(b"the store")
    (tmp_path / "checkpoints").mkdir()
    for out in (tmp_path / "results.sqlite", tmp_path / "results.sqlite-wal", tmp_path / ".lock"):
        with pytest.raises(ValueError, match=r"^`out` .* is the experiment's .*; writing there would "
                                             r"replace it"):
            write_report(store, out, n_boot=10)
    with pytest.raises(ValueError, match=r"^`out_dir` .* lies in the experiment's checkpoints folder"):
        build_outputs(store, out_dir=tmp_path / "checkpoints" / "r", quiet=True, n_boot=10)
    assert (tmp_path / "results.sqlite").read_bytes() == b"the store"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "results.sqlite"]
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_quiet_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("expost.report.build.figure_specs", lambda data: [])  # speed only
    build_outputs(small_store(tmp_path), n_boot=10)
    assert "report written to" in capsys.readouterr().err
    build_outputs(small_store(tmp_path), n_boot=10, quiet=True)
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""


def test_emphasis_ratio_from_the_config():
    # the ratio the user configured, not one re-derived from the normalised matrix
    emph = {"kind": "emphasize", "emphasized": "hardest", "ratio": 99.0}
    assert emphasis_ratio({"config": {"objective": emph}}) == 99.0
    assert emphasis_ratio({"config": {"objective": {**emph, "ratio": 9}}}) == 9.0
    weights = {"kind": "class_weights", "weights": [1.0, 99.0]}
    assert emphasis_ratio({"config": {"objective": weights}}) is None
    assert emphasis_ratio({"config": {"objective": {"kind": "inverse_prior"}}}) is None
    assert emphasis_ratio({"config": {}}) is None and emphasis_ratio({}) is None
    assert emphasis_ratio({"config": {"objective": {**emph, "ratio": "x"}}}) is None


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install "
                    "chromium)")
def test_report_renders_in_headless_chromium(built, tmp_path):
    from PIL import Image

    _, out = built
    shot = screenshot(out["report_html"], tmp_path, height=3000)
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (3000, 1100)
    packed = (img[..., 0].astype(np.int32) << 16) | (img[..., 1].astype(np.int32) << 8) \
        | img[..., 2]
    colours = np.unique(packed)
    assert len(colours) > 200  # text, tables and the inlined figures, not a blank page
    dark = (img.sum(axis=2) < 200).mean()
    assert 0.005 < dark < 0.5  # some dark text/lines, not a black page
    # The regime colours of the figures (red, blue) are on screen: the PNGs decoded.
    red = ((img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 80)).sum()
    blue = ((img[..., 2] > 150) & (img[..., 0] < 80)).sum()
    assert red > 200 and blue > 200
