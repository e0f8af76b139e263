"""Wintun (wintun.dll 0.14 API, ``wintun.h``) and the TUN device built on it.

* The DLL is loaded with ``LoadLibraryExW("wintun.dll", LOAD_LIBRARY_SEARCH_APPLICATION_DIR |
  LOAD_LIBRARY_SEARCH_SYSTEM32)``: from the directory of the helper's executable (the installer puts it
  next to ``m6t-helper.exe``) and nowhere else, never the current directory, because a privileged
  process must not load a planted DLL.  Its own dependencies come from System32.
* The adapter GUID is derived from the adapter name (UUIDv5), so that every run, and every reinstall,
  presents the same adapter to Windows: NLA keeps one network profile for it instead of a new
  "Network 17" each time.
* Packets cross the rings as bare IP packets: Wintun adds no header of its own.
* Reading: Wintun signals an event when packets arrive; a reader thread waits on it (and on a stop event,
  with a timeout as a last resort), drains the ring until ``ERROR_NO_MORE_ITEMS``, copies each packet
  out before releasing it, and hands the batch to the asyncio loop with ``call_soon_threadsafe``.  This
  works with the Proactor loop, which has no ``add_reader``.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
import uuid
from typing import Any

from m6t.platform.base import PacketsCallback, PlatformError, PlatformErrorCode, TunDevice
from m6t.platform.windows.iphlpapi import IpHelper
from m6t.platform.windows.system import (
    DWORD,
    ERROR_ACCESS_DENIED,
    ERROR_ALREADY_EXISTS,
    ERROR_ALREADY_INITIALIZED,
    ERROR_BAD_EXE_FORMAT,
    ERROR_BUFFER_OVERFLOW,
    ERROR_ELEVATION_REQUIRED,
    ERROR_FILE_NOT_FOUND,
    ERROR_HANDLE_EOF,
    ERROR_MOD_NOT_FOUND,
    ERROR_NO_MORE_ITEMS,
    HANDLE,
    LOAD_LIBRARY_SEARCH_APPLICATION_DIR,
    LOAD_LIBRARY_SEARCH_SYSTEM32,
    ULONG64,
    Kernel32,
    WinApi,
    WinError,
    bind,
)

log = logging.getLogger(__name__)

WINTUN_DLL = "wintun.dll"
WINTUN_LOAD_FLAGS = LOAD_LIBRARY_SEARCH_APPLICATION_DIR | LOAD_LIBRARY_SEARCH_SYSTEM32
WINTUN_HINT = "reinstall m6t; wintun.dll must sit next to m6t-helper.exe"
TUNNEL_TYPE = "m6t"
"""Wintun's tunnel type: it labels the adapter (its device description) for people looking at it."""

WINTUN_MIN_RING_CAPACITY = 0x20000
WINTUN_MAX_RING_CAPACITY = 0x4000000
RING_CAPACITY = 0x400000
"""4 MiB per direction: about 2800 full-size packets, a few milliseconds at a gigabit of bursts."""
WINTUN_MAX_IP_PACKET_SIZE = 0xFFFF
MAX_ADAPTER_NAME = 128
"""Characters, the terminating NUL included."""

MAX_BATCH = 256
"""Packets per hand-over at most, so one busy adapter cannot starve the UDP side of the loop."""
MAX_PENDING_BATCHES = 8
"""Batches handed to the loop and not yet delivered: beyond, the reader leaves packets in the ring,
where Wintun drops them when it fills up, instead of queueing without bound in the loop."""
WAIT_MS = 250
"""The reader's wait timeout: the stop event ends the wait at once; this only bounds a lost signal."""
JOIN_TIMEOUT = 5.0

WINTUN_LOG_INFO, WINTUN_LOG_WARN, WINTUN_LOG_ERR = 0, 1, 2

_KEEP_ALIVE: list[Any] = []

ADAPTER_GUID_NAMESPACE = uuid.UUID("ff945ba4-7016-4c6f-8f11-545aefd44130")
"""Fixed forever: changing it would give every existing installation a new adapter identity."""


class GUID(ctypes.Structure):
    _fields_ = (
        ("Data1", ctypes.c_uint32),
        ("Data2", ctypes.c_uint16),
        ("Data3", ctypes.c_uint16),
        ("Data4", ctypes.c_uint8 * 8),
    )


def adapter_guid(name: str) -> uuid.UUID:
    """The adapter's stable GUID: interface aliases are case-insensitive, so is the derivation."""
    return uuid.uuid5(ADAPTER_GUID_NAMESPACE, name.casefold())


