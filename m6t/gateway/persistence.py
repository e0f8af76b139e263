"""The state table across restarts: read back at start, saved a few seconds after it changes and at stop.

The file is ``states.m6t`` in the configured state directory (:mod:`m6t.gateway.snapshot` says what is in
it), replaced atomically (a temporary file, fsync, rename), readable and writable by the gateway's user
only.  A snapshot binds mobile nodes' addresses to IPv4 endpoints, so a file anyone else could have
written is refused like a damaged one: it would let them choose where an MN's traffic goes (draft 6.1.1).
A refused file is logged with the reason, counted, and moved aside for inspection; the gateway then starts
with an empty table, as it did before restarts were kept.

Nothing runs while nothing changes: the driver reports changes (:meth:`StateSaver.changed`: output left
the data path, or states expired), which arms one deadline ``save_interval_s`` ahead; the save then copies
the table's shards a few at a time between packets and encodes and writes them on a worker thread, so a
large table costs the data path no long pause; and saves are spaced to at least ten times as long as the
last one took, so that even a million states under constant change cost it a tenth of the interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from m6t.atomic import atomic_write
from m6t.gateway.core import GatewayCore
from m6t.gateway.metrics import Metric
from m6t.gateway.snapshot import (
    COPY_SHARDS_PER_TURN,
    SAVE_DUTY,
    STATE_FILE,
    RestoreReport,
    SnapshotError,
    decode,
    encode_shards,
    restore_records,
)
from m6t.platform.base import PlatformError, PlatformErrorCode

log = logging.getLogger(__name__)

REFUSED_SUFFIX: Final = ".refused"
FILE_MODE: Final = 0o600
DIRECTORY_MODE: Final = 0o700


def prepare_directory(directory: Path) -> Path:
    """The state directory, created (0700) if missing; PlatformError if this process cannot own it."""
    hint = 'create it for the gateway\'s user, or set [states] state_directory = "" to keep no state'
    try:
        directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        resolved = directory.resolve(strict=True)
        info = resolved.stat()
    except OSError as exc:
        raise PlatformError(
            f"state directory {directory}: {exc.strerror or exc}", hint, code=PlatformErrorCode.of_errno(exc.errno)
        ) from exc
    if not stat.S_ISDIR(info.st_mode):
        raise PlatformError(f"state directory {directory} is not a directory", hint)
    if info.st_uid != os.geteuid():
        raise PlatformError(
            f"state directory {directory} belongs to uid {info.st_uid}, not to the gateway's user ({os.geteuid()})",
            hint,
            code=PlatformErrorCode.PERMISSION_DENIED,
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        # Ours, but others could read where mobile nodes are, or plant a file: make it ours alone.
        try:
            os.chmod(resolved, DIRECTORY_MODE)
        except OSError as exc:
            raise PlatformError(f"state directory {directory}: cannot make it private: {exc.strerror}", hint) from exc
        log.info("state directory %s: permissions tightened to %o", directory, DIRECTORY_MODE)
    return resolved


def _remove_leftovers(directory: Path) -> None:
    # A save killed between writing its temporary file and the rename leaves the file behind.
    for leftover in directory.glob(f".{STATE_FILE}.*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _read_own(path: Path) -> bytes:
    """The file's bytes if this user alone can have written it; SnapshotError (foreign) otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SnapshotError("not a regular file")
        if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o022:
            raise SnapshotError(
                f"owned by uid {info.st_uid} with mode {stat.S_IMODE(info.st_mode):o}: "
                "only a file the gateway's user alone can write is trusted"
            )
        return handle.read()


