"""Timeouts per class (``set connection timeout embryonic / idle [reset] / half-closed``) replacing the
global ``timeout`` commands, each expiry with the teardown text the ASA prints, on a simulated clock."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import IP, TCP

from fixtures import ASA_INTERFACES
from sim_tcp import RST, Net, TcpHost
from statewall import craft
from statewall.dialects.asa import parse
from statewall.dialects.asa.lexer import ConfigError
from statewall.engine import Firewall
from statewall.events import ConnTeardown
from statewall.logfmt.asa import format_event
from statewall.logfmt.tables import show_conn

SERVER = "192.168.1.10"

HEAD = (
    "ASA Version 9.1(2)\n"
    + ASA_INTERFACES
    + """\
access-list OUTSIDE_IN extended permit tcp any host 192.168.1.10
access-group OUTSIDE_IN in interface outside
route outside 0.0.0.0 0.0.0.0 203.0.113.254
timeout conn 0:06:00 half-closed 0:05:00
timeout embryonic 0:00:10
class-map WEB
 match port tcp eq www
policy-map P
 class WEB
  set connection timeout {timeouts}
service-policy P global
"""
)


def lab(timeouts: str = "embryonic 0:00:20 idle 0:02:00 half-closed 0:01:00", *, server_up: bool = True):
    fw = Firewall(parse(HEAD.format(timeouts=timeouts), "timeouts.cfg"), seed=5)
    server = TcpHost("inside", SERVER)
    server.listen(80, b"hello")
    server.listen(8080, b"hello")
    client = TcpHost("outside", "198.51.100.1")
    net = Net(fw, [server, client] if server_up else [client])
    return fw, net, server, client


def teardowns(net: Net) -> list[str]:
    return [line for e in net.of(ConnTeardown) for line in format_event(e, timestamp=False)]


def established(net: Net, client: TcpHost, sport: int = 40001, dport: int = 80) -> None:
    net.send(client, client.connect(SERVER, dport, sport))
    net.sendall(client, client.send(sport, SERVER, dport, b"GET"))
    assert bytes(client.conn(sport, SERVER, dport).received) == b"hello"


def test_embryonic_expiry_is_syn_timeout_after_the_class_value():
    fw, net, _, client = lab(server_up=False)
    net.send(client, client.connect(SERVER, 80, 40001))
    net.advance(19.9)
    assert teardowns(net) == []
    net.advance(0.2)
    assert teardowns(net) == [
        "%ASA-6-302014: Teardown TCP connection 1 for outside:198.51.100.1/40001 to inside:192.168.1.10/80 "
        "duration 0:00:20 bytes 0 SYN Timeout"
    ]


def test_idle_expiry_is_idle_timeout_after_the_class_value():
    fw, net, _, client = lab()
    established(net, client)
    net.advance(119.9)
    assert teardowns(net) == []
    net.advance(0.2)
    assert teardowns(net) == [
        "%ASA-6-302014: Teardown TCP connection 1 for outside:198.51.100.1/40001 to inside:192.168.1.10/80 "
        "duration 0:02:00 bytes 8 Idle Timeout"
    ]


def test_half_closed_expiry_is_fin_timeout_without_resets():
    fw, net, server, client = lab("idle 0:02:00 reset half-closed 0:01:00")
    established(net, client)
    sent = []
    net.tap = lambda iface, data: sent.append(IP(bytes(data)))
    net.sendall(client, [client.close(40001, SERVER, 80)])  # the server ACKs the FIN: half-closed
    net.advance(59.9)
    assert teardowns(net) == []
    net.advance(0.2)
    (line,) = teardowns(net)
    assert line.endswith("duration 0:01:00 bytes 8 FIN Timeout")
    assert not [p for p in sent if p[TCP].flags & RST]  # "the ASA does not send a reset" for half-closed


def test_one_fin_without_its_ack_is_still_the_idle_timeout():
    fw, net, server, client = lab()
    established(net, client)
    fin = client.close(40001, SERVER, 80)
    del net.hosts[("inside", server.a)]  # the FIN goes out but nobody acknowledges it
    net.send(client, fin)
    net.advance(121)
    (line,) = teardowns(net)
    assert line.endswith("Idle Timeout")


def test_idle_reset_sends_each_end_a_rst_it_accepts():
    fw, net, server, client = lab("idle 0:02:00 reset")
    established(net, client)
    c = client.conn(40001, SERVER, 80)
    s = server.conn(80, "198.51.100.1", 40001)
    expect = {"outside": c.rcv_nxt, "inside": s.rcv_nxt}
    rsts = []
    net.tap = lambda iface, data: rsts.append((iface, IP(bytes(data))))
    net.advance(121)
    assert sorted(i for i, _ in rsts) == ["inside", "outside"]
    for iface, p in rsts:
        # Each RST arrives from the peer's address as the end knows it, at exactly the number it expects.
        assert p[TCP].flags & RST and p[TCP].seq == expect[iface]
    out_rst = dict(rsts)["outside"]
    assert (out_rst.src, out_rst[TCP].sport, out_rst.dst, out_rst[TCP].dport) == (
        SERVER,
        80,
        "198.51.100.1",
        40001,
    )
    assert not client.conns and not server.conns  # both ends dropped the connection
    (line,) = teardowns(net)
    assert line.endswith("duration 0:02:00 bytes 8 Flow timed out with reset")


def test_the_global_timeouts_apply_where_no_class_sets_one():
    fw, net, server, client = lab()
    established(net, client, 40002, dport=8080)  # not in class WEB
    net.advance(359)
    assert teardowns(net) == []
    net.advance(2)
    assert teardowns(net)[0].endswith("duration 0:06:00 bytes 8 Idle Timeout")
    fw, net, server, client = lab("idle 0:02:00")  # the class sets idle only: embryonic stays global
    del net.hosts[("inside", server.a)]
    net.send(client, client.connect(SERVER, 80, 40003))
    net.advance(10.1)
    assert teardowns(net)[0].endswith("duration 0:00:10 bytes 0 SYN Timeout")


def test_a_class_idle_timeout_applies_to_udp_too():
    cfg = HEAD.format(timeouts="idle 0:00:30").replace("match port tcp eq www", "match port udp eq domain")
    fw = Firewall(parse(cfg, "udp.cfg"))
    q = craft.udp_packet(
        4, int(ipaddress.ip_address("192.168.1.20")), int(ipaddress.ip_address("8.8.8.8")), 5001, 53
    )
    assert fw.receive("inside", q, 0.0).packets
    assert not fw.advance(29.9).events
    (td,) = fw.advance(30.1).events
    assert td.reason == "" and format_event(td, timestamp=False)[0].startswith("%ASA-6-302016: Teardown UDP")


def test_idle_minimum_depends_on_the_release():
    parse(HEAD.format(timeouts="idle 0:00:05"), "ok.cfg")
    with pytest.raises(ConfigError):
        parse(HEAD.format(timeouts="idle 0:00:05").replace("9.1(2)", "8.2(1)"), "old.cfg")


def test_show_conn_detail_shows_uptime_and_the_class_timeout():
    fw, net, server, client = lab()
    established(net, client)
    net.advance(30)
    net.send(client, client.connect(SERVER, 8080, 40009))
    text = show_conn(fw, detail=True).splitlines()
    assert text[0] == "2 in use, 2 most used"
    # 9.1(2): the 9.x form (a space after each interface's colon and before the flags' comma, the
    # Initiator/Responder line; 9.x command reference, show conn detail).
    assert text[1].startswith("Flags: A - awaiting responder ACK to SYN")
    i = text.index("TCP outside: 198.51.100.1/40001 inside: 192.168.1.10/80,")
    assert text[i + 1] == "    flags UIOB , idle 30s, uptime 30s, timeout 2m0s, bytes 8"
    assert text[i + 2] == "  Initiator: 198.51.100.1, Responder: 192.168.1.10"
    net.advance(0.5)
    assert show_conn(fw).splitlines()[0] == "2 in use, 2 most used"
    net.advance(120)
    assert show_conn(fw).splitlines()[0] == "1 in use, 2 most used"


def test_unmodelled_timeouts_say_what_the_asa_would_do_with_each():
    """check's warning names each timeout's own effect, not "idle connections" for route or
    authentication timers (Cisco ASA command reference, "timeout")."""
    text = "\n".join(
        [
            "timeout sip 0:30:00 sip_media 0:02:00 sip-invite 0:03:00 sip-disconnect 0:02:00",
            "timeout sip-provisional-media 0:02:00 uauth 0:05:00 absolute",
            "timeout conn-holddown 0:00:15",
            "timeout igp stale-route 0:01:10",
        ]
    )
    warnings = [str(w) for w in parse(text, "t.cfg").warnings]
    assert len(warnings) == 4
    assert "expire idle connections of those protocols" in warnings[0]
    assert "expire idle connections of those protocols" in warnings[1]
    assert "cut-through proxy user authenticate again" in warnings[1]
    assert "after its route disappears" in warnings[2] and "idle connections" not in warnings[2]
    assert "stale routing protocol (IGP) routes" in warnings[3] and "idle connections" not in warnings[3]
    assert warnings[2].startswith("t.cfg:3:1: warning: timeout conn-holddown is not modelled")
