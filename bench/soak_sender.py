"""The soak suite's attackers, run inside a lab namespace: spoofed and fuzzed m6t datagrams, bounded.

    python -m bench.soak_sender spoof --target 198.51.100.2:3544 --victim fd6d:... --home-agent fd00:ab::1 \
        --count 5000 --duration 5 [--raw-source 198.51.100.11 --avoid-port 40123]
    python -m bench.soak_sender fuzz --target 198.51.100.2:3544 --prefix fd6d:3674:a1b2::/48 \
        --home-agent fd00:ab::1 --count 20000 --duration 5 [--victim ADDR] [--raw-source IP:PORT] [--seed 1]

``spoof`` sends packets whose IPv6 source is the victim MN's address (echo requests to the HA and
keepalives): from this host's own sockets on many ports, then listens for anything coming back (a hijack
would show as replies here); with ``--raw-source``, also with the victim's *public IPv4 address* as the
outer source and other ports (raw IPv4, nothing comes back here: the binding must just not move).

``fuzz`` sends datagrams that are random, or valid m6t packets with random fields, or valid ones mutated
(flipped bytes, cut, extended); with ``--victim`` a share of them is addressed to that MN (to fuzz the
client through the gateway's or a spoofed path); with ``--raw-source IP:PORT`` they leave with that outer
source (raw IPv4), e.g. the gateway's, so that a NAT lets them through to the client.

Both stop at the count, the duration or a signal; one JSON line on stdout at the end.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

from m6t.protocol import KEEPALIVE_PEER, build_echo_request, build_ipv6_header, build_keepalive

MAX_COUNT = 5_000_000
MAX_DURATION = 600.0
SPOOF_SOCKETS = 32
LISTEN_AFTER = 1.0


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return str(ipaddress.IPv4Address(host)), int(port)


class RawSender:
    """UDP datagrams with an outer IPv4 source of our choosing (IP_HDRINCL); UDP checksum 0, as IPv4 allows."""

    def __init__(self, source: str) -> None:
        self.source = socket.inet_aton(source)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

    def send(self, payload: bytes, sport: int, destination: tuple[str, int]) -> None:
        udp = struct.pack("!HHHH", sport, destination[1], 8 + len(payload), 0)
        # Total length, identification and checksum are filled in by the kernel for IP_HDRINCL sockets.
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, 17, 0, self.source, socket.inet_aton(destination[0]))
        self.sock.sendto(ip + udp + payload, (destination[0], 0))

    def close(self) -> None:
        self.sock.close()


def _stop_flag() -> Callable[[], bool]:
    stopping = [False]

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return lambda: stopping[0]


def spoof(args: argparse.Namespace) -> dict[str, object]:
    target = _endpoint(args.target)
    victim = ipaddress.IPv6Address(args.victim).packed
    home_agent = ipaddress.IPv6Address(args.home_agent).packed
    packets = [build_echo_request(victim, home_agent, 0x5350, seq, data=b"spoofed") for seq in range(16)]
    packets.append(build_keepalive(victim))
    stopped = _stop_flag()
    sockets = []
    for _ in range(SPOOF_SOCKETS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", 0))
        sock.setblocking(False)
        sockets.append(sock)
    raw = RawSender(args.raw_source) if args.raw_source else None
    rng = random.Random(args.seed)
    sent = errors = 0
    started = time.monotonic()
    for index in range(args.count):
        if stopped() or time.monotonic() - started >= args.duration:
            break
        packet = packets[index % len(packets)]
        try:
            if raw is not None and index % 2:
                port = rng.randrange(1024, 65536)
                if port == args.avoid_port:
                    port = port + 1 if port < 65535 else 1024
                raw.send(packet, port, target)
            else:
                sockets[index % len(sockets)].sendto(packet, target)
        except OSError:
            errors += 1
        sent += 1
        if index % 500 == 499:
            time.sleep(0.001)  # paced: a spoofer, not a flood
    received: list[str] = []
    deadline = time.monotonic() + LISTEN_AFTER
    for _ in range(10_000):
        left = deadline - time.monotonic()
        if left <= 0 or stopped():
            break
        ready, _, _ = select.select(sockets, [], [], left)
        for sock in ready:
            for _ in range(256):
                try:
                    data, source = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                received.append(f"{source[0]}:{source[1]} {len(data)} bytes")
    for sock in sockets:
        sock.close()
    if raw is not None:
        raw.close()
    return {"sent": sent, "errors": errors, "received": len(received), "received_samples": received[:5]}


def fuzzed(rng: random.Random, prefix: ipaddress.IPv6Network, home_agent: bytes, victim: bytes | None) -> bytes:
    """One datagram: random, a valid m6t packet with random fields, or a valid one damaged."""

    def in_prefix() -> bytes:
        host_bits = 128 - prefix.prefixlen
        return (int(prefix.network_address) | rng.getrandbits(host_bits)).to_bytes(16, "big")

    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.choice((0, 1, 39, 40, 41, rng.randrange(0, 1500))))
    src = victim if victim is not None and rng.random() < 0.2 else in_prefix()
    dst = rng.choice((home_agent, KEEPALIVE_PEER, victim or home_agent, rng.randbytes(16)))
    if victim is not None and rng.random() < 0.5:
        # Toward the client: what the gateway would forward to the MN.
        src, dst = rng.choice((home_agent, KEEPALIVE_PEER, rng.randbytes(16))), victim
    if kind == 1:
        payload = rng.randbytes(rng.randrange(0, 200))
        length = len(payload) if rng.random() < 0.7 else rng.randrange(0, 65536)
        return (
            build_ipv6_header(src, dst, rng.choice((58, 59, 17, 6, 0, 44, 43, 60, rng.randrange(256))), length)
            + payload
        )
    if kind == 2:
        packet = bytearray(
            build_echo_request(
                src, dst, rng.randrange(65536), rng.randrange(65536), data=rng.randbytes(rng.randrange(64))
            )
        )
        for _ in range(rng.randrange(1, 6)):
            packet[rng.randrange(len(packet))] = rng.randrange(256)
        if rng.random() < 0.3:
            del packet[rng.randrange(len(packet)) :]
        elif rng.random() < 0.3:
            packet += rng.randbytes(rng.randrange(1, 100))
        return bytes(packet)
    keepalive = bytearray(build_keepalive(src))
    if rng.random() < 0.5:
        keepalive[rng.randrange(len(keepalive))] = rng.randrange(256)
    return bytes(keepalive)


def fuzz(args: argparse.Namespace) -> dict[str, object]:
    target = _endpoint(args.target)
    prefix = ipaddress.IPv6Network(args.prefix)
    home_agent = ipaddress.IPv6Address(args.home_agent).packed
    victim = ipaddress.IPv6Address(args.victim).packed if args.victim else None
    stopped = _stop_flag()
    rng = random.Random(args.seed)
    raw: RawSender | None = None
    raw_port = 0
    sock: socket.socket | None = None
    if args.raw_source:
        raw_ip, raw_port = _endpoint(args.raw_source)
        raw = RawSender(raw_ip)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = errors = 0
    started = time.monotonic()
    for index in range(args.count):
        if stopped() or time.monotonic() - started >= args.duration:
            break
        datagram = fuzzed(rng, prefix, home_agent, victim)
        try:
            if raw is not None:
                raw.send(datagram, raw_port, target)
            else:
                assert sock is not None
                sock.sendto(datagram, target)
        except OSError:
            errors += 1
        sent += 1
        if index % 2000 == 1999:
            time.sleep(0.001)
    seconds = time.monotonic() - started
    if raw is not None:
        raw.close()
    if sock is not None:
        sock.close()
    return {"sent": sent, "errors": errors, "seconds": round(seconds, 3), "rate": round(sent / max(seconds, 1e-6), 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_sender")
    modes = parser.add_subparsers(dest="mode", required=True)
    for name in ("spoof", "fuzz"):
        mode = modes.add_parser(name)
        mode.add_argument("--target", required=True, help="IPv4:PORT the datagrams go to")
        mode.add_argument("--home-agent", required=True)
        mode.add_argument("--count", type=int, default=1000)
        mode.add_argument("--duration", type=float, default=5.0)
        mode.add_argument("--seed", type=int, default=None)
        mode.add_argument("--raw-source", default=None, help="outer IPv4 source (spoof) or IPv4:PORT (fuzz)")
    spoof_mode = modes.choices["spoof"]
    spoof_mode.add_argument("--victim", required=True, help="the MN's tunnel address to impersonate")
    spoof_mode.add_argument("--avoid-port", type=int, default=0, help="the victim's real public port")
    fuzz_mode = modes.choices["fuzz"]
    fuzz_mode.add_argument("--prefix", required=True)
    fuzz_mode.add_argument("--victim", default=None, help="an MN address to aim part of the datagrams at")
    args = parser.parse_args(argv)
    args.count = max(0, min(MAX_COUNT, args.count))
    args.duration = max(0.1, min(MAX_DURATION, args.duration))
    summary = spoof(args) if args.mode == "spoof" else fuzz(args)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
