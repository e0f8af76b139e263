"""The real gateway daemon in the standard lab: a scripted mobile node behind NAT1, the HA's own kernel as
the Home Agent responder (it answers pings to fd00:ab::1 through its default route via the gateway).

Needs root (network namespaces, TUN); skipped with the lab's reason otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from m6t.lab import GW, GW_WAN, HA_HOST, MN, WAN2, Lab, StandardLab, processes, wait_until
from m6t.protocol import KEEPALIVE_PEER, build_keepalive, parse_echo_reply, parse_ipv6
from tests.lab.commands import run_module
from tests.lab.gateway_rig import (
    BURST,
    FASTLANE_TABLE,
    PORT_A,
    PORT_B,
    TUN,
    Gateway,
    assert_echo_replies,
    echo,
    mn_address,
    running_gateway,
    sender_spec,
    stop_gateway,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def gateway(shared_lab: StandardLab) -> Iterator[Gateway]:
    with running_gateway(shared_lab) as gateway:
        yield gateway


# --------------------------------------------------------------------------- tests


def test_first_packet_is_forwarded_the_ha_reply_activates_and_traffic_flows(gateway: Gateway) -> None:
    src = mn_address(1, 0x0A0B0C0D0E0F)
    created = gateway.value("state_events_total", event="created")
    promoted = gateway.value("state_events_total", event="promoted")

    got = gateway.exchange(MN, [echo(src, 1)], local_port=41001, expect=1)
    assert_echo_replies(got, src, [1], PORT_A)
    assert gateway.value("state_events_total", event="created") == created + 1
    assert gateway.value("state_events_total", event="promoted") == promoted + 1
    assert gateway.value("states", kind="active") >= 1

    got = gateway.exchange(MN, [echo(src, seq) for seq in range(2, 7)], local_port=41001, expect=5)
    assert_echo_replies(got, src, [2, 3, 4, 5, 6], PORT_A)
    # Same binding: no new state was needed.
    assert gateway.value("state_events_total", event="created") == created + 1
    assert gateway.value("forwarded_packets_total", direction="to_mn") >= 6


def test_keepalive_is_answered_only_for_an_active_state(gateway: Gateway) -> None:
    src = mn_address(2, 0x111111111111)
    assert_echo_replies(gateway.exchange(MN, [echo(src)], local_port=41002, expect=1), src, [1], PORT_A)
    answered = gateway.value("keepalive_replies_total")

    got = gateway.exchange(MN, [build_keepalive(src.packed)], local_port=41002, expect=1)
    assert len(got) == 1
    ip, port, payload = got[0]
    assert (ip, port) == (GW_WAN, PORT_A)
    header = parse_ipv6(payload)
    assert header.src == KEEPALIVE_PEER and header.dst == src.packed and header.next_header == 59
    assert len(payload) == 40
    assert gateway.value("keepalive_replies_total") == answered + 1

    # A keepalive for an address the gateway does not know is dropped, and creates nothing.
    unknown = mn_address(2, 0x222222222222)
    dropped = gateway.value("drops_total", side="mn", reason="keepalive_without_active_state")
    assert gateway.exchange(MN, [build_keepalive(unknown.packed)], local_port=41002, expect=1, wait=1.0) == []
    assert gateway.value("drops_total", side="mn", reason="keepalive_without_active_state") == dropped + 1


def test_a_spoofed_source_from_another_host_gets_nothing_and_the_mn_keeps_working(gateway: Gateway) -> None:
    src = mn_address(3, 0x333333333333)
    assert_echo_replies(gateway.exchange(MN, [echo(src, 1)], local_port=41003, expect=1), src, [1], PORT_A)
    mismatches = gateway.value("drops_total", side="mn", reason="binding_mismatch")

    spoofed = [echo(src, 100), build_keepalive(src.packed)]
    assert gateway.exchange(WAN2, spoofed, local_port=41003, expect=1, wait=1.0) == []
    assert gateway.value("drops_total", side="mn", reason="binding_mismatch") == mismatches + 2

    # The binding did not move: the real MN still gets its replies.
    got = gateway.exchange(MN, [echo(src, 2), build_keepalive(src.packed)], local_port=41003, expect=2)
    assert sorted(len(p) for _, _, p in got)[0] == 40
    assert [parse_echo_reply(p).seq for _, _, p in got if len(p) > 40] == [2]


def test_a_flood_of_new_sources_from_one_ipv4_is_cut_while_another_host_connects(gateway: Gateway) -> None:
    limited = gateway.value("rate_limited_total")
    policed = gateway.value("fastlane_packets_total", rule="policed_per_ipv4")
    flood = [echo(mn_address(4, 0x400000000000 + i), 1) for i in range(60)]
    script = gateway.workdir / "mn.py"
    spec = sender_spec(flood, local_port=41004, expect=len(flood), wait=3.0)
    argv = [sys.executable, str(script), json.dumps(spec)]
    with processes.killed_after(gateway.lab.spawn(MN, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)) as flooder:
        # Meanwhile a mobile node behind another IPv4 address gets its state.
        legit = mn_address(5, 0x555555555555)
        got = gateway.exchange(WAN2, [echo(legit, 1)], local_port=41005, expect=1)
        assert_echo_replies(got, legit, [1], PORT_A)
        out, err = flooder.communicate(timeout=20)
    answered = json.loads(out)
    assert len(answered) <= BURST, err
    # Cut in the kernel (the fast lane lets a few packets per new state through) or by the gateway itself.
    cut = gateway.value("rate_limited_total") - limited
    cut += gateway.value("fastlane_packets_total", rule="policed_per_ipv4") - policed
    assert cut >= len(flood) - BURST


def test_replies_leave_from_the_port_the_state_came_in_on(gateway: Gateway) -> None:
    on_b = mn_address(6, 0x666666666666)
    on_a = mn_address(6, 0x777777777777)
    got_b = gateway.exchange(MN, [echo(on_b)], local_port=41006, port=PORT_B, expect=1)
    assert_echo_replies(got_b, on_b, [1], PORT_B)
    got_a = gateway.exchange(MN, [echo(on_a)], local_port=41007, port=PORT_A, expect=1)
    assert_echo_replies(got_a, on_a, [1], PORT_A)
    keepalive = gateway.exchange(MN, [build_keepalive(on_b.packed)], local_port=41006, port=PORT_B, expect=1)
    assert [(ip, port) for ip, port, _ in keepalive] == [(GW_WAN, PORT_B)]
    assert gateway.value("udp_sent_datagrams_total", port=str(PORT_B)) >= 2


def test_a_burst_sent_with_gso_is_split_and_every_packet_answered(gateway: Gateway) -> None:
    src = mn_address(7, 0x888888888888)
    assert_echo_replies(gateway.exchange(MN, [echo(src, 0)], local_port=41008, expect=1), src, [0], PORT_A)
    burst = [echo(src, seq, data=bytes(200)) for seq in range(1, 21)]
    got = gateway.exchange(MN, burst, local_port=41008, expect=len(burst), gso=True)
    assert_echo_replies(got, src, list(range(1, 21)), PORT_A)
    # Informational: whether the kernel coalesced on receive (GRO) or sent in one go (GSO) depends on timing.
    print(
        "GRO buffers:",
        gateway.value("udp_gro_buffers_total", port=str(PORT_A)),
        "GSO sends:",
        gateway.value("udp_gso_sends_total", port=str(PORT_A)),
    )


def test_packets_from_the_ha_side_without_state_are_dropped(gateway: Gateway) -> None:
    nobody = mn_address(8, 0x999999999999)
    dropped = gateway.value("drops_total", side="ha", reason="no_state")
    gateway.lab.run(HA_HOST, "ping", "-n", "-c", "1", "-W", "1", str(nobody), check=False)
    assert gateway.value("drops_total", side="ha", reason="no_state") >= dropped + 1


def test_status_prints_the_metrics_human_readably(gateway: Gateway) -> None:
    result = run_module("m6t.gateway", "status", "--metrics", str(gateway.metrics))
    assert result.returncode == 0, result.stderr
    assert "states:" in result.stdout and "active" in result.stdout
    assert f"udp {PORT_B}:" in result.stdout
    assert "established packets; policed in the kernel:" in result.stdout


def _nft_set(lab: Lab, name: str) -> list[tuple[str, int, int, IPv6Address]]:
    """The established set's elements: outer source, its port, the local port and the inner source."""
    listing = lab.run(GW, "nft", "-j", "list", "set", "inet", FASTLANE_TABLE, name).stdout
    elements: list[tuple[str, int, int, IPv6Address]] = []
    for item in json.loads(listing)["nftables"]:
        for entry in item.get("set", {}).get("elem", []):
            value = entry["elem"]["val"] if isinstance(entry, dict) and "elem" in entry else entry
            ipv4, port, local_port, inner = value["concat"]
            elements.append((ipv4, port, local_port, IPv6Address(int(inner, 16))))
    return elements


