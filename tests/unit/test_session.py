"""The client session's rules, with a fake clock (pure: no root, no sockets)."""

from __future__ import annotations

import itertools
import json
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest

from m6t.client.api import wire
from m6t.client.effects import (
    CloseSocket,
    OpenSocket,
    RemoveAddress,
    RemoveRoutes,
    Send,
    SetAddress,
    SetMtu,
    SetRoutes,
)
from m6t.client.events import (
    AddressChanged,
    AttachmentChanged,
    ErrorEvent,
    KeepaliveEvent,
    KeepaliveKind,
    MtuChanged,
    StateChanged,
)
from m6t.client.session import SessionSettings, settings_routes
from m6t.client.vocabulary import ErrorCode, State
from m6t.protocol import build_keepalive, build_keepalive_reply, is_keepalive_request, parse_ipv6
from m6t.protocol.icmp import FragNeeded, QuotedFlow
from m6t.protocol.values import Attachment, MergedPacket, PmtuEvidence, Route

from .test_session_harness import (
    ATT1,
    ATT2,
    GW,
    HA,
    PREFIX,
    ROUTES,
    Harness,
    data_from,
    data_to,
    echo_reply_to,
    gateway_answers_keepalives,
    ha_answers_everything,
    icmpv6,
    settings,
    snapshot,
    state,
)


def confirm(h: Harness) -> None:
    """The Home Agent answers the first packet: the gateway's state for this address is active."""
    h.receive([data_to(h.address)])
    assert h.session.confirmed


# ---------------------------------------------------------------------------------------- attachment


def test_attach_installs_address_routes_and_socket() -> None:
    h = Harness.make()
    effects = h.connect()
    assert [type(e) for e in effects] == [SetAddress, SetRoutes, OpenSocket]
    set_address = effects[0]
    assert isinstance(set_address, SetAddress)
    assert set_address.address in PREFIX
    assert set_address.prefixlen == 128
    assert effects[1] == SetRoutes(ROUTES)
    assert effects[2] == OpenSocket(GW, 3544)
    assert state(h) is State.CONNECTING
    assert "not yet confirmed" in h.session.status().detail
    [changed] = h.events_of(AddressChanged)
    assert changed.old is None and changed.new == set_address.address and changed.reason == "attached"


def test_waits_for_network_and_for_the_gateway_address() -> None:
    h = Harness.make()
    h.session.up(0)
    h.drain()
    assert state(h) is State.WAITING_FOR_NETWORK
    assert "resolving" in h.session.status().detail
    h.session.attach(ATT1, 0)
    h.drain()
    assert h.effects == []
    h.session.set_gateway(GW, 0)
    assert [type(e) for e in h.drain()] == [SetAddress, SetRoutes, OpenSocket]


def test_nothing_happens_until_up() -> None:
    h = Harness.make()
    h.session.set_gateway(GW, 0)
    h.session.attach(ATT1, 0)
    h.drain()
    assert h.effects == []
    assert state(h) is State.DISCONNECTED
    h.session.up(0)
    assert [type(e) for e in h.drain()] == [SetAddress, SetRoutes, OpenSocket]


def test_change_of_attachment_means_new_suffix_old_address_removed_new_socket() -> None:
    h = Harness.make()
    h.connect()
    old = h.address
    h.now = 5
    h.session.attach(ATT2, h.now)
    effects = h.drain()
    new = h.address
    assert new != old and new in PREFIX
    assert effects == [RemoveAddress(old), SetAddress(new), OpenSocket(GW, 3544)]
    assert h.session.status().regenerations[-1].reason == "attachment_changed"
    # Same network, another egress address (DHCP renumbering): also a change.
    h.session.attach(Attachment(IPv4Address("192.0.2.99"), ATT2.interface, ATT2.router), h.now)
    effects = h.drain()
    assert effects[0] == RemoveAddress(new)
    # Never two m6t addresses left behind.
    installed: set[IPv6Address] = set()
    for e in h.effects:
        if isinstance(e, SetAddress):
            installed.add(e.address)
        elif isinstance(e, RemoveAddress):
            installed.discard(e.address)
    assert installed == {h.address}


def test_a_new_router_alone_is_not_a_move() -> None:
    h = Harness.make()
    h.connect()
    h.session.attach(Attachment(ATT1.local_ipv4, ATT1.interface, IPv4Address("192.0.2.254")), 1)
    assert h.drain() == []
    assert isinstance(h.events[-1], AttachmentChanged)


