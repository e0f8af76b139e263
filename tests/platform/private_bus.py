"""A private ``dbus-daemon`` for one test: a system-like bus (logind and NetworkManager stand-ins, polkitd) or a
session-like one (a Secret Service), that lets every user connect and every peer own names and talk.

The bus has no service directories: a call that comes before the test's service has taken its name must not
make the bus start another one (D-Bus activation), which would then own the name.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from m6t.lab import processes

DBUS_DAEMON = shutil.which("dbus-daemon")
MISSING = "dbus-daemon is not installed (scripts/setup.sh installs it)"

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{kind}</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow send_type="signal"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


@dataclass(frozen=True)
class PrivateBus:
    address: str
    """What ``dbus-daemon`` printed: set it as DBUS_SYSTEM_BUS_ADDRESS or DBUS_SESSION_BUS_ADDRESS."""
    socket: Path
    process: subprocess.Popen[str]


@contextmanager
def private_bus(
    directory: Path, *, kind: Literal["system", "session"] = "system", env: Mapping[str, str] | None = None
) -> Iterator[PrivateBus]:
    """A ``dbus-daemon`` listening in ``directory`` (its socket open to every user, for tests that drop to
    other accounts), stopped after; ``env`` is the daemon's environment (the test's own if None)."""
    assert DBUS_DAEMON is not None, MISSING
    socket = directory / f"{kind}_bus_socket"
    config = directory / f"{kind}-bus.conf"
    log = directory / f"{kind}-bus.log"
    config.write_text(_CONFIG.format(kind=kind, socket=socket))
    with log.open("w") as errors:
        daemon = subprocess.Popen(
            [DBUS_DAEMON, f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=None if env is None else dict(env),
        )
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().strip()
        assert address.startswith("unix:"), f"dbus-daemon printed {address!r}: {log.read_text(errors='replace')}"
        socket.chmod(0o666)
        yield PrivateBus(address, socket, daemon)
    finally:
        processes.stop(daemon, grace=5.0)
        processes.close_pipes(daemon)
