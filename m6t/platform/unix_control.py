"""The control channel on Linux and macOS: a Unix stream socket every local user may connect to, each
connection carrying the identity the kernel recorded for its peer (:mod:`m6t.platform.peercred`).

Authorization is per connection, never by file mode: the socket is ``0666`` in a ``0755`` directory.  A
stale socket file (its helper died) is replaced; a live one means another helper runs, which is refused
rather than silently stolen; and closing removes the file only while it is still ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from pathlib import Path
from typing import Final

from m6t.platform.base import (
    ConnectionHandler,
    ControlAddressInUse,
    ControlConnection,
    ControlListener,
    ControlStream,
    ControlTransport,
)
from m6t.platform.peercred import peer_credentials

DEFAULT_SOCKET_PATH: Final = "/var/run/m6t/helper.sock"
"""Under /var/run, which macOS has and Linux links to /run, so one path serves both."""

_RECV: Final = 65536
_CLOSE_TIMEOUT_S: Final = 2.0


def unix_socket() -> socket.socket:
    return socket.socket(getattr(socket, "AF_UNIX"), socket.SOCK_STREAM)  # noqa: B009 - absent on Windows


def _socket_is_live(path: str) -> bool:
    probe = unix_socket()
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def bind_unix_socket(path: str) -> socket.socket:
    """A listening, non-blocking socket at ``path`` that every local user can connect to."""
    directory = Path(path).parent
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o755)
        os.chmod(directory, 0o755)
    if os.path.lexists(path):
        mode = os.lstat(path).st_mode
        if not stat.S_ISSOCK(mode):
            raise ControlAddressInUse(f"{path} exists and is not a socket; remove it or choose another --socket")
        if _socket_is_live(path):
            raise ControlAddressInUse(f"another m6t-helper is already listening on {path}")
        os.unlink(path)
    sock = unix_socket()
    try:
        sock.bind(path)
        os.chmod(path, 0o666)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class UnixSocketListener(ControlListener):
    def __init__(self, path: str) -> None:
        self.address = path
        self._server: asyncio.Server | None = None
        self._inode: tuple[int, int] | None = None

    async def start(self, on_connection: ConnectionHandler) -> None:
        sock = bind_unix_socket(self.address)
        st = os.stat(self.address)
        self._inode = (st.st_dev, st.st_ino)

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer_socket = writer.get_extra_info("socket")
            peer = peer_credentials(peer_socket) if peer_socket is not None else None
            await on_connection(ControlConnection(reader, writer, peer))

        self._server = await asyncio.start_server(accept, sock=sock)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def wait_closed(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), _CLOSE_TIMEOUT_S)
            self._server = None
        self._unlink()

    def _unlink(self) -> None:
        # Only our own socket: a newer helper may already have replaced it.
        try:
            st = os.stat(self.address)
        except OSError:
            return
        if self._inode == (st.st_dev, st.st_ino):
            with contextlib.suppress(OSError):
                os.unlink(self.address)


class UnixSocketStream(ControlStream):
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, data: bytes, timeout: float | None) -> None:
        self._sock.settimeout(timeout)
        self._sock.sendall(data)

    def receive(self, timeout: float | None) -> bytes:
        self._sock.settimeout(timeout)
        return self._sock.recv(_RECV)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


class UnixSocketTransport(ControlTransport):
    def listener(self, address: str) -> ControlListener:
        return UnixSocketListener(address)

    def connect(self, address: str, timeout: float | None) -> ControlStream:
        sock = unix_socket()
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return UnixSocketStream(sock)

    async def open_connection(self, address: str, *, limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = unix_socket()
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, address)
            return await asyncio.open_connection(sock=sock, limit=limit)
        except BaseException:
            sock.close()
            raise

    def verify_server(self, native: int) -> None:
        """Nothing to check on the connection: who may serve a socket is settled by the file system.  The
        helper's directory (/var/run/m6t, made 0755 by the root helper, under /var/run, which only root writes)
        lets nobody else create a socket there, and a path chosen with --socket is the user's own choice."""
