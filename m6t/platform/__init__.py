"""OS backends behind one interface (:mod:`m6t.platform.base`).

This package is the only place where ``sys.platform`` is tested; the functions below choose what serves
the running OS (the backend, the control channel and its default address) or refuse it (the gateway's).
"""

from __future__ import annotations

import sys

from m6t.platform.base import (
    Backend,
    ControlTransport,
    DesktopAuthority,
    DirectServiceHost,
    PlatformError,
    ServiceHost,
)


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


def control_transport() -> ControlTransport:
    """The channel between the helper and its local clients on the running OS, for both ends."""
    if sys.platform in ("linux", "darwin"):
        from m6t.platform.unix_control import UnixSocketTransport

        return UnixSocketTransport()
    if sys.platform == "win32":
        from m6t.platform.windows.control import NamedPipeTransport

        return NamedPipeTransport()
    raise PlatformError(
        f"m6t has no control channel for {sys.platform} in this release",
        hint="the helper's control API runs on Linux, macOS and Windows",
    )


def default_control_address() -> str:
    """Where the helper listens unless told otherwise (the installers pass the same)."""
    if sys.platform == "win32":
        from m6t.platform.windows.control import DEFAULT_PIPE_NAME

        return DEFAULT_PIPE_NAME
    from m6t.platform.unix_control import DEFAULT_SOCKET_PATH

    return DEFAULT_SOCKET_PATH


# --------------------------------------------------------------------------- the desktop's authority


def desktop_authority() -> DesktopAuthority | None:
    """Who besides the client's own policy decides what a local user may do: polkit on Linux; ``None``
    (root/Administrators and the operator group alone) elsewhere.  Whether polkit actually runs is found
    out when it is asked."""
    if sys.platform == "linux":
        from m6t.platform.linux.polkit import PolkitAuthority

        return PolkitAuthority()
    return None


def service_host(*, service_manager: bool) -> ServiceHost:
    """How the helper's process runs: under Windows' Service Control Manager (``service_manager``, the
    installer's ``--service``), or directly (a console, systemd, launchd)."""
    if not service_manager:
        return DirectServiceHost()
    if sys.platform == "win32":
        from m6t.platform.windows.service import WindowsServiceHost, native_service_api

        return WindowsServiceHost(native_service_api())
    raise PlatformError(
        "--service is for Windows' Service Control Manager",
        hint="systemd and launchd run m6t-helper --foreground",
    )


def require_linux(program: str) -> None:
    """For what runs on Linux only (the gateway): a :class:`PlatformError` on any other system, before
    anything Linux-only is imported."""
    if sys.platform != "linux":
        raise PlatformError(f"{program} runs on Linux only, not on {sys.platform}")
