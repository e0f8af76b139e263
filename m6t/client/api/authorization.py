"""May the process on the other end of the control socket change things?

The credentials come from :func:`m6t.platform.peercred.peer_credentials`; this is the policy.  The
account-database modules are looked up with ``import_module`` because Windows has none of them.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from m6t.platform.peercred import PeerCredentials


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
