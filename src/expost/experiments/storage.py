"""Where an experiment's checkpoints and worker records live: a path or an fsspec URL.

``expost run --storage LOCATION`` names a location every worker reaches: a
path on a shared file system (NFS, Lustre, a mounted bucket) or, when
``fsspec`` is installed, any fsspec URL (``s3://bucket/expost``,
``gs://...``, ``file:///scratch/expost``). Each experiment gets its own folder
in it, named by its config hash, holding

* ``checkpoints/<train_key>/ckpt-<interval>.pt`` (the same relative paths the
  results store records), and
* ``spool/<train_key>/i<interval>.{npz,json}``: the interval records workers
  write and the driver ingests into the store, then deletes
  (:mod:`~expost.experiments.spool`).

Without ``--storage`` the location is the experiment directory itself, as for a
sequential run. Every write is atomic: a temporary file renamed into place on a
path; on an fsspec file system a temporary object moved into place (an object
store's single PUT is atomic already).
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from pathlib import Path

from .._atomic import atomic_open

__all__ = ["Storage", "experiment_storage"]


def _is_url(location: str) -> bool:
    return "://" in location


class Storage:
    """One experiment's folder on a path or an fsspec URL; paths inside it are relative POSIX.

    >>> import tempfile
    >>> s = Storage(tempfile.mkdtemp())
    >>> s.write_bytes("spool/k/a.json", b"{}")
    >>> s.listdir("spool/k"), s.read_bytes("spool/k/a.json")
    (['a.json'], b'{}')
    """

    def __init__(self, location: str | Path) -> None:
        self.location = str(location)
        self.local_root: Path | None = None
        if _is_url(self.location):
            try:
                import fsspec
            except ImportError:
                raise ImportError(
                    f"--storage {self.location!r} is a URL, which needs the 'fsspec' package "
                    "(pip install 'expost[ray]'); or pass a path on a shared file system."
                ) from None
            self.fs, self._root = fsspec.core.url_to_fs(self.location)
            self._root = self._root.rstrip("/")
        else:
            self.local_root = Path(self.location)

    @property
    def remote(self) -> bool:
        """Whether files live behind fsspec (workers then keep a local scratch copy)."""
        return self.local_root is None

    def __repr__(self) -> str:
        return f"Storage({self.location!r})"

    def _path(self, rel: str) -> str:
        return f"{self._root}/{rel}"

    # ------------------------------------------------------------------ files
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel`` whole or not at all."""
        if self.local_root is not None:
            with atomic_open(self.local_root / rel, "wb") as fh:
                fh.write(data)
            return
        target = self._path(rel)
        tmp = f"{target.rsplit('/', 1)[0]}/.{uuid.uuid4().hex}.tmp"
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(tmp, "wb") as fh:
            fh.write(data)
        self.fs.mv(tmp, target)

    def read_bytes(self, rel: str) -> bytes:
        if self.local_root is not None:
            return (self.local_root / rel).read_bytes()
        return bytes(self.fs.cat_file(self._path(rel)))

    def exists(self, rel: str) -> bool:
        if self.local_root is not None:
            return (self.local_root / rel).exists()
        return bool(self.fs.exists(self._path(rel)))

    def listdir(self, rel: str) -> list[str]:
        """The names in folder ``rel`` (sorted; empty when it does not exist), temporary
        files left out."""
        if self.local_root is not None:
            folder = self.local_root / rel
            names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        else:
            path = self._path(rel)
            names = ([str(p).rstrip("/").rsplit("/", 1)[-1]
                      for p in self.fs.ls(path, detail=False)]
                     if self.fs.isdir(path) else [])
        return sorted(n for n in names if not n.startswith("."))

    def remove(self, rel: str) -> None:
        """Delete a file (nothing when it is gone already)."""
        if self.local_root is not None:
            (self.local_root / rel).unlink(missing_ok=True)
        elif self.fs.exists(self._path(rel)):
            self.fs.rm(self._path(rel))

    def remove_tree(self, rel: str) -> None:
        """Delete a folder and everything in it (nothing when it does not exist)."""
        if self.local_root is not None:
            shutil.rmtree(self.local_root / rel, ignore_errors=True)
        elif self.fs.exists(self._path(rel)):
            self.fs.rm(self._path(rel), recursive=True)

    # ------------------------------------------------------------------ local copies
    def upload(self, local: Path, rel: str) -> None:
        """Copy the local file ``local`` to ``rel`` atomically (no-op when it is that file)."""
        if self.local_root is not None and (self.local_root / rel).resolve() == local.resolve():
            return
        with open(local, "rb") as fh:
            self.write_bytes(rel, fh.read())

    def download(self, rel: str, local: Path) -> bool:
        """Copy ``rel`` to the local file ``local`` atomically; False when ``rel`` is absent."""
        if self.local_root is not None and (self.local_root / rel).resolve() == local.resolve():
            return local.is_file()
        if not self.exists(rel):
            return False
        with atomic_open(local, "wb") as fh:
            shutil.copyfileobj(io.BytesIO(self.read_bytes(rel)), fh)
        return True


def experiment_storage(storage: str | Path | None, run_dir: Path, digest: str) -> Storage:
    """The storage of one experiment: ``run_dir`` itself without ``storage``, else the folder
    ``<storage>/<config hash[:16]>`` (one per experiment, so experiments can share one)."""
    if storage is None:
        return Storage(run_dir)
    location = str(storage).rstrip("/") if _is_url(str(storage)) else os.fspath(storage)
    sub = digest[:16]
    return Storage(f"{location}/{sub}" if _is_url(location) else Path(location) / sub)
