"""The emulation registry and the demo's answer for an OS it cannot emulate (no root, no lab)."""

from __future__ import annotations

import io
import signal

import pytest

from m6t.lab import demo
from m6t.lab.emulation import EMULATIONS


@pytest.mark.parametrize(("os_name", "name"), [("windows", "Windows"), ("darwin", "macOS")])
def test_each_os_is_registered_and_its_factory_resolves(os_name: str, name: str) -> None:
    emulation = EMULATIONS[os_name]
    assert emulation.name == name
    factory = emulation.backend_factory()
    assert callable(factory) and factory.__name__ == "emulated_backend"


def test_the_emulated_mac_has_a_power_button_for_the_lab() -> None:
    """SIGUSR1 puts the emulated Mac to sleep, SIGUSR2 wakes it (the runner presses them on a thread)."""
    sleep_button: int = getattr(signal, "SIGUSR1")  # noqa: B009 - absent on Windows
    wake_button: int = getattr(signal, "SIGUSR2")  # noqa: B009
    buttons = EMULATIONS["darwin"].signal_buttons()
    assert set(buttons) == {sleep_button, wake_button}
    assert getattr(buttons[sleep_button], "__name__", "") == "sleep"
    assert getattr(buttons[wake_button], "__name__", "") == "wake"
    assert EMULATIONS["windows"].signal_buttons() == {}


def test_an_unknown_os_is_refused_before_anything_runs() -> None:
    out = io.StringIO()
    assert demo.run(out=out, emulate="plan9") == 2
    assert out.getvalue() == "m6t lab demo: cannot emulate 'plan9' (known: windows, darwin)\n"
