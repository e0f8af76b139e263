"""The gateway's forwarding decisions, sans I/O (draft 2.3, 2.4, 3, 6.1).

Fed datagrams from mobile nodes, packets from the Home Agent side and the current time; appends what
to send to two output lists the driver drains after each batch.  No sockets, no clock, no logging:
everything here is decided from its arguments, so the unit tests drive it with a fake clock.  The
counters count what the wire carries: a merged packet (:class:`~m6t.protocol.values.MergedPacket`, from
the platform's offloads) is checked once and counted as the packets it stands for.

A mobile node is known by its IPv6 address; its state binds that address to the IPv4 address, UDP
port and local socket its first packet came from, and that binding is never changed (draft 2.4,
6.1.1).  A new address gets a short-lived temporary state, created only within the per-IPv4 rate
limit and the caps, and only a packet from the Home Agent side makes it active (draft 3, 6.1.3).

In enrolled mode (``access``, docs/enrolled-access.md) a datagram creates a state only if it carried an
access header that the verifier accepted, checked before anything else; without ``access`` the core is
the draft's, to the byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv6Address, IPv6Network
from typing import TYPE_CHECKING, Final

from m6t.gateway.counters import HA_PROBLEM_DROPS, MN_PROBLEM_DROPS, REFUSAL_DROPS, Counter, Drop
from m6t.gateway.ratelimit import NewStateLimiter
from m6t.gateway.states import (
    ACTIVE,
    DEADLINE_SHIFT,
    ENDPOINT_MASK,
    LOW_MASK,
    MAX_SOCKETS,
    StateTable,
    StateView,
    pack_endpoint,
)
from m6t.protocol import (
    IPV6_HEADER_LEN,
    KEEPALIVE_PEER,
    NEXT_HEADER_NONE,
    build_keepalive_reply,
    ipv6_problem,
    parse_ipv6,
)
from m6t.protocol.access import AccessVerifier
from m6t.protocol.values import wire_size

if TYPE_CHECKING:
    from collections.abc import Iterable

    from m6t.gateway.config import GatewayConfig

DEFAULT_TICK_S: Final = 0.01
"""Resolution of state deadlines: lifetimes are rounded up to it."""
MAX_WHEEL_SLOTS: Final = 1 << 16
"""Lifetimes longer than the wheel's turn are re-filed once per turn, a cost per state per turn."""
DEFAULT_GC_BUDGET: Final = 4096
"""Wheel entries one garbage-collection call may look at: a few milliseconds on a slow, busy core."""


class Verdict(IntEnum):
    """What happened to one packet (the output lists say what to send)."""

    DROPPED = 0
    FORWARDED = 1
    """Appended to ``to_ha`` (from an MN) or to ``to_mn`` (from the HA side)."""
    REPLIED = 2
    """A keepalive: its reply was appended to ``to_mn``."""


@dataclass(frozen=True, slots=True)
class CoreSettings:
    prefixes: tuple[IPv6Network, ...]
    """Where mobile nodes' tunnel addresses come from (the m6t /48s or /80s)."""
    home_agents: tuple[IPv6Address, ...]
    """The only destinations an MN may reach through the gateway."""
    temporary_lifetime_s: float = 0.5
    active_lifetime_s: float = 120.0
    max_temporary: int = 10_000
    max_states: int = 2_000_000
    new_states_per_ipv4_per_s: float = 10.0
    new_states_per_ipv4_burst: int = 20
    sockets: int = 1
    """How many local UDP sockets the driver listens on (socket indexes run from 0)."""
    tick_s: float = DEFAULT_TICK_S

    def __post_init__(self) -> None:
        if not self.prefixes:
            raise ValueError("at least one mobile-node prefix is needed")
        if not self.home_agents:
            raise ValueError("at least one Home Agent address is needed")
        if not self.tick_s > 0:
            raise ValueError(f"tick_s must be positive, not {self.tick_s}")
        if not self.temporary_lifetime_s > 0 or not self.active_lifetime_s > 0:
            raise ValueError("state lifetimes must be positive")
        if self.max_temporary < 0 or self.max_states < 0:
            raise ValueError("state caps cannot be negative")
        if not 1 <= self.sockets <= MAX_SOCKETS:
            raise ValueError(f"between 1 and {MAX_SOCKETS} listening sockets (ports), not {self.sockets}")


