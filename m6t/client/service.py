"""``m6t-helper``: the privileged service that owns the tunnel, the platform backend and the config.

Start-up order matters and is fixed:

1. undo what a dead run left behind (the journal), *before anything else* touches the network;
2. load the configuration (a broken file stops the helper with one clear line);
3. run the host checks (TUN driver, IPv6, interface name) and keep their findings for ``status``;
4. start the client driver behind a journaling backend, and the control API socket;
5. bring the tunnel up if the user last wanted it up (or, on a first run, if ``helper.autoconnect``).

Everything the user can change goes through the control API (:mod:`m6t.client.api.server`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from m6t.client import events as ev
from m6t.client.api import schema
from m6t.client.api.authorization import is_operator
from m6t.client.api.schema import Access, ErrorCode, ErrorInfo, EventKind, Method, ParsedRequest
from m6t.client.api.server import ApiError, Connection, ControlServer
from m6t.client.config import (
    ClientConfig,
    ConfigError,
    client_config_from_dict,
    client_config_to_dict,
    dump_client_config,
    load_client_config,
    set_client_option,
)
from m6t.client.diagnostics import build_bundle, save_bundle
from m6t.client.journal import Journal, JournalingBackend, RecoveryReport, atomic_write, recover
from m6t.client.ringlog import RingLog
from m6t.configfile import toml_value
from m6t.platform import control_transport
from m6t.platform.base import Backend, PeerIdentity, PlatformError

log = logging.getLogger("m6t.helper")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("m6t")
    except PackageNotFoundError:
        return "0.1.0.dev0"  # a source tree that was never installed


HELPER_VERSION = _version()
STATE_FILE = "state.json"
API_SOURCE = "<control API>"
SHUTDOWN_TIMEOUT_S = 10.0
LOG_LIMIT_MAX = 2000


class Driver(Protocol):
    """What the helper needs of the client driver (``m6t.client.driver.ClientDriver``)."""

    async def start(self) -> None: ...
    async def up(self) -> None: ...
    async def down(self) -> None: ...
    async def apply_config(self, new: ClientConfig) -> None: ...
    def status(self) -> dict[str, Any]: ...
    def add_listener(self, callback: Callable[[Any], None]) -> Callable[[], None]: ...
    async def probe_mtu(self) -> Any: ...
    async def close(self) -> None: ...


DriverFactory = Callable[[ClientConfig, Backend], Driver]
BackendFactory = Callable[[], Backend]


def default_driver_factory(config: ClientConfig, backend: Backend) -> Driver:
    from m6t.client.driver import ClientDriver

    driver: Driver = ClientDriver(config, backend)
    return driver


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


# ------------------------------------------------------------------------------- driver events → API


def api_error_code(driver_code: object) -> ErrorCode:
    """The session numbers its errors with the control API's codes; anything unknown is a generic tunnel error."""
    known = schema.code_from_wire(driver_code)
    return known if known is not None else ErrorCode.TUNNEL_ERROR


def translate_event(event: Any) -> tuple[EventKind, dict[str, Any]] | None:
    """The API event for a driver event, ``None`` for those the API does not stream."""
    if isinstance(event, ev.StateChanged):
        return EventKind.STATE, {"state": event.state.value, "previous": event.previous.value, "detail": event.detail}
    if isinstance(event, ev.AttachmentChanged):
        return EventKind.ATTACHMENT, {"attachment": ev.attachment_dict(event.attachment)}
    if isinstance(event, ev.AddressChanged):
        gateway = None if event.gateway is None else f"{event.gateway[0]}:{event.gateway[1]}"
        return EventKind.ADDRESS, {
            "address": None if event.new is None else str(event.new),
            "previous": None if event.old is None else str(event.old),
            "reason": event.reason,
            "gateway": gateway,
        }
    if isinstance(event, ev.KeepaliveEvent):
        if event.what is ev.KeepaliveKind.REPLY and event.rtt is not None:
            return EventKind.KEEPALIVE, {"rtt_ms": round(event.rtt * 1000.0, 3)}
        return None
    if isinstance(event, ev.CountersEvent):
        return EventKind.COUNTERS, {"counters": dict(event.counters)}
    if isinstance(event, ev.ErrorEvent):
        code = api_error_code(int(event.code))
        return EventKind.ERROR, dict(schema.error_info(code, event.message or None, detail=event.detail or None))
    if isinstance(event, ev.MtuChanged):
        return EventKind.MTU, {
            "mtu": event.effective,
            "previous": event.previous,
            "configured": event.configured,
            "reason": event.evidence,
            "path_mtu": event.path_mtu,
        }
    return None


