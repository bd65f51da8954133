"""The engine, told as the articles tell it: given this configuration and this traffic, expect this.

Packets are built with scapy (an independent encoder) and the engine's output is decoded with scapy
too, so these tests also cross-check the codec's rewrites end to end.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.packet import Raw

from fixtures import CLIENT, MAPPED, SEED000, SERVER, kinds
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import ConnBuilt, ConnTeardown, Drop, DropReason, XlateBuilt, XlateTeardown
from traffic import Conversation, Host, Link


def fw_for(text: str = SEED000) -> Firewall:
    return Firewall(parse(text, "seed000.cfg"))


# The seed's box with ICMP inspected: echoes have sessions, errors are matched to connections (without
# these the ASA keeps no ICMP state and the outside interface's access rules judge every ICMP packet).
SEED000_ICMP = SEED000 + (
    "policy-map global_policy\n class inspection_default\n  inspect ftp\n  inspect icmp\n"
    "  inspect icmp error\n"
    "service-policy global_policy global\n"
)


def session(fw: Firewall, sport: int = 38003, dport: int = 21) -> Conversation:
    """A TCP conversation between the inside client and the outside server, through the firewall. Each
    host acknowledges what the other sent, and the replay hook carries the scripted conversation into
    the connection's coordinates (randomized sequence numbers, mapped ports), as replay does."""
    return Conversation(
        Link(fw, 100.0),
        Host(CLIENT, sport, "inside", isn=1000, window=64240),
        Host(SERVER, dport, "outside", to=MAPPED, isn=5000, window=65535),
        acks="capture",
    )


def test_seed000_control_session_is_translated_built_and_torn_down():
    fw = fw_for()
    s = session(fw)
    res = s.client("S", options=[("MSS", 1460)])
    assert len(res.packets) == 1
    iface, data = res.packets[0]
    out = IP(bytes(data))
    assert iface == "outside"
    assert (out.src, out[TCP].sport, out.dst, out[TCP].dport) == (MAPPED, 38003, SERVER, 21)
    assert out.ttl == 64  # the ASA keeps the TTL (no set connection decrement-ttl)
    # scapy recomputes checksums from scratch: ours must match after the in-place rewrite.
    ref = IP(bytes(out))
    del ref.chksum
    del ref[TCP].chksum
    ref = IP(bytes(ref))
    assert (out.chksum, out[TCP].chksum) == (ref.chksum, ref[TCP].chksum)

    xb = kinds(res.events, XlateBuilt)
    assert len(xb) == 1 and xb[0].real_address == CLIENT and xb[0].mapped_address == MAPPED
    cb = kinds(res.events, ConnBuilt)
    assert len(cb) == 1 and cb[0].direction == "outbound"
    assert cb[0].initiator.mapped_address == MAPPED and cb[0].responder.address == SERVER

    res = s.server("SA", options=[("MSS", 1390)])
    assert len(res.packets) == 1
    iface, data = res.packets[0]
    back = IP(bytes(data))
    assert iface == "inside" and (back.dst, back[TCP].dport) == (CLIENT, 38003)

    s.client("A")
    s.server("PA", b"220 ready\r\n")
    s.client("PA", b"USER anonymous\r\n")
    s.server("PA", b"331 ok\r\n")
    s.client("PA", b"QUIT\r\n")
    s.server("FA", b"221 bye\r\n")
    s.client("FA")
    res = s.server("A")
    assert len(res.packets) == 1
    td = kinds(s.events, ConnTeardown)
    assert len(td) == 1 and td[0].reason == "TCP FINs" and td[0].closed_by == "outside"
    assert td[0].bytes == len(b"220 ready\r\nUSER anonymous\r\n331 ok\r\nQUIT\r\n221 bye\r\n")
    assert len(fw.conns) == 0
    assert fw.replay_index == {}  # teardown removed the connection's replay entries
    # The PAT slot outlives its connection by timeout pat-xlate (0:00:30).
    assert kinds(fw.advance(s.now + 29).events, XlateTeardown) == []
    xt = kinds(fw.advance(s.now + 31).events, XlateTeardown)
    assert len(xt) == 1 and xt[0].mapped_port == 38003


def test_inbound_connection_without_access_list_is_denied_by_security_levels():
    fw = fw_for()
    res = fw.receive(
        "outside", bytes(IP(src=SERVER, dst=CLIENT) / TCP(sport=40000, dport=22, flags="S")), 1.0
    )
    assert res.packets == []
    (d,) = kinds(res.events, Drop)
    assert d.reason is DropReason.ACL_DROP and d.acl is None
    assert d.egress == "inside" and d.tcp_flags == 0x02
    assert "lower to higher" in d.message and d.hint


