"""OS backends behind one interface (:mod:`m6t.platform.base`).

This package is the only place where ``sys.platform`` is tested.
"""

from __future__ import annotations

import sys

from m6t.platform.base import Backend, PlatformError


def default_backend() -> Backend:
    """The backend for the running OS."""
    if sys.platform == "linux":
        from m6t.platform.linux.backend import LinuxBackend

        return LinuxBackend()
    if sys.platform == "darwin":
        from m6t.platform.darwin.backend import DarwinBackend

        return DarwinBackend()
    if sys.platform == "win32":
        from m6t.platform.windows.backend import WindowsBackend

        return WindowsBackend()
    raise PlatformError(
        f"m6t has no backend for {sys.platform} in this release",
        hint="m6t runs on Linux, macOS and Windows",
    )
