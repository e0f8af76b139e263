"""The macOS package's payload and scripts, checked here without a Mac.

``installers/macos/build-pkg.sh --stage`` lays out the payload and the scripts exactly as it gives them to
pkgbuild, from a PyInstaller output of stand-ins (files with the names and modes scripts/build-pyinstaller.sh
makes; pkgbuild itself runs in the release workflow).  The payload is then copied into a scratch root, as
Installer would lay it on the volume, and the real preinstall, postinstall and uninstall.sh run there, each
twice.  The macOS commands they call (launchctl, dseditgroup, pkgutil, BSD stat of /dev/console, and id)
are stand-ins put first on PATH by this test only; the launchctl and dseditgroup stand-ins keep state and
fail as the real ones do (bootstrap of a loaded job, bootout of a missing one), so a script that is not
idempotent fails here.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from m6t.client.api import schema
from m6t.client.helper.entry import build_parser as helper_parser
from m6t.platform.unix_control import DEFAULT_SOCKET_PATH as UNIX_SOCKET_PATH

ROOT = Path(__file__).resolve().parents[2]
MACOS = ROOT / "installers" / "macos"
SUPPORT = "Library/Application Support/m6t"
DAEMON = "Library/LaunchDaemons/org.m6t.helper.plist"
AGENT = "Library/LaunchAgents/org.m6t.tray.plist"
CONSOLE_USER, CONSOLE_UID = "alice", 501

STUBS = {
    "launchctl": r"""#!/bin/bash
# launchctl: loaded jobs are files in $STATE/launchd, named domain/label with "/" as "_".
echo "launchctl $*" >>"$STATE/calls"
mkdir -p "$STATE/launchd"
case "$1" in
  enable | disable) exit 0 ;;
  bootstrap)
    job="$STATE/launchd/$(echo "$2/$(basename "$3" .plist)" | tr / _)"
    if [ -e "$job" ]; then echo "Bootstrap failed: 5: Input/output error" >&2; exit 5; fi
    touch "$job" ;;
  bootout)
    job="$STATE/launchd/$(echo "$2" | tr / _)"
    if [ ! -e "$job" ]; then echo "Boot-out failed: 3: No such process" >&2; exit 3; fi
    rm "$job" ;;
  *) echo "launchctl stand-in: $1 is not emulated" >&2; exit 64 ;;
esac
""",
    "dseditgroup": r"""#!/bin/bash
# dseditgroup -o read|create|edit|delete ... GROUP: a group is a file of member names in $STATE/groups.
echo "dseditgroup $*" >>"$STATE/calls"
mkdir -p "$STATE/groups"
group="$STATE/groups/${*: -1}"
case "$2" in
  read) [ -e "$group" ] || exit 56 ;;
  create) if [ -e "$group" ]; then exit 56; fi; touch "$group" ;;
  edit)
    [ -e "$group" ] || exit 56
    [ "$3" = -a ] || exit 64
    grep -qx "$4" "$group" || echo "$4" >>"$group" ;;
  delete) [ -e "$group" ] || exit 56; rm "$group" ;;
  *) exit 64 ;;
esac
""",
    "pkgutil": """#!/bin/bash
echo "pkgutil $*" >>"$STATE/calls"
""",
    "stat": f"""#!/bin/bash
# BSD stat of the console's owner; anything else goes to the real stat.
case "$*" in
  "-f %Su /dev/console") echo {CONSOLE_USER} ;;
  "-f %u /dev/console") echo {CONSOLE_UID} ;;
  *) exec /usr/bin/stat "$@" ;;
esac
""",
    "id": """#!/bin/bash
