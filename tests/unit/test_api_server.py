"""The control API against the helper service with a fake driver, over every control channel: a real Unix
socket and the named pipe on the emulated Windows (tests/unit/control_channels.py).  The same cases run on
both; the read-only-user cases need root on the Unix socket (a forked child drops to ``nobody``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m6t.client import events as ev
from m6t.client.api import schema
from m6t.client.api.client import HelperClient, HelperUnavailable, RequestFailed
from m6t.client.api.schema import ErrorCode, Method
from m6t.platform.base import ControlAddressInUse, ControlConnection
from tests.unit.control_channels import CHANNELS, Channel, Raw
from tests.unit.test_helper_fakes import RunningHelper


@pytest.fixture(params=sorted(CHANNELS))
def channel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Channel]:
    made = CHANNELS[request.param](tmp_path_factory.mktemp(request.param))
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def helper(channel: Channel) -> Iterator[RunningHelper]:
    running = channel.helper()
    try:
        yield running
    finally:
        running.close()


def raw_connection(channel: Channel, helper: RunningHelper) -> Raw:
    return channel.raw(helper)


def test_every_local_user_may_connect_and_is_greeted(channel: Channel, helper: RunningHelper) -> None:
    channel.assert_every_local_user_may_connect(helper)
    with helper.client() as client:
        assert client.hello is not None
        assert client.hello["type"] == "hello" and client.hello["version"] == schema.PROTOCOL_VERSION
        # Root, or (without root) a member of the operator group the test configuration names.
        assert client.hello["access"] == "operator"


def test_status_shape(helper: RunningHelper) -> None:
    with helper.client() as client:
        status = client.call(Method.STATUS)
    for key in ("state", "address", "gateway", "mtu", "keepalive", "attachment", "counters", "wanted", "problems"):
        assert key in status
    assert status["state"] == "disconnected" and status["wanted"] == "down"
    assert status["gateway"] == "198.51.100.2:3544" and status["mtu"] == 1472
    assert status["helper"]["socket_path"] == helper.socket_path


def test_every_event_kind_reaches_a_subscriber(helper: RunningHelper) -> None:
    with helper.client() as watcher, helper.client() as actor:
        first = watcher.subscribe()
        assert first["status"]["state"] == "disconnected"
        actor.call(Method.UP)
        driver = helper.driver
        helper.call_soon(lambda: driver.emit(ev.CountersEvent({"tx_packets": 9, "rx_packets": 8})))
        helper.call_soon(lambda: driver.emit(ev.MtuChanged(1472, 1400, 1472, "icmp", 1428)))
        helper.call_soon(lambda: driver.emit(ev.ErrorEvent.of(ErrorCode.BINDING_LOST, "3 keepalives")))
        actor.call(Method.CONFIG_SET, {"changes": {"tunnel.keepalive_interval": 20}})
        seen: dict[str, dict[str, object]] = {}
        deadline = time.monotonic() + 5
        wanted = {"state", "attachment", "address", "keepalive", "counters", "mtu", "error", "config", "wanted"}
        while not wanted <= seen.keys() and time.monotonic() < deadline:
            event = watcher.next_event(1.0)
            if event is not None:
                seen.setdefault(event["event"], event["data"])
    assert wanted <= seen.keys(), seen.keys()
    assert seen["keepalive"] == {"rtt_ms": 3.1}
    assert seen["address"]["address"] == "fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc"
    assert seen["error"]["code"] == ErrorCode.BINDING_LOST and seen["error"]["message"]
    assert seen["mtu"]["mtu"] == 1400 and seen["mtu"]["reason"] == "icmp"
    assert seen["config"] == {"changed": ["tunnel.keepalive_interval"]}
    assert seen["wanted"] == {"wanted": "up"}


def test_subscribe_filter_and_unsubscribe(helper: RunningHelper) -> None:
    with helper.client() as watcher, helper.client() as actor:
        watcher.subscribe(["wanted"])
        actor.call(Method.UP)
        event = watcher.next_event(2)
        assert event is not None and event["event"] == "wanted"
        assert watcher.next_event(0.3) is None
        watcher.call(Method.UNSUBSCRIBE)
        actor.call(Method.DOWN)
        assert watcher.next_event(0.3) is None
        with pytest.raises(RequestFailed) as caught:
            watcher.subscribe(["nope"])
        assert caught.value.code == ErrorCode.BAD_REQUEST


def test_malformed_lines_get_errors_and_connection_survives(channel: Channel, helper: RunningHelper) -> None:
    sock = raw_connection(channel, helper)
    assert sock.line()["type"] == "hello"
    cases = [
        (b"garbage\n", ErrorCode.BAD_JSON, None),
        (b'{"id": 5, "method": "frobnicate"}\n', ErrorCode.UNKNOWN_METHOD, 5),
        (b'{"id": 6}\n', ErrorCode.BAD_REQUEST, 6),
        (b"\xc3\x28\n", ErrorCode.BAD_JSON, None),
        (b"x" * (schema.MAX_LINE_BYTES + 10) + b"\n", ErrorCode.LINE_TOO_LONG, None),
        (b'{"id": 7, "method": "log", "params": {"limit": -1}}\n', ErrorCode.BAD_REQUEST, 7),
    ]
    for data, code, request_id in cases:
        sock.send(data)
        reply = sock.line()
        assert reply["type"] == "reply" and reply["ok"] is False, data[:40]
        assert reply["error"]["code"] == code
        assert reply["id"] == request_id
    sock.send(b'\n\n{"id": 8, "method": "status"}\n')
    reply = sock.line()
    assert reply["id"] == 8 and reply["ok"] is True
    sock.close()


def test_oversized_line_in_pieces(channel: Channel, helper: RunningHelper) -> None:
    """A long line trickling in is cut at the cap, answered once, and the next line works."""
    sock = raw_connection(channel, helper)
    sock.line()
    for _ in range(40):
        sock.send(b"y" * 4096)
    sock.send(b'\n{"id": 1, "method": "status"}\n')
    first = sock.line()
    assert first["error"]["code"] == ErrorCode.LINE_TOO_LONG
    second = sock.line()
    assert second["id"] == 1 and second["ok"] is True
    sock.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=300).filter(lambda b: b"\n" not in b), min_size=1, max_size=5))
def test_garbage_never_disturbs_the_helper(channel: Channel, helper: RunningHelper, lines: list[bytes]) -> None:
    sock = raw_connection(channel, helper)
    sock.line()
    sock.send(b"".join(line + b"\n" for line in lines))
    expected = sum(1 for line in lines if line.strip())
    for _ in range(expected):
        reply = sock.line()
        assert reply["type"] == "reply"
    sock.close()
    with helper.client(timeout=2) as other:
        assert other.call(Method.STATUS)["state"] in {"disconnected", "connected"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.fixed_dictionaries(
        {"id": st.one_of(st.integers(), st.text(max_size=10)), "method": st.sampled_from([m.value for m in Method])},
        optional={
            "params": st.dictionaries(
                st.sampled_from(["changes", "config", "key", "limit", "since", "events", "dry_run", "x"]),
                st.recursive(
                    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda children: (
                        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3)
                    ),
                    max_leaves=8,
                ),
                max_size=3,
            )
        },
    )
)
def test_random_well_formed_requests_always_get_a_reply(
    channel: Channel, helper: RunningHelper, request: dict[str, object]
) -> None:
    # Never let a random request turn the tunnel on, nor wait for a real probe.
    if request["method"] in {"up", "mtu.probe"}:
        request["method"] = "status"
    sock = raw_connection(channel, helper)
    sock.line()
    sock.send(json.dumps(request).encode() + b"\n")
    reply = sock.line()
    while reply["type"] != "reply":
        reply = sock.line()
    assert reply["id"] == request["id"]
    if not reply["ok"]:
        assert reply["error"]["code"] != ErrorCode.INTERNAL, reply
    sock.close()


def test_hundred_subscribers(helper: RunningHelper) -> None:
    clients = [helper.client().connect() for _ in range(100)]
    try:
        for client in clients:
            client.subscribe(["wanted"])
        with helper.client() as actor:
            actor.call(Method.UP)
        for client in clients:
            event = client.next_event(5)
            assert event is not None and event["data"] == {"wanted": "up"}
    finally:
        for client in clients:
            client.close()


def slow_subscriber(channel: Channel, helper: RunningHelper) -> Raw:
    """A subscriber with a small receive buffer that reads nothing until the test says so."""
    slow = raw_connection(channel, helper)
    channel.small_receive_buffer(slow)
    slow.send(b'{"id": 1, "method": "subscribe"}\n')
    time.sleep(0.2)
    return slow


def emit_big_events(helper: RunningHelper, count: int) -> None:
    """``count`` counters events of 400 counters each, emitted by the helper's driver on its loop."""
    driver = helper.driver
    big = {f"counter_{i}": i for i in range(400)}
    for _ in range(count):
        helper.call_soon(lambda: driver.emit(ev.CountersEvent(big)))


