"""Turning per-round figures into medians, ratios to socat, target verdicts and a markdown report."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bench.scenarios.base import CLIENT, GATEWAY
from bench.tunnel_measure import IPERF_TESTS, PATH_STEPS

BASELINE = "socat"

Figures = dict[str, float | None]


@dataclass(frozen=True)
class Stat:
    """Median, minimum and maximum of one figure over the rounds that produced it."""

    median: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Column:
    """A figure shown in the main table."""

    key: str
    label: str
    digits: int
    # Throughputs are compared as ratios, latencies as differences.
    compare: Literal["ratio", "difference"]


COLUMNS: tuple[Column, ...] = (
    Column("tcp_up_mbps", "TCP MN→HA Mbit/s", 0, "ratio"),
    Column("tcp_down_mbps", "TCP HA→MN Mbit/s", 0, "ratio"),
    Column("udp1200_kpps", "UDP 1200 B kpps", 1, "ratio"),
    Column("udp64_kpps", "UDP 64 B kpps", 1, "ratio"),
    Column("rtt_avg_ms", "RTT avg ms", 3, "difference"),
    Column("rtt_p99_ms", "RTT p99 ms", 3, "difference"),
)

CPU_LABELS = {"tcp_up": "TCP MN→HA", "tcp_down": "TCP HA→MN", "udp1200": "UDP 1200 B", "udp64": "UDP 64 B"}


def cpu_key(test: str, role: str, mode: str) -> str:
    """The figure key of a CPU-per-packet value (mode: 'user' or 'sys')."""
    return f"cpu_{test}_{role}_{mode}_us"


def summarize(rounds: Iterable[Mapping[str, float | None]]) -> dict[str, Stat]:
    """Median/min/max per figure key over rounds; rounds lacking a figure are left out of that figure."""
    values: dict[str, list[float]] = {}
    for figures in rounds:
        for key, value in figures.items():
            if value is not None:
                values.setdefault(key, []).append(value)
    return {key: Stat(statistics.median(vals), min(vals), max(vals), len(vals)) for key, vals in values.items() if vals}


def ratio(value: Stat | None, base: Stat | None) -> float | None:
    """Ratio of medians, None when either side is missing or the base is zero."""
    if value is None or base is None or base.median == 0:
        return None
    return value.median / base.median


def difference(value: Stat | None, base: Stat | None) -> float | None:
    """Difference of medians."""
    if value is None or base is None:
        return None
    return value.median - base.median


@dataclass(frozen=True)
class Target:
    """One of the issue's targets for m6t, and whether the measured value meets it."""

    name: str
    measured: float | None
    limit: float
    op: Literal[">=", "<="]
    unit: str
    basis: str = ""
    # The measurement ran into its time bound: `measured` holds the bound, the real value is larger.
    unmeasured: bool = False

    @property
    def shown(self) -> str:
        """The measured value as the report prints it."""
        if self.measured is None:
            return "-"
        value = f"{self.measured:.3g} {self.unit}".strip()
        return f"> {value}" if self.unmeasured else value

    @property
    def verdict(self) -> str:
        """PASS, MISS, or n/a when there is nothing measured."""
        if self.measured is None:
            return "n/a"
        if self.unmeasured:
            return "MISS" if self.op == "<=" and self.measured >= self.limit else "n/a"
        ok = self.measured >= self.limit if self.op == ">=" else self.measured <= self.limit
        return "PASS" if ok else "MISS"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "measured": self.measured,
            "limit": self.limit,
            "op": self.op,
            "unit": self.unit,
            "basis": self.basis,
            "at_time_bound": self.unmeasured,
            "verdict": self.verdict,
        }


def tunnel_targets(summaries: Mapping[str, Mapping[str, Stat]]) -> list[Target]:
    """The data-path targets of m6t, all relative to socat measured in the same run."""
    m6t, base = summaries.get("m6t", {}), summaries.get(BASELINE, {})
    return [
        Target("TCP MN→HA ÷ socat", ratio(m6t.get("tcp_up_mbps"), base.get("tcp_up_mbps")), 3.0, ">=", "x"),
        Target("TCP HA→MN ÷ socat", ratio(m6t.get("tcp_down_mbps"), base.get("tcp_down_mbps")), 3.0, ">=", "x"),
        Target("UDP 1200 B pps ÷ socat", ratio(m6t.get("udp1200_kpps"), base.get("udp1200_kpps")), 2.2, ">=", "x"),
        Target(
            "RTT p99 added over socat",
            difference(m6t.get("rtt_p99_ms"), base.get("rtt_p99_ms")),
            0.5,
            "<=",
            "ms",
        ),
    ]


