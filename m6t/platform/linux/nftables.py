"""The gateway's kernel fast lane: an nftables table of its own, driven through libnftables' Python binding.

The table (``inet m6t_gw_<tunnel>``) polices what arrives on the gateway's UDP ports before the socket
sees it, in the ``input`` hook (after reassembly, so a fragmented datagram is judged whole):

1. a datagram from an established mobile node — outer IPv4 source, UDP source port, local port and inner
   IPv6 source of an active state, all four — is accepted at once, and refreshes its element's timeout;
2. anything else is counted against its source IPv4 address (a dynamic set of token buckets, one per
   address) and dropped past that address's rate;
3. what is left is counted against one overall ceiling and dropped past it;
4. the rest goes on to the gateway, which applies its own exact rules (the core's per-IPv4 state limit).

Keying the established lane on the inner source as well means a host that got one state accepted cannot
send a flood of *new* sources through the fast lane: only its own state's packets skip the policing.
The gateway adds an element when a state becomes active and deletes it when the state goes; the element's
timeout (refreshed by the mobile node's own packets) only guards against a removal that never came.

What it does not do: the limits count packets as netfilter sees them, so datagrams a NIC's GRO merged for
the gateway's UDP_GRO socket before the input hook count once (only same-flow, same-size runs merge); and
an element kept alive only by the Home Agent's side (the mobile node silent for longer than its timeout)
lapses before its state, the node's next datagrams then meeting the per-IPv4 policing like a new one's.

Driven through Debian's ``python3-nftables`` binding (``import nftables``: ctypes over libnftables.so.1),
every change one transaction: the table in libnftables' own syntax (see :func:`ruleset`), elements,
counters and listings as JSON.  Nothing here shells out.  Creating the table replaces any table of the
same name (a crashed gateway's), in the same transaction.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from m6t.platform.base import PlatformError

assert sys.platform == "linux"

FAMILY: Final = "inet"
TABLE_PREFIX: Final = "m6t_gw_"
CHAIN: Final = "input"
POLICE_CHAIN: Final = "police"
ESTABLISHED_SET: Final = "established"
SOURCES_SET: Final = "unknown_sources"
PRIORITY: Final = -300
"""Before the usual filter chains (0) of the input hook: a policed datagram costs them nothing."""
MAX_RATE: Final = 10_000_000
"""Packets per second at most, for any limit: more than any single host's receive path anyway."""
MAX_BURST: Final = 10_000_000
MAX_SOURCE_TIMEOUT_S: Final = 86_400
MAX_SET_SIZE: Final = 2**32 - 1
"""A set's size is 32 bits in netlink; a larger cap on states is no cap on the set."""
MAX_TRACKED_SOURCES: Final = 262_144
"""Source addresses policed individually at once; past it, new sources meet only the overall ceiling."""
ELEMENTS_PER_TRANSACTION: Final = 4096
"""Set elements per libnftables call: a transaction of a few milliseconds at most."""

COUNTERS: Final = ("established", "policed_per_ipv4", "policed_ceiling", "passed")
"""The table's named counters: the fast lane, the two policing drops, and what went on to the gateway."""

Element = tuple[int, int, int, int]
"""An established mobile node: ``(inner IPv6 source, outer IPv4 source, UDP source port, local port)``,
addresses as ints."""


class _Binding(Protocol):
    """What we use of ``nftables.Nftables``."""

    def cmd(self, cmdline: str) -> tuple[int, str, str]: ...

    def json_cmd(self, json_root: Any) -> tuple[int, Any, str]: ...


