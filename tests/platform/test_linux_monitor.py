"""LinuxConnectivityMonitor in a throwaway namespace, run with the client's tracker: snapshots, changes, loss,
debouncing, probe()."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from typing import Any

import pytest

from m6t.client.tracker import DEFAULT_QUIET
from m6t.protocol.values import Attachment
from tests.platform import ip, netns, run_in
from tests.platform.attachment_recorder import AttachmentRecorder
from tests.platform.tracked import Tracked

if sys.platform != "linux":
    pytest.skip("Linux backend tests", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

from m6t.platform.linux.backend import LinuxBackend  # noqa: E402
from m6t.platform.linux.monitor import LinuxConnectivityMonitor, event_interfaces  # noqa: E402

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and /dev/net/tun")

GATEWAY = IPv4Address("198.51.100.2")
FIRST = Attachment(IPv4Address("192.0.2.10"), "d0", IPv4Address("192.0.2.1"))
SECOND = Attachment(IPv4Address("203.0.113.10"), "d1", IPv4Address("203.0.113.1"))
TUN = "m6t0"


@contextmanager
def attached() -> Iterator[str]:
    """A namespace whose default route toward the gateway goes through d0 via 192.0.2.1."""
    with netns() as (ns,):
        ip("-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
        for ifname in ("d0", "d1"):
            ip("-n", ns, "link", "set", ifname, "up")
        ip("-n", ns, "addr", "add", "192.0.2.10/24", "dev", "d0")
        ip("-n", ns, "route", "add", "default", "via", "192.0.2.1", "dev", "d0")
        yield ns


async def aip(*args: str) -> None:
    process = await asyncio.create_subprocess_exec("ip", *args)
    assert await process.wait() == 0, args


async def aip_batch(*commands: str) -> None:
    """Several changes in one ``ip`` process: a burst far shorter than the quiet period, even under load."""
    process = await asyncio.create_subprocess_exec("ip", "-batch", "-", stdin=asyncio.subprocess.PIPE)
    await process.communicate("\n".join(commands).encode() + b"\n")
    assert process.returncode == 0, commands


@root_only
def test_initial_snapshot_then_changes_then_loss() -> None:
    async def main() -> dict[str, Any]:
        monitor = Tracked(LinuxBackend().connectivity_monitor(GATEWAY, TUN))
        recorder = AttachmentRecorder()
        seen: dict[str, Any] = {}
        await monitor.start(recorder)
        seen["initial"] = list(recorder.snapshots)  # reported before start() returned
        seen["probe_initial"] = monitor.probe()
        recorder.changed.clear()

        # A move to another network: two changes in a row, one report.
        await aip_batch(
            "addr add 203.0.113.10/24 dev d1",
            "route replace default via 203.0.113.1 dev d1",
        )
        changed_at = time.monotonic()
        seen["moved"] = await recorder.next()
        seen["latency"] = recorder.times[-1] - changed_at
        seen["probe_moved"] = monitor.probe()
        await asyncio.sleep(0.4)
        seen["reports_after_move"] = len(recorder.snapshots)

        # The route disappears: no IPv4 path to the gateway.
        await aip("route", "del", "default")
        seen["lost"] = await recorder.next()
        seen["probe_lost"] = monitor.probe()
        await monitor.stop()
        return seen

    with attached() as ns:
        seen = run_in(ns, main)
    assert seen["initial"] == [FIRST]
    assert seen["probe_initial"] == FIRST
    assert seen["moved"] == SECOND
    assert seen["latency"] < DEFAULT_QUIET + 0.5
    assert seen["probe_moved"] == SECOND
    assert seen["reports_after_move"] == 2  # initial + moved: the burst was coalesced
    assert seen["lost"] is None
    assert seen["probe_lost"] is None


@root_only
def test_own_tun_is_ignored_and_unchanged_snapshots_are_not_reported() -> None:
    async def main() -> tuple[int, int, int, int]:
        backend = LinuxBackend()
        monitor = Tracked(LinuxConnectivityMonitor(GATEWAY, TUN))
        recorder = AttachmentRecorder()
        await monitor.start(recorder)
        base = monitor.evaluations
        tun = backend.open_tun(TUN)
        await backend.set_mtu(TUN, 1472)
        await backend.set_link_up(TUN)
        await aip("addr", "add", "192.0.2.99/32", "dev", TUN)  # even IPv4 on it
        await aip("route", "add", "198.51.100.99/32", "dev", TUN)
        tun.close()  # RTM_DELLINK after the name is gone: recognized by its index
        await asyncio.sleep(DEFAULT_QUIET * 3)
        after_tun = monitor.evaluations - base
        # Something unrelated on another interface: evaluated, but the same snapshot is not reported.
        await aip("addr", "add", "192.0.2.11/24", "dev", "d0")
        await asyncio.sleep(DEFAULT_QUIET * 3)
        after_other = monitor.evaluations - base
        # A burst of changes is evaluated once.
        await aip_batch(*(f"addr add 203.0.113.{20 + i}/24 dev d1" for i in range(10)))
        await asyncio.sleep(DEFAULT_QUIET * 3)
        after_burst = monitor.evaluations - base
        await monitor.stop()
        await backend.close()
        return after_tun, after_other, after_burst, len(recorder.snapshots)

    with attached() as ns:
        after_tun, after_other, after_burst, reports = run_in(ns, main)
    assert after_tun == 0
    assert after_other == 1
    assert after_burst == 2
    assert reports == 1


@root_only
def test_on_link_gateway_and_probe_without_monitor() -> None:
    async def main() -> tuple[Attachment | None, Attachment | None]:
        monitor = LinuxConnectivityMonitor(GATEWAY, TUN)
        probed = monitor.probe()  # nothing looked up yet: the interface comes from the address list
        await aip("route", "add", "198.51.100.0/24", "dev", "d0")
        recorder = AttachmentRecorder()
        tracked = Tracked(monitor)
        await tracked.start(recorder)
        await tracked.stop()
        return probed, recorder.snapshots[0]

    with attached() as ns:
        probed, snapshot = run_in(ns, main)
    assert probed == Attachment(FIRST.local_ipv4, "d0", None)
    assert snapshot == Attachment(FIRST.local_ipv4, "d0", None)


@root_only
def test_unreachable_from_the_start() -> None:
    async def main() -> tuple[list[Attachment | None], Attachment | None]:
        monitor = Tracked(LinuxConnectivityMonitor(GATEWAY, TUN))
        recorder = AttachmentRecorder()
        await monitor.start(recorder)
        probed = monitor.probe()
        await monitor.stop()
        return recorder.snapshots, probed

    with netns() as (ns,):
        snapshots, probed = run_in(ns, main)
    assert snapshots == [None]  # the first snapshot is reported even when it is "nothing"
    assert probed is None


def test_event_parser_tolerates_garbage() -> None:
    assert event_interfaces(b"") == []
    assert event_interfaces(b"\x00" * 7) == []
    assert event_interfaces(b"\xff" * 64) == []
    header = (40).to_bytes(4, "little") + (20).to_bytes(2, "little") + bytes(10)
    ifaddrmsg = bytes([2, 24, 0, 0]) + (7).to_bytes(4, "little")
    assert event_interfaces(header + ifaddrmsg + bytes(16)) == [(7, None)]
