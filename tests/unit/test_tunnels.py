"""The tunnel manager against a fake Backend: one tunnel ("best") or one per uplink ("all"), draft 2.5."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from m6t.client import events as ev
from m6t.client.config import ClientConfig
from m6t.client.tunnels import TunnelManager
from m6t.client.vocabulary import State
from m6t.protocol.values import Attachment

from .test_session_driver import FakeBackend, FakeChannel, FakeMonitor, config, run, settle
from .test_session_harness import GW, PREFIX

WIFI = Attachment(IPv4Address("192.0.2.10"), "wlan0", IPv4Address("192.0.2.1"))
TETHER = Attachment(IPv4Address("203.0.113.20"), "usb0", IPv4Address("203.0.113.1"))


class UplinkMonitor(FakeMonitor):
    """Scoped to its uplink when it has one, as the platform's monitors are."""

    def __init__(self, backend: UplinkBackend, gateway: IPv4Address, ignore_interface: str, uplink: str | None):
        super().__init__(backend, gateway, ignore_interface)
        self.uplinks_backend = backend
        self.uplink = uplink

    async def lookup(self) -> Attachment | None:
        self.lookups += 1
        return self.probe()

    def probe(self) -> Attachment | None:
        found = self.uplinks_backend.present
        if self.uplink is None:
            return found[0] if found else None
        return next((a for a in found if a.interface == self.uplink), None)

    async def uplinks(self, *, ignore: Collection[str] = ()) -> tuple[Attachment, ...]:
        self.uplinks_backend.uplink_lookups += 1
        self.uplinks_backend.ignored = set(ignore)
        return tuple(a for a in self.uplinks_backend.present if a.interface not in ignore)


class UplinkBackend(FakeBackend):
    def __init__(self, *present: Attachment) -> None:
        super().__init__()
        self.present = list(present)
        self.uplink_lookups = 0
        self.ignored: set[str] = set()
        self.bound: list[tuple[str | None, FakeChannel]] = []
        self.scoped: list[UplinkMonitor] = []

    def open_udp(self, gateway: tuple[IPv4Address, int], *, uplink: str | None = None) -> FakeChannel:
        channel = super().open_udp(gateway)
        self.bound.append((uplink, channel))
        return channel

    def connectivity_monitor(
        self, gateway: IPv4Address, ignore_interface: str, *, uplink: str | None = None
    ) -> UplinkMonitor:
        monitor = UplinkMonitor(self, gateway, ignore_interface, uplink)
        self.monitors.append(monitor)
        self.scoped.append(monitor)
        return monitor

    def change(self, *present: Attachment) -> None:
        """The OS's uplinks are now these: every subscribed monitor hears of it."""
        self.present = list(present)
        for monitor in self.scoped:
            if monitor.on_change is not None and not monitor.stopped:
                monitor.on_change()


def all_config(**tunnel: Any) -> ClientConfig:
    return config(uplinks="all", **tunnel)


def manager(backend: UplinkBackend, cfg: ClientConfig) -> TunnelManager:
    return TunnelManager(cfg, backend, backstop_s=0.05)


def addresses(m: TunnelManager) -> dict[str, IPv6Address | None]:
    return {t.status.interface or "": t.status.session.address for t in m.tunnels()}


def connected(m: TunnelManager, count: int) -> bool:
    tunnels = m.tunnels()
    return len(tunnels) == count and all(t.status.session.state is State.CONNECTED for t in tunnels)


async def wifi_and_tether() -> tuple[UplinkBackend, TunnelManager, list[ev.Event]]:
    """A manager running "all" with both uplinks' tunnels connected, and the events it sends from now on."""
    backend = UplinkBackend(WIFI, TETHER)
    m = manager(backend, all_config())
    events: list[ev.Event] = []
    await m.up()
    await settle(lambda: connected(m, 2))
    m.add_listener(events.append)
    return backend, m, events


def test_best_is_one_tunnel_through_the_preferred_path_as_always() -> None:
    async def scenario() -> None:
        backend = UplinkBackend(WIFI, TETHER)
        m = manager(backend, config())
        await m.start()
        assert backend.ops[:2] == [("mtu", "m6t0", 1472), ("up", "m6t0")]  # the interface exists before up()
        await m.up()
        await settle(lambda: connected(m, 1))
        (only,) = m.tunnels()
        assert only.primary and only.status.uplink is None and only.status.interface == "m6t0"
        assert [uplink for uplink, _ in backend.bound] == [None]
        assert backend.uplink_lookups == 0
        assert m.status().session.address == only.status.session.address
        await m.close()
        assert backend.closed

    run(scenario)


