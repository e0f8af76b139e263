"""The rig the client's lab tests share: the real gateway daemon and an m6t helper on the MN, over one backend.

mn ── nat1 ── WAN ── gw ── ha (fd00:ab::1); nat2 to move to.  The helper runs Linux's backend, or the
shipped Windows or macOS backend over its emulation (:mod:`m6t.lab.emulation`): :data:`BACKENDS` says
what differs between them as the lab sees it, so that one test body serves the three.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import IO, Any, Literal

from m6t.client.api.client import HelperClient
from m6t.client.api.schema import Method
from m6t.gateway.config import StatesSection
from m6t.lab import GW, GW_WAN, HA, MN, StandardLab, configs, processes, wait_until
from m6t.lab.demo import helper_command
from tests.lab.commands import REPO, tree_env

MN_PREFIX = IPv6Network("fd6d:3674:a1b2:0:1::/80")
TUN = "m6t0"
PORT_A = 3544
PORT_B = 4500
RECONNECT_BOUND_S = 10.0
DAEMON_GRACE_S = 10.0
"""How long the gateway and the helper may take to tidy up after SIGTERM (their TUN, routes, nftables)."""

GATEWAY_CONFIG = configs.gateway_config(
    ports=(PORT_A, PORT_B),
    states=StatesSection(
        temporary_lifetime_ms=500,
        active_lifetime_s=60,
        new_states_per_ipv4_per_s=5,
        new_states_per_ipv4_burst=20,
        max_temporary=1000,
    ),
)


@dataclass(frozen=True)
class Backend:
    """A client backend as the lab sees it from Linux."""

    id: str
    """The test id: ``linux``, ``windows``, ``darwin``."""
    label: str
    """How the printed timings name it."""
    emulate: str | None = None
    """The OS whose backend the helper runs over its emulation (``m6t.lab.emulation``); Linux's when None."""
    tun: str = TUN
    """The name the client's tunnel interface gets (macOS names its utun itself: utun0 in a fresh namespace)."""
    route_metric: int | None = 1029
    """The metric of the tunnel's default route as Linux shows it; None where the OS has no route metric."""
    proof: tuple[str, ...] = ()
    """Lines of the helper's log that show this backend is the one running (none for Linux's, the default)."""
    never_logged: tuple[str, ...] = ()
    """Lines the helper's log must never hold, such as the emulation's report of broken API contracts."""

    def __str__(self) -> str:
        return self.id


LINUX = Backend("linux", "Linux")
BACKENDS = (
    LINUX,
    Backend(
        "windows",
        "emulated Windows",
        emulate="windows",
        # Logged by WindowsBackend.check(): the helper really runs the Windows backend.
        proof=("m6t.platform.windows.backend INFO Wintun driver", "emulated Windows"),
        never_logged=("broke API contracts",),
    ),
    Backend(
        "darwin",
        "emulated macOS",
        emulate="darwin",
        tun="utun0",
        route_metric=None,  # the BSD routing table has none (m6t.platform.darwin.routing)
        proof=(f"{TUN} is utun0",),
    ),
)


def client_config(
    *,
    ports: tuple[int, ...] = (PORT_A,),
    keepalive: float = 1,
    probe: bool = True,
    gateways: tuple[str, ...] = (GW_WAN,),
) -> str:
    return configs.client_config(ports=ports, interface=TUN, keepalive=keepalive, probe=probe, gateways=gateways)


