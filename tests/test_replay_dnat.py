"""Replay (``--ingress auto``) of a server behind an iptables DNAT captured on either side of the box
(issue 13, item 5; ``statewall.replay_dnat``).

``tests/configs/nat-gateway.rules`` publishes 10.0.0.5:80 as port 8080 of the uplink. A session captured
on the uplink shows the server answering from 192.0.2.1:8080; captured on the LAN, the client writing
to 10.0.0.5:80. Either is carried into the connection's coordinates and the whole session crosses;
before, 1 and 5 of its 8 packets did. A DNAT that is not one address and port, or sits behind a rule
replay cannot read, is named in the summary and not carried.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP

from statewall.config import parse_policy
from statewall.pcapio import PcapWriter, read_packets
from statewall.replay import replay
from statewall.replay_dnat import DnatCarry

GATEWAY = Path(__file__).parent / "configs" / "nat-gateway.rules"
CLIENT, PUBLIC, REAL = "198.51.100.7", "192.0.2.1", "10.0.0.5"


def session(side: str):
    """An 8-packet HTTP session as a capture on ``side`` ("uplink" or "lan") shows it: (packet, from
    the client)."""
    dst, dport = (PUBLIC, 8080) if side == "uplink" else (REAL, 80)
    c, s = 1000, 5000

    def cl(flags, seq, ack, data=b""):
        return IP(src=CLIENT, dst=dst) / TCP(
            sport=40000, dport=dport, flags=flags, seq=seq, ack=ack
        ) / data, True

    def sv(flags, seq, ack, data=b""):
        return IP(src=dst, dst=CLIENT) / TCP(
            sport=dport, dport=40000, flags=flags, seq=seq, ack=ack
        ) / data, False

    return [
        cl("S", c, 0),
        sv("SA", s, c + 1),
        cl("A", c + 1, s + 1),
        cl("PA", c + 1, s + 1, b"GET / HTTP/1.0\r\n\r\n"),
        sv("PA", s + 1, c + 19, b"HTTP/1.0 200 OK\r\n\r\n"),
        cl("FA", c + 19, s + 20),
        sv("FA", s + 20, c + 20),
        cl("A", c + 20, s + 21),
    ]


def write(path: Path, rows) -> Path:
    with PcapWriter(path) as w:
        for now, data in sorted(rows, key=lambda r: r[0]):
            w.write(bytes(data), now)
    return path


def one_side(tmp_path: Path, side: str) -> Path:
    return write(tmp_path / f"{side}.pcap", [(1.0 + i * 0.01, p) for i, (p, _) in enumerate(session(side))])


def flows(path: Path) -> list[str]:
    out = []
    for _, raw in read_packets(path):
        ip = IP(raw)
        out.append(f"{ip.src}:{ip[TCP].sport}>{ip.dst}:{ip[TCP].dport} {ip[TCP].flags}")
    return out


@pytest.mark.parametrize(("side", "carried"), [("uplink", 3), ("lan", 5)])
def test_a_session_captured_on_either_side_of_the_dnat_crosses_whole(tmp_path, side, carried):
    policy = parse_policy(GATEWAY.read_text(), GATEWAY.name)
    summary = replay(policy, [(None, one_side(tmp_path, side))], tmp_path / "out", report=False)
    assert summary["drops_by_reason"] == {}
    assert summary["packets_in"] == summary["forwarded"] == 8
    assert summary["dnat_carried"] == carried and summary["dnat_not_carried"] == []
    # What left is the live session: the client's packets DNAT'd to the server on the LAN, the
    # server's un-DNAT'd to the published address on the uplink.
    assert flows(tmp_path / "out" / "lan.pcap") == [
        f"{CLIENT}:40000>{REAL}:80 {f}" for f in ("S", "A", "PA", "FA", "A")
    ]
    assert flows(tmp_path / "out" / "uplink.pcap") == [
        f"{PUBLIC}:8080>{CLIENT}:40000 {f}" for f in ("SA", "PA", "FA")
    ]


@pytest.mark.parametrize(("side", "before"), [("uplink", 1), ("lan", 5)])
def test_without_the_carrying_the_session_does_not_cross(tmp_path, monkeypatch, side, before):
    # The numbers docs/ftp.md gave before (the test can fail).
    monkeypatch.setattr(DnatCarry, "carry", lambda self, data, iface, known: (iface, data))
    policy = parse_policy(GATEWAY.read_text(), GATEWAY.name)
    summary = replay(policy, [(None, one_side(tmp_path, side))], tmp_path / "out", report=False)
    assert summary["forwarded"] == before


def both_sides(tmp_path: Path) -> list[Path]:
    """The session captured on both links as a tap takes each: a packet arriving on one, and a moment
    later the box's own output of it on the other."""
    rows: dict[str, list] = {"uplink": [], "lan": []}
    for i, ((up, from_client), (lan, _)) in enumerate(zip(session("uplink"), session("lan"))):
        t = 1.0 + i * 0.01
        arrive, leave = ("uplink", "lan") if from_client else ("lan", "uplink")
        rows[arrive].append((t, up if arrive == "uplink" else lan))
        rows[leave].append((t + 1e-4, up if leave == "uplink" else lan))
    return [write(tmp_path / f"{s}.pcap", rows[s]) for s in ("uplink", "lan")]


