"""PyInstaller entry point of ``m6t`` (the CLI): the console script's target, as a file PyInstaller can freeze."""

from m6t.cli import main

raise SystemExit(main())
