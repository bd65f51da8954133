"""FTP pinholes: one control connection, one pinhole, however many ports it announces.

Given an ASA with ``inspect ftp`` (the server inside behind a static translation, nothing else allowed
in either direction) or a Linux box with the FTP helper (the client masqueraded, FORWARD dropping all
but the control connection and RELATED), a single control connection announces hundreds of data ports
with PORT, EPRT, 227 and 229 in turn. Expect: after every announcement at most ``MAX_EXPECTED`` (1)
expectation is live, a SYN to any port announced before the latest is refused by the rules, the latest
one opens, and the firewall holds no more objects after 480 announcements than after 80.

An FTP bounce in the ASA dialect is logged as the ASA logs it (406002) and ends the connection.
"""

from __future__ import annotations

import gc
import re
import types

import pytest
from scapy.layers.inet import IP, TCP

from fixtures import CLIENT, PIX_INTERFACES, PIX_PAT, PIX_ROUTE, SERVER, kinds
from statewall.events import ConnTeardown, Drop, DropReason, FtpBounce
from statewall.expect import MAX_EXPECTED, Expectation
from statewall.logfmt.asa import format_event
from traffic import Conversation, Host, Link

ASA = (
    "ASA Version 8.2(1)\n"
    + PIX_INTERFACES
    + """\
static (inside,outside) 192.168.9.40 10.0.0.5 netmask 255.255.255.255
access-list OUTSIDE_IN extended permit tcp any host 192.168.9.40 eq ftp
access-group OUTSIDE_IN in interface outside
access-list INSIDE_IN extended deny ip any any
access-group INSIDE_IN in interface inside
"""
    + PIX_ROUTE
    + "policy-map global_policy\n class inspection_default\n  inspect ftp\n"
    + "service-policy global_policy global\n"
)
IPTABLES = """\
#@statewall interface inside dev eth1 address 192.168.0.1/24
#@statewall interface outside dev eth0 address 198.51.100.7/24
#@statewall route 0.0.0.0/0 via 198.51.100.1 dev outside
iptables -t raw -A PREROUTING -i eth1 -p tcp --dport 21 -j CT --helper ftp
iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
iptables -P INPUT DROP
iptables -P FORWARD DROP
iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A FORWARD -i eth1 -p tcp --dport 21 -m conntrack --ctstate NEW -j ACCEPT
"""


def data_syn(s: Conversation, announced_by: str, addr: str, port: int, sport: int):
    """The data connection's SYN to ``addr``/``port`` as named in the forwarded command: from the
    server's port 20 when the client announced it, from the client otherwise."""
    sender, sport = (s.b, 20) if announced_by == "client" else (s.a, sport)
    pkt = IP(src=sender.addr, dst=addr) / TCP(sport=sport, dport=port, flags="S")
    return s.link.send(sender.iface, bytes(pkt))


def asa() -> Conversation:
    """The FTP client outside, the server 10.0.0.5 inside, published as 192.168.9.40."""
    return Conversation(
        Link.asa(ASA, "ftp.cfg", now=100.0),
        Host("198.51.100.9", 40000, "outside", to="192.168.9.40", isn=1000),
        Host("10.0.0.5", 21, "inside", to="198.51.100.9", isn=5000),
    )


def iptables() -> Conversation:
    """The FTP client 192.168.0.10 inside, masqueraded to 198.51.100.7; the server outside."""
    return Conversation(
        Link.iptables(IPTABLES, now=100.0),
        Host("192.168.0.10", 40000, "inside", to="203.0.113.21", isn=1000),
        Host("203.0.113.21", 21, "outside", to="198.51.100.7", isn=5000),
    )


def held_by(fw) -> int:
    """How many objects the firewall holds (everything reachable from it, code excluded)."""
    seen = {id(fw)}
    todo = [fw]
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
    while todo:
        for ref in gc.get_referents(todo.pop()):
            if id(ref) not in seen and not isinstance(ref, skip):
                seen.add(id(ref))
                todo.append(ref)
    return len(seen)


