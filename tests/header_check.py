"""An independent header checker: what any firewall acting as a router must drop, read from the bytes.

It shares no code with statewall (only ``struct`` and ``ipaddress``): the fuzz tests hold the engine's
verdicts against it. Each rule says what it implements; the rules are the ones every box agrees on,
not one box's choices (a TCP checksum, for instance, is verified by Linux conntrack but not by the ASA
by default, reference D: "Checksum check", so it is not a rule here).

- RFC 1812 (Requirements for IP Version 4 Routers) section 5.2.2, IP header validation: the packet is
  long enough for a header (20 bytes), its version is 4, its header length at least 5 words and within
  the packet, its total length at least the header and no more than what arrived, and its header
  checksum correct; otherwise it is discarded. Section 4.2.2.9: a router MUST NOT forward a datagram
  with a TTL of zero. Section 5.3.7, martian filtering: a router SHOULD NOT forward a packet whose source
  is 0.0.0.0/8 ("this network"), 127.0.0.0/8 (loopback), a class D (multicast) or class E address or the
  limited broadcast 255.255.255.255, nor one whose destination is 0.0.0.0/8, 127.0.0.0/8 or class E;
  section 5.3.5.1: a limited broadcast (255.255.255.255) is never forwarded. RFC 1812 section 4.2.2.1
  / RFC 791: a malformed option (length below 2 or past the header) is a header error.
- Multicast destinations (IPv4 224.0.0.0/4, IPv6 ff00::/8) are not forwarded without multicast
  routing, which none of the fuzzed configurations has (RFC 1812 section 5.3.7 and RFC 5771 for
  224.0.0.0/24, never forwarded at all).
- Fragments: an offset plus length beyond 65 535 bytes (RFC 791's limit; the "ping of death") and a TCP
  fragment at offset 1 (RFC 1858 section 3: it can overwrite the flags) are dropped.
- IPv6 (RFC 8200, RFC 4291): the packet holds the 40-byte header and the payload length it announces (a
  length of 0 is an empty payload, or a jumbogram's, RFC 2675: not a rule); a source that is multicast
  (RFC 4291 2.7), the unspecified address or loopback (2.5.2, 2.5.3: never forwarded), or link-local at
  either end (2.5.6: routers must not forward them); hop limit zero; an extension-header chain that runs
  past the packet.
- TCP (RFC 9293; the flag sets are those Linux conntrack's ``tcp_valid_flags`` accepts and pf's scrub
  keeps, reference B.1 and C.1): the header holds 20 bytes and its data offset is at least 5 and within
  the segment; SYN together with FIN or RST, no flag at all, and FIN without ACK are refused. A box may
  instead clear the FIN of a SYN+FIN (pf's scrub does): the fuzz counts a packet as forwarded against
  this rule only when what left still carries the refused flags.
- UDP (RFC 768): the length field covers at least the 8-byte header and no more than the datagram.
- ICMP in IPv4 and ICMPv6 in IPv6: the message holds its 8-byte header (RFC 792, RFC 4443).
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["must_drop", "tcp_flags_refused"]

_V4_MARTIAN_SRC = [
    ipaddress.ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4")
]
_V4_MARTIAN_DST = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "240.0.0.0/4")]
_V4_MULTICAST = ipaddress.ip_network("224.0.0.0/4")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_V6_EXT = {0, 43, 44, 51, 60}


def tcp_flags_refused(flags: int) -> str | None:
    """Why a TCP flag byte is refused, or None (ECE/CWR/PSH/URG alone decide nothing)."""
    syn, fin, rst, ack = flags & 0x02, flags & 0x01, flags & 0x04, flags & 0x10
    if syn and fin:
        return "TCP SYN+FIN"
    if syn and rst:
        return "TCP SYN+RST"
    if not flags & 0x17:
        return "TCP null segment: no SYN, FIN, RST or ACK"
    if fin and not ack:
        return "TCP FIN without ACK"
    return None


def _l4(proto: int, seg: bytes, first: bool, frag_offset: int, icmp: int) -> str | None:
    """The transport header of an unfragmented packet or of a first fragment (``icmp``: the family's
    ICMP protocol number, 1 or 58)."""
    if not first:
        if proto == 6 and frag_offset == 1:
            return "TCP fragment at offset 1 (RFC 1858)"
        return None
    if proto == 6:
        if len(seg) < 20:
            return f"TCP header truncated ({len(seg)} bytes)"
        doff = seg[12] >> 4
        if doff < 5:
            return f"TCP data offset below 5 ({doff})"
        if doff * 4 > len(seg):
            return f"TCP data offset beyond the segment ({doff * 4} > {len(seg)})"
        return tcp_flags_refused(seg[13])
    if proto == 17:
        if len(seg) < 8:
            return f"UDP header truncated ({len(seg)} bytes)"
        ulen = struct.unpack_from("!H", seg, 4)[0]
        if ulen < 8 or ulen > len(seg):
            return f"UDP length outside 8..datagram ({ulen}, {len(seg)})"
        return None
    if proto == icmp and len(seg) < 8:
        return "ICMP header truncated"
    return None


def _v4(data: bytes) -> str | None:
    n = len(data)
    if n < 20:
        return "IPv4 header truncated"
    ihl = (data[0] & 0x0F) * 4
    if ihl < 20:
        return f"IPv4 header length below 20 ({ihl})"
    if ihl > n:
        return "IPv4 header truncated"
    total = struct.unpack_from("!H", data, 2)[0]
    if total < ihl:
        return f"IPv4 total length below the header ({total} < {ihl})"
    if total > n:
        return f"IPv4 total length beyond the bytes received ({total} > {n})"
    s = sum(struct.unpack_from(f"!{ihl // 2}H", data, 0))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    if s != 0xFFFF:
        return "IPv4 header checksum"
    if data[8] == 0:
        return "IPv4 TTL 0"
    i = 20
    while i < ihl:
        kind = data[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= ihl or data[i + 1] < 2 or i + data[i + 1] > ihl:
            return "IPv4 option malformed"
        i += data[i + 1]
    src = ipaddress.IPv4Address(data[12:16])
    dst = ipaddress.IPv4Address(data[16:20])
    for net in _V4_MARTIAN_SRC:
        if src in net:
            return f"IPv4 martian source in {net} ({src})"
    if src == _BROADCAST:
        return "IPv4 martian source 255.255.255.255"
    if dst == _BROADCAST:
        return "IPv4 limited broadcast destination"
    for net in _V4_MARTIAN_DST:
        if dst in net:
            return f"IPv4 martian destination in {net} ({dst})"
    if dst in _V4_MULTICAST:
        return f"IPv4 multicast destination ({dst})"
    frag = struct.unpack_from("!H", data, 6)[0]
    offset = (frag & 0x1FFF) * 8
    if offset + total - ihl > 65535:
        return "IPv4 fragment beyond 65535 bytes"
    return _l4(data[9], data[ihl:total], offset == 0, frag & 0x1FFF, 1)


def _v6(data: bytes) -> str | None:
    n = len(data)
    if n < 40:
        return "IPv6 header truncated"
    plen = struct.unpack_from("!H", data, 4)[0]
    if 40 + plen > n:
        return f"IPv6 payload length beyond the bytes received ({plen} > {n - 40})"
    src = ipaddress.IPv6Address(data[8:24])
    dst = ipaddress.IPv6Address(data[24:40])
    if src.is_multicast:
        return f"IPv6 multicast source ({src})"
    if src.is_unspecified or src.is_loopback:
        return f"IPv6 unspecified or loopback source ({src})"
    if dst.is_unspecified or dst.is_loopback:
        return f"IPv6 unspecified or loopback destination ({dst})"
    if src.is_link_local or dst.is_link_local:
        return f"IPv6 link-local source or destination ({src} -> {dst})"
    if dst.is_multicast:
        return f"IPv6 multicast destination ({dst})"
    if data[7] == 0:
        return "IPv6 hop limit 0"
    end = 40 + plen
    proto, off = data[6], 40
    first, frag_offset = True, 0
    while proto in _V6_EXT:
        if off + 8 > end:
            return "IPv6 extension header truncated"
        if proto == 44:
            fo = struct.unpack_from("!H", data, off + 2)[0]
            frag_offset = fo >> 3
            first = frag_offset == 0
            hlen = 8
        elif proto == 51:
            hlen = (data[off + 1] + 2) * 4
        else:
            hlen = (data[off + 1] + 1) * 8
        if off + hlen > end:
            return "IPv6 extension header runs past the packet"
        proto = data[off]
        off += hlen
        if not first:
            break
    return _l4(proto, data[off:end], first, frag_offset, 58)


def must_drop(data: bytes) -> str | None:
    """Why a firewall must drop the packet ``data`` (an IP packet as it arrived), or None.

    The reason names the rule; what follows it in parentheses is this packet's detail."""
    if not data:
        return "empty packet"
    version = data[0] >> 4
    if version == 4:
        return _v4(bytes(data))
    if version == 6:
        return _v6(bytes(data))
    return f"IP version {version}"
