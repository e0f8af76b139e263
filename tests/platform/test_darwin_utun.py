"""macOS utun devices against the fake kernel: name allocation, the AF header, batches, drops, teardown."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Sequence

import pytest

from m6t.lab.emulation.darwin_abi import AF_INET, AF_INET6
from m6t.platform.base import PlatformError, PlatformErrorCode
from m6t.platform.darwin.backend import DarwinBackend
from m6t.platform.darwin.utun import DarwinUtun, requested_unit
from tests.platform.darwin_fakes import FakeDarwinKernel

PACKET = bytes.fromhex("6000000000083b40") + bytes(range(32)) + b"payload!"
"""An IPv6 header (next header 59, hop limit 64) with 8 bytes of payload."""


def open_utun(kernel: FakeDarwinKernel, name: str = "m6t0") -> DarwinUtun:
    return DarwinBackend(kernel).open_tun(name)


def test_a_name_macos_cannot_give_takes_the_next_free_utun() -> None:
    kernel = FakeDarwinKernel()  # utun0..utun2 belong to the system
    first = open_utun(kernel, "m6t0")
    second = open_utun(kernel, "m6t0")
    assert (first.name, second.name) == ("utun3", "utun4")
    assert kernel.interface("utun3").index == kernel.if_nametoindex(first.name)
    first.close()
    second.close()


def test_a_utun_name_asks_for_that_unit() -> None:
    kernel = FakeDarwinKernel()
    tun = open_utun(kernel, "utun7")
    assert tun.name == "utun7"
    with pytest.raises(PlatformError, match="already in use") as info:
        open_utun(kernel, "utun7")
    assert info.value.hint is not None
    assert info.value.code is PlatformErrorCode.INTERFACE_BUSY
    with pytest.raises(PlatformError, match="already in use"):
        open_utun(kernel, "utun1")  # one of the system's
    tun.close()
    assert kernel.open_sockets("control") == 0  # the failed attempts closed their sockets


@pytest.mark.parametrize(
    ("name", "unit"), [("utun0", 0), ("utun12", 12), ("m6t0", None), ("utun", None), ("utun01", None)]
)
def test_requested_unit(name: str, unit: int | None) -> None:
    assert requested_unit(name) == unit


def test_not_root_is_explained() -> None:
    kernel = FakeDarwinKernel(euid=501)
    with pytest.raises(PlatformError, match="not allowed") as info:
        open_utun(kernel)
    assert info.value.hint == "run the m6t helper as root"
    assert info.value.code is PlatformErrorCode.PERMISSION_DENIED
    assert kernel.open_sockets("control") == 0


def test_missing_utun_control_is_explained() -> None:
    kernel = FakeDarwinKernel(utun_control=False)
    with pytest.raises(PlatformError, match="utun kernel control is unavailable") as info:
        open_utun(kernel)
    assert info.value.code is PlatformErrorCode.TUN_MISSING
    assert kernel.open_sockets("control") == 0


def test_closing_removes_the_interface() -> None:
    kernel = FakeDarwinKernel()
    tun = open_utun(kernel)
    assert DarwinBackend(kernel).interface_exists("utun3")
    tun.close()
    tun.close()  # idempotent
    assert not DarwinBackend(kernel).interface_exists("utun3")
    assert kernel.open_sockets("control") == 0


def test_write_prepends_the_af_inet6_header_in_network_order() -> None:
    kernel = FakeDarwinKernel()
    tun = open_utun(kernel)
    tun.write(PACKET)
    # The fake decodes the header big-endian: a little-endian 30 would arrive as family 0x1E000000.
    assert kernel.interface(tun.name).injected == [(AF_INET6, PACKET)]
    tun.close()


@pytest.mark.parametrize("code", [errno.ENOBUFS, errno.EAGAIN])
def test_full_queue_drops(code: int) -> None:
    kernel = FakeDarwinKernel()
    tun = open_utun(kernel)
    kernel.utun_write_error = code
    tun.write(PACKET)
    assert tun.dropped == 1
    kernel.utun_write_error = errno.EINVAL
    tun.write(PACKET)
    assert tun.write_errors == 1
    kernel.utun_write_error = errno.EBADF
    with pytest.raises(OSError):
        tun.write(PACKET)
    tun.close()


def test_reads_strip_the_header_in_batches_and_drop_other_families() -> None:
    async def main() -> list[list[bytes]]:
        kernel = FakeDarwinKernel()
        tun = open_utun(kernel)
        batches: list[list[bytes]] = []
        got = asyncio.Event()

        def on_packets(packets: Sequence[bytes]) -> None:
            batches.append(list(packets))
            got.set()

        tun.start_reading(asyncio.get_running_loop(), on_packets)
        for i in range(5):
            kernel.deliver(tun.name, PACKET + bytes([i]))
        kernel.deliver(tun.name, b"\x45" + bytes(27), family=AF_INET)
        async with asyncio.timeout(2):
            await got.wait()
        assert tun.foreign == 1
        tun.stop_reading()
        kernel.deliver(tun.name, PACKET)
        await asyncio.sleep(0.05)
        tun.close()
        return batches

    batches = asyncio.run(main())
    assert batches == [[PACKET + bytes([i]) for i in range(5)]]


def test_start_reading_on_a_closed_device_fails() -> None:
    kernel = FakeDarwinKernel()
    tun = open_utun(kernel)
    tun.close()

    async def main() -> None:
        tun.start_reading(asyncio.get_running_loop(), lambda packets: None)

    with pytest.raises(PlatformError, match="closed"):
        asyncio.run(main())
