"""The declarative description of a lab: hosts, L2 switches, veth links, routes and NAT boxes.

Every host and switch becomes a network namespace. A link is a veth pair created directly inside the two
namespaces, so nothing ever appears in the root namespace. A link end on a switch is enslaved to that
switch's bridge, which is how several hosts share one segment (the standard lab's WAN).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from m6t.lab.addresses import is_lab_address
from m6t.lab.errors import LabError

# IFNAMSIZ is 16 with the terminating NUL.
MAX_IFNAME = 15
_NAME = re.compile(r"^[a-z][a-z0-9]*$")
_IFNAME = re.compile(r"^[a-z][a-z0-9]*$")


@dataclass(frozen=True)
class Host:
    """A machine: one network namespace with forwarding switched on as needed."""

    name: str
    ipv4_forwarding: bool = False
    ipv6_forwarding: bool = False


@dataclass(frozen=True)
class Switch:
    """An L2 segment: a namespace holding only a bridge that all its link ends join."""

    name: str


@dataclass(frozen=True)
class Endpoint:
    """One end of a link: an interface of a host (or a port of a switch) and its addresses (CIDR)."""

    host: str
    ifname: str
    addresses: tuple[str, ...] = ()
    up: bool = True
    # Interfaces of IPv4-only networks carry no IPv6 at all, as the draft's MN sees them; this also keeps
    # captures free of link-local chatter.
    ipv6: bool = False


@dataclass(frozen=True)
class Link:
    """A veth pair between two endpoints."""

    a: Endpoint
    b: Endpoint


@dataclass(frozen=True)
class Route:
    """A route in a host: destination is "default" or a CIDR; at least one of via and dev is given."""

    host: str
    destination: str
    via: str | None = None
    dev: str | None = None
    ipv6: bool = False


@dataclass(frozen=True)
class Nat:
    """A masquerading NAT box: host forwards from its inside interface out of its outside interface."""

    host: str
    inside: str
    outside: str
    # None keeps the kernel's default UDP conntrack timeouts.
    udp_timeout: int | None = None


@dataclass(frozen=True)
class Topology:
    """A whole lab."""

    hosts: tuple[Host, ...]
    links: tuple[Link, ...]
    switches: tuple[Switch, ...] = ()
    routes: tuple[Route, ...] = ()
    nats: tuple[Nat, ...] = ()

    def node_names(self) -> list[str]:
        """Names of all hosts and switches, in declaration order."""
        return [h.name for h in self.hosts] + [s.name for s in self.switches]

    def host(self, name: str) -> Host:
        """The host of that name."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError(f"no host {name!r} in this lab")

    def nat(self, host: str) -> Nat:
        """The NAT box on that host."""
        for nat in self.nats:
            if nat.host == host:
                return nat
        raise LabError(f"host {host!r} is not a NAT in this lab")

    def endpoints(self) -> list[Endpoint]:
        """Every link end."""
        return [end for link in self.links for end in (link.a, link.b)]

    def is_switch(self, name: str) -> bool:
        """True when name is a switch rather than a host."""
        return any(s.name == name for s in self.switches)

    def validate(self) -> None:
        """Raise LabError unless names are unique and well-formed and every address is a lab address."""
        names = self.node_names()
        for name in names:
            if not _NAME.match(name) or len(name) > 16:
                raise LabError(f"bad host or switch name {name!r}: lowercase letters and digits, 16 at most")
        if len(set(names)) != len(names):
            raise LabError(f"duplicate host or switch names in {names}")
        seen: set[tuple[str, str]] = set()
        for end in self.endpoints():
            if end.host not in names:
                raise LabError(f"link end on unknown host {end.host!r}")
            if not _IFNAME.match(end.ifname) or len(end.ifname) > MAX_IFNAME:
                raise LabError(f"bad interface name {end.ifname!r}: lowercase letters and digits, 15 at most")
            if (end.host, end.ifname) in seen:
                raise LabError(f"interface {end.ifname!r} declared twice on {end.host!r}")
            seen.add((end.host, end.ifname))
            if self.is_switch(end.host) and end.addresses:
                raise LabError(f"switch port {end.host}/{end.ifname} cannot have addresses")
            for address in end.addresses:
                _check_interface_address(address)
                if ipaddress.ip_interface(address).version == 6 and not end.ipv6:
                    raise LabError(f"IPv6 address {address} on {end.host}/{end.ifname} which has ipv6=False")
        for route in self.routes:
            if route.host not in names or self.is_switch(route.host):
                raise LabError(f"route on unknown host {route.host!r}")
            if route.via is None and route.dev is None:
                raise LabError(f"route {route} needs via or dev")
            if route.destination != "default" and not is_lab_address(route.destination):
                raise LabError(f"route destination {route.destination} is outside the lab ranges")
            if route.via is not None and not is_lab_address(route.via):
                raise LabError(f"next hop {route.via} is outside the lab ranges")
            if route.dev is not None and (route.host, route.dev) not in seen:
                raise LabError(f"route {route} uses an undeclared interface")
        for nat in self.nats:
            if nat.host not in names or self.is_switch(nat.host):
                raise LabError(f"NAT on unknown host {nat.host!r}")
            for ifname in (nat.inside, nat.outside):
                if (nat.host, ifname) not in seen:
                    raise LabError(f"NAT {nat.host} uses undeclared interface {ifname!r}")


def _check_interface_address(address: str) -> None:
    try:
        ipaddress.ip_interface(address)
    except ValueError as exc:
        raise LabError(f"bad interface address {address!r}: {exc}") from exc
    if "/" not in address:
        raise LabError(f"interface address {address!r} needs a prefix length")
    if not is_lab_address(address):
        raise LabError(f"address {address} is outside the lab ranges")
