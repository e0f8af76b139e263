"""The enrolled-access header: the page's test vectors, every refusal, rotation, and a fuzzed parser."""

from __future__ import annotations

import re
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m6t.protocol import PacketError, Reason, build_ipv6_header
from m6t.protocol.access import (
    ACCESS_HEADER_LEN,
    AccessVerifier,
    Refusal,
    ReplayCache,
    Sealer,
    fingerprint,
    key_id,
    parse_access_header,
    seal,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "enrolled-access.md"
KEY = bytes(range(32))
KEY2 = bytes(range(0x20, 0x40))
MN = IPv6Address("fd6d:3674:a1b2:0:1:a1:b2c3:d4e5").packed
MN2 = IPv6Address("fd6d:3674:a1b2:0:2:a1:b2c3:d4e5").packed
HA = IPv6Address("fd00:ab::1").packed
PACKET = build_ipv6_header(MN, HA, 59, 0)
NOW = 1_767_225_600.0
NONCE = bytes(8)


def vectors() -> list[dict[str, str]]:
    found = []
    for block in re.findall(r"```text\n(vector \d+\n.*?)```", DOC.read_text(), re.S):
        fields: dict[str, str] = {}
        for line in block.splitlines()[1:]:
            match = re.fullmatch(r"(key id|\S+)\s+(\S+)", line)
            assert match is not None, line
            fields[match[1]] = match[2]
        found.append(fields)
    return found


def test_the_page_has_vectors() -> None:
    assert len(vectors()) == 2


@pytest.mark.parametrize("vector", vectors(), ids=lambda v: v["timestamp"])
def test_vectors_from_the_page(vector: dict[str, str]) -> None:
    key = bytes.fromhex(vector["key"])
    packet = bytes.fromhex(vector["packet"])
    sealed = seal(key, packet, int(vector["timestamp"]), bytes.fromhex(vector["nonce"]))
    assert sealed.hex() == vector["sealed"]
    assert key_id(key).hex() == vector["key id"]
    header = parse_access_header(sealed)
    assert header.timestamp == int(vector["timestamp"])
    assert header.nonce.hex() == vector["nonce"]
    assert header.mac.hex() == vector["mac"]
    assert AccessVerifier([key]).verify(sealed, float(vector["timestamp"])) == packet


def test_first_octet_is_never_an_ipv6_version() -> None:
    sealed = Sealer(KEY).seal(PACKET, NOW, NONCE)
    assert sealed[0] >> 4 != 6
    assert sealed[ACCESS_HEADER_LEN:] == PACKET
    assert len(sealed) == len(PACKET) + 40


def test_fingerprint_is_the_key_id_in_groups() -> None:
    assert fingerprint(KEY) == "19c6:234f:94ac:1f20"
    with pytest.raises(ValueError, match="32 bytes"):
        key_id(KEY[:31])


def test_right_key_passes_once() -> None:
    verifier = AccessVerifier([KEY])
    sealed = Sealer(KEY).seal(PACKET, NOW, NONCE)
    assert verifier.verify(sealed, NOW) == PACKET
    assert verifier.verify(sealed, NOW + 1) is Refusal.REPLAYED


def test_a_fresh_nonce_passes_again() -> None:
    verifier = AccessVerifier([KEY])
    sealer = Sealer(KEY)
    assert verifier.verify(sealer.seal(PACKET, NOW, b"\x01" * 8), NOW) == PACKET
    assert verifier.verify(sealer.seal(PACKET, NOW, b"\x02" * 8), NOW) == PACKET


def test_wrong_key_is_unknown() -> None:
    verifier = AccessVerifier([KEY])
    assert verifier.verify(Sealer(KEY2).seal(PACKET, NOW, NONCE), NOW) is Refusal.UNKNOWN_KEY


def test_forged_mac_with_a_known_key_id() -> None:
    verifier = AccessVerifier([KEY])
    sealed = bytearray(Sealer(KEY).seal(PACKET, NOW, NONCE))
    sealed[30] ^= 1
    assert verifier.verify(bytes(sealed), NOW) is Refusal.BAD_MAC
    # A refused header is not remembered: the genuine one still passes.
    sealed[30] ^= 1
    assert verifier.verify(bytes(sealed), NOW) == PACKET


@pytest.mark.parametrize("offset", [4, 7, 16, 23, 24, 39, 40 + 8, 40 + 23, 40 + 24, 40 + 39])
def test_every_covered_octet_matters(offset: int) -> None:
    sealed = bytearray(Sealer(KEY).seal(PACKET, NOW, NONCE))
    sealed[offset] ^= 0x01
    refusal = AccessVerifier([KEY]).verify(bytes(sealed), NOW)
    assert refusal in (Refusal.BAD_MAC, Refusal.STALE)


def test_payload_and_hop_limit_are_not_covered() -> None:
    sealed = bytearray(Sealer(KEY).seal(PACKET, NOW, NONCE))
    sealed[40 + 7] = 1  # hop limit: routers on the HA side change it, the MAC need not care
    assert AccessVerifier([KEY]).verify(bytes(sealed), NOW) == bytes(sealed[40:])


def test_another_source_address_fails() -> None:
    sealed = Sealer(KEY).seal(PACKET, NOW, NONCE)
    other = sealed[:48] + MN2 + sealed[64:]
    assert AccessVerifier([KEY]).verify(other, NOW) is Refusal.BAD_MAC


@pytest.mark.parametrize(("skew", "ok"), [(-60, True), (60, True), (-61, False), (61, False), (-86400, False)])
def test_window(skew: int, ok: bool) -> None:
    verifier = AccessVerifier([KEY], window_s=60)
    sealed = Sealer(KEY).seal(PACKET, NOW + skew, NONCE)
    assert (verifier.verify(sealed, NOW) == PACKET) is ok
    if not ok:
        assert verifier.verify(sealed, NOW) is Refusal.STALE


def test_window_across_the_wrap() -> None:
    sealed = seal(KEY, PACKET, 2**32 - 1, NONCE)
    assert AccessVerifier([KEY]).verify(sealed, 30.0) == PACKET
    assert AccessVerifier([KEY]).verify(sealed, 2**32 + 30.0) == PACKET


def test_wall_offset_maps_a_monotonic_clock() -> None:
    verifier = AccessVerifier([KEY], wall_offset=NOW - 5.0)
    assert verifier.verify(Sealer(KEY).seal(PACKET, NOW, NONCE), 5.0) == PACKET


def test_replay_is_refused_until_no_longer_acceptable_then_stale() -> None:
    verifier = AccessVerifier([KEY], window_s=60)
    sealed = Sealer(KEY).seal(PACKET, NOW + 60, NONCE)
    assert verifier.verify(sealed, NOW) == PACKET
    assert verifier.verify(sealed, NOW + 120) is Refusal.REPLAYED
    assert verifier.verify(sealed, NOW + 122) is Refusal.STALE
    verifier.cache.forget(NOW + 122)  # what the next accepted header does first
    assert len(verifier.cache) == 0


def test_full_replay_cache_refuses_rather_than_forgets() -> None:
    verifier = AccessVerifier([KEY], replay_capacity=2)
    sealer = Sealer(KEY)
    assert verifier.verify(sealer.seal(PACKET, NOW, b"a" * 8), NOW) == PACKET
    assert verifier.verify(sealer.seal(PACKET, NOW, b"b" * 8), NOW) == PACKET
    assert verifier.verify(sealer.seal(PACKET, NOW, b"c" * 8), NOW) is Refusal.REPLAY_CACHE_FULL
    assert verifier.verify(sealer.seal(PACKET, NOW, b"a" * 8), NOW) is Refusal.REPLAYED
    # Room again once the first ones can no longer pass the window.
    assert verifier.verify(sealer.seal(PACKET, NOW + 200, b"c" * 8), NOW + 200) == PACKET


def test_rotation_two_keys_then_one() -> None:
    verifier = AccessVerifier([KEY, KEY2])
    assert verifier.verify(Sealer(KEY).seal(PACKET, NOW, NONCE), NOW) == PACKET
    assert verifier.verify(Sealer(KEY2).seal(PACKET, NOW, NONCE), NOW) == PACKET
    verifier.set_keys([KEY2])
    assert verifier.verify(Sealer(KEY).seal(PACKET, NOW, b"x" * 8), NOW) is Refusal.UNKNOWN_KEY
    # The cache outlives the reload: a replay is still a replay.
    assert verifier.verify(Sealer(KEY2).seal(PACKET, NOW, NONCE), NOW) is Refusal.REPLAYED


@pytest.mark.parametrize("cut", [0, 1, 39, 40, 79])
def test_truncated(cut: int) -> None:
    sealed = Sealer(KEY).seal(PACKET, NOW, NONCE)[:cut]
    assert AccessVerifier([KEY]).verify(sealed, NOW) is Refusal.MALFORMED
    with pytest.raises(PacketError) as caught:
        parse_access_header(sealed)
    assert caught.value.reason is Reason.TOO_SHORT


@pytest.mark.parametrize("first", [b"\x00\x00\x00\x00", b"\x02\x00\x00\x00", b"\x01\x00\x00\x01", b"\x01\x80\x00\x00"])
def test_other_type_or_reserved_bits(first: bytes) -> None:
    sealed = first + Sealer(KEY).seal(PACKET, NOW, NONCE)[4:]
    assert AccessVerifier([KEY]).verify(sealed, NOW) is Refusal.MALFORMED
    with pytest.raises(PacketError) as caught:
        parse_access_header(sealed)
    assert caught.value.reason is Reason.NOT_ACCESS_HEADER


def test_sealer_refuses_bad_inputs() -> None:
    with pytest.raises(ValueError, match="nonce"):
        Sealer(KEY).seal(PACKET, NOW, b"short")
    with pytest.raises(ValueError, match="IPv6"):
        Sealer(KEY).seal(b"x" * 39, NOW, NONCE)
    with pytest.raises(ValueError, match="window"):
        AccessVerifier([KEY], window_s=0)
    with pytest.raises(ValueError, match="at least one"):
        ReplayCache(0)


@given(st.binary(max_size=200), st.floats(min_value=0, max_value=2**33))
def test_fuzzed_datagrams_never_pass_nor_raise(data: bytes, now: float) -> None:
    verifier = AccessVerifier([KEY])
    assert isinstance(verifier.verify(data, now), Refusal)
    try:
        header = parse_access_header(data)
    except PacketError:
        return
    assert len(header.key_id) == 8 and len(header.nonce) == 8 and len(header.mac) == 16


@given(st.binary(min_size=40, max_size=40), st.binary(min_size=8, max_size=8), st.integers(0, 2**32 - 1))
def test_fuzzed_round_trip(inner: bytes, nonce: bytes, timestamp: int) -> None:
    sealed = seal(KEY, inner, timestamp, nonce)
    header = parse_access_header(sealed)
    assert (header.timestamp, header.nonce, header.key_id) == (timestamp, nonce, key_id(KEY))
    assert AccessVerifier([KEY]).verify(sealed, float(timestamp)) == inner


@given(st.integers(0, 79), st.integers(1, 255))
def test_any_single_octet_change_of_the_covered_part_refuses(offset: int, flip: int) -> None:
    sealed = bytearray(Sealer(KEY).seal(PACKET, NOW, NONCE))
    if 40 <= offset < 48:
        return  # the inner header's first 8 octets are the Home Agent's business, not the MAC's
    sealed[offset] ^= flip
    assert isinstance(AccessVerifier([KEY]).verify(bytes(sealed), NOW), Refusal)
