"""ICMP on the ASA without ``inspect icmp``: unidirectional connections, as the box has (docs/asa.md,
"ICMP without inspection"; Cisco ASA configuration guide, "Access Rules for Returning Traffic": "the ASA
establishes unidirectional sessions"; fir3net, "Cisco ASA - ICMP Inspect and the Connection Table": one
connection for the request, one for the reply). An echo request the access rules or security levels let
out leaves with its translation (PAT builds an ICMP xlate, 305011) and builds a connection of its
direction (302020 outbound) that the same ping's next requests ride and that its reply does not: the
reply is a packet of its own on the outside interface, dropped by the security levels (106014) or an
access list (106023), or, permitted by one, untranslated through the PAT slot its request built and
building its own connection (302020 inbound). Both end after ``timeout icmp`` idle (302021). ICMP errors
without ``inspect icmp error`` meet the access rules too and build no connection. With ``inspect icmp``
the echo has one session for both directions."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDP

from fixtures import DUAL_STACK_INTERFACES
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import ConnBuilt, ConnTeardown, Drop, DropReason, XlateBuilt, XlateTeardown
from statewall.logfmt.asa import format_event
from statewall.showtables import show
from statewall.tracer import TracerError, trace

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


def built(res) -> list[str]:
    return [line for line in lines(res) if "-30202" in line]


def test_the_request_builds_a_unidirectional_connection_with_its_xlate():
    f = fw()
    res = f.receive("inside", ping(), 1.0)
    sent = only(res, "outside")
    assert sent.src == MAPPED and sent[ICMP].type == 8 and bytes(sent[ICMP].payload) == b"abcdefgh"
    ref = IP(bytes(sent))
    del ref.chksum, ref[ICMP].chksum
    ref = IP(bytes(ref))
    assert (ref.chksum, ref[ICMP].chksum) == (sent.chksum, sent[ICMP].chksum)
    assert lines(res) == [
        f"%ASA-6-305011: Built dynamic ICMP translation from inside:10.0.0.2/77 to outside:{MAPPED}/77",
        f"%ASA-6-302020: Built outbound ICMP connection for faddr {SERVER}/0 gaddr {MAPPED}/77 "
        "laddr 10.0.0.2/77 type 8 code 0",
    ]
    (conn,) = f.conns
    assert conn.direction == "outbound" and conn.timeout == 2.0  # timeout icmp 0:00:02 (the default)
    # The same ping again (the same 5-tuple, the same direction) rides it: nothing new is built.
    res = f.receive("inside", ping(seq=2), 1.5)
    assert only(res, "outside")[ICMP].id == 77 and res.events == [] and list(f.conns) == [conn]


def test_the_reply_is_denied_by_the_security_levels_with_106014():
    f = fw()
    sent = only(f.receive("inside", ping(), 1.0), "outside")
    res = f.receive("outside", pong(sent), 1.1)
    assert res.packets == []
    (d,) = [e for e in res.events if isinstance(e, Drop)]
    # It does not ride the request's connection (unidirectional): it is a flow of its own, denied.
    assert d.reason is DropReason.ACL_DROP and d.acl is None and d.conn_id is None
    assert lines(res) == [
        f"%ASA-3-106014: Deny inbound icmp src outside:{SERVER} dst inside:{MAPPED} (type 0, code 0)"
    ]
    assert [c.direction for c in f.conns] == ["outbound"]


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
    assert len(f.conns) == 1


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
        # The reply builds a connection of its own, inbound: the outside end carries the identifier.
        assert built(res) == [
            f"%ASA-6-302020: Built inbound ICMP connection for faddr {SERVER}/{sent[ICMP].id} gaddr "
            f"{MAPPED}/0 laddr {host}/0 type 0 code 0"
        ]
        # The next reply of that ping rides it, untranslated the same way, nothing built.
        res = f.receive("outside", pong(sent, 2), 1.2)
        assert (only(res, "inside").dst, only(res, "inside")[ICMP].id) == (host, 77) and res.events == []
    assert sorted(c.direction for c in f.conns) == ["inbound", "inbound", "outbound", "outbound"]
    # A reply for an identifier no slot holds is the box's own address: to the box, dropped.
    stray = IP(src=SERVER, dst=MAPPED) / ICMP(type=0, id=4242, seq=1)
    assert f.receive("outside", bytes(stray), 1.2).packets == []


def test_both_connections_end_on_timeout_icmp_and_show_conn_lists_them():
    f = fw(ECHO_REPLY + "timeout icmp 0:00:05\n")
    sent = only(f.receive("inside", ping(), 1.0), "outside")
    f.receive("outside", pong(sent), 1.1)
    f.receive("inside", ping(seq=2), 2.0)  # the request's connection: idle from 2.0
    assert show(f, ["conn"], now=2.5).splitlines() == [
        "2 in use, 2 most used",
        f"ICMP outside {SERVER}:77 inside 10.0.0.2:77, idle 0:00:00, bytes 16, flags O",
        f"ICMP outside {SERVER}:77 inside 10.0.0.2:77, idle 0:00:01, bytes 8, flags I",
    ]
    res = f.advance(6.5)  # the reply's: 5 s idle since 1.1; the request's only 4.5 s
    assert [line.split(": ", 1)[1] for e in res.events for line in format_event(e)] == [
        f"%ASA-6-302021: Teardown ICMP connection for faddr {SERVER}/77 gaddr {MAPPED}/0 laddr 10.0.0.2/0 "
        "type 0 code 0"
    ]
    res = f.advance(7.5)
    assert [line.split(": ", 1)[1] for e in res.events for line in format_event(e)] == [
        f"%ASA-6-302021: Teardown ICMP connection for faddr {SERVER}/0 gaddr {MAPPED}/77 laddr 10.0.0.2/77 "
        "type 8 code 0"
    ]
    assert len(f.conns) == 0 and show(f, ["conn", "count"], now=8.0).startswith("0 in use")
    # The next ping of the same identifier builds a new connection (the slot is still alive).
    res = f.receive("inside", ping(seq=3), 8.0)
    assert len(built(res)) == 1 and not any(isinstance(e, XlateBuilt) for e in res.events)


def test_the_icmp_xlate_lives_on_use_and_is_torn_down_after_pat_xlate_timeout():
    f = fw(ECHO_REPLY)
    sent = only(f.receive("inside", ping(), 0.0), "outside")
    (td,) = f.advance(2.5).events  # timeout icmp: the request's connection gives the slot back
    assert isinstance(td, ConnTeardown)
    res = f.receive("outside", pong(sent), 20.0)  # the slot untranslates the reply; its connection holds it
    assert only(res, "inside").dst == "10.0.0.2" and len(built(res)) == 1
    (td,) = f.advance(23.0).events  # the reply's connection: 302021 at 22 s; the slot idle from then
    assert isinstance(td, ConnTeardown)
    assert f.advance(45.0).events == []  # 45 s after the request, but only 23 s idle
    (td,) = f.advance(53.0).events
    assert isinstance(td, XlateTeardown)
    assert format_event(td)[0].endswith(
        f"%ASA-6-305012: Teardown dynamic ICMP translation from inside:10.0.0.2/77 to outside:{MAPPED}/77 "
        "duration 0:00:52"
    )
    # Gone: the late reply has no slot.
    assert f.receive("outside", pong(sent, 2), 54.0).packets == []


def test_with_inspect_icmp_the_echo_has_its_session():
    f = fw(INSPECT)
    res = f.receive("inside", ping(), 1.0)
    sent = only(res, "outside")
    assert any(isinstance(e, ConnBuilt) for e in res.events) and len(f.conns) == 1
    assert any("-302020: Built outbound ICMP connection" in line for line in lines(res))
    res = f.receive("outside", pong(sent), 1.1)
    assert only(res, "inside").dst == "10.0.0.2"
    assert any(isinstance(e, ConnTeardown) for e in res.events)  # 302021: the one reply answered it
    assert not any(isinstance(e, ConnBuilt) for e in res.events)  # the reply rode the request's session
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
    assert len(f.conns) == 2 and sum(c.helper is not None for c in f.conns) == 1
    assert only(f.receive("outside", pong(inspected), 1.1), "inside").dst == "10.0.0.2"
    assert f.receive("outside", pong(plain), 1.1).packets == []


def test_an_echo_request_from_outside_needs_an_access_rule_too():
    f = fw("object network WEB\n host 10.0.0.5\n nat (inside,outside) static 192.0.2.5\n")
    req = IP(src=SERVER, dst="192.0.2.5") / ICMP(type=8, id=9, seq=1)
    (d,) = [e for e in f.receive("outside", bytes(req), 1.0).events if isinstance(e, Drop)]
    assert d.reason is DropReason.ACL_DROP and len(f.conns) == 0
    f = fw(
        "object network WEB\n host 10.0.0.5\n nat (inside,outside) static 192.0.2.5\n"
        "access-list OUTSIDE_IN extended permit icmp any object WEB echo\n"
        "access-group OUTSIDE_IN in interface outside\n"
    )
    res = f.receive("outside", bytes(req), 1.0)
    assert only(res, "inside").dst == "10.0.0.5"
    assert built(res) == [
        f"%ASA-6-302020: Built inbound ICMP connection for faddr {SERVER}/9 gaddr 192.0.2.5/0 "
        "laddr 10.0.0.5/0 type 8 code 0"
    ]
    # Its reply leaves by the security levels (inside 100 to outside 0), from the mapped address, on a
    # connection of its own.
    rep = IP(src="10.0.0.5", dst=SERVER) / ICMP(type=0, id=9, seq=1)
    res = f.receive("inside", bytes(rep), 1.1)
    assert only(res, "outside").src == "192.0.2.5"
    assert built(res) == [
        f"%ASA-6-302020: Built outbound ICMP connection for faddr {SERVER}/0 gaddr 192.0.2.5/9 "
        "laddr 10.0.0.5/9 type 0 code 0"
    ]


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


def test_a_ping_too_big_for_the_egress_is_answered_on_its_new_connection():
    # As with inspect icmp: the connection (and its translation) is built, then the egress MTU answers.
    for extra in ("", INSPECT):
        f = fw("mtu outside 1400\n" + extra)
        big = IP(src="10.0.0.2", dst=SERVER, flags="DF") / ICMP(type=8, id=5, seq=1) / (b"x" * 1450)
        res = f.receive("inside", bytes(big), 1.0)
        (iface, data) = res.packets[0]
        assert iface == "inside" and IP(bytes(data))[ICMP].type == 3 and IP(bytes(data))[ICMP].code == 4
        assert len(built(res)) == 1 and any(isinstance(e, XlateBuilt) for e in res.events)


def _phases(extra: str, *args) -> list[tuple[str, bool, list[str]]]:
    phases, _ = trace(parse(BASE + extra, "icmp.cfg"), *args)
    return [(p.type, p.result, p.info) for p in phases]


def test_packet_tracer_creates_a_flow_for_the_request_and_for_a_permitted_reply():
    request = _phases("", "inside", "icmp", "10.0.0.2", 8, SERVER, 0)
    created = [p for p in request if p[0] == "FLOW-CREATION"]
    new = ["New flow created with id 1, packet dispatched to next module"]
    assert created == [("FLOW-CREATION", "ALLOW", new)]
    # The echo reply (type 0) as it arrives, to the inside host (a traced reply has no request before
    # it, so no PAT slot: addressed to the inside host's real address, as the 9.x access rules see it).
    denied = _phases("", "outside", "icmp", SERVER, 0, "10.0.0.2", 0)
    assert denied[-1][:2] == ("ACCESS-LIST", "DROP") and "FLOW-CREATION" not in [p[0] for p in denied]
    permitted = _phases(ECHO_REPLY, "outside", "icmp", SERVER, 0, "10.0.0.2", 0)
    assert [p for p in permitted if p[0] == "FLOW-CREATION"] == created
    # The traced message is the type and code given: an echo request is not let in by echo-reply.
    assert _phases(ECHO_REPLY, "outside", "icmp", SERVER, 8, "10.0.0.2", 0)[-1][:2] == ("ACCESS-LIST", "DROP")


def test_packet_tracer_names_an_icmp_error_as_not_modelled():
    with pytest.raises(TracerError, match="ICMP error .* not modelled"):
        trace(parse(BASE, "icmp.cfg"), "outside", "icmp", SERVER, 3, "10.0.0.2", 3)


def test_a_timestamp_query_through_pat_has_its_identifier_translated_both_ways():
    f = fw(
        "access-list OUTSIDE_IN extended permit icmp any any timestamp-reply\n"
        "access-group OUTSIDE_IN in interface outside\n"
    )
    only(f.receive("inside", ping("10.0.0.2", 77), 1.0), "outside")  # takes identifier 77 on MAPPED
    ts = IP(src="10.0.0.3", dst=SERVER) / ICMP(type=13, id=77, seq=1) / bytes(12)
    res = f.receive("inside", bytes(ts), 1.0)
    sent = only(res, "outside")
    assert (sent.src, sent[ICMP].type) == (MAPPED, 13) and sent[ICMP].id != 77 and len(built(res)) == 1
    reply = IP(src=SERVER, dst=MAPPED) / ICMP(type=14, id=sent[ICMP].id, seq=1) / bytes(12)
    res = f.receive("outside", bytes(reply), 1.1)
    back = only(res, "inside")
    assert (back.dst, back[ICMP].type, back[ICMP].id) == ("10.0.0.3", 14, 77) and len(built(res)) == 1
    ref = IP(bytes(back))
    del ref[ICMP].chksum
    assert IP(bytes(ref))[ICMP].chksum == back[ICMP].chksum
