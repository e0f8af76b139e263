"""The choice of gateway and port (m6t.client.gateways), alone and inside the session (pure: fake clock)."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m6t.client.effects import OpenSocket
from m6t.client.events import AddressChanged, GatewayChanged, GatewayUnreachable
from m6t.client.gateways import Candidate, GatewaySelector, Move
from m6t.client.vocabulary import State

from .test_session_harness import (
    ATT1,
    ATT2,
    HA,
    Harness,
    Responder,
    data_from,
    data_to,
    ha_answers_everything,
    snapshot,
    state,
)

A = Candidate.literal(IPv4Address("198.51.100.9"))
B = Candidate(IPv4Address("198.51.100.2"), "gw.example.org")
C = Candidate(IPv4Address("198.51.100.3"), "gw.example.org")


def at(selector: GatewaySelector) -> tuple[str, int]:
    current = selector.current
    assert current is not None
    return str(current.address), selector.port


# ----------------------------------------------------------------------------------------- the selector


def test_each_port_once_then_the_next_gateway_then_back_off() -> None:
    selector = GatewaySelector((3544, 4500))
    assert selector.set_candidates((A, B))
    assert at(selector) == ("198.51.100.9", 3544)
    assert selector.failed(was_confirmed=False) is Move.NEXT_PORT
    assert at(selector) == ("198.51.100.9", 4500)
    assert selector.failed(was_confirmed=False) is Move.NEXT_GATEWAY
    assert at(selector) == ("198.51.100.2", 3544)
    assert selector.dead == (A,)
    assert selector.failed(was_confirmed=False) is Move.NEXT_PORT
    assert selector.failed(was_confirmed=False) is Move.ALL_DEAD
    # A new round from the most preferred.
    assert at(selector) == ("198.51.100.9", 3544) and not selector.dead


def test_a_lost_binding_gives_its_gateway_the_whole_budget_again() -> None:
    selector = GatewaySelector((3544,))
    selector.set_candidates((A, B))
    selector.confirmed()
    # A NAT rebinding looks like this too: the same gateway first.
    assert selector.failed(was_confirmed=True) is Move.NEXT_PORT
    assert at(selector) == ("198.51.100.9", 3544)
    assert selector.failed(was_confirmed=False) is Move.NEXT_GATEWAY
    assert at(selector) == ("198.51.100.2", 3544)


def test_a_confirmation_starts_a_new_round() -> None:
    selector = GatewaySelector((3544, 4500))
    selector.set_candidates((A, B, C))
    selector.failed(was_confirmed=False)
    selector.failed(was_confirmed=False)
    assert selector.dead == (A,)
    selector.confirmed()
    assert not selector.dead
    # B's port 3544 worked, then stopped: 4500, then 3544 again, then C.
    assert selector.failed(was_confirmed=True) is Move.NEXT_PORT
    assert at(selector) == ("198.51.100.2", 4500)
    assert selector.failed(was_confirmed=False) is Move.NEXT_PORT
    assert at(selector) == ("198.51.100.2", 3544)
    assert selector.failed(was_confirmed=False) is Move.NEXT_GATEWAY
    assert at(selector) == ("198.51.100.3", 3544)
    # The one not tried in this round comes before a backoff, even if it is earlier in the list.
    assert selector.failed(was_confirmed=False) is Move.NEXT_PORT
    assert selector.failed(was_confirmed=False) is Move.NEXT_GATEWAY
    assert at(selector) == ("198.51.100.9", 3544)


def test_a_new_list_keeps_the_gateway_in_use() -> None:
    selector = GatewaySelector((3544, 4500))
    selector.set_candidates((A, B))
    selector.failed(was_confirmed=False)
    selector.failed(was_confirmed=False)
    assert at(selector) == ("198.51.100.2", 3544)
    # The name now resolves to C before B: B is still listed, so it stays.
    assert not selector.set_candidates((A, C, B))
    assert at(selector) == ("198.51.100.2", 3544) and selector.dead == (A,)
    # B gone (the name moved): the most preferred, a fresh round.
    assert selector.set_candidates((C, A))
    assert at(selector) == ("198.51.100.3", 3544) and not selector.dead
    # Nothing at all.
    assert selector.set_candidates(())
    assert selector.current is None
    assert not selector.set_candidates(())


def test_duplicates_keep_their_first_place_and_restart_goes_to_the_top() -> None:
    selector = GatewaySelector((3544,))
    selector.set_candidates((B, A, Candidate.literal(B.address)))
    assert selector.candidates == (B, A)
    selector.failed(was_confirmed=False)
    assert selector.current == A
    assert selector.restart()
    assert selector.current == B
    assert not selector.restart()


def test_new_ports_keep_the_port_in_use_if_they_can() -> None:
    selector = GatewaySelector((3544, 4500))
    selector.set_candidates((A,))
    selector.failed(was_confirmed=False)
    assert not selector.set_ports((4500, 443))
    assert selector.port == 4500
    assert selector.set_ports((443,))
    assert selector.port == 443


@given(
    st.integers(1, 4),
    st.integers(1, 3),
    st.lists(st.booleans(), max_size=60),
)
def test_every_gateway_and_port_is_tried_before_a_backoff(gateways: int, ports: int, outcomes: list[bool]) -> None:
    """Between two backoffs, every (gateway, port) pair is tried exactly once when nothing ever confirms."""
    candidates = tuple(Candidate.literal(IPv4Address(f"198.51.100.{10 + i}")) for i in range(gateways))
    selector = GatewaySelector(tuple(range(3544, 3544 + ports)))
    selector.set_candidates(candidates)
    tried = [at(selector)]
    for confirmed in outcomes:
        if confirmed:
            selector.confirmed()
            tried = []
        move = selector.failed(was_confirmed=confirmed)
        if move is Move.ALL_DEAD:
            assert len(tried) == len(set(tried)) == gateways * ports
            tried = []
        tried.append(at(selector))


# ----------------------------------------------------------------------------------------- the session


def _connect(h: Harness, candidates: Iterable[Candidate]) -> None:
    h.session.up(h.now)
    h.session.set_gateways(tuple(candidates), h.now)
    h.session.attach(ATT1, h.now)
    h.drain()


def _answers_only(address: IPv4Address) -> Responder:
    def responder(h: Harness, datagram: bytes) -> Iterable[bytes]:
        return ha_answers_everything(h, datagram) if h.peer[0] == str(address) else []

    return responder


def test_session_skips_a_dead_gateway_at_once_and_says_so() -> None:
    h = Harness.make(confirm_timeout=5.0)  # no probe address: data confirms
    _connect(h, (A, B))
    assert h.session.gateway == (A.address, 3544)
    assert "gateway 198.51.100.9, port 3544" in h.session.status().detail
    h.from_tun([data_from(h.address)])
    h.advance(5.1)
    # No reply in 5 s: B at once (no backoff), a new suffix.
    assert h.session.gateway == (B.address, 3544)
    opens = h.of_type(OpenSocket)
    assert [(str(o.gateway), o.port) for o in opens] == [("198.51.100.9", 3544), ("198.51.100.2", 3544)]
    [unreachable] = h.events_of(GatewayUnreachable)
    assert unreachable.gateway == A and unreachable.next == B and not unreachable.all_dead
    changes = h.events_of(GatewayChanged)
    assert [(c.previous, c.gateway) for c in changes] == [(None, A), (A, B)]
    addresses = h.events_of(AddressChanged)
    assert addresses[-1].gateway == (B.address, 3544) and addresses[-1].gateway_name == "gw.example.org"
    assert addresses[-1].old == addresses[0].new and addresses[-1].new != addresses[-1].old
    h.receive([data_to(h.address)])
    assert state(h) is State.CONNECTED
    wire = snapshot(h.session.status())["gateway_detail"]
    assert wire["host"] == "gw.example.org" and wire["address"] == "198.51.100.2"
    assert [c["address"] for c in wire["candidates"]] == ["198.51.100.9", "198.51.100.2"]
    assert wire["dead"] == []  # the confirmation started a new round


def test_session_backs_off_only_when_every_gateway_failed() -> None:
    h = Harness.make(probe=HA, probe_timeout=1.0, probe_tries=1, backoff_initial=1.0)
    _connect(h, (A, B))
    h.advance(1.05)  # A failed at 1.0: B at once
    assert h.session.gateway == (B.address, 3544) and h.session.status().retry_at is None
    h.advance(1.0)  # B failed at 2.0: every one dead, back to A after the backoff (1 s: the second failure)
    assert h.session.gateway == (A.address, 3544)
    assert h.session.status().retry_at == pytest.approx(3.0, abs=0.06)
    assert state(h) is State.DEGRADED and "retrying in 1 s via 198.51.100.9 port 3544" in h.session.status().detail
    assert h.events_of(GatewayUnreachable)[-1].all_dead
    h.advance(2.0)  # A tried at 3.0, failed at 4.0: B at once
    assert h.session.gateway == (B.address, 3544) and h.session.status().retry_at is None
    h.advance(1.0)  # B failed at 5.0: 4 s now (the fourth failure in a row)
    assert h.session.status().retry_at == pytest.approx(9.0, abs=0.11)
    opens = [str(o.gateway) for o in h.of_type(OpenSocket)]
    assert opens == ["198.51.100.9", "198.51.100.2", "198.51.100.9", "198.51.100.2"]


def test_session_keeps_the_binding_when_the_list_still_has_its_gateway() -> None:
    h = Harness.make(probe=HA)
    h.responder = ha_answers_everything
    _connect(h, (B,))
    h.advance(0.2)
    assert state(h) is State.CONNECTED
    first = h.address
    h.session.set_gateways((C, B), h.now)
    h.drain()
    assert h.address == first and h.session.gateway == (B.address, 3544)
    # The name moved away from B: a new binding with C (states never move between gateways).
    h.session.set_gateways((C,), h.now)
    h.drain()
    assert h.session.gateway == (C.address, 3544)
    assert h.address != first
    assert h.session.status().regenerations[-1].reason == "gateway_changed"


def test_session_a_new_network_starts_from_the_most_preferred_gateway() -> None:
    h = Harness.make(probe=HA, probe_timeout=1.0, probe_tries=1)
    h.responder = _answers_only(B.address)
    _connect(h, (A, B))
    h.advance(1.2)
    assert h.session.gateway == (B.address, 3544) and state(h) is State.CONNECTED
    h.session.attach(ATT2, h.now)
    h.drain()
    assert h.session.gateway == (A.address, 3544)
    assert h.events_of(GatewayChanged)[-1].reason == "new network"


def test_session_the_path_toward_the_gateway_failed_over_to_is_no_new_network() -> None:
    """The backup gateway reached through another interface than the preferred one: the first look-up toward it
    must not send the session back to the preferred gateway that just failed (it would bounce between them)."""
    h = Harness.make(probe=HA, probe_timeout=1.0, probe_tries=1)
    h.responder = _answers_only(B.address)
    _connect(h, (A, B))
    h.advance(1.2)  # A failed: B, through the interface the OS routes it by
    assert h.session.gateway == (B.address, 3544) and state(h) is State.CONNECTED
    bound = h.address
    # The socket toward B left from ATT2's address: the path look-up toward B says ATT2, the binding stays.
    h.session.socket_opened((str(ATT2.local_ipv4), 41000), h.now)
    h.session.attach(ATT2, h.now, new_gateway=True)
    h.drain()
    assert h.session.gateway == (B.address, 3544) and h.address == bound and state(h) is State.CONNECTED
    assert h.events_of(GatewayChanged)[-1].gateway == B
    # Bound from elsewhere (the path moved meanwhile): a new binding on the new path, still with B.
    h.session.attach(ATT1, h.now, new_gateway=True)
    h.drain()
    assert h.session.gateway == (B.address, 3544) and h.address != bound
    # A real change of network still starts from the most preferred gateway.
    h.session.attach(ATT2, h.now)
    h.drain()
    assert h.session.gateway == (A.address, 3544)
