"""The state file on disk: written atomically and only when something changed, trusted only when it is ours."""

from __future__ import annotations

import asyncio
import stat
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from m6t.gateway import GatewayCore
from m6t.gateway.metrics import format_status, render
from m6t.gateway.persistence import StateSaver, prepare_directory, restore
from m6t.gateway.snapshot import STATE_FILE, decode
from m6t.platform.base import PlatformError

from .test_gateway_core import MN, NAT1, PORT, activate, make_core

PORTS = (3544, 4500)


def saver_for(core: GatewayCore, directory: Path, interval: float = 0.05) -> StateSaver:
    return StateSaver(core, PORTS, directory, interval)


def test_the_directory_is_made_private(tmp_path: Path) -> None:
    directory = prepare_directory(tmp_path / "a" / "state")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    loose.chmod(0o777)
    assert stat.S_IMODE(prepare_directory(loose).stat().st_mode) == 0o700


def test_a_directory_that_cannot_be_made_is_a_clear_start_up_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(PlatformError, match="state directory") as info:
        prepare_directory(tmp_path / "file" / "state")
    assert info.value.hint and 'state_directory = ""' in info.value.hint


def test_changes_are_saved_after_the_interval_and_nothing_runs_without_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        core = make_core(now=loop.time())
        saver = saver_for(core, tmp_path)
        saver.start(loop)
        await asyncio.sleep(0.2)
        assert saver.saves == 0 and not (tmp_path / STATE_FILE).exists()

        activate(core, loop.time())
        for _ in range(100):
            saver.changed()  # a batch of packets calls it each time: one save all the same
        await asyncio.sleep(0.02)
        assert saver.saves == 0
        for _ in range(200):
            if saver.saves:
                break
            await asyncio.sleep(0.01)
        assert saver.saves == 1 and saver.last_states == 1
        await asyncio.sleep(0.2)
        assert saver.saves == 1, "no change, no further save"
        info = (tmp_path / STATE_FILE).stat()
        assert stat.S_IMODE(info.st_mode) == 0o600
        [record] = decode((tmp_path / STATE_FILE).read_bytes()).records
        assert (record.address, record.ipv4, record.port, record.local_port, record.active) == (
            int(MN),
            NAT1,
            PORT,
            3544,
            True,
        )
        await saver.close()
        assert saver.saves == 2
        assert list(tmp_path.iterdir()) == [tmp_path / STATE_FILE]

    asyncio.run(scenario())


def test_a_change_during_a_save_is_saved_next(tmp_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        core = make_core(now=loop.time())
        saver = saver_for(core, tmp_path, 0.02)
        writing = threading.Event()
        release = threading.Event()
        real = saver._write

        def slow_write(shards: Sequence[dict[int, int]], mono: float, wall: float) -> bool:
            writing.set()
            release.wait(5.0)
            return real(shards, mono, wall)

        saver._write = slow_write  # type: ignore[method-assign]
        saver.start(loop)
        saver.changed()
        assert await asyncio.to_thread(writing.wait, 5.0)
        # The first save has taken its copy (an empty table); this change comes after it.
        activate(core, loop.time())
        saver.changed()
        release.set()
        for _ in range(300):
            if saver.saves >= 2:
                break
            await asyncio.sleep(0.01)
        assert saver.saves == 2 and saver.last_states == 1
        await saver.close()

    asyncio.run(scenario())


def test_states_survive_a_stop_and_start(tmp_path: Path) -> None:
    async def first_run() -> None:
        core = make_core(now=50.0)
        activate(core, 50.0)
        saver = StateSaver(core, PORTS, tmp_path, 5, clock=lambda: 50.0)
        await saver.close()
        assert saver.saves == 1

    asyncio.run(first_run())
    fresh = make_core(now=7.0)
    report, refused = restore(tmp_path, fresh, PORTS, mono_now=7.0)
    assert refused is None and report.restored == 1
    view = fresh.state(MN, 7.0)
    assert view is not None and view.active and view.port == PORT


@pytest.mark.parametrize(
    ("content", "mode", "reason"),
    [
        (b"garbage", 0o600, "too short"),
        (b"M6TGWSTA" + bytes(100), 0o600, "version 0"),
        (None, 0o666, "gateway's user alone"),
    ],
)
def test_a_damaged_or_foreign_file_is_refused_counted_and_kept_aside(
    tmp_path: Path, content: bytes | None, mode: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / STATE_FILE
    if content is None:
        asyncio.run(_saved_one(tmp_path))
    else:
        path.write_bytes(content)
    path.chmod(mode)
    core = make_core(now=0.0)
    report, refused = restore(tmp_path, core, PORTS, mono_now=0.0)
    assert refused is not None and reason in refused
    assert report.restored == 0 and len(core.table) == 0
    assert not path.exists() and (tmp_path / (STATE_FILE + ".refused")).exists()
    assert any("saved states refused" in r.getMessage() and reason in r.getMessage() for r in caplog.records)

    saver = StateSaver(core, PORTS, tmp_path, 5, refused=refused)
    text = render(saver.metrics())
    assert "m6t_gateway_state_file_refused 1" in text
    assert "REFUSED" in format_status(text)


async def _saved_one(directory: Path) -> None:
    core = make_core(now=0.0)
    activate(core, 0.0)
    await StateSaver(core, PORTS, directory, 5, clock=lambda: 0.0).close()


def test_a_save_killed_halfway_leaves_nothing_that_is_read(tmp_path: Path) -> None:
    asyncio.run(_saved_one(tmp_path))
    leftover = tmp_path / f".{STATE_FILE}.abc123.tmp"
    leftover.write_bytes(b"half a file")
    core = make_core(now=0.0)
    report, refused = restore(tmp_path, core, PORTS, mono_now=0.0)
    assert refused is None and report.restored == 1
    assert not leftover.exists()


def test_a_failing_write_is_logged_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    core = make_core(now=0.0)
    saver = StateSaver(core, PORTS, tmp_path / "gone", 5, clock=lambda: 0.0)
    assert asyncio.run(saver.close()) is False
    assert saver.errors == 1 and saver.saves == 0
    assert any("could not save the states" in r.getMessage() for r in caplog.records)
    assert "1 FAILED" in format_status(render(saver.metrics()))


def test_status_says_how_many_states_came_back(tmp_path: Path) -> None:
    asyncio.run(_saved_one(tmp_path))
    core = make_core(now=0.0)
    report, _ = restore(tmp_path, core, PORTS, mono_now=0.0)
    saver = StateSaver(core, PORTS, tmp_path, 5, restored=report)
    assert "restart:     1 states restored at start; 0 saves" in format_status(render(saver.metrics()))
    assert "states not kept" in format_status(render([]))


def test_a_long_save_spaces_the_next_ones() -> None:
    core = make_core(now=0.0)
    saver = StateSaver(core, PORTS, Path("/nonexistent"), 5)
    assert saver.delay_s == 5
    saver.last_seconds = 0.1
    assert saver.delay_s == 5
    saver.last_seconds = 1.7  # a million states on a busy machine
    assert saver.delay_s == pytest.approx(17.0)
