"""The gateway's state table as bytes and back, so that a restart keeps every mobile node (sans I/O).

A snapshot holds, for each state, exactly what the core binds (draft 2.4): the MN's IPv6 address, the
IPv4 address and UDP port it came from, the local *port* it arrived on (not the socket index, which
depends on the order of the configured ports), whether it is active, and when it expires.  Expiry is
wall-clock time: monotonic clocks start again at each boot, so only the wall clock means the same thing
to the process that wrote the file and the one that reads it.

Layout (network byte order), fixed-size so that parsing is a length check and a loop::

    header   "M6TGWSTA" | version u16 | reserved u16 (0) | count u32 | saved_at_ms u64
    record   address 16s | ipv4 u32 | port u16 | local_port u16 | flags u8 (bit 0: active) | expires_ms u64
    trailer  CRC-32 of everything before it, u32

The parser is strict: a wrong magic, version, length, checksum, flag bit, zero port or address, or an
address seen twice refuses the whole file with a :class:`SnapshotError` saying why.  A half-written or
foreign file is never half-restored.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple

from m6t.gateway.states import DEADLINE_SHIFT, ENDPOINT_BITS, pack_endpoint

if TYPE_CHECKING:
    from m6t.gateway.core import GatewayCore

STATE_FILE: Final = "states.m6t"
"""The snapshot's name in the gateway's state directory."""
MAGIC: Final = b"M6TGWSTA"
VERSION: Final = 1
HEADER: Final = struct.Struct("!8sHHIQ")
RECORD: Final = struct.Struct("!16sIHHBQ")
TRAILER: Final = struct.Struct("!I")
ACTIVE_FLAG: Final = 1
COPY_SHARDS_PER_TURN: Final = 2
"""Table shards a save copies per turn of the loop: a few thousand states each at a million, about a
millisecond, so packets never wait longer than a garbage-collection slice lets them."""
SAVE_DUTY: Final = 10
"""A save waits at least this many times as long as the last one took: with a very large table under
constant change, saving takes at most a tenth of the interpreter the data path shares with it."""
MAX_RECORDS: Final = (1 << 32) - 1
MAX_MS: Final = (1 << 64) - 1


class SnapshotError(ValueError):
    """The bytes are not a snapshot this gateway can restore; the message says why, for the log."""


class Record(NamedTuple):
    """One state as saved."""

    address: int
    """The mobile node's IPv6 address, as an integer."""
    ipv4: int
    port: int
    local_port: int
    """The gateway's UDP port the state's first packet arrived on."""
    active: bool
    expires_ms: int
    """Wall-clock expiry, milliseconds since the Unix epoch."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    saved_at_ms: int
    records: list[Record]


def encode(records: Iterable[Record], saved_at_ms: int) -> bytes:
    """The file's bytes for these states; ValueError for a record that could not be read back."""
    pack = RECORD.pack
    body = bytearray()
    seen: set[int] = set()
    count = 0
    for address, ipv4, port, local_port, active, expires_ms in records:
        if address in seen:
            raise ValueError(f"address {address:#x} twice")
        seen.add(address)
        _check(address, ipv4, port, local_port, expires_ms)
        body += pack(address.to_bytes(16, "big"), ipv4, port, local_port, ACTIVE_FLAG if active else 0, expires_ms)
        count += 1
    if count > MAX_RECORDS:
        raise ValueError(f"{count} states do not fit a snapshot")
    if not 0 <= saved_at_ms <= MAX_MS:
        raise ValueError(f"saved_at_ms out of range: {saved_at_ms}")
    data = HEADER.pack(MAGIC, VERSION, 0, count, saved_at_ms) + body
    return data + TRAILER.pack(zlib.crc32(data))


def _check(address: int, ipv4: int, port: int, local_port: int, expires_ms: int) -> None:
    if not 0 <= address < 1 << 128:
        raise ValueError(f"not an IPv6 address: {address}")
    if not 0 < ipv4 < 1 << 32:
        raise ValueError(f"not a usable IPv4 address: {ipv4}")
    if not 0 < port < 1 << 16 or not 0 < local_port < 1 << 16:
        raise ValueError(f"ports must be 1..65535, not {port} and {local_port}")
    if not 0 <= expires_ms <= MAX_MS:
        raise ValueError(f"expiry out of range: {expires_ms}")