def restore(
    directory: Path,
    core: GatewayCore,
    ports: Sequence[int],
    *,
    mono_now: float | None = None,
    wall_now: float | None = None,
) -> tuple[RestoreReport, str | None]:
    """Read the directory's snapshot into ``core``: what became of its states, and why the file was refused.

    Never raises for the file's content or an I/O error: a gateway that cannot restore starts empty.
    """
    _remove_leftovers(directory)
    path = directory / STATE_FILE
    try:
        data = _read_own(path)
        snapshot = decode(data)
    except FileNotFoundError:
        log.info("no saved states in %s: starting with an empty table", directory)
        return RestoreReport(), None
    except (OSError, SnapshotError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        aside = path.with_name(STATE_FILE + REFUSED_SUFFIX)
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        log.error(
            "saved states refused (%s): %s; starting with an empty table, the file kept as %s", path, reason, aside
        )
        return RestoreReport(), reason
    wall = time.time() if wall_now is None else wall_now
    report = restore_records(
        core,
        snapshot.records,
        ports,
        mono_now=time.monotonic() if mono_now is None else mono_now,
        wall_now=wall,
    )
    age = max(0.0, wall - snapshot.saved_at_ms / 1000.0)
    log.info(
        "restored %d of %d saved states (%d active, saved %.1f s ago); %d expired meanwhile, "
        "%d on ports no longer listened on, %d refused",
        report.restored,
        len(snapshot.records),
        core.table.active,
        age,
        report.expired,
        report.port_gone,
        report.refused,
    )
    return report, None


class StateSaver:
    """Saves ``core``'s states to ``directory`` a while after they change, and at :meth:`close`."""

    def __init__(
        self,
        core: GatewayCore,
        ports: Sequence[int],
        directory: Path,
        interval_s: float,
        *,
        restored: RestoreReport | None = None,
        refused: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.core = core
        self.ports = tuple(ports)
        self.path = directory / STATE_FILE
        self.interval_s = interval_s
        self._clock = clock
        self._wall = wall
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._armed = False
        self.saves = 0
        self.errors = 0
        self.last_states = 0
        self.last_bytes = 0
        self.last_seconds = 0.0
        self.restored = restored if restored is not None else RestoreReport()
        """What became of the saved states at start, for the metrics."""
        self.refused = refused
        """Why the saved states were refused at start, if they were."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def delay_s(self) -> float:
        """How long a change waits for its save: the interval, or more after a long save."""
        return max(self.interval_s, SAVE_DUTY * self.last_seconds)

    def changed(self) -> None:
        """States were created, refreshed, promoted or expired: a save within :attr:`delay_s`."""
        if self._armed:
            return
        self._armed = True
        loop = self._loop
        if loop is not None and self._task is None:
            self._handle = loop.call_later(self.delay_s, self._begin)

    def _begin(self) -> None:
        loop = self._loop
        self._handle = None
        if loop is None:
            return
        self._task = loop.create_task(self._save_soon())

    async def _save_soon(self) -> None:
        try:
            # A change from here on is not certain to be in this copy: it arms the next save.
            self._armed = False
            shards = self.core.table.shards
            copies: list[dict[int, int]] = []
            for start in range(0, len(shards), COPY_SHARDS_PER_TURN):
                copies.extend(shard.copy() for shard in shards[start : start + COPY_SHARDS_PER_TURN])
                await asyncio.sleep(0)
            mono, wall = self._clock(), self._wall()
            await asyncio.to_thread(self._write, copies, mono, wall)
        finally:
            self._task = None
            if self._armed and self._loop is not None:
                self._handle = self._loop.call_later(self.delay_s, self._begin)

    def _write(self, shards: Sequence[dict[int, int]], mono: float, wall: float) -> bool:
        """Encode and write (on a worker thread); errors are logged and counted, never raised."""
        started = time.perf_counter()
        core = self.core
        try:
            data, count = encode_shards(
                shards,
                self.ports,
                tick_s=core.settings.tick_s,
                now_tick=core.tick_of(mono),
                mono_now=mono,
                wall_now=wall,
            )
            atomic_write(self.path, data, FILE_MODE)
        except Exception as exc:  # a save that fails must never take the data path down with it
            self.errors += 1
            log.error("could not save the states to %s: %s", self.path, exc)
            return False
        self.saves += 1
        self.last_states = count
        self.last_bytes = len(data)
        self.last_seconds = time.perf_counter() - started
        log.debug("saved %d states (%d bytes) in %.3f s", count, len(data), self.last_seconds)
        return True

    async def close(self) -> bool:
        """Stop saving on changes and write the table once more (the data path must be stopped already);
        whether that last write succeeded."""
        self._loop = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        task = self._task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return await asyncio.to_thread(self._write, self.core.table.shards, self._clock(), self._wall())

    def metrics(self) -> list[Metric]:
        report = self.restored
        return [
            Metric(
                "restored_states",
                "gauge",
                "What became of the saved states at start: restored, expired meanwhile, on a port no longer "
                "listened on, refused (outside the prefixes or the caps).",
                (
                    ({"outcome": "restored"}, report.restored),
                    ({"outcome": "expired"}, report.expired),
                    ({"outcome": "port_gone"}, report.port_gone),
                    ({"outcome": "refused"}, report.refused),
                ),
            ),
            Metric.single(
                "state_file_refused",
                "gauge",
                "1 when the saved states were refused at start (damaged, foreign or unreadable file).",
                int(self.refused is not None),
            ),
            Metric.single("state_saves_total", "counter", "Snapshots of the state table written.", self.saves),
            Metric.single("state_save_errors_total", "counter", "Snapshots that could not be written.", self.errors),
            Metric.single("state_save_last_states", "gauge", "States in the last snapshot written.", self.last_states),
            Metric.single("state_save_last_bytes", "gauge", "Size of the last snapshot written.", self.last_bytes),
            Metric.single(
                "state_save_last_seconds",
                "gauge",
                "Time the last snapshot took to encode and write.",
                self.last_seconds,
            ),
        ]
