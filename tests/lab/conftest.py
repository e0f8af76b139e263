"""Fixtures for lab tests (root): a fresh standard lab per test, and stale labs removed once per session."""

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
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with Lab.standard() as standard:
        yield standard
