"""Keeping the kernel's fast lane in step with the state table.

The kernel lane (on Linux :class:`m6t.platform.linux.nftables.NftFastLane`) lets established mobile nodes'
packets through first and polices everything else before it reaches the gateway's socket.  What counts
as established is the core's active states: the table records states becoming active and active states
going (:meth:`~m6t.gateway.states.StateTable.track_active`), and :class:`FastLane` forwards them to the
kernel in batches, right after the wakeup that produced them.  A batch is reconciled against the table
rather than replayed, so the order of events within it cannot matter: an element is added when its state
is active with that endpoint now, removed otherwise.

The limits come from the configuration: the per-IPv4 rate is the ``[states]`` new-state rate and burst
times ``packets_per_new_state`` (capped at what the kernel takes), the ceiling is ``[fastlane]``'s own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from m6t.gateway.config import MAX_UNKNOWN_RATE, GatewayConfig
from m6t.gateway.core import GatewayCore
from m6t.gateway.metrics import Metric
from m6t.gateway.states import ACTIVE, ENDPOINT_MASK, ActiveEvent, StateTable, unpack_endpoint
from m6t.platform.base import PlatformError

log = logging.getLogger(__name__)

ESTABLISHED_SLACK_S: Final = 30
"""Added to the active lifetime for the kernel's own timeout of an element: it only has to outlive the
state (the gateway removes the element when the state goes), and the mobile node's packets refresh it."""
MIN_SYNC_INTERVAL_S: Final = 0.01
"""Batches of changes go to the kernel at most this often: one transaction for many activations."""
RETRY_S: Final = 5.0
"""After a failed update, the table is rebuilt and refilled this much later."""
WARN_EVERY_S: Final = 60.0

Element = tuple[int, int, int, int]
"""``(inner IPv6 source, outer IPv4 source, UDP source port, local port)``."""


class KernelLane(Protocol):
    """The kernel side: a table with an established set and policing rules."""

    def update(self, added: Sequence[Element], removed: Sequence[Element]) -> None:
        """Raises :class:`~m6t.platform.base.PlatformError` when the kernel refuses."""

    def counters(self) -> Mapping[str, tuple[int, int]]:
        """``rule → (packets, bytes)``."""
        ...

    def reset(self) -> None:
        """Recreate the table with an empty established set."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LaneLimits:
    per_ipv4_per_s: int
    per_ipv4_burst: int
    total_per_s: int
    total_burst: int
    established_timeout_s: int
    max_established: int


def lane_limits(config: GatewayConfig) -> LaneLimits:
    """The kernel's limits for this configuration; every configuration the file accepts gives valid ones."""
    states, lane = config.states, config.fastlane
    per_state = lane.packets_per_new_state
    return LaneLimits(
        per_ipv4_per_s=max(1, min(MAX_UNKNOWN_RATE, math.ceil(states.new_states_per_ipv4_per_s * per_state))),
        per_ipv4_burst=max(1, min(MAX_UNKNOWN_RATE, states.new_states_per_ipv4_burst * per_state)),
        total_per_s=lane.unknown_total_per_s,
        total_burst=lane.unknown_total_burst,
        established_timeout_s=states.active_lifetime_s + ESTABLISHED_SLACK_S,
        max_established=states.max_states,
    )


def reconcile(
    table: StateTable, activated: Sequence[ActiveEvent], deactivated: Sequence[ActiveEvent]
) -> tuple[list[ActiveEvent], list[ActiveEvent]]:
    """``(to add, to remove)`` for the states these events touched, judged by the table as it is now."""
    add: list[ActiveEvent] = []
    remove: list[ActiveEvent] = []
    for key, endpoint in dict.fromkeys([*activated, *deactivated]):
        value = table.get(key)
        if value is not None and value & ACTIVE and value & ENDPOINT_MASK == endpoint:
            add.append((key, endpoint))
        else:
            remove.append((key, endpoint))
    return add, remove


