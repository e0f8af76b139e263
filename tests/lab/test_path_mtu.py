"""Path MTU discovery on the tunnel (draft 2.6, RFC 8899) in the standard lab, with real namespaces.

nat1's WAN link carries 1400-byte packets and the WAN drops every IPv4 fragment, as firewalls and carrier NATs
often do: a tunnel that kept its 1472-byte MTU with DF clear would see every full-size packet fragmented and
lost (a ``ping -s 1424`` fails, a TCP upload stalls).  The client's probes (echoes to the HA with DF set on the
outer header) find the path: the tunnel MTU settles at 1372 (1400 - 28), a ``ping -M do`` of that size
crosses, TCP completes both ways; after a move to nat2's 1500-byte path the MTU is back to 1472.  The time
from connecting to the right MTU and the probes sent are printed (``-s``).  Runs on Linux's backend and on the
shipped Windows and macOS backends over their emulations (which give ``IP_DONTFRAGMENT``/``IP_DONTFRAG`` their
Linux meaning).  Needs root; skipped otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from m6t.client.api.client import HelperClient
from m6t.client.api.schema import Method
from m6t.lab import GW, HA, HA_HOST, MN, NAT1, StandardLab, nftables, processes
from m6t.lab.addresses import NAT_IF_WAN, WAN_SWITCH
from tests.lab.client_rig import BACKENDS, Rig, client_config, running_rig

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

WAN_MTU = 1400
NARROW = WAN_MTU - 28
"""The tunnel MTU nat1's path carries: IPv4 1400 less the outer IPv4 (20) and UDP (8) headers."""
WIDE = 1472
TRANSFER_BYTES = 4 << 20


@pytest.fixture(params=BACKENDS, ids=str)
def rig(request: pytest.FixtureRequest, lab: StandardLab) -> Iterator[Rig]:
    narrow_wan(lab)
    with running_rig(lab, request.param) as rig:
        yield rig


def narrow_wan(lab: StandardLab) -> None:
    """nat1's WAN link at 1400 bytes (both ends: the bridge port drops what its MTU does not carry) and the
    WAN dropping every IPv4 fragment, at the gateway and at nat1's WAN side."""
    lab.run(NAT1, "ip", "link", "set", NAT_IF_WAN, "mtu", str(WAN_MTU))
    lab.run(WAN_SWITCH, "ip", "link", "set", NAT1, "mtu", str(WAN_MTU))
    for host in (GW, NAT1):
        lab.load_nft(host, nftables.drop_ipv4_fragments())


def status(rig: Rig) -> dict[str, Any]:
    with HelperClient(str(rig.workdir / "helper.sock"), timeout=10) as client:
        result: dict[str, Any] = client.call(Method.STATUS)
        return result


def wait_search(rig: Rig, mtu: int, *, after: float = 0.0, timeout: float = 30.0) -> dict[str, Any]:
    """The helper's status once a search that ended after ``after`` (Unix time) set the tunnel MTU to ``mtu``."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if (rig.workdir / "helper.sock").exists():
            try:
                last = status(rig)
            except OSError:
                last = {}
            search = (last.get("mtu_detail") or {}).get("search") or {}
            if (
                last.get("mtu") == mtu
                and search.get("state") == "search_complete"
                and search.get("mtu") == mtu
                and (search.get("time") or 0) > after
            ):
                return last
        time.sleep(0.05)
    raise AssertionError(f"the tunnel MTU did not settle at {mtu}: {json.dumps(last)[:3000]}\n{rig.describe()}")


def link_mtu(rig: Rig) -> int:
    out = rig.lab.run(MN, "ip", "-j", "link", "show", "dev", rig.tun).stdout
    return int(json.loads(out)[0]["mtu"])


def ping_df(rig: Rig, size: int) -> subprocess.CompletedProcess[str]:
    """One ``ping -M do`` of a ``size``-byte IPv6 packet to the HA (48 bytes of IPv6 and ICMPv6 headers)."""
    return rig.lab.run(
        MN, "ping", "-6", "-n", "-c", "2", "-W", "2", "-M", "do", "-s", str(size - 48), HA, check=False, timeout=15
    )


SERVER = """
import socket, sys
n = int(sys.argv[1])
with socket.create_server(("fd00:ab::1", 5201), family=socket.AF_INET6) as listener:
    listener.settimeout(30)
    up, _ = listener.accept()  # the MN uploads: count to EOF, answer the count
    up.settimeout(30)
    got = 0
    while chunk := up.recv(65536):
        got += len(chunk)
    up.sendall(str(got).encode())
    up.close()
    down, _ = listener.accept()  # the MN downloads n bytes
    down.settimeout(30)
    down.sendall(bytes(n))
    down.close()
