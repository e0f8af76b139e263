"""The m6t gateway configuration: a TOML file read, validated as a whole, into frozen dataclasses.

```toml
[listen]
address = "0.0.0.0"
ports = [3544, 4500]
[tunnel]
interface = "m6tgw0"
prefixes = ["fd6d:3674:a1b2::/48"]   # accepted MN source prefixes, routed to the tunnel (required)
home_agents = ["fd00:ab::1"]         # the only destinations MN traffic may have (required)
mtu = 1472
[states]
temporary_lifetime_ms = 500
active_lifetime_s = 120
max_temporary = 10000
new_states_per_ipv4_per_s = 10
new_states_per_ipv4_burst = 20
max_states = 2000000
state_directory = "/var/lib/m6t-gateway"   # kept across restarts (states.m6t); "" = not kept
save_interval_s = 5                  # at most this long between a change and its save
[fastlane]
mode = "auto"                        # "required", "off"
packets_per_new_state = 8
unknown_total_per_s = 20000
unknown_total_burst = 2000
[metrics]
listen = "127.0.0.1:9477"            # or "[::1]:9477", "unix:/run/m6t-gateway/metrics.sock"; "" = off
[access]
mode = "open"                        # or "enrolled": only key holders create states (docs/enrolled-access.md)
key_file = "/etc/m6t/gateway-keys.toml"
window_s = 60                        # accepted clock difference, either way
replay_cache = 100000
```

The state limits are the draft's defences against a DoS on the gateway (6.1.3): a short
temporary lifetime (an HA round trip), a per-IPv4-address rate of new states, and caps.  The table is
saved in ``state_directory`` on stop and a few seconds after it changes, and restored at start, so that a
restart (an upgrade, a crash) loses no mobile node.  The fast lane enforces the limits in the kernel
before the socket, where a flood cannot crowd established mobile nodes out: their packets pass first,
every other packet meets a per-IPv4 rate (``packets_per_new_state`` times the new-state rate and burst)
and an overall ceiling.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, Final

from m6t.configfile import (
    ConfigError,
    Invalid,
    Problem,
    Reader,
    dump_toml,
    interface_name,
    ipv4_address,
    ipv6_address,
    ipv6_network,
    parse_toml,
    plain_number,
    port,
    read_toml_file,
    refine,
    text,
)
from m6t.protocol import DEFAULT_MTU, IPV6_MIN_MTU, MAX_TUNNEL_MTU
from m6t.protocol.access import DEFAULT_REPLAY_CAPACITY, DEFAULT_WINDOW_S

__all__ = [
    "DEFAULT_INTERFACE",
    "DEFAULT_KEY_FILE",
    "DEFAULT_LISTEN_ADDRESS",
    "DEFAULT_PORT",
    "FASTLANE_MODES",
    "AccessMode",
    "AccessSection",
    "ConfigError",
    "FastLaneSection",
    "GatewayConfig",
    "GatewayTunnelSection",
    "ListenSection",
    "MetricsEndpoint",
    "MetricsSection",
    "Problem",
    "StatesSection",
    "TcpEndpoint",
    "UnixEndpoint",
    "dump_gateway_config",
    "gateway_config_from_dict",
    "gateway_config_to_dict",
    "load_gateway_config",
    "parse_gateway_config",
    "parse_metrics_endpoint",
]

DEFAULT_PORT: Final = 3544
DEFAULT_LISTEN_ADDRESS: Final = IPv4Address("0.0.0.0")
DEFAULT_INTERFACE: Final = "m6tgw0"
MAX_MTU: Final = MAX_TUNNEL_MTU
DEFAULT_KEY_FILE: Final = "/etc/m6t/gateway-keys.toml"
UNIX_PATH_MAX: Final = 107
"""sun_path is 108 bytes on Linux, one of which is the terminating NUL."""

DEFAULT_STATE_DIRECTORY: Final = Path("/var/lib/m6t-gateway")
DEFAULT_SAVE_INTERVAL_S: Final = 5
MAX_SAVE_INTERVAL_S: Final = 3600
PATH_MAX: Final = 4095
"""Linux's PATH_MAX less the terminating NUL; the state file's name is added to it, so keep well under."""
FASTLANE_MODES: Final = ("auto", "required", "off")
MAX_PACKETS_PER_NEW_STATE: Final = 1000
MAX_UNKNOWN_RATE: Final = 10_000_000
"""The kernel's limits are packets per second; more than this is no limit on any host."""

_LINK_LOCAL: Final = IPv6Network("fe80::/10")
_MULTICAST: Final = IPv6Network("ff00::/8")


