"""The enrolled gateway's key file: read whole, private or refused, written atomically; [access] in the config."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from m6t.configfile import ConfigError
from m6t.gateway.access import open_access, reload_keys
from m6t.gateway.config import AccessMode, AccessSection, dump_gateway_config, parse_gateway_config
from m6t.gateway.keys import KeyFile, generate_key, load_key_file, parse_key_file, save_key_file
from m6t.protocol.access import encode_key, fingerprint

KEY = bytes(range(32))
KEY2 = bytes(range(1, 33))
BASE = """
[tunnel]
prefixes = ["fd6d:3674:a1b2::/48"]
home_agents = ["fd00:ab::1"]
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="m6tkeys-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_parse_names_single_keys_and_rotation_pairs() -> None:
    text = f'[keys]\nalice = "{encode_key(KEY)}"\nbob = ["{encode_key(KEY2)}", "{encode_key(bytes(32))}"]\n'
    keys = parse_key_file(text, "k.toml")
    assert keys.entries == {"alice": (KEY,), "bob": (KEY2, bytes(32))}
    assert len(keys) == 3
    assert keys.listing()[0] == ("alice", fingerprint(KEY))


def test_every_problem_is_reported_and_no_key_is_echoed() -> None:
    secretish = encode_key(KEY)[:-4] + "AAA="
    text = (
        "[keys]\n"
        'alice = "not base64!"\n'
        f'bob = "{base64.b64encode(KEY[:16]).decode()}"\n'
        'carol = ["a", "b", "c"]\n'
        '"bad name" = "x"\n'
        f'dave = "{encode_key(KEY)}"\n'
        f'erin = "{encode_key(KEY)}"\n'
        f'frank = "{secretish}"\n'
        "[other]\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_key_file(text, "k.toml")
    message = str(caught.value)
    assert "keys.alice: not a key in base64" in message
    assert "keys.bob: decodes to 16 bytes" in message
    assert "keys.carol: one key, or 2 while rotating" in message
    assert "keys.bad name" in message
    assert "keys.erin: the same key as keys.dave" in message
    assert "other" in message
    assert encode_key(KEY) not in message and secretish not in message


def test_a_key_file_open_to_others_is_refused_with_the_fix(workdir: Path) -> None:
    path = workdir / "keys.toml"
    save_key_file(path, KeyFile({"alice": (KEY,)}))
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_key_file(path).entries == {"alice": (KEY,)}
    for mode in (0o640, 0o604, 0o620):
        path.chmod(mode)
        with pytest.raises(ConfigError, match="chmod 600") as caught:
            load_key_file(path)
        assert f"{mode:04o}" in str(caught.value)


def test_a_missing_key_file_says_so(workdir: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_key_file(workdir / "absent.toml")


def test_a_symlink_is_not_followed(workdir: Path) -> None:
    real = workdir / "real.toml"
    save_key_file(real, KeyFile({"alice": (KEY,)}))
    link = workdir / "link.toml"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="cannot open"):
        load_key_file(link)


def test_keyfile_edits() -> None:
    keys = KeyFile().with_key("alice", KEY).with_key("alice", KEY2)
    assert keys.entries["alice"] == (KEY, KEY2)
    with pytest.raises(ValueError, match="already has 2 keys"):
        keys.with_key("alice", bytes(32))
    with pytest.raises(ValueError, match="a name is"):
        keys.with_key("no spaces", KEY)
    assert keys.without("alice", fingerprint(KEY).replace(":", "")).entries == {"alice": (KEY2,)}
    assert keys.without("alice").entries == {}
    with pytest.raises(ValueError, match="no key with fingerprint"):
        keys.without("alice", "0000:0000:0000:0000")
    with pytest.raises(ValueError, match="no key is named"):
        keys.without("bob")
    assert parse_key_file(keys.to_toml(), "k").entries == keys.entries
    assert parse_key_file(KeyFile().to_toml(), "k").entries == {}


def test_generated_keys_are_32_fresh_bytes() -> None:
    assert len({generate_key() for _ in range(16)}) == 16
    assert all(len(generate_key()) == 32 for _ in range(4))


def test_access_section() -> None:
    config = parse_gateway_config(BASE)
    assert config.access == AccessSection()
    assert "[access]" not in dump_gateway_config(config), "an open gateway's file reads as it always did"
    config = parse_gateway_config(BASE + '[access]\nmode = "enrolled"\nkey_file = "/etc/k.toml"\nwindow_s = 30\n')
    assert config.access.mode is AccessMode.ENROLLED and config.access.key_file == "/etc/k.toml"
    assert config.access.window_s == 30
    with pytest.raises(ConfigError) as caught:
        parse_gateway_config(BASE + '[access]\nmode = "closed"\nkey_file = "k.toml"\nwindow_s = 0\n')
    message = str(caught.value)
    assert 'access.mode: must be "open" or "enrolled"' in message
    assert "access.key_file" in message and "absolute" in message
    assert "access.window_s" in message


def test_open_access_and_reload(workdir: Path) -> None:
    path = workdir / "keys.toml"
    section = AccessSection(mode=AccessMode.ENROLLED, key_file=str(path))
    assert open_access(AccessSection()) is None
    with pytest.raises(ConfigError):
        open_access(section)
    save_key_file(path, KeyFile({"alice": (KEY,)}))
    verifier = open_access(section)
    assert verifier is not None and verifier.key_count == 1
    save_key_file(path, KeyFile({"alice": (KEY, KEY2), "bob": (bytes(32),)}))
    assert reload_keys(verifier, section)
    assert verifier.key_count == 3
    path.chmod(0o644)
    assert not reload_keys(verifier, section)
    assert verifier.key_count == 3, "a failed reload keeps the keys in force"
