"""Fragment reassembly as Linux and the ASA do it (statewall.reassembly), fragments crafted with scapy.

Given these fragments arriving on an interface, expect this datagram, these discards (with the reason
and syslog line each box gives) and these fragments leaving.
"""

from __future__ import annotations

import pytest
from scapy.all import ICMP, IP, TCP, UDP, IPv6, IPv6ExtHdrFragment, Raw, fragment, fragment6

from statewall.checksum import verify
from statewall.events import Drop, DropReason
from statewall.logfmt.asa import format_event
from statewall.policy import DefragSettings, FragmentSettings
from statewall.reassembly import AsaFragmentDb, LinuxDefrag, fragment_out, is_fragment


def _udp(size: int = 3000, **ip) -> IP:
    fields = {"src": "10.0.0.1", "dst": "192.0.2.9", "id": 4242, "ttl": 64, **ip}
    return IP(**fields) / UDP(sport=1000, dport=2000) / Raw(b"x" * size)


_V6 = IPv6(src="2001:db8::1", dst="2001:db8:1::9", hlim=64)


def _feed(box, frags, now: float = 0.0, iface: str = "inside"):
    """Push every fragment; the datagrams completed and the discards, in order."""
    done, discards = [], []
    for f in frags:
        res = box.push(iface, bytearray(bytes(f)), now)
        assert res is not None, "a fragment must be taken by the reassembler"
        dg, dropped = res
        if dg is not None:
            done.append(dg)
        discards += dropped
    return done, discards


def _whole(pkt) -> bytes:
    """The datagram as its sender built it, before fragmentation."""
    return bytes(pkt.__class__(bytes(pkt)))


# -- what is a fragment ------------------------------------------------------------------------------


def test_only_fragments_are_taken_and_atomic_ipv6_fragments_pass():
    whole = bytearray(bytes(_udp(100)))
    assert not is_fragment(whole)
    assert LinuxDefrag().push("inside", whole, 0.0) is None
    assert all(is_fragment(bytes(f)) for f in fragment(_udp(), fragsize=1000))
    atomic = IPv6(src="2001:db8::1", dst="2001:db8:1::9") / IPv6ExtHdrFragment(id=7) / UDP() / Raw(b"a")
    assert not is_fragment(bytes(atomic))
    assert AsaFragmentDb().push("inside", bytearray(bytes(atomic)), 0.0) is None


# -- Linux -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["in order", "reversed", "shuffled"])
def test_linux_reassembles_in_any_order(order):
    pkt = _udp()
    frags = fragment(pkt, fragsize=1000)
    if order == "reversed":
        frags = frags[::-1]
    elif order == "shuffled":
        frags = [frags[2], frags[0], frags[3], frags[1]]
    d = LinuxDefrag()
    done, discards = _feed(d, frags)
    assert discards == []
    assert len(done) == 1 and bytes(done[0].data) == _whole(pkt)
    assert done[0].frag_max_size == 1020
    assert [(p.offset, p.end) for p in done[0].pieces] == [
        (0, 1000),
        (1000, 2000),
        (2000, 3000),
        (3000, 3008),
    ]
    assert d.queues == {} and d.mem == {4: 0, 6: 0}


def test_linux_reassembles_a_syn_whose_first_fragment_holds_8_bytes_of_tcp():
    syn = IP(src="10.0.0.1", dst="192.0.2.9", id=9) / TCP(
        sport=40000, dport=80, flags="S", options=[("MSS", 1460)] * 4
    )
    frags = fragment(syn, fragsize=8)
    assert len(bytes(frags[0])) == 28
    done, discards = _feed(LinuxDefrag(), frags)
    assert discards == [] and bytes(done[0].data) == _whole(syn)


def test_linux_drops_the_whole_datagram_on_overlap_teardrop():
    frags = fragment(_udp(), fragsize=1000)
    evil = IP(bytes(frags[1]))
    evil.frag -= 1  # starts 8 bytes inside the first fragment
    del evil.chksum
    d = LinuxDefrag()
    done, discards = _feed(d, [frags[0], IP(bytes(evil))])
    assert done == []
    assert [x.reason for x in discards] == [DropReason.REASM_OVERLAP] * 2
    assert "overlaps" in discards[0].message
    # The rest starts a new queue that never completes: it times out after ipfrag_time (30 s).
    done, discards = _feed(d, frags[1:], now=1.0)
    assert done == [] and discards == []
    assert d.expire(30.9) == []
    timed_out = d.expire(31.0)
    assert [x.reason for x in timed_out] == [DropReason.REASM_TIMEOUT] * 3
    assert "ipfrag_time" in timed_out[0].message


