"""Who is on the other end of the control pipe: the client process's token, read once when it connects.

The pipe names the client's process (GetNamedPipeClientProcessId); its primary token names its groups
(OpenProcess, OpenProcessToken, GetTokenInformation(TokenGroups)).  The answer is a snapshot, like the
credentials a Unix socket records at connect time, and every handle is closed before the peer is returned.

*Administrators, elevated or not.*  UAC gives an administrator's desktop a filtered token in which
BUILTIN\\Administrators (S-1-5-32-544) is kept but marked SE_GROUP_USE_FOR_DENY_ONLY, and its elevated
processes the full token in which it is enabled; a standard user's token has no such SID at all.  So the SID
*present in TokenGroups, with whatever attributes*, is membership by group, elevated or not, in one call on
one token, where CheckTokenMembership (enabled SIDs only) would need the linked token as well.  Microsoft's
UAC overview describes the filtered token as having "the administrative Windows privileges and SIDs
removed", so a limited token (TokenElevationTypeLimited) without the SID is also judged by its linked full
token: whichever way a given Windows builds it, the answer is the same.

*Any other group* counts only when enabled and not deny-only, as Windows' own access checks count it:
"A SID without this attribute is ignored during an access check unless the SE_GROUP_USE_FOR_DENY_ONLY
attribute is set" -- a process that gave a group up is judged by what it holds now.

*A reused process id.*  A client may hand its pipe handle to another process and exit; its id may then name
a newer process.  A process created after the connection was seen cannot be the client, and is refused; the
id cannot change hands once OpenProcess holds it.  What remains is the short time between the connection
and the listener seeing it (identification runs right then); only ImpersonateNamedPipeClient, which reads
the client's token captured at connect time, would close it, at the price of impersonating on the loop's
thread.

Anything that fails (the process is gone or protected, its token refused) yields ``None``: read-only.

*The other way round* (:func:`verify_server`): the pipe namespace is open to every local user, so while the
helper is stopped any program can create ``\\\\.\\pipe\\m6t-helper`` and wait for the tray and the CLI.  A
client checks, before it sends anything, who owns the pipe it reached: LocalSystem or Administrators, which
the helper's pipe always is and nobody else's can be.  The owner of a new object is its creator's default
owner unless the creator names one, and a token may only name "one of the user or group SIDs already in the
token. If it is a group SID, ... the attributes on the group must include SE_GROUP_OWNER and must not
include SE_GROUP_USE_FOR_DENY_ONLY" (TOKEN_OWNER); "for users who are members of the built-in administrators
group, the system automatically sets the default owner SID in the access token to the administrators group"
(How Security Descriptors are Set on New Directory Objects).  So the service's pipe (LocalSystem, whose
token holds Administrators as an owner group) and an elevated console run's are owned by Administrators, and
a standard user -- or an administrator's UAC-filtered desktop, where Administrators is deny-only -- can only
make a pipe owned by their own account.

The owner is read from the client's own handle (GetSecurityInfo, READ_CONTROL), not from the server
process: OpenProcessToken on a LocalSystem process is refused to a standard user ("If the process being
checked was started by a different account, the checking process needs to have the SE_DEBUG_NAME privilege
enabled"), and the tray runs as one.  Checking the handle that will carry the requests also leaves no gap
between the check and the use.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from m6t.platform.base import ControlServerUntrusted, PeerIdentity
from m6t.platform.windows.pipes import (
    SE_GROUP_ENABLED,
    SE_GROUP_USE_FOR_DENY_ONLY,
    SID_TYPE_ALIAS,
    SID_TYPE_GROUP,
    SID_TYPE_WELL_KNOWN_GROUP,
    NamedPipes,
    filetime,
)

log = logging.getLogger(__name__)

ADMINISTRATORS: Final = "S-1-5-32-544"
"""BUILTIN\\Administrators, the same SID on every Windows (its name is translated: "Administratoren")."""
LOCAL_SYSTEM: Final = "S-1-5-18"
TRUSTED_PIPE_OWNERS: Final = frozenset({ADMINISTRATORS, LOCAL_SYSTEM})
"""Who may own the helper's pipe: no other account can make a pipe owned by either."""

