"""What the tray shows for each helper state: pure mapping, tooltip and labels."""

from __future__ import annotations

import pytest

from m6t.client.api.host import OsFamily
from m6t.client.api.schema import TunnelState, TunnelSummary
from m6t.ui.state import (
    TRAY_LABELS,
    TooltipFacts,
    TrayState,
    TunnelLine,
    format_bits_per_second,
    format_duration,
    format_minutes,
    helper_start_hint,
    overall_state,
    reason_label,
    tooltip,
    tray_state,
    tunnel_label,
    tunnel_line,
    wants_disconnect_action,
)
from tests.ui.conftest import TRAY_STATE_OF


def test_every_documented_state_has_an_icon_state() -> None:
    assert set(TRAY_STATE_OF) == set(TunnelState)
    for state, expected in TRAY_STATE_OF.items():
        assert tray_state(reachable=True, state=state, wanted="up") is expected


def test_unreachable_helper_wins_over_any_state() -> None:
    for state in TunnelState:
        assert tray_state(reachable=False, state=state, wanted="up") is TrayState.UNAVAILABLE


def test_unknown_state_follows_the_wish_and_is_shown_verbatim() -> None:
    assert tray_state(reachable=True, state="sleeping", wanted="up") is TrayState.CONNECTING
    assert tray_state(reachable=True, state="sleeping", wanted="down") is TrayState.DISCONNECTED
    assert tunnel_label("sleeping") == "sleeping"


def test_every_tray_state_has_a_label() -> None:
    assert set(TRAY_LABELS) == set(TrayState)


@pytest.mark.parametrize(
    ("state", "wanted", "disconnect"),
    [
        (TunnelState.DISCONNECTED, "down", False),
        (TunnelState.DISCONNECTED, "up", False),
        (TunnelState.CONNECTING, "up", True),
        (TunnelState.WAITING_FOR_NETWORK, "up", True),
        (TunnelState.ERROR, "up", True),
        (TunnelState.CONNECTED, "up", True),
        (TunnelState.CONNECTED, "down", False),
    ],
)
def test_toggle_reflects_the_real_state(state: str, wanted: str, disconnect: bool) -> None:
    assert wants_disconnect_action(state=state, wanted=wanted) is disconnect


def test_tooltip_has_state_address_gateway_and_time_connected() -> None:
    text = tooltip(TooltipFacts(TrayState.CONNECTED, "connected", "fd6d::1", "198.51.100.2:4500", 3725))
    assert text.splitlines() == [
        "m6t: Connected",
        "Address: fd6d::1",
        "Gateway: 198.51.100.2:4500",
        "Connected for 1 h 02 min",
    ]


def test_tooltip_when_unreachable_gives_the_hint_only() -> None:
    text = tooltip(TooltipFacts(TrayState.UNAVAILABLE, "connected", "fd6d::1", "gw:1", 10, hint="Start it"))
    assert text.splitlines() == ["m6t: helper not reachable", "Start it"]


def test_tooltip_omits_unknown_connection_time() -> None:
    text = tooltip(TooltipFacts(TrayState.CONNECTED, "connected", "fd6d::1", None, None))
    assert "Connected for" not in text


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("attachment_changed", "the network changed"),
        ("network-change", "the network changed"),
        ("keepalive_unanswered", "the gateway lost the binding"),
        ("lost-binding", "the gateway lost the binding"),
        ("port-failover", "moved to the next gateway port"),
        ("gateway_changed", "moved to another gateway"),
        ("something-new", "something-new"),
        (None, "unknown reason"),
    ],
)
def test_regeneration_reasons_read_as_sentences(reason: str | None, label: str) -> None:
    assert reason_label(reason) == label


def test_formatting() -> None:
    assert format_duration(5) == "5 s"
    assert format_duration(65) == "1 min 05 s"
    assert format_duration(90000) == "1 d 1 h"
    assert format_minutes(59) == "less than a minute"
    assert format_minutes(125) == "2 min"
    assert format_minutes(3725) == "1 h 02 min"
    assert format_minutes(90000) == "1 d 1 h"
    assert format_bits_per_second(1_500_000) == "1.5 Mbit/s"
    assert format_bits_per_second(12) == "12 bit/s"


