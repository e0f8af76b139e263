"""UDP channel and gateway socket API across a veth pair between two throwaway namespaces.

Namespace A (the mobile node, 198.51.100.1) and B (the gateway, 198.51.100.2).  A single forked child
opens B's sockets inside B, then runs the code under test inside A: sockets keep their namespace.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from ipaddress import IPv4Address
from typing import Any

import pytest

from m6t.protocol.values import PmtuEvidence
from tests.platform import checksum, inside, ip, netns, run_forked

if sys.platform != "linux":
    pytest.skip("Linux backend tests", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

from m6t.platform.linux import udp  # noqa: E402
from m6t.platform.linux.udp import LinuxUdpChannel  # noqa: E402

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and veth")

MN = "198.51.100.1"
GW = "198.51.100.2"
PORT = 4500
ETH_P_IP = 0x0800


@contextmanager
def mn_and_gateway(mtu: int = 1500) -> Iterator[tuple[str, str]]:
    with netns(2) as (mn, gw):
        ip("-n", mn, "link", "add", "va", "mtu", str(mtu), "type", "veth", "peer", "name", "vb", "netns", gw)
        ip("-n", gw, "link", "set", "vb", "mtu", str(mtu))
        ip("-n", mn, "addr", "add", f"{MN}/24", "dev", "va")
        ip("-n", gw, "addr", "add", f"{GW}/24", "dev", "vb")
        ip("-n", mn, "link", "set", "va", "up")
        ip("-n", gw, "link", "set", "vb", "up")
        yield mn, gw


def plain_socket(port: int = PORT) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((GW, port))
    sock.settimeout(3)
    return sock


def capture_socket(ifname: str) -> socket.socket:
    """IPv4 packets seen on ``ifname``, as the wire carries them (before any local segmentation)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sock.bind((ifname, ETH_P_IP))
    sock.setblocking(False)
    return sock


def captured_udp(sock: socket.socket) -> list[bytes]:
    packets: list[bytes] = []
    while True:
        try:
            packet = sock.recv(70000)
        except BlockingIOError:
            return packets
        if packet[9] == 17:
            packets.append(packet)


def udp_port(packet: bytes) -> int:
    port: int = struct.unpack_from("!H", packet, (packet[0] & 0xF) * 4 + 2)[0]
    return port


def df_set(packet: bytes) -> bool:
    return bool(packet[6] & 0x40)


def receive(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(70000) for _ in range(count)]


def payloads(count: int, size: int, last: int | None = None) -> list[bytes]:
    out = [bytes([i]) * size for i in range(count)]
    if last is not None:
        out.append(b"\xee" * last)
    return out


def run_mn(mn: str, main: Callable[[], Any]) -> Any:
    """Run ``main`` (a coroutine function) inside the MN namespace of the current child."""
    with inside(mn):
        return asyncio.run(main())


async def settle() -> None:
    await asyncio.sleep(0.05)


@root_only
def test_outer_df_bit_is_never_set() -> None:
    def body() -> tuple[list[bool], list[bool]]:
        with inside(gw):
            receiver = plain_socket()
            control_receiver = plain_socket(PORT + 1)
            capture = capture_socket("vb")

        async def main() -> None:
            channel = LinuxUdpChannel((IPv4Address(GW), PORT))
            channel.send([b"single"])
            channel.send(payloads(8, 1000, last=10))  # one GSO send
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:  # kernel default: DF set
                control.sendto(b"control", (GW, PORT + 1))
            channel.close()

        run_mn(mn, main)
        receive(receiver, 10)
        receive(control_receiver, 1)
        packets = captured_udp(capture)
        ours = [df_set(p) for p in packets if udp_port(p) == PORT]
        control = [df_set(p) for p in packets if udp_port(p) == PORT + 1]
        return ours, control

    with mn_and_gateway() as (mn, gw):
        ours, control = run_forked(body)
    assert ours and not any(ours)
    assert control == [True]  # the capture does see DF when it is there


