"""Interface configuration with ``ioctl`` on an AF_INET6 datagram socket, as ``ifconfig`` itself does it.

No ``ifconfig`` process is spawned: its output is not an interface, and the helper must not depend on
``PATH``.  The structures (little-endian, LP64, as on every supported Mac):

=========================  =====  ==============================================================
struct                     bytes  layout
=========================  =====  ==============================================================
sockaddr_in6               28     u_char len, family; u_short port; u_int32 flowinfo;
                                  in6_addr (16); u_int32 scope_id        (netinet6/in6.h)
in6_aliasreq               128    char name[16]; sockaddr_in6 addr, dstaddr, prefixmask (3 x 28);
                                  int flags (at 100); in6_addrlifetime {time_t expire (at 104),
                                  time_t preferred; u_int32 vltime, pltime} (netinet6/in6_var.h)
in6_ifreq                  288    char name[16]; union (272: its largest member is
                                  struct icmp6_ifstat, 34 x u_quad_t) starting with sockaddr_in6
ifreq                      32     char name[16]; union (16) holding short flags or int mtu (net/if.h)
=========================  =====  ==============================================================

hence (sys/ioccom.h ``_IOW`` = IOC_IN | size << 16 | group << 8 | number):
``SIOCAIFADDR_IN6 = _IOW('i', 26, in6_aliasreq) = 0x8080691A``,
``SIOCDIFADDR_IN6 = _IOW('i', 25, in6_ifreq) = 0x81206919``, ``SIOCSIFMTU = _IOW('i', 52, ifreq) =
0x80206934``, ``SIOCSIFFLAGS = _IOW('i', 16, ifreq) = 0x80206910``, ``SIOCGIFFLAGS = _IOWR('i', 17, ifreq) =
0xC0206911``.
"""

from __future__ import annotations

import errno
import struct
from ipaddress import IPv6Address, IPv6Network

from m6t.platform.base import PlatformError, PlatformErrorCode
from m6t.platform.darwin.syscalls import AF_INET6, IFF_UP, IFNAMSIZ, SOCK_DGRAM, Syscalls, iow, iowr

SOCKADDR_IN6 = struct.Struct("=BBHI16sI")
IN6_ALIASREQ = struct.Struct("=16s28s28s28siqqII")
IN6_IFREQ = struct.Struct("=16s28s244x")
IFREQ_FLAGS = struct.Struct("=16sH14x")
IFREQ_MTU = struct.Struct("=16si12x")

SIOCAIFADDR_IN6 = iow("i", 26, IN6_ALIASREQ.size)
SIOCDIFADDR_IN6 = iow("i", 25, IN6_IFREQ.size)
SIOCSIFFLAGS = iow("i", 16, IFREQ_FLAGS.size)
SIOCGIFFLAGS = iowr("i", 17, IFREQ_FLAGS.size)
SIOCSIFMTU = iow("i", 52, IFREQ_MTU.size)
SIOCGIFMTU = iowr("i", 51, IFREQ_MTU.size)

IN6_IFF_NODAD = 0x0020
ND6_INFINITE_LIFETIME = 0xFFFFFFFF

_NO_INTERFACE = frozenset({errno.ENXIO, errno.ENODEV})
_ABSENT_ADDRESS = frozenset({errno.EADDRNOTAVAIL, errno.ESRCH, errno.ENOENT}) | _NO_INTERFACE


def ifname_bytes(ifname: str) -> bytes:
    raw = ifname.encode("utf-8", "surrogateescape")
    if not raw or len(raw) >= IFNAMSIZ:
        raise PlatformError(f"invalid interface name {ifname!r}")
    return raw


def sockaddr_in6(address: IPv6Address) -> bytes:
    return SOCKADDR_IN6.pack(SOCKADDR_IN6.size, AF_INET6, 0, 0, address.packed, 0)


def in6_aliasreq(ifname: str, address: IPv6Address, prefixlen: int) -> bytes:
    """The SIOCAIFADDR_IN6 request: no destination, NODAD, infinite lifetimes."""
    mask = IPv6Network(f"::/{prefixlen}").netmask if prefixlen else IPv6Address(0)
    return IN6_ALIASREQ.pack(
        ifname_bytes(ifname),
        sockaddr_in6(address),
        # An all-zero sockaddr (sin6_len 0): "no destination", as on any interface that is not p2p-with-peer.
        bytes(SOCKADDR_IN6.size),
        sockaddr_in6(mask),
        # Without NODAD the address starts tentative and DAD neighbour solicitations would be routed into the
        # tunnel; 48 random bits make a duplicate moot anyway (the Linux backend sets IFA_F_NODAD likewise).
        IN6_IFF_NODAD,
        0,
        0,
        ND6_INFINITE_LIFETIME,
        ND6_INFINITE_LIFETIME,
    )


