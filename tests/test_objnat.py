"""ASA 8.3+ NAT: object NAT and twice NAT in verbatim 8.4/9.x syntax, replayed with scapy-built packets
through ``Firewall`` - static port forwarding with ``service tcp``, the order of the three sections,
destination translation in both directions, pools with PAT fallback and PAT pools, ``show xlate``
flags - and how the dialect reads, refuses and prints these lines."""

from __future__ import annotations

import pytest
from scapy.layers.dns import DNS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from fixtures import DUAL_STACK_INTERFACES, kinds
from statewall.dialects.asa import ConfigError, parse, render
from statewall.engine import Firewall
from statewall.events import Drop, DropReason, XlateBuilt
from statewall.logfmt.asa import format_event
from statewall.logfmt.tables import show_xlate
from statewall.nat import asa_order
from statewall.policy import PortMatch
from test_asa_dialect import same_model

HEAD = (
    "ASA Version 9.1(2)\nhostname fw\n"
    + DUAL_STACK_INTERFACES
    + """\
interface GigabitEthernet0/2
 nameif dmz
 security-level 50
 ip address 172.31.0.1 255.255.255.0
route outside 0.0.0.0 0.0.0.0 192.0.2.254 1
ipv6 route outside ::/0 2001:db8:ffff::fe
object network obj_any
 subnet 0.0.0.0 0.0.0.0
object network LAN
 subnet 10.0.0.0 255.255.255.0
object network WEB
 host 10.0.0.5
object network WEB-PUBLIC
 host 192.0.2.5
"""
)
OUTSIDE_IP = "192.0.2.1"
CLIENT = "198.51.100.7"


def fw_for(*lines: str) -> Firewall:
    return Firewall(parse(HEAD + "".join(line + "\n" for line in lines), "objnat.cfg"))


def send(fw: Firewall, iface: str, pkt, now: float = 1.0):
    res = fw.receive(iface, bytes(pkt), now)
    return res, [(i, IP(bytes(d)) if pkt.version == 4 else IPv6(bytes(d))) for i, d in res.packets]


def one(fw: Firewall, iface: str, pkt, now: float = 1.0):
    res, out = send(fw, iface, pkt, now)
    assert len(out) == 1, [str(e) for e in res.events]
    return out[0]


# --------------------------------------------------------------------------------------------------
# Object NAT


WEB_FORWARD = (
    "object network obj_any",
    " nat (inside,outside) dynamic interface",
    "object network WEB",
    " nat (inside,outside) static WEB-PUBLIC service tcp www 8080",
    "access-list OUTSIDE_IN extended permit tcp any object WEB eq www",
    "access-group OUTSIDE_IN in interface outside",
)


def test_static_port_forwarding_with_service_tcp_both_ways():
    fw = fw_for(*WEB_FORWARD)
    # The ACL names the real address and port (8.3+): the mapped 192.0.2.5:8080 reaches 10.0.0.5:80.
    syn = IP(src=CLIENT, dst="192.0.2.5") / TCP(sport=51000, dport=8080, flags="S", seq=100)
    iface, fwd = one(fw, "outside", syn)
    assert iface == "inside" and (fwd.dst, fwd[TCP].dport) == ("10.0.0.5", 80)
    synack = IP(src="10.0.0.5", dst=CLIENT) / TCP(
        sport=80, dport=51000, flags="SA", seq=7, ack=fwd[TCP].seq + 1
    )
    iface, back = one(fw, "inside", synack, 1.1)
    assert iface == "outside" and (back.src, back[TCP].sport) == ("192.0.2.5", 8080)
    # Other ports of the mapped address are not forwarded.
    res, out = send(fw, "outside", IP(src=CLIENT, dst="192.0.2.5") / TCP(sport=51001, dport=80, flags="S"))
    assert out == [] and kinds(res.events, Drop)


def test_the_servers_own_connections_use_the_dynamic_rule():
    """A static with a service only owns that port: the server's other flows fall to obj_any's PAT."""
    fw = fw_for(*WEB_FORWARD)
    iface, out = one(fw, "inside", IP(src="10.0.0.5", dst=CLIENT) / UDP(sport=5353, dport=53) / DNS())
    assert iface == "outside" and (out.src, out[UDP].sport) == (OUTSIDE_IP, 5353)
    iface, out = one(fw, "inside", IP(src="10.0.0.2", dst=CLIENT) / TCP(sport=40000, dport=443, flags="S"))
    assert (out.src, out[TCP].sport) == (OUTSIDE_IP, 40000)


