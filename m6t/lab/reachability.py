"""Checks that show the lab works: pings and UDP source observation through the NATs, with a narration."""

from __future__ import annotations

import re
import selectors
import subprocess
import sys

from m6t.lab import addresses as a
from m6t.lab import processes
from m6t.lab.errors import LabError
from m6t.lab.lab import Lab
from m6t.lab.standard import StandardLab

PROBE_PORT = 9999

_LISTENER = """\
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
data, (host, port) = s.recvfrom(2048)
print(host, port, flush=True)
"""

_SENDER = """\
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if int(sys.argv[3]):
    s.bind(("0.0.0.0", int(sys.argv[3])))
s.sendto(b"m6t-lab probe", (sys.argv[1], int(sys.argv[2])))
"""

_RTT = re.compile(r"= [\d.]+/([\d.]+)/")


def ping_rtt(lab: Lab, host: str, destination: str, *, timeout: float = 2.0) -> float:
    """Ping once and return the round trip in milliseconds; raise LabError when unanswered."""
    result = lab.run(host, "ping", "-n", "-c", "1", "-W", str(max(1, round(timeout))), destination, check=False)
    match = _RTT.search(result.stdout)
    if result.returncode != 0 or match is None:
        raise LabError(f"{host} cannot ping {destination}", returncode=result.returncode, stderr=result.stdout)
    return float(match.group(1))


def observe_udp_source(
    lab: Lab,
    sender: str,
    listener: str,
    listen_address: str,
    *,
    port: int = PROBE_PORT,
    source_port: int = 0,
    timeout: float = 3.0,
) -> tuple[str, int]:
    """Send one UDP datagram from sender to listen_address:port on listener; return the source it saw."""
    argv = [sys.executable, "-c", _LISTENER, listen_address, str(port), str(timeout)]
    with processes.killed_after(lab.spawn(listener, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)) as proc:
        if _read_line(proc, timeout) != "ready":
            raise LabError(f"UDP listener in {listener} did not start: {_stderr(proc)}")
        lab.run(sender, sys.executable, "-c", _SENDER, listen_address, str(port), str(source_port))
        seen = _read_line(proc, timeout).split()
        if len(seen) != 2:
            raise LabError(f"{listener} received no datagram from {sender} on {listen_address}:{port}")
        return seen[0], int(seen[1])


def describe_and_check(lab: StandardLab) -> list[str]:
    """Ping through NAT1, move the MN, ping through NAT2; return the narration, raise LabError on failure.

    The lab is left with the MN on NAT2's LAN.
    """
    if lab.mn_attachment != a.NAT1:
        lab.move_mn("nat1")
    lines = [
        f"Lab {lab.prefix}*: mobile node {a.MN} at {lab.mn_address} behind {a.NAT1} "
        f"({a.NAT1_WAN}), tunnel gateway {a.GW} at {a.GW_WAN}, Home Agent {a.HA} behind the gateway.",
    ]
    rtt = ping_rtt(lab, a.GW, a.HA)
    lines.append(f"{a.GW} reaches the Home Agent {a.HA} over the HA link ({rtt:.2f} ms).")
    for step, nat, wan in ((1, a.NAT1, a.NAT1_WAN), (2, a.NAT2, a.NAT2_WAN)):
        if step == 2:
            lab.move_mn("nat2")
            lines.append(f"{a.MN} moves to {nat}'s LAN: now {lab.mn_address} via router {lab.mn_router}.")
        rtt = ping_rtt(lab, a.MN, a.GW_WAN)
        lines.append(f"{a.MN} pings the gateway {a.GW_WAN} through {nat} ({rtt:.2f} ms).")
        source, port = observe_udp_source(lab, a.MN, a.GW, a.GW_WAN)
        if source != wan:
            raise LabError(f"gateway saw {a.MN}'s UDP from {source}, expected {nat}'s WAN address {wan}")
        lines.append(f"The gateway sees {a.MN}'s UDP coming from {source}:{port}: {nat} maps {lab.mn_address} to it.")
    lines.append("Moving changed the MN's public IPv4 address: exactly what m6t's tunnel has to survive.")
    return lines


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    if proc.stdout is None:
        raise LabError("process has no stdout pipe")
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        # The child writes whole lines and flushes, so readiness means a full line (or EOF).
        if not selector.select(timeout):
            return ""
        return proc.stdout.readline().strip()


def _stderr(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None or proc.stderr is None:
        return "(still running)"
    return proc.stderr.read().strip()
