"""The named-pipe control channel against the emulated Windows (``windows_pipe_fakes.py``): the pipe and its
descriptor, both client ends, the surprising answers Windows gives (ERROR_PIPE_CONNECTED, ERROR_NO_DATA,
ERROR_PIPE_BUSY and WaitNamedPipe, FILE_FLAG_FIRST_PIPE_INSTANCE, ERROR_BROKEN_PIPE at the end), and who
the peer is."""

from __future__ import annotations

import asyncio
import ctypes
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

import m6t.platform
from m6t.platform.base import ControlAddressInUse, ControlConnection, ControlListener, PlatformError
from m6t.platform.windows.control import (
    DEFAULT_PIPE_NAME,
    SECURITY_DESCRIPTOR,
    NamedPipeTransport,
    ProactorPipes,
    pipe_path,
)
from m6t.platform.windows.peer import WindowsPeer, identify_client
from m6t.platform.windows.pipes import OVERLAPPED, SECURITY_ATTRIBUTES, NamedPipes, Win32Error, native_pipe_api
from tests.platform.windows_pipe_fakes import (
    ADMINISTRATORS,
    DENY_ONLY,
    ENABLED,
    ERROR_ACCESS_DENIED,
    ERROR_BROKEN_PIPE,
    ERROR_FILE_NOT_FOUND,
    ERROR_NO_DATA,
    ERROR_PIPE_BUSY,
    ERROR_PIPE_CONNECTED,
    ERROR_SEM_TIMEOUT,
    FILE_FLAG_OVERLAPPED,
    LOW,
    MEDIUM,
    NETWORK,
    NETWORK_CONFIGURATION_OPERATORS,
    OPERATORS,
    PIPE_ACCESS_DUPLEX,
    PIPE_REJECT_REMOTE_CLIENTS,
    SECURITY_LEVEL_MASK,
    SECURITY_SQOS_PRESENT,
    FakeProcess,
    PipeWindows,
    elevated_admin_token,
    filtered_admin_token,
    run,
    system_token,
    user_token,
)

T = TypeVar("T")
NO_WRITE_UP = 0x1
SECURITY_IDENTIFICATION = 0x00010000


@pytest.fixture
def windows() -> Iterator[PipeWindows]:
    host = PipeWindows()
    yield host
    host.assert_clean()


async def echo(connection: ControlConnection) -> None:
    line = await connection.reader.readline()
    connection.writer.write(line)
    await connection.writer.drain()
    connection.writer.close()


@asynccontextmanager
async def listening(
    transport: NamedPipeTransport, handler: Callable[[ControlConnection], Awaitable[None]]
) -> AsyncIterator[ControlListener]:
    listener = await serving(transport, handler)
    try:
        yield listener
    finally:
        await stop(listener)


async def serving(
    transport: NamedPipeTransport, handler: Callable[[ControlConnection], Awaitable[None]]
) -> ControlListener:
    listener = transport.listener(DEFAULT_PIPE_NAME)
    await listener.start(handler)
    return listener


async def stop(listener: ControlListener) -> None:
    listener.close()
    await listener.wait_closed()


def talk(transport: NamedPipeTransport, data: bytes) -> bytes:
    stream = transport.connect(DEFAULT_PIPE_NAME, 5.0)
    try:
        stream.send(data, 5.0)
        received = b""
        while not received.endswith(b"\n"):
            chunk = stream.receive(5.0)
            if not chunk:
                break
            received += chunk
        return received
    finally:
        stream.close()


# ------------------------------------------------------------------------------------------- the choice


def test_windows_gets_the_named_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    assert isinstance(m6t.platform.control_transport(), NamedPipeTransport)
    assert m6t.platform.default_control_address() == DEFAULT_PIPE_NAME == "\\\\.\\pipe\\m6t-helper"


def test_the_real_dlls_load_only_on_windows() -> None:
    if sys.platform != "win32":
        with pytest.raises(PlatformError, match="need Windows"):
            native_pipe_api()
    with pytest.raises(PlatformError, match="Proactor"):
        run(lambda: asyncio.sleep(0, ProactorPipes().wait_for_event(1)))


