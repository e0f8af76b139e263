"""Stopping the long-running processes a lab started."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterable
from typing import Any

TERM_GRACE = 2.0
KILL_WAIT = 2.0


def stop_all(procs: Iterable[subprocess.Popen[Any]]) -> list[int]:
    """SIGTERM the running ones, SIGKILL whoever outlives the grace period; return PIDs that would not die."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    stubborn = _wait_all(running, TERM_GRACE)
    for proc in stubborn:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    return [p.pid for p in _wait_all(stubborn, KILL_WAIT)]


def close_pipes(proc: subprocess.Popen[Any]) -> None:
    """Close the parent's ends of a process's pipes (they would otherwise leak until garbage collection)."""
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _wait_all(procs: list[subprocess.Popen[Any]], timeout: float) -> list[subprocess.Popen[Any]]:
    deadline = time.monotonic() + timeout
    alive = []
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            alive.append(proc)
    return alive
