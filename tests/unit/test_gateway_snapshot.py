"""The state table's snapshot: a strict, checksummed format, and the states it carries across a restart."""

from __future__ import annotations

import struct
import zlib
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m6t.gateway import Counter, Drop, GatewayCore, Verdict, pack_endpoint, unpack_endpoint
from m6t.gateway.snapshot import (
    HEADER,
    MAGIC,
    RECORD,
    TRAILER,
    Record,
    SnapshotError,
    decode,
    encode,
    encode_shards,
    restore_records,
)
from m6t.gateway.states import ACTIVE, DEADLINE_SHIFT

from .test_gateway_core import HA, MN, MN2, NAT1, NAT2, PORT, PREFIX, activate, from_ha, make_core, to_ha

WALL = 1_764_700_000.0
"""Wall-clock time of the run that saves (seconds since the epoch)."""
PORTS = (3544, 4500)

records = st.builds(
    Record,
    address=st.integers(0, (1 << 128) - 1),
    ipv4=st.integers(1, (1 << 32) - 1),
    port=st.integers(1, 65535),
    local_port=st.integers(1, 65535),
    active=st.booleans(),
    expires_ms=st.integers(0, (1 << 64) - 1),
)
record_lists = st.lists(records, max_size=40, unique_by=lambda r: r.address)


@settings(max_examples=300, deadline=None)
@given(record_lists, st.integers(0, (1 << 64) - 1))
def test_what_is_encoded_decodes_to_the_same(saved: list[Record], saved_at_ms: int) -> None:
    data = encode(saved, saved_at_ms)
    assert len(data) == HEADER.size + len(saved) * RECORD.size + TRAILER.size
    snapshot = decode(data)
    assert snapshot.records == saved
    assert snapshot.saved_at_ms == saved_at_ms


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_refused_with_a_reason_never_a_crash(data: bytes) -> None:
    try:
        snapshot = decode(data)
    except SnapshotError as exc:
        assert str(exc)
    else:
        # Only a whole, checksummed file gets through.
        assert encode(snapshot.records, snapshot.saved_at_ms) == data


@settings(max_examples=300, deadline=None)
@given(record_lists.filter(bool), st.data())
def test_any_damage_to_a_saved_file_is_refused(saved: list[Record], data: st.DataObject) -> None:
    good = bytearray(encode(saved, 1))
    damage = data.draw(st.sampled_from(["flip", "truncate", "append"]))
    if damage == "flip":
        index = data.draw(st.integers(0, len(good) - 1))
        good[index] ^= data.draw(st.integers(1, 255))
    elif damage == "truncate":
        del good[data.draw(st.integers(0, len(good) - 1)) :]
    else:
        good += data.draw(st.binary(min_size=1, max_size=RECORD.size * 2))
    with pytest.raises(SnapshotError):
        decode(bytes(good))


def _sealed(body: bytes) -> bytes:
    return body + TRAILER.pack(zlib.crc32(body))


def _one(*, flags: int = 1, ipv4: int = NAT1, port: int = PORT, local: int = 3544, address: int = int(MN)) -> bytes:
    return RECORD.pack(address.to_bytes(16, "big"), ipv4, port, local, flags, 5)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (_sealed(HEADER.pack(b"M6TGWSTB", 1, 0, 0, 0)), "wrong magic"),
        (_sealed(HEADER.pack(MAGIC, 2, 0, 0, 0)), "version 2"),
        (_sealed(HEADER.pack(MAGIC, 1, 7, 0, 0)), "reserved"),
        (_sealed(HEADER.pack(MAGIC, 1, 0, 2, 0) + _one()), "truncated"),
        (HEADER.pack(MAGIC, 1, 0, 0, 0) + struct.pack("!I", 0), "checksum"),
        (_sealed(HEADER.pack(MAGIC, 1, 0, 1, 0) + _one(flags=2)), "flags"),
        (_sealed(HEADER.pack(MAGIC, 1, 0, 1, 0) + _one(ipv4=0)), "zero"),
        (_sealed(HEADER.pack(MAGIC, 1, 0, 1, 0) + _one(port=0)), "zero"),
        (_sealed(HEADER.pack(MAGIC, 1, 0, 1, 0) + _one(local=0)), "zero"),
        (_sealed(HEADER.pack(MAGIC, 1, 0, 2, 0) + _one() + _one(ipv4=NAT2)), "twice"),
    ],
)
def test_the_parser_says_why_it_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(SnapshotError, match=reason):
        decode(data)