def test_slow_client_drops_events_not_the_helper(channel: Channel) -> None:
    running = channel.helper(max_events_queued=8, stall_timeout=60)
    try:
        slow = slow_subscriber(channel, running)
        emit_big_events(running, 300)
        with running.client(timeout=3) as other:
            assert other.call(Method.STATUS)["state"] == "disconnected"
        server = running.service.server  # type: ignore[union-attr]
        assert server is not None and server.events_dropped > 0
        # Reading it all now ends with a "dropped" event telling how many were missed.
        dropped = None
        deadline = time.monotonic() + 5
        while dropped is None and time.monotonic() < deadline:
            message = slow.line()
            if message.get("event") == "dropped":
                dropped = message["data"]
        assert dropped is not None and dropped["count"] > 0
        slow.close()
    finally:
        running.close()


def test_stalled_client_is_disconnected(channel: Channel) -> None:
    running = channel.helper(max_events_queued=2, stall_timeout=0.2)
    try:
        slow = slow_subscriber(channel, running)
        emit_big_events(running, 50)
        time.sleep(0.3)
        emit_big_events(running, 50)
        server = running.service.server  # type: ignore[union-attr]
        assert server is not None
        deadline = time.monotonic() + 3
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.connections
        slow.close()
    finally:
        running.close()


