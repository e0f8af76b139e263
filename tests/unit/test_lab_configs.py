"""The lab's configuration files come from the real config types, so both daemons accept them as written."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from m6t.client.config import parse_client_config
from m6t.gateway.config import StatesSection, UnixEndpoint, parse_gateway_config
from m6t.lab import configs


def test_gateway_config_says_what_the_caller_asked_and_the_lab_defaults_otherwise() -> None:
    text = configs.gateway_config(
        ports=(3544, 4500),
        states=StatesSection(new_states_per_ipv4_per_s=5, new_states_per_ipv4_burst=7),
        metrics="unix:/tmp/m6t-metrics.sock",
    )
    parsed = parse_gateway_config(text)
    assert parsed.listen.ports == (3544, 4500)
    assert parsed.tunnel.prefixes == (IPv6Network("fd6d:3674:a1b2::/48"),)
    assert parsed.tunnel.home_agents == (IPv6Address("fd00:ab::1"),)
    assert parsed.tunnel.interface == "m6tgw0"
    assert parsed.states.new_states_per_ipv4_burst == 7
    assert parsed.states.new_states_per_ipv4_per_s == 5
    assert parsed.metrics.listen == UnixEndpoint("/tmp/m6t-metrics.sock")
    # Labs share the host's file system: a lab's gateway keeps states only where it is told to.
    assert parsed.states.state_directory is None
    kept = parse_gateway_config(configs.gateway_config(state_directory=Path("/tmp/m6t-lab-x/gw-state")))
    assert kept.states.state_directory == Path("/tmp/m6t-lab-x/gw-state")


def test_client_config_probe_keepalive_and_autoconnect() -> None:
    parsed = parse_client_config(configs.client_config(ports=(4500,), keepalive=1, probe=False, autoconnect=False))
    assert parsed.gateway.addresses == ("198.51.100.2",) and parsed.gateway.ports == (4500,)
    assert parsed.tunnel.prefix == configs.MN_PREFIX
    assert parsed.tunnel.keepalive_interval == 1.0
    assert parsed.tunnel.probe is None
    assert parsed.helper.autoconnect is False
    assert parse_client_config(configs.client_config()).tunnel.probe == IPv6Address("fd00:ab::1")
