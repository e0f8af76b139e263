"""The gateway's state table (draft 2.4): MN IPv6 address → IPv4 endpoint, kind and deadline.

Sized for a million states in CPython, so nothing here is an object per state:

* a state is one ``dict`` entry, keyed by the MN's 128-bit address as an ``int``, whose value is one
  packed ``int``: ``deadline << 57 | active << 56 | ipv4 << 24 | port << 8 | socket``;
* the dict is split into shards chosen by ``address % prime``, with the prime drawn at start-up:
  CPython rebuilds a dict in one go when it grows, which at a million entries stalls the loop for a
  quarter of a second; a shard rebuilds a few thousand entries instead, and a peer who does not know
  the prime cannot pile its addresses into one shard;
* expiry uses a timing wheel of plain lists of keys with lazy re-filing: a refresh only rewrites the
  packed deadline, and when the wheel reaches an entry whose deadline has moved on it files the key
  again under the new deadline.  Every live state has exactly one wheel entry, so garbage collection
  costs time proportional to the entries due, never a scan of the table.

Deadlines are in coarse ticks of the caller's choosing; nothing here reads a clock.

A driver that mirrors the active states elsewhere (the kernel's fast lane) asks for their life cycle with
:meth:`StateTable.track_active`: from then on every state that becomes active and every active state that
goes is recorded as an event, which the driver takes and forwards.  Nobody asking costs one test per
promotion and per collected state.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final

ENDPOINT_BITS: Final = 56
ENDPOINT_MASK: Final = (1 << ENDPOINT_BITS) - 1
ACTIVE: Final = 1 << ENDPOINT_BITS
DEADLINE_SHIFT: Final = ENDPOINT_BITS + 1
LOW_MASK: Final = (1 << DEADLINE_SHIFT) - 1
"""Everything in a packed state except its deadline."""

MAX_SOCKETS: Final = 256

ActiveEvent = tuple[int, int]
"""``(MN address as an int, packed endpoint)`` of a state that became active or of an active one that went."""

_SHARD_PRIMES: Final = (251, 257, 263, 269, 271, 277, 281, 283, 293, 307, 311, 313, 317, 331, 337, 347)


def pack_endpoint(ipv4: int, port: int, sock: int) -> int:
    """The MN's outer IPv4 address and UDP port, and the index of the local socket it came in on."""
    # Port and socket are joined while they still fit one of CPython's 30-bit digits: cheaper than shifting
    # the large number twice, and the core packs every datagram's endpoint.
    return ipv4 << 24 | (port << 8 | sock)


def unpack_endpoint(endpoint: int) -> tuple[int, int, int]:
    """``(ipv4, port, socket index)`` of a packed endpoint."""
    return endpoint >> 24, (endpoint >> 8) & 0xFFFF, endpoint & 0xFF


@dataclass(frozen=True, slots=True)
class StateView:
    """One state, unpacked for diagnostics and tests (never built on the data path)."""

    address: IPv6Address
    ipv4: IPv4Address
    port: int
    socket: int
    active: bool
    deadline_tick: int


