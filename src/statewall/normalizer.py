"""The ASA TCP normalizer: the ``tcp-map`` checks of reference A.1 applied to a connection's segments.

Owns every per-segment decision a tcp-map makes and the per-connection state those decisions need
(``NormState``): the MSS each side advertised, the lowest TTL seen, each side's right window edge,
the next in-order sequence number and the out-of-order queue, the bytes of unacknowledged data for
``check-retransmission``. The engine calls, for each segment of a TCP connection:

``check(state, direction, pkt, trk, ack_offset, now, gso_size)``  before the tracker: drops (a
    ``Refusal``), clears (the packet is rewritten in place, checksums kept right), or ``HOLD`` (the
    segment waits in the out-of-order queue); it decides only and writes nothing but a drop's counter;
``window_varied(state, direction, pkt, trk, ack_offset)``  after the tracker accepted the segment:
    ``window-variation drop``'s refusal, which ends the connection;
``learn(state, direction, pkt, trk, ack_offset, done, seq, plen, data)``  once the engine forwards the
    segment: what it teaches (TTL floor, MSS, window edge, next sequence number, data kept for
    ``check-retransmission``) and the counters of the rewrites ``check`` made. A dropped segment
    teaches nothing;
``allows_invalid(state, why)``  after the tracker said INVALID: ``seq-past-window allow`` and
    ``invalid-ack allow`` let those segments through;
``release(state, direction)``  after a segment went out: queued segments now in order;
``expire(state, now)``  from the engine's timers: queued segments past ``queue-limit ... timeout``.

Defaults are the ASA's (``TcpMap`` in ``statewall.policy``). ``exceed-mss`` has none of its own: it is
``drop`` for configurations declaring a release before 9.0 (``ASA Version 8.2(1)``, ``PIX Version
7.2(1)``) and ``allow`` otherwise, because Cisco changed it between releases (A.1). Each drop has its
own ``DropReason`` and a counter named as ``show service-policy`` prints it (``COUNTERS``).

Design notes (why, where the ASA is not explicit):

* ``ttl-evasion-protection`` rewrites, it does not drop: a segment may not carry a higher TTL than the
  lowest its direction has shown, so a low-TTL decoy cannot be followed by a different "retransmission"
  that reaches further.
* ``window-variation drop`` refuses a segment whose advertised right edge (ack + scaled window) moves
  left of an edge the same side announced before, and ends the connection.
* The out-of-order queue holds data segments beyond the next expected sequence number; a queue of 0
  passes them untouched, except for inspected or ``check-retransmission`` flows, which get the ASA's
  implicit queue of 3. Only a segment inside the tracker's windows is queued (a forgery beyond them
  is dropped by the tracker and holds no slot); a second copy of a queued one is tcp-dup-in-queue.
* ``invalid-ack`` is the tracker's "ACK is over" plus the ASA's stricter handshake rule: the ACK that
  completes the handshake must acknowledge exactly the SYN/ACK.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import NamedTuple

from . import mss as mss_mod
from .events import DropReason
from .interning import Interner
from .packet import decode
from .policy import Origin, TcpMap
from .tcptrack import InvalidReason

# TCP flags
_FIN, _SYN, _RST, _ACK, _URG = 0x01, 0x02, 0x04, 0x10, 0x20
_M = 0xFFFFFFFF

# Action codes (compiled from the tcp-map's words)
ALLOW, CLEAR, DROP = 0, 1, 2
_ACTION = {"allow": ALLOW, "clear": CLEAR, "drop": DROP}

# The counters ``show service-policy`` prints for a tcp-map, in its order.
COUNTERS = (
    ("retransmission_drops", "Retransmission drops"),
    ("checksum_drops", "TCP checksum drops"),
    ("exceed_mss_drops", "Exceeded MSS drops"),
    ("syn_data_drops", "SYN with data drops"),
    ("invalid_ack_drops", "Invalid ACK drops"),
    ("synack_data_drops", "SYN-ACK with data drops"),
    ("ooo_packets", "Out-of-order (OoO) packets"),
    ("ooo_no_buffer_drops", "OoO no buffer drops"),
    ("ooo_timeout_drops", "OoO buffer timeout drops"),
    ("seq_past_window_drops", "SEQ past window drops"),
    ("reserved_bit_cleared", "Reserved bit cleared"),
    ("reserved_bit_drops", "Reserved bit drops"),
    ("ttl_modified", "IP TTL modified"),
    ("urgent_cleared", "Urgent flag cleared"),
    ("window_varied_resets", "Window varied resets"),
)
OPTION_COUNTERS = (
    ("sack_cleared", "Selective ACK cleared"),
    ("timestamp_cleared", "Timestamp cleared"),
    ("wscale_cleared", "Window scale cleared"),
    ("other_options_cleared", "Other options cleared"),
    ("other_options_drops", "Other options drops"),
)

IMPLICIT_QUEUE = 3  # the ASA's queue for inspected / check-retransmission flows with queue-limit 0


def before(a: int, b: int) -> bool:
    return ((a - b) & _M) > 0x7FFFFFFF


def exceed_mss_default(version: str | None, asa: bool = True) -> str:
    """``drop`` for a declared release before 9.0 (ASA 7.x/8.x, PIX 7.x), else ``allow`` (A.1)."""
    if not asa or not version:
        return "allow"
    try:
        major = int(version.split(".")[0])
    except ValueError:
        return "allow"
    return "drop" if major < 9 else "allow"


class Refusal(NamedTuple):
    """Why the normalizer refuses a segment: what the engine needs for its ``Drop`` event."""

    reason: DropReason
    message: str
    origin: Origin | None = None
    hint: str | None = None
    detail: dict | None = None
    teardown: str | None = None  # a teardown reason when the refusal ends the connection


HOLD = Refusal(DropReason.TCP_BUFFER_FULL, "held in the out-of-order queue")  # sentinel, never a drop


class Profile:
    """A ``TcpMap`` compiled for the per-segment path (actions as small ints, an option table)."""

    __slots__ = (
        "tm",
        "exceed_mss",
        "exceed_mss_origin",
        "version",
        "invalid_ack",
        "seq_past_window",
        "reserved",
        "syn_data",
        "synack_data",
        "urgent_clear",
        "window_drop",
        "checksum",
        "retrans",
        "ttl",
        "queue",
        "queue_timeout",
        "options",
        "rewrites_options",
        "keeps_timestamps",
    )

    def __init__(self, tm: TcpMap, version: str | None, *, asa: bool = True, inspected: bool = False) -> None:
        self.tm = tm
        self.version = version
        self.exceed_mss = _ACTION[tm.exceed_mss or exceed_mss_default(version, asa)]
        self.exceed_mss_origin = tm.origins.get("exceed_mss")
        self.invalid_ack = _ACTION[tm.invalid_ack]
        self.seq_past_window = _ACTION[tm.seq_past_window]
        self.reserved = _ACTION[tm.reserved_bits]
        self.syn_data = _ACTION[tm.syn_data]
        self.synack_data = _ACTION[tm.synack_data]
        self.urgent_clear = tm.urgent_flag == "clear"
        self.window_drop = tm.window_variation == "drop"
        self.checksum = tm.checksum_verification
        self.retrans = tm.check_retransmission
        self.ttl = tm.ttl_evasion_protection
        queue = tm.queue_limit
        if queue == 0 and (inspected or tm.check_retransmission):
            queue = IMPLICIT_QUEUE
        self.queue = queue
        self.queue_timeout = tm.queue_timeout
        self.options = table = _option_table(
            tuple(tm.option_ranges), tm.md5, tm.window_scale, tm.selective_ack, tm.timestamp
        )
        self.rewrites_options = any(a != ALLOW for a in table)
        self.keeps_timestamps = table[8] == ALLOW


@functools.lru_cache(maxsize=256)
def _option_table(
    ranges: tuple, md5: str | None, window_scale: str, selective_ack: str, timestamp: str
) -> tuple:
    """Action per option kind, one shared tuple per distinct option configuration (256 entries: ~2 KB
    that every connection would otherwise carry). EOL/NOP/MSS are never touched; the known options
    follow their knobs; 6-7 and 9-255 follow the ranges (default clear), option 19 the md5 knob when set.
    """
    table = [CLEAR] * 256
    for kind in (0, 1, 2):
        table[kind] = ALLOW
    for low, high, action in ranges:
        for kind in range(low, high + 1):
            if kind != 8:
                table[kind] = _ACTION[action]
    if md5 is not None:
        table[19] = _ACTION[md5]
    table[3] = _ACTION[window_scale]
    table[4] = table[5] = _ACTION[selective_ack]
    table[8] = _ACTION[timestamp]
    return tuple(table)


# Profiles shared by the connections whose tcp-map compiles the same (``NormState``): a connection
# keeps one reference instead of its own copy. Keyed by the tcp-map's identity and every compiled
# value, so a changed map compiles anew; bounded, since each entry keeps its tcp-map alive.
_PROFILES: dict[tuple, Profile] = {}
_PROFILES_MAX = 1024


def _shared(p: Profile) -> Profile:
    # Per new connection (NormState): the answer for this very profile object, when it was asked
    # before, without building the key; the entry holds ``p``, so its id is not another's meanwhile.
    seen = _BY_ID.get(id(p))
    if seen is not None and seen[0] is p:
        return seen[1]
    got = _shared_by_value(p)
    if len(_BY_ID) >= _PROFILES_MAX:
        _BY_ID.clear()
    _BY_ID[id(p)] = (p, got)
    return got


_BY_ID: dict[int, tuple[Profile, Profile]] = {}


def _shared_by_value(p: Profile) -> Profile:
    key = (
        id(p.tm),
        id(p.exceed_mss_origin),
        id(p.options),
        p.version,
        p.exceed_mss,
        p.invalid_ack,
        p.seq_past_window,
        p.reserved,
        p.syn_data,
        p.synack_data,
        p.urgent_clear,
        p.window_drop,
        p.checksum,
        p.retrans,
        p.ttl,
        p.queue,
        p.queue_timeout,
    )
    got = _PROFILES.get(key)
    if got is not None and got.tm is p.tm and got.exceed_mss_origin is p.exceed_mss_origin:
        return got
    if len(_PROFILES) >= _PROFILES_MAX:
        _PROFILES.clear()
    _PROFILES[key] = p
    return p


class Held(NamedTuple):
    seq: int
    pkt: object
    arrived: float
    gso_size: int


_NO_EDGES = (None, None)
_NONE_PAIR = (None, None)
_ZERO_PAIR = (0, 0)
_NOTHING_HELD: tuple[tuple, tuple] = ((), ())

# Per-direction pairs that change a few times in a connection's life (the MSS each side accepts, the
# lowest TTL each side sent) are immutable tuples shared by every connection with the same values: a
# write replaces the pair (``pair_with``), which costs nothing per packet since they change on SYNs and
# on a lower TTL only, and saves each connection its own lists (memory, docs/performance.md).
shared = Interner(1 << 17)  # TTL pairs are at most 65 536: the one tuple shared for these values


def pair_with(pair, d: int, value) -> tuple:
    """``pair`` with item ``d`` replaced, shared: how ``NormState.mss_limit`` and ``ttl`` are written."""
    return shared((value, pair[1]) if d == 0 else (pair[0], value))


class _Rare:
    """What few connections' normalizer state needs: the edges of a window-variation drop map and the
    out-of-order queue's timer, with the connection (``NormState._rare``)."""

    __slots__ = ("conn", "queued_at", "edge")

    def __init__(self, conn, queued_at: float, edge) -> None:
        self.conn = conn
        self.queued_at = queued_at
        self.edge = edge


