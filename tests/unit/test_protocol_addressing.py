from __future__ import annotations

import hashlib
from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m6t.protocol import (
    AddressingError,
    SuffixAllocator,
    eui64_from_mac,
    generate_ula_prefix,
    parse_prefix80,
    prefix80_from_parts,
    random_suffix,
    split_prefix80,
    suffix_of,
    tunnel_address,
)
from m6t.protocol.addressing import SUFFIX_MASK, ntp_timestamp

LAB_80 = IPv6Network("fd6d:3674:a1b2:0:1::/80")


def test_ntp_timestamp_epoch_and_fraction() -> None:
    assert ntp_timestamp(0.0) == (2_208_988_800 << 32).to_bytes(8, "big")
    assert ntp_timestamp(0.5)[4:] == (1 << 31).to_bytes(4, "big")


def test_eui64_from_mac_inserts_fffe_and_flips_ul_bit() -> None:
    assert eui64_from_mac(bytes.fromhex("001122334455")) == bytes.fromhex("021122fffe334455")
    with pytest.raises(AddressingError):
        eui64_from_mac(b"\x00" * 5)


def test_ula_generation_follows_rfc4193_algorithm() -> None:
    eui = bytes.fromhex("021122fffe334455")
    prefix = generate_ula_prefix(1_700_000_000.25, eui)
    digest = hashlib.sha1(ntp_timestamp(1_700_000_000.25) + eui).digest()
    expected_global_id = digest[-5:]
    assert prefix.prefixlen == 48
    assert prefix.network_address.packed[0] == 0xFD  # fc00::/7 with L=1
    assert prefix.network_address.packed[1:6] == expected_global_id
    assert prefix.network_address.packed[6:] == b"\x00" * 10


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False), st.binary(min_size=8, max_size=8))
def test_ula_is_always_a_locally_assigned_48(t: float, eui: bytes) -> None:
    prefix = generate_ula_prefix(t, eui)
    assert prefix.prefixlen == 48 and prefix.subnet_of(IPv6Network("fd00::/8"))


def test_ula_differs_with_time_and_with_eui() -> None:
    eui = bytes(8)
    assert generate_ula_prefix(1.0, eui) != generate_ula_prefix(2.0, eui)
    assert generate_ula_prefix(1.0, eui) != generate_ula_prefix(1.0, b"\x01" + bytes(7))


def test_prefix80_compose_matches_lab_layout() -> None:
    assert prefix80_from_parts(IPv6Network("fd6d:3674:a1b2::/48"), 0, 1) == LAB_80
    assert prefix80_from_parts(IPv6Network("fd6d:3674:a1b2::/48"), 0xABCD, 0x1234) == IPv6Network(
        "fd6d:3674:a1b2:abcd:1234::/80"
    )


@given(st.integers(0, (1 << 40) - 1), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_prefix80_round_trips(global_id: int, subnet: int, mn: int) -> None:
    ula = IPv6Network(((0xFD << 120) | (global_id << 80), 48))
    prefix = prefix80_from_parts(ula, subnet, mn)
    assert split_prefix80(prefix) == (ula, subnet, mn)
    assert parse_prefix80(str(prefix)) == prefix


@pytest.mark.parametrize(
    ("ula", "subnet", "mn", "message"),
    [
        ("fd6d:3674:a1b2::/56", 0, 1, "/48"),
        ("2001:db8::/48", 0, 1, "Unique Local"),
        ("fd6d:3674:a1b2::/48", 0x10000, 1, "subnet ID"),
        ("fd6d:3674:a1b2::/48", 0, -1, "MN ID"),
    ],
)
def test_prefix80_rejects_bad_parts(ula: str, subnet: int, mn: int, message: str) -> None:
    with pytest.raises(AddressingError, match=message):
        prefix80_from_parts(IPv6Network(ula), subnet, mn)


def test_admin_chosen_non_ula_80_is_accepted() -> None:
    assert parse_prefix80("2001:db8:1:2:3::/80") == IPv6Network("2001:db8:1:2:3::/80")


@pytest.mark.parametrize(
    "text", ["fd6d:3674:a1b2::/64", "fd6d:3674:a1b2:0:1::1/80", "not-a-prefix", "ff02::/80", "fe80::/80"]
)
def test_parse_prefix80_rejects(text: str) -> None:
    with pytest.raises(AddressingError):
        parse_prefix80(text)


def test_random_suffix_is_48_bits_and_never_zero() -> None:
    zeros: Iterator[bytes] = iter([b"\x00" * 6, b"\x00" * 6, b"\x00\x00\x00\x00\x00\x07"])
    assert random_suffix(lambda n: next(zeros)) == 7
    with pytest.raises(AddressingError):
        random_suffix(lambda n: b"\x00" * n)
    draws = {random_suffix() for _ in range(2000)}
    assert len(draws) == 2000  # 48 random bits: a repeat in 2000 draws has odds ~1e-8
    assert all(0 < s <= SUFFIX_MASK for s in draws)
    # every bit position is exercised, so the whole 48-bit range is used
    assert all(any(s >> bit & 1 for s in draws) for bit in range(48))
    assert max(draws) > 1 << 46


def test_tunnel_address_concatenates_prefix_and_suffix() -> None:
    address = tunnel_address(LAB_80, 0x0123456789AB)
    assert address == IPv6Address("fd6d:3674:a1b2:0:1:123:4567:89ab")
    assert suffix_of(address) == 0x0123456789AB
    with pytest.raises(AddressingError):
        tunnel_address(LAB_80, 0)
    with pytest.raises(AddressingError):
        tunnel_address(LAB_80, 1 << 48)


def test_allocator_never_hands_out_a_suffix_in_use() -> None:
    repeating = iter([b"\x00\x00\x00\x00\x00\x05"] * 3 + [b"\x00\x00\x00\x00\x00\x06"])
    allocator = SuffixAllocator(lambda n: next(repeating))
    assert allocator.allocate(LAB_80) == 5
    assert allocator.allocate(LAB_80) == 6  # the two repeats of 5 were skipped
    allocator.release(LAB_80, 5)
    assert allocator.in_use(LAB_80) == frozenset({6})


def test_allocator_gives_distinct_suffixes_to_many_interfaces() -> None:
    allocator = SuffixAllocator()
    suffixes = [allocator.allocate(LAB_80) for _ in range(500)]
    assert len(set(suffixes)) == 500
