"""The tray's one line to the helper: the control API over QLocalSocket, reconnecting in the background.

QLocalSocket speaks Unix sockets and Windows named pipes alike, so nothing here knows the OS.  Every
message is built and parsed with :mod:`m6t.client.api.schema`; this module only frames, correlates replies
with their requests, and keeps trying when the helper is not there.

Who serves the address is checked once connected, before a byte is read or sent: on Windows any program may
create the helper's pipe name while the helper is stopped, and wait for the tray.  The check runs on the
connection Qt made (``socketDescriptor()``, the pipe's HANDLE on Windows) with the same code as the CLI's
(:func:`m6t.client.api.host.helper_end_problem`: the pipe must belong to LocalSystem or Administrators).
Checking the very handle that then carries the requests leaves no gap, where a check on a connection of its
own before Qt's could pass on the helper's pipe and Qt then reach a squatter's.  Qt opens the pipe without
SECURITY_SQOS_PRESENT (the CLI asks for identification only), so a squatter could try to impersonate the
tray's user; Windows grants that only to a server holding SeImpersonatePrivilege or running as that same
user -- an administrator or a service, already trusted, or the user themself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtNetwork import QLocalSocket

from m6t.client.api import schema
from m6t.client.api.host import helper_end_problem
from m6t.ui.errors import error_text
from m6t.ui.i18n import QT_TRANSLATE_NOOP

log = logging.getLogger(__name__)

HELLO_TIMEOUT_MS: Final = 5000
"""A server that accepts but never greets is not a helper we can talk to: drop it and retry."""

UNREACHABLE_CODE: Final = 0
"""Code of the failures this side makes up when the helper is gone; never a schema :class:`ErrorCode`."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """A request's answer: ``result`` when ``ok``, else ``error`` (from the helper, or made up if it vanished)."""

    ok: bool
    result: Any = None
    error: schema.ErrorInfo | None = None

    @property
    def message(self) -> str:
        if self.error is None:
            return ""
        return error_text(self.error)


ReplyHandler = Callable[[Outcome], None]


def unreachable_error(message: str) -> schema.ErrorInfo:
    return {"code": UNREACHABLE_CODE, "name": "unreachable", "message": message}


_SOCKET_REASONS: Final[dict[QLocalSocket.LocalSocketError, str]] = {
    QLocalSocket.LocalSocketError.ServerNotFoundError: QT_TRANSLATE_NOOP(
        "HelperConnection", "The m6t helper is not running."
    ),
    QLocalSocket.LocalSocketError.ConnectionRefusedError: QT_TRANSLATE_NOOP(
        "HelperConnection", "The m6t helper is not accepting connections."
    ),
    QLocalSocket.LocalSocketError.SocketAccessError: QT_TRANSLATE_NOOP(
        "HelperConnection", "This user may not open the m6t helper's socket."
    ),
    QLocalSocket.LocalSocketError.PeerClosedError: QT_TRANSLATE_NOOP(
        "HelperConnection", "The m6t helper closed the connection."
    ),
}


