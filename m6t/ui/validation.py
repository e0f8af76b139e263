"""Settings checks the dialog runs on every keystroke: pure, no Qt, no I/O.

They catch what can be told from one field alone (syntax, ranges, the /80 rules of :mod:`m6t.protocol`),
so the user sees a mistake as it is typed.  The helper stays the judge of the configuration as a whole:
the dialog also asks it for a dry run, and shows its problems next to the field they name.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Interface, IPv6Network
from typing import Any, Final

from m6t.protocol import AddressingError, check_prefix80, prefix80_from_parts

_HOST_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class FieldError(ValueError):
    """One field's value is unusable; the message is shown under the field as is."""


def gateway_address(text: str) -> str:
    value = text.strip()
    if not value:
        raise FieldError("The gateway address is required.")
    try:
        return str(IPv4Address(value))
    except ValueError:
        pass
    if value.replace(".", "").isdigit():
        raise FieldError(f"{value} is not an IPv4 address.")
    name = value.removesuffix(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise FieldError(f"{value} is neither an IPv4 address nor a host name.")
    return value


def ports(text: str) -> list[int]:
    """``"3544, 4500"`` → ``[3544, 4500]``: the order is the order they are tried in."""
    items = [item for item in re.split(r"[\s,]+", text.strip()) if item]
    if not items:
        raise FieldError("Give at least one port.")
    result: list[int] = []
    for item in items:
        if not item.isdigit() or not 1 <= int(item) <= 65535:
            raise FieldError(f"{item} is not a port (1 to 65535).")
        if int(item) in result:
            raise FieldError(f"Port {item} is listed twice.")
        result.append(int(item))
    return result


def prefix80(text: str) -> IPv6Network:
    value = text.strip()
    try:
        loose = IPv6Network(value, strict=False)
    except ValueError:
        raise FieldError(f"{value or 'An empty value'} is not an IPv6 prefix (e.g. fd6d:3674:a1b2:0:1::/80).") from None
    try:
        check_prefix80(loose)
    except AddressingError as exc:
        raise FieldError(str(exc)) from None
    if IPv6Interface(value).ip != loose.network_address:
        raise FieldError(f"Bits are set past the /80: did you mean {loose}?")
    return loose


def ula48(text: str) -> IPv6Network:
    try:
        network = IPv6Network(text.strip(), strict=True)
        # Composing with zero IDs applies the protocol's own /48 and fc00::/7 rules.
        prefix80_from_parts(network, 0, 0)
    except (AddressingError, ValueError) as exc:
        raise FieldError(str(exc)) from None
    return network


def prefix_list(text: str) -> list[str]:
    """Extra prefixes, one per line (commas also separate)."""
    result: list[str] = []
    for item in (part for part in re.split(r"[\s,]+", text.strip()) if part):
        try:
            network = IPv6Network(item, strict=True)
        except ValueError as exc:
            raise FieldError(f"{item}: {exc}") from None
        if str(network) in result:
            raise FieldError(f"{network} is listed twice.")
        result.append(str(network))
    return result


@dataclass(frozen=True, slots=True)
class TunnelForm:
    """The helper-side settings as the dialog's fields hold them, already checked one by one."""

    gateway_address: str
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
