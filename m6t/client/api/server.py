"""The control API server: JSON lines of :mod:`m6t.client.api.schema` over the platform's control channel.

The channel (a Unix socket, a named pipe) and who is on the other end come from the platform's
:class:`~m6t.platform.base.ControlListener`; this module owns framing, access and fan-out, and what a
request *does* is the :class:`Handler`'s business (the helper service).  The rules that keep one client
from hurting the helper or the others:

* each connection has its own reader task and writer task, so a slow request or a slow reader only
  ever waits on itself;
* request lines are capped (``MAX_LINE_BYTES``); a longer line is discarded and answered, the
  connection carries on;
* events go through a bounded per-connection queue: when it is full, events for that client are
  dropped and counted (a ``dropped`` event tells it once it catches up); a client that stays full for
  ``stall_timeout`` seconds is disconnected;
* a connection's pending replies are bounded too: its reader pauses (backpressure) until they drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from m6t.client.api import schema
from m6t.client.api.schema import Access, ErrorCode, ErrorInfo, EventKind, Method, ParsedRequest
from m6t.platform.base import ControlConnection, ControlListener, PeerIdentity

log = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS_QUEUED = 1024
DEFAULT_STALL_TIMEOUT_S = 30.0
DEFAULT_MAX_CONNECTIONS = 512
MAX_PENDING_REPLY_BYTES = 8 * 1024 * 1024
_READ_CHUNK = 65536


class ApiError(Exception):
    """Raised by a handler to fail a request with a numbered error."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error["message"])
        self.error = error

    @classmethod
    def of(
        cls,
        code: ErrorCode,
        message: str | None = None,
        *,
        hint: str | None = None,
        problems: list[schema.Problem] | None = None,
        detail: str | None = None,
    ) -> ApiError:
        return cls(schema.error_info(code, message, hint=hint, problems=problems, detail=detail))


class Handler(Protocol):
    async def handle(self, connection: Connection, request: ParsedRequest) -> Any:
        """The request's ``result`` (JSON-able), or raise :class:`ApiError`."""


AccessPolicy = Callable[[PeerIdentity | None], Access]
Authorize = Callable[[PeerIdentity | None, Method], Awaitable[ErrorInfo | None]]
"""Asked before a change a read-only connection requests: ``None`` lets it through, else the refusal to send
(it may wait for the user to authenticate: only this connection waits)."""
PermissionsOf = Callable[[PeerIdentity | None], Awaitable[schema.Permissions]]


