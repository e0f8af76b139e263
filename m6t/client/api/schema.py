"""The control API's one definition: framing, requests, replies, events and error codes.

The helper (server), the ``m6t`` CLI and the tray GUI all import this module, so a message shape or an
error code is defined here once and nowhere else.  It does no I/O and needs no Qt (from below it takes
only the platform's default address), so the GUI can use it with QLocalSocket and the server with
asyncio.  ``docs/control-api.md`` is the prose version.

Framing: one JSON object per line, UTF-8, terminated by ``\\n``.  The server's first line is a ``hello``;
every server line carries ``"version": PROTOCOL_VERSION``.  Shapes only grow: a client must ignore keys
it does not know, and the server ignores unknown keys in ``params``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Final, Literal, NotRequired, TypedDict

from m6t.platform import default_control_address

PROTOCOL_VERSION: Final = 1
"""Bumped only for an incompatible change; additions (new keys, methods, events, codes) keep it."""

MAX_LINE_BYTES: Final = 64 * 1024
"""Longest request line the server reads (newline included); a longer one is answered with
``LINE_TOO_LONG`` and discarded.  Server lines may be longer (a diagnostics bundle)."""

DEFAULT_SOCKET_PATH: Final = default_control_address()
"""Where the helper listens unless told otherwise: the platform's choice (a socket path, a pipe name)."""
DEFAULT_STATE_DIR: Final = "/var/lib/m6t"
DEFAULT_OPERATOR_GROUP: Final = "m6t"


# --------------------------------------------------------------------------------------------- methods


class Method(StrEnum):
    """Request methods (``"method"`` of a request)."""

    STATUS = "status"
    """Read. ``params: {}`` → :class:`Status`."""
    SUBSCRIBE = "subscribe"
    """Read. ``params: {"events"?: [EventKind...]}`` (default: all) → ``{"status": Status}``; events follow."""
    UNSUBSCRIBE = "unsubscribe"
    """Read. ``params: {}`` → ``{}``; no more events on this connection."""
    UP = "up"
    """Change. ``params: {}`` → :class:`Status`.  Remembered across helper restarts."""
    DOWN = "down"
    """Change. ``params: {}`` → :class:`Status`.  Remembered across helper restarts."""
    CONFIG_GET = "config.get"
    """Read. ``params: {"key"?: "section.key"}`` → :class:`ConfigGetResult`."""
    CONFIG_SET = "config.set"
    """Change. ``params: {"changes"?: {"section.key": value}, "config"?: {...}, "dry_run"?: bool}``
    → :class:`ConfigSetResult`; on invalid input error ``CONFIG_INVALID`` with ``problems``."""
    LOG = "log"
    """Read. ``params: {"limit"?: int (default 200), "since"?: seq}`` → :class:`LogResult`."""
    DIAGNOSTICS = "diagnostics"
    """Read. ``params: {}`` → :class:`DiagnosticsResult` (bundle also written in the state dir)."""
    MTU_PROBE = "mtu.probe"
    """Change. ``params: {}`` → :class:`MtuProbeResult`."""


OPERATOR_METHODS: Final[frozenset[Method]] = frozenset({Method.UP, Method.DOWN, Method.CONFIG_SET, Method.MTU_PROBE})
"""Methods only root and members of the operator group may call; the rest are open to every local user."""


class Access(StrEnum):
    """What the server grants this connection, decided once from its peer credentials."""

    OPERATOR = "operator"
    READ_ONLY = "read-only"


# ---------------------------------------------------------------------------------------------- events


class EventKind(StrEnum):
    """Event names (``"event"`` of an event line); ``data`` shapes are the TypedDicts named below."""

    STATE = "state"
    """:class:`StateEvent`"""
    ATTACHMENT = "attachment"
    """:class:`AttachmentEvent`"""
    ADDRESS = "address"
    """:class:`AddressEvent`"""
    KEEPALIVE = "keepalive"
    """:class:`KeepaliveEvent`"""
    COUNTERS = "counters"
    """:class:`CountersEvent`"""
    MTU = "mtu"
    """:class:`MtuEvent`"""
    ERROR = "error"
    """:class:`ErrorInfo` — something went wrong in the tunnel or helper (not a request's failure)."""
    CONFIG = "config"
    """:class:`ConfigEvent` — the running configuration changed (by any client)."""
    WANTED = "wanted"
    """:class:`WantedEvent` — the user's up/down wish changed (by any client)."""
    DROPPED = "dropped"
    """:class:`DroppedEvent` — this client was too slow; ``count`` events were dropped for it."""


