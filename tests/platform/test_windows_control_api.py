"""The control API over the named pipe on the emulated Windows: the real ControlServer and the real clients
(HelperClient, AsyncHelperClient) with the real authorization policy, the peer identified from the pipe."""

from __future__ import annotations

import asyncio
import ctypes
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from m6t.client.api import schema
from m6t.client.api.authorization import is_operator
from m6t.client.api.client import AsyncHelperClient, HelperClient, HelperImpostor, HelperUnavailable, RequestFailed
from m6t.client.api.schema import Access, ErrorCode, EventKind, Method, ParsedRequest
from m6t.client.api.server import Connection, ControlServer
from m6t.platform.base import ControlAddressInUse, ControlServerUntrusted, PeerIdentity
from m6t.platform.family import OsFamily
from m6t.platform.hints import conventions_of
from m6t.platform.windows.control import DEFAULT_PIPE_NAME, NamedPipeTransport
from m6t.platform.windows.pipes import SECURITY_ATTRIBUTES
from tests.platform.windows_pipe_fakes import (
    ENABLED,
    NETWORK,
    OPERATORS,
    FakeProcess,
    FakeToken,
    PipeWindows,
    ServerEnd,
    elevated_admin_token,
    filtered_admin_token,
    run,
    system_token,
    user_token,
)
from tests.unit.test_helper_fakes import RunningHelper

T = TypeVar("T")
OPERATOR_GROUP = "m6t"


@pytest.fixture
def windows() -> Iterator[PipeWindows]:
    host = PipeWindows()
    yield host
    host.assert_clean()


class Helper:
    """Stands for the helper service: answers what a read-only client may ask, and ``up``."""

    def __init__(self) -> None:
        self.calls: list[tuple[Method, Access, int | None]] = []

    async def handle(self, connection: Connection, request: ParsedRequest) -> Any:
        self.calls.append((request.method, connection.access, None if connection.peer is None else connection.peer.pid))
        if request.method is Method.SUBSCRIBE:
            connection.subscribe()
            return {"events": sorted(kind.value for kind in EventKind)}
        if request.method is Method.UP:
            return {"wanted": "up"}
        return {"state": "disconnected", "echo": request.params}


def policy(peer: PeerIdentity | None) -> Access:
    return Access.OPERATOR if is_operator(peer, OPERATOR_GROUP) else Access.READ_ONLY


@asynccontextmanager
async def control_server(windows: PipeWindows) -> AsyncIterator[tuple[ControlServer, Helper, NamedPipeTransport]]:
    transport = windows.transport()
    helper = Helper()
    server = ControlServer(transport.listener(DEFAULT_PIPE_NAME), helper, policy, server_name="m6t-helper (emulated)")
    await server.start()
    try:
        yield server, helper, transport
    finally:
        await server.close()


MATRIX: list[tuple[str, Callable[[], FakeToken] | None, Access]] = [
    ("administrator-elevated", elevated_admin_token, Access.OPERATOR),
    ("administrator-desktop", filtered_admin_token, Access.OPERATOR),
    ("local-system", system_token, Access.OPERATOR),
    ("operator-group", lambda: user_token(1003, (OPERATORS, ENABLED)), Access.OPERATOR),
    ("plain-user", user_token, Access.READ_ONLY),
    ("peer-unknown", None, Access.READ_ONLY),
]


def spawn(windows: PipeWindows, make: Callable[[], FakeToken] | None) -> FakeProcess:
    if make is None:
        process = windows.spawn("protected.exe", elevated_admin_token())
        process.openable = False  # OpenProcess refused: the pipe cannot say who this is
        return process
    return windows.spawn("m6t.exe", make())


def blocking_session(transport: NamedPipeTransport) -> tuple[str, dict[str, Any], RequestFailed | None]:
    with HelperClient(DEFAULT_PIPE_NAME, 5.0, transport=transport) as client:
        assert client.hello is not None
        status = client.call(Method.STATUS, {"from": "cli"})
        try:
            client.call(Method.UP)
        except RequestFailed as refused:
            return client.hello["access"], status, refused
        return client.hello["access"], status, None


