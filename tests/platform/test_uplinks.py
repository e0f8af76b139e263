"""Every uplink at once (draft 2.5), on real kernels: the three backends (Linux, and macOS and Windows through
their emulations) list a host's IPv4 uplinks, look the path up through each, and send through the one they
are told to, whatever the routing table prefers.

The host (``mn``) has two uplinks, each toward its own router, and both routers reach the gateway's address::

    mn  up0 192.0.2.10/24    ── r1 192.0.2.1     198.51.100.17/30 ── 198.51.100.18  gw (198.51.100.2 on lo)
        up1 203.0.113.10/24  ── r2 203.0.113.1   198.51.100.21/30 ── 198.51.100.22

with ``default via 192.0.2.1 metric 100`` and ``default via 203.0.113.1 metric 200``: up0 is the one the OS
prefers.  The gateway's echo tells which address (so which uplink) a datagram came from.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m6t.platform.base import Backend, ConnectivityMonitor, UdpChannel
from m6t.protocol.values import Attachment, PmtuEvidence
from tests.platform import inside, ip, netns, run_forked

if sys.platform != "linux":
    pytest.skip("the lab's namespaces are Linux's", allow_module_level=True)
assert sys.platform == "linux"

from m6t.platform.linux.monitor import RouteReply, route_reply, route_request  # noqa: E402

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces")

GATEWAY = IPv4Address("198.51.100.2")
PORT = 4242
TUNNEL = "m6t0"
UP0 = Attachment(IPv4Address("192.0.2.10"), "up0", IPv4Address("192.0.2.1"))
UP1 = Attachment(IPv4Address("203.0.113.10"), "up1", IPv4Address("203.0.113.1"))


def _forwarding(ns: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], check=True, timeout=10)


@contextmanager
def two_uplinks(r2_gw_mtu: int = 1500) -> Iterator[tuple[str, str, str, str]]:
    """(mn, r1, r2, gw) as the module docstring draws them; the r2-gw link carries ``r2_gw_mtu`` bytes."""
    with netns(4) as (mn, r1, r2, gw):
        ip("-n", mn, "link", "add", "up0", "type", "veth", "peer", "name", "ra", "netns", r1)
        ip("-n", mn, "link", "add", "up1", "type", "veth", "peer", "name", "ra", "netns", r2)
        ip("-n", r1, "link", "add", "rb", "type", "veth", "peer", "name", "g1", "netns", gw)
        ip("-n", r2, "link", "add", "rb", "mtu", str(r2_gw_mtu), "type", "veth", "peer", "name", "g2", "netns", gw)
        ip("-n", gw, "link", "set", "g2", "mtu", str(r2_gw_mtu))
        for ns, dev, address in (
            (mn, "up0", "192.0.2.10/24"),
            (mn, "up1", "203.0.113.10/24"),
            (r1, "ra", "192.0.2.1/24"),
            (r2, "ra", "203.0.113.1/24"),
            (r1, "rb", "198.51.100.17/30"),
            (r2, "rb", "198.51.100.21/30"),
            (gw, "g1", "198.51.100.18/30"),
            (gw, "g2", "198.51.100.22/30"),
            (gw, "lo", f"{GATEWAY}/32"),
        ):
            ip("-n", ns, "addr", "add", address, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", mn, "route", "add", "default", "via", "192.0.2.1", "metric", "100")
        ip("-n", mn, "route", "add", "default", "via", "203.0.113.1", "metric", "200")
        ip("-n", r1, "route", "add", f"{GATEWAY}/32", "via", "198.51.100.18")
        ip("-n", r2, "route", "add", f"{GATEWAY}/32", "via", "198.51.100.22")
        ip("-n", gw, "route", "add", "192.0.2.0/24", "via", "198.51.100.17")
        ip("-n", gw, "route", "add", "203.0.113.0/24", "via", "198.51.100.21")
        for router in (r1, r2):
            _forwarding(router)
        yield mn, r1, r2, gw


# The three backends, each made inside the host's namespace --------------------------------------------------


def linux_backend() -> tuple[Backend, Callable[[], None]]:
    from m6t.platform.linux.backend import LinuxBackend

    return LinuxBackend(), lambda: None


def darwin_backend() -> tuple[Backend, Callable[[], None]]:
    from m6t.lab.emulation.darwin import EmulatedDarwin
    from m6t.platform.darwin.backend import DarwinBackend

    return DarwinBackend(EmulatedDarwin()), lambda: None


def windows_backend() -> tuple[Backend, Callable[[], None]]:
    from m6t.lab.emulation.windows import EmulatedWindows
    from m6t.platform.windows.backend import WindowsBackend

    host = EmulatedWindows()
    return WindowsBackend(host.api()), host.close


BACKENDS = {"linux": linux_backend, "darwin": darwin_backend, "windows": windows_backend}


class Echo:
    """The gateway's side: answers every datagram, remembering who sent it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seen: list[tuple[bytes, str]] = []

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sock.setblocking(False)
        loop.add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        while True:
            try:
                data, source = self.sock.recvfrom(65536)
            except BlockingIOError:
                return
            self.seen.append((data, source[0]))
            self.sock.sendto(b"re:" + data, source)


