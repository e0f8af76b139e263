"""What the gateway counts: traffic each way and every reason a packet is dropped.

Counters live in plain lists of ints indexed by these enums, so that counting costs one list store on
the data path; the enums give the indexes names for metrics and tests.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from m6t.protocol import Reason
from m6t.protocol.access import Refusal


class Side(StrEnum):
    """Where a dropped packet came from."""

    MN = "mn"
    """A UDP datagram from a mobile node."""
    HA = "ha"
    """A packet from the Home Agent side, read from the TUN."""


class Drop(IntEnum):
    """Why a packet was dropped; each value indexes ``GatewayCore.drops``."""

    MN_TOO_SHORT = 0
    MN_NOT_IPV6 = 1
    MN_LENGTH_MISMATCH = 2
    MN_BAD_OUTER_SOURCE = 3
    """Source port 0 or address 0.0.0.0: nothing could ever be sent back."""
    MN_SOURCE_NOT_IN_PREFIX = 4
    MN_DESTINATION_NOT_ALLOWED = 5
    """Neither a configured Home Agent nor a keepalive to fe80::1 (draft 6.1.3)."""
    MN_BINDING_MISMATCH = 6
    """A state exists for the source but with another IPv4 address, port or local socket (draft 2.4, 6.1.1)."""
    MN_KEEPALIVE_WITHOUT_ACTIVE_STATE = 7
    """Keepalives are answered for active states only (draft 2.3)."""
    MN_RATE_LIMITED = 8
    """The source IPv4 address used up its allowance of new states (draft 6.1.3)."""
    MN_TEMPORARY_STATES_FULL = 9
    MN_STATES_FULL = 10
    HA_TOO_SHORT = 11
    HA_NOT_IPV6 = 12
    HA_LENGTH_MISMATCH = 13
    HA_DESTINATION_NOT_IN_PREFIX = 14
    HA_NO_STATE = 15
    """No active or temporary state for the destination (draft 3)."""
    # Enrolled mode (docs/enrolled-access.md 4); an open gateway counts none of these.
    MN_UNAUTHENTICATED = 16
    """A datagram without the access header would have created a state."""
    MN_AUTH_MALFORMED = 17
    MN_AUTH_UNKNOWN_KEY = 18
    MN_AUTH_STALE = 19
    MN_AUTH_BAD_MAC = 20
    MN_AUTH_REPLAYED = 21
    MN_AUTH_REPLAY_CACHE_FULL = 22

    @property
    def side(self) -> Side:
        return Side.MN if self.name.startswith("MN_") else Side.HA

    @property
    def reason(self) -> str:
        """The metric label: the name without its side, in lower case."""
        return self.name.split("_", 1)[1].lower()


class Counter(IntEnum):
    """Traffic counters; each value indexes ``GatewayCore.counters``."""

    MN_PACKETS = 0
    """Datagrams received from mobile nodes, dropped or not."""
    MN_BYTES = 1
    TO_HA_PACKETS = 2
    """Packets forwarded toward the Home Agent (written to the TUN)."""
    TO_HA_BYTES = 3
    HA_PACKETS = 4
    """Packets read from the TUN, dropped or not."""
    HA_BYTES = 5
    TO_MN_PACKETS = 6
    """Packets sent to mobile nodes, keepalive replies excluded."""
    TO_MN_BYTES = 7
    KEEPALIVES = 8
    """Keepalive replies sent."""
    STATES_CREATED = 9
    """Temporary states created."""
    STATES_PROMOTED = 10
    """Temporary states made active by a packet from the Home Agent side."""
    STATES_RESTORED = 11
    """States put back from the snapshot an earlier run saved (a restart)."""


MN_PROBLEM_DROPS: dict[Reason, Drop] = {
    Reason.TOO_SHORT: Drop.MN_TOO_SHORT,
    Reason.NOT_IPV6: Drop.MN_NOT_IPV6,
    Reason.LENGTH_MISMATCH: Drop.MN_LENGTH_MISMATCH,
}
HA_PROBLEM_DROPS: dict[Reason, Drop] = {
    Reason.TOO_SHORT: Drop.HA_TOO_SHORT,
    Reason.NOT_IPV6: Drop.HA_NOT_IPV6,
    Reason.LENGTH_MISMATCH: Drop.HA_LENGTH_MISMATCH,
}
REFUSAL_DROPS: tuple[Drop, ...] = tuple(Drop[f"MN_AUTH_{refusal.name}"] for refusal in Refusal)
"""Indexed by :class:`~m6t.protocol.access.Refusal`."""
