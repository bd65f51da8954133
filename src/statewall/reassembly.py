"""IP fragment reassembly as each box does it: Linux's defragmentation before conntrack, the ASA's
virtual reassembly; and the fragments that leave again.

This module owns the fragment queues (one per datagram being reassembled), their timers and memory,
and the rules for what leaves: it is sans-IO like the engine (bytes and a time in, datagrams, fragments
and discards out). Two classes share the queue logic and differ where the boxes differ:

``LinuxDefrag`` - nf_defrag_ipv4 / nf_defrag_ipv6 gather every fragment before conntrack sees the
packet (net/ipv4/netfilter/nf_defrag_ipv4.c ``ipv4_conntrack_defrag`` -> ``ip_defrag``; IPv6:
net/ipv6/netfilter/nf_conntrack_reasm.c ``nf_ct_frag6_gather``). The queue rules are the kernel's:

* a queue is keyed by (source, destination, protocol, identification) (``ip_find``; IPv6 has no
  protocol in the key) and lives ``ipfrag_time`` (30 s, IPv4) or ``nf_conntrack_frag6_timeout``
  (60 s, IPv6) from its first fragment; later fragments do not extend it (``inet_frag_alloc`` arms the
  timer once). A conntrack reassembly timeout sends no ICMP for forwarded IPv4 traffic
  (``frag_expire_skip_icmp``) - not modelled for IPv6, where ``ip6frag_expire_frag_queue`` may;
* ``ip_frag_queue`` / ``nf_ct_frag6_queue``: a last fragment ending before data already seen, or two
  different ends, or data beyond the end, discard the whole queue; a non-last IPv4 fragment's length is
  rounded down to 8 (the decoder refuses such a fragment anywhere else);
* ``inet_frag_queue_insert`` (net/ipv4/inet_fragment.c): a fragment wholly inside a run of data already
  queued is a duplicate and is dropped alone; any other overlap discards the whole datagram (RFC 5722,
  errata 3089 - applied to IPv4 too since the FragmentSmack fixes, 2018: teardrop is dropped);
* mixed ECN code points that RFC 3168 forbids (``ip_frag_ecn_table`` 0xff) fail the datagram;
* a datagram longer than 65535 bytes fails (``ip_frag_reasm`` "Oversized IP packet");
* ``ip_frag_too_far`` (IPv4 only): when more than ``ipfrag_max_dist`` (64) fragments from the same
  source arrived since a queue last grew, ``ip_frag_reinit`` drops what it holds and starts it again
  (timer re-armed) with the arriving fragment; ``ipfrag_max_dist`` 0 turns this off;
* memory: when the fragments held exceed ``ipfrag_high_thresh`` (4 MiB) no new queue is created
  (``inet_frag_find`` returns NULL; fragments of existing queues still join them). Memory is counted as
  the kernel's ``skb->truesize``, approximated as the fragment's length plus 576 bytes of ``sk_buff``
  and ``skb_shared_info`` (x86-64), plus 184 bytes per queue;
* the datagram carries the first fragment's header; ``frag_max_size`` is the largest fragment received
  (``IPCB(skb)->frag_max_size``, ``IP6CB(skb)->frag_max_size``) and the IPv4 DF bit is set when the
  largest fragment carried DF (``qp->max_df_size == qp->q.max_size``).

On output (``fragment_out``) Linux fragments again: ``ip_finish_output`` sends any skb with
``frag_max_size`` to ``ip_fragment`` (net/ipv4/ip_output.c), which answers fragmentation-needed when
DF is set and ``frag_max_size`` exceeds the route MTU, and otherwise ``ip_do_fragment`` with the MTU
lowered to ``frag_max_size``. Its fast path re-emits the queued fragments with their own boundaries
(the frag_list that ``inet_frag_reasm_finish`` built: conntrack reassembly does not coalesce) when
they all fit; the headers are the first fragment's (its TTL, ToS, identification for every fragment),
DF cleared by ``ip_fraglist_init``, options not copied on fragmentation replaced by NOPs after the
first (``ip_options_fragment``). Otherwise the slow path cuts MTU-sized pieces, keeping DF when the
datagram had it. IPv6 (``ip6_fragment``, net/ipv6/ip6_output.c) sends Packet Too Big when
``frag_max_size`` exceeds the MTU and cuts to ``frag_max_size`` (at least 1280) otherwise; the kernel
chooses a new identification (``ipv6_select_ident``: a keyed hash) that statewall cannot reproduce, so
the original one is kept. A namespace differential (tests/test_reassembly_kernel.py) holds these
rules to the running kernel.

``AsaFragmentDb`` - the ASA's virtual reassembly: fragments are collected in a per-interface fragment
database, checked as a set, and forwarded as they came once the set is complete (Cisco ASA
configuration guide, "Fragment settings"; command reference ``fragment``): ``fragment size`` (200)
fragments may wait per interface, a datagram may have ``fragment chain`` (24) fragments, and the set
must be complete ``fragment timeout`` (5) seconds after its first fragment arrived. Over the database
limit a fragment is dropped with syslog 209003; a set with too many elements is discarded with
209005; a reassembled size over 65535 is 209004 (Cisco ASA syslog guide, 209003-209005). Overlapping
fragments (teardrop) are the ASA's ``security-failed`` asp-drop ("Early security checks failed"),
which also counts fragments with a too small offset: a first fragment that does not hold the
transport header (RFC 1858) is refused too, because virtual reassembly finds the flow from it.
"""

