"""The whole m6t client on an emulated Windows: ``HelperService`` + ``ClientDriver`` + the session + the real
``WindowsBackend``, over the emulated Wintun / IP Helper / Winsock of ``m6t.lab.emulation``, whose adapter is
a Linux TUN in the MN's namespace: real packets to the real gateway and the HA's kernel.

The same rig and checks as the Linux client's lab tests (``test_client_tunnel``): attach and ping6 the HA,
move to nat2, lost binding after a NAT rebinding, failover to the second port, SIGTERM cleanup; and
``m6t lab demo --emulate windows``.  Needs root; skipped otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from m6t.lab import GW_WAN, HA, MN, NAT1, StandardLab
from tests.lab.test_client_tunnel import (
    PORT_A,
    PORT_B,
    RECONNECT_BOUND_S,
    REPO,
    TUN,
    Rig,
    client_config,
    connected,
    running_rig,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

BACKEND_LINE = "m6t.platform.windows.backend INFO Wintun driver"
"""Logged by WindowsBackend.check(): the helper really runs the Windows backend."""


@pytest.fixture
def rig(lab: StandardLab) -> Iterator[Rig]:
    with running_rig(lab, emulate="windows") as rig:
        yield rig


def test_attach_ping_mtu_route_and_sigterm_cleanup(rig: Rig) -> None:
    address = connected(rig, client_config(keepalive=30))
    log = rig.client_log()
    assert BACKEND_LINE in log and "emulated Windows" in log, log
    # IP Helper's effects, seen by Linux: the default route with the backend's metric, the MTU it set.
    route = rig.lab.run(MN, "ip", "-6", "route", "show", "default").stdout
    assert f"dev {TUN}" in route and "metric 1029" in route, route
    assert " mtu 1472 " in rig.lab.run(MN, "ip", "-o", "link", "show", TUN).stdout
    assert rig.lab.ping(MN, HA, count=3, timeout=2.0), rig.describe()
    assert rig.tunnel_addresses() == [address]

    assert rig.stop_client() == 0, rig.describe()
    assert TUN not in rig.lab.run(MN, "ip", "-o", "link").stdout  # WintunCloseAdapter removed the adapter
    assert "1029" not in rig.lab.run(MN, "ip", "-6", "route").stdout
    log = rig.client_log()
    assert "state connecting → connected" in log, log
    assert "broke API contracts" not in log, log


def test_move_to_nat2_regenerates_and_resumes(rig: Rig) -> None:
    first = connected(rig, client_config())
    start = time.monotonic()
    rig.lab.move_mn("nat2")
    second = rig.wait_address(other_than=first, timeout=15.0)
    elapsed = rig.time_to_ha_reply(start)
    print(f"\nemulated Windows, move to nat2: first HA reply after {elapsed:.2f} s")
    assert second != first
    assert elapsed < RECONNECT_BOUND_S


def test_nat_rebinding_is_detected_and_recovered_with_a_new_suffix(rig: Rig) -> None:
    first = connected(rig, client_config(keepalive=1))
    start = time.monotonic()
    forgotten = rig.lab.rebind_nat(NAT1, GW_WAN)
    assert any(m.remote_port == PORT_A for m in forgotten), forgotten
    second = rig.wait_address(other_than=first, timeout=15.0)
    elapsed = rig.time_to_ha_reply(start)
    print(f"\nemulated Windows, NAT rebinding: first HA reply after {elapsed:.2f} s")
    assert second != first
    assert "keepalive_unanswered" in rig.client_log()
    assert elapsed < RECONNECT_BOUND_S


def test_two_ports_first_blocked_ends_on_the_second(rig: Rig) -> None:
    rig.lab.block_udp_port(NAT1, PORT_A)
    start = time.monotonic()
    rig.start_client(client_config(ports=(PORT_A, PORT_B)))
    rig.wait_address()
    elapsed = rig.time_to_ha_reply(start, timeout=20.0)
    print(f"\nemulated Windows, first port blocked: HA reached via {PORT_B} after {elapsed:.2f} s")
    log = rig.client_log()
    assert f"via {GW_WAN}:{PORT_B}" in log and "probe_unanswered" in log, log
    mappings = [m for m in rig.lab.nat_mappings(NAT1) if m.remote_addr == GW_WAN and m.replied]
    assert {m.remote_port for m in mappings} == {PORT_B}, mappings


def test_emulated_demo_exits_0_and_says_so(lab: StandardLab) -> None:
    # The fixture only checks that labs can run here; the demo builds its own.
    result = subprocess.run(
        [sys.executable, "-m", "m6t.cli", "lab", "demo", "--emulate", "windows"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("m6t lab demo — emulated Windows:"), first
    assert "lost binding detected" in result.stdout or "recovered in" in result.stdout
    assert result.stdout.rstrip().endswith("lab torn down; demo succeeded"), result.stdout
