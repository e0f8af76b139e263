"""Turning a Topology into namespaces, veths, addresses, routes and NAT rules.

Commands are batched (`ip -batch`, one `sysctl` and one `nft -f` per namespace) because a lab is built
for every test and the machine is small.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from m6t.lab import nftables, shell
from m6t.lab.polling import wait_until
from m6t.lab.topology import Endpoint, Topology

BRIDGE = "br0"
READY_TIMEOUT = 5.0


def build(topology: Topology, names: Mapping[str, str]) -> None:
    """Create every namespace, link, address, route and NAT of topology; names maps node -> namespace."""
    _batch_root([f"netns add {names[node]}" for node in topology.node_names()])
    _batch_root(
        [
            f"link add {link.a.ifname} netns {names[link.a.host]} type veth "
            f"peer name {link.b.ifname} netns {names[link.b.host]}"
            for link in topology.links
        ]
    )
    for node in topology.node_names():
        shell.run(shell.in_netns(names[node], ["sysctl", "-q", "-w", *_sysctls(topology, node)]))
    for node in topology.node_names():
        shell.ip_batch(_ip_commands(topology, node), names[node])
    for nat in topology.nats:
        load_nft(names[nat.host], nftables.nat(nat.outside))
    wait_until(lambda: _ready(topology, names), what="lab links to come up", timeout=READY_TIMEOUT)


def load_nft(namespace: str, ruleset: str) -> None:
    """Load a ruleset into a namespace as one transaction."""
    shell.run(shell.in_netns(namespace, ["nft", "-f", "-"]), input=ruleset)


def link_states(namespace: str) -> dict[str, dict[str, Any]]:
    """`ip -j addr show` of a namespace, keyed by interface name."""
    out = shell.run(["ip", "-n", namespace, "-j", "address", "show"]).stdout
    data: list[dict[str, Any]] = json.loads(out) if out.strip() else []
    return {str(entry["ifname"]): entry for entry in data}


def interface_ready(state: Mapping[str, Any]) -> bool:
    """True when an interface passes traffic: carrier up (qdisc attached) and no tentative address."""
    if state.get("operstate") != "UP":
        return False
    return not any(info.get("tentative") for info in state.get("addr_info", []))


def _batch_root(lines: list[str]) -> None:
    if lines:
        shell.ip_batch(lines)


def _sysctls(topology: Topology, node: str) -> list[str]:
    settings = [
        # Addresses must be usable as soon as they are added, and nobody in a lab sends RAs.
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
        "net.ipv6.conf.all.accept_ra=0",
        "net.ipv6.conf.default.accept_ra=0",
        "net.ipv6.conf.all.router_solicitations=0",
        "net.ipv6.conf.default.router_solicitations=0",
        # A new namespace inherits the root's IPv4 settings; a strict reverse-path filter there would
        # silently eat the spoofed packets that gateway tests send on purpose.
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        # Changing the MN's address on the same LAN adds the new one before removing the old: without
        # promotion, removing the primary address would take the new secondary with it.
        "net.ipv4.conf.all.promote_secondaries=1",
        "net.ipv4.conf.default.promote_secondaries=1",
    ]
    if topology.is_switch(node):
        settings += ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
    else:
        host = topology.host(node)
        settings.append(f"net.ipv4.ip_forward={int(host.ipv4_forwarding)}")
        settings.append(f"net.ipv6.conf.all.forwarding={int(host.ipv6_forwarding)}")
    # The links exist already and took the namespace's defaults of that moment, so set them one by one.
    for end in _ends_on(topology, node):
        settings += [
            f"net.ipv6.conf.{end.ifname}.accept_dad=0",
            f"net.ipv6.conf.{end.ifname}.disable_ipv6={int(not end.ipv6)}",
            f"net.ipv4.conf.{end.ifname}.rp_filter=0",
        ]
    return settings


def _ip_commands(topology: Topology, node: str) -> list[str]:
    commands = ["link set lo up"]
    ends = _ends_on(topology, node)
    if topology.is_switch(node):
        commands += [f"link add {BRIDGE} type bridge stp_state 0", f"link set {BRIDGE} up"]
        for end in ends:
            commands.append(f"link set {end.ifname} master {BRIDGE}")
    for end in ends:
        for address in end.addresses:
            nodad = " nodad" if ipaddress.ip_interface(address).version == 6 else ""
            commands.append(f"address add {address} dev {end.ifname}{nodad}")
    for end in ends:
        if end.up:
            commands.append(f"link set {end.ifname} up")
    for route in topology.routes:
        if route.host != node:
            continue
        destination = route.destination
        if destination == "default":
            destination = "::/0" if route.ipv6 else "0.0.0.0/0"
        command = f"route add {destination}"
        if route.via is not None:
            command += f" via {route.via}"
        if route.dev is not None:
            command += f" dev {route.dev}"
        commands.append(command)
    return commands


def _ends_on(topology: Topology, node: str) -> list[Endpoint]:
    return [end for end in topology.endpoints() if end.host == node]


def _ready(topology: Topology, names: Mapping[str, str]) -> bool:
    states = {node: link_states(names[node]) for node in topology.node_names()}
    for link in topology.links:
        if not (link.a.up and link.b.up):
            continue
        for end in (link.a, link.b):
            if not interface_ready(states[end.host].get(end.ifname, {})):
                return False
    return True
