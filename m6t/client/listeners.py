"""Who hears a driver's events: listeners come and go at any time, and one that fails is logged, never spread
(a broken subscriber must not stop the tunnel nor the other subscribers)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from m6t.client.events import Event

log = logging.getLogger("m6t.client")

Listener = Callable[[Event], None]


class Listeners:
    def __init__(self, *listeners: Listener) -> None:
        self._listeners = list(listeners)

    def add(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every event from now on; returns the function that unsubscribes it."""
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def emit(self, event: Event) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed", listener)
