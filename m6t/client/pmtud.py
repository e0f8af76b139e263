"""Path MTU discovery for the tunnel, as RFC 8899 (DPLPMTUD) describes it for datagram transports; sans-I/O.

The packetization layer is the tunnel: a probe is an ICMPv6 echo request to the probe address, padded to the
size being tried and sent with DF set on the outer IPv4 header (data keeps DF clear, draft 2.6); the echo
reply confirms the size both ways.  Sizes here are IPv6 packet sizes, i.e. tunnel MTUs: the outer IPv4
packet is 28 bytes larger.

The machine follows RFC 8899 section 5.2: ``BASE`` confirms the 1280-byte floor (BASE_PLPMTU), ``SEARCHING``
tries the configured MTU first (the usual answer, one round trip) and then bisects between the largest size
confirmed and the smallest that failed; ``SEARCH_COMPLETE`` holds the result until the raise timer
(PMTU_RAISE_TIMER, 600 s) searches upwards again or a suspected black hole asks for a confirmation probe;
``ERROR`` is a path that does not carry the floor with DF set: the tunnel keeps 1280 and relies on the
DF-clear fragmentation draft 2.6 asks for, and tries again at the raise timer.  A size fails after
MAX_PROBES (3) probes unanswered for PROBE_TIMER (1 s, the RFC's lower bound) each; a packet-too-big about a
probe (an ICMP fragmentation-needed quoting it, or the local stack's EMSGSIZE) fails it at once and, when it
gives a size, names the next size to try (RFC 8899 4.6.2).

Fed with ``start``/``acked``/``too_big``/``suspect_black_hole`` and a clock; :meth:`Pmtud.poll` says which
size to probe now and :meth:`Pmtud.deadline` when to call it again: a deadline the driver arms, never a
periodic tick.  An input may make a probe due at once, so the caller polls after each.  One probe is in
flight at a time, so evidence without a quote belongs to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from m6t.protocol import IPV6_MIN_MTU

ECHO_OVERHEAD = 48
"""IPv6 header (40) + ICMPv6 echo header (8): an echo of size S carries S - 48 data bytes."""
BASE_PLPMTU = IPV6_MIN_MTU
MAX_PROBES = 3
PROBE_TIMER_S = 1.0
"""RFC 8899 5.1.1: "MUST NOT be smaller than 1 second and SHOULD be larger than 15 seconds".  The lower bound:
an echo through the tunnel comes back in well under a second, and with 15 s every size that does not pass
would cost 45 s, where the tunnel needs its MTU within seconds of connecting."""
PMTU_RAISE_TIMER_S = 600.0
"""RFC 8899 5.1.1: "This timer has a period of 600 seconds, as recommended by PLPMTUD [RFC4821]"."""


class PmtudState(StrEnum):
    DISABLED = "disabled"
    BASE = "base"
    SEARCHING = "searching"
    SEARCH_COMPLETE = "search_complete"
    ERROR = "error"


class Found(StrEnum):
    """How a search's result was found: what set the upper bound it stopped at."""

    PROBE = "probe"
    """Probes alone: the configured MTU was echoed, or a larger size went unanswered MAX_PROBES times."""
    ICMP = "icmp"
    """An ICMP fragmentation-needed about a probe gave the path MTU; a probe of that size confirmed it."""
    EMSGSIZE = "emsgsize"
    """The local stack refused a probe as larger than the outgoing link."""
    FLOOR = "floor"
    """The path does not carry 1280-byte IPv6 packets with DF set (under 1308 IPv4 bytes): 1280 is kept and
    the DF-clear fragmentation of draft 2.6 carries larger ones."""