_ANNOUNCED = re.compile(rb"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)|\|(?:1\|([\d.]+))?\|(\d+)\|")


def announced(line: bytes, default_addr: str) -> tuple[str, int]:
    """The address and port a forwarded PORT/EPRT/227/229 names."""
    m = _ANNOUNCED.search(line)
    if m.group(1):
        h = [int(x) for x in m.groups()[:6]]
        return ".".join(map(str, h[:4])), h[4] << 8 | h[5]
    return (m.group(7) or default_addr.encode()).decode(), int(m.group(8))


COMMANDS = ("PORT", "EPRT", "227", "229")


def announce(s: Conversation, kind: str, port: int) -> tuple[str, str, int]:
    """One announcement of ``port``; returns (who announced, address, port) as the peer was told."""
    c, srv = s.a.addr, s.b.addr
    if kind in ("PORT", "EPRT"):
        h = c.split(".")
        port_line = f"PORT {','.join(h)},{port >> 8},{port & 255}\r\n"
        line = port_line if kind == "PORT" else f"EPRT |1|{c}|{port}|\r\n"
        (out,) = s.send("a", "PA", line.encode())
        s.send("b", "PA", b"200 ok\r\n")
        return ("client", *announced(bytes(out[TCP].payload), s.a.to))
    s.send("a", "PA", b"PASV\r\n" if kind == "227" else b"EPSV\r\n")
    h = srv.split(".")
    line = (
        f"227 Entering Passive Mode ({','.join(h)},{port >> 8},{port & 255})\r\n"
        if kind == "227"
        else f"229 Entering Extended Passive Mode (|||{port}|)\r\n"
    )
    (out,) = s.send("b", "PA", line.encode())
    return ("server", *announced(bytes(out[TCP].payload), s.a.to))


@pytest.mark.parametrize("make", [asa, iptables], ids=["asa-inspect-ftp", "iptables-ftp-helper"])
def test_hundreds_of_announcements_leave_one_pinhole_the_latest(make):
    s = make()
    fw = s.fw
    s.open()
    s.send("b", "PA", b"220 ready\r\n")
    s.send("a", "PA", b"USER anonymous\r\n")
    s.send("b", "PA", b"230 in\r\n")
    told = []
    counts = {}
    for i in range(480):
        told.append(announce(s, COMMANDS[i % 4], 20000 + i))
        # Never more than the cap, for this master or in all.
        assert len(fw.expect) <= MAX_EXPECTED
        assert all(len(v) <= MAX_EXPECTED for v in fw.expect.by_master.values())
        assert [(e.dst, e.dport) for e in fw.expect][-1][1] == told[-1][2]
        if i + 1 in (80, 240, 480):
            gc.collect()
            counts[i + 1] = (held_by(fw), sum(isinstance(o, Expectation) for o in gc.get_objects()))
    # Memory stays flat: no more objects held after 480 announcements than after 80 (a few of
    # slack for integers that differ in size), and one Expectation object alive, not one per
    # announcement.
    assert counts[480][0] - counts[80][0] <= 8, counts
    assert counts[80][1] == counts[240][1] == counts[480][1] == 1, counts
    assert not s.drops()

    # Every earlier announcement is closed: its SYN meets the rules, which refuse it.
    for n, (who, addr, port) in enumerate(told[-60:-1]):
        step = data_syn(s, who, addr, port, 50000 + n)
        assert step == [], (who, addr, port)
        (drop,) = kinds(step.events, Drop)
        assert drop.reason is DropReason.ACL_DROP and drop.detail.get("ctstate", "NEW") == "NEW"
    # The latest one opens.
    who, addr, port = told[-1]
    step = data_syn(s, who, addr, port, 51000)
    assert len(step) == 1 and step[0][TCP].flags == "S"
    assert len(fw.expect) == 0


# --------------------------------------------------------------------------------------------------
# FTP bounce: 406002


