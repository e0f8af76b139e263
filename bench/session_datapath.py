"""Client session throughput: packets per second through the sans-I/O session's data-path entry points
(``Session.tun_packets`` and ``Session.udp_datagrams``), against a baseline measured in the same run.

    python -m bench.session_datapath [--packets N] [--batch N]

Each direction runs batches of 1400-byte packets (what the driver hands over in one wakeup), plain ones and
merged ones (a :class:`~m6t.protocol.values.MergedPacket` standing for 10 segments, as a backend with
offloads makes them).  Baseline: the same loop calling a function that only walks the batch, i.e. the floor
any per-packet Python path pays.  Times are the process's CPU time (best of five), so that other load on
the machine inflates them less.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Final, TypeVar

from m6t.client.session import Session, SessionSettings
from m6t.protocol.ipv6 import build_ipv6_header
from m6t.protocol.values import Attachment, MergedPacket

GATEWAY: Final = IPv4Address("198.51.100.2")
PORT: Final = 3544
HA: Final = IPv6Address("fd00:ab::1")
SIZE: Final = 1400
SEGMENTS: Final = 10

T = TypeVar("T")


def connected_session() -> tuple[Session, IPv6Address]:
    """A session with an address, a socket and a confirmed binding, as after a successful connect."""
    settings = SessionSettings(prefix=IPv6Network("fd6d:3674:a1b2:0:1::/80"), ports=(PORT,), keepalive_interval=1e9)
    session = Session(settings)
    session.up(0.0)
    session.set_gateway(GATEWAY, 0.0)
    session.attach(Attachment(IPv4Address("192.0.2.10"), "eth0"), 0.0)
    session.socket_opened(("192.0.2.10", 40000), 0.0)
    address = session.address
    assert address is not None
    session.pop_effects()
    session.pop_events()
    return session, address


def packet(src: IPv6Address, dst: IPv6Address, size: int) -> bytes:
    payload = bytes(size - 40)
    return build_ipv6_header(src.packed, dst.packed, 17, len(payload)) + payload


def merged(src: IPv6Address, dst: IPv6Address) -> MergedPacket:
    one = packet(src, dst, 40 + 8 + SEGMENTS * (SIZE - 48))
    result = MergedPacket(one)
    result.segments = SEGMENTS
    result.overhead = 48
    return result


def _best_of(runs: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(runs))


def _timed(batches: Sequence[Sequence[T]], fn: Callable[[Sequence[T], float], object]) -> float:
    start = time.process_time()
    for batch in batches:
        fn(batch, 1.0)
    return time.process_time() - start


def _walk(batch: Sequence[object], now: float) -> None:
    for _ in batch:
        pass


def bench(packets: int, batch: int) -> None:
    session, me = connected_session()
    peer = (str(GATEWAY), PORT)
    rounds = max(1, packets // batch)
    up_plain = [packet(me, HA, SIZE)] * batch
    up_merged = [merged(me, HA)] * batch
    down_plain = [(packet(HA, me, SIZE), peer)] * batch
    down_merged = [(merged(HA, me), peer)] * batch
    total = rounds * batch
    print(f"client session data path ({total:,} packets per run, batches of {batch}, best of 5)")
    floor = _best_of(5, lambda: _timed([up_plain] * rounds, _walk))
    rows: list[tuple[str, Callable[[], float]]] = [
        ("TUN -> UDP, plain", lambda: _timed([up_plain] * rounds, session.tun_packets)),
        ("TUN -> UDP, merged", lambda: _timed([up_merged] * rounds, session.tun_packets)),
        ("UDP -> TUN, plain", lambda: _timed([down_plain] * rounds, session.udp_datagrams)),
        ("UDP -> TUN, merged", lambda: _timed([down_merged] * rounds, session.udp_datagrams)),
    ]
    for label, run in rows:
        t = _best_of(5, run)
        session.pop_effects()
        session.pop_events()
        print(f"  {label + ':':20s} {total / t / 1e3:7.0f} kpps ({t / total * 1e9:4.0f} ns/packet)")
    print(f"  baseline, walking the batch: {floor / total * 1e9:4.0f} ns/packet")
    counters = session.counters
    assert counters.tx_packets >= 2 * total and counters.rx_packets >= 2 * total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=500_000, help="packets per run")
    parser.add_argument("--batch", type=int, default=64, help="packets per call (one driver wakeup)")
    args = parser.parse_args()
    bench(args.packets, args.batch)


if __name__ == "__main__":
    main()
