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
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from ._render import report_processes, stop_child  # no matplotlib: the child imports it

__all__ = ["ReportHelper"]


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class ReportHelper:
    """The forked child that builds a run's report; see the module docstring."""

    def __init__(self, pid: int, request: int, reply: int) -> None:
        self.pid, self._request, self._reply = pid, request, reply

    @classmethod
    def start(cls) -> ReportHelper | None:
        """Fork the helper; None where that does not pay (off Linux, one CPU)."""
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
                _serve(req_r, rep_w)
                code = 0
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(rep_w)
        return cls(pid, req_w, rep_r)

    def build(self, run_dir: str | Path, *, quiet: bool) -> dict[str, Any] | None:
        """:func:`~expost.report.build_outputs` of ``run_dir`` built by the helper (what it
        prints unless ``quiet`` is printed here); None if it did not (the caller then builds
        it). The helper is gone afterwards."""
        request = json.dumps({"run_dir": str(run_dir)}).encode()
        try:
            _write_all(self._request, request)
            os.close(self._request)
            self._request = -1
            reply = json.loads(_read_all(self._reply) or b"null")
        except (OSError, ValueError):  # the helper died (a broken pipe), or replied garbage
            reply = None
        finally:
            self.close()
        if not isinstance(reply, dict) or not reply.get("ok"):
            return None
        if not quiet:
            sys.stderr.write(reply["message"])
        outputs: dict[str, Any] = {}
        for key, value in reply["outputs"].items():
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


def _serve(request: int, reply: int) -> None:
    """The child: import the report layer, wait for one request, build, reply."""
    from .build import outputs_and_message  # the import this process exists for

    data = _read_all(request)  # until the parent has sent its request, or closed, or died
    if not data:
        return
    args = json.loads(data)
    try:
        outputs, message = outputs_and_message(args["run_dir"])
    except Exception:  # the parent builds it again and reports the error itself
        payload: dict[str, Any] = {"ok": False}
    else:
        payload = {"ok": True, "message": message,
                   "outputs": {k: str(v) for k, v in outputs.items()}}
    _write_all(reply, json.dumps(payload).encode())
