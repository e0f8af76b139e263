"""Linux TUN devices: ``/dev/net/tun`` with ``TUNSETIFF``, ``IFF_TUN | IFF_NO_PI``, non-persistent.

The device lives exactly as long as its file descriptor: closing it (or the process dying) removes the
interface, so a crashed helper never leaves a stale tunnel behind.

When the kernel allows it the device also gets ``IFF_VNET_HDR`` (:mod:`m6t.platform.linux.offload`): a
virtio-net header before every packet, so that one write can carry many TCP segments (or equal-size UDP
datagrams) of one flow, and, with ``tso``, one read can bring a 64 KB TCP "super-packet" the kernel did not
segment.  Without it (old kernel, refusal, ``M6T_DATAPATH=no-vnet``) the device is the plain one.  The
device is also made multicast-free (``IFF_MULTICAST`` cleared; TUN devices are ``NOARP`` already), so the
kernel sends no MLD reports of its own into the tunnel.
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
import weakref

from m6t.platform.base import PacketsCallback, PlatformError, PlatformErrorCode, TunDevice
from m6t.protocol.values import MergedPacket

assert sys.platform == "linux"

from m6t.platform.linux.netlink import get_sysctl, set_sysctl  # noqa: E402
from m6t.platform.linux.offload import (  # noqa: E402
    F_NEEDS_CSUM,
    GSO_UDP_L4,
    VNET_HDR_LEN,
    ZERO_VNET,
    Coalescer,
    GsoPacket,
    complete_checksum,
    datapath_options,
    make_gso_packet,
    split,
)

log = logging.getLogger(__name__)

TUN_PATH = "/dev/net/tun"
IFNAMSIZ = 16
"""The kernel's interface-name buffer, NUL included: names are at most 15 bytes."""

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFTXQLEN = 0x8943
IFF_MULTICAST = 0x1000
TX_QUEUE_LEN = 2048
"""Packets the kernel may queue for us to read (500 by default).  A TUN drops what does not fit, with no
back-pressure on the sender: a TCP burst the size of its small-queue budget (``tcp_limit_output_bytes``,
1 MiB: 700 packets of 1472 bytes) would lose its tail while we read one packet per system call."""

READ_SIZE = 65535
"""Larger than any IPv6 packet a TUN can hold: a short read buffer would silently truncate."""
MAX_BATCH = 256
"""Packets read per wakeup at most, so that one busy TUN cannot starve the UDP side of the loop."""
SUPER_PACKET_SIZE = 1 << 17
"""Read buffer with the virtio-net header: a super-packet holds up to 64 KB of payload plus its headers."""
MAX_BATCH_BYTES = 256 * 1024
"""Bytes read per wakeup at most: with super-packets (64 KB each) the packet bound alone is too loose."""

_IFREQ = struct.Struct("16sH22x")
_IFREQ_INT = struct.Struct("16si20x")
_CSUM_FIELDS = struct.Struct("=HH")
"""virtio_net_hdr's csum_start and csum_offset, at offset 6."""


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


def open_tun(name: str, *, vnet: bool = False) -> tuple[int, str]:
    """Create a non-persistent TUN interface; returns its non-blocking fd and the kernel's name for it.

    ``name`` may contain ``%d`` to let the kernel pick a free number (``"m6t%d"``).  The caller owns the
    fd: ``os.close`` removes the interface.  ``vnet``: every read and write carries a virtio-net header.
    """
    raw = validate_ifname(name)
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise PlatformError(
            f"{TUN_PATH} is missing", hint="load the TUN driver: modprobe tun", code=PlatformErrorCode.TUN_MISSING
        ) from exc
    except PermissionError as exc:
        # Opening the device needs no capability (creating the interface is what needs CAP_NET_ADMIN): EACCES
        # is the file's mode, EPERM a device policy.
        raise PlatformError(
            f"cannot open {TUN_PATH}: {exc.strerror}",
            hint=f"{TUN_PATH} is normally open to all users (mode 0666, as udev makes it): chmod 0666 {TUN_PATH}"
            if exc.errno == errno.EACCES
            else "a device policy denies it to this process (systemd's DevicePolicy=/DeviceAllow=, a container's "
            f"device rules): allow {TUN_PATH} there",
            code=PlatformErrorCode.PERMISSION_DENIED,
        ) from exc
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            raise PlatformError(
                f"{TUN_PATH}: no TUN driver in this kernel",
                hint="load the TUN driver: modprobe tun",
                code=PlatformErrorCode.TUN_MISSING,
            ) from exc
        raise PlatformError(f"cannot open {TUN_PATH}: {exc.strerror}") from exc
    try:
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if vnet else 0)
        result = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(raw, flags))
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
            code=PlatformErrorCode.INTERFACE_BUSY,
        )
    if exc.errno == errno.EPERM:
        return PlatformError(
            f"not allowed to create TUN interface {name}",
            hint="run as root (needs CAP_NET_ADMIN), or the existing persistent device belongs to another user",
            code=PlatformErrorCode.PERMISSION_DENIED,
        )
    if exc.errno == errno.EINVAL and _exists(name):
        return PlatformError(
            f"interface {name} already exists and is not a TUN device of this kind",
            hint=f"choose another interface name, or delete the existing one (ip link del {name})",
            code=PlatformErrorCode.INTERFACE_BUSY,
        )
    return PlatformError(f"TUNSETIFF {name} failed: {exc.strerror}")


