"""A fake of the macOS kernel surface the darwin backend uses (:class:`m6t.platform.darwin.syscalls.Syscalls`).

It is faithful where a mistake in the backend could hide:

* every structure the backend sends is decoded with layouts of its own (:mod:`m6t.lab.emulation.darwin_abi`,
  shared with the lab's emulated macOS), declared with ctypes from the C headers (natural alignment computed
  by ctypes, not copied from the backend's ``struct`` formats), so a packing mistake fails a test instead of
  cancelling out;
* ``ioctl`` checks the request number and that the buffer is exactly ``IOCPARM_LEN(request)`` bytes, and
  applies the kernel's validation (in6_update_ifa's prefix-length rule, NODAD, lifetimes, MTU bounds...);
* the routing socket parses rt_msghdr + ROUNDUP32-padded sockaddrs as ``rt_xaddrs`` does, keeps a routing
  table keyed by (destination, mask, interface scope), answers ``RTM_GET`` with a kernel-laid-out reply
  (trimmed netmasks with a zero family byte, empty sockaddrs as 4 zero bytes, ``rtm_index``, RTA_IFP as a
  sockaddr_dl, RTA_IFA), and looks routes up the XNU way: with a netmask exactly, without one by best match
  (so an ``RTM_CHANGE`` without a netmask hits a covering route, as it would on a Mac);
* the utun and routing sockets are real AF_UNIX datagram socketpairs, so ``loop.add_reader`` works and
  non-blocking reads raise ``BlockingIOError`` like the real ones; utun reads carry the 4-byte address
  family header in network byte order, and writes are decoded from it.

Simplifications (documented, never relied on by the backend): no ARP/cloned routes, no primary-interface
logic, IPv6 scope embedding is not modelled, and a scoped lookup without a netmask falls back to the
unscoped table (a simplified form of XNU's fallback).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network, ip_address

from m6t.lab.emulation.darwin_abi import (
    AF_INET,
    AF_INET6,
    AF_LINK,
    AF_ROUTE,
    AF_SYSTEM,
    CTLIOCGINFO,
    IF_MAXMTU,
    IF_MINMTU,
    IFF_BROADCAST,
    IFF_CANTCHANGE,
    IFF_LOOPBACK,
    IFF_MULTICAST,
    IFF_POINTOPOINT,
    IFF_RUNNING,
    IFF_UP,
    IFT_ETHER,
    IFT_LOOP,
    IFT_OTHER,
    IOCPARM_MASK,
    IP_BOUND_IF,
    IP_DONTFRAG,
    IPPROTO_IP,
    RTA_IFA,
    RTA_IFP,
    RTAX_BRD,
    RTAX_DST,
    RTAX_GATEWAY,
    RTAX_IFA,
    RTAX_IFP,
    RTAX_NETMASK,
    RTF_DONE,
    RTF_GATEWAY,
    RTF_HOST,
    RTF_IFSCOPE,
    RTF_STATIC,
    RTF_UP,
    RTM_ADD,
    RTM_CHANGE,
    RTM_DELADDR,
    RTM_DELETE,
    RTM_GET,
    RTM_IFINFO,
    RTM_NEWADDR,
    RTM_VERSION,
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
    IfaMsghdr,
    IfMsghdr,
    Ifreq,
    In6Aliasreq,
    In6Ifreq,
    RtMsghdr,
    SockaddrDl,
    SockaddrIn6,
    assemble,
    cstr,
    ip_network_of,
    kernel_mask,
    link_sockaddr,
    oserror,
    prefixlen_of,
    sockaddr,
    sockaddr_ip,
    xaddrs,
)

CONFIGD_PID = 77
"""The rtm_pid stamped on table changes made by "someone else" (configd, route(8))."""
HOST_AF_UNIX = 1
"""The fake's own sockets are AF_UNIX datagram pairs on the host running the tests (1 on Linux and macOS; the
socket module's name for it is missing from typeshed's Windows view)."""


class FakeKernelViolation(AssertionError):
    """The backend did something the real kernel would misread (wrong size, bad fd...): a test failure."""


# State -------------------------------------------------------------------------------------------------


@dataclass
class In6Address:
    prefixlen: int
    flags: int
    vltime: int
    pltime: int


@dataclass
class FakeInterface:
    name: str
    index: int
    kind: int
    flags: int
    mtu: int = 1500
    ipv4: list[IPv4Interface] = field(default_factory=list)
    ipv6: dict[IPv6Address, In6Address] = field(default_factory=dict)
    injected: list[tuple[int, bytes]] = field(default_factory=list)
    """(family, packet) written by the backend into this utun (the packets the host stack received)."""


@dataclass
class FakeRoute:
    network: IPv4Network | IPv6Network
    ifindex: int
    gateway: IPv4Address | IPv6Address | None
    flags: int
    scope: int = 0
    """RTF_IFSCOPE's interface index, 0 for an ordinary (unscoped) route."""
    host: bool = False
    """Entered without a netmask (RTF_HOST): a distinct radix entry from a /32 or /128 with a mask."""


