"""Whether this machine can run labs, and if not, why (the reason tests print when they skip)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

REQUIRED_TOOLS = ("ip", "nft", "conntrack", "sysctl", "ping")


def unavailable_reason() -> str | None:
    """None when labs can run here; otherwise a one-line reason (elsewhere than Linux, tools are missing)."""
    # getattr keeps this importable and type-checkable where geteuid does not exist.
    geteuid: Callable[[], int] | None = getattr(os, "geteuid", None)
    if geteuid is None or geteuid() != 0:
        return "needs root: network namespaces, nftables, /dev/net/tun"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None