@pytest.mark.parametrize(
    ("address", "path"),
    [
        ("\\\\.\\pipe\\m6t-helper", "\\\\.\\pipe\\m6t-helper"),
        ("\\\\.\\PIPE\\m6t-helper", "\\\\.\\pipe\\m6t-helper"),
        ("m6t-helper", "\\\\.\\pipe\\m6t-helper"),
        ("\\\\.\\pipe\\m6t/test", "\\\\.\\pipe\\m6t/test"),
    ],
)
def test_pipe_names(address: str, path: str) -> None:
    assert pipe_path(address) == path


@pytest.mark.parametrize(
    "address",
    ["/var/run/m6t/helper.sock", "\\\\server\\pipe\\m6t-helper", "\\\\.\\pipe\\", "\\\\.\\pipe\\a\\b", "x" * 300],
)
def test_what_is_not_a_local_pipe(address: str) -> None:
    with pytest.raises(ValueError, match="pipe"):
        pipe_path(address)


def test_a_bad_address_is_a_platform_error_for_the_helper(windows: PipeWindows) -> None:
    async def scenario() -> None:
        await windows.transport().listener("/var/run/m6t/helper.sock").start(echo)

    with pytest.raises(PlatformError, match="not a local named pipe"):
        run(scenario)


# ------------------------------------------------------------------------------------------- the pipe


def test_the_pipe_is_created_as_designed(windows: PipeWindows) -> None:
    async def scenario() -> None:
        listener = await serving(windows.transport(), echo)
        await asyncio.sleep(0.05)
        pipe = windows.pipe("m6t-helper")
        assert pipe is not None
        assert pipe.descriptor.sddl == SECURITY_DESCRIPTOR
        assert (pipe.descriptor.label, pipe.descriptor.label_policy) == (MEDIUM, NO_WRITE_UP)
        assert pipe.open_mode & 3 == PIPE_ACCESS_DUPLEX and pipe.open_mode & FILE_FLAG_OVERLAPPED
        assert pipe.pipe_mode & PIPE_REJECT_REMOTE_CLIENTS
        assert pipe.max_instances == 255
        [waiting] = pipe.instances
        assert waiting.state == "listening" and waiting.connect is not None, "ConnectNamedPipe is pending"
        await stop(listener)

    run(scenario)


def test_a_round_trip_names_the_peer(windows: PipeWindows) -> None:
    alice = windows.spawn("m6t.exe", user_token())
    accepted: list[ControlConnection] = []

    async def recording(connection: ControlConnection) -> None:
        accepted.append(connection)
        await echo(connection)

    async def scenario() -> bytes:
        transport = windows.transport()
        async with listening(transport, recording):
            return await windows.in_thread(alice, lambda: talk(transport, b"hello\n"))

    assert run(scenario) == b"hello\n"
    peer = accepted[0].peer
    assert isinstance(peer, WindowsPeer)
    assert (peer.pid, peer.uid, peer.is_superuser) == (alice.pid, None, False)


def test_the_client_lets_the_server_identify_it_and_no_more(windows: PipeWindows) -> None:
    async def scenario() -> int:
        transport = windows.transport()
        async with listening(transport, echo):
            stream = transport.connect(DEFAULT_PIPE_NAME, 5.0)
            pipe = windows.pipe("m6t-helper")
            assert pipe is not None
            flags = next(i.client_flags for i in pipe.instances if i.client_pid is not None)
            stream.close()
            return flags

    flags = run(scenario)
    assert flags & SECURITY_SQOS_PRESENT and flags & SECURITY_LEVEL_MASK == SECURITY_IDENTIFICATION


def test_asyncio_client_end(windows: PipeWindows) -> None:
    async def scenario() -> bytes:
        transport = windows.transport()
        async with listening(transport, echo):
            reader, writer = await transport.open_connection(DEFAULT_PIPE_NAME, limit=1024)
            writer.write(b"over the proactor\n")
            line = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return line

    assert run(scenario) == b"over the proactor\n"


