"""The OS family the platform names for the code above it (the tray's conventions)."""

from __future__ import annotations

import sys

import pytest

from m6t.platform.family import OsFamily, os_family


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("linux", OsFamily.LINUX),
        ("freebsd14", OsFamily.BSD),
        ("openbsd7", OsFamily.BSD),
        ("netbsd10", OsFamily.BSD),
        ("darwin", OsFamily.MACOS),
        ("win32", OsFamily.WINDOWS),
        ("haiku1", None),
        ("cygwin", None),
    ],
)
def test_families_by_sys_platform(name: str, family: OsFamily | None) -> None:
    assert os_family(name) is family


def test_the_running_os_by_default() -> None:
    assert os_family() is os_family(sys.platform)
