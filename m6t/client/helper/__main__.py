"""``python -m m6t.client.helper``: the ``m6t-helper`` command."""

import sys

from m6t.client.helper.entry import main

sys.exit(main())
