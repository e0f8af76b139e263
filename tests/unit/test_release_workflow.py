"""The GitHub workflows are linted here, since they only run on GitHub's Windows and macOS runners.

Three checks, with well-kept tools: ``check-jsonschema`` (dev extra) validates every workflow against the
GitHub workflow schema it vendors (no network); ShellCheck (Debian) checks every ``run:`` block that bash
executes, with the ``${{ }}`` expressions stood in for by a variable; and the runner labels must be ones
GitHub hosts.  The release workflow is then checked to build with the project's own scripts and to
smoke-test what the installers register under the names the code uses.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
HOSTED_RUNNERS = {"ubuntu-24.04", "ubuntu-22.04", "windows-2025", "windows-2022", "macos-15", "macos-14"}
"""GitHub-hosted runner labels this project may use (pinned versions, never ``-latest``)."""
_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def _tool(name: str, hint: str) -> str:
    # The venv's bin first: the test may run with that venv not activated.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=path)
    if found is None:
        pytest.skip(f"{name} is missing: {hint}")
    return found


@pytest.fixture(scope="module")
def check_jsonschema() -> str:
    return _tool("check-jsonschema", "./scripts/setup.sh installs the dev extra")


@pytest.fixture(scope="module")
def shellcheck() -> str:
    return _tool("shellcheck", "apt-get install shellcheck (scripts/setup.sh does)")


def schema_check(tool: str, *files: Path) -> subprocess.CompletedProcess[str]:
    argv = [tool, "--builtin-schema", "vendor.github-workflows", *map(str, files)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def bash_blocks(workflow: Any) -> Iterator[tuple[str, str]]:
    """(where, script) of every run: block bash executes (its own shell:, else the job's default)."""
    for job_name, job in workflow["jobs"].items():
        default = job.get("defaults", {}).get("run", {}).get("shell")
        runner = str(job.get("runs-on", ""))
        for index, step in enumerate(job.get("steps", [])):
            if "run" not in step:
                continue
            shell = step.get("shell", default) or ("pwsh" if runner.startswith("windows") else "bash")
            if shell.split()[0] == "bash":
                yield f"{job_name}.steps[{index}]", _EXPRESSION.sub("${GITHUB_EXPR}", step["run"])


def shellcheck_block(tool: str, script: str) -> subprocess.CompletedProcess[str]:
    argv = [tool, "--shell=bash", "--format=gcc", "-"]
    return subprocess.run(argv, input=script, capture_output=True, text=True, timeout=60, check=False)


def test_workflows_exist() -> None:
    assert RELEASE in WORKFLOWS


def test_workflows_follow_the_schema(check_jsonschema: str) -> None:
    done = schema_check(check_jsonschema, *WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_finds_mistakes(check_jsonschema: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    runs-on: macos-15\n    step:\n      - run: make\n")
    done = schema_check(check_jsonschema, broken)
    assert done.returncode == 1
    assert "step" in done.stdout + done.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_bash_block_passes_shellcheck(shellcheck: str, workflow: Path) -> None:
    blocks = list(bash_blocks(load(workflow)))
    assert blocks, "no bash run: block found: the extraction is broken"
    problems = []
    for where, script in blocks:
        done = shellcheck_block(shellcheck, script)
        if done.returncode != 0:
            problems.append(f"{where}:\n{done.stdout}{done.stderr}")
    assert not problems, "\n".join(problems)


def test_shellcheck_finds_mistakes_in_run_blocks(shellcheck: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    runs-on: macos-15\n    steps:\n      - run: rm -rf $HOME/$DIR\n")
    [(where, script)] = bash_blocks(load(broken))
    done = shellcheck_block(shellcheck, script)
    assert where == "build.steps[0]" and done.returncode == 1
    assert "SC2086" in done.stdout


def test_runners_are_hosted_and_pinned() -> None:
    for workflow in WORKFLOWS:
        for job_name, job in load(workflow)["jobs"].items():
            assert job["runs-on"] in HOSTED_RUNNERS, f"{workflow.name}: {job_name} runs on {job['runs-on']!r}"


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
