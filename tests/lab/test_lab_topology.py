"""The standard lab: it comes up, NATs translate, the MN moves, impairments apply, and teardown is total."""

from __future__ import annotations

import os
import secrets
import selectors
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from m6t.lab import (
    GW,
    GW_HA_SIDE,
    GW_IF_HA,
    GW_WAN,
    HA,
    HA_HOST,
    M6T_PREFIX,
    MN,
    MN_IF_LAN1,
    MN_IF_LAN2,
    MN_LAN1,
    MN_LAN1_ALT,
    MN_LAN2,
    NAT1,
    NAT1_WAN,
    NAT2,
    NAT2_WAN,
    WAN2,
    Endpoint,
    Host,
    Lab,
    LabError,
    Link,
    Route,
    StandardLab,
    Topology,
    cleanup_stale,
    describe_and_check,
    netns,
    observe_udp_source,
    registry,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
ROOT_UDP_TIMEOUT = Path("/proc/sys/net/netfilter/nf_conntrack_udp_timeout")


def namespaces_with(prefix: str) -> list[str]:
    return [name for name in netns.list_namespaces() if name.startswith(prefix)]


def root_nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


def udp_source_seen_by_gw(lab: StandardLab, port: int = 9999, timeout: float = 3.0) -> str:
    return observe_udp_source(lab, MN, GW, GW_WAN, port=port, timeout=timeout)[0]


def test_standard_lab_comes_up(lab: StandardLab) -> None:
    assert sorted(namespaces_with(lab.prefix)) == sorted(lab.ns(n) for n in lab.topology.node_names())
    assert lab.read_sysctl(NAT1, "net.ipv4.ip_forward") == "1"
    assert lab.read_sysctl(NAT2, "net.ipv4.ip_forward") == "1"
    assert lab.read_sysctl(GW, "net.ipv6.conf.all.forwarding") == "1"
    assert lab.read_sysctl(GW, f"net.ipv6.conf.{GW_IF_HA}.accept_dad") == "0"
    assert lab.addresses(MN, MN_IF_LAN1) == [MN_LAN1]
    assert lab.addresses(MN, MN_IF_LAN2) == []
    assert lab.ping(MN, GW_WAN)
    assert lab.ping(WAN2, GW_WAN)
    assert lab.ping(GW, HA)
    # The HA sends whatever is for the m6t prefix to the gateway.
    route = lab.run(HA_HOST, "ip", "-6", "route", "get", M6T_PREFIX.replace("::/48", "::1")).stdout
    assert f"via {GW_HA_SIDE}" in route


def test_mn_reaches_gateway_through_nat1_with_source_nat(lab: StandardLab) -> None:
    assert lab.ping(MN, GW_WAN)
    assert udp_source_seen_by_gw(lab) == NAT1_WAN
    (mapping,) = lab.nat_mappings(NAT1)
    assert (mapping.inside_addr, mapping.outside_addr, mapping.remote_addr) == (MN_LAN1, NAT1_WAN, GW_WAN)
    # Unsolicited inbound traffic does not cross a NAT, as with a home router.
    lab.run(WAN2, "ip", "route", "add", "192.0.2.0/24", "via", NAT1_WAN)
    assert not lab.ping(WAN2, MN_LAN1)


def test_move_to_nat2_changes_the_source_mapping(lab: StandardLab) -> None:
    assert udp_source_seen_by_gw(lab) == NAT1_WAN
    lab.move_mn("nat2")
    assert (lab.mn_attachment, lab.mn_address, lab.mn_public_address) == ("nat2", MN_LAN2, NAT2_WAN)
    assert lab.addresses(MN, MN_IF_LAN1) == []
    assert lab.addresses(MN, MN_IF_LAN2) == [MN_LAN2]
    assert lab.ping(MN, GW_WAN)
    assert udp_source_seen_by_gw(lab) == NAT2_WAN
    assert [m.inside_addr for m in lab.nat_mappings(NAT2)] == [MN_LAN2]
    lab.move_mn("nat1")
    assert lab.ping(MN, GW_WAN)
    assert udp_source_seen_by_gw(lab) == NAT1_WAN


def test_address_change_on_the_same_lan(lab: StandardLab) -> None:
    lab.change_mn_address(MN_LAN1_ALT)
    assert lab.addresses(MN, MN_IF_LAN1) == [MN_LAN1_ALT]
    assert lab.ping(MN, GW_WAN)
    assert udp_source_seen_by_gw(lab) == NAT1_WAN
    assert [m.inside_addr for m in lab.nat_mappings(NAT1)] == [MN_LAN1_ALT]
    with pytest.raises(LabError):
        lab.change_mn_address("203.0.113.99")


def test_drop_share_and_undo(lab: StandardLab) -> None:
    lab.drop_share(MN, MN_IF_LAN1, 100)
    assert not lab.ping(MN, GW_WAN, timeout=1.0)
    lab.drop_share(MN, MN_IF_LAN1, 0)
    assert lab.ping(MN, GW_WAN)
    lab.drop_share(GW, "wan0", 100, direction="in")
    assert not lab.ping(MN, GW_WAN, timeout=1.0)
    lab.clear_drop_share(GW, "wan0")
    assert lab.ping(MN, GW_WAN)


def test_block_udp_port_at_a_nat(lab: StandardLab) -> None:
    lab.block_udp_port(NAT1, 9999)
    with pytest.raises(LabError, match="no datagram"):
        udp_source_seen_by_gw(lab, port=9999, timeout=1.0)
    assert udp_source_seen_by_gw(lab, port=9998) == NAT1_WAN
    lab.unblock_udp_port(NAT1, 9999)
    assert udp_source_seen_by_gw(lab, port=9999) == NAT1_WAN


def test_flush_nat_removes_mappings(lab: StandardLab) -> None:
    udp_source_seen_by_gw(lab)
    assert lab.nat_mappings(NAT1)
    lab.flush_nat(NAT1)
    assert lab.nat_mappings(NAT1) == []


def test_udp_timeout_is_per_nat(lab: StandardLab) -> None:
    root_before = ROOT_UDP_TIMEOUT.read_text()
    assert lab.set_udp_timeout(NAT1, 10) == "sysctl"
    assert lab.udp_timeouts(NAT1) == (10, 10)
    assert lab.udp_timeouts(NAT2) != (10, 10)
    udp_source_seen_by_gw(lab)
    assert 0 < lab.nat_mappings(NAT1)[0].timeout <= 10
    # The fallback for kernels where the sysctl is global: an nftables ct timeout policy.
    assert lab.set_udp_timeout(NAT2, 12, method="nft") == "nft"
    lab.move_mn("nat2")
    udp_source_seen_by_gw(lab)
    assert 0 < lab.nat_mappings(NAT2)[0].timeout <= 12
    assert ROOT_UDP_TIMEOUT.read_text() == root_before


def test_describe_and_check_narrates_a_move(lab: StandardLab) -> None:
    lines = describe_and_check(lab)
    text = "\n".join(lines)
    assert NAT1_WAN in text and NAT2_WAN in text and HA in text
    assert lab.mn_attachment == "nat2"


def test_teardown_kills_processes_and_leaves_nothing() -> None:
    tables_before = root_nft_tables()
    with Lab.standard() as lab:
        prefix, record = lab.prefix, registry.STATE_DIR / f"{lab.run_id}.json"
        assert record.exists()
        # The shell's background child is not tracked by the lab: the namespace sweep must get it.
        proc = lab.spawn(GW, ["sh", "-c", "sleep 61 & exec sleep 60"])
        wait_until(lambda: len(netns.pids(lab.ns(GW))) >= 2, what="both sleeps to start")
        inside = {pid: psutil.Process(pid).create_time() for pid in netns.pids(lab.ns(GW))}
    assert proc.returncode is not None
    for pid, started in inside.items():
        assert registry.process_start_time(pid) != started
    assert namespaces_with(prefix) == []
    assert not record.exists()
    assert "m6t_lab" not in root_nft_tables()
    assert root_nft_tables() == tables_before


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_teardown_on_exception(exc_type: type[BaseException]) -> None:
    prefix = ""
    with pytest.raises(exc_type), Lab.standard() as lab:
        prefix = lab.prefix
        lab.spawn(MN, ["sleep", "60"])
        raise exc_type("boom")
    assert prefix and namespaces_with(prefix) == []


def test_failed_start_leaves_nothing() -> None:
    # The next hop is on no connected network, so building fails after the namespaces exist.
    broken = Topology(
        hosts=(Host("a"), Host("b")),
        links=(Link(Endpoint("a", "eth0", ("192.0.2.1/24",)), Endpoint("b", "eth0")),),
        routes=(Route("a", "default", via="198.51.100.1"),),
    )
    lab = Lab(broken)
    with pytest.raises(LabError, match="route add"):
        lab.start()
    assert namespaces_with(lab.prefix) == []
    assert not (registry.STATE_DIR / f"{lab.run_id}.json").exists()


def test_lab_refuses_addresses_outside_the_lab_ranges() -> None:
    outside = Link(Endpoint("a", "eth0", ("10.0.0.1/24",)), Endpoint("b", "eth0"))
    with pytest.raises(LabError, match="outside the lab ranges"):
        Lab(Topology(hosts=(Host("a"), Host("b")), links=(outside,)))
    long_name = Link(Endpoint("a", "averyveryverylongname"), Endpoint("b", "eth0"))
    with pytest.raises(LabError, match="bad interface name"):
        Lab(Topology(hosts=(Host("a"), Host("b")), links=(long_name,)))


ORPHAN = """\
import time
from m6t.lab import Endpoint, Host, Lab, Link, Topology
lab = Lab(Topology(
    hosts=(Host("a"), Host("b")),
    links=(Link(Endpoint("a", "eth0", ("192.0.2.1/24",)), Endpoint("b", "eth0", ("192.0.2.2/24",))),),
)).start()
lab.spawn("a", ["sleep", "60"])
print(lab.prefix, flush=True)
time.sleep(60)
"""


def start_orphan() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", ORPHAN], cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        ready = selector.select(15.0)
    prefix = proc.stdout.readline().strip() if ready else ""
    if not prefix:
        proc.kill()
        proc.wait(timeout=5)
        pytest.fail("the orphan-to-be lab did not start")
    return proc, prefix


def test_cleanup_stale_removes_only_dead_runs(lab: StandardLab) -> None:
    orphan, orphan_prefix = start_orphan()
    # SIGKILL: no atexit, no teardown; the namespaces and the sleep inside outlive their owner.
    orphan.kill()
    orphan.wait(timeout=5)
    assert orphan.stdout is not None
    orphan.stdout.close()
    left = namespaces_with(orphan_prefix)
    assert len(left) == 2
    sleepers = netns.pids(f"{orphan_prefix}a")
    assert sleepers
    unrelated = f"m6t-{secrets.token_hex(3)}-unrelated"
    subprocess.run(["ip", "netns", "add", unrelated], check=True)
    try:
        removed = cleanup_stale()
        # Another session's cleanup_stale() may have raced us to it; either way it must be gone.
        assert set(left) <= set(removed) or not namespaces_with(orphan_prefix)
        assert namespaces_with(orphan_prefix) == []
        assert not any(psutil.pid_exists(pid) for pid in sleepers)
        assert netns.exists(unrelated)
        assert len(namespaces_with(lab.prefix)) == len(lab.topology.node_names())
        assert lab.ping(MN, GW_WAN)
    finally:
        subprocess.run(["ip", "netns", "delete", unrelated], check=False)


def test_owner_liveness_is_not_fooled_by_pid_reuse() -> None:
    me = os.getpid()
    started = registry.process_start_time(me)
    assert started is not None
    assert registry.owner_alive(registry.RunRecord("abcdef", me, started, 0.0))
    assert not registry.owner_alive(registry.RunRecord("abcdef", me, started - 100.0, 0.0))
