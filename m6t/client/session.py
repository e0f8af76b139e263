"""The m6t client session, sans-I/O (draft 2.2, 2.3, 2.6, 3).

Fed with connectivity snapshots, the resolved gateway address, TUN packets, UDP datagrams, PMTU
evidence and clock ticks; it answers with :mod:`effects <m6t.client.effects>` for the OS and
:mod:`events <m6t.client.events>` for the user.  It opens no socket, reads no clock and logs nothing:
every input carries ``now`` (the driver's monotonic clock), so the whole protocol runs in unit tests.

The rules it keeps:

* every new IPv4 attachment, and every loss of the gateway's binding, gets a fresh 48-bit suffix and a
  fresh socket (draft 3, 6.1.1): the gateway never updates a state, so an address is never reused
  across NAT mappings;
* a new address is *unconfirmed* until something comes back for it: the gateway activates a state
  only when the Home Agent answers the first packet (draft 2.4, 4), so keepalives cannot be answered
  before that and their silence proves nothing;
* once confirmed, one keepalive per idle interval (silence in either direction, draft 2.3); unanswered
  ones are retried at short intervals and ``max_missed`` of them mean the binding is lost;
* failures move to the next configured gateway port, a gateway dead on every port to the next gateway
  (:mod:`m6t.client.gateways`), and back off exponentially (the gateway rate-limits new states per IPv4
  address, draft 6.1.3); a new gateway always gets a new suffix, since states never move between gateways;
* the tunnel MTU stays between 1280 and the configured MTU; with path MTU discovery on
  (:mod:`m6t.client.pmtud`, RFC 8899) it is what the last search on this path found, searched again on every
  new path, raised at the raise timer and confirmed when large packets go unanswered while small ones are
  answered; without it, it is only lowered, and only on evidence about our own flow (2.6).
"""

from __future__ import annotations

import math
import secrets
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from m6t.client.effects import (
    CloseSocket,
    Effect,
    OpenSocket,
    OsEffect,
    RemoveAddress,
    RemoveRoutes,
    Send,
    SetAddress,
    SetMtu,
    SetRoutes,
)
from m6t.client.events import (
    AddressChanged,
    AttachmentChanged,
    CountersEvent,
    ErrorEvent,
    Event,
    GatewayChanged,
    GatewayUnreachable,
    KeepaliveEvent,
    KeepaliveKind,
    MtuChanged,
    MtuProbeDone,
    MtuProbeResult,
    StateChanged,
)
from m6t.client.gateways import Candidate, GatewaySelector, Move
from m6t.client.pmtud import ECHO_OVERHEAD, MAX_PROBES, PROBE_TIMER_S, Found, Pmtud, PmtudResult
from m6t.client.status import Counters, Drop, KeepaliveStatus, MtuEvidence, MtuSearchStatus, Regeneration, Status
from m6t.client.vocabulary import ErrorCode, RegenerationReason, State
from m6t.protocol import (
    DEFAULT_MTU,
    IPV6_HEADER_LEN,
    IPV6_MIN_MTU,
    KEEPALIVE_INTERVAL_S,
    KEEPALIVE_PEER,
    MAX_TUNNEL_MTU,
    NEXT_HEADER_NONE,
    UDP_IPV4_OVERHEAD,
    FragNeeded,
    PacketError,
    SuffixAllocator,
    build_echo_request,
    build_keepalive,
    check_prefix80,
    ipv6_problem,
    parse_echo_reply,
    tunnel_address,
)
from m6t.protocol.addressing import RandomBytes
from m6t.protocol.icmp import ICMPV6_ECHO_REQUEST
from m6t.protocol.values import Attachment, MergedPacket, PmtuEvidence, Route, wire_size

_NEXT_HEADER_ICMPV6 = 58
_REGENERATIONS_KEPT = 64
_ECHOES_KEPT = 256
_PROBE_DATA = b"m6t reachability"

_ECHO_REACH = 0
"""Marks a pending echo as the reachability probe; MTU-probe echoes are marked with their size."""

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What the session needs from the configuration (the driver maps ``ClientConfig`` to this)."""

    prefix: IPv6Network
    """The MN's /80 (draft 2.2)."""
    ports: tuple[int, ...]
    """Gateway UDP ports, in order of preference (draft 2.1)."""
    gateway_host: str = ""
    """As configured (literals or names), for the status only: the driver resolves them (``set_gateways``)."""
    mtu: int = DEFAULT_MTU
    keepalive_interval: float = KEEPALIVE_INTERVAL_S
    probe: IPv6Address | None = None
    """Echoed once per new address to confirm the path (normally the Home Agent)."""
    pmtud: bool = False
    """Path MTU discovery with probes echoed by ``probe`` (RFC 8899), its result applied as the tunnel MTU."""
    routes: tuple[Route, ...] = ()
    own_source_route: int | None = None
    """The metric of a ``::/0`` route from the tunnel's own address through the tunnel (source-specific), or
    ``None`` for none: one of several tunnels, on an OS that picks routes by destination alone (Linux's weak
    host model), where traffic from this tunnel's address would otherwise leave by the primary's route."""
    max_missed: int = 3
    reply_timeout: float = 2.0
    """Once confirmed: data came in, then our traffic has gone unanswered this long — check the binding with a
    keepalive now instead of at the next idle interval, so a NAT rebinding under load is found in seconds."""
    retry_interval: float = 2.0
    """Wait for a keepalive reply before retrying (capped at the keepalive interval)."""
    probe_timeout: float = 2.0
    probe_tries: int = 3
    confirm_timeout: float = 10.0
    """Without a probe address: traffic sent on a new address with nothing back for this long is a failure."""
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    counters_interval: float = 5.0
    """The shortest time between two counters events (none while they do not change)."""
    resume_timeout: float = 1.0
    """After a sleep (or a clock jump) one keepalive unanswered this long means the binding is lost: the NAT
    mapping rarely outlives a sleep, and waiting for ``max_missed`` retries would keep the tunnel down for
    seconds after the network is back."""

    def __post_init__(self) -> None:
        check_prefix80(self.prefix)
        if not self.ports or any(not 0 < p < 65536 for p in self.ports):
            raise ValueError(f"gateway ports {self.ports!r}: at least one, each in 1..65535")
        if not IPV6_MIN_MTU <= self.mtu <= MAX_TUNNEL_MTU:
            raise ValueError(f"MTU {self.mtu}: must be between {IPV6_MIN_MTU} and {MAX_TUNNEL_MTU}")
        if (
            min(
                self.keepalive_interval,
                self.retry_interval,
                self.probe_timeout,
                self.reply_timeout,
                self.resume_timeout,
            )
            <= 0
        ):
            raise ValueError(
                "keepalive interval, retry interval, reply timeout, resume timeout and probe timeout must be positive"
            )
        if self.max_missed < 1 or self.probe_tries < 1:
            raise ValueError("max_missed and probe_tries must be at least 1")
        if self.pmtud and self.probe is None:
            raise ValueError("path MTU discovery needs a probe address to echo its probes")

    @property
    def keepalive_retry(self) -> float:
        return min(self.retry_interval, self.keepalive_interval)


