"""The wire module: the core's typed records in the control API's shapes, byte for byte.

The expected lines were produced by the helper before the wire module existed (``Status.to_dict`` through
``normalize_status``, ``translate_event``, ``check_problem``): the wire must not change.
"""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from typing import Any, cast

import pytest

from m6t.client import events as ev
from m6t.client.api import schema, wire
from m6t.client.api.schema import Access, ErrorCode, EventKind
from m6t.client.cli import format_mtu
from m6t.client.driver import DriverStatus
from m6t.client.status import KeepaliveStatus, MtuEvidence, MtuSearchStatus, Regeneration, Status
from m6t.client.tunnels import TunnelStatus
from m6t.client.vocabulary import State
from m6t.platform.base import PlatformError, PlatformErrorCode
from m6t.protocol.values import Attachment

OLD = IPv6Address("fd6d:3674:a1b2:0:1:5e1:a2b3:c4d5")
NEW = IPv6Address("fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc")
WALL = 1_700_000_000.0
HELPER: schema.HelperInfo = {
    "version": "0.1.0",
    "pid": 1234,
    "uptime_s": 81.5,
    "config_path": "/etc/m6t/client.toml",
    "socket_path": "/var/run/m6t/helper.sock",
}


SESSION = Status(
    now=1000.0,
    state=State.CONNECTED,
    detail="confirmed",
    since=990.0,
    attachment=Attachment(IPv4Address("192.0.2.10"), "wlan0", IPv4Address("192.0.2.1")),
    gateway_host="gw.example",
    gateway_address=IPv4Address("198.51.100.2"),
    gateway_port=4500,
    ports=(3544, 4500),
    address=NEW,
    confirmed=True,
    mtu_configured=1472,
    mtu_effective=1400,
    mtu_evidence=MtuEvidence("icmp", 1428, 995.5),
    keepalive=KeepaliveStatus(30.0, 996.0, 996.25, 0.0031, 0, True),
    probe=IPv6Address("fd00:ab::1"),
    counters={"tx_packets": 12, "rx_packets": 11},
    regenerations=(Regeneration(980.0, "attached", None, OLD), Regeneration(985.0, "attachment_changed", OLD, NEW)),
    failures=0,
    retry_at=None,
)


def snapshot(status: Status | None = None) -> DriverStatus:
    problems = (PlatformError("/dev/net/tun is missing", "modprobe tun"),)
    return DriverStatus(status or SESSION, WALL, "m6t0", True, "linux", problems)


def wire_status(snap: DriverStatus | None) -> schema.Status:
    problems = [schema.error_info(ErrorCode.TUN_MISSING, "/dev/net/tun is missing.", hint="modprobe tun")]
    tunnels = [] if snap is None else [wire.tunnel_summary(TunnelStatus(snap, primary=True))]
    return wire.status_to_wire(
        snap,
        wanted="up",
        configured_interface="m6t0",
        problems=problems,
        access=Access.OPERATOR,
        helper=HELPER,
        tunnels=tunnels,
    )


# ------------------------------------------------------------------------------------------ status

