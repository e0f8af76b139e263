"""The client driver against a fake Backend (pure: no root, no sockets, no TUN)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Any

import pytest

from m6t.client import driver as driver_module
from m6t.client.api import wire
from m6t.client.config import ClientConfig, GatewaySection, RoutesSection, TunnelSection
from m6t.client.driver import ClientDriver
from m6t.client.events import ErrorEvent, Event, StateChanged
from m6t.client.vocabulary import ErrorCode, State
from m6t.platform.base import (
    Backend,
    ChangeCallback,
    ConnectivityMonitor,
    PacketsCallback,
    PlatformError,
    TunDevice,
    UdpChannel,
)
from m6t.protocol import build_keepalive_reply, is_keepalive_request, parse_ipv6
from m6t.protocol.values import Attachment, PmtuEvidence, Route

from .test_session_harness import ATT1, ATT2, GW, HA, PREFIX, data_from, data_to, echo_reply_to

Datagrams = Callable[[Sequence[tuple[bytes, tuple[str, int]]]], None]


class FakeTun(TunDevice):
    def __init__(self, name: str) -> None:
        self.name = name
        self.written: list[bytes] = []
        self.closed = False
        self.on_packets: PacketsCallback | None = None

    def start_reading(self, loop: asyncio.AbstractEventLoop, on_packets: PacketsCallback) -> None:
        self.on_packets = on_packets

    def stop_reading(self) -> None:
        self.on_packets = None

    def write(self, packet: bytes) -> None:
        self.written.append(packet)

    def close(self) -> None:
        self.closed = True


class FakeChannel(UdpChannel):
    def __init__(self, backend: FakeBackend, gateway: tuple[IPv4Address, int], number: int) -> None:
        self.backend = backend
        self.gateway = gateway
        self.sent: list[bytes] = []
        self.probes: list[bytes] = []
        self.closed = False
        self.uplink: str | None = None
        """The interface the backend was asked to bind the channel to."""
        self._local = ("192.0.2.10", 40000 + number)
        self.on_datagrams: Datagrams | None = None
        self.on_pmtu: Callable[[PmtuEvidence], None] | None = None

    @property
    def local_address(self) -> tuple[str, int]:
        return self._local

    @property
    def remote_address(self) -> tuple[str, int]:
        return str(self.gateway[0]), self.gateway[1]

    def start_reading(
        self,
        loop: asyncio.AbstractEventLoop,
        on_datagrams: Datagrams,
        on_pmtu: Callable[[PmtuEvidence], None],
    ) -> None:
        self.on_datagrams = on_datagrams
        self.on_pmtu = on_pmtu

    def stop_reading(self) -> None:
        self.on_datagrams = None

    def send(self, datagrams: Sequence[bytes]) -> None:
        self.sent.extend(datagrams)
        replies = [r for d in datagrams for r in self.backend.gateway(self, d)]
        if replies:
            asyncio.get_running_loop().call_soon(self.deliver, replies)

    def send_probe(self, datagram: bytes) -> None:
        """DF set: past the path's limit, nothing comes back but (with ``backend.icmp``) a frag-needed."""
        self.probes.append(datagram)
        if len(datagram) <= self.backend.path_limit:
            replies = self.backend.gateway(self, datagram)
            if replies:
                asyncio.get_running_loop().call_soon(self.deliver, replies)
        elif self.backend.icmp and self.on_pmtu is not None:
            evidence = PmtuEvidence(self.backend.path_limit + 28, "icmp", quoted=datagram[:64])
            asyncio.get_running_loop().call_soon(self.on_pmtu, evidence)

    def deliver(self, packets: list[bytes]) -> None:
        if self.on_datagrams is not None and not self.closed:
            self.on_datagrams([(p, self.remote_address) for p in packets])

    def close(self) -> None:
        self.closed = True
        self.on_datagrams = None


class FakeMonitor(ConnectivityMonitor):
    def __init__(
        self, backend: FakeBackend, gateway: IPv4Address, ignore_interface: str, uplink: str | None = None
    ) -> None:
        self.backend = backend
        self.gateway = gateway
        self.ignore_interface = ignore_interface
        self.uplink = uplink
        self.on_change: ChangeCallback | None = None
        self.lookups = 0
        self.stopped = False

    async def start(self, on_change: ChangeCallback) -> None:
        self.on_change = on_change

    async def lookup(self) -> Attachment | None:
        self.lookups += 1
        return self.backend.attachment

    def probe(self) -> Attachment | None:
        return self.backend.probed if self.backend.probed is not None else self.backend.attachment

    async def uplinks(self, *, ignore: Collection[str] = ()) -> tuple[Attachment, ...]:
        """The one path the fake host has (its attachment), unless it is through an ignored interface."""
        found = self.backend.attachment
        skipped = {self.ignore_interface, *ignore}
        return (found,) if found is not None and found.interface not in skipped else ()

    async def stop(self) -> None:
        self.stopped = True


