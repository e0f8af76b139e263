"""An emulated iphlpapi.dll whose state is the Linux network stack of the namespace it runs in.

Every change is applied to the real interfaces through rtnetlink (pyroute2), and the change notifications
are raised from the kernel's own rtnetlink events, so the backend sees what Windows would show it: its own
changes, and the network moving under it (a move between NATs, an address flushed, a link going down).

Microsoft's documentation followed (netioapi.h):

* ``CreateUnicastIpAddressEntry``: "If the function fails ... ERROR_NOT_FOUND: The specified interface
  could not be found"; "ERROR_OBJECT_ALREADY_EXISTS: The object already exists. This error is returned if
  the Address member ... is a duplicate of an existing unicast IP address on the interface".
  ``DeleteUnicastIpAddressEntry`` answers ERROR_NOT_FOUND for an address that is not there.
* ``CreateIpForwardEntry2``: "ERROR_OBJECT_ALREADY_EXISTS: The object already exists. This error is
  returned if the DestinationPrefix member ... is a duplicate of an existing route"; a route is identified
  by its interface, destination prefix and next hop: the metric is not part of the key, so
  ``SetIpForwardEntry2`` changes it in place (here: the new route goes in before the old one comes out,
  because Linux keys IPv6 routes by metric too and a gap would drop traffic).
* ``SetIpInterfaceEntry``: "the SitePrefixLength member ... must be set to 0" for IPv4 (else
  ERROR_INVALID_PARAMETER); ``NlMtu`` is applied to the Linux link.
* ``GetBestRoute2``: "retrieves the IP route entry and source address for the best route to the specified
  destination IP address" (here: the kernel's ``route get``); no route answers ERROR_NETWORK_UNREACHABLE.
  With an ``InterfaceLuid``, "the network interface associated with an IP address", the route through that
  interface only (an ``oif``-scoped ``route get``).
* ``GetUnicastIpAddressTable`` / ``FreeMibTable`` / ``ConvertInterfaceLuidToIndex``: the namespace's addresses
  and indexes (see :class:`~m6t.lab.emulation.windows_abi.IpHelperBase`).
* ``NotifyUnicastIpAddressChange`` / ``NotifyRouteChange2`` / ``NotifyIpInterfaceChange``: "The callback
  function ... is called when a notification occurs", on a thread of the system's pool, never the caller's
  (one thread per registration here), with the changed row, freed after the call.

What it cannot model: Windows adds the interface metric to a route's metric when choosing (Linux uses the
route's own), Windows keeps an NlMtu per address family (Linux has one link MTU), DAD states (an address is
added with NODAD when the row says IpDadStatePreferred or the interface's DadTransmits is 0, otherwise it is
tentative for Linux's DAD, not Windows'), and router discovery / managed-configuration flags are only
stored and reported back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
)
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from m6t.lab.emulation.windows_abi import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    DWORD,
    ERROR_ACCESS_DENIED,
    ERROR_FILE_NOT_FOUND,
    ERROR_INVALID_PARAMETER,
    ERROR_NETWORK_UNREACHABLE,
    ERROR_NOT_ENOUGH_MEMORY,
    ERROR_NOT_FOUND,
    ERROR_OBJECT_ALREADY_EXISTS,
    ERROR_SUCCESS,
    FORWARD_SIZE,
    IF_TYPE_ETHERNET_CSMACD,
    IF_TYPE_PROP_VIRTUAL,
    IF_TYPE_SOFTWARE_LOOPBACK,
    IP_DAD_STATE_PREFERRED,
    IPIF_SIZE,
    MIB_ADD_INSTANCE,
    MIB_DELETE_INSTANCE,
    MIB_PARAMETER_NOTIFICATION,
    SOCKADDR_INET_SIZE,
    UNICAST_SIZE,
    VP,
    Host,
    IpHelperBase,
    RouteEntry,
    decode_interface,
    decode_route,
    decode_unicast,
    default_interface_params,
    export,
    interface_row,
    luid_index,
    luid_of,
    pack_sockaddr,
    route_row,
    unicast_row,
    unpack_sockaddr,
)

log = logging.getLogger(__name__)

IFA_F_NODAD = 0x02
AF_NETLINK, NETLINK_ROUTE = 16, 0
"""<linux/socket.h>, <linux/netlink.h>: named here because the lab type-checks on every platform."""
MAIN_TABLE = 254
RTM_F_FIB_MATCH = 0x2000
"""<linux/rtnetlink.h>: answer a route look-up with the FIB entry that matched (EHOSTUNREACH: none did)."""
INTERFACE_METRIC = 25
"""What Windows' automatic metric gives a fast wired interface; reported, never used to choose routes here."""
MAX_MTU = 0xFFFF
_LINUX_FAMILY = {AF_INET: socket.AF_INET, AF_INET6: socket.AF_INET6}
_WINDOWS_FAMILY = {socket.AF_INET: AF_INET, socket.AF_INET6: AF_INET6}
_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE


