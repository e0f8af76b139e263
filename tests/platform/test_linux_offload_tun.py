"""The TUN's offloads against the real kernel, in a throwaway namespace: merged writes, super-packet reads,
checksums completed for the kernel, the fallbacks, and a multicast-free device (no MLD of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import struct
import sys
from collections.abc import Sequence
from ipaddress import IPv6Address

import pytest

from tests.platform import netns, run_in

if sys.platform != "linux":
    pytest.skip("Linux backend tests", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

from m6t.platform.linux import tun as tun_module  # noqa: E402
from m6t.platform.linux.backend import LinuxBackend  # noqa: E402
from m6t.platform.linux.netlink import set_sysctl  # noqa: E402
from m6t.platform.linux.offload import GsoPacket, split  # noqa: E402
from m6t.platform.linux.tun import IFF_MULTICAST, IFF_VNET_HDR, TX_QUEUE_LEN, LinuxTun  # noqa: E402
from tests.platform.test_linux_offload import l4_checksum_ok, merge, udp  # noqa: E402

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and /dev/net/tun")

TUN_ADDR = IPv6Address("fd00:5::1")
PEER_ADDR = IPv6Address("fd00:5::2")
# The hand-built packets of test_linux_offload are addressed between these two.
SRC = IPv6Address("fd6d:3674:a1b2:0:1:1234:5678:abcd")
DST = IPv6Address("fd00:0:0:ab::1")
UDP_SEGMENT = 103


TUNGETIFF = 0x800454D2
SIOCGIFFLAGS = 0x8913
SIOCGIFTXQLEN = 0x8942


def tun_flags(tun: LinuxTun) -> int:
    """The device's TUN flags (``TUNGETIFF``: /sys would show the test runner's namespace, not ours)."""
    return int(struct.unpack("16sH22x", fcntl.ioctl(tun.fd, TUNGETIFF, bytes(40)))[1])


def link_value(name: str, request: int, fmt: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request_bytes = struct.pack(fmt, name.encode(), 0)
        return int(struct.unpack(fmt, fcntl.ioctl(sock, request, request_bytes))[1])


async def _up(tun: LinuxTun, address: IPv6Address = TUN_ADDR) -> LinuxBackend:
    backend = LinuxBackend()
    await backend.set_link_up(tun.name)
    await backend.replace_address(tun.name, address, 64)
    return backend


async def _delivered(tun: LinuxTun, packet: GsoPacket, count: int) -> list[bytes]:
    """Write ``packet`` (UDP datagrams to DST port 5201) into ``tun`` and return what a socket there received:
    up to ``count`` datagrams, the write repeated until the first arrives (bounded)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.bind((str(DST), 5201))
        sock.settimeout(2)
        got: list[bytes] = []
        # Addresses may need a moment before the kernel accepts packets for them (addrconf).
        for _ in range(30):
            tun.write(packet)
            with contextlib.suppress(TimeoutError):
                while len(got) < count:
                    got.append(sock.recv(2000))
            if got:
                break
            await asyncio.sleep(0.1)
    return got


async def _collect(tun: LinuxTun, want: int, timeout: float) -> list[bytes]:
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    done = asyncio.Event()

    def on_packets(batch: Sequence[bytes]) -> None:
        got.extend(batch)
        if len(got) >= want:
            done.set()

    tun.start_reading(loop, on_packets)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await done.wait()
    tun.stop_reading()
    return got


@root_only
def test_default_device_has_the_header_no_multicast_and_a_longer_queue() -> None:
    async def main() -> tuple[bool, bool, bool, int, int, int]:
        tun = LinuxTun("m6toff0")
        try:
            flags = (
                tun_flags(tun),
                link_value(tun.name, SIOCGIFFLAGS, "16sH22x"),
                link_value(tun.name, SIOCGIFTXQLEN, "16si20x"),
            )
            return tun.vnet, tun.tso, tun.uso, *flags
        finally:
            tun.close()

    with netns() as (ns,):
        vnet, tso, uso, device_flags, flags, qlen = run_in(ns, main)
    assert vnet and device_flags & IFF_VNET_HDR
    assert not tso  # the default: the kernel segments (see offload.TSO_BY_DEFAULT)
    assert uso  # this kernel (>= 6.2) takes merged UDP writes
    assert not flags & IFF_MULTICAST
    assert qlen == TX_QUEUE_LEN


@root_only
def test_only_a_device_that_takes_merged_writes_hands_out_coalescers() -> None:
    async def main() -> tuple[bool, bool, bool, bool]:
        merging, plain = LinuxTun("m6toff6"), LinuxTun("m6toff7", vnet=False)
        coalescer = merging.coalescer()
        handed_out = coalescer is not None and coalescer.udp == merging.uso and coalescer in merging.coalescers
        plain_has_none = plain.coalescer() is None
        merging.close()
        plain.close()
        return handed_out, merging.uso, plain_has_none, merging.coalescer() is None

    with netns() as (ns,):
        handed_out, uso, plain_has_none, closed_has_none = run_in(ns, main)
    assert handed_out and uso  # this kernel (>= 6.2) takes merged UDP writes
    assert plain_has_none and closed_has_none