def test_the_encoder_refuses_what_it_could_not_read_back() -> None:
    good = Record(int(MN), NAT1, PORT, 3544, True, 5)
    for bad in (good._replace(ipv4=0), good._replace(port=0), good._replace(local_port=70000)):
        with pytest.raises(ValueError):
            encode([bad], 0)
    with pytest.raises(ValueError, match="twice"):
        encode([good, good._replace(ipv4=NAT2)], 0)


# --------------------------------------------------------------------------- across a restart


def saved(core: GatewayCore, now: float, ports: tuple[int, ...] = PORTS, wall: float = WALL) -> list[Record]:
    """What a save at monotonic ``now`` (wall-clock ``wall``) writes, read back from its bytes."""
    data, count = encode_shards(
        [dict(shard) for shard in core.table.shards],
        ports,
        tick_s=core.settings.tick_s,
        now_tick=core.tick_of(now),
        mono_now=now,
        wall_now=wall,
    )
    snapshot = decode(data)
    assert len(snapshot.records) == count and snapshot.saved_at_ms == int(wall * 1000)
    # What the save packs straight from the table is what the generic encoder writes for its records.
    assert encode(snapshot.records, snapshot.saved_at_ms) == data
    return snapshot.records


def test_a_restarted_core_forwards_to_the_same_endpoint_on_the_same_port() -> None:
    core = make_core(now=1000.0)
    activate(core, 1000.0)
    # A second MN came in on the second port and is still temporary.
    assert core.datagram_from_mn(to_ha(MN2), NAT2, 50000, 1, 1000.2) is Verdict.FORWARDED
    core.take_outputs()
    records = saved(core, 1000.3)
    assert sorted((IPv6Address(r.address), r.local_port, r.active) for r in records) == [
        (MN, 3544, True),
        (MN2, 4500, False),
    ]

    # Another boot: the monotonic clock started again, 0.1 s of wall time went by, and the ports are
    # listed the other way round, so the socket indexes changed.
    fresh = make_core(now=5.0)
    report = restore_records(fresh, records, (4500, 3544), mono_now=5.0, wall_now=WALL + 0.1)
    assert (report.restored, report.expired, report.port_gone, report.refused) == (2, 0, 0, 0)
    assert (fresh.active_states, fresh.temporary_states) == (1, 1)
    assert fresh.counters[Counter.STATES_RESTORED] == 2

    assert fresh.packet_from_ha(from_ha(MN), 5.1) is Verdict.FORWARDED
    assert fresh.packet_from_ha(from_ha(MN2), 5.1) is Verdict.FORWARDED
    sent = {bytes(packet)[24:40]: unpack_endpoint(endpoint) for endpoint, packet in fresh.take_outputs()[1]}
    assert sent[MN.packed] == (NAT1, PORT, 1)  # 3544 is now the second socket
    assert sent[MN2.packed] == (NAT2, 50000, 0)


def test_a_restored_binding_is_never_changed() -> None:
    core = make_core(now=10.0)
    activate(core, 10.0)
    fresh = make_core(now=20.0)
    restore_records(fresh, saved(core, 10.0), PORTS, mono_now=20.0, wall_now=WALL + 1)
    # Another IPv4 address, or the same one on another port or socket: dropped, the state untouched.
    for ipv4, port, sock in ((NAT2, PORT, 0), (NAT1, PORT + 1, 0), (NAT1, PORT, 1)):
        assert fresh.datagram_from_mn(to_ha(MN), ipv4, port, sock, 20.1) is Verdict.DROPPED
    assert fresh.drops[Drop.MN_BINDING_MISMATCH] == 3
    view = fresh.state(MN)
    assert view is not None and (int(view.ipv4), view.port, view.socket, view.active) == (NAT1, PORT, 0, True)
    assert fresh.datagram_from_mn(to_ha(MN), NAT1, PORT, 0, 20.2) is Verdict.FORWARDED


def test_deadlines_follow_the_wall_clock_and_expired_states_stay_out() -> None:
    core = make_core(now=100.0, active_lifetime_s=30.0)
    activate(core, 100.0)
    records = saved(core, 110.0)  # 20 s of life left
    [record] = records
    assert record.expires_ms == pytest.approx((WALL + 20.0) * 1000, abs=30)

    # Restarted 15 s later (wall clock): 5 s left, whatever the new monotonic clock says.
    fresh = make_core(now=3.0, active_lifetime_s=30.0)
    restore_records(fresh, records, PORTS, mono_now=3.0, wall_now=WALL + 15.0)
    assert fresh.state(MN, 7.9) is not None
    assert fresh.state(MN, 8.1) is None

    # Restarted after it expired: nothing comes back.
    late = make_core(now=3.0)
    report = restore_records(late, records, PORTS, mono_now=3.0, wall_now=WALL + 21.0)
    assert (report.restored, report.expired) == (0, 1)
    assert len(late.table) == 0