def test_equal_security_levels_need_same_security_traffic():
    cfg = SEED000.replace("security-level 0", "security-level 100")
    res = fw_for(cfg).receive("inside", _VALID, 1.0)
    (d,) = kinds(res.events, Drop)
    assert d.reason is DropReason.SECURITY_LEVEL and "same-security-traffic" in d.hint
    ok = fw_for(cfg + "same-security-traffic permit inter-interface\n").receive("inside", _VALID, 1.0)
    assert ok.packets


def test_non_syn_without_connection_is_106015():
    fw = fw_for()
    res = fw.receive("inside", bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=1, dport=2, flags="A")), 1.0)
    (d,) = kinds(res.events, Drop)
    assert d.reason is DropReason.TCP_NOT_SYN
    assert fw.drops[DropReason.TCP_NOT_SYN] == 1


def test_access_list_permits_inbound_and_denies_the_rest():
    cfg = SEED000 + (
        "access-list outside_in extended permit tcp any host 10.0.0.2 eq 22\n"
        "access-group outside_in in interface outside\n"
    )
    fw = fw_for(cfg)
    ok = fw.receive("outside", bytes(IP(src=SERVER, dst=CLIENT) / TCP(sport=40000, dport=22, flags="S")), 1.0)
    assert len(ok.packets) == 1 and ok.packets[0][0] == "inside"
    assert kinds(ok.events, ConnBuilt)[0].direction == "inbound"
    no = fw.receive("outside", bytes(IP(src=SERVER, dst=CLIENT) / TCP(sport=40000, dport=23, flags="S")), 1.0)
    (d,) = kinds(no.events, Drop)
    assert d.reason is DropReason.ACL_DROP and d.acl == "outside_in"


def test_embryonic_connection_times_out_with_syn_timeout():
    fw = fw_for()
    s = session(fw)
    s.client("S")
    assert kinds(fw.advance(s.now + 29).events, ConnTeardown) == []
    (td,) = kinds(fw.advance(s.now + 31).events, ConnTeardown)
    assert td.reason == "SYN Timeout"


def test_established_connection_idles_out_after_timeout_conn():
    fw = fw_for()
    s = session(fw)
    s.client("S")
    s.server("SA")
    s.client("A")
    assert kinds(fw.advance(s.now + 3599).events, ConnTeardown) == []
    (td,) = kinds(fw.advance(s.now + 3601).events, ConnTeardown)
    assert td.reason == "Idle Timeout"


def test_reset_from_inside_tears_down_with_reset_i():
    fw = fw_for()
    s = session(fw)
    s.client("S")
    s.server("SA")
    s.client("A")
    s.client("R")
    (td,) = kinds(s.events, ConnTeardown)
    assert td.reason == "TCP Reset-I"


def test_udp_and_icmp_connections_use_their_timeouts():
    fw = fw_for(SEED000_ICMP)
    res = fw.receive(
        "inside", bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=5353, dport=123) / Raw(b"q")), 10.0
    )
    assert res.packets and IP(bytes(res.packets[0][1])).src == MAPPED
    rep = fw.receive(
        "outside", bytes(IP(src=SERVER, dst=MAPPED) / UDP(sport=123, dport=5353) / Raw(b"a")), 11.0
    )
    assert rep.packets and IP(bytes(rep.packets[0][1])).dst == CLIENT
    ping = fw.receive("inside", bytes(IP(src=CLIENT, dst=SERVER) / ICMP(type=8, id=77, seq=1)), 11.0)
    out = IP(bytes(ping.packets[0][1]))
    pong = fw.receive(
        "outside", bytes(IP(src=SERVER, dst=MAPPED) / ICMP(type=0, id=out[ICMP].id, seq=1)), 11.5
    )
    back = IP(bytes(pong.packets[0][1]))
    assert back.dst == CLIENT and back[ICMP].id == 77
    # inspect icmp closes the session on the reply that answered its one request (302021 at once);
    # a ping nobody answers keeps it until timeout icmp.
    assert [e.protocol for e in kinds(pong.events, ConnTeardown)] == [1]
    assert fw.receive("inside", bytes(IP(src=CLIENT, dst=SERVER) / ICMP(type=8, id=78, seq=1)), 11.5).packets
    ev = fw.advance(14.0).events
    assert [e.protocol for e in kinds(ev, ConnTeardown)] == [1]  # icmp 0:00:02
    ev = fw.advance(132.0).events
    assert [e.protocol for e in kinds(ev, ConnTeardown)] == [17]  # udp 0:02:00


