"""LinuxTun in a throwaway namespace: create, read, write, batch, non-persistence, name errors."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
import sys
from collections.abc import Sequence
from ipaddress import IPv6Address

import pytest

from m6t.platform.base import PlatformError, PlatformErrorCode
from tests.platform import checksum, ip, netns, run_in

if sys.platform != "linux":
    pytest.skip("Linux backend tests", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

from m6t.platform.linux import tun as tun_module  # noqa: E402
from m6t.platform.linux.backend import LinuxBackend  # noqa: E402
from m6t.platform.linux.tun import MAX_BATCH, LinuxTun, open_tun, validate_ifname  # noqa: E402

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and /dev/net/tun")

TUN_ADDR = IPv6Address("fd00:5::1")
PEER_ADDR = IPv6Address("fd00:5::2")


def icmpv6_echo(src: IPv6Address, dst: IPv6Address, ident: int, seq: int, payload: bytes) -> bytes:
    body = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + payload
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(body), 58)
    body = body[:2] + struct.pack("!H", checksum(pseudo + body)) + body[4:]
    header = struct.pack("!IHBB", 6 << 28, len(body), 58, 64) + src.packed + dst.packed
    return header + body


def is_echo_reply(packet: bytes, ident: int, seq: int) -> bool:
    return (
        len(packet) >= 48
        and packet[0] >> 4 == 6
        and packet[6] == 58
        and packet[40] == 129
        and struct.unpack_from("!HH", packet, 44) == (ident, seq)
    )


async def _configured_tun(name: str) -> tuple[LinuxBackend, LinuxTun]:
    backend = LinuxBackend()
    tun = backend.open_tun(name)
    await backend.set_link_up(tun.name)
    await backend.replace_address(tun.name, TUN_ADDR, 64)
    return backend, tun


def test_validate_ifname() -> None:
    assert validate_ifname("m6t0") == b"m6t0"
    assert validate_ifname("a" * 15) == b"a" * 15
    for bad in ("", "a" * 16, "a/b", "a b", "a:1", ".", ".."):
        with pytest.raises(PlatformError) as info:
            validate_ifname(bad)
        assert info.value.hint


def test_a_missing_tun_driver_is_coded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tun_module, "TUN_PATH", "/nonexistent/tun")
    with pytest.raises(PlatformError) as info:
        open_tun("m6ttest9")
    assert info.value.code is PlatformErrorCode.TUN_MISSING


@pytest.mark.parametrize(
    ("number", "says"),
    [(errno.EACCES, "chmod 0666 /dev/net/tun"), (errno.EPERM, "DeviceAllow=")],
)
def test_a_device_refused_says_why_not_to_run_as_root(monkeypatch: pytest.MonkeyPatch, number: int, says: str) -> None:
    # Without udev the device is 0600: a process holding CAP_NET_ADMIN still gets EACCES, and being told to
    # get CAP_NET_ADMIN sends its administrator the wrong way.
    def refuse(path: str, flags: int) -> int:
        raise PermissionError(number, os.strerror(number), path)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(PlatformError) as info:
        open_tun("m6ttest9")
    assert info.value.code is PlatformErrorCode.PERMISSION_DENIED
    assert info.value.hint is not None and says in info.value.hint
    assert "CAP_NET_ADMIN" not in info.value.hint and "root" not in info.value.hint


@pytest.mark.parametrize(
    ("number", "name", "code"),
    [
        (errno.EBUSY, "m6ttest9", PlatformErrorCode.INTERFACE_BUSY),
        (errno.EPERM, "m6ttest9", PlatformErrorCode.PERMISSION_DENIED),
        (errno.EINVAL, "lo", PlatformErrorCode.INTERFACE_BUSY),  # the name is taken by something not a TUN
        (errno.EINVAL, "m6tnothere9", PlatformErrorCode.OTHER),
    ],
)
def test_tunsetiff_failures_are_coded(number: int, name: str, code: PlatformErrorCode) -> None:
    assert tun_module._tunsetiff_error(name, OSError(number, os.strerror(number))).code is code


@root_only
def test_echo_through_tun_and_kernel_to_tun() -> None:
    async def main() -> tuple[bool, int]:
        backend, tun = await _configured_tun("m6ttest0")
        loop = asyncio.get_running_loop()
        packets: asyncio.Queue[bytes] = asyncio.Queue()

        def on_packets(batch: Sequence[bytes]) -> None:
            for packet in batch:
                packets.put_nowait(packet)

        tun.start_reading(loop, on_packets)
        # The kernel answers an echo request injected into the TUN, and routes the reply back into it.
        # It accepts packets for the address only once its addrconf work has run (asynchronously, even
        # with NODAD): early requests may go unanswered, hence one request per 100 ms.
        found = False
        for seq in range(50):
            tun.write(icmpv6_echo(PEER_ADDR, TUN_ADDR, 0x6D36, seq, b"m6t-echo"))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    while not found:
                        packet = await packets.get()
                        found = any(is_echo_reply(packet, 0x6D36, s) for s in range(seq + 1))
            if found:
                break
        # A local UDP datagram routed into the TUN comes out of it as a bare IPv6 packet.
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"to-the-tun", (str(PEER_ADDR), 5000))
        async with asyncio.timeout(5):
            while True:
                packet = await packets.get()
                if packet[6] == 17 and packet.endswith(b"to-the-tun"):
                    assert packet[24:40] == PEER_ADDR.packed
                    break
        tun.close()
        await backend.close()
        return found, tun.dropped

    with netns() as (ns,):
        found, dropped = run_in(ns, main)
    assert found
    assert dropped == 0


@root_only
def test_reads_in_bounded_batches_until_eagain() -> None:
    async def main() -> list[tuple[int, int]]:
        backend, tun = await _configured_tun("m6ttest0")
        count = MAX_BATCH + 44
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            for i in range(count):
                sock.sendto(i.to_bytes(4, "big"), (str(PEER_ADDR), 5000))
        loop = asyncio.get_running_loop()
        batches: list[tuple[int, int]] = []  # (packets, of which our UDP datagrams)
        done = asyncio.Event()

        def on_packets(batch: Sequence[bytes]) -> None:
            batches.append((len(batch), sum(1 for p in batch if p[6] == 17)))
            if sum(udp for _, udp in batches) >= count:
                done.set()

        tun.start_reading(loop, on_packets)
        async with asyncio.timeout(5):
            await done.wait()
        tun.close()
        await backend.close()
        return batches

    with netns() as (ns,):
        batches = run_in(ns, main)
    assert sum(udp for _, udp in batches) == MAX_BATCH + 44
    # The first wakeup stopped at a full batch; the rest (and any stray MLD packet) came on the next ones.
    assert batches[0][0] == MAX_BATCH
    assert all(size <= MAX_BATCH for size, _ in batches)
    assert 2 <= len(batches) <= 3


@root_only
def test_close_removes_the_interface() -> None:
    async def main() -> tuple[bool, bool]:
        backend = LinuxBackend()
        tun = backend.open_tun("m6ttest1")
        existed = backend.interface_exists("m6ttest1")
        tun.close()
        tun.close()  # idempotent
        return existed, backend.interface_exists("m6ttest1")

    with netns() as (ns,):
        assert run_in(ns, main) == (True, False)


@root_only
def test_kernel_chosen_name_and_raw_fd_api() -> None:
    async def main() -> tuple[str, bool]:
        fd, name = open_tun("m6tt%d")
        try:
            flags = os.get_blocking(fd)
            return name, flags
        finally:
            os.close(fd)

    with netns() as (ns,):
        name, blocking = run_in(ns, main)
    assert name.startswith("m6tt") and name[4:].isdigit()
    assert not blocking


@root_only
def test_name_in_use_or_not_a_tun_is_a_clear_error() -> None:
    async def main() -> list[tuple[str, str | None]]:
        errors = []
        first = LinuxTun("m6ttest2")
        try:
            LinuxTun("m6ttest2")
        except PlatformError as exc:
            errors.append((str(exc), exc.hint))
        first.close()
        try:
            LinuxTun("vx0")
        except PlatformError as exc:
            errors.append((str(exc), exc.hint))
        return errors

    with netns() as (ns,):
        ip("-n", ns, "link", "add", "vx0", "type", "veth", "peer", "name", "vx1")
        errors = run_in(ns, main)
    assert len(errors) == 2
    assert "in use" in errors[0][0] and errors[0][1]
    assert "not a TUN" in errors[1][0] and errors[1][1] and "vx0" in errors[1][1]


@root_only
def test_write_to_a_down_interface_drops_and_counts() -> None:
    async def main() -> tuple[int, int]:
        tun = LinuxTun("m6ttest3")
        tun.write(icmpv6_echo(PEER_ADDR, TUN_ADDR, 1, 1, b""))  # the link is down: EIO
        tun.write(b"\x00" * 40)  # not an IP packet: EINVAL
        tun.close()
        return tun.write_errors, tun.dropped

    with netns() as (ns,):
        assert run_in(ns, main) == (2, 0)