class FastLane:
    """Forwards the core's active-state events to a kernel lane, and reports the lane's counters."""

    def __init__(
        self, core: GatewayCore, lane: KernelLane, ports: Sequence[int], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.core = core
        self.lane = lane
        self.ports = tuple(ports)
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.Handle | None = None
        self._last_sync = -math.inf
        self._broken = False
        self._warned_at = -math.inf
        self.syncs = 0
        self.added = 0
        self.removed = 0
        self.errors = 0
        self.resets = 0

    def _element(self, event: ActiveEvent) -> Element:
        key, endpoint = event
        ipv4, port, sock = unpack_endpoint(endpoint)
        return key, ipv4, port, self.ports[sock]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Track the core's active states from now on; those already active (restored ones) go in at once."""
        self._loop = loop
        present = self.core.table.track_active()
        self._push([self._element(event) for event in present], [])

    def stop(self) -> None:
        self._loop = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def poke(self) -> None:
        """Called after each wakeup that may have changed states: schedules a sync when something did."""
        table = self.core.table
        if self._handle is not None or self._loop is None or not (table.activated or table.deactivated):
            return
        wait = self._last_sync + MIN_SYNC_INTERVAL_S - self._clock()
        if wait > 0:
            self._handle = self._loop.call_later(wait, self._sync)
        else:
            self._handle = self._loop.call_soon(self._sync)

    def _sync(self) -> None:
        self._handle = None
        if self._loop is None:
            return
        self._last_sync = self._clock()
        if self._broken:
            self._rebuild()
            return
        activated, deactivated = self.core.table.take_active_events()
        add, remove = reconcile(self.core.table, activated, deactivated)
        self._push([self._element(e) for e in add], [self._element(e) for e in remove])

    def _push(self, added: list[Element], removed: list[Element]) -> None:
        if not added and not removed:
            return
        try:
            self.lane.update(added, removed)
        except PlatformError as exc:
            self._failed(exc)
            return
        self.syncs += 1
        self.added += len(added)
        self.removed += len(removed)

    def _failed(self, exc: PlatformError) -> None:
        self.errors += 1
        self._broken = True
        now = self._clock()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("fast lane: %s; rebuilding the table in %.0f s", exc, RETRY_S)
        if self._loop is not None and self._handle is None:
            self._handle = self._loop.call_later(RETRY_S, self._sync)

    def _rebuild(self) -> None:
        """After a failure the kernel's set is unknown: a fresh table, filled from the state table."""
        table = self.core.table
        table.take_active_events()
        try:
            self.lane.reset()
        except PlatformError as exc:
            self._failed(exc)
            return
        self.resets += 1
        self._broken = False
        self._push([self._element(event) for event in table.track_active()], [])
        if not self._broken:
            log.info("fast lane: table rebuilt with %d established mobile nodes", table.active)

    def metrics(self) -> list[Metric]:
        try:
            counters = dict(self.lane.counters())
        except PlatformError as exc:
            log.debug("fast lane counters: %s", exc)
            counters = {}
        return [
            Metric.single("fastlane_enabled", "gauge", "The kernel fast lane is in use (1) or not (0).", 1),
            Metric(
                "fastlane_packets_total",
                "counter",
                "Packets toward the gateway's ports by the kernel rule that decided: established (fast lane), "
                "policed_per_ipv4 and policed_ceiling (dropped), passed (on to the gateway).",
                tuple(({"rule": name}, float(packets)) for name, (packets, _bytes) in sorted(counters.items())),
            ),
            Metric(
                "fastlane_elements_total",
                "counter",
                "Established elements the gateway added to and removed from the kernel's set.",
                (({"op": "added"}, self.added), ({"op": "removed"}, self.removed)),
            ),
            Metric.single(
                "fastlane_errors_total",
                "counter",
                "Kernel updates that failed (the table is then rebuilt).",
                self.errors,
            ),
        ]


def fastlane_off_metrics() -> list[Metric]:
    return [Metric.single("fastlane_enabled", "gauge", "The kernel fast lane is in use (1) or not (0).", 0)]
