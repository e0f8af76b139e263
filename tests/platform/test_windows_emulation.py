"""The lab's emulated Windows behaves as documented where Windows surprises: Wintun's ring full, its EOF
reported before queued packets, IP Helper notifications on another thread, routes keyed without their
metric; and its effects land on the real Linux interface.  Root: a fresh namespace per test."""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import threading
import time
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest

if sys.platform != "linux":
    pytest.skip("the emulation runs in Linux namespaces", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

from m6t.lab.emulation.windows import EmulatedWindows  # noqa: E402
from m6t.platform.windows.iphlpapi import IpHelper  # noqa: E402
from m6t.platform.windows.system import (  # noqa: E402
    AF_INET,
    AF_INET6,
    DWORD,
    ERROR_BUFFER_OVERFLOW,
    ERROR_HANDLE_EOF,
    ERROR_NO_MORE_ITEMS,
    Kernel32,
)
from m6t.platform.windows.wintun import RING_CAPACITY, Wintun, adapter_guid, guid_struct  # noqa: E402
from tests.platform import inside, ip, ip_json, netns, run_forked  # noqa: E402

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and /dev/net/tun")
NAME = "m6t0"
SMALL_RING = 0x20000


def _session(host: EmulatedWindows, capacity: int) -> tuple[Wintun, int, int]:
    api = host.api()
    wintun = Wintun.load(api, Kernel32(api))
    adapter = int(wintun.create_adapter(NAME, "m6t", ctypes.byref(guid_struct(adapter_guid(NAME)))))
    assert adapter, wintun.last_error()
    session = int(wintun.start_session(adapter, capacity))
    assert session, wintun.last_error()
    return wintun, adapter, session


@root_only
def test_ring_full_answers_buffer_overflow_until_the_driver_takes_packets() -> None:
    def body() -> tuple[int, int, int, bool]:
        host = EmulatedWindows()
        wintun, adapter, session = _session(host, SMALL_RING)
        allocated = []
        while True:
            packet = wintun.allocate_send_packet(session, 1500)
            if not packet:
                break
            allocated.append(packet)
        error = wintun.last_error()
        for packet in allocated:
            wintun.send_packet(session, packet)
        again = bool(wintun.allocate_send_packet(session, 1500))
        wintun.end_session(session)
        wintun.close_adapter(adapter)
        host.close()
        return len(allocated), error, len(host.violations), again

    with netns() as (ns,), inside(ns):
        count, error, violations, again = run_forked(body)
    # TUN_ALIGN(4 + 1500) = 1504 bytes each, one alignment unit kept free: (0x20000 - 4) // 1504.
    assert (count, error, violations, again) == ((SMALL_RING - 4) // 1504, ERROR_BUFFER_OVERFLOW, 0, True)


@root_only
def test_packets_from_the_stack_signal_the_event_and_eof_comes_before_queued_packets() -> None:
    def body() -> tuple[int, bytes, int, int, int]:
        host = EmulatedWindows()
        wintun, adapter, session = _session(host, RING_CAPACITY)
        kernel32 = Kernel32(host.api())
        event = int(wintun.get_read_wait_event(session))
        size = DWORD(0)
        time.sleep(0.2)
        while packet := wintun.receive_packet(session, ctypes.byref(size)):  # the link's own MLD/RS noise
            wintun.release_receive_packet(session, packet)
        empty = wintun.last_error()
        ip("address", "add", "fd00:e::1/64", "dev", NAME, "nodad")
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            for _ in range(3):
                sock.sendto(b"m6t", ("fd00:e::2", 9))
        signalled = kernel32.wait_any([event], 2000)
        first = b""
        deadline = time.monotonic() + 3
        while not first.endswith(b"m6t") and time.monotonic() < deadline:
            packet = wintun.receive_packet(session, ctypes.byref(size))
            if not packet:
                kernel32.wait_any([event], 200)
                continue
            first = ctypes.string_at(packet, size.value)
            wintun.release_receive_packet(session, packet)
        deadline = time.monotonic() + 2
        while not host.wintun.sessions[session].to_app.queued and time.monotonic() < deadline:
            time.sleep(0.01)
        ip("link", "del", NAME)  # the adapter is removed under the application
        while not host.wintun.sessions[session].terminating and time.monotonic() < deadline + 2:
            time.sleep(0.01)
        assert not wintun.receive_packet(session, ctypes.byref(size))
        eof = wintun.last_error()
        queued = len(host.wintun.sessions[session].to_app.queued)
        wintun.end_session(session)
        wintun.close_adapter(adapter)
        host.close()
        return empty, first, signalled, eof, queued

    with netns() as (ns,), inside(ns):
        empty, first, signalled, eof, queued = run_forked(body)
    assert empty == ERROR_NO_MORE_ITEMS
    assert signalled == 0 and first[0] >> 4 == 6 and first.endswith(b"m6t")  # a bare IPv6 packet
    assert eof == ERROR_HANDLE_EOF and queued >= 1  # queued packets are not handed out once terminating


@root_only
def test_ip_helper_changes_land_on_linux_and_notifications_come_on_another_thread() -> None:
    def body() -> tuple[list[tuple[int | None, bool]], int, list[str], list[int], bool, int]:
        host = EmulatedWindows()
        wintun, adapter, session = _session(host, RING_CAPACITY)
        helper = IpHelper(host.api())
        luid = helper.alias_to_luid(NAME)
        assert luid is not None and helper.luid_to_alias(luid) == NAME
        seen: list[tuple[int | None, bool]] = []
        caller = threading.get_ident()
        subscription = helper.subscribe_addresses(
            AF_INET, lambda changed: seen.append((changed, threading.get_ident() != caller))
        )
        ip("address", "add", "192.0.2.77/24", "dev", NAME)
        deadline = time.monotonic() + 2
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        helper.cancel(subscription)

        helper.set_mtu(luid, AF_INET6, 1472)
        helper.configure_tunnel(luid)
        address = IPv6Address("fd6d:3674:a1b2:0:1:1:2:3")
        helper.replace_address(luid, address, 128)
        helper.replace_address(luid, address, 128)  # replace semantics: no error the second time
        network = IPv6Network("::/0")
        helper.replace_route(luid, network, 1029)
        helper.replace_route(luid, network, 1030)  # the metric is not part of a Windows route's key
        routes = ip_json("-6", "route", "show", "default", "dev", NAME)
        addresses = [a["local"] for link in ip_json("-6", "address", "show", "dev", NAME) for a in link["addr_info"]]
        removed = helper.remove_route(luid, network, 1030)
        absent = helper.remove_route(luid, network, 1030)
        best = helper.best_route(IPv4Address("192.0.2.9"))
        mtu = int(ip_json("link", "show", NAME)[0]["mtu"])
        wintun.end_session(session)
        wintun.close_adapter(adapter)
        host.close()
        assert best is not None and best.luid == luid and best.source == IPv4Address("192.0.2.77")
        assert removed and not absent
        return seen, mtu, addresses, [r["metric"] for r in routes], NAME in str(ip_json("link")), len(host.violations)

    with netns() as (ns,), inside(ns):
        seen, mtu, addresses, metrics, still_there, violations = run_forked(body)
    assert seen and all(other_thread for _, other_thread in seen)
    assert mtu == 1472
    assert "fd6d:3674:a1b2:0:1:1:2:3" in addresses
    assert metrics == [1030]
    assert not still_there  # WintunCloseAdapter removed the interface
    assert violations == 0
