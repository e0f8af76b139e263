"""May the process on the other end of the control channel change things?

The platform's transport says who the peer is (:class:`~m6t.platform.base.PeerIdentity`: the OS's facts,
the same questions on every OS) and the platform's desktop authority (polkit) may be asked about it; this is
the policy.  In order: the superuser may; a member of the operator group may (as on every host without
polkit, so granting the group keeps working where polkit is installed later); otherwise the desktop authority
decides, per action, where it runs; where it does not (servers, containers, macOS, Windows), nobody else may.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import StrEnum
from typing import Final

from m6t.client.api import schema
from m6t.client.api.schema import ErrorCode, ErrorInfo, Method, Permission, Permissions
from m6t.platform.base import (
    AuthorityAnswer,
    AuthorityUnavailable,
    AuthorityVerdict,
    DesktopAuthority,
    PeerIdentity,
    PlatformError,
)
from m6t.platform.hints import Conventions
from m6t.platform.hints import conventions as running_os_conventions

INTERACTIVE_TIMEOUT_S: Final = 60.0
"""How long a configuration change waits for the user to answer the desktop's password dialog."""
QUICK_TIMEOUT_S: Final = 5.0
"""How long a question nobody is asked to answer may take."""
PERMISSIONS_TIMEOUT_S: Final = 2.0
"""For the ``permissions`` of ``hello``: well within the clients' wait for the hello line."""


class Action(StrEnum):
    """The polkit actions of ``installers/linux/org.m6t.policy``."""

    CONNECT = "org.m6t.connect"
    """Connect, disconnect, probe the MTU: the active local session may."""
    CONFIGURE = "org.m6t.configure"
    """Change the configuration: an administrator's password, remembered for a while."""


ACTION_OF: Final[dict[Method, Action]] = {
    Method.UP: Action.CONNECT,
    Method.DOWN: Action.CONNECT,
    Method.MTU_PROBE: Action.CONNECT,
    Method.CONFIG_SET: Action.CONFIGURE,
    # The user at the desktop supplies the secret of the connection they bring up, as NetworkManager's agents do.
    Method.ACCESS_KEY: Action.CONNECT,
}
"""The action each of :data:`~m6t.client.api.schema.OPERATOR_METHODS` needs."""

_DOING: Final[dict[Method, str]] = {
    Method.UP: "bring the tunnel up",
    Method.DOWN: "bring the tunnel down",
    Method.CONFIG_SET: "change the configuration",
    Method.MTU_PROBE: "run an MTU probe",
    Method.ACCESS_KEY: "set the access key",
}

_PERMISSION: Final = {
    AuthorityAnswer.YES: Permission.YES,
    AuthorityAnswer.CHALLENGE: Permission.AUTH,
    AuthorityAnswer.NO: Permission.NO,
}


def is_operator(peer: PeerIdentity | None, operator_group: str) -> bool:
    """The superuser (root, Administrators), or a peer holding ``operator_group``; an unknown peer reads only."""
    if peer is None:
        return False
    return peer.is_superuser or peer.in_group(operator_group)


def group_refusal(method: Method, group: str, conventions: Conventions | None = None) -> ErrorInfo:
    """The refusal where no desktop authority runs: the operator group is the way in, in the words of the
    helper's OS (``conventions``, the running OS's by default)."""
    words = conventions if conventions is not None else running_os_conventions()
    return schema.error_info(
        ErrorCode.FORBIDDEN,
        f"Only {words.superuser} and members of the group '{group}' may {_DOING.get(method, 'do that')}; "
        "you can still read the status.",
        hint=words.join_group(group),
    )


