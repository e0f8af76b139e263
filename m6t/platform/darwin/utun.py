"""macOS utun interfaces: a PF_SYSTEM kernel-control socket connected to ``com.apple.net.utun_control``.

Opening (sys/kern_control.h, net/if_utun.h):

1. ``socket(PF_SYSTEM, SOCK_DGRAM, SYSPROTO_CONTROL)``;
2. ``ioctl(CTLIOCGINFO)`` with ``struct ctl_info {u_int32_t ctl_id; char ctl_name[96];}`` (100 bytes,
   so ``CTLIOCGINFO = _IOWR('N', 3, struct ctl_info) = 0xC0644E03``) turns the control's name into its id;
3. ``connect`` to ``struct sockaddr_ctl {sc_len, sc_family = AF_SYSTEM, ss_sysaddr = AF_SYS_CONTROL, sc_id,
   sc_unit}``: the kernel creates ``utun<sc_unit - 1>``, or the first free one for ``sc_unit = 0``;
4. ``getsockopt(SYSPROTO_CONTROL, UTUN_OPT_IFNAME)`` says which name it got.

The interface lives exactly as long as the socket: closing it (or the process dying) removes the interface
together with its addresses and routes, so a crashed helper never leaves a stale tunnel behind.

**Names.** macOS lets no program name a utun interface: the kernel calls it ``utunN``.  A configured name
such as ``m6t0`` is therefore a wish this backend cannot grant; it takes the next free unit and reports the
real name through :attr:`TunDevice.name <m6t.platform.base.TunDevice.name>`, which the client driver uses
for everything that follows (MTU, addresses, routes, the monitor's ignored interface, status, logs).  A
configured ``utunN`` asks for that exact unit and fails if another program holds it.

**Framing.** Each datagram on the socket is one packet behind a 4-byte address family in network byte
order (``AF_INET6 = 30``).  It is stripped on read and prepended on write here, so the interface above sees
bare IPv6 packets; packets of any other family (the kernel would route IPv4 here only if someone gave the
utun an IPv4 address) are counted and dropped.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import struct

from m6t.platform.base import PacketsCallback, PlatformError, PlatformErrorCode, TunDevice
from m6t.platform.darwin.syscalls import (
    AF_INET6,
    IFNAMSIZ,
    PF_SYSTEM,
    SOCK_DGRAM,
    SYSPROTO_CONTROL,
    Syscalls,
    iowr,
)

log = logging.getLogger(__name__)

UTUN_CONTROL_NAME = b"com.apple.net.utun_control"
UTUN_OPT_IFNAME = 2
MAX_KCTL_NAME = 96

CTL_INFO = struct.Struct(f"=I{MAX_KCTL_NAME}s")
"""struct ctl_info (sys/kern_control.h): 100 bytes."""
CTLIOCGINFO = iowr("N", 3, CTL_INFO.size)

AF_HEADER = struct.Struct("!I")
"""The utun packet header: the protocol family, in network byte order."""
_AF_INET6_HEADER = AF_HEADER.pack(AF_INET6)

READ_SIZE = 65535 + AF_HEADER.size
"""Larger than any packet the utun can hold plus its header: a short buffer would silently truncate."""
MAX_BATCH = 256
"""Packets read per wakeup at most, so that one busy utun cannot starve the UDP side of the loop."""

_UTUN_NAME = re.compile(r"utun(0|[1-9][0-9]{0,8})")


def requested_unit(name: str) -> int | None:
    """The utun number ``name`` asks for (``utun7`` → 7), or ``None`` for "whichever is free"."""
    match = _UTUN_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def open_utun(syscalls: Syscalls, name: str) -> tuple[int, str]:
    """Create a utun interface; returns its non-blocking fd and the kernel's name for it.

    ``name`` is honoured only when it is ``utunN`` (see the module docstring).
    """
    unit = requested_unit(name)
    try:
        fd = syscalls.socket(PF_SYSTEM, SOCK_DGRAM, SYSPROTO_CONTROL)
    except OSError as exc:
        raise PlatformError(
            f"cannot create a kernel control socket: {exc.strerror}",
            hint="this macOS has no PF_SYSTEM kernel controls; the utun driver is required",
            code=PlatformErrorCode.TUN_MISSING,
        ) from exc
    try:
        ctl_id = control_id(syscalls, fd)
        try:
            # sc_unit is the utun number plus one; 0 lets the kernel pick the first free number.
            syscalls.connect_control(fd, ctl_id, 0 if unit is None else unit + 1)
        except OSError as exc:
            raise _connect_error(name, unit, exc) from exc
        try:
            raw = syscalls.getsockopt(fd, SYSPROTO_CONTROL, UTUN_OPT_IFNAME, IFNAMSIZ)
        except OSError as exc:
            raise PlatformError(f"cannot read the utun interface name: {exc.strerror}") from exc
        actual = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if not actual:
            raise PlatformError("the utun driver returned no interface name")
        syscalls.set_nonblocking(fd)
    except BaseException:
        syscalls.close(fd)
        raise
    if unit is None:
        log.info("macOS names tunnel interfaces itself: %s is %s", name, actual)
    return fd, actual


def control_id(syscalls: Syscalls, fd: int) -> int:
    """The utun control's id (``CTLIOCGINFO``); ``PlatformError`` when the utun driver is missing."""
    try:
        answer = syscalls.ioctl(fd, CTLIOCGINFO, CTL_INFO.pack(0, UTUN_CONTROL_NAME))
    except OSError as exc:
        raise PlatformError(
            f"the utun kernel control is unavailable: {exc.strerror}",
            hint="this macOS does not provide utun interfaces (com.apple.net.utun_control)",
            code=PlatformErrorCode.TUN_MISSING,
        ) from exc
    return int(CTL_INFO.unpack(answer)[0])