# Installer and sudo run the scripts as root.
if [ "$*" = -u ]; then echo 0; else exec /usr/bin/id "$@"; fi
""",
}


def stand_in_dist(where: Path) -> Path:
    """A PyInstaller output with the layout scripts/build-pyinstaller.sh makes on macOS, of stand-ins."""
    dist = where / "pyinstaller"
    helper, app = dist / "m6t-helper", dist / "m6t.app" / "Contents"
    (helper / "_internal").mkdir(parents=True)
    (app / "MacOS").mkdir(parents=True)
    for program in (helper / "m6t-helper", helper / "m6t", app / "MacOS" / "m6t-tray"):
        program.write_text("#!/bin/sh\necho stand-in\n")
        program.chmod(0o755)
    (helper / "_internal" / "libpython3.12.dylib").write_text("stand-in\n")
    (app / "Info.plist").write_bytes(plistlib.dumps({"CFBundleIdentifier": "org.m6t.tray"}))
    return dist


def tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root``: its mode and, for files, its content."""
    found: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        found[path.relative_to(root).as_posix()] = (mode, path.read_bytes() if stat.S_ISREG(mode) else None)
    return found


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("pkg")
    dist = stand_in_dist(work)
    done = subprocess.run(
        ["bash", str(MACOS / "build-pkg.sh"), "--dist", str(dist), "--stage", str(work / "stage")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(work / "stage")
    return work / "stage"


def launchd_plist(staged: Path, name: str) -> dict[str, Any]:
    with (staged / "root" / name).open("rb") as f:
        loaded: dict[str, Any] = plistlib.load(f)
    return loaded


@dataclass
class Mac:
    """A scratch root holding the installed payload, and the stand-ins of the macOS commands."""

    root: Path
    state: Path
    env: dict[str, str]

    def run(self, argv: Sequence[str | Path]) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", *map(str, argv)], capture_output=True, text=True, env=self.env, timeout=60, check=False
        )
        assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done

    def install(self, staged: Path) -> None:
        """Installer's order: preinstall, the payload laid over what is there, postinstall."""
        self.run([staged / "scripts" / "preinstall", "m6t.pkg", "/", self.root, "/"])
        shutil.copytree(staged / "root", self.root, symlinks=True, dirs_exist_ok=True)
        self.postinstall(staged)

    def postinstall(self, staged: Path) -> subprocess.CompletedProcess[str]:
        return self.run([staged / "scripts" / "postinstall", "m6t.pkg", "/", self.root, "/"])

    def uninstall(self, *options: str) -> subprocess.CompletedProcess[str]:
        # A copy: the installed one removes itself.
        script = self.state / "uninstall.sh"
        if not script.exists():
            shutil.copy(self.root / SUPPORT / "uninstall.sh", script)
        return self.run([script, "--root", self.root, *options])

    def loaded(self) -> set[str]:
        jobs = self.state / "launchd"
        return {p.name for p in jobs.iterdir()} if jobs.is_dir() else set()

    def group(self) -> list[str] | None:
        members = self.state / "groups" / "m6t"
        return members.read_text().split() if members.exists() else None

    def calls(self) -> list[str]:
        log = self.state / "calls"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def mac(tmp_path: Path) -> Mac:
    stubs, state, root = tmp_path / "bin", tmp_path / "state", tmp_path / "root"
    for directory in (stubs, state, root):
        directory.mkdir()
    for name, script in STUBS.items():
        (stubs / name).write_text(script)
        (stubs / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}", "STATE": str(state)}
    return Mac(root, state, env)


# ------------------------------------------------------------------------------------------- payload


def test_payload_is_what_build_pkg_documents(staged: Path) -> None:
    assert files(staged / "root") == {
        "Applications/m6t.app/Contents/Info.plist",
        "Applications/m6t.app/Contents/MacOS/m6t-tray",
        f"{SUPPORT}/m6t-helper",
        f"{SUPPORT}/m6t",
        f"{SUPPORT}/_internal/libpython3.12.dylib",
        f"{SUPPORT}/client.example.toml",
        f"{SUPPORT}/uninstall.sh",
        DAEMON,
        AGENT,
        "usr/local/bin/m6t",
    }
    # Not client.toml: postinstall creates it once, so that an upgrade never replaces the helper's edits.
    assert files(staged / "scripts") == {"preinstall", "postinstall"}
    executables = {
        f"{SUPPORT}/m6t-helper",
        f"{SUPPORT}/m6t",
        f"{SUPPORT}/uninstall.sh",
        "usr/local/bin/m6t",
        "Applications/m6t.app/Contents/MacOS/m6t-tray",
    }
    for name in files(staged / "root"):
        mode = stat.S_IMODE((staged / "root" / name).stat().st_mode)
        assert mode == (0o755 if name in executables else 0o644), f"{name}: {mode:o}"
    for name in ("preinstall", "postinstall"):
        assert stat.S_IMODE((staged / "scripts" / name).stat().st_mode) == 0o755


@pytest.mark.parametrize("name", [DAEMON, AGENT])
def test_launchd_plists_have_what_launchd_needs(staged: Path, name: str) -> None:
    job = launchd_plist(staged, name)
    assert job["Label"] == Path(name).stem  # launchctl's bootout and kickstart name jobs by label
    program, *_ = job["ProgramArguments"]
    assert all(isinstance(argument, str) for argument in job["ProgramArguments"])
    installed = staged / "root" / program.removeprefix("/")
    assert installed.is_file(), f"{program} is not in the payload"
    assert os.access(installed, os.X_OK)
    assert job["RunAtLoad"] is True


def test_helper_daemon_runs_with_the_helpers_own_defaults(staged: Path) -> None:
    daemon = launchd_plist(staged, DAEMON)
    options = vars(helper_parser().parse_args(daemon["ProgramArguments"][1:]))
    # The socket the tray and the CLI look for when not told (the helper's default), where the agent and
    # the CLI wrapper point them too.
    assert options["socket"] == schema.DEFAULT_SOCKET_PATH == UNIX_SOCKET_PATH, "macOS's default address"
    agent = launchd_plist(staged, AGENT)["ProgramArguments"]
    assert agent[agent.index("--socket") + 1] == schema.DEFAULT_SOCKET_PATH
    wrapper = (staged / "root" / "usr/local/bin/m6t").read_text()
    assert f': "${{M6T_SOCKET:={schema.DEFAULT_SOCKET_PATH}}}"' in wrapper
    assert f'exec "/{SUPPORT}/m6t" "$@"' in wrapper
    assert (staged / "root" / SUPPORT / "m6t").is_file()
    assert options["foreground"] is True  # launchd supervises it: a daemon that forks would look dead
    assert str(options["config"]) == f"/{SUPPORT}/client.toml"
    assert str(options["state_dir"]) == f"/{SUPPORT}/state"
    # Restarted after a crash, not after a clean stop; both logs in the folder postinstall creates.
    assert daemon["KeepAlive"] == {"SuccessfulExit": False}
    assert daemon["ProcessType"] == "Interactive", "the user's packets go through it: no background throttling"
    assert daemon["StandardErrorPath"] == daemon["StandardOutPath"] == "/Library/Logs/m6t/helper.log"
    assert daemon["ExitTimeOut"] >= 10  # time to take the tunnel down before SIGKILL


def test_tray_agent_is_a_login_session_app_the_user_may_quit(staged: Path) -> None:
    agent = launchd_plist(staged, AGENT)
    assert agent["LimitLoadToSessionType"] == "Aqua", "a graphical login only: not over ssh, not the login window"
    assert "KeepAlive" not in agent, "quitting the tray is the user's choice"
    assert agent["ProcessType"] == "Interactive"
    assert agent["ProgramArguments"][0] == "/Applications/m6t.app/Contents/MacOS/m6t-tray"
    assert "UserName" not in agent and "StandardErrorPath" not in agent, "the user's own session, its own logs"


# ------------------------------------------------------------------------------------------- scripts


def test_postinstall_twice_installs_once(staged: Path, mac: Mac) -> None:
    mac.install(staged)
    installed = tree(mac.root)
    support = mac.root / SUPPORT
    assert (support / "client.toml").read_bytes() == (support / "client.example.toml").read_bytes()
    assert stat.S_IMODE((support / "client.toml").stat().st_mode) == 0o644
    # What the daemon's plist needs before it starts: its state folder and its log folder.
    daemon = launchd_plist(staged, DAEMON)
    assert (mac.root / daemon["StandardErrorPath"].removeprefix("/")).parent.is_dir()
    assert (support / "state").is_dir()
    assert mac.group() == [CONSOLE_USER]
    assert mac.loaded() == {"system_org.m6t.helper", f"gui_{CONSOLE_UID}_org.m6t.tray"}
    assert "launchctl bootstrap system /Library/LaunchDaemons/org.m6t.helper.plist" in mac.calls()
    assert "launchctl enable system/org.m6t.helper" in mac.calls()

    again = mac.postinstall(staged)
    assert again.stderr == ""
    assert tree(mac.root) == installed
    assert mac.group() == [CONSOLE_USER]
    assert mac.loaded() == {"system_org.m6t.helper", f"gui_{CONSOLE_UID}_org.m6t.tray"}


def test_an_upgrade_keeps_the_configuration(staged: Path, mac: Mac) -> None:
    mac.install(staged)
    config = mac.root / SUPPORT / "client.toml"
    config.write_text("# edited by the helper\n")
    mac.install(staged)
    assert config.read_text() == "# edited by the helper\n"
    assert mac.loaded() == {"system_org.m6t.helper", f"gui_{CONSOLE_UID}_org.m6t.tray"}


def test_uninstall_twice_keeps_only_the_configuration_and_state(staged: Path, mac: Mac) -> None:
    mac.install(staged)
    (mac.root / SUPPORT / "state" / "journal.json").write_text("{}\n")
    (mac.root / "var/run/m6t").mkdir(parents=True)
    (mac.root / "var/run/m6t/helper.sock").write_text("")
    # The tray's own "start at login" agent, as m6t.ui.autostart.LaunchAgentAutostart writes it.
    agents = mac.root / "Users" / CONSOLE_USER / "Library" / "LaunchAgents"
    agents.mkdir(parents=True)
    (agents / "org.m6t.tray.plist").write_text("<plist/>\n")
    (agents / "com.example.other.plist").write_text("<plist/>\n")

    first = mac.uninstall()
    left = tree(mac.root)
    assert files(mac.root) == {
        f"{SUPPORT}/client.toml",
        f"{SUPPORT}/state/journal.json",
        f"Users/{CONSOLE_USER}/Library/LaunchAgents/com.example.other.plist",
    }
    assert mac.loaded() == set()
    assert mac.group() == [CONSOLE_USER]  # kept without --purge
    assert "kept" in first.stdout

    mac.uninstall()
    assert tree(mac.root) == left
    assert mac.loaded() == set()


def test_purge_twice_leaves_nothing(staged: Path, mac: Mac) -> None:
    mac.install(staged)
    mac.uninstall("--purge")
    assert files(mac.root) == set()
    assert not (mac.root / SUPPORT).exists()
    assert not (mac.root / "Library/Logs/m6t").exists()
    assert mac.group() is None
    assert mac.loaded() == set()
    assert "pkgutil --volume / --forget org.m6t.pkg" not in mac.calls()  # the scratch root's, not the Mac's
    assert f"pkgutil --volume {mac.root} --forget org.m6t.pkg" in mac.calls()

    left = tree(mac.root)
    mac.uninstall("--purge")
    assert tree(mac.root) == left