class NormState:
    """One connection's normalizer state. ``counters`` are the applying class's (show service-policy).

    ``mss_limit[d]`` is the largest segment side ``d`` is expected to accept (None until its SYN);
    ``ttl[d]`` the lowest TTL seen from ``d``; ``edge[d]`` the right window edge ``d`` advertised;
    ``nxt[d]`` the next in-order sequence number from ``d``; ``held[d]`` its queued segments.

    Memory (a million idle connections, docs/performance.md): ``mss_limit`` and ``ttl`` are shared
    immutable pairs, replaced on a write (``norm.ttl = pair_with(norm.ttl, d, value)``; a list
    assigned whole is read the same); ``edge`` and ``held`` are shared empty pairs until the connection
    needs its own; ``nxt``, written by every in-order data segment, is the connection's own list. The
    MSS minimum and both advertised MSS values share one tuple (``mss_minimum``, ``mss_adv``). The
    connection (``conn``), the queue's timer (``queued_at``) and the edges share one slot (``_rare``):
    it holds the connection itself until a window-variation map or a queued segment needs a
    ``_Rare`` with all three.
    """

    __slots__ = (
        "profile",
        "counters",
        "mss_limit",
        "_mss",
        "ttl",
        "nxt",
        "held",
        "sent",
        "_rare",
        "inspected",
    )

    def __init__(
        self, profile: Profile, counters: Counter, mss_minimum: int = 0, conn: object = None
    ) -> None:
        self.profile = _shared(profile)
        self.counters = counters
        self.mss_limit: tuple[int | None, int | None] | list = _NONE_PAIR
        # (sysopt connection tcpmss minimum, the MSS advertised by ORIGINAL, by REPLY): (value, present)
        self._mss: tuple = shared((mss_minimum, None, None))
        self.ttl: tuple[int, int] | list = _ZERO_PAIR
        # Only a window-variation drop map records edges (in a _Rare): the rest share one empty pair.
        self._rare: object = _Rare(conn, 0.0, [None, None]) if profile.window_drop else conn
        self.nxt: list[int | None] = [None, None]
        # Nothing queued shares one empty pair too; _hold gives the connection its own queues.
        self.held: tuple[list[Held], list[Held]] | tuple[tuple, tuple] = _NOTHING_HELD
        self.sent: tuple[dict[int, bytes], dict[int, bytes]] | None = ({}, {}) if profile.retrans else None
        # (engine, class use) of the inspection applied to this connection, for its packet counter.
        self.inspected: tuple[str, object] | None = None

    @property
    def conn(self):
        """The connection (the engine's timers find it from here)."""
        r = self._rare
        return r.conn if type(r) is _Rare else r

    @conn.setter
    def conn(self, conn) -> None:
        r = self._rare
        if type(r) is _Rare:
            r.conn = conn
        else:
            self._rare = conn

    @property
    def queued_at(self) -> float:
        """Timer bookkeeping for the out-of-order queue (engine): when it is queued, 0.0 when not."""
        r = self._rare
        return r.queued_at if type(r) is _Rare else 0.0

    @queued_at.setter
    def queued_at(self, when: float) -> None:
        r = self._rare
        if type(r) is _Rare:
            r.queued_at = when
        elif when != 0.0:
            self._rare = _Rare(r, when, _NO_EDGES)

    @property
    def edge(self) -> list | tuple:
        r = self._rare
        return r.edge if type(r) is _Rare else _NO_EDGES

    @edge.setter
    def edge(self, edges: list | tuple) -> None:
        r = self._rare
        if type(r) is _Rare:
            r.edge = edges
        else:
            self._rare = _Rare(r, 0.0, edges)

    @property
    def mss_minimum(self) -> int:
        return self._mss[0]

    @property
    def mss_adv(self) -> tuple:
        """``mss_adv[d]``: ``(value, present)`` of the MSS option in ``d``'s SYN (None until then)."""
        return self._mss[1:]

    def deadline(self) -> float:
        """When the oldest queued segment times out (inf when nothing is queued)."""
        t = min((h.arrived for q in self.held for h in q), default=None)
        return float("inf") if t is None else t + self.profile.queue_timeout


