"""The gateway's data path on one asyncio loop: UDP sockets and the TUN in, the core, sockets and TUN out.

Each wakeup reads a batch (until EAGAIN, bounded so that no source starves the others), feeds it to the
core with one clock reading, then flushes the core's outputs: TUN writes in order, and UDP sends grouped
per mobile node so that equal-size runs leave in one ``sendmsg`` with UDP GSO.  Garbage collection runs
in bounded slices between wakeups.

With a TUN that takes merged writes (``LinuxTun.vnet``: it hands out a coalescer), consecutive TCP
segments (and equal-size UDP datagrams) of one flow are merged as they are read, so the core checks one
packet for the lot and the TUN gets one write; with super-packet reads (``LinuxTun.tso``) the core checks
one 64 KB packet from the Home Agent side and the socket splits it.  Either way the core counts the packets
on the wire.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from m6t.gateway.core import GatewayCore
from m6t.gateway.fastlane import FastLane, fastlane_off_metrics
from m6t.gateway.metrics import Metric, core_metrics
from m6t.gateway.scheduling import SLICE_LIMIT_S, collect_for
from m6t.gateway.states import unpack_endpoint
from m6t.platform.base import PacketsCallback
from m6t.platform.linux.offload import Coalescer
from m6t.platform.linux.udp import recv_batch, send_batch, udp_stats

log = logging.getLogger(__name__)

GC_INTERVAL_S = 0.1
"""How often expiry runs when it has caught up.  Deadlines are honoured to a tick at lookup anyway (an
expired state is gone for forwarding before it is collected), so collection only reclaims memory and
updates the counts: ten wakeups a second are plenty, where one per 10 ms tick kept an idle gateway busy."""
IDLE_GC_INTERVAL_S = 1.0
"""With no state at all there is nothing to expire: only the rate limiter's bookkeeping, once a second."""
UDP_BATCH = 256


class GatewayTun(Protocol):
    """What the driver needs of its TUN device: a :class:`~m6t.platform.linux.tun.LinuxTun` (tests hand in
    fakes).  It says whether received datagrams are to be merged for it, and its counters feed the metrics."""

    tso: bool
    """It hands over TCP super-packets (TSO reads)."""
    dropped: int
    write_errors: int
    merged_writes: int
    super_packets: int

    def coalescer(self) -> Coalescer | None: ...

    def start_reading(self, loop: asyncio.AbstractEventLoop, on_packets: PacketsCallback) -> None: ...

    def stop_reading(self) -> None: ...

    def write(self, packet: bytes) -> None: ...


