"""The figures every scenario gets: iperf3 TCP and UDP runs, idle ping RTT, and the tunnel processes' CPU.

Parsing is kept apart from running (pure functions over iperf3's JSON and ping's output) so that what a
figure means can be read here in one place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench import tunnel_lab as tl
from m6t.lab import StandardLab

IPERF_PORT = 5201
IPERF_HOST = "ha"
# The namespaces' net.core.rmem_max/wmem_max (4 MiB here); asking more would be silently capped.
UDP_SOCKET_BUFFER = "4M"
CLIENT_HOST = "mn"


@dataclass(frozen=True)
class IperfTest:
    """One kind of iperf3 run, always started from the MN toward the HA."""

    key: str
    label: str
    udp_length: int | None = None
    reverse: bool = False

    def argv(self, target: str, seconds: float) -> list[str]:
        """The iperf3 client command line."""
        argv = ["iperf3", "-c", target, "-p", str(IPERF_PORT), "-J", "-t", f"{seconds:g}", "--connect-timeout", "3000"]
        if self.reverse:
            argv.append("-R")
        if self.udp_length is not None:
            # -b 0: unlimited; the figure is what the receiver got, whatever the sender managed to push.
            # -w: the HA's iperf3 shares two cores with everything else, and a tunnel that writes in
            # batches overflows its default 208 KiB receive buffer: without a larger one the receiver, not
            # the tunnel, would set the figure (the path accounting shows it as "ha sock" drops).
            argv += ["-u", "-l", str(self.udp_length), "-b", "0", "-w", UDP_SOCKET_BUFFER]
        return argv


TCP_UP = IperfTest("tcp_up", "TCP MN→HA")
TCP_DOWN = IperfTest("tcp_down", "TCP HA→MN", reverse=True)
UDP_1200 = IperfTest("udp1200", "UDP 1200 B MN→HA", udp_length=1200)
UDP_64 = IperfTest("udp64", "UDP 64 B MN→HA", udp_length=64)
IPERF_TESTS: tuple[IperfTest, ...] = (TCP_UP, TCP_DOWN, UDP_1200, UDP_64)


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds in user and kernel mode."""

    user: float
    system: float

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user - other.user, self.system - other.system)


@dataclass(frozen=True)
class IperfResult:
    """What one iperf3 run delivered, seen from the receiver, and what the tunnel processes spent on it."""

    test: str
    seconds: float
    bytes_received: int
    # UDP: datagrams that reached the receiver; TCP: data segments, bytes_received / MSS.
    packets: int
    packets_sent: int | None
    mss: int | None
    retransmits: int | None
    cpu: dict[str, CpuTimes] = field(default_factory=dict)
    # UDP runs: where the datagrams went (PATH_STEPS), as counter deltas over the run.
    path: dict[str, int] = field(default_factory=dict)

    @property
    def mbit_per_s(self) -> float:
        """Goodput in Mbit/s."""
        return self.bytes_received * 8 / self.seconds / 1e6 if self.seconds > 0 else 0.0

    @property
    def packets_per_s(self) -> float:
        """Delivered packets per second."""
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    def cpu_per_packet_us(self, role: str) -> CpuTimes | None:
        """Microseconds of the role's process CPU per delivered packet (user, system)."""
        cpu = self.cpu.get(role)
        if cpu is None or self.packets <= 0:
            return None
        return CpuTimes(cpu.user / self.packets * 1e6, cpu.system / self.packets * 1e6)


class IperfError(tl.BenchError):
    """iperf3 failed or said something unexpected."""


def parse_iperf(test: IperfTest, output: str) -> IperfResult:
    """Read an iperf3 (3.x) client JSON report into the receiver's view of the run."""
    try:
        data: dict[str, Any] = json.loads(output)
    except json.JSONDecodeError as exc:
        raise IperfError(f"iperf3 gave no JSON report: {output[-300:]!r}") from exc
    if "error" in data:
        raise IperfError(f"iperf3: {data['error']}")
    end: dict[str, Any] = data.get("end", {})
    received: dict[str, Any] | None = end.get("sum_received")
    sent: dict[str, Any] = end.get("sum_sent") or end.get("sum") or {}
    if received is None:
        raise IperfError("iperf3 report has no receiver summary (end.sum_received); iperf3 >= 3.1 needed")
    seconds = float(received.get("seconds", 0.0))
    byte_count = int(received.get("bytes", 0))
    start: dict[str, Any] = data.get("start", {})
    if test.udp_length is not None:
        # The receiver counts "packets" up to the highest sequence number seen and the gaps as lost.
        total = int(received.get("packets", 0))
        lost = int(received.get("lost_packets", 0))
        return IperfResult(
            test=test.key,
            seconds=seconds,
            bytes_received=byte_count,
            packets=max(0, total - lost),
            packets_sent=int(sent["packets"]) if "packets" in sent else None,
            mss=None,
            retransmits=None,
        )
    mss_raw = start.get("tcp_mss_default")
    mss = int(mss_raw) if isinstance(mss_raw, int) and mss_raw > 0 else None
    retransmits = sent.get("retransmits")
    return IperfResult(
        test=test.key,
        seconds=seconds,
        bytes_received=byte_count,
        packets=math.ceil(byte_count / mss) if mss else 0,
        packets_sent=None,
        mss=mss,
        retransmits=int(retransmits) if isinstance(retransmits, int) else None,
    )


