"""The one door to Windows: DLLs, callback type, last error, registry, Winsock ioctls, elevation.

Nothing else in this package touches ``ctypes.WinDLL``, ``ctypes.WINFUNCTYPE``, ``ctypes.get_last_error``
or ``winreg``: every Windows-facing class receives a :class:`WinApi`.  In the helper, :func:`native_api`
builds it from the real DLLs; the tests build it from faithful fakes (``tests/platform/windows_fakes.py``)
whose functions are genuine C function pointers with the documented prototypes, so every call crosses a
real ctypes boundary: a wrong structure layout, argument type or return type fails there as it would on
Windows.

Those names exist in typeshed for ``win32`` only, so they are looked up with ``getattr`` here: the package
type-checks on every platform and its logic runs on Linux against the fakes.
"""

from __future__ import annotations

import ctypes
import importlib
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from m6t.platform.base import PlatformError, PlatformErrorCode

# Windows ABI types.  Windows is LLP64: ULONG/DWORD stay 32-bit on x64, where Linux's c_ulong is 64-bit,
# so the fixed-width ctypes types are used throughout.
DWORD = ctypes.c_uint32
ULONG = ctypes.c_uint32
USHORT = ctypes.c_uint16
UINT8 = ctypes.c_uint8
BOOLEAN = ctypes.c_uint8
BOOL = ctypes.c_int32
ULONG64 = ctypes.c_uint64
LARGE_INTEGER = ctypes.c_int64
HANDLE = ctypes.c_void_p
SOCKET = ctypes.c_size_t
"""UINT_PTR: what ``socket.fileno()`` returns on Windows."""

# Win32 error codes (winerror.h) the backend acts on.
ERROR_SUCCESS = 0
ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_NOT_ENOUGH_MEMORY = 8
ERROR_INVALID_DATA = 13
ERROR_HANDLE_EOF = 38
ERROR_INVALID_PARAMETER = 87
ERROR_BUFFER_OVERFLOW = 111
ERROR_MOD_NOT_FOUND = 126
ERROR_ALREADY_EXISTS = 183
ERROR_BAD_EXE_FORMAT = 193
ERROR_NO_MORE_ITEMS = 259
ERROR_ELEVATION_REQUIRED = 740
ERROR_NOT_FOUND = 1168
ERROR_NETWORK_UNREACHABLE = 1231
ERROR_HOST_UNREACHABLE = 1232
ERROR_ALREADY_INITIALIZED = 1247
ERROR_OBJECT_ALREADY_EXISTS = 5010

WAIT_OBJECT_0 = 0
WAIT_TIMEOUT = 258
WAIT_FAILED = 0xFFFFFFFF
MAXIMUM_WAIT_OBJECTS = 64

LOAD_LIBRARY_SEARCH_APPLICATION_DIR = 0x00000200
LOAD_LIBRARY_SEARCH_SYSTEM32 = 0x00000800

# Windows' own address-family numbers: AF_INET6 is 23 there, whatever the host's socket module says.
AF_UNSPEC = 0
AF_INET = 2
AF_INET6 = 23

Function = Callable[..., Any]


class WinError(PlatformError):
    """A Windows call failed with a Win32 error code (``winerror``, as ``OSError.winerror``)."""

    def __init__(self, what: str, winerror: int, text: str, hint: str | None = None) -> None:
        denied = winerror in (ERROR_ACCESS_DENIED, ERROR_ELEVATION_REQUIRED)
        super().__init__(
            f"{what}: {text.strip() or 'unknown error'} (Windows error {winerror})",
            hint=hint,
            code=PlatformErrorCode.PERMISSION_DENIED if denied else PlatformErrorCode.OTHER,
        )
        self.winerror = winerror


