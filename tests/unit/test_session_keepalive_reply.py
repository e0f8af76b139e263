"""Only the gateway's real keepalive reply (draft 2.3) proves the binding: from fe80::1, next header 59.

A mutation spot-check found that the suite let the session accept a "reply" from another link-local source,
or one with another next header; each case below fails on such a mutation.  What is checked is what the
user sees: a degraded tunnel that a forged reply would wrongly bring back to connected.
"""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from m6t.client.vocabulary import State
from m6t.protocol import KEEPALIVE_PEER, NEXT_HEADER_NONE, build_keepalive, build_keepalive_reply, parse_ipv6
from m6t.protocol.ipv6 import build_ipv6_header
from tests.unit.test_session import confirm
from tests.unit.test_session_harness import Harness, state


def degraded() -> Harness:
    """A confirmed tunnel whose first keepalive went unanswered (degraded, one miss)."""
    h = Harness.make()
    h.connect()
    confirm(h)
    h.advance(11.0)
    assert state(h) is State.DEGRADED
    assert h.session.status().keepalive.missed == 1
    return h


def test_the_real_reply_recovers() -> None:
    h = degraded()
    replies_before = h.session.counters.keepalive_replies
    h.receive([build_keepalive_reply(parse_ipv6(build_keepalive(h.address.packed)))])
    assert state(h) is State.CONNECTED
    assert h.session.counters.keepalive_replies == replies_before + 1


@pytest.mark.parametrize(
    ("source", "next_header"),
    [
        (IPv6Address("fe80::2").packed, NEXT_HEADER_NONE),  # another link-local source
        (IPv6Address("fe80::1:0:0:1").packed, NEXT_HEADER_NONE),
        (KEEPALIVE_PEER, 58),  # the right source, but ICMPv6
        (KEEPALIVE_PEER, 17),
        (KEEPALIVE_PEER, 0),
    ],
)
def test_a_forged_reply_changes_nothing(source: bytes, next_header: int) -> None:
    h = degraded()
    replies_before = h.session.counters.keepalive_replies
    forged = build_ipv6_header(source, h.address.packed, next_header, 0)
    assert h.receive([forged]) == []
    assert state(h) is State.DEGRADED
    assert h.session.status().keepalive.missed == 1
    assert h.session.counters.keepalive_replies == replies_before
    assert h.session.counters.drops_in.get("link_local_source") == 1