def test_many_clients_at_once(windows: PipeWindows) -> None:
    users = [windows.spawn(f"m6t-{n}.exe", user_token(2000 + n)) for n in range(12)]

    async def scenario() -> list[bytes]:
        transport = windows.transport()
        listener = await serving(transport, echo)

        def client(n: int) -> Callable[[], bytes]:
            return lambda: talk(transport, f"client {n}\n".encode())

        try:
            return await asyncio.gather(*(windows.in_thread(user, client(n)) for n, user in enumerate(users)))
        finally:
            await stop(listener)

    assert run(scenario) == [f"client {n}\n".encode() for n in range(12)]


# ------------------------------------------------------------------------------- who may open it at all


@pytest.mark.parametrize(
    ("token", "opens"),
    [
        (user_token(), True),
        (filtered_admin_token(), True),
        (elevated_admin_token(), True),
        (system_token(), True),
        (user_token(logon=NETWORK), False),
        (user_token(integrity=LOW), False),
    ],
    ids=["user", "admin-desktop", "admin-elevated", "system", "network-logon", "low-integrity"],
)
def test_who_may_open_the_pipe(windows: PipeWindows, token: Any, opens: bool) -> None:
    process = windows.spawn("client.exe", token)

    async def scenario() -> bytes | None:
        transport = windows.transport()
        listener = await serving(transport, echo)
        try:
            return await windows.in_thread(process, lambda: talk(transport, b"hi\n"))
        except Win32Error as exc:
            assert exc.code == ERROR_ACCESS_DENIED
            return None
        finally:
            await stop(listener)

    assert run(scenario) == (b"hi\n" if opens else None)
    assert windows.answered("CreateFileW", ERROR_ACCESS_DENIED) is not opens


# --------------------------------------------------------------------------------- the address in use


def test_a_second_helper_is_refused_and_the_first_keeps_serving(windows: PipeWindows) -> None:
    async def scenario() -> bytes:
        transport = windows.transport()
        async with listening(transport, echo):
            with pytest.raises(ControlAddressInUse, match="already serves"):
                await serving(windows.transport(), echo)
            return await windows.in_thread(windows.spawn("m6t.exe", user_token()), lambda: talk(transport, b"still\n"))

    assert run(scenario) == b"still\n"
    assert windows.answered("CreateNamedPipeW", ERROR_ACCESS_DENIED)


def test_a_squatter_on_the_name_is_refused_and_the_name_comes_back(windows: PipeWindows) -> None:
    squatter = windows.spawn("squat.exe", user_token())

    async def scenario() -> bytes:
        with windows.running_as(squatter):
            squatting = await serving(windows.transport(), echo)
        with pytest.raises(ControlAddressInUse):
            await serving(windows.transport(), echo)
        await stop(squatting)
        transport = windows.transport()
        async with listening(transport, echo):
            return await windows.in_thread(squatter, lambda: talk(transport, b"mine again\n"))

    assert run(scenario) == b"mine again\n"


# ------------------------------------------------------------------------- Windows' surprising answers


def test_a_client_before_connectnamedpipe_is_a_good_connection(windows: PipeWindows) -> None:
    async def scenario() -> bytes:
        transport = windows.transport()
        listener = await serving(transport, echo)
        try:
            # The serving task has not run yet: the client reaches the instance before ConnectNamedPipe.
            stream = transport.connect(DEFAULT_PIPE_NAME, 5.0)
            stream.send(b"early\n", 5.0)
            return await asyncio.to_thread(stream.receive, 5.0)
        finally:
            stream.close()
            await stop(listener)

    assert run(scenario) == b"early\n"
    assert windows.answered("ConnectNamedPipe", ERROR_PIPE_CONNECTED)


