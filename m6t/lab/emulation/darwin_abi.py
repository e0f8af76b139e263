"""The macOS kernel ABI as C declares it, shared by the emulated macOS and the unit tests' fake kernel.

The numbers are written out again on purpose, from the headers (sys/socket.h, net/route.h, net/if.h,
sys/ioccom.h, netinet6/in6_var.h, sys/kern_control.h, net/if_utun.h, netinet/in.h), and the structures are
declared with ctypes from their C declarations (natural alignment computed by ctypes, LP64 little-endian as
on every supported Mac), never copied from the backend's ``struct`` formats: a packing mistake in
:mod:`m6t.platform.darwin` then fails a test or the emulation instead of cancelling out.

The message helpers lay routing messages out as XNU's ``rt_msg2`` does and read requests as ``rt_xaddrs``
does (bsd/net/rtsock.c)::

    #define ROUNDUP32(a) \\
        ((a) > 0 ? (1 + (((a) - 1) | (sizeof (uint32_t) - 1))) : sizeof (uint32_t))

so each sockaddr is padded to 4 bytes (FreeBSD pads to ``sizeof(long)``) and an empty one still takes 4.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Protocol

AF_INET, AF_ROUTE, AF_LINK, AF_INET6, AF_SYSTEM = 2, 17, 18, 30, 32
SOCK_DGRAM, SOCK_RAW = 2, 3
SYSPROTO_CONTROL = 2
SOL_SOCKET, SO_RCVBUF = 0xFFFF, 0x1002
IPPROTO_IP, IP_BOUND_IF, IP_DONTFRAG = 0, 25, 28
UTUN_OPT_IFNAME = 2
IFT_ETHER, IFT_LOOP, IFT_OTHER = 0x6, 0x18, 0x1
IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_POINTOPOINT, IFF_RUNNING, IFF_MULTICAST = 0x1, 0x2, 0x8, 0x10, 0x40, 0x8000
IFF_NOARP = 0x80
IFF_CANTCHANGE = IFF_BROADCAST | IFF_POINTOPOINT | IFF_RUNNING | IFF_MULTICAST | IFF_LOOPBACK
IN6_IFF_NODAD = 0x20
IF_MINMTU, IF_MAXMTU = 72, 65535

RTM_VERSION = 5
RTM_ADD, RTM_DELETE, RTM_CHANGE, RTM_GET = 1, 2, 3, 4
RTM_NEWADDR, RTM_DELADDR, RTM_IFINFO = 0xC, 0xD, 0xE
RTF_UP, RTF_GATEWAY, RTF_HOST, RTF_DONE, RTF_LLINFO, RTF_STATIC = 0x1, 0x2, 0x4, 0x40, 0x400, 0x800
RTF_IFSCOPE = 0x1000000
RTA_DST, RTA_GATEWAY, RTA_NETMASK, RTA_IFP, RTA_IFA, RTA_BRD = 0x1, 0x2, 0x4, 0x10, 0x20, 0x80
RTAX_DST, RTAX_GATEWAY, RTAX_NETMASK, RTAX_IFP, RTAX_IFA, RTAX_BRD, RTAX_MAX = 0, 1, 2, 4, 5, 7, 8

UTUN_CONTROL_NAME = b"com.apple.net.utun_control"
UTUN_CTL_ID = 0x7A3
"""Whatever id the kernel assigned the utun control at boot: any value, learned through CTLIOCGINFO."""

IOC_IN, IOC_OUT, IOCPARM_MASK = 0x80000000, 0x40000000, 0x1FFF


def _ioc(direction: int, group: str, number: int, kind: type[ctypes.Structure]) -> int:
    return direction | ((ctypes.sizeof(kind) & IOCPARM_MASK) << 16) | (ord(group) << 8) | number


# C layouts ------------------------------------------------------------------------------------------


class SockaddrIn(ctypes.Structure):
    _fields_ = [
        ("sin_len", ctypes.c_uint8),
        ("sin_family", ctypes.c_uint8),
        ("sin_port", ctypes.c_uint16),
        ("sin_addr", ctypes.c_uint8 * 4),
        ("sin_zero", ctypes.c_char * 8),
    ]


class SockaddrIn6(ctypes.Structure):
    _fields_ = [
        ("sin6_len", ctypes.c_uint8),
        ("sin6_family", ctypes.c_uint8),
        ("sin6_port", ctypes.c_uint16),
        ("sin6_flowinfo", ctypes.c_uint32),
        ("sin6_addr", ctypes.c_uint8 * 16),
        ("sin6_scope_id", ctypes.c_uint32),
    ]


class SockaddrDl(ctypes.Structure):
    _fields_ = [
        ("sdl_len", ctypes.c_uint8),
        ("sdl_family", ctypes.c_uint8),
        ("sdl_index", ctypes.c_ushort),
        ("sdl_type", ctypes.c_uint8),
        ("sdl_nlen", ctypes.c_uint8),
        ("sdl_alen", ctypes.c_uint8),
        ("sdl_slen", ctypes.c_uint8),
        ("sdl_data", ctypes.c_char * 12),
    ]


class Sockaddr(ctypes.Structure):
    _fields_ = [("sa_len", ctypes.c_uint8), ("sa_family", ctypes.c_uint8), ("sa_data", ctypes.c_char * 14)]


class In6Addrlifetime(ctypes.Structure):
    _fields_ = [
        ("ia6t_expire", ctypes.c_long),  # time_t: 8 bytes on LP64
        ("ia6t_preferred", ctypes.c_long),
        ("ia6t_vltime", ctypes.c_uint32),
        ("ia6t_pltime", ctypes.c_uint32),
    ]


class In6Aliasreq(ctypes.Structure):
    _fields_ = [
        ("ifra_name", ctypes.c_char * 16),
        ("ifra_addr", SockaddrIn6),
        ("ifra_dstaddr", SockaddrIn6),
        ("ifra_prefixmask", SockaddrIn6),
        ("ifra_flags", ctypes.c_int),
        ("ifra_lifetime", In6Addrlifetime),
    ]


class Icmp6Ifstat(ctypes.Structure):
    _fields_ = [(f"ifs6_counter{i}", ctypes.c_uint64) for i in range(34)]


class In6Ifstat(ctypes.Structure):
    _fields_ = [(f"ifs6_counter{i}", ctypes.c_uint64) for i in range(28)]


class In6IfreqUnion(ctypes.Union):
    _fields_ = [
        ("ifru_addr", SockaddrIn6),
        ("ifru_dstaddr", SockaddrIn6),
        ("ifru_flags", ctypes.c_int),
        ("ifru_flags6", ctypes.c_int),
        ("ifru_metric", ctypes.c_int),
        ("ifru_intval", ctypes.c_int),
        ("ifru_data", ctypes.c_void_p),
        ("ifru_lifetime", In6Addrlifetime),
        ("ifru_stat", In6Ifstat),
        ("ifru_icmp6stat", Icmp6Ifstat),
        ("ifru_scope_id", ctypes.c_uint32 * 16),
    ]


class In6Ifreq(ctypes.Structure):
    _fields_ = [("ifr_name", ctypes.c_char * 16), ("ifr_ifru", In6IfreqUnion)]


class IfreqUnion(ctypes.Union):
    _fields_ = [
        ("ifru_addr", Sockaddr),
        ("ifru_flags", ctypes.c_short),
        ("ifru_metric", ctypes.c_int),
        ("ifru_mtu", ctypes.c_int),
        ("ifru_phys", ctypes.c_int),
        ("ifru_media", ctypes.c_int),
        ("ifru_intval", ctypes.c_int),
        ("ifru_data", ctypes.c_void_p),
        ("ifru_cap", ctypes.c_int * 2),
    ]


class Ifreq(ctypes.Structure):
    _fields_ = [("ifr_name", ctypes.c_char * 16), ("ifr_ifru", IfreqUnion)]


class CtlInfo(ctypes.Structure):
    _fields_ = [("ctl_id", ctypes.c_uint32), ("ctl_name", ctypes.c_char * 96)]


class RtMetrics(ctypes.Structure):
    _fields_ = [
        ("rmx_locks", ctypes.c_uint32),
        ("rmx_mtu", ctypes.c_uint32),
        ("rmx_hopcount", ctypes.c_uint32),
        ("rmx_expire", ctypes.c_int32),
        ("rmx_recvpipe", ctypes.c_uint32),
        ("rmx_sendpipe", ctypes.c_uint32),
        ("rmx_ssthresh", ctypes.c_uint32),
        ("rmx_rtt", ctypes.c_uint32),
        ("rmx_rttvar", ctypes.c_uint32),
        ("rmx_pksent", ctypes.c_uint32),
        ("rmx_state", ctypes.c_uint32),
        ("rmx_filler", ctypes.c_uint32 * 3),
    ]


class RtMsghdr(ctypes.Structure):
    _fields_ = [
        ("rtm_msglen", ctypes.c_ushort),
        ("rtm_version", ctypes.c_uint8),
        ("rtm_type", ctypes.c_uint8),
        ("rtm_index", ctypes.c_ushort),
        ("rtm_flags", ctypes.c_int),
        ("rtm_addrs", ctypes.c_int),
        ("rtm_pid", ctypes.c_int32),
        ("rtm_seq", ctypes.c_int),
        ("rtm_errno", ctypes.c_int),
        ("rtm_use", ctypes.c_int),
        ("rtm_inits", ctypes.c_uint32),
        ("rtm_rmx", RtMetrics),
    ]


class IfaMsghdr(ctypes.Structure):
    _fields_ = [
        ("ifam_msglen", ctypes.c_ushort),
        ("ifam_version", ctypes.c_uint8),
        ("ifam_type", ctypes.c_uint8),
        ("ifam_addrs", ctypes.c_int),
        ("ifam_flags", ctypes.c_int),
        ("ifam_index", ctypes.c_ushort),
        ("ifam_metric", ctypes.c_int),
    ]


class Timeval32(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int32), ("tv_usec", ctypes.c_int32)]


class IfData(ctypes.Structure):
    _fields_ = [
        *[(n, ctypes.c_uint8) for n in ("type", "typelen", "physical", "addrlen", "hdrlen", "rq", "xq", "u1")],
        *[(n, ctypes.c_uint32) for n in ("mtu", "metric", "baudrate")],
        *[(f"counter{i}", ctypes.c_uint32) for i in range(13)],
        ("ifi_lastchange", Timeval32),
        *[(n, ctypes.c_uint32) for n in ("unused2", "hwassist", "reserved1", "reserved2")],
    ]


class IfMsghdr(ctypes.Structure):
    _fields_ = [
        ("ifm_msglen", ctypes.c_ushort),
        ("ifm_version", ctypes.c_uint8),
        ("ifm_type", ctypes.c_uint8),
        ("ifm_addrs", ctypes.c_int),
        ("ifm_flags", ctypes.c_int),
        ("ifm_index", ctypes.c_ushort),
        ("ifm_data", IfData),
    ]


CTLIOCGINFO = _ioc(IOC_IN | IOC_OUT, "N", 3, CtlInfo)
SIOCAIFADDR_IN6 = _ioc(IOC_IN, "i", 26, In6Aliasreq)
SIOCDIFADDR_IN6 = _ioc(IOC_IN, "i", 25, In6Ifreq)
SIOCSIFFLAGS = _ioc(IOC_IN, "i", 16, Ifreq)
SIOCGIFFLAGS = _ioc(IOC_IN | IOC_OUT, "i", 17, Ifreq)
SIOCSIFMTU = _ioc(IOC_IN, "i", 52, Ifreq)
SIOCGIFMTU = _ioc(IOC_IN | IOC_OUT, "i", 51, Ifreq)


class Link(Protocol):
    """What a sockaddr_dl says about an interface."""

    @property
    def name(self) -> str: ...

    @property
    def index(self) -> int: ...

    @property
    def kind(self) -> int:
        """Its IFT_* type."""
        ...


def sa_round(length: int) -> int:
    return (length + 3) & ~3 if length > 0 else 4


def cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode()


def oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def prefixlen_of(mask: bytes, size: int) -> int | None:
    """A contiguous mask's length, ``None`` if it is not contiguous (in6_mask2len's -1)."""
    bits = int.from_bytes(mask[:size].ljust(size, b"\0"), "big")
    total = size * 8
    length = total - (~bits & ((1 << total) - 1)).bit_length()
    expected = ((1 << length) - 1) << (total - length) if length else 0
    return length if bits == expected else None


def ip_network_of(text: str, *, strict: bool = True) -> IPv4Network | IPv6Network:
    return IPv6Network(text, strict=strict) if ":" in text else IPv4Network(text, strict=strict)


def sockaddr(address: IPv4Address | IPv6Address) -> bytes:
    if isinstance(address, IPv4Address):
        sin = SockaddrIn(sin_len=ctypes.sizeof(SockaddrIn), sin_family=AF_INET)
        sin.sin_addr[:] = list(address.packed)
        return bytes(sin)
    sin6 = SockaddrIn6(sin6_len=ctypes.sizeof(SockaddrIn6), sin6_family=AF_INET6)
    sin6.sin6_addr[:] = list(address.packed)
    return bytes(sin6)


def link_sockaddr(interface: Link) -> bytes:
    """The interface's link-level sockaddr_dl as the kernel reports it (name, and a scrubbed MAC for Ethernet)."""
    name = interface.name.encode()
    alen = 6 if interface.kind == IFT_ETHER else 0
    length = max(ctypes.sizeof(SockaddrDl), 8 + len(name) + alen)
    header = struct.pack("=BBHBBBB", length, AF_LINK, interface.index, interface.kind, len(name), alen, 0)
    return (header + name).ljust(length, b"\0")


