"""Run trainings in worker processes: a local process pool or a Ray cluster, one driver.

``expost run --backend local --jobs N`` and ``expost run --backend ray`` (and
``expost sweep``) hand each training (one ``(training kind, seed)``; ``expost``
and ``unweighted_raw`` share one) to a worker as one unit of work, with its
resource request. The process that runs the command is the *driver*: it alone
opens the results store for writing. A worker (:func:`run_job`) rebuilds the
experiment's setup from its config (data, objective, model) with a
:class:`~expost.experiments.spool.SpoolSink` in place of the store, runs the
same training loop as a sequential run, and ships every interval as a record
file through the experiment's storage (:mod:`~expost.experiments.storage`);
the driver ingests the records (exactly once, keyed by training and interval)
while it waits, and marks a training finished, diverged or failed when its
worker returns.

Scheduling. MetaCost relabels with the final model of the unweighted training
of its seed: it is submitted only once that training is finished, and its
worker reads that training's final checkpoint from the storage (the driver
trains the base again first when that checkpoint is gone).

Failures. A worker that dies (killed, out of memory, its node lost) is run
again from its last record's checkpoint, up to ``retries`` times: Ray's task
``max_retries`` on Ray, a resubmission in the local pool. An error raised by
the training (bad data, a model that cannot be built) is not retried: the
training is marked failed, the others go on, and the command fails at the end
naming it. A driver that dies is recovered by rerunning the same command: the
records its workers left in the spool are ingested first, finished trainings
are skipped and the others continue from their checkpoints. Pool workers end
when their driver does (they watch their parent); Ray ends a dead driver's
tasks.

Why Ray core tasks and not Ray Tune: a training here is a fixed job with its
own checkpointing, exact resume and per-interval records, not a trial of a
search; Tune's trial scheduler, its own result store and checkpoint syncing
would duplicate what the store and the spool already do. Tasks give what is
needed (resource requests, placement on GPUs, retries of dead workers) and
nothing to reconcile with the results store.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .regimes import TRAININGS, train_key
from .spool import clear_spool, ingest
from .storage import Storage
from .store import WORKER_ENV

__all__ = ["BACKENDS", "BackendOptions", "ExperimentUnit", "drive", "run_job"]

BACKENDS = ("local", "ray")
RAY_INSTALL = "pip install 'expost[ray]'"


@dataclass(frozen=True)
class BackendOptions:
    """How the trainings run.

    Attributes
    ----------
    backend : {"local", "ray"}
        ``local`` without ``jobs``: one after another in this process (the default);
        ``local`` with ``jobs``: a pool of that many worker processes; ``ray``: Ray tasks.
    jobs : int or None
        Worker processes of the local pool (one training each at a time).
    address : str or None
        The Ray cluster (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``); None starts a
        local one (or uses the one this process is connected to already).
    gpus_per_run, cpus_per_run : float
        Each training's resource request (Ray); ``cpus_per_run`` is also the number of
        torch threads of a worker.
    storage : str or None
        Where checkpoints and records go (a shared path or an fsspec URL); None: the
        experiment directory.
    retries : int
        How many times a training whose worker died is run again.
    """

    backend: str = "local"
    jobs: int | None = None
    address: str | None = None
    gpus_per_run: float = 0.0
    cpus_per_run: float = 1.0
    storage: str | None = None
    retries: int = 2

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend: expected one of {', '.join(BACKENDS)}, got "
                             f"{self.backend!r}.")
        if self.jobs is not None and (isinstance(self.jobs, bool) or not isinstance(self.jobs, int)
                                      or self.jobs < 1):
            raise ValueError(f"--jobs: expected a whole number >= 1, got {self.jobs!r}.")
        if self.jobs is not None and self.backend != "local":
            raise ValueError("--jobs: only for --backend local (Ray places trainings by "
                             "--cpus-per-run / --gpus-per-run).")
        if self.address is not None and self.backend != "ray":
            raise ValueError(f"--address {self.address!r}: only for --backend ray.")
        for name, value in (("--gpus-per-run", self.gpus_per_run),
                            ("--cpus-per-run", self.cpus_per_run)):
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{name}: expected a number >= 0, got {value!r}.")
        if self.cpus_per_run == 0 and self.gpus_per_run == 0:
            raise ValueError("--cpus-per-run: a training needs some resource; got 0 CPUs and "
                             "0 GPUs.")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"--retries: expected a whole number >= 0, got {self.retries!r}.")
        if (self.backend == "local" and self.jobs is None and self.storage is not None
                and "://" in self.storage):
            raise ValueError(f"--storage {self.storage!r}: a URL needs worker processes "
                             "(--jobs N or --backend ray); a sequential run takes a path.")

    @property
    def sequential(self) -> bool:
        """Whether the trainings run in this process, one after another."""
        return self.backend == "local" and self.jobs is None

    @property
    def threads(self) -> int:
        """Torch threads of one worker."""
        return max(1, round(self.cpus_per_run))


@dataclass
class ExperimentUnit:
    """One experiment as the driver sees it: its store (the writer), storage and trainings."""

    name: str
    config: dict[str, Any]  # the validated config as JSON
    store: Any  # ResultStore, opened for writing by the driver
    storage: Storage
    jobs: list[Any]  # TrainingJob
    n_intervals: int


@dataclass
class _Unit:
    exp: ExperimentUnit
    job: Any

    @property
    def key(self) -> str:
        return self.job.train_key

    @property
    def label(self) -> str:
        return self.key if not self.exp.name else f"{self.exp.name}/{self.key}"


# ---------------------------------------------------------------- the worker
_PARTS: dict[str, Any] = {}  # the last config's data, objective, recall class and device


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one training in a worker process; return ``{"status", "error"}``.

    ``spec``: the experiment's ``config`` (JSON), its ``storage`` location, the
    ``job`` (train_key, kind, seed, runs, keep_best), the training ``rows`` the
    driver holds (the job's and, for MetaCost, its base's) and ``threads``. Never
    opens the results store: the environment variable that forbids a writer
    (:data:`~expost.experiments.store.WORKER_ENV`) is set first.
    """
    os.environ[WORKER_ENV] = "1"
    import torch

    from .config import load_config
    from .runners import _blas_threads, load_parts
    from .spool import SpoolSink
    from .train import TrainingJob, TrainingSetup, run_training

    torch.set_num_threads(int(spec["threads"]))
    storage = Storage(spec["storage"])
    j = spec["job"]
    key = j["train_key"]
    storage.write_bytes(f"workers/{key}.json", json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}).encode())
    scratch = Path(tempfile.mkdtemp(prefix="expost-worker-")) if storage.remote else None
    ckpt_root = scratch if scratch is not None else storage.local_root
    assert ckpt_root is not None
    try:
        sink = SpoolSink(storage, spec["rows"], [], ckpt_root)
        if scratch is not None:
            for row in sink.rows.values():
                if row["checkpoint"]:
                    storage.download(row["checkpoint"], scratch / row["checkpoint"])
        cfg = load_config(spec["config"])
        cache_key = json.dumps(spec["config"], sort_keys=True)
        if _PARTS.get("key") != cache_key:  # a long-lived worker loads the data once
            _PARTS.clear()
            _PARTS.update(key=cache_key, parts=load_parts(cfg))
        data, objective, recall_of, device = _PARTS["parts"]
        setup = TrainingSetup(config=cfg, data=data, objective=objective, recall_of=recall_of,
                              store=sink, run_dir=ckpt_root, device=device)
        job = TrainingJob(key, j["kind"], int(j["seed"]),
                          tuple((r, g) for r, g in j["runs"]), keep_best=bool(j["keep_best"]))
        with _blas_threads(int(spec["threads"])):
            run_training(setup, job, None)
        status, error = sink.status.get(key, ("finished", None))
        return {"status": status, "error": error}
    except Exception as exc:  # the training's own error: reported, not retried
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if scratch is not None:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)


