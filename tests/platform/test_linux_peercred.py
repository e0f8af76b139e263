"""Linux peer credentials on a real Unix socket pair, and the facts the identity answers from them."""

from __future__ import annotations

import grp
import os
import pwd
import socket
import sys

import pytest

from m6t.platform import peercred
from m6t.platform.peercred import UnixPeer

if sys.platform != "linux":
    pytest.skip("Linux backend tests", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

NOBODY = 65534


def test_linux_reports_this_process() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        creds = peercred.peer_credentials(a)
    assert creds is not None
    assert (creds.pid, creds.uid, creds.gid) == (os.getpid(), os.getuid(), os.getgid())
    assert creds.groups is not None and set(os.getgroups()) <= creds.groups


def test_root_is_the_superuser() -> None:
    assert UnixPeer(pid=1, uid=0, gid=0, groups=frozenset()).is_superuser
    assert not UnixPeer(pid=1, uid=NOBODY, gid=NOBODY, groups=frozenset()).is_superuser


def test_group_membership_comes_from_the_socket_first() -> None:
    group = grp.getgrgid(os.getgid())
    holder = UnixPeer(pid=None, uid=NOBODY, gid=NOBODY, groups=frozenset({group.gr_gid}))
    assert holder.in_group(group.gr_name)
    # A process that dropped the group is judged by what it holds now, whatever the account database says.
    assert not UnixPeer(pid=None, uid=os.getuid(), gid=NOBODY, groups=frozenset()).in_group(group.gr_name)
    assert UnixPeer(pid=None, uid=NOBODY, gid=group.gr_gid, groups=frozenset()).in_group(group.gr_name), "primary"
    assert not holder.in_group("m6t-no-such-group")


def test_without_the_sockets_answer_the_account_database_decides() -> None:
    listed = [(group, member) for group in grp.getgrall() for member in group.gr_mem]
    if not listed:
        pytest.skip("no supplementary group membership in this account database")
    group, member = listed[0]
    uid = pwd.getpwnam(member).pw_uid
    assert UnixPeer(pid=None, uid=uid, gid=NOBODY, groups=None).in_group(group.gr_name)
    assert not UnixPeer(pid=None, uid=uid, gid=NOBODY, groups=frozenset()).in_group(group.gr_name)


def _start_time_field() -> int:
    with open(f"/proc/{os.getpid()}/stat") as stat:
        raw = stat.read()
    return int(raw[raw.rindex(")") + 2 :].split()[19])


def test_the_start_time_is_the_one_proc_gives_and_comes_with_the_credentials() -> None:
    expected = _start_time_field()
    assert peercred.process_start_time(os.getpid()) == expected
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        creds = peercred.peer_credentials(a)
    assert creds is not None and creds.start_time == expected
    assert peercred.process_start_time(2**22 + 1) is None, "no such pid (above pid_max's ceiling)"


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() -> None:
    # prctl(PR_SET_NAME) through /proc/self/comm: the name is field 2, between the first "(" and the last ")".
    with open("/proc/self/comm", "rb") as comm:
        saved = comm.read().rstrip(b"\n")
    expected = _start_time_field()
    try:
        with open("/proc/self/comm", "wb") as comm:
            comm.write(b"a) (b c) d")
        assert peercred.process_start_time(os.getpid()) == expected
    finally:
        with open("/proc/self/comm", "wb") as comm:
            comm.write(saved)
