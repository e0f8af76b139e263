"""The real m6t-helper in the standard lab (real driver, Linux backend, gateway, NATs), over its socket:
every request and event, read-only users, garbage, many subscribers, configuration changes.

Needs root (network namespaces, TUN); skipped with the lab's reason otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m6t.client.api.client import HelperClient, RequestFailed
from m6t.client.api.schema import ErrorCode, EventKind, Method
from m6t.lab import HA
from m6t.lab.demo import MN_INTERFACE, DemoLab, demo_lab
from tests.lab.commands import run_module, tree_env

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def env() -> Iterator[DemoLab]:
    with demo_lab() as demo:
        yield demo


def call(env: DemoLab, method: Method, params: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    with HelperClient(env.socket_path, timeout=timeout) as client:
        return client.call(method, params)


def wait_connected(env: DemoLab, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = call(env, Method.STATUS)
        if status["state"] == "connected" and status["address"]:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"not connected after {timeout} s: {status}\n{env.logs()}")
        time.sleep(0.1)


def collect(client: HelperClient, kinds: set[str], seconds: float) -> dict[str, list[dict[str, Any]]]:
    seen: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not kinds <= seen.keys():
        event = client.next_event(0.2)
        if event is not None:
            seen.setdefault(event["event"], []).append(dict(event["data"]))
    return seen


def test_up_events_ping_down(env: DemoLab) -> None:
    with HelperClient(env.socket_path) as watcher:
        assert watcher.subscribe()["status"]["state"] == "disconnected"
        up = call(env, Method.UP)
        assert up["wanted"] == "up"
        status = wait_connected(env)
        assert status["gateway"] == "198.51.100.2:3544"
        assert status["attachment"]["local_ipv4"] == "192.0.2.10"
        assert status["mtu"] == 1472
        assert status["address"] in env.mn_addresses()
        assert env.ping_ha(2), env.logs()
        seen = collect(watcher, {"state", "attachment", "address", "wanted"}, 5)
        assert {"state", "attachment", "address", "wanted"} <= seen.keys(), seen.keys()
        assert seen["address"][-1]["address"] == status["address"]
        # A keepalive (interval 5 s in the demo config) and a counters update come on their own.
        later = collect(watcher, {"keepalive", "counters"}, 15)
        assert "keepalive" in later and later["keepalive"][0]["rtt_ms"] > 0, later.keys()
        assert "counters" in later, later.keys()
        status = call(env, Method.STATUS)
        assert status["keepalive"]["rtt_ms"] is not None and status["keepalive"]["age_s"] is not None
        down = call(env, Method.DOWN)
        assert down["wanted"] == "down"
        # The interface stays (the driver keeps it for the next `up`), bare.
        assert call(env, Method.STATUS)["state"] == "disconnected"
        assert [a for a in env.mn_addresses() if not a.startswith("fe80")] == []
        assert [r for r in env.mn_routes() if not r.startswith("fe80")] == []


def test_error_event_when_the_gateway_port_is_blocked(env: DemoLab) -> None:
    call(env, Method.UP)
    wait_connected(env)
    with HelperClient(env.socket_path) as watcher:
        watcher.subscribe(["error", "state"])
        env.lab.block_udp_port("nat1", 3544)
        try:
            seen = collect(watcher, {"error"}, 40)
        finally:
            env.lab.unblock_udp_port("nat1", 3544)
    assert "error" in seen, f"no error event; states: {seen.get('state')}\n{env.logs()}"
    error = seen["error"][0]
    assert error["code"] in {c.value for c in ErrorCode} and error["message"].endswith(".")
    wait_connected(env, 40)
    call(env, Method.DOWN)


def test_config_get_set_applied_live(env: DemoLab) -> None:
    call(env, Method.UP)
    wait_connected(env)
    assert call(env, Method.CONFIG_GET, {"key": "tunnel.mtu"})["value"] == 1472
    with HelperClient(env.socket_path) as watcher:
        watcher.subscribe(["config", "mtu"])
        result = call(env, Method.CONFIG_SET, {"changes": {"tunnel.mtu": 1400}})
        assert result["changed"] == ["tunnel.mtu"] and result["applied"]
        seen = collect(watcher, {"config", "mtu"}, 5)
    assert seen["config"][0] == {"changed": ["tunnel.mtu"]}
    assert "mtu" in seen and seen["mtu"][-1]["mtu"] == 1400
    link = env.lab.run("mn", "ip", "-j", "link", "show", "dev", MN_INTERFACE).stdout
    assert json.loads(link)[0]["mtu"] == 1400
    assert "mtu = 1400" in env.config_path.read_text()
    assert env.ping_ha(1)
    # An invalid change is refused as a whole and leaves everything as it was.
    before = env.config_path.read_bytes()
    with pytest.raises(RequestFailed) as caught:
        call(env, Method.CONFIG_SET, {"changes": {"tunnel.mtu": 1500, "routes.metric": -1}})
    assert caught.value.code == ErrorCode.CONFIG_INVALID
    assert [p["key"] for p in caught.value.problems] == ["routes.metric"]
    assert env.config_path.read_bytes() == before
    assert call(env, Method.STATUS)["mtu"] == 1400
    call(env, Method.CONFIG_SET, {"changes": {"tunnel.mtu": 1472}})
    call(env, Method.DOWN)


def test_log_diagnostics_probe(env: DemoLab) -> None:
    call(env, Method.UP)
    wait_connected(env)
    probe = call(env, Method.MTU_PROBE, timeout=60)
    assert 1280 <= probe["mtu"] <= 1472 and probe["previous"] == 1472
    page = call(env, Method.LOG, {"limit": 500})
    assert any("connected" in entry["message"] for entry in page["entries"])
    result = call(env, Method.DIAGNOSTICS, timeout=60)
    bundle = result["bundle"]
    assert bundle["status"]["state"] == "connected"
    assert any(i["name"] == MN_INTERFACE for i in bundle["interfaces"])
    assert bundle["routes"], "no route snapshot"
    assert Path(result["path"]).exists()
    call(env, Method.DOWN)


def _cli_as_nobody(env: DemoLab, *argv: str) -> subprocess.CompletedProcess[str]:
    """The real `m6t` CLI as uid/gid 65534 with no supplementary groups."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    return subprocess.run(
        [
            setpriv,
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "m6t.cli",
            "--socket",
            env.socket_path,
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=tree_env(),
        cwd="/",
        check=False,
    )