class TunnelState(StrEnum):
    """Documented values of ``Status.state`` (the client session's states, ``m6t.client.events.State``).

    Clients must tolerate values they do not know (show them verbatim).
    """

    DISCONNECTED = "disconnected"
    """Not asked to connect (or asked to disconnect); nothing installed."""
    WAITING_FOR_NETWORK = "waiting_for_network"
    """Asked to connect, but no IPv4 path to the gateway (or its name is not resolved yet)."""
    CONNECTING = "connecting"
    """Address installed, nothing has come back for it yet."""
    CONNECTED = "connected"
    """The gateway answers: traffic flows."""
    DEGRADED = "degraded"
    """Keepalives going unanswered, or backing off between failed attempts."""
    ERROR = "error"
    """The OS refused something (socket, address, route); retried with backoff.  See ``problems``."""


class RegenerationReason(StrEnum):
    """Why the 48-bit suffix was drawn anew; each one means a new state at the gateway."""

    ATTACHED = "attached"
    ATTACHMENT_CHANGED = "attachment_changed"
    KEEPALIVE_UNANSWERED = "keepalive_unanswered"
    PROBE_UNANSWERED = "probe_unanswered"
    NO_REPLY = "no_reply"
    GATEWAY_CHANGED = "gateway_changed"
    CONFIG_CHANGED = "config_changed"
    RECONNECT = "reconnect"
    RETRY_AFTER_ERROR = "retry_after_error"


# --------------------------------------------------------------------------------------------- errors


class ErrorCode(IntEnum):
    """Stable numbered error codes.  Numbers never change meaning; new ones are only added.

    1xxx: the request itself.  2xxx: configuration.  3xxx: host / platform (start-up checks).
    4xxx: the tunnel at run time.  5xxx: the helper itself.
    """

    BAD_JSON = 1001
    BAD_REQUEST = 1002
    UNKNOWN_METHOD = 1003
    LINE_TOO_LONG = 1004
    UNSUPPORTED_VERSION = 1005
    FORBIDDEN = 1006
    BUSY = 1007

    CONFIG_INVALID = 2001
    CONFIG_UNKNOWN_KEY = 2002
    CONFIG_WRITE_FAILED = 2003
    CONFIG_LOAD_FAILED = 2004

    TUN_MISSING = 3001
    IPV6_DISABLED = 3002
    INTERFACE_BUSY = 3003
    GATEWAY_UNRESOLVABLE = 3004
    PLATFORM_ERROR = 3005
    PERMISSION_DENIED = 3006
    TUN_FAILED = 3007

    TUNNEL_ERROR = 4000
    GATEWAY_UNREACHABLE = 4001
    NO_NETWORK = 4002
    BINDING_LOST = 4003
    MTU_PROBE_FAILED = 4004
    ADDRESS_FAILED = 4005
    NOT_UP = 4006
    MTU_LOWERED = 4007
    PROBE_UNANSWERED = 4008
    NO_REPLY = 4009
    SOCKET_FAILED = 4010

    INTERNAL = 5001
    CLEANUP_FAILED = 5002
    DIAGNOSTICS_FAILED = 5003
    STATE_WRITE_FAILED = 5004

    @property
    def slug(self) -> str:
        """A stable lower-case name (``"config_invalid"``) for logs and scripts."""
        return self.name.lower()

    @property
    def sentence(self) -> str:
        """The default user-facing sentence; a message may be more specific but never vaguer."""
        return _SENTENCES[self]