def test_all_runs_one_tunnel_per_uplink_with_distinct_suffixes() -> None:
    async def scenario() -> None:
        backend = UplinkBackend(WIFI, TETHER)
        m = manager(backend, all_config())
        events: list[ev.Event] = []
        m.add_listener(events.append)
        await m.start()
        assert backend.tuns == []  # no uplink known yet: no interface
        await m.up()
        await settle(lambda: connected(m, 2))
        tunnels = m.tunnels()
        assert [(t.status.interface, t.status.uplink, t.primary) for t in tunnels] == [
            ("m6t0", "wlan0", True),
            ("m6t1", "usb0", False),
        ]
        found = addresses(m)
        assert found["m6t0"] != found["m6t1"]
        assert all(a is not None and a in PREFIX for a in found.values())
        # Each tunnel's socket bound to its uplink, its path looked up through it alone.
        assert sorted(uplink or "" for uplink, _ in backend.bound) == ["usb0", "wlan0"]
        assert {m.uplink for m in backend.scoped if m.uplink is not None} == {"wlan0", "usb0"}
        # The second tunnel's routes one metric behind: the primary's win for unbound traffic.
        assert ("route+", "m6t0", "::/0", 1029) in backend.ops
        assert ("route+", "m6t1", "::/0", 1030) in backend.ops
        # The top level is the primary's; the other's events come wrapped.
        assert m.status().session.address == found["m6t0"]
        assert m.status().interface == "m6t0"
        others = [e for e in events if isinstance(e, ev.OtherTunnel)]
        assert any(e.interface == "m6t1" and e.uplink == "usb0" for e in others)
        assert any(isinstance(e, ev.TunnelsChanged) and e.interfaces == ("m6t0", "m6t1") for e in events)
        top_addresses = [e.new for e in events if isinstance(e, ev.AddressChanged)]
        assert top_addresses == [found["m6t0"]]
        await m.close()
        assert all(t.closed for t in backend.tuns)
        assert backend.installed() == set()
        assert backend.closed

    run(scenario)


def test_an_uplink_going_takes_exactly_its_tunnel_and_a_new_one_adds_one() -> None:
    async def scenario() -> None:
        backend, m, events = await wifi_and_tether()
        before = addresses(m)
        backend.change(WIFI)
        await settle(lambda: len(m.tunnels()) == 1 and backend.tuns[1].closed)
        assert addresses(m) == {"m6t0": before["m6t0"]}  # the other tunnel untouched
        assert backend.ignored == {"m6t0", "m6t1"}  # the tunnels' own routes are never a way to the gateway
        assert backend.installed() == {before["m6t0"]}
        assert [t.closed for t in backend.tuns] == [False, True]
        assert not [e for e in events if isinstance(e, ev.AddressChanged)]  # the top level did not move
        assert any(isinstance(e, ev.TunnelsChanged) and e.interfaces == ("m6t0",) for e in events)
        # The tether back: a tunnel again, the lowest free name, a fresh suffix.
        backend.change(WIFI, TETHER)
        await settle(lambda: connected(m, 2))
        again = addresses(m)
        assert again["m6t0"] == before["m6t0"] and again["m6t1"] not in (None, before["m6t0"])
        await m.close()

    run(scenario)


def test_the_primary_going_moves_the_top_level_to_the_other_tunnel() -> None:
    async def scenario() -> None:
        backend, m, events = await wifi_and_tether()
        before = addresses(m)
        backend.change(TETHER)
        await settle(lambda: len(m.tunnels()) == 1 and m.tunnels()[0].primary)
        (left,) = m.tunnels()
        assert left.primary and left.status.interface == "m6t1" and left.status.session.address == before["m6t1"]
        moved = [e for e in events if isinstance(e, ev.AddressChanged)]
        # The primary may see its path go before its tunnel is removed (both wait the same burst out): the
        # top level then goes from its address to none, and on to the other tunnel's.
        assert moved[0].old == before["m6t0"]
        assert (moved[-1].new, moved[-1].reason) == (before["m6t1"], "uplink")
        assert m.status().session.attachment == TETHER
        # Every uplink gone: no tunnel, and the top level says why.
        events.clear()
        backend.change()
        await settle(lambda: m.tunnels() == ())
        assert m.status().session.address is None
        assert m.status().session.state is not State.CONNECTED
        assert any(isinstance(e, ev.StateChanged) and e.previous is State.CONNECTED for e in events)
        await m.close()

    run(scenario)


def test_down_removes_every_tunnel_and_up_brings_them_back() -> None:
    async def scenario() -> None:
        backend, m, _ = await wifi_and_tether()
        await m.down()
        assert m.tunnels() == ()
        assert backend.installed() == set() and all(t.closed for t in backend.tuns)
        assert m.status().session.state is State.DISCONNECTED
        await m.up()
        await settle(lambda: connected(m, 2))
        await m.close()

    run(scenario)


def test_switching_from_best_to_all_and_back_live() -> None:
    async def scenario() -> None:
        backend = UplinkBackend(WIFI, TETHER)
        cfg = config()
        m = manager(backend, cfg)
        await m.up()
        await settle(lambda: connected(m, 1))
        await m.apply_config(replace(cfg, tunnel=replace(cfg.tunnel, uplinks="all")))
        await settle(lambda: connected(m, 2))
        await m.apply_config(cfg)
        await settle(lambda: connected(m, 1))
        assert m.tunnels()[0].status.uplink is None
        await m.close()
        assert backend.installed() == set()

    run(scenario)


def test_gateway_is_the_first_configured_one() -> None:
    async def scenario() -> None:
        backend = UplinkBackend(WIFI)
        m = manager(backend, all_config())
        await m.up()
        await settle(lambda: connected(m, 1))
        unscoped = [mon for mon in backend.scoped if mon.uplink is None]
        assert unscoped and unscoped[0].gateway == GW
        await m.close()

    run(scenario)
