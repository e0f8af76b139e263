"""The control channel on Windows: the named pipe ``\\\\.\\pipe\\m6t-helper``, served from asyncio's Proactor loop.

asyncio's own pipe server (``start_serving_pipe``) creates its pipes with a NULL security descriptor, whose
ACLs "grant full control to the LocalSystem account, administrators, and the creator owner. They also grant
read access to members of the Everyone group and the anonymous account": the tray, which writes, could not
connect.  So the pipe is created here (:class:`~m6t.platform.windows.pipes.NamedPipes`), with
:data:`SECURITY_DESCRIPTOR`:

``D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGW;;;AU)S:(ML;;NW;;;ME)``

* ``D;;GA;;;NU`` first: deny everything to a token holding NETWORK (S-1-5-2), i.e. a network logon -- an SMB
  client, but also a process of a local network logon session (WinRM, an SSH session), which
  PIPE_REJECT_REMOTE_CLIENTS alone would let in.  Deny entries come first because "the system reads the ACEs
  in sequence until access is granted or denied".
* ``A;;GA;;;SY`` and ``A;;GA;;;BA``: LocalSystem (the service) and Administrators (a console run) own the
  pipe, including FILE_CREATE_PIPE_INSTANCE for the instances after the first.
* ``A;;GRGW;;;AU``: every other authenticated local account reads and writes -- the control API lets anybody
  read and decides per request who may change things (:mod:`m6t.client.api.authorization`), as the Unix
  socket's mode 0666 does.  Anonymous and app-container tokens are not Authenticated Users.
* ``S:(ML;;NW;;;ME)``: a medium integrity label, no write up.  Medium is what an unlabelled object counts as
  ("Objects that lack an integrity label are treated as medium by the operating system"), but "objects you
  create receive your integrity level" and the service's is System: said explicitly, the tray (medium) can
  write and sandboxed low-integrity processes cannot, whoever creates the pipe.
* ``P``: nothing inherited.  No owner or group: they default to the creator (LocalSystem, or Administrators
  for an elevated console run); naming one the creator does not hold would fail.

GENERIC_WRITE on a pipe "combines the rights to write data to the pipe, append data to it, write pipe
attributes, write extended attributes, and read the pipe's DACL", and FILE_APPEND_DATA is the same bit as
FILE_CREATE_PIPE_INSTANCE: granting it lets those users create instances of the pipe too.  It cannot be left
out -- Qt's QLocalSocket, which the tray uses, opens pipes for GENERIC_READ | GENERIC_WRITE.

The first instance is created with FILE_FLAG_FIRST_PIPE_INSTANCE, so a second helper (or anything already
holding the name) is refused with ERROR_ACCESS_DENIED: :class:`~m6t.platform.base.ControlAddressInUse`.
Afterwards one unconnected instance always waits, as asyncio's ``PipeServer`` does, so that a client never
finds the name missing between two connections.

The loop integration is the thin :class:`PipeLoop`: waiting for an event and wrapping a connected handle in
asyncio streams.  :class:`ProactorPipes` does both with the Proactor's IOCP machinery, the only code here that
needs Windows itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import logging
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from m6t.platform.base import (
    ConnectionHandler,
    ControlAddressInUse,
    ControlConnection,
    ControlListener,
    ControlStream,
    ControlTransport,
    PlatformError,
)
from m6t.platform.windows.peer import identify_client, verify_server
from m6t.platform.windows.pipes import (
    ERROR_ACCESS_DENIED,
    ERROR_OPERATION_ABORTED,
    ERROR_PIPE_BUSY,
    ERROR_SEM_TIMEOUT,
    GONE,
    OVERLAPPED,
    SECURITY_ATTRIBUTES,
    NamedPipes,
    Win32Error,
    milliseconds,
    native_pipe_api,
)

log = logging.getLogger(__name__)

PIPE_PREFIX: Final = "\\\\.\\pipe\\"
DEFAULT_PIPE_NAME: Final = PIPE_PREFIX + "m6t-helper"
MAX_PIPE_NAME: Final = 256
"""Characters in the whole name: "The entire pipe name string can be up to 256 characters long"."""

SECURITY_DESCRIPTOR: Final = "D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGW;;;AU)S:(ML;;NW;;;ME)"

STREAM_LIMIT: Final = 65536
"""The server side's StreamReader bound (the control server reads chunks, never lines)."""
_RECEIVE: Final = 65536
_BUSY_DELAY_MIN, _BUSY_DELAY_MAX = 0.001, 0.1
"""While every instance is busy, the asyncio client retries after these delays (doubling), as asyncio's own
``connect_pipe`` does: WaitNamedPipe would block the loop."""
_RETRY_S: Final = 1.0
"""After the server failed to create or connect an instance, the pause before it tries again."""


