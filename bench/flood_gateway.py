"""The gateway under floods of new sources: an established mobile node's loss, the gateway's CPU and new
mobile nodes' states, with the kernel fast lane and without it (the baseline) in the same run.

    python -m bench.flood_gateway [--seconds 6] [--senders 3] [--sources 200] [--json FILE]

In one standard lab (mn → nat1 → WAN → gw → ha; the attacker is wan2), the real gateway runs with the
documented defaults, once with ``[fastlane] mode = "off"`` and once with ``"required"``.  Against each:

* **one host**: ``--senders`` processes on wan2 (198.51.100.66) send echo requests to the HA, each from a
  new source in the m6t prefix, as fast as they can for ``--seconds``; meanwhile the established MN
  (behind nat1) pings the HA every 10 ms through the gateway, and new MNs on nat2's address ask for
  states at half the configured per-IPv4 rate;
* **many hosts**: the same senders spread over ``--sources`` addresses of wan2 (198.51.100.20 and up).

Figures: the flood's rate, the MN's loss and round trips over the flood window, the gateway process's
CPU (user + system, % of one core), the datagrams its socket dropped (``RcvbufErrors``), the kernel's
policing counters, and how many new MNs got a state.  Ratios compare the fast lane with the baseline.
Targets (issue 14): ≤ 1 % loss for the established MN, with the flood at ≥ 200 000/s from one host.

For other suites (the soak suite): :func:`run` builds its own lab and returns the figures as plain data;
:func:`start_gateway` and :func:`measure` work on a lab the caller holds, and :func:`flood` is the flood
alone (``bench.soak --flood senders`` uses it).  Not a test: the figures depend
on the machine (two cores here, shared by senders, gateway, NATs and the HA's kernel).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import tunnel_lab as tl
from m6t.gateway.config import FastLaneSection, StatesSection, UnixEndpoint
from m6t.gateway.metrics import PREFIX, parse
from m6t.gateway.metrics_server import MetricsError, fetch_metrics
from m6t.lab import (
    GW,
    GW_WAN,
    MN,
    NAT1_WAN,
    NAT2,
    NAT2_WAN,
    WAN2,
    WAN2_ADDR,
    WAN2_IF,
    StandardLab,
    configs,
    unavailable_reason,
    wait_until,
)

PORT = 3544
GW_IFNAME = "m6tgwflood0"
TARGET_LOSS_PERCENT = 1.0
TARGET_RATE = 200_000
PROBE_INTERVAL = 0.01
LEAD_S = 1.5
TAIL_S = 1.5
MAX_SECONDS = 60.0
MAX_SENDERS = 8
MAX_SOURCES = 200
FIRST_SOURCE = 20
"""Attacker addresses are 198.51.100.20 and up, the lab's own (.66, wan2's) left out."""
MODES = ("off", "required")


@dataclass
class Gateway:
    """A gateway daemon running in the lab's gw namespace."""

    proc: subprocess.Popen[str]
    workdir: Path
    metrics: UnixEndpoint
    mode: str

    def values(self) -> dict[str, float]:
        """Its metrics, ``name{label=value,...}`` → value (empty if it cannot be reached)."""
        try:
            text = fetch_metrics(self.metrics, timeout=5.0)
        except MetricsError:
            return {}
        out: dict[str, float] = {}
        for sample in parse(text):
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[sample.name.removeprefix(PREFIX) + (f"{{{labels}}}" if labels else "")] = sample.value
        return out

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def log(self) -> str:
        path = self.workdir / "gateway.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_gateway(lab: StandardLab, mode: str, *, states: StatesSection | None = None) -> Gateway:
    """The real gateway in the lab with the default settings and the fast lane ``mode``; ready when it returns."""
    workdir = Path(tempfile.mkdtemp(prefix="m6tflood-"))
    metrics = UnixEndpoint(str(workdir / "metrics.sock"))
    config = workdir / "gateway.toml"
    config.write_text(
        configs.gateway_config(
            ports=(PORT,),
            interface=GW_IFNAME,
            states=states,
            metrics=str(metrics),
            fastlane=FastLaneSection(mode=mode),
        )
    )
    with (workdir / "gateway.log").open("w") as log:
        proc = lab.spawn(
            GW,
            tl.python_argv("m6t.gateway", "--config", str(config)),
            stdout=log,
            stderr=log,
            env=tl.python_env(),
            cwd=str(tl.REPO_ROOT),
        )
    gateway = Gateway(proc, workdir, metrics, mode)

    def ready() -> bool:
        if proc.poll() is not None:
            raise tl.BenchError(f"the gateway exited with {proc.returncode}:\n{gateway.log()}")
        return bool(gateway.values())

    wait_until(ready, what="the gateway's metrics", timeout=20.0, interval=0.1)
    return gateway


