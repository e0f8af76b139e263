"""m6t itself: the real helper on the MN and the real gateway on the gateway host, default settings.

The configuration files carry only what the lab dictates (addresses, prefix, interfaces, MTU 1472) and the
documented defaults; nothing is tuned for the benchmark. The helper gets a control socket and a state
directory of its own, so that a helper of another run on this machine is never disturbed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil

from bench import tunnel_lab as tl
from bench.scenarios.base import CLIENT, GATEWAY, Scenario, Tunnel
from m6t.lab import GW, HA, MN, StandardLab, configs

PORT = 3544
MTU = 1472
GW_IFNAME = "m6tgw0"
MN_IFNAME = "m6t0"
KEEPALIVE_INTERVAL = 30
METRICS = "127.0.0.1:9477"
GATEWAY_MODULE = "m6t.gateway"
HELPER_MODULES = ("m6t.client.helper",)
START_TIMEOUT = 15.0

GATEWAY_CONFIG = configs.gateway_config(ports=(PORT,), interface=GW_IFNAME, mtu=MTU, metrics=METRICS)
CLIENT_CONFIG = configs.client_config(ports=(PORT,), interface=MN_IFNAME, mtu=MTU, keepalive=KEEPALIVE_INTERVAL)


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def helper_module() -> str | None:
    """The importable module that runs the helper, if any."""
    return next((name for name in HELPER_MODULES if _module_exists(name)), None)


class M6tScenario(Scenario):
    """m6t-helper (MN) ⇄ m6t-gateway (gateway host)."""

    name = "m6t"
    title = "m6t (Python helper + gateway, default settings)"

    def unavailable(self) -> str | None:
        """Why m6t cannot run: its gateway or helper module is missing."""
        missing = [m for m in (f"{GATEWAY_MODULE}.__main__", "m6t.client.driver") if not _module_exists(m)]
        if helper_module() is None:
            missing.append(" or ".join(HELPER_MODULES))
        return f"not importable yet: {', '.join(missing)}" if missing else None

    @contextlib.contextmanager
    def up(self, lab: StandardLab, logdir: Path) -> Iterator[Tunnel]:
        """Start the gateway, then the helper (which connects by itself); both stopped on exit."""
        helper = helper_module()
        if helper is None:
            raise tl.BenchError("no m6t helper module")
        with contextlib.ExitStack() as stack:
            state = Path(tempfile.mkdtemp(prefix="m6t-bench-"))
            stack.callback(shutil.rmtree, state, ignore_errors=True)
            gw_conf = state / "gateway.toml"
            gw_conf.write_text(GATEWAY_CONFIG, encoding="utf-8")
            mn_conf = state / "client.toml"
            mn_conf.write_text(CLIENT_CONFIG, encoding="utf-8")
            gw_log = logdir / "m6t-gateway.log"
            gw = stack.enter_context(
                tl.process(lab, GW, tl.python_argv(GATEWAY_MODULE, "--config", str(gw_conf)), log=gw_log, python=True)
            )

            def gateway_up() -> bool:
                tl.check_alive(gw, "m6t-gateway", gw_log)
                return tl.udp_listening(lab, GW, PORT) and tl.has_interface(lab, GW, GW_IFNAME)

            tl.wait_for(gateway_up, what="m6t-gateway to listen", timeout=START_TIMEOUT, interval=0.1)
            mn_log = logdir / "m6t-helper.log"
            options = ["--config", str(mn_conf), "--foreground"]
            if helper == "m6t.client.helper":
                # Its own socket and state, so that a helper of another run on this machine is left alone.
                options += ["--socket", str(state / "control.sock"), "--state-dir", str(state / "state")]
            argv = tl.python_argv(helper, *options)
            mn = stack.enter_context(tl.process(lab, MN, argv, log=mn_log, python=True))

            def helper_up() -> bool:
                tl.check_alive(mn, "m6t-helper", mn_log)
                return tl.has_interface(lab, MN, MN_IFNAME)

            tl.wait_for(helper_up, what="m6t-helper to create its TUN", timeout=START_TIMEOUT, interval=0.1)
            yield Tunnel(
                target=HA,
                full_size_ping=MTU - 48,
                mtu=MTU,
                processes={CLIENT: psutil.Process(mn.pid), GATEWAY: psutil.Process(gw.pid)},
                tun={MN: MN_IFNAME, GW: GW_IFNAME},
            )
            tl.check_alive(mn, "m6t-helper", mn_log)
            tl.check_alive(gw, "m6t-gateway", gw_log)
