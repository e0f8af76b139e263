"""The m6t client configuration: a TOML file read, validated as a whole, into frozen dataclasses.

```toml
[gateway]
address = "198.51.100.2"        # IPv4 literal or host name, or a list of them in order of preference
                                # (required; names are resolved later, not here)
ports = [3544, 4500]            # tried in this order when a port stops working
[tunnel]
prefix = "fd6d:3674:a1b2:0:1::/80"   # or ula_prefix (/48) + subnet_id + mn_id (draft 2.2)
interface = "m6t0"
mtu = 1472
keepalive_interval = 30
probe = "fd00:ab::1"            # optional
pmtud = true                    # path MTU discovery (RFC 8899) with probes to `probe`; default: on with a probe
uplinks = "best"                # "all": one tunnel per IPv4 uplink (m6t0, m6t1...), each its own suffix (draft 2.5)
[routes]
default = true
metric = 1029
prefixes = []
[helper]
operator_group = "m6t"
autoconnect = false
[access]
key_id = "alice-laptop"         # enrolled gateways only: the name the gateway knows this MN's key by
key_file = "/etc/m6t/key"       # headless Linux only (root-only, the key alone); else the OS keyring
```

The same validation serves the file, the control API (:func:`client_config_from_dict`) and the
command line (:func:`set_client_option`): whatever the way in, a configuration is either complete
and valid or rejected with every problem listed.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, Final

from m6t.client.uplinks import MAX_TUNNELS, names_problem
from m6t.configfile import (
    ConfigError,
    Invalid,
    Problem,
    Reader,
    array,
    boolean,
    describe,
    dump_toml,
    host_or_ipv4,
    integer,
    interface_name,
    ipv6_network,
    ipv6_unicast,
    parse_cli_value,
    parse_toml,
    plain_number,
    port,
    read_toml_file,
    text,
)
from m6t.protocol import (
    DEFAULT_MTU,
    IPV6_MIN_MTU,
    KEEPALIVE_INTERVAL_S,
    MAX_TUNNEL_MTU,
    AddressingError,
    parse_prefix80,
    prefix80_from_parts,
)
from m6t.protocol.access import KEY_NAME
from m6t.protocol.addressing import split_prefix80

__all__ = [
    "DEFAULT_INTERFACE",
    "DEFAULT_METRIC",
    "DEFAULT_OPERATOR_GROUP",
    "DEFAULT_PORT",
    "UPLINKS_ALL",
    "UPLINKS_BEST",
    "AccessSection",
    "ClientConfig",
    "ConfigError",
    "GatewaySection",
    "HelperSection",
    "Problem",
    "RoutesSection",
    "TunnelSection",
    "client_config_from_dict",
    "client_config_keys",
    "client_config_to_dict",
    "default_client_config",
    "dump_client_config",
    "load_client_config",
    "parse_client_config",
    "set_client_option",
]

DEFAULT_PORT: Final = 3544
"""Teredo's port: the draft (2.1) suggests it as one that foreign networks tend to let through."""
DEFAULT_INTERFACE: Final = "m6t0"
DEFAULT_METRIC: Final = 1029
"""High enough that any native IPv6 default route wins: the tunnel is the last resort."""
DEFAULT_OPERATOR_GROUP: Final = "m6t"
MAX_MTU: Final = MAX_TUNNEL_MTU
MAX_METRIC: Final = 4_294_967_295
KEEPALIVE_MIN_S: Final = 1
KEEPALIVE_MAX_S: Final = 3600
MIN_METRIC: Final = 1
MAX_ID: Final = 0xFFFF
"""Subnet and MN IDs are 16 bits each (draft 2.2)."""

_PARTS: Final = ("ula_prefix", "subnet_id", "mn_id")


UPLINKS_BEST: Final = "best"
UPLINKS_ALL: Final = "all"
UPLINKS_CHOICES: Final = (UPLINKS_BEST, UPLINKS_ALL)

MAX_GATEWAYS: Final = 16
"""Entries in ``gateway.address``: a failover list, not a directory."""


