"""Linux TUN devices: ``/dev/net/tun`` with ``TUNSETIFF``, ``IFF_TUN | IFF_NO_PI``, non-persistent.

The device lives exactly as long as its file descriptor: closing it (or the process dying) removes the
interface, so a crashed helper never leaves a stale tunnel behind.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import socket
import struct
import sys

from m6t.platform.base import PacketsCallback, PlatformError, TunDevice

assert sys.platform == "linux"

log = logging.getLogger(__name__)

TUN_PATH = "/dev/net/tun"
IFNAMSIZ = 16
"""The kernel's interface-name buffer, NUL included: names are at most 15 bytes."""

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

READ_SIZE = 65535
"""Larger than any IPv6 packet a TUN can hold: a short read buffer would silently truncate."""
MAX_BATCH = 256
"""Packets read per wakeup at most, so that one busy TUN cannot starve the UDP side of the loop."""

_IFREQ = struct.Struct("16sH22x")


def validate_ifname(name: str) -> bytes:
    """The kernel's ``dev_valid_name`` rules, checked up front for a readable error."""
    raw = name.encode("utf-8", "surrogateescape")
    if not raw:
        raise PlatformError("empty interface name", hint="choose a name such as m6t0")
    if len(raw) >= IFNAMSIZ:
        raise PlatformError(
            f"interface name {name!r} is {len(raw)} bytes long; Linux allows at most {IFNAMSIZ - 1}",
            hint="choose a shorter name such as m6t0",
        )
    if raw in (b".", b"..") or any(c in raw for c in b"/: \t\n\0"):
        raise PlatformError(
            f"invalid interface name {name!r}",
            hint="use letters, digits, '-' or '_' (no '/', ':' or whitespace)",
        )
    return raw


def open_tun(name: str) -> tuple[int, str]:
    """Create a non-persistent TUN interface; returns its non-blocking fd and the kernel's name for it.

    ``name`` may contain ``%d`` to let the kernel pick a free number (``"m6t%d"``).  The caller owns the
    fd: ``os.close`` removes the interface.
    """
    raw = validate_ifname(name)
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise PlatformError(f"{TUN_PATH} is missing", hint="load the TUN driver: modprobe tun") from exc
    except PermissionError as exc:
        raise PlatformError(
            f"cannot open {TUN_PATH}: {exc.strerror}", hint="run as root (needs CAP_NET_ADMIN)"
        ) from exc
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            raise PlatformError(
                f"{TUN_PATH}: no TUN driver in this kernel", hint="load the TUN driver: modprobe tun"
            ) from exc
        raise PlatformError(f"cannot open {TUN_PATH}: {exc.strerror}") from exc
    try:
        result = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(raw, IFF_TUN | IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        raise _tunsetiff_error(name, exc) from exc
    actual = _IFREQ.unpack(result)[0].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    return fd, actual


def _tunsetiff_error(name: str, exc: OSError) -> PlatformError:
    if exc.errno == errno.EBUSY:
        return PlatformError(
            f"TUN interface {name} is already in use by another process",
            hint="stop the other m6t instance or choose another interface name",
        )
    if exc.errno == errno.EPERM:
        return PlatformError(
            f"not allowed to create TUN interface {name}",
            hint="run as root (needs CAP_NET_ADMIN), or the existing persistent device belongs to another user",
        )
    if exc.errno == errno.EINVAL and _exists(name):
        return PlatformError(
            f"interface {name} already exists and is not a TUN device of this kind",
            hint=f"choose another interface name, or delete the existing one (ip link del {name})",
        )
    return PlatformError(f"TUNSETIFF {name} failed: {exc.strerror}")


def _exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


class LinuxTun(TunDevice):
    """A TUN device read with ``loop.add_reader`` in bounded batches."""

    def __init__(self, name: str) -> None:
        self.fd, self.name = open_tun(name)
        self.dropped = 0
        """Packets ``write`` dropped because the kernel queue was full (EAGAIN/ENOBUFS)."""
        self.write_errors = 0
        """Packets the kernel refused (EINVAL: not IP; EIO: interface down): dropped, never raised."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_packets: PacketsCallback | None = None

    def fileno(self) -> int:
        return self.fd

    def start_reading(self, loop: asyncio.AbstractEventLoop, on_packets: PacketsCallback) -> None:
        if self.fd < 0:
            raise PlatformError(f"TUN {self.name} is closed")
        self.stop_reading()
        self._loop = loop
        self._on_packets = on_packets
        loop.add_reader(self.fd, self._on_readable)

    def _on_readable(self) -> None:
        read = os.read
        fd = self.fd
        on_packets = self._on_packets
        batch: list[bytes] = []
        try:
            for _ in range(MAX_BATCH):
                batch.append(read(fd, READ_SIZE))
        except BlockingIOError:
            pass
        except OSError as exc:
            # A device torn down under us (EBADFD/EIO) stays readable forever: stop rather than spin.
            log.warning("TUN %s: read failed (%s); reading stopped", self.name, exc)
            self.stop_reading()
        if batch and on_packets is not None:
            on_packets(batch)

    def stop_reading(self) -> None:
        if self._loop is not None and self.fd >= 0:
            self._loop.remove_reader(self.fd)
        self._loop = None
        self._on_packets = None

    def write(self, packet: bytes) -> None:
        try:
            os.write(self.fd, packet)
        except BlockingIOError:
            self.dropped += 1
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self.dropped += 1
            elif exc.errno in (errno.EINVAL, errno.EIO, errno.EFAULT):
                self.write_errors += 1
            else:
                raise

    def close(self) -> None:
        if self.fd < 0:
            return
        self.stop_reading()
        fd, self.fd = self.fd, -1
        os.close(fd)
