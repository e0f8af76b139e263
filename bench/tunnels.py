"""The tunnel benchmark: `python -m bench.tunnels [--quick] [--scenarios kernel,socat,openvpn,m6t]`.

One session, one standard lab. Each round visits every scenario once (the order rotates from round to
round, so that no scenario always runs first or right after the same neighbour); a visit sets the scenario
up, checks that full-size packets cross it, measures, and tears it down completely. Figures are reported
as median [min-max] over the rounds, next to their ratio to socat measured in the same session. The m6t
only figures (reattach, keepalives, wakeups, flood, gateway state table) follow the rounds.

Results: bench/results/latest.json and latest.md (git-ignored), logs of the tunnel processes under
bench/results/logs/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import tunnel_lab as tl
from bench import tunnel_measure as tm
from bench import tunnel_report as tr
from bench.scenarios import SCENARIOS, Scenario
from bench.scenarios.base import Tunnel
from bench.tunnel_m6t import M6T_EXTRAS, M6tExtrasResult, run_gateway_core, run_m6t_extras
from m6t.lab import LabError, StandardLab, cleanup_stale, standard_lab, unavailable_reason

DEFAULT_RESULTS = tl.REPO_ROOT / "bench" / "results"
# A tunnel that has to attach first (m6t) gets this long to pass its first packet.
FIRST_PACKET_TIMEOUT = 30.0
SETTLE = 0.3


@dataclass(frozen=True)
class Settings:
    """How long and how often to measure."""

    rounds: int
    seconds: float
    ping_count: int
    ping_interval: float
    extras: frozenset[str]
    quick: bool


@dataclass
class Visit:
    """One scenario measured in one round."""

    scenario: str
    round: int
    figures: tr.Figures = field(default_factory=dict)
    setup_seconds: float | None = None
    first_packet_seconds: float | None = None
    iperf: list[dict[str, Any]] = field(default_factory=list)
    ping: dict[str, Any] | None = None
    error: str | None = None


def figures_of(ping: tm.PingResult, runs: Sequence[tm.IperfResult]) -> tr.Figures:
    """The flat figure set of one visit."""
    figures: tr.Figures = {
        "rtt_avg_ms": ping.avg_ms,
        "rtt_p99_ms": ping.p99_ms,
        "rtt_loss_pct": ping.loss_percent,
    }
    for run in runs:
        if run.test.startswith("tcp"):
            figures[f"{run.test}_mbps"] = run.mbit_per_s
            figures[f"{run.test}_mss"] = float(run.mss) if run.mss else None
            figures[f"{run.test}_retransmits"] = float(run.retransmits) if run.retransmits is not None else None
        else:
            figures[f"{run.test}_kpps"] = run.packets_per_s / 1000
            if run.seconds > 0:
                if run.packets_sent is not None:
                    figures[f"{run.test}_sent_kpps"] = run.packets_sent / run.seconds / 1000
                for step, count in run.path.items():
                    figures[f"{run.test}_path_{step}_kpps"] = count / run.seconds / 1000
        for role in run.cpu:
            per_packet = run.cpu_per_packet_us(role)
            if per_packet is not None:
                figures[tr.cpu_key(run.test, role, "user")] = per_packet.user
                figures[tr.cpu_key(run.test, role, "sys")] = per_packet.system
    return figures


def measure_tunnel(lab: StandardLab, tunnel: Tunnel, settings: Settings, visit: Visit) -> None:
    """Every data-path figure through a scenario that is up."""
    visit.first_packet_seconds = tm.wait_path(lab, tunnel.target, timeout=FIRST_PACKET_TIMEOUT)
    if not tm.path_works(lab, tunnel.target, size=tunnel.full_size_ping):
        raise tl.BenchError(
            f"packets of the full {tunnel.mtu}-byte MTU do not cross (ping -M do -s {tunnel.full_size_ping})"
        )
    # Idle-link RTT first, before bulk runs can leave anything queued.
    ping = tm.run_ping(lab, tunnel.target, count=settings.ping_count, interval=settings.ping_interval)
    visit.ping = {"sent": ping.sent, "rtts_ms": list(ping.rtts_ms)}
    runs = []
    for test in tm.IPERF_TESTS:
        time.sleep(SETTLE)
        run = tm.run_iperf(lab, test, tunnel.target, settings.seconds, tunnel.processes, tunnel.tun)
        runs.append(run)
        visit.iperf.append(dataclasses.asdict(run))
        for role, proc in tunnel.processes.items():
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                raise tl.BenchError(f"the {role} tunnel process died during {test.label}")
    visit.figures = figures_of(ping, runs)


def visit_scenario(lab: StandardLab, scenario: Scenario, round_no: int, settings: Settings, logs: Path) -> Visit:
    """Set a scenario up, measure it, tear it down; a failure is recorded, not raised."""
    visit = Visit(scenario.name, round_no)
    logdir = logs / f"round{round_no}-{scenario.name}"
    logdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        with scenario.up(lab, logdir) as tunnel:
            visit.setup_seconds = time.monotonic() - started
            measure_tunnel(lab, tunnel, settings, visit)
    except (tl.BenchError, LabError, OSError, psutil.Error) as exc:
        visit.error = f"{type(exc).__name__}: {exc}"
    return visit


def rotated(items: Sequence[Scenario], by: int) -> list[Scenario]:
    """items rotated left by `by` places."""
    if not items:
        return []
    shift = by % len(items)
    return [*items[shift:], *items[:shift]]


def environment_header(settings: Settings) -> tuple[list[str], dict[str, Any]]:
    """Where and how the run happened, for the report and the JSON."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions = {
        "iperf3": tm.run_quiet(["iperf3", "--version"]).splitlines()[0:1],
        "socat": [line for line in tm.run_quiet(["socat", "-V"]).splitlines() if "socat version" in line][0:1],
        "openvpn": tm.run_quiet(["openvpn", "--version"]).splitlines()[0:1],
    }
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "tools": {tool: (lines[0].strip() if lines else None) for tool, lines in versions.items()},
        "rounds": settings.rounds,
        "seconds_per_run": settings.seconds,
        "ping": {"count": settings.ping_count, "interval_s": settings.ping_interval},
        "quick": settings.quick,
        "loadavg_start": loadavg(),
    }
    header = [
        f"{info['date']}, Linux {info['kernel']}, {info['cpus']} x {cpu_model or 'CPU'}, Python {info['python']}",
        "tools: " + "; ".join(f"{k}: {v or 'missing'}" for k, v in info["tools"].items()),
        f"{settings.rounds} round(s); iperf3 runs of {settings.seconds:g} s; "
        f"idle ping {settings.ping_count} x {settings.ping_interval * 1000:g} ms",
    ]
    return header, info


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages: a busy machine shows here before it shows in the figures."""
    # getattr: bench code is Linux-only but type-checks for every platform, and Windows has no getloadavg.
    getloadavg: Callable[[], tuple[float, float, float]] | None = getattr(os, "getloadavg", None)
    return list(getloadavg()) if getloadavg is not None else []


def other_labs() -> list[str]:
    """Namespaces of other lab runs: their traffic would share this machine's two cores with ours."""
    out = tm.run_quiet(["ip", "netns", "list"])
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.tunnels", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="1 round, 2 s runs, short ping, short idle window")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, help="length of each iperf3 run (default 5, quick 2)")
    parser.add_argument(
        "--m6t-extras",
        default="default",
        help="m6t-only measurements: all, none, or a subset of "
        + ",".join(M6T_EXTRAS)
        + " (default: all; with --quick all but core, the 1 M-state gateway benchmarks)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_RESULTS, help="results directory (%(default)s)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in str(args.scenarios).split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    args.scenario_names = list(dict.fromkeys(names))
    extras = str(args.m6t_extras)
    if extras == "default":
        extras = ",".join(e for e in M6T_EXTRAS if e != "core") if args.quick else "all"
    chosen = set(M6T_EXTRAS) if extras == "all" else set() if extras == "none" else set(extras.split(","))
    if chosen - set(M6T_EXTRAS):
        parser.error(f"unknown m6t extras {sorted(chosen - set(M6T_EXTRAS))}; choose from {', '.join(M6T_EXTRAS)}")
    args.extras = frozenset(chosen)
    if args.rounds is not None and not 1 <= args.rounds <= 20:
        parser.error("--rounds must be 1..20")
    if args.seconds is not None and not 1 <= args.seconds <= 60:
        parser.error("--seconds must be 1..60")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    """Defaults for a full run or a quick one, overridden by explicit options."""
    quick = bool(args.quick)
    return Settings(
        rounds=args.rounds or (1 if quick else 3),
        seconds=args.seconds or (2.0 if quick else 5.0),
        ping_count=50 if quick else 200,
        ping_interval=0.02 if quick else 0.025,
        extras=args.extras,
        quick=quick,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when every selected scenario was measured, 1 otherwise, 2 when it cannot run."""
    args = parse_args(argv)
    settings = settings_from(args)
    reason = unavailable_reason()
    if reason is not None:
        print(f"bench.tunnels: cannot run: {reason}", file=sys.stderr)
        return 2
    for tool in ("iperf3", "ss"):
        if shutil.which(tool) is None:
            print(f"bench.tunnels: cannot run: {tool} missing (scripts/bench.sh installs it)", file=sys.stderr)
            return 2
    selected = [SCENARIOS[name]() for name in args.scenario_names]
    skipped = {s.name: why for s in selected if (why := s.unavailable()) is not None}
    runnable = [s for s in selected if s.name not in skipped]
    output: Path = args.output
    logs = output / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)

    cleanup_stale()
    header, info = environment_header(settings)
    notes: list[str] = []
    busy = other_labs()
    if busy:
        notes.append(f"other network namespaces existed at the start ({len(busy)}): figures may be disturbed")
    print("\n".join(header), flush=True)
    visits: list[Visit] = []
    extras = M6tExtrasResult()
    interrupted = False
    started = time.monotonic()
    try:
        with standard_lab() as lab:
            for round_no in range(1, settings.rounds + 1):
                for scenario in rotated(runnable, round_no - 1):
                    print(f"round {round_no}/{settings.rounds}: {scenario.name} …", flush=True)
                    visit = visit_scenario(lab, scenario, round_no, settings, logs)
                    visits.append(visit)
                    print(f"  {describe(visit)}", flush=True)
            m6t = next((s for s in runnable if s.name == "m6t"), None)
            if m6t is not None and settings.extras - {"core"}:
                extras = run_m6t_extras(lab, m6t, settings, logs)
        if "core" in settings.extras and any(s.name == "m6t" for s in selected):
            extras.merge(run_gateway_core(settings))
    except KeyboardInterrupt:
        interrupted = True
        notes.append("interrupted by Ctrl-C: partial results")
        print("\ninterrupted: the lab is torn down; writing partial results", file=sys.stderr)
    info["elapsed_s"] = round(time.monotonic() - started, 1)
    info["loadavg_end"] = loadavg()
    header.append(f"session took {info['elapsed_s']:g} s")
    report = build_report(settings, selected, runnable, skipped, visits, extras, header, info, notes, interrupted)
    output.mkdir(parents=True, exist_ok=True)
    (output / "latest.json").write_text(json.dumps(report["json"], indent=2) + "\n", encoding="utf-8")
    (output / "latest.md").write_text(report["markdown"], encoding="utf-8")
    print()
    print(report["markdown"])
    print(f"written: {output / 'latest.json'}, {output / 'latest.md'}")
    failed = any(v.error for v in visits) or bool(skipped) or interrupted
    return 130 if interrupted else (1 if failed else 0)


def describe(visit: Visit) -> str:
    """One progress line."""
    if visit.error:
        return f"FAILED: {visit.error.splitlines()[0]}"
    f = visit.figures
    parts = [
        f"TCP {tr.fmt(f.get('tcp_up_mbps'), 0)}/{tr.fmt(f.get('tcp_down_mbps'), 0)} Mbit/s",
        f"UDP {tr.fmt(f.get('udp1200_kpps'), 1)}/{tr.fmt(f.get('udp64_kpps'), 1)} kpps",
        f"RTT {tr.fmt(f.get('rtt_avg_ms'), 3)}/{tr.fmt(f.get('rtt_p99_ms'), 3)} ms",
    ]
    return ", ".join(parts)


def build_report(
    settings: Settings,
    selected: Sequence[Scenario],
    runnable: Sequence[Scenario],
    skipped: dict[str, str],
    visits: Sequence[Visit],
    extras: M6tExtrasResult,
    header: list[str],
    info: dict[str, Any],
    notes: list[str],
    interrupted: bool,
) -> dict[str, Any]:
    """Summaries, targets, markdown and JSON of a session."""
    summaries: dict[str, dict[str, tr.Stat]] = {}
    failed: dict[str, str] = dict(skipped)
    for scenario in runnable:
        good = [v.figures for v in visits if v.scenario == scenario.name and not v.error]
        errors = [f"round {v.round}: {v.error}" for v in visits if v.scenario == scenario.name and v.error]
        if good:
            summaries[scenario.name] = tr.summarize(good)
        elif errors:
            failed[scenario.name] = errors[0]
        for error in errors:
            notes.append(f"{scenario.name} {error.splitlines()[0]}")
    mss = {name: s["tcp_up_mss"].median for name, s in summaries.items() if "tcp_up_mss" in s}
    if mss:
        notes.append("TCP MSS seen by iperf3: " + ", ".join(f"{k} {v:.0f}" for k, v in mss.items()))
    notes.append("every visit first checked that a full-size packet (the path MTU, ping -M do) crosses unfragmented")
    notes.append(
        "UDP runs use iperf3 -b 0 (unlimited) from the MN; the receiver's count is the figure, "
        "so sender-side drops in a tunnel's queues count against it"
    )
    targets: list[tr.Target] = []
    if "m6t" in [s.name for s in selected]:
        targets = tr.tunnel_targets(summaries) + extras.targets
    titles = {s.name: s.title for s in selected}
    markdown = tr.render(
        scenarios=[s.name for s in selected],
        titles=titles,
        summaries=summaries,
        skipped=failed,
        targets=targets,
        extras=extras.rows,
        header=header,
        notes=notes,
        rounds=settings.rounds,
    )
    ratios: dict[str, dict[str, float | None]] = {}
    if tr.BASELINE in summaries:
        base = summaries[tr.BASELINE]
        for name, summary in summaries.items():
            ratios[name] = {
                col.key: (
                    tr.ratio(summary.get(col.key), base.get(col.key))
                    if col.compare == "ratio"
                    else tr.difference(summary.get(col.key), base.get(col.key))
                )
                for col in tr.COLUMNS
            }
    data: dict[str, Any] = {
        "environment": info,
        "interrupted": interrupted,
        "scenarios": {s.name: s.title for s in selected},
        "not_measured": failed,
        "summary": {name: {k: dataclasses.asdict(v) for k, v in s.items()} for name, s in summaries.items()},
        "relative_to_socat": ratios,
        "targets": [t.as_dict() for t in targets],
        "m6t_extras": extras.data,
        "visits": [dataclasses.asdict(v) for v in visits],
        "notes": notes,
    }
    return {"markdown": markdown, "json": data}


if __name__ == "__main__":
    sys.exit(main())