def test_ttl_expiring_in_the_firewall_sends_time_exceeded():
    # Only with set connection decrement-ttl: by default the ASA forwards it with TTL 1.
    assert (
        IP(
            bytes(
                fw_for()
                .receive("inside", bytes(IP(src=CLIENT, dst=SERVER, ttl=1) / UDP(sport=4000, dport=123)), 1.0)
                .packets[0][1]
            )
        ).ttl
        == 1
    )
    fw = fw_for(
        SEED000
        + "class-map all\n match any\npolicy-map global_policy\n class all\n  set connection decrement-ttl\n"
        + "service-policy global_policy global\n"
    )
    res = fw.receive("inside", bytes(IP(src=CLIENT, dst=SERVER, ttl=1) / UDP(sport=1, dport=2)), 1.0)
    (iface, data) = res.packets[0]
    icmp = IP(bytes(data))
    assert iface == "inside" and icmp.dst == CLIENT and icmp.src == "10.0.0.1"
    assert icmp[ICMP].type == 11 and icmp[IPerror].dst == SERVER
    assert kinds(res.events, Drop)[0].reason is DropReason.TTL_EXPIRED


def test_icmp_error_about_a_translated_connection_is_translated_back():
    fw = fw_for(SEED000_ICMP)
    s = session(fw)
    res = s.client("S")
    sent = IP(bytes(res.packets[0][1]))
    err = IP(src="192.168.9.2", dst=MAPPED) / ICMP(type=3, code=3) / bytes(sent)[:28]
    res = fw.receive("outside", bytes(err), s.now + 0.1)
    (iface, data) = res.packets[0]
    back = IP(bytes(data))
    assert iface == "inside" and back.dst == CLIENT
    assert back[IPerror].src == CLIENT and back[TCPerror].sport == 38003
    ref = IP(bytes(back))
    del ref[ICMP].chksum
    assert IP(bytes(ref))[ICMP].chksum == back[ICMP].chksum


def test_icmp_error_for_no_connection_is_dropped():
    fw = fw_for(SEED000_ICMP)
    err = (
        IP(src="192.168.9.2", dst=MAPPED)
        / ICMP(type=3, code=3)
        / bytes(IP(src=MAPPED, dst=SERVER) / UDP(sport=9, dport=9))[:28]
    )
    res = fw.receive("outside", bytes(err), 1.0)
    assert kinds(res.events, Drop)[0].reason is DropReason.ICMP_NO_SESSION


def test_ping_to_the_interface_address_is_answered():
    fw = fw_for()
    res = fw.receive("inside", bytes(IP(src=CLIENT, dst="10.0.0.1") / ICMP(type=8, id=5, seq=9) / b"hi"), 1.0)
    (iface, data) = res.packets[0]
    rep = IP(bytes(data))
    assert iface == "inside" and rep[ICMP].type == 0 and rep[ICMP].id == 5 and rep[ICMP].seq == 9
    assert bytes(rep[ICMP].payload) == b"hi"


def test_no_route_is_dropped_with_a_hint():
    cfg = SEED000.replace("pixfirewall(config)#route outside 0.0.0.0 0.0.0.0 192.168.9.2 1\n", "")
    fw = fw_for(cfg)
    res = fw.receive("inside", bytes(IP(src=CLIENT, dst="8.8.8.8") / UDP(sport=1, dport=2)), 1.0)
    (d,) = kinds(res.events, Drop)
    assert d.reason is DropReason.NO_ROUTE and "8.8.8.8" in d.hint


def test_second_connection_from_the_same_source_port_reuses_the_mapping():
    """Endpoint-independent mapping (RFC 4787 REQ-1): same real port, same mapped port."""
    fw = fw_for()
    a = fw.receive("inside", bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=4000, dport=123)), 1.0)
    b = fw.receive("inside", bytes(IP(src=CLIENT, dst="192.168.9.3") / UDP(sport=4000, dport=123)), 1.0)
    assert IP(bytes(a.packets[0][1])).sport == IP(bytes(b.packets[0][1])).sport == 4000
    assert len(kinds(b.events, XlateBuilt)) == 0


