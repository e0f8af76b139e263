"""Enrolled access on the mobile node: the key's places, the sealing rule, the API and CLI, and no leaks."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from m6t.client import cli
from m6t.client.access_keys import AccessKeyError, AccessKeys, KeyringUnavailable, Sealing, SystemKeyring
from m6t.client.api.schema import ErrorCode, EventKind, Method
from m6t.client.config import AccessSection, ConfigError, dump_client_config, parse_client_config
from m6t.client.driver import ClientDriver
from m6t.client.vocabulary import State
from m6t.platform.private_file import write_private_file
from m6t.protocol.access import AccessVerifier, encode_key, fingerprint
from m6t.protocol.values import MergedPacket
from tests.unit.test_helper_fakes import CONFIG_TEXT, RunningHelper, call, config_for_this_user, failure
from tests.unit.test_session_driver import FakeBackend, FakeChannel, config, run, settle, working_gateway
from tests.unit.test_session_harness import data_from

KEY = bytes(range(32))
KEY_TEXT = encode_key(KEY)


class FakeKeyring:
    def __init__(self, unavailable: str | None = None) -> None:
        self.entries: dict[tuple[str, str], str] = {}
        self.unavailable = unavailable

    def get(self, service: str, name: str) -> str | None:
        if self.unavailable:
            raise KeyringUnavailable(self.unavailable)
        return self.entries.get((service, name))

    def set(self, service: str, name: str, secret: str) -> None:
        if self.unavailable:
            raise KeyringUnavailable(self.unavailable)
        self.entries[(service, name)] = secret


# --------------------------------------------------------------------------- configuration


def test_access_section_reads_and_writes_back() -> None:
    text = CONFIG_TEXT + '\n[access]\nkey_id = "alice-laptop"\nkey_file = "/etc/m6t/key"\n'
    cfg = parse_client_config(text)
    assert cfg.access == AccessSection("alice-laptop", "/etc/m6t/key")
    assert parse_client_config(dump_client_config(cfg)) == cfg
    # An open gateway's configuration is written exactly as before.
    plain = parse_client_config(CONFIG_TEXT)
    assert plain.access == AccessSection() and "[access]" not in dump_client_config(plain)


def test_access_section_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_client_config(CONFIG_TEXT + '\n[access]\nkey_id = "has space"\nkey_file = "relative"\n')
    message = str(caught.value)
    assert "access.key_id" in message and "access.key_file" in message and "absolute" in message
    with pytest.raises(ConfigError, match=r"needs access\.key_id"):
        parse_client_config(CONFIG_TEXT + '\n[access]\nkey_file = "/etc/m6t/key"\n')


# --------------------------------------------------------------------------- where the key lives


def test_key_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "key"
    access = AccessSection("alice", str(path))
    keys = AccessKeys(FakeKeyring())
    with pytest.raises(AccessKeyError, match="does not exist"):
        keys.load(access)
    assert keys.store(access, KEY) == "file"
    assert path.read_text() == KEY_TEXT + "\n" and os.stat(path).st_mode & 0o777 == 0o600
    assert keys.load(access) == KEY
    path.chmod(0o640)
    with pytest.raises(AccessKeyError, match="chmod 600") as caught:
        keys.load(access)
    assert KEY_TEXT not in str(caught.value)


def test_damaged_key_file_does_not_echo_it(tmp_path: Path) -> None:
    path = tmp_path / "key"
    write_private_file(path, KEY_TEXT[:-6].encode() + b"\n")
    with pytest.raises(AccessKeyError) as caught:
        AccessKeys(FakeKeyring()).load(AccessSection("alice", str(path)))
    assert "does not hold a key" in str(caught.value) and KEY_TEXT[:20] not in str(caught.value)


def test_keyring_then_agent() -> None:
    ring = FakeKeyring()
    keys = AccessKeys(ring)
    access = AccessSection("alice")
    with pytest.raises(AccessKeyError, match="m6t key set"):
        keys.load(access)
    assert keys.store(access, KEY) == "keyring"
    assert ring.entries == {("m6t", "alice"): KEY_TEXT}
    assert keys.load(access) == KEY
    other = bytes(32)
    keys.provide("alice", other)
    assert keys.load(access) == other
    keys.forget("alice")
    assert keys.load(access) == KEY


def test_no_keyring_says_what_to_do() -> None:
    keys = AccessKeys(FakeKeyring(unavailable="no backend"))
    with pytest.raises(AccessKeyError, match=r"tray hands it over.*key_file"):
        keys.load(AccessSection("alice"))
    with pytest.raises(AccessKeyError, match="no backend"):
        keys.store(AccessSection("alice"), KEY)
    keys.provide("alice", KEY)
    assert keys.load(AccessSection("alice")) == KEY


def test_a_keyring_the_sandbox_hides_is_unavailable_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    # keyring reads ~/.config/python_keyring first: under ProtectHome= the helper's stat of it is EACCES.
    import keyring

    def hidden(*args: object) -> None:
        raise PermissionError(13, "Permission denied", "/root/.config/python_keyring/keyringrc.cfg")

    monkeypatch.setattr(keyring, "get_password", hidden)
    monkeypatch.setattr(keyring, "set_password", hidden)
    keys = AccessKeys(SystemKeyring())
    with pytest.raises(AccessKeyError, match=r"keyring is not available.*Permission denied.*key_file"):
        keys.load(AccessSection("alice"))
    with pytest.raises(AccessKeyError, match=r"keyring is not available.*Permission denied"):
        keys.store(AccessSection("alice"), KEY)


def test_sealing_leaves_merged_packets_alone() -> None:
    sealing = Sealing(KEY, nonce=bytes)
    packet = data_from(config().tunnel.prefix[5])
    merged = MergedPacket(packet)
    merged.segments, merged.overhead = 2, 60
    out = sealing.seal([packet, merged], 1_767_225_600.0)
    assert out[0][0] == 0x01 and out[0][40:] == packet
    assert out[1] is merged
    assert AccessVerifier([KEY]).verify(out[0], 1_767_225_600.0) == packet


# --------------------------------------------------------------------------- the driver's rule


def enrolled_gateway(backend: FakeBackend) -> AccessVerifier:
    """A fake gateway that serves only what it could verify, or what belongs to a state it made."""
    verifier = AccessVerifier([KEY], wall_offset=0.0)
    known: set[bytes] = set()

    def gateway(channel: FakeChannel, datagram: bytes) -> list[bytes]:
        import time

        if datagram[0] >> 4 != 6:
            inner = verifier.verify(datagram, time.time())
            if isinstance(inner, int):
                return []
            known.add(inner[8:24])
            return working_gateway(channel, inner)
        return working_gateway(channel, datagram) if datagram[8:24] in known else []

    backend.gateway = gateway
    return verifier


def test_driver_seals_until_confirmed_and_only_then() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        enrolled_gateway(backend)
        driver = ClientDriver(config(), backend, backstop_s=0.05)
        driver.set_access_key(KEY)
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED)
        channel = backend.channels[-1]
        assert channel.sent and all(d[0] == 0x01 for d in channel.sent), "everything before confirmation sealed"
        address = driver.session.address
        assert address is not None
        sent = len(channel.sent)
        tun = backend.tuns[0]
        assert tun.on_packets is not None
        tun.on_packets([data_from(address)])
        assert channel.sent[sent:] == [data_from(address)], "confirmed: plain, as the draft says"
        await driver.close()

    run(scenario)


def test_driver_seals_tunnel_traffic_while_nothing_came_back() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        backend.gateway = lambda channel, datagram: []  # silent: the address stays unconfirmed
        driver = ClientDriver(config(probe=None), backend, backstop_s=0.05)
        driver.set_access_key(KEY)
        await driver.up()
        await settle(lambda: bool(backend.channels) and driver.session.address is not None)
        address = driver.session.address
        assert address is not None
        tun, channel = backend.tuns[0], backend.channels[-1]
        assert tun.on_packets is not None
        packet = data_from(address)
        tun.on_packets([packet, packet])
        assert channel.sent[-2:] != [packet, packet]
        assert [d[0] for d in channel.sent[-2:]] == [0x01, 0x01] and channel.sent[-1][40:] == packet
        assert channel.sent[-1][16:24] != channel.sent[-2][16:24], "a fresh nonce for every datagram"
        await driver.close()

    run(scenario)


def test_driver_without_key_never_connects_to_an_enrolled_gateway() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        enrolled_gateway(backend)
        driver = ClientDriver(config(), backend, backstop_s=0.05)
        await driver.up()
        await settle(lambda: bool(backend.channels and backend.channels[-1].sent))
        assert all(d[0] >> 4 == 6 for d in backend.channels[-1].sent)
        assert driver.session.state is not State.CONNECTED
        # The key arrives (the tray handed it over): the retries go out sealed and the gateway answers.
        driver.set_access_key(KEY)
        await settle(lambda: driver.session.state is State.CONNECTED, timeout=10.0)
        await driver.close()

    run(scenario)


def test_open_gateway_datagrams_are_the_drafts() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        driver = ClientDriver(config(), backend, backstop_s=0.05)
        await driver.up()
        await settle(lambda: driver.session.state is State.CONNECTED)
        assert all(d[0] >> 4 == 6 for channel in backend.channels for d in channel.sent)
        await driver.close()

    run(scenario)


# --------------------------------------------------------------------------- the helper, the API, the CLI


def helper_with(tmp_path: Path, ring: FakeKeyring, extra: str = '\n[access]\nkey_id = "alice"\n') -> RunningHelper:
    (tmp_path / "client.toml").write_text(config_for_this_user() + extra)
    return RunningHelper(tmp_path, access_keys=AccessKeys(ring)).start()


def test_helper_reports_a_missing_key_and_takes_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ring = FakeKeyring()
    running = helper_with(tmp_path, ring)
    try:
        status = call(running, Method.STATUS)
        assert [p["code"] for p in status["problems"]] == [ErrorCode.ACCESS_KEY_MISSING]
        assert running.driver.access_keys == [None]
        result = call(running, Method.ACCESS_KEY, {"key": KEY_TEXT})
        assert result == {"fingerprint": fingerprint(KEY), "stored": "keyring"}
        assert ring.entries == {("m6t", "alice"): KEY_TEXT}
        assert running.driver.access_keys[-1] == KEY
        assert failure(running, Method.ACCESS_KEY, {"key": "nope"}).code == ErrorCode.BAD_REQUEST
        # Nothing the helper says, keeps or bundles holds the key.
        bundle = call(running, Method.DIAGNOSTICS)
        log_page = call(running, Method.LOG, {"limit": 2000})
        status = call(running, Method.STATUS)
        config = call(running, Method.CONFIG_GET)
        saved = "".join(p.read_text() for p in (tmp_path / "state").rglob("*") if p.is_file())
        for text in (repr(bundle), repr(log_page), repr(status), repr(config), caplog.text, saved):
            assert KEY_TEXT not in text and KEY.hex() not in text
        assert fingerprint(KEY) in repr(log_page)
    finally:
        running.close()


def test_helper_agent_key_is_kept_in_memory_only(tmp_path: Path) -> None:
    ring = FakeKeyring(unavailable="no Secret Service for root")
    running = helper_with(tmp_path, ring)
    try:
        assert failure(running, Method.ACCESS_KEY, {"key": KEY_TEXT}).code == ErrorCode.ACCESS_KEY_MISSING
        result = call(running, Method.ACCESS_KEY, {"key": KEY_TEXT, "store": False})
        assert result["stored"] == "memory" and running.driver.access_keys[-1] == KEY
        assert not any(KEY_TEXT in p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    finally:
        running.close()


def test_helper_without_access_hands_no_key(tmp_path: Path) -> None:
    running = helper_with(tmp_path, FakeKeyring(), extra="")
    try:
        assert running.driver.access_keys == [None]
        assert call(running, Method.STATUS)["problems"] == []
        assert failure(running, Method.ACCESS_KEY, {"key": KEY_TEXT}).code == ErrorCode.ACCESS_KEY_MISSING
    finally:
        running.close()


def test_key_needed_is_announced_to_subscribers(tmp_path: Path) -> None:
    from m6t.client.api.client import HelperClient

    ring = FakeKeyring()
    running = helper_with(tmp_path, ring, extra="")
    try:
        with HelperClient(running.socket_path) as client:
            client.subscribe([EventKind.ACCESS_KEY_NEEDED])
            call(running, Method.CONFIG_SET, {"changes": {"access.key_id": "alice"}})
            event: Any = client.next_event(timeout=5.0)
            assert event["event"] == "access_key_needed" and event["data"] == {"key_id": "alice"}
    finally:
        running.close()


def test_cli_key_set_reads_stdin_and_prints_only_the_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = helper_with(tmp_path, FakeKeyring())
    try:
        monkeypatch.setattr("sys.stdin", io.StringIO(KEY_TEXT + "\n"))
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(["--socket", running.socket_path, "key", "set", "--stdin"], stdout=out, stderr=err)
        assert code == 0, err.getvalue()
        assert out.getvalue() == f"access key {fingerprint(KEY)} stored (keyring)\n"
        assert KEY_TEXT not in out.getvalue() + err.getvalue()
        monkeypatch.setattr("sys.stdin", io.StringIO("not a key\n"))
        code = cli.main(["--socket", running.socket_path, "key", "set", "--stdin"], stdout=out, stderr=err)
        assert code == cli.EXIT_USAGE and "not a key in base64" in err.getvalue()
    finally:
        running.close()
