"""Linux peer credentials on a real Unix socket pair."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from m6t.platform import peercred

if sys.platform != "linux":
    pytest.skip("Linux backend tests", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only


def test_linux_reports_this_process() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        creds = peercred.peer_credentials(a)
    assert creds is not None
    assert (creds.pid, creds.uid, creds.gid) == (os.getpid(), os.getuid(), os.getgid())
    assert creds.groups is not None and set(os.getgroups()) <= creds.groups
