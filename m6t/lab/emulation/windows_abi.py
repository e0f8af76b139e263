"""The Windows ABI the emulated DLLs (and the unit tests' fakes) speak: constants, documented x64 layouts,
C exports, per-thread last error, kernel32's events, and IP Helper's change notifications.

Shared by the lab's emulation (:mod:`m6t.lab.emulation.windows`) and ``tests/platform/windows_fakes.py``,
and written independently of :mod:`m6t.platform.windows`: raw memory at the offsets documented for x64
(``struct``), never the backend's ctypes classes, so a layout mistake in the backend reads or writes the
wrong bytes here as it would on Windows.

* Every exported function is a real C function pointer (``ctypes.CFUNCTYPE``) with the documented C
  prototype, pointers seen as ``void *``; the backend declares its own ``argtypes``/``restype`` on it exactly
  as on the real DLL, so each call crosses a real ctypes boundary.
* Return conventions are Windows': Wintun returns NULL and sets the thread's last error; IP Helper returns
  the error code; the last error is per thread ("The last-error code is maintained on a per-thread basis",
  GetLastError).
* Change notifications are delivered from a thread of their own per registration.  Microsoft's
  NotifyUnicastIpAddressChange: "The callback function ... is called when a notification occurs";
  CancelMibChangeNotify2: "the call to CancelMibChangeNotify2 ... will block until the callback completes"
  when a callback is in progress, and must not be called from inside one (it would wait for itself).
  The row handed to the callback is freed once it returns, so it is scribbled over here.
* Misuse of the API is recorded in :attr:`Host.violations` rather than raised through C.
"""

from __future__ import annotations

import ctypes
import queue
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Any

# Windows constants, restated here on purpose: the emulation must not trust the code under test's values.
AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 23
ERROR_SUCCESS = 0
ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_NOT_ENOUGH_MEMORY = 8
ERROR_HANDLE_EOF = 38
ERROR_INVALID_PARAMETER = 87
ERROR_BUFFER_OVERFLOW = 111
ERROR_MOD_NOT_FOUND = 126
ERROR_ALREADY_EXISTS = 183
ERROR_NO_MORE_ITEMS = 259
ERROR_NOT_FOUND = 1168
ERROR_NETWORK_UNREACHABLE = 1231
ERROR_ALREADY_INITIALIZED = 1247
ERROR_OBJECT_ALREADY_EXISTS = 5010
WSAEOPNOTSUPP = 10045
WAIT_OBJECT_0, WAIT_TIMEOUT, WAIT_FAILED, INFINITE = 0, 258, 0xFFFFFFFF, 0xFFFFFFFF
LOAD_LIBRARY_SEARCH_APPLICATION_DIR = 0x200
LOAD_LIBRARY_SEARCH_SYSTEM32 = 0x800
LOAD_LIBRARY_SEARCH_MASK = 0x1F00
"""Any LOAD_LIBRARY_SEARCH_* flag replaces the standard search order (which includes the current directory)."""
SIO_UDP_CONNRESET = 0x9800000C
SIO_UDP_NETRESET = 0x9800000F
IPPROTO_IP, IP_DONTFRAGMENT, IP_UNICAST_IF = 0, 14, 31
IF_TYPE_ETHERNET_CSMACD, IF_TYPE_SOFTWARE_LOOPBACK, IF_TYPE_PROP_VIRTUAL = 6, 24, 53
WINTUN_MIN_RING, WINTUN_MAX_RING = 0x20000, 0x4000000
WINTUN_VERSION = (0 << 16) | 14
MIB_PARAMETER_NOTIFICATION, MIB_ADD_INSTANCE, MIB_DELETE_INSTANCE = 0, 1, 2
IP_DAD_STATE_PREFERRED = 4