def _job_spec(unit: _Unit, threads: int) -> dict[str, Any]:
    job, store = unit.job, unit.exp.store
    rows = {job.train_key: store.training(job.train_key)}
    base = TRAININGS[job.kind].relabel_from
    if base is not None:
        rows[train_key(base, job.seed)] = store.training(train_key(base, job.seed))
    return {"config": unit.exp.config, "storage": unit.exp.storage.location, "threads": threads,
            "rows": rows,
            "job": {"train_key": job.train_key, "kind": job.kind, "seed": job.seed,
                    "runs": [list(r) for r in job.runs], "keep_best": job.keep_best}}


# ---------------------------------------------------------------- the local process pool
def _watch_parent(parent: int) -> None:
    """End this worker when its driver is gone (a SIGKILLed driver cannot stop it)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(3)


def _pool_main(conn: Any, env: dict[str, str], parent: int) -> None:
    """A pool worker: runs the specs it receives, one at a time, until told to stop."""
    os.environ.update(env)  # CUDA_VISIBLE_DEVICES before torch is imported
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    while True:
        spec = conn.recv()
        if spec is None:
            return
        conn.send(run_job(spec))


@dataclass
class _Worker:
    slot: int
    process: Any
    conn: Any
    spec: dict[str, Any] | None = None  # the training it runs
    handle: int = -1
    attempt: int = 0


@dataclass
class ProcessPool:
    """``--backend local --jobs N``: N long-lived worker processes (spawned), one training
    each at a time, on the GPUs (``CUDA_VISIBLE_DEVICES``, round robin) when there are
    some. A worker that dies is replaced and its training sent again (``retries`` times)."""

    jobs: int
    retries: int
    _workers: list[_Worker] = field(default_factory=list)
    _next: int = 0
    _gpus: int = -1

    def _spawn(self, slot: int) -> _Worker:
        import multiprocessing

        if self._gpus < 0:
            import torch

            self._gpus = torch.cuda.device_count()
        env = {WORKER_ENV: "1"}
        if self._gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % self._gpus)
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        process = ctx.Process(target=_pool_main, args=(theirs, env, os.getpid()), daemon=True)
        process.start()
        theirs.close()
        return _Worker(slot, process, ours)

    def free(self) -> bool:
        return len(self._workers) < self.jobs or any(w.spec is None for w in self._workers)

    def submit(self, spec: dict[str, Any]) -> int:
        idle = next((w for w in self._workers if w.spec is None), None)
        if idle is None:
            idle = self._spawn(len(self._workers))
            self._workers.append(idle)
        elif not idle.process.is_alive():  # died while idle: a fresh one in its place
            idle.conn.close()
            fresh = self._spawn(idle.slot)
            idle.process, idle.conn = fresh.process, fresh.conn
        self._next += 1
        idle.spec, idle.handle, idle.attempt = spec, self._next, 0
        idle.conn.send(spec)
        return idle.handle

    def wait(self, timeout: float) -> list[tuple[int, dict[str, Any]]]:
        from multiprocessing.connection import wait

        busy = [w for w in self._workers if w.spec is not None]
        if not busy:
            time.sleep(timeout)
            return []
        wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout)
        done = []
        for w in busy:
            outcome = None
            try:
                if w.conn.poll():
                    outcome = w.conn.recv()
            except (EOFError, OSError):  # it died while sending
                outcome = None
            if outcome is None and w.process.is_alive():
                continue
            if outcome is None:
                outcome = self._replace(w)
                if outcome is None:
                    continue  # sent again to a fresh worker
            done.append((w.handle, outcome))
            w.spec = None
        return done

    def _replace(self, w: _Worker) -> dict[str, Any] | None:
        """A fresh process in a dead worker's place; its training is sent again (None) or,
        past the retries, reported failed."""
        code = w.process.exitcode
        w.process.join()
        w.conn.close()
        fresh = self._spawn(w.slot)
        w.process, w.conn = fresh.process, fresh.conn
        assert w.spec is not None
        key = w.spec["job"]["train_key"]
        if w.attempt >= self.retries:
            return {"status": "failed",
                    "error": f"its worker died (exit code {code}) {w.attempt + 1} times"}
        w.attempt += 1
        print(f"expost: warning: the worker of {key} died (exit code {code}); retry "
              f"{w.attempt} of {self.retries} from its last checkpoint.", file=sys.stderr,
              flush=True)
        w.conn.send(w.spec)
        return None

    def close(self) -> None:
        for w in self._workers:
            if w.spec is None and w.process.is_alive():
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        for w in self._workers:
            w.process.join(timeout=5 if w.spec is None else 0)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
        self._workers.clear()


# ---------------------------------------------------------------- Ray
def _ray_main(spec: dict[str, Any]) -> dict[str, Any]:  # runs in a Ray worker
    return run_job(spec)


class RayPool:
    """``--backend ray``: one Ray task per training, with its resource request and
    ``max_retries`` (a task whose worker died runs again)."""

    def __init__(self, options: BackendOptions) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError(f"--backend ray needs Ray: {RAY_INSTALL} (or use --backend "
                              "local --jobs N).") from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": options.address, "log_to_driver": False}
            if options.address is None:
                kwargs["include_dashboard"] = False
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise ConnectionError(f"--address {options.address!r}: cannot connect to a Ray "
                                      f"cluster ({exc}).") from None
            self.started = True
        self.remote = ray.remote(num_cpus=options.cpus_per_run, num_gpus=options.gpus_per_run,
                                 max_retries=options.retries)(_ray_main)
        self._refs: dict[Any, Any] = {}

    def free(self) -> bool:
        return True  # Ray queues tasks until their resources are free

    def submit(self, spec: dict[str, Any]) -> Any:
        ref = self.remote.remote(spec)
        self._refs[ref] = spec
        return ref

    def wait(self, timeout: float) -> list[tuple[Any, dict[str, Any]]]:
        if not self._refs:
            time.sleep(timeout)
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout)
        done = []
        for ref in ready:
            del self._refs[ref]
            try:
                done.append((ref, dict(self.ray.get(ref))))
            except self.ray.exceptions.RayError as exc:  # the worker died past its retries
                text = " ".join(str(exc).split())[:300]
                done.append((ref, {"status": "failed", "error": f"Ray: {text}"}))
        return done

    def close(self) -> None:
        for ref in self._refs:
            self.ray.cancel(ref, force=True)
        self._refs.clear()
        if self.started:
            self.ray.shutdown()


# ---------------------------------------------------------------- the driver
def _progress_row(unit: _Unit, meta: dict[str, Any]) -> dict[str, Any]:
    runs = unit.job.runs
    test_first: dict[str, float] = next(
        (m for _, split, m in meta["metrics"] if split == "test"), {})
    return {**meta["interval"], "n_intervals": unit.exp.n_intervals,
            "io_seconds": meta["timings"].get("io", 0.0),
            "regime": runs[0][1] if runs else None, **test_first}


def drive(experiments: Sequence[ExperimentUnit], options: BackendOptions,
          reporter: Any = None) -> None:
    """Run every unfinished training of ``experiments`` on the backend of ``options``.

    The driver's loop: ingest what the spool holds, submit the trainings whose
    dependencies are done, ingest records as they arrive (showing them on
    ``reporter``), and record each training's outcome. Raises RuntimeError
    naming the trainings that failed, after the others have run.
    """
    units = {(id(e), j.train_key): _Unit(e, j) for e in experiments for j in e.jobs}
    for u in units.values():
        ingest(u.exp.store, u.exp.storage, u.key)  # what a dead driver left
    pending = [u for u in units.values()
               if u.exp.store.training(u.key)["status"] != "finished"]
    if not pending:
        return
    pool: ProcessPool | RayPool = (RayPool(options) if options.backend == "ray"
                                   else ProcessPool(options.jobs or 1, options.retries))
    running: dict[Any, _Unit] = {}
    counts = {"done": len(units) - len(pending), "failed": 0}
    failed: list[str] = []
    clock = _Eta(sum(u.exp.n_intervals - u.exp.store.training(u.key)["done_intervals"]
                     for u in pending))
    try:
        while pending or running:
            for u in list(pending):
                if not pool.free():
                    break
                verdict = _ready(u, units, pending)
                if verdict == "wait":
                    continue
                pending.remove(u)
                if verdict != "ok":
                    u.exp.store.fail_training(u.key, verdict)
                    failed.append(f"{u.label}: {verdict}")
                    counts["failed"] += 1
                    continue
                spec = _job_spec(u, options.threads)
                u.exp.store.start_training(u.key)
                running[pool.submit(spec)] = u
                if reporter is not None:
                    reporter.start(u.job, u.exp.n_intervals, spec["rows"][u.key]["done_intervals"])
            outcomes = pool.wait(0.25)
            for u in running.values():
                _ingest_shown(u, reporter, clock)
            for handle, outcome in outcomes:
                u = running.pop(handle)
                _ingest_shown(u, reporter, clock)
                ok = _apply(u, outcome)
                counts["done" if ok else "failed"] += 1
                if not ok:
                    failed.append(f"{u.label}: {outcome.get('error')}")
                elif reporter is not None:
                    reporter.finish(u.job)
            if reporter is not None and hasattr(reporter, "status"):
                reporter.status(done=counts["done"], running=len(running), pending=len(pending),
                                failed=counts["failed"], eta=clock.eta())
    except BaseException as exc:
        for u in running.values():
            u.exp.store.fail_training(
                u.key, f"{type(exc).__name__}: the driver stopped",
                status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        raise
    finally:
        pool.close()
    if failed:
        raise RuntimeError(f"{len(failed)} training(s) failed: " + "; ".join(failed)
                           + " (fix the cause and rerun the same command: it resumes)")


def _ready(u: _Unit, units: dict[tuple[int, str], _Unit], pending: list[_Unit]) -> str:
    """``ok`` to submit, ``wait`` for its base training, or why it cannot run."""
    base_kind = TRAININGS[u.job.kind].relabel_from
    if base_kind is None:
        return "ok"
    base_key = train_key(base_kind, u.job.seed)
    row = u.exp.store.training(base_key)
    if row["status"] in ("failed", "diverged", "interrupted") and \
            units[(id(u.exp), base_key)] not in pending:
        return f"MetaCost's base training {base_key!r} is {row['status']}"
    if row["status"] != "finished":
        return "wait"
    if not row["checkpoint"] or not u.exp.storage.exists(row["checkpoint"]):
        from .recovery import warn

        warn(f"the final checkpoint of {base_key!r} is missing from {u.exp.storage.location!r}; "
             "training it again for MetaCost.")
        u.exp.store.reopen_training(base_key)
        pending.insert(0, units[(id(u.exp), base_key)])
        return "wait"
    return "ok"


def _ingest_shown(u: _Unit, reporter: Any, clock: _Eta) -> None:
    for meta in ingest(u.exp.store, u.exp.storage, u.key):
        clock.tick()
        if reporter is not None:
            reporter.interval(u.job, _progress_row(u, meta))


def _apply(u: _Unit, outcome: dict[str, Any]) -> bool:
    """Record a worker's outcome in the store; False when the training failed."""
    store, status = u.exp.store, outcome.get("status")
    if status == "finished":
        row = store.training(u.key)
        if row["done_intervals"] < u.exp.n_intervals:  # records lost: rerun to recompute
            store.fail_training(u.key, f"its worker ended at interval {row['done_intervals']}")
            return False
        store.finish_training(u.key)
        clear_spool(u.exp.storage, u.key)
        u.exp.storage.remove(f"workers/{u.key}.json")
        return True
    error = str(outcome.get("error") or "unknown error")
    if status == "diverged":
        from .recovery import warn

        store.fail_training(u.key, error, status="diverged")
        warn(error)
        return True
    store.fail_training(u.key, error)
    return False