@root_only
def test_no_mld_reports_from_a_forwarding_gateway_tun() -> None:
    """The gateway's TUN (IPv6 on, forwarding) used to get the kernel's MLD reports at start-up."""

    async def main() -> list[bytes]:
        set_sysctl("net/ipv6/conf/all/forwarding", 1)
        tun = LinuxTun("m6toff1")
        backend = LinuxBackend()
        await backend.set_link_up(tun.name)
        try:
            return await _collect(tun, 1, 2.5)
        finally:
            tun.close()
            await backend.close()

    with netns() as (ns,):
        got = run_in(ns, main)
    assert got == [], [p.hex() for p in got]


@pytest.mark.parametrize("vnet", [True, False])
@root_only
def test_merged_udp_write_reaches_a_socket_as_the_original_datagrams(vnet: bool) -> None:
    """One write with GSO_UDP_L4 (or, on a plain device, the split fallback) delivers every datagram."""
    datagrams = [udp(bytes([i]) * 1200) for i in range(6)] + [udp(b"last")]
    [merged] = merge((b"".join(datagrams[:-1]), len(datagrams[0])), (datagrams[-1], len(datagrams[-1])))
    assert isinstance(merged, GsoPacket) and merged.segments == 7

    async def main() -> tuple[list[bytes], int, bool]:
        tun = LinuxTun("m6toff2", vnet=vnet)
        backend = await _up(tun, DST)
        got = await _delivered(tun, merged, 7)
        tun.close()
        await backend.close()
        return got, tun.merged_writes, tun.vnet

    with netns() as (ns,):
        got, merged_writes, is_vnet = run_in(ns, main)
    assert is_vnet == vnet
    assert got == [d[48:] for d in datagrams]
    assert (merged_writes > 0) == vnet


@root_only
def test_refused_offloads_fall_back_to_the_plain_device(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fd: int, *, tso: bool) -> tuple[bool, bool]:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(tun_module, "set_offload", refuse)

    async def main() -> tuple[bool, int, bool]:
        tun = LinuxTun("m6toff3")
        backend = await _up(tun)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"plain", (str(PEER_ADDR), 5000))
        got = await _collect(tun, 1, 3)
        flags = tun_flags(tun)
        tun.close()
        await backend.close()
        return tun.vnet, flags, any(p[6] == 17 and p.endswith(b"plain") for p in got)

    with netns() as (ns,):
        vnet, flags, seen = run_in(ns, main)
    assert not vnet and not flags & IFF_VNET_HDR
    assert seen


@root_only
def test_tso_reads_super_packets_and_completes_checksums() -> None:
    """With TSO/USO the kernel hands over one 64 KB UDP GSO send as one packet, and leaves checksums to us."""

    async def main() -> tuple[bool, list[bytes], int, int]:
        tun = LinuxTun("m6toff4", tso=True)
        backend = await _up(tun)
        payload = b"".join(bytes([i]) * 1000 for i in range(20))
        loop = asyncio.get_running_loop()
        got: list[bytes] = []

        def on_packets(batch: Sequence[bytes]) -> None:
            got.extend(p for p in batch if p[6] == 17)

        tun.start_reading(loop, on_packets)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.connect((str(PEER_ADDR), 5000))
            sock.send(b"alone")
            sock.sendmsg([payload], [(socket.SOL_UDP, UDP_SEGMENT, (1000).to_bytes(2, sys.byteorder))])
            for _ in range(50):
                if len(got) >= 2:
                    break
                await asyncio.sleep(0.05)
        tun.close()
        await backend.close()
        return tun.tso, got, tun.super_packets, tun.checksums

    with netns() as (ns,):
        tso, got, super_packets, checksums = run_in(ns, main)
    assert tso
    alone, big = got[:2]
    assert alone.endswith(b"alone") and l4_checksum_ok(alone)
    assert checksums >= 1
    assert isinstance(big, GsoPacket) and big.segments == 20 and super_packets == 1
    parts = split(big)
    assert [p[48:] for p in parts] == [bytes([i]) * 1000 for i in range(20)]
    assert all(l4_checksum_ok(p) for p in parts)


@root_only
def test_a_refused_merged_udp_write_is_split_and_not_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a kernel without TUN USO: the merged write fails with EINVAL; the datagrams still arrive."""
    datagrams = [udp(bytes([i]) * 1200) for i in range(4)]
    [merged] = merge((b"".join(datagrams), len(datagrams[0])))
    assert isinstance(merged, GsoPacket)
    real_writev = os.writev

    def refusing_writev(fd: int, buffers: Sequence[bytes]) -> int:
        if bytes(buffers[0][1:2]) != b"\0":
            raise OSError(22, "Invalid argument")
        return real_writev(fd, buffers)

    async def main() -> tuple[list[bytes], bool, bool, int]:
        monkeypatch.setattr(os, "writev", refusing_writev)
        tun = LinuxTun("m6toff5")
        coalescer = tun.coalescer()
        assert coalescer is not None
        backend = await _up(tun, DST)
        got = await _delivered(tun, merged, 4)
        tun.close()
        await backend.close()
        return got, tun.uso, coalescer.udp, tun.merged_refused

    with netns() as (ns,):
        got, uso, merging, refused = run_in(ns, main)
    assert got == [d[48:] for d in datagrams]
    assert not uso and not merging
    assert refused >= 1
