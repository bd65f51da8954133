"""ICMP through NAT (RFC 5508): errors quoting a tracked connection are RELATED and forwarded with the
outer destination, the quoted packet's addresses, ports or echo identifier and every checksum translated
back; errors about nothing tracked are dropped (313005). The ASA here inspects ICMP and ICMP errors
(``inspect icmp``, ``inspect icmp error``): echoes have sessions, errors are matched to connections.
The firewall itself answers a DF packet too large for the egress MTU with fragmentation-needed, and an
IPv6 one with packet-too-big."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6PacketTooBig, IPerror6, IPv6
from scapy.packet import Raw

from fixtures import DUAL_STACK_INTERFACES
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import Drop, DropReason, IcmpSent
from statewall.logfmt.asa import format_event

CONFIG = (
    "ASA Version 9.1(2)\nhostname fw\n"
    + DUAL_STACK_INTERFACES
    + """\
mtu outside 1400
mtu inside 1500
route outside 0.0.0.0 0.0.0.0 192.0.2.254 1
ipv6 route outside ::/0 2001:db8:ffff::fe
object network obj_any
 subnet 0.0.0.0 0.0.0.0
 nat (inside,outside) dynamic interface
object network V6-LAN
 subnet 2001:db8:1::/64
object network V6-PUB
 subnet 2001:db8:99::/64
object network V6-LAN
 nat (inside,outside) static V6-PUB
object network WEB
 host 10.0.0.5
 nat (inside,outside) static 192.0.2.5
access-list OUTSIDE_IN extended permit udp any object WEB eq 69
access-group OUTSIDE_IN in interface outside
policy-map global_policy
 class inspection_default
  inspect icmp
  inspect icmp error
