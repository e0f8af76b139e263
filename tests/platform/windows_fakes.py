"""Faithful fakes of kernel32, wintun.dll, iphlpapi.dll, ws2_32 and shell32 for the Windows backend tests.

How faithful, and why it matters:

* Every exported function is a real C function pointer (``ctypes.CFUNCTYPE``) with the documented C
  prototype, pointers seen as ``void *``.  The code under test declares its own ``argtypes``/``restype``
  on it exactly as it does on the real DLL, so each call crosses a real ctypes boundary: Python values are
  converted to C by the backend's declarations and back to Python by the fake's.
* Structures are read and written as raw memory at the offsets documented for x64 (``struct``), never
  through the backend's ctypes classes: a layout mistake in the backend reads or writes the wrong bytes and
  fails a test, as it would corrupt a call on Windows.
* Return conventions are Windows': Wintun returns NULL and sets the thread's last error
  (``ERROR_NO_MORE_ITEMS``, ``ERROR_BUFFER_OVERFLOW``, ...); IP Helper returns the error code
  (``ERROR_OBJECT_ALREADY_EXISTS`` 5010, ``ERROR_NOT_FOUND`` 1168, ...); the last error is per thread.
* Memory handed out is real: ``WintunReceivePacket`` returns the address of a ctypes buffer, which is
  scribbled over once released (so reading after release shows); change-notification rows are freed
  (scribbled) once the callback returns.
* Notifications are delivered from a separate thread per registration, as Windows' thread pool does;
  ``CancelMibChangeNotify2`` waits for a callback in progress, and none arrives afterwards.
* Misuse of the API (releasing a packet twice, closing Wintun's read event, closing an adapter with a
  session still running, waiting for all handles, ...) is recorded in ``FakeWindows.violations``: tests
  assert it stays empty.

The ABI both these fakes and the lab's emulated Windows speak (constants, documented layouts, the export
machinery, kernel32's events, IP Helper's row initializers and notifications, Wintun's ring toward the
application) lives in :mod:`m6t.lab.emulation.windows_abi`; what stays here is the in-memory host the unit
tests shape.
"""

from __future__ import annotations

import contextlib
import ctypes
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from m6t.lab.emulation.windows_abi import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    DWORD,
    ERROR_ACCESS_DENIED,
    ERROR_ALREADY_EXISTS,
    ERROR_ALREADY_INITIALIZED,
    ERROR_BUFFER_OVERFLOW,
    ERROR_FILE_NOT_FOUND,
    ERROR_HANDLE_EOF,
    ERROR_INVALID_HANDLE,
    ERROR_INVALID_PARAMETER,
    ERROR_NETWORK_UNREACHABLE,
    ERROR_NOT_ENOUGH_MEMORY,
    ERROR_NOT_FOUND,
    ERROR_OBJECT_ALREADY_EXISTS,
    ERROR_SUCCESS,
    F_NEXTHOP,
    FORWARD_SIZE,
    IF_TYPE_ETHERNET_CSMACD,
    IF_TYPE_PROP_VIRTUAL,
    IP_DONTFRAGMENT,
    IPIF_SIZE,
    IPPROTO_IP,
    MIB_ADD_INSTANCE,
    MIB_DELETE_INSTANCE,
    SCRIBBLE,
    SIO_UDP_CONNRESET,
    SIO_UDP_NETRESET,
    SOCKADDR_INET_SIZE,
    TUN_ALIGNMENT,
    UNICAST_SIZE,
    VP,
    WINTUN_MAX_RING,
    WINTUN_MIN_RING,
    WINTUN_VERSION,
    WSAEOPNOTSUPP,
    Dll,
    Host,
    IpHelperBase,
    ReceiveRing,
    RouteEntry,
    UnicastEntry,
    decode_interface,
    decode_route,
    decode_unicast,
    default_interface_params,
    export,
    interface_row,
    luid_of,
    pack_sockaddr,
    ring_bytes,
    route_row,
    unicast_row,
    unpack_sockaddr,
)
from m6t.lab.emulation.windows_abi import Kernel32Dll as FakeKernel32
from m6t.platform.windows.system import WinApi

__all__ = [  # what the tests take from here, defined by the shared ABI module
    "AF_INET",
    "IF_TYPE_PROP_VIRTUAL",
    "IPPROTO_IP",
    "IP_DONTFRAGMENT",
    "SIO_UDP_CONNRESET",
    "SIO_UDP_NETRESET",
    "RouteEntry",
    "pack_sockaddr",
    "unpack_sockaddr",
]


