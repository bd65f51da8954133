"""The fast path: established connections offloaded to compiled code, as a firewall's data plane does.

A real ASA sets a connection up in its "session management path" (ACL, NAT, inspection, class
settings) and then forwards the connection's packets in the "fast path", which only looks the flow up,
checks the TCP state and rewrites. netfilter has the same split with its flowtable (``flow add``): after
the connection is established its packets bypass the hooks. statewall does the same for speed: the
Python stages (``statewall.engine``) decide everything and stay the one definition of behaviour; once a
connection's next packets can change nothing but windows, counters and the idle time, it is offloaded
to ``statewall._fastpath`` (C), the leaf of the engine's established-flow stage.

The leaf's contract (``FlowTable.offer(iface, data, now, csum_partial, gso_size)``):

- It may decide one thing only: to forward a packet of an offloaded connection that arrived on that
  connection's ingress interface and that the established-flow stage (``engine.forward.established``)
  would forward unchanged in meaning: the same bytes out (TTL, NAT rewrite, sequence shift), the same
  state changes (the tracker's windows and timer fields, the normalizer's next sequence and TTL, the
  connection's bytes, data-seen flags and last activity), counted as the engine counts a forwarded
  packet (``stats`` packets_in and forwarded, ``fw.now``). It returns ``Result([(egress, packet)], [])``
  (with the teardown's events after a close's last ACK, below).
- It never drops, answers, logs or creates a connection, re-times or tears one down only as the
  lifecycle's close does (the half-closed timer and the teardown after both FINs, through the
  lifecycle's own functions, whose events it returns), and emits no event of its own: every packet it
  is not sure of (anything but ACK, ACK|PSH, FIN|ACK or FIN|PSH|ACK segments in window and in order,
  the SYN-ACK that answers a connection's SYN plainly, UDP datagrams, of a connection in its table; a
  TTL of 1; over the egress MTU; options other than none or NOP NOP timestamp, or a SYN-ACK's MSS,
  window scale, SACK-permitted and timestamps; while packet-tracer listens) is handed back as None,
  the packet untouched, and the Python stages take it: they first take the connection back (``unoffload``
  copies its state out of the leaf), so they always see the state the leaf left.

The engine consults the leaf before decoding (it parses what it needs itself): ``Firewall.receive``
offers every packet first; with the extension built the class's ``receive`` is that front door compiled
(``_fastpath.Entry``, see ``front_door``), so a forwarded packet costs no Python frame. The live loop's
TUN pump calls the same leaf through the capsule API.

This module owns the offload: which connections qualify (``eligible``), copying a connection's state
into a ``Flow`` (``offload``) and back (``unoffload``, before the Python path touches the connection
again), and flushing the table (policy reload). A TCP connection is offloaded at its SYN where
the lifecycle is the ASA's (its SYN-ACK and its handshake's last ACK are then the compiled path's; at
its SYN-ACK when the Python path took that), else at the end of its handshake
(``engine.forward.established``), and where its objects can be made again exactly from the
record (nearly always) the record replaces them: the connection keeps no ``TcpTracker``,
``NormState`` or ``SeqShift`` while offloaded (``OffloadedConnection``: views of the record when read)
and ``unoffload`` rebuilds them (the end of this module; issue 18's flat record per connection). Nor
does it keep its two ``Half`` objects and their keys: the connection table's dictionary
(``conntrack.Keys``) asks the table for a key it misses and ``held_half`` makes the halves again, kept
from then on; ``conn.halves`` reads views of the record meanwhile.

A connection of a known flow class can also start in the record without ever having its objects: the
first SYN of a class (``engine.flowclass``) that this module offloads without them becomes the class's
template (``offload`` hands it to ``engine.known_syn.finish``: its SYN in and out, a copy of its
record, ``Flow.syn_copy``), and a later SYN of the class whose bytes differ only in the IP id, source
port, sequence number and checksums is built from it (``engine.known_syn``: source NAT as the stage,
then ``Flow.syn_build`` makes the record and rewrites the SYN in C, the connection made as the
``OffloadedConnection`` the offload would have left; counted in ``syns``, and in ``offloads``,
``shed`` and ``dropped_halves`` as the offload counts it). Every other SYN takes the stages and this
module's ``offload`` as before.

Unlike the kernel's flowtable, which needs a rule to offload and then skips the ruleset's counters,
statewall's fast path is invisible: per-rule counters
are only counted for new connections on the ASA's stages anyway (hit counts), and netfilter's path,
whose rules count every packet, never offloads.

A connection qualifies when it is IPv4 TCP or UDP on the ASA's stages, without an inspector, TCP
Intercept splice, Dead Connection Detection probe or embryonic limit count in progress, without the
``pix-sack-bug`` fault or inspection sequence adjustment; and for TCP: ESTABLISHED with ASSURED and
SEEN_REPLY on its idle timeout, or (the ASA's lifecycle) SYN_SENT after the SYN (nothing from the
responder yet, its MSS, TTL and next sequence number unknown to the tcp-map, ``sysopt connection tcpmss
minimum`` the tcp-map's) or SYN_RECV after a SYN-ACK that answered the SYN, on its embryonic timeout,
no FIN seen, and a tcp-map without checksum verification,
window-variation drop or retransmission checks, with nothing queued out of order. The compiled code
then forwards only segments with ACK or ACK|PSH, no reserved bits, options none or NOP NOP timestamp,
in window, in order when the tcp-map queues, within the MSS when it enforces it, with a TTL above 1 and
within the egress MTU; in SYN_SENT only the responder's SYN-ACK without data that acknowledges exactly
the SYN, its options MSS, window scale, SACK-permitted and timestamps (each once, those the tcp-map
leaves alone), NOP and EOL, and whose TTL the tcp-map would not lower (to SYN_RECV: the tracker's row with
the responder's window, scale and SACK-permitted, the tcp-map's MSS and TTL floor, ``sysopt connection
tcpmss``'s rewrite of its MSS, the embryonic timer as it was); in SYN_RECV only the initiator's ACK
that acknowledges exactly the SYN-ACK
(the handshake's last ACK: ESTABLISHED and ASSURED, then ``AsaLifecycle.established``'s idle timer,
called from the compiled code), every other segment (a SYN or SYN-ACK again, the responder's
segments, a FIN, an RST, another ack; in SYN_SENT a SYN again, an RST, a SYN-ACK with data, another
ack, other options or a TTL the tcp-map lowers) handed back. Where the lifecycle is the ASA's
(``AsaLifecycle.half_closed`` exists) the close goes through it too: FIN|ACK and FIN|PSH|ACK
segments and the segments of a closing connection
(the tracker's rows for FIN and ACK from ESTABLISHED through FIN_WAIT, CLOSE_WAIT, LAST_ACK and
TIME_WAIT, with ``F_CLOSE_INIT``, ``F_FIN_SEEN``, each FIN's end, ``F_FIN_ACKED`` and each state's
timeout; the lifecycle's note of who began the close, ``conn.closer``, and its half-closed timer once a
FIN is acknowledged, ``AsaLifecycle.half_closed`` called from the compiled code), and the segment
that leaves TIME_WAIT with both FINs acknowledged: the compiled code forwards it, then calls the
lifecycle's teardown (``AsaLifecycle.fins_closed``: ConnTeardown, the translation's release; the
record leaves the table without the connection's objects made again, ``FastPath.end``) and returns
its events in the Result. The live loop's compiled wait does the same and collects the events in a
list it hands on (the capsule's ``forward_events``); the pump alone, which carries no events, hands
that segment to the Python path instead.

Without a C compiler at install time the extension is missing, ``AVAILABLE`` is False and every packet
takes the Python path; ``Firewall(..., fast_path=False)`` turns it off explicitly (tests compare both).
"""

