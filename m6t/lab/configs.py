"""The configuration files the lab's gateway and mobile node run with.

Built from the real configuration types and written by their own dumpers, then parsed back, so a lab
config can never drift from what ``m6t-gateway`` and ``m6t-helper`` accept: the demo, the lab tests and the
benchmarks all start from here and only say what they change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Final

from m6t.client.config import (
    UPLINKS_BEST,
    ClientConfig,
    GatewaySection,
    HelperSection,
    TunnelSection,
    dump_client_config,
    parse_client_config,
)
from m6t.gateway.config import (
    AccessSection,
    FastLaneSection,
    GatewayConfig,
    GatewayTunnelSection,
    ListenSection,
    MetricsSection,
    StatesSection,
    dump_gateway_config,
    parse_gateway_config,
    parse_metrics_endpoint,
)
from m6t.lab import addresses as a
from m6t.protocol import DEFAULT_MTU, KEEPALIVE_INTERVAL_S

MN_PREFIX: Final = IPv6Network("fd6d:3674:a1b2:0:1::/80")
"""The mobile node's /80: subnet 0, MN ID 1 under the lab's m6t /48 (DESIGN.md, lab addresses)."""
MN_INTERFACE: Final = "m6t0"
GW_INTERFACE: Final = "m6tgw0"
DEFAULT_PORTS: Final = (3544,)


def gateway_config(
    *,
    ports: Sequence[int] = DEFAULT_PORTS,
    interface: str = GW_INTERFACE,
    mtu: int = DEFAULT_MTU,
    states: StatesSection | None = None,
    metrics: str | None = None,
    state_directory: Path | None = None,
    fastlane: FastLaneSection | None = None,
    access: AccessSection | None = None,
) -> str:
    """The gateway's TOML: listens on ``ports``, accepts the lab's m6t /48, forwards to the lab's HA.

    ``metrics`` is the config spelling of the endpoint (``"unix:/path"`` or ``"127.0.0.1:9477"``).
    ``state_directory``: where the states are kept across restarts; none by default, because every lab
    shares the host's file system and one lab's gateway must never restore another's states.
    """
    config = GatewayConfig(
        listen=ListenSection(address=IPv4Address("0.0.0.0"), ports=tuple(ports)),
        tunnel=GatewayTunnelSection(
            prefixes=(IPv6Network(a.M6T_PREFIX),), home_agents=(IPv6Address(a.HA),), interface=interface, mtu=mtu
        ),
        states=dataclasses.replace(states if states is not None else StatesSection(), state_directory=state_directory),
        metrics=MetricsSection(listen=parse_metrics_endpoint(metrics) if metrics else None),
        fastlane=fastlane if fastlane is not None else FastLaneSection(),
        access=access if access is not None else AccessSection(),
    )
    text = dump_gateway_config(config)
    parse_gateway_config(text, "<lab gateway config>")
    return text


def client_config(
    *,
    ports: Sequence[int] = DEFAULT_PORTS,
    interface: str = MN_INTERFACE,
    mtu: int = DEFAULT_MTU,
    keepalive: float = KEEPALIVE_INTERVAL_S,
    probe: bool = True,
    pmtud: bool | None = None,
    autoconnect: bool = True,
    gateways: Sequence[str] = (a.GW_WAN,),
    uplinks: str = UPLINKS_BEST,
) -> str:
    """The mobile node's TOML: the lab gateway on ``ports`` (or ``gateways``, addresses or names in order of
    preference), the MN's /80, the default route via the tunnel; ``probe`` echoes the HA after each attachment
    (and path MTU discovery probes it, unless ``pmtud`` is False); ``uplinks = "all"``: a tunnel per uplink."""
    config = ClientConfig(
        gateway=GatewaySection(addresses=tuple(gateways), ports=tuple(ports)),
        tunnel=TunnelSection(
            prefix=MN_PREFIX,
            interface=interface,
            mtu=mtu,
            keepalive_interval=float(keepalive),
            probe=IPv6Address(a.HA) if probe else None,
            pmtud=pmtud,
            uplinks=uplinks,
        ),
        helper=HelperSection(autoconnect=autoconnect),
    )
    text = dump_client_config(config)
    parse_client_config(text, "<lab client config>")
    return text
