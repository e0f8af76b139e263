"""``m6t`` commands against the helper service (fake driver, real socket): human and --json output."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from m6t import cli as program
from m6t.client import cli
from m6t.client import events as ev
from m6t.client.api import host
from m6t.client.vocabulary import State
from m6t.platform import hints
from m6t.platform.family import OsFamily
from tests.unit.test_helper_fakes import NOBODY, RunningHelper, helper, is_root, run_as

__all__ = ["helper"]


def run(helper: RunningHelper | None, *argv: str, socket: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    path = socket or (helper.socket_path if helper is not None else "/nonexistent/helper.sock")
    code = cli.main(["--socket", path, *argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def run_json(helper: RunningHelper, *argv: str) -> Any:
    code, out, err = run(helper, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_status_human(helper: RunningHelper) -> None:
    run(helper, "up")
    code, out, err = run(helper, "status")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "state       connected (wanted up)"
    assert "address     fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc on m6tx0" in lines
    assert "gateway     198.51.100.2:3544" in lines
    assert "mtu         1472" in lines
    assert any(line.startswith("keepalive   rtt 3.1 ms, answered 4 s ago (every 30 s)") for line in lines)
    assert "attachment  192.0.2.10 on lan1 via 192.0.2.1" in lines
    assert "traffic     3 packets out, 2 in" in lines
    assert "changes     1 new address, last: attached" in lines


def test_status_json(helper: RunningHelper) -> None:
    status = run_json(helper, "status")
    for key in ("state", "address", "gateway", "mtu", "keepalive", "attachment", "counters"):
        assert key in status
    assert status["state"] == "disconnected" and status["address"] is None


def test_status_disconnected_human(helper: RunningHelper) -> None:
    code, out, _ = run(helper, "status")
    assert code == 0
    assert "state       disconnected (wanted down)" in out
    assert "keepalive   no answer yet (every 30 s)" in out
    assert "attachment  none (no IPv4 path to the gateway)" in out


def test_up_down(helper: RunningHelper) -> None:
    code, out, _ = run(helper, "up")
    assert code == 0 and out == "tunnel wanted up; state connected, address fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc\n"
    code, out, _ = run(helper, "down")
    assert code == 0 and out == "tunnel wanted down; state disconnected\n"
    assert run_json(helper, "up")["wanted"] == "up"
    assert run_json(helper, "down")["wanted"] == "down"


def test_up_wait(helper: RunningHelper) -> None:
    code, out, _ = run(helper, "up", "--wait", "5")
    assert code == 0 and "state connected" in out


def test_up_wait_times_out(helper: RunningHelper) -> None:
    async def never() -> None:
        return None

    helper.driver.up = never  # type: ignore[method-assign]
    code, _, err = run(helper, "up", "--wait", "0.3")
    assert code == 1 and err == "m6t: the tunnel is not connected after 0.3 s (state: disconnected)\n"


def test_up_wait_without_a_probe_says_what_confirms_the_tunnel(helper: RunningHelper) -> None:
    driver = helper.driver

    async def installed_but_unconfirmed() -> None:
        driver._set_state(State.CONNECTING, "attached, not yet confirmed")

    driver.up = installed_but_unconfirmed  # type: ignore[method-assign]
    code, _, err = run(helper, "up", "--wait", "0.3")
    lines = err.splitlines()
    assert code == 1 and lines[0] == "m6t: the tunnel is not connected after 0.3 s (state: connecting)"
    assert "without tunnel.probe" in lines[1] and "m6t config set tunnel.probe ADDRESS" in lines[1]


def test_config_get(helper: RunningHelper) -> None:
    code, out, _ = run(helper, "config", "get", "tunnel.mtu")
    assert (code, out) == (0, "1472\n")
    code, out, _ = run(helper, "config", "get", "gateway.address")
    assert (code, out) == (0, "198.51.100.2\n")
    code, out, _ = run(helper, "config", "get", "gateway.ports")
    assert (code, out) == (0, "[3544]\n")
    code, out, _ = run(helper, "config", "get")
    assert code == 0 and out.startswith(f"# {helper.config_path}\n[gateway]\n")
    assert run_json(helper, "config", "get", "tunnel.mtu") == {"key": "tunnel.mtu", "value": 1472}
    assert run_json(helper, "config", "get")["tunnel"]["interface"] == "m6tx0"


def test_config_get_unknown_key(helper: RunningHelper) -> None:
    code, out, err = run(helper, "config", "get", "tunnel.mtuu")
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == "m6t: tunnel.mtuu: unknown setting"


def test_config_set(helper: RunningHelper) -> None:
    code, out, _ = run(helper, "config", "set", "tunnel.mtu", "1400")
    assert (code, out) == (0, "tunnel.mtu = 1400 (saved and applied)\n")
    code, out, _ = run(helper, "config", "set", "tunnel.mtu", "1400")
    assert (code, out) == (0, "tunnel.mtu = 1400 (unchanged)\n")
    code, out, _ = run(helper, "config", "set", "gateway.ports", "3544,4500")
    assert (code, out) == (0, "gateway.ports = [3544, 4500] (saved and applied)\n")
    result = run_json(helper, "config", "set", "routes.metric", "77")
    assert result["changed"] == ["routes.metric"] and result["applied"] is True


def test_config_set_invalid(helper: RunningHelper) -> None:
    code, out, err = run(helper, "config", "set", "tunnel.mtu", "900")
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == "m6t: The configuration is invalid; nothing was changed."
    assert lines[1].startswith("m6t: tunnel.mtu: ") and "1280" in lines[1]
    code, _, err = run(helper, "config", "set", "tunnel.mtuu", "1400")
    assert code == 1 and "tunnel.mtuu: unknown setting; did you mean tunnel.mtu?" in err


def test_log(helper: RunningHelper) -> None:
    run(helper, "up")
    code, out, _ = run(helper, "log")
    assert code == 0
    assert any("INFO" in line and "disconnected → connecting" in line for line in out.splitlines())
    page = run_json(helper, "log", "--limit", "2")
    assert len(page["entries"]) == 2 and "next" in page


def test_watch(helper: RunningHelper) -> None:
    def act() -> None:
        time.sleep(0.3)
        cli.main(["--socket", helper.socket_path, "up"], stdout=io.StringIO(), stderr=io.StringIO())
        driver = helper.driver
        helper.call_soon(lambda: driver.emit(ev.MtuChanged(1472, 1400, 1472, "icmp", 1428)))

    thread = threading.Thread(target=act)
    thread.start()
    code, out, _ = run(helper, "watch", "--count", "7", "--duration", "5")
    thread.join()
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"watching {helper.socket_path} (Ctrl-C to stop); state disconnected"
    text = "\n".join(lines[1:])
    assert "wanted      tunnel wanted up" in text
    assert "state       disconnected → connecting" in text
    assert "attachment  192.0.2.10 on lan1 via 192.0.2.1" in text
    assert "address     fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc [attached]" in text
    assert "keepalive   answered in 3.1 ms" in text
    assert "mtu         1472 → 1400 (icmp)" in text


def test_watch_json(helper: RunningHelper) -> None:
    def act() -> None:
        time.sleep(0.3)
        cli.main(["--socket", helper.socket_path, "up"], stdout=io.StringIO(), stderr=io.StringIO())

    thread = threading.Thread(target=act)
    thread.start()
    code, out, _ = run(helper, "watch", "--json", "--events", "state", "--count", "2", "--duration", "5")
    thread.join()
    assert code == 0
    first, *events = out.split("\n}\n", 1)
    assert json.loads(first + "}")["status"]["state"] == "disconnected"
    parsed = [json.loads(line) for line in events[0].splitlines()]
    assert [e["data"]["state"] for e in parsed] == ["connecting", "connected"]


def test_diag(helper: RunningHelper, tmp_path: Path) -> None:
    target = tmp_path / "bundle.json"
    code, out, _ = run(helper, "diag", "--out", str(target))
    assert code == 0
    assert out.splitlines()[0] == f"diagnostics written to {target}"
    assert out.splitlines()[1].startswith(f"(the helper kept a copy in {helper.state_dir}/diagnostics/")
    assert json.loads(target.read_text())["config"]["tunnel"]["mtu"] == 1472
    result = run_json(helper, "diag", "--out", str(tmp_path / "b2.json"))
    assert result["out"] == str(tmp_path / "b2.json") and result["helper_copy"]


def test_diag_unwritable(helper: RunningHelper, tmp_path: Path) -> None:
    code, _, err = run(helper, "diag", "--out", str(tmp_path / "no" / "such" / "dir.json"))
    assert code == 1 and err.startswith("m6t: cannot write ")


def test_probe_mtu(helper: RunningHelper) -> None:
    run(helper, "up")
    code, out, _ = run(helper, "probe-mtu")
    assert (code, out) == (0, "path MTU through the tunnel: 1400 (interface MTU 1472)\n")
    assert run_json(helper, "probe-mtu")["mtu"] == 1400


def test_unreachable_helper() -> None:
    code, out, err = run(None, "status", socket="/run/m6t-test-nowhere/helper.sock")
    assert code == cli.EXIT_UNREACHABLE and out == ""
    assert err == (
        "m6t: cannot reach the helper at /run/m6t-test-nowhere/helper.sock: "
        "is m6t-helper running? (systemctl start m6t-helper)\n"
    )


def test_the_default_address_and_the_hint_are_the_platforms(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows: the pipe by default, and the service manager's command, never systemctl."""
    monkeypatch.delenv(cli.SOCKET_ENV, raising=False)
    monkeypatch.setattr(host, "default_control_address", lambda: "/run/m6t-test-nowhere/pipe")
    monkeypatch.setattr(hints, "os_family", lambda: OsFamily.WINDOWS)
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["status"], stdout=out, stderr=err) == cli.EXIT_UNREACHABLE
    assert err.getvalue() == (
        "m6t: cannot reach the helper at /run/m6t-test-nowhere/pipe: is m6t-helper running? (sc start m6t-helper)\n"
    )