@dataclass(frozen=True)
class WinApi:
    """What the Windows backend takes from the OS; :func:`native_api` or the tests' fakes provide it."""

    kernel32: object
    iphlpapi: object
    ws2_32: object
    shell32: object
    dll_from_handle: Callable[[str, int], object]
    """Wraps a module handle returned by ``LoadLibraryExW`` as a DLL object (``WinDLL(name, handle=h)``)."""
    get_last_error: Callable[[], int]
    """The calling thread's last Win32 error, as captured by ctypes right after the previous call."""
    functype: Callable[..., Any]
    """``WINFUNCTYPE``: the prototype factory for callbacks handed to the OS."""
    format_error: Callable[[int], str]
    registry_dword: Callable[[str, str], int | None]
    """A REG_DWORD under HKEY_LOCAL_MACHINE, ``None`` when the key or value is absent."""

    def error(self, what: str, code: int, hint: str | None = None) -> WinError:
        try:
            text = self.format_error(code)
        except Exception:
            text = ""
        return WinError(what, code, text, hint)


def bind(dll: object, name: str, restype: Any, *argtypes: Any) -> Function:
    """``dll.name`` with its C prototype declared, so that ctypes converts (and checks) every argument."""
    function = getattr(dll, name)
    function.restype = restype
    function.argtypes = argtypes
    return function  # type: ignore[no-any-return]


# The real thing ----------------------------------------------------------------------------------------

TCPIP6_PARAMETERS = r"SYSTEM\CurrentControlSet\Services\Tcpip6\Parameters"


def native_api() -> WinApi:
    """The real DLLs; only on Windows."""
    if sys.platform != "win32":
        raise PlatformError(f"the Windows backend cannot run on {sys.platform}")
    api: Any = ctypes
    windll = api.WinDLL

    def system_dll(name: str) -> object:
        # Only System32: the current directory (and PATH) must never supply a DLL to a privileged process.
        return windll(name, use_last_error=True, winmode=LOAD_LIBRARY_SEARCH_SYSTEM32)

    def from_handle(name: str, handle: int) -> object:
        return windll(name, handle=handle, use_last_error=True)

    return WinApi(
        kernel32=system_dll("kernel32.dll"),
        iphlpapi=system_dll("iphlpapi.dll"),
        ws2_32=system_dll("ws2_32.dll"),
        shell32=system_dll("shell32.dll"),
        dll_from_handle=from_handle,
        get_last_error=api.get_last_error,
        functype=api.WINFUNCTYPE,
        format_error=api.FormatError,
        registry_dword=_registry_dword,
    )


def _registry_dword(path: str, name: str) -> int | None:
    winreg: Any = importlib.import_module("winreg")
    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path) as key:
            value, kind = winreg.QueryValueEx(key, name)
    except OSError:
        return None
    if kind != winreg.REG_DWORD:
        return None
    return int(value)


# kernel32 ----------------------------------------------------------------------------------------------


class Kernel32:
    """Events, waits and library loading."""

    def __init__(self, api: WinApi) -> None:
        self._api = api
        k = api.kernel32
        self._create_event = bind(k, "CreateEventW", HANDLE, ctypes.c_void_p, BOOL, BOOL, ctypes.c_wchar_p)
        self._set_event = bind(k, "SetEvent", BOOL, HANDLE)
        self._reset_event = bind(k, "ResetEvent", BOOL, HANDLE)
        self._close_handle = bind(k, "CloseHandle", BOOL, HANDLE)
        self._wait_multiple = bind(k, "WaitForMultipleObjects", DWORD, DWORD, ctypes.POINTER(HANDLE), BOOL, DWORD)
        self._load_library = bind(k, "LoadLibraryExW", ctypes.c_void_p, ctypes.c_wchar_p, HANDLE, DWORD)

    def create_event(self, *, manual_reset: bool) -> int:
        handle = self._create_event(None, manual_reset, False, None)
        if not handle:
            raise self._api.error("CreateEventW", self._api.get_last_error())
        return int(handle)

    def set_event(self, handle: int) -> None:
        if not self._set_event(handle):
            raise self._api.error("SetEvent", self._api.get_last_error())

    def reset_event(self, handle: int) -> None:
        if not self._reset_event(handle):
            raise self._api.error("ResetEvent", self._api.get_last_error())

    def close_handle(self, handle: int) -> None:
        self._close_handle(handle)

    def wait_any(self, handles: Sequence[int], timeout_ms: int) -> int:
        """``WaitForMultipleObjects(bWaitAll=FALSE)``: the index of a signaled handle, or ``WAIT_TIMEOUT``."""
        array = (HANDLE * len(handles))(*handles)
        result = int(self._wait_multiple(len(handles), array, False, timeout_ms))
        if result == WAIT_FAILED:
            raise self._api.error("WaitForMultipleObjects", self._api.get_last_error())
        if result == WAIT_TIMEOUT:
            return WAIT_TIMEOUT
        return result - WAIT_OBJECT_0

    def load_library(self, name: str, flags: int) -> int:
        handle = self._load_library(name, None, flags)
        if not handle:
            raise self._api.error(f"LoadLibraryExW({name})", self._api.get_last_error())
        return int(handle)


