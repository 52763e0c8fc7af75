r"""Numeric matrices from CSV (or ``.npy``) files with an optional header row (the command
line's input).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "u.csv"
>>> _ = path.write_text("cat,dog\n1,0\n0,3\n")
>>> read_csv_matrix(path, "--utility")
(array([[1., 0.],
       [0., 3.]]), ['cat', 'dog'])
>>> _ = path.write_text("0,1\n0.2,0.8\n")       # class names or a row of data?
>>> read_csv_matrix(path, "--probs", header=True)
(array([[0.2, 0.8]]), ['0', '1'])
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["CsvMatrix", "read_csv_matrix", "read_csv_rows"]


class CsvMatrix(NamedTuple):
    """A matrix read by :func:`read_csv_rows`, with where each of its rows came from."""

    values: np.ndarray  #: float64, one row per data row of the file
    header: list[str] | None  #: the header row's cells, if the file has one
    lines: np.ndarray | None  #: each row's row number in the file (from 1); None for .npy
    path: Path

    def row(self, i: int, j: int | None = None) -> str:
        """Where data row ``i`` (and column ``j``), both from 0, are, for messages: the
        file's own row and column numbers, from 1, as the reader's errors give them
        (``row 5, column 2 of 'p.csv'``); in a .npy array, the indices, from 0."""
        if self.lines is None:
            col = "" if j is None else f", column {j}"
            return f"row {i}{col} (counting from 0) of {str(self.path)!r}"
        col = "" if j is None else f", column {j + 1}"
        return f"row {int(self.lines[i])}{col} of {str(self.path)!r}"


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _is_header(first: list[str], class_names: Sequence[str] | None, name: str, where: str,
               line: int) -> bool:
    """Whether the first row is a header, when the caller did not say (see read_csv_matrix)."""
    if any(c == "" for c in first):
        return False  # class names are never empty: a data row with a missing value
    if any(_number(c) is None for c in first):
        return True
    if class_names is not None and first == [str(c) for c in class_names]:
        return True
    if len(first) >= 2 and first == [str(k) for k in range(len(first))]:
        raise ValueError(
            f"`{name}`: row {line} of {where} ({','.join(first)}) may be a header of class "
            "names or a row of numbers; say which with --header or --no-header."
        )
    return False


def _csv_rows(text: str, name: str, where: str) -> list[tuple[int, list[str]]]:
    """(file row, stripped cells) of each row of ``text`` that is not blank (a row with
    only empty or blank cells is blank). What ``csv`` refuses (a cell longer than its
    field limit, a NUL byte in strict mode) is a ValueError naming the file's row."""
    reader = csv.reader(io.StringIO(text))
    rows = []
    try:
        for r in reader:
            if r and any(c.strip() for c in r):
                rows.append((reader.line_num, [c.strip() for c in r]))
    except csv.Error as exc:
        raise ValueError(f"`{name}`: row {reader.line_num} of {where} cannot be read as "
                         f"CSV ({exc}).") from None
    return rows


def _parsed(lines: list[str], width: int) -> np.ndarray | None:
    """Rows of ``width`` numbers, by numpy's parser (about 3x faster than a cell at a
    time: ``benchmarks/decide_csv.py``), or None if it refuses one: then the reader
    that names the row and the cell runs. Whatever numpy's parser accepts, ``float``
    reads as the same number; it refuses some that ``float`` reads (``1_000``, digits
    of other scripts), which the reader then reads as before."""
    try:
        values = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        return None
    return values if values.shape == (len(lines), width) else None


def _read_npy(p: Path, name: str) -> np.ndarray:
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"`{name}`: {str(p)!r} is not a readable .npy array of numbers "
                         f"({exc}).") from None
    except MemoryError:
        raise ValueError(f"`{name}`: {str(p)!r} declares an array of shape {_npy_shape(p)}, too "
                         "large for this machine's memory (or a damaged header).") from None
    if arr.ndim != 2 or arr.dtype.kind not in "biuf" or arr.size == 0:
        raise ValueError(f"`{name}`: {str(p)!r} must hold a non-empty 2-D array of numbers, "
                         f"got shape {arr.shape} of dtype {arr.dtype}.")
    return np.array(arr, dtype=np.float64)