def test_detach_removes_address_and_routes() -> None:
    h = Harness.make()
    h.connect()
    old = h.address
    h.session.detach(3)
    assert h.drain() == [RemoveAddress(old), RemoveRoutes(ROUTES), CloseSocket()]
    assert state(h) is State.WAITING_FOR_NETWORK
    assert h.session.address is None
    status = snapshot(h.session.status())
    assert status["address"] is None and status["attachment"] is None
    # And back: a fresh suffix, the routes again.
    h.session.attach(ATT1, 4)
    effects = h.drain()
    assert [type(e) for e in effects] == [SetAddress, SetRoutes, OpenSocket]
    assert h.address != old


def test_down_and_up_are_idempotent() -> None:
    h = Harness.make()
    h.connect()
    addr = h.address
    h.session.up(1)
    assert h.drain() == []
    h.session.down(1)
    assert h.drain() == [RemoveAddress(addr), RemoveRoutes(ROUTES), CloseSocket()]
    assert state(h) is State.DISCONNECTED
    h.session.down(2)
    assert h.drain() == []
    h.session.up(3)
    assert [type(e) for e in h.drain()] == [SetAddress, SetRoutes, OpenSocket]


def test_gateway_address_change_reattaches() -> None:
    h = Harness.make()
    h.connect()
    old = h.address
    h.session.set_gateway(IPv4Address("198.51.100.3"), 1)
    effects = h.drain()
    assert effects[0] == RemoveAddress(old)
    assert OpenSocket(IPv4Address("198.51.100.3"), 3544) in effects
    assert h.session.status().regenerations[-1].reason == "gateway_changed"


# ----------------------------------------------------------------------------------------- keepalive


def test_keepalive_packet_shape() -> None:
    h = Harness.make()
    h.connect()
    confirm(h)
    h.advance(10.0)
    [(t, ka)] = [(t, d) for t, d in h.sent if is_keepalive_request(d)]
    assert ka == build_keepalive(h.address.packed)
    assert t == pytest.approx(10.0)


def test_exactly_one_keepalive_pair_per_idle_interval_and_rtt() -> None:
    h = Harness.make()
    h.responder = gateway_answers_keepalives
    h.rtt = 0.2
    h.connect()
    confirm(h)
    h.advance(100.5)
    sent = h.keepalives()
    assert len(sent) == 10
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(g == pytest.approx(10.0, abs=0.06) for g in gaps)
    replies = [e for e in h.events_of(KeepaliveEvent) if e.what is KeepaliveKind.REPLY]
    assert len(replies) == 10
    assert all(e.rtt == pytest.approx(0.2, abs=1e-6) for e in replies)
    status = snapshot(h.session.status(h.now))
    assert status["keepalive"]["rtt_ms"] == pytest.approx(200.0)
    assert status["keepalive"]["missed"] == 0
    assert state(h) is State.CONNECTED
    assert len(h.of_type(OpenSocket)) == 1


def test_no_keepalive_while_traffic_flows_both_ways() -> None:
    h = Harness.make()
    h.responder = gateway_answers_keepalives
    h.connect()
    confirm(h)

    def traffic(h: Harness) -> None:
        if round(h.now * 20) % 20 == 0:  # once a second, each way
            h.from_tun([data_from(h.address)])
            h.receive([data_to(h.address)])

    h.advance(60.0, each=traffic)
    assert h.keepalives() == []


def test_one_way_traffic_still_gets_one_keepalive_per_interval() -> None:
    h = Harness.make()
    h.responder = gateway_answers_keepalives
    h.connect()
    confirm(h)

    def outbound(h: Harness) -> None:
        if round(h.now * 20) % 20 == 0:
            h.from_tun([data_from(h.address)])

    h.advance(55.0, each=outbound)
    kas = h.keepalives()
    # confirm() brought data in, so the first unanswered second of outbound traffic arms one early check
    # (reply_timeout after it); after that the flow is one-way and it is one per interval.  The interval
    # restarts at each reply here, so the keepalives drift by one round trip each.
    assert kas[0] == pytest.approx(1.0 + 2.0, abs=0.06)
    assert len(kas) == 6
    assert all(9.9 < b - a < 10.2 for a, b in itertools.pairwise(kas[1:]))