from __future__ import annotations

import copyreg
import struct
from functools import partial

from . import normalizer
from .conntrack import _HALVES as _HALF_CLASSES
from .conntrack import REPLY, Connection, Half, Keys, _shared_address, _shared_key
from .normalizer import _NOTHING_HELD, NormState
from .seqrand import SeqShift
from .tcptrack import _T_SET, F_FIN_ACKED, F_FIN_SEEN, I_SYN, I_SYNACK, ORIGINAL, TcpState, TcpTracker, _Peer

try:
    from . import _fastpath
except ImportError:  # built without a compiler: the Python path does everything
    _fastpath = None

AVAILABLE = _fastpath is not None
_dict_get = dict.get
_new = object.__new__


def front_door(receive, ingress):
    """``Firewall.receive`` with the leaf offered first in compiled code (``_fastpath.Entry``: the
    Python ``receive``'s own logic, without a Python frame for the packets the leaf forwards), or
    ``receive`` itself when the extension is not built. ``ingress`` takes what the leaf hands back;
    keyword calls run the Python ``receive``."""
    if _fastpath is None:
        return receive
    return _fastpath.Entry(ingress, receive)


_KEY = struct.Struct("!IIHHB")
_M = 0xFFFFFFFF
_TCP = 6
_UDP = 17
_ES = TcpState.ESTABLISHED
_SR = TcpState.SYN_RECV
_SS = TcpState.SYN_SENT
_ALLOW = normalizer.ALLOW
if normalizer.DROP != 2:  # _fastpath.c's Flow.fill reads a tcp-map's exceed-mss drop as 2
    raise ImportError("statewall.fastpath: normalizer.DROP is not the compiled fill's")


