"""Image files decoded once: a memory-mapped cache of pre-resized uint8 images.

Disk-backed image sets (ChestX-ray14, ``imagefolder``) decode every image of
every epoch otherwise: about 36 ms per 1024 x 1024 PNG. :func:`build_cache`
decodes and resizes each file once, in a process pool, into one ``.npy`` file
(:func:`numpy.lib.format.open_memmap`: a plain array with a header, no pickle)
of shape ``(n, S, S, C)``. Epochs then read rows of that file
(:class:`CachedImageDataset`), never the image files.

Files, in the cache folder (:func:`cache_folder`), for a spec with key ``K``::

    <prefix>-<K[:20]>.npy        the images, uint8 (n, S, S, C)
    <prefix>-<K[:20]>.done.npy   bool (n,): rows written and flushed (replaced atomically)
    <prefix>-<K[:20]>.json       the manifest: the full key, shape, size, mode, complete
    <prefix>-<K[:20]>.lock       held while building (one builder at a time)

The key (:meth:`CacheSpec.key`) hashes the file list (relative names, sizes,
modification times, in order), the image size, the colour mode and the resize
method, so a changed, added or removed file or another size is a different
cache: a stale one is never read. A build killed at any point resumes where
the done-mask says it stopped; a row is marked done only after it is flushed.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np
import torch
from numpy.typing import NDArray

from ..._atomic import atomic_open, atomic_write
from ._base import ImageArrayDataset

#: Environment variable naming a folder for image caches (instead of beside the data).
CACHE_ENV = "EXPOST_CACHE"

#: Folder created beside the data when neither the option nor ``$EXPOST_CACHE`` is set.
CACHE_SUBDIR = ".expost-cache"

#: Changes whenever the cache's content for the same inputs would change.
CACHE_VERSION = 1

#: The one resize method (Pillow's, as the file-reading datasets use).
RESIZE = "bilinear"

Mode = Literal["L", "RGB"]


def decode_resized(path: str | os.PathLike[str], size: int, mode: Mode) -> NDArray[np.uint8]:
    """The image file ``path`` as uint8 ``(size, size, C)``: converted to ``mode``
    (``"L"``: C = 1, ``"RGB"``: C = 3), resized with Pillow's bilinear filter."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is in the experiments extra
        raise ImportError("Reading image files needs Pillow: pip install pillow "
                          "(or pip install 'expost[experiments]').") from exc
    try:
        with Image.open(path) as image:
            out = _to_8bit(image, path).convert(mode).resize((size, size),
                                                             Image.Resampling.BILINEAR)
            arr = np.array(out, dtype=np.uint8)  # a writable copy
    except Image.DecompressionBombError as exc:  # not an OSError: say which file, and why
        raise ValueError(f"{str(path)!r} is too large an image to decode ({str(exc).rstrip('.')}); "
                         "shrink it, or, if you trust the file, raise PIL.Image.MAX_IMAGE_PIXELS."
                         ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"{str(path)!r} cannot be read as an image ({exc}).") from None
    return arr.reshape(size, size, -1)


def _to_8bit(image: Any, path: str | os.PathLike[str]) -> Any:
    """A 16-bit or 32-bit grayscale image as 8-bit "L", its values scaled by 255 / 65535;
    other images as they are.

    Pillow's ``convert`` clips such values at 255: a 16-bit PNG came out nearly white
    (its mean 0.999 of the range against the file's 0.485). A 32-bit integer image
    is read as 16-bit when its values fit in 16 bits; a floating-point one when they
    lie in [0, 255]; otherwise there is no scale to read it by, and a ValueError says so.
    """
    from PIL import Image

    if not (image.mode.startswith("I") or image.mode == "F"):
        return image
    values = np.asarray(image, dtype=np.float64)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode == "F":
        if not (0.0 <= lo and hi <= 255.0):
            raise ValueError(f"{str(path)!r} is a floating-point image with values in "
                             f"[{lo:g}, {hi:g}]; save it as an 8- or 16-bit image (expost "
                             "cannot know its scale).")
        scaled = values
    else:
        if not (0.0 <= lo and hi <= 65535.0):
            raise ValueError(f"{str(path)!r} is a {image.mode} image with values in "
                             f"[{lo:g}, {hi:g}], beyond 16 bits; save it as an 8- or 16-bit "
                             "image.")
        scaled = values * (255.0 / 65535.0)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")