def test_the_fast_lane_holds_each_active_state(gateway: Gateway) -> None:
    assert gateway.value("fastlane_enabled") == 1, gateway.describe()
    src = mn_address(9, 0xABCDEF)
    assert_echo_replies(gateway.exchange(MN, [echo(src, 1)], local_port=41009, expect=1), src, [1], PORT_A)

    def listed() -> bool:
        return any(inner == src for _, _, _, inner in _nft_set(gateway.lab, "established"))

    wait_until(listed, what="the MN's element in the established set", timeout=5.0)
    ((ipv4, port, local_port, _),) = [e for e in _nft_set(gateway.lab, "established") if e[3] == src]
    assert (ipv4, port, local_port) == ("198.51.100.11", 41009, PORT_A)
    established = gateway.value("fastlane_packets_total", rule="established")
    got = gateway.exchange(MN, [echo(src, seq) for seq in range(2, 5)], local_port=41009, expect=3)
    assert_echo_replies(got, src, [2, 3, 4], PORT_A)
    assert gateway.value("fastlane_packets_total", rule="established") >= established + 3


def test_sigterm_removes_the_tun_and_its_routes(lab: StandardLab) -> None:
    with running_gateway(lab) as gateway:
        links = lab.run(GW, "ip", "-o", "link", "show").stdout
        assert TUN in links
        assert "fd6d:3674:a1b2::/48" in lab.run(GW, "ip", "-6", "route", "show", "dev", TUN).stdout
        assert lab.run(GW, "ip", "link", "show", TUN).stdout.count("mtu 1472") == 1

        assert FASTLANE_TABLE in lab.run(GW, "nft", "list", "tables").stdout
        metrics_path = Path(gateway.metrics.path)
        assert stop_gateway(gateway) == 0
        assert FASTLANE_TABLE not in lab.run(GW, "nft", "list", "tables").stdout
        assert TUN not in lab.run(GW, "ip", "-o", "link", "show").stdout
        assert "fd6d:3674:a1b2::/48" not in lab.run(GW, "ip", "-6", "route", "show").stdout
        assert not metrics_path.exists()