def flow_key(key: tuple) -> bytes:
    """The compiled table's key for a half's ``(version, proto, src, sport, dst, dport)``."""
    _, proto, src, sport, dst, dport = key
    return _KEY.pack(src, dst, sport, dport, proto)


class FastPath:
    """The compiled flow table of one Firewall and the copying between it and the connections."""

    __slots__ = (
        "table",
        "fw",
        "offloads",
        "returns",
        "ended",
        "shed",
        "dropped_halves",
        "timeouts",
        "tcpmss",
        "table_closes",
        "syns",
        "capture",
    )

    def __init__(self, fw) -> None:
        self.table = _fastpath.FlowTable()
        self.fw = fw
        self.offloads = 0  # connections handed to the compiled path
        self.returns = 0  # ... and taken back by the Python path
        self.ended = 0  # ... and torn down from the record (``end``), never taken back
        self.shed = 0  # offloads that left the connection without its tracker, normalizer, ... objects
        self.dropped_halves = 0  # ... and without its halves and their keys (the record holds them)
        self.timeouts = None  # the tracker's timeouts last given to the table
        self.tcpmss = None  # sysopt connection tcpmss (maximum, minimum) last given to the table
        self.table_closes = False  # the close goes through the table (attach: the ASA's lifecycle)
        self.syns = 0  # SYNs of a known class built straight into a record (engine.known_syn)
        self.capture = None  # a known class's SYN on its way to becoming the class's template

    def __len__(self) -> int:
        return len(self.table)

    @property
    def hits(self) -> int:
        return self.table.hits

    def attach(self, fw, result_type):
        """Bind the compiled table to ``fw`` (its counters and clock); returns the leaf's entry,
        ``offer(iface, data, now, csum_partial, gso_size)``: a ``result_type`` for a packet it
        forwarded, else None with the packet untouched (the module docstring's contract)."""
        self.fw = fw
        half_closed = getattr(fw.lifecycle, "half_closed", None)
        fins_closed = getattr(fw.lifecycle, "fins_closed", None)
        established = getattr(fw.lifecycle, "established", None)
        self.table_closes = half_closed is not None and fins_closed is not None and established is not None
        if self.table_closes:
            self.table.bind(
                fw,
                fw.stats,
                result_type,
                partial(half_closed, fw),
                partial(fins_closed, fw),
                partial(established, fw),
            )
        else:
            self.table.bind(fw, fw.stats, result_type)
        self.timeouts = None  # given again with the next offload (the lifecycle may have changed)
        return self.table.offer

    # ---------------------------------------------------------------------------------------------

    def eligible(self, conn) -> bool:
        """Whether the compiled path would forward this connection's common packets as the Python
        path does (module docstring)."""
        # The Connection's fields read where it keeps them (conntrack: ``version``, ``proto`` and
        # ``timeout_kind`` in the shared ``_vp`` tuple, the rare ones in ``_extra``, the halves as
        # ``_fwd`` and its ``_other``): the same values as its properties, without their calls.
        vp = conn._vp
        if conn.fast is not None or conn.closed or vp[0] != 4:
            return False
        extra = conn._extra
        if extra is None:
            tmo = None
        else:
            get = extra.get
            if get("helper") is not None or get("intercept") is not None or get("dcd") is not None:
                return False
            limit = get("limit")
            if limit is not None and limit.embryonic:
                return False
            tmo = get("tmo")
        h0 = conn._fwd
        if h0 is None:
            return False
        h1 = h0._other
        ifs = self.fw.interfaces
        i0 = h0.in_iface
        i1 = h1.in_iface
        if i0 not in ifs or h0.out_iface not in ifs or i1 not in ifs or h1.out_iface not in ifs:
            return False
        if h0.out_iface != i1 or h1.out_iface != i0:
            return False  # the record keeps one interface per side
        shift = conn.seqrand
        if shift is not None and (
            shift.sack_untranslated or (shift.seqadj is not None and shift.seqadj.active)
        ):
            return False
        proto = vp[1]
        if proto == _UDP:
            return conn.tcp is None and conn.norm is None
        if proto != _TCP:
            return False
        trk = conn.tcp
        if trk is None or trk.reopen:
            return False
        fw = self.fw
        kind = vp[3]  # conn.timeout_kind
        if trk.state == _SS:
            # Offloaded at the SYN: the responder's SYN-ACK is the compiled path's (its row SYN_SENT ->
            # SYN_RECV, the tcp-map's checks, sysopt connection tcpmss), then the handshake's last ACK,
            # where the lifecycle is the ASA's. The SYN as the Python path took it (its window and
            # options noted), nothing from the responder yet, on the embryonic timeout.
            if not self.table_closes or trk.assured or trk.seen_reply:
                return False
            if trk.last_index != I_SYN or trk.last_dir != ORIGINAL or trk._aux or trk.retrans or trk.dead:
                return False
            if trk.seen[1].td_maxwin or trk.seen[1].flags:
                return False
            emb = fw.timeouts.embryonic if tmo is None or tmo[0] is None else tmo[0]
            if kind != "embryonic" or conn.timeout != emb or (emb > 0 and conn.queued_at == 0.0):
                return False
            norm = conn.norm
            if norm is not None and (
                norm.mss_limit[1] is not None
                or norm._mss[2] is not None
                or norm.nxt[1] is not None
                or norm.ttl[1]
                or norm._mss[0] != fw.policy.sysopt_tcpmss_minimum
            ):
                return False
        elif not trk.seen_reply:
            return False
        elif trk.state == _SR:
            # Offloaded at the SYN-ACK (the Python path took it): its handshake's last ACK is the
            # compiled path's, where the lifecycle is the ASA's (its idle timer from then on,
            # AsaLifecycle.established). A plain handshake only: the SYN-ACK answered the SYN (no
            # simultaneous open, no ignored SYN), on the embryonic timeout.
            if not self.table_closes or trk.assured or trk.last_index != I_SYNACK or trk.last_dir != REPLY:
                return False
            if trk._aux or trk.retrans or trk.dead:
                return False
            emb = fw.timeouts.embryonic if tmo is None or tmo[0] is None else tmo[0]
            if kind != "embryonic" or conn.timeout != emb or (emb > 0 and conn.queued_at == 0.0):
                return False
        elif trk.state != _ES or not trk.assured:
            return False
        for peer in trk.seen:
            fl = peer.flags
            if fl & (F_FIN_SEEN | F_FIN_ACKED) or fl > _M:
                return False
            if peer.td_end > _M or peer.td_maxend > _M or peer.td_maxwin > _M or peer.td_maxack > _M:
                return False
        # The idle refresh of the ASA's lifecycle (engine.lifecycle) must be a no-op besides conn.last.
        idle = fw.timeouts.conn if tmo is None or tmo[1] is None else tmo[1]
        if trk.state == _ES and (
            kind != "idle" or conn.timeout != idle or (idle > 0 and conn.queued_at == 0.0)
        ):
            return False
        norm = conn.norm
        if norm is not None:
            prof = norm.profile
            if norm.inspected is not None or prof.checksum or prof.window_drop or norm.sent is not None:
                return False
            if norm.held[0] or norm.held[1]:
                return False
        return True

    def offload(self, conn) -> bool:
        """Hand ``conn`` to the compiled path if it qualifies; True when it did."""
        if not self.eligible(conn):
            return False
        f = _fastpath.Flow()
        fw = self.fw
        # The record filled from the objects themselves (C reads the halves, their translation as
        # Half.compile_nat makes it, each egress MTU, the tracker, normalizer and randomization).
        mask = f.fill(conn, fw.interfaces)
        trk = conn.tcp
        if trk is not None:
            ct = fw.ct
            tmo = (
                ct.tcp_timeout_established, ct.tcp_timeout_unacknowledged, ct.tcp_timeout_max_retrans,
                ct.tcp_max_retrans,
            )  # fmt: skip
            if self.table_closes:
                # The close goes through here where the lifecycle's is the ASA's (the module docstring),
                # and the handshake from the SYN on.
                tmo += (ct.tcp_timeout_fin_wait, ct.tcp_timeout_close_wait, ct.tcp_timeout_last_ack,
                        ct.tcp_timeout_time_wait, ct.tcp_timeout_syn_recv)  # fmt: skip
            if tmo != self.timeouts:  # the tracker's timeouts are the table's (one set per firewall)
                self.table.set_timeouts(*tmo)
                self.timeouts = tmo
        # The ASA lowers the TTL only for classes with ``set connection decrement-ttl``.
        eff = conn.mpf
        f.ttl_dec = 1 if eff is None or eff.decrement_ttl else 0
        if trk is not None and trk.state == _SS:
            # The SYN-ACK to come: sysopt connection tcpmss (one pair per firewall) and the options the
            # tcp-map lets through unchanged (window scale, SACK-permitted, timestamps).
            pol = fw.policy
            mss = (pol.sysopt_tcpmss, pol.sysopt_tcpmss_minimum)
            if mss != self.tcpmss:
                self.table.set_tcpmss(*mss)
                self.tcpmss = mss
            norm = conn.norm
            if norm is not None and norm.profile.rewrites_options:
                table = norm.profile.options
                f.synack_opts = (table[3] == _ALLOW) | (table[4] == _ALLOW) << 1 | (table[8] == _ALLOW) << 2
        self.table.add(f)
        conn.fast = f
        self.offloads += 1
        rest = _rest(conn, mask) if trk is not None else None
        if rest is not None:
            # The record holds the connection's tracker, normalizer and randomization now: the objects
            # go, and views of the record stand in for them (OffloadedConnection) until it is taken back.
            f.shared = rest
            conn.tcp = conn.norm = conn.seqrand = None
            conn.__class__ = OffloadedConnection
            self.shed += 1
        h0 = conn._fwd
        h0.nat = h0._other.nat = None  # the record has the translation; the Python path recomputes it
        if rest is not None:
            self._drop_halves(conn)
        cap = self.capture
        if cap is not None:
            # A SYN of a known class offloaded at once: perhaps its class's template (engine.known_syn).
            self.capture = None
            half = cap.c.half
            if half is not None and half.conn is conn:
                from .engine import known_syn

                known_syn.finish(self, cap, conn, f)
        return True

    def unoffload(self, conn) -> None:
        """Take ``conn`` back to the Python path: its state as the compiled path left it."""
        f = conn.fast
        if f is None:
            return
        self.table.remove(f)
        self.returns += 1
        if conn._fwd is None:
            self._halves_back(f, conn)
        if f.shared is not None:
            _restore(f, conn)
        else:
            self._copy_back(f, conn)
        conn.fast = None
        f.conn = None  # no cycle left behind

    def end(self, conn) -> None:
        """``conn`` is being torn down (``engine.lifecycle.teardown``): its record leaves the table
        without its objects being made again only to be dropped. The teardown reads nothing the
        record holds alone (its bytes, times, halves and translations are the Connection's); a
        connection that kept its objects gets them as the record left them (``_copy_back``), one
        that kept none keeps its record, out of the table, as what its ``tcp``, ``norm`` and
        ``seqrand`` views read (``OffloadedConnection``): whoever still holds the closed
        connection reads the state it ended with, as after a rebuild."""
        f = conn.fast
        if f is None:
            return
        self.table.remove(f)
        self.ended += 1
        f.conn = None  # no cycle left behind
        if f.shared is None:
            self._copy_back(f, conn)
            conn.fast = None

    def sync(self) -> None:
        """Copy every offloaded connection's state back into its Python objects, leaving it offloaded
        (for readers of tracker and normalizer state; the Connection's times and bytes are always
        current)."""
        for f in self.table.flows():
            if f.shared is None:  # a connection without its objects is read through views of the record
                self._copy_back(f, f.conn)

    def keep_objects(self) -> list:
        """Give every offloaded connection its tracker, normalizer and randomization objects (and its
        halves) again, as the record says they are now, leaving it offloaded (a snapshot pickles the
        objects). Returns ``(flow, whether its halves were made)`` for the flows that had no objects,
        for ``drop_objects``."""
        dropped = []
        for f in self.table.flows():
            if f.shared is not None:
                made = f.conn._fwd is None
                if made:
                    self._halves_back(f, f.conn)
                _restore(f, f.conn)
                dropped.append((f, made))
        return dropped

    def drop_objects(self, flows) -> None:
        """Drop the objects (and the halves) ``keep_objects`` gave back again (their state is still the
        record's)."""
        for f, made in flows:
            conn = f.conn
            if conn is not None and f.shared is None:
                _drop(f, conn)
                if made and f.shared is not None:
                    self._drop_halves(conn)

    # The halves and their keys of a connection the record holds alone are not kept either: the
    # record has both keys, both interfaces and each half's translation, and its shared tuple says
    # which of a half's four rewrites are set (``_rest``). ``ConnTable.by_key`` (``conntrack.Keys``)
    # asks here for a key it does not hold.

    def _drop_halves(self, conn) -> None:
        """Forget ``conn``'s halves (the record has them) where the table's dictionary holds exactly
        them under their keys; otherwise they are kept."""
        keys = self.fw.conns.by_key
        fwd = conn._fwd
        if type(keys) is not Keys or fwd is None:
            return
        rev = fwd._other
        if rev is None or _dict_get(keys, fwd.key) is not fwd or _dict_get(keys, rev.key) is not rev:
            return
        dict.__delitem__(keys, fwd.key)
        dict.__delitem__(keys, rev.key)
        conn._fwd = None
        if keys.fast is not self:
            keys.fast, keys.find = self, self.table.find
        self.dropped_halves += 1

    def _halves_back(self, f, conn) -> tuple:
        """Make ``conn``'s halves again from its record, for good: kept by the connection and put back
        into the table's dictionary (where no other half took a key meanwhile)."""
        halves = _halves_of(f, conn)
        conn.halves = halves
        keys = self.fw.conns.by_key
        for h in halves:
            dict.setdefault(keys, h.key, h)
        return halves

    def held_half(self, found) -> Half | None:
        """The half of ``found`` = (flow, direction), ``FlowTable.find``'s answer for a key the table's
        dictionary does not hold, if its connection is held by the record alone: its halves made again
        and kept. None otherwise."""
        f, d = found
        conn = f.conn
        if conn is None or conn._fwd is not None or conn.closed:
            return None
        return self._halves_back(f, conn)[d]

    def view_half(self, found) -> Half | None:
        """The same as a view of the record (not kept), for a reader (``Keys.peek``)."""
        f, d = found
        conn = f.conn
        if conn is None or conn._fwd is not None or conn.closed:
            return None
        return _halves_of(f, conn)[d]

    @staticmethod
    def holds(found) -> bool:
        """Whether ``found`` is a half of a connection held by the record alone."""
        conn = found[0].conn
        return conn is not None and conn._fwd is None and not conn.closed

    @staticmethod
    def _copy_back(f, conn) -> None:
        trk = conn.tcp
        if trk is None:
            return
        (e0, me0, w0, a0, fl0, e1, me1, w1, a1, fl1, last_dir, last_seq, last_ack, last_end, last_win,
         retrans, timeout, packets, nxt0, nxt1, ttl0, ttl1) = f.tcp_state()  # fmt: skip
        p0, p1 = trk.seen
        p0.td_end, p0.td_maxend, p0.td_maxwin, p0.td_maxack, p0.flags = e0, me0, w0, a0, fl0
        p1.td_end, p1.td_maxend, p1.td_maxwin, p1.td_maxack, p1.flags = e1, me1, w1, a1, fl1
        p0.td_scale, p1.td_scale = f.td_scale0, f.td_scale1
        if packets:
            # The fields the compiled ES -> ES path writes (tcptrack's written-out case).
            trk.last_dir = last_dir
            trk.last_seq = last_seq
            trk.last_ack = last_ack
            trk.last_end = last_end
            trk.last_win = last_win
            trk.retrans = retrans
            trk._timeout = timeout
            trk.last_index = f.last_index
            trk._timer = _T_SET
        _close_back(f, trk, trk.seen)
        norm = conn.norm
        if norm is not None and f.norm:
            nxt = norm.nxt  # the connection's own list, updated in place
            if nxt[0] != nxt0:
                nxt[0] = nxt0
            if nxt[1] != nxt1:
                nxt[1] = nxt1
            if tuple(norm.ttl) != (ttl0, ttl1):
                norm.ttl = normalizer.shared((ttl0, ttl1))  # shared immutable pairs (normalizer)
            if f.mss1:
                norm._mss, norm.mss_limit = _mss_back(f, norm._mss, norm.mss_limit)

    def flush(self) -> int:
        """Take every connection back (before a policy reload); how many there were."""
        flows = self.table.flows()
        for f in flows:
            self.unoffload(f.conn)
        return len(flows)


