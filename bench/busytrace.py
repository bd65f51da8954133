"""A busy site's capture, generated: many inside hosts behind PAT, web, UDP, ping, FTP and per-client limits.

``write_trace(path, connections)`` writes a raw-IP pcap of about ``connections`` connections taken, as a
real capture would be, without any firewall in the path (hosts' own addresses and ports both ways), and
``config()`` the ASA configuration to replay it through. The sharded replay's tests and bench line
(``bench.run --only shards``) use it: one process's answers against N shards'.

What is in it, per 1 000 connections (one starts every 5 milliseconds, each connection's packets one
millisecond apart, every packet at its own microsecond):

* ~700 UDP request/response pairs from 2 000 inside hosts to outside servers (a UDP connection each,
  left to time out), 1 in 50 of them to a closed port answered by an ICMP port unreachable that quotes
  the request;
* ~200 HTTP connections (handshake, request, response, both FINs);
* ~50 pings (echo request and reply: ICMP PAT by identifier);
* ~40 from hosts of the ``lab`` interface to inside hosts: equal security levels, so the initiator's
  shard owns them;
* every 250th slot a passive FTP session (control, PASV, a data connection, RETR, 226: a 303002);
* every 500th slot a heavy host opening 12 HTTP connections at once, 4 more than its class's
  ``per-client-max 8`` allows (201011... refusals as the ASA logs them).
"""

from __future__ import annotations

import heapq
import os
import random
from collections.abc import Iterator

from statewall import craft
from statewall.pcapio import PcapWriter

CONFIG = """hostname busy
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 192.0.2.1 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 10.1.0.1 255.255.0.0
interface GigabitEthernet0/2
 nameif lab
 security-level 100
 ip address 10.2.0.1 255.255.0.0
same-security-traffic permit inter-interface
route outside 0.0.0.0 0.0.0.0 192.0.2.254
{nat}class-map WEB
 match port tcp eq www
policy-map LIMITS
 class WEB
  set connection per-client-max 8
service-policy LIMITS interface inside
policy-map global_policy
 class inspection_default
  inspect ftp
  inspect icmp
  inspect icmp error
service-policy global_policy global
"""
# The inspections the site's traffic needs (a configuration's global_policy replaces the factory one):
# FTP, ICMP (echo sessions) and ICMP errors (matched to the connection they quote); without the last two
# the ASA keeps no ICMP state and the outside interface, which has no access list, lets no reply in.
# The lab reaches inside hosts untranslated: an 8.2 nat rule's addresses must be translated on every
# lower or same security interface they go to (305005 otherwise), so NAT exemption says "not there".
PAT = """access-list lab_nonat extended permit ip 10.2.0.0 255.255.0.0 10.1.0.0 255.255.0.0
global (outside) 1 interface
nat (inside) 1 10.1.0.0 255.255.0.0
nat (lab) 0 access-list lab_nonat
nat (lab) 1 10.2.0.0 255.255.0.0
"""


def config(pat: bool = True) -> str:
    """The configuration to replay the trace through: with PAT to the outside interface, or without."""
    return CONFIG.format(nat=PAT if pat else "")


HOSTS = 2000
LAB_HOSTS = 100
INSIDE = 0x0A010000  # 10.1.0.0
LAB = 0x0A020000  # 10.2.0.0
WEB = 0xC6336400  # 198.51.100.0: servers .1-.20
FTP = 0xC6336415  # 198.51.100.21
UDP_SERVER = 0xCB007100  # 203.0.113.0: .1-.50
ROUTER = 0xC0000264  # 192.0.2.100, a router on the path that reports a closed port
_ACK, _SYN, _FIN, _PSH = 0x10, 0x02, 0x01, 0x08
# A connection starts every 5 ms: with UDP's 2-minute idle timeout and PAT's 30 s after it, about
# 21 000 translations are alive at a time on the one PAT address, a third of its ports (a site whose
# address ran out of ports would refuse connections: a different test).
SLOT = 5e-3


class _Tcp:
    """One TCP connection's packets with consistent sequence numbers (client c, server s)."""

    def __init__(self, c: int, cport: int, s: int, sport: int, isn_c: int, isn_s: int) -> None:
        self.c, self.cport, self.s, self.sport = c, cport, s, sport
        self.seq = {True: isn_c, False: isn_s}

    def pkt(self, from_client: bool, flags: int, payload: bytes = b"") -> bytearray:
        seq, ack = self.seq[from_client], self.seq[not from_client]
        if from_client:
            p = craft.tcp_packet(
                4, self.c, self.s, self.cport, self.sport, seq, ack, flags, 64240, payload=payload
            )
        else:
            p = craft.tcp_packet(
                4, self.s, self.c, self.sport, self.cport, seq, ack, flags, 65160, payload=payload
            )
        self.seq[from_client] = (seq + len(payload) + (1 if flags & (_SYN | _FIN) else 0)) & 0xFFFFFFFF
        return p

    def open(self) -> list[tuple[bool, bytearray]]:
        syn = craft.tcp_packet(4, self.c, self.s, self.cport, self.sport, self.seq[True], 0, _SYN, 64240)
        self.seq[True] = (self.seq[True] + 1) & 0xFFFFFFFF
        return [(True, syn), (False, self.pkt(False, _SYN | _ACK)), (True, self.pkt(True, _ACK))]

    def close(self, client_first: bool = True) -> list[tuple[bool, bytearray]]:
        a = client_first
        return [(a, self.pkt(a, _FIN | _ACK)), (not a, self.pkt(not a, _FIN | _ACK)), (a, self.pkt(a, _ACK))]