# Documented x64 layouts (netioapi.h, ws2ipdef.h).
SOCKADDR_INET_SIZE = 28
UNICAST_SIZE = 80
UNICAST_TABLE_ROWS = 8
"""MIB_UNICASTIPADDRESS_TABLE: ULONG NumEntries, then the rows at their 8-byte alignment."""
U_ADDRESS, U_LUID, U_INDEX, U_PREFIX_ORIGIN, U_SUFFIX_ORIGIN = 0, 32, 40, 44, 48
U_VALID, U_PREFERRED, U_ONLINK, U_SKIP, U_DAD, U_SCOPE, U_CREATED = 52, 56, 60, 61, 64, 68, 72
FORWARD_SIZE = 104
F_LUID, F_INDEX, F_DEST, F_DEST_PLEN, F_NEXTHOP, F_SITE_PLEN = 0, 8, 12, 40, 44, 72
F_VALID, F_PREFERRED, F_METRIC, F_PROTOCOL, F_LOOPBACK, F_AUTOCONF, F_PUBLISH, F_IMMORTAL = (
    76,
    80,
    84,
    88,
    92,
    93,
    94,
    95,
)
F_AGE, F_ORIGIN = 96, 100
IPIF_SIZE = 168
I_FAMILY, I_LUID, I_INDEX, I_ROUTER_DISCOVERY, I_DAD_TRANSMITS = 0, 8, 16, 52, 56
I_MANAGED, I_OTHER_STATEFUL, I_USE_AUTOMATIC_METRIC = 46, 47, 44
I_SITE_PLEN, I_METRIC, I_NL_MTU, I_CONNECTED = 144, 148, 152, 156

PREFIX_ORIGIN_UNCHANGED = SUFFIX_ORIGIN_UNCHANGED = 16
SCRIBBLE = 0xDD

VP = ctypes.c_void_p
DWORD = ctypes.c_uint32


def pack_sockaddr(address: IPv4Address | IPv6Address | None) -> bytes:
    if address is None:
        return bytes(SOCKADDR_INET_SIZE)
    if isinstance(address, IPv4Address):
        return struct.pack("<HH4s8x", AF_INET, 0, address.packed).ljust(SOCKADDR_INET_SIZE, b"\0")
    return struct.pack("<HHI16sI", AF_INET6, 0, 0, address.packed, 0)


def unpack_sockaddr(raw: bytes) -> tuple[int, IPv4Address | IPv6Address | None]:
    """(si_family, address): what Windows reads from a SOCKADDR_INET."""
    (family,) = struct.unpack_from("<H", raw, 0)
    if family == AF_INET:
        return family, IPv4Address(raw[4:8])
    if family == AF_INET6:
        return family, IPv6Address(raw[8:24])
    return family, None


def luid_of(if_type: int, net_luid_index: int) -> int:
    """NET_LUID.Info: Reserved:24, NetLuidIndex:24, IfType:16."""
    return (if_type << 48) | (net_luid_index << 24)


def luid_index(luid: int) -> int:
    """NET_LUID.Info.NetLuidIndex."""
    return (luid >> 24) & 0xFFFFFF


TUN_ALIGNMENT = 4


def ring_bytes(size: int) -> int:
    """A packet's room in a Wintun ring: TUN_PACKET (a ULONG size, then the data), aligned to 4."""
    return (4 + size + 3) & ~3


