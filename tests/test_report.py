"""The replay's report (``OUTDIR/report.html``): what an engineer looks at to see why a connection broke.

Seed 000's upload, replayed as ``statewall demo`` replays it: the client's 1460-byte segments on the FTP
data connection are dropped with 419001, and the data connection's ladder shows each one arriving on the
inside and going no further, with the reason, the default that caused it and both of the seed's fixes,
which, pasted into the configuration, let every segment through.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP

from fixtures import ASA_BROWSING_PAT
from statewall import cli, demo
from statewall.config import parse_policy
from statewall.pcapio import PcapWriter
from statewall.replay import replay
from statewall.report import build, build_model, write_report
from statewall.report.build import DROPPED, LEFT

SEED000_TEXT = demo.demo_config("seed000.cfg")[0]


@pytest.fixture(scope="module")
def upload(tmp_path_factory) -> Path:
    """Seed 000's upload scenario replayed as the demo does it; its output directory."""
    base = tmp_path_factory.mktemp("upload")
    demo.run_scenario(demo.select(["seed000-upload"])[0], base)
    return base


def data_connection(model: dict) -> dict:
    return next(c for c in model["conns"] if c["r"]["port"] == 20000)


def test_the_419001_drop_is_on_the_ftp_data_connections_ladder(upload: Path) -> None:
    model = build_model(upload / "replay", SEED000_TEXT)
    data = data_connection(model)
    # Both sides' coordinates: the client as itself inside, as the outside address through PAT.
    assert (data["i"]["interface"], data["i"]["address"], data["i"]["port"]) == ("inside", "10.0.0.2", 38004)
    assert (data["i"]["mapped_address"], data["i"]["mapped_port"]) == ("192.168.9.30", 38004)
    assert data["v"] == "dropped" and data["drops"]["tcp-mss-exceeded"] == 3
    # Each 1460-byte segment arrives on the inside (side 0) and is dropped there; none leaves.
    full = [r for r in data["rows"] if r[7] == 1460]
    assert [(r[1], r[2]) for r in full] == [(0, DROPPED)] * 3
    # The handshake went through: the SYN arrived inside and left outside at the same time.
    syn = [r for r in data["rows"] if r[4] == 0x02]
    assert [(r[1], r[2]) for r in syn] == [(0, 0), (1, LEFT)] and syn[0][0] == syn[1][0]
    drop = model["drops"][full[0][8]]
    assert (drop["asa_id"], drop["reason"], drop["interface"]) == (419001, "tcp-mss-exceeded", "inside")
    assert "exceeds the MSS 1390" in drop["message"] and drop["origin"] is None
    fixes = [f["config"] for f in drop["fixes"]]
    assert fixes[0] == "sysopt connection tcpmss minimum 1460"
    assert "\n exceed-mss allow\n" in fixes[1]
    for command in ("class-map", "policy-map", "service-policy", "set connection advanced-options"):
        assert command in fixes[1]
    # The syslog line is on the ladder at the drop's time.
    log = [text for t, text in data["log"] if "419001" in text]
    assert len(log) == 3 and log[0].startswith(
        "%ASA-4-419001: Dropping TCP packet from inside:10.0.0.2/38004"
    )
    page = (upload / "replay" / "report.html").read_text()
    assert "sysopt connection tcpmss minimum 1460" in page and " exceed-mss allow" in page


@pytest.mark.parametrize("which", [0, 1])
def test_each_fix_the_report_gives_lets_every_segment_through(
    upload: Path, tmp_path: Path, which: int
) -> None:
    drop = next(d for d in build_model(upload / "replay")["drops"] if d["reason"] == "tcp-mss-exceeded")
    fix = drop["fixes"][which]["config"]
    policy = parse_policy(SEED000_TEXT + "\n" + fix + "\n", "fixed.cfg")
    policy.version = "8.2(1)"
    summary = replay(policy, [(None, upload / "seed000-ftp-upload.pcap")], tmp_path, drain=60.0)
    assert "tcp-mss-exceeded" not in summary["drops_by_reason"]
    data = data_connection(build_model(tmp_path))
    assert sum(1 for r in data["rows"] if r[7] == 1460 and r[2] == LEFT) == 3


def test_statewall_report_renders_the_same_page_again(upload: Path, tmp_path: Path, capsys) -> None:
    out = upload / "replay"
    first = (out / "report.html").read_text()
    cfg = tmp_path / "seed000.cfg"
    cfg.write_text(SEED000_TEXT)
    (out / "report.html").unlink()
    assert cli.main(["report", "-c", str(cfg), str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    assert (out / "report.html").read_text() == first
    assert cli.main(["report", str(tmp_path)]) == 2


# --------------------------------------------------------------------------------------------------
# The configuration: hit counts, the line that refused a flow


ASA = ASA_BROWSING_PAT


def test_a_refused_flow_is_listed_with_the_line_that_refused_it(tmp_path: Path) -> None:
    cap = tmp_path / "c.pcap"
    with PcapWriter(cap) as w:
        t = 1000.0
        for port in (80, 22, 22):  # the web connection is permitted; ssh twice (a retransmitted SYN)
            w.write(bytes(IP(src="10.1.1.5", dst="198.51.100.9") / TCP(sport=40000 + port, dport=port)), t)
            t += 1
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(ASA)
    summary = replay(parse_policy(ASA, str(cfg)), [(None, cap)], tmp_path / "out")
    assert summary["drops_by_reason"] == {"acl-drop": 2}
    model = build_model(tmp_path / "out")
    denied = [c for c in model["conns"] if c["v"] == "denied"]
    assert len(denied) == 1 and denied[0]["r"]["port"] == 22 and denied[0]["n"][0][2] == 2
    assert [c["v"] for c in model["conns"] if c["id"] > 0] == ["open"]
    lines = {n: (text, hits, drops) for n, text, hits, drops in model["config"]["lines"]}
    assert lines[11] == ("access-list INSIDE_IN extended permit tcp 10.1.1.0 255.255.255.0 any eq www", 1, {})
    assert lines[12] == ("access-group INSIDE_IN in interface inside", 0, {"acl-drop": 2})
    assert lines[14][1] == 1  # the nat line made one translation
    reason = model["reasons"][0]
    assert reason["reason"] == "acl-drop" and reason["lines"] == [
        {"line": 12, "text": "access-group INSIDE_IN in interface inside", "count": 2}
    ]
    assert denied[0]["story"][0].startswith("A TCP flow from 10.1.1.5/40022 on inside to 198.51.100.9/22")


def test_a_large_replay_is_bounded(tmp_path: Path, monkeypatch) -> None:
    """Past the limits the page lists fewer connections, ladders fewer, and says so."""
    cap = tmp_path / "c.pcap"
    with PcapWriter(cap) as w:
        for i in range(30):
            for k in range(6):
                # Not DNS (port 53 is inspected: one reply per query, a DNS header needed).
                pkt = IP(src="10.1.1.5", dst="198.51.100.9") / UDP(sport=20000 + i, dport=514) / b"q"
                w.write(bytes(pkt), 1000.0 + i + k * 0.01)
    dns = "access-list INSIDE_IN extended permit udp 10.1.1.0 255.255.255.0 any eq syslog\n"
    summary = replay(parse_policy(ASA + dns, "fw.cfg"), [(None, cap)], tmp_path / "out")
    assert summary["forwarded"] == 180
    monkeypatch.setattr(build, "MAX_CONNS", 20)
    monkeypatch.setattr(build, "DETAIL_CONNS", 5)
    monkeypatch.setattr(build, "ROW_BUDGET", 20)
    monkeypatch.setattr(build, "MIN_ROWS", 4)
    model = build_model(tmp_path / "out")
    assert len(model["conns"]) == 20 and model["unlisted_conns"] == 10
    detailed = [c for c in model["conns"] if "rows" in c]
    assert len(detailed) == 5
    # 6 packets in and 6 out per connection, 4 kept: the first 3 and the last one.
    assert all(len(c["rows"]) == 4 and c["omitted"] == 8 for c in detailed)
    assert [r[2] for r in detailed[0]["rows"]] == [0, 1, 0, 1]
    page = write_report(tmp_path / "out").read_text()
    assert "10 further connections are counted but not listed" in page


def test_the_page_needs_nothing_from_the_network(upload: Path) -> None:
    page = (upload / "replay" / "report.html").read_text()
    for ref in ("http://", "https://", "src=", "@import", "url(http"):
        assert ref not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
            '"http://www.w3.org/2000/svg"', ""
        ), ref
    data = page.split('<script type="application/json" id="report-data">', 1)[1].split("</script>", 1)[0]
    assert len(json.loads(data)["conns"]) == 2


def test_an_iptables_replay_shows_conntrack_lines_and_the_invalid_rule(tmp_path: Path) -> None:
    """Seed 003's Linux firewall: the SACKing duplicate ACKs marked INVALID and dropped by the rule."""
    from statewall.dialects.iptables import parse
    from test_seed003_replay import SACKING, STRICT, through_the_pix

    cap = through_the_pix(tmp_path)
    replay(parse(STRICT, "seed003-pix.rules"), [(None, cap)], tmp_path / "out")
    model = build_model(tmp_path / "out", STRICT)
    (conn,) = [c for c in model["conns"] if c["id"] > 0]
    assert conn["drops"] == {"ctstate-invalid": SACKING}
    assert any(text.strip().startswith("[NEW] tcp") for _, text in conn["log"])
    rule = next(line for line in model["config"]["lines"] if line[3])
    assert rule[1] == "iptables -A FORWARD -m state --state INVALID -j DROP"
    assert rule[3] == {"ctstate-invalid": SACKING}
    (reason,) = model["reasons"]
    assert reason["hints"] == ["net.netfilter.nf_conntrack_tcp_be_liberal = 1"]
    assert sum(1 for r in conn["rows"] if r[2] == DROPPED) == SACKING


# --------------------------------------------------------------------------------------------------
# FTP through PAT: data connections linked to their control connection


def test_zeek_ftp_through_pat_links_each_data_connection_to_its_control_connection(
    tmp_path: Path, zeek_ftp_ipv4: Path
) -> None:
    from zeek_ftp import PAT, asa_front

    config = asa_front("141.142.220.254") + PAT
    summary = replay(parse_policy(config, "zeek-ftp.cfg"), [(None, zeek_ftp_ipv4)], tmp_path)
    assert summary["connections"]["built"] == 5
    model = build_model(tmp_path, config)
    conns = {c["id"]: c for c in model["conns"]}
    control = [c for c in conns.values() if c["r"]["port"] == 21]
    assert len(control) == 1
    data = [c for c in conns.values() if c["r"]["port"] != 21]
    assert len(data) == 4 and all(c["master"] == control[0]["id"] for c in data)
    assert sorted(control[0]["children"]) == sorted(c["id"] for c in data)
    # PAT: the control connection's client appears outside as the interface address.
    assert control[0]["i"]["mapped_address"] == "203.0.113.1"
    assert any("data connection announced on FTP control connection" in s for s in data[0]["story"])
    # Every packet of the capture is on a connection, each on both sides of its ladder.
    assert model["other_packets"] == 0
    assert sum(len(c["rows"]) for c in conns.values()) == 2 * summary["packets_in"]


def test_an_ip6tables_ftp_helper_replay_links_the_data_connections_too(
    tmp_path: Path, corpus_dir: Path
) -> None:
    """The iptables path: Zeek's IPv6 FTP capture through SNAT with ``-j CT --helper ftp``."""
    from test_ftp_zeek_nat66 import IP6TABLES

    capture = corpus_dir / "zeek" / "Traces" / "ftp" / "ipv6.pcap"
    if not capture.is_file():
        pytest.skip(f"Zeek FTP trace not found at {capture}")
    rules = IP6TABLES.format(target="SNAT --to-source 2001:db8:5::1")
    replay(parse_policy(rules, "ftp6.rules"), [(None, capture)], tmp_path)
    model = build_model(tmp_path, rules)
    (control,) = [c for c in model["conns"] if c["r"]["port"] == 21]
    data = [c for c in model["conns"] if c["r"]["port"] != 21]
    assert data and all(c["master"] == control["id"] for c in data)
    assert control["i"]["mapped_address"] == "2001:db8:5::1" and model["other_packets"] == 0


def test_an_ftp_bounce_is_on_its_control_connections_ladder(tmp_path: Path) -> None:
    """A PORT naming another host: 406002 and the drop on the control connection's ladder."""
    from test_ftp_pinholes import CLIENT, PIX_PAT, SERVER

    cap = tmp_path / "bounce.pcap"
    with PcapWriter(cap) as w:
        for i, (src, dst, sport, dport, flags, seq, ack, payload) in enumerate(
            [
                (CLIENT, SERVER, 38003, 21, "S", 1000, 0, b""),
                (SERVER, CLIENT, 21, 38003, "SA", 5000, 1001, b""),
                (CLIENT, SERVER, 38003, 21, "A", 1001, 5001, b""),
                (CLIENT, SERVER, 38003, 21, "PA", 1001, 5001, b"PORT 192,168,9,77,0,25\r\n"),
            ]
        ):
            pkt = (
                IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / payload
            )
            w.write(bytes(pkt), 100.0 + i * 0.01)
    replay(parse_policy(PIX_PAT, "ftp.cfg"), [(None, cap)], tmp_path / "out")
    (conn,) = build_model(tmp_path / "out", PIX_PAT)["conns"]
    assert any(
        text.startswith("%ASA-4-406002: FTP port command different address") for _, text in conn["log"]
    )
    assert conn["drops"] == {"inspect-ftp": 1} and [r[2] for r in conn["rows"]].count(DROPPED) == 1