_SENTENCES: Final[dict[ErrorCode, str]] = {
    ErrorCode.BAD_JSON: "The request is not valid JSON.",
    ErrorCode.BAD_REQUEST: "The request is malformed.",
    ErrorCode.UNKNOWN_METHOD: "The helper does not know this request.",
    ErrorCode.LINE_TOO_LONG: "The request is too long.",
    ErrorCode.UNSUPPORTED_VERSION: "This client speaks a control API version the helper does not support.",
    ErrorCode.FORBIDDEN: "Only root and members of the m6t operator group may change the tunnel.",
    ErrorCode.BUSY: "The helper is busy with another change; try again.",
    ErrorCode.CONFIG_INVALID: "The configuration is invalid; nothing was changed.",
    ErrorCode.CONFIG_UNKNOWN_KEY: "There is no such configuration setting.",
    ErrorCode.CONFIG_WRITE_FAILED: "The configuration could not be saved; nothing was changed.",
    ErrorCode.CONFIG_LOAD_FAILED: "The configuration file could not be loaded.",
    ErrorCode.TUN_MISSING: "The TUN driver is not available on this computer.",
    ErrorCode.IPV6_DISABLED: "IPv6 is disabled on this computer.",
    ErrorCode.INTERFACE_BUSY: "Another program already uses the tunnel interface name.",
    ErrorCode.GATEWAY_UNRESOLVABLE: "The gateway's name cannot be resolved; retrying.",
    ErrorCode.PLATFORM_ERROR: "The operating system refused a network change.",
    ErrorCode.PERMISSION_DENIED: "The helper lacks the privileges it needs.",
    ErrorCode.TUN_FAILED: "The tunnel interface could not be created.",
    ErrorCode.TUNNEL_ERROR: "The tunnel reported an error.",
    ErrorCode.GATEWAY_UNREACHABLE: "The gateway does not answer.",
    ErrorCode.NO_NETWORK: "There is no IPv4 network toward the gateway.",
    ErrorCode.BINDING_LOST: "The gateway forgot this computer; reconnecting with a new address.",
    ErrorCode.MTU_PROBE_FAILED: "The MTU probe failed.",
    ErrorCode.ADDRESS_FAILED: "The tunnel address could not be installed.",
    ErrorCode.NOT_UP: "The tunnel is not up.",
    ErrorCode.MTU_LOWERED: "The path to the gateway is narrower than configured; the MTU was lowered.",
    ErrorCode.PROBE_UNANSWERED: "The Home Agent does not answer through the gateway on this port; trying again.",
    ErrorCode.NO_REPLY: "Nothing comes back through the tunnel for the traffic sent; trying again.",
    ErrorCode.SOCKET_FAILED: "The connection to the gateway could not be opened; retrying.",
    ErrorCode.INTERNAL: "The helper hit an internal error.",
    ErrorCode.CLEANUP_FAILED: "Leftovers of a previous run could not all be removed.",
    ErrorCode.DIAGNOSTICS_FAILED: "The diagnostics bundle could not be written.",
    ErrorCode.STATE_WRITE_FAILED: "The helper could not save its state.",
}


def code_from_wire(value: object) -> ErrorCode | None:
    """The :class:`ErrorCode` for a number or slug seen on the wire, ``None`` for an unknown one."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return ErrorCode(value)
        except ValueError:
            return None
    if isinstance(value, str):
        member = ErrorCode.__members__.get(value.upper())
        return member
    return None


# ----------------------------------------------------------------------------------------- data shapes


class Problem(TypedDict):
    """One reason a configuration is invalid, attached to the setting it is about."""

    key: str
    """``section.key`` (e.g. ``"tunnel.mtu"``), or ``""`` when it concerns the whole file."""
    message: str
    file: NotRequired[str]
    """The file it was read from, when it came from one."""


class ErrorInfo(TypedDict):
    """A failed reply's ``error``, and the ``data`` of an ``error`` event."""

    code: int
    """An :class:`ErrorCode` value."""
    name: str
    """Its slug (``ErrorCode.slug``)."""
    message: str
    """One user-facing sentence."""
    hint: NotRequired[str | None]
    """How to fix it, when known."""
    detail: NotRequired[str]
    """What exactly happened (the OS message...), for diagnostics rather than for the user."""
    problems: NotRequired[list[Problem]]
    """For ``CONFIG_INVALID``: per-setting problems."""


class KeepaliveInfo(TypedDict):
    rtt_ms: float | None
    """Round trip of the last answered keepalive."""
    age_s: float | None
    """Seconds since that answer."""
    interval_s: float | None
    """Configured keepalive interval."""
    last_sent: NotRequired[float | None]
    """Unix time the last keepalive left."""
    last_reply: NotRequired[float | None]
    """Unix time the last keepalive reply arrived."""
    missed: NotRequired[int]
    """Keepalives unanswered in a row (only counted once the gateway has confirmed the address)."""


class MtuEvidenceInfo(TypedDict):
    source: str
    """``"icmp"`` or ``"emsgsize"``."""
    path_mtu: int
    time: float | None


class MtuDetail(TypedDict):
    configured: int
    effective: int
    last_evidence: MtuEvidenceInfo | None


class AttachmentInfo(TypedDict):
    """Where the host reaches the gateway over IPv4; ``null`` when it cannot."""

    local_ipv4: str
    interface: str
    router: str | None


class Regeneration(TypedDict):
    """One suffix regeneration and why it happened."""

    time: float
    """Unix time."""
    reason: str
    """A :class:`RegenerationReason` value (tolerate others)."""
    old: str | None
    new: str | None