@dataclass(frozen=True, slots=True)
class PmtudResult:
    mtu: int
    """The tunnel MTU to use: the largest size echoed (BASE_PLPMTU for ``FLOOR``)."""
    found: Found
    time: float
    """When the search ended (the caller's clock)."""
    probes: int
    """Probes the search sent."""
    duration: float
    tried: tuple[tuple[int, bool], ...]
    """Each size settled, in order, and whether it passed."""
    evidence: Found = Found.PROBE
    """What ended it: lost probes, an ICMP or an EMSGSIZE (for ``FLOOR``: why the floor did not pass)."""

    @property
    def fragmentation(self) -> bool:
        """The path is under 1308 bytes: larger packets cross only as DF-clear fragments."""
        return self.found is Found.FLOOR


class Pmtud:
    """One tunnel path's DPLPMTUD state machine.

    ``max_size`` is MAX_PLPMTU (the configured tunnel MTU); ``overall`` bounds one search (the on-demand
    probe's timeout; unbounded otherwise, MAX_PROBES ends every size anyway).
    """

    def __init__(
        self,
        max_size: int,
        *,
        base: int = BASE_PLPMTU,
        probe_timer: float = PROBE_TIMER_S,
        max_probes: int = MAX_PROBES,
        raise_timer: float = PMTU_RAISE_TIMER_S,
    ) -> None:
        if not ECHO_OVERHEAD <= base <= max_size:
            raise ValueError(f"path MTU search bounds {base}..{max_size} are not usable")
        if probe_timer <= 0 or raise_timer <= 0 or max_probes < 1:
            raise ValueError("probe timer and raise timer must be positive, max_probes at least 1")
        self.base = base
        self.max_size = max_size
        self.probe_timer = probe_timer
        self.max_probes = max_probes
        self.raise_timer = raise_timer
        self.state = PmtudState.DISABLED
        self.result: PmtudResult | None = None
        """The last search's outcome (kept through a raise search: it is still what the path carries)."""
        self.probes_sent = 0
        """Every probe this machine sent (all searches)."""
        # The search under way.
        self.low: int | None = None
        """Largest size confirmed in this search."""
        self.high = max_size + 1
        """Smallest size known not to pass."""
        self.high_by = Found.PROBE
        self._hint: int | None = None
        self._tried: list[tuple[int, bool]] = []
        self._started = 0.0
        self._search_probes = 0
        self._overall = math.inf
        self._confirming = False
        """SEARCH_COMPLETE, a black hole suspected: probing the result itself (RFC 8899 4.3)."""
        # The probe in flight.
        self.current: int | None = None
        self._count = 0
        self._deadline: float | None = None
        self._raise_at: float | None = None

    # ------------------------------------------------------------------ inputs

    def start(self, now: float, *, overall: float | None = None) -> None:
        """Search from the floor (a new path, a black hole, or asked to): BASE."""
        self._begin(now, PmtudState.BASE, low=None, overall=overall)

    def raise_now(self, now: float, *, overall: float | None = None) -> None:
        """Search upwards from the current result (the raise timer, or an on-demand search)."""
        if self.result is None or self.result.found is Found.FLOOR:
            self.start(now, overall=overall)
            return
        self._begin(now, PmtudState.SEARCHING, low=self.result.mtu, overall=overall)

    def stop(self) -> None:
        """No path (down, or a new one coming): nothing in flight, no timer; the result is forgotten."""
        self.state = PmtudState.DISABLED
        self.result = None
        self.current = None
        self._deadline = None
        self._raise_at = None
        self._confirming = False

    def pause(self, now: float) -> None:
        """The tunnel address changed on the same path: probes in flight are lost, the result still holds.

        A first search under way stops (the caller starts it again once the new address is confirmed); a
        raise search or a confirmation gives way to the result, searched upwards again at the raise timer.
        """
        self.current = None
        self._deadline = None
        self._confirming = False
        if not self.searching:
            return
        result = self.result
        if result is None:
            self.state = PmtudState.DISABLED
            return
        floor = result.found is Found.FLOOR
        self.state = PmtudState.ERROR if floor else PmtudState.SEARCH_COMPLETE
        self._raise_at = now + self.raise_timer if floor or result.mtu < self.max_size else None

    def acked(self, size: int, now: float) -> None:
        """An echo of ``size`` came back whole: the path carries it both ways."""
        if self.state is PmtudState.DISABLED:
            return
        if self._confirming and size == self.current:
            self._confirming = False
            self.current = None
            self._deadline = None
            return
        if self.state not in (PmtudState.BASE, PmtudState.SEARCHING):
            return
        if size == self.current:
            self._tried.append((size, True))
            self.current = None
            self._deadline = None
        if self.low is None or size > self.low:
            self.low = size
        if self.high <= self.low:
            # Contradicts an earlier failure (a lost probe, a path that changed): the echo wins.
            self.high = self.low + 1
        if self.state is PmtudState.BASE:
            self.state = PmtudState.SEARCHING

    def too_big(self, size: int | None, found: Found, now: float, *, probe: int | None = None) -> bool:
        """A probe did not fit: ``size`` the largest IPv6 packet the path carries, if the evidence said.

        ``probe`` is the size of the probe it quotes when the quote says; otherwise the probe in flight.
        Returns whether the evidence was taken (it must concern a probe this search sent).
        """
        probed = self.current if probe is None else probe
        if probed is None:
            return self._late(size, found, now)
        if self.state not in (PmtudState.BASE, PmtudState.SEARCHING, PmtudState.SEARCH_COMPLETE):
            return False
        if size is not None and size >= probed:
            return False  # inconsistent: says the probe fitted (RFC 8899 4.6.2 ignores it)
        if self._confirming:
            if probed == self.current:
                self._confirm_failed(now)
            return True
        if self.state is PmtudState.SEARCH_COMPLETE:
            return self._late(size, found, now)
        if self.low is not None and probed <= self.low:
            return False  # about a size already echoed: stale, or not ours
        if probed == self.current:
            self._tried.append((probed, False))
            self.current = None
            self._deadline = None
        if probed < self.high:
            self.high = probed
            self.high_by = found
        if size is not None:
            if size < self.base:
                if self.low is None:
                    self._finish(now, floor=True, found=found)
                return True
            if size < self.high:
                self.high = size + 1
                self.high_by = found
                self._hint = size
        elif probed == self.base and self.state is PmtudState.BASE:
            self._finish(now, floor=True, found=found)
        return True

    def _late(self, size: int | None, found: Found, now: float) -> bool:
        """A packet-too-big with no probe in flight (one that arrived after its probe's timer): below the result
        but not below the floor, it may be a black hole (RFC 8899 4.6.2, "BASE_PLPMTU <= PL_PTB_SIZE <
        PLPMTU"): search again from BASE, trying its size first.  Never used to set the MTU directly."""
        result = self.result
        if self.state is not PmtudState.SEARCH_COMPLETE or result is None or size is None:
            return False
        if not self.base <= size < result.mtu:
            return False
        self.start(now)
        self.high = size + 1
        self.high_by = found
        self._hint = size
        return True

    def suspect_black_hole(self, now: float) -> None:
        """Large packets went unanswered while small ones were answered: confirm the result with a probe of
        its size; unanswered MAX_PROBES times, it is a black hole and the search starts again from BASE."""
        result = self.result
        if self.state is not PmtudState.SEARCH_COMPLETE or result is None or result.mtu <= self.base:
            return
        if self._confirming:
            return
        self._confirming = True
        self.current = result.mtu
        self._count = 0
        self._deadline = now

    # ------------------------------------------------------------------ outputs

    @property
    def searching(self) -> bool:
        return self.state in (PmtudState.BASE, PmtudState.SEARCHING)

    @property
    def confirming(self) -> bool:
        return self._confirming

    @property
    def tried(self) -> tuple[tuple[int, bool], ...]:
        return tuple(self._tried)

    @property
    def search_probes(self) -> int:
        return self._search_probes

    @property
    def started(self) -> float:
        return self._started

    @property
    def known_too_big(self) -> int:
        """Smallest size known not to pass in the search under way (``max_size + 1``: none yet)."""
        return self.high

    @property
    def raise_at(self) -> float | None:
        return self._raise_at

    def poll(self, now: float) -> int | None:
        """The size to send a probe of now (a first try or a retry), or ``None``."""
        if self.state is PmtudState.DISABLED:
            return None
        if self.state in (PmtudState.SEARCH_COMPLETE, PmtudState.ERROR) and not self._confirming:
            if self._raise_at is not None and now >= self._raise_at:
                self.raise_now(now)
            else:
                return None
        if self.searching and now >= self._overall:
            self._finish(now, floor=False, found=self.high_by)
            return None
        if self.current is not None:
            assert self._deadline is not None
            if now < self._deadline:
                return None
            if self._count < self.max_probes:
                return self._send(self.current, now)
            # MAX_PROBES unanswered: this size does not pass.
            if self._confirming:
                self._confirm_failed(now)
                return self.poll(now)
            failed = self.current
            self._tried.append((failed, False))
            self.current = None
            self._deadline = None
            if self.state is PmtudState.BASE:
                self._finish(now, floor=True, found=Found.PROBE)
                return None
            if failed < self.high:
                self.high = failed
                self.high_by = Found.PROBE
        if not self.searching:
            return None
        size = self._next_size()
        if size is None:
            self._finish(now, floor=False, found=self.high_by)
            return None
        self.current = size
        self._count = 0
        return self._send(size, now)

    def deadline(self) -> float | None:
        """When :meth:`poll` has something to do (``None``: nothing until an input comes)."""
        candidates = [d for d in (self._deadline, self._raise_at) if d is not None]
        if self.searching and self._overall < math.inf:
            candidates.append(self._overall)
        return min(candidates) if candidates else None

    # ------------------------------------------------------------------ internals

    def _begin(self, now: float, state: PmtudState, *, low: int | None, overall: float | None) -> None:
        self.state = state
        self.low = low
        self.high = self.max_size + 1
        self.high_by = Found.PROBE
        self._hint = None
        self._tried = []
        self._started = now
        self._search_probes = 0
        self._overall = math.inf if overall is None else now + overall
        self._confirming = False
        self.current = None
        self._deadline = None
        self._raise_at = None

    def _send(self, size: int, now: float) -> int:
        self._count += 1
        self._deadline = now + self.probe_timer
        self.probes_sent += 1
        self._search_probes += 1
        return size

    def _next_size(self) -> int | None:
        if self.state is PmtudState.BASE:
            return self.base
        low = self.low if self.low is not None else self.base
        if self.high - low <= 1:
            return None
        hint, self._hint = self._hint, None
        if hint is not None and low < hint < self.high:
            return hint
        if self.high == self.max_size + 1:
            return self.max_size
        return (low + self.high) // 2

    def _finish(self, now: float, *, floor: bool, found: Found) -> None:
        self.current = None
        self._deadline = None
        evidence = found
        if floor or self.low is None:
            self.state = PmtudState.ERROR
            mtu, found = self.base, Found.FLOOR
        else:
            self.state = PmtudState.SEARCH_COMPLETE
            mtu = self.low
            if mtu >= self.max_size:
                found = evidence = Found.PROBE
        self.result = PmtudResult(
            mtu, found, now, self._search_probes, now - self._started, tuple(self._tried), evidence
        )
        self._raise_at = None if mtu >= self.max_size else now + self.raise_timer

    def _confirm_failed(self, now: float) -> None:
        """The result no longer passes: a black hole (RFC 8899 4.3); search again from BASE, below it."""
        lost = self.current
        self._confirming = False
        self.start(now)
        if lost is not None:
            self._tried.append((lost, False))
            self.high = lost
            self.high_by = Found.PROBE