from __future__ import annotations

import heapq
import struct
from dataclasses import dataclass, field
from typing import Any

from .checksum import internet_checksum
from .events import DropReason
from .packet import addr_to_str
from .policy import DefragSettings, FragmentSettings

__all__ = [
    "AsaFragmentDb",
    "Datagram",
    "Discard",
    "LinuxDefrag",
    "Piece",
    "fragment_out",
    "is_fragment",
]

_IPV6_EXT_BEFORE_FRAG = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_MAX_DATAGRAM = 65535
_IPV6_MIN_MTU = 1280
# Approximations of the kernel's memory accounting (see the module docstring).
_SKB_OVERHEAD = 576
_QUEUE_SIZE = 184
# Transport header sizes a first fragment must hold for the ASA to find the flow.
_L4_MIN = {6: 20, 17: 8, 1: 8, 58: 8}
_PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6"}

# RFC 3168 sec. 5.3 as ip_frag_ecn_table has it: the ECN code points seen across the fragments (bit
# 1 << codepoint) -> the code point to OR into the datagram, or None when the mix is invalid.
_NOT_ECT, _ECT1, _ECT0, _CE = 1, 2, 4, 8


def _ecn_result(seen: int) -> int | None:
    if seen & _NOT_ECT and seen & (_ECT1 | _ECT0 | _CE):
        return None
    if seen & _CE:
        return 3
    return 0


# --------------------------------------------------------------------------------------------------
# What goes in and what comes out


@dataclass(slots=True)
class _Frag:
    """One fragment as received: its header bytes (IPv4 header with options; IPv6 unfragmentable part),
    its data, where the data goes, and the header fields the reassembly rules read."""

    version: int
    src: int
    dst: int
    proto: int
    ident: int
    offset: int
    end: int
    more: bool
    df: bool
    ecn: int
    header: bytes
    data: bytes
    size: int  # the fragment's total length as received (what frag_max_size takes the maximum of)
    raw: bytes
    nh_pos: int = 0  # IPv6: offset of the next-header byte that named the fragment header
    frag_nh: int = 0  # IPv6: the fragment header's next header (the payload's first header)


@dataclass(slots=True)
class Piece:
    """One fragment of a reassembled datagram: where its data lies and the header it came with."""

    offset: int
    end: int
    more: bool
    header: bytes
    ttl: int
    ident: int


@dataclass(slots=True)
class Datagram:
    """A reassembled datagram: ``data`` is the whole IP packet as the first fragment's header starts it.

    ``pieces`` are the fragments it came from (Linux: offset order, duplicates left out; ASA: arrival
    order), ``frag_max_size`` the largest fragment's total length, ``unfrag_len`` the IPv6 header and
    extension headers that preceded the fragment header (each fragment repeats them).
    """

    interface: str
    version: int
    data: bytearray
    pieces: list[Piece]
    frag_max_size: int
    df: bool
    ttl: int
    unfrag_len: int
    style: str  # "linux" or "asa": how fragment_out cuts it


@dataclass(slots=True)
class Discard:
    """A fragment dropped by reassembly (one per fragment: held ones are reported when their datagram
    is discarded). ``detail`` carries the syslog fields on the first fragment of a discarded set only,
    so that the ASA logs one 209003/209004/209005 line per event, as it does."""

    reason: DropReason
    message: str
    interface: str
    version: int
    src: int
    dst: int
    proto: int
    packet: bytes
    detail: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Reading a fragment's headers (before the decoder, which needs whole transport headers)

_IP4 = struct.Struct("!BBHHHBBHII")
_U16 = struct.Struct("!H")


