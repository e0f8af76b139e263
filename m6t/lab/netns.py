"""Named network namespaces and the processes inside them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psutil

from m6t.lab import shell
from m6t.lab.errors import LabError

KILL_WAIT = 3.0
KILL_ROUNDS = 5


def list_namespaces() -> list[str]:
    """Names of all named network namespaces (`ip netns list`)."""
    out = shell.run(["ip", "netns", "list"]).stdout
    # Lines look like "name (id: 3)" or just "name".
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def exists(namespace: str) -> bool:
    """True when a named namespace exists."""
    return namespace in list_namespaces()


def pids(namespace: str) -> list[int]:
    """PIDs of the processes whose network namespace is this one."""
    result = shell.run(["ip", "netns", "pids", namespace], check=False)
    if result.returncode != 0:
        return []
    return [int(tok) for tok in result.stdout.split() if tok.isdigit()]


def kill_processes(namespace: str) -> list[int]:
    """SIGKILL every process inside the namespace and wait (bounded) for them to go; return their PIDs."""
    killed: list[int] = []
    # Repeated because a process can fork between the listing and its death; the rounds are bounded.
    for _ in range(KILL_ROUNDS):
        found = [pid for pid in pids(namespace) if pid not in killed]
        if not found:
            return killed
        procs = []
        for pid in found:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                proc = psutil.Process(pid)
                proc.kill()
                procs.append(proc)
        killed += found
        if procs:
            _, alive = psutil.wait_procs(procs, timeout=KILL_WAIT)
            if alive:
                raise LabError(f"processes {[p.pid for p in alive]} in {namespace} survived SIGKILL")
    if pids(namespace):
        raise LabError(f"processes keep appearing in {namespace}")
    return killed


ETC_NETNS = Path("/etc/netns")
"""``ip netns exec`` bind-mounts ``/etc/netns/<name>/<file>`` over ``/etc/<file>`` for what it runs
(ip-netns(8)): a per-namespace hosts file that leaves the machine's own ``/etc/hosts`` alone."""


@contextlib.contextmanager
def etc_file(namespace: str, name: str, text: str) -> Iterator[Path]:
    """``/etc/<name>`` as what ``ip netns exec`` starts in ``namespace`` from now on sees it; removed after."""
    if "/" in name or name in ("", ".", ".."):
        raise LabError(f"bad /etc file name {name!r}")
    made_root = not ETC_NETNS.exists()
    directory = ETC_NETNS / namespace
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    try:
        path.write_text(text)
        yield path
    finally:
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            directory.rmdir()
        if made_root:
            with contextlib.suppress(OSError):
                ETC_NETNS.rmdir()


def delete(namespace: str) -> None:
    """Kill what runs inside a namespace, then delete it; a namespace already gone is not an error."""
    kill_processes(namespace)
    result = shell.run(["ip", "netns", "delete", namespace], check=False)
    if result.returncode != 0 and exists(namespace):
        raise LabError(
            f"could not delete namespace {namespace}",
            command=["ip", "netns", "delete", namespace],
            returncode=result.returncode,
            stderr=result.stderr,
        )
