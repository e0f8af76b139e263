"""The m6t client end to end: the helper on the MN, the real gateway daemon, the HA's kernel.

mn ── nat1 ── WAN ── gw ── ha (fd00:ab::1); nat2 to move to.  The scenarios every backend must pass run
three times: ``[linux]`` (``m6t-helper --foreground``), ``[windows]`` and ``[darwin]`` (the real
``HelperService`` + ``ClientDriver`` + session + the shipped Windows or macOS backend over its emulation,
whose tunnel is a Linux TUN in the MN's namespace: real packets).  The rest runs on Linux's backend.
Timings are printed (run with ``-s``), and only asserted with generous bounds.  Needs root (namespaces,
TUN, nftables); skipped otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import IPv6Address

import pytest

from m6t.lab import GW_WAN, HA, HA_HOST, MN, NAT1, NAT1_WAN, StandardLab
from tests.lab.client_rig import (
    BACKENDS,
    LINUX,
    MN_PREFIX,
    PORT_A,
    PORT_B,
    RECONNECT_BOUND_S,
    Capture,
    Rig,
    client_config,
    connected,
    is_keepalive,
    running_rig,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

on_every_backend = pytest.mark.parametrize("rig", BACKENDS, indirect=True, ids=str)
"""Runs a test once per backend (``test_move_to_nat2[windows]``); without it, a test runs on Linux's."""


@pytest.fixture
def rig(request: pytest.FixtureRequest, lab: StandardLab) -> Iterator[Rig]:
    with running_rig(lab, getattr(request, "param", LINUX)) as rig:
        yield rig


# ------------------------------------------------------------------------------------- every backend


