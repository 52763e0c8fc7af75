r"""Numeric matrices from CSV files with an optional header row (the command line's input).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "u.csv"
>>> _ = path.write_text("cat,dog\n1,0\n0,3\n")
>>> read_csv_matrix(path, "--utility")
(array([[1., 0.],
       [0., 3.]]), ['cat', 'dog'])
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["read_csv_matrix"]


def read_csv_matrix(path: str | Path, name: str, *, class_names: Sequence[str] | None = None
                    ) -> tuple[np.ndarray, list[str] | None]:
    """A numeric matrix from a CSV file with an optional header row.

    The first row is a header when any of its cells is not a number, or when it
    equals ``class_names`` (so numeric class names such as ``0,1,...,9`` work).
    Returns the float64 matrix and the header (None without one). Errors name
    the argument, the file, the row and the cell.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`{name}`: the file {str(p)!r} does not exist.")
    text = p.read_text(encoding="utf-8-sig")
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"`{name}`: {str(p)!r} is empty.")

    def number(cell: str) -> float | None:
        try:
            return float(cell)
        except ValueError:
            return None

    header = None
    first = [c.strip() for c in rows[0]]
    if any(number(c) is None for c in first) or (
            class_names is not None and first == [str(c) for c in class_names]):
        header = [c.strip() for c in rows[0]]
        rows = rows[1:]
    if not rows:
        raise ValueError(f"`{name}`: {str(p)!r} has a header but no rows of numbers.")
    width = len(header) if header is not None else len(rows[0])
    out = np.empty((len(rows), width))
    for i, row in enumerate(rows):
        line = i + 1 + (header is not None)
        if len(row) != width:
            raise ValueError(f"`{name}`: row {line} of {str(p)!r} has {len(row)} cells, "
                             f"expected {width}.")
        for j, cell in enumerate(row):
            v = number(cell)
            if v is None:
                raise ValueError(f"`{name}`: row {line}, column {j + 1} of {str(p)!r} is not "
                                 f"a number: {cell!r}.")
            out[i, j] = v
    return out, header
