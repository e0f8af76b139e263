"""Stopping the long-running processes a lab started."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

TERM_GRACE = 2.0
KILL_WAIT = 2.0

Process = TypeVar("Process", bound="subprocess.Popen[Any]")


def stop_all(procs: Iterable[subprocess.Popen[Any] | None], *, grace: float = TERM_GRACE) -> list[int]:
    """SIGTERM the running ones (None: a process never started), SIGKILL whoever outlives ``grace`` seconds;
    return PIDs that would not die."""
    running = [p for p in procs if p is not None and p.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    stubborn = _wait_all(running, grace)
    for proc in stubborn:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    return [p.pid for p in _wait_all(stubborn, KILL_WAIT)]


def stop(proc: subprocess.Popen[Any], *, grace: float = TERM_GRACE) -> bool:
    """SIGTERM ``proc`` if it still runs, SIGKILL it if it outlives ``grace`` seconds: whether it ended without
    SIGKILL (a daemon that ignores SIGTERM is usually a failure to report); raises ``TimeoutExpired`` if even
    SIGKILL did not end it."""
    if proc.poll() is not None:
        return True
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
        return True
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=KILL_WAIT)
        return False


@contextlib.contextmanager
def killed_after(proc: Process) -> Iterator[Process]:
    """``proc`` for the ``with`` block (a helper that should have finished in it, such as a listener or a
    flood): SIGKILLed if it still runs at the end, reaped, and its pipes closed, even when the block failed."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        proc.wait(timeout=KILL_WAIT)
        close_pipes(proc)


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
