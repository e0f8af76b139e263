"""WintunTun against the fake wintun.dll/kernel32: loading, adapter life cycle, threaded reading, writing."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from m6t.platform.base import PlatformError, PlatformErrorCode
from m6t.platform.windows import wintun as wintun_module
from m6t.platform.windows.backend import WindowsBackend
from m6t.platform.windows.system import Kernel32
from m6t.platform.windows.wintun import (
    MAX_BATCH,
    MAX_PENDING_BATCHES,
    TUNNEL_TYPE,
    WINTUN_HINT,
    Wintun,
    WintunTun,
    adapter_guid,
)
from tests.platform.windows_fakes import IF_TYPE_PROP_VIRTUAL, FakeWindows, fake_windows

NAME = "m6t0"


@pytest.fixture
def fake() -> Iterator[FakeWindows]:
    with fake_windows() as windows:
        yield windows


def open_tun(fake: FakeWindows, name: str = NAME) -> WintunTun:
    return WindowsBackend(fake.api()).open_tun(name)


def packet(i: int, size: int = 80) -> bytes:
    # A bare IPv6 header's worth of recognizable bytes: Wintun adds no framing of its own.
    return bytes([0x60]) + i.to_bytes(4, "big") + bytes(size - 5)


# Loading ---------------------------------------------------------------------------------------------


def test_wintun_is_loaded_from_the_application_directory_only(fake: FakeWindows) -> None:
    api = fake.api()
    Wintun.load(api, Kernel32(api))
    assert fake.kernel32.load_calls == [("wintun.dll", 0x200 | 0x800)]
    assert fake.dll_loads and fake.dll_loads[0][0] == "wintun.dll"


def test_a_dll_planted_in_the_current_directory_is_not_loaded(fake: FakeWindows) -> None:
    fake.wintun_location = "current_dir"
    api = fake.api()
    with pytest.raises(PlatformError) as info:
        Wintun.load(api, Kernel32(api))
    assert "missing" in str(info.value)
    assert info.value.hint == WINTUN_HINT


def test_missing_dll(fake: FakeWindows) -> None:
    fake.wintun_location = None
    with pytest.raises(PlatformError) as info:
        open_tun(fake)
    assert info.value.hint == WINTUN_HINT
    assert info.value.code is PlatformErrorCode.TUN_MISSING


def test_driver_version_only_once_an_adapter_exists(fake: FakeWindows) -> None:
    api = fake.api()
    wintun = Wintun.load(api, Kernel32(api))
    assert wintun.driver_version() is None
    tun = open_tun(fake)
    assert wintun.driver_version() == "0.14"
    tun.close()


# Adapter life cycle ----------------------------------------------------------------------------------


def test_create_then_close_removes_the_adapter(fake: FakeWindows) -> None:
    tun = open_tun(fake)
    adapter = fake.wintun.adapter(NAME)
    assert adapter is not None
    assert adapter.tunnel_type == TUNNEL_TYPE
    assert adapter.guid == adapter_guid(NAME)
    assert tun.name == NAME
    assert tun.owned
    assert tun.luid == adapter.luid and tun.luid >> 48 == IF_TYPE_PROP_VIRTUAL
    assert adapter.session is not None and adapter.session.capacity == 0x400000
    tun.close()
    assert fake.wintun.adapter(NAME) is None
    assert fake.interface_by_alias(NAME) is None
    assert adapter.session.ended
    assert fake.kernel32.open_events() == 0  # our stop event is closed too
    tun.close()  # idempotent


def test_recreating_reuses_the_same_guid(fake: FakeWindows) -> None:
    first = open_tun(fake)
    first_adapter = fake.wintun.adapter(NAME)
    first.close()
    second = open_tun(fake)
    second_adapter = fake.wintun.adapter(NAME)
    assert first_adapter is not None and second_adapter is not None
    assert first_adapter.guid == second_adapter.guid
    second.close()


def test_an_existing_adapter_with_our_guid_is_opened_and_left_in_place(fake: FakeWindows) -> None:
    # E.g. created by a previous helper that has not been cleaned up: same name, so same GUID.
    fake.wintun.add_foreign_adapter(NAME, adapter_guid(NAME))
    tun = open_tun(fake)
    assert not tun.owned
    assert fake.wintun.session_of(NAME).handle == tun.session
    tun.close()
    assert fake.wintun.adapter(NAME) is not None  # not ours to remove
    assert fake.wintun.adapter(NAME).session.ended  # type: ignore[union-attr]


def test_adapter_in_use_by_another_process(fake: FakeWindows) -> None:
    fake.wintun.add_foreign_adapter(NAME, adapter_guid(NAME), with_session=True)
    with pytest.raises(PlatformError) as info:
        open_tun(fake)
    assert "already in use" in str(info.value)
    assert info.value.hint is not None and "other m6t instance" in info.value.hint
    assert info.value.code is PlatformErrorCode.INTERFACE_BUSY
    assert len(fake.wintun.handles) == 0  # our handle on it was released


def test_a_foreign_adapter_holding_the_name_is_renamed(fake: FakeWindows) -> None:
    foreign = fake.wintun.add_foreign_adapter(NAME)  # another product's adapter, another GUID
    tun = open_tun(fake)
    assert tun.name == NAME
    assert tun.luid != foreign.luid
    assert fake.interfaces[foreign.luid].alias == f"{NAME} 1"
    tun.close()


def test_not_elevated(fake: FakeWindows) -> None:
    fake.admin = False
    with pytest.raises(PlatformError) as info:
        open_tun(fake)
    assert info.value.hint is not None and "elevated" in info.value.hint
    assert info.value.code is PlatformErrorCode.PERMISSION_DENIED


@pytest.mark.parametrize("name", ["", "   ", "x" * 128, "a\0b"])
def test_invalid_names(fake: FakeWindows, name: str) -> None:
    with pytest.raises(PlatformError):
        open_tun(fake, name)
    assert fake.wintun.adapters == {}


def test_wintun_log_messages_reach_python_logging(fake: FakeWindows, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="m6t.platform.windows.wintun"):
        tun = open_tun(fake)
    assert any("wintun: Creating adapter m6t0" in r.getMessage() for r in caplog.records)
    tun.close()


# Reading ---------------------------------------------------------------------------------------------


class Collector:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.packets: list[bytes] = []
        self.batches: list[int] = []
        self.threads: set[int] = set()
        self.done = asyncio.Event()

    def __call__(self, batch: Sequence[bytes]) -> None:
        self.threads.add(threading.get_ident())
        self.batches.append(len(batch))
        self.packets.extend(batch)
        if len(self.packets) >= self.expected:
            self.done.set()


def test_packets_arrive_on_the_loop_in_order_and_in_batches(fake: FakeWindows) -> None:
    tun = open_tun(fake)
    sent = [packet(i, 60 + i % 1200) for i in range(2000)]

    async def main() -> Collector:
        collector = Collector(len(sent))
        tun.start_reading(asyncio.get_running_loop(), collector)

        def os_side() -> None:
            for start in range(0, len(sent), 100):
                assert fake.wintun.inject(NAME, sent[start : start + 100]) == 100
                time.sleep(0.001)

        producer = threading.Thread(target=os_side)
        producer.start()
        await asyncio.wait_for(collector.done.wait(), 10)
        producer.join()
        tun.stop_reading()
        return collector

    collector = asyncio.run(main())
    assert collector.packets == sent
    assert collector.threads == {threading.get_ident()}  # delivered on the loop's thread
    assert max(collector.batches) > 1
    assert max(collector.batches) <= MAX_BATCH
    session = fake.wintun.session_of(NAME)
    assert session.receive.outstanding == {} and session.receive.used == 0  # every packet released
    assert tun.received == len(sent)
    tun.close()


def test_a_full_ring_is_read_in_bounded_batches(fake: FakeWindows) -> None:
    tun = open_tun(fake)
    sent = [packet(i) for i in range(3 * MAX_BATCH + 5)]
    fake.wintun.inject(NAME, sent)  # all queued before reading starts

    async def main() -> Collector:
        collector = Collector(len(sent))
        tun.start_reading(asyncio.get_running_loop(), collector)
        await asyncio.wait_for(collector.done.wait(), 5)
        tun.stop_reading()
        return collector

    collector = asyncio.run(main())
    assert collector.packets == sent
    assert collector.batches[:3] == [MAX_BATCH] * 3
    tun.close()


def test_a_busy_loop_leaves_packets_in_the_ring_not_in_memory(fake: FakeWindows) -> None:
    tun = open_tun(fake)
    sent = [packet(i) for i in range(20 * MAX_BATCH)]

    async def main() -> tuple[int, Collector]:
        collector = Collector(len(sent))
        tun.start_reading(asyncio.get_running_loop(), collector)
        for start in range(0, len(sent), MAX_BATCH):
            fake.wintun.inject(NAME, sent[start : start + MAX_BATCH])
        time.sleep(0.3)  # the loop is busy elsewhere: nothing it was handed gets delivered meanwhile
        left_in_ring = len(fake.wintun.session_of(NAME).receive.queued)
        await asyncio.wait_for(collector.done.wait(), 10)
        tun.stop_reading()
        return left_in_ring, collector

    left_in_ring, collector = asyncio.run(main())
    # At most MAX_PENDING_BATCHES batches wait in the loop, plus the one the reader holds.
    assert left_in_ring >= len(sent) - (MAX_PENDING_BATCHES + 1) * MAX_BATCH
    assert collector.packets == sent
    tun.close()


def test_stop_reading_stops_delivery_and_reading_can_restart(fake: FakeWindows) -> None:
    tun = open_tun(fake)

    async def main() -> tuple[list[bytes], list[bytes]]:
        loop = asyncio.get_running_loop()
        first = Collector(1)
        tun.start_reading(loop, first)
        fake.wintun.inject(NAME, [packet(1)])
        await asyncio.wait_for(first.done.wait(), 5)
        tun.stop_reading()
        fake.wintun.inject(NAME, [packet(2)])
        await asyncio.sleep(0.1)
        assert first.packets == [packet(1)]  # nothing after stop_reading
        second = Collector(1)
        tun.start_reading(loop, second)
        await asyncio.wait_for(second.done.wait(), 5)
        tun.stop_reading()
        return first.packets, second.packets

    first, second = asyncio.run(main())
    assert first == [packet(1)]
    assert second == [packet(2)]  # left in the ring while nobody read, then delivered
    tun.close()


def test_stop_ends_the_reader_wait_at_once(fake: FakeWindows, monkeypatch: pytest.MonkeyPatch) -> None:
    # The reader's wait made a minute long: only the stop event can end it in time.  (A timing with a
    # margin of 50 ms over the real 250 ms wait let a stop that waits the timeout out pass on a loaded machine.)
    monkeypatch.setattr(wintun_module, "WAIT_MS", 60_000)
    tun = open_tun(fake)
    waiting = threading.Event()
    wait_any = tun._kernel32.wait_any

    def wait_noted(handles: Sequence[int], timeout_ms: int) -> int:
        waiting.set()
        return wait_any(handles, timeout_ms)

    monkeypatch.setattr(tun._kernel32, "wait_any", wait_noted)

    async def main() -> tuple[float, threading.Thread]:
        tun.start_reading(asyncio.get_running_loop(), lambda batch: None)
        reader = tun._reader
        assert reader is not None
        assert await asyncio.to_thread(waiting.wait, 5)  # the reader blocks in its wait for packets
        started = time.monotonic()
        tun.stop_reading()
        return time.monotonic() - started, reader.thread

    took, thread = asyncio.run(main())
    assert not thread.is_alive()
    assert took < 2.0, f"stop_reading took {took:.2f} s: it waited for the reader's wait to time out"
    tun.close()


def test_adapter_going_away_ends_reading_quietly(fake: FakeWindows, caplog: pytest.LogCaptureFixture) -> None:
    tun = open_tun(fake)

    async def main() -> list[bytes]:
        collector = Collector(1)
        tun.start_reading(asyncio.get_running_loop(), collector)
        reader = tun._reader
        assert reader is not None
        fake.wintun.inject(NAME, [packet(7)])
        await asyncio.wait_for(collector.done.wait(), 5)  # read while the adapter was up: delivered
        with fake.lock:  # the adapter goes away with a packet still queued toward us
            fake.wintun.inject(NAME, [packet(8)])
            fake.wintun.terminate(NAME)
        await asyncio.to_thread(reader.thread.join, 5)
        assert not reader.thread.is_alive()  # ERROR_HANDLE_EOF ended reading
        await asyncio.sleep(0.05)
        return collector.packets

    with caplog.at_level(logging.INFO, logger="m6t.platform.windows.wintun"):
        delivered = asyncio.run(main())
    # As Wintun's session.c does: EOF first, so the queued packet is lost, not delivered after the end.
    assert delivered == [packet(7)]
    assert len(fake.wintun.session_of(NAME).receive.queued) == 1
    assert any("going away" in r.getMessage() for r in caplog.records)
    assert [r for r in caplog.records if r.levelno > logging.INFO] == []  # quietly: no warning, no traceback
    tun.write(packet(9))
    assert tun.write_errors == 1
    tun.close()


def test_close_while_reading(fake: FakeWindows) -> None:
    tun = open_tun(fake)

    async def main() -> None:
        tun.start_reading(asyncio.get_running_loop(), lambda batch: None)
        fake.wintun.inject(NAME, [packet(i) for i in range(50)])
        await asyncio.sleep(0.02)
        tun.close()

    asyncio.run(main())
    assert fake.wintun.adapter(NAME) is None
    with pytest.raises(PlatformError):
        tun.start_reading(asyncio.new_event_loop(), lambda batch: None)


# Writing ---------------------------------------------------------------------------------------------


def test_write_hands_bare_packets_to_windows(fake: FakeWindows) -> None:
    tun = open_tun(fake)
    packets = [packet(i, 40 + i) for i in range(100)]
    for p in packets:
        tun.write(p)
    assert fake.wintun.drain_sent(NAME) == packets
    assert tun.dropped == tun.write_errors == 0
    tun.close()


def test_a_full_ring_drops_and_counts(fake: FakeWindows) -> None:
    tun = open_tun(fake)
    big = packet(0, 1500)
    fits = 0x400000 // ((4 + 1500 + 3) & ~3)
    for _ in range(fits + 10):
        tun.write(big)
    assert tun.dropped == 10
    assert len(fake.wintun.drain_sent(NAME)) == fits
    tun.write(big)  # room again once Windows consumed the ring
    assert tun.dropped == 10
    assert fake.wintun.drain_sent(NAME) == [big]
    tun.close()


def test_oversize_and_empty_packets_are_refused_without_raising(fake: FakeWindows) -> None:
    tun = open_tun(fake)
    tun.write(b"")
    tun.write(bytes(0x10000))
    assert tun.write_errors == 2
    assert fake.wintun.drain_sent(NAME) == []
    tun.close()
    tun.write(packet(1))  # after close: dropped, never raised
    assert tun.write_errors == 3