def test_start_hint_per_os_family() -> None:
    assert "systemctl" in helper_start_hint(OsFamily.LINUX)
    assert "launchctl" in helper_start_hint(OsFamily.MACOS)
    assert "sc start" in helper_start_hint(OsFamily.WINDOWS)
    assert "m6t-helper" in helper_start_hint(None)


def test_a_captive_portal_asks_the_user_to_sign_in() -> None:
    from m6t.ui.state import header_label

    state = TunnelState.SIGN_IN_REQUIRED
    assert tray_state(reachable=True, state=state, wanted="up") is TrayState.WAITING
    assert header_label(TrayState.WAITING, state) == "This network needs you to sign in"
    assert header_label(TrayState.WAITING, TunnelState.WAITING_FOR_NETWORK) == TRAY_LABELS[TrayState.WAITING]
    assert header_label(TrayState.UNAVAILABLE, state) == TRAY_LABELS[TrayState.UNAVAILABLE]
    facts = TooltipFacts(tray=TrayState.WAITING, state=state, address=None, gateway=None, connected_for_s=None)
    assert tooltip(facts).startswith("m6t: This network needs you to sign in")


def test_a_tunnel_line_names_its_uplink_state_and_address() -> None:
    line = TunnelLine("m6t1", "wlan0", TunnelState.CONNECTED, "fd6d::1")
    assert tunnel_line(line) == "m6t1 via wlan0: Connected, fd6d::1"
    assert tunnel_line(TunnelLine("m6t0", None, TunnelState.CONNECTING, None)) == "m6t0: Connecting to the gateway"


def test_a_tunnel_bound_to_no_uplink_is_named_by_its_attachment() -> None:
    summary: TunnelSummary = {
        "interface": "m6t0",
        "uplink": None,
        "primary": True,
        "state": "connected",
        "detail": "",
        "address": None,
        "gateway": None,
        "attachment": {"local_ipv4": "192.0.2.10", "interface": "lan1", "router": None},
        "mtu": None,
        "rtt_ms": None,
    }
    assert TunnelLine.of(summary).uplink == "lan1"
    assert TunnelLine.of({**summary, "attachment": None}).uplink is None
    assert TunnelLine.of({**summary, "uplink": "wlan0"}).uplink == "wlan0"


@pytest.mark.parametrize(
    ("primary", "others", "shown"),
    [
        # One tunnel: its own state, whatever it is.
        (TunnelState.CONNECTING, [TunnelState.CONNECTING], TunnelState.CONNECTING),
        (TunnelState.DEGRADED, [TunnelState.DEGRADED], TunnelState.DEGRADED),
        # Several: connected when any one is, else the primary's.
        (TunnelState.CONNECTING, [TunnelState.CONNECTING, TunnelState.CONNECTED], TunnelState.CONNECTED),
        (TunnelState.DEGRADED, [TunnelState.DEGRADED, TunnelState.CONNECTED], TunnelState.CONNECTED),
        (TunnelState.CONNECTING, [TunnelState.CONNECTING, TunnelState.DEGRADED], TunnelState.CONNECTING),
        (TunnelState.ERROR, [TunnelState.ERROR, TunnelState.WAITING_FOR_NETWORK], TunnelState.ERROR),
    ],
)
def test_overall_state(primary: str, others: list[str], shown: str) -> None:
    assert overall_state(primary, others) == shown


def test_tooltip_with_several_tunnels_counts_them_and_lists_each() -> None:
    tunnels = (
        TunnelLine("m6t0", "lan1", TunnelState.CONNECTING, None),
        TunnelLine("m6t1", "wwan0", TunnelState.CONNECTED, "fd6d::2"),
    )
    facts = TooltipFacts(TrayState.CONNECTED, "connected", None, "198.51.100.2:4500", 60, tunnels=tunnels)
    assert tooltip(facts).splitlines() == [
        "m6t: Connected",
        "Tunnels connected: 1 of 2",
        "m6t0 via lan1: Connecting to the gateway",
        "m6t1 via wwan0: Connected, fd6d::2",
        "Gateway: 198.51.100.2:4500",
        "Connected for 1 min",
    ]
