"""The m6t-only figures: reattach after a move and after a NAT flush, lost-binding recovery, idle cost
(keepalives, wakeups), the legitimate MN's loss under a new-source flood, and the gateway's state table.

Each runs against a fresh m6t scenario after the data-path rounds. Times come from an ICMPv6
prober in the MN's namespace (bench.tunnel_probe) that stamps each request and reply with the monotonic
clock this process reads too, so "change → first HA reply" is measured between two readings of one clock.
"""

from __future__ import annotations

import contextlib
import json
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import tunnel_lab as tl
from bench import tunnel_measure as tm
from bench import tunnel_report as tr
from bench.scenarios import m6t as m6t_scenario
from bench.scenarios.base import CLIENT, GATEWAY, Scenario, Tunnel
from m6t.lab import (
    GW,
    GW_WAN,
    HA,
    M6T_PREFIX,
    MN,
    WAN2,
    LabError,
    NatMapping,
    NatName,
    StandardLab,
)

if TYPE_CHECKING:
    from bench.tunnels import Settings

M6T_EXTRAS = ("idle", "reattach", "flush", "lost-binding", "flood", "core")

PROBE_INTERVAL = 0.005
REATTACH_TIMEOUT = 15.0
WAKEUP_WINDOW = 10.0
FLOOD_RATE = 20_000
IDLE_TABLE = "m6t_bench_idle"


@dataclass
class M6tExtrasResult:
    """Rows for the report (figure, value, how), targets with verdicts, and the raw data for the JSON."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    targets: list[tr.Target] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: M6tExtrasResult) -> None:
        """Append another result's rows, targets and data."""
        self.rows += other.rows
        self.targets += other.targets
        self.data.update(other.data)

    def failed(self, name: str, error: str) -> None:
        """Record a measurement that could not be taken."""
        self.rows.append((name, "not measured", error.splitlines()[0][:160]))
        self.data[name] = {"error": error}


# The prober


@dataclass(frozen=True)
class Reply:
    """One answered echo request."""

    seq: int
    sent: float
    received: float


