"""The report subcommands (table, plot, report, theory) on a real results database.

The database is written through the harness's own ResultStore API with the
hand-made records of test_report_data, so the numbers are known.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from expost.cli import main
from expost.experiments.metrics import METRICS
from expost.experiments.store import ResultStore
from expost.report import build_outputs, table1
from test_report_data import SEEDS, FakeStore, known_records

REGIMES3 = ("weighted", "expost", "unweighted_raw")


def write_store(run_dir: Path, *, unfinished: tuple[str, ...] = (), val: bool = False
                ) -> list[dict]:
    """A results database holding known_records(); trainings in ``unfinished`` stay running.
    ``val``: validation metrics too, every one best at interval 0."""
    info = FakeStore().experiment_info()
    store = ResultStore.create(run_dir, info, arrays={"test_labels": np.array([0, 1, 2])})
    recs = known_records(shuffle=False)
    trainings = [{"train_key": f"{k}-s{s}", "kind": k, "seed": s, "n_intervals": 6,
                  "total_steps": 300} for k in ("weighted", "unweighted") for s in SEEDS]
    runs = [{"run_id": f"{g}-s{s}", "regime": g, "seed": s,
             "train_key": f"{'weighted' if g == 'weighted' else 'unweighted'}-s{s}"}
            for g in REGIMES3 for s in SEEDS]
    store.register(trainings, runs)
    # predictions that decide different classes under every view (no one-class flag)
    lp = np.log([[0.999, 0.0005, 0.0005], [0.2, 0.6, 0.2], [0.0005, 0.0005, 0.999]]
                ).astype(np.float16)
    for t in trainings:
        key = t["train_key"]
        store.start_training(key)
        members = [r["run_id"] for r in runs if r["train_key"] == key]
        for i in range(6):
            mets = []
            for rid in members:
                (rec,) = [r for r in recs if r["run_id"] == rid and r["interval"] == i]
                mets.append((rid, "test", {m: np.nan if rec[m] is None else rec[m]
                                           for m in METRICS}))
                if val:
                    mets.append((rid, "val", {m: (i if METRICS[m] is False else -i)
                                              for m in METRICS}))
            first = next(r for r in recs if r["run_id"] == members[0] and r["interval"] == i)
            store.commit_interval(key, {"interval": i, "step": first["step"],
                                        "epoch": first["epoch"], "lr": 1e-3, "train_loss": 1.0,
                                        "val_loss": 1.0, "train_seconds": 0.5,
                                        "eval_seconds": 0.1}, lp, mets, checkpoint=None,
                                  timings={"wall": 1.0, "train": 0.5, "eval": 0.1})
        if key not in unfinished:
            store.finish_training(key)
    store.close()
    finished = {r["run_id"] for r in runs if r["train_key"] not in unfinished}
    return [r for r in recs if r["run_id"] in finished]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    write_store(d)
    return d


def cli(argv):
    """The report's commands through the real command line and its one error boundary."""
    return main(argv)


# ---------------------------------------------------------------- table
def test_table_markdown_from_the_database(run_dir, capsys):
    assert cli(["table", str(run_dir), "--bootstrap", "300"]) == 0
    out = capsys.readouterr().out
    assert out == table1(known_records(), n_boot=300).to_markdown()
    assert "| Mean | 0.810 | 0.750 | 7.41 | 0.290 | 0.310 | 6.90 |" in out


