"""The tray in French: menu, status window and notifications through Qt's catalogues, chosen from the
system locale."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QLocale, Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from m6t.client.api.schema import ErrorCode, TunnelState
from m6t.ui.i18n import install_translators, remove_translators
from m6t.ui.settings_dialog import SettingsDialog
from m6t.ui.tray import TrayController
from tests.ui.conftest import WAIT_MS, wait_online
from tests.ui.fake_helper import ADDRESS, GATEWAY, FakeHelper, make_status, make_tunnel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def french() -> Iterator[None]:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    translators = install_translators(app, QLocale(QLocale.Language.French, QLocale.Country.France))
    assert len(translators) == 2, "m6t_fr.qm and Qt's qtbase_fr.qm"
    yield
    remove_translators(app, translators)


@pytest.fixture
def french_tray(
    qtbot: QtBot, french: None, helper: FakeHelper, make_tray: Callable[[], TrayController]
) -> TrayController:
    helper.status = make_status(TunnelState.CONNECTED)
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    return tray


def test_french_menu(french_tray: TrayController) -> None:
    tray = french_tray
    assert tray.header_action.text() == "m6t : Connecté"
    assert tray.toggle_action.text() == "Se &déconnecter"
    assert tray.status_action.text() == "É&tat\u2026"
    assert tray.settings_action.text() == "&Paramètres\u2026"
    assert tray.quit_action.text() == "&Quitter"
    assert [action.text() for action in tray.notify_menu.actions()] == [
        "Toutes (connexions, nouvelles adresses, erreurs)",
        "Erreurs seulement",
        "Aucune",
    ]
    assert f"Adresse : {ADDRESS}" in tray.icon.toolTip().splitlines()


def test_french_status_window(qtbot: QtBot, french_tray: TrayController) -> None:
    french_tray.show_status()
    window = french_tray.status_window
    assert window.windowTitle() == "État de m6t"
    assert window.state_label.text() == "Connecté"
    assert window.toggle_button.text() == "Se &déconnecter"
    assert [window.tabs.tabText(index) for index in range(window.tabs.count())] == [
        "É&tat",
        "T&unnels",
        "C&ompteurs",
        "&Historique des adresses",
        "&Journal",
    ]
    assert window.field("mtu_effective") == "1472 octets"
    assert window.field("ka_reply").endswith("(il y a moins d\u2019une minute)")
    assert window.field("generated").endswith("(il y a 10 min), connecté à un réseau")
    assert window.regen_count.text() == "1 nouvelle adresse tirée, la plus récente en premier."


def test_french_notification(qtbot: QtBot, french_tray: TrayController, helper: FakeHelper) -> None:
    seen: list[tuple[str, str]] = []
    french_tray.notified.connect(lambda title, text: seen.append((title, text)))
    helper.set_state(TunnelState.CONNECTING)
    helper.set_state(TunnelState.CONNECTED)
    helper.error(ErrorCode.NO_NETWORK)
    qtbot.waitUntil(lambda: len(seen) >= 2, timeout=WAIT_MS)
    assert seen == [
        ("m6t connecté", f"Adresse du tunnel {ADDRESS} via {GATEWAY}."),
        ("Erreur m6t", "Aucun réseau IPv4 vers la passerelle."),
    ]


def test_french_settings_and_qt_buttons(qtbot: QtBot, french_tray: TrayController) -> None:
    french_tray.show_settings()
    dialog = french_tray.settings_dialog
    assert isinstance(dialog, SettingsDialog)
    assert dialog.windowTitle() == "Paramètres de m6t"
    # Qt's own catalogue translates the standard buttons.
    assert dialog.buttons.button(dialog.buttons.StandardButton.Cancel).text() == "Annuler"


def test_the_system_locale_chooses_the_catalogue() -> None:
    """LANG=fr_FR.UTF-8 (no LANGUAGE, LC_ALL or LC_MESSAGES) is enough: QLocale.system() reads it."""
    code = (
        "from PySide6.QtWidgets import QApplication\n"
        "from m6t.ui.i18n import install_translators\n"
        "from m6t.ui.state import TrayState, tray_label\n"
        "app = QApplication([])\n"
        "install_translators(app)\n"
        "print(tray_label(TrayState.CONNECTED))\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    env.update(LANG="fr_FR.UTF-8", QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    french = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert french.stdout.strip() == "Connecté", french.stderr
    env.update(LANG="C.UTF-8")
    english = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert english.stdout.strip() == "Connected", english.stderr


def test_french_tunnels(
    qtbot: QtBot, french: None, make_helper: Callable[..., FakeHelper], make_tray: Callable[[], TrayController]
) -> None:
    helper = make_helper()
    primary = make_tunnel("m6t0", "lan1", primary=True)
    second = make_tunnel("m6t1", "wwan0", TunnelState.CONNECTING)
    helper.status = make_status(TunnelState.CONNECTED, tunnels=[primary, second])
    tray = make_tray()
    wait_online(qtbot, tray.model, helper)
    assert tray.icon.toolTip().splitlines()[1:4] == [
        "Tunnels connectés : 1 sur 2",
        f"m6t0 via lan1 : Connecté, {ADDRESS}",
        "m6t1 via wwan0 : Connexion à la passerelle",
    ]
    tray.status_window.show_tab("tunnels")
    table = tray.status_window.tunnels_table
    headers = [table.model().headerData(column, Qt.Orientation.Horizontal) for column in range(table.columnCount())]
    assert headers == ["Interface", "Liaison montante", "État", "Adresse", "RTT", "MTU", "Passerelle"]
    first = table.item(0, 0)
    assert first is not None and first.text() == "m6t0 (principal)"
