"""The client's UDP/IPv4 channel toward the gateway, for Windows and its Proactor event loop.

Design: the Proactor loop (Windows' default) has no ``add_reader``, and ``loop.sock_recvfrom`` costs one
overlapped operation, one future and one task step per datagram.  So a reader thread blocks in
``select`` on the non-blocking socket (plus a wake-up socket pair, so that stopping is immediate), drains
every queued datagram in one go, and hands the batch to the loop with one ``call_soon_threadsafe``, like
the Wintun reader on the TUN side.  Sends stay on the loop thread and never block: a full buffer drops.
Nothing here is Proactor-specific, so the same code runs, and is tested, under any loop on any OS.

Windows specifics, all through :class:`~m6t.platform.windows.system.Winsock`:

* DF: ``IP_DONTFRAGMENT`` is FALSE by default on Windows; it is set to FALSE anyway so that a changed
  default can never break draft 2.6 (outer packets must be fragmentable).
* ``SIO_UDP_CONNRESET`` / ``SIO_UDP_NETRESET`` off: otherwise an ICMP port unreachable (gateway
  restarting) or time exceeded makes the next ``recvfrom`` fail with WSAECONNRESET / WSAENETRESET.
* No UDP GSO/GRO: ``UDP_SEND_MSG_SIZE`` (Windows 10+) exists but Python cannot pass the control message
  it needs through ``sendmsg`` (Windows has no ``sendmsg`` in Python), so datagrams go one by one.
* Path MTU probes (RFC 8899, :meth:`WindowsUdpChannel.send_probe`) set ``IP_DONTFRAGMENT`` for their
  datagram: "Indicates that data should not be fragmented regardless of the local MTU. Valid only for
  message oriented protocols. Microsoft TCP/IP providers respect this option for UDP and ICMP" (Microsoft,
  IPPROTO_IP socket options).  Winsock has no per-datagram form for IPv4 sends from Python, so the option
  is set before the probe and cleared before the next data datagram.
* Bound to one uplink (``unicast_if``, an interface index): ``IP_UNICAST_IF`` before the ``connect``,
  "Gets or sets the outgoing interface for sending IPv4 traffic ... This option does not change the
  default interface for receiving IPv4 traffic" (Microsoft, IPPROTO_IP socket options): datagrams leave
  through that interface and the source is its address; what arrives is what is addressed to that source,
  and the strong host model Windows applies to IPv4 by default only takes it on that interface.
* WSAEMSGSIZE (10040) on send → :class:`PmtuEvidence` ``("emsgsize")``.  Windows does not report an ICMP
  fragmentation-needed to a UDP socket, so a probe too large for the path shows only as unanswered (the
  search's timers) unless the local link refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import select
import socket
import threading
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address

from m6t.platform.base import PlatformError, UdpChannel
from m6t.platform.windows.system import SIO_UDP_CONNRESET, SIO_UDP_NETRESET, Winsock
from m6t.protocol.values import PmtuEvidence

log = logging.getLogger(__name__)

Address = tuple[str, int]
DatagramsCallback = Callable[[Sequence[tuple[bytes, Address]]], None]

RECV_SIZE = 65536
MAX_BATCH = 256
"""Datagrams per hand-over at most, so one busy socket cannot starve the rest of the loop."""
MAX_PENDING_BATCHES = 8
"""Batches queued in the loop at most; beyond, datagrams wait (and finally drop) in the socket buffer."""
SELECT_TIMEOUT = 0.5
"""Only bounds a lost wake-up: stopping writes to the wake-up socket."""
JOIN_TIMEOUT = 5.0
BUFFER_BYTES = 1 << 20
"""Windows' default UDP receive buffer (64 KiB) overflows in one burst of full-size tunnel packets."""

# Winsock error numbers.  On Windows Python's errno module gives the WSA values (errno.EMSGSIZE == 10040);
# listing them explicitly keeps the sets right whatever the host, and lets the tests run on Linux.
WSAENOTSOCK = 10038
WSAEDESTADDRREQ = 10039
WSAEMSGSIZE = 10040
WSAEADDRNOTAVAIL = 10049
WSAENETDOWN = 10050
WSAENETUNREACH = 10051
WSAENETRESET = 10052
WSAECONNRESET = 10054
WSAENOBUFS = 10055
WSAENOTCONN = 10057
WSAECONNREFUSED = 10061
WSAEHOSTUNREACH = 10065

