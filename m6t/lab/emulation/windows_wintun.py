"""An emulated ``wintun.dll`` 0.14 whose adapters are real Linux TUN interfaces.

What Wintun documents (``wintun.h``) and this emulation does the same way:

* ``WintunCreateAdapter``: "Creates a new Wintun adapter ... @return If the function succeeds, the return
  value is the adapter handle"; here a non-persistent Linux TUN named after the adapter, whose fd the
  adapter holds.  ``WintunCloseAdapter``: "Releases Wintun adapter resources and, if adapter was created
  with WintunCreateAdapter, removes adapter" (closing the fd removes the Linux interface).
* A session is the adapter's media: the interface is up while one runs, down otherwise.
* ``WintunReceivePacket``: "Retrieves one or packet ... Possible errors include the following:
  ERROR_HANDLE_EOF Wintun adapter is terminating; ERROR_NO_MORE_ITEMS Wintun buffer is exhausted".
  As ``api/session.c`` checks the ring's state before looking for packets, a terminating adapter answers
  ERROR_HANDLE_EOF even with packets still queued: they are lost.
* ``WintunGetReadWaitEvent``: "Should WintunReceivePackets return ERROR_NO_MORE_ITEMS (after spinning on
  it for a while under heavy load), wait for this event to become signaled before retrying ... Do not call
  CloseHandle on this event - it is managed by the session."  The event is auto-reset (session.c creates
  it with ``bManualReset = FALSE``) and is signalled when the driver puts packets in the ring.
* ``WintunReleaseReceivePacket``: the packet's ring slot goes back to the driver (scribbled here).
* ``WintunAllocateSendPacket``: "Possible errors include the following: ERROR_HANDLE_EOF Wintun adapter is
  terminating; ERROR_BUFFER_OVERFLOW Wintun buffer is full"; "the WintunAllocateSendPacket order of calls
  define the packet sending order": the driver consumes the ring from its head, so a packet sent before an
  earlier allocation is sent waits for it.
* Rings: each packet takes ``TUN_ALIGN(sizeof(TUN_PACKET) + size)`` bytes and the ring keeps one
  alignment unit free (session.c's ``TUN_RING_WRAP(Head - Tail - TUN_ALIGNMENT, Capacity)``); a full ring
  toward the application drops what the stack routes into the adapter, as the driver does.

Where the Linux TUN differs and the emulation cannot hide it: interface names are at most 15 bytes (Wintun
takes 127 characters; longer names are refused with ERROR_INVALID_PARAMETER), a name held by another
Linux interface is refused (Wintun would rename the other adapter), and the adapter dies with the process
(a Wintun adapter outlives a crashed creator).  The driver's own consumption of the ring toward the stack is
immediate, so ERROR_BUFFER_OVERFLOW only shows when allocations are not sent.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
import select
import struct
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from m6t.lab.emulation.windows_abi import (
    DWORD,
    ERROR_ACCESS_DENIED,
    ERROR_ALREADY_EXISTS,
    ERROR_ALREADY_INITIALIZED,
    ERROR_BUFFER_OVERFLOW,
    ERROR_FILE_NOT_FOUND,
    ERROR_HANDLE_EOF,
    ERROR_INVALID_HANDLE,
    ERROR_INVALID_PARAMETER,
    IF_TYPE_PROP_VIRTUAL,
    SCRIBBLE,
    TUN_ALIGNMENT,
    VP,
    WINTUN_MAX_RING,
    WINTUN_MIN_RING,
    WINTUN_VERSION,
    Dll,
    Host,
    Kernel32Dll,
    ReceiveRing,
    export,
    luid_of,
    ring_bytes,
)
from m6t.lab.emulation.windows_iphlpapi import NetlinkThread
from m6t.platform.base import PlatformError

log = logging.getLogger(__name__)

LINUX_IFNAMSIZ = 16
MAX_PACKET = 0xFFFF


@dataclass
class Session:
    handle: int
    adapter: Adapter
    capacity: int
    read_event: int
    to_app: ReceiveRing
    to_stack: deque[list[Any]] = field(default_factory=deque)
    """Allocated packets in allocation order: [buffer, sent]."""
    to_stack_used: int = 0
    ended: bool = False
    terminating: bool = False
    stop_r: int = -1
    stop_w: int = -1
    pump: threading.Thread | None = None

    def room(self, used: int) -> int:
        return self.capacity - used - TUN_ALIGNMENT


@dataclass
class Adapter:
    name: str
    guid: uuid.UUID
    fd: int
    ifindex: int
    session: Session | None = None

    @property
    def luid(self) -> int:
        return luid_of(IF_TYPE_PROP_VIRTUAL, self.ifindex)


class WintunDll(Dll):
    def __init__(self, windows: Host, kernel32: Kernel32Dll, netlink: NetlinkThread, *, admin: bool) -> None:
        super().__init__(windows)
        self.kernel32 = kernel32
        self.netlink = netlink
        self.admin = admin
        self.adapters: dict[str, Adapter] = {}
        self.handles: dict[int, tuple[Adapter, bool]] = {}
        self.sessions: dict[int, Session] = {}
        self.logger: Any = None
        self.ever_loaded = False

    def _log(self, level: int, message: str) -> None:
        logger = self.logger
        if logger is not None:
            logger(level, 0, message)

    def _session(self, handle: int | None, what: str) -> Session | None:
        session = self.sessions.get(handle or 0)
        if session is None or session.ended:
            self.windows.violation(f"{what}: {handle} is not a running session")
            return None
        return session

    # Adapters --------------------------------------------------------------------------------------------

    @export(VP, VP, VP, VP)
    def WintunCreateAdapter(self, name_ptr: int | None, type_ptr: int | None, guid_ptr: int | None) -> int:
        windows = self.windows
        name = ctypes.wstring_at(name_ptr) if name_ptr else ""
        tunnel_type = ctypes.wstring_at(type_ptr) if type_ptr else ""
        if not self.admin:
            windows.set_last_error(ERROR_ACCESS_DENIED)
            return 0
        if not name or len(name.encode()) >= LINUX_IFNAMSIZ or not tunnel_type or len(tunnel_type) >= 128:
            windows.set_last_error(ERROR_INVALID_PARAMETER)
            return 0
        guid = uuid.UUID(bytes_le=ctypes.string_at(guid_ptr, 16)) if guid_ptr else uuid.uuid4()
        with windows.lock:
            if any(other.guid == guid for other in self.adapters.values()) or name.casefold() in self.adapters:
                windows.set_last_error(ERROR_ALREADY_EXISTS)
                return 0
            try:
                fd, actual = open_tun(name)
            except PlatformError as exc:
                log.warning("emulated Wintun: cannot create %s: %s", name, exc)
                windows.set_last_error(ERROR_ALREADY_EXISTS if "busy" in str(exc).lower() else ERROR_ACCESS_DENIED)
                return 0
            adapter = Adapter(actual, guid, fd, _ifindex(actual))
            self.adapters[name.casefold()] = adapter
            handle = windows.new_handle()
            self.handles[handle] = (adapter, True)
            self.ever_loaded = True
        self._log(0, f"Creating adapter {name} ({tunnel_type}) as Linux TUN {actual}")
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
        with self.windows.lock:
            entry = self.handles.pop(handle, None)
            if entry is None:
                self.windows.violation(f"WintunCloseAdapter: {handle} is not an open adapter handle")
                return
            adapter, owner = entry
            if not owner:
                return
            self.windows.check(
                adapter.session is None or adapter.session.ended, "WintunCloseAdapter with a running session"
            )
            self.adapters.pop(adapter.name.casefold(), None)
        # Closing the last fd of a non-persistent TUN removes the Linux interface (and its addresses and routes).
        os.close(adapter.fd)

    @export(None, VP, VP)
    def WintunGetAdapterLUID(self, handle: int | None, luid_ptr: int | None) -> None:
        entry = self.handles.get(handle or 0)
        if entry is None or luid_ptr is None:
            self.windows.violation(f"WintunGetAdapterLUID: {handle} is not an open adapter handle")
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
        self.logger = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint64, ctypes.c_wchar_p)(callback)

    # Sessions --------------------------------------------------------------------------------------------

    @export(VP, VP, DWORD)
    def WintunStartSession(self, handle: int | None, capacity: int) -> int:
        windows = self.windows
        with windows.lock:
            entry = self.handles.get(handle or 0)
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
            _drain(adapter.fd)  # what the stack sent while no session ran was dropped by the driver
            read_event = self.kernel32.new_event(manual_reset=False, owner="wintun")
            session = Session(windows.new_handle(), adapter, capacity, read_event, ReceiveRing(capacity))
            session.stop_r, session.stop_w = os.pipe()
            session.pump = threading.Thread(target=self._pump, args=(session,), name="wintun-driver", daemon=True)
            self.sessions[session.handle] = session
            adapter.session = session
        self.netlink.call("link", "set", index=adapter.ifindex, state="up")  # media connected while a session runs
        session.pump.start()
        return session.handle

    @export(None, VP)
    def WintunEndSession(self, handle: int | None) -> None:
        with self.windows.lock:
            session = self._session(handle, "WintunEndSession")
            if session is None:
                return
            session.ended = True
            self.kernel32.events.pop(session.read_event, None)
            session.to_app.end()
        os.write(session.stop_w, b"\0")
        if session.pump is not None and session.pump is not threading.current_thread():
            session.pump.join(5.0)
        os.close(session.stop_r)
        os.close(session.stop_w)
        with contextlib.suppress(Exception):
            self.netlink.call("link", "set", index=session.adapter.ifindex, state="down")

    @export(VP, VP)
    def WintunGetReadWaitEvent(self, handle: int | None) -> int:
        with self.windows.lock:
            session = self._session(handle, "WintunGetReadWaitEvent")
            return session.read_event if session is not None else 0

    def _pump(self, session: Session) -> None:
        """The driver's side of the ring toward the application: what the stack routes into the adapter."""
        fd = session.adapter.fd
        while True:
            try:
                readable, _, _ = select.select([fd, session.stop_r], [], [])
            except (OSError, ValueError):
                return
            if session.stop_r in readable:
                return
            arrived = 0
            while True:
                try:
                    packet = os.read(fd, MAX_PACKET)
                except BlockingIOError:
                    break
                except OSError as exc:
                    # The interface was removed under us (EBADFD from the TUN): the adapter is terminating.
                    why = os.strerror(exc.errno or 0)
                    log.info("emulated Wintun: %s is going away (%s)", session.adapter.name, why)
                    with self.windows.lock:
                        session.terminating = True
                        self.kernel32.signal(session.read_event)
                    return
                with self.windows.lock:
                    if session.ended:
                        return
                    arrived += session.to_app.put(packet)
            if arrived:
                self.kernel32.signal(session.read_event)

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
            return session.to_app.receive(windows, size_ptr, terminating=session.terminating)

    @export(None, VP, VP)
    def WintunReleaseReceivePacket(self, handle: int | None, packet: int | None) -> None:
        with self.windows.lock:
            session = self._session(handle, "WintunReleaseReceivePacket")
            if session is not None:
                session.to_app.release(self.windows, packet)

    @export(VP, VP, DWORD)
    def WintunAllocateSendPacket(self, handle: int | None, size: int) -> int:
        windows = self.windows
        with windows.lock:
            session = self._session(handle, "WintunAllocateSendPacket")
            if session is None or session.terminating:
                windows.set_last_error(ERROR_HANDLE_EOF)
                return 0
            if not 0 < size <= MAX_PACKET:
                windows.set_last_error(ERROR_INVALID_PARAMETER)
                return 0
            need = ring_bytes(size)
            if need > session.room(session.to_stack_used):
                windows.set_last_error(ERROR_BUFFER_OVERFLOW)
                return 0
            session.to_stack_used += need
            buffer = ctypes.create_string_buffer(size)
            ctypes.memset(buffer, SCRIBBLE, size)  # fresh ring memory holds whatever was there before
            session.to_stack.append([buffer, False])
            return ctypes.addressof(buffer)

    @export(None, VP, VP)
    def WintunSendPacket(self, handle: int | None, packet: int | None) -> None:
        with self.windows.lock:
            session = self._session(handle, "WintunSendPacket")
            if session is None:
                return
            slot = next((s for s in session.to_stack if ctypes.addressof(s[0]) == packet and not s[1]), None)
            if slot is None:
                self.windows.violation(f"WintunSendPacket: {packet} was not allocated (or sent twice)")
                return
            slot[1] = True
            # The driver takes packets from the ring's head only, in allocation order.
            while session.to_stack and session.to_stack[0][1]:
                buffer, _ = session.to_stack.popleft()
                session.to_stack_used -= ring_bytes(len(buffer))
                with contextlib.suppress(OSError):  # the interface is going away: the packet is lost
                    os.write(session.adapter.fd, buffer.raw)

    def close(self) -> None:
        """The process exits: sessions end and created adapters go, as Windows cleans up after a process."""
        with self.windows.lock:
            sessions = [s.handle for s in self.sessions.values() if not s.ended]
            handles = list(self.handles)
        for session in sessions:
            self.WintunEndSession(session)
        for handle in handles:
            self.WintunCloseAdapter(handle)


def open_tun(name: str) -> tuple[int, str]:
    """The Linux backend's TUN creation (looked up at run time: the lab type-checks on every platform)."""
    tun: Any = importlib.import_module("m6t.platform.linux.tun")
    fd, actual = tun.open_tun(name)
    return int(fd), str(actual)


def _ifindex(name: str) -> int:
    import socket

    return socket.if_nametoindex(name)


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, MAX_PACKET):
            pass
