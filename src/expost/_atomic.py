"""Files written whole or not at all, and paths kept inside a directory.

Every file the ``expost`` commands write goes through :func:`atomic_open` (or
:func:`atomic_write`): the content is written to a temporary file in the same
folder, flushed and ``fsync``-ed, then renamed over the target with
:func:`os.replace`. A process killed or a disk that fills while writing leaves
the previous file as it was (and no temporary file behind when the error is
an exception). A rename replaces a symbolic link, never its target; a device,
pipe or socket (``/dev/stdout``, a named pipe) is written through instead. With
``root`` given, a path that leads outside ``root`` (through ``..`` or a
symbolic link anywhere on the way) is refused before anything is written.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write(d / "a" / "x.txt", "hello", root=d).read_text()
'hello'
>>> try:
...     atomic_write(d / ".." / "x.txt", "no", root=d)
... except ValueError as exc:
...     print("leads outside" in str(exc))
True
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_write", "check_output", "confined"]


def confined(path: str | Path, root: str | Path, *, what: str = "path") -> Path:
    """``path``, refused when it resolves outside the folder ``root``.

    Both are taken as given (relative ones from the working directory).
    Symbolic links are resolved on the way, so a link inside ``root`` that
    points elsewhere is refused too. Returns ``path`` as given, not resolved.

    Raises
    ------
    ValueError
        Naming ``what``, the path and the directory it must stay in.
    """
    root, full = Path(root), Path(path)
    base = root.resolve()
    target = full.resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"{what} {str(path)!r} leads outside {str(root)!r} (to "
                         f"{str(target)!r}); refusing to use it.")
    return full


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", *, root: str | Path | None = None,
                encoding: str | None = "utf-8", newline: str | None = None) -> Iterator[IO[Any]]:
    """A file handle whose content replaces ``path`` only when the block ends without error.

    ``mode`` is ``"w"`` (text) or ``"wb"``. The parent folder is created. With
    ``root``, ``path`` must stay inside it (see :func:`confined`).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"`mode` must be 'w' or 'wb', got {mode!r}.")
    target = Path(path) if root is None else confined(path, root, what="output file")
    if target.is_dir():
        raise IsADirectoryError(21, "is a folder, expected a file path", str(target))
    if _is_stream(target):  # /dev/stdout, /dev/null, a named pipe: written through, not replaced
        # appended: a descriptor redirected to a file (`> log`) keeps what is already there
        binary = mode == "wb"
        with open(target, "ab" if binary else "a", encoding=None if binary else encoding,
                  newline=None if binary else newline) as stream:
            yield stream
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # name the file asked for, not the hidden temporary one
        raise type(exc)(exc.errno, exc.strerror, str(target)) from None
    try:
        if mode == "wb":
            fh: IO[Any] = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", encoding=encoding, newline=newline)
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _is_stream(path: Path) -> bool:
    """Is ``path`` an open stream or a device rather than a file to replace?

    Such a target cannot be replaced: a rename would put a regular file in its place
    (``--out /dev/null`` run as root would replace the device itself), so it is written
    through, as a shell's ``>`` does. It is one when its entry, or any link on the way
    to it, is a file descriptor's (``/dev/stdout``, ``/dev/fd/3``, ``/proc/self/fd/1``:
    the descriptor may be redirected to a regular file, which must not be renamed
    over), or when what it names is a device, pipe or socket. It is opened to append,
    so a descriptor redirected to a file keeps what was written to it before.
    """
    entry = Path(os.path.abspath(path))
    for _ in range(40):  # the link chain, as the kernel follows it (at most 40 links)
        if _FD_ENTRY.fullmatch(entry.as_posix()):
            return True
        if not entry.is_symlink():
            break
        entry = Path(os.path.abspath(entry.parent / os.readlink(entry)))
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing, or a dangling or looping link: an ordinary new file
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


#: A file descriptor's entry: /dev/stdout, /dev/stderr, /dev/fd/N, /proc/<pid or self>/fd/N.
_FD_ENTRY = re.compile(r"/dev/std(?:out|err)|/dev/fd/\d+|/proc/(?:self|thread-self|\d+)/fd/\d+")


def atomic_write(path: str | Path, data: str | bytes, *, root: str | Path | None = None,
                 encoding: str = "utf-8") -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically; return the path."""
    mode = "wb" if isinstance(data, bytes) else "w"
    with atomic_open(path, mode, root=root, encoding=encoding) as fh:
        fh.write(data)
    return Path(path)


def _umask() -> int:
    """The process's umask (mkstemp creates files 0600; outputs get the usual mode)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_not_input(path: str | None, option: str,
                    inputs: Iterable[tuple[str, str | Path]]) -> None:
    """Refuse an output file that would replace one of the command's inputs, before any work.

    ``inputs`` are (what it is, for the message; its path): a file, or a folder that
    ``path`` must not lie in. The check follows what :func:`atomic_open` does: its
    rename replaces the directory entry ``path`` names (a link there is replaced, not
    its target), so ``path`` clashes with an input file when that entry is the input's,
    reached through any links on the way to either, or the same file on a
    case-insensitive file system. An input that does not exist yet is still refused
    as an output (an experiment's ``results.sqlite-wal``, say, exists only while
    SQLite writes).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "p.csv").write_text("0.5,0.5\\n")
    >>> try:
    ...     check_not_input(str(d / "." / "p.csv"), "--out", [("the --probs file", d / "p.csv")])
    ... except ValueError as exc:
    ...     print(str(exc).split(";")[0].endswith("is the --probs file"))
    True
    """
    if path is None:
        return
    target = Path(path).parent.resolve() / Path(path).name  # the entry a rename replaces
    for what, where in inputs:
        q = Path(where)
        entry = q.resolve() if q.exists() else q.parent.resolve() / q.name
        if target.is_relative_to(entry) and (target != entry or q.is_dir()):  # a folder
            relation = "is" if target == entry else "lies in"
            raise ValueError(f"`{option}` {path!r} {relation} {what}; choose a place outside it.")
        if target == entry or (q.is_file() and not target.is_symlink() and target.exists()
                               and os.path.samefile(target, q)):
            raise ValueError(f"`{option}` {path!r} is {what}; writing there would replace it. "
                             "Choose another file.")


def check_output(path: str | None, option: str, *, folder: bool) -> None:
    """Refuse an output that cannot be written, before any work is done.

    ``path`` names a folder to create or reuse (``folder=True``) or a file to
    write; ``option`` is the command-line option it came from, for the message.
    """
    if path is None:
        return
    p = Path(path)
    if folder and p.exists() and not p.is_dir():
        raise ValueError(f"`{option}` {path!r} is a file; expected a folder (an experiment "
                         "directory to create or resume).")
    if not folder and p.is_dir():
        raise ValueError(f"`{option}` {path!r} is a folder; expected a file name.")
    if not folder and str(path).endswith(("/", os.sep)):  # Path() drops the slash: x/ wrote x
        raise ValueError(f"`{option}` {path!r} ends with a slash, which names a folder; "
                         "expected a file name.")
    parent = p if folder else p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"`{option}` {path!r}: {str(parent)!r} is a file, not a folder.")
