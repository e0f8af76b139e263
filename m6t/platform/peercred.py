"""Who is on the other end of a local (Unix-domain) socket: one lookup per OS, one identity for both.

The kernel vouches for the peer at connect time (``SO_PEERCRED`` on Linux, ``LOCAL_PEERCRED`` on macOS);
an OS without an answer yields ``None``, which the control API treats as read-only.  The account-database
modules are looked up with ``import_module`` because Windows has none of them.
"""

from __future__ import annotations

import importlib
import os
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Any

from m6t.platform.base import PeerIdentity

_MAX_GROUPS = 256
"""Python caps getsockopt buffers at 1024 bytes; beyond that the caller falls back to the account database."""


def _optional_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


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


@dataclass(frozen=True, slots=True)
class UnixPeer(PeerIdentity):
    """A process on a Unix socket, by the ids the kernel recorded when it connected."""

    pid: int | None
    uid: int
    gid: int
    groups: frozenset[int] | None
    """Supplementary groups of the peer process at connect time, ``None`` when the OS does not say."""
    start_time: int | None = None

    @property
    def is_superuser(self) -> bool:
        return self.uid == 0

    def in_group(self, name: str) -> bool:
        """The process's own groups (from the socket) win over the account database, so a process that
        dropped its groups (``setpriv --clear-groups``) is judged by what it holds now."""
        wanted = group_id(name)
        if wanted is None:
            return False
        groups = self.groups if self.groups is not None else user_groups(self.uid, self.gid)
        return self.gid == wanted or wanted in groups


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started (``/proc/PID/stat`` field 22, clock ticks since boot), ``None`` once it is gone.

    The command name (field 2) may hold spaces and parentheses, so the fields are counted after its last ``)``.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
        return int(raw[raw.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _linux(sock: socket.socket) -> UnixPeer | None:
    so_peercred = getattr(socket, "SO_PEERCRED", 17)
    # SO_PEERGROUPS (Linux 4.13) has a name in the socket module only from Python 3.14.
    so_peergroups = getattr(socket, "SO_PEERGROUPS", 59)
    try:
        pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, so_peercred, struct.calcsize("3i")))
    except (OSError, struct.error):
        return None
    groups: frozenset[int] | None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, so_peergroups, 4 * _MAX_GROUPS)
        count = len(raw) // 4
        groups = frozenset(struct.unpack(f"{count}I", raw[: 4 * count]))
    except (OSError, struct.error):
        groups = None
    known_pid = pid if pid > 0 else None
    start_time = process_start_time(known_pid) if known_pid is not None else None
    return UnixPeer(pid=known_pid, uid=uid, gid=gid, groups=groups, start_time=start_time)


_SOL_LOCAL = 0
_LOCAL_PEERCRED = 0x001
_LOCAL_PEERPID = 0x002


def _darwin(sock: socket.socket) -> UnixPeer | None:
    try:
        raw = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, 128)
    except OSError:
        return None
    # struct xucred: u_int cr_version, uid_t cr_uid, short cr_ngroups, (2 bytes of padding), gid_t cr_groups[16];
    # cr_groups[0] is the effective group.
    if len(raw) < 12:
        return None
    _version, uid, ngroups = struct.unpack_from("=IIh", raw, 0)
    count = max(0, min(ngroups, (len(raw) - 12) // 4, 16))
    groups = struct.unpack_from(f"={count}I", raw, 12) if count else ()
    try:
        pid = struct.unpack("=i", sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, 4))[0]
    except (OSError, struct.error):
        pid = 0
    gid = groups[0] if groups else uid
    return UnixPeer(pid=pid if pid > 0 else None, uid=uid, gid=gid, groups=frozenset(groups))


def peer_credentials(sock: socket.socket) -> UnixPeer | None:
    """The connecting process's identity, or ``None`` when this OS cannot tell."""
    if sys.platform == "linux":
        return _linux(sock)
    if sys.platform == "darwin":
        return _darwin(sock)
    return None
