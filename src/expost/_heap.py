"""Keep Python's cyclic garbage collector off the objects of a long computation's setup."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["frozen_heap"]


@contextmanager
def frozen_heap() -> Iterator[None]:
    """The collector leaves the objects that exist now alone until the block ends.

    Its full collections otherwise walk every object of torch, numpy, matplotlib
    and the harness again and again (0.8 s of the default ``expost run``, most of
    it during the imports; freezing during the trainings and the report saves
    about 0.2 s of it). Objects made inside the block are collected as usual.
    Nested, or inside a caller's :func:`gc.freeze`: nothing changes.

    >>> import gc
    >>> with frozen_heap():
    ...     gc.get_freeze_count() > 0
    True
    >>> gc.get_freeze_count()
    0
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
