"""nftables flowtables: ``flow add @ft`` offloads an established connection, whose later packets are
forwarded at ingress past every hook (no chain counts them), translated as their connection is; a
FIN or RST, or the entry's 30 s without a packet, gives the connection back to the slow path. The
kernel here has no nf_flow_table (CONFIG_NF_FLOW_TABLE), so there is no kernel differential: the
behaviour follows nft_flow_offload.c and nf_flow_table_ip.c (see statewall.engine.nf_flowtable).
"""

from __future__ import annotations

import pytest

from statewall import craft
from statewall.dialects.errors import ConfigError
from statewall.dialects.nftables import list_ruleset, parse
from statewall.engine import Firewall
from statewall.packet import decode, str_to_addr

HEADER = (
    "#@statewall interface lan dev eth1 address 192.168.1.1/24\n"
    "#@statewall interface wan dev eth0 address 203.0.113.1/24\n"
)
RULESET = """table inet fw {
	flowtable ft {
		hook ingress priority filter
		devices = { eth0, eth1 }
		counter
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
		meta l4proto { tcp, udp } flow add @ft
		ct state established,related counter packets 0 bytes 0 accept
		iifname "eth1" counter packets 0 bytes 0 accept
	}

	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" masquerade
	}
}
"""
CLIENT, SERVER = str_to_addr("192.168.1.10")[1], str_to_addr("203.0.113.9")[1]
WAN = str_to_addr("203.0.113.1")[1]
SYN, ACK, FIN, PSH = 0x02, 0x10, 0x01, 0x08


class Box:
    def __init__(self, text: str = RULESET) -> None:
        self.policy = parse(HEADER + text, "fw.nft")
        self.fw = Firewall(self.policy)
        self.now = 100.0
        self.port = 0

    def send(self, iface: str, src, dst, sport, dport, seq, ack, flags, data=b"", dt=0.01):
        self.now += dt
        buf = craft.tcp_packet(4, src, dst, sport, dport, seq, ack, flags, 64240, b"", data)
        res = self.fw.receive(iface, buf, self.now)
        return [(o, decode(bytearray(p))) for o, p in res.packets]

    def out(self, seq, ack, flags, data=b"", dt=0.01):
        return self.send("lan", CLIENT, SERVER, 5000, 80, seq, ack, flags, data, dt)

    def back(self, seq, ack, flags, data=b"", dt=0.01):
        return self.send("wan", SERVER, WAN, 80, self.port, seq, ack, flags, data, dt)

    def counters(self) -> list[int]:
        c = self.fw.netfilter.nft_counters()
        return [c[("inet fw", "forward", i)][0] for i in (1, 2)]

    def handshake(self) -> None:
        [(iface, syn)] = self.out(100, 0, SYN)
        assert iface == "wan"
        self.port = syn.sport
        assert self.back(900, 101, SYN | ACK)[0][0] == "lan"
        assert self.out(101, 901, ACK)[0][0] == "wan"

    def conn(self):
        return next(iter(self.fw.conns.by_key.values())).conn


def test_an_established_connection_is_offloaded_and_bypasses_the_chains():
    box = Box()
    box.handshake()
    # The ACK ending the handshake is ESTABLISHED: flow add offloads the connection.
    assert box.conn().offload is not None
    before = box.counters()
    for i in range(3):
        [(iface, pkt)] = box.out(101 + 10 * i, 901, ACK | PSH, b"x" * 10)
        assert iface == "wan" and pkt.src == WAN and pkt.sport == box.port
        assert pkt.ttl == 63
        [(iface, pkt)] = box.back(901 + 5 * i, 111 + 10 * i, ACK | PSH, b"y" * 5)
        assert iface == "lan" and pkt.dst == CLIENT and pkt.dport == 5000  # un-masqueraded
    assert box.counters() == before  # no chain saw them
    # A FIN tears the entry down and takes the slow path: counted again.
    [(iface, _)] = box.out(131, 916, FIN | ACK)
    assert iface == "wan" and box.conn().offload is None
    assert box.counters() == [before[0] + 1, before[1]]


def test_the_entry_expires_after_30_seconds_without_a_packet_and_is_made_again():
    box = Box()
    box.handshake()
    box.out(101, 901, ACK | PSH, b"x", dt=1)
    before = box.counters()
    box.out(102, 901, ACK | PSH, b"x", dt=31)  # the entry is gone: the slow path, and flow add again
    assert box.counters() == [before[0] + 1, before[1]]
    assert box.conn().offload is not None
    box.out(103, 901, ACK | PSH, b"x", dt=1)
    assert box.counters() == [before[0] + 1, before[1]]


def test_new_connections_and_devices_outside_the_flowtable_stay_on_the_slow_path():
    text = RULESET.replace("devices = { eth0, eth1 }", "devices = { eth1 }")
    box = Box(text)
    box.handshake()
    assert box.conn().offload is not None
    before = box.counters()
    box.out(101, 901, ACK | PSH, b"x")  # eth1 is in the flowtable: fast
    box.back(901, 101, ACK | PSH, b"y")  # eth0 is not: the slow path counts it
    assert box.counters() == [before[0] + 1, before[1]]


def test_flowtables_print_as_nft_lists_them_and_are_refused_where_nft_refuses_them():
    policy = parse(HEADER + RULESET, "fw.nft")
    assert list_ruleset(policy) == RULESET
    with pytest.raises(ConfigError, match="flowtable nope does not exist"):
        parse(RULESET.replace("flow add @ft", "flow add @nope"), "x.nft")
    with pytest.raises(ConfigError, match="only valid in a forward chain"):
        parse(RULESET.replace('oifname "eth0" masquerade', "flow add @ft"), "x.nft")


def test_an_idle_offloaded_udp_flow_ends_as_a_replied_udp_stream_would():
    box = Box()
    wan = WAN

    def udp(iface, src, dst, sport, dport):
        box.now += 0.01
        res = box.fw.receive(iface, craft.udp_packet(4, src, dst, sport, dport, b"q"), box.now)
        return [(o, decode(bytearray(p))) for o, p in res.packets]

    [(_, out)] = udp("lan", CLIENT, SERVER, 6000, 53)
    udp("wan", SERVER, wan, 53, out.sport)
    udp("lan", CLIENT, SERVER, 6000, 53)  # ESTABLISHED: offloaded
    conn = next(h.conn for h in box.fw.conns.by_key.values() if h.conn.proto == 17)
    assert conn.offload is not None
    assert udp("wan", SERVER, wan, 53, out.sport)[0][0] == "lan"  # the fast path
    last = box.now
    assert conn.deadline() == pytest.approx(last + 120)  # nf_conntrack_udp_timeout_stream
    box.fw.advance(last + 121)
    assert not any(h.conn is conn for h in box.fw.conns.by_key.values())
