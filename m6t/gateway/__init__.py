"""The m6t tunnel gateway: a sans-I/O core (states, validation, forwarding decisions), its asyncio driver,
metrics and CLI.

Linux only at run time: the daemon takes the Linux backend and hands the driver its TUN and sockets,
``m6t-gateway run`` refuses other systems (:func:`m6t.platform.require_linux`), and type checking for
darwin and win32 leaves the driver, daemon and CLI out (``.ci/run``).  The core, states, config and
metrics are pure Python, checked and run anywhere.
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
