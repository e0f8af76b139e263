"""Helpers for the Linux backend tests: throwaway network namespaces, forked children inside them, and the
checksum of the packets they build by hand.

Each test creates its own namespaces (``m6t-plat-<random hex>``), deleted on the way out whatever
happens.  The code under test runs in a forked child that ``setns``-es into them: the child has no
running event loop to inherit (the parent never runs one), its sockets stay bound to the namespace
they were created in (so one child can hold sockets in two namespaces), and it always ends with
``os._exit`` so that no pytest machinery runs twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import pickle
import secrets
import select
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NS_PREFIX = "m6t-plat-"


def checksum(data: bytes) -> int:
    """The RFC 1071 one's-complement sum, for packets a test builds by hand (kept apart from m6t's own)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def ip(*args: str) -> None:
    """Run ``ip`` (test set-up only; the code under test never shells out)."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if result.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def ip_json(*args: str) -> Any:
    """``ip -j ...`` parsed, run in this process's namespace (inspection only)."""
    result = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=10, check=True)
    return json.loads(result.stdout or "[]")


@contextlib.contextmanager
def netns(count: int = 1) -> Iterator[list[str]]:
    """``count`` fresh network namespaces with ``lo`` up, deleted on exit."""
    names: list[str] = []
    try:
        for _ in range(count):
            name = NS_PREFIX + secrets.token_hex(4)
            ip("netns", "add", name)
            names.append(name)
            ip("-n", name, "link", "set", "lo", "up")
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10, check=False)


def _setns(fd: int) -> None:
    # Python 3.11 has no os.setns (3.12 does).
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Switch this (forked, single-threaded) process into namespace ``name``, and back on exit."""
    if sys.platform != "linux":
        raise RuntimeError("Linux only")
    saved = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        yield
    finally:
        try:
            _setns(saved)
        finally:
            os.close(saved)
            os.close(target)


def run_forked(body: Callable[[], T], timeout: float = 30.0) -> T:
    """Run ``body`` in a forked child and return its (picklable) result; its failure fails the test."""
    if sys.platform != "linux":
        raise RuntimeError("Linux only")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(read_end)
            try:
                payload = pickle.dumps(("ok", body()))
            except BaseException:
                payload = pickle.dumps(("error", traceback.format_exc()))
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"test child still running after {timeout} s: killed")
            ready, _, _ = select.select([read_end], [], [], remaining)
            if ready:
                chunk = os.read(read_end, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    if not chunks:
        raise AssertionError("test child died without a result")
    status, value = pickle.loads(b"".join(chunks))
    if status != "ok":
        raise AssertionError(f"in the namespace:\n{value}")
    result: T = value
    return result


def run_in(name: str, main: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
    """``asyncio.run(main())`` in a forked child inside namespace ``name``."""

    def body() -> T:
        with inside(name):
            return asyncio.run(main())

    return run_forked(body, timeout)