def working_gateway(channel: FakeChannel, datagram: bytes) -> list[bytes]:
    if is_keepalive_request(datagram):
        return [build_keepalive_reply(parse_ipv6(datagram))]
    reply = echo_reply_to(datagram)
    if reply is not None and len(reply) <= channel.backend.path_limit:
        return [reply]
    return []


class FakeBackend(Backend):
    name = "fake"

    def __init__(self) -> None:
        self.ops: list[tuple[Any, ...]] = []
        self.tuns: list[FakeTun] = []
        self.channels: list[FakeChannel] = []
        self.monitors: list[FakeMonitor] = []
        self.attachment: Attachment | None = ATT1
        self.probed: Attachment | None = None
        self.gateway: Callable[[FakeChannel, bytes], list[bytes]] = working_gateway
        self.path_limit = 1472
        self.icmp = False
        self.fail_address = False
        self.closed = False

    def check(self) -> list[PlatformError]:
        return []

    def open_tun(self, name: str) -> FakeTun:
        tun = FakeTun(name)
        self.tuns.append(tun)
        return tun

    async def set_mtu(self, ifname: str, mtu: int) -> None:
        self.ops.append(("mtu", ifname, mtu))

    async def set_link_up(self, ifname: str) -> None:
        self.ops.append(("up", ifname))

    async def replace_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        if self.fail_address:
            raise PlatformError("EPERM: not allowed")
        self.ops.append(("addr+", ifname, address, prefixlen))

    async def remove_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        self.ops.append(("addr-", ifname, address, prefixlen))

    async def replace_route(self, ifname: str, route: Route) -> None:
        self.ops.append(("route+", ifname, str(route.network), route.metric))

    async def remove_route(self, ifname: str, route: Route) -> None:
        self.ops.append(("route-", ifname, str(route.network), route.metric))

    def interface_exists(self, ifname: str) -> bool:
        return any(t.name == ifname and not t.closed for t in self.tuns)

    def open_udp(self, gateway: tuple[IPv4Address, int], *, uplink: str | None = None) -> FakeChannel:
        channel = FakeChannel(self, gateway, len(self.channels) + 1)
        channel.uplink = uplink
        self.channels.append(channel)
        self.ops.append(("udp", str(gateway[0]), gateway[1]))
        return channel

    def connectivity_monitor(
        self, gateway: IPv4Address, ignore_interface: str, *, uplink: str | None = None
    ) -> FakeMonitor:
        monitor = FakeMonitor(self, gateway, ignore_interface, uplink)
        self.monitors.append(monitor)
        return monitor

    async def close(self) -> None:
        self.closed = True

    def installed(self) -> set[IPv6Address]:
        addresses: set[IPv6Address] = set()
        for op in self.ops:
            if op[0] == "addr+":
                addresses.add(op[2])
            elif op[0] == "addr-":
                addresses.discard(op[2])
        return addresses

    def routes(self) -> set[str]:
        routes: set[str] = set()
        for op in self.ops:
            if op[0] == "route+":
                routes.add(op[2])
            elif op[0] == "route-":
                routes.discard(op[2])
        return routes


def config(**tunnel: Any) -> ClientConfig:
    values: dict[str, Any] = {"prefix": PREFIX, "interface": "m6t0", "keepalive_interval": 5.0, "probe": HA}
    values.update(tunnel)
    return ClientConfig(
        gateway=GatewaySection(addresses=(str(GW),), ports=(3544, 4500)),
        tunnel=TunnelSection(**values),
        routes=RoutesSection(default=True, metric=1029, prefixes=()),
    )


async def settle(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20.0))


def connected_driver(backend: FakeBackend, **kwargs: Any) -> ClientDriver:
    return ClientDriver(config(**kwargs), backend, backstop_s=0.05)


async def up_and_connected(backend: FakeBackend, **kwargs: Any) -> ClientDriver:
    """A driver of ``config(**kwargs)`` over ``backend``, brought up and connected."""
    driver = connected_driver(backend, **kwargs)
    await driver.up()
    await settle(lambda: driver.session.state is State.CONNECTED)
    return driver