class Connection:
    """One client.  Handlers use :attr:`access`, :attr:`peer`, :meth:`subscribe`."""

    def __init__(
        self,
        server: ControlServer,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: PeerIdentity | None,
        access: Access,
    ) -> None:
        self.server = server
        self.number = number
        self.peer = peer
        self.access = access
        self._reader = reader
        self._writer = writer
        self._out: deque[tuple[bytes, bool]] = deque()
        self._out_bytes = 0
        self._events_queued = 0
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False
        self.subscription: frozenset[EventKind] | None = None
        self.dropped = 0
        """Events dropped for this client since it last caught up."""
        self.dropped_total = 0
        self._full_since: float | None = None

    def __repr__(self) -> str:
        uid = None if self.peer is None else self.peer.uid
        return f"<Connection #{self.number} uid={uid} {self.access.value}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self, kinds: Iterable[EventKind] | None = None) -> None:
        self.subscription = frozenset(EventKind) if kinds is None else frozenset(kinds)

    def unsubscribe(self) -> None:
        self.subscription = None

    # -- outgoing

    def send(self, message: Any) -> None:
        """Queue a reply (never dropped: the client asked for it)."""
        self._enqueue(schema.encode(message), is_event=False)

    def offer_event(self, kind: EventKind, line: bytes) -> None:
        if self.subscription is None or kind not in self.subscription or self._closed:
            return
        if self._events_queued >= self.server.max_events_queued:
            now = time.monotonic()
            if self._full_since is None:
                self._full_since = now
            elif now - self._full_since > self.server.stall_timeout:
                log.warning("%r stopped reading events for %.0f s: disconnecting it", self, now - self._full_since)
                self.close(abort=True)
                return
            self.dropped += 1
            self.dropped_total += 1
            self.server.events_dropped += 1
            return
        self._enqueue(line, is_event=True)

    def _enqueue(self, line: bytes, *, is_event: bool) -> None:
        if self._closed:
            return
        self._out.append((line, is_event))
        self._out_bytes += len(line)
        if is_event:
            self._events_queued += 1
        if self._out_bytes > MAX_PENDING_REPLY_BYTES:
            self._drained.clear()
        self._wakeup.set()

    async def _write_loop(self) -> None:
        try:
            while not self._closed:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._out:
                    batch: list[bytes] = []
                    while self._out:
                        line, is_event = self._out.popleft()
                        self._out_bytes -= len(line)
                        if is_event:
                            self._events_queued -= 1
                        batch.append(line)
                    self._writer.write(b"".join(batch))
                    await self._writer.drain()
                    if self._out_bytes <= MAX_PENDING_REPLY_BYTES // 2:
                        self._drained.set()
                # Caught up: say what was missed, so the client knows to re-read the status.
                self._full_since = None
                if self.dropped:
                    count, self.dropped = self.dropped, 0
                    seq = self.server.next_seq()
                    line = schema.encode(
                        schema.event(EventKind.DROPPED, seq, time.time(), {"count": count}),
                    )
                    self._enqueue(line, is_event=False)
        except (ConnectionError, OSError):
            pass
        finally:
            self.close()

    # -- incoming

    async def _read_loop(self) -> None:
        buffer = bytearray()
        discarding = False
        limit = schema.MAX_LINE_BYTES
        try:
            while not self._closed:
                chunk = await self._reader.read(_READ_CHUNK)
                if not chunk:
                    return
                buffer += chunk
                while True:
                    newline = buffer.find(b"\n")
                    if newline < 0:
                        if not discarding and len(buffer) >= limit:
                            discarding = True
                            self._reply_error(None, schema.error_info(ErrorCode.LINE_TOO_LONG, _too_long()))
                        if discarding:
                            buffer.clear()
                        break
                    line = bytes(buffer[:newline])
                    del buffer[: newline + 1]
                    if discarding:
                        # The tail of the oversized line: already answered.
                        discarding = False
                        continue
                    if len(line) + 1 > limit:
                        self._reply_error(None, schema.error_info(ErrorCode.LINE_TOO_LONG, _too_long()))
                        continue
                    if not line.strip():
                        continue
                    await self._process(line)
                    # Backpressure: a client that asks without reading stops being read.
                    await self._drained.wait()
        except (ConnectionError, OSError):
            pass

    def _reply_error(self, request_id: int | str | None, error: ErrorInfo) -> None:
        self.send(schema.error_reply(request_id, error))

    async def _process(self, line: bytes) -> None:
        try:
            request = schema.parse_request(line)
        except schema.ProtocolError as exc:
            self._reply_error(exc.request_id, exc.error)
            return
        if request.method in schema.OPERATOR_METHODS and self.access is not Access.OPERATOR:
            refusal = await self.server.authorize(self.peer, request.method)
            if refusal is not None:
                self._reply_error(request.id, refusal)
                return
        try:
            result = await self.server.handler.handle(self, request)
        except ApiError as exc:
            self._reply_error(request.id, exc.error)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("request %s from %r failed", request.method.value, self)
            self._reply_error(request.id, schema.error_info(ErrorCode.INTERNAL, detail=f"{type(exc).__name__}: {exc}"))
            return
        try:
            self.send(schema.ok_reply(request.id, result))
        except (TypeError, ValueError) as exc:
            log.exception("result of %s is not JSON-able", request.method.value)
            self._reply_error(request.id, schema.error_info(ErrorCode.INTERNAL, detail=str(exc)))

    def close(self, *, abort: bool = False) -> None:
        """Stop serving this client; ``abort`` also drops unsent data (a stuck client would never take it)."""
        if self._closed:
            if abort:
                with contextlib.suppress(Exception):
                    self._writer.transport.abort()
            return
        self._closed = True
        self.subscription = None
        self._wakeup.set()
        self._drained.set()
        with contextlib.suppress(Exception):
            if abort:
                self._writer.transport.abort()
            else:
                self._writer.close()


