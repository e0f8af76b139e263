"""The gateway's fast lane in a real nftables table, in throwaway namespaces: the table's life, its established
set following the state table, and the kernel policing datagrams on loopback."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import sys
import time
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Any

import pytest

from tests.platform import inside, netns, run_forked, run_in

if sys.platform != "linux":
    pytest.skip("Linux nftables tests", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

from m6t.gateway import CoreSettings, GatewayCore, Verdict  # noqa: E402
from m6t.gateway.fastlane import FastLane  # noqa: E402
from m6t.platform.base import PlatformError  # noqa: E402
from m6t.platform.linux.nftables import (  # noqa: E402
    COUNTERS,
    MAX_BURST,
    MAX_RATE,
    FastLaneRules,
    NftFastLane,
    table_exists,
    table_name,
)
from m6t.protocol import build_echo_request  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and nftables"),
    pytest.mark.skipif(
        importlib.util.find_spec("nftables") is None,
        reason="nftables' Python binding is missing (python3-nftables, linked into the venv by scripts/setup.sh)",
    ),
]

TABLE = table_name("m6tgwtest0")
PORT = 3544
HA = IPv6Address("fd00:ab::1")
MN = IPv6Address("fd6d:3674:a1b2:0:1::10")
OTHER = IPv6Address("fd6d:3674:a1b2:0:2::20")
LOCAL = int(IPv4Address("127.0.0.1"))


def rules(**overrides: Any) -> FastLaneRules:
    fields: dict[str, Any] = {
        "table": TABLE,
        "listen_address": "0.0.0.0",
        "ports": (PORT,),
        "per_ipv4_per_s": 1,
        "per_ipv4_burst": 5,
        "total_per_s": 100_000,
        "total_burst": 100_000,
        "established_timeout_s": 150,
        "max_established": 1000,
    }
    fields.update(overrides)
    return FastLaneRules(**fields)


def list_table(lane: NftFastLane) -> str:
    from m6t.platform.linux.nftables import _load_binding

    nft = _load_binding()
    rc, output, error = nft.json_cmd({"nftables": [{"list": {"table": {"family": "inet", "name": lane.table}}}]})
    assert rc == 0, error
    return str(output)


def test_the_table_lives_from_start_to_close_and_its_set_follows_updates() -> None:
    def body() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        lane = NftFastLane(rules())
        seen["exists"] = table_exists(TABLE)
        a = (int(MN), int(IPv4Address("198.51.100.11")), 40000, PORT)
        b = (int(OTHER), int(IPv4Address("198.51.100.12")), 1, PORT)
        lane.update([a, b], [])
        seen["both"] = sorted(lane.established())
        # Removing one that is there and one that never was: neither fails the transaction.
        lane.update([], [b, (int(MN), LOCAL, 9, PORT)])
        seen["one"] = lane.established()
        seen["counters"] = lane.counters()
        lane.close()
        lane.close()
        seen["after"] = table_exists(TABLE)
        return seen

    with netns() as (ns,):
        seen = run_forked(lambda: _inside(ns, body))
    assert seen["exists"] and not seen["after"]
    a = (int(MN), int(IPv4Address("198.51.100.11")), 40000, PORT)
    b = (int(OTHER), int(IPv4Address("198.51.100.12")), 1, PORT)
    assert seen["both"] == sorted([a, b])
    assert seen["one"] == [a]
    assert set(seen["counters"]) == set(COUNTERS)


def _inside(ns: str, body: Any) -> Any:
    with inside(ns):
        return body()


def test_a_stale_table_is_replaced_at_start() -> None:
    def body() -> dict[str, Any]:
        crashed = NftFastLane(rules(per_ipv4_per_s=7))
        crashed.update([(int(MN), LOCAL, 1, PORT)], [])
        # The gateway died without closing: a new one starts with other limits.
        lane = NftFastLane(rules(per_ipv4_per_s=3))
        return {"elements": lane.established(), "listing": list_table(lane)}

    with netns() as (ns,):
        seen = run_forked(lambda: _inside(ns, body))
    assert seen["elements"] == []
    assert "'rate': 3" in seen["listing"] and "'rate': 7" not in seen["listing"]


@pytest.mark.parametrize(
    "limits",
    [
        {"per_ipv4_per_s": 1, "per_ipv4_burst": 1, "total_per_s": 1, "total_burst": 1},
        {"per_ipv4_per_s": MAX_RATE, "per_ipv4_burst": MAX_BURST, "total_per_s": MAX_RATE, "total_burst": MAX_BURST},
        {"per_ipv4_per_s": 1, "per_ipv4_burst": MAX_BURST, "established_timeout_s": 86_400 + 30},
        {"max_established": 2**40, "listen_address": "198.51.100.2", "ports": (53, 500, 3544, 4500, 65535)},
    ],
    ids=["smallest", "largest", "slowest-refill", "many-ports"],
)
def test_the_extremes_the_configuration_accepts_load(limits: dict[str, Any]) -> None:
    def body() -> bool:
        lane = NftFastLane(rules(**limits))
        lane.close()
        return True

    with netns() as (ns,):
        assert run_forked(lambda: _inside(ns, body))


def _echo(src: IPv6Address, seq: int) -> bytes:
    return build_echo_request(src.packed, HA.packed, 0x4D36, seq)


def _send_and_count(sender: socket.socket, receiver: socket.socket, packets: list[bytes]) -> int:
    for packet in packets:
        sender.sendto(packet, ("127.0.0.1", PORT))
    got = 0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            receiver.recv(2048)
        except BlockingIOError:
            if packets and got >= len(packets):
                break
            time.sleep(0.01)
            continue
        got += 1
    return got


def test_the_kernel_polices_unknown_sources_and_lets_established_ones_through() -> None:
    def body() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", PORT))
        receiver.setblocking(False)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind(("127.0.0.1", 40000))
        lane = NftFastLane(rules())
        flood = [_echo(IPv6Address(int(OTHER) + i), i) for i in range(50)]
        seen["unknown"] = _send_and_count(sender, receiver, flood)
        seen["first_read"] = lane.counters()  # reading resets the kernel's counters: the totals go on here
        lane.update([(int(MN), LOCAL, 40000, PORT)], [])
        seen["established"] = _send_and_count(sender, receiver, [_echo(MN, i) for i in range(50)])
        # The same endpoint with another inner source is not established: policed (its bucket is empty).
        seen["same_endpoint_new_source"] = _send_and_count(sender, receiver, flood[:10])
        seen["counters"] = lane.counters()
        # Read again with the ruleset unchanged since: the kernel's new counts, not the last read's.
        _send_and_count(sender, receiver, [_echo(MN, i) for i in range(5)])
        seen["again"] = lane.counters()
        lane.close()
        seen["after_close"] = _send_and_count(sender, receiver, flood[:10])
        return seen

    with netns() as (ns,):
        seen = run_forked(lambda: _inside(ns, body))
    assert 5 <= seen["unknown"] <= 7, seen  # the burst, and a token or two refilled meanwhile
    assert seen["established"] == 50
    assert seen["same_endpoint_new_source"] <= 2
    counters = seen["counters"]
    assert counters["established"][0] == 50
    assert counters["passed"][0] == seen["unknown"] + seen["same_endpoint_new_source"]
    assert counters["policed_per_ipv4"][0] + counters["passed"][0] == 60
    assert seen["first_read"]["policed_per_ipv4"][0] == 50 - seen["unknown"]
    assert seen["again"]["established"][0] == 55
    assert seen["after_close"] == 10


def test_the_ceiling_holds_many_sources_together() -> None:
    def body() -> dict[str, Any]:
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("0.0.0.0", PORT))
        receiver.setblocking(False)
        lane = NftFastLane(rules(per_ipv4_per_s=1000, per_ipv4_burst=1000, total_per_s=1, total_burst=5))
        senders = []
        for last in range(1, 21):
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sender.bind((f"127.0.0.{last}", 0))
            senders.append(sender)
        # All within a fraction of a second: the ceiling's bucket has no time to refill much.
        for sender in senders:
            for i in range(5):
                sender.sendto(_echo(OTHER, i), ("127.0.0.1", PORT))
        got = _send_and_count(senders[0], receiver, [])
        for sender in senders:
            sender.close()
        counters = lane.counters()
        lane.close()
        return {"got": got, "ceiling": counters["policed_ceiling"][0]}

    with netns() as (ns,):
        seen = run_forked(lambda: _inside(ns, body))
    assert 5 <= seen["got"] <= 8, seen
    assert seen["ceiling"] == 100 - seen["got"]


def test_established_elements_follow_the_core_through_activation_and_expiry() -> None:
    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        core = GatewayCore(
            CoreSettings(prefixes=(IPv6Network("fd6d:3674:a1b2::/48"),), home_agents=(HA,), active_lifetime_s=30.0),
            1000.0,
        )
        lane = NftFastLane(rules())
        fast = FastLane(core, lane, (PORT,))
        fast.start(asyncio.get_running_loop())
        nat = int(IPv4Address("198.51.100.11"))
        assert core.datagram_from_mn(_echo(MN, 1), nat, 40000, 0, 1000.0) is Verdict.FORWARDED
        assert core.packet_from_ha(build_echo_request(HA.packed, MN.packed, 1, 1), 1000.0) is Verdict.FORWARDED
        fast.poke()
        await asyncio.sleep(0.1)
        seen["active"] = lane.established()
        core.collect_garbage(1031.0)
        fast.poke()
        await asyncio.sleep(0.1)
        seen["expired"] = lane.established()
        fast.stop()
        lane.close()
        seen["table"] = table_exists(TABLE)
        return seen

    with netns() as (ns,):
        seen = run_in(ns, main)
    assert seen["active"] == [(int(MN), int(IPv4Address("198.51.100.11")), 40000, PORT)]
    assert seen["expired"] == []
    assert not seen["table"]


def test_an_unloadable_binding_is_a_platform_error() -> None:
    class Refusing:
        def cmd(self, cmdline: str) -> tuple[int, str, str]:
            return 1, "", "Error: Could not process rule: Operation not permitted\n"

        def json_cmd(self, json_root: Any) -> tuple[int, Any, str]:
            return 1, "", "Error: Could not process rule: Operation not permitted\n"

    with pytest.raises(PlatformError, match="Operation not permitted") as info:
        NftFastLane(rules(), binding=Refusing())
    assert info.value.hint is not None and "CAP_NET_ADMIN" in info.value.hint
