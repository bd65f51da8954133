"""Fuzzing the engine: random and mutated packets through the three kinds of configuration.

Used by ``tests/test_fuzz.py`` (about 25 000 packets per configuration, seeded) and by ``make fuzz``
(``bench/fuzz.py``: millions). For every packet it records two things that must both be zero:

- **exceptions**: anything raised out of ``Firewall.receive`` / ``advance``, and every drop counted as
  ``internal-error`` (the engine catches an exception per packet and drops it with that reason);
- **findings**: packets the engine forwarded (something left by another interface than the one it
  arrived on) although the independent header checker (``header_check.must_drop``) says any firewall
  must drop them.

The traffic is a seeded mix, in each configuration's own addresses so that it reaches state: real
conversations (TCP handshakes and data both ways, through NAT and to a published server, FTP control
lines with PORT/227, UDP, ICMP echoes and errors, IPv4 and IPv6), each packet sent as it is or mutated
(a bit or a byte changed anywhere, a field set to an edge value, cut short, grown, its checksums
recomputed or not, an IPv6 extension-header chain put in front, a martian address), and random bytes.
Time moves on and the timers run.
"""

from __future__ import annotations

import random
import struct
import time
from collections import Counter
from dataclasses import dataclass, field

from fixtures import DUAL_STACK_INTERFACES
from header_check import must_drop, tcp_flags_refused
from statewall import craft
from statewall.engine import Firewall
from statewall.events import Drop, DropReason
from statewall.packet import str_to_addr

__all__ = ["CONFIGS", "Findings", "fuzz"]

ASA = (
    "ASA Version 9.1(2)\n"
    + DUAL_STACK_INTERFACES
    + """\
object network inside-net
 subnet 10.0.0.0 255.255.255.0
 nat (inside,outside) dynamic interface
object network web
 host 10.0.0.80
 nat (inside,outside) static 192.0.2.80
access-list OUTSIDE_IN extended permit tcp any host 10.0.0.80 eq www
access-list OUTSIDE_IN extended permit tcp any host 10.0.0.80 eq ftp
access-list OUTSIDE_IN extended permit tcp any host 2001:db8:1::80 eq www
access-list OUTSIDE_IN extended permit icmp any any
access-group OUTSIDE_IN in interface outside
route outside 0.0.0.0 0.0.0.0 192.0.2.254 1
ipv6 route outside ::/0 2001:db8:ffff::fe
tcp-map norm
 check-retransmission
 queue-limit 4 timeout 2
 exceed-mss drop
 urgent-flag allow
class-map all
 match any
policy-map global_policy
 class inspection_default
  inspect ftp
 class all
  set connection advanced-options norm
service-policy global_policy global
"""
)

IPTABLES = """\
#@statewall interface inside dev eth1 address 10.0.0.1/24 address 2001:db8:1::1/64
#@statewall interface outside dev eth0 address 192.0.2.1/24 address 2001:db8:ffff::1/64
#@statewall route 0.0.0.0/0 via 192.0.2.254 dev outside
#@statewall route ::/0 via 2001:db8:ffff::fe dev outside
iptables -t raw -A PREROUTING -i eth1 -p tcp --dport 21 -j CT --helper ftp
iptables -t nat -A PREROUTING -i eth0 -p tcp --dport 80 -j DNAT --to-destination 10.0.0.80
iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1200
iptables -P FORWARD DROP
iptables -A FORWARD -m conntrack --ctstate INVALID -j DROP
iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A FORWARD -i eth1 -j ACCEPT
iptables -A FORWARD -i eth0 -p tcp -d 10.0.0.80 --dport 80 -j ACCEPT
iptables -A FORWARD -p icmp -j ACCEPT
ip6tables -t raw -A PREROUTING -i eth1 -p tcp --dport 21 -j CT --helper ftp
ip6tables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1200
ip6tables -P FORWARD DROP
ip6tables -A FORWARD -m conntrack --ctstate INVALID -j DROP
ip6tables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
ip6tables -A FORWARD -i eth1 -j ACCEPT
ip6tables -A FORWARD -i eth0 -p tcp -d 2001:db8:1::80 --dport 80 -j ACCEPT
ip6tables -A FORWARD -p ipv6-icmp -j ACCEPT
"""