def test_linux_drops_a_duplicate_alone_and_completes_the_datagram():
    pkt = _udp()
    frags = fragment(pkt, fragsize=1000)
    done, discards = _feed(LinuxDefrag(), [frags[0], frags[1], frags[1], frags[2], frags[3]])
    assert [x.reason for x in discards] == [DropReason.REASM_DUPLICATE]
    assert bytes(done[0].data) == _whole(pkt)


def test_linux_refuses_two_different_ends_and_data_beyond_the_end():
    frags = fragment(_udp(), fragsize=1000)
    short_last = IP(bytes(frags[2]))
    short_last.flags = 0  # claims to end at 3000 while a last fragment ended at 3008
    del short_last.chksum
    done, discards = _feed(LinuxDefrag(), [frags[3], IP(bytes(short_last))])
    assert done == [] and [x.reason for x in discards] == [DropReason.REASM_FAILED] * 2


def test_linux_ipv6_timeout_is_60_seconds_and_ecn_mixes_fail():
    pkt = IPv6(src="2001:db8::1", dst="2001:db8:1::9") / IPv6ExtHdrFragment(id=5) / UDP() / Raw(b"y" * 3000)
    frags = fragment6(pkt, 1000)
    d = LinuxDefrag()
    _feed(d, frags[:2])
    assert d.next_deadline == 60.0
    assert [x.reason for x in d.expire(60.0)] == [DropReason.REASM_TIMEOUT] * 2
    # One fragment ECN-capable, the others not: RFC 3168 forbids the mix, the datagram fails.
    mixed = [IPv6(bytes(f)) for f in frags]
    mixed[1].tc = 2
    done, discards = _feed(d, mixed, now=100.0)
    assert done == [] and {x.reason for x in discards} == {DropReason.REASM_FAILED}
    assert "ECN" in discards[0].message


def test_linux_ipv6_reassembles_without_the_fragment_header():
    pkt = (
        IPv6(src="2001:db8::1", dst="2001:db8:1::9", hlim=64)
        / IPv6ExtHdrFragment(id=5)
        / UDP()
        / Raw(b"y" * 3000)
    )
    done, _ = _feed(LinuxDefrag(), fragment6(pkt, 1000)[::-1])
    dg = done[0]
    want = _V6 / UDP() / Raw(b"y" * 3000)
    assert bytes(dg.data) == bytes(IPv6(bytes(want)))
    assert dg.unfrag_len == 40 and dg.frag_max_size == 1000


def test_linux_memory_limit_refuses_new_datagrams_only():
    d = LinuxDefrag(DefragSettings(ipfrag_high_thresh=3000))
    a = fragment(_udp(id=1), fragsize=1000)
    b = fragment(_udp(id=2), fragsize=1000)
    _, discards = _feed(d, [a[0], a[1], a[2]])
    assert discards == [] and d.mem[4] > 3000
    _, discards = _feed(d, [b[0]])
    assert [x.reason for x in discards] == [DropReason.REASM_MEMORY]
    assert "ipfrag_high_thresh 3000" in discards[0].message
    done, discards = _feed(d, [a[3]])  # an existing queue still takes its fragments
    assert discards == [] and len(done) == 1