def echo_socket(gw: str) -> socket.socket:
    with inside(gw):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((str(GATEWAY), PORT))
    return sock


async def exchange(channel: UdpChannel, echo: Echo, payload: bytes) -> tuple[str, list[bytes]]:
    """Send ``payload``; (the source the gateway saw it from, what came back)."""
    received: list[bytes] = []
    evidence: list[PmtuEvidence] = []
    channel.start_reading(
        asyncio.get_running_loop(), lambda batch: received.extend(d for d, _ in batch), evidence.append
    )
    channel.send([payload])
    async with asyncio.timeout(5):
        while not received:
            await asyncio.sleep(0.02)
    channel.stop_reading()
    [source] = [source for data, source in echo.seen if data == payload]
    return source, received


async def set_link(mn: str, ifname: str, state: str) -> None:
    process = await asyncio.create_subprocess_exec("ip", "-n", mn, "link", "set", ifname, state)
    assert await process.wait() == 0


async def scenario(kind: str, mn: str, echo_sock: socket.socket) -> dict[str, Any]:
    backend, close_host = BACKENDS[kind]()
    echo = Echo(echo_sock)
    echo.start(asyncio.get_running_loop())
    monitors: dict[str | None, ConnectivityMonitor] = {
        uplink: backend.connectivity_monitor(GATEWAY, TUNNEL, uplink=uplink) for uplink in (None, "up0", "up1")
    }
    result: dict[str, Any] = {}
    try:
        result["uplinks"] = await monitors[None].uplinks()
        result["uplinks ignoring up0"] = await monitors[None].uplinks(ignore=["up0"])
        result["lookups"] = {name: await monitor.lookup() for name, monitor in monitors.items()}
        result["probes"] = {name: monitor.probe() for name, monitor in monitors.items()}
        assert all(m.uplink == name for name, m in monitors.items())

        for uplink in (None, "up1", "up0"):
            channel = backend.open_udp((GATEWAY, PORT), uplink=uplink)
            try:
                result[f"local {uplink}"] = channel.local_address[0]
                result[f"seen {uplink}"] = await exchange(channel, echo, f"via {uplink}".encode())
            finally:
                channel.close()
        try:
            backend.open_udp((GATEWAY, PORT), uplink="nosuch0")
        except Exception as exc:
            result["unknown uplink"] = type(exc).__name__

        await set_link(mn, "up1", "down")
        result["uplinks, up1 down"] = await monitors[None].uplinks()
        result["lookup up1, up1 down"] = await monitors["up1"].lookup()
        result["probe up1, up1 down"] = monitors["up1"].probe()
        result["lookup up0, up1 down"] = await monitors["up0"].lookup()

        await set_link(mn, "up1", "up")
        result["uplinks, up1 up without its route"] = await monitors[None].uplinks()
        result["probe up1, no route"] = monitors["up1"].probe()
        process = await asyncio.create_subprocess_exec(
            "ip", "-n", mn, "route", "add", "default", "via", "203.0.113.1", "metric", "200"
        )
        assert await process.wait() == 0
        await set_link(mn, "up0", "down")
        result["uplinks, up0 down"] = await monitors[None].uplinks()
        result["lookup, up0 down"] = await monitors[None].lookup()
    finally:
        for monitor in monitors.values():
            await monitor.stop()
        await backend.close()
        close_host()
    return result


