"""DarwinConnectivityMonitor against the fake kernel's routing socket, run with the client's tracker:
snapshots, debouncing, our own utun, route loss, probe()."""

from __future__ import annotations

import asyncio
import time
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from m6t.lab.emulation.darwin_abi import (
    RTF_IFSCOPE,
    RTF_LLINFO,
    RTM_ADD,
    RTM_GET,
    IfaMsghdr,
    RtMsghdr,
    assemble,
    sockaddr,
)
from m6t.platform.base import PlatformError
from m6t.platform.darwin.backend import DarwinBackend
from m6t.platform.darwin.monitor import DarwinConnectivityMonitor, concerns_ipv4
from m6t.platform.darwin.routing import parse_message
from m6t.platform.darwin.syscalls import IP_BOUND_IF, IPPROTO_IP
from m6t.protocol.values import Attachment, Route
from tests.platform.attachment_recorder import AttachmentRecorder
from tests.platform.darwin_fakes import FakeDarwinKernel, FakeRoute
from tests.platform.tracked import Tracked

GATEWAY = IPv4Address("198.51.100.2")
FIRST = Attachment(IPv4Address("192.0.2.10"), "en0", IPv4Address("192.0.2.1"))
SECOND = Attachment(IPv4Address("203.0.113.10"), "en1", IPv4Address("203.0.113.1"))
QUIET = 0.05


def attached() -> FakeDarwinKernel:
    """en0 192.0.2.10/24 with the default route via 192.0.2.1; en1 up without an address."""
    kernel = FakeDarwinKernel()
    kernel.add_interface("en0")
    kernel.add_interface("en1")
    kernel.add_ipv4("en0", "192.0.2.10/24")
    kernel.add_route("0.0.0.0/0", "en0", "192.0.2.1")
    return kernel


def monitor_for(kernel: FakeDarwinKernel, ignore: str = "utun3", **options: float) -> Tracked:
    monitor = DarwinBackend(kernel).connectivity_monitor(GATEWAY, ignore)
    assert isinstance(monitor, DarwinConnectivityMonitor)
    return Tracked(monitor, quiet=options.get("quiet", QUIET), max_delay=options.get("max_delay", 1.0))


def test_initial_snapshot_then_a_move_then_loss() -> None:
    kernel = attached()

    async def main() -> dict[str, object]:
        monitor = monitor_for(kernel)
        recorder = AttachmentRecorder()
        seen: dict[str, object] = {}
        await monitor.start(recorder)
        seen["initial"] = list(recorder.snapshots)  # reported before start() returned
        seen["probe_initial"] = monitor.probe()
        recorder.changed.clear()

        # A move to another network, as configd does it: address, then the default route swapped.
        started = time.monotonic()
        kernel.add_ipv4("en1", "203.0.113.10/24")
        kernel.delete_route("0.0.0.0/0")
        kernel.add_route("0.0.0.0/0", "en1", "203.0.113.1")
        seen["moved"] = await recorder.next()
        seen["latency"] = time.monotonic() - started
        seen["probe_moved"] = monitor.probe()
        await asyncio.sleep(4 * QUIET)
        seen["reports_after_move"] = len(recorder.snapshots)

        kernel.delete_route("0.0.0.0/0")
        seen["lost"] = await recorder.next()
        seen["probe_lost"] = monitor.probe()
        await monitor.stop()
        return seen

    seen = asyncio.run(main())
    assert seen["initial"] == [FIRST]
    assert seen["probe_initial"] == FIRST
    assert seen["moved"] == SECOND
    assert isinstance(seen["latency"], float) and QUIET <= seen["latency"] < QUIET + 0.5
    assert seen["probe_moved"] == SECOND
    assert seen["reports_after_move"] == 2  # initial + moved: the burst was coalesced
    assert seen["lost"] is None
    assert seen["probe_lost"] is None
    assert kernel.open_sockets("route") == 0


