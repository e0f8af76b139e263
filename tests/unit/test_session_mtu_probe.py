"""The on-demand MTU probe (``m6t probe-mtu``): the path MTU search run now, with ``tunnel.pmtud`` off here, so
it only measures (test_session_pmtud has it on)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from m6t.client.api import wire
from m6t.client.events import MtuProbeDone, MtuProbeResult

from .test_session_harness import ATT2, HA, Harness, Responder, ha_answers_everything


def path_up_to(limit: int, lose_first: set[int] | None = None) -> Responder:
    lost = set() if lose_first is None else set(lose_first)

    def responder(h: Harness, datagram: bytes) -> Iterable[bytes]:
        if len(datagram) > limit:
            return []
        if len(datagram) in lost:
            lost.discard(len(datagram))
            return []
        return ha_answers_everything(h, datagram)

    return responder


def run_probe(h: Harness, seconds: float = 40.0) -> MtuProbeResult:
    probe_id, immediate = h.session.start_mtu_probe(h.now, per_try=0.5, tries=2)
    h.drain()
    if immediate is not None:
        return immediate
    for _ in range(int(seconds / 0.05)):
        done = [e for e in h.events_of(MtuProbeDone) if e.probe_id == probe_id]
        if done:
            result: MtuProbeResult = done[0].result
            return result
        h.advance(0.05)
    raise AssertionError("the MTU probe never finished")


def connected(**overrides: Any) -> Harness:
    h = Harness.make(probe=HA, **overrides)
    h.responder = ha_answers_everything
    h.connect()
    h.advance(0.2)
    assert h.session.confirmed
    return h


def test_whole_path_answers_at_once() -> None:
    h = connected()
    result = run_probe(h)
    assert result.ok and result.largest == 1472
    assert result.tried == ((1280, True), (1472, True))
    assert result.found == "probe" and result.probes == 2
    assert result.duration == pytest.approx(0.1, abs=0.06)
    assert wire.mtu_probe_to_wire(result)["mtu"] == 1472


def test_binary_search_finds_the_exact_limit() -> None:
    h = connected()
    h.responder = path_up_to(1400)
    result = run_probe(h)
    assert result.ok and result.largest == 1400
    sizes = [size for size, _ in result.tried]
    assert sizes[:2] == [1280, 1472]
    assert all(answered == (size <= 1400) for size, answered in result.tried)
    assert len(sizes) <= 2 + 8
    # The probe never changes the interface MTU by itself: it reports.
    assert h.session.mtu == 1472
    assert h.delivered == []


def test_one_lost_echo_does_not_shrink_the_answer() -> None:
    h = connected()
    h.responder = path_up_to(1472, lose_first={1472})
    result = run_probe(h)
    assert result.largest == 1472


def test_nothing_answered() -> None:
    h = connected()
    h.responder = None
    result = run_probe(h)
    assert not result.ok and result.largest is None
    assert result.reason == "no echo answered"
    assert [size for size, _ in result.tried] == [1280]


def test_no_probe_address_or_not_connected() -> None:
    h = Harness.make()
    h.connect()
    result = run_probe(h)
    assert not result.ok and "probe" in result.reason
    h2 = Harness.make(probe=HA)
    result = run_probe(h2)
    assert not result.ok and result.reason == "not connected"


def test_address_change_cancels_the_probe() -> None:
    h = connected()
    h.responder = None
    probe_id, immediate = h.session.start_mtu_probe(h.now, per_try=0.5)
    assert immediate is None
    h.session.attach(ATT2, h.now)
    h.drain()
    [done] = h.events_of(MtuProbeDone)
    assert done.probe_id == probe_id and not done.result.ok
    assert "address changed" in done.result.reason


def test_concurrent_requests_join_the_running_probe() -> None:
    h = connected()
    h.responder = None
    first, _ = h.session.start_mtu_probe(h.now)
    second, immediate = h.session.start_mtu_probe(h.now)
    assert first == second and immediate is None
