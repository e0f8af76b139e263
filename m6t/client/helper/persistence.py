"""What the helper remembers across restarts: the user's up/down wish, in ``STATE_DIR/state.json``.

A missing, unreadable or foreign file means "no wish recorded": ``helper.autoconnect`` decides then.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from m6t.atomic import atomic_write
from m6t.client.api.schema import Wanted

STATE_FILE = "state.json"


class WishFile:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE

    def load(self) -> Wanted | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        wanted = data.get("wanted") if isinstance(data, dict) else None
        if wanted == "up":
            return "up"
        if wanted == "down":
            return "down"
        return None

    def save(self, wanted: Wanted) -> None:
        """Write the wish atomically; raises ``OSError`` when it cannot."""
        data = {"version": 1, "wanted": wanted, "changed": time.time()}
        atomic_write(self.path, json.dumps(data).encode("utf-8"), 0o644)