def same_path(a: Attachment | None, b: Attachment | None) -> bool:
    """Only the egress address and interface define an attachment; a new router alone is not a move."""
    if a is None or b is None:
        return a is b
    return a.local_ipv4 == b.local_ipv4 and a.interface == b.interface


class Session:
    def __init__(
        self,
        settings: SessionSettings,
        *,
        random_bytes: RandomBytes = secrets.token_bytes,
        allocator: SuffixAllocator | None = None,
    ) -> None:
        self._settings = settings
        # A shared allocator keeps suffixes distinct across tunnel interfaces on one /80 (draft 2.5).
        self._allocator = allocator if allocator is not None else SuffixAllocator(random_bytes)
        self._echo_ident = int.from_bytes(random_bytes(2), "big")
        self._effects: list[Effect] = []
        self._events: list[Event] = []
        self._counters = Counters()

        self._enabled = False
        self._attachment: Attachment | None = None
        self._gateways = GatewaySelector(settings.ports)
        self._announced: Candidate | None = None
        """The gateway the last :class:`GatewayChanged` named."""

        # The binding in use: address, its suffix and the socket's peer (None: no socket).
        self._address: IPv6Address | None = None
        self._addr_bytes = b""
        self._suffix: tuple[IPv6Network, int] | None = None
        self._peer: Address | None = None
        self._local: Address | None = None
        self._routes: tuple[Route, ...] = ()

        self._confirmed = False
        self._last_tx = 0.0
        self._last_rx = 0.0
        self._first_unanswered_tx: float | None = None
        """When our first packet since the last inbound one left."""
        self._data_in_since_check = False
        """Data (not just keepalive replies) came in since the last keepalive: a flow is running both ways."""

        self._ka_sent_at: float | None = None
        self._ka_outstanding = False
        self._last_ka_sent: float | None = None
        self._last_ka_reply: float | None = None
        self._rtt: float | None = None
        self._missed = 0

        self._probe_sent = 0
        self._probe_deadline: float | None = None
        self._echo_seq = 0
        self._echo_pending: dict[int, int] = {}
        self._pmtud = Pmtud(settings.mtu)
        self._pmtud_needed = True
        """No search finished on this path yet: one starts when an address is confirmed."""
        self._pmtud_seen: PmtudResult | None = None
        self._mtu_probe_id = 0
        self._probe_waiting = False
        """An on-demand probe (``start_mtu_probe``) waits for the search under way."""
        self._large_out = False
        """Packets over 1280 bytes left since the last data came in (black-hole detection)."""

        self._failures = 0
        self._retry_at: float | None = None
        self._retry_reason = RegenerationReason.RETRY_AFTER_ERROR

        self._mtu = settings.mtu
        self._evidence: MtuEvidence | None = None

        self._state = State.DISCONNECTED
        self._detail = "not started"
        self._since: float | None = None
        self._regenerations: deque[Regeneration] = deque(maxlen=_REGENERATIONS_KEPT)
        self._last_counters_at = 0.0
        self._last_counters = self._counters.fingerprint()  # nothing to report before something is counted
        self._suspect = False
        """Asleep or frozen: the binding is checked with one keepalive and a short timeout."""
        self._portal = False
        """The OS says this network holds us at a captive portal: nothing is tried until it lets us through."""
        # What the driver's timer was last armed for (next_deadline), so that the data path can tell it,
        # through has_output, that a deadline it set came earlier (see _timer_moved).
        self._armed = math.inf
        self._quiet_counters: tuple[int, int] | None = None

    # ------------------------------------------------------------------ outputs

    def pop_effects(self) -> list[Effect]:
        effects, self._effects = self._effects, []
        return effects

    def pop_events(self) -> list[Event]:
        events, self._events = self._events, []
        # The driver re-reads next_deadline after a flush: until then, nothing more to signal.
        self._armed = -math.inf
        self._quiet_counters = None
        return events

    @property
    def has_output(self) -> bool:
        """Effects or events to carry out, or a deadline that came earlier than the timer the driver armed.

        The data path sets deadlines without output of its own (the first counted packet after a quiet spell,
        traffic going unanswered); since the driver arms its timer for the next deadline only and never
        ticks, this is how such a deadline reaches it: the per-batch ``has_output`` check it makes anyway.
        """
        return bool(self._effects or self._events) or self._timer_moved()

    def _timer_moved(self) -> bool:
        quiet = self._quiet_counters
        c = self._counters
        if quiet is not None and (c.tx_packets != quiet[0] or c.rx_packets != quiet[1]):
            return True
        first = self._first_unanswered_tx
        if first is None:
            return False
        check = self._reply_check_due()
        if check is not None and check < self._armed:
            return True
        s = self._settings
        return not self._confirmed and s.probe is None and first + s.confirm_timeout < self._armed

    @property
    def settings(self) -> SessionSettings:
        return self._settings

    @property
    def state(self) -> State:
        return self._state

    @property
    def address(self) -> IPv6Address | None:
        return self._address

    @property
    def attachment(self) -> Attachment | None:
        return self._attachment

    @property
    def gateway(self) -> tuple[IPv4Address, int] | None:
        current = self._gateways.current
        if current is None:
            return None
        return current.address, self._gateways.port

    @property
    def gateway_candidate(self) -> Candidate | None:
        """The gateway in use (or next to be tried), with the configured entry it came from."""
        return self._gateways.current

    @property
    def gateway_candidates(self) -> tuple[Candidate, ...]:
        """Every gateway known, in order of preference."""
        return self._gateways.candidates

    @property
    def confirmed(self) -> bool:
        return self._confirmed

    @property
    def mtu(self) -> int:
        return self._mtu

    @property
    def counters(self) -> Counters:
        return self._counters

    def next_deadline(self) -> float | None:
        """The earliest time ``tick`` has something to do (the driver may tick earlier); ``None``: nothing.

        Only real deadlines: retries, probes, keepalives, expiries, and a counters event when they changed.
        """
        s = self._settings
        candidates: list[float] = []
        c = self._counters
        if c.fingerprint() != self._last_counters:
            candidates.append(self._last_counters_at + s.counters_interval)
            self._quiet_counters = None
        else:
            self._quiet_counters = (c.tx_packets, c.rx_packets)
        if self._retry_at is not None:
            candidates.append(self._retry_at)
        elif self._peer is not None:
            if self._probe_deadline is not None:
                candidates.append(self._probe_deadline)
            if self._ka_outstanding and self._ka_sent_at is not None:
                candidates.append(self._ka_sent_at + self._keepalive_wait())
            else:
                candidates.append(self._keepalive_due())
            if self._first_unanswered_tx is not None and s.probe is None and not self._confirmed:
                candidates.append(self._first_unanswered_tx + s.confirm_timeout)
            check = self._reply_check_due()
            if check is not None:
                candidates.append(check)
        if self._may_probe():
            deadline = self._pmtud.deadline()
            if deadline is not None:
                candidates.append(deadline)
        deadline = min(candidates) if candidates else None
        self._armed = math.inf if deadline is None else deadline
        return deadline

    def status(self, now: float | None = None) -> Status:
        s = self._settings
        current = self._gateways.current
        return Status(
            now=now,
            state=self._state,
            detail=self._detail,
            since=self._since,
            attachment=self._attachment,
            gateway_host=s.gateway_host if current is None else current.host,
            gateway_address=None if current is None else current.address,
            gateway_port=self._gateways.port,
            ports=s.ports,
            address=self._address,
            confirmed=self._confirmed,
            mtu_configured=s.mtu,
            mtu_effective=self._mtu,
            mtu_evidence=self._evidence,
            keepalive=KeepaliveStatus(
                interval=s.keepalive_interval,
                last_sent=self._last_ka_sent,
                last_reply=self._last_ka_reply,
                rtt=self._rtt,
                missed=self._missed,
                counting=self._confirmed,
            ),
            probe=s.probe,
            counters=self._counters.to_dict(),
            regenerations=tuple(self._regenerations),
            failures=self._failures,
            retry_at=self._retry_at,
            mtu_search=self._search_status(),
            gateways=self._gateways.candidates,
            gateways_dead=self._gateways.dead,
        )

    def _search_status(self) -> MtuSearchStatus | None:
        if not self._settings.pmtud:
            return None
        m = self._pmtud
        r = m.result
        return MtuSearchStatus(
            state=m.state.value,
            mtu=None if r is None else r.mtu,
            found=None if r is None else r.found.value,
            time=None if r is None else r.time,
            probes=0 if r is None else r.probes,
            duration=None if r is None else r.duration,
            fragmentation=r is not None and r.fragmentation,
            next_search=m.raise_at,
            probes_total=m.probes_sent,
        )

    # ------------------------------------------------------------------ control inputs

    def up(self, now: float) -> None:
        """Asked to connect: connects as soon as there is an attachment and a gateway address."""
        if self._enabled:
            return
        self._enabled = True
        self._failures = 0
        self._gateways.restart()
        self._announce_gateway("connecting")
        self._maybe_connect(now, RegenerationReason.ATTACHED)

    def down(self, now: float) -> None:
        """Asked to disconnect: everything installed is removed."""
        if not self._enabled:
            return
        self._enabled = False
        self._teardown(now, "disconnected")
        self._set_state(State.DISCONNECTED, "disconnected", now)

    def set_gateway(self, gateway: IPv4Address | None, now: float) -> None:
        """One gateway address (``None``: not known, e.g. the name does not resolve)."""
        self.set_gateways(() if gateway is None else (Candidate.literal(gateway),), now)

    def set_gateways(self, candidates: Sequence[Candidate], now: float) -> None:
        """The gateways' IPv4 addresses in order of preference, once resolved (empty: none known yet).

        The gateway in use is kept while it is listed; otherwise the first one listed gets a new binding.
        """
        had_binding = self._address is not None
        if not self._gateways.set_candidates(candidates):
            return
        self._announce_gateway("the list of gateways changed")
        if self._gateways.current is None:
            self._teardown(now, "gateway unknown")
            self._maybe_connect(now, RegenerationReason.GATEWAY_CHANGED)
            return
        self._failures = 0
        self._retry_at = None
        self._maybe_connect(now, RegenerationReason.GATEWAY_CHANGED if had_binding else RegenerationReason.ATTACHED)

    def attach(self, attachment: Attachment | None, now: float, *, new_gateway: bool = False) -> None:
        """A connectivity snapshot (``None``: no IPv4 path toward the gateway).

        ``new_gateway``: the first look-up toward a gateway just chosen (a failover): the path that gateway is
        reached by, not a new network.  The selection is not started over (the preferred gateway just failed:
        trying it again would bounce between the two whenever they are reached through different interfaces),
        and a binding already made through that path is kept.
        """
        previous = self._attachment
        self._attachment = attachment
        if attachment == previous:
            return
        self._events.append(AttachmentChanged(attachment))
        if same_path(previous, attachment):
            return
        if new_gateway and attachment is not None and self._bound_from(attachment):
            return  # the socket toward the new gateway already leaves by this path
        self._failures = 0
        self._retry_at = None
        if not new_gateway:
            # A new network: the most preferred gateway may be reachable from here.
            self._gateways.restart()
            self._announce_gateway("new network")
        if attachment is None:
            self._teardown(now, "no IPv4")
            self._maybe_connect(now, RegenerationReason.ATTACHED)
            return
        # A new network is a new path: forget what the old one taught about its MTU, search it again.
        self._cancel_probe_wait("the tunnel address changed (new network)", now)
        self._pmtud.stop()
        self._pmtud_needed = True
        self._set_mtu(self._settings.mtu, "attachment", None, now)
        reason = RegenerationReason.ATTACHED if previous is None else RegenerationReason.ATTACHMENT_CHANGED
        self._maybe_connect(now, reason)

    def detach(self, now: float) -> None:
        self.attach(None, now)

    def captive_portal(self, held: bool, now: float) -> None:
        """The OS says this network holds us at a captive portal (``held``), or no longer does.

        Held: nothing is installed or tried (the gateway cannot answer through the portal, and a default route
        into a dead tunnel could hide the portal's own page); the state says the user must sign in.  Let
        through: connect at once, without a backoff left over from before.
        """
        if held == self._portal:
            return
        self._portal = held
        self._failures = 0
        self._retry_at = None
        self._gateways.restart()
        self._announce_gateway("captive portal" if held else "network let through")
        if held:
            self._teardown(now, "captive portal")
        self._maybe_connect(now, RegenerationReason.ATTACHED)

    def socket_opened(self, local: Address, now: float) -> None:
        """The driver opened the socket an ``OpenSocket`` asked for; ``local`` is its address."""
        self._local = local

    def effect_failed(self, effect: Effect, message: str, now: float) -> None:
        """The OS refused an effect; socket and address failures are retried with backoff."""
        if isinstance(effect, OpenSocket):
            self._peer = None
            self._local = None
            self._events.append(ErrorEvent.of(ErrorCode.SOCKET_FAILED, f"{effect.gateway}:{effect.port}: {message}"))
            self._schedule_retry(now, message)
        elif isinstance(effect, SetAddress):
            self._events.append(ErrorEvent.of(ErrorCode.ADDRESS_FAILED, f"address {effect.address}: {message}"))
            if effect.address == self._address:
                self._schedule_retry(now, message)
        elif isinstance(effect, RemoveAddress | SetRoutes | RemoveRoutes | SetMtu):
            self._events.append(ErrorEvent.of(ErrorCode.PLATFORM_ERROR, f"{_describe(effect)}: {message}"))

    def update_settings(self, settings: SessionSettings, now: float) -> None:
        """Apply a new configuration live; a new prefix or losing the current port means a new address."""
        old = self._settings
        if settings == old:
            return
        self._settings = settings
        port_kept = not self._gateways.set_ports(settings.ports)
        # Routes are installed exactly while an address is: change them now only in that case.
        if self._address is not None:
            self._route(self._address)
        if (settings.mtu, settings.pmtud, settings.probe) != (old.mtu, old.pmtud, old.probe):
            # What the search looks for changed: start over (the configured MTU until it ends).
            self._cancel_probe_wait("the configuration changed", now)
            self._pmtud.stop()
            self._pmtud = Pmtud(settings.mtu)
            self._pmtud_needed = True
            self._set_mtu(settings.mtu, "configured", None, now)
            if settings.pmtud and self._confirmed and self._peer is not None:
                self._start_search(now)
        if self._address is None:
            return
        if settings.prefix != old.prefix or not port_kept:
            self._failures = 0
            self._retry_at = None
            self._connect(now, RegenerationReason.CONFIG_CHANGED)
        elif settings.probe != old.probe and settings.probe is not None and not self._confirmed:
            self._start_probe(now)

    def clock_jump(self, now: float) -> None:
        """The wall clock jumped past the keepalive interval (sleep, suspended process): check now.

        The monotonic clock stood still meanwhile, so every timer would otherwise believe the NAT
        mapping and the gateway state are as fresh as before the sleep.
        """
        if self._address is None or (self._peer is None and self._retry_at is None):
            return
        self._suspect = True
        if self._retry_at is not None:
            self._retry_at = now
            self.tick(now)
        elif not self._confirmed:
            if self._settings.probe is not None:
                self._start_probe(now)
        elif not self._ka_outstanding:
            self._send_keepalive(now)

    def _keepalive_wait(self) -> float:
        """How long an outstanding keepalive is waited for: shorter when the binding is suspect."""
        s = self._settings
        return min(s.resume_timeout, s.keepalive_retry) if self._suspect else s.keepalive_retry

    # ------------------------------------------------------------------ PMTU evidence

    def pmtu_evidence(self, evidence: PmtuEvidence, now: float) -> None:
        """Evidence the platform's socket already tied to our own flow (its error queue, EMSGSIZE).

        Data never carries DF, so a fragmentation-needed is about a probe: the one it quotes, else the one
        in flight; the search takes it (RFC 8899 4.6.2: a size to probe next, never the MTU itself).  Without
        path MTU discovery the MTU is lowered to what it says, as draft 2.6 allows.
        """
        if self._peer is None:
            return
        found = Found.EMSGSIZE if evidence.source == "emsgsize" else Found.ICMP
        probe = self._quoted_probe(evidence.quoted)
        if probe == 0:
            return  # quotes a packet of ours that is no probe in flight: stale, or forged
        size = evidence.mtu - UDP_IPV4_OVERHEAD if evidence.mtu > 0 else None
        if self._settings.pmtud or self._pmtud.searching:
            if self._pmtud.too_big(size, found, now, probe=probe):
                self._evidence = MtuEvidence(evidence.source, evidence.mtu, now)
                self._poll_pmtud(now)
            return
        if found is Found.ICMP and evidence.mtu <= 0:
            return
        self._lower_mtu(evidence.mtu, evidence.source, now)

    def _quoted_probe(self, quoted: bytes) -> int | None:
        """The size of the MTU probe an error quotes; ``None`` when the quote is too short to tell, 0 when it
        quotes something else."""
        if len(quoted) < ECHO_OVERHEAD:
            return None
        if (
            quoted[0] >> 4 != 6
            or quoted[6] != _NEXT_HEADER_ICMPV6
            or quoted[8:24] != self._addr_bytes
            or quoted[40] != ICMPV6_ECHO_REQUEST
            or int.from_bytes(quoted[44:46], "big") != self._echo_ident
        ):
            return 0
        mark = self._echo_pending.get(int.from_bytes(quoted[46:48], "big"), _ECHO_REACH)
        return 0 if mark == _ECHO_REACH else mark

    def frag_needed(self, message: FragNeeded, now: float) -> bool:
        """A raw ICMP fragmentation-needed: believed only when the quoted UDP/IPv4 header is our socket's."""
        local, gateway = self._local, self.gateway
        if local is None or gateway is None or self._peer is None:
            return False
        try:
            local_ip = IPv4Address(local[0])
        except ValueError:
            return False
        if not message.matches(local_ip, local[1], gateway[0], gateway[1]):
            return False
        self._lower_mtu(message.next_hop_mtu, "icmp", now)
        return True

    def _lower_mtu(self, path_mtu: int, source: str, now: float) -> None:
        self._evidence = MtuEvidence(source, path_mtu, now)
        # Without a number (a bare EMSGSIZE) only the IPv6 minimum is known to be safe.
        wanted = path_mtu - UDP_IPV4_OVERHEAD if path_mtu > 0 else IPV6_MIN_MTU
        new = max(IPV6_MIN_MTU, wanted)
        if new < self._mtu:
            self._set_mtu(new, source, path_mtu, now)

    def _set_mtu(self, mtu: int, evidence: str, path_mtu: int | None, now: float) -> None:
        if mtu == self._mtu:
            return
        previous, self._mtu = self._mtu, mtu
        self._effects.append(SetMtu(mtu))
        self._events.append(MtuChanged(self._settings.mtu, mtu, previous, evidence, path_mtu))

    # ------------------------------------------------------------------ the data path

    def tun_packets(self, packets: Iterable[bytes], now: float) -> list[bytes]:
        """Packets the OS routed into the tunnel → the datagrams to send to the gateway.

        Merged packets (:class:`~m6t.protocol.values.MergedPacket`) are checked once and counted, sent or
        dropped, as the packets they stand for on the wire; the same holds for :meth:`udp_datagrams`.
        """
        c = self._counters
        if self._peer is None:
            for packet in packets:
                c.drop_out(Drop.NO_PATH, _segments(packet))
            return []
        addr = self._addr_bytes
        out: list[bytes] = []
        size = 0
        extra = 0
        for packet in packets:
            problem = ipv6_problem(packet)
            if problem is not None:
                c.drop_out(problem.value, _segments(packet))
            elif packet[8:24] != addr:
                c.drop_out(Drop.NOT_OUR_SOURCE, _segments(packet))
            elif packet[24] == 0xFF:
                c.drop_out(Drop.MULTICAST, _segments(packet))
            else:
                out.append(packet)
                size += len(packet)
                if packet.__class__ is not bytes and isinstance(packet, MergedPacket):
                    # wire_size, inline: a call per packet would cost more than the sum.
                    extra += packet.segments - 1
                    size += (packet.segments - 1) * packet.overhead
        if out:
            n = len(out) + extra
            c.tx_packets += n
            c.tx_bytes += size
            if size > n * IPV6_MIN_MTU:
                self._large_out = True  # per batch, not per packet: some packet in it was over 1280 bytes
            self._last_tx = now
            if self._first_unanswered_tx is None:
                self._first_unanswered_tx = now
        return out

    def udp_datagrams(self, datagrams: Iterable[tuple[bytes, Address]], now: float) -> list[bytes]:
        """Datagrams from the socket → the IPv6 packets to write to the TUN."""
        c = self._counters
        peer = self._peer
        addr = self._addr_bytes
        watch_echo = self._probe_bytes() if self._echo_pending else None
        out: list[bytes] = []
        size = 0
        extra = 0
        accepted = False
        keepalive_replies = 0
        for data, source in datagrams:
            if source != peer:
                c.drop_in(Drop.FOREIGN_SOURCE, _segments(data))
                continue
            problem = ipv6_problem(data)
            if problem is not None:
                c.drop_in(problem.value, _segments(data))
                continue
            if data[24:40] != addr:
                c.drop_in(Drop.NOT_OUR_ADDRESS, _segments(data))
                continue
            if data[8] == 0xFE and data[9] & 0xC0 == 0x80:
                # A link-local source is legitimate only as the gateway's keepalive reply (draft 2.3):
                # from fe80::1, header only, no next header.
                if len(data) == IPV6_HEADER_LEN and data[6] == NEXT_HEADER_NONE and data[8:24] == KEEPALIVE_PEER:
                    keepalive_replies += 1
                    accepted = True
                else:
                    c.drop_in(Drop.LINK_LOCAL_SOURCE, _segments(data))
                continue
            accepted = True
            if (
                watch_echo is not None
                and data[6] == _NEXT_HEADER_ICMPV6
                and data[8:24] == watch_echo
                and self._echo_reply(data, now)
            ):
                continue
            out.append(data)
            size += len(data)
            if data.__class__ is not bytes and isinstance(data, MergedPacket):
                extra += data.segments - 1
                size += (data.segments - 1) * data.overhead
        if out:
            c.rx_packets += len(out) + extra
            c.rx_bytes += size
            self._data_in_since_check = True
            self._large_out = False
        if accepted:
            self._inbound(now, keepalive_replies)
            if keepalive_replies and self._large_out and self._confirmed:
                self._black_hole(now)
        return out

    def _probe_bytes(self) -> bytes | None:
        probe = self._settings.probe
        return None if probe is None else probe.packed

    def _inbound(self, now: float, keepalive_replies: int) -> None:
        """Something came back for the current address: the gateway holds an active state for it."""
        self._suspect = False
        self._last_rx = now
        self._first_unanswered_tx = None
        if keepalive_replies:
            self._counters.keepalive_replies += keepalive_replies
            rtt = None if self._ka_sent_at is None else now - self._ka_sent_at
            if rtt is not None:
                self._rtt = rtt
            self._ka_sent_at = None
            self._last_ka_reply = now
            self._events.append(KeepaliveEvent(KeepaliveKind.REPLY, rtt, self._missed))
        if self._confirmed and not self._ka_outstanding and self._retry_at is None and self._missed == 0:
            return
        if self._retry_at is not None and self._retry_reason is RegenerationReason.RETRY_AFTER_ERROR:
            return  # the gateway answers, but the OS refused our setup: only the retry can fix that
        first = not self._confirmed
        self._confirmed = True
        self._ka_outstanding = False
        self._missed = 0
        self._retry_at = None
        self._failures = 0
        self._first_unanswered_tx = None
        self._probe_deadline = None
        self._gateways.confirmed()
        self._set_state(State.CONNECTED, "confirmed", now)
        if first and self._settings.pmtud and self._pmtud_needed and not self._pmtud.searching:
            self._start_search(now)

    def _echo_reply(self, data: bytes, now: float) -> bool:
        """Our own probe's echo reply (consumed), or someone else's (delivered)."""
        try:
            reply = parse_echo_reply(data)
        except PacketError:
            return False
        if reply.ident != self._echo_ident:
            return False
        mark = self._echo_pending.pop(reply.seq, None)
        if mark is None:
            return False
        self._counters.probe_replies += 1
        if mark != _ECHO_REACH and len(data) == mark:
            self._pmtud.acked(mark, now)
            self._poll_pmtud(now)
        return True

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> None:
        """Run whatever timer is due: retries, the probe, keepalives, periodic counters."""
        s = self._settings
        if self._retry_at is not None:
            if now >= self._retry_at:
                if self._can_connect():
                    self._connect(now, self._retry_reason)
                else:
                    self._retry_at = None
        elif self._peer is not None and self._address is not None:
            self._tick_binding(now, s)
        self._poll_pmtud(now)
        if now >= self._last_counters_at + s.counters_interval:
            self._last_counters_at = now
            fingerprint = self._counters.fingerprint()
            if fingerprint != self._last_counters:
                self._last_counters = fingerprint
                self._events.append(CountersEvent(self._counters.to_dict()))

    def _tick_binding(self, now: float, s: SessionSettings) -> None:
        if self._probe_deadline is not None and now >= self._probe_deadline:
            if self._probe_sent < s.probe_tries:
                self._send_probe(now)
            else:
                self._probe_deadline = None
                port = self._gateways.port
                self._fail(
                    now,
                    RegenerationReason.PROBE_UNANSWERED,
                    ErrorCode.PROBE_UNANSWERED,
                    f"{s.probe} did not answer {s.probe_tries} echoes via port {port}",
                )
                return
        if (
            not self._confirmed
            and s.probe is None
            and self._first_unanswered_tx is not None
            and now >= self._first_unanswered_tx + s.confirm_timeout
        ):
            port = self._gateways.port
            self._fail(
                now,
                RegenerationReason.NO_REPLY,
                ErrorCode.NO_REPLY,
                f"nothing came back in {s.confirm_timeout:g} s via port {port}",
            )
            return
        if self._ka_outstanding:
            if self._ka_sent_at is not None and now >= self._ka_sent_at + self._keepalive_wait():
                self._missed += 1
                self._events.append(KeepaliveEvent(KeepaliveKind.MISSED, None, self._missed))
                if self._missed >= s.max_missed or self._suspect:
                    self._fail(
                        now,
                        RegenerationReason.KEEPALIVE_UNANSWERED,
                        ErrorCode.BINDING_LOST,
                        f"{self._missed} keepalives unanswered",
                    )
                    return
                plural = "s" if self._missed > 1 else ""
                self._set_state(State.DEGRADED, f"{self._missed} keepalive{plural} unanswered", now)
                self._send_keepalive(now)
        elif now >= self._keepalive_due():
            self._send_keepalive(now)
        else:
            check = self._reply_check_due()
            if check is not None and now >= check:
                self._send_keepalive(now)

    def _reply_check_due(self) -> float | None:
        """When a flow that ran both ways has gone one-way long enough to ask the gateway (None: not armed)."""
        if not self._confirmed or self._ka_outstanding or not self._data_in_since_check:
            return None
        if self._first_unanswered_tx is None:
            return None
        return self._first_unanswered_tx + self._settings.reply_timeout

    def _keepalive_due(self) -> float:
        # Silence in either direction counts (draft 2.3); a keepalive already sent this interval counts
        # as the exchange, so an unanswerable one is not repeated on every tick.
        quiet_since = min(self._last_tx, self._last_rx)
        if self._last_ka_sent is not None and self._last_ka_sent > quiet_since:
            quiet_since = self._last_ka_sent
        return quiet_since + self._settings.keepalive_interval

    def _send_keepalive(self, now: float) -> None:
        self._effects.append(Send(build_keepalive(self._addr_bytes)))
        self._counters.keepalives_sent += 1
        self._last_ka_sent = now
        self._last_tx = now
        self._ka_sent_at = now
        self._data_in_since_check = False
        # Before confirmation the gateway has no active state to answer from: nothing to count.
        self._ka_outstanding = self._confirmed
        self._events.append(KeepaliveEvent(KeepaliveKind.SENT, None, self._missed))

    def _start_probe(self, now: float) -> None:
        self._probe_sent = 0
        self._send_probe(now)

    def _send_probe(self, now: float) -> None:
        probe = self._settings.probe
        if probe is None:
            return
        seq = self._next_echo(_ECHO_REACH)
        packet = build_echo_request(self._addr_bytes, probe.packed, self._echo_ident, seq, data=_PROBE_DATA)
        self._effects.append(Send(packet))
        self._counters.probes_sent += 1
        self._probe_sent += 1
        self._probe_deadline = now + self._settings.probe_timeout
        self._last_tx = now

    def _next_echo(self, mark: int) -> int:
        self._echo_seq = (self._echo_seq + 1) & 0xFFFF
        if len(self._echo_pending) >= _ECHOES_KEPT:
            del self._echo_pending[next(iter(self._echo_pending))]
        self._echo_pending[self._echo_seq] = mark
        return self._echo_seq

    # ------------------------------------------------------------------ path MTU discovery

    def start_mtu_probe(
        self, now: float, *, per_try: float = 1.0, tries: int = 3, overall: float = 30.0
    ) -> tuple[int, MtuProbeResult | None]:
        """Run a path MTU search now (or join the one under way); returns its id, and the result if it cannot run.

        The result otherwise arrives as an :class:`MtuProbeDone` event with the same id.  It is the search
        path MTU discovery runs by itself (:mod:`m6t.client.pmtud`), applied as the tunnel MTU when
        discovery is on (``pmtud``); with it off, only measured.  ``per_try`` and ``tries`` are its PROBE_TIMER
        and MAX_PROBES, ``overall`` bounds it.
        """
        if self._probe_waiting and self._pmtud.searching:
            return self._mtu_probe_id, None
        self._mtu_probe_id += 1
        s = self._settings
        reason = ""
        if s.probe is None:
            reason = "no probe address is configured ([tunnel] probe)"
        elif self._address is None or self._peer is None or not self._confirmed:
            reason = "not connected"
        if reason:
            return self._mtu_probe_id, MtuProbeResult(False, None, s.mtu, self._mtu, (), reason, 0.0)
        self._probe_waiting = True
        m = self._pmtud
        if not m.searching:
            if s.pmtud:
                m.probe_timer, m.max_probes = max(per_try, 0.001), max(1, tries)
                m.start(now, overall=overall)
            else:
                # Measured only: a machine of its own, so that nothing is applied.
                self._pmtud = m = Pmtud(s.mtu, probe_timer=max(per_try, 0.001), max_probes=max(1, tries))
                m.start(now, overall=overall)
        self._poll_pmtud(now)
        return self._mtu_probe_id, None

    def _start_search(self, now: float) -> None:
        self._pmtud.start(now)
        self._poll_pmtud(now)

    def _poll_pmtud(self, now: float) -> None:
        """Send the probe the search wants now, and act on what it found."""
        m = self._pmtud
        probe = self._settings.probe
        if probe is not None and self._may_probe():
            size = m.poll(now)
            if size is not None:
                seq = self._next_echo(size)
                data = bytes(size - ECHO_OVERHEAD)
                packet = build_echo_request(self._addr_bytes, probe.packed, self._echo_ident, seq, data=data)
                self._effects.append(Send(packet, dont_fragment=True))
                self._counters.probes_sent += 1
                self._last_tx = now
        self._settle_search(now)

    def _may_probe(self) -> bool:
        """Probes go through a confirmed binding only; meanwhile the search's timers are not armed either."""
        return self._confirmed and self._peer is not None and self._retry_at is None

    def _settle_search(self, now: float) -> None:
        m = self._pmtud
        result = m.result
        apply = self._settings.pmtud
        if result is not None and result is not self._pmtud_seen:
            self._pmtud_seen = result
            self._pmtud_needed = False
            m.probe_timer, m.max_probes = PROBE_TIMER_S, MAX_PROBES  # an on-demand search may have set others
            if self._probe_waiting:
                self._probe_waiting = False
                self._events.append(MtuProbeDone(self._mtu_probe_id, self._probe_result(result)))
            if apply:
                # The floor (a path under 1308 bytes) keeps 1280: larger packets cross as DF-clear fragments.
                self._set_mtu(max(IPV6_MIN_MTU, min(result.mtu, self._settings.mtu)), result.found.value, None, now)
        elif apply and m.searching and self._mtu >= m.known_too_big:
            # The MTU in use is known not to pass: down to what does until the search ends.
            safe = max(IPV6_MIN_MTU, m.low if m.low is not None else IPV6_MIN_MTU)
            self._set_mtu(safe, m.high_by.value, None, now)

    def _probe_result(self, result: PmtudResult) -> MtuProbeResult:
        ok = result.found is not Found.FLOOR
        reason = ""
        if not ok:
            reason = (
                "no echo answered"
                if result.evidence is Found.PROBE
                else "the path does not carry 1280-byte IPv6 packets unfragmented (under 1308 IPv4 bytes)"
            )
        return MtuProbeResult(
            ok=ok,
            largest=result.mtu if ok else None,
            configured=self._settings.mtu,
            effective=self._mtu,
            tried=result.tried,
            reason=reason,
            duration=result.duration,
            found=result.found.value,
            probes=result.probes,
        )

    def _cancel_probe_wait(self, reason: str, now: float) -> None:
        if not self._probe_waiting:
            return
        self._probe_waiting = False
        s = self._settings
        tried = self._pmtud.tried if self._pmtud.searching else ()
        duration = now - self._pmtud.started
        self._events.append(
            MtuProbeDone(self._mtu_probe_id, MtuProbeResult(False, None, s.mtu, self._mtu, tried, reason, duration))
        )

    def _black_hole(self, now: float) -> None:
        """Large packets went unanswered while a keepalive was answered: confirm the MTU (RFC 8899 4.3)."""
        self._large_out = False
        if self._settings.pmtud:
            self._pmtud.suspect_black_hole(now)
            self._poll_pmtud(now)

    # ------------------------------------------------------------------ binding lifecycle

    def _can_connect(self) -> bool:
        return (
            self._enabled and self._attachment is not None and self._gateways.current is not None and not self._portal
        )

    def _maybe_connect(self, now: float, reason: RegenerationReason) -> None:
        if not self._enabled:
            return  # down() already said so; the snapshot is only remembered
        if self._can_connect():
            self._connect(now, reason)
        elif self._gateways.current is None:
            self._set_state(State.WAITING_FOR_NETWORK, "resolving the gateway address", now)
        elif self._attachment is None:
            self._set_state(State.WAITING_FOR_NETWORK, "no IPv4 route to the gateway", now)
        else:
            self._set_state(State.SIGN_IN_REQUIRED, "this network needs you to sign in (captive portal)", now)

    def _connect(self, now: float, reason: RegenerationReason) -> None:
        """A new suffix, a new socket: a new state at the gateway (draft 3)."""
        current = self._gateways.current
        assert current is not None
        gateway = current.address
        s = self._settings
        self._retry_at = None
        old = self._address
        prefix = s.prefix
        suffix = self._allocator.allocate(prefix)
        new = tunnel_address(prefix, suffix)
        if old is not None:
            self._effects.append(RemoveAddress(old))
        self._release_suffix()
        self._suffix = (prefix, suffix)
        self._effects.append(SetAddress(new))
        self._route(new)
        port = self._gateways.port
        self._effects.append(OpenSocket(gateway, port))
        self._peer = (str(gateway), port)
        self._local = None
        self._address = new
        self._addr_bytes = new.packed
        self._reset_binding(now)
        self._regenerations.append(Regeneration(now, reason.value, old, new))
        name = current.host if current.named else None
        self._events.append(AddressChanged(old, new, reason.value, (gateway, port), name))
        probing = f", probing {s.probe}" if s.probe is not None else ""
        where = f"gateway {current}, port {port}" if len(self._gateways.candidates) > 1 else f"port {port}"
        self._set_state(State.CONNECTING, f"attached, not yet confirmed ({where}{probing})", now)
        if s.probe is not None:
            self._start_probe(now)

    def _bound_from(self, attachment: Attachment) -> bool:
        return self._local is not None and self._local[0] == str(attachment.local_ipv4)

    def _route(self, address: IPv6Address) -> None:
        """Install the routes the settings ask for with ``address``, those no longer wanted removed first."""
        s = self._settings
        wanted = s.routes
        if s.own_source_route is not None:
            wanted += (Route(IPv6Network("::/0"), s.own_source_route, IPv6Network(f"{address}/128")),)
        if wanted == self._routes:
            return
        stale = tuple(r for r in self._routes if r not in wanted)
        if stale:
            self._effects.append(RemoveRoutes(stale))
        fresh = tuple(r for r in wanted if r not in self._routes)
        if fresh:
            self._effects.append(SetRoutes(fresh))
        self._routes = wanted

    def _reset_binding(self, now: float) -> None:
        self._suspect = False
        self._confirmed = False
        self._last_tx = now
        self._last_rx = now
        self._first_unanswered_tx = None
        self._data_in_since_check = False
        self._ka_sent_at = None
        self._ka_outstanding = False
        self._last_ka_sent = None
        self._missed = 0
        self._probe_deadline = None
        self._probe_sent = 0
        self._echo_pending.clear()
        self._large_out = False
        if self._pmtud.searching:
            self._cancel_probe_wait("the tunnel address changed", now)
        self._pmtud.pause(now)

    def _release_suffix(self) -> None:
        if self._suffix is not None:
            self._allocator.release(*self._suffix)
            self._suffix = None

    def _teardown(self, now: float, reason: str) -> None:
        """No m6t address, route or socket left behind."""
        old = self._address
        if old is not None:
            self._effects.append(RemoveAddress(old))
        if self._routes:
            self._effects.append(RemoveRoutes(self._routes))
            self._routes = ()
        if self._peer is not None:
            self._effects.append(CloseSocket())
        self._peer = None
        self._local = None
        self._address = None
        self._addr_bytes = b""
        self._release_suffix()
        self._retry_at = None
        self._reset_binding(now)
        if old is not None:
            self._regenerations.append(Regeneration(now, reason, old, None))
            self._events.append(AddressChanged(old, None, reason, None))

    def _backoff(self) -> float:
        """No wait for a first failure; then initial, 2x, 4x ... up to the maximum."""
        s = self._settings
        if self._failures <= 1:
            return 0.0
        return float(min(s.backoff_initial * 2 ** (self._failures - 2), s.backoff_max))

    def _fail(self, now: float, reason: RegenerationReason, code: ErrorCode, detail: str) -> None:
        """The binding does not work: next port (or next gateway), new suffix, after a backoff if this keeps
        happening; a gateway not tried yet in this round is tried at once."""
        self._failures += 1
        left = self._gateways.current
        move = self._gateways.failed(was_confirmed=self._confirmed)
        self._events.append(ErrorEvent.of(code, detail))
        if move is not Move.NEXT_PORT and left is not None:
            self._events.append(GatewayUnreachable(left, self._gateways.current, move is Move.ALL_DEAD))
            if len(self._gateways.candidates) > 1:  # with one, the failure's own error says it all
                self._events.append(ErrorEvent.of(ErrorCode.GATEWAY_UNREACHABLE, f"{left}: no answer on any port"))
        self._announce_gateway(f"{left} did not answer on any port")
        delay = 0.0 if move is Move.NEXT_GATEWAY else self._backoff()
        if delay <= 0:
            self._connect(now, reason)
            return
        self._retry_at = now + delay
        self._retry_reason = reason
        self._ka_outstanding = False
        self._probe_deadline = None
        self._first_unanswered_tx = None
        port = self._gateways.port
        via = f"{self._gateways.current} port {port}" if len(self._gateways.candidates) > 1 else f"port {port}"
        self._set_state(State.DEGRADED, f"{detail}; retrying in {delay:g} s via {via}", now)

    def _schedule_retry(self, now: float, message: str) -> None:
        self._failures += 1
        delay = max(self._backoff(), self._settings.backoff_initial)
        self._retry_at = now + delay
        self._retry_reason = RegenerationReason.RETRY_AFTER_ERROR
        self._ka_outstanding = False
        self._probe_deadline = None
        self._set_state(State.ERROR, f"{message}; retrying in {delay:g} s", now)

    def _announce_gateway(self, reason: str) -> None:
        """Say so when the gateway in use is another one than the last one named."""
        current = self._gateways.current
        if current == self._announced:
            return
        previous, self._announced = self._announced, current
        self._events.append(GatewayChanged(current, previous, reason))

    def _set_state(self, state: State, detail: str, now: float) -> None:
        if state == self._state and detail == self._detail:
            return
        previous = self._state
        if state != previous:
            self._since = now
        self._state = state
        self._detail = detail
        self._events.append(StateChanged(state, previous, detail))


def _segments(packet: bytes) -> int:
    """The packets on the wire ``packet`` stands for: a drop counts them all."""
    return wire_size(packet)[0]


def _describe(effect: OsEffect) -> str:
    if isinstance(effect, SetAddress | RemoveAddress):
        return f"{type(effect).__name__} {effect.address}"
    if isinstance(effect, SetRoutes | RemoveRoutes):
        return f"{type(effect).__name__} {', '.join(str(r.network) for r in effect.routes)}"
    return f"SetMtu {effect.mtu}"


def settings_routes(default: bool, metric: int, prefixes: Sequence[IPv6Network]) -> tuple[Route, ...]:
    """The routes a configuration asks for: ``::/0`` (last resort, draft 2.7) and/or given prefixes."""
    routes = [Route(IPv6Network("::/0"), metric)] if default else []
    routes.extend(Route(p, metric) for p in prefixes if not (default and p.prefixlen == 0))
    return tuple(routes)
