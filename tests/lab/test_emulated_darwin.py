"""The m6t client on an emulated macOS, end to end: the real helper, driver, session and darwin backend.

The helper runs in the MN's namespace over :class:`m6t.lab.emulation.darwin.EmulatedDarwin` (utun on a real
Linux TUN, ioctls and PF_ROUTE applied through rtnetlink), against the real gateway daemon and the HA's
kernel.  The same rig as the Linux client tests (:mod:`tests.lab.test_client_tunnel`); only the helper's
construction and the tunnel's name differ: macOS names a utun itself, so the configured ``m6t0`` becomes
the first free ``utunN``, ``utun0`` in a fresh namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from m6t.lab import GW_WAN, HA, MN, NAT1, NAT1_WAN, StandardLab
from tests.lab.test_client_tunnel import (
    MN_PREFIX,
    PORT_A,
    PORT_B,
    RECONNECT_BOUND_S,
    REPO,
    Capture,
    Rig,
    client_config,
    connected,
    running_rig,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

UTUN = "utun0"


@pytest.fixture
def rig(lab: StandardLab) -> Iterator[Rig]:
    with running_rig(lab, "darwin", tun=UTUN) as rig:
        yield rig


def test_attach_ping_df_clear_and_sigterm_cleanup(rig: Rig) -> None:
    address = connected(rig, client_config(keepalive=30))
    assert address in MN_PREFIX
    log = rig.client_log()
    assert f"m6t0 is {UTUN}" in log, log  # macOS names the utun itself
    # The route went in through RTM_ADD on the emulated routing socket: ::/0 into the utun.
    route = rig.lab.run(MN, "ip", "-6", "route", "show", "default").stdout
    assert f"dev {UTUN}" in route, route

    capture = Capture(rig, "ping")
    assert rig.lab.ping(MN, HA, count=3, timeout=2.0)
    outers = capture.stop()
    from_mn = [o for o in outers if o.src == NAT1_WAN and o.dport == PORT_A]
    assert len(from_mn) >= 3, outers
    assert not any(o.df for o in from_mn), "IP_DONTFRAG 0 must reach Linux as IP_PMTUDISC_DONT"
    # The 4-byte utun header was stripped: bare IPv6 inside UDP, from our address.
    assert {o.payload[0] >> 4 for o in from_mn} == {6}
    assert {o.payload[8:24] for o in from_mn} == {address.packed}
    link = rig.lab.run(MN, "ip", "-o", "link", "show", UTUN).stdout
    assert " mtu 1472 " in link, link  # SIOCSIFMTU

    assert rig.stop_client() == 0, rig.describe()
    assert UTUN not in rig.lab.run(MN, "ip", "-o", "link").stdout
    assert rig.tunnel_addresses() == []
    assert UTUN not in rig.lab.run(MN, "ip", "-6", "route").stdout
    assert "state connecting → connected" in rig.client_log()


def test_move_to_nat2_regenerates_and_resumes(rig: Rig) -> None:
    first = connected(rig, client_config())
    start = time.monotonic()
    rig.lab.move_mn("nat2")
    second = rig.wait_address(other_than=first)
    elapsed = rig.time_to_ha_reply(start)
    print(f"\nemulated macOS, move to NAT2: new suffix {second}, first HA reply {elapsed:.2f} s")
    assert first not in rig.tunnel_addresses()
    assert elapsed < RECONNECT_BOUND_S
    # The change came from routing-socket messages the emulation built from rtnetlink events.
    assert "(attachment_changed)" in rig.client_log()


def test_lost_binding_is_detected_and_recovered_with_a_new_suffix(rig: Rig) -> None:
    first = connected(rig, client_config(keepalive=1))
    start = time.monotonic()
    forgotten = rig.lab.rebind_nat(NAT1, GW_WAN)
    assert any(m.remote_port == PORT_A for m in forgotten), forgotten
    second = rig.wait_address(other_than=first, timeout=15.0)
    elapsed = rig.time_to_ha_reply(start)
    print(f"\nemulated macOS, NAT rebinding: new suffix {second}, first HA reply {elapsed:.2f} s")
    assert "keepalive_unanswered" in rig.client_log()
    assert elapsed < RECONNECT_BOUND_S


def test_two_ports_first_blocked_ends_on_the_second(rig: Rig) -> None:
    rig.lab.block_udp_port(NAT1, PORT_A)
    start = time.monotonic()
    rig.start_client(client_config(ports=(PORT_A, PORT_B)))
    rig.wait_address()
    elapsed = rig.time_to_ha_reply(start, timeout=20.0)
    print(f"\nemulated macOS, first port blocked: HA reached via {PORT_B} after {elapsed:.2f} s")
    log = rig.client_log()
    assert f"via {GW_WAN}:{PORT_B}" in log and "probe_unanswered" in log, log
    mappings = [m for m in rig.lab.nat_mappings(NAT1) if m.remote_addr == GW_WAN and m.replied]
    assert {m.remote_port for m in mappings} == {PORT_B}, mappings


def test_emulated_demo_exits_0_and_says_so(lab: StandardLab) -> None:
    # The fixture only checks that labs can run here; the demo builds its own.
    result = subprocess.run(
        [sys.executable, "-m", "m6t.cli", "lab", "demo", "--emulate", "darwin"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("m6t lab demo — emulated macOS:"), first
    assert "recovered in" in result.stdout
    assert result.stdout.rstrip().endswith("lab torn down; demo succeeded"), result.stdout