def guid_struct(value: uuid.UUID) -> GUID:
    # A GUID's first three fields are little-endian in memory: exactly UUID.bytes_le.
    return GUID.from_buffer_copy(value.bytes_le)


def validate_adapter_name(name: str) -> None:
    if not name or not name.strip():
        raise PlatformError("empty interface name", hint="choose a name such as m6t0")
    if len(name) >= MAX_ADAPTER_NAME:
        raise PlatformError(
            f"interface name {name!r} is {len(name)} characters long; Windows allows at most {MAX_ADAPTER_NAME - 1}",
            hint="choose a shorter name such as m6t0",
        )
    if "\0" in name:
        raise PlatformError(f"invalid interface name {name!r}", hint="choose a name such as m6t0")


class Wintun:
    """wintun.dll's functions with their ``wintun.h`` prototypes."""

    def __init__(self, dll: object, api: WinApi) -> None:
        self.api = api
        vp = ctypes.c_void_p
        self.create_adapter = bind(
            dll, "WintunCreateAdapter", vp, ctypes.c_wchar_p, ctypes.c_wchar_p, ctypes.POINTER(GUID)
        )
        self.open_adapter = bind(dll, "WintunOpenAdapter", vp, ctypes.c_wchar_p)
        self.close_adapter = bind(dll, "WintunCloseAdapter", None, vp)
        self.get_adapter_luid = bind(dll, "WintunGetAdapterLUID", None, vp, ctypes.POINTER(ULONG64))
        self.get_running_driver_version = bind(dll, "WintunGetRunningDriverVersion", DWORD)
        self.start_session = bind(dll, "WintunStartSession", vp, vp, DWORD)
        self.end_session = bind(dll, "WintunEndSession", None, vp)
        self.get_read_wait_event = bind(dll, "WintunGetReadWaitEvent", HANDLE, vp)
        self.receive_packet = bind(dll, "WintunReceivePacket", vp, vp, ctypes.POINTER(DWORD))
        self.release_receive_packet = bind(dll, "WintunReleaseReceivePacket", None, vp, vp)
        self.allocate_send_packet = bind(dll, "WintunAllocateSendPacket", vp, vp, DWORD)
        self.send_packet = bind(dll, "WintunSendPacket", None, vp, vp)
        set_logger = bind(dll, "WintunSetLogger", None, vp)
        # VOID (CALLBACK *)(WINTUN_LOGGER_LEVEL, DWORD64 Timestamp, LPCWSTR Message)
        logger = api.functype(None, ctypes.c_int, ctypes.c_uint64, ctypes.c_wchar_p)(_wintun_log)
        # Wintun keeps calling the last logger set, from its own threads, for as long as the DLL is loaded
        # (the whole process): the C callback must never be freed.
        _KEEP_ALIVE.append(logger)
        set_logger(logger)

    @classmethod
    def load(cls, api: WinApi, kernel32: Kernel32) -> Wintun:
        try:
            handle = kernel32.load_library(WINTUN_DLL, WINTUN_LOAD_FLAGS)
        except WinError as exc:
            if exc.winerror == ERROR_BAD_EXE_FORMAT:
                message = f"{WINTUN_DLL} is for another processor architecture"
            elif exc.winerror in (ERROR_MOD_NOT_FOUND, ERROR_FILE_NOT_FOUND):
                message = f"{WINTUN_DLL} is missing (the Wintun TUN driver)"
            else:
                message = f"cannot load {WINTUN_DLL}: {exc}"
            # Whatever the reason, there is no TUN driver this process can use.
            raise PlatformError(message, hint=WINTUN_HINT, code=PlatformErrorCode.TUN_MISSING) from exc
        return cls(api.dll_from_handle(WINTUN_DLL, handle), api)

    def driver_version(self) -> str | None:
        """The loaded driver's version ("0.14"), ``None`` before any adapter exists."""
        version = int(self.get_running_driver_version())
        if version == 0:
            return None
        return f"{version >> 16}.{version & 0xFFFF}"

    def last_error(self) -> int:
        return self.api.get_last_error()


def _wintun_log(level: int, _timestamp: int, message: str | None) -> None:
    try:
        if level >= WINTUN_LOG_ERR:
            log.error("wintun: %s", message)
        elif level == WINTUN_LOG_WARN:
            log.warning("wintun: %s", message)
        else:
            log.debug("wintun: %s", message)
    except Exception:  # an exception must never unwind into Wintun's thread
        pass