"""
CLIENT = """
import socket, sys, time
n = int(sys.argv[1])
for _ in range(100):  # the server takes a moment to listen
    try:
        up = socket.create_connection(("fd00:ab::1", 5201), timeout=30)
        break
    except ConnectionRefusedError:
        time.sleep(0.05)
up.sendall(bytes(n))
up.shutdown(socket.SHUT_WR)
answer = b""
while chunk := up.recv(100):
    answer += chunk
up.close()
down = socket.create_connection(("fd00:ab::1", 5201), timeout=30)
got = 0
while chunk := down.recv(65536):
    got += len(chunk)
print(int(answer), got)
"""


def tcp_both_ways(rig: Rig) -> tuple[int, int]:
    """A bounded TCP transfer each way between the MN and the HA (byte count and socket timeouts bounded):
    the bytes the HA received from the MN and those the MN received from the HA."""
    with processes.killed_after(rig.lab.spawn(HA_HOST, [sys.executable, "-c", SERVER, str(TRANSFER_BYTES)])) as server:
        result = rig.lab.run(MN, sys.executable, "-c", CLIENT, str(TRANSFER_BYTES), check=False, timeout=70)
        assert result.returncode == 0, f"{result}\n{rig.describe()}"
        uploaded, downloaded = (int(n) for n in result.stdout.split())
        server.wait(timeout=10)
        return uploaded, downloaded


def test_the_mtu_follows_the_path(rig: Rig) -> None:
    started = time.time()
    rig.start_client(client_config())
    rig.wait_address(timeout=15)
    narrow = wait_search(rig, NARROW)
    search = narrow["mtu_detail"]["search"]
    connected_at = narrow["since"]
    assert link_mtu(rig) == NARROW
    assert 1340 <= NARROW <= 1372
    assert not search["fragmentation"]
    print(
        f"\n[{rig.backend.label}] nat1 (1400-byte WAN, fragments dropped): tunnel MTU {narrow['mtu']} found by "
        f"{search['found']} with {search['probes']} probes, {search['time'] - connected_at:.3f} s after the tunnel "
        f"was confirmed, {search['time'] - started:.2f} s after the helper started"
    )

    # The largest packet crosses with DF set end to end; one byte more is refused locally.
    assert ping_df(rig, NARROW).returncode == 0, rig.describe()
    too_big = ping_df(rig, NARROW + 1)
    assert too_big.returncode != 0
    assert tcp_both_ways(rig) == (TRANSFER_BYTES, TRANSFER_BYTES)

    moved_at = time.time()
    rig.lab.move_mn("nat2")
    wide = wait_search(rig, WIDE, after=moved_at)
    assert link_mtu(rig) == WIDE
    wide_search = wide["mtu_detail"]["search"]
    assert wide_search["found"] == "probe"
    assert ping_df(rig, WIDE).returncode == 0, rig.describe()
    print(
        f"[{rig.backend.label}] nat2 (1500-byte path): tunnel MTU {wide['mtu']} with {wide_search['probes']} probes, "
        f"{wide_search['time'] - moved_at:.2f} s after the move; {wide_search['probes_total']} probes in all"
    )