def is_fragment(buf) -> bool:
    """Whether ``buf`` is an IPv4 fragment or an IPv6 packet with a fragment header that is not atomic
    (offset 0 and no more fragments: RFC 6946, processed as a whole packet)."""
    n = len(buf)
    if n >= 20 and buf[0] >> 4 == 4:
        return (buf[6] & 0x3F) != 0 or buf[7] != 0
    if n >= 48 and buf[0] >> 4 == 6:
        nh, off = buf[6], 40
        while nh in _IPV6_EXT_BEFORE_FRAG and off + 8 <= n:
            nh, off = buf[off], off + ((buf[off + 1] + 1) << 3)
        if nh == 44 and off + 8 <= n:
            return (_U16.unpack_from(buf, off + 2)[0] & 0xFFF9) != 0
    return False


def _parse(buf) -> _Frag | None:
    """The fragment in ``buf``, or None when it is not one or its IP header is unusable (the decoder
    then rejects it with its own reason)."""
    n = len(buf)
    if n >= 20 and buf[0] >> 4 == 4:
        vihl, tos, tot, ident, frag, _ttl, proto, _c, src, dst = _IP4.unpack_from(buf, 0)
        hl = (vihl & 15) << 2
        if hl < 20 or tot < hl or tot > n:
            return None
        offset = (frag & 0x1FFF) << 3
        more = frag & 0x2000 != 0
        if not (more or offset):
            return None
        data = bytes(buf[hl:tot])
        return _Frag(
            4, src, dst, proto, ident, offset, offset + len(data), more, frag & 0x4000 != 0, tos & 3,
            bytes(buf[:hl]), data, tot, bytes(buf[:tot]),
        )  # fmt: skip
    if n >= 48 and buf[0] >> 4 == 6:
        plen = _U16.unpack_from(buf, 4)[0]
        end = 40 + plen
        if end > n:
            return None
        nh, off, nh_pos = buf[6], 40, 6
        while nh in _IPV6_EXT_BEFORE_FRAG:
            if off + 8 > end:
                return None
            nh_pos = off
            nh, off = buf[off], off + ((buf[off + 1] + 1) << 3)
        if nh != 44 or off + 8 > end:
            return None
        fo_m = _U16.unpack_from(buf, off + 2)[0]
        offset, more = fo_m & 0xFFF8, fo_m & 1 != 0
        if not (more or offset):
            return None
        src = int.from_bytes(buf[8:24], "big")
        dst = int.from_bytes(buf[24:40], "big")
        ident = struct.unpack_from("!I", buf, off + 4)[0]
        data = bytes(buf[off + 8 : end])
        tc = (buf[0] & 15) << 4 | buf[1] >> 4
        return _Frag(
            6, src, dst, buf[off], ident, offset, offset + len(data), more, False, tc & 3,
            bytes(buf[:off]), data, end, bytes(buf[:end]), nh_pos, buf[off],
        )  # fmt: skip
    return None


# --------------------------------------------------------------------------------------------------
# The queue of one datagram


class _Queue:
    """Fragments of one datagram: runs of contiguous data as ``inet_frag_queue_insert`` keeps them."""

    __slots__ = (
        "key",
        "interface",
        "deadline",
        "frags",
        "runs",
        "length",
        "last_in",
        "first",
        "meat",
        "max_size",
        "max_df_size",
        "ecn",
        "mem",
        "rid",
    )

    def __init__(self, key: tuple, interface: str, deadline: float) -> None:
        self.key = key
        self.interface = interface
        self.deadline = deadline
        self.frags: list[_Frag] = []  # arrival order
        self.runs: list[list[int]] = []  # [start, end] sorted, not overlapping
        self.length = 0  # q.len: the datagram's data length as far as known
        self.last_in = False
        self.first: _Frag | None = None
        self.meat = 0
        self.max_size = 0
        self.max_df_size = 0
        self.ecn = 0
        self.mem = _QUEUE_SIZE
        # ip_frag_too_far: the source's fragment count when this queue last grew; -1 when the queue
        # is not counted (IPv6, or ipfrag_max_dist 0 when it was made).
        self.rid = -1

    def insert(self, offset: int, end: int) -> str:
        """Place [offset, end) among the runs: ``ok``, ``dup`` (inside one run) or ``overlap``."""
        runs = self.runs
        if not runs:
            runs.append([offset, end])
            return "ok"
        tail = runs[-1]
        if tail[1] < end:
            # The common case: the fragment goes at the end.
            if offset < tail[1]:
                return "overlap" if not (offset >= tail[0] and end <= tail[1]) else "dup"
            if offset == tail[1]:
                tail[1] = end
            else:
                runs.append([offset, end])
            return "ok"
        hit = [r for r in runs if offset < r[1] and end > r[0]]
        if not hit:
            i = 0
            while i < len(runs) and runs[i][0] < offset:
                i += 1
            runs.insert(i, [offset, end])
            return "ok"
        if len(hit) == 1 and hit[0][0] <= offset and end <= hit[0][1]:
            return "dup"
        return "overlap"

    def complete(self) -> bool:
        return self.first is not None and self.last_in and self.meat == self.length


