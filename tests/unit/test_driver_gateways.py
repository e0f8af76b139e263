"""The driver with several gateways: names resolved (every address, in order) when connecting, at attachment
changes and when a gateway fails; the path watched toward the gateway in use (pure: a fake Backend)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

import pytest

from m6t.client import driver as driver_module
from m6t.client.api import wire
from m6t.client.api.schema import Access, HelperInfo
from m6t.client.config import GatewaySection
from m6t.client.driver import ClientDriver
from m6t.client.events import ErrorEvent, Event, GatewayUnreachable
from m6t.client.vocabulary import ErrorCode, State

from .test_session_driver import FakeBackend, FakeChannel, config, run, settle, working_gateway
from .test_session_harness import ATT2

A = IPv4Address("198.51.100.9")
B = IPv4Address("198.51.100.2")
C = IPv4Address("198.51.100.3")


@pytest.fixture(autouse=True)
def _quick_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unanswered probes fail in 0.1 s, not 6: the same rules, on a test's time scale."""
    original = driver_module.session_settings

    def quick(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        return replace(original(cfg, *args, **kwargs), probe_timeout=0.05, probe_tries=2, backoff_initial=0.05)

    monkeypatch.setattr(driver_module, "session_settings", quick)


def answering_only(*alive: IPv4Address) -> Any:
    def gateway(channel: FakeChannel, datagram: bytes) -> list[bytes]:
        return working_gateway(channel, datagram) if channel.gateway[0] in alive else []

    return gateway


def driver_for(backend: FakeBackend, addresses: tuple[str, ...], resolver: Any) -> ClientDriver:
    cfg = config()
    cfg = replace(cfg, gateway=GatewaySection(addresses=addresses, ports=(3544,)))
    return ClientDriver(cfg, backend, resolver=resolver, backstop_s=0.05)


def test_every_address_of_every_entry_in_order_and_a_dead_one_skipped() -> None:
    asked: list[str] = []

    async def resolver(host: str) -> tuple[IPv4Address, ...]:
        asked.append(host)
        return {"gw.example.test": (A, B)}[host]

    async def scenario() -> None:
        backend = FakeBackend()
        backend.gateway = answering_only(B)
        driver = driver_for(backend, ("gw.example.test", "198.51.100.3"), resolver)
        events: list[Event] = []
        driver.add_listener(events.append)
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED)
        # Literals are not sent to the resolver.
        assert asked[0] == "gw.example.test" and "198.51.100.3" not in asked
        assert [op[1] for op in backend.ops if op[0] == "udp"] == [str(A), str(B)]
        status = driver.status()
        assert [str(c.address) for c in status.session.gateways] == [str(A), str(B), str(C)]
        helper: HelperInfo = {"version": "test", "pid": 1, "uptime_s": 0.0, "config_path": "", "socket_path": ""}
        api = wire.status_to_wire(
            status, wanted="up", configured_interface=None, problems=[], access=Access.OPERATOR, helper=helper
        )
        assert api["gateway"] == f"{B}:3544" and api["gateway_name"] == "gw.example.test"
        [dead] = [e for e in events if isinstance(e, GatewayUnreachable)]
        assert dead.gateway.address == A
        # The path is watched toward the gateway in use.
        assert [m.gateway for m in backend.monitors] == [A, B]
        assert backend.monitors[0].stopped and not backend.monitors[1].stopped
        await driver.close()

    run(scenario)


def test_a_failed_gateway_makes_the_names_resolve_again() -> None:
    failed: list[GatewayUnreachable] = []
    asked: list[bool] = []

    async def resolver(host: str) -> tuple[IPv4Address, ...]:
        # The name moved (dynamic DNS), but only a look-up after the failure can tell.
        asked.append(bool(failed))
        return (C,) if failed else (A,)

    async def scenario() -> None:
        backend = FakeBackend()
        backend.gateway = answering_only(C)
        driver = driver_for(backend, ("moving.example.test",), resolver)
        driver.add_listener(lambda e: failed.append(e) if isinstance(e, GatewayUnreachable) else None)
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED, timeout=5.0)
        assert failed and failed[0].gateway.address == A and failed[0].all_dead
        assert True in asked and not asked[0]
        assert driver.session.gateway == (C, 3544)
        assert backend.monitors[-1].gateway == C
        await driver.close()

    run(scenario)


def test_an_attachment_change_resolves_again_and_a_failed_lookup_keeps_the_last_answer() -> None:
    asked: list[str] = []

    async def resolver(host: str) -> tuple[IPv4Address, ...]:
        asked.append(host)
        if len(asked) > 1:
            raise OSError("Temporary failure in name resolution")
        return (B,)

    async def scenario() -> None:
        backend = FakeBackend()
        driver = driver_for(backend, ("gw.example.test",), resolver)
        errors: list[ErrorEvent] = []
        driver.add_listener(lambda e: errors.append(e) if isinstance(e, ErrorEvent) else None)
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED)
        calls = len(asked)
        first = driver.session.address
        backend.attachment = ATT2
        on_change = backend.monitors[-1].on_change
        assert on_change is not None
        on_change()
        await settle(lambda: len(asked) > calls and driver.session.address not in (None, first))
        await settle(lambda: driver.session.state is State.CONNECTED)
        # The resolver could not be asked on the new network: the last answer stands.
        assert driver.session.gateway == (B, 3544)
        assert [e.code for e in errors] == [ErrorCode.GATEWAY_UNRESOLVABLE]
        await driver.close()

    run(scenario)


def test_a_new_list_keeps_the_binding_only_while_its_gateway_is_still_configured() -> None:
    async def resolver(host: str) -> tuple[IPv4Address, ...]:
        raise OSError("Temporary failure in name resolution")

    async def scenario() -> None:
        backend = FakeBackend()
        driver = driver_for(backend, (str(B),), resolver)
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED)
        first = driver.session.address
        cfg = driver.config
        # A backup added behind the gateway in use: nothing moves.
        await driver.apply_config(replace(cfg, gateway=GatewaySection(addresses=(str(B), str(C)), ports=(3544,))))
        await settle(lambda: len(driver.session.gateway_candidates) == 2)
        assert driver.session.address == first and driver.session.state is State.CONNECTED
        # Only a name that cannot be resolved now: the old gateway is not used any more.
        await driver.apply_config(replace(cfg, gateway=GatewaySection(addresses=("gw.example.test",), ports=(3544,))))
        await settle(lambda: driver.session.state is State.WAITING_FOR_NETWORK)
        assert driver.session.address is None and driver.session.gateway is None
        assert backend.installed() == set()
        await driver.close()

    run(scenario)
