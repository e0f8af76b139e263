"""The macOS backend: utun kernel control, interface ioctls, the PF_ROUTE routing socket.

Differences from the Linux backend a user may notice, all documented where they are implemented:

* the tunnel interface is called ``utunN`` whatever the configuration says (:mod:`.utun`): ``open_tun``
  returns a device whose ``name`` is the real one;
* routes have no metric (:mod:`.routing`): ``Route.metric`` is ignored, and the tunnel's routes stay behind
  any other interface's route for the same destination by being installed interface-scoped;
* UDP has no GSO/GRO and no ICMP error queue (:mod:`.udp`);
* sleep and wake come from IOKit's root power domain (:mod:`.power`), on a run loop thread of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

from m6t.platform.base import Backend, PlatformError, PlatformErrorCode, PowerEvents
from m6t.platform.darwin import routing
from m6t.platform.darwin.ifconfig_ioctl import InterfaceConfig
from m6t.platform.darwin.monitor import DarwinConnectivityMonitor
from m6t.platform.darwin.power import IOKitPowerEvents, PowerApi, native_power_api
from m6t.platform.darwin.syscalls import PF_SYSTEM, SOCK_DGRAM, SYSPROTO_CONTROL, DarwinSyscalls, Syscalls
from m6t.platform.darwin.udp import DarwinUdpChannel
from m6t.platform.darwin.utun import DarwinUtun, control_id
from m6t.protocol.values import Route

IPV6_SYSCTL = "net.inet6.ip6.forwarding"
"""Present whenever the kernel has an IPv6 stack.  macOS has no host-wide switch to turn IPv6 off
(``networksetup -setv6off`` acts per network service and does not touch a utun), so the check is that the
stack is there at all: sysctlbyname fails with ENOENT for a name the kernel does not have."""


class DarwinBackend(Backend):
    name = "darwin"

    def __init__(self, syscalls: Syscalls | None = None, power_api: Callable[[], PowerApi] | None = None) -> None:
        self.syscalls: Syscalls = syscalls if syscalls is not None else DarwinSyscalls()
        self._power_api = power_api if power_api is not None else native_power_api
        self._ifconfig = InterfaceConfig(self.syscalls)

    def check(self) -> list[PlatformError]:
        problems: list[PlatformError] = []
        utun = self._utun_problem()
        if utun is not None:
            problems.append(utun)
        try:
            self.syscalls.sysctlbyname(IPV6_SYSCTL)
        except OSError as exc:
            problems.append(
                PlatformError(
                    f"this kernel has no IPv6 stack ({IPV6_SYSCTL}: {exc.strerror})",
                    hint="m6t needs IPv6 in the kernel; it cannot be added to this system",
                    code=PlatformErrorCode.IPV6_DISABLED,
                )
            )
        if self.syscalls.geteuid() != 0:
            problems.append(
                PlatformError(
                    "this process may not create utun interfaces or change routes (not root)",
                    hint="run the m6t helper as root (it is installed as a launchd daemon)",
                    code=PlatformErrorCode.PERMISSION_DENIED,
                )
            )
        return problems

    def _utun_problem(self) -> PlatformError | None:
        try:
            fd = self.syscalls.socket(PF_SYSTEM, SOCK_DGRAM, SYSPROTO_CONTROL)
        except OSError as exc:
            return PlatformError(
                f"cannot create a kernel control socket: {exc.strerror}",
                hint="this macOS has no PF_SYSTEM kernel controls; the utun driver is required",
                code=PlatformErrorCode.TUN_MISSING,
            )
        try:
            control_id(self.syscalls, fd)
        except PlatformError as exc:
            return exc
        finally:
            self.syscalls.close(fd)
        return None

    def open_tun(self, name: str) -> DarwinUtun:
        return DarwinUtun(self.syscalls, name)

    async def set_mtu(self, ifname: str, mtu: int) -> None:
        self._ifconfig.set_mtu(ifname, mtu)

    async def set_link_up(self, ifname: str) -> None:
        self._ifconfig.set_up(ifname)

    async def replace_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        self._ifconfig.replace_address(ifname, address, prefixlen)

    async def remove_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        self._ifconfig.remove_address(ifname, address)

    async def replace_route(self, ifname: str, route: Route) -> None:
        # route.metric is ignored: the BSD routing table has no metric (see m6t.platform.darwin.routing).
        if route.source is not None:
            raise PlatformError("source-specific routes are not used on macOS (source_routes is False)")
        await routing.replace_route(self.syscalls, self._ifindex(ifname), ifname, route.network)

    async def remove_route(self, ifname: str, route: Route) -> None:
        index = self._ifindex_or_none(ifname)
        if index is None:
            return  # the interface is gone, and its routes with it
        await routing.remove_route(self.syscalls, index, ifname, route.network)

    def interface_exists(self, ifname: str) -> bool:
        return self._ifindex_or_none(ifname) is not None

    def _ifindex(self, ifname: str) -> int:
        index = self._ifindex_or_none(ifname)
        if index is None:
            raise PlatformError(f"no interface named {ifname}")
        return index

    def _ifindex_or_none(self, ifname: str) -> int | None:
        try:
            return self.syscalls.if_nametoindex(ifname)
        except OSError:
            return None
        except ValueError:  # a name with a NUL byte
            return None

    def open_udp(self, gateway: tuple[IPv4Address, int], *, uplink: str | None = None) -> DarwinUdpChannel:
        bound_if = self._ifindex(uplink) if uplink is not None else 0
        return DarwinUdpChannel(gateway, syscalls=self.syscalls, bound_if=bound_if)

    def connectivity_monitor(
        self, gateway: IPv4Address, ignore_interface: str, *, uplink: str | None = None
    ) -> DarwinConnectivityMonitor:
        return DarwinConnectivityMonitor(gateway, ignore_interface, syscalls=self.syscalls, uplink=uplink)

    def power_events(self) -> PowerEvents:
        return IOKitPowerEvents(self._power_api)

    async def close(self) -> None:
        self._ifconfig.close()