@dataclass
class ReceiveRing:
    """A Wintun session's ring toward the application, served as ``api/session.c`` serves it; the lab's
    emulated Wintun and the unit tests' fake both read packets through this one.

    * The driver puts a packet in only where it fits: ``TUN_ALIGN(sizeof(TUN_PACKET) + size)`` bytes, with
      one alignment unit kept free (``TUN_RING_WRAP(Head - Tail - TUN_ALIGNMENT, Capacity)``); a packet
      that does not fit is dropped.
    * ``WintunReceivePacket`` checks the ring's state before looking for packets: once the adapter is
      terminating it answers ERROR_HANDLE_EOF, even with packets still queued (they are lost); an empty
      ring answers ERROR_NO_MORE_ITEMS.
    * A packet handed out keeps its room until ``WintunReleaseReceivePacket``; then the slot is the
      driver's again (scribbled here, so that reading a released packet shows).
    """

    capacity: int
    queued: deque[bytes] = field(default_factory=deque)
    used: int = 0
    outstanding: dict[int, tuple[Any, int]] = field(default_factory=dict)
    """Packets handed out and not released: address → (buffer, ring bytes)."""
    drops: int = 0

    def put(self, packet: bytes) -> bool:
        """The driver's side: queues ``packet`` if the ring has room for it; drops it otherwise."""
        need = ring_bytes(len(packet))
        if need > self.capacity - self.used - TUN_ALIGNMENT:
            self.drops += 1
            return False
        self.queued.append(packet)
        self.used += need
        return True

    def receive(self, windows: Host, size_ptr: int | None, *, terminating: bool) -> int:
        """``WintunReceivePacket`` on a running session: the packet's address, or NULL and the last error."""
        if terminating:
            windows.set_last_error(ERROR_HANDLE_EOF)
            return 0
        if not self.queued:
            windows.set_last_error(ERROR_NO_MORE_ITEMS)
            return 0
        if size_ptr is None:
            windows.violation("WintunReceivePacket: PacketSize is NULL")
            return 0
        packet = self.queued.popleft()
        buffer = ctypes.create_string_buffer(packet, len(packet))
        address = ctypes.addressof(buffer)
        self.outstanding[address] = (buffer, ring_bytes(len(packet)))
        ctypes.memmove(size_ptr, struct.pack("<I", len(packet)), 4)
        return address

    def release(self, windows: Host, packet: int | None) -> None:
        """``WintunReleaseReceivePacket`` on a running session."""
        entry = self.outstanding.pop(packet or 0, None)
        if entry is None:
            windows.violation(f"WintunReleaseReceivePacket: {packet} was not received (or twice)")
            return
        buffer, ring = entry
        self.used -= ring
        ctypes.memset(ctypes.addressof(buffer), SCRIBBLE, len(buffer))

    def end(self) -> None:
        """``WintunEndSession``: packets still held are freed with the ring."""
        for address, (buffer, _) in self.outstanding.items():
            ctypes.memset(address, SCRIBBLE, len(buffer))
        self.outstanding.clear()


def family_of(address: IPv4Address | IPv6Address) -> int:
    return AF_INET if isinstance(address, IPv4Address) else AF_INET6


# Rows --------------------------------------------------------------------------------------------------


@dataclass
class UnicastEntry:
    luid: int
    address: IPv4Address | IPv6Address
    prefixlen: int
    prefix_origin: int
    suffix_origin: int
    valid: int
    preferred: int
    dad_state: int
    skip_as_source: int


@dataclass
class RouteEntry:
    luid: int
    network: IPv4Network | IPv6Network
    next_hop: IPv4Address | IPv6Address
    metric: int
    protocol: int


def unicast_row(luid: int, address: IPv4Address | IPv6Address, prefixlen: int, *, index: int = 0) -> bytes:
    """A MIB_UNICASTIPADDRESS_ROW as Windows hands one to a notification callback."""
    raw = bytearray(UNICAST_SIZE)
    raw[U_ADDRESS : U_ADDRESS + SOCKADDR_INET_SIZE] = pack_sockaddr(address)
    struct.pack_into("<QI", raw, U_LUID, luid, index)
    raw[U_ONLINK] = prefixlen
    return bytes(raw)


def decode_unicast(raw: bytes) -> UnicastEntry | None:
    """The row's fields; ``None`` when it is invalid whatever the host (ERROR_INVALID_PARAMETER)."""
    family, address = unpack_sockaddr(raw[U_ADDRESS : U_ADDRESS + SOCKADDR_INET_SIZE])
    (luid,) = struct.unpack_from("<Q", raw, U_LUID)
    prefix_origin, suffix_origin, valid, preferred = struct.unpack_from("<iiII", raw, U_PREFIX_ORIGIN)
    prefixlen, skip = raw[U_ONLINK], raw[U_SKIP]
    (dad,) = struct.unpack_from("<i", raw, U_DAD)
    if address is None or prefixlen > (32 if family == AF_INET else 128):
        return None
    return UnicastEntry(luid, address, prefixlen, prefix_origin, suffix_origin, valid, preferred, dad, skip)


