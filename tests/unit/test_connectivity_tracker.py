"""The connectivity tracker, sans I/O: debounce, look-ups, what is reported, the backstop and the clocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m6t.client.tracker import (
    DEFAULT_MAX_DELAY,
    DEFAULT_QUIET,
    Attach,
    CheckBinding,
    ConnectivityTracker,
    Decision,
    Detach,
    LookUp,
    Probe,
    TrackerSettings,
)
from m6t.protocol.values import Attachment

HOME = Attachment(IPv4Address("192.0.2.10"), "eth0", IPv4Address("192.0.2.1"))
HOME_NEW_ROUTER = Attachment(IPv4Address("192.0.2.10"), "eth0", IPv4Address("192.0.2.254"))
CAFE = Attachment(IPv4Address("203.0.113.10"), "wlan0", IPv4Address("203.0.113.1"))
PHONE = Attachment(IPv4Address("198.18.0.5"), "usb0", None)
CAFE_PROBED = Attachment(CAFE.local_ipv4, CAFE.interface, None)
"""What the connected-UDP probe says of CAFE: the source and its interface, no next hop."""


def tracker(**options: float) -> ConnectivityTracker:
    return ConnectivityTracker(TrackerSettings(**options))  # type: ignore[arg-type]


def watching(first: Attachment | None = HOME, **options: float) -> ConnectivityTracker:
    """A tracker whose first look-up answered ``first`` at time 0 (decisions drained); probes every second
    unless told otherwise."""
    t = tracker(**options)
    t.watch(0.0)
    t.looked_up(first, 0.0)
    t.pop_decisions()
    return t


# The path -------------------------------------------------------------------------------------------------


def path_decisions(t: ConnectivityTracker) -> list[Decision]:
    """What the tracker asked and decided, the probe that comes with every tick aside (see the backstop)."""
    return [d for d in t.pop_decisions() if not isinstance(d, Probe)]


def test_the_first_answer_is_reported_whatever_it_is() -> None:
    t = tracker()
    t.watch(0.0)
    assert path_decisions(t) == []  # the caller makes the first look-up itself
    t.looked_up(HOME, 0.01)
    assert path_decisions(t) == [Attach(HOME, first=True)]
    t.unwatch()
    t.watch(1.0)
    t.looked_up(None, 1.01)
    assert path_decisions(t) == [Detach()]


def test_only_what_changed_is_reported() -> None:
    t = watching(HOME, probe_interval=100.0)
    for now, answer, expected in [
        (1.0, HOME, []),
        (2.0, HOME_NEW_ROUTER, [Attach(HOME_NEW_ROUTER)]),  # the session decides a router alone is no move
        (3.0, CAFE, [Attach(CAFE)]),
        (4.0, None, [Detach()]),
        (5.0, None, []),
        (6.0, CAFE, [Attach(CAFE)]),
    ]:
        t.changed(now)
        t.tick(now + DEFAULT_QUIET)
        assert path_decisions(t) == [LookUp()]
        t.looked_up(answer, now + DEFAULT_QUIET + 0.01)
        assert path_decisions(t) == expected, now
    assert t.evaluations == 7


def test_a_change_is_looked_up_after_the_quiet_period() -> None:
    t = watching(probe_interval=100.0)
    t.changed(10.0)
    assert t.next_deadline() == pytest.approx(10.0 + DEFAULT_QUIET)
    t.tick(10.1)
    assert path_decisions(t) == []
    t.changed(10.1)  # the burst goes on: the quiet period starts again
    t.tick(10.0 + DEFAULT_QUIET)
    assert path_decisions(t) == []
    assert t.next_deadline() == pytest.approx(10.1 + DEFAULT_QUIET)
    t.tick(10.1 + DEFAULT_QUIET)
    assert path_decisions(t) == [LookUp()]
    assert t.next_deadline() == pytest.approx(10.1 + DEFAULT_QUIET + 100.0)  # only the backstop's probe now


def test_a_burst_that_never_quiets_is_looked_up_after_the_maximum_delay() -> None:
    t = watching(probe_interval=100.0)
    for i in range(10):  # a change every 100 ms: never a quiet period
        now = 5.0 + i * 0.1
        t.changed(now)
        t.tick(now)
        assert path_decisions(t) == []
    t.changed(5.95)
    assert t.next_deadline() == pytest.approx(5.0 + DEFAULT_MAX_DELAY)
    t.tick(5.0 + DEFAULT_MAX_DELAY)
    assert path_decisions(t) == [LookUp()]
    t.changed(6.05)  # the next burst is counted from its own first change
    assert t.next_deadline() == pytest.approx(6.05 + DEFAULT_QUIET)


def test_one_look_up_at_a_time_and_one_more_for_a_burst_that_ended_meanwhile() -> None:
    t = watching(HOME, probe_interval=100.0)
    t.changed(1.0)
    t.tick(1.2)
    assert path_decisions(t) == [LookUp()]
    t.changed(1.25)  # while the look-up is under way
    t.tick(1.5)
    assert path_decisions(t) == []  # not a second one at once...
    t.looked_up(HOME, 1.6)
    assert path_decisions(t) == [LookUp()]  # ... but right after: the answer may predate the change
    t.looked_up(CAFE, 1.7)
    assert path_decisions(t) == [Attach(CAFE)]
    assert t.evaluations == 3


def test_a_look_up_covers_the_changes_made_before_it_starts() -> None:
    t = watching(HOME, probe_interval=100.0)
    t.changed(1.0)
    t.tick(1.15)
    assert path_decisions(t) == [LookUp()]
    t.changed(1.2)
    t.tick(1.35)  # over while the look-up is under way: one more after it
    t.changed(1.4)  # a new burst, still pending when that one starts
    t.looked_up(HOME, 1.5)
    assert path_decisions(t) == [LookUp()]
    t.looked_up(CAFE, 1.51)
    assert path_decisions(t) == [Attach(CAFE)]
    t.tick(1.55)
    assert path_decisions(t) == []  # the look-up at 1.5 saw the change at 1.4 already
    assert t.next_deadline() == pytest.approx(1.55 + 100.0)


def test_a_change_during_the_first_look_up_is_not_lost() -> None:
    t = tracker()
    t.watch(0.0)
    t.changed(0.01)
    t.tick(0.2)
    assert path_decisions(t) == []
    t.looked_up(HOME, 0.3)
    assert path_decisions(t) == [Attach(HOME, first=True), LookUp()]


def test_a_failed_look_up_reports_nothing_and_keeps_the_pending_burst() -> None:
    t = watching(HOME, probe_interval=100.0)
    t.changed(1.0)
    t.tick(1.2)
    assert path_decisions(t) == [LookUp()]
    t.lookup_failed(1.3)
    assert path_decisions(t) == []
    t.changed(2.0)
    t.tick(2.2)
    assert path_decisions(t) == [LookUp()]
    t.changed(2.25)
    t.tick(2.5)
    t.lookup_failed(2.6)
    assert path_decisions(t) == [LookUp()]


def test_nothing_happens_unless_watched() -> None:
    t = tracker()
    t.changed(1.0)
    t.looked_up(HOME, 1.1)
    t.probed(CAFE, 1.2)
    t.tick(5.0)
    assert t.pop_decisions() == [] and t.next_deadline() is None and t.evaluations == 0
    t = watching(HOME)
    t.changed(1.0)
    t.unwatch()
    assert t.next_deadline() is None
    t.looked_up(CAFE, 1.1)  # a look-up that outlived its watch
    t.tick(5.0)
    assert t.pop_decisions() == []


def test_a_new_watch_reports_its_first_answer_even_if_unchanged() -> None:
    t = watching(HOME)
    t.unwatch()
    assert t.attachment is None
    t.watch(3.0)
    t.looked_up(HOME, 3.1)
    assert t.pop_decisions() == [Attach(HOME, first=True)]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        TrackerSettings(quiet=0)
    with pytest.raises(ValueError):
        TrackerSettings(jump_threshold=-1.0)
    with pytest.raises(ValueError):
        TrackerSettings(probe_interval=0)
    with pytest.raises(ValueError):
        TrackerSettings(confirmations=0)


# The backstop ---------------------------------------------------------------------------------------------


def probe_at(t: ConnectivityTracker, now: float, answer: Attachment | None) -> list[Decision]:
    t.tick(now)
    decisions = t.pop_decisions()
    assert Probe() in decisions
    t.probed(answer, now)
    return t.pop_decisions()


def test_the_probe_runs_on_every_tick_and_at_least_every_interval_once_something_was_reported() -> None:
    t = tracker(probe_interval=1.0)
    t.watch(0.0)
    t.tick(5.0)
    assert t.pop_decisions() == []  # nothing to compare with before the first answer
    t.looked_up(HOME, 5.0)
    t.pop_decisions()
    assert t.next_deadline() == 6.0
    t.tick(6.0)
    assert t.pop_decisions() == [Probe()]
    assert t.next_deadline() == 7.0
    t.tick(6.4)  # the driver woke for something else: the probe rides along, and needs no wakeup of its own
    assert t.pop_decisions() == [Probe()]
    assert t.next_deadline() == 7.4
    t.unwatch()
    t.tick(8.0)
    assert t.pop_decisions() == [] and t.next_deadline() is None


def test_the_backstop_believes_two_disagreeing_probes_in_a_row() -> None:
    t = watching(HOME)
    assert probe_at(t, 1.0, CAFE_PROBED) == []
    assert probe_at(t, 2.0, CAFE_PROBED) == [Attach(CAFE_PROBED, by_backstop=True)]
    assert t.attachment == CAFE_PROBED
    assert probe_at(t, 3.0, CAFE_PROBED) == []  # it agrees now
    # A look-up then brings the next hop the probe cannot know.
    t.changed(3.1)
    t.tick(3.25)
    assert t.pop_decisions() == [LookUp(), Probe()]
    t.looked_up(CAFE, 3.3)
    assert t.pop_decisions() == [Attach(CAFE)]


def test_the_backstop_does_not_flap_on_a_change_still_settling() -> None:
    t = watching(HOME)
    assert probe_at(t, 1.0, CAFE_PROBED) == []
    assert probe_at(t, 2.0, PHONE) == []  # disagrees, but not with the probe before
    assert probe_at(t, 3.0, HOME) == []  # agreement resets the count
    assert probe_at(t, 4.0, PHONE) == []
    assert probe_at(t, 5.0, PHONE) == [Attach(PHONE, by_backstop=True)]


def test_a_look_up_resets_the_backstop_count() -> None:
    t = watching(HOME)
    assert probe_at(t, 1.0, CAFE_PROBED) == []
    t.changed(1.2)
    t.tick(1.5)
    t.looked_up(PHONE, 1.5)
    assert t.pop_decisions() == [LookUp(), Probe(), Attach(PHONE)]
    assert probe_at(t, 2.0, CAFE_PROBED) == []  # counted from one again


def test_the_backstop_finds_a_lost_path_and_one_that_comes_back() -> None:
    t = watching(HOME)
    assert probe_at(t, 1.0, None) == []
    assert probe_at(t, 2.0, None) == [Detach(by_backstop=True)]
    assert probe_at(t, 3.0, None) == []
    probed_home = Attachment(HOME.local_ipv4, HOME.interface, None)
    assert probe_at(t, 4.0, probed_home) == []
    # The last look-up knows this source: it stands for the whole snapshot, next hop included.
    assert probe_at(t, 5.0, probed_home) == [Attach(HOME, by_backstop=True)]


def test_a_probe_with_the_looked_up_source_stands_for_the_look_up() -> None:
    known = Attachment(IPv4Address("127.0.0.1"), "somewhere", IPv4Address("127.0.0.254"))
    t = watching(known)
    probed = Attachment(IPv4Address("127.0.0.1"), "Loopback Pseudo-Interface 1", None)
    assert t.path_of(probed) is known
    assert t.path_of(CAFE_PROBED) is CAFE_PROBED
    assert t.path_of(None) is None
    for now in (1.0, 2.0, 3.0):
        assert probe_at(t, now, probed) == []


def test_a_router_change_alone_does_not_trip_the_backstop() -> None:
    t = watching(HOME)
    t.changed(0.5)
    t.tick(1.0)
    t.looked_up(HOME_NEW_ROUTER, 1.0)
    t.pop_decisions()
    for now in (2.0, 3.0, 4.0):
        assert probe_at(t, now, Attachment(HOME.local_ipv4, "eth0", None)) == []


# The clocks -----------------------------------------------------------------------------------------------


def test_a_sleep_calls_for_a_check_of_the_binding() -> None:
    t = tracker(clock_interval=1.0, jump_threshold=30.0)
    assert t.next_deadline() is None
    t.wall_clock(100.0, 1_000_000.0)
    assert t.pop_decisions() == [] and t.next_deadline() == 101.0
    t.wall_clock(101.0, 1_000_001.0)
    t.wall_clock(102.0, 1_000_002.5)  # NTP slewing, a late wakeup: nothing
    assert t.pop_decisions() == []
    t.wall_clock(103.0, 1_003_603.5)  # an hour asleep: the monotonic clock stood still
    [check] = t.pop_decisions()
    assert isinstance(check, CheckBinding) and check.jump == pytest.approx(3600.0)
    t.wall_clock(104.0, 1_003_604.0)
    assert t.pop_decisions() == []  # once


def test_a_frozen_process_and_a_clock_set_back_call_for_a_check_too() -> None:
    t = tracker(clock_interval=1.0, jump_threshold=30.0)
    t.wall_clock(0.0, 500.0)
    t.wall_clock(30.5, 530.5)
    assert t.pop_decisions() == []  # within the threshold plus the interval
    t.wall_clock(62.0, 562.0)  # 31.5 s without a sample
    assert t.pop_decisions() == [CheckBinding(31.5)]
    t.wall_clock(63.0, 463.0)  # the wall clock set back 100 s
    [check] = t.pop_decisions()
    assert isinstance(check, CheckBinding)
    t.settings = TrackerSettings(jump_threshold=5.0)  # a shorter keepalive interval, applied live
    t.wall_clock(64.0, 470.0)
    assert t.pop_decisions() == [CheckBinding(6.0)]


def test_resumed_from_sleep_calls_for_a_check() -> None:
    t = tracker()
    t.resumed(10.0)
    assert t.pop_decisions() == [CheckBinding(None)]


def test_the_clock_and_the_path_share_one_deadline() -> None:
    t = watching(HOME, probe_interval=2.0, clock_interval=1.0)
    t.wall_clock(0.5, 0.5)
    assert t.next_deadline() == 1.5
    t.changed(1.3)
    assert t.next_deadline() == pytest.approx(1.3 + DEFAULT_QUIET)
    t.tick(1.45)
    assert t.pop_decisions() == [LookUp(), Probe()]
    assert t.next_deadline() == 1.5


# Orderings ------------------------------------------------------------------------------------------------

PATHS = st.sampled_from([HOME, HOME_NEW_ROUTER, CAFE, PHONE, None])


@dataclass
class Run:
    lookups: list[float] = field(default_factory=list)
    """When each look-up was asked for (the first one, the caller's own, at 0)."""
    reports: list[Attachment | None] = field(default_factory=list)
    final: Attachment | None = None


def simulate(initial: Attachment | None, changes: list[tuple[float, Attachment | None]], latency: float) -> Run:
    """The OS's path changes at the given times, each change announced; every look-up takes ``latency``
    and answers what the path was when it started.  No probes are answered."""
    t = tracker(probe_interval=1e6)
    run = Run(lookups=[0.0])
    path = initial
    t.watch(0.0)
    in_flight: tuple[float, Attachment | None] | None = (latency, path)
    pending = sorted(changes, key=lambda c: c[0])
    now = 0.0
    for _ in range(10_000):
        candidates: list[tuple[float, int]] = []
        if pending:
            candidates.append((pending[0][0], 0))
        if in_flight is not None:
            candidates.append((in_flight[0], 1))
        deadline = t.next_deadline()
        if deadline is not None and deadline < 1e5:
            candidates.append((deadline, 2))
        if not candidates:
            break
        now, kind = min(candidates)
        if kind == 0:
            path = pending.pop(0)[1]
            t.changed(now)
        elif kind == 1:
            assert in_flight is not None
            answer, in_flight = in_flight[1], None
            t.looked_up(answer, now)
        else:
            t.tick(now)
        for decision in t.pop_decisions():
            if isinstance(decision, LookUp):
                assert in_flight is None, "two look-ups at once"
                in_flight = (now + latency, path)
                run.lookups.append(now)
            elif isinstance(decision, Attach):
                run.reports.append(decision.attachment)
            elif isinstance(decision, Detach):
                run.reports.append(None)
    else:
        raise AssertionError("the tracker never settled")
    run.final = path
    return run


@settings(max_examples=300, deadline=None)
@given(
    initial=PATHS,
    steps=st.lists(st.tuples(st.floats(0.0, 1.5), PATHS), max_size=25),
    latency=st.sampled_from([0.0, 0.01, 0.2, 0.7]),
)
def test_any_ordering_ends_on_the_final_path_reported_once(
    initial: Attachment | None, steps: list[tuple[float, Attachment | None]], latency: float
) -> None:
    changes: list[tuple[float, Attachment | None]] = []
    now = 0.0
    for gap, path in steps:
        now += gap
        changes.append((now, path))
    run = simulate(initial, changes, latency)
    # The first answer always, then only changes, and the last one reported is where the host is.
    assert run.reports[0] == initial
    assert all(a != b for a, b in pairwise(run.reports))
    assert run.reports[-1] == run.final
    # Look-ups come one per quiet period at most, and none is asked for without a change before it.
    later = run.lookups[1:]
    assert all(b - a >= DEFAULT_QUIET - 1e-9 for a, b in pairwise(later))
    assert len(later) <= len(changes)
    # Every change is followed by a look-up that starts after it, within the maximum delay (or as soon as
    # the look-up under way answers).
    for when, _path in changes:
        assert any(when <= start <= when + DEFAULT_MAX_DELAY + latency + 1e-9 for start in later), when


@settings(deadline=None)
@given(count=st.integers(1, 60), spacing=st.floats(0.0, DEFAULT_QUIET * 0.9), latency=st.sampled_from([0.0, 0.05]))
def test_a_burst_of_changes_is_one_look_up_per_quiet_period_and_the_final_snapshot(
    count: int, spacing: float, latency: float
) -> None:
    paths = [CAFE, PHONE, None, HOME]
    changes = [(1.0 + i * spacing, paths[i % len(paths)]) for i in range(count)]
    run = simulate(HOME, changes, latency)
    duration = (count - 1) * spacing
    if duration < DEFAULT_MAX_DELAY:
        # Quiet only at its end: one look-up, and only the final snapshot reported (if it is new).
        assert len(run.lookups) == 2
        assert run.reports == ([HOME] if run.final == HOME else [HOME, run.final])
    else:
        # A storm: one look-up per maximum delay, and the final snapshot last.
        assert len(run.lookups) - 1 <= 1 + duration // DEFAULT_MAX_DELAY
        assert run.reports[-1] == run.final


def test_resumed_looks_the_path_up_at_once_while_watched() -> None:
    t = watching(HOME)
    t.wall_clock(1.0, 1.0)
    t.resumed(2.0)
    assert t.pop_decisions() == [CheckBinding(None), LookUp()]
    t.resumed(2.1)  # a look-up is under way: one more after it, not two at once
    assert t.pop_decisions() == [CheckBinding(None)]
    t.looked_up(CAFE, 2.2)
    assert t.pop_decisions() == [Attach(CAFE), LookUp()]
    # The clocks' own check of the same sleep is not repeated at the next sample.
    t.wall_clock(3.0, 3_603.0)
    assert t.pop_decisions() == []


def test_no_clock_deadline_once_stopped() -> None:
    t = tracker(clock_interval=30.0)
    t.wall_clock(0.0, 0.0)
    assert t.next_deadline() == 30.0
    t.stop_clock()
    assert t.next_deadline() is None
    t.wall_clock(100.0, 5_000.0)  # the first sample after a stop compares with nothing
    assert t.pop_decisions() == [] and t.next_deadline() == 130.0