@dataclass(frozen=True)
class CacheSpec:
    """What a cache holds: ``paths`` decoded to ``mode`` at ``size`` x ``size``, in order.

    ``folder`` is where its files go; ``prefix`` starts their names.
    """

    paths: tuple[str, ...]
    size: int
    mode: Mode
    folder: Path
    prefix: str = "images"

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.size, self.size, self.channels)

    def key(self) -> str:
        """SHA-256 of the version, size, mode, resize method and every file's
        relative name, size and modification time (``stat`` of each file)."""
        root = os.path.commonpath(self.paths) if self.paths else ""
        if len(self.paths) == 1:
            root = os.path.dirname(root)
        h = hashlib.sha256(json.dumps(
            [CACHE_VERSION, self.size, self.mode, RESIZE, len(self.paths)]).encode())
        for p in self.paths:
            st = os.stat(p)
            h.update(f"\n{os.path.relpath(p, root)}\t{st.st_size}\t{st.st_mtime_ns}".encode())
        return h.hexdigest()

    def files(self, key: str | None = None) -> dict[str, Path]:
        """The cache's file paths (``npy``, ``done``, ``manifest``, ``lock``)."""
        stem = self.folder / f"{self.prefix}-{(key or self.key())[:20]}"
        return {"npy": stem.with_name(stem.name + ".npy"),
                "done": stem.with_name(stem.name + ".done.npy"),
                "manifest": stem.with_name(stem.name + ".json"),
                "lock": stem.with_name(stem.name + ".lock")}


def cache_folder(option: str | os.PathLike[str] | None, data_root: str | os.PathLike[str]) -> Path:
    """Where the cache goes: the ``cache_dir`` option, else ``$EXPOST_CACHE``, else
    ``<data_root>/.expost-cache`` (beside the data)."""
    if option is not None:
        return Path(option).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(data_root) / CACHE_SUBDIR


# ---------------------------------------------------------------- reading the state
def _manifest(spec: CacheSpec, key: str) -> dict[str, Any]:
    return {"version": CACHE_VERSION, "key": key, "shape": list(spec.shape), "dtype": "uint8",
            "size": spec.size, "mode": spec.mode, "resize": RESIZE, "n_files": len(spec.paths),
            "complete": False}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _load_done(path: Path, n: int) -> NDArray[np.bool_] | None:
    try:
        done = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return done if done.dtype == np.bool_ and done.shape == (n,) else None


