"""Fakes shared by the helper/API/CLI unit tests: an in-memory backend, a scripted driver, and a
helper service running on a background event loop, serving a real Unix socket in a temp dir (or the control
transport a test gives it: the emulated Windows named pipe)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, TypeVar

import pytest

from m6t.client import events as ev
from m6t.client.access_keys import AccessKeys
from m6t.client.api.client import DEFAULT_TIMEOUT_S, HelperClient, RequestFailed
from m6t.client.api.schema import Method
from m6t.client.config import ClientConfig
from m6t.client.driver import DriverStatus
from m6t.client.helper.service import HelperOptions, HelperService
from m6t.client.status import KeepaliveStatus, Regeneration, Status
from m6t.client.tunnels import TunnelStatus
from m6t.client.vocabulary import State
from m6t.platform.base import (
    Backend,
    ConnectivityMonitor,
    ControlTransport,
    DesktopAuthority,
    PacketsCallback,
    PlatformError,
    TunDevice,
    UdpChannel,
)
from m6t.platform.hints import Conventions
from m6t.platform.unix_control import UnixSocketTransport
from m6t.protocol.values import Attachment, Route

T = TypeVar("T")

CONFIG_TEXT = """\
[gateway]
address = "198.51.100.2"
ports = [3544]

[tunnel]
prefix = "fd6d:3674:a1b2:0:1::/80"
interface = "m6tx0"
mtu = 1472
keepalive_interval = 30

[routes]
default = true
metric = 1029
prefixes = []

