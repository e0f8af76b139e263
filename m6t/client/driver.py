"""The client driver: runs the sans-I/O :class:`~m6t.client.session.Session` on one asyncio loop.

It owns the I/O the session asks for, through the platform :class:`~m6t.platform.base.Backend` only:

* the data path: TUN batches → session → ``UdpChannel.send(batch)`` (one call per batch, so the backend
  can use UDP GSO), UDP batches → session → ``TunDevice.write``; a backend with offloads may pass
  merged packets (:class:`~m6t.protocol.values.MergedPacket`) through both: checked once, counted as the
  packets they stand for, split by the backend;
* the OS changes (address, routes, MTU): coroutines, run one at a time and in order on a queue, so a
  removal never overtakes the install it undoes;
* the gateways (addresses or names, in order of preference): names resolved off-loop (``getaddrinfo``, IPv4,
  every address in the resolver's order) when connecting, at every attachment change and whenever a gateway
  fails, retried with backoff until one is known, never fatal; the session picks among them
  (:mod:`m6t.client.gateways`) and the path is watched toward the one in use;
* the connectivity tracker (:mod:`m6t.client.tracker`): the backend's monitor announces OS changes to it,
  and the driver makes the look-ups and probes it asks for and hands its decisions to the session;
* the OS's hints, where the backend has them: a resume from sleep (logind) makes the tracker look the
  path up and the session check its binding at once; a captive portal (NetworkManager) holds the session
  in ``sign_in_required`` instead of failing attempt after attempt (:mod:`m6t.client.os_hints`; with several
  tunnels their manager subscribes once and tells each, ``os_hints=False`` here);
* one tunnel among several (``placement``, :mod:`m6t.client.tunnels`): its own interface, its socket and
  path look-ups bound to its uplink, its routes one metric behind the previous tunnel's;
* the clock: one timer at the earliest real deadline of the session and the tracker (keepalive, retries,
  probes, expiries, counters that changed), never a periodic tick: an idle tunnel wakes the helper once
  per keepalive interval, a disconnected one never.  Inputs that bring a deadline closer wake the timer
  (a flush does, and the data path through ``Session.has_output``).

The helper and the control API drive it through ``start/up/down/apply_config/status/probe_mtu/close``
and watch it with ``add_listener``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from m6t.client.access_keys import Sealing
from m6t.client.config import ClientConfig
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
from m6t.client.gateways import Candidate
from m6t.client.listeners import Listener, Listeners
from m6t.client.os_hints import OsHints
from m6t.client.session import Session, SessionSettings, same_path, settings_routes
from m6t.client.status import Status
from m6t.client.tracker import (
    Attach,
    CheckBinding,
    ConnectivityTracker,
    Detach,
    LookUp,
    Probe,
    TrackerSettings,
)
from m6t.client.vocabulary import ErrorCode
from m6t.platform.base import (
    Backend,
    ConnectivityMonitor,
    NetworkReachability,
    PlatformError,
    TunDevice,
    UdpChannel,
)
from m6t.protocol.addressing import SuffixAllocator
from m6t.protocol.values import PmtuEvidence

log = logging.getLogger("m6t.client")

Resolver = Callable[[str], Awaitable[Sequence[IPv4Address]]]

_MIN_SLEEP_S = 0.005
RESOLVE_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0)
"""Waits between resolutions that found no gateway at all (the last one repeats); also between failed
attempts to watch the path toward the gateway."""
_NAME_GONE = frozenset(
    code for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None)) if code is not None
)
"""getaddrinfo's "no such name / no address": an answer, unlike a resolver that cannot be reached."""


