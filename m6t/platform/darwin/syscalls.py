"""The macOS kernel surface the backend uses: ABI constants and one small injectable syscall object.

Every raw call of the darwin backend -- socket creation, ``ioctl``, ``getsockopt``/``setsockopt``,
``read``/``write`` on the utun and routing sockets, ``sysctlbyname``, ``geteuid`` -- goes through a
:class:`Syscalls`.  On a Mac that is :class:`DarwinSyscalls`, thin wrappers over ``socket``, ``fcntl``,
``os`` and libc (ctypes).  In the tests it is a fake kernel that *decodes the bytes it is sent* with its own
copy of the C layouts, so a packing mistake here fails a test instead of cancelling out.

The ABI numbers are spelled out below instead of being read from :mod:`socket`: the socket module (and
typeshed) only has PF_SYSTEM, SYSPROTO_CONTROL and friends on darwin, and several names have other values
on Linux, where the tests run (AF_INET6 is 10 there, AF_ROUTE is AF_NETLINK's alias 16, SOL_SOCKET is 1).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Protocol

from m6t.platform.monitoring import connected_udp_source, interface_of, ipv4_interfaces

# sys/socket.h
AF_UNSPEC = 0
AF_INET = 2
AF_ROUTE = 17
AF_LINK = 18
AF_INET6 = 30
AF_SYSTEM = 32
PF_ROUTE = AF_ROUTE
PF_SYSTEM = AF_SYSTEM
SOCK_DGRAM = 2
SOCK_RAW = 3
SOL_SOCKET = 0xFFFF
SO_RCVBUF = 0x1002

# sys/kern_control.h, sys/sys_domain.h
SYSPROTO_CONTROL = 2
AF_SYS_CONTROL = 2

# netinet/in.h
IPPROTO_IP = 0
IP_BOUND_IF = 25
"""``int; set/get bound interface`` (netinet/in.h): the socket's datagrams leave through that interface
index, its route and source address looked up scoped to it (``in_pcbladdr``)."""
IP_DONTFRAG = 28

# net/if.h
IFNAMSIZ = 16
"""Interface-name buffer, NUL included."""
IFF_UP = 0x1
IFF_POINTOPOINT = 0x10
IFF_RUNNING = 0x40

# sys/ioccom.h: the direction bits, then a 13-bit parameter length, then the group letter and the number.
IOCPARM_MASK = 0x1FFF
IOC_OUT = 0x40000000
IOC_IN = 0x80000000
IOC_INOUT = IOC_IN | IOC_OUT


def _ioc(direction: int, group: str, number: int, size: int) -> int:
    return direction | ((size & IOCPARM_MASK) << 16) | (ord(group) << 8) | number


def iow(group: str, number: int, size: int) -> int:
    """``_IOW(group, number, type)`` with ``sizeof(type) == size``."""
    return _ioc(IOC_IN, group, number, size)


def iowr(group: str, number: int, size: int) -> int:
    """``_IOWR(group, number, type)`` with ``sizeof(type) == size``."""
    return _ioc(IOC_INOUT, group, number, size)


def ioctl_size(request: int) -> int:
    """``IOCPARM_LEN``: how many bytes the kernel copies in and out for ``request``."""
    return (request >> 16) & IOCPARM_MASK


class Syscalls(Protocol):
    """The raw calls the darwin backend makes; errors are ``OSError`` with the kernel's errno."""

    def socket(self, family: int, kind: int, proto: int) -> int:
        """A new socket's file descriptor (close-on-exec)."""
        ...

    def close(self, fd: int) -> None: ...

    def set_nonblocking(self, fd: int) -> None: ...

    def ioctl(self, fd: int, request: int, arg: bytes) -> bytes:
        """``ioctl(fd, request, buf)`` with ``len(arg)`` bytes in; the buffer as the kernel left it."""
        ...

    def connect_control(self, fd: int, ctl_id: int, unit: int) -> None:
        """``connect`` a PF_SYSTEM/SYSPROTO_CONTROL socket to ``struct sockaddr_ctl {ctl_id, unit}``."""
        ...

    def getsockopt(self, fd: int, level: int, option: int, size: int) -> bytes: ...

    def setsockopt(self, fd: int, level: int, option: int, value: int) -> None: ...

    def read(self, fd: int, size: int) -> bytes: ...

    def write(self, fd: int, data: bytes) -> int: ...

    def writev(self, fd: int, buffers: Sequence[bytes]) -> int:
        """One datagram from several buffers (the utun header and the packet, without a copy)."""
        ...

    def sysctlbyname(self, name: str) -> bytes: ...

    def geteuid(self) -> int: ...

    def getpid(self) -> int: ...

    def if_nametoindex(self, name: str) -> int: ...

    def if_indextoname(self, index: int) -> str: ...

    def source_address_toward(self, address: str, port: int, interface: int = 0) -> str:
        """The IPv4 source the kernel picks toward ``address``: a UDP ``connect`` + ``getsockname``.
        ``interface``: the socket is bound to that interface index first (``IP_BOUND_IF``), so the route is
        looked up scoped to it; with none through it the ``connect`` fails (ENETUNREACH)."""
        ...

    def interface_with_address(self, address: str) -> str | None:
        """The name of the interface holding the IPv4 ``address``, if any."""
        ...

    def ipv4_interfaces(self) -> list[str]:
        """The names of the interfaces that are up and hold an IPv4 address (``getifaddrs``)."""
        ...


