"""DarwinUdpChannel: a real UDP socket on 127.0.0.1 for the data path, the fake kernel for IP_DONTFRAG."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Sequence
from ipaddress import IPv4Address

import pytest

from m6t.lab.emulation.darwin_abi import IP_DONTFRAG, IPPROTO_IP
from m6t.platform.darwin.backend import DarwinBackend
from m6t.platform.darwin.udp import DarwinUdpChannel
from m6t.protocol.values import PmtuEvidence
from tests.platform.darwin_fakes import FakeDarwinKernel

LOOPBACK = IPv4Address("127.0.0.1")


def channel_to(kernel: FakeDarwinKernel, port: int) -> DarwinUdpChannel:
    return DarwinBackend(kernel).open_udp((LOOPBACK, port))


@pytest.fixture
def gateway() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock


def test_df_is_explicitly_cleared(gateway: socket.socket) -> None:
    kernel = FakeDarwinKernel()
    channel = channel_to(kernel, gateway.getsockname()[1])
    assert kernel.sockopts[(channel.fileno(), IPPROTO_IP, IP_DONTFRAG)] == 0
    assert channel.remote_address == ("127.0.0.1", gateway.getsockname()[1])
    assert channel.local_address[0] == "127.0.0.1"
    channel.close()
    gateway.close()


def test_datagrams_both_ways(gateway: socket.socket) -> None:
    kernel = FakeDarwinKernel()
    port = gateway.getsockname()[1]

    async def main() -> tuple[list[bytes], list[tuple[bytes, tuple[str, int]]]]:
        channel = channel_to(kernel, port)
        received: list[tuple[bytes, tuple[str, int]]] = []
        done = asyncio.Event()

        def on_datagrams(datagrams: Sequence[tuple[bytes, tuple[str, int]]]) -> None:
            received.extend(datagrams)
            if len(received) >= 3:
                done.set()

        channel.start_reading(asyncio.get_running_loop(), on_datagrams, lambda evidence: None)
        channel.send([b"one", b"two", b"three"])
        sent = [gateway.recv(100) for _ in range(3)]
        for reply in (b"a", b"bb", b"ccc"):
            gateway.sendto(reply, channel.local_address)
        async with asyncio.timeout(2):
            await done.wait()
        assert (channel.sent, channel.received) == (3, 3)
        channel.close()
        return sent, received

    sent, received = asyncio.run(main())
    gateway.close()
    assert sent == [b"one", b"two", b"three"]
    assert received == [(b"a", ("127.0.0.1", port)), (b"bb", ("127.0.0.1", port)), (b"ccc", ("127.0.0.1", port))]


def test_oversize_is_pmtu_evidence_not_an_exception(gateway: socket.socket) -> None:
    kernel = FakeDarwinKernel()

    async def main() -> tuple[list[PmtuEvidence], int, int]:
        channel = channel_to(kernel, gateway.getsockname()[1])
        evidence: list[PmtuEvidence] = []
        channel.start_reading(asyncio.get_running_loop(), lambda datagrams: None, evidence.append)
        channel.send([b"x" * 70000, b"fits"])
        result = (evidence, channel.oversize, channel.sent)
        channel.close()
        return result

    evidence, oversize, sent = asyncio.run(main())
    assert evidence == [PmtuEvidence(mtu=0, source="emsgsize")]
    assert (oversize, sent) == (1, 1)
    assert gateway.recv(100) == b"fits"
    gateway.close()


def test_port_unreachable_is_ignored() -> None:
    # Nobody listens on the port: the kernel's ICMP port unreachable comes back as ECONNREFUSED, once.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    kernel = FakeDarwinKernel()

    async def main() -> tuple[int, int, int]:
        channel = channel_to(kernel, port)
        channel.start_reading(asyncio.get_running_loop(), lambda datagrams: None, lambda evidence: None)
        for _ in range(4):
            channel.send([b"hello"])
            await asyncio.sleep(0.02)
        result = (channel.icmp_errors, channel.sent, channel.send_errors)
        channel.close()
        return result

    icmp_errors, sent, send_errors = asyncio.run(main())
    assert icmp_errors >= 1
    assert sent >= 3
    assert send_errors == 0


def test_a_probe_sets_df_for_itself_only(gateway: socket.socket) -> None:
    kernel = FakeDarwinKernel()
    channel = channel_to(kernel, gateway.getsockname()[1])
    option = (channel.fileno(), IPPROTO_IP, IP_DONTFRAG)
    channel.send_probe(b"probe")
    assert kernel.sockopts[option] == 1
    assert gateway.recv(100) == b"probe"
    channel.send_probe(b"again")  # DF still set: no system call to set it twice
    assert kernel.sockopts[option] == 1
    channel.send([b"data"])
    assert kernel.sockopts[option] == 0, "data leaves with DF clear"
    assert gateway.recv(100) == b"again" and gateway.recv(100) == b"data"
    channel.close()
    gateway.close()


class _ReportsOnce:
    """A socket whose next send fails once with EMSGSIZE, as the one-shot report of a frag-needed does."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = True

    def send(self, data: bytes) -> int:
        if self.pending:
            self.pending = False
            raise OSError(errno.EMSGSIZE, "Message too long")
        return self.sock.send(data)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


def test_a_frag_needed_reported_on_a_later_send_is_icmp_evidence(gateway: socket.socket) -> None:
    kernel = FakeDarwinKernel()
    channel = channel_to(kernel, gateway.getsockname()[1])
    evidence: list[PmtuEvidence] = []
    channel._on_pmtu = evidence.append
    channel.sock = _ReportsOnce(channel.sock)  # type: ignore[assignment]
    channel.send([b"data"])
    assert evidence == [PmtuEvidence(mtu=0, source="icmp")]
    assert (channel.oversize, channel.sent) == (0, 1)
    assert gateway.recv(100) == b"data"
    channel.close()
    gateway.close()
