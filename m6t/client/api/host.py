"""The machine a client runs on, as the platform names it.

The tray follows its OS's conventions (where a start-at-login entry goes, which service manager starts the
helper, where the helper listens) but must not test the OS itself, nor reach below this API: the platform
answers, once, here.
"""

from __future__ import annotations

from m6t.platform import default_control_address
from m6t.platform.family import OsFamily, os_family
from m6t.platform.hints import Conventions, conventions, conventions_of

__all__ = [
    "Conventions",
    "OsFamily",
    "control_address",
    "conventions",
    "conventions_of",
    "os_family",
]


def control_address() -> str:
    """Where the helper listens unless told otherwise (a socket path; on Windows a pipe name)."""
    return default_control_address()