class GatewayDriver:
    """Binds a core to a TUN device and the listening sockets (socket index = position in ``sockets``)."""

    def __init__(
        self,
        core: GatewayCore,
        tun: GatewayTun,
        sockets: Sequence[socket.socket],
        *,
        clock: Callable[[], float] = time.monotonic,
        gc_slice_s: float = SLICE_LIMIT_S,
        gc_interval_s: float = GC_INTERVAL_S,
        fastlane: FastLane | None = None,
    ) -> None:
        self.core = core
        self.tun = tun
        self.sockets = list(sockets)
        self.ports = [sock.getsockname()[1] for sock in self.sockets]
        self._stats = [udp_stats(sock) for sock in self.sockets]
        self._sparse = [False] * len(self.sockets)
        self._clock = clock
        self._gc_slice_s = gc_slice_s
        self._gc_interval_s = gc_interval_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gc_handle: asyncio.Handle | None = None
        self._started = time.monotonic()
        self.gc_slice_max_s = 0.0
        self.gc_seconds = 0.0
        self.wakeups = 0
        self.unsendable = 0
        """Datagrams the kernel refused as too large for the path (EMSGSIZE) toward mobile nodes."""
        self.coalescer = tun.coalescer()
        """Merges what the sockets receive into what the TUN takes in one write (``None``: nothing merged)."""
        self.on_change: Callable[[], None] | None = None
        """Told when states may have changed: output left (created, promoted, refreshed) or states expired."""
        self.fastlane = fastlane
        """Told after each wakeup that may have made states active or expired them (the TUN side, GC)."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self.fastlane is not None:
            self.fastlane.start(loop)
        for index, sock in enumerate(self.sockets):
            loop.add_reader(sock.fileno(), self._on_udp, index)
        self.tun.start_reading(loop, self._on_tun)
        log.info(
            "data path: merged TUN writes %s (UDP %s), TUN super-packet reads %s",
            "on" if self.coalescer is not None else "off",
            "on" if self.coalescer is not None and self.coalescer.udp else "off",
            "on" if self.tun.tso else "off",
        )
        self._gc_handle = loop.call_later(self._gc_interval_s, self._collect)

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        for sock in self.sockets:
            if sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())
        self.tun.stop_reading()
        if self._gc_handle is not None:
            self._gc_handle.cancel()
            self._gc_handle = None
        if self.fastlane is not None:
            self.fastlane.stop()

    def _on_udp(self, index: int) -> None:
        stats = self._stats[index]
        if self._sparse[index]:
            # Sparse traffic (the previous wakeup needed one read): the first read is forwarded before we
            # look for more, so that the read that finds nothing (a system call and an exception) costs no
            # latency.  A burst after a quiet spell only has its first buffer go alone.
            self._forward_udp(index, 1)
            if self._loop is None:
                return
        reads = stats.reads
        self._forward_udp(index, UDP_BATCH)
        self._sparse[index] = stats.reads - reads <= 1

    def _forward_udp(self, index: int, limit: int) -> None:
        datagrams = recv_batch(self.sockets[index], limit, self.coalescer, self._stats[index])
        if not datagrams:
            return
        self.wakeups += 1
        now = self._clock()
        from_mn = self.core.datagram_from_mn
        from_bytes = int.from_bytes
        aton = socket.inet_aton
        for data, (ip, port) in datagrams:
            from_mn(data, from_bytes(aton(ip), "big"), port, index, now)
        self._flush()

    def _on_tun(self, packets: Sequence[bytes]) -> None:
        self.wakeups += 1
        now = self._clock()
        from_ha = self.core.packet_from_ha
        for packet in packets:
            from_ha(packet, now)
        self._flush()
        if self.fastlane is not None:
            self.fastlane.poke()

    def _flush(self) -> None:
        core = self.core
        if not core.to_ha and not core.to_mn:
            return
        # Taken over before any I/O, so that a write raising cannot leave packets to be sent twice.
        to_ha, to_mn = core.take_outputs()
        if self.on_change is not None:
            self.on_change()
        if to_ha:
            write = self.tun.write
            for packet in to_ha:
                write(packet)
        if not to_mn:
            return
        groups: dict[int, list[bytes]]
        if len(to_mn) == 1:
            endpoint, packet = to_mn[0]
            groups = {endpoint: [packet]}
        else:
            # Grouped per mobile node, order kept within each: a run of equal sizes becomes one GSO send.
            groups = {}
            for endpoint, packet in to_mn:
                group = groups.get(endpoint)
                if group is None:
                    groups[endpoint] = [packet]
                else:
                    group.append(packet)
        sockets = self.sockets
        stats = self._stats
        ntoa = socket.inet_ntoa
        for endpoint, packets in groups.items():
            ipv4, port, index = unpack_endpoint(endpoint)
            self.unsendable += send_batch(sockets[index], (ntoa(ipv4.to_bytes(4, "big")), port), packets, stats[index])

    def _collect(self) -> None:
        loop = self._loop
        if loop is None:
            return
        table = self.core.table
        expired = table.expired_active + table.expired_temporary
        started = time.perf_counter()
        caught_up = collect_for(self.core, self._clock(), limit_s=self._gc_slice_s)
        elapsed = time.perf_counter() - started
        if self.on_change is not None and table.expired_active + table.expired_temporary != expired:
            self.on_change()
        self.gc_seconds += elapsed
        self.gc_slice_max_s = max(self.gc_slice_max_s, elapsed)
        if self.fastlane is not None:
            self.fastlane.poke()
        if caught_up:
            interval = self._gc_interval_s if len(self.core.table) else max(self._gc_interval_s, IDLE_GC_INTERVAL_S)
            self._gc_handle = loop.call_later(interval, self._collect)
        else:
            # More is due: another slice right after the packets that are waiting.
            self._gc_handle = loop.call_soon(self._collect)

    def metrics(self) -> list[Metric]:
        """The core's metrics plus the I/O side's: sockets, TUN, GC timing, uptime."""
        stats = [udp_stats(sock) for sock in self.sockets]

        def per_port(values: Sequence[float]) -> tuple[tuple[dict[str, str], float], ...]:
            return tuple(({"port": str(port)}, value) for port, value in zip(self.ports, values, strict=True))

        tun = self.tun
        merged = self.coalescer
        return [
            *core_metrics(self.core),
            *(self.fastlane.metrics() if self.fastlane is not None else fastlane_off_metrics()),
            Metric(
                "udp_received_datagrams_total",
                "counter",
                "Datagrams received per listening port.",
                per_port([s.received for s in stats]),
            ),
            Metric(
                "udp_gro_buffers_total",
                "counter",
                "Coalesced (UDP GRO) receive buffers split back into datagrams.",
                per_port([s.gro_buffers for s in stats]),
            ),
            Metric(
                "udp_sent_datagrams_total",
                "counter",
                "Datagrams sent per listening port.",
                per_port([s.sent for s in stats]),
            ),
            Metric(
                "udp_gso_sends_total",
                "counter",
                "sendmsg calls carrying several datagrams (UDP GSO).",
                per_port([s.gso_sends for s in stats]),
            ),
            Metric(
                "udp_send_dropped_total",
                "counter",
                "Datagrams dropped on send: full queues, no route, other errors.",
                per_port([s.dropped + s.send_errors + s.oversize for s in stats]),
            ),
            Metric("udp_gso_enabled", "gauge", "UDP GSO in use (1) or not (0).", per_port([int(s.gso) for s in stats])),
            Metric("udp_gro_enabled", "gauge", "UDP GRO in use (1) or not (0).", per_port([int(s.gro) for s in stats])),
            Metric(
                "udp_super_packets_split_total",
                "counter",
                "Super-packets read from the TUN (TSO) and sent as the datagrams they stand for.",
                per_port([s.merged for s in stats]),
            ),
            Metric.single(
                "merged_packets_total",
                "counter",
                "Runs of one flow's segments from mobile nodes merged into one packet for the TUN.",
                merged.merged_packets if merged is not None else 0,
            ),
            Metric.single(
                "merged_segments_total",
                "counter",
                "Segments that went into merged packets.",
                merged.merged_segments if merged is not None else 0,
            ),
            Metric.single(
                "tun_merged_writes_total",
                "counter",
                "Merged packets written to the TUN in one go (the kernel splits them again).",
                tun.merged_writes,
            ),
            Metric.single(
                "tun_super_packets_total",
                "counter",
                "Super-packets the TUN handed over unsegmented (TSO reads).",
                tun.super_packets,
            ),
            Metric.single(
                "tun_write_dropped_total",
                "counter",
                "Packets toward the Home Agent dropped by the TUN (queue full or refused).",
                tun.dropped + tun.write_errors,
            ),
            Metric.single("gc_seconds_total", "counter", "Time spent in garbage collection.", self.gc_seconds),
            Metric.single(
                "gc_slice_max_seconds", "gauge", "Longest garbage-collection slice so far.", self.gc_slice_max_s
            ),
            Metric.single("wakeups_total", "counter", "Data-path wakeups (batches read).", self.wakeups),
            Metric.single("uptime_seconds", "gauge", "Seconds since the gateway started.", self._uptime()),
        ]

    def _uptime(self) -> float:
        return time.monotonic() - self._started
