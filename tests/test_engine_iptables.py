"""The engine running iptables rulesets as Linux does: given this ruleset and this traffic, expect these
packets on the wire, these counters, these conntrack lines and these drops.

Packets are built with ``statewall.craft`` and what leaves is read back with scapy, an independent codec,
so translations and checksums are checked by something other than the code that wrote them. The
conntrack event lines are compared with lines ``conntrack -E`` printed on Linux 6.18 (conntrack-tools
1.4.7) for the same sessions through a namespace that masqueraded them.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from nf_reference import NetfilterReplay
from statewall import craft
from statewall.cli import main
from statewall.dialects.iptables import parse
from statewall.engine import Firewall
from statewall.events import ConnBuilt, CtEvent, Drop, DropReason, IcmpSent, NfLog
from statewall.logfmt.linux import conntrack_line, format_event
from statewall.packet import str_to_addr
from statewall.pcapio import PcapWriter, read_packets
from statewall.replay import replay
from traffic import Link

CONFIGS = Path(__file__).parent / "configs"
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


def ip(text: str) -> int:
    return str_to_addr(text)[1]


def tcp(src, dst, sport, dport, flags, seq=1000, ack=0, payload=b"", *, mss=None, v=4, window=64240):
    options = craft.tcp_option_mss(mss) if mss is not None else b""
    ack = ack if flags & ACK else 0
    return craft.tcp_packet(v, ip(src), ip(dst), sport, dport, seq, ack, flags, window, options, payload)


def udp(src, dst, sport, dport, payload=b"q"):
    return craft.udp_packet(4, ip(src), ip(dst), sport, dport, payload)


def cli(argv: list[str]) -> list[str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    return buf.getvalue().splitlines()


def checksums_ok(p) -> bool:
    return bytes(p.__class__(bytes(_cleared(p)))) == bytes(p)


def _cleared(p):
    q = p.copy()
    if isinstance(q, IP):
        del q.chksum
    for layer in (TCP, UDP, ICMP):
        if layer in q:
            del q[layer].chksum
    return q


# --------------------------------------------------------------------------------------------------
# Seed 001: the Sophos MSS clamp, with real counters after a replay


SOPHOS = CONFIGS / "seed001-sophos.rules"


def test_seed001_syns_leave_ipsec0_clamped_and_the_listing_counts_them(tmp_path):
    cap = tmp_path / "syns.pcap"
    syns = [
        tcp("192.168.1.10", "10.9.0.5", 40000, 443, SYN, mss=1460),
        tcp("192.168.1.10", "10.9.0.5", 40001, 443, SYN, mss=1200),  # smaller: left alone
        tcp("2001:db8:1::10", "2001:db8:9::5", 40002, 443, SYN, mss=1440, v=6),
        tcp("2001:db8:1::10", "2001:db8:9::5", 40003, 443, SYN, mss=1000, v=6),
        tcp("192.168.1.10", "203.0.113.9", 40004, 443, SYN, mss=1460),  # to the internet: not ipsec0
    ]
    with PcapWriter(cap) as w:
        for i, data in enumerate(syns):
            w.write(data, 10.0 + i)
    summary = replay(parse(SOPHOS.read_text(), "seed001"), [(None, cap)], tmp_path / "out")
    assert summary["forwarded"] == 5 and summary["dropped"] == 0
    on_ipsec0 = [p for _, p in read_packets(tmp_path / "out" / "ipsec0.pcap")]
    mss = [dict(((IPv6 if d[0] >> 4 == 6 else IP)(d))[TCP].options)["MSS"] for d in on_ipsec0]
    assert mss == [1347, 1200, 1327, 1000]
    wan = [IP(d) for _, d in read_packets(tmp_path / "out" / "wan.pcap")]
    assert dict(wan[0][TCP].options)["MSS"] == 1460

    out = cli(
        ["iptables", "-c", str(SOPHOS), "-t", "mangle", "-L", "-n", "-v", "-x", "--after-replay", str(cap)]
    )
    chain = out.index("Chain POSTROUTING (policy ACCEPT 3 packets, 132 bytes)")
    assert out[chain + 2] == (
        "       2       88 TCPMSS     tcp  --  *      ipsec0  0.0.0.0/0            0.0.0.0/0            "
        "tcp flags:0x06/0x02 TCPMSS set 1347"
    )
    out6 = cli(
        ["ip6tables", "-c", str(SOPHOS), "-t", "mangle", "-nvxL", "POSTROUTING", "--after-replay", str(cap)]
    )
    assert out6[0] == "Chain POSTROUTING (policy ACCEPT 2 packets, 128 bytes)"
    assert out6[2].split()[:3] == ["2", "128", "TCPMSS"]


# --------------------------------------------------------------------------------------------------
# conntrack -E as the kernel prints it

# The namespace the kernel lines were taken from: client 10.66.1.1 -- fa | fw | fb -- server 10.66.2.1.
MASQ = """\
#@statewall interface fa address 10.66.1.254/24
#@statewall interface fb address 10.66.2.254/24
iptables -t nat -A POSTROUTING -o fb -j MASQUERADE
iptables -A FORWARD -m state --state INVALID -j DROP
"""
KERNEL_EVENTS = """\
    [NEW] tcp      6 120 SYN_SENT src=10.66.1.1 dst=10.66.2.1 sport=48422 dport=5555 [UNREPLIED] src=10.66.2.1 dst=10.66.2.254 sport=5555 dport=48422
 [UPDATE] tcp      6 60 SYN_RECV src=10.66.1.1 dst=10.66.2.1 sport=48422 dport=5555 src=10.66.2.1 dst=10.66.2.254 sport=5555 dport=48422
 [UPDATE] tcp      6 432000 ESTABLISHED src=10.66.1.1 dst=10.66.2.1 sport=48422 dport=5555 src=10.66.2.1 dst=10.66.2.254 sport=5555 dport=48422 [ASSURED]
 [UPDATE] tcp      6 120 FIN_WAIT src=10.66.1.1 dst=10.66.2.1 sport=48422 dport=5555 src=10.66.2.1 dst=10.66.2.254 sport=5555 dport=48422 [ASSURED]
 [UPDATE] tcp      6 60 CLOSE_WAIT src=10.66.1.1 dst=10.66.2.1 sport=48422 dport=5555 src=10.66.2.1 dst=10.66.2.254 sport=5555 dport=48422 [ASSURED]
 [UPDATE] tcp      6 30 LAST_ACK src=10.66.1.1 dst=10.66.2.1 sport=48422 dport=5555 src=10.66.2.1 dst=10.66.2.254 sport=5555 dport=48422 [ASSURED]
 [UPDATE] tcp      6 120 TIME_WAIT src=10.66.1.1 dst=10.66.2.1 sport=48422 dport=5555 src=10.66.2.1 dst=10.66.2.254 sport=5555 dport=48422 [ASSURED]
    [NEW] udp      17 30 src=10.66.1.1 dst=10.66.2.1 sport=40000 dport=5353 [UNREPLIED] src=10.66.2.1 dst=10.66.2.254 sport=5353 dport=40000
 [UPDATE] udp      17 30 src=10.66.1.1 dst=10.66.2.1 sport=40000 dport=5353 src=10.66.2.1 dst=10.66.2.254 sport=5353 dport=40000
    [NEW] icmp     1 30 src=10.66.1.1 dst=10.66.2.1 type=8 code=0 id=4660 [UNREPLIED] src=10.66.2.1 dst=10.66.2.254 type=0 code=0 id=4660
 [UPDATE] icmp     1 30 src=10.66.1.1 dst=10.66.2.1 type=8 code=0 id=4660 src=10.66.2.1 dst=10.66.2.254 type=0 code=0 id=4660
