"""FTP inspection, told as the articles tell it: given this configuration and this FTP conversation,
expect these rewrites, these data connections, these drops.

Seed 000's PIX: the client 10.0.0.2 on ``inside`` behind PAT to the outside address 192.168.9.30, the
server 192.168.9.2 on ``outside``. Packets are built with scapy and the engine's output decoded with
scapy, so the payload rewrites, the sequence adjustment and the checksums are checked by an
independent codec. Each end acknowledges what it actually received (the firewall's output), as a
real TCP would, so the sequence adjustment is exercised both ways.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from fixtures import CLIENT, MAPPED, PIX_INTERFACES, PIX_NO_NAT, PIX_PAT, PIX_ROUTE, SERVER, kinds
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import (
    ConnBuilt,
    ConnTeardown,
    Drop,
    DropReason,
    FtpLowPort,
    XlateBuilt,
    XlateTeardown,
)
from statewall.expect import EXPECT_TIMEOUT
from statewall.inspect import FtpTransfer, effective_inspections, set_data_refreshes_control
from statewall.logfmt.asa import format_event
from statewall.policy import Inspection
from statewall.seqadj import SeqAdj
from traffic import Conversation, Host, Link

# The server inside behind a static translation, the client outside (8.2: access lists name mapped
# addresses).
STATIC_SERVER = (
    "ASA Version 8.2(1)\n"
    + PIX_INTERFACES
    + """\
