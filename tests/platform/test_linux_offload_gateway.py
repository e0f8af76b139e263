"""The gateway driver with merging on: real UDP sockets on loopback, a fake TUN that takes merged writes.

Checks that what the core counts is what the wire carried (segments, not merged packets), for forwarded
and for dropped traffic, and that the TUN gets one merged packet that splits back into the segments sent.
No root needed.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Sequence
from ipaddress import IPv6Address, IPv6Network

import pytest

from m6t.gateway import CoreSettings, Drop, GatewayCore
from m6t.gateway.counters import Counter
from m6t.platform import require_linux
from m6t.platform.base import PlatformError

try:
    require_linux("the gateway")
except PlatformError as exc:
    pytest.skip(str(exc), allow_module_level=True)

from m6t.gateway.driver import GatewayDriver
from m6t.platform.linux.offload import Coalescer, GsoPacket, split
from m6t.platform.linux.udp import UDP_SEGMENT, open_udp_listener
from tests.platform.test_linux_offload import DST, SRC, tcp
from tests.unit.test_gateway_driver import FakeTun, until

PREFIX = IPv6Network("fd6d:3674:a1b2::/48")


class MergingTun(FakeTun):
    """Records writes; takes merged packets (it hands out a coalescer), as a ``LinuxTun`` with a virtio-net
    header does."""

    def coalescer(self) -> Coalescer:
        return Coalescer(udp=True)


def _gso_send(sock: socket.socket, port: int, packets: Sequence[bytes]) -> None:
    size = len(packets[0]).to_bytes(2, sys.byteorder)
    sock.sendmsg([b"".join(packets)], [(socket.SOL_UDP, UDP_SEGMENT, size)], 0, ("127.0.0.1", port))


def test_merged_segments_are_counted_as_segments_forwarded_or_dropped() -> None:
    segments = [tcp(1000 + i * 1400, bytes([i]) * 1400) for i in range(8)]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        listener = open_udp_listener("127.0.0.1", 0)
        port = listener.getsockname()[1]
        core = GatewayCore(CoreSettings(prefixes=(PREFIX,), home_agents=(IPv6Address(DST),)), loop.time())
        tun = MergingTun()
        driver = GatewayDriver(core, tun, [listener], clock=loop.time)
        assert driver.coalescer is not None
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.bind(("127.0.0.1", 0))
        driver.start(loop)
        try:
            _gso_send(client, port, segments)
            await until(lambda: sum(len(split(p)) if isinstance(p, GsoPacket) else 1 for p in tun.written) == 8)
            merged = [p for p in tun.written if isinstance(p, GsoPacket)]
            assert merged, "nothing was merged"
            assert [q for p in tun.written for q in (split(p) if isinstance(p, GsoPacket) else [p])] == segments
            counters = core.counters
            assert counters[Counter.MN_PACKETS] == counters[Counter.TO_HA_PACKETS] == 8
            assert counters[Counter.MN_BYTES] == counters[Counter.TO_HA_BYTES] == sum(map(len, segments))
            names = {m.name: m for m in driver.metrics()}
            assert names["merged_segments_total"].samples[0][1] >= 2

            # The same MN address from another port is a binding mismatch: every segment counts as a drop.
            _gso_send(other, port, segments)
            await until(lambda: core.drops[Drop.MN_BINDING_MISMATCH] == 8)
            assert counters[Counter.MN_PACKETS] == 16 and counters[Counter.TO_HA_PACKETS] == 8
        finally:
            driver.stop()
            client.close()
            other.close()
            listener.close()

    assert IPv6Address(SRC) in PREFIX
    asyncio.run(scenario())