def process_cpu(proc: psutil.Process) -> CpuTimes:
    """CPU time of a process, its threads and the children it waited for, plus its live descendants."""
    total_user = total_system = 0.0
    procs = [proc]
    with contextlib.suppress(psutil.Error):
        procs += proc.children(recursive=True)
    for each in procs:
        try:
            times = each.cpu_times()
        except psutil.Error:
            continue
        total_user += times.user + times.children_user
        total_system += times.system + times.children_system
    return CpuTimes(total_user, total_system)


def cpu_snapshot(processes: Mapping[str, psutil.Process]) -> dict[str, CpuTimes]:
    """CPU times of each role's process."""
    return {role: process_cpu(proc) for role, proc in processes.items()}


# The steps of a UDP run's path that kernel counters can see, in path order.
PATH_STEPS: tuple[tuple[str, str], ...] = (
    ("mn_lost_before_tunnel", "dropped on the MN before the tunnel process read them (queue full)"),
    ("mn_tunnel_read", "read from its TUN by the MN's tunnel process"),
    ("gw_socket_drops", "dropped at the gateway's UDP socket (receive buffer full)"),
    ("gw_tunnel_written", "written to its TUN by the gateway's tunnel process"),
    ("ha_socket_drops", "dropped at the HA's iperf3 socket (receive buffer full)"),
)


def _snmp(lab: StandardLab, host: str) -> dict[str, int]:
    """UDP counters of a namespace (IPv4 and IPv6 summed under the IPv6 names)."""
    text = lab.run(host, "cat", "/proc/net/snmp", "/proc/net/snmp6", check=False).stdout
    counters: dict[str, int] = {}
    lines = text.splitlines()
    for header, values in itertools.pairwise(lines):
        if header.startswith("Udp:") and values.startswith("Udp:"):
            for name, value in zip(header.split()[1:], values.split()[1:], strict=False):
                with contextlib.suppress(ValueError):
                    counters[f"Udp6{name}"] = counters.get(f"Udp6{name}", 0) + int(value)
    for line in lines:
        fields = line.split()
        if len(fields) == 2 and fields[0].startswith("Udp6") and fields[1].isdigit():
            counters[fields[0]] = counters.get(fields[0], 0) + int(fields[1])
    return counters


def _link(lab: StandardLab, host: str, ifname: str) -> dict[str, int]:
    out = lab.run(host, "ip", "-s", "-j", "link", "show", "dev", ifname, check=False).stdout
    try:
        stats = json.loads(out)[0]["stats64"]
    except (json.JSONDecodeError, IndexError, KeyError):
        return {}
    return {
        "rx_packets": int(stats["rx"]["packets"]),
        "tx_packets": int(stats["tx"]["packets"]),
        "tx_dropped": int(stats["tx"]["dropped"]),
    }


def path_counters(lab: StandardLab, tun: Mapping[str, str]) -> dict[str, int]:
    """Cumulative counters behind PATH_STEPS; tun maps host → the tunnel's TUN device there."""
    mn, gw, ha = _snmp(lab, CLIENT_HOST), _snmp(lab, "gw"), _snmp(lab, IPERF_HOST)
    counters = {
        # A full queue in front of the TUN makes the sender's UDP send fail with ENOBUFS, which the
        # kernel counts as a send-buffer error when the socket does not ask for errors.
        "mn_lost_before_tunnel": mn.get("Udp6SndbufErrors", 0),
        "gw_socket_drops": gw.get("Udp6RcvbufErrors", 0),
        "ha_socket_drops": ha.get("Udp6RcvbufErrors", 0),
    }
    if CLIENT_HOST in tun:
        link = _link(lab, CLIENT_HOST, tun[CLIENT_HOST])
        counters["mn_lost_before_tunnel"] += link.get("tx_dropped", 0)
        if "tx_packets" in link:
            counters["mn_tunnel_read"] = link["tx_packets"]
    if "gw" in tun:
        link = _link(lab, "gw", tun["gw"])
        if "rx_packets" in link:
            counters["gw_tunnel_written"] = link["rx_packets"]
    return counters