def settings_from_config(config: GatewayConfig) -> CoreSettings:
    states = config.states
    return CoreSettings(
        prefixes=config.tunnel.prefixes,
        home_agents=config.tunnel.home_agents,
        temporary_lifetime_s=states.temporary_lifetime_ms / 1000,
        active_lifetime_s=float(states.active_lifetime_s),
        max_temporary=states.max_temporary,
        max_states=states.max_states,
        new_states_per_ipv4_per_s=states.new_states_per_ipv4_per_s,
        new_states_per_ipv4_burst=states.new_states_per_ipv4_burst,
        sockets=len(config.listen.ports),
    )


def _ticks(seconds: float, tick_s: float) -> int:
    # One tick more than the lifetime: `now` is floored to a tick, and a state must never expire early.
    return math.ceil(seconds / tick_s - 1e-9) + 1


def _wheel_slots(lifetime_ticks: int) -> int:
    return min(MAX_WHEEL_SLOTS, max(64, 1 << (lifetime_ticks + 1).bit_length()))


class GatewayCore:
    """States, validation and forwarding decisions of one gateway."""

    def __init__(
        self,
        settings: CoreSettings,
        now: float,
        *,
        nshards: int | None = None,
        access: AccessVerifier | None = None,
    ) -> None:
        self.settings = settings
        self.access = access
        """Enrolled mode's check of sealed datagrams (its keys may be replaced at any time); None: open."""
        self._tps = 1.0 / settings.tick_s
        self._temporary_ticks = _ticks(settings.temporary_lifetime_s, settings.tick_s)
        self._active_ticks = _ticks(settings.active_lifetime_s, settings.tick_s)
        self._prefixes: tuple[tuple[int, int], ...] = tuple(
            (int(net.netmask), int(net.network_address)) for net in settings.prefixes
        )
        self._home_agents: frozenset[bytes] = frozenset(a.packed for a in settings.home_agents)
        self._max_temporary = settings.max_temporary
        self._max_states = settings.max_states
        self.table = StateTable(_wheel_slots(self._active_ticks), self.tick_of(now), nshards=nshards)
        self._shards = self.table.shards
        self._nshards = self.table.nshards
        # The driver hands a whole batch the same `now`: converting it to a tick once per batch saves a
        # float-to-int conversion per packet.
        self._last_now = now
        self._last_tick = self.tick_of(now)
        self.limiter = NewStateLimiter(settings.new_states_per_ipv4_per_s, settings.new_states_per_ipv4_burst, now)
        self.counters: list[int] = [0] * len(Counter)
        self.drops: list[int] = [0] * len(Drop)
        self.to_ha: list[bytes] = []
        """IPv6 packets to write to the TUN, in order."""
        self.to_mn: list[tuple[int, bytes]] = []
        """``(packed endpoint, payload)`` to send over UDP; see :func:`m6t.gateway.states.unpack_endpoint`."""

    def tick_of(self, now: float) -> int:
        return int(now * self._tps)

    def _tick(self, now: float) -> int:
        if now != self._last_now:
            self._last_now = now
            self._last_tick = int(now * self._tps)
        return self._last_tick

    def datagram_from_mn(self, data: bytes, ipv4: int, port: int, sock: int, now: float) -> Verdict:
        """One UDP payload from ``ipv4:port`` received on local socket ``sock``."""
        if data.__class__ is bytes:
            n = 1
            size = len(data)
        else:
            n, size = wire_size(data)
        counters = self.counters
        counters[_MN_PACKETS] += n
        counters[_MN_BYTES] += size
        problem = ipv6_problem(data)
        sealed = False
        if problem is not None:
            if self.access is not None and data and data[0] >> 4 != 6:
                # Before anything else: a refused header costs no rate allowance, no state, no answer.
                inner = self.access.verify(data, now)
                if isinstance(inner, int):
                    self.drops[_REFUSALS[inner]] += n
                    return _DROPPED
                data = inner
                size = len(inner)
                sealed = True
                problem = ipv6_problem(data)
            if problem is not None:
                self.drops[MN_PROBLEM_DROPS[problem]] += n
                return _DROPPED
        if not port or not ipv4:
            self.drops[_BAD_OUTER_SOURCE] += n
            return _DROPPED
        src = int.from_bytes(data[8:24])
        for mask, network in self._prefixes:
            if src & mask == network:
                break
        else:
            self.drops[_SOURCE_NOT_IN_PREFIX] += n
            return _DROPPED
        keepalive = False
        dst = data[24:40]
        if dst not in self._home_agents:
            if dst == KEEPALIVE_PEER and len(data) == IPV6_HEADER_LEN and data[6] == NEXT_HEADER_NONE:
                keepalive = True
            else:
                self.drops[_DESTINATION_NOT_ALLOWED] += n
                return _DROPPED
        tick = self._last_tick if now == self._last_now else self._tick(now)
        endpoint = pack_endpoint(ipv4, port, sock)
        shard = self._shards[src % self._nshards]
        value = shard.get(src)
        # The deadline is shifted out once: every shift of the ~100-bit state allocates a new int.
        if value is not None and (expires := value >> DEADLINE_SHIFT) > tick:
            if value & ENDPOINT_MASK != endpoint:
                self.drops[_BINDING_MISMATCH] += n
                return _DROPPED
            if value & ACTIVE:
                deadline = tick + self._active_ticks
                if expires != deadline:
                    shard[src] = (deadline << DEADLINE_SHIFT) | (value & LOW_MASK)
                if keepalive:
                    return self._reply_keepalive(data, endpoint)
            elif keepalive:
                self.drops[_KEEPALIVE_WITHOUT_ACTIVE_STATE] += n
                return _DROPPED
            # A temporary state is not refreshed by its own MN: only the Home Agent side can keep it.
        else:
            if keepalive:
                self.drops[_KEEPALIVE_WITHOUT_ACTIVE_STATE] += n
                return _DROPPED
            if not sealed and self.access is not None:
                self.drops[_UNAUTHENTICATED] += n
                return _DROPPED
            refused = self._create(src, value, endpoint, ipv4, tick, now)
            if refused is not None:
                self.drops[refused] += n
                return _DROPPED
        counters[_TO_HA_PACKETS] += n
        counters[_TO_HA_BYTES] += size
        self.to_ha.append(data)
        return _FORWARDED

    def _create(self, src: int, expired: int | None, endpoint: int, ipv4: int, tick: int, now: float) -> int | None:
        """A temporary state for ``src``, or the drop reason (an index into ``drops``) why not."""
        table = self.table
        # The caps are checked before the rate limit so that a refusal for lack of room costs the
        # source none of its allowance.
        if table.temporary >= self._max_temporary:
            return _TEMPORARY_STATES_FULL
        if expired is None and table.temporary + table.active >= self._max_states:
            return _STATES_FULL
        if not self.limiter.allow(ipv4, now):
            return _RATE_LIMITED
        deadline = tick + self._temporary_ticks
        if expired is None:
            table.add_temporary(src, endpoint, deadline)
        else:
            table.replace_expired(src, expired, endpoint, deadline)
        self.counters[_STATES_CREATED] += 1
        return None

    def restore(self, states: Iterable[tuple[int, int, bool, float]], now: float) -> int:
        """Put back states an earlier run saved, ``(address, packed endpoint, active, remaining_s)`` each;
        returns how many were taken.

        Each is checked as a new state would be: the address inside a configured prefix, absent from the
        table, within the caps; one that is not is left out.  Its lifetime is capped at the configured one,
        so that a file written under a clock far ahead cannot keep a state forever.  From then on its
        binding is as final as any other's (draft 2.4): nothing here or on the data path rewrites it.
        """
        table = self.table
        shards = table.shards
        nshards = table.nshards
        prefixes = self._prefixes
        settings = self.settings
        lifetimes = (settings.temporary_lifetime_s, settings.active_lifetime_s)
        tick_s = settings.tick_s
        base = self.tick_of(now)
        restored = 0
        for address, endpoint, active, remaining_s in states:
            if not remaining_s > 0:
                continue
            for mask, network in prefixes:
                if address & mask == network:
                    break
            else:
                continue
            if address in shards[address % nshards] or table.temporary + table.active >= self._max_states:
                continue
            if not active and table.temporary >= self._max_temporary:
                continue
            table.add(address, endpoint, base + _ticks(min(remaining_s, lifetimes[active]), tick_s), active=active)
            restored += 1
        self.counters[_STATES_RESTORED] += restored
        return restored

    def _reply_keepalive(self, data: bytes, endpoint: int) -> Verdict:
        reply = build_keepalive_reply(parse_ipv6(data))
        # The reply never outgrows the request, so the gateway cannot be used as an amplifier.
        assert len(reply) <= len(data)
        self.counters[_KEEPALIVES] += 1
        self.to_mn.append((endpoint, reply))
        return _REPLIED

    def packet_from_ha(self, packet: bytes, now: float) -> Verdict:
        """One IPv6 packet the kernel routed into the TUN, toward a mobile node."""
        if packet.__class__ is bytes:
            n = 1
            size = len(packet)
        else:
            n, size = wire_size(packet)
        counters = self.counters
        counters[_HA_PACKETS] += n
        counters[_HA_BYTES] += size
        problem = ipv6_problem(packet)
        if problem is not None:
            self.drops[HA_PROBLEM_DROPS[problem]] += n
            return _DROPPED
        dst = int.from_bytes(packet[24:40])
        for mask, network in self._prefixes:
            if dst & mask == network:
                break
        else:
            self.drops[_HA_DESTINATION_NOT_IN_PREFIX] += n
            return _DROPPED
        tick = self._last_tick if now == self._last_now else self._tick(now)
        shard = self._shards[dst % self._nshards]
        value = shard.get(dst)
        if value is None or (expires := value >> DEADLINE_SHIFT) <= tick:
            self.drops[_HA_NO_STATE] += n
            return _DROPPED
        deadline = tick + self._active_ticks
        if not value & ACTIVE:
            value = self.table.promote(dst, value, deadline)
            counters[_STATES_PROMOTED] += 1
        elif expires != deadline:
            shard[dst] = (deadline << DEADLINE_SHIFT) | (value & LOW_MASK)
        counters[_TO_MN_PACKETS] += n
        counters[_TO_MN_BYTES] += size
        self.to_mn.append((value & ENDPOINT_MASK, packet))
        return _FORWARDED

    def collect_garbage(self, now: float, budget: int = DEFAULT_GC_BUDGET) -> bool:
        """One bounded slice of expiry; True once caught up, False if the caller should call again soon."""
        self.limiter.release(now, budget)
        return self.table.collect(self.tick_of(now), budget)

    def state(self, address: IPv6Address, now: float | None = None) -> StateView | None:
        """The state of an MN address; with ``now``, ``None`` also for a state that has expired."""
        view = self.table.view(int(address))
        if view is not None and now is not None and view.deadline_tick <= self.tick_of(now):
            return None
        return view

    @property
    def temporary_states(self) -> int:
        return self.table.temporary

    @property
    def active_states(self) -> int:
        return self.table.active

    def take_outputs(self) -> tuple[list[bytes], list[tuple[int, bytes]]]:
        """Hand over and reset both output lists."""
        to_ha, to_mn = self.to_ha, self.to_mn
        self.to_ha = []
        self.to_mn = []
        return to_ha, to_mn


