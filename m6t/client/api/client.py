"""A small client library for the control API: blocking (:class:`HelperClient`) and asyncio
(:class:`AsyncHelperClient`).  The CLI, the demo and the tests use it; the GUI speaks the same schema
over QLocalSocket.  Both reach the helper through the platform's control channel (a Unix socket, a
named pipe), so nothing here knows the OS.

Both read the server's ``hello`` on connect, send requests with increasing ids, return a reply's
``result`` or raise :class:`RequestFailed` carrying the numbered error, and buffer events that
arrive while waiting for a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Self

from m6t.client.api import schema
from m6t.client.api.schema import ErrorCode, ErrorInfo, Event, Hello, Method
from m6t.platform import control_transport
from m6t.platform.base import ControlServerUntrusted, ControlStream, ControlTransport, PlatformError
from m6t.platform.hints import conventions

DEFAULT_TIMEOUT_S = 15.0
_MAX_SERVER_LINE = 64 * 1024 * 1024
"""A sanity bound on server lines (a diagnostics bundle is the longest, far below this)."""


class HelperError(Exception):
    """Anything that went wrong talking to the helper; ``str()`` is one sentence for the user."""


class HelperUnavailable(HelperError):
    def __init__(self, path: str, reason: str = "") -> None:
        self.path = path
        self.reason = reason
        self.sentence = f"cannot reach the helper at {path}: is m6t-helper running? ({conventions().start_helper})"
        """What to tell a user, without the OS's reason."""
        super().__init__(self.sentence + (f" [{reason}]" if reason else ""))


class HelperImpostor(HelperError):
    """Another program serves the helper's address (a Windows pipe name taken first): nothing was sent to it."""

    def __init__(self, path: str, refusal: ControlServerUntrusted) -> None:
        self.path = path
        hint = f" ({refusal.hint})" if refusal.hint else ""
        super().__init__(f"refusing to talk to {path}: {refusal}{hint}")


class ConnectionLost(HelperError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"the helper at {path} closed the connection")


class HelperTimeout(HelperError):
    pass


class RequestFailed(HelperError):
    """The helper answered with an error."""

    def __init__(self, error: ErrorInfo) -> None:
        self.error = error
        self.code: ErrorCode | int = schema.code_from_wire(error.get("code")) or int(error.get("code", 0))
        self.message: str = str(error.get("message", ""))
        self.hint: str | None = error.get("hint")
        self.problems: list[schema.Problem] = list(error.get("problems", []))
        super().__init__(self.message)


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__


def _check_hello(message: dict[str, Any], path: str) -> Hello:
    if message.get("type") != "hello":
        raise HelperError(f"the program at {path} does not speak the m6t control API")
    if message.get("version") != schema.PROTOCOL_VERSION:
        raise HelperError(
            f"the helper at {path} speaks control API version {message.get('version')}, "
            f"this program version {schema.PROTOCOL_VERSION}: update m6t"
        )
    return message  # type: ignore[return-value]


def _result(message: dict[str, Any]) -> Any:
    if message.get("ok"):
        return message.get("result")
    error = message.get("error")
    if not isinstance(error, dict):
        error = schema.error_info(ErrorCode.INTERNAL, "The helper sent a malformed error.")
    raise RequestFailed(error)  # type: ignore[arg-type]


