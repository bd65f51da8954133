"""``smoke``: the live path end to end. An inside host pings and sends a file to an outside host through
``statewall run`` with a permissive two-interface ASA configuration (inside 100, outside 0, PAT to
the outside interface address, ICMP inspected so that the ping is a connection: 302020, as the TCP
transfer's 302013); the file's bytes and SHA-256 must arrive unchanged.
"""

from __future__ import annotations

import os
import re

from .. import transfer
from ..topology import ASA_INTERFACES, INSIDE, OUTSIDE, FirewallTopology
from . import ScenarioRun, scenario

CONFIG = (
    """\
: statewall lab smoke: inside may go anywhere, hidden behind the outside address (PAT)
ASA Version 8.2(1)
hostname smoke
"""
    + ASA_INTERFACES
    + """\
access-list outside_in extended permit icmp any any
access-group outside_in in interface outside
global (outside) 1 interface
nat (inside) 1 0.0.0.0 0.0.0.0
policy-map global_policy
 class inspection_default
  inspect icmp
service-policy global_policy global
"""
)

TRANSFER_BYTES = 32 << 20


@scenario("smoke", "ping and a 32 MB TCP transfer inside -> outside through PAT")
def smoke(run: ScenarioRun) -> None:
    lab = run.lab
    topo = FirewallTopology(lab, (INSIDE, OUTSIDE)).build()
    run.say(f"topology: {' '.join(ns.name for ns in lab.namespaces.values())}")
    config = os.path.join(lab.workdir(), "smoke.cfg")
    with open(config, "w") as f:
        f.write(CONFIG)
    log = os.path.join(lab.workdir(), "smoke.log")
    topo.start_firewall(config, offload=run.offload, log_file=log)
    run.say(topo.firewall_output[-1])

    # hping3 rather than ping: it is among the project's Debian packages, iputils-ping is not.
    ping = topo.host("inside").run(
        ["hping3", "--icmp", "-c", "3", "-i", "u200000", OUTSIDE.host], timeout=15, check=False
    )
    m = re.search(r"(\d+) packets received", ping.stdout + ping.stderr)
    run.check(
        "ping inside -> outside",
        bool(m and m.group(1) == "3"),
        m.group(0) if m else (ping.stdout + ping.stderr).strip()[-200:],
    )

    sent, received = transfer.between(topo.host("inside"), topo.host("outside"), OUTSIDE.host, TRANSFER_BYTES)
    secs = received.get("seconds") or sent.get("seconds") or 0
    rate = f", {received['bytes'] * 8 / secs / 1e6:.0f} Mbit/s" if secs and received["bytes"] else ""
    run.say(
        f"  sent     {sent['bytes']} bytes sha256 {sent['sha256']}"
        + (f" ({sent['error']})" if sent["error"] else "")
    )
    run.say(
        f"  received {received['bytes']} bytes sha256 {received['sha256']}{rate}"
        + (f" ({received['error']})" if received["error"] else "")
    )
    run.check(
        "TCP transfer inside -> outside",
        sent["bytes"] == TRANSFER_BYTES
        and received["bytes"] == TRANSFER_BYTES
        and sent["sha256"] == received["sha256"],
        f"{received['bytes']} of {TRANSFER_BYTES} bytes, checksums "
        + ("match" if sent["sha256"] == received["sha256"] else "differ"),
    )

    code = topo.stop_firewall()
    run.check("statewall run exits cleanly on SIGTERM", code == 0, f"exit code {code}")
    for line in topo.firewall_output:
        if line.startswith("statewall run: stopped"):
            run.say("  " + line)
    with open(log) as f:
        built = sum(1 for line in f if "-302013:" in line or "-302020:" in line)
    run.check("connections logged", built >= 2, f"{built} 'Built' lines in {os.path.basename(log)}")