def test_port_collision_picks_another_port_of_the_same_class():
    cfg = SEED000.replace("nat (inside) 1 10.0.0.0 255.0.0.0", "nat (inside) 1 10.0.0.0 255.0.0.0")
    fw = fw_for(cfg)
    a = fw.receive("inside", bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=700, dport=123)), 1.0)
    b = fw.receive("inside", bytes(IP(src="10.0.0.3", dst=SERVER) / UDP(sport=700, dport=123)), 1.0)
    pa, pb = IP(bytes(a.packets[0][1])).sport, IP(bytes(b.packets[0][1])).sport
    assert pa == 700 and pb != 700 and 512 <= pb <= 1023


def test_ipv6_flows_are_tracked_without_nat():
    cfg = SEED000.replace(
        "pixfirewall(config-if)#ip address 10.0.0.1 255.255.255.0\n",
        "pixfirewall(config-if)#ip address 10.0.0.1 255.255.255.0\n"
        "pixfirewall(config-if)#ipv6 address 2001:db8:1::1/64\n",
    ).replace(
        "pixfirewall(config-if)#ip address 192.168.9.30 255.255.255.0\n",
        "pixfirewall(config-if)#ip address 192.168.9.30 255.255.255.0\n"
        "pixfirewall(config-if)#ipv6 address 2001:db8:9::30/64\n",
    )
    fw = fw_for(cfg)
    res = fw.receive(
        "inside", bytes(IPv6(src="2001:db8:1::2", dst="2001:db8:9::2") / ICMPv6EchoRequest(id=3)), 1.0
    )
    (iface, data) = res.packets[0]
    out = IPv6(bytes(data))
    assert iface == "outside" and out.hlim == 64 and out.src == "2001:db8:1::2"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=120))
def test_garbage_never_raises_and_is_counted(blob):
    fw = fw_for()
    res = fw.receive("inside", blob, 1.0)
    assert res.packets == [] or res.packets
    assert sum(fw.drops.values()) + fw.stats["forwarded"] + fw.stats["to_the_box"] >= 1
    assert fw.drops[DropReason.INTERNAL_ERROR] == 0


_VALID = bytes(
    IP(src=CLIENT, dst=SERVER)
    / TCP(sport=38003, dport=21, flags="S", options=[("MSS", 1460), ("WScale", 7), ("SAckOK", b"")])
)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_VALID) - 1), st.integers(0, 255), st.integers(1, len(_VALID)))
def test_corrupted_and_truncated_packets_never_raise(pos, value, cut):
    fw = fw_for()
    blob = bytearray(_VALID)
    blob[pos] = value
    fw.receive("inside", bytes(blob[:cut]), 1.0)
    assert fw.drops[DropReason.INTERNAL_ERROR] == 0


def test_unknown_interface_is_a_drop_not_an_exception():
    fw = fw_for()
    res = fw.receive("dmz", _VALID, 1.0)
    assert kinds(res.events, Drop)[0].reason is DropReason.UNKNOWN_INTERFACE


@pytest.mark.parametrize("flags", ["SA", "F", "R", "FA"])
def test_first_packet_must_be_a_syn(flags):
    fw = fw_for()
    res = fw.receive("inside", bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=1, dport=2, flags=flags)), 1.0)
    assert kinds(res.events, Drop)[0].reason is DropReason.TCP_NOT_SYN


def test_static_port_forward_to_the_interface_address():
    cfg = SEED000 + (
        "static (inside,outside) tcp interface 8080 10.0.0.5 80 netmask 255.255.255.255\n"
        "access-list outside_in extended permit tcp any host 192.168.9.30 eq 8080\n"
        "access-group outside_in in interface outside\n"
    )
    policy = parse(cfg, "s.cfg")
    policy.version = "8.2(1)"  # the ACL names the mapped address, as before 8.3
    fw = Firewall(policy)
    syn = IP(src="198.51.100.7", dst=MAPPED) / TCP(sport=51000, dport=8080, flags="S")
    res = fw.receive("outside", bytes(syn), 1.0)
    (iface, data) = res.packets[0]
    fwd = IP(bytes(data))
    assert iface == "inside" and (fwd.dst, fwd[TCP].dport) == ("10.0.0.5", 80)
    rep = IP(src="10.0.0.5", dst="198.51.100.7") / TCP(
        sport=80, dport=51000, flags="SA", ack=fwd[TCP].seq + 1
    )
    (iface, data) = fw.receive("inside", bytes(rep), 1.1).packets[0]
    back = IP(bytes(data))
    assert iface == "outside" and (back.src, back[TCP].sport) == (MAPPED, 8080)


