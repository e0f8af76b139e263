"""The gateway configuration file: every key, metrics endpoints, round trips."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m6t.configfile import Invalid
from m6t.gateway.config import (
    ConfigError,
    FastLaneSection,
    GatewayConfig,
    GatewayTunnelSection,
    ListenSection,
    MetricsEndpoint,
    MetricsSection,
    StatesSection,
    TcpEndpoint,
    UnixEndpoint,
    dump_gateway_config,
    gateway_config_from_dict,
    gateway_config_to_dict,
    load_gateway_config,
    parse_gateway_config,
    parse_metrics_endpoint,
)
from tests.unit import config_checks

EXAMPLE = Path(__file__).resolve().parents[2] / "installers" / "linux" / "gateway.example.toml"
FILE = "gateway.toml"

BASE: dict[str, str | None] = {
    "listen.address": '"0.0.0.0"',
    "listen.ports": "[3544, 4500]",
    "tunnel.interface": '"m6tgw0"',
    "tunnel.prefixes": '["fd6d:3674:a1b2::/48"]',
    "tunnel.home_agents": '["fd00:ab::1"]',
    "tunnel.mtu": "1472",
    "states.temporary_lifetime_ms": "500",
    "states.active_lifetime_s": "120",
    "states.max_temporary": "10000",
    "states.new_states_per_ipv4_per_s": "10",
    "states.new_states_per_ipv4_burst": "20",
    "states.max_states": "2000000",
    "states.state_directory": '"/var/lib/m6t-gateway"',
    "states.save_interval_s": "5",
    "fastlane.mode": '"auto"',
    "fastlane.packets_per_new_state": "8",
    "fastlane.unknown_total_per_s": "20000",
    "fastlane.unknown_total_burst": "2000",
    "metrics.listen": '"127.0.0.1:9477"',
}
KEYS = list(BASE)


def render(overrides: dict[str, str | None] | None = None) -> str:
    return config_checks.render({**BASE, **(overrides or {})})


def parse(overrides: dict[str, str | None] | None = None) -> GatewayConfig:
    return parse_gateway_config(render(overrides), FILE)


def problems(overrides: dict[str, str | None]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(overrides)
    return info.value


def field_of(cfg: GatewayConfig, dotted: str) -> object:
    section, key = dotted.split(".")
    return getattr(getattr(cfg, section), key)


# --------------------------------------------------------------------------- the whole file


def test_full_file() -> None:
    assert parse() == GatewayConfig(
        listen=ListenSection(IPv4Address("0.0.0.0"), (3544, 4500)),
        tunnel=GatewayTunnelSection(
            prefixes=(IPv6Network("fd6d:3674:a1b2::/48"),),
            home_agents=(IPv6Address("fd00:ab::1"),),
            interface="m6tgw0",
            mtu=1472,
        ),
        states=StatesSection(
            temporary_lifetime_ms=500,
            active_lifetime_s=120,
            max_temporary=10000,
            new_states_per_ipv4_per_s=10.0,
            new_states_per_ipv4_burst=20,
            max_states=2000000,
        ),
        metrics=MetricsSection(TcpEndpoint(IPv4Address("127.0.0.1"), 9477)),
    )


def test_minimal_file_takes_every_default() -> None:
    cfg = parse_gateway_config('[tunnel]\nprefixes = ["fd6d:3674:a1b2::/48"]\nhome_agents = ["fd00:ab::1"]\n')
    assert cfg.listen == ListenSection(IPv4Address("0.0.0.0"), (3544,))
    assert cfg.tunnel.interface == "m6tgw0"
    assert cfg.tunnel.mtu == 1472
    assert cfg.states == StatesSection()
    assert cfg.states.temporary_lifetime_ms == 500
    assert cfg.states.max_states == 2_000_000
    assert cfg.metrics.listen is None


def test_example_file_parses() -> None:
    cfg = load_gateway_config(EXAMPLE)
    assert cfg.tunnel.home_agents == (IPv6Address("fd00:ab::1"),)
    text = EXAMPLE.read_text()
    for dotted in KEYS:
        assert f"{dotted.split('.')[1]} =" in text, dotted


def test_config_is_immutable() -> None:
    cfg = parse()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.states.max_states = 1  # type: ignore[misc]
    assert hash(cfg) == hash(parse())


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(render({"states.max_states": "0"}))
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path)
    assert str(info.value) == f"{path}: states.max_states: must be at least 1, not 0"


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_gateway_config("[listen]\nports = [3544\n", FILE)
    assert str(info.value).startswith(f"{FILE}: line ")


def test_multiple_errors_reported_together() -> None:
    error = problems(
        {
            "listen.address": '"::"',
            "tunnel.prefixes": "[]",
            "tunnel.home_agents": None,
            "states.new_states_per_ipv4_per_s": "0",
            "metrics.listen": '"localhost:9477"',
            "metrics.port": "1",
        }
    )
    assert [p.key for p in error.problems] == [
        "listen.address",
        "tunnel.prefixes",
        "tunnel.home_agents",
        "states.new_states_per_ipv4_per_s",
        "metrics.listen",
        "metrics.port",
    ]
    assert str(error).count("\n") == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[state]\n", "gateway.toml: state: unknown section; did you mean [states]?"),
        ("[metric]\nlisten = ''\n", "gateway.toml: metric: unknown section; did you mean [metrics]?"),
        ("[prometheus]\n", "gateway.toml: prometheus: unknown section"),
    ],
)
def test_unknown_sections(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_gateway_config(render() + text, FILE)
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("tunnel.home_agent", "did you mean tunnel.home_agents?"),
        ("states.max_state", "did you mean states.max_states?"),
        ("listen.port", "did you mean listen.ports?"),
        ("states.mtu", "did you mean tunnel.mtu?"),
        ("metrics.address", "did you mean listen.address?"),
    ],
)
def test_unknown_keys(key: str, expected: str) -> None:
    error = problems({key: "1"})
    assert [(p.key, p.message) for p in error.problems] == [(key, f"unknown key; {expected}")]


# --------------------------------------------------------------------------- every key


@pytest.mark.parametrize(
    ("key", "literal", "expected"),
    [
        ("listen.address", '"198.51.100.2"', IPv4Address("198.51.100.2")),
        ("listen.address", None, IPv4Address("0.0.0.0")),
        ("listen.ports", "[53]", (53,)),
        ("listen.ports", None, (3544,)),
        ("tunnel.interface", '"gw0"', "gw0"),
        ("tunnel.interface", None, "m6tgw0"),
        (
            "tunnel.prefixes",
            '["fd6d:3674:a1b2::/48", "2001:db8:1::/48"]',
            (IPv6Network("fd6d:3674:a1b2::/48"), IPv6Network("2001:db8:1::/48")),
        ),
        ("tunnel.prefixes", '["fd6d:3674:a1b2:0:1::/80"]', (IPv6Network("fd6d:3674:a1b2:0:1::/80"),)),
        (
            "tunnel.home_agents",
            '["fd00:ab::1", "2001:db8::1"]',
            (IPv6Address("fd00:ab::1"), IPv6Address("2001:db8::1")),
        ),
        ("tunnel.mtu", "1280", 1280),
        ("tunnel.mtu", "9000", 9000),
        ("states.temporary_lifetime_ms", "1", 1),
        ("states.temporary_lifetime_ms", "60000", 60000),
        ("states.active_lifetime_s", "1", 1),
        ("states.active_lifetime_s", "86400", 86400),
        ("states.max_temporary", "1", 1),
        ("states.max_temporary", "100000000", 100000000),
        ("states.new_states_per_ipv4_per_s", "0.5", 0.5),
        ("states.new_states_per_ipv4_per_s", "1000", 1000.0),
        ("states.new_states_per_ipv4_burst", "1", 1),
        ("states.max_states", "1", 1),
        ("states.state_directory", '"/srv/m6t gw/état"', Path("/srv/m6t gw/état")),
        ("states.state_directory", '"/var/lib/m6t-gateway/"', Path("/var/lib/m6t-gateway")),
        ("states.state_directory", '""', None),
        ("states.state_directory", None, Path("/var/lib/m6t-gateway")),
        ("states.save_interval_s", "1", 1),
        ("states.save_interval_s", "3600", 3600),
        ("states.save_interval_s", None, 5),
        ("fastlane.mode", '"required"', "required"),
        ("fastlane.mode", '"off"', "off"),
        ("fastlane.mode", None, "auto"),
        ("fastlane.packets_per_new_state", "1", 1),
        ("fastlane.packets_per_new_state", "1000", 1000),
        ("fastlane.unknown_total_per_s", "1", 1),
        ("fastlane.unknown_total_per_s", "10000000", 10_000_000),
        ("fastlane.unknown_total_burst", "1", 1),
        ("fastlane.unknown_total_burst", None, 2000),
        ("metrics.listen", '"[::1]:9477"', TcpEndpoint(IPv6Address("::1"), 9477)),
        ("metrics.listen", '"0.0.0.0:1"', TcpEndpoint(IPv4Address("0.0.0.0"), 1)),
        ("metrics.listen", '"unix:/run/m6t-gateway/metrics.sock"', UnixEndpoint("/run/m6t-gateway/metrics.sock")),
        ("metrics.listen", '""', None),
        ("metrics.listen", None, None),
    ],
)
def test_valid_value(key: str, literal: str | None, expected: object) -> None:
    assert field_of(parse({key: literal}), key) == expected


INVALID = [
    ("listen.address", '"::"', "is not an IPv4 address"),
    ("listen.address", '"198.51.100.256"', "is not an IPv4 address"),
    ("listen.address", '"gw.example.org"', "is not an IPv4 address"),
    ("listen.address", '"224.0.0.1"', "not a unicast address"),
    ("listen.address", '"255.255.255.255"', "not a unicast address"),
    ("listen.address", "0", "must be a string"),
    ("listen.ports", "[]", "must not be empty"),
    ("listen.ports", "[0]", "must be in the range 1..65535"),
    ("listen.ports", "[3544, 3544]", "repeats 3544"),
    ("listen.ports", "3544", "must be an array"),
    ("listen.ports", "[false]", "must be an integer, not a boolean"),
    ("tunnel.interface", '"way-too-long-name"', "at most 15"),
    ("tunnel.interface", '"a b"', "may only contain"),
    ("tunnel.prefixes", None, "is required"),
    ("tunnel.prefixes", "[]", "must not be empty"),
    ("tunnel.prefixes", '"fd6d:3674:a1b2::/48"', "must be an array"),
    ("tunnel.prefixes", '["fd6d:3674:a1b2::1/48"]', "has host bits set"),
    ("tunnel.prefixes", '["fd6d:3674:a1b2::"]', "the length is missing"),
    ("tunnel.prefixes", '["fe80::/64"]', "multicast or link-local"),
    ("tunnel.prefixes", '["ff00::/8"]', "multicast or link-local"),
    ("tunnel.prefixes", '["::/0"]', "every IPv6 destination"),
    ("tunnel.prefixes", '["fd6d:3674:a1b2::/48", "fd6d:3674:a1b2::/48"]', "repeats"),
    ("tunnel.prefixes", "[48]", "must be a string"),
    ("tunnel.home_agents", None, "is required"),
    ("tunnel.home_agents", "[]", "must not be empty"),
    ("tunnel.home_agents", '"fd00:ab::1"', "must be an array"),
    ("tunnel.home_agents", '["fd00:ab::/64"]', "is not an IPv6 address"),
    ("tunnel.home_agents", '["fe80::1"]', "cannot be a Home Agent"),
    ("tunnel.home_agents", '["ff02::1"]', "cannot be a Home Agent"),
    ("tunnel.home_agents", '["::"]', "cannot be a Home Agent"),
    ("tunnel.home_agents", '["::1"]', "cannot be a Home Agent"),
    ("tunnel.home_agents", '["fd00:ab::1", "fd00:ab::1"]', "repeats"),
    ("tunnel.home_agents", '["fd6d:3674:a1b2::1"]', "lies inside the MN prefix fd6d:3674:a1b2::/48"),
    ("tunnel.mtu", "1279", "must be in the range 1280..65507"),
    ("tunnel.mtu", "65508", "must be in the range 1280..65507"),
    ("tunnel.mtu", "1472.0", "must be an integer"),
    ("states.temporary_lifetime_ms", "0", "must be in the range 1..60000"),
    ("states.temporary_lifetime_ms", "60001", "must be in the range 1..60000"),
    ("states.temporary_lifetime_ms", "0.5", "must be an integer, not a float"),
    ("states.active_lifetime_s", "0", "must be in the range 1..86400"),
    ("states.active_lifetime_s", "86401", "must be in the range 1..86400"),
    ("states.active_lifetime_s", "true", "must be an integer, not a boolean"),
    ("states.max_temporary", "0", "must be at least 1"),
    ("states.max_temporary", '"10000"', "must be an integer"),
    ("states.new_states_per_ipv4_per_s", "0", "must be greater than 0"),
    ("states.new_states_per_ipv4_per_s", "-1.5", "must be greater than 0"),
    ("states.new_states_per_ipv4_per_s", "nan", "must be a finite number"),
    ("states.new_states_per_ipv4_per_s", "inf", "must be a finite number"),
    ("states.new_states_per_ipv4_per_s", "false", "must be a number, not a boolean"),
    ("states.new_states_per_ipv4_burst", "0", "must be at least 1"),
    ("states.new_states_per_ipv4_burst", "2.5", "must be an integer"),
    ("states.max_states", "0", "must be at least 1"),
    ("states.max_states", "-5", "must be at least 1"),
    ("states.state_directory", '"var/lib/m6t"', "must be an absolute path"),
    ("states.state_directory", '"/var/lib/../tmp"', "must not contain '..'"),
    ("states.state_directory", '"/"', "cannot be / itself"),
    ("states.state_directory", '"/a\\u0000b"', "control characters"),
    ("states.state_directory", f'"/{"x" * 4100}"', "at most"),
    ("states.state_directory", "false", "must be a string"),
    ("states.save_interval_s", "0", "must be in the range 1..3600"),
    ("states.save_interval_s", "3601", "must be in the range 1..3600"),
    ("states.save_interval_s", "2.5", "must be an integer"),
    ("fastlane.mode", '"on"', "must be one of 'auto', 'required', 'off', not 'on'"),
    ("fastlane.mode", "true", "must be a string"),
    ("fastlane.packets_per_new_state", "0", "must be in the range 1..1000"),
    ("fastlane.packets_per_new_state", "1001", "must be in the range 1..1000"),
    ("fastlane.unknown_total_per_s", "0", "must be in the range 1..10000000"),
    ("fastlane.unknown_total_per_s", "10000001", "must be in the range 1..10000000"),
    ("fastlane.unknown_total_per_s", "2.5", "must be an integer"),
    ("fastlane.unknown_total_burst", "0", "must be in the range 1..10000000"),
    ("metrics.listen", "9477", "must be a string"),
    ("metrics.listen", '"localhost:9477"', "is not an IPv4 address"),
    ("metrics.listen", '"127.0.0.1"', "is not HOST:PORT"),
    ("metrics.listen", '":9477"', "is not HOST:PORT"),
    ("metrics.listen", '"127.0.0.1:0"', "the port must be a number in 1..65535"),
    ("metrics.listen", '"127.0.0.1:65536"', "the port must be a number in 1..65535"),
    ("metrics.listen", '"127.0.0.1:+80"', "the port must be a number"),
    ("metrics.listen", '"127.0.0.1:"', "the port must be a number"),
    ("metrics.listen", '"::1:9477"', "write an IPv6 address in brackets, as [::1]:9477"),
    ("metrics.listen", '"[::1%lo]:9477"', "carries a zone"),
    ("metrics.listen", '"[127.0.0.1]:9477"', "is not an IPv6 address"),
    ("metrics.listen", '"unix:"', "must be absolute"),
    ("metrics.listen", '"unix:metrics.sock"', "must be absolute"),
    ("metrics.listen", f'"unix:/{"x" * 107}"', "at most 107 bytes"),
    ("metrics.listen", '"unix:/run/a\\u0000b"', "control characters"),
]


@pytest.mark.parametrize(("key", "literal", "message"), INVALID)
def test_invalid_value_names_file_and_key(key: str, literal: str | None, message: str) -> None:
    config_checks.assert_one_problem(problems({key: literal}), FILE, key, message)


def test_invalid_values_cover_every_key() -> None:
    assert {key for key, _, _ in INVALID} == set(KEYS)


def test_home_agent_inside_a_prefix_names_the_index() -> None:
    error = problems(
        {"tunnel.prefixes": '["fd6d::/16"]', "tunnel.home_agents": '["2001:db8::1", "fd6d::1", "fd6d:1::1"]'}
    )
    assert [p.key for p in error.problems] == ["tunnel.home_agents[1]", "tunnel.home_agents[2]"]


# --------------------------------------------------------------------------- metrics endpoints


@pytest.mark.parametrize(
    ("spec", "endpoint"),
    [
        ("127.0.0.1:9477", TcpEndpoint(IPv4Address("127.0.0.1"), 9477)),
        ("[::1]:9477", TcpEndpoint(IPv6Address("::1"), 9477)),
        ("[2001:db8::1]:65535", TcpEndpoint(IPv6Address("2001:db8::1"), 65535)),
        ("unix:/run/m.sock", UnixEndpoint("/run/m.sock")),
        (f"unix:/{'x' * 106}", UnixEndpoint("/" + "x" * 106)),
    ],
)
def test_metrics_endpoint_spellings_round_trip(spec: str, endpoint: MetricsEndpoint) -> None:
    assert parse_metrics_endpoint(spec) == endpoint
    assert str(endpoint) == spec


def test_metrics_endpoint_unix_path_limit_counts_bytes() -> None:
    with pytest.raises(Invalid, match="at most 107 bytes"):
        parse_metrics_endpoint("unix:/" + "é" * 60)


# --------------------------------------------------------------------------- round trips


def test_to_dict_holds_plain_values() -> None:
    assert gateway_config_to_dict(parse({"metrics.listen": None})) == {
        "listen": {"address": "0.0.0.0", "ports": [3544, 4500]},
        "tunnel": {
            "interface": "m6tgw0",
            "prefixes": ["fd6d:3674:a1b2::/48"],
            "home_agents": ["fd00:ab::1"],
            "mtu": 1472,
        },
        "states": {
            "temporary_lifetime_ms": 500,
            "active_lifetime_s": 120,
            "max_temporary": 10000,
            "new_states_per_ipv4_per_s": 10,
            "new_states_per_ipv4_burst": 20,
            "max_states": 2000000,
            "state_directory": "/var/lib/m6t-gateway",
            "save_interval_s": 5,
        },
        "fastlane": {
            "mode": "auto",
            "packets_per_new_state": 8,
            "unknown_total_per_s": 20000,
            "unknown_total_burst": 2000,
        },
        "metrics": {},
        "access": {},
    }


def test_dump_leaves_out_disabled_metrics() -> None:
    cfg = parse({"metrics.listen": '""'})
    assert "[metrics]" not in dump_gateway_config(cfg)
    assert parse_gateway_config(dump_gateway_config(cfg)) == cfg


_ENDPOINT = st.one_of(
    st.none(),
    st.builds(TcpEndpoint, st.ip_addresses(), st.integers(1, 65535)),
    st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=40)
    .map(lambda s: "/" + s)
    .filter(lambda p: len(p.encode()) <= 107)
    .map(UnixEndpoint),
)
# Home agents come from 2001:db8::/32 and prefixes from fc00::/7, so none lies inside a prefix.
_MN_PREFIX = st.builds(
    lambda value, length: IPv6Network((value >> (128 - length) << (128 - length), length)),
    st.integers(0xFC00 << 112, (0xFE00 << 112) - 1),
    st.integers(7, 128),
)

gateway_configs = st.builds(
    GatewayConfig,
    listen=st.builds(
        ListenSection,
        address=st.ip_addresses(v=4).filter(lambda a: not a.is_multicast and a != IPv4Address("255.255.255.255")),
        ports=st.lists(st.integers(1, 65535), min_size=1, max_size=4, unique=True).map(tuple),
    ),
    tunnel=st.builds(
        GatewayTunnelSection,
        prefixes=st.lists(_MN_PREFIX, min_size=1, max_size=4, unique=True).map(tuple),
        home_agents=st.lists(st.ip_addresses(network="2001:db8::/32"), min_size=1, max_size=3, unique=True).map(tuple),
        interface=st.from_regex(r"[A-Za-z0-9_.-]{1,15}", fullmatch=True).filter(lambda s: s not in (".", "..")),
        mtu=st.integers(1280, 65507),
    ),
    states=st.builds(
        StatesSection,
        temporary_lifetime_ms=st.integers(1, 60000),
        active_lifetime_s=st.integers(1, 86400),
        max_temporary=st.integers(1, 2**40),
        new_states_per_ipv4_per_s=st.floats(min_value=0, exclude_min=True, allow_infinity=False)
        | st.integers(1, 10**6).map(float),
        new_states_per_ipv4_burst=st.integers(1, 10**6),
        max_states=st.integers(1, 2**40),
        state_directory=st.none()
        | st.lists(
            st.text(
                st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/"), min_size=1, max_size=12
            ).filter(lambda part: part not in (".", "..")),
            min_size=1,
            max_size=4,
        ).map(lambda parts: Path("/", *parts)),
        save_interval_s=st.integers(1, 3600),
    ),
    metrics=st.builds(MetricsSection, listen=_ENDPOINT),
    fastlane=st.builds(
        FastLaneSection,
        mode=st.sampled_from(["auto", "required", "off"]),
        packets_per_new_state=st.integers(1, 1000),
        unknown_total_per_s=st.integers(1, 10_000_000),
        unknown_total_burst=st.integers(1, 10_000_000),
    ),
)


@given(gateway_configs)
def test_dict_round_trip(cfg: GatewayConfig) -> None:
    assert gateway_config_from_dict(gateway_config_to_dict(cfg), "x") == cfg


@given(gateway_configs)
def test_toml_round_trip(cfg: GatewayConfig) -> None:
    assert parse_gateway_config(dump_gateway_config(cfg)) == cfg


# --------------------------------------------------------------------------- fuzzing


_TEXTS = config_checks.toml_ish_texts(
    ["[listen]", "[tunnel]", "[states]", "[metrics]", "[state]", "[[listen]]", ""],
    KEYS,
    [
        '"0.0.0.0"',
        "[3544, 4500]",
        '["fd6d:3674:a1b2::/48"]',
        '["fd00:ab::1"]',
        '"127.0.0.1:9477"',
        '"unix:/run/x"',
        "1979-05-27",
        "{ a = 1 }",
        "[[1], [2]]",
        "[",
        "",
    ],
)


@given(_TEXTS)
def test_toml_ish_text_only_raises_config_error(text: str) -> None:
    config_checks.assert_text_loads_or_config_error(text, FILE, parse_gateway_config, dump_gateway_config)


@given(st.text(max_size=200))
def test_arbitrary_text_only_raises_config_error(text: str) -> None:
    config_checks.assert_text_loads_or_config_error(text, FILE, parse_gateway_config, dump_gateway_config)


@given(
    config_checks.config_shaped_dicts(
        ["listen", "tunnel", "states", "metrics", "other"], [k.split(".")[1] for k in KEYS]
    )
)
def test_arbitrary_dict_only_raises_config_error(data: dict[str, Any]) -> None:
    config_checks.assert_dict_loads_or_config_error(data, gateway_config_from_dict, gateway_config_to_dict)