def pipe_path(address: str) -> str:
    """``\\\\.\\pipe\\name``, or a bare ``name`` (QLocalSocket's convention), as the full local pipe name;
    :class:`ValueError` for anything else (a socket path, another computer's pipe)."""
    name = address[len(PIPE_PREFIX) :] if address.lower().startswith(PIPE_PREFIX) else address
    if not name or "\\" in name or (name is address and "/" in name):
        raise ValueError(f"{address} is not a local named pipe (such as {DEFAULT_PIPE_NAME})")
    path = PIPE_PREFIX + name
    if len(path) > MAX_PIPE_NAME:
        raise ValueError(f"{address} is longer than a pipe name may be ({MAX_PIPE_NAME} characters)")
    return path


class PipeLoop(Protocol):
    """What the transport needs from the running event loop beyond asyncio's public API."""

    def wait_for_event(self, event: int) -> asyncio.Future[Any]:
        """A future done once the (manual-reset) event is signaled; cancelling it stops the wait."""

    async def open_streams(self, pipe: int, limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """asyncio streams over a connected overlapped pipe handle, which they then own (and close, also when
        this fails)."""


class ProactorPipes:
    """:class:`PipeLoop` on asyncio's Proactor loop (Windows' default), through the IOCP machinery asyncio's
    own pipe server and client use: ``IocpProactor.wait_for_handle`` (RegisterWaitForSingleObject, posted to
    the completion port) and the duplex pipe transport over ``windows_utils.PipeHandle``, which reads and
    writes with overlapped ReadFile/WriteFile on the completion port and closes the handle with the
    transport.  These are private to asyncio (stable since Python 3.4, used by ``create_pipe_connection``)."""

    @staticmethod
    def _loop() -> Any:
        loop: Any = asyncio.get_running_loop()
        if getattr(loop, "_proactor", None) is None or not hasattr(loop, "_make_duplex_pipe_transport"):
            raise PlatformError(
                "the control pipe needs asyncio's Proactor event loop",
                hint="do not switch Windows to the selector event loop policy",
            )
        return loop

    def wait_for_event(self, event: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop()._proactor.wait_for_handle(event)
        return future

    async def open_streams(self, pipe: int, limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = self._loop()
        handle = importlib.import_module("asyncio.windows_utils").PipeHandle(pipe)
        try:
            reader = asyncio.StreamReader(limit=limit, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            waiter = loop.create_future()
            transport = loop._make_duplex_pipe_transport(handle, protocol, waiter=waiter)
        except BaseException:
            handle.close()
            raise
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class NamedPipeListener(ControlListener):
    def __init__(self, address: str, pipes: NamedPipes, loop_pipes: PipeLoop) -> None:
        self.address = address
        self._pipes = pipes
        self._loop_pipes = loop_pipes
        self._descriptor: int | None = None
        self._attributes = SECURITY_ATTRIBUTES()
        self._event: int | None = None
        self._waiting: int | None = None
        """The instance no client has reached yet: ours to close until it is handed over."""
        self._serving: asyncio.Task[None] | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self, on_connection: ConnectionHandler) -> None:
        try:
            path = pipe_path(self.address)
        except ValueError as exc:
            raise PlatformError(str(exc), hint=f"use --socket {DEFAULT_PIPE_NAME}") from None
        try:
            self._descriptor = self._pipes.security_descriptor(SECURITY_DESCRIPTOR)
            self._attributes = SECURITY_ATTRIBUTES(ctypes.sizeof(SECURITY_ATTRIBUTES), self._descriptor, False)
            self._event = self._pipes.create_event()
            self._waiting = self._pipes.create_named_pipe(path, first=True, attributes=self._attributes)
        except Win32Error as exc:
            self._release()
            if exc.code in (ERROR_ACCESS_DENIED, ERROR_PIPE_BUSY):
                raise ControlAddressInUse(
                    f"another m6t-helper (or another program) already serves {path}",
                    hint="stop the other m6t-helper first (sc stop m6t-helper)",
                ) from None
            raise
        self._serving = asyncio.get_running_loop().create_task(self._serve(path, on_connection))

    def close(self) -> None:
        if self._serving is not None:
            self._serving.cancel()

    async def wait_closed(self) -> None:
        """The name goes away with the last instance: the connected ones close with their clients."""
        if self._serving is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._serving
            self._serving = None
        self._release()

    def _release(self) -> None:
        if self._waiting is not None:
            with contextlib.suppress(OSError):
                self._pipes.close_handle(self._waiting)
            self._waiting = None
        if self._event is not None:
            with contextlib.suppress(OSError):
                self._pipes.close_handle(self._event)
            self._event = None
        if self._descriptor is not None:
            with contextlib.suppress(OSError):
                self._pipes.local_free(self._descriptor)
            self._descriptor = None

    async def _serve(self, path: str, on_connection: ConnectionHandler) -> None:
        """Accept forever.  The next instance is created before the last one is handed over or closed, so the
        name never lapses: a client arriving meanwhile finds the pipe busy at worst, never missing."""
        while True:
            if self._waiting is None:
                self._waiting = self._instance(path)
                if self._waiting is None:
                    await asyncio.sleep(_RETRY_S)
                    continue
            pipe = self._waiting
            failure: OSError | None = None
            try:
                connected = await self._accept(pipe)
            except OSError as exc:
                connected, failure = False, exc
            self._waiting = self._instance(path)
            if not connected:
                with contextlib.suppress(OSError):
                    self._pipes.close_handle(pipe)
                if failure is not None:
                    log.warning("waiting for a client on %s failed: %s", path, failure)
                    await asyncio.sleep(_RETRY_S)
                continue
            peer = identify_client(self._pipes, pipe, time.time())
            try:
                reader, writer = await self._loop_pipes.open_streams(pipe, STREAM_LIMIT)
            except Exception as exc:
                log.warning("cannot serve a client of %s: %s", path, exc)
                continue
            task = asyncio.get_running_loop().create_task(
                self._serve_client(ControlConnection(reader, writer, peer), on_connection)
            )
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)

    def _instance(self, path: str) -> int | None:
        try:
            return self._pipes.create_named_pipe(path, first=False, attributes=self._attributes)
        except OSError as exc:
            log.warning("cannot create another instance of %s: %s", path, exc)
            return None

    async def _accept(self, pipe: int) -> bool:
        """Wait for a client on ``pipe``; ``False`` when one came and left before we saw it."""
        assert self._event is not None
        overlapped = OVERLAPPED(hEvent=self._event)
        self._pipes.reset_event(self._event)
        try:
            if self._pipes.start_connect(pipe, overlapped):
                return True
        except Win32Error as exc:
            if exc.code in GONE:
                return False
            raise
        try:
            await self._loop_pipes.wait_for_event(self._event)
        except asyncio.CancelledError:
            # The OVERLAPPED must outlive the operation: cancel it and wait until Windows lets go of it.
            with contextlib.suppress(OSError):
                self._pipes.cancel(pipe, overlapped)
                self._pipes.overlapped_result(pipe, overlapped, wait=True)
            raise
        try:
            self._pipes.overlapped_result(pipe, overlapped, wait=False)
        except Win32Error as exc:
            if exc.code in GONE:
                return False
            raise
        return True

    @staticmethod
    async def _serve_client(connection: ControlConnection, on_connection: ConnectionHandler) -> None:
        try:
            await on_connection(connection)
        except Exception:
            log.exception("the control connection handler failed")
            connection.writer.close()


StartIo = Callable[[int, "ctypes.Array[ctypes.c_char]", OVERLAPPED], bool]
"""``NamedPipes.start_read`` or ``start_write``."""


class NamedPipeStream(ControlStream):
    """The CLI's blocking end: overlapped ReadFile/WriteFile on an event, bounded by WaitForSingleObject."""

    def __init__(self, pipes: NamedPipes, handle: int) -> None:
        self._pipes = pipes
        self._handle: int | None = handle
        self._events: list[int] = []
        try:
            for _ in ("read", "write"):
                self._events.append(pipes.create_event())
        except BaseException:
            self.close()
            raise

    def send(self, data: bytes, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        view = memoryview(data)
        while view:
            buffer = (ctypes.c_char * len(view)).from_buffer_copy(view)
            sent = self._transfer(self._pipes.start_write, buffer, self._events[1], deadline, "WriteFile")
            view = view[sent:]

    def receive(self, timeout: float | None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        buffer = ctypes.create_string_buffer(_RECEIVE)
        while True:
            try:
                received = self._transfer(self._pipes.start_read, buffer, self._events[0], deadline, "ReadFile")
            except Win32Error as exc:
                if exc.code in GONE:
                    return b""
                raise
            if received:
                return buffer.raw[:received]

    def _transfer(
        self, start: StartIo, buffer: ctypes.Array[ctypes.c_char], event: int, deadline: float | None, what: str
    ) -> int:
        handle = self._handle
        if handle is None:
            raise OSError(f"{what}: the pipe is closed")
        overlapped = OVERLAPPED(hEvent=event)
        if start(handle, buffer, overlapped):
            return self._pipes.overlapped_result(handle, overlapped, wait=False)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if self._pipes.wait(event, milliseconds(remaining)):
            return self._pipes.overlapped_result(handle, overlapped, wait=False)
        self._pipes.cancel(handle, overlapped)
        try:
            # Completed while we cancelled: its bytes count.
            return self._pipes.overlapped_result(handle, overlapped, wait=True)
        except Win32Error as exc:
            if exc.code == ERROR_OPERATION_ABORTED:
                raise TimeoutError(f"{what}: the helper did not answer in time") from None
            raise

    def close(self) -> None:
        handle, self._handle = self._handle, None
        for item in [*self._events, *([handle] if handle is not None else [])]:
            with contextlib.suppress(OSError):
                self._pipes.close_handle(item)
        self._events = []


class NamedPipeTransport(ControlTransport):
    """Both ends of the control pipe; the client end checks who serves it before it is used
    (:func:`~m6t.platform.windows.peer.verify_server`).  ``pipes`` and ``loop_pipes`` default to Windows' own
    (the tests pass emulations); the DLLs are loaded on first use."""

    def __init__(self, pipes: NamedPipes | None = None, loop_pipes: PipeLoop | None = None) -> None:
        self._pipes = pipes
        self._loop_pipes: PipeLoop = loop_pipes if loop_pipes is not None else ProactorPipes()

    @property
    def pipes(self) -> NamedPipes:
        if self._pipes is None:
            self._pipes = NamedPipes(native_pipe_api())
        return self._pipes

    def listener(self, address: str) -> ControlListener:
        return NamedPipeListener(address, self.pipes, self._loop_pipes)

    def connect(self, address: str, timeout: float | None) -> ControlStream:
        """CreateFileW; while every instance is busy (ERROR_PIPE_BUSY), WaitNamedPipeW for one, within
        ``timeout``: "A subsequent CreateFile call to the pipe can fail, because the instance was closed by
        the server or opened by another client", so it loops."""
        path = pipe_path(address)
        pipes = self.pipes
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                handle = pipes.open_pipe(path)
            except Win32Error as exc:
                if exc.code != ERROR_PIPE_BUSY:
                    raise
            else:
                self._verified(handle, path)
                return NamedPipeStream(pipes, handle)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"every instance of {path} stayed busy")
            try:
                pipes.wait_pipe(path, milliseconds(remaining))
            except Win32Error as exc:
                if exc.code == ERROR_SEM_TIMEOUT:
                    raise TimeoutError(f"every instance of {path} stayed busy") from None
                raise

    async def open_connection(self, address: str, *, limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """CreateFileW, retried while every instance is busy; then the loop's streams own the handle."""
        path = pipe_path(address)
        pipes = self.pipes
        delay = _BUSY_DELAY_MIN
        while True:
            try:
                handle = pipes.open_pipe(path)
                break
            except Win32Error as exc:
                if exc.code != ERROR_PIPE_BUSY:
                    raise
            await asyncio.sleep(delay)
            delay = min(2 * delay, _BUSY_DELAY_MAX)
        self._verified(handle, path)
        return await self._loop_pipes.open_streams(handle, limit)

    def verify_server(self, native: int) -> None:
        """The pipe behind a client handle opened elsewhere (the tray's QLocalSocket: its socketDescriptor() is
        the pipe's HANDLE) is the helper's: see :func:`m6t.platform.windows.peer.verify_server`."""
        verify_server(self.pipes, native, DEFAULT_PIPE_NAME)

    def _verified(self, handle: int, path: str) -> None:
        """Close ``handle`` and raise unless the helper serves it: nothing is sent to a pipe squatter."""
        try:
            verify_server(self.pipes, handle, path)
        except BaseException:
            with contextlib.suppress(OSError):
                self.pipes.close_handle(handle)
            raise