[helper]
operator_group = "m6t"
autoconnect = false
"""


def config_for_this_user() -> str:
    """The test configuration; run without root, the operator group is this user's own, so the tests
    that change things still may."""
    if is_root():
        return CONFIG_TEXT
    grp: Any = importlib.import_module("grp")
    getgid: Callable[[], int] = getattr(os, "getgid")  # noqa: B009 - absent on Windows
    return CONFIG_TEXT.replace('operator_group = "m6t"', f'operator_group = "{grp.getgrgid(getgid()).gr_name}"')


class FakeTun(TunDevice):
    def __init__(self, backend: FakeBackend, name: str) -> None:
        self.backend = backend
        self.name = name

    def start_reading(self, loop: asyncio.AbstractEventLoop, on_packets: PacketsCallback) -> None:
        pass

    def stop_reading(self) -> None:
        pass

    def write(self, packet: bytes) -> None:
        pass

    def close(self) -> None:
        self.backend.interfaces.discard(self.name)
        self.backend.addresses = {a for a in self.backend.addresses if a[0] != self.name}
        self.backend.routes = {r for r in self.backend.routes if r[0] != self.name}


class FakeBackend(Backend):
    name = "fake"

    def __init__(self) -> None:
        self.interfaces: set[str] = set()
        self.addresses: set[tuple[str, str, int]] = set()
        self.routes: set[tuple[str, str, int]] = set()
        self.check_findings: list[PlatformError] = []
        self.calls: list[str] = []
        self.closed = False

    def check(self) -> list[PlatformError]:
        return list(self.check_findings)

    def open_tun(self, name: str) -> TunDevice:
        self.calls.append(f"open_tun {name}")
        self.interfaces.add(name)
        return FakeTun(self, name)

    async def set_mtu(self, ifname: str, mtu: int) -> None:
        self.calls.append(f"set_mtu {ifname} {mtu}")

    async def set_link_up(self, ifname: str) -> None:
        pass

    async def replace_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        self.calls.append(f"replace_address {ifname} {address}")
        self.addresses.add((ifname, str(address), prefixlen))

    async def remove_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        self.calls.append(f"remove_address {ifname} {address}")
        self.addresses.discard((ifname, str(address), prefixlen))

    async def replace_route(self, ifname: str, route: Route) -> None:
        self.calls.append(f"replace_route {ifname} {route.network}")
        self.routes.add((ifname, str(route.network), route.metric))

    async def remove_route(self, ifname: str, route: Route) -> None:
        self.calls.append(f"remove_route {ifname} {route.network}")
        self.routes.discard((ifname, str(route.network), route.metric))

    def interface_exists(self, ifname: str) -> bool:
        return ifname in self.interfaces

    def open_udp(self, gateway: tuple[IPv4Address, int], *, uplink: str | None = None) -> UdpChannel:
        raise NotImplementedError

    def connectivity_monitor(
        self, gateway: IPv4Address, ignore_interface: str, *, uplink: str | None = None
    ) -> ConnectivityMonitor:
        raise NotImplementedError

    async def close(self) -> None:
        self.closed = True


ADDRESS = IPv6Address("fd6d:3674:a1b2:0:1:aaaa:bbbb:cccc")


@dataclass
class FakeDriver:
    """Scripted stand-in for ``m6t.client.driver.ClientDriver``: installs one address and a default route."""

    config: ClientConfig
    backend: Backend
    state: State = State.DISCONNECTED
    address: IPv6Address | None = None
    listeners: list[Callable[[ev.Event], None]] = field(default_factory=list)
    applied: list[ClientConfig] = field(default_factory=list)
    fail_apply: bool = False
    fail_up: PlatformError | None = None
    probe_result: ev.MtuProbeResult | None = None
    tun: TunDevice | None = None
    rtt: float | None = None
    counters: dict[str, int] = field(default_factory=lambda: {"tx_packets": 3, "rx_packets": 2})
    access_keys: list[bytes | None] = field(default_factory=list)
    """Every key the helper handed over (None: no enrolled access)."""
    resumes: int = 0

    async def start(self) -> None:
        pass

    def _set_state(self, state: State, detail: str = "") -> None:
        previous, self.state = self.state, state
        self.emit(ev.StateChanged(state, previous, detail))

    def emit(self, event: ev.Event) -> None:
        for listener in list(self.listeners):
            listener(event)

    async def up(self) -> None:
        if self.fail_up is not None:
            raise self.fail_up
        if self.state is not State.DISCONNECTED:
            return
        ifname = self.config.tunnel.interface
        self.tun = self.backend.open_tun(ifname)
        self._set_state(State.CONNECTING)
        self.address = ADDRESS
        await self.backend.replace_address(ifname, ADDRESS, 128)
        await self.backend.replace_route(ifname, Route(network=IPv6Network("::/0"), metric=1029))
        self.emit(ev.AttachmentChanged(Attachment(IPv4Address("192.0.2.10"), "lan1", IPv4Address("192.0.2.1"))))
        self.emit(ev.AddressChanged(None, ADDRESS, "attached", (IPv4Address("198.51.100.2"), 3544)))
        self._set_state(State.CONNECTED)
        self.rtt = 0.0031
        self.emit(ev.KeepaliveEvent(ev.KeepaliveKind.REPLY, 0.0031, 0))

    async def down(self) -> None:
        if self.state is State.DISCONNECTED:
            return
        ifname = self.config.tunnel.interface
        if self.address is not None:
            await self.backend.remove_address(ifname, self.address, 128)
        if self.tun is not None:
            self.tun.close()
            self.tun = None
        self.address = None
        self._set_state(State.DISCONNECTED)

    async def apply_config(self, new: ClientConfig) -> None:
        if self.fail_apply:
            self.fail_apply = False
            raise PlatformError("netlink said no", hint="try again")
        self.applied.append(new)
        self.config = new

    def status(self) -> DriverStatus:
        """Answered 4 s ago, in a state that began at Unix time 2.0 (the fake's clock is the wall clock)."""
        now = time.time()
        tunnel = self.config.tunnel
        session = Status(
            now=now,
            state=self.state,
            detail="",
            since=2.0,
            attachment=None
            if self.state is State.DISCONNECTED
            else Attachment(IPv4Address("192.0.2.10"), "lan1", IPv4Address("192.0.2.1")),
            gateway_host="198.51.100.2",
            gateway_address=IPv4Address("198.51.100.2"),
            gateway_port=3544,
            ports=(3544,),
            address=self.address,
            confirmed=self.state is State.CONNECTED,
            mtu_configured=tunnel.mtu,
            mtu_effective=tunnel.mtu,
            mtu_evidence=None,
            keepalive=KeepaliveStatus(
                interval=tunnel.keepalive_interval,
                last_sent=None,
                last_reply=None if self.rtt is None else now - 4.0,
                rtt=self.rtt,
                missed=0,
                counting=True,
            ),
            probe=None,
            counters=dict(self.counters),
            regenerations=() if self.address is None else (Regeneration(1.0, "attached", None, self.address),),
            failures=0,
            retry_at=None,
        )
        return DriverStatus(
            session=session,
            wall_offset=0.0,
            interface=self.config.tunnel.interface if self.tun is not None else None,
            wanted_up=self.tun is not None,
            backend=self.backend.name,
            problems=(),
        )

    def add_listener(self, callback: Callable[[ev.Event], None]) -> Callable[[], None]:
        self.listeners.append(callback)
        return lambda: self.listeners.remove(callback) if callback in self.listeners else None

    async def probe_mtu(self) -> ev.MtuProbeResult:
        if self.probe_result is not None:
            return self.probe_result
        return ev.MtuProbeResult(
            ok=True,
            largest=1400,
            configured=self.config.tunnel.mtu,
            effective=self.config.tunnel.mtu,
            tried=((1472, False), (1280, True), (1400, True)),
            reason="",
            duration=0.5,
        )

    async def close(self) -> None:
        await self.down()
        await self.backend.close()

    def set_access_key(self, key: bytes | None) -> None:
        self.access_keys.append(key)

    def tunnels(self) -> tuple[TunnelStatus, ...]:
        return (TunnelStatus(self.status(), primary=True),)

    def resumed(self) -> None:
        self.resumes += 1


class RunningHelper:
    """A :class:`HelperService` on its own thread and event loop."""

    def __init__(
        self,
        tmp: Path,
        *,
        backend: FakeBackend | None = None,
        authority: DesktopAuthority | None = None,
        transport: ControlTransport | None = None,
        address: str | None = None,
        conventions: Conventions | None = None,
        access_keys: AccessKeys | None = None,
        **option_overrides: Any,
    ) -> None:
        self.tmp = tmp
        self.access_keys = access_keys
        self.authority = authority
        """The desktop authority the helper asks (``None``: none, whatever runs on this machine's system bus)."""
        self.transport: ControlTransport = transport if transport is not None else UnixSocketTransport()
        """The control channel served, and the one :meth:`client` connects through."""
        self.conventions = conventions
        self.config_path = tmp / "client.toml"
        if not self.config_path.exists():
            self.config_path.write_text(config_for_this_user())
            self.config_path.chmod(0o644)
        self.socket_path = address if address is not None else str(tmp / "run" / "helper.sock")
        self.state_dir = tmp / "state"
        self.backend = backend or FakeBackend()
        self.drivers: list[FakeDriver] = []
        self.options = HelperOptions(
            config_path=self.config_path, socket_path=self.socket_path, state_dir=self.state_dir, **option_overrides
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.service: HelperService | None = None

    def _driver(self, config: ClientConfig, backend: Backend, more_backends: Callable[[], Backend]) -> FakeDriver:
        driver = FakeDriver(config, backend)
        self.drivers.append(driver)
        return driver

    @property
    def driver(self) -> FakeDriver:
        return self.drivers[-1]

    def run(self, factory: Callable[[], Any]) -> Any:
        """Run a coroutine (made by ``factory``) on the helper's loop and wait for it."""

        async def wrapper() -> Any:
            return await factory()

        future: Future[Any] = asyncio.run_coroutine_threadsafe(wrapper(), self.loop)
        return future.result(timeout=20)

    def call_soon(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()

        result: T = self.run(wrapper)
        return result

    def start(self) -> RunningHelper:
        if not self.thread.is_alive():
            self.thread.start()
        service = HelperService(
            self.options,
            transport=self.transport,
            conventions=self.conventions,
            backend_factory=lambda: self.backend,
            driver_factory=self._driver,
            authority_factory=lambda: self.authority,
            access_keys=self.access_keys,
        )
        self.service = service
        self.run(service.start)
        return self

    def client(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> HelperClient:
        """A blocking client of this helper, through its control channel."""
        return HelperClient(self.socket_path, timeout, transport=self.transport)

    def stop(self) -> None:
        if self.service is not None:
            service, self.service = self.service, None
            self.run(service.stop)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def call(helper: RunningHelper, method: Method, params: dict[str, Any] | None = None) -> Any:
    with helper.client() as client:
        return client.call(method, params)


def failure(helper: RunningHelper, method: Method, params: dict[str, Any] | None = None) -> RequestFailed:
    with pytest.raises(RequestFailed) as caught:
        call(helper, method, params)
    return caught.value


@pytest.fixture
def helper(tmp_path: Path) -> Iterator[RunningHelper]:
    running = RunningHelper(tmp_path).start()
    try:
        yield running
    finally:
        running.close()


# POSIX-only calls, looked up so that the tests type-check for every OS (they skip where they cannot run).
NOBODY = 65534


def is_root() -> bool:
    getuid: Callable[[], int] | None = getattr(os, "getuid", None)
    return getuid is not None and getuid() == 0


def unix_socket() -> socket.socket:
    return socket.socket(getattr(socket, "AF_UNIX"), socket.SOCK_STREAM)  # noqa: B009 - absent on Windows


def other_group() -> tuple[str, int] | None:
    """Some group that is neither root's nor nobody's, to stand for the operator group."""
    grp: Any = importlib.import_module("grp")
    for group in grp.getgrall():
        if group.gr_gid not in (0, NOBODY):
            return str(group.gr_name), int(group.gr_gid)
    return None


def run_as(uid: int, gid: int, groups: list[int], child: Callable[[], bytes]) -> bytes:
    """Fork; the child drops to ``uid``/``gid`` with exactly ``groups``, runs ``child``, and returns its bytes."""
    fork: Callable[[], int] = getattr(os, "fork")  # noqa: B009 - absent on Windows
    setgroups: Callable[[list[int]], None] = getattr(os, "setgroups")  # noqa: B009
    setgid: Callable[[int], None] = getattr(os, "setgid")  # noqa: B009
    setuid: Callable[[int], None] = getattr(os, "setuid")  # noqa: B009
    read_end, write_end = os.pipe()
    pid = fork()
    if pid == 0:  # pragma: no cover - child
        try:
            setgroups(groups)
            setgid(gid)
            setuid(uid)
            os.write(write_end, child())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return data
