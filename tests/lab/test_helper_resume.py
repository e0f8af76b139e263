"""The real m6t-helper told of a resume by a stand-in logind on a private system bus (issue 12).

A sleep is simulated the way it hurts: the NAT forgets the mapping and gives the next datagrams another
public port (the gateway then drops the old address's traffic, draft 2.4), and logind announces
``PrepareForSleep(true)`` then ``PrepareForSleep(false)``.  With a 30 s keepalive interval the tunnel would
otherwise stay dead until the next keepalive and its retries; told of the resume, the helper checks the
binding at once and is back within a couple of seconds.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from m6t.client.api.client import HelperClient
from m6t.client.api.schema import Method
from m6t.lab import GW_WAN, NAT1
from m6t.lab.demo import DemoLab, client_config, demo_lab
from tests.platform.dbus_standins import Logind
from tests.platform.private_bus import DBUS_DAEMON, MISSING, private_bus

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[DemoLab, Logind]]:
    if DBUS_DAEMON is None:
        pytest.skip(MISSING)
    tmp_path.chmod(0o755)
    with private_bus(tmp_path) as bus:
        address = bus.address
        logind = Logind(address).start()
        old = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address  # the helper's environment is ours
        try:
            with demo_lab(start_helper=False, config=client_config(keepalive=30)) as demo:
                demo.start_helper()
                yield demo, logind
        finally:
            if old is None:
                os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
            else:
                os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = old
            logind.stop()


def status(demo: DemoLab) -> dict[str, Any]:
    with HelperClient(demo.socket_path, timeout=10) as client:
        result: dict[str, Any] = client.call(Method.STATUS)
        return result


def wait(demo: DemoLab, what: str, condition: Any, timeout: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            mine = [line for line in demo.helper_log.read_text().splitlines() if "pyroute2" not in line]
            raise AssertionError(f"{what}: not after {timeout} s: {status(demo)}\n" + "\n".join(mine[-40:]))
        time.sleep(0.05)
    return time.monotonic() - start


def up_and_listened_to(demo: DemoLab, announcer: str) -> str:
    """The tunnel up and connected, the OS's sleep announcements subscribed; the tunnel's address."""
    with HelperClient(demo.socket_path, timeout=10) as client:
        client.call(Method.UP)
    wait(demo, "connected", lambda: status(demo)["state"] == "connected", 20)
    wait(demo, f"{announcer} subscribed", lambda: "announced by the OS" in demo.helper_log.read_text(), 10)
    address: str = status(demo)["address"]
    return address


def back_at_once(demo: DemoLab, old: str, after: str) -> None:
    took = wait(
        demo,
        f"reconnected after the {after}",
        lambda: (s := status(demo))["state"] == "connected" and s["address"] not in (None, old),
        10,
    )
    # One keepalive, unanswered for the resume timeout (1 s), then a new address confirmed by the HA:
    # nowhere near the 30 s keepalive interval.
    print(f"recovered {took:.2f} s after the {after}")
    assert took < 3.0, f"took {took:.2f} s"
    log = demo.helper_log.read_text()
    assert "the system is going to sleep" in log and "resumed from sleep" in log


def test_resume_recovers_a_rebound_nat_at_once(env: tuple[DemoLab, Logind]) -> None:
    demo, logind = env
    old = up_and_listened_to(demo, "logind")
    logind.prepare_for_sleep(True)
    assert demo.lab.rebind_nat(NAT1, GW_WAN), "no NAT mapping toward the gateway to forget"
    logind.prepare_for_sleep(False)
    back_at_once(demo, old, "resume")


@pytest.fixture
def emulated_mac() -> Iterator[DemoLab]:
    with demo_lab(start_helper=False, config=client_config(keepalive=30), emulate="darwin") as demo:
        demo.start_helper()
        yield demo


def test_an_emulated_mac_waking_recovers_a_rebound_nat_at_once(emulated_mac: DemoLab) -> None:
    """The same story on the real darwin backend: IOKit's kIOMessageSystemWillSleep and
    kIOMessageSystemHasPoweredOn from the emulated Mac's power button (the runner's SIGUSR1 and SIGUSR2)."""
    demo = emulated_mac
    assert demo.helper is not None
    old = up_and_listened_to(demo, "IOKit")
    demo.helper.send_signal(getattr(signal, "SIGUSR1"))  # noqa: B009 - absent on Windows
    wait(demo, "asleep", lambda: "the system is going to sleep" in demo.helper_log.read_text(), 10)
    assert demo.lab.rebind_nat(NAT1, GW_WAN), "no NAT mapping toward the gateway to forget"
    demo.helper.send_signal(getattr(signal, "SIGUSR2"))  # noqa: B009
    back_at_once(demo, old, "wake")
