"""How long the Home Agent loses an idle mobile node when the gateway restarts (SIGTERM, or kill -9).

    python -m bench.restart [--rounds 3]          (root; about 30 s a round)

The standard lab with the real gateway (keeping its states in the lab's own directory) and the real helper
on the MN, connected and idle with the default 30 s keepalive.  The HA pings the MN's tunnel address every
10 ms (``bench.tunnel_probe`` in the HA's namespace); the gateway is stopped and started again, and the
figure is the time from the new gateway listening (its UDP socket seen in ``/proc/PID/net/udp``, polled
every 5 ms) to the first reply the HA gets.  Without kept states this was about 35 s: the MN had to
notice, through an unanswered keepalive, that the gateway forgot it, and draw a new address.  The run
also checks that the MN kept its address.  Prints a table and, with ``--json``, the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.tunnel_m6t import Prober
from m6t.client.api.schema import Method
from m6t.gateway.config import UnixEndpoint
from m6t.gateway.metrics import PREFIX, parse
from m6t.gateway.metrics_server import fetch_metrics
from m6t.lab import HA_HOST, unavailable_reason
from m6t.lab.demo import GATEWAY_PORTS, GATEWAY_SAVE_INTERVAL_S, DemoLab, client_config, demo_lab

PROBE_INTERVAL = 0.01
LISTEN_POLL = 0.005
RECOVERY_TIMEOUT = 10.0
IDLE_KEEPALIVE_S = 30
"""The client's default keepalive interval: an idle MN sends nothing the gateway could learn from."""


@dataclass(frozen=True)
class RestartFigure:
    how: str
    """``sigterm`` or ``kill -9``."""
    down_s: float
    """From the stop to the new gateway listening (process start-up included)."""
    reach_s: float | None
    """From listening again to the HA's first answered ping to the MN; None: not within the timeout."""
    restored: int
    """States the new gateway restored (its metrics)."""
    address_kept: bool
    """The MN still has the address it had before the restart: no new address drawn."""


def helper_status(demo: DemoLab) -> dict[str, Any]:
    with demo.client(timeout=10) as client:
        status: dict[str, Any] = client.call(Method.STATUS)
    return status


def wait_connected(demo: DemoLab, timeout: float = 20.0) -> str:
    """The MN's tunnel address once the helper says connected (bounded poll)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.1) + 1):
        status = helper_status(demo)
        if status["state"] == "connected" and status["address"]:
            return str(status["address"])
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise RuntimeError(f"the MN did not connect within {timeout:g} s\n{demo.logs()}")


def udp_listening(pid: int, port: int) -> bool:
    """True once process ``pid`` (in its namespace) has a UDP socket bound to ``port``."""
    try:
        with open(f"/proc/{pid}/net/udp", encoding="ascii") as table:
            lines = table.read().splitlines()[1:]
    except OSError:
        return False
    suffix = f":{port:04X}"
    return any(line.split()[1].endswith(suffix) for line in lines if len(line.split()) > 1)


def wait_listening(demo: DemoLab, pid: int, port: int, timeout: float = 20.0) -> float:
    """The monotonic time the new gateway's socket was first seen (polled every 5 ms, bounded)."""
    for _ in range(int(timeout / LISTEN_POLL) + 1):
        if udp_listening(pid, port):
            return time.monotonic()
        if demo.gateway is None or demo.gateway.poll() is not None:
            break
        time.sleep(LISTEN_POLL)
    raise RuntimeError(f"the gateway did not listen on {port} within {timeout:g} s\n{demo.logs()}")


def restored_states(demo: DemoLab) -> int:
    text = fetch_metrics(UnixEndpoint(str(demo.gateway_metrics)), timeout=5.0)
    for sample in parse(text):
        if sample.name == PREFIX + "restored_states" and sample.labels.get("outcome") == "restored":
            return int(sample.value)
    return 0


def restart(demo: DemoLab, prober: Prober, *, kill: bool, address: str) -> RestartFigure:
    """Stop the gateway (SIGTERM, or SIGKILL), start it again, and time the HA's way back to the MN."""
    stopped = time.monotonic()
    demo.stop_gateway(kill=kill)
    proc = demo.spawn_gateway()
    listening = wait_listening(demo, proc.pid, GATEWAY_PORTS[0])
    # A request sent up to one interval before the socket was seen may already have found it.
    reply = prober.first_reply(sent_after=listening - PROBE_INTERVAL, timeout=RECOVERY_TIMEOUT)
    demo.wait_gateway()
    status = helper_status(demo)
    return RestartFigure(
        how="kill -9" if kill else "sigterm",
        down_s=listening - stopped,
        reach_s=None if reply is None else max(0.0, reply.received - listening),
        restored=restored_states(demo),
        address_kept=status["address"] == address and status["state"] == "connected",
    )


def measure(demo: DemoLab, rounds: int = 1) -> list[RestartFigure]:
    """``rounds`` pairs of restarts (SIGTERM, then kill -9) of a lab whose MN is connected and idle."""
    address = wait_connected(demo)
    prober = Prober(demo.lab, address, interval=PROBE_INTERVAL, duration=rounds * 40.0 + 20.0, host=HA_HOST)
    figures: list[RestartFigure] = []
    try:
        if not prober.wait_replies(3, timeout=10.0):
            raise RuntimeError(f"the HA's pings to the MN go unanswered before any restart\n{demo.logs()}")
        for _ in range(rounds):
            for kill in (False, True):
                # Past the save interval: a kill -9 finds the last change on disk, as a crash would.
                time.sleep(GATEWAY_SAVE_INTERVAL_S + 1.0)
                figures.append(restart(demo, prober, kill=kill, address=address))
    finally:
        prober.stop()
    return figures


def table(figures: Sequence[RestartFigure]) -> str:
    lines = ["| restart | down (stop → listening) | HA reaches the MN after listening | restored | address kept |"]
    lines.append("|---|---|---|---|---|")
    for f in figures:
        reach = f"NOT within {RECOVERY_TIMEOUT:g} s" if f.reach_s is None else f"{f.reach_s * 1000:.0f} ms"
        lines.append(f"| {f.how} | {f.down_s:.2f} s | {reach} | {f.restored} | {'yes' if f.address_kept else 'NO'} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.restart")
    parser.add_argument("--rounds", type=int, default=3, help="SIGTERM + kill -9 pairs (default 3, at most 20)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON after the table")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    with demo_lab(keep_states=True, config=client_config(keepalive=IDLE_KEEPALIVE_S, autoconnect=True)) as demo:
        figures = measure(demo, max(1, min(20, args.rounds)))
    print(table(figures))
    if args.json:
        print(json.dumps([asdict(f) for f in figures], indent=1))
    good = all(f.reach_s is not None and f.reach_s <= 1.0 and f.address_kept for f in figures)
    print(f"target (HA reaches the idle MN within 1 s of listening, same address): {'PASS' if good else 'MISS'}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