# --------------------------------------------------------------------------------------------------
# The per-segment checks


# Rewrites ``check`` made to a segment, counted by ``learn`` once the segment is forwarded: one 5-bit
# count per counter (a segment has at most 20 options), added as ``done += DID_...``.
DID_RESERVED, DID_URGENT, DID_TTL = 1, 1 << 5, 1 << 10
DID_SACK, DID_TIMESTAMP, DID_WSCALE, DID_OTHER = 1 << 15, 1 << 20, 1 << 25, 1 << 30


def check(st: NormState, d: int, pkt, trk, ack_offset: int, now: float, gso_size: int = 0) -> Refusal | int:
    """Normalize one segment from direction ``d`` before it is tracked: a ``Refusal`` (or ``HOLD``), or
    the rewrites made to it (``DID_*`` bits, 0 for none) to go on.

    It decides from what the connection's earlier forwarded segments taught and writes nothing but the
    drop's own counter: the segment teaches the state (``learn``) only once the engine forwards it, so a
    segment that the tracker, the router or an inspector drops afterwards changes nothing (a forged
    out-of-window segment cannot lower the TTL floor, move a window edge or replace the remembered data).
    """
    prof = st.profile
    flags = pkt.flags
    plen = pkt.payload_len
    c = st.counters
    done = 0

    if prof.checksum:
        bad = pkt.verify_checksums()
        if bad is not None:
            c["checksum_drops"] += 1
            return Refusal(
                bad,
                "TCP checksum verification failed",
                prof.tm.origins.get("checksum_verification"),
                "no checksum-verification in the tcp-map",
            )

    if pkt.reserved:
        if prof.reserved == DROP:
            c["reserved_bit_drops"] += 1
            return Refusal(
                DropReason.TCP_RESERVED_SET,
                f"reserved bits 0x{pkt.reserved:x} set",
                prof.tm.origins.get("reserved_bits"),
                "reserved-bits allow (or clear) in the tcp-map",
            )
        if prof.reserved == CLEAR:
            _clear_reserved(pkt)
            done += DID_RESERVED

    if flags & _SYN:
        if plen and not flags & _ACK and prof.syn_data == DROP:
            c["syn_data_drops"] += 1
            return Refusal(
                DropReason.TCP_SYN_DATA,
                f"SYN carries {plen} bytes of data",
                prof.tm.origins.get("syn_data"),
                "syn-data allow in the tcp-map",
            )
        if plen and flags & _ACK and prof.synack_data == DROP:
            c["synack_data_drops"] += 1
            return Refusal(
                DropReason.TCP_SYNACK_DATA,
                f"SYN-ACK carries {plen} bytes of data",
                prof.tm.origins.get("synack_data"),
                "synack-data allow in a tcp-map applied to this flow",
            )
        if trk is not None and (trk.state == 1 or trk.state == 2):  # SYN_SENT, SYN_RECV: embryonic
            r = _other_isn(st, d, pkt, trk, flags, plen)
            if r is not None:
                return r
            if d == 1 and flags & _ACK and trk.state == 1:  # the responder's first SYN-ACK
                r = _synack_ack(st, pkt, trk, ack_offset)
                if r is not None:
                    return r

    # NOP NOP timestamp, nearly every established segment's layout, needs no option walk when the
    # tcp-map allows timestamps (the default): nothing in it would be cleared or refused.
    if pkt.doff > 20 and prof.rewrites_options and not (prof.keeps_timestamps and pkt.timestamp_only()):
        r = _options(st, pkt)
        if type(r) is not int:
            return r
        done += r

    if flags & _URG and prof.urgent_clear:
        pkt.set_flags(flags & ~_URG)
        pkt.set_urgptr(0)
        flags = pkt.flags
        done += DID_URGENT

    if prof.ttl:
        # Never above the lowest TTL this direction's forwarded segments carried (``learn`` keeps it).
        low = st.ttl[d]
        if low and pkt.ttl > low:
            pkt.set_ttl(low)
            done += DID_TTL

    if flags & _SYN:
        return done

    if plen and prof.exceed_mss == DROP:
        limit = st.mss_limit[1 - d]
        size = gso_size if gso_size and gso_size < plen else plen
        if limit is not None and size > limit:
            c["exceed_mss_drops"] += 1
            return _exceed_mss(st, d, limit, size)

    if trk is not None and trk.state == 2 and d == 0:  # SYN_RECV: the handshake's last ACK
        _share_ends(st.nxt, trk.seen)
        if prof.invalid_ack == DROP and flags & (_ACK | _RST | _FIN) == _ACK:
            r = _handshake_ack(st, pkt, trk, ack_offset)
            if r is not None:
                return r

    nxt = st.nxt[d]
    if nxt is None:
        return done
    seq = pkt.seq
    if plen or flags & _FIN:
        if ((nxt - seq) & _M) > 0x7FFFFFFF and not flags & _RST:  # before(nxt, seq)
            # A gap before this segment. Only a segment the tracker would take may wait: one outside
            # the window goes on to be dropped there (tcp-seq-past-win, tcp-invalid-ack), so a forged
            # segment never holds one of the queue's slots or stands in for the real one.
            if prof.queue and (trk is None or trk.fits_window(d, pkt, ack_offset)):
                return _hold(st, d, pkt, now, gso_size)
        elif st.sent is not None and plen and before(seq, nxt):
            r = _retransmission(st, d, pkt, seq)
            if r is not None:
                return r
    return done


