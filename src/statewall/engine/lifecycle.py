"""The connection lifecycle: which timeout a connection is on, when it ends, and the events it ends with.

Owns the choice of a connection's timeout (one table per box, ``ASA_TCP`` and ``Linux``: the timeouts
are chosen here and nowhere else), the teardown of a connection (``teardown``: the one place a
connection leaves the table, releasing its translations, limits and inspector), its expiry
(``expire``, with the teardown reason each timeout kind ends with: ``EXPIRY``), Dead Connection
Detection's probing of idle connections (``statewall.dcd``) and the ASA's ``show conn`` flags.

The ASA's TCP lifecycle (reference A.1, A.5), after each segment that went through:

=============================================  ===========================================
tracked state                                  what follows
=============================================  ===========================================
any, the segment carried a RST                 teardown "TCP Reset-I" / "TCP Reset-O"
CLOSE, or TIME_WAIT with both FINs acked       teardown "TCP FINs" (from the first closer)
SYN_SENT, SYN_RECV, SYN_SENT2                  timeout ``embryonic`` (class, then global)
a FIN acknowledged on either side              timeout ``half-closed``
ESTABLISHED, and the rest                      timeout ``idle`` (``timeout conn``)
=============================================  ===========================================

Linux's lifecycle is conntrack's own: the tracker's per-state timeout (``TcpTracker.timeout``), named
after the state; UDP, ICMP and other protocols by their sysctls.
"""

from __future__ import annotations

from .. import dcd
from ..conntrack import ORIGINAL, REPLY, Connection, Half, _shape
from ..events import ConnTeardown
from ..fastpath import OffloadedConnection, original_of
from ..policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from ..tcptrack import F_FIN_ACKED, TcpState
from . import asa_policy

TCP_FIN = 0x01
TCP_RST = 0x04

EMBRYONIC_STATES = frozenset({TcpState.SYN_SENT, TcpState.SYN_RECV, TcpState.SYN_SENT2})
GENERIC_TIMEOUT = 600.0  # nf_conntrack_generic_timeout