class FakeDll(Dll):
    windows: FakeWindows


@dataclass
class FakeInterface:
    luid: int
    index: int
    alias: str
    if_type: int
    ipv4: list[tuple[IPv4Address, int]] = field(default_factory=list)
    ipv6_bound: bool = True
    ipv4_bound: bool = True
    metric: int = 25
    max_mtu: int = 1500
    params: dict[int, dict[str, int]] = field(default_factory=dict)
    """Per family: NlMtu, DadTransmits, RouterDiscoveryBehavior, ... as GetIpInterfaceEntry reports them."""


@dataclass
class FakeSession:
    handle: int
    adapter: FakeAdapter
    capacity: int
    read_event: int
    receive: ReceiveRing
    """Toward the application: the emulated Wintun's ring, so packets are served in Wintun's order."""
    allocated: dict[int, Any] = field(default_factory=dict)
    send_used: int = 0
    ended: bool = False
    terminating: bool = False
    """The adapter is going away (device removed): receive and allocate answer ERROR_HANDLE_EOF."""


@dataclass
class FakeAdapter:
    name: str
    tunnel_type: str
    guid: uuid.UUID
    luid: int
    session: FakeSession | None = None
    sent: list[bytes] = field(default_factory=list)
    """Packets the OS stack received from the application (WintunSendPacket)."""
    sent_sizes: list[int] = field(default_factory=list)