def _open_array(path: Path, shape: tuple[int, ...], mode: Literal["r", "r+", "c"]
                ) -> np.memmap[Any, Any] | None:
    """The ``.npy`` file as a memmap when it has the expected shape and dtype, else None."""
    try:
        arr = np.load(path, mmap_mode=mode, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(arr, np.memmap) or arr.dtype != np.uint8 or arr.shape != shape:
        return None
    return arr


def cache_status(spec: CacheSpec) -> dict[str, Any]:
    """The cache's state without building anything: ``{"path", "key", "n", "done",
    "complete"}`` (``done``: rows already written; 0 when there is no valid cache)."""
    key = spec.key()
    files = spec.files(key)
    n = len(spec.paths)
    out = {"path": str(files["npy"]), "key": key, "n": n, "done": 0, "complete": False}
    manifest = _read_json(files["manifest"])
    if manifest is None or manifest.get("key") != key:
        return out
    done = _load_done(files["done"], n)
    if done is None or _open_array(files["npy"], spec.shape, "r") is None:
        return out
    out["done"] = int(done.sum())
    out["complete"] = bool(manifest.get("complete")) and bool(done.all())
    return out


def open_cache(spec: CacheSpec, key: str | None = None) -> np.memmap[Any, Any] | None:
    """The complete cache of ``spec`` as a copy-on-write memmap (writes never reach the
    file), or None when there is none, it is incomplete or stale."""
    key = key or spec.key()
    files = spec.files(key)
    manifest = _read_json(files["manifest"])
    if manifest is None or manifest.get("key") != key or not manifest.get("complete"):
        return None
    done = _load_done(files["done"], len(spec.paths))
    if done is None or not done.all():
        return None
    return _open_array(files["npy"], spec.shape, "c")


# ---------------------------------------------------------------- building
def _write_rows(npy: str, paths: Sequence[str], rows: Sequence[int], size: int,
                mode: Mode) -> list[int]:
    """Worker: decode ``paths`` into ``rows`` of the ``.npy`` file, flush, return the rows."""
    arr = np.load(npy, mmap_mode="r+", allow_pickle=False)
    for row, path in zip(rows, paths, strict=True):
        arr[row] = decode_resized(path, size, mode)
    arr.flush()
    del arr
    return list(rows)


class _Progress:
    """A one-line progress bar on a terminal; a line every 10 s elsewhere."""

    def __init__(self, total: int, done: int, stream: TextIO | None, what: str) -> None:
        self.total, self.start_done, self.done = total, done, done
        self.stream, self.what = stream, what
        self.t0 = self.last = time.monotonic()
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def update(self, k: int, *, final: bool = False) -> None:
        self.done += k
        if self.stream is None:
            return
        now = time.monotonic()
        if not final and now - self.last < (0.2 if self.tty else 10.0):
            return
        self.last = now
        rate = (self.done - self.start_done) / max(now - self.t0, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        line = (f"{self.what} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"images, {rate:.1f}/s, {left / 60:.1f} min left")
        if self.tty:
            print("\r" + line, end="\n" if final else "", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX), held while building; waits for another builder."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _save_done(path: Path, done: NDArray[np.bool_]) -> None:
    with atomic_open(path, "wb") as fh:
        np.save(fh, done, allow_pickle=False)


def _die_with(parent: int) -> None:
    """A worker's initializer: end when the process that made the pool ends.

    Forked workers inherit their parent's open files, the lock files among them (the
    cache's and the run directory's), whose flock is held while any process holds the
    file open. A parent killed with SIGKILL left its workers decoding, so a rerun
    waited on the cache's lock for ever, and ``expost run`` said another process was
    running. Linux's parent-death signal ends each worker with its parent (checked
    once more after it is set, in case the parent died first); elsewhere nothing.
    """
    if sys.platform != "linux":
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return
    if os.getppid() != parent:  # the parent died before the signal was set
        os._exit(1)


def _pool(workers: int) -> cf.ProcessPoolExecutor:
    methods = mp.get_all_start_methods()
    # fork: the workers start at once, without re-importing torch (they only decode images)
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_die_with,
                                  initargs=(os.getpid(),))


def build_cache(spec: CacheSpec, *, workers: int | None = None, chunk: int = 64,
                stream: TextIO | None = sys.stderr, what: str = "Caching images"
                ) -> tuple[np.memmap[Any, Any], int]:
    """Build (or finish) the cache of ``spec``; return it (copy-on-write memmap) and how
    many images this call decoded (0 when it was complete already).

    ``workers`` processes (default: the CPU count; 1 decodes in this process) each
    decode ``chunk`` images at a time into the memory-mapped file and flush it; the
    done-mask is then replaced atomically (at most every second, and at the end), so a
    build killed at any moment resumes with the rows it had marked done. Progress goes
    to ``stream`` (None: silent).
    """
    if not spec.paths:
        raise ValueError(f"No image files to cache (the cache for {spec.prefix!r} would be empty).")
    key = spec.key()
    files = spec.files(key)
    try:
        spec.folder.mkdir(parents=True, exist_ok=True)
        files["lock"].touch()
    except OSError as exc:
        raise PermissionError(
            f"The image cache cannot be written in {str(spec.folder)!r} ({exc.strerror or exc}); "
            f"pass the option cache_dir=FOLDER or set ${CACHE_ENV} to a writable folder, or "
            "turn the cache off with cache=false.") from None
    with _locked(files["lock"]):
        ready = open_cache(spec, key)
        if ready is not None:
            return ready, 0
        n = len(spec.paths)
        manifest = _read_json(files["manifest"])
        done = _load_done(files["done"], n)
        arr = _open_array(files["npy"], spec.shape, "r+")
        if manifest is None or manifest.get("key") != key or done is None or arr is None:
            # nothing valid to resume: start afresh (header first, then an empty mask)
            del arr
            atomic_write(files["manifest"], json.dumps(_manifest(spec, key), indent=1))
            np.lib.format.open_memmap(files["npy"], mode="w+", dtype=np.uint8,
                                      shape=spec.shape).flush()
            done = np.zeros(n, dtype=np.bool_)
            _save_done(files["done"], done)
        else:
            del arr
        todo = np.flatnonzero(~done)
        progress = _Progress(n, n - todo.size, stream, what)
        chunks = [todo[i:i + chunk].tolist() for i in range(0, todo.size, chunk)]
        npy = str(files["npy"])
        n_workers = max(1, min(workers or os.cpu_count() or 1, len(chunks)))
        last_save = time.monotonic()

        def finished(rows: list[int]) -> None:
            nonlocal last_save
            done[rows] = True
            progress.update(len(rows))
            if time.monotonic() - last_save >= 1.0:
                _save_done(files["done"], done)
                last_save = time.monotonic()

        try:
            if n_workers == 1:
                for rows in chunks:
                    finished(_write_rows(npy, [spec.paths[r] for r in rows], rows, spec.size,
                                         spec.mode))
            else:
                with _pool(n_workers) as pool:
                    futures = [pool.submit(_write_rows, npy, [spec.paths[r] for r in rows],
                                           rows, spec.size, spec.mode) for rows in chunks]
                    try:
                        for fut in cf.as_completed(futures):
                            finished(fut.result())
                    except BaseException:
                        for f in futures:
                            f.cancel()
                        raise
        finally:
            _save_done(files["done"], done)
        progress.update(0, final=True)
        atomic_write(files["manifest"], json.dumps({**_manifest(spec, key), "complete": True},
                                                   indent=1))
        out = open_cache(spec, key)
        assert out is not None
        return out, int(todo.size)


def ensure_cache(spec: CacheSpec, *, workers: int | None = None,
                 stream: TextIO | None = sys.stderr, what: str = "Caching images"
                 ) -> tuple[np.memmap[Any, Any], int]:
    """The complete cache of ``spec``, built first if needed (see :func:`build_cache`)."""
    ready = open_cache(spec)
    if ready is not None:
        return ready, 0
    return build_cache(spec, workers=workers, stream=stream, what=what)


# ---------------------------------------------------------------- datasets
def _to_float(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> ``(x / 255 - mean) / std`` float32 (C = 1 broadcasts to len(mean))."""
    x = batch.to(torch.float32).div_(255.0)
    return ((x - mean.to(x.device)) / std.to(x.device)).contiguous()


class ImageFileDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Image files decoded on access (:func:`decode_resized`), normalised per channel.

    A grayscale file (``mode="L"``) with three-value ``mean``/``std`` comes out as
    three equal channels. ``augment``: random horizontal flip (torch's global
    generator), on the training split; :meth:`load` never flips.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], labels: NDArray[np.int64], *,
                 image_size: int, mode: Mode, mean: Sequence[float], std: Sequence[float],
                 augment: bool = False) -> None:
        self.paths = [str(p) for p in paths]
        self.labels = torch.from_numpy(np.array(labels, dtype=np.int64, copy=True))
        self.image_size = image_size
        self.mode = mode
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> torch.Tensor:
        """The normalised image ``index`` (C, S, S), never flipped."""
        raw = torch.from_numpy(decode_resized(self.paths[index], self.image_size, self.mode))
        return _to_float(raw.permute(2, 0, 1)[None], self.mean, self.std)[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.load(index)
        if self.augment and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        return x, self.labels[index]


class CachedImageDataset(ImageArrayDataset):
    """Rows ``rows`` of an image cache (uint8 ``(n, S, S, C)``, memory-mapped), normalised
    per batch like :class:`~expost.experiments.datasets._base.ImageArrayDataset`, whose
    ``get_batch``/``__getitems__`` it shares; ``augment`` is a random horizontal flip.

    ``paths`` (optional) names the files the rows came from, for provenance. When
    ``cache`` is a memmap of a file, pickling (e.g. for DataLoader worker processes)
    sends the file's name and the worker maps it again, instead of the images.
    """

    def __init__(self, cache: NDArray[np.uint8], rows: NDArray[np.int64],
                 labels: NDArray[np.int64], *, mean: Sequence[float], std: Sequence[float],
                 augment: bool = False, paths: Sequence[str] | None = None) -> None:
        super().__init__(torch.from_numpy(cache), torch.from_numpy(np.array(labels, np.int64)),
                         mean=mean, std=std, augment=augment, image_size=None, pad=0)
        self.rows = torch.from_numpy(np.array(rows, dtype=np.int64))
        self.paths = list(paths) if paths is not None else None
        self._file = str(cache.filename) if isinstance(cache, np.memmap) and cache.filename \
            else None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._file is not None:
            state["images"] = None  # mapped again on unpickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.images is None:
            self.images = torch.from_numpy(np.load(self._file, mmap_mode="c",
                                                   allow_pickle=False))

    def __len__(self) -> int:
        return int(self.rows.numel())

    def get_batch(self, indices: Sequence[int] | torch.Tensor,
                  device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        images, labels = self.images[self.rows[idx]], self.labels[idx]
        if device is not None:
            images, labels = images.to(device), labels.to(device)
        return self.transform(images), labels

    def load(self, index: int) -> torch.Tensor:
        """The normalised image ``index`` (C, S, S), never flipped."""
        raw = self.images[int(self.rows[index])]
        return _to_float(raw.permute(2, 0, 1)[None], self.mean, self.std)[0]


def image_splits(paths: Sequence[str], parts: dict[str, NDArray[np.int64]],
                 labels: NDArray[np.int64], *, image_size: int, mode: Mode,
                 mean: Sequence[float], std: Sequence[float], augment: bool,
                 cache: bool, folder: Path, prefix: str, workers: int | None = None,
                 stream: TextIO | None = sys.stderr
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The train/val/test datasets of image files ``paths`` (``parts``: each split's indices
    into ``paths``), read from the cache (built first when missing) or from the files;
    and ``DataSplits.meta`` entries: ``cache`` (where, how many built now) and ``cache_spec``
    (a :class:`CacheSpec`, for :func:`cache_status`)."""
    spec = CacheSpec(tuple(str(p) for p in paths), image_size, mode, folder, prefix)
    out: dict[str, Any] = {}
    make: Callable[[str, NDArray[np.int64]], torch.utils.data.Dataset[Any]]
    if cache:
        array, built = ensure_cache(spec, workers=workers, stream=stream,
                                    what=f"Caching {prefix} images")
        info: dict[str, Any] = {"path": str(spec.files()["npy"]), "built_now": built,
                                "images": len(paths), "shape": list(spec.shape)}

        def make(split: str, idx: NDArray[np.int64]) -> torch.utils.data.Dataset[Any]:
            return CachedImageDataset(array, idx, labels[idx], mean=mean, std=std,
                                      augment=augment and split == "train",
                                      paths=[spec.paths[i] for i in idx])
    else:
        info = {"path": None, "off": True}

        def make(split: str, idx: NDArray[np.int64]) -> torch.utils.data.Dataset[Any]:
            return ImageFileDataset([spec.paths[i] for i in idx], labels[idx],
                                    image_size=image_size, mode=mode, mean=mean, std=std,
                                    augment=augment and split == "train")
    for split, idx in parts.items():
        out[split] = make(split, idx)
    return out, {"cache": info, "cache_spec": spec}
