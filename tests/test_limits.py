"""Connection limits, told as seed 002 tells them: ``set connection conn-max / embryonic-conn-max /
per-client-max / per-client-embryonic-max`` per class, the ``tcp MAX EMB`` limits of a NAT line, and
"if you configure these settings for the same traffic using both methods, the ASA uses the lower
limit". Each refusal is one drop with the ASA's 2010xx message; ``show service-policy`` counts.
"""

from __future__ import annotations

import ipaddress

from fixtures import ASA_WEB
from sim_tcp import SYN, Net, TcpHost
from statewall import craft
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import ConnBuilt, ConnTeardown, Drop, DropReason
from statewall.logfmt.asa import format_event
from statewall.logfmt.mpf import format_show_service_policy

SERVER = "192.168.1.10"

HEAD_9 = "ASA Version 9.1(2)\n" + ASA_WEB


def policy(settings: str, match: str = "match port tcp eq www", scope: str = "interface outside") -> str:
    lines = "".join(f"  {s}\n" for s in settings.strip().splitlines())
    return f"class-map C\n {match}\npolicy-map P\n class C\n{lines}service-policy P {scope}\n"


def a(text: str) -> int:
    return int(ipaddress.ip_address(text))


def setup(config: str, clients=("198.51.100.1",), server_addr=SERVER):
    fw = Firewall(parse(config, "limits.cfg"), seed=3)
    server = TcpHost("inside", server_addr)
    server.listen(80, b"ok")
    hosts = [TcpHost("outside", c, isn=1_000_000 * (i + 1)) for i, c in enumerate(clients)]
    return fw, Net(fw, [server, *hosts]), server, hosts


def open_conn(net: Net, host: TcpHost, sport: int, dst: str = SERVER) -> bool:
    net.send(host, host.connect(dst, 80, sport))
    return host.conn(sport, dst, 80).established


def drops(net: Net, reason: DropReason) -> list[Drop]:
    return [d for d in net.of(Drop) if d.reason is reason]


def test_conn_max_refuses_the_next_connection_with_201011_until_one_ends():
    fw, net, server, (c,) = setup(HEAD_9 + policy("set connection conn-max 2"))
    assert open_conn(net, c, 40001) and open_conn(net, c, 40002)
    assert not open_conn(net, c, 40003)
    (d,) = drops(net, DropReason.CONN_LIMIT)
    assert format_event(d, timestamp=False) == [
        "%ASA-3-201011: Connection limit exceeded 2/2 for input packet from 198.51.100.1/40003 "
        "to 192.168.1.10/80 on interface outside"
    ]
    assert d.origin.text.strip() == "set connection conn-max 2" and "conn-max" in d.hint
    text = format_show_service_policy(fw.policy, fw.service_policies.uses)
    assert "      Set connection policy: conn-max 2" in text.splitlines()
    assert "        current embryonic conns 0, current conns 2, drop 1" in text.splitlines()
    # A connection ends: the next one is admitted.
    net.sendall(c, [c.close(40001, SERVER, 80)])
    net.send(server, server.close(80, "198.51.100.1", 40001))
    assert any(e.reason == "TCP FINs" for e in net.of(ConnTeardown))
    assert open_conn(net, c, 40004)
    assert (
        "        current embryonic conns 0, current conns 2, drop 1"
        in format_show_service_policy(fw.policy, fw.service_policies.uses).splitlines()
    )


def test_per_client_max_counts_each_host_on_its_own_with_201013():
    fw, net, server, (c1, c2) = setup(
        HEAD_9 + policy("set connection per-client-max 1"), clients=("198.51.100.1", "198.51.100.2")
    )
    assert open_conn(net, c1, 40001)
    assert not open_conn(net, c1, 40002)
    assert open_conn(net, c2, 40001)
    (d,) = drops(net, DropReason.CONN_LIMIT)
    assert format_event(d, timestamp=False)[0] == (
        "%ASA-3-201013: Per-client connection limit exceeded 1/1 for input packet from 198.51.100.1/40002 "
        "to 192.168.1.10/80 on interface outside"
    )
    assert len(fw.limits.clients) == 2
    # A client's count leaves with its last connection.
    net.send(server, server.close(80, "198.51.100.2", 40001))
    net.sendall(c2, [c2.close(40001, SERVER, 80)])
    assert len(fw.limits.clients) == 1


def test_embryonic_connections_stop_counting_once_established():
    fw, net, server, (c,) = setup(HEAD_9 + policy("set connection embryonic-conn-max 1"))
    for port in range(40001, 40006):
        assert open_conn(net, c, port)  # each completes before the next starts: never intercepted
    assert fw.intercept.stats["syn_cookies"] == 0
    (use,) = fw.service_policies.uses.values()
    assert (use.counters["current_embryonic"], use.counters["current_conns"]) == (0, 5)


