"""Seed 000, "FTP disconnects through Cisco ASA firewall, MSS exceeded", replayed end to end.

The FTP client inside advertises MSS 1460, the server outside 1390, and the client sends 1460-byte
segments anyway. Through the seed's configuration on a release before 9.0 (exceed-mss drop by
default) every such segment is dropped with the seed's log line; the seed's two fixes, solution A
(``sysopt connection tcpmss minimum 1460``) and solution B (its class-map / tcp-map / policy-map
transcript, verbatim), each let every segment through.
"""

from __future__ import annotations

from pathlib import Path

import dpkt
import pytest
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from statewall import cli
from statewall.config import load_policy
from statewall.pcapio import PcapWriter, read_packets
from statewall.replay import replay

CONFIGS = Path(__file__).parent / "configs"
CLIENT, SERVER = ("10.0.0.2", 38003), ("192.168.9.2", 21)
LOG_419001 = (
    "%ASA-4-419001: Dropping TCP packet from inside:10.0.0.2/38003 to outside:192.168.9.2/21, "
    "reason: MSS exceeded, MSS 1390, data 1460"
)
# 1460 bytes of whole FTP command lines, so that FTP inspection (on by default) reads them as such.
BIG = b"NOOP\r\n" * 242 + b"STAT x\r\n"
BIG_SEGMENTS = 3


def session(start: float = 1190184958.0) -> list[tuple[float, bytes]]:
    """The FTP control connection as a sniffer beside the client saw it (no firewall in between)."""
    c_seq, s_seq = 0x2A5C1F00, 0x6E1B3A00
    t = start
    out: list[tuple[float, bytes]] = []

    def send(client: bool, flags: str, payload: bytes = b"", opts=None) -> None:
        nonlocal t, c_seq, s_seq
        t += 0.02
        (src, sport), (dst, dport) = (CLIENT, SERVER) if client else (SERVER, CLIENT)
        seq, ack = (c_seq, s_seq) if client else (s_seq, c_seq)
        pkt = IP(src=src, dst=dst, ttl=64, flags="DF") / TCP(
            sport=sport,
            dport=dport,
            seq=seq,
            ack=ack if "A" in flags else 0,
            flags=flags,
            window=64240,
            options=opts or [],
        )
        if payload:
            pkt = pkt / Raw(payload)
        out.append((t, bytes(pkt)))
        grown = len(payload) + ("S" in flags) + ("F" in flags)
        if client:
            c_seq = (c_seq + grown) & 0xFFFFFFFF
        else:
            s_seq = (s_seq + grown) & 0xFFFFFFFF

    send(True, "S", opts=[("MSS", 1460)])
    send(False, "SA", opts=[("MSS", 1390)])
    send(True, "A")
    send(False, "PA", b"220 (vsFTPd 2.0.5)\r\n")
    send(True, "A")
    for _ in range(BIG_SEGMENTS):
        send(True, "PA", BIG)
        send(False, "A")
    send(True, "PA", b"QUIT\r\n")
    send(False, "PA", b"221 Goodbye.\r\n")
    send(False, "FA")
    send(True, "FA")
    send(False, "A")
    return out


def capture(path: Path) -> Path:
    with PcapWriter(path) as w:
        for ts, p in session():
            w.write(p, ts)
    return path


def log_lines(out: Path) -> list[str]:
    return [line.split(": ", 1)[1] for line in (out / "log.txt").read_text().splitlines()]


def sent_to_server(out: Path) -> list[dpkt.ip.IP]:
    return [dpkt.ip.IP(p) for _, p in read_packets(out / "outside.pcap")]


def big_segments(packets: list[dpkt.ip.IP]) -> int:
    return sum(1 for ip in packets if len(ip.data.data) == len(BIG))