@pytest.mark.parametrize(("name", "make", "access"), MATRIX, ids=[row[0] for row in MATRIX])
def test_authorization_with_the_blocking_client(
    windows: PipeWindows, name: str, make: Callable[[], FakeToken] | None, access: Access
) -> None:
    process = spawn(windows, make)

    async def scenario() -> tuple[tuple[str, dict[str, Any], RequestFailed | None], list[Any]]:
        async with control_server(windows) as (_, helper, transport):
            result = await windows.in_thread(process, lambda: blocking_session(transport))
            return result, helper.calls

    (hello_access, status, refused), calls = run(scenario)
    assert hello_access == access.value
    assert status == {"state": "disconnected", "echo": {"from": "cli"}}, "everyone reads"
    if access is Access.OPERATOR:
        assert refused is None
        assert (Method.UP, Access.OPERATOR, process.pid) in calls
    else:
        assert refused is not None and refused.code == ErrorCode.FORBIDDEN
        assert Method.UP not in [method for method, _, _ in calls], "refused before the handler"
    expected_pid = None if make is None else process.pid
    assert calls[0] == (Method.STATUS, access, expected_pid)


@pytest.mark.parametrize(("name", "make", "access"), MATRIX, ids=[row[0] for row in MATRIX])
def test_authorization_with_the_asyncio_client(
    windows: PipeWindows, name: str, make: Callable[[], FakeToken] | None, access: Access
) -> None:
    process = spawn(windows, make)

    async def scenario() -> tuple[str, ErrorCode | int | None]:
        async with control_server(windows) as (_, _, transport):
            with windows.running_as(process):
                client = await AsyncHelperClient.open(DEFAULT_PIPE_NAME, 5.0, transport=transport)
            async with client:
                try:
                    await client.call(Method.UP)
                except RequestFailed as refused:
                    return client.hello["access"], refused.code
                return client.hello["access"], None

    hello_access, refused = run(scenario)
    assert hello_access == access.value
    assert refused == (None if access is Access.OPERATOR else ErrorCode.FORBIDDEN)


def test_a_network_logon_never_reaches_the_api(windows: PipeWindows) -> None:
    remote = windows.spawn("wsmprovhost.exe", user_token(logon=NETWORK))

    async def scenario() -> None:
        async with control_server(windows) as (_, _, transport):

            def attempt() -> None:
                HelperClient(DEFAULT_PIPE_NAME, 2.0, transport=transport).connect()

            with pytest.raises(HelperUnavailable, match="Windows error 5"):
                await windows.in_thread(remote, attempt)

    run(scenario)


def test_json_lines_round_trip(windows: PipeWindows) -> None:
    user = windows.spawn("m6t.exe", user_token())

    def session(transport: NamedPipeTransport, subscribed: asyncio.Event, loop: asyncio.AbstractEventLoop) -> list[Any]:
        seen: list[Any] = []
        with HelperClient(DEFAULT_PIPE_NAME, 5.0, transport=transport) as client:
            seen.append(client.subscribe())
            loop.call_soon_threadsafe(subscribed.set)
            event = client.next_event(5.0)
            seen.append(event)
            # Garbage, then an oversized line, then a request split across writes: every one answered, in order.
            client.send_raw(b"not json\n")
            seen.append(client.read_message())
            client.send_raw(b"x" * (schema.MAX_LINE_BYTES + 10) + b"\n")
            seen.append(client.read_message())
            request = schema.encode(schema.request(42, Method.STATUS, {"n": 1}))
            client.send_raw(request[:7])
            client.send_raw(request[7:])
            seen.append(client.read_message())
        return seen

    async def scenario() -> list[Any]:
        async with control_server(windows) as (server, _, transport):
            subscribed = asyncio.Event()
            loop = asyncio.get_running_loop()
            with windows.running_as(user):
                running = asyncio.ensure_future(asyncio.to_thread(session, transport, subscribed, loop))
            await subscribed.wait()
            server.broadcast(EventKind.STATE, {"state": "connecting"})
            return await running

    subscription, event, garbage, oversized, split = run(scenario)
    assert "state" in subscription["events"]
    assert event["type"] == "event" and event["event"] == "state" and event["data"] == {"state": "connecting"}
    assert garbage["ok"] is False and garbage["error"]["code"] == ErrorCode.BAD_JSON
    assert oversized["ok"] is False and oversized["error"]["code"] == ErrorCode.LINE_TOO_LONG
    assert split == json.loads(schema.encode(schema.ok_reply(42, {"state": "disconnected", "echo": {"n": 1}})))