def test_per_client_embryonic_max_intercepts_with_201012_rate_limited_to_one_per_10_s():
    fw, net, server, _ = setup(HEAD_9 + policy("set connection per-client-embryonic-max 1"))

    def syn(sport):
        return craft.tcp_packet(4, a("198.51.100.66"), a(SERVER), sport, 80, 7, 0, SYN, 1000)

    net.send("outside", syn(50000))  # embryonic: the spoofed client never answers the server
    for i, dt in enumerate((0.0, 1.0, 9.5, 0.6)):
        net.now += dt
        net.send("outside", syn(50001 + i))
    inter = drops(net, DropReason.INTERCEPT)
    assert [d.detail["kind"] for d in inter] == ["per-client-embryonic"] * 4
    logged = [format_event(d, timestamp=False) for d in inter]
    # Logged at t, not at t+1 (within 10 s of it), again at t+10.5, not at t+11.1 (0.6 s after that).
    assert [bool(x) for x in logged] == [True, False, True, False]
    assert fw.drops[DropReason.INTERCEPT] == 4  # all counted
    assert logged[0] == [
        "%ASA-6-201012: Per-client embryonic connection limit exceeded 1/1 for input packet from "
        "198.51.100.66/50001 to 192.168.1.10/80 on interface outside"
    ]
    # Another client is not held to this one's count.
    net.send("outside", craft.tcp_packet(4, a("198.51.100.67"), a(SERVER), 1, 80, 7, 0, SYN, 1000))
    assert len(net.of(ConnBuilt)) == 2


HEAD_82 = """\
ASA Version 8.2(1)
interface Ethernet0/0
 nameif outside
 security-level 0
 ip address 203.0.113.1 255.255.255.0
interface Ethernet0/1
 nameif inside
 security-level 100
 ip address 192.168.1.1 255.255.255.0
access-list OUTSIDE_IN extended permit tcp any host 203.0.113.10 eq www
access-group OUTSIDE_IN in interface outside
static (inside,outside) 203.0.113.10 192.168.1.10 netmask 255.255.255.255 tcp {max} {emb}
route outside 0.0.0.0 0.0.0.0 203.0.113.254
"""


def test_a_nat_line_limit_and_a_class_limit_combine_by_the_lower():
    # The static allows 3, the class 5: the static's limit binds.
    fw, net, _, (c,) = setup(HEAD_82.format(max=3, emb=0) + policy("set connection conn-max 5"))
    assert [open_conn(net, c, p, "203.0.113.10") for p in range(40001, 40005)] == [True, True, True, False]
    (d,) = drops(net, DropReason.CONN_LIMIT)
    assert (d.detail["count"], d.detail["limit"]) == (3, 3)
    assert d.origin.text.startswith("static (inside,outside) 203.0.113.10")
    # The class allows 2, the static 3: the class's binds.
    fw, net, _, (c,) = setup(HEAD_82.format(max=3, emb=0) + policy("set connection conn-max 2"))
    assert [open_conn(net, c, p, "203.0.113.10") for p in range(40001, 40004)] == [True, True, False]
    (d,) = drops(net, DropReason.CONN_LIMIT)
    assert d.detail["limit"] == 2 and d.origin.text.strip() == "set connection conn-max 2"


def test_a_nat_line_embryonic_limit_starts_tcp_intercept():
    fw, net, server, (c,) = setup(HEAD_82.format(max=0, emb=1))
    net.send("outside", craft.tcp_packet(4, a("198.51.100.66"), a("203.0.113.10"), 1, 80, 7, 0, SYN, 1000))
    assert open_conn(net, c, 40001, "203.0.113.10")  # through the intercept
    (d,) = drops(net, DropReason.INTERCEPT)
    assert format_event(d, timestamp=False)[0].startswith(
        "%ASA-6-201010: Embryonic connection limit exceeded 1/1 for input packet from 198.51.100.1/40001 "
        "to 203.0.113.10/80"
    )
    assert server.syns[a("198.51.100.1")] == 1


def test_udp_connections_count_toward_conn_max():
    cfg = HEAD_9 + policy("set connection conn-max 2", match="match port udp eq domain", scope="global")
    fw = Firewall(parse(cfg, "udp.cfg"))
    out = []
    for sport in (5001, 5002, 5003):
        dns = craft.udp_packet(4, a("192.168.1.20"), a("8.8.8.8"), sport, 53, b"q")
        out.append(fw.receive("inside", dns, 10.0))
    assert [len(r.packets) for r in out] == [1, 1, 0]
    (d,) = out[2].events
    assert d.reason is DropReason.CONN_LIMIT
    assert format_event(d, timestamp=False)[0] == (
        "%ASA-3-201011: Connection limit exceeded 2/2 for output packet from 192.168.1.20/5003 "
        "to 8.8.8.8/53 on interface inside"
    )
    # Expiry frees the count (UDP idle 2 minutes).
    fw.advance(10.0 + 121)
    assert (
        len(
            fw.receive(
                "inside", craft.udp_packet(4, a("192.168.1.20"), a("8.8.8.8"), 5004, 53), 131.5
            ).packets
        )
        == 1
    )


def test_no_limit_no_counting():
    fw, net, server, (c,) = setup(HEAD_9 + policy("set connection random-sequence-number disable"))
    assert open_conn(net, c, 40001)
    conn = next(iter(fw.conns))
    assert conn.limit is None and not fw.limits.classes and not fw.limits.nat