def test_a_flow_that_stops_coming_back_is_checked_at_once_and_a_lost_binding_found_in_seconds() -> None:
    h = Harness.make()
    h.responder = gateway_answers_keepalives
    h.connect()
    confirm(h)
    old = h.address
    broken_at = 20.0

    def both_ways_until_the_nat_rebinds(h: Harness) -> None:
        if round(h.now * 20) % 10 == 0:  # twice a second, each way
            h.from_tun([data_from(h.address)])
            if h.now < broken_at:
                h.receive([data_to(h.address)])
        if h.now >= broken_at:
            h.responder = None  # the gateway drops everything from the new NAT mapping (draft 2.4)
            h.in_flight.clear()

    h.advance(broken_at, each=both_ways_until_the_nat_rebinds)
    assert h.keepalives() == []  # nothing to check while the flow runs both ways
    h.advance(8.0, each=both_ways_until_the_nat_rebinds)
    kas = h.keepalives(since=broken_at)
    # reply_timeout (2 s) after the first unanswered packet, then retries every retry_interval (1 s here)
    assert kas[0] == pytest.approx(broken_at + 2.0, abs=0.06)
    regeneration = h.session.status().regenerations[-1]
    assert regeneration.reason == "keepalive_unanswered"
    assert regeneration.time - broken_at < 2.0 + 3 * 1.0 + 0.2
    assert h.address != old


def test_an_answered_check_does_not_repeat_while_the_flow_stays_one_way() -> None:
    h = Harness.make()
    h.responder = gateway_answers_keepalives
    h.connect()
    confirm(h)

    def outbound(h: Harness) -> None:
        if round(h.now * 20) % 5 == 0:
            h.from_tun([data_from(h.address)])

    h.advance(9.0, each=outbound)
    assert len(h.keepalives()) == 1  # the one early check, answered: the binding is fine
    assert state(h) is State.CONNECTED


def test_inbound_only_traffic_still_gets_one_keepalive_per_interval() -> None:
    h = Harness.make()
    h.responder = gateway_answers_keepalives
    h.connect()
    confirm(h)

    def inbound(h: Harness) -> None:
        if round(h.now * 20) % 20 == 0:
            h.receive([data_to(h.address)])

    h.advance(50.0, each=inbound)
    assert len(h.keepalives()) == 5


# ------------------------------------------------------------------------------------- lost binding


def test_lost_binding_after_three_unanswered_keepalives() -> None:
    h = Harness.make()
    h.connect()
    confirm(h)
    old = h.address
    h.advance(10.0 + 3 * 1.0 + 0.1)
    kas = h.keepalives()
    # The first after the idle interval, then two short retries, all unanswered: the third miss regenerates.
    assert kas == pytest.approx([10.0, 11.0, 12.0], abs=0.06)
    assert h.address != old
    assert RemoveAddress(old) in h.effects
    assert len(h.of_type(OpenSocket)) == 2
    assert h.session.status().regenerations[-1].reason == "keepalive_unanswered"
    [error] = h.events_of(ErrorEvent)
    assert error.code is ErrorCode.BINDING_LOST
    states = [e.state for e in h.events_of(StateChanged)]
    assert State.DEGRADED in states
    assert state(h) is State.CONNECTING


def test_an_answer_after_a_miss_recovers_without_regeneration() -> None:
    h = Harness.make()
    h.connect()
    confirm(h)
    h.advance(11.0)
    assert state(h) is State.DEGRADED
    assert h.session.status().keepalive.missed == 1
    ka = h.sent[-1][1]
    h.receive([build_keepalive_reply(parse_ipv6(ka))])
    assert state(h) is State.CONNECTED
    h.advance(10.0)
    assert len(h.of_type(OpenSocket)) == 1


def test_no_regeneration_loop_on_an_idle_unconfirmed_tunnel() -> None:
    h = Harness.make()
    h.connect()
    h.advance(200.0)
    assert len(h.of_type(OpenSocket)) == 1
    assert h.events_of(ErrorEvent) == []
    assert state(h) is State.CONNECTING
    # Keepalives still go out (they keep a NAT mapping), one per interval, never retried.
    kas = h.keepalives()
    assert len(kas) == 20
    assert h.session.status().keepalive.missed == 0