@dataclass(frozen=True, slots=True)
class ListenSection:
    address: IPv4Address = DEFAULT_LISTEN_ADDRESS
    ports: tuple[int, ...] = (DEFAULT_PORT,)


@dataclass(frozen=True, slots=True)
class GatewayTunnelSection:
    prefixes: tuple[IPv6Network, ...]
    home_agents: tuple[IPv6Address, ...]
    interface: str = DEFAULT_INTERFACE
    mtu: int = DEFAULT_MTU


@dataclass(frozen=True, slots=True)
class StatesSection:
    temporary_lifetime_ms: int = 500
    active_lifetime_s: int = 120
    max_temporary: int = 10_000
    new_states_per_ipv4_per_s: float = 10.0
    new_states_per_ipv4_burst: int = 20
    max_states: int = 2_000_000
    state_directory: Path | None = DEFAULT_STATE_DIRECTORY
    """Where the state table is kept across restarts; ``None``: not kept (a restart forgets every MN)."""
    save_interval_s: int = DEFAULT_SAVE_INTERVAL_S
    """The longest a change waits before it is saved: what a crash (``kill -9``) can lose."""


@dataclass(frozen=True, slots=True)
class FastLaneSection:
    mode: str = "auto"
    """``auto``: the kernel fast lane when nftables is there, a warning and none otherwise; ``required``:
    refuse to start without it; ``off``: never."""
    packets_per_new_state: int = 8
    """Packets an IPv4 address that is no established mobile node may send per new state it is allowed
    (``[states]`` rate and burst): a new MN's packets until the Home Agent answers, and its retries."""
    unknown_total_per_s: int = 20_000
    """All packets from non-established sources together, per second: what the gateway reads at ease."""
    unknown_total_burst: int = 2_000


@dataclass(frozen=True, slots=True)
class TcpEndpoint:
    host: IPv4Address | IPv6Address
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.host.version == 6 else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UnixEndpoint:
    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}"


MetricsEndpoint = TcpEndpoint | UnixEndpoint
"""Where the metrics are served; ``str()`` gives back the configuration's spelling."""


@dataclass(frozen=True, slots=True)
class MetricsSection:
    listen: MetricsEndpoint | None = None


class AccessMode(StrEnum):
    OPEN = "open"
    """The draft's gateway: whoever reaches a port may create a temporary state."""
    ENROLLED = "enrolled"
    """Only a datagram sealed with one of the key file's keys creates a state (docs/enrolled-access.md)."""


