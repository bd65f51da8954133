"""Differential against the kernel: packets a router never forwards as unicast (multicast, broadcast,
martian and link-local addresses) and packets with a bad IPv4 header checksum.

The namespaces of tests/netns_util.py (a -- fw -- b, fw forwarding with conntrack); each packet is
injected from ``a`` towards ``fb``'s side. The kernel must forward none of them, and answer only where
Linux answers (a link-local source: ICMPv6 destination unreachable, beyond scope; a link-local
destination goes back onto its own link, as ip6_forward routes it); statewall's
``Classifier`` must name each of them, with the Linux reason or the box itself as their destination,
and leave the ordinary packets alone; statewall's engine, running the router as an iptables policy,
must forward the same (nothing, or the ordinary packets byte for byte) and answer the same.
``icmp_error_forbidden`` must agree with the kernel's silence
about a hop-limit-1 multicast packet.

Needs root, ``ip`` and ``nft``; skipped with the reason otherwise. Namespaces are removed even on
failure.
"""

from __future__ import annotations

import ipaddress

import pytest
from scapy.all import IP, UDP, IPv6, Raw

from netns_util import Lab, missing_prerequisites, sh
from statewall.addrclass import Classifier, icmp_error_forbidden
from statewall.config import parse_policy
from statewall.engine import Firewall
from statewall.events import ConnBuilt, CtEvent, Drop
from statewall.policy import Interface, Policy
from test_reassembly_kernel import _Router

_why_not = missing_prerequisites()

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(_why_not is not None, reason=f"kernel differential: {_why_not}"),
]


@pytest.fixture(scope="module")
def router():
    with Lab() as lab:
        r = _Router(lab)
        # a0 answers for the link-local and on-link addresses the cases send to (no neighbour
        # discovery to wait for, and no "address unreachable" later).
        for addr in ("fe80::1", "fe80::9", "fd77:1::7"):
            mac = lab.MACS["a0"]
            sh("ip", "-n", lab.fw, "neigh", "replace", addr, "lladdr", mac, "dev", "fa", "nud", "permanent")
        yield r
        r.cap.close()
        r.inject.close()


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    # fw's addresses, as statewall's policy would state them.
    policy = Policy()
    policy.interfaces["fa"] = Interface(
        "fa",
        ipv4=[ipaddress.IPv4Interface("10.77.1.254/24")],
        ipv6=[ipaddress.IPv6Interface("fd77:1::fe/64")],
    )
    policy.interfaces["fb"] = Interface(
        "fb",
        ipv4=[ipaddress.IPv4Interface("10.77.2.254/24")],
        ipv6=[ipaddress.IPv6Interface("fd77:2::fe/64")],
    )
    return Classifier(policy)


def _u4(src, dst, ttl=5):
    return IP(src=src, dst=dst, ttl=ttl) / UDP(sport=5355, dport=5355) / Raw(b"q")


def _u6(src, dst, hlim=5):
    return IPv6(src=src, dst=dst, hlim=hlim) / UDP(sport=5353, dport=5353) / Raw(b"q")


# name: (packet, the Linux reason keyword or "to the box", what the kernel answers on the way back)
CASES = {
    "LLMNR with TTL 1": (_u4("10.77.1.1", "224.0.0.252", ttl=1), "mc-not-forwarded", None),
    "a private multicast group": (_u4("10.77.1.1", "239.1.2.3"), "mc-not-forwarded", None),
    "limited broadcast": (_u4("10.77.1.1", "255.255.255.255"), "to the box", None),
    "directed broadcast of fb's network": (_u4("10.77.1.1", "10.77.2.255"), "to the box", None),
    "a 0.0.0.0/8 source": (_u4("0.1.2.3", "10.77.2.100"), "martian-source", None),
    "a loopback source": (_u4("127.0.0.1", "10.77.2.100"), "martian-source", None),
    "mDNS from a link-local address with hop limit 1": (
        _u6("fe80::1", "ff02::fb", hlim=1),
        "mc-not-forwarded",
        None,
    ),
    "a site-local multicast group": (_u6("fd77:1::1", "ff05::1:3"), "mc-not-forwarded", None),
    "a link-local source to a global address": (_u6("fe80::1", "fd77:2::100"), "ipv6-beyond-scope", (1, 2)),
}

