"""The undo journal: every OS object the helper creates is written down before it is created.

A helper killed with ``kill -9`` (or a crash, or a power cut) cannot clean up after itself, so the next
run reads the journal and removes the leftovers *before doing anything else*, the way OpenVPN's
interactive service and Tunnelblick do.  :class:`JournalingBackend` wraps the real backend, so the
client driver needs no change to be journaled: it records before a create and forgets after a remove.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from m6t.atomic import atomic_write
from m6t.platform.base import (
    Backend,
    ConnectivityMonitor,
    PacketsCallback,
    PlatformError,
    PowerEvents,
    ReachabilityHints,
    TunDevice,
    UdpChannel,
)
from m6t.protocol.values import Route

log = logging.getLogger(__name__)

JOURNAL_NAME = "journal.json"


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str
    """``"interface"``, ``"address"`` or ``"route"``."""
    ifname: str
    address: str = ""
    """The address (``"address"``) or the network (``"route"``)."""
    prefixlen: int = 0
    metric: int = 0
    source: str = ""
    """A source-specific route's source prefix (``"route"``); empty for any source."""

    def to_json(self) -> dict[str, Any]:
        data = {
            "kind": self.kind,
            "ifname": self.ifname,
            "address": self.address,
            "prefixlen": self.prefixlen,
            "metric": self.metric,
        }
        if self.source:
            data["source"] = self.source  # journals written before it stay readable, and read the same
        return data

    @classmethod
    def route(cls, ifname: str, route: Route) -> Entry:
        source = "" if route.source is None else str(route.source)
        return cls("route", ifname, str(route.network), 0, route.metric, source)

    def as_route(self) -> Route:
        return Route(IPv6Network(self.address), self.metric, IPv6Network(self.source) if self.source else None)

    @classmethod
    def from_json(cls, data: Any) -> Entry | None:
        if not isinstance(data, dict):
            return None
        try:
            entry = cls(
                kind=str(data["kind"]),
                ifname=str(data["ifname"]),
                address=str(data.get("address", "")),
                prefixlen=int(data.get("prefixlen", 0)),
                metric=int(data.get("metric", 0)),
                source=str(data.get("source", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return entry if entry.kind in {"interface", "address", "route"} else None

    def describe(self) -> str:
        if self.kind == "interface":
            return f"interface {self.ifname}"
        if self.kind == "address":
            return f"address {self.address}/{self.prefixlen} on {self.ifname}"
        source = f" from {self.source}" if self.source else ""
        return f"route {self.address}{source} metric {self.metric} on {self.ifname}"


class Journal:
    """The set of live OS objects, persisted in ``state_dir/journal.json`` on every change."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / JOURNAL_NAME
        self._entries: list[Entry] = []
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            # A journal we cannot read is still better handled as "nothing to undo" than as a crash loop.
            log.warning("ignoring unreadable journal %s: %s", self.path, exc)
            return
        items = raw.get("entries", []) if isinstance(raw, dict) else []
        for item in items if isinstance(items, list) else []:
            entry = Entry.from_json(item)
            if entry is not None and entry not in self._entries:
                self._entries.append(entry)

    def _save(self) -> None:
        data = json.dumps({"version": 1, "entries": [e.to_json() for e in self._entries]}, indent=1)
        atomic_write(self.path, data.encode("utf-8"), 0o600)

    @property
    def entries(self) -> list[Entry]:
        return list(self._entries)

    def record(self, entry: Entry) -> None:
        if entry not in self._entries:
            self._entries.append(entry)
            self._save()

    def forget(self, entry: Entry) -> None:
        if entry in self._entries:
            self._entries.remove(entry)
            self._save()

    def forget_interface(self, ifname: str) -> None:
        """The interface is gone, and with it every address and route the OS had on it."""
        kept = [e for e in self._entries if e.ifname != ifname]
        if len(kept) != len(self._entries):
            self._entries = kept
            self._save()


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    removed: list[str]
    failed: list[str]
    """Descriptions with the reason, for leftovers that could not be removed."""


async def recover(journal: Journal, backend: Backend) -> RecoveryReport:
    """Remove what a previous run left behind, routes first, then addresses, then interfaces."""
    removed: list[str] = []
    failed: list[str] = []
    order = {"route": 0, "address": 1, "interface": 2}
    for entry in sorted(journal.entries, key=lambda e: order[e.kind]):
        try:
            if not backend.interface_exists(entry.ifname):
                # Addresses and routes vanish with their (non-persistent) interface: nothing to undo.
                journal.forget(entry)
                continue
            if entry.kind == "route":
                await backend.remove_route(entry.ifname, entry.as_route())
            elif entry.kind == "address":
                await backend.remove_address(entry.ifname, IPv6Address(entry.address), entry.prefixlen)
            else:
                remover = getattr(backend, "remove_interface", None)
                if remover is None:
                    failed.append(f"{entry.describe()}: still present and the backend cannot remove interfaces")
                    continue
                result = remover(entry.ifname)
                if asyncio.iscoroutine(result):
                    await result
            journal.forget(entry)
            removed.append(entry.describe())
        except (PlatformError, OSError, ValueError) as exc:
            failed.append(f"{entry.describe()}: {exc}")
    return RecoveryReport(removed, failed)


class _JournaledTun(TunDevice):
    def __init__(self, inner: TunDevice, journal: Journal) -> None:
        self._inner = inner
        self._journal = journal
        self.name = inner.name

    def start_reading(self, loop: asyncio.AbstractEventLoop, on_packets: PacketsCallback) -> None:
        self._inner.start_reading(loop, on_packets)

    def stop_reading(self) -> None:
        self._inner.stop_reading()

    def write(self, packet: bytes) -> None:
        self._inner.write(packet)

    def close(self) -> None:
        self._inner.close()
        self._journal.forget_interface(self.name)

    def __getattr__(self, name: str) -> Any:
        # Backend-specific extras (e.g. a fileno for tests) stay reachable through the wrapper.
        return getattr(self._inner, name)


class JournalingBackend(Backend):
    """A :class:`Backend` that journals every interface, address and route it creates."""

    def __init__(self, inner: Backend, journal: Journal) -> None:
        self.inner = inner
        self.journal = journal
        self.name = inner.name
        self.source_routes = inner.source_routes

    def check(self) -> list[PlatformError]:
        return self.inner.check()

    def open_tun(self, name: str) -> TunDevice:
        entry = Entry("interface", name)
        self.journal.record(entry)
        try:
            tun = self.inner.open_tun(name)
        except BaseException:
            self.journal.forget(entry)
            raise
        if tun.name != name:
            # The OS may pick the name (macOS utun): journal the real one.
            self.journal.forget(entry)
            self.journal.record(Entry("interface", tun.name))
        return _JournaledTun(tun, self.journal)

    async def set_mtu(self, ifname: str, mtu: int) -> None:
        await self.inner.set_mtu(ifname, mtu)

    async def set_link_up(self, ifname: str) -> None:
        await self.inner.set_link_up(ifname)

    async def replace_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        self.journal.record(Entry("address", ifname, str(address), prefixlen))
        await self.inner.replace_address(ifname, address, prefixlen)

    async def remove_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        await self.inner.remove_address(ifname, address, prefixlen)
        self.journal.forget(Entry("address", ifname, str(address), prefixlen))

    async def replace_route(self, ifname: str, route: Route) -> None:
        self.journal.record(Entry.route(ifname, route))
        await self.inner.replace_route(ifname, route)

    async def remove_route(self, ifname: str, route: Route) -> None:
        await self.inner.remove_route(ifname, route)
        self.journal.forget(Entry.route(ifname, route))

    def interface_exists(self, ifname: str) -> bool:
        return self.inner.interface_exists(ifname)

    def uplink_problem(self, uplink: str) -> PlatformError | None:
        return self.inner.uplink_problem(uplink)

    def open_udp(self, gateway: tuple[IPv4Address, int], *, uplink: str | None = None) -> UdpChannel:
        return self.inner.open_udp(gateway, uplink=uplink)

    def connectivity_monitor(
        self, gateway: IPv4Address, ignore_interface: str, *, uplink: str | None = None
    ) -> ConnectivityMonitor:
        return self.inner.connectivity_monitor(gateway, ignore_interface, uplink=uplink)

    def power_events(self) -> PowerEvents | None:
        return self.inner.power_events()

    def reachability_hints(self) -> ReachabilityHints | None:
        return self.inner.reachability_hints()

    async def close(self) -> None:
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