def test_lost_binding_moves_to_the_next_port_and_backs_off() -> None:
    h = Harness.make(ports=(3544, 4500), confirm_timeout=5.0)
    h.connect()
    confirm(h)
    h.advance(13.1)
    assert h.session.gateway == (GW, 4500)
    # The new address is never answered either: traffic goes out, nothing comes back.
    failures: list[float] = []
    last_opens = 2

    def send(h: Harness) -> None:
        nonlocal last_opens
        h.from_tun([data_from(h.address)])
        if len(h.of_type(OpenSocket)) != last_opens:
            last_opens = len(h.of_type(OpenSocket))
            failures.append(h.now)

    h.advance(60.0, each=send)
    ports = [e.port for e in h.of_type(OpenSocket)]
    assert ports[:5] == [3544, 4500, 3544, 4500, 3544]
    # 5 s without reply each time, then waits of 1 (before the first recorded attempt), 2, 4, 8 s.
    gaps = [b - a for a, b in itertools.pairwise(failures)]
    assert gaps[:3] == pytest.approx([5.0 + 2.0, 5.0 + 4.0, 5.0 + 8.0], abs=0.11)
    assert [e.code for e in h.events_of(ErrorEvent)][1:4] == [ErrorCode.NO_REPLY] * 3
    # An answer resets the backoff.
    confirm(h)
    assert h.session.status().failures == 0


def test_data_during_the_backoff_wait_cancels_the_retry() -> None:
    h = Harness.make(probe=HA, probe_timeout=1.0, probe_tries=1)
    h.connect()
    h.advance(1.05)  # first failure: immediate retry
    h.advance(1.05)  # second: wait 1 s
    status = h.session.status()
    assert status.retry_at is not None and state(h) is State.DEGRADED
    confirm(h)
    assert h.session.status().retry_at is None and state(h) is State.CONNECTED
    opened = len(h.of_type(OpenSocket))
    h.advance(3.0)
    assert len(h.of_type(OpenSocket)) == opened


def test_backoff_is_capped() -> None:
    h = Harness.make(probe=HA, probe_timeout=1.0, probe_tries=1, backoff_initial=1.0, backoff_max=8.0)
    h.connect()
    h.advance(120.0)
    times = [r.time for r in h.session.status().regenerations]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[:6] == pytest.approx([1, 2, 3, 5, 9, 9], abs=0.06)
    assert max(gaps) == pytest.approx(9.0, abs=0.06)


def test_clock_jump_triggers_an_immediate_check() -> None:
    h = Harness.make()
    h.connect()
    confirm(h)
    h.advance(2.0)
    assert h.keepalives() == []
    h.session.clock_jump(h.now)
    h.drain()
    assert h.keepalives() == [pytest.approx(2.0)]
    old = h.address
    h.advance(3.05)
    assert h.address != old
    assert h.session.status().regenerations[-1].reason == "keepalive_unanswered"


def test_clock_jump_when_answered_is_just_one_keepalive() -> None:
    h = Harness.make()
    h.responder = gateway_answers_keepalives
    h.connect()
    confirm(h)
    h.advance(2.0)
    h.session.clock_jump(h.now)
    h.drain()
    h.advance(5.0)
    assert len(h.keepalives()) == 1
    assert len(h.of_type(OpenSocket)) == 1


# ----------------------------------------------------------------------------------- probe and ports


def test_probe_confirms_the_new_address() -> None:
    h = Harness.make(probe=HA)
    h.responder = ha_answers_everything
    h.connect()
    [probe] = [d for _, d in h.sent]
    header = parse_ipv6(probe)
    assert header.dst_address == HA and header.src_address == h.address and header.next_header == 58
    assert state(h) is State.CONNECTING
    h.advance(0.1)
    assert state(h) is State.CONNECTED
    assert h.delivered == []  # our own echo reply is not handed to the OS
    counters = snapshot(h.session.status())["counters"]
    assert counters["probes_sent"] == 1 and counters["probe_replies"] == 1


def test_probe_unanswered_moves_to_the_next_port() -> None:
    h = Harness.make(ports=(3544, 4500), probe=HA, probe_timeout=1.0, probe_tries=3)

    def blocked_3544(h: Harness, datagram: bytes) -> list[bytes]:
        if h.peer[1] == 3544:
            return []
        return list(ha_answers_everything(h, datagram))

    h.responder = blocked_3544
    h.connect()
    first = h.address
    h.advance(2.9)
    assert h.session.gateway == (GW, 3544)
    assert len([1 for _, d in h.sent if not is_keepalive_request(d)]) == 3
    h.advance(0.2)
    assert h.session.gateway == (GW, 4500)
    assert h.address != first
    [error] = h.events_of(ErrorEvent)
    assert error.code is ErrorCode.PROBE_UNANSWERED and "3544" in error.detail
    h.advance(0.2)
    assert state(h) is State.CONNECTED
    assert snapshot(h.session.status())["gateway"] == "198.51.100.2:4500"