def kernel_mask(network: IPv4Network | IPv6Network) -> bytes:
    """A netmask as the radix tree keeps it: family byte 0, trimmed after the last non-zero byte."""
    mask = network.netmask.packed
    offset = 4 if network.version == 4 else 8
    raw = bytearray(offset) + bytearray(mask)
    while len(raw) > offset and raw[-1] == 0:
        raw.pop()
    if len(raw) == offset:
        return b""
    raw[0] = len(raw)
    return bytes(raw)


def assemble(header: ctypes.Structure, sockaddrs: dict[int, bytes]) -> bytes:
    """rt_msg2: the header, then each sockaddr padded with ROUNDUP32 (an empty one takes 4 zero bytes)."""
    body = bytearray()
    addrs = 0
    for rtax in range(RTAX_MAX):
        sa = sockaddrs.get(rtax)
        if sa is None:
            continue
        addrs |= 1 << rtax
        body += sa.ljust(sa_round(len(sa)), b"\0")
    raw = bytearray(bytes(header))
    struct.pack_into("=H", raw, 0, len(raw) + len(body))
    struct.pack_into("=i", raw, 4 if not isinstance(header, RtMsghdr) else RtMsghdr.rtm_addrs.offset, addrs)
    return bytes(raw) + bytes(body)


