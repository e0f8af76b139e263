"""The real gateway daemon in a standard lab, and scripted mobile nodes that talk to it (stdlib Python run in
the MN's namespace), for the gateway's lab tests: :func:`running_gateway` starts one with a configuration of the
test's, :class:`Gateway` reads its metrics and log and exchanges datagrams with it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from m6t.gateway.config import AccessSection, StatesSection, UnixEndpoint
from m6t.gateway.metrics import PREFIX, parse
from m6t.gateway.metrics_server import fetch_metrics
from m6t.lab import GW, GW_WAN, LabError, StandardLab, configs, processes, wait_until
from m6t.protocol import build_echo_request, parse_echo_reply
from tests.lab.commands import REPO, tree_env

HA = IPv6Address("fd00:ab::1")
PORT_A = 3544
PORT_B = 4500
TUN = "m6tgwlab0"
FASTLANE_TABLE = "m6t_gw_" + TUN
BURST = 5

# A mobile node in a few lines of stdlib Python: send datagrams (optionally as one UDP GSO send) from a
# fixed local port to the gateway, then collect what comes back for a bounded time.
MN_SCRIPT = r"""
import json, select, socket, sys, time
spec = json.loads(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", spec["local_port"]))
packets = [bytes.fromhex(p) for p in spec["send"]]
dest = (spec["gw"], spec["port"])
if spec.get("gso") and packets:
    s.sendmsg([b"".join(packets)], [(17, 103, len(packets[0]).to_bytes(2, sys.byteorder))], 0, dest)
else:
    for p in packets:
        s.sendto(p, dest)
got = []
deadline = time.monotonic() + spec["wait"]
for _ in range(100000):
    if len(got) >= spec["expect"]:
        break
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        break
    ready, _, _ = select.select([s], [], [], remaining)
    if not ready:
        break
    data, addr = s.recvfrom(65535)
    got.append([addr[0], addr[1], data.hex()])
print(json.dumps(got))
"""


@dataclass
class Gateway:
    """A running gateway daemon in a lab, with its metrics socket and log."""

    lab: StandardLab
    proc: subprocess.Popen[str]
    workdir: Path
    metrics: UnixEndpoint
    log: Path

    def fetch(self) -> str:
        return fetch_metrics(self.metrics, timeout=5.0)

    def value(self, name: str, **labels: str) -> float:
        for sample in parse(self.fetch()):
            if sample.name == PREFIX + name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
        raise AssertionError(f"no metric {name} {labels} in:\n{self.fetch()}")

    def exchange(
        self,
        host: str,
        packets: list[bytes],
        *,
        local_port: int,
        port: int = PORT_A,
        expect: int,
        wait: float = 3.0,
        gso: bool = False,
    ) -> list[tuple[str, int, bytes]]:
        """Send ``packets`` from ``host`` to the gateway and return what came back (source ip, port, payload)."""
        spec = sender_spec(packets, local_port=local_port, port=port, expect=expect, wait=wait) | {"gso": gso}
        script = self.workdir / "mn.py"
        result = self.lab.run(host, sys.executable, str(script), json.dumps(spec), timeout=wait + 15)
        return [(ip, p, bytes.fromhex(data)) for ip, p, data in json.loads(result.stdout)]

    def describe(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"


def sender_spec(
    packets: list[bytes], *, local_port: int, port: int = PORT_A, expect: int, wait: float
) -> dict[str, Any]:
    """What a scripted MN reads (as JSON): the datagrams it sends the gateway from ``local_port``, and how many
    replies it waits for, how long at most."""
    return {
        "local_port": local_port,
        "send": [p.hex() for p in packets],
        "gw": GW_WAN,
        "port": port,
        "expect": expect,
        "wait": wait,
    }


def gateway_config(metrics_path: Path, access: AccessSection | None = None) -> str:
    return configs.gateway_config(
        ports=(PORT_A, PORT_B),
        interface=TUN,
        states=StatesSection(
            temporary_lifetime_ms=500,
            active_lifetime_s=30,
            new_states_per_ipv4_per_s=1,
            new_states_per_ipv4_burst=BURST,
            max_temporary=1000,
        ),
        metrics=f"unix:{metrics_path}",
        access=access,
    )


def start_gateway(lab: StandardLab, config_text: Callable[[Path], str] = gateway_config) -> Gateway:
    """``config_text`` makes the configuration from the metrics socket's path (in the run's directory)."""
    # Short directory: a Unix socket path has at most 107 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="m6tgw-"))
    (workdir / "mn.py").write_text(MN_SCRIPT)
    metrics_path = workdir / "metrics.sock"
    config = workdir / "gateway.toml"
    config.write_text(config_text(metrics_path))
    log = workdir / "gateway.log"
    with log.open("w") as log_file:
        proc = lab.spawn(
            GW,
            [sys.executable, "-m", "m6t.gateway", "--config", str(config)],
            stderr=log_file,
            stdout=log_file,
            cwd=str(REPO),
            env=tree_env(),
        )
    gateway = Gateway(lab, proc, workdir, UnixEndpoint(str(metrics_path)), log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the gateway exited with {proc.returncode}:\n{gateway.describe()}")
        try:
            gateway.fetch()
        except Exception:
            return False
        return True

    try:
        wait_until(ready, what="the gateway's metrics endpoint", timeout=15.0, interval=0.1)
    except LabError:
        proc.kill()
        raise AssertionError(f"the gateway did not come up:\n{gateway.describe()}") from None
    return gateway


def stop_gateway(gateway: Gateway) -> int:
    """SIGTERM, as systemd stops it: its exit status (a gateway that needs SIGKILL fails the test)."""
    if not processes.stop(gateway.proc, grace=10.0):
        raise AssertionError(f"the gateway ignored SIGTERM:\n{gateway.describe()}")
    return gateway.proc.returncode


@contextlib.contextmanager
def running_gateway(lab: StandardLab, config_text: Callable[[Path], str] = gateway_config) -> Iterator[Gateway]:
    """The gateway daemon started in ``lab``; stopped (unless the test did) and its directory removed after."""
    gateway = start_gateway(lab, config_text)
    try:
        yield gateway
    finally:
        try:
            stop_gateway(gateway)
        finally:
            shutil.rmtree(gateway.workdir, ignore_errors=True)


def mn_address(mn_id: int, suffix: int) -> IPv6Address:
    """An address of MN ``mn_id``'s /80 in the lab's m6t prefix (fd6d:3674:a1b2:0:<mn_id>::/80)."""
    return IPv6Address(int(IPv6Address("fd6d:3674:a1b2::")) | (mn_id << 48) | suffix)


def echo(src: IPv6Address, seq: int = 1, data: bytes = b"m6t lab") -> bytes:
    return build_echo_request(src.packed, HA.packed, 0x4D36, seq, data=data)


def assert_echo_replies(got: list[tuple[str, int, bytes]], src: IPv6Address, seqs: list[int], port: int) -> None:
    assert len(got) == len(seqs), got
    for ip, sport, payload in got:
        assert (ip, sport) == (GW_WAN, port)
        reply = parse_echo_reply(payload)
        assert reply.src == HA.packed and reply.dst == src.packed
    assert sorted(parse_echo_reply(p).seq for _, _, p in got) == sorted(seqs)