@root_only
def test_gso_send_reaches_a_plain_receiver_as_separate_datagrams() -> None:
    sent = payloads(10, 1200, last=300) + payloads(3, 500) + [b"lonely"]

    def body() -> tuple[list[bytes], int, int, int]:
        with inside(gw):
            receiver = plain_socket()

        async def main() -> tuple[int, int]:
            channel = LinuxUdpChannel((IPv4Address(GW), PORT))
            assert channel.stats.gso
            channel.send(sent)
            channel.close()
            return channel.stats.gso_sends, channel.stats.sent

        gso_sends, count = run_mn(mn, main)
        return receive(receiver, len(sent)), gso_sends, count, 0

    with mn_and_gateway() as (mn, gw):
        received, gso_sends, count, _ = run_forked(body)
    assert received == sent
    assert gso_sends == 2  # 10x1200 + 300, then 3x500 + "lonely"
    assert count == len(sent)


@root_only
def test_gro_listener_splits_coalesced_buffers() -> None:
    sent = payloads(20, 1000, last=123) + payloads(5, 1400)

    def body() -> tuple[list[tuple[bytes, tuple[str, int]]], int, tuple[str, int]]:
        with inside(gw):
            listener = udp.open_udp_listener(GW, PORT)

        async def main() -> tuple[str, int]:
            channel = LinuxUdpChannel((IPv4Address(GW), PORT))
            channel.send(sent)
            channel.close()
            return channel.local_address

        local = run_mn(mn, main)
        got: list[tuple[bytes, tuple[str, int]]] = []
        deadline = time.monotonic() + 3
        while len(got) < len(sent) and time.monotonic() < deadline:
            got += udp.recv_batch(listener)
            time.sleep(0.01)
        return got, udp.udp_stats(listener).gro_buffers, local

    with mn_and_gateway() as (mn, gw):
        got, gro_buffers, local = run_forked(body)
    assert [payload for payload, _ in got] == sent
    assert {source for _, source in got} == {local}
    assert gro_buffers >= 1  # GSO over veth arrives coalesced when the socket has UDP_GRO


@root_only
def test_gateway_api_round_trip_and_channel_reading() -> None:
    def body() -> tuple[list[bytes], list[bytes], int]:
        with inside(gw):
            listener = udp.open_udp_listener(GW, PORT)

        async def main() -> tuple[list[bytes], list[bytes], int]:
            loop = asyncio.get_running_loop()
            channel = LinuxUdpChannel((IPv4Address(GW), PORT))
            received: list[bytes] = []
            batches = 0

            def on_datagrams(batch: Sequence[tuple[bytes, tuple[str, int]]]) -> None:
                nonlocal batches
                batches += 1
                for payload, source in batch:
                    assert source == (GW, PORT)
                    received.append(payload)

            channel.start_reading(loop, on_datagrams, lambda evidence: None)
            channel.send([b"hello"])
            at_gateway: list[tuple[bytes, tuple[str, int]]] = []
            async with asyncio.timeout(3):
                while not at_gateway:
                    await settle()
                    at_gateway = udp.recv_batch(listener)
            ((payload, mn_address),) = at_gateway
            reply = [payload + bytes([i]) * 900 for i in range(30)]
            assert udp.send_batch(listener, mn_address, reply) == 0
            async with asyncio.timeout(3):
                while len(received) < len(reply):
                    await settle()
            channel.close()
            return received, reply, batches

        return run_mn(mn, main)  # type: ignore[no-any-return]

    with mn_and_gateway() as (mn, gw):
        received, reply, batches = run_forked(body)
    assert received == reply
    assert batches <= 3


@root_only
def test_oversize_datagram_is_pmtu_evidence_not_an_exception() -> None:
    def body() -> tuple[list[PmtuEvidence], list[bytes], int]:
        with inside(gw):
            receiver = plain_socket()

        async def main() -> tuple[list[PmtuEvidence], int]:
            loop = asyncio.get_running_loop()
            channel = LinuxUdpChannel((IPv4Address(GW), PORT))
            evidence: list[PmtuEvidence] = []
            channel.start_reading(loop, lambda batch: None, evidence.append)
            channel.send([b"before", b"x" * 65508, b"after"])  # 65508 > 65535 - 20 - 8
            await settle()  # let the reader drain the local error the kernel also queued
            channel.close()
            return evidence, channel.stats.oversize

        evidence, oversize = run_mn(mn, main)
        return evidence, receive(receiver, 2), oversize

    with mn_and_gateway() as (mn, gw):
        evidence, received, oversize = run_forked(body)
    assert evidence == [PmtuEvidence(mtu=0, source="emsgsize")]
    assert received == [b"before", b"after"]
    assert oversize == 1


