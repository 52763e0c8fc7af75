"""Tiny experiments and store comparisons shared by the backend and sweep tests."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

#: Two seeds, three trainings each (MetaCost waits for its base): six units of work.
TINY = {
    "name": "tiny",
    "dataset": {"name": "digits", "options": {"flatten": True}},
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "objective": {"kind": "emphasize", "emphasized": 3, "ratio": 9},
    "regimes": ["weighted", "expost", "metacost"],
    "seeds": [0, 1],
    "optimizer": {"name": "adam", "lr": 0.01},
    "training": {"epochs": 2, "batch_size": 256},
    "num_threads": 1,
}

#: One training with many short intervals: a worker can be killed in the middle of it.
LONG = {**TINY, "name": "long", "regimes": ["weighted"], "seeds": [0],
        "training": {"epochs": 14, "batch_size": 32, "checkpoint_every": 1}}


def dump(run_dir: str | Path) -> dict[str, list[tuple]]:
    """Everything a result depends on: every interval (with its predictions' checksum), every
    metric, every training's status and progress (read-only)."""
    conn = sqlite3.connect(f"file:{Path(run_dir) / 'results.sqlite'}?mode=ro", uri=True)
    try:
        return {
            "intervals": conn.execute(
                "SELECT train_key, interval, step, epoch, lr, train_loss, val_loss, n_test,"
                " n_classes, checksum FROM intervals ORDER BY train_key, interval").fetchall(),
            "metrics": conn.execute("SELECT * FROM metrics ORDER BY run_id, split, interval")
            .fetchall(),
            "trainings": conn.execute(
                "SELECT train_key, status, done_intervals, step FROM trainings ORDER BY train_key"
            ).fetchall(),
        }
    finally:
        conn.close()


def integrity(run_dir: str | Path) -> str:
    conn = sqlite3.connect(f"file:{Path(run_dir) / 'results.sqlite'}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def wait_for(predicate, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def committed(run_dir: str | Path) -> int:
    """Intervals the store holds (0 while it does not exist yet)."""
    path = Path(run_dir) / "results.sqlite"
    if not path.is_file():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM intervals").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
