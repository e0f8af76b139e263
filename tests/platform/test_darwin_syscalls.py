"""The real DarwinSyscalls wrappers, on whatever POSIX host runs the tests, for the calls that exist on both.

PF_SYSTEM, CTLIOCGINFO and sysctlbyname exist on macOS only; these check what can be checked anywhere:
that borrowed socket objects leave the fd open and that the wrappers pass values through unchanged.
"""

from __future__ import annotations

import os
import socket
import sys

import pytest

from m6t.platform.darwin.syscalls import AF_INET, SOCK_DGRAM, DarwinSyscalls, ioctl_size, iow, iowr


def test_socket_options_and_blocking_on_a_real_fd() -> None:
    syscalls = DarwinSyscalls()
    fd = syscalls.socket(AF_INET, SOCK_DGRAM, 0)  # AF_INET and SOCK_DGRAM are 2 on macOS and Linux alike
    try:
        syscalls.set_nonblocking(fd)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0, fileno=fd)
        try:
            with pytest.raises(BlockingIOError):
                probe.recv(1)
        finally:
            probe.detach()
        syscalls.setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        raw = syscalls.getsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVBUF, 4)
        assert int.from_bytes(raw, sys.byteorder) >= 65536
        os.fstat(fd)  # still open after every borrowed socket object was dropped
    finally:
        syscalls.close(fd)


def test_read_write_writev() -> None:
    syscalls = DarwinSyscalls()
    left, right = socket.socketpair(1, socket.SOCK_DGRAM)  # AF_UNIX
    with left, right:
        assert syscalls.writev(left.fileno(), [b"\x00\x00\x00\x1e", b"packet"]) == 10
        assert syscalls.read(right.fileno(), 100) == b"\x00\x00\x00\x1epacket"
        assert syscalls.write(left.fileno(), b"x") == 1
        assert right.recv(10) == b"x"


def test_host_lookups() -> None:
    syscalls = DarwinSyscalls()
    index, name = socket.if_nameindex()[0]
    assert syscalls.if_nametoindex(name) == index
    assert syscalls.if_indextoname(index) == name
    assert syscalls.source_address_toward("127.0.0.1", 9) == "127.0.0.1"
    assert syscalls.interface_with_address("127.0.0.1") is not None
    assert syscalls.getpid() == os.getpid()
    if sys.platform != "win32":
        assert syscalls.geteuid() == os.geteuid()
    if sys.platform == "darwin":
        assert syscalls.sysctlbyname("net.inet6.ip6.forwarding")


def test_ioctl_encoding() -> None:
    assert iow("i", 52, 32) == 0x80206934
    assert iowr("N", 3, 100) == 0xC0644E03
    assert ioctl_size(0x8080691A) == 128
