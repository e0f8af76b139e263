"""Who is on the other end of a local socket, and may they change things.

This is the control API's only OS-specific code; it belongs in :mod:`m6t.platform` (one function per
OS) and lives here until it moves.  Everything is looked up with ``getattr``/``import_module`` so the
module imports (and type-checks) on every OS, and an OS without an answer yields ``None``, which the
server treats as "read-only".
"""

from __future__ import annotations

import importlib
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

# Linux values, used only where the socket module lacks the names (SO_PEERGROUPS: Python < 3.14).
_LINUX_SO_PEERCRED = 17
_LINUX_SO_PEERGROUPS = 59
_MAX_GROUPS = 256
"""Python caps getsockopt buffers at 1024 bytes; a process with more groups falls back to the account database."""


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    pid: int | None
    uid: int
    gid: int
    groups: frozenset[int] | None
    """Supplementary groups of the peer process at connect time, ``None`` when the OS does not say."""


def _optional_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def peer_credentials(sock: socket.socket) -> PeerCredentials | None:
    """The connecting process's credentials, or ``None`` when this OS cannot tell."""
    so_peercred = getattr(socket, "SO_PEERCRED", None)
    if so_peercred is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, so_peercred, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", raw)
    except (OSError, struct.error):
        return None
    groups: frozenset[int] | None = None
    so_peergroups = getattr(socket, "SO_PEERGROUPS", None)
    if so_peergroups is None and so_peercred == _LINUX_SO_PEERCRED:
        so_peergroups = _LINUX_SO_PEERGROUPS
    if so_peergroups is not None:
        try:
            raw_groups = sock.getsockopt(socket.SOL_SOCKET, so_peergroups, 4 * _MAX_GROUPS)
            count = len(raw_groups) // 4
            groups = frozenset(struct.unpack(f"{count}I", raw_groups[: 4 * count]))
        except (OSError, struct.error):
            groups = None
    return PeerCredentials(pid=pid if pid > 0 else None, uid=uid, gid=gid, groups=groups)


def group_id(name: str) -> int | None:
    grp = _optional_module("grp")
    if grp is None:
        return None
    try:
        return int(grp.getgrnam(name).gr_gid)
    except KeyError:
        return None


def user_groups(uid: int, gid: int) -> frozenset[int]:
    """The groups the account database gives ``uid`` (a fallback when the socket does not tell)."""
    pwd = _optional_module("pwd")
    getgrouplist = getattr(os, "getgrouplist", None)
    if pwd is None or getgrouplist is None:
        return frozenset({gid})
    try:
        name = pwd.getpwuid(uid).pw_name
        return frozenset(int(g) for g in getgrouplist(name, gid))
    except (KeyError, OSError):
        return frozenset({gid})


def is_operator(creds: PeerCredentials | None, operator_group: str) -> bool:
    """Root, or a process whose primary or supplementary groups include ``operator_group``.

    The process's own groups (from the socket) win over the account database, so a process that
    dropped its groups (``setpriv --clear-groups``) is judged by what it holds now.
    """
    if creds is None:
        return False
    if creds.uid == 0:
        return True
    wanted = group_id(operator_group)
    if wanted is None:
        return False
    groups = creds.groups if creds.groups is not None else user_groups(creds.uid, creds.gid)
    return creds.gid == wanted or wanted in groups
