"""Run a whole experiment: plan its trainings, resume what is unfinished, report progress.

:func:`run_experiment` is what ``expost run`` calls. It validates the config,
opens (or creates) the experiment directory, refuses a directory that holds a
different experiment (config hash mismatch) unless asked to start afresh,
loads the data set, resolves the objective, and runs every unfinished training:
in this process one after another (:class:`LocalRunner`, the default), or in a
local process pool or on Ray (:mod:`~expost.experiments.backends`), the
process that called it being the only writer of the store. Re-running the same
command resumes: finished trainings are skipped, unfinished ones continue from
their last checkpoint. :func:`run_experiments` runs several experiments (a
sweep's points) as one pool of trainings.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .._heap import frozen_heap
from .backends import BackendOptions, ExperimentUnit, drive
from .config import ExperimentConfig, config_hash, load_config, unfused_hash
from .objective import reported_recall_class, resolve_objective
from .progress import _reporter
from .regimes import TRAININGS, plan_trainings
from .storage import Storage, experiment_storage
from .store import DB_NAME, ResultStore, check_store_entry

__all__ = [
    "BackendOptions",
    "ExperimentMismatchError",
    "LocalRunner",
    "diverged_trainings",
    "load_parts",
    "prepare_experiment",
    "run_experiment",
    "run_experiments",
]


class ExperimentMismatchError(RuntimeError):
    """The directory holds a different experiment (its config hash differs)."""


# ---------------------------------------------------------------- provenance
def versions() -> dict[str, str]:
    """Versions of expost, Python, numpy and torch, and the platform."""
    import torch

    from .. import __version__

    return {"expost": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "torch": torch.__version__,
            "platform": platform.platform()}


def git_commit() -> str | None:
    """The commit of the expost source tree when it is a git checkout (None otherwise)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


# ---------------------------------------------------------------- directory handling
@contextmanager
def _directory_lock(run_dir: Path) -> Iterator[None]:
    """One writer per experiment directory (POSIX advisory lock; a no-op elsewhere)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fh = open(run_dir / ".lock", "w")  # held for the whole block
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(
                f"Another expost process is running in {str(run_dir)!r}; wait for it to end "
                "(or stop it: a rerun resumes where it stopped)."
            ) from None
        yield
    finally:
        fh.close()


def _check_directory(run_dir: Path, digest: str, force_new: bool,
                     unfused: str | None = None) -> tuple[bool, bool]:
    """``(exists, moved)``: whether ``run_dir`` holds this experiment already, and whether
    another one was moved aside (``force_new``); refuses another one otherwise
    (``unfused``: this config's hash with ``optimizer.fused: false``, to say so when that
    is the only difference)."""
    db = run_dir / DB_NAME
    check_store_entry(db)
    if not db.is_file():
        return False, False
    try:
        with ResultStore(run_dir) as store:
            old = store.experiment_info()["config_hash"]
    except FileNotFoundError:  # an interrupted creation: start over
        for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
            (run_dir / name).unlink(missing_ok=True)
        return False, False
    if old == digest:
        return True, False
    if not force_new and old == unfused:
        raise ExperimentMismatchError(
            f"{str(run_dir)!r} holds this experiment run with the for-loop Adam (made before "
            "optimizer.fused, default true, existed); resume it with --set optimizer.fused=false, "
            "or pass --force-new to move it aside and start afresh."
        )
    if not force_new:
        raise ExperimentMismatchError(
            f"{str(run_dir)!r} holds a different experiment (config hash {old[:12]} != "
            f"{digest[:12]}). Use another directory (--out DIR), or pass --force-new to move "
            "the old one aside and start afresh."
        )
    aside = _move_aside(run_dir)
    print(f"Moved the previous experiment in {str(run_dir)!r} to {str(aside)!r}.",
          file=sys.stderr)
    return False, True


#: What an experiment directory holds of its own (``--force-new`` moves these only).
_OWN_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "checkpoints", "spool", "workers",
              "report")


def _move_aside(run_dir: Path) -> Path:
    """Move the experiment's own files (and nothing else of the folder, which may hold
    other things) into a new sibling folder ``<dir>.replaced-<time>``; return it."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    resolved = run_dir.resolve()
    aside = resolved.with_name(f"{resolved.name}.replaced-{stamp}")
    n = 1
    while aside.exists():
        aside = resolved.with_name(f"{resolved.name}.replaced-{stamp}-{n}")
        n += 1
    aside.mkdir()
    for name in _OWN_FILES:
        if (run_dir / name).exists() or (run_dir / name).is_symlink():
            shutil.move(str(run_dir / name), str(aside / name))
    return aside