def _other_isn(st: NormState, d: int, pkt, trk, flags: int, plen: int) -> Refusal | None:
    """``tcp-seq-syn-diff`` ("TCP SEQ in SYN/SYNACK invalid", logged as 419002), not configurable: on an
    embryonic connection, a second SYN from the initiator, or a second SYN-ACK from the responder, whose
    initial sequence number is not the first one's. The ASA keeps the ISN with the embryonic connection
    and drops a SYN for the same four-tuple with another (ThousandEyes' "Cisco ASA breaks Path
    Visualization": traceroute SYNs, one ISN more each hop, dropped as tcp-seq-syn-diff with 419002; the
    keyword's words, from a real ASA's ``capture asp-drop`` list, name the SYN-ACK too). A retransmission
    (the same sequence space) passes on. The first one's end is the tracker's: a side sends nothing else
    before the handshake completes (the initiator's data fails it); once the responder's data went
    through (not modelled, docs/asa.md) its first SYN-ACK's is not known and a second is not compared."""
    if d == 0:
        if flags & _ACK:
            return None  # a SYN-ACK from the initiator: the tracker's tcp-3whs-failed
        what = "SYN"
    else:
        if not flags & _ACK or trk.state != 2 or st.conn.data_seen[1]:
            return None  # a SYN from the responder (simultaneous open), or before its first SYN-ACK
        what = "SYN-ACK"
    end = trk.seen[d].td_end
    seq = pkt.seq
    if (seq + 1 + plen) & _M == end:
        return None
    return Refusal(
        DropReason.TCP_SEQ_SYN_DIFF,
        f"a second {what} with another initial sequence number ({seq}; the first {what}'s ended at {end})",
        detail={"seq": seq},
    )


