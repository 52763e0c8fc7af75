"""argparse types shared by the ``expost`` command and the report's subcommands.

Each turns one command-line word into a value or raises
``argparse.ArgumentTypeError`` saying what was expected and what arrived, which
argparse prints as ``expost <command>: error: argument --x: ...``.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["nonnegative_int", "positive_float"]


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