""".splitlines()  # noqa: E501 - the kernel's lines, verbatim
# A flow that expired and one the table was flushed of (the timeout stays only on the latter).
KERNEL_DESTROY_EXPIRED = (
    "[DESTROY] tcp      6 TIME_WAIT src=10.66.1.1 dst=10.66.9.9 sport=35578 dport=80 src=10.66.2.1 "
    "dst=10.66.1.1 sport=5555 dport=35578 [ASSURED]"
)
KERNEL_LISTING_UDP = (
    "udp      17 29 src=10.66.1.1 dst=10.66.2.1 sport=40000 dport=5353 src=10.66.2.1 dst=10.66.2.254 "
    "sport=5353 dport=40000 mark=0 use=1"
)


def masqueraded_sessions(w: Link) -> None:
    c, s, m = "10.66.1.1", "10.66.2.1", "10.66.2.254"
    cs, ss = 7000, 9000
    w.send("fa", tcp(c, s, 48422, 5555, SYN, cs))
    w.send("fb", tcp(s, m, 5555, 48422, SYN | ACK, ss, cs + 1))
    w.send("fa", tcp(c, s, 48422, 5555, ACK, cs + 1, ss + 1))
    w.send("fa", tcp(c, s, 48422, 5555, PSH | ACK, cs + 1, ss + 1, b"hi"))
    w.send("fb", tcp(s, m, 5555, 48422, PSH | ACK, ss + 1, cs + 3, b"hi"))
    w.send("fb", tcp(s, m, 5555, 48422, FIN | ACK, ss + 3, cs + 3))
    w.send("fa", tcp(c, s, 48422, 5555, ACK, cs + 3, ss + 4))
    w.send("fa", tcp(c, s, 48422, 5555, FIN | ACK, cs + 3, ss + 4), dt=0.3)
    w.send("fb", tcp(s, m, 5555, 48422, ACK, ss + 4, cs + 4))
    w.send("fa", udp(c, s, 40000, 5353, b"x"))
    w.send("fb", udp(s, m, 5353, 40000, b"x"))
    w.send("fa", craft.icmp_echo(4, ip(c), ip(s), 4660, 1, b"abcd"))
    w.send("fb", craft.icmp_echo(4, ip(s), ip(m), 4660, 1, b"abcd", reply=True))


def test_conntrack_events_are_the_kernels_lines():
    w = Link.iptables(MASQ)
    masqueraded_sessions(w)
    assert w.ct_lines() == KERNEL_EVENTS


def test_conntrack_listing_and_destroy_lines_are_the_kernels():
    w = Link.iptables(MASQ)
    masqueraded_sessions(w)
    w.now += 0.5
    assert KERNEL_LISTING_UDP in w.listing()
    # Expiry: TIME_WAIT's 120 s, then the entry goes without a timeout in its DESTROY line.
    w2 = Link.iptables(
        "#@statewall interface fa address 10.66.1.254/24\n#@statewall interface fb address 10.66.2.254/24\n"
        "iptables -t nat -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.66.2.1:5555\n"
    )
    c, s, d = "10.66.1.1", "10.66.9.9", "10.66.2.1"
    w2.send("fa", tcp(c, s, 35578, 80, SYN, 1))
    w2.send("fb", tcp(d, c, 5555, 35578, SYN | ACK, 50, 2))
    w2.send("fa", tcp(c, s, 35578, 80, ACK, 2, 51))
    w2.send("fb", tcp(d, c, 5555, 35578, FIN | ACK, 51, 2))
    w2.send("fa", tcp(c, s, 35578, 80, FIN | ACK, 2, 52))
    w2.send("fb", tcp(d, c, 5555, 35578, ACK, 52, 3))
    assert w2.listing()[0].startswith("tcp      6 120 TIME_WAIT src=10.66.1.1 dst=10.66.9.9 ")
    w2.wait(121.0)
    assert w2.ct_lines()[-1] == KERNEL_DESTROY_EXPIRED
    assert w2.listing() == []


# --------------------------------------------------------------------------------------------------
# NAT targets with ranges

NAT = """\
#@statewall interface lan dev eth1 address 192.168.0.1/24
#@statewall interface wan dev eth0 address 198.51.100.7/24
#@statewall route 0.0.0.0/0 via 198.51.100.1 dev wan
iptables -t nat -A PREROUTING -i eth0 -p tcp --dport 8080 -j DNAT --to-destination 192.168.0.20-192.168.0.21:80
iptables -t nat -A PREROUTING -i eth1 -p tcp --dport 3128 -j REDIRECT --to-ports 8888
iptables -t nat -A POSTROUTING -o eth0 -s 192.168.0.64/26 -p udp -j SNAT --to-source 198.51.100.10-198.51.100.12:2000-2010
iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A FORWARD -i eth0 -d 192.168.0.20 -p tcp --dport 80 -j ACCEPT
iptables -A FORWARD -i eth0 -d 192.168.0.21 -p tcp --dport 80 -j ACCEPT
iptables -A FORWARD -i eth1 -p udp --dport 9 -j REJECT
iptables -A FORWARD -i eth1 -p tcp --dport 9 -j REJECT --reject-with tcp-reset
iptables -A FORWARD -i eth1 -j ACCEPT
iptables -P FORWARD DROP
"""  # noqa: E501 - rules as an administrator writes them
CLIENT, SERVER, PUBLIC = "192.168.0.10", "203.0.113.5", "198.51.100.7"


def test_masquerade_keeps_a_free_port_and_translates_the_answers_back():
    w = Link.iptables(NAT)
    ((oif, syn),) = w.send("lan", tcp(CLIENT, SERVER, 40000, 443, SYN, 100)).pairs()
    assert (oif, syn.src, syn[TCP].sport, syn.ttl) == ("wan", PUBLIC, 40000, 63) and checksums_ok(syn)
    ((oif, synack),) = w.send("wan", tcp(SERVER, PUBLIC, 443, 40000, SYN | ACK, 500, 101)).pairs()
    assert (oif, synack.dst, synack[TCP].dport) == ("lan", CLIENT, 40000) and checksums_ok(synack)
    # Another client with the same source port: the mapping is taken, so another port of 1024-65535.
    ((_, other),) = w.send("lan", tcp("192.168.0.11", SERVER, 40000, 443, SYN, 100)).pairs()
    assert other.src == PUBLIC and other[TCP].sport != 40000 and 1024 <= other[TCP].sport <= 65535
    ((_, back),) = w.send("wan", tcp(SERVER, PUBLIC, 443, other[TCP].sport, SYN | ACK, 700, 101)).pairs()
    assert (back.dst, back[TCP].dport) == ("192.168.0.11", 40000)
    assert any(
        ln.startswith("tcp      6 60 SYN_RECV src=192.168.0.11 dst=203.0.113.5 sport=40000 dport=443 ")
        and f"src=203.0.113.5 dst=198.51.100.7 sport=443 dport={other[TCP].sport} mark=0 use=1" in ln
        for ln in w.listing()
    )


def test_snat_takes_an_address_and_a_port_of_its_ranges():
    w = Link.iptables(NAT)
    mapped = set()
    for host in (70, 71, 72, 73):
        ((_, out),) = w.send("lan", udp(f"192.168.0.{host}", SERVER, 53000, 53)).pairs()
        assert out.src in {"198.51.100.10", "198.51.100.11", "198.51.100.12"}
        assert 2000 <= out[UDP].sport <= 2010 and checksums_ok(out)
        mapped.add((out.src, out[UDP].sport))
        ((_, back),) = w.send("wan", udp(SERVER, out.src, 53, out[UDP].sport, b"a")).pairs()
        assert (back.dst, back[UDP].dport) == (f"192.168.0.{host}", 53000)
    assert len(mapped) == 4
    # Outside the -s range, MASQUERADE (the rule after) applies.
    ((_, out),) = w.send("lan", udp(CLIENT, SERVER, 53000, 53)).pairs()
    assert (out.src, out[UDP].sport) == (PUBLIC, 53000)


def test_dnat_to_a_range_and_forward_sees_the_real_destination():
    w = Link.iptables(NAT)
    ((oif, syn),) = w.send("wan", tcp(SERVER, PUBLIC, 50000, 8080, SYN, 1)).pairs()
    assert oif == "lan" and syn.dst in {"192.168.0.20", "192.168.0.21"} and syn[TCP].dport == 80
    assert checksums_ok(syn)
    # The FORWARD rule that let it in names the real server.
    (built,) = w.of(ConnBuilt)
    assert built.origin.text.endswith(f"-d {syn.dst} -p tcp --dport 80 -j ACCEPT")
    ((oif, reply),) = w.send("lan", tcp(syn.dst, SERVER, 80, 50000, SYN | ACK, 9, 2)).pairs()
    assert (oif, reply.src, reply[TCP].sport) == ("wan", PUBLIC, 8080) and checksums_ok(reply)
    assert w.ct_lines()[0] == (
        "    [NEW] tcp      6 120 SYN_SENT src=203.0.113.5 dst=198.51.100.7 sport=50000 dport=8080 "
        f"[UNREPLIED] src={syn.dst} dst=203.0.113.5 sport=80 dport=50000"
    )
    # Straight to an inside host, not through the DNAT: the FORWARD policy drops it, and says so.
    assert w.send("wan", tcp(SERVER, "192.168.0.30", 50001, 22, SYN, 1)).pairs() == []
    (drop,) = w.of(Drop)
    assert (drop.reason, drop.acl, drop.origin.text, drop.message) == (
        DropReason.ACL_DROP,
        "filter/FORWARD",
        "iptables -P FORWARD DROP",
        "dropped by filter/FORWARD policy DROP",
    )
    assert drop.detail == {"ctstate": "NEW", "hook": "FORWARD"}


def test_redirect_delivers_to_the_ingress_address_through_input():
    w = Link.iptables(NAT + "iptables -A INPUT -p tcp --dport 8888 -j ACCEPT\niptables -P INPUT DROP\n")
    assert w.send("lan", tcp(CLIENT, SERVER, 40001, 3128, SYN, 1)).pairs() == []  # taken in by the box
    assert not w.of(Drop)
    assert w.fw.netfilter.counters("filter")[("INPUT", 0)] == (1, 40)
    assert w.listing()[0].endswith(
        "[UNREPLIED] src=192.168.0.1 dst=192.168.0.10 sport=8888 dport=40001 mark=0 use=1"
    )
    assert w.fw.netfilter.counters("nat")[("PREROUTING", 1)] == (1, 40)


def test_reject_answers_with_port_unreachable_or_a_reset_and_the_drop_names_the_rule():
    w = Link.iptables(NAT)
    ((oif, unreach),) = w.send("lan", udp(CLIENT, SERVER, 5000, 9, b"hello")).pairs()
    assert (oif, unreach.src, unreach.dst) == ("lan", "192.168.0.1", CLIENT)
    assert (unreach[ICMP].type, unreach[ICMP].code) == (3, 3) and checksums_ok(unreach)
    assert (unreach[IPerror].dst, unreach[UDPerror].dport) == (SERVER, 9)
    ((oif, rst),) = w.send("lan", tcp(CLIENT, SERVER, 40002, 9, SYN, 4242)).pairs()
    assert (oif, rst.src, rst.dst, rst[TCP].flags, rst[TCP].ack) == ("lan", SERVER, CLIENT, "RA", 4243)
    drops = w.of(Drop)
    assert [(d.reason, d.acl, d.origin.line, d.message) for d in drops] == [
        (DropReason.ACL_DROP, "filter/FORWARD", 11, "rejected with icmp-port-unreachable"),
        (DropReason.ACL_DROP, "filter/FORWARD", 12, "rejected with tcp-reset"),
    ]
    assert [e.reason for e in w.of(IcmpSent)] == ["REJECT --reject-with icmp-port-unreachable"]
    # A rejected flow never becomes a connection.
    assert w.listing() == [] and not w.of(ConnBuilt)


def test_an_invalid_answer_to_a_masqueraded_connection_is_not_translated():
    w = Link.iptables(NAT.replace("iptables -P FORWARD DROP\n", "iptables -P INPUT ACCEPT\n"))
    w.send("lan", tcp(CLIENT, SERVER, 40000, 443, SYN, 100))
    w.send("wan", tcp(SERVER, PUBLIC, 443, 40000, SYN | ACK, 500, 101))
    w.send("lan", tcp(CLIENT, SERVER, 40000, 443, ACK, 101, 501))
    # An ACK for data never sent: conntrack says INVALID, the packet has no connection, so nothing
    # translates it; it is for the box's own address and ends in INPUT (Linux behaves the same).
    assert w.send("wan", tcp(SERVER, PUBLIC, 443, 40000, ACK, 501, 999_999)).pairs() == []
    assert w.fw.netfilter.counters("filter")[("INPUT", -1)] == (1, 40)
    assert w.fw.stats["to_the_box"] == 1


def test_log_lines_go_to_the_replay_log(tmp_path):
    log_rule = 'iptables -A FORWARD -i eth1 -j LOG --log-prefix "out: "\n'
    text = NAT.replace(
        "iptables -A FORWARD -i eth1 -j ACCEPT\n", log_rule + "iptables -A FORWARD -i eth1 -j ACCEPT\n"
    )
    cap = tmp_path / "c.pcap"
    with PcapWriter(cap) as w:
        w.write(tcp(CLIENT, SERVER, 40000, 443, SYN, 100), 1_700_000_000.25)
    replay(parse(text, "t.rules"), [(None, cap)], tmp_path / "out", hostname="fw")
    log = (tmp_path / "out" / "log.txt").read_text().splitlines()
    assert log[0] == (
        "Nov 14 22:13:20 fw kernel: out: IN=eth1 OUT=eth0 MAC= SRC=192.168.0.10 DST=203.0.113.5 LEN=40 "
        "TOS=0x00 PREC=0x00 TTL=63 ID=0 PROTO=TCP SPT=40000 DPT=443 WINDOW=64240 RES=0x00 SYN URGP=0 "
    )
    assert log[1] == (
        "[1700000000.250000]\t    [NEW] tcp      6 120 SYN_SENT src=192.168.0.10 dst=203.0.113.5 sport=40000 "
        "dport=443 [UNREPLIED] src=203.0.113.5 dst=198.51.100.7 sport=443 dport=40000"
    )
    records = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == ["NfLog", "ConnBuilt", "CtEvent"]
    assert records[0]["origin"]["line"] == 13


def test_an_icmp_error_about_a_masqueraded_flow_is_related_and_translated_inside():
    w = Link.iptables(NAT)
    ((_, out),) = w.send("lan", udp(CLIENT, SERVER, 5353, 53)).pairs()
    err = craft.icmp_error(4, ip("198.51.100.1"), ip(PUBLIC), 11, 0, bytes(out))
    ((oif, back),) = w.send("wan", err).pairs()
    assert (oif, back.src, back.dst) == ("lan", "198.51.100.1", CLIENT) and checksums_ok(back)
    assert (back[IPerror].src, back[IPerror].dst, back[UDPerror].sport) == (CLIENT, SERVER, 5353)
    # An error about nothing tracked is INVALID; here the policy drops it as any other.
    stray = craft.icmp_error(4, ip("198.51.100.1"), ip(CLIENT), 11, 0, bytes(udp(CLIENT, SERVER, 1, 2)))
    assert w.send("wan", stray).pairs() == []
    (drop,) = w.of(Drop)
    assert (drop.reason, drop.message) == (DropReason.TCP_INVALID, "icmp error for no tracked connection")


def test_a_tcp_error_inside_an_error_quotes_the_real_client():
    w = Link.iptables(NAT)
    ((_, syn),) = w.send("lan", tcp(CLIENT, SERVER, 40000, 443, SYN, 100)).pairs()
    unreach = craft.icmp_error(4, ip(SERVER), ip(PUBLIC), 3, 3, bytes(syn))
    ((_, back),) = w.send("wan", unreach).pairs()
    assert (back.src, back.dst, back[IPerror].src, back[TCPerror].sport) == (SERVER, CLIENT, CLIENT, 40000)


# --------------------------------------------------------------------------------------------------
# FTP: the helper, RELATED, and the ruleset deciding (seed 004)

SEED004 = (CONFIGS / "seed004-netmax.rules").read_text()


def ftp_login(w: Link, client="192.168.0.10", server="203.0.113.21"):
    """Open a control connection from ``client`` to ``server`` port 21 and log in; returns the two
    ends' send functions (each end acknowledges what the other sent)."""
    c, s, m = client, server, "198.51.100.7"
    seq = {"c": 1000, "s": 5000}

    def c_send(flags, payload=b""):
        out = w.send("inside", tcp(c, s, 40000, 21, flags, seq["c"], seq["s"], payload)).pairs()
        seq["c"] += len(payload) + (1 if flags & SYN else 0)
        return out

    def s_send(flags, payload=b""):
        out = w.send("outside", tcp(s, m, 21, 40000, flags, seq["s"], seq["c"], payload)).pairs()
        seq["s"] += len(payload) + (1 if flags & SYN else 0)
        return out

    c_send(SYN)
    s_send(SYN | ACK)
    c_send(ACK)
    s_send(PSH | ACK, b"220 ready\r\n")
    c_send(PSH | ACK, b"USER anonymous\r\n")
    s_send(PSH | ACK, b"230 in\r\n")
    return c_send, s_send


