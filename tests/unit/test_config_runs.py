"""Every configuration the client's loader accepts is one the session runs with (one source of truth for limits).

Found by an attacker's read of the first landing: ``tunnel.mtu = 65535`` passed validation, then
``SessionSettings`` refused it at start-up with a traceback, because the two disagreed on the ceiling
(65535 vs 65507).  Hypothesis draws values on both sides of every numeric limit the file has; whatever the
loader accepts must turn into session settings without an error.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from m6t.client.config import ConfigError, client_config_from_dict
from m6t.client.driver import session_settings
from m6t.protocol import MAX_TUNNEL_MTU


def _around(*limits: int) -> st.SearchStrategy[int]:
    """Mostly values at and beside the limits, so most drawn configs are valid and the edges are all tried."""
    edges = sorted({v + d for v in limits for d in (-1, 0, 1)})
    return st.one_of(st.sampled_from(edges), st.integers(min(limits) - 10, max(limits) + 10))


_mtus = _around(1280, 1472, MAX_TUNNEL_MTU, 65535)
_metrics = _around(1, 1029, 2**32 - 1)
_seconds = st.one_of(_around(1, 30, 3600), st.floats(min_value=0.0, max_value=4000.0, allow_nan=False))
_ports = st.lists(_around(1, 3544, 65535), min_size=0, max_size=3)


@st.composite
def candidate_configs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "gateway": {"address": "198.51.100.2", "ports": draw(_ports)},
        "tunnel": {
            "prefix": "fd6d:3674:a1b2:0:1::/80",
            "mtu": draw(_mtus),
            "keepalive_interval": draw(_seconds),
            **draw(st.sampled_from([{}, {"probe": "fd00:ab::1"}, {"probe": ""}])),
            **draw(st.sampled_from([{}, {"pmtud": True}, {"pmtud": False}, {"pmtud": ""}])),
        },
        "routes": {"default": draw(st.booleans()), "metric": draw(_metrics)},
    }


@settings(max_examples=400, deadline=None)
@given(candidate_configs())
def test_every_accepted_config_starts_the_session(data: dict[str, Any]) -> None:
    try:
        config = client_config_from_dict(data)
    except ConfigError:
        return
    settings_ = session_settings(config)  # raised ValueError for tunnel.mtu = 65535 before the fix
    assert settings_.mtu == config.tunnel.mtu
    assert settings_.pmtud == (config.tunnel.probe is not None and data["tunnel"].get("pmtud") is not False)
    assert settings_.ports == config.gateway.ports


def test_the_mtu_ceiling_is_the_largest_udp_payload() -> None:
    base = {"gateway": {"address": "198.51.100.2"}, "tunnel": {"prefix": "fd6d:3674:a1b2:0:1::/80"}}
    accepted = client_config_from_dict({**base, "tunnel": {**base["tunnel"], "mtu": 65507}})
    assert session_settings(accepted).mtu == 65507
    try:
        client_config_from_dict({**base, "tunnel": {**base["tunnel"], "mtu": 65535}})
    except ConfigError as exc:
        assert "tunnel.mtu" in str(exc)
    else:
        raise AssertionError("tunnel.mtu = 65535 was accepted, but no UDP/IPv4 datagram carries it")
