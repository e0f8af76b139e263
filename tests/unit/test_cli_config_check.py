"""``m6t config check [FILE]``: validate a file as the helper would load it, without applying anything."""

from __future__ import annotations

import io
import json
from pathlib import Path

from m6t.client import cli
from tests.unit.test_helper_fakes import RunningHelper, helper

__all__ = ["helper"]

GOOD = '[gateway]\naddress = "198.51.100.2"\n[tunnel]\nprefix = "fd6d:3674:a1b2:0:1::/80"\n'


def run(*argv: str, socket: str = "/nonexistent/helper.sock") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--socket", socket, *argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_a_valid_file_is_ok(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text(GOOD)
    assert run("config", "check", str(path)) == (0, f"{path}: ok\n", "")


def test_every_problem_is_listed_and_the_exit_status_is_1(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text(GOOD.replace("[tunnel]\n", "[tunnel]\nmtu = 65535\nkeepalive = 3\n"))
    code, out, err = run("config", "check", str(path))
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert any(line.startswith(f"m6t: {path}: tunnel.mtu: must be in the range 1280..65507") for line in lines)
    assert any(f"{path}: tunnel.keepalive:" in line for line in lines)


def test_json_output(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text(GOOD + "mtu = 1000\n")
    code, out, _ = run("config", "check", str(path), "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False and report["file"] == str(path)
    assert [p["key"] for p in report["problems"]] == ["tunnel.mtu"]


def test_an_unreadable_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    code, _, err = run("config", "check", str(tmp_path / "missing.toml"))
    assert code == 1 and "cannot read" in err


def test_without_a_file_the_helpers_own_file_is_checked(helper: RunningHelper) -> None:
    code, out, err = run("config", "check", socket=helper.socket_path)
    assert code == 0, err
    assert out.endswith(": ok\n") and out.startswith("/")


def test_without_a_file_or_a_helper_it_says_so() -> None:
    code, _, err = run("config", "check")
    assert code == 3 and "cannot reach the helper" in err
