"""The packet codec: decode IPv4/IPv6 + TCP/UDP/ICMP/ICMPv6 in place, rewrite with incremental checksums.

This module owns the wire format. ``decode(buf)`` returns a :class:`Packet`, a zero-copy view over the
caller's ``bytearray`` whose fields are plain attributes decoded once; setters change ``buf`` in place
and keep every checksum right with RFC 1624 updates (see ``statewall.checksum``). ``decode`` raises
only :class:`DecodeError`, whose ``reason`` is the ``DropReason`` the engine counts.

Offsets (``l4off``, ``payload_off``, ``csum_off``, option offsets, ``end``) are absolute indexes into
``buf``, so a quoted packet inside an ICMP error (``inner()``) is a view over the same buffer.

Decisions worth knowing:

* TCP option *syntax* is validated by ``decode`` (an option length < 2 or running past the data
  offset is ``INVALID_TCP_OPTIONS``). The common data-segment layout (NOP NOP timestamp) is recognised
  with one 32-bit compare; other layouts are walked once and the list is cached. Option *values* are
  read lazily, and a known option with the wrong length is ignored as Linux does, so the accessors
  (``mss()``, ``wscale()``, ...) never raise.
* ICMP errors: the quoted packet is decoded (tolerantly: truncated, lengths may exceed what is there)
  by ``decode`` itself, so an unusable quote is ``INVALID_ICMP`` there and ``inner()`` never raises.
  Setters on the inner packet keep the outer ICMP checksum right by themselves (the inner view knows
  its parent); ``fix_icmp_checksum()`` recomputes it fully if bytes were changed behind our back.
* ``partial_csum=True`` (TUN ``VIRTIO_NET_HDR_F_NEEDS_CSUM``): the L4 checksum field holds the folded
  pseudo-header sum; only address and length changes touch it, and its verification is skipped.
* Fragments: a non-first fragment has no L4 header (``has_l4`` False); L4 setters do nothing there.
  On a first fragment L4 changes are applied to the L4 checksum as a delta, which keeps the checksum
  of the reassembled datagram right. Length-changing rewrites refuse fragments.
* For ICMP queries (echo, ...) ``sport == dport == icmp_id`` and ``set_sport``/``set_dport`` rewrite
  the identifier, so NAT code need not special-case them. ``rewrite_src(addr, port)`` and
  ``rewrite_dst(addr, port)`` do a NAT translation with a single L4 checksum update.
* Hot path (docs packet-io.md): IPv4+TCP without IP options and with no TCP options or NOP NOP TS is
  decoded by one ``Struct.unpack_from`` and ~28 slot stores, plain IPv4+UDP likewise; everything else
  takes the general path. ``forward_nat4`` is the forwarding step of a translated IPv4 TCP/UDP flow in
  one call, with the deltas its connection precomputed.
"""

from __future__ import annotations

import ipaddress
import struct

from .checksum import ones_sum
from .events import DropReason

__all__ = [
    "DecodeError",
    "Packet",
    "decode",
    "addr_to_str",
    "str_to_addr",
    "ICMP_ERROR_TYPES_V4",
    "ICMP_ERROR_TYPES_V6",
]

_M = 0xFFFF

_IP4 = struct.Struct("!BBHHHBBHII")
_IP6 = struct.Struct("!IHBBQQQQ")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_ICMP = struct.Struct("!BBHHH")
_FRAG6 = struct.Struct("!BBHI")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U16x2 = struct.Struct("!HH")
_U32x2 = struct.Struct("!II")

_ip4_unpack = _IP4.unpack_from
_tcp_unpack = _TCP.unpack_from
_ip4_tcp_unpack = struct.Struct("!BBHHHBBHIIHHIIBBHHHI").unpack_from  # + first option word
_ip4_tcp40_unpack = struct.Struct("!BBHHHBBHIIHHIIBBHHH").unpack_from
_ip4_udp_unpack = struct.Struct("!BBHHHBBHIIHHHH").unpack_from
_u16_unpack = _U16.unpack_from
_u16_pack = _U16.pack_into
_u32_unpack = _U32.unpack_from
_u32_pack = _U32.pack_into
# IPv4 header checksum + source (+ destination) address: adjacent fields written in one call
_csum_src_pack = struct.Struct("!HI").pack_into
_csum_src_dst_pack = struct.Struct("!HII").pack_into
_ttl_proto_csum_pack = struct.Struct("!BBH").pack_into
# TTL, protocol, header checksum, source and destination: the whole NAT + TTL change of an IPv4 header
_ttl_to_dst_pack = struct.Struct("!BBHII").pack_into
_u16x2_pack = _U16x2.pack_into

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

# ICMP errors quote the offending packet; queries carry an identifier that plays the port's role.
ICMP_ERROR_TYPES_V4 = frozenset({3, 4, 5, 11, 12})
ICMP_ERROR_TYPES_V6 = frozenset({1, 2, 3, 4})
_ICMP_QUERY_TYPES_V4 = frozenset({0, 8, 13, 14, 15, 16, 17, 18})
_ICMP_QUERY_TYPES_V6 = frozenset({128, 129})

# IPv6 extension headers whose chain we walk; ESP (50) and No Next Header (59) end the chain.
_IPV6_EXT = frozenset({0, 43, 44, 51, 60})
# How often each may occur in one chain: RFC 8200 section 4.1, "Each extension header should occur at
# most once, except for the Destination Options header, which should occur at most twice (once before
# a Routing header and once before the upper-layer header)". A chain repeating one is dropped as
# ``ipv6-bad-eh-order`` (the ASA's asp-drop name, "IPv6 EH not in proper order": its IPv6 inspection
# verifies the RFC 2460 order and type of the chain by default, Cisco ASA firewall configuration guide,
# "Defaults for IPv6 Inspection"). That bounds the walk at six headers: a 1 500-byte packet of 180
# Destination Options headers is refused at the third instead of walked to the end. Linux walks any
# chain to its end (ipv6_skip_exthdr in net/ipv6/exthdrs_core.c has no count; only the options inside
# a Hop-by-Hop header are limited, net.ipv6.max_hbh_opts_number = 8): the netfilter dialect differs
# from the kernel for such chains, which no conforming stack sends. The order itself is not checked.
_IPV6_EXT_MAX = {0: 1, 43: 1, 44: 1, 51: 1, 60: 2}

# NOP NOP Timestamp(kind 8, len 10): the option layout of nearly every established-flow segment.
_NOP_NOP_TS = 0x0101080A

# TCP option kinds
OPT_EOL, OPT_NOP, OPT_MSS, OPT_WSCALE, OPT_SACK_PERM, OPT_SACK, OPT_TIMESTAMP = 0, 1, 2, 3, 4, 5, 8


class DecodeError(Exception):
    """A packet the codec cannot accept; ``reason`` is the drop reason the engine counts."""

    def __init__(self, reason: DropReason, message: str) -> None:
        super().__init__(f"{reason.value[0]}: {message}")
        self.reason = reason
        self.message = message


def _err(reason: DropReason, message: str) -> DecodeError:
    return DecodeError(reason, message)