def test_object_statics_come_before_object_dynamics_and_smaller_objects_first():
    fw = fw_for(
        "object network POOL-A",
        " host 198.51.100.100",
        "object network POOL-B",
        " host 198.51.100.200",
        # Written first, but a /24 is larger than the host below and dynamic comes after static.
        "object network LAN",
        " nat (inside,outside) dynamic POOL-A",
        "object network HOST7",
        " host 10.0.0.7",
        " nat (inside,outside) dynamic POOL-B",
        "object network WEB",
        " nat (inside,outside) static 192.0.2.5",
    )
    assert [r.real_object for r in asa_order(fw.policy.nat_rules)] == ["WEB", "HOST7", "LAN"]
    for host, mapped in (
        ("10.0.0.2", "198.51.100.100"),
        ("10.0.0.7", "198.51.100.200"),
        ("10.0.0.5", "192.0.2.5"),
    ):
        _, out = one(fw, "inside", IP(src=host, dst=CLIENT) / UDP(sport=4000, dport=53) / DNS())
        assert out.src == mapped, host


def test_object_static_one_to_one_is_bidirectional_and_a_subnet_maps_by_position():
    fw = fw_for(
        "object network DMZ-NET",
        " subnet 172.31.0.0 255.255.255.0",
        " nat (dmz,outside) static 203.0.113.0",
        "access-list OUTSIDE_IN extended permit tcp any 172.31.0.0 255.255.255.0 eq 22",
        "access-group OUTSIDE_IN in interface outside",
    )
    iface, fwd = one(fw, "outside", IP(src=CLIENT, dst="203.0.113.44") / TCP(sport=1234, dport=22, flags="S"))
    assert iface == "dmz" and fwd.dst == "172.31.0.44"
    _, out = one(fw, "dmz", IP(src="172.31.0.9", dst=CLIENT) / UDP(sport=123, dport=123))
    assert (out.src, out[UDP].sport) == ("203.0.113.9", 123)


def test_unidirectional_twice_static_does_not_own_its_mapped_address():
    base = (
        "object network WEB-PUB2",
        " host 192.0.2.6",
        "access-list OUTSIDE_IN extended permit tcp any any",
        "access-group OUTSIDE_IN in interface outside",
    )
    for extra, reaches in (("", True), (" unidirectional", False)):
        fw = fw_for(*base, f"nat (inside,outside) source static WEB WEB-PUB2{extra}")
        _, out = one(fw, "inside", IP(src="10.0.0.5", dst=CLIENT) / UDP(sport=9, dport=9))
        assert out.src == "192.0.2.6"
        _, out = send(fw, "outside", IP(src=CLIENT, dst="192.0.2.6") / TCP(sport=1, dport=22, flags="S"))
        assert bool(out and out[0][1].dst == "10.0.0.5") is reaches


def _asa_lines(res) -> list[str]:
    return [line for ev in res.events for line in format_event(ev, timestamp=False)]


def test_a_statics_real_address_reached_from_its_mapped_side_fails_nat_reverse_path():
    """The ASA drops a flow to a translated host's real address from the static's mapped side
    (nat-rpf-failed, 305013); the mapped address, another host, and the real side itself pass."""
    fw = fw_for(
        "object network DMZ-NET",
        " subnet 172.31.0.0 255.255.255.0",
        " nat (dmz,outside) static 203.0.113.0",
        "access-list OUTSIDE_IN extended permit ip any any",
        "access-group OUTSIDE_IN in interface outside",
    )
    res, out = send(fw, "outside", IP(src=CLIENT, dst="172.31.0.44") / TCP(sport=1234, dport=22, flags="S"))
    assert out == [] and [d.reason for d in kinds(res.events, Drop)] == [DropReason.NAT_RPF_FAILED]
    assert _asa_lines(res) == [
        "%ASA-5-305013: Asymmetric NAT rules matched for forward and reverse flows; Connection for tcp "
        f"src outside:{CLIENT}/1234 dst dmz:172.31.0.44/22 denied due to NAT reverse path failure"
    ]
    res, out = send(fw, "outside", IP(src=CLIENT, dst="172.31.0.9") / ICMP(type=8, id=7, seq=1))
    assert out == [] and _asa_lines(res) == [
        "%ASA-5-305013: Asymmetric NAT rules matched for forward and reverse flows; Connection for icmp "
        f"src outside:{CLIENT} dst dmz:172.31.0.9 (type 8, code 0) denied due to NAT reverse path failure"
    ]
    # The mapped address is the way in; the dmz's own flows are translated as before.
    _, fwd = one(fw, "outside", IP(src=CLIENT, dst="203.0.113.44") / TCP(sport=1235, dport=22, flags="S"))
    assert fwd.dst == "172.31.0.44"
    _, back = one(fw, "dmz", IP(src="172.31.0.9", dst=CLIENT) / UDP(sport=123, dport=123))
    assert back.src == "203.0.113.9"
    # A host no static translates is reached by its address (no reverse translation, no asymmetry).
    _, plain = one(fw, "outside", IP(src=CLIENT, dst="10.0.0.9") / TCP(sport=1236, dport=22, flags="S"))
    assert plain.dst == "10.0.0.9"


