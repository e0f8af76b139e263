"""The real m6t-helper killed and restarted in the lab: nothing stale survives, the tunnel comes back.

Needs root (network namespaces, TUN); skipped with the lab's reason otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from m6t.client.api.client import HelperClient
from m6t.client.api.schema import Method
from m6t.client.journal import Entry, Journal
from m6t.lab import MN
from m6t.lab.demo import MN_INTERFACE, DemoLab, demo_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]


@pytest.fixture
def env() -> Iterator[DemoLab]:
    with demo_lab() as demo:
        yield demo


def status(env: DemoLab) -> dict[str, Any]:
    with HelperClient(env.socket_path, timeout=10) as client:
        result: dict[str, Any] = client.call(Method.STATUS)
        return result


def wait_connected(env: DemoLab, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current = status(env)
        if current["state"] == "connected" and current["address"]:
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"not connected after {timeout} s: {current}\n{env.logs()}")
        time.sleep(0.1)


def ula_addresses(env: DemoLab) -> list[str]:
    out = env.lab.run(MN, "ip", "-6", "-j", "address", "show").stdout
    return [
        info["local"]
        for link in json.loads(out)
        for info in link.get("addr_info", [])
        if info["local"].startswith("fd6d:")
    ]


def tunnel_routes(env: DemoLab) -> list[str]:
    out = env.lab.run(MN, "ip", "-6", "route", "show", "table", "all").stdout
    return [
        line
        for line in out.splitlines()
        if MN_INTERFACE in line and not line.startswith(("fe80", "local", "multicast"))
    ]


def test_kill_9_leaves_nothing_and_the_tunnel_comes_back(env: DemoLab) -> None:
    with HelperClient(env.socket_path) as client:
        client.call(Method.UP)
    first = wait_connected(env)
    assert env.ping_ha(1)
    assert first["address"] in ula_addresses(env) and tunnel_routes(env)
    journal = Journal(env.state_dir).entries
    assert Entry("interface", MN_INTERFACE) in journal
    assert any(e.kind == "address" and e.address == first["address"] for e in journal)

    env.stop_helper(kill=True)
    # The dead helper's interface went with its file descriptor: no address, route or TUN is left.
    deadline = time.monotonic() + 5
    while env.mn_link_exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not env.mn_link_exists()
    assert ula_addresses(env) == [] and tunnel_routes(env) == []

    env.start_helper()
    again = wait_connected(env)
    assert again["wanted"] == "up"
    assert again["address"] != first["address"], "a restart must draw a new suffix"
    assert ula_addresses(env) == [again["address"]]
    assert env.ping_ha(1), env.logs()
    # The journal now describes the new run only.
    assert not any(e.kind == "address" and e.address == first["address"] for e in Journal(env.state_dir).entries)


def test_leftovers_on_a_surviving_interface_are_removed_first(env: DemoLab) -> None:
    """What a run leaves on an interface that outlives it (a persistent TUN here; Wintun on Windows): removed first."""
    env.stop_helper()
    env.lab.run(MN, "ip", "tuntap", "add", "dev", "m6tleft0", "mode", "tun")
    env.lab.run(MN, "ip", "link", "set", "m6tleft0", "up")
    env.lab.run(MN, "ip", "-6", "address", "add", "fd6d:3674:a1b2:0:1:dead:beef:1/128", "dev", "m6tleft0", "nodad")
    env.lab.run(MN, "ip", "-6", "route", "add", "fd00:ab::/64", "dev", "m6tleft0", "metric", "77")
    journal = Journal(env.state_dir)
    journal.record(Entry("address", "m6tleft0", "fd6d:3674:a1b2:0:1:dead:beef:1", 128))
    journal.record(Entry("route", "m6tleft0", "fd00:ab::/64", 0, 77))
    env.start_helper()
    out = env.lab.run(MN, "ip", "-6", "-o", "address", "show", "dev", "m6tleft0").stdout
    assert "dead:beef" not in out
    assert "fd00:ab::/64" not in env.lab.run(MN, "ip", "-6", "route", "show", "dev", "m6tleft0").stdout
    with HelperClient(env.socket_path) as client:
        messages = [e["message"] for e in client.call(Method.LOG, {"limit": 100})["entries"]]
    assert any("removed leftover" in m and "dead:beef" in m for m in messages), messages
    assert any("removed leftover" in m and "fd00:ab::/64" in m for m in messages), messages


def test_sigterm_takes_the_tunnel_down_and_restart_restores_it(env: DemoLab) -> None:
    with HelperClient(env.socket_path) as client:
        client.call(Method.UP)
    wait_connected(env)
    assert env.stop_helper() == 0
    assert not env.mn_link_exists() and ula_addresses(env) == []
    assert Journal(env.state_dir).entries == []
    env.start_helper()
    wait_connected(env)
    assert env.ping_ha(1)
    with HelperClient(env.socket_path) as client:
        client.call(Method.DOWN)
    assert env.stop_helper() == 0
    env.start_helper()
    time.sleep(1.0)
    assert status(env)["state"] == "disconnected" and ula_addresses(env) == []


def test_daemon_mode_returns_once_ready_and_reports_bad_config(env: DemoLab) -> None:
    env.stop_helper()
    argv = [
        sys.executable,
        "-m",
        "m6t.client.helper",
        "--config",
        str(env.config_path),
        "--socket",
        env.socket_path,
        "--state-dir",
        str(env.state_dir),
    ]
    started = env.lab.run(MN, *argv, timeout=30)
    assert started.returncode == 0 and started.stderr == ""
    pid = status(env)["helper"]["pid"]
    try:
        # A second helper on the same socket is refused with one clear line.
        second = env.lab.run(MN, *argv, check=False, timeout=30)
        assert second.returncode == 1
        assert second.stderr == f"m6t-helper: another m6t-helper is already listening on {env.socket_path}\n"
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while os.path.exists(env.socket_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(env.socket_path)
    env.config_path.write_text(env.config_path.read_text().replace("keepalive_interval = 5", "keepalive_interval = 0"))
    bad = env.lab.run(MN, *argv, check=False, timeout=30)
    assert bad.returncode == 1
    assert bad.stderr.startswith("m6t-helper: invalid configuration:\n")
    assert "tunnel.keepalive_interval" in bad.stderr
