"""The command line's CSV reader: numpy's parser for the plain files, the cell-by-cell
reader for quoted ones and for anything numpy's parser refuses; both give the same
matrix, header and file rows, and the same errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expost import _csv_input
from expost._csv_input import read_csv_rows

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
FORMATS = [repr, lambda v: f"{v:.17g}", lambda v: f"{v:.17e}", lambda v: f"  {v!r}\t"]


def _cell_by_cell(monkeypatch: pytest.MonkeyPatch, path, **kwargs):
    """``read_csv_rows`` with numpy's parser switched off: the reader that reads a cell at a time."""
    with monkeypatch.context() as m:
        m.setattr(_csv_input, "_parsed", lambda lines, width: None)
        return read_csv_rows(path, "--probs", **kwargs)


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.values, b.values)
    assert a.header == b.header
    np.testing.assert_array_equal(a.lines, b.lines)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 6), m=st.integers(1, 4), fmt=st.sampled_from(FORMATS),
       header=st.booleans(), crlf=st.booleans(), bom=st.booleans())
def test_numpys_parser_reads_what_the_cell_reader_reads(tmp_path_factory, data, n, m, fmt, header,
                                                        crlf, bom):
    values = np.array(data.draw(st.lists(st.lists(finite, min_size=m, max_size=m), min_size=n,
                                         max_size=n)))
    blank = data.draw(st.lists(st.sampled_from(["", "  ", ",,", " , "]), max_size=3))
    lines = ([",".join(f"c{j}" for j in range(m))] if header else [])
    lines += [",".join(fmt(float(v)) for v in row) for row in values]
    for b in blank:  # blank lines anywhere but before the header
        lines.insert(data.draw(st.integers(1 if header else 0, len(lines))), b)
    path = tmp_path_factory.mktemp("csv") / "p.csv"
    text = ("\r\n" if crlf else "\n").join(lines) + "\n"
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    monkeypatch = pytest.MonkeyPatch()
    parsed, real = [], _csv_input._parsed
    with monkeypatch.context() as m:
        m.setattr(_csv_input, "_parsed", lambda lines, width: parsed.append(real(lines, width)) or parsed[-1])
        got = read_csv_rows(path, "--probs", header=header)
    assert len(parsed) == 1 and parsed[0] is got.values  # numpy's parser read it
    _same(got, _cell_by_cell(monkeypatch, path, header=header))
    np.testing.assert_array_equal(got.values, values)  # every number exactly as written
    data_rows = [i + 1 for i, ln in enumerate(lines) if ln.replace(",", "").strip()][int(header):]
    assert got.lines.tolist() == data_rows


def test_what_numpys_parser_refuses_is_read_as_before(tmp_path, monkeypatch):
    """``float`` reads underscores and other scripts' digits; numpy's parser does not, so
    such a file takes the cell-by-cell reader and reads as it always did."""
    path = tmp_path / "p.csv"
    path.write_text("a,b\n0.25,0.75\n1_0,\u0661\n", encoding="utf-8")
    got = read_csv_rows(path, "--probs")
    np.testing.assert_array_equal(got.values, [[0.25, 0.75], [10.0, 1.0]])
    _same(got, _cell_by_cell(monkeypatch, path))


def test_quoted_cells_are_read_by_csv(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('"cat","dog, big"\n"0.5",0.5\n\n0.25,"0.75"\n')
    got = read_csv_rows(path, "--probs")
    assert got.header == ["cat", "dog, big"] and got.lines.tolist() == [2, 4]
    np.testing.assert_array_equal(got.values, [[0.5, 0.5], [0.25, 0.75]])


@pytest.mark.parametrize(("text", "message"), [
    ("0.5,0.5\n\n0.5,\n", "row 3, column 2 of '{p}' is empty (a missing value)."),
    ("0.5,0.5\n0.2,0.3,0.5\n", "row 2 of '{p}' has 3 cells, expected 2."),
    ("a,b\n0.5,half\n", "row 2, column 2 of '{p}' is not a number: 'half'."),
    ("0.5,0.5\n0.2\x00,0.8\n", "row 2, column 1 of '{p}' is not a number: '0.2\\x00'."),
    ("0.5,0.5\n0x1,0.8\n", "row 2, column 1 of '{p}' is not a number: '0x1'."),
    ("0.5,0.5\n0.5\n", "row 2 of '{p}' has 1 cell, expected 2."),
])
def test_errors_name_the_row_and_cell_as_before(tmp_path, monkeypatch, text, message):
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(ValueError) as fast:
        read_csv_rows(path, "--probs")
    with pytest.raises(ValueError) as slow:
        _cell_by_cell(monkeypatch, path)
    assert str(fast.value) == str(slow.value) == f"`--probs`: {message.format(p=path)}"
