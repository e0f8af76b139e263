"""Routes through the PF_ROUTE socket against the fake kernel's routing table: replace, remove, priority."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest

from m6t.lab.emulation.darwin_abi import RTF_GATEWAY, RTF_IFSCOPE, RTF_STATIC, RTF_UP, RTM_ADD, RTM_CHANGE, RTM_GET
from m6t.platform.base import PlatformError, PlatformErrorCode
from m6t.platform.darwin import routing
from m6t.platform.darwin.backend import DarwinBackend
from m6t.protocol.values import Route
from tests.platform.darwin_fakes import FakeDarwinKernel, FakeRoute

DEFAULT = Route(IPv6Network("::/0"), 1029)
HA_LINK = Route(IPv6Network("fd00:ab::/64"), 1029)
HA_HOST = Route(IPv6Network("fd00:ab::1/128"), 1029)
NATIVE_ROUTER = IPv6Address("fe80::1")


def setup(*, native_default: bool = False) -> tuple[FakeDarwinKernel, DarwinBackend, str, int]:
    kernel = FakeDarwinKernel()
    kernel.add_interface("en0")
    if native_default:
        kernel.add_route("::/0", "en0", str(NATIVE_ROUTER))
    backend = DarwinBackend(kernel)
    name = backend.open_tun("m6t0").name
    return kernel, backend, name, kernel.if_nametoindex(name)


def ours(kernel: FakeDarwinKernel, name: str) -> list[tuple[str, int, int]]:
    """(destination, scope, flags) of the routes into our utun."""
    return sorted((str(r.network), r.scope, r.flags) for r in kernel.routes_of(name))


def native(kernel: FakeDarwinKernel) -> list[FakeRoute]:
    return kernel.routes_of("en0")


def types(kernel: FakeDarwinKernel) -> list[int]:
    return [kind for kind, _flags, _error in kernel.route_requests]


def test_default_route_when_the_host_has_none() -> None:
    kernel, backend, name, index = setup()

    asyncio.run(backend.replace_route(name, DEFAULT))
    assert ours(kernel, name) == [("::/0", 0, RTF_UP | RTF_STATIC)]
    route = kernel.routes_of(name)[0]
    assert route.gateway is None and route.ifindex == index  # the gateway was the utun's sockaddr_dl
    assert types(kernel) == [RTM_GET, RTM_ADD]

    asyncio.run(backend.replace_route(name, DEFAULT))  # idempotent: ours already, changed in place
    assert ours(kernel, name) == [("::/0", 0, RTF_UP | RTF_STATIC)]
    assert types(kernel)[2:] == [RTM_GET, RTM_CHANGE]

    asyncio.run(backend.remove_route(name, DEFAULT))
    assert ours(kernel, name) == []
    asyncio.run(backend.remove_route(name, DEFAULT))  # absent: not an error
    assert kernel.open_sockets("route") == 0


def test_a_native_default_route_keeps_priority() -> None:
    # The last-resort metric of Linux, the macOS way: ours is scoped to the utun, the native one stays.
    kernel, backend, name, index = setup(native_default=True)

    asyncio.run(backend.replace_route(name, DEFAULT))
    asyncio.run(backend.replace_route(name, DEFAULT))  # EEXIST on the scoped route: fine
    assert ours(kernel, name) == [("::/0", index, RTF_UP | RTF_STATIC | RTF_IFSCOPE)]
    (route,) = native(kernel)
    assert (route.gateway, route.scope, route.flags & RTF_GATEWAY) == (NATIVE_ROUTER, 0, RTF_GATEWAY)

    asyncio.run(backend.remove_route(name, DEFAULT))
    assert ours(kernel, name) == []
    assert native(kernel) == [route]


def test_ours_becomes_the_default_once_the_native_one_is_gone() -> None:
    kernel, backend, name, index = setup(native_default=True)
    asyncio.run(backend.replace_route(name, DEFAULT))
    kernel.delete_route("::/0")
    asyncio.run(backend.replace_route(name, DEFAULT))
    assert ours(kernel, name) == [("::/0", 0, RTF_UP | RTF_STATIC), ("::/0", index, RTF_UP | RTF_STATIC | RTF_IFSCOPE)]
    asyncio.run(backend.remove_route(name, DEFAULT))
    assert ours(kernel, name) == []


def test_prefix_route() -> None:
    kernel, backend, name, _index = setup(native_default=True)
    asyncio.run(backend.replace_route(name, HA_LINK))
    assert ours(kernel, name) == [("fd00:ab::/64", 0, RTF_UP | RTF_STATIC)]
    asyncio.run(backend.remove_route(name, HA_LINK))
    assert ours(kernel, name) == []
    assert len(native(kernel)) == 1


def test_more_specific_routes_do_not_hide_the_route_asked_about() -> None:
    # Only an exact (key, mask) lookup finds fd00:ab::/64 when fd00:ab::/96 also exists: a best match would
    # answer with the /96, take the /64 for absent, and run into EEXIST.
    kernel, backend, name, index = setup()
    asyncio.run(backend.replace_route(name, HA_LINK))
    kernel.add_route("fd00:ab::/96", "en0", str(NATIVE_ROUTER))
    asyncio.run(backend.replace_route(name, HA_LINK))
    assert ours(kernel, name) == [("fd00:ab::/64", 0, RTF_UP | RTF_STATIC)]
    asyncio.run(backend.remove_route(name, HA_LINK))
    assert ours(kernel, name) == []
    kernel.add_route("fd00:ab::/64", "en0", str(NATIVE_ROUTER))
    asyncio.run(backend.replace_route(name, HA_LINK))
    assert ours(kernel, name) == [("fd00:ab::/64", index, RTF_UP | RTF_STATIC | RTF_IFSCOPE)]
    assert len(native(kernel)) == 2


def test_host_route_under_a_covering_route() -> None:
    # A /128 goes in as RTF_HOST without a netmask.  Looked up without a netmask, the kernel answers with
    # the best match: the native ::/0, which must be neither mistaken for ours nor RTM_CHANGEd.
    kernel, backend, name, _index = setup(native_default=True)
    asyncio.run(backend.replace_route(name, HA_HOST))
    asyncio.run(backend.replace_route(name, HA_HOST))
    assert [(str(r.network), r.host, r.scope) for r in kernel.routes_of(name)] == [("fd00:ab::1/128", True, 0)]
    (route,) = native(kernel)
    assert (route.network, route.gateway) == (IPv6Network("::/0"), NATIVE_ROUTER)
    assert RTM_CHANGE not in types(kernel)
    asyncio.run(backend.remove_route(name, HA_HOST))
    assert ours(kernel, name) == []
    assert native(kernel) == [route]


def test_route_errors() -> None:
    kernel, backend, name, _index = setup()
    with pytest.raises(PlatformError, match="no interface named utun99"):
        asyncio.run(backend.replace_route("utun99", DEFAULT))
    asyncio.run(backend.remove_route("utun99", DEFAULT))  # gone with its interface: not an error
    kernel.euid = 501
    with pytest.raises(PlatformError) as info:
        asyncio.run(backend.replace_route(name, DEFAULT))
    assert info.value.hint == "run the m6t helper as root"
    assert info.value.code is PlatformErrorCode.PERMISSION_DENIED
    assert kernel.open_sockets("route") == 0


def test_routes_die_with_the_utun() -> None:
    kernel = FakeDarwinKernel()
    backend = DarwinBackend(kernel)
    tun = backend.open_tun("m6t0")
    asyncio.run(backend.replace_route(tun.name, DEFAULT))
    assert kernel.routes_of(tun.name)
    tun.close()
    assert kernel.routes == []


def test_lookup_reports_interface_source_and_next_hop() -> None:
    kernel = FakeDarwinKernel()
    kernel.add_interface("en0")
    kernel.add_ipv4("en0", "192.0.2.10/24")
    kernel.add_route("0.0.0.0/0", "en0", "192.0.2.1")
    info = asyncio.run(routing.lookup(kernel, IPv4Address("198.51.100.2")))
    assert info is not None
    assert (info.interface, info.local, info.gateway) == ("en0", IPv4Address("192.0.2.10"), IPv4Address("192.0.2.1"))
    assert info.flags & RTF_GATEWAY
    on_link = asyncio.run(routing.lookup(kernel, IPv4Address("192.0.2.77")))
    assert on_link is not None and on_link.gateway is None and on_link.interface == "en0"
    assert asyncio.run(routing.lookup(kernel, IPv6Address("2001:db8::1"))) is None