def test_a_client_gone_before_connectnamedpipe_is_skipped(windows: PipeWindows) -> None:
    served: list[ControlConnection] = []
    lapses: list[bool] = []

    async def recording(connection: ControlConnection) -> None:
        served.append(connection)
        await echo(connection)

    def still_listening() -> None:
        pipe = windows.pipe("m6t-helper")
        lapses.append(pipe is None or not any(i.state == "listening" for i in pipe.instances))

    async def scenario() -> bytes:
        transport = windows.transport()
        listener = await serving(transport, recording)
        try:
            transport.connect(DEFAULT_PIPE_NAME, 5.0).close()
            windows.before["CloseHandle"] = still_listening
            return await windows.in_thread(windows.helper, lambda: talk(transport, b"next\n"))
        finally:
            windows.before.clear()
            await stop(listener)

    assert run(scenario) == b"next\n"
    assert windows.answered("ConnectNamedPipe", ERROR_NO_DATA)
    assert len(served) == 1
    assert lapses and not any(lapses), "an instance listened whenever one closed: the name never lapsed"


def _foreign_server(windows: PipeWindows, name: str, instances: int, sddl: str | None = None) -> int:
    """A pipe some other program serves, with at most ``instances`` instances (NULL descriptor: the default)."""
    pipes = NamedPipes(windows.api())
    descriptor = pipes.security_descriptor(sddl) if sddl is not None else None
    attributes = SECURITY_ATTRIBUTES(ctypes.sizeof(SECURITY_ATTRIBUTES), descriptor, False)
    create = windows.kernel32.CreateNamedPipeW
    mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED
    try:
        handle = create(ctypes.c_wchar_p(name), mode, 0, instances, 4096, 4096, 0, ctypes.byref(attributes))
    finally:
        if descriptor is not None:
            pipes.local_free(descriptor)  # the pipe keeps its own copy
    assert handle != windows.invalid_handle
    return int(handle)


def test_a_null_descriptor_would_shut_the_tray_out(windows: PipeWindows) -> None:
    """Why the pipe is not asyncio's: with the default descriptor, a user may read but not write."""
    server = _foreign_server(windows, "\\\\.\\pipe\\default", 1)
    with windows.running_as(windows.spawn("m6t-tray.exe", user_token())), pytest.raises(Win32Error) as refused:
        windows.transport().connect("\\\\.\\pipe\\default", 1.0)
    assert refused.value.code == ERROR_ACCESS_DENIED
    windows.kernel32.CloseHandle(server)


def test_busy_instances_wait_then_time_out(windows: PipeWindows) -> None:
    name = "\\\\.\\pipe\\busy"
    server = _foreign_server(windows, name, 1)
    transport = windows.transport()
    first = transport.connect(name, 1.0)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="busy"):
        transport.connect(name, 0.3)
    assert time.monotonic() - started >= 0.25
    assert windows.answered("CreateFileW", ERROR_PIPE_BUSY) and windows.answered("WaitNamedPipeW", ERROR_SEM_TIMEOUT)
    first.close()
    windows.kernel32.CloseHandle(server)
    with pytest.raises(Win32Error) as gone:
        transport.connect(name, 0.3)
    assert gone.value.code == ERROR_FILE_NOT_FOUND


def test_a_busy_pipe_is_waited_for_until_an_instance_listens(windows: PipeWindows) -> None:
    name = "\\\\.\\pipe\\busy"
    server = _foreign_server(windows, name, 2)
    transport = windows.transport()
    first = transport.connect(name, 1.0)
    result: list[Any] = []
    waiter = threading.Thread(target=lambda: result.append(transport.connect(name, 5.0)))
    waiter.start()
    time.sleep(0.2)
    assert not result, "WaitNamedPipe waits while no instance listens"
    pipes = NamedPipes(windows.api())
    event = pipes.create_event()
    second = _foreign_server(windows, name, 2)
    overlapped = OVERLAPPED(hEvent=event)
    assert not pipes.start_connect(second, overlapped)
    waiter.join(5)
    assert result, "WaitNamedPipe returned once ConnectNamedPipe was pending, and CreateFile got the instance"
    pipes.overlapped_result(second, overlapped, wait=True)
    for stream in (result[0], first):
        stream.close()
    for handle in (second, server, event):
        pipes.close_handle(handle)


