"""A stand-in for ``m6t-helper`` that serves the real control API (from the shared schema) on a local socket.

It runs in the test's Qt event loop (QLocalServer), so a test drives it and the tray in one thread with no
races: push an event, wait for the tray to show it.  It knows nothing of tunnels; tests set its status and
config, force errors, and read back the requests it received.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any, cast

from PySide6.QtCore import QObject
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from m6t.client.api import schema
from m6t.client.api.schema import Access, ErrorCode, EventKind, Method, TunnelState

GATEWAY = "198.51.100.2:4500"
ADDRESS = "fd6d:3674:a1b2:0:1:5e1:a2b3:c4d5"
ADDRESS2 = "fd6d:3674:a1b2:0:1:9f0:1122:3344"

Validator = Callable[[dict[str, Any]], list[schema.Problem]]


def make_status(state: str = TunnelState.DISCONNECTED, **overrides: Any) -> schema.Status:
    connected = state in (TunnelState.CONNECTED, TunnelState.DEGRADED, TunnelState.CONNECTING)
    status: schema.Status = {
        "state": state,
        "wanted": "down" if state == TunnelState.DISCONNECTED else "up",
        "address": ADDRESS if connected else None,
        "gateway": GATEWAY if connected else None,
        "interface": "m6t0",
        "mtu": 1472,
        "keepalive": {"rtt_ms": 3.2 if connected else None, "age_s": 4.0 if connected else None, "interval_s": 30.0},
        "attachment": {"local_ipv4": "192.0.2.10", "interface": "lan1", "router": "192.0.2.1"} if connected else None,
        "counters": {
            "tx_packets": 120,
            "tx_bytes": 48_000,
            "rx_packets": 110,
            "rx_bytes": 96_000,
            # Nested as the session's Counters.to_dict() makes them (the schema's dict[str, int] says flat).
            "drops_in": {"foreign_source": 2, "not_our_address": 1},  # type: ignore[dict-item]
            "drops_out": {"no_path": 4},  # type: ignore[dict-item]
        },
        "regenerations": [
            {"time": time.time() - 600, "reason": "attached", "old": None, "new": ADDRESS},
        ]
        if connected
        else [],
        "problems": [],
        "access": Access.OPERATOR.value,
        "helper": {
            "version": "0.1.0",
            "pid": 4242,
            "uptime_s": 81.5,
            "config_path": "/etc/m6t/client.toml",
            "socket_path": "/run/m6t/helper.sock",
        },
    }
    status.update(overrides)  # type: ignore[typeddict-item]
    return status


def make_tunnel(
    interface: str, uplink: str | None, state: str = TunnelState.CONNECTED, **overrides: Any
) -> schema.TunnelSummary:
    """One tunnel's summary as a helper with ``tunnel.uplinks = "all"`` sends it (not the primary)."""
    index = int(interface.removeprefix("m6t") or 0)
    connected = state in (TunnelState.CONNECTED, TunnelState.DEGRADED)
    tunnel: schema.TunnelSummary = {
        "interface": interface,
        "uplink": uplink,
        "primary": False,
        "state": state,
        "detail": "confirmed" if connected else "",
        "address": f"fd6d:3674:a1b2:0:1:{index + 0x100:x}:a2b3:c4d5" if connected else None,
        "gateway": GATEWAY if connected else None,
        "attachment": {"local_ipv4": f"203.0.113.{10 + index}", "interface": uplink or "lan1", "router": None},
        "mtu": 1472,
        "rtt_ms": 8.5 if connected else None,
    }
    tunnel.update(overrides)  # type: ignore[typeddict-item]
    return tunnel


def make_config() -> dict[str, Any]:
    return {
        "gateway": {"address": "198.51.100.2", "ports": [3544, 4500]},
        "tunnel": {"prefix": "fd6d:3674:a1b2:0:1::/80", "interface": "m6t0", "mtu": 1472, "keepalive_interval": 30},
        "routes": {"default": True, "metric": 1029, "prefixes": []},
        "helper": {"operator_group": "m6t", "autoconnect": False},
    }