def _key(f: _Frag) -> tuple:
    # ip_find keys IPv4 queues by protocol too; IPv6 queues are keyed without it.
    if f.version == 4:
        return (4, f.src, f.dst, f.proto, f.ident)
    return (6, f.src, f.dst, f.ident)


def _discard(reason: DropReason, message: str, iface: str, f: _Frag, detail: dict | None = None) -> Discard:
    return Discard(reason, message, iface, f.version, f.src, f.dst, f.proto, f.raw, detail or {})


# --------------------------------------------------------------------------------------------------
# Shared machinery


class _Reassembler:
    """Queues by key, their deadlines, and the steps common to both boxes."""

    style = ""

    def __init__(self) -> None:
        self.queues: dict[tuple, _Queue] = {}
        self._deadlines: list[tuple[float, int, tuple, _Queue]] = []
        self._seq = 0
        self.reassembled = 0  # datagrams completed
        self.failed = 0  # datagrams discarded

    # -- timers ----------------------------------------------------------------------------------

    @property
    def next_deadline(self) -> float | None:
        while self._deadlines and self.queues.get(self._deadlines[0][2]) is not self._deadlines[0][3]:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def expire(self, now: float) -> list[Discard]:
        """Discard every queue whose time is up (at ``now`` or before), one Discard per fragment."""
        out: list[Discard] = []
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            _, _, key, q = heapq.heappop(dl)
            if self.queues.get(key) is q:
                out += self._kill(q, self._timeout_reason(q), self._timeout_message(q), None)
        return out

    def _new_queue(self, key: tuple, iface: str, now: float, timeout: float) -> _Queue:
        q = _Queue(key, iface, now + timeout)
        self.queues[key] = q
        self._seq += 1
        heapq.heappush(self._deadlines, (q.deadline, self._seq, key, q))
        return q

    def _kill(self, q: _Queue, reason: DropReason, message: str, arriving: _Frag | None) -> list[Discard]:
        """Discard a queue with the fragment that killed it (if any): one Discard per fragment, the
        first of them carrying the syslog fields."""
        del self.queues[q.key]
        self._forget(q)
        self.failed += 1
        frags = [*q.frags, arriving] if arriving is not None else list(q.frags)
        out = [_discard(reason, message, q.interface, f) for f in frags]
        if out:
            out[0].detail = self._set_detail(q, frags[0], len(frags))
        return out

    def _forget(self, q: _Queue) -> None:
        """Release what the queue held (memory accounting)."""

    def _set_detail(self, q: _Queue, f: _Frag, count: int) -> dict[str, Any]:
        return {"id": f.ident, "fragments": count, "proto_name": _PROTO_NAMES.get(f.proto, str(f.proto))}

    def _timeout_reason(self, q: _Queue) -> DropReason:
        raise NotImplementedError

    def _timeout_message(self, q: _Queue) -> str:
        raise NotImplementedError

    # -- the queue rules (ip_frag_queue / nf_ct_frag6_queue) --------------------------------------

    def _queue_fragment(self, q: _Queue, f: _Frag) -> tuple[str, str]:
        """Apply the end and overlap rules: (outcome, message), outcome ``ok``, ``dup``, ``fail``
        (discard the queue) or ``overlap`` (discard the queue, overlap)."""
        end = f.end
        if not f.more:
            if end < q.length or (q.last_in and end != q.length):
                return "fail", f"last fragment ends at {end}, the datagram at {q.length}"
            q.last_in = True
            q.length = end
        else:
            if end > q.length:
                if q.last_in:
                    return "fail", f"fragment ends at {end}, beyond the last fragment's end {q.length}"
                q.length = end
        if end == f.offset:
            return "fail", "fragment without data"
        where = q.insert(f.offset, end)
        if where == "dup":
            return "dup", f"duplicate of data {f.offset}-{end} already queued"
        if where == "overlap":
            return "overlap", f"fragment {f.offset}-{end} overlaps data already queued"
        q.frags.append(f)
        q.meat += end - f.offset
        if f.offset == 0:
            q.first = f
        q.ecn |= 1 << f.ecn
        if f.size > q.max_size:
            q.max_size = f.size
        if f.df and f.size > q.max_df_size:
            q.max_df_size = f.size
        return "ok", ""

    def _build(self, q: _Queue) -> tuple[bytearray, int] | str:
        """The datagram's bytes and ECN code point, or why it cannot be built."""
        first = q.first
        assert first is not None
        ecn = _ecn_result(q.ecn)
        if ecn is None:
            return "fragments mix ECN-capable and not ECN-capable code points (RFC 3168)"
        payload = bytearray(q.length)
        for f in q.frags:
            payload[f.offset : f.end] = f.data[: f.end - f.offset]
        if first.version == 4:
            total = len(first.header) + q.length
            if total > _MAX_DATAGRAM:
                return f"reassembled datagram of {total} bytes exceeds 65535"
            hdr = bytearray(first.header)
            hdr[1] |= ecn
            struct.pack_into("!H", hdr, 2, total)
            struct.pack_into("!H", hdr, 6, 0x4000 if self._datagram_df(q) else 0)
            hdr[10:12] = b"\0\0"
            struct.pack_into("!H", hdr, 10, internet_checksum(hdr))
            return hdr + payload, ecn
        plen = len(first.header) - 40 + q.length
        if plen > _MAX_DATAGRAM:
            return f"reassembled payload of {plen} bytes exceeds 65535"
        hdr = bytearray(first.header)
        hdr[first.nh_pos] = first.frag_nh
        struct.pack_into("!H", hdr, 4, plen)
        hdr[1] |= ecn << 4
        return hdr + payload, ecn

    def _datagram_df(self, q: _Queue) -> bool:
        return q.max_df_size == q.max_size


