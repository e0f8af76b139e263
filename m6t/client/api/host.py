"""The machine a client runs on, as the platform names it.

The tray follows its OS's conventions (where a start-at-login entry goes, which service manager starts the
helper, where the helper listens) but must not test the OS itself, nor reach below this API: the platform
answers, once, here.
"""

from __future__ import annotations

from m6t.platform import control_transport, default_control_address
from m6t.platform.base import PlatformError
from m6t.platform.family import OsFamily, os_family
from m6t.platform.hints import Conventions, conventions, conventions_of

__all__ = [
    "Conventions",
    "OsFamily",
    "control_address",
    "conventions",
    "conventions_of",
    "helper_end_problem",
    "os_family",
]


def control_address() -> str:
    """Where the helper listens unless told otherwise (a socket path; on Windows a pipe name)."""
    return default_control_address()


def helper_end_problem(native: int) -> str | None:
    """Why the server end of a control connection that other code made (the tray's QLocalSocket; ``native`` is
    its OS handle) is not to be trusted with a request, ``None`` when the OS vouches for it as the helper
    (:meth:`m6t.platform.base.ControlTransport.verify_server`)."""
    try:
        transport = control_transport()
    except PlatformError:
        return None  # no control channel of ours on this OS: nothing of ours to tell apart
    try:
        transport.verify_server(native)
    except (PlatformError, OSError) as exc:
        hint = getattr(exc, "hint", None)
        return f"{exc} ({hint})" if hint else str(exc)
    return None
