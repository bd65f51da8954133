"""ICMP on the ASA without ``inspect icmp``: stateless, as the box is (docs/asa.md, "ICMP without
inspection"). An echo request the access rules or security levels let out leaves with its translation
(PAT builds an ICMP xlate, 305011) and builds no connection (no 302020/302021); its reply is a packet of
its own on the outside interface: dropped by the security levels (106014) or an access list (106023),
or, permitted by one, untranslated through the PAT slot its request built. ICMP errors without
``inspect icmp error`` meet the access rules too. With ``inspect icmp`` the echo has its session."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, UDP

from fixtures import DUAL_STACK_INTERFACES
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import ConnBuilt, ConnTeardown, Drop, DropReason, XlateBuilt, XlateTeardown
from statewall.logfmt.asa import format_event

BASE = (
    "ASA Version 9.8(4)\nhostname fw\n"
    + DUAL_STACK_INTERFACES
    + """\
route outside 0.0.0.0 0.0.0.0 192.0.2.254 1
object network LAN
 subnet 10.0.0.0 255.255.255.0
 nat (inside,outside) dynamic interface
"""
)
MAPPED = "192.0.2.1"  # the outside interface: PAT
SERVER = "203.0.113.9"
ECHO_REPLY = (
    "access-list OUTSIDE_IN extended permit icmp any any echo-reply\n"
    "access-group OUTSIDE_IN in interface outside\n"
)
INSPECT = "policy-map global_policy\n class inspection_default\n  inspect icmp\n" + (
    "service-policy global_policy global\n"
)


def fw(extra: str = "") -> Firewall:
    return Firewall(parse(BASE + extra, "icmp.cfg"))


def ping(src: str = "10.0.0.2", ident: int = 77, seq: int = 1) -> bytes:
    return bytes(IP(src=src, dst=SERVER) / ICMP(type=8, id=ident, seq=seq) / b"abcdefgh")


def pong(sent: IP, seq: int = 1) -> bytes:
    return bytes(IP(src=SERVER, dst=sent.src) / ICMP(type=0, id=sent[ICMP].id, seq=seq) / b"abcdefgh")


def only(res, iface: str) -> IP:
    assert [i for i, _ in res.packets] == [iface], [str(e) for e in res.events]
    return IP(bytes(res.packets[0][1]))


def lines(res) -> list[str]:
    return [line.split(": ", 1)[1] for e in res.events for line in format_event(e)]


def test_the_request_leaves_with_its_xlate_and_no_connection():
    f = fw()
    res = f.receive("inside", ping(), 1.0)
    sent = only(res, "outside")
    assert sent.src == MAPPED and sent[ICMP].type == 8 and bytes(sent[ICMP].payload) == b"abcdefgh"
    ref = IP(bytes(sent))
    del ref.chksum, ref[ICMP].chksum
    ref = IP(bytes(ref))
    assert (ref.chksum, ref[ICMP].chksum) == (sent.chksum, sent[ICMP].chksum)
    assert not any(isinstance(e, ConnBuilt) for e in res.events) and len(f.conns) == 0
    assert lines(res) == [
        f"%ASA-6-305011: Built dynamic ICMP translation from inside:10.0.0.2/77 to outside:{MAPPED}/77"
    ]
    # The same ping again uses the same slot: no second 305011, still no connection.
    res = f.receive("inside", ping(seq=2), 1.5)
    assert only(res, "outside")[ICMP].id == 77 and res.events == [] and len(f.conns) == 0


def test_the_reply_is_denied_by_the_security_levels_with_106014():
    f = fw()
    sent = only(f.receive("inside", ping(), 1.0), "outside")
    res = f.receive("outside", pong(sent), 1.1)
    assert res.packets == []
    (d,) = [e for e in res.events if isinstance(e, Drop)]
    assert d.reason is DropReason.ACL_DROP and d.acl is None
    assert lines(res) == [
        f"%ASA-3-106014: Deny inbound icmp src outside:{SERVER} dst inside:{MAPPED} (type 0, code 0)"
    ]


def test_the_reply_is_denied_by_an_access_list_with_106023():
    f = fw(
        "access-list OUTSIDE_IN extended permit tcp any any eq 80\n"
        "access-group OUTSIDE_IN in interface outside\n"
    )
    sent = only(f.receive("inside", ping(), 1.0), "outside")
    res = f.receive("outside", pong(sent), 1.1)
    assert res.packets == []
    (d,) = [e for e in res.events if isinstance(e, Drop)]
    assert d.reason is DropReason.ACL_DROP and d.acl == "OUTSIDE_IN"
    (line,) = lines(res)
    assert line.startswith(
        f"%ASA-4-106023: Deny icmp src outside:{SERVER} dst inside:{MAPPED} (type 0, code 0) "
        'by access-group "OUTSIDE_IN"'
    ), line


def test_a_permitted_reply_is_untranslated_through_the_pat_slot_to_the_right_host():
    f = fw(ECHO_REPLY)
    first = only(f.receive("inside", ping("10.0.0.2", 77), 1.0), "outside")
    # A second host with the same identifier: PAT gives it another one.
    second = only(f.receive("inside", ping("10.0.0.3", 77), 1.0), "outside")
    assert first[ICMP].id == 77 and second[ICMP].id != 77 and second.src == MAPPED
    for sent, host in ((second, "10.0.0.3"), (first, "10.0.0.2")):
        res = f.receive("outside", pong(sent), 1.1)
        back = only(res, "inside")
        assert (back.src, back.dst, back[ICMP].type, back[ICMP].id) == (SERVER, host, 0, 77)
        ref = IP(bytes(back))
        del ref.chksum, ref[ICMP].chksum
        ref = IP(bytes(ref))
        assert (ref.chksum, ref[ICMP].chksum) == (back.chksum, back[ICMP].chksum)
        assert res.events == []  # no connection built by the reply either
    assert len(f.conns) == 0
    # A reply for an identifier no slot holds is the box's own address: to the box, dropped.
    stray = IP(src=SERVER, dst=MAPPED) / ICMP(type=0, id=4242, seq=1)
    assert f.receive("outside", bytes(stray), 1.2).packets == []


def test_the_icmp_xlate_lives_on_use_and_is_torn_down_after_pat_xlate_timeout():
    f = fw(ECHO_REPLY)
    sent = only(f.receive("inside", ping(), 0.0), "outside")
    f.receive("outside", pong(sent), 20.0)  # used by the reply: idle from 20 s
    assert f.advance(45.0).events == []  # 30 s after the request, but only 25 s idle
    (td,) = f.advance(51.0).events
    assert isinstance(td, XlateTeardown)
    assert format_event(td)[0].endswith(
        f"%ASA-6-305012: Teardown dynamic ICMP translation from inside:10.0.0.2/77 to outside:{MAPPED}/77 "
        "duration 0:00:50"
    )
    # Gone: the late reply has no slot.
    assert f.receive("outside", pong(sent, 2), 52.0).packets == []


def test_with_inspect_icmp_the_echo_has_its_session():
    f = fw(INSPECT)
    res = f.receive("inside", ping(), 1.0)
    sent = only(res, "outside")
    assert any(isinstance(e, ConnBuilt) for e in res.events) and len(f.conns) == 1
    assert any("-302020: Built outbound ICMP connection" in line for line in lines(res))
    res = f.receive("outside", pong(sent), 1.1)
    assert only(res, "inside").dst == "10.0.0.2"
    assert any(isinstance(e, ConnTeardown) for e in res.events)  # 302021: the one reply answered it
    # A second reply finds no session: 313004 (the access rules would let nothing in anyway).
    d = [e for e in f.receive("outside", pong(sent), 1.2).events if isinstance(e, Drop)]
    assert d and d[0].reason in (DropReason.INSPECT_ICMP_SEQ, DropReason.ACL_DROP)


def test_a_class_inspecting_icmp_for_some_hosts_only():
    cls = (
        "access-list PINGERS extended permit icmp host 10.0.0.2 any\n"
        "class-map PINGERS\n match access-list PINGERS\n"
        "policy-map global_policy\n class PINGERS\n  inspect icmp\nservice-policy global_policy global\n"
    )
    f = fw(cls)
    inspected = only(f.receive("inside", ping("10.0.0.2", 5), 1.0), "outside")
    plain = only(f.receive("inside", ping("10.0.0.3", 6), 1.0), "outside")
    assert len(f.conns) == 1
    assert only(f.receive("outside", pong(inspected), 1.1), "inside").dst == "10.0.0.2"
    assert f.receive("outside", pong(plain), 1.1).packets == []


def test_an_echo_request_from_outside_needs_an_access_rule_too():
    f = fw("object network WEB\n host 10.0.0.5\n nat (inside,outside) static 192.0.2.5\n")
    req = IP(src=SERVER, dst="192.0.2.5") / ICMP(type=8, id=9, seq=1)
    (d,) = [e for e in f.receive("outside", bytes(req), 1.0).events if isinstance(e, Drop)]
    assert d.reason is DropReason.ACL_DROP
    f = fw(
        "object network WEB\n host 10.0.0.5\n nat (inside,outside) static 192.0.2.5\n"
        "access-list OUTSIDE_IN extended permit icmp any object WEB echo\n"
        "access-group OUTSIDE_IN in interface outside\n"
    )
    fwd = only(f.receive("outside", bytes(req), 1.0), "inside")
    assert fwd.dst == "10.0.0.5" and len(f.conns) == 0
    # Its reply leaves by the security levels (inside 100 to outside 0), from the mapped address.
    rep = IP(src="10.0.0.5", dst=SERVER) / ICMP(type=0, id=9, seq=1)
    assert only(f.receive("inside", bytes(rep), 1.1), "outside").src == "192.0.2.5"


def _udp_flow(f: Firewall) -> IP:
    return only(
        f.receive("inside", bytes(IP(src="10.0.0.2", dst=SERVER) / UDP(sport=3000, dport=5000) / b"q"), 1.0),
        "outside",
    )


def test_an_icmp_error_without_inspect_icmp_error_meets_the_access_rules():
    f = fw()
    sent = _udp_flow(f)
    err = IP(src=SERVER, dst=MAPPED) / ICMP(type=3, code=3) / bytes(sent)
    res = f.receive("outside", bytes(err), 1.1)
    assert res.packets == [] and lines(res) == [
        f"%ASA-3-106014: Deny inbound icmp src outside:{SERVER} dst inside:{MAPPED} (type 3, code 3)"
    ]
    # Permitted by an access rule: translated back as its connection is (RFC 5508).
    f = fw(
        "access-list OUTSIDE_IN extended permit icmp any any unreachable\n"
        "access-group OUTSIDE_IN in interface outside\n"
    )
    sent = _udp_flow(f)
    back = only(
        f.receive("outside", bytes(IP(src=SERVER, dst=MAPPED) / ICMP(type=3, code=3) / bytes(sent)), 1.1),
        "inside",
    )
    assert back.dst == "10.0.0.2" and IP(bytes(back[ICMP].payload))[UDP].sport == 3000


def test_with_inspect_icmp_error_errors_are_matched_to_connections():
    f = fw(
        "policy-map global_policy\n class inspection_default\n  inspect icmp error\n"
        "service-policy global_policy global\n"
    )
    sent = _udp_flow(f)
    err = IP(src=SERVER, dst=MAPPED) / ICMP(type=3, code=3) / bytes(sent)
    assert only(f.receive("outside", bytes(err), 1.1), "inside").dst == "10.0.0.2"
    # Quoting no connection, to the box's own address: 313005.
    quoted = bytes(IP(src=MAPPED, dst=SERVER) / UDP(sport=9999, dport=5000))
    res = f.receive("outside", bytes(IP(src=SERVER, dst=MAPPED) / ICMP(type=3, code=3) / quoted), 1.2)
    assert res.packets == []
    assert [d.reason for d in res.events if isinstance(d, Drop)] == [DropReason.ICMP_NO_SESSION]
    assert lines(res) == [
        f"%ASA-4-313005: No matching connection for ICMP error message: icmp src outside:{SERVER} dst "
        f"identity:{MAPPED} (type 3, code 3) on outside interface.  Original IP payload: udp src "
        f"{MAPPED}/9999 dst {SERVER}/5000."
    ]


def test_no_xlate_is_built_for_a_reply_that_is_denied():
    f = fw()
    res = f.receive("outside", bytes(IP(src=SERVER, dst="10.0.0.2") / ICMP(type=0, id=3, seq=1)), 1.0)
    assert res.packets == [] and not any(isinstance(e, XlateBuilt) for e in res.events)


def test_an_error_quoting_no_connection_is_an_icmp_packet_of_its_own_without_inspect_icmp_error():
    f = fw(
        "object network WEB\n host 10.0.0.5\n nat (inside,outside) static 192.0.2.5\n"
        "access-list OUTSIDE_IN extended permit icmp any any unreachable\n"
        "access-group OUTSIDE_IN in interface outside\n"
    )
    quoted = bytes(IP(src="192.0.2.5", dst=SERVER) / UDP(sport=9999, dport=5000))
    err = IP(src=SERVER, dst="192.0.2.5") / ICMP(type=3, code=3) / quoted
    res = f.receive("outside", bytes(err), 1.0)
    back = only(res, "inside")
    assert (back.dst, back[ICMP].type) == ("10.0.0.5", 3) and len(f.conns) == 0
    assert not any(isinstance(e, Drop) for e in res.events)
    # Time exceeded is not permitted: the implicit deny of the access list (106023).
    res = f.receive("outside", bytes(IP(src=SERVER, dst="192.0.2.5") / ICMP(type=11, code=0) / quoted), 1.1)
    assert res.packets == [] and [d.acl for d in res.events if isinstance(d, Drop)] == ["OUTSIDE_IN"]


def test_a_ping_too_big_for_the_egress_is_answered_and_leaves_no_xlate():
    f = fw("mtu outside 1400\n")
    big = IP(src="10.0.0.2", dst=SERVER, flags="DF") / ICMP(type=8, id=5, seq=1) / (b"x" * 1450)
    res = f.receive("inside", bytes(big), 1.0)
    (iface, data) = res.packets[0]
    assert iface == "inside" and IP(bytes(data))[ICMP].type == 3 and IP(bytes(data))[ICMP].code == 4
    assert not any(isinstance(e, XlateBuilt) for e in res.events) and f.nat.xlates == {}
