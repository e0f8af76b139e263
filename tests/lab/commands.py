"""The project's own programs run from this tree as a user runs them (``python -m <module> ...``), for the lab
tests that check what a command prints or does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def tree_env() -> dict[str, str]:
    """This environment with this tree on PYTHONPATH: what a child Python needs to import this m6t."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


def run_module(
    module: str, *args: str, timeout: float = 30.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` from the tree's root, its output captured as text; the exit status is the
    caller's to check (its stderr explains a failure best)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=tree_env(),
        check=False,
    )