def decode_route(raw: bytes) -> RouteEntry | None:
    """The row's fields; ``None`` when it is invalid whatever the host (ERROR_INVALID_PARAMETER)."""
    (luid,) = struct.unpack_from("<Q", raw, F_LUID)
    family, prefix = unpack_sockaddr(raw[F_DEST : F_DEST + SOCKADDR_INET_SIZE])
    prefixlen = raw[F_DEST_PLEN]
    hop_family, next_hop = unpack_sockaddr(raw[F_NEXTHOP : F_NEXTHOP + SOCKADDR_INET_SIZE])
    (metric,) = struct.unpack_from("<I", raw, F_METRIC)
    (protocol,) = struct.unpack_from("<i", raw, F_PROTOCOL)
    if prefix is None or next_hop is None or hop_family != family:
        return None
    try:
        network = ip_network((prefix, prefixlen))
    except ValueError:
        return None  # host bits set, or prefix length out of range
    return RouteEntry(luid, network, next_hop, metric, protocol)


def route_row(entry: RouteEntry, index: int) -> bytes:
    raw = bytearray(FORWARD_SIZE)
    struct.pack_into("<QI", raw, F_LUID, entry.luid, index)
    raw[F_DEST : F_DEST + SOCKADDR_INET_SIZE] = pack_sockaddr(entry.network.network_address)
    raw[F_DEST_PLEN] = entry.network.prefixlen
    raw[F_NEXTHOP : F_NEXTHOP + SOCKADDR_INET_SIZE] = pack_sockaddr(entry.next_hop)
    struct.pack_into("<IIIi", raw, F_VALID, 0xFFFFFFFF, 0xFFFFFFFF, entry.metric, entry.protocol)
    return bytes(raw)


@dataclass(frozen=True)
class InterfaceSettings:
    """What ``SetIpInterfaceEntry`` reads from a MIB_IPINTERFACE_ROW (the fields the backend changes)."""

    family: int
    luid: int
    router_discovery: int
    dad_transmits: int
    site_prefixlen: int
    nl_mtu: int
    managed: int
    other_stateful: int

    def invalid(self, max_mtu: int) -> int:
        """The error SetIpInterfaceEntry answers for these settings, 0 when they are acceptable."""
        if self.family == AF_INET and self.site_prefixlen != 0:
            return ERROR_INVALID_PARAMETER  # documented quirk of SetIpInterfaceEntry
        if not (1280 if self.family == AF_INET6 else 576) <= self.nl_mtu <= max_mtu:
            return ERROR_INVALID_PARAMETER
        if self.router_discovery not in (-1, 0, 1, 2):
            return ERROR_INVALID_PARAMETER
        return 0

    def apply(self, params: dict[str, int]) -> None:
        params["NlMtu"] = self.nl_mtu
        params["DadTransmits"] = self.dad_transmits
        if self.router_discovery != -1:  # RouterDiscoveryUnchanged
            params["RouterDiscoveryBehavior"] = self.router_discovery
        params["ManagedAddressConfigurationSupported"] = self.managed
        params["OtherStatefulConfigurationSupported"] = self.other_stateful


def decode_interface(raw: bytes) -> InterfaceSettings:
    (family,) = struct.unpack_from("<H", raw, I_FAMILY)
    (luid,) = struct.unpack_from("<Q", raw, I_LUID)
    router_discovery, dad = struct.unpack_from("<iI", raw, I_ROUTER_DISCOVERY)
    site_plen, _metric, mtu = struct.unpack_from("<III", raw, I_SITE_PLEN)
    return InterfaceSettings(family, luid, router_discovery, dad, site_plen, mtu, raw[I_MANAGED], raw[I_OTHER_STATEFUL])


def interface_row(family: int, luid: int, index: int, metric: int, params: dict[str, int]) -> bytes:
    """A MIB_IPINTERFACE_ROW as GetIpInterfaceEntry fills it in."""
    raw = bytearray(IPIF_SIZE)
    struct.pack_into("<H", raw, I_FAMILY, family)
    struct.pack_into("<QI", raw, I_LUID, luid, index)
    raw[I_USE_AUTOMATIC_METRIC] = 1
    raw[I_MANAGED] = params["ManagedAddressConfigurationSupported"]
    raw[I_OTHER_STATEFUL] = params["OtherStatefulConfigurationSupported"]
    struct.pack_into("<iI", raw, I_ROUTER_DISCOVERY, params["RouterDiscoveryBehavior"], params["DadTransmits"])
    struct.pack_into("<III", raw, I_SITE_PLEN, params["SitePrefixLength"], metric, params["NlMtu"])
    raw[I_CONNECTED] = 1
    return bytes(raw)