@dataclass(frozen=True, slots=True)
class AccessSection:
    mode: AccessMode = AccessMode.OPEN
    key_file: str = DEFAULT_KEY_FILE
    window_s: int = DEFAULT_WINDOW_S
    replay_cache: int = DEFAULT_REPLAY_CAPACITY


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    listen: ListenSection
    tunnel: GatewayTunnelSection
    states: StatesSection = field(default_factory=StatesSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    fastlane: FastLaneSection = field(default_factory=FastLaneSection)
    access: AccessSection = field(default_factory=AccessSection)


# --------------------------------------------------------------------------- validation


def _bindable(address: IPv4Address) -> str | None:
    if address.is_multicast or address == IPv4Address("255.255.255.255"):
        return f"{address} is not a unicast address; the gateway cannot listen on it"
    return None


def _mn_prefix(network: IPv6Network) -> str | None:
    if network.prefixlen == 0:
        return "::/0 would route every IPv6 destination into the tunnel"
    # Keepalives are addressed to fe80::1: a link-local "MN prefix" would confuse them with data.
    if network.overlaps(_MULTICAST) or network.overlaps(_LINK_LOCAL):
        return f"{network} overlaps multicast or link-local space; it cannot hold mobile nodes' addresses"
    return None


def _home_agent(address: IPv6Address) -> str | None:
    if address.is_multicast or address.is_unspecified or address.is_loopback or address in _LINK_LOCAL:
        return f"{address} is not a global or unique-local unicast address; it cannot be a Home Agent"
    return None


def _state_directory(value: object) -> Path:
    raw = text(min_length=1)(value)
    path = Path(raw)
    if not path.is_absolute():
        raise Invalid(f"{raw!r} must be an absolute path (like {DEFAULT_STATE_DIRECTORY})")
    if ".." in path.parts:
        raise Invalid(f"{raw!r} must not contain '..'")
    if path == Path("/"):
        raise Invalid("the state directory cannot be / itself")
    if len(raw.encode()) > PATH_MAX - 64:
        raise Invalid(f"a state directory path has at most {PATH_MAX - 64} bytes")
    return path


_PORT_TEXT: Final = re.compile(r"[0-9]{1,5}")


def parse_metrics_endpoint(spec: str) -> MetricsEndpoint:
    """``HOST:PORT`` (IPv4 literal, or IPv6 literal in brackets) or ``unix:/absolute/path``."""
    if spec.startswith("unix:"):
        path = spec.removeprefix("unix:")
        if not path.startswith("/"):
            raise Invalid(f"{spec!r}: the socket path must be absolute (unix:/run/...)")
        if len(path.encode()) > UNIX_PATH_MAX:
            raise Invalid(f"{spec!r}: a Unix socket path has at most {UNIX_PATH_MAX} bytes")
        return UnixEndpoint(path)
    host_text, colon, port_text = spec.rpartition(":")
    if not colon or not host_text:
        raise Invalid(f"{spec!r} is not HOST:PORT or unix:/path")
    if not _PORT_TEXT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise Invalid(f"{spec!r}: the port must be a number in 1..65535")
    host: IPv4Address | IPv6Address
    if host_text.startswith("[") and host_text.endswith("]"):
        host = ipv6_address(host_text[1:-1])
    elif ":" in host_text:
        raise Invalid(f"{spec!r}: write an IPv6 address in brackets, as [{host_text}]:{port_text}")
    else:
        host = ipv4_address(host_text)
    return TcpEndpoint(host, int(port_text))


def _metrics_endpoint(value: object) -> MetricsEndpoint:
    return parse_metrics_endpoint(text()(value))


def _fastlane_mode(value: object) -> str:
    mode = text()(value)
    if mode not in FASTLANE_MODES:
        raise Invalid(f"must be one of {', '.join(map(repr, FASTLANE_MODES))}, not {mode!r}")
    return mode


def _access_mode(value: object) -> AccessMode:
    word = text()(value)
    try:
        return AccessMode(word)
    except ValueError:
        raise Invalid(f'must be "open" or "enrolled", not {word!r}') from None


def _absolute_path(value: object) -> str:
    path = text(min_length=1)(value)
    if not path.startswith("/"):
        raise Invalid(f"{path!r}: the key file's path must be absolute")
    return path


def _read(root: Reader) -> GatewayConfig:
    listen = root.section("listen")
    address = listen.get("address", refine(ipv4_address, _bindable), DEFAULT_LISTEN_ADDRESS)
    ports = listen.get_list_of("ports", port, (DEFAULT_PORT,), min_items=1, unique=True)

    tunnel = root.section("tunnel")
    interface = tunnel.get("interface", interface_name, DEFAULT_INTERFACE)
    prefixes = tunnel.get_list_of("prefixes", refine(ipv6_network, _mn_prefix), (), min_items=1, unique=True)
    home_agents = tunnel.get_list_of("home_agents", refine(ipv6_address, _home_agent), (), min_items=1, unique=True)
    mtu = tunnel.get_int("mtu", DEFAULT_MTU, min_value=IPV6_MIN_MTU, max_value=MAX_MTU)
    # Required lists: get_list_of only checks min_items on a value that is present.
    for key in ("prefixes", "home_agents"):
        if not tunnel.has(key):
            tunnel.problem(key, "is required")
    for index, home_agent in enumerate(home_agents):
        for prefix in prefixes:
            if home_agent in prefix:
                # Routing the MN prefixes to the tunnel would swallow the HA's own traffic.
                tunnel.problem(f"home_agents[{index}]", f"{home_agent} lies inside the MN prefix {prefix}")

    states = root.section("states")
    defaults = StatesSection()
    temporary_ms = states.get_int(
        "temporary_lifetime_ms", defaults.temporary_lifetime_ms, min_value=1, max_value=60_000
    )
    active_s = states.get_int("active_lifetime_s", defaults.active_lifetime_s, min_value=1, max_value=86_400)
    max_temporary = states.get_int("max_temporary", defaults.max_temporary, min_value=1)
    rate = states.get_number("new_states_per_ipv4_per_s", defaults.new_states_per_ipv4_per_s, greater_than=0)
    burst = states.get_int("new_states_per_ipv4_burst", defaults.new_states_per_ipv4_burst, min_value=1)
    max_states = states.get_int("max_states", defaults.max_states, min_value=1)
    if states.has("state_directory"):
        state_directory = states.get_optional("state_directory", _state_directory, empty_is_none=True)
    else:
        state_directory = defaults.state_directory
    save_interval = states.get_int(
        "save_interval_s", defaults.save_interval_s, min_value=1, max_value=MAX_SAVE_INTERVAL_S
    )

    fast = root.section("fastlane")
    lane = FastLaneSection()
    lane_mode = fast.get("mode", _fastlane_mode, lane.mode)
    per_state = fast.get_int(
        "packets_per_new_state", lane.packets_per_new_state, min_value=1, max_value=MAX_PACKETS_PER_NEW_STATE
    )
    total = fast.get_int("unknown_total_per_s", lane.unknown_total_per_s, min_value=1, max_value=MAX_UNKNOWN_RATE)
    total_burst = fast.get_int("unknown_total_burst", lane.unknown_total_burst, min_value=1, max_value=MAX_UNKNOWN_RATE)

    metrics = root.section("metrics")
    endpoint = metrics.get_optional("listen", _metrics_endpoint, empty_is_none=True)

    access = root.section("access")
    access_mode = access.get("mode", _access_mode, AccessMode.OPEN)
    key_file = access.get("key_file", _absolute_path, DEFAULT_KEY_FILE)
    window_s = access.get_int("window_s", DEFAULT_WINDOW_S, min_value=1, max_value=86_400)
    replay_cache = access.get_int("replay_cache", DEFAULT_REPLAY_CAPACITY, min_value=1, max_value=10_000_000)

    root.finish()
    return GatewayConfig(
        listen=ListenSection(address=address, ports=ports),
        tunnel=GatewayTunnelSection(prefixes=prefixes, home_agents=home_agents, interface=interface, mtu=mtu),
        states=StatesSection(
            temporary_lifetime_ms=temporary_ms,
            active_lifetime_s=active_s,
            max_temporary=max_temporary,
            new_states_per_ipv4_per_s=rate,
            new_states_per_ipv4_burst=burst,
            max_states=max_states,
            state_directory=state_directory,
            save_interval_s=save_interval,
        ),
        metrics=MetricsSection(listen=endpoint),
        fastlane=FastLaneSection(
            mode=lane_mode, packets_per_new_state=per_state, unknown_total_per_s=total, unknown_total_burst=total_burst
        ),
        access=AccessSection(mode=access_mode, key_file=key_file, window_s=window_s, replay_cache=replay_cache),
    )


def gateway_config_from_dict(data: Mapping[str, Any], source: str = "<data>") -> GatewayConfig:
    return _read(Reader(data, source))


def parse_gateway_config(text: str, source: str = "<string>") -> GatewayConfig:
    return gateway_config_from_dict(parse_toml(text, source), source)


def load_gateway_config(path: str | Path) -> GatewayConfig:
    document, source = read_toml_file(path)
    return gateway_config_from_dict(document, source)


# --------------------------------------------------------------------------- writing back


def gateway_config_to_dict(cfg: GatewayConfig) -> dict[str, dict[str, Any]]:
    """Plain values that :func:`gateway_config_from_dict` reads back to an equal configuration."""
    s = cfg.states
    metrics: dict[str, Any] = {} if cfg.metrics.listen is None else {"listen": str(cfg.metrics.listen)}
    return {
        "listen": {"address": str(cfg.listen.address), "ports": list(cfg.listen.ports)},
        "tunnel": {
            "interface": cfg.tunnel.interface,
            "prefixes": [str(p) for p in cfg.tunnel.prefixes],
            "home_agents": [str(a) for a in cfg.tunnel.home_agents],
            "mtu": cfg.tunnel.mtu,
        },
        "states": {
            "temporary_lifetime_ms": s.temporary_lifetime_ms,
            "active_lifetime_s": s.active_lifetime_s,
            "max_temporary": s.max_temporary,
            "new_states_per_ipv4_per_s": plain_number(s.new_states_per_ipv4_per_s),
            "new_states_per_ipv4_burst": s.new_states_per_ipv4_burst,
            "max_states": s.max_states,
            "state_directory": "" if s.state_directory is None else str(s.state_directory),
            "save_interval_s": s.save_interval_s,
        },
        "fastlane": {
            "mode": cfg.fastlane.mode,
            "packets_per_new_state": cfg.fastlane.packets_per_new_state,
            "unknown_total_per_s": cfg.fastlane.unknown_total_per_s,
            "unknown_total_burst": cfg.fastlane.unknown_total_burst,
        },
        "metrics": metrics,
        # Left out when it is the default (open), so that an open gateway's file reads as it always did.
        "access": {}
        if cfg.access == AccessSection()
        else {
            "mode": cfg.access.mode.value,
            "key_file": cfg.access.key_file,
            "window_s": cfg.access.window_s,
            "replay_cache": cfg.access.replay_cache,
        },
    }


def dump_gateway_config(cfg: GatewayConfig) -> str:
    return dump_toml(gateway_config_to_dict(cfg))
