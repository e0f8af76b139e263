"""A focused data-path benchmark: m6t against a socat TUN⇄UDP tunnel, interleaved in one run, as ratios.

    python -m bench.datapath_quick [--rounds 3] [--seconds 3] [--variant NAME=SPEC ...] [--tests tcp_up,...]

Each round brings every tunnel up in turn in one standard lab (mn → nat1 → WAN → gw → ha) and runs, from
the MN toward the HA (fd00:ab::1): iperf3 TCP MN→HA, TCP HA→MN (-R), UDP 1200 B (-b 0) and an idle ping
series (``--tests`` also knows ``udp64``); the medians over the rounds are compared with socat's from the
same run.  ``--variant`` adds m6t runs with ``M6T_DATAPATH=SPEC`` (see :mod:`m6t.platform.linux.offload`),
e.g. ``--variant plain=plain`` or ``--variant tso=tso``; ``SPEC@DIR`` runs the m6t of another source tree
for an A/B, e.g. ``git archive HEAD~1 | tar -x -C /tmp/old`` and ``--variant before=@/tmp/old``.

Also printed per run: the tunnel processes' CPU (user+system seconds) and the MN's UDP receive-buffer
errors (``RcvbufErrors``), the symptom of a reader that falls behind.  The idle ping's 99th percentile is
the worst of 50 by default: on a shared machine it mostly measures the neighbours (``--pings 200``).  This
is not the full benchmark (``bench.tunnels``): it exists to iterate on the data path quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from m6t.lab import GW, GW_WAN, HA, HA_HOST, MN, Lab, StandardLab, configs, unavailable_reason

REPO = Path(__file__).resolve().parent.parent
MTU = 1472
IPERF_PORT = 5201
SOCAT_PORT = 5500
M6T_PORT = 3544
SOCAT_IF = "sc0"
M6T_GW_IF = "m6tgw0"
M6T_MN_IF = "m6t0"
TESTS = ("tcp_up", "tcp_down", "udp1200", "rtt")

GATEWAY_CONFIG = configs.gateway_config(ports=(M6T_PORT,), interface=M6T_GW_IF, mtu=MTU)
CLIENT_CONFIG = configs.client_config(ports=(M6T_PORT,), interface=M6T_MN_IF, mtu=MTU, keepalive=30)


class BenchError(RuntimeError):
    pass


def wait(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise BenchError(f"timed out waiting for {what}")


def has_link(lab: StandardLab, host: str, ifname: str) -> bool:
    return lab.run(host, "ip", "link", "show", "dev", ifname, check=False).returncode == 0


def env_for(spec: str | None) -> dict[str, str]:
    """The environment of the m6t processes; ``spec`` is ``M6T_DATAPATH``, optionally ``@`` another tree."""
    tree = REPO
    if spec is not None and "@" in spec:
        spec, _, other = spec.partition("@")
        tree = Path(other)
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
    env.pop("M6T_DATAPATH", None)
    if spec:
        env["M6T_DATAPATH"] = spec
    return env


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (0 once it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


@dataclass
class Tunnel:
    target: str
    pids: dict[str, int]


@contextlib.contextmanager
def socat_tunnel(lab: StandardLab, workdir: Path) -> Iterator[Tunnel]:
    procs: list[subprocess.Popen[Any]] = []
    try:
        for host, inner in ((GW, "fd00:5c::1"), (MN, "fd00:5c::2")):
            lab.run(host, "ip", "tuntap", "add", "dev", SOCAT_IF, "mode", "tun")
            lab.write_sysctl(host, f"net.ipv6.conf.{SOCAT_IF}.disable_ipv6", 0)
            lab.write_sysctl(host, f"net.ipv6.conf.{SOCAT_IF}.accept_dad", 0)
            lab.run(host, "ip", "link", "set", "dev", SOCAT_IF, "mtu", str(MTU))
            lab.run(host, "ip", "address", "add", f"{inner}/64", "dev", SOCAT_IF, "nodad")
        tun = f"TUN,tun-name={SOCAT_IF},tun-type=tun,iff-no-pi,iff-up"
        log = (workdir / "socat.log").open("a")
        procs.append(
            lab.spawn(
                GW, ["socat", "-b", "65536", f"UDP-LISTEN:{SOCAT_PORT},bind={GW_WAN}", tun], stdout=log, stderr=log
            )
        )
        wait(lambda: f":{SOCAT_PORT} " in lab.run(GW, "ss", "-uln", check=False).stdout, "socat to listen")
        procs.append(lab.spawn(MN, ["socat", "-b", "65536", f"UDP:{GW_WAN}:{SOCAT_PORT}", tun], stdout=log, stderr=log))
        wait(lambda: "UP" in lab.run(MN, "ip", "link", "show", SOCAT_IF, check=False).stdout, "socat's TUN up")
        lab.run(MN, "ip", "-6", "route", "add", "fd00:ab::/64", "dev", SOCAT_IF)
        wait(lambda: lab.ping(MN, HA, count=1, timeout=1.0), "socat path to the HA", timeout=10)
        yield Tunnel(HA, {"gw": procs[0].pid, "mn": procs[1].pid})
    finally:
        for proc in reversed(procs):
            stop(proc)
        for host in (MN, GW):
            lab.run(host, "ip", "link", "del", "dev", SOCAT_IF, check=False)


@contextlib.contextmanager
def m6t_tunnel(lab: StandardLab, workdir: Path, spec: str | None) -> Iterator[Tunnel]:
    gw_conf = workdir / "gateway.toml"
    gw_conf.write_text(GATEWAY_CONFIG)
    mn_conf = workdir / "client.toml"
    mn_conf.write_text(CLIENT_CONFIG)
    env = env_for(spec)
    cwd = env["PYTHONPATH"]  # `python -m` puts the working directory first on the path
    log = (workdir / f"m6t-{(spec or 'default').replace('/', '_')}.log").open("a")
    procs: list[subprocess.Popen[Any]] = []
    try:
        argv = [sys.executable, "-m", "m6t.gateway", "--config", str(gw_conf)]
        gw = lab.spawn(GW, argv, stdout=log, stderr=log, env=env, cwd=cwd)
        procs.append(gw)
        wait(lambda: has_link(lab, GW, M6T_GW_IF), "the m6t gateway's TUN")
        argv = [sys.executable, "-m", "m6t.client.helper", "--config", str(mn_conf), "--foreground"]
        argv += ["--socket", str(workdir / "helper.sock"), "--state-dir", str(workdir / "state")]
        mn = lab.spawn(MN, argv, stdout=log, stderr=log, env=env, cwd=cwd)
        procs.append(mn)
        wait(lambda: lab.ping(MN, HA, count=1, timeout=1.0), "the m6t path to the HA", timeout=20)
        yield Tunnel(HA, {"gw": gw.pid, "mn": mn.pid})
    finally:
        for proc in reversed(procs):
            stop(proc)
        log.close()


def rcvbuf_errors(lab: StandardLab, host: str) -> int:
    out = lab.run(host, "cat", "/proc/net/snmp", check=False).stdout.splitlines()
    for names, values in itertools.pairwise(out):
        if names.startswith("Udp:") and values.startswith("Udp:"):
            row = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(row.get("RcvbufErrors", 0))
    return 0


@dataclass
class Sample:
    value: float
    cpu: dict[str, float] = field(default_factory=dict)
    rcvbuf: int = 0
    extra: str = ""


def iperf(lab: StandardLab, tunnel: Tunnel, test: str, seconds: float) -> Sample:
    server = lab.spawn(HA_HOST, ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)], stdout=subprocess.DEVNULL)
    try:
        wait(lambda: f":{IPERF_PORT} " in lab.run(HA_HOST, "ss", "-tln", check=False).stdout, "iperf3 -s", 5)
        argv = ["iperf3", "-c", tunnel.target, "-p", str(IPERF_PORT), "-J", "-t", f"{seconds:g}"]
        if test == "tcp_down":
            argv.append("-R")
        if test.startswith("udp"):
            argv += ["-u", "-l", test[3:], "-b", "0", "-w", "4M"]
        cpu0 = {k: cpu_seconds(p) for k, p in tunnel.pids.items()}
        rb0 = rcvbuf_errors(lab, MN)
        done = lab.run(MN, *argv, check=False, timeout=seconds + 30)
        rb = rcvbuf_errors(lab, MN) - rb0
        cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in tunnel.pids.items()}
    finally:
        stop(server)
    try:
        report = json.loads(done.stdout)
        received = report["end"]["sum_received"] if "sum_received" in report["end"] else report["end"]["sum"]
    except (ValueError, KeyError) as exc:
        raise BenchError(f"iperf3 {test}: {done.stdout[-500:]} {done.stderr[-500:]}") from exc
    if test.startswith("udp"):
        sent = report["end"]["sum"]
        packets = sent["packets"] - sent["lost_packets"]
        return Sample(packets / sent["seconds"], cpu, rb, f"loss {sent['lost_percent']:.0f}%")
    retr = report["end"].get("sum_sent", {}).get("retransmits", 0)
    return Sample(received["bits_per_second"] / 1e6, cpu, rb, f"retr {retr}")


PINGS = {"count": 50, "interval": 0.02}


def ping(lab: StandardLab, tunnel: Tunnel) -> Sample:
    count, interval = int(PINGS["count"]), PINGS["interval"]
    argv = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", tunnel.target]
    done = lab.run(MN, *argv, check=False, timeout=count * interval + 30)
    rtts = sorted(float(x.split("time=")[1].split()[0]) for x in done.stdout.splitlines() if "time=" in x)
    if not rtts:
        raise BenchError("no ping replies")
    p99 = rtts[min(len(rtts) - 1, max(0, int(0.99 * len(rtts) + 0.999) - 1))]
    return Sample(p99, extra=f"avg {statistics.mean(rtts):.3f} ms p50 {rtts[len(rtts) // 2]:.3f} ms")


def measure(lab: StandardLab, tunnel: Tunnel, tests: list[str], seconds: float) -> dict[str, Sample]:
    out: dict[str, Sample] = {}
    for test in tests:
        out[test] = ping(lab, tunnel) if test == "rtt" else iperf(lab, tunnel, test, seconds)
    return out


UNITS = {"tcp_up": "Mbit/s", "tcp_down": "Mbit/s", "udp1200": "pps", "udp64": "pps", "rtt": "ms p99"}
TARGETS = {"tcp_up": 3.0, "tcp_down": 3.0, "udp1200": 2.2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--tests", default=",".join(TESTS))
    parser.add_argument("--variant", action="append", default=[], help="NAME=M6T_DATAPATH value (extra m6t run)")
    parser.add_argument("--no-socat", action="store_true", help="skip the socat baseline")
    parser.add_argument("--no-default", action="store_true", help="skip m6t with default settings")
    parser.add_argument("--pings", type=int, default=50, help="idle pings per round (%(default)s, as bench.tunnels)")
    parser.add_argument("--ping-interval", type=float, default=0.02, help="seconds between pings (%(default)s)")
    args = parser.parse_args()
    PINGS.update(count=args.pings, interval=args.ping_interval)
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    tests = [t for t in args.tests.split(",") if t]
    variants: list[tuple[str, str | None]] = []
    if not args.no_socat:
        variants.append(("socat", None))
    if not args.no_default:
        variants.append(("m6t", None))
    for item in args.variant:
        name, _, spec = item.partition("=")
        variants.append((name, spec))
    results: dict[str, dict[str, list[Sample]]] = {name: {t: [] for t in tests} for name, _ in variants}
    workdir = Path(tempfile.mkdtemp(prefix="m6t-dpq-"))
    try:
        with Lab.standard() as lab:
            for rnd in range(args.rounds):
                for name, spec in variants:
                    factory = socat_tunnel(lab, workdir) if name == "socat" else m6t_tunnel(lab, workdir, spec)
                    with factory as tunnel:
                        got = measure(lab, tunnel, tests, args.seconds)
                    for test, sample in got.items():
                        results[name][test].append(sample)
                        cpu = " ".join(f"{k} {v:.2f}s" for k, v in sample.cpu.items())
                        print(
                            f"round {rnd + 1} {name:>10} {test:>8}: {sample.value:10.1f} {UNITS[test]:<7}"
                            f" {sample.extra:>10} cpu[{cpu}] mn-rcvbuf-err {sample.rcvbuf}",
                            flush=True,
                        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"medians over {args.rounds} round(s), {args.seconds:g} s runs")
    header = f"{'':>10} " + " ".join(f"{t + ' ' + UNITS[t]:>18}" for t in tests)
    print(header)
    medians = {name: {t: statistics.median(s.value for s in results[name][t]) for t in tests} for name, _ in variants}
    for name, _ in variants:
        print(f"{name:>10} " + " ".join(f"{medians[name][t]:18.3f}" for t in tests))
    if "socat" in medians:
        base = medians["socat"]
        for name, _ in variants:
            if name == "socat":
                continue
            parts = []
            for t in tests:
                if t == "rtt":
                    parts.append(f"rtt p99 added {medians[name][t] - base[t]:+.3f} ms (target <= 0.5)")
                else:
                    ratio = medians[name][t] / base[t] if base[t] else float("inf")
                    target = f" (target >= {TARGETS[t]})" if t in TARGETS else ""
                    parts.append(f"{t} {ratio:.2f}x{target}")
            print(f"{name} / socat: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
