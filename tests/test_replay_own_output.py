"""Replay with ``--ingress auto`` of captures that hold both directions of their link (issue 13, item 5).

No capture is tied to a link, so the firewall's own output in them is recognised by what it is: a
copy of a packet the firewall emitted moments before, equal in every byte it did not rewrite
(``statewall.replay.RecentOutput``). It is left out and counted (``sent_by_firewall``) as when a
capture is pinned; a spoofed packet, which differs in a byte the firewall left alone, is replayed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from fixtures import CLIENT, MAPPED, PIX_PAT, SERVER
from statewall.config import parse_policy
from statewall.engine import Firewall
from statewall.pcapio import PcapWriter, read_packets
from statewall.replay import RecentOutput, replay
from traffic import Conversation, Host, Link

MASQUERADE_FTP = (
    "#@statewall interface inside dev eth1 address 10.0.0.1/24\n"
    "#@statewall interface outside dev eth0 address 192.168.9.30/24\n"
    "*raw\n-A PREROUTING -p tcp --dport 21 -j CT --helper ftp\nCOMMIT\n"
    "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
    "-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n"
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
    "-A FORWARD -i eth1 -o eth0 -j ACCEPT\nCOMMIT\n"
)


def _link(dialect: str) -> tuple[str, str, Link]:
    if dialect == "asa":
        return PIX_PAT, "pat.cfg", Link.asa(PIX_PAT, "pat.cfg", now=10.0, seed=7)
    return MASQUERADE_FTP, "masq.rules", Link.iptables(MASQUERADE_FTP, "masq.rules", now=10.0)


def _replay(dialect: str, config: str, name: str, paths: list[Path], out: Path) -> dict:
    """The captures replayed with ``--ingress auto``. The ASA's engine gets the recording box's
    randomization secret: a data connection the server opened (active mode) captured inside, after
    another box's randomization, is a gap of its own (docs/ftp.md); the kernel differential
    (tests/test_ftp_kernel.py) replays another box's offsets and ports."""
    policy = parse_policy(config, name)
    fw = Firewall(policy, seed=7) if dialect == "asa" else None
    return replay(policy, [(None, p) for p in paths], out, report=False, firewall=fw)


def _close(c: Conversation, first: str = "a") -> None:
    other = "b" if first == "a" else "a"
    assert c.send(first, "FA") and c.send(other, "FA") and c.send(first, "A")


def _ftp_session(link: Link) -> None:
    """An FTP session through PAT: an active-mode and a passive-mode transfer, each step forwarded."""
    ctl = Conversation(link, Host(CLIENT, 40000, "inside"), Host(SERVER, 21, "outside", to=MAPPED))
    ctl.open()
    assert ctl.server("PA", b"220 ready\r\n")
    # Active: the PORT command leaves rewritten to the mapped address and port; the server connects
    # there from port 20.
    out = ctl.client("PA", b"PORT 10,0,0,2,156,65\r\n")
    port = re.search(rb"PORT 192,168,9,30,(\d+),(\d+)", bytes(out[0][TCP].payload))
    assert port, bytes(out[0][TCP].payload)
    mapped_port = int(port[1]) * 256 + int(port[2])
    assert ctl.server("PA", b"200 PORT ok\r\n")
    assert ctl.client("PA", b"RETR a\r\n")
    data = Conversation(
        link, Host(SERVER, 20, "outside", to=MAPPED, to_port=mapped_port), Host(CLIENT, 40001, "inside")
    )
    data.open()
    assert data.send("a", "PA", b"x" * 300)
    _close(data)
    assert ctl.server("PA", b"226 done\r\n")
    # Passive: the server's 227 names its own port; the client connects to it.
    assert ctl.client("PA", b"PASV\r\n")
    assert ctl.server("PA", b"227 Entering Passive Mode (192,168,9,2,200,10)\r\n")
    assert ctl.client("PA", b"RETR b\r\n")
    pasv = Conversation(link, Host(CLIENT, 40002, "inside"), Host(SERVER, 51210, "outside", to=MAPPED))
    pasv.open()
    assert pasv.server("PA", b"y" * 200)
    _close(pasv, "b")
    assert ctl.server("PA", b"226 done\r\n")
    _close(ctl)