def active_ftp(w: Link) -> list:
    """Announce a data port with PORT; the server then connects from port 20. Returns what left for
    the data connection's SYN."""
    c_send, s_send = ftp_login(w)
    ((_, port),) = c_send(PSH | ACK, b"PORT 192,168,0,10,4,1\r\n")
    assert bytes(port[TCP].payload) == b"PORT 198,51,100,7,4,1\r\n"  # same length: no sequence shift
    s_send(PSH | ACK, b"200 ok\r\n")
    return w.send("outside", tcp("203.0.113.21", "198.51.100.7", 20, 1025, SYN, 77)).pairs()


def test_seed004_lets_the_announced_data_connection_in_as_related():
    w = Link.iptables(SEED004)
    ((oif, data),) = active_ftp(w)
    assert (oif, data.src, data.dst, data[TCP].dport) == ("inside", "203.0.113.21", "192.168.0.10", 1025)
    assert not w.of(Drop)
    # As conntrack -L shows it on Linux: the master names its helper and counts the data connection's
    # reference; the data connection has no helper of its own.
    control_row, data_row = w.listing()
    assert control_row.endswith("[ASSURED] mark=0 helper=ftp use=2")
    assert data_row == (
        "tcp      6 120 SYN_SENT src=203.0.113.21 dst=198.51.100.7 sport=20 dport=1025 [UNREPLIED] "
        "src=192.168.0.10 dst=203.0.113.21 sport=1025 dport=20 mark=0 use=1"
    )
    assert w.ct_lines()[0].endswith(
        "[UNREPLIED] src=203.0.113.21 dst=198.51.100.7 sport=21 dport=40000 helper=ftp"
    )
    # The rule that let it in is the ESTABLISHED,RELATED one (the policy would have dropped it).
    control, data = w.of(ConnBuilt)
    assert data.origin.text == "iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
    assert (data.initiator.address, data.responder.address, data.responder.port) == (
        "203.0.113.21",
        "192.168.0.10",
        1025,
    )


