"""The command line's messages in the user's language, through gettext.

The catalogues (``m6t/locale/<lang>/LC_MESSAGES/m6t.mo``) are made by ``scripts/update-translations.sh``
with xgettext, msgmerge and msgfmt, and ship as package data; the language comes from the environment as
gettext reads it (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``).  Without a catalogue for it the
messages stay English.
"""

from __future__ import annotations

import gettext
from functools import cache
from importlib import resources
from typing import Final

DOMAIN: Final = "m6t"


@cache
def catalogue() -> gettext.NullTranslations:
    return gettext.translation(DOMAIN, localedir=str(resources.files("m6t") / "locale"), fallback=True)


def _(message: str) -> str:
    return catalogue().gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    return catalogue().ngettext(singular, plural, count)


def N_(message: str) -> str:
    """Marks ``message`` for the catalogue where it is defined; translated with ``_`` where shown."""
    return message