def _asa(text: str):
    from statewall.dialects.asa import parse

    return parse(text, "fuzz-asa.cfg")


def _iptables(text: str):
    from statewall.dialects.iptables import parse

    return parse(text, "fuzz.rules")


def _nftables(text: str):  # pragma: no cover - until the dialect lands
    from statewall.dialects import nftables

    return nftables.parse(text, "fuzz.nft")


NFTABLES = """\
#@statewall interface inside dev eth1 address 10.0.0.1/24 address 2001:db8:1::1/64
#@statewall interface outside dev eth0 address 192.0.2.1/24 address 2001:db8:ffff::1/64
#@statewall route 0.0.0.0/0 via 192.0.2.254 dev outside
#@statewall route ::/0 via 2001:db8:ffff::fe dev outside
table inet filter {
  ct helper ftp-standard { type "ftp" protocol tcp; }
  chain pre { type filter hook prerouting priority raw; tcp dport 21 ct helper set "ftp-standard"; }
  chain fwd {
    type filter hook forward priority filter; policy drop;
    ct state invalid drop
    ct state established,related accept
    iifname "eth1" accept
    tcp flags syn tcp option maxseg size set 1200
  }
}
table ip nat {
  chain post { type nat hook postrouting priority srcnat; oifname "eth0" masquerade; }
  chain pre { type nat hook prerouting priority dstnat; iifname "eth0" tcp dport 80 dnat to 10.0.0.80; }
}
"""

# name -> (policy parser, configuration text)
CONFIGS = {
    "asa-pat-ftp-tcpmap": (_asa, ASA),
    "iptables-conntrack-nat-tcpmss": (_iptables, IPTABLES),
    "nftables-ct-nat-mss": (_nftables, NFTABLES),
}

# The hosts the traffic is between: (interface, address) pairs per family.
INSIDE4 = ["10.0.0.2", "10.0.0.3", "10.0.0.80"]
OUTSIDE4 = ["198.51.100.7", "203.0.113.9"]
PUBLIC4 = ["192.0.2.1", "192.0.2.80"]  # the PAT address and the published server
INSIDE6 = ["2001:db8:1::2", "2001:db8:1::80"]
OUTSIDE6 = ["2001:db8:5::5", "2001:db8:ffff::9"]
MARTIAN4 = ["0.1.2.3", "127.0.0.1", "224.0.0.251", "239.1.2.3", "240.0.0.1", "255.255.255.255"]
MARTIAN4 += [
    "10.0.0.255"
]  # the inside network's directed broadcast (not a checker rule: it needs the config)
MARTIAN6 = ["ff02::fb", "fe80::1", "::1", "::", "ff05::2"]