class HelperInfo(TypedDict):
    version: str
    pid: int
    uptime_s: float
    config_path: str
    socket_path: str


class Status(TypedDict):
    """The reply to ``status``; also embedded in the ``subscribe``/``up``/``down`` replies."""

    state: str
    """A :class:`TunnelState` value (tolerate others)."""
    wanted: Literal["up", "down"]
    """What the user last asked for (persisted); ``state`` says how far the tunnel got."""
    address: str | None
    """The tunnel's IPv6 address, without prefix length."""
    gateway: str | None
    """``host:port`` of the gateway in use."""
    interface: str | None
    mtu: int | None
    """The effective tunnel MTU; ``mtu_detail`` has the configured value and the last evidence."""
    mtu_detail: NotRequired[MtuDetail | None]
    keepalive: KeepaliveInfo
    attachment: AttachmentInfo | None
    counters: dict[str, int]
    regenerations: list[Regeneration]
    """Every new address drawn, oldest first (bounded history): attachment changes, lost bindings, failover."""
    problems: list[ErrorInfo]
    """Current start-up / host problems (TUN missing, IPv6 disabled, gateway unresolvable...)."""
    access: str
    """This connection's :class:`Access`."""
    helper: HelperInfo
    detail: NotRequired[str]
    """The session's words for the state (``"confirmed"``, ``"no IPv4 route to the gateway"``...)."""
    since: NotRequired[float | None]
    """Unix time the current state began."""
    session: NotRequired[dict[str, Any]]
    """The client session's full snapshot (gateway ports, MTU evidence, keepalive times, regenerations...),
    for diagnostics windows; its shape follows the session, not this schema."""


class StateEvent(TypedDict):
    state: str
    previous: NotRequired[str | None]
    detail: NotRequired[str]


class AttachmentEvent(TypedDict):
    attachment: AttachmentInfo | None


class AddressEvent(TypedDict):
    address: str | None
    previous: NotRequired[str | None]
    reason: NotRequired[str]
    """Why a new address was drawn (``attached``, ``attachment_changed``, ``keepalive_unanswered``...)."""
    gateway: NotRequired[str | None]
    """``host:port`` in use with it."""


class KeepaliveEvent(TypedDict):
    """Sent for each answered keepalive only."""

    rtt_ms: float


class CountersEvent(TypedDict):
    counters: dict[str, int]


class MtuEvent(TypedDict):
    mtu: int
    """The effective tunnel MTU now."""
    previous: NotRequired[int | None]
    configured: NotRequired[int]
    reason: NotRequired[str]
    """``configured``, ``attachment``, ``icmp`` or ``emsgsize``."""
    path_mtu: NotRequired[int | None]


class ConfigEvent(TypedDict):
    changed: list[str]
    """``section.key`` names whose value changed."""


class WantedEvent(TypedDict):
    wanted: Literal["up", "down"]


class DroppedEvent(TypedDict):
    count: int


class ConfigGetResult(TypedDict):
    path: str
    config: dict[str, Any]
    """The whole configuration as nested sections (``{"tunnel": {"mtu": 1472, ...}, ...}``)."""
    toml: str
    """The same, as the file would be written."""
    key: NotRequired[str]
    value: NotRequired[Any]
    """Present when ``params.key`` was given."""


class ConfigSetResult(TypedDict):
    config: dict[str, Any]
    changed: list[str]
    applied: bool
    """False for ``dry_run`` (validated only)."""


class LogEntry(TypedDict):
    seq: int
    time: float
    """Unix time."""
    level: str
    """``"debug" | "info" | "warning" | "error"``."""
    message: str
    event: NotRequired[str]
    """The :class:`EventKind` that produced it, if any."""
    code: NotRequired[int]


class LogResult(TypedDict):
    entries: list[LogEntry]
    next: int
    """Pass as ``since`` to get only newer entries."""
    dropped: int
    """Entries that fell out of the ring before being read."""


class DiagnosticsResult(TypedDict):
    path: str | None
    """Where the helper saved the bundle (in its state dir), ``null`` if it could not."""
    bundle: dict[str, Any]
    """``{"created", "status", "config", "log", "system", "interfaces", "routes", "checks"}``."""


class MtuProbeResult(TypedDict):
    mtu: int
    """The largest IPv6 packet the probe address echoed."""
    previous: int | None
    """The effective MTU before the probe."""
    configured: NotRequired[int]
    tried: NotRequired[list[dict[str, Any]]]
    """``[{"size": int, "answered": bool}, ...]`` in the order tried."""
    duration: NotRequired[float]