def xaddrs(data: bytes, offset: int, addrs: int) -> dict[int, bytes]:
    """rt_xaddrs: sockaddrs in RTAX order, ROUNDUP32; an sa_len of 0 ends the list (for compatibility)."""
    found: dict[int, bytes] = {}
    for rtax in range(RTAX_MAX):
        if offset >= len(data):
            break
        if not addrs & (1 << rtax):
            continue
        length = data[offset]
        if offset + length > len(data):
            raise oserror(errno.EINVAL)
        if length == 0:
            break
        if length < 2:
            raise oserror(errno.EINVAL)
        found[rtax] = data[offset : offset + length]
        offset += sa_round(length)
    return found


def sockaddr_ip(sa: bytes) -> IPv4Address | IPv6Address | None:
    if len(sa) >= 8 and sa[1] == AF_INET:
        sin = SockaddrIn.from_buffer_copy(sa.ljust(ctypes.sizeof(SockaddrIn), b"\0"))
        return IPv4Address(bytes(sin.sin_addr))
    if len(sa) >= 24 and sa[1] == AF_INET6:
        sin6 = SockaddrIn6.from_buffer_copy(sa.ljust(ctypes.sizeof(SockaddrIn6), b"\0"))
        return IPv6Address(bytes(sin6.sin6_addr))
    return None