@root_only
def test_port_unreachable_is_counted_and_reading_goes_on() -> None:
    def body() -> tuple[int, list[bytes], int]:
        async def main() -> tuple[int, list[bytes], int]:
            loop = asyncio.get_running_loop()
            channel = LinuxUdpChannel((IPv4Address(GW), PORT))
            received: list[bytes] = []
            wakeups = 0

            def on_datagrams(batch: Sequence[tuple[bytes, tuple[str, int]]]) -> None:
                received.extend(payload for payload, _ in batch)

            original = channel._on_readable

            def counting() -> None:
                nonlocal wakeups
                wakeups += 1
                original()

            channel._on_readable = counting  # type: ignore[method-assign]
            channel.start_reading(loop, on_datagrams, lambda evidence: None)
            channel.send([b"nobody-listens"])  # ICMP port unreachable comes back
            async with asyncio.timeout(3):
                while channel.stats.icmp_errors == 0:
                    await settle()
            await settle()
            with inside(gw):
                peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                peer.bind((GW, PORT))
            channel.send([b"now-someone-does"])
            got, mn_address = await loop.sock_recvfrom(peer, 100)
            peer.sendto(b"reply:" + got, mn_address)
            async with asyncio.timeout(3):
                while not received:
                    await settle()
            channel.close()
            peer.close()
            return channel.stats.icmp_errors, received, wakeups

        return run_mn(mn, main)  # type: ignore[no-any-return]

    with mn_and_gateway() as (mn, gw):
        icmp_errors, received, wakeups = run_forked(body)
    assert icmp_errors >= 1
    assert received == [b"reply:now-someone-does"]
    assert wakeups < 20  # the error queue was drained: no EPOLLERR busy loop


@root_only
def test_gso_segment_larger_than_the_link_falls_back_and_remembers() -> None:
    big = payloads(4, 1400)  # 1400 + 28 > 1280: the kernel refuses GSO, fragments single datagrams
    small = payloads(4, 1000)

    def body() -> tuple[list[bytes], int, int, int]:
        with inside(gw):
            receiver = plain_socket()

        async def main() -> tuple[int, int, int]:
            channel = LinuxUdpChannel((IPv4Address(GW), PORT))
            channel.send(big)
            after_big = channel.stats.gso_sends
            channel.send(small)
            result = after_big, channel.stats.gso_sends, channel.stats.gso_max_segment
            channel.close()
            return result

        after_big, after_small, ceiling = run_mn(mn, main)
        return receive(receiver, 8), after_big, after_small, ceiling

    with mn_and_gateway(mtu=1280) as (mn, gw):
        received, after_big, after_small, ceiling = run_forked(body)
    assert received == big + small
    assert (after_big, after_small) == (0, 1)
    assert ceiling == 1399


@root_only
def test_without_gso_everything_goes_one_by_one() -> None:
    sent = payloads(6, 700)

    def body() -> tuple[list[bytes], int, int]:
        with inside(gw):
            receiver = plain_socket()

        async def main() -> tuple[int, int]:
            channel = LinuxUdpChannel((IPv4Address(GW), PORT))
            channel.stats.gso = False  # what an old kernel's ENOPROTOOPT leads to
            channel.send(sent)
            channel.close()
            return channel.stats.gso_sends, channel.stats.sent

        gso_sends, count = run_mn(mn, main)
        return receive(receiver, len(sent)), gso_sends, count

    with mn_and_gateway() as (mn, gw):
        assert run_forked(body) == (sent, 0, len(sent))


