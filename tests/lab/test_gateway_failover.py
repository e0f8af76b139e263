"""Several gateways (draft 2.1, 2.7), end to end: a dead one skipped, a name with a dead and a live address, and
a gateway that dies mid-session, on every backend.

Nothing answers at 198.51.100.9 (no host has it: the WAN's ARP goes unanswered).  The second gateway (gw2,
198.51.100.3) has its own link to the HA, which routes the m6t /48 back through it once gw's link is down.
The resolver's answers come from a hosts file of the MN's own (``/etc/netns/<ns>/hosts``, which ``ip netns
exec`` puts in place of ``/etc/hosts``).  Timings are printed (run with ``-s``), never asserted tightly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import IPv6Address

import pytest

from m6t.lab import (
    GW,
    GW2,
    GW2_WAN,
    GW_WAN,
    HA_HOST,
    HA_IF,
    HA_IF2,
    MN,
    MN_IF_LAN1,
    MN_IF_LAN2,
    NAT2_LAN,
    StandardLab,
    wait_until,
)
from tests.lab.client_rig import BACKENDS, LINUX, MN_PREFIX, PORT_A, Rig, client_config, connected, running_rig

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

DEAD = "198.51.100.9"
NAME = "gw.m6t.test"
SKIP_BOUND_S = 30.0
"""A dead gateway costs one attempt per port (3 unanswered echoes, 2 s apart): far below this."""
KEPT_FOR_S = 14.0
"""How long the client is watched staying with the backup gateway."""
FAILOVER_BOUND_S = 40.0
"""Keepalives unanswered (1 s interval, 3 misses), one more attempt on the dead gateway, then the next."""

on_every_backend = pytest.mark.parametrize("rig", BACKENDS, indirect=True, ids=str)


@pytest.fixture
def rig(request: pytest.FixtureRequest, lab: StandardLab) -> Iterator[Rig]:
    with running_rig(lab, getattr(request, "param", LINUX)) as rig:
        yield rig


@pytest.fixture
def two_gateways(request: pytest.FixtureRequest) -> Iterator[Rig]:
    with StandardLab(second_gateway=True) as lab, running_rig(lab, getattr(request, "param", LINUX)) as rig:
        rig.start_gateway(GW2)
        yield rig


def _connect_timed(rig: Rig, config: str) -> float:
    start = time.monotonic()
    rig.start_client(config)
    rig.wait_address(timeout=SKIP_BOUND_S)
    return rig.time_to_ha_reply(start, timeout=SKIP_BOUND_S)


@on_every_backend
def test_a_dead_gateway_is_skipped(rig: Rig) -> None:
    took = _connect_timed(rig, client_config(gateways=(DEAD, GW_WAN)))
    status = rig.status()
    assert status["state"] == "connected"
    assert status["gateway"] == f"{GW_WAN}:{PORT_A}"
    assert status.get("gateway_name") is None
    detail = status["session"]["gateway_detail"]
    assert [c["address"] for c in detail["candidates"]] == [DEAD, GW_WAN]
    log = rig.client_log()
    assert f"gateway {DEAD} answered on none of its ports; trying {GW_WAN}" in log, log
    print(f"\n[{rig.backend.label}] {DEAD} dead, {GW_WAN} alive: HA answered {took:.2f} s after the start")


@on_every_backend
def test_a_name_with_a_dead_and_a_live_address(rig: Rig) -> None:
    hosts = f"127.0.0.1 localhost\n{DEAD} {NAME}\n{GW_WAN} {NAME}\n"
    with rig.lab.etc_file(MN, "hosts", hosts):
        took = _connect_timed(rig, client_config(gateways=(NAME,)))
        status = rig.status()
    assert status["state"] == "connected"
    assert status["gateway"] == f"{GW_WAN}:{PORT_A}"
    assert status["gateway_name"] == NAME
    detail = status["session"]["gateway_detail"]
    assert sorted(c["address"] for c in detail["candidates"]) == sorted([DEAD, GW_WAN])
    assert {c["host"] for c in detail["candidates"]} == {NAME}
    log = rig.client_log()
    order = [c["address"] for c in detail["candidates"]]
    assert f"gateway {NAME} resolved to {', '.join(order)}" in log, log
    if order[0] == DEAD:  # glibc keeps the hosts file's order here: the dead address was tried first
        assert f"gateway {DEAD} ({NAME}) answered on none of its ports; trying {GW_WAN} ({NAME})" in log, log
    print(f"\n[{rig.backend.label}] {NAME} → {[c['address'] for c in detail['candidates']]}: HA answered {took:.2f} s")


@pytest.mark.parametrize("two_gateways", BACKENDS, indirect=True, ids=str)
def test_failover_when_the_gateway_dies(two_gateways: Rig) -> None:
    rig = two_gateways
    first = connected(rig, client_config(gateways=(GW_WAN, GW2_WAN)))
    assert rig.status()["gateway"] == f"{GW_WAN}:{PORT_A}"

    start = time.monotonic()
    rig.lab.fail_host(GW)
    took = rig.time_to_ha_reply(start, timeout=FAILOVER_BOUND_S)
    status = rig.status()
    assert status["state"] == "connected", status
    assert status["gateway"] == f"{GW2_WAN}:{PORT_A}"
    # States never move between gateways: the second one got a suffix of its own.
    second = IPv6Address(status["address"])
    assert second in MN_PREFIX and second != first
    assert rig.tunnel_addresses() == [second]
    # The lost binding was tried once more on gw (a NAT rebinding looks the same), then gw2.
    reasons = [r["reason"] for r in status["regenerations"]]
    assert reasons[-2:] == ["keepalive_unanswered", "probe_unanswered"], reasons
    log = rig.client_log()
    assert f"gateway {GW_WAN} answered on none of its ports; trying {GW2_WAN}" in log, log
    print(f"\n[{rig.backend.label}] {GW_WAN} died: connected via {GW2_WAN}, HA answered {took:.2f} s after")


def test_a_backup_gateway_behind_another_uplink_is_kept(two_gateways: Rig) -> None:
    """gw reached through lan1, gw2 only through lan2 (a host route): after the failover the path toward gw2 is
    another interface, which is not a new network; the client stays with gw2 instead of going back to gw,
    failing again and bouncing every few seconds."""
    rig = two_gateways
    lab = rig.lab
    lab.add_mn_uplink("nat2")
    lab.run(MN, "ip", "route", "add", f"{GW2_WAN}/32", "via", NAT2_LAN, "dev", MN_IF_LAN2)
    connected(rig, client_config(gateways=(GW_WAN, GW2_WAN)))
    assert rig.status()["attachment"]["interface"] == MN_IF_LAN1
    start = time.monotonic()
    lab.fail_host(GW)
    took = rig.time_to_ha_reply(start, timeout=FAILOVER_BOUND_S)
    wait_until(lambda: rig.status()["state"] == "connected", what="connected through gw2", timeout=10.0)
    status = rig.status()
    assert status["gateway"] == f"{GW2_WAN}:{PORT_A}" and status["attachment"]["interface"] == MN_IF_LAN2, status
    settled, history = status["address"], len(status["regenerations"])
    # The bounce took one failed round on gw (about 6 s) each time: two rounds' worth, bounded.
    time.sleep(KEPT_FOR_S)
    status = rig.status()
    assert status["gateway"] == f"{GW2_WAN}:{PORT_A}" and status["state"] == "connected", status
    assert status["address"] == settled and len(status["regenerations"]) == history, status["regenerations"]
    assert rig.ping_ha_once(wait=1.0)
    print(f"\n[{rig.backend.label}] {GW_WAN} died, {GW2_WAN} behind lan2: HA answered {took:.2f} s after, kept")


def test_the_ha_routes_through_gw2_once_gw_is_cut_off() -> None:
    mn_address = str(MN_PREFIX[5])
    with StandardLab(second_gateway=True) as lab:
        assert lab.ping(MN, GW_WAN) and lab.ping(MN, GW2_WAN)
        assert f"dev {HA_IF} " in lab.run(HA_HOST, "ip", "-6", "route", "get", mn_address).stdout
        lab.fail_host(GW)
        assert not lab.ping(MN, GW_WAN, timeout=1.0)
        assert lab.ping(MN, GW2_WAN)
        assert f"dev {HA_IF2} " in lab.run(HA_HOST, "ip", "-6", "route", "get", mn_address).stdout