def test_start_up_connects_and_carries_packets() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        driver = connected_driver(backend)
        events: list[Event] = []
        driver.add_listener(events.append)
        await driver.start()
        assert backend.ops == [("mtu", "m6t0", 1472), ("up", "m6t0")]
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED)
        [address] = backend.installed()
        assert address in PREFIX
        assert backend.routes() == {"::/0"}
        assert ("udp", str(GW), 3544) in backend.ops
        # TUN → UDP, as one batch.
        tun, channel = backend.tuns[0], backend.channels[-1]
        assert tun.on_packets is not None
        outbound = [data_from(address), data_from(address)]
        tun.on_packets(outbound)
        assert channel.sent[-2:] == outbound
        # UDP → TUN.
        assert channel.on_datagrams is not None
        inbound = data_to(address)
        channel.on_datagrams([(inbound, (str(GW), 3544))])
        assert tun.written == [inbound]
        status = wire.session_to_wire(driver.status())
        json.dumps(status)
        assert status["state"] == "connected" and status["interface"] == "m6t0" and status["wanted"] == "up"
        assert status["counters"]["tx_packets"] == 2 and status["counters"]["rx_packets"] == 1
        assert any(isinstance(e, StateChanged) and e.state is State.CONNECTED for e in events)
        await driver.close()
        assert backend.installed() == set() and backend.routes() == set()
        assert tun.closed and channel.closed and backend.closed

    run(scenario)


def test_up_and_down_are_idempotent() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        driver = connected_driver(backend)
        await driver.up()  # starts on its own
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED)
        first = driver.session.address
        assert len(backend.monitors) == 1
        await driver.down()
        ops = len(backend.ops)
        await driver.down()
        assert len(backend.ops) == ops
        assert backend.installed() == set() and backend.routes() == set()
        assert backend.monitors[0].stopped and backend.channels[-1].closed
        assert wire.session_to_wire(driver.status())["state"] == "disconnected"
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED)
        assert driver.session.address not in (None, first)
        assert backend.installed() == {driver.session.address}
        await driver.close()

    run(scenario)


def test_attachment_change_reattaches_through_the_monitor() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        # The tracker's own checks 30 s apart: what wakes the driver for a look-up is the announcement.
        driver = ClientDriver(config(), backend, backstop_s=30.0)
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED)
        first = driver.session.address
        monitor = backend.monitors[0]
        assert monitor.lookups == 1
        backend.attachment = ATT2
        announce = monitor.on_change
        assert announce is not None
        for _ in range(5):  # a burst of notifications: one look-up once it is over
            announce()
        await settle(lambda: monitor.lookups == 2, timeout=1.0)
        await settle(lambda: driver.session.state is State.CONNECTED and driver.session.address != first)
        await asyncio.sleep(0.05)
        assert backend.installed() == {driver.session.address}
        assert backend.channels[0].closed and not backend.channels[-1].closed
        assert monitor.lookups == 2
        backend.attachment = None
        announce()
        await settle(lambda: monitor.lookups == 3, timeout=1.0)
        await settle(lambda: driver.session.state is State.WAITING_FOR_NETWORK)
        await asyncio.sleep(0.05)
        assert backend.installed() == set() and backend.routes() == set()
        await driver.close()

    run(scenario)


def test_backstop_catches_a_missed_change() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        driver = await up_and_connected(backend)
        first = driver.session.address
        backend.probed = Attachment(IPv4Address("192.0.2.77"), "eth0")
        await settle(lambda: driver.session.address not in (None, first))
        attachment = driver.session.attachment
        assert attachment is not None and attachment.local_ipv4 == IPv4Address("192.0.2.77")
        await driver.close()

    run(scenario)


def test_unresolvable_gateway_name_is_retried_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver_module, "RESOLVE_BACKOFF_S", (0.05,))
    attempts: list[str] = []

    async def resolver(host: str) -> tuple[IPv4Address, ...]:
        attempts.append(host)
        if len(attempts) < 3:
            raise OSError("Temporary failure in name resolution")
        return (GW,)

    async def scenario() -> None:
        backend = FakeBackend()
        cfg = config()
        cfg = replace(cfg, gateway=replace(cfg.gateway, addresses=("gw.example.test",)))
        driver = ClientDriver(cfg, backend, resolver=resolver, backstop_s=0.05)
        errors: list[ErrorEvent] = []
        driver.add_listener(lambda e: errors.append(e) if isinstance(e, ErrorEvent) else None)
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED)
        # Two failures, then an answer (and one more look-up once the path is known: a network to ask from).
        assert attempts[:3] == ["gw.example.test"] * 3
        assert [e.code for e in errors] == [ErrorCode.GATEWAY_UNRESOLVABLE]
        assert wire.session_to_wire(driver.status())["gateway"] == "198.51.100.2:3544"
        await driver.close()

    run(scenario)


def test_probe_mtu() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        backend.path_limit = 1400
        driver = await up_and_connected(backend, pmtud=False)
        result = await driver.probe_mtu(per_try=0.1, tries=1, timeout=10.0)
        assert result.ok and result.largest == 1400
        assert wire.mtu_probe_to_wire(result)["mtu"] == 1400
        await driver.close()
        unconfigured = connected_driver(FakeBackend(), probe=None)
        await unconfigured.up()
        result = await unconfigured.probe_mtu()
        assert not result.ok and "probe" in result.reason
        await unconfigured.close()

    run(scenario)