def session_settings(
    config: ClientConfig, placement: Placement | None = None, *, source_routes: bool = False
) -> SessionSettings:
    """The session's view of a configuration (for the tunnel at ``placement``, one of several, with a
    source-specific route of its own where the OS needs one: ``source_routes``)."""
    tunnel = config.tunnel
    # Each further tunnel's routes one metric behind: the primary's win for traffic not bound to an interface.
    metric = config.routes.metric + (0 if placement is None else placement.slot)
    return SessionSettings(
        prefix=tunnel.prefix,
        ports=config.gateway.ports,
        gateway_host=config.gateway.address_text,
        mtu=tunnel.mtu,
        keepalive_interval=tunnel.keepalive_interval,
        probe=tunnel.probe,
        pmtud=tunnel.pmtud_enabled,
        routes=settings_routes(config.routes.default, metric, config.routes.prefixes),
        own_source_route=metric if placement is not None and source_routes else None,
    )


def tracker_settings(config: ClientConfig, backstop_s: float | None = None) -> TrackerSettings:
    """The tracker's view of a configuration: a clock jump past the keepalive interval needs a check.

    The backstop probe and the wall-clock samples ride on the keepalive's wakeups (``backstop_s``, by
    default the keepalive interval, bounds their wait): a lost rtnetlink/routing-socket notification is
    rare (an overrun is announced itself), and the OS announces a resume where it can, the clocks being
    the fallback; so neither needs a wakeup of its own.
    """
    interval = config.tunnel.keepalive_interval if backstop_s is None else backstop_s
    return TrackerSettings(
        probe_interval=interval, clock_interval=interval, jump_threshold=config.tunnel.keepalive_interval
    )


async def resolve_ipv4(host: str) -> tuple[IPv4Address, ...]:
    """A gateway's IPv4 addresses: a literal itself, a name every A record, in the resolver's order
    (``getaddrinfo`` in the default executor, so the loop never blocks)."""
    try:
        return (IPv4Address(host),)
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_DGRAM)
    found = dict.fromkeys(IPv4Address(info[4][0]) for info in infos)
    if not found:
        raise OSError(f"{host} has no IPv4 address")
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one of several tunnels sits (``tunnel.uplinks = "all"``, :mod:`m6t.client.uplinks`)."""

    interface: str
    uplink: str
    """The IPv4 interface its socket is bound to and its path is looked up through."""
    slot: int
    """Its place among the tunnels: its routes' metric is the configured one plus this."""


@dataclass(frozen=True, slots=True)
class DriverStatus:
    """What :meth:`ClientDriver.status` reports: the session's snapshot and the driver's own state."""

    session: Status
    wall_offset: float
    """Added to the session's monotonic times, gives Unix times."""
    interface: str | None
    """The tunnel interface's name, while it exists."""
    wanted_up: bool
    backend: str
    """The platform backend's name."""
    problems: tuple[PlatformError, ...]
    """The backend's start-up check findings."""
    uplink: str | None = None
    """The IPv4 interface the tunnel is bound to (``tunnel.uplinks = "all"``); ``None``: wherever the OS routes."""