def test_user_echo_replies_are_delivered_not_swallowed() -> None:
    h = Harness.make(probe=HA)
    h.connect()
    # The user's own ping to the Home Agent, with an identifier of its own, while our probe is pending.
    user_request = icmpv6(h.address.packed, HA.packed, 128, ident=0x1234, seq=1, data=b"user")
    user_reply = echo_reply_to(user_request)
    assert user_reply is not None
    assert h.receive([user_reply]) == [user_reply]
    assert snapshot(h.session.status())["counters"]["probe_replies"] == 0


# ----------------------------------------------------------------------------------- inbound checks


def test_inbound_checks_and_drop_counters() -> None:
    h = Harness.make()
    h.connect()
    me = h.address
    good = data_to(me)
    assert h.receive([good]) == [good]
    assert h.receive([good], source=("198.51.100.2", 9999)) == []
    assert h.receive([good], source=("198.51.100.66", 3544)) == []
    assert h.receive([b"\x45" + bytes(50)]) == []
    assert h.receive([good[:30]]) == []
    assert h.receive([good + b"x"]) == []
    assert h.receive([data_to(IPv6Address(int(me) ^ 1))]) == []
    assert h.receive([data_to(me, src=IPv6Address("fe80::1"))]) == []
    # A keepalive reply is consumed; the same from a stranger is dropped.
    reply = build_keepalive_reply(parse_ipv6(build_keepalive(me.packed)))
    assert h.receive([reply]) == []
    assert h.receive([reply], source=("203.0.113.5", 3544)) == []
    counters = snapshot(h.session.status())["counters"]
    assert counters["rx_packets"] == 1 and counters["rx_bytes"] == len(good)
    assert counters["keepalive_replies"] == 1
    assert counters["rx_drop_foreign_source"] == 3
    assert counters["rx_drop_not_ipv6"] == 1
    assert counters["rx_drop_too_short"] == 1
    assert counters["rx_drop_length_mismatch"] == 1
    assert counters["rx_drop_not_our_address"] == 1
    assert counters["rx_drop_link_local_source"] == 1
    assert counters["rx_dropped"] == 8


def test_packets_for_an_old_address_are_dropped() -> None:
    h = Harness.make()
    h.connect()
    old = h.address
    h.session.attach(ATT2, 1)
    h.drain()
    assert h.receive([data_to(old)]) == []
    assert not h.session.confirmed


def test_outbound_checks() -> None:
    h = Harness.make()
    h.session.up(0)
    h.session.set_gateway(GW, 0)
    h.drain()
    pkt = data_from(IPv6Address(PREFIX.network_address + 5))
    assert h.from_tun([pkt]) == []
    h.session.attach(ATT1, 0)
    h.drain()
    me = h.address
    mine = data_from(me, 1472)
    assert h.from_tun([mine, mine]) == [mine, mine]
    assert h.from_tun([data_from(IPv6Address("fe80::2"))]) == []
    assert h.from_tun([data_from(me, dst=IPv6Address("ff02::16"))]) == []
    assert h.from_tun([b"\x60" + bytes(10)]) == []
    counters = snapshot(h.session.status())["counters"]
    assert counters["tx_packets"] == 2 and counters["tx_bytes"] == 2944
    assert counters["tx_drop_no_path"] == 1
    assert counters["tx_drop_not_our_source"] == 1
    assert counters["tx_drop_multicast"] == 1
    assert counters["tx_drop_too_short"] == 1


def merged(packet: bytes, segments: int, overhead: int = 48) -> MergedPacket:
    """``packet`` as a backend with offloads hands it over: one header checked for ``segments`` packets."""
    result = MergedPacket(packet)
    result.segments = segments
    result.overhead = overhead
    return result


