"""The QLocalSocket client against the fake helper: greeting, replies, events, losses and retries."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtNetwork import QLocalServer
from pytestqt.qtbot import QtBot

from m6t.client.api.schema import ErrorCode, EventKind, Method
from m6t.ui.connection import UNREACHABLE_CODE, HelperConnection, Outcome
from tests.ui.conftest import WAIT_MS
from tests.ui.fake_helper import FakeHelper


def _call(
    qtbot: QtBot, connection: HelperConnection, method: Method, params: dict[str, object] | None = None
) -> Outcome:
    outcomes: list[Outcome] = []
    connection.call(method, params, outcomes.append)
    qtbot.waitUntil(lambda: bool(outcomes), timeout=WAIT_MS)
    return outcomes[0]


def test_greets_then_answers_and_streams_events(qtbot: QtBot, helper: FakeHelper, connection: HelperConnection) -> None:
    with qtbot.waitSignal(connection.online, timeout=WAIT_MS) as online:
        connection.start()
    assert online.args is not None and online.args[0]["type"] == "hello"
    status = _call(qtbot, connection, Method.STATUS)
    assert status.ok and status.result["state"] == "disconnected"
    assert _call(qtbot, connection, Method.SUBSCRIBE).ok
    with qtbot.waitSignal(connection.event_received, timeout=WAIT_MS) as received:
        helper.push_event(EventKind.KEEPALIVE, {"rtt_ms": 2.5})
    assert received.args is not None and received.args[0]["data"] == {"rtt_ms": 2.5}
    assert helper.requests[0].method is Method.STATUS


def test_helper_errors_come_back_as_outcomes(qtbot: QtBot, helper: FakeHelper, connection: HelperConnection) -> None:
    connection.start()
    qtbot.waitUntil(connection.is_online, timeout=WAIT_MS)
    helper.forced_errors[Method.MTU_PROBE] = {
        "code": 4004,
        "name": "mtu_probe_failed",
        "message": "No answer.",
        "hint": "Set tunnel.probe.",
    }
    outcome = _call(qtbot, connection, Method.MTU_PROBE)
    assert not outcome.ok and outcome.error is not None and outcome.error["code"] == ErrorCode.MTU_PROBE_FAILED
    assert outcome.message == "No answer. Set tunnel.probe."


def test_no_helper_reports_why_and_calls_fail_at_once(qtbot: QtBot, connection: HelperConnection) -> None:
    with qtbot.waitSignal(connection.offline, timeout=WAIT_MS) as offline:
        connection.start()
    assert offline.args == ["The m6t helper is not running."]
    outcome = _call(qtbot, connection, Method.STATUS)
    assert not outcome.ok and outcome.error is not None and outcome.error["code"] == UNREACHABLE_CODE


def test_retries_quietly_then_connects_when_the_helper_appears(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], connection: HelperConnection
) -> None:
    offline_reasons: list[str] = []
    connection.offline.connect(offline_reasons.append)
    connection.start()
    qtbot.wait(300)  # several retries at 20..100 ms
    assert offline_reasons == ["The m6t helper is not running."], "one notice per loss, not one per retry"
    with qtbot.waitSignal(connection.online, timeout=WAIT_MS):
        make_helper()


def test_pending_calls_fail_when_the_helper_goes_away(
    qtbot: QtBot, helper: FakeHelper, connection: HelperConnection
) -> None:
    connection.start()
    qtbot.waitUntil(connection.is_online, timeout=WAIT_MS)
    outcomes: list[Outcome] = []
    # Stop the helper from answering: the call stays pending until the connection drops.
    helper.stop()
    connection.call(Method.STATUS, None, outcomes.append)
    qtbot.waitUntil(lambda: bool(outcomes), timeout=WAIT_MS)
    assert not outcomes[0].ok
    assert not connection.is_online()


def test_reconnects_after_the_helper_restarts(qtbot: QtBot, helper: FakeHelper, connection: HelperConnection) -> None:
    connection.start()
    qtbot.waitUntil(connection.is_online, timeout=WAIT_MS)
    with qtbot.waitSignal(connection.offline, timeout=WAIT_MS):
        helper.stop()
    with qtbot.waitSignal(connection.online, timeout=WAIT_MS):
        helper.start()


def test_refuses_a_helper_of_another_protocol_version(
    qtbot: QtBot, make_helper: Callable[..., FakeHelper], connection: HelperConnection
) -> None:
    helper = make_helper(start=False)
    helper.hello_version = 99
    helper.start()
    with qtbot.waitSignal(connection.offline, timeout=WAIT_MS) as offline:
        connection.start()
    assert offline.args is not None and "version 99" in offline.args[0]
    assert not connection.is_online()


def test_ignores_garbage_lines(qtbot: QtBot, helper: FakeHelper, connection: HelperConnection) -> None:
    connection.start()
    qtbot.waitUntil(connection.is_online, timeout=WAIT_MS)
    assert _call(qtbot, connection, Method.SUBSCRIBE).ok
    for client in list(helper._clients):
        client.write(b"not json\n[1,2]\n")
    with qtbot.waitSignal(connection.event_received, timeout=WAIT_MS):
        helper.push_event(EventKind.WANTED, {"wanted": "up"})
    assert connection.is_online()


def test_a_silent_server_is_dropped(qtbot: QtBot, socket_path: str) -> None:
    server = QLocalServer()
    QLocalServer.removeServer(socket_path)
    assert server.listen(socket_path)
    connection = HelperConnection(socket_path, retry_min_ms=1000, hello_timeout_ms=100)
    try:
        with qtbot.waitSignal(connection.offline, timeout=WAIT_MS) as offline:
            connection.start()
    finally:
        connection.stop()
        server.close()
    assert offline.args is not None and "does not speak" in offline.args[0]


def test_a_server_the_os_does_not_vouch_for_gets_nothing(qtbot: QtBot, helper: FakeHelper, socket_path: str) -> None:
    """A squatter on the helper's address (Windows: the pipe name taken first): refused on connect, with the
    OS's reason, before its hello is read or a request is sent; checked on Qt's own native handle."""
    checked: list[int] = []

    def refuse(native: int) -> str:
        checked.append(native)
        return "the pipe belongs to S-1-5-21-1-2-3-1005, not to the system"

    connection = HelperConnection(socket_path, retry_min_ms=1000, check_server=refuse)
    try:
        with qtbot.waitSignal(connection.offline, timeout=WAIT_MS) as offline:
            connection.start()
        outcomes: list[Outcome] = []
        connection.call(Method.STATUS, None, outcomes.append)
        qtbot.wait(100)
    finally:
        connection.stop()
    assert offline.args is not None and "not the m6t helper" in offline.args[0] and "S-1-5-21" in offline.args[0]
    assert checked and checked[0] > 0, "the connection's own descriptor"
    assert not connection.is_online() and connection.hello is None
    assert outcomes and not outcomes[0].ok
    assert helper.requests == [], "nothing was sent"


def test_a_server_the_os_vouches_for_is_greeted(qtbot: QtBot, helper: FakeHelper, socket_path: str) -> None:
    checked: list[int] = []

    def vouch(native: int) -> None:
        checked.append(native)

    connection = HelperConnection(socket_path, check_server=vouch)
    try:
        with qtbot.waitSignal(connection.online, timeout=WAIT_MS):
            connection.start()
    finally:
        connection.stop()
    assert len(checked) == 1
