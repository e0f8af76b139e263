"""The helper's life cycle and the control API's requests: what each one does, and what the log says.

:class:`HelperService` starts everything in the fixed order (see :mod:`m6t.client.helper`), owns the
driver, the backend and the control server, keeps the host's problems for ``status``, and turns the
driver's events into log lines and API events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from m6t.client import events as ev
from m6t.client.access_keys import AccessKeys
from m6t.client.api import schema, wire
from m6t.client.api.authorization import Authorizer, group_refusal, is_operator
from m6t.client.api.schema import Access, ErrorCode, ErrorInfo, EventKind, Method, ParsedRequest, Wanted
from m6t.client.api.server import ApiError, Connection, ControlServer
from m6t.client.config import ClientConfig, ConfigError, client_config_to_dict
from m6t.client.diagnostics import build_bundle, save_bundle
from m6t.client.driver import DriverStatus
from m6t.client.helper.access_key import HelperAccess
from m6t.client.helper.persistence import WishFile
from m6t.client.helper.transaction import ConfigStore
from m6t.client.journal import Journal, JournalingBackend, RecoveryReport, recover
from m6t.client.ringlog import RingLog
from m6t.client.tunnels import TunnelStatus
from m6t.client.vocabulary import State
from m6t.platform import desktop_authority
from m6t.platform.base import Backend, ControlTransport, DesktopAuthority, PeerIdentity, PlatformError
from m6t.platform.hints import Conventions

log = logging.getLogger("m6t.helper")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("m6t")
    except PackageNotFoundError:
        return "0.1.0.dev0"  # a source tree that was never installed


HELPER_VERSION = _version()
SHUTDOWN_TIMEOUT_S = 10.0
LOG_LIMIT_MAX = 2000


class Driver(Protocol):
    """What the helper needs of the client driver (``m6t.client.driver.ClientDriver``)."""

    async def start(self) -> None: ...
    async def up(self) -> None: ...
    async def down(self) -> None: ...
    async def apply_config(self, new: ClientConfig) -> None: ...
    def status(self) -> DriverStatus: ...
    def add_listener(self, listener: Callable[[ev.Event], None]) -> Callable[[], None]: ...
    async def probe_mtu(self) -> ev.MtuProbeResult: ...
    async def close(self) -> None: ...
    def set_access_key(self, key: bytes | None) -> None: ...
    def tunnels(self) -> tuple[TunnelStatus, ...]: ...
    def resumed(self) -> None: ...


BackendFactory = Callable[[], Backend]
AuthorityFactory = Callable[[], DesktopAuthority | None]


class DriverFactory(Protocol):
    def __call__(self, config: ClientConfig, backend: Backend, more_backends: BackendFactory) -> Driver:
        """``backend`` is the helper's own (journaled); ``more_backends`` makes one more for each further
        tunnel (``tunnel.uplinks = "all"``), journaled the same way."""
        ...


def default_driver_factory(config: ClientConfig, backend: Backend, more_backends: BackendFactory) -> Driver:
    from m6t.client.tunnels import TunnelManager

    return TunnelManager(config, backend, more_backends)


def default_backend_factory() -> Backend:
    from m6t.platform import default_backend

    return default_backend()


@dataclass
class HelperOptions:
    config_path: Path
    socket_path: str = schema.DEFAULT_SOCKET_PATH
    state_dir: Path = Path(schema.DEFAULT_STATE_DIR)
    max_events_queued: int = 1024
    stall_timeout: float = 30.0
    log_capacity: int = 2000


class StartupError(RuntimeError):
    """The helper cannot start; the message is the one line the user sees."""


@dataclass(frozen=True, slots=True)
class LogLine:
    level: str
    message: str
    event: str | None = None
    code: int | None = None


def error_line(info: ErrorInfo) -> LogLine:
    detail = f" ({info['detail']})" if info.get("detail") else ""
    return LogLine("error", f"[{info['code']}] {info['message']}{detail}", EventKind.ERROR.value, info["code"])


def describe(event: ev.Event) -> LogLine | None:
    """The ring log's line for a driver event, ``None`` for those too chatty to keep."""
    if isinstance(event, ev.StateChanged):
        detail = f": {event.detail}" if event.detail else ""
        return LogLine("info", f"state {event.previous.value} → {event.state.value}{detail}", "state")
    if isinstance(event, ev.AttachmentChanged):
        att = event.attachment
        if att is None:
            return LogLine("warning", "no IPv4 path toward the gateway", "attachment")
        router = f", router {att.router}" if att.router is not None else ""
        return LogLine("info", f"attached via {att.interface} ({att.local_ipv4}{router})", "attachment")
    if isinstance(event, ev.AddressChanged):
        reason = f" ({event.reason})" if event.reason else ""
        return LogLine("info", f"address {event.old} → {event.new}{reason}", "address")
    if isinstance(event, ev.MtuChanged):
        return LogLine("info", f"MTU {event.previous} → {event.effective} ({event.evidence})", "mtu")
    if isinstance(event, ev.ErrorEvent):
        return error_line(wire.error_to_wire(event))
    if isinstance(event, ev.KeepaliveEvent) and event.what is ev.KeepaliveKind.MISSED:
        return LogLine("warning", f"keepalive unanswered ({event.missed} in a row)", "keepalive")
    if isinstance(event, ev.TunnelsChanged):
        names = [f"{name} (primary)" if name == event.primary else name for name in event.interfaces]
        return LogLine("info", f"tunnels: {', '.join(names) or 'none'}", "tunnels")
    if isinstance(event, ev.OtherTunnel):
        line = describe(event.event)
        if line is None:
            return None
        via = f" via {event.uplink}" if event.uplink else ""
        return LogLine(line.level, f"{event.interface}{via}: {line.message}", line.event, line.code)
    return None


