"""The client configuration file: every key, both prefix forms, round trips, ``config set``."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m6t.client.config import (
    ClientConfig,
    ConfigError,
    GatewaySection,
    HelperSection,
    RoutesSection,
    TunnelSection,
    client_config_from_dict,
    client_config_keys,
    client_config_to_dict,
    default_client_config,
    dump_client_config,
    load_client_config,
    parse_client_config,
    set_client_option,
)
from m6t.protocol import prefix80_from_parts
from tests.unit import config_checks

EXAMPLE = Path(__file__).resolve().parents[2] / "installers" / "linux" / "client.example.toml"
FILE = "client.toml"

BASE: dict[str, str | None] = {
    "gateway.address": '"198.51.100.2"',
    "gateway.ports": "[3544, 4500]",
    "tunnel.prefix": '"fd6d:3674:a1b2:0:1::/80"',
    "tunnel.interface": '"m6t0"',
    "tunnel.mtu": "1472",
    "tunnel.keepalive_interval": "30",
    "tunnel.probe": '"fd00:ab::1"',
    "routes.default": "true",
    "routes.metric": "1029",
    "routes.prefixes": "[]",
    "helper.operator_group": '"m6t"',
    "helper.autoconnect": "false",
}
PARTS = {
    "tunnel.prefix": None,
    "tunnel.ula_prefix": '"fd6d:3674:a1b2::/48"',
    "tunnel.subnet_id": "0",
    "tunnel.mn_id": "1",
}


def render(overrides: dict[str, str | None] | None = None, base: dict[str, str | None] = BASE) -> str:
    """TOML text: BASE with some keys replaced (a TOML literal) or removed (None)."""
    return config_checks.render({**base, **(overrides or {})})


def parse(overrides: dict[str, str | None] | None = None) -> ClientConfig:
    return parse_client_config(render(overrides), FILE)


def problems(overrides: dict[str, str | None]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(overrides)
    return info.value


def field_of(cfg: ClientConfig, dotted: str) -> object:
    section, key = dotted.split(".")
    if dotted == "gateway.address":
        addresses = cfg.gateway.addresses
        return addresses[0] if len(addresses) == 1 else addresses
    return getattr(getattr(cfg, section), key)


# --------------------------------------------------------------------------- the whole file


def test_full_file() -> None:
    cfg = parse()
    assert cfg == ClientConfig(
        gateway=GatewaySection(("198.51.100.2",), (3544, 4500)),
        tunnel=TunnelSection(
            prefix=IPv6Network("fd6d:3674:a1b2:0:1::/80"),
            interface="m6t0",
            mtu=1472,
            keepalive_interval=30.0,
            probe=IPv6Address("fd00:ab::1"),
        ),
        routes=RoutesSection(default=True, metric=1029, prefixes=()),
        helper=HelperSection(operator_group="m6t", autoconnect=False),
    )


def test_minimal_file_takes_every_default() -> None:
    cfg = parse_client_config('[gateway]\naddress = "gw.example.org"\n[tunnel]\nprefix = "fd6d:3674:a1b2:0:1::/80"\n')
    assert cfg == ClientConfig(
        gateway=GatewaySection(("gw.example.org",), (3544,)),
        tunnel=TunnelSection(prefix=IPv6Network("fd6d:3674:a1b2:0:1::/80")),
    )
    assert cfg.tunnel.interface == "m6t0"
    assert cfg.tunnel.mtu == 1472
    assert cfg.tunnel.keepalive_interval == 30.0
    assert cfg.tunnel.probe is None
    assert cfg.routes == RoutesSection(default=True, metric=1029, prefixes=())
    assert cfg.helper == HelperSection(operator_group="m6t", autoconnect=False)
    assert default_client_config("gw.example.org", "fd6d:3674:a1b2:0:1::/80") == cfg


def test_default_client_config_validates() -> None:
    with pytest.raises(ConfigError, match=r"<defaults>: tunnel.prefix: .*/64"):
        default_client_config("gw.example.org", IPv6Network("fd6d:3674:a1b2::/64"))


def test_config_is_immutable() -> None:
    cfg = parse()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.tunnel.mtu = 1400  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.gateway = cfg.gateway  # type: ignore[misc]
    assert hash(cfg) == hash(parse())


def test_example_file_parses() -> None:
    cfg = load_client_config(EXAMPLE)
    assert cfg.gateway.addresses == ("198.51.100.2",)
    assert cfg.tunnel.prefix == IPv6Network("fd6d:3674:a1b2:0:1::/80")


def test_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    for dotted in client_config_keys():
        assert f"{dotted.split('.')[1]} =" in text, dotted


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text(render({"tunnel.mtu": "1000"}))
    with pytest.raises(ConfigError) as info:
        load_client_config(path)
    assert str(info.value) == f"{path}: tunnel.mtu: must be in the range 1280..65507, not 1000"
    with pytest.raises(ConfigError, match="cannot read"):
        load_client_config(tmp_path / "nope.toml")


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_client_config('[gateway]\naddress = "198.51.100.2\n', FILE)
    assert info.value.problems[0].file == FILE
    assert info.value.problems[0].key == "line 2"


def test_multiple_errors_reported_together() -> None:
    error = problems(
        {
            "gateway.address": "1",
            "gateway.ports": "[0, 3544, 3544]",
            "tunnel.mtu": "1279",
            "tunnel.probe": '"ff02::1"',
            "routes.metric": "true",
            "helper.autoconnect": '"yes"',
            "helper.colour": '"blue"',
        }
    )
    assert [p.key for p in error.problems] == [
        "gateway.address",
        "gateway.ports[0]",
        "tunnel.mtu",
        "tunnel.probe",
        "routes.metric",
        "helper.autoconnect",
        "helper.colour",
    ]
    assert all(p.file == FILE for p in error.problems)
    assert len(str(error).splitlines()) == 7
    assert all(line.startswith(f"{FILE}: ") for line in str(error).splitlines())


# --------------------------------------------------------------------------- every key, valid


@pytest.mark.parametrize(
    ("key", "literal", "expected"),
    [
        ("gateway.address", '"gw.example.org"', "gw.example.org"),
        ("gateway.address", '"GW-1.Example.ORG."', "GW-1.Example.ORG."),
        ("gateway.address", '"localhost"', "localhost"),
        ("gateway.address", '"10.1.2.3"', "10.1.2.3"),
        ("gateway.address", '["198.51.100.2"]', "198.51.100.2"),
        (
            "gateway.address",
            '["gw1.example.org", "198.51.100.2", "gw2.example.org"]',
            ("gw1.example.org", "198.51.100.2", "gw2.example.org"),
        ),
        ("gateway.ports", "[3544]", (3544,)),
        ("gateway.ports", "[4500, 53, 3544]", (4500, 53, 3544)),
        ("gateway.ports", "[1, 65535]", (1, 65535)),
        ("tunnel.prefix", '"2001:db8:0:1:2::/80"', IPv6Network("2001:db8:0:1:2::/80")),
        ("tunnel.prefix", '"FD6D:3674:A1B2:0:FFFF::/80"', IPv6Network("fd6d:3674:a1b2:0:ffff::/80")),
        ("tunnel.interface", '"tun_1.x-y"', "tun_1.x-y"),
        ("tunnel.interface", '"a"', "a"),
        ("tunnel.interface", '"m6t-very-long15"', "m6t-very-long15"),
        ("tunnel.mtu", "1280", 1280),
        ("tunnel.mtu", "65507", 65507),
        ("tunnel.keepalive_interval", "1", 1.0),
        ("tunnel.keepalive_interval", "3600", 3600.0),
        ("tunnel.keepalive_interval", "2.5", 2.5),
        ("tunnel.probe", '"2001:db8::1"', IPv6Address("2001:db8::1")),
        ("tunnel.probe", '""', None),
        ("tunnel.probe", None, None),
        ("tunnel.pmtud", "false", False),
        ("tunnel.pmtud", "true", True),
        ("tunnel.pmtud", '""', None),
        ("tunnel.pmtud", None, None),
        ("tunnel.uplinks", '"all"', "all"),
        ("tunnel.uplinks", None, "best"),
        ("routes.default", "false", False),
        ("routes.metric", "1", 1),
        ("routes.metric", "4294967295", 4294967295),
        (
            "routes.prefixes",
            '["2001:db8::/32", "fd00:ab::/64"]',
            (IPv6Network("2001:db8::/32"), IPv6Network("fd00:ab::/64")),
        ),
        ("routes.prefixes", '["::/0"]', (IPv6Network("::/0"),)),
        ("helper.operator_group", '"wheel"', "wheel"),
        ("helper.operator_group", '"Network Operators"', "Network Operators"),
        ("helper.operator_group", '"CORP\\\\m6t"', "CORP\\m6t"),
        ("helper.operator_group", '"1234"', "1234"),
        ("helper.autoconnect", "true", True),
    ],
)
def test_valid_value(key: str, literal: str | None, expected: object) -> None:
    assert field_of(parse({key: literal}), key) == expected


# --------------------------------------------------------------------------- every key, invalid


INVALID = [
    ("gateway.address", None, "is required"),
    ("gateway.address", "1", "must be a string or an array of strings, not an integer"),
    ("gateway.address", '""', "must not be empty"),
    ("gateway.address", '"-gw.example.org"', "not a valid host name"),
    ("gateway.address", '"gw_1.example.org"', "not a valid host name"),
    ("gateway.address", '"gw..example.org"', "not a valid host name"),
    ("gateway.address", '"gw example.org"', "not a valid host name"),
    ("gateway.address", f'"{"a" * 64}.example"', "not a valid host name"),
    ("gateway.address", f'"{".".join(["a" * 63] * 4)}"', "at most 253"),
    ("gateway.address", '"198.51.100.300"', "not a valid IPv4 address"),
    ("gateway.address", '"2001:db8::1"', "looks like an IPv6 address"),
    ("gateway.address", "[]", "must not be empty"),
    ("gateway.address", '["198.51.100.2", "198.51.100.2"]', "repeats 198.51.100.2 (already at index 0)"),
    ("gateway.address", '["198.51.100.2", 7]', "must be a string, not an integer"),
    ("gateway.address", '["gw.example.org", "2001:db8::1"]', "looks like an IPv6 address"),
    ("gateway.address", "[" + ", ".join(f'"198.51.100.{i}"' for i in range(17)) + "]", "at most 16 gateways"),
    ("gateway.ports", "[]", "must not be empty"),
    ("gateway.ports", "3544", "must be an array, not an integer"),
    ("gateway.ports", '"3544"', "must be an array, not a string"),
    ("gateway.ports", "[0]", "must be in the range 1..65535, not 0"),
    ("gateway.ports", "[65536]", "must be in the range 1..65535, not 65536"),
    ("gateway.ports", "[3544, 3544]", "repeats 3544 (already at index 0)"),
    ("gateway.ports", '["3544"]', "must be an integer, not a string"),
    ("gateway.ports", "[true]", "must be an integer, not a boolean"),
    ("gateway.ports", "[3544.0]", "must be an integer, not a float"),
    ("tunnel.prefix", '"fd6d:3674:a1b2::/64"', "must be a /80"),
    ("tunnel.prefix", '"fd6d:3674:a1b2:0:1::1/80"', "has host bits set"),
    ("tunnel.prefix", '"fd6d:3674:a1b2:0:1::"', "the length is missing"),
    ("tunnel.prefix", '"nonsense/80"', "is not an IPv6 prefix"),
    ("tunnel.prefix", '"ff00::/80"', "multicast or link-local"),
    ("tunnel.prefix", '"fe80::/80"', "multicast or link-local"),
    ("tunnel.prefix", "80", "must be a string, not an integer"),
    ("tunnel.interface", '""', "must not be empty"),
    ("tunnel.interface", '"abcdefghijklmnop"', "at most 15"),
    ("tunnel.interface", '"m6t 0"', "may only contain"),
    ("tunnel.interface", '"m6t/0"', "may only contain"),
    ("tunnel.interface", '"."', "not a usable interface name"),
    ("tunnel.interface", '".."', "not a usable interface name"),
    ("tunnel.interface", "0", "must be a string, not an integer"),
    ("tunnel.mtu", "1279", "must be in the range 1280..65507, not 1279"),
    ("tunnel.mtu", "65508", "must be in the range 1280..65507"),
    ("tunnel.mtu", "0", "must be in the range 1280..65507"),
    ("tunnel.mtu", "-1472", "must be in the range 1280..65507"),
    ("tunnel.mtu", "1400.0", "must be an integer, not a float"),
    ("tunnel.mtu", "true", "must be an integer, not a boolean"),
    ("tunnel.mtu", '"1400"', "must be an integer, not a string"),
    ("tunnel.keepalive_interval", "0", "must be in the range 1..3600, not 0"),
    ("tunnel.keepalive_interval", "0.5", "must be in the range 1..3600, not 0.5"),
    ("tunnel.keepalive_interval", "3601", "must be in the range 1..3600"),
    ("tunnel.keepalive_interval", "nan", "must be a finite number"),
    ("tunnel.keepalive_interval", "inf", "must be a finite number"),
    ("tunnel.keepalive_interval", "true", "must be a number, not a boolean"),
    ("tunnel.keepalive_interval", '"30"', "must be a number, not a string"),
    ("tunnel.probe", '"ff02::1"', "multicast"),
    ("tunnel.probe", '"::"', "unspecified"),
    ("tunnel.probe", '"::1"', "loopback"),
    ("tunnel.probe", '"fe80::1%eth0"', "carries a zone"),
    ("tunnel.probe", '"198.51.100.2"', "is not an IPv6 address"),
    ("tunnel.probe", "1", "must be a string"),
    ("tunnel.pmtud", '"yes"', "must be true or false"),
    ("tunnel.pmtud", "1", "must be true or false"),
    ("tunnel.uplinks", '"every"', 'must be "best" (one tunnel) or "all" (one per IPv4 uplink), not \'every\''),
    ("tunnel.uplinks", "true", "must be a string, not a boolean"),
    ("routes.default", "1", "must be true or false, not an integer"),
    ("routes.default", '"true"', "must be true or false, not a string"),
    ("routes.metric", "0", "must be in the range 1..4294967295, not 0"),
    ("routes.metric", "4294967296", "must be in the range 1..4294967295"),
    ("routes.metric", "true", "must be an integer, not a boolean"),
    ("routes.metric", "1.5", "must be an integer, not a float"),
    ("routes.prefixes", '"2001:db8::/32"', "must be an array, not a string"),
    ("routes.prefixes", '["2001:db8::1/32"]', "has host bits set"),
    ("routes.prefixes", '["2001:db8::"]', "the length is missing"),
    ("routes.prefixes", '["2001:db8::/32", "2001:db8::/32"]', "repeats 2001:db8::/32"),
    ("routes.prefixes", "[1]", "must be a string, not an integer"),
    ("helper.operator_group", '""', "must not be empty"),
    ("helper.operator_group", '" m6t"', "leading or trailing spaces"),
    ("helper.operator_group", '"m6t:x"', "':' and ',' are not allowed"),
    ("helper.operator_group", '"a,b"', "':' and ',' are not allowed"),
    ("helper.operator_group", '"m6t\\u0007"', "control characters"),
    ("helper.operator_group", f'"{"g" * 257}"', "at most 256 characters"),
    ("helper.operator_group", "1000", "must be a string, not an integer"),
    ("helper.autoconnect", '"yes"', "must be true or false"),
    ("helper.autoconnect", "0", "must be true or false"),
    ("access.key_id", '"has space"', "a key name is"),
    ("access.key_id", f'"{"k" * 65}"', "at most 64"),
    ("access.key_id", "1", "must be a string"),
    ("access.key_file", '"relative/key"', "must be absolute"),
    ("access.key_file", "1", "must be a string"),
]


@pytest.mark.parametrize(("key", "literal", "message"), INVALID)
def test_invalid_value_names_file_and_key(key: str, literal: str | None, message: str) -> None:
    config_checks.assert_one_problem(problems({key: literal}), FILE, key, message)


def test_invalid_values_cover_every_key() -> None:
    covered = {key for key, _, _ in INVALID} | {key for key, _, _ in PART_INVALID}
    assert covered == set(client_config_keys())


@pytest.mark.parametrize("literal", ["5", '"x"', "[1]", "true"])
def test_section_of_the_wrong_type(literal: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_client_config(f'tunnel = {literal}\n[gateway]\naddress = "198.51.100.2"\n', FILE)
    assert [p.key for p in info.value.problems] == ["tunnel", "tunnel.prefix"]
    assert info.value.problems[0].message.startswith("must be a table (a [tunnel] section), not ")


# --------------------------------------------------------------------------- unknown keys


MINIMAL: dict[str, str | None] = {
    "gateway.address": '"198.51.100.2"',
    "tunnel.prefix": '"fd6d:3674:a1b2:0:1::/80"',
}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"tunnel.mut": "1"}, "client.toml: tunnel.mut: unknown key; did you mean tunnel.mtu?"),
        ({"tunel.mtu": "1400"}, "client.toml: tunel: unknown section; did you mean [tunnel]?"),
        ({"gateways.x": None}, "client.toml: gateways: unknown section; did you mean [gateway]?"),
        ({"routes.mtu": "1400"}, "client.toml: routes.mtu: unknown key; did you mean tunnel.mtu?"),
        ({"gateway.port": "[1]"}, "client.toml: gateway.port: unknown key; did you mean gateway.ports?"),
        ({"helper.start_at_boot": "true"}, "client.toml: helper.start_at_boot: unknown key"),
        (
            {"helper.auto_connect": "true"},
            "client.toml: helper.auto_connect: unknown key; did you mean helper.autoconnect?",
        ),
        (
            {"tunnel.keepalive": "10"},
            "client.toml: tunnel.keepalive: unknown key; did you mean tunnel.keepalive_interval?",
        ),
        ({"tunnel.extra": "{ x = 1 }"}, "client.toml: tunnel.extra: unknown key"),
        ({"xyzzy.x": None}, "client.toml: xyzzy: unknown section"),
    ],
)
def test_unknown_keys_are_errors_with_suggestions(extra: dict[str, str | None], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_client_config(render(extra, base=MINIMAL), FILE)
    assert str(info.value) == expected


def test_top_level_key_is_unknown() -> None:
    with pytest.raises(ConfigError) as info:
        parse_client_config("mtu = 1400\n" + render(), FILE)
    assert str(info.value) == "client.toml: mtu: unknown key; did you mean tunnel.mtu?"


# --------------------------------------------------------------------------- the two prefix forms


def test_parts_form() -> None:
    cfg = parse(PARTS)
    assert cfg.tunnel.prefix == IPv6Network("fd6d:3674:a1b2:0:1::/80")
    assert (cfg.tunnel.ula_prefix, cfg.tunnel.subnet_id, cfg.tunnel.mn_id) == (
        IPv6Network("fd6d:3674:a1b2::/48"),
        0,
        1,
    )
    assert cfg.tunnel.uses_parts
    assert parse({**PARTS, "tunnel.subnet_id": "65535", "tunnel.mn_id": "4660"}).tunnel.prefix == IPv6Network(
        "fd6d:3674:a1b2:ffff:1234::/80"
    )


def test_prefix_form_keeps_parts_empty() -> None:
    t = parse().tunnel
    assert (t.ula_prefix, t.subnet_id, t.mn_id) == (None, None, None)
    assert not t.uses_parts


def test_both_forms_is_an_error() -> None:
    error = problems({**PARTS, "tunnel.prefix": '"fd6d:3674:a1b2:0:1::/80"'})
    assert [p.key for p in error.problems] == ["tunnel.prefix"]
    assert "not both" in error.problems[0].message


def test_prefix_with_one_part_is_an_error() -> None:
    error = problems({"tunnel.mn_id": "3"})
    assert [p.key for p in error.problems] == ["tunnel.prefix"]
    assert "tunnel.mn_id" in error.problems[0].message


def test_neither_form_is_an_error() -> None:
    error = problems({"tunnel.prefix": None})
    assert [p.key for p in error.problems] == ["tunnel.prefix"]
    assert "is required" in error.problems[0].message
    assert "tunnel.ula_prefix" in error.problems[0].message


@pytest.mark.parametrize("missing", ["tunnel.ula_prefix", "tunnel.subnet_id", "tunnel.mn_id"])
def test_incomplete_parts_name_the_missing_one(missing: str) -> None:
    error = problems({**PARTS, missing: None})
    assert [p.key for p in error.problems] == [missing]
    assert "is required with" in error.problems[0].message


def test_two_missing_parts() -> None:
    error = problems({**PARTS, "tunnel.subnet_id": None, "tunnel.mn_id": None})
    assert [p.key for p in error.problems] == ["tunnel.subnet_id", "tunnel.mn_id"]


PART_INVALID = [
    ("tunnel.ula_prefix", '"fd6d:3674::/32"', "must be a /48"),
    ("tunnel.ula_prefix", '"2001:db8:1::/48"', "not a Unique Local prefix"),
    ("tunnel.ula_prefix", '"fd6d:3674:a1b2::1/48"', "has host bits set"),
    ("tunnel.ula_prefix", "48", "must be a string"),
    ("tunnel.subnet_id", "65536", "must be in the range 0..65535"),
    ("tunnel.subnet_id", "-1", "must be in the range 0..65535"),
    ("tunnel.subnet_id", "true", "must be an integer, not a boolean"),
    ("tunnel.mn_id", "65536", "must be in the range 0..65535"),
    ("tunnel.mn_id", '"1"', "must be an integer, not a string"),
]


@pytest.mark.parametrize(("key", "literal", "message"), PART_INVALID)
def test_invalid_parts(key: str, literal: str, message: str) -> None:
    error = problems({**PARTS, key: literal})
    assert [p.key for p in error.problems] == [key]
    assert message in error.problems[0].message


# --------------------------------------------------------------------------- round trips


def test_dump_keeps_the_form_the_user_chose() -> None:
    prefix_form = parse()
    parts_form = parse(PARTS)
    assert "prefix = " in dump_client_config(prefix_form)
    assert "ula_prefix" not in dump_client_config(prefix_form)
    assert "ula_prefix = " in dump_client_config(parts_form)
    assert '\nprefix = "' not in dump_client_config(parts_form)
    for cfg in (prefix_form, parts_form):
        assert parse_client_config(dump_client_config(cfg)) == cfg
        assert client_config_from_dict(client_config_to_dict(cfg), "x") == cfg


def test_to_dict_holds_plain_values() -> None:
    data = client_config_to_dict(parse())
    assert data == {
        "gateway": {"address": "198.51.100.2", "ports": [3544, 4500]},
        "tunnel": {
            "prefix": "fd6d:3674:a1b2:0:1::/80",
            "interface": "m6t0",
            "mtu": 1472,
            "keepalive_interval": 30,
            "probe": "fd00:ab::1",
        },
        "routes": {"default": True, "metric": 1029, "prefixes": []},
        "helper": {"operator_group": "m6t", "autoconnect": False},
        "access": {},
    }


def test_from_dict_treats_null_as_absent() -> None:
    data: dict[str, Any] = client_config_to_dict(parse())
    data["tunnel"]["probe"] = None
    assert client_config_from_dict(data, "api").tunnel.probe is None


def test_from_dict_rejects_a_non_table() -> None:
    with pytest.raises(ConfigError, match="api: must be a table of sections"):
        client_config_from_dict([], "api")  # type: ignore[arg-type]


_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True)
_HOST = st.builds(
    lambda labels, tld, dot: ".".join([*labels, tld]) + dot,
    st.lists(_LABEL, max_size=3),
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,8}[A-Za-z0-9]|[A-Za-z]", fullmatch=True),
    st.sampled_from(["", "."]),
)
_ADDRESS = st.one_of(st.ip_addresses(v=4).map(str), _HOST)
_PORTS = st.lists(st.integers(1, 65535), min_size=1, max_size=5, unique=True).map(tuple)
_NETWORK = st.builds(
    lambda value, length: IPv6Network((value >> (128 - length) << (128 - length), length)),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
_PREFIX80 = st.ip_addresses(network="2000::/3").map(lambda a: IPv6Network((int(a) >> 48 << 48, 80)))
_ULA48 = st.integers(0, 2**40 - 1).map(lambda g: IPv6Network(((0xFD << 120) | (g << 80), 48)))
_INTERFACE = st.from_regex(r"[A-Za-z0-9_.-]{1,15}", fullmatch=True).filter(lambda s: s not in (".", ".."))
_GROUP = st.text(
    st.characters(exclude_categories=("Cc", "Cs"), exclude_characters=":,"), min_size=1, max_size=20
).filter(lambda s: s == s.strip())


@st.composite
def tunnels(draw: st.DrawFn) -> TunnelSection:
    common: dict[str, Any] = {
        "interface": draw(_INTERFACE),
        "mtu": draw(st.integers(1280, 65507)),
        "keepalive_interval": float(draw(st.one_of(st.integers(1, 3600), st.floats(1, 3600)))),
        "probe": draw(st.none() | st.ip_addresses(network="2000::/3")),
    }
    if draw(st.booleans()):
        return TunnelSection(prefix=draw(_PREFIX80), **common)
    ula, subnet_id, mn_id = draw(_ULA48), draw(st.integers(0, 65535)), draw(st.integers(0, 65535))
    return TunnelSection(
        prefix=prefix80_from_parts(ula, subnet_id, mn_id), ula_prefix=ula, subnet_id=subnet_id, mn_id=mn_id, **common
    )


client_configs = st.builds(
    ClientConfig,
    gateway=st.builds(
        GatewaySection, addresses=st.lists(_ADDRESS, min_size=1, max_size=4, unique=True).map(tuple), ports=_PORTS
    ),
    tunnel=tunnels(),
    routes=st.builds(
        RoutesSection,
        default=st.booleans(),
        metric=st.integers(1, 2**32 - 1),
        prefixes=st.lists(_NETWORK, max_size=4, unique=True).map(tuple),
    ),
    helper=st.builds(HelperSection, operator_group=_GROUP, autoconnect=st.booleans()),
)


@given(client_configs)
def test_dict_round_trip(cfg: ClientConfig) -> None:
    assert client_config_from_dict(client_config_to_dict(cfg), "x") == cfg


@given(client_configs)
def test_toml_round_trip(cfg: ClientConfig) -> None:
    assert parse_client_config(dump_client_config(cfg)) == cfg


# --------------------------------------------------------------------------- set_client_option


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("tunnel.mtu", "1400", 1400),
        ("tunnel.keepalive_interval", "12.5", 12.5),
        ("gateway.ports", "[4500, 3544]", (4500, 3544)),
        ("gateway.ports", "4500", (4500,)),
        ("gateway.ports", "4500,3544", (4500, 3544)),
        ("gateway.ports", "4500, 53", (4500, 53)),
        ("gateway.address", "gw.example.org", "gw.example.org"),
        ("gateway.address", '"gw.example.org"', "gw.example.org"),
        ("gateway.address", "203.0.113.9", "203.0.113.9"),
        ("gateway.address", "203.0.113.9,gw.example.org", ("203.0.113.9", "gw.example.org")),
        ("gateway.address", "203.0.113.9, gw.example.org", ("203.0.113.9", "gw.example.org")),
        ("gateway.address", '["gw.example.org", "203.0.113.9"]', ("gw.example.org", "203.0.113.9")),
        ("tunnel.interface", "m6t1", "m6t1"),
        ("tunnel.interface", "1234", "1234"),
        ("tunnel.probe", "fd00:ab::2", IPv6Address("fd00:ab::2")),
        ("tunnel.probe", "", None),
        ("tunnel.probe", '""', None),
        ("routes.default", "false", False),
        ("routes.metric", "100", 100),
        ("routes.prefixes", '["2001:db8::/32"]', (IPv6Network("2001:db8::/32"),)),
        ("routes.prefixes", "2001:db8::/32,fd00::/8", (IPv6Network("2001:db8::/32"), IPv6Network("fd00::/8"))),
        ("routes.prefixes", "", ()),
        ("routes.prefixes", "[]", ()),
        ("helper.operator_group", "netadmin", "netadmin"),
        ("helper.operator_group", "1234", "1234"),
        ("helper.operator_group", "2024-01-01", "2024-01-01"),
        ("helper.autoconnect", "true", True),
    ],
)
def test_set_option(key: str, raw: str, expected: object) -> None:
    before = parse()
    after = set_client_option(before, key, raw)
    assert field_of(after, key) == expected
    assert before == parse()
    # Nothing else moved.
    for other in client_config_keys():
        if other != key and other.startswith(("gateway", "routes", "helper")):
            assert field_of(after, other) == field_of(before, other)


def test_set_prefix_drops_the_parts_form() -> None:
    after = set_client_option(parse(PARTS), "tunnel.prefix", "fd6d:3674:a1b2:0:9::/80")
    assert after.tunnel.prefix == IPv6Network("fd6d:3674:a1b2:0:9::/80")
    assert not after.tunnel.uses_parts
    assert (after.tunnel.ula_prefix, after.tunnel.subnet_id, after.tunnel.mn_id) == (None, None, None)


def test_set_one_part_on_the_prefix_form_splits_the_prefix() -> None:
    after = set_client_option(parse(), "tunnel.mn_id", "7")
    assert after.tunnel.uses_parts
    assert after.tunnel.ula_prefix == IPv6Network("fd6d:3674:a1b2::/48")
    assert (after.tunnel.subnet_id, after.tunnel.mn_id) == (0, 7)
    assert after.tunnel.prefix == IPv6Network("fd6d:3674:a1b2:0:7::/80")


def test_set_part_on_the_parts_form() -> None:
    after = set_client_option(parse(PARTS), "tunnel.subnet_id", "2")
    assert after.tunnel.prefix == IPv6Network("fd6d:3674:a1b2:2:1::/80")
    after = set_client_option(parse(PARTS), "tunnel.ula_prefix", "fd00:1:2::/48")
    assert after.tunnel.prefix == IPv6Network("fd00:1:2:0:1::/80")


def test_set_part_on_a_non_ula_prefix_names_the_key() -> None:
    cfg = parse({"tunnel.prefix": '"2001:db8:1:2:3::/80"'})
    with pytest.raises(ConfigError) as info:
        set_client_option(cfg, "tunnel.mn_id", "7")
    keys = [p.key for p in info.value.problems]
    assert "tunnel.mn_id" in keys
    assert "tunnel.ula_prefix" in keys
    assert cfg.tunnel.prefix == IPv6Network("2001:db8:1:2:3::/80")


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("tunnel.mtu", "1000", "must be in the range 1280..65507, not 1000"),
        ("tunnel.mtu", "abc", "must be an integer, not a string"),
        ("tunnel.mtu", "1400.0", "must be an integer, not a float"),
        ("gateway.ports", "[3544, 3544]", "repeats 3544"),
        ("gateway.ports", "x", "must be an integer, not a string"),
        ("gateway.ports", "[]", "must not be empty"),
        ("gateway.address", "bad_name", "not a valid host name"),
        ("gateway.address", "", "must not be empty"),
        ("gateway.address", "gw.example.org,bad_name", "not a valid host name"),
        ("gateway.address", "gw.example.org,gw.example.org", "repeats gw.example.org"),
        ("tunnel.prefix", "fd6d::/64", "must be a /80"),
        ("tunnel.probe", "ff02::1", "multicast"),
        ("routes.default", "yes", "must be true or false"),
        ("helper.autoconnect", "1", "must be true or false"),
    ],
)
def test_set_invalid_value_names_the_key_and_changes_nothing(key: str, raw: str, message: str) -> None:
    before = parse()
    snapshot = dump_client_config(before)
    with pytest.raises(ConfigError) as info:
        set_client_option(before, key, raw)
    assert any((p.key == key or p.key.startswith(key + "[")) and message in p.message for p in info.value.problems)
    assert all(p.file == "<command line>" for p in info.value.problems)
    assert dump_client_config(before) == snapshot
    assert before == parse()


def test_set_unknown_key() -> None:
    with pytest.raises(ConfigError) as info:
        set_client_option(parse(), "tunnel.mut", "1400")
    assert str(info.value) == "<command line>: tunnel.mut: unknown setting; did you mean tunnel.mtu?"
    with pytest.raises(ConfigError) as info:
        set_client_option(parse(), "mtu", "1400", source="m6t config set")
    assert str(info.value).startswith("m6t config set: mtu: unknown setting")
    with pytest.raises(ConfigError, match=r"known settings: gateway\.address"):
        set_client_option(parse(), "qqq.zzz", "1")


def test_client_config_keys() -> None:
    assert set(client_config_keys()) == {
        "gateway.address",
        "gateway.ports",
        "tunnel.prefix",
        "tunnel.ula_prefix",
        "tunnel.subnet_id",
        "tunnel.mn_id",
        "tunnel.interface",
        "tunnel.mtu",
        "tunnel.keepalive_interval",
        "tunnel.probe",
        "tunnel.pmtud",
        "tunnel.uplinks",
        "routes.default",
        "routes.metric",
        "routes.prefixes",
        "helper.operator_group",
        "helper.autoconnect",
        "access.key_id",
        "access.key_file",
    }


@given(st.sampled_from(client_config_keys()), st.text(max_size=30))
def test_set_option_never_raises_anything_else(key: str, raw: str) -> None:
    before = parse()
    try:
        after = set_client_option(before, key, raw)
    except ConfigError as exc:
        assert exc.problems
    else:
        assert parse_client_config(dump_client_config(after)) == after
    assert before == parse()


# --------------------------------------------------------------------------- fuzzing


_KEYS = [*client_config_keys(), "tunnel.mut", "gateway", "x.y", "tunnel.prefix.z"]
_TEXTS = config_checks.toml_ish_texts(
    ["[gateway]", "[tunnel]", "[routes]", "[helper]", "[tunel]", "[[tunnel]]", "[gateway.x]", ""],
    _KEYS,
    [
        '"198.51.100.2"',
        '"fd6d:3674:a1b2:0:1::/80"',
        '"fd6d:3674:a1b2::/48"',
        '"fd00:ab::1"',
        "[3544, 4500]",
        '["2001:db8::/32"]',
        "1979-05-27",
        "07:32:00",
        "{ a = 1 }",
        "[[1], [2]]",
        "[",
        '"',
        "",
        "= =",
    ],
)


@given(_TEXTS)
def test_toml_ish_text_only_raises_config_error(text: str) -> None:
    config_checks.assert_text_loads_or_config_error(text, FILE, parse_client_config, dump_client_config)


@given(st.text(max_size=200))
def test_arbitrary_text_only_raises_config_error(text: str) -> None:
    config_checks.assert_text_loads_or_config_error(text, FILE, parse_client_config, dump_client_config)


@given(
    config_checks.config_shaped_dicts(
        ["gateway", "tunnel", "routes", "helper", "other"], [k.split(".")[1] for k in _KEYS if "." in k]
    )
)
def test_arbitrary_dict_only_raises_config_error(data: dict[str, Any]) -> None:
    config_checks.assert_dict_loads_or_config_error(data, client_config_from_dict, client_config_to_dict)


def test_pmtud_follows_the_probe_unless_set() -> None:
    assert parse({}).tunnel.pmtud_enabled
    assert not parse({"tunnel.probe": None}).tunnel.pmtud_enabled
    off = parse({"tunnel.pmtud": "false"})
    assert not off.tunnel.pmtud_enabled
    assert client_config_to_dict(off)["tunnel"]["pmtud"] is False
    assert "pmtud" not in client_config_to_dict(parse({}))["tunnel"]
    # Every value the file accepts runs: on without a probe address is refused, naming both keys.
    error = problems({"tunnel.probe": None, "tunnel.pmtud": "true"})
    assert [p.key for p in error.problems] == ["tunnel.pmtud"]
    assert "tunnel.probe" in error.problems[0].message