def decode(data: bytes) -> Snapshot:
    """The states in ``data``; :class:`SnapshotError` for anything but a whole, intact, version-1 file."""
    if len(data) < HEADER.size + TRAILER.size:
        raise SnapshotError(f"too short for a state file ({len(data)} bytes)")
    magic, version, reserved, count, saved_at_ms = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotError("not an m6t gateway state file (wrong magic)")
    if version != VERSION:
        raise SnapshotError(f"state file version {version}, this gateway reads version {VERSION}")
    if reserved != 0:
        raise SnapshotError(f"reserved header field is {reserved}, not 0")
    expected = HEADER.size + count * RECORD.size + TRAILER.size
    if len(data) != expected:
        raise SnapshotError(f"{len(data)} bytes where {count} states take {expected}: truncated or padded")
    (checksum,) = TRAILER.unpack_from(data, len(data) - TRAILER.size)
    if zlib.crc32(memoryview(data)[: len(data) - TRAILER.size]) != checksum:
        raise SnapshotError("checksum mismatch: the file is damaged")
    records: list[Record] = []
    append = records.append
    make = tuple.__new__
    from_bytes = int.from_bytes
    for index, (raw, ipv4, port, local_port, flags, expires_ms) in enumerate(
        RECORD.iter_unpack(memoryview(data)[HEADER.size : len(data) - TRAILER.size])
    ):
        if flags & ~ACTIVE_FLAG:
            raise SnapshotError(f"state {index}: unknown flags {flags:#x}")
        if not ipv4 or not port or not local_port:
            raise SnapshotError(f"state {index}: a zero IPv4 address or port")
        # tuple.__new__: a NamedTuple's own constructor is a Python call, a third of the cost at a million.
        append(make(Record, (from_bytes(raw, "big"), ipv4, port, local_port, flags == ACTIVE_FLAG, expires_ms)))
    if len({record.address for record in records}) != count:
        raise SnapshotError("an address appears twice")
    return Snapshot(saved_at_ms, records)


# --------------------------------------------------------------------------- the core's side


def encode_shards(
    shards: Iterable[dict[int, int]],
    ports: Sequence[int],
    *,
    tick_s: float,
    now_tick: int,
    mono_now: float,
    wall_now: float,
) -> tuple[bytes, int]:
    """The file's bytes for the packed states of :class:`~m6t.gateway.states.StateTable` shards (copies of
    them), and how many states it holds.

    States due at or before ``now_tick`` are left out; deadlines in ticks of the monotonic clock become
    wall-clock milliseconds through one pair of readings (``mono_now``, ``wall_now``) of both clocks.
    Packed straight from the table's ints, without a record object per state: this runs at every save.
    """
    offset_ms = (wall_now - mono_now) * 1000.0
    tick_ms = tick_s * 1000.0
    nports = len(ports)
    pack = RECORD.pack
    parts: list[bytes] = []
    append = parts.append
    for shard in shards:
        for address, value in shard.items():
            deadline = value >> DEADLINE_SHIFT
            sock = value & 0xFF
            if deadline <= now_tick or sock >= nports:
                continue
            expires_ms = int(deadline * tick_ms + offset_ms) + 1
            append(
                pack(
                    address.to_bytes(16, "big"),
                    value >> 24 & 0xFFFFFFFF,
                    value >> 8 & 0xFFFF,
                    ports[sock],
                    value >> ENDPOINT_BITS & 1,
                    expires_ms if expires_ms > 0 else 0,
                )
            )
    count = len(parts)
    data = HEADER.pack(MAGIC, VERSION, 0, count, max(0, int(wall_now * 1000))) + b"".join(parts)
    return data + TRAILER.pack(zlib.crc32(data)), count


@dataclass(slots=True)
class RestoreReport:
    """What became of a snapshot's states at start-up."""

    restored: int = 0
    expired: int = 0
    """Due before the gateway started again."""
    port_gone: int = 0
    """Arrived on a port the gateway no longer listens on: their mobile nodes cannot be reached through it."""
    refused: int = 0
    """Outside the configured prefixes now, already present, or beyond the caps."""
    offered: int = 0
    """Handed to the core: restored or refused."""

    @property
    def total(self) -> int:
        return self.restored + self.expired + self.port_gone + self.refused


def restore_records(
    core: GatewayCore, records: Iterable[Record], ports: Sequence[int], *, mono_now: float, wall_now: float
) -> RestoreReport:
    """Put the saved states back into a fresh core, each on the socket of the port it arrived on."""
    report = RestoreReport()
    socket_of = {port: index for index, port in enumerate(ports)}
    wall_ms = wall_now * 1000.0

    def usable() -> Iterator[tuple[int, int, bool, float]]:
        for address, ipv4, port, local_port, active, expires_ms in records:
            remaining_ms = expires_ms - wall_ms
            if remaining_ms <= 0:
                report.expired += 1
                continue
            sock = socket_of.get(local_port)
            if sock is None:
                report.port_gone += 1
                continue
            report.offered += 1
            yield address, pack_endpoint(ipv4, port, sock), active, remaining_ms / 1000.0

    report.restored = core.restore(usable(), mono_now)
    report.refused = report.offered - report.restored
    return report
