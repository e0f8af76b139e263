"""Network-namespace labs for the demo, the tests and the benchmarks (Linux, root).

    from m6t.lab import Lab, GW_WAN

    with Lab.standard() as lab:                  # mn, nat1, nat2, wan2, gw, ha; torn down on exit
        lab.run("mn", "ping", "-c1", GW_WAN)      # any command inside a host's namespace
        lab.move_mn("nat2")                       # the MN changes networks (and public address)

Labs are built from a Topology (hosts, switches, veth links, routes, NATs); the standard one is in
m6t.lab.standard. Namespaces are named `m6t-<run id>-<host>` and claimed in /run/m6t-lab/ by the PID
that made them; `cleanup_stale()` removes those of dead runs. Only documentation and ULA ranges are
accepted, and everything lives inside the lab's namespaces.
"""

from m6t.lab.addresses import (
    GW,
    GW2,
    GW2_HA_SIDE,
    GW2_WAN,
    GW_HA_SIDE,
    GW_IF_HA,
    GW_IF_WAN,
    GW_WAN,
    HA,
    HA_HOST,
    HA_IF,
    HA_IF2,
    HA_LINK,
    HA_LINK2,
    HA_ON_LINK2,
    LAN1,
    LAN2,
    M6T_PREFIX,
    MN,
    MN_IF_LAN1,
    MN_IF_LAN2,
    MN_LAN1,
    MN_LAN1_ALT,
    MN_LAN2,
    MN_LAN2_ALT,
    NAT1,
    NAT1_LAN,
    NAT1_WAN,
    NAT2,
    NAT2_LAN,
    NAT2_WAN,
    NAT_IF_LAN,
    NAT_IF_WAN,
    WAN,
    WAN2,
    WAN2_ADDR,
    WAN2_IF,
    WAN_SWITCH,
    is_lab_address,
)
from m6t.lab.conntrack import NatMapping
from m6t.lab.environment import unavailable_reason
from m6t.lab.errors import LabError
from m6t.lab.lab import Lab
from m6t.lab.polling import wait_until
from m6t.lab.reachability import describe_and_check, observe_udp_source, ping_rtt
from m6t.lab.registry import cleanup_stale
from m6t.lab.standard import NatName, StandardLab, standard_topology
from m6t.lab.topology import Endpoint, Host, Link, Nat, Route, Switch, Topology


def standard_lab(*, udp_timeout: int | None = None, second_gateway: bool = False) -> StandardLab:
    """The standard lab, not yet started: use `with standard_lab() as lab:` (same as Lab.standard())."""
    return StandardLab(udp_timeout=udp_timeout, second_gateway=second_gateway)


__all__ = [
    "GW",
    "GW2",
    "GW2_HA_SIDE",
    "GW2_WAN",
    "GW_HA_SIDE",
    "GW_IF_HA",
    "GW_IF_WAN",
    "GW_WAN",
    "HA",
    "HA_HOST",
    "HA_IF",
    "HA_IF2",
    "HA_LINK",
    "HA_LINK2",
    "HA_ON_LINK2",
    "LAN1",
    "LAN2",
    "M6T_PREFIX",
    "MN",
    "MN_IF_LAN1",
    "MN_IF_LAN2",
    "MN_LAN1",
    "MN_LAN1_ALT",
    "MN_LAN2",
    "MN_LAN2_ALT",
    "NAT1",
    "NAT1_LAN",
    "NAT1_WAN",
    "NAT2",
    "NAT2_LAN",
    "NAT2_WAN",
    "NAT_IF_LAN",
    "NAT_IF_WAN",
    "WAN",
    "WAN2",
    "WAN2_ADDR",
    "WAN2_IF",
    "WAN_SWITCH",
    "Endpoint",
    "Host",
    "Lab",
    "LabError",
    "Link",
    "Nat",
    "NatMapping",
    "NatName",
    "Route",
    "StandardLab",
    "Switch",
    "Topology",
    "cleanup_stale",
    "describe_and_check",
    "is_lab_address",
    "observe_udp_source",
    "ping_rtt",
    "standard_lab",
    "standard_topology",
    "unavailable_reason",
    "wait_until",
]
