"""The few questions the GUI asks through the desktop's own dialogs, behind functions tests can replace."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QStandardPaths
from PySide6.QtWidgets import QFileDialog, QWidget


def ask_save_path(parent: QWidget | None, title: str, file_name: str, filters: str) -> Path | None:
    """The file the user chose to save to, or ``None`` if they cancelled."""
    documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    chosen, _ = QFileDialog.getSaveFileName(parent, title, str(Path(documents) / file_name), filters)
    return Path(chosen) if chosen else None