@dataclass
class Rig:
    """A gateway daemon and an m6t client helper running in a standard lab."""

    lab: StandardLab
    workdir: Path
    backend: Backend = LINUX
    gateway: subprocess.Popen[str] | None = None
    more_gateways: list[subprocess.Popen[str]] = field(default_factory=list)
    """Gateway daemons on other hosts than gw (a lab with a second gateway)."""
    client: subprocess.Popen[str] | None = None
    logs: list[IO[str]] = field(default_factory=list)

    @property
    def tun(self) -> str:
        return self.backend.tun

    def _spawn(self, host: str, argv: list[str], log_name: str) -> subprocess.Popen[str]:
        log = (self.workdir / log_name).open("a")
        self.logs.append(log)
        return self.lab.spawn(
            host,
            [sys.executable, *argv],
            stdout=log,
            stderr=log,
            cwd=str(REPO),
            env=tree_env(),
        )

    def start_gateway(self, host: str = GW, text: str = GATEWAY_CONFIG) -> None:
        suffix = "" if host == GW else f"-{host}"
        config = self.workdir / f"gateway{suffix}.toml"
        config.write_text(text)
        proc = self._spawn(host, ["-m", "m6t.gateway", "--config", str(config)], f"gateway{suffix}.log")
        if host == GW:
            self.gateway = proc
        else:
            self.more_gateways.append(proc)
        wait_until(
            lambda: "m6tgw0" in self.lab.run(host, "ip", "-o", "link", check=False).stdout,
            what=f"the gateway's TUN on {host}",
            timeout=15.0,
            interval=0.1,
        )

    def stop_gateway(self) -> None:
        proc, self.gateway = self.gateway, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)

    def start_client(self, config: str) -> None:
        path = self.workdir / "client.toml"
        path.write_text(config)
        argv = [
            *helper_command(self.backend.emulate),
            "--config",
            str(path),
            "--socket",
            str(self.workdir / "helper.sock"),
            "--state-dir",
            str(self.workdir / "state"),
        ]
        self.client = self._spawn(MN, argv, "client.log")

    def stop_client(self) -> int:
        proc, self.client = self.client, None
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=15)

    def status(self) -> dict[str, Any]:
        """The helper's ``status`` reply, through its control socket."""
        with HelperClient(str(self.workdir / "helper.sock"), timeout=10) as client:
            result: dict[str, Any] = client.call(Method.STATUS)
            return result

    def client_log(self) -> str:
        path = self.workdir / "client.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def describe(self) -> str:
        parts = []
        for name in ("client.log", "gateway.log", *sorted(p.name for p in self.workdir.glob("gateway-*.log"))):
            path = self.workdir / name
            text = path.read_text(errors="replace") if path.exists() else "(none)"
            parts.append(f"--- {name}\n{text[-4000:]}")
        return "\n".join(parts)

    def tunnel_addresses(self) -> list[IPv6Address]:
        out = self.lab.run(MN, "ip", "-j", "-6", "addr", "show", "dev", self.tun, check=False).stdout
        found = []
        for link in json.loads(out or "[]"):
            for info in link.get("addr_info", []):
                address = IPv6Address(info["local"])
                if address in MN_PREFIX:
                    found.append(address)
        return found

    def wait_address(self, *, other_than: IPv6Address | None = None, timeout: float = 10.0) -> IPv6Address:
        def ready() -> bool:
            if self.client is not None and self.client.poll() is not None:
                raise AssertionError(f"the client exited with {self.client.returncode}\n{self.describe()}")
            found = self.tunnel_addresses()
            return len(found) == 1 and found[0] != other_than

        wait_until(ready, what="the client's tunnel address", timeout=timeout, interval=0.05)
        [address] = self.tunnel_addresses()
        return address

    def ping_ha_once(self, wait: float = 0.3) -> bool:
        result = self.lab.run(MN, "ping", "-6", "-n", "-c", "1", "-W", str(wait), HA, check=False, timeout=10)
        return result.returncode == 0

    def time_to_ha_reply(self, since: float, timeout: float = 15.0) -> float:
        """Seconds from ``since`` (monotonic) to the first answered ping to the HA (bounded loop)."""
        for _ in range(int(timeout / 0.05)):
            if self.ping_ha_once():
                return time.monotonic() - since
            if time.monotonic() - since > timeout:
                break
            time.sleep(0.02)
        raise AssertionError(f"no HA reply {timeout} s after the change\n{self.describe()}")


