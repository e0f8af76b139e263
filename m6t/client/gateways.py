"""Which gateway and port to try next, sans-I/O (draft 2.1, 2.7).

The configuration names gateways in order of preference (IPv4 literals or host names); the driver resolves
the names and hands the session every IPv4 address they stand for, in that order (a name's addresses in
the resolver's order).  This state machine keeps the place in that list:

* each port of a gateway gets one attempt (the budget a dead port has always had); a gateway on which no
  port confirmed is *dead* for this round, and the next gateway in the list is tried at once;
* when every gateway is dead the round starts again from the most preferred one, and the caller backs off
  as it does between attempts on one gateway;
* a binding that was confirmed and then lost does not count against its port (a NAT rebinding looks the
  same): the gateway gets its whole budget again, starting at the next port as before;
* a confirmation clears the round; a new network (:meth:`restart`) starts from the top of the list;
* a new list (the names resolved again) keeps the gateway in use when it is still in it: states never move
  between gateways, so a change of gateway always costs a new suffix, and only a gateway that went away or
  failed is left.

No sockets, no clock, no name resolution: the session feeds it failures and confirmations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address


@dataclass(frozen=True, slots=True)
class Candidate:
    """One gateway address to try, and the configured entry (literal or host name) it came from."""

    address: IPv4Address
    host: str

    @classmethod
    def literal(cls, address: IPv4Address) -> Candidate:
        return cls(address, str(address))

    @property
    def named(self) -> bool:
        """Whether it came from a host name rather than from a literal address."""
        return self.host != str(self.address)

    def __str__(self) -> str:
        return f"{self.address} ({self.host})" if self.named else str(self.address)


class Move(Enum):
    """Where a failure took the selection."""

    NEXT_PORT = "next_port"
    """Same gateway, its next port (or the same port, when it has only one)."""
    NEXT_GATEWAY = "next_gateway"
    """The gateway was dead on every port: the next one in the list, at once."""
    ALL_DEAD = "all_dead"
    """Every gateway was dead: back to the first one, after a backoff."""


class GatewaySelector:
    """The place in the list of gateways and ports; see the module's notes."""

    def __init__(self, ports: Sequence[int]) -> None:
        if not ports:
            raise ValueError("at least one gateway port is needed")
        self._ports = tuple(ports)
        self._candidates: tuple[Candidate, ...] = ()
        self._index = 0
        self._port_index = 0
        self._failed_ports: set[int] = set()
        """Ports of the current gateway that failed without a confirmation this round."""
        self._dead: set[IPv4Address] = set()
        """Gateways that failed on every port this round."""

    # ------------------------------------------------------------------ what is selected

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return self._candidates

    @property
    def current(self) -> Candidate | None:
        return self._candidates[self._index] if self._candidates else None

    @property
    def port(self) -> int:
        return self._ports[self._port_index]

    @property
    def ports(self) -> tuple[int, ...]:
        return self._ports

    @property
    def dead(self) -> tuple[Candidate, ...]:
        """The gateways given up on in this round, in list order."""
        return tuple(c for c in self._candidates if c.address in self._dead)

    # ------------------------------------------------------------------ inputs

    def set_candidates(self, candidates: Sequence[Candidate]) -> bool:
        """A new list (names resolved again); returns whether the gateway in use changed.

        The gateway in use stays selected when it is still listed (its port too); otherwise the most
        preferred one is, with a fresh round.  Duplicate addresses keep their first place.
        """
        unique: dict[IPv4Address, Candidate] = {}
        for candidate in candidates:
            unique.setdefault(candidate.address, candidate)
        previous = self.current
        self._candidates = tuple(unique.values())
        self._dead &= unique.keys()
        if previous is not None and previous.address in unique:
            self._index = list(unique).index(previous.address)
            return False
        self._index = 0
        self._port_index = 0
        self._failed_ports.clear()
        self._dead.clear()
        return previous is not None or bool(self._candidates)

    def set_ports(self, ports: Sequence[int]) -> bool:
        """New ports from the configuration; returns whether the port in use is gone (then the first is)."""
        if not ports:
            raise ValueError("at least one gateway port is needed")
        current = self.port
        self._ports = tuple(ports)
        self._failed_ports.clear()
        if current in self._ports:
            self._port_index = self._ports.index(current)
            return False
        self._port_index = 0
        return True

    def restart(self) -> bool:
        """A new network: the most preferred gateway, its first port, a fresh round; returns whether the
        gateway in use changed."""
        previous = self.current
        self._index = 0
        self._port_index = 0
        self._failed_ports.clear()
        self._dead.clear()
        return _address(previous) != _address(self.current)

    def confirmed(self) -> None:
        """The gateway answered on the current port: it and every other gateway start afresh."""
        self._failed_ports.clear()
        self._dead.clear()

    def failed(self, *, was_confirmed: bool) -> Move:
        """The attempt on the current gateway and port failed (``was_confirmed``: it had worked, then its
        binding was lost); moves the selection and says where to."""
        n = len(self._ports)
        if was_confirmed:
            self._failed_ports.clear()
        else:
            self._failed_ports.add(self._port_index)
        if len(self._failed_ports) < n:
            for step in range(1, n + 1):
                index = (self._port_index + step) % n
                if index not in self._failed_ports:
                    self._port_index = index
                    break
            return Move.NEXT_PORT
        current = self.current
        if current is not None:
            self._dead.add(current.address)
        self._failed_ports.clear()
        count = len(self._candidates)
        for step in range(1, count):
            index = (self._index + step) % count
            if self._candidates[index].address not in self._dead:
                self._index = index
                self._port_index = 0
                return Move.NEXT_GATEWAY
        # A new round: from the most preferred gateway's first port; with one gateway, its ports in turn as
        # they always were (the one after the last tried).
        self._port_index = (self._port_index + 1) % n if count <= 1 else 0
        self._index = 0
        self._dead.clear()
        return Move.ALL_DEAD


def _address(candidate: Candidate | None) -> IPv4Address | None:
    return None if candidate is None else candidate.address