def _synack_ack(st: NormState, pkt, trk, ack_offset: int) -> Refusal | None:
    """``tcp-ack-syn-diff`` ("TCP ACK in SYNACK invalid": the keyword and words of a real ASA's
    ``capture asp-drop`` list and ``show asp drop``), not configurable: a SYN-ACK must acknowledge the
    SYN, ISS < SEG.ACK =< SND.NXT (RFC 9293, 3.10.7.3, SYN-SENT). The initiator's SND.NXT is the
    tracker's end of its SYN; without data on the SYN only that number is acceptable, with data any
    number from its ISN on (the tracker keeps no ISN: the SYN's data is at most 64 KB). Linux's tracker
    takes an ACK below it (tcp_in_window's lower bound is a window back); an ASA counts it here."""
    nxt = trk.seen[0].td_end
    ack = (pkt.ack - ack_offset) & _M
    if ack == nxt or (st.conn.data_seen[0] and ((nxt - ack) & _M) <= 0xFFFF):
        return None
    return Refusal(
        DropReason.TCP_ACK_SYN_DIFF,
        f"SYN-ACK acknowledges {ack}, where the SYN's next sequence number is {nxt}",
        detail={"ack": ack},
    )


def window_varied(st: NormState, d: int, pkt, trk, ack_offset: int) -> Refusal | None:
    """``window-variation drop``, after the tracker accepted the segment: a refusal (that ends the
    connection) when its right edge moved left of one the same side announced before. Asked only of
    segments the tracker found in window, so a forged ACK far outside it cannot end the connection;
    the tracker may have learned from the segment, which does not matter as the connection ends."""
    if not (st.profile.window_drop and pkt.flags & _ACK and trk is not None):
        return None
    edge = st._rare.edge[d]  # a window-variation drop map's state always has its _Rare
    if edge is None:
        return None
    right = (pkt.ack - ack_offset + (pkt.window << trk.seen[d].td_scale)) & _M
    if not before(right, edge):
        return None
    st.counters["window_varied_resets"] += 1
    return Refusal(
        DropReason.TCP_WINDOW_VARIATION,
        f"window shrank: right edge {right} is left of {edge}",
        st.profile.tm.origins.get("window_variation"),
        "window-variation allow in the tcp-map",
        teardown="TCP unexpected window size variation",
    )


