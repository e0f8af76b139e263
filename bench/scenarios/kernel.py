"""The bare kernel path: plain IPv4 from the MN through its NAT and the gateway host, routed to the HA.

The HA link is IPv6-only in the standard lab and the MN's networks are IPv4-only, so the only untunnelled
path the MN has to the HA is IPv4: the scenario puts a small IPv4 subnet of the WAN range on the gateway ⇄
HA link and lets the gateway host route it. The MN's packets then take the same NAT and the same hosts as
the tunnels' outer packets, with no userspace hop: the ceiling for every tunnel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from bench import tunnel_lab as tl
from bench.scenarios.base import Scenario, Tunnel
from m6t.lab import GW, GW_IF_HA, GW_WAN, HA_HOST, HA_IF, NAT1, NAT2, WAN, StandardLab

# A /29 carved out of the WAN range: more specific than the WAN's /24, so the NATs and the HA route it
# through the gateway instead of looking for it on the WAN segment.
LINK_NET = "198.51.100.240/29"
GW_ADDR = "198.51.100.241"
HA_ADDR = "198.51.100.242"
WAN_MTU = 1500


class KernelScenario(Scenario):
    """No tunnel: IPv4 routed by the kernels of the NAT and the gateway host."""

    name = "kernel"
    title = "bare kernel path (IPv4, NAT + routing)"

    @contextlib.contextmanager
    def up(self, lab: StandardLab, logdir: Path) -> Iterator[Tunnel]:
        """Address the gateway ⇄ HA link in IPv4 and route it; undone on exit."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(tl.sysctl(lab, GW, "net.ipv4.ip_forward", 1))
            stack.enter_context(tl.address(lab, GW, f"{GW_ADDR}/29", GW_IF_HA))
            stack.enter_context(tl.address(lab, HA_HOST, f"{HA_ADDR}/29", HA_IF))
            stack.enter_context(tl.route(lab, HA_HOST, WAN, "via", GW_ADDR, "dev", HA_IF))
            # Both NATs, so the path survives the MN having moved.
            for nat in (NAT1, NAT2):
                stack.enter_context(tl.route(lab, nat, LINK_NET, "via", GW_WAN))
            yield Tunnel(target=HA_ADDR, full_size_ping=WAN_MTU - 28, mtu=WAN_MTU)