class Packet:
    """A decoded IP packet: a view over ``buf``; see the module docstring for the conventions.

    Fields not meaningful for the protocol are 0 (or False / empty). ``flags`` is TCP byte 13 (CWR ECE
    URG ACK PSH RST SYN FIN); ``reserved`` the low nibble of byte 12 (3 reserved bits + NS/AE).
    ``end`` is the absolute end of the datagram in ``buf`` (Ethernet padding after it is ignored).
    ``ipv4_options`` / ``ipv6_ext`` list ``(type, offset, length)``; ``frag_hdr_off`` is the IPv6
    fragment header's offset (-1: none); ``rh_dst`` the final destination named by an IPv6 routing
    header with segments left (-1: none), which is what the L4 pseudo-header uses.

    Fields are read-only outside this module: change packets through the setters, which keep the
    bytes, the fields and the checksums in step.
    """

    # Fields that vary per packet are slots here. Fields that are the same for nearly every packet
    # are class attributes (their defaults) here and slots only in ``_FullPacket``, which the general
    # decoder builds: the fast path stores 28 fields instead of 44. Neither class has a ``__dict__``.
    __slots__ = (
        "buf",
        "end",
        "version",
        "src",
        "dst",
        "ttl",
        "tos",
        "proto",
        "l3_len",
        "total_len",
        "ip_id",
        "df",
        "has_l4",
        "l4off",
        "sport",
        "dport",
        "seq",
        "ack",
        "flags",
        "reserved",
        "doff",
        "window",
        "urgptr",
        "payload_off",
        "payload_len",
        "csum_off",
        "partial",
        "_opts",
    )

    ipoff: int = 0
    mf: bool = False
    frag_offset: int = 0
    is_fragment: bool = False
    ipv4_options: tuple | list = ()
    ipv6_ext: tuple | list = ()
    frag_hdr_off: int = -1
    rh_dst: int = -1
    udp_len: int = 0
    icmp_type: int = 0
    icmp_code: int = 0
    icmp_id: int = 0
    is_icmp_error: bool = False
    quoted: bool = False
    parent: Packet | None = None
    _inner: Packet | None = None

    # ----------------------------------------------------------------------------------------------
    # Reading

    def __repr__(self) -> str:
        v = self.version
        s = f"Packet(v{v} {addr_to_str(v, self.src)} > {addr_to_str(v, self.dst)}"
        s += f" proto={self.proto} len={self.total_len}"
        if self.proto in (PROTO_TCP, PROTO_UDP) and self.has_l4:
            s += f" {self.sport}>{self.dport}"
        if self.proto == PROTO_TCP and self.has_l4:
            s += f" flags=0x{self.flags:02x} seq={self.seq} ack={self.ack}"
        if self.icmp_type or self.icmp_code or self.proto in (PROTO_ICMP, PROTO_ICMPV6):
            s += f" icmp={self.icmp_type}/{self.icmp_code}"
        if self.is_fragment:
            s += f" frag@{self.frag_offset}{'+' if self.mf else ''}"
        return s + ")"

    def payload(self) -> bytes:
        """A copy of the L4 payload (TCP/UDP data; for other protocols everything after ``l4off``)."""
        return bytes(self.buf[self.payload_off : self.payload_off + self.payload_len])

    def inner(self) -> Packet | None:
        """The packet quoted by an ICMP/ICMPv6 error (decoded by ``decode``), else None."""
        return self._inner

    # ----------------------------------------------------------------------------------------------
    # TCP options (lazy)

    def tcp_options(self) -> list[tuple[int, int, int]]:
        """``(kind, offset, length)`` of each TCP option other than NOP/EOL, offsets absolute in ``buf``.

        Syntax was validated by ``decode``; in a quoted (truncated) packet the list stops where the
        bytes or the syntax do.
        """
        opts = self._opts
        if opts is None:
            if self.proto != PROTO_TCP or not self.has_l4 or self.doff <= 20:
                opts = []
            elif self.timestamp_only():
                opts = [(OPT_TIMESTAMP, self.l4off + 22, 10)]
            else:
                start = self.l4off + 20
                end = min(self.l4off + self.doff, self.end)
                opts = _parse_tcp_options(self.buf, start, end, False)
            self._opts = opts
        return opts

    def _find_option(self, kind: int, length: int) -> int:
        # A known option with the wrong length is ignored, as Linux tcp_parse_options() does.
        for k, off, ln in self.tcp_options():
            if k == kind and ln == length:
                return off
        return -1

    def mss(self) -> int | None:
        off = self._find_option(OPT_MSS, 4)
        return None if off < 0 else _u16_unpack(self.buf, off + 2)[0]

    def wscale(self) -> int | None:
        off = self._find_option(OPT_WSCALE, 3)
        return None if off < 0 else self.buf[off + 2]

    def sack_permitted(self) -> bool:
        return self._find_option(OPT_SACK_PERM, 2) >= 0

    def timestamp_only(self) -> bool:
        """The TCP options are exactly NOP NOP timestamp, complete in ``buf`` (the layout of nearly every
        segment of an established Linux flow). Call on TCP segments with an L4 header."""
        o = self.l4off + 20
        return self.doff == 32 and o + 12 <= self.end and _u32_unpack(self.buf, o)[0] == _NOP_NOP_TS

    def sack_blocks(self) -> list[tuple[int, int]]:
        doff = self.doff
        if doff <= 20:
            return []
        o = self.l4off + 20
        if doff == 32 and o + 12 <= self.end and _u32_unpack(self.buf, o)[0] == _NOP_NOP_TS:
            return []  # timestamp_only(), inline: the layouts of nearly every segment need no option list
        for k, off, ln in self.tcp_options():
            if k == OPT_SACK and ln >= 10 and (ln - 2) % 8 == 0:
                return [_U32x2.unpack_from(self.buf, o) for o in range(off + 2, off + ln, 8)]
        return []

    def sack_edge(self, ack: int) -> int:
        """The highest right edge of the SACK blocks beyond ``ack`` (32-bit sequence space), else ``ack``.

        What window tracking needs from SACK, on every segment: segments without options or with only
        NOP NOP timestamp answer without looking at any option list.
        """
        if self.doff <= 20 or self.timestamp_only():
            return ack
        for _left, right in self.sack_blocks():
            if ((ack - right) & 0xFFFFFFFF) > 0x7FFFFFFF:  # after(right, ack)
                ack = right
        return ack

    def timestamps(self) -> tuple[int, int] | None:
        off = self._find_option(OPT_TIMESTAMP, 10)
        return None if off < 0 else _U32x2.unpack_from(self.buf, off + 2)

    # ----------------------------------------------------------------------------------------------
    # Checksums

    def _l4_delta(self, delta: int, pseudo: bool) -> None:
        """Fold a sum change of the L4-checksummed bytes into the L4 checksum field.

        ``pseudo``: the change is in the pseudo-header (addresses, length), the only kind a partial
        checksum tracks. UDP over IPv4 with checksum 0 has none and keeps 0; a UDP checksum that
        computes to 0 is sent as 0xFFFF (RFC 768).
        """
        co = self.csum_off
        if co < 0:
            return
        buf = self.buf
        c = _u16_unpack(buf, co)[0]
        if self.partial:
            if not pseudo:
                return
            c = (c + delta) % _M or _M
        else:
            if c == 0 and self.proto == PROTO_UDP and self.version == 4:
                return
            c = _M - (((c ^ _M) + delta) % _M or _M)
            if c == 0 and self.proto == PROTO_UDP:
                c = _M
        _u16_pack(buf, co, c)

    def _l4_sum_range(self) -> tuple[int, int, int]:
        """(start, end, pseudo-header sum) of what the L4 checksum covers (non-fragmented packets)."""
        start = self.l4off
        proto = self.proto
        if proto == PROTO_UDP:
            end = start + self.udp_len
        else:
            end = self.end
        if proto == PROTO_ICMP and self.version == 4:
            return start, end, 0
        dst = self.dst if self.rh_dst < 0 else self.rh_dst
        return start, end, self.src + dst + proto + (end - start)

    def verify_checksums(self) -> DropReason | None:
        """The drop reason of the first wrong checksum, or None.

        Checks the IPv4 header checksum and the TCP/UDP/ICMP/ICMPv6 checksum with its pseudo-header.
        L4 is skipped on fragments (it covers the reassembled datagram), on partial checksums and on
        quoted packets (truncated).
        """
        buf = self.buf
        o = self.ipoff
        if self.version == 4 and ones_sum(buf, o, o + ((buf[o] & 15) << 2)) != _M:
            return DropReason.BAD_IP_CHECKSUM
        if self.is_fragment or self.partial or self.quoted or self.csum_off < 0:
            return None
        proto = self.proto
        if proto == PROTO_UDP:
            if buf[self.csum_off] == 0 and buf[self.csum_off + 1] == 0:
                return None if self.version == 4 else DropReason.BAD_UDP_CHECKSUM
            bad = DropReason.BAD_UDP_CHECKSUM
        elif proto == PROTO_TCP:
            bad = DropReason.BAD_TCP_CHECKSUM
        else:
            bad = DropReason.BAD_ICMP_CHECKSUM
        start, end, pseudo = self._l4_sum_range()
        return None if ones_sum(buf, start, end, pseudo) == _M else bad

    def fix_ip_checksum(self) -> None:
        """Recompute the IPv4 header checksum from scratch (no-op for IPv6)."""
        if self.version != 4:
            return
        buf = self.buf
        o = self.ipoff
        hl = (buf[o] & 15) << 2
        buf[o + 10] = buf[o + 11] = 0
        _u16_pack(buf, o + 10, _M - ones_sum(buf, o, o + hl))

    def fix_l4_checksum(self) -> None:
        """Recompute the L4 checksum from scratch (or the partial pseudo-header sum when partial).

        Not possible on fragments or quoted packets (the data is elsewhere); does nothing there.
        """
        co = self.csum_off
        if co < 0 or self.is_fragment or self.quoted:
            return
        buf = self.buf
        start, end, pseudo = self._l4_sum_range()
        if self.partial:
            _u16_pack(buf, co, (pseudo % _M or _M) if pseudo else 0)
            return
        if self.proto == PROTO_UDP and self.version == 4 and buf[co] == 0 and buf[co + 1] == 0:
            return  # "no checksum" stays so
        buf[co] = buf[co + 1] = 0
        c = _M - ones_sum(buf, start, end, pseudo)
        if c == 0 and self.proto == PROTO_UDP:
            c = _M
        _u16_pack(buf, co, c)

    def fix_icmp_checksum(self) -> None:
        """Recompute the ICMP/ICMPv6 checksum of an error fully (after changes to the quoted bytes).

        Inner setters already keep it right incrementally; this is for bytes changed otherwise.
        """
        if self.proto in (PROTO_ICMP, PROTO_ICMPV6):
            self.fix_l4_checksum()

    # ----------------------------------------------------------------------------------------------
    # Rewrites: IP

    def set_src(self, addr: int) -> None:
        """Rewrite the source address (IPv4 header checksum and L4 pseudo-header fixed incrementally)."""
        old = self.src
        if addr == old:
            return
        buf = self.buf
        o = self.ipoff
        self.src = addr
        d = addr - old
        if self.version == 4:
            # header checksum (bytes 10-11) and source (12-15) in one write
            _csum_src_pack(buf, o + 10, _M - (((_u16_unpack(buf, o + 10)[0] ^ _M) + d) % _M or _M), addr)
            if self.proto == PROTO_ICMP:
                return  # ICMPv4 has no pseudo-header
        else:
            buf[o + 8 : o + 24] = addr.to_bytes(16, "big")
        self._l4_delta(d, True)

    def set_dst(self, addr: int) -> None:
        """Rewrite the destination address (checksums fixed incrementally)."""
        old = self.dst
        if addr == old:
            return
        buf = self.buf
        o = self.ipoff
        self.dst = addr
        d = addr - old
        if self.version == 4:
            c = _M - (((_u16_unpack(buf, o + 10)[0] ^ _M) + d) % _M or _M)
            _csum_src_dst_pack(buf, o + 10, c, self.src, addr)
            if self.proto == PROTO_ICMP:
                return
        else:
            buf[o + 24 : o + 40] = addr.to_bytes(16, "big")
            if self.rh_dst >= 0:
                return  # a routing header names the final destination the pseudo-header uses
        self._l4_delta(d, True)

    def set_ttl(self, ttl: int) -> None:
        """Rewrite the TTL (IPv6: hop limit, which no checksum covers)."""
        buf = self.buf
        o = self.ipoff
        old = self.ttl
        self.ttl = ttl
        if self.version == 4:
            # TTL is the high byte of its 16-bit word; TTL, protocol and checksum are written at once
            c = _M - (((_u16_unpack(buf, o + 10)[0] ^ _M) + ((ttl - old) << 8)) % _M or _M)
            _ttl_proto_csum_pack(buf, o + 8, ttl, self.proto, c)
        else:
            buf[o + 7] = ttl

    def clear_ipv4_options(self) -> bool:
        """Overwrite all IPv4 options with NOPs (ASA ``ip-options`` inspection ``clear``); False if none."""
        if self.version != 4 or self.l3_len <= 20:
            return False
        buf = self.buf
        o = self.ipoff
        start, end = o + 20, o + self.l3_len
        nops = b"\x01" * (end - start)
        d = int.from_bytes(nops, "big") - int.from_bytes(buf[start:end], "big")
        buf[start:end] = nops
        c = _M - (((_u16_unpack(buf, o + 10)[0] ^ _M) + d) % _M or _M)  # options end on a word boundary
        _u16_pack(buf, o + 10, c)
        if self.ipv4_options:
            self.ipv4_options = []
        return True

    def strip_ipv4_options(self, types: set[int] | frozenset[int]) -> bool:
        """Remove the IPv4 options of ``types`` (0 EOOL, 1 NOP, any other type byte) from the header:
        the rest kept in order, padded with EOOL to a 32-bit boundary; the header length, total length
        and header checksum follow (ASA ip-options inspection ``action clear``). The buffer shrinks and
        every offset after the header moves with it. False when nothing changed."""
        if self.version != 4 or self.l3_len <= 20:
            return False
        buf = self.buf
        o = self.ipoff
        start, end = o + 20, o + self.l3_len
        kept = bytearray()
        i = start
        while i < end:
            t = buf[i]
            if t == 0:
                if 0 not in types:
                    kept.append(0)
                break
            ln = 1 if t == 1 else buf[i + 1]
            if t not in types:
                kept += buf[i : i + ln]
            i += ln
        kept += b"\0" * (-len(kept) % 4)
        if kept == buf[start:end]:
            return False
        delta = (end - start) - len(kept)
        buf[start:end] = kept
        hl = 20 + len(kept)
        buf[o] = 0x40 | (hl >> 2)
        self.total_len -= delta
        _u16_pack(buf, o + 2, self.total_len)
        _u16_pack(buf, o + 10, 0)
        _u16_pack(buf, o + 10, _M - ones_sum(buf, o, o + hl))
        self.l3_len = hl
        self.end -= delta
        if self.l4off:
            self.l4off -= delta
        if self.payload_off:
            self.payload_off -= delta
        if self.csum_off > o:
            self.csum_off -= delta
        self.ipv4_options = _parse_ipv4_options(buf, start, start + len(kept))
        self._opts = None
        if self._inner is not None:
            self._inner = None  # a quoted packet's view moved with the buffer: decoded again when asked
        return True

    def set_tos(self, tos: int) -> None:
        """Rewrite the IPv4 TOS / IPv6 traffic class byte (DSCP + ECN)."""
        buf = self.buf
        o = self.ipoff
        old = self.tos
        self.tos = tos
        if self.version == 4:
            buf[o + 1] = tos
            c = buf[o + 10] << 8 | buf[o + 11]
            c = _M - (((c ^ _M) + (tos - old)) % _M or _M)
            buf[o + 10] = c >> 8
            buf[o + 11] = c & 0xFF
        else:
            w = _u16_unpack(buf, o)[0]
            _u16_pack(buf, o, (w & 0xF00F) | (tos << 4))

    # ----------------------------------------------------------------------------------------------
    # Rewrites: L4

    def set_sport(self, port: int) -> None:
        """Rewrite the TCP/UDP source port; for ICMP queries the identifier (``sport == icmp_id``)."""
        if not self.has_l4:
            return
        proto = self.proto
        if proto != PROTO_TCP and proto != PROTO_UDP:
            Packet.set_icmp_id(self, port)
            return
        old = self.sport
        if port == old:
            return
        o = self.l4off
        buf = self.buf
        buf[o] = port >> 8
        buf[o + 1] = port & 0xFF
        self.sport = port
        self._l4_delta(port - old, False)

    def set_dport(self, port: int) -> None:
        """Rewrite the TCP/UDP destination port; for ICMP queries the identifier."""
        if not self.has_l4:
            return
        proto = self.proto
        if proto != PROTO_TCP and proto != PROTO_UDP:
            Packet.set_icmp_id(self, port)
            return
        old = self.dport
        if port == old:
            return
        o = self.l4off
        buf = self.buf
        buf[o + 2] = port >> 8
        buf[o + 3] = port & 0xFF
        self.dport = port
        self._l4_delta(port - old, False)

    def rewrite_src(self, addr: int, port: int) -> None:
        """NAT the source address and port (ICMP query id) with one L4 checksum update.

        Written out flat, without helper calls: it is the per-packet work of every PAT flow.
        """
        proto = self.proto
        if (proto != PROTO_TCP and proto != PROTO_UDP) or not self.has_l4:
            Packet.set_src(self, addr)
            Packet.set_sport(self, port)
            return
        buf = self.buf
        o = self.ipoff
        da = addr - self.src
        self.src = addr
        if self.version == 4:
            _csum_src_pack(buf, o + 10, _M - (((_u16_unpack(buf, o + 10)[0] ^ _M) + da) % _M or _M), addr)
        else:
            buf[o + 8 : o + 24] = addr.to_bytes(16, "big")
        l4 = self.l4off
        dp = port - self.sport
        self.sport = port
        _u16_pack(buf, l4, port)
        co = self.csum_off
        if co < 0:
            return
        c = _u16_unpack(buf, co)[0]
        if self.partial:
            c = (c + da) % _M or _M  # ports are not in the pseudo-header
        else:
            if c == 0 and proto == PROTO_UDP and self.version == 4:
                return
            c = _M - (((c ^ _M) + da + dp) % _M or _M)
            if c == 0 and proto == PROTO_UDP:
                c = _M
        _u16_pack(buf, co, c)

    def rewrite_dst(self, addr: int, port: int) -> None:
        """NAT the destination address and port (ICMP query id) with one L4 checksum update."""
        proto = self.proto
        if (proto != PROTO_TCP and proto != PROTO_UDP) or not self.has_l4 or self.rh_dst >= 0:
            Packet.set_dst(self, addr)
            Packet.set_dport(self, port)
            return
        buf = self.buf
        o = self.ipoff
        da = addr - self.dst
        self.dst = addr
        if self.version == 4:
            c = _M - (((_u16_unpack(buf, o + 10)[0] ^ _M) + da) % _M or _M)
            _csum_src_dst_pack(buf, o + 10, c, self.src, addr)
        else:
            buf[o + 24 : o + 40] = addr.to_bytes(16, "big")
        l4 = self.l4off
        dp = port - self.dport
        self.dport = port
        _u16_pack(buf, l4 + 2, port)
        co = self.csum_off
        if co < 0:
            return
        c = _u16_unpack(buf, co)[0]
        if self.partial:
            c = (c + da) % _M or _M
        else:
            if c == 0 and proto == PROTO_UDP and self.version == 4:
                return
            c = _M - (((c ^ _M) + da + dp) % _M or _M)
            if c == 0 and proto == PROTO_UDP:
                c = _M
        _u16_pack(buf, co, c)

    def forward_nat4(self, ttl: int, nat: tuple) -> None:
        """Set the TTL and translate an IPv4 TCP/UDP packet: two writes and one update per checksum.

        ``nat`` is ``(src, dst, sport, dport, address_delta, l4_delta, address_changed)`` as
        ``conntrack.Half.compile_nat`` precomputes it for the packet's flow (the deltas are from the
        flow's own addresses and ports, which are the packet's). The result is the same as ``set_ttl``
        followed by ``set_src``, ``set_dst``, ``set_sport`` and ``set_dport``: the checksum updates add
        up (RFC 1624), and a partial checksum takes the address change only.
        """
        buf = self.buf
        o = self.ipoff
        src, dst, sport, dport, da, dl4, moved = nat
        d = da + ((ttl - self.ttl) << 8)
        c = _M - (((_u16_unpack(buf, o + 10)[0] ^ _M) + d) % _M or _M)
        _ttl_to_dst_pack(buf, o + 8, ttl, self.proto, c, src, dst)
        self.ttl = ttl
        self.src = src
        self.dst = dst
        if not self.has_l4:
            return
        _u16x2_pack(buf, self.l4off, sport, dport)
        self.sport = sport
        self.dport = dport
        co = self.csum_off
        if co < 0:
            return
        c = _u16_unpack(buf, co)[0]
        if self.partial:
            if not moved:
                return  # ports are not in the pseudo-header
            c = (c + da) % _M or _M
        else:
            if c == 0 and self.proto == PROTO_UDP:
                return  # IPv4 UDP without a checksum keeps none
            c = _M - (((c ^ _M) + dl4) % _M or _M)
            if c == 0 and self.proto == PROTO_UDP:
                c = _M
        _u16_pack(buf, co, c)

    def set_icmp_id(self, ident: int) -> None:
        """Rewrite the ICMP/ICMPv6 query identifier (also ``sport``/``dport``, which mirror it)."""
        if not self.has_l4 or self.csum_off < 0:
            return
        if self.version == 4:
            if self.proto != PROTO_ICMP or self.icmp_type not in _ICMP_QUERY_TYPES_V4:
                return
        elif self.proto != PROTO_ICMPV6 or self.icmp_type not in _ICMP_QUERY_TYPES_V6:
            return
        old = self.icmp_id
        o = self.l4off + 4
        if o + 2 > self.end:
            return
        buf = self.buf
        buf[o] = ident >> 8
        buf[o + 1] = ident & 0xFF
        self.icmp_id = self.sport = self.dport = ident
        self._l4_delta(ident - old, False)

    def _set_field(self, rel: int, size: int, value: int) -> int:
        """Write a big-endian L4 field at ``l4off + rel`` and fix the L4 checksum; returns the old value."""
        o = self.l4off + rel
        buf = self.buf
        old = int.from_bytes(buf[o : o + size], "big")
        buf[o : o + size] = value.to_bytes(size, "big")
        d = value - old
        if (o + size) & 1:
            d <<= 8
        self._l4_delta(d, False)
        return old

    def _tcp_ok(self, rel_end: int) -> bool:
        return self.proto == PROTO_TCP and self.has_l4 and self.l4off + rel_end <= self.end

    # set_seq and set_ack run on every segment of a randomized connection: written out flat, they do what
    # _tcp_ok + _set_field + _l4_delta do for a TCP field.

    def set_seq(self, seq: int) -> None:
        o = self.l4off + 4
        if self.proto != PROTO_TCP or not self.has_l4 or o + 4 > self.end:
            return
        seq &= 0xFFFFFFFF
        buf = self.buf
        d = seq - _u32_unpack(buf, o)[0]
        _u32_pack(buf, o, seq)
        self.seq = seq
        co = self.csum_off
        if co >= 0 and not self.partial:
            if o & 1:
                d <<= 8
            _u16_pack(buf, co, _M - (((_u16_unpack(buf, co)[0] ^ _M) + d) % _M or _M))

    def set_ack(self, ack: int) -> None:
        o = self.l4off + 8
        if self.proto != PROTO_TCP or not self.has_l4 or o + 4 > self.end:
            return
        ack &= 0xFFFFFFFF
        buf = self.buf
        d = ack - _u32_unpack(buf, o)[0]
        _u32_pack(buf, o, ack)
        self.ack = ack
        co = self.csum_off
        if co >= 0 and not self.partial:
            if o & 1:
                d <<= 8
            _u16_pack(buf, co, _M - (((_u16_unpack(buf, co)[0] ^ _M) + d) % _M or _M))

    def set_flags(self, flags: int) -> None:
        """Rewrite TCP byte 13 (CWR..FIN); ``reserved``/NS are left alone."""
        if self._tcp_ok(14):
            self._set_field(13, 1, flags)
            self.flags = flags

    def set_reserved(self, bits: int) -> None:
        """Rewrite the 4 bits below the data offset (3 reserved + NS/AE); tcp-map ``reserved-bits clear``."""
        if self._tcp_ok(14):
            self._set_field(12, 1, (self.doff >> 2) << 4 | (bits & 15))
            self.reserved = bits & 15

    def set_window(self, window: int) -> None:
        if self._tcp_ok(16):
            self._set_field(14, 2, window)
            self.window = window

    def set_urgptr(self, urgptr: int) -> None:
        if self._tcp_ok(20):
            self._set_field(18, 2, urgptr)
            self.urgptr = urgptr

    def _set_bytes(self, off: int, new: bytes) -> None:
        """Overwrite bytes inside the L4 header and fix the L4 checksum for them."""
        buf = self.buf
        n = len(new)
        old = int.from_bytes(buf[off : off + n], "big")
        buf[off : off + n] = new
        d = int.from_bytes(new, "big") - old
        if (off + n) & 1:
            d <<= 8
        self._l4_delta(d, False)

    def set_mss(self, value: int) -> bool:
        """Rewrite an existing MSS option; False if there is none."""
        off = self._find_option(OPT_MSS, 4)
        if off < 0 or off + 4 > self.end:
            return False
        # _set_bytes for one 16-bit field, written out: read, write and the sum change in place, no
        # slices or int conversions (every SYN and SYN-ACK under ``sysopt connection tcpmss``).
        o = off + 2
        buf = self.buf
        d = value - _u16_unpack(buf, o)[0]
        _u16_pack(buf, o, value)
        if o & 1:
            d <<= 8
        self._l4_delta(d, False)
        return True

    def clamp_mss(self, maximum: int, minimum: int) -> tuple[int, int] | None:
        """``sysopt connection tcpmss [minimum]`` (``mss.sysopt_rewrite``): an MSS option above
        ``maximum`` lowered to it, one below ``minimum`` raised to it (0: no bound); (old, new) when it
        changed. ``mss()`` and ``set_mss`` in one: the option is looked up once (every SYN and SYN-ACK)."""
        off = self._find_option(OPT_MSS, 4)
        if off < 0:
            return None  # the ASA does not add an option that is absent
        o = off + 2
        buf = self.buf
        old = _u16_unpack(buf, o)[0]
        new = old
        if maximum and new > maximum:
            new = maximum
        if minimum and new < minimum:
            new = minimum
        if new == old or off + 4 > self.end:
            return None
        _u16_pack(buf, o, new)
        d = new - old
        if o & 1:
            d <<= 8
        self._l4_delta(d, False)
        return old, new

    def set_sack_block(self, index: int, left: int, right: int) -> bool:
        """Rewrite SACK block ``index`` (edges are absolute sequence numbers); False if absent."""
        for k, off, ln in self.tcp_options():
            if k == OPT_SACK and ln >= 10 and (ln - 2) % 8 == 0:
                if not 0 <= index < (ln - 2) // 8:
                    return False
                o = off + 2 + 8 * index
                if o + 8 > self.end:
                    return False
                self._set_bytes(o, _U32x2.pack(left & 0xFFFFFFFF, right & 0xFFFFFFFF))
                return True
        return False

    def set_timestamps(self, tsval: int, tsecr: int) -> bool:
        """Rewrite the timestamp option's values; False if absent."""
        off = self._find_option(OPT_TIMESTAMP, 10)
        if off < 0 or off + 10 > self.end:
            return False
        self._set_bytes(off + 2, _U32x2.pack(tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF))
        return True

    def clear_option(self, offset: int) -> bool:
        """Overwrite the TCP option starting at ``offset`` (from ``tcp_options()``) with NOPs."""
        for _k, off, ln in self.tcp_options():
            if off == offset:
                if off + ln > self.end:
                    return False
                self._set_bytes(off, b"\x01" * ln)
                self._opts = None
                return True
        return False

    # ----------------------------------------------------------------------------------------------
    # Rewrites that change the length (FTP ALG, TCPMSS): full recompute, rare path

    def _resizable(self) -> bool:
        return (
            not self.quoted
            and not self.is_fragment
            and self.has_l4
            and self.proto in (PROTO_TCP, PROTO_UDP)
            and self.csum_off >= 0
        )

    def _grow(self, at: int, old_len: int, new: bytes) -> int:
        """Replace ``buf[at:at+old_len]`` by ``new`` and fix IP lengths; returns the size change."""
        buf = self.buf
        diff = len(new) - old_len
        del buf[self.end :]  # link-layer padding would otherwise end up inside the datagram
        buf[at : at + old_len] = new
        o = self.ipoff
        self.total_len += diff
        self.end += diff
        if self.version == 4:
            _u16_pack(buf, o + 2, self.total_len)
            self.fix_ip_checksum()
        else:
            _u16_pack(buf, o + 4, self.total_len - 40)
        if self.proto == PROTO_UDP:
            self.udp_len += diff
            _u16_pack(buf, self.l4off + 4, self.udp_len)
        return diff

    def set_payload(self, data: bytes) -> bool:
        """Replace the TCP/UDP payload, possibly changing its length (FTP PORT/PASV rewriting).

        Fixes the IP total length (IPv6 payload length), the UDP length and recomputes the checksums.
        Refuses (False) fragments and quoted packets.
        """
        if not self._resizable():
            return False
        self._grow(self.payload_off, self.payload_len, data)
        self.payload_len = len(data)
        self.fix_l4_checksum()
        return True

    def insert_tcp_option(self, option: bytes) -> bool:
        """Insert a TCP option at the start of the options (TCPMSS adds MSS this way), NOP-padded.

        Grows the header (data offset, IP lengths, checksums). False if it would not fit in 60 bytes,
        on fragments, quoted packets and non-TCP packets.
        """
        if not self._resizable() or self.proto != PROTO_TCP:
            return False
        pad = -len(option) % 4
        new = b"\x01" * pad + bytes(option)
        if self.doff + len(new) > 60:
            return False
        at = self.l4off + 20
        self._grow(at, 0, new)
        self.doff += len(new)
        buf = self.buf
        buf[self.l4off + 12] = (self.doff >> 2) << 4 | self.reserved
        self.payload_off += len(new)
        self._opts = None
        self.fix_l4_checksum()
        return True


