"""``python -m m6t.gateway``: the same as the ``m6t-gateway`` command."""

import sys

from m6t.gateway.cli import main

sys.exit(main())