def test_nat_reverse_path_follows_the_rule_order_and_the_statics_service():
    # A static with a service translates only its real port's replies: other ports of the real
    # address are reached untranslated; its own real port fails the reverse path.
    fw = fw_for(*WEB_FORWARD[2:4], "access-list OUTSIDE_IN extended permit ip any any",
                "access-group OUTSIDE_IN in interface outside")  # fmt: skip
    _, ssh = one(fw, "outside", IP(src=CLIENT, dst="10.0.0.5") / TCP(sport=1, dport=22, flags="S"))
    assert ssh.dst == "10.0.0.5"
    res, out = send(fw, "outside", IP(src=CLIENT, dst="10.0.0.5") / TCP(sport=2, dport=80, flags="S"))
    assert out == [] and [d.reason for d in kinds(res.events, Drop)] == [DropReason.NAT_RPF_FAILED]
    # A section 1 exemption for the peer comes first: both directions match it, no asymmetry.
    fw = fw_for(
        "object network REMOTE",
        " subnet 172.16.0.0 255.255.0.0",
        "object network WEB",
        " nat (inside,outside) static 192.0.2.5",
        "nat (inside,outside) source static LAN LAN destination static REMOTE REMOTE",
        "access-list OUTSIDE_IN extended permit ip any any",
        "access-group OUTSIDE_IN in interface outside",
    )
    _, vpn = one(fw, "outside", IP(src="172.16.5.5", dst="10.0.0.5") / TCP(sport=3, dport=22, flags="S"))
    assert vpn.dst == "10.0.0.5"
    res, out = send(fw, "outside", IP(src=CLIENT, dst="10.0.0.5") / TCP(sport=4, dport=22, flags="S"))
    assert out == [] and [d.reason for d in kinds(res.events, Drop)] == [DropReason.NAT_RPF_FAILED]


def test_nat_reverse_path_failures_count_as_the_asas_flow_drop():
    from statewall.logfmt.counters import Counters, format_show_asp_drop

    fw = fw_for("object network WEB", " nat (inside,outside) static 192.0.2.5",
                "access-list OUTSIDE_IN extended permit ip any any",
                "access-group OUTSIDE_IN in interface outside")  # fmt: skip
    c = Counters()
    for port in (22, 80):
        syn = IP(src=CLIENT, dst="10.0.0.5") / TCP(sport=port, dport=port, flags="S")
        res, out = send(fw, "outside", syn)
        assert out == []
        c.feed(res.events)
    text = format_show_asp_drop(c.drops)
    flow = text.split("Flow drop:\n", 1)[1]
    assert "  NAT reverse path failed (nat-rpf-failed)" in flow and flow.split("\n")[0].endswith(" 2")


@pytest.mark.parametrize("extra", ["", " unidirectional"])
def test_replay_carries_a_real_side_capture_exactly_where_a_static_offers_a_way_in(tmp_path, extra):
    # A client's SYN captured on the static's real side names the real address. Live it could only
    # have crossed addressed to the mapped one: replay carries it there (a bidirectional static), or,
    # when the static offers no way in (unidirectional), the engine drops it as the ASA would.
    from statewall.pcapio import PcapWriter
    from statewall.replay import replay

    policy = parse(HEAD + f"nat (inside,outside) source static WEB WEB-PUBLIC{extra}\n"
                   "access-list OUTSIDE_IN extended permit tcp any any\n"
                   "access-group OUTSIDE_IN in interface outside\n", "objnat.cfg")  # fmt: skip
    cap = tmp_path / "outside.pcap"
    with PcapWriter(cap) as w:
        w.write(bytes(IP(src=CLIENT, dst="10.0.0.5") / TCP(sport=40000, dport=22, flags="S")), 1.0)
    summary = replay(policy, [("outside", cap)], tmp_path / "out")
    if extra:
        assert summary["forwarded"] == 0 and summary["drops_by_reason"] == {"nat-rpf-failed": 1}
        assert "%ASA-5-305013: " in (tmp_path / "out" / "log.txt").read_text()
    else:
        assert summary["forwarded"] == 1 and summary["drops_by_reason"] == {}
        assert "(192.0.2.5/22)" in (tmp_path / "out" / "log.txt").read_text()