class _Eta:
    """Remaining intervals over the rate at which records have arrived."""

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self.done = 0
        self.t0 = time.perf_counter()

    def tick(self) -> None:
        self.done += 1

    def eta(self) -> float | None:
        if not self.done:
            return None
        rate = self.done / (time.perf_counter() - self.t0)
        return max(self.remaining - self.done, 0) / rate


# ---------------------------------------------------------------- command-line options
def add_backend_arguments(parser: Any) -> None:
    """The backend options of ``expost run`` and ``expost sweep`` (argparse)."""
    from .._argtypes import nonnegative_int

    g = parser.add_argument_group("where the trainings run")
    g.add_argument("--backend", choices=BACKENDS, default="local",
                   help="local: in this process one after another, or a process pool with "
                        "--jobs; ray: Ray tasks (pip install 'expost[ray]')")
    g.add_argument("--jobs", type=nonnegative_int, metavar="N",
                   help="--backend local: N worker processes (one training each; one per GPU "
                        "when there are GPUs)")
    g.add_argument("--address", metavar="ADDR",
                   help="--backend ray: the cluster (auto, HOST:PORT, ray://HOST:PORT); "
                        "default: a local one")
    g.add_argument("--gpus-per-run", type=float, default=0.0, metavar="F",
                   help="GPUs each training asks Ray for (default 0)")
    g.add_argument("--cpus-per-run", type=float, default=1.0, metavar="N",
                   help="CPUs each training asks for, and its torch threads (default 1)")
    g.add_argument("--storage", metavar="PATH|URL",
                   help="checkpoints and worker records on a location every worker reaches: a "
                        "shared path or an fsspec URL (default: the experiment directory)")
    g.add_argument("--retries", type=nonnegative_int, default=2, metavar="N",
                   help="times a training whose worker died is run again (default 2)")


def options_from_args(args: Any) -> BackendOptions:
    """:class:`BackendOptions` from parsed ``expost run`` / ``sweep`` arguments."""
    return BackendOptions(backend=args.backend, jobs=args.jobs, address=args.address,
                          gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                          storage=args.storage, retries=args.retries)
