"""IP Helper and Wintun structure layouts: documented x64 sizes and offsets, and encodings that agree with
the fakes' independent raw-memory codecs."""

from __future__ import annotations

import ctypes
import uuid
from ipaddress import IPv4Address, IPv6Address

from hypothesis import given
from hypothesis import strategies as st

from m6t.platform.windows import iphlpapi as ip
from m6t.platform.windows.wintun import GUID, adapter_guid, guid_struct
from tests.platform import windows_fakes as fakes


def test_documented_sizes() -> None:
    assert ctypes.sizeof(ip.SOCKADDR_INET) == 28
    assert ctypes.sizeof(ip.SOCKADDR_IN) == 16
    assert ctypes.sizeof(ip.SOCKADDR_IN6) == 28
    assert ctypes.sizeof(ip.IP_ADDRESS_PREFIX) == 32
    assert ctypes.sizeof(ip.NET_LUID) == 8
    assert ctypes.sizeof(ip.MIB_UNICASTIPADDRESS_ROW) == 80
    assert ctypes.sizeof(ip.MIB_IPFORWARD_ROW2) == 104
    assert ctypes.sizeof(ip.MIB_IPINTERFACE_ROW) == 168
    assert ctypes.sizeof(GUID) == 16


def test_documented_offsets() -> None:
    unicast = ip.MIB_UNICASTIPADDRESS_ROW
    assert [
        getattr(unicast, f).offset for f in ("InterfaceLuid", "InterfaceIndex", "PrefixOrigin", "SuffixOrigin")
    ] == [
        32,
        40,
        44,
        48,
    ]
    assert unicast.ValidLifetime.offset == 52
    assert unicast.PreferredLifetime.offset == 56
    assert unicast.OnLinkPrefixLength.offset == 60
    assert unicast.SkipAsSource.offset == 61
    assert unicast.DadState.offset == 64
    assert unicast.ScopeId.offset == 68
    assert unicast.CreationTimeStamp.offset == 72

    forward = ip.MIB_IPFORWARD_ROW2
    assert forward.InterfaceIndex.offset == 8
    assert forward.DestinationPrefix.offset == 12
    assert forward.DestinationPrefix.offset + ip.IP_ADDRESS_PREFIX.PrefixLength.offset == 40
    assert forward.NextHop.offset == 44
    assert forward.SitePrefixLength.offset == 72
    assert forward.ValidLifetime.offset == 76
    assert forward.Metric.offset == 84
    assert forward.Protocol.offset == 88
    assert forward.Loopback.offset == 92
    assert forward.Immortal.offset == 95
    assert forward.Age.offset == 96
    assert forward.Origin.offset == 100

    interface = ip.MIB_IPINTERFACE_ROW
    assert interface.InterfaceLuid.offset == 8
    assert interface.InterfaceIndex.offset == 16
    assert interface.InterfaceIdentifier.offset == 24
    assert interface.AdvertiseDefaultRoute.offset == 48
    assert interface.RouterDiscoveryBehavior.offset == 52
    assert interface.DadTransmits.offset == 56
    assert interface.LinkLocalAddressTimeout.offset == 76
    assert interface.ZoneIndices.offset == 80
    assert interface.SitePrefixLength.offset == 144
    assert interface.Metric.offset == 148
    assert interface.NlMtu.offset == 152
    assert interface.Connected.offset == 156
    assert interface.ReachableTime.offset == 160
    assert interface.TransmitOffload.offset == 164
    assert interface.DisableDefaultRoutes.offset == 166

    assert ip.SOCKADDR_IN6.sin6_addr.offset == 8
    assert ip.SOCKADDR_IN6.sin6_scope_id.offset == 24
    assert ip.SOCKADDR_IN.sin_addr.offset == 4


ipv4 = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))


@given(st.one_of(ipv4, ipv6))
def test_sockaddr_inet_matches_the_documented_encoding(address: IPv4Address | IPv6Address) -> None:
    encoded = ip.sockaddr_inet(address)
    raw = bytes(encoded)
    assert raw == fakes.pack_sockaddr(address)
    family, decoded = fakes.unpack_sockaddr(raw)
    assert family == (2 if address.version == 4 else 23)  # Windows' AF_INET6 is 23, not the host's
    assert decoded == address
    assert ip.sockaddr_address(ip.SOCKADDR_INET.from_buffer_copy(raw)) == address


@given(st.binary(min_size=28, max_size=28))
def test_sockaddr_address_reads_what_windows_would(raw: bytes) -> None:
    _family, expected = fakes.unpack_sockaddr(raw)
    assert ip.sockaddr_address(ip.SOCKADDR_INET.from_buffer_copy(raw)) == expected


@given(st.text(min_size=1, max_size=40))
def test_adapter_guid_is_stable_and_case_insensitive(name: str) -> None:
    guid = adapter_guid(name)
    assert guid == adapter_guid(name) == adapter_guid(name.upper()) == adapter_guid(name.lower())
    # In memory a GUID's first three fields are little-endian: what Windows reads back is the same GUID.
    assert uuid.UUID(bytes_le=bytes(guid_struct(guid))) == guid


def test_adapter_guid_differs_per_name() -> None:
    assert adapter_guid("m6t0") != adapter_guid("m6t1")
    assert adapter_guid("m6t0") == uuid.uuid5(uuid.UUID("ff945ba4-7016-4c6f-8f11-545aefd44130"), "m6t0")