# ---------------------------------------------------------------------------------------------------
# An offloaded connection without its objects (issue 18 item 1, docs/performance.md "Where the memory
# goes"): the record has every number of the tracker (both peers' windows, the last segment's fields,
# the retransmission count, the timeout), of the normalizer (next sequence, lowest TTL) and of the
# randomization (the offsets); what it has no field for is the same for many connections (window
# scales, the tracker's few flag fields, the tcp-map's profile and counters, the MSS pairs) and is kept
# as one tuple shared by all the connections with the same values (``Flow.shared``). The Python objects
# are made from the two when asked: as views (``show conn``, events, replays' reads) while the
# connection stays offloaded, or for good when the Python path takes it back (``unoffload``).

_SHARED: dict = {}
_SHARED_MAX = 1 << 16


def _rest(conn, mask=None):
    """The shared tuple that, with the record, rebuilds ``conn``'s objects exactly; None when they
    cannot be (they are then kept: a queue's timer, an inspection's adjustment, a subclass). ``mask``:
    the halves' rewrite mask when known (``Flow.fill`` returns it), else read from the halves."""
    if type(conn) is not Connection:
        return None
    trk = conn.tcp
    shift = conn.seqrand
    if shift is not None and (type(shift) is not SeqShift or shift.seqadj is not None):
        return None
    norm = conn.norm
    if norm is not None:
        if (
            norm.held is not _NOTHING_HELD
            or norm._rare is not conn
            or norm.sent is not None
            or norm.inspected is not None
        ):
            return None
        nkey = (id(norm.profile), id(norm.counters), norm._mss, tuple(norm.mss_limit))
    else:
        nkey = None
    for v in (trk.last_seq, trk.last_ack, trk.last_end, trk.last_win):
        if not 0 <= v <= _M:
            return None
    p0, p1 = trk.seen
    if mask is None:
        h0 = conn._fwd
        mask = _rewrites(h0) | _rewrites(h0._other) << 4
    key = (
        shift is not None, trk.dead, trk.last_index, trk._timer, trk._aux,
        p0.fin_end, p1.fin_end, p0.td_scale, p1.td_scale, mask, nkey,
    )  # fmt: skip
    got = _SHARED.get(key)
    if got is None:
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        nrest = None if norm is None else (norm.profile, norm.counters, norm._mss, normalizer.shared(nkey[3]))
        _SHARED[key] = got = key[:-1] + (nrest,)
    return got