def run_iperf(
    lab: StandardLab,
    test: IperfTest,
    target: str,
    seconds: float,
    processes: Mapping[str, psutil.Process],
    tun: Mapping[str, str],
) -> IperfResult:
    """One iperf3 run from the MN to a fresh one-off server on the HA, with the tunnel CPU spent meanwhile."""
    server = tl.spawn(lab, IPERF_HOST, ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)])
    udp = test.udp_length is not None
    try:
        tl.wait_for(
            lambda: tl.tcp_listening(lab, IPERF_HOST, IPERF_PORT), what="the iperf3 server to listen", timeout=5
        )
        path_before = path_counters(lab, tun) if udp else {}
        before = cpu_snapshot(processes)
        done = lab.run(CLIENT_HOST, *test.argv(target, seconds), check=False, timeout=seconds + 20)
        after = cpu_snapshot(processes)
        path_after = path_counters(lab, tun) if udp else {}
        result = parse_iperf(test, done.stdout)
    finally:
        tl.stop(server, grace=1.0)
    cpu = {role: after[role] - before[role] for role in after if role in before}
    path = {key: path_after[key] - path_before[key] for key in path_after if key in path_before}
    return dataclasses.replace(result, cpu=cpu, path=path)


@dataclass(frozen=True)
class PingResult:
    """Round trips of an idle-link ping series, in milliseconds."""

    sent: int
    rtts_ms: tuple[float, ...]

    @property
    def loss_percent(self) -> float:
        """Share of requests without a reply."""
        return 100.0 * (self.sent - len(self.rtts_ms)) / self.sent if self.sent else 100.0

    @property
    def avg_ms(self) -> float | None:
        """Mean round trip."""
        return sum(self.rtts_ms) / len(self.rtts_ms) if self.rtts_ms else None

    @property
    def p99_ms(self) -> float | None:
        """99th percentile round trip (nearest rank)."""
        return percentile(self.rtts_ms, 99.0)


_PING_REPLY = re.compile(r"icmp_seq=(\d+)\b.*?\btime[=<]([\d.]+) ms")


def parse_ping(output: str, sent: int) -> PingResult:
    """Reply round trips from iputils ping output (duplicates counted once)."""
    seen: dict[int, float] = {}
    for match in _PING_REPLY.finditer(output):
        seen.setdefault(int(match.group(1)), float(match.group(2)))
    return PingResult(sent=sent, rtts_ms=tuple(seen[seq] for seq in sorted(seen)))


def run_ping(lab: StandardLab, target: str, *, count: int, interval: float) -> PingResult:
    """Ping the target from the MN `count` times, `interval` s apart, nothing else running."""
    argv = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", target]
    done = lab.run(CLIENT_HOST, *argv, check=False, timeout=count * interval + 10)
    return parse_ping(done.stdout, count)


def path_works(lab: StandardLab, target: str, *, size: int | None = None, count: int = 3) -> bool:
    """True when `count` pings (of `size` payload bytes, not fragmented, when given) are all answered."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.05", "-W", "1"]
    if size is not None:
        argv += ["-M", "do", "-s", str(size)]
    done = lab.run(CLIENT_HOST, *argv, target, check=False, timeout=count * 1.1 + 5)
    return done.returncode == 0


def wait_path(lab: StandardLab, target: str, *, timeout: float) -> float:
    """Wait (bounded) until the MN reaches the target; return how long it took."""
    started = time.monotonic()
    tl.wait_for(lambda: path_works(lab, target, count=1), what=f"MN to reach {target}", timeout=timeout, interval=0.1)
    return time.monotonic() - started


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def ctx_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches summed over every thread of a process.

    /proc/PID/status counts the main thread only; a thread pool or a second event loop would hide there.
    """
    voluntary = involuntary = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return (0, 0)
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("voluntary_ctxt_switches:"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        involuntary += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return voluntary, involuntary


def run_quiet(argv: Sequence[str], timeout: float = 10.0) -> str:
    """stdout of a local command, or '' when it fails (used for tool versions)."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout or done.stderr