class FakeWintun(FakeDll):
    def __init__(self, windows: FakeWindows) -> None:
        super().__init__(windows)
        self.adapters: dict[str, FakeAdapter] = {}
        self.handles: dict[int, tuple[FakeAdapter, bool]] = {}
        self.sessions: dict[int, FakeSession] = {}
        self.logger: Callable[[int, int, str], None] | None = None
        self.ever_loaded = False

    # Test-facing -----------------------------------------------------------------------------------------

    def adapter(self, name: str) -> FakeAdapter | None:
        with self.windows.lock:
            return self.adapters.get(name.casefold())

    def session_of(self, name: str) -> FakeSession:
        adapter = self.adapter(name)
        assert adapter is not None and adapter.session is not None, f"no session on {name}"
        return adapter.session

    def inject(self, name: str, packets: list[bytes]) -> int:
        """The OS routes ``packets`` into the adapter; returns how many the ring took (the rest drop)."""
        with self.windows.lock:
            session = self.session_of(name)
            taken = sum(session.receive.put(packet) for packet in packets)
            if taken:
                self.windows.kernel32.signal(session.read_event)
            return taken

    def add_foreign_adapter(
        self, name: str, guid: uuid.UUID | None = None, *, with_session: bool = False
    ) -> FakeAdapter:
        """An adapter another process created (and, ``with_session``, is using)."""
        windows = self.windows
        with windows.lock:
            interface = windows.add_interface(name, if_type=IF_TYPE_PROP_VIRTUAL, max_mtu=0xFFFF)
            adapter = FakeAdapter(name, "Foreign", guid or uuid.uuid4(), interface.luid)
            if with_session:
                read_event = windows.kernel32.new_event(manual_reset=False, owner="foreign")
                ring = ReceiveRing(WINTUN_MIN_RING)
                adapter.session = FakeSession(windows.new_handle(), adapter, WINTUN_MIN_RING, read_event, ring)
            self.adapters[name.casefold()] = adapter
            self.ever_loaded = True
            return adapter

    def terminate(self, name: str) -> None:
        """The adapter is being removed under the application (device disabled, driver update): from now on
        Wintun answers ERROR_HANDLE_EOF, and what is still queued toward the application is lost."""
        with self.windows.lock:
            session = self.session_of(name)
            session.terminating = True
            self.windows.kernel32.signal(session.read_event)

    def drain_sent(self, name: str) -> list[bytes]:
        """The OS stack consumes what was sent: returns it and frees its ring space."""
        with self.windows.lock:
            adapter = self.adapter(name)
            assert adapter is not None
            sent, adapter.sent = adapter.sent, []
            freed = sum(ring_bytes(n) for n in adapter.sent_sizes)
            adapter.sent_sizes = []
            if adapter.session is not None:
                adapter.session.send_used -= freed
            return sent

    def _log(self, level: int, message: str) -> None:
        logger = self.logger
        if logger is not None:
            logger(level, 133_000_000_000_000_000, message)

    def _handle(self, handle: int | None, what: str) -> tuple[FakeAdapter, bool] | None:
        entry = self.handles.get(handle or 0)
        if entry is None:
            self.windows.violation(f"{what}: {handle} is not an open adapter handle")
        return entry

    def _session(self, handle: int | None, what: str) -> FakeSession | None:
        session = self.sessions.get(handle or 0)
        if session is None or session.ended:
            self.windows.violation(f"{what}: {handle} is not a running session")
            return None
        return session

    # Exports ---------------------------------------------------------------------------------------------

    @export(VP, VP, VP, VP)
    def WintunCreateAdapter(self, name_ptr: int | None, type_ptr: int | None, guid_ptr: int | None) -> int:
        windows = self.windows
        name = ctypes.wstring_at(name_ptr) if name_ptr else ""
        tunnel_type = ctypes.wstring_at(type_ptr) if type_ptr else ""
        if not windows.admin:
            windows.set_last_error(ERROR_ACCESS_DENIED)
            return 0
        if not name or len(name) >= 128 or not tunnel_type or len(tunnel_type) >= 128:
            windows.set_last_error(ERROR_INVALID_PARAMETER)
            return 0
        guid = uuid.UUID(bytes_le=ctypes.string_at(guid_ptr, 16)) if guid_ptr else uuid.uuid4()
        with windows.lock:
            for other in self.adapters.values():
                if other.guid == guid:
                    windows.set_last_error(ERROR_ALREADY_EXISTS)
                    return 0
            clash = self.adapters.pop(name.casefold(), None)
            if clash is not None:
                # NciSetAdapterName: the foreign adapter holding the name is renamed, ours gets it.
                clash.name = f"{clash.name} 1"
                self.adapters[clash.name.casefold()] = clash
                windows.interfaces[clash.luid].alias = clash.name
            self.ever_loaded = True
            interface = windows.add_interface(name, if_type=IF_TYPE_PROP_VIRTUAL, max_mtu=0xFFFF)
            interface.ipv6_bound = windows.ipv6_on_new_adapters
            adapter = FakeAdapter(name, tunnel_type, guid, interface.luid)
            self.adapters[name.casefold()] = adapter
            handle = windows.new_handle()
            self.handles[handle] = (adapter, True)
        self._log(0, f"Creating adapter {name}")
        # Windows gives the new adapter IPv4 state of its own (APIPA): noise a monitor must ignore.
        windows.add_ipv4_address(name, IPv4Address("169.254.77.1"), 16)
        windows.add_ipv4_route(name, IPv4Network("169.254.0.0/16"), None, 256)
        return handle

    @export(VP, VP)
    def WintunOpenAdapter(self, name_ptr: int | None) -> int:
        name = ctypes.wstring_at(name_ptr) if name_ptr else ""
        with self.windows.lock:
            adapter = self.adapters.get(name.casefold())
            if adapter is None:
                self.windows.set_last_error(ERROR_FILE_NOT_FOUND)
                return 0
            handle = self.windows.new_handle()
            self.handles[handle] = (adapter, False)
            return handle

    @export(None, VP)
    def WintunCloseAdapter(self, handle: int | None) -> None:
        if handle is None:
            return  # documented: NULL is allowed
        remove: FakeAdapter | None = None
        with self.windows.lock:
            entry = self._handle(handle, "WintunCloseAdapter")
            if entry is None:
                return
            adapter, owner = entry
            del self.handles[handle]
            if owner:
                self.windows.check(
                    adapter.session is None or adapter.session.ended, "WintunCloseAdapter with a running session"
                )
                self.adapters.pop(adapter.name.casefold(), None)
                remove = adapter
        if remove is not None:
            self.windows.remove_interface(remove.luid)

    @export(None, VP, VP)
    def WintunGetAdapterLUID(self, handle: int | None, luid_ptr: int | None) -> None:
        entry = self._handle(handle, "WintunGetAdapterLUID")
        if entry is None or luid_ptr is None:
            return
        ctypes.memmove(luid_ptr, struct.pack("<Q", entry[0].luid), 8)

    @export(DWORD)
    def WintunGetRunningDriverVersion(self) -> int:
        if not self.ever_loaded:
            self.windows.set_last_error(ERROR_FILE_NOT_FOUND)
            return 0
        return WINTUN_VERSION

    @export(None, VP)
    def WintunSetLogger(self, callback: int | None) -> None:
        if callback is None:
            self.logger = None
            return
        # wintun.h 0.14: VOID (CALLBACK *)(WINTUN_LOGGER_LEVEL Level, DWORD64 Timestamp, LPCWSTR Message)
        prototype = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint64, ctypes.c_wchar_p)
        self.logger = prototype(callback)

    @export(VP, VP, DWORD)
    def WintunStartSession(self, handle: int | None, capacity: int) -> int:
        windows = self.windows
        with windows.lock:
            entry = self._handle(handle, "WintunStartSession")
            if entry is None:
                windows.set_last_error(ERROR_INVALID_HANDLE)
                return 0
            adapter = entry[0]
            if not (WINTUN_MIN_RING <= capacity <= WINTUN_MAX_RING and capacity & (capacity - 1) == 0):
                windows.set_last_error(ERROR_INVALID_PARAMETER)
                return 0
            if adapter.session is not None and not adapter.session.ended:
                windows.set_last_error(ERROR_ALREADY_INITIALIZED)
                return 0
            session_handle = windows.new_handle()
            read_event = windows.kernel32.new_event(manual_reset=False, owner="wintun")
            session = FakeSession(session_handle, adapter, capacity, read_event, ReceiveRing(capacity))
            self.sessions[session_handle] = session
            adapter.session = session
            return session_handle

    @export(None, VP)
    def WintunEndSession(self, handle: int | None) -> None:
        with self.windows.lock:
            session = self._session(handle, "WintunEndSession")
            if session is None:
                return
            session.ended = True
            self.windows.kernel32.events.pop(session.read_event, None)
            session.receive.end()

    @export(VP, VP)
    def WintunGetReadWaitEvent(self, handle: int | None) -> int:
        with self.windows.lock:
            session = self._session(handle, "WintunGetReadWaitEvent")
            return session.read_event if session is not None else 0

    @export(VP, VP, VP)
    def WintunReceivePacket(self, handle: int | None, size_ptr: int | None) -> int:
        windows = self.windows
        with windows.lock:
            session = self.sessions.get(handle or 0)
            if session is None:
                windows.violation(f"WintunReceivePacket: {handle} is not a session")
                windows.set_last_error(ERROR_INVALID_HANDLE)
                return 0
            if session.ended:
                windows.violation("WintunReceivePacket after WintunEndSession")
                windows.set_last_error(ERROR_HANDLE_EOF)
                return 0
            return session.receive.receive(windows, size_ptr, terminating=session.terminating)

    @export(None, VP, VP)
    def WintunReleaseReceivePacket(self, handle: int | None, packet: int | None) -> None:
        with self.windows.lock:
            session = self._session(handle, "WintunReleaseReceivePacket")
            if session is not None:
                session.receive.release(self.windows, packet)

    @export(VP, VP, DWORD)
    def WintunAllocateSendPacket(self, handle: int | None, size: int) -> int:
        windows = self.windows
        with windows.lock:
            session = self._session(handle, "WintunAllocateSendPacket")
            if session is None:
                windows.set_last_error(ERROR_HANDLE_EOF)
                return 0
            if session.terminating:
                windows.set_last_error(ERROR_HANDLE_EOF)
                return 0
            if not 0 < size <= 0xFFFF:
                windows.set_last_error(ERROR_INVALID_PARAMETER)
                return 0
            need = ring_bytes(size)
            if need > session.capacity - session.send_used - TUN_ALIGNMENT:  # one alignment unit stays free
                windows.set_last_error(ERROR_BUFFER_OVERFLOW)
                return 0
            session.send_used += need
            buffer = ctypes.create_string_buffer(size)
            ctypes.memset(buffer, SCRIBBLE, size)  # fresh ring memory holds whatever was there before
            session.allocated[ctypes.addressof(buffer)] = buffer
            return ctypes.addressof(buffer)

    @export(None, VP, VP)
    def WintunSendPacket(self, handle: int | None, packet: int | None) -> None:
        with self.windows.lock:
            session = self._session(handle, "WintunSendPacket")
            if session is None:
                return
            buffer = session.allocated.pop(packet or 0, None)
            if buffer is None:
                self.windows.violation(f"WintunSendPacket: {packet} was not allocated (or sent twice)")
                return
            session.adapter.sent.append(buffer.raw)
            session.adapter.sent_sizes.append(len(buffer))