def fmt(value: float | None, digits: int) -> str:
    """A number with fixed decimals, or a dash."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def fmt_stat(stat: Stat | None, digits: int) -> str:
    """median [min-max], or the median alone when there is one round."""
    if stat is None:
        return "-"
    if stat.n == 1:
        return fmt(stat.median, digits)
    return f"{fmt(stat.median, digits)} [{fmt(stat.low, digits)}-{fmt(stat.high, digits)}]"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def path_section(shown: Sequence[str], summaries: Mapping[str, Mapping[str, Stat]]) -> list[str]:
    """Where the UDP runs' datagrams went, from kernel counters: tells a slow tunnel from a slow receiver."""
    out = [
        "## UDP runs: where the datagrams went, kpps (median)",
        "",
        "sent: iperf3 sender; before: dropped in the MN's queue to the TUN; read: by the MN tunnel process; "
        "gw sock: dropped at the gateway's UDP socket; written: to the gateway's TUN; ha sock: dropped at "
        "the HA receiver's socket; delivered: iperf3 receiver.",
        "",
    ]
    steps = ("sent", *(f"path_{step}" for step, _ in PATH_STEPS), "delivered")
    labels = ("sent", "before", "read", "gw sock", "written", "ha sock", "delivered")
    rows = []
    for test in ("udp1200", "udp64"):
        for name in shown:
            summary = summaries[name]
            cells = [name, CPU_LABELS[test]]
            for step in steps:
                key = f"{test}_kpps" if step == "delivered" else f"{test}_{step}_kpps"
                stat = summary.get(key)
                cells.append("-" if stat is None else f"{stat.median:.1f}")
            rows.append(cells)
    return [*out, *table(["scenario", "run", *labels], rows), ""]


def render(
    *,
    scenarios: Sequence[str],
    titles: Mapping[str, str],
    summaries: Mapping[str, Mapping[str, Stat]],
    skipped: Mapping[str, str],
    targets: Sequence[Target],
    extras: Sequence[tuple[str, str, str]],
    header: Sequence[str],
    notes: Sequence[str],
    rounds: int,
) -> str:
    """The whole markdown report."""
    out: list[str] = ["# m6t tunnel benchmark", ""]
    out += [f"- {line}" for line in header]
    out.append("")
    shown = [name for name in scenarios if name in summaries]
    out += [f"## Data path: median [min-max] over {rounds} round(s)", ""]
    out += table(
        ["scenario", *(col.label for col in COLUMNS)],
        ([name, *(fmt_stat(summaries[name].get(col.key), col.digits) for col in COLUMNS)] for name in shown),
    )
    for name, reason in skipped.items():
        out.append(f"\n{name}: not measured ({reason})")
    out.append("")
    if BASELINE in summaries:
        base = summaries[BASELINE]
        out += ["## Relative to socat (ratio of medians; RTT as difference of medians in ms)", ""]
        rows = []
        for name in shown:
            cells = [name]
            for col in COLUMNS:
                if col.compare == "ratio":
                    value = ratio(summaries[name].get(col.key), base.get(col.key))
                    cells.append("-" if value is None else f"{value:.2f}x")
                else:
                    value = difference(summaries[name].get(col.key), base.get(col.key))
                    cells.append("-" if value is None else f"{value:+.3f}")
            rows.append(cells)
        out += table(["scenario", *(col.label for col in COLUMNS)], rows)
        out.append("")
    out += [
        "## Tunnel process CPU per delivered packet, µs user + system (median)",
        "",
        "UDP: per datagram the iperf3 receiver got; TCP: per data segment (received bytes ÷ MSS).",
        "",
    ]
    cpu_rows = []
    for name in shown:
        for role in (CLIENT, GATEWAY):
            cells = [name, role]
            present = False
            for test in IPERF_TESTS:
                user = summaries[name].get(cpu_key(test.key, role, "user"))
                system = summaries[name].get(cpu_key(test.key, role, "sys"))
                if user is None or system is None:
                    cells.append("-")
                    continue
                present = True
                cells.append(f"{user.median:.1f} + {system.median:.1f}")
            if present:
                cpu_rows.append(cells)
    if cpu_rows:
        out += table(["scenario", "process", *(CPU_LABELS[t.key] for t in IPERF_TESTS)], cpu_rows)
    else:
        out.append("(no tunnel processes measured)")
    out.append("")
    out += path_section(shown, summaries)
    if extras:
        out += ["## m6t only", ""]
        out += table(["figure", "value", "how"], extras)
        out.append("")
    if targets:
        out += ["## Targets (m6t)", ""]
        out += table(
            ["target", "measured", "required", "result"],
            (
                [
                    t.name,
                    t.shown,
                    f"{t.op} {t.limit:g} {t.unit}".strip(),
                    t.verdict + (f" ({t.basis})" if t.basis else ""),
                ]
                for t in targets
            ),
        )
        out.append("")
    if notes:
        out += ["## Notes", ""]
        out += [f"- {note}" for note in notes]
        out.append("")
    out += ["## Scenarios", ""]
    out += [f"- **{name}**: {titles[name]}" for name in scenarios if name in titles]
    return "\n".join(out) + "\n"
