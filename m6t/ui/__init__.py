"""The m6t tray GUI (PySide6): tray icon, status window, settings; it speaks only the control API."""