class FakeIpHelper(IpHelperBase):
    windows: FakeWindows

    def __init__(self, windows: FakeWindows) -> None:
        super().__init__(windows)
        self.unicast: dict[tuple[int, IPv4Address | IPv6Address], UnicastEntry] = {}
        self.routes: dict[tuple[int, IPv4Network | IPv6Network, IPv4Address | IPv6Address], RouteEntry] = {}
        self.calls: list[str] = []

    # Tables and indexes ----------------------------------------------------------------------------------

    def interface_index(self, luid: int) -> int | None:
        with self.windows.lock:
            interface = self.windows.interfaces.get(luid)
            return interface.index if interface is not None else None

    def unicast_rows(self, family: int) -> list[bytes]:
        rows = []
        with self.windows.lock:
            if family in (AF_UNSPEC, AF_INET):
                for interface in self.windows.interfaces.values():
                    for address, prefixlen in interface.ipv4:
                        rows.append(unicast_row(interface.luid, address, prefixlen, index=interface.index))
            for entry in self.unicast.values():
                if family in (AF_UNSPEC, AF_INET6 if entry.address.version == 6 else AF_INET):
                    rows.append(unicast_row(entry.luid, entry.address, entry.prefixlen))
        return rows

    # Names -----------------------------------------------------------------------------------------------

    @export(DWORD, VP, VP)
    def ConvertInterfaceAliasToLuid(self, alias_ptr: int | None, luid_ptr: int | None) -> int:
        if alias_ptr is None or luid_ptr is None:
            return ERROR_INVALID_PARAMETER
        interface = self.windows.interface_by_alias(ctypes.wstring_at(alias_ptr))
        if interface is None:
            return ERROR_INVALID_PARAMETER
        ctypes.memmove(luid_ptr, struct.pack("<Q", interface.luid), 8)
        return ERROR_SUCCESS

    @export(DWORD, VP, VP, ctypes.c_size_t)
    def ConvertInterfaceLuidToAlias(self, luid_ptr: int | None, buffer: int | None, length: int) -> int:
        if luid_ptr is None or buffer is None:
            return ERROR_INVALID_PARAMETER
        (luid,) = struct.unpack("<Q", ctypes.string_at(luid_ptr, 8))
        with self.windows.lock:
            interface = self.windows.interfaces.get(luid)
            if interface is None:
                return ERROR_FILE_NOT_FOUND
            alias = interface.alias
        if length < len(alias) + 1:
            return ERROR_NOT_ENOUGH_MEMORY
        text = ctypes.create_unicode_buffer(alias, len(alias) + 1)
        ctypes.memmove(buffer, text, ctypes.sizeof(text))
        return ERROR_SUCCESS

    # Unicast addresses -----------------------------------------------------------------------------------

    def _read_unicast(self, row: int) -> tuple[int, UnicastEntry | None]:
        entry = decode_unicast(ctypes.string_at(row, UNICAST_SIZE))
        if entry is None:
            return ERROR_INVALID_PARAMETER, None
        interface = self.windows.interfaces.get(entry.luid)
        if interface is None or not (interface.ipv6_bound if entry.address.version == 6 else interface.ipv4_bound):
            return ERROR_NOT_FOUND, None
        return ERROR_SUCCESS, entry

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
        windows = self.windows
        if row is None:
            return ERROR_INVALID_PARAMETER
        if not windows.admin:
            return ERROR_ACCESS_DENIED
        with windows.lock:
            self.calls.append(f"{action}_unicast")
            code, entry = self._read_unicast(row)
            if entry is None:
                return code
            key = (entry.luid, entry.address)
            exists = key in self.unicast
            if action == "create":
                if exists:
                    return ERROR_OBJECT_ALREADY_EXISTS
                self.unicast[key] = entry
            elif action == "set":
                if not exists:
                    return ERROR_NOT_FOUND
                self.unicast[key] = entry
            else:
                if not exists:
                    return ERROR_NOT_FOUND
                del self.unicast[key]
        family = AF_INET if isinstance(entry.address, IPv4Address) else AF_INET6
        kind = MIB_DELETE_INSTANCE if action == "delete" else MIB_ADD_INSTANCE
        self.notify("address", family, ctypes.string_at(row, UNICAST_SIZE), kind)
        return ERROR_SUCCESS

    # Routes ----------------------------------------------------------------------------------------------

    def _read_route(self, row: int) -> tuple[int, RouteEntry | None]:
        entry = decode_route(ctypes.string_at(row, FORWARD_SIZE))
        if entry is None:
            return ERROR_INVALID_PARAMETER, None
        interface = self.windows.interfaces.get(entry.luid)
        if interface is None or not (interface.ipv6_bound if entry.network.version == 6 else interface.ipv4_bound):
            return ERROR_NOT_FOUND, None
        return ERROR_SUCCESS, entry

    @export(DWORD, VP)
    def CreateIpForwardEntry2(self, row: int | None) -> int:
        return self._route_change("create", row)

    @export(DWORD, VP)
    def SetIpForwardEntry2(self, row: int | None) -> int:
        return self._route_change("set", row)

    @export(DWORD, VP)
    def DeleteIpForwardEntry2(self, row: int | None) -> int:
        return self._route_change("delete", row)

    def _route_change(self, action: str, row: int | None) -> int:
        windows = self.windows
        if row is None:
            return ERROR_INVALID_PARAMETER
        if not windows.admin:
            return ERROR_ACCESS_DENIED
        with windows.lock:
            self.calls.append(f"{action}_route")
            code, entry = self._read_route(row)
            if entry is None:
                return code
            # The metric is not part of the key (Windows' route identity: interface, prefix, next hop).
            key = (entry.luid, entry.network, entry.next_hop)
            exists = key in self.routes
            if action == "create":
                if exists:
                    return ERROR_OBJECT_ALREADY_EXISTS
                self.routes[key] = entry
            elif action == "set":
                if not exists:
                    return ERROR_NOT_FOUND
                self.routes[key] = entry
            else:
                if not exists:
                    return ERROR_NOT_FOUND
                del self.routes[key]
        family = AF_INET if isinstance(entry.next_hop, IPv4Address) else AF_INET6
        kind = MIB_DELETE_INSTANCE if action == "delete" else MIB_ADD_INSTANCE
        self.notify("route", family, ctypes.string_at(row, FORWARD_SIZE), kind)
        return ERROR_SUCCESS

    def route_row(self, entry: RouteEntry) -> bytes:
        interface = self.windows.interfaces.get(entry.luid)
        return route_row(entry, interface.index if interface else 0)

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
        windows = self.windows
        if destination_ptr is None or row_ptr is None or best_source_ptr is None:
            return ERROR_INVALID_PARAMETER
        windows.check(source_ptr is None, "GetBestRoute2: no source constraint expected")
        family, destination = unpack_sockaddr(ctypes.string_at(destination_ptr, SOCKADDR_INET_SIZE))
        if destination is None:
            return ERROR_INVALID_PARAMETER
        scope = struct.unpack("<Q", ctypes.string_at(luid_ptr, 8))[0] if luid_ptr is not None else None
        with windows.lock:
            if scope is not None and scope not in windows.interfaces:
                return ERROR_NOT_FOUND
            best: tuple[int, int, RouteEntry] | None = None
            for entry in self.routes.values():
                interface = windows.interfaces.get(entry.luid)
                if interface is None or entry.network.version != destination.version:
                    continue
                if scope is not None and entry.luid != scope:
                    continue  # constrained to one interface: only its routes
                if destination not in entry.network:
                    continue
                if destination.version == 4 and not interface.ipv4:
                    continue  # no source address on that interface
                rank = (-entry.network.prefixlen, entry.metric + interface.metric)
                if best is None or rank < best[:2]:
                    best = (rank[0], rank[1], entry)
            if best is None:
                return ERROR_NETWORK_UNREACHABLE
            entry = best[2]
            source: IPv4Address | IPv6Address | None = (
                windows.interfaces[entry.luid].ipv4[0][0] if family == AF_INET else None
            )
            row = self.route_row(entry)
        ctypes.memmove(row_ptr, row, FORWARD_SIZE)
        ctypes.memmove(best_source_ptr, pack_sockaddr(source), SOCKADDR_INET_SIZE)
        return ERROR_SUCCESS

    # Interfaces ------------------------------------------------------------------------------------------

    def interface_row(self, interface: FakeInterface, family: int) -> bytes:
        return interface_row(family, interface.luid, interface.index, interface.metric, interface.params[family])

    @export(DWORD, VP)
    def GetIpInterfaceEntry(self, row: int | None) -> int:
        if row is None:
            return ERROR_INVALID_PARAMETER
        wanted = decode_interface(ctypes.string_at(row, IPIF_SIZE))
        family, luid = wanted.family, wanted.luid
        if family not in (AF_INET, AF_INET6):
            return ERROR_INVALID_PARAMETER
        with self.windows.lock:
            self.calls.append("get_interface")
            interface = self.windows.interfaces.get(luid)
            if interface is None or not (interface.ipv6_bound if family == AF_INET6 else interface.ipv4_bound):
                return ERROR_NOT_FOUND
            data = self.interface_row(interface, family)
        ctypes.memmove(row, data, IPIF_SIZE)
        return ERROR_SUCCESS

    @export(DWORD, VP)
    def SetIpInterfaceEntry(self, row: int | None) -> int:
        windows = self.windows
        if row is None:
            return ERROR_INVALID_PARAMETER
        if not windows.admin:
            return ERROR_ACCESS_DENIED
        wanted = decode_interface(ctypes.string_at(row, IPIF_SIZE))
        with windows.lock:
            self.calls.append("set_interface")
            interface = windows.interfaces.get(wanted.luid)
            if interface is None or wanted.family not in interface.params:
                return ERROR_NOT_FOUND
            code = wanted.invalid(interface.max_mtu)
            if code:
                return code
            wanted.apply(interface.params[wanted.family])
        return ERROR_SUCCESS