def test_the_asyncio_client_retries_while_busy(windows: PipeWindows) -> None:
    name = "\\\\.\\pipe\\busy"
    server = _foreign_server(windows, name, 2)
    transport = windows.transport()
    first = transport.connect(name, 1.0)

    async def scenario() -> int:
        opening = asyncio.ensure_future(transport.open_connection(name, limit=1024))
        await asyncio.sleep(0.1)
        assert not opening.done()
        second = _foreign_server(windows, name, 2)
        _, writer = await opening
        writer.close()
        await writer.wait_closed()
        return second

    second = run(scenario)
    first.close()
    for handle in (second, server):
        windows.kernel32.CloseHandle(handle)


def test_nobody_serving(windows: PipeWindows) -> None:
    with pytest.raises(Win32Error) as blocking_end:
        windows.transport().connect(DEFAULT_PIPE_NAME, 1.0)
    assert blocking_end.value.code == ERROR_FILE_NOT_FOUND

    async def scenario() -> None:
        await windows.transport().open_connection(DEFAULT_PIPE_NAME, limit=1024)

    with pytest.raises(OSError, match="Windows error 2"):
        run(scenario)


def test_a_receive_times_out_and_loses_nothing(windows: PipeWindows) -> None:
    release = threading.Event()

    async def late(connection: ControlConnection) -> None:
        await asyncio.to_thread(release.wait, 5)
        connection.writer.write(b"late\n")
        await connection.writer.drain()
        connection.writer.close()

    async def scenario() -> tuple[bytes, bytes]:
        transport = windows.transport()
        listener = await serving(transport, late)

        def client() -> tuple[bytes, bytes]:
            stream = transport.connect(DEFAULT_PIPE_NAME, 5.0)
            try:
                with pytest.raises(TimeoutError):
                    stream.receive(0.2)
                release.set()
                return stream.receive(5.0), stream.receive(5.0)
            finally:
                stream.close()

        try:
            return await asyncio.to_thread(client)
        finally:
            await stop(listener)

    assert run(scenario) == (b"late\n", b""), "then the end of the stream: ERROR_BROKEN_PIPE"
    assert windows.answered("ReadFile", ERROR_BROKEN_PIPE) or windows.answered("GetOverlappedResult", ERROR_BROKEN_PIPE)


def test_writing_to_a_closed_pipe_fails(windows: PipeWindows) -> None:
    async def hang_up(connection: ControlConnection) -> None:
        connection.writer.close()

    async def scenario() -> None:
        transport = windows.transport()
        listener = await serving(transport, hang_up)

        def client() -> None:
            stream = transport.connect(DEFAULT_PIPE_NAME, 5.0)
            try:
                assert stream.receive(5.0) == b""
                with pytest.raises(OSError, match="Windows error 232"):
                    stream.send(b"anyone?\n", 5.0)
            finally:
                stream.close()

        try:
            await asyncio.to_thread(client)
        finally:
            await stop(listener)

    run(scenario)


# ------------------------------------------------------------------------------------------- the peer


def identify(windows: PipeWindows, process: FakeProcess, *, before_open: Callable[[], None] | None = None) -> Any:
    """Connect as ``process`` to a bare pipe instance and identify the client the way the listener does."""
    name = "\\\\.\\pipe\\who"
    server = _foreign_server(windows, name, 1, SECURITY_DESCRIPTOR)
    with windows.running_as(process):
        client = windows.transport().connect(name, 1.0)
    if before_open is not None:
        windows.before["OpenProcess"] = before_open
    try:
        return identify_client(NamedPipes(windows.api()), server, time.time())
    finally:
        windows.before.clear()
        client.close()
        windows.kernel32.CloseHandle(server)