def test_many_clients_and_a_broadcast(windows: PipeWindows) -> None:
    users = [windows.spawn(f"tray-{n}.exe", user_token(3000 + n)) for n in range(8)]

    async def scenario() -> list[Any]:
        async with control_server(windows) as (server, _, transport):
            clients = []
            for user in users:
                with windows.running_as(user):
                    clients.append(await AsyncHelperClient.open(DEFAULT_PIPE_NAME, 5.0, transport=transport))
            for client in clients:
                await client.subscribe([EventKind.COUNTERS.value])
            server.broadcast(EventKind.COUNTERS, {"tx_packets": 7})
            events = [await client.next_event(5.0) for client in clients]
            for client in clients:
                await client.close()
            return events

    events = run(scenario)
    assert [event["data"] for event in events if event is not None] == [{"tx_packets": 7}] * 8


def test_a_second_control_server_is_refused(windows: PipeWindows) -> None:
    async def scenario() -> str:
        async with control_server(windows) as (_, _, transport):
            second = ControlServer(windows.transport().listener(DEFAULT_PIPE_NAME), Helper(), policy)
            with pytest.raises(ControlAddressInUse):
                await second.start()
            await second.close()

            def hello() -> str:
                with HelperClient(DEFAULT_PIPE_NAME, 5.0, transport=transport) as client:
                    assert client.hello is not None
                    return client.hello["server"]

            return await windows.in_thread(windows.spawn("m6t.exe", user_token()), hello)

    assert run(scenario) == "m6t-helper (emulated)", "the first one still serves"


def test_the_helper_going_away_is_seen_by_its_clients(windows: PipeWindows) -> None:
    user = windows.spawn("m6t.exe", user_token())

    async def scenario() -> None:
        transport = windows.transport()
        server = ControlServer(transport.listener(DEFAULT_PIPE_NAME), Helper(), policy)
        await server.start()
        with windows.running_as(user):
            client = await AsyncHelperClient.open(DEFAULT_PIPE_NAME, 5.0, transport=transport)
        await client.subscribe()
        await server.close()
        with pytest.raises(Exception, match="closed the connection"):
            await client.next_event(5.0)
        await client.close()
        with pytest.raises(HelperUnavailable):
            await windows.in_thread(user, lambda: HelperClient(DEFAULT_PIPE_NAME, 1.0, transport=transport).connect())

    run(scenario)


def test_the_helper_service_over_the_pipe(windows: PipeWindows, tmp_path: Path) -> None:
    """The real HelperService, its policy and its refusals in Windows' words, served on the emulated pipe from
    its own loop (the transport given to it, as the Windows service's entry gives it the platform's)."""
    transport = windows.transport()
    running = RunningHelper(
        tmp_path, transport=transport, address=DEFAULT_PIPE_NAME, conventions=conventions_of(OsFamily.WINDOWS)
    )
    running.start()
    try:
        admin_process, user_process = (
            windows.spawn("m6t.exe", filtered_admin_token()),
            windows.spawn("m6t.exe", user_token()),
        )
        with windows.running_as(admin_process), HelperClient(DEFAULT_PIPE_NAME, 5.0, transport=transport) as admin:
            assert admin.hello is not None and admin.hello["access"] == "operator"
            assert admin.call(Method.STATUS)["helper"]["socket_path"] == DEFAULT_PIPE_NAME
            admin.call(Method.UP)
        with windows.running_as(user_process), HelperClient(DEFAULT_PIPE_NAME, 5.0, transport=transport) as user:
            assert user.hello is not None and user.hello["access"] == "read-only"
            assert user.call(Method.STATUS)["state"] == "connected"
            with pytest.raises(RequestFailed, match="Only Administrators and members of the group 'm6t'") as refused:
                user.call(Method.DOWN)
            assert refused.value.code == ErrorCode.FORBIDDEN
            assert refused.value.hint is not None and "net localgroup m6t" in refused.value.hint
            assert "usermod" not in refused.value.hint
    finally:
        running.close()


# ----------------------------------------------------------------------------- a squatter on the pipe name

SQUATTER_SDDL = "D:P(A;;GA;;;WD)"
"""What a squatter would offer: everyone may connect (and so be lied to)."""


