"""The tunnels ``tunnel.uplinks`` asks for: one, or one per IPv4 uplink (draft 2.5).

``"best"`` (the default) is one :class:`~m6t.client.driver.ClientDriver`, through whatever path the OS
prefers toward the gateway: exactly the client as it always was, the manager only passing calls on.

``"all"`` runs one driver per IPv4 interface with a route toward the gateway (:mod:`m6t.client.uplinks`
decides which, and names them ``m6t0``, ``m6t1``...): each with its own backend (its TUN, its UDP socket
bound to its uplink, its path looked up through that uplink alone), a suffix drawn from one allocator so that
no two tunnels ever share an address (the "synchronization" §2.5 asks for), and its routes one metric behind
the previous tunnel's.  An uplink that goes away takes its tunnel with it; a new one adds one.  The uplinks
are looked up toward the first configured gateway when the OS announces a change (waited out as the
tracker does), never on a timer.  The OS's sleep and portal hints are subscribed to once, here, and told
to every tunnel.

The primary tunnel, the one through the uplink the OS prefers, is what the status's top level and the
plain events describe, so that a client that knows one tunnel sees the one ``"best"`` would have run;
every other tunnel's events come wrapped in :class:`~m6t.client.events.OtherTunnel`, and a tunnel coming,
going or taking the primary's place is a :class:`~m6t.client.events.TunnelsChanged`.  When the primary
changes, the top level is brought to the new one by the events that describe the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from m6t.client import events as ev
from m6t.client.config import UPLINKS_ALL, ClientConfig
from m6t.client.driver import (
    RESOLVE_BACKOFF_S,
    ClientDriver,
    DriverStatus,
    Placement,
    Resolver,
    resolve_ipv4,
    session_settings,
)
from m6t.client.listeners import Listener, Listeners
from m6t.client.os_hints import OsHints
from m6t.client.session import Session
from m6t.client.status import Status
from m6t.client.uplinks import AddTunnel, Change, RemoveTunnel, Tunnel, UplinkPlan
from m6t.client.vocabulary import ErrorCode
from m6t.platform.base import Backend, ConnectivityMonitor, NetworkReachability, PlatformError
from m6t.protocol.addressing import SuffixAllocator

log = logging.getLogger("m6t.client")

BackendFactory = Callable[[], Backend]


@dataclass(frozen=True, slots=True)
class TunnelStatus:
    status: DriverStatus
    primary: bool


@dataclass(slots=True)
class _Running:
    tunnel: Tunnel
    driver: ClientDriver
    remove_listener: Callable[[], None]


class TunnelManager:
    """What the helper drives: ``start/up/down/apply_config/status/tunnels/probe_mtu/close``."""

    def __init__(
        self,
        config: ClientConfig,
        backend: Backend,
        more_backends: BackendFactory | None = None,
        *,
        resolver: Resolver = resolve_ipv4,
        backstop_s: float | None = None,
    ) -> None:
        self._config = config
        self._backend = backend
        self._more_backends = more_backends
        self._resolver = resolver
        self._backstop_s = backstop_s
        self._listeners = Listeners()
        self._allocator = SuffixAllocator()
        self._access_key: bytes | None = None
        self._verdict: NetworkReachability | None = None
        self._lock = asyncio.Lock()
        self._started = False
        self._wanted_up = False
        # "best": the one driver, made now so that start() creates its interface as it always did.
        self._single: _Running | None = None
        # "all": the uplinks' drivers, the plan, and the watch over the uplinks.
        self._all = config.tunnel.uplinks == UPLINKS_ALL
        self._running: dict[int, _Running] = {}
        self._primary: int | None = None
        self._plan = UplinkPlan(config.tunnel.interface)
        self._idle = Session(session_settings(config))
        """The top level while no tunnel runs (down, or no uplink): its state and words, never a binding."""
        self._hints: OsHints | None = None
        self._hints_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._monitor: ConnectivityMonitor | None = None
        self._wake: asyncio.Event | None = None
        if not self._all:
            self._single = self._make_single()

    # ------------------------------------------------------------------ the helper's interface

    @property
    def config(self) -> ClientConfig:
        return self._config

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(listener)

    async def start(self) -> None:
        async with self._lock:
            await self._start()

    async def up(self) -> None:
        if not self._started:
            await self.start()
        async with self._lock:
            await self._up()

    async def down(self) -> None:
        async with self._lock:
            await self._down()

    async def apply_config(self, new: ClientConfig) -> None:
        async with self._lock:
            old, self._config = self._config, new
            rebuild = (new.tunnel.uplinks == UPLINKS_ALL) != self._all or (
                self._all and new.tunnel.interface != old.tunnel.interface
            )
            if rebuild:
                await self._rebuild(new)
                return
            self._idle.update_settings(session_settings(new), time.monotonic())
            self._idle.pop_effects()
            self._idle.pop_events()
            for running in self._drivers():
                await running.driver.apply_config(new)
            if self._all and self._wanted_up and new.gateway.addresses[0] != old.gateway.addresses[0]:
                await self._stop_watch()
                self._start_watch()

    def set_access_key(self, key: bytes | None) -> None:
        self._access_key = key
        for running in self._drivers():
            running.driver.set_access_key(key)

    def resumed(self) -> None:
        """The OS announced a resume: every tunnel checks its binding, and the uplinks are looked up again."""
        for running in self._drivers():
            running.driver.resumed()
        if self._all and self._monitor is not None:
            self._on_uplinks_changed()

    def status(self) -> DriverStatus:
        """The primary tunnel's status (the idle one's while none runs)."""
        running = self._top()
        if running is not None:
            return running.driver.status()
        mono = time.monotonic()
        return DriverStatus(
            session=self._idle.status(mono),
            wall_offset=time.time() - mono,
            interface=None,
            wanted_up=self._wanted_up,
            backend=self._backend.name,
            problems=(),
        )

    def tunnels(self) -> tuple[TunnelStatus, ...]:
        """Every tunnel, in interface order."""
        top = self._top()
        return tuple(TunnelStatus(r.driver.status(), r is top) for r in self._drivers())

    async def probe_mtu(self) -> ev.MtuProbeResult:
        """A path MTU search on the primary tunnel."""
        running = self._top()
        if running is not None:
            return await running.driver.probe_mtu()
        _, immediate = self._idle.start_mtu_probe(time.monotonic())
        assert immediate is not None  # nothing to probe through: the session says why at once
        return immediate

    async def close(self) -> None:
        async with self._lock:
            await self._close()

    # ------------------------------------------------------------------ "best"

    def _make_single(self) -> _Running:
        driver = ClientDriver(
            self._config, self._backend, resolver=self._resolver, backstop_s=self._backstop_s, allocator=self._allocator
        )
        if self._access_key is not None:
            driver.set_access_key(self._access_key)
        tunnel = Tunnel(0, self._config.tunnel.interface, "")
        return _Running(tunnel, driver, driver.add_listener(self._emit))

    # ------------------------------------------------------------------ life cycle

    async def _start(self) -> None:
        if self._started:
            return
        if self._single is not None:
            await self._single.driver.start()
        else:
            self._wake = asyncio.Event()
            self._hints = OsHints(self._backend, self.resumed, self._reachability)
            # As the driver does: a slow system bus never delays the helper's start.
            self._hints_task = asyncio.get_running_loop().create_task(self._hints.start(), name="m6t-os-hints")
        self._started = True

    async def _up(self) -> None:
        if self._single is not None:
            await self._single.driver.up()
            return
        if self._wanted_up:
            return
        self._wanted_up = True
        before = self._top_status()
        self._idle.up(time.monotonic())
        self._idle.pop_effects()
        self._idle.pop_events()
        self._announce(before, self._top_status())
        self._start_watch()

    async def _down(self) -> None:
        if self._single is not None:
            await self._single.driver.down()
            return
        if not self._wanted_up:
            return
        self._wanted_up = False
        await self._stop_watch()
        before = self._top_status()
        await self._apply(self._plan.clear())
        self._idle.down(time.monotonic())
        self._idle.pop_effects()
        self._idle.pop_events()
        self._announce(before, self._top_status())

    async def _close(self) -> None:
        if self._single is not None:
            await self._single.driver.close()  # its backend with it, as always
            self._started = False
            return
        await self._down()
        await self._stop_hints()
        self._started = False
        await self._backend.close()

    async def _rebuild(self, new: ClientConfig) -> None:
        """Another mode (or another name for the tunnels): everything taken down and made again."""
        was_up, was_started = self._wanted_up or (self._single is not None and self._single.driver.is_up), self._started
        if self._single is not None:
            await self._single.driver.down()
            await self._single.driver.close()
            self._single.remove_listener()
            self._single = None
        else:
            await self._down()
            await self._stop_hints()
            await self._backend.close()
        # A closed backend is not reused: the helper's backend is the first one; a fresh one from here on.
        if self._more_backends is not None:
            self._backend = self._more_backends()
        self._started = False
        self._all = new.tunnel.uplinks == UPLINKS_ALL
        self._plan = UplinkPlan(new.tunnel.interface)
        self._idle = Session(session_settings(new))
        if not self._all:
            self._single = self._make_single()
        if was_started:
            await self._start()
        if was_up:
            await self._up()

    async def _stop_hints(self) -> None:
        task, self._hints_task = self._hints_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._hints is not None:
            await self._hints.stop()
            self._hints = None

    # ------------------------------------------------------------------ "all": watching the uplinks

    def _start_watch(self) -> None:
        self._watch_task = asyncio.get_running_loop().create_task(self._watch(), name="m6t-uplinks")

    async def _stop_watch(self) -> None:
        task, self._watch_task = self._watch_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            with contextlib.suppress(Exception):
                await monitor.stop()

    async def _watch(self) -> None:
        """Resolve the first gateway, subscribe to the OS's changes, then look the uplinks up each time the plan
        says (after a burst, or once more after a look-up the burst may have overtaken); retried, never fatal."""
        assert self._wake is not None
        for attempt in itertools.count():
            try:
                gateway = await self._first_gateway()
                monitor = self._backend.connectivity_monitor(gateway, self._plan.base)
                self._monitor = monitor
                await monitor.start(self._on_uplinks_changed)
                break
            except (OSError, PlatformError, UnicodeError, ValueError) as exc:
                log.warning("cannot watch the IPv4 uplinks (%s); retrying", exc)
                self._emit(ev.ErrorEvent.of(ErrorCode.PLATFORM_ERROR, f"uplinks: {exc}"))
                self._monitor = None
                await asyncio.sleep(RESOLVE_BACKOFF_S[min(attempt, len(RESOLVE_BACKOFF_S) - 1)])
        self._plan.watch()
        failures = 0
        while True:
            if self._plan.due(time.monotonic()):
                try:
                    found = await monitor.uplinks(ignore=[r.tunnel.interface for r in self._drivers()])
                except Exception as exc:
                    log.warning("looking the IPv4 uplinks up failed: %s", exc)
                    self._plan.lookup_failed()
                    await asyncio.sleep(RESOLVE_BACKOFF_S[min(failures, len(RESOLVE_BACKOFF_S) - 1)])
                    failures += 1
                    self._plan.watch()
                    continue
                failures = 0
                changes = self._plan.looked_up([a.interface for a in found])
                if self._plan.left_out:
                    log.warning("uplinks beyond the tunnels' limit get no tunnel: %s", ", ".join(self._plan.left_out))
                async with self._lock:
                    if self._wanted_up:
                        before = self._top_status()
                        await self._apply(changes)
                        self._announce(before, self._top_status())
                continue
            self._wake.clear()
            deadline = self._plan.next_deadline()
            delay = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _first_gateway(self) -> IPv4Address:
        """The uplinks are those with a route toward the first configured gateway."""
        host = self._config.gateway.addresses[0]
        found = await self._resolver(host)
        if not found:
            raise OSError(f"{host} has no IPv4 address")
        return found[0]

    def _on_uplinks_changed(self) -> None:
        self._plan.changed(time.monotonic())
        if self._wake is not None:
            self._wake.set()

    def _reachability(self, verdict: NetworkReachability) -> None:
        self._verdict = verdict
        for running in self._drivers():
            running.driver.reachability(verdict)

    # ------------------------------------------------------------------ "all": the tunnels

    async def _apply(self, changes: list[Change]) -> None:
        for change in changes:
            if isinstance(change, RemoveTunnel):
                await self._remove(change.tunnel)
            elif isinstance(change, AddTunnel):
                await self._add(change.tunnel)
        primary = self._plan.primary
        self._primary = None if primary is None or primary.slot not in self._running else primary.slot
        if changes:
            self._emit(
                ev.TunnelsChanged(
                    tuple(r.driver.interface for r in self._drivers()),
                    None if self._primary is None else self._running[self._primary].driver.interface,
                )
            )

    async def _add(self, tunnel: Tunnel) -> None:
        backend = self._more_backends() if self._more_backends is not None else self._backend
        driver = ClientDriver(
            self._config,
            backend,
            resolver=self._resolver,
            backstop_s=self._backstop_s,
            placement=Placement(tunnel.interface, tunnel.uplink, tunnel.slot),
            allocator=self._allocator,
            owns_backend=backend is not self._backend,
            os_hints=False,
        )
        if self._access_key is not None:
            driver.set_access_key(self._access_key)
        remove = driver.add_listener(lambda event: self._on_tunnel_event(tunnel, driver, event))
        running = _Running(tunnel, driver, remove)
        self._running[tunnel.slot] = running
        log.info("uplink %s: tunnel %s", tunnel.uplink, tunnel.interface)
        problem = backend.uplink_problem(tunnel.uplink)
        if problem is not None:
            log.warning("uplink %s: %s (hint: %s)", tunnel.uplink, problem, problem.hint)
            detail = f"{problem} (hint: {problem.hint})" if problem.hint else str(problem)
            # Said at the top level (the error event, the problems) whichever tunnel it concerns: only the user
            # can change it.
            self._emit(ev.ErrorEvent.of(ErrorCode.UPLINK_FILTERED, detail))
        try:
            await driver.start()
            if self._verdict is not None:
                driver.reachability(self._verdict)
            await driver.up()
        except PlatformError as exc:
            # The driver has reported it (TUN_FAILED); the uplink stays without a tunnel until it changes.
            log.warning("no tunnel through %s: %s", tunnel.uplink, exc)
            await self._remove(tunnel)

    async def _remove(self, tunnel: Tunnel) -> None:
        running = self._running.pop(tunnel.slot, None)
        if running is None:
            return
        if self._primary == tunnel.slot:
            self._primary = None
        log.info("uplink %s gone: tunnel %s removed", tunnel.uplink, tunnel.interface)
        try:
            await running.driver.close()
        except Exception:
            log.exception("closing the tunnel %s failed", tunnel.interface)
        running.remove_listener()

    # ------------------------------------------------------------------ events

    def _drivers(self) -> list[_Running]:
        if self._single is not None:
            return [self._single]
        return [self._running[slot] for slot in sorted(self._running)]

    def _top(self) -> _Running | None:
        if self._single is not None:
            return self._single
        return None if self._primary is None else self._running.get(self._primary)

    def _top_status(self) -> Status:
        running = self._top()
        return running.driver.session.status() if running is not None else self._idle.status()

    def _on_tunnel_event(self, tunnel: Tunnel, driver: ClientDriver, event: ev.Event) -> None:
        if isinstance(event, ev.TunnelsChanged | ev.OtherTunnel):
            return  # a driver never sends these
        if self._primary == tunnel.slot:
            self._emit(event)
        else:
            # The interface as the OS named it (macOS picks its utun's number itself).
            self._emit(ev.OtherTunnel(driver.interface, tunnel.uplink, event))

    def _announce(self, before: Status, after: Status) -> None:
        """The top level moved to another tunnel (or to none): the events that take a listener from what it
        knew to what is now."""
        if after.state is not before.state or after.detail != before.detail:
            self._emit(ev.StateChanged(after.state, before.state, after.detail))
        if after.attachment != before.attachment:
            self._emit(ev.AttachmentChanged(after.attachment))
        if after.address != before.address:
            gateway = None if after.gateway_address is None else (after.gateway_address, after.gateway_port)
            self._emit(ev.AddressChanged(before.address, after.address, "uplink", gateway))
        if after.mtu_effective != before.mtu_effective:
            self._emit(ev.MtuChanged(after.mtu_configured, after.mtu_effective, before.mtu_effective, "uplink"))

    def _emit(self, event: ev.Event) -> None:
        self._listeners.emit(event)
