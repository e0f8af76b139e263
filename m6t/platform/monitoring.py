"""What every OS's connectivity monitor shares: the connected-UDP probe, and the interface by address.

The probe is the backstop for notifications the OS lost: a UDP socket connected toward the gateway gets the
source address the OS would pick now, and the interface holding that address is the egress interface.
Nothing is sent, and no notification is needed; the next hop stays unknown (a look-up finds it).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from ipaddress import IPv4Address

import psutil

from m6t.platform.base import ConnectivityMonitor
from m6t.protocol.values import Attachment

PROBE_PORT = 9
"""Any port does (nothing is sent): the discard port, should something ever be."""


def connected_udp_source(
    address: str, port: int = PROBE_PORT, *, prepare: Callable[[socket.socket], None] | None = None
) -> str:
    """The IPv4 source the OS picks toward ``address``: a UDP ``connect`` then ``getsockname``.  ``prepare``
    sets the socket up before the connect (binds it to an interface, for a probe scoped to one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if prepare is not None:
            prepare(sock)
        # A UDP connect only selects a route and a source address: nothing is sent.
        sock.connect((address, port))
        return str(sock.getsockname()[0])


def interface_of(address: IPv4Address | str) -> str | None:
    """The name of the interface holding the IPv4 ``address`` (Windows: its alias), if any."""
    wanted = str(address)
    for name, addresses in psutil.net_if_addrs().items():
        for entry in addresses:
            if entry.family == socket.AF_INET and entry.address == wanted:
                return str(name)
    return None


def ipv4_interfaces() -> list[str]:
    """The names of the interfaces that are up and hold an IPv4 address (Windows: their aliases)."""
    stats = psutil.net_if_stats()
    found = []
    for name, addresses in psutil.net_if_addrs().items():
        status = stats.get(name)
        if status is not None and status.isup and any(entry.family == socket.AF_INET for entry in addresses):
            found.append(str(name))
    return found


class ProbedMonitor(ConnectivityMonitor):
    """The part of a monitor every OS shares: its backstop probe.  Subclasses add the change source and the
    look-up, and may answer the probe's two questions their own way (below)."""

    def __init__(self, gateway: IPv4Address, ignore_interface: str, uplink: str | None = None) -> None:
        self.gateway = gateway
        self.ignore_interface = ignore_interface
        self.uplink = uplink

    def probe(self) -> Attachment | None:
        try:
            local = IPv4Address(self._source_toward(str(self.gateway)))
        except (OSError, ValueError):
            return None
        if local.is_unspecified:
            return None
        return self._holding(local)

    def _source_toward(self, address: str) -> str:
        return connected_udp_source(address)

    def _holding(self, local: IPv4Address) -> Attachment | None:
        """The path the probed source stands for: the interface holding it (``None`` if none does)."""
        name = interface_of(local)
        return Attachment(local_ipv4=local, interface=name, router=None) if name is not None else None