def test_packet_tracer_shows_the_nat_reverse_path_failure_in_the_nat_phase():
    from statewall.tracer import packet_tracer

    cfg = (
        "object network WEB\n nat (inside,outside) static 192.0.2.5\n"
        "access-list OUTSIDE_IN extended permit tcp any object WEB eq www\n"
        "access-group OUTSIDE_IN in interface outside\n"
    )
    policy = parse(HEAD + cfg, "objnat.cfg")
    text, allowed = packet_tracer(policy, "outside", "tcp", CLIENT, 40000, "10.0.0.5", 80)
    assert not allowed
    assert (
        "Type: NAT\nSubtype: rpf-check\nResult: DROP\nConfig:\nobject network WEB\n"
        " nat (inside,outside) static 192.0.2.5\n" in text
    )
    assert "Drop-reason: (nat-rpf-failed) NAT reverse path failed" in text


# --------------------------------------------------------------------------------------------------
# Twice NAT


def test_section_1_twice_nat_exempts_vpn_traffic_before_object_nat():
    fw = fw_for(
        "object network REMOTE",
        " subnet 172.16.0.0 255.255.0.0",
        "object network obj_any",
        " nat (inside,outside) dynamic interface",
        "nat (inside,outside) source static LAN LAN destination static REMOTE REMOTE "
        "no-proxy-arp route-lookup",
    )
    _, vpn = one(fw, "inside", IP(src="10.0.0.2", dst="172.16.5.5") / UDP(sport=4000, dport=500))
    _, web = one(fw, "inside", IP(src="10.0.0.2", dst=CLIENT) / UDP(sport=4001, dport=53) / DNS())
    assert vpn.src == "10.0.0.2" and web.src == OUTSIDE_IP
    assert len(fw.nat.xlates) == 1  # identity creates no slot


def test_twice_nat_translates_the_destination_and_its_port_and_the_reply_back():
    fw = fw_for(
        "object network DNS-MAPPED",
        " host 198.51.100.53",
        "object network DNS-REAL",
        " host 203.0.113.53",
        "object service DNS-ALT",
        " service udp destination eq 5353",
        "object service DNS",
        " service udp destination eq domain",
        "nat (inside,outside) source dynamic LAN interface destination static DNS-MAPPED DNS-REAL "
        "service DNS-ALT DNS",
    )
    iface, out = one(
        fw, "inside", IP(src="10.0.0.2", dst="198.51.100.53") / UDP(sport=3333, dport=5353) / DNS()
    )
    assert iface == "outside"
    assert (out.src, out[UDP].sport, out.dst, out[UDP].dport) == (OUTSIDE_IP, 3333, "203.0.113.53", 53)
    reply = IP(src="203.0.113.53", dst=OUTSIDE_IP) / UDP(sport=53, dport=3333) / DNS(qr=1)
    iface, back = one(fw, "outside", reply, 1.1)
    assert iface == "inside"
    assert (back.src, back[UDP].sport, back.dst, back[UDP].dport) == ("198.51.100.53", 5353, "10.0.0.2", 3333)
    # The same client to another port of the mapped address is no match for the rule.
    _, out = one(fw, "inside", IP(src="10.0.0.2", dst="198.51.100.53") / UDP(sport=3334, dport=53) / DNS())
    assert (out.src, out.dst) == ("10.0.0.2", "198.51.100.53")


