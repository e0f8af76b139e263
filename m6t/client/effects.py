"""What the client session asks its driver to do to the OS.

The session never touches the OS: it returns these, in the order they must happen, and the driver
carries them out through the platform ``Backend``.  Socket effects and sends are synchronous in every
backend; address, route and MTU changes are coroutines, so the driver runs them in order on a queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from m6t.protocol.values import Route

ADDRESS_PREFIXLEN = 128
"""The tunnel address is installed alone: an on-link /80 would route our own stale suffixes into the TUN."""


@dataclass(frozen=True, slots=True)
class Send:
    """A datagram the session builds itself (keepalive, probe echo) for the current socket."""

    datagram: bytes
    dont_fragment: bool = False
    """A path MTU probe: DF set on the outer IPv4 header for this datagram only (``UdpChannel.send_probe``);
    everything else leaves with DF clear (draft 2.6)."""


@dataclass(frozen=True, slots=True)
class OpenSocket:
    """Replace the UDP socket (if any) with a new one toward ``gateway:port``.

    A new socket is a new local port, hence a new NAT mapping, so a regenerated suffix never rides
    on a mapping the gateway already tied to an older address.  The driver reports the outcome with
    ``Session.socket_opened`` or ``Session.effect_failed``.
    """

    gateway: IPv4Address
    port: int


@dataclass(frozen=True, slots=True)
class CloseSocket:
    pass


@dataclass(frozen=True, slots=True)
class SetAddress:
    address: IPv6Address
    prefixlen: int = ADDRESS_PREFIXLEN


@dataclass(frozen=True, slots=True)
class RemoveAddress:
    address: IPv6Address
    prefixlen: int = ADDRESS_PREFIXLEN


@dataclass(frozen=True, slots=True)
class SetRoutes:
    routes: tuple[Route, ...]


@dataclass(frozen=True, slots=True)
class RemoveRoutes:
    routes: tuple[Route, ...]


@dataclass(frozen=True, slots=True)
class SetMtu:
    mtu: int


Effect = Send | OpenSocket | CloseSocket | SetAddress | RemoveAddress | SetRoutes | RemoveRoutes | SetMtu
OsEffect = SetAddress | RemoveAddress | SetRoutes | RemoveRoutes | SetMtu
"""The effects that are coroutines in every backend."""
