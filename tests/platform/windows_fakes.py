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
"""

from __future__ import annotations

import contextlib
import ctypes
import queue
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Any

from m6t.platform.windows.system import WinApi

# Windows constants, restated here on purpose: the fakes must not trust the code under test's values.
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
IPPROTO_IP, IP_DONTFRAGMENT = 0, 14
IF_TYPE_ETHERNET_CSMACD, IF_TYPE_PROP_VIRTUAL = 6, 53
WINTUN_MIN_RING, WINTUN_MAX_RING = 0x20000, 0x4000000
WINTUN_VERSION = (0 << 16) | 14
MIB_ADD_INSTANCE, MIB_DELETE_INSTANCE = 1, 2

# Documented x64 layouts (netioapi.h, ws2ipdef.h).
SOCKADDR_INET_SIZE = 28
UNICAST_SIZE = 80
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


@dataclass
class FakeEvent:
    manual_reset: bool
    signaled: bool
    owner: str = ""
    """"wintun" for a session's read-wait event, which the application must not close."""


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


@dataclass
class FakeSession:
    handle: int
    adapter: FakeAdapter
    capacity: int
    read_event: int
    receive_ring: list[bytes] = field(default_factory=list)
    receive_used: int = 0
    outstanding: dict[int, tuple[Any, int]] = field(default_factory=dict)
    """Packets handed out by WintunReceivePacket and not released: address → (buffer, ring bytes)."""
    allocated: dict[int, Any] = field(default_factory=dict)
    send_used: int = 0
    ended: bool = False
    terminating: bool = False
    """The adapter is going away (device removed): receive and allocate answer ERROR_HANDLE_EOF."""
    ring_drops: int = 0


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


def _ring_bytes(size: int) -> int:
    # TUN_PACKET: a ULONG size then the data, aligned to 4 in the ring.
    return (4 + size + 3) & ~3


