"""Small widgets the windows share, so a banner or an error looks the same everywhere."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget

_BANNER_STYLE = "QLabel#banner { background: #fff4d6; color: #5c4400; padding: 6px; border-radius: 4px; }"
ERROR_STYLE = "color: #b91c1c;"


def banner_label() -> QLabel:
    """The strip at the top of a window saying why something is unavailable (read-only, helper gone)."""
    label = QLabel()
    label.setWordWrap(True)
    label.setObjectName("banner")
    label.setStyleSheet(_BANNER_STYLE)
    label.hide()
    return label


def error_label() -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setStyleSheet(ERROR_STYLE)
    label.hide()
    return label


def describe(widget: QWidget, name: str, description: str) -> None:
    """What assistive technology says about ``widget``: its name, then what it is for."""
    widget.setAccessibleName(name.replace("&", ""))
    widget.setAccessibleDescription(description)
