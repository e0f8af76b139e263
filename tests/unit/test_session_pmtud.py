"""Path MTU discovery in the session (``tunnel.pmtud``, RFC 8899): searched on every path, applied as the tunnel
MTU, raised at the raise timer, confirmed when large packets go unanswered; probes alone carry DF."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from m6t.client.effects import Send, SetMtu
from m6t.client.events import MtuChanged, MtuProbeDone
from m6t.client.pmtud import PMTU_RAISE_TIMER_S
from m6t.protocol import is_keepalive_request
from m6t.protocol.values import PmtuEvidence

from .test_session_harness import ATT2, HA, Harness, data_from, data_to, ha_answers_everything, snapshot


class Path:
    """The IPv4 path behind the gateway: IPv6 packets up to ``limit`` cross; a larger DF probe draws an ICMP
    fragmentation-needed when ``icmp`` (quoting it, as Linux routers do), else vanishes."""

    def __init__(self, limit: int, *, icmp: bool = False) -> None:
        self.limit = limit
        self.icmp = icmp
        self.probes: list[int] = []

    def __call__(self, h: Harness, datagram: bytes) -> Iterable[bytes]:
        if len(datagram) > self.limit:
            if self.icmp and datagram[6] == 58 and datagram[40] == 128:
                h.session.pmtu_evidence(PmtuEvidence(self.limit + 28, "icmp", quoted=datagram[:64]), h.now)
            return []
        return ha_answers_everything(h, datagram)


def connected(limit: int = 1500, *, icmp: bool = False, **overrides: Any) -> tuple[Harness, Path]:
    h = Harness.make(**{"probe": HA, "pmtud": True, **overrides})
    path = Path(limit, icmp=icmp)
    h.responder = path
    h.connect()
    h.advance(0.2)
    assert h.session.confirmed
    return h, path


def probes(h: Harness) -> list[Send]:
    return [e for e in h.effects if isinstance(e, Send) and e.dont_fragment]


def search_status(h: Harness) -> dict[str, Any]:
    search: dict[str, Any] = snapshot(h.session.status(h.now))["mtu_detail"]["search"]
    return search


def test_a_whole_path_is_confirmed_at_once_and_the_mtu_stays() -> None:
    h, _ = connected()
    assert h.session.mtu == 1472
    assert [len(p.datagram) for p in probes(h)] == [1280, 1472]
    assert h.of_type(SetMtu) == []
    search = search_status(h)
    assert search["state"] == "search_complete" and search["mtu"] == 1472 and search["found"] == "probe"
    assert search["probes"] == 2 and search["next_search"] is None
    # Nothing else carries DF: the reachability echo, keepalives and data leave with DF clear.
    assert all(not e.dont_fragment for e in h.of_type(Send) if len(e.datagram) < 1280)


def test_a_narrow_path_found_by_probes_is_applied() -> None:
    h, _ = connected(1372)
    h.advance(20.0)
    assert h.session.mtu == 1372
    assert h.of_type(SetMtu)[-1] == SetMtu(1372)
    changes = h.events_of(MtuChanged)
    assert changes[-1].effective == 1372 and changes[-1].evidence == "probe"
    # 1472 failed first: the MTU came down to what passed while the search went on, never above the path.
    assert [c.effective for c in changes] == [1280, 1372]
    search = search_status(h)
    assert search["mtu"] == 1372 and not search["fragmentation"]
    assert search["next_search"] == pytest.approx(search["time"] + PMTU_RAISE_TIMER_S)


def test_a_frag_needed_quoting_a_probe_finds_it_in_round_trips() -> None:
    h, _ = connected(1372, icmp=True)
    assert h.session.mtu == 1372
    assert [len(p.datagram) for p in probes(h)] == [1280, 1472, 1372]
    assert h.events_of(MtuChanged)[-1].evidence == "icmp"
    assert search_status(h)["found"] == "icmp"


def test_a_frag_needed_quoting_something_else_is_ignored() -> None:
    h, _ = connected()
    h.session.pmtu_evidence(PmtuEvidence(1300, "icmp", quoted=data_from(h.address, 200)[:64]), h.now)
    h.drain()
    assert h.session.mtu == 1472


def test_a_path_under_1308_bytes_keeps_1280_and_says_so() -> None:
    h, _ = connected(1200)
    h.advance(5.0)
    assert h.session.mtu == 1280
    search = search_status(h)
    assert search["fragmentation"] and search["found"] == "floor" and search["state"] == "error"


def test_every_new_path_is_searched_again() -> None:
    h, path = connected(1372, icmp=True)
    path.limit = 1500
    before = len(probes(h))
    h.session.attach(ATT2, h.now)
    h.drain()
    assert h.session.mtu == 1472  # back to the configured MTU for the new network at once
    h.advance(1.0)
    assert [len(p.datagram) for p in probes(h)[before:]] == [1280, 1472]
    assert search_status(h)["mtu"] == 1472


def test_the_raise_timer_is_a_deadline_not_a_tick() -> None:
    h, path = connected(1372, icmp=True)
    raise_at = search_status(h)["next_search"]
    # Idle and complete: once the counters event is out, the next deadline is the keepalive's, never sooner.
    h.advance(6.0)
    deadline = h.session.next_deadline()
    assert deadline is not None and deadline >= h.now + 3.0
    path.limit = 1500
    before = len(probes(h))
    h.advance(PMTU_RAISE_TIMER_S + 1.0, step=1.0)
    assert [len(p.datagram) for p in probes(h)[before:]] == [1472]
    assert h.session.mtu == 1472
    assert raise_at is not None and search_status(h)["next_search"] is None


def test_no_search_timer_on_a_path_searched_to_the_top() -> None:
    h, _ = connected()
    h.advance(6.0)
    keepalive_due = h.session.next_deadline()
    assert keepalive_due is not None and keepalive_due > h.now + 3.0
    assert h.session.status(h.now).mtu_search is not None
    assert h.session.status(h.now).mtu_search.next_search is None  # type: ignore[union-attr]


def test_large_unanswered_small_answered_is_a_black_hole() -> None:
    h, path = connected()
    path.limit = 1400  # the path shrinks under us: 1472-byte packets vanish, small ones cross
    assert h.session.mtu == 1472
    before = len(probes(h))
    # A flow that ran both ways, then large packets go unanswered: the reply check's keepalive is answered.
    h.receive([data_to(h.address, 100)])
    for _ in range(6):
        h.from_tun([data_from(h.address, 1472)] * 4)
        h.advance(0.5)
    h.advance(40.0)
    sizes = [len(p.datagram) for p in probes(h)[before:]]
    assert sizes[:4] == [1472, 1472, 1472, 1280], sizes
    assert 1472 not in sizes[3:]
    assert h.session.mtu == 1400, sizes
    assert [c.effective for c in h.events_of(MtuChanged)] == [1280, 1400]


def test_small_unanswered_traffic_is_no_black_hole() -> None:
    h, _ = connected()
    before = len(probes(h))
    kept = len(h.keepalives())
    h.receive([data_to(h.address, 100)])
    for _ in range(6):
        h.from_tun([data_from(h.address, 1200)] * 4)
        h.advance(0.5)
    h.advance(5.0)
    assert len(h.keepalives()) > kept, "the reply check ran"
    assert probes(h)[before:] == []


def test_pmtud_off_lowers_only_on_evidence_and_never_probes() -> None:
    h, _ = connected(pmtud=False)
    assert probes(h) == []
    assert search_status_or_none(h) is None
    h.session.pmtu_evidence(PmtuEvidence(1400, "icmp"), h.now)
    h.drain()
    assert h.session.mtu == 1372


def search_status_or_none(h: Harness) -> Any:
    return snapshot(h.session.status(h.now))["mtu_detail"].get("search")


def test_probe_mtu_reuses_the_search_and_applies_it() -> None:
    h, path = connected()
    path.limit = 1400
    probe_id, immediate = h.session.start_mtu_probe(h.now)
    assert immediate is None
    h.drain()
    h.advance(20.0)
    [done] = [e for e in h.events_of(MtuProbeDone) if e.probe_id == probe_id]
    assert done.result.ok and done.result.largest == 1400
    assert h.session.mtu == 1400


def test_keepalives_and_data_never_carry_df() -> None:
    h, _ = connected()
    h.from_tun([data_from(h.address, 1400)])
    h.advance(30.0)
    for effect in h.of_type(Send):
        if is_keepalive_request(effect.datagram) or len(effect.datagram) < 1280:
            assert not effect.dont_fragment


def test_settings_refuse_pmtud_without_a_probe() -> None:
    with pytest.raises(ValueError, match="probe"):
        Harness.make(pmtud=True)