def test_a_table_left_by_a_crashed_gateway_is_replaced_at_start(lab: StandardLab) -> None:
    # What a gateway killed with SIGKILL leaves behind: its table, with an element for a long-gone MN.
    lab.load_nft(
        GW,
        f"""table inet {FASTLANE_TABLE} {{
  set established {{ type ipv4_addr . inet_service . inet_service . ipv6_addr; flags dynamic,timeout; timeout 1h;
    elements = {{ 198.51.100.11 . 4000 . {PORT_A} . fd6d:3674:a1b2:0:7::1 }} }}
  chain stale {{ type filter hook input priority 0; policy accept; udp dport {PORT_A} drop; }}
}}
""",
    )
    with running_gateway(lab) as gateway:
        assert _nft_set(lab, "established") == []
        listing = lab.run(GW, "nft", "list", "table", "inet", FASTLANE_TABLE).stdout
        assert "chain stale" not in listing and "chain police" in listing
        src = mn_address(10, 0x1010)
        assert_echo_replies(gateway.exchange(MN, [echo(src, 1)], local_port=41010, expect=1), src, [1], PORT_A)
        assert stop_gateway(gateway) == 0
        assert FASTLANE_TABLE not in lab.run(GW, "nft", "list", "tables").stdout


def test_an_open_gateway_drops_a_sealed_datagram_as_not_ipv6(gateway: Gateway) -> None:
    """Open mode is the draft's: the enrolled-access header is not IPv6, so nothing comes of it."""
    from m6t.protocol.access import Sealer

    src = mn_address(9, 0xABCDEF012345)
    not_ipv6 = gateway.value("drops_total", side="mn", reason="not_ipv6")
    created = gateway.value("state_events_total", event="created")
    sealed = Sealer(bytes(32)).seal(echo(src), 1_767_225_600.0, bytes(8))
    assert gateway.exchange(MN, [sealed], local_port=41009, expect=1, wait=1.0) == []
    assert gateway.value("drops_total", side="mn", reason="not_ipv6") == not_ipv6 + 1
    assert gateway.value("state_events_total", event="created") == created
    assert "auth_" not in gateway.fetch()