def test_without_a_related_rule_the_data_connection_is_dropped_not_bypassed():
    w = Link.iptables(SEED004.replace("--ctstate ESTABLISHED,RELATED", "--ctstate ESTABLISHED"))
    assert active_ftp(w) == []
    (drop,) = w.of(Drop)
    assert (drop.reason, drop.acl, drop.detail["ctstate"]) == (
        DropReason.ACL_DROP,
        "filter/FORWARD",
        "RELATED",
    )
    assert drop.origin.text == "iptables -P FORWARD DROP"
    # -m helper matches connections expected by an ftp master.
    w = Link.iptables(
        SEED004.replace("--ctstate ESTABLISHED,RELATED", "--ctstate ESTABLISHED")
        + "iptables -I FORWARD -m helper --helper ftp -j ACCEPT\n"
    )
    ((oif, _),) = active_ftp(w)
    assert oif == "inside" and w.fw.netfilter.counters("filter")[("FORWARD", 0)] == (1, 40)


# --------------------------------------------------------------------------------------------------
# Timeouts from the settings, expiry, and the reference tracker agreeing with the engine


def test_udp_becomes_a_stream_and_timeouts_come_from_the_settings():
    # Seed 004's ipchains -M -S 7200 10 160: established 7200 s, UDP 160 s.
    w = Link.iptables(NAT + "ipchains -M -S 7200 10 160\n")
    w.send("lan", udp(CLIENT, SERVER, 5000, 53))
    w.send("wan", udp(SERVER, PUBLIC, 53, 5000))
    assert w.listing()[0].startswith("udp      17 160 src=192.168.0.10 ")
    assert "[ASSURED]" not in w.listing()[0]  # answered, not yet a stream
    w.send("lan", udp(CLIENT, SERVER, 5000, 53), dt=3.0).pairs()  # still going 2 s later: ASSURED
    assert "[ASSURED]" in w.listing()[0]
    w.send("lan", tcp(CLIENT, SERVER, 40000, 21, SYN, 1))
    w.send("wan", tcp(SERVER, PUBLIC, 21, 40000, SYN | ACK, 9, 2))
    w.send("lan", tcp(CLIENT, SERVER, 40000, 21, ACK, 2, 10))
    assert any(ln.startswith("tcp      6 7200 ESTABLISHED ") for ln in w.listing())
    w.wait(161.0)
    destroyed = [e for e in w.of(CtEvent) if e.type == "DESTROY"]
    assert [(e.protocol, e.timeout) for e in destroyed] == [(17, None)]


