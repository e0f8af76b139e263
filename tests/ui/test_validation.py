"""Per-field settings checks and how the form merges back into the helper's configuration."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv6Network

import pytest

from m6t.client.config import ConfigError, client_config_from_dict
from m6t.ui import validation
from m6t.ui.validation import FieldError, TunnelForm
from tests.ui.fake_helper import make_config


@pytest.mark.parametrize("text", ["198.51.100.2", " gw.example.org ", "gateway", "gw-1.example."])
def test_gateway_address_accepts_ipv4_and_host_names(text: str) -> None:
    assert validation.gateway_address(text) == text.strip()


@pytest.mark.parametrize("text", ["", "198.51.100.300", "-bad.example", "a..b", "has space..", "fd00::1"])
def test_gateway_address_rejects(text: str) -> None:
    with pytest.raises(FieldError):
        validation.gateway_address(text)


def test_ports_keep_their_order() -> None:
    assert validation.ports("4500, 3544 443") == [4500, 3544, 443]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "must not be empty"),
        ("0", "must be in the range 1..65535, not 0"),
        ("70000", "must be in the range 1..65535, not 70000"),
        ("abc", r"must be an integer, not a string \('abc'\)"),
        ("443, 443", r"repeats 443 \(already at index 0\)"),
    ],
)
def test_ports_rejects(text: str, needle: str) -> None:
    with pytest.raises(FieldError, match=needle):
        validation.ports(text)


def test_prefix80_uses_the_protocol_rules() -> None:
    assert validation.prefix80("fd6d:3674:a1b2:0:1::/80") == IPv6Network("fd6d:3674:a1b2:0:1::/80")
    with pytest.raises(FieldError, match="/64"):
        validation.prefix80("fd6d:3674:a1b2::/64")
    with pytest.raises(FieldError, match=r"did you mean fd6d:3674:a1b2:0:1::/80\?"):
        validation.prefix80("fd6d:3674:a1b2:0:1::1/80")
    with pytest.raises(FieldError, match="not an IPv6 prefix"):
        validation.prefix80("fd6d::zz/80")
    with pytest.raises(FieldError, match="multicast"):
        validation.prefix80("ff02:0:0:0:1::/80")


def test_ula48_must_be_a_unique_local_48() -> None:
    assert validation.ula48("fd6d:3674:a1b2::/48") == IPv6Network("fd6d:3674:a1b2::/48")
    with pytest.raises(FieldError, match="Unique Local"):
        validation.ula48("2001:db8:1::/48")
    with pytest.raises(FieldError):
        validation.ula48("fd6d:3674::/32")


def test_prefix_list() -> None:
    assert validation.prefix_list("fd00:ab::/64\n fd00:cd::/64,") == ["fd00:ab::/64", "fd00:cd::/64"]
    assert validation.prefix_list("  ") == []
    with pytest.raises(FieldError, match="repeats fd00:ab::/64"):
        validation.prefix_list("fd00:ab::/64 fd00:ab::/64")
    with pytest.raises(FieldError, match="fd00:ab::1/64"):
        validation.prefix_list("fd00:ab::1/64")


def _form(**overrides: object) -> TunnelForm:
    values: dict[str, object] = {
        "gateway_address": "198.51.100.2",
        "ports": [3544, 4500],
        "prefix": IPv6Network("fd6d:3674:a1b2:0:1::/80"),
        "ula_prefix": None,
        "subnet_id": None,
        "mn_id": None,
        "mtu": 1472,
        "keepalive_interval": 30.0,
        "default_route": True,
        "metric": 1029,
        "prefixes": [],
    }
    values.update(overrides)
    return TunnelForm(**values)  # type: ignore[arg-type]


def test_unchanged_form_merges_to_the_same_config() -> None:
    base = make_config()
    assert validation.merged_config(base, _form()) == base


def test_switching_to_parts_removes_the_80_and_keeps_unshown_keys() -> None:
    base = make_config()
    form = _form(prefix=None, ula_prefix=IPv6Network("fd6d:3674:a1b2::/48"), subnet_id=0, mn_id=7)
    merged = validation.merged_config(base, form)
    assert "prefix" not in merged["tunnel"]
    assert merged["tunnel"]["ula_prefix"] == "fd6d:3674:a1b2::/48"
    assert (merged["tunnel"]["subnet_id"], merged["tunnel"]["mn_id"]) == (0, 7)
    assert merged["tunnel"]["interface"] == "m6t0"
    assert merged["helper"] == base["helper"]
    assert base["tunnel"]["prefix"] == "fd6d:3674:a1b2:0:1::/80", "the base must not be modified"
    assert form.prefix80 == IPv6Network("fd6d:3674:a1b2:0:7::/80")


def test_fractional_keepalive_is_kept() -> None:
    assert (
        validation.merged_config(make_config(), _form(keepalive_interval=12.5))["tunnel"]["keepalive_interval"] == 12.5
    )


# ------------------------------------------------------------------------------- one rule, the helper's


def _helper_verdict(key: str, value: object) -> list[str]:
    """What the helper says of ``value`` at ``key`` (the rest of the configuration valid)."""
    config = make_config()
    section, name = key.split(".")
    config[section][name] = value
    try:
        client_config_from_dict(config, "<api>")
    except ConfigError as exc:
        return [problem.message for problem in exc.problems if problem.key.split("[")[0] == key]
    return []


@pytest.mark.parametrize(
    ("check", "text", "key", "value"),
    [
        # The host names the two copies of the rule used to judge differently: a dotted number is no name.
        (validation.gateway_address, "gw.example.123", "gateway.address", "gw.example.123"),
        (validation.gateway_address, "10.1", "gateway.address", "10.1"),
        (validation.gateway_address, "gw_1.example.org", "gateway.address", "gw_1.example.org"),
        (validation.gateway_address, "gw.example.org, 10.1", "gateway.address", ["gw.example.org", "10.1"]),
        (validation.gateway_address, "gw.example.org gw.example.org", "gateway.address", ["gw.example.org"] * 2),
        (validation.ports, "3544, 0", "gateway.ports", [3544, 0]),
        (validation.prefix80, "fd6d:3674:a1b2::/64", "tunnel.prefix", "fd6d:3674:a1b2::/64"),
        (validation.prefix_list, "fd00:ab::1/64", "routes.prefixes", ["fd00:ab::1/64"]),
    ],
)
def test_a_field_is_refused_in_the_helpers_own_words(
    check: Callable[[str], object], text: str, key: str, value: object
) -> None:
    verdict = _helper_verdict(key, value)
    assert verdict, "the helper refuses it"
    with pytest.raises(FieldError) as caught:
        check(text)
    assert str(caught.value) == "; ".join(verdict)


def test_what_the_helper_takes_the_field_takes() -> None:
    for name in ("gw.example.org", "gw-1.example.", "198.51.100.2", "a" * 63 + ".example"):
        assert _helper_verdict("gateway.address", name) == []
        assert validation.gateway_address(name) == name
    # Several, in order of preference: the list the file holds.
    assert _helper_verdict("gateway.address", ["gw.example.org", "198.51.100.2"]) == []
    assert validation.gateway_address(" gw.example.org,198.51.100.2 ") == ["gw.example.org", "198.51.100.2"]
    assert validation.gateway_address("gw.example.org,") == "gw.example.org"
    assert validation.gateway_address("gw1.example.org gw2.example.org") == ["gw1.example.org", "gw2.example.org"]
