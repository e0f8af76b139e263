"""The installers agree with the code and with each other (pure: files are parsed, nothing is built).

What the tray tells users to type (``systemctl start m6t-helper``, ``launchctl kickstart
system/org.m6t.helper``, ``sc start m6t-helper``) must name what the installers register; the arguments
each installer starts the helper with must be accepted by the helper's own argument parser; the paths
the Debian maintainer scripts and the macOS package scripts use must be where the build scripts put
files.
"""

from __future__ import annotations

import configparser
import plistlib
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from m6t.client.api import schema
from m6t.client.api.host import OsFamily
from m6t.client.config import DEFAULT_OPERATOR_GROUP
from m6t.client.helper.entry import build_parser as helper_parser
from m6t.gateway.config import DEFAULT_KEY_FILE
from m6t.ui.state import helper_start_hint

ROOT = Path(__file__).resolve().parents[2]
INSTALLERS = ROOT / "installers"
LINUX = INSTALLERS / "linux"
DEBIAN = LINUX / "debian"
MACOS = INSTALLERS / "macos"
NSIS = INSTALLERS / "windows" / "m6t.nsi"
PYINSTALLER = INSTALLERS / "pyinstaller"
BUILD_DEB = ROOT / "scripts" / "build-deb.sh"


def console_scripts() -> dict[str, str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        scripts: dict[str, str] = tomllib.load(f)["project"]["scripts"]
    return scripts


def unit(name: str) -> configparser.ConfigParser:
    # systemd repeats keys (SystemCallFilter=) and uses % for its own specifiers.
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((LINUX / name).read_text(encoding="utf-8"))
    return parser


def desktop_entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


def plist(name: str) -> dict[str, Any]:
    with (MACOS / name).open("rb") as f:
        loaded: dict[str, Any] = plistlib.load(f)
    return loaded


def helper_args(argv: list[str]) -> dict[str, Any]:
    """The helper's parsed options for ``argv`` (without the program); fails the test if it refuses them."""
    try:
        return vars(helper_parser().parse_args(argv))
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"m6t-helper refuses {argv}: exit {exc.code}")


def hint_command(family: OsFamily) -> list[str]:
    """The command the tray's hint tells users on ``family`` to run to start the helper."""
    hint = helper_start_hint(family)
    found = re.search(r"(?:run|with): (.+)$", hint)
    assert found, hint
    return shlex.split(found.group(1))


# ----------------------------------------------------------------------------------------- Linux


def test_systemd_unit_is_the_one_the_tray_names() -> None:
    assert hint_command(OsFamily.LINUX) == ["sudo", "systemctl", "start", "m6t-helper"]
    assert (LINUX / "m6t-helper.service").is_file()


