"""The control API's one definition: framing, requests, replies, events and error codes.

The helper (server), the ``m6t`` CLI and the tray GUI all import this module, so a message shape is
defined here once and nowhere else; the states, error codes and regeneration reasons are the client core's
(:mod:`m6t.client.vocabulary`), re-exported here.  It does no I/O and needs no Qt (from below it takes only
the platform's default address), so the GUI can use it with QLocalSocket and the server with asyncio.
``docs/control-api.md`` is the prose version.

Framing: one JSON object per line, UTF-8, terminated by ``\\n``.  The server's first line is a ``hello``;
every server line carries ``"version": PROTOCOL_VERSION``.  Shapes only grow: a client must ignore keys
it does not know, and the server ignores unknown keys in ``params``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal, NotRequired, TypedDict

from m6t.client import vocabulary
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
    ACCESS_KEY = "access.key"
    """Change. ``params: {"key": base64, "store"?: bool (default true)}`` → :class:`AccessKeyResult`: the key
    for an enrolled gateway (docs/enrolled-access.md), stored where the helper looks (``access.key_file``
    or the OS keyring), or with ``store: false`` only held for this run (the desktop agent's hand-over)."""


OPERATOR_METHODS: Final[frozenset[Method]] = frozenset(
    {Method.UP, Method.DOWN, Method.CONFIG_SET, Method.MTU_PROBE, Method.ACCESS_KEY}
)
"""Methods only root and members of the operator group may call; the rest are open to every local user."""


class Access(StrEnum):
    """What the server grants this connection, decided once from its peer credentials."""

    OPERATOR = "operator"
    READ_ONLY = "read-only"


class Permission(StrEnum):
    """What a user may do without trying (:class:`Permissions`), as the helper's policy answers it."""

    YES = "yes"
    AUTH = "auth"
    """Once an administrator's password is given (the desktop's polkit agent asks for it)."""
    NO = "no"


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
    ACCESS_KEY_NEEDED = "access_key_needed"
    """:class:`AccessKeyNeededEvent` — the helper has no key for the enrolled gateway: a desktop agent that
    keeps it (the tray, from the user's keyring) answers with ``access.key`` and ``store: false``."""
    TUNNELS = "tunnels"
    """:class:`TunnelsEvent` — with ``tunnel.uplinks = "all"``: a tunnel came or went, or one tunnel's summary
    changed (with ``"best"`` the one tunnel is the top level, whose events say it all)."""


# The client core owns its vocabulary; the API puts it on the wire unchanged.
TunnelState = vocabulary.State
"""Documented values of ``Status.state``: the client session's states."""
RegenerationReason = vocabulary.RegenerationReason
"""Documented values of ``Regeneration.reason``."""
ErrorCode = vocabulary.ErrorCode
"""The numbered error codes; their user sentences are ``ErrorCode.sentence``."""

Wanted = Literal["up", "down"]
"""The user's wish (``Status.wanted``), remembered across helper restarts."""


# --------------------------------------------------------------------------------------------- errors


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


class MtuSearchInfo(TypedDict):
    """Path MTU discovery on the tunnel (RFC 8899), when it is on (``tunnel.pmtud``)."""

    state: str
    """``base``, ``searching``, ``search_complete``, ``error`` or ``disabled`` (tolerate others)."""
    mtu: int | None
    """The tunnel MTU the last search found on this path (``null``: none finished yet)."""
    found: str | None
    """How: ``probe`` (echoed probes), ``icmp`` (a fragmentation-needed gave the size), ``emsgsize`` (the local
    link refused a probe) or ``floor`` (the path carries under 1308 bytes: 1280 kept, see ``fragmentation``)."""
    time: float | None
    """Unix time that search ended."""
    probes: int
    """Probes that search sent."""
    duration_s: float | None
    fragmentation: bool
    """True: packets over 1280 bytes cross only as DF-clear fragments (draft 2.6)."""
    next_search: float | None
    """Unix time the raise timer searches upwards again."""
    probes_total: int


class MtuDetail(TypedDict):
    configured: int
    effective: int
    last_evidence: MtuEvidenceInfo | None
    search: NotRequired[MtuSearchInfo]
    """Present while path MTU discovery is on (``tunnel.pmtud``)."""


class AttachmentInfo(TypedDict):
    """Where the host reaches the gateway over IPv4; ``null`` when it cannot."""

    local_ipv4: str
    interface: str
    router: str | None


class TunnelSummary(TypedDict):
    """One tunnel interface: with ``tunnel.uplinks = "all"`` there is one per IPv4 uplink (draft 2.5)."""

    interface: str
    """The tunnel interface (``m6t0``, ``m6t1``...)."""
    uplink: str | None
    """The IPv4 interface its UDP socket is bound to; ``null``: wherever the OS routes (``"best"``)."""
    primary: bool
    """The tunnel the top-level fields of :class:`Status` (and the events without ``tunnels``) describe:
    the one on the path the OS prefers toward the gateway."""
    state: str
    detail: str
    address: str | None
    gateway: str | None
    """``host:port`` in use."""
    attachment: AttachmentInfo | None
    mtu: int | None
    rtt_ms: float | None


class TunnelsEvent(TypedDict):
    tunnels: list[TunnelSummary]
    """Every tunnel, in interface order (the same list as ``Status.tunnels``)."""


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


class Permissions(TypedDict):
    """Per group of changes, a :class:`Permission` value (tolerate others), asked without prompting anyone."""

    connect: str
    """``up``, ``down``, ``mtu.probe`` (polkit action ``org.m6t.connect``)."""
    configure: str
    """``config.set`` (polkit action ``org.m6t.configure``)."""


class Status(TypedDict):
    """The reply to ``status``; also embedded in the ``subscribe``/``up``/``down`` replies."""

    state: str
    """A :class:`TunnelState` value (tolerate others)."""
    wanted: Wanted
    """What the user last asked for (persisted); ``state`` says how far the tunnel got."""
    address: str | None
    """The tunnel's IPv6 address, without prefix length."""
    gateway: str | None
    """``host:port`` of the gateway in use."""
    gateway_name: NotRequired[str | None]
    """The configured host name the gateway in use was resolved from; ``null`` for an address configured as
    is (``gateway.address`` may list several gateways: ``session.gateway_detail`` has them all)."""
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
    permissions: NotRequired[Permissions]
    """What this connection's user may change, asked along with the status (absent from older helpers)."""
    detail: NotRequired[str]
    """The session's words for the state (``"confirmed"``, ``"no IPv4 route to the gateway"``...)."""
    since: NotRequired[float | None]
    """Unix time the current state began."""
    tunnels: NotRequired[list[TunnelSummary]]
    """Every tunnel (one with ``tunnel.uplinks = "best"``), in interface order; absent from older helpers."""
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
    gateway_name: NotRequired[str | None]
    """The configured host name that gateway was resolved from (``null``: configured as an address)."""


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
    """``configured``, ``attachment``, ``icmp`` or ``emsgsize``; a path MTU search's result: ``probe``,
    ``icmp``, ``emsgsize`` or ``floor`` (tolerate others)."""
    path_mtu: NotRequired[int | None]


class ConfigEvent(TypedDict):
    changed: list[str]
    """``section.key`` names whose value changed."""


class WantedEvent(TypedDict):
    wanted: Wanted


class DroppedEvent(TypedDict):
    count: int


class AccessKeyNeededEvent(TypedDict):
    key_id: str
    """``access.key_id``: the name the key is kept under."""


class AccessKeyResult(TypedDict):
    fingerprint: str
    """The key's fingerprint (``m6t-gateway keys list`` shows the same); never the key."""
    stored: Literal["file", "keyring", "memory"]


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
    found: NotRequired[str]
    """How the search found it: ``probe``, ``icmp`` or ``emsgsize`` (as :class:`MtuSearchInfo`)."""
    probes: NotRequired[int]
    """Probes sent, retries included."""


class Hello(TypedDict):
    type: Literal["hello"]
    version: int
    server: str
    access: str
    uid: int | None
    methods: list[str]
    events: list[str]
    permissions: NotRequired[Permissions]
    """What this user may change, asked at connect time (absent from older helpers: read ``access``)."""


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


def gateway_label(data: Status | AddressEvent) -> str | None:
    """The gateway in use as people read it: ``198.51.100.2:3544``, with the name it came from if any
    (``198.51.100.2:3544 (gw.example.org)``)."""
    gateway, name = data.get("gateway"), data.get("gateway_name")
    if not gateway:
        return None
    return f"{gateway} ({name})" if name else gateway


def hello(access: Access, uid: int | None, server: str, permissions: Permissions | None = None) -> Hello:
    message: Hello = {
        "type": "hello",
        "version": PROTOCOL_VERSION,
        "server": server,
        "access": access.value,
        "uid": uid,
        "methods": [m.value for m in Method],
        "events": [e.value for e in EventKind],
    }
    if permissions is not None:
        message["permissions"] = permissions
    return message


def permissions(connect: Permission, configure: Permission) -> Permissions:
    return {"connect": connect.value, "configure": configure.value}


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
