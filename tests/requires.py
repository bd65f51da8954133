"""What a test with real hosts needs before it can run, said once: root (network namespaces), a TUN
device, and the commands it drives. Elsewhere such a test skips with the reason."""

from __future__ import annotations

import os
import shutil


def live_reason(*commands: str, tun: bool = True) -> str | None:
    """Why a live test cannot run here (None when it can): not root, no /dev/net/tun (``tun``), or
    one of ``commands`` missing."""
    if os.geteuid() != 0:
        return "needs root (network namespaces" + (", TUN devices)" if tun else ")")
    if tun and not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    missing = [c for c in commands if not shutil.which(c)]
    return f"needs {', '.join(missing)}" if missing else None