STATUS_LINE = (
    '{"state":"connected","detail":"confirmed","address":"fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc",'
    '"gateway":"198.51.100.2:4500","gateway_name":"gw.example","mtu":1400,"keepalive":{"rtt_ms":3.1,"age_s":3.8,'
    '"interval_s":30.0,"last_sent":1700000996.0,"last_reply":1700000996.25,"missed":0},'
    '"mtu_detail":{"configured":1472,"effective":1400,"last_evidence":{"source":"icmp",'
    '"path_mtu":1428,"time":1700000995.5}},"attachment":{"local_ipv4":"192.0.2.10",'
    '"interface":"wlan0","router":"192.0.2.1"},"counters":{"tx_packets":12,"rx_packets":11},'
    '"regenerations":[{"time":1700000980.0,"reason":"attached","old":null,'
    '"new":"fd6d:3674:a1b2:0:1:5e1:a2b3:c4d5"},{"time":1700000985.0,"reason":"attachment_changed",'
    '"old":"fd6d:3674:a1b2:0:1:5e1:a2b3:c4d5","new":"fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc"}],'
    '"since":1700000990.0,"wanted":"up","interface":"m6t0","problems":[{"code":3001,'
    '"name":"tun_missing","message":"/dev/net/tun is missing.","hint":"modprobe tun"}],'
    '"access":"operator","helper":{"version":"0.1.0","pid":1234,"uptime_s":81.5,'
    '"config_path":"/etc/m6t/client.toml","socket_path":"/var/run/m6t/helper.sock"}'
)
SESSION_LINE = (
    '{"state":"connected","detail":"confirmed","since":1700000990.0,'
    '"address":"fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc","confirmed":true,"gateway":"198.51.100.2:4500",'
    '"gateway_detail":{"host":"gw.example","address":"198.51.100.2","port":4500,"ports":[3544,4500],'
    '"candidates":[],"dead":[]},'
    '"mtu":1400,"mtu_detail":{"configured":1472,"effective":1400,"last_evidence":{"source":"icmp",'
    '"path_mtu":1428,"time":1700000995.5}},"keepalive":{"interval_s":30.0,"rtt_ms":3.1,"age_s":3.75,'
    '"last_sent":1700000996.0,"last_reply":1700000996.25,"missed":0,"counting":true},'
    '"attachment":{"local_ipv4":"192.0.2.10","interface":"wlan0","router":"192.0.2.1"},'
    '"probe":"fd00:ab::1","counters":{"tx_packets":12,"rx_packets":11},'
    '"regenerations":[{"time":1700000980.0,"reason":"attached","old":null,'
    '"new":"fd6d:3674:a1b2:0:1:5e1:a2b3:c4d5"},{"time":1700000985.0,"reason":"attachment_changed",'
    '"old":"fd6d:3674:a1b2:0:1:5e1:a2b3:c4d5","new":"fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc"}],'
    '"failures":0,"retry_at":null,"interface":"m6t0","wanted":"up","backend":"linux",'
    '"problems":[{"code":3005,"message":"/dev/net/tun is missing","hint":"modprobe tun"}]}'
)


TUNNELS_LINE = (
    '[{"interface":"m6t0","uplink":null,"primary":true,"state":"connected","detail":"confirmed",'
    '"address":"fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc","gateway":"198.51.100.2:4500",'
    '"attachment":{"local_ipv4":"192.0.2.10","interface":"wlan0","router":"192.0.2.1"},"mtu":1400,"rtt_ms":3.1}]'
)


def test_status_is_byte_for_byte_the_old_one_with_the_gateway_name_and_the_tunnels() -> None:
    line = schema.encode(wire_status(snapshot())).decode()
    assert line == STATUS_LINE + ',"tunnels":' + TUNNELS_LINE + ',"session":' + SESSION_LINE + "}\n"


def test_status_without_a_driver() -> None:
    status = wire_status(None)
    assert status["state"] == "disconnected" and status["mtu"] is None and status["gateway"] is None
    assert status["regenerations"] == [] and status["counters"] == {} and status["session"] == {}
    assert status["keepalive"] == {
        "rtt_ms": None,
        "age_s": None,
        "interval_s": None,
        "last_sent": None,
        "last_reply": None,
        "missed": 0,
    }
    assert status["interface"] == "m6t0" and status["wanted"] == "up"


def test_status_keepalive_and_mtu_details() -> None:
    status = wire_status(
        snapshot(replace(SESSION, now=100.0, keepalive=KeepaliveStatus(30.0, 90.0, 90.5, 0.0008, 2, True)))
    )
    assert status["keepalive"]["last_sent"] == WALL + 90.0
    assert status["keepalive"]["missed"] == 2
    assert status["keepalive"]["age_s"] == 9.5
    assert status["keepalive"]["rtt_ms"] == 0.8
    status = wire_status(snapshot(replace(SESSION, mtu_evidence=None)))
    assert status.get("mtu_detail") == {"configured": 1472, "effective": 1400, "last_evidence": None}


def test_status_shows_the_path_mtu_search() -> None:
    search = MtuSearchStatus("search_complete", 1372, "icmp", 992.0, 3, 0.02, False, 1592.0, 5)
    status = wire_status(snapshot(replace(SESSION, mtu_search=search)))
    detail = status.get("mtu_detail")
    assert detail is not None and detail.get("search") == {
        "state": "search_complete",
        "mtu": 1372,
        "found": "icmp",
        "time": WALL + 992.0,
        "probes": 3,
        "duration_s": 0.02,
        "fragmentation": False,
        "next_search": WALL + 1592.0,
        "probes_total": 5,
    }
    assert format_mtu(cast(dict[str, Any], status)).startswith("1400 (path searched at ")
    assert format_mtu(cast(dict[str, Any], status)).endswith(": icmp, 3 probes)")
    floor = replace(search, state="error", mtu=1280, found="floor", fragmentation=True)
    text = format_mtu(cast(dict[str, Any], wire_status(snapshot(replace(SESSION, mtu_search=floor)))))
    assert text == "1400 (the path carries under 1308 bytes: larger packets rely on fragmentation)"


