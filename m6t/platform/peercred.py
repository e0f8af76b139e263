"""Who is on the other end of a local (Unix-domain) socket: one lookup per OS.

The control API authorizes changes from these credentials; an OS without an answer yields ``None``,
which the server treats as read-only.
"""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass

_MAX_GROUPS = 256
"""Python caps getsockopt buffers at 1024 bytes; beyond that the caller falls back to the account database."""


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    pid: int | None
    uid: int
    gid: int
    groups: frozenset[int] | None
    """Supplementary groups of the peer process at connect time, ``None`` when the OS does not say."""


def _linux(sock: socket.socket) -> PeerCredentials | None:
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
    return PeerCredentials(pid=pid if pid > 0 else None, uid=uid, gid=gid, groups=groups)


_SOL_LOCAL = 0
_LOCAL_PEERCRED = 0x001
_LOCAL_PEERPID = 0x002


def _darwin(sock: socket.socket) -> PeerCredentials | None:
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
    return PeerCredentials(pid=pid if pid > 0 else None, uid=uid, gid=gid, groups=frozenset(groups))


def peer_credentials(sock: socket.socket) -> PeerCredentials | None:
    """The connecting process's credentials, or ``None`` when this OS cannot tell."""
    if sys.platform == "linux":
        return _linux(sock)
    if sys.platform == "darwin":
        return _darwin(sock)
    return None
