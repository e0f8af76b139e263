"""`m6t lab demo` end to end, as a user runs it: bounded time, exit 0, a narration, nothing left behind.

Needs root (network namespaces, TUN); skipped with the lab's reason otherwise.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from m6t.lab.netns import list_namespaces
from tests.lab.commands import REPO, run_module, tree_env

pytestmark = [pytest.mark.lab, pytest.mark.timeout(200)]

BUDGET_S = 120


def run_prefix(output: str) -> str:
    """The demo's own namespace prefix (other labs may run in parallel on the same machine)."""
    match = re.search(r"gateway running in (m6t-[0-9a-f]+-)gw", output)
    assert match is not None, output
    return match.group(1)


def leftovers(prefix: str) -> list[str]:
    return [name for name in list_namespaces() if name.startswith(prefix)]


def test_demo_runs_end_to_end() -> None:
    started = time.monotonic()
    result = run_module("m6t.cli", "lab", "demo", timeout=BUDGET_S + 30)
    took = time.monotonic() - started
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert took < BUDGET_S
    out = result.stdout
    assert re.search(r"connected in [\d.]+ s: address fd6d:3674:a1b2:0:1:", out), out
    assert re.search(r"ping6 fd00:ab::1 \(the Home Agent\) through the tunnel: [\d.]+ ms", out), out
    assert re.search(r"path MTU search: tunnel MTU 1472 \(probe, 2 probes, [\d.]+ s after connecting\)", out), out
    moved = re.search(r"reattached in ([\d.]+) s: new address (\S+),", out)
    assert moved is not None, out
    first = re.search(r"connected in [\d.]+ s: address (\S+)", out)
    assert first is not None and first.group(1) != moved.group(2)
    assert re.search(r"recovered in [\d.]+ s", out), out
    assert "summary" in out and "lab torn down; demo succeeded" in out
    assert leftovers(run_prefix(out)) == [], "the demo left namespaces behind"


def test_demo_keep_then_ctrl_c_cleans_up() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "m6t.cli", "lab", "demo", "--keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=tree_env(),
        cwd=REPO,
    )
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    output: list[str] = []
    deadline = time.monotonic() + BUDGET_S
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                break
            output.append(line)
            if "press Ctrl-C" in line:
                break
        text = "".join(output)
        assert "press Ctrl-C" in text, text
        socket_line = re.search(r"m6t-tray --socket (\S+)", text)
        assert socket_line is not None and os.path.exists(socket_line.group(1))
        status = run_module("m6t.cli", "--socket", socket_line.group(1), "status")
        assert status.returncode == 0 and status.stdout.startswith("state       connected"), status
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        rest_lines: list[str] = []
        while (line := lines.get(timeout=10)) is not None:
            rest_lines.append(line)
        rest = "".join(rest_lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(output) + rest
    assert "lab torn down" in rest
    assert not os.path.exists(socket_line.group(1))
    assert leftovers(run_prefix(text)) == []