def test_twice_nat_to_the_real_interface_s_address_forwards_a_port_and_wins_over_object_nat():
    # Port forwarding on the outside interface's own address by twice NAT (section 1): the original
    # packet arrives on the real interface (outside) addressed to it. An object NAT of another host for
    # the same port (section 2) comes after it.
    fw = fw_for(
        "object network RDP-OTHER",
        " host 172.31.0.20",
        " nat (dmz,outside) static interface service tcp 3389 33890",
        "object network SRV",
        " host 172.31.0.10",
        "object service RDP-EXT",
        " service tcp destination eq 33890",
        "object service RDP",
        " service tcp destination eq 3389",
        "nat (outside,dmz) source static any any destination static interface SRV service RDP-EXT RDP",
        "access-list OUT extended permit tcp any host 172.31.0.10 eq 3389",
        "access-group OUT in interface outside",
    )
    iface, out = one(fw, "outside", IP(src=CLIENT, dst=OUTSIDE_IP) / TCP(sport=4000, dport=33890, flags="S"))
    assert (iface, out.dst, out[TCP].dport, out.src) == ("dmz", "172.31.0.10", 3389, CLIENT)
    back = IP(src="172.31.0.10", dst=CLIENT) / TCP(sport=3389, dport=4000, flags="SA", ack=out[TCP].seq + 1)
    iface, ret = one(fw, "dmz", back, 1.1)
    assert (iface, ret.src, ret[TCP].sport) == ("outside", OUTSIDE_IP, 33890)
    with pytest.raises(ConfigError, match="destination static interface needs a specific real interface"):
        parse(
            HEAD + "object network SRV\n host 172.31.0.10\nobject service S\n service tcp destination eq 22\n"
            "nat (any,dmz) source static any any destination static interface SRV service S S\n",
            "x.cfg",
        )


def test_twice_static_seen_from_the_destination_translates_both_addresses():
    """A partner connects to the server's mapped address and appears inside at its own mapped one."""
    fw = fw_for(
        "object network SERVER-PUB",
        " host 192.0.2.80",
        "object network PARTNER",
        " host 203.0.113.10",
        "object network PARTNER-MAPPED",
        " host 10.99.0.10",
        "nat (inside,outside) source static WEB SERVER-PUB destination static PARTNER-MAPPED PARTNER",
        "access-list OUTSIDE_IN extended permit tcp host 203.0.113.10 object WEB eq 443",
        "access-group OUTSIDE_IN in interface outside",
    )
    syn = IP(src="203.0.113.10", dst="192.0.2.80") / TCP(sport=40000, dport=443, flags="S", seq=1)
    iface, fwd = one(fw, "outside", syn)
    assert iface == "inside" and (fwd.src, fwd.dst) == ("10.99.0.10", "10.0.0.5")
    synack = IP(src="10.0.0.5", dst="10.99.0.10") / TCP(
        sport=443, dport=40000, flags="SA", ack=fwd[TCP].seq + 1
    )
    iface, back = one(fw, "inside", synack, 1.1)
    assert iface == "outside" and (back.src, back.dst) == ("192.0.2.80", "203.0.113.10")
    # Anyone else is not the rule's destination: the mapped address leads nowhere for them.
    res, out = send(
        fw, "outside", IP(src="203.0.113.11", dst="192.0.2.80") / TCP(sport=1, dport=443, flags="S")
    )
    assert out == [] and kinds(res.events, Drop)[0].reason is DropReason.SECURITY_LEVEL


def test_after_auto_rules_come_after_object_nat_and_line_numbers_insert():
    fw = fw_for(
        "object network POOL-A",
        " host 198.51.100.100",
        "object network POOL-B",
        " host 198.51.100.200",
        "object network HOST9",
        " host 10.0.0.9",
        "nat (inside,outside) after-auto source dynamic any interface",
        "object network WEB",
        " nat (inside,outside) dynamic POOL-A",
        "nat (inside,outside) source dynamic LAN POOL-A",
        "nat (inside,outside) 1 source dynamic HOST9 POOL-B",
    )
    order = [(r.section, r.real_object) for r in fw.policy.nat_rules]
    assert order == [(1, "HOST9"), (1, "LAN"), (2, "WEB"), (3, None)]
    _, h9 = one(fw, "inside", IP(src="10.0.0.9", dst=CLIENT) / UDP(sport=1, dport=2))
    _, lan = one(fw, "inside", IP(src="10.0.0.2", dst=CLIENT) / UDP(sport=1, dport=2))
    _, dmz = one(fw, "dmz", IP(src="172.31.0.9", dst=CLIENT) / UDP(sport=1, dport=2))
    assert (h9.src, lan.src) == ("198.51.100.200", "198.51.100.100")
    assert dmz.src == "172.31.0.9"  # (inside,outside) rules do not apply to the dmz
    fw2 = fw_for("nat (inside,outside) after-auto source dynamic any interface")
    _, other = one(fw2, "inside", IP(src="10.0.0.77", dst=CLIENT) / UDP(sport=1, dport=2))
    assert other.src == OUTSIDE_IP


# --------------------------------------------------------------------------------------------------
# Pools


