"""One SQLite results database per experiment directory, with checkpoints beside it.

Layout of an experiment directory ``RUN_DIR``::

    RUN_DIR/results.sqlite          the database (WAL journal while a writer has it open)
    RUN_DIR/checkpoints/<train_key>/ckpt-<interval>.pt
    RUN_DIR/report/                 written by expost.report.build_outputs

Tables: ``meta`` (JSON values: config, hash, provenance, objective), ``arrays``
(test labels, training prior), ``trainings`` (one row per training: status,
progress, checkpoint, timings), ``runs`` (one row per regime and seed, pointing
at its training), ``intervals`` (one row per training and interval: step,
epoch, learning rate, losses, the float16 test log-probabilities) and
``metrics`` (one row per run, split and interval: the six metrics).

Durability: the checkpoint of an interval is written first (temporary file and
``os.replace``), then the interval's rows and the training's pointer to the new
checkpoint are committed in one transaction, and only then is the previous
checkpoint deleted. A process killed at any moment leaves a database whose last
committed interval has its checkpoint on disk: resuming loses at most the
interval in progress, and SQLite's WAL keeps the file consistent.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._validation import _error, describe
from ._store_io import (
    SCHEMA,
    StoreCorruptError,
    blob_digest,
    check_version,
    connect_readonly,
    connect_writer,
    migrate,
    read_as_current,
    transaction,
    verify_database,
)
from .evaluate import decode_probabilities
from .metrics import METRICS

__all__ = ["DB_NAME", "MANIFEST", "SCHEMA_VERSION", "STATE_FILES", "ResultStore",
           "StoreCorruptError", "blob_digest", "check_store_entry", "experiment_state",
           "sweep_points", "utc_now"]

DB_NAME = "results.sqlite"
#: A sweep folder's manifest (``expost sweep``): its points, each one's folder and grid values.
MANIFEST = "sweep.json"

SCHEMA_VERSION = 2  # 2: a checksum per prediction blob (version 1 stores are migrated)
#: A training's status; ``diverged`` (a non-finite or exploding loss) and ``interrupted``
#: (stopped by the user) are kept apart from ``failed`` (an error). A rerun retries all three.
STATUSES = ("pending", "running", "finished", "failed", "diverged", "interrupted")
SPLITS = ("test", "val")
#: What holds an experiment's results and state in its directory: the database (and
#: SQLite's files beside it), the lock, and the folders of checkpoints and worker records.
#: No command writes an output file over one of them (``report/`` is rebuilt from them).
STATE_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal", ".lock",
               "checkpoints", "spool", "workers")


def experiment_state(run_dir: str | Path) -> list[tuple[str, Path]]:
    """The paths of :data:`STATE_FILES` in ``run_dir``, described, for
    :func:`expost._atomic.check_not_input`."""
    return [(f"the experiment's {name}{'' if '.' in name else ' folder'} in {str(run_dir)!r}",
             Path(run_dir) / name) for name in STATE_FILES]


def check_store_entry(path: Path) -> None:
    """Refuse a ``results.sqlite`` entry that is a folder or a link to nothing (broken, or a
    loop): either was taken for no experiment ('does not exist', or a new one started
    beside the old checkpoints)."""
    if path.is_dir() or (path.is_symlink() and not path.exists()):
        what = "a folder" if path.is_dir() else "a link to nothing (broken, or a loop)"
        raise ValueError(f"{str(path)!r} is {what}, not an expost results database; move it "
                         "away (or restore the database) and run again.")


#: Set (to any value) in the environment of worker processes (the local process pool's and
#: Ray's): constructing a store writer there raises, so that the driver stays the only writer.
WORKER_ENV = "EXPOST_WORKER"


def _refuse_writer_in_worker(path: Path) -> None:
    if os.environ.get(WORKER_ENV):
        raise RuntimeError(
            f"a worker process (pid {os.getpid()}) tried to open {str(path)!r} for writing; "
            "only the driver writes the results store (workers ship records through the spool)."
        )


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string (seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResultStore:
    """The results of one experiment directory (``RUN_DIR/results.sqlite``).

    ``ResultStore(run_dir)`` opens an existing experiment; :meth:`create` makes
    a new one. Readers (:meth:`experiment_info`, :meth:`runs`,
    :meth:`interval_records`, :meth:`probabilities`) are safe while another
    process is writing (WAL).

    Parameters
    ----------
    run_dir : str or Path
        The experiment directory.

    Raises
    ------
    FileNotFoundError
        When ``run_dir`` holds no ``results.sqlite``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> store = ResultStore.create(d, {"config": {}, "config_hash": "x"},
    ...                            arrays={"test_labels": np.array([0, 1])})
    >>> ResultStore(d).experiment_info()["config_hash"]
    'x'
    >>> store.close()
    """

    def __init__(self, run_dir: str | Path, *, readonly: bool = False, check: bool = True
                 ) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / DB_NAME
        self.readonly = readonly
        check_store_entry(self.path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"No experiment in {str(self.run_dir)!r}: {str(self.path)!r} does not exist "
                "(start one with `expost run CONFIG.yaml --out RUN_DIR`)."
            )
        if not readonly:
            _refuse_writer_in_worker(self.path)
        try:
            self._conn = connect_readonly(self.path) if readonly else connect_writer(self.path)
            check_version(self._meta_get("schema_version"), self.path, SCHEMA_VERSION)
            if readonly:
                read_as_current(self._conn)
            else:
                migrate(self._conn)
            has_hash = self._meta_get("config_hash") is not None
        except sqlite3.DatabaseError as exc:
            raise StoreCorruptError(self.path, str(exc)) from None
        except ValueError:
            self._conn.close()
            raise
        if not has_hash:
            raise FileNotFoundError(
                f"{str(self.path)!r} is not a complete expost results database "
                "(no config_hash); it was probably interrupted while being created."
            )
        if check:
            self.verify()

    # ------------------------------------------------------------------ opening
    def verify(self) -> None:
        """Check the database (``PRAGMA quick_check``) and every prediction blob's checksum.

        Raises
        ------
        StoreCorruptError
            Naming the file and what is damaged.
        """
        verify_database(self._conn, self.path)

    @classmethod
    def create(
        cls,
        run_dir: str | Path,
        info: Mapping[str, Any],
        *,
        arrays: Mapping[str, NDArray[Any]] | None = None,
    ) -> ResultStore:
        """Create the database of a new experiment and write its description.

        ``info`` becomes :meth:`experiment_info` (values must be JSON-serialisable
        and include ``config_hash``); ``arrays`` are stored as they are
        (e.g. ``test_labels``). Everything is written in one transaction, so an
        interrupted creation leaves no half-described experiment (it is redone).
        """
        if "config_hash" not in info:
            raise ValueError(_error("info", "a mapping with a 'config_hash'", describe(info)))
        run_dir = Path(run_dir)
        _refuse_writer_in_worker(run_dir / DB_NAME)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / DB_NAME
        conn = connect_writer(path)
        try:
            conn.executescript(SCHEMA)
            with transaction(conn):
                if conn.execute("SELECT 1 FROM meta WHERE key='config_hash'").fetchone():
                    raise FileExistsError(
                        f"{str(path)!r} already holds an experiment; open it with ResultStore()."
                    )
                rows = {"schema_version": SCHEMA_VERSION, "created_at": utc_now(), **info}
                conn.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [(k, json.dumps(v)) for k, v in rows.items()],
                )
                for name, arr in (arrays or {}).items():
                    a = np.ascontiguousarray(arr)
                    conn.execute(
                        "INSERT OR REPLACE INTO arrays (name, dtype, shape, data) VALUES (?,?,?,?)",
                        (name, a.dtype.str, json.dumps(list(a.shape)), a.tobytes()),
                    )
        finally:
            conn.close()
        return cls(run_dir)

    def close(self) -> None:
        """Close the connection (further calls fail).

        A writer leaves the database in rollback-journal mode when it is the last
        connection (the WAL folded in, no ``-wal``/``-shm`` files), so that readers
        open it read-only without creating files, in a read-only folder too.
        """
        if not self.readonly:
            try:
                self._conn.execute("PRAGMA journal_mode=DELETE")  # a no-op while others read
            except sqlite3.Error:
                pass
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ meta
    def _meta_get(self, key: str) -> Any:
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        except sqlite3.OperationalError:  # no meta table: an empty database file
            return None
        return None if row is None else self._meta_value(key, row[0])

    def _meta_value(self, key: str, text: str) -> Any:
        try:
            return json.loads(text)
        except (TypeError, ValueError) as exc:  # edited by hand, or damaged
            raise StoreCorruptError(self.path, f"its {key!r} entry is not JSON: {exc}") from None

    def experiment_info(self) -> dict[str, Any]:
        """The experiment's description.

        Keys: ``config`` (the validated config as a plain dict), ``config_hash``,
        ``created_at`` (ISO string), ``versions`` (expost, python, numpy, torch,
        platform), ``git_commit`` (str or None), ``utility`` (the normalised
        utility matrix used for evaluation, a list of lists), ``class_names``,
        ``emphasized`` (int or None), and whatever else the harness recorded
        (training prior, the recall class, data sizes, ...).
        """
        rows = self._conn.execute("SELECT key, value FROM meta").fetchall()
        info = {k: self._meta_value(k, v) for k, v in rows}
        for key in ("versions", "git_commit", "utility", "class_names", "emphasized", "config"):
            info.setdefault(key, None)
        return info

    def array(self, name: str) -> NDArray[Any]:
        """A stored array (e.g. ``"test_labels"``, ``"train_prior"``)."""
        row = self._conn.execute(
            "SELECT dtype, shape, data FROM arrays WHERE name=?", (name,)
        ).fetchone()
        if row is None:
            have = [r[0] for r in self._conn.execute("SELECT name FROM arrays")]
            raise KeyError(f"No array {name!r} in {str(self.path)!r}; stored arrays: {have}.")
        dtype, shape, data = row
        try:
            kind = np.dtype(dtype)
            if kind.kind not in "biuf":  # an object dtype would be no array of numbers
                raise ValueError(f"dtype {dtype!r} is not numeric")
            return np.frombuffer(data, dtype=kind).reshape(json.loads(shape)).copy()
        except (TypeError, ValueError) as exc:
            raise StoreCorruptError(self.path, f"the stored array {name!r}: {exc}") from None

    # ------------------------------------------------------------------ plan
    def register(
        self, trainings: Sequence[Mapping[str, Any]], runs: Sequence[Mapping[str, Any]]
    ) -> None:
        """Record the planned trainings and runs (existing rows are kept as they are).

        ``trainings``: mappings with train_key, kind, seed, n_intervals, total_steps;
        ``runs``: mappings with run_id, regime, seed, train_key.
        """
        with transaction(self._conn):
            self._conn.executemany(
                "INSERT OR IGNORE INTO trainings (train_key, kind, seed, n_intervals, total_steps)"
                " VALUES (:train_key, :kind, :seed, :n_intervals, :total_steps)",
                [dict(t) for t in trainings],
            )
            self._conn.executemany(
                "INSERT OR IGNORE INTO runs (run_id, regime, seed, train_key)"
                " VALUES (:run_id, :regime, :seed, :train_key)",
                [dict(r) for r in runs],
            )

    # ------------------------------------------------------------------ writers
    def training(self, train_key: str) -> dict[str, Any]:
        """The row of one training (status, progress, checkpoint, timings)."""
        cur = self._conn.execute("SELECT * FROM trainings WHERE train_key=?", (train_key,))
        row = cur.fetchone()
        if row is None:
            raise KeyError(f"No training {train_key!r} in {str(self.path)!r}.")
        return dict(zip([c[0] for c in cur.description], row, strict=True))

    def trainings(self) -> list[dict[str, Any]]:
        """Every training row, in insertion order."""
        cur = self._conn.execute("SELECT * FROM trainings ORDER BY rowid")
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def start_training(self, train_key: str) -> None:
        """Mark a training running (first start or resume)."""
        with transaction(self._conn):
            self._conn.execute(
                "UPDATE trainings SET status='running', attempts=attempts+1, error=NULL,"
                " started_at=COALESCE(started_at, ?) WHERE train_key=?",
                (utc_now(), train_key),
            )

    def commit_interval(
        self,
        train_key: str,
        interval: Mapping[str, Any],
        test_log_probs: NDArray[np.float16],
        metrics: Sequence[tuple[str, str, Mapping[str, float]]],
        *,
        checkpoint: str | None,
        timings: Mapping[str, float],
    ) -> None:
        """Commit one interval atomically: its rows, progress and checkpoint pointer.

        Parameters
        ----------
        interval : mapping
            interval, step, epoch, lr, train_loss, val_loss, train_seconds, eval_seconds.
        test_log_probs : float16 ndarray of shape (n_test, n_classes)
        metrics : sequence of (run_id, split, {metric: value})
        checkpoint : str or None
            The checkpoint file (relative to the run directory) holding the
            state right after this interval.
        timings : mapping
            Seconds to add to the training's wall/train/eval/io accumulators.
        """
        lp = np.ascontiguousarray(test_log_probs, dtype=np.float16)
        row = dict(interval)
        blob = lp.tobytes()
        row.update(train_key=train_key, n_test=lp.shape[0], n_classes=lp.shape[1],
                   test_log_probs=blob, checksum=blob_digest(blob))
        cols = ", ".join(METRICS)
        marks = ", ".join("?" for _ in METRICS)
        with transaction(self._conn):
            self._conn.execute(
                "INSERT OR REPLACE INTO intervals (train_key, interval, step, epoch, lr, train_loss,"
                " val_loss, train_seconds, eval_seconds, n_test, n_classes, test_log_probs, checksum)"
                " VALUES (:train_key, :interval, :step, :epoch, :lr, :train_loss, :val_loss,"
                " :train_seconds, :eval_seconds, :n_test, :n_classes, :test_log_probs, :checksum)",
                row,
            )
            self._conn.executemany(
                f"INSERT OR REPLACE INTO metrics (run_id, split, interval, {cols})"
                f" VALUES (?, ?, ?, {marks})",
                [(rid, split, int(row["interval"]), *(float(m[k]) for k in METRICS))
                 for rid, split, m in metrics],
            )
            self._conn.execute(
                "UPDATE trainings SET done_intervals=?, step=?, checkpoint=?,"
                " wall_seconds=wall_seconds+?, train_seconds=train_seconds+?,"
                " eval_seconds=eval_seconds+?, io_seconds=io_seconds+? WHERE train_key=?",
                (int(row["interval"]) + 1, int(row["step"]), checkpoint,
                 float(timings.get("wall", 0.0)), float(timings.get("train", 0.0)),
                 float(timings.get("eval", 0.0)), float(timings.get("io", 0.0)), train_key),
            )

    def ingest_interval(
        self,
        train_key: str,
        interval: Mapping[str, Any],
        test_log_probs: NDArray[np.float16],
        metrics: Sequence[tuple[str, str, Mapping[str, float]]],
        *,
        checkpoint: str | None,
        timings: Mapping[str, float],
    ) -> bool:
        """Commit an interval a worker shipped (:mod:`~expost.experiments.spool`), exactly once.

        A replay of an interval already stored with the same predictions (a record
        ingested twice, or recomputed identically after a retry) is a no-op and
        returns False; otherwise it is :meth:`commit_interval` (``INSERT OR
        REPLACE``: a recomputed interval replaces the stored one) and returns True.
        """
        lp = np.ascontiguousarray(test_log_probs, dtype=np.float16)
        row = self._conn.execute(
            "SELECT checksum FROM intervals WHERE train_key=? AND interval=?",
            (train_key, int(interval["interval"]))).fetchone()
        if row is not None and row[0] == blob_digest(lp.tobytes()):
            return False
        self.commit_interval(train_key, interval, lp, metrics, checkpoint=checkpoint,
                             timings=timings)
        return True

    def reopen_training(self, train_key: str) -> None:
        """Mark a training ``pending`` from the start (its final checkpoint is lost: it is
        trained again; its committed intervals are overwritten as it goes)."""
        with transaction(self._conn):
            self._conn.execute(
                "UPDATE trainings SET status='pending', checkpoint=NULL, done_intervals=0,"
                " step=0, finished_at=NULL WHERE train_key=?", (train_key,))

    def finish_training(self, train_key: str, *, extra_wall: float = 0.0) -> None:
        """Mark a training (and so its runs) finished."""
        with transaction(self._conn):
            self._conn.execute(
                "UPDATE trainings SET status='finished', finished_at=?,"
                " wall_seconds=wall_seconds+? WHERE train_key=?",
                (utc_now(), float(extra_wall), train_key),
            )

    def fail_training(self, train_key: str, error: str, *, status: str = "failed") -> None:
        """Mark a training ``failed``, ``diverged`` or ``interrupted`` with its message (a
        rerun retries it)."""
        if status not in ("failed", "diverged", "interrupted"):
            raise ValueError(_error("status", "'failed', 'diverged' or 'interrupted'",
                                    describe(status)))
        with transaction(self._conn):
            self._conn.execute(
                "UPDATE trainings SET status=?, error=? WHERE train_key=?",
                (status, error[-4000:], train_key),
            )

    # ------------------------------------------------------------------ readers
    def runs(self) -> list[dict[str, Any]]:
        """One dict per run: run_id, regime, seed, status, train_key, timings.

        Timings (``wall_seconds``, ``train_seconds``, ``eval_seconds``) and
        status are those of the run's training, shared by the runs that are
        views of one training (``expost`` and ``unweighted_raw``).
        """
        cur = self._conn.execute(
            "SELECT r.run_id, r.regime, r.seed, t.status, r.train_key, t.started_at,"
            " t.finished_at, t.wall_seconds, t.train_seconds, t.eval_seconds"
            " FROM runs r JOIN trainings t ON r.train_key = t.train_key ORDER BY r.rowid"
        )
        names = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(names, row, strict=True))
            for k in ("wall_seconds", "train_seconds", "eval_seconds"):
                d[k] = None if d[k] is None else float(d[k])
            out.append(d)
        return out

    def interval_records(self, split: str = "test") -> list[dict[str, Any]]:
        """One dict per (run, interval) with run_id, regime, seed, interval, step, epoch and
        one float per metric of :data:`~expost.experiments.metrics.METRICS`."""
        if split not in SPLITS:
            raise ValueError(_error("split", f"one of {SPLITS}", describe(split)))
        cols = ", ".join(f"m.{k}" for k in METRICS)
        cur = self._conn.execute(
            f"SELECT m.run_id, r.regime, r.seed, m.interval, i.step, i.epoch, {cols}"
            " FROM metrics m JOIN runs r ON m.run_id = r.run_id"
            " JOIN intervals i ON i.train_key = r.train_key AND i.interval = m.interval"
            " WHERE m.split = ? ORDER BY r.rowid, m.interval",
            (split,),
        )
        names = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(names, row, strict=True))
            try:
                for k in METRICS:
                    d[k] = float("nan") if d[k] is None else float(d[k])
                d["epoch"] = float(d["epoch"])
            except (TypeError, ValueError) as exc:
                raise StoreCorruptError(self.path, f"run {d['run_id']!r}, interval "
                                        f"{d['interval']}: a stored metric is not a number "
                                        f"({exc})") from None
            out.append(d)
        return out

    def intervals(self, train_key: str | None = None) -> list[dict[str, Any]]:
        """Per-interval training rows (no probabilities): step, epoch, lr, losses, seconds."""
        q = ("SELECT train_key, interval, step, epoch, lr, train_loss, val_loss, train_seconds,"
             " eval_seconds FROM intervals")
        args: tuple[Any, ...] = ()
        if train_key is not None:
            q += " WHERE train_key=?"
            args = (train_key,)
        cur = self._conn.execute(q + " ORDER BY train_key, interval", args)
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def stored_log_probs(self, train_key: str, interval: int) -> NDArray[np.float16]:
        """The stored float16 test log-probabilities of one training at one interval."""
        row = self._conn.execute(
            "SELECT n_test, n_classes, test_log_probs, checksum FROM intervals"
            " WHERE train_key=? AND interval=?",
            (train_key, int(interval)),
        ).fetchone()
        if row is None:
            raise KeyError(f"No interval {interval} of training {train_key!r} is stored.")
        n, m, blob, digest = row
        return self._decode_blob(train_key, interval, n, m, blob, digest).copy()

    def _decode_blob(self, key: str, interval: int, n: int, m: int, blob: bytes,
                     digest: str | None) -> NDArray[np.float16]:
        """A prediction blob as an (n, m) float16 array, its checksum verified."""
        if (digest is not None and digest != blob_digest(blob)) or len(blob) != 2 * n * m:
            raise StoreCorruptError(self.path, f"the stored predictions of {key} interval "
                                               f"{interval} do not match their checksum")
        return np.frombuffer(blob, dtype=np.float16).reshape(n, m)

    def probabilities(self, train_key: str, interval: int) -> NDArray[np.float64]:
        """The test-set probabilities of one training at one interval, decoded to float64
        exactly as the stored metrics were computed from them."""
        return decode_probabilities(self.stored_log_probs(train_key, interval))

    def iter_probabilities(self) -> Iterator[tuple[str, int, int, float, NDArray[np.float64]]]:
        """``(train_key, interval, step, epoch, q)`` for every stored interval."""
        cur = self._conn.execute(
            "SELECT train_key, interval, step, epoch, n_test, n_classes, test_log_probs, checksum"
            " FROM intervals ORDER BY train_key, interval"
        )
        for key, interval, step, epoch, n, m, blob, digest in cur:
            s = self._decode_blob(key, interval, n, m, blob, digest)
            yield key, int(interval), int(step), float(epoch), decode_probabilities(s)


def sweep_points(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The points of a sweep folder's manifest: ``{"dir", "values", "config_hash"}`` each.

    Checked, since a command then reads and writes where they say: at least one
    point; each one's ``dir`` a folder name (no separator, not ``.`` or ``..``), as
    :func:`expand_grid` names them, so that nothing outside the sweep folder (or
    ``expost table --out``) is read or written; its ``values`` a mapping of names to
    values. Anything else is a ValueError naming the manifest and the point.
    """
    path = Path(sweep_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        points = manifest["points"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{str(path)!r} is not a sweep manifest ({exc}).") from None
    if not isinstance(points, list) or not points:
        raise ValueError(f"{str(path)!r} is not a sweep manifest: expected a non-empty list of "
                         f"points under 'points', got {json.dumps(points)[:80]}.")
    for n, point in enumerate(points):
        folder = point.get("dir") if isinstance(point, dict) else None
        values = point.get("values") if isinstance(point, dict) else None
        if (not isinstance(folder, str) or folder in ("", ".", "..") or "/" in folder
                or "\\" in folder or "\0" in folder):
            raise ValueError(f"{str(path)!r}: point {n} must name its folder inside the sweep "
                             f"(a folder name under 'dir'), got {json.dumps(point)[:120]}.")
        if not isinstance(values, dict):
            raise ValueError(f"{str(path)!r}: point {n} must give its grid values as a mapping "
                             f"under 'values', got {json.dumps(point)[:120]}.")
    return points
