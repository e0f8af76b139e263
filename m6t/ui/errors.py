"""The helper's error sentences in the user's language.

The helper speaks English on the wire (its log and other clients read the same words); where its message
is a code's own sentence, the tray shows that sentence translated.  A more specific message (an OS's words,
a file name) is shown as the helper wrote it.
"""

from __future__ import annotations

from typing import Final

from m6t.client.api import schema
from m6t.client.api.schema import ErrorCode
from m6t.ui.i18n import QT_TRANSLATE_NOOP, translate

SENTENCES: Final[dict[ErrorCode, str]] = {
    ErrorCode.BAD_JSON: QT_TRANSLATE_NOOP("errors", "The request is not valid JSON."),
    ErrorCode.BAD_REQUEST: QT_TRANSLATE_NOOP("errors", "The request is malformed."),
    ErrorCode.UNKNOWN_METHOD: QT_TRANSLATE_NOOP("errors", "The helper does not know this request."),
    ErrorCode.LINE_TOO_LONG: QT_TRANSLATE_NOOP("errors", "The request is too long."),
    ErrorCode.UNSUPPORTED_VERSION: QT_TRANSLATE_NOOP(
        "errors", "This client speaks a control API version the helper does not support."
    ),
    ErrorCode.FORBIDDEN: QT_TRANSLATE_NOOP(
        "errors", "Only root and members of the m6t operator group may change the tunnel."
    ),
    ErrorCode.BUSY: QT_TRANSLATE_NOOP("errors", "The helper is busy with another change; try again."),
    ErrorCode.CONFIG_INVALID: QT_TRANSLATE_NOOP("errors", "The configuration is invalid; nothing was changed."),
    ErrorCode.CONFIG_UNKNOWN_KEY: QT_TRANSLATE_NOOP("errors", "There is no such configuration setting."),
    ErrorCode.CONFIG_WRITE_FAILED: QT_TRANSLATE_NOOP(
        "errors", "The configuration could not be saved; nothing was changed."
    ),
    ErrorCode.CONFIG_LOAD_FAILED: QT_TRANSLATE_NOOP("errors", "The configuration file could not be loaded."),
    ErrorCode.TUN_MISSING: QT_TRANSLATE_NOOP("errors", "The TUN driver is not available on this computer."),
    ErrorCode.IPV6_DISABLED: QT_TRANSLATE_NOOP("errors", "IPv6 is disabled on this computer."),
    ErrorCode.INTERFACE_BUSY: QT_TRANSLATE_NOOP("errors", "Another program already uses the tunnel interface name."),
    ErrorCode.GATEWAY_UNRESOLVABLE: QT_TRANSLATE_NOOP("errors", "The gateway's name cannot be resolved; retrying."),
    ErrorCode.PLATFORM_ERROR: QT_TRANSLATE_NOOP("errors", "The operating system refused a network change."),
    ErrorCode.PERMISSION_DENIED: QT_TRANSLATE_NOOP("errors", "The helper lacks the privileges it needs."),
    ErrorCode.TUN_FAILED: QT_TRANSLATE_NOOP("errors", "The tunnel interface could not be created."),
    ErrorCode.UPLINK_FILTERED: QT_TRANSLATE_NOOP(
        "errors", "A setting of this computer drops the gateway's answers on one of its uplinks."
    ),
    ErrorCode.TUNNEL_ERROR: QT_TRANSLATE_NOOP("errors", "The tunnel reported an error."),
    ErrorCode.GATEWAY_UNREACHABLE: QT_TRANSLATE_NOOP("errors", "The gateway does not answer."),
    ErrorCode.NO_NETWORK: QT_TRANSLATE_NOOP("errors", "There is no IPv4 network toward the gateway."),
    ErrorCode.BINDING_LOST: QT_TRANSLATE_NOOP(
        "errors", "The gateway forgot this computer; reconnecting with a new address."
    ),
    ErrorCode.MTU_PROBE_FAILED: QT_TRANSLATE_NOOP("errors", "The MTU probe failed."),
    ErrorCode.ADDRESS_FAILED: QT_TRANSLATE_NOOP("errors", "The tunnel address could not be installed."),
    ErrorCode.NOT_UP: QT_TRANSLATE_NOOP("errors", "The tunnel is not up."),
    ErrorCode.MTU_LOWERED: QT_TRANSLATE_NOOP(
        "errors", "The path to the gateway is narrower than configured; the MTU was lowered."
    ),
    ErrorCode.PROBE_UNANSWERED: QT_TRANSLATE_NOOP(
        "errors", "The Home Agent does not answer through the gateway on this port; trying again."
    ),
    ErrorCode.NO_REPLY: QT_TRANSLATE_NOOP(
        "errors", "Nothing comes back through the tunnel for the traffic sent; trying again."
    ),
    ErrorCode.SOCKET_FAILED: QT_TRANSLATE_NOOP(
        "errors", "The connection to the gateway could not be opened; retrying."
    ),
    ErrorCode.INTERNAL: QT_TRANSLATE_NOOP("errors", "The helper hit an internal error."),
    ErrorCode.CLEANUP_FAILED: QT_TRANSLATE_NOOP("errors", "Leftovers of a previous run could not all be removed."),
    ErrorCode.DIAGNOSTICS_FAILED: QT_TRANSLATE_NOOP("errors", "The diagnostics bundle could not be written."),
    ErrorCode.STATE_WRITE_FAILED: QT_TRANSLATE_NOOP("errors", "The helper could not save its state."),
    ErrorCode.ACCESS_KEY_MISSING: QT_TRANSLATE_NOOP(
        "errors", "The gateway only serves enrolled computers, and this one's key is not available."
    ),
}
"""Each code's sentence as :attr:`ErrorCode.sentence` has it (a test keeps them equal), marked for the catalogue."""


def error_sentence(code: ErrorCode) -> str:
    return translate("errors", SENTENCES[code])


def error_message(error: schema.ErrorInfo) -> str:
    """The message of a helper's error, translated when it is the code's own sentence."""
    message = error.get("message", "")
    code = schema.code_from_wire(error.get("code"))
    if code is not None and message == SENTENCES.get(code):
        return error_sentence(code)
    return message


def error_text(error: schema.ErrorInfo) -> str:
    """The message and, when the helper knows one, how to fix it."""
    hint = error.get("hint")
    message = error_message(error)
    return f"{message} {hint}" if hint else message
