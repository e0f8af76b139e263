"""The settings window's enrolled-access group: the key's name and the key itself (docs/enrolled-access.md).

The key field never shows a key (password echo, cleared once stored) and the key is never kept by the
window.  "Store key" sets ``access.key_id`` if it changed, then hands the key to the helper with
``access.key``; a helper that has no keyring of its own (root on a Linux desktop) refuses to store it, and
the key then goes to the user's own keyring, from where the tray's key agent hands it over when asked.
"""

from __future__ import annotations

from PySide6.QtWidgets import QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

from m6t.client.api.schema import ErrorCode, Method
from m6t.protocol.access import KEY_NAME, decode_key
from m6t.ui.connection import Outcome
from m6t.ui.key_agent import keep_user_key
from m6t.ui.model import TunnelModel
from m6t.ui.widgets import describe


class AccessBox(QGroupBox):
    def __init__(self, model: TunnelModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle(self.tr("Enrolled access (gateways that serve known computers only)"))
        self.model = model
        form = QFormLayout(self)
        self.name_edit = QLineEdit()
        name_help = self.tr("The name the gateway's administrator gave this computer")
        self.name_edit.setPlaceholderText(name_help)
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        key_help = self.tr("The key the administrator handed you (44 characters); never shown")
        self.key_edit.setPlaceholderText(key_help)
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.key_edit, 1)
        self.store_button = QPushButton(self.tr("St&ore key"))
        self.store_button.clicked.connect(self.store)
        layout.addWidget(self.store_button)
        self.result = QLabel()
        self.result.setWordWrap(True)
        name_label, key_label = self.tr("Ke&y name:"), self.tr("Acc&ess key:")
        form.addRow(name_label, self.name_edit)
        form.addRow(key_label, row)
        form.addRow("", self.result)
        describe(self.name_edit, name_label.rstrip(" :"), name_help)
        describe(self.key_edit, key_label.rstrip(" :"), key_help)
        describe(
            self.store_button,
            self.store_button.text(),
            self.tr("Hands the key to the helper, which keeps it in its keyring (or your keyring keeps it)"),
        )
        describe(self.result, self.tr("Access key result"), self.tr("What became of the last key stored"))
        model.config_loaded.connect(self.load)
        self.load()

    def load(self) -> None:
        name = self.model.config_value("access.key_id")
        if not self.name_edit.isModified():
            self.name_edit.setText(name if isinstance(name, str) else "")

    def store(self) -> None:
        name = self.name_edit.text().strip()
        key = self.key_edit.text().strip()
        if not KEY_NAME.fullmatch(name):
            self.result.setText(self.tr("The key name is letters, digits, '.', '_' or '-'."))
            return
        try:
            decode_key(key)
        except ValueError as exc:
            self.result.setText(self.tr("That is {problem}.").format(problem=exc))
            return
        if name != self.model.config_value("access.key_id"):

            def named(outcome: Outcome) -> None:
                if outcome.ok:
                    self._hand_over(name, key, store=True)
                else:
                    self.result.setText(outcome.message)

            self.model.call(Method.CONFIG_SET, {"changes": {"access.key_id": name}}, named)
        else:
            self._hand_over(name, key, store=True)

    def _hand_over(self, name: str, key: str, *, store: bool) -> None:
        def done(outcome: Outcome) -> None:
            if outcome.ok and isinstance(outcome.result, dict):
                where = outcome.result.get("stored")
                fingerprint = outcome.result.get("fingerprint")
                text = (
                    self.tr("Key {fingerprint} stored in your keyring.")
                    if where == "memory"
                    else self.tr("Key {fingerprint} stored in the helper's {where}.")
                )
                self.result.setText(text.format(fingerprint=fingerprint, where=where))
                self.key_edit.clear()
            elif store and outcome.error is not None and outcome.error.get("code") == ErrorCode.ACCESS_KEY_MISSING:
                # The helper has no keyring of its own: the user's keeps the key, the agent hands it over.
                if keep_user_key(name, key):
                    self._hand_over(name, key, store=False)
                else:
                    self.result.setText(
                        outcome.message + " " + self.tr("Your desktop has no keyring to keep it in either.")
                    )
            else:
                self.result.setText(outcome.message)

        self.model.call(Method.ACCESS_KEY, {"key": key, "store": store}, done)
