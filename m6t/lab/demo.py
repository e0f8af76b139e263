"""``m6t lab demo``: the whole system, for real, in network namespaces, narrated.

The standard lab (a mobile node behind two NATs, the gateway, a Home Agent whose kernel answers ping6),
the real gateway daemon in ``gw``, the real ``m6t-helper`` in ``mn``, driven through its control API.
It brings the tunnel up, pings the HA through it, moves the MN to the other NAT, flushes that NAT's
mappings, and tells what happened and how long each recovery took.

The pieces (:class:`DemoLab`, :func:`demo_lab`) are also what the helper's lab tests run on.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import m6t
from m6t.client.api.client import HelperClient, HelperError
from m6t.client.api.schema import EventKind, Method, TunnelState
from m6t.gateway.config import StatesSection
from m6t.lab import addresses as a
from m6t.lab import configs
from m6t.lab.errors import LabError
from m6t.lab.standard import NatName, StandardLab

DEMO_DEADLINE_S = 110.0
"""The demo as a whole must finish well inside two minutes; each step has its own smaller budget."""
GATEWAY_PORTS = (3544, 4500)
MN_PREFIX = str(configs.MN_PREFIX)
MN_INTERFACE = configs.MN_INTERFACE
GW_INTERFACE = configs.GW_INTERFACE
KEEPALIVE_S = 5
"""Short, so a lost binding is noticed within the demo's time (production default: 30 s)."""

_PING_TIME = re.compile(r"time=([\d.]+) ms")
_PACKAGE_ROOT = str(Path(m6t.__file__).resolve().parent.parent)


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and what was seen."""


GATEWAY_SAVE_INTERVAL_S = 2
"""How soon the lab's gateway saves a change of its states, when it keeps them (production default: 5 s)."""


def gateway_config(metrics: Path, state_directory: Path | None = None) -> str:
    return configs.gateway_config(
        ports=GATEWAY_PORTS,
        states=StatesSection(temporary_lifetime_ms=1000, active_lifetime_s=60, save_interval_s=GATEWAY_SAVE_INTERVAL_S),
        metrics=f"unix:{metrics}",
        state_directory=state_directory,
    )


def client_config(*, keepalive: float = KEEPALIVE_S, autoconnect: bool = False) -> str:
    return configs.client_config(ports=GATEWAY_PORTS, keepalive=keepalive, autoconnect=autoconnect)


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("M6T_SOCKET", None)
    return env


def helper_command(emulate: str | None = None) -> list[str]:
    """The interpreter arguments that start the helper in the MN: ``m6t-helper --foreground``, or the
    emulation runner, which is the same helper over an emulated OS's backend."""
    if emulate is None:
        return ["-m", "m6t.client.helper", "--foreground"]
    return ["-m", "m6t.lab.emulation.run", "--os", emulate]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


def _stop(proc: subprocess.Popen[str] | None, *, kill: bool, timeout: float, what: str, log: Path) -> int | None:
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    if kill:
        proc.kill()
    else:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
        raise DemoError(f"{what} ignored SIGTERM for {timeout:g} s:\n{_tail(log)}") from None