_OVERSIZE = frozenset({errno.EMSGSIZE, WSAEMSGSIZE})
_ICMP = frozenset({errno.ECONNRESET, errno.ECONNREFUSED, WSAECONNRESET, WSAECONNREFUSED, WSAENETRESET})
"""An ICMP error about an earlier datagram, reported once on a later call: counted, never fatal."""
_DROP = frozenset(
    {
        errno.ENOBUFS,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.EADDRNOTAVAIL,
        WSAENOBUFS,
        WSAENETDOWN,
        WSAENETUNREACH,
        WSAEHOSTUNREACH,
        WSAEADDRNOTAVAIL,
    }
)
"""No buffer or no route right now (e.g. mid-move, before the old source address is gone): drop."""
_FATAL = frozenset(
    {errno.EBADF, errno.ENOTSOCK, errno.EDESTADDRREQ, errno.ENOTCONN, WSAENOTSOCK, WSAEDESTADDRREQ, WSAENOTCONN}
)
"""Send errors that are bugs in the caller, not network weather: raised, never counted."""


def os_error_code(exc: OSError) -> int:
    """The Winsock error when there is one (``winerror``), else ``errno``."""
    code = getattr(exc, "winerror", None)
    if isinstance(code, int) and code:
        return code
    return exc.errno or 0


class UdpCounters:
    __slots__ = ("dropped", "icmp_errors", "last_error", "oversize", "received", "send_errors", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.dropped = 0
        """Datagrams dropped on send: full socket buffer, or no route right now."""
        self.oversize = 0
        self.send_errors = 0
        """Datagrams dropped on any other send error; ``last_error`` holds its code."""
        self.last_error = 0
        self.icmp_errors = 0


def configure_socket(sock: socket.socket, winsock: Winsock) -> None:
    """Non-blocking, DF clear, big buffers, ICMP errors not turned into receive failures."""
    sock.setblocking(False)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, BUFFER_BYTES)
        except OSError as exc:
            log.info("cannot enlarge the UDP socket buffer (%s)", exc)
    winsock.set_dont_fragment(sock, False)
    for code, name in ((SIO_UDP_CONNRESET, "SIO_UDP_CONNRESET"), (SIO_UDP_NETRESET, "SIO_UDP_NETRESET")):
        try:
            winsock.set_bool_ioctl(sock, code, False)
        except PlatformError as exc:
            # Not fatal: the reader also survives the errors these ioctls suppress.
            log.info("%s not applied: %s", name, exc)


class WindowsUdpChannel(UdpChannel):
    """A connected UDP socket toward one gateway, read by a thread that hands batches to the loop."""

    def __init__(
        self,
        gateway: tuple[IPv4Address, int],
        *,
        winsock: Winsock,
        local: Address | None = None,
        unicast_if: int | None = None,
    ) -> None:
        self._remote: Address = (str(gateway[0]), gateway[1])
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            configure_socket(sock, winsock)
            if unicast_if is not None:
                winsock.set_unicast_interface(sock, unicast_if)
            if local is not None:
                sock.bind(local)
            sock.connect(self._remote)
        except OSError as exc:
            sock.close()
            raise PlatformError(f"cannot open UDP toward {self._remote[0]}:{self._remote[1]}: {exc.strerror}") from exc
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._local: Address = sock.getsockname()
        self.stats = UdpCounters()
        self._winsock = winsock
        self._df = False
        """IP_DONTFRAGMENT is set: a probe left last."""
        self._reader: _Reader | None = None
        self._on_pmtu: Callable[[PmtuEvidence], None] | None = None
        self._closed = False

    @property
    def local_address(self) -> Address:
        return self._local

    @property
    def remote_address(self) -> Address:
        return self._remote

    def start_reading(
        self,
        loop: asyncio.AbstractEventLoop,
        on_datagrams: DatagramsCallback,
        on_pmtu: Callable[[PmtuEvidence], None],
    ) -> None:
        if self._closed:
            raise PlatformError("UDP channel is closed")
        self.stop_reading()
        self._on_pmtu = on_pmtu
        reader = _Reader(self, loop, on_datagrams)
        self._reader = reader
        reader.thread.start()

    def stop_reading(self) -> None:
        reader, self._reader = self._reader, None
        self._on_pmtu = None
        if reader is not None:
            reader.stop()

    def send(self, datagrams: Sequence[bytes]) -> None:
        if self._df:
            try:
                self._winsock.set_dont_fragment(self.sock, False)
            except PlatformError as exc:
                log.warning("cannot clear DF after a path MTU probe: %s", exc)
            else:
                self._df = False
        oversize = 0
        for datagram in datagrams:
            oversize += self._send_one(datagram)
        if oversize and self._on_pmtu is not None:
            self._on_pmtu(PmtuEvidence(mtu=0, source="emsgsize"))

    def send_probe(self, datagram: bytes) -> None:
        """One datagram with DF set (``IP_DONTFRAGMENT`` TRUE; see the module docstring)."""
        if not self._df:
            try:
                self._winsock.set_dont_fragment(self.sock, True)
            except PlatformError as exc:
                log.info("cannot set DF for a path MTU probe: %s", exc)
                self.stats.send_errors += 1
                return
            self._df = True
        if self._send_one(datagram) and self._on_pmtu is not None:
            self._on_pmtu(PmtuEvidence(mtu=0, source="emsgsize"))

    def _send_one(self, datagram: bytes) -> int:
        stats = self.stats
        first_error = 0
        for attempt in (0, 1):
            try:
                self.sock.send(datagram)
            except BlockingIOError:
                stats.dropped += 1
                return 0
            except OSError as exc:
                code = os_error_code(exc)
                if code in _OVERSIZE or exc.errno in _OVERSIZE:
                    if attempt == 0:
                        # Maybe an earlier probe's fragmentation-needed reported once (a stack that does so):
                        # this datagram deserves another try.
                        first_error = WSAEMSGSIZE
                        continue
                    stats.oversize += 1
                    return 1
                if code in _FATAL or exc.errno in _FATAL:
                    raise
                if code in _ICMP and attempt == 0:
                    # The one-shot report of an ICMP error about an earlier datagram is now consumed:
                    # this datagram deserves another try.
                    stats.icmp_errors += 1
                    continue
                if code in _DROP or code in _ICMP:
                    stats.dropped += 1
                    return 0
                stats.send_errors += 1
                stats.last_error = code
                return 0
            if first_error == WSAEMSGSIZE:
                stats.icmp_errors += 1
                if self._on_pmtu is not None:
                    self._on_pmtu(PmtuEvidence(mtu=0, source="icmp"))
            stats.sent += 1
            return 0
        return 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stop_reading()
        self.sock.close()