@root_only
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_every_uplink_listed_looked_up_and_used(kind: str) -> None:
    def body() -> dict[str, Any]:
        sock = echo_socket(gw)
        with inside(mn):
            return asyncio.run(scenario(kind, mn, sock))

    with two_uplinks() as (mn, _r1, _r2, gw):
        result = run_forked(body, timeout=60)

    assert result["uplinks"] == (UP0, UP1), "both uplinks, the one the OS prefers first"
    assert result["uplinks ignoring up0"] == (UP1,)
    assert result["lookups"] == {None: UP0, "up0": UP0, "up1": UP1}
    probes = result["probes"]
    assert {name: (p.local_ipv4, p.interface) if p else None for name, p in probes.items()} == {
        None: (UP0.local_ipv4, "up0"),
        "up0": (UP0.local_ipv4, "up0"),
        "up1": (UP1.local_ipv4, "up1"),
    }
    # The far side sees each datagram from the bound uplink's address, and the reply comes back on the socket.
    assert result["local None"] == result["local up0"] == "192.0.2.10"
    assert result["local up1"] == "203.0.113.10"
    assert result["seen None"] == ("192.0.2.10", [b"re:via None"])
    assert result["seen up1"] == ("203.0.113.10", [b"re:via up1"])
    assert result["seen up0"] == ("192.0.2.10", [b"re:via up0"])
    assert result["unknown uplink"] == "PlatformError"
    # Down, an uplink is gone: not listed, no path through it (the other keeps answering).
    assert result["uplinks, up1 down"] == (UP0,)
    assert result["lookup up1, up1 down"] is None
    assert result["probe up1, up1 down"] is None
    assert result["lookup up0, up1 down"] == UP0
    # Up again but without its default route (the kernel dropped it with the link): an address is not a path.
    assert result["uplinks, up1 up without its route"] == (UP0,)
    assert result["probe up1, no route"] is None
    # With the preferred one down, the other is the preferred path, and the only one.
    assert result["uplinks, up0 down"] == (UP1,)
    assert result["lookup, up0 down"] == UP1


# Linux: a bound socket keeps the data path's offloads and its path MTU probes -------------------------------


@root_only
def test_a_bound_socket_batches_and_probes_the_path_through_its_uplink() -> None:
    """Through up1 the path to the gateway carries 1400 bytes (r2-gw), through up0 1500: a probe bound to up1
    draws r2's frag-needed (IP_RECVERR) and data after it still crosses (DF clear); GSO batches reach the
    gateway as separate datagrams from up1's address, and the kernel's path MTU is the bound path's."""
    from m6t.platform.linux.udp import LinuxUdpChannel

    probe = b"\x60" + bytes(47) + b"z" * 1402  # 1450 bytes: 1478 on the wire, more than the r2-gw link

    def body() -> dict[str, Any]:
        sock = echo_socket(gw)
        sock.settimeout(3)

        async def main() -> dict[str, Any]:
            out: dict[str, Any] = {}
            channel = LinuxUdpChannel((GATEWAY, PORT), uplink="up1")
            evidence: list[PmtuEvidence] = []
            channel.start_reading(asyncio.get_running_loop(), lambda batch: None, evidence.append)
            channel.send([b"g" * 1000] * 4)  # one GSO send
            out["gso sends"] = channel.stats.gso_sends
            channel.send_probe(probe)
            async with asyncio.timeout(3):
                while not evidence:
                    await asyncio.sleep(0.02)
            out["evidence"] = [(e.mtu, e.source, e.quoted == probe[: len(e.quoted)]) for e in evidence]
            channel.send([b"d" * 1450])  # DF clear: r2 fragments it, the gateway reassembles it
            await asyncio.sleep(0.1)
            out["path mtu up1"] = channel.path_mtu()
            out["oversize"] = channel.stats.oversize
            channel.close()
            other = LinuxUdpChannel((GATEWAY, PORT), uplink="up0")
            out["path mtu up0"] = other.path_mtu()
            other.close()
            return out

        with inside(mn):
            out = asyncio.run(main())
        received = []
        for _ in range(5):
            data, source = sock.recvfrom(65536)
            received.append((len(data), source[0]))
        out["received"] = received
        return out

    with two_uplinks(r2_gw_mtu=1400) as (mn, _r1, _r2, gw):
        out = run_forked(body, timeout=60)
    assert out["gso sends"] == 1
    assert out["evidence"] == [(1400, "icmp", True)]
    assert out["oversize"] == 0
    assert out["path mtu up1"] == 1400
    assert out["path mtu up0"] == 1500
    assert out["received"] == [(1000, "203.0.113.10")] * 4 + [(1450, "203.0.113.10")]


