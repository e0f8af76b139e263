"""The helper service with a fake driver: start-up, persistence, the undo journal, checks, log,
diagnostics and MTU probe (configuration changes: ``test_helper_transaction``)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from m6t.client import events as ev
from m6t.client.api.client import HelperClient
from m6t.client.api.schema import ErrorCode, Method
from m6t.client.helper.persistence import WishFile
from m6t.client.helper.service import LogLine, StartupError, describe
from m6t.client.journal import Entry, Journal
from m6t.client.vocabulary import State
from m6t.platform.base import PlatformError, PlatformErrorCode
from m6t.protocol.values import Attachment, Route
from tests.unit.test_helper_fakes import (
    NOBODY,
    FakeBackend,
    RunningHelper,
    call,
    config_for_this_user,
    failure,
    helper,
    is_root,
    run_as,
)

__all__ = ["helper"]


def test_bad_config_file_stops_startup(tmp_path: Path) -> None:
    (tmp_path / "client.toml").write_text(config_for_this_user().replace("mtu = 1472", "mtu = 12"))
    running = RunningHelper(tmp_path)
    try:
        with pytest.raises(StartupError, match=r"tunnel\.mtu"):
            running.start()
    finally:
        running.close()


# ------------------------------------------------------------------------------ up/down, persistence


def test_up_down_and_wish_survives_restart(tmp_path: Path) -> None:
    running = RunningHelper(tmp_path).start()
    try:
        status = call(running, Method.UP)
        assert status["state"] == "connected" and status["wanted"] == "up"
        assert status["address"] == "fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc"
        assert status["keepalive"]["rtt_ms"] == 3.1 and status["keepalive"]["age_s"] == pytest.approx(4, abs=1)
        assert status["attachment"]["interface"] == "lan1"
        assert [r["reason"] for r in status["regenerations"]] == ["attached"]
        assert status["since"] == 2.0
        assert json.loads((tmp_path / "state" / "state.json").read_text())["wanted"] == "up"
        running.stop()
        # A clean stop takes the tunnel down but keeps the wish.
        assert not running.backend.interfaces and not running.backend.addresses
        running.start()
        assert call(running, Method.STATUS)["state"] == "connected"
        assert call(running, Method.DOWN)["wanted"] == "down"
        running.stop()
        running.start()
        assert call(running, Method.STATUS)["state"] == "disconnected"
    finally:
        running.close()


def test_autoconnect_applies_only_without_a_recorded_wish(tmp_path: Path) -> None:
    (tmp_path / "client.toml").write_text(config_for_this_user().replace("autoconnect = false", "autoconnect = true"))
    running = RunningHelper(tmp_path).start()
    try:
        assert call(running, Method.STATUS)["wanted"] == "up"
        call(running, Method.DOWN)
        running.stop()
        running.start()
        assert call(running, Method.STATUS)["wanted"] == "down"
    finally:
        running.close()


def test_up_failure_is_a_numbered_error(helper: RunningHelper) -> None:
    helper.driver.fail_up = PlatformError("cannot open /dev/net/tun", hint="modprobe tun")
    error = failure(helper, Method.UP)
    assert error.code == ErrorCode.PLATFORM_ERROR and error.hint == "modprobe tun"
    assert any(p["code"] == ErrorCode.PLATFORM_ERROR for p in call(helper, Method.STATUS)["problems"])


# ------------------------------------------------------------------------------------------ journal


def test_leftovers_of_a_dead_run_are_removed_first(tmp_path: Path) -> None:
    backend = FakeBackend()
    # What a run killed with -9 would leave: its records, and (with a persistent device) the objects.
    backend.interfaces.add("m6tx0")
    backend.addresses.add(("m6tx0", "fd6d:3674:a1b2:0:1:1:2:3", 128))
    backend.routes.add(("m6tx0", "::/0", 1029))
    state = tmp_path / "state"
    state.mkdir()
    journal = Journal(state)
    journal.record(Entry("address", "m6tx0", "fd6d:3674:a1b2:0:1:1:2:3", 128))
    journal.record(Entry("route", "m6tx0", "::/0", 0, 1029))
    journal.record(Entry("address", "gone0", "fd6d:3674:a1b2:0:1:4:5:6", 128))
    running = RunningHelper(tmp_path, backend=backend).start()
    try:
        assert backend.calls[:2] == ["remove_route m6tx0 ::/0", "remove_address m6tx0 fd6d:3674:a1b2:0:1:1:2:3"]
        assert not backend.addresses and not backend.routes
        assert Journal(state).entries == []
        messages = [e["message"] for e in call(running, Method.LOG)["entries"]]
        assert any("removed leftover" in m and "route ::/0" in m for m in messages)
        status = call(running, Method.STATUS)
        assert any(p["code"] == ErrorCode.INTERFACE_BUSY for p in status["problems"])
    finally:
        running.close()


def test_journal_follows_the_driver(helper: RunningHelper) -> None:
    call(helper, Method.UP)
    entries = Journal(helper.state_dir).entries
    assert Entry("interface", "m6tx0") in entries
    assert Entry("address", "m6tx0", "fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc", 128) in entries
    assert Entry("route", "m6tx0", "::/0", 0, 1029) in entries
    call(helper, Method.DOWN)
    assert Journal(helper.state_dir).entries == []


def test_a_source_specific_route_is_journaled_with_its_source(tmp_path: Path) -> None:
    own = Route(IPv6Network("::/0"), 1030, IPv6Network("fd6d:3674:a1b2:0:1:1:2:3/128"))
    entry = Entry.route("m6t1", own)
    assert entry.as_route() == own and "from fd6d:3674:a1b2:0:1:1:2:3/128" in entry.describe()
    journal = Journal(tmp_path)
    journal.record(entry)
    journal.record(Entry.route("m6t1", Route(IPv6Network("::/0"), 1030)))
    # Read back as written, the plain route without a "source" key (as journals were before it).
    assert Journal(tmp_path).entries == [entry, Entry("route", "m6t1", "::/0", 0, 1030)]
    assert "source" not in json.loads((tmp_path / "journal.json").read_text())["entries"][1]


def test_unreadable_journal_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "journal.json").write_text("{broken")
    assert Journal(tmp_path).entries == []
    (tmp_path / "journal.json").write_text(json.dumps({"entries": [{"kind": "bogus", "ifname": "x"}, 5]}))
    assert Journal(tmp_path).entries == []


# ------------------------------------------------------------------------------------------- checks


def test_startup_checks_become_problems(tmp_path: Path) -> None:
    backend = FakeBackend()
    backend.check_findings = [
        PlatformError(
            "/dev/net/tun is missing", hint="load the TUN driver: modprobe tun", code=PlatformErrorCode.TUN_MISSING
        ),
        PlatformError(
            "IPv6 is disabled on this host",
            hint="sysctl -w net.ipv6.conf.all.disable_ipv6=0",
            code=PlatformErrorCode.IPV6_DISABLED,
        ),
    ]
    running = RunningHelper(tmp_path, backend=backend).start()
    try:
        problems = call(running, Method.STATUS)["problems"]
        assert [p["code"] for p in problems] == [ErrorCode.TUN_MISSING, ErrorCode.IPV6_DISABLED]
        assert problems[0]["hint"] == "load the TUN driver: modprobe tun"
        assert problems[0]["message"] == "/dev/net/tun is missing."
    finally:
        running.close()


def test_driver_errors_show_in_status_until_connected(helper: RunningHelper) -> None:
    driver = helper.driver
    helper.call_soon(lambda: driver.emit(ev.ErrorEvent.of(ErrorCode.GATEWAY_UNRESOLVABLE, "gw.example: NXDOMAIN")))
    problems = call(helper, Method.STATUS)["problems"]
    assert problems[-1]["code"] == ErrorCode.GATEWAY_UNRESOLVABLE and problems[-1]["detail"] == "gw.example: NXDOMAIN"
    call(helper, Method.UP)
    assert call(helper, Method.STATUS)["problems"] == []


# ------------------------------------------------------------------------------ log, diag, probe


def test_log_paging(helper: RunningHelper) -> None:
    call(helper, Method.UP)
    page = call(helper, Method.LOG, {"limit": 3})
    assert len(page["entries"]) == 3 and page["next"] >= 3
    assert all({"seq", "time", "level", "message"} <= e.keys() for e in page["entries"])
    newer = call(helper, Method.LOG, {"since": page["next"]})
    assert newer["entries"] == []
    call(helper, Method.DOWN)
    newer = call(helper, Method.LOG, {"since": page["next"]})
    assert any("disconnected" in e["message"] for e in newer["entries"])


def test_ring_log_is_bounded(tmp_path: Path) -> None:
    running = RunningHelper(tmp_path, log_capacity=10).start()
    try:
        for _ in range(5):
            call(running, Method.UP)
            call(running, Method.DOWN)
        page = call(running, Method.LOG, {"limit": 100})
        assert len(page["entries"]) == 10 and page["dropped"] > 0
    finally:
        running.close()


def test_diagnostics_bundle(helper: RunningHelper) -> None:
    call(helper, Method.UP)
    result = call(helper, Method.DIAGNOSTICS)
    bundle = result["bundle"]
    assert {"created", "status", "config", "log", "system", "interfaces", "routes", "checks"} <= bundle.keys()
    assert bundle["status"]["state"] == "connected"
    assert bundle["config"]["tunnel"]["mtu"] == 1472
    assert bundle["log"]
    saved = Path(result["path"])
    assert saved.parent == helper.state_dir / "diagnostics"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["status"]["state"] == "connected"
    for _ in range(6):
        call(helper, Method.DIAGNOSTICS)
    assert len(list(saved.parent.glob("*.json"))) == 5


def test_mtu_probe(helper: RunningHelper) -> None:
    call(helper, Method.UP)
    result = call(helper, Method.MTU_PROBE)
    assert result["mtu"] == 1400 and result["previous"] == 1472
    assert result["tried"][0] == {"size": 1472, "answered": False}
    helper.driver.probe_result = ev.MtuProbeResult(False, None, 1472, 1472, (), "not connected", 0.0)
    error = failure(helper, Method.MTU_PROBE)
    assert error.code == ErrorCode.MTU_PROBE_FAILED and "not connected" in error.message


def test_state_dir_is_created(tmp_path: Path) -> None:
    running = RunningHelper(tmp_path).start()
    try:
        assert (tmp_path / "state").is_dir()
        assert os.stat(tmp_path / "state").st_mode & 0o777 == 0o755
    finally:
        running.close()


def test_the_wish_file(tmp_path: Path) -> None:
    wish = WishFile(tmp_path)
    assert wish.load() is None
    wish.save("up")
    assert wish.load() == "up"
    for junk in ("{broken", "[]", '{"wanted": "sideways"}', '{"wanted": 1}'):
        wish.path.write_text(junk)
        assert wish.load() is None, junk


def test_python_m_runs_the_helper() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "m6t.client.helper", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: m6t-helper"), done.stderr


# ------------------------------------------------------------------------------------------ log lines

OLD = IPv6Address("fd6d:3674:a1b2:0:1:5e1:a2b3:c4d5")
NEW = IPv6Address("fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc")
LOG_LINES: list[tuple[ev.Event, LogLine | None]] = [
    (
        ev.StateChanged(State.CONNECTED, State.CONNECTING, "confirmed"),
        LogLine("info", "state connecting → connected: confirmed", "state", None),
    ),
    (
        ev.StateChanged(State.DISCONNECTED, State.CONNECTED, ""),
        LogLine("info", "state connected → disconnected", "state", None),
    ),
    (
        ev.AttachmentChanged(Attachment(IPv4Address("192.0.2.10"), "wlan0", IPv4Address("192.0.2.1"))),
        LogLine("info", "attached via wlan0 (192.0.2.10, router 192.0.2.1)", "attachment", None),
    ),
    (
        ev.AttachmentChanged(Attachment(IPv4Address("192.0.2.10"), "wlan0", None)),
        LogLine("info", "attached via wlan0 (192.0.2.10)", "attachment", None),
    ),
    (ev.AttachmentChanged(None), LogLine("warning", "no IPv4 path toward the gateway", "attachment", None)),
    (
        ev.AddressChanged(OLD, NEW, "attachment_changed", (IPv4Address("198.51.100.2"), 4500)),
        LogLine(
            "info",
            "address fd6d:3674:a1b2:0:1:5e1:a2b3:c4d5 → fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc (attachment_changed)",
            "address",
            None,
        ),
    ),
    (
        ev.AddressChanged(NEW, None, "", None),
        LogLine("info", "address fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc → None", "address", None),
    ),
    (ev.KeepaliveEvent(ev.KeepaliveKind.REPLY, 0.0123456, 0), None),
    (ev.KeepaliveEvent(ev.KeepaliveKind.SENT, None, 0), None),
    (
        ev.KeepaliveEvent(ev.KeepaliveKind.MISSED, None, 2),
        LogLine("warning", "keepalive unanswered (2 in a row)", "keepalive", None),
    ),
    (ev.CountersEvent({"tx_packets": 3, "rx_drop_too_short": 1}), None),
    (
        ev.ErrorEvent.of(ErrorCode.BINDING_LOST, "3 keepalives unanswered"),
        LogLine(
            "error",
            "[4003] The gateway forgot this computer; reconnecting with a new address. (3 keepalives unanswered)",
            "error",
            4003,
        ),
    ),
    (
        ev.ErrorEvent(ErrorCode.SOCKET_FAILED, "", ""),
        LogLine("error", "[4010] The connection to the gateway could not be opened; retrying.", "error", 4010),
    ),
    (ev.MtuChanged(1472, 1400, 1472, "icmp", 1428), LogLine("info", "MTU 1472 → 1400 (icmp)", "mtu", None)),
    (ev.MtuChanged(1472, 1472, 1400, "attachment"), LogLine("info", "MTU 1400 → 1472 (attachment)", "mtu", None)),
    (ev.MtuProbeDone(1, ev.MtuProbeResult(True, 1400, 1472, 1472, ((1472, False), (1400, True)), "", 0.5)), None),
]


@pytest.mark.parametrize(("event", "line"), LOG_LINES)
def test_log_line_for_each_driver_event(event: ev.Event, line: LogLine | None) -> None:
    """The ring log's sentences, as the helper wrote them before the wire module existed."""
    assert describe(event) == line