def _captures(tmp_path: Path, link: Link, extra=()) -> tuple[list[Path], dict[str, int]]:
    """Each link's capture as a tap sees it: what arrived there and what the firewall sent out there
    (``extra``: more packets, (time, interface, bytes))."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths, sent = [], {}
    for iface in ("inside", "outside"):
        path = tmp_path / f"{iface}.pcap"
        # The tap sees a forwarded packet leave a moment after its cause arrived.
        rows = [(now + (way == "out") * 1e-4, data) for now, way, i, data in link.record if i == iface]
        rows += [(now, data) for now, i, data in extra if i == iface]
        with PcapWriter(path) as w:
            for now, data in sorted(rows, key=lambda r: r[0]):
                w.write(data, now)
        sent[iface] = sum(1 for _, way, i, _ in link.record if i == iface and way == "out")
        paths.append(path)
    return paths, sent


@pytest.mark.parametrize("dialect", ["asa", "iptables"])
def test_two_way_captures_of_ftp_through_pat_replay_in_auto_mode_without_the_boxs_output(tmp_path, dialect):
    config, name, link = _link(dialect)
    _ftp_session(link)
    assert not link.drops()
    paths, sent = _captures(tmp_path / "caps", link)
    arrived = sum(1 for _, way, _, _ in link.record if way == "in")
    assert sent["inside"] > 10 and sent["outside"] > 10
    summary = _replay(dialect, config, name, paths, tmp_path / "out")
    # Every packet that arrived is forwarded again; none of the firewall's own is fed back in.
    assert summary["drops_by_reason"] == {}, summary["drops_by_reason"]
    assert [c["sent_by_firewall"] for c in summary["captures"]] == [sent["inside"], sent["outside"]]
    assert summary["packets_in"] == summary["forwarded"] == arrived
    assert summary["unassigned"] == 0


def test_without_the_recognition_the_boxs_output_is_fed_back_in(tmp_path, monkeypatch):
    config, name, link = _link("asa")
    _ftp_session(link)
    paths, _ = _captures(tmp_path / "caps", link)
    monkeypatch.setattr(RecentOutput, "take", lambda self, data, now, capture: False)
    summary = _replay("asa", config, name, paths, tmp_path / "out")
    assert summary["sent_by_firewall"] == 0 and summary["drops_by_reason"]


@pytest.mark.parametrize("dialect", ["asa", "iptables"])
def test_a_spoofed_copy_of_the_boxs_output_is_still_replayed(tmp_path, dialect):
    # A packet equal to what the firewall sent out, but for one byte it never rewrites (the IP id, the
    # payload), in the outside capture just after the real copy: handed over, the firewall judges it.
    config, name, link = _link(dialect)
    _ftp_session(link)
    outs = [(now, data) for now, way, i, data in link.record if i == "outside" and way == "out"]
    now, data = next((now, d) for now, d in outs if len(IP(d)[TCP].payload) > 0)
    ident = IP(data)
    ident.id ^= 1
    del ident.chksum
    payload = IP(data)
    raw = bytes(payload[TCP].payload)
    payload[TCP].remove_payload()
    payload = payload / Raw(raw[:-1] + bytes([raw[-1] ^ 0x20]))
    del payload.chksum, payload[TCP].chksum
    extra = [(now + 0.001, "outside", bytes(ident)), (now + 0.002, "outside", bytes(payload))]
    paths, sent = _captures(tmp_path / "caps", link, extra)
    arrived = sum(1 for _, way, _, _ in link.record if way == "in")
    summary = _replay(dialect, config, name, paths, tmp_path / "out")
    assert [c["sent_by_firewall"] for c in summary["captures"]] == [sent["inside"], sent["outside"]]
    assert summary["packets_in"] == arrived + 2
    arrivals = [bytes(d) for _, d in read_packets(tmp_path / "out" / "arrived" / "outside.pcap")]
    assert ident.id in {IP(d).id for d in arrivals}
    spoofed = raw[:-1] + bytes([raw[-1] ^ 0x20])
    assert any(bytes(IP(d)[TCP].payload) == spoofed for d in arrivals)


def test_recent_output_rules():
    pkt = bytes(IP(src=CLIENT, dst=SERVER, ttl=64, id=9) / TCP(sport=1, dport=2, flags="A", seq=5) / b"hi")
    hop = bytes(IP(src=CLIENT, dst=SERVER, ttl=63, id=9) / TCP(sport=1, dport=2, flags="A", seq=5) / b"hi")
    nat = bytes(IP(src=MAPPED, dst=SERVER, ttl=64, id=9) / TCP(sport=7, dport=2, flags="A", seq=99) / b"hi")
    other = bytes(IP(src=MAPPED, dst=SERVER, ttl=60, id=9) / TCP(sport=8, dport=2, flags="A", seq=3) / b"hi")
    r = RecentOutput(window=1.0)
    # Forwarded unchanged (but for the TTL): a copy in another capture is the output, once; in the
    # capture it came from it may be a duplicate, and is not taken.
    r.emitted([("outside", hop)], 1.0, 0, pkt)
    assert not r.take(pkt, 1.0, 0)
    assert r.take(pkt, 1.001, 1)
    assert not r.take(pkt, 1.002, 1)
    # Translated: another box's translation of it (its own port, sequence offset, TTL) is the output,
    # from another capture only; not after the window; not with another byte changed, nor from
    # another address (the IP header is compared whole).
    r.emitted([("outside", nat)], 2.0, 0, pkt)
    assert not r.take(other.replace(b"hi", b"ho"), 2.0, 1)
    assert not r.take(other, 2.1, 0)
    assert not r.take(other, 3.5, 1)
    r.emitted([("outside", nat)], 4.0, 0, pkt)
    spoof = bytes(
        IP(src="192.168.9.31", dst=SERVER, ttl=60, id=9) / TCP(sport=8, dport=2, flags="A", seq=3) / b"hi"
    )
    assert not r.take(spoof, 4.4, 1)
    assert r.take(other, 4.5, 1)
    assert not r.take(other, 4.6, 1)
