"""A report's figures drawn by forked processes: the same files, and every failure of a child
left to the parent."""

from __future__ import annotations

import os
import sys
import time

import pytest

from expost.report import _render, build_outputs
from expost.report._render import render_figures, report_processes
from expost.report.figures import new_figure
from test_report_data import FakeStore

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks on Linux only")


def _spec(name, value, calls=None, *, fail_in_child=False, hang_in_child=False, parent=None,
          folder=None):
    def build():
        if calls is not None:
            calls.append((os.getpid(), name))
        if os.getpid() != parent and fail_in_child:
            raise RuntimeError("a child fails")
        if os.getpid() != parent and hang_in_child:
            (folder / f".{name}.png.half.tmp").write_bytes(b"half a PNG")  # killed mid-write
            time.sleep(3600)
        fig = new_figure(figsize=(2, 1.5))
        ax = fig.add_subplot()
        ax.plot([0, 1, 2], [0, value, value * value])
        ax.set_title(name)
        return fig
    return (name, f"caption {name}", build)


def _forks(monkeypatch):
    """Record the pid of every child os.fork makes in this process."""
    pids = []
    real = os.fork

    def fork():
        pid = real()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(_render.os, "fork", fork)
    return pids


def _reaped(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("processes", [2, 3, 4])
def test_forked_processes_write_the_same_files_as_one(tmp_path, monkeypatch, processes):
    pids = _forks(monkeypatch)
    specs = [_spec(f"f{i}", i + 1.0) for i in range(7)]
    one = render_figures(specs, tmp_path / "one", processes=1)
    assert pids == []
    many = render_figures(specs, tmp_path / "many", processes=processes, pdf=True)
    assert len(pids) == processes - 1 and all(_reaped(p) for p in pids)
    assert [(n, c) for n, c, _ in many] == [(n, c) for n, c, _ in one] == [(s[0], s[1]) for s in specs]
    assert [paths[0].name for _, _, paths in many] == [f"f{i}.png" for i in range(7)]
    assert all(paths[1].suffix == ".pdf" and paths[1].exists() for _, _, paths in many)
    pngs = {k: v for k, v in _files(tmp_path / "many").items() if k.endswith(".png")}
    assert pngs == _files(tmp_path / "one")
    assert not [p for p in (tmp_path / "many").iterdir() if p.name.startswith(".")]  # no temp files


def test_a_failing_child_leaves_its_figures_to_the_parent(tmp_path, monkeypatch):
    pids = _forks(monkeypatch)
    parent, calls = os.getpid(), []
    specs = [_spec(f"f{i}", i + 1.0, calls, fail_in_child=True, parent=parent) for i in range(5)]
    out = render_figures(specs, tmp_path / "figs", processes=2)
    assert len(pids) == 1 and _reaped(pids[0])
    # the parent drew what it took from the queue, and again what the child took and failed
    assert sorted(name for pid, name in calls if pid == parent) == ["f0", "f1", "f2", "f3", "f4"]
    assert all(paths[0].exists() for _, _, paths in out)
    assert _files(tmp_path / "figs") == _files_of_one(tmp_path, specs)


def _files_of_one(tmp_path, specs):
    render_figures(specs, tmp_path / "reference", processes=1)
    return _files(tmp_path / "reference")


def test_a_hung_child_is_killed_and_its_figures_drawn_here(tmp_path, monkeypatch):
    pids = _forks(monkeypatch)
    monkeypatch.setattr(_render, "CHILD_PATIENCE_SECONDS", 1.0)
    parent = os.getpid()
    folder = tmp_path / "figs"
    specs = [_spec(f"f{i}", i + 1.0, hang_in_child=True, parent=parent, folder=folder)
             for i in range(4)]
    started = time.perf_counter()
    render_figures(specs, folder, processes=2)
    assert time.perf_counter() - started < 30
    assert len(pids) == 1 and _reaped(pids[0])
    # the child's half-written temp file is gone, every figure whole
    assert sorted(_files(folder)) == ["f0.png", "f1.png", "f2.png", "f3.png"]
    assert _files(folder) == _files_of_one(tmp_path, specs)


def test_an_error_in_the_parent_stops_the_children(tmp_path, monkeypatch):
    pids = _forks(monkeypatch)
    parent = os.getpid()

    def broken():
        if os.getpid() == parent:
            raise ValueError("the parent's figure is broken")
        time.sleep(3600)

    specs = [_spec("f0", 1.0), ("f1", "c", broken), ("f2", "c", broken), ("f3", "c", broken)]
    with pytest.raises(ValueError, match="parent's figure is broken"):
        render_figures(specs, tmp_path / "figs", processes=3)
    assert len(pids) == 2 and all(_reaped(p) for p in pids)


def test_the_number_of_processes(monkeypatch):
    assert 1 <= report_processes() <= _render.MAX_PROCESSES
    assert report_processes(3) == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="`processes` must be a positive integer"):
            report_processes(bad)
    monkeypatch.setattr(_render.sys, "platform", "darwin")
    assert report_processes(3) == 1  # no fork off Linux