def _rewrites(h) -> int:
    """Which of a half's ``new_src``, ``new_sport``, ``new_dst``, ``new_dport`` are set (bits 0-3)."""
    return (
        (h.new_src is not None) | (h.new_sport is not None) << 1
        | (h.new_dst is not None) << 2 | (h.new_dport is not None) << 3
    )  # fmt: skip


def _halves_of(f, conn) -> tuple[Half, Half]:
    """``conn``'s two halves as its record ``f`` and its shared tuple describe them (a connection the
    record holds alone): equal field for field to the ones it had (``Half.__init__``'s, their ``nat``
    None as the offload left it), made without its argument handling (the teardown of every such
    connection makes them)."""
    in0, in1, proto, e0, e1 = f.ends()
    mask = f.shared[-2]
    made = []
    for d, ends, i_in, i_out in ((0, e0, in0, in1), (1, e1, in1, in0)):
        src, sport, dst, dport, nsrc, nsport, ndst, ndport = ends
        m = (mask >> (4 * d)) & 15
        h = _new(_HALF_CLASSES[d][m != 0])
        h.conn = conn
        h.in_iface = i_in
        h.out_iface = i_out
        h.key = _shared_key((4, proto, src, sport, dst, dport))
        h.new_src = _shared_address(nsrc) if m & 1 else None
        h.new_sport = nsport if m & 2 else None
        h.new_dst = _shared_address(ndst) if m & 4 else None
        h.new_dport = ndport if m & 8 else None
        h.nat = None
        h._other = None
        made.append(h)
    made[0]._other = made[1]  # as Connection.halves links them
    return made[0], made[1]


