"""The real Windows service host (m6t.platform.windows.service) under an emulated Service Control Manager,
running the real helper (entry.serve → HelperService, its control API on this OS's transport) with a
scripted driver: the states reported on start, stop and shutdown within the wait hints, power events, the
start-up failure's exit code, and a console run told apart."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from m6t.client.api.client import HelperClient
from m6t.client.config import ClientConfig
from m6t.client.helper import entry
from m6t.client.helper.service import HelperOptions
from m6t.platform.base import Backend, PlatformError
from m6t.platform.windows.service import WindowsServiceHost
from tests.platform.windows_scm_fakes import (
    CONTROL_INTERROGATE,
    CONTROL_POWEREVENT,
    CONTROL_SHUTDOWN,
    CONTROL_STOP,
    ERROR_SERVICE_CANNOT_ACCEPT_CTRL,
    PBT_APMRESUMEAUTOMATIC,
    PBT_APMRESUMESUSPEND,
    PBT_APMSUSPEND,
    RUNNING,
    START_PENDING,
    STOP_PENDING,
    STOPPED,
    FakeScm,
)
from tests.unit.test_helper_fakes import FakeBackend, FakeDriver, config_for_this_user

pytestmark = pytest.mark.timeout(60)

ERROR_SERVICE_SPECIFIC_ERROR = 1066
ACCEPTED = 0x1 | 0x4 | 0x40


@dataclass
class ResumableDriver(FakeDriver):
    resumed_on: list[str] = field(default_factory=list)
    start_delay: float = 0.0
    stop_delay: float = 0.0

    async def start(self) -> None:
        await asyncio.sleep(self.start_delay)  # a slow start that lets the loop run (a stuck one: see below)

    def resumed(self) -> None:
        self.resumed_on.append(threading.current_thread().name)

    async def close(self) -> None:
        await asyncio.sleep(self.stop_delay)
        await super().close()


class Service:
    """The helper run as a service on a thread standing in for the process's main thread."""

    def __init__(
        self, tmp: Path, scm: FakeScm, *, config: str | None = None, start_delay: float = 0.0, stop_delay: float = 0.0
    ) -> None:
        self.scm = scm
        config_path = tmp / "client.toml"
        config_path.write_text(config_for_this_user() if config is None else config)
        self.socket_path = str(tmp / "helper.sock")
        self.options = HelperOptions(config_path=config_path, socket_path=self.socket_path, state_dir=tmp / "state")
        self.drivers: list[ResumableDriver] = []
        self.delays = (start_delay, stop_delay)
        self.host = WindowsServiceHost(scm.api(), start_wait_hint_ms=300, stop_wait_hint_ms=300)
        self.exit_status: int | None = None
        self.loop_thread: str | None = None
        self.thread = threading.Thread(target=self._main, name="process-main")

    def _driver(self, config: ClientConfig, backend: Backend, more_backends: Callable[[], Backend]) -> ResumableDriver:
        self.loop_thread = threading.current_thread().name
        driver = ResumableDriver(config, backend, start_delay=self.delays[0], stop_delay=self.delays[1])
        self.drivers.append(driver)
        return driver

    def _main(self) -> None:
        self.exit_status = entry.serve(
            self.options, self.host, backend_factory=FakeBackend, driver_factory=self._driver
        )

    def start(self) -> Service:
        self.thread.start()
        return self

    def join(self) -> int | None:
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()
        return self.exit_status


@pytest.fixture
def scm() -> Iterator[FakeScm]:
    scm = FakeScm()
    yield scm
    assert scm.violations == []


def test_start_runs_once_the_control_channel_listens_and_stop_reports_stopped(tmp_path: Path, scm: FakeScm) -> None:
    service = Service(tmp_path, scm).start()
    running = scm.wait_for(RUNNING)
    assert running.accepted == ACCEPTED
    assert (running.checkpoint, running.wait_hint_ms, running.win32_exit) == (0, 0, 0)
    with HelperClient(service.socket_path, timeout=5) as client:
        assert client.call("status")["state"] == "disconnected"

    assert scm.control(CONTROL_INTERROGATE) == 0
    assert scm.control(CONTROL_STOP) == 0
    assert service.join() == 0
    assert scm.states() == [START_PENDING, RUNNING, STOP_PENDING, STOPPED]
    first = scm.statuses[0]
    assert (first.checkpoint, first.accepted) == (1, 0) and first.wait_hint_ms == 300
    stopped = scm.statuses[-1]
    assert (stopped.win32_exit, stopped.specific_exit, stopped.accepted) == (0, 0, 0)
    # The handler ran on the dispatcher's thread, the helper on ServiceMain's, never the other way round.
    assert {control.thread for control in scm.handled} == {"process-main"}
    assert service.loop_thread == "ServiceMain"
    assert scm.service_main_args == ["m6t-helper"]
    assert service.drivers[0].state.value == "disconnected"