# --------------------------------------------------------------------------------------------------
# Linux


class LinuxDefrag(_Reassembler):
    """nf_defrag_ipv4 / nf_defrag_ipv6 in front of conntrack (see the module docstring)."""

    style = "linux"

    def __init__(self, settings: DefragSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or DefragSettings()
        self.mem = {4: 0, 6: 0}
        # ip_frag_too_far: per IPv4 source (the kernel's inet_peer), [fragments queued, live queues];
        # an entry goes with the source's last queue (a new queue's first fragment compares nothing).
        self.peers: dict[int, list[int]] = {}

    def _timeout_reason(self, q: _Queue) -> DropReason:
        return DropReason.REASM_TIMEOUT

    def _timeout_message(self, q: _Queue) -> str:
        t = self.settings.ipfrag_time if q.key[0] == 4 else self.settings.frag6_timeout
        name = "ipfrag_time" if q.key[0] == 4 else "nf_conntrack_frag6_timeout"
        return f"datagram not complete {t:g} s after its first fragment ({name})"

    def _forget(self, q: _Queue) -> None:
        self.mem[q.key[0]] -= q.mem
        peer = self.peers.get(q.key[1]) if q.rid >= 0 else None
        if peer is not None:
            peer[1] -= 1
            if not peer[1]:
                del self.peers[q.key[1]]

    def _too_far(self, q: _Queue, f: _Frag, iface: str, now: float) -> tuple[_Queue, list[Discard]]:
        """``ip_frag_too_far`` (net/ipv4/ip_fragment.c): more than ``ipfrag_max_dist`` fragments from
        the same source arrived since this queue last grew, so what it holds is probably stale (an
        identification reused after wrapping): ``ip_frag_reinit`` frees its fragments and starts it
        again, timer re-armed, and the arriving fragment goes into the fresh queue."""
        peer = self.peers[f.src]
        peer[0] += 1
        start, q.rid = q.rid, peer[0]
        gap = (peer[0] - start) & 0xFFFFFFFF
        limit = self.settings.ipfrag_max_dist
        if not q.frags or not limit or gap <= limit:
            return q, []
        msg = (
            f"{gap - 1} fragments from {addr_to_str(4, f.src)} since this datagram's last one, over "
            f"ipfrag_max_dist {self.settings.ipfrag_max_dist}: its queue is started again"
        )
        out = [_discard(DropReason.REASM_FAILED, msg, q.interface, g) for g in q.frags]
        self.failed += 1
        del self.queues[q.key]
        self._forget(q)
        fresh = self._new_queue(q.key, iface, now, self.settings.ipfrag_time)
        self.mem[4] += fresh.mem
        self.peers.setdefault(f.src, [peer[0], 0])[1] += 1
        fresh.rid = peer[0]
        return fresh, out

    def push(self, iface: str, buf, now: float) -> tuple[Datagram | None, list[Discard]] | None:
        """Take one packet: None if it is not a fragment; else (the datagram it completed or None,
        the fragments discarded)."""
        f = _parse(buf)
        if f is None:
            return None
        key = _key(f)
        q = self.queues.get(key)
        v = f.version
        if f.more and (f.end - f.offset) & 7:
            if v == 4:
                # ip_frag_queue: a non-last fragment's end is rounded down to a multiple of 8.
                f.end = f.offset + ((f.end - f.offset) & ~7)
            else:
                # nf_ct_frag6_queue kills the queue (RFC 8200 asks for a parameter problem).
                msg = "non-last fragment length not a multiple of 8"
                if q is None:
                    return None, [_discard(DropReason.REASM_FAILED, msg, iface, f)]
                return None, self._kill(q, DropReason.REASM_FAILED, msg, f)
        if q is None:
            limit = self.settings.ipfrag_high_thresh if v == 4 else self.settings.frag6_high_thresh
            if self.mem[v] > limit:
                name = "ipfrag_high_thresh" if v == 4 else "nf_conntrack_frag6_high_thresh"
                msg = f"fragments held use {self.mem[v]} bytes, over {name} {limit}"
                return None, [_discard(DropReason.REASM_MEMORY, msg, iface, f)]
            timeout = self.settings.ipfrag_time if v == 4 else self.settings.frag6_timeout
            q = self._new_queue(key, iface, now, timeout)
            self.mem[v] += q.mem
            if v == 4 and self.settings.ipfrag_max_dist:
                self.peers.setdefault(f.src, [0, 0])[1] += 1
                q.rid = 0
        stale: list[Discard] = []
        if q.rid >= 0:
            q, stale = self._too_far(q, f, iface, now)
        outcome, msg = self._queue_fragment(q, f)
        if outcome == "dup":
            return None, [*stale, _discard(DropReason.REASM_DUPLICATE, msg, iface, f)]
        if outcome == "overlap":
            return None, stale + self._kill(q, DropReason.REASM_OVERLAP, msg, f)
        if outcome == "fail":
            return None, stale + self._kill(q, DropReason.REASM_FAILED, msg, f)
        size = len(f.raw) + _SKB_OVERHEAD
        q.mem += size
        self.mem[v] += size
        if not q.complete():
            return None, stale
        built = self._build(q)
        if isinstance(built, str):
            return None, self._kill(q, DropReason.REASM_FAILED, built, None)
        data, _ecn = built
        del self.queues[key]
        self._forget(q)
        self.reassembled += 1
        pieces = [_piece(g) for g in sorted(q.frags, key=lambda g: g.offset)]
        first = q.first
        assert first is not None
        unfrag = len(first.header) if v == 6 else 0
        return (
            Datagram(iface, v, data, pieces, q.max_size, self._datagram_df(q), data[8] if v == 4 else data[7],
                     unfrag, self.style),
            stale,
        )  # fmt: skip


def _piece(f: _Frag) -> Piece:
    ttl = f.header[8] if f.version == 4 else f.header[7]
    return Piece(f.offset, f.end, f.more, f.header, ttl, f.ident)


# --------------------------------------------------------------------------------------------------
# ASA


class AsaFragmentDb(_Reassembler):
    """The ASA's fragment database with virtual reassembly (see the module docstring).

    ``settings_for(interface)`` gives the ``fragment`` settings of the interface a fragment arrived on.
    """

    style = "asa"

    def __init__(self, settings_for=None) -> None:
        super().__init__()
        self.settings_for = settings_for or (lambda iface: FragmentSettings())
        self.held: dict[str, int] = {}  # fragments waiting, per interface

    def _timeout_reason(self, q: _Queue) -> DropReason:
        return DropReason.FRAGMENT_TIMEOUT

    def _timeout_message(self, q: _Queue) -> str:
        t = self.settings_for(q.interface).timeout
        return f"fragment set not complete {t} s after its first fragment (fragment timeout {t})"

    def _forget(self, q: _Queue) -> None:
        self.held[q.interface] = self.held.get(q.interface, 0) - len(q.frags)

    def push(self, iface: str, buf, now: float) -> tuple[Datagram | None, list[Discard]] | None:
        f = _parse(buf)
        if f is None:
            return None
        cfg = self.settings_for(iface)
        key = (iface, *_key(f))
        q = self.queues.get(key)
        if self.held.get(iface, 0) >= cfg.size:
            # 209003: the database is full; the arriving fragment is dropped.
            msg = f"fragment database of {iface} holds {cfg.size} fragments (fragment size {cfg.size})"
            detail = {"limit": cfg.size, "id": f.ident, "proto_name": _PROTO_NAMES.get(f.proto, str(f.proto))}
            return None, [_discard(DropReason.FRAGMENT_DB_FULL, msg, iface, f, detail)]
        if f.more and (f.end - f.offset) & 7:
            msg = "non-last fragment length not a multiple of 8"
            if q is None:
                return None, [_discard(DropReason.INVALID_FRAGMENT, msg, iface, f)]
            return None, self._kill(q, DropReason.INVALID_FRAGMENT, msg, f)
        if q is None:
            q = self._new_queue(key, iface, now, float(cfg.timeout))
        if len(q.frags) + 1 > cfg.chain:
            msg = f"datagram in more than {cfg.chain} fragments (fragment chain {cfg.chain})"
            out = self._kill(q, DropReason.FRAGMENT_LIMIT, msg, f)
            out[0].detail["elements"] = cfg.chain
            return None, out
        if f.offset == 0 and len(f.data) < _L4_MIN.get(f.proto, 0):
            msg = f"first fragment holds {len(f.data)} bytes, less than the {_PROTO_NAMES[f.proto]} header"
            return None, self._kill(q, DropReason.INVALID_FRAGMENT, msg, f)
        if f.end > _MAX_DATAGRAM - len(f.header) + (40 if f.version == 6 else 0):
            size = f.end + len(f.header)
            msg = f"fragment ends at {size} bytes, beyond 65535"
            out = self._kill(q, DropReason.INVALID_FRAGMENT, msg, f)
            out[0].detail.update(size=size, max=_MAX_DATAGRAM)
            return None, out
        outcome, msg = self._queue_fragment(q, f)
        if outcome == "dup" or outcome == "overlap":
            # Teardrop: the ASA counts overlapping fragments under security-failed and drops the set.
            return None, self._kill(q, DropReason.FRAGMENT_OVERLAP, msg, f)
        if outcome == "fail":
            return None, self._kill(q, DropReason.INVALID_FRAGMENT, msg, f)
        self.held[iface] = self.held.get(iface, 0) + 1
        if not q.complete():
            return None, []
        built = self._build(q)
        if isinstance(built, str):
            return None, self._kill(q, DropReason.INVALID_FRAGMENT, built, None)
        data, _ecn = built
        del self.queues[key]
        self._forget(q)
        self.reassembled += 1
        first = q.first
        assert first is not None
        v = f.version
        return (
            Datagram(iface, v, data, [_piece(g) for g in q.frags], q.max_size, self._datagram_df(q),
                     first.header[8] if v == 4 else first.header[7],
                     len(first.header) if v == 6 else 0, self.style),
            [],
        )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Output


def fragment_out(packet, dg: Datagram, mtu: int) -> tuple[list[bytearray], int | None]:
    """Cut ``packet`` (the reassembled datagram after forwarding changed it: addresses, ports, TTL) into
    the fragments that leave through an interface of ``mtu``.

    Returns (fragments, None), or ([], mtu) when the box answers fragmentation-needed / packet too big
    instead (the caller sends the ICMP error about the first fragment).
    """
    if dg.version == 4:
        if dg.style == "asa":
            return _asa_v4(packet, dg, mtu), None
        return _linux_v4(packet, dg, mtu)
    if dg.frag_max_size > mtu:
        return [], mtu
    if dg.style == "asa":
        return _asa_v6(packet, dg), None
    return _linux_v6(packet, dg, mtu), None


def _v4_header(template, total: int, frag_field: int) -> bytearray:
    h = bytearray(template)
    struct.pack_into("!H", h, 2, total)
    struct.pack_into("!H", h, 6, frag_field)
    h[10:12] = b"\0\0"
    struct.pack_into("!H", h, 10, internet_checksum(h))
    return h


def _options_fragment(header) -> bytearray:
    """``ip_options_fragment``: options without the copied flag become NOPs in later fragments."""
    h = bytearray(header)
    i, end = 20, len(h)
    while i < end:
        t = h[i]
        if t == 0:
            break
        if t == 1:
            i += 1
            continue
        ln = h[i + 1] if i + 1 < end else 0
        if ln < 2 or i + ln > end:
            break
        if not t & 0x80:
            h[i : i + ln] = b"\x01" * ln
        i += ln
    return h


def _linux_v4(packet, dg: Datagram, mtu: int) -> tuple[list[bytearray], int | None]:
    hl = (packet[0] & 15) << 2
    total = struct.unpack_from("!H", packet, 2)[0]
    data = memoryview(packet)[hl:total]
    df = packet[6] & 0x40 != 0
    if df and dg.frag_max_size > mtu:
        return [], mtu  # ip_fragment: DF and a received fragment larger than the route MTU
    if dg.frag_max_size and dg.frag_max_size < mtu:
        mtu = dg.frag_max_size
    room = mtu - hl
    head = bytes(packet[:hl])
    later = _options_fragment(head)
    pieces = dg.pieces
    fits = (
        pieces
        and pieces[0].offset == 0
        and pieces[0].end <= room
        and not pieces[0].end & 7
        and all(p.end - p.offset <= room and (not (p.end - p.offset) & 7 or p is pieces[-1]) for p in pieces)
        and pieces[-1].end == len(data)
    )
    out: list[bytearray] = []
    if fits:
        # ip_do_fragment's fast path: the received geometry, DF cleared (ip_fraglist_init).
        for i, p in enumerate(pieces):
            more = i + 1 < len(pieces)
            tmpl = head if i == 0 else later
            out.append(_v4_header(tmpl, hl + p.end - p.offset, (p.offset >> 3) | (0x2000 if more else 0))
                       + data[p.offset : p.end])  # fmt: skip
        return out, None
    # The slow path: MTU-sized pieces, DF kept when the datagram had it (IPSKB_FRAG_PMTU).
    step = room & ~7
    off, left = 0, len(data)
    while left > 0:
        ln = min(left, room)
        if ln < left:
            ln = step
        more = off + ln < len(data)
        tmpl = head if off == 0 else later
        field_ = (off >> 3) | (0x2000 if more else 0) | (0x4000 if df else 0)
        out.append(_v4_header(tmpl, hl + ln, field_) + data[off : off + ln])
        off += ln
        left -= ln
    return out, None


def _frag_header(nh: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack("!BBHI", nh, 0, offset | (1 if more else 0), ident)


def _v6_pieces(packet, dg: Datagram, cuts: list[tuple[int, int]], ident: int) -> list[bytearray]:
    unfrag = dg.unfrag_len
    hdr = bytearray(packet[:unfrag])
    nh_pos = _last_nh_pos(hdr)
    payload_nh = hdr[nh_pos]
    hdr[nh_pos] = 44
    end = 40 + struct.unpack_from("!H", packet, 4)[0]
    data = memoryview(packet)[unfrag:end]
    out = []
    for i, (a, b) in enumerate(cuts):
        h = bytearray(hdr)
        struct.pack_into("!H", h, 4, unfrag - 40 + 8 + b - a)
        out.append(h + _frag_header(payload_nh, a, i + 1 < len(cuts), ident) + data[a:b])
    return out


def _last_nh_pos(hdr) -> int:
    """Offset of the next-header byte at the end of the IPv6 header chain in ``hdr``."""
    pos, off, nh = 6, 40, hdr[6]
    while off < len(hdr) and nh in _IPV6_EXT_BEFORE_FRAG:
        pos, nh, off = off, hdr[off], off + ((hdr[off + 1] + 1) << 3)
    return pos


def _linux_v6(packet, dg: Datagram, mtu: int) -> list[bytearray]:
    mtu = max(dg.frag_max_size or mtu, _IPV6_MIN_MTU) if dg.frag_max_size else mtu
    room = mtu - dg.unfrag_len - 8
    size = 40 + struct.unpack_from("!H", packet, 4)[0] - dg.unfrag_len
    pieces = dg.pieces
    ident = pieces[0].ident if pieces else 0
    if pieces and all(p.end - p.offset <= room for p in pieces) and pieces[-1].end == size:
        cuts = [(p.offset, p.end) for p in pieces]
    else:
        step = room & ~7
        cuts = [(a, min(a + step, size)) for a in range(0, size, step)]
    return _v6_pieces(packet, dg, cuts, ident)


def _asa_v4(packet, dg: Datagram, mtu: int) -> list[bytearray]:
    """The ASA forwards the fragments it collected, as they came, with the datagram's translation and
    TTL change applied to each. (A collected fragment larger than the egress MTU is not cut again:
    not modelled.)"""
    hl = (packet[0] & 15) << 2
    total = struct.unpack_from("!H", packet, 2)[0]
    data = memoryview(packet)[hl:total]
    ttl_change = packet[8] - dg.ttl
    out = []
    for p in dg.pieces:
        h = bytearray(p.header)
        h[12:20] = packet[12:20]
        h[8] = max(0, min(255, p.ttl + ttl_change))
        frag = struct.unpack_from("!H", h, 6)[0]
        out.append(_v4_header(h, len(h) + p.end - p.offset, frag) + data[p.offset : p.end])
    return out


def _asa_v6(packet, dg: Datagram) -> list[bytearray]:
    out = []
    hop_change = packet[7] - dg.ttl
    for piece in dg.pieces:
        frag = _v6_pieces(packet, dg, [(piece.offset, piece.end)], piece.ident)[0]
        frag[7] = max(0, min(255, piece.ttl + hop_change))
        if piece.more:
            struct.pack_into("!H", frag, dg.unfrag_len + 2, piece.offset | 1)
        out.append(frag)
    return out
