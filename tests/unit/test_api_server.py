"""The control API over a real Unix socket, against the helper service with a fake driver (no root needed,
except for the read-only-user tests, which fork a child that drops to ``nobody``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m6t.client import events as ev
from m6t.client.api import schema
from m6t.client.api.client import HelperClient, HelperUnavailable, RequestFailed
from m6t.client.api.schema import ErrorCode, Method
from m6t.platform.base import ControlAddressInUse
from m6t.platform.unix_control import bind_unix_socket
from tests.unit.test_helper_fakes import (
    CONFIG_TEXT,
    NOBODY,
    RunningHelper,
    helper,
    is_root,
    other_group,
    run_as,
    unix_socket,
)

__all__ = ["helper"]


def raw_socket(path: str) -> socket.socket:
    sock = unix_socket()
    sock.settimeout(5)
    sock.connect(path)
    return sock


def read_line(sock: socket.socket, buffer: bytearray) -> dict[str, object]:
    while b"\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    value = json.loads(line)
    assert isinstance(value, dict)
    return value


def test_socket_mode_and_hello(helper: RunningHelper) -> None:
    mode = os.stat(helper.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o666
    assert stat.S_IMODE(os.stat(Path(helper.socket_path).parent).st_mode) == 0o755
    with HelperClient(helper.socket_path) as client:
        assert client.hello is not None
        assert client.hello["type"] == "hello" and client.hello["version"] == schema.PROTOCOL_VERSION
        # Root, or (without root) a member of the operator group the test configuration names.
        assert client.hello["access"] == "operator"


def test_status_shape(helper: RunningHelper) -> None:
    with HelperClient(helper.socket_path) as client:
        status = client.call(Method.STATUS)
    for key in ("state", "address", "gateway", "mtu", "keepalive", "attachment", "counters", "wanted", "problems"):
        assert key in status
    assert status["state"] == "disconnected" and status["wanted"] == "down"
    assert status["gateway"] == "198.51.100.2:3544" and status["mtu"] == 1472
    assert status["helper"]["socket_path"] == helper.socket_path


def test_every_event_kind_reaches_a_subscriber(helper: RunningHelper) -> None:
    with HelperClient(helper.socket_path) as watcher, HelperClient(helper.socket_path) as actor:
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
    with HelperClient(helper.socket_path) as watcher, HelperClient(helper.socket_path) as actor:
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


def test_malformed_lines_get_errors_and_connection_survives(helper: RunningHelper) -> None:
    sock = raw_socket(helper.socket_path)
    buffer = bytearray()
    assert read_line(sock, buffer)["type"] == "hello"
    cases = [
        (b"garbage\n", ErrorCode.BAD_JSON, None),
        (b'{"id": 5, "method": "frobnicate"}\n', ErrorCode.UNKNOWN_METHOD, 5),
        (b'{"id": 6}\n', ErrorCode.BAD_REQUEST, 6),
        (b"\xc3\x28\n", ErrorCode.BAD_JSON, None),
        (b"x" * (schema.MAX_LINE_BYTES + 10) + b"\n", ErrorCode.LINE_TOO_LONG, None),
        (b'{"id": 7, "method": "log", "params": {"limit": -1}}\n', ErrorCode.BAD_REQUEST, 7),
    ]
    for data, code, request_id in cases:
        sock.sendall(data)
        reply = read_line(sock, buffer)
        assert reply["type"] == "reply" and reply["ok"] is False, data[:40]
        assert reply["error"]["code"] == code  # type: ignore[index]
        assert reply["id"] == request_id
    sock.sendall(b'\n\n{"id": 8, "method": "status"}\n')
    reply = read_line(sock, buffer)
    assert reply["id"] == 8 and reply["ok"] is True
    sock.close()


def test_oversized_line_in_pieces(helper: RunningHelper) -> None:
    """A long line trickling in is cut at the cap, answered once, and the next line works."""
    sock = raw_socket(helper.socket_path)
    buffer = bytearray()
    read_line(sock, buffer)
    for _ in range(40):
        sock.sendall(b"y" * 4096)
    sock.sendall(b'\n{"id": 1, "method": "status"}\n')
    first = read_line(sock, buffer)
    assert first["error"]["code"] == ErrorCode.LINE_TOO_LONG  # type: ignore[index]
    second = read_line(sock, buffer)
    assert second["id"] == 1 and second["ok"] is True
    sock.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=300).filter(lambda b: b"\n" not in b), min_size=1, max_size=5))
def test_garbage_never_disturbs_the_helper(helper: RunningHelper, lines: list[bytes]) -> None:
    sock = raw_socket(helper.socket_path)
    buffer = bytearray()
    read_line(sock, buffer)
    sock.sendall(b"".join(line + b"\n" for line in lines))
    expected = sum(1 for line in lines if line.strip())
    for _ in range(expected):
        reply = read_line(sock, buffer)
        assert reply["type"] == "reply"
    sock.close()
    with HelperClient(helper.socket_path, timeout=2) as other:
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
def test_random_well_formed_requests_always_get_a_reply(helper: RunningHelper, request: dict[str, object]) -> None:
    # Never let a random request turn the tunnel on, nor wait for a real probe.
    if request["method"] in {"up", "mtu.probe"}:
        request["method"] = "status"
    sock = raw_socket(helper.socket_path)
    buffer = bytearray()
    read_line(sock, buffer)
    sock.sendall(json.dumps(request).encode() + b"\n")
    reply = read_line(sock, buffer)
    while reply["type"] != "reply":
        reply = read_line(sock, buffer)
    assert reply["id"] == request["id"]
    if not reply["ok"]:
        assert reply["error"]["code"] != ErrorCode.INTERNAL, reply  # type: ignore[index]
    sock.close()


def test_hundred_subscribers(helper: RunningHelper) -> None:
    clients = [HelperClient(helper.socket_path).connect() for _ in range(100)]
    try:
        for client in clients:
            client.subscribe(["wanted"])
        with HelperClient(helper.socket_path) as actor:
            actor.call(Method.UP)
        for client in clients:
            event = client.next_event(5)
            assert event is not None and event["data"] == {"wanted": "up"}
    finally:
        for client in clients:
            client.close()


def test_slow_client_drops_events_not_the_helper(tmp_path: Path) -> None:
    running = RunningHelper(tmp_path, max_events_queued=8, stall_timeout=60).start()
    try:
        slow = raw_socket(running.socket_path)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(b'{"id": 1, "method": "subscribe"}\n')
        time.sleep(0.2)
        driver = running.driver
        big = {f"counter_{i}": i for i in range(400)}
        for _ in range(300):
            running.call_soon(lambda: driver.emit(ev.CountersEvent(big)))
        with HelperClient(running.socket_path, timeout=3) as other:
            assert other.call(Method.STATUS)["state"] == "disconnected"
        server = running.service.server  # type: ignore[union-attr]
        assert server is not None and server.events_dropped > 0
        # Reading it all now ends with a "dropped" event telling how many were missed.
        buffer = bytearray()
        slow.settimeout(5)
        dropped = None
        deadline = time.monotonic() + 5
        while dropped is None and time.monotonic() < deadline:
            message = read_line(slow, buffer)
            if message.get("event") == "dropped":
                dropped = message["data"]
        assert dropped is not None and dropped["count"] > 0  # type: ignore[index]
        slow.close()
    finally:
        running.close()


def test_stalled_client_is_disconnected(tmp_path: Path) -> None:
    running = RunningHelper(tmp_path, max_events_queued=2, stall_timeout=0.2).start()
    try:
        slow = raw_socket(running.socket_path)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(b'{"id": 1, "method": "subscribe"}\n')
        time.sleep(0.2)
        driver = running.driver
        big = {f"counter_{i}": i for i in range(400)}
        for _ in range(50):
            running.call_soon(lambda: driver.emit(ev.CountersEvent(big)))
        time.sleep(0.3)
        for _ in range(50):
            running.call_soon(lambda: driver.emit(ev.CountersEvent(big)))
        server = running.service.server  # type: ignore[union-attr]
        assert server is not None
        deadline = time.monotonic() + 3
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.connections
        slow.close()
    finally:
        running.close()


def test_second_helper_on_same_socket_is_refused(helper: RunningHelper) -> None:
    with pytest.raises(ControlAddressInUse):
        bind_unix_socket(helper.socket_path)


def test_unreachable_helper(tmp_path: Path) -> None:
    with pytest.raises(HelperUnavailable) as caught:
        HelperClient(str(tmp_path / "none.sock")).connect()
    assert "is m6t-helper running?" in str(caught.value)


# ----------------------------------------------------------------------------- read-only peers


def _as_nobody(path: str, requests: list[dict[str, object]]) -> list[dict[str, object]]:
    """As nobody (no groups): connect, send the requests, return the hello and the replies."""

    def child() -> bytes:
        sock = raw_socket(path)
        buffer = bytearray()
        replies = [read_line(sock, buffer)]
        for request in requests:
            sock.sendall(json.dumps(request).encode() + b"\n")
            replies.append(read_line(sock, buffer))
        return json.dumps(replies).encode()

    result: list[dict[str, object]] = json.loads(run_as(NOBODY, NOBODY, [], child))
    return result


@pytest.fixture
def world_helper(tmp_path: Path) -> Iterator[RunningHelper]:
    if not is_root():
        pytest.skip("needs root to fork a child that becomes nobody (peer credentials of another user)")
    # pytest's tmp_path sits under a 0700 directory that nobody cannot traverse.
    world = Path(tempfile.mkdtemp(prefix="m6t-api-"))
    world.chmod(0o755)
    running = RunningHelper(world).start()
    try:
        yield running
    finally:
        running.close()
        shutil.rmtree(world, ignore_errors=True)


def test_read_only_user_reads_but_cannot_change(world_helper: RunningHelper) -> None:
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
    replies = _as_nobody(world_helper.socket_path, requests)
    hello, *answers = replies
    assert hello["access"] == "read-only" and hello["uid"] == NOBODY
    by_id = {a["id"]: a for a in answers}
    assert by_id[1]["ok"] and by_id[1]["result"]["access"] == "read-only"  # type: ignore[index]
    assert by_id[2]["ok"] and by_id[2]["result"]["value"] == 1472  # type: ignore[index]
    assert by_id[3]["ok"] and by_id[8]["ok"]
    for refused in (4, 5, 6, 7):
        assert by_id[refused]["ok"] is False
        error = by_id[refused]["error"]
        assert error["code"] == ErrorCode.FORBIDDEN  # type: ignore[index]
        assert "'m6t'" in error["message"]  # type: ignore[index]
    assert world_helper.driver.state is schema.TunnelState.DISCONNECTED
    assert world_helper.service is not None and world_helper.service.config is not None
    assert world_helper.service.config.tunnel.mtu == 1472


def test_operator_group_member_may_change(tmp_path: Path) -> None:
    """A nobody process holding the configured operator group is an operator; without it, read-only."""
    if not is_root():
        pytest.skip("needs root to fork a child that becomes nobody (peer credentials of another user)")
    group = other_group()
    if group is None:
        pytest.skip("no group to use as the operator group")
    name, gid = group
    world = Path(tempfile.mkdtemp(prefix="m6t-api-"))
    world.chmod(0o755)
    (world / "client.toml").write_text(CONFIG_TEXT.replace('operator_group = "m6t"', f'operator_group = "{name}"'))
    running = RunningHelper(world).start()

    def hello() -> bytes:
        return json.dumps(read_line(raw_socket(running.socket_path), bytearray())).encode()

    try:
        with_group = json.loads(run_as(NOBODY, NOBODY, [gid], hello))
        without = json.loads(run_as(NOBODY, NOBODY, [], hello))
    finally:
        running.close()
        shutil.rmtree(world, ignore_errors=True)
    assert (with_group["access"], without["access"]) == ("operator", "read-only")
