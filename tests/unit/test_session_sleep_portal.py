"""The session after a sleep, behind a captive portal, and the deadlines it gives the driver (issue 12)."""

from __future__ import annotations

import math

import pytest

from m6t.client.effects import OpenSocket, RemoveAddress, RemoveRoutes, SetAddress
from m6t.client.events import ErrorEvent
from m6t.client.vocabulary import State

from .test_session import confirm
from .test_session_harness import (
    ATT1,
    Harness,
    data_from,
    data_to,
    gateway_answers_keepalives,
    ha_answers_everything,
    state,
)

# Sleep ------------------------------------------------------------------------------------------------------


def test_after_a_sleep_one_unanswered_keepalive_regenerates_within_the_resume_timeout() -> None:
    h = Harness.make(resume_timeout=1.0)
    h.connect()
    confirm(h)
    h.advance(2.0)
    old = h.address
    h.session.clock_jump(h.now)  # the driver calls it for logind's resume too
    h.drain()
    assert h.keepalives() == [pytest.approx(2.0)]
    assert h.session.next_deadline() == pytest.approx(3.0)  # not 2 s later, nor after max_missed retries
    h.advance(0.95)
    assert h.address == old
    h.advance(0.1)
    assert h.address != old
    assert h.session.status().regenerations[-1].reason == "keepalive_unanswered"
    assert len(h.keepalives()) == 1


def test_after_a_sleep_an_answered_keepalive_keeps_the_address_and_the_slow_pace() -> None:
    h = Harness.make(resume_timeout=1.0)
    h.responder = gateway_answers_keepalives
    h.connect()
    confirm(h)
    h.advance(2.0)
    h.session.clock_jump(h.now)
    h.drain()
    h.advance(1.5)
    assert len(h.of_type(OpenSocket)) == 1
    # Answered: the binding is no longer suspect, an unanswered keepalive later gets the usual retries.
    h.responder = None
    h.advance(h.session.settings.keepalive_interval + 0.1)
    assert len(h.of_type(OpenSocket)) == 1 and state(h) is State.DEGRADED


def test_resume_timeout_is_checked() -> None:
    with pytest.raises(ValueError):
        Harness.make(resume_timeout=0.0)


# The driver's timer ---------------------------------------------------------------------------------------


def test_an_idle_binding_has_only_its_keepalive_as_deadline() -> None:
    h = Harness.make(keepalive_interval=30.0, counters_interval=5.0)
    h.responder = ha_answers_everything
    h.connect()
    confirm(h)
    assert state(h) is State.CONNECTED
    h.advance(6.0)  # the counters that changed while connecting are reported once
    deadline = h.session.next_deadline()
    # No counters (unchanged), no probe, no retry: nothing before the keepalive, 30 s after the last traffic.
    assert deadline == pytest.approx(30.0)
    assert not h.session.has_output


def test_a_disconnected_session_has_no_deadline() -> None:
    h = Harness.make()
    h.connect()
    h.advance(1.0)
    h.session.down(h.now)
    h.drain()
    h.advance(6.0)
    assert h.session.next_deadline() is None


def test_the_data_path_tells_the_driver_when_it_brings_a_deadline_closer() -> None:
    h = Harness.make(keepalive_interval=30.0, counters_interval=5.0, reply_timeout=2.0)
    h.responder = ha_answers_everything
    h.connect()
    h.advance(10.0)
    armed = h.session.next_deadline()  # what the driver's timer waits for: the keepalive
    assert armed is not None and armed - h.now > 15
    assert not h.session.has_output
    # The first packet after the quiet spell: its counters are due in 5 s, not at the keepalive.
    h.session.tun_packets([data_from(h.address)], h.now)
    assert h.session.has_output
    h.session.pop_events()
    assert not h.session.has_output  # said once; the driver re-reads next_deadline
    assert h.session.next_deadline() == pytest.approx(h.now + 5.0)  # the counters interval, not the keepalive
    h.advance(0.05)
    # Data came in, then ours goes unanswered: the reply check (2 s) comes before anything armed.
    h.receive([data_to(h.address)])
    h.advance(0.05)
    armed = h.session.next_deadline()
    assert armed is not None
    h.session.tun_packets([data_from(h.address)], h.now)
    assert h.session.has_output == (h.now + 2.0 < armed)
    h.session.pop_events()
    h.session.next_deadline()
    h.session.tun_packets([data_from(h.address)], h.now)  # still unanswered: nothing new to say
    assert not h.session.has_output
    assert math.isfinite(h.session.next_deadline() or math.inf)


# Captive portal -------------------------------------------------------------------------------------------


def test_a_captive_portal_holds_the_session_without_attempts_and_full_reconnects_at_once() -> None:
    h = Harness.make()
    h.connect()
    first = h.address
    h.session.captive_portal(True, h.now)
    h.drain()
    assert state(h) is State.SIGN_IN_REQUIRED
    assert "sign in" in h.session.status().detail
    assert h.session.address is None
    assert RemoveAddress(first) in h.effects and any(isinstance(e, RemoveRoutes) for e in h.effects)
    sockets, errors = len(h.of_type(OpenSocket)), len(h.events_of(ErrorEvent))
    h.advance(120.0)
    assert len(h.of_type(OpenSocket)) == sockets  # no attempt burnt against the gateway
    assert len(h.events_of(ErrorEvent)) == errors  # and nothing shown as a failure
    assert h.session.status().failures == 0 and h.session.status().retry_at is None
    assert state(h) is State.SIGN_IN_REQUIRED
    # A new network while held: still held (the OS's verdict is global), the attachment is remembered.
    h.session.detach(h.now)
    h.drain()
    assert state(h) is State.WAITING_FOR_NETWORK
    h.session.attach(ATT1, h.now)
    h.drain()
    assert state(h) is State.SIGN_IN_REQUIRED
    h.session.captive_portal(False, h.now)
    new = h.drain()
    assert state(h) is State.CONNECTING
    assert [type(e) for e in new if isinstance(e, SetAddress | OpenSocket)] == [SetAddress, OpenSocket]


def test_a_portal_while_disconnected_only_remembers() -> None:
    h = Harness.make()
    h.session.captive_portal(True, 0.0)
    h.drain()
    assert state(h) is State.DISCONNECTED
    h.connect()
    assert state(h) is State.SIGN_IN_REQUIRED and h.session.address is None