@dataclass
class FakeSocket:
    kind: str
    user: socket.socket
    kernel: socket.socket
    ctl_id: int | None = None
    utun: FakeInterface | None = None


class FakeDarwinKernel:
    """Implements the :class:`~m6t.platform.darwin.syscalls.Syscalls` protocol; see the module docstring."""

    def __init__(self, *, euid: int = 0, pid: int = 4242, utun_control: bool = True, ipv6: bool = True) -> None:
        self.euid = euid
        self.pid = pid
        self.utun_control = utun_control
        self.sysctls: dict[str, bytes] = {"net.inet6.ip6.forwarding": struct.pack("=i", 0)} if ipv6 else {}
        self.interfaces: dict[int, FakeInterface] = {}
        self.routes: list[FakeRoute] = []
        self.sockets: dict[int, FakeSocket] = {}
        self.sockopts: dict[tuple[int, int, int], int] = {}
        self.ioctls: list[tuple[int, bytes]] = []
        self.route_requests: list[tuple[int, int, int]] = []
        """(rtm_type, rtm_flags, error) of every message the backend wrote to a routing socket."""
        self.broadcast_drops = 0
        self.utun_write_error: int | None = None
        self._next_index = 1
        self.add_interface("lo0", kind=IFT_LOOP, flags=IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_MULTICAST)
        # macOS itself holds a few utuns (iCloud Private Relay, Back to My Mac...): "next free" is not utun0.
        for unit in range(3):
            self.add_interface(f"utun{unit}", kind=IFT_OTHER, flags=IFF_UP | IFF_POINTOPOINT | IFF_RUNNING)

    # -- interfaces

    def interface(self, name: str) -> FakeInterface:
        for candidate in self.interfaces.values():
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    def add_interface(self, name: str, *, kind: int = IFT_ETHER, flags: int | None = None) -> FakeInterface:
        if flags is None:
            flags = IFF_UP | IFF_BROADCAST | IFF_RUNNING | IFF_MULTICAST
        interface = FakeInterface(name=name, index=self._next_index, kind=kind, flags=flags)
        self._next_index += 1
        self.interfaces[interface.index] = interface
        self._broadcast(self.ifinfo_message(interface))
        return interface

    def remove_interface(self, name: str) -> None:
        interface = self.interface(name)
        self.routes = [r for r in self.routes if interface.index not in (r.ifindex, r.scope)]
        del self.interfaces[interface.index]
        interface.flags &= ~IFF_UP
        self._broadcast(self.ifinfo_message(interface))

    def set_link(self, name: str, up: bool) -> None:
        interface = self.interface(name)
        interface.flags = interface.flags | IFF_UP if up else interface.flags & ~IFF_UP
        self._broadcast(self.ifinfo_message(interface))

    def add_ipv4(self, name: str, address: str) -> None:
        """An address and its connected route, announced as rt_newaddrmsg does (RTM_NEWADDR, then RTM_ADD)."""
        interface = self.interface(name)
        entry = IPv4Interface(address)
        interface.ipv4.append(entry)
        self._broadcast(self.addr_message(RTM_NEWADDR, interface, entry))
        route = FakeRoute(network=entry.network, ifindex=interface.index, gateway=None, flags=RTF_UP)
        self.routes.append(route)
        self._broadcast(self.route_message(RTM_ADD, route, seq=0, pid=0, index=interface.index))

    def remove_ipv4(self, name: str, address: str) -> None:
        interface = self.interface(name)
        entry = IPv4Interface(address)
        interface.ipv4.remove(entry)
        for route in [r for r in self.routes if r.network == entry.network and r.ifindex == interface.index]:
            self.routes.remove(route)
            self._broadcast(self.route_message(RTM_DELETE, route, seq=0, pid=0, index=interface.index))
        self._broadcast(self.addr_message(RTM_DELADDR, interface, entry))

    # -- routes changed by "someone else" (configd, route(8)): announced with their pid and no rtm_index

    def add_route(self, network: str, interface: str, router: str | None = None, *, scope: int = 0) -> FakeRoute:
        net = ip_network_of(network)
        flags = RTF_UP | RTF_STATIC | (RTF_GATEWAY if router else 0) | (RTF_IFSCOPE if scope else 0)
        route = FakeRoute(
            network=net,
            ifindex=self.interface(interface).index,
            gateway=ip_address(router) if router else None,
            flags=flags,
            scope=scope,
        )
        if self._find_exact(net, scope, host=False) is not None:
            raise oserror(errno.EEXIST)
        self.routes.append(route)
        self._broadcast(self.route_message(RTM_ADD, route, seq=1, pid=CONFIGD_PID, index=scope))
        return route

    def delete_route(self, network: str, *, scope: int = 0) -> None:
        route = self._find_exact(ip_network_of(network), scope, host=False)
        if route is None:
            raise oserror(errno.ESRCH)
        self.routes.remove(route)
        self._broadcast(self.route_message(RTM_DELETE, route, seq=2, pid=CONFIGD_PID, index=scope))

    def routes_of(self, name: str) -> list[FakeRoute]:
        index = self.interface(name).index
        return [r for r in self.routes if r.ifindex == index]

    # -- packets routed into a utun, and raw messages

    def deliver(self, ifname: str, packet: bytes, family: int = AF_INET6) -> None:
        """The host stack routes ``packet`` into utun ``ifname``: the reader gets it behind its AF header."""
        for fake in self.sockets.values():
            if fake.utun is not None and fake.utun.name == ifname:
                fake.kernel.send(struct.pack("!I", family) + packet)
                return
        raise KeyError(ifname)

    def broadcast_raw(self, data: bytes) -> None:
        self._broadcast(data)

    # -- Syscalls: sockets

    def socket(self, family: int, kind: int, proto: int) -> int:
        if (family, kind, proto) == (AF_SYSTEM, SOCK_DGRAM, SYSPROTO_CONTROL):
            label = "control"
        elif (family, kind, proto) == (AF_ROUTE, SOCK_RAW, 0):
            label = "route"
        elif (family, kind, proto) == (AF_INET6, SOCK_DGRAM, 0):
            if not self.sysctls:
                raise oserror(errno.EAFNOSUPPORT)
            label = "inet6"
        else:
            # Linux's numbers (AF_INET6 = 10, AF_ROUTE = 16...) land here: macOS would not understand them.
            raise oserror(errno.EAFNOSUPPORT)
        user, kernel = socket.socketpair(HOST_AF_UNIX, socket.SOCK_DGRAM)
        kernel.setblocking(False)
        fake = FakeSocket(kind=label, user=user, kernel=kernel)
        self.sockets[user.fileno()] = fake
        return user.fileno()

    def _socket(self, fd: int, *kinds: str) -> FakeSocket:
        fake = self.sockets.get(fd)
        if fake is None:
            raise FakeKernelViolation(f"fd {fd} is not a socket of this fake kernel")
        if kinds and fake.kind not in kinds:
            raise FakeKernelViolation(f"fd {fd} is a {fake.kind} socket, expected {kinds}")
        return fake

    def close(self, fd: int) -> None:
        fake = self.sockets.pop(fd, None)
        if fake is None:
            raise oserror(errno.EBADF)
        fake.user.close()
        fake.kernel.close()
        if fake.utun is not None and fake.utun.index in self.interfaces:
            # The interface dies with its control socket, its routes and addresses with it.
            self.remove_interface(fake.utun.name)

    def set_nonblocking(self, fd: int) -> None:
        self._socket(fd).user.setblocking(False)

    def open_sockets(self, kind: str) -> int:
        return sum(1 for fake in self.sockets.values() if fake.kind == kind)

    # -- Syscalls: ioctl

    def ioctl(self, fd: int, request: int, arg: bytes) -> bytes:
        fake = self._socket(fd)
        size = (request >> 16) & IOCPARM_MASK
        if len(arg) != size:
            raise FakeKernelViolation(f"ioctl {request:#x} takes {size} bytes, got {len(arg)}")
        self.ioctls.append((request, bytes(arg)))
        if request == CTLIOCGINFO and fake.kind == "control":
            info = CtlInfo.from_buffer_copy(arg)
            if not self.utun_control or info.ctl_name != UTUN_CONTROL_NAME:
                raise oserror(errno.ENOENT)
            info.ctl_id = UTUN_CTL_ID
            fake.ctl_id = UTUN_CTL_ID
            return bytes(info)
        if fake.kind != "inet6":
            raise oserror(errno.ENOTTY)
        handlers = {
            SIOCAIFADDR_IN6: self._aifaddr_in6,
            SIOCDIFADDR_IN6: self._difaddr_in6,
            SIOCSIFMTU: self._ifreq_set,
            SIOCSIFFLAGS: self._ifreq_set,
            SIOCGIFMTU: self._ifreq_get,
            SIOCGIFFLAGS: self._ifreq_get,
        }
        handler = handlers.get(request)
        if handler is None:
            raise oserror(errno.ENOTTY)
        return handler(request, arg)

    def _named(self, raw: bytes) -> FakeInterface:
        try:
            return self.interface(cstr(raw))
        except KeyError:
            raise oserror(errno.ENXIO) from None

    def _privileged(self) -> None:
        if self.euid != 0:
            raise oserror(errno.EPERM)

    def _aifaddr_in6(self, request: int, arg: bytes) -> bytes:
        ifra = In6Aliasreq.from_buffer_copy(arg)
        self._privileged()
        interface = self._named(ifra.ifra_name)
        if ifra.ifra_addr.sin6_family != AF_INET6 or ifra.ifra_addr.sin6_len != ctypes.sizeof(SockaddrIn6):
            raise oserror(errno.EAFNOSUPPORT)
        address = IPv6Address(bytes(ifra.ifra_addr.sin6_addr))
        existing = interface.ipv6.get(address)
        mask = ifra.ifra_prefixmask
        # in6_update_ifa (netinet6/in6.c): a new address needs a mask; a mask must be contiguous and non-zero.
        if existing is None and mask.sin6_len == 0:
            raise oserror(errno.EINVAL)
        if mask.sin6_len:
            if mask.sin6_len != ctypes.sizeof(SockaddrIn6):
                raise oserror(errno.EINVAL)
            plen = prefixlen_of(bytes(mask.sin6_addr), 16)
            if not plen:
                raise oserror(errno.EINVAL)
        else:
            assert existing is not None
            plen = existing.prefixlen
        if ifra.ifra_dstaddr.sin6_family == AF_INET6 and (not interface.flags & IFF_POINTOPOINT or plen != 128):
            raise oserror(errno.EINVAL)
        lifetime = ifra.ifra_lifetime
        if lifetime.ia6t_pltime > lifetime.ia6t_vltime:
            raise oserror(errno.EINVAL)
        if lifetime.ia6t_vltime == 0 and existing is None:
            return arg
        if existing is not None and mask.sin6_len and existing.prefixlen != plen:
            # "the prefix length of an existing address should not be changed"
            raise oserror(errno.EINVAL)
        interface.ipv6[address] = In6Address(plen, ifra.ifra_flags, lifetime.ia6t_vltime, lifetime.ia6t_pltime)
        self._broadcast(self.addr_message(RTM_NEWADDR, interface, IPv6Interface((address, plen))))
        return arg

    def _difaddr_in6(self, request: int, arg: bytes) -> bytes:
        ifr = In6Ifreq.from_buffer_copy(arg)
        self._privileged()
        interface = self._named(ifr.ifr_name)
        sa = ifr.ifr_ifru.ifru_addr
        if sa.sin6_family != AF_INET6:
            raise oserror(errno.EADDRNOTAVAIL)
        address = IPv6Address(bytes(sa.sin6_addr))
        entry = interface.ipv6.pop(address, None)
        if entry is None:
            raise oserror(errno.EADDRNOTAVAIL)
        self._broadcast(self.addr_message(RTM_DELADDR, interface, IPv6Interface((address, entry.prefixlen))))
        return arg

    def _ifreq_set(self, request: int, arg: bytes) -> bytes:
        ifr = Ifreq.from_buffer_copy(arg)
        self._privileged()
        interface = self._named(ifr.ifr_name)
        if request == SIOCSIFMTU:
            mtu = ifr.ifr_ifru.ifru_mtu
            if not IF_MINMTU <= mtu <= IF_MAXMTU:
                raise oserror(errno.EINVAL)
            interface.mtu = mtu
        else:
            wanted = ifr.ifr_ifru.ifru_flags & 0xFFFF
            interface.flags = (interface.flags & IFF_CANTCHANGE) | (wanted & ~IFF_CANTCHANGE)
        self._broadcast(self.ifinfo_message(interface))
        return arg

    def _ifreq_get(self, request: int, arg: bytes) -> bytes:
        ifr = Ifreq.from_buffer_copy(arg)
        interface = self._named(ifr.ifr_name)
        if request == SIOCGIFMTU:
            ifr.ifr_ifru.ifru_mtu = interface.mtu
        else:
            ifr.ifr_ifru.ifru_flags = ctypes.c_short(interface.flags & 0xFFFF).value
        return bytes(ifr)

    # -- Syscalls: the utun control

    def connect_control(self, fd: int, ctl_id: int, unit: int) -> None:
        fake = self._socket(fd, "control")
        if fake.utun is not None:
            raise oserror(errno.EISCONN)
        if ctl_id != UTUN_CTL_ID or not self.utun_control:
            raise oserror(errno.ENOENT)
        self._privileged()  # the utun control is registered CTL_FLAG_PRIVILEGED
        names = {interface.name for interface in self.interfaces.values()}
        if unit == 0:
            number = next(n for n in range(1 << 16) if f"utun{n}" not in names)
        else:
            number = unit - 1
            if f"utun{number}" in names:
                raise oserror(errno.EBUSY)
        fake.utun = self.add_interface(
            f"utun{number}", kind=IFT_OTHER, flags=IFF_UP | IFF_POINTOPOINT | IFF_RUNNING | IFF_MULTICAST
        )

    def getsockopt(self, fd: int, level: int, option: int, size: int) -> bytes:
        fake = self._socket(fd)
        if fake.kind == "control" and level == SYSPROTO_CONTROL and option == UTUN_OPT_IFNAME:
            if fake.utun is None:
                raise oserror(errno.ENOTCONN)
            name = fake.utun.name.encode() + b"\0"
            if size < len(name):
                raise oserror(errno.EMSGSIZE)
            return name
        raise oserror(errno.ENOPROTOOPT)

    def setsockopt(self, fd: int, level: int, option: int, value: int) -> None:
        # The UDP channel's socket is a real one the fake did not create: options are recorded for any fd.
        if (level, option) == (IPPROTO_IP, IP_BOUND_IF) and value not in self.interfaces:
            raise oserror(errno.ENXIO)  # inp_bindif: no interface with that index
        if (level, option) not in ((IPPROTO_IP, IP_DONTFRAG), (IPPROTO_IP, IP_BOUND_IF), (SOL_SOCKET, SO_RCVBUF)):
            raise oserror(errno.ENOPROTOOPT)
        self.sockopts[(fd, level, option)] = value

    # -- Syscalls: data

    def read(self, fd: int, size: int) -> bytes:
        self._socket(fd, "control", "route")
        return os.read(fd, size)

    def write(self, fd: int, data: bytes) -> int:
        fake = self._socket(fd, "control", "route")
        if fake.kind == "route":
            return self._route_output(fake, bytes(data))
        return self.writev(fd, [data])

    def writev(self, fd: int, buffers: Sequence[bytes]) -> int:
        fake = self._socket(fd, "control")
        if fake.utun is None:
            raise oserror(errno.ENOTCONN)
        if self.utun_write_error is not None:
            raise oserror(self.utun_write_error)
        datagram = b"".join(bytes(b) for b in buffers)
        if len(datagram) < 4:
            raise oserror(errno.EINVAL)
        (family,) = struct.unpack("!I", datagram[:4])
        fake.utun.injected.append((family, datagram[4:]))
        return len(datagram)

    # -- Syscalls: the rest

    def sysctlbyname(self, name: str) -> bytes:
        try:
            return self.sysctls[name]
        except KeyError:
            raise oserror(errno.ENOENT) from None

    def geteuid(self) -> int:
        return self.euid

    def getpid(self) -> int:
        return self.pid

    def if_nametoindex(self, name: str) -> int:
        try:
            return self.interface(name).index
        except KeyError:
            raise OSError("no interface with this name") from None

    def if_indextoname(self, index: int) -> str:
        interface = self.interfaces.get(index)
        if interface is None:
            raise oserror(errno.ENXIO)
        return interface.name

    def source_address_toward(self, address: str, port: int, interface: int = 0) -> str:
        # IP_BOUND_IF: in_pcbladdr looks the route up scoped to the bound interface (ENXIO: no such index).
        if interface and interface not in self.interfaces:
            raise oserror(errno.ENXIO)
        route = self._best_match(IPv4Address(address), interface)
        if route is None:
            raise oserror(errno.ENETUNREACH)
        local = self._ifa(route)
        if not isinstance(local, IPv4Address):
            raise oserror(errno.EADDRNOTAVAIL)
        return str(local)

    def ipv4_interfaces(self) -> list[str]:
        return [i.name for i in self.interfaces.values() if i.flags & IFF_UP and i.ipv4]

    def interface_with_address(self, address: str) -> str | None:
        wanted = IPv4Address(address)
        for interface in self.interfaces.values():
            if any(entry.ip == wanted for entry in interface.ipv4):
                return interface.name
        return None

    # -- the routing socket

    def _route_output(self, fake: FakeSocket, data: bytes) -> int:
        # bsd/net/rtsock.c route_output: length and version first (nothing is echoed for those).
        if len(data) < ctypes.sizeof(RtMsghdr) or struct.unpack_from("=H", data)[0] != len(data):
            raise oserror(errno.EINVAL)
        rtm = RtMsghdr.from_buffer_copy(data)
        if rtm.rtm_version != RTM_VERSION:
            raise oserror(errno.EPROTONOSUPPORT)
        rtm.rtm_pid = self.pid
        error = 0
        reply: bytes | None = None
        try:
            if rtm.rtm_type != RTM_GET and self.euid != 0:
                raise oserror(errno.EPERM)
            sockaddrs = xaddrs(data, ctypes.sizeof(RtMsghdr), rtm.rtm_addrs)
            reply = self._route_request(rtm, sockaddrs)
        except OSError as exc:
            error = exc.errno or errno.EIO
        self.route_requests.append((rtm.rtm_type, rtm.rtm_flags, error))
        if reply is None:
            if error:
                rtm.rtm_errno = error
            else:
                rtm.rtm_flags |= RTF_DONE
            reply = bytes(rtm) + data[ctypes.sizeof(RtMsghdr) :]
        # The message goes to every routing socket, the sender's included (SO_USELOOPBACK), before write returns.
        self._broadcast(reply)
        if error:
            raise oserror(error)
        return len(data)

    def _route_request(self, rtm: RtMsghdr, sockaddrs: dict[int, bytes]) -> bytes | None:
        dst_sa = sockaddrs.get(RTAX_DST)
        if dst_sa is None or len(dst_sa) < 2:
            raise oserror(errno.EINVAL)
        family = dst_sa[1]
        if family == AF_INET6 and len(dst_sa) < ctypes.sizeof(SockaddrIn6):
            raise oserror(errno.EINVAL)
        gateway_sa = sockaddrs.get(RTAX_GATEWAY)
        if gateway_sa is not None and gateway_sa[1:2] == bytes([AF_INET6]) and len(gateway_sa) < 28:
            raise oserror(errno.EINVAL)
        scope = 0
        if rtm.rtm_flags & RTF_IFSCOPE:
            if family not in (AF_INET, AF_INET6):
                raise oserror(errno.EINVAL)
            scope = rtm.rtm_index
        destination = sockaddr_ip(dst_sa)
        if destination is None:
            raise oserror(errno.EAFNOSUPPORT)
        mask_sa = sockaddrs.get(RTAX_NETMASK)
        size = 4 if family == AF_INET else 16
        # rtrequest: RTF_HOST drops the netmask; a route entered without one is a host entry.
        host = bool(rtm.rtm_flags & RTF_HOST) or mask_sa is None
        prefixlen = size * 8
        if mask_sa is not None:
            found = prefixlen_of(mask_sa[(4 if family == AF_INET else 8) :], size)
            if found is None:
                raise oserror(errno.EINVAL)
            prefixlen = found
        if host and rtm.rtm_type in (RTM_ADD, RTM_DELETE):
            prefixlen = size * 8
        network = ip_network_of(f"{destination}/{prefixlen}", strict=False)
        kind = rtm.rtm_type
        if kind == RTM_ADD:
            if gateway_sa is None:
                raise oserror(errno.EINVAL)
            ifindex, gateway = self._resolve_gateway(gateway_sa, scope)
            if self._find_exact(network, scope, host=host) is not None:
                raise oserror(errno.EEXIST)
            flags = rtm.rtm_flags & ~RTF_DONE
            flags = flags | RTF_GATEWAY if gateway is not None else flags & ~RTF_GATEWAY
            route = FakeRoute(network, ifindex, gateway, flags, scope=scope, host=host)
            self.routes.append(route)
            return None
        if kind == RTM_DELETE:
            doomed = self._find_exact(network, scope, host=host)
            if doomed is None:
                raise oserror(errno.ESRCH)
            self.routes.remove(doomed)
            return None
        if kind in (RTM_GET, RTM_CHANGE):
            if mask_sa is not None:
                found_route = self._find_exact(network, scope, host=False)
            else:
                # rn_lookup without a mask is rn_match: the best match, a covering route included.
                found_route = self._best_match(destination, scope)
            if found_route is None:
                raise oserror(errno.ESRCH)
            if kind == RTM_CHANGE:
                if gateway_sa is not None:
                    ifindex, gateway = self._resolve_gateway(gateway_sa, scope)
                    found_route.ifindex, found_route.gateway = ifindex, gateway
                    if gateway is None:
                        found_route.flags &= ~RTF_GATEWAY
                    else:
                        found_route.flags |= RTF_GATEWAY
                return None
            want_interface = bool(rtm.rtm_addrs & (RTA_IFP | RTA_IFA))
            return self._get_reply(rtm, found_route, want_interface)
        raise oserror(errno.EOPNOTSUPP)

    def _resolve_gateway(self, sa: bytes, scope: int) -> tuple[int, IPv4Address | IPv6Address | None]:
        if len(sa) >= 2 and sa[1] == AF_LINK:
            sdl = SockaddrDl.from_buffer_copy(sa.ljust(ctypes.sizeof(SockaddrDl), b"\0"))
            if sdl.sdl_index not in self.interfaces:
                raise oserror(errno.ENETUNREACH)
            return int(sdl.sdl_index), None
        gateway = sockaddr_ip(sa)
        if gateway is None:
            raise oserror(errno.EINVAL)
        for interface in self.interfaces.values():
            if scope and interface.index != scope:
                continue
            if isinstance(gateway, IPv4Address) and any(gateway in entry.network for entry in interface.ipv4):
                return interface.index, gateway
        raise oserror(errno.ENETUNREACH)

    def _find_exact(self, network: IPv4Network | IPv6Network, scope: int, *, host: bool) -> FakeRoute | None:
        for route in self.routes:
            if route.network == network and route.scope == scope and route.host == host:
                return route
        return None

    def _best_match(self, address: IPv4Address | IPv6Address, scope: int) -> FakeRoute | None:
        # rt_lookup_common: a scoped look-up takes the routes scoped to that interface, and falls back to an
        # unscoped one only through that same interface ("Wrong interface ... start again from scratch").
        for wanted in (scope, 0) if scope else (0,):
            candidates = [
                r
                for r in self.routes
                if r.scope == wanted
                and r.network.version == address.version
                and address in r.network
                and (not scope or r.ifindex == scope)
            ]
            if candidates:
                return max(candidates, key=lambda r: (r.network.prefixlen, r.host))
        return None

    def _ifa(self, route: FakeRoute) -> IPv4Address | IPv6Address | None:
        interface = self.interfaces.get(route.ifindex)
        if interface is None:
            return None
        if route.network.version == 4:
            return interface.ipv4[0].ip if interface.ipv4 else None
        return next(iter(interface.ipv6), None)

    # -- messages the kernel writes

    def _get_reply(self, rtm: RtMsghdr, route: FakeRoute, want_interface: bool) -> bytes:
        interface = self.interfaces[route.ifindex]
        sockaddrs: dict[int, bytes] = {RTAX_DST: sockaddr(route.network.network_address)}
        sockaddrs[RTAX_GATEWAY] = sockaddr(route.gateway) if route.gateway is not None else link_sockaddr(interface)
        if not route.host:
            sockaddrs[RTAX_NETMASK] = kernel_mask(route.network)
        if want_interface:
            sockaddrs[RTAX_IFP] = link_sockaddr(interface)
            local = self._ifa(route)
            sockaddrs[RTAX_IFA] = sockaddr(local) if local is not None else link_sockaddr(interface)
        reply = RtMsghdr.from_buffer_copy(bytes(rtm))
        reply.rtm_index = route.ifindex
        reply.rtm_flags = route.flags | (RTF_HOST if route.host else 0) | RTF_DONE
        return assemble(reply, sockaddrs)

    def route_message(self, kind: int, route: FakeRoute, *, seq: int, pid: int, index: int) -> bytes:
        rtm = RtMsghdr(rtm_version=RTM_VERSION, rtm_type=kind, rtm_index=index, rtm_pid=pid, rtm_seq=seq)
        rtm.rtm_flags = route.flags | RTF_DONE
        interface = self.interfaces.get(route.ifindex)
        sockaddrs = {RTAX_DST: sockaddr(route.network.network_address)}
        if route.gateway is not None:
            sockaddrs[RTAX_GATEWAY] = sockaddr(route.gateway)
        elif interface is not None:
            sockaddrs[RTAX_GATEWAY] = link_sockaddr(interface)
        sockaddrs[RTAX_NETMASK] = kernel_mask(route.network)
        return assemble(rtm, sockaddrs)

    def addr_message(self, kind: int, interface: FakeInterface, entry: IPv4Interface | IPv6Interface) -> bytes:
        ifam = IfaMsghdr(ifam_version=RTM_VERSION, ifam_type=kind, ifam_index=interface.index)
        sockaddrs = {
            RTAX_NETMASK: kernel_mask(entry.network),
            RTAX_IFP: link_sockaddr(interface),
            RTAX_IFA: sockaddr(entry.ip),
        }
        if entry.version == 4 and interface.flags & IFF_BROADCAST:
            sockaddrs[RTAX_BRD] = sockaddr(entry.network.broadcast_address)
        return assemble(ifam, sockaddrs)

    def ifinfo_message(self, interface: FakeInterface) -> bytes:
        ifm = IfMsghdr(ifm_version=RTM_VERSION, ifm_type=RTM_IFINFO, ifm_index=interface.index)
        ifm.ifm_flags = interface.flags
        ifm.ifm_data.mtu = interface.mtu
        ifm.ifm_data.type = interface.kind
        return assemble(ifm, {})

    def _broadcast(self, data: bytes) -> None:
        for fake in list(self.sockets.values()):
            if fake.kind != "route":
                continue
            try:
                fake.kernel.send(data)
            except (BlockingIOError, ConnectionError):
                # A full receive buffer: raw_input drops the message, silently, as the kernel does.
                self.broadcast_drops += 1