def export(restype: Any, *argtypes: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Marks a method as a DLL export with its C prototype."""

    def mark(method: Callable[..., Any]) -> Callable[..., Any]:
        method._c_prototype = (restype, argtypes)  # type: ignore[attr-defined]
        return method

    return mark


class FakeDll:
    """Turns every ``@export`` method into an instance attribute holding a real C function pointer."""

    def __init__(self, windows: FakeWindows) -> None:
        self.windows = windows
        for name in dir(type(self)):
            prototype = getattr(getattr(type(self), name), "_c_prototype", None)
            if prototype is None:
                continue
            restype, argtypes = prototype
            pointer = ctypes.CFUNCTYPE(restype, *argtypes)(windows.guard(name, getattr(self, name), restype))
            setattr(self, name, pointer)


VP = ctypes.c_void_p
DWORD = ctypes.c_uint32


class FakeKernel32(FakeDll):
    def __init__(self, windows: FakeWindows) -> None:
        super().__init__(windows)
        self.events: dict[int, FakeEvent] = {}
        self.cond = threading.Condition(windows.lock)
        self.load_calls: list[tuple[str, int]] = []
        self.modules: dict[int, str] = {}

    def new_event(self, *, manual_reset: bool, owner: str = "") -> int:
        with self.cond:
            handle = self.windows.new_handle()
            self.events[handle] = FakeEvent(manual_reset, False, owner)
            return handle

    def signal(self, handle: int) -> None:
        with self.cond:
            self.events[handle].signaled = True
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
            taken = 0
            for packet in packets:
                need = _ring_bytes(len(packet))
                if session.receive_used + need > session.capacity:
                    session.ring_drops += 1
                    continue
                session.receive_ring.append(packet)
                session.receive_used += need
                taken += 1
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
                adapter.session = FakeSession(windows.new_handle(), adapter, WINTUN_MIN_RING, read_event)
            self.adapters[name.casefold()] = adapter
            self.ever_loaded = True
            return adapter

    def terminate(self, name: str) -> None:
        """The adapter is being removed under the application (device disabled, driver update)."""
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
            freed = sum(_ring_bytes(n) for n in adapter.sent_sizes)
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
            session = FakeSession(session_handle, adapter, capacity, read_event)
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
            for address, (buffer, _) in session.outstanding.items():
                ctypes.memset(address, SCRIBBLE, len(buffer))
            session.outstanding.clear()

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
            if not session.receive_ring:
                windows.set_last_error(ERROR_HANDLE_EOF if session.terminating else ERROR_NO_MORE_ITEMS)
                return 0
            packet = session.receive_ring.pop(0)
            buffer = ctypes.create_string_buffer(packet, len(packet))
            address = ctypes.addressof(buffer)
            session.outstanding[address] = (buffer, _ring_bytes(len(packet)))
            if size_ptr is None:
                windows.violation("WintunReceivePacket: PacketSize is NULL")
                return 0
            ctypes.memmove(size_ptr, struct.pack("<I", len(packet)), 4)
            return address

    @export(None, VP, VP)
    def WintunReleaseReceivePacket(self, handle: int | None, packet: int | None) -> None:
        with self.windows.lock:
            session = self._session(handle, "WintunReleaseReceivePacket")
            if session is None:
                return
            entry = session.outstanding.pop(packet or 0, None)
            if entry is None:
                self.windows.violation(f"WintunReleaseReceivePacket: {packet} was not received (or twice)")
                return
            buffer, ring = entry
            session.receive_used -= ring
            # The slot goes back to the driver: whoever still reads it now reads garbage.
            ctypes.memset(ctypes.addressof(buffer), SCRIBBLE, len(buffer))

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
            need = _ring_bytes(size)
            if session.send_used + need > session.capacity:
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


@dataclass
class Registration:
    handle: int
    kind: str  # "address" or "route"
    family: int
    callback: Any
    queue: queue.Queue[tuple[bytes, int] | None]
    thread: threading.Thread
    cancelled: bool = False
    delivered: int = 0
    threads_seen: set[int] = field(default_factory=set)


class FakeIpHelper(FakeDll):
    def __init__(self, windows: FakeWindows) -> None:
        super().__init__(windows)
        self.unicast: dict[tuple[int, IPv4Address | IPv6Address], UnicastEntry] = {}
        self.routes: dict[tuple[int, IPv4Network | IPv6Network, IPv4Address | IPv6Address], RouteEntry] = {}
        self.registrations: dict[int, Registration] = {}
        self.calls: list[str] = []

    # Notifications ---------------------------------------------------------------------------------------

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
                target=self._deliver, args=(registration,), name=f"fake-os-{kind}-notify", daemon=True
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

    @export(None, VP)
    def InitializeUnicastIpAddressEntry(self, row: int | None) -> None:
        if row is None:
            return
        raw = bytearray(UNICAST_SIZE)
        struct.pack_into("<i", raw, U_PREFIX_ORIGIN, PREFIX_ORIGIN_UNCHANGED)
        struct.pack_into("<i", raw, U_SUFFIX_ORIGIN, SUFFIX_ORIGIN_UNCHANGED)
        struct.pack_into("<II", raw, U_VALID, 0xFFFFFFFF, 0xFFFFFFFF)
        raw[U_ONLINK] = 0xFF
        ctypes.memmove(row, bytes(raw), UNICAST_SIZE)

    def _read_unicast(self, row: int) -> tuple[int, UnicastEntry | None]:
        raw = ctypes.string_at(row, UNICAST_SIZE)
        family, address = unpack_sockaddr(raw[U_ADDRESS : U_ADDRESS + SOCKADDR_INET_SIZE])
        (luid,) = struct.unpack_from("<Q", raw, U_LUID)
        prefix_origin, suffix_origin, valid, preferred = struct.unpack_from("<iiII", raw, U_PREFIX_ORIGIN)
        prefixlen, skip = raw[U_ONLINK], raw[U_SKIP]
        (dad,) = struct.unpack_from("<i", raw, U_DAD)
        if address is None or prefixlen > (32 if family == AF_INET else 128):
            return ERROR_INVALID_PARAMETER, None
        interface = self.windows.interfaces.get(luid)
        if interface is None or not (interface.ipv6_bound if family == AF_INET6 else interface.ipv4_bound):
            return ERROR_NOT_FOUND, None
        return ERROR_SUCCESS, UnicastEntry(
            luid, address, prefixlen, prefix_origin, suffix_origin, valid, preferred, dad, skip
        )

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

    def _read_route(self, row: int) -> tuple[int, RouteEntry | None]:
        raw = ctypes.string_at(row, FORWARD_SIZE)
        (luid,) = struct.unpack_from("<Q", raw, F_LUID)
        family, prefix = unpack_sockaddr(raw[F_DEST : F_DEST + SOCKADDR_INET_SIZE])
        prefixlen = raw[F_DEST_PLEN]
        hop_family, next_hop = unpack_sockaddr(raw[F_NEXTHOP : F_NEXTHOP + SOCKADDR_INET_SIZE])
        (metric,) = struct.unpack_from("<I", raw, F_METRIC)
        (protocol,) = struct.unpack_from("<i", raw, F_PROTOCOL)
        if prefix is None or next_hop is None or hop_family != family:
            return ERROR_INVALID_PARAMETER, None
        try:
            net = ip_network((prefix, prefixlen))
        except ValueError:
            return ERROR_INVALID_PARAMETER, None  # host bits set, or prefix length out of range
        interface = self.windows.interfaces.get(luid)
        if interface is None or not (interface.ipv6_bound if family == AF_INET6 else interface.ipv4_bound):
            return ERROR_NOT_FOUND, None
        return ERROR_SUCCESS, RouteEntry(luid, net, next_hop, metric, protocol)

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
        raw = bytearray(FORWARD_SIZE)
        interface = self.windows.interfaces.get(entry.luid)
        struct.pack_into("<QI", raw, F_LUID, entry.luid, interface.index if interface else 0)
        raw[F_DEST : F_DEST + SOCKADDR_INET_SIZE] = pack_sockaddr(entry.network.network_address)
        raw[F_DEST_PLEN] = entry.network.prefixlen
        raw[F_NEXTHOP : F_NEXTHOP + SOCKADDR_INET_SIZE] = pack_sockaddr(entry.next_hop)
        struct.pack_into("<IIIi", raw, F_VALID, 0xFFFFFFFF, 0xFFFFFFFF, entry.metric, entry.protocol)
        return bytes(raw)

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
        windows.check(luid_ptr is None and source_ptr is None, "GetBestRoute2: no interface/source constraint expected")
        family, destination = unpack_sockaddr(ctypes.string_at(destination_ptr, SOCKADDR_INET_SIZE))
        if destination is None:
            return ERROR_INVALID_PARAMETER
        with windows.lock:
            best: tuple[int, int, RouteEntry] | None = None
            for entry in self.routes.values():
                interface = windows.interfaces.get(entry.luid)
                if interface is None or entry.network.version != destination.version:
                    continue
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

    @export(None, VP)
    def InitializeIpInterfaceEntry(self, row: int | None) -> None:
        if row is None:
            return
        raw = bytearray(IPIF_SIZE)
        struct.pack_into("<i", raw, I_ROUTER_DISCOVERY, -1)  # RouterDiscoveryUnchanged
        ctypes.memmove(row, bytes(raw), IPIF_SIZE)

    def interface_row(self, interface: FakeInterface, family: int) -> bytes:
        params = interface.params[family]
        raw = bytearray(IPIF_SIZE)
        struct.pack_into("<H", raw, I_FAMILY, family)
        struct.pack_into("<QI", raw, I_LUID, interface.luid, interface.index)
        raw[I_USE_AUTOMATIC_METRIC] = 1
        raw[I_MANAGED] = params["ManagedAddressConfigurationSupported"]
        raw[I_OTHER_STATEFUL] = params["OtherStatefulConfigurationSupported"]
        struct.pack_into("<iI", raw, I_ROUTER_DISCOVERY, params["RouterDiscoveryBehavior"], params["DadTransmits"])
        struct.pack_into("<III", raw, I_SITE_PLEN, params["SitePrefixLength"], interface.metric, params["NlMtu"])
        raw[I_CONNECTED] = 1
        return bytes(raw)

    @export(DWORD, VP)
    def GetIpInterfaceEntry(self, row: int | None) -> int:
        if row is None:
            return ERROR_INVALID_PARAMETER
        raw = ctypes.string_at(row, IPIF_SIZE)
        (family,) = struct.unpack_from("<H", raw, I_FAMILY)
        (luid,) = struct.unpack_from("<Q", raw, I_LUID)
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
        raw = ctypes.string_at(row, IPIF_SIZE)
        (family,) = struct.unpack_from("<H", raw, I_FAMILY)
        (luid,) = struct.unpack_from("<Q", raw, I_LUID)
        (router_discovery, dad) = struct.unpack_from("<iI", raw, I_ROUTER_DISCOVERY)
        (site_plen, _metric, mtu) = struct.unpack_from("<III", raw, I_SITE_PLEN)
        with windows.lock:
            self.calls.append("set_interface")
            interface = windows.interfaces.get(luid)
            if interface is None or family not in interface.params:
                return ERROR_NOT_FOUND
            if family == AF_INET and site_plen != 0:
                return ERROR_INVALID_PARAMETER  # documented quirk of SetIpInterfaceEntry
            if not (1280 if family == AF_INET6 else 576) <= mtu <= interface.max_mtu:
                return ERROR_INVALID_PARAMETER
            if router_discovery not in (-1, 0, 1, 2):
                return ERROR_INVALID_PARAMETER
            params = interface.params[family]
            params["NlMtu"] = mtu
            params["DadTransmits"] = dad
            if router_discovery != -1:
                params["RouterDiscoveryBehavior"] = router_discovery
            params["ManagedAddressConfigurationSupported"] = raw[I_MANAGED]
            params["OtherStatefulConfigurationSupported"] = raw[I_OTHER_STATEFUL]
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


class FakeWindows:
    """One fake host: its DLLs share its state (interfaces, handles, last errors)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.violations: list[str] = []
        self._last_error = threading.local()
        self._next_handle = 0x1000
        self.admin = True
        self.wintun_location: str | None = "application_dir"
        """Where wintun.dll sits: "application_dir", "current_dir" (planted), or None (missing)."""
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

    # Per-thread last error, as GetLastError ------------------------------------------------------------

    def set_last_error(self, code: int) -> None:
        self._last_error.code = code

    def get_last_error(self) -> int:
        return int(getattr(self._last_error, "code", 0))

    # Handles and contract checks ---------------------------------------------------------------------------

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
        """An exception must not unwind through C: record it as a violation and return a failure."""
        failure: Any = None if restype is None else 0

        def call(*args: Any) -> Any:
            try:
                return function(*args)
            except Exception as exc:
                self.violation(f"{name} raised {type(exc).__name__}: {exc}")
                return failure

        return call

    # The host's network, as tests shape it -----------------------------------------------------------------

    def add_interface(
        self, alias: str, *, if_type: int = IF_TYPE_ETHERNET_CSMACD, max_mtu: int = 1500
    ) -> FakeInterface:
        with self.lock:
            self._net_luid_index += 1
            index = self._net_luid_index
            interface = FakeInterface(luid_of(if_type, index), index + 10, alias, if_type, max_mtu=max_mtu)
            for family in (AF_INET, AF_INET6):
                interface.params[family] = {
                    "NlMtu": min(max_mtu, 1500) if if_type != IF_TYPE_PROP_VIRTUAL else max_mtu,
                    "DadTransmits": 1,
                    "RouterDiscoveryBehavior": 2 if family == AF_INET else 1,
                    "ManagedAddressConfigurationSupported": 0,
                    "OtherStatefulConfigurationSupported": 1,
                    "SitePrefixLength": 32 if family == AF_INET else 64,
                }
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
        raw = bytearray(UNICAST_SIZE)
        raw[U_ADDRESS : U_ADDRESS + SOCKADDR_INET_SIZE] = pack_sockaddr(address)
        struct.pack_into("<Q", raw, U_LUID, luid)
        raw[U_ONLINK] = prefixlen
        return bytes(raw)

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
