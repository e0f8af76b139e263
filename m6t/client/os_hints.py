"""What the OS says about sleep and the network's reachability, for whoever runs the tunnels.

Optional by nature: each source (logind and NetworkManager on Linux, IOKit on macOS) is used where the
backend has it and the system answers, and silently left out otherwise (the clocks notice a sleep, and a
captive portal is then only a gateway that does not answer).  One subscription per helper: with several
tunnels (``tunnel.uplinks = "all"``) their manager owns it and tells every tunnel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from m6t.platform.base import Backend, NetworkReachability, PowerEvent, PowerEvents, ReachabilityHints

log = logging.getLogger("m6t.client")


class OsHints:
    def __init__(
        self,
        backend: Backend,
        on_resume: Callable[[], None],
        on_reachability: Callable[[NetworkReachability], None],
    ) -> None:
        self._backend = backend
        self._on_resume = on_resume
        self._on_reachability = on_reachability
        self._power: PowerEvents | None = None
        self._reachability: ReachabilityHints | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources subscribed to (``"power"``, ``"reachability"``), for diagnostics and tests."""
        sources = (("power", self._power), ("reachability", self._reachability))
        return tuple(name for name, source in sources if source is not None)

    async def start(self) -> None:
        """Subscribe to what the system offers; never raises (a failure is logged and the hints left out)."""
        try:
            await self._start()
        except Exception:
            log.exception("subscribing to the OS's sleep and network hints failed; going on without them")

    async def _start(self) -> None:
        # Each source is kept before it starts, so that a stop() cancelling the start still stops it.
        self._power = self._backend.power_events()
        if self._power is not None:
            if await self._power.start(self._on_power):
                log.info("sleep and resume are announced by the OS")
            else:
                self._power = None
                log.debug("no sleep/resume announcements on this system: the clocks will tell")
        self._reachability = self._backend.reachability_hints()
        if self._reachability is not None:
            verdict = await self._reachability.start(self._on_reachability)
            if verdict is not None:
                log.info("the OS reports the network's reachability (now %s)", verdict.value)
                self._on_reachability(verdict)
            else:
                self._reachability = None
                log.debug("no reachability verdict from the OS on this system")

    async def stop(self) -> None:
        for source in (self._power, self._reachability):
            if source is not None:
                try:
                    await source.stop()
                except Exception:
                    log.exception("stopping an OS hint source failed")
        self._power = self._reachability = None

    def _on_power(self, event: PowerEvent) -> None:
        if event is PowerEvent.SLEEPING:
            log.info("the system is going to sleep")
            return
        self._on_resume()
