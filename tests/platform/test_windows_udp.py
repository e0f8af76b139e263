"""WindowsUdpChannel: real UDP on 127.0.0.1 with the reader-thread design, Winsock options through the fake
ws2_32, and Windows' send errors classified."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address
from typing import Any

import pytest

from m6t.platform.windows.backend import WindowsBackend
from m6t.platform.windows.udp import MAX_BATCH, WindowsUdpChannel
from m6t.protocol.values import PmtuEvidence
from tests.platform.windows_fakes import (
    IP_DONTFRAGMENT,
    IPPROTO_IP,
    SIO_UDP_CONNRESET,
    SIO_UDP_NETRESET,
    FakeWindows,
    fake_windows,
)

LOCALHOST = "127.0.0.1"


@pytest.fixture
def fake() -> Iterator[FakeWindows]:
    with fake_windows() as windows:
        yield windows


@pytest.fixture
def gateway() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCALHOST, 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def channel_to(fake: FakeWindows, gateway: socket.socket) -> WindowsUdpChannel:
    port = gateway.getsockname()[1]
    return WindowsBackend(fake.api()).open_udp((IPv4Address(LOCALHOST), port))


class Collector:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.datagrams: list[tuple[bytes, tuple[str, int]]] = []
        self.batches: list[int] = []
        self.threads: set[int] = set()
        self.pmtu: list[PmtuEvidence] = []
        self.done = asyncio.Event()

    def __call__(self, batch: Sequence[tuple[bytes, tuple[str, int]]]) -> None:
        self.threads.add(threading.get_ident())
        self.batches.append(len(batch))
        self.datagrams.extend(batch)
        if len(self.datagrams) >= self.expected:
            self.done.set()


def test_socket_options_go_through_winsock(fake: FakeWindows, gateway: socket.socket) -> None:
    channel = channel_to(fake, gateway)
    fileno = channel.sock.fileno()
    assert fake.ws2_32.sockopts == [(fileno, IPPROTO_IP, IP_DONTFRAGMENT, struct.pack("<I", 0))]  # DF clear
    assert fake.ws2_32.ioctls == [
        (fileno, SIO_UDP_CONNRESET, struct.pack("<i", 0)),
        (fileno, SIO_UDP_NETRESET, struct.pack("<i", 0)),
    ]
    assert channel.remote_address == gateway.getsockname()
    assert channel.local_address[0] == LOCALHOST
    channel.close()


def test_the_channel_opens_even_if_the_ioctls_fail(fake: FakeWindows, gateway: socket.socket) -> None:
    fake.ws2_32.fail_ioctls = True
    channel = channel_to(fake, gateway)
    channel.send([b"still works"])
    assert gateway.recvfrom(100)[0] == b"still works"
    channel.close()


def test_datagrams_both_ways_with_batching(fake: FakeWindows, gateway: socket.socket) -> None:
    channel = channel_to(fake, gateway)
    local = channel.local_address
    count = 600

    async def main() -> Collector:
        collector = Collector(count)
        # Queued before reading starts: the reader drains them in bounded batches.
        for i in range(count // 2):
            gateway.sendto(i.to_bytes(4, "big") * 10, local)
        channel.start_reading(asyncio.get_running_loop(), collector, collector.pmtu.append)
        await asyncio.sleep(0.05)
        for i in range(count // 2, count):
            gateway.sendto(i.to_bytes(4, "big") * 10, local)
        await asyncio.wait_for(collector.done.wait(), 10)
        channel.send([b"up-%d" % i for i in range(20)])
        channel.stop_reading()
        return collector

    collector = asyncio.run(main())
    assert [d for d, _ in collector.datagrams] == [i.to_bytes(4, "big") * 10 for i in range(count)]
    assert {source for _, source in collector.datagrams} == {gateway.getsockname()}
    assert collector.threads == {threading.get_ident()}
    assert collector.batches[0] == MAX_BATCH
    assert max(collector.batches) <= MAX_BATCH
    assert [gateway.recvfrom(100)[0] for _ in range(20)] == [b"up-%d" % i for i in range(20)]
    assert channel.stats.sent == 20 and channel.stats.received == count
    channel.close()


def test_an_oversize_datagram_is_pmtu_evidence(fake: FakeWindows, gateway: socket.socket) -> None:
    channel = channel_to(fake, gateway)

    async def main() -> list[PmtuEvidence]:
        collector = Collector(1)
        channel.start_reading(asyncio.get_running_loop(), collector, collector.pmtu.append)
        channel.send([bytes(70000), b"small"])
        channel.stop_reading()
        return collector.pmtu

    assert asyncio.run(main()) == [PmtuEvidence(mtu=0, source="emsgsize")]
    assert channel.stats.oversize == 1 and channel.stats.sent == 1
    assert gateway.recvfrom(100)[0] == b"small"
    channel.close()


def test_icmp_port_unreachable_is_survived(fake: FakeWindows) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind((LOCALHOST, 0))
    port = closed.getsockname()[1]
    closed.close()  # nobody listens there: every datagram draws an ICMP port unreachable
    channel = WindowsBackend(fake.api()).open_udp((IPv4Address(LOCALHOST), port))

    async def main() -> None:
        collector = Collector(1)
        channel.start_reading(asyncio.get_running_loop(), collector, collector.pmtu.append)
        for _ in range(5):
            channel.send([b"anyone?"])
            await asyncio.sleep(0.02)
        channel.stop_reading()

    asyncio.run(main())
    assert channel.stats.icmp_errors >= 1
    channel.close()


def test_stop_is_prompt_and_final(fake: FakeWindows, gateway: socket.socket) -> None:
    channel = channel_to(fake, gateway)

    async def main() -> tuple[float, Collector, Collector]:
        loop = asyncio.get_running_loop()
        first = Collector(1)
        channel.start_reading(loop, first, first.pmtu.append)
        await asyncio.sleep(0.05)
        started = time.monotonic()
        channel.stop_reading()
        elapsed = time.monotonic() - started
        gateway.sendto(b"while stopped", channel.local_address)
        await asyncio.sleep(0.1)
        second = Collector(1)
        channel.start_reading(loop, second, second.pmtu.append)
        await asyncio.wait_for(second.done.wait(), 5)
        channel.stop_reading()
        return elapsed, first, second

    elapsed, first, second = asyncio.run(main())
    assert elapsed < 0.3  # the wake-up socket ends the select at once (its timeout is 0.5 s)
    assert first.datagrams == []
    assert [d for d, _ in second.datagrams] == [b"while stopped"]
    channel.close()


def test_close_stops_the_reader(fake: FakeWindows, gateway: socket.socket) -> None:
    channel = channel_to(fake, gateway)

    async def main() -> threading.Thread:
        channel.start_reading(asyncio.get_running_loop(), lambda batch: None, lambda evidence: None)
        reader = channel._reader
        assert reader is not None
        channel.close()
        return reader.thread

    thread = asyncio.run(main())
    assert not thread.is_alive()
    assert channel.sock.fileno() == -1
    channel.close()  # idempotent


# Windows' send errors ----------------------------------------------------------------------------------


class ScriptedSocket:
    """Raises the given Winsock errors in turn, then sends."""

    def __init__(self, errors: list[int]) -> None:
        self.errors = errors
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        if self.errors:
            code = self.errors.pop(0)
            exc: Any = OSError(code, f"WSA error {code}")
            exc.winerror = code  # what Python sets on Windows
            raise exc
        self.sent.append(data)
        return len(data)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("errors", "counters", "pmtu"),
    [
        ([10040, 10040], {"oversize": 1}, True),  # WSAEMSGSIZE, twice: the datagram is too large
        ([10040], {"icmp_errors": 1, "sent": 1}, True),  # once: a probe's frag-needed reported late (icmp)
        ([10055], {"dropped": 1}, False),  # WSAENOBUFS
        ([10051], {"dropped": 1}, False),  # WSAENETUNREACH
        ([10065], {"dropped": 1}, False),  # WSAEHOSTUNREACH
        ([10049], {"dropped": 1}, False),  # WSAEADDRNOTAVAIL: the old source address is gone
        ([10054], {"icmp_errors": 1, "sent": 1}, False),  # WSAECONNRESET: an earlier ICMP, then a retry
        ([10054, 10054], {"icmp_errors": 1, "dropped": 1}, False),
        ([10052], {"icmp_errors": 1, "sent": 1}, False),  # WSAENETRESET
        ([12345], {"send_errors": 1}, False),
    ],
)
def test_send_errors_are_counted_not_raised(
    fake: FakeWindows, gateway: socket.socket, errors: list[int], counters: dict[str, int], pmtu: bool
) -> None:
    channel = channel_to(fake, gateway)
    channel.sock.close()
    scripted = ScriptedSocket(list(errors))
    channel.sock = scripted  # type: ignore[assignment]
    evidence: list[PmtuEvidence] = []
    channel._on_pmtu = evidence.append
    channel.send([b"x"])
    stats = channel.stats
    observed = {name: getattr(stats, name) for name in ("sent", "dropped", "oversize", "icmp_errors", "send_errors")}
    assert observed == {name: counters.get(name, 0) for name in observed}
    assert bool(evidence) == pmtu
    if "send_errors" in counters:
        assert stats.last_error == errors[0]


def test_caller_bugs_raise(fake: FakeWindows, gateway: socket.socket) -> None:
    channel = channel_to(fake, gateway)
    channel.sock.close()
    channel.sock = ScriptedSocket([10038])  # type: ignore[assignment]  # WSAENOTSOCK
    with pytest.raises(OSError):
        channel.send([b"x"])


def test_a_probe_sets_df_for_itself_only(fake: FakeWindows, gateway: socket.socket) -> None:
    channel = channel_to(fake, gateway)
    fileno = channel.sock.fileno()
    channel.send_probe(b"probe")
    channel.send_probe(b"again")
    channel.send([b"data"])
    flags = [struct.unpack("<I", option[3])[0] for option in fake.ws2_32.sockopts]
    assert all(option[:3] == (fileno, IPPROTO_IP, IP_DONTFRAGMENT) for option in fake.ws2_32.sockopts)
    assert flags == [0, 1, 0], "clear at opening, set for the probes, clear again before the data"
    assert [gateway.recvfrom(100)[0] for _ in range(3)] == [b"probe", b"again", b"data"]
    channel.close()
