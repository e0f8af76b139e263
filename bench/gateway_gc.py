"""Garbage-collection pauses of the gateway's state table at a million states.

    python -m bench.gateway_gc [--states N]

Figures, each with the baseline it replaces, measured in the same run:

* a million states all expiring in the same tick (the worst case: one wheel slot holds them all),
  collected in the driver's time-bounded slices (:func:`m6t.gateway.scheduling.collect_for`): the worst
  slice is the longest the data path can be held up; wall clock and the thread's CPU time are both shown,
  as a busy machine preempts the process in the middle of a slice;
  baseline: one full scan of a million-entry dict, what a scan-per-tick collector pays every tick;
* a GC tick with a million live states of which none is due; same baseline;
* the longest single insertion while the table grows to a million states: the sharded table against
  one dict, whose growth step rebuilds the whole table at once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from ipaddress import IPv6Address, IPv6Network
from typing import Final

import psutil

from m6t.gateway.core import DEFAULT_GC_BUDGET, CoreSettings, GatewayCore
from m6t.gateway.scheduling import CHUNK, SLICE_LIMIT_S, collect_for
from m6t.gateway.states import StateTable, pack_endpoint

BASE: Final = 0xFD6D3674A1B2_0000_0001 << 48
MASK48: Final = (1 << 48) - 1
GOLDEN: Final = 0x9E3779B97F4A7C15
ENDPOINT: Final = pack_endpoint(0xC6336407, 40000, 0)
SLOTS: Final = 16_384
PAUSE_LIMIT_MS: Final = 10.0


def _key(i: int) -> int:
    return BASE | ((i * GOLDEN) & MASK48)


def _naive_scan(n: int) -> float:
    plain = {_key(i): (ENDPOINT, 50) for i in range(n)}
    start = time.perf_counter()
    expired = [key for key, (_, deadline) in plain.items() if deadline <= 10]
    elapsed = time.perf_counter() - start
    assert not expired
    return elapsed


def bench_mass_expiry(n: int) -> tuple[list[float], list[float]]:
    settings = CoreSettings(prefixes=(IPv6Network("fd6d:3674:a1b2::/48"),), home_agents=(IPv6Address("fd00:ab::1"),))
    core = GatewayCore(settings, 0.0)
    for i in range(n):
        core.table.add_temporary(_key(i), ENDPOINT, 50)
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(n // CHUNK + 100):
        wall, cpu = time.perf_counter(), time.thread_time()
        done = collect_for(core, 1.0)
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
        if done:
            break
    assert len(core.table) == 0 and core.table.expired_temporary == n
    return walls, cpus


def bench_idle_tick(n: int) -> float:
    table = StateTable(SLOTS, 0)
    for i in range(n):
        table.add_temporary(_key(i), ENDPOINT, 10_000 + i % 1000)
    ticks = 2000
    start = time.perf_counter()
    for tick in range(1, ticks + 1):
        table.collect(tick, DEFAULT_GC_BUDGET)
    elapsed = time.perf_counter() - start
    assert table.gc_visited == 0
    return elapsed / ticks


def bench_growth(n: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Worst single insertion (wall, CPU) for the sharded table and for one dict."""
    clock, cpu = time.perf_counter, time.thread_time
    table = StateTable(SLOTS, 0)
    wall_worst = cpu_worst = 0.0
    for i in range(n):
        key = _key(i)
        wall0, cpu0 = clock(), cpu()
        # Deadlines spread over two minutes, as on a live gateway.
        table.add_temporary(key, ENDPOINT, 50 + i % 12_000)
        wall_worst, cpu_worst = max(wall_worst, clock() - wall0), max(cpu_worst, cpu() - cpu0)
    sharded = (wall_worst, cpu_worst)
    del table
    single: dict[int, int] = {}
    wall_worst = cpu_worst = 0.0
    for i in range(n):
        key = _key(i)
        wall0, cpu0 = clock(), cpu()
        single[key] = ENDPOINT
        wall_worst, cpu_worst = max(wall_worst, clock() - wall0), max(cpu_worst, cpu() - cpu0)
    return sharded, (wall_worst, cpu_worst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.states

    scan = _naive_scan(n)
    walls, cpus = bench_mass_expiry(n)
    worst = max(walls)
    total = sum(walls)
    print(
        f"{n:,} states expiring in the same tick, slices of {SLICE_LIMIT_S * 1e3:g} ms "
        f"(+ one chunk of {CHUNK} entries at most)"
    )
    print(
        f"  worst slice {worst * 1e3:6.2f} ms wall, {max(cpus) * 1e3:6.2f} ms CPU; "
        f"median {statistics.median(walls) * 1e3:5.2f} ms; "
        f"{len(walls)} slices, {total * 1e3:.0f} ms in all ({total / n * 1e9:.0f} ns/state)"
    )
    print(f"  baseline: one full scan of a {n:,}-entry dict {scan * 1e3:6.1f} ms (paid on every tick)")
    verdict = "yes" if max(cpus) * 1e3 <= PAUSE_LIMIT_MS else "NO"
    if worst * 1e3 > PAUSE_LIMIT_MS:
        verdict += " (but the wall clock is above it: other load preempted the process mid-slice)"
    print(f"  worst slice's own work (CPU) within {PAUSE_LIMIT_MS:g} ms: {verdict}")
    print(f"  load average while running: {psutil.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print()
    idle = bench_idle_tick(n)
    print(f"GC tick with {n:,} live states, none due: {idle * 1e6:.1f} us/tick (baseline scan {scan * 1e3:.1f} ms)")
    print()
    sharded, single = bench_growth(n)
    print(f"longest single insertion while growing to {n:,} states (dict rebuilds), wall / CPU")
    print(f"  m6t sharded table:     {sharded[0] * 1e3:6.2f} ms / {sharded[1] * 1e3:6.2f} ms")
    print(f"  baseline single dict:  {single[0] * 1e3:6.2f} ms / {single[1] * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