def test_merged_packets_are_counted_as_the_packets_they_stand_for() -> None:
    h = Harness.make()
    h.connect()
    me = h.address
    up = merged(data_from(me, 4 * 1400), 4)
    down = merged(data_to(me, 3 * 1400), 3)
    # Passed on whole (the backend splits them), counted as what the wire carries.
    assert h.from_tun([up, data_from(me, 1000)]) == [up, data_from(me, 1000)]
    assert h.receive([down]) == [down]
    counters = snapshot(h.session.status())["counters"]
    assert counters["tx_packets"] == 5 and counters["tx_bytes"] == len(up) + 3 * 48 + 1000
    assert counters["rx_packets"] == 3 and counters["rx_bytes"] == len(down) + 2 * 48
    # Dropped, every packet it stands for is a drop.
    assert h.from_tun([merged(data_from(IPv6Address(int(me) ^ 1), 2800), 2)]) == []
    assert h.receive([merged(data_to(me, 2800), 2)], source=("198.51.100.66", 3544)) == []
    counters = snapshot(h.session.status())["counters"]
    assert counters["tx_drop_not_our_source"] == 2 and counters["tx_packets"] == 5
    assert counters["rx_drop_foreign_source"] == 2 and counters["rx_packets"] == 3


# ---------------------------------------------------------------------------------------------- MTU


def mtu_changes(h: Harness) -> list[int]:
    return [e.mtu for e in h.of_type(SetMtu)]


def test_mtu_lowered_only_on_evidence_and_never_below_1280() -> None:
    h = Harness.make()
    h.connect()
    assert h.session.mtu == 1472
    h.session.pmtu_evidence(PmtuEvidence(1500, "icmp"), 1)
    assert mtu_changes(h) == [] and h.drain() == []
    h.session.pmtu_evidence(PmtuEvidence(1400, "icmp"), 1)
    h.drain()
    assert mtu_changes(h) == [1372]
    [event] = h.events_of(MtuChanged)
    assert (event.previous, event.effective, event.evidence, event.path_mtu) == (1472, 1372, "icmp", 1400)
    h.session.pmtu_evidence(PmtuEvidence(1450, "icmp"), 2)  # never raised by evidence
    h.session.pmtu_evidence(PmtuEvidence(576, "icmp"), 3)
    h.drain()
    assert mtu_changes(h) == [1372, 1280]
    h.session.pmtu_evidence(PmtuEvidence(0, "emsgsize"), 4)
    h.drain()
    assert mtu_changes(h) == [1372, 1280]
    detail = snapshot(h.session.status())["mtu_detail"]
    assert detail["configured"] == 1472 and detail["effective"] == 1280
    assert detail["last_evidence"]["source"] == "emsgsize"
    # A new network is a new path: back to the configured MTU.
    h.session.attach(ATT2, 5)
    h.drain()
    assert mtu_changes(h) == [1372, 1280, 1472]


def test_emsgsize_without_a_number_falls_to_the_floor() -> None:
    h = Harness.make()
    h.connect()
    h.session.pmtu_evidence(PmtuEvidence(0, "emsgsize"), 1)
    h.drain()
    assert mtu_changes(h) == [1280]


def test_frag_needed_must_quote_our_own_flow() -> None:
    h = Harness.make()
    h.connect()
    local_port = 40001  # what the harness reported for the socket

    def frag(src: str, sport: int, dst: str, dport: int, mtu: int = 1400) -> FragNeeded:
        flow = QuotedFlow(IPv4Address(src), IPv4Address(dst), sport, dport)
        return FragNeeded(mtu, flow, 1500)

    assert not h.session.frag_needed(frag("192.0.2.10", local_port + 1, "198.51.100.2", 3544), 1)
    assert not h.session.frag_needed(frag("192.0.2.10", local_port, "198.51.100.2", 4500), 1)
    assert not h.session.frag_needed(frag("192.0.2.11", local_port, "198.51.100.2", 3544), 1)
    h.drain()
    assert mtu_changes(h) == []
    assert h.session.frag_needed(frag("192.0.2.10", local_port, "198.51.100.2", 3544), 1)
    h.drain()
    assert mtu_changes(h) == [1372]


def test_evidence_without_a_flow_is_ignored() -> None:
    h = Harness.make()
    h.session.pmtu_evidence(PmtuEvidence(1300, "icmp"), 0)
    h.drain()
    assert mtu_changes(h) == []


def test_mtu_settings() -> None:
    with pytest.raises(ValueError):
        settings(mtu=1279)
    with pytest.raises(ValueError):
        settings(ports=())
    assert settings(mtu=1280).mtu == 1280


