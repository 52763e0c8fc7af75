"""A process forked when ``expost run`` starts, to import the report layer beside the run.

Importing the report layer (matplotlib above all) takes about 0.9 s; ``expost run``
would otherwise pay it after the last training, while the user waits. On Linux
with more than one CPU, :meth:`ReportHelper.start` forks a child before the run
imports torch; the child imports :mod:`expost.report.build` while the parent
imports torch and trains, then waits. :meth:`ReportHelper.build` hands it the run
directory, it builds the report (the same :func:`~expost.report.build_outputs`)
and sends back what it wrote and the text the parent then prints: the child
writes only the report's files, never to the terminal.

Whatever goes wrong in the child (an error, a crash, a Ctrl-C) makes
:meth:`~ReportHelper.build` return None, and the caller builds the report itself,
so an error surfaces in the parent as it would without a helper. The child leaves
as soon as the parent closes its end of the pipe, and when the parent dies, since
its read then ends.

Before the report, the child can also run ``tasks``, functions of arrays given at
the start (``expost run`` gives it the logistic-regression probe of
``objective.emphasized: hardest``, :mod:`expost.experiments._probe`, and has it
import scikit-learn first, through ``preload``, beside the parent's import of
torch): :meth:`ReportHelper.ask`. A task that fails or warns there returns None,
and the parent runs it itself, so its errors and warnings reach the user as they
would without a helper.

Between trainings, :meth:`ReportHelper.warm` has the child compute the risk
decomposition of the runs finished so far (it remembers them by the digest of
their inputs) and draw the theory figure (which depends on the objective
only), which the report then finds done; the parent does not wait.

Messages, both ways: an 8-byte length, a JSON header, then the raw bytes of the
arrays the header lists (float64 or int64 only; nothing is unpickled).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import struct
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._render import report_processes, stop_child  # no matplotlib: the child imports it

__all__ = ["ReportHelper"]

#: The array types a message may carry.
_DTYPES = ("<f8", "<i8")
_LENGTH = struct.Struct("<Q")


def _read_exact(fd: int, n: int) -> bytes | None:
    """``n`` bytes from ``fd``; None at the end of the pipe before them."""
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _frame(header: dict[str, Any], arrays: Sequence[Any] = ()) -> bytes:
    """One message: the header (with the arrays' dtypes and shapes added) and the arrays,
    real numbers as float64 and integers (and booleans) as int64; TypeError for others."""
    kinds = {"f": "<f8", "i": "<i8", "u": "<i8", "b": "<i8"}
    arrays = [np.asarray(a) for a in arrays]
    for a in arrays:
        if a.dtype.kind not in kinds:
            raise TypeError(f"a helper message carries real or integer arrays, got {a.dtype}")
    arrays = [np.ascontiguousarray(a, dtype=kinds[a.dtype.kind]) for a in arrays]
    header = {**header, "arrays": [[a.dtype.str, list(a.shape)] for a in arrays]}
    text = json.dumps(header).encode()
    return _LENGTH.pack(len(text)) + text + b"".join(a.tobytes() for a in arrays)


def _recv(fd: int) -> tuple[dict[str, Any], list[NDArray[Any]]] | None:
    """The next message; None at the end of the pipe. ValueError for a malformed one."""
    raw = _read_exact(fd, _LENGTH.size)
    if raw is None:
        return None
    text = _read_exact(fd, _LENGTH.unpack(raw)[0])
    header = json.loads(text) if text is not None else None
    if not isinstance(header, dict):
        raise ValueError("a helper message without a header")
    arrays = []
    listed = header.get("arrays", [])
    for entry in listed if isinstance(listed, list) else [listed]:
        dtype, shape = entry if isinstance(entry, list) and len(entry) == 2 else (entry, None)
        if dtype not in _DTYPES or not isinstance(shape, list) or not all(
                isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"a helper message with an array of {dtype!r}, shape {shape!r}")
        n = int(np.prod(shape, dtype=np.int64)) * 8
        data = _read_exact(fd, n)
        if data is None:
            raise ValueError("a helper message cut short")
        arrays.append(np.frombuffer(data, dtype=dtype).reshape(shape).copy())
    return header, arrays


class ReportHelper:
    """The forked child that builds a run's report; see the module docstring."""

    def __init__(self, pid: int, request: int, reply: int) -> None:
        self.pid, self._request, self._reply = pid, request, reply

    @classmethod
    def start(cls, preload: Sequence[str] = (),
              tasks: Mapping[str, Callable[..., NDArray[Any]]] | None = None
              ) -> ReportHelper | None:
        """Fork the helper; None where that does not pay (off Linux, one CPU).

        ``preload``: modules the child imports first, before the report layer (one that
        fails to import is left to the task that needs it). ``tasks``: what
        :meth:`ask` may run there, by name."""
        if report_processes() < 2:
            return None
        for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
            stream.flush()
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: import, wait, build, reply; never back into the caller
            code = 1
            try:
                os.close(req_w)
                os.close(rep_r)
                _serve(req_r, rep_w, tuple(preload), dict(tasks or {}))
                code = 0
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(rep_w)
        return cls(pid, req_w, rep_r)

    def _ask(self, header: dict[str, Any], arrays: Sequence[NDArray[Any]] = (),
             *, last: bool = False, meanwhile: Callable[[], object] | None = None
             ) -> tuple[dict[str, Any], list[NDArray[Any]]] | None:
        """Send a request and read the reply; None (and the helper closed) if it failed.
        ``last``: the helper is closed afterwards in any case. ``meanwhile``: called
        between the two (if it raises, the helper is closed and the error goes on)."""
        if self._request < 0:
            return None
        try:
            request = _frame(header, arrays)
        except TypeError:  # arrays it cannot carry: the caller runs the task itself
            return None
        try:
            _write_all(self._request, request)
            if meanwhile is not None:
                try:
                    meanwhile()
                except BaseException:
                    self.close()  # its reply would answer the next request
                    raise
            reply = _recv(self._reply)
        except (OSError, ValueError):  # the helper died (a broken pipe), or replied garbage
            reply = None
        if reply is None or last:
            self.close()
        if reply is None or reply[0].get("ok") is not True:
            return None
        return reply

    def ask(self, task: str, arrays: Sequence[NDArray[Any]], *,
            meanwhile: Callable[[], object] | None = None,
            **options: int | float | str) -> NDArray[Any] | None:
        """``tasks[task](*arrays, **options)`` run by the helper (arrays of real numbers
        or integers, sent as float64 or int64); None if it did not answer (an error or a
        warning there, an array it cannot carry, or the helper gone: the caller then
        runs it itself). ``meanwhile``: what this process does while the helper works
        (called once the request is sent; its errors go on, and the helper is closed)."""
        reply = self._ask({"op": "task", "task": task, "options": options}, arrays,
                          meanwhile=meanwhile)
        return reply[1][0] if reply is not None and len(reply[1]) == 1 else None

    def warm(self, run_dir: str | Path) -> None:
        """Have the helper compute, while this process goes on, what of ``run_dir``'s report
        the runs finished so far allow (their risk decomposition, most of the report's
        reading time, and the theory figure), so that :meth:`build` finds it done. No
        reply is awaited; a helper that is gone is closed (and the report then built
        here)."""
        if self._request < 0:
            return
        try:
            _write_all(self._request, _frame({"op": "warm", "run_dir": str(run_dir)}))
        except OSError:
            self.close()

    def build(self, run_dir: str | Path, *, quiet: bool) -> dict[str, Any] | None:
        """:func:`~expost.report.build_outputs` of ``run_dir`` built by the helper (what it
        prints unless ``quiet`` is printed here); None if it did not (the caller then builds
        it). The helper is gone afterwards."""
        reply = self._ask({"op": "report", "run_dir": str(run_dir)}, last=True)
        if reply is None:
            return None
        header = reply[0]
        if not quiet:
            sys.stderr.write(header["message"])
        outputs: dict[str, Any] = {}
        for key, value in header["outputs"].items():
            outputs[key] = value if key == "table1_markdown" else Path(value)
        return outputs

    def close(self) -> None:
        """Close the pipes and reap the helper (killed if it is still running)."""
        for fd in (self._request, self._reply):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._request = self._reply = -1
        if self.pid:
            stop_child(self.pid)  # after its reply it has exited or is exiting: no loss
            self.pid = 0


def _serve(request: int, reply: int, preload: tuple[str, ...] = (),
           tasks: Mapping[str, Callable[..., NDArray[Any]]] | None = None) -> None:
    """The child: import, then run tasks until a report request (or the end)."""
    for name in preload:
        with contextlib.suppress(Exception):  # the task that needs it fails, and says why
            importlib.import_module(name)
    from .build import outputs_and_message  # the import this process exists for

    while (message := _recv(request)) is not None:
        header, arrays = message
        op = header.get("op")
        if op == "task":
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    result = (tasks or {})[header["task"]](*arrays, **header["options"])
                if caught:  # the parent runs it again, and its warnings reach the user
                    raise RuntimeWarning(str(caught[0].message))
                payload = _frame({"ok": True}, [result])
            except Exception:  # the parent runs it again and reports the error itself
                payload = _frame({"ok": False})
            _write_all(reply, payload)
        elif op == "warm":  # no reply: the parent goes on training
            from ._data import warm_report

            with contextlib.suppress(Exception), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the report computes it again, and warns
                warm_report(header["run_dir"])
        elif op == "report":
            try:
                outputs, message_text = outputs_and_message(header["run_dir"])
                payload = _frame({"ok": True, "message": message_text,
                                  "outputs": {k: str(v) for k, v in outputs.items()}})
            except Exception:  # the parent builds it again and reports the error itself
                payload = _frame({"ok": False})
            _write_all(reply, payload)
            return
        else:
            return
