"""Running the lab's helper tools (ip, nft, conntrack, sysctl) with bounded time and useful errors."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence

from m6t.lab.errors import LabError

DEFAULT_TIMEOUT = 20.0


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; with check, a non-zero exit raises LabError with its stderr."""
    command = list(argv)
    try:
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            # Without a stdin of its own a tool could block reading the test runner's terminal.
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise LabError(f"timed out after {timeout:g} s", command=command, stderr=stderr) from exc
    except OSError as exc:
        raise LabError(f"could not start: {exc}", command=command) from exc
    if check and result.returncode != 0:
        raise LabError("command failed", command=command, returncode=result.returncode, stderr=result.stderr)
    return result


def in_netns(namespace: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs argv inside a named network namespace."""
    return ["ip", "netns", "exec", namespace, *argv]


def ip_batch(lines: Sequence[str], namespace: str | None = None) -> None:
    """Run `ip` commands as one batch (in a namespace if given); a failure names the failing command."""
    argv = ["ip", *(["-n", namespace] if namespace is not None else []), "-batch", "-"]
    try:
        run(argv, input="\n".join(lines) + "\n")
    except LabError as exc:
        # ip reports only "Command failed -:<line>"; the line itself is what a reader needs.
        match = re.search(r"Command failed -:(\d+)", exc.stderr)
        if match is None or not 1 <= int(match.group(1)) <= len(lines):
            raise
        failing = lines[int(match.group(1)) - 1]
        raise LabError(f"ip {failing!r} failed", command=argv, returncode=exc.returncode, stderr=exc.stderr) from exc
