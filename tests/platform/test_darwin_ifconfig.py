"""Addresses, MTU and link state through ioctls, against the fake kernel's in6_update_ifa and ifioctl."""

from __future__ import annotations

import asyncio
from ipaddress import IPv6Address

import pytest

from m6t.lab.emulation.darwin_abi import IFF_UP, IN6_IFF_NODAD
from m6t.platform.base import PlatformError, PlatformErrorCode
from m6t.platform.darwin.backend import DarwinBackend
from m6t.platform.darwin.ifconfig_ioctl import SIOCAIFADDR_IN6, SIOCDIFADDR_IN6
from tests.platform.darwin_fakes import FakeDarwinKernel

ADDRESS = IPv6Address("fd6d:3674:a1b2:0:1:a1b2:c3d4:e5f6")
OTHER = IPv6Address("fd6d:3674:a1b2:0:1:1111:2222:3333")


def setup() -> tuple[FakeDarwinKernel, DarwinBackend, str]:
    kernel = FakeDarwinKernel()
    backend = DarwinBackend(kernel)
    return kernel, backend, backend.open_tun("m6t0").name


def test_replace_address_is_idempotent_and_nodad() -> None:
    kernel, backend, name = setup()

    async def main() -> None:
        await backend.replace_address(name, ADDRESS, 80)
        await backend.replace_address(name, ADDRESS, 80)

    asyncio.run(main())
    entry = kernel.interface(name).ipv6[ADDRESS]
    assert (entry.prefixlen, entry.flags) == (80, IN6_IFF_NODAD)
    assert (entry.vltime, entry.pltime) == (0xFFFFFFFF, 0xFFFFFFFF)
    assert list(kernel.interface(name).ipv6) == [ADDRESS]
    assert [request for request, _ in kernel.ioctls].count(SIOCAIFADDR_IN6) == 2


def test_a_new_prefix_length_replaces_the_address() -> None:
    # The kernel refuses to change an existing address's prefix length (EINVAL): delete, then add.
    kernel, backend, name = setup()

    async def main() -> None:
        await backend.replace_address(name, ADDRESS, 80)
        await backend.replace_address(name, ADDRESS, 128)

    asyncio.run(main())
    assert kernel.interface(name).ipv6[ADDRESS].prefixlen == 128
    assert [request for request, _ in kernel.ioctls][-3:] == [SIOCAIFADDR_IN6, SIOCDIFADDR_IN6, SIOCAIFADDR_IN6]


def test_remove_address_and_absent_ones() -> None:
    kernel, backend, name = setup()

    async def main() -> None:
        await backend.replace_address(name, ADDRESS, 80)
        await backend.replace_address(name, OTHER, 80)
        await backend.remove_address(name, ADDRESS, 80)
        await backend.remove_address(name, ADDRESS, 80)  # absent: not an error
        await backend.remove_address("utun99", ADDRESS, 80)  # no such interface: not an error either

    asyncio.run(main())
    assert list(kernel.interface(name).ipv6) == [OTHER]


def test_address_errors() -> None:
    kernel, backend, name = setup()

    async def add(ifname: str, prefixlen: int = 80) -> None:
        await backend.replace_address(ifname, ADDRESS, prefixlen)

    with pytest.raises(PlatformError, match="no such interface"):
        asyncio.run(add("utun99"))
    with pytest.raises(PlatformError, match="invalid prefix length"):
        asyncio.run(add(name, 0))
    kernel.euid = 501
    with pytest.raises(PlatformError) as info:
        asyncio.run(add(name))
    assert info.value.hint == "run the m6t helper as root"
    assert info.value.code is PlatformErrorCode.PERMISSION_DENIED


def test_mtu_and_link_up() -> None:
    kernel, backend, name = setup()
    interface = kernel.interface(name)
    interface.flags &= ~IFF_UP

    async def main() -> None:
        await backend.set_mtu(name, 1472)
        await backend.set_link_up(name)
        await backend.set_link_up(name)

    asyncio.run(main())
    assert interface.mtu == 1472
    assert interface.flags & IFF_UP
    with pytest.raises(PlatformError, match="MTU 70000"):
        asyncio.run(backend.set_mtu(name, 70000))
    with pytest.raises(PlatformError, match="no such interface"):
        asyncio.run(backend.set_mtu("utun99", 1280))
    assert interface.mtu == 1472


def test_close_releases_the_ioctl_socket() -> None:
    kernel, backend, name = setup()
    asyncio.run(backend.set_mtu(name, 1400))
    assert kernel.open_sockets("inet6") == 1
    asyncio.run(backend.close())
    assert kernel.open_sockets("inet6") == 0
