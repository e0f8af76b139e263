"""The DPLPMTUD state machine alone (RFC 8899 over the tunnel): fed with a clock and a simulated path."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m6t.client.pmtud import (
    BASE_PLPMTU,
    MAX_PROBES,
    PMTU_RAISE_TIMER_S,
    PROBE_TIMER_S,
    Found,
    Pmtud,
    PmtudState,
)

MAX = 1472


@dataclass
class Path:
    """A path that echoes probes up to ``limit`` bytes; ``losses`` drops probes in the order they are sent;
    ``ptb`` answers a larger probe with a packet-too-big giving the limit (an ICMP frag-needed)."""

    limit: int
    losses: list[bool] = field(default_factory=list)
    ptb: Found | None = None
    sent: list[tuple[float, int]] = field(default_factory=list)

    def run(self, m: Pmtud, now: float, *, until: float = math.inf, max_steps: int = 2000) -> float:
        """Poll, answer, wait for deadlines, until the machine rests (no search) or ``until``."""
        for _ in range(max_steps):
            size = m.poll(now)
            if size is not None:
                self.sent.append((now, size))
                lost = self.losses.pop(0) if self.losses else False
                if size <= self.limit:
                    if not lost:
                        m.acked(size, now + 0.01)
                elif self.ptb is not None:
                    m.too_big(self.limit, self.ptb, now + 0.01)
                continue
            if not m.searching and not m.confirming:
                return now
            deadline = m.deadline()
            assert deadline is not None and deadline > now, "a search under way always has a deadline ahead"
            if deadline > until:
                return now
            now = deadline
        raise AssertionError("the search never rested")


def search(limit: int, **kwargs: object) -> tuple[Pmtud, Path, float]:
    m = Pmtud(MAX)
    path = Path(limit, **kwargs)  # type: ignore[arg-type]
    m.start(0.0)
    end = path.run(m, 0.0)
    return m, path, end


def test_a_whole_path_takes_two_probes() -> None:
    m, path, end = search(1500)
    assert [size for _, size in path.sent] == [BASE_PLPMTU, MAX]
    assert m.state is PmtudState.SEARCH_COMPLETE
    assert m.result is not None and m.result.mtu == MAX and m.result.found is Found.PROBE
    assert m.result.probes == 2 and end == 0.0
    assert m.deadline() is None, "nothing to raise to: no timer at all"


def test_probes_alone_find_the_exact_limit() -> None:
    m, _path, end = search(1372)
    assert m.result is not None and m.result.mtu == 1372 and m.result.found is Found.PROBE
    failures = [size for size, passed in m.result.tried if not passed]
    assert all(size > 1372 for size in failures)
    assert all(size <= 1372 for size, passed in m.result.tried if passed)
    # Each failed size costs MAX_PROBES probe timers; the bisection needs about log2(192) sizes.
    assert m.result.probes <= 2 + 8 * MAX_PROBES
    assert end == pytest.approx(len(failures) * MAX_PROBES * PROBE_TIMER_S)
    assert m.raise_at == pytest.approx(end + PMTU_RAISE_TIMER_S)


def test_a_frag_needed_names_the_next_size() -> None:
    m, path, end = search(1372, ptb=Found.ICMP)
    assert [size for _, size in path.sent] == [BASE_PLPMTU, MAX, 1372]
    assert m.result is not None and m.result.mtu == 1372 and m.result.found is Found.ICMP
    assert end == 0.0, "no timer waited for"


def test_a_bare_emsgsize_fails_the_probe_at_once() -> None:
    m = Pmtud(MAX)
    m.start(0.0)
    assert m.poll(0.0) == BASE_PLPMTU
    m.acked(BASE_PLPMTU, 0.01)
    assert m.poll(0.01) == MAX
    assert m.too_big(None, Found.EMSGSIZE, 0.01)
    assert m.known_too_big == MAX
    assert m.poll(0.01) == (BASE_PLPMTU + MAX) // 2


def test_a_path_under_the_floor_keeps_1280_by_fragmentation() -> None:
    m, path, _ = search(1200)
    assert m.state is PmtudState.ERROR
    assert m.result is not None and m.result.mtu == BASE_PLPMTU and m.result.fragmentation
    assert [size for _, size in path.sent] == [BASE_PLPMTU] * MAX_PROBES
    # ERROR tries again at the raise timer (a deadline, not a tick).
    assert m.deadline() == pytest.approx(m.result.time + PMTU_RAISE_TIMER_S)
    icmp, path2, end = search(1200, ptb=Found.ICMP)
    assert icmp.result is not None and icmp.result.fragmentation and end == 0.0
    assert [size for _, size in path2.sent] == [BASE_PLPMTU]


def test_inconsistent_or_stale_evidence_is_ignored() -> None:
    m = Pmtud(MAX)
    m.start(0.0)
    assert not m.too_big(1300, Found.ICMP, 0.0), "no probe in flight yet"
    m.start(0.0)
    assert m.poll(0.0) == BASE_PLPMTU
    assert not m.too_big(1400, Found.ICMP, 0.0), "says the probe fitted"
    m.acked(BASE_PLPMTU, 0.0)
    assert m.poll(0.0) == MAX
    assert not m.too_big(1300, Found.ICMP, 0.0, probe=BASE_PLPMTU), "about a size already echoed"
    assert m.current == MAX


def test_the_raise_timer_searches_upwards() -> None:
    m, path, end = search(1372, ptb=Found.ICMP)
    raise_at = m.raise_at
    assert raise_at is not None and raise_at == pytest.approx(end + PMTU_RAISE_TIMER_S)
    assert m.poll(raise_at - 1) is None
    path.limit = 1500
    path.sent.clear()
    path.run(m, raise_at)
    assert [size for _, size in path.sent] == [MAX], "from the result up: the floor is not probed again"
    assert m.result is not None and m.result.mtu == MAX and m.raise_at is None


def test_a_black_hole_is_confirmed_then_searched_below() -> None:
    m, path, _ = search(1500)
    path.limit = 1400
    path.sent.clear()
    m.suspect_black_hole(10.0)
    assert m.confirming
    end = path.run(m, 10.0)
    sizes = [size for _, size in path.sent]
    assert sizes[:MAX_PROBES] == [MAX] * MAX_PROBES
    assert sizes[MAX_PROBES] == BASE_PLPMTU
    assert MAX not in sizes[MAX_PROBES:], "the size that failed confirmation is not tried again"
    assert m.result is not None and m.result.mtu == 1400 and end > 10.0


def test_a_confirmed_result_stays() -> None:
    m, path, _ = search(1500)
    first = m.result
    m.suspect_black_hole(10.0)
    path.run(m, 10.0)
    assert m.result is first and not m.confirming and m.state is PmtudState.SEARCH_COMPLETE


def test_pause_keeps_a_result_and_drops_a_first_search() -> None:
    m = Pmtud(MAX)
    m.start(0.0)
    m.poll(0.0)
    m.pause(0.5)
    assert m.state is PmtudState.DISABLED and m.deadline() is None
    m2, _, _ = search(1372, ptb=Found.ICMP)
    m2.raise_now(50.0)
    assert m2.poll(50.0) == MAX
    m2.pause(50.5)
    assert m2.state is PmtudState.SEARCH_COMPLETE and m2.result is not None and m2.result.mtu == 1372
    assert m2.raise_at == pytest.approx(50.5 + PMTU_RAISE_TIMER_S)


def test_overall_bound_ends_an_on_demand_search() -> None:
    m = Pmtud(MAX, probe_timer=10.0)
    m.start(0.0, overall=3.0)
    assert m.poll(0.0) == BASE_PLPMTU
    assert m.deadline() == 3.0
    assert m.poll(3.0) is None
    assert m.result is not None and m.result.found is Found.FLOOR


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        Pmtud(1200)
    with pytest.raises(ValueError):
        Pmtud(MAX, max_probes=0)
    only = Pmtud(BASE_PLPMTU)
    path = Path(1500)
    only.start(0.0)
    path.run(only, 0.0)
    assert only.result is not None and only.result.mtu == BASE_PLPMTU and [s for _, s in path.sent] == [BASE_PLPMTU]


def _no_three_in_a_row(losses: list[bool]) -> list[bool]:
    out: list[bool] = []
    for lost in losses:
        out.append(lost and not (len(out) >= MAX_PROBES - 1 and all(out[-(MAX_PROBES - 1) :])))
    return out


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1100, 1600),
    max_size=st.integers(BASE_PLPMTU, 9000),
    losses=st.lists(st.booleans(), max_size=60).map(_no_three_in_a_row),
    ptb=st.sampled_from([None, Found.ICMP, Found.EMSGSIZE]),
)
def test_any_path_any_isolated_loss(limit: int, max_size: int, losses: list[bool], ptb: Found | None) -> None:
    """Whatever the path and isolated losses (never MAX_PROBES in a row), the search ends at the path's limit
    (capped by the configured MTU), or at the floor below 1280, within a bounded number of probes."""
    m = Pmtud(max_size)
    path = Path(limit, losses, ptb)
    m.start(0.0)
    path.run(m, 0.0)
    result = m.result
    assert result is not None
    if limit < BASE_PLPMTU:
        assert result.found is Found.FLOOR and result.mtu == BASE_PLPMTU
    else:
        assert result.mtu == min(limit, max_size)
        assert result.found is not Found.FLOOR
        assert all(passed == (size <= limit) for size, passed in result.tried)
    sizes = max_size - BASE_PLPMTU + 1
    assert result.probes <= (2 + math.ceil(math.log2(sizes))) * MAX_PROBES + len(losses)
    assert m.deadline() == (None if result.mtu >= max_size and not result.fragmentation else m.raise_at)


def test_a_late_frag_needed_below_the_result_searches_again_from_its_size() -> None:
    m, path, _ = search(1500)
    assert not m.too_big(1200, Found.ICMP, 5.0), "below the floor: discarded (RFC 8899 4.6.2)"
    assert not m.too_big(1480, Found.ICMP, 5.0), "not below the result"
    assert m.too_big(1400, Found.ICMP, 5.0)
    assert m.state is PmtudState.BASE and m.known_too_big == 1401
    path.limit = 1400
    path.sent.clear()
    path.run(m, 5.0)
    assert [size for _, size in path.sent] == [BASE_PLPMTU, 1400]
    assert m.result is not None and m.result.mtu == 1400 and m.result.found is Found.ICMP
