"""Where this host reaches the gateway, sans I/O: the one place that decides the attachment changed.

The driver feeds it what the OS says and what the clocks read: change notifications (only "something
changed", with the time), the answers of path look-ups and of the connected-UDP backstop probe, wall-clock
samples, and the time.  It asks back (look the path up now, probe now) and decides (attach a new snapshot,
detach, check the binding because the clock jumped); the driver drains them with :meth:`pop_decisions` and
wakes it at :meth:`next_deadline`.  No sockets, no clock, no logging.

* OS notifications are only a trigger.  A burst of them (DHCP, Wi-Fi roaming, a NAT box rebooting) is
  waited out until it has been quiet for ``quiet`` (or ``max_delay`` after its first change, if it never
  quiets down), and then the path is looked up afresh.  Recomputing instead of interpreting notifications
  keeps the answer right whatever their order, and a lost one only costs a recomputation.
* One look-up at a time: a burst that ends while one is under way gets one more after it, since the
  answer on its way may predate the burst.
* Only what changed is reported: a look-up answer equal to the previous one is not (the first always is).
* The backstop covers notifications the OS lost (a full routing socket drops them silently): on every
  tick, and so at least every ``probe_interval``, the connected-UDP probe says which source the OS picks
  now (riding on the wakeups the driver makes anyway, it needs none of its own then).  It is believed only
  after ``confirmations`` consecutive probes that agree with each other and not with what was reported,
  so a change that is still settling does not flap the attachment.
* Wall-clock samples catch a sleep: the monotonic clock stands still meanwhile, so every timer would
  believe the NAT mapping and the gateway's state as fresh as before.  A wall clock that ran ahead of the
  monotonic one by more than ``jump_threshold`` (asleep), or samples further apart than that and one
  ``clock_interval`` (frozen), call for a check of the binding; so does :meth:`resumed`, for an OS that
  says so itself (e.g. logind's PrepareForSleep).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from m6t.client.session import same_path
from m6t.protocol.values import Attachment

DEFAULT_QUIET: Final = 0.15
"""Quiet period closing a burst: DHCP and link changes come as several notifications within a few ms."""
DEFAULT_MAX_DELAY: Final = 1.0
"""A burst that never quiets down is still looked up this long after its first notification."""
DEFAULT_PROBE_INTERVAL: Final = 1.0
DEFAULT_CLOCK_INTERVAL: Final = 1.0
"""The settings' defaults; the client driver uses the keepalive interval for both (see above)."""
BACKSTOP_CONFIRMATIONS: Final = 2
"""Consecutive probes that must disagree with the attachment reported before they are believed."""


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    quiet: float = DEFAULT_QUIET
    max_delay: float = DEFAULT_MAX_DELAY
    probe_interval: float = DEFAULT_PROBE_INTERVAL
    """The longest time between two backstop probes while the path is watched."""
    confirmations: int = BACKSTOP_CONFIRMATIONS
    clock_interval: float = DEFAULT_CLOCK_INTERVAL
    """How often a wall-clock sample is wanted."""
    jump_threshold: float = 30.0
    """A clock jump longer than this may have outlived the NAT mapping: the keepalive interval."""

    def __post_init__(self) -> None:
        if not all(d > 0 for d in (self.quiet, self.max_delay, self.probe_interval, self.clock_interval)):
            raise ValueError("delays and intervals must be positive")
        if not self.jump_threshold > 0:
            raise ValueError("the clock-jump threshold must be positive")
        if self.confirmations < 1:
            raise ValueError("the backstop needs at least one confirmation")


@dataclass(frozen=True, slots=True)
class LookUp:
    """Ask the OS which path it would use toward the gateway now; answer with ``looked_up`` or
    ``lookup_failed``."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Run the connected-UDP backstop probe now; answer with ``probed`` (nothing, if it failed)."""


@dataclass(frozen=True, slots=True)
class Attach:
    """The path toward the gateway changed: hand this snapshot to the session."""

    attachment: Attachment
    by_backstop: bool = False
    """Found by the probe, not by a look-up: the OS's notification never came (or was lost)."""
    first: bool = False
    """The first answer since :meth:`ConnectivityTracker.watch`: the path toward a gateway just chosen, which
    may differ from the last one's without the network having changed."""


@dataclass(frozen=True, slots=True)
class Detach:
    """No IPv4 path toward the gateway any more."""

    by_backstop: bool = False


@dataclass(frozen=True, slots=True)
class CheckBinding:
    """Asleep or frozen: NAT mappings and the gateway's state may have expired unseen; check them now."""

    jump: float | None
    """How far the clocks say we jumped (seconds); ``None`` when the OS said it resumed."""


Decision = LookUp | Probe | Attach | Detach | CheckBinding


