"""The standard m6t lab and the moves its mobile node makes.

    mn (lan1 192.0.2.10) ── nat1 (192.0.2.1 | 198.51.100.11) ─┐
    mn (lan2, down)      ── nat2 (203.0.113.1 | 198.51.100.12) ─┤ WAN switch 198.51.100.0/24
                                 wan2 (198.51.100.66, spare) ─┤
                                    gw (198.51.100.2) ───────┤
                                    gw (fd00:ab::2) ── ha (fd00:ab::1, default route via gw)
            with second_gateway:    gw2 (198.51.100.3) ──────┘
                                    gw2 (fd00:ac::2) ── ha (fd00:ac::1 on halink2)

The MN has one interface on each NAT's LAN. Exactly one is up, with an address and the default route;
moving takes that one down (addresses gone) and brings the other up, as a laptop changing networks.

With a second gateway, the HA routes the m6t /48 through gw, and through gw2 once gw's link to it has no
carrier (``ignore_routes_with_linkdown``): the routing a site with two gateways would have, so that a
gateway that dies (:meth:`Lab.fail_host`) leaves the other one the whole way to the HA.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from m6t.lab import addresses as a
from m6t.lab import shell
from m6t.lab.errors import LabError
from m6t.lab.lab import Lab
from m6t.lab.topology import Endpoint, Host, Link, Nat, Route, Switch, Topology

NatName = Literal["nat1", "nat2"]

_ATTACHMENTS: dict[str, tuple[str, str, str, str]] = {
    # nat: (MN interface, default MN address, router, LAN)
    a.NAT1: (a.MN_IF_LAN1, a.MN_LAN1, a.NAT1_LAN, a.LAN1),
    a.NAT2: (a.MN_IF_LAN2, a.MN_LAN2, a.NAT2_LAN, a.LAN2),
}


def standard_topology(udp_timeout: int | None = None, *, second_gateway: bool = False) -> Topology:
    """The standard lab's description; udp_timeout (seconds) applies to both NATs when given."""

    def wan_port(host: str, ifname: str, address: str) -> Link:
        return Link(Endpoint(a.WAN_SWITCH, host), Endpoint(host, ifname, (f"{address}/24",)))

    gw2_hosts = (Host(a.GW2, ipv6_forwarding=True),) if second_gateway else ()
    gw2_links = (
        (
            wan_port(a.GW2, a.GW_IF_WAN, a.GW2_WAN),
            Link(
                Endpoint(a.GW2, a.GW_IF_HA, (f"{a.GW2_HA_SIDE}/64",), ipv6=True),
                Endpoint(a.HA_HOST, a.HA_IF2, (f"{a.HA_ON_LINK2}/64",), ipv6=True),
            ),
        )
        if second_gateway
        else ()
    )
    gw2_routes = (Route(a.GW2, a.HA_LINK, via=a.HA_ON_LINK2, dev=a.GW_IF_HA, ipv6=True),) if second_gateway else ()
    return Topology(
        hosts=(
            Host(a.MN),
            Host(a.NAT1, ipv4_forwarding=True),
            Host(a.NAT2, ipv4_forwarding=True),
            Host(a.GW, ipv6_forwarding=True),
            Host(a.HA_HOST),
            Host(a.WAN2),
            *gw2_hosts,
        ),
        switches=(Switch(a.WAN_SWITCH),),
        links=(
            Link(
                Endpoint(a.MN, a.MN_IF_LAN1, (f"{a.MN_LAN1}/24",)),
                Endpoint(a.NAT1, a.NAT_IF_LAN, (f"{a.NAT1_LAN}/24",)),
            ),
            Link(
                Endpoint(a.MN, a.MN_IF_LAN2, up=False),
                Endpoint(a.NAT2, a.NAT_IF_LAN, (f"{a.NAT2_LAN}/24",)),
            ),
            wan_port(a.NAT1, a.NAT_IF_WAN, a.NAT1_WAN),
            wan_port(a.NAT2, a.NAT_IF_WAN, a.NAT2_WAN),
            wan_port(a.GW, a.GW_IF_WAN, a.GW_WAN),
            wan_port(a.WAN2, a.WAN2_IF, a.WAN2_ADDR),
            Link(
                Endpoint(a.GW, a.GW_IF_HA, (f"{a.GW_HA_SIDE}/64",), ipv6=True),
                Endpoint(a.HA_HOST, a.HA_IF, (f"{a.HA}/64",), ipv6=True),
            ),
            *gw2_links,
        ),
        routes=(
            Route(a.MN, "default", via=a.NAT1_LAN, dev=a.MN_IF_LAN1),
            # The HA answers the m6t prefix (and anything else) through the gateway.
            Route(a.HA_HOST, "default", via=a.GW_HA_SIDE, dev=a.HA_IF, ipv6=True),
            *gw2_routes,
        ),
        nats=(
            Nat(a.NAT1, inside=a.NAT_IF_LAN, outside=a.NAT_IF_WAN, udp_timeout=udp_timeout),
            Nat(a.NAT2, inside=a.NAT_IF_LAN, outside=a.NAT_IF_WAN, udp_timeout=udp_timeout),
        ),
    )


