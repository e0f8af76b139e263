"""Which tunnel serves which IPv4 uplink, sans I/O (``tunnel.uplinks = "all"``, draft 2.5).

A host with two IPv4 uplinks (Wi-Fi and a phone's tether) runs one tunnel through each, every one with its
own suffix: the way MIPv6 with several care-of addresses uses them all.  The driver tells this plan when the
OS announced a change and what the uplinks are when it looked them up; the plan waits a burst out, asks for
one look-up at a time, and answers with the tunnels to add and remove.  No sockets, no clock.

* A tunnel's slot is its interface's name: slot 0 takes the configured name (``m6t0``), slot *n* the same
  stem numbered *n* on (``m6t1``, ...).  An uplink keeps its slot while it is there, so its tunnel is never
  renamed under the user; a new uplink takes the lowest free slot.
* The primary tunnel is the one through the uplink the OS prefers toward the gateway (the look-up lists it
  first): the one ``"best"`` would have used, and the one the status's top level describes.
* Removals come before additions, so that a slot given back can be taken again in the same update.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from m6t.client.tracker import DEFAULT_MAX_DELAY, DEFAULT_QUIET

MAX_TUNNELS: Final = 8
"""Uplinks beyond this many get no tunnel: a laptop has a few, a router is not what the client is for."""
IFNAMSIZ: Final = 16

_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")


def tunnel_name(base: str, slot: int) -> str:
    """The interface name of ``slot``: ``base`` itself for 0, then its stem numbered on (``m6t0`` → ``m6t1``,
    ``tun`` → ``tun1``)."""
    if slot == 0:
        return base
    match = _TRAILING_NUMBER.match(base)
    if match is None:
        return f"{base}{slot}"
    stem, number = match.groups()
    return f"{stem}{int(number) + slot}"


def names_problem(base: str) -> str | None:
    """Why ``base`` cannot name every tunnel ``"all"`` may create, or ``None``."""
    longest = max((tunnel_name(base, slot) for slot in range(MAX_TUNNELS)), key=len)
    if len(longest) >= IFNAMSIZ:
        return (
            f'with tunnel.uplinks = "all" the tunnels are named {base} to {tunnel_name(base, MAX_TUNNELS - 1)}; '
            f"{longest} is longer than {IFNAMSIZ - 1} characters"
        )
    return None


@dataclass(frozen=True, slots=True)
class Tunnel:
    slot: int
    interface: str
    uplink: str


@dataclass(frozen=True, slots=True)
class AddTunnel:
    tunnel: Tunnel


@dataclass(frozen=True, slots=True)
class RemoveTunnel:
    tunnel: Tunnel


Change = AddTunnel | RemoveTunnel


class UplinkPlan:
    """The uplinks' tunnels, and when to look the uplinks up again."""

    def __init__(
        self, base_interface: str, *, quiet: float = DEFAULT_QUIET, max_delay: float = DEFAULT_MAX_DELAY
    ) -> None:
        if names_problem(base_interface) is not None:
            raise ValueError(names_problem(base_interface))
        self.base = base_interface
        self.quiet = quiet
        self.max_delay = max_delay
        self._tunnels: dict[str, Tunnel] = {}
        """By uplink."""
        self._preferred: str | None = None
        self._burst_start: float | None = None
        self._last_change: float | None = None
        self._looking = False
        self._again = False
        self._wanted = False
        """A look-up is due as soon as none is under way (the first one, or one the clock released)."""
        self.left_out: tuple[str, ...] = ()
        """Uplinks the last look-up found beyond :data:`MAX_TUNNELS`."""

    # ------------------------------------------------------------------ the tunnels

    @property
    def tunnels(self) -> tuple[Tunnel, ...]:
        return tuple(sorted(self._tunnels.values(), key=lambda t: t.slot))

    @property
    def primary(self) -> Tunnel | None:
        return None if self._preferred is None else self._tunnels.get(self._preferred)

    def update(self, uplinks: Sequence[str]) -> list[Change]:
        """The uplinks found, the OS's preferred first: the tunnels to remove, then those to add."""
        present = list(dict.fromkeys(uplinks))
        kept = present[:MAX_TUNNELS]
        self.left_out = tuple(present[MAX_TUNNELS:])
        changes: list[Change] = []
        for uplink, tunnel in sorted(self._tunnels.items(), key=lambda item: item[1].slot):
            if uplink not in kept:
                del self._tunnels[uplink]
                changes.append(RemoveTunnel(tunnel))
        taken = {t.slot for t in self._tunnels.values()}
        for uplink in kept:
            if uplink in self._tunnels:
                continue
            slot = next(n for n in range(MAX_TUNNELS) if n not in taken)
            taken.add(slot)
            tunnel = Tunnel(slot, tunnel_name(self.base, slot), uplink)
            self._tunnels[uplink] = tunnel
            changes.append(AddTunnel(tunnel))
        self._preferred = kept[0] if kept else None
        return changes

    def clear(self) -> list[Change]:
        """Every tunnel removed (the user took the tunnel down); the watch stops."""
        changes: list[Change] = [RemoveTunnel(t) for t in self.tunnels]
        self._tunnels.clear()
        self._preferred = None
        self._burst_start = self._last_change = None
        self._looking = self._again = self._wanted = False
        return changes

    # ------------------------------------------------------------------ when to look

    def watch(self) -> None:
        """The change source is subscribed: look the uplinks up now."""
        self._wanted = True

    def changed(self, now: float) -> None:
        """The OS announced a change that may concern an uplink."""
        if self._burst_start is None:
            self._burst_start = now
        self._last_change = now

    def next_deadline(self) -> float | None:
        if self._last_change is None or self._burst_start is None:
            return None
        return min(self._last_change + self.quiet, self._burst_start + self.max_delay)

    def due(self, now: float) -> bool:
        """Whether to look the uplinks up now; if so, the caller does and answers with :meth:`looked_up`."""
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            self._burst_start = self._last_change = None
            self._wanted = True
        if not self._wanted:
            return False
        if self._looking:
            self._again = True  # the answer on its way may predate the burst
            self._wanted = False
            return False
        self._wanted = False
        self._looking = True
        return True

    def looked_up(self, uplinks: Sequence[str]) -> list[Change]:
        """The answer of the look-up :meth:`due` asked for (``[]`` after a failed one changes nothing)."""
        self._looking = False
        if self._again:
            self._again = False
            self._wanted = True
        return self.update(uplinks)

    def lookup_failed(self) -> None:
        self._looking = False
        if self._again:
            self._again = False
            self._wanted = True