if sys.platform != "win32":
    import fcntl

    def _ioctl(fd: int, request: int, arg: bytes) -> bytes:
        return fcntl.ioctl(fd, request, arg)

    def _writev(fd: int, buffers: Sequence[bytes]) -> int:
        return os.writev(fd, buffers)

    def _geteuid() -> int:
        return os.geteuid()

else:  # The backend is never chosen on Windows; these keep the module importable and type-checked there.

    def _ioctl(fd: int, request: int, arg: bytes) -> bytes:
        raise OSError(errno.ENOSYS, "ioctl is not available on this OS")

    def _writev(fd: int, buffers: Sequence[bytes]) -> int:
        return os.write(fd, b"".join(buffers))

    def _geteuid() -> int:
        return -1


@contextlib.contextmanager
def _borrowed(
    fd: int, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM, proto: int = 0
) -> Iterator[socket.socket]:
    """A socket object around an fd we keep owning: ``detach`` leaves the fd open.

    The family/type/proto given are what Python uses to parse addresses (``connect``); for the option and
    blocking calls they are irrelevant.  Giving them also skips the module's own family detection.
    """
    sock = socket.socket(family, kind, proto, fileno=fd)
    try:
        yield sock
    finally:
        sock.detach()


@cache
def _libc() -> ctypes.CDLL:
    # dlopen(NULL) searches the process and what it links, libSystem (where sysctlbyname lives) included.
    return ctypes.CDLL(None, use_errno=True)


class DarwinSyscalls:
    """The real thing, for macOS."""

    def socket(self, family: int, kind: int, proto: int) -> int:
        return socket.socket(family, kind, proto).detach()

    def close(self, fd: int) -> None:
        os.close(fd)

    def set_nonblocking(self, fd: int) -> None:
        with _borrowed(fd) as sock:
            sock.setblocking(False)

    def ioctl(self, fd: int, request: int, arg: bytes) -> bytes:
        return _ioctl(fd, request, arg)

    def connect_control(self, fd: int, ctl_id: int, unit: int) -> None:
        # CPython's socket module takes (sc_id, sc_unit) for PF_SYSTEM/SYSPROTO_CONTROL and fills in
        # sc_len, sc_family = AF_SYSTEM and ss_sysaddr = AF_SYS_CONTROL itself.
        with _borrowed(fd, PF_SYSTEM, SOCK_DGRAM, SYSPROTO_CONTROL) as sock:
            sock.connect((ctl_id, unit))

    def getsockopt(self, fd: int, level: int, option: int, size: int) -> bytes:
        with _borrowed(fd) as sock:
            return sock.getsockopt(level, option, size)

    def setsockopt(self, fd: int, level: int, option: int, value: int) -> None:
        with _borrowed(fd) as sock:
            sock.setsockopt(level, option, value)

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def writev(self, fd: int, buffers: Sequence[bytes]) -> int:
        return _writev(fd, buffers)

    def sysctlbyname(self, name: str) -> bytes:
        function = _libc().sysctlbyname
        function.argtypes = [
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.c_void_p,
            ctypes.c_size_t,
        ]
        function.restype = ctypes.c_int
        raw_name = name.encode("ascii")
        size = ctypes.c_size_t(0)
        # First call sizes the value, the second reads it.
        if function(raw_name, None, ctypes.byref(size), None, 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"sysctlbyname({name}): {os.strerror(code)}")
        buffer = ctypes.create_string_buffer(max(size.value, 1))
        if function(raw_name, buffer, ctypes.byref(size), None, 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"sysctlbyname({name}): {os.strerror(code)}")
        return buffer.raw[: size.value]

    def geteuid(self) -> int:
        return _geteuid()

    def getpid(self) -> int:
        return os.getpid()

    def if_nametoindex(self, name: str) -> int:
        return socket.if_nametoindex(name)

    def if_indextoname(self, index: int) -> str:
        return socket.if_indextoname(index)

    def source_address_toward(self, address: str, port: int, interface: int = 0) -> str:
        if not interface:
            return connected_udp_source(address, port)

        def bind(sock: socket.socket) -> None:
            sock.setsockopt(IPPROTO_IP, IP_BOUND_IF, interface)

        return connected_udp_source(address, port, prepare=bind)

    def interface_with_address(self, address: str) -> str | None:
        return interface_of(address)

    def ipv4_interfaces(self) -> list[str]:
        return ipv4_interfaces()