# ----------------------------------------------------------------------------------------- settings


def test_live_settings_changes() -> None:
    h = Harness.make()
    h.responder = gateway_answers_keepalives
    h.connect()
    confirm(h)
    addr = h.address
    h.session.update_settings(settings(mtu=1400, keepalive_interval=2.0), h.now)
    assert h.drain() == [SetMtu(1400)]
    assert h.address == addr
    h.advance(10.0)
    assert len(h.keepalives()) == 5
    # A new prefix means a new address.
    from ipaddress import IPv6Network

    other = IPv6Network("fd6d:3674:a1b2:0:2::/80")
    h.session.update_settings(settings(prefix=other, keepalive_interval=2.0, mtu=1400), h.now)
    effects = h.drain()
    assert effects[0] == RemoveAddress(addr)
    assert h.address in other
    # Routes replaced, port dropped from the list → the next one.
    new_routes = settings_routes(False, 100, (IPv6Network("fd00:ab::/64"),))
    h.session.update_settings(settings(prefix=other, ports=(4500,), routes=new_routes, mtu=1400), h.now)
    effects = h.drain()
    assert effects[:2] == [RemoveRoutes(ROUTES), SetRoutes(new_routes)]
    assert OpenSocket(GW, 4500) in effects


def test_settings_routes() -> None:
    from ipaddress import IPv6Network

    routes = settings_routes(True, 1029, (IPv6Network("fd00:ab::/64"),))
    assert [(str(r.network), r.metric) for r in routes] == [("::/0", 1029), ("fd00:ab::/64", 1029)]
    assert settings_routes(False, 5, ()) == ()


# -------------------------------------------------------------------------------- failures, status


def test_socket_failure_is_an_error_retried_with_backoff() -> None:
    h = Harness.make()
    h.session.up(0)
    h.session.set_gateway(GW, 0)
    h.session.attach(ATT1, 0)
    effects = h.session.pop_effects()
    opener = next(e for e in effects if isinstance(e, OpenSocket))
    h.session.effect_failed(opener, "Network is unreachable", 0)
    h.drain()
    assert state(h) is State.ERROR
    assert h.events_of(ErrorEvent)[-1].code is ErrorCode.SOCKET_FAILED
    assert h.from_tun([data_from(IPv6Address(PREFIX.network_address + 1))]) == []
    h.advance(1.1)
    assert state(h) is State.CONNECTING
    assert len(h.of_type(OpenSocket)) == 1
    assert h.session.status().regenerations[-1].reason == "retry_after_error"


def test_status_is_json_and_complete() -> None:
    h = Harness.make(probe=HA)
    h.responder = ha_answers_everything
    h.connect()
    h.advance(0.2)
    h.session.attach(ATT2, h.now)
    h.drain()
    status = snapshot(h.session.status(h.now), wall_offset=1_700_000_000.0)
    text = json.dumps(status)
    assert json.loads(text) == status
    for key in ("state", "address", "gateway", "mtu", "keepalive", "attachment", "counters", "regenerations"):
        assert key in status
    regens = status["regenerations"]
    assert [r["reason"] for r in regens] == ["attached", "attachment_changed"]
    assert regens[1]["old"] == regens[0]["new"]
    assert regens[0]["time"] >= 1_700_000_000.0
    assert status["attachment"] == {"local_ipv4": "203.0.113.10", "interface": "wlan0", "router": "203.0.113.1"}
    for event in h.events:
        json.dumps(wire.event_to_wire(event))


def test_counters_event_is_periodic_and_only_on_change() -> None:
    from m6t.client.events import CountersEvent

    h = Harness.make(counters_interval=5.0)
    h.connect()
    h.advance(5.0)
    h.from_tun([data_from(h.address)])
    h.advance(30.0)
    events = h.events_of(CountersEvent)
    assert 1 <= len(events) <= 4
    assert events[-1].counters["tx_packets"] == 1


def test_next_deadline_is_never_later_than_the_keepalive() -> None:
    h = Harness.make()
    h.connect()
    confirm(h)
    deadline = h.session.next_deadline()
    assert deadline is not None and deadline <= 10.0