def test_second_helper_on_same_address_is_refused(helper: RunningHelper) -> None:
    async def serve_nothing(connection: ControlConnection) -> None:
        connection.writer.close()

    async def second() -> None:
        listener = helper.transport.listener(helper.socket_path)
        try:
            with pytest.raises(ControlAddressInUse):
                await listener.start(serve_nothing)
        finally:
            listener.close()
            await listener.wait_closed()

    asyncio.run(second())
    with helper.client() as client:
        assert client.call(Method.STATUS)["helper"]["socket_path"] == helper.socket_path, "the first one still serves"


def test_unreachable_helper(channel: Channel) -> None:
    with pytest.raises(HelperUnavailable) as caught:
        HelperClient(channel.unreachable_address(), transport=channel.helper_transport()).connect()
    assert "is m6t-helper running?" in str(caught.value)


# ----------------------------------------------------------------------------- read-only peers


def _as_reader(channel: Channel, helper: RunningHelper, requests: list[dict[str, object]]) -> list[dict[str, object]]:
    """As an unprivileged user: connect, send the requests, return the hello and the replies."""

    def session() -> list[dict[str, object]]:
        sock = raw_connection(channel, helper)
        replies = [sock.line()]
        for request in requests:
            sock.send(json.dumps(request).encode() + b"\n")
            replies.append(sock.line())
        sock.close()
        return replies

    result: list[dict[str, object]] = channel.as_reader(session)
    return result


def test_read_only_user_reads_but_cannot_change(channel: Channel, helper: RunningHelper) -> None:
    requests: list[dict[str, object]] = [
        {"id": 1, "method": "status"},
        {"id": 2, "method": "config.get", "params": {"key": "tunnel.mtu"}},
        {"id": 3, "method": "log"},
        {"id": 4, "method": "up"},
        {"id": 5, "method": "down"},
        {"id": 6, "method": "config.set", "params": {"changes": {"tunnel.mtu": 1400}}},
        {"id": 7, "method": "mtu.probe"},
        {"id": 8, "method": "subscribe"},
    ]
    hello, *answers = _as_reader(channel, helper, requests)
    assert hello["access"] == "read-only" and hello["uid"] == channel.reader_uid
    by_id: dict[object, dict[str, Any]] = {a["id"]: a for a in answers}
    assert by_id[1]["ok"] and by_id[1]["result"]["access"] == "read-only"
    assert by_id[2]["ok"] and by_id[2]["result"]["value"] == 1472
    assert by_id[3]["ok"] and by_id[8]["ok"]
    for refused in (4, 5, 6, 7):
        assert by_id[refused]["ok"] is False
        error = by_id[refused]["error"]
        assert error["code"] == ErrorCode.FORBIDDEN
        assert "'m6t'" in error["message"]
    assert helper.driver.state is schema.TunnelState.DISCONNECTED
    assert helper.service is not None and helper.service.config is not None
    assert helper.service.config.tunnel.mtu == 1472


def test_operator_group_member_may_change(channel: Channel) -> None:
    """A user holding the configured operator group is an operator; without it, read-only."""
    running = channel.helper(operator_group=channel.operator_group())

    def hello() -> dict[str, object]:
        sock = raw_connection(channel, running)
        try:
            return sock.line()
        finally:
            sock.close()

    try:
        with_group = channel.as_reader(hello, in_operator_group=True)
        without = channel.as_reader(hello)
    finally:
        running.close()
    assert (with_group["access"], without["access"]) == ("operator", "read-only")