def test_the_engine_counts_as_the_reference_tracker_does_without_nat(tmp_path):
    from test_seed003_replay import STRICT, through_the_pix

    cap = through_the_pix(tmp_path)
    policy = parse(STRICT, "seed003")
    ref = NetfilterReplay(policy)
    ref.run([(None, str(cap))])
    eng = Firewall(parse(STRICT, "seed003"))
    replay(eng.policy, [(None, cap)], tmp_path / "out", firewall=eng)
    assert eng.netfilter.counters("filter") == ref.nf.counters("filter")


def test_linux_lines_for_events_other_formats_leave_alone():
    w = Link.iptables(NAT)
    w.send("lan", tcp(CLIENT, SERVER, 40000, 443, SYN, 100))
    lines = [ln for ev in w.events for ln in format_event(ev, timestamp=False)]
    assert lines == [conntrack_line(w.of(CtEvent)[0])]  # ConnBuilt has no Linux line
    assert format_event(NfLog(0.0, "x IN=a OUT=b "), timestamp=False) == ["kernel: x IN=a OUT=b "]


@pytest.mark.parametrize("notrack", [False, True])
def test_untracked_packets_are_not_translated(notrack):
    raw = "iptables -t raw -A PREROUTING -p udp --dport 514 -j CT --notrack\n" if notrack else ""
    w = Link.iptables(NAT + raw)
    ((_, out),) = w.send("lan", udp(CLIENT, SERVER, 5514, 514)).pairs()
    assert out.src == (CLIENT if notrack else PUBLIC)
    assert len(w.listing()) == (0 if notrack else 1)