class ClientDriver:
    def __init__(
        self,
        config: ClientConfig,
        backend: Backend,
        *,
        resolver: Resolver = resolve_ipv4,
        backstop_s: float | None = None,
        placement: Placement | None = None,
        allocator: SuffixAllocator | None = None,
        owns_backend: bool = True,
        os_hints: bool = True,
    ) -> None:
        self._config = config
        self._backend = backend
        self._resolver = resolver
        self._backstop_s = backstop_s
        self._placement = placement
        self._uplink = None if placement is None else placement.uplink
        self._owns_backend = owns_backend
        self._session = Session(self._settings(config), allocator=allocator)
        self._tracker = ConnectivityTracker(tracker_settings(config, backstop_s))
        self._listeners = Listeners(self._log_event)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tun: TunDevice | None = None
        self._ifname = config.tunnel.interface if placement is None else placement.interface
        self._channel: UdpChannel | None = None
        self._monitor: ConnectivityMonitor | None = None
        self._lookup: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        """Set when an input moved the tracker's deadlines: the timer sleeps again toward the earliest."""
        self._os_queue: asyncio.Queue[OsEffect] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._hints_task: asyncio.Task[None] | None = None
        self._hints = OsHints(backend, self.resumed, self.reachability) if os_hints else None
        self._resolving: asyncio.Task[None] | None = None
        self._resolve_again = False
        self._answers: dict[str, tuple[IPv4Address, ...]] = {}
        """The last addresses each configured name resolved to: kept while the resolver cannot be asked."""
        self._unresolvable: set[str] = set()
        """Names already reported as not resolving (once per up())."""
        self._path_task: asyncio.Task[None] | None = None
        self._watched: IPv4Address | None = None
        """The gateway the path is watched toward (the one in use)."""
        self._mtu_waiters: dict[int, asyncio.Future[MtuProbeResult]] = {}
        self._problems: list[PlatformError] = []
        self._started = False
        self._wanted_up = False
        self._lock = asyncio.Lock()
        self._sealing: Sealing | None = None
        """Enrolled access: seals what is sent for an address the gateway has not confirmed yet."""

    def _settings(self, config: ClientConfig) -> SessionSettings:
        return session_settings(config, self._placement, source_routes=self._backend.source_routes)

    # ------------------------------------------------------------------ public API

    @property
    def session(self) -> Session:
        return self._session

    @property
    def config(self) -> ClientConfig:
        return self._config

    @property
    def interface(self) -> str:
        return self._ifname

    @property
    def is_up(self) -> bool:
        return self._wanted_up

    def set_access_key(self, key: bytes | None) -> None:
        """The key for an enrolled gateway (docs/enrolled-access.md), or None for an open one.

        Takes effect with the next datagram: an unconfirmed address's retries go out sealed from then on."""
        self._sealing = Sealing(key) if key is not None else None
        if self._sealing is not None:
            log.debug("enrolled access: sealing with key %s", self._sealing.fingerprint)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every event from now on; returns the function that unsubscribes it."""
        return self._listeners.add(listener)

    async def start(self) -> None:
        """Create the tunnel interface (down: no address, no route) and start the timers."""
        async with self._lock:
            if self._started:
                return
            self._loop = asyncio.get_running_loop()
            self._problems = self._backend.check()
            for problem in self._problems:
                log.warning("start-up check: %s%s", problem, f" (hint: {problem.hint})" if problem.hint else "")
                self._dispatch(ErrorEvent.of(ErrorCode.PLATFORM_ERROR, _describe_error(problem)))
            await self._open_tun()
            self._worker = self._loop.create_task(self._os_worker(), name="m6t-os-changes")
            self._ticker = self._loop.create_task(self._tick_loop(), name="m6t-tick")
            if self._hints is not None:
                self._hints_task = self._loop.create_task(self._hints.start(), name="m6t-os-hints")
            self._started = True

    async def up(self) -> None:
        """Connect (idempotent): resolve the gateway, watch connectivity, attach when there is IPv4."""
        if not self._started:
            await self.start()
        async with self._lock:
            self._up()

    async def down(self) -> None:
        """Disconnect (idempotent): address, routes and socket removed; the interface stays."""
        async with self._lock:
            await self._down()

    async def apply_config(self, new: ClientConfig) -> None:
        """Apply a configuration without restarting: timers and MTU live, a new prefix or gateway
        reattaches, a new interface name recreates the interface."""
        async with self._lock:
            old = self._config
            self._config = new
            self._tracker.settings = tracker_settings(new, self._backstop_s)
            if self._placement is not None:
                pass  # its manager names it
            elif not self._started:
                self._ifname = new.tunnel.interface
            elif new.tunnel.interface != old.tunnel.interface:
                was_up = self._wanted_up
                await self._down()
                await self._close_tun()
                self._session.update_settings(self._settings(new), time.monotonic())
                self._session.pop_effects()  # nothing is installed: the fresh interface gets the MTU below
                self._dispatch_events()
                self._ifname = new.tunnel.interface
                await self._open_tun()
                if was_up:
                    self._up()
                return
            self._session.update_settings(self._settings(new), time.monotonic())
            self._flush()
            if new.gateway.addresses != old.gateway.addresses:
                # Gateways no longer configured are forgotten now (the one in use too: a new binding); those
                # still configured stay until their names are resolved again.
                kept = set(new.gateway.addresses)
                self._answers = {host: found for host, found in self._answers.items() if host in kept}
                still = [c for c in self._session.gateway_candidates if c.host in kept]
                self._session.set_gateways(still, time.monotonic())
                self._flush()
                if self._wanted_up:
                    await self._stop_gateway_task()
                    self._start_gateway_task()
        await self._os_queue.join()

    def resumed(self) -> None:
        """The OS announced a resume from sleep (logind through the backend's power events, Windows' SCM
        through the service host): check the binding now."""
        self._tracker.resumed(time.monotonic())
        self._run_tracker()

    def status(self) -> DriverStatus:
        """The session's status plus the driver's own: interface, wanted, backend, problems."""
        mono = time.monotonic()
        return DriverStatus(
            session=self._session.status(mono),
            wall_offset=time.time() - mono,
            interface=self._ifname if self._tun is not None else None,
            wanted_up=self._wanted_up,
            backend=self._backend.name,
            problems=tuple(self._problems),
            uplink=self._uplink,
        )

    async def probe_mtu(self, *, per_try: float = 1.0, tries: int = 3, timeout: float = 30.0) -> MtuProbeResult:
        """A path MTU search now (RFC 8899 probes between 1280 and the configured MTU); the largest echoed.

        The same search path MTU discovery runs by itself: with ``tunnel.pmtud`` on, its result is applied.
        """
        loop = asyncio.get_running_loop()
        probe_id, immediate = self._session.start_mtu_probe(
            time.monotonic(), per_try=per_try, tries=tries, overall=timeout
        )
        if immediate is not None:
            return immediate
        future = self._mtu_waiters.get(probe_id)
        if future is None:
            future = loop.create_future()
            self._mtu_waiters[probe_id] = future
        self._flush()
        # The session's own overall timeout finishes the search; the margin only guards against a bug.
        return await asyncio.wait_for(asyncio.shield(future), timeout + 5.0)

    async def close(self) -> None:
        """Remove everything installed (address, routes, socket, interface) and stop."""
        async with self._lock:
            await self._down()
            for task in (self._ticker, self._worker, self._hints_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self._ticker = self._worker = self._hints_task = None
            if self._hints is not None:
                await self._hints.stop()
            await self._close_tun()
            for future in self._mtu_waiters.values():
                if not future.done():
                    future.cancel()
            self._mtu_waiters.clear()
            self._started = False
            if self._owns_backend:
                await self._backend.close()

    # ------------------------------------------------------------------ lifecycle helpers

    async def _open_tun(self) -> None:
        assert self._loop is not None
        try:
            tun = self._backend.open_tun(self._ifname)
        except PlatformError as exc:
            self._dispatch(ErrorEvent.of(ErrorCode.TUN_FAILED, _describe_error(exc)))
            raise
        self._tun = tun
        self._ifname = tun.name
        try:
            await self._backend.set_mtu(tun.name, self._session.mtu)
            await self._backend.set_link_up(tun.name)
        except PlatformError as exc:
            self._dispatch(ErrorEvent.of(ErrorCode.TUN_FAILED, _describe_error(exc)))
            tun.close()
            self._tun = None
            raise
        tun.start_reading(self._loop, self._on_tun)
        log.info("tunnel interface %s created (MTU %d)", tun.name, self._session.mtu)

    async def _close_tun(self) -> None:
        tun, self._tun = self._tun, None
        if tun is not None:
            tun.close()
            log.info("tunnel interface %s removed", tun.name)

    def _up(self) -> None:
        if self._wanted_up:
            return
        self._wanted_up = True
        # The clocks are sampled while there is a binding to protect (a down tunnel wakes for nothing).
        self._tracker.wall_clock(time.monotonic(), time.time())
        self._session.up(time.monotonic())
        self._flush()
        self._start_gateway_task()

    async def _down(self) -> None:
        if not self._wanted_up:
            return
        self._wanted_up = False
        await self._stop_gateway_task()
        now = time.monotonic()
        self._session.down(now)
        # Forget the snapshot: the next up() starts from what the monitor reports then.
        self._session.attach(None, now)
        self._tracker.stop_clock()
        self._flush()
        await self._os_queue.join()

    def _start_gateway_task(self) -> None:
        self._unresolvable.clear()
        self._resolve_gateways()
        self._follow_gateway()

    async def _stop_gateway_task(self) -> None:
        task, self._resolving = self._resolving, None
        self._resolve_again = False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        path, self._path_task = self._path_task, None
        self._watched = None
        if path is not None:
            path.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await path
        await self._unwatch_path()

    # ------------------------------------------------------------------ the gateways

    def _resolve_gateways(self) -> None:
        """Resolve the configured gateways now (or once more after the resolution under way)."""
        if not self._wanted_up or self._loop is None:
            return
        if self._resolving is not None and not self._resolving.done():
            self._resolve_again = True
            return
        self._resolving = self._loop.create_task(self._resolve_loop(), name="m6t-gateway-names")

    async def _resolve_loop(self) -> None:
        """Every configured entry resolved (concurrently) into the session's list, in order of preference;
        while none gives an address, again with backoff, never fatal."""
        for attempt in itertools.count():
            self._resolve_again = False
            hosts = self._config.gateway.addresses
            answers = await asyncio.gather(*(self._resolve_one(host) for host in hosts))
            candidates = [
                Candidate(address, host) for host, found in zip(hosts, answers, strict=True) for address in found
            ]
            if candidates:
                self._session.set_gateways(candidates, time.monotonic())
                self._flush()
                if not self._resolve_again:
                    return
                continue
            if self._resolve_again:
                continue
            await asyncio.sleep(RESOLVE_BACKOFF_S[min(attempt, len(RESOLVE_BACKOFF_S) - 1)])

    async def _resolve_one(self, host: str) -> tuple[IPv4Address, ...]:
        with contextlib.suppress(ValueError):
            return (IPv4Address(host),)
        try:
            found = tuple(await self._resolver(host))
            if not found:
                raise OSError(f"{host} has no IPv4 address")
        except (OSError, UnicodeError, ValueError) as exc:
            if isinstance(exc, socket.gaierror) and exc.errno in _NAME_GONE:
                self._answers.pop(host, None)  # the resolver says the name is gone: believed
            if host not in self._unresolvable:
                self._unresolvable.add(host)
                kept = self._answers.get(host)
                still = f"; still using {', '.join(map(str, kept))}" if kept else "; retrying"
                log.warning("cannot resolve the gateway %s (%s)%s", host, exc, still)
                self._dispatch(ErrorEvent.of(ErrorCode.GATEWAY_UNRESOLVABLE, f"{host}: {exc}"))
            return self._answers.get(host, ())
        self._unresolvable.discard(host)
        if self._answers.get(host) != found:
            log.info("gateway %s resolved to %s", host, ", ".join(map(str, found)))
        self._answers[host] = found
        return found

    def _follow_gateway(self) -> None:
        """Watch the path toward the gateway in use: a new gateway gets a new watch."""
        if not self._wanted_up or self._loop is None:
            return
        current = self._session.gateway_candidate
        address = None if current is None else current.address
        if address == self._watched and self._path_task is not None:
            return
        self._watched = address
        previous = self._path_task
        self._path_task = self._loop.create_task(self._watch_path(address, previous), name="m6t-gateway-path")

    async def _watch_path(self, address: IPv4Address | None, previous: asyncio.Task[None] | None) -> None:
        """Watch IPv4 connectivity toward ``address``; retried with backoff, never fatal."""
        if previous is not None:
            previous.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await previous
        await self._unwatch_path()
        if address is None:
            return
        for attempt in itertools.count():
            monitor = self._backend.connectivity_monitor(address, self._ifname, uplink=self._uplink)
            self._monitor = monitor
            try:
                # Subscribed before the first look-up, so that a change racing with it is not lost.
                await monitor.start(self._on_path_change)
                self._tracker.watch(time.monotonic())
                first = await monitor.lookup()
            except Exception as exc:
                log.exception("cannot watch connectivity toward %s; retrying", address)
                self._dispatch(ErrorEvent.of(ErrorCode.PLATFORM_ERROR, f"connectivity monitor: {exc}"))
                self._tracker.unwatch()
                self._monitor = None
                with contextlib.suppress(Exception):
                    await monitor.stop()
                await asyncio.sleep(RESOLVE_BACKOFF_S[min(attempt, len(RESOLVE_BACKOFF_S) - 1)])
                continue
            self._tracker.looked_up(first, time.monotonic())
            self._run_tracker()
            return

    async def _unwatch_path(self) -> None:
        lookup, self._lookup = self._lookup, None
        if lookup is not None:
            lookup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lookup
        self._tracker.unwatch()
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            try:
                await monitor.stop()
            except Exception:
                log.exception("stopping the connectivity monitor failed")

    # ------------------------------------------------------------------ callbacks from the backend

    def _on_path_change(self) -> None:
        self._tracker.changed(time.monotonic())
        self._wake.set()

    def _on_tun(self, packets: Sequence[bytes]) -> None:
        session = self._session
        out = session.tun_packets(packets, time.monotonic())
        if out:
            self._send(out)
        if session.has_output:
            self._flush()

    def _on_datagrams(self, datagrams: Sequence[tuple[bytes, tuple[str, int]]]) -> None:
        session = self._session
        packets = session.udp_datagrams(datagrams, time.monotonic())
        tun = self._tun
        if packets and tun is not None:
            write = tun.write
            for packet in packets:
                write(packet)
        if session.has_output:
            self._flush()

    def _on_pmtu(self, evidence: PmtuEvidence) -> None:
        self._session.pmtu_evidence(evidence, time.monotonic())
        self._flush()

    # ------------------------------------------------------------------ effects and events

    def _flush(self) -> None:
        """Carry out what the session asked for: sockets and sends now, OS changes on the queue; and wake the
        timer, since the input that made the output may have brought a deadline closer."""
        session = self._session
        while session.has_output:
            for effect in session.pop_effects():
                self._apply(effect)
            self._dispatch_events()
        self._wake.set()

    def _apply(self, effect: Effect) -> None:
        if isinstance(effect, Send):
            if self._channel is not None:
                if effect.dont_fragment:
                    # A path MTU probe is sized to measure the path: never sealed (it follows a confirmation).
                    self._channel.send_probe(effect.datagram)
                else:
                    self._send((effect.datagram,))
        elif isinstance(effect, OpenSocket):
            self._open_socket(effect)
        elif isinstance(effect, CloseSocket):
            self._close_socket()
        else:
            self._os_queue.put_nowait(effect)

    def _send(self, datagrams: Sequence[bytes]) -> None:
        """Data and keepalives toward the gateway: sealed while an enrolled gateway has not confirmed the
        address (docs/enrolled-access.md), the session's binding authenticating them afterwards."""
        channel = self._channel
        if channel is None:
            return
        if self._sealing is not None and not self._session.confirmed:
            datagrams = self._sealing.seal(datagrams, time.time())
        channel.send(datagrams)

    def _open_socket(self, effect: OpenSocket) -> None:
        assert self._loop is not None
        self._close_socket()
        try:
            channel = self._backend.open_udp((effect.gateway, effect.port), uplink=self._uplink)
        except (PlatformError, OSError) as exc:
            self._session.effect_failed(effect, str(exc), time.monotonic())
            return
        self._channel = channel
        channel.start_reading(self._loop, self._on_datagrams, self._on_pmtu)
        self._session.socket_opened(channel.local_address, time.monotonic())

    def _close_socket(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    async def _os_worker(self) -> None:
        while True:
            effect = await self._os_queue.get()
            try:
                await self._apply_os(effect)
            except (PlatformError, OSError) as exc:
                log.warning("%s failed: %s", type(effect).__name__, exc)
                self._session.effect_failed(effect, str(exc), time.monotonic())
                self._flush()
            except Exception as exc:
                log.exception("%s failed", type(effect).__name__)
                self._session.effect_failed(effect, repr(exc), time.monotonic())
                self._flush()
            finally:
                self._os_queue.task_done()

    async def _apply_os(self, effect: OsEffect) -> None:
        backend, ifname = self._backend, self._ifname
        if self._tun is None:
            return  # the interface is gone, and everything on it with it
        if isinstance(effect, SetAddress):
            await backend.replace_address(ifname, effect.address, effect.prefixlen)
        elif isinstance(effect, RemoveAddress):
            await backend.remove_address(ifname, effect.address, effect.prefixlen)
        elif isinstance(effect, SetRoutes):
            for route in effect.routes:
                await backend.replace_route(ifname, route)
        elif isinstance(effect, RemoveRoutes):
            for route in effect.routes:
                await backend.remove_route(ifname, route)
        elif isinstance(effect, SetMtu):
            await backend.set_mtu(ifname, effect.mtu)

    def _dispatch_events(self) -> None:
        for event in self._session.pop_events():
            self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, MtuProbeDone):
            future = self._mtu_waiters.pop(event.probe_id, None)
            if future is not None and not future.done():
                future.set_result(event.result)
        elif isinstance(event, GatewayChanged):
            self._follow_gateway()
        elif isinstance(event, GatewayUnreachable):
            self._resolve_gateways()  # a name may have moved to another address
        self._listeners.emit(event)

    # ------------------------------------------------------------------ time

    def _next_deadline(self) -> float | None:
        """The earliest real deadline (``None``: nothing to wake for until an input comes)."""
        deadlines = [d for d in (self._session.next_deadline(), self._tracker.next_deadline()) if d is not None]
        return min(deadlines) if deadlines else None

    async def _tick_loop(self) -> None:
        while True:
            self._wake.clear()
            deadline = self._next_deadline()
            try:
                delay = None if deadline is None else max(deadline - time.monotonic(), _MIN_SLEEP_S)
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            else:
                deadline = self._next_deadline()
                if deadline is None or time.monotonic() < deadline:
                    continue  # woken by an input that moved a deadline: sleep toward the earliest again
            try:
                self._tick()
            except Exception:
                log.exception("tick failed")

    def _tick(self) -> None:
        mono, wall = time.monotonic(), time.time()
        self._tracker.wall_clock(mono, wall)
        self._tracker.tick(mono)
        self._run_tracker()
        self._session.tick(mono)
        self._flush()

    # ------------------------------------------------------------------ the OS's hints

    def reachability(self, verdict: NetworkReachability) -> None:
        """The OS's verdict on the network (a captive portal holds the session until it lets us through)."""
        portal = verdict is NetworkReachability.PORTAL
        if portal:
            log.info("the OS says a captive portal holds this network: waiting for a sign-in")
        self._session.captive_portal(portal, time.monotonic())
        self._flush()

    # ------------------------------------------------------------------ the connectivity tracker

    def _run_tracker(self) -> None:
        """Carry out what the tracker asked for and decided (a probe's answer may decide more)."""
        tracker, session = self._tracker, self._session
        while decisions := tracker.pop_decisions():
            for decision in decisions:
                now = time.monotonic()
                if isinstance(decision, LookUp):
                    self._start_lookup()
                elif isinstance(decision, Probe):
                    self._probe(now)
                elif isinstance(decision, Attach | Detach):
                    if decision.by_backstop:
                        log.info("connectivity backstop: the path toward the gateway changed without an event")
                    before = session.attachment
                    if isinstance(decision, Attach):
                        session.attach(decision.attachment, now, new_gateway=decision.first)
                    else:
                        session.attach(None, now)
                    if isinstance(decision, Attach) and not same_path(before, decision.attachment):
                        self._resolve_gateways()  # a new network may resolve the names otherwise
                elif isinstance(decision, CheckBinding):
                    # NAT mappings and gateway states may have expired behind our back.
                    if decision.jump is None:
                        log.info("resumed from sleep: checking the binding now")
                    else:
                        log.info("clock jump of %.0f s (suspend/resume?): checking the binding now", decision.jump)
                    session.clock_jump(now)
        self._flush()
        self._wake.set()  # its deadlines may have moved

    def _start_lookup(self) -> None:
        monitor = self._monitor
        if monitor is None or self._loop is None:
            self._tracker.lookup_failed(time.monotonic())
            return
        self._lookup = self._loop.create_task(self._look_up(monitor), name="m6t-path-lookup")

    async def _look_up(self, monitor: ConnectivityMonitor) -> None:
        try:
            answer = await monitor.lookup()
        except Exception:
            log.exception("connectivity lookup toward %s failed", monitor.gateway)
            self._tracker.lookup_failed(time.monotonic())
        else:
            self._tracker.looked_up(answer, time.monotonic())
        self._run_tracker()

    def _probe(self, now: float) -> None:
        """The monitor might miss a change (a lost event): the OS's current source toward the gateway."""
        monitor = self._monitor
        if monitor is None:
            return
        try:
            answer = monitor.probe()
        except Exception:
            log.exception("connectivity probe failed")
            return
        self._tracker.probed(answer, now)

    # ------------------------------------------------------------------ logging

    def _log_event(self, event: Event) -> None:
        """State changes, regenerations, MTU changes and errors: never anything per packet."""
        if isinstance(event, StateChanged):
            if event.previous is event.state:
                log.info("state %s: %s", event.state.value, event.detail)
            else:
                log.info("state %s → %s: %s", event.previous.value, event.state.value, event.detail)
        elif isinstance(event, AddressChanged):
            gateway = "" if event.gateway is None else f" via {event.gateway[0]}:{event.gateway[1]}"
            log.info("address %s → %s (%s)%s", event.old, event.new, event.reason, gateway)
        elif isinstance(event, GatewayChanged):
            if event.previous is not None:
                log.info("gateway %s → %s (%s)", event.previous, event.gateway or "none", event.reason)
        elif isinstance(event, GatewayUnreachable):
            then = "every gateway failed, backing off" if event.all_dead else f"trying {event.next}"
            log.warning("gateway %s answered on none of its ports; %s", event.gateway, then)
        elif isinstance(event, MtuChanged):
            log.info(
                "tunnel MTU %d → %d (%s%s)",
                event.previous,
                event.effective,
                event.evidence,
                "" if event.path_mtu is None else f", path MTU {event.path_mtu}",
            )
        elif isinstance(event, ErrorEvent):
            log.warning("[%d] %s %s", int(event.code), event.message, f"({event.detail})" if event.detail else "")
        elif isinstance(event, KeepaliveEvent) and event.what is KeepaliveKind.MISSED:
            log.info("keepalive unanswered (%d in a row)", event.missed)
        elif isinstance(event, MtuProbeDone):
            log.info("MTU probe: largest answered %s (%s)", event.result.largest, event.result.reason or "ok")


def _describe_error(error: PlatformError) -> str:
    return f"{error} (hint: {error.hint})" if error.hint else str(error)