def test_on_link_gateway_has_no_router() -> None:
    kernel = FakeDarwinKernel()
    kernel.add_interface("en0")
    kernel.add_ipv4("en0", "198.51.100.7/24")

    async def main() -> list[Attachment | None]:
        monitor = monitor_for(kernel)
        recorder = AttachmentRecorder()
        await monitor.start(recorder)
        await monitor.stop()
        return recorder.snapshots

    assert asyncio.run(main()) == [Attachment(IPv4Address("198.51.100.7"), "en0", None)]


def test_own_utun_ipv6_and_lookups_are_ignored_and_unchanged_snapshots_not_reported() -> None:
    kernel = attached()
    backend = DarwinBackend(kernel)
    tun = backend.open_tun("m6t0")

    async def main() -> tuple[int, int, int, int, list[Attachment | None]]:
        monitor = monitor_for(kernel, ignore=tun.name)
        darwin = monitor.monitor
        assert isinstance(darwin, DarwinConnectivityMonitor)
        recorder = AttachmentRecorder()
        await monitor.start(recorder)
        before = monitor.evaluations

        # Everything the tunnel's own set-up produces, and IPv6 changes elsewhere.
        await backend.set_mtu(tun.name, 1472)
        await backend.set_link_up(tun.name)
        kernel.set_link(tun.name, False)
        kernel.set_link(tun.name, True)
        await backend.replace_address(tun.name, IPv6Address("fd6d:3674:a1b2:0:1::5"), 80)
        await backend.replace_route(tun.name, Route(IPv6Network("::/0"), 1029))
        kernel.add_route("2001:db8::/32", "en0", "fe80::1")
        await darwin.lookup()  # a lookup's RTM_GET reaches every routing socket, ours included
        await asyncio.sleep(4 * QUIET)
        quiet_evaluations = monitor.evaluations - before
        quiet_events = darwin.events

        # An IPv4-relevant event that changes nothing: evaluated, not reported.
        kernel.set_link("en0", True)
        await asyncio.sleep(4 * QUIET)
        after = monitor.evaluations - before
        await monitor.stop()
        return quiet_evaluations, quiet_events, after, len(recorder.snapshots), recorder.snapshots

    quiet_evaluations, quiet_events, after, reports, snapshots = asyncio.run(main())
    assert (quiet_evaluations, quiet_events) == (0, 0)
    assert after == 1
    assert reports == 1 and snapshots == [FIRST]
    tun.close()


def test_bursts_are_debounced_but_not_forever() -> None:
    kernel = attached()

    async def main() -> tuple[int, int]:
        monitor = monitor_for(kernel, quiet=0.1, max_delay=0.25)
        await monitor.start(AttachmentRecorder())
        base = monitor.evaluations
        # Five events 20 ms apart: one burst, one evaluation.
        for _ in range(5):
            kernel.set_link("en1", True)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        one_burst = monitor.evaluations - base
        # A storm that never quiets down is still evaluated every max_delay.
        base = monitor.evaluations
        deadline = time.monotonic() + 0.8
        while time.monotonic() < deadline:
            kernel.set_link("en1", True)
            await asyncio.sleep(0.02)
        storm = monitor.evaluations - base
        await monitor.stop()
        return one_burst, storm

    one_burst, storm = asyncio.run(main())
    assert one_burst == 1
    assert 2 <= storm <= 5


def test_unparsable_messages_trigger_a_fresh_lookup() -> None:
    kernel = attached()

    async def main() -> int:
        monitor = monitor_for(kernel)
        await monitor.start(AttachmentRecorder())
        base = monitor.evaluations
        kernel.broadcast_raw(b"\x07\x00\x05")
        await asyncio.sleep(4 * QUIET)
        await monitor.stop()
        return monitor.evaluations - base

    assert asyncio.run(main()) == 1


def test_probe_reports_a_new_source_before_the_monitor_does() -> None:
    kernel = attached()

    async def main() -> Attachment | None:
        monitor = monitor_for(kernel, quiet=5.0)
        await monitor.start(AttachmentRecorder())
        kernel.add_ipv4("en1", "203.0.113.10/24")
        kernel.delete_route("0.0.0.0/0")
        kernel.add_route("0.0.0.0/0", "en1", "203.0.113.1")
        probed = monitor.probe()
        await monitor.stop()
        return probed

    assert asyncio.run(main()) == Attachment(IPv4Address("203.0.113.10"), "en1", None)


