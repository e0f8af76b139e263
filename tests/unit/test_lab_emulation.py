"""The emulation registry and the demo's answer for an OS it cannot emulate (no root, no lab)."""

from __future__ import annotations

import io

import pytest

from m6t.lab import demo
from m6t.lab.emulation import EMULATIONS


@pytest.mark.parametrize(("os_name", "name"), [("windows", "Windows"), ("darwin", "macOS")])
def test_each_os_is_registered_and_its_factory_resolves(os_name: str, name: str) -> None:
    emulation = EMULATIONS[os_name]
    assert emulation.name == name
    factory = emulation.backend_factory()
    assert callable(factory) and factory.__name__ == "emulated_backend"


def test_an_unknown_os_is_refused_before_anything_runs() -> None:
    out = io.StringIO()
    assert demo.run(out=out, emulate="plan9") == 2
    assert out.getvalue() == "m6t lab demo: cannot emulate 'plan9' (known: windows, darwin)\n"