class StandardLab(Lab):
    """The standard lab, with the mobile node's moves."""

    def __init__(self, *, udp_timeout: int | None = None, second_gateway: bool = False) -> None:
        """Describe the standard lab; udp_timeout (seconds) applies to both NATs when given; second_gateway
        adds gw2 (198.51.100.3), the HA's way back through it taken when gw's link is down."""
        super().__init__(standard_topology(udp_timeout, second_gateway=second_gateway))
        self._second_gateway = second_gateway
        self._attachment: NatName = "nat1"
        self._mn_address = a.MN_LAN1

    def _after_build(self) -> None:
        super()._after_build()
        if not self._second_gateway:
            return
        # Metrics make gw the HA's way to the m6t /48 and gw2 the fallback; a route whose link lost its
        # carrier is skipped only with ignore_routes_with_linkdown.
        self.write_sysctl(a.HA_HOST, f"net.ipv6.conf.{a.HA_IF}.ignore_routes_with_linkdown", 1)
        shell.ip_batch(
            [
                f"route add {a.M6T_PREFIX} via {a.GW_HA_SIDE} dev {a.HA_IF} metric 100",
                f"route add {a.M6T_PREFIX} via {a.GW2_HA_SIDE} dev {a.HA_IF2} metric 200",
            ],
            self.ns(a.HA_HOST),
        )

    @property
    def mn_attachment(self) -> NatName:
        """The NAT whose LAN the MN is on."""
        return self._attachment

    @property
    def mn_address(self) -> str:
        """The MN's current IPv4 address."""
        return self._mn_address

    @property
    def mn_interface(self) -> str:
        """The MN's interface that is up."""
        return _ATTACHMENTS[self._attachment][0]

    @property
    def mn_router(self) -> str:
        """The MN's current default router (its NAT's LAN address)."""
        return _ATTACHMENTS[self._attachment][2]

    @property
    def mn_public_address(self) -> str:
        """The WAN address the MN's traffic leaves its current NAT with."""
        return a.NAT1_WAN if self._attachment == a.NAT1 else a.NAT2_WAN

    def move_mn(self, to: NatName, address: str | None = None) -> None:
        """Move the MN onto that NAT's LAN (default address .10); the old interface goes down. No-op if there."""
        if to not in _ATTACHMENTS:
            raise LabError(f"the MN can move to nat1 or nat2, not {to!r}")
        if to == self._attachment:
            return
        new_if, default_address, router, lan = _ATTACHMENTS[to]
        address = default_address if address is None else _check_lan_address(address, lan, router)
        old_if = self.mn_interface
        commands = [
            f"address flush dev {old_if}",
            f"link set {old_if} down",
            f"link set {new_if} up",
            f"address add {address}/24 dev {new_if}",
            f"route replace default via {router} dev {new_if}",
        ]
        shell.ip_batch(commands, self.ns(a.MN))
        self._attachment, self._mn_address = to, address
        self.wait_interface_ready(a.MN, new_if)
        self.wait_interface_ready(to, a.NAT_IF_LAN)

    def add_mn_uplink(self, nat: NatName, metric: int = 200) -> None:
        """Bring the MN's interface on that NAT's LAN up beside the one it is on (a laptop on Wi-Fi with a phone
        tethered): its default address and a second default route, ``metric`` behind the first."""
        if nat == self._attachment:
            raise LabError(f"the MN is already on {nat}")
        ifname, address, router, _lan = _ATTACHMENTS[nat]
        commands = [
            f"link set {ifname} up",
            f"address add {address}/24 dev {ifname}",
            f"route add default via {router} dev {ifname} metric {metric}",
        ]
        shell.ip_batch(commands, self.ns(a.MN))
        self.wait_interface_ready(a.MN, ifname)
        self.wait_interface_ready(nat, a.NAT_IF_LAN)

    def remove_mn_uplink(self, nat: NatName) -> None:
        """Take an uplink :meth:`add_mn_uplink` added down again (its addresses and route go with it)."""
        if nat == self._attachment:
            raise LabError(f"{nat} is the MN's attachment: move the MN instead")
        ifname = _ATTACHMENTS[nat][0]
        shell.ip_batch([f"address flush dev {ifname}", f"link set {ifname} down"], self.ns(a.MN))

    def change_mn_address(self, new: str) -> None:
        """Renumber the MN on its current LAN (e.g. 192.0.2.10 -> 192.0.2.20), new address first, then old out."""
        ifname, _, router, lan = _ATTACHMENTS[self._attachment]
        new = _check_lan_address(new, lan, router)
        if new == self._mn_address:
            return
        commands = [
            f"address add {new}/24 dev {ifname}",
            f"address del {self._mn_address}/24 dev {ifname}",
            f"route replace default via {router} dev {ifname}",
        ]
        shell.ip_batch(commands, self.ns(a.MN))
        self._mn_address = new


def _check_lan_address(address: str, lan: str, router: str) -> str:
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError as exc:
        raise LabError(f"bad IPv4 address {address!r}") from exc
    network = ipaddress.IPv4Network(lan)
    if parsed not in network or parsed in (network.network_address, network.broadcast_address):
        raise LabError(f"{address} is not a host address of {lan}")
    if str(parsed) == router:
        raise LabError(f"{address} is the router's address")
    return str(parsed)
