"""Who owns which lab namespaces, so that labs of dead runs can be removed and no other ever is.

Each run gets a random id; its namespaces are named `m6t-<id>-<host>`. Before creating any namespace
the run writes /run/m6t-lab/<id>.json with its PID and that PID's start time (PIDs get reused). A run
is stale when that process is gone; cleanup_stale() then deletes the namespaces carrying its prefix.
Namespaces without a record are never touched, whatever their name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from m6t.lab import netns
from m6t.lab.errors import LabError

STATE_DIR = Path("/run/m6t-lab")
NAME_PREFIX = "m6t-"
# Start times from psutil are exact for one process; the slack only absorbs float formatting.
_START_TIME_SLACK = 0.5


@dataclass(frozen=True)
class RunRecord:
    """The on-disk claim of one run on the namespaces named with its prefix."""

    run_id: str
    pid: int
    pid_start_time: float
    created_at: float

    @property
    def prefix(self) -> str:
        """The namespace name prefix of this run, e.g. 'm6t-a1b2c3-'."""
        return f"{NAME_PREFIX}{self.run_id}-"

    @property
    def path(self) -> Path:
        """Where the record lives."""
        return STATE_DIR / f"{self.run_id}.json"


def process_start_time(pid: int) -> float | None:
    """The start time of a live process, or None when there is no such process."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None


def owner_alive(record: RunRecord) -> bool:
    """True when the process that wrote the record still runs (the same process, not a reused PID)."""
    started = process_start_time(record.pid)
    return started is not None and abs(started - record.pid_start_time) < _START_TIME_SLACK


def new_record() -> RunRecord:
    """Claim a fresh run id for the current process and write its record."""
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    pid = os.getpid()
    started = process_start_time(pid)
    if started is None:
        raise LabError("cannot read this process's start time")
    existing = set(netns.list_namespaces())
    for _ in range(32):
        record = RunRecord(secrets.token_hex(3), pid, started, time.time())
        if record.path.exists() or any(name.startswith(record.prefix) for name in existing):
            continue
        _write(record)
        return record
    raise LabError("could not find an unused lab run id")


def _write(record: RunRecord) -> None:
    tmp = record.path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    os.replace(tmp, record.path)


def remove_record(record: RunRecord) -> None:
    """Drop a run's record (its namespaces must be gone already)."""
    with contextlib.suppress(FileNotFoundError):
        record.path.unlink()


def read_records() -> list[RunRecord]:
    """All run records; unreadable files are skipped rather than guessed at."""
    records: list[RunRecord] = []
    if not STATE_DIR.is_dir():
        return records
    for path in sorted(STATE_DIR.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            record = RunRecord(
                run_id=str(data["run_id"]),
                pid=int(data["pid"]),
                pid_start_time=float(data["pid_start_time"]),
                created_at=float(data["created_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if path.stem == record.run_id:
            records.append(record)
    return records


def namespaces_of(record: RunRecord, existing: list[str] | None = None) -> list[str]:
    """The existing namespaces that carry this run's prefix."""
    names = netns.list_namespaces() if existing is None else existing
    return [name for name in names if name.startswith(record.prefix)]


def cleanup_stale() -> list[str]:
    """Delete the namespaces (and processes in them) of runs whose owner died; return what was removed."""
    removed: list[str] = []
    existing = netns.list_namespaces()
    for record in read_records():
        if owner_alive(record):
            continue
        for name in namespaces_of(record, existing):
            netns.delete(name)
            removed.append(name)
        remove_record(record)
    return removed