def test_a_report_drawn_by_several_processes_is_the_same(tmp_path, monkeypatch):
    pids = _forks(monkeypatch)
    one = build_outputs(FakeStore(tmp_path / "a"), quiet=True, n_boot=50, processes=1)
    assert pids == []
    two = build_outputs(FakeStore(tmp_path / "b"), quiet=True, n_boot=50, processes=2)
    assert len(pids) == 1 and _reaped(pids[0])
    figures = sorted(k for k in one if k.startswith("figure_"))
    assert len(figures) >= 5 and figures == sorted(k for k in two if k.startswith("figure_"))
    for key in figures:
        assert one[key].read_bytes() == two[key].read_bytes(), key


def test_late_work_runs_here_while_a_child_takes_the_queue(tmp_path, monkeypatch):
    pids = _forks(monkeypatch)
    parent, calls = os.getpid(), []
    folder = tmp_path / "figs"
    specs = [_spec(f"f{i}", i + 1.0, calls) for i in range(6)]

    def late():  # busy until the child has drawn the whole queue (f0-f5)
        deadline = time.perf_counter() + 60
        while not all((folder / f"f{i}.png").exists() for i in range(6)):
            assert time.perf_counter() < deadline, "the child did not take the queue"
            time.sleep(0.01)
        return [_spec("late0", 7.0, calls), _spec("late1", 8.0, calls)]

    out = render_figures(specs, folder, processes=2, late=late)
    assert len(pids) == 1 and _reaped(pids[0])
    # this process drew the late figures; the child everything queued
    assert [name for pid, name in calls if pid == parent] == ["late0", "late1"]
    assert [n for n, _, _ in out] == [f"f{i}" for i in range(6)] + ["late0", "late1"]
    reference = [*specs, _spec("late0", 7.0), _spec("late1", 8.0)]
    assert _files(folder) == _files_of_one(tmp_path, reference)


def test_this_process_takes_from_the_queue_after_its_late_work(tmp_path, monkeypatch):
    pids = _forks(monkeypatch)
    parent, calls = os.getpid(), []
    folder = tmp_path / "figs"
    # every figure takes three seconds in the child and none here: this process, done
    # with its late work at once, takes the rest of the queue (dealt out in fixed
    # shares, it would have drawn only two of the four)
    specs = [(name, "c", _slow_in_child(name, parent, calls)) for name in ("f0", "f1", "f2", "f3")]
    out = render_figures(specs, folder, processes=2, late=list)
    assert len(pids) == 1 and _reaped(pids[0])
    assert len([name for pid, name in calls if pid == parent]) == 3  # the child took one
    assert [n for n, _, _ in out] == ["f0", "f1", "f2", "f3"]
    assert all(paths[0].exists() for _, _, paths in out)


def _slow_in_child(name, parent, calls):
    build = _spec(name, 2.0, calls)[2]

    def slow():
        if os.getpid() != parent:
            time.sleep(3.0)
        return build()
    return slow


def test_late_work_that_fails_stops_the_children(tmp_path, monkeypatch):
    pids = _forks(monkeypatch)

    def late():
        raise ValueError("the late work failed")

    specs = [_spec(f"f{i}", i + 1.0) for i in range(4)]
    with pytest.raises(ValueError, match="late work failed"):
        render_figures(specs, tmp_path / "figs", processes=3, late=late)
    assert len(pids) == 2 and all(_reaped(p) for p in pids)


def test_late_figures_without_children(tmp_path, monkeypatch):
    pids = _forks(monkeypatch)
    specs = [_spec("f0", 1.0)]
    out = render_figures(specs, tmp_path / "figs", processes=4, late=lambda: [_spec("g", 2.0)])
    assert pids == []  # one queued figure or none: nothing to share
    assert [n for n, _, _ in out] == ["f0", "g"]
    assert sorted(_files(tmp_path / "figs")) == ["f0.png", "g.png"]