def clear_link_flags(name: str, flags: int) -> bool:
    """Clear interface flags (``SIOCSIFFLAGS``), e.g. ``IFF_MULTICAST``; False if the kernel refused."""
    raw = validate_ifname(name)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            current = _IFREQ.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS, _IFREQ.pack(raw, 0)))[1]
            if current & flags:
                fcntl.ioctl(sock, SIOCSIFFLAGS, _IFREQ.pack(raw, current & ~flags & 0xFFFF))
    except OSError as exc:
        log.debug("cannot clear flags %#x on %s: %s", flags, name, exc)
        return False
    return True


def quiet_multicast(name: str) -> bool:
    """Make a fresh interface multicast-free, so that the kernel sends no MLD reports through it.

    ``IFF_MULTICAST`` cleared (programs such as mDNS responders then leave the interface alone).  That alone
    is not enough on a gateway: with forwarding on, the kernel joined the all-routers group when the
    device appeared and reports it once the link is up.  So the device's forwarding is turned off and on
    around the change (leaving the group needs the flag still set; joining it again needs it set), with
    MLDv1 for the device (``force_mld_version=1``), which leaves silently while the link is down where
    MLDv2 would queue a report of the leave.  The other groups a TUN joins are never reported
    (all-nodes), or not joined at all (``NOARP``).  Must run before the link goes up.
    """
    key = f"net/ipv6/conf/{name}/forwarding"
    try:
        forwarding = get_sysctl(key) == "1"
    except PlatformError:
        forwarding = False  # no IPv6 on the device (or none at all): no MLD either
    if forwarding:
        try:
            set_sysctl(f"net/ipv6/conf/{name}/force_mld_version", 1)
            set_sysctl(key, 0)
        except PlatformError as exc:
            # A hardened service (systemd ProtectKernelTunables=) sees /proc/sys read-only: the only cost is
            # one MLD report into the tunnel, which the far side drops, so it is no reason to fail.
            log.info("cannot silence MLD on %s (%s); continuing", name, exc)
            forwarding = get_sysctl(key) != "1"  # restore below only what was changed
    try:
        return clear_link_flags(name, IFF_MULTICAST)
    finally:
        if forwarding:
            try:
                set_sysctl(key, 1)
            except PlatformError as exc:
                log.warning("%s", exc)


def set_tx_queue_len(name: str, length: int) -> bool:
    """The interface's transmit queue length (``SIOCSIFTXQLEN``); False if the kernel refused."""
    raw = validate_ifname(name)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            fcntl.ioctl(sock, SIOCSIFTXQLEN, _IFREQ_INT.pack(raw, length))
    except OSError as exc:
        log.debug("cannot set the transmit queue length of %s: %s", name, exc)
        return False
    return True


def set_offload(fd: int, *, tso: bool) -> tuple[bool, bool]:
    """``TUNSETOFFLOAD`` on a ``IFF_VNET_HDR`` device: ``(tso on, UDP GSO writes supported)``.

    The kernel rejects flags it does not know, which tells whether it has TUN USO (6.2+, and with it
    ``GSO_UDP_L4`` writes).  Without ``tso`` the kernel keeps segmenting and checksumming before the device
    (offloads 0, its default), and merged writes still work.
    """
    uso = True
    try:
        fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_USO4 | TUN_F_USO6)
    except OSError:
        uso = False
    wanted = (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | ((TUN_F_USO4 | TUN_F_USO6) if uso else 0)) if tso else 0
    try:
        fcntl.ioctl(fd, TUNSETOFFLOAD, wanted)
    except OSError as exc:
        log.info("TUN offloads refused (%s): the kernel segments before the device", exc.strerror)
        fcntl.ioctl(fd, TUNSETOFFLOAD, 0)
        return False, uso
    return tso, uso