class WintunTun(TunDevice):
    """A Wintun adapter and its session, read by a thread that hands batches to the loop."""

    def __init__(
        self,
        name: str,
        *,
        wintun: Wintun,
        kernel32: Kernel32,
        iphlpapi: IpHelper,
        ring_capacity: int = RING_CAPACITY,
    ) -> None:
        validate_adapter_name(name)
        if not (
            WINTUN_MIN_RING_CAPACITY <= ring_capacity <= WINTUN_MAX_RING_CAPACITY
            and ring_capacity & (ring_capacity - 1) == 0
        ):
            raise ValueError(f"ring capacity {ring_capacity:#x} must be a power of two in Wintun's range")
        self._wintun = wintun
        self._kernel32 = kernel32
        self.guid = adapter_guid(name)
        self.name = name
        self.luid = 0
        self.dropped = 0
        """Packets ``write`` dropped because the ring toward Windows was full."""
        self.write_errors = 0
        """Packets Wintun refused (oversize, adapter terminating): dropped, never raised."""
        self.received = 0
        self._reader: _Reader | None = None
        self._stuck: _Reader | None = None
        self.adapter = 0
        self.session: int | None = None
        self._stop_event: int | None = None

        self.adapter, self.owned = self._create_or_open(name)
        try:
            self.session = self._start_session(name, ring_capacity)
            luid = ULONG64(0)
            wintun.get_adapter_luid(self.adapter, ctypes.byref(luid))
            self.luid = int(luid.value)
            self._read_event = int(wintun.get_read_wait_event(self.session))
            self._stop_event = kernel32.create_event(manual_reset=True)
            # Wintun renames a foreign adapter holding our name, but falls back to "name 1" when it cannot:
            # the alias Windows actually shows is the name everything else must use.
            self.name = iphlpapi.luid_to_alias(self.luid) or name
        except BaseException:
            self._release()
            raise

    def _create_or_open(self, name: str) -> tuple[int, bool]:
        wintun = self._wintun
        handle = wintun.create_adapter(name, TUNNEL_TYPE, ctypes.byref(guid_struct(self.guid)))
        if handle:
            return int(handle), True
        code = wintun.last_error()
        if code == ERROR_ALREADY_EXISTS:
            # An adapter with our GUID is alive (another helper, or one that outlived its creator): use it.
            # It is not ours to remove, so closing only releases our handle.
            handle = wintun.open_adapter(name)
            if handle:
                log.info("Wintun adapter %s already exists; opened it", name)
                return int(handle), False
            code = wintun.last_error()
        if code in (ERROR_ACCESS_DENIED, ERROR_ELEVATION_REQUIRED):
            raise wintun.api.error(
                f"cannot create Wintun adapter {name}",
                code,
                hint="run the m6t helper as its service (LocalSystem) or as an elevated Administrator",
            )
        raise wintun.api.error(f"cannot create Wintun adapter {name}", code, hint=WINTUN_HINT)

    def _start_session(self, name: str, capacity: int) -> int:
        session = self._wintun.start_session(self.adapter, capacity)
        if session:
            return int(session)
        code = self._wintun.last_error()
        if code == ERROR_ALREADY_INITIALIZED:
            busy = self._wintun.api.error(
                f"Wintun adapter {name} is already in use by another process",
                code,
                hint="stop the other m6t instance or choose another interface name",
            )
            busy.code = PlatformErrorCode.INTERFACE_BUSY
            raise busy
        raise self._wintun.api.error(f"cannot start a session on Wintun adapter {name}", code)

    # Reading ---------------------------------------------------------------------------------------------

    def start_reading(self, loop: asyncio.AbstractEventLoop, on_packets: PacketsCallback) -> None:
        if self.session is None or self._stop_event is None:
            raise PlatformError(f"TUN {self.name} is closed")
        self.stop_reading()
        if self._stuck is not None:
            if self._stuck.thread.is_alive():
                raise PlatformError(f"TUN {self.name}: the previous reader thread is still running")
            self._stuck = None
        self._kernel32.reset_event(self._stop_event)
        reader = _Reader(self, loop, on_packets, self.session, self._read_event, self._stop_event)
        self._reader = reader
        reader.thread.start()

    def stop_reading(self) -> None:
        reader, self._reader = self._reader, None
        if reader is None:
            return
        reader.stop()
        if self._stop_event is not None:
            self._kernel32.set_event(self._stop_event)
        if reader.thread is threading.current_thread():
            return
        reader.thread.join(JOIN_TIMEOUT)
        if reader.thread.is_alive():
            log.error("TUN %s: the reader thread did not stop", self.name)
            self._stuck = reader

    # Writing ---------------------------------------------------------------------------------------------

    def write(self, packet: bytes) -> None:
        session = self.session
        size = len(packet)
        if session is None or not 0 < size <= WINTUN_MAX_IP_PACKET_SIZE:
            self.write_errors += 1
            return
        wintun = self._wintun
        buffer = wintun.allocate_send_packet(session, size)
        if not buffer:
            if wintun.last_error() == ERROR_BUFFER_OVERFLOW:
                self.dropped += 1
            else:
                self.write_errors += 1
            return
        ctypes.memmove(buffer, packet, size)
        wintun.send_packet(session, buffer)

    # Closing ---------------------------------------------------------------------------------------------

    def close(self) -> None:
        if self.session is None and not self.adapter:
            return
        self.stop_reading()
        if self._stuck is not None and self._stuck.thread.is_alive():
            # The reader may still touch the session: leaking it beats a use-after-free.
            log.error("TUN %s: session left open because its reader thread is stuck", self.name)
            return
        self._release()

    def _release(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            self._wintun.end_session(session)
        adapter, self.adapter = self.adapter, 0
        if adapter:
            # An adapter we created disappears here; one we only opened stays for its owner.
            self._wintun.close_adapter(adapter)
        stop_event, self._stop_event = self._stop_event, None
        if stop_event is not None:
            self._kernel32.close_handle(stop_event)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "guid": str(self.guid),
            "luid": self.luid,
            "owned": self.owned,
            "received": self.received,
            "dropped": self.dropped,
            "write_errors": self.write_errors,
        }