# Timeout kind -> (index in a class's (embryonic, idle, half-closed) timeouts, the global ``timeout``
# it falls back to, and the teardown reason when it runs out: the ASA's 302014 texts).
KINDS = {
    "embryonic": (0, "embryonic", "SYN Timeout"),
    "idle": (1, "conn", "Idle Timeout"),
    "half-closed": (2, "half_closed", "FIN Timeout"),
}
# What a non-TCP connection's idle timeout falls back to on the ASA (``timeout udp``, ``timeout icmp``).
ASA_IDLE = {PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmp"}


def class_timeout(tmo: tuple | None, i: int, default: float) -> float:
    """A connection's class timeout ``i`` (embryonic, idle, half-closed) when its class sets one."""
    if tmo is None:
        return default
    value = tmo[i]
    return default if value is None else value


def _retime(fw, conn: Connection, kind: str, slot: int, default: float, now: float) -> None:
    """``set_timeout`` for the compiled path's calls (``AsaLifecycle.established`` and ``half_closed``)
    with the class timeout read from where the Connection keeps it (``_extra``'s "tmo", ``slot`` of
    it) rather than through its property."""
    extra = conn._extra
    tmo = None if extra is None else extra.get("tmo")
    set_timeout(fw, conn, default if tmo is None or tmo[slot] is None else tmo[slot], kind, now)


class AsaLifecycle:
    """The ASA's timeouts (``timeout conn``, ``embryonic``, ``half-closed``, ``udp``, ``icmp`` and the
    classes' ``set connection timeout``) and its TCP teardown reasons (table in the module docstring)."""

    @staticmethod
    def fins_closed(fw, conn: Connection, now: float, iface: str) -> list:
        """The teardown once both FINs were acknowledged (``after_tcp``), for a segment from ``iface``
        the compiled fast path forwarded (statewall.fastpath): its events, with the port blocks the
        release freed (as ``Firewall.ingress`` adds them after a packet)."""
        ev: list = []
        extra = conn._extra  # conn.closer without its property
        closer = None if extra is None else extra.get("closer")
        teardown(fw, conn, now, "TCP FINs", closer or iface, [], ev)
        if fw.nat.pba_events:
            ev.extend(block_events(fw, now))
        return ev

    @staticmethod
    def established(fw, conn: Connection, now: float) -> None:
        """The idle timer once the handshake's last ACK made the connection ESTABLISHED (``after_tcp``
        for a connection without an embryonic limit count; the compiled fast path calls it for the
        handshake's last ACK it forwards, statewall.fastpath)."""
        _retime(fw, conn, "idle", 1, fw.timeouts.conn, now)

    @staticmethod
    def half_closed(fw, conn: Connection, now: float) -> None:
        """The half-closed timer, from the first acknowledged FIN on (``after_tcp``; the compiled fast
        path calls it for the segments of the close it forwards, statewall.fastpath)."""
        _retime(fw, conn, "half-closed", 2, fw.timeouts.half_closed, now)

    @staticmethod
    def opened(fw, conn: Connection, now: float, tcp_kind: str = "embryonic") -> None:
        """The first timeout of a connection the ASA just built."""
        t = fw.timeouts
        if conn.proto == PROTO_TCP:
            set_timeout(fw, conn, class_timeout(conn.tmo, 0, t.embryonic), "embryonic", now)
        else:
            glob = getattr(t, ASA_IDLE.get(conn.proto, "conn"))
            set_timeout(fw, conn, class_timeout(conn.tmo, 1, glob), "idle", now)

    @staticmethod
    def after_tcp(fw, conn: Connection, half: Half, pkt, now: float, out: list, ev: list) -> None:
        """Timeout choice and teardown after a TCP segment went through (the table above)."""
        trk = conn.tcp
        state = trk.state
        flags = pkt.flags
        if flags & TCP_RST:
            side = fw.interfaces[half.in_iface].security_level
            other = fw.interfaces[half.out_iface].security_level
            teardown(fw, conn, now, "TCP Reset-I" if side >= other else "TCP Reset-O", half.in_iface, out, ev)
            return
        if flags & TCP_FIN and conn.closer is None:
            conn.closer = half.in_iface
        tmo = conn.tmo
        if state != TcpState.ESTABLISHED:  # nearly every segment is: neither closing nor embryonic
            # netfilter's table also enters TIME_WAIT from one side's retransmitted FIN (FIN_WAIT ->
            # LAST_ACK) and the peer's duplicate ACK, and, when the FINs cross, on the ACK of the
            # second FIN while the first one's ACK is still on its way: the ASA closes only once both
            # sides' FINs were acknowledged (a later ACK would be denied, 106015, on a live path).
            if state == TcpState.CLOSE or (
                state == TcpState.TIME_WAIT and trk.fin_acked(ORIGINAL) and trk.fin_acked(REPLY)
            ):
                # "from <ifc>" names the side that began the close (its FIN came first).
                teardown(fw, conn, now, "TCP FINs", conn.closer or half.in_iface, out, ev)
                return
            if state in EMBRYONIC_STATES:
                set_timeout(fw, conn, class_timeout(tmo, 0, fw.timeouts.embryonic), "embryonic", now)
                return
        adm = conn.limit
        if adm is not None and adm.embryonic:
            adm.established()
        seen = trk.seen
        if (seen[0].flags | seen[1].flags) & F_FIN_ACKED:
            AsaLifecycle.half_closed(fw, conn, now)
            return
        # The idle refresh of nearly every segment: set_timeout written out.
        timeout = fw.timeouts.conn if tmo is None or tmo[1] is None else tmo[1]
        conn.timeout = timeout
        vp = conn._vp
        if vp[3] != "idle":
            conn._vp = _shape(vp[0], vp[1], vp[2], "idle")
        if timeout > 0:
            due = conn.last + timeout
            queued = conn.queued_at
            if queued == 0.0 or due < queued:
                conn.queued_at = due
                fw.timers.schedule(due, conn)


class LinuxLifecycle:
    """conntrack's timeouts (``nf_conntrack_*_timeout``): the tracker's per-state one for TCP."""

    @staticmethod
    def opened(fw, conn: Connection, now: float, tcp_kind: str = "embryonic") -> None:
        """The first timeout of a new connection; netfilter's path names a TCP one after its state."""
        ct = fw.ct
        proto = conn.proto
        if proto == PROTO_TCP:
            set_timeout(fw, conn, conn.tcp.timeout(ct), tcp_kind, now)
        elif proto == PROTO_UDP:
            set_timeout(fw, conn, ct.udp_timeout, "idle", now)
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            set_timeout(fw, conn, ct.icmp_timeout, "idle", now)
        else:
            set_timeout(fw, conn, GENERIC_TIMEOUT, "idle", now)

    @staticmethod
    def after_tcp(fw, conn: Connection, half: Half, pkt, now: float, out: list, ev: list) -> None:
        trk = conn.tcp
        set_timeout(fw, conn, trk.timeout(fw.ct), trk.state.name, now)


def set_timeout(fw, conn: Connection, timeout: float, kind: str, now: float) -> None:
    """``conn``'s timeout from its last activity on (``kind`` names it: ``KINDS``, a tracker's state).
    Its timer is queued again only when the new deadline is earlier than the one already queued: a
    later one is found when the queued one comes due (``Firewall.advance`` asks ``deadline()``)."""
    conn.timeout = timeout
    vp = conn._vp  # conn.timeout_kind = kind, without the property (the four fields' shared tuple)
    if vp[3] != kind:
        conn._vp = _shape(vp[0], vp[1], vp[2], kind)
    if timeout > 0:
        due = conn.last + timeout
        queued = conn.queued_at
        if queued == 0.0 or due < queued:
            conn.queued_at = due
            fw.timers.schedule(due, conn)


# --------------------------------------------------------------------------------------------------
# Teardown and expiry


# The ASA's stages' connections: a plain one, or one offloaded without its objects (whose record a
# teardown ends as it is, statewall.fastpath.FastPath.end).
_ASA_CONNS = (Connection, OffloadedConnection)


def teardown(fw, conn: Connection, now: float, reason: str, by: str | None, out: list, ev: list) -> None:
    """``conn`` leaves the table: its ConnTeardown (and conntrack's DESTROY), translations released."""
    if conn.closed:
        return
    if conn.fast is not None:
        # The record leaves the compiled table; its objects are not made again only to be dropped
        # (FastPath.end): what follows reads the Connection, its halves and its translations.
        fw.fast.end(conn)
    fw.conns.remove(conn)
    # The rarely set fields (limit, DCD, inspection, replay keys, ICMP type) are read from the one dict
    # the Connection keeps them in (``_extra``), once, rather than through a property each (what the
    # properties' setters do is written out: a field set to None is stored only in an existing dict).
    extra = conn._extra
    if extra is not None:
        limit = extra.get("limit")
        if limit is not None:
            limit.release()
            extra["limit"] = None
        extra["dcd"] = None
    ctype = type(conn)
    if ctype in _ASA_CONNS:
        # A connection of the ASA's stages keeps no ends of its own: they are what its ORIGINAL half
        # says, here with (version, int) addresses, formatted only if a log reads them. One the record
        # holds alone reads them from the record, without its halves made as views (original_of).
        got = original_of(conn) if ctype is OffloadedConnection else None
        if got is None:
            fwd = conn.halves[0]
            v, _, src, sport, dst, dport = fwd.key
            in_iface, out_iface = fwd.in_iface, fwd.out_iface
            new_src, new_sport, new_dst, new_dport = fwd.new_src, fwd.new_sport, fwd.new_dst, fwd.new_dport
        else:
            in_iface, out_iface, v, src, sport, dst, dport, new_src, new_sport, new_dst, new_dport = got
        # Compact records of the ends (events._endpoint): the Endpoints only if something reads them.
        initiator = (
            in_iface,
            v,
            src,
            sport,
            src if new_src is None else new_src,
            sport if new_sport is None else new_sport,
        )
        responder = (
            out_iface,
            v,
            dst if new_dst is None else new_dst,
            dport if new_dport is None else new_dport,
            dst,
            dport,
        )
        icmp = None if extra is None else extra.get("icmp")
    else:
        initiator, responder = conn.initiator, conn.responder
        icmp = conn.icmp  # netfilter's connection keeps its own (with its reply type)
    _, proto, direction, _ = conn._vp  # conn.proto, conn.direction without their properties
    # (type, code) of an ICMP connection (netfilter's keeps its reply type third), else None.
    icmp_type, icmp_code = (icmp[0], icmp[1]) if icmp else (None, None)
    ev.append(
        ConnTeardown(
            now,
            conn.id,
            proto,
            direction,
            initiator,
            responder,
            now - conn.created,
            conn.bytes,
            reason,
            by,
            icmp_type,
            icmp_code,
        )
    )
    if fw.nf_path is not None:
        fw.nf_path.destroyed(conn, now, ev)
    xl = conn._xl  # conn.xlates: None, the one translation, or a tuple of several
    if xl is not None:
        for x in xl if type(xl) is tuple else (xl,):
            shared = x._c  # (kind, ..., timeout at 7, ...): Xlate's shared tuple, without its properties
            if shared[0] == "nf":
                fw.nf_nat.release(x)
            elif fw.nat.release(x, now):
                fw.timers.schedule(now + shared[7], x)
    extra = conn._extra  # again: the calls above are others' (a release, netfilter's DESTROY)
    if extra is not None:
        helper = extra.get("helper")
        if helper is not None:
            helper.closed(now)
        replay_keys = extra.get("replay_keys")
        if replay_keys:
            # Only this connection's own entries: a scan of the whole index made teardown O(table).
            index = fw.replay_index
            for key in replay_keys:
                held = index.get(key)
                if held is not None and held.conn is conn:
                    del index[key]


def index_for_replay(fw, key: tuple, half: Half) -> None:
    """Remember how a capture taken without the firewall shows ``half``'s packets (replay_rewrite),
    once a replay adapter asked for it (nothing is kept per connection otherwise)."""
    index = fw.replay_index
    if index is None:
        return
    index[key] = half
    conn = half.conn
    if conn.replay_keys is None:
        conn.replay_keys = [key]
    else:
        conn.replay_keys.append(key)


def expire(fw, conn: Connection, due: float, out: list, ev: list) -> None:
    """``conn``'s timeout ran out at ``due``: the teardown its timeout kind ends with (``KINDS``)."""
    if conn.proto == PROTO_TCP:
        if conn.intercept is not None:
            asa_policy.intercept_failed(fw, conn, due, out, ev)
            return
        kind = conn.timeout_kind
        if kind == "idle":
            eff = conn.mpf
            if eff is not None and (eff.dcd or eff.idle_reset) and conn.fast is not None:
                # Dead Connection Detection's probes and idle reset's RSTs are made from the tracker's
                # and randomization's objects: the Python path takes the connection back first. A
                # plain expiry is the teardown alone, which ends the record without them (teardown).
                fw.fast.unoffload(conn)
            if eff is not None and eff.dcd and conn.tcp.state == TcpState.ESTABLISHED:
                dcd_start(fw, conn, due, out)
                return
            idle_teardown(fw, conn, due, out, ev)
            return
        # netfilter's path names the timeout after the tracker's state: conntrack's idle expiry.
        reason = KINDS[kind][2] if kind in KINDS else "Idle Timeout"
    else:
        reason = ""
    teardown(fw, conn, due, reason, None, out, ev)


def idle_teardown(fw, conn: Connection, when: float, out: list, ev: list) -> None:
    """An idle TCP connection goes; with ``idle ... reset`` both ends get a RST first."""
    eff = conn.mpf
    if eff is not None and eff.idle_reset and conn.tcp is not None:
        out.append(dcd.reset(conn, ORIGINAL))
        out.append(dcd.reset(conn, REPLY))
        teardown(fw, conn, when, "Flow timed out with reset", None, out, ev)
    else:
        teardown(fw, conn, when, "Idle Timeout", None, out, ev)


# --------------------------------------------------------------------------------------------------
# Dead Connection Detection (ASA): idle expiry probes both ends instead of freeing the connection


def dcd_start(fw, conn: Connection, due: float, out: list) -> None:
    eff = conn.mpf
    use = eff.set_by.get("dcd")
    probe = dcd.Probe(conn, eff.dcd_retry_interval, eff.dcd_max_retries, use.counters if use else None)
    conn.dcd = probe
    conn.queued_at = 0.0  # the idle timer is re-armed when probing ends with the connection alive
    out += probe.send(due)
    fw.timers.schedule(probe.due, probe)


def dcd_round(fw, probe: dcd.Probe, out: list, ev: list) -> None:
    conn = probe.conn
    if conn.closed or conn.dcd is not probe:
        return  # answered, or the connection was used or ended meanwhile
    when = probe.due
    if probe.exhausted:
        conn.dcd = None
        probe.counters["dcd_expirations"] += 1
        idle_teardown(fw, conn, when, out, ev)
        return
    out += probe.send(when)
    fw.timers.schedule(probe.due, probe)


def dcd_answer(fw, half: Half, pkt, now: float) -> bool:
    """A segment while DCD probes: True when it is a probe's answer (consumed, never forwarded)."""
    conn = half.conn
    probe = conn.dcd
    if probe.answers(half.dir, pkt):
        fw.stats["dcd_answers"] += 1
        if probe.alive:
            conn.dcd = None
            conn.last = now
            set_timeout(fw, conn, conn.timeout, "idle", now)
        return True
    # Anything else is the connection in use: it goes on as usual. The idle timer is armed again
    # now, not after forwarding, so that a segment dropped further on leaves the connection to expire.
    conn.dcd = None
    if conn.queued_at == 0.0:
        set_timeout(fw, conn, conn.timeout, conn.timeout_kind, now)
    return False


def _block_event(cls, b, now: float):
    v = b.version
    return cls(
        now,
        b.real_iface,
        (v, b.real_addr),  # formatted if a log reads them
        b.mapped_iface,
        (v, b.mapped_addr),
        b.end - b.start + 1,
        b.start,
        b.end,
    )


def block_events(fw, now: float) -> list:
    """305014/305015 for the port blocks the NAT table allocated and released since the last call;
    with interim logging, the first block held queues its next round (305017) on the timers."""
    from ..events import PortBlockAllocated, PortBlockReleased

    out = []
    allocated_any = False
    for allocated, b in fw.nat.take_block_events():
        allocated_any |= allocated
        out.append(_block_event(PortBlockAllocated if allocated else PortBlockReleased, b, now))
    if allocated_any:
        tick = fw.nat.next_interim_round(now)
        if tick is not None:
            fw.timers.schedule(tick.due, tick)
    return out


def interim_blocks(fw, tick, ev: list) -> None:
    """A round of port block interim logging (``xlate block-allocation pba-interim-logging``): a 305017
    for each block held at ``tick.due``, and the next round queued while blocks are held."""
    from ..events import PortBlockActive

    held, again = fw.nat.interim_round(tick)
    ev.extend(_block_event(PortBlockActive, b, tick.due) for b in held)
    if again is not None:
        fw.timers.schedule(again.due, again)


def asa_conn_flags(conn: Connection) -> str:
    """The ASA's ``show conn`` flags (reference A.5) derived from the tracked state."""
    if conn.proto != PROTO_TCP or conn.tcp is None:
        flags = ""
        if conn.data_seen[ORIGINAL] or conn.data_seen[REPLY]:
            inside_dir = ORIGINAL if conn.inside_is_initiator else REPLY
            if conn.data_seen[1 - inside_dir]:
                flags += "I"
            if conn.data_seen[inside_dir]:
                flags += "O"
        return flags if flags else "-"
    trk = conn.tcp
    inbound = not conn.inside_is_initiator
    state = trk.state
    if state == TcpState.SYN_SENT or state == TcpState.SYN_SENT2:
        return "SaAB" if inbound else "saA"
    if state == TcpState.SYN_RECV:
        return "aB" if inbound else "A"
    inside_dir = REPLY if inbound else ORIGINAL
    outside_dir = 1 - inside_dir
    flags = "U"
    if trk.fin_seen(inside_dir):
        flags += "f"
    if trk.fin_seen(outside_dir):
        flags += "F"
    # r: inside acknowledged the outside's FIN; R: outside acknowledged the inside's FIN.
    if trk.fin_acked(outside_dir):
        flags += "r"
    if trk.fin_acked(inside_dir):
        flags += "R"
    if conn.data_seen[outside_dir]:
        flags += "I"
    if conn.data_seen[inside_dir]:
        flags += "O"
    # B (initial SYN from outside) comes last, as in the ASA's "UfrIOB".
    return flags + "B" if inbound else flags
