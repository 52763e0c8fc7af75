"""argparse types shared by the ``expost`` command and the report's subcommands.

Each turns one command-line word into a value or raises
``argparse.ArgumentTypeError`` saying what was expected and what arrived, which
argparse prints as ``expost <command>: error: argument --x: ...``.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["MAX_RESAMPLES", "MIN_RESAMPLES", "bootstrap_resamples", "nonnegative_int",
           "positive_float"]

#: ``--bootstrap``: 0 (no interval), or enough resamples for a 95% percentile interval
#: (2.5% of them in each tail: at least one; ``expost.report.paired.min_resamples``),
#: and few enough that the resampled indices fit in memory (8 bytes per seed each).
MIN_RESAMPLES = 40
MAX_RESAMPLES = 10_000_000


def positive_float(text: str) -> float:
    """A positive finite number.

    >>> positive_float("2.5")
    2.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """A whole number >= 0.

    >>> nonnegative_int("0")
    0
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def bootstrap_resamples(text: str) -> int:
    """``--bootstrap N``: 0 (no interval) or from :data:`MIN_RESAMPLES` to :data:`MAX_RESAMPLES`.

    One resample gave a zero-width "95% interval" that excluded 0, which the verdict
    then called significant.

    >>> bootstrap_resamples("2000")
    2000
    """
    value = nonnegative_int(text)
    if 0 < value < MIN_RESAMPLES or value > MAX_RESAMPLES:
        raise argparse.ArgumentTypeError(
            f"expected 0 (no interval) or from {MIN_RESAMPLES} (a 95% interval needs one "
            f"resample in each 2.5% tail) to {MAX_RESAMPLES:,} resamples, got {text!r}")
    return value
