"""The client driver with the OS's hints (sleep/resume, captive portal) and its timer (issue 12)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from m6t.client.driver import ClientDriver
from m6t.client.vocabulary import State
from m6t.platform.base import (
    NetworkReachability,
    PowerCallback,
    PowerEvent,
    PowerEvents,
    ReachabilityCallback,
    ReachabilityHints,
)
from m6t.protocol import is_keepalive_request

from .test_session_driver import FakeBackend, config, run, settle


class FakePower(PowerEvents):
    def __init__(self, present: bool = True) -> None:
        self.present = present
        self.on_event: PowerCallback | None = None
        self.stopped = False

    async def start(self, on_event: PowerCallback) -> bool:
        self.on_event = on_event if self.present else None
        return self.present

    async def stop(self) -> None:
        self.stopped = True


class FakeReachability(ReachabilityHints):
    def __init__(self, now: NetworkReachability | None) -> None:
        self.now = now
        self.on_change: ReachabilityCallback | None = None

    async def start(self, on_change: ReachabilityCallback) -> NetworkReachability | None:
        self.on_change = on_change
        return self.now

    async def stop(self) -> None:
        pass


class HintedBackend(FakeBackend):
    def __init__(self, power: FakePower | None = None, reach: FakeReachability | None = None) -> None:
        super().__init__()
        self.power = power
        self.reach = reach

    def power_events(self) -> PowerEvents | None:
        return self.power

    def reachability_hints(self) -> ReachabilityHints | None:
        return self.reach


def keepalives(backend: FakeBackend) -> int:
    return sum(is_keepalive_request(d) for c in backend.channels for d in c.sent)


async def connected_with_power_events() -> tuple[FakePower, HintedBackend, ClientDriver]:
    """A driver connected (keepalives every 30 s) over a backend whose power events it has subscribed to."""
    power = FakePower()
    backend = HintedBackend(power)
    driver = ClientDriver(config(keepalive_interval=30.0), backend)
    await driver.up()
    await settle(lambda: driver.session.state is State.CONNECTED and power.on_event is not None)
    return power, backend, driver


def test_resume_checks_the_binding_and_looks_the_path_up_at_once() -> None:
    async def scenario() -> None:
        power, backend, driver = await connected_with_power_events()
        monitor = backend.monitors[0]
        lookups, sent = monitor.lookups, keepalives(backend)
        assert power.on_event is not None
        power.on_event(PowerEvent.SLEEPING)  # noted only
        await asyncio.sleep(0.05)
        assert keepalives(backend) == sent and monitor.lookups == lookups
        power.on_event(PowerEvent.RESUMED)
        # At once: not at the next keepalive, 30 s away.
        await settle(lambda: keepalives(backend) == sent + 1 and monitor.lookups == lookups + 1, timeout=0.5)
        await driver.close()
        assert power.stopped

    run(scenario)


def test_resume_recovers_a_lost_binding_within_the_resume_timeout() -> None:
    async def scenario() -> None:
        power, backend, driver = await connected_with_power_events()
        first = driver.session.address
        working = backend.gateway
        backend.gateway = lambda channel, datagram: []  # asleep: the NAT mapping went away
        assert power.on_event is not None
        power.on_event(PowerEvent.RESUMED)
        await asyncio.sleep(0.2)
        backend.gateway = working  # a new socket (a new mapping) is answered again
        await settle(lambda: driver.session.state is State.CONNECTED and driver.session.address != first, 2.5)
        await driver.close()

    run(scenario)


def test_a_captive_portal_holds_the_driver_and_full_reconnects() -> None:
    async def scenario() -> None:
        reach = FakeReachability(NetworkReachability.PORTAL)
        backend = HintedBackend(None, reach)
        driver = ClientDriver(config(), backend)
        await driver.up()
        await settle(lambda: driver.session.state is State.SIGN_IN_REQUIRED)
        await asyncio.sleep(0.2)
        assert driver.session.state is State.SIGN_IN_REQUIRED
        assert backend.installed() == set() and driver.session.status().failures == 0
        assert reach.on_change is not None
        reach.on_change(NetworkReachability.FULL)
        await settle(lambda: driver.session.state is State.CONNECTED, timeout=1.0)
        reach.on_change(NetworkReachability.PORTAL)
        await settle(lambda: driver.session.state is State.SIGN_IN_REQUIRED and backend.installed() == set())
        reach.on_change(NetworkReachability.LIMITED)  # not a portal: behaves as without NetworkManager
        await settle(lambda: driver.session.state is State.CONNECTED, timeout=1.0)
        await driver.close()

    run(scenario)


def test_without_the_os_services_nothing_changes() -> None:
    async def scenario() -> None:
        backend = HintedBackend(FakePower(present=False), FakeReachability(None))
        driver = ClientDriver(config(), backend)
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED)
        await driver.close()

    run(scenario)


def test_the_timer_is_armed_for_real_deadlines_only() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        driver = ClientDriver(config(keepalive_interval=30.0), backend)
        await driver.start()
        assert driver._next_deadline() is None  # started, not up: nothing to wake for, ever
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED)
        session = driver.session
        # The counters that moved while connecting are reported once (forced here); then only the keepalive
        # and the tracker's backstop riding with it, a keepalive interval away.
        session.tick(time.monotonic() + 5.0)
        driver._flush()
        deadline = driver._next_deadline()
        assert deadline is not None and deadline - time.monotonic() > 25
        await driver.down()
        session.tick(time.monotonic() + 5.0)  # the counters of the teardown, reported
        driver._flush()
        assert driver._next_deadline() is None  # down: no deadline at all
        await driver.close()

    run(scenario)


def test_the_helpers_journaling_backend_passes_the_hints_through(tmp_path: Path) -> None:
    from m6t.client.journal import Journal, JournalingBackend

    power, reach = FakePower(), FakeReachability(None)
    wrapped = JournalingBackend(HintedBackend(power, reach), Journal(tmp_path))
    assert wrapped.power_events() is power and wrapped.reachability_hints() is reach