_SUMMARY_EVENTS = (
    ev.StateChanged,
    ev.AttachmentChanged,
    ev.AddressChanged,
    ev.GatewayChanged,
    ev.KeepaliveEvent,
    ev.MtuChanged,
    ev.TunnelsChanged,
)
"""What may change a tunnel's summary (``tunnels`` event): the rest (counters, errors...) never does."""


class HelperService:
    """``transport`` is the control channel it serves (the platform's, or an emulation's); ``conventions`` the
    words its refusals use (the running OS's unless given)."""

    def __init__(
        self,
        options: HelperOptions,
        *,
        transport: ControlTransport,
        backend_factory: BackendFactory = default_backend_factory,
        driver_factory: DriverFactory = default_driver_factory,
        authority_factory: AuthorityFactory = desktop_authority,
        conventions: Conventions | None = None,
        access_keys: AccessKeys | None = None,
    ) -> None:
        self.options = options
        self.transport = transport
        self.authorizer = Authorizer(authority_factory(), lambda: self.operator_group, conventions)
        self._backend_factory = backend_factory
        self._driver_factory = driver_factory
        self.ringlog = RingLog(options.log_capacity)
        self.started_at = time.monotonic()
        self.configs = ConfigStore(options.config_path)
        self.wish = WishFile(options.state_dir)
        self.backend: JournalingBackend | None = None
        self.driver: Driver | None = None
        self.journal: Journal | None = None
        self.server: ControlServer | None = None
        self.recovery: RecoveryReport | None = None
        self.check_problems: list[ErrorInfo] = []
        self.runtime_problem: ErrorInfo | None = None
        self.wanted: Wanted = "down"
        self._change_lock = asyncio.Lock()
        self._remove_listener: Callable[[], None] | None = None
        self._tunnels_sent: list[schema.TunnelSummary] | None = None
        """The tunnels' summaries as subscribers last got them (by a status or a ``tunnels`` event)."""
        self.access = HelperAccess(access_keys or AccessKeys(), self._log, self._broadcast)

    @property
    def config(self) -> ClientConfig | None:
        return self.configs.current

    # -- lifecycle

    async def start(self) -> None:
        state_dir = self.options.state_dir
        try:
            state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create the state directory {state_dir}: {exc.strerror or exc}") from None
        inner = self._backend_factory()
        self.journal = Journal(state_dir)
        self.backend = JournalingBackend(inner, self.journal)
        # Leftovers first: a dead run's address or route would otherwise collide with ours.
        self.recovery = await recover(self.journal, inner)
        for item in self.recovery.removed:
            self._log("warning", f"removed leftover of a previous run: {item}")
        for item in self.recovery.failed:
            self._log("error", f"could not remove leftover of a previous run: {item}", code=ErrorCode.CLEANUP_FAILED)

        try:
            config = self.configs.load()
        except ConfigError as exc:
            await inner.close()
            raise StartupError(f"invalid configuration:\n{exc}") from None
        except OSError as exc:
            await inner.close()
            raise StartupError(f"cannot read the configuration {self.options.config_path}: {exc}") from None

        wish = self.wish.load()
        if wish is not None:
            self.wanted = wish
        else:
            self.wanted = "up" if config.helper.autoconnect else "down"

        self.run_checks(interface=True)
        journal = self.journal
        self.driver = self._driver_factory(
            config, self.backend, lambda: JournalingBackend(self._backend_factory(), journal)
        )
        self._remove_listener = self.driver.add_listener(self._on_driver_event)
        self.runtime_problem = self.access.refresh(config, self.driver)
        try:
            await self.driver.start()
        except PlatformError as exc:
            self.runtime_problem = schema.error_info(ErrorCode.PLATFORM_ERROR, str(exc), hint=exc.hint)
            self._log("error", f"the tunnel driver could not start: {exc}", code=ErrorCode.PLATFORM_ERROR)
        else:
            # The driver reports the same host checks as errors while starting; ours carry finer codes.
            problem = self.runtime_problem
            if self.check_problems and problem is not None and problem["code"] == ErrorCode.PLATFORM_ERROR:
                self.runtime_problem = None

        try:
            self.server = ControlServer(
                self.transport.listener(self.options.socket_path),
                self,
                self.access_for,
                server_name=f"m6t-helper {HELPER_VERSION}",
                forbidden_message=self.forbidden,
                authorize=self.authorizer.authorize,
                permissions=self.authorizer.permissions,
                max_events_queued=self.options.max_events_queued,
                stall_timeout=self.options.stall_timeout,
            )
            await self.server.start()
        except (PlatformError, OSError) as exc:
            await self._close_driver()
            raise StartupError(
                str(exc) if isinstance(exc, PlatformError) else f"cannot listen on {self.options.socket_path}: {exc}"
            ) from None
        self._log("info", f"m6t-helper {HELPER_VERSION} listening on {self.options.socket_path}")
        if self.wanted == "up":
            try:
                await self.driver.up()
            except PlatformError as exc:
                self._report_platform_error(exc)

    async def stop(self) -> None:
        """Take the tunnel down (its address and routes with it) but keep the user's wish for next time."""
        self._log("info", "m6t-helper stopping")
        await self._close_driver()
        if self.server is not None:
            await self.server.close()
        if self.authorizer.authority is not None:
            with contextlib.suppress(Exception):
                await self.authorizer.authority.close()

    async def _close_driver(self) -> None:
        """The driver's close removes what it installed and closes the backend; without a driver, close it here."""
        driver, self.driver = self.driver, None
        if driver is not None:
            try:
                await asyncio.wait_for(driver.close(), SHUTDOWN_TIMEOUT_S)
            except Exception:
                log.exception("the tunnel driver did not close cleanly")
        elif self.backend is not None:
            with contextlib.suppress(Exception):
                await self.backend.close()
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None

    # -- checks and problems

    def run_checks(self, *, interface: bool = False) -> None:
        """Host checks; ``interface`` also looks for another owner of the tunnel's name, which only
        means something before our own driver has created it (at start-up)."""
        assert self.backend is not None and self.config is not None
        try:
            findings = [wire.problem_to_wire(e) for e in self.backend.check()]
        except Exception as exc:
            findings = [schema.error_info(ErrorCode.PLATFORM_ERROR, detail=str(exc))]
        ifname = self.config.tunnel.interface
        if interface and self.backend.interface_exists(ifname):
            findings.append(
                schema.error_info(
                    ErrorCode.INTERFACE_BUSY,
                    f"Another program already uses the interface name {ifname}.",
                    hint=f"stop that program, or pick another name: m6t config set tunnel.interface {ifname}x",
                )
            )
        elif not interface:
            findings.extend(p for p in self.check_problems if p["code"] == ErrorCode.INTERFACE_BUSY)
        for finding in findings:
            if finding not in self.check_problems:
                self._log("warning", f"[{finding['code']}] {finding['message']}", code=finding["code"])
        self.check_problems = findings

    def problems(self) -> list[ErrorInfo]:
        """The host's problems, then the tunnel's last error (until it connects or is taken down)."""
        problems = list(self.check_problems)
        if self.runtime_problem is not None and self.runtime_problem not in problems:
            problems.append(self.runtime_problem)
        return problems

    def _report_platform_error(self, exc: PlatformError) -> ErrorInfo:
        info = schema.error_info(ErrorCode.PLATFORM_ERROR, str(exc), hint=exc.hint)
        self.runtime_problem = info
        self._log_line(error_line(info))
        self._broadcast((EventKind.ERROR, info))
        return info

    # -- authorization

    @property
    def operator_group(self) -> str:
        return self.config.helper.operator_group if self.config is not None else schema.DEFAULT_OPERATOR_GROUP

    def access_for(self, peer: PeerIdentity | None) -> Access:
        return Access.OPERATOR if is_operator(peer, self.operator_group) else Access.READ_ONLY

    def forbidden(self, method: Method) -> ErrorInfo:
        return group_refusal(method, self.operator_group, self.authorizer.conventions)

    # -- log and events

    def _log(self, level: str, message: str, *, event: str | None = None, code: int | None = None) -> None:
        self._log_line(LogLine(level, message, event, code))

    def _log_line(self, line: LogLine) -> None:
        self.ringlog.append(line.level, line.message, event=line.event, code=line.code)
        log.log(logging.getLevelName(line.level.upper()), "%s", line.message)

    def _broadcast(self, wired: wire.WireEvent) -> None:
        kind, data = wired
        if self.server is not None:
            self.server.broadcast(kind, dict(data))

    def _on_driver_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.ErrorEvent):
            self.runtime_problem = wire.error_to_wire(event)
        elif isinstance(event, ev.StateChanged) and event.state in (State.CONNECTED, State.DISCONNECTED):
            self.runtime_problem = None
        line = describe(event)
        if line is not None:
            self._log_line(line)
        wired = wire.event_to_wire(event)
        if wired is not None:
            self._broadcast(wired)
        inner = event.event if isinstance(event, ev.OtherTunnel) else event
        if isinstance(inner, _SUMMARY_EVENTS):
            self._broadcast_tunnels()

    def _tunnel_summaries(self) -> list[schema.TunnelSummary]:
        if self.driver is None:
            return []
        try:
            return [wire.tunnel_summary(t) for t in self.driver.tunnels()]
        except Exception:
            log.exception("driver tunnels failed")
            return []

    def _broadcast_tunnels(self) -> None:
        """Every tunnel's summary, to subscribers, when it is not what they have.  Only where there is more
        than the top level says: one tunnel through the preferred path is the top level, and its events
        already tell every change (with ``"best"``, nothing is sent twice)."""
        summaries = self._tunnel_summaries()
        if summaries == self._tunnels_sent:
            return
        several = any(s["uplink"] is not None for s in summaries)
        if several or self._tunnels_sent is not None:
            self._broadcast(wire.tunnels_event(summaries))
        self._tunnels_sent = summaries if several else None

    # -- status

    def status(self, access: Access, permissions: schema.Permissions | None = None) -> schema.Status:
        snapshot: DriverStatus | None = None
        if self.driver is not None:
            try:
                snapshot = self.driver.status()
            except Exception:
                log.exception("driver status failed")
        status = wire.status_to_wire(
            snapshot,
            wanted=self.wanted,
            configured_interface=self.config.tunnel.interface if self.config is not None else None,
            problems=self.problems(),
            access=access,
            helper={
                "version": HELPER_VERSION,
                "pid": os.getpid(),
                "uptime_s": round(time.monotonic() - self.started_at, 1),
                "config_path": str(self.options.config_path),
                "socket_path": self.options.socket_path,
            },
            tunnels=self._tunnel_summaries(),
        )
        if permissions is not None:
            status["permissions"] = permissions
        return status

    # -- requests

    async def handle(self, connection: Connection, request: ParsedRequest) -> object:
        params = request.params
        method = request.method
        if method is Method.STATUS:
            return self.status(connection.access, await self.authorizer.permissions(connection.peer))
        if method is Method.SUBSCRIBE:
            kinds = _event_filter(params.get("events"))
            permissions = await self.authorizer.permissions(connection.peer)
            # No await between these two lines: the snapshot and the start of the stream are atomic.
            connection.subscribe(kinds)
            return {"status": self.status(connection.access, permissions)}
        if method is Method.UNSUBSCRIBE:
            connection.unsubscribe()
            return {}
        if method is Method.UP or method is Method.DOWN:
            return await self._up_down("up" if method is Method.UP else "down", connection.access)
        if method is Method.CONFIG_GET:
            return self.configs.get(params)
        if method is Method.CONFIG_SET:
            return await self._config_set(params)
        if method is Method.LOG:
            return self._log_page(params)
        if method is Method.DIAGNOSTICS:
            return await self._diagnostics(connection.access)
        if method is Method.MTU_PROBE:
            return await self._mtu_probe()
        if method is Method.ACCESS_KEY:
            async with self._change_lock:
                return self.access.set_key(params, self.config, self._require_driver())
        raise ApiError.of(ErrorCode.UNKNOWN_METHOD)  # pragma: no cover - parse_request knows every Method

    async def _up_down(self, wanted: Wanted, access: Access) -> schema.Status:
        async with self._change_lock:
            driver = self._require_driver()
            if wanted != self.wanted:
                try:
                    self.wish.save(wanted)
                except OSError as exc:
                    raise ApiError.of(ErrorCode.STATE_WRITE_FAILED, detail=str(exc)) from None
                self.wanted = wanted
                self._log("info", f"tunnel wanted {wanted}", event=EventKind.WANTED.value)
                self._broadcast(wire.wanted_event(wanted))
            if wanted == "up":
                self.run_checks()
            try:
                await (driver.up() if wanted == "up" else driver.down())
            except PlatformError as exc:
                raise ApiError(self._report_platform_error(exc)) from None
            return self.status(access)

    def _require_driver(self) -> Driver:
        if self.driver is None:
            raise ApiError.of(ErrorCode.INTERNAL, "The helper is shutting down.")
        return self.driver

    async def _config_set(self, params: dict[str, object]) -> schema.ConfigSetResult:
        async with self._change_lock:
            driver = self._require_driver()
            result = await self.configs.set(params, driver.apply_config)
            if result["applied"] and result["changed"]:
                changed = result["changed"]
                self._log("info", f"configuration changed: {', '.join(changed)}", event=EventKind.CONFIG.value)
                self._broadcast(wire.config_event(changed))
                self.runtime_problem = self.access.refresh(self.config, driver) or self.runtime_problem
            return result

    def _log_page(self, params: dict[str, object]) -> schema.LogResult:
        limit = params.get("limit", 200)
        since = params.get("since", 0)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ApiError.of(ErrorCode.BAD_REQUEST, '"limit" must be a non-negative integer.')
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            raise ApiError.of(ErrorCode.BAD_REQUEST, '"since" must be a non-negative integer.')
        page = self.ringlog.read(since=since, limit=min(limit, LOG_LIMIT_MAX))
        return {"entries": page.entries, "next": page.next, "dropped": page.dropped}

    async def _diagnostics(self, access: Access) -> schema.DiagnosticsResult:
        status = self.status(access)
        config = client_config_to_dict(self.config) if self.config is not None else None
        entries = self.ringlog.read(limit=500).entries
        journal = [e.describe() for e in self.journal.entries] if self.journal is not None else []
        loop = asyncio.get_running_loop()
        try:
            bundle = await loop.run_in_executor(
                None,
                lambda: build_bundle(
                    status=dict(status),
                    config=config,
                    log=list(entries),
                    checks=list(self.check_problems),
                    journal=journal,
                    helper_version=HELPER_VERSION,
                ),
            )
        except Exception as exc:
            raise ApiError.of(ErrorCode.DIAGNOSTICS_FAILED, detail=str(exc)) from None
        saved: str | None = None
        if access is Access.OPERATOR:
            # Only an operator's request leaves a copy behind: a reader's must never make the helper, which
            # runs as root, write anything (the CLI and the tray save the bundle on the user's side).
            try:
                directory = self.options.state_dir / "diagnostics"
                saved = str(await loop.run_in_executor(None, save_bundle, directory, bundle))
            except OSError as exc:
                self._log("warning", f"could not save the diagnostics bundle: {exc}", code=ErrorCode.DIAGNOSTICS_FAILED)
        return {"path": saved, "bundle": bundle}

    async def _mtu_probe(self) -> schema.MtuProbeResult:
        driver = self._require_driver()
        try:
            result = await driver.probe_mtu()
        except PlatformError as exc:
            raise ApiError.of(ErrorCode.MTU_PROBE_FAILED, detail=str(exc), hint=exc.hint) from None
        if not result.ok or result.largest is None:
            reason = result.reason or "no echo answered"
            raise ApiError.of(ErrorCode.MTU_PROBE_FAILED, f"The MTU probe failed: {reason}.", detail=reason)
        self._log("info", f"MTU probe: {result.largest} (configured {result.configured})")
        return wire.mtu_probe_to_wire(result)


def _event_filter(value: object) -> list[EventKind] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError.of(ErrorCode.BAD_REQUEST, '"events" must be a list of event names.')
    kinds: list[EventKind] = []
    for name in value:
        try:
            kinds.append(EventKind(name))
        except ValueError:
            raise ApiError.of(
                ErrorCode.BAD_REQUEST,
                f"There is no event {name[:40]!r}; known: {', '.join(k.value for k in EventKind)}.",
            ) from None
    return kinds
