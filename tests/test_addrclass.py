"""Addresses never forwarded as unicast, and when ICMP errors may be sent (statewall.addrclass).

Given a firewall with inside 10.1.1.0/24 and outside 192.0.2.0/24, these packets are not unicast
traffic to forward: each box names why, or (Linux) takes the broadcast for itself.
"""

from __future__ import annotations

import ipaddress

import pytest
from scapy.all import ICMP, IP, UDP, IPv6, Raw

from statewall.addrclass import Classifier, icmp_error_forbidden
from statewall.packet import decode
from statewall.policy import Interface, Policy


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    policy = Policy()
    policy.interfaces["inside"] = Interface("inside", ipv4=[ipaddress.IPv4Interface("10.1.1.1/24")])
    policy.interfaces["outside"] = Interface("outside", ipv4=[ipaddress.IPv4Interface("192.0.2.1/24")])
    policy.interfaces["link"] = Interface("link", ipv4=[ipaddress.IPv4Interface("198.51.100.0/31")])
    return Classifier(policy)


def _check(classifier, src: str, dst: str):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return classifier.check(s.version, int(s), int(d))


@pytest.mark.parametrize(
    ("src", "dst", "asa", "linux", "to_box"),
    [
        # LLMNR, a private multicast group: no multicast routing, nowhere to go.
        ("10.1.1.5", "224.0.0.252", "no-mcast-intrf", "mc-not-forwarded", False),
        ("10.1.1.5", "239.1.2.3", "no-mcast-intrf", "mc-not-forwarded", False),
        # Broadcasts: the ASA refuses them through the box; Linux delivers them to itself (INPUT).
        ("10.1.1.5", "255.255.255.255", "sp-security-failed", None, True),
        ("10.1.1.5", "192.0.2.255", "sp-security-failed", None, True),
        ("0.0.0.0", "255.255.255.255", "sp-security-failed", None, True),
        # Martian sources and destinations.
        ("0.1.2.3", "192.0.2.9", "sp-security-failed", "martian-source", False),
        ("127.0.0.1", "192.0.2.9", "sp-security-failed", "martian-source", False),
        ("224.0.0.5", "192.0.2.9", "sp-security-failed", "martian-source", False),
        ("240.0.0.1", "192.0.2.9", "sp-security-failed", "martian-source", False),
        ("10.1.1.5", "0.0.0.7", "sp-security-failed", "martian-destination", False),
        ("10.1.1.5", "127.0.0.1", "sp-security-failed", "martian-destination", False),
        # IPv6: mDNS from a link-local address, link-local either side, multicast.
        ("fe80::1", "ff02::fb", "ipv6-sp-security-failed", "mc-not-forwarded", False),
        ("2001:db8::1", "ff05::1:3", "ipv6-sp-security-failed", "mc-not-forwarded", False),
        ("fe80::1", "2001:db8:1::9", "ipv6-sp-security-failed", "ipv6-beyond-scope", False),
        # (a link-local destination: Linux routes it back onto its own link, test_linux_routes_...)
        ("2001:db8::1", "fe80::9", "ipv6-sp-security-failed", None, False),
        ("ff02::1", "2001:db8:1::9", "ipv6-sp-security-failed", "ipv6-in-addr-errors", False),
        ("::1", "2001:db8:1::9", "ipv6-sp-security-failed", "ipv6-in-addr-errors", False),
        ("2001:db8::1", "::", "ipv6-sp-security-failed", "ipv6-in-addr-errors", False),
    ],
)
def test_special_addresses_are_never_forwarded_as_unicast(classifier, src, dst, asa, linux, to_box):
    special = _check(classifier, src, dst)
    assert special is not None
    assert special.asa.keyword == asa
    assert (special.linux.keyword if special.linux else None) == linux
    assert special.to_box is to_box


def test_ordinary_unicast_and_a_slash_31_are_left_alone(classifier):
    assert _check(classifier, "10.1.1.5", "192.0.2.9") is None
    assert _check(classifier, "10.1.1.5", "198.51.100.1") is None  # a /31 has no broadcast
    assert _check(classifier, "10.1.1.5", "10.1.1.0") is None  # a network address is a host on Linux
    assert _check(classifier, "2001:db8::1", "2001:db8:1::9") is None


def test_linux_answers_a_link_local_source_with_beyond_scope():
    special = _check(Classifier(Policy()), "fe80::1", "2001:db8:1::9")
    assert special.icmp == (1, 2) and special.linux_routed
    assert "multicast routing is not modelled" in _check(Classifier(Policy()), "10.0.0.1", "239.1.2.3").what