def test_payload_and_checksums_survive_translation():
    w = Link.iptables(NAT)
    w.send("lan", tcp(CLIENT, SERVER, 40000, 443, SYN, 100))
    w.send("wan", tcp(SERVER, PUBLIC, 443, 40000, SYN | ACK, 500, 101))
    ((_, data),) = w.send(
        "lan", tcp(CLIENT, SERVER, 40000, 443, PSH | ACK, 101, 501, b"GET / HTTP/1.0\r\n\r\n")
    ).pairs()
    assert bytes(data[Raw].load) == b"GET / HTTP/1.0\r\n\r\n" and checksums_ok(data)


SIX = """\
#@statewall interface lan dev eth1 address 192.168.0.1/24 address fd00::1/64
#@statewall interface wan dev eth0 address 198.51.100.7/24 address 2001:db8:ff::7/64
#@statewall route ::/0 via 2001:db8:ff::1 dev wan
ip6tables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
ip6tables -A INPUT -m state --state UNTRACKED -j LOG --log-prefix "untracked: "
"""


def test_ipv6_masquerade_echo_and_neighbour_discovery_left_untracked():
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6ND_NS

    w = Link.iptables(SIX)
    ((_, req),) = w.send("lan", craft.icmp_echo(6, ip("fd00::10"), ip("2001:db8:5::5"), 5, 1, b"x")).pairs()
    assert (req.src, req.hlim) == ("2001:db8:ff::7", 63)
    ((_, rep),) = w.send(
        "wan", craft.icmp_echo(6, ip("2001:db8:5::5"), ip("2001:db8:ff::7"), 5, 1, b"x", reply=True)
    ).pairs()
    assert rep.dst == "fd00::10" and rep[ICMPv6EchoReply].id == 5
    assert w.ct_lines()[0] == (
        "    [NEW] icmpv6   58 30 src=fd00::10 dst=2001:db8:5::5 type=128 code=0 id=5 [UNREPLIED] "
        "src=2001:db8:5::5 dst=2001:db8:ff::7 type=129 code=0 id=5"
    )
    # Neighbour discovery is never tracked (nf_conntrack_proto_icmpv6's noct_valid_new).
    ns = IPv6(src="fd00::10", dst="fd00::1", hlim=255) / ICMPv6ND_NS(tgt="fd00::1")
    assert w.send("lan", bytes(ns)).pairs() == []
    (log,) = w.of(NfLog)
    assert log.text.startswith("untracked: IN=eth1 OUT= MAC= SRC=fd00:0000:0000:0000:0000:0000:0000:0010 ")
    assert len(w.listing()) == 1


