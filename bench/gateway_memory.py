"""Memory per gateway state at a million states, against naive tables measured in the same run.

    python -m bench.gateway_memory [--states N]

Each table is built in a fresh child process and measured as the growth of its resident set, so the
figure includes everything the table really costs: dict slots and their over-allocation, key and value
objects, the expiry wheel, allocator slack.  Baselines: ``dict[bytes, tuple]`` (the obvious table) and
``dict[bytes, object with __slots__]`` (the obvious object model).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
from typing import Final

import psutil

BASE: Final = int.from_bytes(bytes.fromhex("fd6d3674a1b200000001000000000000"), "big")
MASK48: Final = (1 << 48) - 1
GOLDEN: Final = 0x9E3779B97F4A7C15
BUDGET_BYTES: Final = 300


class SlottedState:
    __slots__ = ("active", "deadline", "ipv4", "port", "sock")

    def __init__(self, ipv4: int, port: int, sock: int, active: bool, deadline: float) -> None:
        self.ipv4 = ipv4
        self.port = port
        self.sock = sock
        self.active = active
        self.deadline = deadline


def _address(i: int) -> int:
    # Spread like the MNs' random 48-bit suffixes, one new int per state as on the data path.
    return BASE | ((i * GOLDEN) & MASK48)


def _build(kind: str, n: int) -> object:
    if kind == "m6t":
        from m6t.gateway.states import StateTable, pack_endpoint

        # The wheel a core with the default two-minute active lifetime gets.
        table = StateTable(16_384, 0)
        for i in range(n):
            # Deadlines spread over two minutes of 10 ms ticks, as a live gateway's would be.
            table.add_temporary(
                _address(i), pack_endpoint(0xC6336400 + (i & 0xFFFF), 1024 + (i & 0x7FFF), 0), i % 12_000
            )
        return table
    if kind == "dict-bytes-tuple":
        plain: dict[bytes, tuple[int, int, int, bool, float]] = {}
        for i in range(n):
            plain[_address(i).to_bytes(16, "big")] = (
                0xC6336400 + (i & 0xFFFF),
                1024 + (i & 0x7FFF),
                0,
                False,
                i * 0.01,
            )
        return plain
    if kind == "dict-bytes-slots":
        objects: dict[bytes, SlottedState] = {}
        for i in range(n):
            objects[_address(i).to_bytes(16, "big")] = SlottedState(
                0xC6336400 + (i & 0xFFFF), 1024 + (i & 0x7FFF), 0, False, i * 0.01
            )
        return objects
    raise ValueError(kind)


def child(kind: str, n: int) -> None:
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    table = _build(kind, n)
    gc.collect()
    after = process.memory_info().rss
    assert table is not None
    print(json.dumps({"kind": kind, "states": n, "bytes_per_state": (after - before) / n}))


def measure(kind: str, n: int) -> float:
    result = subprocess.run(
        [sys.executable, "-m", "bench.gateway_memory", "--child", kind, "--states", str(n)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return float(json.loads(result.stdout)["bytes_per_state"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=1_000_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.states)
        return
    n = args.states
    ours = measure("m6t", n)
    tuples = measure("dict-bytes-tuple", n)
    slots = measure("dict-bytes-slots", n)
    print(f"gateway state memory at {n:,} states (RSS growth per state)")
    print(f"  m6t StateTable (packed ints, sharded, wheel): {ours:7.1f} B/state   budget {BUDGET_BYTES} B")
    print(f"  baseline dict[bytes, tuple]:                 {tuples:7.1f} B/state   ({tuples / ours:.2f}x ours)")
    print(f"  baseline dict[bytes, __slots__ object]:      {slots:7.1f} B/state   ({slots / ours:.2f}x ours)")
    print(f"  within budget: {'yes' if ours <= BUDGET_BYTES else 'NO'}")


if __name__ == "__main__":
    main()