class Hello(TypedDict):
    type: Literal["hello"]
    version: int
    server: str
    access: str
    uid: int | None
    methods: list[str]
    events: list[str]


class Request(TypedDict):
    id: int | str
    method: str
    params: NotRequired[dict[str, Any]]
    version: NotRequired[int]


class Reply(TypedDict):
    type: Literal["reply"]
    version: int
    id: int | str | None
    ok: bool
    result: NotRequired[Any]
    error: NotRequired[ErrorInfo]


class Event(TypedDict):
    type: Literal["event"]
    version: int
    event: str
    seq: int
    time: float
    data: dict[str, Any]


# ------------------------------------------------------------------------------------------- builders


def error_info(
    code: ErrorCode,
    message: str | None = None,
    *,
    hint: str | None = None,
    problems: list[Problem] | None = None,
    detail: str | None = None,
) -> ErrorInfo:
    info: ErrorInfo = {"code": int(code), "name": code.slug, "message": message or code.sentence}
    if hint:
        info["hint"] = hint
    if detail:
        info["detail"] = detail
    if problems is not None:
        info["problems"] = problems
    return info


def hello(access: Access, uid: int | None, server: str) -> Hello:
    return {
        "type": "hello",
        "version": PROTOCOL_VERSION,
        "server": server,
        "access": access.value,
        "uid": uid,
        "methods": [m.value for m in Method],
        "events": [e.value for e in EventKind],
    }


def ok_reply(request_id: int | str | None, result: Any) -> Reply:
    return {"type": "reply", "version": PROTOCOL_VERSION, "id": request_id, "ok": True, "result": result}


def error_reply(request_id: int | str | None, error: ErrorInfo) -> Reply:
    return {"type": "reply", "version": PROTOCOL_VERSION, "id": request_id, "ok": False, "error": error}


def event(kind: EventKind, seq: int, time: float, data: dict[str, Any]) -> Event:
    return {"type": "event", "version": PROTOCOL_VERSION, "event": kind.value, "seq": seq, "time": time, "data": data}


def request(request_id: int | str, method: Method | str, params: dict[str, Any] | None = None) -> Request:
    req: Request = {"id": request_id, "method": str(method), "version": PROTOCOL_VERSION}
    if params:
        req["params"] = params
    return req


# ------------------------------------------------------------------------------------------- framing


def encode(message: Any) -> bytes:
    """One line on the wire.  ``ensure_ascii`` keeps it 7-bit so no reader can split a UTF-8 sequence."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii") + b"\n"


class ProtocolError(ValueError):
    """A line that is not a valid message; ``error`` is what to reply with."""

    def __init__(self, error: ErrorInfo, request_id: int | str | None = None) -> None:
        super().__init__(error["message"])
        self.error = error
        self.request_id = request_id


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one line into a JSON object (any message type), or raise :class:`ProtocolError`."""
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(error_info(ErrorCode.BAD_JSON, f"The request is not valid JSON: {exc}.")) from None
    if not isinstance(value, dict):
        raise ProtocolError(error_info(ErrorCode.BAD_REQUEST, "A message must be a JSON object."))
    return value


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    id: int | str
    method: Method
    params: dict[str, Any] = field(default_factory=dict)


def parse_request(line: bytes | str) -> ParsedRequest:
    """Validate a request line's envelope (not its params) or raise :class:`ProtocolError`."""
    value = decode(line)
    raw_id = value.get("id")
    request_id: int | str | None = raw_id if isinstance(raw_id, (int, str)) and not isinstance(raw_id, bool) else None
    if request_id is None or (isinstance(request_id, str) and len(request_id) > 128):
        raise ProtocolError(error_info(ErrorCode.BAD_REQUEST, 'A request needs an "id" (number or short string).'))
    version = value.get("version", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            error_info(
                ErrorCode.UNSUPPORTED_VERSION,
                f"This helper speaks control API version {PROTOCOL_VERSION}, not {version!r}.",
            ),
            request_id,
        )
    method = value.get("method")
    if not isinstance(method, str):
        raise ProtocolError(error_info(ErrorCode.BAD_REQUEST, 'A request needs a "method" string.'), request_id)
    try:
        parsed_method = Method(method)
    except ValueError:
        raise ProtocolError(
            error_info(ErrorCode.UNKNOWN_METHOD, f"The helper does not know the request {method[:64]!r}."),
            request_id,
        ) from None
    params = value.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError(error_info(ErrorCode.BAD_REQUEST, '"params" must be a JSON object.'), request_id)
    return ParsedRequest(request_id, parsed_method, params)
