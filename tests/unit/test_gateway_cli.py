"""``m6t-gateway check`` and ``status`` (no root needed), and the argument handling of ``run``."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from m6t.gateway.config import UnixEndpoint
from m6t.gateway.metrics_server import MetricsServer
from m6t.platform import require_linux
from m6t.platform.base import PlatformError

try:
    require_linux("the gateway")
except PlatformError as exc:
    pytest.skip(str(exc), allow_module_level=True)

from m6t.gateway.cli import main

GOOD = """
[listen]
ports = [3544, 4500]
[tunnel]
prefixes = ["fd6d:3674:a1b2::/48"]
home_agents = ["fd00:ab::1"]
[metrics]
listen = "unix:{socket}"
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="m6tgw-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _main(argv: list[str]) -> int:
    return main(argv)


def test_check_accepts_a_valid_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = workdir / "gateway.toml"
    config.write_text(GOOD.format(socket=workdir / "m.sock"))
    assert _main(["check", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == f"{config}: ok"
    assert _main(["--config", str(config), "check-config"]) == 0


def test_check_lists_every_problem_and_fails(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = workdir / "gateway.toml"
    config.write_text('[listen]\nports = [0]\n[tunnel]\nprefixes = ["nonsense"]\nhome_agents = ["fd00:ab::1"]\n')
    assert _main(["check", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "listen.ports" in err and "tunnel.prefixes" in err


def test_check_reports_a_missing_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["check", "--config", str(workdir / "absent.toml")]) == 1
    assert "absent.toml" in capsys.readouterr().err


def test_run_refuses_a_bad_config_before_touching_the_system(workdir: Path) -> None:
    config = workdir / "gateway.toml"
    config.write_text("[tunnel]\n")
    assert _main(["--config", str(config)]) == 1


def test_run_refuses_any_system_but_linux(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = workdir / "gateway.toml"
    config.write_text(GOOD.format(socket=workdir / "m.sock"))
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _main(["--config", str(config)]) == 1
    assert "the m6t gateway runs on Linux only, not on darwin" in caplog.text


def test_status_fetches_and_summarises(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    socket_path = workdir / "m.sock"
    config = workdir / "gateway.toml"
    config.write_text(GOOD.format(socket=socket_path))
    text = 'm6t_gateway_states{kind="active"} 3\nm6t_gateway_drops_total{side="mn",reason="rate_limited"} 7\n'
    ready = threading.Event()
    stop = threading.Event()

    async def serve() -> None:
        server = MetricsServer(UnixEndpoint(str(socket_path)), lambda: text)
        await server.start()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.01)
        await server.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(10)
        assert _main(["status", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert "states:      3 active, 0 temporary" in out
        assert "mn/rate_limited: 7" in out
        assert _main(["status", "--metrics", f"unix:{socket_path}", "--raw"]) == 0
        assert capsys.readouterr().out == text
    finally:
        stop.set()
        thread.join(10)


def test_status_without_a_gateway_fails_cleanly(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["status", "--metrics", f"unix:{workdir}/none.sock", "--timeout", "1"]) == 1
    assert "cannot reach" in capsys.readouterr().err
    assert _main(["status", "--metrics", "nonsense"]) == 2


def test_status_with_metrics_off_says_so(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = workdir / "gateway.toml"
    config.write_text('[tunnel]\nprefixes = ["fd6d:3674:a1b2::/48"]\nhome_agents = ["fd00:ab::1"]\n')
    assert _main(["status", "--config", str(config)]) == 1
    assert "metrics are off" in capsys.readouterr().err


# --------------------------------------------------------------------------- the fast lane at start-up


def _no_binding() -> object:
    raise PlatformError("nftables' Python binding is not installed", hint="install python3-nftables")


@pytest.mark.parametrize("mode", ["auto", "required", "off"])
def test_without_nftables_the_gateway_says_so_and_runs_unless_required(
    mode: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from m6t.gateway.config import parse_gateway_config
    from m6t.gateway.daemon import open_fast_lane
    from m6t.platform.linux import nftables

    monkeypatch.setattr(nftables, "_load_binding", _no_binding)
    config = parse_gateway_config(GOOD.format(socket="/run/x.sock") + f'[fastlane]\nmode = "{mode}"\n')
    caplog.set_level("INFO", logger="m6t.gateway.daemon")
    if mode == "required":
        with pytest.raises(PlatformError, match=r"the fast lane is required .* binding is not installed"):
            open_fast_lane(config)
        return
    assert open_fast_lane(config) is None
    if mode == "auto":
        assert "fast lane unavailable, running without it: nftables' Python binding" in caplog.text
        assert "hint: install python3-nftables" in caplog.text
    else:
        assert "fast lane off" in caplog.text


# --------------------------------------------------------------------------- keys (enrolled mode)


def _enrolled_config(workdir: Path) -> Path:
    config = workdir / "gateway.toml"
    keys = workdir / "keys.toml"
    config.write_text(GOOD.format(socket=workdir / "m.sock") + f'[access]\nmode = "enrolled"\nkey_file = "{keys}"\n')
    return config


def test_keys_add_prints_the_key_once_and_list_shows_fingerprints(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from m6t.gateway.keys import load_key_file
    from m6t.protocol.access import decode_key, fingerprint

    config = _enrolled_config(workdir)
    assert _main(["check", "--config", str(config)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert _main(["keys", "--config", str(config), "add", "alice"]) == 0
    out = capsys.readouterr()
    key = decode_key(out.out.strip())
    assert fingerprint(key) in out.err and "shown this once" in out.err
    assert load_key_file(workdir / "keys.toml").entries == {"alice": (key,)}
    assert _main(["check", "--config", str(config)]) == 0
    capsys.readouterr()

    assert _main(["keys", "--config", str(config), "add", "alice"]) == 0
    second = decode_key(capsys.readouterr().out.strip())
    assert _main(["keys", "--config", str(config), "list"]) == 0
    listed = capsys.readouterr()
    assert listed.out == f"alice\t{fingerprint(key)}\nalice\t{fingerprint(second)}\n"
    assert out.out.strip() not in listed.out + listed.err

    assert _main(["keys", "--config", str(config), "remove", "alice", fingerprint(key)]) == 0
    assert load_key_file(workdir / "keys.toml").entries == {"alice": (second,)}
    assert _main(["keys", "--config", str(config), "remove", "bob"]) == 1
    assert "no key is named bob" in capsys.readouterr().err


def test_check_refuses_a_readable_key_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _enrolled_config(workdir)
    assert _main(["keys", "--key-file", str(workdir / "keys.toml"), "add", "alice"]) == 0
    (workdir / "keys.toml").chmod(0o644)
    capsys.readouterr()
    assert _main(["check", "--config", str(config)]) == 1
    assert "chmod 600" in capsys.readouterr().err


def test_keys_stage_hands_the_service_a_private_copy_owned_by_its_directory(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from m6t.gateway.keys import load_key_file

    config = _enrolled_config(workdir)
    assert _main(["keys", "--config", str(config), "add", "alice"]) == 0
    runtime = workdir / "run"  # the unit's RuntimeDirectory, the service user's
    runtime.mkdir()
    copy = runtime / "keys.toml"
    assert _main(["keys", "--config", str(config), "stage", str(copy)]) == 0
    assert "1 key(s)" in capsys.readouterr().err
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert load_key_file(copy).entries == load_key_file(workdir / "keys.toml").entries
    # The gateway checks and runs with the copy.
    assert _main(["check", "--config", str(config), "--key-file", str(copy)]) == 0
    assert [p.name for p in runtime.iterdir()] == ["keys.toml"]  # no temporary file left

    if os.geteuid() == 0:
        os.chown(runtime, 65534, 65534)
        assert _main(["keys", "--config", str(config), "stage", str(copy)]) == 0
        assert (copy.stat().st_uid, copy.stat().st_gid) == (65534, 65534)
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600

    # A key file others may read is refused here too, before anything is written: the copy stays as it was.
    before = copy.read_bytes()
    assert _main(["keys", "--config", str(config), "add", "bob"]) == 0
    (workdir / "keys.toml").chmod(0o640)
    capsys.readouterr()
    assert _main(["keys", "--config", str(config), "stage", str(copy)]) == 1
    assert "chmod 600" in capsys.readouterr().err
    assert copy.read_bytes() == before

    # An open gateway has no keys: the copy goes.
    config.write_text(config.read_text().replace('mode = "enrolled"', 'mode = "open"'))
    assert _main(["keys", "--config", str(config), "stage", str(copy)]) == 0
    assert not copy.exists()
    assert _main(["keys", "--config", str(config), "stage", str(copy)]) == 0


def test_status_needs_no_access_to_the_keys(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _enrolled_config(workdir)  # its key file does not even exist
    assert _main(["status", "--config", str(config), "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach" in err and "keys.toml" not in err, err


def _unit_commands(key: str) -> list[list[str]]:
    unit = Path(__file__).resolve().parents[2] / "installers" / "linux" / "m6t-gateway.service"
    found = []
    for line in unit.read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition("=")
        if name == key:
            found.append(shlex.split(value.lstrip("+")))
    return found


def test_the_unit_stages_the_keys_before_it_checks_runs_and_reloads() -> None:
    from m6t.gateway.cli import _parser

    start = [argv for argv in _unit_commands("ExecStartPre") if argv[0] == "/usr/bin/m6t-gateway"]
    reload = _unit_commands("ExecReload")
    run = _unit_commands("ExecStart")
    assert [argv[1] for argv in start] == ["keys", "check"]
    assert reload[0] == start[0] and reload[1] == ["/bin/kill", "-HUP", "$MAINPID"]
    stage = _parser().parse_args(start[0][1:])
    assert stage.keys_command == "stage"
    runtime = _unit_commands("RuntimeDirectory")[0][0]
    assert Path(stage.copy).parent == Path("/run") / runtime
    for argv in (start[1], run[0]):
        args = _parser().parse_args(argv[1:])
        assert args.key_file == stage.copy and args.config == stage.config == "/etc/m6t/gateway.toml"
