"""The darwin backend's structure layouts and ioctl numbers, against C-derived layouts and published values;
and the routing-message parser, including on arbitrary bytes."""

from __future__ import annotations

import contextlib
import ctypes
import struct
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m6t.lab.emulation import darwin_abi as abi
from m6t.platform.darwin import ifconfig_ioctl, routing, utun
from m6t.platform.darwin.routing import (
    RTAX_DST,
    RTAX_GATEWAY,
    RTAX_IFP,
    RTAX_NETMASK,
    RTM_ADD,
    RTM_GET,
    RoutingMessageError,
)
from m6t.platform.darwin.syscalls import AF_INET, AF_INET6
from tests.platform.darwin_fakes import FakeInterface


def test_struct_sizes_match_the_c_layouts() -> None:
    # ctypes lays the shared C structures out from their C declarations; the backend packs by hand.
    assert ifconfig_ioctl.IN6_ALIASREQ.size == ctypes.sizeof(abi.In6Aliasreq) == 128
    assert ifconfig_ioctl.IN6_IFREQ.size == ctypes.sizeof(abi.In6Ifreq) == 288
    assert ifconfig_ioctl.IFREQ_MTU.size == ifconfig_ioctl.IFREQ_FLAGS.size == ctypes.sizeof(abi.Ifreq) == 32
    assert ifconfig_ioctl.SOCKADDR_IN6.size == ctypes.sizeof(abi.SockaddrIn6) == 28
    assert utun.CTL_INFO.size == ctypes.sizeof(abi.CtlInfo) == 100
    assert routing.RT_MSGHDR.size == ctypes.sizeof(abi.RtMsghdr) == 92
    assert routing.IFA_MSGHDR.size == ctypes.sizeof(abi.IfaMsghdr) == 20
    assert routing.IF_MSGHDR_SIZE == ctypes.sizeof(abi.IfMsghdr) == 112
    assert routing.SOCKADDR_DL_MIN == ctypes.sizeof(abi.SockaddrDl) == 20
    assert routing.SOCKADDR_IN.size == ctypes.sizeof(abi.SockaddrIn) == 16


def test_field_offsets_of_in6_aliasreq() -> None:
    assert abi.In6Aliasreq.ifra_flags.offset == 100
    assert abi.In6Aliasreq.ifra_lifetime.offset == 104
    packed = ifconfig_ioctl.in6_aliasreq("utun3", IPv6Address("fd6d:3674:a1b2:0:1::5"), 80)
    ifra = abi.In6Aliasreq.from_buffer_copy(packed)
    assert ifra.ifra_name == b"utun3"
    assert bytes(ifra.ifra_addr.sin6_addr) == IPv6Address("fd6d:3674:a1b2:0:1::5").packed
    assert (ifra.ifra_addr.sin6_len, ifra.ifra_addr.sin6_family) == (28, 30)
    assert bytes(ifra.ifra_prefixmask.sin6_addr) == IPv6Network("::/80").netmask.packed
    assert ifra.ifra_dstaddr.sin6_len == ifra.ifra_dstaddr.sin6_family == 0
    assert ifra.ifra_flags == abi.IN6_IFF_NODAD
    assert (ifra.ifra_lifetime.ia6t_vltime, ifra.ifra_lifetime.ia6t_pltime) == (0xFFFFFFFF, 0xFFFFFFFF)


def test_ioctl_numbers() -> None:
    # Published values (e.g. Go programs configuring utun on macOS) and the shared _IOW/_IOWR of ctypes sizes.
    assert ifconfig_ioctl.SIOCAIFADDR_IN6 == abi.SIOCAIFADDR_IN6 == 0x8080691A
    assert ifconfig_ioctl.SIOCDIFADDR_IN6 == abi.SIOCDIFADDR_IN6 == 0x81206919
    assert ifconfig_ioctl.SIOCSIFMTU == abi.SIOCSIFMTU == 0x80206934
    assert ifconfig_ioctl.SIOCSIFFLAGS == abi.SIOCSIFFLAGS == 0x80206910
    assert ifconfig_ioctl.SIOCGIFFLAGS == abi.SIOCGIFFLAGS == 0xC0206911
    assert ifconfig_ioctl.SIOCGIFMTU == abi.SIOCGIFMTU == 0xC0206933
    assert utun.CTLIOCGINFO == abi.CTLIOCGINFO == 0xC0644E03


def test_route_request_decodes_as_the_kernel_reads_it() -> None:
    message = routing.build_message(
        RTM_ADD,
        seq=7,
        flags=routing.RTF_UP | routing.RTF_STATIC,
        sockaddrs={
            RTAX_DST: routing.encode_address(IPv6Address("fd00:ab::")),
            RTAX_GATEWAY: routing.encode_link(9, "utun4"),
            RTAX_NETMASK: routing.encode_netmask(IPv6Network("fd00:ab::/64")),
        },
    )
    rtm = abi.RtMsghdr.from_buffer_copy(message)
    assert (rtm.rtm_msglen, rtm.rtm_version, rtm.rtm_type, rtm.rtm_seq) == (len(message), 5, RTM_ADD, 7)
    assert rtm.rtm_addrs == routing.RTA_DST | routing.RTA_GATEWAY | routing.RTA_NETMASK
    sockaddrs = abi.xaddrs(message, 92, rtm.rtm_addrs)
    assert abi.sockaddr_ip(sockaddrs[RTAX_DST]) == IPv6Address("fd00:ab::")
    sdl = abi.SockaddrDl.from_buffer_copy(sockaddrs[RTAX_GATEWAY])
    assert (sdl.sdl_family, sdl.sdl_index, sdl.sdl_nlen, sdl.sdl_data[:5]) == (18, 9, 5, b"utun4")
    assert abi.prefixlen_of(sockaddrs[RTAX_NETMASK][8:], 16) == 64
    # ROUNDUP32: 92 + 28 + 20 + 28, every sockaddr already a multiple of 4.
    assert len(message) == 168


