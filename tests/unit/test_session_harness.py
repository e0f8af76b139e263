"""Support for the session tests (no tests here): a fake clock, a fake gateway and an effect recorder."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Any

from m6t.client.api import wire
from m6t.client.driver import DriverStatus
from m6t.client.effects import Effect, OpenSocket, Send
from m6t.client.events import Event
from m6t.client.session import Session, SessionSettings, settings_routes
from m6t.client.status import Status
from m6t.client.vocabulary import State
from m6t.protocol import build_keepalive_reply, is_keepalive_request, parse_ipv6
from m6t.protocol.icmp import ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, internet_checksum
from m6t.protocol.ipv6 import build_ipv6_header
from m6t.protocol.values import Attachment

PREFIX = IPv6Network("fd6d:3674:a1b2:0:1::/80")
GW = IPv4Address("198.51.100.2")
HA = IPv6Address("fd00:ab::1")
ATT1 = Attachment(IPv4Address("192.0.2.10"), "eth0", IPv4Address("192.0.2.1"))
ATT2 = Attachment(IPv4Address("203.0.113.10"), "wlan0", IPv4Address("203.0.113.1"))
ROUTES = settings_routes(True, 1029, ())

Responder = Callable[["Harness", bytes], Iterable[bytes]]


def snapshot(status: Status, wall_offset: float = 0.0) -> dict[str, Any]:
    """The session's status as the control API shows it (``Status.session``)."""
    return wire.session_to_wire(DriverStatus(status, wall_offset, None, False, "test", ()))


def icmpv6(src: bytes, dst: bytes, icmp_type: int, ident: int, seq: int, data: bytes = b"") -> bytes:
    body = bytes((icmp_type, 0, 0, 0)) + ident.to_bytes(2, "big") + seq.to_bytes(2, "big") + data
    pseudo = src + dst + len(body).to_bytes(4, "big") + b"\x00\x00\x00\x3a"
    checksum = internet_checksum(pseudo + body)
    body = body[:2] + checksum.to_bytes(2, "big") + body[4:]
    return build_ipv6_header(src, dst, 58, len(body)) + body


def echo_reply_to(request: bytes) -> bytes | None:
    """What the Home Agent answers to an echo request (``None`` if it is not one)."""
    header = parse_ipv6(request)
    body = bytes(header.payload)
    if header.next_header != 58 or len(body) < 8 or body[0] != ICMPV6_ECHO_REQUEST:
        return None
    ident = int.from_bytes(body[4:6], "big")
    seq = int.from_bytes(body[6:8], "big")
    return icmpv6(header.dst, header.src, ICMPV6_ECHO_REPLY, ident, seq, body[8:])


def data_to(address: IPv6Address, size: int = 100, src: IPv6Address = HA) -> bytes:
    """An IPv6 packet from the Home Agent to ``address`` (UDP-ish payload)."""
    payload = bytes(size - 40)
    return build_ipv6_header(src.packed, address.packed, 17, len(payload)) + payload


def data_from(address: IPv6Address, size: int = 100, dst: IPv6Address = HA) -> bytes:
    payload = bytes(size - 40)
    return build_ipv6_header(address.packed, dst.packed, 17, len(payload)) + payload


def gateway_answers_keepalives(h: Harness, datagram: bytes) -> Iterable[bytes]:
    if is_keepalive_request(datagram):
        return [build_keepalive_reply(parse_ipv6(datagram))]
    return []


def ha_answers_everything(h: Harness, datagram: bytes) -> Iterable[bytes]:
    """A working gateway with a Home Agent that answers echoes; keepalives answered once active."""
    if is_keepalive_request(datagram):
        return [build_keepalive_reply(parse_ipv6(datagram))] if h.session.confirmed else []
    reply = echo_reply_to(datagram)
    return [] if reply is None else [reply]


def settings(**overrides: Any) -> SessionSettings:
    values: dict[str, Any] = {
        "prefix": PREFIX,
        "ports": (3544,),
        "gateway_host": str(GW),
        "keepalive_interval": 10.0,
        "retry_interval": 1.0,
        "routes": ROUTES,
    }
    values.update(overrides)
    return SessionSettings(**values)


def state(h: Harness) -> State:
    """The session's state, read through a call so that type checkers do not narrow it between steps."""
    return h.session.state


@dataclass
class Harness:
    session: Session
    now: float = 0.0
    effects: list[Effect] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    sent: list[tuple[float, bytes]] = field(default_factory=list)
    delivered: list[bytes] = field(default_factory=list)
    responder: Responder | None = None
    rtt: float = 0.05
    in_flight: list[tuple[float, bytes]] = field(default_factory=list)
    opened: int = 0

    @classmethod
    def make(cls, seed: int = 7, **overrides: Any) -> Harness:
        rng = random.Random(seed)
        return cls(Session(settings(**overrides), random_bytes=rng.randbytes))

    # -- plumbing
    def drain(self) -> list[Effect]:
        new: list[Effect] = []
        while self.session.has_output:
            effects = self.session.pop_effects()
            self.events.extend(self.session.pop_events())
            for effect in effects:
                new.append(effect)
                if isinstance(effect, OpenSocket):
                    self.opened += 1
                    self.session.socket_opened(("192.0.2.10", 40000 + self.opened), self.now)
                elif isinstance(effect, Send):
                    self._sent(effect.datagram)
        self.effects.extend(new)
        return new

    def _sent(self, datagram: bytes) -> None:
        self.sent.append((self.now, datagram))
        if self.responder is not None:
            for reply in self.responder(self, datagram):
                self.in_flight.append((self.now + self.rtt, reply))

    @property
    def peer(self) -> tuple[str, int]:
        gateway = self.session.gateway
        assert gateway is not None
        return str(gateway[0]), gateway[1]

    @property
    def address(self) -> IPv6Address:
        address = self.session.address
        assert address is not None
        return address

    def connect(self, attachment: Attachment = ATT1) -> list[Effect]:
        self.session.up(self.now)
        self.session.set_gateway(GW, self.now)
        self.session.attach(attachment, self.now)
        return self.drain()

    def receive(self, packets: Iterable[bytes], source: tuple[str, int] | None = None) -> list[bytes]:
        src = self.peer if source is None else source
        out = self.session.udp_datagrams([(p, src) for p in packets], self.now)
        self.delivered.extend(out)
        self.drain()
        return out

    def from_tun(self, packets: Iterable[bytes]) -> list[bytes]:
        out = self.session.tun_packets(list(packets), self.now)
        for datagram in out:
            self._sent(datagram)
        self.drain()
        return out

    def advance(self, seconds: float, step: float = 0.05, each: Callable[[Harness], None] | None = None) -> None:
        start = self.now
        steps = round(seconds / step)
        for i in range(1, steps + 1):
            self.now = start + i * step
            due = [p for t, p in self.in_flight if t <= self.now + 1e-9]
            self.in_flight = [(t, p) for t, p in self.in_flight if t > self.now + 1e-9]
            if due and self.session.gateway is not None:
                self.receive(due)
            if each is not None:
                each(self)
            self.session.tick(self.now)
            self.drain()

    # -- queries
    def keepalives(self, since: float = -1.0) -> list[float]:
        return [t for t, d in self.sent if t > since and is_keepalive_request(d)]

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.effects if isinstance(e, kind)]

    def events_of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]
