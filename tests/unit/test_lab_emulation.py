"""The emulation registry and the demo's answer for an OS it cannot emulate (no root, no lab)."""

from __future__ import annotations

import io

import pytest

from m6t.lab import demo
from m6t.lab.emulation import EMULATIONS, KNOWN_OSES


def test_windows_is_registered_and_its_factory_resolves() -> None:
    emulation = EMULATIONS["windows"]
    assert emulation.name == "Windows"
    factory = emulation.backend_factory()
    assert callable(factory) and factory.__name__ == "emulated_backend"
    assert set(EMULATIONS) <= set(KNOWN_OSES)


def test_an_unknown_os_is_refused_before_anything_runs() -> None:
    out = io.StringIO()
    assert demo.run(out=out, emulate="plan9") == 2
    assert out.getvalue() == "m6t lab demo: cannot emulate 'plan9' (known: windows, darwin)\n"


@pytest.mark.skipif("darwin" in EMULATIONS, reason="the darwin emulation is registered")
def test_a_known_os_without_its_emulation_says_so() -> None:
    out = io.StringIO()
    assert demo.run(out=out, emulate="darwin") == 2
    assert out.getvalue() == "m6t lab demo: the emulation of darwin is not available yet\n"