# Plain ints for the data path: an enum attribute lookup per packet costs more than the work it names.
_DROPPED: Final = Verdict.DROPPED
_FORWARDED: Final = Verdict.FORWARDED
_REPLIED: Final = Verdict.REPLIED
_MN_PACKETS: Final = int(Counter.MN_PACKETS)
_MN_BYTES: Final = int(Counter.MN_BYTES)
_TO_HA_PACKETS: Final = int(Counter.TO_HA_PACKETS)
_TO_HA_BYTES: Final = int(Counter.TO_HA_BYTES)
_HA_PACKETS: Final = int(Counter.HA_PACKETS)
_HA_BYTES: Final = int(Counter.HA_BYTES)
_TO_MN_PACKETS: Final = int(Counter.TO_MN_PACKETS)
_TO_MN_BYTES: Final = int(Counter.TO_MN_BYTES)
_KEEPALIVES: Final = int(Counter.KEEPALIVES)
_STATES_CREATED: Final = int(Counter.STATES_CREATED)
_STATES_PROMOTED: Final = int(Counter.STATES_PROMOTED)
_STATES_RESTORED: Final = int(Counter.STATES_RESTORED)
_BAD_OUTER_SOURCE: Final = int(Drop.MN_BAD_OUTER_SOURCE)
_SOURCE_NOT_IN_PREFIX: Final = int(Drop.MN_SOURCE_NOT_IN_PREFIX)
_DESTINATION_NOT_ALLOWED: Final = int(Drop.MN_DESTINATION_NOT_ALLOWED)
_BINDING_MISMATCH: Final = int(Drop.MN_BINDING_MISMATCH)
_KEEPALIVE_WITHOUT_ACTIVE_STATE: Final = int(Drop.MN_KEEPALIVE_WITHOUT_ACTIVE_STATE)
_RATE_LIMITED: Final = int(Drop.MN_RATE_LIMITED)
_TEMPORARY_STATES_FULL: Final = int(Drop.MN_TEMPORARY_STATES_FULL)
_STATES_FULL: Final = int(Drop.MN_STATES_FULL)
_HA_DESTINATION_NOT_IN_PREFIX: Final = int(Drop.HA_DESTINATION_NOT_IN_PREFIX)
_HA_NO_STATE: Final = int(Drop.HA_NO_STATE)
_UNAUTHENTICATED: Final = int(Drop.MN_UNAUTHENTICATED)
_REFUSALS: Final = tuple(int(drop) for drop in REFUSAL_DROPS)