def in6_ifreq(ifname: str, address: IPv6Address) -> bytes:
    return IN6_IFREQ.pack(ifname_bytes(ifname), sockaddr_in6(address))


class InterfaceConfig:
    """One AF_INET6 datagram socket for interface ioctls, opened on first use."""

    def __init__(self, syscalls: Syscalls) -> None:
        self._sys = syscalls
        self._fd = -1

    def _socket(self) -> int:
        if self._fd < 0:
            try:
                self._fd = self._sys.socket(AF_INET6, SOCK_DGRAM, 0)
            except OSError as exc:
                raise PlatformError(
                    f"cannot create an IPv6 socket: {exc.strerror}", hint="IPv6 must be available"
                ) from exc
        return self._fd

    def _ioctl(self, what: str, request: int, arg: bytes) -> bytes:
        try:
            return self._sys.ioctl(self._socket(), request, arg)
        except OSError as exc:
            raise _error(what, exc) from exc

    def set_mtu(self, ifname: str, mtu: int) -> None:
        self._ioctl(f"set MTU {mtu} on {ifname}", SIOCSIFMTU, IFREQ_MTU.pack(ifname_bytes(ifname), mtu))

    def get_mtu(self, ifname: str) -> int:
        answer = self._ioctl(f"read the MTU of {ifname}", SIOCGIFMTU, IFREQ_MTU.pack(ifname_bytes(ifname), 0))
        return int(IFREQ_MTU.unpack(answer)[1])

    def get_flags(self, ifname: str) -> int:
        answer = self._ioctl(f"read the flags of {ifname}", SIOCGIFFLAGS, IFREQ_FLAGS.pack(ifname_bytes(ifname), 0))
        return int(IFREQ_FLAGS.unpack(answer)[1])

    def set_up(self, ifname: str) -> None:
        # SIOCSIFFLAGS replaces all flags (the kernel keeps only the user-settable ones): read, OR, write.
        flags = self.get_flags(ifname)
        if not flags & IFF_UP:
            self._ioctl(f"set {ifname} up", SIOCSIFFLAGS, IFREQ_FLAGS.pack(ifname_bytes(ifname), flags | IFF_UP))

    def replace_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        """SIOCAIFADDR_IN6, which updates an address the interface already has: idempotent.

        One exception (in6_update_ifa, netinet6/in6.c): the kernel refuses to change an existing address's
        prefix length (EINVAL).  That case is handled by removing the address and adding it again.
        """
        if not 0 < prefixlen <= 128:
            raise PlatformError(f"invalid prefix length {prefixlen} for {address}")
        request = in6_aliasreq(ifname, address, prefixlen)
        what = f"add address {address}/{prefixlen} to {ifname}"
        try:
            self._sys.ioctl(self._socket(), SIOCAIFADDR_IN6, request)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise _error(what, exc) from exc
            self.remove_address(ifname, address)
            self._ioctl(what, SIOCAIFADDR_IN6, request)

    def remove_address(self, ifname: str, address: IPv6Address) -> None:
        """SIOCDIFADDR_IN6; an absent address or interface is not an error.

        The kernel matches the address alone (in6ifa_ifpwithaddr): the prefix length plays no part.
        """
        try:
            self._sys.ioctl(self._socket(), SIOCDIFADDR_IN6, in6_ifreq(ifname, address))
        except OSError as exc:
            if exc.errno not in _ABSENT_ADDRESS:
                raise _error(f"remove address {address} from {ifname}", exc) from exc

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            self._sys.close(fd)


def _error(what: str, exc: OSError) -> PlatformError:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PlatformError(
            f"{what}: {exc.strerror}", hint="run the m6t helper as root", code=PlatformErrorCode.PERMISSION_DENIED
        )
    if exc.errno in _NO_INTERFACE:
        return PlatformError(f"{what}: no such interface")
    return PlatformError(f"{what}: {exc.strerror or exc}")