class _Reader:
    """One reading run: a thread in ``select`` on the socket and a wake-up pair."""

    def __init__(self, channel: WindowsUdpChannel, loop: asyncio.AbstractEventLoop, on_datagrams: DatagramsCallback):
        self.channel = channel
        self.loop = loop
        self.on_datagrams = on_datagrams
        self.stopping = threading.Event()
        self.pending = threading.Semaphore(MAX_PENDING_BATCHES)
        # socketpair works on Windows too (emulated over loopback TCP): select() there takes sockets only.
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.buffer = bytearray(RECV_SIZE)
        self.thread = threading.Thread(target=self.run, name="m6t-udp-reader", daemon=True)

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.wake_w.send(b"\0")
        if self.thread is not threading.current_thread() and self.thread.ident is not None:
            self.thread.join(JOIN_TIMEOUT)
            if self.thread.is_alive():
                log.error("UDP reader thread did not stop")
                return
        self.wake_r.close()
        self.wake_w.close()

    def run(self) -> None:
        try:
            self.read_loop()
        except Exception:
            log.exception("UDP reader thread failed; reading stopped")

    def read_loop(self) -> None:
        sock = self.channel.sock
        watched = [sock, self.wake_r]
        stopping = self.stopping
        while not stopping.is_set():
            try:
                readable, _, _ = select.select(watched, [], [], SELECT_TIMEOUT)
            except (OSError, ValueError):
                return  # the socket was closed under us
            if stopping.is_set() or self.wake_r in readable:
                return
            if not readable:
                continue
            batch = self.drain(sock)
            if batch is None:
                return
            if batch and not self.hand_over(batch):
                return

    def drain(self, sock: socket.socket) -> list[tuple[bytes, Address]] | None:
        """Everything queued (up to MAX_BATCH); ``None`` when the socket is unusable."""
        stats = self.channel.stats
        view = memoryview(self.buffer)
        batch: list[tuple[bytes, Address]] = []
        errors = 0
        while len(batch) < MAX_BATCH:
            try:
                n, addr = sock.recvfrom_into(self.buffer)
            except BlockingIOError:
                break
            except OSError as exc:
                code = os_error_code(exc)
                if code in _ICMP or exc.errno in _ICMP or code in _OVERSIZE:
                    stats.icmp_errors += 1
                    errors += 1
                    if errors > 16:  # only guards against a flood of them
                        break
                    continue
                log.warning("UDP receive failed (%s); reading stopped", exc)
                return None
            batch.append((bytes(view[:n]), addr))
        stats.received += len(batch)
        return batch

    def hand_over(self, batch: list[tuple[bytes, Address]]) -> bool:
        while not self.pending.acquire(timeout=SELECT_TIMEOUT):
            if self.stopping.is_set():
                return False
        try:
            self.loop.call_soon_threadsafe(self.deliver, batch)
        except RuntimeError:  # the loop is closed
            self.pending.release()
            return False
        return True

    def deliver(self, batch: list[tuple[bytes, Address]]) -> None:
        self.pending.release()
        if self.stopping.is_set():
            return
        self.on_datagrams(batch)