def _why(pkt, classifier=None, error=None):
    p = decode(bytearray(bytes(pkt)))
    broadcast = classifier.is_broadcast(p.version, p.dst) if classifier else False
    return icmp_error_forbidden(
        p.version,
        p.src,
        p.dst,
        proto=p.proto,
        icmp_error=p.is_icmp_error,
        frag_offset=p.frag_offset,
        broadcast=broadcast,
        error=error,
    )


def test_no_icmp_error_about_multicast_broadcast_errors_fragments_or_non_hosts(classifier):
    llmnr = IP(src="10.1.1.5", dst="224.0.0.252", ttl=1) / UDP(sport=5355, dport=5355) / Raw(b"q")
    assert _why(llmnr) == "the packet was sent to a multicast or broadcast address"
    bcast = IP(src="10.1.1.5", dst="192.0.2.255", ttl=1) / UDP() / Raw(b"q")
    assert _why(bcast, classifier) == "the packet was sent to a multicast or broadcast address"
    unreach = (
        IP(src="10.1.1.5", dst="192.0.2.9")
        / ICMP(type=3, code=3)
        / IP(src="192.0.2.9", dst="10.1.1.5")
        / UDP()
    )
    assert _why(unreach) == "the packet is an ICMP error"
    later = IP(src="10.1.1.5", dst="192.0.2.9", frag=100, proto=17) / Raw(b"z" * 16)
    assert _why(later) == "the packet is a non-first fragment"
    assert _why(IP(src="0.0.0.0", dst="192.0.2.9") / UDP()) == "the packet's source does not name one host"
    mdns6 = IPv6(src="fe80::1", dst="ff02::fb", hlim=1) / UDP(sport=5353, dport=5353)
    assert _why(mdns6, error=(3, 0)) == "the packet was sent to a multicast address"
    assert _why(mdns6, error=(2, 0)) is None  # packet too big may answer a multicast packet (RFC 4443)
    assert _why(IP(src="10.1.1.5", dst="192.0.2.9", ttl=1) / UDP()) is None
    assert _why(IPv6(src="2001:db8::1", dst="2001:db8:1::9", hlim=1) / UDP()) is None


IPT6 = """#@statewall interface fa address 2001:db8:1::fe/64
#@statewall interface fb address 2001:db8:2::fe/64
#@statewall interface v4only address 10.9.9.1/24
*filter
:FORWARD ACCEPT [0:0]
COMMIT
"""


def _nf(pkt, iface="fa"):
    from statewall.config import parse_policy
    from statewall.engine import Firewall
    from statewall.events import Drop

    res = Firewall(parse_policy(IPT6, "ll.rules", dialect="iptables")).receive(iface, bytes(pkt), 1.0)
    sent = [(i, IPv6(bytes(b))) for i, b in res.packets]
    return sent, [e.reason.keyword for e in res.events if isinstance(e, Drop)]


def _u6(src, dst, hlim=5):
    return IPv6(src=src, dst=dst, hlim=hlim) / UDP(sport=5353, dport=5353) / Raw(b"q")


def test_linux_routes_link_local_addresses_as_ip6_forward_does():
    # ip6_forward (net/ipv6/ip6_output.c), as the kernel differential in test_addrclass_kernel.py saw:
    # a link-local destination is routed on the arrival device only and goes back onto that link,
    # hop limit lowered; so does a link-local source whose destination lies on the arrival link (the
    # redirect branch does not look at the source).
    for src, dst in (("2001:db8:1::1", "fe80::9"), ("fe80::1", "fe80::9"), ("fe80::1", "2001:db8:1::7")):
        sent, drops = _nf(_u6(src, dst))
        assert drops == [] and [(i, p.src, p.dst, p.hlim) for i, p in sent] == [("fa", src, dst, 4)]
    # A link-local source leaving by another interface: beyond scope of source address (1, 2).
    sent, drops = _nf(_u6("fe80::1", "2001:db8:2::100"))
    assert drops == ["ipv6-beyond-scope"]
    assert [(i, p.payload.type, p.payload.code) for i, p in sent] == [("fa", 1, 2)]
    # The hop limit is checked first: Time Exceeded, not beyond scope.
    for src, dst in (("fe80::1", "2001:db8:2::100"), ("2001:db8:1::1", "fe80::9")):
        sent, drops = _nf(_u6(src, dst, hlim=1))
        assert drops == ["ttl-exceeded"] and [(p.payload.type, p.payload.code) for _, p in sent] == [(3, 0)]
    # An interface without IPv6 has no fe80::/64 route: nothing is forwarded.
    sent, drops = _nf(_u6("2001:db8:1::1", "fe80::9"), iface="v4only")
    assert [i for i, p in sent if p.payload.name == "UDP"] == [] and drops == ["no-route"]