def test_helper_unit_runs_the_console_script_with_the_documented_flags() -> None:
    service = unit("m6t-helper.service")["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/usr/bin/m6t-helper"
    assert Path(argv[0]).name in console_scripts()
    assert argv[1:] == ["--config", "/etc/m6t/client.toml", "--foreground"]
    options = helper_args(argv[1:])
    assert options["foreground"] is True
    assert options["socket"] == schema.DEFAULT_SOCKET_PATH
    assert str(options["state_dir"]) == schema.DEFAULT_STATE_DIR


def test_helper_unit_provides_the_directories_the_helper_uses() -> None:
    service = unit("m6t-helper.service")["Service"]
    # RuntimeDirectory=m6t is /run/m6t, where the tray and the CLI look for the socket by default
    # (the default says /var/run, which systemd hosts link to /run, so that it also holds on macOS).
    default_dir = Path(schema.DEFAULT_SOCKET_PATH).parent
    assert default_dir.parts[:3] == ("/", "var", "run")
    assert Path("/run", service["RuntimeDirectory"]) == Path("/run", *default_dir.parts[3:])
    assert service["RuntimeDirectoryMode"] == "0755"
    assert Path("/var/lib", service["StateDirectory"]) == Path(schema.DEFAULT_STATE_DIR)
    # ProtectSystem=strict makes /etc read-only: the helper rewrites its configuration there.
    assert service["ProtectSystem"] == "strict"
    assert "/etc/m6t" in service["ReadWritePaths"].split()


def test_helper_unit_keeps_what_the_tunnel_needs_and_little_else() -> None:
    service = unit("m6t-helper.service")["Service"]
    assert "User" not in service  # root: the TUN device, addresses, routes
    assert set(service["CapabilityBoundingSet"].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_CHOWN", "CAP_FOWNER"}
    assert service["DeviceAllow"] == "/dev/net/tun rw"
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[hardening] == "yes", hardening
    assert service["Restart"] == "on-failure"
    assert unit("m6t-helper.service")["Install"]["WantedBy"] == "multi-user.target"


def test_gateway_unit_runs_the_console_script() -> None:
    service = unit("m6t-gateway.service")["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/usr/bin/m6t-gateway"
    assert Path(argv[0]).name in console_scripts()
    assert argv[1:] == ["--config", "/etc/m6t/gateway.toml", "--key-file", "/run/m6t-gateway/keys.toml"]


@pytest.mark.parametrize("name", ["m6t-tray.desktop", "m6t-tray-autostart.desktop"])
def test_desktop_entries_start_the_tray(name: str) -> None:
    entry = desktop_entry(LINUX / name)
    assert entry["Type"] == "Application"
    assert entry["Name"]
    assert shlex.split(entry["Exec"])[0] == "m6t-tray"
    assert "m6t-tray" in console_scripts()
    # The icon theme name build-deb.sh installs (hicolor/<size>/apps/m6t.png and scalable/apps/m6t.svg).
    assert entry["Icon"] == "m6t"
    assert (ROOT / "assets" / "m6t.svg").is_file()
    assert sorted(ROOT.glob("assets/png/m6t-*.png"))
    assert entry["Terminal"] == "false"


def test_autostart_entry() -> None:
    entry = desktop_entry(LINUX / "m6t-tray-autostart.desktop")
    assert entry["X-GNOME-Autostart-enabled"] == "true"
    # Installed under the name the tray's own per-user autostart entry uses (m6t.ui.autostart.APP_ID),
    # so that a user's entry overrides the system one, as the XDG autostart rules have it.
    source = (ROOT / "m6t" / "ui" / "autostart.py").read_text(encoding="utf-8")
    app_id = re.search(r'^APP_ID: Final = "([^"]+)"', source, re.MULTILINE)
    assert app_id
    script = BUILD_DEB.read_text(encoding="utf-8")
    assert f'"$stage/etc/xdg/autostart/{app_id.group(1)}.desktop"' in script
    assert '"$stage/usr/share/applications/m6t-tray.desktop"' in script


def test_maintainer_scripts_create_the_operator_group_and_the_configuration() -> None:
    postinst = (DEBIAN / "m6t" / "postinst").read_text(encoding="utf-8")
    with (LINUX / "client.example.toml").open("rb") as f:
        group = tomllib.load(f)["helper"]["operator_group"]
    assert group == DEFAULT_OPERATOR_GROUP
    assert f"addgroup --system --quiet {group}" in postinst
    assert "CONFIG=/etc/m6t/client.toml" in postinst
    # The example is installed where postinst copies it from.
    example = re.search(r"^EXAMPLE=(\S+)$", postinst, re.MULTILINE)
    assert example
    assert f'"$stage{example.group(1)}"' in BUILD_DEB.read_text(encoding="utf-8")
    # Reloading and starting only where systemd runs.
    assert "[ -d /run/systemd/system ]" in postinst
    postrm = (DEBIAN / "m6t" / "postrm").read_text(encoding="utf-8")
    assert f"delgroup --system --quiet {group}" in postrm


def test_gateway_maintainer_scripts_copy_the_example_they_ship() -> None:
    postinst = (DEBIAN / "m6t-gateway" / "postinst").read_text(encoding="utf-8")
    example = re.search(r"^EXAMPLE=(\S+)$", postinst, re.MULTILINE)
    assert example
    assert f'"$stage{example.group(1)}"' in BUILD_DEB.read_text(encoding="utf-8")
    # Never enabled nor started by the package (it would route the example's prefixes); an
    # administrator's "enable" is kept across upgrades, as dh_installsystemd --no-enable does.
    assert 'deb-systemd-helper debian-installed "$UNIT"' in postinst
    assert "deb-systemd-invoke start" not in postinst
    # Purge removes the key file m6t-gateway keys writes by default.
    postrm = (DEBIAN / "m6t-gateway" / "postrm").read_text(encoding="utf-8")
    purge = postrm[postrm.index('if [ "$1" = "purge" ]') :]
    assert re.search(rf"^\s*rm -f {re.escape(DEFAULT_KEY_FILE)} ", purge, re.MULTILINE)


# ----------------------------------------------------------------------------------------- macOS


def test_launch_daemon_is_the_one_the_tray_names() -> None:
    daemon = plist("org.m6t.helper.plist")
    command = hint_command(OsFamily.MACOS)
    assert command[:3] == ["sudo", "launchctl", "kickstart"]
    assert command[3] == f"system/{daemon['Label']}"
    assert daemon["Label"] == "org.m6t.helper"


def test_launch_daemon_runs_the_helper_with_the_documented_arguments() -> None:
    daemon = plist("org.m6t.helper.plist")
    support = "/Library/Application Support/m6t"
    assert daemon["ProgramArguments"] == [
        f"{support}/m6t-helper",
        "--config",
        f"{support}/client.toml",
        "--socket",
        "/var/run/m6t/helper.sock",
        "--state-dir",
        f"{support}/state",
        "--foreground",
    ]
    helper_args(daemon["ProgramArguments"][1:])
    assert daemon["RunAtLoad"] is True
    assert daemon["KeepAlive"]


def test_launch_agent_starts_the_bundled_tray_on_the_helpers_socket() -> None:
    agent = plist("org.m6t.tray.plist")
    daemon = plist("org.m6t.helper.plist")
    assert agent["Label"] == "org.m6t.tray"
    program, *arguments = agent["ProgramArguments"]
    # m6t-tray.spec bundles the tray as m6t.app, whose executable is Contents/MacOS/m6t-tray.
    assert program == "/Applications/m6t.app/Contents/MacOS/m6t-tray"
    spec = (PYINSTALLER / "m6t-tray.spec").read_text(encoding="utf-8")
    assert 'name="m6t.app"' in spec
    assert 'name="m6t-tray"' in spec
    socket = daemon["ProgramArguments"][daemon["ProgramArguments"].index("--socket") + 1]
    assert arguments == ["--socket", socket]
    assert agent["RunAtLoad"] is True


def test_macos_package_installs_the_plists_and_the_group() -> None:
    build = (MACOS / "build-pkg.sh").read_text(encoding="utf-8")
    postinstall = (MACOS / "scripts" / "postinstall").read_text(encoding="utf-8")
    for name in ("org.m6t.helper.plist", "org.m6t.tray.plist"):
        assert name in build
        assert (MACOS / name).is_file()
    assert "launchctl bootstrap system /Library/LaunchDaemons/org.m6t.helper.plist" in postinstall
    assert f'dseditgroup -o create -r "m6t operators" {DEFAULT_OPERATOR_GROUP}' in postinstall
    # The CLI wrapper points the CLI at the socket the LaunchDaemon passes to the helper.
    daemon = plist("org.m6t.helper.plist")
    socket = daemon["ProgramArguments"][daemon["ProgramArguments"].index("--socket") + 1]
    assert f"M6T_SOCKET:={socket}" in (MACOS / "m6t-cli.sh").read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------- Windows


def nsis_defines() -> dict[str, str]:
    return dict(re.findall(r'^!define (\w+) "([^"]*)"$', NSIS.read_text(encoding="utf-8"), re.MULTILINE))


def test_windows_service_is_the_one_the_tray_names() -> None:
    defines = nsis_defines()
    assert hint_command(OsFamily.WINDOWS) == ["sc", "start", defines["SERVICE"]]
    assert defines["SERVICE"] == "m6t-helper"
    # The hint also names it by its display name, as services.msc lists it.
    assert f"\u201c{defines['SERVICE_DISPLAY']}\u201d" in helper_start_hint(OsFamily.WINDOWS)
    script = NSIS.read_text(encoding="utf-8")
    assert "'sc.exe create ${SERVICE} $1'" in script
    assert "'sc.exe delete ${SERVICE}'" in script


def test_windows_service_command_line_is_accepted_by_the_helper() -> None:
    script = NSIS.read_text(encoding="utf-8")
    found = re.search(r"binPath= \"(.+?)\" start= auto", script)
    assert found
    # What sc.exe stores once its own quoting is undone; NSIS variables stand in for the paths.
    command = found.group(1).replace('\\"', '"')
    argv = shlex.split(command.replace("\\", "/"))
    assert argv[0] == "$INSTDIR/m6t-helper.exe"
    options = helper_args(argv[1:])
    # Under the Service Control Manager: the dispatcher, the status and the controls (m6t.platform.windows.service).
    assert options["service"] is True
    assert options["foreground"] is False
    assert str(options["config"]).endswith("client.toml")


def test_windows_installer_bundles_wintun_and_the_tray_autostart() -> None:
    script = NSIS.read_text(encoding="utf-8")
    assert '!if ! /FileExists "${DIST}\\m6t-helper\\wintun.dll"' in script
    # The same Run value the tray's own "start at login" setting uses (m6t.ui.autostart.APP_ID).
    assert nsis_defines()["RUN_VALUE"] == "m6t-tray"
    assert 'WriteRegStr HKCU "${RUN_KEY}" "${RUN_VALUE}"' in script
    assert 'DeleteRegValue HKCU "${RUN_KEY}" "${RUN_VALUE}"' in script
    # The folders the PyInstaller specs produce are the ones the installer replaces and removes.
    assert 'contents_directory="_tray"' in (PYINSTALLER / "m6t-tray.spec").read_text(encoding="utf-8")
    for folder in ("_internal", "_tray"):
        assert script.count(f'RMDir /r "$INSTDIR\\{folder}"') == 2, folder


def nsis_block(start: str, end: str) -> str:
    script = NSIS.read_text(encoding="utf-8")
    begin = script.index(start)
    return script[begin : script.index(end, begin)]


def test_windows_uninstaller_removes_the_service_the_files_and_every_autostart() -> None:
    section = nsis_block('Section "Uninstall"', "SectionEnd")
    # The helper stops first (it takes the tunnel down and removes its Wintun adapter), then goes.
    assert section.index("!insertmacro StopHelperAndTray") < section.index("'sc.exe delete ${SERVICE}'")
    assert "'net.exe stop ${SERVICE}'" in nsis_block("!macro StopHelperAndTray", "!macroend")
    # Every file the installer copies to the top of INSTDIR from the build (the folders are checked above).
    stage = (INSTALLERS / "windows" / "stage_wintun.py").read_text(encoding="utf-8")
    staged = re.findall(r'^(?:DLL|LICENSE) = "([^"]+)"$', stage, re.MULTILINE)
    assert len(staged) == 2
    for name in ["m6t-helper.exe", "m6t.exe", "m6t-tray.exe", *staged, "uninstall.exe"]:
        assert f'Delete "$INSTDIR\\{name}"' in section, name
    assert 'Delete "$SMPROGRAMS\\m6t.lnk"' in section
    # The tray's Run value of every user: the uninstalling one, those logged on, and the others' hives.
    assert "Call un.RemoveEveryRunValue" in section
    every = nsis_block("Function un.RemoveEveryRunValue", "FunctionEnd")
    assert 'DeleteRegValue HKCU "${RUN_KEY}" "${RUN_VALUE}"' in every
    assert 'DeleteRegValue HKU "$R1\\${RUN_KEY}" "${RUN_VALUE}"' in every
    assert 'DeleteRegValue HKU "${BORROWED_HIVE}\\${RUN_KEY}" "${RUN_VALUE}"' in every
    assert every.count("reg.exe load") == every.count("reg.exe unload") == 1


def test_windows_installer_is_made_for_the_builds_processor() -> None:
    build = (INSTALLERS / "windows" / "build-installer.sh").read_text(encoding="utf-8")
    assert '"$here/stage_wintun.py" --check' in build
    assert '-DARCH="$arch"' in build
    on_init = nsis_block("Function .onInit", "FunctionEnd")
    assert "${IsNativeAMD64}" in on_init
    assert "${IsNativeARM64}" in on_init


# ----------------------------------------------------------------------------------- PyInstaller


@pytest.mark.parametrize(
    ("launcher", "script"),
    [("launch_m6t.py", "m6t"), ("launch_m6t_helper.py", "m6t-helper"), ("launch_m6t_tray.py", "m6t-tray")],
)
def test_pyinstaller_launchers_run_the_console_scripts(launcher: str, script: str) -> None:
    module, function = console_scripts()[script].split(":")
    source = (PYINSTALLER / launcher).read_text(encoding="utf-8")
    assert f"from {module} import {function}\n" in source
    assert f"raise SystemExit({function}())" in source


@pytest.mark.parametrize("spec", ["m6t-helper.spec", "m6t-tray.spec"])
def test_pyinstaller_specs_are_python_and_name_existing_launchers(spec: str) -> None:
    source = (PYINSTALLER / spec).read_text(encoding="utf-8")
    compile(source, spec, "exec")
    for launcher in re.findall(r'"(launch_\w+\.py)"', source):
        assert (PYINSTALLER / launcher).is_file(), launcher


# ----------------------------------------------------------------------------------------- shell


def shell_scripts() -> list[Path]:
    scripts = [ROOT / "scripts" / "build-deb.sh", ROOT / "scripts" / "build-pyinstaller.sh"]
    scripts += sorted(INSTALLERS.rglob("*.sh"))
    scripts += sorted((MACOS / "scripts").iterdir())
    scripts += sorted(p for p in DEBIAN.glob("*/*") if p.name in ("postinst", "prerm", "postrm"))
    return scripts


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_are_strict_and_parse(script: Path) -> None:
    text = script.read_text(encoding="utf-8")
    shebang = text.splitlines()[0]
    assert shebang in ("#!/bin/sh", "#!/bin/bash", "#!/usr/bin/env bash"), shebang
    if shebang == "#!/bin/sh":
        # POSIX sh has no pipefail; Debian's maintainer scripts are "set -e" by convention.
        assert re.search(r"^set -eu?$", text, re.MULTILINE), "stops at the first error"
    else:
        assert "\nset -euo pipefail\n" in text
    shell = "sh" if shebang == "#!/bin/sh" else "bash"
    checked = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    if sys.platform != "win32":
        assert script.stat().st_mode & 0o111, "not executable"


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is missing (apt-get install shellcheck; scripts/setup.sh does)")
    checked = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout
