"""The SYN of a known flow class, built straight into a compiled record (issue 18, item 2).

A short connection costs most of its CPU at its SYN: the new-flow stages after source NAT (IP options,
tracking, the connection's making, the class settings) and the established-flow stage's first pass
(the tcp-map's checks and learning, the TTL, NAT and sequence rewrite) build a tracker, a normalizer
state, a randomization, two halves and their keys, then the offload at that very SYN
(``statewall.fastpath``) copies them into a compiled record and drops them again.

For a class of flow ``statewall.engine.flowclass`` keeps, every SYN is decided the same way but for what
depends on its own numbers: the source port (which PAT translates), the sequence number (the tracker's
and the normalizer's numbers follow it, the randomization's offset is a hash of it), the IP id, the
checksums and the timestamps option's two values (a host's clock and its per-connection offset: they
differ in every Linux SYN, and no ASA stage decides by them). So the first SYN of the class that the Python
path takes all the way to an offload without its objects is kept as the class's ``Template`` (``capture``,
``FastPath.offload`` finishing it): the SYN as it arrived and as it left, a copy of the record right
after it (``Flow.syn_copy``), what the stages counted (``fw.stats`` and the tcp-map's counters) and the
connection's fields. A later SYN of the class whose bytes are the template's except for those
per-connection fields (``Flow.syn_like``) takes ``Template.take`` instead of the stages after source
NAT:

- source NAT runs as the stage (``asa.source_nat``: the PAT port, the translation, its failure);
- the connection is made as the ``OffloadedConnection`` the offload would have left (its slots as the
  template's, its id, times, translation and record its own), its record by ``Flow.syn_build`` from
  the template's (the keys and translations of this port, the tracker's and normalizer's numbers
  moved by the sequence number's difference, the randomization's offset ``seqrand.offset_for``), and
  the SYN rewritten in C (the template's output bytes with this SYN's mapped port and shifted
  sequence number, checksums updated from the arriving ones; a partial checksum, TUN's NEEDS_CSUM,
  moved by the addresses only, as ``Packet.forward_nat4`` moves it);
- the bookkeeping of ``asa.build``, ``lifecycle.opened``/``after_tcp`` and ``FastPath.offload`` is
  done here in the same order: the translation held and its 305011, the class's admission count, the
  connection table, the embryonic timer, the counters, 302013.

Anything that could make the SYN's path differ takes the stages as before: packet-tracer, a live
expectation (the class cache is off then), the platform's connection limit reached,
a changed set of tracker timeouts or ``sysopt connection tcpmss`` in the compiled table, a packet
over the egress MTU, a translation of another shape than the template's (no
translation where it had one, port block allocation, a reply tuple in use). The Python path stays the
definition: the template is what it did, and ``tests/test_known_syn.py`` holds the two equal.
"""

from __future__ import annotations

from ..conntrack import NOTHING_SEEN, Connection, Keys, shared_port
from ..events import ConnBuilt, xlate_built
from ..fastpath import OffloadedConnection, _fastpath, _halves_of
from ..packet import OPT_MSS, OPT_TIMESTAMP
from ..seqrand import offset_for
from ..tcptrack import TcpState
from .lifecycle import index_for_replay

_SS = TcpState.SYN_SENT
_syn_like = None if _fastpath is None else _fastpath.Flow.syn_like

# The SYN's bytes that may differ between connections of a class (Flow.syn_like's list).
_VARIES = frozenset((4, 5, 10, 11, 20, 21, 24, 25, 26, 27, 36, 37))
# ... and the bytes the Python path may change in it: TTL, checksums, addresses, ports, sequence.
_REWRITTEN = frozenset((8, 10, 11, *range(12, 28), 36, 37))
# How often a class tries to become a template before it stops trying (its SYNs differ, or its
# connections are not offloaded without their objects).
TRIES = 4

_new = object.__new__


class Template:
    """What the Python path did with one SYN of a class (module docstring)."""

    __slots__ = ("tin", "tout", "record", "shared", "masks", "mask_fixed", "vp", "timeout", "origin",
                 "mpf", "tmo", "stats", "counters", "counts", "randomized", "xl_shape", "timeouts",
                 "tcpmss", "mtu", "egress", "direction", "stages", "rest", "after_nat", "responder",
                 "source_nat", "ts")  # fmt: skip


class Capture:
    """A SYN of a class on its way through the stages, to become the class's template once offloaded."""

    __slots__ = ("k", "c", "tin", "stats", "counters", "counts", "events")


def _counters_of(fw, eff):
    """The tcp-map counters a connection of class settings ``eff`` counts in (``apply_policy``'s)."""
    sp = fw.service_policies
    if sp is None or eff is None:
        return None
    use = eff.tcp_map_use
    return use.counters if use is not None else sp.default_counters


