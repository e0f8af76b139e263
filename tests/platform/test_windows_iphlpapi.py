"""Addresses, routes and MTU through the IP Helper API (fake iphlpapi.dll reading the raw rows)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m6t.platform.base import PlatformError, PlatformErrorCode
from m6t.platform.windows.backend import WindowsBackend
from m6t.platform.windows.iphlpapi import IpHelper
from m6t.platform.windows.system import AF_INET, AF_INET6, WinError
from m6t.protocol.values import Route
from tests.platform.windows_fakes import FakeWindows, RouteEntry, fake_windows

NAME = "m6t0"
ADDRESS = IPv6Address("fd6d:3674:a1b2:0:1:1234:5678:9abc")
DEFAULT = Route(IPv6Network("::/0"), 1029)


@pytest.fixture
def fake() -> Iterator[FakeWindows]:
    with fake_windows() as windows:
        yield windows


@pytest.fixture
def backend(fake: FakeWindows) -> Iterator[WindowsBackend]:
    backend = WindowsBackend(fake.api())
    tun = backend.open_tun(NAME)
    yield backend
    tun.close()


def run(coroutine: object) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


def ipv6_routes(fake: FakeWindows) -> list[RouteEntry]:
    # Windows' own IPv4 routes on the adapter (APIPA) are not ours to look at.
    return [entry for entry in fake.iphlpapi.routes.values() if entry.network.version == 6]


def luid(fake: FakeWindows, name: str = NAME) -> int:
    interface = fake.interface_by_alias(name)
    assert interface is not None
    return interface.luid


# Addresses -------------------------------------------------------------------------------------------


def test_replace_address_installs_a_manual_preferred_ipv6_address(fake: FakeWindows, backend: WindowsBackend) -> None:
    run(backend.replace_address(NAME, ADDRESS, 80))
    entry = fake.iphlpapi.unicast[(luid(fake), ADDRESS)]
    assert entry.prefixlen == 80
    assert (entry.prefix_origin, entry.suffix_origin) == (1, 1)  # manual, manual
    assert entry.dad_state == 4  # IpDadStatePreferred: usable at once
    assert entry.valid == entry.preferred == 0xFFFFFFFF
    assert entry.skip_as_source == 0


def test_replace_address_is_idempotent_and_updates(fake: FakeWindows, backend: WindowsBackend) -> None:
    run(backend.replace_address(NAME, ADDRESS, 80))
    run(backend.replace_address(NAME, ADDRESS, 80))
    run(backend.replace_address(NAME, ADDRESS, 64))
    # ERROR_OBJECT_ALREADY_EXISTS (5010) on create turns into a set.
    assert fake.iphlpapi.calls.count("create_unicast") == 3
    assert fake.iphlpapi.calls.count("set_unicast") == 2
    assert [e.prefixlen for e in fake.iphlpapi.unicast.values()] == [64]


def test_remove_address(fake: FakeWindows, backend: WindowsBackend) -> None:
    run(backend.remove_address(NAME, ADDRESS, 80))  # absent (ERROR_NOT_FOUND): not an error
    run(backend.replace_address(NAME, ADDRESS, 80))
    run(backend.remove_address(NAME, ADDRESS, 80))
    assert fake.iphlpapi.unicast == {}
    run(backend.remove_address("gone", ADDRESS, 80))  # no such interface: nothing to remove


def test_address_changes_need_elevation(fake: FakeWindows, backend: WindowsBackend) -> None:
    fake.admin = False
    with pytest.raises(WinError) as info:
        run(backend.replace_address(NAME, ADDRESS, 80))
    assert info.value.winerror == 5
    assert info.value.code is PlatformErrorCode.PERMISSION_DENIED


def test_changes_on_a_missing_interface_fail_readably(backend: WindowsBackend) -> None:
    with pytest.raises(PlatformError, match="no interface named nope"):
        run(backend.replace_address("nope", ADDRESS, 80))
    with pytest.raises(PlatformError, match="no interface named nope"):
        run(backend.set_mtu("nope", 1400))
    assert backend.interface_exists(NAME)
    assert backend.interface_exists(NAME.upper())  # aliases are case-insensitive on Windows
    assert not backend.interface_exists("nope")


# Routes ----------------------------------------------------------------------------------------------


def test_replace_route_installs_an_on_link_route_with_the_metric(fake: FakeWindows, backend: WindowsBackend) -> None:
    run(backend.replace_route(NAME, DEFAULT))
    [entry] = ipv6_routes(fake)
    assert entry.luid == luid(fake)
    assert entry.network == IPv6Network("::/0")
    assert entry.next_hop == IPv6Address("::")  # on-link, and of the route's family
    assert entry.metric == 1029
    assert entry.protocol == 3  # MIB_IPPROTO_NETMGMT


def test_replace_route_updates_the_metric_in_place(fake: FakeWindows, backend: WindowsBackend) -> None:
    run(backend.replace_route(NAME, DEFAULT))
    run(backend.replace_route(NAME, Route(DEFAULT.network, 900)))
    assert [e.metric for e in ipv6_routes(fake)] == [900]
    assert fake.iphlpapi.calls.count("set_route") == 1


def test_routes_to_prefixes_and_removal(fake: FakeWindows, backend: WindowsBackend) -> None:
    ha = Route(IPv6Network("fd00:ab::/64"), 1029)
    run(backend.replace_route(NAME, DEFAULT))
    run(backend.replace_route(NAME, ha))
    assert {e.network for e in ipv6_routes(fake)} == {DEFAULT.network, ha.network}
    run(backend.remove_route(NAME, DEFAULT))
    run(backend.remove_route(NAME, DEFAULT))  # absent: not an error
    assert {e.network for e in ipv6_routes(fake)} == {ha.network}
    run(backend.remove_route("gone", ha))


# Interface settings ----------------------------------------------------------------------------------


def test_set_mtu_sets_the_ipv6_nl_mtu(fake: FakeWindows, backend: WindowsBackend) -> None:
    interface = fake.interface_by_alias(NAME)
    assert interface is not None
    before = dict(interface.params[AF_INET6])
    run(backend.set_mtu(NAME, 1400))
    assert interface.params[AF_INET6]["NlMtu"] == 1400
    assert {k: v for k, v in interface.params[AF_INET6].items() if k != "NlMtu"} == {
        k: v for k, v in before.items() if k != "NlMtu"
    }  # the rest of the row went back as Windows gave it


def test_an_mtu_below_the_ipv6_minimum_is_refused(backend: WindowsBackend) -> None:
    with pytest.raises(WinError) as info:
        run(backend.set_mtu(NAME, 1200))
    assert info.value.winerror == 87
    assert info.value.code is PlatformErrorCode.OTHER


def test_set_link_up_makes_a_plain_point_to_point_link(fake: FakeWindows, backend: WindowsBackend) -> None:
    run(backend.set_link_up(NAME))
    params = fake.interface_by_alias(NAME).params[AF_INET6]  # type: ignore[union-attr]
    assert params["DadTransmits"] == 0
    assert params["RouterDiscoveryBehavior"] == 0
    assert params["ManagedAddressConfigurationSupported"] == 0
    assert params["OtherStatefulConfigurationSupported"] == 0


def test_ipv6_unbound_from_the_adapter(fake: FakeWindows) -> None:
    fake.ipv6_on_new_adapters = False
    backend = WindowsBackend(fake.api())
    backend.iphlpapi.interface_wait = 0.2
    tun = backend.open_tun(NAME)
    started = time.monotonic()
    with pytest.raises(PlatformError) as info:
        run(backend.set_mtu(NAME, 1400))
    assert time.monotonic() - started >= 0.2  # it was given the time to appear
    assert "IPv6 is disabled" in str(info.value)
    assert info.value.hint is not None and "TCP/IPv6" in info.value.hint
    tun.close()


@pytest.mark.parametrize("operation", ["mtu", "link", "address", "route"])
def test_a_new_adapters_ipv6_interface_may_appear_late(fake: FakeWindows, operation: str) -> None:
    # Windows binds IPv6 to a new adapter asynchronously: right after creation it may not be there yet.
    fake.ipv6_on_new_adapters = False
    backend = WindowsBackend(fake.api())
    tun = backend.open_tun(NAME)
    interface = fake.interface_by_alias(NAME)
    assert interface is not None
    timer = threading.Timer(0.15, lambda: setattr(interface, "ipv6_bound", True))
    timer.start()
    if operation == "mtu":
        run(backend.set_mtu(NAME, 1400))
        assert interface.params[AF_INET6]["NlMtu"] == 1400
    elif operation == "link":
        run(backend.set_link_up(NAME))
    elif operation == "address":
        run(backend.replace_address(NAME, ADDRESS, 80))
        assert (interface.luid, ADDRESS) in fake.iphlpapi.unicast
    else:
        run(backend.replace_route(NAME, DEFAULT))
        assert len(ipv6_routes(fake)) == 1
    timer.join()
    tun.close()


def test_ipv4_rows_are_written_back_with_site_prefix_length_zero(fake: FakeWindows) -> None:
    # GetIpInterfaceEntry reports a SitePrefixLength for IPv4 that SetIpInterfaceEntry then refuses.
    ethernet = fake.add_interface("Ethernet")
    helper = IpHelper(fake.api())
    helper.set_mtu(ethernet.luid, AF_INET, 1400)
    assert ethernet.params[AF_INET]["NlMtu"] == 1400


def test_aliases_round_trip_up_to_the_windows_maximum(fake: FakeWindows) -> None:
    helper = IpHelper(fake.api())
    long_name = "Ethernet ünïcode " + "x" * 230
    interface = fake.add_interface(long_name)
    assert helper.luid_to_alias(interface.luid) == long_name
    assert helper.alias_to_luid(long_name) == interface.luid
    assert helper.alias_to_luid("absent") is None
    assert helper.luid_to_alias(12345) is None


# Replace/remove semantics as a property --------------------------------------------------------------

addresses = st.sampled_from([ADDRESS, IPv6Address("fd6d:3674:a1b2:0:1::1"), IPv6Address("fd00::1")])
operations = st.lists(st.tuples(st.booleans(), addresses, st.sampled_from([64, 80, 128])), max_size=12)


@settings(max_examples=40, deadline=None)
@given(operations)
def test_any_sequence_of_replace_and_remove_leaves_what_was_asked(ops: list[tuple[bool, IPv6Address, int]]) -> None:
    with fake_windows() as fake:
        ethernet = fake.add_interface("Ethernet")
        helper = IpHelper(fake.api())
        model: dict[IPv6Address, int] = {}
        for replace, address, prefixlen in ops:
            if replace:
                helper.replace_address(ethernet.luid, address, prefixlen)
                model[address] = prefixlen
            else:
                assert helper.remove_address(ethernet.luid, address, prefixlen) == (address in model)
                model.pop(address, None)
        table = {key[1]: entry.prefixlen for key, entry in fake.iphlpapi.unicast.items()}
        assert table == model


def test_ipv4_address_encoding(fake: FakeWindows) -> None:
    ethernet = fake.add_interface("Ethernet")
    helper = IpHelper(fake.api())
    helper.replace_address(ethernet.luid, IPv4Address("192.0.2.10"), 24)
    assert fake.iphlpapi.unicast[(ethernet.luid, IPv4Address("192.0.2.10"))].prefixlen == 24
