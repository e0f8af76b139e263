"""An emulated Windows host in the lab: the real :class:`~m6t.platform.windows.backend.WindowsBackend`
over emulated kernel32, wintun.dll, iphlpapi.dll, ws2_32 and shell32 that carry real packets through a
Linux TUN and apply their effects to the namespace's interfaces.

Only the construction differs from a real Windows: ``WindowsBackend(api)`` takes the :class:`WinApi` the
shipped helper gets from :func:`~m6t.platform.windows.system.native_api`; here it is built from the
emulated DLLs, whose exports are real C function pointers, so every call the backend makes crosses the
same ctypes boundary with the same prototypes as on Windows.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import logging
import os
import socket
import struct

from m6t.lab.emulation.windows_abi import (
    DWORD,
    IP_DONTFRAGMENT,
    IP_UNICAST_IF,
    IPPROTO_IP,
    SIO_UDP_CONNRESET,
    SIO_UDP_NETRESET,
    VP,
    WSAEOPNOTSUPP,
    Dll,
    Host,
    Kernel32Dll,
    export,
)
from m6t.lab.emulation.windows_iphlpapi import NetlinkIpHelper
from m6t.lab.emulation.windows_wintun import WintunDll
from m6t.platform.windows.backend import WindowsBackend
from m6t.platform.windows.system import TCPIP6_PARAMETERS, WinApi

log = logging.getLogger(__name__)

WSAENOPROTOOPT = 10042
WSAENOTSOCK = 10038
IP_MTU_DISCOVER, IP_PMTUDISC_DONT, IP_PMTUDISC_DO = 10, 0, 2
"""Linux's spelling of "DF on what this socket sends", from <linux/in.h>."""
LINUX_IP_UNICAST_IF = 50
"""<linux/in.h>"""
WSAEINVAL = 10022
DISABLED_COMPONENTS_ALL = 0xFF

_MESSAGES = {
    2: "The system cannot find the file specified.",
    5: "Access is denied.",
    87: "The parameter is incorrect.",
    111: "The file name is too long.",
    183: "Cannot create a file when that file already exists.",
    1168: "Element not found.",
    1231: "The network location cannot be reached.",
    5010: "The object already exists.",
}


def is_root() -> bool:
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


class Ws2Dll(Dll):
    """The two Winsock calls the backend makes that Python does not, translated to their Linux meaning."""

    def __init__(self, windows: Host) -> None:
        super().__init__(windows)
        self.sockopts: list[tuple[int, int, int, bytes]] = []
        self.ioctls: list[tuple[int, int, bytes]] = []

    @export(ctypes.c_int, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, VP, ctypes.c_int)
    def setsockopt(self, sock: int, level: int, name: int, value: int | None, length: int) -> int:
        """``IP_DONTFRAGMENT`` (IPPROTO_IP 14): "Indicates that data should not be fragmented regardless of
        the local MTU" (Microsoft, IPPROTO_IP socket options).  Linux says it with IP_MTU_DISCOVER:
        FALSE → IP_PMTUDISC_DONT (DF clear, the kernel fragments), TRUE → IP_PMTUDISC_DO."""
        data = ctypes.string_at(value, length) if value else b""
        self.sockopts.append((sock, level, name, data))
        if level == IPPROTO_IP and name == IP_UNICAST_IF and length == 4:
            return self._unicast_if(sock, data)
        if level != IPPROTO_IP or name != IP_DONTFRAGMENT or length != 4:
            self.windows.set_last_error(WSAENOPROTOOPT)
            return -1
        (flag,) = struct.unpack("<I", data)
        try:
            with socket.socket(fileno=os.dup(sock)) as linux:
                linux.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO if flag else IP_PMTUDISC_DONT)
        except OSError:
            self.windows.set_last_error(WSAENOTSOCK)
            return -1
        return 0

    def _unicast_if(self, sock: int, index: bytes) -> int:
        """``IP_UNICAST_IF``: "the outgoing interface for sending IPv4 traffic ... an interface index in network
        byte order".  Linux has the very option, with the same value, added for Wine (commit 76e21053b5bf, "ipv4:
        Implement IP_UNICAST_IF socket option": "The SO_BINDTODEVICE option restricts both outbound and inbound
        traffic, IP_UNICAST_IF only impacts outbound traffic", as on Windows); ``connect`` honors it since
        Linux 5.16 ("ipv4: Fix IP_UNICAST_IF option behavior for connected sockets")."""
        try:
            with socket.socket(fileno=os.dup(sock)) as linux:
                linux.setsockopt(socket.IPPROTO_IP, LINUX_IP_UNICAST_IF, index)
        except OSError as exc:
            self.windows.set_last_error(WSAENOTSOCK if exc.errno == errno.EBADF else WSAEINVAL)
            return -1
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
        """``SIO_UDP_CONNRESET``: "Controls whether UDP PORT_UNREACHABLE messages are reported. Set to TRUE to
        enable reporting. Set to FALSE to disable reporting" (likewise ``SIO_UDP_NETRESET`` for TTL expired).
        Linux has no switch for a connected UDP socket: it always reports ICMP errors once, as ECONNREFUSED;
        the option is accepted and the backend meets the errors it asked not to see, which it must survive."""
        windows = self.windows
        windows.check(overlapped is None and completion is None, "WSAIoctl: not an overlapped call")
        windows.check(returned_ptr is not None, "WSAIoctl: lpcbBytesReturned is NULL")
        data = ctypes.string_at(in_ptr, in_len) if in_ptr else b""
        self.ioctls.append((sock, code, data))
        if code not in (SIO_UDP_CONNRESET, SIO_UDP_NETRESET) or in_len != 4:
            windows.set_last_error(WSAEOPNOTSUPP)
            return -1
        if returned_ptr is not None:
            ctypes.memmove(returned_ptr, struct.pack("<I", 0), 4)
        return 0