@dataclass(frozen=True, slots=True)
class GatewaySection:
    addresses: tuple[str, ...]
    """``gateway.address``: IPv4 literals (normalized) or host names, unresolved, in order of preference."""
    ports: tuple[int, ...] = (DEFAULT_PORT,)

    def __post_init__(self) -> None:
        if not self.addresses:
            raise ValueError("at least one gateway address is needed")

    @property
    def address_text(self) -> str:
        """The addresses as one line, for messages and the status."""
        return ", ".join(self.addresses)


@dataclass(frozen=True, slots=True)
class TunnelSection:
    """``prefix`` is always the /80 in use; the three parts are set (all of them) only when the
    user configured the prefix that way, so writing the configuration back keeps their form."""

    prefix: IPv6Network
    interface: str = DEFAULT_INTERFACE
    mtu: int = DEFAULT_MTU
    keepalive_interval: float = KEEPALIVE_INTERVAL_S
    probe: IPv6Address | None = None
    pmtud: bool | None = None
    """Path MTU discovery as configured: ``None`` (not given) means on exactly when there is a probe address."""
    ula_prefix: IPv6Network | None = None
    subnet_id: int | None = None
    mn_id: int | None = None
    uplinks: str = UPLINKS_BEST
    """``"best"``: one tunnel, through the path the OS prefers; ``"all"``: one per IPv4 uplink."""

    @property
    def uses_parts(self) -> bool:
        return self.ula_prefix is not None and self.subnet_id is not None and self.mn_id is not None

    @property
    def pmtud_enabled(self) -> bool:
        """Whether the client searches the path MTU: its probes are echoes to ``probe``, so never without one."""
        return self.probe is not None and self.pmtud is not False


@dataclass(frozen=True, slots=True)
class RoutesSection:
    default: bool = True
    metric: int = DEFAULT_METRIC
    prefixes: tuple[IPv6Network, ...] = ()


@dataclass(frozen=True, slots=True)
class HelperSection:
    operator_group: str = DEFAULT_OPERATOR_GROUP
    autoconnect: bool = False