# The probe's own routing message -----------------------------------------------------------------------------


def test_route_request_layout() -> None:
    request = route_request(GATEWAY, 7, seq=9)
    # nlmsghdr: length, RTM_GETROUTE, NLM_F_REQUEST, seq, pid 0; rtmsg: AF_INET, /32, RTM_F_FIB_MATCH.
    assert request[:16] == (len(request)).to_bytes(4, "little") + bytes([26, 0, 1, 0]) + (9).to_bytes(
        4, "little"
    ) + bytes(4)
    assert request[16:28] == bytes([socket.AF_INET, 32, 0, 0, 0, 0, 0, 0]) + (0x2000).to_bytes(4, "little")
    # RTA_DST (1) with the address, RTA_OIF (4) with the index.
    assert request[28:] == bytes([8, 0, 1, 0]) + GATEWAY.packed + bytes([8, 0, 4, 0]) + (7).to_bytes(4, "little")


def _message(kind: int, seq: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 0, seq, 0) + body


def _newroute(oif: int, gateway: IPv4Address | None, metric: int | None) -> bytes:
    attrs = struct.pack("=HHi", 8, 4, oif)
    if gateway is not None:
        attrs += struct.pack("=HH", 8, 5) + gateway.packed
    if metric is not None:
        attrs += struct.pack("=HHI", 8, 6, metric)
    return bytes([socket.AF_INET, 32, 0, 0, 254, 3, 0, 1]) + struct.pack("=I", 0x2000) + attrs


@given(
    seq=st.integers(0, 2**32 - 1),
    oif=st.integers(1, 2**31 - 1),
    gateway=st.none() | st.integers(0, 2**32 - 1).map(IPv4Address),
    metric=st.none() | st.integers(0, 2**32 - 1),
    noise=st.binary(max_size=64),
)
def test_route_reply_finds_its_answer_among_others(
    seq: int, oif: int, gateway: IPv4Address | None, metric: int | None, noise: bytes
) -> None:
    other = _message(24, (seq + 1) % 2**32, _newroute(oif + 1, None, 1))
    answer = _message(24, seq, _newroute(oif, gateway, metric))
    assert route_reply(other + answer, seq) == RouteReply(oif=oif, gateway=gateway, metric=metric)
    # The kernel's refusal comes as an NLMSG_ERROR carrying -errno.
    assert route_reply(other + _message(2, seq, struct.pack("=i", -113) + bytes(16)), seq) == 113
    assert route_reply(other, seq) is None
    route_reply(noise, seq)  # never raises on what it does not understand


@given(st.binary(max_size=256), st.integers(0, 2**32 - 1))
def test_route_reply_never_raises(data: bytes, seq: int) -> None:
    answer = route_reply(data, seq)
    assert answer is None or isinstance(answer, (int, RouteReply))
