"""Signals from one service on the system D-Bus (logind, NetworkManager), through jeepney's asyncio router.

A :class:`ServiceWatch` is one bus connection watching one well-known name: it reads the service's
properties and hands its signals to a callback on the loop.  Signals are believed only from the name's
current owner (tracked through ``NameOwnerChanged``), so another client on the bus cannot fake a resume or a
portal by sending us a unicast signal.  Nothing polls: the router's receiver waits on the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from jeepney import DBusAddress, HeaderFields, MatchRule, Message, Properties, message_bus
from jeepney.io.asyncio import DBusConnection, DBusRouter, open_dbus_connection
from jeepney.wrappers import unwrap_msg

assert sys.platform == "linux"

log = logging.getLogger("m6t.platform")

OPEN_TIMEOUT_S = 5.0
"""A system bus that does not answer within this is treated as absent (the client works without it)."""

SignalHandler = Callable[[Message], None]


class ServiceWatch:
    """One connection to the system bus, watching the service that owns ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._connection: DBusConnection | None = None
        self._router: DBusRouter | None = None
        self._owner: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> bool:
        """Connect; ``False`` (and nothing held) without a system bus or when nobody owns the name."""
        try:
            await asyncio.wait_for(self._open(), OPEN_TIMEOUT_S)
        except Exception as exc:  # no bus, refused, timed out: all mean "not on this system"
            log.debug("%s: not on the system bus (%s)", self.name, exc)
            await self.close()
            return False
        if self._owner is None:
            log.debug("%s: nobody owns the name on the system bus", self.name)
            await self.close()
            return False
        return True

    async def _open(self) -> None:
        self._connection = await open_dbus_connection("SYSTEM")
        self._router = DBusRouter(self._connection)
        # Owner changes first, so that a restart between the look-up and the subscription is not missed.
        owner_changed = MatchRule(
            type="signal", sender="org.freedesktop.DBus", interface="org.freedesktop.DBus", member="NameOwnerChanged"
        )
        owner_changed.add_arg_condition(0, self.name)
        self._listen(owner_changed, self._owner_changed, trusted=True)
        await self._call(message_bus.AddMatch(owner_changed))
        try:
            (self._owner,) = await self._call(message_bus.GetNameOwner(self.name))
        except Exception:
            self._owner = None

    async def subscribe(self, rule: MatchRule, handler: SignalHandler) -> None:
        """Call ``handler`` with each signal matching ``rule`` that the name's owner sends."""
        self._listen(rule, handler, trusted=False)
        await self._call(message_bus.AddMatch(rule))

    async def get_property(self, path: str, interface: str, name: str) -> Any:
        """A property's value (the variant unwrapped)."""
        address = DBusAddress(path, bus_name=self.name, interface=interface)
        (variant,) = await self._call(Properties(address).get(name))
        return variant[1]

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        router, self._router = self._router, None
        if router is not None:
            with contextlib.suppress(Exception):
                await router.__aexit__(None, None, None)
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    # ------------------------------------------------------------------ internals

    async def _call(self, message: Message) -> Any:
        assert self._router is not None
        return unwrap_msg(await self._router.send_and_get_reply(message))

    def _listen(self, rule: MatchRule, handler: SignalHandler, *, trusted: bool) -> None:
        assert self._router is not None
        # The router's local filter cannot match a well-known sender (messages carry the unique name): the
        # bus filters by the rule's sender, and the owner is checked here.
        local = MatchRule(type="signal", interface=rule.header_fields.get("interface"))
        for key in ("member", "path"):
            if key in rule.header_fields:
                local.header_fields[key] = rule.header_fields[key]
        local.arg_conditions = dict(rule.arg_conditions)
        queue: asyncio.Queue[Message] = asyncio.Queue()
        handle = self._router.filter(local, queue=queue)
        self._tasks.append(asyncio.get_running_loop().create_task(self._pump(handle, queue, handler, trusted)))

    async def _pump(self, handle: Any, queue: asyncio.Queue[Message], handler: SignalHandler, trusted: bool) -> None:
        with handle:
            while True:
                message = await queue.get()
                sender = message.header.fields.get(HeaderFields.sender)
                if not trusted and (self._owner is None or sender != self._owner):
                    continue
                try:
                    handler(message)
                except Exception:
                    log.exception("%s: handling a signal failed", self.name)

    def _owner_changed(self, message: Message) -> None:
        if message.header.fields.get(HeaderFields.sender) != "org.freedesktop.DBus":
            return
        name, _old, new = message.body
        if name == self.name:
            self._owner = new or None
            log.debug("%s: owner now %s", self.name, self._owner)