@dataclass(frozen=True, slots=True)
class FastLaneRules:
    """Everything the table is built from."""

    table: str
    listen_address: str
    """The gateway's IPv4 listen address; ``0.0.0.0`` polices the ports on every local address."""
    ports: tuple[int, ...]
    per_ipv4_per_s: int
    per_ipv4_burst: int
    total_per_s: int
    total_burst: int
    established_timeout_s: int
    max_established: int

    def __post_init__(self) -> None:
        if not self.ports or not all(1 <= p <= 65535 for p in self.ports):
            raise ValueError(f"ports must be 1..65535, not {self.ports}")
        for name in ("per_ipv4_per_s", "total_per_s"):
            if not 1 <= getattr(self, name) <= MAX_RATE:
                raise ValueError(f"{name} must be 1..{MAX_RATE}, not {getattr(self, name)}")
        for name in ("per_ipv4_burst", "total_burst"):
            if not 1 <= getattr(self, name) <= MAX_BURST:
                raise ValueError(f"{name} must be 1..{MAX_BURST}, not {getattr(self, name)}")
        if self.established_timeout_s < 1 or self.max_established < 1:
            raise ValueError("the established set needs a positive timeout and size")
        if not table_name_ok(self.table):
            raise ValueError(f"bad nftables table name {self.table!r}")
        ipaddress.IPv4Address(self.listen_address)

    @property
    def source_timeout_s(self) -> int:
        """How long a quiet source's bucket is kept: until it would have refilled anyway (at least 10 s)."""
        refill = -(-self.per_ipv4_burst // self.per_ipv4_per_s) + 1
        return min(MAX_SOURCE_TIMEOUT_S, max(10, refill))


def table_name(interface: str) -> str:
    """The gateway's table for its tunnel interface (interface names are unique on a host)."""
    return TABLE_PREFIX + "".join(c if c.isalnum() or c == "_" else "_" for c in interface)


def table_name_ok(name: str) -> bool:
    return name.startswith(TABLE_PREFIX) and all(c.isalnum() or c == "_" for c in name) and len(name) <= 64


# --------------------------------------------------------------------------- the ruleset


KEY: Final = "ip saddr . udp sport . udp dport . @th,128,128"
"""The established set's key: outer source, UDP ports and the inner IPv6 source (8 bytes of UDP header, then
8 bytes into the IPv6 header)."""


def ruleset(rules: FastLaneRules) -> str:
    """The table, in libnftables' own syntax, replacing any old table of that name in the same transaction.

    Not JSON: libnftables 1.0.6 (Debian 12) cannot declare a set keyed on a raw payload in JSON (its JSON
    set types have no ``typeof``), and the inner source is one.  Every value spliced in is a number, an
    address or a name :class:`FastLaneRules` has checked.
    """
    table = f"{FAMILY} {rules.table}"
    destination = "meta nfproto ipv4 "
    if rules.listen_address != "0.0.0.0":
        destination += f"ip daddr {ipaddress.IPv4Address(rules.listen_address)} "
    ports = ", ".join(str(int(p)) for p in rules.ports)
    destination += f"udp dport {{ {ports} }}"
    counters = "".join(f"  counter {name} {{}}\n" for name in COUNTERS)
    per_ipv4 = _limit(rules.per_ipv4_per_s, rules.per_ipv4_burst)
    return f"""add table {table}
delete table {table}
table {table} {{
{counters}  set {ESTABLISHED_SET} {{
    typeof {KEY}
    flags dynamic,timeout
    timeout {int(rules.established_timeout_s)}s
    size {min(int(rules.max_established), MAX_SET_SIZE)}
  }}
  set {SOURCES_SET} {{
    type ipv4_addr
    flags dynamic,timeout
    timeout {int(rules.source_timeout_s)}s
    size {MAX_TRACKED_SOURCES}
  }}
  chain {CHAIN} {{
    type filter hook input priority {PRIORITY}; policy accept;
    {destination} goto {POLICE_CHAIN}
  }}
  chain {POLICE_CHAIN} {{
    {KEY} @{ESTABLISHED_SET} update @{ESTABLISHED_SET} {{ {KEY} }} counter name "established" accept
    update @{SOURCES_SET} {{ ip saddr {per_ipv4} }} counter name "policed_per_ipv4" drop
    {_limit(rules.total_per_s, rules.total_burst)} counter name "policed_ceiling" drop
    counter name "passed"
  }}
}}
"""


def _limit(rate: int, burst: int) -> str:
    return f"limit rate over {int(rate)}/second burst {int(burst)} packets"


def _element_value(element: Element) -> dict[str, Any]:
    inner, ipv4, port, local_port = element
    # The inner source is a raw payload to nftables: a 128-bit integer, written in hex.
    return {"concat": [str(ipaddress.IPv4Address(ipv4)), port, local_port, f"0x{inner:032x}"]}


def element_commands(table: str, added: Sequence[Element], removed: Sequence[Element]) -> list[dict[str, Any]]:
    """Adds and deletes of established elements, in one transaction that cannot fail on an absent element.

    A removal is written "add, then delete": the element may already be gone (its timeout ran out, or an
    administrator flushed the set), and a delete of an absent element would fail the whole transaction.
    """
    target = {"family": FAMILY, "table": table, "name": ESTABLISHED_SET}
    commands: list[dict[str, Any]] = []
    if removed:
        elems = [_element_value(e) for e in removed]
        commands.append({"add": {"element": {**target, "elem": elems}}})
        commands.append({"delete": {"element": {**target, "elem": elems}}})
    if added:
        commands.append({"add": {"element": {**target, "elem": [_element_value(e) for e in added]}}})
    return commands


# --------------------------------------------------------------------------- the binding


def _load_binding() -> _Binding:
    try:
        import nftables
    except ImportError as exc:
        raise PlatformError(
            "nftables' Python binding is not installed",
            hint="install python3-nftables (scripts/setup.sh links it into the venv)",
        ) from exc
    try:
        binding: _Binding = nftables.Nftables()
    except OSError as exc:
        raise PlatformError(f"libnftables could not be loaded: {exc}", hint="install libnftables1") from exc
    return binding


class NftFastLane:
    """The gateway's table, installed; elements added and removed, counters read, the table removed on close."""

    def __init__(self, rules: FastLaneRules, binding: _Binding | None = None) -> None:
        """Install the table (replacing a stale one); raises PlatformError when nftables cannot do it."""
        self.rules = rules
        self._fresh: Callable[[], _Binding] | None = _load_binding if binding is None else None
        self._nft = binding if binding is not None else _load_binding()
        self._closed = False
        self._totals: dict[str, tuple[int, int]] = {}
        self._install("cannot install the gateway's nftables table")

    @property
    def table(self) -> str:
        return self.rules.table

    def _install(self, what: str) -> None:
        rc, _output, error = self._nft.cmd(ruleset(self.rules))
        _check(rc, error, what)

    def _run(self, commands: list[dict[str, Any]], what: str) -> Any:
        rc, output, error = self._nft.json_cmd({"nftables": commands})
        _check(rc, error, what)
        return output

    def reset(self) -> None:
        """Recreate the table as new: every rule in place, the established set empty (the counts go on)."""
        with contextlib.suppress(PlatformError):
            self.counters()  # what the old table counted since the last read
        self._install("cannot rebuild the gateway's nftables table")

    def update(self, added: Sequence[Element], removed: Sequence[Element]) -> None:
        """Make ``added`` established and ``removed`` not, a bounded transaction at a time."""
        step = ELEMENTS_PER_TRANSACTION
        for start in range(0, max(len(added), len(removed)), step):
            commands = element_commands(self.table, added[start : start + step], removed[start : start + step])
            if commands:
                self._run(commands, "cannot update the fast lane's established set")

    def counters(self) -> dict[str, tuple[int, int]]:
        """``name → (packets, bytes)`` of the table's counters since it was installed.

        Read by resetting them and adding up here: libnftables 1.0.6 lists anything only after fetching the
        whole ruleset, established elements included (a third of a second at 20 000 of them), while a
        reset fetches the tables alone.  ``nft list counters`` therefore shows what came since the last read.
        """
        # A context of its own each time: libnftables answers a reset from its cache when it already holds
        # the counters and the ruleset has not changed since, with the values of the previous read.
        nft = self._fresh() if self._fresh is not None else self._nft
        command = {"reset": {"counters": {"family": FAMILY, "table": self.table}}}
        rc, output, error = nft.json_cmd({"nftables": [command]})
        _check(rc, error, "cannot read the fast lane's counters")
        for name, (packets, nbytes) in parse_counters(output, self.table).items():
            before = self._totals.get(name, (0, 0))
            self._totals[name] = (before[0] + packets, before[1] + nbytes)
        return dict(self._totals)

    def established(self) -> list[Element]:
        """The established set's elements (diagnostics and tests: it lists the whole set)."""
        output = self._run(
            [{"list": {"set": {"family": FAMILY, "table": self.table, "name": ESTABLISHED_SET}}}],
            "cannot list the established set",
        )
        return parse_established(output)

    def close(self) -> None:
        """Delete the table; a table already gone is not an error."""
        if self._closed:
            return
        self._closed = True
        delete_table(self.table, self._nft)


def _check(rc: int, error: str, what: str) -> None:
    if rc == 0:
        return
    detail = " ".join(str(error).split())[:400] or f"libnftables returned {rc}"
    hint = "needs CAP_NET_ADMIN and a kernel with nf_tables" if "Operation not permitted" in detail else None
    raise PlatformError(f"{what}: {detail}", hint=hint)


def delete_table(table: str, binding: _Binding | None = None) -> None:
    """Remove a gateway table if present (the same "add, delete" idiom: absent is fine)."""
    nft = binding if binding is not None else _load_binding()
    spec = {"family": FAMILY, "name": table}
    rc, _output, error = nft.json_cmd({"nftables": [{"add": {"table": spec}}, {"delete": {"table": spec}}]})
    if rc != 0:
        raise PlatformError(f"cannot remove the nftables table {table}: {' '.join(str(error).split())[:400]}")


def table_exists(table: str, binding: _Binding | None = None) -> bool:
    """Whether the table is there (diagnostics and tests: libnftables fetches the whole ruleset for it)."""
    nft = binding if binding is not None else _load_binding()
    rc, output, _error = nft.json_cmd({"nftables": [{"list": {"tables": {"family": FAMILY}}}]})
    if rc != 0:
        return False
    return any(entry.get("table", {}).get("name") == table for entry in _items(output))


def _items(output: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(output, Mapping):
        items = output.get("nftables", [])
        if isinstance(items, list):
            return [item for item in items if isinstance(item, Mapping)]
    return []


def parse_counters(output: Any, table: str) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for item in _items(output):
        counter = item.get("counter")
        if isinstance(counter, Mapping) and counter.get("table") == table:
            found[str(counter.get("name"))] = (int(counter.get("packets", 0)), int(counter.get("bytes", 0)))
    return found


def parse_established(output: Any) -> list[Element]:
    elements: list[Element] = []
    for item in _items(output):
        found = item.get("set")
        if not isinstance(found, Mapping):
            continue
        for entry in found.get("elem", []):
            value = entry.get("elem", {}).get("val") if isinstance(entry, Mapping) and "elem" in entry else entry
            parts = value.get("concat") if isinstance(value, Mapping) else None
            if not isinstance(parts, list) or len(parts) != 4:
                continue
            ipv4, port, local_port, inner = parts
            elements.append((int(str(inner), 0), int(ipaddress.IPv4Address(ipv4)), int(port), int(local_port)))
    return elements
