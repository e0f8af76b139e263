"""Which family of OS this is, for code above the platform that follows an OS's conventions without
calling it (the tray's start-at-login entry, the sentence that names the service manager).

Answered here, from ``sys.platform``, so that nothing above ``m6t.platform`` tests the OS itself.
"""

from __future__ import annotations

import sys
from enum import StrEnum


class OsFamily(StrEnum):
    LINUX = "linux"
    BSD = "bsd"
    """FreeBSD, OpenBSD, NetBSD: freedesktop.org desktops without systemd."""
    MACOS = "macos"
    WINDOWS = "windows"


_BSD_PREFIXES = ("freebsd", "openbsd", "netbsd")


def os_family(name: str = sys.platform) -> OsFamily | None:
    """The family of the OS ``sys.platform`` calls ``name``; ``None`` for one m6t knows no conventions of."""
    if name.startswith("linux"):
        return OsFamily.LINUX
    # sys.platform carries the BSDs' major version ("freebsd14").
    if name.startswith(_BSD_PREFIXES):
        return OsFamily.BSD
    if name == "darwin":
        return OsFamily.MACOS
    if name == "win32":
        return OsFamily.WINDOWS
    return None
