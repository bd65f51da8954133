"""``statewall lab run seed002`` as ``make demo`` runs it (root): a real hping3 SYN flood against the
connection limits and without them, DCD with a live and a dead idle connection; the scenario passes,
shows the lines the demo quotes, and leaves no namespace behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from statewall.lab.netns import our_namespaces

REASON = None
if os.geteuid() != 0:
    REASON = "needs root (network namespaces, TUN devices)"
elif not os.path.exists("/dev/net/tun"):
    REASON = "needs /dev/net/tun"
else:
    missing = [t for t in ("ip", "nft", "hping3", "curl", "ss") if shutil.which(t) is None]
    REASON = f"needs {', '.join(missing)}" if missing else None


@pytest.mark.root
@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.timeout(400)
def test_lab_run_seed002_passes_and_leaves_nothing():
    res = subprocess.run(
        [sys.executable, "-m", "statewall.cli", "lab", "run", "seed002"],
        capture_output=True,
        text=True,
        timeout=360,
    )
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "scenario seed002: PASSED" in out
    assert "[FAILED]" not in out
    # What the demo quotes: the limit messages, threat detection's rate message, DCD's counters.
    assert re.search(r"%ASA-6-201012: Per-client embryonic connection limit exceeded 10/10 for input", out)
    assert re.search(r"%ASA-6-201010: Embryonic connection limit exceeded 50/50 for input packet from", out)
    assert re.search(r"%ASA-4-733100: \[ SYN attck\] drop rate-1 exceeded\. Current burst rate is \d+", out)
    assert re.search(r"DCD: client-probe [1-9]\d*, server-probe [1-9]\d*, conn-expiration 1", out)
    assert out.count("Flow timed out with reset") >= 2
    topology = next(x for x in out.splitlines() if x.startswith("  statewall run: forwarding"))
    mine = {m.group(1) for m in re.finditer(r"@(sw-\S+)", topology)}
    prefixes = {name.rsplit("-", 1)[0] for name in mine}
    assert prefixes and not [n for n in our_namespaces() if n.rsplit("-", 1)[0] in prefixes]
    assert "Traceback" not in res.stderr
