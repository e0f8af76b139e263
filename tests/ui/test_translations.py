"""The catalogues are current: Qt's tools, run on the sources now, find exactly the messages the committed
``.ts`` holds; every French message is translated with the same placeholders and a mnemonic where the
English has one; the shipped ``.qm`` is what ``lrelease`` makes of the ``.ts``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from m6t.client.api.schema import ErrorCode
from m6t.ui.errors import SENTENCES
from m6t.ui.state import START_HINTS

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "m6t" / "ui" / "translations"
FRENCH = TRANSLATIONS / "m6t_fr.ts"
SOURCES = sorted((ROOT / "m6t" / "ui").glob("*.py"))


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (PySide6's tools: pip install PySide6)")
    return found


Message = tuple[str, str, str]


def messages(ts: Path) -> dict[Message, ET.Element]:
    """(context, source, disambiguation) → its <translation>, obsolete and vanished entries left out."""
    found: dict[Message, ET.Element] = {}
    for context in ET.parse(ts).getroot().iter("context"):
        name = context.findtext("name", "")
        for message in context.iter("message"):
            translation = message.find("translation")
            assert translation is not None
            if translation.get("type") in ("obsolete", "vanished"):
                continue
            key = (name, message.findtext("source", ""), message.findtext("comment", ""))
            found[key] = translation
    return found


def test_the_ts_files_hold_every_message_of_the_sources(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.ts"
    # An empty catalogue for the same language, filled by lupdate from the sources as they are now.
    fresh.write_text('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE TS>\n<TS version="2.1" language="fr_FR"/>\n')
    subprocess.run(
        [tool("pyside6-lupdate"), "-locations", "none", *map(str, SOURCES), "-ts", str(fresh)],
        check=True,
        capture_output=True,
    )
    wanted, committed = set(messages(fresh)), set(messages(FRENCH))
    assert wanted, "lupdate found no message: the sources are not marked"
    assert wanted - committed == set(), "new messages: run scripts/update-translations.sh and translate them"
    assert committed - wanted == set(), "messages no longer in the sources: run scripts/update-translations.sh"


def test_every_french_message_is_translated() -> None:
    placeholders = re.compile(r"\{[a-z_]*(?::[^}]*)?\}|%n")
    for (context, source, _), translation in messages(FRENCH).items():
        where = f"{context}: {source!r}"
        assert translation.get("type") != "unfinished", f"not translated: {where}"
        forms = [form.text or "" for form in translation.iter("numerusform")] or [translation.text or ""]
        for text in forms:
            assert text.strip(), f"empty translation: {where}"
            assert sorted(placeholders.findall(text)) == sorted(placeholders.findall(source)), (
                f"placeholders differ: {where} → {text!r}"
            )
            if re.search(r"&\w", source):
                assert re.search(r"&\w", text), f"the mnemonic is lost: {where} → {text!r}"


def test_the_shipped_qm_is_compiled_from_the_ts(tmp_path: Path) -> None:
    compiled = tmp_path / "m6t_fr.qm"
    subprocess.run([tool("pyside6-lrelease"), "-silent", str(FRENCH), "-qm", str(compiled)], check=True)
    assert (TRANSLATIONS / "m6t_fr.qm").read_bytes() == compiled.read_bytes(), "run scripts/update-translations.sh"


def test_every_helper_error_sentence_is_in_the_catalogue() -> None:
    """The tray translates a helper's error by its code's sentence: the two tables must say the same."""
    assert {code: code.sentence for code in ErrorCode} == SENTENCES


def test_every_start_hint_of_the_platform_is_in_the_catalogue() -> None:
    """The tray translates the platform's "start the helper" sentence by its English words."""
    from m6t.client.api.host import OsFamily, conventions_of

    sentences = {conventions_of(family).start_helper_sentence for family in [*OsFamily, None]}
    assert sentences == set(START_HINTS)