class ConnectivityTracker:
    """Debounce, look-ups, the backstop and the clock check for one gateway at a time."""

    def __init__(self, settings: TrackerSettings) -> None:
        self.settings = settings
        self.evaluations = 0
        """Look-up answers received (reported or not): lets tests and diagnostics see the debouncing."""
        self._decisions: list[Decision] = []
        # The path, while watched (between watch() and unwatch()).
        self._watching = False
        self._reported = False
        self._attachment: Attachment | None = None
        """What the session was last told (by a look-up or by the backstop)."""
        self._looked_up: Attachment | None = None
        """The last look-up's answer."""
        self._in_flight = False
        self._again = False
        self._burst_start: float | None = None
        self._lookup_due: float | None = None
        self._probe_due: float | None = None
        self._candidate: Attachment | None = None
        self._confirmed = 0
        # The clocks, always.
        self._sample: tuple[float, float] | None = None
        self._clock_due: float | None = None

    # ------------------------------------------------------------------ outputs

    def pop_decisions(self) -> list[Decision]:
        decisions, self._decisions = self._decisions, []
        return decisions

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` (or a wall-clock sample) is wanted; ``None``: nothing to wait for."""
        candidates = [d for d in (self._lookup_due, self._probe_due, self._clock_due) if d is not None]
        return min(candidates) if candidates else None

    @property
    def attachment(self) -> Attachment | None:
        """The attachment last decided (``None`` also before the first look-up answered)."""
        return self._attachment

    def path_of(self, probed: Attachment | None) -> Attachment | None:
        """The path a probe answer stands for: the last look-up when the source agrees (it knows the router
        too), else the probe's own answer."""
        known = self._looked_up
        if probed is not None and known is not None and probed.local_ipv4 == known.local_ipv4:
            return known
        return probed

    # ------------------------------------------------------------------ inputs: the path

    def watch(self, now: float) -> None:
        """The OS's change notifications are subscribed, and the caller is making the first look-up.

        Its answer (``looked_up``) is reported whatever it is; notifications that arrive meanwhile are
        kept, so a change racing with it is not lost.  A failed first look-up ends with :meth:`unwatch`.
        """
        self.unwatch()
        self._watching = True
        self._in_flight = True

    def unwatch(self) -> None:
        """Stop watching: everything learnt about the path is forgotten (the clock check goes on)."""
        self._watching = self._reported = self._in_flight = self._again = False
        self._attachment = self._looked_up = self._candidate = None
        self._burst_start = self._lookup_due = self._probe_due = None
        self._confirmed = 0

    def changed(self, now: float) -> None:
        """The OS says something that may move the path changed."""
        if not self._watching:
            return
        if self._burst_start is None:
            self._burst_start = now
        s = self.settings
        self._lookup_due = min(now + s.quiet, self._burst_start + s.max_delay)

    def looked_up(self, attachment: Attachment | None, now: float) -> None:
        """A look-up's answer: the path the OS would use now (``None``: no usable IPv4 path)."""
        if not self._watching:
            return  # it outlived the watch that asked for it
        self._in_flight = False
        self.evaluations += 1
        first = not self._reported
        previous, self._looked_up = self._looked_up, attachment
        if first or attachment != previous:
            self._decide(attachment, by_backstop=False, first=first)
        if first:
            self._probe_due = now + self.settings.probe_interval
        self._look_up_again()

    def lookup_failed(self, now: float) -> None:
        """A look-up failed: nothing is learnt; a burst that ended meanwhile still gets its own."""
        if not self._watching:
            return
        self._in_flight = False
        self._look_up_again()

    def probed(self, attachment: Attachment | None, now: float) -> None:
        """The backstop's answer: the source a connected UDP socket gets now, and the interface holding it."""
        if not self._watching or not self._reported:
            return
        seen = self.path_of(attachment)
        if same_path(seen, self._attachment):
            self._candidate, self._confirmed = None, 0
            return
        if self._confirmed and same_path(seen, self._candidate):
            self._confirmed += 1
        else:
            self._candidate, self._confirmed = seen, 1
        if self._confirmed >= self.settings.confirmations:
            self._decide(seen, by_backstop=True)

    # ------------------------------------------------------------------ inputs: the clocks

    def wall_clock(self, now: float, wall: float) -> None:
        """A sample of both clocks (``now`` monotonic, ``wall`` the time of day), read together."""
        previous, self._sample = self._sample, (now, wall)
        s = self.settings
        self._clock_due = now + s.clock_interval
        if previous is None:
            return
        elapsed = now - previous[0]
        drift = (wall - previous[1]) - elapsed
        if abs(drift) > s.jump_threshold or elapsed > s.jump_threshold + s.clock_interval:
            # Asleep (the monotonic clock stood still while the wall clock ran) or frozen.
            self._decisions.append(CheckBinding(max(drift, elapsed)))

    def stop_clock(self) -> None:
        """No binding to protect: no wall-clock samples are wanted until the next one is fed."""
        self._sample = self._clock_due = None

    def resumed(self, now: float) -> None:
        """The OS says it resumed from sleep: check the binding, and look the path up at once (the sleep may
        have outlived the network it began on, and its notifications may come late or not at all)."""
        self._decisions.append(CheckBinding(None))
        if self._sample is not None:
            self._sample = None  # the clocks' own check of the same sleep would only repeat this one
        if not self._watching:
            return
        if self._in_flight:
            self._again = True
        else:
            self._request_lookup()

    def tick(self, now: float) -> None:
        """The time: a burst that is over is looked up; the probe is asked for once something was reported."""
        if not self._watching:
            return
        if self._lookup_due is not None and now >= self._lookup_due:
            self._burst_start = self._lookup_due = None
            if self._in_flight:
                self._again = True
            else:
                self._request_lookup()
        if self._probe_due is not None:
            self._probe_due = now + self.settings.probe_interval
            self._decisions.append(Probe())

    # ------------------------------------------------------------------ internals

    def _request_lookup(self) -> None:
        # A look-up sees every change made before it starts: a burst pending now is covered by it.
        self._burst_start = self._lookup_due = None
        self._in_flight = True
        self._decisions.append(LookUp())

    def _look_up_again(self) -> None:
        if self._again:
            self._again = False
            self._request_lookup()

    def _decide(self, attachment: Attachment | None, *, by_backstop: bool, first: bool = False) -> None:
        self._reported = True
        self._attachment = attachment
        self._candidate, self._confirmed = None, 0
        self._decisions.append(Detach(by_backstop) if attachment is None else Attach(attachment, by_backstop, first))
