"""The Linux backend: TUN ioctl, rtnetlink through pyroute2, UDP GSO/GRO, an rtnetlink-driven monitor."""

from __future__ import annotations

import os
import socket
import sys
from ipaddress import IPv4Address, IPv6Address

from m6t.platform.base import Backend, PlatformError, PlatformErrorCode, PowerEvents, ReachabilityHints
from m6t.protocol.values import Route

assert sys.platform == "linux"

# Sibling Linux modules come after the assertion, which hides their contents from mypy on other platforms.
from m6t.platform.linux.monitor import LinuxConnectivityMonitor  # noqa: E402
from m6t.platform.linux.netlink import Netlink, ipv6_disabled  # noqa: E402
from m6t.platform.linux.tun import TUN_PATH, LinuxTun  # noqa: E402
from m6t.platform.linux.udp import LinuxUdpChannel  # noqa: E402

CAP_NET_ADMIN = 12
RP_FILTER_STRICT = 1


def _rp_filter(conf: str) -> int:
    try:
        with open(f"/proc/sys/net/ipv4/conf/{conf}/rp_filter", encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0  # unknown: nothing to say


def has_net_admin() -> bool:
    """Whether this process may configure interfaces (CAP_NET_ADMIN in its effective set)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


class LinuxBackend(Backend):
    name = "linux"
    # The weak host model: a route is chosen by destination, whatever the packet's source address; IPv6
    # source-specific routes (CONFIG_IPV6_SUBTREES, on in Debian's kernels) keep a tunnel's own traffic in it.
    source_routes = True

    def __init__(self) -> None:
        self.netlink = Netlink()
        self._tun: LinuxTun | None = None

    def check(self) -> list[PlatformError]:
        problems: list[PlatformError] = []
        if not os.path.exists(TUN_PATH):
            problems.append(
                PlatformError(
                    f"{TUN_PATH} is missing",
                    hint="load the TUN driver: modprobe tun",
                    code=PlatformErrorCode.TUN_MISSING,
                )
            )
        if ipv6_disabled():
            problems.append(
                PlatformError(
                    "IPv6 is disabled on this host",
                    hint="sysctl -w net.ipv6.conf.all.disable_ipv6=0 "
                    "(and remove ipv6.disable=1 from the kernel command line if present)",
                    code=PlatformErrorCode.IPV6_DISABLED,
                )
            )
        if not has_net_admin():
            problems.append(
                PlatformError(
                    "this process may not configure network interfaces (no CAP_NET_ADMIN)",
                    hint="run the m6t helper as root (or grant it CAP_NET_ADMIN)",
                    code=PlatformErrorCode.PERMISSION_DENIED,
                )
            )
        return problems

    def open_tun(self, name: str) -> LinuxTun:
        tun = LinuxTun(name)
        self._tun = tun
        return tun

    async def set_mtu(self, ifname: str, mtu: int) -> None:
        await self.netlink.set_mtu(ifname, mtu)

    async def set_link_up(self, ifname: str) -> None:
        await self.netlink.set_link_up(ifname)

    async def replace_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        await self.netlink.replace_address(ifname, address, prefixlen)

    async def remove_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        await self.netlink.remove_address(ifname, address, prefixlen)

    async def replace_route(self, ifname: str, route: Route) -> None:
        await self.netlink.replace_route(ifname, route.network, route.metric, route.source)

    async def remove_route(self, ifname: str, route: Route) -> None:
        await self.netlink.remove_route(ifname, route.network, route.metric, route.source)

    def uplink_problem(self, uplink: str) -> PlatformError | None:
        """Strict reverse-path filtering (rp_filter 1) drops what the gateway sends back through an uplink that
        is not the preferred path toward it: the kernel applies the larger of ``all`` and the interface's value."""
        values = [_rp_filter(name) for name in ("all", uplink)]
        if max(values) != RP_FILTER_STRICT:
            return None
        return PlatformError(
            f"reverse-path filtering is strict on {uplink} (rp_filter {values[1]}, all {values[0]}): the "
            "gateway's answers through it are dropped while another uplink is the preferred path",
            hint=f"make it loose: sysctl -w net.ipv4.conf.{uplink}.rp_filter=2"
            + ("" if values[0] != RP_FILTER_STRICT else " net.ipv4.conf.all.rp_filter=2"),
        )

    def interface_exists(self, ifname: str) -> bool:
        try:
            socket.if_nametoindex(ifname)
        except OSError:
            return False
        return True

    def open_udp(self, gateway: tuple[IPv4Address, int], *, uplink: str | None = None) -> LinuxUdpChannel:
        # What arrives is written to the TUN opened last: merged as that device allows.  With one tunnel per
        # uplink, each tunnel has a backend of its own, so "last" is that tunnel's TUN.
        tun = self._tun
        return LinuxUdpChannel(gateway, coalescer=tun.coalescer() if tun is not None else None, uplink=uplink)

    def connectivity_monitor(
        self, gateway: IPv4Address, ignore_interface: str, *, uplink: str | None = None
    ) -> LinuxConnectivityMonitor:
        return LinuxConnectivityMonitor(gateway, ignore_interface, uplink=uplink)

    def power_events(self) -> PowerEvents:
        from m6t.platform.linux.logind import LogindPowerEvents

        return LogindPowerEvents()

    def reachability_hints(self) -> ReachabilityHints:
        from m6t.platform.linux.networkmanager import NetworkManagerHints

        return NetworkManagerHints()

    async def close(self) -> None:
        self.netlink.close()
