"""What m6t tells users to type comes from the platform's conventions: no systemctl or usermod on Windows."""

from __future__ import annotations

import pytest

from m6t.client.api.authorization import group_refusal
from m6t.client.api.schema import Method
from m6t.platform import hints
from m6t.platform.family import OsFamily
from m6t.platform.hints import conventions, conventions_of


@pytest.mark.parametrize("family", [*OsFamily, None])
def test_every_family_has_words_for_everything(family: OsFamily | None) -> None:
    words = conventions_of(family)
    assert words.superuser and words.start_helper and words.start_helper_sentence
    assert "ops" in words.join_group("ops") and "{" not in words.join_group("ops")
    assert "m6t" in words.start_helper and "m6t" in words.start_helper_sentence


def test_windows_words_are_windows_words() -> None:
    words = conventions_of(OsFamily.WINDOWS)
    text = " ".join([words.superuser, words.start_helper, words.start_helper_sentence, words.join_group("m6t")])
    for unix in ("systemctl", "usermod", "sudo", "root", "$USER", "launchctl"):
        assert unix not in text
    assert words.superuser == "Administrators"
    assert "net localgroup m6t %USERNAME% /add" in words.join_group("m6t")


def test_macos_words_name_launchd_and_directory_services() -> None:
    words = conventions_of(OsFamily.MACOS)
    assert "launchctl kickstart system/org.m6t.helper" in words.start_helper
    assert "dseditgroup -o edit -a $USER -t user ops" in words.join_group("ops")


def test_the_refusal_speaks_the_helpers_os(monkeypatch: pytest.MonkeyPatch) -> None:
    windows = group_refusal(Method.UP, "m6t", conventions_of(OsFamily.WINDOWS))
    assert windows["message"].startswith("Only Administrators and members of the group 'm6t' may bring the tunnel up")
    assert "net localgroup" in str(windows.get("hint"))
    linux = group_refusal(Method.UP, "m6t", conventions_of(OsFamily.LINUX))
    assert linux.get("hint") == "ask an administrator to run: usermod -aG m6t $USER, then log in again"
    monkeypatch.setattr(hints, "os_family", lambda: OsFamily.MACOS)
    assert conventions() is conventions_of(OsFamily.MACOS)
    assert "dseditgroup" in str(group_refusal(Method.UP, "m6t").get("hint"))
