"""The gateway's metrics as Prometheus text (exposition format 0.0.4), and back for ``m6t-gateway status``.

Pure: built from the core's counters plus whatever the driver adds, rendered to text, parsed from text.
Serving it is :mod:`m6t.gateway.metrics_server`'s job.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from m6t.gateway.core import GatewayCore
from m6t.gateway.counters import Counter, Drop

PREFIX = "m6t_gateway_"

Labels = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric family: a name (without the ``m6t_gateway_`` prefix), its type, help and samples."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    samples: Sequence[tuple[Labels, float]] = field(default_factory=tuple)

    @classmethod
    def single(cls, name: str, kind: Literal["counter", "gauge"], help: str, value: float) -> Metric:
        return cls(name, kind, help, (({}, value),))


def core_metrics(core: GatewayCore) -> list[Metric]:
    """Everything the sans-I/O core knows: states, traffic, drops, garbage collection."""
    c = core.counters
    table = core.table
    return [
        Metric(
            "states",
            "gauge",
            "States in the table by kind (expired ones count until collected).",
            (({"kind": "temporary"}, table.temporary), ({"kind": "active"}, table.active)),
        ),
        Metric(
            "received_packets_total",
            "counter",
            "Packets received: UDP datagrams from mobile nodes, IPv6 packets from the Home Agent side.",
            (({"side": "mn"}, c[Counter.MN_PACKETS]), ({"side": "ha"}, c[Counter.HA_PACKETS])),
        ),
        Metric(
            "received_bytes_total",
            "counter",
            "Bytes received (UDP payloads from mobile nodes, IPv6 packets from the Home Agent side).",
            (({"side": "mn"}, c[Counter.MN_BYTES]), ({"side": "ha"}, c[Counter.HA_BYTES])),
        ),
        Metric(
            "forwarded_packets_total",
            "counter",
            "Packets forwarded, by direction (keepalive replies excluded).",
            (({"direction": "to_ha"}, c[Counter.TO_HA_PACKETS]), ({"direction": "to_mn"}, c[Counter.TO_MN_PACKETS])),
        ),
        Metric(
            "forwarded_bytes_total",
            "counter",
            "Bytes of IPv6 forwarded, by direction.",
            (({"direction": "to_ha"}, c[Counter.TO_HA_BYTES]), ({"direction": "to_mn"}, c[Counter.TO_MN_BYTES])),
        ),
        Metric.single("keepalive_replies_total", "counter", "Keepalive replies sent.", c[Counter.KEEPALIVES]),
        Metric(
            "drops_total",
            "counter",
            "Packets dropped, by the side they came from and the reason.",
            tuple(
                ({"side": drop.side.value, "reason": drop.reason}, core.drops[drop])
                for drop in Drop
                if core.access is not None or drop not in ENROLLED_DROPS
            ),
        ),
        Metric.single(
            "rate_limited_total",
            "counter",
            "New states refused by the per-IPv4-address rate limit.",
            core.drops[Drop.MN_RATE_LIMITED],
        ),
        Metric(
            "state_events_total",
            "counter",
            "State life cycle: created (temporary), promoted (active), restored at start, expired by kind.",
            (
                ({"event": "created"}, c[Counter.STATES_CREATED]),
                ({"event": "promoted"}, c[Counter.STATES_PROMOTED]),
                ({"event": "restored"}, c[Counter.STATES_RESTORED]),
                ({"event": "expired_temporary"}, table.expired_temporary),
                ({"event": "expired_active"}, table.expired_active),
            ),
        ),
        Metric.single("gc_slices_total", "counter", "Garbage-collection slices run.", table.gc_slices),
        Metric.single(
            "gc_entries_visited_total", "counter", "Expiry-wheel entries looked at by collection.", table.gc_visited
        ),
        Metric.single(
            "gc_entries_refiled_total",
            "counter",
            "Entries found refreshed by traffic and filed again under their new deadline.",
            table.gc_refiled,
        ),
        Metric.single(
            "rate_limiter_addresses",
            "gauge",
            "IPv4 addresses the rate limiter remembers (some may be back to a full allowance).",
            len(core.limiter),
        ),
        *_access_metrics(core),
    ]


ENROLLED_DROPS = frozenset(drop for drop in Drop if drop >= Drop.MN_UNAUTHENTICATED)
"""Refusals only an enrolled gateway makes: an open one does not list them."""


def _access_metrics(core: GatewayCore) -> list[Metric]:
    access = core.access
    if access is None:
        return []
    return [
        Metric.single("access_keys", "gauge", "Keys that may create states (enrolled mode).", access.key_count),
        Metric.single(
            "access_replay_cache_entries",
            "gauge",
            "Nonces of verified access headers remembered against replays.",
            len(access.cache),
        ),
    ]


_LABEL_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render(metrics: Iterable[Metric]) -> str:
    lines: list[str] = []
    for metric in metrics:
        name = PREFIX + metric.name
        lines.append(f"# HELP {name} {metric.help}")
        lines.append(f"# TYPE {name} {metric.kind}")
        for labels, value in metric.samples:
            if labels:
                inner = ",".join(f'{key}="{str(val).translate(_LABEL_ESCAPES)}"' for key, val in labels.items())
                lines.append(f"{name}{{{inner}}} {_number(value)}")
            else:
                lines.append(f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')
_UNESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition; comments and malformed lines are skipped."""
    samples: list[Sample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, label_text, value_text = match.groups()
        labels = {
            key: re.sub(r"\\[\\\"n]", lambda m: _UNESCAPES[m.group(0)], val)
            for key, val in _LABEL.findall(label_text or "")
        }
        try:
            value = float(value_text)
        except ValueError:
            continue
        samples.append(Sample(name, labels, value))
    return samples


def _value(samples: Sequence[Sample], name: str, **labels: str) -> float:
    for sample in samples:
        if sample.name == PREFIX + name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return 0.0


def _count(value: float) -> str:
    return f"{int(value):,}".replace(",", " ") if value == int(value) else f"{value:g}"


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _restart_line(s: Sequence[Sample]) -> str:
    if not any(sample.name == PREFIX + "state_saves_total" for sample in s):
        return "restart:     states not kept (no state directory)"
    v = _value
    line = f"restart:     {_count(v(s, 'restored_states', outcome='restored'))} states restored at start"
    lost = [
        f"{_count(v(s, 'restored_states', outcome=outcome))} {label}"
        for outcome, label in (("expired", "expired"), ("port_gone", "on ports gone"), ("refused", "refused"))
        if v(s, "restored_states", outcome=outcome)
    ]
    if lost:
        line += f" ({', '.join(lost)})"
    if v(s, "state_file_refused"):
        line += " - the saved file was REFUSED (see the log)"
    line += (
        f"; {_count(v(s, 'state_saves_total'))} saves, last {_count(v(s, 'state_save_last_states'))} states "
        f"in {v(s, 'state_save_last_seconds') * 1000:.1f} ms"
    )
    errors = v(s, "state_save_errors_total")
    return line + (f", {_count(errors)} FAILED" if errors else "")


def format_status(text: str) -> str:
    """A human-readable summary of the gateway's metrics text."""
    s = parse(text)
    v = _value
    lines = [
        f"states:      {_count(v(s, 'states', kind='active'))} active, "
        f"{_count(v(s, 'states', kind='temporary'))} temporary",
        f"mn -> ha:    {_count(v(s, 'forwarded_packets_total', direction='to_ha'))} packets, "
        f"{_bytes(v(s, 'forwarded_bytes_total', direction='to_ha'))} "
        f"(received {_count(v(s, 'received_packets_total', side='mn'))})",
        f"ha -> mn:    {_count(v(s, 'forwarded_packets_total', direction='to_mn'))} packets, "
        f"{_bytes(v(s, 'forwarded_bytes_total', direction='to_mn'))} "
        f"(received {_count(v(s, 'received_packets_total', side='ha'))})",
        f"keepalives:  {_count(v(s, 'keepalive_replies_total'))} answered",
        f"states made: {_count(v(s, 'state_events_total', event='created'))} created, "
        f"{_count(v(s, 'state_events_total', event='promoted'))} promoted, "
        f"{_count(v(s, 'state_events_total', event='expired_temporary'))} temporary and "
        f"{_count(v(s, 'state_events_total', event='expired_active'))} active expired",
        f"rate limit:  {_count(v(s, 'rate_limited_total'))} new states refused",
        _restart_line(s),
        f"gc:          {_count(v(s, 'gc_slices_total'))} slices, "
        f"{_count(v(s, 'gc_entries_visited_total'))} entries visited, "
        f"worst slice {v(s, 'gc_slice_max_seconds') * 1000:.2f} ms",
    ]
    if any(sample.name == PREFIX + "fastlane_enabled" for sample in s):
        lines.append(_fastlane_line(s))
    drops = [
        sample
        for sample in s
        if sample.name == PREFIX + "drops_total" and sample.value > 0 and "reason" in sample.labels
    ]
    if drops:
        lines.append("drops:")
        for sample in sorted(drops, key=lambda d: -d.value):
            lines.append(f"  {sample.labels.get('side', '?')}/{sample.labels['reason']}: {_count(sample.value)}")
    else:
        lines.append("drops:       none")
    sockets = sorted(
        {sample.labels["port"] for sample in s if "port" in sample.labels and sample.name.startswith(PREFIX + "udp_")},
        key=lambda p: int(p) if p.isdigit() else 0,
    )
    for port in sockets:
        lines.append(
            f"udp {port}: {_count(v(s, 'udp_received_datagrams_total', port=port))} in "
            f"({_count(v(s, 'udp_gro_buffers_total', port=port))} GRO buffers), "
            f"{_count(v(s, 'udp_sent_datagrams_total', port=port))} out "
            f"({_count(v(s, 'udp_gso_sends_total', port=port))} GSO sends), "
            f"{_count(v(s, 'udp_send_dropped_total', port=port))} send drops; "
            f"GSO {'on' if v(s, 'udp_gso_enabled', port=port) else 'off'}, "
            f"GRO {'on' if v(s, 'udp_gro_enabled', port=port) else 'off'}"
        )
    uptime = v(s, "uptime_seconds")
    if uptime:
        lines.append(f"uptime:      {uptime:.0f} s")
    return "\n".join(lines) + "\n"


def _fastlane_line(s: Sequence[Sample]) -> str:
    if not _value(s, "fastlane_enabled"):
        return "fast lane:   off (floods reach the gateway process unpoliced)"
    rules = {
        sample.labels.get("rule", ""): sample.value for sample in s if sample.name == PREFIX + "fastlane_packets_total"
    }
    if not rules:
        return "fast lane:   on (kernel counters unreadable)"
    return (
        f"fast lane:   {_count(rules.get('established', 0))} established packets; policed in the kernel: "
        f"{_count(rules.get('policed_per_ipv4', 0))} over a source's rate, "
        f"{_count(rules.get('policed_ceiling', 0))} over the ceiling; "
        f"{_count(rules.get('passed', 0))} passed to the gateway"
    )
