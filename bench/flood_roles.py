"""The programs bench.flood_gateway runs inside the lab's namespaces: an attacker flooding new sources, an
established mobile node pinging its Home Agent, and new mobile nodes asking for states.

    python -m bench.flood_roles flood --gateway 198.51.100.2 --port 3544 --duration 6 [--bind A,B,...]
    python -m bench.flood_roles mn --gateway 198.51.100.2 --port 3544 --duration 12 --interval 0.01
    python -m bench.flood_roles newmn --gateway 198.51.100.2 --port 3544 --duration 6 --rate 5

Every datagram carries an ICMPv6 echo request to the Home Agent, so the Home Agent answers whatever the
gateway lets through.  The flood gives each datagram a source of its own inside the m6t prefix, with a
valid checksum and no arithmetic per packet: the last 32 bits of the source count up and the echo's
identifier and sequence number carry their one's complement, so the checksum never changes.  Every loop
is bounded in count and in time; each program prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from m6t.protocol import build_echo_request, parse_echo_reply

PREFIX = ipaddress.IPv6Network("fd6d:3674:a1b2::/48")
HA = ipaddress.IPv6Address("fd00:ab::1")
MAX_DURATION = 120.0
MAX_PACKETS = 100_000_000
BATCH = 512
_WORD = struct.Struct("!I")

_stop_requested = threading.Event()


def _stop(_signum: int, _frame: FrameType | None) -> None:
    _stop_requested.set()


def _address(mn_id: int, suffix: int) -> ipaddress.IPv6Address:
    """An address of the /80 ``fd6d:3674:a1b2:0:<mn_id>::/80``."""
    return ipaddress.IPv6Address(int(PREFIX.network_address) | (mn_id & 0xFFFF) << 48 | suffix)


def flood(gateway: str, port: int, duration: float, count: int, bind: Sequence[str]) -> dict[str, object]:
    """New-source echo requests as fast as this process can send them, from the given local addresses in turn."""
    middle = int.from_bytes(os.urandom(6), "big")
    # Bits 48..95 random per process (unique sources across senders), 96..127 counted below.
    base = _address(0, 0).packed[:6] + middle.to_bytes(6, "big") + bytes(4)
    template = bytearray(build_echo_request(base, HA.packed, 0xFFFF, 0xFFFF))
    sockets = []
    for address in bind or ("0.0.0.0",):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, 0))
        # Connected: the kernel keeps the route and Python parses no address per datagram.
        sock.connect((gateway, port))
        sockets.append(sock)
    pack = _WORD.pack_into
    senders = [sock.send for sock in sockets]
    nsockets = len(senders)
    send = senders[0]
    sent = errors = 0
    counter = 1
    started = time.monotonic()
    deadline = started + duration
    while not _stop_requested.is_set() and sent < count and time.monotonic() < deadline:
        for _ in range(min(BATCH, count - sent)):
            pack(template, 20, counter)
            pack(template, 44, counter ^ 0xFFFFFFFF)
            if nsockets > 1:
                send = senders[counter % nsockets]
            try:
                send(template)
            except OSError:
                errors += 1
            counter += 1
        sent = counter - 1
    seconds = time.monotonic() - started
    for sock in sockets:
        sock.close()
    return {"sent": sent, "errors": errors, "seconds": round(seconds, 3), "sources": nsockets}


def mn(gateway: str, port: int, duration: float, interval: float, local_port: int, mn_id: int) -> dict[str, object]:
    """An established mobile node: one address, one port, an echo every ``interval``; stamps of both ends."""
    src = _address(mn_id, 0x10)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", local_port))
    sock.setblocking(False)
    destination = (gateway, port)
    sent: dict[int, float] = {}
    replies: dict[int, float] = {}
    started = time.monotonic()
    deadline = started + duration
    next_send = started
    seq = 0
    # Printed as soon as the first reply arrives, so the harness knows the state is active.
    announced = False
    while not _stop_requested.is_set() and time.monotonic() < deadline and seq < 65536:
        now = time.monotonic()
        if now >= next_send:
            sock.sendto(build_echo_request(src.packed, HA.packed, 0x4D36, seq), destination)
            sent[seq] = now
            seq += 1
            next_send += interval
        ready, _, _ = select.select([sock], [], [], max(0.0, min(next_send, deadline) - time.monotonic()))
        if not ready:
            continue
        for _ in range(256):
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                break
            try:
                reply = parse_echo_reply(data)
            except ValueError:
                continue
            if reply.dst == src.packed and reply.seq not in replies:
                replies[reply.seq] = time.monotonic()
                if not announced:
                    announced = True
                    print("ACTIVE", flush=True)
    sock.close()
    return {"sent": sent, "replies": replies}


def newmn(gateway: str, port: int, duration: float, rate: float, wait: float) -> dict[str, object]:
    """New mobile nodes from this host's address, ``rate`` a second: each one address and port of its own."""
    destination = (gateway, port)
    pending: dict[socket.socket, tuple[ipaddress.IPv6Address, float]] = {}
    attempts = 0
    latencies: list[float] = []
    started = time.monotonic()
    deadline = started + duration
    next_start = started
    mn_id = 0x300
    # A fresh run of addresses each time: one of an earlier run is still bound to that run's ports.
    base = int.from_bytes(os.urandom(4), "big") << 16
    for _ in range(10_000_000):
        now = time.monotonic()
        if _stop_requested.is_set() or now >= deadline + wait or (now >= deadline and not pending):
            break
        if now >= next_start and now < deadline and attempts < 100_000:
            src = _address(mn_id, base + attempts + 1)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("0.0.0.0", 0))
            sock.setblocking(False)
            sock.sendto(build_echo_request(src.packed, HA.packed, 0x4D36, 1), destination)
            pending[sock] = (src, now)
            attempts += 1
            next_start += 1.0 / rate
        for sock, (_src, at) in list(pending.items()):
            if now - at > wait:
                sock.close()
                del pending[sock]
        timeout = max(0.0, min(next_start, deadline + wait) - time.monotonic())
        if not pending:
            time.sleep(timeout)
            continue
        ready, _, _ = select.select(list(pending), [], [], timeout)
        for sock in ready:
            src, at = pending.pop(sock)
            try:
                reply = parse_echo_reply(sock.recv(2048))
                if reply.dst == src.packed:
                    latencies.append(time.monotonic() - at)
            except (OSError, ValueError):
                pass
            sock.close()
    for sock in pending:
        sock.close()
    return {"attempts": attempts, "states": len(latencies), "latencies": latencies}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flood_roles")
    parser.add_argument("role", choices=("flood", "mn", "newmn"))
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--count", type=int, default=MAX_PACKETS, help="flood: datagrams at most")
    parser.add_argument("--bind", default="", help="flood: local IPv4 addresses to send from, comma-separated")
    parser.add_argument("--interval", type=float, default=0.01, help="mn: seconds between echoes")
    parser.add_argument("--local-port", type=int, default=41000, help="mn: the UDP port it sends from")
    parser.add_argument("--mn-id", type=int, default=1, help="mn: which /80 of the prefix")
    parser.add_argument("--rate", type=float, default=5.0, help="newmn: new mobile nodes per second")
    parser.add_argument("--wait", type=float, default=1.0, help="newmn: seconds to wait for each one's reply")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    duration = max(0.1, min(MAX_DURATION, args.duration))
    if args.role == "flood":
        bind = [a for a in args.bind.split(",") if a]
        result = flood(args.gateway, args.port, duration, max(1, min(MAX_PACKETS, args.count)), bind)
    elif args.role == "mn":
        result = mn(args.gateway, args.port, duration, max(0.001, args.interval), args.local_port, args.mn_id)
    else:
        result = newmn(args.gateway, args.port, duration, max(0.1, min(1000.0, args.rate)), max(0.1, args.wait))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
