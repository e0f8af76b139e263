"""polkit, the Linux desktop's authority, asked over the system D-Bus as NetworkManager asks it.

One connection to the system bus, opened at the first question and kept (an idle D-Bus connection wakes
nobody), reopened once if the bus dropped it.  The peer is a ``unix-process`` subject made of the pid, its
start time and the uid the kernel gave at connect time: polkit refuses a subject whose pid now names another
process ("has been replaced"), so a reused pid is never taken for the peer.  jeepney speaks D-Bus on the
helper's own event loop, so a question waiting for the user to type a password holds up nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from typing import Any, Final

from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call
from jeepney.io.asyncio import DBusConnection, DBusRouter, open_dbus_connection
from jeepney.io.common import RouterClosed

from m6t.platform.base import (
    AuthorityAnswer,
    AuthorityUnavailable,
    AuthorityVerdict,
    DesktopAuthority,
    PeerIdentity,
    PlatformError,
    PlatformErrorCode,
)

BUS_NAME: Final = "org.freedesktop.PolicyKit1"
AUTHORITY: Final = DBusAddress(
    "/org/freedesktop/PolicyKit1/Authority", bus_name=BUS_NAME, interface="org.freedesktop.PolicyKit1.Authority"
)
ALLOW_USER_INTERACTION: Final = 0x1
"""CheckAuthorization's flag: polkit may ask the session's authentication agent, and the reply waits for it."""

_NOBODY_THERE: Final = frozenset(
    {
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
        "org.freedesktop.DBus.Error.Spawn.ServiceNotFound",
    }
)
_OPEN_TIMEOUT_S: Final = 5.0


def unix_process_subject(peer: PeerIdentity) -> tuple[str, dict[str, tuple[str, int]]]:
    """polkit's ``(sa{sv})`` subject for ``peer``; raises :class:`PlatformError` without a pid, start time and uid."""
    if peer.pid is None or peer.start_time is None or peer.uid is None:
        raise PlatformError(
            "the peer's process cannot be identified (pid, start time and uid are all needed)",
            code=PlatformErrorCode.PERMISSION_DENIED,
        )
    return ("unix-process", {"pid": ("u", peer.pid), "start-time": ("t", peer.start_time), "uid": ("i", peer.uid)})


class PolkitAuthority(DesktopAuthority):
    name = "polkit"

    def __init__(self, bus: str = "SYSTEM") -> None:
        self._bus = bus
        """jeepney's bus name or address; ``SYSTEM`` follows ``DBUS_SYSTEM_BUS_ADDRESS`` like every D-Bus client."""
        self._connection: DBusConnection | None = None
        self._router: DBusRouter | None = None
        self._opening = asyncio.Lock()
        self._cancellation_ids = itertools.count(1)

    async def _open(self) -> DBusRouter:
        async with self._opening:
            if self._router is None:
                try:
                    self._connection = await asyncio.wait_for(open_dbus_connection(self._bus), _OPEN_TIMEOUT_S)
                except (OSError, EOFError, TimeoutError, ValueError, KeyError) as exc:
                    raise AuthorityUnavailable(
                        f"no system D-Bus to ask polkit on ({exc or type(exc).__name__})"
                    ) from None
                self._router = DBusRouter(self._connection)
            return self._router

    async def _drop(self) -> None:
        router, connection = self._router, self._connection
        self._router = self._connection = None
        if router is not None:
            with contextlib.suppress(Exception):
                await router.__aexit__(None, None, None)
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _call(self, message: Any, timeout: float) -> Any:
        for attempt in (1, 2):
            router = await self._open()
            try:
                return await asyncio.wait_for(router.send_and_get_reply(message), timeout)
            except (RouterClosed, ConnectionError, EOFError):
                # The bus went away since the last question (restarted, or the connection was closed): once more.
                await self._drop()
                if attempt == 2:
                    raise AuthorityUnavailable("the system D-Bus closed the connection") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def check(self, peer: PeerIdentity, action: str, *, interactive: bool, timeout: float) -> AuthorityVerdict:
        subject = unix_process_subject(peer)
        cancellation_id = f"m6t-{os.getpid()}-{next(self._cancellation_ids)}"
        flags = ALLOW_USER_INTERACTION if interactive else 0
        message = new_method_call(
            AUTHORITY, "CheckAuthorization", "(sa{sv})sa{ss}us", (subject, action, {}, flags, cancellation_id)
        )
        try:
            reply = await self._call(message, timeout)
        except TimeoutError:
            # Withdraw the question, so an authentication dialog nobody will wait for closes.
            if self._router is not None:
                with contextlib.suppress(Exception):
                    await self._router.send(
                        new_method_call(AUTHORITY, "CancelCheckAuthorization", "s", (cancellation_id,))
                    )
            raise
        if reply.header.message_type is MessageType.error:
            name = str(reply.header.fields.get(HeaderFields.error_name, ""))
            text = str(reply.body[0]) if reply.body else name
            if name in _NOBODY_THERE:
                raise AuthorityUnavailable(f"polkit is not running ({name})")
            if "is not registered" in text:
                # polkit runs but the package's policy file is missing (a source install): as if it did not.
                raise AuthorityUnavailable(f"polkit does not know {action}: {text}")
            raise PlatformError(f"polkit could not decide: {text}", code=PlatformErrorCode.PERMISSION_DENIED)
        authorized, challenge, details = reply.body[0]
        if authorized:
            return AuthorityVerdict(AuthorityAnswer.YES)
        dismissed = details.get("polkit.dismissed", "") not in ("", "false")
        return AuthorityVerdict(AuthorityAnswer.CHALLENGE if challenge else AuthorityAnswer.NO, dismissed=dismissed)

    async def close(self) -> None:
        await self._drop()
