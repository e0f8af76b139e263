"""``m6t lab demo --emulate windows|darwin``: the Linux demo's story told by the shipped Windows or macOS
backend over its emulation (:mod:`m6t.lab.emulation`): exit 0, and a first line that says the OS is emulated.

The client's scenarios on each emulated backend are in :mod:`tests.lab.test_client_tunnel` (``[windows]``,
``[darwin]``).  Needs root; skipped otherwise.
"""

from __future__ import annotations

import pytest

from m6t.lab import StandardLab
from tests.lab.commands import run_module

pytestmark = [pytest.mark.lab, pytest.mark.timeout(200)]


@pytest.mark.parametrize(("emulate", "name"), [("windows", "Windows"), ("darwin", "macOS")], ids=["windows", "darwin"])
def test_emulated_demo_exits_0_and_says_so(lab: StandardLab, emulate: str, name: str) -> None:
    # The fixture only checks that labs can run here; the demo builds its own.
    result = run_module("m6t.cli", "lab", "demo", "--emulate", emulate, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"m6t lab demo — emulated {name}:"), first
    # Whichever way the NAT reboot went (the same public port back, or a lost binding and a new address).
    assert "recovered in" in result.stdout, result.stdout
    assert result.stdout.rstrip().endswith("lab torn down; demo succeeded"), result.stdout