def test_a_clock_far_ahead_in_the_file_cannot_keep_a_state_beyond_its_lifetime() -> None:
    record = Record(int(MN), NAT1, PORT, 3544, True, int((WALL + 10 * 86_400) * 1000))
    fresh = make_core(now=0.0, active_lifetime_s=30.0)
    assert restore_records(fresh, [record], PORTS, mono_now=0.0, wall_now=WALL).restored == 1
    assert fresh.state(MN, 29.9) is not None
    assert fresh.state(MN, 30.2) is None


def test_states_the_new_configuration_cannot_hold_are_left_out() -> None:
    expires = int((WALL + 60) * 1000)
    outside = int(IPv6Address("fd6d:ffff::1"))
    records = [
        Record(int(MN), NAT1, PORT, 3544, True, expires),
        Record(int(MN2), NAT1, PORT, 9999, True, expires),  # a port no longer listened on
        Record(outside, NAT1, PORT, 3544, True, expires),  # outside the prefixes now
        Record(int(MN) + 1, NAT1, PORT, 3544, False, expires),  # beyond max_temporary = 0
    ]
    assert IPv6Address(outside) not in PREFIX
    fresh = make_core(now=0.0, max_temporary=0)
    report = restore_records(fresh, records, PORTS, mono_now=0.0, wall_now=WALL)
    assert (report.restored, report.port_gone, report.refused, report.total) == (1, 1, 2, 4)
    assert fresh.state(MN) is not None and fresh.state(MN2) is None


def test_restoring_into_a_full_table_or_over_a_live_state_is_refused() -> None:
    expires = int((WALL + 60) * 1000)
    fresh = make_core(now=0.0, max_states=1)
    activate(fresh, 0.0, src=MN, ipv4=NAT2, port=1234)
    report = restore_records(
        fresh,
        [Record(int(MN), NAT1, PORT, 3544, True, expires), Record(int(MN2), NAT1, PORT, 3544, True, expires)],
        PORTS,
        mono_now=0.0,
        wall_now=WALL,
    )
    assert report.refused == 2
    view = fresh.state(MN)
    assert view is not None and view.ipv4 == IPv4Address("198.51.100.12") and view.port == 1234


def test_the_restored_table_expires_and_collects_like_a_live_one() -> None:
    core = make_core(now=0.0, active_lifetime_s=30.0)
    for n in range(50):
        activate(core, 0.0, src=IPv6Address(int(MN) + n), ipv4=NAT1 + n)
    fresh = make_core(now=0.0, active_lifetime_s=30.0)
    restore_records(fresh, saved(core, 0.0), PORTS, mono_now=0.0, wall_now=WALL)
    assert fresh.active_states == 50
    # Refreshed by traffic, one state outlives the others.
    assert fresh.datagram_from_mn(to_ha(MN), NAT1, PORT, 0, 20.0) is Verdict.FORWARDED
    while not fresh.collect_garbage(31.0, 7):
        pass
    assert fresh.active_states == 1 and fresh.table.expired_active == 49
    assert fresh.packet_from_ha(from_ha(MN, HA), 31.0) is Verdict.FORWARDED


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, (1 << 128) - 1),
            st.integers(1, (1 << 32) - 1),
            st.integers(1, 65535),
            st.integers(0, 2),
            st.booleans(),
            st.integers(0, 1 << 40),
        ),
        max_size=40,
        unique_by=lambda state: state[0],
    ),
    st.integers(0, 1 << 40),
)
def test_the_save_packs_the_table_as_the_records_say(
    states: list[tuple[int, int, int, int, bool, int]], now_tick: int
) -> None:
    shards: list[dict[int, int]] = [{}, {}, {}]
    for address, ipv4, port, sock, active, deadline in states:
        value = (deadline << DEADLINE_SHIFT) | (ACTIVE if active else 0) | pack_endpoint(ipv4, port, sock)
        shards[address % 3][address] = value
    data, count = encode_shards(shards, PORTS, tick_s=0.01, now_tick=now_tick, mono_now=100.0, wall_now=WALL)
    records = decode(data).records
    # Due states and states on a socket beyond the ports (index 2 here) are left out.
    kept = {s[0]: s for s in states if s[5] > now_tick and s[3] < len(PORTS)}
    assert count == len(records) == len(kept)
    for record in records:
        _, ipv4, port, sock, active, deadline = kept[record.address]
        assert (record.ipv4, record.port, record.local_port, record.active) == (ipv4, port, PORTS[sock], active)
        assert record.expires_ms == pytest.approx((WALL - 100.0 + deadline * 0.01) * 1000, abs=2)
