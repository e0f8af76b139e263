"""Fixtures for lab tests (root): a fresh standard lab per test or one per module, and stale labs removed once per
session.  Where labs cannot run, the suite's conftest skips a lab test with the reason before any fixture runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from m6t.lab import Lab, StandardLab, cleanup_stale, unavailable_reason


@pytest.fixture(scope="session", autouse=True)
def _stale_labs_removed() -> None:
    """Remove labs left by runs that died (only those: running labs of other sessions are kept)."""
    if unavailable_reason() is None:
        cleanup_stale()


@pytest.fixture
def lab() -> Iterator[StandardLab]:
    """A freshly started standard lab (MN on nat1's LAN), torn down after the test."""
    with Lab.standard() as standard:
        yield standard


@pytest.fixture(scope="module")
def shared_lab() -> Iterator[StandardLab]:
    """One standard lab for a module's tests (each leaves it as it found it), torn down after the last."""
    with Lab.standard() as standard:
        yield standard
