"""PyInstaller entry point of ``m6t-tray``."""

from m6t.ui.app import main

raise SystemExit(main())
