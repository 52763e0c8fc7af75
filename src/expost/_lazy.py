"""Lazy package exports: a name is imported from its submodule on first access.

Used by ``expost.experiments`` (so ``metrics`` and ``regimes`` do not pull in
torch) and ``expost.report`` (so ``report.table`` does not pull in matplotlib).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str], namespace: dict[str, Any]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` for ``{name: submodule}``.

    A resolved name is stored in ``namespace`` (the package's globals), so each
    submodule is imported once.
    """

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