class _UdpPacket(Packet):
    """A plain IPv4 UDP datagram from the fast decoder: the UDP length is its only extra field."""

    __slots__ = ("udp_len",)


class _FullPacket(Packet):
    """A packet from the general decoder: the rare fields are instance slots too."""

    __slots__ = (
        "ipoff",
        "mf",
        "frag_offset",
        "is_fragment",
        "ipv4_options",
        "ipv6_ext",
        "frag_hdr_off",
        "rh_dst",
        "udp_len",
        "icmp_type",
        "icmp_code",
        "icmp_id",
        "is_icmp_error",
        "quoted",
        "parent",
        "_inner",
    )


class _QuotedPacket(_FullPacket):
    """The packet inside an ICMP error. Its setters also fix the outer ICMP checksum.

    The quoted bytes are ICMP payload, so every change to them (including the inner checksums the
    setters update) changes the outer checksum; we diff the quoted region before and after a change.
    """

    __slots__ = ()

    def _tracked(self, method, *args):
        parent = self.parent
        lo, hi = self.ipoff, self.end
        before = bytes(self.buf[lo:hi])
        result = method(self, *args)
        after = self.buf[lo:hi]
        d = int.from_bytes(after, "big") - int.from_bytes(before, "big")
        if (hi - lo) & 1:  # parity of the region end decides the byte weight (lo is even)
            d <<= 8
        if d:
            parent._l4_delta(d, False)
        return result

    def set_src(self, addr):
        return self._tracked(Packet.set_src, addr)

    def set_dst(self, addr):
        return self._tracked(Packet.set_dst, addr)

    def set_ttl(self, ttl):
        return self._tracked(Packet.set_ttl, ttl)

    def set_tos(self, tos):
        return self._tracked(Packet.set_tos, tos)

    def set_sport(self, port):
        return self._tracked(Packet.set_sport, port)

    def set_dport(self, port):
        return self._tracked(Packet.set_dport, port)

    def rewrite_src(self, addr, port):
        return self._tracked(Packet.rewrite_src, addr, port)

    def rewrite_dst(self, addr, port):
        return self._tracked(Packet.rewrite_dst, addr, port)

    def set_icmp_id(self, ident):
        return self._tracked(Packet.set_icmp_id, ident)

    def set_seq(self, seq):
        return self._tracked(Packet.set_seq, seq)

    def set_ack(self, ack):
        return self._tracked(Packet.set_ack, ack)

    def set_flags(self, flags):
        return self._tracked(Packet.set_flags, flags)

    def set_window(self, window):
        return self._tracked(Packet.set_window, window)

    def set_urgptr(self, urgptr):
        return self._tracked(Packet.set_urgptr, urgptr)

    def set_mss(self, value):
        return self._tracked(Packet.set_mss, value)

    def clamp_mss(self, maximum, minimum):
        return self._tracked(Packet.clamp_mss, maximum, minimum)

    def set_sack_block(self, index, left, right):
        return self._tracked(Packet.set_sack_block, index, left, right)

    def set_timestamps(self, tsval, tsecr):
        return self._tracked(Packet.set_timestamps, tsval, tsecr)

    def clear_option(self, offset):
        return self._tracked(Packet.clear_option, offset)

    def fix_ip_checksum(self):
        return self._tracked(Packet.fix_ip_checksum)

    def set_reserved(self, bits):
        return self._tracked(Packet.set_reserved, bits)

    def clear_ipv4_options(self):
        return self._tracked(Packet.clear_ipv4_options)