def test_status_interface_falls_back_to_the_configured_name() -> None:
    snap = snapshot()
    gone = DriverStatus(snap.session, snap.wall_offset, None, False, snap.backend, ())
    status = wire.status_to_wire(
        gone, wanted="down", configured_interface="m6tx0", problems=[], access=Access.READ_ONLY, helper=HELPER
    )
    assert status["interface"] == "m6tx0" and status["access"] == "read-only"
    assert status["session"]["interface"] is None and status["session"]["wanted"] == "down"


def test_session_snapshot_is_json() -> None:
    session = wire.session_to_wire(snapshot(replace(SESSION, state=State.ERROR, retry_at=1005.0, address=None)))
    assert json.loads(json.dumps(session)) == session
    assert session["retry_at"] == WALL + 1005.0 and session["address"] is None


# ------------------------------------------------------------------------------------------ events

GW = (IPv4Address("198.51.100.2"), 4500)
EVENTS: list[tuple[ev.Event, str | None]] = [
    (
        ev.StateChanged(State.CONNECTED, State.CONNECTING, "confirmed"),
        'state {"state":"connected","previous":"connecting","detail":"confirmed"}',
    ),
    (
        ev.StateChanged(State.DISCONNECTED, State.CONNECTED, ""),
        'state {"state":"disconnected","previous":"connected","detail":""}',
    ),
    (
        ev.AttachmentChanged(Attachment(IPv4Address("192.0.2.10"), "wlan0", IPv4Address("192.0.2.1"))),
        'attachment {"attachment":{"local_ipv4":"192.0.2.10","interface":"wlan0","router":"192.0.2.1"}}',
    ),
    (
        ev.AttachmentChanged(Attachment(IPv4Address("192.0.2.10"), "wlan0", None)),
        'attachment {"attachment":{"local_ipv4":"192.0.2.10","interface":"wlan0","router":null}}',
    ),
    (
        ev.AttachmentChanged(None),
        'attachment {"attachment":null}',
    ),
    (
        ev.AddressChanged(OLD, NEW, "attachment_changed", GW),
        (
            'address {"address":"fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc","previous":"fd6d:3674:a1b2:0:1:5e1:'
            'a2b3:c4d5","reason":"attachment_changed","gateway":"198.51.100.2:4500","gateway_name":null}'
        ),
    ),
    (
        ev.AddressChanged(None, NEW, "attached", GW, "gw.example"),
        (
            'address {"address":"fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc","previous":null,"reason":"attached",'
            '"gateway":"198.51.100.2:4500","gateway_name":"gw.example"}'
        ),
    ),
    (
        ev.AddressChanged(NEW, None, "", None),
        'address {"address":null,"previous":"fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc","reason":"","gateway":null,'
        '"gateway_name":null}',
    ),
    (
        ev.KeepaliveEvent(ev.KeepaliveKind.REPLY, 0.0123456, 0),
        'keepalive {"rtt_ms":12.346}',
    ),
    (ev.KeepaliveEvent(ev.KeepaliveKind.SENT, None, 0), None),
    (ev.KeepaliveEvent(ev.KeepaliveKind.MISSED, None, 2), None),
    (
        ev.CountersEvent({"tx_packets": 3, "rx_drop_too_short": 1}),
        'counters {"counters":{"tx_packets":3,"rx_drop_too_short":1}}',
    ),
    (
        ev.ErrorEvent.of(ErrorCode.BINDING_LOST, "3 keepalives unanswered"),
        (
            'error {"code":4003,"name":"binding_lost","message":"The gateway forgot this computer; reco'
            'nnecting with a new address.","detail":"3 keepalives unanswered"}'
        ),
    ),
    (
        ev.ErrorEvent(ErrorCode.SOCKET_FAILED, "", ""),
        (
            'error {"code":4010,"name":"socket_failed","message":"The connection to the gateway could n'
            'ot be opened; retrying."}'
        ),
    ),
    (
        ev.MtuChanged(1472, 1400, 1472, "icmp", 1428),
        'mtu {"mtu":1400,"previous":1472,"configured":1472,"reason":"icmp","path_mtu":1428}',
    ),
    (
        ev.MtuChanged(1472, 1472, 1400, "attachment"),
        'mtu {"mtu":1472,"previous":1400,"configured":1472,"reason":"attachment","path_mtu":null}',
    ),
    (ev.MtuProbeDone(1, ev.MtuProbeResult(True, 1400, 1472, 1472, ((1472, False), (1400, True)), "", 0.5)), None),
]