@dataclass
class Findings:
    """What a fuzz run saw."""

    config: str
    packets: int = 0
    forwarded: int = 0
    dropped: int = 0
    exceptions: list[str] = field(default_factory=list)  # "where: what" of each
    findings: Counter = field(default_factory=Counter)  # checker reason -> forwarded packets
    examples: dict[str, str] = field(default_factory=dict)  # checker reason -> one packet (hex)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"{self.config}: {self.packets} packets, {self.forwarded} forwarded, {self.dropped} dropped, "
            f"{len(self.exceptions)} exceptions, {sum(self.findings.values())} forwarded that must be "
            f"dropped, {self.seconds:.1f} s"
        ]
        lines += [f"  exception: {e}" for e in self.exceptions[:10]]
        for reason, n in self.findings.most_common():
            lines.append(f"  forwarded {n}x: {reason}  e.g. {self.examples[reason]}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Traffic


def _a(text: str) -> tuple[int, int]:
    return str_to_addr(text)


def _tcp(rnd, v, src, dst, sport, dport, flags, seq, ack, payload=b"", options=b"") -> bytearray:
    window = rnd.choice((65535, 64240, 502, 0))
    ttl = rnd.choice((64, 64, 64, 1, 2, 255))
    return craft.tcp_packet(
        v,
        _a(src)[1],
        _a(dst)[1],
        sport,
        dport,
        seq & 0xFFFFFFFF,
        ack & 0xFFFFFFFF,
        flags,
        window,
        options,
        payload,
        ttl=ttl,
    )


def _conversation(rnd: random.Random) -> list[tuple[str, bytearray]]:
    """One plausible exchange, in the addresses a capture on each side would show."""
    v = 6 if rnd.random() < 0.25 else 4
    kind = rnd.random()
    if v == 4:
        inside, outside = rnd.choice(INSIDE4[:2]), rnd.choice(OUTSIDE4)
        public, server = "192.0.2.1", "10.0.0.80"
        published = "192.0.2.80"
    else:
        inside, outside = INSIDE6[0], rnd.choice(OUTSIDE6)
        public, server = inside, INSIDE6[1]
        published = server
    out: list[tuple[str, bytearray]] = []
    cseq, sseq = rnd.getrandbits(32), rnd.getrandbits(32)
    mss = craft.tcp_options(craft.tcp_option_mss(rnd.choice((536, 1460, 9000))))
    if kind < 0.6:
        # inside -> outside (through PAT), port 21 or 80 or random
        dport = rnd.choice((21, 80, 443, rnd.randint(1, 65535)))
        sport = rnd.randint(1024, 65535)
        c = ("inside", inside, outside, sport, dport)
        s = ("outside", outside, public, dport, sport)
    else:
        # outside -> the published server
        dport = rnd.choice((80, 80, 21, 22))
        sport = rnd.randint(1024, 65535)
        c = ("outside", outside, published, sport, dport)
        s = ("inside", server, outside, dport, sport)
    out.append((c[0], _tcp(rnd, v, *c[1:], 0x02, cseq, 0, options=mss)))
    out.append((s[0], _tcp(rnd, v, *s[1:], 0x12, sseq, cseq + 1, options=mss)))
    cseq += 1
    sseq += 1
    out.append((c[0], _tcp(rnd, v, *c[1:], 0x10, cseq, sseq)))
    noise = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 1400)))
    lines = [
        b"USER x\r\n",
        b"PORT 10,0,0,2,4,1\r\n",
        b"PASV\r\n",
        b"EPRT |1|10.0.0.2|1025|\r\n",
        b"GET /\r\n",
        noise,
    ]
    replies = [
        b"220 hi\r\n",
        b"227 Entering Passive Mode (10,0,0,80,4,2)\r\n",
        b"229 (|||1026|)\r\n",
        b"200 ok\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * rnd.randint(0, 1400),
    ]
    for _ in range(rnd.randint(1, 8)):
        if rnd.random() < 0.5:
            p = rnd.choice(lines)
            out.append((c[0], _tcp(rnd, v, *c[1:], 0x18, cseq, sseq, p)))
            cseq = (cseq + len(p)) & 0xFFFFFFFF
        else:
            p = rnd.choice(replies)
            out.append((s[0], _tcp(rnd, v, *s[1:], 0x18, sseq, cseq, p)))
            sseq = (sseq + len(p)) & 0xFFFFFFFF
    end = rnd.random()
    if end < 0.4:
        out.append((c[0], _tcp(rnd, v, *c[1:], 0x11, cseq, sseq)))
        out.append((s[0], _tcp(rnd, v, *s[1:], 0x11, sseq, cseq + 1)))
        out.append((c[0], _tcp(rnd, v, *c[1:], 0x10, cseq + 1, sseq + 1)))
    elif end < 0.6:
        out.append((rnd.choice((c, s))[0], _tcp(rnd, v, *rnd.choice((c, s))[1:], 0x04, cseq, 0)))
    # UDP and ICMP beside it
    if rnd.random() < 0.5:
        q = b"q" * rnd.randint(0, 80)
        out.append(
            ("inside", craft.udp_packet(v, _a(inside)[1], _a(outside)[1], rnd.randint(1, 65535), 53, q))
        )
        out.append(("outside", craft.udp_packet(v, _a(outside)[1], _a(public)[1], 53, 0, b"a")))
    if rnd.random() < 0.4:
        echo = craft.icmp_echo(v, _a(inside)[1], _a(outside)[1], rnd.getrandbits(16), 1, b"ping")
        out.append(("inside", echo))
        kind = 3 if v == 4 else 1
        out.append(
            (
                "outside",
                craft.icmp_error(v, _a(outside)[1], _a(public)[1], kind, rnd.randint(0, 4), out[0][1]),
            )
        )
    return out