# Link-local addresses that ip6_forward routes back onto the arrival link (fa), hop limit lowered, or
# answers: (packet, what comes back on fa: "itself" or the ICMPv6 error's (type, code)).
HAIRPIN = {
    "a link-local destination": (_u6("fd77:1::1", "fe80::9"), "itself"),
    "link-local source and destination": (_u6("fe80::1", "fe80::9"), "itself"),
    "a link-local source to a host on its own link": (_u6("fe80::1", "fd77:1::7"), "itself"),
    "a link-local destination with hop limit 1": (_u6("fd77:1::1", "fe80::9", hlim=1), (3, 0)),
    "a link-local source with hop limit 1": (_u6("fe80::1", "fd77:2::100", hlim=1), (3, 0)),
}


def _errors(back: list[bytes]) -> list[tuple[int, int]]:
    """The ICMP errors among what fw sent back (neighbour discovery and redirects left out: for a
    link-local destination the kernel sends the packet back onto its own link, never to another)."""
    errors = []
    for p in back:
        if p[0] >> 4 == 4 and IP(p).proto == 1 and IP(p).payload.type in (3, 11, 12):
            errors.append((IP(p).payload.type, IP(p).payload.code))
        elif p[0] >> 4 == 6 and IPv6(p).nh == 58 and IPv6(p).payload.type < 128:
            errors.append((IPv6(p).payload.type, IPv6(p).payload.code))
    return errors


def _addrs(pkt):
    ip = pkt if pkt.haslayer(IP) and not pkt.haslayer(IPv6) else pkt[IPv6]
    s, d = ipaddress.ip_address(ip.src), ipaddress.ip_address(ip.dst)
    return s.version, int(s), int(d)


def _engine():
    """statewall's engine running the lab's router as an iptables policy."""
    policy = parse_policy(
        "#@statewall interface fa address 10.77.1.254/24 address fd77:1::fe/64\n"
        "#@statewall interface fb address 10.77.2.254/24 address fd77:2::fe/64\n"
        "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n",
        "lab.rules",
        dialect="iptables",
    )
    return Firewall(policy)


def _through_engine(pkt) -> tuple[list[bytes], list[bytes], list]:
    res = _engine().receive("fa", bytes(pkt), 1.0)
    out = [bytes(p) for iface, p in res.packets if iface == "fb"]
    back = [bytes(p) for iface, p in res.packets if iface == "fa"]
    return out, back, res.events


@pytest.mark.parametrize("case", list(CASES))
def test_the_kernel_forwards_none_and_statewall_names_each(router, classifier, case):
    pkt, linux, answer = CASES[case]
    out, back = router.send([pkt])
    assert out == [], "the kernel forwarded it"
    assert _errors(back) == ([answer] if answer else [])
    version, src, dst = _addrs(pkt)
    special = classifier.check(version, src, dst)
    assert special is not None
    assert ("to the box" if special.to_box else special.linux.keyword) == linux
    assert special.icmp == answer
    # The engine: nothing forwarded, the same answer, the reason named (a broadcast: taken in).
    out, back, events = _through_engine(pkt)
    assert out == [] and _errors(back) == ([answer] if answer else [])
    if linux == "to the box":
        assert [type(e).__name__ for e in events if not isinstance(e, (ConnBuilt, CtEvent))] == [
            "LocalDelivery"
        ]
    else:
        assert [d.reason.keyword for d in events if isinstance(d, Drop)] == [linux]
    if version == 4 and pkt[IP].ttl == 1:
        forbidden = icmp_error_forbidden(version, src, dst, proto=17, icmp_error=False)
        assert forbidden == "the packet was sent to a multicast or broadcast address"


@pytest.mark.parametrize("case", list(HAIRPIN))
def test_link_local_addresses_go_back_onto_their_link_as_in_ip6_forward(router, case):
    pkt, answer = HAIRPIN[case]
    out, back = router.send([pkt])
    # Neighbour discovery (solicitations, the redirect the kernel may add: not modelled) left out, and
    # the kernel's own multicast to ff02:: (its MLD reports, at random delays after the addresses
    # came up: one lands in the capture window when the machine is busy).
    back = [
        p for p in back if not (IPv6(p).nh == 58 and IPv6(p).payload.type >= 133) and p[24:26] != b"\xff\x02"
    ]
    engine_out, engine_back, events = _through_engine(pkt)
    assert out == [] and engine_out == []
    if answer == "itself":
        lowered = IPv6(bytes(pkt))
        lowered.hlim -= 1
        assert back == [bytes(lowered)] and engine_back == back
        assert not [e for e in events if isinstance(e, Drop)]
    else:
        assert _errors(back) == [answer] and _errors(engine_back) == [answer]
        # (The kernel answers a link-local source from fa's own link-local address, which statewall
        # does not know: the addresses are not compared.)