@pytest.mark.parametrize(("event", "line"), EVENTS)
def test_events_are_byte_for_byte_the_old_ones(event: ev.Event, line: str | None) -> None:
    """``line``: the event's name, then its ``data`` as the wire carries it (``None``: not streamed)."""
    wired = wire.event_to_wire(event)
    if line is None:
        assert wired is None
        return
    assert wired is not None
    kind, data = wired
    assert f"{kind.value} {schema.encode(data).decode()}" == line + "\n"


def test_helper_events() -> None:
    assert wire.config_event(["tunnel.mtu"]) == (EventKind.CONFIG, {"changed": ["tunnel.mtu"]})
    assert wire.wanted_event("down") == (EventKind.WANTED, {"wanted": "down"})


# --------------------------------------------------------------------------------------- MTU probe


def test_mtu_probe() -> None:
    result = ev.MtuProbeResult(True, 1400, 1472, 1470, ((1472, False), (1280, True), (1400, True)), "", 0.12345)
    assert schema.encode(wire.mtu_probe_to_wire(result)) == (
        b'{"mtu":1400,"previous":1470,"configured":1472,"tried":[{"size":1472,"answered":false},'
        b'{"size":1280,"answered":true},{"size":1400,"answered":true}],"duration":0.123}\n'
    )
    with pytest.raises(ValueError):
        wire.mtu_probe_to_wire(ev.MtuProbeResult(False, None, 1472, 1472, (), "not connected", 0.0))
    searched = ev.MtuProbeResult(
        True, 1372, 1472, 1472, ((1280, True), (1472, False), (1372, True)), "", 0.01, "icmp", 3
    )
    reply = wire.mtu_probe_to_wire(searched)
    assert (reply.get("found"), reply.get("probes")) == ("icmp", 3)


# ------------------------------------------------------------------------------- platform problems

CODES = [
    (PlatformErrorCode.TUN_MISSING, ErrorCode.TUN_MISSING),
    (PlatformErrorCode.IPV6_DISABLED, ErrorCode.IPV6_DISABLED),
    (PlatformErrorCode.PERMISSION_DENIED, ErrorCode.PERMISSION_DENIED),
    (PlatformErrorCode.INTERFACE_BUSY, ErrorCode.INTERFACE_BUSY),
    (PlatformErrorCode.OTHER, ErrorCode.PLATFORM_ERROR),
]


def test_every_platform_code_is_mapped() -> None:
    assert {platform for platform, _ in CODES} == set(PlatformErrorCode)


@pytest.mark.parametrize(("platform", "client"), CODES)
def test_a_finding_is_classified_by_its_code(platform: PlatformErrorCode, client: ErrorCode) -> None:
    assert wire.error_code_for(platform) is client
    info = wire.problem_to_wire(PlatformError("something went wrong", "the fix", code=platform))
    assert info == {"code": int(client), "name": client.slug, "message": "Something went wrong.", "hint": "the fix"}


@pytest.mark.parametrize(
    "text",
    ["/dev/net/tun is missing", "IPv6 is disabled on this host", "no CAP_NET_ADMIN", "permission denied"],
)
def test_a_finding_is_never_classified_by_its_text(text: str) -> None:
    assert wire.problem_to_wire(PlatformError(text))["code"] == ErrorCode.PLATFORM_ERROR


def test_a_finding_reads_as_a_sentence() -> None:
    assert wire.problem_to_wire(PlatformError("Already one."))["message"] == "Already one."
    assert wire.problem_to_wire(PlatformError(""))["message"] == ErrorCode.PLATFORM_ERROR.sentence
    assert "hint" not in wire.problem_to_wire(PlatformError("x"))
