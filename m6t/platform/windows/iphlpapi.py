"""The IP Helper API (iphlpapi.dll, ``netioapi.h``): addresses, routes, interface MTU, route lookups, change
notifications.

Layouts are the x64 (and ARM64) ones, checked by the tests against the documented sizes and offsets:

=========================  =====  ====================================================================
structure                  bytes  notes
=========================  =====  ====================================================================
SOCKADDR_INET              28     union of SOCKADDR_IN (16) and SOCKADDR_IN6 (28); 4-byte aligned
IP_ADDRESS_PREFIX          32     SOCKADDR_INET + UINT8 PrefixLength at 28, padded
MIB_UNICASTIPADDRESS_ROW   80     InterfaceLuid at 32 (8-aligned after the 28-byte address), DadState 64
MIB_IPFORWARD_ROW2         104    DestinationPrefix 12, NextHop 44, Metric 84, Protocol 88
MIB_IPINTERFACE_ROW        168    InterfaceLuid 8, RouterDiscoveryBehavior 52, DadTransmits 56, NlMtu 152
MIB_UNICASTIPADDRESS_TABLE 8 + n  ULONG NumEntries, then the rows from offset 8 (their alignment)
=========================  =====  ====================================================================

Windows numbers address families its own way (AF_INET6 is 23), so the constants come from
:mod:`m6t.platform.windows.system`, never from the host's :mod:`socket` module.

Every change has *replace* semantics (create; on ``ERROR_OBJECT_ALREADY_EXISTS`` set) and every removal
tolerates absence (``ERROR_NOT_FOUND``), as the Linux backend does with netlink, so that the caller can
retry a half-done reconfiguration without special cases.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Any

from m6t.platform.windows.system import (
    AF_INET,
    AF_INET6,
    BOOLEAN,
    ERROR_FILE_NOT_FOUND,
    ERROR_HOST_UNREACHABLE,
    ERROR_NETWORK_UNREACHABLE,
    ERROR_NOT_FOUND,
    ERROR_OBJECT_ALREADY_EXISTS,
    HANDLE,
    LARGE_INTEGER,
    UINT8,
    ULONG,
    ULONG64,
    USHORT,
    WinApi,
    WinError,
    bind,
)

log = logging.getLogger(__name__)

NET_IFINDEX = ULONG
IF_MAX_STRING_SIZE = 256
SCOPE_LEVEL_COUNT = 16

# NL_PREFIX_ORIGIN / NL_SUFFIX_ORIGIN / NL_DAD_STATE
IP_PREFIX_ORIGIN_MANUAL = 1
IP_SUFFIX_ORIGIN_MANUAL = 1
IP_DAD_STATE_PREFERRED = 4
# NL_ROUTE_PROTOCOL: a route set by a management tool, as ``route add`` / ``netsh`` do.
MIB_IPPROTO_NETMGMT = 3
# NL_ROUTER_DISCOVERY_BEHAVIOR
ROUTER_DISCOVERY_DISABLED = 0
# MIB_NOTIFICATION_TYPE
MIB_PARAMETER_NOTIFICATION, MIB_ADD_INSTANCE, MIB_DELETE_INSTANCE, MIB_INITIAL_NOTIFICATION = 0, 1, 2, 3

_ABSENT = frozenset({ERROR_NOT_FOUND, ERROR_FILE_NOT_FOUND})
"""What a removal answers when the entry, or its interface, is not there."""
_UNREACHABLE = frozenset({ERROR_NETWORK_UNREACHABLE, ERROR_HOST_UNREACHABLE, ERROR_NOT_FOUND})
"""What GetBestRoute2 answers when there is no route to the destination."""


class SOCKADDR_IN(ctypes.Structure):
    _fields_ = (
        ("sin_family", USHORT),
        ("sin_port", USHORT),
        ("sin_addr", ctypes.c_uint8 * 4),
        ("sin_zero", ctypes.c_uint8 * 8),
    )


class SOCKADDR_IN6(ctypes.Structure):
    _fields_ = (
        ("sin6_family", USHORT),
        ("sin6_port", USHORT),
        ("sin6_flowinfo", ULONG),
        ("sin6_addr", ctypes.c_uint8 * 16),
        ("sin6_scope_id", ULONG),
    )


class SOCKADDR_INET(ctypes.Union):
    _fields_ = (("Ipv4", SOCKADDR_IN), ("Ipv6", SOCKADDR_IN6), ("si_family", USHORT))


class NET_LUID(ctypes.Structure):
    _fields_ = (("Value", ULONG64),)


class IP_ADDRESS_PREFIX(ctypes.Structure):
    _fields_ = (("Prefix", SOCKADDR_INET), ("PrefixLength", UINT8))


class MIB_UNICASTIPADDRESS_ROW(ctypes.Structure):
    _fields_ = (
        ("Address", SOCKADDR_INET),
        ("InterfaceLuid", NET_LUID),
        ("InterfaceIndex", NET_IFINDEX),
        ("PrefixOrigin", ctypes.c_int),
        ("SuffixOrigin", ctypes.c_int),
        ("ValidLifetime", ULONG),
        ("PreferredLifetime", ULONG),
        ("OnLinkPrefixLength", UINT8),
        ("SkipAsSource", BOOLEAN),
        ("DadState", ctypes.c_int),
        ("ScopeId", ULONG),
        ("CreationTimeStamp", LARGE_INTEGER),
    )


class MIB_IPFORWARD_ROW2(ctypes.Structure):
    _fields_ = (
        ("InterfaceLuid", NET_LUID),
        ("InterfaceIndex", NET_IFINDEX),
        ("DestinationPrefix", IP_ADDRESS_PREFIX),
        ("NextHop", SOCKADDR_INET),
        ("SitePrefixLength", UINT8),
        ("ValidLifetime", ULONG),
        ("PreferredLifetime", ULONG),
        ("Metric", ULONG),
        ("Protocol", ctypes.c_int),
        ("Loopback", BOOLEAN),
        ("AutoconfigureAddress", BOOLEAN),
        ("Publish", BOOLEAN),
        ("Immortal", BOOLEAN),
        ("Age", ULONG),
        ("Origin", ctypes.c_int),
    )


class MIB_UNICASTIPADDRESS_TABLE(ctypes.Structure):
    _fields_ = (("NumEntries", ULONG), ("Table", MIB_UNICASTIPADDRESS_ROW * 1))


class MIB_IPINTERFACE_ROW(ctypes.Structure):
    _fields_ = (
        ("Family", USHORT),
        ("InterfaceLuid", NET_LUID),
        ("InterfaceIndex", NET_IFINDEX),
        ("MaxReassemblySize", ULONG),
        ("InterfaceIdentifier", ULONG64),
        ("MinRouterAdvertisementInterval", ULONG),
        ("MaxRouterAdvertisementInterval", ULONG),
        ("AdvertisingEnabled", BOOLEAN),
        ("ForwardingEnabled", BOOLEAN),
        ("WeakHostSend", BOOLEAN),
        ("WeakHostReceive", BOOLEAN),
        ("UseAutomaticMetric", BOOLEAN),
        ("UseNeighborUnreachabilityDetection", BOOLEAN),
        ("ManagedAddressConfigurationSupported", BOOLEAN),
        ("OtherStatefulConfigurationSupported", BOOLEAN),
        ("AdvertiseDefaultRoute", BOOLEAN),
        ("RouterDiscoveryBehavior", ctypes.c_int),
        ("DadTransmits", ULONG),
        ("BaseReachableTime", ULONG),
        ("RetransmitTime", ULONG),
        ("PathMtuDiscoveryTimeout", ULONG),
        ("LinkLocalAddressBehavior", ctypes.c_int),
        ("LinkLocalAddressTimeout", ULONG),
        ("ZoneIndices", ULONG * SCOPE_LEVEL_COUNT),
        ("SitePrefixLength", ULONG),
        ("Metric", ULONG),
        ("NlMtu", ULONG),
        ("Connected", BOOLEAN),
        ("SupportsWakeUpPatterns", BOOLEAN),
        ("SupportsNeighborDiscovery", BOOLEAN),
        ("SupportsRouterDiscovery", BOOLEAN),
        ("ReachableTime", ULONG),
        ("TransmitOffload", UINT8),
        ("ReceiveOffload", UINT8),
        ("DisableDefaultRoutes", BOOLEAN),
    )


def sockaddr_inet(address: IPv4Address | IPv6Address) -> SOCKADDR_INET:
    value = SOCKADDR_INET()
    if isinstance(address, IPv4Address):
        value.Ipv4.sin_family = AF_INET
        value.Ipv4.sin_addr[:] = address.packed
    else:
        value.Ipv6.sin6_family = AF_INET6
        value.Ipv6.sin6_addr[:] = address.packed
    return value


def _family(address: IPv4Address | IPv6Address) -> int:
    return AF_INET if isinstance(address, IPv4Address) else AF_INET6


def sockaddr_address(value: SOCKADDR_INET) -> IPv4Address | IPv6Address | None:
    """The address in a SOCKADDR_INET, ``None`` for another family (AF_UNSPEC: no address)."""
    if value.si_family == AF_INET:
        return IPv4Address(bytes(value.Ipv4.sin_addr))
    if value.si_family == AF_INET6:
        return IPv6Address(bytes(value.Ipv6.sin6_addr))
    return None


@dataclass(frozen=True, slots=True)
class BestRoute:
    """GetBestRoute2's answer: the source Windows would use, the egress interface, the next hop."""

    source: IPv4Address | IPv6Address | None
    luid: int
    next_hop: IPv4Address | IPv6Address | None
    """``None`` when the destination is on-link (the row's NextHop is the unspecified address)."""
    metric: int = 0
    """The route's own metric (Windows adds the interface's metric to it when it chooses)."""