@root_only
def test_icmp_frag_needed_lowers_the_kernel_path_mtu() -> None:
    """With DF clear the kernel keeps frag-needed to itself (no error queue entry) but learns the MTU."""

    def body() -> tuple[int | None, int | None, list[PmtuEvidence]]:
        with inside(gw):
            receiver = plain_socket()
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)

        async def main() -> tuple[int | None, int | None, list[PmtuEvidence]]:
            loop = asyncio.get_running_loop()
            channel = LinuxUdpChannel((IPv4Address(GW), PORT))
            evidence: list[PmtuEvidence] = []
            channel.start_reading(loop, lambda batch: None, evidence.append)
            before = channel.path_mtu()
            channel.send([b"q" * 1000])
            quoted, _ = await loop.sock_recvfrom(receiver, 2000)
            del quoted
            local_ip, local_port = channel.local_address
            ip_header = struct.pack(
                "!BBHHHBBH4s4s",
                0x45,
                0,
                1028,
                1,
                0,
                64,
                17,
                0,
                socket.inet_aton(local_ip),
                socket.inet_aton(GW),
            )
            udp_header = struct.pack("!HHHH", local_port, PORT, 1008, 0)
            icmp = bytearray(struct.pack("!BBHHH", 3, 4, 0, 0, 1200) + ip_header + udp_header)
            icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
            raw.sendto(bytes(icmp), (local_ip, 0))
            await asyncio.sleep(0.2)
            after = channel.path_mtu()
            channel.close()
            return before, after, evidence

        return run_mn(mn, main)  # type: ignore[no-any-return]

    with mn_and_gateway() as (mn, gw):
        before, after, evidence = run_forked(body)
    assert before == 1500
    assert after == 1200
    assert evidence == []


def test_parse_extended_error() -> None:
    def ee(origin: int, kind: int, code: int, info: int) -> bytes:
        return struct.pack("=IBBBBII", 90, origin, kind, code, 0, info, 0) + bytes(16)

    frag_needed = ee(udp.SO_EE_ORIGIN_ICMP, 3, 4, 1400)
    assert udp.parse_extended_error(udp.SOL_IP, udp.IP_RECVERR, frag_needed) == PmtuEvidence(1400, "icmp")
    assert udp.parse_extended_error(udp.SOL_IP, udp.IP_RECVERR, ee(udp.SO_EE_ORIGIN_ICMP, 3, 3, 0)) is None
    assert udp.parse_extended_error(udp.SOL_IP, udp.IP_RECVERR, ee(udp.SO_EE_ORIGIN_LOCAL, 0, 0, 1500)) is None
    assert udp.parse_extended_error(udp.SOL_IP, udp.IP_RECVERR, frag_needed[:10]) is None
    assert udp.parse_extended_error(udp.SOL_UDP, udp.IP_RECVERR, frag_needed) is None


# ------------------------------------------------------------------------------------ path MTU probes


@root_only
def test_a_probe_carries_df_and_the_data_after_it_does_not() -> None:
    def body() -> list[tuple[bytes, bool]]:
        with inside(gw):
            receiver = plain_socket()
            capture = capture_socket("vb")

        async def main() -> None:
            channel = LinuxUdpChannel((IPv4Address(GW), PORT))
            channel.start_reading(asyncio.get_running_loop(), lambda batch: None, lambda evidence: None)
            channel.send([b"data-1"])
            channel.send_probe(b"probe-1")
            channel.send_probe(b"probe-2")
            channel.send([b"data-2"])
            channel.send(payloads(4, 600))  # a GSO run after a probe: DF clear too
            channel.close()

        run_mn(mn, main)
        receive(receiver, 8)
        packets = captured_udp(capture)
        return [(p[(p[0] & 0xF) * 4 + 8 :], df_set(p)) for p in packets if udp_port(p) == PORT]

    with mn_and_gateway() as (mn, gw):
        seen = run_forked(body)
    # The capture sees the GSO run as the one buffer it was handed (segmented further down): DF clear.
    assert [df for _, df in seen] == [False, True, True, False, False], seen
    assert [payload for payload, _ in seen][:4] == [b"data-1", b"probe-1", b"probe-2", b"data-2"]


