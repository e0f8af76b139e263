"""The m6t client against an enrolled gateway: the helper's key from each place that can run here.

The key comes from ``access.key_file`` (written by ``m6t key set`` through the helper), the gateway sees the
first datagrams of each address sealed and the rest plain, and a client with a wrong key or none gets no
state.  The Secret Service path is ``tests/platform/test_secret_service_agent.py``.  Needs root.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from m6t.client.api.client import HelperClient
from m6t.client.api.schema import ErrorCode, Method
from m6t.gateway.config import AccessMode, AccessSection
from m6t.gateway.keys import KeyFile, save_key_file
from m6t.lab import HA, MN, NAT1_WAN, StandardLab
from m6t.platform.private_file import write_private_file
from m6t.protocol.access import ACCESS_TYPE, encode_key
from tests.lab.client_rig import (
    GATEWAY_CONFIG,
    PORT_A,
    Capture,
    Rig,
    client_config,
    running_rig,
)
from tests.lab.commands import run_module

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

ALICE = bytes(range(100, 132))


def enrolled_gateway(workdir: Path) -> str:
    keys = workdir / "gateway-keys.toml"
    save_key_file(keys, KeyFile({"alice": (ALICE,)}))
    access = AccessSection(mode=AccessMode.ENROLLED, key_file=str(keys))
    return GATEWAY_CONFIG + "\n".join(
        ["", "[access]", f'mode = "{access.mode.value}"', f'key_file = "{access.key_file}"', ""]
    )


@pytest.fixture
def rig(lab: StandardLab) -> Iterator[Rig]:
    with running_rig(lab, gateway_config=enrolled_gateway) as rig:
        yield rig


def access_config(rig: Rig) -> str:
    return client_config(keepalive=30) + f'\n[access]\nkey_id = "alice"\nkey_file = "{rig.workdir / "key"}"\n'


def gateway_drops(rig: Rig) -> str:
    return (rig.workdir / "gateway.log").read_text(errors="replace")


def test_the_key_from_a_root_only_file_connects_sealing_only_the_first_datagrams(rig: Rig) -> None:
    write_private_file(rig.workdir / "key", (encode_key(ALICE) + "\n").encode())
    capture = Capture(rig, "enrolled")
    rig.start_client(access_config(rig))
    address = rig.wait_address()
    rig.time_to_ha_reply(time.monotonic(), timeout=15.0)
    assert rig.lab.ping(MN, HA, count=3, timeout=2.0), rig.describe()
    outers = [o for o in capture.stop() if o.src == NAT1_WAN and o.dport == PORT_A]
    first = outers[0].payload
    assert first[0] == ACCESS_TYPE and first[40 + 8 : 40 + 24] == address.packed
    sealed = [o for o in outers if o.payload[0] == ACCESS_TYPE]
    plain = [o for o in outers if o.payload[0] >> 4 == 6]
    assert sealed and plain and len(sealed) + len(plain) == len(outers)
    # Sealed until confirmed, plain after: no sealed datagram follows a plain one.
    kinds = [o.payload[0] == ACCESS_TYPE for o in outers]
    assert kinds == sorted(kinds, reverse=True), kinds
    log = rig.client_log()
    assert "enrolled access: key" in log and encode_key(ALICE) not in log
    assert encode_key(ALICE) not in gateway_drops(rig)


def test_no_key_then_m6t_key_set_stores_it_and_connects(rig: Rig) -> None:
    rig.start_client(access_config(rig))
    rig.wait_address()
    assert not rig.ping_ha_once(wait=2.0), "connected without a key"
    assert "access_key_missing" in rig.client_log() or "enrolled access" in rig.client_log()
    socket = str(rig.workdir / "helper.sock")
    result = run_module("m6t.cli", "--socket", socket, "key", "set", "--stdin", input=encode_key(ALICE) + "\n")
    assert result.returncode == 0, result.stderr
    assert "stored (file)" in result.stdout and encode_key(ALICE) not in result.stdout + result.stderr
    assert (rig.workdir / "key").stat().st_mode & 0o777 == 0o600
    rig.time_to_ha_reply(time.monotonic(), timeout=20.0)


def test_a_wrong_key_gets_no_state_and_no_reply(rig: Rig) -> None:
    write_private_file(rig.workdir / "key", (encode_key(bytes(32)) + "\n").encode())
    capture = Capture(rig, "wrong")
    rig.start_client(access_config(rig))
    rig.wait_address()
    for _ in range(3):
        assert not rig.ping_ha_once(wait=1.0)
    outers = capture.stop()
    assert [o for o in outers if o.src == NAT1_WAN], "the client sent nothing"
    assert [o for o in outers if o.dst == NAT1_WAN] == [], "the gateway answered a wrong key"


def test_the_desktop_agent_hands_the_key_over_and_nothing_is_written(rig: Rig) -> None:
    """What the tray does on a Linux desktop (tests/ui/test_key_agent.py has it with a real Secret Service):
    the root helper has no keyring, the agent answers with ``access.key`` and ``store: false``."""
    rig.start_client(client_config(keepalive=30) + '\n[access]\nkey_id = "alice"\n')
    rig.wait_address()
    assert not rig.ping_ha_once(wait=2.0), "connected without a key"
    with HelperClient(str(rig.workdir / "helper.sock")) as helper:
        status = helper.call(Method.STATUS)
        assert ErrorCode.ACCESS_KEY_MISSING in [p["code"] for p in status["problems"]], status["problems"]
        result = helper.call(Method.ACCESS_KEY, {"key": encode_key(ALICE), "store": False})
    assert result["stored"] == "memory"
    rig.time_to_ha_reply(time.monotonic(), timeout=20.0)
    # The client's side (its configuration, state directory and log) holds no trace of the key.
    files = [p for p in rig.workdir.rglob("*") if p.is_file() and p.name != "gateway-keys.toml"]
    assert [p for p in files if encode_key(ALICE) in p.read_text(errors="replace")] == []