def test_path_mtu_discovery_applies_its_result_to_the_tunnel() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        backend.path_limit = 1400
        backend.icmp = True
        driver = connected_driver(backend)
        await driver.up()
        await settle(lambda: ("mtu", "m6t0", 1400) in backend.ops)
        [channel] = backend.channels
        assert [len(p) for p in channel.probes] == [1280, 1472, 1400]
        assert all(len(d) < 1280 for d in channel.sent), "only probes are as large, and only they carry DF"
        search = driver.status().session.mtu_search
        assert search is not None and search.mtu == 1400 and search.found == "icmp"
        await driver.close()

    run(scenario)


def test_apply_config_live_and_reattach() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        driver = await up_and_connected(backend)
        first = driver.session.address
        await driver.apply_config(config(mtu=1400, keepalive_interval=2.0))
        assert backend.ops[-1] == ("mtu", "m6t0", 1400)
        assert driver.session.address == first
        assert driver.session.settings.keepalive_interval == 2.0
        other = IPv6Network("fd6d:3674:a1b2:0:2::/80")
        await driver.apply_config(config(prefix=other, mtu=1400))
        assert driver.session.address in other
        assert backend.installed() == {driver.session.address}
        # A new interface name: the old interface goes, a new one comes, and the tunnel reconnects there.
        await driver.apply_config(config(prefix=other, mtu=1400, interface="m6t1"))
        assert backend.tuns[0].closed and backend.tuns[-1].name == "m6t1"
        await settle(lambda: driver.session.state is State.CONNECTED)
        await asyncio.sleep(0.05)
        assert ("mtu", "m6t1", 1400) in backend.ops
        assert any(op[0] == "addr+" and op[1] == "m6t1" for op in backend.ops)
        await driver.close()

    run(scenario)


def test_os_failure_is_an_error_event_and_retried() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        backend.fail_address = True
        driver = connected_driver(backend)
        errors: list[ErrorEvent] = []
        remove = driver.add_listener(lambda e: errors.append(e) if isinstance(e, ErrorEvent) else None)
        await driver.up()
        await settle(lambda: driver.session.state is State.ERROR)
        assert errors[0].code is ErrorCode.ADDRESS_FAILED
        backend.fail_address = False
        await settle(lambda: driver.session.state is State.CONNECTED, timeout=5.0)
        remove()
        count = len(errors)
        backend.fail_address = True
        await driver.apply_config(config(prefix=IPv6Network("fd6d:3674:a1b2:0:2::/80")))
        await asyncio.sleep(0.05)
        assert len(errors) == count  # unsubscribed
        await driver.close()

    run(scenario)


async def connected_before_any_keepalive(backend: FakeBackend) -> tuple[ClientDriver, FakeChannel]:
    """A driver connected with keepalives every 30 s, and its channel, on which none has gone out yet."""
    driver = await up_and_connected(backend, keepalive_interval=30.0)
    channel = backend.channels[-1]
    assert not any(is_keepalive_request(d) for d in channel.sent)
    return driver, channel


def test_clock_jump_checks_the_binding_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    class AnHourLater:
        """The driver's clocks after an hour asleep: the wall clock ran on, the monotonic one stood still."""

        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def time() -> float:
            return time.time() + 3600

    async def scenario() -> None:
        driver, channel = await connected_before_any_keepalive(FakeBackend())
        monkeypatch.setattr(driver_module, "time", AnHourLater)
        await settle(lambda: any(is_keepalive_request(d) for d in channel.sent))
        await driver.close()

    run(scenario)


def test_a_resume_from_the_service_manager_checks_the_binding_at_once() -> None:
    """Windows' SCM POWEREVENT reaches the driver as resumed(): a keepalive goes out now, not at its interval."""

    async def scenario() -> None:
        driver, channel = await connected_before_any_keepalive(FakeBackend())
        driver.resumed()
        await settle(lambda: any(is_keepalive_request(d) for d in channel.sent))
        await driver.close()

    run(scenario)


def test_tun_open_failure_raises_with_an_event() -> None:
    class NoTun(FakeBackend):
        def open_tun(self, name: str) -> FakeTun:
            raise PlatformError("/dev/net/tun is missing", hint="modprobe tun")

    async def scenario() -> None:
        driver = ClientDriver(config(), NoTun())
        errors: list[Event] = []
        driver.add_listener(errors.append)
        with pytest.raises(PlatformError):
            await driver.start()
        assert isinstance(errors[-1], ErrorEvent) and errors[-1].code is ErrorCode.TUN_FAILED
        assert "modprobe" in errors[-1].detail
        await driver.close()

    run(scenario)
