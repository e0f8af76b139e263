"""Which tunnel serves which uplink (m6t.client.uplinks), and the configuration that asks for it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m6t.client.config import ConfigError, parse_client_config
from m6t.client.uplinks import MAX_TUNNELS, AddTunnel, RemoveTunnel, Tunnel, UplinkPlan, names_problem, tunnel_name


def test_names_follow_the_configured_one() -> None:
    assert [tunnel_name("m6t0", n) for n in range(3)] == ["m6t0", "m6t1", "m6t2"]
    assert [tunnel_name("tun", n) for n in range(3)] == ["tun", "tun1", "tun2"]
    assert tunnel_name("wg9", 2) == "wg11"
    assert names_problem("m6t0") is None
    assert names_problem("abcdefghijklmn9") is not None  # its 8th tunnel, abcdefghijklmn16, would not fit


def test_each_uplink_keeps_its_tunnel_and_a_new_one_takes_the_lowest_free_name() -> None:
    plan = UplinkPlan("m6t0")
    assert plan.update(["wlan0", "usb0"]) == [
        AddTunnel(Tunnel(0, "m6t0", "wlan0")),
        AddTunnel(Tunnel(1, "m6t1", "usb0")),
    ]
    assert plan.primary == Tunnel(0, "m6t0", "wlan0")
    # The Wi-Fi gone: only its tunnel; the tether's is now the primary, under its own name still.
    assert plan.update(["usb0"]) == [RemoveTunnel(Tunnel(0, "m6t0", "wlan0"))]
    assert plan.primary == Tunnel(1, "m6t1", "usb0")
    # Another network: the free slot 0.
    assert plan.update(["eth0", "usb0"]) == [AddTunnel(Tunnel(0, "m6t0", "eth0"))]
    assert plan.primary == Tunnel(0, "m6t0", "eth0")
    # The OS prefers the tether now: no tunnel moves, only the primary.
    assert plan.update(["usb0", "eth0"]) == []
    assert plan.primary == Tunnel(1, "m6t1", "usb0")
    assert plan.clear() == [RemoveTunnel(Tunnel(0, "m6t0", "eth0")), RemoveTunnel(Tunnel(1, "m6t1", "usb0"))]
    assert plan.primary is None and plan.tunnels == ()


def test_uplinks_beyond_the_limit_get_no_tunnel() -> None:
    plan = UplinkPlan("m6t0")
    uplinks = [f"eth{n}" for n in range(MAX_TUNNELS + 2)]
    changes = plan.update(uplinks)
    assert len(changes) == MAX_TUNNELS
    assert plan.left_out == ("eth8", "eth9")


@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=5), max_size=12))
def test_tunnels_always_match_the_uplinks_with_unique_names(rounds: list[list[str]]) -> None:
    plan = UplinkPlan("m6t0")
    live: dict[str, Tunnel] = {}
    for uplinks in rounds:
        for change in plan.update(uplinks):
            if isinstance(change, RemoveTunnel):
                assert live.pop(change.tunnel.uplink) == change.tunnel
            else:
                assert change.tunnel.uplink not in live
                live[change.tunnel.uplink] = change.tunnel
        assert set(live) == set(uplinks)
        assert len({t.interface for t in live.values()}) == len(live)
        assert plan.tunnels == tuple(sorted(live.values(), key=lambda t: t.slot))
        assert plan.primary == (live[uplinks[0]] if uplinks else None)


def test_a_burst_of_changes_is_one_look_up_after_it_quiets() -> None:
    plan = UplinkPlan("m6t0", quiet=0.15, max_delay=1.0)
    plan.watch()
    assert plan.due(0.0)  # the first look-up at once
    assert not plan.due(0.0)  # one at a time
    for t in (0.1, 0.2, 0.3):
        plan.changed(t)
    assert plan.next_deadline() == pytest.approx(0.45)
    assert not plan.due(0.4)
    assert not plan.due(0.45)  # quiet, but the first look-up has not answered: once more after it
    plan.looked_up(["wlan0"])
    assert plan.due(0.46)
    plan.looked_up(["wlan0"])
    assert not plan.due(10.0)  # nothing changed since: nothing to do, no deadline
    assert plan.next_deadline() is None
    # A burst that never quiets is looked up max_delay after its first change.
    for n in range(20):
        plan.changed(20.0 + n * 0.1)
    assert plan.next_deadline() == pytest.approx(21.0)


def test_a_failed_look_up_is_asked_again_only_by_a_change() -> None:
    plan = UplinkPlan("m6t0")
    plan.watch()
    assert plan.due(0.0)
    plan.lookup_failed()
    assert not plan.due(1.0)
    plan.changed(2.0)
    assert plan.due(3.0)


BASE = """
[gateway]
address = "198.51.100.2"
[tunnel]
prefix = "fd6d:3674:a1b2:0:1::/80"
"""


def test_the_configuration_takes_best_or_all() -> None:
    assert parse_client_config(BASE).tunnel.uplinks == "best"
    assert parse_client_config(BASE + 'uplinks = "all"\n').tunnel.uplinks == "all"
    with pytest.raises(ConfigError, match=r"tunnel\.uplinks.*\"best\".*\"all\""):
        parse_client_config(BASE + 'uplinks = "every"\n')
    # A name that cannot number every tunnel is refused, not found wrong at run time.
    with pytest.raises(ConfigError, match=r"tunnel\.interface.*longer than 15"):
        parse_client_config(BASE + 'uplinks = "all"\ninterface = "abcdefghijklmn9"\n')
    assert parse_client_config(BASE + 'interface = "abcdefghijklmn9"\n').tunnel.interface == "abcdefghijklmn9"


def test_every_tunnels_metric_must_fit() -> None:
    high = BASE + 'uplinks = "all"\n[routes]\nmetric = 4294967295\n'
    with pytest.raises(ConfigError, match=r"routes\.metric.*at most 4294967288"):
        parse_client_config(high)
    assert parse_client_config(high.replace("4294967295", "4294967288")).routes.metric == 4294967288
