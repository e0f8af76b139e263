"""The client configuration's rules, key by key, for a client that checks a field as it is typed (the tray).

These are the converters the helper validates every configuration with (:mod:`m6t.client.config`), so a
rule is written once.  Each takes a key's value as the configuration holds it (TOML, or the API's JSON)
and returns it typed, or raises :class:`Invalid`; its messages read after the key's name ("must be ...")
or name the value themselves.  What only the whole configuration or the helper can judge (the two prefix
forms together, a host name that resolves) stays with ``config.set`` and its ``dry_run``.
"""

from typing import Final

from m6t.client.config import (
    KEEPALIVE_MAX_S,
    KEEPALIVE_MIN_S,
    MAX_ID,
    MAX_METRIC,
    MAX_MTU,
    MIN_METRIC,
    gateway_address,
    gateway_ports,
    routes_prefixes,
    tunnel_pmtud,
    tunnel_prefix,
    tunnel_ula_prefix,
    tunnel_uplinks,
)
from m6t.configfile import Invalid
from m6t.protocol import IPV6_MIN_MTU

MIN_MTU: Final = IPV6_MIN_MTU

__all__ = [
    "KEEPALIVE_MAX_S",
    "KEEPALIVE_MIN_S",
    "MAX_ID",
    "MAX_METRIC",
    "MAX_MTU",
    "MIN_METRIC",
    "MIN_MTU",
    "Invalid",
    "gateway_address",
    "gateway_ports",
    "routes_prefixes",
    "tunnel_pmtud",
    "tunnel_prefix",
    "tunnel_ula_prefix",
    "tunnel_uplinks",
]
