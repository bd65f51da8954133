"""TCP Intercept, told as the ASA guide tells it: once a class's embryonic limit is crossed, the firewall
answers new SYNs itself with SYN cookies and only reaches the server for clients that answer.

Hosts are simulated TCP ends (``sim_tcp``) that answer what reaches them; spoofed sources have no host,
so what the firewall sends them is lost, as in a real flood. Packets the firewall originates are read
back with scapy, an independent decoder.
"""

from __future__ import annotations

import ipaddress
import random
import tracemalloc

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from sim_tcp import ACK, RST, SYN, Net, TcpHost
from statewall import craft
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import ConnBuilt, ConnTeardown, Drop, DropReason
from statewall.intercept import COOKIE_PERIOD
from statewall.logfmt.asa import format_event
from statewall.packet import decode

SERVER = "192.168.1.10"

CFG = """\
ASA Version 9.1(2)
!
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 203.0.113.1 255.255.255.0
 ipv6 address 2001:db8:f::1/64
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 192.168.1.1 255.255.255.0
 ipv6 address 2001:db8:1::1/64
access-list OUTSIDE_IN extended permit tcp any host 192.168.1.10 eq www
access-list OUTSIDE_IN extended permit tcp any6 host 2001:db8:1::10 eq www
access-group OUTSIDE_IN in interface outside
route outside 0.0.0.0 0.0.0.0 203.0.113.254
ipv6 route outside ::/0 2001:db8:f::fe
class-map WEB
 match port tcp eq www
policy-map PROTECT
 class WEB
  set connection embryonic-conn-max {limit}{extra}
service-policy PROTECT interface outside
"""


def firewall(limit: int = 100, extra: str = "", **kw) -> Firewall:
    return Firewall(parse(CFG.format(limit=limit, extra=extra), "intercept.cfg"), seed=11, **kw)


def int_addr(text: str) -> int:
    return int(ipaddress.ip_address(text))


def spoofed_syn(rng: random.Random, dst: str = SERVER) -> bytearray:
    """A SYN from a random address no simulated host owns (and not a loopback one: the ASA drops
    those before TCP Intercept, sp-security-failed)."""
    src = rng.randrange(0x0B000000, 0xC0000000)
    while src >> 24 == 127:
        src = rng.randrange(0x0B000000, 0xC0000000)
    return craft.tcp_packet(
        4, src, int_addr(dst), rng.randrange(1024, 65535), 80, rng.getrandbits(32), 0, SYN, 29200,
        craft.tcp_option_mss(1460),
    )  # fmt: skip


def web(**fw_kw) -> tuple[Firewall, TcpHost]:
    fw = firewall(**fw_kw)
    server = TcpHost("inside", SERVER)
    server.listen(80, b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 3000)
    return fw, server


def fill_embryonic(net: Net, n: int, rng: random.Random) -> None:
    for _ in range(n):
        net.send("outside", spoofed_syn(rng))


# ------------------------------------------------------------------------------------------------
# The acceptance: a flood of 10 000 spoofed SYNs with legitimate clients in it