@contextlib.contextmanager
def running_rig(
    lab: StandardLab, backend: Backend = LINUX, gateway_config: Callable[[Path], str] | None = None
) -> Iterator[Rig]:
    """The gateway started in ``lab`` (with the configuration ``gateway_config`` makes in the run's directory, if
    given); the client (started by the test) and the gateway stopped after."""
    workdir = Path(tempfile.mkdtemp(prefix="m6tclient-"))
    rig = Rig(lab, workdir, backend)
    try:
        rig.start_gateway(text=GATEWAY_CONFIG if gateway_config is None else gateway_config(workdir))
        yield rig
    finally:
        processes.stop_all((rig.client, rig.gateway, *rig.more_gateways), grace=DAEMON_GRACE_S)
        for log in rig.logs:
            log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def connected(rig: Rig, config: str) -> IPv6Address:
    rig.start_client(config)
    address = rig.wait_address()
    start = time.monotonic()
    rig.time_to_ha_reply(start, timeout=RECONNECT_BOUND_S)
    return address


# ------------------------------------------------------------------------------------------ capture


def parse_pcap(data: bytes) -> list[bytes]:
    """The IPv4 packets of a pcap file (Ethernet, Linux cooked v1/v2 or raw IP link types)."""
    if len(data) < 24:
        return []
    magic = data[:4]
    order: Literal["little", "big"] = "little" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else "big"
    linktype = int.from_bytes(data[20:24], order)
    skip = {1: 14, 113: 16, 276: 20, 101: 0, 228: 0}.get(linktype)
    assert skip is not None, f"unexpected link type {linktype}"
    packets = []
    offset = 24
    while offset + 16 <= len(data):
        caplen = int.from_bytes(data[offset + 8 : offset + 12], order)
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        if linktype == 1 and frame[12:14] != b"\x08\x00":
            continue
        packets.append(frame[skip:])
    return packets


@dataclass(frozen=True)
class Outer:
    src: str
    dst: str
    df: bool
    sport: int
    dport: int
    payload: bytes


def outer_udp(packets: list[bytes]) -> list[Outer]:
    found = []
    for ip in packets:
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        flags = int.from_bytes(ip[6:8], "big")
        if flags & 0x1FFF or flags & 0x2000:
            continue  # a fragment: its UDP header (if any) is elsewhere
        udp = ip[ihl : ihl + 8]
        found.append(
            Outer(
                src=".".join(str(b) for b in ip[12:16]),
                dst=".".join(str(b) for b in ip[16:20]),
                df=bool(flags & 0x4000),
                sport=int.from_bytes(udp[0:2], "big"),
                dport=int.from_bytes(udp[2:4], "big"),
                payload=ip[ihl + 8 :],
            )
        )
    return found


class Capture:
    """tcpdump on the gateway's WAN interface, for the packets' outer headers."""

    def __init__(self, rig: Rig, name: str, port: int = PORT_A) -> None:
        self.rig = rig
        self.path = rig.workdir / f"{name}.pcap"
        argv = [
            "tcpdump",
            "-i",
            "wan0",
            "-n",
            "-U",
            "--immediate-mode",
            "-s",
            "200",
            "-w",
            str(self.path),
            "udp",
            "port",
            str(port),
        ]
        self.proc = rig.lab.spawn(GW, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()  # "listening on wan0 ...": the capture is armed
        assert "listening" in line, line

    def stop(self) -> list[Outer]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return outer_udp(parse_pcap(self.path.read_bytes()))


def is_keepalive(payload: bytes, *, request: bool) -> bool:
    if len(payload) != 40 or payload[0] >> 4 != 6 or payload[6] != 59:
        return False
    fe80_1 = bytes.fromhex("fe800000000000000000000000000001")
    return payload[24:40] == fe80_1 if request else payload[8:24] == fe80_1
