"""Start the tray at login: a per-user desktop setting, so it lives here and needs no privilege.

Each OS family has its own mechanism; the backend is looked up by the family the platform names (through
:mod:`m6t.client.api.host`), so nothing here tests the OS.  Every backend only writes in the user's own profile.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Protocol
from xml.sax.saxutils import escape

from PySide6.QtCore import QSettings, QStandardPaths

from m6t.client.api.host import OsFamily

APP_ID: Final = "m6t-tray"


class Autostart(Protocol):
    """Whether the tray starts at login; ``set_enabled`` raises :class:`OSError` when it cannot write."""

    @property
    def supported(self) -> bool: ...

    def is_enabled(self) -> bool: ...

    def set_enabled(self, enabled: bool) -> None: ...


def tray_command() -> list[str]:
    """How to start this tray again: the frozen executable itself, its console script when installed, else
    the module run by this interpreter."""
    if getattr(sys, "frozen", False):
        # A PyInstaller build: the executable is the tray, and it takes no "-m".
        return [sys.executable]
    script = shutil.which(APP_ID)
    if script:
        return [script]
    return [sys.executable, "-m", "m6t.ui"]


class XdgAutostart:
    """freedesktop.org autostart: a desktop entry in ``$XDG_CONFIG_HOME/autostart``.

    A package may also install a system-wide entry (``/etc/xdg/autostart``).  By the autostart spec the
    user's entry of the same name overrides it, and ``Hidden=true`` there turns it off: so the checkbox
    shows the system entry as on, and turning it off writes a hiding entry instead of deleting nothing.
    """

    def __init__(self, directory: Path, command: Sequence[str], system_dirs: Sequence[Path] = ()) -> None:
        self.path = directory / f"{APP_ID}.desktop"
        self.command = list(command)
        self.system_entries = [d / f"{APP_ID}.desktop" for d in system_dirs]

    @property
    def supported(self) -> bool:
        return True

    def _system_entry(self) -> bool:
        return any(entry.is_file() for entry in self.system_entries)

    def is_enabled(self) -> bool:
        if self.path.is_file():
            text = self.path.read_text(encoding="utf-8", errors="replace").lower()
            return "hidden=true" not in text and "x-gnome-autostart-enabled=false" not in text
        return self._system_entry()

    def set_enabled(self, enabled: bool) -> None:
        if enabled and self._system_entry():
            self.path.unlink(missing_ok=True)  # the system entry applies again
            return
        if not enabled and not self._system_entry():
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(
            "[Desktop Entry]\n"
            "Type=Application\n"
            "Name=m6t tray\n"
            "Comment=Status and control of the m6t IPv6 tunnel\n"
            f"Exec={shlex.join(self.command)}\n"
            "Icon=m6t\n"
            "Terminal=false\n" + ("X-GNOME-Autostart-enabled=true\n" if enabled else "Hidden=true\n"),
            encoding="utf-8",
        )


class LaunchAgentAutostart:
    """macOS: the tray's launchd agent, as the pkg installed it or, without the pkg, one of the user's own.

    The pkg installs ``/Library/LaunchAgents/org.m6t.tray.plist`` for every user; a user cannot (and must
    not) remove it, and a per-user plist of the same label does not override it (launchd would hold two jobs
    of one label).  What launchd offers each user instead is an override of that job in the user's own login
    domain, ``launchctl disable|enable gui/<uid>/org.m6t.tray``.  launchctl(1): "gui/<uid>/[service-name]
    Another form of the login specifier ... this specifier targets the domain based on which user it is
    associated with"; "disable service-target: Disables the specified service in the specified domain. Once
    a service is disabled, it cannot be loaded in the specified domain until it is once again enabled. This
    state persists across boots of the device."  So the checkbox writes that override when the system agent
    is there, takes effect at the next login, and leaves a running tray alone.  ``launchctl print-disabled
    gui/<uid>`` reads it back (``"label" => disabled`` on current macOS, ``=> true`` on older ones).
    launchd has no other interface for these overrides (SMAppService only serves agents inside the app's
    own bundle), hence the one command run here, with a fixed argument vector and no shell.

    Without the pkg's agent (a tray installed otherwise), the user's own plist in ``~/Library/LaunchAgents``
    does the job, as before.
    """

    LABEL: Final = "org.m6t.tray"
    SYSTEM_AGENTS: Final = Path("/Library/LaunchAgents")

    def __init__(
        self,
        directory: Path,
        command: Sequence[str],
        *,
        system_directory: Path = SYSTEM_AGENTS,
        uid: int | None = None,
        launchctl: str | None = None,
    ) -> None:
        self.path = directory / f"{self.LABEL}.plist"
        self.system_agent = system_directory / f"{self.LABEL}.plist"
        self.command = list(command)
        self.uid = uid if uid is not None else _uid()
        self.launchctl = launchctl or shutil.which("launchctl") or "/bin/launchctl"

    @property
    def supported(self) -> bool:
        return True

    def is_enabled(self) -> bool:
        if self.system_agent.is_file():
            return not self._disabled_in_login_domain()
        return self.path.is_file()

    def set_enabled(self, enabled: bool) -> None:
        if self.system_agent.is_file():
            # A per-user plist of the same label (an older tray wrote one) would fight the system's agent.
            self.path.unlink(missing_ok=True)
            self._launchctl("enable" if enabled else "disable", f"gui/{self.uid}/{self.LABEL}")
            return
        if not enabled:
            self.path.unlink(missing_ok=True)
            return
        arguments = "".join(f"    <string>{escape(part)}</string>\n" for part in self.command)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
            '<plist version="1.0">\n<dict>\n'
            f"  <key>Label</key><string>{self.LABEL}</string>\n"
            f"  <key>ProgramArguments</key>\n  <array>\n{arguments}  </array>\n"
            "  <key>RunAtLoad</key><true/>\n"
            "</dict>\n</plist>\n",
            encoding="utf-8",
        )

    def _disabled_in_login_domain(self) -> bool:
        try:
            output = self._launchctl("print-disabled", f"gui/{self.uid}")
        except OSError:
            return False  # launchd cannot say: the installed agent's own default (it runs at login) holds
        for line in output.splitlines():
            label, arrow, state = line.strip().partition("=>")
            if arrow and label.strip().strip('"') == self.LABEL:
                return state.strip().rstrip(",") in ("disabled", "true")
        return False

    def _launchctl(self, *arguments: str) -> str:
        try:
            done = subprocess.run([self.launchctl, *arguments], capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise OSError(f"launchctl {arguments[0]}: {exc}") from exc
        if done.returncode != 0:
            detail = done.stderr.strip() or f"exit status {done.returncode}"
            raise OSError(f"launchctl {' '.join(arguments)}: {detail}")
        return done.stdout


def _uid() -> int:
    getuid: Callable[[], int] | None = getattr(os, "getuid", None)
    return getuid() if getuid is not None else -1


class RunKeyAutostart:
    """Windows: a value under the user's ``Run`` key, written through QSettings' registry format."""

    KEY: Final = "HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run"

    def __init__(self, command: Sequence[str], settings: QSettings | None = None) -> None:
        self.command = list(command)
        self.settings = settings or QSettings(self.KEY, QSettings.Format.NativeFormat)

    @property
    def supported(self) -> bool:
        return True

    def is_enabled(self) -> bool:
        return self.settings.contains(APP_ID)

    def set_enabled(self, enabled: bool) -> None:
        if enabled:
            self.settings.setValue(APP_ID, " ".join(f'"{part}"' for part in self.command))
        else:
            self.settings.remove(APP_ID)
        self.settings.sync()
        if self.settings.status() is not QSettings.Status.NoError:
            raise OSError("the Windows registry refused the change")


class NoAutostart:
    """A desktop we do not know: the checkbox is shown disabled rather than pretending to work."""

    @property
    def supported(self) -> bool:
        return False

    def is_enabled(self) -> bool:
        return False

    def set_enabled(self, enabled: bool) -> None:
        raise OSError("starting at login is not supported on this system")


def _xdg_system_autostart_dirs() -> list[Path]:
    # $XDG_CONFIG_DIRS, colon-separated, /etc/xdg when unset (XDG Base Directory spec).
    dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    return [Path(d) / "autostart" for d in dirs.split(":") if d]


def _xdg(command: list[str]) -> Autostart:
    return XdgAutostart(_config_home() / "autostart", command, _xdg_system_autostart_dirs())


def _config_home() -> Path:
    # QStandardPaths honours $XDG_CONFIG_HOME, which the autostart spec also follows.
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericConfigLocation))


_BACKENDS: Final[dict[OsFamily, Callable[[list[str]], Autostart]]] = {
    OsFamily.LINUX: _xdg,
    OsFamily.BSD: _xdg,
    OsFamily.MACOS: lambda command: LaunchAgentAutostart(Path.home() / "Library" / "LaunchAgents", command),
    OsFamily.WINDOWS: RunKeyAutostart,
}


def autostart_for(family: OsFamily | None, command: Sequence[str] | None = None) -> Autostart:
    """The backend for an OS ``family`` (``None``: one whose mechanism m6t does not know)."""
    factory = _BACKENDS.get(family) if family is not None else None
    if factory is None:
        return NoAutostart()
    return factory(list(command) if command is not None else tray_command())
