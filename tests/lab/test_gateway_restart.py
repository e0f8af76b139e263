"""The gateway restarted under an idle mobile node: the Home Agent reaches it again at once, same address.

The real gateway (keeping its states in the lab's directory) and the real helper, connected and idle with
the default 30 s keepalive: nothing from the MN could tell a gateway that forgot it where it is.  Before
states were kept, the HA lost the MN for ~35 s and the MN drew a new address.  Needs root.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import restart as bench_restart
from m6t.gateway.snapshot import STATE_FILE
from m6t.lab.demo import DemoLab, client_config, demo_lab
from tests.lab.commands import run_module

pytestmark = [pytest.mark.lab, pytest.mark.timeout(150)]

REACH_BOUND_S = 1.0


@pytest.fixture
def idle_mn() -> Iterator[DemoLab]:
    config = client_config(keepalive=bench_restart.IDLE_KEEPALIVE_S, autoconnect=True)
    with demo_lab(keep_states=True, config=config) as demo:
        yield demo


def test_the_ha_reaches_an_idle_mn_within_a_second_of_a_restart_or_a_kill(idle_mn: DemoLab) -> None:
    figures = bench_restart.measure(idle_mn, rounds=1)
    print("\n" + bench_restart.table(figures))
    assert [f.how for f in figures] == ["sigterm", "kill -9"]
    for figure in figures:
        assert figure.reach_s is not None and figure.reach_s <= REACH_BOUND_S, (figure, idle_mn.logs())
        assert figure.address_kept, (figure, idle_mn.logs())
        assert figure.restored >= 1
    state = Path(idle_mn.gateway_state_dir)
    assert (state / STATE_FILE).stat().st_mode & 0o777 == 0o600
    assert (state.stat().st_mode & 0o777) == 0o700
    status = run_module("m6t.gateway", "status", "--metrics", f"unix:{idle_mn.gateway_metrics}")
    assert status.returncode == 0, status.stderr
    assert "restart:     1 states restored at start;" in status.stdout, status.stdout
    log = idle_mn.gateway_log.read_text()
    assert log.count("restored 1 of 1 saved states") == 2, log[-3000:]
    assert "saved states refused" not in log