def test_a_reload_keeps_the_connections_and_their_translation_under_new_rules():
    from statewall.live.ctl import reload_firewall

    w = Link.iptables(NAT)
    w.send("lan", tcp(CLIENT, SERVER, 40000, 443, SYN, 100))
    report = reload_firewall(w.fw, parse(NAT.replace("-i eth1 -j ACCEPT", "-i eth1 -p udp -j ACCEPT"), "new"))
    assert report.unclassified == [] and report.connections == 1
    # The answer still finds its connection and is translated back, counted by the new rules.
    ((oif, back),) = w.send("wan", tcp(SERVER, PUBLIC, 443, 40000, SYN | ACK, 500, 101)).pairs()
    assert (oif, back.dst) == ("lan", CLIENT)
    assert w.fw.netfilter.counters("filter")[("FORWARD", 0)] == (1, 40)
    # A new TCP connection from inside now meets the policy.
    assert w.send("lan", tcp(CLIENT, SERVER, 40001, 443, SYN, 100)).pairs() == []


def test_a_passive_data_connection_follows_its_master_through_the_masquerade():
    w = Link.iptables(SEED004)
    c_send, s_send = ftp_login(w)
    c_send(PSH | ACK, b"PASV\r\n")
    s_send(PSH | ACK, b"227 Entering Passive Mode (203,0,113,21,200,10)\r\n")
    # The client's own connection to the announced port: RELATED, and translated as its master is
    # (nf_nat_follow_master), although no nat rule is consulted for it.
    ((oif, syn),) = w.send("inside", tcp("192.168.0.10", "203.0.113.21", 40001, 51210, SYN, 300)).pairs()
    assert (oif, syn.src, syn[TCP].sport, syn[TCP].dport) == ("outside", "198.51.100.7", 40001, 51210)
    ((oif, back),) = w.send(
        "outside", tcp("203.0.113.21", "198.51.100.7", 51210, 40001, SYN | ACK, 9, 301)
    ).pairs()
    assert (oif, back.dst, back[TCP].dport) == ("inside", "192.168.0.10", 40001)
    control, data = w.of(ConnBuilt)
    assert data.origin.text == "iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
    assert w.fw.netfilter.counters("nat")[("POSTROUTING", 0)] == (1, 40)  # the control SYN only
