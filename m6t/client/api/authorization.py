"""May the process on the other end of the control channel change things?

The platform's transport says who the peer is (:class:`~m6t.platform.base.PeerIdentity`: the OS's facts,
the same questions on every OS); this is the policy.
"""

from __future__ import annotations

from m6t.platform.base import PeerIdentity


def is_operator(peer: PeerIdentity | None, operator_group: str) -> bool:
    """The superuser (root, Administrators), or a peer holding ``operator_group``; an unknown peer reads only."""
    if peer is None:
        return False
    return peer.is_superuser or peer.in_group(operator_group)