def test_dynamic_pool_object_uses_its_ranges_then_its_hosts_then_the_interface():
    fw = fw_for(
        "object network RANGE",
        " range 198.51.100.10 198.51.100.11",
        "object network PAT-HOST",
        " host 198.51.100.99",
        "object-group network MAPPED",
        " network-object object RANGE",
        " network-object object PAT-HOST",
        "object network LAN",
        " nat (inside,outside) dynamic MAPPED",
    )
    srcs = [
        one(fw, "inside", IP(src=f"10.0.0.{n}", dst=CLIENT) / UDP(sport=7000, dport=53) / DNS())[1]
        for n in (2, 3, 4, 5)
    ]
    assert [p.src for p in srcs] == ["198.51.100.10", "198.51.100.11", "198.51.100.99", "198.51.100.99"]
    assert srcs[2][UDP].sport == 7000 and srcs[3][UDP].sport != 7000  # the fallback is PAT


def test_exhausted_object_pool_without_fallback_drops_with_305006():
    fw = fw_for(
        "object network RANGE",
        " range 198.51.100.10 198.51.100.11",
        "object network LAN",
        " nat (inside,outside) dynamic RANGE",
    )
    one(fw, "inside", IP(src="10.0.0.2", dst=CLIENT) / UDP(sport=1, dport=2))
    one(fw, "inside", IP(src="10.0.0.3", dst=CLIENT) / UDP(sport=1, dport=2))
    res, out = send(fw, "inside", IP(src="10.0.0.4", dst=CLIENT) / UDP(sport=1, dport=2))
    assert out == []
    assert [line for ev in res.events for line in format_event(ev, timestamp=False)] == [
        "%ASA-3-305006: regular translation creation failed for udp src inside:10.0.0.4/1 "
        f"dst outside:{CLIENT}/2"
    ]
    ((_, xlate_with_interface),) = [
        one(
            fw_for(
                "object network RANGE",
                " range 198.51.100.10 198.51.100.10",
                "object network LAN",
                " nat (inside,outside) dynamic RANGE interface",
            ),
            "inside",
            IP(src="10.0.0.4", dst=CLIENT) / UDP(sport=1, dport=2),
        )
    ]
    assert xlate_with_interface.src == "198.51.100.10"


