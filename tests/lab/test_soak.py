"""The soak suite's short mode, as CI runs it: one command, every invariant from its JSON.

``python -m bench.soak --short`` (the real gateway and helper in the lab, spoofed, flooded, fuzzed,
impaired, killed and restarted; see bench/README.md).  Needs root; about a minute and a half.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.lab.commands import run_module

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

STEPS = {
    "spoof",
    "flood",
    "fuzz-gateway",
    "fuzz-client",
    "control",
    "loss",
    "resources",
    "kill-helper",
    "restart-gateway",
    "kill-gateway",
}


def test_the_short_soak_holds_every_invariant(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = run_module("bench.soak", "--short", "--json", str(out), timeout=280)
    print(done.stdout)
    assert out.exists(), done.stdout + done.stderr
    result: dict[str, Any] = json.loads(out.read_text())
    steps = {step["name"]: step for step in result["steps"]}
    assert set(steps) == STEPS, done.stdout

    assert steps["spoof"]["figures"]["attempts"] >= 1000
    assert steps["spoof"]["figures"]["hijacks"] == 0
    # Every spoof met a defence: the gateway's binding check, or before it the kernel fast lane's policing.
    spoof = steps["spoof"]["figures"]
    assert spoof["binding_mismatch_drops"] + spoof["policed_in_kernel"] >= 500
    assert steps["fuzz-gateway"]["figures"]["gateway_alive"] and steps["fuzz-gateway"]["figures"]["sent"] >= 5000
    assert steps["fuzz-client"]["figures"]["helper_alive"] and steps["fuzz-client"]["figures"]["address_kept"]
    assert steps["control"]["figures"]["replies"] == steps["control"]["figures"]["sent"] >= 1000
    assert steps["loss"]["figures"]["address_kept"] and steps["loss"]["figures"]["mn_loss_percent"] > 0
    for name in ("gateway", "helper"):
        assert steps["resources"]["figures"][name]["fd_growth"] <= 2
        assert steps["resources"]["figures"][name]["rss_growth"] <= 16 << 20
    assert steps["kill-helper"]["figures"]["recovered_s"] is not None
    for name in ("restart-gateway", "kill-gateway"):
        figures = steps[name]["figures"]
        assert figures["reach_s"] is not None and figures["reach_s"] <= 1.0 and figures["address_kept"]
    assert result["ok"], done.stdout + done.stderr[-3000:]