def test_an_ftp_bounce_is_logged_as_406002_and_ends_the_connection():
    s = Conversation(
        Link.asa(PIX_PAT, now=100.0),
        Host(CLIENT, 38003, "inside", isn=1000),
        Host(SERVER, 21, "outside", to="192.168.9.30", isn=5000),
    )
    s.open()
    s.send("b", "PA", b"220 ready\r\n")
    step = s.send("a", "PA", b"PORT 192,168,9,77,0,25\r\n")
    assert step == []
    (drop,) = kinds(step.events, Drop)
    assert drop.reason is DropReason.INSPECT_FTP
    (bounce,) = kinds(step.events, FtpBounce)
    # Cisco's syslog guide, 406002: "%ASA-4-406002: FTP port command different address:
    # IP_address(IP_address) to IP_address on interface interface_name. A client entered an FTP port
    # command and supplied an address other than the address used in the connection. [...] The ASA
    # drops the packet, terminates the connection, and logs the event."
    assert format_event(bounce, timestamp=False) == [
        "%ASA-4-406002: FTP port command different address: 10.0.0.2(192.168.9.77) to 192.168.9.2 "
        "on interface inside"
    ]
    (td,) = kinds(step.events, ConnTeardown)
    assert td.reason == "Flow closed by inspection"
    assert len(s.fw.conns) == 0 and len(s.fw.expect) == 0


def test_a_replayed_bounce_writes_406002_to_the_log(tmp_path):
    """The same attempt in a capture replayed through the ASA dialect: the line is in log.txt."""
    from scapy.utils import wrpcap

    from statewall.dialects.asa import parse
    from statewall.replay import replay

    def client(flags, seq, ack, payload=b""):
        return (
            IP(src=CLIENT, dst=SERVER) / TCP(sport=38003, dport=21, flags=flags, seq=seq, ack=ack) / payload
        )

    def server(flags, seq, ack):
        return IP(src=SERVER, dst=CLIENT) / TCP(sport=21, dport=38003, flags=flags, seq=seq, ack=ack)

    # As a capture beside the client shows it: the handshake, then the PORT naming another host.
    pkts = [
        client("S", 1000, 0),
        server("SA", 5000, 1001),
        client("A", 1001, 5001),
        client("PA", 1001, 5001, b"PORT 192,168,9,77,0,25\r\n"),
    ]
    for i, p in enumerate(pkts):
        p.time = 100.0 + i * 0.01
    wrpcap(str(tmp_path / "bounce.pcap"), pkts)
    summary = replay(parse(PIX_PAT, "ftp.cfg"), [(None, tmp_path / "bounce.pcap")], tmp_path / "out")
    assert summary["dropped"] == 1
    log = (tmp_path / "out" / "log.txt").read_text()
    assert (
        "%ASA-4-406002: FTP port command different address: 10.0.0.2(192.168.9.77) to 192.168.9.2 "
        "on interface inside\n"
    ) in log
    assert "Flow closed by inspection" in log


def test_a_227_naming_another_host_is_logged_as_406002_too():
    s = Conversation(
        Link.asa(PIX_PAT, now=100.0),
        Host(CLIENT, 38003, "inside", isn=1000),
        Host(SERVER, 21, "outside", to="192.168.9.30", isn=5000),
    )
    s.open()
    s.send("a", "PA", b"PASV\r\n")
    step = s.send("b", "PA", b"227 Entering Passive Mode (10,0,0,9,4,1)\r\n")
    assert step == []
    (bounce,) = kinds(step.events, FtpBounce)
    assert format_event(bounce, timestamp=False) == [
        "%ASA-4-406002: FTP port command different address: 192.168.9.2(10.0.0.9) to 192.168.9.30 "
        "on interface outside"
    ]


def test_the_iptables_dialect_refuses_a_bounce_but_keeps_the_connection_as_linux_does():
    s = iptables()
    s.open()
    step = s.send("a", "PA", b"PORT 10,9,9,9,4,1\r\n")
    assert step == [] and kinds(step.events, FtpBounce) and not kinds(step.events, ConnTeardown)
    assert len(s.fw.conns) == 1