def original_of(conn):
    """The ORIGINAL half's interfaces, key and translations, ``(in_iface, out_iface, version, src, sport,
    dst, dport, new_src, new_sport, new_dst, new_dport)`` with None for a field left alone, of an
    ``OffloadedConnection`` whose halves the record holds alone, read from the record without making the
    halves (``_halves_of``: the teardown of every such connection reads these); None when the connection
    keeps its halves (``conn.halves[0]`` then)."""
    if conn._fwd is not None:
        return None
    f = conn.fast
    in0, in1, _, e0, _ = f.ends()
    m = f.shared[-2]
    src, sport, dst, dport, nsrc, nsport, ndst, ndport = e0
    return (
        in0, in1, 4, src, sport, dst, dport,
        nsrc if m & 1 else None, nsport if m & 2 else None,
        ndst if m & 4 else None, ndport if m & 8 else None,
    )  # fmt: skip


def _drop(f, conn) -> None:
    f.shared = _rest(conn)
    if f.shared is not None:
        conn.tcp = conn.norm = conn.seqrand = None
        conn.__class__ = OffloadedConnection


def _restore(f, conn) -> None:
    """Put the objects back into ``conn`` from ``f`` (and make it a plain Connection again)."""
    state = f.tcp_state()
    trk, norm, shift = _tcp_view(f, state), _norm_view(f, conn, state), _seqrand_view(f)
    conn.__class__ = Connection
    conn.tcp = trk
    conn.norm = norm
    conn.seqrand = shift
    f.shared = None


