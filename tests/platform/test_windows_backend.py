"""WindowsBackend as the helper drives it: start-up checks, then the whole tunnel life cycle on a fake host."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m6t.client.api.schema import ErrorCode
from m6t.client.api.wire import error_code_for
from m6t.platform.base import Backend, PlatformError
from m6t.platform.windows.backend import WindowsBackend, ipv6_disabled_by
from m6t.platform.windows.system import AF_INET6, TCPIP6_PARAMETERS, native_api
from m6t.platform.windows.wintun import WINTUN_HINT
from m6t.protocol.values import Route
from tests.platform.windows_fakes import FakeWindows, fake_windows

NAME = "m6t0"


@pytest.fixture
def fake() -> Iterator[FakeWindows]:
    with fake_windows() as windows:
        yield windows


def codes(problems: list[PlatformError]) -> list[ErrorCode]:
    return [error_code_for(p.code) for p in problems]


def test_it_is_a_backend(fake: FakeWindows) -> None:
    backend: Backend = WindowsBackend(fake.api())
    assert backend.name == "windows"


def test_check_on_a_healthy_host(fake: FakeWindows) -> None:
    backend = WindowsBackend(fake.api())
    assert backend.check() == []
    assert backend.driver_version is None  # the driver loads with the first adapter


def test_check_missing_wintun(fake: FakeWindows) -> None:
    fake.wintun_location = None
    problems = WindowsBackend(fake.api()).check()
    assert codes(problems) == [ErrorCode.TUN_MISSING]
    assert problems[0].hint == WINTUN_HINT
    assert "wintun.dll" in str(problems[0])


def test_check_not_elevated(fake: FakeWindows) -> None:
    fake.admin = False
    problems = WindowsBackend(fake.api()).check()
    assert codes(problems) == [ErrorCode.PERMISSION_DENIED]
    assert problems[0].hint is not None and "service" in problems[0].hint


@pytest.mark.parametrize(
    ("value", "disabled"), [(None, False), (0, False), (0x20, False), (0x01, False), (0x10, True), (0xFF, True)]
)
def test_check_ipv6_disabled_components(fake: FakeWindows, value: int | None, disabled: bool) -> None:
    if value is not None:
        fake.registry[(TCPIP6_PARAMETERS, "DisabledComponents")] = value
    problems = WindowsBackend(fake.api()).check()
    assert codes(problems) == ([ErrorCode.IPV6_DISABLED] if disabled else [])
    if disabled:
        assert isinstance(problems[0], PlatformError)
        assert "DisabledComponents" in (problems[0].hint or "")


@given(st.integers(0, 0xFFFFFFFF))
def test_only_the_non_tunnel_bit_disables_ipv6_on_wintun(value: int) -> None:
    assert ipv6_disabled_by(value) == bool(value & 0x10)


def test_all_findings_at_once(fake: FakeWindows) -> None:
    fake.wintun_location = "current_dir"
    fake.admin = False
    fake.registry[(TCPIP6_PARAMETERS, "DisabledComponents")] = 0xFF
    problems = WindowsBackend(fake.api()).check()
    assert codes(problems) == [ErrorCode.TUN_MISSING, ErrorCode.PERMISSION_DENIED, ErrorCode.IPV6_DISABLED]


def test_the_whole_life_cycle(fake: FakeWindows) -> None:
    """What the driver does: create, MTU, up, address, routes, move (new address), down, close."""
    first = IPv6Address("fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc")
    second = IPv6Address("fd6d:3674:a1b2:0:1:dddd:eeee:ffff")
    routes = (Route(IPv6Network("::/0"), 1029), Route(IPv6Network("fd00:ab::/64"), 1029))

    async def main() -> None:
        backend = WindowsBackend(fake.api())
        assert backend.check() == []
        tun = backend.open_tun(NAME)
        assert backend.interface_exists(tun.name)
        await backend.set_mtu(tun.name, 1472)
        await backend.set_link_up(tun.name)
        await backend.replace_address(tun.name, first, 80)
        for route in routes:
            await backend.replace_route(tun.name, route)
        await backend.replace_address(tun.name, second, 80)
        await backend.remove_address(tun.name, first, 80)
        interface = fake.interface_by_alias(tun.name)
        assert interface is not None
        assert interface.params[AF_INET6]["NlMtu"] == 1472
        assert [key[1] for key in fake.iphlpapi.unicast] == [second]
        assert {e.network for e in fake.iphlpapi.routes.values() if e.network.version == 6} == {
            r.network for r in routes
        }
        for route in routes:
            await backend.remove_route(tun.name, route)
        await backend.remove_address(tun.name, second, 80)
        tun.close()
        assert not backend.interface_exists(NAME)
        # The journal's clean-up after a crash: everything absent is fine.
        await backend.remove_address(NAME, second, 80)
        await backend.remove_route(NAME, routes[0])
        await backend.close()

    asyncio.run(main())
    assert fake.wintun.adapters == {}
    assert fake.iphlpapi.unicast == {}


def test_udp_and_monitor_factories(fake: FakeWindows) -> None:
    backend = WindowsBackend(fake.api())
    monitor = backend.connectivity_monitor(IPv4Address("198.51.100.2"), NAME)
    assert monitor.gateway == IPv4Address("198.51.100.2")
    assert monitor.ignore_interface == NAME


def test_the_native_api_is_windows_only() -> None:
    if sys.platform == "win32":
        assert native_api().iphlpapi is not None
        return
    with pytest.raises(PlatformError, match="cannot run on"):
        native_api()
    with pytest.raises(PlatformError):
        WindowsBackend()
