"""WindowsConnectivityMonitor against the fake IP Helper, run with the client's tracker: snapshots from
GetBestRoute2, notifications from foreign threads, debouncing, our own adapter ignored, probe()."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address

import pytest

from m6t.platform.windows.backend import WindowsBackend
from m6t.platform.windows.monitor import WindowsConnectivityMonitor
from m6t.protocol.values import Attachment
from tests.platform.attachment_recorder import AttachmentRecorder
from tests.platform.tracked import Tracked
from tests.platform.windows_fakes import AF_INET, FakeWindows, fake_windows

GATEWAY = IPv4Address("198.51.100.2")
DEFAULT = IPv4Network("0.0.0.0/0")
ETHERNET = Attachment(IPv4Address("192.0.2.10"), "Ethernet", IPv4Address("192.0.2.1"))
WIFI = Attachment(IPv4Address("203.0.113.10"), "Wi-Fi", IPv4Address("203.0.113.1"))
TUN = "m6t0"
QUIET = 0.1


@pytest.fixture
def fake() -> Iterator[FakeWindows]:
    with fake_windows() as windows:
        windows.add_interface("Ethernet")
        windows.add_ipv4_address("Ethernet", ETHERNET.local_ipv4, 24)
        windows.add_ipv4_route("Ethernet", IPv4Network("192.0.2.0/24"), None, 256)
        windows.add_ipv4_route("Ethernet", DEFAULT, ETHERNET.router, 25)
        yield windows


def windows_monitor(fake: FakeWindows, gateway: IPv4Address = GATEWAY) -> WindowsConnectivityMonitor:
    return WindowsBackend(fake.api()).connectivity_monitor(gateway, TUN)


def monitor_for(fake: FakeWindows, gateway: IPv4Address = GATEWAY, **kwargs: float) -> Tracked:
    return Tracked(
        windows_monitor(fake, gateway), quiet=kwargs.get("quiet", QUIET), max_delay=kwargs.get("max_delay", 1.0)
    )


async def in_thread(function: object, *args: object) -> None:
    """Change the fake network from another thread, as the OS would under us."""
    await asyncio.to_thread(function, *args)  # type: ignore[arg-type]


def test_initial_snapshot_then_changes_then_loss(fake: FakeWindows) -> None:
    async def main() -> list[Attachment | None]:
        monitor = monitor_for(fake)
        recorder = AttachmentRecorder()
        await monitor.start(recorder)
        assert recorder.snapshots == [ETHERNET]
        recorder.changed.clear()
        kinds = {(r.kind, r.family) for r in fake.iphlpapi.registrations.values()}
        assert kinds == {("address", AF_INET), ("route", AF_INET)}

        # Wi-Fi comes up with a better default route.
        fake.add_interface("Wi-Fi")
        await in_thread(fake.add_ipv4_address, "Wi-Fi", WIFI.local_ipv4, 24)
        await in_thread(fake.add_ipv4_route, "Wi-Fi", DEFAULT, WIFI.router, 5)
        assert await recorder.next() == WIFI
        # ... and goes away again.
        await in_thread(fake.remove_ipv4_route, "Wi-Fi", DEFAULT)
        assert await recorder.next() == ETHERNET
        # No IPv4 path at all.
        await in_thread(fake.remove_ipv4_route, "Ethernet", DEFAULT)
        assert await recorder.next() is None
        await monitor.stop()
        assert recorder.threads == {threading.get_ident()}  # reported on the loop's thread
        assert monitor.change_threads == {threading.get_ident()}  # announced there too
        return recorder.snapshots

    assert asyncio.run(main()) == [ETHERNET, WIFI, ETHERNET, None]


def test_notifications_come_from_foreign_threads(fake: FakeWindows) -> None:
    async def main() -> None:
        monitor = monitor_for(fake)
        windows = monitor.monitor
        assert isinstance(windows, WindowsConnectivityMonitor)
        recorder = AttachmentRecorder()
        await monitor.start(recorder)
        registrations = list(fake.iphlpapi.registrations.values())
        await in_thread(fake.add_ipv4_address, "Ethernet", IPv4Address("192.0.2.11"), 24)
        await asyncio.to_thread(fake.wait_notifications)
        threads = set().union(*(r.threads_seen for r in registrations))
        assert threads and threading.get_ident() not in threads
        await asyncio.sleep(QUIET * 2)
        assert windows.events >= 1
        assert monitor.change_threads == {threading.get_ident()}
        await monitor.stop()

    asyncio.run(main())


def test_on_link_gateway_has_no_router(fake: FakeWindows) -> None:
    fake.add_ipv4_route("Ethernet", IPv4Network("198.51.100.0/24"), None, 10)

    async def main() -> Attachment | None:
        monitor = monitor_for(fake)
        recorder = AttachmentRecorder()
        await monitor.start(recorder)
        await monitor.stop()
        return recorder.snapshots[0]

    assert asyncio.run(main()) == Attachment(ETHERNET.local_ipv4, "Ethernet", None)


def test_no_route_reports_none(fake: FakeWindows) -> None:
    fake.remove_ipv4_route("Ethernet", DEFAULT)

    async def main() -> list[Attachment | None]:
        monitor = monitor_for(fake)
        recorder = AttachmentRecorder()
        await monitor.start(recorder)
        await monitor.stop()
        return recorder.snapshots

    assert asyncio.run(main()) == [None]


def test_a_burst_is_evaluated_once_after_it_quiets_down(fake: FakeWindows) -> None:
    async def main() -> tuple[int, list[Attachment | None], float]:
        monitor = monitor_for(fake)
        recorder = AttachmentRecorder()
        await monitor.start(recorder)
        recorder.changed.clear()
        before = monitor.evaluations
        fake.add_interface("Wi-Fi")

        def burst() -> None:
            # DHCP-like: addresses and routes coming and going within a few milliseconds.
            for i in range(5):
                fake.add_ipv4_address("Wi-Fi", IPv4Address(f"203.0.113.{20 + i}"), 24)
            fake.add_ipv4_address("Wi-Fi", WIFI.local_ipv4, 24)
            for i in range(5):
                fake.remove_ipv4_address("Wi-Fi", IPv4Address(f"203.0.113.{20 + i}"))
            fake.add_ipv4_route("Wi-Fi", DEFAULT, WIFI.router, 5)

        started = time.monotonic()
        await asyncio.to_thread(burst)
        await asyncio.to_thread(fake.wait_notifications)
        snapshot = await recorder.next()
        elapsed = recorder.times[-1] - started
        await asyncio.sleep(QUIET * 3)
        await monitor.stop()
        assert snapshot == WIFI
        return monitor.evaluations - before, recorder.snapshots, elapsed

    evaluations, snapshots, elapsed = asyncio.run(main())
    assert evaluations == 1
    assert snapshots == [ETHERNET, WIFI]
    assert elapsed < QUIET + 0.5


def test_a_burst_that_never_quiets_is_still_evaluated(fake: FakeWindows) -> None:
    async def main() -> int:
        monitor = monitor_for(fake, quiet=0.1, max_delay=0.3)
        recorder = AttachmentRecorder()
        await monitor.start(recorder)
        before = monitor.evaluations
        deadline = time.monotonic() + 0.6
        i = 0
        while time.monotonic() < deadline:  # a change every 50 ms: never a 100 ms quiet period
            i += 1
            await in_thread(fake.add_ipv4_address, "Ethernet", IPv4Address(f"192.0.2.{100 + i}"), 24)
            await asyncio.sleep(0.05)
        await monitor.stop()
        return monitor.evaluations - before

    assert asyncio.run(main()) >= 1


def test_our_own_adapter_is_ignored(fake: FakeWindows) -> None:
    async def main() -> None:
        backend = WindowsBackend(fake.api())
        windows = backend.connectivity_monitor(GATEWAY, TUN)
        monitor = Tracked(windows, quiet=QUIET)
        recorder = AttachmentRecorder()
        await monitor.start(recorder)
        events, evaluations = windows.events, monitor.evaluations
        # Creating the adapter makes Windows add IPv4 state on it (APIPA address and route)...
        tun = backend.open_tun(TUN)
        await asyncio.to_thread(fake.wait_notifications)
        await asyncio.sleep(QUIET * 2)
        assert (windows.events, monitor.evaluations) == (events, evaluations)
        # ... and more on it later is ignored too; and so is our IPv6 work (not even an AF_INET event).
        await in_thread(fake.add_ipv4_address, TUN, IPv4Address("169.254.77.2"), 16)
        await backend.replace_address(TUN, IPv6Address("fd6d:3674:a1b2::1"), 80)
        await asyncio.to_thread(fake.wait_notifications)
        await asyncio.sleep(QUIET * 2)
        assert (windows.events, monitor.evaluations) == (events, evaluations)
        # Removing the adapter: its last events are recognized by the LUID remembered.
        tun.close()
        await asyncio.to_thread(fake.wait_notifications)
        await asyncio.sleep(QUIET * 2)
        assert (windows.events, monitor.evaluations) == (events, evaluations)
        assert recorder.snapshots == [ETHERNET]
        await monitor.stop()

    asyncio.run(main())


def test_a_path_through_our_own_adapter_is_no_path(fake: FakeWindows) -> None:
    backend = WindowsBackend(fake.api())
    tun = backend.open_tun(TUN)  # holds 169.254.77.1/16 and a 169.254.0.0/16 route

    async def main() -> list[Attachment | None]:
        monitor = Tracked(backend.connectivity_monitor(IPv4Address("169.254.1.1"), TUN))
        recorder = AttachmentRecorder()
        await monitor.start(recorder)
        await monitor.stop()
        return recorder.snapshots

    assert asyncio.run(main()) == [None]
    tun.close()


def test_stop_cancels_the_registrations_and_later_events_are_ignored(fake: FakeWindows) -> None:
    async def main() -> list[Attachment | None]:
        monitor = monitor_for(fake)
        recorder = AttachmentRecorder()
        await monitor.start(recorder)
        await monitor.stop()
        assert fake.iphlpapi.registrations == {}
        fake.add_interface("Wi-Fi")
        await in_thread(fake.add_ipv4_address, "Wi-Fi", WIFI.local_ipv4, 24)
        await in_thread(fake.add_ipv4_route, "Wi-Fi", DEFAULT, WIFI.router, 5)
        await asyncio.sleep(QUIET * 3)
        return recorder.snapshots

    assert asyncio.run(main()) == [ETHERNET]


def test_start_twice_is_refused(fake: FakeWindows) -> None:
    async def main() -> None:
        monitor = windows_monitor(fake)
        await monitor.start(lambda: None)
        with pytest.raises(RuntimeError):
            await monitor.start(lambda: None)
        await monitor.stop()

    asyncio.run(main())


# probe() -----------------------------------------------------------------------------------------------


def test_probe_uses_the_socket_and_the_route_lookup(fake: FakeWindows) -> None:
    # probe() really connects a UDP socket: use loopback, which this host has.
    loopback = fake.add_interface("Loopback Pseudo-Interface 1")
    fake.add_ipv4_address(loopback.alias, IPv4Address("127.0.0.1"), 8)
    fake.add_ipv4_route(loopback.alias, IPv4Network("127.0.0.0/8"), None, 0)
    monitor = windows_monitor(fake, IPv4Address("127.0.0.1"))
    assert monitor.probe() == Attachment(IPv4Address("127.0.0.1"), loopback.alias, None)


def test_probe_returns_the_last_snapshot_when_the_source_is_unchanged(fake: FakeWindows) -> None:
    monitor = monitor_for(fake, IPv4Address("127.0.0.1"))
    known = Attachment(IPv4Address("127.0.0.1"), "somewhere", IPv4Address("127.0.0.254"))
    monitor.tracker.watch(0.0)
    monitor.tracker.looked_up(known, 0.0)
    assert monitor.probe() is known


def test_probe_falls_back_to_the_interface_holding_the_source(fake: FakeWindows) -> None:
    # The route lookup disagrees with the socket (a change not yet settled): trust the socket's source.
    monitor = windows_monitor(fake, IPv4Address("127.0.0.1"))
    probed = monitor.probe()
    assert probed is not None
    assert probed.local_ipv4 == IPv4Address("127.0.0.1")
    assert probed.router is None


def test_scoped_lookups_every_uplink_and_the_bound_channel(fake: FakeWindows) -> None:
    fake.add_interface("Wi-Fi")
    fake.add_ipv4_address("Wi-Fi", WIFI.local_ipv4, 24)
    fake.add_ipv4_route("Wi-Fi", IPv4Network("203.0.113.0/24"), None, 256)
    fake.add_ipv4_route("Wi-Fi", DEFAULT, WIFI.router, 50)
    fake.add_interface("Bluetooth")  # an address, no route toward the gateway: no uplink
    fake.add_ipv4_address("Bluetooth", IPv4Address("192.0.2.77"), 32)
    backend = WindowsBackend(fake.api())

    async def main() -> tuple[object, ...]:
        monitors = [backend.connectivity_monitor(GATEWAY, TUN, uplink=name) for name in (None, "Ethernet", "Wi-Fi")]
        lookups = [await monitor.lookup() for monitor in monitors]
        unknown = await backend.connectivity_monitor(GATEWAY, TUN, uplink="Nothing").lookup()
        return (*lookups, unknown, await monitors[0].uplinks(), await monitors[0].uplinks(ignore=["Ethernet"]))

    assert asyncio.run(main()) == (ETHERNET, ETHERNET, WIFI, None, (ETHERNET, WIFI), (WIFI,))
    assert not fake.violations
    assert not fake.iphlpapi.tables, "every table GetUnicastIpAddressTable handed out was freed"
    channel = backend.open_udp((GATEWAY, 4242), uplink="Wi-Fi")
    try:
        index = fake.interface_by_alias("Wi-Fi")
        assert index is not None
        # IP_UNICAST_IF (31) with the interface index in network byte order, before the connect.
        assert (channel.sock.fileno(), 0, 31, index.index.to_bytes(4, "big")) in fake.ws2_32.sockopts
    finally:
        channel.close()