def test_a_readers_diagnostics_request_writes_nothing(tmp_path: Path) -> None:
    """Any local user may ask for the bundle, but only an operator's request leaves a copy in the root helper's
    state directory: a reader gets the bundle over the API and the CLI/tray saves it on the reader's side."""
    if not is_root():
        pytest.skip("needs root to fork a child that becomes nobody")
    world = Path(tempfile.mkdtemp(prefix="m6t-diag-"))
    world.chmod(0o755)
    running = RunningHelper(world).start()
    saved_dir = running.state_dir / "diagnostics"

    def child() -> bytes:
        with HelperClient(running.socket_path) as client:
            result = client.call(Method.DIAGNOSTICS, timeout=30.0)
        return json.dumps({"path": result["path"], "state": result["bundle"]["status"]["state"]}).encode()

    try:
        for _ in range(3):
            answer = json.loads(run_as(NOBODY, NOBODY, [], child))
            assert answer == {"path": None, "state": "disconnected"}
        assert not saved_dir.exists() or not any(saved_dir.iterdir())
        # The operator (root, here) still gets a copy kept by the helper.
        assert Path(call(running, Method.DIAGNOSTICS)["path"]).parent == saved_dir
        assert len(list(saved_dir.glob("*.json"))) == 1
    finally:
        running.close()
        shutil.rmtree(world, ignore_errors=True)
