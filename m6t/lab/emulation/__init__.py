"""Emulated operating systems for the lab: the real Windows/macOS backends over an emulation of their OS
calls that carries real packets through a Linux TUN in the mobile node's namespace.

The registry maps an OS name to how the runner (:mod:`m6t.lab.emulation.run`) builds the emulated backend
inside that namespace.  Entries name a module and a function so that nothing is imported (pyroute2,
ctypes callbacks, ...) before an emulation is actually chosen.  Nothing under ``m6t.platform`` or
``m6t.client`` imports this package: the backends' code paths are the shipped ones, only the OS-call layer
they are constructed over differs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from m6t.platform.base import Backend


@dataclass(frozen=True)
class Emulation:
    name: str
    summary: str
    """One line for people: which backend runs over what."""
    factory: str
    """``"module:function"``: a function with no arguments returning the backend over the emulation."""
    buttons: str | None = None
    """``"module:function"`` returning what the runner does on a signal (``{signal number: action}``): how a
    lab test presses the emulated machine's buttons (its power button, for one)."""

    def backend_factory(self) -> Callable[[], Backend]:
        module, _, function = self.factory.partition(":")
        built: Callable[[], Backend] = getattr(importlib.import_module(module), function)
        return built

    def signal_buttons(self) -> dict[int, Callable[[], object]]:
        if self.buttons is None:
            return {}
        module, _, function = self.buttons.partition(":")
        buttons: dict[int, Callable[[], object]] = getattr(importlib.import_module(module), function)()
        return buttons


EMULATIONS: dict[str, Emulation] = {
    "windows": Emulation(
        "Windows",
        "the real Windows backend over an emulation of Wintun and IP Helper carrying real packets through a Linux TUN",
        "m6t.lab.emulation.windows:emulated_backend",
    ),
    "darwin": Emulation(
        "macOS",
        "the real macOS backend over an emulation of utun, interface ioctls and PF_ROUTE carrying real packets"
        " through a Linux TUN",
        "m6t.lab.emulation.darwin:emulated_backend",
        "m6t.lab.emulation.darwin:power_buttons",
    ),
}