def _npy_shape(p: Path) -> str:
    """The shape a .npy file's header declares, for a message ("unknown" if unreadable)."""
    try:
        with p.open("rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read = (np.lib.format.read_array_header_1_0 if major == 1
                    else np.lib.format.read_array_header_2_0)
            return str(read(fh)[0])
    except (OSError, ValueError):
        return "unknown"


def read_csv_matrix(path: str | Path, name: str, *, class_names: Sequence[str] | None = None,
                    header: bool | None = None) -> tuple[np.ndarray, list[str] | None]:
    """The matrix and header of :func:`read_csv_rows`."""
    got = read_csv_rows(path, name, class_names=class_names, header=header)
    return got.values, got.header


def read_csv_rows(path: str | Path, name: str, *, class_names: Sequence[str] | None = None,
                  header: bool | None = None) -> CsvMatrix:
    """A numeric matrix from a CSV file with an optional header row, or from a ``.npy`` file.

    ``header`` True or False says whether the first row is a header. With None
    (the default) it is one when all its cells are non-empty and one of them is
    not a number, or when it equals ``class_names``; a first row of numbers
    that reads ``0,1,...`` could be either and is refused (say which). An empty
    cell is a missing value, an error. Blank lines are skipped; row numbers in
    messages are those of the file, counted from 1 (:meth:`CsvMatrix.row` names
    them so for the caller's messages too). Returns the float64 matrix, the header
    (None without one) and the file row of each data row. Errors name the argument,
    the file, the row and the cell.
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"`{name}`: {str(p)!r} is a folder; expected a CSV or .npy file.")
    if not p.exists():  # a pipe (<(...)) or a device is read like a file
        raise FileNotFoundError(f"`{name}`: the file {str(p)!r} does not exist.")
    if p.suffix.lower() == ".npz":
        raise ValueError(f"`{name}`: {str(p)!r} is an .npz archive (several arrays); expected a "
                         "CSV or .npy file: save the one array to use with numpy.save.")
    if p.suffix.lower() == ".npy":
        return CsvMatrix(_read_npy(p, name), None, None, p)
    where = repr(str(p))
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"`{name}`: {where} is not UTF-8 text (byte {exc.start}); save it "
                         "as UTF-8 CSV.") from None
    cells: list[tuple[int, list[str]]] | None = None  # (file row, cells) of each row
    if '"' in text:  # quoted cells (a comma or a line break may sit inside one): csv reads them
        cells = _csv_rows(text, name, where)
        numbered = [line for line, _ in cells]
        first = cells[0][1] if cells else []
    else:  # each line is a row, its cells split at commas, as csv would read it
        lines = text.split("\n")
        numbered = [i + 1 for i, ln in enumerate(lines) if ln.replace(",", "").strip()]
        first = [c.strip() for c in lines[numbered[0] - 1].split(",")] if numbered else []
    if not numbered:
        raise ValueError(f"`{name}`: {where} is empty.")
    names = None
    if header or (header is None and _is_header(first, class_names, name, where, numbered[0])):
        names = first
        numbered = numbered[1:]
    if not numbered:
        raise ValueError(f"`{name}`: {where} has a header but no rows of numbers.")
    if names is not None and len(set(names)) != len(names):
        twice = next(c for c in names if names.count(c) > 1)
        raise ValueError(f"`{name}`: the header of {where} names the class {twice!r} more than "
                         "once; each column needs its own class name.")
    width = len(names) if names is not None else len(first)
    if cells is None:
        values = _parsed([lines[line - 1] for line in numbered], width)
        if values is not None:
            return CsvMatrix(values, names, np.array(numbered), p)
        cells = _csv_rows(text, name, where)  # something is wrong: the reader below says where
    rows = cells[len(cells) - len(numbered):]
    out = np.empty((len(rows), width))
    for i, (line, row) in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"`{name}`: row {line} of {where} has {len(row)} "
                             f"cell{'' if len(row) == 1 else 's'}, expected {width}.")
        for j, cell in enumerate(row):
            v = _number(cell)
            if v is None:
                what = "is empty (a missing value)" if cell == "" else \
                    f"is not a number: {cell[:50]!r}"
                raise ValueError(f"`{name}`: row {line}, column {j + 1} of {where} {what}.")
            out[i, j] = v
    return CsvMatrix(out, names, np.array([line for line, _ in rows]), p)