@contextmanager
def squatted(windows: PipeWindows, token: FakeToken, sddl: str = SQUATTER_SDDL) -> Iterator[int]:
    """The helper's pipe name, created first by a process holding ``token`` (the helper is stopped)."""
    squatter = windows.spawn("evil.exe", token)
    pipes = windows.transport().pipes
    with windows.running_as(squatter):
        descriptor = pipes.security_descriptor(sddl)
        attributes = SECURITY_ATTRIBUTES(ctypes.sizeof(SECURITY_ATTRIBUTES), descriptor, False)
        try:
            handle = pipes.create_named_pipe(DEFAULT_PIPE_NAME, first=True, attributes=attributes)
        finally:
            pipes.local_free(descriptor)
    try:
        yield handle
    finally:
        with windows.running_as(squatter):
            pipes.close_handle(handle)


def received_by(windows: PipeWindows, server_end: int) -> bytes:
    """What reached the squatter's end of the pipe (its emulated socket) before the client went away."""
    end = windows.handles[server_end]
    assert isinstance(end, ServerEnd)
    sock = end.instance.server_sock
    if sock is None:
        return b""
    sock.settimeout(2.0)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("squatter", ["plain-user", "administrator-desktop"])
def test_clients_refuse_a_squatter_and_send_it_nothing(windows: PipeWindows, squatter: str) -> None:
    token = user_token(1005) if squatter == "plain-user" else filtered_admin_token(1006)
    user = windows.spawn("m6t.exe", user_token())
    with squatted(windows, token) as squatter_end:
        transport = windows.transport()

        def blocking() -> None:
            HelperClient(DEFAULT_PIPE_NAME, 2.0, transport=transport).connect()

        with windows.running_as(user), pytest.raises(HelperImpostor, match="not served by the m6t helper") as caught:
            blocking()
        assert "S-1-5-21-" in str(caught.value), "the owner is named"
        assert received_by(windows, squatter_end) == b"", "not a byte for the squatter"

    with squatted(windows, token) as squatter_end:

        async def asynchronous() -> None:
            with windows.running_as(user), pytest.raises(HelperImpostor):
                await AsyncHelperClient.open(DEFAULT_PIPE_NAME, 2.0, transport=windows.transport())

        run(asynchronous)
        assert received_by(windows, squatter_end) == b""


def test_a_squatter_cannot_make_its_pipe_look_like_the_helpers(windows: PipeWindows) -> None:
    """Naming Administrators (or LocalSystem) as the owner needs a token that may own as them."""
    for token in (user_token(1005), filtered_admin_token(1006)):
        for owner in ("BA", "SY"):
            with (
                pytest.raises(OSError, match="Windows error 1307"),
                squatted(windows, token, f"O:{owner}{SQUATTER_SDDL}"),
            ):
                pass


def test_the_tray_check_on_a_handle_it_opened(windows: PipeWindows) -> None:
    """What the tray runs on QLocalSocket's socketDescriptor(): the pipe's HANDLE, opened by other code."""
    transport = windows.transport()
    user = windows.spawn("m6t-tray.exe", user_token())

    async def scenario() -> None:
        async with control_server(windows):
            with windows.running_as(user):
                handle = transport.pipes.open_pipe(DEFAULT_PIPE_NAME)
                try:
                    transport.verify_server(handle)  # the helper's own pipe: no complaint
                finally:
                    transport.pipes.close_handle(handle)

    run(scenario)
    with squatted(windows, user_token(1005)), windows.running_as(user):
        handle = transport.pipes.open_pipe(DEFAULT_PIPE_NAME)
        try:
            with pytest.raises(ControlServerUntrusted, match="not served by the m6t helper"):
                transport.verify_server(handle)
        finally:
            transport.pipes.close_handle(handle)


def test_an_elevated_console_helper_is_trusted(windows: PipeWindows) -> None:
    """m6t-helper --foreground run as an administrator: its pipe belongs to Administrators."""
    admin = windows.spawn("m6t-helper.exe", elevated_admin_token())
    user = windows.spawn("m6t.exe", user_token())

    async def scenario() -> str:
        with windows.running_as(admin):
            transport = windows.transport()
            server = ControlServer(transport.listener(DEFAULT_PIPE_NAME), Helper(), policy, server_name="console")
            await server.start()
        try:
            with windows.running_as(user):
                client = await AsyncHelperClient.open(DEFAULT_PIPE_NAME, 5.0, transport=transport)
            await client.close()
            return client.hello["server"]
        finally:
            await server.close()

    assert run(scenario) == "console"