_EDGE16 = (0, 1, 7, 8, 19, 20, 39, 40, 0x7FFF, 0xFFFF)


def _mutate(rnd: random.Random, pkt: bytearray) -> bytearray:
    """One or more random changes to a packet."""
    p = bytearray(pkt)
    for _ in range(rnd.choice((1, 1, 1, 2, 3))):
        r = rnd.random()
        if not p:
            break
        if r < 0.25:  # flip a bit, mostly in the headers
            i = rnd.randrange(min(len(p), 80) if rnd.random() < 0.8 else len(p))
            p[i] ^= 1 << rnd.randrange(8)
        elif r < 0.40:  # a byte set to an edge value
            i = rnd.randrange(min(len(p), 80))
            p[i] = rnd.choice((0, 1, 0x7F, 0x80, 0xFF, rnd.getrandbits(8)))
        elif r < 0.50:  # a 16-bit field (lengths, checksums, ports, offsets) set to an edge value
            i = rnd.randrange(max(1, min(len(p), 60) - 1))
            p[i : i + 2] = struct.pack("!H", rnd.choice(_EDGE16))
        elif r < 0.60:  # cut short
            del p[rnd.randrange(len(p)) :]
        elif r < 0.65:  # grown
            p += bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 40)))
        elif r < 0.80:  # TCP flags (v4 without options: offset 33; v6 without extensions: offset 53)
            off = 33 if p[0] >> 4 == 4 else 53
            if len(p) > off:
                p[off] = rnd.choice((0x03, 0x06, 0x00, 0x01, 0x29, 0x07, 0xFF, 0x3F, rnd.getrandbits(8)))
        elif r < 0.90 and p[0] >> 4 == 4 and len(p) >= 20:  # a martian address
            addr = _a(rnd.choice(MARTIAN4))[1].to_bytes(4, "big")
            at = rnd.choice((12, 16))
            p[at : at + 4] = addr
        elif len(p) >= 40 and p[0] >> 4 == 6:  # IPv6: a martian address or an extension chain in front
            if rnd.random() < 0.5:
                addr = _a(rnd.choice(MARTIAN6))[1].to_bytes(16, "big")
                at = rnd.choice((8, 24))
                p[at : at + 16] = addr
            else:
                nxt = p[6]
                chain = b""
                for _ in range(rnd.choice((1, 2, 3, 8, 180))):
                    chain = bytes((nxt, 0)) + b"\x01\x04\x00\x00\x00\x00" + chain
                    nxt = rnd.choice((60, 60, 0, 43))
                p = p[:6] + bytes((nxt,)) + p[7:40] + chain + p[40:]
                p[4:6] = struct.pack("!H", (len(p) - 40) & 0xFFFF)
    if rnd.random() < 0.5:
        _fix_checksums(p)
    return p