class Shell32Dll(Dll):
    @export(ctypes.c_int32)
    def IsUserAnAdmin(self) -> int:
        """Root in the namespace is what the emulated host calls an elevated Administrator."""
        return 1 if is_root() else 0


class EmulatedWindows(Host):
    """One emulated host in the current network namespace."""

    def __init__(self) -> None:
        super().__init__()
        admin = is_root()
        self.kernel32 = Kernel32Dll(self)
        self.iphlpapi = NetlinkIpHelper(self, admin=admin)
        self.wintun = WintunDll(self, self.kernel32, self.iphlpapi.netlink, admin=admin)
        self.ws2_32 = Ws2Dll(self)
        self.shell32 = Shell32Dll(self)

    def api(self) -> WinApi:
        return WinApi(
            kernel32=self.kernel32,
            iphlpapi=self.iphlpapi,
            ws2_32=self.ws2_32,
            shell32=self.shell32,
            dll_from_handle=self._dll_from_handle,
            get_last_error=self.get_last_error,
            functype=ctypes.CFUNCTYPE,  # WINFUNCTYPE is CFUNCTYPE on x64 (one calling convention)
            format_error=lambda code: _MESSAGES.get(code, f"Windows error {code}"),
            registry_dword=self._registry_dword,
        )

    def _dll_from_handle(self, name: str, handle: int) -> object:
        with self.lock:
            if self.kernel32.modules.get(handle, "").lower() != name.lower():
                raise OSError(f"{name}: {handle} is not a module handle LoadLibraryExW returned for it")
        return self.wintun

    def _registry_dword(self, path: str, name: str) -> int | None:
        """DisabledComponents: 0xFF ("IPv6 off") when Linux has IPv6 disabled, otherwise absent."""
        if path != TCPIP6_PARAMETERS or name != "DisabledComponents":
            return None
        try:
            with open("/proc/sys/net/ipv6/conf/all/disable_ipv6") as file:
                return DISABLED_COMPONENTS_ALL if file.read().strip() == "1" else None
        except OSError:
            return None

    def close(self) -> None:
        """The process ends: its sessions, adapters and notification registrations go with it."""
        self.wintun.close()
        self.iphlpapi.close()
        if self.violations:
            log.error("the Windows backend broke API contracts: %s", "; ".join(self.violations))


def emulated_backend() -> WindowsBackend:
    """The shipped Windows backend over an emulated Windows in the current namespace."""
    host = EmulatedWindows()
    atexit.register(host.close)
    return WindowsBackend(host.api())