def stages_for(classes, k, c):
    """The stages a SYN of kept class ``k`` (a hit of ``FlowClasses.classify``) takes: its template's,
    or the stages after the prefix with a capture in front while the class may still become one."""
    t = k.syn
    if t is not None:
        return t.stages
    fw = c.fw
    if k.tries >= TRIES or fw.fast is None or c.proto != 6 or c.v != 4:
        return classes.rest
    k.tries += 1
    return (_capture_stage(k), *classes.rest)


def _capture_stage(k):
    def capture(c) -> bool:
        fw = c.fw
        pkt = c.pkt
        buf = pkt.buf
        if (
            c.unnat is None
            and len(buf) == 20 + pkt.doff
            and buf[0] == 0x45
            and buf[6] & 0x3F == 0
            and buf[7] == 0
            and pkt.flags == 0x02
            and not pkt.payload_len
        ):
            cap = Capture()
            cap.k = k
            cap.c = c
            cap.tin = bytes(buf)
            cap.stats = dict(fw.stats)
            counters = _counters_of(fw, c.eff)
            cap.counters = counters
            cap.counts = None if counters is None else dict(counters)
            cap.events = len(c.ev)
            fw.fast.capture = cap
        return True

    capture.phase = "FLOW-CREATION"
    capture.phases = ("FLOW-CREATION",)
    return capture


def finish(fast, cap, conn, f) -> None:
    """``FastPath.offload`` offloaded the connection ``cap``'s SYN built (``f`` its record): keep the
    class's template if the offload left it without its objects and its halves (module docstring)."""
    fast.capture = None
    c = cap.c
    fw = c.fw
    k = cap.k
    if conn._fwd is not None or f.shared is None or f.state != _SS or f.packets or conn.fast is not f:
        return
    extra = conn._extra
    if extra is not None and (set(extra) - {"tmo", "replay_keys", "helper"} or conn.helper is not None):
        return  # an inspection, a limit's admission, ...: not made here
    if not c.out or c.out[-1][1] is not c.pkt.buf:
        return
    tout = bytes(c.out[-1][1])
    tin = cap.tin
    # The MSS option's value, which sysopt connection tcpmss rewrites, where the codec found it.
    mss = c.pkt._find_option(OPT_MSS, 4)
    rewritten = _REWRITTEN | {mss + 2, mss + 3} if mss >= 0 else _REWRITTEN
    if len(tout) != len(tin) or any(a != b and i not in rewritten for i, (a, b) in enumerate(zip(tin, tout))):
        return  # options changed (a tcp-map's clearing): not one of the template's rewrites
    xl = c.xl
    if xl is not None and (xl.entry is None or xl.entry.pba):
        return
    if c.admission is not None or c.exp is not None or c.oneway:
        return
    if len(c.ev) - cap.events != (1 if c.created else 0) + 1:
        return  # other events than 305011 and 302013
    counters = cap.counters
    norm = conn.norm
    if (norm.counters if norm is not None else None) is not counters:
        return
    t = Template()
    t.tin = tin
    t.tout = tout
    # The timestamps option's two values, which differ from SYN to SYN of a host (its clock, its
    # per-connection offset) and which no stage decides by: where they are, or 0.
    tso = c.pkt._find_option(OPT_TIMESTAMP, 10)
    t.ts = tso + 2 if tso >= 0 else 0
    t.record = f.syn_copy()
    t.shared = f.shared
    mask = f.shared[-2]
    t.mask_fixed = mask & 0x3C  # the ORIGINAL half's destination and the REPLY half's source
    t.masks = {mask: f.shared}
    t.vp = conn._vp
    t.timeout = conn.timeout
    t.origin = conn.origin
    t.mpf = conn.mpf
    t.tmo = conn.tmo
    t.stats = _grown(cap.stats, fw.stats)
    t.counters = counters
    t.counts = None if counters is None else _grown(cap.counts, counters)
    t.randomized = bool(f.shared[0])
    t.xl_shape = None if xl is None else (xl.entry, xl.pat)
    t.timeouts = fast.timeouts
    t.tcpmss = fast.tcpmss
    t.mtu = fw.interfaces[c.egress].mtu
    t.egress = c.egress
    t.direction = conn._vp[2]
    t.responder = (c.egress, 4, c.real_dst, c.real_dport, c.pkt.dst, c.pkt.dport)
    classes = fw.flow_classes
    rest = classes.rest
    t.rest = rest
    t.after_nat = rest[1:]
    from .asa import source_nat  # (asa imports this module through flowclass)

    t.source_nat = source_nat
    t.stages = (_take_stage(t),)
    k.syn = t


