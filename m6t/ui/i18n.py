"""The tray speaks the user's language: its Qt catalogue (``translations/m6t_<lang>.qm``) and Qt's own (the
standard buttons), chosen from the system locale (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``).

The catalogues are made with Qt's tools from the sources (``scripts/update-translations.sh``:
``pyside6-lupdate`` → ``.ts``, translated, ``pyside6-lrelease`` → ``.qm``), and ship as package data.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

from PySide6.QtCore import QCoreApplication, QLibraryInfo, QLocale, QTranslator

CATALOGUE: Final = "m6t"


def catalogue_dir() -> Path:
    return Path(str(resources.files("m6t.ui") / "translations"))


def install_translators(app: QCoreApplication, locale: QLocale | None = None) -> list[QTranslator]:
    """Install the catalogues for ``locale`` (default: the system's); the ones found are returned, so a caller
    can take them out again (tests switching language).  English needs none: the sources are English."""
    locale = locale or QLocale.system()
    installed: list[QTranslator] = []
    for name, directory in (
        (CATALOGUE, str(catalogue_dir())),
        ("qtbase", QLibraryInfo.path(QLibraryInfo.LibraryPath.TranslationsPath)),
    ):
        translator = QTranslator(app)
        # QLocale's uiLanguages in order (fr_CA, fr, ...): the closest catalogue wins.
        if translator.load(locale, name, "_", directory):
            app.installTranslator(translator)
            installed.append(translator)
    return installed


def remove_translators(app: QCoreApplication, translators: list[QTranslator]) -> None:
    for translator in translators:
        app.removeTranslator(translator)


def QT_TRANSLATE_NOOP(context: str, text: str) -> str:
    """Marks ``text`` for the catalogue under ``context`` and returns it untranslated: for tables built at
    import, translated where shown (``translate(context, text)``).  Typed, unlike PySide6's (``object``)."""
    return text


def translate(context: str, text: str, disambiguation: str | None = None, n: int = -1) -> str:
    """:meth:`QCoreApplication.translate`, for code outside a QObject (lupdate reads ``translate(...)``)."""
    return QCoreApplication.translate(context, text, disambiguation, n)