def learn(
    st: NormState, d: int, pkt, trk, ack_offset: int, done: int, seq: int, plen: int, data: bytes | None
) -> None:
    """What a segment ``check`` passed teaches the connection's state, once the engine forwards it
    (before its TTL, NAT and sequence rewrites; ``seq``/``plen``/``data``: its sequence number and
    payload as ``check`` saw them, before an inspector rewrote them): the rewrites' counters, the TTL
    floor, each side's MSS, the right window edge, the next sequence number and the data kept for
    ``check-retransmission``. The compiled fast path commits its fields only for a packet it forwards."""
    prof = st.profile
    flags = pkt.flags
    if done:
        _count(st.counters, done)
    if prof.ttl:
        low = st.ttl[d]
        if low == 0 or pkt.ttl < low:
            st.ttl = pair_with(st.ttl, d, pkt.ttl)
    if flags & _SYN:
        _record_mss(st, d, pkt)
        st.nxt[d] = (seq + 1 + plen) & _M
        return
    if prof.window_drop and flags & _ACK and trk is not None:
        right = (pkt.ack - ack_offset + (pkt.window << trk.seen[d].td_scale)) & _M
        edges = st._rare.edge
        edge = edges[d]
        if edge is None or before(edge, right):
            edges[d] = right
    nxt = st.nxt[d]
    end = (seq + plen + (flags & _FIN)) & _M
    if nxt is None:
        st.nxt[d] = end
        return
    sent = st.sent
    if plen or flags & _FIN:
        if sent is not None and plen:
            sent[d][seq] = data if data is not None else pkt.payload()
        if ((nxt - end) & _M) > 0x7FFFFFFF:  # before(nxt, end)
            st.nxt[d] = end
    if sent is not None and flags & _ACK:
        _forget_acked(sent[1 - d], (pkt.ack - ack_offset) & _M)


_DID_COUNTERS = (
    (DID_RESERVED, "reserved_bit_cleared"),
    (DID_URGENT, "urgent_cleared"),
    (DID_TTL, "ttl_modified"),
    (DID_SACK, "sack_cleared"),
    (DID_TIMESTAMP, "timestamp_cleared"),
    (DID_WSCALE, "wscale_cleared"),
    (DID_OTHER, "other_options_cleared"),
)