def describe_event(kind: EventKind, data: dict[str, Any]) -> tuple[str, str] | None:
    """``(level, sentence)`` for the ring log, ``None`` for events too chatty to keep."""
    if kind is EventKind.STATE:
        detail = f": {data['detail']}" if data.get("detail") else ""
        return "info", f"state {data.get('previous')} → {data['state']}{detail}"
    if kind is EventKind.ATTACHMENT:
        att = data.get("attachment")
        if att is None:
            return "warning", "no IPv4 path toward the gateway"
        router = f", router {att['router']}" if att.get("router") else ""
        return "info", f"attached via {att['interface']} ({att['local_ipv4']}{router})"
    if kind is EventKind.ADDRESS:
        reason = f" ({data['reason']})" if data.get("reason") else ""
        return "info", f"address {data.get('previous')} → {data.get('address')}{reason}"
    if kind is EventKind.MTU:
        return "info", f"MTU {data.get('previous')} → {data['mtu']} ({data.get('reason')})"
    if kind is EventKind.ERROR:
        detail = f" ({data['detail']})" if data.get("detail") else ""
        return "error", f"[{data['code']}] {data['message']}{detail}"
    if kind is EventKind.CONFIG:
        return "info", f"configuration changed: {', '.join(data['changed']) or 'nothing'}"
    if kind is EventKind.WANTED:
        return "info", f"tunnel wanted {data['wanted']}"
    return None


# ----------------------------------------------------------------------------------------- status


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    return {f"{section}.{key}": value for section, table in config.items() for key, value in table.items()}


def _gateway_text(raw: Any) -> str | None:
    if isinstance(raw, dict):
        host = raw.get("address") or raw.get("host")
        port = raw.get("port")
        if host is None:
            return None
        return f"{host}:{port}" if port is not None else str(host)
    return None if raw is None else str(raw)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def normalize_status(raw: dict[str, Any], *, now: float) -> dict[str, Any]:
    """The API's compact status fields from the driver's richer snapshot (kept whole under ``session``)."""
    mtu_raw = raw.get("mtu")
    mtu = mtu_raw.get("effective") if isinstance(mtu_raw, dict) else mtu_raw
    ka_raw = raw.get("keepalive")
    ka = ka_raw if isinstance(ka_raw, dict) else {}
    rtt = _number(ka.get("rtt"))
    if rtt is None and _number(ka.get("rtt_ms")) is not None:
        rtt = (_number(ka.get("rtt_ms")) or 0.0) / 1000.0
    last_reply = _number(ka.get("last_reply"))
    regenerations = raw.get("regenerations")
    return {
        "state": str(raw.get("state", schema.TunnelState.DISCONNECTED.value)),
        "detail": str(raw.get("detail") or ""),
        "address": raw.get("address"),
        "gateway": _gateway_text(raw.get("gateway")),
        "mtu": int(mtu) if isinstance(mtu, int) else None,
        "keepalive": {
            "rtt_ms": None if rtt is None else round(rtt * 1000.0, 3),
            "age_s": None if last_reply is None else round(max(0.0, now - last_reply), 1),
            "interval_s": _number(ka.get("interval")) or _number(ka.get("interval_s")),
            "last_sent": _number(ka.get("last_sent")),
            "last_reply": last_reply,
            "missed": int(ka.get("missed") or 0),
        },
        "mtu_detail": raw.get("mtu_detail") if isinstance(raw.get("mtu_detail"), dict) else None,
        "attachment": raw.get("attachment"),
        "counters": raw.get("counters") if isinstance(raw.get("counters"), dict) else {},
        "regenerations": [_jsonable(r) for r in regenerations if isinstance(r, dict)]
        if isinstance(regenerations, list)
        else [],
        "since": _number(raw.get("since")),
    }