@contextmanager
def _blas_threads(n: int | None) -> Iterator[None]:
    """Limit numpy's BLAS (and OpenMP) threads like torch's while the experiment runs.

    Small models and probes are far faster single-threaded than with threads
    spinning at barriers on a busy machine; ``num_threads`` sets both.
    """
    if n is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=n):
        yield


# ---------------------------------------------------------------- setup
def load_parts(config: ExperimentConfig) -> tuple[Any, Any, int, Any]:
    """The data, resolved objective, recall class and device of a config (what the driver
    and every worker build alike)."""
    from .datasets import load_dataset
    from .train import resolve_device

    data = load_dataset(config.dataset.name, seed=config.dataset.seed, **config.dataset.options)
    objective = resolve_objective(config.objective, data)
    recall_of = reported_recall_class(objective, data)
    return data, objective, recall_of, resolve_device(config.device)


def _labels_digest(data: Any) -> str:
    """A digest of the training, validation and test labels, in order (their sizes too)."""
    h = hashlib.blake2b(digest_size=16)
    for labels in (data.train_labels, data.val_labels, data.test_labels):
        arr = np.ascontiguousarray(np.asarray(labels, dtype=np.int64))
        h.update(str(arr.size).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _changed_labels(store: Any, data: Any) -> str:
    """Which of the stored labels the data set now gives otherwise ("" when none): the test
    and validation labels are stored; the training labels, as a digest (stores made
    since it was recorded). Changed features with the same labels are not detected."""
    changed = []
    for name, now in (("test", data.test_labels), ("validation", data.val_labels)):
        key = "test_labels" if name == "test" else "val_labels"
        try:
            old = store.array(key)
        except KeyError:
            continue
        if not np.array_equal(old, np.asarray(now, dtype=np.int64)):
            changed.append(f"{name} labels")
    digest = store.experiment_info().get("labels_digest")
    if digest is not None and not changed and digest != _labels_digest(data):
        changed.append("training labels")
    return " and ".join(changed)


def prepare_experiment(config: ExperimentConfig, run_dir: Path, *, exists: bool,
                       checkpoint_root: Path | None = None) -> Any:
    """Load the data, resolve the objective, create or check the store; return the setup
    and the training jobs (``checkpoint_root``: where ``checkpoints/`` goes, default
    ``run_dir``)."""
    from .datasets import data_provenance
    from .train import TrainingJob, TrainingSetup, eval_steps

    data, objective, recall_of, device = load_parts(config)
    digest = config_hash(config)
    if exists:
        store = ResultStore(run_dir)
        stored = np.asarray(store.experiment_info()["utility"])
        if not np.array_equal(stored, objective.utility.matrix):
            store.close()
            raise ExperimentMismatchError(
                f"{str(run_dir)!r} was created with a different normalised utility than this "
                "config now gives (has the data set changed?); use --force-new or another "
                "directory."
            )
        changed = _changed_labels(store, data)
        if changed:
            store.close()
            raise ExperimentMismatchError(
                f"{str(run_dir)!r} was created from other data: the data set's {changed} now "
                "differ from those stored (has a data file changed?). Resuming would mix two "
                "data sets in one experiment; use --force-new or another directory."
            )
    else:
        info = {
            "config": config.model_dump(mode="json"),
            "config_hash": digest,
            "versions": versions(),
            "git_commit": git_commit(),
            "utility": objective.utility.matrix.tolist(),
            "inverse_prior_utility": objective.inverse_prior_utility.matrix.tolist(),
            "class_names": list(data.class_names),
            "emphasized": objective.emphasized,
            "objective_note": objective.note,
            "recall_class": recall_of,
            "train_prior": objective.prior.tolist(),
            "dataset": {"name": data.name, "n_train": data.train_labels.size,
                        "n_val": data.val_labels.size, "n_test": data.test_labels.size,
                        "input_shape": list(data.input_shape), **data_provenance(data)},
            "device": str(device),
            "labels_digest": _labels_digest(data),
            "regimes": list(config.regimes),
            "seeds": list(config.seeds),
        }
        store = ResultStore.create(run_dir, info, arrays={
            "test_labels": np.asarray(data.test_labels, dtype=np.int64),
            "val_labels": np.asarray(data.val_labels, dtype=np.int64),
            "train_prior": objective.prior})
    setup = TrainingSetup(config=config, data=data, objective=objective, recall_of=recall_of,
                          store=store, run_dir=checkpoint_root or run_dir, device=device)
    steps, total, _ = eval_steps(config, int(data.train_labels.size))
    plan = plan_trainings(config.regimes, config.seeds)
    needs_best = {TRAININGS[k].relabel_from for _, k, _, _ in plan} - {None}
    jobs = [TrainingJob(key, kind, seed, tuple(runs), keep_best=kind in needs_best)
            for key, kind, seed, runs in plan]
    store.register(
        [{"train_key": j.train_key, "kind": j.kind, "seed": j.seed, "n_intervals": len(steps),
          "total_steps": total} for j in jobs],
        [{"run_id": rid, "regime": reg, "seed": j.seed, "train_key": j.train_key}
         for j in jobs for rid, reg in j.runs],
    )
    return setup, jobs


# ---------------------------------------------------------------- runners
class LocalRunner:
    """Runs the trainings one after another in this process (the default).

    ``between``: called with the setup after each training but the last (``expost run``
    has its report helper read what has finished while the next one trains).
    """

    def __init__(self, between: Callable[[Any], None] | None = None) -> None:
        self.between = between

    def run(self, setup: Any, jobs: Sequence[Any], reporter: Any = None) -> None:
        from .train import run_training

        for k, job in enumerate(jobs):
            run_training(setup, job, reporter)
            if self.between is not None and k + 1 < len(jobs):
                self.between(setup)


def diverged_trainings(run_dir: str | Path) -> list[str]:
    """The keys of the trainings of ``run_dir`` whose status is ``diverged``."""
    with ResultStore(run_dir, readonly=True, check=False) as store:
        return [t["train_key"] for t in store.trainings() if t["status"] == "diverged"]


# ---------------------------------------------------------------- entry point
def run_experiment(
    config: str | Path | Mapping[str, Any] | ExperimentConfig | None = None,
    *,
    output_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    force_new: bool = False,
    quiet: bool = False,
    progress: bool = True,
    runner: Any = None,
    backend: BackendOptions | None = None,
    stream: TextIO | None = None,
) -> Path:
    """Run (or resume) an experiment; return its directory.

    Parameters
    ----------
    config : path, mapping, ExperimentConfig or None
        None runs the embedded default (digits, about a minute on 2 CPU cores).
    output_dir : path, optional
        Overrides the config's ``output_dir`` (default ``runs/<name>``).
    overrides : sequence of str
        ``key.path=value`` edits of the config (see :func:`load_config`).
    force_new : bool
        When the directory holds a different experiment, move its own files
        (database, checkpoints, report) aside into ``<dir>.replaced-<time>`` and
        start afresh instead of refusing; nothing else in the folder is moved.
    quiet : bool
        Plain fixed-column log lines (to ``stream``) instead of progress bars. When
        stderr is not a terminal the same lines go to stderr, one per interval as it
        ends.
    progress : bool
        False: no per-interval output at all.
    runner : object with ``run(setup, jobs, reporter)``, optional
        Runs the trainings of a sequential run (default :class:`LocalRunner`).
    backend : BackendOptions, optional
        Where the trainings run: in this process one after another (the default), a
        local process pool (``jobs``) or Ray (:mod:`~expost.experiments.backends`).
    stream : text stream, optional
        Where quiet log lines go (default stdout).

    Returns
    -------
    Path
        The experiment directory, ready for :class:`~expost.experiments.store.ResultStore`
        and :func:`expost.report.build_outputs`.

    A run that fails before its first interval is committed leaves nothing behind
    that blocks the corrected rerun: when this call created the store, what it
    created (database, checkpoints, spool) is removed.
    """
    cfg = load_config(config, overrides=overrides)
    if output_dir is not None:
        cfg = cfg.model_copy(update={"output_dir": str(output_dir)})
    return run_experiments([cfg], backend=backend, force_new=force_new, quiet=quiet,
                           progress=progress, runner=runner, stream=stream)[0]


def run_experiments(
    configs: Sequence[ExperimentConfig],
    *,
    names: Sequence[str] | None = None,
    backend: BackendOptions | None = None,
    force_new: bool = False,
    quiet: bool = False,
    progress: bool = True,
    runner: Any = None,
    stream: TextIO | None = None,
) -> list[Path]:
    """Run (or resume) several validated experiments (each in its ``run_dir``) as one pool
    of trainings; return their directories. See :func:`run_experiment`."""
    import torch

    options = backend if backend is not None else BackendOptions()
    if runner is not None and not options.sequential:
        raise ValueError("runner: only for a sequential run (no --jobs, --backend local).")
    names = list(names) if names is not None else [""] * len(configs)
    threads = torch.get_num_threads()
    first = configs[0].num_threads if configs else None
    if first is not None:
        torch.set_num_threads(first)
    reporter: Any = None
    t0 = time.perf_counter()
    try:
        with ExitStack() as stack:
            prepared = []
            for cfg in configs:
                stack.enter_context(_directory_lock(cfg.run_dir))  # before anything moves
                prepared.append(_prepare(cfg, options, force_new, stack))
            stack.enter_context(_blas_threads(first))
            stack.enter_context(frozen_heap())
            try:
                if progress:
                    reporter = _reporter(quiet, stream, sum(len(p[3]) for p in prepared))
                if options.sequential:
                    for _, _, setup, jobs, _ in prepared:
                        (runner or LocalRunner()).run(setup, jobs, reporter)
                else:
                    drive([ExperimentUnit(name, cfg.model_dump(mode="json"), setup.store,
                                          storage, jobs, setup.store.training(
                                              jobs[0].train_key)["n_intervals"])
                           for name, (cfg, storage, setup, jobs, _) in
                           zip(names, prepared, strict=True) if jobs],
                          options, reporter)
            except BaseException:
                for cfg, storage, setup, _, kept in prepared:
                    if kept is not None and not setup.store.intervals():  # created by this run
                        _remove_created(cfg.run_dir, storage, setup.store, keep=kept)
                raise
            finally:
                if reporter is not None:
                    reporter.close()
    finally:
        torch.set_num_threads(threads)
    if progress and quiet:
        for cfg in configs:
            print(f"experiment {cfg.name!r} done in {time.perf_counter() - t0:.1f} s: "
                  f"{cfg.run_dir}", file=stream if stream is not None else sys.stdout, flush=True)
    return [cfg.run_dir for cfg in configs]


def _prepare(cfg: ExperimentConfig, options: BackendOptions, force_new: bool, stack: ExitStack
             ) -> tuple[ExperimentConfig, Storage, Any, list[Any], frozenset[str] | None]:
    """Check the directory, open or create the store (closed by ``stack``), plan the jobs.
    The last item: None when the experiment existed; when this run creates it, the run
    folders that were there before (which a failed creation must not remove)."""
    run_dir, digest = cfg.run_dir, config_hash(cfg)
    exists, _ = _check_directory(run_dir, digest, force_new, unfused_hash(cfg))
    storage = experiment_storage(options.storage, run_dir, digest)
    kept = frozenset(sub for sub in _RUN_FOLDERS if (run_dir / sub).exists())  # not ours
    try:
        setup, jobs = prepare_experiment(cfg, run_dir, exists=exists,
                                         checkpoint_root=storage.local_root)
    except BaseException:
        if not exists:
            _remove_created(run_dir, storage, None, keep=kept)
        raise
    stack.callback(setup.store.close)
    return cfg, storage, setup, jobs, None if exists else kept


#: The folders a run makes beside its database.
_RUN_FOLDERS = ("checkpoints", "spool", "workers")


def _remove_created(run_dir: Path, storage: Storage, store: Any,
                    keep: frozenset[str] = frozenset()) -> None:
    """Remove what a run that failed before its first commit created (its database,
    checkpoints, spool), so that the corrected rerun starts afresh; folders in ``keep``
    were there before the run (a lost database's checkpoints, say) and stay."""
    if store is not None:
        store.close()
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"):
        (run_dir / name).unlink(missing_ok=True)
    for sub in _RUN_FOLDERS:
        if sub not in keep:
            storage.remove_tree(sub)