class HelperClient:
    """Blocking client.  ``with HelperClient(path) as h: h.call("status")``."""

    def __init__(
        self,
        path: str = schema.DEFAULT_SOCKET_PATH,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        *,
        transport: ControlTransport | None = None,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self._transport = transport
        self._stream: ControlStream | None = None
        self._buffer = bytearray()
        self._ids = itertools.count(1)
        self._events: deque[Event] = deque()
        self.hello: Hello | None = None

    def connect(self) -> Self:
        try:
            transport = self._transport or control_transport()
            self._stream = transport.connect(self.path, self.timeout)
        except ControlServerUntrusted as exc:
            raise HelperImpostor(self.path, exc) from None
        except (OSError, ValueError, PlatformError) as exc:
            raise HelperUnavailable(self.path, _reason(exc)) from None
        try:
            self.hello = _check_hello(self._read_message(self.timeout), self.path)
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> Self:
        return self.connect() if self._stream is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _read_message(self, timeout: float | None) -> dict[str, Any]:
        assert self._stream is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                if not line.strip():
                    continue
                try:
                    return schema.decode(line)
                except schema.ProtocolError:
                    raise HelperError(f"the helper at {self.path} sent an unreadable line") from None
            if len(self._buffer) > _MAX_SERVER_LINE:
                raise HelperError(f"the helper at {self.path} sent an overlong line")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise HelperTimeout(f"the helper at {self.path} did not answer in time")
            try:
                chunk = self._stream.receive(remaining)
            except TimeoutError:
                raise HelperTimeout(f"the helper at {self.path} did not answer in time") from None
            except OSError:
                raise ConnectionLost(self.path) from None
            if not chunk:
                raise ConnectionLost(self.path)
            self._buffer += chunk

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (tests of the server's robustness)."""
        if self._stream is None:
            self.connect()
        assert self._stream is not None
        self._stream.send(data, self.timeout)

    def read_message(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """The next line from the server, whatever its type."""
        return self._read_message(timeout)

    def call(self, method: Method | str, params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """Send a request and return its result; events arriving meanwhile are kept for :meth:`next_event`."""
        if self._stream is None:
            self.connect()
        request_id = next(self._ids)
        self.send_raw(schema.encode(schema.request(request_id, method, params)))
        wait = self.timeout if timeout is None else timeout
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
            message = self._read_message(remaining)
            kind = message.get("type")
            if kind == "event":
                self._events.append(message)  # type: ignore[arg-type]
            elif kind == "reply" and message.get("id") in (request_id, None):
                return _result(message)

    def subscribe(self, events: list[str] | None = None) -> dict[str, Any]:
        params = {"events": events} if events is not None else None
        result: dict[str, Any] = self.call(Method.SUBSCRIBE, params)
        return result

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event, or ``None`` after ``timeout`` seconds without one."""
        if self._events:
            return self._events.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            try:
                message = self._read_message(remaining)
            except HelperTimeout:
                return None
            if message.get("type") == "event":
                return message  # type: ignore[return-value]

    def events(self) -> Iterator[Event]:
        while True:
            event = self.next_event(None)
            if event is not None:
                yield event


class AsyncHelperClient:
    """asyncio client.  ``async with await AsyncHelperClient.open(path) as h: await h.call("up")``."""

    def __init__(self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hello: Hello) -> None:
        self.path = path
        self.hello = hello
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._closed = False
        self._task = asyncio.ensure_future(self._read_loop())

    @classmethod
    async def open(
        cls,
        path: str = schema.DEFAULT_SOCKET_PATH,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        transport: ControlTransport | None = None,
    ) -> AsyncHelperClient:
        try:
            opening = (transport or control_transport()).open_connection(path, limit=_MAX_SERVER_LINE)
            reader, writer = await asyncio.wait_for(opening, timeout)
        except ControlServerUntrusted as exc:
            raise HelperImpostor(path, exc) from None
        except (TimeoutError, OSError, ValueError, PlatformError) as exc:
            raise HelperUnavailable(path, _reason(exc)) from None
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        except (TimeoutError, OSError, ValueError) as exc:
            writer.close()
            raise HelperUnavailable(path, _reason(exc)) from None
        if not line:
            writer.close()
            raise ConnectionLost(path)
        try:
            hello = _check_hello(schema.decode(line), path)
        except (HelperError, schema.ProtocolError):
            writer.close()
            raise
        return cls(path, reader, writer, hello)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    async def _read_loop(self) -> None:
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    message = schema.decode(line)
                except schema.ProtocolError:
                    continue
                kind = message.get("type")
                if kind == "event":
                    self._events.put_nowait(message)  # type: ignore[arg-type]
                elif kind == "reply":
                    request_id = message.get("id")
                    if request_id is None and self._pending:
                        request_id = min(self._pending)
                    future = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
                    if future is not None and not future.done():
                        future.set_result(message)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionLost(self.path))
            self._pending.clear()
            self._events.put_nowait(None)

    async def call(
        self, method: Method | str, params: dict[str, Any] | None = None, timeout: float | None = DEFAULT_TIMEOUT_S
    ) -> Any:
        if self._closed or self._task.done():
            raise ConnectionLost(self.path)
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(schema.encode(schema.request(request_id, method, params)))
            await self._writer.drain()
            message = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise HelperTimeout(f"the helper at {self.path} did not answer {method} in time") from None
        except (ConnectionError, OSError):
            raise ConnectionLost(self.path) from None
        finally:
            self._pending.pop(request_id, None)
        return _result(message)

    async def subscribe(self, events: list[str] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(Method.SUBSCRIBE, {"events": events} if events is not None else None)
        return result

    async def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event, ``None`` on timeout; raises :class:`ConnectionLost` when the helper goes away."""
        try:
            event = await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            return None
        if event is None:
            self._events.put_nowait(None)
            raise ConnectionLost(self.path)
        return event

    async def events(self) -> AsyncIterator[Event]:
        while True:
            event = await self.next_event(None)
            if event is not None:
                yield event
