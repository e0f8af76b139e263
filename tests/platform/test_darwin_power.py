"""macOS sleep and wake: IOKitPowerEvents over the emulated IOKit root power domain and CoreFoundation run
loops (m6t.lab.emulation.darwin_power), and the real ClientDriver told of a wake through them."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from m6t.client.driver import ClientDriver
from m6t.client.vocabulary import State
from m6t.lab.emulation.darwin_power import (
    CAN_SYSTEM_SLEEP,
    SYSTEM_HAS_POWERED_ON,
    SYSTEM_WILL_POWER_ON,
    SYSTEM_WILL_SLEEP,
    EmulatedPower,
)
from m6t.platform.base import PowerEvent, PowerEvents
from m6t.platform.darwin.backend import DarwinBackend
from m6t.platform.darwin.power import IOKitPowerEvents, PowerApi
from m6t.protocol import is_keepalive_request
from tests.platform.darwin_fakes import FakeDarwinKernel
from tests.unit.test_session_driver import FakeBackend, config, settle

T = TypeVar("T")


@pytest.fixture
def power() -> Iterator[EmulatedPower]:
    mac = EmulatedPower()
    yield mac
    mac.assert_clean()


def run(scenario: Callable[[], Awaitable[T]], seconds: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), seconds)

    return asyncio.run(bounded())


class Recorder:
    def __init__(self) -> None:
        self.events: list[PowerEvent] = []
        self.threads: set[int] = set()
        self.changed = asyncio.Event()

    def __call__(self, event: PowerEvent) -> None:
        self.events.append(event)
        self.threads.add(threading.get_ident())
        self.changed.set()

    async def until(self, count: int, timeout: float = 5.0) -> list[PowerEvent]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))
        return list(self.events)


def test_sleep_and_wake_reach_the_loop(power: EmulatedPower) -> None:
    async def scenario() -> None:
        events = IOKitPowerEvents(lambda: power.api)
        seen = Recorder()
        assert await events.start(seen)
        assert power.wait_registered()
        late = await asyncio.to_thread(power.sleep, timeout=5.0)
        assert late == set(), "kIOMessageSystemWillSleep acknowledged"
        assert await seen.until(1) == [PowerEvent.SLEEPING]
        await asyncio.to_thread(power.wake)
        assert await seen.until(2) == [PowerEvent.SLEEPING, PowerEvent.RESUMED]
        assert seen.threads == {threading.get_ident()}, "announced on the asyncio loop's thread"
        assert threading.get_ident() not in power.callback_threads, "IOKit called back on the run loop's thread"
        await events.stop()

    run(scenario)
    messages = [message for _, message in power.delivered]
    assert messages == [SYSTEM_WILL_SLEEP, SYSTEM_WILL_POWER_ON, SYSTEM_HAS_POWERED_ON]
    assert [message for _, message in power.acknowledged] == [SYSTEM_WILL_SLEEP], "the wake is never acknowledged"


def test_an_idle_sleep_is_allowed_and_announced_once(power: EmulatedPower) -> None:
    async def scenario() -> list[PowerEvent]:
        events = IOKitPowerEvents(lambda: power.api)
        seen = Recorder()
        assert await events.start(seen)
        assert power.wait_registered()
        assert await asyncio.to_thread(power.sleep, idle=True, timeout=5.0) == set(), "never vetoed"
        await seen.until(1)
        await asyncio.sleep(0.1)
        await events.stop()
        return seen.events

    assert run(scenario) == [PowerEvent.SLEEPING]
    assert [message for _, message in power.acknowledged] == [CAN_SYSTEM_SLEEP, SYSTEM_WILL_SLEEP]


def test_the_thread_waits_in_its_run_loop_while_nothing_happens(power: EmulatedPower) -> None:
    async def scenario() -> None:
        events = IOKitPowerEvents(lambda: power.api)
        assert await events.start(Recorder())
        assert power.wait_registered()
        await asyncio.sleep(0.5)
        assert power.activations == 1, "one run loop activation, no polling"
        await events.stop()

    run(scenario)


def test_a_stop_racing_the_run_loop_still_ends_it(power: EmulatedPower) -> None:
    """CFRunLoopStop is lost unless the run loop runs: stops right after start land in that gap."""

    async def scenario() -> None:
        for _ in range(20):
            events = IOKitPowerEvents(lambda: power.api)
            assert await events.start(Recorder())
            await events.stop()
        assert power.registered == 0

    run(scenario)
    assert all(t.name != "m6t-iokit-power" for t in threading.enumerate())


def test_a_start_cancelled_by_close_is_still_stopped(power: EmulatedPower) -> None:
    async def scenario() -> None:
        events = IOKitPowerEvents(lambda: power.api)
        starting = asyncio.ensure_future(events.start(Recorder()))
        await asyncio.sleep(0)
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        await events.stop()
        assert not any(t.name == "m6t-iokit-power" for t in threading.enumerate())

    run(scenario)


def test_no_root_domain_means_no_announcements(power: EmulatedPower) -> None:
    async def scenario() -> bool:
        events = IOKitPowerEvents(lambda: power.api)
        with power.unavailable():
            started = await events.start(Recorder())
        await events.stop()
        return started

    assert run(scenario) is False
    assert power.registered == 0


def test_without_the_frameworks_there_are_no_announcements() -> None:
    def missing() -> PowerApi:
        raise OSError("dlopen(/System/Library/Frameworks/IOKit.framework/IOKit): image not found")

    async def scenario() -> bool:
        events = IOKitPowerEvents(missing)
        started = await events.start(Recorder())
        await events.stop()
        return started

    assert run(scenario) is False


def test_the_darwin_backend_announces_through_iokit(power: EmulatedPower) -> None:
    backend = DarwinBackend(FakeDarwinKernel(), power_api=lambda: power.api)
    assert isinstance(backend.power_events(), IOKitPowerEvents)

    async def off_a_mac() -> bool:
        # Without an emulation, off a Mac: no frameworks, and the driver goes on without announcements.
        events = DarwinBackend(FakeDarwinKernel()).power_events()
        started = await events.start(Recorder())
        await events.stop()
        return started

    assert run(off_a_mac) is False


class PoweredBackend(FakeBackend):
    def __init__(self, power: PowerEvents) -> None:
        super().__init__()
        self.power = power

    def power_events(self) -> PowerEvents | None:
        return self.power


def test_a_wake_makes_the_driver_check_the_binding_at_once(power: EmulatedPower) -> None:
    async def scenario() -> None:
        backend = PoweredBackend(IOKitPowerEvents(lambda: power.api))
        driver = ClientDriver(config(keepalive_interval=30.0), backend)
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED and power.wait_registered(timeout=0))
        sent = sum(is_keepalive_request(d) for c in backend.channels for d in c.sent)
        await asyncio.to_thread(power.sleep, timeout=5.0)
        await asyncio.to_thread(power.wake)
        # At once: not at the next keepalive, 30 s away.
        await settle(lambda: sum(is_keepalive_request(d) for c in backend.channels for d in c.sent) == sent + 1, 2.0)
        await driver.close()

    run(scenario)
