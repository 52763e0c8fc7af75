"""The report helper of ``expost run``: forked before the run, it builds the report when asked;
anything wrong with it leaves the report to the parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from expost.report import _render, build_outputs
from expost.report.helper import ReportHelper
from test_report_render import _reaped as _gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2,
                                reason="the helper forks on Linux with 2 or more CPUs")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished experiment on disk (the helper's child opens it by path)."""
    from expost.experiments.runners import run_experiment

    cfg = {"name": "helper", "dataset": {"name": "digits", "options": {"flatten": True}},
           "model": {"name": "mlp", "options": {"hidden": [16]}},
           "objective": {"kind": "emphasize", "emphasized": "hardest", "ratio": 9},
           "regimes": ["weighted", "expost"], "seeds": [0, 1],
           "optimizer": {"name": "adam", "lr": 0.01},
           "training": {"epochs": 2, "batch_size": 128}, "num_threads": 1}
    return run_experiment(cfg, output_dir=tmp_path_factory.mktemp("h") / "run", progress=False,
                          quiet=True)


def test_the_helper_builds_the_report_the_parent_would(run_dir, tmp_path, capsys):
    helper = ReportHelper.start()
    assert helper is not None
    pid = helper.pid
    got = helper.build(run_dir, quiet=False)
    assert _gone(pid)
    printed = capsys.readouterr().err
    assert "report written to" in printed and "Verdict" in printed  # printed by this process
    files = {k: v.read_bytes() for k, v in got.items() if k.startswith("figure_")}
    here = build_outputs(run_dir, out_dir=tmp_path / "here", quiet=True, processes=1)
    assert sorted(got) == sorted(here)
    assert got["table1_markdown"] == here["table1_markdown"]
    assert files == {k: v.read_bytes() for k, v in here.items() if k.startswith("figure_")}
    assert got["report_html"] == run_dir / "report" / "report.html"