class FakeWs2(FakeDll):
    def __init__(self, windows: FakeWindows) -> None:
        super().__init__(windows)
        self.sockopts: list[tuple[int, int, int, bytes]] = []
        self.ioctls: list[tuple[int, int, bytes]] = []
        self.fail_ioctls = False

    @export(ctypes.c_int, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, VP, ctypes.c_int)
    def setsockopt(self, sock: int, level: int, name: int, value: int | None, length: int) -> int:
        data = ctypes.string_at(value, length) if value else b""
        with self.windows.lock:
            self.sockopts.append((sock, level, name, data))
        return 0

    @export(ctypes.c_int, ctypes.c_size_t, DWORD, VP, DWORD, VP, DWORD, VP, VP, VP)
    def WSAIoctl(
        self,
        sock: int,
        code: int,
        in_ptr: int | None,
        in_len: int,
        _out_ptr: int | None,
        _out_len: int,
        returned_ptr: int | None,
        overlapped: int | None,
        completion: int | None,
    ) -> int:
        windows = self.windows
        windows.check(overlapped is None and completion is None, "WSAIoctl: not an overlapped call")
        # Documented: lpcbBytesReturned may not be NULL for a non-overlapped call.
        windows.check(returned_ptr is not None, "WSAIoctl: lpcbBytesReturned is NULL")
        data = ctypes.string_at(in_ptr, in_len) if in_ptr else b""
        if code in (SIO_UDP_CONNRESET, SIO_UDP_NETRESET):
            windows.check(in_len == 4, f"WSAIoctl(0x{code:08X}): the input is a 4-byte BOOL")
        with windows.lock:
            self.ioctls.append((sock, code, data))
        if self.fail_ioctls:
            windows.set_last_error(WSAEOPNOTSUPP)
            return -1
        if returned_ptr is not None:
            ctypes.memmove(returned_ptr, struct.pack("<I", 0), 4)
        return 0


