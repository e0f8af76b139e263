"""Netlink helpers and LinuxBackend configuration calls, in a throwaway namespace."""

from __future__ import annotations

import os
import sys
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Any

import pytest

from m6t.platform.base import PlatformError
from m6t.protocol.values import Route
from tests.platform import inside, ip, ip_json, netns, run_forked, run_in

if sys.platform != "linux":
    pytest.skip("Linux backend tests", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

from m6t.platform.linux import netlink  # noqa: E402
from m6t.platform.linux.backend import LinuxBackend  # noqa: E402

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and /dev/net/tun")

ADDR = IPv6Address("fd00:6::1234")
DEFAULT = Route(IPv6Network("::/0"), 1029)
EXTRA = Route(IPv6Network("fd00:ab::/64"), 1029)


def _addresses(ifname: str) -> list[tuple[str, int]]:
    return [
        (entry["local"], entry["prefixlen"])
        for link in ip_json("-6", "addr", "show", "dev", ifname)
        for entry in link.get("addr_info", [])
        if entry.get("scope") == "global" and not entry.get("tentative")  # usable at once
    ]


def _routes(ifname: str) -> list[tuple[str, int]]:
    return [
        (route["dst"], route.get("metric", 0))
        for route in ip_json("-6", "route", "show", "dev", ifname)
        if route["dst"] in ("default", "fd00:ab::/64")
    ]


@root_only
def test_address_route_mtu_and_link_state_are_idempotent() -> None:
    async def main() -> dict[str, Any]:
        backend = LinuxBackend()
        tun = backend.open_tun("m6ttest0")
        seen: dict[str, Any] = {}
        await backend.set_mtu(tun.name, 1472)
        await backend.set_link_up(tun.name)
        await backend.set_link_up(tun.name)
        for _ in range(2):  # the second round must be a no-op, not EEXIST
            await backend.replace_address(tun.name, ADDR, 80)
            await backend.replace_route(tun.name, DEFAULT)
            await backend.replace_route(tun.name, EXTRA)
        link = ip_json("link", "show", "dev", tun.name)[0]
        seen["mtu"] = link["mtu"]
        seen["up"] = "UP" in link["flags"]
        seen["addresses"] = _addresses(tun.name)
        seen["routes"] = sorted(_routes(tun.name))
        for _ in range(2):  # removing what is already gone is not an error
            await backend.remove_address(tun.name, ADDR, 80)
            await backend.remove_route(tun.name, DEFAULT)
            await backend.remove_route(tun.name, EXTRA)
        seen["addresses_after"] = _addresses(tun.name)
        seen["routes_after"] = _routes(tun.name)
        tun.close()
        # Nor is removing from an interface that is gone altogether.
        await backend.remove_address(tun.name, ADDR, 80)
        await backend.remove_route(tun.name, DEFAULT)
        await backend.close()
        return seen

    with netns() as (ns,):
        seen = run_in(ns, main)
    assert seen["mtu"] == 1472
    assert seen["up"]
    assert seen["addresses"] == [(str(ADDR), 80)]
    assert seen["routes"] == [("default", 1029), ("fd00:ab::/64", 1029)]
    assert seen["addresses_after"] == []
    assert seen["routes_after"] == []


@root_only
def test_metric_distinguishes_routes_and_replace_moves_one() -> None:
    async def main() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        backend = LinuxBackend()
        tun_a = backend.open_tun("m6ta")
        tun_b = backend.open_tun("m6tb")
        for tun in (tun_a, tun_b):
            await backend.set_link_up(tun.name)
        await backend.replace_route(tun_a.name, Route(IPv6Network("::/0"), 1029))
        await backend.replace_route(tun_a.name, Route(IPv6Network("::/0"), 2000))
        # Same prefix and metric on another interface: replace semantics move it there.
        await backend.replace_route(tun_b.name, Route(IPv6Network("::/0"), 2000))
        result = sorted(_routes(tun_a.name)), sorted(_routes(tun_b.name))
        await backend.close()
        return result

    with netns() as (ns,):
        on_a, on_b = run_in(ns, main)
    assert on_a == [("default", 1029)]
    assert on_b == [("default", 2000)]


@root_only
def test_missing_interface_is_a_platform_error() -> None:
    async def main() -> list[str]:
        backend = LinuxBackend()
        messages = []
        for call in (
            backend.set_mtu("nosuch0", 1400),
            backend.set_link_up("nosuch0"),
            backend.replace_address("nosuch0", ADDR, 80),
            backend.replace_route("nosuch0", DEFAULT),
        ):
            try:
                await call
            except PlatformError as exc:
                messages.append(str(exc))
        tun = backend.open_tun("m6ttest0")
        try:
            await backend.set_mtu(tun.name, 1_000_000)  # above the TUN maximum: the kernel refuses
        except PlatformError as exc:
            messages.append(str(exc))
        tun.close()
        await backend.close()
        return messages

    with netns() as (ns,):
        messages = run_in(ns, main)
    assert len(messages) == 5
    assert all("nosuch0" in m for m in messages[:4])
    assert "MTU 1000000" in messages[4]


@root_only
def test_route_get_and_sync_helper() -> None:
    def body() -> tuple[Any, Any, Any]:
        with inside(ns):
            via = netlink.run_sync(lambda nl: nl.route_get(IPv4Address("198.51.100.2")))
            onlink = netlink.run_sync(lambda nl: nl.route_get(IPv4Address("192.0.2.20")))
            none = netlink.run_sync(lambda nl: nl.route_get(IPv4Address("203.0.113.9")))
            return via, onlink, none

    with netns() as (ns,):
        ip("-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
        ip("-n", ns, "link", "set", "d0", "up")
        ip("-n", ns, "link", "set", "d1", "up")
        ip("-n", ns, "addr", "add", "192.0.2.10/24", "dev", "d0")
        ip("-n", ns, "route", "add", "198.51.100.0/24", "via", "192.0.2.1")
        via, onlink, none = run_forked(body)
    assert via.prefsrc == IPv4Address("192.0.2.10")
    assert via.gateway == IPv4Address("192.0.2.1")
    assert via.oif is not None
    assert onlink.gateway is None and onlink.prefsrc == IPv4Address("192.0.2.10")
    assert none is None


@root_only
def test_sysctl_is_per_namespace() -> None:
    def body() -> tuple[str, str, bool]:
        with inside(ns):
            before = netlink.get_sysctl("net.ipv6.conf.all.forwarding")
            netlink.enable_ipv6_forwarding()
            after = netlink.get_sysctl("net/ipv6/conf/all/forwarding")
            return before, after, netlink.ipv6_disabled()

    host_before = netlink.get_sysctl("net.ipv6.conf.all.forwarding")
    with netns() as (ns,):
        before, after, disabled = run_forked(body)
    assert (before, after, disabled) == ("0", "1", False)
    assert netlink.get_sysctl("net.ipv6.conf.all.forwarding") == host_before


def test_sysctl_names_are_checked() -> None:
    for bad in ("", "net/../../etc/passwd", "net..ipv6"):
        with pytest.raises(PlatformError):
            netlink.set_sysctl(bad, 1)
