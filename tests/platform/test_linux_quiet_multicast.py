"""Silencing MLD on a TUN is best effort: a read-only /proc/sys (a hardened service) must not stop the tunnel."""

from __future__ import annotations

import sys

import pytest

from m6t.platform.base import PlatformError

if sys.platform != "linux":
    pytest.skip("Linux backend tests", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

from m6t.platform.linux import tun  # noqa: E402


def test_read_only_proc_sys_is_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[str] = []

    def read_only(name: str, value: object) -> None:
        writes.append(name)
        raise PlatformError(f"cannot write /proc/sys/{name}: Read-only file system")

    monkeypatch.setattr(tun, "get_sysctl", lambda name: "1")
    monkeypatch.setattr(tun, "set_sysctl", read_only)
    monkeypatch.setattr(tun, "clear_link_flags", lambda name, flags: True)
    assert tun.quiet_multicast("m6tgw0") is True
    # It tried, gave up once, and did not try to "restore" a forwarding setting it never changed.
    assert writes == ["net/ipv6/conf/m6tgw0/force_mld_version"]


def test_forwarding_is_restored_after_silencing(monkeypatch: pytest.MonkeyPatch) -> None:
    sysctl = {"net/ipv6/conf/m6tgw0/forwarding": "1", "net/ipv6/conf/m6tgw0/force_mld_version": "0"}
    seen_while_clearing: list[str] = []

    def clear(name: str, flags: int) -> bool:
        seen_while_clearing.append(sysctl["net/ipv6/conf/m6tgw0/forwarding"])
        return True

    monkeypatch.setattr(tun, "get_sysctl", lambda name: sysctl[name])
    monkeypatch.setattr(tun, "set_sysctl", lambda name, value: sysctl.__setitem__(name, str(value)))
    monkeypatch.setattr(tun, "clear_link_flags", clear)
    assert tun.quiet_multicast("m6tgw0") is True
    assert seen_while_clearing == ["0"]
    assert sysctl == {"net/ipv6/conf/m6tgw0/forwarding": "1", "net/ipv6/conf/m6tgw0/force_mld_version": "1"}
