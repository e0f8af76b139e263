"""Sleep and resume from systemd-logind's ``PrepareForSleep`` signal (org.freedesktop.login1(5)).

"PrepareForSleep(b start) ... are sent right before (with the argument true) and after (with the argument
false) the system goes down for ... suspend/hibernate."  Only listened to: the helper takes no inhibitor
lock (nothing needs doing before the sleep; everything that matters happens after it).
"""

from __future__ import annotations

import logging
import sys

from jeepney import MatchRule, Message

from m6t.platform.base import PowerCallback, PowerEvent, PowerEvents

assert sys.platform == "linux"

from m6t.platform.linux.systembus import ServiceWatch  # noqa: E402

log = logging.getLogger("m6t.platform")

LOGIND = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
MANAGER_INTERFACE = "org.freedesktop.login1.Manager"


class LogindPowerEvents(PowerEvents):
    def __init__(self) -> None:
        self._watch = ServiceWatch(LOGIND)

    async def start(self, on_event: PowerCallback) -> bool:
        if not await self._watch.open():
            return False

        def prepare_for_sleep(message: Message) -> None:
            (going,) = message.body
            on_event(PowerEvent.SLEEPING if going else PowerEvent.RESUMED)

        rule = MatchRule(
            type="signal", sender=LOGIND, interface=MANAGER_INTERFACE, member="PrepareForSleep", path=MANAGER_PATH
        )
        try:
            await self._watch.subscribe(rule, prepare_for_sleep)
        except Exception as exc:
            log.debug("logind: cannot subscribe to PrepareForSleep (%s)", exc)
            await self._watch.close()
            return False
        return True

    async def stop(self) -> None:
        await self._watch.close()
