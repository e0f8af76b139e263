"""The network's reachability from NetworkManager's ``Connectivity`` property.

NetworkManager's D-Bus API: ``org.freedesktop.NetworkManager`` at ``/org/freedesktop/NetworkManager``, property
``Connectivity`` (u, read): "The result of the last connectivity check", an ``NMConnectivityState``:
0 UNKNOWN, 1 NONE, 2 PORTAL ("The Internet connection is hijacked by a captive portal gateway"), 3 LIMITED,
4 FULL.  Changes come as ``org.freedesktop.DBus.Properties.PropertiesChanged``.  Only read: the helper never
asks for a check (``CheckConnectivity``), NetworkManager runs its own.
"""

from __future__ import annotations

import logging
import sys
from typing import Final

from jeepney import MatchRule, Message

from m6t.platform.base import NetworkReachability, ReachabilityCallback, ReachabilityHints

assert sys.platform == "linux"

from m6t.platform.linux.systembus import ServiceWatch  # noqa: E402

log = logging.getLogger("m6t.platform")

NETWORKMANAGER = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
NM_INTERFACE = "org.freedesktop.NetworkManager"

NM_CONNECTIVITY: Final[dict[int, NetworkReachability]] = {
    0: NetworkReachability.UNKNOWN,
    1: NetworkReachability.NONE,
    2: NetworkReachability.PORTAL,
    3: NetworkReachability.LIMITED,
    4: NetworkReachability.FULL,
}


def reachability(value: object) -> NetworkReachability:
    """NetworkManager's ``NMConnectivityState``; anything else (a future value) is ``UNKNOWN``."""
    return (
        NM_CONNECTIVITY.get(value, NetworkReachability.UNKNOWN)
        if isinstance(value, int)
        else NetworkReachability.UNKNOWN
    )


class NetworkManagerHints(ReachabilityHints):
    def __init__(self) -> None:
        self._watch = ServiceWatch(NETWORKMANAGER)

    async def start(self, on_change: ReachabilityCallback) -> NetworkReachability | None:
        watch = self._watch
        if not await watch.open():
            return None
        last: list[NetworkReachability] = []

        def announce(value: NetworkReachability) -> None:
            if last and last[-1] is value:
                return
            last[:] = [value]
            on_change(value)

        def properties_changed(message: Message) -> None:
            _interface, changed, _invalidated = message.body
            if "Connectivity" in changed:
                announce(reachability(changed["Connectivity"][1]))

        rule = MatchRule(
            type="signal",
            sender=NETWORKMANAGER,
            interface="org.freedesktop.DBus.Properties",
            member="PropertiesChanged",
            path=NM_PATH,
        )
        rule.add_arg_condition(0, NM_INTERFACE)
        try:
            # Subscribed before the read, so that a change racing with it is not lost.
            await watch.subscribe(rule, properties_changed)
            now = reachability(await watch.get_property(NM_PATH, NM_INTERFACE, "Connectivity"))
        except Exception as exc:
            log.debug("NetworkManager: cannot read its connectivity (%s)", exc)
            await watch.close()
            return None
        if not last:
            last.append(now)
        return last[-1]

    async def stop(self) -> None:
        await self._watch.close()
