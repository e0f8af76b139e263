"""How often the real helper wakes while the tunnel is connected and idle, and while it is down (issue 12).

    python -m bench.idle_wakeups [--seconds 30] [--variant NAME=@DIR ...]

In one standard lab (mn → nat1 → WAN → gw → ha) the m6t gateway and the client helper run; once the tunnel
reaches the Home Agent and has settled, the helper's voluntary context switches (every thread's, from
``/proc/PID/task/*/status``) are counted over ``--seconds``: each one is the process going to sleep after
a wakeup.  Then the tunnel is taken down (``m6t down``) and counted again.  Printed as wakeups per second
against the target (≤ 0.2/s connected and idle; none at all while down).  ``--variant before=@DIR`` runs
the m6t of another source tree in the same run as the baseline, e.g.
``git archive main | tar -x -C /tmp/m6t-main`` and ``--variant before=@/tmp/m6t-main``.  Not a test: the
figures depend on the machine; tests assert the behaviour (the timer armed for real deadlines only).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.datapath_quick import env_for, m6t_tunnel
from m6t.lab import Lab, unavailable_reason

TARGET_IDLE = 0.2
SETTLE_S = 7.0
"""Connected: the reports of the counters that moved while connecting go first (their interval is 5 s)."""


def voluntary_switches(pid: int) -> int:
    """The process's voluntary context switches so far, all threads together."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except OSError:
            continue  # a thread that ended meanwhile
    return total


def rate(pid: int, seconds: float) -> float:
    before = voluntary_switches(pid)
    time.sleep(seconds)
    return (voluntary_switches(pid) - before) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="counting window per measurement (%(default)s)")
    parser.add_argument("--variant", action="append", default=[], help="NAME=@DIR: the m6t of another tree")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    variants: list[tuple[str, str | None]] = [("this tree", None)]
    variants += [(name, spec) for name, _, spec in (v.partition("=") for v in args.variant)]
    results: dict[str, tuple[float, float]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="m6t-idle-"))
    with Lab.standard() as lab:
        for name, spec in variants:
            rundir = workdir / name.replace(" ", "_").replace("/", "_")  # its own state: the down wish persists
            rundir.mkdir()
            with m6t_tunnel(lab, rundir, spec) as tunnel:
                pid = tunnel.pids["mn"]
                time.sleep(SETTLE_S)
                connected = rate(pid, args.seconds)
                env = env_for(spec)
                # The control socket is a file: reachable from outside the MN's namespace.
                down_cmd = "import sys; from m6t.cli import main; sys.exit(main(sys.argv[1:]))"
                argv = [sys.executable, "-c", down_cmd, "--socket", str(rundir / "helper.sock"), "down"]
                subprocess.run(argv, env=env, cwd=env["PYTHONPATH"], check=True, capture_output=True)
                time.sleep(SETTLE_S)
                down = rate(pid, args.seconds)
                results[name] = (connected, down)
            print(f"{name:>12}: connected, idle {connected:6.2f} wakeups/s   down {down:6.2f} wakeups/s", flush=True)
    print(f"\nhelper wakeups/s over {args.seconds:g} s (target: connected and idle ≤ {TARGET_IDLE}, down 0)")
    for name, (connected, down) in results.items():
        verdict = "ok" if connected <= TARGET_IDLE else "over target"
        print(f"  {name:>12}  connected {connected:6.2f}  down {down:6.2f}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
