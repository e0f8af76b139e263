"""``python -m m6t.gateway``: the same as the ``m6t-gateway`` command."""

import sys

assert sys.platform == "linux", "the m6t gateway runs on Linux only"

from m6t.gateway.cli import main  # noqa: E402

sys.exit(main())
