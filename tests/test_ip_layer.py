"""The IP layer as each box has it: fragments, addresses never forwarded as unicast, header checksums.

Given the same small network in both dialects - ``inside`` 10.1.1.0/24 (security 100), ``outside``
192.0.2.0/24 with the default route, IPv6 2001:db8:1::/64 inside and 2001:db8:2::/64 outside - and
this traffic crafted with scapy, expect what an ASA or a Linux router would do: the fragments that
leave, the drop reason and log line, and no ICMP error where none may be sent.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.packet import Raw

from fixtures import kinds
from statewall.config import parse_policy
from statewall.engine import Firewall
from statewall.events import ConnBuilt, Drop, LocalDelivery
from statewall.logfmt.asa import format_event

ASA = """hostname fw
interface Ethernet0
 nameif outside
 security-level 0
 ip address 192.0.2.1 255.255.255.0
 ipv6 address 2001:db8:2::1/64
interface Ethernet1
 nameif inside
 security-level 100
 ip address 10.1.1.1 255.255.255.0
 ipv6 address 2001:db8:1::1/64
route outside 0.0.0.0 0.0.0.0 192.0.2.254
ipv6 route outside ::/0 2001:db8:2::fe
"""

IPTABLES = """#@statewall interface inside dev eth1 address 10.1.1.1/24 address 2001:db8:1::1/64 \
security-level 100
#@statewall interface outside dev eth0 address 192.0.2.1/24 address 2001:db8:2::1/64
#@statewall route 0.0.0.0/0 via 192.0.2.254 dev outside
#@statewall route ::/0 via 2001:db8:2::fe dev outside
*filter
:FORWARD DROP [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i eth1 -j ACCEPT
COMMIT
"""

CLIENT, SERVER = "10.1.1.5", "198.51.100.7"
CLIENT6, SERVER6 = "2001:db8:1::5", "2001:db8:9::7"


def firewall(dialect: str, extra: str = "") -> Firewall:
    text = (ASA if dialect == "asa" else IPTABLES) + extra
    return Firewall(parse_policy(text, f"fw.{dialect}", dialect=dialect), fast_path=False)


def send(fw: Firewall, packets, iface: str = "inside", now: float = 10.0):
    out, events = [], []
    for p in packets:
        res = fw.receive(iface, bytes(p), now)
        out += res.packets
        events += res.events
    return out, events


def drops(events) -> list[str]:
    return [d.reason.keyword for d in kinds(events, Drop)]


both = pytest.mark.parametrize("dialect", ["asa", "iptables"])


# -- fragments ---------------------------------------------------------------------------------------


@both
def test_a_syn_in_two_fragments_builds_the_connection_and_leaves_in_two_fragments(dialect):
    syn = IP(src=CLIENT, dst=SERVER, id=7, ttl=64) / TCP(
        sport=40000, dport=80, flags="S", options=[("MSS", 1460)] * 5
    )
    # Data offset 40; the first fragment holds 24 bytes of it (the basic header), the second the rest.
    frags = fragment(syn, fragsize=24)
    fw = firewall(dialect)
    out, events = send(fw, frags)
    assert drops(events) == []
    assert [iface for iface, _ in out] == ["outside", "outside"]
    first, second = IP(bytes(out[0][1])), IP(bytes(out[1][1]))
    assert (first.frag, first.flags.MF, second.frag * 8, second.flags.MF) == (0, 1, 24, 0)
    whole = IP(bytes(first)[:20] + bytes(first.payload) + bytes(second.payload))
    assert whole[TCP].flags == "S" and whole[TCP].dport == 80
    assert fw.conns and (dialect != "asa" or kinds(events, ConnBuilt))


@both
def test_fragments_out_of_order_are_held_until_the_datagram_is_complete(dialect):
    pkt = IP(src=CLIENT, dst=SERVER, id=8) / UDP(sport=5000, dport=123) / Raw(b"d" * 3000)
    frags = fragment(pkt, fragsize=1000)[::-1]
    fw = firewall(dialect)
    out, events = send(fw, frags[:-1])
    assert out == [] and drops(events) == []
    out, events = send(fw, frags[-1:])
    assert len(out) == 4 and drops(events) == []


@pytest.mark.parametrize(("dialect", "reason"), [("asa", "security-failed"), ("iptables", "reasm-overlaps")])
def test_teardrop_overlapping_fragments_are_dropped(dialect, reason):
    frags = fragment(IP(src=CLIENT, dst=SERVER, id=9) / UDP(sport=5000, dport=123) / Raw(b"t" * 2000), 1000)
    evil = IP(bytes(frags[1]))
    evil.frag -= 1
    del evil.chksum
    out, events = send(firewall(dialect), [frags[0], IP(bytes(evil))])
    assert out == [] and drops(events) == [reason, reason]


@pytest.mark.parametrize(("dialect", "after"), [("asa", 5.0), ("iptables", 30.0)])
def test_an_incomplete_datagram_times_out(dialect, after):
    frags = fragment(IP(src=CLIENT, dst=SERVER, id=10) / UDP(sport=5000, dport=123) / Raw(b"u" * 2000), 1000)
    fw = firewall(dialect)
    send(fw, frags[:1], now=10.0)
    assert fw.next_deadline() is not None and fw.next_deadline() <= 10.0 + after
    res = fw.advance(10.0 + after - 0.5)
    assert drops(res.events) == []
    res = fw.advance(10.0 + after)
    want = "fragment-reassembly-timeout" if dialect == "asa" else "frag-reasm-timeout"
    assert drops(res.events) == [want]


def test_asa_fragment_commands_change_the_limits_and_log_209005():
    fw = firewall("asa", "fragment chain 1 inside\nfragment timeout 10\n")
    frags = fragment(IP(src=CLIENT, dst=SERVER, id=11) / UDP(sport=5000, dport=123) / Raw(b"c" * 1400), 1000)
    out, events = send(fw, frags)
    assert out == [] and drops(events) == ["fragment-chain-limit"] * 2
    lines = [line for ev in events for line in format_event(ev, timestamp=False)]
    assert lines == [
        "%ASA-4-209005: Discard IP fragment set with more than 1 elements:  "
        f"src = {CLIENT}, dest = {SERVER}, proto = UDP, id = 11"
    ]
    # fragment timeout 10 applies on every interface
    send(fw, frags[:1], iface="outside", now=20.0)
    assert drops(fw.advance(29.0).events) == [] and drops(fw.advance(30.0).events) == [
        "fragment-reassembly-timeout"
    ]


@both
def test_ipv6_fragments_are_reassembled_and_sent_on(dialect):
    pkt = (
        IPv6(src=CLIENT6, dst=SERVER6)
        / IPv6ExtHdrFragment(id=5)
        / UDP(sport=5000, dport=123)
        / Raw(b"6" * 3000)
    )
    out, events = send(firewall(dialect), fragment6(pkt, 1280))
    assert drops(events) == [] and len(out) == 3
    assert all(IPv6(bytes(p)).haslayer(IPv6ExtHdrFragment) for _, p in out)


# -- addresses never forwarded as unicast ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dst", "asa", "linux"),
    [
        ("224.0.0.252", "no-mcast-intrf", "mc-not-forwarded"),
        ("239.1.2.3", "no-mcast-intrf", "mc-not-forwarded"),
        ("255.255.255.255", "sp-security-failed", None),  # Linux takes a broadcast for itself
        ("10.1.1.255", "sp-security-failed", None),
    ],
)
@both
def test_multicast_and_broadcast_are_not_routed_and_draw_no_icmp(dialect, dst, asa, linux):
    pkt = IP(src=CLIENT, dst=dst, ttl=1) / UDP(sport=5355, dport=5355) / Raw(b"q")
    out, events = send(firewall(dialect), [pkt])
    assert out == []  # not forwarded, and no time exceeded for a TTL-1 packet
    want = asa if dialect == "asa" else linux
    assert drops(events) == ([want] if want else [])


@both
def test_mdns_from_a_link_local_address_is_not_forwarded(dialect):
    pkt = IPv6(src="fe80::5", dst="ff02::fb", hlim=1) / UDP(sport=5353, dport=5353) / Raw(b"m")
    out, events = send(firewall(dialect), [pkt])
    assert out == []
    assert drops(events) == ["ipv6-sp-security-failed" if dialect == "asa" else "mc-not-forwarded"]


@both
def test_martian_sources_are_dropped(dialect):
    out, events = send(firewall(dialect), [IP(src="127.0.0.1", dst=SERVER) / UDP(sport=1, dport=53)])
    assert out == [] and drops(events) == ["sp-security-failed" if dialect == "asa" else "martian-source"]


def test_linux_drops_its_own_ipv4_address_as_a_source_from_a_link_and_forwards_ipv6():
    # fib_validate_source in the routing decision after PREROUTING (accept_local 0): any of the box's
    # addresses, arriving on any interface, to anywhere; no connection is confirmed. IPv6 has no such
    # check (tests/test_addrclass_kernel.py has the kernel's answer).
    fw = firewall("iptables")
    for src, iface in (("10.1.1.1", "inside"), ("192.0.2.1", "inside"), ("192.0.2.1", "outside")):
        out, events = send(fw, [IP(src=src, dst=SERVER, ttl=1) / UDP(sport=1, dport=53)], iface)
        assert out == [] and drops(events) == ["ip-local-source"]
        assert not kinds(events, ConnBuilt)
        assert "martian source 198.51.100.7 from" in next(d for d in events if isinstance(d, Drop)).message
    out, events = send(fw, [IPv6(src="2001:db8:1::1", dst=SERVER6) / UDP(sport=1, dport=53)])
    assert len(out) == 1 and drops(events) == []


# -- header checksum ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "reason"), [("asa", "invalid-ip-header"), ("iptables", "bad-ip-cksum")])
def test_a_bad_ipv4_header_checksum_is_dropped_before_anything_else(dialect, reason):
    pkt = IP(bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=40001, dport=80, flags="S")))
    pkt.chksum ^= 0x0101
    fw = firewall(dialect)
    out, events = send(fw, [pkt])
    assert out == [] and drops(events) == [reason] and not fw.conns


# -- TTL ----------------------------------------------------------------------------------------------


def test_asa_forwards_without_lowering_the_ttl_unless_decrement_ttl():
    syn = IP(src=CLIENT, dst=SERVER, ttl=1) / TCP(sport=40002, dport=80, flags="S")
    out, events = send(firewall("asa"), [syn])
    assert [IP(bytes(p)).ttl for _, p in out] == [1] and drops(events) == []
    decrement = (
        "class-map all\n match any\npolicy-map global_policy\n class all\n  set connection decrement-ttl\n"
    )
    decrement += "service-policy global_policy global\n"
    out, events = send(firewall("asa", decrement), [syn])
    # TTL 1: dropped with time exceeded, but the connection is built for the packets that follow.
    assert drops(events) == ["ttl-exceeded"] and kinds(events, ConnBuilt)
    assert [(IP(bytes(p))[ICMP].type, iface) for iface, p in out] == [(11, "inside")]


def test_iptables_lowers_the_ttl_and_answers_time_exceeded():
    out, _ = send(firewall("iptables"), [IP(src=CLIENT, dst=SERVER, ttl=5) / UDP(sport=1, dport=53)])
    assert [IP(bytes(p)).ttl for _, p in out] == [4]
    out, events = send(firewall("iptables"), [IP(src=CLIENT, dst=SERVER, ttl=1) / UDP(sport=1, dport=53)])
    assert [(IP(bytes(p))[ICMP].type, iface) for iface, p in out] == [(11, "inside")]


# -- the box itself (netfilter's INPUT) ----------------------------------------------------------------


def test_every_packet_to_the_box_is_reported_accepted_or_dropped():
    fw = firewall("iptables")
    packets = [
        IP(src=CLIENT, dst="10.1.1.1") / TCP(sport=40003, dport=22, flags="SF"),  # conntrack: INVALID
        IP(src=CLIENT, dst="10.1.1.1") / ICMP(type=8, id=1, seq=1),
        IP(src=CLIENT, dst="255.255.255.255") / UDP(sport=68, dport=67),  # Linux takes it for itself
    ]
    out, events = send(fw, packets)
    taken = kinds(events, LocalDelivery)
    assert [(d.protocol, d.dst, d.ctstate, d.answered) for d in taken] == [
        (6, "10.1.1.1", "INVALID", False),
        (1, "10.1.1.1", "NEW", True),
        (17, "255.255.255.255", "NEW", False),
    ]
    assert len(out) == 1  # the echo reply
    # Refused by INPUT: a drop, as before.
    fw = firewall("iptables", "*filter\n:INPUT DROP [0:0]\nCOMMIT\n")
    out, events = send(fw, packets[1:2])
    assert out == [] and len(kinds(events, Drop)) == 1 and not kinds(events, LocalDelivery)


# -- IP options ----------------------------------------------------------------------------------------


def _with_options(options, proto_layer=None):
    from scapy.layers.inet import IPOption

    return IP(src=CLIENT, dst=SERVER, options=[IPOption(o) for o in options]) / (
        proto_layer or UDP(sport=1000, dport=53)
    )


RA = b"\x94\x04\x00\x00"  # router alert
LSRR = b"\x83\x07\x04\xc0\x00\x02\x09"  # loose source route via 192.0.2.9
RR = b"\x07\x07\x04\x00\x00\x00\x00"  # record route


def test_asa_drops_ip_options_unless_inspect_ip_options_allows_them():
    # UDP with router alert: not RSVP, so the default class does not inspect it: dropped.
    out, events = send(firewall("asa"), [_with_options([RA])])
    assert out == [] and drops(events) == ["invalid-ip-option"]
    # RSVP (protocol 46) with router alert: the factory inspection allows it.
    rsvp = _with_options([RA], Raw(b"\x10\x01\x00\x00" + b"\x00" * 12))
    rsvp.proto = 46
    out, events = send(firewall("asa"), [rsvp])
    assert drops(events) == [] and len(out) == 1
    # ... but not a record route option beside it.
    rsvp_rr = _with_options([RA, RR + b"\x00"], Raw(b"\x10\x01\x00\x00" + b"\x00" * 12))
    rsvp_rr.proto = 46
    out, events = send(firewall("asa"), [rsvp_rr])
    assert drops(events) == ["invalid-ip-option"]
    # inspect ip-options in a class for all traffic lets router alert through for UDP too.
    cfg = "class-map all\n match any\npolicy-map global_policy\n class all\n  inspect ip-options\n"
    cfg += "service-policy global_policy global\n"
    out, events = send(firewall("asa", cfg), [_with_options([RA])])
    assert drops(events) == [] and len(out) == 1


_IPO_MAP = """policy-map type inspect ip-options {name}
 parameters
{params}class-map all
 match any
policy-map global_policy
 class all
  inspect ip-options {name}
service-policy global_policy global
"""


def _ipo_firewall(params: str):
    return firewall("asa", _IPO_MAP.format(name="IPO", params=params))


def test_asa_ip_options_map_allows_clears_or_drops_each_option():
    from scapy.layers.inet import IPOption

    # router-alert allowed: passes as it came.
    fw = _ipo_firewall("  router-alert action allow\n  nop action allow\n")
    pkt = _with_options([RA]) / Raw(b"data")
    out, events = send(fw, [pkt])
    assert drops(events) == [] and len(out) == 1 and bytes(out[0][1]) == bytes(IP(bytes(pkt)))
    # router-alert cleared: removed; header length, total length and checksum follow (and the UDP
    # payload is intact).
    fw = _ipo_firewall("  router-alert action clear\n")
    out, events = send(fw, [pkt])
    assert drops(events) == [] and len(out) == 1
    left = IP(bytes(out[0][1]))
    assert left.ihl == 5 and left.len == len(bytes(pkt)) - 4 and not left.options
    fresh = IP(bytes(left))
    del fresh.chksum
    assert IP(bytes(fresh)).chksum == left.chksum and bytes(left[UDP].payload) == b"data"
    fresh[UDP].chksum = None
    assert IP(bytes(fresh))[UDP].chksum == left[UDP].chksum
    # NOP and EOOL cleared, router alert allowed: NOP NOP RA EOOL EOOL (scapy pads with EOOL) -> RA alone,
    # already on a 32-bit boundary.
    fw = _ipo_firewall("  router-alert action allow\n  nop action clear\n  eool action clear\n")
    two = IP(src=CLIENT, dst=SERVER, options=[IPOption(b"\x01"), IPOption(b"\x01"), IPOption(RA)]) / UDP(
        sport=1000, dport=53
    )
    out, events = send(fw, [two])
    assert drops(events) == [] and bytes(IP(bytes(out[0][1])).options[0]) == RA
    assert IP(bytes(out[0][1])).ihl == 6
    # An option the map does not list is dropped, with the map named; NOP is not listed here.
    out, events = send(_ipo_firewall("  router-alert action allow\n  eool action allow\n"), [two])
    assert out == [] and drops(events) == ["invalid-ip-option"]
    (d,) = kinds(events, Drop)
    assert d.message == "IP option no operation is not allowed by ip-options map IPO"
    # Record route: not an option the inspection allows at all, whatever the map.
    out, events = send(_ipo_firewall("  router-alert action allow\n"), [_with_options([RA, RR + b"\x00"])])
    assert drops(events) == ["invalid-ip-option"]


def test_asa_ip_options_map_prints_back_and_names_what_it_does_not_model():
    from statewall.config import parse_policy
    from statewall.dialects.asa import render
    from statewall.dialects.errors import ConfigError

    text = ASA + _IPO_MAP.format(
        name="RSVP", params="  router-alert action clear\n  eool action allow\n  record-route action allow\n"
    )
    policy = parse_policy(text, "fw.cfg", dialect="asa")
    assert policy.ip_options_maps["RSVP"].actions == {148: "clear", 0: "allow"}
    out = render(policy)
    block = out[out.index("policy-map type inspect ip-options RSVP") :].split("\n")[:5]
    assert block == [
        "policy-map type inspect ip-options RSVP",
        " parameters",
        "  eool action allow",
        "  router-alert action clear",
        "  record-route action allow",
    ]
    again = parse_policy(out, "again.cfg", dialect="asa")
    assert again.ip_options_maps["RSVP"].actions == policy.ip_options_maps["RSVP"].actions
    messages = [w.message for w in policy.warnings]
    assert any("'record-route action allow'" in m and "not modelled" in m for m in messages)
    # inspect ip-options is modelled (the IP options stage): check does not call it a gap.
    assert not any("inspect ip-options is not modelled" in m for m in messages)
    # packet-tracer shows the IP-OPTIONS phase (its packet carries no options: allowed).
    from statewall.tracer import trace

    phases, _ = trace(policy, "inside", "udp", CLIENT, 1000, SERVER, 53)
    (ipo,) = [ph for ph in phases if ph.type == "IP-OPTIONS"]
    assert ipo.allowed
    with pytest.raises(ConfigError, match="policy-map type inspect ip-options NOPE is not defined"):
        bad = _IPO_MAP.format(name="X", params="").replace(
            "ip-options X\nservice", "ip-options NOPE\nservice"
        )
        parse_policy(ASA + bad, "bad.cfg", dialect="asa")
    with pytest.raises(ConfigError, match="router-alert action"):
        parse_policy(
            ASA + _IPO_MAP.format(name="X", params="  router-alert action drop\n"), "bad.cfg", dialect="asa"
        )


def test_linux_forwards_options_but_not_source_routes():
    out, events = send(firewall("iptables"), [_with_options([RA])])
    assert drops(events) == [] and len(out) == 1
    out, events = send(firewall("iptables"), [_with_options([LSRR + b"\x00"])])
    assert out == [] and drops(events) == ["source-route"]


# -- the ASA's own words for TCP it refuses --------------------------------------------------------------


def test_asa_names_a_bad_handshake_in_its_own_words():
    # Data from the client before any SYN-ACK: the ASA's tcp-3whs-failed, with none of conntrack's
    # words (its tracker follows netfilter's table, its names are its own).
    syn = IP(src=CLIENT, dst=SERVER) / TCP(sport=40010, dport=80, flags="S", seq=1000)
    early = IP(src=CLIENT, dst=SERVER) / TCP(sport=40010, dport=80, flags="PA", seq=1001, ack=1) / Raw(b"GET")
    fw = firewall("asa")
    out, events = send(fw, [syn, early])
    assert len(out) == 1 and drops(events) == ["tcp-3whs-failed"]
    (d,) = kinds(events, Drop)
    assert d.message == "TCP failed 3 way handshake" and "ctstate" not in d.detail


def test_asa_fragment_commands_print_back_and_refuse_bad_values():
    from statewall.dialects.asa import parse, render
    from statewall.dialects.errors import ConfigError

    policy = parse(
        ASA + "fragment chain 1 outside\nfragment timeout 10\nfragment size 300 inside\n", "fw.cfg"
    )
    text = render(policy)
    assert (
        "fragment chain 1 outside" in text
        and "fragment timeout 10" in text
        and "fragment size 300 inside" in text
    )
    again = parse(text, "again.cfg")
    assert again.fragment_settings("outside").chain == 1 and again.fragment_settings("outside").timeout == 10
    assert again.fragment_settings("inside").size == 300 and again.fragment_settings("inside").chain == 24
    with pytest.raises(ConfigError, match="fragment timeout must be 1..30"):
        parse(ASA + "fragment timeout 31\n", "bad.cfg")
    with pytest.raises(ConfigError, match="unknown interface 'dmz'"):
        parse(ASA + "fragment chain 2 dmz\n", "bad.cfg")


@pytest.mark.parametrize("captured_on", ["mapped-side", "real-side"])
def test_replay_auto_ingress_carries_a_statically_translated_servers_replies(tmp_path, captured_on):
    # A web server behind a static translation, captured on the outside: its replies come from the
    # mapped address. With --ingress auto they arrive on inside, from the real address, and answer
    # the connection the client's SYN built. Captured on the server's own (real) side instead, the
    # client's packets name the real address: live they were addressed to the mapped one, and the
    # connection is the same translated one (the replies leave outside from the mapped address).
    from statewall.pcapio import PcapWriter
    from statewall.replay import replay

    cfg = ASA + (
        "object network WEB\n host 10.1.1.10\n nat (inside,outside) static 192.0.2.10\n"
        "access-list OUTSIDE_IN extended permit tcp any host 10.1.1.10 eq www\n"
        "access-group OUTSIDE_IN in interface outside\n"
    )
    policy = parse_policy(cfg, "fw.cfg", dialect="asa")
    c, s = ("198.51.100.7", 40000), ("192.0.2.10" if captured_on == "mapped-side" else "10.1.1.10", 80)

    def seg(src, dst, flags, seq, ack, data=b""):
        return bytes(
            IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq, ack=ack) / data
        )

    packets = [
        seg(c, s, "S", 100, 0),
        seg(s, c, "SA", 900, 101),
        seg(c, s, "A", 101, 901),
        seg(c, s, "PA", 101, 901, b"GET / HTTP/1.0\r\n\r\n"),
        seg(s, c, "PA", 901, 119, b"HTTP/1.0 200 OK\r\n\r\n"),
        seg(c, s, "FA", 119, 920),
        seg(s, c, "FA", 920, 120),
        seg(c, s, "A", 120, 921),
    ]
    cap = tmp_path / "outside.pcap"
    with PcapWriter(cap) as w:
        for i, p in enumerate(packets):
            w.write(p, 1.0 + i / 100)
    summary = replay(policy, [(None, cap)], tmp_path / "out")
    assert summary["drops_by_reason"] == {} and summary["unassigned"] == 0
    assert summary["forwarded"] == len(packets) and summary["connections"]["built"] == 1
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "to inside:10.1.1.10/80 (192.0.2.10/80)" in log
    from statewall.pcapio import read_packets

    left = [IP(raw) for _, raw in read_packets(tmp_path / "out" / "outside.pcap")]
    assert len(left) == 3 and {p.src for p in left} == {"192.0.2.10"}


def test_the_asas_own_address_as_a_source_is_named_not_modelled_in_replay(tmp_path):
    # No Cisco source says what an ASA does with it (docs/asa.md): forwarded as the rules allow, and
    # replay counts it apart (statewall.gaps.OWN_SOURCE); Linux drops it (ip-local-source).
    from statewall.gaps import OWN_SOURCE
    from statewall.pcapio import PcapWriter
    from statewall.replay import replay

    path = tmp_path / "inside.pcap"
    with PcapWriter(path) as w:
        w.write(bytes(IP(src="192.0.2.1", dst=SERVER) / UDP(sport=1, dport=5000) / b"x"), 1.0)
        w.write(bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=2, dport=5000) / b"x"), 1.1)
    for dialect in ("asa", "iptables"):
        policy = parse_policy(ASA if dialect == "asa" else IPTABLES, f"fw.{dialect}", dialect=dialect)
        summary = replay(policy, [("inside", path)], tmp_path / dialect, report=False)
        if dialect == "asa":
            assert summary["forwarded"] == 2 and summary["not_modelled"] == {OWN_SOURCE: 1}
        else:
            assert summary["forwarded"] == 1 and summary["drops_by_reason"] == {"ip-local-source": 1}


def test_packet_tracer_names_the_asas_own_address_as_a_source_not_modelled():
    from statewall.gaps import OWN_SOURCE
    from statewall.tracer import trace

    policy = parse_policy(ASA, "fw.asa", dialect="asa")
    _, own = trace(policy, "inside", "udp", "192.0.2.1", 1, SERVER, 5000)
    _, host = trace(policy, "inside", "udp", CLIENT, 1, SERVER, 5000)
    assert own.allowed and host.allowed
    assert [n for n in own.notes if OWN_SOURCE in n] == [n for n in own.notes if n.startswith("not modelled")]
    assert any(n.startswith(f"not modelled: {OWN_SOURCE}: unknown") for n in own.notes), own.notes
    assert not any(OWN_SOURCE in n for n in host.notes), host.notes
