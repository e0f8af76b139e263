"""How often the real tray wakes, and how often its status window redraws, on a connected, idle tunnel
(issue 12).

    python -m bench.tray_idle [--seconds 30] [--variant NAME=@DIR ...]

In one standard lab (mn → nat1 → WAN → gw → ha) the m6t gateway and the client helper of this tree run and
bring the tunnel up.  On an Xvfb display with ``trayer`` as the tray host (XEmbed) and a private session
bus, the tray of each tree (``bench/tray_harness.py`` runs that tree's own ``m6t.ui.app.main``) connects
to the helper's socket.  Once it has settled, counted over ``--seconds``: the tray process's voluntary
context switches (every thread's: each is a wakeup that ended in sleep) with every window closed, then, in
a fresh tray with the status window open, the context switches again and the window's redraws (paint
passes, counted by an event filter in the harness).  Targets: windows closed ≤ 0.1 wakeups/s; status
window open ≤ 2 redraws/s.  ``--variant before=@DIR`` runs the tray of another source tree in the same run
against the same helper, e.g. ``git archive main | tar -x -C /tmp/m6t-main`` then
``--variant main=@/tmp/m6t-main``.  Not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.datapath_quick import REPO, m6t_tunnel, stop
from bench.idle_wakeups import voluntary_switches
from m6t.lab import Lab, unavailable_reason

TARGET_CLOSED = 0.1
TARGET_REDRAWS = 2.0
SETTLE_S = 8.0
"""The tray connects, subscribes and draws its first picture; the helper's first counter reports pass."""
HARNESS = Path(__file__).resolve().parent / "tray_harness.py"
COUNTS = struct.Struct("<qqq")


@dataclass
class Figures:
    closed: float = float("nan")
    open_wakeups: float = float("nan")
    redraws: float = float("nan")
    paints: float = float("nan")


@contextlib.contextmanager
def display(workdir: Path) -> Iterator[dict[str, str]]:
    """Xvfb, a session bus and trayer: the environment a desktop gives the tray."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        read_end, write_end = os.pipe()
        xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(xvfb)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise SystemExit("tray_idle: Xvfb did not start")
        bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1", "--nopidfile"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        procs.append(bus)
        assert bus.stdout is not None
        address = bus.stdout.readline().decode().strip()
        env = {
            **os.environ,
            "DISPLAY": f":{number}",
            "DBUS_SESSION_BUS_ADDRESS": address,
            "QT_QPA_PLATFORM": "xcb",
            "XDG_CONFIG_HOME": str(workdir / "config"),
            "XDG_RUNTIME_DIR": str(workdir / "runtime"),
        }
        (workdir / "runtime").mkdir(mode=0o700)
        env.pop("WAYLAND_DISPLAY", None)
        procs.append(
            subprocess.Popen(
                ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request", "--height", "30"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        time.sleep(1.0)
        yield env
    finally:
        for proc in reversed(procs):
            stop(proc)


def read_counts(path: Path) -> tuple[int, int, int]:
    redraws, paints, hosted = COUNTS.unpack(path.read_bytes()[: COUNTS.size])
    return redraws, paints, hosted


def measure(env: dict[str, str], tree: Path, socket: Path, workdir: Path, seconds: float, *, status: bool) -> Figures:
    counts = workdir / f"counts-{time.monotonic_ns()}"
    argv = [sys.executable, str(HARNESS), "--socket", str(socket), "--counts", str(counts)]
    argv += ["--status"] if status else []
    log = (workdir / "tray.log").open("a")
    tray = subprocess.Popen(argv, env={**env, "PYTHONPATH": str(tree)}, cwd=tree, stdout=log, stderr=log)
    try:
        time.sleep(SETTLE_S)
        if tray.poll() is not None:
            raise SystemExit(f"tray_idle: the tray of {tree} ended (see {workdir / 'tray.log'})")
        if read_counts(counts)[2] != 1:
            raise SystemExit("tray_idle: no tray host took the icon (is trayer installed?)")
        switches0, (redraws0, paints0, _) = voluntary_switches(tray.pid), read_counts(counts)
        time.sleep(seconds)
        switches1, (redraws1, paints1, _) = voluntary_switches(tray.pid), read_counts(counts)
    finally:
        stop(tray)
        log.close()
    wakeups = (switches1 - switches0) / seconds
    if not status:
        return Figures(closed=wakeups)
    return Figures(open_wakeups=wakeups, redraws=(redraws1 - redraws0) / seconds, paints=(paints1 - paints0) / seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="counting window per measurement (%(default)s)")
    parser.add_argument("--variant", action="append", default=[], help="NAME=@DIR: the tray of another tree")
    args = parser.parse_args()
    reason = unavailable_reason()
    missing = [tool for tool in ("Xvfb", "trayer", "dbus-daemon") if shutil.which(tool) is None]
    if reason is None and missing:
        reason = f"missing {', '.join(missing)} (Debian packages xvfb, trayer, dbus-daemon: scripts/setup.sh)"
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    trees: list[tuple[str, Path]] = [("this tree", REPO)]
    trees += [(name, Path(spec.lstrip("@"))) for name, _, spec in (v.partition("=") for v in args.variant)]
    results = {name: Figures() for name, _ in trees}
    workdir = Path(tempfile.mkdtemp(prefix="m6t-tray-idle-"))
    try:
        with Lab.standard() as lab, m6t_tunnel(lab, workdir, None), display(workdir) as env:
            socket = workdir / "helper.sock"
            time.sleep(SETTLE_S)  # the connection's own counter reports go first
            for status in (False, True):
                for name, tree in trees:
                    figures = measure(env, tree, socket, workdir, args.seconds, status=status)
                    if status:
                        results[name].open_wakeups, results[name].redraws = figures.open_wakeups, figures.redraws
                        results[name].paints = figures.paints
                        print(
                            f"{name:>12}: status window open {figures.open_wakeups:7.2f} wakeups/s "
                            f"{figures.redraws:6.2f} redraws/s ({figures.paints:.1f} paint events/s)",
                            flush=True,
                        )
                    else:
                        results[name].closed = figures.closed
                        print(f"{name:>12}: windows closed {figures.closed:7.2f} wakeups/s", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"\ntray over {args.seconds:g} s, connected idle tunnel "
        f"(targets: windows closed ≤ {TARGET_CLOSED} wakeups/s, status window ≤ {TARGET_REDRAWS:g} redraws/s)"
    )
    base = results[trees[-1][0]] if len(trees) > 1 else None
    for name, figures in results.items():
        verdict = "ok" if figures.closed <= TARGET_CLOSED and figures.redraws <= TARGET_REDRAWS else "over target"
        line = (
            f"  {name:>12}  closed {figures.closed:7.2f} wakeups/s   open {figures.open_wakeups:7.2f} wakeups/s "
            f"{figures.redraws:6.2f} redraws/s  {verdict}"
        )
        if base is not None and figures is not base and figures.open_wakeups > 0 and figures.closed > 0:
            line += (
                f"   ({base.closed / figures.closed:.0f}x fewer wakeups closed, "
                f"{base.open_wakeups / figures.open_wakeups:.0f}x fewer open than {trees[-1][0]})"
            )
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