@root_only
def test_a_probe_too_large_for_the_link_reports_the_link_mtu_and_data_still_fragments() -> None:
    def body() -> tuple[list[PmtuEvidence], list[int]]:
        with inside(gw):
            receiver = plain_socket()

        async def main() -> list[PmtuEvidence]:
            channel = LinuxUdpChannel((IPv4Address(GW), PORT))
            evidence: list[PmtuEvidence] = []
            channel.start_reading(asyncio.get_running_loop(), lambda batch: None, evidence.append)
            channel.send_probe(b"p" * 1450)  # 1478 bytes of IPv4 on a 1400-byte link
            channel.send_probe(b"q" * 1372)  # exactly 1400: leaves
            channel.send([b"d" * 1450])  # DF clear: fragmented, reassembled at the far end
            await settle()
            channel.close()
            return evidence

        evidence = run_mn(mn, main)
        return evidence, [len(d) for d in receive(receiver, 2)]

    with mn_and_gateway(mtu=1400) as (mn, gw):
        evidence, received = run_forked(body)
    assert evidence == [PmtuEvidence(mtu=1400, source="emsgsize")]
    assert received == [1372, 1450]


@contextmanager
def mn_router_gateway(path_mtu: int) -> Iterator[tuple[str, str, str]]:
    """mn (198.51.100.1) ── r ── gw (203.0.113.2): the r-gw link carries ``path_mtu`` bytes."""
    with netns(3) as (mn, router, gw):
        ip("-n", mn, "link", "add", "va", "type", "veth", "peer", "name", "ra", "netns", router)
        ip("-n", router, "link", "add", "rb", "mtu", str(path_mtu), "type", "veth", "peer", "name", "vb", "netns", gw)
        ip("-n", gw, "link", "set", "vb", "mtu", str(path_mtu))
        ip("-n", mn, "addr", "add", f"{MN}/24", "dev", "va")
        ip("-n", router, "addr", "add", "198.51.100.254/24", "dev", "ra")
        ip("-n", router, "addr", "add", "203.0.113.254/24", "dev", "rb")
        ip("-n", gw, "addr", "add", f"{FAR_GW}/24", "dev", "vb")
        for ns, dev in ((mn, "va"), (router, "ra"), (router, "rb"), (gw, "vb")):
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", mn, "route", "add", "default", "via", "198.51.100.254")
        ip("-n", gw, "route", "add", "default", "via", "203.0.113.254")
        subprocess.run(
            ["ip", "netns", "exec", router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], check=True, timeout=10
        )
        yield mn, router, gw


FAR_GW = "203.0.113.2"


@root_only
def test_a_frag_needed_answering_a_probe_is_evidence_with_its_quote() -> None:
    probe = b"\x60" + bytes(47) + b"z" * 1402  # 1450 bytes: an IPv6-looking tunnel packet, 1478 on the wire

    def body() -> tuple[list[PmtuEvidence], int, int]:
        with inside(gw):
            receiver = plain_socket_at(FAR_GW)

        async def main() -> tuple[list[PmtuEvidence], int]:
            channel = LinuxUdpChannel((IPv4Address(FAR_GW), PORT))
            evidence: list[PmtuEvidence] = []
            channel.start_reading(asyncio.get_running_loop(), lambda batch: None, evidence.append)
            channel.send_probe(probe)
            async with asyncio.timeout(3):
                while not evidence:
                    await settle()
            channel.send([b"d" * 1450])  # DF clear again: the router fragments it, the receiver reassembles
            await settle()
            channel.close()
            return evidence, channel.stats.oversize

        evidence, oversize = run_mn(mn, main)
        return evidence, len(receive(receiver, 1)[0]), oversize

    with mn_router_gateway(1400) as (mn, _router, gw):
        evidence, received, oversize = run_forked(body)
    assert [(e.mtu, e.source) for e in evidence] == [(1400, "icmp")]
    assert evidence[0].quoted == probe[: len(evidence[0].quoted)] and len(evidence[0].quoted) >= 48
    assert received == 1450
    assert oversize == 0, "the one-shot EMSGSIZE report of the ICMP was not taken for an oversize datagram"


def plain_socket_at(address: str, port: int = PORT) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    sock.settimeout(3)
    return sock