def test_event_filter() -> None:
    route = FakeRoute(network=IPv4Network("192.0.2.7/32"), ifindex=4, gateway=None, flags=RTF_LLINFO)
    kernel = attached()
    arp = parse_message(kernel.route_message(RTM_ADD, route, seq=0, pid=0, index=4))
    assert not concerns_ipv4(arp, None)  # ARP churn
    route.flags = 0
    plain = parse_message(kernel.route_message(RTM_ADD, route, seq=0, pid=0, index=4))
    assert concerns_ipv4(plain, None)
    assert not concerns_ipv4(plain, 4)
    header = RtMsghdr(rtm_version=5, rtm_type=RTM_ADD)
    v6 = parse_message(assemble(header, {0: sockaddr(IPv6Network("fd00::/8").network_address)}))
    assert not concerns_ipv4(v6, None)
    ifam = IfaMsghdr(ifam_version=5, ifam_type=0xC, ifam_index=4)
    v4_address = parse_message(assemble(ifam, {5: sockaddr(IPv4Address("192.0.2.9"))}))
    assert concerns_ipv4(v4_address, None)
    assert not concerns_ipv4(v4_address, 4)


def two_uplinks() -> FakeDarwinKernel:
    """en0 primary (the unscoped default), en1 with the scoped default configd installs for a second service."""
    kernel = attached()
    kernel.add_ipv4("en1", "203.0.113.10/24")
    kernel.add_route("0.0.0.0/0", "en1", "203.0.113.1", scope=kernel.interface("en1").index)
    return kernel


def test_scoped_lookups_and_every_uplink() -> None:
    kernel = two_uplinks()
    backend = DarwinBackend(kernel)

    async def main() -> tuple[Attachment | None, ...]:
        found = []
        for uplink in (None, "en0", "en1", "en2"):
            found.append(await backend.connectivity_monitor(GATEWAY, "utun3", uplink=uplink).lookup())
        return tuple(found)

    assert asyncio.run(main()) == (FIRST, FIRST, SECOND, None)
    # The scoped requests are RTF_IFSCOPE RTM_GETs; the unscoped one is not.
    gets = [flags & RTF_IFSCOPE for kind, flags, _error in kernel.route_requests if kind == RTM_GET]
    assert gets == [0, RTF_IFSCOPE, RTF_IFSCOPE]  # en2 has no index: never asked
    monitor = backend.connectivity_monitor(GATEWAY, "utun3")
    assert asyncio.run(monitor.uplinks()) == (FIRST, SECOND)
    assert asyncio.run(monitor.uplinks(ignore=("en0",))) == (SECOND,)
    # The probe bound to en1 (IP_BOUND_IF) answers from en1's address.
    scoped = backend.connectivity_monitor(GATEWAY, "utun3", uplink="en1")
    assert scoped.probe() == Attachment(SECOND.local_ipv4, "en1", None)
    # Without en1's scoped route, an unscoped route through en0 never answers for en1.
    kernel.delete_route("0.0.0.0/0", scope=kernel.interface("en1").index)
    assert asyncio.run(scoped.lookup()) is None
    assert scoped.probe() is None
    assert asyncio.run(monitor.uplinks()) == (FIRST,)


def test_a_channel_bound_to_an_uplink_sets_ip_bound_if_before_connecting() -> None:
    kernel = two_uplinks()
    channel = DarwinBackend(kernel).open_udp((GATEWAY, 4242), uplink="en1")
    try:
        assert kernel.sockopts[(channel.fileno(), IPPROTO_IP, IP_BOUND_IF)] == kernel.interface("en1").index
    finally:
        channel.close()
    with pytest.raises(PlatformError):
        DarwinBackend(kernel).open_udp((GATEWAY, 4242), uplink="en9")