# --------------------------------------------------------------------------------------------------
# Decoding


def _parse_tcp_options(buf, start: int, end: int, strict: bool) -> list[tuple[int, int, int]]:
    """Walk TCP options in ``buf[start:end]``; strict raises on bad syntax, tolerant stops there."""
    opts = []
    i = start
    while i < end:
        kind = buf[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= end:
            if strict:
                raise _err(DropReason.INVALID_TCP_OPTIONS, f"TCP option {kind} has no length byte")
            break
        ln = buf[i + 1]
        if ln < 2 or i + ln > end:
            if strict:
                raise _err(DropReason.INVALID_TCP_OPTIONS, f"TCP option {kind} has bad length {ln}")
            break
        opts.append((kind, i, ln))
        i += ln
    return opts


def _parse_ipv4_options(buf, start: int, end: int) -> list[tuple[int, int, int]]:
    """Validate IPv4 options in ``buf[start:end]``; ``(type, offset, length)`` of each non-NOP option."""
    opts = []
    i = start
    while i < end:
        t = buf[i]
        if t == 0:
            break
        if t == 1:
            i += 1
            continue
        if i + 1 >= end:
            raise _err(DropReason.INVALID_IP_OPTION, f"IP option {t} has no length byte")
        ln = buf[i + 1]
        if ln < 2 or i + ln > end:
            raise _err(DropReason.INVALID_IP_OPTION, f"IP option {t} has bad length {ln}")
        # Route recording options carry a pointer that must point inside the option (Linux
        # ip_options_compile checks the same).
        if t in (7, 131, 137):
            if ln < 3 or buf[i + 2] < 4:
                raise _err(DropReason.INVALID_IP_OPTION, f"IP option {t} has bad pointer")
        elif t == 68 and (ln < 4 or buf[i + 2] < 5):
            raise _err(DropReason.INVALID_IP_OPTION, "IP timestamp option has bad pointer")
        opts.append((t, i, ln))
        i += ln
    return opts


def decode(buf: bytearray, *, partial_csum: bool = False) -> Packet:
    """Decode one IP packet (no link-layer header) in ``buf``; raises only :class:`DecodeError`.

    ``partial_csum``: the L4 checksum field holds a partial pseudo-header sum (TUN NEEDS_CSUM).
    """
    n = len(buf)
    # Fast path: plain IPv4 (no options) + TCP, not fragmented - the bulk of the traffic. One unpack
    # covers both headers and the first option word, which tells the NOP NOP timestamp layout.
    if n >= 40 and buf[0] == 0x45:
        if n >= 44:
            (_vihl, tos, tot, ident, frag, ttl, proto, _c, src, dst,
             sport, dport, seq, ack, offres, flags, window, _c, urg,
             opt0) = _ip4_tcp_unpack(buf, 0)  # fmt: skip
        else:  # a bare 40-byte segment (pure ACK without timestamps)
            (_vihl, tos, tot, ident, frag, ttl, proto, _c, src, dst,
             sport, dport, seq, ack, offres, flags, window, _c,
             urg) = _ip4_tcp40_unpack(buf, 0)  # fmt: skip
            opt0 = 0
        doff = (offres >> 4) << 2
        if (
            proto == PROTO_TCP
            and not frag & 0x3FFF
            and tot <= n
            and 20 <= doff <= tot - 20
            and (doff == 20 or (doff == 32 and opt0 == _NOP_NOP_TS))
        ):
            p = Packet()
            p.buf = buf
            p.end = tot
            p.version = 4
            p.src = src
            p.dst = dst
            p.ttl = ttl
            p.tos = tos
            p.proto = PROTO_TCP
            p.l3_len = 20
            p.total_len = tot
            p.ip_id = ident
            p.df = frag & 0x4000 != 0
            p.has_l4 = True
            p.l4off = 20
            p.sport = sport
            p.dport = dport
            p.seq = seq
            p.ack = ack
            p.flags = flags
            p.reserved = offres & 15
            p.doff = doff
            p.window = window
            p.urgptr = urg
            p.payload_off = 20 + doff
            p.payload_len = tot - 20 - doff
            p.csum_off = 36
            p.partial = partial_csum
            p._opts = None
            return p
    # Fast path for plain IPv4 + UDP, not fragmented, with consistent lengths (the general path decides
    # everything else, errors included): the fields _decode_into would set, the rest class defaults.
    if n >= 28 and buf[0] == 0x45 and buf[9] == PROTO_UDP:
        (_vihl, tos, tot, ident, frag, ttl, _proto, _c, src, dst,
         sport, dport, ulen, _uc) = _ip4_udp_unpack(buf, 0)  # fmt: skip
        if not frag & 0x3FFF and 28 <= tot <= n and 8 <= ulen <= tot - 20:
            p = _UdpPacket()
            p.buf = buf
            p.end = tot
            p.version = 4
            p.src = src
            p.dst = dst
            p.ttl = ttl
            p.tos = tos
            p.proto = PROTO_UDP
            p.l3_len = 20
            p.total_len = tot
            p.ip_id = ident
            p.df = frag & 0x4000 != 0
            p.has_l4 = True
            p.l4off = 20
            p.sport = sport
            p.dport = dport
            p.seq = p.ack = p.flags = p.reserved = p.doff = p.window = p.urgptr = 0
            p.udp_len = ulen
            p.payload_off = 28
            p.payload_len = ulen - 8  # Linux trims an IP payload longer than the UDP length
            p.csum_off = 26
            p.partial = partial_csum
            p._opts = None
            return p
    p = _FullPacket()
    p.buf = buf
    p.partial = partial_csum
    p.parent = None
    _decode_into(p, buf, 0, n, False)
    if p.is_icmp_error:
        p._inner = _decode_quoted(p)
    return p


def _decode_quoted(outer: Packet) -> Packet:
    q = _QuotedPacket()
    q.buf = outer.buf
    q.partial = False
    q.parent = outer
    start = outer.l4off + 8
    try:
        _decode_into(q, outer.buf, start, outer.end, True)
    except DecodeError as e:
        raise _err(
            DropReason.INVALID_ICMP, f"ICMP error quotes an undecodable packet ({e.message})"
        ) from None
    if q.version != outer.version:
        raise _err(DropReason.INVALID_ICMP, f"ICMPv{outer.version} error quotes an IPv{q.version} packet")
    return q


def _decode_into(p: Packet, buf, base: int, limit: int, quoted: bool) -> None:
    """Decode the IP packet at ``buf[base:limit]`` into ``p`` (general path, every protocol).

    ``quoted``: the packet is quoted in an ICMP error, so it may be cut short anywhere after the IP
    header and 8 bytes of L4; length fields are believed only as far as the bytes go.
    """
    avail = limit - base
    if avail < 1:
        raise _err(DropReason.INVALID_IP_HEADER, "empty packet")
    version = buf[base] >> 4
    ipv4_options = ()
    ipv6_ext = ()
    frag_hdr_off = -1
    df = False
    if version == 4:
        if avail < 20:
            raise _err(DropReason.INVALID_IP_HEADER, f"truncated IPv4 header ({avail} bytes)")
        vihl, tos, tot, ident, frag, ttl, proto, _c, src, dst = _ip4_unpack(buf, base)
        hl = (vihl & 15) << 2
        if hl < 20:
            raise _err(DropReason.INVALID_IP_HEADER, f"IPv4 header length {hl} < 20")
        if hl > avail:
            raise _err(DropReason.INVALID_IP_HEADER, f"IPv4 header length {hl} exceeds the packet")
        if tot < hl:
            raise _err(DropReason.INVALID_IP_LENGTH, f"IPv4 total length {tot} < header length {hl}")
        if tot > avail:
            if not quoted:
                raise _err(DropReason.INVALID_IP_LENGTH, f"IPv4 total length {tot} > {avail} bytes received")
            end = limit
        else:
            end = base + tot
        if hl > 20:
            ipv4_options = _parse_ipv4_options(buf, base + 20, base + hl)
        frag_offset = (frag & 0x1FFF) << 3
        mf = frag & 0x2000 != 0
        df = frag & 0x4000 != 0
        l4off = base + hl
        rh_dst = -1
        if (mf or frag_offset) and not quoted:
            if mf and (tot - hl) & 7:
                raise _err(DropReason.INVALID_FRAGMENT, "non-last fragment length not a multiple of 8")
            if frag_offset + tot - hl > 65535:
                raise _err(DropReason.INVALID_FRAGMENT, "fragment ends beyond 65535 bytes")
    elif version == 6:
        if avail < 40:
            raise _err(DropReason.INVALID_IP_HEADER, f"truncated IPv6 header ({avail} bytes)")
        vtcfl, plen, proto, ttl, s_hi, s_lo, d_hi, d_lo = _IP6.unpack_from(buf, base)
        tos = (vtcfl >> 20) & 0xFF
        src = s_hi << 64 | s_lo
        dst = d_hi << 64 | d_lo
        tot = 40 + plen
        if tot > avail:
            if not quoted:
                raise _err(DropReason.INVALID_IP_LENGTH, f"IPv6 length {tot} > {avail} bytes received")
            end = limit
        else:
            end = base + tot
        ident = 0
        frag_offset = 0
        mf = False
        rh_dst = -1
        off = base + 40
        exts = []
        while proto in _IPV6_EXT:
            if proto == 0 and off != base + 40:
                raise _err(DropReason.INVALID_IPV6_EXTENSION, "hop-by-hop options not first")
            if exts and sum(1 for e in exts if e[0] == proto) >= _IPV6_EXT_MAX[proto] and proto != 44:
                raise _err(
                    DropReason.IPV6_EXTENSION_ORDER,
                    f"extension header {proto} repeated (RFC 8200 4.1: each once, destination options twice)",
                )
            if off + 8 > end:
                raise _err(DropReason.INVALID_IPV6_EXTENSION, f"truncated extension header {proto}")
            if proto == 44:
                if frag_hdr_off >= 0:
                    raise _err(DropReason.INVALID_IPV6_EXTENSION, "two fragment headers")
                nxt, _r, fo_m, ident = _FRAG6.unpack_from(buf, off)
                frag_offset = fo_m & 0xFFF8
                mf = fo_m & 1 != 0
                frag_hdr_off = off
                hlen = 8
            elif proto == 51:
                nxt = buf[off]
                hlen = (buf[off + 1] + 2) << 2
            else:
                nxt = buf[off]
                hlen = (buf[off + 1] + 1) << 3
            if off + hlen > end:
                raise _err(
                    DropReason.INVALID_IPV6_EXTENSION, f"extension header {proto} runs past the packet"
                )
            if proto == 0 or proto == 60:
                _check_ipv6_tlvs(buf, off + 2, off + hlen)
            if proto == 43 and buf[off + 3]:
                rh_dst = _routing_final_dst(buf, off, hlen)
            exts.append((proto, off, hlen))
            off += hlen
            proto = nxt
            if frag_hdr_off >= 0 and frag_offset:
                break  # what follows a non-first fragment header is not a header
        ipv6_ext = exts
        l4off = off
        if frag_hdr_off >= 0 and (mf or frag_offset) and not quoted:
            data = end - frag_hdr_off - 8
            if mf and data & 7:
                raise _err(DropReason.INVALID_FRAGMENT, "non-last fragment length not a multiple of 8")
            if frag_offset + data > 65535:
                raise _err(DropReason.INVALID_FRAGMENT, "fragment ends beyond 65535 bytes")
    else:
        raise _err(DropReason.INVALID_IP_VERSION, f"IP version {version}")

    is_fragment = mf or frag_offset != 0
    p.ipoff = base
    p.end = end
    p.version = version
    p.src = src
    p.dst = dst
    p.ttl = ttl
    p.tos = tos
    p.proto = proto
    p.l3_len = l4off - base
    p.total_len = tot
    p.ip_id = ident
    p.df = df
    p.mf = mf
    p.frag_offset = frag_offset
    p.is_fragment = is_fragment
    p.ipv4_options = ipv4_options
    p.ipv6_ext = ipv6_ext
    p.frag_hdr_off = frag_hdr_off
    p.l4off = l4off
    p.sport = p.dport = p.seq = p.ack = p.flags = p.reserved = p.doff = p.window = p.urgptr = 0
    p.udp_len = p.icmp_type = p.icmp_code = p.icmp_id = 0
    p.is_icmp_error = False
    p.rh_dst = rh_dst
    p.csum_off = -1
    p.quoted = quoted
    p._opts = None
    p._inner = None
    p.payload_off = l4off
    p.payload_len = end - l4off
    p.has_l4 = frag_offset == 0
    if frag_offset:
        return
    # A first fragment must hold the whole L4 header (RFC 1858 tiny-fragment attack).
    seg = end - l4off
    if proto == PROTO_TCP:
        if seg < 20:
            if quoted and seg >= 8:
                _decode_quoted_tcp(p, buf, l4off, seg)
                return
            reason = DropReason.INVALID_FRAGMENT if is_fragment else DropReason.INVALID_TCP_LENGTH
            raise _err(reason, f"TCP header truncated ({seg} bytes)")
        sport, dport, seq, ack, offres, flags, window, _c, urg = _tcp_unpack(buf, l4off)
        doff = (offres >> 4) << 2
        if not quoted:
            if doff < 20:
                raise _err(DropReason.INVALID_TCP_LENGTH, f"TCP data offset {doff} < 20")
            if doff > seg:
                reason = DropReason.INVALID_FRAGMENT if is_fragment else DropReason.INVALID_TCP_LENGTH
                raise _err(reason, f"TCP data offset {doff} > segment length {seg}")
            if doff > 20 and not (doff == 32 and _u32_unpack(buf, l4off + 20)[0] == _NOP_NOP_TS):
                p._opts = _parse_tcp_options(buf, l4off + 20, l4off + doff, True)
        p.sport = sport
        p.dport = dport
        p.seq = seq
        p.ack = ack
        p.flags = flags
        p.reserved = offres & 15
        p.doff = doff
        p.window = window
        p.urgptr = urg
        pay = min(l4off + doff, end)
        p.payload_off = pay
        p.payload_len = end - pay
        p.csum_off = l4off + 16
    elif proto == PROTO_UDP:
        if seg < 8:
            reason = DropReason.INVALID_FRAGMENT if is_fragment else DropReason.INVALID_UDP_LENGTH
            raise _err(reason, f"UDP header truncated ({seg} bytes)")
        sport, dport, ulen, _c = _UDP.unpack_from(buf, l4off)
        if ulen < 8 and not quoted:
            raise _err(DropReason.INVALID_UDP_LENGTH, f"UDP length {ulen} < 8")
        if ulen > seg and not (quoted or is_fragment):
            raise _err(DropReason.INVALID_UDP_LENGTH, f"UDP length {ulen} > {seg} bytes of IP payload")
        p.sport = sport
        p.dport = dport
        p.udp_len = ulen
        p.payload_off = l4off + 8
        # Linux trims an IP payload longer than the UDP length (udp_rcv -> pskb_trim_rcsum).
        p.payload_len = seg - 8 if quoted or is_fragment else ulen - 8
        p.csum_off = l4off + 6
    elif (proto == PROTO_ICMP and version == 4) or (proto == PROTO_ICMPV6 and version == 6):
        if seg < 8:
            reason = DropReason.INVALID_FRAGMENT if is_fragment else DropReason.INVALID_ICMP
            raise _err(reason, f"ICMP header truncated ({seg} bytes)")
        itype, icode, _c, ident, _seq = _ICMP.unpack_from(buf, l4off)
        p.icmp_type = itype
        p.icmp_code = icode
        if version == 4:
            is_error = itype in ICMP_ERROR_TYPES_V4
            query = itype in _ICMP_QUERY_TYPES_V4
        else:
            is_error = itype in ICMP_ERROR_TYPES_V6
            query = itype in _ICMP_QUERY_TYPES_V6
        if query:
            p.icmp_id = p.sport = p.dport = ident
        p.is_icmp_error = is_error
        p.payload_off = l4off + 8
        p.payload_len = seg - 8
        p.csum_off = l4off + 2


def _decode_quoted_tcp(p: Packet, buf, l4off: int, seg: int) -> None:
    """The first 8..19 bytes of a quoted TCP header: ports and sequence number, maybe more."""
    p.sport, p.dport, p.seq = struct.unpack_from("!HHI", buf, l4off)
    if seg >= 12:
        p.ack = _u32_unpack(buf, l4off + 8)[0]
    if seg >= 14:
        p.doff = (buf[l4off + 12] >> 4) << 2
        p.reserved = buf[l4off + 12] & 15
        p.flags = buf[l4off + 13]
    if seg >= 16:
        p.window = _u16_unpack(buf, l4off + 14)[0]
    if seg >= 18:
        p.csum_off = l4off + 16
    p.payload_off = p.end
    p.payload_len = 0


def _routing_final_dst(buf, off: int, hlen: int) -> int:
    """The final destination named by a routing header with segments left (RFC 8200 section 8.1).

    Types 0 and 2 list the remaining addresses, the last is final; a segment routing header (type 4,
    RFC 8754) lists segments in reverse, so the final one is first. Unknown types: -1 (current dst).
    """
    rtype = buf[off + 2]
    if rtype in (0, 2) and hlen >= 24:
        last = off + 8 + ((hlen - 8) // 16 - 1) * 16
        return int.from_bytes(buf[last : last + 16], "big")
    if rtype == 4 and hlen >= 24:
        return int.from_bytes(buf[off + 8 : off + 24], "big")
    return -1


def _check_ipv6_tlvs(buf, start: int, end: int) -> None:
    """Validate the TLV-encoded options of a hop-by-hop or destination options header."""
    i = start
    while i < end:
        if buf[i] == 0:  # Pad1
            i += 1
            continue
        if i + 1 >= end:
            raise _err(DropReason.INVALID_IPV6_EXTENSION, "IPv6 option has no length byte")
        i += 2 + buf[i + 1]
        if i > end:
            raise _err(DropReason.INVALID_IPV6_EXTENSION, "IPv6 option runs past its header")


# --------------------------------------------------------------------------------------------------
# Addresses


def addr_to_str(version: int, addr: int) -> str:
    """``addr_to_str(4, 0x0A000001) == "10.0.0.1"``; IPv6 in RFC 5952 form."""
    if version == 4:
        return f"{addr >> 24}.{(addr >> 16) & 255}.{(addr >> 8) & 255}.{addr & 255}"
    return str(ipaddress.IPv6Address(addr))


def str_to_addr(text: str) -> tuple[int, int]:
    """``str_to_addr("10.0.0.1") == (4, 0x0A000001)``; raises ValueError for a non-address."""
    a = ipaddress.ip_address(text)
    return a.version, int(a)