@pytest.mark.parametrize("fallback", [False, True])
def test_exhausted_pat_pool_drops_with_305006_portmap_unless_the_interface_takes_over(fallback):
    fw = fw_for(
        "object network PATPOOL",
        " range 198.51.100.20 198.51.100.20",
        "object network LAN",
        " nat (inside,outside) dynamic pat-pool PATPOOL" + (" interface" if fallback else ""),
    )
    # Source port 100 is in the 1-511 class: 511 hosts fill it on the pool's one address.
    for n in range(511):
        _, out = send(
            fw,
            "inside",
            IP(src=f"10.0.0.{n % 250 + 2}", dst=CLIENT) / UDP(sport=100 + n // 250, dport=53) / DNS(),
        )
        assert out and out[0][1].src == "198.51.100.20"
    res, out = send(fw, "inside", IP(src="10.0.0.200", dst=CLIENT) / UDP(sport=103, dport=53) / DNS())
    if fallback:
        assert [(o.src, o[UDP].sport) for _, o in out] == [(OUTSIDE_IP, 103)]
    else:
        assert out == []
        assert [line for ev in res.events for line in format_event(ev, timestamp=False)] == [
            "%ASA-3-305006: portmap translation creation failed for udp src inside:10.0.0.200/103 "
            f"dst outside:{CLIENT}/53"
        ]


def test_pat_pool_round_robin_spreads_hosts_and_each_host_keeps_its_address():
    fw = fw_for(
        "object network PATPOOL",
        " range 198.51.100.20 198.51.100.21",
        "object network LAN",
        " nat (inside,outside) dynamic pat-pool PATPOOL round-robin",
    )
    a1 = one(fw, "inside", IP(src="10.0.0.2", dst=CLIENT) / UDP(sport=1000, dport=53) / DNS())[1]
    b1 = one(fw, "inside", IP(src="10.0.0.3", dst=CLIENT) / UDP(sport=1000, dport=53) / DNS())[1]
    a2 = one(fw, "inside", IP(src="10.0.0.2", dst=CLIENT) / UDP(sport=1001, dport=53) / DNS())[1]
    assert (a1.src, b1.src, a2.src) == ("198.51.100.20", "198.51.100.21", "198.51.100.20")
    assert a1[UDP].sport == b1[UDP].sport == 1000  # different addresses: both keep the port


def test_pat_pool_without_round_robin_fills_the_first_address_and_flat_ignores_classes():
    fw = fw_for(
        "object network PATPOOL",
        " range 198.51.100.20 198.51.100.21",
        "object network LAN",
        " nat (inside,outside) dynamic pat-pool PATPOOL flat",
    )
    a = one(fw, "inside", IP(src="10.0.0.2", dst=CLIENT) / UDP(sport=100, dport=53) / DNS())[1]
    b = one(fw, "inside", IP(src="10.0.0.3", dst=CLIENT) / UDP(sport=2000, dport=53) / DNS())[1]
    assert a.src == b.src == "198.51.100.20"
    assert 1024 <= a[UDP].sport <= 65535 and b[UDP].sport == 2000  # flat: 1024-65535 for every port


def test_show_xlate_flags_for_object_and_twice_nat():
    fw = fw_for(
        *WEB_FORWARD,
        "object network REMOTE",
        " subnet 172.16.0.0 255.255.0.0",
        "nat (inside,outside) source dynamic LAN interface destination static REMOTE REMOTE",
    )
    one(fw, "inside", IP(src="10.0.0.2", dst="172.16.0.9") / UDP(sport=5000, dport=53) / DNS())
    one(fw, "inside", IP(src="10.0.0.3", dst=CLIENT) / UDP(sport=5000, dport=53) / DNS())
    one(fw, "outside", IP(src=CLIENT, dst="192.0.2.5") / TCP(sport=51000, dport=8080, flags="S"))
    text = show_xlate(fw, now=1.0)
    assert f"UDP PAT from inside:10.0.0.2/5000 to outside:{OUTSIDE_IP}/5000 flags riT idle" in text
    assert f"UDP PAT from inside:10.0.0.3/5000 to outside:{OUTSIDE_IP}/" in text and " flags ri idle" in text


def test_xlate_built_names_the_object_nat_line():
    fw = fw_for(*WEB_FORWARD)
    res, _ = send(fw, "inside", IP(src="10.0.0.2", dst=CLIENT) / UDP(sport=5000, dport=53) / DNS())
    (xb,) = kinds(res.events, XlateBuilt)
    assert xb.origin.text == "nat (inside,outside) dynamic interface" and xb.origin.line == 28


# --------------------------------------------------------------------------------------------------
# IPv6 (NAT66)


def test_ipv6_object_static_translates_a_prefix():
    fw = fw_for(
        "object network V6-LAN",
        " subnet 2001:db8:1::/64",
        "object network V6-PUB",
        " subnet 2001:db8:99::/64",
        "object network V6-LAN",
        " nat (inside,outside) static V6-PUB",
    )
    pkt = IPv6(src="2001:db8:1::abcd", dst="2001:db8:aaaa::1") / UDP(sport=1000, dport=53) / DNS()
    iface, out = one(fw, "inside", pkt)
    assert iface == "outside" and out.src == "2001:db8:99::abcd"
    ref = IPv6(bytes(out))
    del ref[UDP].chksum
    assert IPv6(bytes(ref))[UDP].chksum == out[UDP].chksum
    reply = IPv6(src="2001:db8:aaaa::1", dst="2001:db8:99::abcd") / UDP(sport=53, dport=1000) / DNS(qr=1)
    iface, back = one(fw, "outside", reply, 1.1)
    assert iface == "inside" and back.dst == "2001:db8:1::abcd"


# --------------------------------------------------------------------------------------------------
# The dialect


FULL = (
    HEAD
    + """\
object network POOL
 range 198.51.100.10 198.51.100.20
object network PATPOOL
 range 198.51.100.30 198.51.100.31
object network REMOTE
 subnet 172.16.0.0 255.255.0.0
object service HTTP
 service tcp destination eq www
object service HTTP8080
 service tcp destination eq 8080
object network obj_any
 nat (inside,outside) dynamic interface
object network WEB
 nat (inside,outside) static WEB-PUBLIC service tcp www 8080
object network LAN
 nat (inside,outside) dynamic pat-pool PATPOOL round-robin flat include-reserve interface
nat (inside,outside) source static LAN LAN destination static REMOTE REMOTE no-proxy-arp route-lookup
nat (inside,outside) source dynamic LAN interface destination static WEB-PUBLIC WEB service HTTP8080 HTTP
nat (any,outside) after-auto source dynamic any POOL interface description the rest
nat (inside,outside) source static WEB WEB-PUBLIC unidirectional inactive
"""
)


def test_verbatim_configuration_parses_without_warnings_and_prints_back_to_the_same_model():
    policy = parse(FULL, "full.cfg")
    assert policy.warnings == []
    text = render(policy)
    again = parse(text, "again.cfg")
    same_model(policy, again)
    assert (
        "object network LAN\n"
        " nat (inside,outside) dynamic pat-pool PATPOOL round-robin flat include-reserve interface\n"
    ) in text
    assert "object service HTTP\n service tcp destination eq www\n" in text
    lines = text.splitlines()
    twice = [i for i, line in enumerate(lines) if line.startswith("nat (")]
    auto = lines.index(" nat (inside,outside) dynamic interface")
    assert twice[0] < auto < twice[-1] and lines[twice[-1]].startswith("nat (any,outside) after-auto")
    inactive = [r for r in policy.nat_rules if r.inactive]
    assert len(inactive) == 1 and inactive[0].unidirectional


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (["object network LAN", " nat (inside,outside) dynamic NOPE"], "28:31: unknown object 'NOPE'"),
        (
            [
                "object network NET",
                " subnet 198.51.100.0 255.255.255.0",
                "object network LAN",
                " nat (inside,outside) dynamic NET",
            ],
            "30:31: object 'NET' holds a subnet; a dynamic NAT pool holds ranges and hosts",
        ),
        (
            ["access-list A extended permit ip any any", "nat (inside,outside) static WEB-PUBLIC"],
            "28:22: object NAT belongs in 'object network NAME'; twice NAT starts with 'source'",
        ),
        (
            ["nat (inside,nowhere) source static WEB WEB-PUBLIC"],
            "27:5: nat refers to unknown interface 'nowhere'",
        ),
        (
            [
                "object service WEBS",
                " service tcp destination range 80 90",
                "nat (inside,outside) source static WEB WEB-PUBLIC service WEBS WEBS",
            ],
            "29:59: service object 'WEBS': NAT needs 'eq' ports",
        ),
        (
            ["object network WEB", " nat (inside,outside) static WEB-PUBLIC bogus"],
            "28:41: unexpected 'bogus'",
        ),
    ],
)
def test_malformed_lines_fail_at_the_right_place(lines, error):
    with pytest.raises(ConfigError) as info:
        parse(HEAD + "".join(line + "\n" for line in lines), "e.cfg")
    assert str(info.value) == f"e.cfg:{error}"


