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
    raise PlatformError(
        f"m6t has no backend for {sys.platform} in this release",
        hint="run the m6t helper on Linux; the macOS and Windows backends are not built yet",
    )