def check_problem(error: PlatformError) -> ErrorInfo:
    """A start-up check finding with its API code (the backend says what, we say which number)."""
    code = getattr(error, "code", None)
    api_code = schema.code_from_wire(code) if code is not None else None
    if api_code is None:
        text = str(error).lower()
        if "tun" in text and ("missing" in text or "not found" in text or "/dev/net/tun" in text):
            api_code = ErrorCode.TUN_MISSING
        elif "ipv6" in text and "disabled" in text:
            api_code = ErrorCode.IPV6_DISABLED
        elif "cap_net_admin" in text or "permission" in text or "privilege" in text:
            api_code = ErrorCode.PERMISSION_DENIED
        else:
            api_code = ErrorCode.PLATFORM_ERROR
    sentence = str(error)
    sentence = sentence[0].upper() + sentence[1:] if sentence else api_code.sentence
    if not sentence.endswith("."):
        sentence += "."
    return schema.error_info(api_code, sentence, hint=error.hint)


# ---------------------------------------------------------------------------------------- the service


@dataclass
class _Persistent:
    wanted: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class HelperService:
    def __init__(
        self,
        options: HelperOptions,
        *,
        backend_factory: BackendFactory = default_backend_factory,
        driver_factory: DriverFactory = default_driver_factory,
    ) -> None:
        self.options = options
        self._backend_factory = backend_factory
        self._driver_factory = driver_factory
        self.ringlog = RingLog(options.log_capacity)
        self.started_at = time.monotonic()
        self.config: ClientConfig | None = None
        self.backend: JournalingBackend | None = None
        self.driver: Driver | None = None
        self.journal: Journal | None = None
        self.server: ControlServer | None = None
        self.recovery: RecoveryReport | None = None
        self.check_problems: list[ErrorInfo] = []
        self.runtime_problem: ErrorInfo | None = None
        self.wanted = "down"
        self._change_lock = asyncio.Lock()
        self._remove_listener: Callable[[], None] | None = None
        self._last_status: dict[str, Any] = {}

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
            self.config = load_client_config(self.options.config_path)
        except ConfigError as exc:
            await inner.close()
            raise StartupError(f"invalid configuration:\n{exc}") from None
        except OSError as exc:
            await inner.close()
            raise StartupError(f"cannot read the configuration {self.options.config_path}: {exc}") from None

        persistent = self._load_state()
        if persistent.wanted in {"up", "down"}:
            self.wanted = persistent.wanted
        else:
            self.wanted = "up" if self.config.helper.autoconnect else "down"

        self.run_checks(interface=True)
        self.driver = self._driver_factory(self.config, self.backend)
        self._remove_listener = self.driver.add_listener(self._on_driver_event)
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
                control_transport().listener(self.options.socket_path),
                self,
                self.access_for,
                server_name=f"m6t-helper {HELPER_VERSION}",
                forbidden_message=self.forbidden,
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

    # -- persistence

    def _state_path(self) -> Path:
        return self.options.state_dir / STATE_FILE

    def _load_state(self) -> _Persistent:
        try:
            data = json.loads(self._state_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return _Persistent()
        if not isinstance(data, dict):
            return _Persistent()
        wanted = data.get("wanted")
        return _Persistent(wanted=wanted if isinstance(wanted, str) else None, extra=data)

    def _save_wanted(self, wanted: str) -> None:
        data = {"version": 1, "wanted": wanted, "changed": time.time()}
        try:
            atomic_write(self._state_path(), json.dumps(data).encode("utf-8"), 0o644)
        except OSError as exc:
            raise ApiError.of(ErrorCode.STATE_WRITE_FAILED, detail=str(exc)) from None

    # -- checks and problems

    def run_checks(self, *, interface: bool = False) -> None:
        """Host checks; ``interface`` also looks for another owner of the tunnel's name, which only
        means something before our own driver has created it (at start-up)."""
        assert self.backend is not None and self.config is not None
        try:
            findings = [check_problem(e) for e in self.backend.check()]
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

    def _report_platform_error(self, exc: PlatformError) -> ErrorInfo:
        info = schema.error_info(ErrorCode.PLATFORM_ERROR, str(exc), hint=exc.hint)
        self.runtime_problem = info
        self._emit(EventKind.ERROR, dict(info))
        return info

    # -- authorization

    @property
    def operator_group(self) -> str:
        return self.config.helper.operator_group if self.config is not None else schema.DEFAULT_OPERATOR_GROUP

    def access_for(self, peer: PeerIdentity | None) -> Access:
        return Access.OPERATOR if is_operator(peer, self.operator_group) else Access.READ_ONLY

    def forbidden(self, method: Method) -> ErrorInfo:
        group = self.operator_group
        actions = {
            Method.UP: "bring the tunnel up",
            Method.DOWN: "bring the tunnel down",
            Method.CONFIG_SET: "change the configuration",
            Method.MTU_PROBE: "run an MTU probe",
        }
        return schema.error_info(
            ErrorCode.FORBIDDEN,
            f"Only root and members of the group '{group}' may {actions.get(method, 'do that')}; "
            "you can still read the status.",
            hint=f"ask an administrator to run: usermod -aG {group} $USER, then log in again",
        )

    # -- events

    def _log(self, level: str, message: str, *, event: str | None = None, code: int | None = None) -> None:
        self.ringlog.append(level, message, event=event, code=code)
        log.log(logging.getLevelName(level.upper()), "%s", message)

    def _emit(self, kind: EventKind, data: dict[str, Any]) -> None:
        described = describe_event(kind, data)
        if described is not None:
            self._log(described[0], described[1], event=kind.value, code=data.get("code"))
        if self.server is not None:
            self.server.broadcast(kind, data)

    def _on_driver_event(self, event: Any) -> None:
        if isinstance(event, ev.KeepaliveEvent) and event.what is ev.KeepaliveKind.MISSED:
            self._log("warning", f"keepalive unanswered ({event.missed} in a row)", event="keepalive")
        try:
            translated = translate_event(event)
        except Exception:
            log.exception("cannot translate driver event %r", event)
            return
        if translated is None:
            return
        kind, data = translated
        if kind is EventKind.ERROR:
            self.runtime_problem = schema.error_info(
                ErrorCode(data["code"]), data["message"], detail=data.get("detail")
            )
        elif kind is EventKind.STATE and data["state"] in {
            schema.TunnelState.CONNECTED.value,
            schema.TunnelState.DISCONNECTED.value,
        }:
            self.runtime_problem = None
        self._emit(kind, data)

    # -- status

    def status(self, access: Access) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        if self.driver is not None:
            try:
                raw = self.driver.status()
            except Exception:
                log.exception("driver status failed")
        self._last_status = raw
        status = normalize_status(raw, now=time.time())
        problems = list(self.check_problems)
        if self.runtime_problem is not None and self.runtime_problem not in problems:
            problems.append(self.runtime_problem)
        status.update(
            wanted=self.wanted,
            interface=raw.get("interface") or (self.config.tunnel.interface if self.config is not None else None),
            problems=problems,
            access=access.value,
            helper={
                "version": HELPER_VERSION,
                "pid": os.getpid(),
                "uptime_s": round(time.monotonic() - self.started_at, 1),
                "config_path": str(self.options.config_path),
                "socket_path": self.options.socket_path,
            },
            session=_jsonable(raw),
        )
        return status

    # -- requests

    async def handle(self, connection: Connection, request: ParsedRequest) -> Any:
        params = request.params
        method = request.method
        if method is Method.STATUS:
            return self.status(connection.access)
        if method is Method.SUBSCRIBE:
            kinds = _event_filter(params.get("events"))
            # No await between these two lines: the snapshot and the start of the stream are atomic.
            connection.subscribe(kinds)
            return {"status": self.status(connection.access)}
        if method is Method.UNSUBSCRIBE:
            connection.unsubscribe()
            return {}
        if method is Method.UP or method is Method.DOWN:
            return await self._up_down("up" if method is Method.UP else "down", connection.access)
        if method is Method.CONFIG_GET:
            return self._config_get(params)
        if method is Method.CONFIG_SET:
            return await self._config_set(params)
        if method is Method.LOG:
            return self._log_page(params)
        if method is Method.DIAGNOSTICS:
            return await self._diagnostics(connection.access)
        if method is Method.MTU_PROBE:
            return await self._mtu_probe()
        raise ApiError.of(ErrorCode.UNKNOWN_METHOD)  # pragma: no cover - parse_request knows every Method

    async def _up_down(self, wanted: str, access: Access) -> dict[str, Any]:
        async with self._change_lock:
            driver = self._require_driver()
            if wanted != self.wanted:
                self._save_wanted(wanted)
                self.wanted = wanted
                self._emit(EventKind.WANTED, {"wanted": wanted})
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

    def _config_get(self, params: dict[str, Any]) -> dict[str, Any]:
        assert self.config is not None
        data = client_config_to_dict(self.config)
        result: dict[str, Any] = {
            "path": str(self.options.config_path),
            "config": data,
            "toml": dump_client_config(self.config),
        }
        key = params.get("key")
        if key is not None:
            if not isinstance(key, str):
                raise ApiError.of(ErrorCode.BAD_REQUEST, '"key" must be a string like "tunnel.mtu".')
            flat = _flatten(data)
            if key not in flat:
                from m6t.client.config import client_config_keys

                if key in client_config_keys():
                    value = None  # a known optional setting that is not set
                else:
                    raise ApiError.of(
                        ErrorCode.CONFIG_UNKNOWN_KEY,
                        f"There is no configuration setting {key!r}.",
                        problems=[{"key": key, "message": "unknown setting"}],
                    )
            else:
                value = flat[key]
            result["key"] = key
            result["value"] = value
        return result

    def validate_change(self, params: dict[str, Any]) -> ClientConfig:
        """The configuration ``params`` asks for, validated as a whole, or :class:`ApiError` listing every problem."""
        assert self.config is not None
        problems: list[schema.Problem] = []
        changes = params.get("changes", {})
        full = params.get("config")
        if changes is None:
            changes = {}
        if not isinstance(changes, dict):
            raise ApiError.of(ErrorCode.BAD_REQUEST, '"changes" must be an object of "section.key": value.')
        if full is None and not changes:
            raise ApiError.of(ErrorCode.BAD_REQUEST, 'config.set needs "changes" or "config".')
        candidate = self.config
        if full is not None:
            if not isinstance(full, dict):
                raise ApiError.of(ErrorCode.BAD_REQUEST, '"config" must be an object of sections.')
            try:
                candidate = client_config_from_dict(copy.deepcopy(full), API_SOURCE)
            except ConfigError as exc:
                problems.extend(_problems(exc))
        for key, value in changes.items():
            try:
                raw = value if isinstance(value, str) else ("" if value is None else toml_value(value))
            except TypeError:
                problems.append({"key": str(key), "message": f"cannot use a {type(value).__name__} here"})
                continue
            try:
                candidate = set_client_option(candidate, str(key), raw, source=API_SOURCE)
            except ConfigError as exc:
                problems.extend(_problems(exc))
        if problems:
            raise ApiError.of(ErrorCode.CONFIG_INVALID, problems=problems)
        return candidate

    async def _config_set(self, params: dict[str, Any]) -> dict[str, Any]:
        async with self._change_lock:
            assert self.config is not None
            new = self.validate_change(params)
            old = self.config
            old_flat = _flatten(client_config_to_dict(old))
            new_flat = _flatten(client_config_to_dict(new))
            changed = sorted(k for k in old_flat.keys() | new_flat.keys() if old_flat.get(k) != new_flat.get(k))
            if params.get("dry_run") is True:
                return {"config": client_config_to_dict(new), "changed": changed, "applied": False}
            if not changed:
                return {"config": client_config_to_dict(new), "changed": [], "applied": True}
            path = self.options.config_path
            old_text = dump_client_config(old)
            self._write_config(path, dump_client_config(new))
            driver = self._require_driver()
            try:
                await driver.apply_config(new)
            except Exception as exc:
                # Nothing half-applied: the file and the tunnel go back to what they were.
                with contextlib.suppress(Exception):
                    self._write_config(path, old_text)
                with contextlib.suppress(Exception):
                    await driver.apply_config(old)
                hint = exc.hint if isinstance(exc, PlatformError) else None
                raise ApiError.of(
                    ErrorCode.PLATFORM_ERROR,
                    "The new configuration could not be applied; the previous one is back in place.",
                    hint=hint,
                    detail=str(exc),
                ) from None
            self.config = new
            self._emit(EventKind.CONFIG, {"changed": changed})
            return {"config": client_config_to_dict(new), "changed": changed, "applied": True}

    def _write_config(self, path: Path, text: str) -> None:
        try:
            mode = path.stat().st_mode & 0o7777
        except OSError:
            mode = 0o644
        try:
            atomic_write(path, text.encode("utf-8"), mode)
        except OSError as exc:
            raise ApiError.of(ErrorCode.CONFIG_WRITE_FAILED, detail=f"{path}: {exc.strerror or exc}") from None

    def _log_page(self, params: dict[str, Any]) -> dict[str, Any]:
        limit = params.get("limit", 200)
        since = params.get("since", 0)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ApiError.of(ErrorCode.BAD_REQUEST, '"limit" must be a non-negative integer.')
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            raise ApiError.of(ErrorCode.BAD_REQUEST, '"since" must be a non-negative integer.')
        page = self.ringlog.read(since=since, limit=min(limit, LOG_LIMIT_MAX))
        return {"entries": page.entries, "next": page.next, "dropped": page.dropped}

    async def _diagnostics(self, access: Access) -> dict[str, Any]:
        status = self.status(access)
        config = client_config_to_dict(self.config) if self.config is not None else None
        entries = self.ringlog.read(limit=500).entries
        journal = [e.describe() for e in self.journal.entries] if self.journal is not None else []
        loop = asyncio.get_running_loop()
        try:
            bundle = await loop.run_in_executor(
                None,
                lambda: build_bundle(
                    status=status,
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
        try:
            saved = str(await loop.run_in_executor(None, save_bundle, self.options.state_dir / "diagnostics", bundle))
        except OSError as exc:
            self._log("warning", f"could not save the diagnostics bundle: {exc}", code=ErrorCode.DIAGNOSTICS_FAILED)
        return {"path": saved, "bundle": bundle}

    async def _mtu_probe(self) -> dict[str, Any]:
        driver = self._require_driver()
        before = normalize_status(driver.status(), now=time.time()).get("mtu")
        try:
            outcome = await driver.probe_mtu()
        except PlatformError as exc:
            raise ApiError.of(ErrorCode.MTU_PROBE_FAILED, detail=str(exc), hint=exc.hint) from None
        result = outcome.to_dict() if hasattr(outcome, "to_dict") else outcome
        if isinstance(result, int):
            return {"mtu": result, "previous": before}
        if not isinstance(result, dict):
            raise ApiError.of(ErrorCode.INTERNAL, detail=f"unexpected probe result {result!r}")
        largest = result.get("mtu", result.get("largest"))
        if not result.get("ok", True) or not isinstance(largest, int):
            reason = str(result.get("reason") or "no echo answered")
            raise ApiError.of(ErrorCode.MTU_PROBE_FAILED, f"The MTU probe failed: {reason}.", detail=reason)
        previous = result.get("previous", result.get("effective", before))
        answer: dict[str, Any] = {"mtu": largest, "previous": previous}
        for key in ("configured", "tried", "duration"):
            if key in result:
                answer[key] = result[key]
        self._log("info", f"MTU probe: {answer['mtu']} (configured {result.get('configured')})")
        return answer


def _problems(exc: ConfigError) -> list[schema.Problem]:
    problems: list[schema.Problem] = []
    for problem in exc.problems:
        item: schema.Problem = {"key": problem.key, "message": problem.message}
        if problem.file and problem.file != API_SOURCE:
            item["file"] = problem.file
        problems.append(item)
    return problems


def _event_filter(value: Any) -> list[EventKind] | None:
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# ------------------------------------------------------------------------------------------- running


async def run_helper(
    options: HelperOptions,
    *,
    backend_factory: BackendFactory = default_backend_factory,
    driver_factory: DriverFactory = default_driver_factory,
    ready: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); raises :class:`StartupError` if it cannot start."""
    service = HelperService(options, backend_factory=backend_factory, driver_factory=driver_factory)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await service.start()
    except BaseException:
        await service.stop()
        raise
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        await service.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m6t-helper", description="The m6t privileged helper: runs the tunnel and serves the control API."
    )
    parser.add_argument("--config", required=True, type=Path, help="client configuration file (TOML)")
    parser.add_argument("--socket", default=schema.DEFAULT_SOCKET_PATH, help="control socket path (%(default)s)")
    parser.add_argument(
        "--state-dir", default=Path(schema.DEFAULT_STATE_DIR), type=Path, help="state directory (%(default)s)"
    )
    parser.add_argument("--foreground", action="store_true", help="do not detach; log to stderr")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    return parser


def _daemonize() -> Callable[[str], None] | None:
    """Detach, returning (in the child) the function that tells the waiting parent how start-up went.

    The parent exits only once the socket listens (or start-up failed, with the reason), so
    ``m6t-helper && m6t status`` works.  ``None`` where the OS cannot fork: the caller stays in front.
    """
    fork = getattr(os, "fork", None)
    setsid = getattr(os, "setsid", None)
    if fork is None or setsid is None:
        return None
    read_end, write_end = os.pipe()
    if fork() > 0:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read().decode("utf-8", "replace")
        if message.startswith("ok"):
            os._exit(0)
        sys.stderr.write(message or "m6t-helper: exited during start-up\n")
        os._exit(1)
    os.close(read_end)
    setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)

    def report(message: str) -> None:
        with contextlib.suppress(OSError):
            os.write(write_end, message.encode("utf-8"))
            os.close(write_end)

    return report


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config_path: Path = args.config.absolute()
    state_dir: Path = args.state_dir.absolute()
    report: Callable[[str], None] | None = None
    if not args.foreground:
        report = _daemonize()
        if report is not None:
            state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            logfile = os.open(state_dir / "helper.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            os.dup2(logfile, 2)
            os.close(logfile)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    options = HelperOptions(config_path=config_path, socket_path=args.socket, state_dir=state_dir)

    def ready() -> None:
        if report is not None:
            report("ok\n")

    try:
        asyncio.run(run_helper(options, ready=ready))
    except StartupError as exc:
        message = f"m6t-helper: {exc}\n"
        sys.stderr.write(message)
        if report is not None:
            report(message)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