def _connect_error(name: str, unit: int | None, exc: OSError) -> PlatformError:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PlatformError(
            "not allowed to create a utun interface",
            hint="run the m6t helper as root",
            code=PlatformErrorCode.PERMISSION_DENIED,
        )
    if exc.errno == errno.EBUSY and unit is not None:
        return PlatformError(
            f"utun interface {name} is already in use by another program",
            hint="configure another utunN, or a name such as m6t0 to take the next free one",
            code=PlatformErrorCode.INTERFACE_BUSY,
        )
    return PlatformError(f"cannot create a utun interface: {exc.strerror}")


class DarwinUtun(TunDevice):
    """A utun interface read with ``loop.add_reader`` in bounded batches."""

    def __init__(self, syscalls: Syscalls, name: str) -> None:
        self._sys = syscalls
        self.fd, self.name = open_utun(syscalls, name)
        self.dropped = 0
        """Packets ``write`` dropped because the kernel queue was full (EAGAIN/ENOBUFS)."""
        self.write_errors = 0
        """Packets the kernel refused (EINVAL, EIO...): dropped, never raised."""
        self.foreign = 0
        """Packets read with a family other than AF_INET6 (or shorter than the header): dropped."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_packets: PacketsCallback | None = None

    def fileno(self) -> int:
        return self.fd

    def start_reading(self, loop: asyncio.AbstractEventLoop, on_packets: PacketsCallback) -> None:
        if self.fd < 0:
            raise PlatformError(f"utun {self.name} is closed")
        self.stop_reading()
        self._loop = loop
        self._on_packets = on_packets
        loop.add_reader(self.fd, self._on_readable)

    def _on_readable(self) -> None:
        read = self._sys.read
        fd = self.fd
        header = _AF_INET6_HEADER
        batch: list[bytes] = []
        try:
            for _ in range(MAX_BATCH):
                datagram = read(fd, READ_SIZE)
                if datagram[:4] == header:
                    batch.append(datagram[4:])
                else:
                    self.foreign += 1
        except BlockingIOError:
            pass
        except OSError as exc:
            # A socket torn down under us stays readable forever: stop rather than spin.
            log.warning("utun %s: read failed (%s); reading stopped", self.name, exc)
            self.stop_reading()
        if batch and self._on_packets is not None:
            self._on_packets(batch)

    def stop_reading(self) -> None:
        if self._loop is not None and self.fd >= 0:
            self._loop.remove_reader(self.fd)
        self._loop = None
        self._on_packets = None

    def write(self, packet: bytes) -> None:
        try:
            self._sys.writev(self.fd, (_AF_INET6_HEADER, packet))
        except BlockingIOError:
            self.dropped += 1
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self.dropped += 1
            elif exc.errno in (errno.EINVAL, errno.EIO, errno.EFAULT, errno.EMSGSIZE):
                self.write_errors += 1
            else:
                raise

    def close(self) -> None:
        if self.fd < 0:
            return
        self.stop_reading()
        fd, self.fd = self.fd, -1
        self._sys.close(fd)