@pytest.mark.parametrize(
    ("token", "superuser", "operator"),
    [
        (elevated_admin_token(), True, False),
        (filtered_admin_token(), True, False),
        (filtered_admin_token(administrators_kept=False), True, False),
        (system_token(), True, False),
        (user_token(1003, (OPERATORS, ENABLED)), False, True),
        (user_token(1003, (OPERATORS, DENY_ONLY)), False, False),
        (user_token(), False, False),
    ],
    ids=[
        "admin-elevated",
        "admin-desktop",
        "admin-desktop-sid-removed",
        "system",
        "operator",
        "operator-denied",
        "user",
    ],
)
def test_the_peer_from_its_token(windows: PipeWindows, token: Any, superuser: bool, operator: bool) -> None:
    process = windows.spawn("client.exe", token)
    peer = identify(windows, process)
    assert isinstance(peer, WindowsPeer)
    assert peer.pid == process.pid and peer.uid is None
    assert peer.is_superuser is superuser
    assert peer.in_group("m6t") is operator
    assert peer.in_group(OPERATORS.lower()) is operator, "a SID string names the group too"
    assert peer.in_group("LAPTOP\\m6t") is operator


def test_groups_by_name_sid_and_kind(windows: PipeWindows) -> None:
    token = user_token(1004, (NETWORK_CONFIGURATION_OPERATORS, ENABLED), (ADMINISTRATORS, DENY_ONLY))
    peer = identify(windows, windows.spawn("client.exe", token))
    assert peer.in_group("Network Configuration Operators")
    assert peer.in_group(NETWORK_CONFIGURATION_OPERATORS)
    assert peer.in_group("Users")
    assert not peer.in_group("Administrators"), "deny-only: not usable to be granted anything"
    assert peer.is_superuser, "yet an administrator by group"
    assert not peer.in_group("alice"), "a user account is not a group"
    assert not peer.in_group("nobody-here")


@pytest.mark.parametrize("what", ["process", "token"])
def test_an_unknown_peer_is_none(windows: PipeWindows, what: str) -> None:
    process = windows.spawn("protected.exe", elevated_admin_token())
    if what == "process":
        process.openable = False
    else:
        process.token_openable = False
    assert identify(windows, process) is None
    assert windows.answered("OpenProcess" if what == "process" else "OpenProcessToken", ERROR_ACCESS_DENIED)


def test_a_reused_process_id_is_not_the_client(windows: PipeWindows) -> None:
    client = windows.spawn("client.exe", user_token())

    def reuse() -> None:
        windows.exit(client)
        windows.spawn("elevated.exe", elevated_admin_token(), pid=client.pid, age=-1.0)

    assert identify(windows, client, before_open=reuse) is None


def test_a_client_gone_before_identification_is_none(windows: PipeWindows) -> None:
    client = windows.spawn("client.exe", elevated_admin_token())
    assert identify(windows, client, before_open=lambda: windows.exit(client)) is None


def test_who_may_write_may_also_add_instances(windows: PipeWindows) -> None:
    """The known cost of letting QLocalSocket in: GENERIC_WRITE maps to FILE_GENERIC_WRITE, whose
    FILE_APPEND_DATA is FILE_CREATE_PIPE_INSTANCE, so a local user can add an instance of the helper's pipe
    (and so wait for clients there).  A network logon still cannot."""

    async def scenario() -> None:
        async with listening(windows.transport(), echo):
            pipes = NamedPipes(windows.api())
            descriptor = pipes.security_descriptor(SECURITY_DESCRIPTOR)
            attributes = SECURITY_ATTRIBUTES(ctypes.sizeof(SECURITY_ATTRIBUTES), descriptor, False)
            try:
                with windows.running_as(windows.spawn("user.exe", user_token())):
                    extra = pipes.create_named_pipe(DEFAULT_PIPE_NAME, first=False, attributes=attributes)
                pipes.close_handle(extra)
                remote = windows.spawn("remote.exe", user_token(logon=NETWORK))
                with windows.running_as(remote), pytest.raises(Win32Error) as refused:
                    pipes.create_named_pipe(DEFAULT_PIPE_NAME, first=False, attributes=attributes)
                assert refused.value.code == ERROR_ACCESS_DENIED
            finally:
                pipes.local_free(descriptor)

    run(scenario)