def stop_gateway(gateway: Gateway) -> None:
    tl.stop(gateway.proc)
    shutil.rmtree(gateway.workdir, ignore_errors=True)


def attacker_sources(count: int) -> list[str]:
    taken = {GW_WAN, NAT1_WAN, NAT2_WAN, WAN2_ADDR}
    candidates = (f"198.51.100.{last}" for last in range(FIRST_SOURCE, 255))
    return [address for address in candidates if address not in taken][:count]


def add_attacker_addresses(lab: StandardLab, count: int) -> list[str]:
    """``count`` more addresses on wan2's WAN port, for a flood from many hosts."""
    sources = attacker_sources(count)
    from m6t.lab import shell

    shell.ip_batch([f"address add {address}/24 dev {WAN2_IF}" for address in sources], lab.ns(WAN2))
    return sources


class _Lines:
    """A process's stdout lines, collected by a thread (so a wait never blocks on a pipe)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        if self.proc.stdout is None:
            return
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.strip())
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while text not in self.lines:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    return text in self.lines
                self._cond.wait(remaining)
        return True

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            tl.stop(self.proc)
        self._thread.join(timeout=5.0)
        for line in reversed(self.lines):
            with contextlib.suppress(json.JSONDecodeError):
                found = json.loads(line)
                if isinstance(found, dict):
                    return found
        return {}


def _role(lab: StandardLab, host: str, *args: str, port: int = PORT) -> _Lines:
    argv = tl.python_argv("bench.flood_roles", *args, "--gateway", GW_WAN, "--port", str(port))
    proc = lab.spawn(host, argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=tl.python_env())
    return _Lines(proc)


def _rcvbuf_errors(lab: StandardLab) -> int:
    lines = [line.split() for line in lab.read_file(GW, "/proc/net/snmp").splitlines() if line.startswith("Udp:")]
    if len(lines) < 2:
        return 0
    return int(dict(zip(lines[0][1:], lines[1][1:], strict=False)).get("RcvbufErrors", 0))


def _p(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@dataclass
class Figures:
    """One flood against one gateway."""

    mode: str
    kind: str
    flood: dict[str, Any] = field(default_factory=dict)
    mn: dict[str, Any] = field(default_factory=dict)
    new_mns: dict[str, Any] = field(default_factory=dict)
    gateway_cpu_percent: float = 0.0
    socket_drops: int = 0
    kernel: dict[str, float] = field(default_factory=dict)
    gateway: dict[str, float] = field(default_factory=dict)


def flood(
    lab: StandardLab, *, seconds: float, senders: int = 3, sources: Sequence[str] = (), port: int = PORT
) -> dict[str, Any]:
    """New sources from wan2 as fast as ``senders`` processes can send them for ``seconds`` (bounded), from
    wan2's own address or spread over ``sources`` (see :func:`add_attacker_addresses`); the totals."""
    seconds = max(0.1, min(MAX_SECONDS, seconds))
    senders = max(1, min(MAX_SENDERS, senders))
    flooders = []
    for index in range(senders):
        share = ",".join(sources[index::senders])
        flooders.append(_role(lab, WAN2, "flood", "--duration", f"{seconds:g}", "--bind", share, port=port))
    floods = [f.result(timeout=seconds + 20.0) for f in flooders]
    sent = sum(int(f.get("sent", 0)) for f in floods)
    longest = max((float(f.get("seconds", 0.0)) for f in floods), default=0.0)
    return {
        "senders": senders,
        "sources": len(sources) or 1,
        "sent": sent,
        "errors": sum(int(f.get("errors", 0)) for f in floods),
        "seconds": longest,
        "rate": sent / longest if longest else 0.0,
    }


