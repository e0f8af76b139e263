"""What the tunnel benchmark does inside the standard lab beyond `m6t.lab` itself.

Processes are started through `lab.spawn`, so the lab kills whatever a failed or interrupted run left
behind; everything here also stops what it started itself, so that scenarios never overlap.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from m6t.lab import LabError, StandardLab

REPO_ROOT = Path(__file__).resolve().parent.parent

STOP_GRACE = 3.0
KILL_WAIT = 3.0


class BenchError(RuntimeError):
    """A scenario could not be set up or a measurement could not be taken."""


def python_env() -> dict[str, str]:
    """The environment for Python processes started in namespaces: this checkout first on the path."""
    env = dict(os.environ)
    # `ip netns exec` keeps the environment, so helper modules (bench.*, m6t.*) resolve to this tree even
    # when the project is not installed into the interpreter running the benchmark.
    previous = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) if not previous else f"{REPO_ROOT}{os.pathsep}{previous}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def python_argv(module: str, *args: str) -> list[str]:
    """argv running a module with the interpreter running the benchmark."""
    return [sys.executable, "-m", module, *args]


def spawn(
    lab: StandardLab,
    host: str,
    argv: Sequence[str],
    *,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
    stderr: int | IO[Any] | None = subprocess.DEVNULL,
    python: bool = False,
) -> subprocess.Popen[str]:
    """Start a long-running process in a host's namespace (killed by the lab at teardown at the latest)."""
    return lab.spawn(host, argv, stdout=stdout, stderr=stderr, env=python_env() if python else None)


def stop(proc: subprocess.Popen[Any], *, grace: float = STOP_GRACE) -> int | None:
    """SIGTERM, then SIGKILL after grace seconds; return the exit status (None if it would not die)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            try:
                proc.wait(timeout=KILL_WAIT)
            except subprocess.TimeoutExpired:
                return None
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    return proc.returncode


def wait_for(condition: Callable[[], bool], *, what: str, timeout: float, interval: float = 0.05) -> None:
    """Poll until condition() holds; BenchError naming `what` after timeout seconds (bounded by count too)."""
    deadline = time.monotonic() + timeout
    for _ in range(max(1, int(timeout / interval) + 1)):
        if condition():
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if not condition():
        raise BenchError(f"timed out after {timeout:g} s waiting for {what}")


def ip(lab: StandardLab, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`ip ARGS` in a host's namespace."""
    return lab.run(host, "ip", *args, check=check)


def has_interface(lab: StandardLab, host: str, ifname: str) -> bool:
    """True when the host has an interface of that name."""
    return ip(lab, host, "link", "show", "dev", ifname, check=False).returncode == 0


def link_up(lab: StandardLab, host: str, ifname: str) -> bool:
    """True when the interface is administratively up (a TUN has no carrier until a process attaches)."""
    out = ip(lab, host, "-j", "link", "show", "dev", ifname, check=False).stdout
    try:
        flags = json.loads(out)[0].get("flags", [])
    except (json.JSONDecodeError, IndexError, AttributeError):
        return False
    return "UP" in flags


def udp_listening(lab: StandardLab, host: str, port: int) -> bool:
    """True when something in the host listens on that UDP port."""
    out = lab.run(host, "ss", "-Hlun", f"sport = :{port}", check=False).stdout
    return bool(out.strip())


def tcp_listening(lab: StandardLab, host: str, port: int) -> bool:
    """True when something in the host listens on that TCP port."""
    out = lab.run(host, "ss", "-Hltn", f"sport = :{port}", check=False).stdout
    return bool(out.strip())


@contextlib.contextmanager
def sysctl(lab: StandardLab, host: str, key: str, value: str | int) -> Iterator[None]:
    """Set a sysctl for the duration of the block, then put the previous value back."""
    previous = lab.read_sysctl(host, key)
    lab.write_sysctl(host, key, value)
    try:
        yield
    finally:
        with contextlib.suppress(LabError):
            lab.write_sysctl(host, key, previous)


@contextlib.contextmanager
def tun_device(lab: StandardLab, host: str, ifname: str, mtu: int) -> Iterator[None]:
    """A persistent TUN device with IPv6 on, that a tunnel process then attaches to; deleted afterwards.

    Made beforehand rather than by the tunnel process because the MN's namespace runs with IPv6 off on its
    IPv4-only links, and a device created by a process would have no say in that before its addresses go on.
    """
    if has_interface(lab, host, ifname):
        raise BenchError(f"{host} already has an interface {ifname}: a previous scenario did not clean up")
    ip(lab, host, "tuntap", "add", "dev", ifname, "mode", "tun")
    try:
        lab.write_sysctl(host, f"net.ipv6.conf.{ifname}.disable_ipv6", 0)
        lab.write_sysctl(host, f"net.ipv6.conf.{ifname}.accept_dad", 0)
        ip(lab, host, "link", "set", "dev", ifname, "mtu", str(mtu))
        yield
    finally:
        ip(lab, host, "link", "delete", "dev", ifname, check=False)


@contextlib.contextmanager
def address(lab: StandardLab, host: str, cidr: str, dev: str) -> Iterator[None]:
    """An interface address for the duration of the block."""
    extra = ["nodad"] if ":" in cidr else []
    ip(lab, host, "address", "add", cidr, "dev", dev, *extra)
    try:
        yield
    finally:
        ip(lab, host, "address", "del", cidr, "dev", dev, check=False)


@contextlib.contextmanager
def route(lab: StandardLab, host: str, *spec: str) -> Iterator[None]:
    """A route (`ip route add SPEC`, family from the destination) for the duration of the block."""
    family = ["-6"] if ":" in spec[0] else ["-4"]
    ip(lab, host, *family, "route", "add", *spec)
    try:
        yield
    finally:
        ip(lab, host, *family, "route", "del", *spec, check=False)


@contextlib.contextmanager
def process(
    lab: StandardLab,
    host: str,
    argv: Sequence[str],
    *,
    log: Path | None = None,
    python: bool = False,
) -> Iterator[subprocess.Popen[str]]:
    """A long-running process for the duration of the block; its output goes to log when given."""
    with contextlib.ExitStack() as stack:
        out: int | IO[Any] = subprocess.DEVNULL
        if log is not None:
            out = stack.enter_context(log.open("a", encoding="utf-8"))
        proc = spawn(lab, host, argv, stdout=out, stderr=subprocess.STDOUT, python=python)
        try:
            yield proc
        finally:
            stop(proc)


def tail(path: Path | None, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    if path is None or not path.exists():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def check_alive(proc: subprocess.Popen[Any], what: str, log: Path | None = None) -> None:
    """BenchError when a process that should be running has exited."""
    if proc.poll() is not None:
        raise BenchError(f"{what} exited with status {proc.returncode}\n{tail(log)}")