def test_syn_flood_reaches_the_server_only_up_to_the_limit_and_real_clients_get_through():
    fw, server = web()
    clients = [TcpHost("outside", f"198.51.100.{i}", isn=7_000_000 * i) for i in range(1, 6)]
    net = Net(fw, [server, *clients])
    net.keep_events = False  # 10 000 events are not the subject; counters are
    rng = random.Random(2)
    spoofed_at_server = set()
    table_max = 0
    server_half_open_max = 0

    def tap(iface, data):
        p = decode(bytearray(data))
        if iface == "inside" and p.flags & (SYN | ACK) == SYN and p.src not in legit:
            spoofed_at_server.add((p.src, p.sport))

    legit = {c.a for c in clients}
    net.tap = tap
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        grown_at = {}
        for i in range(10_000):
            net.now += 0.001  # 1000 SYNs per second: the flood lasts 10 s, within the embryonic timeout
            net.send("outside", spoofed_syn(rng))
            if i % 2000 == 1999:
                # A legitimate client connects in the middle of the flood and fetches a page.
                c = clients[i // 2000]
                net.send(c, c.connect(SERVER, 80, 40000 + i))
                net.sendall(c, c.send(40000 + i, SERVER, 80, b"GET / HTTP/1.0\r\n\r\n"))
            if i in (1999, 9999):
                grown_at[i] = tracemalloc.get_traced_memory()[0] - base
            table_max = max(table_max, len(fw.conns))
            server_half_open_max = max(server_half_open_max, server.half_open())
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()

    # At most 100 embryonic connections ever reached the server: the first 100 spoofed SYNs, before the
    # limit was crossed. From then on every SYN was answered by the firewall and never forwarded.
    assert len(spoofed_at_server) == 100
    assert server_half_open_max == 100
    assert sum(n for a, n in server.syns.items() if a not in legit) == 100
    assert fw.intercept.stats["syn_cookies"] == 10_000 - 100 + len(clients)
    # Every legitimate client completed its handshake through the intercept and got the whole page.
    for i, c in enumerate(clients):
        conn = c.conn(40000 + 2000 * i + 1999, SERVER, 80)
        assert conn.established and bytes(conn.received) == b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 3000
        assert server.syns[c.a] == 1  # the server saw one SYN per client: the firewall's, after the cookie
    # Memory: no state per intercepted SYN. The table holds the 100 embryonic flood connections and the
    # legitimate ones; what the firewall retains does not grow between 2 000 and 10 000 SYNs.
    assert table_max <= 100 + len(clients)
    assert grown_at[9999] - grown_at[1999] < 64 * 1024, grown_at
    assert peak < 8 * 1024 * 1024, peak
    print(f"\nflood: table max {table_max}, retained growth {grown_at}, tracemalloc peak {peak} bytes")


def test_the_intercepted_syn_is_logged_as_the_asa_does():
    fw, server = web(limit=1)
    net = Net(fw, [server])
    rng = random.Random(3)
    fill_embryonic(net, 2, rng)
    drop = net.of(Drop)[-1]
    assert drop.reason is DropReason.INTERCEPT
    assert drop.origin is not None and drop.origin.text.strip() == "set connection embryonic-conn-max 1"
    (line,) = format_event(drop, timestamp=False)
    assert line == (
        f"%ASA-6-201010: Embryonic connection limit exceeded 1/1 for input packet from "
        f"{drop.src}/{drop.sport} to {SERVER}/80 on interface outside"
    )


# ------------------------------------------------------------------------------------------------
# The cookie exchange, packet by packet


def _cookie_synack(fw, now, *, src="198.51.100.9", sport=41000, isn=555, mss=1460, v6=False):
    if v6:
        pkt = IPv6(src="2001:db8:f::9", dst="2001:db8:1::10") / TCP(
            sport=sport, dport=80, seq=isn, flags="S", window=29200, options=[("MSS", mss)]
        )
    else:
        pkt = IP(src=src, dst=SERVER) / TCP(
            sport=sport, dport=80, seq=isn, flags="S", window=29200, options=[("MSS", mss)]
        )
    res = fw.receive("outside", bytes(pkt), now)
    ((iface, data),) = res.packets
    return iface, (IPv6 if v6 else IP)(bytes(data)), res


@pytest.mark.parametrize(
    "offered, cookie_mss, announced",
    [(1460, 1460, 1380), (1400, 1300, 1300), (1300, 1300, 1300), (600, 536, 536), (None, 536, 536)],
)
def test_syn_ack_carries_the_cookie_a_zero_window_and_the_mss(offered, cookie_mss, announced):
    fw, server = web(limit=1)
    net = Net(fw, [server])
    fill_embryonic(net, 1, random.Random(4))
    pkt = IP(src="198.51.100.9", dst=SERVER) / TCP(
        sport=41000, dport=80, seq=555, flags="S", window=29200,
        options=[("MSS", offered)] if offered else [],
    )  # fmt: skip
    res = fw.receive("outside", bytes(pkt), net.now)
    ((iface, data),) = res.packets
    sa = IP(bytes(data))
    ref = IP(bytes(sa))
    del ref.chksum, ref[TCP].chksum
    ref = IP(bytes(ref))
    assert (sa.chksum, sa[TCP].chksum) == (ref.chksum, ref[TCP].chksum)
    assert iface == "outside" and (sa.src, sa.dst) == (SERVER, "198.51.100.9")
    assert (sa[TCP].sport, sa[TCP].dport, sa[TCP].flags, sa[TCP].ack) == (80, 41000, "SA", 556)
    assert sa[TCP].window == 0
    # The default sysopt connection tcpmss 1380 applies to the firewall's SYN-ACK as to any other.
    assert dict(sa[TCP].options)["MSS"] == announced
    assert set(dict(sa[TCP].options)) == {"MSS"}
    # The answer to the cookie brings a SYN to the server with the client's ISN and the cookie's MSS.
    ack = IP(src="198.51.100.9", dst=SERVER) / TCP(
        sport=41000, dport=80, seq=556, ack=sa[TCP].seq + 1, flags="A", window=29200
    )
    res = fw.receive("outside", bytes(ack), net.now + 0.1)
    ((iface, data),) = res.packets
    syn = IP(bytes(data))
    assert iface == "inside" and syn[TCP].flags == "S" and syn.src == "198.51.100.9"
    assert dict(syn[TCP].options)["MSS"] == min(cookie_mss, 1380)
    assert set(dict(syn[TCP].options)) == {"MSS"}  # no window scale, SACK or timestamps: the client has none


def test_sequence_numbers_are_spliced_both_ways_with_and_without_randomization():
    for extra in ("", " random-sequence-number disable"):
        fw, server = web(limit=1, extra=extra)
        client = TcpHost("outside", "198.51.100.20", isn=123_456_789)
        net = Net(fw, [server, client])
        fill_embryonic(net, 1, random.Random(5))
        seen: dict[str, list] = {"inside": [], "outside": []}

        def tap(iface, data, seen=seen):
            seen[iface].append(IP(bytes(data)))

        net.tap = tap
        net.send(client, client.connect(SERVER, 80, 42000))
        c = client.conn(42000, SERVER, 80)
        cookie = seen["outside"][0][TCP].seq
        s = server.conn(80, "198.51.100.20", 42000)
        # The client knows the cookie as the server's ISN; the server knows the client's ISN (shifted
        # only by randomization when it is on).
        assert c.rcv_nxt == (cookie + 1) & 0xFFFFFFFF
        syn_to_server = next(p for p in seen["inside"] if p[TCP].flags == "S")
        if extra:
            assert syn_to_server[TCP].seq == 123_456_789 + 100_000
        else:
            assert syn_to_server[TCP].seq != 123_456_789 + 100_000
        # Data both ways, acknowledged in each end's own numbers.
        net.sendall(client, client.send(42000, SERVER, 80, b"GET / HTTP/1.0\r\n\r\n" * 3))
        assert bytes(s.received) == b"GET / HTTP/1.0\r\n\r\n" * 3
        assert bytes(c.received) == b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 3000
        assert c.snd_nxt == (123_456_789 + 100_000 + 1 + 54) & 0xFFFFFFFF
        assert not [d for d in net.of(Drop) if d.reason is not DropReason.INTERCEPT], net.of(Drop)
        # The window update told the client the server's window; nothing else came from the firewall.
        update = seen["outside"][1]
        assert update[TCP].flags == "A" and update[TCP].window == server.window
        assert update[TCP].seq == (cookie + 1) & 0xFFFFFFFF


def test_a_wrong_cookie_is_dropped_and_an_ack_elsewhere_is_the_usual_no_connection_drop():
    fw, server = web(limit=1)
    net = Net(fw, [server])
    fill_embryonic(net, 1, random.Random(6))
    _, sa, _ = _cookie_synack(fw, net.now)
    bad = IP(src="198.51.100.9", dst=SERVER) / TCP(
        sport=41000, dport=80, seq=556, ack=sa[TCP].seq + 2, flags="A"
    )
    res = fw.receive("outside", bytes(bad), net.now)
    assert res.packets == []
    assert [d.reason for d in res.events] == [DropReason.INTERCEPT_INVALID]
    # An ACK for a destination never intercepted is no business of the intercept.
    stray = IP(src="198.51.100.9", dst="192.168.1.11") / TCP(sport=41000, dport=80, seq=556, ack=9, flags="A")
    res = fw.receive("outside", bytes(stray), net.now)
    assert [d.reason for d in res.events] == [DropReason.TCP_NOT_SYN]
    assert sum(server.syns.values()) == 1  # the spoofed SYN before the limit; nothing since


def test_a_cookie_expires_after_two_periods():
    fw, server = web(limit=1)
    net = Net(fw, [server])
    fill_embryonic(net, 1, random.Random(7))
    now = net.now
    _, sa, _ = _cookie_synack(fw, now)
    ack = IP(src="198.51.100.9", dst=SERVER) / TCP(
        sport=41000, dport=80, seq=556, ack=sa[TCP].seq + 1, flags="A"
    )
    # Keep the destination under intercept so the late ACK is judged by its cookie.
    fw.receive("outside", bytes(IP(src="198.51.100.99", dst=SERVER) / TCP(sport=1, dport=80, flags="S")),
               now + 2 * COOKIE_PERIOD)  # fmt: skip
    res = fw.receive("outside", bytes(ack), now + 2 * COOKIE_PERIOD + 1)
    assert [d.reason for d in res.events] == [DropReason.INTERCEPT_INVALID]
    assert fw.intercept.stats["valid_acks"] == 0


def test_client_packets_wait_until_the_server_answers():
    fw, server = web(limit=1)
    client = TcpHost("outside", "198.51.100.30")
    net = Net(fw, [client])  # the server is not reachable yet: its SYN-ACK never comes
    fill_embryonic(net, 1, random.Random(8))
    net.send(client, client.connect(SERVER, 80, 43000))
    c = client.conn(43000, SERVER, 80)
    assert c.established and c.peer_window == 0
    probe = craft.tcp_packet(4, client.a, int_addr(SERVER), 43000, 80, c.snd_nxt, c.rcv_nxt, ACK, 64240,
                             payload=b"early")  # fmt: skip
    res = fw.receive("outside", probe, net.now)
    assert res.packets == [] and [d.reason for d in res.events] == [DropReason.INTERCEPT]
    assert format_event(res.events[0]) == []  # consumed quietly: no 2010xx for a client's segment


def test_a_server_that_never_answers_ends_with_a_rst_to_the_client():
    fw, server = web(limit=1)
    client = TcpHost("outside", "198.51.100.31")
    net = Net(fw, [client])
    fill_embryonic(net, 1, random.Random(9))
    sent = []
    net.tap = lambda iface, data: sent.append((iface, IP(bytes(data))))
    net.send(client, client.connect(SERVER, 80, 43001))
    assert client.conn(43001, SERVER, 80).established
    net.advance(31)  # the embryonic timeout
    rst = [p for i, p in sent if i == "outside" and p[TCP].flags & RST]
    assert len(rst) == 1 and rst[0][TCP].dport == 43001
    assert (43001, client.a, 80) not in {(k[0], k[1], k[2]) for k in client.conns}  # the client gave up
    td = [e for e in net.of(ConnTeardown) if e.initiator.port == 43001]
    assert td[0].reason == "Flow terminated by TCP Intercept"
    assert format_event(td[0], timestamp=False)[0].endswith("bytes 0 Flow terminated by TCP Intercept")


def test_a_server_reset_ends_with_a_rst_to_the_client():
    fw, server = web(limit=1)
    client = TcpHost("outside", "198.51.100.32")
    net = Net(fw, [server, client])
    fill_embryonic(net, 1, random.Random(10))
    server.ports.clear()  # the service stops: the server answers the next SYN with a RST
    net.send(client, client.connect(SERVER, 80, 43002))
    assert (43002, int_addr(SERVER), 80) not in client.conns  # reset by the firewall's RST
    td = [e for e in net.of(ConnTeardown) if e.initiator.port == 43002]
    assert td[0].reason == "Flow terminated by TCP Intercept"
    assert fw.intercept.stats["server_failures"] == 1


def test_intercepted_connections_count_and_leave_the_embryonic_count_when_established():
    fw, server = web(limit=2)
    clients = [TcpHost("outside", f"198.51.100.{40 + i}") for i in range(3)]
    net = Net(fw, [server, *clients])
    fill_embryonic(net, 2, random.Random(11))
    for i, c in enumerate(clients):
        net.send(c, c.connect(SERVER, 80, 44000 + i))
    assert all(c.conn(44000 + i, SERVER, 80).established for i, c in enumerate(clients))
    built = net.of(ConnBuilt)
    assert len(built) == 2 + 3
    (use,) = [u for u in fw.service_policies.uses.values() if u.class_map == "WEB"]
    assert use.counters["current_embryonic"] == 2  # the two spoofed ones
    assert use.counters["current_conns"] == 5


def test_ipv6_syns_are_intercepted_too():
    fw, server = web(limit=1)
    server6 = TcpHost("inside", "2001:db8:1::10")
    server6.listen(80, b"six")
    client = TcpHost("outside", "2001:db8:f::9")
    net = Net(fw, [server6, client])
    # Fill the class with one spoofed IPv6 SYN, then connect.
    net.send("outside", craft.tcp_packet(6, int_addr("2001:db8:f::77"), server6.a, 1000, 80, 1, 0, SYN, 100))
    net.send(client, client.connect("2001:db8:1::10", 80, 45000, mss=1440))
    c = client.conn(45000, "2001:db8:1::10", 80)
    net.sendall(client, client.send(45000, "2001:db8:1::10", 80, b"hello"))
    assert c.established and bytes(c.received) == b"six"
    assert server6.syns[client.a] == 1


def test_a_lost_ack_to_the_server_is_made_good_by_the_clients_duplicate_ack():
    fw, server = web(limit=1)
    client = TcpHost("outside", "198.51.100.33")
    net = Net(fw, [server, client])
    fill_embryonic(net, 1, random.Random(12))
    deliver = server.deliver
    lost = []

    def lossy(data):
        p = decode(bytearray(data))
        if p.src == client.a and p.flags & (SYN | ACK) == ACK and not lost:
            lost.append(p.seq)  # the firewall's ACK completing the server's handshake is lost
            return []
        return deliver(data)

    server.deliver = lossy
    net.send(client, client.connect(SERVER, 80, 43003))
    s = server.conn(80, "198.51.100.33", 43003)
    assert lost and s.state == "SYN_RCVD"
    # The server retransmits its SYN-ACK; it reaches the client in the cookie's numbers, and the
    # client's duplicate ACK completes the server's side.
    c = client.conn(43003, SERVER, 80)
    net.send(server, server._seg(80, client.a, 43003, (s.snd_nxt - 1) & 0xFFFFFFFF, s.rcv_nxt, SYN | ACK))
    assert s.state == "ESTABLISHED"
    net.sendall(client, client.send(43003, SERVER, 80, b"GET"))
    assert bytes(c.received).startswith(b"HTTP/1.0 200 OK")
    assert not [d for d in net.of(Drop) if d.reason is not DropReason.INTERCEPT]
