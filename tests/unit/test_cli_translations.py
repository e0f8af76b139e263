"""The command line's gettext catalogue is current and complete, and the locale picks it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "m6t" / "locale"
FRENCH = LOCALE / "fr" / "LC_MESSAGES" / "m6t.po"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (Debian package gettext: scripts/setup.sh)")
    return found


def entries(po: str) -> dict[str, list[str]]:
    """msgid → its msgstr (or msgstr[n] forms), from msgcat's normalised output (one line per string)."""
    found: dict[str, list[str]] = {}
    msgid: str | None = None
    for line in po.splitlines():
        if line.startswith("msgid "):
            msgid = eval(line[6:])  # a C string literal msgcat wrote; Python reads it the same
        elif line.startswith("msgstr") and msgid is not None:
            found.setdefault(msgid, []).append(eval(line.split(" ", 1)[1]))
    found.pop("", None)  # the header
    return found


def normalised(path: Path) -> str:
    return subprocess.run(
        [tool("msgcat"), "--no-wrap", "--sort-output", str(path)], check=True, capture_output=True, text=True
    ).stdout


def test_the_po_holds_every_message_of_the_cli(tmp_path: Path) -> None:
    pot = tmp_path / "m6t.pot"
    subprocess.run(
        [tool("xgettext"), "--language=Python", "--keyword=_", "--keyword=N_", "--keyword=ngettext:1,2",
         "--from-code=UTF-8", "--output", str(pot), str(ROOT / "m6t" / "client" / "cli.py")],
        check=True,
    )  # fmt: skip
    wanted = set(entries(normalised(pot)))
    assert wanted, "xgettext found no message: the CLI's strings are not marked"
    assert wanted == set(entries(normalised(FRENCH))), "run scripts/update-translations.sh and translate"


def test_every_french_message_is_translated() -> None:
    text = FRENCH.read_text(encoding="utf-8")
    assert "#, fuzzy" not in text.split('msgid "', 2)[-1], "fuzzy entries are not used: check them"
    placeholders = re.compile(r"\{[a-z_]*(?::[^}]*)?\}|%\(\w+\)s")
    for msgid, forms in entries(normalised(FRENCH)).items():
        for form in forms:
            assert form, f"not translated: {msgid!r}"
            assert sorted(placeholders.findall(form)) == sorted(placeholders.findall(msgid)), msgid


def test_the_shipped_mo_is_compiled_from_the_po(tmp_path: Path) -> None:
    compiled = tmp_path / "m6t.mo"
    subprocess.run([tool("msgfmt"), "--check", "--output-file", str(compiled), str(FRENCH)], check=True)
    assert (FRENCH.with_suffix(".mo")).read_bytes() == compiled.read_bytes(), "run scripts/update-translations.sh"


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("fr_FR.UTF-8", "impossible de joindre l\u2019assistant"), ("C.UTF-8", "cannot reach the helper")],
)
def test_the_locale_picks_the_language(tmp_path: Path, lang: str, expected: str) -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    env.update(LANG=lang, PYTHONPATH=str(ROOT))
    code = "import sys; from m6t.client.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", code, "--socket", str(tmp_path / "none.sock"), "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    assert expected in result.stderr