def test_marked_8_2_each_oversized_segment_is_logged_and_dropped(tmp_path: Path):
    policy = load_policy(CONFIGS / "seed000.cfg")
    policy.version = "8.2(1)"  # what --asa-version 8.2(1) does for a configuration without a header
    out = tmp_path / "out"
    summary = replay(policy, [(None, capture(tmp_path / "ftp.pcap"))], out)
    assert [line for line in log_lines(out) if "419001" in line] == [LOG_419001] * BIG_SEGMENTS
    assert summary["drops_by_reason"]["tcp-mss-exceeded"] == BIG_SEGMENTS
    assert big_segments(sent_to_server(out)) == 0
    # The ASA lowered the MSS both ways to its default maximum, 1380; the check still holds the server
    # to what it advertised itself.
    syn = next(ip for ip in sent_to_server(out) if ip.data.flags & 0x02)
    assert dict(dpkt.tcp.parse_opts(syn.data.opts))[2] == (1380).to_bytes(2, "big")


def test_without_a_release_before_9_0_nothing_is_dropped(tmp_path: Path):
    out = tmp_path / "out"
    summary = replay(load_policy(CONFIGS / "seed000.cfg"), [(None, capture(tmp_path / "ftp.pcap"))], out)
    assert summary["dropped"] == 0 and big_segments(sent_to_server(out)) == BIG_SEGMENTS


@pytest.mark.parametrize("config", ["seed000-solution-a.cfg", "seed000-solution-b.cfg"])
def test_either_solution_lets_every_segment_through(tmp_path: Path, config: str, capsys):
    out = tmp_path / "out"
    cap = capture(tmp_path / "ftp.pcap")
    code = cli.main(
        ["replay", "-c", str(CONFIGS / config), "--asa-version", "8.2(1)", "-o", str(out), "--json", str(cap)]
    )
    assert code == 0, capsys.readouterr().err
    assert not [line for line in log_lines(out) if "419001" in line]
    assert big_segments(sent_to_server(out)) == BIG_SEGMENTS
    sent = [dpkt.ip.IP(p).data.data for _, p in session() if p[12:16] == bytes([10, 0, 0, 2])]
    assert [ip.data.data for ip in sent_to_server(out) if ip.data.data] == [d for d in sent if d]


def test_the_cli_marking_reproduces_the_seed(tmp_path: Path, capsys):
    out = tmp_path / "out"
    cap = capture(tmp_path / "ftp.pcap")
    args = ["replay", "-c", str(CONFIGS / "seed000.cfg"), "--asa-version", "8.2(1)", "-o", str(out), str(cap)]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert [line for line in log_lines(out) if "419001" in line] == [LOG_419001] * BIG_SEGMENTS


def test_solution_a_raises_the_mss_the_client_is_told(tmp_path: Path):
    policy = load_policy(CONFIGS / "seed000-solution-a.cfg")
    policy.version = "8.2(1)"
    out = tmp_path / "out"
    replay(policy, [(None, capture(tmp_path / "ftp.pcap"))], out)
    to_client = [dpkt.ip.IP(p) for _, p in read_packets(out / "inside.pcap")]
    synack = next(ip for ip in to_client if ip.data.flags & 0x12 == 0x12)
    assert dict(dpkt.tcp.parse_opts(synack.data.opts))[2] == (1460).to_bytes(2, "big")


def test_solution_b_applies_only_to_the_ftp_flow(tmp_path: Path):
    from statewall.engine import Firewall

    policy = load_policy(CONFIGS / "seed000-solution-b.cfg")
    policy.version = "8.2(1)"
    fw = Firewall(policy)
    other = IP(src="10.0.0.3", dst="192.168.9.2") / TCP(
        sport=1000, dport=21, flags="S", options=[("MSS", 1460)]
    )
    fw.receive("inside", bytes(other), 1.0)
    ftp = IP(src="10.0.0.2", dst="192.168.9.2") / TCP(
        sport=1000, dport=21, flags="S", options=[("MSS", 1460)]
    )
    fw.receive("inside", bytes(ftp), 1.0)
    maps = {c.initiator.address: c.mpf.tcp_map.name for c in fw.conns}
    assert maps == {"10.0.0.3": "default", "10.0.0.2": "mss-map"}