class Prober:
    """bench.tunnel_probe running in the MN's namespace, its output collected by a thread."""

    def __init__(self, lab: StandardLab, target: str, *, interval: float, duration: float, host: str = MN) -> None:
        """Start probing from ``host`` (the MN unless told); stop() (or the with block's end) ends it."""
        argv = tl.python_argv(
            "bench.tunnel_probe", "--target", target, "--interval", f"{interval:g}", "--duration", f"{duration:g}"
        )
        self._proc = lab.spawn(host, argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=tl.python_env())
        self._cond = threading.Condition()
        self.sent: dict[int, float] = {}
        self.replies: list[Reply] = []
        self.send_errors = 0
        self._reader = threading.Thread(target=self._read, name="probe-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self._proc.stdout
        if stream is None:
            return
        for line in stream:
            fields = line.split()
            with self._cond:
                if fields[:1] == ["S"] and len(fields) == 3:
                    self.sent[int(fields[1])] = float(fields[2])
                elif fields[:1] == ["R"] and len(fields) == 4:
                    self.replies.append(Reply(int(fields[1]), float(fields[2]), float(fields[3])))
                elif fields[:1] == ["X"]:
                    self.send_errors += 1
                self._cond.notify_all()

    def first_reply(self, *, sent_after: float, timeout: float) -> Reply | None:
        """The first reply to a request sent at or after `sent_after`, waiting up to timeout seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.replies if r.sent >= sent_after]
                if found:
                    return min(found, key=lambda r: r.received)
                left = deadline - time.monotonic()
                if left <= 0 or self._proc.poll() is not None:
                    return None
                self._cond.wait(min(left, 0.05))

    def wait_replies(self, count: int, *, timeout: float, sent_after: float = 0.0) -> bool:
        """True once `count` replies to requests sent after `sent_after` have come back."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for r in self.replies if r.sent >= sent_after) < count:
                left = deadline - time.monotonic()
                if left <= 0 or self._proc.poll() is not None:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def longest_wait(self, start: float, end: float) -> float | None:
        """The longest an application sending at a probe's moment in [start, end] waited for an answer.

        For each request sent in the window: the time from its sending to the first reply to it *or to any
        later request*. Around a break this is the time from the last moment the old path was used to the
        first HA reply over the new one, whether the requests in between were lost or held back and
        answered late, and without knowing exactly when the change took effect. None when a request in the
        window was never followed by any reply.
        """
        with self._cond:
            requests = sorted(sent for sent in self.sent.values() if start <= sent <= end)
            replies = sorted(self.replies, key=lambda r: r.sent, reverse=True)
        if not requests:
            return None
        longest = 0.0
        earliest: float | None = None
        index = 0
        for sent in reversed(requests):
            while index < len(replies) and replies[index].sent >= sent:
                received = replies[index].received
                earliest = received if earliest is None else min(earliest, received)
                index += 1
            if earliest is None:
                return None
            longest = max(longest, earliest - sent)
        return longest

    def loss(self, start: float, end: float) -> tuple[int, int]:
        """(requests sent in [start, end], how many of them were answered)."""
        with self._cond:
            window = {seq for seq, sent in self.sent.items() if start <= sent <= end}
            answered = {r.seq for r in self.replies if r.seq in window}
        return len(window), len(answered)

    def stop(self) -> None:
        """End the prober and collect the rest of its output."""
        tl.stop(self._proc, grace=2.0)
        self._reader.join(timeout=3.0)


@contextlib.contextmanager
def probing(lab: StandardLab, *, interval: float, duration: float) -> Iterator[Prober]:
    """A Prober toward the HA for the duration of the block."""
    prober = Prober(lab, HA, interval=interval, duration=duration)
    try:
        if not prober.wait_replies(3, timeout=10.0):
            raise tl.BenchError("the MN's pings to the HA through m6t go unanswered")
        yield prober
    finally:
        prober.stop()


# The measurements


def other_nat(lab: StandardLab) -> NatName:
    """The NAT the MN is not on."""
    return "nat2" if lab.mn_attachment == "nat1" else "nat1"


def recovery_bound(settings: Settings) -> float:
    """How long a lost binding may take to come back before the measurement gives up."""
    # Beyond the 10 s target, and beyond one default keepalive interval plus retries, so that a client
    # relying on keepalives alone is still measured in a full run.
    return 25.0 if settings.quick else 45.0


def break_and_recover(probe: Prober, change: Callable[[], None], timeout: float = REATTACH_TIMEOUT) -> float | None:
    """Apply a change under probes; return the longest wait for an HA reply it caused (None: not within timeout)."""
    time.sleep(0.5)
    started = time.monotonic()
    change()
    applied = time.monotonic()
    # Recovery evidence: a reply to a request sent once the change was certainly in effect.
    reply = probe.first_reply(sent_after=applied, timeout=timeout)
    if reply is None:
        return None
    probe.wait_replies(3, timeout=5.0, sent_after=reply.received)
    return probe.longest_wait(started, reply.sent)


def measure_reattach(lab: StandardLab, moves: int, result: M6tExtrasResult) -> None:
    """Move the MN between the two NATs `moves` times; time each change → first HA reply."""
    times: list[float | None] = []
    with probing(lab, interval=PROBE_INTERVAL, duration=moves * (REATTACH_TIMEOUT + 7) + 10) as probe:
        for _ in range(moves):
            times.append(break_and_recover(probe, lambda: lab.move_mn(other_nat(lab))))
    good = [t for t in times if t is not None]
    result.data["reattach"] = {"seconds": times, "moves": moves}
    worst = max(good) if len(good) == len(times) else None
    value = _ms_summary(good) + (f"; {len(times) - len(good)} never reattached" if len(good) < len(times) else "")
    result.rows.append(
        (
            "reattach after an IPv4 change",
            value,
            f"MN moved nat1⇄nat2 {moves}x under 5 ms probes; longest wait from a request to an HA reply",
        )
    )
    result.targets.append(
        tr.Target(
            "reattach (worst move)",
            REATTACH_TIMEOUT * 1000 if worst is None else worst * 1000,
            250,
            "<=",
            "ms",
            unmeasured=worst is None,
        )
    )


def measure_flush(lab: StandardLab, tunnel: Tunnel, settings: Settings, result: M6tExtrasResult) -> None:
    """Flush the MN's NAT under 5 ms probes; time the interruption it causes.

    Under steady traffic the NAT may hand the MN's next packet a new public port (the flushed entry can
    still be in the way): the gateway then drops it like a lost binding, which is what users meet.
    """
    nat = lab.mn_attachment
    bound = recovery_bound(settings)
    helper = tunnel.processes[CLIENT].pid
    before = _mn_mapping(lab, helper)
    with probing(lab, interval=PROBE_INTERVAL, duration=bound + 10) as probe:
        seconds = break_and_recover(probe, lambda: lab.flush_nat(nat), timeout=bound)
    after = _mn_mapping(lab, helper)
    kept = before is not None and after is not None and before.outside_port == after.outside_port
    result.data["nat_flush"] = {
        "seconds": seconds,
        "bound_s": bound,
        "port_before": None if before is None else before.outside_port,
        "port_after": None if after is None else after.outside_port,
    }
    result.rows.append(
        (
            "reattach after a NAT flush",
            f"> {bound:g} s" if seconds is None else f"{seconds * 1000:.1f} ms",
            f"conntrack -F on {nat} under 5 ms probes (NAT {'kept' if kept else 'changed'} the public port); "
            "longest wait from a request to an HA reply",
        )
    )


def measure_lost_binding(lab: StandardLab, tunnel: Tunnel, settings: Settings, result: M6tExtrasResult) -> None:
    """Flush the MN's NAT so that its next packet gets a new public port (`Lab.rebind_nat`, as the demo and
    the tests do): the gateway's state no longer matches and drops it; time until the MN is answered again.
    """
    nat = lab.mn_attachment
    helper = tunnel.processes[CLIENT].pid
    mapping = _mn_mapping(lab, helper)
    if mapping is None:
        raise tl.BenchError(f"no NAT mapping of the MN toward the gateway on {nat}")
    bound = recovery_bound(settings)
    time.sleep(0.5)
    # Nothing probes while the NAT forgets and the old ports are claimed, and the helper's keepalives are
    # 30 s apart, so the MN's next packet cannot slip into its old port in between.
    lab.rebind_nat(nat, GW_WAN)
    # From the end of the command: the binding is lost for sure by then.
    lost = time.monotonic()
    prober = Prober(lab, HA, interval=0.02, duration=bound + 2)
    try:
        reply = prober.first_reply(sent_after=lost, timeout=bound)
    finally:
        prober.stop()
    after = _mn_mapping(lab, helper)
    seconds = None if reply is None else reply.received - lost
    result.data["lost_binding"] = {
        "seconds": seconds,
        "bound_s": bound,
        "port_before": mapping.outside_port,
        "port_after": None if after is None else after.outside_port,
    }
    result.rows.append(
        (
            "lost binding recovered",
            f"> {bound:g} s" if seconds is None else f"{seconds:.2f} s",
            f"conntrack -F on {nat}, the MN's public port {mapping.outside_port} then taken by another flow "
            "(Lab.rebind_nat); → first HA reply, 20 ms probes",
        )
    )
    result.targets.append(
        tr.Target(
            "lost binding recovered", bound if seconds is None else seconds, 10, "<=", "s", unmeasured=seconds is None
        )
    )


def measure_idle(lab: StandardLab, tunnel: Tunnel, settings: Settings, result: M6tExtrasResult) -> None:
    """Count the tunnel's packets and both processes' wakeups while nothing uses the tunnel."""
    interval = m6t_scenario.KEEPALIVE_INTERVAL
    window = WAKEUP_WINDOW + 1.0 if settings.quick else interval + 3.0
    port = m6t_scenario.PORT
    ruleset = (
        f"add table inet {IDLE_TABLE}\ndelete table inet {IDLE_TABLE}\n"
        f"table inet {IDLE_TABLE} {{\n"
        f"  chain input {{ type filter hook input priority -5; policy accept; udp dport {port} counter; }}\n"
        f"  chain output {{ type filter hook output priority -5; policy accept; udp sport {port} counter; }}\n"
        "}\n"
    )
    lab.load_nft(GW, ruleset)
    try:
        # The last warm-up replies are still on their way.
        time.sleep(1.0)
        start_counts = _idle_counters(lab)
        started = time.monotonic()
        time.sleep(1.0)
        pids = {role: proc.pid for role, proc in tunnel.processes.items()}
        before = {role: tm.ctx_switches(pid) for role, pid in pids.items()}
        wake_started = time.monotonic()
        time.sleep(WAKEUP_WINDOW)
        after = {role: tm.ctx_switches(pid) for role, pid in pids.items()}
        wake_seconds = time.monotonic() - wake_started
        time.sleep(max(0.0, started + window - time.monotonic()))
        end_counts = _idle_counters(lab)
        idle_seconds = time.monotonic() - started
    finally:
        lab.load_nft(GW, f"add table inet {IDLE_TABLE}\ndelete table inet {IDLE_TABLE}\n")
    to_gw = end_counts[0] - start_counts[0]
    from_gw = end_counts[1] - start_counts[1]
    wakeups = {role: (after[role][0] - before[role][0]) / wake_seconds for role in pids}
    involuntary = {role: (after[role][1] - before[role][1]) / wake_seconds for role in pids}
    result.data["idle"] = {
        "window_s": idle_seconds,
        "keepalive_interval_s": interval,
        "packets_mn_to_gw": to_gw,
        "packets_gw_to_mn": from_gw,
        "wakeups_per_s": wakeups,
        "involuntary_switches_per_s": involuntary,
        "wakeup_window_s": wake_seconds,
    }
    # Keepalives are discrete events: the raw counts over a window of one interval (plus a margin) say
    # more than a rate would.
    if idle_seconds >= interval:
        value = f"{to_gw} MN→GW, {from_gw} GW→MN in {idle_seconds:.0f} s"
    else:
        value = f"n/a: {to_gw} MN→GW, {from_gw} GW→MN in {idle_seconds:.0f} s, shorter than one interval"
    result.rows.append(
        (
            f"keepalive packets per idle interval ({interval} s)",
            value,
            f"UDP datagrams on port {port} counted by nftables on the gateway, from the end of traffic on",
        )
    )
    for role, label in ((CLIENT, "helper"), (GATEWAY, "gateway")):
        if role in wakeups:
            result.rows.append(
                (
                    f"{label} wakeups per second when idle",
                    f"{wakeups[role]:.1f} (+{involuntary[role]:.1f} involuntary)",
                    f"voluntary context switches of all its threads over {wake_seconds:.0f} s",
                )
            )


def measure_flood(lab: StandardLab, settings: Settings, result: M6tExtrasResult) -> None:
    """Flood the gateway with new sources from one IPv4 address while the MN pings the HA."""
    seconds = 4.0 if settings.quick else 8.0
    before = gateway_metrics(lab)
    argv = tl.python_argv(
        "bench.tunnel_flood",
        "--gateway",
        GW_WAN,
        "--port",
        str(m6t_scenario.PORT),
        "--prefix",
        M6T_PREFIX,
        "--home-agent",
        HA,
        "--rate",
        str(FLOOD_RATE),
        "--duration",
        f"{seconds:g}",
    )
    with probing(lab, interval=0.01, duration=seconds + 8) as probe:
        time.sleep(1.0)
        started = time.monotonic()
        flood = lab.spawn(WAN2, argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=tl.python_env())
        try:
            out, _ = flood.communicate(timeout=seconds + 15)
        except subprocess.TimeoutExpired:
            tl.stop(flood)
            raise tl.BenchError("the flooder did not finish in time") from None
        ended = time.monotonic()
        # Replies to the last requests of the window may still be in flight.
        time.sleep(1.5)
        sent, answered = probe.loss(started, ended)
    after = gateway_metrics(lab)
    summary: dict[str, Any] = {}
    with contextlib.suppress(json.JSONDecodeError, IndexError):
        summary = json.loads(out.strip().splitlines()[-1])
    loss = 100.0 * (sent - answered) / sent if sent else None
    delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    result.data["flood"] = {
        "flood": summary,
        "probes_sent": sent,
        "probes_answered": answered,
        "loss_percent": loss,
        "gateway_metrics_delta": delta,
    }
    rate = summary.get("rate")
    how = (
        f"{rate:,.0f}/s new-source m6t packets from {WAN2} for {seconds:g} s"
        if isinstance(rate, float | int)
        else "flood from wan2"
    )
    created = delta.get("m6t_gateway_state_events_total{event=created}")
    limited = delta.get("m6t_gateway_rate_limited_total")
    if created is not None and limited is not None:
        how += f"; gateway created {created:,.0f} states, rate-limited {limited:,.0f}"
    result.rows.append(
        (
            "legitimate MN ping loss under a flood",
            "-" if loss is None else f"{loss:.2f} % ({sent - answered}/{sent})",
            how + "; MN probes every 10 ms",
        )
    )
    result.targets.append(tr.Target("legitimate MN loss under flood", loss, 0.0, "<=", "%"))


_METRIC_LINE = re.compile(r"^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN|[+-]Inf)\s*$")


def gateway_metrics(lab: StandardLab) -> dict[str, float]:
    """The running gateway's metrics (name{labels without quotes} → value), empty when unreachable."""
    done = lab.run(
        GW,
        *tl.python_argv(m6t_scenario.GATEWAY_MODULE, "status", "--metrics", m6t_scenario.METRICS, "--raw"),
        check=False,
        timeout=15,
    )
    metrics: dict[str, float] = {}
    for line in done.stdout.splitlines():
        match = _METRIC_LINE.match(line.strip())
        if match is None:
            continue
        labels = (match.group(2) or "").replace('"', "")
        with contextlib.suppress(ValueError):
            metrics[match.group(1) + labels] = float(match.group(3))
    return metrics


def _idle_counters(lab: StandardLab) -> tuple[int, int]:
    data = json.loads(lab.run(GW, "nft", "-j", "list", "table", "inet", IDLE_TABLE).stdout)
    counts: dict[str, int] = {}
    for item in data.get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        for expr in rule.get("expr", []):
            if "counter" in expr:
                counts[str(rule.get("chain"))] = int(expr["counter"]["packets"])
    return counts.get("input", 0), counts.get("output", 0)


def _mn_mapping(lab: StandardLab, helper_pid: int) -> NatMapping | None:
    """The NAT mapping of the helper's current UDP socket toward the gateway.

    Mappings of helpers from earlier steps linger in conntrack until they time out, some with a longer
    timeout left than the live one; only the helper's own socket tells which mapping is in use.
    """
    try:
        mappings = lab.nat_mappings(lab.mn_attachment)
    except LabError:
        return None
    ports = _helper_ports(lab, helper_pid)
    ours = [
        m
        for m in mappings
        if m.inside_addr == lab.mn_address
        and m.remote_addr == GW_WAN
        and m.remote_port == m6t_scenario.PORT
        and m.inside_port in ports
    ]
    return max(ours, key=lambda m: (m.replied, m.timeout), default=None)


def _helper_ports(lab: StandardLab, pid: int) -> set[int]:
    """Local UDP ports of the helper's sockets on the MN's current address."""
    out = lab.run(MN, "ss", "-Hunap", check=False).stdout
    ports: set[int] = set()
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        for token in line.split():
            address, sep, port = token.rpartition(":")
            if sep and address == lab.mn_address and port.isdigit():
                ports.add(int(port))
    return ports


def _ms_summary(seconds: list[float]) -> str:
    if not seconds:
        return "never"
    ms = [s * 1000 for s in seconds]
    if len(ms) == 1:
        return f"{ms[0]:.1f} ms"
    return f"median {statistics.median(ms):.1f} ms [{min(ms):.1f}-{max(ms):.1f}] over {len(ms)}"


def run_m6t_extras(lab: StandardLab, scenario: Scenario, settings: Settings, logs: Path) -> M6tExtrasResult:
    """Every selected m6t-only measurement except the gateway core, each against a fresh m6t scenario.

    Fresh each time because the steps break things on purpose: a binding that was never recovered must
    not turn the next step into a measurement of that failure.
    """
    result = M6tExtrasResult()
    steps: dict[str, Callable[[Tunnel], None]] = {
        "idle": lambda tunnel: measure_idle(lab, tunnel, settings, result),
        "reattach": lambda tunnel: measure_reattach(lab, 2 if settings.quick else 4, result),
        "flush": lambda tunnel: measure_flush(lab, tunnel, settings, result),
        "lost-binding": lambda tunnel: measure_lost_binding(lab, tunnel, settings, result),
        "flood": lambda tunnel: measure_flood(lab, settings, result),
    }
    for name, step in steps.items():
        if name not in settings.extras:
            continue
        print(f"m6t only: {name} …", flush=True)
        logdir = logs / f"m6t-{name}"
        logdir.mkdir(parents=True, exist_ok=True)
        try:
            with scenario.up(lab, logdir) as tunnel:
                tm.wait_path(lab, tunnel.target, timeout=30.0)
                step(tunnel)
        except (tl.BenchError, LabError, OSError) as exc:
            result.failed(name, f"{type(exc).__name__}: {exc}")
        finally:
            if lab.mn_attachment != "nat1":
                lab.move_mn("nat1")
    return result


# The gateway's state table (bench/gateway_*.py, written with the gateway engineer's code)

CORE_TIMEOUT = 300.0
# What the targets need, as the gateway benchmarks print it when they have no JSON output.
CORE_PATTERNS: tuple[tuple[str, re.Pattern[str], float], ...] = (
    ("bytes_per_state", re.compile(r"m6t StateTable[^:\n]*:\s*([\d.]+)\s*B/state"), 1.0),
    ("lookups_per_s", re.compile(r"m6t sharded table:\s*([\d.]+)\s*M lookups/s"), 1e6),
    ("worst_gc_pause_ms", re.compile(r"(?i)worst slice\s+([\d.]+)\s*ms wall"), 1.0),
    ("worst_gc_pause_ms", re.compile(r"(?i)worst[^:\n]*pause[^:\n]*:\s*([\d.]+)\s*ms"), 1.0),
)


def core_modules() -> list[str]:
    """The gateway engineer's benchmark modules present in bench/."""
    here = Path(__file__).resolve().parent
    return [f"bench.{path.stem}" for path in sorted(here.glob("gateway_*.py"))]


def run_gateway_core(settings: Settings) -> M6tExtrasResult:
    """Run each bench/gateway_*.py that exists (defaults: 1 M states) and fold its figures in."""
    result = M6tExtrasResult()
    modules = core_modules()
    if not modules:
        result.rows.append(("gateway state table", "not measured", "no bench/gateway_*.py present"))
        return result
    figures: dict[str, float] = {}
    for module in modules:
        print(f"m6t only: {module} …", flush=True)
        help_text = _run_module(module, "--help", timeout=60.0)
        wants_json = help_text is not None and "--json" in help_text[1]
        try:
            done = subprocess.run(
                tl.python_argv(module, *(["--json"] if wants_json else [])),
                capture_output=True,
                text=True,
                timeout=CORE_TIMEOUT,
                check=False,
                env=tl.python_env(),
                cwd=tl.REPO_ROOT,
            )
        except subprocess.TimeoutExpired:
            result.failed(module, f"timed out after {CORE_TIMEOUT:g} s")
            continue
        if done.returncode != 0:
            result.failed(module, f"exit status {done.returncode}: {(done.stderr or done.stdout)[-300:]}")
            continue
        data = _last_json(done.stdout)
        result.data[module] = {"output": done.stdout, "json": data}
        found = core_figures(data, done.stdout)
        figures.update({k: v for k, v in found.items() if k not in figures})
    fold_core_figures(figures, result)
    result.data["gateway_core_figures"] = figures
    return result


def _run_module(module: str, *args: str, timeout: float) -> tuple[int, str] | None:
    try:
        done = subprocess.run(
            tl.python_argv(module, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=tl.python_env(),
            cwd=tl.REPO_ROOT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.returncode, done.stdout + done.stderr


def core_figures(data: Mapping[str, Any] | None, text: str) -> dict[str, float]:
    """The target figures in a gateway benchmark's JSON when it has some, else in its printed lines."""
    figures: dict[str, float] = {}
    if data is not None:
        for key, names in (
            ("bytes_per_state", ("bytes_per_state",)),
            ("lookups_per_s", ("lookups_per_s", "lookups_per_second")),
            ("worst_gc_pause_ms", ("worst_gc_pause_ms", "gc_pause_max_ms", "max_gc_pause_ms")),
        ):
            value = _find_number(data, names)
            if value is not None:
                figures[key] = value
    for key, pattern, scale in CORE_PATTERNS:
        match = pattern.search(text)
        if key not in figures and match is not None:
            figures[key] = float(match.group(1)) * scale
    return figures


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    with contextlib.suppress(json.JSONDecodeError):
        value = json.loads(text)
        if isinstance(value, dict):
            return value
    return None


def fold_core_figures(figures: Mapping[str, float], result: M6tExtrasResult) -> None:
    """Rows and targets for the gateway state-table figures that were found."""
    per_state = figures.get("bytes_per_state")
    lookups = figures.get("lookups_per_s")
    pause = figures.get("worst_gc_pause_ms")
    how = "bench/gateway_*.py, run in this session"
    result.rows.append(
        ("gateway memory per state at 1 M", "not reported" if per_state is None else f"{per_state:.0f} B", how)
    )
    result.rows.append(
        ("gateway state lookups/s at 1 M", "not reported" if lookups is None else f"{lookups:,.0f}", how)
    )
    result.rows.append(
        ("worst GC pause, 1 M states expiring", "not reported" if pause is None else f"{pause:.2f} ms", how)
    )
    result.targets.append(tr.Target("bytes per gateway state at 1 M", per_state, 300, "<=", "B"))
    result.targets.append(tr.Target("worst GC pause at 1 M expiring", pause, 10, "<=", "ms"))


def _find_number(data: Any, keys: tuple[str, ...]) -> float | None:
    """The first number stored under one of keys, searching nested objects depth-first."""
    if isinstance(data, Mapping):
        for key in keys:
            value = data.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        for value in data.values():
            found = _find_number(value, keys)
            if found is not None:
                return found
    elif isinstance(data, list):
        for item in data:
            found = _find_number(item, keys)
            if found is not None:
                return found
    return None
