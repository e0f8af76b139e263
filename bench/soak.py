"""The project's soak suite: the real gateway and helper in the lab, attacked and broken on purpose, measured.

    python -m bench.soak --short                 # CI: one cycle of every step, about a minute and a half
    python -m bench.soak --long --duration 3600  # by hand: cycles until the duration is used up
    python -m bench.soak --short --json out.json --flood tunnel_flood

One lab (``m6t.lab.demo``: MN behind nat1, wan2 as the attacker, the gateway keeping its states, the
helper connected and idle with the default 30 s keepalive).  Each cycle runs, in order:

* spoof: packets with the MN's tunnel address as source from the attacker's own sockets (many ports),
  and with the MN's public IPv4 address as outer source (raw IPv4, other ports); a hijack is anything
  coming back to the attacker, or the MN losing the Home Agent;
* flood: a pluggable step (``--flood``; :data:`FLOODS`), by default ``bench.tunnel_flood`` from wan2:
  new-source m6t packets from one IPv4 address while the MN pings the HA; the figure is the MN's loss;
* fuzz-gateway and fuzz-client: ``bench.soak_sender fuzz`` toward the gateway's ports, and toward the
  MN's public mapping with the gateway's address and port as spoofed outer source (what a NAT lets in);
* control: malformed requests (bad JSON, bad envelopes, unknown methods, bad parameters of read methods,
  oversized lines, invalid UTF-8) to the helper's control socket; the helper must answer STATUS after;
* loss: 10 % of packets dropped each way on nat1's WAN side (nftables ``numgen random``; the kernel has
  no netem) while the MN pings the HA: the figure is the loss seen, the tunnel must hold its address;
* resources: the gateway's and the helper's RSS and open descriptors before the load steps and after
  them (temporary states given time to expire): growth is bounded, descriptors come back;
* kill-helper: ``kill -9`` of the helper and a start: time until connected and the HA answers again;
* restart-gateway, kill-gateway: SIGTERM and ``kill -9`` of the gateway with the MN idle, and a start
  (``bench.restart``): the HA must reach the MN within 1 s of the gateway listening, same address.

Every load is bounded in count and in time; the lab is always torn down.  Output: a table on stdout and,
with ``--json``, every figure and invariant for comparison across runs.  Exit status 0 when every
invariant held, 1 otherwise, 2 when the machine cannot run the lab.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import flood_gateway
from bench import restart as bench_restart
from bench import tunnel_lab as tl
from bench.tunnel_m6t import Prober
from m6t.client.api import schema
from m6t.gateway.config import UnixEndpoint
from m6t.gateway.metrics import PREFIX, parse
from m6t.gateway.metrics_server import fetch_metrics
from m6t.lab import GW_WAN, HA, M6T_PREFIX, NAT1, NAT_IF_WAN, WAN2, StandardLab, unavailable_reason
from m6t.lab.demo import DemoLab, client_config, demo_lab
from m6t.platform import control_transport

RSS_GROWTH_BOUND = 16 << 20
"""Growth allowed between before and after the load steps: the temporary states and the rate limiter's
memory of the flood's one IPv4 address come and go, but the allocator keeps some of what it got."""
FD_GROWTH_BOUND = 2
HELPER_RECOVERY_BOUND_S = 15.0
LOSS_PERCENT = 10


@dataclass(frozen=True)
class Mode:
    name: str
    spoof: int
    flood_rate: int
    flood_seconds: float
    fuzz_gateway: int
    fuzz_client: int
    control: int
    loss_seconds: float
    step_seconds: float
    """The time bound of each sender (it stops at its count or at this, whichever comes first)."""


SHORT = Mode("short", 12_000, 20_000, 4.0, 40_000, 10_000, 5000, 5.0, 8.0)
LONG = Mode("long", 12_000, 100_000, 15.0, 1_000_000, 100_000, 20_000, 60.0, 60.0)


