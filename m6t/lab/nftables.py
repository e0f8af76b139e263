"""nftables rulesets the lab loads into namespaces.

Each feature gets a table of its own, so undoing it is deleting that table and features never interfere
with each other's rules. Every ruleset is loaded as one `nft -f -` transaction: a reload replaces the old
table atomically (the `add table` + `delete table` idiom works on nft releases without `destroy`).
"""

from __future__ import annotations

import re

from m6t.lab.errors import LabError

NAT_TABLE = "m6t_lab_nat"
CT_TIMEOUT_TABLE = "m6t_lab_ct_timeout"
TABLE_PREFIX = "m6t_lab_"

_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def check_ifname(ifname: str) -> str:
    """Return ifname when it is safe to splice into a ruleset; raise LabError otherwise."""
    if not _IFNAME.match(ifname):
        raise LabError(f"bad interface name {ifname!r}")
    return ifname


def _replace(family: str, table: str, body: str) -> str:
    return f"add table {family} {table}\ndelete table {family} {table}\ntable {family} {table} {{\n{body}}}\n"


def delete_table(family: str, table: str) -> str:
    """A ruleset deleting a table whether or not it exists."""
    return f"add table {family} {table}\ndelete table {family} {table}\n"


def nat(outside: str) -> str:
    """Masquerade what leaves the outside interface; like a home router, refuse unsolicited inbound."""
    outside = check_ifname(outside)
    body = f"""\
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{outside}" masquerade
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{outside}" ct state established,related accept
    iifname "{outside}" drop
  }}
"""
    return _replace("ip", NAT_TABLE, body)


FRAGMENTS_TABLE = "m6t_lab_no_fragments"


def drop_ipv4_fragments() -> str:
    """Drop every IPv4 fragment that arrives (the first, MF set, and the others, an offset), as firewalls and
    carrier NATs often do: hooked before conntrack's reassembly (priority -400), which would hide them."""
    body = """\
  chain prerouting {
    type filter hook prerouting priority -450; policy accept;
    ip frag-off & 0x1fff != 0 counter drop
    ip frag-off & 0x2000 != 0 counter drop
  }
"""
    return _replace("ip", FRAGMENTS_TABLE, body)


def drop_table(ifname: str) -> str:
    """The table name used by drop_share for that interface."""
    return f"{TABLE_PREFIX}drop_{_table_suffix(check_ifname(ifname))}"


def drop_share(ifname: str, percent: int, direction: str) -> str:
    """Drop percent % of the packets crossing ifname, chosen at random, in the given direction(s)."""
    if not 0 <= percent <= 100:
        raise LabError(f"drop share must be 0..100 %, not {percent}")
    if direction not in ("both", "in", "out"):
        raise LabError(f"direction must be both, in or out, not {direction!r}")
    ifname = check_ifname(ifname)
    # numgen yields 0..99, so "< 100" is out of its range and nft refuses it.
    verdict = "drop" if percent == 100 else f"numgen random mod 100 < {percent} drop"
    chains = ""
    # Before defragmentation and conntrack on the way in, after NAT on the way out: like a loss on the wire.
    if direction in ("both", "in"):
        chains += f"""\
  chain ingress {{
    type filter hook prerouting priority -450; policy accept;
    iifname "{ifname}" {verdict}
  }}
"""
    if direction in ("both", "out"):
        chains += f"""\
  chain egress {{
    type filter hook postrouting priority 400; policy accept;
    oifname "{ifname}" {verdict}
  }}
"""
    return _replace("inet", drop_table(ifname), chains)


def block_table(port: int) -> str:
    """The table name used by block_udp_port for that port."""
    return f"{TABLE_PREFIX}block_udp_{_check_port(port)}"


def block_udp_port(inside: str, outside: str, port: int) -> str:
    """Drop forwarded UDP toward a remote port and what comes back from it, like a restrictive firewall."""
    inside, outside = check_ifname(inside), check_ifname(outside)
    port = _check_port(port)
    body = f"""\
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
    iifname "{inside}" udp dport {port} drop
    iifname "{outside}" udp sport {port} drop
  }}
"""
    return _replace("inet", block_table(port), body)


def udp_ct_timeout(unreplied: int, replied: int) -> str:
    """Give new UDP conntrack entries these timeouts, for kernels whose UDP timeout sysctl is global."""
    if unreplied < 1 or replied < 1:
        raise LabError("conntrack timeouts must be at least 1 s")
    # The policy attaches only to a connection conntrack has created but not yet confirmed: the chains
    # must run after conntrack (priority filter), not at raw priority.
    body = f"""\
  ct timeout udp_lab {{
    protocol udp;
    l3proto ip;
    policy = {{ unreplied: {unreplied}, replied: {replied} }}
  }}
  chain prerouting {{
    type filter hook prerouting priority filter; policy accept;
    meta l4proto udp ct timeout set "udp_lab"
  }}
  chain output {{
    type filter hook output priority filter; policy accept;
    meta l4proto udp ct timeout set "udp_lab"
  }}
"""
    return _replace("ip", CT_TIMEOUT_TABLE, body)


def _check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise LabError(f"bad UDP port {port}")
    return port


def _table_suffix(ifname: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", ifname)