class StateTable:
    """States with their expiry wheel; the caller decides what a tick is and when to collect."""

    __slots__ = (
        "_mask",
        "_next_tick",
        "_pending",
        "_wheel",
        "activated",
        "active",
        "deactivated",
        "expired_active",
        "expired_temporary",
        "gc_refiled",
        "gc_slices",
        "gc_visited",
        "nshards",
        "shards",
        "temporary",
    )

    def __init__(self, wheel_slots: int, start_tick: int, *, nshards: int | None = None) -> None:
        if wheel_slots < 1 or wheel_slots & (wheel_slots - 1):
            raise ValueError(f"wheel_slots must be a power of two, not {wheel_slots}")
        self.nshards: int = nshards if nshards is not None else secrets.choice(_SHARD_PRIMES)
        self.shards: list[dict[int, int]] = [{} for _ in range(self.nshards)]
        """Read and refreshed in place by the core's data path; created and removed only here."""
        self._wheel: list[list[int]] = [[] for _ in range(wheel_slots)]
        self._mask = wheel_slots - 1
        self._next_tick = start_tick
        """The next wheel tick garbage collection will look at."""
        self._pending: list[int] | None = None
        """A wheel slot taken out but not yet worked through when the last slice ran out of budget."""
        self.temporary = 0
        self.active = 0
        self.expired_temporary = 0
        self.expired_active = 0
        self.gc_slices = 0
        self.gc_visited = 0
        """Wheel entries looked at: the work garbage collection has done."""
        self.gc_refiled = 0
        """Entries found refreshed and filed again under their new deadline."""
        self.activated: list[ActiveEvent] | None = None
        """With :meth:`track_active`: states made active since the events were last taken."""
        self.deactivated: list[ActiveEvent] | None = None
        """With :meth:`track_active`: active states expired (collected or reused) since then."""

    def track_active(self) -> list[ActiveEvent]:
        """Record active states coming and going from now on; returns the ones active now (expired or not)."""
        if self.activated is None:
            self.activated = []
            self.deactivated = []
        return [(key, value & ENDPOINT_MASK) for shard in self.shards for key, value in shard.items() if value & ACTIVE]

    def take_active_events(self) -> tuple[list[ActiveEvent], list[ActiveEvent]]:
        """``(activated, deactivated)`` since the last call, in order within each; both lists start over."""
        activated, deactivated = self.activated, self.deactivated
        if activated is None or deactivated is None:
            return [], []
        self.activated = []
        self.deactivated = []
        return activated, deactivated

    def __len__(self) -> int:
        return self.temporary + self.active

    def get(self, key: int) -> int | None:
        """The packed state of an address, expired or not (the caller compares the deadline)."""
        return self.shards[key % self.nshards].get(key)

    def add_temporary(self, key: int, endpoint: int, deadline: int) -> None:
        """File a new temporary state; ``key`` must be absent."""
        self.shards[key % self.nshards][key] = (deadline << DEADLINE_SHIFT) | endpoint
        self._wheel[deadline & self._mask].append(key)
        self.temporary += 1

    def add(self, key: int, endpoint: int, deadline: int, *, active: bool) -> None:
        """File a state of either kind (an active one comes back from a snapshot); ``key`` must be absent."""
        self.shards[key % self.nshards][key] = (deadline << DEADLINE_SHIFT) | (ACTIVE if active else 0) | endpoint
        self._wheel[deadline & self._mask].append(key)
        if active:
            self.active += 1
        else:
            self.temporary += 1

    def replace_expired(self, key: int, old: int, endpoint: int, deadline: int) -> None:
        """Reuse the entry of a state that expired but was not collected yet as a new temporary one.

        Its wheel entry stays where it is: it is due no later than the new deadline, and the wheel
        re-files it when it gets there, so the state still has exactly one wheel entry.
        """
        self._count_expiry(key, old)
        self.shards[key % self.nshards][key] = (deadline << DEADLINE_SHIFT) | endpoint
        self.temporary += 1

    def promote(self, key: int, old: int, deadline: int) -> int:
        """Turn a temporary state active with a new deadline; returns its new packed value."""
        value = (deadline << DEADLINE_SHIFT) | ACTIVE | (old & ENDPOINT_MASK)
        self.shards[key % self.nshards][key] = value
        self.temporary -= 1
        self.active += 1
        if self.activated is not None:
            self.activated.append((key, old & ENDPOINT_MASK))
        return value

    def _count_expiry(self, key: int, value: int) -> None:
        if value & ACTIVE:
            self.active -= 1
            self.expired_active += 1
            if self.deactivated is not None:
                self.deactivated.append((key, value & ENDPOINT_MASK))
        else:
            self.temporary -= 1
            self.expired_temporary += 1

    def collect(self, now_tick: int, budget: int) -> bool:
        """Remove states whose deadline is at or before ``now_tick``, looking at ``budget`` entries at most.

        Returns True once the wheel has caught up with ``now_tick``; False means more is due and the
        caller should call again soon (after letting packets through).  Empty wheel slots count as
        one unit of work each, so a long pause between calls is also worked off in bounded slices.
        """
        if budget < 1:
            raise ValueError(f"budget must be positive, not {budget}")
        self.gc_slices += 1
        wheel = self._wheel
        mask = self._mask
        shards = self.shards
        nshards = self.nshards
        work = 0
        visited = 0
        refiled = 0
        gone_active = 0
        gone_temporary = 0
        deactivated = self.deactivated
        pending = self._pending
        try:
            while work < budget:
                if pending is None:
                    if self._next_tick > now_tick:
                        return True
                    if now_tick - self._next_tick > mask:
                        # One turn of the wheel visits every slot, and expiry is judged against now_tick
                        # rather than the slot, so the turns in between would find nothing more to do.
                        self._next_tick = now_tick - mask
                    slot = self._next_tick & mask
                    self._next_tick += 1
                    work += 1
                    if not wheel[slot]:
                        continue
                    pending = wheel[slot]
                    wheel[slot] = []
                # Popping releases each key as it goes: freeing a million-entry list at once would
                # itself be a pause of tens of milliseconds.
                pop = pending.pop
                count = min(len(pending), budget - work)
                for _ in range(count):
                    key = pop()
                    shard = shards[key % nshards]
                    value = shard.get(key)
                    if value is None:
                        continue
                    deadline = value >> DEADLINE_SHIFT
                    if deadline <= now_tick:
                        del shard[key]
                        if value & ACTIVE:
                            gone_active += 1
                            if deactivated is not None:
                                deactivated.append((key, value & ENDPOINT_MASK))
                        else:
                            gone_temporary += 1
                    else:
                        wheel[deadline & mask].append(key)
                        refiled += 1
                work += count
                visited += count
                if pending:
                    return False
                pending = None
            return pending is None and self._next_tick > now_tick
        finally:
            self._pending = pending
            self.gc_visited += visited
            self.gc_refiled += refiled
            self.active -= gone_active
            self.expired_active += gone_active
            self.temporary -= gone_temporary
            self.expired_temporary += gone_temporary

    def view(self, key: int) -> StateView | None:
        """The state of an address, unpacked (expired-but-uncollected states included)."""
        value = self.get(key)
        if value is None:
            return None
        ipv4, port, sock = unpack_endpoint(value & ENDPOINT_MASK)
        return StateView(
            address=IPv6Address(key),
            ipv4=IPv4Address(ipv4),
            port=port,
            socket=sock,
            active=bool(value & ACTIVE),
            deadline_tick=value >> DEADLINE_SHIFT,
        )