@dataclass
class Step:
    name: str
    ok: bool
    summary: str
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Soak:
    demo: DemoLab
    mode: Mode
    flood: str
    steps: list[Step] = field(default_factory=list)
    address: str = ""

    @property
    def lab(self) -> StandardLab:
        return self.demo.lab

    def metrics(self) -> dict[str, float]:
        text = fetch_metrics(UnixEndpoint(str(self.demo.gateway_metrics)), timeout=5.0)
        return {
            sample.name.removeprefix(PREFIX)
            + "".join(f",{k}={v}" for k, v in sorted(sample.labels.items())): sample.value
            for sample in parse(text)
        }

    def delta(self, before: dict[str, float], *names: str) -> dict[str, float]:
        after = self.metrics()
        return {name: after.get(name, 0.0) - before.get(name, 0.0) for name in names}

    def spawn_module(self, host: str, module: str, *args: str) -> subprocess.Popen[str]:
        return self.lab.spawn(
            host, tl.python_argv(module, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tl.python_env()
        )

    def run_module(self, host: str, module: str, *args: str, timeout: float) -> dict[str, Any]:
        proc = self.spawn_module(host, module, *args)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            tl.stop(proc)
            raise RuntimeError(f"{module} did not finish within {timeout:g} s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"{module} failed ({proc.returncode}): {err.strip()[-500:]}")
        lines = out.strip().splitlines()
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        return result

    def mn_reaches_ha(self, attempts: int = 10) -> bool:
        return any(self.demo.ping_ha(1, timeout=1.0) for _ in range(attempts))

    def helper_state(self) -> tuple[str, str]:
        status = bench_restart.helper_status(self.demo)
        return str(status["state"]), str(status["address"] or "")

    def gateway_port(self) -> int:
        """The gateway port the helper is connected to (its status says ``address:port``)."""
        status = bench_restart.helper_status(self.demo)
        return int(str(status["gateway"]).rpartition(":")[2])

    def public_mapping(self) -> tuple[str, int]:
        """The MN's public IPv4 endpoint toward the gateway port it uses (its NAT mapping)."""
        port = self.gateway_port()
        for mapping in self.lab.nat_mappings(NAT1):
            if mapping.remote_addr == GW_WAN and mapping.remote_port == port and mapping.replied:
                return mapping.outside_addr, mapping.outside_port
        raise RuntimeError(f"the MN has no NAT mapping toward the gateway's port {port}")

    def add(self, step: Step) -> None:
        self.steps.append(step)
        print(f"  {'ok  ' if step.ok else 'FAIL'} {step.name}: {step.summary}", flush=True)


@contextlib.contextmanager
def mn_probing(soak: Soak, seconds: float, interval: float = 0.01) -> Iterator[Prober]:
    prober = Prober(soak.lab, HA, interval=interval, duration=seconds + 10.0)
    try:
        if not prober.wait_replies(2, timeout=10.0):
            raise RuntimeError("the MN's pings to the HA go unanswered")
        yield prober
    finally:
        prober.stop()


def loss_of(prober: Prober, start: float, end: float) -> tuple[int, int, float]:
    sent, answered = prober.loss(start, end)
    return sent, answered, (100.0 * (sent - answered) / sent if sent else 0.0)


# --------------------------------------------------------------------------- steps


def step_spoof(soak: Soak) -> None:
    mode = soak.mode
    before = soak.metrics()
    public_ip, public_port = soak.public_mapping()
    port = soak.gateway_port()
    with mn_probing(soak, mode.step_seconds + 3) as prober:
        start = time.monotonic()
        result = soak.run_module(
            WAN2,
            "bench.soak_sender",
            "spoof",
            "--target",
            f"{GW_WAN}:{port}",
            "--victim",
            soak.address,
            "--home-agent",
            HA,
            "--count",
            str(mode.spoof),
            "--duration",
            str(mode.step_seconds),
            "--raw-source",
            public_ip,
            "--avoid-port",
            str(public_port),
            timeout=mode.step_seconds + 20,
        )
        end = time.monotonic()
        time.sleep(0.5)
        sent, answered, loss = loss_of(prober, start, end)
    per_ipv4, ceiling = "fastlane_packets_total,rule=policed_per_ipv4", "fastlane_packets_total,rule=policed_ceiling"
    delta = soak.delta(before, "drops_total,reason=binding_mismatch,side=mn", per_ipv4, ceiling)
    # With the gateway's kernel fast lane most spoofs from one host never reach it: policed in the kernel.
    policed = delta[per_ipv4] + delta[ceiling]
    reachable = soak.mn_reaches_ha()
    state, address = soak.helper_state()
    hijacks = int(result["received"]) + (0 if reachable and address == soak.address else 1)
    soak.add(
        Step(
            "spoof",
            hijacks == 0,
            f"{result['sent']} spoofed packets, {hijacks} hijacks; "
            f"{delta['drops_total,reason=binding_mismatch,side=mn']:.0f} dropped as binding mismatches, "
            f"{policed:.0f} policed in the kernel; MN loss meanwhile {loss:.1f} % ({sent - answered}/{sent})",
            {
                "attempts": result["sent"],
                "hijacks": hijacks,
                "attacker_received": result["received"],
                "binding_mismatch_drops": delta["drops_total,reason=binding_mismatch,side=mn"],
                "policed_in_kernel": policed,
                "mn_loss_percent": loss,
                "mn_reachable_after": reachable,
                "helper_state": state,
            },
        )
    )


FloodRunner = Callable[[Soak, int, float], dict[str, Any]]
"""Runs a flood toward the gateway from the attacker host at ``rate`` for ``seconds`` (bounded); returns at
least ``{"rate": achieved datagrams/s}``.  The step around it measures the MN's loss meanwhile."""


def flood_tunnel_flood(soak: Soak, rate: int, seconds: float) -> dict[str, Any]:
    return soak.run_module(
        WAN2,
        "bench.tunnel_flood",
        "--gateway",
        GW_WAN,
        "--port",
        str(soak.gateway_port()),
        "--prefix",
        M6T_PREFIX,
        "--home-agent",
        HA,
        "--rate",
        str(rate),
        "--duration",
        f"{seconds:g}",
        timeout=seconds + 20,
    )


def flood_senders(soak: Soak, rate: int, seconds: float) -> dict[str, Any]:
    """bench.flood_gateway's senders: as fast as three processes can send, whatever ``rate`` asks."""
    return flood_gateway.flood(soak.lab, seconds=seconds, port=soak.gateway_port())


FLOODS: dict[str, FloodRunner] = {"tunnel_flood": flood_tunnel_flood, "senders": flood_senders}
"""The flood step's engines by name (``--flood``): another benchmark plugs in here."""


def step_flood(soak: Soak) -> None:
    mode = soak.mode
    before = soak.metrics()
    with mn_probing(soak, mode.flood_seconds + 5) as prober:
        time.sleep(0.5)
        start = time.monotonic()
        result = FLOODS[soak.flood](soak, mode.flood_rate, mode.flood_seconds)
        end = time.monotonic()
        time.sleep(1.0)
        sent, answered, loss = loss_of(prober, start, end)
    delta = soak.delta(before, "rate_limited_total", "state_events_total,event=created")
    reachable = soak.mn_reaches_ha()
    soak.add(
        Step(
            "flood",
            reachable,
            f"{result.get('rate', 0):,.0f}/s new sources for {mode.flood_seconds:g} s ({soak.flood}): MN loss "
            f"{loss:.2f} % ({sent - answered}/{sent}); {delta['state_events_total,event=created']:.0f} states created, "
            f"{delta['rate_limited_total']:.0f} rate-limited",
            {
                "engine": soak.flood,
                "flood": result,
                "mn_loss_percent": loss,
                "probes": sent,
                "states_created": delta["state_events_total,event=created"],
                "rate_limited": delta["rate_limited_total"],
                "mn_reachable_after": reachable,
            },
        )
    )


def fuzz(soak: Soak, target: str, count: int, *extra: str) -> dict[str, Any]:
    """``bench.soak_sender fuzz`` from the attacker host toward ``target``, a share aimed at the MN's address."""
    return soak.run_module(
        WAN2,
        "bench.soak_sender",
        "fuzz",
        "--target",
        target,
        *extra,
        "--prefix",
        M6T_PREFIX,
        "--home-agent",
        HA,
        "--victim",
        soak.address,
        "--count",
        str(count),
        "--duration",
        str(soak.mode.step_seconds),
        timeout=soak.mode.step_seconds + 20,
    )


def step_fuzz_gateway(soak: Soak) -> None:
    mode = soak.mode
    before = soak.metrics()
    result = fuzz(soak, f"{GW_WAN}:{soak.gateway_port()}", mode.fuzz_gateway)
    alive = soak.demo.gateway is not None and soak.demo.gateway.poll() is None
    after = soak.metrics()
    received = after.get("received_packets_total,side=mn", 0.0) - before.get("received_packets_total,side=mn", 0.0)
    dropped = sum(v for k, v in after.items() if k.startswith("drops_total,") and ",side=mn" in k) - sum(
        v for k, v in before.items() if k.startswith("drops_total,") and ",side=mn" in k
    )
    reachable = soak.mn_reaches_ha()
    soak.add(
        Step(
            "fuzz-gateway",
            alive and reachable,
            f"{result['sent']} fuzzed datagrams at {result['rate']:,.0f}/s: gateway {'alive' if alive else 'DEAD'}, "
            f"received {received:.0f}, dropped {dropped:.0f}; MN {'reaches' if reachable else 'LOST'} the HA",
            {
                "sent": result["sent"],
                "gateway_received": received,
                "gateway_dropped": dropped,
                "gateway_alive": alive,
                "mn_reachable_after": reachable,
            },
        )
    )


def step_fuzz_client(soak: Soak) -> None:
    mode = soak.mode
    public_ip, public_port = soak.public_mapping()
    # Spoofing the gateway's endpoint: the only datagrams the MN's NAT lets through to the helper.
    result = fuzz(
        soak, f"{public_ip}:{public_port}", mode.fuzz_client, "--raw-source", f"{GW_WAN}:{soak.gateway_port()}"
    )
    alive = soak.demo.helper is not None and soak.demo.helper.poll() is None
    reachable = soak.mn_reaches_ha()
    state, address = soak.helper_state() if alive else ("dead", "")
    ok = alive and reachable and state == "connected"
    soak.add(
        Step(
            "fuzz-client",
            ok,
            f"{result['sent']} fuzzed datagrams to the MN's mapping {public_ip}:{public_port} from the gateway's "
            f"spoofed endpoint: helper {state}, address {'kept' if address == soak.address else 'changed'}, "
            f"MN {'reaches' if reachable else 'LOST'} the HA",
            {
                "sent": result["sent"],
                "helper_alive": alive,
                "helper_state": state,
                "address_kept": address == soak.address,
                "mn_reachable_after": reachable,
            },
        )
    )
    if address and address != soak.address:
        soak.address = address


def malformed_lines(rng: random.Random, count: int) -> Iterator[bytes]:
    """Control requests that must all be refused (never a change: no change method is ever well-formed)."""
    oversized = b'{"id": 1, "method": "status", "params": {"x": "' + b"a" * (schema.MAX_LINE_BYTES + 10) + b'"}}'
    for index in range(count):
        kind = rng.randrange(12)
        if kind == 0:
            # Never blank: the server skips blank lines without a reply.
            yield b"x" + rng.randbytes(rng.randrange(0, 300)).replace(b"\n", b" ")
        elif kind == 1:
            yield b"{" * rng.randrange(1, 5000)
        elif kind == 2:
            yield rng.choice([b"[]", b"null", b"42", b'"status"', b"true", b"{}", b"1e999", b"-"])
        elif kind == 3:
            yield json.dumps({"method": "status"}).encode()
        elif kind == 4:
            yield json.dumps({"id": rng.choice([True, None, [], {}, 1.5, "x" * 200]), "method": "status"}).encode()
        elif kind == 5:
            method = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz._") for _ in range(rng.randrange(1, 30)))
            yield json.dumps({"id": index, "method": method + "!"}).encode()
        elif kind == 6:
            yield json.dumps({"id": index, "method": "status", "params": rng.choice([[], "x", 5, True])}).encode()
        elif kind == 7:
            yield json.dumps({"id": index, "version": rng.choice([0, 2, 99, "1", None]), "method": "status"}).encode()
        elif kind == 8:
            limit: object = rng.choice(["x", -1, 10**30, 1.5, [], {"a": 1}, True])
            yield json.dumps({"id": index, "method": "log", "params": {"limit": limit, "since": "never"}}).encode()
        elif kind == 9:
            yield json.dumps({"id": index, "method": "config.get", "params": {"key": rng.randbytes(8).hex()}}).encode()
        elif kind == 10:
            yield b'{"id": 1, "method": "st\xff\xfeatus"}'
        elif index % 50 == 11 or rng.random() < 0.02:
            yield oversized
        else:
            yield json.dumps({"id": index, "method": rng.choice(["up", "down", "config.set"]), "params": 7}).encode()


def fuzz_control(path: str, count: int, seconds: float, seed: int | None = None) -> dict[str, int]:
    """Send ``count`` malformed requests over one connection, in batches; count the replies."""
    rng = random.Random(seed)
    sent = replies = errors = 0
    deadline = time.monotonic() + seconds
    lines = malformed_lines(rng, count)
    # The platform's own control channel, as the CLI connects: a Unix socket here.
    stream = control_transport().connect(path, 5.0)
    try:
        buffer = b""
        for _ in range(count // 100 + 1):
            batch = [line for _, line in zip(range(100), lines, strict=False)]
            if not batch or time.monotonic() > deadline:
                break
            stream.send(b"".join(line + b"\n" for line in batch), 5.0)
            sent += len(batch)
            wanted = replies + len(batch)
            for _ in range(10_000):
                if replies >= wanted:
                    break
                try:
                    chunk = stream.receive(5.0)
                except TimeoutError:
                    break
                if not chunk:
                    return {"sent": sent, "replies": replies, "errors": errors, "closed": 1}
                buffer += chunk
                *done, buffer = buffer.split(b"\n")
                # The connection opens with a hello: only replies count.
                messages = [json.loads(line) for line in done]
                replies += sum(1 for message in messages if message.get("type") == "reply")
                errors += sum(1 for message in messages if message.get("type") == "reply" and not message.get("ok"))
    finally:
        stream.close()
    return {"sent": sent, "replies": replies, "errors": errors, "closed": 0}


def step_control(soak: Soak) -> None:
    mode = soak.mode
    result = fuzz_control(soak.demo.socket_path, mode.control, mode.step_seconds)
    alive = soak.demo.helper is not None and soak.demo.helper.poll() is None
    state, address = soak.helper_state() if alive else ("dead", "")
    # Every line is answered (most with an error; a read method may answer bad parameters with defaults).
    ok = alive and state == "connected" and address == soak.address and result["replies"] == result["sent"]
    soak.add(
        Step(
            "control",
            ok,
            f"{result['sent']} malformed requests: {result['replies']} answered, {result['errors']} with an error; "
            f"helper {state}, answers STATUS",
            {**result, "helper_alive": alive, "helper_state": state},
        )
    )


def step_loss(soak: Soak) -> None:
    mode = soak.mode
    with mn_probing(soak, mode.loss_seconds + 5, interval=0.02) as prober:
        soak.lab.drop_share(NAT1, NAT_IF_WAN, LOSS_PERCENT, "both")
        try:
            start = time.monotonic()
            time.sleep(mode.loss_seconds)
            end = time.monotonic()
        finally:
            soak.lab.clear_drop_share(NAT1, NAT_IF_WAN)
        time.sleep(0.5)
        sent, answered, loss = loss_of(prober, start, end)
    reachable = soak.mn_reaches_ha()
    state, address = soak.helper_state()
    ok = reachable and state == "connected" and address == soak.address
    soak.add(
        Step(
            "loss",
            ok,
            f"{LOSS_PERCENT} % dropped each way on nat1's WAN for {mode.loss_seconds:g} s: MN round-trip loss "
            f"{loss:.1f} % ({sent - answered}/{sent}); tunnel {state}, "
            f"address {'kept' if address == soak.address else 'CHANGED'}",
            {
                "drop_percent_each_way": LOSS_PERCENT,
                "mn_loss_percent": loss,
                "probes": sent,
                "helper_state": state,
                "address_kept": address == soak.address,
                "mn_reachable_after": reachable,
            },
        )
    )


def usage(pid: int) -> dict[str, int]:
    process = psutil.Process(pid)
    return {"rss": process.memory_info().rss, "fds": process.num_fds()}


def resources(soak: Soak) -> dict[str, dict[str, int]]:
    demo = soak.demo
    assert demo.gateway is not None and demo.helper is not None
    return {"gateway": usage(demo.gateway.pid), "helper": usage(demo.helper.pid)}


def step_resources(soak: Soak, before: dict[str, dict[str, int]]) -> None:
    # The flood's temporary states live 1 s; collection then gives their memory back to the table.
    time.sleep(2.0)
    after = resources(soak)
    rows = []
    ok = True
    figures: dict[str, Any] = {}
    for name in ("gateway", "helper"):
        rss = after[name]["rss"] - before[name]["rss"]
        fds = after[name]["fds"] - before[name]["fds"]
        ok = ok and rss <= RSS_GROWTH_BOUND and fds <= FD_GROWTH_BOUND
        rows.append(
            f"{name} RSS {before[name]['rss'] / 2**20:.1f} → {after[name]['rss'] / 2**20:.1f} MiB, "
            f"fds {before[name]['fds']} → {after[name]['fds']}"
        )
        figures[name] = {"before": before[name], "after": after[name], "rss_growth": rss, "fd_growth": fds}
    soak.add(Step("resources", ok, "; ".join(rows), figures))


def step_kill_helper(soak: Soak) -> None:
    demo = soak.demo
    killed = time.monotonic()
    demo.stop_helper(kill=True)
    demo.start_helper()
    recovered: float | None = None
    address = ""
    for _ in range(int(HELPER_RECOVERY_BOUND_S / 0.1)):
        if time.monotonic() - killed > HELPER_RECOVERY_BOUND_S:
            break
        state, address = soak.helper_state()
        if state == "connected" and address and demo.ping_ha(1, timeout=1.0):
            recovered = time.monotonic() - killed
            break
        time.sleep(0.05)
    if address:
        soak.address = address
    soak.add(
        Step(
            "kill-helper",
            recovered is not None,
            "kill -9 of the helper, started again: "
            + (
                "NOT recovered"
                if recovered is None
                else f"connected and the HA answers {recovered:.2f} s after the kill"
            ),
            {"recovered_s": recovered, "new_address": address},
        )
    )


def step_gateway_restarts(soak: Soak) -> None:
    figures = bench_restart.measure(soak.demo, rounds=1)
    for figure in figures:
        ok = figure.reach_s is not None and figure.reach_s <= 1.0 and figure.address_kept
        reach = "NOT within 10 s" if figure.reach_s is None else f"{figure.reach_s * 1000:.0f} ms"
        soak.add(
            Step(
                "restart-gateway" if figure.how == "sigterm" else "kill-gateway",
                ok,
                f"{figure.how} with the MN idle: down {figure.down_s:.2f} s, HA reaches the MN {reach} after the "
                f"gateway listens again, {figure.restored} states restored, "
                f"address {'kept' if figure.address_kept else 'CHANGED'}",
                asdict(figure),
            )
        )


# --------------------------------------------------------------------------- the run


def cycle(soak: Soak) -> None:
    before = resources(soak)
    for step in (step_spoof, step_flood, step_fuzz_gateway, step_fuzz_client, step_control, step_loss):
        try:
            step(soak)
        except Exception as exc:
            soak.add(Step(step.__name__.removeprefix("step_").replace("_", "-"), False, f"could not run: {exc}"))
    step_resources(soak, before)
    for step in (step_kill_helper, step_gateway_restarts):
        try:
            step(soak)
        except Exception as exc:
            soak.add(Step(step.__name__.removeprefix("step_").replace("_", "-"), False, f"could not run: {exc}"))


def render_table(steps: Sequence[Step]) -> str:
    lines = ["| cycle | step | ok | figures |", "|---|---|---|---|"]
    lines += [
        f"| {cycle_of} | {s.name} | {'yes' if s.ok else 'NO'} | {s.summary} |"
        for cycle_of, s in steps_with_cycles(steps)
    ]
    return "\n".join(lines)


def steps_with_cycles(steps: Sequence[Step]) -> list[tuple[int, Step]]:
    numbered: list[tuple[int, Step]] = []
    number = 0
    for step in steps:
        if step.name == "spoof":
            number += 1
        numbered.append((max(number, 1), step))
    return numbered


def run(mode: Mode, *, duration: float, flood: str) -> dict[str, Any]:
    started = time.monotonic()
    config = client_config(keepalive=bench_restart.IDLE_KEEPALIVE_S, autoconnect=True)
    with demo_lab(keep_states=True, config=config) as demo:
        soak = Soak(demo, mode, flood)
        soak.address = bench_restart.wait_connected(demo)
        cycles = 0
        # Bounded: at most one cycle per minute of the duration, and never past it by more than one cycle.
        for _ in range(max(1, int(duration // 60) + 1)):
            cycles += 1
            print(f"cycle {cycles} ({time.monotonic() - started:.0f} s in)", flush=True)
            cycle(soak)
            if time.monotonic() - started >= duration:
                break
        steps = soak.steps
    ok = all(step.ok for step in steps)
    return {
        "mode": mode.name,
        "flood_engine": flood,
        "cycles": cycles,
        "seconds": round(time.monotonic() - started, 1),
        "ok": ok,
        "failed": sorted({step.name for step in steps if not step.ok}),
        "settings": asdict(mode),
        "steps": [{"cycle": number, **asdict(step)} for number, step in steps_with_cycles(steps)],
        "load": psutil.getloadavg(),
        "_table": render_table(steps),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--short", action="store_true", help="one cycle with small counts (CI; the default)")
    group.add_argument("--long", action="store_true", help="large counts, cycles until --duration")
    parser.add_argument("--duration", type=float, default=None, help="seconds (long mode; default 3600)")
    parser.add_argument("--flood", choices=sorted(FLOODS), default="tunnel_flood", help="the flood step's engine")
    parser.add_argument("--json", metavar="FILE", help="write every figure and invariant there")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    mode = LONG if args.long else SHORT
    duration = 0.0 if mode is SHORT else min(48 * 3600.0, args.duration if args.duration is not None else 3600.0)
    result = run(mode, duration=duration, flood=args.flood)
    table = result.pop("_table")
    print(table)
    print(
        f"soak {mode.name}: {'every invariant held' if result['ok'] else 'FAILED: ' + ', '.join(result['failed'])} "
        f"({result['cycles']} cycle(s), {result['seconds']:.0f} s)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
