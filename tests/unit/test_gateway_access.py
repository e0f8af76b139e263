"""The gateway core in enrolled mode (docs/enrolled-access.md 4), and open mode pinned to the draft's bytes."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from m6t.gateway import Counter, Drop, GatewayCore, Verdict
from m6t.gateway.metrics import core_metrics, render
from m6t.protocol import build_keepalive
from m6t.protocol.access import AccessVerifier, Sealer
from tests.unit.test_gateway_core import MN, MN2, NAT1, NAT2, PORT, T0, drained, from_ha, make_core, to_ha

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
WALL = 1_767_225_600.0
OFFSET = WALL - T0
"""The core runs on T0 (monotonic); headers are stamped with WALL."""


def enrolled(**overrides: object) -> GatewayCore:
    core = make_core(T0, **overrides)
    core.access = AccessVerifier([KEY], wall_offset=OFFSET)
    return core


def sealed(packet: bytes, key: bytes = KEY, nonce: bytes = b"n0nce-01", wall: float = WALL) -> bytes:
    return Sealer(key).seal(packet, wall, nonce)


def nothing_happened(core: GatewayCore) -> None:
    assert drained(core) == ([], [])
    assert core.temporary_states == 0 and core.active_states == 0
    assert core.counters[Counter.STATES_CREATED] == 0
    assert len(core.limiter) == 0, "a refused datagram must cost its source no rate allowance"


# --------------------------------------------------------------------------- open mode: the draft, to the byte


def test_open_mode_is_the_drafts_byte_for_byte() -> None:
    core = make_core()
    first = to_ha(data=b"first")
    assert core.datagram_from_mn(first, NAT1, PORT, 0, T0) is Verdict.FORWARDED
    reply = from_ha()
    assert core.packet_from_ha(reply, T0) is Verdict.FORWARDED
    assert core.datagram_from_mn(build_keepalive(MN.packed), NAT1, PORT, 0, T0) is Verdict.REPLIED
    ha, mn = core.take_outputs()
    assert ha == [first] and ha[0] is first  # the very object: nothing stripped, nothing added
    endpoint = (int(IPv4Address(NAT1)) << 24) | (PORT << 8)
    assert mn[0] == (endpoint, reply)
    assert mn[1] == (
        endpoint,
        bytes.fromhex("6000000000003b40fe800000000000000000000000000001") + MN.packed,
    )


def test_open_mode_drops_a_sealed_datagram_as_not_ipv6() -> None:
    core = make_core()
    assert core.datagram_from_mn(sealed(to_ha()), NAT1, PORT, 0, T0) is Verdict.DROPPED
    assert core.drops[Drop.MN_NOT_IPV6] == 1
    nothing_happened(core)


def test_open_mode_metrics_list_no_enrolment_reasons() -> None:
    text = render(core_metrics(make_core()))
    assert "auth_" not in text and "unauthenticated" not in text and "access_keys" not in text


# --------------------------------------------------------------------------- enrolled mode


def test_a_sealed_first_packet_creates_a_state_and_reaches_the_ha_unsealed() -> None:
    core = enrolled()
    packet = to_ha()
    assert core.datagram_from_mn(sealed(packet), NAT1, PORT, 0, T0) is Verdict.FORWARDED
    ha, mn = drained(core)
    assert ha == [packet] and mn == []
    state = core.state(MN, T0)
    assert state is not None and not state.active and state.ipv4 == IPv4Address(NAT1)
    assert core.counters[Counter.TO_HA_BYTES] == len(packet)
    assert core.counters[Counter.MN_BYTES] == len(packet) + 40


def test_without_the_header_nothing_is_created_nor_answered() -> None:
    core = enrolled()
    assert core.datagram_from_mn(to_ha(), NAT1, PORT, 0, T0) is Verdict.DROPPED
    assert core.drops[Drop.MN_UNAUTHENTICATED] == 1
    nothing_happened(core)


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (sealed(to_ha(), key=OTHER_KEY), Drop.MN_AUTH_UNKNOWN_KEY),
        (sealed(to_ha(), wall=WALL - 3600), Drop.MN_AUTH_STALE),
        (sealed(to_ha())[:60], Drop.MN_AUTH_MALFORMED),
        (b"\x02" + sealed(to_ha())[1:], Drop.MN_AUTH_MALFORMED),
        (sealed(to_ha())[:30] + bytes(10) + to_ha(), Drop.MN_AUTH_BAD_MAC),
        (sealed(to_ha())[:40] + to_ha(src=MN2), Drop.MN_AUTH_BAD_MAC),
    ],
    ids=["wrong-key", "stale", "truncated", "other-type", "forged-mac", "other-source"],
)
def test_every_failed_check_is_counted_and_silent(datagram: bytes, reason: Drop) -> None:
    core = enrolled()
    assert core.datagram_from_mn(datagram, NAT1, PORT, 0, T0) is Verdict.DROPPED
    assert core.drops[reason] == 1
    assert sum(core.drops) == 1
    nothing_happened(core)


def test_a_replay_from_another_ipv4_creates_nothing_and_moves_nothing() -> None:
    core = enrolled()
    first = sealed(to_ha())
    assert core.datagram_from_mn(first, NAT1, PORT, 0, T0) is Verdict.FORWARDED
    core.take_outputs()
    assert core.datagram_from_mn(first, NAT2, PORT, 0, T0 + 0.01) is Verdict.DROPPED
    assert core.drops[Drop.MN_AUTH_REPLAYED] == 1
    state = core.state(MN, T0)
    assert state is not None and state.ipv4 == IPv4Address(NAT1)
    assert core.counters[Counter.STATES_CREATED] == 1
    assert drained(core) == ([], [])


def test_after_the_state_exists_plain_datagrams_and_keepalives_pass() -> None:
    core = enrolled()
    assert core.datagram_from_mn(sealed(to_ha()), NAT1, PORT, 0, T0) is Verdict.FORWARDED
    assert core.packet_from_ha(from_ha(), T0) is Verdict.FORWARDED
    core.take_outputs()
    assert core.datagram_from_mn(to_ha(seq=2), NAT1, PORT, 0, T0) is Verdict.FORWARDED
    assert core.datagram_from_mn(build_keepalive(MN.packed), NAT1, PORT, 0, T0) is Verdict.REPLIED
    # Still sealed because the MN has not seen the confirmation yet: accepted the same way.
    assert core.datagram_from_mn(sealed(to_ha(seq=3), nonce=b"n0nce-02"), NAT1, PORT, 0, T0) is Verdict.FORWARDED
    # The binding still rules: the same address from elsewhere is refused, sealed or not.
    assert core.datagram_from_mn(sealed(to_ha(seq=4), nonce=b"n0nce-03"), NAT2, PORT, 0, T0) is Verdict.DROPPED
    assert core.drops[Drop.MN_BINDING_MISMATCH] == 1
    assert core.counters[Counter.STATES_CREATED] == 1


def test_checks_come_before_the_rate_limit() -> None:
    core = enrolled(new_states_per_ipv4_burst=1, new_states_per_ipv4_per_s=0.001)
    for i in range(50):
        forged = sealed(to_ha(src=IPv6Address(int(MN) + i)), key=OTHER_KEY, nonce=i.to_bytes(8))
        assert core.datagram_from_mn(forged, NAT1, PORT, 0, T0) is Verdict.DROPPED
    assert core.drops[Drop.MN_RATE_LIMITED] == 0
    # The source's one allowance is intact for its real first packet.
    assert core.datagram_from_mn(sealed(to_ha()), NAT1, PORT, 0, T0) is Verdict.FORWARDED


def test_rotation_and_removal_take_effect_without_dropping_states() -> None:
    core = enrolled()
    assert core.datagram_from_mn(sealed(to_ha()), NAT1, PORT, 0, T0) is Verdict.FORWARDED
    assert core.packet_from_ha(from_ha(), T0) is Verdict.FORWARDED
    assert core.access is not None
    core.access.set_keys([OTHER_KEY])  # a reload: the old key went, a new one came
    assert core.active_states == 1
    assert core.datagram_from_mn(to_ha(seq=9), NAT1, PORT, 0, T0) is Verdict.FORWARDED
    assert core.datagram_from_mn(sealed(to_ha(MN2), nonce=b"n0nce-09"), NAT2, PORT, 0, T0) is Verdict.DROPPED
    assert core.drops[Drop.MN_AUTH_UNKNOWN_KEY] == 1
    assert core.datagram_from_mn(sealed(to_ha(MN2), key=OTHER_KEY), NAT2, PORT, 0, T0) is Verdict.FORWARDED


def test_a_flood_of_forged_headers_leaves_states_and_a_legitimate_mn_untouched() -> None:
    core = enrolled()
    assert core.datagram_from_mn(sealed(to_ha()), NAT1, PORT, 0, T0) is Verdict.FORWARDED
    assert core.packet_from_ha(from_ha(), T0) is Verdict.FORWARDED
    core.take_outputs()
    template = bytearray(sealed(to_ha(src=MN2), nonce=bytes(8)))
    for i in range(20_000):  # bounded: the lab sends 100 000 over the wire
        template[16:24] = i.to_bytes(8)
        template[24] = i & 0xFF  # a MAC guess
        assert core.datagram_from_mn(bytes(template), NAT2, PORT + i % 7, 0, T0) is Verdict.DROPPED
    assert core.drops[Drop.MN_AUTH_BAD_MAC] == 20_000
    assert (core.active_states, core.temporary_states) == (1, 0)
    assert core.access is not None and len(core.access.cache) == 1
    assert core.datagram_from_mn(to_ha(seq=5), NAT1, PORT, 0, T0) is Verdict.FORWARDED
    assert drained(core)[0] == [to_ha(seq=5)]


def test_enrolled_metrics_name_every_refusal() -> None:
    core = enrolled()
    core.datagram_from_mn(to_ha(), NAT1, PORT, 0, T0)
    text = render(core_metrics(core))
    for reason in ("unauthenticated", "auth_malformed", "auth_unknown_key", "auth_stale", "auth_bad_mac"):
        assert f'reason="{reason}"' in text
    assert 'm6t_gateway_drops_total{side="mn",reason="unauthenticated"} 1' in text
    assert "m6t_gateway_access_keys 1" in text


def test_ha_side_is_unchanged_by_enrolment() -> None:
    core = enrolled()
    assert core.packet_from_ha(from_ha(), T0) is Verdict.DROPPED
    assert core.drops[Drop.HA_NO_STATE] == 1
