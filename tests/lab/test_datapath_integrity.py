"""End-to-end integrity of the fast data path: TCP transfers through m6t both ways, sha256 on both ends.

mn → nat1 → WAN → gw → ha, the real gateway daemon and the real client helper.  Each end's data path is
set with ``M6T_DATAPATH`` (see :mod:`m6t.platform.linux.offload`), and the combinations are chosen so that
every piece of our own segmentation is checked by a kernel that verifies checksums:

* a receiving end in ``plain`` mode writes each packet as it came (no virtio-net header, no
  ``NEEDS_CSUM``), so the kernel behind it verifies every TCP checksum: ``Tcp InCsumErrors`` must stay 0,
  and the transfer must complete (a segment with a wrong checksum is dropped, retransmitted the same way,
  and the transfer stalls);
* the sending end in ``tso`` mode cuts the kernel's 64 KB super-packets and computes each checksum itself;
* the default mode merges received segments into one write: the sha256 proves the bytes and their order.

A control packet with a deliberately wrong checksum proves that the receiving kernel does check.  ``plain``
on both ends is the fallback path (no virtio-net header, no UDP GSO/GRO), checked the same way.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import IO

import pytest

from m6t.lab import GW, HA, HA_HOST, MN, StandardLab, configs, processes, wait_until
from tests.lab.client_rig import DAEMON_GRACE_S, MN_PREFIX
from tests.lab.commands import REPO, tree_env

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

MN_TUN = "m6t0"
GW_TUN = "m6tgw0"
PORT = 3544
DATA_PORT = 5299
SIZE = 6 * 1024 * 1024
IFF_VNET_HDR = 0x4000

GATEWAY_CONFIG = configs.gateway_config(ports=(PORT,), interface=GW_TUN)
CLIENT_CONFIG = configs.client_config(ports=(PORT,), interface=MN_TUN, keepalive=30, probe=False)

# Both ends of a transfer in stdlib Python: the data is a seeded stream, hashed on both sides.
PEER_SCRIPT = r"""
import hashlib, json, random, socket, sys
role, host, port, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def chunks():
    rng = random.Random(size)
    left = size
    while left:
        n = min(left, 65536 - rng.randrange(0, 3000))
        left -= n
        yield rng.randbytes(n)
digest = hashlib.sha256()
count = 0
if role in ("serve-send", "serve-recv"):
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(1)
    print("listening", flush=True)
    ls.settimeout(60)
    conn, _ = ls.accept()
else:
    conn = socket.create_connection((host, port), timeout=30)
conn.settimeout(60)
if role.endswith("send"):
    for chunk in chunks():
        conn.sendall(chunk)
        digest.update(chunk)
        count += len(chunk)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)
else:
    while True:
        data = conn.recv(262144)
        if not data:
            break
        digest.update(data)
        count += len(data)
print(json.dumps({"sha256": digest.hexdigest(), "bytes": count}), flush=True)
conn.close()
"""

# A TCP segment to the HA with a wrong checksum, from the MN's tunnel address (IPv6 raw socket, header
# included): the control that shows the receiving kernel verifies checksums.
BAD_SEGMENT_SCRIPT = r"""
import socket, struct, sys
src, dst = socket.inet_pton(socket.AF_INET6, sys.argv[1]), socket.inet_pton(socket.AF_INET6, sys.argv[2])
tcp = struct.pack("!HHIIBBHHH", 40001, 9, 1, 0, 5 << 4, 0x02, 1000, 0x1234, 0)
packet = struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + src + dst + tcp
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
for _ in range(3):
    s.sendto(packet, (sys.argv[2], 0))
