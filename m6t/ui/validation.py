"""Settings checks the dialog runs on every keystroke: pure, no Qt, no I/O.

Each field's text is read into the value its configuration key holds (a list of ports, a prefix) and
checked with that key's own rule, the one the helper applies (:mod:`m6t.client.api.config_rules`), so the
user sees a mistake as it is typed, in the helper's words.  The helper stays the judge of the configuration
as a whole: the dialog also asks it for a dry run, and shows its problems next to the field they name.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Network
from typing import Any, TypeVar

from m6t.client.api import config_rules as rules
from m6t.protocol import prefix80_from_parts

T = TypeVar("T")


class FieldError(ValueError):
    """One field's value is unusable; the message is shown under the field as is."""


def _checked(rule: Callable[[object], T], value: object) -> T:
    try:
        return rule(value)
    except rules.Invalid as exc:
        # Element suffixes ("[1]") are for files; each message names the value it is about.
        raise FieldError("; ".join(message for _suffix, message in exc.items)) from None


def _items(text: str) -> list[str]:
    """A list typed into one field: commas, spaces or new lines between the items."""
    return [item for item in re.split(r"[\s,]+", text.strip()) if item]


def _number(item: str) -> int | str:
    # Anything but digits stays text, so the rule's message shows what was typed.
    if not (item.isascii() and item.isdigit()):
        return item
    try:
        return int(item)
    except ValueError:  # beyond int()'s digit limit
        return item


def gateway_address(text: str) -> str | list[str]:
    """One gateway, or several in order of preference (``"gw1.example.org, 198.51.100.2"``): the value as the
    file holds it, a string for one, a list for more."""
    items = _items(text)
    addresses = _checked(rules.gateway_address, items if len(items) > 1 else (items or [""])[0])
    return addresses[0] if len(addresses) == 1 else list(addresses)


def ports(text: str) -> list[int]:
    """``"3544, 4500"`` → ``[3544, 4500]``: the order is the order they are tried in."""
    return list(_checked(rules.gateway_ports, [_number(item) for item in _items(text)]))


def prefix80(text: str) -> IPv6Network:
    return _checked(rules.tunnel_prefix, text.strip())


def ula48(text: str) -> IPv6Network:
    return _checked(rules.tunnel_ula_prefix, text.strip())


def prefix_list(text: str) -> list[str]:
    """Extra prefixes, one per line (commas also separate)."""
    return [str(network) for network in _checked(rules.routes_prefixes, _items(text))]


@dataclass(frozen=True, slots=True)
class TunnelForm:
    """The helper-side settings as the dialog's fields hold them, already checked one by one."""

    gateway_address: str | list[str]
    ports: list[int]
    prefix: IPv6Network | None
    """Set when the /80 is given whole; otherwise the three parts are."""
    ula_prefix: IPv6Network | None
    subnet_id: int | None
    mn_id: int | None
    mtu: int
    keepalive_interval: float
    default_route: bool
    metric: int
    prefixes: list[str]

    @property
    def prefix80(self) -> IPv6Network:
        """The /80 in use, whichever form it was given in."""
        if self.prefix is not None:
            return self.prefix
        assert self.ula_prefix is not None and self.subnet_id is not None and self.mn_id is not None
        return prefix80_from_parts(self.ula_prefix, self.subnet_id, self.mn_id)


def merged_config(base: dict[str, Any], form: TunnelForm) -> dict[str, Any]:
    """``base`` (as ``config.get`` returned it) with the form's values; keys the dialog does not show are kept.

    The whole configuration goes back (``config.set`` with ``config``) because switching between the two
    prefix forms must remove keys, which a list of ``changes`` cannot express.
    """
    config = copy.deepcopy(base)
    gateway = config.setdefault("gateway", {})
    gateway["address"] = form.gateway_address
    gateway["ports"] = list(form.ports)
    tunnel = config.setdefault("tunnel", {})
    for key in ("prefix", "ula_prefix", "subnet_id", "mn_id"):
        tunnel.pop(key, None)
    if form.prefix is not None:
        tunnel["prefix"] = str(form.prefix)
    else:
        tunnel["ula_prefix"] = str(form.ula_prefix)
        tunnel["subnet_id"] = form.subnet_id
        tunnel["mn_id"] = form.mn_id
    tunnel["mtu"] = form.mtu
    # A whole number of seconds reads back as an int, as the file would have it.
    interval = form.keepalive_interval
    tunnel["keepalive_interval"] = int(interval) if float(interval).is_integer() else interval
    routes = config.setdefault("routes", {})
    routes["default"] = form.default_route
    routes["metric"] = form.metric
    routes["prefixes"] = list(form.prefixes)
    return config