def measure(
    lab: StandardLab,
    gateway: Gateway,
    *,
    kind: str,
    seconds: float,
    senders: int,
    sources: Sequence[str] = (),
    new_mn_rate: float = 5.0,
    mn_id: int = 1,
) -> Figures:
    """One flood window: ``kind`` "single" (every sender from wan2's own address) or "many" (``sources``)."""
    seconds = max(0.5, min(MAX_SECONDS, seconds))
    senders = max(1, min(MAX_SENDERS, senders))
    probe_window = LEAD_S + seconds + TAIL_S
    mn = _role(
        lab,
        MN,
        "mn",
        "--duration",
        f"{probe_window + 2.0:g}",
        "--interval",
        f"{PROBE_INTERVAL:g}",
        "--local-port",
        str(41000 + mn_id),
        "--mn-id",
        str(mn_id),
    )
    figures = Figures(gateway.mode, kind)
    try:
        if not mn.wait_for("ACTIVE", timeout=5.0):
            raise tl.BenchError("the mobile node got no answer from the Home Agent before the flood")
        time.sleep(LEAD_S)
        before = gateway.values()
        drops_before = _rcvbuf_errors(lab)
        cpu_before = gateway.cpu_seconds()
        started = time.monotonic()
        new_mns = _role(lab, NAT2, "newmn", "--duration", f"{seconds:g}", "--rate", f"{new_mn_rate:g}")
        figures.flood = flood(lab, seconds=seconds, senders=senders, sources=sources if kind == "many" else ())
        ended = time.monotonic()
        cpu = gateway.cpu_seconds() - cpu_before
        figures.new_mns = new_mns.result(timeout=10.0)
        time.sleep(TAIL_S)
        after = gateway.values()
        figures.socket_drops = _rcvbuf_errors(lab) - drops_before
        figures.gateway_cpu_percent = 100.0 * cpu / (ended - started)
        figures.kernel = {
            key.removeprefix("fastlane_packets_total{rule=").rstrip("}"): after[key] - before.get(key, 0.0)
            for key in after
            if key.startswith("fastlane_packets_total")
        }
        figures.gateway = {
            key: after[key] - before.get(key, 0.0)
            for key in (
                "rate_limited_total",
                "state_events_total{event=created}",
                "state_events_total{event=promoted}",
                "received_packets_total{side=mn}",
            )
            if key in after
        }
        result = mn.result(timeout=probe_window + 10.0)
        figures.mn = _loss(result, started, ended)
    finally:
        tl.stop(mn.proc)
    return figures


def _loss(result: dict[str, Any], started: float, ended: float) -> dict[str, Any]:
    sent = {int(k): float(v) for k, v in result.get("sent", {}).items()}
    replies = {int(k): float(v) for k, v in result.get("replies", {}).items()}
    window = [seq for seq, at in sent.items() if started <= at <= ended]
    answered = [seq for seq in window if seq in replies]
    rtts = [1000.0 * (replies[seq] - sent[seq]) for seq in answered]
    return {
        "probes": len(window),
        "answered": len(answered),
        "loss_percent": 100.0 * (len(window) - len(answered)) / len(window) if window else None,
        "rtt_median_ms": statistics.median(rtts) if rtts else None,
        "rtt_p99_ms": _p(rtts, 0.99),
    }