class Authorizer:
    """The policy for one helper: its operator group (read when asked: the configuration may change it) and
    the platform's desktop authority (``None`` where the OS has none)."""

    def __init__(
        self,
        authority: DesktopAuthority | None,
        operator_group: Callable[[], str],
        conventions: Conventions | None = None,
    ) -> None:
        self.authority = authority
        self._operator_group = operator_group
        self.conventions = conventions if conventions is not None else running_os_conventions()

    async def _ask(
        self, peer: PeerIdentity, action: Action, *, interactive: bool, timeout: float
    ) -> AuthorityVerdict | None:
        """The authority's verdict, ``None`` where there is none to ask."""
        if self.authority is None:
            return None
        try:
            return await self.authority.check(peer, action.value, interactive=interactive, timeout=timeout)
        except AuthorityUnavailable:
            return None

    async def _permission(self, peer: PeerIdentity, action: Action) -> Permission:
        try:
            verdict = await self._ask(peer, action, interactive=False, timeout=PERMISSIONS_TIMEOUT_S)
        except (TimeoutError, PlatformError):
            return Permission.NO
        return Permission.NO if verdict is None else _PERMISSION[verdict.answer]

    async def permissions(self, peer: PeerIdentity | None) -> Permissions:
        """What ``peer`` may do without trying, per action; nobody is asked to authenticate."""
        if peer is None:
            return schema.permissions(Permission.NO, Permission.NO)
        if is_operator(peer, self._operator_group()):
            return schema.permissions(Permission.YES, Permission.YES)
        connect, configure = await asyncio.gather(
            self._permission(peer, Action.CONNECT), self._permission(peer, Action.CONFIGURE)
        )
        return schema.permissions(connect, configure)

    async def authorize(self, peer: PeerIdentity | None, method: Method) -> ErrorInfo | None:
        """``None`` when ``peer`` may call ``method``, else the refusal to send, saying what the user can do.

        A configuration change lets the desktop's agent ask for an administrator's password, and waits for
        the answer up to :data:`INTERACTIVE_TIMEOUT_S`."""
        group = self._operator_group()
        if peer is None:
            return group_refusal(method, group, self.conventions)
        if is_operator(peer, group):
            return None
        action = ACTION_OF.get(method)
        if action is None:
            return group_refusal(method, group, self.conventions)
        interactive = action is Action.CONFIGURE
        timeout = INTERACTIVE_TIMEOUT_S if interactive else QUICK_TIMEOUT_S
        doing = _DOING.get(method, "do that")
        name = self.authority.name if self.authority is not None else "polkit"
        try:
            verdict = await self._ask(peer, action, interactive=interactive, timeout=timeout)
        except TimeoutError:
            return schema.error_info(
                ErrorCode.FORBIDDEN,
                f"No answer from {name} within {timeout:.0f} s, so you may not {doing}; you can still read the status.",
                hint="answer the password dialog sooner, or check that your desktop runs a polkit authentication agent",
            )
        except PlatformError as exc:
            return schema.error_info(
                ErrorCode.FORBIDDEN,
                f"{name} could not authorize you to {doing}; you can still read the status.",
                hint="reconnect and try again",
                detail=str(exc),
            )
        if verdict is None:
            return group_refusal(method, group, self.conventions)
        if verdict.answer is AuthorityAnswer.YES:
            return None
        grant = f"ask an administrator to allow {action.value} for you (a {name} rule)"
        grant += f", or to add you to the group '{group}'"
        if verdict.answer is AuthorityAnswer.CHALLENGE:
            if verdict.dismissed:
                message = f"The authentication was dismissed, so you may not {doing}."
                hint = "try again and enter an administrator's password when asked"
            elif interactive:
                message = (
                    f"An administrator's password is needed to {doing}, and no {name} authentication agent asked "
                    "for it."
                )
                hint = f"log in to a desktop session (its {name} agent asks for the password), or {grant}"
            else:
                message = f"{name} wants an administrator's password before you may {doing}."
                hint = f"use the active desktop session at this computer, or {grant}"
            return schema.error_info(ErrorCode.FORBIDDEN, f"{message} You can still read the status.", hint=hint)
        return schema.error_info(
            ErrorCode.FORBIDDEN, f"{name} refused to let you {doing}; you can still read the status.", hint=grant
        )
