"""Gateway core throughput: state lookups per second at a million states, and packets per second through
the sans-I/O core each way, against baselines measured in the same run.

    python -m bench.gateway_core [--states N] [--packets N]

Baselines: a plain ``dict[int, int]`` and a ``dict[bytes, tuple]`` lookup for the table; for forwarding,
the same loop calling a function that does nothing, i.e. the floor any Python per-packet path pays.
Times are the process's CPU time (best of three), so that other load on the machine inflates them less.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network
from typing import Final

from m6t.gateway.core import CoreSettings, GatewayCore
from m6t.gateway.states import StateTable, pack_endpoint
from m6t.protocol import build_echo_request

BASE: Final = int(IPv6Address("fd6d:3674:a1b2:0:1::"))
HA: Final = IPv6Address("fd00:ab::1")
BATCH: Final = 256


def _best_of(runs: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(runs))


def bench_lookups(n: int, lookups: int) -> None:
    rng = random.Random(1)
    keys = [BASE | rng.getrandbits(48) for _ in range(n)]
    table = StateTable(16_384, 0)
    plain: dict[int, int] = {}
    by_bytes: dict[bytes, tuple[int, int, int, bool, float]] = {}
    for i, key in enumerate(keys):
        table.add_temporary(key, pack_endpoint(0xC6336400 + (i & 0xFF), 1024 + i % 60000, 0), 100 + i % 1000)
        plain[key] = i
        by_bytes[key.to_bytes(16, "big")] = (0xC6336400, 1024, 0, False, 1.0)
    probe = [keys[rng.randrange(n)] for _ in range(lookups)]
    probe_bytes = [k.to_bytes(16, "big") for k in probe]
    shards, nshards = table.shards, table.nshards

    def ours() -> float:
        start = time.process_time()
        for key in probe:
            shards[key % nshards].get(key)
        return time.process_time() - start

    def dict_int() -> float:
        get = plain.get
        start = time.process_time()
        for key in probe:
            get(key)
        return time.process_time() - start

    def dict_bytes() -> float:
        get = by_bytes.get
        start = time.process_time()
        for key in probe_bytes:
            get(key)
        return time.process_time() - start

    t_ours, t_int, t_bytes = _best_of(3, ours), _best_of(3, dict_int), _best_of(3, dict_bytes)
    print(f"state lookups at {n:,} states ({lookups:,} random hits, best of 3)")
    print(f"  m6t sharded table:            {lookups / t_ours / 1e6:6.2f} M lookups/s")
    for label, t in (("dict[int, int]", t_int), ("dict[bytes, tuple]", t_bytes)):
        print(f"  baseline {label + ':':20s} {lookups / t / 1e6:6.2f} M lookups/s (ours: {t_ours / t:.2f}x its time)")


def bench_forwarding(mns: int, packets: int) -> None:
    settings = CoreSettings(
        prefixes=(IPv6Network("fd6d:3674:a1b2::/48"),),
        home_agents=(HA,),
        max_temporary=mns,
        max_states=mns * 2,
        new_states_per_ipv4_per_s=1e9,
        new_states_per_ipv4_burst=mns,
    )
    now = 1000.0
    core = GatewayCore(settings, now)
    rng = random.Random(2)
    sources = [IPv6Address(BASE | rng.getrandbits(48)) for _ in range(mns)]
    endpoints = [(0xC6336400 + (i & 0xFF), 1024 + i, i & 1) for i in range(mns)]
    up = [build_echo_request(s.packed, HA.packed, 1, 1, data=bytes(1200)) for s in sources]
    down = [build_echo_request(HA.packed, s.packed, 1, 1, data=bytes(1200)) for s in sources]
    for packet, (ipv4, port, sock) in zip(up, endpoints, strict=True):
        core.datagram_from_mn(packet, ipv4, port, sock, now)
    for packet in down:
        core.packet_from_ha(packet, now)
    core.take_outputs()
    assert core.active_states == mns

    order = [rng.randrange(mns) for _ in range(packets)]
    up_stream = [(up[i], *endpoints[i]) for i in order]
    down_stream = [down[i] for i in order]

    def run_up(fn: Callable[[bytes, int, int, int, float], object]) -> float:
        to_ha = core.to_ha
        start = time.process_time()
        for offset in range(0, packets, BATCH):
            for packet, ipv4, port, sock in up_stream[offset : offset + BATCH]:
                fn(packet, ipv4, port, sock, now)
            to_ha.clear()
        return time.process_time() - start

    def run_down(fn: Callable[[bytes, float], object]) -> float:
        to_mn = core.to_mn
        start = time.process_time()
        for offset in range(0, packets, BATCH):
            for packet in down_stream[offset : offset + BATCH]:
                fn(packet, now)
            to_mn.clear()
        return time.process_time() - start

    def nothing_up(packet: bytes, ipv4: int, port: int, sock: int, now: float) -> None:
        return None

    def nothing_down(packet: bytes, now: float) -> None:
        return None

    t_up = _best_of(3, lambda: run_up(core.datagram_from_mn))
    t_down = _best_of(3, lambda: run_down(core.packet_from_ha))
    t_up0 = _best_of(3, lambda: run_up(nothing_up))
    t_down0 = _best_of(3, lambda: run_down(nothing_down))
    assert core.counters[2] >= packets and core.counters[6] >= packets
    print(f"forwarding through the core ({mns:,} active MNs, {packets:,} packets of 1248 B, batches of {BATCH})")
    print(
        f"  MN -> HA: {packets / t_up / 1e3:7.0f} kpps ({t_up / packets * 1e9:4.0f} ns/packet); "
        f"empty-call loop {packets / t_up0 / 1e3:6.0f} kpps ({t_up0 / packets * 1e9:3.0f} ns)"
    )
    print(
        f"  HA -> MN: {packets / t_down / 1e3:7.0f} kpps ({t_down / packets * 1e9:4.0f} ns/packet); "
        f"empty-call loop {packets / t_down0 / 1e3:6.0f} kpps ({t_down0 / packets * 1e9:3.0f} ns)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=1_000_000, help="table size for the lookup figure")
    parser.add_argument("--packets", type=int, default=500_000, help="packets per forwarding run")
    parser.add_argument("--mns", type=int, default=10_000, help="active mobile nodes for the forwarding figure")
    args = parser.parse_args()
    bench_lookups(args.states, 1_000_000)
    print()
    bench_forwarding(args.mns, args.packets)


if __name__ == "__main__":
    main()