def run(
    *, seconds: float = 6.0, senders: int = 3, sources: int = MAX_SOURCES, modes: Sequence[str] = MODES
) -> list[Figures]:
    """Both floods against the gateway in each fast-lane mode, in one lab of its own."""
    results: list[Figures] = []
    with StandardLab() as lab:
        addresses = add_attacker_addresses(lab, max(1, min(MAX_SOURCES, sources)))
        for index, mode in enumerate(modes):
            gateway = start_gateway(lab, mode)
            try:
                for kind in ("single", "many"):
                    figures = measure(
                        lab, gateway, kind=kind, seconds=seconds, senders=senders, sources=addresses, mn_id=index + 1
                    )
                    results.append(figures)
                    print(_line(figures), flush=True)
            finally:
                stop_gateway(gateway)
    return results


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _line(f: Figures) -> str:
    flood, mn = f.flood, f.mn
    new = f.new_mns
    return (
        f"fast lane {f.mode:>8}, {f.kind:>6}: flood {flood.get('rate', 0):>9,.0f}/s from {flood.get('sources')} "
        f"source(s) ({flood.get('senders')} senders); MN loss {_fmt(mn.get('loss_percent'), '.2f', ' %')} "
        f"({mn.get('probes', 0) - mn.get('answered', 0)}/{mn.get('probes', 0)}), "
        f"RTT median {_fmt(mn.get('rtt_median_ms'), '.2f', ' ms')} p99 {_fmt(mn.get('rtt_p99_ms'), '.2f', ' ms')}; "
        f"gateway CPU {f.gateway_cpu_percent:.0f} %; socket drops {f.socket_drops:,}; "
        f"new MNs {new.get('states', 0)}/{new.get('attempts', 0)}"
    )


def _ratio(new: float | None, old: float | None) -> str:
    if new is None or old is None:
        return "-"
    if old == 0:
        return "= baseline" if new == 0 else "∞"
    return f"{new / old:.2f}x"


def report(results: Sequence[Figures]) -> str:
    lines = ["", "gateway under floods (baseline: fast lane off, same run)"]
    by = {(f.mode, f.kind): f for f in results}
    for kind, title in (("single", "one attacker host"), ("many", "many attacker addresses")):
        base, lane = by.get(("off", kind)), by.get(("required", kind))
        if base is None or lane is None:
            continue
        loss, base_loss = lane.mn.get("loss_percent"), base.mn.get("loss_percent")
        lines.append(f"  {title}: flood {lane.flood['rate']:,.0f}/s (baseline run {base.flood['rate']:,.0f}/s)")
        verdict = "PASS" if loss is not None and loss <= TARGET_LOSS_PERCENT else "MISS"
        lines.append(
            f"    MN loss        {_fmt(loss, '.2f', ' %'):>10}  baseline {_fmt(base_loss, '.2f', ' %'):>10}  "
            f"target ≤ {TARGET_LOSS_PERCENT:g} %: {verdict}"
        )
        lines.append(
            f"    gateway CPU    {lane.gateway_cpu_percent:>8.0f} %  baseline {base.gateway_cpu_percent:>8.0f} %  "
            f"ratio {_ratio(lane.gateway_cpu_percent, base.gateway_cpu_percent)}"
        )
        lines.append(
            f"    socket drops   {lane.socket_drops:>10,}  baseline {base.socket_drops:>10,}  "
            f"policed in the kernel: {lane.kernel.get('policed_per_ipv4', 0):,.0f} per-IPv4, "
            f"{lane.kernel.get('policed_ceiling', 0):,.0f} ceiling"
        )
        if kind == "single":
            rate_ok = lane.flood["rate"] >= TARGET_RATE
            lines.append(
                f"    new MNs        {lane.new_mns.get('states', 0):>4}/{lane.new_mns.get('attempts', 0):<5} "
                f"baseline {base.new_mns.get('states', 0):>4}/{base.new_mns.get('attempts', 0):<5}  "
                f"flood ≥ {TARGET_RATE:,}/s: {'yes' if rate_ok else 'no'}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="flood window (%(default)s)")
    parser.add_argument("--senders", type=int, default=3, help="sender processes (%(default)s)")
    parser.add_argument("--sources", type=int, default=MAX_SOURCES, help="attacker addresses, many-host flood")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    print(f"load before: {psutil.getloadavg()}", flush=True)
    results = run(seconds=args.seconds, senders=args.senders, sources=args.sources)
    print(report(results))
    print(f"load after: {psutil.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps([f.__dict__ for f in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