@on_every_backend
def test_attach_ping_and_clean_exit(rig: Rig) -> None:
    address = connected(rig, client_config(keepalive=30))
    assert address in MN_PREFIX
    log = rig.client_log()
    for line in rig.backend.proof:
        assert line in log, log
    # The backend's route and MTU, as Linux sees them (through IP Helper or PF_ROUTE when emulated).
    route = rig.lab.run(MN, "ip", "-6", "route", "show", "default").stdout
    assert f"dev {rig.tun}" in route, route
    if rig.backend.route_metric is not None:
        assert f"metric {rig.backend.route_metric}" in route, route

    capture = Capture(rig, "ping")
    assert rig.lab.ping(MN, HA, count=3, timeout=2.0), rig.describe()
    outers = capture.stop()
    from_mn = [o for o in outers if o.src == NAT1_WAN and o.dport == PORT_A]
    to_mn = [o for o in outers if o.src == GW_WAN and o.dst == NAT1_WAN]
    assert len(from_mn) >= 3 and len(to_mn) >= 3, outers
    for outer in from_mn + to_mn:
        assert not outer.df, f"DF set on {outer} ({rig.backend.label}: data goes with DF clear, draft 2.6)"
        # IPv6 directly inside UDP, no other header (a utun's 4-byte family header stripped on macOS)
        assert outer.payload[0] >> 4 == 6
    assert {IPv6Address(o.payload[8:24]) for o in from_mn} == {address}
    assert rig.tunnel_addresses() == [address]

    # MTU: 1472 on the interface; a 1473-byte packet gets the kernel's Packet Too Big locally.
    link = rig.lab.run(MN, "ip", "-o", "link", "show", rig.tun).stdout
    assert " mtu 1472 " in link, link
    too_big = rig.lab.run(MN, "ping", "-6", "-n", "-c", "1", "-W", "1", "-M", "do", "-s", "1425", HA, check=False)
    assert too_big.returncode != 0
    assert "too long" in (too_big.stdout + too_big.stderr).lower(), too_big
    fits = rig.lab.run(MN, "ping", "-6", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1424", HA, check=False)
    assert fits.returncode == 0, fits.stdout + fits.stderr

    # SIGTERM: exit 0, and the address, the routes and the interface are gone.
    assert rig.stop_client() == 0, rig.describe()
    assert rig.tun not in rig.lab.run(MN, "ip", "-o", "link").stdout
    assert rig.tunnel_addresses() == []
    routes = rig.lab.run(MN, "ip", "-6", "route").stdout
    assert rig.tun not in routes, routes
    if rig.backend.route_metric is not None:
        assert str(rig.backend.route_metric) not in routes, routes
    log = rig.client_log()
    assert "state connecting → connected" in log, log
    for line in rig.backend.never_logged:
        assert line not in log, log


@on_every_backend
def test_move_to_nat2(rig: Rig) -> None:
    first = connected(rig, client_config())
    start = time.monotonic()
    rig.lab.move_mn("nat2")
    second = rig.wait_address(other_than=first, timeout=15.0)
    elapsed = rig.time_to_ha_reply(start)
    print(f"\n{rig.backend.label}, move to nat2: new suffix {second}, first HA reply {elapsed:.2f} s")
    assert second != first
    assert first not in rig.tunnel_addresses()
    assert elapsed < RECONNECT_BOUND_S
    # From the OS's change notifications (netlink; IP Helper's or the routing socket's when emulated).
    assert "(attachment_changed)" in rig.client_log()


@on_every_backend
def test_lost_binding_after_nat_rebinding(rig: Rig) -> None:
    first = connected(rig, client_config(keepalive=1))
    start = time.monotonic()
    forgotten = rig.lab.rebind_nat(NAT1, GW_WAN)
    assert any(m.remote_port == PORT_A for m in forgotten), forgotten
    second = rig.wait_address(other_than=first, timeout=15.0)
    detected = time.monotonic() - start
    elapsed = rig.time_to_ha_reply(start)
    print(
        f"\n{rig.backend.label}, NAT flush + new public port: new suffix after {detected:.2f} s, "
        f"first HA reply {elapsed:.2f} s"
    )
    assert second != first
    assert "keepalive_unanswered" in rig.client_log()
    assert elapsed < RECONNECT_BOUND_S


@on_every_backend
def test_failover_to_the_second_port(rig: Rig) -> None:
    rig.lab.block_udp_port(NAT1, PORT_A)
    start = time.monotonic()
    rig.start_client(client_config(ports=(PORT_A, PORT_B)))
    rig.wait_address()
    elapsed = rig.time_to_ha_reply(start, timeout=20.0)
    print(f"\n{rig.backend.label}, first port blocked: HA reached via {PORT_B} after {elapsed:.2f} s")
    log = rig.client_log()
    assert f"via {GW_WAN}:{PORT_B}" in log and "probe_unanswered" in log, log
    mappings = [m for m in rig.lab.nat_mappings(NAT1) if m.remote_addr == GW_WAN and m.replied]
    assert {m.remote_port for m in mappings} == {PORT_B}, mappings


# ---------------------------------------------------------------------------------- Linux's backend


def test_address_change_on_the_same_lan(rig: Rig) -> None:
    first = connected(rig, client_config())
    start = time.monotonic()
    rig.lab.change_mn_address("192.0.2.20")
    second = rig.wait_address(other_than=first)
    elapsed = rig.time_to_ha_reply(start)
    print(f"\naddress change: new suffix {second}, first HA reply {elapsed:.2f} s")
    assert rig.tunnel_addresses() == [second]
    assert elapsed < RECONNECT_BOUND_S


def test_keepalives_keep_the_nat_mapping_for_the_ha(rig: Rig) -> None:
    rig.lab.set_udp_timeout(NAT1, 3)
    address = connected(rig, client_config(keepalive=1))

    # Traffic both ways: no keepalive needed.
    capture = Capture(rig, "busy")
    assert rig.lab.ping(MN, HA, count=15, timeout=2.0)
    busy = capture.stop()
    # Idle for well over the NAT's UDP timeout: keepalives alone keep the mapping.
    capture = Capture(rig, "idle")
    time.sleep(7.0)
    idle = capture.stop()
    requests = [o for o in idle if o.src == NAT1_WAN and is_keepalive(o.payload, request=True)]
    replies = [o for o in idle if o.src == GW_WAN and is_keepalive(o.payload, request=False)]
    busy_keepalives = [o for o in busy if is_keepalive(o.payload, request=True)]
    print(
        f"\nkeepalives: {len(busy_keepalives)} during 3 s of pings both ways; "
        f"{len(requests)} requests / {len(replies)} replies during 7 s idle (interval 1 s, NAT UDP timeout 3 s)"
    )
    assert len(busy_keepalives) <= 1
    assert 5 <= len(requests) <= 8 and len(replies) >= len(requests) - 1
    # The Home Agent reaches the MN first, through the mapping the keepalives kept.
    assert rig.lab.ping(HA_HOST, str(address), count=1, timeout=2.0), rig.describe()


def test_plain_nat_flush_keeps_working(rig: Rig) -> None:
    connected(rig, client_config(keepalive=1))
    start = time.monotonic()
    rig.lab.flush_nat(NAT1)
    time.sleep(5.0)  # several keepalive intervals
    elapsed = rig.time_to_ha_reply(start)
    regenerated = "keepalive_unanswered" in rig.client_log()
    print(f"\nplain NAT flush: HA reachable {elapsed:.2f} s after, suffix regenerated: {regenerated}")
    assert elapsed < RECONNECT_BOUND_S + 5.0


def test_gateway_restart_is_detected_and_recovered(rig: Rig) -> None:
    first = connected(rig, client_config(keepalive=1))
    start = time.monotonic()
    rig.stop_gateway()
    rig.start_gateway()
    second = rig.wait_address(other_than=first, timeout=15.0)
    elapsed = rig.time_to_ha_reply(start)
    print(f"\ngateway restart: new suffix after {time.monotonic() - start:.2f} s, first HA reply {elapsed:.2f} s")
    assert second != first
    assert "keepalive_unanswered" in rig.client_log()
    assert elapsed < RECONNECT_BOUND_S