# Winsock -----------------------------------------------------------------------------------------------

SIO_UDP_CONNRESET = 0x9800000C
"""_WSAIOW(IOC_VENDOR, 12): FALSE stops an ICMP port unreachable from failing the next recvfrom."""
SIO_UDP_NETRESET = 0x9800000F
"""_WSAIOW(IOC_VENDOR, 15): the same for ICMP time exceeded (WSAENETRESET)."""


IPPROTO_IP = 0
IP_DONTFRAGMENT = 14
"""Windows' own option (14 is IP_MTU on Linux): FALSE, the default, leaves DF clear on what we send."""
IP_UNICAST_IF = 31
"""ws2ipdef.h: "Gets or sets the outgoing interface for sending IPv4 traffic ... This DWORD parameter must be
an interface index in network byte order" (Microsoft, IPPROTO_IP socket options)."""


class Winsock:
    """ws2_32 calls Python does not offer: ``socket.ioctl`` accepts only three control codes, none of the
    UDP ones, and ``IP_DONTFRAGMENT`` means something else to the host's socket module on other OSes."""

    def __init__(self, api: WinApi) -> None:
        self._api = api
        self._setsockopt = bind(
            api.ws2_32, "setsockopt", ctypes.c_int, SOCKET, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int
        )
        self._ioctl = bind(
            api.ws2_32,
            "WSAIoctl",
            ctypes.c_int,
            SOCKET,
            DWORD,
            ctypes.c_void_p,
            DWORD,
            ctypes.c_void_p,
            DWORD,
            ctypes.POINTER(DWORD),
            ctypes.c_void_p,
            ctypes.c_void_p,
        )

    def set_dont_fragment(self, sock: socket.socket, value: bool) -> None:
        flag = DWORD(1 if value else 0)
        if self._setsockopt(sock.fileno(), IPPROTO_IP, IP_DONTFRAGMENT, ctypes.byref(flag), ctypes.sizeof(flag)) != 0:
            raise self._api.error("setsockopt(IP_DONTFRAGMENT)", self._api.get_last_error())

    def set_unicast_interface(self, sock: socket.socket, index: int) -> None:
        """``IP_UNICAST_IF``: what ``sock`` sends leaves through interface ``index``; set before ``connect`` so
        that the route and source address are chosen through it too."""
        value = ctypes.create_string_buffer(struct.pack("!I", index), 4)
        if self._setsockopt(sock.fileno(), IPPROTO_IP, IP_UNICAST_IF, value, 4) != 0:
            raise self._api.error(f"setsockopt(IP_UNICAST_IF, {index})", self._api.get_last_error())

    def set_bool_ioctl(self, sock: socket.socket, code: int, value: bool) -> None:
        flag = BOOL(1 if value else 0)
        returned = DWORD(0)
        result = self._ioctl(
            sock.fileno(), code, ctypes.byref(flag), ctypes.sizeof(flag), None, 0, ctypes.byref(returned), None, None
        )
        if result != 0:
            raise self._api.error(f"WSAIoctl(0x{code:08X})", self._api.get_last_error())


# shell32 -----------------------------------------------------------------------------------------------


def is_admin(api: WinApi) -> bool:
    """Elevated Administrator or LocalSystem: what creating adapters and changing routes requires."""
    return bool(bind(api.shell32, "IsUserAnAdmin", BOOL)())