def test_kernel_reply_with_trimmed_masks_and_empty_sockaddrs_parses() -> None:
    interface = FakeInterface(name="en0", index=4, kind=abi.IFT_ETHER, flags=abi.IFF_UP)
    sockaddrs = {
        RTAX_DST: abi.sockaddr(IPv4Address("0.0.0.0")),
        RTAX_GATEWAY: abi.sockaddr(IPv4Address("192.0.2.1")),
        RTAX_NETMASK: abi.kernel_mask(IPv4Network("0.0.0.0/0")),  # empty: 4 zero bytes in the message
        RTAX_IFP: abi.link_sockaddr(interface),
        routing.RTAX_IFA: abi.sockaddr(IPv4Address("192.0.2.10")),
    }
    header = abi.RtMsghdr(rtm_version=5, rtm_type=RTM_GET, rtm_index=4, rtm_flags=0x843, rtm_pid=1, rtm_seq=3)
    message = routing.parse_message(abi.assemble(header, sockaddrs))
    info = routing.route_info(message)
    assert message.sockaddrs[RTAX_NETMASK] == b""
    assert info.destination == IPv4Network("0.0.0.0/0")
    assert (info.index, info.interface) == (4, "en0")
    assert (info.local, info.gateway) == (IPv4Address("192.0.2.10"), IPv4Address("192.0.2.1"))


@pytest.mark.parametrize("prefix", ["10.0.0.0/8", "192.0.2.0/24", "198.51.100.128/25", "0.0.0.0/0"])
def test_trimmed_ipv4_masks(prefix: str) -> None:
    network = IPv4Network(prefix)
    assert routing.decode_prefixlen(abi.kernel_mask(network), AF_INET) == network.prefixlen


@pytest.mark.parametrize("prefix", ["::/0", "fd6d:3674:a1b2::/48", "fd6d:3674:a1b2:0:1::/80", "fd00:ab::/64"])
def test_trimmed_ipv6_masks(prefix: str) -> None:
    network = IPv6Network(prefix)
    assert routing.decode_prefixlen(abi.kernel_mask(network), AF_INET6) == network.prefixlen


def test_link_sockaddr_with_a_long_name_grows() -> None:
    sa = routing.encode_link(3, "a-rather-long0")
    assert sa[0] == len(sa) == 8 + 14
    assert routing.decode_link(sa) == (3, "a-rather-long0")


def test_truncated_and_foreign_messages() -> None:
    with pytest.raises(RoutingMessageError):
        routing.parse_message(b"\x05")
    with pytest.raises(RoutingMessageError):
        routing.parse_message(struct.pack("=HBB", 200, 5, RTM_GET) + bytes(20))
    with pytest.raises(RoutingMessageError):
        routing.parse_message(struct.pack("=HBB", 8, 4, RTM_GET) + bytes(4))  # RTM_VERSION 4
    unknown = routing.parse_message(struct.pack("=HBB", 8, 5, 0x12) + bytes(4))  # RTM_IFINFO2: header skipped
    assert (unknown.type, unknown.sockaddrs) == (0x12, {})


messages = st.builds(
    lambda kind, index, addrs, blobs: (
        abi.assemble(
            abi.RtMsghdr(rtm_version=5, rtm_type=kind, rtm_index=index), dict(zip(range(8), blobs, strict=False))
        )
        if addrs
        else bytes(abi.RtMsghdr(rtm_msglen=92, rtm_version=5, rtm_type=kind))
    ),
    st.integers(1, 11),
    st.integers(0, 0xFFFF),
    st.booleans(),
    st.lists(st.binary(max_size=40).map(lambda b: bytes([len(b) + 2, 2]) + b), max_size=8),
)


@given(st.binary(max_size=400))
def test_parser_never_raises_anything_else_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(RoutingMessageError):
        routing.parse_messages(data)


@given(messages, st.integers(0, 200), st.integers(0, 255))
def test_parser_on_corrupted_messages(message: bytes, position: int, value: int) -> None:
    corrupted = bytearray(message)
    if position < len(corrupted):
        corrupted[position] = value
    try:
        for parsed in routing.parse_messages(bytes(corrupted)):
            routing.route_info(parsed)
    except RoutingMessageError:
        pass


@given(messages)
def test_well_formed_messages_parse(message: bytes) -> None:
    (parsed,) = routing.parse_messages(message)
    assert parsed.type == message[3]