def test_access_lists_match_the_service_a_service_object_names():
    text = (
        HEAD
        + "object service S\n service tcp destination eq www\n"
        + "access-list A extended permit object S any any\n"
    )
    (rule,) = parse(text).access_lists["A"].rules
    assert (rule.match.protocol, rule.match.destination_ports) == (6, (PortMatch("eq", 80),))
    assert rule.protocol_object == "object S"
    assert "access-list A extended permit object S any any" in render(parse(text))


def test_a_second_nat_line_in_an_object_replaces_the_first():
    policy = parse(
        HEAD
        + "object network WEB\n nat (inside,outside) dynamic interface\n"
        + " nat (inside,outside) static 192.0.2.5\n"
    )
    (rule,) = policy.nat_rules
    assert rule.kind == "static" and [str(n) for n in rule.mapped] == ["192.0.2.5/32"]


def test_extended_pat_is_kept_as_written_and_not_applied():
    text = HEAD + "object network LAN\n subnet 10.0.0.0 255.255.255.0\n"
    text += " nat (inside,outside) dynamic pat-pool LAN extended\n"
    policy = parse(text, "x.cfg")
    assert policy.nat_rules == []
    (w,) = [w for w in policy.warnings if w.gap]
    assert (w.gap, w.col) == ("extended PAT", 44)
    assert w.message.endswith("this NAT rule is kept as written and not applied")
    assert "object network LAN\n nat (inside,outside) dynamic pat-pool LAN extended\n" in render(policy)
    again = parse(render(policy))
    assert again.nat_rules == [] and [w.gap for w in again.warnings if w.gap] == ["extended PAT"]


def test_nat46_is_kept_as_written_and_not_applied():
    text = (
        HEAD + "object network V6\n host 2001:db8::5\nobject network WEB\n nat (inside,outside) static V6\n"
    )
    policy = parse(text, "x.cfg")
    assert [r for r in policy.nat_rules if r.real_object == "WEB"] == []
    (w,) = [w for w in policy.warnings if w.gap]
    assert (w.origin.line, w.col, w.gap) == (30, 2, "NAT46/NAT64")
    assert dict((o.line, f) for o, f in policy.fates)[30] == "not-modelled"
    assert "object network WEB\n nat (inside,outside) static V6\n" in render(policy)
