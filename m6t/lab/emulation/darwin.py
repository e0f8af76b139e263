"""An emulated macOS for the real darwin backend: its system calls carried out on the Linux lab namespace.

:class:`EmulatedDarwin` implements :class:`m6t.platform.darwin.syscalls.Syscalls`, the seam every raw call of
:class:`~m6t.platform.darwin.backend.DarwinBackend` goes through, so the shipped backend runs unchanged over
it (:func:`emulated_backend`), inside the mobile node's namespace, and its packets really flow:

**utun** (sys/kern_control.h, net/if_utun.h, XNU bsd/net/if_utun.c).  ``socket(PF_SYSTEM, SOCK_DGRAM,
SYSPROTO_CONTROL)``; ``ioctl(CTLIOCGINFO)`` turns ``com.apple.net.utun_control`` into its control id (any
other name: ENOENT); ``connect`` with ``sc_unit`` creates ``utun<sc_unit - 1>`` (EBUSY if it exists), or the
first free one for ``sc_unit = 0``; the control is ``CTL_FLAG_PRIVILEGED`` ("Require root": EPERM
otherwise).  Here the interface is a real Linux TUN of that name, and the socket's descriptor *becomes* the
TUN's (``dup2``), so the backend's ``loop.add_reader`` watches the real device.  As ``utun_ctl_connect``
does, the interface starts up (``IFF_UP | IFF_MULTICAST | IFF_POINTOPOINT``), with an MTU of 1500 and no
automatic IPv6 link-local address (``IFEF_NOAUTOIPV6LL``); ``getsockopt(UTUN_OPT_IFNAME)`` names it; and it
dies with the socket (``utun_ctl_disconnect``), its addresses and routes with it.

The surprise kept: every datagram carries the protocol family in front, 4 bytes in network byte order
(``utun_framer``: ``htonl(protocol_family)``; ``utun_demux``: ``ntohl(*(u_int32_t *)data)``), AF_INET6 = 30.
It is added on read and stripped on write.  A write shorter than the header fails with EINVAL; one of a
family no protocol is attached to is taken and dropped (``utun_ctl_send`` returns 0 whatever
``ifnet_input`` says).

**Interface ioctls** on an AF_INET6 datagram socket (netinet6/in6_var.h, net/if.h, sys/sockio.h), applied
through rtnetlink: ``SIOCAIFADDR_IN6`` with ``in6_update_ifa``'s checks (a new address needs a contiguous
non-zero mask; the prefix length of an existing address "should not be changed": EINVAL; a destination only
with a /128; ``pltime <= vltime``), ``IN6_IFF_NODAD`` to ``IFA_F_NODAD``; ``SIOCDIFADDR_IN6``
(EADDRNOTAVAIL when absent); ``SIOCSIFMTU`` (EINVAL outside IF_MINMTU..IF_MAXMTU) and ``SIOCSIFFLAGS``;
``SIOCGIFMTU``/``SIOCGIFFLAGS``.  An unknown interface is ENXIO (``ifunit`` fails); the buffer must be
exactly ``IOCPARM_LEN(request)`` bytes, which the kernel copies in and out.

**PF_ROUTE** (``man 4 route``, net/route.h, bsd/net/rtsock.c): :mod:`.darwin_routes`.

**UDP options** the Linux socket layer lacks are given their Linux meaning: ``IP_DONTFRAG`` 0 (DF clear,
draft 2.6) is ``IP_MTU_DISCOVER = IP_PMTUDISC_DONT``, 1 is ``IP_PMTUDISC_DO``; ``IP_BOUND_IF`` ("int;
set/get bound interface", netinet/in.h; ENXIO for an index no interface has, ``inp_bindif``) is
``SO_BINDTODEVICE`` to that interface.  The connected-UDP source probe bound to an interface fails with
ENETUNREACH when no route toward the address goes through it, as ``in_pcbladdr`` does after a scoped
``rtalloc`` finds none; Linux would route the bound socket "on-link" instead, so the emulation asks the
kernel for the route first (``RTM_F_FIB_MATCH`` with the ``oif``).

The calls that mean the same on Linux (``geteuid``, ``getpid``, ``if_nametoindex``, the connected-UDP source
probe...) go to the shipped :class:`~m6t.platform.darwin.syscalls.DarwinSyscalls`.

**Sleep and wake** come from the emulated IOKit root power domain of :mod:`.darwin_power`, one per process
(one Mac); :func:`power_buttons` gives the runner its buttons: SIGUSR1 puts the emulated Mac to sleep
(kIOMessageSystemWillSleep, waiting for the acknowledgement), SIGUSR2 wakes it (kIOMessageSystemWillPowerOn,
then kIOMessageSystemHasPoweredOn).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import signal
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any

from m6t.lab.emulation.darwin_abi import (
    AF_INET,
    AF_INET6,
    AF_ROUTE,
    AF_SYSTEM,
    CTLIOCGINFO,
    IF_MAXMTU,
    IF_MINMTU,
    IFF_UP,
    IN6_IFF_NODAD,
    IOCPARM_MASK,
    IP_BOUND_IF,
    IP_DONTFRAG,
    IPPROTO_IP,
    SIOCAIFADDR_IN6,
    SIOCDIFADDR_IN6,
    SIOCGIFFLAGS,
    SIOCGIFMTU,
    SIOCSIFFLAGS,
    SIOCSIFMTU,
    SO_RCVBUF,
    SOCK_DGRAM,
    SOCK_RAW,
    SOL_SOCKET,
    SYSPROTO_CONTROL,
    UTUN_CONTROL_NAME,
    UTUN_CTL_ID,
    UTUN_OPT_IFNAME,
    CtlInfo,
    Ifreq,
    In6Aliasreq,
    In6Ifreq,
    SockaddrIn6,
    cstr,
    oserror,
    prefixlen_of,
)
from m6t.lab.emulation.darwin_host import (
    Netlink,
    NetlinkEvents,
    darwin_flags,
    open_tun,
    read_sysctl,
    set_nonblocking,
    set_sysctl,
)
from m6t.lab.emulation.darwin_power import EmulatedPower
from m6t.lab.emulation.darwin_routes import RoutingSockets
from m6t.platform.darwin.backend import DarwinBackend
from m6t.platform.darwin.syscalls import DarwinSyscalls
from m6t.platform.monitoring import connected_udp_source

UTUN_HEADER = struct.Struct("!I")
UTUN_MTU = 1500
ND6_INFINITE_LIFETIME = 0xFFFFFFFF
IFA_F_NODAD = 0x02
RTM_F_FIB_MATCH = 0x2000
LINUX_SO_BINDTODEVICE = 25
"""<asm-generic/socket.h>: named here because the lab type-checks on every platform."""
LINUX_IP_MTU_DISCOVER, IP_PMTUDISC_DONT, IP_PMTUDISC_DO = 10, 0, 2
_IPV6_FORWARDING = "/proc/sys/net/ipv6/conf/all/forwarding"
_SYSCTLS = {"net.inet6.ip6.forwarding": _IPV6_FORWARDING}


@dataclass
class _Socket:
    kind: str
    """"control" (PF_SYSTEM), "route" (PF_ROUTE) or "inet6" (the ioctl socket)."""
    utun: str | None = None


def _borrowed(fd: int) -> socket.socket:
    return socket.socket(fileno=fd)


class EmulatedDarwin:
    """The :class:`~m6t.platform.darwin.syscalls.Syscalls` of an emulated macOS; see the module docstring."""

    def __init__(self) -> None:
        # The emulation's own netlink traffic is not the helper's to log (pyroute2 logs every message at debug).
        logging.getLogger("pyroute2").setLevel(logging.WARNING)
        self._native = DarwinSyscalls()
        self._netlink = Netlink()
        self._sockets: dict[int, _Socket] = {}
        self.routes = RoutingSockets(self._netlink)
        self._events = NetlinkEvents(self.routes.announce)
        self._events.start()

    # -- sockets

    def socket(self, family: int, kind: int, proto: int) -> int:
        if (family, kind, proto) == (AF_SYSTEM, SOCK_DGRAM, SYSPROTO_CONTROL):
            # Until it is connected a control socket carries nothing: any descriptor will do.
            fd = os.open(os.devnull, os.O_RDWR)
            self._sockets[fd] = _Socket("control")
        elif (family, kind, proto) == (AF_ROUTE, SOCK_RAW, 0):
            fd = self.routes.open()
            self._sockets[fd] = _Socket("route")
        elif (family, kind, proto) == (AF_INET6, SOCK_DGRAM, 0):
            fd = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).detach()
            self._sockets[fd] = _Socket("inet6")
        else:
            # Linux's numbers (AF_INET6 = 10, AF_ROUTE = 16...) land here: macOS would not understand them.
            raise oserror(errno.EAFNOSUPPORT)
        return fd

    def _socket(self, fd: int) -> _Socket:
        found = self._sockets.get(fd)
        if found is None:
            raise oserror(errno.EBADF)
        return found

    def close(self, fd: int) -> None:
        found = self._sockets.pop(fd, None)
        if found is None:
            raise oserror(errno.EBADF)
        if found.kind == "route":
            self.routes.close(fd)
        else:
            # A utun's descriptor is its TUN's: closing it removes the interface (utun_ctl_disconnect).
            os.close(fd)

    def set_nonblocking(self, fd: int) -> None:
        if self._socket(fd).kind == "route":
            self.routes.user_end(fd).setblocking(False)
        else:
            set_nonblocking(fd)

    # -- the utun control

    def connect_control(self, fd: int, ctl_id: int, unit: int) -> None:
        found = self._socket(fd)
        if found.kind != "control":
            raise oserror(errno.EOPNOTSUPP)
        if found.utun is not None:
            raise oserror(errno.EISCONN)
        if ctl_id != UTUN_CTL_ID:
            raise oserror(errno.ENOENT)
        if self.geteuid() != 0:
            raise oserror(errno.EPERM)
        if unit == 0:
            number = next(n for n in range(1 << 16) if not self._exists(f"utun{n}"))
        else:
            number = unit - 1
            if self._exists(f"utun{number}"):
                raise oserror(errno.EBUSY)
        name = f"utun{number}"
        tun = open_tun(name)
        try:
            os.dup2(tun, fd)
        finally:
            os.close(tun)
        found.utun = name
        # IFEF_NOAUTOIPV6LL: no link-local address of the kernel's own (best effort: /proc/sys may be read-only).
        set_sysctl(f"/proc/sys/net/ipv6/conf/{name}/addr_gen_mode", "1")
        index = self.if_nametoindex(name)
        self._netlink.call("link", "set", index=index, mtu=UTUN_MTU, state="up")

    def _exists(self, name: str) -> bool:
        try:
            self.if_nametoindex(name)
        except OSError:
            return False
        return True

    def getsockopt(self, fd: int, level: int, option: int, size: int) -> bytes:
        found = self._socket(fd)
        if found.kind == "control" and (level, option) == (SYSPROTO_CONTROL, UTUN_OPT_IFNAME):
            if found.utun is None:
                raise oserror(errno.ENOTCONN)
            # utun_ctl_getopt: snprintf into the caller's buffer, so a short one gets a truncated name.
            return (found.utun.encode() + b"\0")[:size]
        raise oserror(errno.ENOPROTOOPT)

    def setsockopt(self, fd: int, level: int, option: int, value: int) -> None:
        if (level, option) == (IPPROTO_IP, IP_DONTFRAG):
            sock = _borrowed(fd)
            try:
                sock.setsockopt(socket.IPPROTO_IP, LINUX_IP_MTU_DISCOVER, IP_PMTUDISC_DO if value else IP_PMTUDISC_DONT)
            finally:
                sock.detach()
            return
        if (level, option) == (IPPROTO_IP, IP_BOUND_IF):
            sock = _borrowed(fd)
            try:
                sock.setsockopt(socket.SOL_SOCKET, LINUX_SO_BINDTODEVICE, self._bound_name(value))
            finally:
                sock.detach()
            return
        if (level, option) == (SOL_SOCKET, SO_RCVBUF) and self._socket(fd).kind == "route":
            self.routes.user_end(fd).setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, value)
            return
        raise oserror(errno.ENOPROTOOPT)

    # -- data

    def read(self, fd: int, size: int) -> bytes:
        found = self._socket(fd)
        if found.kind == "route":
            return os.read(fd, size)
        if found.utun is None:
            raise oserror(errno.ENOTCONN)
        packet = os.read(fd, max(size - UTUN_HEADER.size, 0))
        family = AF_INET6 if packet[:1] and packet[0] >> 4 == 6 else AF_INET
        return (UTUN_HEADER.pack(family) + packet)[:size]

    def write(self, fd: int, data: bytes) -> int:
        if self._socket(fd).kind == "route":
            return self.routes.output(bytes(data))
        return self.writev(fd, [data])

    def writev(self, fd: int, buffers: Sequence[bytes]) -> int:
        found = self._socket(fd)
        if found.utun is None:
            raise oserror(errno.ENOTCONN)
        datagram = b"".join(bytes(b) for b in buffers)
        if len(datagram) < UTUN_HEADER.size:
            raise oserror(errno.EINVAL)
        (family,) = UTUN_HEADER.unpack_from(datagram)
        if family in (AF_INET, AF_INET6):
            os.write(fd, datagram[UTUN_HEADER.size :])
        return len(datagram)

    # -- ioctl

    def ioctl(self, fd: int, request: int, arg: bytes) -> bytes:
        found = self._socket(fd)
        if len(arg) != (request >> 16) & IOCPARM_MASK:
            raise oserror(errno.EFAULT)
        if request == CTLIOCGINFO and found.kind == "control":
            info = CtlInfo.from_buffer_copy(arg)
            if info.ctl_name != UTUN_CONTROL_NAME:
                raise oserror(errno.ENOENT)
            info.ctl_id = UTUN_CTL_ID
            return bytes(info)
        if found.kind != "inet6":
            raise oserror(errno.ENOTTY)
        if request == SIOCAIFADDR_IN6:
            self._aifaddr_in6(In6Aliasreq.from_buffer_copy(arg))
        elif request == SIOCDIFADDR_IN6:
            self._difaddr_in6(In6Ifreq.from_buffer_copy(arg))
        elif request in (SIOCSIFMTU, SIOCSIFFLAGS):
            self._ifreq_set(request, Ifreq.from_buffer_copy(arg))
        elif request in (SIOCGIFMTU, SIOCGIFFLAGS):
            return self._ifreq_get(request, Ifreq.from_buffer_copy(arg))
        else:
            raise oserror(errno.ENOTTY)
        return arg

    def _index(self, raw_name: bytes) -> int:
        try:
            return self.if_nametoindex(cstr(raw_name))
        except (OSError, UnicodeDecodeError):
            raise oserror(errno.ENXIO) from None

    def _privileged(self) -> None:
        if self.geteuid() != 0:
            raise oserror(errno.EPERM)

    def _prefixlen_of(self, index: int, address: IPv6Address) -> int | None:
        for message in self._netlink.call("get_addr", family=socket.AF_INET6, index=index):
            if IPv6Address(message.get_attr("IFA_ADDRESS")) == address:
                return int(message["prefixlen"])
        return None

    def _aifaddr_in6(self, ifra: In6Aliasreq) -> None:
        self._privileged()
        index = self._index(ifra.ifra_name)
        if ifra.ifra_addr.sin6_family != AF_INET6 or ifra.ifra_addr.sin6_len != ctypes.sizeof(SockaddrIn6):
            raise oserror(errno.EAFNOSUPPORT)
        address = IPv6Address(bytes(ifra.ifra_addr.sin6_addr))
        existing = self._prefixlen_of(index, address)
        mask = ifra.ifra_prefixmask
        if mask.sin6_len:
            plen = prefixlen_of(bytes(mask.sin6_addr), 16) if mask.sin6_len == ctypes.sizeof(SockaddrIn6) else None
            if not plen:
                raise oserror(errno.EINVAL)
        elif existing is None:
            raise oserror(errno.EINVAL)
        else:
            plen = existing
        if ifra.ifra_dstaddr.sin6_family == AF_INET6 and plen != 128:
            raise oserror(errno.EINVAL)
        lifetime = ifra.ifra_lifetime
        if lifetime.ia6t_pltime > lifetime.ia6t_vltime:
            raise oserror(errno.EINVAL)
        if existing is not None and existing != plen:
            raise oserror(errno.EINVAL)  # "the prefix length of an existing address should not be changed"
        if lifetime.ia6t_vltime == 0 and existing is None:
            return
        extra: dict[str, Any] = {}
        if lifetime.ia6t_vltime != ND6_INFINITE_LIFETIME:
            extra["IFA_CACHEINFO"] = {
                "ifa_preferred": lifetime.ia6t_pltime,
                "ifa_valid": lifetime.ia6t_vltime,
                "cstamp": 0,
                "tstamp": 0,
            }
        flags = IFA_F_NODAD if ifra.ifra_flags & IN6_IFF_NODAD else 0
        self._netlink.call("addr", "replace", index=index, address=str(address), prefixlen=plen, flags=flags, **extra)

    def _difaddr_in6(self, ifr: In6Ifreq) -> None:
        self._privileged()
        index = self._index(ifr.ifr_name)
        sa = ifr.ifr_ifru.ifru_addr
        if sa.sin6_family != AF_INET6:
            raise oserror(errno.EADDRNOTAVAIL)
        address = IPv6Address(bytes(sa.sin6_addr))
        plen = self._prefixlen_of(index, address)
        if plen is None:
            raise oserror(errno.EADDRNOTAVAIL)
        self._netlink.call("addr", "del", index=index, address=str(address), prefixlen=plen)

    def _ifreq_set(self, request: int, ifr: Ifreq) -> None:
        self._privileged()
        index = self._index(ifr.ifr_name)
        if request == SIOCSIFMTU:
            mtu = ifr.ifr_ifru.ifru_mtu
            if not IF_MINMTU <= mtu <= IF_MAXMTU:
                raise oserror(errno.EINVAL)
            self._netlink.call("link", "set", index=index, mtu=mtu)
        else:
            up = bool(ifr.ifr_ifru.ifru_flags & IFF_UP)
            self._netlink.call("link", "set", index=index, state="up" if up else "down")

    def _ifreq_get(self, request: int, ifr: Ifreq) -> bytes:
        link = self._netlink.link(self._index(ifr.ifr_name))
        if request == SIOCGIFMTU:
            ifr.ifr_ifru.ifru_mtu = int(link.get_attr("IFLA_MTU"))
        else:
            ifr.ifr_ifru.ifru_flags = ctypes.c_short(darwin_flags(int(link["flags"])) & 0xFFFF).value
        return bytes(ifr)

    # -- the rest

    def sysctlbyname(self, name: str) -> bytes:
        path = _SYSCTLS.get(name)
        value = read_sysctl(path) if path is not None else None
        if value is None:
            raise oserror(errno.ENOENT)
        return struct.pack("=i", int(value))

    def geteuid(self) -> int:
        return self._native.geteuid()

    def getpid(self) -> int:
        return self._native.getpid()

    def if_nametoindex(self, name: str) -> int:
        return self._native.if_nametoindex(name)

    def if_indextoname(self, index: int) -> str:
        return self._native.if_indextoname(index)

    def source_address_toward(self, address: str, port: int, interface: int = 0) -> str:
        if not interface:
            return self._native.source_address_toward(address, port)
        name = self._bound_name(interface)
        try:
            self._netlink.call("route", "get", dst=address, oif=interface, flags=RTM_F_FIB_MATCH)
        except OSError:
            raise oserror(errno.ENETUNREACH) from None

        def bind(sock: socket.socket) -> None:
            sock.setsockopt(socket.SOL_SOCKET, LINUX_SO_BINDTODEVICE, name)

        return connected_udp_source(address, port, prepare=bind)

    def _bound_name(self, index: int) -> bytes:
        try:
            return socket.if_indextoname(index).encode()
        except OSError:
            raise oserror(errno.ENXIO) from None

    def interface_with_address(self, address: str) -> str | None:
        return self._native.interface_with_address(address)

    def ipv4_interfaces(self) -> list[str]:
        return self._native.ipv4_interfaces()


@functools.cache
def power() -> EmulatedPower:
    """This process's emulated power manager: one Mac, however many backends are made on it."""
    return EmulatedPower()


def emulated_backend() -> DarwinBackend:
    """The shipped darwin backend over an emulated macOS (the registry's entry, :mod:`m6t.lab.emulation`)."""
    return DarwinBackend(EmulatedDarwin(), power_api=lambda: power().api)


def power_buttons() -> dict[int, Callable[[], object]]:
    """What the runner does on a signal (the registry's ``buttons``): sleep, and wake."""
    # Named with getattr: Windows' signal module has neither (the lab runs on Linux; mypy checks every OS).
    sleep_button: int = getattr(signal, "SIGUSR1")  # noqa: B009
    wake_button: int = getattr(signal, "SIGUSR2")  # noqa: B009
    return {sleep_button: power().sleep, wake_button: power().wake}