def _fix_checksums(p: bytearray) -> None:
    """Recompute the IPv4 header checksum (where the header is whole), so that mutations get past it."""
    if len(p) >= 20 and p[0] >> 4 == 4:
        ihl = (p[0] & 0x0F) * 4
        if 20 <= ihl <= len(p):
            p[10:12] = b"\x00\x00"
            s = sum(struct.unpack_from(f"!{ihl // 2}H", p, 0))
            while s >> 16:
                s = (s & 0xFFFF) + (s >> 16)
            p[10:12] = struct.pack("!H", ~s & 0xFFFF)


def packets(rnd: random.Random):
    """An endless seeded stream of (interface, packet bytes, seconds to wait before it)."""
    while True:
        conv = _conversation(rnd)
        for iface, pkt in conv:
            dt = rnd.choice((0.001, 0.001, 0.01, 0.2, 3.0))
            if rnd.random() < 0.03:
                dt = rnd.choice((40.0, 400.0))
            r = rnd.random()
            if r < 0.55:
                yield iface, pkt, dt
            elif r < 0.95:
                yield iface, _mutate(rnd, pkt), dt
            elif r < 0.98:
                junk = bytearray(rnd.getrandbits(8) for _ in range(rnd.randint(0, 120)))
                yield rnd.choice(("inside", "outside")), junk, dt
            else:
                yield "nowhere", pkt, dt  # an interface the configuration does not have


# --------------------------------------------------------------------------------------------------
# The run


def _forwarded_against_checker(data: bytes, iface: str, out) -> str | None:
    """The checker's reason when the packet left by another interface although it must be dropped."""
    reason = must_drop(data)
    if reason is None:
        return None
    forwarded = [p for o, p in out if o != iface]
    if not forwarded:
        return None
    # A box may repair the flags instead of dropping (pf clears FIN on a SYN): judge what left.
    repaired = all(tcp_flags_refused(_tcp_flags(bytes(p))) is None for p in forwarded)
    if reason.startswith("TCP ") and tcp_flags_refused(_tcp_flags(data)) is not None and repaired:
        return None
    return reason


def _tcp_flags(data: bytes) -> int:
    if data[0] >> 4 == 4:
        ihl = (data[0] & 0x0F) * 4
        return data[ihl + 13] if data[9] == 6 and len(data) > ihl + 13 else 0x10
    return data[53] if len(data) > 53 and data[6] == 6 else 0x10


def fuzz(config: str, count: int, seed: int = 1) -> Findings:
    """Send ``count`` packets of the seeded stream through a Firewall running ``config``."""
    parser, text = CONFIGS[config]
    fw = Firewall(parser(text), seed=seed)
    rnd = random.Random(seed)
    res = Findings(config)
    now = 1_000_000.0
    started = time.perf_counter()
    stream = packets(rnd)
    for _ in range(count):
        iface, pkt, dt = next(stream)
        now += dt
        data = bytes(pkt)
        try:
            if dt >= 3.0:
                for e in fw.advance(now).events:
                    if isinstance(e, Drop) and e.reason is DropReason.INTERNAL_ERROR:
                        res.exceptions.append(f"advance: {e.message}")
            r = fw.receive(iface, fw.replay_rewrite(iface, pkt, now) if rnd.random() < 0.3 else pkt, now)
        except Exception as e:  # noqa: BLE001 - counted: the engine must never raise
            res.exceptions.append(f"{type(e).__name__}: {e} (packet {data.hex()} on {iface})")
            continue
        res.packets += 1
        for e in r.events:
            if isinstance(e, Drop):
                res.dropped += 1
                if e.reason is DropReason.INTERNAL_ERROR:
                    res.exceptions.append(f"internal-error: {e.message} (packet {data.hex()} on {iface})")
        if r.packets:
            res.forwarded += 1
            if data:
                why = _forwarded_against_checker(data, iface, r.packets)
                if why is not None:
                    key = why.split(" (", 1)[0]  # the rule, without this packet's detail
                    res.findings[key] += 1
                    res.examples.setdefault(key, f"{data[:64].hex()} on {iface}")
    res.seconds = time.perf_counter() - started
    return res
