"""Serving the metrics (a minimal HTTP/1.0 ``GET /metrics``) and fetching them for ``m6t-gateway status``.

The endpoint is meant for a local scraper or the operator, on a loopback address or a Unix socket, so
the server is deliberately small: one request per connection, bounded in size and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable

from m6t.gateway.config import MetricsEndpoint, TcpEndpoint, UnixEndpoint

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_RESPONSE_BYTES = 64 << 20

# Unix sockets are a capability, not a platform: ask the socket module rather than the OS name.
_AF_UNIX: int | None = getattr(socket, "AF_UNIX", None)
_NO_UNIX_SOCKETS = "Unix sockets are not available on this system"
_START_UNIX_SERVER: Callable[..., Awaitable[asyncio.Server]] | None = getattr(asyncio, "start_unix_server", None)


class MetricsError(Exception):
    """The metrics could not be served or fetched; the message says why."""


def _response(status: str, body: str, content_type: str = "text/plain; charset=utf-8") -> bytes:
    payload = body.encode()
    head = (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + payload


class MetricsServer:
    """Answers ``GET /metrics`` with whatever ``render()`` returns at that moment."""

    def __init__(self, endpoint: MetricsEndpoint, render: Callable[[], str]) -> None:
        self.endpoint = endpoint
        self._render = render
        self._server: asyncio.Server | None = None
        self.requests = 0

    async def start(self) -> None:
        try:
            if isinstance(self.endpoint, UnixEndpoint):
                if _AF_UNIX is None or _START_UNIX_SERVER is None:
                    raise MetricsError(_NO_UNIX_SOCKETS)
                _remove_stale_socket(self.endpoint.path)
                self._server = await _START_UNIX_SERVER(self._handle, path=self.endpoint.path)
            else:
                self._server = await asyncio.start_server(
                    self._handle, host=str(self.endpoint.host), port=self.endpoint.port, reuse_address=True
                )
        except OSError as exc:
            raise MetricsError(f"cannot serve metrics on {self.endpoint}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1.0)
        if isinstance(self.endpoint, UnixEndpoint):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.endpoint.path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            except asyncio.LimitOverrunError:
                writer.write(_response("431 Request Header Fields Too Large", "request too large\n"))
                return
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                return
            if len(head) > MAX_REQUEST_BYTES:
                writer.write(_response("431 Request Header Fields Too Large", "request too large\n"))
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                writer.write(_response("400 Bad Request", "bad request\n"))
                return
            method, target = parts[0], parts[1].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                writer.write(_response("405 Method Not Allowed", "only GET\n"))
                return
            if target not in ("/metrics", "/"):
                writer.write(_response("404 Not Found", "the metrics are at /metrics\n"))
                return
            self.requests += 1
            response = _response("200 OK", self._render(), CONTENT_TYPE)
            if method == "HEAD":
                response = response.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            writer.write(response)
        finally:
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), REQUEST_TIMEOUT_S)


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file left by a gateway that died; refuse to touch anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise MetricsError(f"{path} exists and is not a socket; not removing it")
    if _AF_UNIX is None:
        raise MetricsError(_NO_UNIX_SOCKETS)
    probe = socket.socket(_AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise MetricsError(f"another process serves {path}")


def fetch_metrics(endpoint: MetricsEndpoint, timeout: float = 5.0) -> str:
    """``GET /metrics`` from a running gateway (blocking: for the CLI)."""
    family: int
    if isinstance(endpoint, TcpEndpoint):
        family = socket.AF_INET6 if endpoint.host.version == 6 else socket.AF_INET
        address: str | tuple[str, int] = (str(endpoint.host), endpoint.port)
    elif _AF_UNIX is None:
        raise MetricsError(_NO_UNIX_SOCKETS)
    else:
        family = _AF_UNIX
        address = endpoint.path
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: m6t-gateway\r\n\r\n")
            total = 0
            for _ in range(MAX_RESPONSE_BYTES // 1024 + 1):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MetricsError(f"{endpoint}: no complete answer within {timeout:g} s")
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > MAX_RESPONSE_BYTES:
                    raise MetricsError(f"{endpoint}: response too large")
    except OSError as exc:
        raise MetricsError(f"cannot reach the gateway's metrics at {endpoint}: {exc.strerror or exc}") from exc
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise MetricsError(f"{endpoint}: not an HTTP response")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    if status.split()[1:2] != ["200"]:
        raise MetricsError(f"{endpoint}: {status}")
    return body.decode("utf-8", "replace")
