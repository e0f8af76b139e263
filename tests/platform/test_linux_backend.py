"""LinuxBackend as a whole: selection, start-up checks with their hints."""

from __future__ import annotations

import os
import sys

import pytest

from m6t.platform import default_backend
from m6t.platform.base import Backend, PlatformErrorCode
from tests.platform import inside, netns, run_forked

if sys.platform != "linux":
    pytest.skip("Linux backend tests", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

from m6t.platform.linux import backend as backend_module  # noqa: E402
from m6t.platform.linux import netlink  # noqa: E402
from m6t.platform.linux.backend import LinuxBackend, has_net_admin  # noqa: E402

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces")


def test_default_backend_is_linux() -> None:
    backend = default_backend()
    assert isinstance(backend, LinuxBackend)
    assert isinstance(backend, Backend)
    assert backend.name == "linux"
    assert backend.interface_exists("lo")
    assert not backend.interface_exists("nosuch0")


@root_only
def test_check_passes_as_root() -> None:
    assert LinuxBackend().check() == []


def test_check_reports_a_missing_tun_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_module, "TUN_PATH", "/nonexistent/tun")
    hints = [problem.hint or "" for problem in LinuxBackend().check()]
    assert any("modprobe tun" in hint for hint in hints)


def test_check_findings_carry_their_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_module, "TUN_PATH", "/nonexistent/tun")
    monkeypatch.setattr(backend_module, "ipv6_disabled", lambda: True)
    monkeypatch.setattr(backend_module, "has_net_admin", lambda: False)
    assert [problem.code for problem in LinuxBackend().check()] == [
        PlatformErrorCode.TUN_MISSING,
        PlatformErrorCode.IPV6_DISABLED,
        PlatformErrorCode.PERMISSION_DENIED,
    ]


@root_only
def test_check_reports_disabled_ipv6() -> None:
    def body() -> list[str]:
        with inside(ns):
            netlink.set_sysctl("net.ipv6.conf.all.disable_ipv6", 1)
            return [problem.hint or "" for problem in LinuxBackend().check()]

    with netns() as (ns,):
        hints = run_forked(body)
    assert hints == [
        "sysctl -w net.ipv6.conf.all.disable_ipv6=0 (and remove ipv6.disable=1 from the kernel command line if present)"
    ]


@root_only
def test_check_reports_missing_privileges() -> None:
    def body() -> tuple[bool, list[str]]:
        os.setgid(65534)
        os.setuid(65534)  # drops every capability
        return has_net_admin(), [problem.hint or "" for problem in LinuxBackend().check()]

    privileged, hints = run_forked(body)
    assert not privileged
    assert any("root" in hint for hint in hints)