class _Reader:
    """One reading run: its thread, its stop flag, and its bound on batches queued in the loop."""

    def __init__(
        self,
        tun: WintunTun,
        loop: asyncio.AbstractEventLoop,
        on_packets: PacketsCallback,
        session: int,
        read_event: int,
        stop_event: int,
    ) -> None:
        self.tun = tun
        self.loop = loop
        self.on_packets = on_packets
        self.session = session
        self.handles = (read_event, stop_event)
        self.stopping = threading.Event()
        self.pending = threading.Semaphore(MAX_PENDING_BATCHES)
        self.thread = threading.Thread(target=self.run, name=f"m6t-wintun-{tun.name}", daemon=True)

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        try:
            self.read_loop()
        except Exception:
            log.exception("TUN %s: reader thread failed; reading stopped", self.tun.name)

    def read_loop(self) -> None:
        tun = self.tun
        wintun = tun._wintun
        kernel32 = tun._kernel32
        receive = wintun.receive_packet
        release = wintun.release_receive_packet
        string_at = ctypes.string_at
        session = self.session
        size = DWORD(0)
        size_ref = ctypes.byref(size)
        stopping = self.stopping
        while not stopping.is_set():
            batch: list[bytes] = []
            finished = False
            while len(batch) < MAX_BATCH:
                packet = receive(session, size_ref)
                if not packet:
                    code = wintun.last_error()
                    if code != ERROR_NO_MORE_ITEMS:
                        finished = True
                        if code == ERROR_HANDLE_EOF:
                            log.info("TUN %s: the adapter is going away; reading stopped", tun.name)
                        else:
                            log.warning(
                                "TUN %s: WintunReceivePacket failed (error %d); reading stopped", tun.name, code
                            )
                    break
                # The ring slot is reused once released: copy first.
                batch.append(string_at(packet, size.value))
                release(session, packet)
            if batch and not self.hand_over(batch):
                return
            if finished:
                return
            if len(batch) == MAX_BATCH:
                continue  # the ring may hold more: read on without waiting
            which = kernel32.wait_any(self.handles, WAIT_MS)
            if which == 1:
                return

    def hand_over(self, batch: list[bytes]) -> bool:
        while not self.pending.acquire(timeout=WAIT_MS / 1000):
            if self.stopping.is_set():
                return False
        try:
            self.loop.call_soon_threadsafe(self.deliver, batch)
        except RuntimeError:  # the loop is closed: nobody is left to deliver to
            self.pending.release()
            return False
        return True

    def deliver(self, batch: list[bytes]) -> None:
        self.pending.release()
        if self.stopping.is_set():
            return  # read before stop_reading, delivered after: the caller no longer wants it
        self.tun.received += len(batch)
        self.on_packets(batch)