def _interleaved(between: int):
    """Datagram A's first fragment, ``between`` fragments of other datagrams from the same source
    (complete pairs), then A's second and last fragment."""
    a = fragment(_udp(1200, id=1), fragsize=1000)
    others = []
    for i in range(between // 2):
        others += fragment(_udp(1200, id=100 + i), fragsize=1000)
    return [a[0], *others, a[1]]


def test_linux_ipfrag_max_dist_starts_a_stale_datagram_again():
    # ip_frag_too_far (net/ipv4/ip_fragment.c): 64 by default. 66 fragments of other datagrams from the
    # source between A's two: A's queue is started again without its first fragment, which is dropped.
    d = LinuxDefrag()
    done, discards = _feed(d, _interleaved(66))
    assert len(done) == 33 and [x.reason for x in discards] == [DropReason.REASM_FAILED]
    assert "66 fragments from 10.0.0.1" in discards[0].message and "ipfrag_max_dist 64" in discards[0].message
    assert len(d.queues) == 1 and d.next_deadline == 30.0  # the fresh queue, its timer re-armed
    # 62 between (a distance of 63): A completes; so it does at any distance with the check off.
    done, discards = _feed(LinuxDefrag(), _interleaved(62))
    assert len(done) == 32 and discards == []
    done, discards = _feed(LinuxDefrag(DefragSettings(ipfrag_max_dist=0)), _interleaved(66))
    assert len(done) == 34 and discards == []
    # Another source's fragments do not count.
    a = fragment(_udp(1200, id=1), fragsize=1000)
    others = []
    for i in range(40):
        others += fragment(_udp(1200, id=100 + i, src="10.0.0.2"), fragsize=1000)
    done, discards = _feed(LinuxDefrag(), [a[0], *others, a[1]])
    assert len(done) == 41 and discards == []


_SYSCTLS = """#@statewall interface inside address 10.0.0.254/24 address 2001:db8::fe/64
#@statewall interface outside address 192.0.2.1/24 address 2001:db8:1::1/64
sysctl -w net.ipv4.ipfrag_time=5
sysctl -w net.ipv4.ipfrag_high_thresh=3000
echo 0 > /proc/sys/net/ipv4/ipfrag_max_dist
#@statewall sysctl net.netfilter.nf_conntrack_frag6_timeout=7
sysctl -w net.ipv6.ip6frag_time=9
"""


@pytest.mark.parametrize("dialect", ["iptables", "nftables"])
def test_the_reassembly_sysctls_reach_the_reassembly_stage(dialect):
    from statewall.config import parse_policy
    from statewall.engine import Firewall

    body = (
        "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"
        if dialect == "iptables"
        else (
            "table inet filter {\n chain forward {\n"
            "  type filter hook forward priority 0; policy accept;\n }\n}\n"
        )
    )
    text = (
        _SYSCTLS
        if dialect == "iptables"
        else _SYSCTLS.replace("sysctl -w ", "#@statewall sysctl ").replace(
            "echo 0 > /proc/sys/net/ipv4/ipfrag_max_dist", "#@statewall sysctl net.ipv4.ipfrag_max_dist=0"
        )
    )
    policy = parse_policy(text + body, "fw.rules", dialect=dialect)
    df = policy.defrag
    assert (df.ipfrag_time, df.ipfrag_high_thresh, df.ipfrag_max_dist, df.frag6_timeout) == (5, 3000, 0, 7)
    # ip6frag_* is the box's own IPv6 reassembly, not conntrack's: kept, said to change nothing.
    assert any("ip6frag_time" in w.message and "no effect" in w.message for w in policy.warnings)
    fw = Firewall(policy)
    a = fragment(_udp(id=1), fragsize=1000)
    for f in a[:2]:
        assert fw.receive("inside", bytes(f), 0.0).events == []
    res = fw.receive("inside", bytes(fragment(_udp(id=2), fragsize=1000)[0]), 0.0)
    assert [e.reason for e in res.events if isinstance(e, Drop)] == [DropReason.REASM_MEMORY]
    assert fw.next_deadline() == 5.0
    gone = fw.advance(5.0).events
    assert [e.reason for e in gone if isinstance(e, Drop)] == [DropReason.REASM_TIMEOUT] * 2
    assert "5 s after its first fragment (ipfrag_time)" in [e for e in gone if isinstance(e, Drop)][0].message
    v6 = fragment6(_V6 / IPv6ExtHdrFragment(id=5) / UDP() / Raw(b"y" * 3000), 1000)
    fw.receive("inside", bytes(v6[0]), 10.0)
    assert fw.next_deadline() == 17.0
    # They print back as the header's sysctl lines.
    from statewall.dialects.iptables import render

    out = render(policy)
    for line in (
        "net.ipv4.ipfrag_time=5",
        "net.ipv4.ipfrag_high_thresh=3000",
        "net.ipv4.ipfrag_max_dist=0",
        "net.netfilter.nf_conntrack_frag6_timeout=7",
        "net.ipv6.ip6frag_time=9",
    ):
        assert f"#@statewall sysctl {line}" in out
    again = parse_policy(out, "again.rules", dialect="iptables").defrag
    assert (again.ipfrag_time, again.ipfrag_high_thresh, again.ipfrag_max_dist, again.frag6_timeout) == (
        5,
        3000,
        0,
        7,
    )


# -- Linux output -------------------------------------------------------------------------------------


def _fields(frags):
    out = []
    for raw in frags:
        ip = IP(bytes(raw))
        assert verify(bytes(raw), 0, ip.ihl * 4), "IPv4 header checksum"
        out.append((ip.len, ip.frag * 8, str(ip.flags), ip.ttl, ip.id))
    return out


def test_linux_sends_the_received_geometry_with_the_first_fragments_header_and_no_df():
    # As the kernel does (checked in namespaces): DF on every fragment in, none out; each fragment
    # carries the first fragment's TTL after forwarding decremented it.
    frags = [IP(bytes(f)) for f in fragment(_udp(), fragsize=1000)]
    for i, f in enumerate(frags):
        f.flags |= 2
        f.ttl = 64 - i * 10
        del f.chksum
    done, _ = _feed(LinuxDefrag(), [IP(bytes(f)) for f in frags][::-1])
    dg = done[0]
    assert dg.df
    data = bytearray(dg.data)
    data[8] -= 1  # forwarding
    out, too_big = fragment_out(data, dg, 1500)
    assert too_big is None
    assert _fields(out) == [
        (1020, 0, "MF", 63, 4242),
        (1020, 1000, "MF", 63, 4242),
        (1020, 2000, "MF", 63, 4242),
        (28, 3000, "", 63, 4242),
    ]


def test_linux_cuts_to_the_route_mtu_or_answers_fragmentation_needed_with_df():
    done, _ = _feed(LinuxDefrag(), fragment(_udp(), fragsize=1480))
    out, too_big = fragment_out(done[0].data, done[0], 1000)
    assert too_big is None
    assert [(f[0], f[1]) for f in _fields(out)] == [(996, 0), (996, 976), (996, 1952), (100, 2928)]
    df = [IP(bytes(f)) for f in fragment(_udp(), fragsize=1480)]
    for f in df:
        f.flags |= 2
        del f.chksum
    done, _ = _feed(LinuxDefrag(), [IP(bytes(f)) for f in df])
    assert fragment_out(done[0].data, done[0], 1000) == ([], 1000)


def test_linux_later_fragments_carry_only_copied_options():
    from scapy.all import IPOption_RR, IPOption_Security

    pkt = IP(
        src="10.0.0.1",
        dst="192.0.2.9",
        id=77,
        options=[IPOption_RR(routers=["0.0.0.0"]), IPOption_Security()],
    )
    pkt = pkt / UDP() / Raw(b"z" * 2000)
    done, _ = _feed(LinuxDefrag(), fragment(pkt, fragsize=800))
    out, _ = fragment_out(done[0].data, done[0], 1500)
    first, later = IP(bytes(out[0])), IP(bytes(out[1]))
    assert first.ihl == later.ihl
    assert [o.option for o in first.options][:2] == [7, 2]
    assert [o.option for o in later.options if o.option != 1][:1] == [2]  # security is copied, RR is not


def test_linux_ipv6_keeps_geometry_or_answers_packet_too_big():
    pkt = IPv6(src="2001:db8::1", dst="2001:db8:1::9") / IPv6ExtHdrFragment(id=5) / UDP() / Raw(b"y" * 3000)
    done, _ = _feed(LinuxDefrag(), fragment6(pkt, 1000))
    out, too_big = fragment_out(done[0].data, done[0], 1500)
    assert too_big is None
    got = [
        (len(f), IPv6(bytes(f))[IPv6ExtHdrFragment].offset * 8, IPv6(bytes(f))[IPv6ExtHdrFragment].m)
        for f in out
    ]
    assert got == [(1000, 0, 1), (1000, 952, 1), (1000, 1904, 1), (200, 2856, 0)]
    assert bytes(out[0]) == bytes(fragment6(pkt, 1000)[0])
    done, _ = _feed(LinuxDefrag(), fragment6(pkt, 1500))
    assert fragment_out(done[0].data, done[0], 1280) == ([], 1280)


# -- ASA ---------------------------------------------------------------------------------------------


def _asa_line(discard, iface="outside") -> str | None:
    drop = Drop(
        time=0.0,
        reason=discard.reason,
        interface=iface,
        protocol=discard.proto,
        src="10.0.0.1",
        dst="192.0.2.9",
        detail=discard.detail,
    )
    lines = format_event(drop, timestamp=False)
    return lines[0] if lines else None


def test_asa_virtual_reassembly_forwards_the_fragments_as_they_came():
    frags = [IP(bytes(f)) for f in fragment(_udp(), fragsize=1000)]
    for f in frags:
        f.flags |= 2
        del f.chksum
    arrival = [IP(bytes(f)) for f in (frags[2], frags[0], frags[3], frags[1])]
    done, discards = _feed(AsaFragmentDb(), arrival)
    assert discards == []
    out, _ = fragment_out(done[0].data, done[0], 1500)
    assert [bytes(o) for o in out] == [bytes(f) for f in arrival]


def test_asa_drops_a_tiny_first_fragment_and_teardrop_as_security_failed():
    syn = IP(src="10.0.0.1", dst="192.0.2.9", id=9) / TCP(sport=40000, dport=80, flags="S")
    done, discards = _feed(AsaFragmentDb(), fragment(syn, fragsize=8))
    assert done == [] and discards[0].reason is DropReason.INVALID_FRAGMENT
    assert "less than the TCP header" in discards[0].message
    frags = fragment(_udp(), fragsize=1000)
    evil = IP(bytes(frags[1]))
    evil.frag -= 1
    del evil.chksum
    done, discards = _feed(AsaFragmentDb(), [frags[0], IP(bytes(evil))])
    assert [x.reason.keyword for x in discards] == ["security-failed"] * 2


def test_asa_fragment_chain_discards_the_set_with_209005():
    pkt = _udp(size=25 * 8 - 8)
    frags = fragment(pkt, fragsize=8)
    assert len(frags) == 25
    done, discards = _feed(AsaFragmentDb(), frags)
    assert done == [] and len(discards) == 25
    assert {x.reason for x in discards} == {DropReason.FRAGMENT_LIMIT}
    assert _asa_line(discards[0]) == (
        "%ASA-4-209005: Discard IP fragment set with more than 24 elements:  src = 10.0.0.1, "
        "dest = 192.0.2.9, proto = UDP, id = 4242"
    )
    assert [_asa_line(x) for x in discards[1:]] == [None] * 24
    # fragment chain 1: no fragment passes at all.
    done, discards = _feed(AsaFragmentDb(lambda i: FragmentSettings(chain=1)), frags[:2])
    assert done == [] and len(discards) == 2
    assert _asa_line(discards[0]).startswith(
        "%ASA-4-209005: Discard IP fragment set with more than 1 elements"
    )


def test_asa_fragment_database_limit_209003_and_timeout():
    db = AsaFragmentDb(lambda i: FragmentSettings(size=3, timeout=5))
    a = fragment(_udp(id=1), fragsize=1000)
    b = fragment(_udp(id=2), fragsize=1000)
    _, discards = _feed(db, [a[0], a[1], b[0]])
    assert discards == []
    _, discards = _feed(db, [b[1]])
    assert _asa_line(discards[0]) == (
        "%ASA-4-209003: Fragment database limit of 3 exceeded: src = 10.0.0.1, dest = 192.0.2.9, "
        "proto = UDP, id = 2"
    )
    expired = db.expire(5.0)
    assert [x.reason for x in expired] == [DropReason.FRAGMENT_TIMEOUT] * 3
    assert db.held["inside"] == 0
    done, discards = _feed(db, fragment(_udp(id=3), fragsize=1480), now=6.0)
    assert discards == [] and len(done) == 1


def test_asa_209004_for_a_datagram_beyond_65535():
    big = IP(src="10.0.0.1", dst="192.0.2.9", id=3, proto=17, flags="MF", frag=8190) / Raw(b"q" * 64)
    _, discards = _feed(AsaFragmentDb(), [IP(bytes(big))])
    assert _asa_line(discards[0]) == (
        "%ASA-4-209004: Invalid IP fragment, size = 65604 exceeds maximum size = 65535: src = 10.0.0.1, "
        "dest = 192.0.2.9, proto = UDP, id = 3"
    )


def test_asa_icmp_fragments_follow_the_same_rules():
    ping = IP(src="10.0.0.1", dst="192.0.2.9", id=11) / ICMP(id=1, seq=1) / Raw(b"p" * 3000)
    done, discards = _feed(AsaFragmentDb(), fragment(ping, fragsize=1480))
    assert discards == [] and bytes(done[0].data) == _whole(ping)
