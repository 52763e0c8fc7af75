"""Interval records from workers to the driver: the spool on the experiment's storage.

A worker (the local process pool's or a Ray task) runs the same training loop
as a sequential run (:func:`~expost.experiments.train.run_training`), but its
``setup.store`` is a :class:`SpoolSink`, never the SQLite store: each interval
becomes two files on the experiment's storage (:mod:`~expost.experiments.storage`)

* ``spool/<train_key>/i<interval>.npz``: the float16 test log-probabilities
  (read back with ``allow_pickle=False``), then
* ``spool/<train_key>/i<interval>.json``: the interval row, the metrics of its
  runs, the timings and the pointer to the interval's checkpoint.

Both are written atomically, the JSON last (it marks the record complete).
The order in the worker is: checkpoint written (and uploaded to a remote
storage), record written, then the previous checkpoint deleted. The record is
the worker's checkpoint pointer: a worker killed before its record is written
is retried from the previous record's checkpoint and recomputes the interval.

The driver alone opens the store for writing. :func:`ingest` commits each
complete record with :meth:`~expost.experiments.store.ResultStore.ingest_interval`
(keyed by ``(train_key, interval)``: a replay is a no-op) and then deletes its
files; a driver killed in between ingests the same record again on the rerun.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .storage import Storage

__all__ = ["SpoolSink", "clear_spool", "ingest", "latest_record"]

_RECORD = re.compile(r"^i(\d{5,})\.json$")


def _dir(train_key: str) -> str:
    return f"spool/{train_key}"


def _record_names(storage: Storage, train_key: str) -> list[tuple[int, str]]:
    out = []
    for name in storage.listdir(_dir(train_key)):
        m = _RECORD.match(name)
        if m:
            out.append((int(m.group(1)), name))
    return sorted(out)


def _read_record(storage: Storage, train_key: str, name: str
                 ) -> tuple[dict[str, Any], NDArray[np.float16]]:
    meta = json.loads(storage.read_bytes(f"{_dir(train_key)}/{name}"))
    npz = storage.read_bytes(f"{_dir(train_key)}/{name[:-5]}.npz")
    with np.load(io.BytesIO(npz), allow_pickle=False) as arrays:
        lp = np.asarray(arrays["test_log_probs"], dtype=np.float16)
    return meta, lp


def latest_record(storage: Storage, train_key: str) -> dict[str, Any] | None:
    """The JSON part of the last complete record of a training still in the spool."""
    names = _record_names(storage, train_key)
    if not names:
        return None
    return dict(json.loads(storage.read_bytes(f"{_dir(train_key)}/{names[-1][1]}")))


def ingest(store: Any, storage: Storage, train_key: str) -> list[dict[str, Any]]:
    """Commit the complete records of ``train_key`` in the spool to ``store`` (the driver's
    writer), oldest first, deleting each after its commit; return what was read (each
    record's JSON part, replays included)."""
    out = []
    for _, name in _record_names(storage, train_key):
        meta, lp = _read_record(storage, train_key, name)
        metrics = [(rid, split, m) for rid, split, m in meta["metrics"]]
        store.ingest_interval(train_key, meta["interval"], lp, metrics,
                              checkpoint=meta["checkpoint"], timings=meta["timings"])
        storage.remove(f"{_dir(train_key)}/{name}")
        storage.remove(f"{_dir(train_key)}/{name[:-5]}.npz")
        out.append(meta)
    return out


def clear_spool(storage: Storage, train_key: str) -> None:
    """Remove what is left of a training's spool folder (incomplete records of a dead worker)."""
    storage.remove_tree(_dir(train_key))


class SpoolSink:
    """The store a worker's training loop writes to: records in the spool, rows in memory.

    It offers the methods :func:`~expost.experiments.train.run_training` calls on
    ``setup.store``. ``rows`` are the training rows the driver sent (the job's
    own and, for MetaCost, its base's); the job's row is moved forward to the
    last record a previous attempt left in the spool, so that a retried worker
    resumes from that record's checkpoint. ``ckpt_root`` is where the loop
    writes checkpoints (the storage's folder itself on a path; a local scratch
    folder for a remote storage, uploaded before each record).
    """

    def __init__(self, storage: Storage, rows: Mapping[str, Mapping[str, Any]],
                 runs: Sequence[Mapping[str, Any]], ckpt_root: Path) -> None:
        self.storage = storage
        self.rows = {k: dict(v) for k, v in rows.items()}
        self._runs = [dict(r) for r in runs]
        self.ckpt_root = ckpt_root
        self.status: dict[str, tuple[str, str | None]] = {}
        for key, row in self.rows.items():
            last = latest_record(storage, key)
            if last is not None and int(last["interval"]["interval"]) + 1 > row["done_intervals"]:
                row.update(done_intervals=int(last["interval"]["interval"]) + 1,
                           step=int(last["interval"]["step"]), checkpoint=last["checkpoint"])

    # ------------------------------------------------------------------ what the loop reads
    def training(self, train_key: str) -> dict[str, Any]:
        try:
            return dict(self.rows[train_key])
        except KeyError:
            raise KeyError(f"The worker was not sent the training {train_key!r}.") from None

    def runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._runs]

    # ------------------------------------------------------------------ what the loop writes
    def start_training(self, train_key: str) -> None:
        self.rows[train_key]["status"] = "running"

    def commit_interval(self, train_key: str, interval: Mapping[str, Any],
                        test_log_probs: NDArray[np.float16],
                        metrics: Sequence[tuple[str, str, Mapping[str, float]]], *,
                        checkpoint: str | None, timings: Mapping[str, float]) -> None:
        """Upload the checkpoint (remote storage), write the record, move the pointer."""
        if checkpoint is not None and self.storage.remote:
            self.storage.upload(self.ckpt_root / checkpoint, checkpoint)
        k = int(interval["interval"])
        buf = io.BytesIO()
        np.savez(buf, test_log_probs=np.ascontiguousarray(test_log_probs, dtype=np.float16))
        base = f"{_dir(train_key)}/i{k:05d}"
        self.storage.write_bytes(f"{base}.npz", buf.getvalue())
        record = {"train_key": train_key, "interval": dict(interval),
                  "metrics": [[rid, split, dict(m)] for rid, split, m in metrics],
                  "checkpoint": checkpoint, "timings": dict(timings)}
        self.storage.write_bytes(f"{base}.json", json.dumps(record).encode())
        row = self.rows[train_key]
        previous = row["checkpoint"]
        row.update(done_intervals=k + 1, step=int(interval["step"]), checkpoint=checkpoint)
        if self.storage.remote and previous and previous != checkpoint:
            self.storage.remove(previous)

    def finish_training(self, train_key: str, *, extra_wall: float = 0.0) -> None:
        self.rows[train_key]["status"] = "finished"
        self.status[train_key] = ("finished", None)

    def fail_training(self, train_key: str, error: str, *, status: str = "failed") -> None:
        self.rows[train_key]["status"] = status
        self.status[train_key] = (status, error)

    def reopen_training(self, train_key: str) -> None:
        raise RuntimeError(
            f"the final checkpoint of {train_key!r} is missing from the storage "
            f"{self.storage.location!r}; rerun the command: the driver trains it again.")