def test_usage_errors() -> None:
    assert cli.main(["config", "set", "tunnel.mtu"], stdout=io.StringIO(), stderr=io.StringIO()) == 2
    assert cli.main([], stdout=io.StringIO(), stderr=io.StringIO()) == 2


def test_socket_from_environment(helper: RunningHelper, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.SOCKET_ENV, helper.socket_path)
    out = io.StringIO()
    assert cli.main(["status", "--json"], stdout=out, stderr=io.StringIO()) == 0
    assert json.loads(out.getvalue())["state"] == "disconnected"


def test_read_only_user_is_refused_with_exit_4(tmp_path: Path) -> None:
    if not is_root():
        pytest.skip("needs root to fork a child that becomes nobody")
    world = Path(tempfile.mkdtemp(prefix="m6t-cli-"))
    world.chmod(0o755)
    running = RunningHelper(world).start()

    def child() -> bytes:
        results = []
        for argv in (["status"], ["up"], ["config", "set", "tunnel.mtu", "1400"]):
            out, err = io.StringIO(), io.StringIO()
            code = cli.main(["--socket", running.socket_path, *argv], stdout=out, stderr=err)
            results.append([code, out.getvalue(), err.getvalue()])
        return json.dumps(results).encode()

    try:
        results = json.loads(run_as(NOBODY, NOBODY, [], child))
    finally:
        running.close()
        shutil.rmtree(world, ignore_errors=True)
    (status_code, status_out, _), (up_code, _, up_err), (set_code, _, set_err) = results
    assert status_code == 0 and "access      read-only" in status_out
    assert up_code == cli.EXIT_FORBIDDEN
    assert up_err == (
        "m6t: Only root and members of the group 'm6t' may bring the tunnel up; you can still read the status. "
        "(ask an administrator to run: usermod -aG m6t $USER, then log in again)\n"
    )
    assert set_code == cli.EXIT_FORBIDDEN and "may change the configuration" in set_err


