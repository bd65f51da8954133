"""Live: ``statewall run --record OUTDIR`` writes a replay's output directory, and its report.

A short TCP transfer through PAT and a connection the firewall refuses, between network namespaces;
on stop OUTDIR holds arrived/, the interfaces' captures, events.jsonl, summary.json and report.html,
and the report shows the transfer on both sides of its ladder and the refused SYN with its reason.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from requires import live_reason
from test_state_live import CONFIG

ROOT_REASON = live_reason("ip")
needs_root = pytest.mark.skipif(ROOT_REASON is not None, reason=ROOT_REASON or "")

CLIENT = """
import socket
with socket.create_connection(("203.0.113.2", 5001), timeout=20) as s:
    s.sendall(b"x" * 20000)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
print("done", flush=True)
"""
# From outside to the inside host: no access list lets it in.
REFUSED = """
import socket
s = socket.socket()
s.settimeout(1.5)
try:
    s.connect(("192.168.1.2", 22))
except OSError:
    pass
print("refused", flush=True)
"""


@pytest.mark.root
@needs_root
@pytest.mark.timeout(120)
def test_a_recorded_run_gives_a_replay_style_directory_and_its_report(tmp_path):
    from statewall.lab.netns import Lab
    from statewall.lab.topology import FirewallTopology, read_line
    from statewall.report import build_model

    cfg = tmp_path / "fw.cfg"
    cfg.write_text(CONFIG)
    out = tmp_path / "rec"
    with Lab() as lab:
        topo = FirewallTopology(lab).build()
        topo.start_firewall(str(cfg), extra=["--no-ctl", "--record", str(out)])
        py = [sys.executable, "-m", "statewall.lab.transfer"]
        server = topo.host("outside").popen(
            [*py, "serve", "--bind", "0.0.0.0", "--port", "5001", "--timeout", "30"], stdout=subprocess.PIPE
        )
        try:
            assert read_line(server, 10).startswith("listening")
            client = topo.host("inside").popen([sys.executable, "-c", CLIENT], stdout=subprocess.PIPE)
            assert client.communicate(timeout=30)[0].strip() == b"done"
            server.communicate(timeout=30)
            refused = topo.host("outside").popen([sys.executable, "-c", REFUSED], stdout=subprocess.PIPE)
            assert refused.communicate(timeout=30)[0].strip() == b"refused"
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        assert topo.stop_firewall() == 0
        said = [line for line in topo.firewall_output if line.startswith("statewall run: report ")]
        assert said == [f"statewall run: report {out / 'report.html'}"], topo.firewall_output
    names = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    for f in ("events.jsonl", "summary.json", "log.txt", "report.html", "asp-drop.pcap", "inside.pcap",
              "outside.pcap", "arrived/inside.pcap", "arrived/outside.pcap"):  # fmt: skip
        assert f in names, sorted(names)
    summary = json.loads((out / "summary.json").read_text())
    # TSO super-packets: a handful of packets carry the 20 000 bytes.
    assert summary["live"] and summary["packets_in"] >= 8 and summary["forwarded"] >= 6, summary
    assert summary["drops_by_reason"], summary
    model = build_model(out)
    (conn,) = [c for c in model["conns"] if c["id"] > 0 and c["r"]["port"] == 5001]
    # Both sides of the ladder: the SYN arrived inside and left outside, translated by PAT.
    assert conn["i"]["mapped_address"] == "203.0.113.1" and conn["v"] == "closed"
    sides = {(r[1], r[2]) for r in conn["rows"]}
    assert {(0, 0), (1, 1), (1, 0), (0, 1)} <= sides
    denied = [c for c in model["conns"] if c["v"] == "denied"]
    assert denied and denied[0]["r"]["port"] == 22
    assert any(r[2] == 2 for r in denied[0]["rows"])  # the arriving SYN matched to its drop
    page = (out / "report.html").read_text()
    assert '<section id="reasons">' in page and denied[0]["rows"]
