"""Whatever arrives from the network or the OS, the session never raises."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m6t.protocol import KEEPALIVE_PEER
from m6t.protocol.ipv6 import build_ipv6_header

from .test_session_harness import HA, Harness, icmpv6, snapshot

SOURCES = st.sampled_from([("198.51.100.2", 3544), ("198.51.100.2", 4500), ("10.0.0.1", 3544), ("", 0)])


@st.composite
def shaped_packets(draw: st.DrawFn) -> bytes:
    """Well-framed IPv6 packets with arbitrary contents; an all-zero destination stands for ours."""
    src = draw(st.sampled_from([HA.packed, KEEPALIVE_PEER, bytes(16), b"\xfe\x80" + bytes(14)]))
    dst = bytes(16) if draw(st.booleans()) else draw(st.binary(min_size=16, max_size=16))
    next_header = draw(st.sampled_from([58, 59, 17, 6, 0, 44]))
    payload = draw(st.binary(max_size=200))
    return build_ipv6_header(src, dst, next_header, len(payload)) + payload


def connected(probe: bool) -> Harness:
    h = Harness.make(probe=HA if probe else None, ports=(3544, 4500))
    h.connect()
    return h


def patch_destination(h: Harness, packet: bytes) -> bytes:
    if packet[24:40] == bytes(16) and h.session.address is not None:
        return packet[:24] + h.session.address.packed + packet[40:]
    return packet


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    probe=st.booleans(),
    datagrams=st.lists(st.tuples(st.one_of(st.binary(max_size=120), shaped_packets()), SOURCES), max_size=20),
)
def test_arbitrary_datagrams_never_raise(probe: bool, datagrams: list[tuple[bytes, tuple[str, int]]]) -> None:
    h = connected(probe)
    batch = [(patch_destination(h, d), src) for d, src in datagrams]
    out = h.session.udp_datagrams(batch, 1.0)
    assert len(out) <= len(batch)
    for packet in out:
        assert packet[24:40] == h.address.packed
    h.session.tick(2.0)
    h.drain()
    snapshot(h.session.status(2.0))


@settings(max_examples=300, deadline=None)
@given(packets=st.lists(st.one_of(st.binary(max_size=120), shaped_packets()), max_size=20))
def test_arbitrary_tun_packets_never_raise(packets: list[bytes]) -> None:
    h = connected(False)
    out = h.session.tun_packets(packets, 1.0)
    for packet in out:
        assert packet[8:24] == h.address.packed
    detached = Harness.make()
    assert detached.session.tun_packets(packets, 1.0) == []


@settings(max_examples=100, deadline=None)
@given(
    ident=st.integers(0, 0xFFFF),
    seq=st.integers(0, 0xFFFF),
    data=st.binary(max_size=64),
    corrupt=st.integers(0, 200),
)
def test_echo_replies_from_the_probe_address_never_raise(ident: int, seq: int, data: bytes, corrupt: int) -> None:
    h = connected(True)
    reply = bytearray(icmpv6(HA.packed, h.address.packed, 129, ident, seq, data))
    if corrupt < len(reply) and corrupt >= 40:
        reply[corrupt] ^= 0xFF
    h.session.udp_datagrams([(bytes(reply), h.peer)], 1.0)
    h.drain()


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.sampled_from(["tick", "jump", "attach1", "attach2", "detach", "down", "up", "gw_none", "gw", "mtu"]),
        max_size=40,
    )
)
def test_any_sequence_of_inputs_keeps_one_address(steps: list[str]) -> None:
    from ipaddress import IPv6Address

    from m6t.client.effects import RemoveAddress, SetAddress
    from m6t.protocol.values import PmtuEvidence

    from .test_session_harness import ATT1, ATT2, GW

    h = Harness.make(probe=HA)
    h.connect()
    for i, step in enumerate(steps):
        h.now = float(i)
        s = h.session
        if step == "tick":
            s.tick(h.now)
        elif step == "jump":
            s.clock_jump(h.now)
        elif step == "attach1":
            s.attach(ATT1, h.now)
        elif step == "attach2":
            s.attach(ATT2, h.now)
        elif step == "detach":
            s.detach(h.now)
        elif step == "down":
            s.down(h.now)
        elif step == "up":
            s.up(h.now)
        elif step == "gw_none":
            s.set_gateway(None, h.now)
        elif step == "gw":
            s.set_gateway(GW, h.now)
        elif step == "mtu":
            s.pmtu_evidence(PmtuEvidence(1300, "icmp"), h.now)
        h.drain()
        installed: set[IPv6Address] = set()
        for e in h.effects:
            if isinstance(e, SetAddress):
                installed.add(e.address)
            elif isinstance(e, RemoveAddress):
                installed.discard(e.address)
        expected = set() if s.address is None else {s.address}
        assert installed == expected
        deadline = s.next_deadline()
        # A binding always has a deadline (its keepalive); without one nothing is due (issue 12: an idle
        # helper never ticks), unless a retry is pending or counters are still to be reported.
        if s.address is not None:
            assert deadline is not None
