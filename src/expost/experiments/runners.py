"""Run a whole experiment: plan its trainings, resume what is unfinished, report progress.

:func:`run_experiment` is what ``expost run`` calls. It validates the config,
opens (or creates) the experiment directory, refuses a directory that holds a
different experiment (config hash mismatch) unless asked to start afresh,
loads the data set, resolves the objective, and runs every unfinished training
with the local runner, one after another. Re-running the same command resumes:
finished trainings are skipped, unfinished ones continue from their last
checkpoint.

An optional Ray runner (:class:`RayRunner`) runs the trainings of different
seeds in parallel processes that share the directory (SQLite in WAL mode
serialises their commits); Ray is imported only when it is used.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .config import ExperimentConfig, config_hash, load_config
from .objective import reported_recall_class, resolve_objective
from .progress import _reporter
from .regimes import TRAININGS, plan_trainings
from .store import DB_NAME, ResultStore

__all__ = [
    "ExperimentMismatchError",
    "LocalRunner",
    "RayRunner",
    "diverged_trainings",
    "prepare_experiment",
    "run_experiment",
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


def _check_directory(run_dir: Path, digest: str, force_new: bool) -> tuple[bool, bool]:
    """``(exists, moved)``: whether ``run_dir`` holds this experiment already, and whether
    another one was moved aside (``force_new``); refuses another one otherwise."""
    if not (run_dir / DB_NAME).is_file():
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
_OWN_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "checkpoints", "report")


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
def prepare_experiment(config: ExperimentConfig, run_dir: Path, *, exists: bool) -> Any:
    """Load the data, resolve the objective, create or check the store; return the setup
    and the training jobs."""
    from .datasets import data_provenance, load_dataset
    from .train import TrainingJob, TrainingSetup, eval_steps, resolve_device

    data = load_dataset(config.dataset.name, seed=config.dataset.seed, **config.dataset.options)
    objective = resolve_objective(config.objective, data)
    recall_of = reported_recall_class(objective, data)
    device = resolve_device(config.device)
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
            "regimes": list(config.regimes),
            "seeds": list(config.seeds),
        }
        store = ResultStore.create(run_dir, info, arrays={
            "test_labels": np.asarray(data.test_labels, dtype=np.int64),
            "val_labels": np.asarray(data.val_labels, dtype=np.int64),
            "train_prior": objective.prior})
    setup = TrainingSetup(config=config, data=data, objective=objective, recall_of=recall_of,
                          store=store, run_dir=run_dir, device=device)
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
    """Runs the trainings one after another in this process."""

    def run(self, setup: Any, jobs: Sequence[Any], reporter: Any = None) -> None:
        from .train import run_training

        for job in jobs:
            run_training(setup, job, reporter)


class RayRunner:
    """Runs the trainings of different seeds in parallel Ray tasks (optional).

    Each task reopens the experiment directory and runs its seed's trainings in
    order (MetaCost after the training it relabels with); the store's WAL
    journal serialises the commits. Needs ``pip install ray``.
    """

    def __init__(self, num_cpus_per_task: float = 1.0, num_gpus_per_task: float = 0.0) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError(
                "The Ray runner needs the 'ray' package (pip install 'ray[default]'); "
                "use the local runner (the default) otherwise."
            ) from None
        self.num_cpus = num_cpus_per_task
        self.num_gpus = num_gpus_per_task

    def run(self, setup: Any, jobs: Sequence[Any], reporter: Any = None) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(ignore_reinit_error=True)
        by_seed: dict[int, list[Any]] = {}
        for job in jobs:
            by_seed.setdefault(job.seed, []).append(job)
        config = setup.config.model_dump(mode="json")
        remote = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus)(_ray_task)
        ray.get([remote.remote(config, str(setup.run_dir), [j.train_key for j in js])
                 for js in by_seed.values()])


def _ray_task(config: dict[str, Any], run_dir: str, keys: list[str]) -> None:  # pragma: no cover
    from .train import run_training

    cfg = load_config(config)
    setup, jobs = prepare_experiment(cfg, Path(run_dir), exists=True)
    try:
        for job in jobs:
            if job.train_key in keys:
                run_training(setup, job, None)
    finally:
        setup.store.close()


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
    runner : LocalRunner or RayRunner, optional
    stream : text stream, optional
        Where quiet log lines go (default stdout).

    Returns
    -------
    Path
        The experiment directory, ready for :class:`~expost.experiments.store.ResultStore`
        and :func:`expost.report.build_outputs`.
    """
    import torch

    cfg = load_config(config, overrides=overrides)
    if output_dir is not None:
        cfg = cfg.model_copy(update={"output_dir": str(output_dir)})
    run_dir = cfg.run_dir
    digest = config_hash(cfg)
    threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    reporter: Any = None
    t0 = time.perf_counter()
    try:
        with ExitStack() as stack:
            stack.enter_context(_directory_lock(run_dir))  # before anything is moved aside
            exists, _ = _check_directory(run_dir, digest, force_new)
            stack.enter_context(_blas_threads(cfg.num_threads))
            setup, jobs = prepare_experiment(cfg, run_dir, exists=exists)
            try:
                if progress:
                    reporter = _reporter(quiet, stream, len(jobs))
                (runner or LocalRunner()).run(setup, jobs, reporter)
            finally:
                if reporter is not None:
                    reporter.close()
                setup.store.close()
    finally:
        torch.set_num_threads(threads)
    if progress and quiet:
        print(f"experiment {cfg.name!r} done in {time.perf_counter() - t0:.1f} s: {run_dir}",
              file=stream if stream is not None else sys.stdout, flush=True)
    return run_dir