def test_both_sides_captured_whole_replay_without_the_boxs_output_and_carry_nothing(tmp_path):
    # Each link's capture as a tap takes it: the other face of each packet is the box's own output
    # there, a moment later; nothing needs carrying, nothing is fed back in.
    paths = both_sides(tmp_path)
    policy = parse_policy(GATEWAY.read_text(), GATEWAY.name)
    summary = replay(policy, [(None, p) for p in paths], tmp_path / "out", report=False)
    assert summary["drops_by_reason"] == {}
    assert summary["packets_in"] == summary["forwarded"] == 8 and summary["sent_by_firewall"] == 8
    assert summary["dnat_carried"] == 0


def test_a_bare_syn_from_the_published_port_is_not_taken_for_the_servers_reply(tmp_path):
    # The box's own address and port 8080 opening a connection: no reply of a published server.
    path = write(
        tmp_path / "up.pcap",
        [(1.0, IP(src=PUBLIC, dst=CLIENT) / TCP(sport=8080, dport=40000, flags="S", seq=1))],
    )
    policy = parse_policy(GATEWAY.read_text(), GATEWAY.name)
    summary = replay(policy, [(None, path)], tmp_path / "out", report=False)
    assert summary["dnat_carried"] == 0 and summary["forwarded"] == 0


NOT_FIXED = GATEWAY.read_text().replace(
    "-A PREROUTING -i eth0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80\n",
    "-A PREROUTING -i eth0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.5-10.0.0.6:80\n"
    "-A PREROUTING -i eth0 -p tcp -m tcp --dport 8081 -m conntrack --ctstate NEW "
    "-j DNAT --to-destination 10.0.0.7:80\n"
    "-A PREROUTING -i eth0 -p tcp -m tcp --dport 8082:8083 -j DNAT --to-destination 10.0.0.8:80\n"
    "-A PREROUTING -i eth0 -p tcp -m tcp --dport 2222 -j REDIRECT --to-ports 22\n"
    "-A PREROUTING -i eth0 -p tcp -m tcp --dport 8084 -j DNAT --to-destination 10.0.0.5:80\n",
)


def test_dnat_rules_that_are_not_one_address_and_port_are_named_not_carried(tmp_path):
    policy = parse_policy(NOT_FIXED, "not-fixed.rules")
    carry = DnatCarry(policy)
    named = "\n".join(carry.not_carried)
    assert len(carry.not_carried) == 4, named
    assert "10.0.0.5-10.0.0.6:80 (an address range)" in named
    assert "--ctstate NEW" in named and "a condition replay cannot read" in named
    assert "8082:8083" in named and "several published ports onto one" in named
    assert "REDIRECT" in named
    assert [f.published_port for f in carry.forwards] == [8084]
    # A session captured on the LAN, to 10.0.0.5:80: the range or the 8084 rule may have sent the
    # client there, so it is replayed as taken, and the summary says which rules are not carried.
    summary = replay(policy, [(None, one_side(tmp_path, "lan"))], tmp_path / "out", report=False)
    assert summary["dnat_not_carried"] == carry.not_carried
    assert summary["forwarded"] < 8


def test_the_cli_names_what_it_does_not_carry(tmp_path):
    rules = tmp_path / "not-fixed.rules"
    rules.write_text(NOT_FIXED)
    cap = one_side(tmp_path, "uplink")
    res = subprocess.run(
        [sys.executable, "-c", "import sys; from statewall.cli import main; sys.exit(main(sys.argv[1:]))",
         "replay", "-c", str(rules), "-o", str(tmp_path / "out"), str(cap)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "not carried across" in res.stderr and "an address range" in res.stderr


def test_an_earlier_rule_that_takes_the_client_first_stops_the_carrying(tmp_path):
    # The client's network RETURNs before the DNAT: live its packets to 8080 were never forwarded,
    # so the server's "replies" in an uplink capture are not carried to 10.0.0.5.
    rules = GATEWAY.read_text().replace(
        "-A PREROUTING -i eth0 -p tcp",
        "-A PREROUTING -s 198.51.100.0/24 -j RETURN\n-A PREROUTING -i eth0 -p tcp",
        1,
    )
    policy = parse_policy(rules, "return-first.rules")
    summary = replay(policy, [(None, one_side(tmp_path, "uplink"))], tmp_path / "out", report=False)
    assert summary["dnat_carried"] == 0 and summary["dnat_not_carried"] == []
    summary = replay(policy, [(None, one_side(tmp_path, "lan"))], tmp_path / "out2", report=False)
    assert summary["dnat_carried"] == 0