static (inside,outside) 192.168.9.40 10.0.0.5 netmask 255.255.255.255
access-list OUTSIDE_IN extended permit tcp any host 192.168.9.40 eq ftp
access-group OUTSIDE_IN in interface outside
"""
    + PIX_ROUTE
)
GLOBAL_POLICY = (
    "policy-map global_policy\n class inspection_default\n  {}\nservice-policy global_policy global\n"
)
NO_INSPECT = GLOBAL_POLICY.format("no inspect ftp")
STRICT = GLOBAL_POLICY.format("inspect ftp strict")


def ftp(
    fw: Firewall,
    *,
    a_addr=CLIENT,
    a_port=38003,
    a_iface="inside",
    a_to=SERVER,
    b_addr=SERVER,
    b_port=21,
    b_iface="outside",
    b_to=MAPPED,
    b_to_port=None,
    now=100.0,
) -> Conversation:
    """One TCP conversation through the firewall; each end acknowledges what it received.

    ``a`` is the initiator (arriving on ``a_iface`` from ``a_addr``), ``b`` the responder; ``a_to`` is
    the address ``a`` sends to and ``b_to`` the address ``b`` answers to (the mapped ones under NAT).
    """
    return Conversation(
        Link(fw, now),
        Host(a_addr, a_port, a_iface, to=a_to, to_port=b_port, isn=1000, window=65535),
        Host(b_addr, b_port, b_iface, to=b_to, to_port=b_to_port or a_port, isn=5000, window=65535),
    )


def checksums_ok(p) -> bool:
    ref = p.__class__(bytes(p))
    if isinstance(p, IP):
        del ref.chksum
    del ref[TCP].chksum
    ref = p.__class__(bytes(ref))
    return ref[TCP].chksum == p[TCP].chksum and (not isinstance(p, IP) or ref.chksum == p.chksum)


def login(s: Conversation):
    s.open()
    s.send("b", "PA", b"220 ready\r\n")
    s.send("a", "PA", b"USER anonymous\r\n")
    s.send("b", "PA", b"331 ok\r\n")
    s.send("a", "PA", b"PASS x\r\n")
    s.send("b", "PA", b"230 in\r\n")


def data_syn(fw, src, sport, iface, dst, dport, now, v6=False):
    l3 = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
    res = fw.receive(iface, bytes(l3 / TCP(sport=sport, dport=dport, flags="S", seq=77)), now)
    return res, [(oif, (IPv6 if v6 else IP)(bytes(d))) for oif, d in res.packets]


# -------------------------------------------------------------------------------------------------
# Which connections are inspected


def test_asa_inspects_ftp_on_21_by_default_and_no_inspect_ftp_turns_it_off():
    assert [(i.protocol, i.ports, i.strict) for i in effective_inspections(parse(PIX_PAT))] == [
        ("ftp", (21,), False)
    ]
    assert effective_inspections(parse(PIX_PAT + NO_INSPECT)) == []
    assert [i.strict for i in effective_inspections(parse(PIX_PAT + STRICT))] == [True]


def test_explicit_inspections_win_and_other_dialects_have_no_default():
    policy = parse(PIX_PAT)
    policy.inspections = [Inspection("ftp", (2121,))]
    assert [i.ports for i in effective_inspections(policy)] == [(2121,)]
    policy.inspections = [Inspection("ftp", (21,), enabled=False)]
    assert effective_inspections(policy) == []
    policy.inspections = []
    policy.dialect = "iptables"
    assert effective_inspections(policy) == []


# -------------------------------------------------------------------------------------------------
# Active FTP behind PAT: PORT rewritten, sequence adjusted, data connection let in


def test_port_behind_pat_is_rewritten_and_its_data_connection_comes_back_to_the_client():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    (out,) = s.send("a", "PA", b"PORT 10,0,0,2,4,1\r\n")
    # 10,0,0,2 (8 characters) became 192,168,9,30 (12): the segment grew by four bytes.
    assert bytes(out[TCP].payload) == b"PORT 192,168,9,30,4,1\r\n"
    assert (out.src, out[TCP].sport) == (MAPPED, 38003)
    assert checksums_ok(out)
    s.send("b", "PA", b"200 PORT ok\r\n")
    s.send("a", "PA", b"RETR f.txt\r\n")
    s.send("b", "PA", b"150 opening\r\n")

    res, outs = data_syn(fw, SERVER, 20, "outside", MAPPED, 1025, s.now + 0.01)
    assert [(oif, p.dst, p[TCP].dport, p[TCP].sport) for oif, p in outs] == [("inside", CLIENT, 1025, 20)]
    built = kinds(res.events, ConnBuilt)
    assert len(built) == 1 and built[0].direction == "inbound"
    assert built[0].responder.mapped_address == MAPPED and built[0].responder.address == CLIENT
    assert kinds(res.events, Drop) == []
    # The client answers through the translation the PORT reserved.
    syn_seq = outs[0][1][TCP].seq
    back = fw.receive(
        "inside",
        bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=1025, dport=20, flags="SA", ack=syn_seq + 1)),
        s.now + 0.02,
    )
    (bo,) = [IP(bytes(d)) for _, d in back.packets]
    assert (bo.src, bo[TCP].sport, bo.dst) == (MAPPED, 1025, SERVER)
    assert kinds(s.events, Drop) == []


def test_sequence_adjustment_after_a_longer_port_both_ways_and_in_sack_blocks():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    port_seq = s.a.nxt
    s.send("a", "PA", b"PORT 10,0,0,2,4,1\r\n")
    # The server acknowledges the 23 bytes it received; the client must see its own 19 acknowledged.
    (ack,) = s.send("b", "PA", b"200 PORT ok\r\n")
    assert s.b.rcv == s.wire("a", port_seq + 23)
    assert ack[TCP].ack == port_seq + 19
    # Every later client segment is four further on, outside.
    (lst,) = s.send("a", "PA", b"LIST\r\n")
    assert lst[TCP].seq == s.wire("a", port_seq + 19 + 4)
    assert lst[TCP].ack == s.b.nxt  # the server's sequence space was not touched
    # A SACK block from the server names bytes in the shifted space; the client gets them unshifted.
    left, right = s.wire("a", port_seq + 23), s.wire("a", port_seq + 29)
    (sacked,) = s.send("b", "A", ack=left, sack=(left, right))
    opts = dict(sacked[TCP].options)
    assert sacked[TCP].ack == port_seq + 19
    assert opts["SAck"] == (port_seq + 19, port_seq + 25)
    assert checksums_ok(sacked)
    # A retransmission of the PORT segment is rewritten the same way, without shifting twice.
    (again,) = s.send("a", "PA", b"PORT 10,0,0,2,4,1\r\n", seq=port_seq)
    assert bytes(again[TCP].payload) == b"PORT 192,168,9,30,4,1\r\n"
    assert again[TCP].seq == s.wire("a", port_seq)
    (nxt,) = s.send("a", "PA", b"NOOP\r\n")
    assert nxt[TCP].seq == s.wire("a", port_seq + 19 + 6 + 4)
    s.send("b", "PA", b"200 ok\r\n")
    # The tracker undid every shift: nothing was INVALID, nothing dropped.
    assert kinds(s.events, Drop) == [] and not fw.drops
    helper = fw.conns.by_id[1].helper
    assert helper.seqadj.ways[0].offset_after == 4 and helper.seqadj.ways[1].offset_after == 0


def test_port_split_across_two_segments_is_rewritten_as_one_line():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    start = s.a.nxt
    (first,) = s.send("a", "PA", b"PORT 10,0,0,")
    # The partial command is withheld: the segment leaves without it.
    assert bytes(first[TCP].payload) == b"" and first[TCP].seq == s.wire("a", start)
    (second,) = s.send("a", "PA", b"2,4,1\r\n")
    assert second[TCP].seq == s.wire("a", start)
    assert bytes(second[TCP].payload) == b"PORT 192,168,9,30,4,1\r\n"
    assert s.stream("outside").endswith(b"PASS x\r\nPORT 192,168,9,30,4,1\r\n")
    (ack,) = s.send("b", "PA", b"200 PORT ok\r\n")
    assert ack[TCP].ack == start + 19
    (nxt,) = s.send("a", "PA", b"LIST\r\n")
    assert nxt[TCP].seq == s.wire("a", start + 19 + 4)
    _, outs = data_syn(fw, SERVER, 20, "outside", MAPPED, 1025, s.now + 0.01)
    assert [(oif, p.dst, p[TCP].dport) for oif, p in outs] == [("inside", CLIENT, 1025)]
    assert kinds(s.events, Drop) == []


def test_split_line_that_is_not_a_port_command_is_parsed_but_not_withheld():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    (first,) = s.send("a", "PA", b"RETR some")
    assert bytes(first[TCP].payload) == b"RETR some"
    (second,) = s.send("a", "PA", b"file.txt\r\n")
    assert bytes(second[TCP].payload) == b"file.txt\r\n"
    s.send("b", "PA", b"150 go\r\n")
    s.send("b", "PA", b"226 done\r\n")
    (t,) = kinds(s.events, FtpTransfer)
    assert format_event(t, timestamp=False) == [
        "%ASA-6-303002: FTP connection from inside:10.0.0.2/38003 to outside:192.168.9.2/21, "
        "user anonymous Retrieved file somefile.txt"
    ]


def test_withheld_bytes_retransmitted_alone_are_let_go_unrewritten():
    # A Nagle sender waits for the acknowledgement of the withheld bytes and sends them again.
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    start = s.a.nxt
    s.send("a", "PA", b"PORT 10,0,0,")
    (again,) = s.send("a", "PA", b"PORT 10,0,0,", seq=start)
    assert bytes(again[TCP].payload) == b"PORT 10,0,0,"
    (rest,) = s.send("a", "PA", b"2,4,1\r\n")
    assert bytes(rest[TCP].payload) == b"2,4,1\r\n"
    assert fw.conns.by_id[1].helper.stats["unrewritten"] == 1
    assert len(fw.expect) == 0


def test_a_port_reusing_a_taken_pat_port_gets_another_one():
    fw = Firewall(parse(PIX_PAT))
    # Another inside host holds 192.168.9.30/1025 through PAT.
    fw.receive("inside", bytes(IP(src="10.0.0.3", dst=SERVER) / TCP(sport=1025, dport=80, flags="S")), 99.0)
    s = ftp(fw)
    login(s)
    (out,) = s.send("a", "PA", b"PORT 10,0,0,2,4,1\r\n")
    assert bytes(out[TCP].payload) == b"PORT 192,168,9,30,4,2\r\n"
    res, outs = data_syn(fw, SERVER, 20, "outside", MAPPED, 1026, s.now + 0.01)
    assert [(oif, p.dst, p[TCP].dport) for oif, p in outs] == [("inside", CLIENT, 1025)]
    assert [x.mapped_port for x in kinds(s.events, XlateBuilt)] == [38003, 1026]


def test_eprt_behind_pat_is_rewritten_as_nf_nat_ftp_prints_it():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    (out,) = s.send("a", "PA", b"EPRT |1|10.0.0.2|6275|\r\n")
    assert bytes(out[TCP].payload) == b"EPRT |1|192.168.9.30|6275|\r\n"
    _, outs = data_syn(fw, SERVER, 20, "outside", MAPPED, 6275, s.now + 0.01)
    assert [(oif, p.dst, p[TCP].dport) for oif, p in outs] == [("inside", CLIENT, 6275)]


# -------------------------------------------------------------------------------------------------
# Refusals


def test_ftp_bounce_is_refused_and_logged_with_its_reason():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    outs = s.send("a", "PA", b"PORT 192,168,9,77,0,25\r\n")
    assert outs == []
    (drop,) = kinds(s.events, Drop)
    assert drop.reason is DropReason.INSPECT_FTP and drop.interface == "inside"
    assert (
        drop.message == "FTP bounce: PORT names 192.168.9.77, not the client 10.0.0.2 (on interface inside)"
    )
    assert fw.drops[DropReason.INSPECT_FTP] == 1
    assert len(fw.expect) == 0
    # Nothing waits for the named host's connection; the ASA ends the control connection (406002:
    # "drops the packet, terminates the connection, and logs the event").
    res, outs = data_syn(fw, SERVER, 20, "outside", MAPPED, 25, s.now + 0.01)
    assert outs == [] and kinds(res.events, Drop)[0].reason is not DropReason.INSPECT_FTP
    (td,) = kinds(s.events, ConnTeardown)
    assert td.reason == "Flow closed by inspection" and len(fw.conns) == 0


def test_227_naming_another_host_is_refused():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    s.send("a", "PA", b"PASV\r\n")
    assert s.send("b", "PA", b"227 Entering Passive Mode (10,0,0,9,4,1)\r\n") == []
    (drop,) = kinds(s.events, Drop)
    assert drop.reason is DropReason.INSPECT_FTP and drop.interface == "outside"
    assert drop.message.startswith("227 names 10.0.0.9, not the server 192.168.9.2")


def test_asa_refuses_a_port_below_1024_with_406001_and_closes_the_connection():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    assert s.send("a", "PA", b"PORT 10,0,0,2,0,25\r\n") == []
    (drop,) = kinds(s.events, Drop)
    assert drop.reason is DropReason.INSPECT_FTP and drop.message == "PORT announces port 25, below 1024"
    (low,) = kinds(s.events, FtpLowPort)
    assert format_event(low, timestamp=False) == [
        "%ASA-4-406001: FTP port command low port: 10.0.0.2/25 to 192.168.9.2 on interface inside"
    ]
    (td,) = kinds(s.events, ConnTeardown)
    assert td.reason == "Flow closed by inspection"
    assert len(fw.expect) == 0


def test_asa_refuses_a_227_naming_a_port_below_1024():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    s.send("a", "PA", b"PASV\r\n")
    assert s.send("b", "PA", b"227 Entering Passive Mode (192,168,9,2,0,22)\r\n") == []
    (low,) = kinds(s.events, FtpLowPort)
    assert (low.command, low.address, low.port, low.peer, low.interface) == (
        "227",
        "192.168.9.2",
        22,
        "192.168.9.30",  # the client as the server sees it (PAT)
        "outside",
    )
    assert kinds(s.events, ConnTeardown)


def test_the_iptables_dialect_expects_a_low_port_as_nf_conntrack_ftp_does():
    policy = parse(PIX_PAT)
    policy.dialect = "iptables"
    policy.inspections = [Inspection("ftp", (21,))]
    fw = Firewall(policy)
    s = ftp(fw)
    login(s)
    assert s.send("a", "PA", b"PORT 10,0,0,2,0,25\r\n")
    assert not kinds(s.events, FtpLowPort) and len(fw.expect) == 1


def test_strict_refuses_a_command_sent_before_the_previous_one_was_answered():
    fw = Firewall(parse(PIX_PAT + STRICT))
    s = ftp(fw)
    login(s)
    assert s.send("a", "PA", b"SYST\r\n")
    assert s.send("a", "PA", b"PWD\r\n") == []
    (drop,) = kinds(s.events, Drop)
    assert (
        drop.reason is DropReason.INSPECT_FTP and "before the previous command was answered" in drop.message
    )
    (td,) = kinds(s.events, ConnTeardown)
    assert td.reason == "Flow closed by inspection"
    assert len(fw.conns) == 0


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"PORT 10,0,0,2,4\r\n", "truncated PORT"),
        (b"NOOP\n", "not terminated by CR LF"),
        (b"USER a\rPORT 10,0,0,2,4,1\r\n", "embedded command"),
        (b"227 (10,0,0,2,4,1)\r\n", "reply code sent by the client"),
    ],
)
def test_strict_checks(line, why):
    fw = Firewall(parse(PIX_PAT + STRICT))
    s = ftp(fw)
    login(s)
    assert s.send("a", "PA", line) == []
    (drop,) = kinds(s.events, Drop)
    assert why in drop.message and kinds(s.events, ConnTeardown)


def test_without_strict_a_malformed_port_opens_nothing_and_passes():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    (out,) = s.send("a", "PA", b"PORT 10,0,0,2,4\r\n")
    assert bytes(out[TCP].payload) == b"PORT 10,0,0,2,4\r\n" and len(fw.expect) == 0


def test_the_iptables_dialect_drops_a_partial_match_as_nf_conntrack_ftp_does():
    policy = parse(PIX_PAT)
    policy.dialect = "iptables"
    policy.inspections = [Inspection("ftp", (21,))]
    fw = Firewall(policy)
    s = ftp(fw)
    login(s)
    assert s.send("a", "PA", b"PORT 10,0,0,2,4\r\n") == []
    (drop,) = kinds(s.events, Drop)
    assert drop.message == "partial matching of PORT command" and not kinds(s.events, ConnTeardown)


# -------------------------------------------------------------------------------------------------
# Passive FTP to a server behind static NAT; no NAT at all


def test_227_from_a_server_behind_static_nat_names_its_mapped_address():
    fw = Firewall(parse(STATIC_SERVER))
    s = ftp(
        fw,
        a_addr=SERVER,  # the client is outside here
        a_iface="outside",
        a_to="192.168.9.40",
        b_addr="10.0.0.5",
        b_iface="inside",
        b_to=SERVER,
        a_port=40000,
    )
    login(s)
    s.send("a", "PA", b"PASV\r\n")
    (out,) = s.send("b", "PA", b"227 Entering Passive Mode (10,0,0,5,195,80)\r\n")
    assert bytes(out[TCP].payload) == b"227 Entering Passive Mode (192,168,9,40,195,80)\r\n"
    # 10,0,0,5 -> 192,168,9,40: four bytes more in the server's direction.
    assert s.a.rcv == s.b.nxt + 4
    (lst,) = s.send("a", "PA", b"LIST\r\n")
    assert lst[TCP].ack == s.b.nxt  # the client acks what it got; the server sees its own space
    (reply,) = s.send("b", "PA", b"150 here\r\n")
    assert reply[TCP].seq == s.b.nxt - len(b"150 here\r\n") + 4
    # The client connects to the mapped address, not permitted by the access list: RELATED.
    res, outs = data_syn(fw, SERVER, 40001, "outside", "192.168.9.40", 50000, s.now + 0.01)
    assert [(oif, p.dst, p[TCP].dport, p.src) for oif, p in outs] == [("inside", "10.0.0.5", 50000, SERVER)]
    assert kinds(res.events, Drop) == []
    # 229 carries no address and the port is kept: nothing to rewrite.
    s.send("a", "PA", b"EPSV\r\n")
    (epsv,) = s.send("b", "PA", b"229 Entering Extended Passive Mode (|||50001|)\r\n")
    assert bytes(epsv[TCP].payload) == b"229 Entering Extended Passive Mode (|||50001|)\r\n"
    _, outs = data_syn(fw, SERVER, 40002, "outside", "192.168.9.40", 50001, s.now + 0.02)
    assert [(oif, p.dst, p[TCP].dport) for oif, p in outs] == [("inside", "10.0.0.5", 50001)]
    assert kinds(s.events, Drop) == []


def test_without_nat_nothing_is_rewritten_and_the_active_data_connection_is_related():
    fw = Firewall(parse(PIX_NO_NAT))
    s = ftp(fw, b_to=CLIENT)
    login(s)
    (out,) = s.send("a", "PA", b"PORT 10,0,0,2,4,1\r\n")
    assert bytes(out[TCP].payload) == b"PORT 10,0,0,2,4,1\r\n"
    # Lower to higher security without an access list: only the expectation lets it in.
    _, outs = data_syn(fw, SERVER, 20, "outside", CLIENT, 1025, s.now)
    assert [(oif, p.dst, p[TCP].dport) for oif, p in outs] == [("inside", CLIENT, 1025)]
    # Used once: a second connection to the same port is an ordinary inbound one, refused.
    res, outs = data_syn(fw, SERVER, 21000, "outside", CLIENT, 1025, s.now + 1)
    assert outs == [] and kinds(res.events, Drop)[0].reason is DropReason.ACL_DROP


def test_without_inspection_the_active_data_connection_is_refused():
    fw = Firewall(parse(PIX_NO_NAT + NO_INSPECT))
    s = ftp(fw, b_to=CLIENT)
    login(s)
    s.send("a", "PA", b"PORT 10,0,0,2,4,1\r\n")
    res, outs = data_syn(fw, SERVER, 20, "outside", CLIENT, 1025, s.now)
    assert outs == [] and kinds(res.events, Drop)


def test_eprt_and_epsv_over_ipv6():
    cfg = PIX_NO_NAT.replace(
        " ip address 192.168.9.30 255.255.255.0\n",
        " ip address 192.168.9.30 255.255.255.0\n ipv6 address 2001:db8:9::1/64\n",
    ).replace(
        " ip address 10.0.0.1 255.255.255.0\n",
        " ip address 10.0.0.1 255.255.255.0\n ipv6 address 2001:db8:1::1/64\n",
    )
    fw = Firewall(parse(cfg + "ipv6 route outside ::/0 2001:db8:9::2\n"))
    c, srv = "2001:db8:1::2", "2001:db8:9::2"
    s = ftp(fw, a_addr=c, a_to=srv, b_addr=srv, b_to=c)
    login(s)
    (out,) = s.send("a", "PA", f"EPRT |2|{c}|49189|\r\n".encode())
    assert bytes(out[TCP].payload) == f"EPRT |2|{c}|49189|\r\n".encode()
    _, outs = data_syn(fw, srv, 20, "outside", c, 49189, s.now, v6=True)
    assert [(oif, p.dst, p[TCP].dport) for oif, p in outs] == [("inside", c, 49189)]
    assert s.send("a", "PA", b"EPRT |2|2001:db8:1::99|49190|\r\n") == []
    assert "FTP bounce" in kinds(s.events, Drop)[0].message


# -------------------------------------------------------------------------------------------------
# Lifetimes: expectations expire, data keeps the control connection alive (seed 004)


def test_an_unused_expectation_expires_and_frees_its_translation():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    s.send("a", "PA", b"PORT 10,0,0,2,4,1\r\n")
    assert len(fw.expect) == 1
    res = fw.advance(s.now + EXPECT_TIMEOUT + 1)
    assert len(fw.expect) == 0
    # The reserved PAT slot for 1025 now idles out after pat-xlate (30 s).
    res = fw.advance(s.now + EXPECT_TIMEOUT + 32)
    assert [x.mapped_port for x in kinds(res.events, XlateTeardown)] == [1025]
    _, outs = data_syn(fw, SERVER, 20, "outside", MAPPED, 1025, s.now + EXPECT_TIMEOUT + 40)
    assert outs == []


def test_a_new_port_replaces_the_unused_previous_expectation():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    s.send("a", "PA", b"PORT 10,0,0,2,4,1\r\n")
    s.send("b", "PA", b"200 ok\r\n")
    s.send("a", "PA", b"PORT 10,0,0,2,4,2\r\n")
    assert [(e.dport, e.real_dport) for e in fw.expect] == [(1026, 1026)]


def test_expectations_go_with_their_control_connection():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    s.send("a", "PA", b"PORT 10,0,0,2,4,1\r\n")
    s.send("a", "RA")
    assert len(fw.conns) == 0 and len(fw.expect) == 0


@pytest.mark.parametrize("refresh", [True, False], ids=["ip_masq_ftp", "netfilter"])
def test_data_activity_keeps_the_control_connection_alive(refresh):
    policy = parse(PIX_PAT + "timeout conn 0:05:00\n")
    set_data_refreshes_control(policy, refresh)
    assert [(i.ports, i.data_refreshes_control) for i in policy.inspections] == [((21,), refresh)]
    fw = Firewall(policy)
    s = ftp(fw)
    login(s)
    s.send("a", "PA", b"PASV\r\n")
    s.send("b", "PA", b"227 Entering Passive Mode (192,168,9,2,195,80)\r\n")
    s.send("a", "PA", b"RETR big.iso\r\n")
    s.send("b", "PA", b"150 go\r\n")
    d = ftp(fw, a_port=40000, b_port=50000, b_to=MAPPED, now=s.now)
    d.open()
    # Ten minutes of data and nothing on the control connection: twice the idle timeout.
    timers = []
    for _ in range(20):
        d.now += 30.0
        timers += fw.advance(d.now).events
        d.send("b", "PA", b"x" * 100)
        d.send("a", "A")
    s.now = d.now
    if refresh:
        assert 1 in fw.conns.by_id and kinds(timers, ConnTeardown) == []
        (done,) = s.send("b", "PA", b"226 done\r\n")
        assert bytes(done[TCP].payload) == b"226 done\r\n"
    else:
        # Seed 004's failure: the control connection idles out under the transfer; its 226 is lost.
        assert [(t.conn_id, t.reason) for t in kinds(timers, ConnTeardown)] == [(1, "Idle Timeout")]
        assert s.send("b", "PA", b"226 done\r\n") == []


# -------------------------------------------------------------------------------------------------
# seqadj on its own: the kernel's rules


def test_seqadj_records_a_change_once_and_keeps_the_previous_offset_for_older_data():
    sa = SeqAdj()
    assert sa.set(0, 1000, 4) and sa.ways[0].offset_after == 4
    assert not sa.set(0, 1000, 4)  # the same segment retransmitted: not counted twice
    assert sa.seq_offset(0, 1000) == 0 and sa.seq_offset(0, 1001) == 4
    assert sa.set(0, 2000, -2)
    assert (sa.ways[0].offset_before, sa.ways[0].offset_after) == (4, 2)
    assert sa.seq_offset(0, 1500) == 4 and sa.seq_offset(0, 2500) == 2
    # An ack from the other side for byte 2010 (shifted to 2012) is undone with the right offset.
    assert sa.ack_offset(1, 2012) == 2
    # Wrap-around: positions compare modulo 2**32.
    sb = SeqAdj()
    sb.set(1, 0xFFFFFFF0, 3)
    assert sb.seq_offset(1, 0x10) == 3 and sb.seq_offset(1, 0xFFFFFFE0) == 0


def test_a_line_too_long_to_be_a_command_is_forwarded_and_not_parsed():
    fw = Firewall(parse(PIX_PAT))
    s = ftp(fw)
    login(s)
    (first,) = s.send("a", "PA", b"P" + b"x" * 1100)
    assert bytes(first[TCP].payload) == b"P" + b"x" * 1100
    # The continuation is not a line start even though it reads like a command.
    (second,) = s.send("a", "PA", b"PORT 10,0,0,2,4,1")
    assert bytes(second[TCP].payload) == b"PORT 10,0,0,2,4,1"
    (third,) = s.send("a", "PA", b"\r\nNOOP\r\n")
    assert bytes(third[TCP].payload) == b"\r\nNOOP\r\n" and len(fw.expect) == 0