def _count(c: Counter, done: int) -> None:
    for unit, name in _DID_COUNTERS:
        n = (done // unit) & 31
        if n:
            c[name] += n


def allows_invalid(st: NormState, why) -> bool:
    """After the tracker said INVALID: True when the tcp-map lets this kind of segment through."""
    prof = st.profile
    kind = getattr(why, "kind", None)
    if kind is InvalidReason.SEQ_OVER:
        if prof.seq_past_window == ALLOW:
            return True
        st.counters["seq_past_window_drops"] += 1
    elif kind is InvalidReason.ACK_OVER:
        if prof.invalid_ack == ALLOW:
            return True
        st.counters["invalid_ack_drops"] += 1
    return False


def invalid_hint(why) -> tuple[str | None, str | None]:
    """(tcp-map field, hint) for a tracker INVALID reason the normalizer could allow."""
    kind = getattr(why, "kind", None)
    if kind is InvalidReason.SEQ_OVER:
        return "seq_past_window", "seq-past-window allow in a tcp-map applied to this flow"
    if kind is InvalidReason.ACK_OVER:
        return "invalid_ack", "invalid-ack allow in a tcp-map applied to this flow"
    return None, None


def release(st: NormState, d: int) -> list[Held]:
    """Queued segments from ``d`` that are in order now, in sequence order (removed from the queue)."""
    q = st.held[d]
    if not q:
        return []
    out = []
    nxt = st.nxt[d]
    q.sort(key=lambda h: (h.seq - (nxt or 0)) & _M)
    while q and nxt is not None and not before(nxt, q[0].seq):
        h = q.pop(0)
        out.append(h)
        end = (h.seq + h.pkt.payload_len + (1 if h.pkt.flags & _FIN else 0)) & _M  # type: ignore[attr-defined]
        if before(nxt, end):
            nxt = end
    return out


def expire(st: NormState, now: float) -> list[tuple[int, Held]]:
    """Queued segments that waited longer than the queue timeout: (direction, segment), removed."""
    out = []
    limit = st.profile.queue_timeout
    for d in (0, 1):
        q = st.held[d]
        if not q:
            continue
        keep = []
        for h in q:
            if now - h.arrived >= limit:
                out.append((d, h))
            else:
                keep.append(h)
        q[:] = keep
    st.counters["ooo_timeout_drops"] += len(out)
    return out


# --------------------------------------------------------------------------------------------------
# Helpers


def _clear_reserved(pkt) -> None:
    # The codec has setters for byte 13 (flags) but not for the low nibble of byte 12; write it through
    # the same checksum-keeping field writer the setters use.
    pkt._set_field(12, 1, (pkt.doff >> 2) << 4)
    pkt.reserved = 0


def _options(st: NormState, pkt) -> Refusal | int:
    """Clear or refuse the options the tcp-map names: a ``Refusal``, or the ``DID_*`` bits of the
    options cleared (counted when the segment is forwarded)."""
    table = st.profile.options
    done = 0
    for kind, off, _ln in list(pkt.tcp_options()):
        action = table[kind]
        if action == ALLOW:
            continue
        if action == DROP:
            st.counters["other_options_drops"] += 1
            tm = st.profile.tm
            origin = tm.origins.get("md5") if kind == 19 else None
            if origin is None:
                origin = next((o for k, o in tm.origins.items() if k.startswith("range ")), None)
            return Refusal(
                DropReason.TCP_OPTION_DROP,
                f"TCP option {kind} refused by the tcp-map",
                origin,
                f"tcp-options range {kind} {kind} allow (or clear) in the tcp-map",
            )
        pkt.clear_option(off)
        if kind in (4, 5):
            done += DID_SACK
        elif kind == 8:
            done += DID_TIMESTAMP
        elif kind == 3:
            done += DID_WSCALE
        else:
            done += DID_OTHER
    return done


def _record_mss(st: NormState, d: int, pkt) -> None:
    value, present = mss_mod.advertised(pkt)
    adv = (value, present)
    adv = _ADVERTISED.setdefault(adv, adv)  # one tuple per distinct value (memory)
    minimum, adv0, adv1 = st._mss
    st._mss = shared((minimum, adv, adv1) if d == 0 else (minimum, adv0, adv))
    st.mss_limit = pair_with(st.mss_limit, d, mss_mod.receive_limit(value, present, minimum))


_ADVERTISED: dict[tuple[int, bool], tuple[int, bool]] = {}  # at most 2 x 65536 entries


def _share_ends(nxt, seen) -> None:
    """After the handshake each side's next sequence number is the tracker's ``td_end``: the same
    value, which ``nxt`` then keeps as the tracker's int object (memory of idle connections)."""
    for d in (0, 1):
        end = seen[d].td_end
        if nxt[d] == end:
            nxt[d] = end


def _handshake_ack(st: NormState, pkt, trk, ack_offset: int) -> Refusal | None:
    # The ACK completing the handshake must acknowledge exactly the SYN/ACK (A.1), stricter than the
    # tracker's window bounds.
    want = trk.seen[1].td_end
    got = (pkt.ack - ack_offset) & _M
    if got == want:
        return None
    st.counters["invalid_ack_drops"] += 1
    return Refusal(
        DropReason.TCP_INVALID_ACK,
        f"handshake ACK {got} does not acknowledge the SYN-ACK (expected {want})",
        st.profile.tm.origins.get("invalid_ack"),
        "invalid-ack allow in a tcp-map applied to this flow",
    )


def _exceed_mss(st: NormState, d: int, limit: int, size: int) -> Refusal:
    prof = st.profile
    adv = st.mss_adv[1 - d]
    if prof.exceed_mss_origin is not None:
        why = "the tcp-map says exceed-mss drop"
    else:
        why = f"exceed-mss drop is the default before ASA 9.0 (this configuration declares {prof.version})"
    told = ""
    if adv is not None and not adv[1]:
        told = f" (no MSS option: {adv[0]} assumed)"
    return Refusal(
        DropReason.TCP_MSS_EXCEEDED,
        f"segment of {size} bytes exceeds the MSS {limit} its receiver advertised{told}; {why}",
        prof.exceed_mss_origin,
        f"sysopt connection tcpmss minimum {size}, or exceed-mss allow in a tcp-map applied to this flow "
        "(set connection advanced-options)",
        {"mss": limit, "data": size},
    )


def _hold(st: NormState, d: int, pkt, now: float, gso_size: int) -> Refusal:
    prof = st.profile
    if st.held is _NOTHING_HELD:
        st.held = ([], [])
    q = st.held[d]
    if any(h.seq == pkt.seq for h in q):
        # The same segment again: the copy that waits stays, this one is dropped ("TCP dup of packet
        # in Out-of-Order queue", tcp-dup-in-queue, Cisco's show asp drop).
        return Refusal(
            DropReason.TCP_DUP_IN_QUEUE,
            f"segment {pkt.seq} is already in the out-of-order queue",
            None,
            "none needed: the queued copy goes on once the data before it arrives",
        )
    if len(q) >= prof.queue:
        st.counters["ooo_no_buffer_drops"] += 1
        return Refusal(
            DropReason.TCP_BUFFER_FULL,
            f"out-of-order queue full ({prof.queue} segments wait for {st.nxt[d]})",
            prof.tm.origins.get("queue_limit"),
            "a larger queue-limit in the tcp-map",
        )
    # The caller may reuse its buffer once receive() returns (a live loop does): queue a private copy.
    q.append(Held(pkt.seq, decode(bytearray(pkt.buf)), now, gso_size))
    st.counters["ooo_packets"] += 1
    return HOLD


def _retransmission(st: NormState, d: int, pkt, seq: int) -> Refusal | None:
    sent = st.sent[d]  # type: ignore[index]
    data = pkt.payload()
    for start, old in sent.items():
        # Compare the overlap of this segment with each remembered one.
        off = (seq - start) & _M
        if off < len(old):
            n = min(len(old) - off, len(data))
            if old[off : off + n] != data[:n]:
                st.counters["retransmission_drops"] += 1
                return Refusal(
                    DropReason.TCP_BAD_RETRANSMISSION,
                    f"retransmission at {seq} differs from the data first sent",
                    st.profile.tm.origins.get("check_retransmission"),
                    "no check-retransmission in the tcp-map",
                )
        else:
            off = (start - seq) & _M
            if off < len(data):
                n = min(len(data) - off, len(old))
                if data[off : off + n] != old[:n]:
                    st.counters["retransmission_drops"] += 1
                    return Refusal(
                        DropReason.TCP_BAD_RETRANSMISSION,
                        f"retransmission at {seq} differs from the data first sent",
                        st.profile.tm.origins.get("check_retransmission"),
                        "no check-retransmission in the tcp-map",
                    )
    return None


def _forget_acked(sent: dict[int, bytes], ack: int) -> None:
    for start in [s for s, data in sent.items() if not before(ack, (s + len(data)) & _M)]:
        del sent[start]