"""


def tcp_counters(lab: StandardLab, host: str) -> dict[str, int]:
    lines = lab.read_file(host, "/proc/net/snmp").splitlines()
    for names, values in itertools.pairwise(lines):
        if names.startswith("Tcp:") and values.startswith("Tcp:"):
            return {k: int(v) for k, v in zip(names.split()[1:], values.split()[1:], strict=True)}
    raise AssertionError("no Tcp line in /proc/net/snmp")


def link_stats(lab: StandardLab, host: str, ifname: str) -> dict[str, int]:
    [link] = json.loads(lab.run(host, "ip", "-j", "-s", "link", "show", "dev", ifname).stdout)
    return {f"{d}_{k}": int(link["stats64"][d][k]) for d in ("rx", "tx") for k in ("packets", "dropped")}


@dataclass
class Tunnel:
    lab: StandardLab
    workdir: Path
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    logs: list[IO[str]] = field(default_factory=list)
    address: IPv6Address | None = None

    def spawn(self, host: str, argv: list[str], name: str, datapath: str | None) -> subprocess.Popen[str]:
        log = (self.workdir / name).open("a")
        self.logs.append(log)
        env = tree_env()
        env.pop("M6T_DATAPATH", None)
        if datapath is not None:
            env["M6T_DATAPATH"] = datapath
        proc = self.lab.spawn(host, [sys.executable, *argv], stdout=log, stderr=log, cwd=str(REPO), env=env)
        self.procs.append(proc)
        return proc

    def start(self, client: str | None, gateway: str | None) -> None:
        (self.workdir / "gateway.toml").write_text(GATEWAY_CONFIG)
        (self.workdir / "client.toml").write_text(CLIENT_CONFIG)
        self.spawn(GW, ["-m", "m6t.gateway", "--config", str(self.workdir / "gateway.toml")], "gateway.log", gateway)
        wait_until(lambda: self.has_link(GW, GW_TUN), what="the gateway's TUN", timeout=15.0, interval=0.1)
        argv = ["-m", "m6t.client.helper", "--config", str(self.workdir / "client.toml"), "--foreground"]
        argv += ["--socket", str(self.workdir / "helper.sock"), "--state-dir", str(self.workdir / "state")]
        self.spawn(MN, argv, "client.log", client)
        wait_until(self.reaches_ha, what="the HA through the tunnel", timeout=20.0, interval=0.2)
        self.address = self.tunnel_address()

    def restart(self, client: str | None, gateway: str | None) -> None:
        """Both ends stopped, their TUNs gone, then started again with these data paths."""
        self.close()
        self.procs.clear()
        wait_until(lambda: not self.has_link(GW, GW_TUN), what="the gateway's TUN gone", timeout=10)
        wait_until(lambda: not self.has_link(MN, MN_TUN), what="the client's TUN gone", timeout=10)
        self.start(client, gateway)

    def has_link(self, host: str, ifname: str) -> bool:
        return self.lab.run(host, "ip", "link", "show", "dev", ifname, check=False).returncode == 0

    def reaches_ha(self) -> bool:
        for proc in self.procs:
            if proc.poll() is not None:
                raise AssertionError(f"a tunnel process exited ({proc.returncode})\n{self.describe()}")
        return self.lab.ping(MN, str(HA), count=1, timeout=1.0)

    def tunnel_address(self) -> IPv6Address:
        out = self.lab.run(MN, "ip", "-j", "-6", "addr", "show", "dev", MN_TUN).stdout
        found = [IPv6Address(a["local"]) for link in json.loads(out) for a in link.get("addr_info", [])]
        [address] = [a for a in found if a in MN_PREFIX]
        return address

    def tun_flags(self, host: str, ifname: str) -> int:
        return int(self.lab.read_file(host, f"/sys/class/net/{ifname}/tun_flags").strip(), 16)

    def describe(self) -> str:
        parts = []
        for name in ("client.log", "gateway.log"):
            path = self.workdir / name
            parts.append(f"--- {name}\n{path.read_text(errors='replace')[-3000:] if path.exists() else '(none)'}")
        return "\n".join(parts)

    def transfer(self, *, upward: bool) -> tuple[dict[str, int | str], dict[str, int | str]]:
        """SIZE bytes from the MN to the HA (``upward``) or back; both ends' sha256 and byte count."""
        script = self.workdir / "peer.py"
        script.write_text(PEER_SCRIPT)
        assert self.address is not None
        server_role, client_role = ("serve-recv", "send") if upward else ("serve-send", "recv")
        argv = [sys.executable, str(script), server_role, str(HA), str(DATA_PORT), str(SIZE)]
        with processes.killed_after(
            self.lab.spawn(HA_HOST, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ) as server:
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "listening"
            done = self.lab.run(
                MN, sys.executable, str(script), client_role, str(HA), str(DATA_PORT), str(SIZE), timeout=90
            )
            out, _ = server.communicate(timeout=60)
        return json.loads(done.stdout.strip().splitlines()[-1]), json.loads(out.strip().splitlines()[-1])

    def close(self) -> None:
        processes.stop_all(self.procs, grace=DAEMON_GRACE_S)
        for log in self.logs:
            log.close()


@pytest.fixture
def tunnel(lab: StandardLab) -> Iterator[Tunnel]:
    rig = Tunnel(lab, Path(tempfile.mkdtemp(prefix="m6tdatapath-")))
    try:
        yield rig
    finally:
        rig.close()
        shutil.rmtree(rig.workdir, ignore_errors=True)


def check_transfer(rig: Tunnel, *, upward: bool) -> None:
    receiver = HA_HOST if upward else MN
    before = tcp_counters(rig.lab, receiver)
    sent, received = rig.transfer(upward=upward)
    if not upward:
        sent, received = received, sent
    after = tcp_counters(rig.lab, receiver)
    what = "MN → HA" if upward else "HA → MN"
    assert sent == received == {"sha256": sent["sha256"], "bytes": SIZE}, f"{what}: {sent} {received}"
    assert after["InCsumErrors"] == before["InCsumErrors"], f"{what}: checksum errors at the receiver"


# ---------------------------------------------------------------------------------------------- tests


def test_default_fast_path_both_ways(tunnel: Tunnel) -> None:
    """Merged writes on both ends (the default): the bytes arrive intact, in far fewer TUN writes."""
    tunnel.start(client=None, gateway=None)
    assert tunnel.tun_flags(MN, MN_TUN) & IFF_VNET_HDR
    assert tunnel.tun_flags(GW, GW_TUN) & IFF_VNET_HDR
    for upward, host, ifname in ((True, GW, GW_TUN), (False, MN, MN_TUN)):
        before = link_stats(tunnel.lab, host, ifname)
        check_transfer(tunnel, upward=upward)
        after = link_stats(tunnel.lab, host, ifname)
        writes = after["rx_packets"] - before["rx_packets"]
        segments = SIZE // 1400
        print(f"\n{'MN → HA' if upward else 'HA → MN'}: {segments} segments in {writes} TUN writes at {host}")
        # Writes into a TUN are its "received" packets: merging makes them several times fewer.
        assert writes < segments // 3


def test_our_segmentation_verified_by_plain_receivers(tunnel: Tunnel) -> None:
    """The client cuts super-packets (MN → HA) and the gateway too (HA → MN); the far ends, plain, verify."""
    tunnel.start(client="tso", gateway="tso")
    assert tunnel.tun_flags(MN, MN_TUN) & IFF_VNET_HDR and tunnel.tun_flags(GW, GW_TUN) & IFF_VNET_HDR
    check_transfer(tunnel, upward=True)
    check_transfer(tunnel, upward=False)
    # Now with plain receivers on the far ends, which check every checksum.
    tunnel.restart(client="tso", gateway="plain")
    assert not tunnel.tun_flags(GW, GW_TUN) & IFF_VNET_HDR
    check_transfer(tunnel, upward=True)
    # The control: a segment with a wrong checksum through the same path is counted by the HA's kernel.
    before = tcp_counters(tunnel.lab, HA_HOST)["InCsumErrors"]
    assert tunnel.address is not None
    tunnel.lab.run(MN, sys.executable, "-c", BAD_SEGMENT_SCRIPT, str(tunnel.address), str(HA))
    wait_until(
        lambda: tcp_counters(tunnel.lab, HA_HOST)["InCsumErrors"] > before,
        what="the HA to count the bad checksum",
        timeout=5.0,
        interval=0.1,
    )
    tunnel.restart(client="plain", gateway="tso")
    assert not tunnel.tun_flags(MN, MN_TUN) & IFF_VNET_HDR
    check_transfer(tunnel, upward=False)


def test_plain_fallback_both_ways(tunnel: Tunnel) -> None:
    """Everything forced off (no virtio-net header, no UDP GSO/GRO): the plain path carries the same bytes."""
    tunnel.start(client="plain", gateway="plain")
    assert not tunnel.tun_flags(MN, MN_TUN) & IFF_VNET_HDR
    assert not tunnel.tun_flags(GW, GW_TUN) & IFF_VNET_HDR
    check_transfer(tunnel, upward=True)
    check_transfer(tunnel, upward=False)
    # Mixed: a fast client with a plain gateway and the other way round interoperate.
    tunnel.restart(client=None, gateway="plain")
    check_transfer(tunnel, upward=False)