def test_the_parent_loads_no_matplotlib_when_the_helper_builds(run_dir):
    code = textwrap.dedent(f"""
        import sys
        from expost.report.helper import ReportHelper
        helper = ReportHelper.start()
        out = helper.build({str(run_dir)!r}, quiet=True)
        print(sorted(out)[0], "matplotlib" in sys.modules, "torch" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["figure_curves_accuracy", "False", "False"]


def test_a_failing_helper_leaves_the_report_to_the_caller(tmp_path):
    helper = ReportHelper.start()
    pid = helper.pid
    assert helper.build(tmp_path / "not-an-experiment", quiet=False) is None
    assert _gone(pid)
    with pytest.raises(FileNotFoundError):  # what the caller then raises itself
        build_outputs(tmp_path / "not-an-experiment")


def test_a_killed_helper_leaves_the_report_to_the_caller(run_dir):
    helper = ReportHelper.start()
    pid = helper.pid
    os.kill(pid, signal.SIGKILL)
    assert helper.build(run_dir, quiet=True) is None
    assert _gone(pid)


def test_a_helper_never_asked_is_reaped(run_dir):
    helper = ReportHelper.start()
    pid = helper.pid
    helper.close()
    helper.close()  # twice: nothing happens
    assert _gone(pid)


def test_no_helper_where_figures_are_drawn_by_one_process(monkeypatch):
    monkeypatch.setattr(_render.sys, "platform", "darwin")
    assert ReportHelper.start() is None


def test_expost_run_prints_what_it_printed_without_the_helper(tmp_path):
    """The command line end to end, once with the helper (2+ CPUs) and once without."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: cli\ndataset: {name: digits, options: {flatten: true}}\n"
                   "model: {name: mlp, options: {hidden: [16]}}\n"
                   "objective: {kind: emphasize, emphasized: hardest, ratio: 9}\n"
                   "regimes: [weighted, expost]\nseeds: [0, 1]\nnum_threads: 1\n"
                   "optimizer: {name: adam, lr: 0.01}\ntraining: {epochs: 2, batch_size: 128}\n")
    outs = []
    for name, taskset in (("with", []), ("without", ["taskset", "-c", "0"])):
        if taskset and subprocess.run(["which", "taskset"], capture_output=True).returncode:
            pytest.skip("taskset is not installed")
        proc = subprocess.run([*taskset, sys.executable, "-m", "expost", "run", str(cfg),
                               "--out", str(tmp_path / name)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        where = str(tmp_path / name)
        outs.append((proc.stdout.replace(where, "RUN"),
                     proc.stderr.split("Table 1:", 1)[1].replace(where, "RUN")))
    assert outs[0] == outs[1]
    assert "report_html" in outs[0][0] and "report written to" in outs[0][1]


def test_expost_run_has_the_helper_run_the_probe_and_build_the_report(tmp_path, monkeypatch):
    from expost.cli import main
    from expost.experiments import ResultStore, _probe
    from expost.report import build as build_module

    parent, real_probe = os.getpid(), _probe.probe_recall

    def only_in_the_child(*args, **kwargs):
        if os.getpid() == parent:
            raise AssertionError("the probe ran in the parent")
        return real_probe(*args, **kwargs)

    monkeypatch.setattr(_probe, "probe_recall", only_in_the_child)

    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: cli\ndataset: {name: digits, options: {flatten: true}}\n"
                   "model: {name: mlp, options: {hidden: [16]}}\n"
                   "objective: {kind: emphasize, emphasized: hardest, ratio: 9}\n"
                   "regimes: [weighted, expost]\nseeds: [0]\nnum_threads: 1\n"
                   "training: {epochs: 1, batch_size: 128}\n")
    built = []
    real = ReportHelper.build

    def spy(self, *args, **kwargs):
        built.append(real(self, *args, **kwargs))
        return built[-1]

    def here(*args, **kwargs):
        raise AssertionError("the report was built in the parent")

    monkeypatch.setattr(ReportHelper, "build", spy)
    monkeypatch.setattr(build_module, "build_outputs", here)
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert len(built) == 1 and built[0]["report_html"].is_file()
    store = ResultStore(tmp_path / "run")
    try:
        info = store.experiment_info()
    finally:
        store.close()
    assert info["emphasized"] == 8 and info["objective_note"].startswith("hardest class '8'")


# ---------------------------------------------------------------- the "hardest" probe
def _probe_arrays(seed=0, n=240, d=6, k=3):
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    x = rng.standard_normal((n, d)) + y[:, None] * 0.7
    return x[:180], y[:180].astype(np.int64), x[180:], y[180:].astype(np.int64), k


def _with_probe(**kwargs):
    """A helper started as ``expost run`` starts it, and the probe runner that asks it."""
    from expost.cli import _helper_probe
    from expost.experiments import _probe

    helper = ReportHelper.start(tasks={"probe": _probe.probe_recall}, **kwargs)
    return helper, _helper_probe(helper)


def test_the_helper_runs_the_probe_then_builds_the_report(run_dir, tmp_path):
    import numpy as np

    from expost.experiments._probe import PROBE_MODULES, probe_recall

    helper, ask = _with_probe(preload=PROBE_MODULES)
    pid = helper.pid
    for seed in (0, 1):  # more than one request before the report
        args = _probe_arrays(seed)
        got = ask(*args)
        assert got.dtype == np.float64 and got.shape == (3,)
        np.testing.assert_array_equal(got, probe_recall(*args))
    assert helper.ask("no such task", [np.zeros(2)]) is None  # refused; the helper stays
    assert helper.ask("probe", [np.array([{}])]) is None  # not sent; the helper stays
    out = helper.build(run_dir, quiet=True)
    assert _gone(pid) and out["report_html"].is_file()
    assert ask(*_probe_arrays()) is None  # gone: the caller computes it


def test_a_probe_that_fails_in_the_helper_is_left_to_the_caller(run_dir):
    import numpy as np

    helper, ask = _with_probe()
    x, _, xva, yva, k = _probe_arrays()
    one_class = np.zeros(len(x), dtype=np.int64)  # LogisticRegression refuses one class
    assert ask(x, one_class, xva, yva, k) is None
    assert helper.pid  # still there: the report is still its to build
    assert helper.build(run_dir, quiet=True)["report_html"].is_file()


def test_a_killed_helper_leaves_the_probe_to_the_caller():
    import numpy as np

    from expost.experiments._probe import probe_recall, probe_runner, run_probe

    helper, ask = _with_probe()
    pid = helper.pid
    os.kill(pid, signal.SIGKILL)
    args = _probe_arrays()
    assert ask(*args) is None
    assert _gone(pid)
    with probe_runner(ask):
        np.testing.assert_array_equal(run_probe(*args), probe_recall(*args))


def test_run_probe_asks_the_runner_first():
    import numpy as np

    from expost.experiments._probe import probe_recall, probe_runner, run_probe

    args = _probe_arrays()
    asked = []
    with probe_runner(lambda *a: asked.append(a) or np.array([7.0, 8.0, 9.0])):
        assert run_probe(*args).tolist() == [7.0, 8.0, 9.0]
    for answer in (None, np.zeros(2)):  # no answer, or not one recall per class: computed here
        with probe_runner(lambda *a, answer=answer: answer):
            np.testing.assert_array_equal(run_probe(*args), probe_recall(*args))
    assert len(asked) == 1
    np.testing.assert_array_equal(run_probe(*args), probe_recall(*args))  # no runner outside


def test_helper_messages_carry_only_float64_and_int64(tmp_path):
    import json
    import struct

    import numpy as np

    from expost.report import helper as mod

    r, w = os.pipe()
    f32 = np.arange(3, dtype=np.float32)
    i32 = np.arange(4, dtype=np.int32).reshape(2, 2).T  # not contiguous either
    os.write(w, mod._frame({"op": "x"}, [f32, i32, np.array([True, False])]))
    header, arrays = mod._recv(r)
    assert header["op"] == "x" and arrays[0].tolist() == [0.0, 1.0, 2.0]
    assert arrays[0].dtype == np.float64 and arrays[2].tolist() == [1, 0]
    assert arrays[1].tolist() == [[0, 2], [1, 3]] and arrays[1].dtype == np.int64
    with pytest.raises(TypeError, match="real or integer arrays, got object"):
        mod._frame({"op": "x"}, [np.array(["a", None], dtype=object)])
    for listed, what in (([["|O", [1]]], r"array of '\|O'"), ([["<f8", 3]], "shape 3"),
                         ("<f8", "array of '<f8', shape None"), ([["<i8"]], "shape None")):
        bad = json.dumps({"arrays": listed}).encode()
        os.write(w, struct.pack("<Q", len(bad)) + bad)
        with pytest.raises(ValueError, match=what):
            mod._recv(r)
    os.close(w)
    assert mod._recv(r) is None  # the end of the pipe
    os.close(r)


def test_a_probe_that_warns_in_the_helper_is_left_to_the_caller(run_dir, monkeypatch):
    import warnings

    import numpy as np

    from expost.experiments import _probe

    calls = []

    def warns(*args, **kwargs):  # the child runs it too, in its own memory
        calls.append(os.getpid())
        warnings.warn("did not converge", RuntimeWarning, stacklevel=2)
        return np.ones(kwargs.get("n_classes", args[-1]))

    monkeypatch.setattr(_probe, "probe_recall", warns)
    helper, ask = _with_probe()
    args = _probe_arrays()
    assert ask(*args) is None
    with warnings.catch_warnings(record=True) as caught, _probe.probe_runner(ask):
        warnings.simplefilter("always")
        assert _probe.run_probe(*args).tolist() == [1.0, 1.0, 1.0]
    assert [str(w.message) for w in caught] == ["did not converge"]  # raised in this process
    assert calls == [os.getpid()]
    assert helper.build(run_dir, quiet=True)["report_html"].is_file()


# ---------------------------------------------------------------- warming between trainings
def _decompositions_logged(monkeypatch, log):
    """Have every risk decomposition, in this process or a child forked later, append its
    pid to ``log``; and start from an empty memory of them."""
    from expost.report import diagnostics

    real = diagnostics.risk_decomposition

    def logged(*args, **kwargs):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(diagnostics, "risk_decomposition", logged)
    monkeypatch.setattr(diagnostics, "_DECOMPOSED", {})


def _html_without_time(path):
    import re

    return re.sub(r"<th>report generated</th><td[^>]*>[^<]*</td>", "", path.read_text())


def test_a_warmed_helper_decomposes_each_run_once(run_dir, tmp_path, monkeypatch):
    from expost.experiments import ResultStore

    log = tmp_path / "log"
    _decompositions_logged(monkeypatch, log)
    with ResultStore(run_dir, readonly=True) as store:
        n_runs = len(list(store.runs()))
    helper = ReportHelper.start()
    pid = helper.pid
    helper.warm(run_dir)  # no reply awaited
    helper.warm(run_dir)  # the second finds them all done
    out = helper.build(run_dir, quiet=True)
    assert _gone(pid) and out is not None
    assert log.read_text().split() == [str(pid)] * n_runs  # in the child, each run once
    here = build_outputs(run_dir, out_dir=tmp_path / "here", quiet=True, processes=1)
    assert _html_without_time(out["report_html"]) == _html_without_time(here["report_html"])


def _total(*arrays):
    import numpy as np

    return np.asarray([float(sum(a.sum() for a in arrays))])


def test_warming_with_nothing_finished_or_no_experiment_is_harmless(tmp_path):
    import numpy as np

    helper = ReportHelper.start(tasks={"total": _total})
    helper.warm(tmp_path / "not-an-experiment")  # fails quietly in the child
    helper.warm(tmp_path)  # not an experiment either
    assert helper.ask("total", [np.ones(3)]).tolist() == [3.0]  # alive, and in step
    pid = helper.pid
    helper.close()
    assert _gone(pid)
    helper.warm(tmp_path)  # closed: nothing is sent, nothing raised


def test_expost_run_warms_the_helper_between_trainings(tmp_path, monkeypatch):
    from expost.cli import main

    warmed = []
    real = ReportHelper.warm

    def spy(self, run_dir):
        warmed.append(run_dir)
        real(self, run_dir)

    monkeypatch.setattr(ReportHelper, "warm", spy)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: cli\ndataset: {name: digits, options: {flatten: true}}\n"
                   "model: {name: mlp, options: {hidden: [16]}}\n"
                   "objective: {kind: emphasize, emphasized: 3, ratio: 9}\n"
                   "regimes: [weighted, expost]\nseeds: [0, 1]\nnum_threads: 1\n"
                   "training: {epochs: 1, batch_size: 128}\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert warmed == [tmp_path / "run"] * 3  # four trainings: after each but the last
    assert (tmp_path / "run" / "report" / "report.html").is_file()


def _task_that_marks(flag, *arrays):
    """A task that says it has started (a file) before it answers."""
    import numpy as np

    flag.touch()
    return np.asarray([float(a.sum()) for a in arrays])


def test_the_caller_works_meanwhile_and_still_gets_its_answer(tmp_path):
    import functools
    import time

    import numpy as np

    flag = tmp_path / "started"
    helper = ReportHelper.start(tasks={"mark": functools.partial(_task_that_marks, flag)})
    seen = []

    def meanwhile():  # runs once the request is out: the helper starts while we wait here
        deadline = time.perf_counter() + 30
        while not flag.exists():
            assert time.perf_counter() < deadline, "the request was not sent first"
            time.sleep(0.01)
        seen.append("meanwhile")

    got = helper.ask("mark", [np.arange(3.0), np.ones(2)], meanwhile=meanwhile)
    assert seen == ["meanwhile"] and got.tolist() == [3.0, 2.0]
    assert helper.ask("mark", [np.ones(4)]).tolist() == [4.0]  # in step: the next reply is its own

    def broken():
        raise KeyError("meanwhile failed")

    pid = helper.pid
    with pytest.raises(KeyError, match="meanwhile failed"):
        helper.ask("mark", [np.ones(1)], meanwhile=broken)
    assert _gone(pid) and helper.ask("mark", [np.ones(1)]) is None  # closed: left to the caller


def test_expost_run_imports_what_training_needs_while_the_probe_runs():
    code = textwrap.dedent("""
        import sys
        from expost.cli import _helper_probe

        class Helper:
            def ask(self, task, arrays, *, meanwhile, **options):
                meanwhile()
                return "answer"

        assert "torch._dynamo" not in sys.modules
        print(_helper_probe(Helper())(1, 2, 3, 4, n_classes=3), "torch._dynamo" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["answer", "True"]


def test_warming_draws_the_theory_figure_ahead_with_the_same_bytes(run_dir, tmp_path,
                                                                    monkeypatch):
    from matplotlib.figure import Figure

    from expost.report import _data, figures

    monkeypatch.setattr(figures, "_DRAWN_AHEAD", {})
    cold = build_outputs(run_dir, out_dir=tmp_path / "cold", quiet=True, processes=1)
    assert figures._DRAWN_AHEAD == {}  # nothing is drawn ahead unless asked
    _data.warm_report(run_dir)
    assert list(figures._DRAWN_AHEAD) == [(("theory", 9.0), 130)]
    drawn = []
    real = Figure.savefig

    def counted(self, *args, **kwargs):
        drawn.append(getattr(self, "expost_key", None))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", counted)
    warm = build_outputs(run_dir, out_dir=tmp_path / "warm", quiet=True, processes=1)
    assert ("theory", 9.0) not in drawn and len(drawn) == len(
        [k for k in warm if k.startswith("figure_")]) - 1
    for key in (k for k in cold if k.startswith("figure_")):
        assert warm[key].read_bytes() == cold[key].read_bytes(), key


def test_a_figure_drawn_ahead_is_written_only_for_its_key_and_dpi(tmp_path, monkeypatch):
    from expost.report import figures

    monkeypatch.setattr(figures, "_DRAWN_AHEAD", {})

    def fig(value):
        f = figures.new_figure(figsize=(2, 1.5))
        f.add_subplot().plot([0, 1], [0, value])
        return f

    figures.draw_ahead(fig(1.0), "one")
    plain = figures.save_figure(fig(1.0), tmp_path / "plain")[0].read_bytes()
    keyed = fig(2.0)  # other pixels under the key: the PNG drawn ahead is what is written
    keyed.expost_key = "one"
    assert figures.save_figure(keyed, tmp_path / "keyed")[0].read_bytes() == plain
    other = figures.save_figure(keyed, tmp_path / "dpi", dpi=60)[0].read_bytes()
    assert other != plain  # another dpi: drawn
    unkeyed = figures.save_figure(fig(2.0), tmp_path / "unkeyed")[0].read_bytes()
    assert unkeyed != plain
