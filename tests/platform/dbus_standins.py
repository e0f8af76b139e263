"""Stand-in logind and NetworkManager services, for a private system bus (:mod:`tests.platform.private_bus`).

The stand-ins own the real names, export the real object paths and interfaces, and emit the documented
signals, so the client's D-Bus code runs unchanged against them:

* logind, org.freedesktop.login1(5): the manager object ``/org/freedesktop/login1``, interface
  ``org.freedesktop.login1.Manager``, signal ``PrepareForSleep(b start)``: "sent right before (with the
  argument true) and after (with the argument false) the system goes down for reboot/poweroff, resp.
  suspend/hibernate".
* NetworkManager's D-Bus API reference: ``/org/freedesktop/NetworkManager``, interface
  ``org.freedesktop.NetworkManager``, property ``Connectivity`` (u) "The result of the last connectivity
  check", an ``NMConnectivityState``: NM_CONNECTIVITY_UNKNOWN 0, NONE 1, PORTAL 2 ("The Internet connection
  is hijacked by a captive portal gateway"), LIMITED 3, FULL 4; changes announced with
  ``org.freedesktop.DBus.Properties.PropertiesChanged``.

Each stand-in runs on its own loop in a thread, so both an asyncio test and a lab test (the real helper
in another process) can drive it with plain calls.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, Self

from jeepney import DBusAddress, MatchRule, Message, MessageType, message_bus, new_signal
from jeepney.io.asyncio import DBusRouter, open_dbus_connection
from jeepney.wrappers import new_error, new_method_return, unwrap_msg


class StandIn:
    """One service owning ``name`` on the bus at ``address``: answers Properties.Get/GetAll and emits signals."""

    def __init__(self, address: str, name: str, path: str, interface: str, properties: dict[str, tuple[str, Any]]):
        self.address, self.name, self.path, self.interface = address, name, path, interface
        self.properties = properties
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._router: DBusRouter | None = None
        self._serve: asyncio.Task[None] | None = None

    def start(self) -> Self:
        self._thread.start()
        self._run(self._start())
        return self

    def stop(self) -> None:
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def emit(self, member: str, signature: str, body: tuple[Any, ...], *, interface: str | None = None) -> None:
        self._run(self._emit(member, signature, body, interface or self.interface))

    def _run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _start(self) -> None:
        old = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = self.address
        try:
            connection = await open_dbus_connection("SYSTEM")
        finally:
            if old is None:
                del os.environ["DBUS_SYSTEM_BUS_ADDRESS"]
            else:
                os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = old
        self._router = DBusRouter(connection)
        self._connection = connection
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._calls = self._router.filter(MatchRule(type="method_call"), queue=queue)
        self._serve = asyncio.get_running_loop().create_task(self._answer(queue))
        (result,) = unwrap_msg(await self._router.send_and_get_reply(message_bus.RequestName(self.name, 0x4)))
        assert result == 1, f"could not own {self.name}"

    async def _answer(self, queue: asyncio.Queue[Message]) -> None:
        assert self._router is not None
        while True:
            call = await queue.get()
            fields = call.header.fields
            member = fields.get(3)  # HeaderFields.member
            if member == "Get" and call.body[0] == self.interface and call.body[1] in self.properties:
                reply = new_method_return(call, "v", (self.properties[call.body[1]],))
            elif member == "GetAll" and call.body[0] == self.interface:
                reply = new_method_return(call, "a{sv}", (dict(self.properties),))
            else:
                reply = new_error(call, "org.freedesktop.DBus.Error.UnknownMethod", "s", (f"no {member}",))
            await self._router.send(reply)

    async def _emit(self, member: str, signature: str, body: tuple[Any, ...], interface: str) -> None:
        assert self._router is not None
        emitter = DBusAddress(self.path, interface=interface)
        await self._router.send(new_signal(emitter, member, signature, body))

    async def _stop(self) -> None:
        if self._serve is not None:
            self._serve.cancel()
        if self._router is not None:
            self._calls.close()
            await self._router.__aexit__(None, None, None)
            await self._connection.close()


class Logind(StandIn):
    def __init__(self, address: str) -> None:
        super().__init__(
            address, "org.freedesktop.login1", "/org/freedesktop/login1", "org.freedesktop.login1.Manager", {}
        )

    def prepare_for_sleep(self, start: bool) -> None:
        self.emit("PrepareForSleep", "b", (start,))


class NetworkManager(StandIn):
    UNKNOWN, NONE, PORTAL, LIMITED, FULL = range(5)

    def __init__(self, address: str, connectivity: int = 4) -> None:
        super().__init__(
            address,
            "org.freedesktop.NetworkManager",
            "/org/freedesktop/NetworkManager",
            "org.freedesktop.NetworkManager",
            {"Connectivity": ("u", connectivity)},
        )

    def set_connectivity(self, value: int) -> None:
        self.properties["Connectivity"] = ("u", value)
        self.emit(
            "PropertiesChanged",
            "sa{sv}as",
            (self.interface, {"Connectivity": ("u", value)}, []),
            interface="org.freedesktop.DBus.Properties",
        )


__all__ = ["Logind", "MessageType", "NetworkManager"]
