"""Packets the firewall builds, as scapy (and our own decoder) see them."""

from __future__ import annotations

from scapy.all import ICMP, IP, TCP, UDP, ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6PacketTooBig, IPv6, raw

from statewall import craft
from statewall.packet import decode, str_to_addr

A4, B4 = str_to_addr("10.0.0.1")[1], str_to_addr("198.51.100.7")[1]
A6, B6 = str_to_addr("2001:db8::1")[1], str_to_addr("2001:db8::2")[1]


def fresh(pkt) -> bytes:
    """Bytes of a scapy packet after recomputing its checksums."""
    pkt = pkt.copy()
    if IP in pkt:
        del pkt[IP].chksum
    for layer in (TCP, UDP, ICMP):
        if layer in pkt:
            del pkt[layer].chksum
    for layer in (ICMPv6EchoRequest, ICMPv6EchoReply, ICMPv6PacketTooBig):
        if layer in pkt:
            del pkt[layer].cksum
    return raw(pkt)


def test_tcp_rst_v4():
    data = craft.tcp_packet(4, A4, B4, 443, 51000, 1000, 2000, 0x14, ttl=255, ip_id=9)
    pkt = IP(bytes(data))
    assert pkt.src == "10.0.0.1" and pkt.dst == "198.51.100.7" and pkt.ttl == 255 and pkt.id == 9
    assert (pkt[TCP].sport, pkt[TCP].dport, pkt[TCP].seq, pkt[TCP].ack) == (443, 51000, 1000, 2000)
    assert pkt[TCP].flags == "RA"
    assert fresh(pkt) == bytes(data)
    assert decode(data).verify_checksums() is None


def test_tcp_synack_with_options_v6():
    opts = craft.tcp_options(
        craft.tcp_option_mss(1380),
        craft.tcp_option_sack_permitted(),
        craft.tcp_option_timestamps(7, 8),
        craft.tcp_option_wscale(7),
    )
    data = craft.tcp_packet(
        6, A6, B6, 80, 40000, 0xFFFFFFFF, 5, 0x12, window=65535, options=opts, payload=b"hi"
    )
    pkt = IPv6(bytes(data))
    assert dict((k, v) for k, v in pkt[TCP].options if k != "NOP") == {
        "MSS": 1380,
        "SAckOK": b"",
        "Timestamp": (7, 8),
        "WScale": 7,
    }
    assert fresh(pkt) == bytes(data)
    p = decode(data)
    assert (p.mss(), p.wscale(), p.sack_permitted(), p.timestamps()) == (1380, 7, True, (7, 8))
    assert p.payload() == b"hi" and p.doff % 4 == 0


def test_sack_option():
    opt = craft.tcp_option_sack([(1, 2), (3, 4)])
    p = decode(craft.tcp_packet(4, A4, B4, 1, 2, 0, 0, 0x10, options=opt))
    assert p.sack_blocks() == [(1, 2), (3, 4)]


def test_udp():
    for version, src, dst, cls in ((4, A4, B4, IP), (6, A6, B6, IPv6)):
        data = craft.udp_packet(version, src, dst, 5353, 53, b"query")
        pkt = cls(bytes(data))
        assert pkt[UDP].len == 13 and pkt[UDP].payload.load == b"query"
        assert fresh(pkt) == bytes(data)
    nocsum = craft.udp_packet(4, A4, B4, 1, 2, b"x", checksum=False)
    assert IP(bytes(nocsum))[UDP].chksum == 0 and decode(nocsum).verify_checksums() is None


def test_icmp_echo():
    data = craft.icmp_echo(4, A4, B4, 0x4242, 3, b"abc")
    pkt = IP(bytes(data))
    assert pkt[ICMP].type == 8 and pkt[ICMP].id == 0x4242 and pkt[ICMP].seq == 3
    assert fresh(pkt) == bytes(data)
    reply = craft.icmp_echo(6, A6, B6, 9, 4, b"abc", reply=True)
    pkt = IPv6(bytes(reply))
    assert pkt[ICMPv6EchoReply].id == 9 and pkt[ICMPv6EchoReply].data == b"abc"
    assert fresh(pkt) == bytes(reply)
    assert decode(reply).icmp_id == 9


def test_icmp_frag_needed_quotes_and_mtu():
    offending = craft.tcp_packet(4, A4, B4, 1, 2, 3, 4, 0x18, payload=b"p" * 1400, df=True)
    data = craft.icmp_error(4, B4, A4, 3, 4, bytes(offending), mtu=1300)
    assert len(data) == 576  # RFC 1812: as much as fits in 576 bytes
    pkt = IP(bytes(data))
    assert pkt[ICMP].type == 3 and pkt[ICMP].code == 4 and pkt[ICMP].nexthopmtu == 1300
    assert fresh(pkt) == bytes(data)
    p = decode(data)
    assert p.is_icmp_error and p.verify_checksums() is None
    inner = p.inner()
    assert (inner.src, inner.dst, inner.sport, inner.dport, inner.total_len) == (A4, B4, 1, 2, len(offending))


def test_icmp_time_exceeded_short_quote():
    offending = craft.udp_packet(4, A4, B4, 1, 2, b"x")
    data = craft.icmp_error(4, B4, A4, 11, 0, bytes(offending))
    assert len(data) == 20 + 8 + len(offending)
    assert decode(data).inner().dport == 2


def test_icmpv6_packet_too_big():
    offending = craft.udp_packet(6, A6, B6, 1, 2, b"u" * 1400)
    data = craft.icmp_error(6, B6, A6, 2, 0, bytes(offending), mtu=1280)
    assert len(data) == 1280  # RFC 4443 2.4(c)
    pkt = IPv6(bytes(data))
    assert pkt[ICMPv6PacketTooBig].mtu == 1280
    assert fresh(pkt) == bytes(data)
    p = decode(data)
    assert p.verify_checksums() is None and p.inner().sport == 1 and p.inner().udp_len == 1408


def test_reset_for_a_syn_and_for_an_ack():
    syn = decode(craft.tcp_packet(4, A4, B4, 40000, 80, 1000, 0, 0x02, payload=b"ab"))
    rst = IP(bytes(craft.tcp_reset_for(syn)))
    assert (rst.src, rst.dst, rst[TCP].sport, rst[TCP].dport) == ("198.51.100.7", "10.0.0.1", 80, 40000)
    assert rst[TCP].flags == "RA" and rst[TCP].seq == 0 and rst[TCP].ack == 1003
    assert fresh(rst) == raw(rst)
    ack = decode(craft.tcp_packet(6, A6, B6, 40000, 80, 5, 0xFFFFFFFF, 0x10))
    rst6 = IPv6(bytes(craft.tcp_reset_for(ack)))
    assert rst6[TCP].flags == "R" and rst6[TCP].seq == 0xFFFFFFFF and rst6[TCP].ack == 0
