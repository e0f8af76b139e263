"""Start at login: each backend writes only in the user's profile and undoes what it wrote."""

from __future__ import annotations

import os
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
    backend = LaunchAgentAutostart(
        tmp_path, ["/Applications/m6t.app/Contents/MacOS/m6t-tray", "--x", "<&>"], system_directory=tmp_path / "none"
    )
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


LAUNCHCTL = r"""#!/bin/bash
# launchctl, as far as the tray uses it: the disabled overrides of each domain, kept in $STATE/<domain>.
echo "launchctl $*" >>"$STATE/calls"
case "$1" in
  enable | disable)
    domain="${2%/*}"; label="${2##*/}"; file="$STATE/$(echo "$domain" | tr / _)"
    touch "$file"; grep -vx "$label" "$file" >"$file.new"; mv "$file.new" "$file"
    if [ "$1" = disable ]; then echo "$label" >>"$file"; fi ;;
  print-disabled)
    file="$STATE/$(echo "$2" | tr / _)"
    echo "disabled services = {"
    echo "	\"com.apple.example\" => $ENABLED_WORD"
    if [ -f "$file" ]; then while read -r label; do echo "	\"$label\" => $DISABLED_WORD"; done <"$file"; fi
    echo "}" ;;
  *) echo "launchctl stand-in: $1 is not emulated" >&2; exit 64 ;;
esac
"""


@pytest.fixture(params=[("disabled", "enabled"), ("true", "false")], ids=["macos-11+", "older"])
def launchctl_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    stubs, state = tmp_path / "bin", tmp_path / "state"
    stubs.mkdir()
    state.mkdir()
    (stubs / "launchctl").write_text(LAUNCHCTL)
    (stubs / "launchctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{stubs}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STATE", str(state))
    monkeypatch.setenv("DISABLED_WORD", request.param[0])
    monkeypatch.setenv("ENABLED_WORD", request.param[1])
    return state


def test_the_checkbox_controls_the_agent_the_pkg_installed(tmp_path: Path, launchctl_on_path: Path) -> None:
    system = tmp_path / "Library" / "LaunchAgents"
    system.mkdir(parents=True)
    (system / "org.m6t.tray.plist").write_bytes(plistlib.dumps({"Label": "org.m6t.tray", "RunAtLoad": True}))
    home_agents = tmp_path / "home" / "LaunchAgents"
    home_agents.mkdir(parents=True)
    # What an older tray wrote: a second job of the same label, which the system's override would not reach.
    (home_agents / "org.m6t.tray.plist").write_text("old")
    backend = LaunchAgentAutostart(home_agents, ["/x/m6t-tray"], system_directory=system, uid=501)
    assert backend.launchctl.startswith(str(tmp_path / "bin"))
    assert backend.is_enabled()  # installed, no override: it runs at login

    backend.set_enabled(False)
    assert not backend.is_enabled()
    assert not (home_agents / "org.m6t.tray.plist").exists()
    assert (launchctl_on_path / "gui_501").read_text().split() == ["org.m6t.tray"]
    backend.set_enabled(False)  # idempotent
    assert not backend.is_enabled()

    backend.set_enabled(True)
    assert backend.is_enabled()
    assert (launchctl_on_path / "gui_501").read_text().split() == []
    calls = (launchctl_on_path / "calls").read_text().splitlines()
    assert "launchctl disable gui/501/org.m6t.tray" in calls
    assert "launchctl enable gui/501/org.m6t.tray" in calls
    assert not any("system" in call for call in calls)  # never the system domain (root's), only the user's
    assert (system / "org.m6t.tray.plist").exists()  # the pkg's file is never touched


def test_without_the_pkg_the_users_own_agent_is_used(tmp_path: Path, launchctl_on_path: Path) -> None:
    backend = LaunchAgentAutostart(tmp_path / "agents", ["/x/m6t-tray"], system_directory=tmp_path / "none", uid=501)
    assert not backend.is_enabled()
    backend.set_enabled(True)
    assert backend.is_enabled() and (tmp_path / "agents" / "org.m6t.tray.plist").is_file()
    backend.set_enabled(False)
    assert not backend.is_enabled()
    assert not (launchctl_on_path / "calls").exists()


def test_a_launchctl_failure_is_an_oserror(tmp_path: Path, launchctl_on_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    (tmp_path / "sys" / "org.m6t.tray.plist").write_text("x")
    backend = LaunchAgentAutostart(
        tmp_path, ["/x"], system_directory=tmp_path / "sys", uid=501, launchctl=str(tmp_path / "missing")
    )
    assert backend.is_enabled()  # cannot ask: the installed agent's default
    with pytest.raises(OSError, match="launchctl disable"):
        backend.set_enabled(False)