def test_table_csv_latex_and_pair(run_dir, capsys):
    assert cli(["table", str(run_dir), "--format", "csv", "--baseline", "unweighted_raw",
                "--treatment", "weighted", "--bootstrap", "0"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert (rows[0]["baseline"], rows[0]["treatment"]) == ("unweighted_raw", "weighted")
    assert float(rows[0]["baseline_value"]) == pytest.approx(1.10)
    assert rows[0]["pct_gain_ci_low"] == ""
    assert cli(["table", str(run_dir), "--format", "latex", "--metric", "accuracy"]) == 0
    tex = capsys.readouterr().out
    assert r"\multicolumn{3}{c}{Accuracy}" in tex and "Weighted Loss" not in tex


def test_table_all_writes_files(run_dir, tmp_path, capsys):
    assert cli(["table", str(run_dir), "--format", "all", "--bootstrap", "50",
                "--out", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    tab = table1(known_records(), n_boot=50)
    assert out == "\n".join([tab.to_markdown(), tab.to_csv(), tab.to_latex()])
    assert (tmp_path / "t" / "table1.md").read_text() == tab.to_markdown()
    assert (tmp_path / "t" / "table1.csv").read_text() == tab.to_csv()
    assert (tmp_path / "t" / "table1.tex").read_text() == tab.to_latex()


def test_table_errors(run_dir, tmp_path, capsys):
    assert cli(["table", str(run_dir), "--treatment", "metacost"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("expost table: error: `treatment` must be a regime with finished runs")
    assert cli(["table", str(tmp_path / "missing")]) == 1
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli(["table", str(tmp_path / "empty")]) == 1
    assert "results.sqlite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["table", str(run_dir), "--bootstrap", "-3"])
    assert "expected an integer >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["table", str(run_dir), "--format", "xlsx"])


def test_unfinished_runs_do_not_count(tmp_path, capsys):
    finished = write_store(tmp_path, unfinished=("weighted-s0", "unweighted-s4"))
    assert cli(["table", str(tmp_path), "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert out == table1(finished, n_boot=0).to_markdown()
    assert "4 Weighted Training and 4 Ex Post Weighting runs" in out


# ---------------------------------------------------------------- plot, report, theory
def test_plot_writes_pngs(run_dir, tmp_path, capsys):
    assert cli(["plot", str(run_dir), "--metric", "weighted_loss", "--average",
                "--out", str(tmp_path / "f"), "--pdf"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "f" / "mean_weighted_loss.png"),
                       str(tmp_path / "f" / "mean_weighted_loss.pdf")]
    assert Path(printed[0]).read_bytes()[:4] == b"\x89PNG"


def test_report_command_and_build_outputs_on_the_database(run_dir, tmp_path, capsys,
                                                          monkeypatch):
    with monkeypatch.context() as mp:  # the command's figures are build_outputs' (below)
        mp.setattr("expost.report.html.make_figures", lambda data: [])
        assert cli(["report", str(run_dir), "--out", str(tmp_path / "r.html"),
                    "--bootstrap", "100"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "7.41" in page and "&lt;script&gt;" in page
    out = build_outputs(run_dir, quiet=True, n_boot=100)
    assert out["report_html"] == run_dir / "report" / "report.html"
    # 8 figures, the gain over intervals and the reliability diagrams (3 test rows are too
    # few to cross-fit the risk decomposition, which is left out)
    assert out["report_html"].read_text().count("data:image/png;base64,") == 10
    assert out["table1_markdown"] == table1(known_records(), n_boot=100).to_markdown()


def test_theory_command(tmp_path, capsys):
    assert cli(["theory", "--ratio", "9", "--out", str(tmp_path / "fig2.png")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "fig2.png")
    assert (tmp_path / "fig2.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        cli(["theory", "--ratio", "-1"])
    assert "expected a positive" in capsys.readouterr().err


def test_through_the_expost_entry_point(run_dir, capsys):
    from expost.cli import build_parser, main

    helptext = build_parser().format_help()
    for command in ("table", "plot", "report", "theory"):
        assert command in helptext
    assert main(["table", str(run_dir), "--bootstrap", "0", "--format", "csv"]) == 0
    assert capsys.readouterr().out == table1(known_records(), n_boot=0).to_csv()
    assert main(["table", str(run_dir), "--baseline", "resampled"]) == 1
    assert "expost table: error: `baseline`" in capsys.readouterr().err


def test_matplotlib_gets_a_cache_folder_where_the_home_is_not_writable(tmp_path, monkeypatch):
    """Run as a user whose home is read-only, every report command printed matplotlib's
    two-line 'mkdir -p failed ... created a temporary cache directory' warning."""
    import os

    from expost.report import _mpl

    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _mpl.settle()  # writable (its parent is): left to matplotlib
    assert "MPLCONFIGDIR" not in os.environ
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(tmp_path))
                        else real_access(p, mode))
    _mpl.settle()  # not writable: a folder of its own, so matplotlib has no need to warn
    made = os.environ["MPLCONFIGDIR"]
    assert os.path.isdir(made) and os.path.basename(made).startswith("expost-matplotlib-")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mine"))
    _mpl.settle()  # the user's own choice stays
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "mine")
    os.rmdir(made)
