"""The client's own words: tunnel states, numbered error codes with their user sentences, and the reasons a
new address is drawn.

The session speaks these and the control API puts them on the wire unchanged (``m6t.client.api.schema``
re-exports them), so a state or a code is defined here once, below everything that uses it.  Pure stdlib.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Final


class State(StrEnum):
    """The tunnel's states (the control API calls them ``TunnelState``).

    Clients must tolerate values they do not know (show them verbatim).
    """

    DISCONNECTED = "disconnected"
    """Not asked to connect (or asked to disconnect); nothing installed."""
    WAITING_FOR_NETWORK = "waiting_for_network"
    """Asked to connect, but no IPv4 path to the gateway (or its name is not resolved yet)."""
    SIGN_IN_REQUIRED = "sign_in_required"
    """Asked to connect, but the OS says a captive portal holds this network: nothing is tried until the user
    signs in (usually in a browser); the tunnel connects by itself once the OS says the network is through."""
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
    UPLINK_FILTERED = 3008

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
    ACCESS_KEY_MISSING = 4011

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
    ErrorCode.UPLINK_FILTERED: "A setting of this computer drops the gateway's answers on one of its uplinks.",
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
    ErrorCode.ACCESS_KEY_MISSING: "The gateway only serves enrolled computers, and this one's key is not available.",
    ErrorCode.INTERNAL: "The helper hit an internal error.",
    ErrorCode.CLEANUP_FAILED: "Leftovers of a previous run could not all be removed.",
    ErrorCode.DIAGNOSTICS_FAILED: "The diagnostics bundle could not be written.",
    ErrorCode.STATE_WRITE_FAILED: "The helper could not save its state.",
}
