"""DarwinBackend as the client driver uses it, and its start-up checks, against the fake kernel."""

from __future__ import annotations

import asyncio
from ipaddress import IPv6Address, IPv6Network

from m6t.lab.emulation.darwin_abi import AF_INET6, RTF_STATIC, RTF_UP
from m6t.platform.base import Backend, PlatformErrorCode
from m6t.platform.darwin.backend import DarwinBackend
from m6t.protocol.values import Route
from tests.platform.darwin_fakes import FakeDarwinKernel

ADDRESS = IPv6Address("fd6d:3674:a1b2:0:1:a1b2:c3d4:e5f6")


def test_is_a_backend() -> None:
    backend: Backend = DarwinBackend(FakeDarwinKernel())
    assert backend.name == "darwin"


def test_checks_pass_on_a_healthy_host() -> None:
    assert DarwinBackend(FakeDarwinKernel()).check() == []


def test_check_findings() -> None:
    kernel = FakeDarwinKernel(euid=501, utun_control=False, ipv6=False)
    findings = DarwinBackend(kernel).check()
    messages = [str(finding) for finding in findings]
    assert len(findings) == 3
    assert "utun kernel control is unavailable" in messages[0]
    assert "no IPv6 stack" in messages[1]
    assert "not root" in messages[2]
    assert all(finding.hint for finding in findings)
    assert [finding.code for finding in findings] == [
        PlatformErrorCode.TUN_MISSING,
        PlatformErrorCode.IPV6_DISABLED,
        PlatformErrorCode.PERMISSION_DENIED,
    ]
    assert kernel.open_sockets("control") == 0


def test_interface_exists() -> None:
    backend = DarwinBackend(FakeDarwinKernel())
    assert backend.interface_exists("lo0")
    assert backend.interface_exists("utun0")
    # The configured name never exists on macOS: the driver's "someone else holds it" check stays quiet.
    assert not backend.interface_exists("m6t0")
    assert not backend.interface_exists("bad\0name")


def test_the_driver_sequence() -> None:
    # open_tun → set_mtu → set_link_up → address → route → packets → teardown, on the name the device reports.
    kernel = FakeDarwinKernel()
    backend = DarwinBackend(kernel)

    async def main() -> None:
        tun = backend.open_tun("m6t0")
        await backend.set_mtu(tun.name, 1472)
        await backend.set_link_up(tun.name)
        await backend.replace_address(tun.name, ADDRESS, 80)
        await backend.replace_route(tun.name, Route(IPv6Network("::/0"), 1029))
        tun.write(b"\x60" + bytes(39))
        interface = kernel.interface(tun.name)
        assert interface.mtu == 1472
        assert ADDRESS in interface.ipv6
        assert [(str(r.network), r.flags) for r in kernel.routes_of(tun.name)] == [("::/0", RTF_UP | RTF_STATIC)]
        assert interface.injected == [(AF_INET6, b"\x60" + bytes(39))]
        await backend.remove_route(tun.name, Route(IPv6Network("::/0"), 1029))
        await backend.remove_address(tun.name, ADDRESS, 80)
        tun.close()
        await backend.close()

    asyncio.run(main())
    assert kernel.routes == []
    assert not kernel.sockets
