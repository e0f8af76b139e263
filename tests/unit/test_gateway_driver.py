"""The asyncio driver with real UDP sockets on loopback and a fake TUN (no root needed)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import pytest

from m6t.gateway import CoreSettings, Drop, GatewayCore
from m6t.platform import require_linux
from m6t.platform.base import PacketsCallback, PlatformError, TunDevice
from m6t.protocol import build_echo_request, build_keepalive

try:
    require_linux("the gateway")
except PlatformError as exc:
    pytest.skip(str(exc), allow_module_level=True)

from m6t.gateway.driver import GatewayDriver
from m6t.platform.linux.offload import Coalescer
from m6t.platform.linux.udp import open_udp_listener, udp_stats

HA = IPv6Address("fd00:ab::1")
MN = IPv6Address("fd6d:3674:a1b2:0:1:a1:b2:c3")


class FakeTun(TunDevice):
    """Records what the driver writes; ``inject`` plays the kernel routing packets into the TUN."""

    tso = False
    dropped = write_errors = merged_writes = super_packets = 0

    def __init__(self) -> None:
        self.name = "fake0"
        self.written: list[bytes] = []
        self._on_packets: PacketsCallback | None = None

    def coalescer(self) -> Coalescer | None:
        return None

    def start_reading(self, loop: asyncio.AbstractEventLoop, on_packets: PacketsCallback) -> None:
        self._on_packets = on_packets

    def stop_reading(self) -> None:
        self._on_packets = None

    def write(self, packet: bytes) -> None:
        self.written.append(packet)

    def close(self) -> None:
        self.stop_reading()

    def inject(self, packets: Sequence[bytes]) -> None:
        assert self._on_packets is not None
        self._on_packets(packets)


def core_on(loop: asyncio.AbstractEventLoop, **overrides: Any) -> GatewayCore:
    """A gateway core for the MN prefix and the HA above, on ``loop``'s clock."""
    settings = CoreSettings(prefixes=(IPv6Network("fd6d:3674:a1b2::/48"),), home_agents=(HA,), **overrides)
    return GatewayCore(settings, loop.time())


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def _recv_all(sock: socket.socket, count: int, timeout: float = 5.0) -> list[tuple[bytes, tuple[str, int]]]:
    sock.settimeout(timeout)
    return [sock.recvfrom(65535) for _ in range(count)]


def test_datagrams_cross_both_ways_and_replies_use_the_arrival_socket() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        listeners = [open_udp_listener("127.0.0.1", 0), open_udp_listener("127.0.0.1", 0)]
        ports = [s.getsockname()[1] for s in listeners]
        core = core_on(loop, sockets=2)
        tun = FakeTun()
        driver = GatewayDriver(core, tun, listeners, clock=loop.time)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
        driver.start(loop)
        try:
            # The MN talks to the second port only.
            request = build_echo_request(MN.packed, HA.packed, 1, 1)
            client.sendto(request, ("127.0.0.1", ports[1]))
            await until(lambda: tun.written == [request])
            assert core.temporary_states == 1

            # A burst from the HA side, equal sizes: one GSO send where the kernel has it.
            replies = [build_echo_request(HA.packed, MN.packed, 2, seq, data=bytes(100)) for seq in range(10)]
            tun.inject(replies)
            got = await asyncio.to_thread(_recv_all, client, 10)
            assert [data for data, _ in got] == replies
            assert {source for _, source in got} == {("127.0.0.1", ports[1])}
            assert core.active_states == 1
            stats = udp_stats(listeners[1])
            if stats.gso:
                assert stats.gso_sends >= 1

            client.sendto(build_keepalive(MN.packed), ("127.0.0.1", ports[1]))
            (reply, source), *_ = await asyncio.to_thread(_recv_all, client, 1)
            assert source == ("127.0.0.1", ports[1]) and len(reply) == 40

            # The same MN address from the other port is another binding: dropped.
            client.sendto(request, ("127.0.0.1", ports[0]))
            await until(lambda: core.drops[Drop.MN_BINDING_MISMATCH] == 1)
            assert tun.written == [request]
            assert "m6t_gateway_udp_sent_datagrams_total" in "".join(f"m6t_gateway_{m.name}" for m in driver.metrics())
        finally:
            driver.stop()
            client.close()
            for s in listeners:
                s.close()

    asyncio.run(scenario())


def test_garbage_collection_runs_on_the_loop() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        listener = open_udp_listener("127.0.0.1", 0)
        core = core_on(loop, temporary_lifetime_s=0.05)
        driver = GatewayDriver(core, FakeTun(), [listener], clock=loop.time)
        driver.start(loop)
        try:
            core.datagram_from_mn(build_echo_request(MN.packed, HA.packed, 1, 1), 0x7F000001, 9999, 0, loop.time())
            assert core.temporary_states == 1
            await until(lambda: core.temporary_states == 0, timeout=2.0)
            assert core.table.expired_temporary == 1
            assert driver.gc_slice_max_s > 0
        finally:
            driver.stop()
            listener.close()

    asyncio.run(scenario())


def test_an_idle_gateway_collects_rarely() -> None:
    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        listener = open_udp_listener("127.0.0.1", 0)
        core = core_on(loop, temporary_lifetime_s=10.0)
        collected = [0]
        real = core.collect_garbage

        def counting(now: float, budget: int = 4096) -> bool:
            collected[0] += 1
            return real(now, budget)

        core.collect_garbage = counting  # type: ignore[method-assign]
        driver = GatewayDriver(core, FakeTun(), [listener], clock=loop.time)
        driver.start(loop)
        try:
            await asyncio.sleep(1.5)
            idle = collected[0]
            core.datagram_from_mn(build_echo_request(MN.packed, HA.packed, 1, 1), 0x7F000001, 9999, 0, loop.time())
            collected[0] = 0
            await asyncio.sleep(2.0)
            return idle, collected[0]
        finally:
            driver.stop()
            listener.close()

    idle, with_a_state = asyncio.run(scenario())
    assert idle <= 2  # no state: about once a second, where a 10 ms tick would have run ~150 times
    # A state to expire: the pending idle wait ends (within a second), then about ten slices a second.
    assert 4 <= with_a_state <= 25


def test_the_driver_reports_changes_for_the_state_saver() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        listener = open_udp_listener("127.0.0.1", 0)
        core = core_on(loop, temporary_lifetime_s=0.05)
        driver = GatewayDriver(core, FakeTun(), [listener], clock=loop.time, gc_interval_s=0.02)
        changes: list[int] = []
        driver.on_change = lambda: changes.append(len(core.table))
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        driver.start(loop)
        try:
            await asyncio.sleep(0.1)
            assert changes == [], "an idle gateway reports nothing"
            client.sendto(build_echo_request(MN.packed, HA.packed, 1, 1), listener.getsockname())
            await until(lambda: changes == [1])
            # The temporary state expires: reported too, with the table empty.
            await until(lambda: changes == [1, 0], timeout=2.0)
            # Dropped datagrams change nothing.
            client.sendto(b"not ipv6", listener.getsockname())
            await until(lambda: core.drops[Drop.MN_TOO_SHORT] == 1)
            await asyncio.sleep(0.05)
            assert changes == [1, 0]
        finally:
            driver.stop()
            client.close()
            listener.close()

    asyncio.run(scenario())