def test_ordinary_packets_pass_and_hop_limit_1_draws_time_exceeded(router, classifier):
    for pkt in (_u4("10.77.1.1", "10.77.2.100"), _u6("fd77:1::1", "fd77:2::100")):
        out, back = router.send([pkt])
        assert len(out) == 1 and _errors(back) == []
        assert classifier.check(*_addrs(pkt)) is None
        engine_out, _, _ = _through_engine(pkt)
        assert engine_out == out
    out, back = router.send([_u4("10.77.1.1", "10.77.2.100", ttl=1)])
    assert out == [] and _errors(back) == [(11, 0)]
    assert icmp_error_forbidden(*_addrs(_u4("10.77.1.1", "10.77.2.100")), proto=17, icmp_error=False) is None


def test_a_bad_ipv4_header_checksum_is_not_forwarded(router):
    pkt = IP(bytes(_u4("10.77.1.1", "10.77.2.100")))
    pkt.chksum ^= 0x1234
    out, back = router.send([pkt])
    assert out == [] and _errors(back) == []
    out, back, events = _through_engine(pkt)
    assert out == [] and back == [] and [d.reason.keyword for d in events] == ["bad-ip-cksum"]


# The box's own addresses as a packet's source, arriving on fa from its link: IPv4 drops it in the
# routing decision (fib_validate_source: a martian source, accept_local 0), IPv6 forwards it.
OWN_SOURCE = {
    "fa's own address": (_u4("10.77.1.254", "10.77.2.100"), "ip-local-source"),
    "fb's own address, arriving on fa": (_u4("10.77.2.254", "10.77.2.100"), "ip-local-source"),
    "its own address with TTL 1 (no Time Exceeded: refused before ip_forward)": (
        _u4("10.77.1.254", "10.77.2.100", ttl=1),
        "ip-local-source",
    ),
    "its own address to the box itself": (_u4("10.77.2.254", "10.77.1.254"), "ip-local-source"),
    "IPv6: fa's own address": (_u6("fd77:1::fe", "fd77:2::100"), "forwarded"),
    "IPv6: fb's own address, arriving on fa": (_u6("fd77:2::fe", "fd77:2::100"), "forwarded"),
    "IPv6: its own address with hop limit 1 (the error goes to the box itself)": (
        _u6("fd77:1::fe", "fd77:2::100", hlim=1),
        "ttl-exceeded",
    ),
}


@pytest.mark.parametrize("case", list(OWN_SOURCE))
def test_the_boxs_own_address_as_source_from_a_link(router, monkeypatch, case):
    import socket

    import test_reassembly_kernel

    # What fw sends from fb's own addresses is captured too (the lab's filter keeps fa's only).
    ours = {(4, socket.inet_aton("10.77.2.254")), (6, socket.inet_pton(socket.AF_INET6, "fd77:2::fe"))}
    monkeypatch.setattr(test_reassembly_kernel, "_OURS", test_reassembly_kernel._OURS | ours)
    pkt, linux = OWN_SOURCE[case]
    out, back = router.send([pkt])
    back = _errors(back)  # neighbour discovery and MLD left out
    engine_out, engine_back, events = _through_engine(pkt)
    drops = [d.reason.keyword for d in events if isinstance(d, Drop)]
    if linux == "forwarded":
        lowered = IPv6(bytes(pkt))
        lowered.hlim -= 1
        assert out == [bytes(lowered)] and back == []
        assert engine_out == out and engine_back == [] and drops == []
    else:
        assert out == [] and back == [], "the kernel forwarded or answered it"
        assert engine_out == [] and engine_back == []
        assert drops == [linux]
        # Refused before it could become a connection: conntrack -E says nothing.
        assert not [e for e in events if isinstance(e, (ConnBuilt, CtEvent))]