_GROUP_TYPES: Final = frozenset({SID_TYPE_GROUP, SID_TYPE_ALIAS, SID_TYPE_WELL_KNOWN_GROUP})

GroupResolver = Callable[[str], str | None]
"""A group name (``m6t``, ``BUILTIN\\Network Configuration Operators``) to its SID, ``None`` when unknown."""


@dataclass(frozen=True, slots=True)
class WindowsPeer(PeerIdentity):
    """A process on the control pipe, by its token's groups when it connected."""

    pid: int | None
    administrator: bool
    groups: frozenset[str]
    """SID strings of the groups the token may use to be granted access (enabled, not deny-only)."""
    resolve: GroupResolver = field(repr=False, compare=False)
    uid: int | None = None

    @property
    def is_superuser(self) -> bool:
        return self.administrator

    def in_group(self, name: str) -> bool:
        """``name`` is an account name (looked up on this machine) or a SID string such as ``S-1-5-32-556``,
        which does not depend on the language Windows is installed in."""
        sid = name.upper() if name.upper().startswith("S-1-") else self.resolve(name)
        return sid is not None and sid in self.groups


def group_resolver(pipes: NamedPipes) -> GroupResolver:
    def resolve(name: str) -> str | None:
        try:
            sid, use = pipes.lookup_account(name)
        except OSError as exc:
            log.debug("no group %r on this machine: %s", name, exc)
            return None
        return sid if use in _GROUP_TYPES else None

    return resolve


@contextlib.contextmanager
def _closing(pipes: NamedPipes, handle: int) -> Iterator[int]:
    try:
        yield handle
    finally:
        with contextlib.suppress(OSError):
            pipes.close_handle(handle)


def _administrator(pipes: NamedPipes, token: int, groups: list[tuple[str, int]]) -> bool:
    if any(sid == ADMINISTRATORS for sid, _ in groups):
        return True
    if not pipes.elevation_limited(token):
        return False
    with _closing(pipes, pipes.linked_token(token)) as linked:
        return any(sid == ADMINISTRATORS for sid, _ in pipes.token_groups(linked))


def identify_client(pipes: NamedPipes, pipe: int, connected_at: float) -> WindowsPeer | None:
    """The client of the connected server end ``pipe``, seen connected at ``connected_at`` (Unix time); ``None``
    when Windows does not tell."""
    pid: int | None = None
    try:
        pid = pipes.client_process_id(pipe)
        with _closing(pipes, pipes.open_process(pid)) as process:
            if pipes.process_created(process) > filetime(connected_at):
                log.warning("control client %d: that process id now names a newer process; it may only read", pid)
                return None
            with _closing(pipes, pipes.open_process_token(process)) as token:
                groups = pipes.token_groups(token)
                administrator = _administrator(pipes, token, groups)
    except Exception as exc:
        log.info("cannot identify control client %s (%s); it may only read", pid if pid is not None else "?", exc)
        return None
    usable = frozenset(
        sid
        for sid, attributes in groups
        if attributes & SE_GROUP_ENABLED and not attributes & SE_GROUP_USE_FOR_DENY_ONLY
    )
    return WindowsPeer(pid=pid, administrator=administrator, groups=usable, resolve=group_resolver(pipes))


def verify_server(pipes: NamedPipes, handle: int, path: str) -> None:
    """Raise :class:`~m6t.platform.base.ControlServerUntrusted` unless the pipe ``handle`` (a client end) is
    owned by LocalSystem or Administrators; :class:`OSError` when Windows does not say."""
    owner = pipes.object_owner(handle)
    if owner not in TRUSTED_PIPE_OWNERS:
        raise ControlServerUntrusted(
            f"{path} is not served by the m6t helper: the pipe belongs to {owner}, not to the system",
            hint="another program took the helper's pipe name; stop it, then start the m6t helper service",
        )
