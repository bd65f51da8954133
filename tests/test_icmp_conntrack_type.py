"""Conntrack's ICMP tuple holds the message's type and code (nf_conntrack_proto_icmp.c,
icmp_pkt_to_tuple; the reply tuple's type is the answer's, icmp_invert_tuple's invmap; the same for
ICMPv6): a query with another type or code than its connection's direction expects is not that
connection's packet. An echo request from the server to the masqueraded address while an inside host's
ping with the same identifier is live is a NEW packet for the box itself, not a reply to forward
inside; an echo reply the inside host sends on its own ping's tuple has no connection and cannot
start one (INVALID)."""

from __future__ import annotations

import pytest

from fixtures import MASQUERADE_ETH0
from statewall import craft
from statewall.dialects import iptables
from statewall.engine import Firewall
from statewall.events import Drop
from statewall.packet import str_to_addr

RULES = (
    """\
#@statewall interface inside dev eth1 address 10.0.0.1/24
#@statewall interface outside dev eth0 address 192.168.9.30/24
#@statewall route 0.0.0.0/0 via 192.168.9.2 dev outside
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i eth1 -o eth0 -p icmp --icmp-type echo-request -j ACCEPT
COMMIT
"""
    + MASQUERADE_ETH0
)
HOST, SERVER, BOX = (str_to_addr(a)[1] for a in ("10.0.0.2", "192.168.9.2", "192.168.9.30"))
ECHO_REQUEST, ECHO_REPLY = 8, 0


def query(src: int, dst: int, typ: int, seq: int, code: int = 0) -> bytearray:
    return craft.icmp_query(4, src, dst, typ, code, 77, seq)


@pytest.fixture
def fw() -> Firewall:
    fw = Firewall(iptables.parse(RULES, "ping.rules"))
    res = fw.receive("inside", query(HOST, SERVER, ECHO_REQUEST, 1), 1.0)
    assert [iface for iface, _ in res.packets] == ["outside"]
    return fw


def test_the_servers_echo_reply_rides_the_ping(fw):
    res = fw.receive("outside", query(SERVER, BOX, ECHO_REPLY, 1), 1.1)
    assert [iface for iface, _ in res.packets] == ["inside"]


def test_an_echo_request_from_the_server_on_the_pings_tuple_is_new_for_the_box(fw):
    res = fw.receive("outside", query(SERVER, BOX, ECHO_REQUEST, 5), 1.1)
    assert res.packets == []  # INPUT's policy drops it; never forwarded to the inside host
    (drop,) = [e for e in res.events if isinstance(e, Drop)]
    assert drop.acl == "filter/INPUT"
    # The ping itself goes on.
    reply = fw.receive("outside", query(SERVER, BOX, ECHO_REPLY, 1), 1.2)
    assert [i for i, _ in reply.packets] == ["inside"]
    request = fw.receive("inside", query(HOST, SERVER, ECHO_REQUEST, 2), 1.3)
    assert [i for i, _ in request.packets] == ["outside"]


def test_an_echo_reply_from_the_inside_host_on_its_pings_tuple_is_invalid(fw):
    res = fw.receive("inside", query(HOST, SERVER, ECHO_REPLY, 1), 1.1)
    assert res.packets == []
    (drop,) = [e for e in res.events if isinstance(e, Drop)]
    assert drop.acl == "filter/FORWARD"


def test_a_reply_with_another_code_is_not_the_pings(fw):
    res = fw.receive("outside", query(SERVER, BOX, ECHO_REPLY, 1, code=3), 1.1)
    assert res.packets == []