service-policy global_policy global
"""
)
MAPPED = "192.0.2.1"
SERVER = "203.0.113.9"
ROUTER = "198.51.100.254"  # a hop beyond the firewall


def fw() -> Firewall:
    return Firewall(parse(CONFIG, "icmp.cfg"))


def out_of(res, iface: str):
    pkts = [data for i, data in res.packets if i == iface]
    assert len(pkts) == 1, [str(e) for e in res.events]
    return pkts[0]


def checksums_ok(data: bytes) -> bool:
    """Every checksum scapy can recompute - outer IP and ICMP, and the quoted L4 header when the quote
    is whole - equals what the firewall wrote."""
    pkt = IP(bytes(data))
    ref = IP(bytes(data))
    del ref.chksum
    del ref[ICMP].chksum
    ref = IP(bytes(ref))
    return (pkt.chksum, pkt[ICMP].chksum) == (ref.chksum, ref[ICMP].chksum)


def inner_l4_checksum_ok(quoted: bytes) -> bool:
    """The quoted packet is whole: its own L4 checksum verifies (the NAT fixed it too, RFC 5508)."""
    q = IP(quoted)
    ref = IP(quoted)
    layer = ref[TCP] if TCP in ref else ref[UDP] if UDP in ref else ref[ICMP]
    del layer.chksum
    ref = IP(bytes(ref))
    l4 = TCP if TCP in q else UDP if UDP in q else ICMP
    return q[l4].chksum == ref[l4].chksum


def test_udp_port_unreachable_quoting_a_pat_flow_comes_back_translated():
    f = fw()
    f.receive("inside", bytes(IP(src="10.0.0.9", dst=SERVER) / UDP(sport=3000, dport=69) / b"x"), 1.0)
    sent = IP(
        bytes(
            out_of(
                f.receive(
                    "inside", bytes(IP(src="10.0.0.2", dst=SERVER) / UDP(sport=3000, dport=69) / b"rrq"), 1.0
                ),
                "outside",
            )
        )
    )
    assert sent.src == MAPPED and sent[UDP].sport != 3000  # moved: 3000 was taken
    err = IP(src=SERVER, dst=MAPPED) / ICMP(type=3, code=3) / bytes(sent)
    back = IP(bytes(out_of(f.receive("outside", bytes(err), 1.1), "inside")))
    assert (back.src, back.dst) == (SERVER, "10.0.0.2")
    assert (back[IPerror].src, back[IPerror].dst, back[UDPerror].sport, back[UDPerror].dport) == (
        "10.0.0.2",
        SERVER,
        3000,
        69,
    )
    assert checksums_ok(bytes(back))
    assert inner_l4_checksum_ok(bytes(back[ICMP].payload))


def test_tcp_error_from_a_router_keeps_the_routers_address():
    f = fw()
    syn = IP(src="10.0.0.2", dst=SERVER, ttl=64) / TCP(sport=40000, dport=80, flags="S", seq=1000)
    sent = IP(bytes(out_of(f.receive("inside", bytes(syn), 1.0), "outside")))
    err = IP(src=ROUTER, dst=MAPPED) / ICMP(type=11, code=0) / bytes(sent)
    back = IP(bytes(out_of(f.receive("outside", bytes(err), 1.1), "inside")))
    assert (back.src, back.dst) == (ROUTER, "10.0.0.2") and back.ttl == 64  # the ASA keeps the TTL
    assert (back[IPerror].src, back[TCPerror].sport) == ("10.0.0.2", 40000)
    # The quoted sequence number is the client's own again (the firewall randomized it on the way out).
    assert back[TCPerror].seq == 1000
    assert checksums_ok(bytes(back)) and inner_l4_checksum_ok(bytes(back[ICMP].payload))


def test_echo_identifier_inside_the_quote_is_translated_back():
    f = fw()
    f.receive("inside", bytes(IP(src="10.0.0.9", dst=SERVER) / ICMP(type=8, id=4242, seq=1)), 1.0)
    req = IP(src="10.0.0.2", dst=SERVER, ttl=2) / ICMP(type=8, id=4242, seq=7) / b"ping"
    sent = IP(bytes(out_of(f.receive("inside", bytes(req), 1.0), "outside")))
    assert sent[ICMP].id != 4242
    err = IP(src=ROUTER, dst=MAPPED) / ICMP(type=11, code=0) / bytes(sent)
    back = IP(bytes(out_of(f.receive("outside", bytes(err), 1.1), "inside")))
    quoted = IP(bytes(back[ICMP].payload))
    assert back.dst == "10.0.0.2" and quoted.src == "10.0.0.2" and quoted[ICMP].id == 4242
    assert quoted[ICMP].seq == 7 and bytes(quoted[ICMP].payload) == b"ping"
    assert checksums_ok(bytes(back)) and inner_l4_checksum_ok(bytes(quoted))


def test_error_from_an_inside_server_behind_a_static_leaves_with_the_mapped_addresses():
    f = fw()
    req = IP(src=SERVER, dst="192.0.2.5") / UDP(sport=5000, dport=69) / b"rrq"
    fwd = IP(bytes(out_of(f.receive("outside", bytes(req), 1.0), "inside")))
    assert fwd.dst == "10.0.0.5"
    err = IP(src="10.0.0.5", dst=SERVER) / ICMP(type=3, code=3) / bytes(fwd)
    out = IP(bytes(out_of(f.receive("inside", bytes(err), 1.1), "outside")))
    assert (out.src, out.dst) == ("192.0.2.5", SERVER)
    assert (out[IPerror].src, out[IPerror].dst) == (SERVER, "192.0.2.5")
    assert checksums_ok(bytes(out)) and inner_l4_checksum_ok(bytes(out[ICMP].payload))


def test_error_quoting_no_connection_is_dropped_with_313005():
    f = fw()
    quoted = bytes(IP(src=MAPPED, dst=SERVER) / UDP(sport=9999, dport=53))
    res = f.receive("outside", bytes(IP(src=SERVER, dst=MAPPED) / ICMP(type=3, code=3) / quoted), 1.0)
    assert res.packets == []
    assert [d.reason for d in res.events if isinstance(d, Drop)] == [DropReason.ICMP_NO_SESSION]


def test_ipv6_packet_too_big_through_nat66_is_translated_back():
    f = fw()
    pkt = IPv6(src="2001:db8:1::abcd", dst="2001:db8:aaaa::1") / UDP(sport=1000, dport=53) / (b"d" * 100)
    sent = IPv6(bytes(out_of(f.receive("inside", bytes(pkt), 1.0), "outside")))
    assert sent.src == "2001:db8:99::abcd"
    ptb = IPv6(src="2001:db8:ffff::fe", dst=sent.src) / ICMPv6PacketTooBig(mtu=1280) / bytes(sent)
    back = IPv6(bytes(out_of(f.receive("outside", bytes(ptb), 1.1), "inside")))
    assert back.dst == "2001:db8:1::abcd" and back[ICMPv6PacketTooBig].mtu == 1280
    assert back[IPerror6].src == "2001:db8:1::abcd"
    ref = IPv6(bytes(back))
    del ref[ICMPv6PacketTooBig].cksum
    assert IPv6(bytes(ref))[ICMPv6PacketTooBig].cksum == back[ICMPv6PacketTooBig].cksum
    quoted = IPv6(bytes(back[ICMPv6PacketTooBig].payload))
    qref = IPv6(bytes(quoted))
    del qref[UDP].chksum
    assert IPv6(bytes(qref))[UDP].chksum == quoted[UDP].chksum


# --------------------------------------------------------------------------------------------------
# Errors the firewall sends


def test_df_packet_larger_than_the_egress_mtu_gets_fragmentation_needed():
    f = fw()
    big = IP(src="10.0.0.2", dst=SERVER, flags="DF") / UDP(sport=4000, dport=9) / Raw(b"z" * 1472)  # 1500
    res = f.receive("inside", bytes(big), 1.0)
    (iface, data) = res.packets[0]
    assert len(res.packets) == 1 and iface == "inside"
    err = IP(bytes(data))
    assert (err.src, err.dst, err[ICMP].type, err[ICMP].code) == ("10.0.0.1", "10.0.0.2", 3, 4)
    assert err[ICMP].nexthopmtu == 1400
    # The quote is the packet as the host sent it (untranslated), so the host can match it.
    assert (err[IPerror].src, err[UDPerror].sport) == ("10.0.0.2", 4000)
    assert checksums_ok(data)
    (drop,) = [e for e in res.events if isinstance(e, Drop)]
    assert drop.reason is DropReason.INVALID_IP_LENGTH
    assert [(e.icmp_type, e.icmp_code, e.reason) for e in res.events if isinstance(e, IcmpSent)] == [
        (3, 4, "fragmentation needed, MTU 1400")
    ]
    # Without DF the packet goes on (the next hop fragments), and at the MTU exactly it fits.
    res = f.receive(
        "inside", bytes(IP(src="10.0.0.2", dst=SERVER) / UDP(sport=4000, dport=9) / (b"z" * 1472)), 2.0
    )
    assert [i for i, _ in res.packets] == ["outside"]
    fits = IP(src="10.0.0.2", dst=SERVER, flags="DF") / UDP(sport=4001, dport=9) / (b"z" * 1372)
    assert [i for i, _ in f.receive("inside", bytes(fits), 3.0).packets] == ["outside"]


def test_ipv6_packet_larger_than_the_egress_mtu_gets_packet_too_big():
    f = fw()
    big = IPv6(src="2001:db8:1::abcd", dst="2001:db8:aaaa::1") / ICMPv6EchoRequest(id=1, data=b"y" * 1400)
    res = f.receive("inside", bytes(big), 1.0)
    (iface, data) = res.packets[0]
    err = IPv6(bytes(data))
    assert iface == "inside" and err.dst == "2001:db8:1::abcd" and err.src == "2001:db8:1::1"
    assert err[ICMPv6PacketTooBig].mtu == 1400
    assert len(data) <= 1280  # the quote is cut to fit the IPv6 minimum MTU (RFC 4443)
    assert IPerror6(bytes(err[ICMPv6PacketTooBig].payload)).src == "2001:db8:1::abcd"
    ref = IPv6(bytes(data))
    del ref[ICMPv6PacketTooBig].cksum
    assert IPv6(bytes(ref))[ICMPv6PacketTooBig].cksum == err[ICMPv6PacketTooBig].cksum


def test_the_firewalls_own_errors_are_not_logged_as_drops_of_other_flows():
    f = fw()
    big = IP(src="10.0.0.2", dst=SERVER, flags="DF") / UDP(sport=4000, dport=9) / Raw(b"z" * 1472)
    lines = [
        line
        for ev in f.receive("inside", bytes(big), 1.0).events
        for line in format_event(ev, timestamp=False)
    ]
    assert not any("305006" in line or "313005" in line for line in lines)
