"""The Unix-socket control channel on a real socket: modes, stale and live sockets, the peer's identity,
and both client ends (run where the kernel answers SO_PEERCRED: Linux)."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest

from m6t.platform import control_transport
from m6t.platform.base import ControlAddressInUse, ControlConnection
from m6t.platform.peercred import UnixPeer
from m6t.platform.unix_control import UnixSocketTransport, bind_unix_socket, unix_socket

if sys.platform != "linux":
    pytest.skip("Linux backend tests", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only


def test_the_platform_chooses_the_unix_socket() -> None:
    assert isinstance(control_transport(), UnixSocketTransport)


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    dead = unix_socket()
    dead.bind(path)
    dead.close()
    sock = bind_unix_socket(path)
    sock.close()


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "helper.sock"
    path.write_text("not mine")
    with pytest.raises(ControlAddressInUse, match="exists and is not a socket"):
        bind_unix_socket(str(path))
    assert path.read_text() == "not mine"


def test_listener_serves_every_user_and_names_the_peer(tmp_path: Path) -> None:
    path = str(tmp_path / "run" / "helper.sock")

    async def scenario() -> tuple[list[ControlConnection], bytes, list[int], bool]:
        listener = UnixSocketTransport().listener(path)
        accepted: list[ControlConnection] = []

        async def echo(connection: ControlConnection) -> None:
            accepted.append(connection)
            connection.writer.write(await connection.reader.readline())
            await connection.writer.drain()
            connection.writer.close()

        await listener.start(echo)
        modes = [os.stat(path).st_mode, os.stat(Path(path).parent).st_mode]

        def client() -> bytes:
            stream = UnixSocketTransport().connect(path, 5.0)
            try:
                stream.send(b"hello\n", 5.0)
                return stream.receive(5.0)
            finally:
                stream.close()

        answer = await asyncio.to_thread(client)
        listener.close()
        await listener.wait_closed()
        return accepted, answer, modes, os.path.lexists(path)

    accepted, answer, (socket_mode, directory_mode), left_behind = asyncio.run(scenario())
    assert answer == b"hello\n"
    assert stat.S_ISSOCK(socket_mode) and stat.S_IMODE(socket_mode) == 0o666
    assert stat.S_IMODE(directory_mode) == 0o755
    peer = accepted[0].peer
    assert isinstance(peer, UnixPeer)
    assert (peer.pid, peer.uid, peer.gid) == (os.getpid(), os.getuid(), os.getgid())
    assert not left_behind, "closing removes our socket"


def test_a_live_socket_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "helper.sock")

    async def scenario() -> None:
        first = UnixSocketTransport().listener(path)
        await first.start(lambda connection: asyncio.sleep(0))
        try:
            with pytest.raises(ControlAddressInUse, match="another m6t-helper is already listening"):
                await UnixSocketTransport().listener(path).start(lambda connection: asyncio.sleep(0))
        finally:
            first.close()
            await first.wait_closed()

    asyncio.run(scenario())


def test_closing_leaves_a_newer_helpers_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "helper.sock")

    async def scenario() -> bool:
        old = UnixSocketTransport().listener(path)
        await old.start(lambda connection: asyncio.sleep(0))
        # A newer helper took the address over (as after a stale-socket replacement).
        os.unlink(path)
        newer = unix_socket()
        newer.bind(path)
        try:
            old.close()
            await old.wait_closed()
            return os.path.lexists(path)
        finally:
            newer.close()

    assert asyncio.run(scenario())


def test_asyncio_client_end(tmp_path: Path) -> None:
    path = str(tmp_path / "helper.sock")

    async def scenario() -> bytes:
        listener = UnixSocketTransport().listener(path)

        async def greet(connection: ControlConnection) -> None:
            connection.writer.write(b"hi\n")
            await connection.writer.drain()
            connection.writer.close()

        await listener.start(greet)
        try:
            reader, writer = await UnixSocketTransport().open_connection(path, limit=1024)
            line = await reader.readline()
            writer.close()
            return line
        finally:
            listener.close()
            await listener.wait_closed()

    assert asyncio.run(scenario()) == b"hi\n"


def test_nobody_listening_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        UnixSocketTransport().connect(str(tmp_path / "none.sock"), 1.0)

    async def scenario() -> None:
        await UnixSocketTransport().open_connection(str(tmp_path / "none.sock"), limit=1024)

    with pytest.raises(OSError):
        asyncio.run(scenario())
