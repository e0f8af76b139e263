"""This user's tray preferences (QSettings): they belong to the desktop session, not to the helper."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from PySide6.QtCore import QObject, QSettings, Signal

from m6t.ui.i18n import QT_TRANSLATE_NOOP, translate

ORGANIZATION: Final = "m6t"
APPLICATION: Final = "m6t-tray"


class NotifyLevel(StrEnum):
    ALL = "all"
    """Connections, new addresses and errors."""
    ERRORS = "errors"
    OFF = "off"


NOTIFY_LABELS: Final[dict[NotifyLevel, str]] = {
    NotifyLevel.ALL: QT_TRANSLATE_NOOP("preferences", "All (connections, new addresses, errors)"),
    NotifyLevel.ERRORS: QT_TRANSLATE_NOOP("preferences", "Errors only"),
    NotifyLevel.OFF: QT_TRANSLATE_NOOP("preferences", "None"),
}


def notify_label(level: NotifyLevel) -> str:
    return translate("preferences", NOTIFY_LABELS[level])


class Preferences(QObject):
    changed = Signal()

    def __init__(self, settings: QSettings | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings or QSettings(ORGANIZATION, APPLICATION)

    @property
    def notify_level(self) -> NotifyLevel:
        value = self.settings.value("notifications/level", NotifyLevel.ALL.value)
        try:
            return NotifyLevel(str(value))
        except ValueError:
            return NotifyLevel.ALL

    @notify_level.setter
    def notify_level(self, level: NotifyLevel) -> None:
        if level is self.notify_level:
            return
        self.settings.setValue("notifications/level", level.value)
        self.settings.sync()
        self.changed.emit()

    def allows(self, *, error: bool) -> bool:
        level = self.notify_level
        return level is NotifyLevel.ALL or (error and level is NotifyLevel.ERRORS)
