"""The control API schema: framing, envelopes, and that its one definition matches the docs and the session."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from m6t.client import vocabulary
from m6t.client.api import schema
from m6t.client.api.schema import ErrorCode, EventKind, Method

DOCS = Path(__file__).resolve().parents[2] / "docs" / "control-api.md"


def test_encode_is_one_ascii_line() -> None:
    line = schema.encode({"message": "café\nnext"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.decode("ascii")
    assert schema.decode(line) == {"message": "café\nnext"}


def test_parse_request_defaults() -> None:
    parsed = schema.parse_request(b'{"id": 4, "method": "status"}')
    assert parsed == schema.ParsedRequest(4, Method.STATUS, {})
    parsed = schema.parse_request(json.dumps(schema.request("x", Method.CONFIG_SET, {"changes": {"tunnel.mtu": 1400}})))
    assert parsed.id == "x" and parsed.method is Method.CONFIG_SET and parsed.params["changes"] == {"tunnel.mtu": 1400}


@pytest.mark.parametrize(
    ("line", "code", "has_id"),
    [
        (b"{not json", ErrorCode.BAD_JSON, False),
        (b"\xff\xfe", ErrorCode.BAD_JSON, False),
        (b"[1, 2]", ErrorCode.BAD_REQUEST, False),
        (b'{"method": "status"}', ErrorCode.BAD_REQUEST, False),
        (b'{"id": true, "method": "status"}', ErrorCode.BAD_REQUEST, False),
        (b'{"id": 1}', ErrorCode.BAD_REQUEST, True),
        (b'{"id": 1, "method": "reboot"}', ErrorCode.UNKNOWN_METHOD, True),
        (b'{"id": 1, "method": "status", "params": [1]}', ErrorCode.BAD_REQUEST, True),
        (b'{"id": 1, "method": "status", "version": 99}', ErrorCode.UNSUPPORTED_VERSION, True),
        (b"[" * 100000 + b"]" * 100000, ErrorCode.BAD_JSON, False),
    ],
)
def test_parse_request_errors(line: bytes, code: ErrorCode, has_id: bool) -> None:
    with pytest.raises(schema.ProtocolError) as caught:
        schema.parse_request(line)
    assert caught.value.error["code"] == code
    assert caught.value.error["message"]
    assert (caught.value.request_id == 1) is has_id


def test_error_codes_have_sentences_and_slugs() -> None:
    for code in ErrorCode:
        assert code.sentence.endswith(".") and code.sentence[0].isupper()
        assert schema.code_from_wire(code.value) is code
        assert schema.code_from_wire(code.slug) is code
    assert schema.code_from_wire(9999) is None
    assert schema.code_from_wire(True) is None


def test_docs_list_every_code_method_and_event() -> None:
    text = DOCS.read_text()
    documented = {int(n): name for n, name in re.findall(r"^\| (\d{4}) \| `([a-z_0-9]+)` \|", text, re.MULTILINE)}
    assert documented == {code.value: code.slug for code in ErrorCode}
    for method in Method:
        assert f"`{method.value}`" in text
    for kind in EventKind:
        assert f"`{kind.value}`" in text
    for state in schema.TunnelState:
        assert f"`{state.value}`" in text


def test_session_vocabulary_is_the_schema_one() -> None:
    """The session's states and error numbers pass through the API unchanged."""
    assert {s.value for s in vocabulary.State} <= {s.value for s in schema.TunnelState}
    for code in vocabulary.ErrorCode:
        assert schema.code_from_wire(int(code)) is not None, code
        assert ErrorCode(int(code)).slug == code.name.lower()
    assert schema.TunnelState is vocabulary.State and schema.ErrorCode is vocabulary.ErrorCode
    assert schema.RegenerationReason is vocabulary.RegenerationReason


def test_operator_methods() -> None:
    assert {Method.UP, Method.DOWN, Method.CONFIG_SET, Method.MTU_PROBE, Method.ACCESS_KEY} == schema.OPERATOR_METHODS


def test_builders_shapes() -> None:
    reply = schema.ok_reply(3, {"a": 1})
    assert reply == {"type": "reply", "version": 1, "id": 3, "ok": True, "result": {"a": 1}}
    error = schema.error_info(ErrorCode.CONFIG_INVALID, problems=[{"key": "tunnel.mtu", "message": "too small"}])
    assert schema.error_reply(3, error)["error"]["problems"][0]["key"] == "tunnel.mtu"
    event = schema.event(EventKind.KEEPALIVE, 7, 1.5, {"rtt_ms": 2.0})
    assert event["type"] == "event" and event["seq"] == 7 and event["version"] == schema.PROTOCOL_VERSION
    hello = schema.hello(schema.Access.READ_ONLY, 65534, "m6t-helper test")
    assert hello["access"] == "read-only" and "status" in hello["methods"]
