"""Where matplotlib keeps its configuration and font cache, settled before it is imported.

Where the user's home is not writable (a container run as another user, ``HOME``
unset or read-only), matplotlib makes a temporary folder itself but first prints
a two-line warning on every command. :func:`settle`, called by ``expost.report``'s
``__init__`` before any of its modules imports matplotlib, gives it a temporary
folder without the warning in that case (``MPLCONFIGDIR``), and leaves everything
as it is otherwise.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _writable(folder: Path) -> bool:
    """Could matplotlib use ``folder`` (create it if need be, then write in it)?"""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def settle() -> None:
    """Set ``MPLCONFIGDIR`` to a new temporary folder if matplotlib's own would not do."""
    if os.environ.get("MPLCONFIGDIR"):
        return
    try:
        home = Path.home()
    except (RuntimeError, KeyError):  # no home at all
        home = Path("/nonexistent")
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "matplotlib"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "matplotlib"
    if not (_writable(config) and _writable(cache)):
        os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="expost-matplotlib-")
