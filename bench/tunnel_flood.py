"""A bounded flood of m6t packets from one IPv4 address, each from a new IPv6 source, toward the gateway.

    python -m bench.tunnel_flood --gateway 198.51.100.2 --port 3544 --prefix fd6d:3674:a1b2::/48 \
        --home-agent fd00:ab::1 --rate 20000 --duration 8

Every datagram carries a well-formed ICMPv6 echo request to the Home Agent from a random address inside
the m6t prefix: the worst case for the gateway's new-state defences (draft 6.1.3), since the Home Agent
answers whatever gets through and would turn those temporary states into active ones. Run inside a lab
namespace only. Prints a JSON summary on stdout at the end.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from types import FrameType

MAX_RATE = 200_000
MAX_DURATION = 60.0
ICMPV6 = 58
ECHO_REQUEST = 128
ECHO_PAYLOAD = b"m6tflood"


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def main(argv: Sequence[str] | None = None) -> int:
    """Send the flood; stop at the count, the duration or a signal, whichever comes first."""
    parser = argparse.ArgumentParser(prog="python -m bench.tunnel_flood")
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--home-agent", required=True)
    parser.add_argument("--rate", type=int, default=20_000, help="datagrams per second (cap)")
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args(argv)
    rate = max(1, min(MAX_RATE, int(args.rate)))
    duration = max(0.1, min(MAX_DURATION, float(args.duration)))
    budget = int(rate * duration)
    prefix = ipaddress.IPv6Network(args.prefix)
    if prefix.prefixlen > 64:
        parser.error("the prefix must leave at least 64 bits to randomise")
    home_agent = ipaddress.IPv6Address(args.home_agent).packed
    host_bits = 128 - prefix.prefixlen
    base = int(prefix.network_address)
    icmp_len = 8 + len(ECHO_PAYLOAD)
    # Checksum words that never change: the destination, the upper-layer length and next header of the
    # pseudo-header, the type/code word and the payload; only the source and the sequence number vary.
    constant = sum(struct.unpack("!8H", home_agent)) + icmp_len + ICMPV6 + (ECHO_REQUEST << 8)
    constant += sum(struct.unpack(f"!{len(ECHO_PAYLOAD) // 2}H", ECHO_PAYLOAD)) + 0x6D36
    header_tail = struct.pack("!HBB", icmp_len, ICMPV6, 64)

    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    destination = (args.gateway, args.port)
    rng = random.Random()
    sent = errors = 0
    started = time.monotonic()
    while not stopping and sent < budget:
        elapsed = time.monotonic() - started
        if elapsed >= duration:
            break
        due = min(budget, int(elapsed * rate) + 1) - sent
        if due <= 0:
            time.sleep(0.0005)
            continue
        for _ in range(min(due, 1000)):
            source = (base | rng.getrandbits(host_bits)).to_bytes(16, "big")
            seq = sent & 0xFFFF
            checksum = ~_fold(constant + sum(struct.unpack("!8H", source)) + seq) & 0xFFFF
            icmp = struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum, 0x6D36, seq) + ECHO_PAYLOAD
            packet = b"\x60\x00\x00\x00" + header_tail + source + home_agent + icmp
            try:
                sock.sendto(packet, destination)
            except OSError:
                errors += 1
            sent += 1
    seconds = time.monotonic() - started
    sock.close()
    summary = {"sent": sent, "errors": errors, "seconds": round(seconds, 3), "rate": round(sent / seconds, 1)}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