def _exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


class LinuxTun(TunDevice):
    """A TUN device read with ``loop.add_reader`` in bounded batches.

    ``vnet`` / ``tso`` (default: from ``M6T_DATAPATH``, see :func:`~m6t.platform.linux.offload.datapath_options`)
    ask for the virtio-net header and for super-packet reads; what the kernel granted is in :attr:`vnet`,
    :attr:`tso` and :attr:`uso`.  :meth:`write` takes merged packets (:class:`~m6t.protocol.values.MergedPacket`: one
    write for the lot with the header, else split), and reads hand up super-packets as such.
    """

    def __init__(self, name: str, *, vnet: bool | None = None, tso: bool | None = None) -> None:
        options = datapath_options()
        want_vnet = "no-vnet" not in options if vnet is None else vnet
        want_tso = "tso" in options if tso is None else tso
        self.vnet = False
        """Reads and writes carry a virtio-net header: merged packets are written in one go."""
        self.tso = False
        """The kernel hands over TCP super-packets (and leaves checksums to us)."""
        self.uso = False
        """Merged UDP datagrams (``GSO_UDP_L4``) may be written."""
        if want_vnet:
            self.fd, self.name = open_tun(name, vnet=True)
            try:
                self.tso, self.uso = set_offload(self.fd, tso=want_tso)
                self.uso = self.uso and "no-uso" not in options
                self.vnet = True
            except OSError as exc:
                log.info("TUN %s: no virtio-net header offloads (%s); plain reads and writes", name, exc.strerror)
                os.close(self.fd)
        if not self.vnet:
            self.fd, self.name = open_tun(name)
        quiet_multicast(self.name)
        set_tx_queue_len(self.name, TX_QUEUE_LEN)
        self.dropped = 0
        """Packets ``write`` dropped because the kernel queue was full (EAGAIN/ENOBUFS)."""
        self.write_errors = 0
        """Packets the kernel refused (EINVAL: not IP; EIO: interface down): dropped, never raised."""
        self.merged_writes = 0
        """Merged packets written in one go (each standing for several packets)."""
        self.coalescers: weakref.WeakSet[Coalescer] = weakref.WeakSet()
        """Who merges packets for this device: told when it turns out not to take merged UDP."""
        self.merged_refused = 0
        """Merged packets the kernel refused (EINVAL), then written one by one."""
        self.super_packets = 0
        """Super-packets read (TSO)."""
        self.checksums = 0
        """Checksums completed for the kernel (``NEEDS_CSUM`` reads, with ``tso``)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_packets: PacketsCallback | None = None
        self._header = bytearray(VNET_HDR_LEN)
        self._buffer = bytearray(SUPER_PACKET_SIZE)
        self._view = memoryview(self._buffer)
        self._read_iov = [self._header, self._buffer]
        self._write_iov: list[bytes] = [ZERO_VNET, b""]
        self._sparse = False
        """The previous wakeup read one packet: the next one hands its first packet up at once."""

    def fileno(self) -> int:
        return self.fd

    def coalescer(self) -> Coalescer | None:
        """What should merge the datagrams whose packets are written here: a new :class:`Coalescer` if this
        device takes merged writes (``vnet``; UDP datagrams too with ``uso``), else ``None``.

        The device keeps the coalescers it handed out informed: a kernel that refuses a merged UDP write
        turns UDP merging off in every one of them.
        """
        if not self.vnet or self.fd < 0:
            return None
        coalescer = Coalescer(udp=self.uso)
        self.coalescers.add(coalescer)
        return coalescer

    def start_reading(self, loop: asyncio.AbstractEventLoop, on_packets: PacketsCallback) -> None:
        if self.fd < 0:
            raise PlatformError(f"TUN {self.name} is closed")
        self.stop_reading()
        self._loop = loop
        self._on_packets = on_packets
        loop.add_reader(self.fd, self._on_readable_vnet if self.vnet else self._on_readable)

    def _on_readable(self) -> None:
        read = os.read
        fd = self.fd
        on_packets = self._on_packets
        early = self._sparse
        self._sparse = False
        batch: list[bytes] = []
        try:
            for i in range(MAX_BATCH):
                batch.append(read(fd, READ_SIZE))
                self._sparse = i == 0
                if early:
                    early = False
                    if not self._deliver(batch):
                        return
                    batch = []
        except BlockingIOError:
            pass
        except OSError as exc:
            # A device torn down under us (EBADFD/EIO) stays readable forever: stop rather than spin.
            log.warning("TUN %s: read failed (%s); reading stopped", self.name, exc)
            self.stop_reading()
        if batch and on_packets is not None:
            on_packets(batch)

    def _on_readable_vnet(self) -> None:
        readv = os.readv
        fd = self.fd
        iov = self._read_iov
        header = self._header
        view = self._view
        on_packets = self._on_packets
        early = self._sparse
        self._sparse = False
        batch: list[bytes] = []
        budget = MAX_BATCH_BYTES
        try:
            for i in range(MAX_BATCH):
                n = readv(fd, iov) - VNET_HDR_LEN
                self._sparse = i == 0
                if n < 0:
                    continue
                packet = make_gso_packet(view[:n], bytes(header)) if header[1] else None
                if packet is not None:
                    self.super_packets += 1
                    batch.append(packet)
                else:
                    if header[0] & F_NEEDS_CSUM:
                        start, offset = _CSUM_FIELDS.unpack_from(header, 6)
                        complete_checksum(self._buffer, n, start, offset)
                        self.checksums += 1
                    batch.append(bytes(view[:n]))
                if early:
                    early = False
                    if not self._deliver(batch):
                        return
                    batch = []
                budget -= n
                if budget <= 0:
                    break
        except BlockingIOError:
            pass
        except OSError as exc:
            log.warning("TUN %s: read failed (%s); reading stopped", self.name, exc)
            self.stop_reading()
        if batch and on_packets is not None:
            on_packets(batch)

    def _deliver(self, batch: list[bytes]) -> bool:
        """Hand up the first packet before looking for more, when traffic is sparse (the previous wakeup
        brought one packet): the read that finds nothing (a system call and an exception) then costs no
        latency.  A burst after a quiet spell only has its first packet go up alone.  False if the callback
        stopped reading."""
        on_packets = self._on_packets
        if on_packets is not None:
            on_packets(batch)
        return self._on_packets is not None and self.fd >= 0

    def stop_reading(self) -> None:
        if self._loop is not None and self.fd >= 0:
            self._loop.remove_reader(self.fd)
        self._loop = None
        self._on_packets = None

    def write(self, packet: bytes) -> None:
        if packet.__class__ is not bytes and isinstance(packet, MergedPacket):
            self._write_merged(packet)
            return
        try:
            if self.vnet:
                iov = self._write_iov
                iov[0] = ZERO_VNET
                iov[1] = packet
                os.writev(self.fd, iov)
            else:
                os.write(self.fd, packet)
        except BlockingIOError:
            self.dropped += 1
        except OSError as exc:
            self._write_failed(exc)

    def _write_failed(self, exc: OSError, count: int = 1) -> None:
        if exc.errno == errno.ENOBUFS:
            self.dropped += count
        elif exc.errno in (errno.EINVAL, errno.EIO, errno.EFAULT):
            self.write_errors += count
        else:
            raise exc

    def _write_merged(self, packet: MergedPacket) -> None:
        if not self.vnet or not isinstance(packet, GsoPacket):
            self._write_split(packet)
            return
        iov = self._write_iov
        iov[0] = packet.vnet
        iov[1] = packet
        try:
            os.writev(self.fd, iov)
        except BlockingIOError:
            self.dropped += packet.segments
            return
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                self._write_failed(exc, packet.segments)
                return
            # The kernel refused the merged packet: these one by one, and if it is a kind of merged write
            # it does not take at all (UDP on an older kernel), no more of that kind.
            self.merged_refused += 1
            if packet.vnet[1] == GSO_UDP_L4 and self.uso:
                self.uso = False
                for coalescer in self.coalescers:
                    coalescer.udp = False
                log.info("TUN %s: merged UDP write refused (%s); UDP datagrams go one by one", self.name, exc)
            self._write_split(packet)
            return
        self.merged_writes += 1

    def _write_split(self, packet: MergedPacket) -> None:
        if not isinstance(packet, GsoPacket):
            self.write_errors += packet.segments
            return
        for part in split(packet):
            self.write(part)

    def close(self) -> None:
        if self.fd < 0:
            return
        self.stop_reading()
        fd, self.fd = self.fd, -1
        os.close(fd)