def test_shutdown_stops_like_stop_and_a_second_control_is_refused_while_stopping(tmp_path: Path, scm: FakeScm) -> None:
    service = Service(tmp_path, scm, stop_delay=0.5).start()
    scm.wait_for(RUNNING)
    assert scm.control(CONTROL_SHUTDOWN) == 0
    assert scm.control(CONTROL_STOP) == ERROR_SERVICE_CANNOT_ACCEPT_CTRL
    assert service.join() == 0
    assert scm.states() == [START_PENDING, RUNNING, STOP_PENDING, STOPPED]
    # Half a second of stopping against a 300 ms wait hint: the checkpoints advanced meanwhile.
    stop_pending = [s for s in scm.statuses if s.state == STOP_PENDING]
    assert [s.checkpoint for s in stop_pending] == list(range(1, len(stop_pending) + 1))
    assert len(stop_pending) >= 2


def test_a_slow_start_advances_its_checkpoints_within_the_wait_hint(tmp_path: Path, scm: FakeScm) -> None:
    service = Service(tmp_path, scm, start_delay=0.8).start()
    scm.wait_for(RUNNING)
    start_pending = [s for s in scm.statuses if s.state == START_PENDING]
    assert len(start_pending) >= 3
    assert [s.checkpoint for s in start_pending] == list(range(1, len(start_pending) + 1))
    assert scm.control(CONTROL_STOP) == 0
    assert service.join() == 0


def test_a_stuck_loop_stops_advancing_its_checkpoints(tmp_path: Path) -> None:
    """The checkpoints prove progress of the loop itself: a loop blocked past the wait hint shows as hung."""
    scm = FakeScm()
    host = WindowsServiceHost(scm.api(), start_wait_hint_ms=150, stop_wait_hint_ms=150)

    async def main(ready: object, stop: asyncio.Event) -> int:
        time.sleep(0.6)  # never yields to the loop
        return 0

    assert host.run(main, lambda: None) == 0
    assert any("no progress within the wait hint" in v for v in scm.violations)


def test_resume_power_events_reach_the_driver_on_the_loop(tmp_path: Path, scm: FakeScm) -> None:
    service = Service(tmp_path, scm).start()
    scm.wait_for(RUNNING)
    assert scm.control(CONTROL_POWEREVENT, PBT_APMSUSPEND) == 0
    assert scm.control(CONTROL_POWEREVENT, PBT_APMRESUMEAUTOMATIC) == 0
    assert scm.control(CONTROL_POWEREVENT, PBT_APMRESUMESUSPEND) == 0
    deadline = time.monotonic() + 5
    while len(service.drivers[0].resumed_on) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert service.drivers[0].resumed_on == ["ServiceMain", "ServiceMain"]
    assert scm.control(CONTROL_STOP) == 0
    assert service.join() == 0


def test_a_start_up_failure_stops_with_the_service_specific_code(tmp_path: Path, scm: FakeScm) -> None:
    service = Service(tmp_path, scm, config="[gateway]\nthis is not toml\n").start()
    assert service.join() == entry.EXIT_STARTUP_FAILED
    assert scm.states() == [START_PENDING, STOPPED]
    stopped = scm.statuses[-1]
    assert (stopped.win32_exit, stopped.specific_exit) == (ERROR_SERVICE_SPECIFIC_ERROR, entry.EXIT_STARTUP_FAILED)
    assert scm.control(CONTROL_STOP) == ERROR_SERVICE_CANNOT_ACCEPT_CTRL


def test_controls_are_refused_while_starting(tmp_path: Path, scm: FakeScm) -> None:
    service = Service(tmp_path, scm, start_delay=0.5).start()
    scm.wait_for(START_PENDING)
    assert scm.control(CONTROL_STOP) == ERROR_SERVICE_CANNOT_ACCEPT_CTRL
    scm.wait_for(RUNNING)
    assert scm.control(CONTROL_STOP) == 0
    assert service.join() == 0


def test_a_console_run_with_service_is_told_to_use_foreground(tmp_path: Path) -> None:
    scm = FakeScm(connected=False)
    host = WindowsServiceHost(scm.api())

    async def main(ready: object, stop: asyncio.Event) -> int:
        raise AssertionError("must not run")

    with pytest.raises(PlatformError, match="not started by the Service Control Manager") as caught:
        host.run(main, lambda: None)
    assert caught.value.hint is not None and "--foreground" in caught.value.hint
    assert scm.statuses == []


def test_service_elsewhere_than_windows_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main(["--config", str(tmp_path / "client.toml"), "--service"]) == entry.EXIT_STARTUP_FAILED
    assert "--service is for Windows' Service Control Manager (systemd and launchd run" in capsys.readouterr().err