def default_interface_params(family: int, nl_mtu: int) -> dict[str, int]:
    """A fresh interface's settings as Windows reports them (router discovery per RFC 4861 for IPv6)."""
    return {
        "NlMtu": nl_mtu,
        "DadTransmits": 1,
        "RouterDiscoveryBehavior": 2 if family == AF_INET else 1,
        "ManagedAddressConfigurationSupported": 0,
        "OtherStatefulConfigurationSupported": 1,
        "SitePrefixLength": 32 if family == AF_INET else 64,
    }


# Exports -----------------------------------------------------------------------------------------------


def export(restype: Any, *argtypes: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Marks a method as a DLL export with its C prototype."""

    def mark(method: Callable[..., Any]) -> Callable[..., Any]:
        method._c_prototype = (restype, argtypes)  # type: ignore[attr-defined]
        return method

    return mark


class Dll:
    """Turns every ``@export`` method into an instance attribute holding a real C function pointer."""

    def __init__(self, windows: Host) -> None:
        self.windows = windows
        for name in dir(type(self)):
            prototype = getattr(getattr(type(self), name), "_c_prototype", None)
            if prototype is None:
                continue
            restype, argtypes = prototype
            pointer = ctypes.CFUNCTYPE(restype, *argtypes)(windows.guard(name, getattr(self, name), restype))
            setattr(self, name, pointer)


class Host:
    """What every emulated DLL of one host shares: its lock, handles, per-thread last error, contract checks."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.violations: list[str] = []
        self._last_error = threading.local()
        self._next_handle = 0x1000
        self.wintun_location: str | None = "application_dir"
        """Where wintun.dll sits: "application_dir", "current_dir" (planted), or None (missing)."""

    def set_last_error(self, code: int) -> None:
        self._last_error.code = code

    def get_last_error(self) -> int:
        return int(getattr(self._last_error, "code", 0))

    def new_handle(self) -> int:
        with self.lock:
            self._next_handle += 4
            return self._next_handle

    def violation(self, message: str) -> None:
        with self.lock:
            self.violations.append(message)

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            self.violation(message)

    def guard(self, name: str, function: Callable[..., Any], restype: Any) -> Callable[..., Any]:
        return guarded(name, function, restype, self.violation)


def guarded(
    name: str, function: Callable[..., Any], restype: Any, violation: Callable[[str], None]
) -> Callable[..., Any]:
    """An exception must not unwind through C: record it as a violation and return a failure."""
    failure: Any = None if restype is None else 0

    def call(*args: Any) -> Any:
        try:
            return function(*args)
        except Exception as exc:
            violation(f"{name} raised {type(exc).__name__}: {exc}")
            return failure

    return call


# kernel32 ----------------------------------------------------------------------------------------------


@dataclass
class Event:
    manual_reset: bool
    signaled: bool
    owner: str = ""
    """"wintun" for a session's read-wait event, which the application must not close."""


class Kernel32Dll(Dll):
    """Events, ``WaitForMultipleObjects`` and ``LoadLibraryExW`` (wintun.dll only)."""

    def __init__(self, windows: Host) -> None:
        super().__init__(windows)
        self.events: dict[int, Event] = {}
        self.cond = threading.Condition(windows.lock)
        self.load_calls: list[tuple[str, int]] = []
        self.modules: dict[int, str] = {}

    def new_event(self, *, manual_reset: bool, owner: str = "") -> int:
        with self.cond:
            handle = self.windows.new_handle()
            self.events[handle] = Event(manual_reset, False, owner)
            return handle

    def signal(self, handle: int) -> None:
        with self.cond:
            event = self.events.get(handle)
            if event is not None:
                event.signaled = True
                self.cond.notify_all()

    def open_events(self, owner: str = "") -> int:
        with self.cond:
            return sum(1 for event in self.events.values() if event.owner == owner)

    @export(VP, VP, ctypes.c_int32, ctypes.c_int32, VP)
    def CreateEventW(self, attributes: int | None, manual_reset: int, initial: int, name: int | None) -> int:
        self.windows.check(attributes is None, "CreateEventW: security attributes are not expected")
        # A named event is machine-wide: two helpers would share it.
        self.windows.check(name is None, "CreateEventW: events must be unnamed")
        handle = self.new_event(manual_reset=bool(manual_reset))
        if initial:
            self.signal(handle)
        return handle

    @export(ctypes.c_int32, VP)
    def SetEvent(self, handle: int | None) -> int:
        with self.cond:
            event = self.events.get(handle or 0)
            if event is None:
                self.windows.set_last_error(ERROR_INVALID_HANDLE)
                return 0
            event.signaled = True
            self.cond.notify_all()
            return 1

    @export(ctypes.c_int32, VP)
    def ResetEvent(self, handle: int | None) -> int:
        with self.cond:
            event = self.events.get(handle or 0)
            if event is None:
                self.windows.set_last_error(ERROR_INVALID_HANDLE)
                return 0
            event.signaled = False
            return 1

    @export(ctypes.c_int32, VP)
    def CloseHandle(self, handle: int | None) -> int:
        with self.cond:
            event = self.events.get(handle or 0)
            if event is None:
                self.windows.violation(f"CloseHandle({handle}): not an open handle")
                self.windows.set_last_error(ERROR_INVALID_HANDLE)
                return 0
            self.windows.check(event.owner != "wintun", "CloseHandle on Wintun's read-wait event")
            del self.events[handle or 0]
            return 1

    @export(DWORD, DWORD, VP, ctypes.c_int32, DWORD)
    def WaitForMultipleObjects(self, count: int, handles: int | None, wait_all: int, timeout_ms: int) -> int:
        self.windows.check(not wait_all, "WaitForMultipleObjects: bWaitAll must be FALSE here")
        if not 0 < count <= 64 or handles is None:
            self.windows.set_last_error(ERROR_INVALID_PARAMETER)
            return WAIT_FAILED
        wanted = [h or 0 for h in (ctypes.c_void_p * count).from_address(handles)]
        deadline = None if timeout_ms == INFINITE else time.monotonic() + timeout_ms / 1000
        with self.cond:
            while True:
                for index, handle in enumerate(wanted):
                    event = self.events.get(handle)
                    if event is None:
                        self.windows.set_last_error(ERROR_INVALID_HANDLE)
                        return WAIT_FAILED
                    if event.signaled:
                        if not event.manual_reset:
                            event.signaled = False
                        return WAIT_OBJECT_0 + index
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return WAIT_TIMEOUT
                self.cond.wait(remaining)

    @export(VP, VP, VP, DWORD)
    def LoadLibraryExW(self, name_ptr: int | None, file: int | None, flags: int) -> int:
        name = ctypes.wstring_at(name_ptr) if name_ptr else ""
        self.windows.check(file is None, "LoadLibraryExW: hFile must be NULL")
        with self.windows.lock:
            self.load_calls.append((name, flags))
            location = self.windows.wintun_location
            if name.lower() != "wintun.dll" or location is None:
                self.windows.set_last_error(ERROR_MOD_NOT_FOUND)
                return 0
            searched = {"application_dir"}
            if flags & LOAD_LIBRARY_SEARCH_MASK == 0:
                searched.add("current_dir")  # the standard order: what must never be used for us
            elif flags & LOAD_LIBRARY_SEARCH_APPLICATION_DIR == 0:
                searched.discard("application_dir")
            if location not in searched:
                self.windows.set_last_error(ERROR_MOD_NOT_FOUND)
                return 0
            handle = self.windows.new_handle()
            self.modules[handle] = name
            return handle


# IP Helper: row initializers and change notifications ------------------------------------------------------


@dataclass
class Registration:
    handle: int
    kind: str  # "address", "route" or "interface"
    family: int
    callback: Any
    queue: queue.Queue[tuple[bytes, int] | None]
    thread: threading.Thread
    cancelled: bool = False
    delivered: int = 0
    threads_seen: set[int] = field(default_factory=set)


class IpHelperBase(Dll):
    """The part of iphlpapi.dll that does not depend on where the host's state lives."""

    def __init__(self, windows: Host) -> None:
        super().__init__(windows)
        self.registrations: dict[int, Registration] = {}
        self.tables: dict[int, ctypes.Array[ctypes.c_char]] = {}
        """Tables handed out and not freed yet, by address."""

    # Row initializers (netioapi.h) -------------------------------------------------------------------------

    @export(None, VP)
    def InitializeUnicastIpAddressEntry(self, row: int | None) -> None:
        """ "Initializes a MIB_UNICASTIPADDRESS_ROW structure with default values": origins unchanged, infinite
        lifetimes, OnLinkPrefixLength 255 (illegal, so it must be set)."""
        if row is None:
            return
        raw = bytearray(UNICAST_SIZE)
        struct.pack_into("<i", raw, U_PREFIX_ORIGIN, PREFIX_ORIGIN_UNCHANGED)
        struct.pack_into("<i", raw, U_SUFFIX_ORIGIN, SUFFIX_ORIGIN_UNCHANGED)
        struct.pack_into("<II", raw, U_VALID, 0xFFFFFFFF, 0xFFFFFFFF)
        raw[U_ONLINK] = 0xFF
        ctypes.memmove(row, bytes(raw), UNICAST_SIZE)

    @export(None, VP)
    def InitializeIpForwardEntry(self, row: int | None) -> None:
        if row is None:
            return
        raw = bytearray(FORWARD_SIZE)
        struct.pack_into("<II", raw, F_VALID, 0xFFFFFFFF, 0xFFFFFFFF)
        struct.pack_into("<I", raw, F_METRIC, 0)
        struct.pack_into("<i", raw, F_PROTOCOL, 3)
        raw[F_LOOPBACK] = raw[F_AUTOCONF] = raw[F_IMMORTAL] = 1
        ctypes.memmove(row, bytes(raw), FORWARD_SIZE)

    @export(None, VP)
    def InitializeIpInterfaceEntry(self, row: int | None) -> None:
        if row is None:
            return
        raw = bytearray(IPIF_SIZE)
        struct.pack_into("<i", raw, I_ROUTER_DISCOVERY, -1)  # RouterDiscoveryUnchanged
        ctypes.memmove(row, bytes(raw), IPIF_SIZE)

    # Tables and indexes: what the host's state gives, laid out here ------------------------------------------

    def unicast_rows(self, family: int) -> list[bytes]:
        """Every unicast address of ``family`` (AF_UNSPEC: both) as a MIB_UNICASTIPADDRESS_ROW; the host's."""
        return []

    def interface_index(self, luid: int) -> int | None:
        """The index of the interface ``luid`` names, ``None`` when there is none; the host's."""
        return None

    @export(DWORD, ctypes.c_uint16, VP)
    def GetUnicastIpAddressTable(self, family: int, table_ptr: int | None) -> int:
        """ "ERROR_NOT_FOUND ... returned if no unicast IP address entries as specified in the Family parameter
        were found"; the table (ULONG NumEntries, the rows from offset 8) is the DLL's, for FreeMibTable."""
        if table_ptr is None or family not in (AF_UNSPEC, AF_INET, AF_INET6):
            return ERROR_INVALID_PARAMETER
        rows = self.unicast_rows(family)
        if not rows:
            return ERROR_NOT_FOUND
        layout = struct.pack("<I", len(rows)).ljust(UNICAST_TABLE_ROWS, b"\0") + b"".join(rows)
        table = ctypes.create_string_buffer(layout, len(layout))
        address = ctypes.addressof(table)
        with self.windows.lock:
            self.tables[address] = table
        ctypes.memmove(table_ptr, struct.pack("<Q", address), 8)
        return ERROR_SUCCESS

    @export(None, VP)
    def FreeMibTable(self, memory: int | None) -> None:
        with self.windows.lock:
            freed = self.tables.pop(memory or 0, None)
        self.windows.check(freed is not None, "FreeMibTable: not a table this DLL handed out (or freed twice)")

    @export(DWORD, VP, VP)
    def ConvertInterfaceLuidToIndex(self, luid_ptr: int | None, index_ptr: int | None) -> int:
        """ "ERROR_INVALID_PARAMETER ... if either InterfaceLuid or InterfaceIndex parameter was NULL, or if
        InterfaceLuid parameter was invalid"."""
        if luid_ptr is None or index_ptr is None:
            return ERROR_INVALID_PARAMETER
        (luid,) = struct.unpack("<Q", ctypes.string_at(luid_ptr, 8))
        index = self.interface_index(luid)
        if index is None:
            return ERROR_INVALID_PARAMETER
        ctypes.memmove(index_ptr, struct.pack("<I", index), 4)
        return ERROR_SUCCESS

    # Notifications -----------------------------------------------------------------------------------------

    def notify(self, kind: str, family: int, row: bytes, notification: int) -> None:
        with self.windows.lock:
            targets = [
                r
                for r in self.registrations.values()
                if r.kind == kind and not r.cancelled and r.family in (AF_UNSPEC, family)
            ]
        for registration in targets:
            registration.queue.put((row, notification))

    def _deliver(self, registration: Registration) -> None:
        prototype = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
        callback = prototype(registration.callback)
        while True:
            item = registration.queue.get()
            if item is None:
                return
            if registration.cancelled:
                continue  # queued but not started when cancelled: Windows never delivers it
            row, notification = item
            memory = ctypes.create_string_buffer(row, len(row))
            registration.threads_seen.add(threading.get_ident())
            callback(None, ctypes.addressof(memory), notification)
            registration.delivered += 1
            # Windows frees the row after the callback: a pointer kept beyond it reads garbage.
            ctypes.memset(memory, SCRIBBLE, len(row))

    def _register(self, kind: str, family: int, callback: int | None, initial: int, handle_ptr: int | None) -> int:
        windows = self.windows
        if callback is None or handle_ptr is None or family not in (AF_UNSPEC, AF_INET, AF_INET6):
            return ERROR_INVALID_PARAMETER
        windows.check(not initial, f"{kind} notification: the code asks for no initial notification")
        with windows.lock:
            handle = windows.new_handle()
            registration = Registration(handle, kind, family, callback, queue.Queue(), threading.Thread())
            registration.thread = threading.Thread(
                target=self._deliver, args=(registration,), name=f"os-{kind}-notify", daemon=True
            )
            self.registrations[handle] = registration
        registration.thread.start()
        ctypes.memmove(handle_ptr, struct.pack("<Q", handle), 8)
        return ERROR_SUCCESS

    @export(DWORD, ctypes.c_uint16, VP, VP, ctypes.c_uint8, VP)
    def NotifyUnicastIpAddressChange(
        self, family: int, callback: int | None, _context: int | None, initial: int, handle_ptr: int | None
    ) -> int:
        return self._register("address", family, callback, initial, handle_ptr)

    @export(DWORD, ctypes.c_uint16, VP, VP, ctypes.c_uint8, VP)
    def NotifyRouteChange2(
        self, family: int, callback: int | None, _context: int | None, initial: int, handle_ptr: int | None
    ) -> int:
        return self._register("route", family, callback, initial, handle_ptr)

    @export(DWORD, ctypes.c_uint16, VP, VP, ctypes.c_uint8, VP)
    def NotifyIpInterfaceChange(
        self, family: int, callback: int | None, _context: int | None, initial: int, handle_ptr: int | None
    ) -> int:
        return self._register("interface", family, callback, initial, handle_ptr)

    @export(DWORD, VP)
    def CancelMibChangeNotify2(self, handle: int | None) -> int:
        with self.windows.lock:
            registration = self.registrations.pop(handle or 0, None)
        if registration is None:
            return ERROR_INVALID_HANDLE
        self.windows.check(
            registration.thread.ident != threading.get_ident(), "CancelMibChangeNotify2 from inside its own callback"
        )
        registration.cancelled = True
        registration.queue.put(None)
        registration.thread.join()  # documented: returns once a callback in progress has returned
        return ERROR_SUCCESS

    def cancel_all(self) -> None:
        """The process ends: Windows drops its registrations (and their threads) with it."""
        with self.windows.lock:
            handles = list(self.registrations)
        for handle in handles:
            self.CancelMibChangeNotify2(handle)
