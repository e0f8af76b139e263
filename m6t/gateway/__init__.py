"""The m6t tunnel gateway: a sans-I/O core (states, validation, forwarding decisions), its asyncio driver,
metrics and CLI.  Linux only at run time; the core itself is pure Python and runs anywhere.
"""

from m6t.gateway.core import CoreSettings, GatewayCore, Verdict, settings_from_config
from m6t.gateway.counters import Counter, Drop, Side
from m6t.gateway.states import StateView, pack_endpoint, unpack_endpoint

__all__ = [
    "CoreSettings",
    "Counter",
    "Drop",
    "GatewayCore",
    "Side",
    "StateView",
    "Verdict",
    "pack_endpoint",
    "settings_from_config",
    "unpack_endpoint",
]
