"""Where ``decide``'s two layouts cross: by action against by sample, over utility sizes.

``decide`` computes the expected utilities either by action (``[U; 1'] @ q_block.T``,
then an argmax in whole-row passes) or by sample (``q_block @ U'``, or ``w * q`` for
class weights, then numpy's argmax along each row), and picks one by the size of U
(``_by_sample`` in ``expost._decisions`` and its thresholds) where the compiled row
passes (``expost._rowops``) were not built, or for more than 512 actions. This prints,
for each size, both layouts' time as a ratio to the bare ``q @ U.T`` measured in the
same rounds, and the layout the defaults pick; rerun it to check the thresholds on
another machine. Each case has about ``--mib`` MiB of products (``q @ U.T``'s output).

    OPENBLAS_NUM_THREADS=1 python benchmarks/decide_routes.py [--repeat 7] [--mib 60]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from unittest import mock

import numpy as np
from core import _dense_utility, _interleaved, _probabilities  # benchmarks/core.py

import expost
from expost import _decisions, _rows

#: (actions, classes, class weights?) measured by default.
CASES = [(a, c, False) for c in (5, 15, 60, 100) for a in (44, 64, 100)] + [
    (m, m, True) for m in (15, 20, 30, 36, 40, 44, 100)
]


def _forced(rows_from: int, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` with both thresholds at ``rows_from``: 1 sends every U by sample, 10**9 by action
    (the compiled passes off: with them ``decide`` takes its compiled route up to 512 actions)."""

    def run() -> object:
        with mock.patch.multiple(_decisions, **dict.fromkeys(_decisions._LAYOUT_THRESHOLDS, rows_from)), \
                _rows.numpy_only():
            return fn()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--mib", type=float, default=60.0)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"median over {args.repeat} interleaved rounds of (layout / q@U.T in the same round)")
    print(
        f"{'actions':>8}{'classes':>8}{'utility':>10}{'rows':>10}"
        f"{'by action':>11}{'by sample':>11}{'default':>10}"
    )
    for n_act, n_cls, weights in CASES:
        n = int(args.mib * 2**20 / (4 * n_act))
        q = _probabilities(rng, n, n_cls)
        if weights:
            u = expost.Utility.from_class_weights(rng.uniform(1.0, 5.0, n_cls))
        else:
            u = _dense_utility(rng, n_act, n_cls)
        ut = u.matrix.T.astype(np.float32)
        fns: dict[str, Callable[[], object]] = {
            "q @ U.T": lambda q=q, ut=ut: q @ ut,
            "by action": _forced(10**9, lambda q=q, u=u: expost.decide(q, u)),
            "by sample": _forced(1, lambda q=q, u=u: expost.decide(q, u)),
        }
        times = _interleaved(fns, args.repeat)
        ratio = {k: float(np.median(times[k] / times["q @ U.T"])) for k in ("by action", "by sample")}
        us = _decisions._scaled(u.matrix)
        picked = "sample" if _decisions._by_sample(us) else "action"
        print(
            f"{n_act:>8}{n_cls:>8}{'weights' if weights else 'dense':>10}{n:>10,}"
            f"{ratio['by action']:>10.2f}x{ratio['by sample']:>10.2f}x{picked:>10}",
            flush=True,
        )


if __name__ == "__main__":
    main()
