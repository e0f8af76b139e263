"""The gateway core's rules (draft 2.3, 2.4, 3, 6.1), driven with a fake clock and no I/O."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m6t.gateway import CoreSettings, Counter, Drop, GatewayCore, Verdict, unpack_endpoint
from m6t.protocol import KEEPALIVE_PEER, build_echo_request, build_ipv6_header, build_keepalive, parse_ipv6
from m6t.protocol.values import MergedPacket

PREFIX = IPv6Network("fd6d:3674:a1b2::/48")
HA = IPv6Address("fd00:ab::1")
OTHER_HA = IPv6Address("fd00:ab::3")
MN = IPv6Address("fd6d:3674:a1b2:0:1:a1:b2:c3")
MN2 = IPv6Address("fd6d:3674:a1b2:0:2:d4:e5:f6")
NAT1 = int(IPv4Address("198.51.100.11"))
NAT2 = int(IPv4Address("198.51.100.12"))
WAN2 = int(IPv4Address("198.51.100.66"))
PORT = 40000

T0 = 1000.0


def make_core(now: float = T0, **overrides: object) -> GatewayCore:
    fields: dict[str, object] = {
        "prefixes": (PREFIX,),
        "home_agents": (HA, OTHER_HA),
        "temporary_lifetime_s": 0.5,
        "active_lifetime_s": 30.0,
        "max_temporary": 100,
        "max_states": 1000,
        "new_states_per_ipv4_per_s": 1.0,
        "new_states_per_ipv4_burst": 5,
        "sockets": 2,
    }
    fields.update(overrides)
    return GatewayCore(CoreSettings(**fields), now)  # type: ignore[arg-type]


def to_ha(src: IPv6Address = MN, dst: IPv6Address = HA, seq: int = 1, data: bytes = b"") -> bytes:
    return build_echo_request(src.packed, dst.packed, 7, seq, data=data)


def from_ha(dst: IPv6Address = MN, src: IPv6Address = HA, seq: int = 1) -> bytes:
    return build_echo_request(src.packed, dst.packed, 9, seq)


def keepalive(src: IPv6Address = MN) -> bytes:
    return build_keepalive(src.packed)


def drained(core: GatewayCore) -> tuple[list[bytes], list[tuple[tuple[int, int, int], bytes]]]:
    ha, mn = core.take_outputs()
    return [bytes(p) for p in ha], [(unpack_endpoint(e), bytes(p)) for e, p in mn]


def activate(core: GatewayCore, now: float = T0, src: IPv6Address = MN, ipv4: int = NAT1, port: int = PORT) -> None:
    assert core.datagram_from_mn(to_ha(src), ipv4, port, 0, now) is Verdict.FORWARDED
    assert core.packet_from_ha(from_ha(src), now) is Verdict.FORWARDED
    core.take_outputs()


# --------------------------------------------------------------------------- the first exchange (draft 3)


def test_first_packet_creates_a_temporary_state_and_reaches_the_ha() -> None:
    core = make_core()
    packet = to_ha()
    assert core.datagram_from_mn(packet, NAT1, PORT, 0, T0) is Verdict.FORWARDED
    ha, mn = drained(core)
    assert ha == [packet] and mn == []
    state = core.state(MN, T0)
    assert state is not None and not state.active
    assert (state.ipv4, state.port, state.socket) == (IPv4Address(NAT1), PORT, 0)
    assert core.temporary_states == 1 and core.active_states == 0
    assert core.counters[Counter.STATES_CREATED] == 1


def test_reply_from_the_ha_promotes_the_temporary_state_and_goes_to_the_mn() -> None:
    core = make_core()
    core.datagram_from_mn(to_ha(), NAT1, PORT, 0, T0)
    core.take_outputs()
    reply = from_ha()
    assert core.packet_from_ha(reply, T0 + 0.1) is Verdict.FORWARDED
    _, mn = drained(core)
    assert mn == [((NAT1, PORT, 0), reply)]
    state = core.state(MN, T0 + 0.1)
    assert state is not None and state.active
    assert (core.temporary_states, core.active_states) == (0, 1)
    assert core.counters[Counter.STATES_PROMOTED] == 1


def test_traffic_flows_both_ways_once_active() -> None:
    core = make_core()
    activate(core)
    for seq in range(5):
        assert core.datagram_from_mn(to_ha(seq=seq), NAT1, PORT, 0, T0 + seq) is Verdict.FORWARDED
        assert core.packet_from_ha(from_ha(seq=seq), T0 + seq) is Verdict.FORWARDED
    ha, mn = drained(core)
    assert len(ha) == 5 and len(mn) == 5
    assert core.counters[Counter.TO_HA_PACKETS] == 6 and core.counters[Counter.TO_MN_PACKETS] == 6
    assert core.counters[Counter.STATES_CREATED] == 1


def test_packet_from_the_ha_without_a_state_is_dropped() -> None:
    core = make_core()
    assert core.packet_from_ha(from_ha(), T0) is Verdict.DROPPED
    assert core.drops[Drop.HA_NO_STATE] == 1
    assert drained(core) == ([], [])
    assert core.state(MN) is None


def test_packet_from_the_ha_outside_the_prefixes_is_dropped() -> None:
    core = make_core()
    activate(core)
    assert core.packet_from_ha(from_ha(dst=IPv6Address("fd00:ab::5")), T0) is Verdict.DROPPED
    assert core.drops[Drop.HA_DESTINATION_NOT_IN_PREFIX] == 1


@pytest.mark.parametrize(
    ("packet", "drop"),
    [
        (b"\x60" + bytes(38), Drop.HA_TOO_SHORT),
        (b"\x40" + bytes(39), Drop.HA_NOT_IPV6),
        (from_ha() + b"x", Drop.HA_LENGTH_MISMATCH),
    ],
)
def test_malformed_packets_from_the_ha_are_dropped_by_reason(packet: bytes, drop: Drop) -> None:
    core = make_core()
    activate(core)
    assert core.packet_from_ha(packet, T0) is Verdict.DROPPED
    assert core.drops[drop] == 1
    assert sum(core.drops) == 1


# --------------------------------------------------------------------------- validation of MN datagrams


def _dst_fe80_with_payload() -> bytes:
    return build_ipv6_header(MN.packed, KEEPALIVE_PEER, 59, 4) + b"abcd"


@pytest.mark.parametrize(
    ("packet", "drop"),
    [
        (b"", Drop.MN_TOO_SHORT),
        (bytes(39), Drop.MN_TOO_SHORT),
        (b"\x40" + bytes(60), Drop.MN_NOT_IPV6),
        (to_ha()[:-1], Drop.MN_LENGTH_MISMATCH),
        (to_ha() + b"\x00", Drop.MN_LENGTH_MISMATCH),
        (to_ha(src=IPv6Address("fd6d:3674:a1b3::1")), Drop.MN_SOURCE_NOT_IN_PREFIX),
        (to_ha(src=IPv6Address("fe80::99")), Drop.MN_SOURCE_NOT_IN_PREFIX),
        (to_ha(dst=IPv6Address("fd00:ab::99")), Drop.MN_DESTINATION_NOT_ALLOWED),
        (to_ha(dst=IPv6Address("2001:db8::1")), Drop.MN_DESTINATION_NOT_ALLOWED),
        (to_ha(dst=IPv6Address(KEEPALIVE_PEER)), Drop.MN_DESTINATION_NOT_ALLOWED),
        (_dst_fe80_with_payload(), Drop.MN_DESTINATION_NOT_ALLOWED),
    ],
)
def test_invalid_datagrams_are_dropped_by_reason_and_create_nothing(packet: bytes, drop: Drop) -> None:
    core = make_core()
    assert core.datagram_from_mn(packet, NAT1, PORT, 0, T0) is Verdict.DROPPED
    assert core.drops[drop] == 1
    assert sum(core.drops) == 1
    assert len(core.table) == 0 and core.counters[Counter.STATES_CREATED] == 0
    assert drained(core) == ([], [])
    assert core.counters[Counter.MN_PACKETS] == 1 and core.counters[Counter.MN_BYTES] == len(packet)


@pytest.mark.parametrize(("ipv4", "port"), [(NAT1, 0), (0, PORT)])
def test_unanswerable_outer_source_is_dropped(ipv4: int, port: int) -> None:
    core = make_core()
    assert core.datagram_from_mn(to_ha(), ipv4, port, 0, T0) is Verdict.DROPPED
    assert core.drops[Drop.MN_BAD_OUTER_SOURCE] == 1
    assert len(core.table) == 0


def test_an_active_mn_still_reaches_only_the_configured_home_agents() -> None:
    core = make_core()
    activate(core)
    assert core.datagram_from_mn(to_ha(dst=IPv6Address("fd00:cd::1")), NAT1, PORT, 0, T0) is Verdict.DROPPED
    assert core.drops[Drop.MN_DESTINATION_NOT_ALLOWED] == 1
    assert core.datagram_from_mn(to_ha(dst=OTHER_HA), NAT1, PORT, 0, T0) is Verdict.FORWARDED


def test_every_configured_prefix_is_accepted() -> None:
    other = IPv6Network("fd11:2233:4455:0:7::/80")
    core = make_core(prefixes=(PREFIX, other))
    src = IPv6Address("fd11:2233:4455:0:7:1:2:3")
    assert core.datagram_from_mn(to_ha(src=src), NAT1, PORT, 0, T0) is Verdict.FORWARDED
    near = IPv6Address("fd11:2233:4455:0:8:1:2:3")
    assert core.datagram_from_mn(to_ha(src=near), NAT1, PORT, 0, T0) is Verdict.DROPPED


# --------------------------------------------------------------------------- states are never updated (2.4, 6.1.1)


@pytest.mark.parametrize("promoted", [False, True])
@pytest.mark.parametrize(
    ("ipv4", "port", "sock"),
    [(WAN2, PORT, 0), (NAT1, PORT + 1, 0), (NAT1, PORT, 1)],
    ids=["other-ipv4", "other-port", "other-socket"],
)
def test_hijack_from_another_endpoint_is_dropped_and_changes_nothing(
    promoted: bool, ipv4: int, port: int, sock: int
) -> None:
    core = make_core()
    core.datagram_from_mn(to_ha(), NAT1, PORT, 0, T0)
    if promoted:
        core.packet_from_ha(from_ha(), T0)
    core.take_outputs()
    before = core.table.get(int(MN))
    counters_before = list(core.counters)

    assert core.datagram_from_mn(to_ha(seq=2), ipv4, port, sock, T0 + 0.1) is Verdict.DROPPED
    assert core.datagram_from_mn(keepalive(), ipv4, port, sock, T0 + 0.1) is Verdict.DROPPED

    assert core.drops[Drop.MN_BINDING_MISMATCH] == 2
    assert core.table.get(int(MN)) == before
    assert drained(core) == ([], [])
    assert core.counters[Counter.STATES_CREATED] == counters_before[Counter.STATES_CREATED]
    # The MN's own binding is intact: the HA's packets still go to it and nowhere else.
    assert core.packet_from_ha(from_ha(seq=3), T0 + 0.2) is Verdict.FORWARDED
    _, mn = drained(core)
    assert [endpoint for endpoint, _ in mn] == [(NAT1, PORT, 0)]


def test_hijack_attempt_does_not_refresh_the_state() -> None:
    core = make_core(active_lifetime_s=10.0)
    activate(core)
    for i in range(1, 10):
        core.datagram_from_mn(to_ha(seq=i), WAN2, PORT, 0, T0 + i)
    assert core.state(MN, T0 + 10.5) is None


# --------------------------------------------------------------------------- keepalive (2.3)


def test_keepalive_for_a_matching_active_state_is_answered_with_addresses_reversed() -> None:
    core = make_core()
    activate(core)
    request = keepalive()
    assert core.datagram_from_mn(request, NAT1, PORT, 0, T0 + 1) is Verdict.REPLIED
    ha, mn = drained(core)
    assert ha == []
    assert len(mn) == 1
    endpoint, reply = mn[0]
    assert endpoint == (NAT1, PORT, 0)
    header = parse_ipv6(reply)
    assert header.src == KEEPALIVE_PEER and header.dst == MN.packed and header.next_header == 59
    assert len(reply) <= len(request)
    assert core.counters[Counter.KEEPALIVES] == 1


def test_keepalive_for_a_temporary_state_is_dropped() -> None:
    core = make_core()
    core.datagram_from_mn(to_ha(), NAT1, PORT, 0, T0)
    core.take_outputs()
    assert core.datagram_from_mn(keepalive(), NAT1, PORT, 0, T0) is Verdict.DROPPED
    assert core.drops[Drop.MN_KEEPALIVE_WITHOUT_ACTIVE_STATE] == 1
    assert drained(core) == ([], [])


def test_keepalive_without_state_is_dropped_and_creates_nothing() -> None:
    core = make_core()
    assert core.datagram_from_mn(keepalive(), NAT1, PORT, 0, T0) is Verdict.DROPPED
    assert core.drops[Drop.MN_KEEPALIVE_WITHOUT_ACTIVE_STATE] == 1
    assert len(core.table) == 0
    assert drained(core) == ([], [])


def test_keepalive_from_a_mismatching_endpoint_is_dropped() -> None:
    core = make_core()
    activate(core)
    assert core.datagram_from_mn(keepalive(), NAT1, PORT + 1, 0, T0) is Verdict.DROPPED
    assert core.drops[Drop.MN_BINDING_MISMATCH] == 1
    assert drained(core) == ([], [])


def test_keepalives_keep_an_active_state_alive() -> None:
    core = make_core(active_lifetime_s=30.0)
    activate(core)
    for i in range(1, 6):
        assert core.datagram_from_mn(keepalive(), NAT1, PORT, 0, T0 + 20 * i) is Verdict.REPLIED
        core.collect_garbage(T0 + 20 * i)
    assert core.state(MN, T0 + 110) is not None
    assert core.packet_from_ha(from_ha(), T0 + 110) is Verdict.FORWARDED


# --------------------------------------------------------------------------- lifetimes


def test_temporary_state_expires_after_its_short_lifetime() -> None:
    core = make_core(temporary_lifetime_s=0.5)
    core.datagram_from_mn(to_ha(), NAT1, PORT, 0, T0)
    assert core.state(MN, T0 + 0.49) is not None
    assert core.packet_from_ha(from_ha(), T0 + 0.52) is Verdict.DROPPED
    assert core.drops[Drop.HA_NO_STATE] == 1
    assert core.collect_garbage(T0 + 0.52)
    assert core.table.get(int(MN)) is None
    assert core.table.expired_temporary == 1 and core.temporary_states == 0


def test_temporary_state_is_promoted_just_before_it_expires() -> None:
    core = make_core(temporary_lifetime_s=0.5)
    core.datagram_from_mn(to_ha(), NAT1, PORT, 0, T0)
    assert core.packet_from_ha(from_ha(), T0 + 0.49) is Verdict.FORWARDED
    core.collect_garbage(T0 + 5)
    assert core.state(MN, T0 + 5) is not None


def test_the_mn_cannot_keep_its_own_temporary_state_alive() -> None:
    core = make_core(temporary_lifetime_s=0.5)
    for i in range(6):
        core.datagram_from_mn(to_ha(seq=i), NAT1, PORT, 0, T0 + 0.1 * i)
    assert core.counters[Counter.STATES_CREATED] == 1
    assert core.packet_from_ha(from_ha(), T0 + 0.55) is Verdict.DROPPED


def test_active_state_expires_without_traffic() -> None:
    core = make_core(active_lifetime_s=30.0)
    activate(core)
    assert core.state(MN, T0 + 29.9) is not None
    assert core.packet_from_ha(from_ha(), T0 + 30.1) is Verdict.DROPPED
    core.collect_garbage(T0 + 30.1)
    assert core.table.get(int(MN)) is None
    assert core.table.expired_active == 1 and core.active_states == 0


@pytest.mark.parametrize("direction", ["from-mn", "from-ha"])
def test_traffic_in_either_direction_refreshes_an_active_state(direction: str) -> None:
    core = make_core(active_lifetime_s=30.0)
    activate(core)
    for i in range(1, 5):
        now = T0 + 20 * i
        if direction == "from-mn":
            assert core.datagram_from_mn(to_ha(seq=i), NAT1, PORT, 0, now) is Verdict.FORWARDED
        else:
            assert core.packet_from_ha(from_ha(seq=i), now) is Verdict.FORWARDED
        core.collect_garbage(now)
    assert core.state(MN, T0 + 100) is not None
    assert core.state(MN, T0 + 111) is None


def test_an_expired_binding_can_be_taken_by_a_new_endpoint() -> None:
    core = make_core(temporary_lifetime_s=0.5)
    core.datagram_from_mn(to_ha(), NAT1, PORT, 0, T0)
    # Expired but not yet collected: the old binding no longer counts.
    assert core.datagram_from_mn(to_ha(), NAT2, PORT, 1, T0 + 1) is Verdict.FORWARDED
    state = core.state(MN, T0 + 1)
    assert state is not None and state.ipv4 == IPv4Address(NAT2) and state.socket == 1
    assert core.table.expired_temporary == 1 and core.temporary_states == 1
    # The old wheel entry must not remove the new state early.
    assert core.collect_garbage(T0 + 1.2)
    assert core.state(MN, T0 + 1.2) is not None
    core.collect_garbage(T0 + 2)
    assert core.table.get(int(MN)) is None and core.temporary_states == 0


# --------------------------------------------------------------------------- sockets


def test_replies_leave_from_the_socket_the_state_came_in_on() -> None:
    core = make_core()
    core.datagram_from_mn(to_ha(MN), NAT1, PORT, 1, T0)
    core.datagram_from_mn(to_ha(MN2), NAT2, PORT, 0, T0)
    core.take_outputs()
    core.packet_from_ha(from_ha(MN), T0)
    core.packet_from_ha(from_ha(MN2), T0)
    core.datagram_from_mn(keepalive(MN), NAT1, PORT, 1, T0)
    _, mn = drained(core)
    assert [endpoint for endpoint, _ in mn] == [(NAT1, PORT, 1), (NAT2, PORT, 0), (NAT1, PORT, 1)]


# --------------------------------------------------------------------------- merged packets (GSO/GRO offloads)


def merged(packet: bytes, segments: int, overhead: int) -> MergedPacket:
    """``packet`` as a platform with offloads hands it over: one header checked for ``segments`` packets."""
    result = MergedPacket(packet)
    result.segments = segments
    result.overhead = overhead
    return result


def test_a_merged_packet_is_counted_as_the_packets_it_stands_for_both_ways() -> None:
    core = make_core()
    up = merged(to_ha(data=bytes(8 * 1000)), 8, 48)
    down = merged(to_ha(HA, MN, data=bytes(5 * 1200)), 5, 48)
    assert core.datagram_from_mn(up, NAT1, PORT, 0, T0) is Verdict.FORWARDED
    assert core.packet_from_ha(down, T0) is Verdict.FORWARDED
    to_tun, to_mns = core.take_outputs()
    # The packets themselves go on whole: the platform splits them on the way out.
    assert to_tun == [up] and to_mns[0][1] is down
    up_bytes, down_bytes = len(up) + 7 * 48, len(down) + 4 * 48
    c = core.counters
    assert (c[Counter.MN_PACKETS], c[Counter.MN_BYTES]) == (8, up_bytes)
    assert (c[Counter.TO_HA_PACKETS], c[Counter.TO_HA_BYTES]) == (8, up_bytes)
    assert (c[Counter.HA_PACKETS], c[Counter.HA_BYTES]) == (5, down_bytes)
    assert (c[Counter.TO_MN_PACKETS], c[Counter.TO_MN_BYTES]) == (5, down_bytes)
    # One state, however many packets its first datagram stood for.
    assert c[Counter.STATES_CREATED] == c[Counter.STATES_PROMOTED] == 1


@pytest.mark.parametrize(
    ("case", "drop"),
    [
        ("length", Drop.MN_LENGTH_MISMATCH),
        ("prefix", Drop.MN_SOURCE_NOT_IN_PREFIX),
        ("hijack", Drop.MN_BINDING_MISMATCH),
        ("rate", Drop.MN_RATE_LIMITED),
        ("ha-no-state", Drop.HA_NO_STATE),
    ],
)
def test_a_dropped_merged_packet_is_counted_as_that_many_drops(case: str, drop: Drop) -> None:
    core = make_core(new_states_per_ipv4_burst=1)
    activate(core)
    verdict: Verdict
    if case == "length":
        verdict = core.datagram_from_mn(merged(to_ha(data=bytes(3000))[:-1], 3, 48), NAT1, PORT, 0, T0)
    elif case == "prefix":
        verdict = core.datagram_from_mn(merged(to_ha(OTHER_HA, data=bytes(3000)), 3, 48), NAT1, PORT, 0, T0)
    elif case == "hijack":
        verdict = core.datagram_from_mn(merged(to_ha(data=bytes(3000)), 3, 48), NAT2, PORT, 0, T0)
    elif case == "rate":
        verdict = core.datagram_from_mn(merged(to_ha(MN2, data=bytes(3000)), 3, 48), NAT1, PORT + 1, 0, T0)
    else:
        verdict = core.packet_from_ha(merged(to_ha(HA, MN2, data=bytes(3000)), 3, 48), T0)
    assert verdict is Verdict.DROPPED
    assert core.drops[drop] == 3 and sum(core.drops) == 3


# --------------------------------------------------------------------------- rate limit and caps (6.1.3)


def _source(n: int) -> IPv6Address:
    return IPv6Address(int(IPv6Address("fd6d:3674:a1b2:0:1::")) + n + 1)


def test_state_creation_is_rate_limited_per_ipv4_address_across_ports() -> None:
    core = make_core(new_states_per_ipv4_per_s=1.0, new_states_per_ipv4_burst=5)
    verdicts = [core.datagram_from_mn(to_ha(_source(i)), NAT1, 1000 + i, 0, T0) for i in range(8)]
    assert verdicts == [Verdict.FORWARDED] * 5 + [Verdict.DROPPED] * 3
    assert core.drops[Drop.MN_RATE_LIMITED] == 3
    assert core.temporary_states == 5
    # Another address has a bucket of its own.
    assert core.datagram_from_mn(to_ha(_source(100)), NAT2, 1000, 0, T0) is Verdict.FORWARDED
    # The bucket refills at the configured rate.
    assert core.datagram_from_mn(to_ha(_source(50)), NAT1, 2000, 0, T0 + 0.5) is Verdict.DROPPED
    assert core.datagram_from_mn(to_ha(_source(51)), NAT1, 2000, 0, T0 + 1.01) is Verdict.FORWARDED
    assert core.datagram_from_mn(to_ha(_source(52)), NAT1, 2000, 0, T0 + 1.02) is Verdict.DROPPED


def test_rate_limit_does_not_touch_existing_states() -> None:
    core = make_core(new_states_per_ipv4_per_s=1.0, new_states_per_ipv4_burst=1)
    activate(core)
    for i in range(20):
        assert core.datagram_from_mn(to_ha(seq=i), NAT1, PORT, 0, T0) is Verdict.FORWARDED
    assert core.drops[Drop.MN_RATE_LIMITED] == 0


def test_temporary_states_are_capped() -> None:
    core = make_core(max_temporary=3, new_states_per_ipv4_burst=100)
    verdicts = [core.datagram_from_mn(to_ha(_source(i)), NAT1, 1000 + i, 0, T0) for i in range(4)]
    assert verdicts == [Verdict.FORWARDED] * 3 + [Verdict.DROPPED]
    assert core.drops[Drop.MN_TEMPORARY_STATES_FULL] == 1
    assert core.drops[Drop.MN_RATE_LIMITED] == 0
    # Promotion frees a temporary slot.
    core.packet_from_ha(from_ha(_source(0)), T0)
    assert core.datagram_from_mn(to_ha(_source(3)), NAT1, 1003, 0, T0) is Verdict.FORWARDED


def test_total_states_are_capped() -> None:
    core = make_core(max_states=2, new_states_per_ipv4_burst=100)
    activate(core, src=_source(0))
    activate(core, src=_source(1))
    assert core.datagram_from_mn(to_ha(_source(2)), NAT1, 1002, 0, T0) is Verdict.DROPPED
    assert core.drops[Drop.MN_STATES_FULL] == 1


def test_a_cap_refusal_costs_no_rate_allowance() -> None:
    core = make_core(max_temporary=1, new_states_per_ipv4_per_s=0.001, new_states_per_ipv4_burst=2)
    assert core.datagram_from_mn(to_ha(_source(0)), NAT1, 1000, 0, T0) is Verdict.FORWARDED
    for i in range(1, 10):
        assert core.datagram_from_mn(to_ha(_source(i)), NAT1, 1000, 0, T0) is Verdict.DROPPED
    core.packet_from_ha(from_ha(_source(0)), T0)
    assert core.datagram_from_mn(to_ha(_source(20)), NAT1, 1000, 0, T0) is Verdict.FORWARDED


# --------------------------------------------------------------------------- garbage collection


def test_garbage_collection_works_in_bounded_slices() -> None:
    core = make_core(max_temporary=10_000, new_states_per_ipv4_burst=10_000, new_states_per_ipv4_per_s=1e6)
    for i in range(1000):
        core.datagram_from_mn(to_ha(_source(i)), NAT1, 1000, 0, T0)
    now = T0 + 1
    slices = 0
    while not core.collect_garbage(now, budget=64):
        slices += 1
        assert slices < 100
    assert slices >= 1000 // 64
    assert len(core.table) == 0 and core.table.expired_temporary == 1000


def test_garbage_collection_skips_states_not_due() -> None:
    core = make_core(max_temporary=10_000, new_states_per_ipv4_burst=10_000, new_states_per_ipv4_per_s=1e6)
    for i in range(500):
        activate(core, src=_source(i))
    # Each promoted state is looked at once, when its temporary deadline comes, and filed again...
    assert core.collect_garbage(T0 + 1)
    assert core.table.gc_visited == 500 and core.table.gc_refiled == 500
    # ...and then not again until its active deadline, however often the collector runs.
    for step in range(11, 290):
        assert core.collect_garbage(T0 + step * 0.1)
    assert core.table.gc_visited == 500
    assert core.active_states == 500


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="prefix"):
        CoreSettings(prefixes=(), home_agents=(HA,))
    with pytest.raises(ValueError, match="Home Agent"):
        CoreSettings(prefixes=(PREFIX,), home_agents=())
    with pytest.raises(ValueError, match="sockets"):
        CoreSettings(prefixes=(PREFIX,), home_agents=(HA,), sockets=0)
    with pytest.raises(ValueError, match="positive"):
        make_core(new_states_per_ipv4_per_s=0.0)


# --------------------------------------------------------------------------- robustness


@settings(max_examples=400, deadline=None)
@given(
    data=st.binary(max_size=200),
    ipv4=st.integers(0, 2**32 - 1),
    port=st.integers(0, 65535),
    sock=st.integers(0, 1),
    dt=st.floats(0, 1e6, allow_nan=False),
)
def test_arbitrary_datagrams_never_raise(data: bytes, ipv4: int, port: int, sock: int, dt: float) -> None:
    core = make_core()
    core.datagram_from_mn(data, ipv4, port, sock, T0 + dt)
    core.packet_from_ha(data, T0 + dt)
    core.collect_garbage(T0 + dt)


_header_like = st.builds(
    lambda src, dst, nh, body, extra: build_ipv6_header(src, dst, nh, len(body)) + body + extra,
    src=st.sampled_from([MN.packed, MN2.packed, HA.packed, bytes(16), b"\xff" * 16]),
    dst=st.sampled_from([HA.packed, OTHER_HA.packed, KEEPALIVE_PEER, MN.packed, bytes(16)]),
    nh=st.sampled_from([58, 59, 17, 0]),
    body=st.binary(max_size=40),
    extra=st.sampled_from([b"", b"\x00"]),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.booleans(),
            _header_like,
            st.sampled_from([NAT1, NAT2, WAN2]),
            st.sampled_from([PORT, PORT + 1]),
            st.integers(0, 1),
            st.floats(0, 2, allow_nan=False),
        ),
        max_size=40,
    )
)
def test_sequences_of_plausible_packets_keep_the_books_straight(
    steps: list[tuple[bool, bytes, int, int, int, float]],
) -> None:
    core = make_core(max_temporary=5, new_states_per_ipv4_burst=3)
    now = T0
    for from_mn, packet, ipv4, port, sock, dt in steps:
        now += dt
        verdict = core.datagram_from_mn(packet, ipv4, port, sock, now) if from_mn else core.packet_from_ha(packet, now)
        assert verdict in (Verdict.DROPPED, Verdict.FORWARDED, Verdict.REPLIED)
        core.collect_garbage(now)
        ha, mn = drained(core)
        # A reply is never bigger than what was received.
        assert all(len(p) <= len(packet) for p in ha)
        assert all(len(p) <= len(packet) for _, p in mn)
        table = core.table
        live = sum(len(shard) for shard in table.shards)
        assert table.temporary + table.active == live
        assert table.temporary <= 5