class HelperConnection(QObject):
    """Connects, greets, correlates; after any loss, retries with a capped backoff until stopped.

    ``online`` carries the helper's ``hello``; ``offline`` a sentence saying why it is out of reach (emitted
    once per loss, not once per failed retry, so listeners can notify without flooding).
    """

    online = Signal(dict)
    offline = Signal(str)
    event_received = Signal(dict)

    def __init__(
        self,
        socket_path: str,
        parent: QObject | None = None,
        *,
        retry_min_ms: int = 500,
        retry_max_ms: int = 5000,
        hello_timeout_ms: int = HELLO_TIMEOUT_MS,
        check_server: Callable[[int], str | None] = helper_end_problem,
    ) -> None:
        super().__init__(parent)
        self.socket_path = socket_path
        self._check_server = check_server
        self._verified = False
        self._retry_min_ms = retry_min_ms
        self._retry_max_ms = retry_max_ms
        self._retry_ms = retry_min_ms
        self._socket: QLocalSocket | None = None
        self._buffer = b""
        self._greeted = False
        self._pending: dict[int, ReplyHandler | None] = {}
        self._next_id = 1
        self._running = False
        self._offline_reason: str | None = None
        self.hello: schema.Hello | None = None
        self._retry_timer = QTimer(self)
        self._retry_timer.setSingleShot(True)
        self._retry_timer.timeout.connect(self._connect)
        self._hello_timer = QTimer(self)
        self._hello_timer.setSingleShot(True)
        self._hello_timer.setInterval(hello_timeout_ms)
        self._hello_timer.timeout.connect(self._hello_timed_out)

    # ------------------------------------------------------------------------------------------- public

    def start(self) -> None:
        self._running = True
        self._connect()

    def stop(self) -> None:
        self._running = False
        self._retry_timer.stop()
        self._drop(self.tr("The tray stopped talking to the helper."))

    def is_online(self) -> bool:
        return self._greeted

    @property
    def offline_reason(self) -> str | None:
        return self._offline_reason

    def call(
        self,
        method: schema.Method,
        params: dict[str, Any] | None = None,
        handler: ReplyHandler | None = None,
    ) -> None:
        """Send a request; ``handler`` gets exactly one :class:`Outcome`, even if the helper goes away."""
        if not self._greeted or self._socket is None or not self._verified:
            if handler is not None:
                handler(
                    Outcome(
                        False, error=unreachable_error(self._offline_reason or self.tr("The helper is not reachable."))
                    )
                )
            return
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = handler
        self._socket.write(schema.encode(schema.request(request_id, method, params)))
        self._socket.flush()

    # ------------------------------------------------------------------------------------------ private

    def _connect(self) -> None:
        if not self._running or self._socket is not None:
            return
        socket = QLocalSocket(self)
        self._socket = socket
        self._buffer = b""
        self._verified = False
        socket.connected.connect(self._on_connected)
        socket.readyRead.connect(self._read)
        socket.disconnected.connect(self._on_disconnected)
        socket.errorOccurred.connect(self._on_error)
        socket.connectToServer(self.socket_path)

    def _on_connected(self) -> None:
        socket = self._socket
        if socket is None:
            return
        problem = self._check_server(int(socket.socketDescriptor()))
        if problem is not None:
            self._drop(self.tr("The program at the helper's address is not the m6t helper: {why}").format(why=problem))
            return
        self._verified = True
        self._hello_timer.start()
        if socket.bytesAvailable():
            self._read()

    def _on_error(self, error: QLocalSocket.LocalSocketError) -> None:
        known = _SOCKET_REASONS.get(error)
        reason = None if known is None else self.tr(known)
        if reason is None and self._socket is not None:
            reason = self.tr("The m6t helper cannot be reached: {error}.").format(error=self._socket.errorString())
        self._drop(reason or self.tr("The m6t helper cannot be reached."))

    def _on_disconnected(self) -> None:
        self._drop(self.tr("The m6t helper closed the connection."))

    def _hello_timed_out(self) -> None:
        self._drop(self.tr("The program behind the helper's socket does not speak the m6t control API."))

    def _drop(self, reason: str) -> None:
        socket, self._socket = self._socket, None
        self._hello_timer.stop()
        if socket is not None:
            # Signals first: abort() would otherwise re-enter _drop through disconnected/errorOccurred.
            socket.blockSignals(True)
            socket.abort()
            socket.deleteLater()
        was_greeted, self._greeted = self._greeted, False
        self.hello = None
        pending, self._pending = self._pending, {}
        for handler in pending.values():
            if handler is not None:
                handler(Outcome(False, error=unreachable_error(reason)))
        if was_greeted:
            # A helper that was fine a moment ago is most likely restarting: come back quickly.
            self._retry_ms = self._retry_min_ms
        if was_greeted or self._offline_reason != reason:
            self._offline_reason = reason
            self.offline.emit(reason)
        if self._running and not self._retry_timer.isActive():
            self._retry_timer.start(self._retry_ms)
            self._retry_ms = min(self._retry_ms * 2, self._retry_max_ms)

    def _read(self) -> None:
        socket = self._socket
        if socket is None or not self._verified:
            return  # left in the socket until the server is vouched for
        self._buffer += bytes(socket.readAll().data())
        while socket is self._socket and b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line.strip():
                self._dispatch(line)

    def _dispatch(self, line: bytes) -> None:
        try:
            message = schema.decode(line)
        except schema.ProtocolError as exc:
            log.warning("ignoring a line from the helper that is not a message: %s", exc)
            return
        kind = message.get("type")
        if kind == "hello":
            self._on_hello(cast(schema.Hello, message))
        elif kind == "reply":
            self._on_reply(cast(schema.Reply, message))
        elif kind == "event" and self._greeted:
            self.event_received.emit(message)

    def _on_hello(self, hello: schema.Hello) -> None:
        self._hello_timer.stop()
        if hello.get("version") != schema.PROTOCOL_VERSION:
            self._drop(
                self.tr(
                    "The m6t helper speaks control API version {helper}, this tray version {tray}: update one of them."
                ).format(helper=hello.get("version"), tray=schema.PROTOCOL_VERSION)
            )
            return
        self._greeted = True
        self._retry_ms = self._retry_min_ms
        self._offline_reason = None
        self.hello = hello
        self.online.emit(dict(hello))

    def _on_reply(self, reply: schema.Reply) -> None:
        request_id = reply.get("id")
        if not isinstance(request_id, int) or request_id not in self._pending:
            log.warning("reply to a request this tray did not send: %r", request_id)
            return
        handler = self._pending.pop(request_id)
        if handler is None:
            return
        if reply.get("ok"):
            handler(Outcome(True, result=reply.get("result")))
        else:
            error = reply.get("error") or schema.error_info(schema.ErrorCode.INTERNAL)
            handler(Outcome(False, error=error))