class _Ports:
    """Each host's ephemeral ports in turn, so that no host reuses one while it may still be in use."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}

    def __call__(self, host: int) -> int:
        p = self.next.get(host, 32768 + (host * 131) % 20000)
        self.next[host] = 32768 + (p - 32768 + 1) % 28000
        return p


def _web(rng: random.Random, client: int, port: int, server: int = 0) -> list[tuple[bool, bytearray]]:
    server = server or WEB + rng.randint(1, 20)
    t = _Tcp(client, port, server, 80, rng.getrandbits(32), rng.getrandbits(32))
    return [
        *t.open(),
        (True, t.pkt(True, _PSH | _ACK, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")),
        (False, t.pkt(False, _PSH | _ACK, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")),
        *t.close(),
    ]


def _ftp(rng: random.Random, client: int, ports: _Ports) -> list[tuple[bool, bytearray]]:
    ctl = _Tcp(client, ports(client), FTP, 21, rng.getrandbits(32), rng.getrandbits(32))
    dport = rng.randint(40000, 60000)
    data = _Tcp(client, ports(client), FTP, dport, rng.getrandbits(32), rng.getrandbits(32))
    a = ",".join(str(b) for b in FTP.to_bytes(4, "big"))
    pasv = f"227 Entering Passive Mode ({a},{dport >> 8},{dport & 255}).\r\n".encode()
    return [
        *ctl.open(),
        (False, ctl.pkt(False, _PSH | _ACK, b"220 ready\r\n")),
        (True, ctl.pkt(True, _PSH | _ACK, b"USER anonymous\r\n")),
        (False, ctl.pkt(False, _PSH | _ACK, b"331 password please\r\n")),
        (True, ctl.pkt(True, _PSH | _ACK, b"PASS guest\r\n")),
        (False, ctl.pkt(False, _PSH | _ACK, b"230 logged in\r\n")),
        (True, ctl.pkt(True, _PSH | _ACK, b"PASV\r\n")),
        (False, ctl.pkt(False, _PSH | _ACK, pasv)),
        *data.open(),
        (True, ctl.pkt(True, _PSH | _ACK, b"RETR file.txt\r\n")),
        (False, ctl.pkt(False, _PSH | _ACK, b"150 opening data connection\r\n")),
        (False, data.pkt(False, _PSH | _ACK, b"x" * 512)),
        (True, data.pkt(True, _ACK)),
        *data.close(client_first=False),
        (False, ctl.pkt(False, _PSH | _ACK, b"226 transfer complete\r\n")),
        (True, ctl.pkt(True, _PSH | _ACK, b"QUIT\r\n")),
        (False, ctl.pkt(False, _PSH | _ACK, b"221 bye\r\n")),
        *ctl.close(client_first=False),
    ]


def _connections(connections: int, seed: int) -> Iterator[tuple[float, list[tuple[bool, bytearray]]]]:
    """(start time, packets in order) of each connection or session, by start time."""
    rng = random.Random(seed)
    ports = _Ports()
    ident = 0
    slot = 0
    made = 0
    while made < connections:
        start = 1_700_000_000.0 + slot * SLOT + (slot % 997) * 1e-6
        slot += 1
        client = INSIDE + 2 + rng.randrange(HOSTS)
        if slot % 500 == 0:
            heavy = INSIDE + 2 + HOSTS + slot // 500 % 50  # a host of its own, beside the others
            for k in range(12):
                yield start + k * 2e-5, _web(rng, heavy, ports(heavy))
            made += 12
            continue
        if slot % 250 == 0:
            yield start, _ftp(rng, client, ports)
            made += 2
            continue
        r = rng.random()
        if r < 0.70:
            server = UDP_SERVER + rng.randint(1, 50)
            sport = ports(client)
            if rng.random() < 0.02:
                req = craft.udp_packet(4, client, server, sport, 9, b"probe")
                err = craft.icmp_error(4, ROUTER, client, 3, 3, bytes(req))
                yield start, [(True, req), (False, err)]
            else:
                req = craft.udp_packet(4, client, server, sport, 443, b"q" * 40)
                yield (
                    start,
                    [(True, req), (False, craft.udp_packet(4, server, client, 443, sport, b"r" * 80))],
                )
        elif r < 0.90:
            yield start, _web(rng, client, ports(client))
        elif r < 0.95:
            ident = (ident + 1) & 0xFFFF
            server = WEB + rng.randint(1, 20)
            yield (
                start,
                [
                    (True, craft.icmp_echo(4, client, server, ident, 1, b"ping")),
                    (False, craft.icmp_echo(4, server, client, ident, 1, b"ping", reply=True)),
                ],
            )
        else:
            lab = LAB + 2 + rng.randrange(LAB_HOSTS)
            yield start, _web(rng, lab, ports(lab), server=client)
        made += 1


def write_trace(path: str | os.PathLike[str], connections: int = 100_000, seed: int = 19) -> dict[str, int]:
    """Write the capture; returns how many connections (or sessions' connections) and packets."""
    rng_gap = 1e-3  # one packet per millisecond per connection
    pending: list[tuple[float, int, bytes]] = []
    packets = 0
    seq = 0
    with PcapWriter(path) as w:
        for start, pkts in _connections(connections, seed):
            while pending and pending[0][0] < start:
                ts, _, data = heapq.heappop(pending)
                w.write(data, ts)
                packets += 1
            for k, (_, data) in enumerate(pkts):
                heapq.heappush(pending, (start + k * rng_gap, seq, bytes(data)))
                seq += 1
        while pending:
            ts, _, data = heapq.heappop(pending)
            w.write(data, ts)
            packets += 1
    return {"connections": connections, "packets": packets}