# ----------------------------------------------------------------------------- the program, one floor up


def test_the_program_adds_the_lab_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    from m6t.lab import demo

    calls: list[tuple[bool, object]] = []

    def fake_run(*, keep: bool, out: object) -> int:
        calls.append((keep, out))
        return 7

    monkeypatch.setattr(demo, "run", fake_run)
    out = io.StringIO()
    assert program.main(["lab", "demo", "--keep"], stdout=out, stderr=io.StringIO()) == 7
    assert calls == [(True, out)], "runs without a helper, writing where the command writes"
    assert "lab" in cli.build_parser([program.add_lab_commands]).format_help()


def test_the_lab_demo_passes_the_emulated_os_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from m6t.lab import demo

    calls: list[str | None] = []

    def fake_run(*, keep: bool, out: object, emulate: str | None = None) -> int:
        calls.append(emulate)
        return 0

    monkeypatch.setattr(demo, "run", fake_run)
    assert program.main(["lab", "demo", "--emulate", "windows"], stdout=io.StringIO(), stderr=io.StringIO()) == 0
    assert calls == ["windows"]


def test_the_client_alone_has_no_lab(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lab", "demo"], stdout=io.StringIO(), stderr=io.StringIO()) == cli.EXIT_USAGE
    assert "invalid choice: 'lab'" in capsys.readouterr().err
    assert " lab " not in cli.build_parser().format_help()


def test_the_program_keeps_the_client_commands(helper: RunningHelper) -> None:
    out = io.StringIO()
    assert program.main(["--socket", helper.socket_path, "status", "--json"], stdout=out, stderr=io.StringIO()) == 0
    assert json.loads(out.getvalue())["state"] == "disconnected"


def test_status_and_events_name_the_gateway_in_use() -> None:
    status = {"state": "connected", "gateway": "198.51.100.2:3544", "gateway_name": "gw.example.org"}
    assert "gateway     198.51.100.2:3544 (gw.example.org)" in cli.format_status(status)
    assert "gateway     198.51.100.2:3544" in cli.format_status({**status, "gateway_name": None})
    event = {
        "event": "address",
        "time": 0,
        "data": {"address": "fd6d::1", "reason": "probe_unanswered", "gateway": "198.51.100.3:3544"},
    }
    assert cli.format_event(event).endswith("fd6d::1 [probe_unanswered] via 198.51.100.3:3544")


def _tunnel(interface: str, uplink: str | None, address: str | None, *, primary: bool) -> dict[str, object]:
    return {
        "interface": interface,
        "uplink": uplink,
        "primary": primary,
        "state": "connected" if address else "waiting_for_network",
        "detail": "",
        "address": address,
        "gateway": "198.51.100.2:3544",
        "attachment": None,
        "mtu": 1472,
        "rtt_ms": 3.25 if address else None,
    }


def test_status_shows_every_tunnel_of_several_uplinks() -> None:
    tunnels = [
        _tunnel("m6t0", "wlan0", "fd6d::1", primary=True),
        _tunnel("m6t1", "usb0", None, primary=False),
    ]
    lines = cli.format_status({"state": "connected", "address": "fd6d::1", "interface": "m6t0", "tunnels": tunnels})
    rows = [line for line in lines if line.startswith("tunnel ")]
    assert rows == [
        "tunnel      m6t0 via wlan0: connected, fd6d::1, rtt 3.2 ms, mtu 1472, primary",
        "tunnel      m6t1 via usb0: waiting_for_network, -, mtu 1472",
    ]
    # One tunnel through the preferred path ("best"): the rows above say it all.
    single = [_tunnel("m6t0", None, "fd6d::1", primary=True)]
    assert not [line for line in cli.format_status({"state": "connected", "tunnels": single}) if "tunnel " in line]
    event = {"event": "tunnels", "time": 0, "data": {"tunnels": tunnels[1:]}}
    assert cli.format_event(event).endswith("tunnels     m6t1 via usb0: waiting_for_network, -, mtu 1472")
    assert cli.format_event({"event": "tunnels", "time": 0, "data": {"tunnels": []}}).endswith("no tunnel")
