"""The state table's timing wheel: exact expiry, lazy re-filing, bounded slices."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m6t.gateway.states import ACTIVE, DEADLINE_SHIFT, StateTable, pack_endpoint, unpack_endpoint

EP = pack_endpoint(int(IPv4Address("198.51.100.11")), 40000, 3)


def test_endpoint_packing_round_trips() -> None:
    assert unpack_endpoint(EP) == (int(IPv4Address("198.51.100.11")), 40000, 3)
    assert unpack_endpoint(pack_endpoint(2**32 - 1, 65535, 255)) == (2**32 - 1, 65535, 255)


def test_wheel_size_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        StateTable(100, 0)


def test_state_is_collected_at_its_deadline_not_before() -> None:
    table = StateTable(16, 0)
    table.add_temporary(1, EP, 5)
    assert table.collect(4, 100)
    assert table.get(1) is not None
    assert table.collect(5, 100)
    assert table.get(1) is None
    assert (table.temporary, table.expired_temporary) == (0, 1)


def test_deadlines_beyond_one_turn_of_the_wheel_are_refiled() -> None:
    table = StateTable(8, 0)
    table.add_temporary(1, EP, 50)
    for tick in range(50):
        assert table.collect(tick, 100)
        assert table.get(1) is not None
    assert table.collect(50, 100)
    assert table.get(1) is None
    assert table.gc_refiled >= 5


def test_a_refreshed_state_is_refiled_not_removed() -> None:
    table = StateTable(64, 0)
    table.add_temporary(7, EP, 3)
    value = table.promote(7, table.shards[7 % table.nshards][7], 40)
    assert value & ACTIVE and value >> DEADLINE_SHIFT == 40
    assert table.collect(39, 100)
    assert table.get(7) == value
    assert table.collect(40, 100)
    assert table.get(7) is None and table.expired_active == 1 and table.active == 0


def test_a_long_pause_is_worked_off_in_bounded_slices() -> None:
    table = StateTable(1024, 0)
    for key in range(100):
        table.add_temporary(key, EP, 10 + key)
    # A million ticks later: one turn of the wheel, not a million empty slots.
    slices = 0
    while not table.collect(1_000_000, 64):
        slices += 1
        assert slices < 100
    assert len(table) == 0 and table.expired_temporary == 100
    assert 1024 // 64 <= slices <= (1024 + 100) // 64 + 1


@settings(max_examples=200, deadline=None)
@given(
    deadlines=st.lists(st.integers(1, 300), min_size=1, max_size=60),
    steps=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    budget=st.integers(1, 20),
    slots=st.sampled_from([1, 4, 32, 512]),
)
def test_collection_removes_exactly_the_states_due(
    deadlines: list[int], steps: list[int], budget: int, slots: int
) -> None:
    table = StateTable(slots, 0)
    for key, deadline in enumerate(deadlines):
        table.add_temporary(key, EP, deadline)
    now = 0
    for step in steps:
        now += step
        for _ in range(10_000):
            if table.collect(now, budget):
                break
        else:
            pytest.fail("collection never caught up")
        alive = {key for key, deadline in enumerate(deadlines) if deadline > now}
        assert {key for shard in table.shards for key in shard} == alive
        assert table.temporary == len(alive)