def default_validator(config: dict[str, Any]) -> list[schema.Problem]:
    """A few rules only the helper can know, so tests can see its verdict land next to a field."""
    problems: list[schema.Problem] = []
    if config.get("gateway", {}).get("address") == "gw.unresolvable.example":
        problems.append({"key": "gateway.address", "message": "cannot be resolved"})
    ports = config.get("gateway", {}).get("ports", [])
    for index, port in enumerate(ports):
        if port < 1024:
            problems.append({"key": f"gateway.ports[{index}]", "message": f"{port} is a privileged port"})
    if "bogus" in config.get("tunnel", {}):
        problems.append({"key": "tunnel.bogus", "message": "unknown setting"})
    return problems


class FakeHelper(QObject):
    def __init__(self, path: str, access: Access = Access.OPERATOR, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.access = access
        self.status = make_status()
        self.config = make_config()
        self.validator: Validator = default_validator
        self.log_entries: list[schema.LogEntry] = [
            {"seq": 1, "time": time.time() - 60, "level": "info", "message": "helper started"},
            {"seq": 2, "time": time.time() - 30, "level": "info", "message": "attached to 192.0.2.10 via lan1"},
            {"seq": 3, "time": time.time() - 5, "level": "warning", "message": "keepalive unanswered (1)"},
        ]
        self.forced_errors: dict[Method, schema.ErrorInfo] = {}
        self.requests: list[schema.ParsedRequest] = []
        self.hello_version = schema.PROTOCOL_VERSION
        self.permissions: schema.Permissions | None = None
        """Sent in hello and status when set; a read-only client may then do what they say ``yes``/``auth`` to
        (as if polkit answered, and for ``auth`` the password was given)."""
        self._server: QLocalServer | None = None
        self._clients: dict[QLocalSocket, bytes] = {}
        self._subscribed: set[QLocalSocket] = set()
        self._seq = 0

    # ----------------------------------------------------------------------------------------- control

    def start(self) -> None:
        QLocalServer.removeServer(self.path)
        server = QLocalServer(self)
        server.newConnection.connect(self._accept)
        if not server.listen(self.path):
            raise OSError(f"fake helper cannot listen on {self.path}: {server.errorString()}")
        self._server = server

    def stop(self) -> None:
        for client in list(self._clients):
            client.abort()
            client.deleteLater()
        self._clients.clear()
        self._subscribed.clear()
        if self._server is not None:
            self._server.close()
            self._server.deleteLater()
            self._server = None

    @property
    def subscribers(self) -> int:
        return len(self._subscribed)

    def methods(self) -> list[Method]:
        return [request.method for request in self.requests]

    def push_event(self, kind: EventKind, data: dict[str, Any], when: float | None = None) -> None:
        self._seq += 1
        line = schema.encode(schema.event(kind, self._seq, time.time() if when is None else when, data))
        for client in self._subscribed:
            client.write(line)
            client.flush()

    def set_state(self, state: str) -> None:
        previous = self.status["state"]
        self.status["state"] = state
        self.push_event(EventKind.STATE, {"state": state, "previous": previous})

    def set_address(self, address: str | None, reason: str) -> None:
        previous = self.status["address"]
        self.status["address"] = address
        if address and isinstance(self.status["regenerations"], list):
            self.status["regenerations"].append(
                {"time": time.time(), "reason": reason, "old": previous, "new": address}
            )
        self.push_event(EventKind.ADDRESS, {"address": address, "previous": previous, "reason": reason})

    def set_tunnels(self, tunnels: list[schema.TunnelSummary]) -> None:
        self.status["tunnels"] = tunnels
        self.push_event(EventKind.TUNNELS, {"tunnels": copy.deepcopy(tunnels)})

    def error(self, code: ErrorCode, hint: str | None = None) -> None:
        self.push_event(EventKind.ERROR, dict(schema.error_info(code, hint=hint)))

    # ----------------------------------------------------------------------------------------- serving

    def _accept(self) -> None:
        assert self._server is not None
        while (client := self._server.nextPendingConnection()) is not None:
            self._clients[client] = b""
            # Bound methods, not lambdas: a lambda holding ``self`` would keep this object alive until the
            # socket's destructor released it, and dying there would delete the socket a second time.
            client.readyRead.connect(self._on_ready_read)
            client.disconnected.connect(self._on_disconnected)
            greeting = dict(schema.hello(self.access, 1000, "m6t-helper (fake)", self.permissions))
            greeting["version"] = self.hello_version
            client.write(schema.encode(greeting))
            client.flush()

    def _on_disconnected(self) -> None:
        client = cast(QLocalSocket, self.sender())
        self._clients.pop(client, None)
        self._subscribed.discard(client)

    def _on_ready_read(self) -> None:
        client = cast(QLocalSocket, self.sender())
        if client not in self._clients:
            return
        buffer = self._clients[client] + bytes(client.readAll().data())
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                self._answer(client, line)
        if client in self._clients:
            self._clients[client] = buffer

    def _answer(self, client: QLocalSocket, line: bytes) -> None:
        try:
            request = schema.parse_request(line)
        except schema.ProtocolError as exc:
            client.write(schema.encode(schema.error_reply(exc.request_id, exc.error)))
            return
        self.requests.append(request)
        try:
            result = self._handle(client, request)
        except schema.ProtocolError as exc:
            reply = schema.error_reply(request.id, exc.error)
        else:
            reply = schema.ok_reply(request.id, result)
        client.write(schema.encode(reply))
        client.flush()

    def _handle(self, client: QLocalSocket, request: schema.ParsedRequest) -> Any:
        method = request.method
        if method in self.forced_errors:
            raise schema.ProtocolError(self.forced_errors[method], request.id)
        if method in schema.OPERATOR_METHODS and self.access is not Access.OPERATOR and not self._permitted(method):
            raise schema.ProtocolError(schema.error_info(ErrorCode.FORBIDDEN), request.id)
        status = self._status_for_client()
        if method is Method.STATUS:
            return status
        if method is Method.SUBSCRIBE:
            self._subscribed.add(client)
            return {"status": status}
        if method is Method.UNSUBSCRIBE:
            self._subscribed.discard(client)
            return {}
        if method is Method.UP:
            self.status["wanted"] = "up"
            self.push_event(EventKind.WANTED, {"wanted": "up"})
            self.set_state(TunnelState.CONNECTING)
            return self._status_for_client()
        if method is Method.DOWN:
            self.status["wanted"] = "down"
            self.push_event(EventKind.WANTED, {"wanted": "down"})
            self.set_state(TunnelState.DISCONNECTED)
            return self._status_for_client()
        if method is Method.CONFIG_GET:
            return {"path": "/etc/m6t/client.toml", "config": copy.deepcopy(self.config), "toml": ""}
        if method is Method.CONFIG_SET:
            return self._config_set(request)
        if method is Method.LOG:
            limit = int(request.params.get("limit", 200))
            return {"entries": self.log_entries[-limit:], "next": len(self.log_entries) + 1, "dropped": 0}
        if method is Method.DIAGNOSTICS:
            return {"path": "/var/lib/m6t/diagnostics/fake.json", "bundle": {"created": time.time(), "status": status}}
        if method is Method.MTU_PROBE:
            return {"mtu": 1452, "previous": self.status["mtu"]}
        raise AssertionError(f"unhandled {method}")

    def _permitted(self, method: Method) -> bool:
        if self.permissions is None:
            return False
        answer = self.permissions["configure" if method is Method.CONFIG_SET else "connect"]
        return answer in ("yes", "auth")

    def _status_for_client(self) -> schema.Status:
        status = copy.deepcopy(self.status)
        status["access"] = self.access.value
        if self.permissions is not None:
            status["permissions"] = self.permissions
        return status

    def _config_set(self, request: schema.ParsedRequest) -> Any:
        config = copy.deepcopy(self.config)
        if "config" in request.params:
            config = copy.deepcopy(request.params["config"])
        for key, value in request.params.get("changes", {}).items():
            section, name = key.split(".", 1)
            config.setdefault(section, {})[name] = value
        problems = self.validator(config)
        if problems:
            raise schema.ProtocolError(schema.error_info(ErrorCode.CONFIG_INVALID, problems=problems), request.id)
        changed = sorted(
            f"{section}.{name}"
            for section in set(config) | set(self.config)
            for name in set(config.get(section, {})) | set(self.config.get(section, {}))
            if config.get(section, {}).get(name) != self.config.get(section, {}).get(name)
        )
        dry_run = bool(request.params.get("dry_run"))
        if not dry_run:
            self.config = config
            if changed:
                self.push_event(EventKind.CONFIG, {"changed": changed})
        return {"config": copy.deepcopy(config), "changed": changed, "applied": not dry_run}
