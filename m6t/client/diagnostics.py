"""The diagnostics bundle: what a user attaches to a bug report.

Status, configuration, recent log, start-up checks, and a snapshot of the host's interfaces and routes.
Nothing secret goes in (the client configuration holds none; keys that look secret are masked anyway,
so a future setting cannot leak by accident).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from m6t.atomic import atomic_write

KEEP_BUNDLES = 5
_SECRET_KEY = re.compile(r"secret|password|passwd|token|psk|private", re.IGNORECASE)
_COMMAND_TIMEOUT_S = 5.0

# Each entry is tried if its tool exists: no OS test needed, and a missing tool is simply skipped.
_ROUTE_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("ip", "-j", "-4", "route", "show", "table", "all"),
    ("ip", "-j", "-6", "route", "show", "table", "all"),
    ("ip", "-j", "-6", "rule", "show"),
    ("netstat", "-rn"),
    ("route", "print"),
)


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<redacted>" if _SECRET_KEY.search(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def system_info(helper_version: str) -> dict[str, Any]:
    uname = platform.uname()
    return {
        "os": uname.system,
        "release": uname.release,
        "version": uname.version,
        "machine": uname.machine,
        "python": sys.version.split()[0],
        "helper_version": helper_version,
        "pid": os.getpid(),
    }


def interfaces_snapshot() -> list[dict[str, Any]]:
    try:
        import psutil
    except ImportError:
        return []
    stats = psutil.net_if_stats()
    result: list[dict[str, Any]] = []
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        st = stats.get(name)
        result.append(
            {
                "name": name,
                "up": None if st is None else bool(st.isup),
                "mtu": None if st is None else int(st.mtu),
                "addresses": [
                    {"family": str(getattr(a.family, "name", a.family)), "address": a.address, "netmask": a.netmask}
                    for a in addrs
                    # Hardware addresses identify the machine and help nobody debug a tunnel.
                    if str(getattr(a.family, "name", a.family)) not in {"AF_PACKET", "AF_LINK"}
                ],
            }
        )
    return result


def _run(argv: tuple[str, ...]) -> Any:
    tool = shutil.which(argv[0])
    if tool is None:
        return None
    try:
        done = subprocess.run(
            [tool, *argv[1:]], capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    output = done.stdout.strip()
    if "-j" in argv:
        with contextlib.suppress(ValueError):
            return json.loads(output or "[]")
    return output.splitlines() if done.returncode == 0 else {"error": done.stderr.strip(), "rc": done.returncode}


def routes_snapshot() -> dict[str, Any]:
    snapshot: dict[str, Any] = {}
    for argv in _ROUTE_COMMANDS:
        result = _run(argv)
        if result is not None:
            snapshot[" ".join(argv)] = result
    return snapshot


def build_bundle(
    *,
    status: dict[str, Any],
    config: dict[str, Any] | None,
    log: list[Any],
    checks: list[Any],
    journal: list[str],
    helper_version: str,
) -> dict[str, Any]:
    """The whole bundle; runs external commands, so call it off the event loop."""
    return {
        "created": time.time(),
        "status": status,
        "config": redact(config),
        "log": log,
        "checks": checks,
        "journal": journal,
        "system": system_info(helper_version),
        "interfaces": interfaces_snapshot(),
        "routes": routes_snapshot(),
    }


def save_bundle(directory: Path, bundle: dict[str, Any]) -> Path:
    """Write under ``directory`` (created 0700: bundles describe the host) and keep only the newest few."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(bundle.get("created", time.time())))
    path = directory / f"m6t-diagnostics-{stamp}-{os.getpid()}.json"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"m6t-diagnostics-{stamp}-{os.getpid()}-{n}.json"
    atomic_write(path, json.dumps(bundle, indent=1, default=str).encode("utf-8"), 0o600)
    bundles = sorted(directory.glob("m6t-diagnostics-*.json"), key=lambda p: p.stat().st_mtime)
    for old in bundles[:-KEEP_BUNDLES]:
        with contextlib.suppress(OSError):
            old.unlink()
    return path