def _too_long() -> str:
    return f"The request is longer than {schema.MAX_LINE_BYTES // 1024} KiB and was ignored."


class ControlServer:
    def __init__(
        self,
        listener: ControlListener,
        handler: Handler,
        access_policy: AccessPolicy,
        *,
        server_name: str = "m6t-helper",
        forbidden_message: Callable[[Method], ErrorInfo] | None = None,
        authorize: Authorize | None = None,
        permissions: PermissionsOf | None = None,
        max_events_queued: int = DEFAULT_MAX_EVENTS_QUEUED,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.listener = listener
        self.handler = handler
        self.access_policy = access_policy
        self.server_name = server_name
        self.max_events_queued = max_events_queued
        self.stall_timeout = stall_timeout
        self.max_connections = max_connections
        self._forbidden_message = forbidden_message
        self._authorize = authorize
        self._permissions = permissions
        self.connections: set[Connection] = set()
        self.events_dropped = 0
        self._seq = 0
        self._numbers = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def forbidden(self, method: Method) -> ErrorInfo:
        if self._forbidden_message is not None:
            return self._forbidden_message(method)
        return schema.error_info(ErrorCode.FORBIDDEN)

    async def authorize(self, peer: PeerIdentity | None, method: Method) -> ErrorInfo | None:
        """For a read-only connection's change: ``None`` to go ahead, else the refusal."""
        if self._authorize is not None:
            return await self._authorize(peer, method)
        return self.forbidden(method)

    async def start(self) -> None:
        """Serve on the listener; raises what its ``start`` raises (the address is in use, ...)."""
        await self.listener.start(self._accept)

    def broadcast(self, kind: EventKind, data: dict[str, Any]) -> int:
        """Send an event to every subscriber; returns its sequence number."""
        seq = self.next_seq()
        if not self.connections:
            return seq
        line = schema.encode(schema.event(kind, seq, time.time(), data))
        for connection in list(self.connections):
            connection.offer_event(kind, line)
        return seq

    async def _accept(self, accepted: ControlConnection) -> None:
        peer = accepted.peer
        access = self.access_policy(peer)
        connection = Connection(self, next(self._numbers), accepted.reader, accepted.writer, peer, access)
        if len(self.connections) >= self.max_connections:
            connection.send(
                schema.error_reply(
                    None, schema.error_info(ErrorCode.BUSY, "The helper has too many clients connected.")
                )
            )
            writer_task = asyncio.ensure_future(connection._write_loop())
            await asyncio.sleep(0.1)
            connection.close()
            await asyncio.gather(writer_task, return_exceptions=True)
            return
        self.connections.add(connection)
        current = asyncio.current_task()
        if current is not None:
            self._tasks.add(current)
        uid = None if peer is None else peer.uid
        try:
            permissions = await self._permissions(peer) if self._permissions is not None else None
        except BaseException:
            self.connections.discard(connection)
            connection.close(abort=True)
            if current is not None:
                self._tasks.discard(current)
            raise
        connection.send(schema.hello(access, uid, self.server_name, permissions))
        writer_task = asyncio.ensure_future(connection._write_loop())
        self._tasks.add(writer_task)
        try:
            await connection._read_loop()
        finally:
            self.connections.discard(connection)
            connection.close()
            # Let queued lines go out unless the client is gone or stuck.
            try:
                await asyncio.wait_for(asyncio.shield(writer_task), 1.0)
            except (TimeoutError, asyncio.CancelledError, Exception):
                # Ending here anyway; a cancelled handler task would only make asyncio log noise.
                connection.close(abort=True)
            writer_task.cancel()
            self._tasks.discard(writer_task)
            if current is not None:
                self._tasks.discard(current)

    async def close(self) -> None:
        self.listener.close()
        for connection in list(self.connections):
            connection.close()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.listener.wait_closed()