def _tcp_view(f, state=None) -> TcpTracker:
    (e0, me0, w0, a0, fl0, e1, me1, w1, a1, fl1, last_dir, last_seq, last_ack, last_end, last_win,
     retrans, timeout, packets, _, _, _, _) = state or f.tcp_state()  # fmt: skip
    _, dead, last_index, timer, aux, fin0, fin1, _, _, _, _ = f.shared
    sc0, sc1 = f.td_scale0, f.td_scale1  # the SYN-ACK taken in the record sets them
    trk = TcpTracker.__new__(TcpTracker)
    peers = []
    for end, maxend, maxwin, maxack, scale, flags, fin_end in (
        (e0, me0, w0, a0, sc0, fl0, fin0),
        (e1, me1, w1, a1, sc1, fl1, fin1),
    ):
        p = _Peer.__new__(_Peer)
        p.td_end, p.td_maxend, p.td_maxwin, p.td_maxack = end, maxend, maxwin, maxack
        p.td_scale, p.flags, p.fin_end = scale, flags, fin_end
        peers.append(p)
    trk.seen = (peers[0], peers[1])
    # What eligible() requires of an offloaded connection, which the compiled path keeps.
    trk.state = _ES
    state = f.state
    trk.assured = state > _SR  # SYN_SENT, SYN_RECV until the handshake's last ACK, ASSURED from then on
    trk.seen_reply = state != _SS  # the SYN-ACK
    trk.reopen = False
    trk.dead = dead
    trk.last_dir = last_dir
    trk.last_seq, trk.last_ack, trk.last_end, trk.last_win = last_seq, last_ack, last_end, last_win
    trk._aux = aux
    trk.retrans = retrans
    trk._timeout = timeout
    # The compiled path's rows write these (as _copy_back does).
    trk.last_index, trk._timer = (f.last_index, _T_SET) if packets else (last_index, timer)
    _close_back(f, trk, peers)
    return trk


