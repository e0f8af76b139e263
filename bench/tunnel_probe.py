"""An ICMPv6 echo prober with exact timestamps, run inside the MN's namespace by the m6t measurements.

    python -m bench.tunnel_probe --target fd00:ab::1 --interval 0.005 --duration 30

Prints one line per event on stdout, times from CLOCK_MONOTONIC (shared by every namespace, so the caller
can compare them with its own time.monotonic()):

    S <seq> <sent>                an echo request went out
    R <seq> <sent> <received>     its reply came back
    X <seq> <sent> <errno>        the send itself failed (no route or no address during a reattach)
    E <sent count>                the end (duration over, or SIGTERM/SIGINT)

The socket is never bound: every request takes the source address the kernel picks at that moment, as
an application's packets would while the tunnel address changes under it.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from types import FrameType

ECHO_REQUEST = 128
ECHO_REPLY = 129
# Below 2**16, so that a sequence number names one probe.
MAX_PROBES = 65_000


def main(argv: Sequence[str] | None = None) -> int:
    """Send echo requests until the duration or the probe budget is used up, or a signal arrives."""
    parser = argparse.ArgumentParser(prog="python -m bench.tunnel_probe")
    parser.add_argument("--target", required=True)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    interval = max(0.001, float(args.interval))
    duration = min(600.0, float(args.duration))
    limit = min(MAX_PROBES, int(duration / interval) + 1)

    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ident = os.getpid() & 0xFFFF
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setblocking(False)
    sent_at: dict[int, float] = {}
    out = sys.stdout
    started = time.monotonic()
    next_send = started
    seq = 0
    while not stopping and time.monotonic() - started < duration + 1.0:
        now = time.monotonic()
        if seq < limit and now >= next_send and now - started < duration:
            seq += 1
            # The kernel fills in the ICMPv6 checksum of raw ICMPv6 sockets.
            packet = struct.pack("!BBHHHd", ECHO_REQUEST, 0, 0, ident, seq, now)
            try:
                sock.sendto(packet, (args.target, 0))
                sent_at[seq] = now
                out.write(f"S {seq} {now:.6f}\n")
            except OSError as exc:
                out.write(f"X {seq} {now:.6f} {exc.errno}\n")
            out.flush()
            next_send += interval
            if next_send < now:
                # Fell behind (a stall): keep the rate, do not burst to catch up.
                next_send = now + interval
        wait = max(0.0, min(next_send - time.monotonic(), 0.05))
        try:
            readable, _, _ = select.select([sock], [], [], wait)
        except InterruptedError:
            continue
        if not readable:
            continue
        for _ in range(256):
            try:
                data = sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                break
            received = time.monotonic()
            if len(data) < 8:
                continue
            kind, _code, _sum, rid, rseq = struct.unpack("!BBHHH", data[:8])
            if kind != ECHO_REPLY or rid != ident or rseq not in sent_at:
                continue
            sent = sent_at.pop(rseq)
            out.write(f"R {rseq} {sent:.6f} {received:.6f}\n")
        out.flush()
    out.write(f"E {seq}\n")
    out.flush()
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
