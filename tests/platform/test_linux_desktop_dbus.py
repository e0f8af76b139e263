"""logind's sleep signals and NetworkManager's connectivity over a REAL D-Bus (a private dbus-daemon with
stand-in services owning the real names: tests/platform/private_bus.py, tests/platform/dbus_standins.py)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from m6t.platform.base import NetworkReachability, PowerEvent

from .dbus_standins import Logind, NetworkManager, StandIn
from .private_bus import DBUS_DAEMON, MISSING, private_bus

if sys.platform != "linux":
    pytest.skip("logind and NetworkManager are Linux services", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

pytestmark = pytest.mark.skipif(DBUS_DAEMON is None, reason=MISSING)


@pytest.fixture
def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with private_bus(tmp_path) as bus:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        yield bus.address


async def wait_for(condition: object, timeout: float = 3.0) -> None:
    assert callable(condition)
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def test_prepare_for_sleep_is_announced_both_ways(bus: str) -> None:
    from m6t.platform.linux.logind import LogindPowerEvents

    logind = Logind(bus).start()

    async def scenario() -> None:
        seen: list[PowerEvent] = []
        power = LogindPowerEvents()
        assert await power.start(seen.append)
        # Another client on the bus sending the same signal is not logind: ignored.
        impostor = StandIn(bus, "org.m6t.Impostor", "/org/freedesktop/login1", "org.freedesktop.login1.Manager", {})
        await asyncio.to_thread(impostor.start)
        await asyncio.to_thread(impostor.emit, "PrepareForSleep", "b", (False,))
        await asyncio.to_thread(logind.prepare_for_sleep, True)
        await asyncio.to_thread(logind.prepare_for_sleep, False)
        await wait_for(lambda: len(seen) >= 2)
        await asyncio.sleep(0.1)
        assert seen == [PowerEvent.SLEEPING, PowerEvent.RESUMED]
        impostor.stop()
        await power.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 20))
    finally:
        logind.stop()


def test_without_logind_or_a_bus_nothing_is_announced(bus: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from m6t.platform.linux.logind import LogindPowerEvents
    from m6t.platform.linux.networkmanager import NetworkManagerHints

    async def scenario() -> None:
        assert not await LogindPowerEvents().start(lambda e: None)  # the bus is there, nobody owns the name
        assert await NetworkManagerHints().start(lambda r: None) is None
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/m6t-test-bus")
        assert not await LogindPowerEvents().start(lambda e: None)  # no bus at all

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_networkmanager_connectivity_is_read_and_followed(bus: str) -> None:
    from m6t.platform.linux.networkmanager import NetworkManagerHints

    nm = NetworkManager(bus, NetworkManager.PORTAL).start()

    async def scenario() -> None:
        seen: list[NetworkReachability] = []
        hints = NetworkManagerHints()
        assert await hints.start(seen.append) is NetworkReachability.PORTAL
        await asyncio.to_thread(nm.set_connectivity, NetworkManager.FULL)
        await asyncio.to_thread(nm.set_connectivity, NetworkManager.FULL)  # unchanged: not repeated
        await asyncio.to_thread(nm.set_connectivity, NetworkManager.LIMITED)
        await asyncio.to_thread(nm.set_connectivity, 99)  # a future state: unknown
        await wait_for(lambda: len(seen) >= 3)
        await asyncio.sleep(0.1)
        assert seen == [NetworkReachability.FULL, NetworkReachability.LIMITED, NetworkReachability.UNKNOWN]
        await hints.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 20))
    finally:
        nm.stop()


def test_the_driver_follows_the_real_signals(bus: str) -> None:
    """Resume → look-up and keepalive at once; portal → sign_in_required with nothing tried; FULL → connected."""
    from m6t.client.driver import ClientDriver
    from m6t.client.vocabulary import State
    from m6t.platform.linux.logind import LogindPowerEvents
    from m6t.platform.linux.networkmanager import NetworkManagerHints
    from tests.unit.test_driver_hints import HintedBackend, keepalives
    from tests.unit.test_session_driver import config

    logind = Logind(bus).start()
    nm = NetworkManager(bus, NetworkManager.FULL).start()

    class Backend(HintedBackend):
        def power_events(self) -> LogindPowerEvents:
            return LogindPowerEvents()

        def reachability_hints(self) -> NetworkManagerHints:
            return NetworkManagerHints()

    async def scenario() -> None:
        backend = Backend()
        driver = ClientDriver(config(keepalive_interval=30.0), backend)
        await driver.up()
        await wait_for(lambda: driver.session.state is State.CONNECTED)
        # Subscribed to both (the task that subscribes ends then).
        await wait_for(lambda: driver._hints_task is not None and driver._hints_task.done())
        assert driver._hints is not None and driver._hints.sources == ("power", "reachability")
        monitor = backend.monitors[0]
        lookups, sent = monitor.lookups, keepalives(backend)
        await asyncio.to_thread(logind.prepare_for_sleep, True)
        await asyncio.to_thread(logind.prepare_for_sleep, False)
        await wait_for(lambda: keepalives(backend) == sent + 1 and monitor.lookups == lookups + 1, timeout=1.0)
        sockets = len(backend.channels)
        await asyncio.to_thread(nm.set_connectivity, NetworkManager.PORTAL)
        await wait_for(lambda: driver.session.state is State.SIGN_IN_REQUIRED)
        await asyncio.sleep(0.3)
        assert len(backend.channels) == sockets and backend.installed() == set()
        assert driver.session.status().failures == 0
        await asyncio.to_thread(nm.set_connectivity, NetworkManager.FULL)
        await wait_for(lambda: driver.session.state is State.CONNECTED, timeout=1.0)
        await driver.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        logind.stop()
        nm.stop()
