"""Every uplink at once (draft 2.5, ``tunnel.uplinks = "all"``), end to end on every backend.

The MN is on nat1's LAN (lan1, the default route) and on nat2's too (lan2, a second default route, metric
200): a laptop on Wi-Fi with a phone tethered.  The helper runs a tunnel through each, every one with its own
suffix, its UDP socket bound to its uplink: the gateway sees each from its own NAT.  Taking lan2 down takes
exactly its tunnel away; bringing it back makes one again.  Timings are printed (run with ``-s``), never
asserted tightly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import IPv6Address
from typing import Any

import pytest

from m6t.client.api.client import HelperUnavailable
from m6t.client.config import UPLINKS_ALL
from m6t.lab import (
    GW_WAN,
    HA,
    MN,
    MN_IF_LAN1,
    MN_IF_LAN2,
    MN_LAN1,
    MN_LAN2,
    NAT1,
    NAT2,
    StandardLab,
    configs,
    wait_until,
)
from tests.lab.client_rig import BACKENDS, LINUX, MN_PREFIX, PORT_A, TUN, Rig, running_rig

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

TUNNELS_BOUND_S = 30.0
"""From the start (or an uplink's change) to the tunnels as they should be: a burst waited out, a look-up,
a tunnel made and confirmed; far below this."""


@pytest.fixture(params=BACKENDS, ids=str)
def rig(request: pytest.FixtureRequest, lab: StandardLab) -> Iterator[Rig]:
    with running_rig(lab, request.param) as rig:
        yield rig


def _tunnels(rig: Rig) -> list[dict[str, Any]]:
    tunnels: list[dict[str, Any]] = rig.status().get("tunnels", [])
    return tunnels


def _wait_tunnels(rig: Rig, uplinks: list[str], since: float) -> tuple[list[dict[str, Any]], float]:
    """Wait until there is one connected tunnel per uplink in ``uplinks`` and no other; the seconds it took."""

    def ready() -> bool:
        if rig.client is not None and rig.client.poll() is not None:
            raise AssertionError(f"the client exited with {rig.client.returncode}\n{rig.describe()}")
        try:
            tunnels = _tunnels(rig)
        except HelperUnavailable:
            return False  # not listening yet
        return sorted(t["uplink"] for t in tunnels) == sorted(uplinks) and all(
            t["state"] == "connected" for t in tunnels
        )

    try:
        wait_until(ready, what=f"a connected tunnel per uplink {uplinks}", timeout=TUNNELS_BOUND_S, interval=0.1)
    except Exception:
        print(rig.describe())
        raise
    return _tunnels(rig), time.monotonic() - since


def _ping_through(rig: Rig, interface_or_source: str, tries: int = 20) -> bool:
    """An echo to the HA bound to that tunnel interface, or sent from that source address (bounded)."""
    for _ in range(tries):
        argv = ["ping", "-6", "-n", "-c", "1", "-W", "0.5", "-I", interface_or_source, HA]
        result = rig.lab.run(MN, *argv, check=False)
        if result.returncode == 0:
            return True
    return False


def _mapped(rig: Rig, nat: str, inside: str) -> bool:
    """Whether the NAT holds an answered UDP mapping from the MN's address on its LAN to the gateway."""
    return any(
        m.inside_addr == inside and m.remote_addr == GW_WAN and m.remote_port == PORT_A and m.replied
        for m in rig.lab.nat_mappings(nat)
    )


def _link_exists(rig: Rig, interface: str) -> bool:
    return rig.lab.run(MN, "ip", "link", "show", "dev", interface, check=False).returncode == 0


def test_a_tunnel_per_uplink_each_through_its_own_nat(rig: Rig) -> None:
    lab = rig.lab
    lab.add_mn_uplink("nat2")
    start = time.monotonic()
    rig.start_client(configs.client_config(ports=(PORT_A,), interface=TUN, keepalive=1, uplinks=UPLINKS_ALL))
    tunnels, took = _wait_tunnels(rig, [MN_IF_LAN1, MN_IF_LAN2], start)
    by_uplink = {t["uplink"]: t for t in tunnels}
    first, second = by_uplink[MN_IF_LAN1], by_uplink[MN_IF_LAN2]
    # The preferred path's tunnel is the primary, and the status's top level is its.
    assert first["primary"] and not second["primary"]
    status = rig.status()
    assert status["address"] == first["address"] and status["interface"] == first["interface"]
    # Distinct suffixes in the MN's /80, each on its own interface.
    addresses = {IPv6Address(first["address"]), IPv6Address(second["address"])}
    assert len(addresses) == 2 and all(address in MN_PREFIX for address in addresses)
    assert first["interface"] != second["interface"]
    # Each reaches the HA, each through its own NAT; what is sent from a tunnel's address (a socket bound to the
    # address, not to the interface: a MIPv6 stack's care-of address) leaves through that tunnel too.
    assert _ping_through(rig, first["interface"]), rig.describe()
    assert _ping_through(rig, second["interface"]), rig.describe()
    if rig.backend.emulate is None:
        # Linux's routes follow the destination alone: the tunnel's source route does it.  Windows (the strong
        # host model) and macOS (scoped routing) send from an address through its interface themselves: the
        # emulations run on Linux's routing and cannot show it (read in their documentation, not run).
        assert _ping_through(rig, second["address"]), rig.describe()
    assert _mapped(rig, NAT1, MN_LAN1) and _mapped(rig, NAT2, MN_LAN2)
    print(f"\n[{rig.backend.label}] two uplinks: both tunnels connected {took:.2f} s after the start")

    # The tether unplugged: exactly its tunnel goes, the other keeps its address.
    lab.remove_mn_uplink("nat2")
    gone = time.monotonic()
    [left], took_down = _wait_tunnels(rig, [MN_IF_LAN1], gone)
    assert left["interface"] == first["interface"] and left["address"] == first["address"] and left["primary"]
    wait_until(lambda: not _link_exists(rig, second["interface"]), what="the second tunnel's interface gone")
    assert _ping_through(rig, first["interface"]), rig.describe()
    print(f"[{rig.backend.label}] lan2 down: its tunnel removed {took_down:.2f} s after, the other kept")

    # Plugged again: a tunnel again, a new suffix (a new attachment), reaching the HA through nat2.
    lab.add_mn_uplink("nat2")
    back = time.monotonic()
    tunnels, took_up = _wait_tunnels(rig, [MN_IF_LAN1, MN_IF_LAN2], back)
    again = {t["uplink"]: t for t in tunnels}[MN_IF_LAN2]
    assert again["address"] not in (first["address"], None)
    assert _ping_through(rig, again["interface"]), rig.describe()
    reach = time.monotonic() - back
    print(f"[{rig.backend.label}] lan2 back: tunnel connected {took_up:.2f} s after, HA through it {reach:.2f} s")

    rig.stop_client()
    assert not _link_exists(rig, first["interface"]) and not _link_exists(rig, again["interface"])


def test_a_strict_reverse_path_filter_on_an_uplink_is_reported_with_its_fix(lab: StandardLab) -> None:
    """Linux drops what arrives on an interface that is not the way back to its source when rp_filter is strict:
    the tunnel through the second uplink cannot work, and the user is told what to change."""
    with running_rig(lab, LINUX) as rig:
        lab.add_mn_uplink("nat2")
        lab.write_sysctl(MN, f"net.ipv4.conf.{MN_IF_LAN2}.rp_filter", 1)
        rig.start_client(configs.client_config(ports=(PORT_A,), interface=TUN, keepalive=1, uplinks=UPLINKS_ALL))
        hint = f"sysctl -w net.ipv4.conf.{MN_IF_LAN2}.rp_filter=2"
        wait_until(lambda: hint in rig.client_log(), what="the reverse-path filter reported", timeout=15.0)
        assert "[3008]" in rig.client_log()
        time.sleep(3.0)  # a few of its attempts: none answered
        lan2 = [t for t in _tunnels(rig) if t["uplink"] == MN_IF_LAN2]
        assert lan2 and lan2[0]["state"] != "connected", lan2
        # Loosened as told (and the uplink plugged again): its tunnel connects.
        lab.write_sysctl(MN, f"net.ipv4.conf.{MN_IF_LAN2}.rp_filter", 2)
        lab.remove_mn_uplink("nat2")
        _wait_tunnels(rig, [MN_IF_LAN1], time.monotonic())
        lab.add_mn_uplink("nat2")
        _wait_tunnels(rig, [MN_IF_LAN1, MN_IF_LAN2], time.monotonic())
