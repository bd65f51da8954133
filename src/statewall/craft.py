"""Building the packets the firewall originates: TCP RSTs and SYN-ACKs, ICMP errors, echo replies, probes.

This module owns packet construction; every builder returns a ``bytearray`` holding one IP packet (no
link-layer header) with correct lengths and checksums, ready to ``decode`` or send. Addresses are
integers (``statewall.packet.str_to_addr`` converts text). This is the slow path: clarity over speed.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .checksum import internet_checksum

if TYPE_CHECKING:
    from .packet import Packet

__all__ = [
    "ipv4_header",
    "ipv6_header",
    "tcp_packet",
    "tcp_reset_for",
    "udp_packet",
    "icmp_echo",
    "icmp_error",
    "tcp_option_mss",
    "tcp_option_wscale",
    "tcp_option_sack_permitted",
    "tcp_option_sack",
    "tcp_option_timestamps",
    "tcp_options",
    "ICMP4_MIN_MTU_QUOTE",
    "ICMP6_MIN_MTU_QUOTE",
]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

# An ICMP error may be at most this long in total, quoting as much of the offending packet as fits
# (RFC 1812 4.3.2.3: 576 bytes for IPv4; RFC 4443 2.4(c): the IPv6 minimum MTU, 1280).
ICMP4_MIN_MTU_QUOTE = 576
ICMP6_MIN_MTU_QUOTE = 1280

_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_ICMP = struct.Struct("!BBHHH")


def ipv4_header(
    src: int,
    dst: int,
    proto: int,
    payload_len: int,
    *,
    ttl: int = 64,
    ip_id: int = 0,
    tos: int = 0,
    df: bool = False,
) -> bytearray:
    """A 20-byte IPv4 header with its checksum."""
    hdr = bytearray(
        _IP4.pack(
            0x45,
            tos,
            20 + payload_len,
            ip_id & 0xFFFF,
            0x4000 if df else 0,
            ttl,
            proto,
            0,
            src.to_bytes(4, "big"),
            dst.to_bytes(4, "big"),
        )
    )
    struct.pack_into("!H", hdr, 10, internet_checksum(hdr))
    return hdr


def ipv6_header(
    src: int,
    dst: int,
    next_header: int,
    payload_len: int,
    *,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytearray:
    """A 40-byte IPv6 header."""
    first = 6 << 28 | (traffic_class & 0xFF) << 20 | (flow_label & 0xFFFFF)
    return bytearray(
        _IP6.pack(
            first, payload_len, next_header, hop_limit, src.to_bytes(16, "big"), dst.to_bytes(16, "big")
        )
    )


def _ip_packet(
    version: int,
    src: int,
    dst: int,
    proto: int,
    l4: bytearray,
    csum_at: int,
    *,
    ttl: int,
    ip_id: int,
    pseudo: bool = True,
    udp: bool = False,
    df: bool = False,
) -> bytearray:
    """Prefix ``l4`` with an IP header and fill in its checksum at ``csum_at`` (relative to ``l4``)."""
    n = len(l4)
    initial = src + dst + proto + n if pseudo else 0
    c = internet_checksum(l4, initial=initial)
    if udp and c == 0:
        c = 0xFFFF  # RFC 768: a computed 0 is sent as all ones; 0 means "no checksum"
    struct.pack_into("!H", l4, csum_at, c)
    if version == 4:
        hdr = ipv4_header(src, dst, proto, n, ttl=ttl, ip_id=ip_id, df=df)
    elif version == 6:
        hdr = ipv6_header(src, dst, proto, n, hop_limit=ttl)
    else:
        raise ValueError(f"IP version {version}")
    hdr += l4
    return hdr


# --------------------------------------------------------------------------------------------------
# TCP


def tcp_option_mss(mss: int) -> bytes:
    return struct.pack("!BBH", 2, 4, mss)


def tcp_option_wscale(shift: int) -> bytes:
    return bytes((3, 3, shift))


def tcp_option_sack_permitted() -> bytes:
    return b"\x04\x02"


def tcp_option_sack(blocks: list[tuple[int, int]]) -> bytes:
    return bytes((5, 2 + 8 * len(blocks))) + b"".join(struct.pack("!II", le, re) for le, re in blocks)


def tcp_option_timestamps(tsval: int, tsecr: int) -> bytes:
    return struct.pack("!BBII", 8, 10, tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)


def tcp_options(*options: bytes) -> bytes:
    """Concatenate options and pad with NOPs in front to a multiple of 4 (as stacks align them)."""
    raw = b"".join(options)
    return b"\x01" * (-len(raw) % 4) + raw


def tcp_packet(
    version: int,
    src: int,
    dst: int,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int = 0,
    options: bytes = b"",
    payload: bytes = b"",
    ttl: int = 64,
    ip_id: int = 0,
    urgptr: int = 0,
    df: bool = False,
) -> bytearray:
    """A TCP segment; ``options`` are padded with NOPs to a multiple of 4 bytes."""
    options = tcp_options(options) if options else b""
    doff = 20 + len(options)
    if doff > 60:
        raise ValueError(f"TCP options too long ({len(options)} bytes)")
    l4 = bytearray(
        _TCP.pack(
            sport,
            dport,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            (doff >> 2) << 4,
            flags & 0xFF,
            window,
            0,
            urgptr,
        )
    )
    l4 += options
    l4 += payload
    return _ip_packet(version, src, dst, PROTO_TCP, l4, 16, ttl=ttl, ip_id=ip_id, df=df)


TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10


def tcp_reset_for(pkt: Packet, ttl: int = 64) -> bytearray:
    """The RST that answers ``pkt`` (sent back to its source), sequenced as RFC 793 says.

    If ``pkt`` carries an ACK, the RST takes its sequence number from that ACK (and has no ACK);
    otherwise it has sequence 0 and acknowledges everything ``pkt`` occupied (data, SYN, FIN), as
    Linux ``nf_send_reset`` (iptables REJECT --reject-with tcp-reset) does.
    """
    if pkt.flags & TCP_ACK:
        seq, ack, flags = pkt.ack, 0, TCP_RST
    else:
        occupied = pkt.payload_len + (1 if pkt.flags & TCP_SYN else 0) + (1 if pkt.flags & TCP_FIN else 0)
        seq, ack, flags = 0, pkt.seq + occupied, TCP_RST | TCP_ACK
    return tcp_packet(pkt.version, pkt.dst, pkt.src, pkt.dport, pkt.sport, seq, ack, flags, ttl=ttl)


# --------------------------------------------------------------------------------------------------
# UDP


def udp_packet(
    version: int,
    src: int,
    dst: int,
    sport: int,
    dport: int,
    payload: bytes = b"",
    ttl: int = 64,
    ip_id: int = 0,
    checksum: bool = True,
    df: bool = False,
) -> bytearray:
    """A UDP datagram; ``checksum=False`` leaves it 0 ("none", IPv4 only)."""
    l4 = bytearray(_UDP.pack(sport, dport, 8 + len(payload), 0))
    l4 += payload
    if not checksum and version == 4:
        hdr = ipv4_header(src, dst, PROTO_UDP, len(l4), ttl=ttl, ip_id=ip_id, df=df)
        hdr += l4
        return hdr
    return _ip_packet(version, src, dst, PROTO_UDP, l4, 6, ttl=ttl, ip_id=ip_id, udp=True, df=df)


# --------------------------------------------------------------------------------------------------
# ICMP / ICMPv6


def icmp_echo(
    version: int,
    src: int,
    dst: int,
    ident: int,
    seq: int,
    payload: bytes = b"",
    *,
    reply: bool = False,
    ttl: int = 64,
    ip_id: int = 0,
) -> bytearray:
    """An ICMP (v4: type 8/0) or ICMPv6 (type 128/129) echo request or reply."""
    if version == 4:
        itype, proto = (0 if reply else 8), PROTO_ICMP
    else:
        itype, proto = (129 if reply else 128), PROTO_ICMPV6
    l4 = bytearray(_ICMP.pack(itype, 0, 0, ident & 0xFFFF, seq & 0xFFFF))
    l4 += payload
    return _ip_packet(version, src, dst, proto, l4, 2, ttl=ttl, ip_id=ip_id, pseudo=version == 6)


def icmp_query(
    version: int, src: int, dst: int, icmp_type: int, icmp_code: int, ident: int, seq: int, ttl: int = 64
) -> bytearray:
    """An ICMP/ICMPv6 message of the query form (type, code, checksum, identifier, sequence number):
    an echo request or reply of any code, a timestamp, information or address mask query or reply,
    without a payload."""
    proto = PROTO_ICMP if version == 4 else PROTO_ICMPV6
    l4 = bytearray(_ICMP.pack(icmp_type & 0xFF, icmp_code & 0xFF, 0, ident & 0xFFFF, seq & 0xFFFF))
    return _ip_packet(version, src, dst, proto, l4, 2, ttl=ttl, ip_id=0, pseudo=version == 6)


def icmp_error(
    version: int,
    src: int,
    dst: int,
    icmp_type: int,
    icmp_code: int,
    quoted: bytes,
    mtu: int | None = None,
    ttl: int = 64,
    ip_id: int = 0,
    pointer: int | None = None,
) -> bytearray:
    """An ICMP/ICMPv6 error about ``quoted`` (the offending packet, from its IP header on).

    Quotes as much as fits in 576 bytes (IPv4, RFC 1812) or 1280 bytes (IPv6, RFC 4443). ``mtu`` is
    the next-hop MTU of IPv4 fragmentation-needed (3/4, RFC 1191) or the MTU of ICMPv6 packet-too-big;
    ``pointer`` the octet an IPv4 (12) or IPv6 (4) parameter problem points at.
    """
    if version == 4:
        limit = ICMP4_MIN_MTU_QUOTE - 20 - 8
        rest = 0
        if mtu is not None and icmp_type == 3 and icmp_code == 4:
            rest = mtu & 0xFFFF  # low 16 bits; the high 16 are unused
        elif pointer is not None and icmp_type == 12:
            rest = (pointer & 0xFF) << 24
        proto = PROTO_ICMP
    else:
        limit = ICMP6_MIN_MTU_QUOTE - 40 - 8
        rest = 0
        if mtu is not None and icmp_type == 2:
            rest = mtu & 0xFFFFFFFF
        elif pointer is not None and icmp_type == 4:
            rest = pointer & 0xFFFFFFFF
        proto = PROTO_ICMPV6
    l4 = bytearray(struct.pack("!BBHI", icmp_type, icmp_code, 0, rest))
    l4 += quoted[:limit]
    return _ip_packet(version, src, dst, proto, l4, 2, ttl=ttl, ip_id=ip_id, pseudo=version == 6)
