"""Progress that streams: plain timestamped lines when stderr is not a terminal."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

from rich.console import Console

from expost.experiments import progress, runners
from expost.experiments.progress import LogReporter, RichReporter
from expost.experiments.runners import run_experiment

TINY = {"name": "tiny", "dataset": {"name": "digits", "seed": 0, "options": {"flatten": True}},
        "model": {"name": "mlp", "options": {"hidden": [8]}},
        "objective": {"kind": "emphasize", "emphasized": 3, "ratio": 9},
        "regimes": ["weighted", "expost"], "seeds": [0],
        "training": {"epochs": 2, "batch_size": 256}, "num_threads": 1}


class Pipe(io.StringIO):
    """A stderr that is not a terminal, recording when each write happened."""

    def __init__(self):
        super().__init__()
        self.writes = []

    def write(self, text):
        self.writes.append(text)
        return super().write(text)


def test_a_pipe_gets_one_timestamped_line_per_interval(tmp_path, monkeypatch):
    pipe = Pipe()
    monkeypatch.setattr(runners.sys, "stderr", pipe)
    run_experiment(TINY, output_dir=tmp_path / "r", stream=io.StringIO())
    lines = pipe.getvalue().splitlines()
    assert lines[0].split()[:3] == ["training", "interval", "step"] and lines[0].endswith("time")
    rows = [ln for ln in lines[1:] if re.search(r"\d+/2 ", ln)]
    assert len(rows) == 4  # two trainings x two intervals, each written as it ended
    assert all(re.search(r" \d\d:\d\d:\d\d$", ln) for ln in rows)
    assert all(len(ln) == len(lines[0]) for ln in rows)  # fixed columns, nothing cut at 80
    assert len(lines[0]) > 80


def test_a_terminal_gets_the_live_view(monkeypatch):
    tty = SimpleNamespace(isatty=lambda: True)
    monkeypatch.setattr(progress.sys, "stderr", tty)
    monkeypatch.setattr(progress, "RichReporter", lambda n_trainings: ("rich", n_trainings))
    assert progress._reporter(False, None, 10) == ("rich", 10)
    assert isinstance(progress._reporter(True, io.StringIO(), 10), LogReporter)
    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    assert isinstance(progress._reporter(False, None, 10), LogReporter)


def test_live_view_shows_training_k_of_n_regimes_seed_and_eta():
    out = io.StringIO()
    rich = RichReporter(console=Console(file=out, width=250, force_terminal=False), n_trainings=4)
    job = SimpleNamespace(train_key="unweighted-s3", seed=3,
                          runs=(("expost-s3", "expost"), ("unweighted_raw-s3", "unweighted_raw")))
    rich.start(job, 30, 0)
    rich.interval(job, {"interval": 4, "n_intervals": 30, "train_loss": 0.5, "val_loss": 0.6,
                        "weighted_loss": 0.4321, "lr": 1e-3, "regime": "expost"})
    rich.close()
    text = out.getvalue()
    assert "training 1/4: unweighted-s3 (expost, unweighted_raw, seed 3)" in text
    assert "ETA" in text and "5/30" in text