def test_a_retransmitted_fin_and_a_duplicate_ack_do_not_close_the_connection():
    """Under loss the sender's FIN goes out twice (tail loss probe, RTO) while the peer still misses
    data and sends duplicate ACKs. netfilter's table calls that TIME_WAIT (FIN_WAIT -> LAST_ACK on the
    second FIN); the ASA tears a connection down only once both sides sent a FIN (lab seed003)."""
    fw = fw_for()
    s = session(fw)
    s.client("S")
    s.server("SA")
    s.client("A")
    una = s.a.nxt
    s.client("PA", b"x" * 1000)
    s.client("PA", b"y" * 1000)
    fin = s.a.nxt
    s.client("FA", b"z" * 100)
    s.a.nxt = fin
    s.client("FA", b"z" * 100)  # the same FIN again
    s.a.nxt = una  # the peer still misses the first segment
    s.server("A")
    assert kinds(s.events, ConnTeardown) == []
    s.a.nxt = una
    assert len(s.client("PA", b"x" * 1000).packets) == 1  # the retransmission passes
    s.a.nxt = fin + 101
    s.server("FA")
    s.client("A")
    (td,) = kinds(s.events, ConnTeardown)
    assert (td.reason, td.closed_by) == ("TCP FINs", "inside")


def test_an_interface_service_policy_inspects_ftp_on_its_own_interface_only():
    cfg = (
        SEED000
        + "interface Ethernet2\n nameif dmz\n security-level 50\n ip address 172.16.0.1 255.255.255.0\n"
        # 8.2: nat id 1's addresses need a global on every lower interface (305005 otherwise).
        "global (dmz) 1 interface\n"
        "class-map ftp-cls\n match port tcp eq 21\n"
        "policy-map dmz-pol\n class ftp-cls\n  inspect ftp\n"
        "policy-map global_policy\n class inspection_default\n  no inspect ftp\n"
        "service-policy global_policy global\n"
        "service-policy dmz-pol interface dmz\n"
    )
    fw = Firewall(parse(cfg, "s.cfg"))
    syn = TCP(sport=40000, dport=21, flags="S")
    fw.receive("inside", bytes(IP(src=CLIENT, dst=SERVER) / syn), 1.0)
    fw.receive("inside", bytes(IP(src=CLIENT, dst="172.16.0.9") / syn), 1.0)
    helpers = {c.responder.interface: c.helper is not None for c in fw.conns}
    assert helpers == {"outside": False, "dmz": True}


@pytest.mark.parametrize("crossing", [True, False], ids=["crossing-fins", "one-after-the-other"])
def test_tcp_fins_teardown_waits_for_both_fins_to_be_acknowledged(crossing):
    """The ASA closes a connection ("TCP FINs") once both sides' FINs were acknowledged. When the FINs
    cross, netfilter's table reaches TIME_WAIT on the ACK of the second FIN while the first one's ACK is
    still on its way; tearing down there would deny that ACK (seen in a capture of real stacks)."""
    from fixtures import PIX_NO_NAT
    from statewall import craft

    fw = Firewall(parse(PIX_NO_NAT, "t.cfg"), seed=5)
    c, s = 0x0A000002, 0xC0A80902  # 10.0.0.2 inside, 192.168.9.2 outside

    def send(client: bool, seq: int, ack: int, flags: int) -> list:
        src, dst, sp, dp = (c, s, 40000, 21) if client else (s, c, 21, 40000)
        iface = "inside" if client else "outside"
        pkt = craft.tcp_packet(4, src, dst, sp, dp, seq, ack, flags, 64240)
        res = fw.receive(iface, fw.replay_rewrite(iface, pkt, 1.0), 1.0)
        return res.packets + [("event", e) for e in res.events]

    send(True, 100, 0, 0x02)
    send(False, 500, 101, 0x12)
    send(True, 101, 501, 0x10)
    if crossing:
        # Both FINs leave before either side saw the other's.
        out = send(True, 101, 501, 0x11) + send(False, 501, 101, 0x11)
        out += send(True, 102, 502, 0x10)  # the client acknowledges the server's FIN
        assert not [e for k, e in out if k == "event"], "torn down before the server acknowledged"
        last = send(False, 502, 102, 0x10)  # ... and the server the client's
    else:
        out = send(True, 101, 501, 0x11) + send(False, 501, 102, 0x11)
        assert not [e for k, e in out if k == "event"]
        last = send(True, 102, 502, 0x10)
    assert len([p for k, p in last if k != "event"]) == 1  # the last ACK was forwarded
    teardown = [e for k, e in last if k == "event" and isinstance(e, ConnTeardown)]
    assert len(teardown) == 1 and teardown[0].reason == "TCP FINs"
    assert fw.drops.total() == 0
