"""Every control of the status window and the settings dialog has an accessible name and description, and
the keyboard alone reaches all of them (Tab, the arrows on the status window's tabs, mnemonics)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QRadioButton,
    QTabBar,
    QTableWidget,
    QWidget,
)
from pytestqt.qtbot import QtBot

from m6t.ui.settings_dialog import SettingsDialog
from m6t.ui.status_window import StatusWindow
from m6t.ui.tray import TrayController

CONTROLS = (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QPlainTextEdit, QTableWidget, QTabBar)


@pytest.fixture
def window(qtbot: QtBot, tray: TrayController) -> StatusWindow:
    tray.show_status()
    qtbot.waitExposed(tray.status_window)
    return tray.status_window


@pytest.fixture
def dialog(qtbot: QtBot, tray: TrayController) -> SettingsDialog:
    tray.show_settings()
    assert tray.settings_dialog is not None
    qtbot.waitExposed(tray.settings_dialog)
    return tray.settings_dialog


def own_widgets(window: QWidget) -> list[QWidget]:
    """The window's widgets but the parts Qt builds inside its own (a spin box's line edit, a table's
    scroll bars, a combo box's popup): those are named through the widget they belong to."""
    inner = (QAbstractSpinBox, QComboBox, QTableWidget, QPlainTextEdit, QTabBar)
    return [
        widget
        for widget in window.findChildren(QWidget)
        if not any(isinstance(parent, inner) for parent in ancestors(widget, window))
        and widget.objectName() not in ("qt_tabwidget_stackedwidget",)
    ]


def ancestors(widget: QWidget, top: QWidget) -> list[QWidget]:
    found = []
    parent = widget.parentWidget()
    while parent is not None and parent is not top:
        found.append(parent)
        parent = parent.parentWidget()
    return found


def check_named(window: QWidget) -> None:
    unnamed = []
    for widget in own_widgets(window):
        if isinstance(widget, CONTROLS) or (isinstance(widget, QLabel) and widget.buddy() is None and widget.text()):
            if isinstance(widget, QLabel) and widget.accessibleName() == "" and is_row_label(widget, window):
                continue
            if not widget.accessibleName() or not widget.accessibleDescription():
                unnamed.append(f"{type(widget).__name__} {widget.objectName()!r} {getattr(widget, 'text', str)()!r}")
    assert unnamed == []


def is_row_label(label: QLabel, window: QWidget) -> bool:
    """A form's own label (its text is the name of the value beside it)."""
    return label.text().endswith(":")


def test_every_control_of_the_status_window_has_a_name(window: StatusWindow) -> None:
    check_named(window)
    assert window.rtt_chart.accessibleDescription().startswith("Round trip")


def test_every_control_of_the_settings_dialog_has_a_name(dialog: SettingsDialog) -> None:
    check_named(dialog)


def tab_through(window: QWidget, presses: int) -> list[QWidget]:
    reached: list[QWidget] = []
    for _ in range(presses):
        focus = QApplication.focusWidget()
        assert focus is not None, "nothing has the keyboard focus"
        QTest.keyClick(focus, Qt.Key.Key_Tab)
        now = QApplication.focusWidget()
        assert now is not None
        reached.append(now)
    return reached


def focusable(window: QWidget) -> list[QWidget]:
    return [
        widget
        for widget in own_widgets(window)
        if widget.focusPolicy() & Qt.FocusPolicy.TabFocus == Qt.FocusPolicy.TabFocus
        and widget.isVisibleTo(window)
        and widget.isEnabled()
        and widget.focusProxy() is None
        and not isinstance(widget, QLabel)
        # Of a group of exclusive radio buttons Tab stops on the checked one; the arrows move in the group.
        and not (isinstance(widget, QRadioButton) and widget.autoExclusive() and not widget.isChecked())
    ]


def test_tab_reaches_every_control_of_each_status_page(qtbot: QtBot, window: StatusWindow) -> None:
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    for page in range(window.tabs.count()):
        if page:
            # The next page from its tab, which Tab reaches like any control.
            window.tabs.tabBar().setFocus()
            QTest.keyClick(window.tabs.tabBar(), Qt.Key.Key_Right)
            assert window.tabs.currentIndex() == page
        else:
            window.toggle_button.setFocus()
        expected = focusable(window)
        reached = tab_through(window, 2 * len(expected) + 2)
        missing = [f"{type(w).__name__} {w.accessibleName()!r}" for w in expected if w not in reached]
        assert missing == [], f"page {window.tabs.tabText(page)!r}"


def test_tab_reaches_every_control_of_the_settings(qtbot: QtBot, dialog: SettingsDialog) -> None:
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow)
    for parts in (False, True):
        # The prefix fields of the form not chosen are disabled: each form is walked in its turn.
        (dialog.parts_radio if parts else dialog.prefix80_radio).setChecked(True)
        dialog.gateway_edit.setFocus()
        expected = focusable(dialog)
        reached = tab_through(dialog, 2 * len(expected) + 2)
        missing = [f"{type(w).__name__} {w.accessibleName()!r}" for w in expected if w not in reached]
        assert missing == []


def test_arrows_choose_the_prefix_form(qtbot: QtBot, dialog: SettingsDialog) -> None:
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow)
    dialog.prefix80_radio.setFocus()
    QTest.keyClick(dialog.prefix80_radio, Qt.Key.Key_Down)
    assert dialog.parts_radio.hasFocus() and dialog.parts_radio.isChecked()
    assert dialog.ula_edit.isEnabled()


def test_mnemonics_take_the_keyboard_to_their_field(qtbot: QtBot, dialog: SettingsDialog) -> None:
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow)
    dialog.parts_radio.setChecked(True)
    for key, field in (
        (Qt.Key.Key_A, dialog.gateway_edit),
        (Qt.Key.Key_P, dialog.ports_edit),
        (Qt.Key.Key_L, dialog.ula_edit),
        (Qt.Key.Key_T, dialog.mtu_spin),
        (Qt.Key.Key_X, dialog.prefixes_edit),
    ):
        QTest.keyClick(dialog, key, Qt.KeyboardModifier.AltModifier)
        assert QApplication.focusWidget() in (field, *field.findChildren(QWidget)), key


def test_status_window_pages_by_mnemonic(qtbot: QtBot, window: StatusWindow) -> None:
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    QTest.keyClick(window, Qt.Key.Key_L, Qt.KeyboardModifier.AltModifier)
    assert window.tabs.currentIndex() == 4
    QTest.keyClick(window, Qt.Key.Key_O, Qt.KeyboardModifier.AltModifier)
    assert window.tabs.currentIndex() == 2
    QTest.keyClick(window, Qt.Key.Key_T, Qt.KeyboardModifier.AltModifier)
    assert window.tabs.currentIndex() == 1
