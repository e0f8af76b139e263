"""What a scenario is: a way to carry the MN's traffic to the HA, set up and torn down around measurements."""

from __future__ import annotations

import abc
import shutil
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import psutil

from m6t.lab import StandardLab

# Roles of tunnel processes: the MN's end and the gateway's end.
CLIENT = "client"
GATEWAY = "gateway"


@dataclass(frozen=True)
class Tunnel:
    """A scenario that is up: where the MN sends its traffic and which processes carry it."""

    target: str
    # ICMP payload bytes that make an echo request exactly as large as the path MTU.
    full_size_ping: int
    mtu: int
    processes: dict[str, psutil.Process] = field(default_factory=dict)
    # host → the tunnel's TUN device there ("mn", "gw"), for the UDP path accounting.
    tun: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class Scenario(abc.ABC):
    """One way of carrying MN ⇄ HA traffic."""

    name: ClassVar[str]
    title: ClassVar[str]
    tools: ClassVar[tuple[str, ...]] = ()

    def unavailable(self) -> str | None:
        """Why this scenario cannot run here, or None."""
        missing = [tool for tool in self.tools if shutil.which(tool) is None]
        return f"missing {', '.join(missing)} (scripts/bench.sh installs it)" if missing else None

    @abc.abstractmethod
    def up(self, lab: StandardLab, logdir: Path) -> AbstractContextManager[Tunnel]:
        """Set the scenario up in a running standard lab; leaving the block tears it down completely."""