def _close_back(f, trk, peers) -> None:
    """The close as the compiled path took it: the tracker's state and the FIN ends it saw."""
    if f.state != trk.state:
        trk.state = TcpState(f.state)
        if f.state > _SR:
            trk.assured = True  # the handshake's last ACK (offloaded in SYN_SENT or SYN_RECV)
        if f.state != _SS:
            trk.seen_reply = True  # the SYN-ACK (offloaded in SYN_SENT)
    fin_set = f.fin_set
    if fin_set & 1:
        peers[0].fin_end = f.fin_end0
    if fin_set & 2:
        peers[1].fin_end = f.fin_end1


def _norm_view(f, conn, state=None) -> NormState | None:
    nrest = f.shared[-1]
    if nrest is None:
        return None
    *_, nxt0, nxt1, ttl0, ttl1 = state or f.tcp_state()
    profile, counters, mss, mss_limit = nrest
    if f.mss1:
        mss, mss_limit = _mss_back(f, mss, mss_limit)
    norm = NormState.__new__(NormState)
    norm.profile = profile
    norm.counters = counters
    norm._mss = mss
    norm.mss_limit = mss_limit
    norm.ttl = normalizer.shared((ttl0, ttl1))
    norm.nxt = [nxt0, nxt1]
    norm.held = _NOTHING_HELD
    norm.sent = None
    norm._rare = conn
    norm.inspected = None
    return norm


def _mss_back(f, mss: tuple, mss_limit) -> tuple:
    """The normalizer's ``_mss`` and ``mss_limit`` once the record took the responder's SYN-ACK
    (``normalizer._record_mss``, the same shared objects; the limit is the record's, which its
    exceed-mss check reads)."""
    adv = (f.adv_mss1, f.mss1 == 2)
    adv = normalizer._ADVERTISED.setdefault(adv, adv)
    return normalizer.shared((mss[0], mss[1], adv)), normalizer.pair_with(mss_limit, 1, f.mss_limit1)


def _seqrand_view(f) -> SeqShift | None:
    return SeqShift(f.offs0, f.offs1) if f.shared[0] else None


_UNSET = object()


class OffloadedConnection(Connection):
    """An offloaded ``Connection`` whose tracker, normalizer and randomization objects are not kept:
    ``tcp``, ``norm`` and ``seqrand`` are views made from its compiled record when read (as current as
    the record; writing to one changes nothing: what writes takes the connection back first,
    ``FastPath.unoffload``, which makes it a plain Connection with its objects again)."""

    __slots__ = ()

    def __reduce_ex__(self, protocol):
        # Only a connection that ended from its record (FastPath.end) is pickled as one: a snapshot
        # taken while a timer still holds it (the live offloaded ones are plain Connections by then,
        # FastPath.keep_objects). It is pickled as the plain Connection a rebuild would have made.
        state = {}
        for name in copyreg._slotnames(Connection):
            value = getattr(self, name, _UNSET)
            if value is not _UNSET:
                state[name] = value
        state["fast"] = None
        return copyreg._reconstructor, (Connection, object, None), (None, state)

    @property
    def tcp(self) -> TcpTracker:
        return _tcp_view(self.fast)

    @property
    def norm(self) -> NormState | None:
        return _norm_view(self.fast, self)

    @property
    def seqrand(self) -> SeqShift | None:
        return _seqrand_view(self.fast)

    def _halves(self):
        fwd = self._fwd
        if fwd is not None:
            return (fwd, fwd._other)
        return _halves_of(self.fast, self)  # views: the record's, not kept (the dictionary has none)

    halves = property(_halves, Connection.halves.fset, doc=Connection.halves.__doc__)
