"""How fast ``expost decide`` reads a large CSV of probabilities, side by side in one run.

The command line's reader (:func:`expost._csv_input.read_csv_rows`) parses a file
without quoted cells with numpy's parser and falls back to reading a cell at a time,
which names the row and cell of what is wrong, only when numpy's parser refuses
something. This times, interleaved over rounds on one file (``--rows`` x ``--classes``
float64 values written with ``repr``, a header of class names):

* ``numpy parser``: ``read_csv_rows`` as it runs;
* ``cell by cell``: the same with numpy's parser switched off (the reader before it);
* ``expost decide``: the whole command in this process, reading, deciding and writing
  the decisions' CSV.

Run: ``python benchmarks/decide_csv.py [--rows 200000] [--classes 15] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np

from expost import _csv_input
from expost.cli import main as cli


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--classes", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.ones(args.classes), size=args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        probs, util, out = d / "p.csv", d / "u.csv", d / "decisions.csv"
        names = [f"c{k}" for k in range(args.classes)]
        probs.write_text(",".join(names) + "\n" + "\n".join(",".join(map(repr, row)) for row in q.tolist())
                         + "\n")
        np.savetxt(util, np.diag(np.arange(1.0, args.classes + 1)), delimiter=",",
                   header=",".join(names), comments="")
        mib = probs.stat().st_size / 2**20

        def numpy_parser() -> None:
            _csv_input.read_csv_rows(probs, "--probs")

        def cell_by_cell() -> None:
            real = _csv_input._parsed
            _csv_input._parsed = lambda lines, width: None
            try:
                _csv_input.read_csv_rows(probs, "--probs")
            finally:
                _csv_input._parsed = real

        def decide() -> None:
            with contextlib.redirect_stderr(io.StringIO()):
                assert cli(["decide", "--utility", str(util), "--probs", str(probs),
                            "--out", str(out)]) == 0

        fns = {"numpy parser": numpy_parser, "cell by cell": cell_by_cell, "expost decide": decide}
        np.testing.assert_array_equal(_csv_input.read_csv_rows(probs, "--probs").values, q)
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.repeat):
            for k, fn in fns.items():
                times[k].append(_timed(fn))
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"{args.rows:,} rows x {args.classes} classes ({mib:.1f} MiB of CSV); median of "
          f"{args.repeat} interleaved rounds")
    print(f"{'step':<16} {'median s':>9} {'rows/s':>11} {'x numpy parser':>15}")
    for k, t in med.items():
        print(f"{k:<16} {t:>9.3f} {args.rows / t:>11,.0f} {t / med['numpy parser']:>14.2f}x")


if __name__ == "__main__":
    main()