class FakeShell32(FakeDll):
    @export(ctypes.c_int32)
    def IsUserAnAdmin(self) -> int:
        return 1 if self.windows.admin else 0


class FakeWindows(Host):
    """One fake host: its DLLs share its state (interfaces, handles, last errors)."""

    def __init__(self) -> None:
        super().__init__()
        self.admin = True
        self.ipv6_on_new_adapters = True
        self.registry: dict[tuple[str, str], int] = {}
        self.interfaces: dict[int, FakeInterface] = {}
        self._net_luid_index = 0
        self.kernel32 = FakeKernel32(self)
        self.wintun = FakeWintun(self)
        self.iphlpapi = FakeIpHelper(self)
        self.ws2_32 = FakeWs2(self)
        self.shell32 = FakeShell32(self)
        self.dll_loads: list[tuple[str, int]] = []

    def api(self) -> WinApi:
        return WinApi(
            kernel32=self.kernel32,
            iphlpapi=self.iphlpapi,
            ws2_32=self.ws2_32,
            shell32=self.shell32,
            dll_from_handle=self._dll_from_handle,
            get_last_error=self.get_last_error,
            functype=ctypes.CFUNCTYPE,
            format_error=lambda code: f"fake system message {code}",
            registry_dword=self._registry_dword,
        )

    def _dll_from_handle(self, name: str, handle: int) -> object:
        with self.lock:
            self.dll_loads.append((name, handle))
            if self.kernel32.modules.get(handle, "").lower() != name.lower():
                raise AssertionError(f"{name}: {handle} is not a module handle LoadLibraryExW returned for it")
        return self.wintun

    def _registry_dword(self, path: str, name: str) -> int | None:
        return self.registry.get((path, name))

    # The host's network, as tests shape it -----------------------------------------------------------------

    def add_interface(
        self, alias: str, *, if_type: int = IF_TYPE_ETHERNET_CSMACD, max_mtu: int = 1500
    ) -> FakeInterface:
        with self.lock:
            self._net_luid_index += 1
            index = self._net_luid_index
            interface = FakeInterface(luid_of(if_type, index), index + 10, alias, if_type, max_mtu=max_mtu)
            for family in (AF_INET, AF_INET6):
                interface.params[family] = default_interface_params(
                    family, min(max_mtu, 1500) if if_type != IF_TYPE_PROP_VIRTUAL else max_mtu
                )
            self.interfaces[interface.luid] = interface
            return interface

    def interface_by_alias(self, alias: str) -> FakeInterface | None:
        with self.lock:
            for interface in self.interfaces.values():
                if interface.alias.casefold() == alias.casefold():
                    return interface
            return None

    def remove_interface(self, luid: int) -> None:
        with self.lock:
            interface = self.interfaces.get(luid)
            if interface is None:
                return
            gone_routes = [key for key, entry in self.iphlpapi.routes.items() if entry.luid == luid]
            routes = [self.iphlpapi.route_row(self.iphlpapi.routes.pop(key)) for key in gone_routes]
            gone = [key for key in self.iphlpapi.unicast if key[0] == luid]
            for key in gone:
                del self.iphlpapi.unicast[key]
            addresses = list(interface.ipv4)
            del self.interfaces[luid]
        for address, prefixlen in addresses:
            self.iphlpapi.notify("address", AF_INET, self._unicast_row(luid, address, prefixlen), MIB_DELETE_INSTANCE)
        for row in routes:
            (family,) = struct.unpack_from("<H", row, F_NEXTHOP)
            self.iphlpapi.notify("route", family, row, MIB_DELETE_INSTANCE)

    def _unicast_row(self, luid: int, address: IPv4Address, prefixlen: int) -> bytes:
        return unicast_row(luid, address, prefixlen)

    def _interface(self, alias: str) -> FakeInterface:
        interface = self.interface_by_alias(alias)
        assert interface is not None, f"no fake interface {alias}"
        return interface

    def add_ipv4_address(self, alias: str, address: IPv4Address, prefixlen: int) -> None:
        with self.lock:
            interface = self._interface(alias)
            interface.ipv4.append((address, prefixlen))
        self.iphlpapi.notify(
            "address", AF_INET, self._unicast_row(interface.luid, address, prefixlen), MIB_ADD_INSTANCE
        )

    def remove_ipv4_address(self, alias: str, address: IPv4Address) -> None:
        with self.lock:
            interface = self._interface(alias)
            prefixlen = next(p for a, p in interface.ipv4 if a == address)
            interface.ipv4 = [(a, p) for a, p in interface.ipv4 if a != address]
        self.iphlpapi.notify(
            "address", AF_INET, self._unicast_row(interface.luid, address, prefixlen), MIB_DELETE_INSTANCE
        )

    def add_ipv4_route(self, alias: str, network: IPv4Network, next_hop: IPv4Address | None, metric: int) -> None:
        with self.lock:
            interface = self._interface(alias)
            entry = RouteEntry(interface.luid, network, next_hop or IPv4Address(0), metric, 3)
            self.iphlpapi.routes[(entry.luid, network, entry.next_hop)] = entry
            row = self.iphlpapi.route_row(entry)
        self.iphlpapi.notify("route", AF_INET, row, MIB_ADD_INSTANCE)

    def remove_ipv4_route(self, alias: str, network: IPv4Network) -> None:
        with self.lock:
            interface = self._interface(alias)
            keys = [k for k in self.iphlpapi.routes if k[0] == interface.luid and k[1] == network]
            rows = [self.iphlpapi.route_row(self.iphlpapi.routes.pop(k)) for k in keys]
        for row in rows:
            self.iphlpapi.notify("route", AF_INET, row, MIB_DELETE_INSTANCE)

    def wait_notifications(self, timeout: float = 2.0) -> None:
        """Until every queued notification has been delivered (callbacks returned)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                registrations = list(self.iphlpapi.registrations.values())
            if all(r.queue.empty() for r in registrations):
                time.sleep(0.01)  # the item taken last may still be in its callback
                if all(r.queue.empty() for r in registrations):
                    return
            time.sleep(0.005)
        raise AssertionError("notifications not delivered in time")


@contextlib.contextmanager
def fake_windows() -> Iterator[FakeWindows]:
    """A fake host; fails the test if the code under test broke an API contract on it."""
    windows = FakeWindows()
    yield windows
    assert windows.violations == [], windows.violations
