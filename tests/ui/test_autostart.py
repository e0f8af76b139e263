"""Start at login: each backend writes only in the user's profile and undoes what it wrote."""

from __future__ import annotations

import plistlib
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from m6t.client.api.host import OsFamily
from m6t.ui.autostart import (
    LaunchAgentAutostart,
    NoAutostart,
    RunKeyAutostart,
    XdgAutostart,
    autostart_for,
    tray_command,
)


def test_xdg_desktop_entry(tmp_path: Path) -> None:
    backend = XdgAutostart(tmp_path / "autostart", ["/opt/m6t/bin/m6t-tray", "--socket", "/run/m 6t.sock"])
    assert backend.supported and not backend.is_enabled()
    backend.set_enabled(True)
    text = (tmp_path / "autostart" / "m6t-tray.desktop").read_text()
    assert "[Desktop Entry]" in text
    assert "Exec=/opt/m6t/bin/m6t-tray --socket '/run/m 6t.sock'" in text
    assert backend.is_enabled()
    backend.set_enabled(False)
    assert not backend.is_enabled()
    backend.set_enabled(False)  # idempotent


def test_launch_agent_plist(tmp_path: Path) -> None:
    backend = LaunchAgentAutostart(tmp_path, ["/Applications/m6t.app/Contents/MacOS/m6t-tray", "--x", "<&>"])
    backend.set_enabled(True)
    plist = plistlib.loads((tmp_path / "org.m6t.tray.plist").read_bytes())
    assert plist["ProgramArguments"] == ["/Applications/m6t.app/Contents/MacOS/m6t-tray", "--x", "<&>"]
    assert plist["RunAtLoad"] is True
    backend.set_enabled(False)
    assert not backend.is_enabled()


def test_run_key_through_qsettings(tmp_path: Path) -> None:
    settings = QSettings(str(tmp_path / "run.ini"), QSettings.Format.IniFormat)
    backend = RunKeyAutostart(["C:\\Program Files\\m6t\\m6t-tray.exe"], settings)
    backend.set_enabled(True)
    assert backend.is_enabled()
    assert settings.value("m6t-tray") == '"C:\\Program Files\\m6t\\m6t-tray.exe"'
    backend.set_enabled(False)
    assert not backend.is_enabled()


def test_backend_chosen_by_os_family(tmp_path: Path) -> None:
    assert isinstance(autostart_for(OsFamily.LINUX, ["x"]), XdgAutostart)
    assert isinstance(autostart_for(OsFamily.BSD, ["x"]), XdgAutostart)
    assert isinstance(autostart_for(OsFamily.MACOS, ["x"]), LaunchAgentAutostart)
    unknown = autostart_for(None, ["x"])
    assert isinstance(unknown, NoAutostart) and not unknown.supported and not unknown.is_enabled()


def test_tray_command_is_runnable() -> None:
    command = tray_command()
    assert command[0].endswith("m6t-tray") or command[1:] == ["-m", "m6t.ui"]


def test_a_frozen_tray_starts_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/Applications/m6t.app/Contents/MacOS/m6t-tray")
    assert tray_command() == ["/Applications/m6t.app/Contents/MacOS/m6t-tray"]


def test_a_system_wide_entry_shows_as_on_and_is_turned_off_per_user(tmp_path: Path) -> None:
    system = tmp_path / "etc-xdg-autostart"
    system.mkdir()
    (system / "m6t-tray.desktop").write_text("[Desktop Entry]\nType=Application\nExec=m6t-tray\n")
    backend = XdgAutostart(tmp_path / "autostart", ["/usr/bin/m6t-tray"], [system])
    assert backend.is_enabled()
    backend.set_enabled(False)
    assert not backend.is_enabled()
    assert "Hidden=true" in (tmp_path / "autostart" / "m6t-tray.desktop").read_text()
    assert (system / "m6t-tray.desktop").is_file()  # never touched
    backend.set_enabled(True)
    assert backend.is_enabled()
    assert not (tmp_path / "autostart" / "m6t-tray.desktop").exists()