@dataclass(frozen=True, slots=True)
class AccessSection:
    """Enrolled access (docs/enrolled-access.md): set for a gateway that only serves known mobile nodes."""

    key_id: str | None = None
    """The name the gateway's ``keys add`` was given; the key is looked up under it. None: an open gateway."""
    key_file: str | None = None
    """A root-only file holding the key alone (headless Linux); None: the OS keyring or the tray's."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    gateway: GatewaySection
    tunnel: TunnelSection
    routes: RoutesSection = field(default_factory=RoutesSection)
    helper: HelperSection = field(default_factory=HelperSection)
    access: AccessSection = field(default_factory=AccessSection)


# --------------------------------------------------------------------------- validation
#
# A key with a rule of its own has its converter named here; the reader below and the tray's field checks
# (through m6t.client.api.config_rules) both use it, so a rule is written once.


def tunnel_prefix(value: object) -> IPv6Network:
    network = ipv6_network(value)
    try:
        return parse_prefix80(str(network))
    except AddressingError as exc:
        raise Invalid(str(exc)) from None


def tunnel_ula_prefix(value: object) -> IPv6Network:
    network = ipv6_network(value)
    try:
        # Composing with zero IDs runs the protocol's own /48 and fc00::/7 checks.
        prefix80_from_parts(network, 0, 0)
    except AddressingError as exc:
        raise Invalid(str(exc)) from None
    return network


_gateway_list = array(host_or_ipv4, min_items=1, unique=True)


def gateway_address(value: object) -> tuple[str, ...]:
    """One gateway (a string) or several in order of preference (an array of strings)."""
    if isinstance(value, str):
        return (host_or_ipv4(value),)
    if not isinstance(value, list | tuple):
        raise Invalid(f"must be a string or an array of strings, not {describe(value)}")
    if len(value) > MAX_GATEWAYS:
        raise Invalid(f"has {len(value)} entries; at most {MAX_GATEWAYS} gateways can be listed")
    return _gateway_list(value)


tunnel_pmtud: Final = boolean


def tunnel_uplinks(value: object) -> str:
    word = text()(value)
    if word not in UPLINKS_CHOICES:
        raise Invalid(f'must be "best" (one tunnel) or "all" (one per IPv4 uplink), not {word!r}')
    return word


gateway_ports: Final = array(port, min_items=1, unique=True)
routes_prefixes: Final = array(ipv6_network, unique=True)
_id16 = integer(0, MAX_ID)
_DEFAULT_PORTS: Final[tuple[int, ...]] = (DEFAULT_PORT,)
_NO_PREFIXES: Final[tuple[IPv6Network, ...]] = ()


def _group(value: object) -> str:
    name = text(1, 256)(value)
    if name != name.strip():
        raise Invalid(f"{name!r} has leading or trailing spaces")
    # ':' and ',' separate fields and members in /etc/group and are refused by Windows group names.
    if ":" in name or "," in name:
        raise Invalid(f"{name!r} is not a group name (':' and ',' are not allowed)")
    return name


def access_key_id(value: object) -> str:
    name = text(1, 64)(value)
    if not KEY_NAME.fullmatch(name):
        raise Invalid(f"{name!r}: a key name is letters, digits, '.', '_' or '-', starting alphanumeric")
    return name


def _key_file(value: object) -> str:
    path = text(1, 4096)(value)
    if not path.startswith("/"):
        raise Invalid(f"{path!r}: the key file's path must be absolute")
    return path


def _read_prefix(tunnel: Reader) -> tuple[IPv6Network | None, IPv6Network | None, int | None, int | None]:
    """Exactly one of the two forms: the /80 itself, or its three parts."""
    given = tunnel.has("prefix")
    parts_given = [name for name in _PARTS if tunnel.has(name)]
    prefix = tunnel.get_optional("prefix", tunnel_prefix)
    ula = tunnel.get_optional("ula_prefix", tunnel_ula_prefix)
    subnet_id = tunnel.get_optional("subnet_id", _id16)
    mn_id = tunnel.get_optional("mn_id", _id16)
    if given and parts_given:
        listed = ", ".join(f"tunnel.{name}" for name in parts_given)
        tunnel.problem(
            "prefix", f"give either tunnel.prefix or tunnel.ula_prefix + subnet_id + mn_id, not both ({listed})"
        )
        return None, None, None, None
    if given:
        return prefix, None, None, None
    if not parts_given:
        tunnel.problem("prefix", "is required (or give tunnel.ula_prefix, tunnel.subnet_id and tunnel.mn_id)")
        return None, None, None, None
    for name in _PARTS:
        if name not in parts_given:
            tunnel.problem(name, f"is required with {', '.join(f'tunnel.{p}' for p in parts_given)}")
    if ula is None or subnet_id is None or mn_id is None:
        return None, None, None, None
    try:
        composed = prefix80_from_parts(ula, subnet_id, mn_id)
    except AddressingError as exc:  # pragma: no cover - each part was checked alone
        tunnel.problem("ula_prefix", str(exc))
        return None, None, None, None
    return composed, ula, subnet_id, mn_id


def _read(root: Reader) -> ClientConfig:
    gateway = root.section("gateway")
    address = gateway.get_optional("address", gateway_address, required=True)
    ports = gateway.get("ports", gateway_ports, _DEFAULT_PORTS)

    tunnel = root.section("tunnel")
    prefix, ula, subnet_id, mn_id = _read_prefix(tunnel)
    interface = tunnel.get("interface", interface_name, DEFAULT_INTERFACE)
    mtu = tunnel.get_int("mtu", DEFAULT_MTU, min_value=IPV6_MIN_MTU, max_value=MAX_MTU)
    keepalive = tunnel.get_number(
        "keepalive_interval", KEEPALIVE_INTERVAL_S, min_value=KEEPALIVE_MIN_S, max_value=KEEPALIVE_MAX_S
    )
    probe = tunnel.get_optional("probe", ipv6_unicast, empty_is_none=True)
    pmtud = tunnel.get_optional("pmtud", tunnel_pmtud, empty_is_none=True)
    if pmtud and probe is None:
        tunnel.problem("pmtud", "needs tunnel.probe: its probes are echo requests to that address")
    uplinks = tunnel.get("uplinks", tunnel_uplinks, UPLINKS_BEST)
    if uplinks == UPLINKS_ALL and (names := names_problem(interface)) is not None:
        tunnel.problem("interface", names)

    routes = root.section("routes")
    default_route = routes.get_bool("default", True)
    metric = routes.get_int("metric", DEFAULT_METRIC, min_value=MIN_METRIC, max_value=MAX_METRIC)
    prefixes = routes.get("prefixes", routes_prefixes, _NO_PREFIXES)
    if uplinks == UPLINKS_ALL and metric > MAX_METRIC - (MAX_TUNNELS - 1):
        # Each further tunnel's routes take the next metric.
        routes.problem("metric", f'must be at most {MAX_METRIC - (MAX_TUNNELS - 1)} with tunnel.uplinks = "all"')

    helper = root.section("helper")
    group = helper.get("operator_group", _group, DEFAULT_OPERATOR_GROUP)
    autoconnect = helper.get_bool("autoconnect", False)

    access = root.section("access")
    key_id = access.get_optional("key_id", access_key_id, empty_is_none=True)
    key_file = access.get_optional("key_file", _key_file, empty_is_none=True)
    if key_file is not None and key_id is None and not access.has("key_id"):
        access.problem("key_file", "needs access.key_id, the name the gateway knows this mobile node's key by")

    root.finish()
    # finish() raised if anything was missing or invalid, so the optionals are set by now.
    assert address is not None and prefix is not None
    return ClientConfig(
        gateway=GatewaySection(addresses=address, ports=ports),
        tunnel=TunnelSection(
            prefix=prefix,
            interface=interface,
            mtu=mtu,
            keepalive_interval=keepalive,
            probe=probe,
            pmtud=pmtud,
            ula_prefix=ula,
            subnet_id=subnet_id,
            mn_id=mn_id,
            uplinks=uplinks,
        ),
        routes=RoutesSection(default=default_route, metric=metric, prefixes=prefixes),
        helper=HelperSection(operator_group=group, autoconnect=autoconnect),
        access=AccessSection(key_id=key_id, key_file=key_file),
    )


def client_config_from_dict(data: Mapping[str, Any], source: str = "<data>") -> ClientConfig:
    """Validate a parsed document (TOML or the control API's JSON); problems name ``source``."""
    return _read(Reader(data, source))


def parse_client_config(text: str, source: str = "<string>") -> ClientConfig:
    return client_config_from_dict(parse_toml(text, source), source)


def load_client_config(path: str | Path) -> ClientConfig:
    document, source = read_toml_file(path)
    return client_config_from_dict(document, source)


def default_client_config(gateway_address: str, prefix: str | IPv6Network) -> ClientConfig:
    """A configuration with every default, for a first run; raises :class:`ConfigError` if the
    two values that have no default are unusable."""
    return client_config_from_dict(
        {"gateway": {"address": gateway_address}, "tunnel": {"prefix": str(prefix)}}, "<defaults>"
    )


# --------------------------------------------------------------------------- writing back


def client_config_to_dict(cfg: ClientConfig) -> dict[str, dict[str, Any]]:
    """Plain values (str, int, float, bool, list) that :func:`client_config_from_dict` reads back
    to an equal configuration; absent optional keys are left out (TOML has no null)."""
    t = cfg.tunnel
    tunnel: dict[str, Any] = {}
    if t.uses_parts:
        tunnel.update(ula_prefix=str(t.ula_prefix), subnet_id=t.subnet_id, mn_id=t.mn_id)
    else:
        tunnel["prefix"] = str(t.prefix)
    tunnel.update(interface=t.interface, mtu=t.mtu, keepalive_interval=plain_number(t.keepalive_interval))
    if t.probe is not None:
        tunnel["probe"] = str(t.probe)
    if t.pmtud is not None:
        tunnel["pmtud"] = t.pmtud
    if t.uplinks != UPLINKS_BEST:
        tunnel["uplinks"] = t.uplinks  # today's files stay as they were
    return {
        "gateway": {"address": _address_value(cfg.gateway.addresses), "ports": list(cfg.gateway.ports)},
        "tunnel": tunnel,
        "routes": {
            "default": cfg.routes.default,
            "metric": cfg.routes.metric,
            "prefixes": [str(p) for p in cfg.routes.prefixes],
        },
        "helper": {"operator_group": cfg.helper.operator_group, "autoconnect": cfg.helper.autoconnect},
        "access": {
            key: value
            for key, value in (("key_id", cfg.access.key_id), ("key_file", cfg.access.key_file))
            if value is not None
        },
    }


def _address_value(addresses: tuple[str, ...]) -> str | list[str]:
    # One gateway keeps the plain string form every configuration had before lists.
    return addresses[0] if len(addresses) == 1 else list(addresses)


def dump_client_config(cfg: ClientConfig) -> str:
    return dump_toml(client_config_to_dict(cfg))


# --------------------------------------------------------------------------- the command line


@cache
def client_config_keys() -> tuple[str, ...]:
    """Every ``section.key`` a client configuration may hold."""
    reader = Reader({}, "")
    # {} lacks the required keys; only the keys the reading asked for matter here.
    with contextlib.suppress(ConfigError):
        _read(reader)
    return tuple(reader.known_keys())


# Strings the user types bare: "1234" as a group or "2024-01-01" as a host name stay strings.
_STRING_KEYS: Final = frozenset(
    {
        "tunnel.prefix",
        "tunnel.ula_prefix",
        "tunnel.interface",
        "tunnel.probe",
        "tunnel.uplinks",
        "helper.operator_group",
        "access.key_id",
        "access.key_file",
    }
)
_ARRAY_KEYS: Final = frozenset({"gateway.ports", "routes.prefixes"})


def _cli_value(key: str, raw: str) -> object:
    value = parse_cli_value(raw)
    if key == "gateway.address":
        # Names and addresses typed bare; "a,b" (or a TOML array) lists several in order of preference.
        if isinstance(value, list):
            return value
        text = value if isinstance(value, str) else raw
        items = [item.strip() for item in text.split(",")]
        return items[0] if len(items) == 1 else [item for item in items if item]
    if key in _STRING_KEYS:
        return value if isinstance(value, str) else raw
    if key in _ARRAY_KEYS and not isinstance(value, list):
        # "4500" and "3544,4500" read as arrays: nobody types brackets in a shell unprompted.
        if isinstance(value, str):
            return [parse_cli_value(item.strip()) for item in value.split(",") if item.strip()]
        return [value]
    return value


def set_client_option(cfg: ClientConfig, key: str, raw: str, *, source: str = "<command line>") -> ClientConfig:
    """A copy of ``cfg`` with ``key`` (``section.key``) set from the command-line text ``raw``.

    The whole result is validated; on any problem :class:`ConfigError` is raised and ``cfg``,
    being immutable, is untouched.  Setting ``tunnel.prefix`` drops the three-part form; setting
    one of the parts when the /80 was given whole splits that /80 to fill the other two.
    """
    known = client_config_keys()
    if key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; known settings: {', '.join(known)}"
        raise ConfigError.single(source, key, f"unknown setting{hint}")
    section, name = key.split(".", 1)
    data = client_config_to_dict(cfg)
    tunnel = data["tunnel"]
    if key == "tunnel.prefix":
        for part in _PARTS:
            tunnel.pop(part, None)
    elif name in _PARTS and section == "tunnel" and not cfg.tunnel.uses_parts:
        del tunnel["prefix"]
        ula, subnet_id, mn_id = split_prefix80(cfg.tunnel.prefix)
        tunnel.update(ula_prefix=str(ula), subnet_id=subnet_id, mn_id=mn_id)
    data[section][name] = _cli_value(key, raw)
    try:
        return client_config_from_dict(data, source)
    except ConfigError as exc:
        # Switching prefix forms can make a neighbouring key the one in error; say which
        # setting caused it, so the message always names what the user typed.
        if not any(p.key == key or p.key.startswith(key + "[") for p in exc.problems):
            exc.problems.append(Problem(source, key, f"not set to {raw!r}: the result would be invalid"))
            raise ConfigError(exc.problems) from None
        raise