def _grown(before: dict, after) -> tuple:
    """``(key, how much it grew)`` for each counter of ``after`` that changed since ``before``."""
    return tuple((key, n - before.get(key, 0)) for key, n in after.items() if n != before.get(key, 0))


def _take_stage(t):
    def take(c) -> bool:
        return _take(t, c)

    take.phase = "FLOW-CREATION"
    take.phases = ("FLOW-CREATION",)
    return take


def _take(t, c) -> bool:
    """A SYN of the template's class: False once it is forwarded (or stopped by source NAT), True with
    ``c.half`` set when it took the stages after all (``new_flow`` then returns the half)."""
    fw = c.fw
    pkt = c.pkt
    buf = pkt.buf
    fast = fw.fast
    ct_max = fw.ct.max
    keys = fw.conns.by_key
    if (
        not _syn_like(buf, t.tin, t.ts)
        or (ct_max and len(fw.conns) >= ct_max)
        or fast.timeouts != t.timeouts
        or fast.tcpmss != t.tcpmss
        or fw.interfaces[t.egress].mtu != t.mtu
        or type(keys) is not Keys
        or keys.fast is not fast
    ):
        return _stages(t.rest, c)
    # The port as the one object per value the Python path's halves would have shared (make_halves
    # interns their keys' ports): the translation keeps it, and without halves nothing else interns it.
    pkt.sport = shared_port(pkt.sport)
    source_nat = c.stage = t.source_nat
    if not source_nat(c):
        return False
    xl = c.xl
    if (None if xl is None else (xl.entry, xl.pat)) != t.xl_shape:
        return _stages(t.after_nat, c)
    src = pkt.src
    sport = pkt.sport
    msrc = c.msrc
    msport = c.msport
    real_dst = c.real_dst
    real_dport = c.real_dport
    if (4, 6, real_dst, real_dport, msrc, msport) in keys:
        return _stages(t.after_nat, c)  # build refuses it: the translated tuple is in use
    mask = t.mask_fixed | (msrc != src) | (msport != sport) << 1
    mask |= (mask & 1) << 6 | (mask & 2) << 6
    shared = t.masks.get(mask)
    if shared is None:
        shared = t.masks[mask] = (*t.shared[:-2], mask, t.shared[-1])
    now = c.now
    conn_id = fw.next_id
    fw.next_id += fw.id_step
    conn = _new(Connection)
    conn.id = conn_id
    conn._vp = t.vp
    conn._fwd = None
    conn.tcp = conn.norm = conn.seqrand = None
    conn.created = conn.last = now
    conn.timeout = timeout = t.timeout
    conn.bytes = 0
    conn.data_seen = NOTHING_SEEN
    conn._extra = None
    conn._xl = xl
    conn.origin = t.origin
    conn.queued_at = 0.0
    conn.closed = False
    conn.mpf = eff = t.mpf
    seq = pkt.seq
    off = offset_for(fw.seq_secret, 4, src, sport, pkt.dst, pkt.dport, seq) if t.randomized else 0
    f = t.record.syn_build(conn, shared, buf, t.tin, t.tout, msrc, msport, mask, off, pkt.partial, t.ts)
    conn.fast = f
    conn.__class__ = OffloadedConnection
    if fw.replay_index is not None and mask >> 4:
        # A replay adapter asked for the index (build's index_for_replay): the REPLY half as the record
        # describes it, the one the Python path's offload left there.
        index_for_replay(fw, (4, 6, real_dst, real_dport, src, sport), _halves_of(f, conn)[1])
    if fw.inspectors:
        conn.helper = None  # build's inspector_for: none for the class (the template had none)
    if t.tmo is not None:
        conn.tmo = t.tmo  # apply_policy's
    ev = c.ev
    if xl is not None:
        fw.nat.acquire(xl)
        if c.created:
            ev.append(xlate_built(xl, now))
    fw.conns.add(conn, False)
    sp = fw.service_policies
    if sp is not None:
        sp.admitted(eff)
        if t.randomized:
            fw.shifting = True
    if timeout > 0:
        conn.queued_at = due = now + timeout
        fw.timers.schedule(due, conn)
    stats = fw.stats
    for key, n in t.stats:
        stats[key] += n
    counts = t.counts
    if counts:
        counters = t.counters
        for key, n in counts:
            counters[key] += n
    ev.append(
        ConnBuilt(
            now,
            conn_id,
            6,
            t.direction,
            (c.iface, 4, src, sport, msrc, msport),
            t.responder,
            origin=t.origin,
        )
    )
    fast.table.add(f)
    fast.offloads += 1
    fast.shed += 1
    fast.dropped_halves += 1
    fast.syns += 1
    c.out.append((t.egress, buf))
    return False


def _stages(stages, c) -> bool:
    for st in stages:
        c.stage = st
        if not st(c):
            return False
    return True
