"""Opening, checking and migrating the results database: the storage layer under ``store.py``.

This module owns how ``results.sqlite`` is reached and kept sound: the SQL schema,
the writer's connection (WAL, ``synchronous=NORMAL``, foreign keys, busy timeout)
and the read-only one (``mode=ro``, falling back to ``immutable=1`` in a folder
that cannot be written), the migration of older schema versions, the checksum
of each prediction blob (:func:`blob_digest`), the integrity check
(``PRAGMA quick_check`` plus every stored checksum) with the error it raises
(:class:`StoreCorruptError`), and the retried ``BEGIN IMMEDIATE`` transaction.
:class:`~expost.experiments.store.ResultStore` in ``store.py`` keeps the public
readers and writers on top of it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .metrics import METRICS

__all__ = ["SCHEMA", "StoreCorruptError", "blob_digest", "connect_readonly", "connect_writer",
           "migrate", "transaction", "verify_database"]

_METRIC_COLUMNS = ", ".join(f"{m} REAL" for m in METRICS)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS arrays (
    name TEXT PRIMARY KEY, dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS trainings (
    train_key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    n_intervals INTEGER NOT NULL,
    total_steps INTEGER NOT NULL,
    done_intervals INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT,
    started_at TEXT,
    finished_at TEXT,
    wall_seconds REAL NOT NULL DEFAULT 0,
    train_seconds REAL NOT NULL DEFAULT 0,
    eval_seconds REAL NOT NULL DEFAULT 0,
    io_seconds REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    regime TEXT NOT NULL,
    seed INTEGER NOT NULL,
    train_key TEXT NOT NULL REFERENCES trainings(train_key));
CREATE TABLE IF NOT EXISTS intervals (
    train_key TEXT NOT NULL REFERENCES trainings(train_key),
    interval INTEGER NOT NULL,
    step INTEGER NOT NULL,
    epoch REAL NOT NULL,
    lr REAL,
    train_loss REAL,
    val_loss REAL,
    train_seconds REAL,
    eval_seconds REAL,
    n_test INTEGER NOT NULL,
    n_classes INTEGER NOT NULL,
    test_log_probs BLOB NOT NULL,
    checksum TEXT,
    PRIMARY KEY (train_key, interval));
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    split TEXT NOT NULL,
    interval INTEGER NOT NULL,
    {_METRIC_COLUMNS},
    PRIMARY KEY (run_id, split, interval));
"""


class StoreCorruptError(ValueError):
    """The results database is damaged (a failed ``quick_check`` or a changed prediction)."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"the results database {str(path)!r} is damaged ({detail[:300]}); its numbers "
            "cannot be trusted. Restore it from a copy, or start the experiment afresh "
            "(`expost run ... --force-new`)."
        )
        self.path = path


def blob_digest(blob: bytes) -> str:
    """The checksum stored beside each prediction blob (BLAKE2b, 16 bytes, hex).

    >>> blob_digest(b"")
    'cae66941d9efbd404e4d88758ea67670'
    """
    import hashlib

    return hashlib.blake2b(bytes(blob), digest_size=16).hexdigest()


def connect_writer(path: Path) -> sqlite3.Connection:
    """A writer's connection: WAL journal, durable against process death, foreign keys on."""
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=60.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # durable against process death
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


def verify_database(conn: sqlite3.Connection, path: Path) -> None:
    """Check the database (``PRAGMA quick_check``) and every prediction blob's checksum.

    Raises
    ------
    StoreCorruptError
        Naming the file and what is damaged.
    """
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in rows] != ["ok"]:
            raise StoreCorruptError(path, "; ".join(str(r[0]) for r in rows[:3]))
        conn.create_function("expost_digest", 1, blob_digest, deterministic=True)
        bad = conn.execute(
            "SELECT train_key, interval FROM intervals WHERE checksum IS NOT NULL"
            " AND checksum != expost_digest(test_log_probs) LIMIT 3").fetchall()
    except sqlite3.DatabaseError as exc:
        raise StoreCorruptError(path, str(exc)) from None
    if bad:
        where = ", ".join(f"{k} interval {i}" for k, i in bad)
        raise StoreCorruptError(path, f"the stored predictions of {where} do not match "
                                      "their checksum")


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection: no WAL pragma, nothing written (a read-only folder works)."""
    from urllib.parse import quote

    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=60.0)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:  # a WAL database in a folder we cannot write to
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?immutable=1", uri=True,
                               isolation_level=None)
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a version 1 store up to date (the checksum column; old rows stay unchecked)."""
    cols = [r[1] for r in conn.execute("PRAGMA table_info(intervals)")]
    if cols and "checksum" not in cols:
        conn.execute("ALTER TABLE intervals ADD COLUMN checksum TEXT")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def read_as_current(conn: sqlite3.Connection) -> None:
    """Let a read-only connection read a version 1 store as the current version.

    A reader cannot migrate (it writes nothing), so the old table is seen through a
    temporary view of the same name with the missing checksum column as NULL (a
    temporary object shadows the file's for unqualified names; old rows stay
    unchecked, as :func:`migrate` leaves them). Nothing touches the file.
    """
    cols = [r[1] for r in conn.execute("PRAGMA main.table_info(intervals)")]
    if cols and "checksum" not in cols:
        conn.execute("CREATE TEMP VIEW intervals AS SELECT *, NULL AS checksum FROM main.intervals")


def check_version(version: object, path: Path, newest: int) -> None:
    """Refuse a store written by a newer expost (its layout may differ in ways this one
    would misread, or a resumed run would damage)."""
    try:
        v = int(str(version))
    except ValueError:
        return  # no version (or a damaged one): the other checks speak
    if v > newest:
        raise ValueError(f"{str(path)!r} was written by a newer expost (store version {v}; this "
                         f"one reads versions 1 to {newest}); upgrade expost to read it.")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (retried while locked)."""
    for attempt in range(50):
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:  # pragma: no cover - contention only
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.1)
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
