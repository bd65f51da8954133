"""The report in a real browser: headless Chromium loads report.html from a file, runs its script, and
the test reads the DOM it built (the connection count, the ladder's arrows of the FTP data connection, the
419001 drop with its reason and fixes, a refused flow with the configuration line that refused it) and
keeps a screenshot in the test's output directory.

Chromium is Debian's ``chromium`` package (the Makefile installs it as root); without it the test skips.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP

from statewall import demo
from statewall.config import parse_policy
from statewall.pcapio import PcapWriter
from statewall.replay import replay
from statewall.report import build_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package chromium)")


def chromium(tmp_path: Path, url: str, *args: str) -> str:
    """Run headless Chromium on ``url`` with a fresh profile; its stdout."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
        url,
    ]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.timeout(120)
def test_the_report_in_chromium(tmp_path: Path) -> None:
    demo.run_scenario(demo.select(["seed000-upload"])[0], tmp_path / "upload")
    out = tmp_path / "upload" / "replay"
    model = build_model(out)
    data = next(c for c in model["conns"] if c["r"]["port"] == 20000)
    url = (out / "report.html").as_uri() + f"#conn={data['id']}"

    dom = chromium(tmp_path, url, "--dump-dom")
    # The summary's connection count, set by the script from the data.
    assert re.search(r'<b id="conn-count">2</b>', dom)
    assert len(re.findall(r'<tr class="conn" data-id="', dom)) == 2
    # The data connection's ladder: an arrow per packet as it arrived, left and was dropped.
    ladder = re.search(rf'<svg class="ladder" data-conn="{data["id"]}".*?</svg>', dom, re.S)
    assert ladder is not None
    svg = ladder.group(0)
    kinds = re.findall(r'<g class="arrow k\d" data-kind="(\w+)"', svg)
    want = {
        k: sum(1 for r in data["rows"] if r[2] == n) for n, k in enumerate(("arrived", "left", "dropped"))
    }
    assert {k: kinds.count(k) for k in want} == want and want["dropped"] >= 3
    # The seed's drop on it: the message id, the reason, the default behind it, both fixes.
    assert svg.count('<g class="drop" data-reason="tcp-mss-exceeded">') == 3
    assert "%ASA-419001 tcp-mss-exceeded: segment of 1460 bytes exceeds the MSS 1390" in svg
    assert "fix: sysopt connection tcpmss minimum 1460" in svg
    assert "fix: exceed-mss allow in a tcp-map for this flow" in svg
    assert "%ASA-4-419001: Dropping TCP packet from inside:10.0.0.2/38004" in svg  # the syslog line
    panel = dom.split('<div id="detail">', 1)[1]
    assert "set connection advanced-options exceed-mss-map" in panel
    assert "data connection of FTP control connection" in panel or data.get("master") is None

    shot = tmp_path / "report.png"
    chromium(tmp_path, url, f"--screenshot={shot}", "--window-size=1300,2600", "--hide-scrollbars")
    assert shot.stat().st_size > 20000


ASA = """hostname fw
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 203.0.113.1 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 10.1.1.1 255.255.255.0
route outside 0.0.0.0 0.0.0.0 203.0.113.254
access-list INSIDE_IN extended permit tcp 10.1.1.0 255.255.255.0 any eq www
access-group INSIDE_IN in interface inside
"""


@pytest.mark.timeout(60)
def test_a_refused_flow_in_chromium_names_its_configuration_line(tmp_path: Path) -> None:
    cap = tmp_path / "c.pcap"
    with PcapWriter(cap) as w:
        w.write(bytes(IP(src="10.1.1.5", dst="198.51.100.9") / TCP(sport=40022, dport=22)), 1000.0)
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(ASA)
    replay(parse_policy(ASA, str(cfg)), [(None, cap)], tmp_path / "out")
    dom = chromium(tmp_path, (tmp_path / "out" / "report.html").as_uri() + "#conn=-1", "--dump-dom")
    svg = re.search(r'<svg class="ladder" data-conn="-1".*?</svg>', dom, re.S).group(0)
    assert '<g class="drop" data-reason="acl-drop">' in svg
    assert "caused by line 12: access-group INSIDE_IN in interface inside" in svg
    # The configuration listing marks the line.
    assert re.search(r'<tr class="caused" data-line="12">.*?acl-drop ×1', dom, re.S)
