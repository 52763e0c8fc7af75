"""How fast the driver ingests workers' interval records into the results store.

With worker processes (``--jobs N``, ``--backend ray``) every interval of every
training travels as a record (float16 test log-probabilities + JSON) through the
spool on the experiment's storage, and the driver alone commits it to SQLite
(:func:`expost.experiments.spool.ingest`). This prints, side by side at two
sizes, records per second and MB/s of

* ``write``: a worker writing its records (``SpoolSink.commit_interval``),
* ``ingest``: the driver reading, committing and deleting them,
* ``direct``: a sequential run's own commit (``ResultStore.commit_interval``),

and the ratio ingest / direct. Sizes: CIFAR-100 (10,000 test images x 100 classes)
and ChestX-ray14 single-label (27,394 x 15). Table 1 of the paper is 70 trainings;
at 40 intervals each that is 2,800 records for a whole sweep.

Run: ``python benchmarks/ingest.py [--records 40]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from expost.experiments.metrics import METRICS
from expost.experiments.spool import SpoolSink, ingest
from expost.experiments.storage import Storage
from expost.experiments.store import ResultStore

SIZES = {"CIFAR-100": (10_000, 100), "ChestX-ray14": (27_394, 15)}
KEY = "weighted-s0"


def _store(root: Path, n: int, m: int, records: int) -> ResultStore:
    store = ResultStore.create(root, {"config_hash": "bench"},
                               arrays={"test_labels": np.zeros(n, np.int64)})
    store.register([{"train_key": KEY, "kind": "weighted", "seed": 0, "n_intervals": records,
                     "total_steps": records}],
                   [{"run_id": "weighted-s0", "regime": "weighted", "seed": 0, "train_key": KEY}])
    return store


def _record(k: int, rng: np.random.Generator, n: int, m: int) -> tuple:
    lp = np.log(rng.dirichlet(np.ones(m), size=n)).astype(np.float16)
    interval = {"interval": k, "step": k + 1, "epoch": float(k + 1), "lr": 1e-3,
                "train_loss": 0.5, "val_loss": 0.6, "train_seconds": 1.0, "eval_seconds": 0.1}
    metrics = [("weighted-s0", split, dict.fromkeys(METRICS, 0.5)) for split in ("test", "val")]
    return interval, lp, metrics


def bench(n: int, m: int, records: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    recs = [_record(k, rng, n, m) for k in range(records)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        storage = Storage(root / "storage")
        row = {"done_intervals": 0, "step": 0, "checkpoint": None, "status": "running"}
        sink = SpoolSink(storage, {KEY: row}, [], root / "scratch")
        t0 = time.perf_counter()
        for interval, lp, metrics in recs:
            sink.commit_interval(KEY, interval, lp, metrics, checkpoint=None, timings={})
        write = time.perf_counter() - t0
        store = _store(root / "driver", n, m, records)
        t0 = time.perf_counter()
        ingest(store, storage, KEY)
        ingested = time.perf_counter() - t0
        store.close()
        direct_store = _store(root / "direct", n, m, records)
        t0 = time.perf_counter()
        for interval, lp, metrics in recs:
            direct_store.commit_interval(KEY, interval, lp, metrics, checkpoint=None, timings={})
        direct = time.perf_counter() - t0
        direct_store.close()
    mb = n * m * 2 * records / 1e6
    return {"write": records / write, "ingest": records / ingested, "direct": records / direct,
            "mb_ingest": mb / ingested}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=40, help="records per size")
    args = parser.parse_args()
    print(f"{'size':<14} {'n x m':>12} {'write rec/s':>12} {'ingest rec/s':>13} "
          f"{'ingest MB/s':>12} {'direct rec/s':>13} {'ingest/direct':>14}")
    for name, (n, m) in SIZES.items():
        r = bench(n, m, args.records)
        print(f"{name:<14} {f'{n}x{m}':>12} {r['write']:>12.1f} {r['ingest']:>13.1f} "
              f"{r['mb_ingest']:>12.1f} {r['direct']:>13.1f} {r['ingest'] / r['direct']:>14.2f}")


if __name__ == "__main__":
    main()