@dataclass(slots=True)
class Subscription:
    handle: int
    callback: Any
    """The C callback object: it must outlive the registration, or Windows calls freed memory."""


LuidCallback = Callable[[int | None], None]


INTERFACE_WAIT = 5.0
"""How long a new adapter's IP interface may take to appear (seconds)."""
_POLL = 0.05


class IpHelper:
    """Typed wrappers over iphlpapi.dll; synchronous and sometimes waiting (run them off the loop)."""

    def __init__(self, api: WinApi, *, interface_wait: float = INTERFACE_WAIT) -> None:
        self._api = api
        self.interface_wait = interface_wait
        """Windows binds the IPv4/IPv6 stacks to a new adapter asynchronously: right after
        WintunCreateAdapter its IP interface may not exist yet (ERROR_NOT_FOUND).  Calls that need it
        wait this long for it before concluding that the protocol is disabled on the adapter."""
        d = api.iphlpapi
        p = ctypes.POINTER
        unicast, forward, interface = p(MIB_UNICASTIPADDRESS_ROW), p(MIB_IPFORWARD_ROW2), p(MIB_IPINTERFACE_ROW)
        self._init_unicast = bind(d, "InitializeUnicastIpAddressEntry", None, unicast)
        self._create_unicast = bind(d, "CreateUnicastIpAddressEntry", ULONG, unicast)
        self._set_unicast = bind(d, "SetUnicastIpAddressEntry", ULONG, unicast)
        self._delete_unicast = bind(d, "DeleteUnicastIpAddressEntry", ULONG, unicast)
        self._init_forward = bind(d, "InitializeIpForwardEntry", None, forward)
        self._create_forward = bind(d, "CreateIpForwardEntry2", ULONG, forward)
        self._set_forward = bind(d, "SetIpForwardEntry2", ULONG, forward)
        self._delete_forward = bind(d, "DeleteIpForwardEntry2", ULONG, forward)
        self._init_interface = bind(d, "InitializeIpInterfaceEntry", None, interface)
        self._get_interface = bind(d, "GetIpInterfaceEntry", ULONG, interface)
        self._set_interface = bind(d, "SetIpInterfaceEntry", ULONG, interface)
        self._best_route = bind(
            d,
            "GetBestRoute2",
            ULONG,
            p(NET_LUID),
            NET_IFINDEX,
            p(SOCKADDR_INET),
            p(SOCKADDR_INET),
            ULONG,
            forward,
            p(SOCKADDR_INET),
        )
        self._unicast_table = bind(d, "GetUnicastIpAddressTable", ULONG, USHORT, p(ctypes.c_void_p))
        self._free_table = bind(d, "FreeMibTable", None, ctypes.c_void_p)
        self._luid_to_index = bind(d, "ConvertInterfaceLuidToIndex", ULONG, p(NET_LUID), p(NET_IFINDEX))
        self._alias_to_luid = bind(d, "ConvertInterfaceAliasToLuid", ULONG, ctypes.c_wchar_p, p(NET_LUID))
        self._luid_to_alias = bind(
            d, "ConvertInterfaceLuidToAlias", ULONG, p(NET_LUID), ctypes.c_wchar_p, ctypes.c_size_t
        )
        self.unicast_callback_type = api.functype(None, ctypes.c_void_p, unicast, ctypes.c_int)
        self.route_callback_type = api.functype(None, ctypes.c_void_p, forward, ctypes.c_int)
        self._notify_unicast = bind(
            d,
            "NotifyUnicastIpAddressChange",
            ULONG,
            USHORT,
            self.unicast_callback_type,
            ctypes.c_void_p,
            BOOLEAN,
            p(HANDLE),
        )
        self._notify_route = bind(
            d, "NotifyRouteChange2", ULONG, USHORT, self.route_callback_type, ctypes.c_void_p, BOOLEAN, p(HANDLE)
        )
        self._cancel = bind(d, "CancelMibChangeNotify2", ULONG, HANDLE)

    def _fail(self, what: str, code: int, hint: str | None = None) -> WinError:
        return self._api.error(what, code, hint)

    # Names -----------------------------------------------------------------------------------------------

    def alias_to_luid(self, alias: str) -> int | None:
        luid = NET_LUID()
        if self._alias_to_luid(alias, ctypes.byref(luid)) != 0:
            return None
        return int(luid.Value)

    def luid_to_alias(self, luid: int) -> str | None:
        buffer = ctypes.create_unicode_buffer(IF_MAX_STRING_SIZE + 1)
        if self._luid_to_alias(ctypes.byref(NET_LUID(luid)), buffer, len(buffer)) != 0:
            return None
        return buffer.value

    def luid_to_index(self, luid: int) -> int | None:
        """The interface's index now (what socket options such as IP_UNICAST_IF take); ``None`` if it is gone."""
        index = NET_IFINDEX()
        if self._luid_to_index(ctypes.byref(NET_LUID(luid)), ctypes.byref(index)) != 0:
            return None
        return int(index.value)

    # Addresses -------------------------------------------------------------------------------------------

    def _unicast_row(self, luid: int, address: IPv4Address | IPv6Address, prefixlen: int) -> MIB_UNICASTIPADDRESS_ROW:
        row = MIB_UNICASTIPADDRESS_ROW()
        self._init_unicast(ctypes.byref(row))
        row.InterfaceLuid.Value = luid
        row.Address = sockaddr_inet(address)
        row.OnLinkPrefixLength = prefixlen
        row.PrefixOrigin = IP_PREFIX_ORIGIN_MANUAL
        row.SuffixOrigin = IP_SUFFIX_ORIGIN_MANUAL
        # Usable at once, as Linux's NODAD: a tentative address would drop what is sent right after.
        row.DadState = IP_DAD_STATE_PREFERRED
        return row

    def replace_address(self, luid: int, address: IPv4Address | IPv6Address, prefixlen: int) -> None:
        row = self._unicast_row(luid, address, prefixlen)
        code = self._create_unicast(ctypes.byref(row))
        if code == ERROR_NOT_FOUND and self.wait_for_interface(luid, _family(address)):
            code = self._create_unicast(ctypes.byref(row))
        if code == ERROR_OBJECT_ALREADY_EXISTS:
            code = self._set_unicast(ctypes.byref(row))
        if code:
            raise self._fail(f"add address {address}/{prefixlen}", code)

    def remove_address(self, luid: int, address: IPv4Address | IPv6Address, prefixlen: int) -> bool:
        """False when there was nothing to remove."""
        row = self._unicast_row(luid, address, prefixlen)
        code = self._delete_unicast(ctypes.byref(row))
        if code in _ABSENT:
            return False
        if code:
            raise self._fail(f"remove address {address}/{prefixlen}", code)
        return True

    # Routes ----------------------------------------------------------------------------------------------

    def _forward_row(self, luid: int, network: IPv6Network, metric: int) -> MIB_IPFORWARD_ROW2:
        row = MIB_IPFORWARD_ROW2()
        self._init_forward(ctypes.byref(row))
        row.InterfaceLuid.Value = luid
        row.DestinationPrefix.Prefix = sockaddr_inet(network.network_address)
        row.DestinationPrefix.PrefixLength = network.prefixlen
        # On-link: the unspecified next hop, but of the route's own family, or Windows rejects the row.
        row.NextHop = sockaddr_inet(IPv6Address(0))
        row.Metric = metric
        row.Protocol = MIB_IPPROTO_NETMGMT
        return row

    def replace_route(self, luid: int, network: IPv6Network, metric: int) -> None:
        """The metric is not part of a Windows route's key: replacing with another metric updates it."""
        row = self._forward_row(luid, network, metric)
        code = self._create_forward(ctypes.byref(row))
        if code == ERROR_NOT_FOUND and self.wait_for_interface(luid, AF_INET6):
            code = self._create_forward(ctypes.byref(row))
        if code == ERROR_OBJECT_ALREADY_EXISTS:
            code = self._set_forward(ctypes.byref(row))
        if code:
            raise self._fail(f"add route {network} metric {metric}", code)

    def remove_route(self, luid: int, network: IPv6Network, metric: int) -> bool:
        row = self._forward_row(luid, network, metric)
        code = self._delete_forward(ctypes.byref(row))
        if code in _ABSENT:
            return False
        if code:
            raise self._fail(f"remove route {network}", code)
        return True

    # Interfaces ------------------------------------------------------------------------------------------

    def _read_interface(self, luid: int, family: int) -> tuple[int, MIB_IPINTERFACE_ROW]:
        row = MIB_IPINTERFACE_ROW()
        self._init_interface(ctypes.byref(row))
        row.Family = family
        row.InterfaceLuid.Value = luid
        return int(self._get_interface(ctypes.byref(row))), row

    def wait_for_interface(self, luid: int, family: int) -> bool:
        """Whether the adapter's IP interface of ``family`` exists, waiting up to ``interface_wait``."""
        deadline = time.monotonic() + self.interface_wait
        while True:
            code, _row = self._read_interface(luid, family)
            if code != ERROR_NOT_FOUND:
                return code == 0
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)

    def get_interface(self, luid: int, family: int) -> MIB_IPINTERFACE_ROW:
        code, row = self._read_interface(luid, family)
        if code == ERROR_NOT_FOUND and self.wait_for_interface(luid, family):
            code, row = self._read_interface(luid, family)
        if code:
            what = "IPv6" if family == AF_INET6 else "IPv4"
            if code == ERROR_NOT_FOUND and family == AF_INET6:
                raise self._fail(
                    "IPv6 is disabled on the tunnel adapter",
                    code,
                    hint="enable 'Internet Protocol Version 6 (TCP/IPv6)' in the adapter's properties, "
                    "and check that HKLM\\SYSTEM\\CurrentControlSet\\Services\\Tcpip6\\Parameters\\"
                    "DisabledComponents does not disable IPv6",
                )
            raise self._fail(f"read the {what} settings of the tunnel adapter", code)
        return row

    def set_interface(self, row: MIB_IPINTERFACE_ROW) -> None:
        if row.Family == AF_INET:
            # Documented: SetIpInterfaceEntry rejects an IPv4 row whose SitePrefixLength is not 0.
            row.SitePrefixLength = 0
        code = self._set_interface(ctypes.byref(row))
        if code:
            raise self._fail("change the tunnel adapter's settings", code)

    def set_mtu(self, luid: int, family: int, mtu: int) -> None:
        row = self.get_interface(luid, family)
        row.NlMtu = mtu
        self.set_interface(row)

    def configure_tunnel(self, luid: int) -> None:
        """A point-to-point tunnel: no router discovery, no duplicate address detection, no DHCPv6."""
        row = self.get_interface(luid, AF_INET6)
        row.RouterDiscoveryBehavior = ROUTER_DISCOVERY_DISABLED
        row.DadTransmits = 0
        row.ManagedAddressConfigurationSupported = 0
        row.OtherStatefulConfigurationSupported = 0
        self.set_interface(row)

    # Lookups and notifications ---------------------------------------------------------------------------

    def best_route(self, destination: IPv4Address | IPv6Address, *, luid: int | None = None) -> BestRoute | None:
        """The route Windows would use toward ``destination`` now; ``None`` when it has none.

        ``luid``: the route through that interface only, as a socket sending through it (IP_UNICAST_IF) takes
        -- GetBestRoute2's ``InterfaceLuid``, "the network interface associated with an IP address" -- and
        ``None`` when it has none (an answer through another interface is not one)."""
        target = sockaddr_inet(destination)
        row = MIB_IPFORWARD_ROW2()
        source = SOCKADDR_INET()
        interface = ctypes.byref(NET_LUID(luid)) if luid is not None else None
        code = self._best_route(interface, 0, None, ctypes.byref(target), 0, ctypes.byref(row), ctypes.byref(source))
        if code in _UNREACHABLE:
            return None
        if code:
            raise self._fail(f"route lookup toward {destination}", code)
        if luid is not None and int(row.InterfaceLuid.Value) != luid:
            return None
        next_hop = sockaddr_address(row.NextHop)
        return BestRoute(
            source=sockaddr_address(source),
            luid=int(row.InterfaceLuid.Value),
            next_hop=None if next_hop is None or next_hop.packed == bytes(len(next_hop.packed)) else next_hop,
            metric=int(row.Metric),
        )

    def unicast_addresses(self, family: int) -> list[tuple[int, IPv4Address | IPv6Address]]:
        """(interface LUID, address) of every unicast address of ``family`` (GetUnicastIpAddressTable)."""
        table = ctypes.c_void_p()
        code = self._unicast_table(family, ctypes.byref(table))
        if code == ERROR_NOT_FOUND:
            return []
        if code:
            raise self._fail("list the unicast addresses", code)
        try:
            base = int(table.value or 0)
            count = int(ULONG.from_address(base).value)
            rows = (MIB_UNICASTIPADDRESS_ROW * count).from_address(base + MIB_UNICASTIPADDRESS_TABLE.Table.offset)
            found = []
            for row in rows:
                address = sockaddr_address(row.Address)
                if address is not None:
                    found.append((int(row.InterfaceLuid.Value), address))
            return found
        finally:
            # "FreeMibTable ... frees the buffer": the table belongs to the DLL's allocator.
            self._free_table(table)

    def subscribe_addresses(self, family: int, on_change: LuidCallback) -> Subscription:
        """Call ``on_change(interface LUID)`` on an OS thread after every unicast address change."""

        def trampoline(_context: Any, row: Any, _kind: int) -> None:
            # The row lives only during the call: take what is needed now, never keep the pointer.
            try:
                on_change(int(row.contents.InterfaceLuid.Value) if row else None)
            except Exception:  # unwinding into the OS thread would lose it silently at best
                log.exception("address change callback failed")

        callback = self.unicast_callback_type(trampoline)
        return self._subscribe("NotifyUnicastIpAddressChange", self._notify_unicast, family, callback)

    def subscribe_routes(self, family: int, on_change: LuidCallback) -> Subscription:
        """Call ``on_change(interface LUID)`` on an OS thread after every route change."""

        def trampoline(_context: Any, row: Any, _kind: int) -> None:
            try:
                on_change(int(row.contents.InterfaceLuid.Value) if row else None)
            except Exception:
                log.exception("route change callback failed")

        callback = self.route_callback_type(trampoline)
        return self._subscribe("NotifyRouteChange2", self._notify_route, family, callback)

    def _subscribe(self, what: str, function: Callable[..., Any], family: int, callback: Any) -> Subscription:
        handle = HANDLE()
        code = function(family, callback, None, False, ctypes.byref(handle))
        if code:
            raise self._fail(what, code)
        return Subscription(int(handle.value or 0), callback)

    def cancel(self, subscription: Subscription) -> None:
        """Blocks until callbacks in progress have returned; never call it from inside a callback."""
        code = self._cancel(subscription.handle)
        if code:
            log.warning("CancelMibChangeNotify2 failed (error %d)", code)
        subscription.handle = 0
