"""The SQLite result store: creation, atomic interval commits, readers."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from expost.experiments.evaluate import decode_probabilities, encode_log_probs
from expost.experiments.metrics import METRICS
from expost.experiments.store import DB_NAME, ResultStore

INFO = {"config": {"name": "t"}, "config_hash": "abc", "versions": {"expost": "0"},
        "git_commit": None, "utility": [[1.0, 0.0], [0.0, 2.0]], "class_names": ["a", "b"],
        "emphasized": 1}


def _metrics(v):
    return {k: v + i for i, k in enumerate(METRICS)}


@pytest.fixture
def store(tmp_path):
    s = ResultStore.create(tmp_path / "exp", INFO, arrays={"test_labels": np.array([0, 1, 1])})
    s.register([{"train_key": "unweighted-s0", "kind": "unweighted", "seed": 0,
                 "n_intervals": 2, "total_steps": 10}],
               [{"run_id": "expost-s0", "regime": "expost", "seed": 0,
                 "train_key": "unweighted-s0"},
                {"run_id": "unweighted_raw-s0", "regime": "unweighted_raw", "seed": 0,
                 "train_key": "unweighted-s0"}])
    yield s
    s.close()


def _commit(store, interval, value=0.5, metrics=None):
    lp = encode_log_probs(np.log(np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])))
    store.commit_interval(
        "unweighted-s0",
        {"interval": interval, "step": 5 * (interval + 1), "epoch": interval + 1.0, "lr": 0.1,
         "train_loss": value, "val_loss": value, "train_seconds": 0.1, "eval_seconds": 0.01},
        lp,
        metrics if metrics is not None else [
            ("expost-s0", "test", _metrics(value)), ("unweighted_raw-s0", "test", _metrics(2.0)),
            ("expost-s0", "val", _metrics(9.0))],
        checkpoint=f"checkpoints/unweighted-s0/ckpt-{interval:05d}.pt",
        timings={"wall": 1.0, "train": 0.5, "eval": 0.25, "io": 0.125},
    )
    return lp


def test_missing_or_incomplete_experiment(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No experiment in .*results\.sqlite.*expost run"):
        ResultStore(tmp_path)
    sqlite3.connect(str(tmp_path / DB_NAME)).close()  # an empty database file
    with pytest.raises(FileNotFoundError, match="not a complete expost results database"):
        ResultStore(tmp_path)


def test_create_open_and_info(store, tmp_path):
    info = ResultStore(tmp_path / "exp").experiment_info()
    for key in ("config", "config_hash", "created_at", "versions", "git_commit", "utility",
                "class_names", "emphasized"):
        assert key in info
    assert info["utility"] == INFO["utility"] and info["emphasized"] == 1
    assert store.array("test_labels").tolist() == [0, 1, 1]
    with pytest.raises(KeyError, match="stored arrays"):
        store.array("nope")
    with pytest.raises(FileExistsError, match="already holds an experiment"):
        ResultStore.create(tmp_path / "exp", INFO)
    with pytest.raises(ValueError, match="config_hash"):
        ResultStore.create(tmp_path / "other", {"config": {}})
    mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_commit_and_read_back(store):
    assert [r["status"] for r in store.runs()] == ["pending", "pending"]
    store.start_training("unweighted-s0")
    lp0 = _commit(store, 0, 0.5)
    _commit(store, 1, 0.25)
    store.finish_training("unweighted-s0")
    runs = store.runs()
    assert [r["run_id"] for r in runs] == ["expost-s0", "unweighted_raw-s0"]
    assert {r["status"] for r in runs} == {"finished"}
    assert {r["train_key"] for r in runs} == {"unweighted-s0"}
    assert runs[0]["train_seconds"] == 1.0 and runs[0]["wall_seconds"] == 2.0
    assert runs[0]["eval_seconds"] == 0.5 and runs[0]["finished_at"]
    recs = store.interval_records()
    assert [(r["run_id"], r["interval"], r["step"]) for r in recs] == [
        ("expost-s0", 0, 5), ("expost-s0", 1, 10), ("unweighted_raw-s0", 0, 5),
        ("unweighted_raw-s0", 1, 10)]
    assert recs[1]["weighted_loss"] == 0.25 and recs[1]["regime"] == "expost"
    assert all(isinstance(recs[0][k], float) for k in METRICS)
    val = store.interval_records("val")
    assert len(val) == 2 and val[0]["weighted_loss"] == 9.0
    with pytest.raises(ValueError, match="`split` must be one of"):
        store.interval_records("train")
    row = store.training("unweighted-s0")
    assert (row["done_intervals"], row["step"]) == (2, 10)
    assert row["checkpoint"] == "checkpoints/unweighted-s0/ckpt-00001.pt"
    assert np.array_equal(store.stored_log_probs("unweighted-s0", 0), lp0)
    assert np.array_equal(store.probabilities("unweighted-s0", 0), decode_probabilities(lp0))
    stored = list(store.iter_probabilities())
    assert [(k, i) for k, i, *_ in stored] == [("unweighted-s0", 0), ("unweighted-s0", 1)]
    with pytest.raises(KeyError, match="No interval 7"):
        store.stored_log_probs("unweighted-s0", 7)


def test_a_failing_commit_leaves_nothing_behind(store):
    store.start_training("unweighted-s0")
    _commit(store, 0, 0.5)
    bad = [("expost-s0", "test", {"weighted_loss": 1.0})]  # the other metrics are missing
    with pytest.raises(KeyError):
        _commit(store, 1, 0.1, metrics=bad)
    row = store.training("unweighted-s0")
    assert row["done_intervals"] == 1 and row["checkpoint"].endswith("ckpt-00000.pt")
    assert [r["interval"] for r in store.intervals()] == [0]
    assert len(store.interval_records()) == 2


def test_fail_and_restart_training(store):
    store.start_training("unweighted-s0")
    store.fail_training("unweighted-s0", "RuntimeError: boom")
    row = store.training("unweighted-s0")
    assert row["status"] == "failed" and "boom" in row["error"]
    store.start_training("unweighted-s0")
    row = store.training("unweighted-s0")
    assert row["status"] == "running" and row["attempts"] == 2 and row["error"] is None


def test_register_keeps_existing_rows(store):
    store.start_training("unweighted-s0")
    _commit(store, 0)
    store.register([{"train_key": "unweighted-s0", "kind": "unweighted", "seed": 0,
                     "n_intervals": 2, "total_steps": 10}], [])
    assert store.training("unweighted-s0")["done_intervals"] == 1


def test_a_version_1_store_is_read_as_it_is_and_migrated_only_by_a_writer(store):
    """A reader queried the checksum column a version 1 store lacks: `expost table` called
    such a store damaged and advised starting afresh. It now reads it without writing a
    byte; a writer still migrates it; a newer version is refused by both."""
    from expost.experiments.store import SCHEMA_VERSION

    lp = _commit(store, 0)
    run_dir, path = store.run_dir, store.path
    store.close()
    with sqlite3.connect(path) as db:
        db.executescript("ALTER TABLE intervals DROP COLUMN checksum; "
                         "UPDATE meta SET value = '1' WHERE key = 'schema_version';")
    db.close()
    before = path.read_bytes()
    with ResultStore(run_dir, readonly=True) as old:
        assert old.experiment_info()["schema_version"] == 1
        [(key, interval, _, _, q)] = list(old.iter_probabilities())
        assert (key, interval) == ("unweighted-s0", 0)
        np.testing.assert_array_equal(q, decode_probabilities(lp))
        assert {r["run_id"] for r in old.interval_records("test")} == {"expost-s0",
                                                                       "unweighted_raw-s0"}
    assert path.read_bytes() == before
    with ResultStore(run_dir) as writer:  # migrates
        assert writer.experiment_info()["schema_version"] == SCHEMA_VERSION
    with sqlite3.connect(path) as db:
        assert "checksum" in [r[1] for r in db.execute("PRAGMA table_info(intervals)")]
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    for readonly in (True, False):
        with pytest.raises(ValueError, match=r"written by a newer expost \(store version 99; this "
                                             rf"one reads versions 1 to {SCHEMA_VERSION}\)"):
            ResultStore(run_dir, readonly=readonly)


@pytest.mark.parametrize(("edit", "read", "says"), [
    ("UPDATE meta SET value = '{not json' WHERE key = 'config'", lambda s: s.experiment_info(),
     "its 'config' entry is not JSON"),
    ("UPDATE arrays SET dtype = '|O' WHERE name = 'test_labels'", lambda s: s.array("test_labels"),
     "the stored array 'test_labels': dtype '|O' is not numeric"),
    ("UPDATE arrays SET shape = '[10]' WHERE name = 'test_labels'",
     lambda s: s.array("test_labels"), "the stored array 'test_labels': cannot reshape"),
    ("UPDATE metrics SET weighted_loss = 'abc'", lambda s: s.interval_records("test"),
     "interval 0: a stored metric is not a number"),
])
def test_a_tampered_value_is_called_damage_naming_the_store(store, edit, read, says):
    """Such values came out as bare Python messages (a JSON decoder's, numpy's 'cannot create
    an OBJECT array from memory buffer', 'could not convert string to float') naming no file."""
    from expost.experiments.store import StoreCorruptError

    _commit(store, 0)
    run_dir, path = store.run_dir, store.path
    store.close()
    with sqlite3.connect(path) as db:
        db.execute(edit)
    db.close()
    with ResultStore(run_dir, readonly=True) as s, pytest.raises(StoreCorruptError) as info:
        read(s)
    assert str(info.value).startswith(f"the results database {str(path)!r} is damaged (")
    assert says in str(info.value)


def test_a_store_that_is_a_folder_or_a_broken_link_is_named_so(tmp_path):
    """Both were 'does not exist (start one with expost run ...)'."""
    (tmp_path / "a" / DB_NAME).mkdir(parents=True)
    with pytest.raises(ValueError, match=r"results\.sqlite' is a folder, not an expost results"):
        ResultStore(tmp_path / "a", readonly=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / DB_NAME).symlink_to(tmp_path / "b" / DB_NAME)  # a loop
    with pytest.raises(ValueError, match="is a link to nothing"):
        ResultStore(tmp_path / "b", readonly=True)
