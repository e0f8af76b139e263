"""What keeping the state table across restarts costs at a million states: the loop's pauses while a save
copies the table, the save itself (on a worker thread), the restore at start-up, the file's size.

    python -m bench.gateway_snapshot [--states 1000000]

No lab, no root: the core, the snapshot codec and a temporary directory.  Figures are set against the
budgets they live within, measured in the same run: the copy's longest pause against the garbage
collector's slice limit (the data path's accepted pause), the save against the time between saves (the share
of one core it takes while the table keeps changing).  Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from m6t.gateway import CoreSettings, GatewayCore, pack_endpoint
from m6t.gateway.config import DEFAULT_SAVE_INTERVAL_S
from m6t.gateway.scheduling import SLICE_LIMIT_S
from m6t.gateway.snapshot import COPY_SHARDS_PER_TURN, SAVE_DUTY, decode, encode_shards, restore_records

PREFIX = IPv6Network("fd6d:3674:a1b2::/48")
HA = IPv6Address("fd00:ab::1")


def settings(states: int) -> CoreSettings:
    return CoreSettings(prefixes=(PREFIX,), home_agents=(HA,), max_states=states + 1, sockets=2)


def filled(states: int, now: float) -> GatewayCore:
    core = GatewayCore(settings(states), now)
    base = int(PREFIX.network_address)
    deadline = core.tick_of(now + 100.0)
    for n in range(states):
        core.table.add(
            base | (n * 0x9E3779B97F4A7C15 & (1 << 80) - 1),
            pack_endpoint(0xC6336400 + n % 65000, 1024 + n % 60000, n & 1),
            deadline,
            active=True,
        )
    return core


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_snapshot")
    parser.add_argument("--states", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    states = max(1, min(5_000_000, args.states))
    now, wall = 1000.0, time.time()
    core = filled(states, now)
    shards = core.table.shards

    # The copy a save takes on the loop, a few shards per turn: the longest turn is the pause packets see.
    copies: list[dict[int, int]] = []
    turns: list[float] = []
    started = time.perf_counter()
    for start in range(0, len(shards), COPY_SHARDS_PER_TURN):
        turn = time.perf_counter()
        copies.extend(shard.copy() for shard in shards[start : start + COPY_SHARDS_PER_TURN])
        turns.append(time.perf_counter() - turn)
    copy_s = time.perf_counter() - started
    longest = max(turns)
    median = statistics.median(turns)

    started = time.perf_counter()
    data, count = encode_shards(
        copies, (3544, 4500), tick_s=core.settings.tick_s, now_tick=core.tick_of(now), mono_now=now, wall_now=wall
    )
    assert count == states
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "states.m6t"
        path.write_bytes(data)
        save_s = time.perf_counter() - started

        started = time.perf_counter()
        snapshot = decode(path.read_bytes())
        fresh = GatewayCore(settings(states), 5.0)
        report = restore_records(fresh, snapshot.records, (3544, 4500), mono_now=5.0, wall_now=wall + 1.0)
        restore_s = time.perf_counter() - started
    assert report.restored == states, report

    spacing = max(DEFAULT_SAVE_INTERVAL_S, SAVE_DUTY * save_s)
    figures = {
        "states": states,
        "file_bytes_per_state": round(len(data) / states, 1),
        "copy_longest_pause_ms": round(longest * 1000, 3),
        "copy_median_pause_ms": round(median * 1000, 3),
        "copy_total_ms": round(copy_s * 1000, 1),
        "pause_vs_gc_slice_limit": round(longest / SLICE_LIMIT_S, 2),
        "save_s": round(save_s, 3),
        "save_spacing_s": round(spacing, 2),
        "save_share_of_core": round(save_s / spacing, 3),
        "restore_s": round(restore_s, 3),
        "restore_states_per_s": round(states / restore_s),
    }
    print(f"{states:,} active states")
    print(f"  file:     {len(data) / 2**20:.1f} MiB ({figures['file_bytes_per_state']} B per state)")
    print(
        f"  copy:     {COPY_SHARDS_PER_TURN} shards a turn: median pause {median * 1000:.2f} ms, "
        f"longest {longest * 1000:.2f} ms "
        f"({figures['pause_vs_gc_slice_limit']}x the GC slice limit of {SLICE_LIMIT_S * 1000:.0f} ms), "
        f"{copy_s * 1000:.0f} ms in all"
    )
    print(
        f"  save:     {save_s:.2f} s encode + write on the worker thread "
        f"at least {spacing:.1f} s apart (the {DEFAULT_SAVE_INTERVAL_S} s default interval, or {SAVE_DUTY}x the save): "
        f"{figures['save_share_of_core'] * 100:.0f} % of a core under constant change"
    )
    print(
        f"  restore:  {restore_s:.2f} s read + check + restore at start-up "
        f"({figures['restore_states_per_s']:,} states/s)"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