def test_read_only_user(env: DemoLab) -> None:
    status = _cli_as_nobody(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["access"] == "read-only"
    assert _cli_as_nobody(env, "config", "get", "tunnel.mtu").stdout == "1472\n"
    for argv in (["up"], ["down"], ["config", "set", "tunnel.mtu", "1400"], ["probe-mtu"]):
        refused = _cli_as_nobody(env, *argv)
        assert refused.returncode == 4, (argv, refused.stdout, refused.stderr)
        assert refused.stderr.startswith("m6t: Only root and members of the group 'm6t' may ")
        assert refused.stderr.count("\n") == 1
    assert call(env, Method.STATUS)["wanted"] == "down"
    assert call(env, Method.CONFIG_GET, {"key": "tunnel.mtu"})["value"] == 1472


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=4))
def test_garbage_never_stalls_the_real_helper(env: DemoLab, chunks: list[bytes]) -> None:
    with HelperClient(env.socket_path, timeout=5) as bad:
        bad.send_raw(b"".join(chunks) + b"\n")
        with HelperClient(env.socket_path, timeout=5) as good:
            assert good.call(Method.STATUS)["helper"]["pid"] > 0


def test_oversized_line_and_hundred_subscribers(env: DemoLab) -> None:
    with HelperClient(env.socket_path, timeout=5) as big:
        big.send_raw(b"z" * (200 * 1024) + b"\n")
        reply = big.read_message()
        assert reply["error"]["code"] == ErrorCode.LINE_TOO_LONG
        assert big.call(Method.STATUS)["state"]
    clients = [HelperClient(env.socket_path, timeout=10).connect() for _ in range(100)]
    try:
        for client in clients:
            client.subscribe([EventKind.WANTED.value])
        call(env, Method.UP)
        for client in clients:
            event = client.next_event(10)
            assert event is not None and event["data"] == {"wanted": "up"}
    finally:
        for client in clients:
            client.close()
    wait_connected(env)
    assert env.ping_ha(1)
    call(env, Method.DOWN)


def test_cli_against_the_real_helper(env: DemoLab) -> None:
    def m6t(*argv: str) -> subprocess.CompletedProcess[str]:
        return run_module("m6t.cli", "--socket", env.socket_path, *argv, timeout=60)

    up = m6t("up", "--wait", "20")
    assert up.returncode == 0, up.stderr
    assert up.stdout.startswith("tunnel wanted up; state connected, address fd6d:3674:a1b2:0:1:")
    status = m6t("status")
    assert status.returncode == 0 and status.stdout.startswith("state       connected (wanted up)")
    assert f"on {MN_INTERFACE}" in status.stdout and "gateway     198.51.100.2:3544" in status.stdout
    assert json.loads(m6t("status", "--json").stdout)["state"] == "connected"
    watch = m6t("watch", "--events", "keepalive", "--count", "1", "--duration", "15")
    assert watch.returncode == 0 and "keepalive   answered in" in watch.stdout
    probe = m6t("probe-mtu")
    assert probe.returncode == 0 and probe.stdout.startswith("path MTU through the tunnel: ")
    down = m6t("down")
    assert down.returncode == 0 and down.stdout == "tunnel wanted down; state disconnected\n"
    assert HA  # the HA answered through the tunnel in the other tests


def test_unresolvable_gateway_is_reported_never_fatal(env: DemoLab) -> None:
    call(env, Method.CONFIG_SET, {"changes": {"gateway.address": "gateway.m6t.invalid"}})
    try:
        call(env, Method.UP)
        deadline = time.monotonic() + 20
        status = call(env, Method.STATUS)
        while not any(p["code"] == ErrorCode.GATEWAY_UNRESOLVABLE for p in status["problems"]):
            assert time.monotonic() < deadline, f"no 3004 problem: {status}\n{env.logs()}"
            time.sleep(0.2)
            status = call(env, Method.STATUS)
        assert status["state"] == "waiting_for_network"
        assert env.helper is not None and env.helper.poll() is None
    finally:
        call(env, Method.CONFIG_SET, {"changes": {"gateway.address": "198.51.100.2"}})
    status = wait_connected(env, 30)
    assert not any(p["code"] == ErrorCode.GATEWAY_UNRESOLVABLE for p in status["problems"])
    call(env, Method.DOWN)