class NetlinkIpHelper(IpHelperBase):
    def __init__(self, windows: Host, *, admin: bool) -> None:
        super().__init__(windows)
        self.admin = admin
        self.netlink = NetlinkThread()
        self._params: dict[tuple[int, int], dict[str, int]] = {}
        self._if_types: dict[int, int] = {}
        self._events: _EventSource | None = None
        self.calls: list[str] = []

    def _netlink(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.netlink.call(method, *args, **kwargs)

    # Interfaces by LUID ----------------------------------------------------------------------------------

    def luid(self, ifindex: int) -> int:
        if_type = self._if_types.get(ifindex)
        if if_type is None:
            if_type = self._if_type(ifindex)
            self._if_types[ifindex] = if_type
        return luid_of(if_type, ifindex)

    def _if_type(self, ifindex: int) -> int:
        try:
            [link] = self._netlink("get_links", ifindex)
        except (NetlinkError, ValueError):
            return IF_TYPE_ETHERNET_CSMACD
        if link.get("IFLA_IFNAME") == "lo":
            return IF_TYPE_SOFTWARE_LOOPBACK
        info = link.get("IFLA_LINKINFO")
        kind = info.get("IFLA_INFO_KIND") if info is not None else None
        return IF_TYPE_PROP_VIRTUAL if kind == "tun" else IF_TYPE_ETHERNET_CSMACD

    def _ifindex(self, luid: int) -> int | None:
        """The Linux interface behind a LUID, ``None`` when it no longer exists."""
        index = luid_index(luid)
        try:
            socket.if_indextoname(index)
        except OSError:
            return None
        return index if self.luid(index) == luid else None

    def _link_mtu(self, ifindex: int) -> int:
        [link] = self._netlink("get_links", ifindex)
        return int(link.get("IFLA_MTU"))

    def params(self, ifindex: int, family: int) -> dict[str, int]:
        key = (ifindex, family)
        if key not in self._params:
            self._params[key] = default_interface_params(family, 0)
        params = self._params[key]
        params["NlMtu"] = self._link_mtu(ifindex)
        return params

    def interface_index(self, luid: int) -> int | None:
        return self._ifindex(luid)

    def unicast_rows(self, family: int) -> list[bytes]:
        rows = []
        for linux_family, windows_family in _WINDOWS_FAMILY.items():
            if family not in (AF_UNSPEC, windows_family):
                continue
            for msg in self._netlink("get_addr", family=linux_family):
                raw = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                if raw:
                    index = int(msg["index"])
                    rows.append(unicast_row(self.luid(index), ip_address(raw), int(msg["prefixlen"]), index=index))
        return rows

    # Names -----------------------------------------------------------------------------------------------

    @export(DWORD, VP, VP)
    def ConvertInterfaceAliasToLuid(self, alias_ptr: int | None, luid_ptr: int | None) -> int:
        if alias_ptr is None or luid_ptr is None:
            return ERROR_INVALID_PARAMETER
        try:
            index = socket.if_nametoindex(ctypes.wstring_at(alias_ptr))
        except OSError:
            return ERROR_INVALID_PARAMETER  # what Windows answers for an unknown alias
        ctypes.memmove(luid_ptr, struct.pack("<Q", self.luid(index)), 8)
        return ERROR_SUCCESS

    @export(DWORD, VP, VP, ctypes.c_size_t)
    def ConvertInterfaceLuidToAlias(self, luid_ptr: int | None, buffer: int | None, length: int) -> int:
        if luid_ptr is None or buffer is None:
            return ERROR_INVALID_PARAMETER
        (luid,) = struct.unpack("<Q", ctypes.string_at(luid_ptr, 8))
        index = self._ifindex(luid)
        if index is None:
            return ERROR_FILE_NOT_FOUND
        try:
            alias = socket.if_indextoname(index)
        except OSError:
            return ERROR_FILE_NOT_FOUND
        if length < len(alias) + 1:
            return ERROR_NOT_ENOUGH_MEMORY
        text = ctypes.create_unicode_buffer(alias, len(alias) + 1)
        ctypes.memmove(buffer, text, ctypes.sizeof(text))
        return ERROR_SUCCESS

    # Unicast addresses -----------------------------------------------------------------------------------

    @export(DWORD, VP)
    def CreateUnicastIpAddressEntry(self, row: int | None) -> int:
        return self._unicast_change("create", row)

    @export(DWORD, VP)
    def SetUnicastIpAddressEntry(self, row: int | None) -> int:
        return self._unicast_change("set", row)

    @export(DWORD, VP)
    def DeleteUnicastIpAddressEntry(self, row: int | None) -> int:
        return self._unicast_change("delete", row)

    def _unicast_change(self, action: str, row: int | None) -> int:
        if row is None:
            return ERROR_INVALID_PARAMETER
        if not self.admin:
            return ERROR_ACCESS_DENIED
        self.calls.append(f"{action}_unicast")
        entry = decode_unicast(ctypes.string_at(row, UNICAST_SIZE))
        if entry is None:
            return ERROR_INVALID_PARAMETER
        index = self._ifindex(entry.luid)
        if index is None:
            return ERROR_NOT_FOUND
        family = socket.AF_INET6 if entry.address.version == 6 else socket.AF_INET
        present = any(
            msg.get("IFA_ADDRESS") == str(entry.address)
            for msg in self._netlink("get_addr", family=family, index=index)
        )
        spec = {"index": index, "address": str(entry.address), "prefixlen": entry.prefixlen}
        try:
            if action == "delete":
                if not present:
                    return ERROR_NOT_FOUND
                self._netlink("addr", "del", **spec)
                return ERROR_SUCCESS
            if action == "create" and present:
                return ERROR_OBJECT_ALREADY_EXISTS
            if action == "set" and not present:
                return ERROR_NOT_FOUND
            nodad = entry.address.version == 6 and (
                entry.dad_state == IP_DAD_STATE_PREFERRED or self.params(index, AF_INET6)["DadTransmits"] == 0
            )
            self._netlink("addr", "replace", flags=IFA_F_NODAD if nodad else 0, **spec)
        except NetlinkError as exc:
            return _win32_error(exc)
        return ERROR_SUCCESS

    # Routes ----------------------------------------------------------------------------------------------

    @export(DWORD, VP)
    def CreateIpForwardEntry2(self, row: int | None) -> int:
        return self._route_change("create", row)

    @export(DWORD, VP)
    def SetIpForwardEntry2(self, row: int | None) -> int:
        return self._route_change("set", row)

    @export(DWORD, VP)
    def DeleteIpForwardEntry2(self, row: int | None) -> int:
        return self._route_change("delete", row)

    def _same_routes(self, index: int, entry: RouteEntry) -> list[int]:
        """The metrics of the Linux routes that are this Windows route (interface, prefix, next hop)."""
        family = socket.AF_INET6 if entry.network.version == 6 else socket.AF_INET
        hop = None if entry.next_hop.packed == bytes(len(entry.next_hop.packed)) else str(entry.next_hop)
        metrics = []
        for msg in self._netlink("get_routes", family=family, table=MAIN_TABLE):
            if msg.get("RTA_OIF") != index or msg["dst_len"] != entry.network.prefixlen:
                continue
            dst = msg.get("RTA_DST") or str(entry.network.network_address if msg["dst_len"] == 0 else "")
            if dst != str(entry.network.network_address) or msg.get("RTA_GATEWAY") != hop:
                continue
            metrics.append(int(msg.get("RTA_PRIORITY") or 0))
        return metrics

    def _route_change(self, action: str, row: int | None) -> int:
        if row is None:
            return ERROR_INVALID_PARAMETER
        if not self.admin:
            return ERROR_ACCESS_DENIED
        self.calls.append(f"{action}_route")
        entry = decode_route(ctypes.string_at(row, FORWARD_SIZE))
        if entry is None:
            return ERROR_INVALID_PARAMETER
        index = self._ifindex(entry.luid)
        if index is None:
            return ERROR_NOT_FOUND
        existing = self._same_routes(index, entry)
        spec: dict[str, Any] = {
            "family": socket.AF_INET6 if entry.network.version == 6 else socket.AF_INET,
            "dst": str(entry.network.network_address),
            "dst_len": entry.network.prefixlen,
            "oif": index,
            "table": MAIN_TABLE,
        }
        if entry.next_hop.packed != bytes(len(entry.next_hop.packed)):
            spec["gateway"] = str(entry.next_hop)
        try:
            if action == "create" and existing:
                return ERROR_OBJECT_ALREADY_EXISTS
            if action in ("set", "delete") and not existing:
                return ERROR_NOT_FOUND
            if action != "delete" and entry.metric not in existing:
                self._netlink("route", "add", priority=entry.metric, **spec)
            for metric in existing:
                if action == "delete" or metric != entry.metric:
                    self._netlink("route", "del", priority=metric, **spec)
        except NetlinkError as exc:
            return _win32_error(exc)
        return ERROR_SUCCESS

    @export(DWORD, VP, DWORD, VP, VP, DWORD, VP, VP)
    def GetBestRoute2(
        self,
        luid_ptr: int | None,
        _index: int,
        source_ptr: int | None,
        destination_ptr: int | None,
        _options: int,
        row_ptr: int | None,
        best_source_ptr: int | None,
    ) -> int:
        if destination_ptr is None or row_ptr is None or best_source_ptr is None:
            return ERROR_INVALID_PARAMETER
        self.windows.check(source_ptr is None, "GetBestRoute2: no source constraint expected")
        _family, destination = unpack_sockaddr(ctypes.string_at(destination_ptr, SOCKADDR_INET_SIZE))
        if destination is None:
            return ERROR_INVALID_PARAMETER
        scope: dict[str, int] = {}
        if luid_ptr is not None:
            # Constrained to one interface: Linux's oif-scoped look-up, which without a route through the
            # interface would assume the destination on-link; Windows has no route then, so the route itself
            # is asked for first (RTM_F_FIB_MATCH), and its metric with it.
            (luid,) = struct.unpack("<Q", ctypes.string_at(luid_ptr, 8))
            index = self._ifindex(luid)
            if index is None:
                return ERROR_NOT_FOUND
            scope["oif"] = index
        try:
            metric = 0
            if scope:
                [matched] = self._netlink("route", "get", dst=str(destination), flags=RTM_F_FIB_MATCH, **scope)[:1]
                metric = int(matched.get("RTA_PRIORITY") or 0)
            [answer] = self._netlink("route", "get", dst=str(destination), **scope)[:1]
        except NetlinkError as exc:
            return (
                ERROR_NETWORK_UNREACHABLE if exc.code in (errno.ENETUNREACH, errno.EHOSTUNREACH) else _win32_error(exc)
            )
        except ValueError:
            return ERROR_NETWORK_UNREACHABLE
        oif = answer.get("RTA_OIF")
        if not oif:
            return ERROR_NETWORK_UNREACHABLE
        gateway = answer.get("RTA_GATEWAY")
        prefsrc = answer.get("RTA_PREFSRC")
        unspecified = IPv4Address(0) if destination.version == 4 else IPv6Address(0)
        network = IPv4Network((destination, 32)) if destination.version == 4 else IPv6Network((destination, 128))
        entry = RouteEntry(
            self.luid(int(oif)),
            network,
            ip_address(gateway) if gateway else unspecified,
            metric or int(answer.get("RTA_PRIORITY") or 0),
            3,
        )
        ctypes.memmove(row_ptr, route_row(entry, int(oif)), FORWARD_SIZE)
        ctypes.memmove(best_source_ptr, pack_sockaddr(ip_address(prefsrc) if prefsrc else None), SOCKADDR_INET_SIZE)
        return ERROR_SUCCESS

    # Interfaces ------------------------------------------------------------------------------------------

    @export(DWORD, VP)
    def GetIpInterfaceEntry(self, row: int | None) -> int:
        if row is None:
            return ERROR_INVALID_PARAMETER
        wanted = decode_interface(ctypes.string_at(row, IPIF_SIZE))
        if wanted.family not in (AF_INET, AF_INET6):
            return ERROR_INVALID_PARAMETER
        index = self._ifindex(wanted.luid)
        if index is None:
            return ERROR_NOT_FOUND
        data = interface_row(wanted.family, wanted.luid, index, INTERFACE_METRIC, self.params(index, wanted.family))
        ctypes.memmove(row, data, IPIF_SIZE)
        return ERROR_SUCCESS

    @export(DWORD, VP)
    def SetIpInterfaceEntry(self, row: int | None) -> int:
        if row is None:
            return ERROR_INVALID_PARAMETER
        if not self.admin:
            return ERROR_ACCESS_DENIED
        wanted = decode_interface(ctypes.string_at(row, IPIF_SIZE))
        self.calls.append("set_interface")
        index = self._ifindex(wanted.luid)
        if index is None or wanted.family not in (AF_INET, AF_INET6):
            return ERROR_NOT_FOUND
        code = wanted.invalid(MAX_MTU)
        if code:
            return code
        params = self.params(index, wanted.family)
        mtu_before = params["NlMtu"]
        wanted.apply(params)
        if wanted.nl_mtu != mtu_before:
            try:
                self._netlink("link", "set", index=index, mtu=wanted.nl_mtu)
            except NetlinkError as exc:
                return _win32_error(exc)
        return ERROR_SUCCESS

    # Notifications from the kernel's events ------------------------------------------------------------------

    def _register(self, kind: str, family: int, callback: int | None, initial: int, handle_ptr: int | None) -> int:
        code = super()._register(kind, family, callback, initial, handle_ptr)
        if code == ERROR_SUCCESS and self._events is None:
            self._events = _EventSource(self)
        return code

    def on_netlink(self, msg: Any) -> None:
        event = msg["event"]
        if event in ("RTM_NEWADDR", "RTM_DELADDR"):
            family = _WINDOWS_FAMILY.get(msg["family"])
            address = msg.get("IFA_ADDRESS")
            if family is None or address is None:
                return
            index = int(msg["index"])
            row = unicast_row(self.luid(index), ip_address(address), int(msg["prefixlen"]), index=index)
            self.notify("address", family, row, MIB_ADD_INSTANCE if event == "RTM_NEWADDR" else MIB_DELETE_INSTANCE)
        elif event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
            family = _WINDOWS_FAMILY.get(msg["family"])
            oif = msg.get("RTA_OIF")
            if family is None or not oif or msg.get("table") != MAIN_TABLE:
                return
            unspecified = IPv4Address(0) if family == AF_INET else IPv6Address(0)
            dst = ip_address(msg.get("RTA_DST") or str(unspecified))
            gateway = msg.get("RTA_GATEWAY")
            entry = RouteEntry(
                self.luid(int(oif)),
                IPv4Network((dst, msg["dst_len"])) if family == AF_INET else IPv6Network((dst, msg["dst_len"])),
                ip_address(gateway) if gateway else unspecified,
                int(msg.get("RTA_PRIORITY") or 0),
                3,
            )
            kind = MIB_ADD_INSTANCE if event == "RTM_NEWROUTE" else MIB_DELETE_INSTANCE
            self.notify("route", family, route_row(entry, int(oif)), kind)
        elif event in ("RTM_NEWLINK", "RTM_DELLINK"):
            index = int(msg["index"])
            luid = self.luid(index)
            kind = MIB_PARAMETER_NOTIFICATION if event == "RTM_NEWLINK" else MIB_DELETE_INSTANCE
            for family in (AF_INET, AF_INET6):
                params = self._params.get((index, family)) or default_interface_params(family, 0)
                self.notify("interface", family, interface_row(family, luid, index, INTERFACE_METRIC, params), kind)
            if event == "RTM_DELLINK":
                self._if_types.pop(index, None)

    def close(self) -> None:
        self.cancel_all()
        events, self._events = self._events, None
        if events is not None:
            events.stop()
        self.netlink.close()


class NetlinkThread:
    """pyroute2's synchronous ``IPRoute`` runs an event loop of its own, which asyncio refuses inside a running
    loop (and IP Helper is called from the helper's loop thread as well as from worker threads): every
    netlink call runs on this one thread, which also serializes them."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self._ipr: Any = self._executor.submit(IPRoute).result()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._executor.submit(lambda: getattr(self._ipr, method)(*args, **kwargs)).result()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._executor.submit(self._ipr.close).result()
        self._executor.shutdown(wait=True)


class _EventSource:
    """One thread reading the kernel's rtnetlink multicast groups and turning them into notifications."""

    def __init__(self, helper: NetlinkIpHelper) -> None:
        self.helper = helper
        self.sock = socket.socket(AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, _GROUPS))
        self.stop_r, self.stop_w = os.pipe()
        self.thread = threading.Thread(target=self.run, name="netlink-events", daemon=True)
        self.thread.start()

    def run(self) -> None:
        marshal = MarshalRtnl()
        while True:
            readable, _, _ = select.select([self.sock.fileno(), self.stop_r], [], [])
            if self.stop_r in readable:
                return
            try:
                data = self.sock.recv(1 << 16)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    log.warning("netlink events overflowed; some notifications were lost")
                    continue
                return
            for msg in marshal.parse(data):
                try:
                    self.helper.on_netlink(msg)
                except Exception:
                    log.exception("cannot turn a netlink event into a notification")

    def stop(self) -> None:
        os.write(self.stop_w, b"\0")
        self.thread.join(5.0)
        self.sock.close()
        for fd in (self.stop_r, self.stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def _win32_error(exc: NetlinkError) -> int:
    return {
        errno.EEXIST: ERROR_OBJECT_ALREADY_EXISTS,
        errno.ENODEV: ERROR_NOT_FOUND,
        errno.ESRCH: ERROR_NOT_FOUND,
        errno.EADDRNOTAVAIL: ERROR_NOT_FOUND,
        errno.EPERM: ERROR_ACCESS_DENIED,
        errno.EACCES: ERROR_ACCESS_DENIED,
        errno.ENETUNREACH: ERROR_NETWORK_UNREACHABLE,
        errno.EHOSTUNREACH: ERROR_NETWORK_UNREACHABLE,
    }.get(exc.code, ERROR_INVALID_PARAMETER)