def test_send_effects_are_keepalives_and_probes_only() -> None:
    h = Harness.make(probe=HA)
    h.connect()
    h.advance(30.0)
    for effect in h.of_type(Send):
        header = parse_ipv6(effect.datagram)
        assert header.src_address in PREFIX
        assert is_keepalive_request(effect.datagram) or (header.dst_address == HA and header.next_header == 58)


def test_shared_allocator_keeps_suffixes_distinct() -> None:
    from m6t.client.session import Session
    from m6t.protocol import SuffixAllocator

    allocator = SuffixAllocator()
    a = Session(settings(), allocator=allocator)
    b = Session(settings(), allocator=allocator)
    for s in (a, b):
        s.up(0)
        s.set_gateway(GW, 0)
        s.attach(ATT1, 0)
    assert a.address != b.address
    assert len(allocator.in_use(PREFIX)) == 2
    a.down(1)
    assert len(allocator.in_use(PREFIX)) == 1


def test_settings_validation() -> None:
    with pytest.raises(ValueError):
        SessionSettings(prefix=PREFIX, ports=(0,))
    with pytest.raises(ValueError):
        SessionSettings(prefix=PREFIX, ports=(1,), keepalive_interval=0)
    assert SessionSettings(prefix=PREFIX, ports=(1,), keepalive_interval=1.0).keepalive_retry == 1.0


def test_an_answer_does_not_cancel_the_retry_after_an_os_failure() -> None:
    h = Harness.make()
    h.connect()
    addr = h.address
    h.session.effect_failed(SetAddress(addr), "Operation not permitted", h.now)
    h.drain()
    assert state(h) is State.ERROR
    assert h.events_of(ErrorEvent)[-1].code is ErrorCode.ADDRESS_FAILED
    h.receive([data_to(addr)])  # the gateway path works, but the OS does not have our address
    assert state(h) is State.ERROR
    h.advance(1.1)
    assert h.address != addr
    assert h.session.status().regenerations[-1].reason == "retry_after_error"
    confirm(h)
    assert state(h) is State.CONNECTED


def test_route_and_mtu_failures_are_reported() -> None:
    h = Harness.make()
    h.connect()
    h.session.effect_failed(SetRoutes(ROUTES), "File exists", h.now)
    h.session.effect_failed(SetMtu(1400), "Invalid argument", h.now)
    h.drain()
    codes = [e.code for e in h.events_of(ErrorEvent)]
    assert codes == [ErrorCode.PLATFORM_ERROR, ErrorCode.PLATFORM_ERROR]
    assert "::/0" in h.events_of(ErrorEvent)[0].detail


def test_routes_added_live_when_there_were_none() -> None:
    h = Harness.make(routes=())
    effects = h.connect()
    assert not any(isinstance(e, SetRoutes) for e in effects)
    h.session.update_settings(settings(), h.now)
    assert h.drain() == [SetRoutes(ROUTES)]
    h.session.detach(h.now)
    assert RemoveRoutes(ROUTES) in h.drain()
    # Disconnected: nothing to change now; the next attachment installs what is configured.
    h.session.update_settings(settings(routes=()), h.now)
    assert h.drain() == []
    h.session.attach(ATT1, h.now)
    assert not any(isinstance(e, SetRoutes) for e in h.drain())


def test_one_tunnel_of_several_routes_its_own_source_through_itself() -> None:
    h = Harness.make(own_source_route=1030)
    h.connect()
    first = h.session.address
    assert first is not None
    own = Route(IPv6Network("::/0"), 1030, IPv6Network(f"{first}/128"))
    assert h.of_type(SetRoutes) == [SetRoutes((*ROUTES, own))]
    # A new network, a new suffix: the route from the old address goes, one from the new comes; the others stay.
    h.effects.clear()
    h.session.attach(ATT2, h.now)
    h.drain()
    second = h.session.address
    assert second is not None and second != first
    renewed = Route(IPv6Network("::/0"), 1030, IPv6Network(f"{second}/128"))
    assert h.of_type(RemoveRoutes) == [RemoveRoutes((own,))]
    assert h.of_type(SetRoutes) == [SetRoutes((renewed,))]
    h.effects.clear()
    h.session.down(h.now)
    h.drain()
    assert h.of_type(RemoveRoutes) == [RemoveRoutes((*ROUTES, renewed))]
    # Without it (one tunnel, or an OS whose routes follow the source address) nothing of the kind.
    plain = Harness.make()
    plain.connect()
    assert plain.of_type(SetRoutes) == [SetRoutes(ROUTES)]
