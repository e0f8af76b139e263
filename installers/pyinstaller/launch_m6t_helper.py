"""PyInstaller entry point of ``m6t-helper`` (the privileged service)."""

from m6t.client.helper.entry import main

raise SystemExit(main())
