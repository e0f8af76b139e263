"""The client's UDP/IPv4 socket toward the gateway on macOS: DF clear, plain send/recv loops.

Differences from Linux, and why:

* no ``IP_MTU_DISCOVER``: BSD stacks send UDP with DF clear unless ``IP_DONTFRAG`` (28 on macOS) is set,
  so the channel sets it to 0 explicitly -- the outer packets must never carry DF (draft 2.6) -- and
  carries on if an old kernel does not know the option (DF is clear there anyway);
* path MTU probes (RFC 8899, :meth:`DarwinUdpChannel.send_probe`) set ``IP_DONTFRAG`` for their datagram:
  ip(4) on macOS, "IP_DONTFRAG ... Set the Don't Fragment flag in the IP header of outgoing packets"; BSD
  has no per-datagram form, so the option is set before the probe and cleared before the next data
  datagram (not right after the probe, so that the answer to it still finds the socket asking for DF);
* no ``IP_RECVERR`` error queue: ICMP errors about our flow surface once as an errno on the connected
  socket (ECONNREFUSED for port unreachable, counted and otherwise ignored; EMSGSIZE for a
  fragmentation-needed, ``inetctlerrmap[PRC_MSGSIZE]``, which only a DF probe can draw).  A send that fails
  with EMSGSIZE is retried once: if the retry leaves, the error was that report (``PmtuEvidence("icmp")``
  without a size), otherwise the datagram itself is too large for the link (``"emsgsize"``);
* no UDP GSO/GRO: datagrams are sent and received one system call each (``sendmsg_x``/``recvmsg_x``
  batch on macOS but are private API);
* ENOBUFS is frequent on macOS when an interface queue is full: a drop, as on Linux;
* bound to one uplink (``bound_if``): ``IP_BOUND_IF`` ("int; set/get bound interface", netinet/in.h) before
  the ``connect``, so that ``in_pcbladdr`` looks the route up scoped to that interface and takes its
  address as the source, and every datagram leaves through it (``ip_output``'s ``ipoa_boundif``).  XNU
  filters received datagrams by the bound interface only on interfaces that restrict receiving
  (``inp_restricted_recv``); elsewhere the socket receives what is addressed to its local address, the
  uplink's.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address

from m6t.platform.base import PlatformError, UdpChannel
from m6t.platform.darwin.syscalls import IP_BOUND_IF, IP_DONTFRAG, IPPROTO_IP, Syscalls
from m6t.protocol.values import PmtuEvidence

log = logging.getLogger(__name__)

RECV_SIZE = 65536
MAX_BATCH = 256
"""Datagrams delivered per wakeup at most, so one busy socket cannot starve the rest of the loop."""

Address = tuple[str, int]

_ICMP_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.EACCES,
    }
)
"""What a connected socket reports once after an ICMP error about an earlier datagram of ours."""
_DROPS = frozenset({errno.ENOBUFS, errno.ENETDOWN, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL})
"""Send failures that are network weather (full queue, no route right now, our source address gone)."""
_FATAL = frozenset({errno.EBADF, errno.ENOTSOCK, errno.EDESTADDRREQ, errno.ENOTCONN})
"""Send errors that are bugs in the caller, not network weather: raised, never counted."""


class DarwinUdpChannel(UdpChannel):
    """A connected, non-blocking UDP socket toward one gateway, read with ``loop.add_reader``."""

    def __init__(
        self,
        gateway: tuple[IPv4Address, int],
        *,
        syscalls: Syscalls,
        local: Address | None = None,
        bound_if: int = 0,
    ) -> None:
        self._remote: Address = (str(gateway[0]), gateway[1])
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            try:
                syscalls.setsockopt(sock.fileno(), IPPROTO_IP, IP_DONTFRAG, 0)
            except OSError as exc:
                if exc.errno not in (errno.ENOPROTOOPT, errno.EINVAL):
                    raise
                log.debug("IP_DONTFRAG unknown to this kernel (%s): DF is clear by default", exc.strerror)
            if bound_if:
                syscalls.setsockopt(sock.fileno(), IPPROTO_IP, IP_BOUND_IF, bound_if)
            if local is not None:
                sock.bind(local)
            sock.connect(self._remote)
        except OSError as exc:
            sock.close()
            raise PlatformError(f"cannot open UDP toward {self._remote[0]}:{self._remote[1]}: {exc.strerror}") from exc
        self.sock = sock
        self._local: Address = sock.getsockname()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_datagrams: Callable[[Sequence[tuple[bytes, Address]]], None] | None = None
        self._on_pmtu: Callable[[PmtuEvidence], None] | None = None
        self.sent = 0
        self.received = 0
        self.dropped = 0
        """Datagrams dropped on send: full queue, no route right now, source address gone."""
        self.oversize = 0
        self.send_errors = 0
        """Datagrams dropped on any other send error; ``last_error`` holds its errno."""
        self.last_error = 0
        self.icmp_errors = 0
        """ICMP errors about our datagrams (port unreachable, ...): counted, never fatal."""
        self._syscalls = syscalls
        self._df = False
        """IP_DONTFRAG is set: a probe left last."""

    @property
    def local_address(self) -> Address:
        return self._local

    @property
    def remote_address(self) -> Address:
        return self._remote

    def fileno(self) -> int:
        return self.sock.fileno()

    def start_reading(
        self,
        loop: asyncio.AbstractEventLoop,
        on_datagrams: Callable[[Sequence[tuple[bytes, Address]]], None],
        on_pmtu: Callable[[PmtuEvidence], None],
    ) -> None:
        self.stop_reading()
        self._loop = loop
        self._on_datagrams = on_datagrams
        self._on_pmtu = on_pmtu
        loop.add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        recvfrom = self.sock.recvfrom
        out: list[tuple[bytes, Address]] = []
        errors = 0
        while len(out) < MAX_BATCH:
            try:
                data, address = recvfrom(RECV_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    self._report(PmtuEvidence(mtu=0, source="icmp"))  # a probe's fragmentation-needed
                elif exc.errno not in _ICMP_ERRNOS:
                    raise
                # Each ICMP error is reported once; the bound only guards against a flood of them.
                self.icmp_errors += 1
                errors += 1
                if errors > 16:
                    break
                continue
            out.append((data, address))
        self.received += len(out)
        if out and self._on_datagrams is not None:
            self._on_datagrams(out)

    def stop_reading(self) -> None:
        if self._loop is not None and self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
        self._loop = None
        self._on_datagrams = None
        self._on_pmtu = None

    def send(self, datagrams: Sequence[bytes]) -> None:
        if self._df:
            self._set_df(False)
        oversize = 0
        for datagram in datagrams:
            oversize += self._send_one(datagram)
        if oversize:
            self._report(PmtuEvidence(mtu=0, source="emsgsize"))

    def send_probe(self, datagram: bytes) -> None:
        """One datagram with DF set (``IP_DONTFRAG`` 1; see the module docstring)."""
        if not self._df:
            try:
                self._set_df(True)
            except OSError as exc:
                # A kernel without IP_DONTFRAG cannot probe: the probe is lost, the search ends at its floor.
                self.send_errors += 1
                self.last_error = exc.errno or 0
                return
        if self._send_one(datagram):
            self._report(PmtuEvidence(mtu=0, source="emsgsize"))

    def _set_df(self, value: bool) -> None:
        self._syscalls.setsockopt(self.sock.fileno(), IPPROTO_IP, IP_DONTFRAG, int(value))
        self._df = value

    def _report(self, evidence: PmtuEvidence) -> None:
        if self._on_pmtu is not None:
            self._on_pmtu(evidence)

    def _send_one(self, datagram: bytes) -> int:
        send = self.sock.send
        first_error = 0
        for attempt in (0, 1):
            try:
                send(datagram)
            except BlockingIOError:
                self.dropped += 1
                return 0
            except OSError as exc:
                code = exc.errno
                if code == errno.EMSGSIZE and attempt == 0:
                    # Maybe the once-only report of a fragmentation-needed about an earlier probe: try again.
                    first_error = code
                    continue
                if code == errno.EMSGSIZE:
                    self.oversize += 1
                    return 1
                if code in _FATAL:
                    raise
                if code == errno.ECONNREFUSED and attempt == 0:
                    # The one-shot report of a port unreachable about an earlier datagram: now consumed,
                    # so this datagram deserves another try.
                    self.icmp_errors += 1
                    continue
                if code in _DROPS or code in _ICMP_ERRNOS:
                    self.dropped += 1
                    return 0
                self.send_errors += 1
                self.last_error = code or 0
                return 0
            if first_error == errno.EMSGSIZE:
                self.icmp_errors += 1
                self._report(PmtuEvidence(mtu=0, source="icmp"))
            self.sent += 1
            return 0
        return 0

    def close(self) -> None:
        self.stop_reading()
        self.sock.close()