@dataclass
class DemoLab:
    """A started standard lab with the gateway running and a helper (re)startable in the MN."""

    lab: StandardLab
    workdir: Path
    gateway: subprocess.Popen[str] | None = None
    helper: subprocess.Popen[str] | None = None
    helper_runs: int = 0
    emulate: str | None = None
    """An emulated OS (``m6t.lab.emulation.EMULATIONS``) whose backend the helper runs instead of Linux's."""
    keep_states: bool = False
    """The gateway keeps its states across restarts, in :attr:`gateway_state_dir`."""
    _logs: list[Any] = field(default_factory=list)

    @property
    def socket_path(self) -> str:
        return str(self.workdir / "helper.sock")

    @property
    def config_path(self) -> Path:
        return self.workdir / "client.toml"

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def helper_log(self) -> Path:
        return self.workdir / "helper.log"

    @property
    def gateway_log(self) -> Path:
        return self.workdir / "gateway.log"

    @property
    def gateway_state_dir(self) -> Path:
        return self.workdir / "gw-state"

    @property
    def gateway_metrics(self) -> Path:
        return self.workdir / "gw-metrics.sock"

    def start_gateway(self, timeout: float = 15.0) -> None:
        """Start the gateway daemon in ``gw`` and wait until its metrics endpoint answers."""
        self.spawn_gateway()
        self.wait_gateway(timeout)

    def spawn_gateway(self) -> subprocess.Popen[str]:
        """Start the gateway daemon in ``gw`` without waiting for it."""
        config = self.workdir / "gateway.toml"
        config.write_text(gateway_config(self.gateway_metrics, self.gateway_state_dir if self.keep_states else None))
        log = self.gateway_log.open("a")
        self._logs.append(log)
        self.gateway = self.lab.spawn(
            a.GW,
            [sys.executable, "-m", "m6t.gateway", "--config", str(config)],
            stdout=log,
            stderr=log,
            env=_python_env(),
        )
        return self.gateway

    def wait_gateway(self, timeout: float = 15.0) -> None:
        """Wait until the gateway's metrics endpoint answers (it opens after the data path started)."""
        from m6t.gateway.config import UnixEndpoint
        from m6t.gateway.metrics_server import fetch_metrics

        assert self.gateway is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.gateway.poll() is not None:
                raise DemoError(f"the gateway exited with status {self.gateway.returncode}:\n{_tail(self.gateway_log)}")
            try:
                fetch_metrics(UnixEndpoint(str(self.gateway_metrics)), timeout=1.0)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"the gateway did not start within {timeout:g} s:\n{_tail(self.gateway_log)}"
                    ) from None
                time.sleep(0.1)

    def write_client_config(self, text: str | None = None) -> None:
        self.config_path.write_text(text if text is not None else client_config())
        self.config_path.chmod(0o644)

    def start_helper(self, timeout: float = 15.0) -> None:
        """Start ``m6t-helper`` in the MN's namespace and wait until its socket answers."""
        if not self.config_path.exists():
            self.write_client_config()
        log = self.helper_log.open("a")
        self._logs.append(log)
        self.helper_runs += 1
        log.write(f"--- helper run {self.helper_runs}\n")
        log.flush()
        self.helper = self.lab.spawn(
            a.MN,
            [sys.executable, *helper_command(self.emulate), *self.helper_arguments()],
            stdout=log,
            stderr=log,
            env=_python_env(),
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.helper.poll() is not None:
                raise DemoError(f"m6t-helper exited with status {self.helper.returncode}:\n{_tail(self.helper_log)}")
            try:
                with HelperClient(self.socket_path, timeout=2.0) as client:
                    client.call(Method.STATUS)
                return
            except HelperError:
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"m6t-helper did not answer within {timeout:g} s:\n{_tail(self.helper_log)}"
                    ) from None
                time.sleep(0.1)

    def helper_arguments(self) -> list[str]:
        return [
            "--config",
            str(self.config_path),
            "--socket",
            self.socket_path,
            "--state-dir",
            str(self.state_dir),
            "--verbose",
        ]

    def stop_helper(self, *, kill: bool = False, timeout: float = 15.0) -> int | None:
        """SIGTERM (or SIGKILL) the helper and wait for it; its exit status."""
        proc, self.helper = self.helper, None
        return _stop(proc, kill=kill, timeout=timeout, what="m6t-helper", log=self.helper_log)

    def stop_gateway(self, *, kill: bool = False, timeout: float = 15.0) -> int | None:
        """SIGTERM (or SIGKILL) the gateway and wait for it; its exit status."""
        proc, self.gateway = self.gateway, None
        return _stop(proc, kill=kill, timeout=timeout, what="the gateway", log=self.gateway_log)

    def client(self, timeout: float = 15.0) -> HelperClient:
        return HelperClient(self.socket_path, timeout=timeout).connect()

    def ping_ha(self, count: int = 1, timeout: float = 2.0) -> list[float]:
        """Round trips (ms) of ``count`` ping6 from the MN to the HA; answered ones only."""
        result = self.lab.run(
            a.MN,
            "ping",
            "-6",
            "-n",
            "-c",
            str(count),
            "-i",
            "0.2",
            "-W",
            str(max(1, round(timeout))),
            a.HA,
            check=False,
            timeout=timeout + count * 0.5 + 5,
        )
        return [float(t) for t in _PING_TIME.findall(result.stdout)]

    def mn_addresses(self, ifname: str = MN_INTERFACE) -> list[str]:
        result = self.lab.run(a.MN, "ip", "-6", "-o", "address", "show", "dev", ifname, check=False)
        return re.findall(r"inet6 ([0-9a-f:]+)/", result.stdout) if result.returncode == 0 else []

    def mn_routes(self, ifname: str = MN_INTERFACE) -> list[str]:
        result = self.lab.run(a.MN, "ip", "-6", "route", "show", "dev", ifname, check=False)
        return [line for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []

    def mn_link_exists(self, ifname: str = MN_INTERFACE) -> bool:
        return self.lab.run(a.MN, "ip", "link", "show", "dev", ifname, check=False).returncode == 0

    def logs(self) -> str:
        return f"--- helper log (tail)\n{_tail(self.helper_log)}\n--- gateway log (tail)\n{_tail(self.gateway_log)}"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop_helper(timeout=5.0)
        with contextlib.suppress(Exception):
            self.stop_gateway(timeout=5.0)
        try:
            self.lab.close()
        finally:
            for log in self._logs:
                with contextlib.suppress(Exception):
                    log.close()
            shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def demo_lab(
    *, start_helper: bool = True, config: str | None = None, emulate: str | None = None, keep_states: bool = False
) -> Iterator[DemoLab]:
    """A standard lab with the gateway (and, by default, the helper) running; everything torn down after.

    ``emulate``: the helper runs the backend of that emulated OS (see :mod:`m6t.lab.emulation`).
    ``keep_states``: the gateway keeps its states across restarts (in the lab's own directory)."""
    # Short and world-traversable: a Unix socket path has at most 107 bytes, and the tray runs as a user.
    workdir = Path(tempfile.mkdtemp(prefix="m6t-demo-"))
    workdir.chmod(0o755)
    lab = StandardLab()
    demo = DemoLab(lab, workdir, emulate=emulate, keep_states=keep_states)
    try:
        lab.start()
        demo.start_gateway()
        demo.write_client_config(config)
        if start_helper:
            demo.start_helper()
        yield demo
    finally:
        demo.close()


# ------------------------------------------------------------------------------------------ narration


class Narrator:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        self.out.write(f"[{time.monotonic() - self.started:5.1f}s] {text}\n")
        self.out.flush()

    def detail(self, text: str) -> None:
        self.out.write(f"         · {text}\n")
        self.out.flush()

    def plain(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()


def _event_line(event: dict[str, Any]) -> str | None:
    kind = event.get("event")
    data = event.get("data") or {}
    if kind == EventKind.STATE:
        return f"state {data.get('previous')} → {data.get('state')}" + (
            f" ({data['detail']})" if data.get("detail") else ""
        )
    if kind == EventKind.ADDRESS and data.get("address"):
        return f"new address {data['address']}" + (f" ({data['reason']})" if data.get("reason") else "")
    if kind == EventKind.ATTACHMENT:
        att = data.get("attachment")
        return "no IPv4 path" if att is None else f"IPv4 attachment {att['local_ipv4']} on {att['interface']}"
    if kind == EventKind.ERROR:
        return f"error {data.get('code')}: {data.get('message')}"
    return None


@dataclass
class Step:
    name: str
    seconds: float
    result: str


class Demo:
    def __init__(self, env: DemoLab, out: TextIO) -> None:
        self.env = env
        self.say = Narrator(out)
        self.steps: list[Step] = []
        self.control = env.client()
        self.watcher = env.client()
        self.watcher.subscribe(
            [k.value for k in (EventKind.STATE, EventKind.ADDRESS, EventKind.ATTACHMENT, EventKind.ERROR)]
        )

    def close(self) -> None:
        self.control.close()
        self.watcher.close()

    def _drain_events(self, wait: float, quiet: float = 0.0) -> None:
        """Narrate the events that arrive within ``wait`` s, then those following each other within ``quiet`` s."""
        event = self.watcher.next_event(wait)
        while event is not None:
            line = _event_line(dict(event))
            if line:
                self.say.detail(line)
            event = self.watcher.next_event(quiet)

    def wait_status(self, what: str, condition: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = self.control.call(Method.STATUS)
            if condition(status):
                # What led here is still in flight on the event connection: tell it before the result.
                self._drain_events(0.05, quiet=0.1)
                return status
            if time.monotonic() > deadline:
                problems = "; ".join(p.get("message", "") for p in status.get("problems", []))
                raise DemoError(
                    f"{what} did not happen within {timeout:g} s (state {status.get('state')}"
                    + (f", problems: {problems}" if problems else "")
                    + ")"
                )
            self._drain_events(0.1)

    def wait_ping(self, what: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            rtts = self.env.ping_ha(1, timeout=1.0)
            if rtts:
                return rtts[0]
            if time.monotonic() > deadline:
                raise DemoError(f"{what}: the HA {a.HA} did not answer ping6 within {timeout:g} s")
            self._drain_events(0.05)

    def run(self) -> None:
        env, say = self.env, self.say
        status = self.control.call(Method.STATUS)
        say(f"m6t-helper {status['helper']['version']} is running in the mobile node; state {status['state']}")
        say("m6t up (through the control API)")
        t0 = time.monotonic()
        self.control.call(Method.UP)
        status = self.wait_status(
            "the tunnel coming up", lambda s: s["state"] == TunnelState.CONNECTED.value and bool(s["address"]), 30
        )
        up_s = time.monotonic() - t0
        att = status.get("attachment") or {}
        say(f"connected in {up_s:.2f} s: address {status['address']}")
        say.detail(
            f"gateway {status['gateway']}, MN {att.get('local_ipv4')} on {att.get('interface')} behind nat1 "
            f"(public {a.NAT1_WAN}), MTU {status['mtu']}"
        )
        self.steps.append(Step("up", up_s, str(status["address"])))
        self.path_mtu(status)

        rtts = env.ping_ha(3)
        if not rtts:
            self.wait_ping("after connecting", 10)
            rtts = env.ping_ha(3)
        if not rtts:
            raise DemoError(f"the HA {a.HA} does not answer ping6 through the tunnel")
        say(f"ping6 {a.HA} (the Home Agent) through the tunnel: " + ", ".join(f"{r:.2f} ms" for r in rtts))
        self.steps.append(Step("ping", sum(rtts) / len(rtts) / 1000.0, f"{len(rtts)}/3 answered"))

        self.move("nat2", str(status["address"]))
        self.reboot_nat("nat2")

    def path_mtu(self, connected: dict[str, Any]) -> None:
        """The path MTU search (RFC 8899 over the tunnel) that follows the connection, in one line."""

        def searched(s: dict[str, Any]) -> bool:
            search = (s.get("mtu_detail") or {}).get("search") or {}
            return search.get("state") in ("search_complete", "error") and search.get("time") is not None

        status = self.wait_status("the path MTU search", searched, 20)
        search = status["mtu_detail"]["search"]
        after = search["time"] - (connected.get("since") or search["time"])
        how = "path under 1308 bytes, fragmentation relied on" if search["fragmentation"] else search["found"]
        self.say(
            f"path MTU search: tunnel MTU {status['mtu']} ({how}, {search['probes']} probes, "
            f"{max(after, 0.0):.3f} s after connecting)"
        )
        self.steps.append(Step("path MTU", max(after, 0.0), f"{status['mtu']} ({how})"))

    def move(self, to: NatName, old_address: str) -> None:
        say = self.say
        target = a.MN_LAN2 if to == "nat2" else a.MN_LAN1
        say(f"moving the MN to {to}: lan1 goes down, lan2 comes up with {target}")
        t0 = time.monotonic()
        self.env.lab.move_mn(to)
        status = self.wait_status(
            "reattaching after the move",
            lambda s: s["state"] == TunnelState.CONNECTED.value and s["address"] not in (None, old_address),
            30,
        )
        rtt = self.wait_ping("after the move", 15)
        took = time.monotonic() - t0
        say(f"reattached in {took:.2f} s: new address {status['address']}, ping6 {rtt:.2f} ms")
        self.steps.append(Step(f"move to {to}", took, str(status["address"])))

    def reboot_nat(self, nat: NatName) -> None:
        say, env = self.say, self.env
        before = [m for m in env.lab.nat_mappings(nat) if m.remote_addr == a.GW_WAN]
        status_before = self.control.call(Method.STATUS)
        say(
            f"rebooting {nat}: {len(before)} UDP mapping(s) toward the gateway forgotten, and the next one gets"
            " a new public port, which the gateway must not accept for the old address (draft 2.4)"
        )
        t0 = time.monotonic()
        env.lab.rebind_nat(nat, a.GW_WAN)
        rtt = self.wait_ping("after the NAT flush", 40)
        status = self.wait_status(
            "reconnecting after the NAT flush", lambda s: s["state"] == TunnelState.CONNECTED.value, 40
        )
        took = time.monotonic() - t0
        after = [m for m in env.lab.nat_mappings(nat) if m.remote_addr == a.GW_WAN]
        same_port = bool(before and after and before[0].outside_port == after[0].outside_port)
        if status["address"] == status_before["address"]:
            how = (
                "the NAT gave the same public port back, so the gateway's state still matched"
                if same_port
                else "the gateway accepted the flow again"
            )
        else:
            how = f"lost binding detected, new address {status['address']}"
        say(f"recovered in {took:.2f} s ({how}); ping6 {rtt:.2f} ms")
        self.steps.append(Step(f"{nat} reboot", took, str(status["address"])))

    def summary(self) -> None:
        say = self.say
        say.plain()
        say.plain("summary")
        for step in self.steps:
            if step.name == "ping":
                say.plain(f"  {'ping6 HA':<14} average {step.seconds * 1000:.2f} ms ({step.result})")
            else:
                say.plain(f"  {step.name:<14} {step.seconds:6.2f} s   {step.result}")
        counters = self.control.call(Method.STATUS).get("counters") or {}
        say.plain(
            f"  {'traffic':<14} {counters.get('tx_packets', 0)} packets out, {counters.get('rx_packets', 0)} in, "
            f"{counters.get('keepalive_replies', 0)} keepalive replies"
        )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(*, keep: bool = False, out: TextIO | None = None, emulate: str | None = None) -> int:
    """The demo; 0 on success.  With ``keep``, stays in front with the lab up until Ctrl-C.  With ``emulate``
    (an OS name), the helper runs that OS's real backend over its emulation (:mod:`m6t.lab.emulation`)."""
    out = out or sys.stdout
    if emulate is not None:
        from m6t.lab.emulation import EMULATIONS

        emulation = EMULATIONS.get(emulate)
        if emulation is None:
            out.write(f"m6t lab demo: cannot emulate {emulate!r} (known: {', '.join(EMULATIONS)})\n")
            return 2
        out.write(f"m6t lab demo — emulated {emulation.name}: {emulation.summary}\n")
    from m6t.lab.environment import unavailable_reason
    from m6t.lab.registry import cleanup_stale

    reason = unavailable_reason()
    if reason is not None:
        out.write(f"m6t lab demo: cannot run here: {reason}\n")
        return 2
    with contextlib.suppress(Exception):
        cleanup_stale()
    start = time.monotonic()
    say = Narrator(out)
    say("building the standard lab: mn ─ nat1 | nat2 ─ WAN ─ gw ─ ha (network namespaces)")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM gets the same clean teardown as Ctrl-C
    failure: str | None = None
    try:
        with demo_lab(emulate=emulate) as env:
            demo = Demo(env, out)
            demo.say.started = say.started
            try:
                say(f"gateway running in {env.lab.ns(a.GW)}: {a.GW_WAN} UDP {', '.join(map(str, GATEWAY_PORTS))}")
                say(f"Home Agent {a.HA} in {env.lab.ns(a.HA_HOST)} (its kernel answers ping6)")
                demo.run()
                demo.summary()
                total = time.monotonic() - start
                say.plain(f"  {'total':<14} {total:6.2f} s")
                if total > DEMO_DEADLINE_S:
                    raise DemoError(f"the demo took {total:.0f} s, more than its {DEMO_DEADLINE_S:.0f} s budget")
                if keep:
                    _keep_running(env, say)
            except (DemoError, LabError, HelperError) as exc:
                # The logs live in the lab's work directory: read them before the teardown removes it.
                failure = f"{exc}\n{env.logs()}"
            finally:
                demo.close()
    except KeyboardInterrupt:
        out.write("\nlab torn down\n" if keep else "\ninterrupted: lab torn down\n")
        return 0 if keep else 130
    except (DemoError, LabError, HelperError) as exc:
        failure = str(exc)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failure is not None:
        out.write(f"m6t lab demo: FAILED: {failure}\n")
        return 1
    say.plain("lab torn down; demo succeeded")
    return 0


def _keep_running(env: DemoLab, say: Narrator) -> None:
    say.plain()
    say.plain("the lab keeps running; in another terminal:")
    say.plain(f"  m6t --socket {env.socket_path} status")
    say.plain(f"  m6t-tray --socket {env.socket_path}")
    say.plain(f"  ip netns exec {env.lab.ns(a.MN)} ping -6 {a.HA}")
    say.plain("press Ctrl-C to tear it all down")
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="m6t lab demo")
    parser.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    parser.add_argument("--emulate", metavar="OS", help="windows or darwin: that OS's backend over its emulation")
    args = parser.parse_args(argv)
    return run(keep=args.keep, emulate=args.emulate)
