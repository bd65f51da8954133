"""Linux's connection tracking on netfilter's path: ctstates, confirmation, NAT bindings, conntrack events.

Owns what the ASA's stages do not have: ``NfConnection`` (the ``ct->status`` bits), the outcome of
``nf_conntrack_in`` for one packet (``NfFlow``: its ctstate, its connection, what confirming a new one
takes; ``track``), the NAT bindings of a new connection (``bind_dst`` in PREROUTING, ``bind_src`` at
confirmation: ``statewall.nf_nat``), ``confirm`` (``nf_conntrack_confirm``: the connection enters the
shared table), conntrack's events (``ct_event``, ``after``, ``destroyed``) and ``-m connlimit``'s
counting (``CountList``, ``connlimit``). TCP is the shared ``statewall.tcptrack``; the timeouts are
``statewall.engine.lifecycle``'s.
"""

from __future__ import annotations

from ..conntrack import Connection, Half, make_halves, reply_key
from ..events import ConnBuilt, CtEvent, DropReason, Endpoint
from ..nat import NatFailure, Xlate
from ..nf_nat import NfRange, nf_range
from ..packet import Packet, addr_to_str
from ..policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Inspection
from ..tcptrack import INVALID, REPLY, InvalidReason, Reason, TcpState, TcpTracker
from . import forward, icmp, lifecycle
from .context import drop
from .lifecycle import GENERIC_TIMEOUT, LinuxLifecycle

# ICMP queries that may start a connection, and the type their answer has (nf_conntrack_proto_icmp's
# valid_new and invmap; ICMPv6's echo and node information queries).
ICMP_NEW = {4: {8: 0, 13: 14, 15: 16, 17: 18}, 6: {128: 129, 139: 140}}
# ICMPv6 messages conntrack leaves untracked (nf_conntrack_proto_icmpv6's noct_valid_new: MLD and
# neighbour discovery).
ICMPV6_UNTRACKED = frozenset({130, 131, 132, 133, 134, 135, 136, 137, 143})
UDP_STREAM_AFTER = 2.0  # a UDP connection still active this long after it started is a stream (ASSURED)
CLOSED_TCP = frozenset({TcpState.TIME_WAIT, TcpState.CLOSE})
# nf_conncount: at most this many + 1 stale tuples leave a list per cleaning; HZ for its once-a-jiffy
# cleaning (CONFIG_HZ of the kernels the connlimit tests ran against).
CONNCOUNT_GC_MAX_COLLECT = 64
HZ = 250


class NfConnection(Connection):
    """A connection on netfilter's path: the ``ct->status`` bits and per-connection facts the ASA's
    ``Connection`` has no use for. TCP keeps SEEN_REPLY/ASSURED in its tracker; other protocols here."""

    __slots__ = (
        "replied",
        "assured",
        "expected",
        "helper_name",
        "master",
        "children",
        "icmp",
        "ct_nat",
        "reported",
        "synproxy",
        "mark",
        "offload",
        "ct_settings",
    )

    def __init__(self, conn_id, version, proto, created, direction, initiator, responder, origin):
        super().__init__(conn_id, version, proto, created, direction, initiator, responder, origin)
        self.replied = False
        self.assured = False
        self.expected = False  # created from an expectation (IPS_EXPECTED): RELATED until answered
        self.helper_name: str | None = None  # the helper attached to this connection (``ftp``)
        self.master: NfConnection | None = None  # for an expected connection, its master
        self.children = 0  # live connections this one is the master of (each holds a reference)
        self.icmp: tuple[int, int, int] | None = None  # (type, code, reply type) of an ICMP query
        self.ct_nat: frozenset[str] = frozenset()
        self.reported: tuple = ()  # (state, replied, assured) the last conntrack event showed
        self.synproxy = None  # statewall.synproxy.Proxied for a connection SYNPROXY opened
        self.mark = 0  # ct->mark (CONNMARK, -m connmark, nft ct mark)
        self.offload = None  # its flowtable entry (statewall.engine.nf_flowtable.Offload), if offloaded
        self.ct_settings = None  # its own timeouts (an nft ct timeout object), else the sysctls

    def status(self) -> frozenset[str]:
        """The ``ct->status`` bits ``--ctstatus`` tests: CONFIRMED (in the table), EXPECTED,
        SEEN_REPLY, ASSURED."""
        bits = {"CONFIRMED"}
        if self.expected:
            bits.add("EXPECTED")
        if self.seen_reply():
            bits.add("SEEN_REPLY")
        if self.is_assured():
            bits.add("ASSURED")
        return frozenset(bits)

    def seen_reply(self) -> bool:
        trk = self.tcp
        return trk.seen_reply if trk is not None else self.replied

    def is_assured(self) -> bool:
        trk = self.tcp
        return trk.assured if trk is not None else self.assured


class NfFlow:
    """One packet's conntrack outcome: its ctstate, the half of the connection it belongs to (None
    when it has none), and for a connection not yet confirmed what confirming it takes."""

    __slots__ = ("state", "half", "why", "conn_id", "new", "trk", "exp", "orig", "xl_dst", "error")

    def __init__(self, state: str, half: Half | None = None, why: Reason | None = None) -> None:
        self.state = state
        self.half = half
        self.why = why  # conntrack's reason for INVALID
        self.conn_id: int | None = half.conn.id if half is not None else None
        self.new = False  # a connection that the packet creates if it is accepted
        self.trk: TcpTracker | None = None
        self.exp = None  # the expectation a RELATED new connection comes from
        self.orig: tuple[int, int, int, int] = (0, 0, 0, 0)  # src, sport, dst, dport as it arrived
        self.xl_dst: Xlate | None = None
        self.error = False  # an ICMP error RELATED to ``half``'s connection


def track(path, iface: str, pkt: Packet, now: float, out: list, ev: list) -> NfFlow:
    """``nf_conntrack_in``: find or start the packet's connection and run its protocol tracker."""
    if pkt.is_icmp_error:
        # An error belongs to the connection it quotes, never to one of its own (icmp_error).
        return related_error(path, pkt)
    fw = path.fw
    proto = pkt.proto
    key = (pkt.version, proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
    half = fw.conns.by_key.get(key)
    if half is not None and half.conn.deadline() <= now:
        # Expired but not yet reaped (the caller did not advance the clock): gone, as for the kernel.
        lifecycle.teardown(fw, half.conn, half.conn.deadline(), "Idle Timeout", None, out, ev)
        half = None
    if half is not None and proto in (PROTO_ICMP, PROTO_ICMPV6) and half.conn.icmp is not None:
        # The kernel's ICMP tuple holds the type and code, the reply tuple the answer's type
        # (nf_conntrack_proto_icmp.c icmp_pkt_to_tuple, icmp_invert_tuple; icmpv6 alike); the key
        # here holds the identifier only, so a query of another type or code than this direction's
        # is the kernel's lookup that misses: an echo request from the server on a ping's reply tuple
        # is NEW, an echo reply on its original tuple INVALID (it cannot start a connection).
        typ, code, reply_type = half.conn.icmp
        if pkt.icmp_code != code or pkt.icmp_type != (reply_type if half.dir == REPLY else typ):
            half = None
    if half is None:
        return new(path, iface, pkt, now)
    conn: NfConnection = half.conn
    d = half.dir
    replied = conn.seen_reply()
    settings = conn.ct_settings or path.settings
    if d == REPLY or replied:
        state = "ESTABLISHED"
    else:
        state = "RELATED" if conn.expected else "NEW"
    trk = conn.tcp
    if trk is not None:
        helper = conn.helper
        sp = conn.synproxy
        sa = sp.seqadj if sp is not None else helper.seqadj if helper is not None else None
        if sa is not None and sa.active:
            verdict, why = trk.packet(d, pkt, settings, ack_offset=sa.ack_offset(d, pkt.ack))
        else:
            verdict, why = trk.packet(d, pkt, settings)
        if trk.reopen:
            # A SYN into TIME_WAIT/CLOSE: the old entry goes and the SYN starts a new one.
            lifecycle.teardown(fw, conn, now, "TCP FINs", None, out, ev)
            return new(path, iface, pkt, now)
        if verdict is INVALID:
            flow = NfFlow("INVALID", why=why)
            flow.conn_id = conn.id
            return flow
        if trk.dead:
            # An unanswered connection reset: conntrack deletes it now; the RST itself goes on, with
            # the connection's translation.
            lifecycle.teardown(fw, conn, now, "TCP Reset", None, out, ev)
            return NfFlow(state, half)
        expiry = trk.expires(now, conn.deadline())
        if trk.refreshed:
            conn.last = now
        lifecycle.set_timeout(fw, conn, expiry - conn.last, trk.state.name, now)
    else:
        if proto == PROTO_UDP:
            timeout = settings.udp_timeout
            if replied and now > conn.created + UDP_STREAM_AFTER:
                timeout = settings.udp_timeout_stream
                conn.assured = True
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            timeout = settings.icmp_timeout
        else:
            timeout = GENERIC_TIMEOUT
        conn.last = now
        lifecycle.set_timeout(fw, conn, timeout, "idle", now)
        if d == REPLY:
            conn.replied = True
    return NfFlow(state, half)


def new(path, iface: str, pkt: Packet, now: float) -> NfFlow:
    """A packet without a connection: the one it would start (confirmed only if it is accepted)."""
    v = pkt.version
    proto = pkt.proto
    flow = NfFlow("NEW")
    if proto in (PROTO_ICMP, PROTO_ICMPV6):
        t = pkt.icmp_type
        if v == 6 and t in ICMPV6_UNTRACKED:
            return NfFlow("UNTRACKED")
        if t not in ICMP_NEW[v]:
            return NfFlow("INVALID", why=Reason(InvalidReason.INVALID_NEW))
    elif proto == PROTO_TCP:
        trk, why = TcpTracker.new(pkt, path.settings)
        if trk is None:
            return NfFlow("INVALID", why=why)
        flow.trk = trk
    fw = path.fw
    if proto == PROTO_TCP and fw.expect:
        exp = fw.expect.find(v, proto, iface, pkt.src, pkt.dst, pkt.dport, now)
        if exp is not None:
            flow.state = "RELATED"
            flow.exp = exp
    flow.new = True
    flow.orig = (pkt.src, pkt.sport, pkt.dst, pkt.dport)
    return flow


def related_error(path, pkt: Packet) -> NfFlow:
    """An ICMP error quoting a packet of a tracked connection is RELATED to it; else INVALID."""
    inner = pkt.inner()
    if inner is None or not inner.has_l4:
        return NfFlow("INVALID", why=Reason(InvalidReason.INVALID_ICMP_ERROR))
    half = path.fw.conns.by_key.get(icmp.quoted_key(inner))
    if half is None:
        return NfFlow("INVALID", why=Reason(InvalidReason.ICMP_ERROR_UNTRACKED))
    flow = NfFlow("RELATED", half)
    flow.error = True
    return flow


# --------------------------------------------------------------------------------------------------
# NAT bindings (statewall.nf_nat)


def bind_dst(path, flow: NfFlow, actions: list, iface: str, pkt: Packet, now: float, ev: list) -> bool:
    """The destination of a new connection: an expectation's, or the nat table's DNAT/REDIRECT, with
    the packet rewritten before routing. False when it was dropped."""
    exp = flow.exp
    if exp is not None:
        # nf_nat_follow_master: the data connection goes where its announcement said.
        forward.retarget(pkt, exp.real_dst, exp.real_dport)
        return True
    nat = None
    for a in actions:
        # NETMAP reached from PREROUTING/OUTPUT maps the destination (xt_NETMAP's HOOK2MANIP).
        if a.kind == "DNAT" or a.kind == "REDIRECT" or a.kind == "NETMAP":
            nat = a
    if nat is None:
        return True
    fw = path.fw
    v = pkt.version
    iface_addr = None
    if nat.kind == "REDIRECT":
        # The incoming interface's first address, as nf_nat_redirect does.
        iface_addr = fw.routes.interface_address(iface, v)
        if iface_addr is None:
            drop(
                fw, ev, DropReason.NAT_FAILED, iface, pkt, now, origin=nat.rule.origin,
                message=f"REDIRECT: interface {iface} has no IPv{v} address",
            )  # fmt: skip
            return False
    src, sport = pkt.src, pkt.sport
    by_key = fw.conns.by_key
    proto = pkt.proto

    def used(addr: int, port: int) -> bool:
        return (v, proto, addr, port, src, sport) in by_key

    try:
        xl = fw.nf_nat.translate(
            "dst", v, proto, src, sport, pkt.dst, pkt.dport,
            nf_range(nat.kind, nat.args, iface_addr, original=pkt.dst), used, now, rule=nat.rule,
        )  # fmt: skip
    except NatFailure as e:
        drop(fw, ev, DropReason.NAT_FAILED, iface, pkt, now, origin=nat.rule.origin, message=e.message)
        return False
    flow.xl_dst = xl
    if xl.mapped_addr != pkt.dst:
        pkt.set_dst(xl.mapped_addr)
    if proto not in (PROTO_ICMP, PROTO_ICMPV6) and xl.mapped_port != pkt.dport:
        pkt.set_dport(xl.mapped_port)
    return True


def bind_src(path, flow: NfFlow, actions: list, iface: str, egress: str | None, pkt: Packet, now, ev):
    """The source of a new connection after nat POSTROUTING (or INPUT): SNAT/MASQUERADE's, or the
    null binding's, which keeps the source unless its reply tuple is taken. Returns the Xlate (None
    when the source stays), or False when the packet was dropped."""
    fw = path.fw
    v = pkt.version
    proto = pkt.proto
    src, sport, dst, dport = pkt.src, pkt.sport, pkt.dst, pkt.dport
    nat = None
    for a in actions:
        if a.kind == "SNAT" or a.kind == "MASQUERADE" or a.kind == "NETMAP":
            nat = a
    by_key = fw.conns.by_key
    is_icmp = proto in (PROTO_ICMP, PROTO_ICMPV6)

    def used(addr: int, port: int) -> bool:
        return (v, proto, dst, port if is_icmp else dport, addr, port) in by_key

    exp = flow.exp
    if exp is not None:
        # nf_nat_follow_master: the source becomes where the master's announcing side sends to, so
        # a passive data connection from a masqueraded client leaves from the masquerade address.
        to = exp.master.halves[exp.direction].key[4]
        if to == src and not used(src, sport):
            return None
        rng = NfRange(to, to)
        rule = None
    elif nat is None:
        # Without a nat table there is no binding; a clash is refused when the connection is confirmed.
        if not path.has_nat[v] or not used(src, sport):
            return None
        rng = NfRange(src, src)
        rule = None
    else:
        rule = nat.rule
        iface_addr = None
        if nat.kind == "MASQUERADE":
            route = fw.routes.lookup(v, dst)
            near = route.gateway if route is not None and route.gateway is not None else dst
            iface_addr = fw.routes.interface_address(egress, v, near) if egress is not None else None
            if iface_addr is None:
                drop(
                    fw, ev, DropReason.NAT_FAILED, iface, pkt, now, egress=egress, origin=rule.origin,
                    message=f"MASQUERADE: interface {egress} has no IPv{v} address",
                )  # fmt: skip
                return False
        rng = nf_range(nat.kind, nat.args, iface_addr, original=src)
    try:
        return fw.nf_nat.translate("src", v, proto, src, sport, dst, dport, rng, used, now, rule=rule)
    except NatFailure as e:
        drop(
            fw, ev, DropReason.NAT_FAILED, iface, pkt, now, egress=egress,
            origin=rule.origin if rule is not None else None, message=e.message,
        )  # fmt: skip
        return False


def room(path, now: float, out: list, ev: list) -> bool:
    """Whether the table may take one more connection (``__nf_conntrack_alloc``, nf_conntrack_core.c).

    Past ``nf_conntrack_max`` the kernel's ``early_drop`` frees an entry that is not ASSURED
    (``nf_ct_can_early_drop``) to make room; when it finds none the packet is dropped and the kernel
    warns "nf_conntrack: table full, dropping packet". The kernel looks in a few hash buckets near the
    new tuple's; statewall takes the oldest entry confirmed without ASSURED that still is (a queue
    filled by ``confirm``; an entry assured or gone since leaves it when it comes up), so an unanswered
    SYN flood cannot crowd out established connections. Entries confirmed before a reload are not
    candidates.
    """
    fw = path.fw
    ct_max = path.settings.max
    if not ct_max or len(fw.conns) < ct_max:
        return True
    queue = path.unassured
    while queue:
        conn_id = next(iter(queue))
        conn = queue.pop(conn_id)
        if conn.closed or conn.is_assured():
            continue
        lifecycle.teardown(fw, conn, now, "early drop", None, out, ev)
        return True
    return False


def discard(path, flow: NfFlow) -> None:
    """A new connection that will not be confirmed gives back what it bound."""
    if flow.xl_dst is not None:
        path.fw.nf_nat.remove(flow.xl_dst)
        flow.xl_dst = None


# --------------------------------------------------------------------------------------------------
# Confirming a connection


def confirm(
    path, flow: NfFlow, actions, iface, egress, pkt: Packet, accepted_by, helper_rule, now, ev
) -> Half | None:
    """``nf_conntrack_confirm``: the accepted first packet's connection enters the table, with the
    source binding of nat POSTROUTING (or INPUT), its helper and its events. The packet keeps its
    original source here; the caller rewrites it with the rest of the source side."""
    fw = path.fw
    xl_src = bind_src(path, flow, actions, iface, egress, pkt, now, ev)
    if xl_src is False:
        discard(path, flow)
        return None
    v = pkt.version
    proto = pkt.proto
    is_icmp = proto in (PROTO_ICMP, PROTO_ICMPV6)
    src0, sport0, dst0, dport0 = flow.orig
    dst1, dport1 = pkt.dst, pkt.dport
    src1, sport1 = (xl_src.mapped_addr, xl_src.mapped_port) if xl_src is not None else (pkt.src, pkt.sport)
    if is_icmp:
        dport1 = sport1  # the identifier is the one "port" of both directions
    fwd_key = (v, proto, src0, sport0, dst0, dport0)
    rev_key = reply_key(fwd_key, (src1, sport1, dst1, dport1), is_icmp)
    if rev_key in fw.conns.by_key or fwd_key in fw.conns.by_key:
        if xl_src is not None:
            fw.nf_nat.remove(xl_src)
        discard(path, flow)
        drop(
            fw, ev, DropReason.NAT_FAILED, iface, pkt, now, egress=egress,
            message="the connection's reply tuple is in use by another connection",
        )  # fmt: skip
        return None
    conn_id = fw.next_id
    fw.next_id += fw.id_step
    itfs = fw.interfaces
    inbound = egress is not None and itfs[iface].security_level < itfs[egress].security_level
    initiator = Endpoint(iface, addr_to_str(v, src0), sport0, addr_to_str(v, src1), sport1)
    responder = Endpoint(egress or iface, addr_to_str(v, dst1), dport1, addr_to_str(v, dst0), dport0)
    origin = accepted_by.origin if accepted_by is not None else None
    conn = NfConnection(
        conn_id, v, proto, now, "inbound" if inbound else "outbound", initiator, responder, origin
    )
    conn.tcp = flow.trk
    fwd, rev = make_halves(conn, iface, egress, fwd_key, (src1, sport1, dst1, dport1), is_icmp)
    conn.halves = (fwd, rev)
    nat_flags = set()
    if fwd.new_src is not None or fwd.new_sport is not None:
        nat_flags.add("SNAT")
    if fwd.new_dst is not None or fwd.new_dport is not None:
        nat_flags.add("DNAT")
    conn.ct_nat = frozenset(nat_flags)
    xlates = tuple(x for x in (flow.xl_dst, xl_src) if x is not None)
    for x in xlates:
        fw.nf_nat.acquire(x)
    conn.xlates = xlates
    if is_icmp:
        t = pkt.icmp_type
        conn.icmp = (t, pkt.icmp_code, ICMP_NEW[v][t])
    fw.conns.add(conn)
    if path.settings.max:
        path.unassured[conn_id] = conn  # an early drop candidate until it is ASSURED
    LinuxLifecycle.opened(fw, conn, now, flow.trk.state.name if flow.trk is not None else "")
    exp = flow.exp
    if exp is not None:
        conn.expected = True
        master = exp.master
        if isinstance(master, NfConnection):
            conn.master = master
            master.children += 1
        fw.expect.consume(exp, conn, now)
        if fwd.new_dst is not None or fwd.new_dport is not None:
            # Replay: a capture shows this data connection going to the real address and port.
            lifecycle.index_for_replay(fw, (v, proto, src0, sport0, dst1, dport1), fwd)
    elif proto == PROTO_TCP:
        insp = helper_for(path, helper_rule, dport0, dport1)
        if insp is not None:
            conn.helper = fw.inspectors.attach_inspection(conn, insp)
            conn.helper_name = insp.protocol
    if rev.rewrites and egress is not None:
        # Replay: a capture taken without the firewall shows the answers going to the real source.
        lifecycle.index_for_replay(fw, (v, proto, dst1, dport1 if not is_icmp else sport0, src0, sport0), rev)
    fw.stats["connections"] += 1
    master = exp.master.id if exp is not None else None
    ev.append(
        ConnBuilt(now, conn_id, proto, conn.direction, initiator, responder, origin=origin, master=master)
    )
    ev.append(ct_event("NEW", conn, now))
    return fwd


def helper_for(path, rule, dport: int, real_dport: int) -> Inspection | None:
    """The inspection of a new TCP connection: the raw-table ``CT --helper`` rule that matched its
    first packet, else an inspection attached by port."""
    if rule is not None:
        # iptables: the CT target's --helper; nftables: a "ct helper set" statement of the rule.
        name = rule.target_args.get("helper") or next(
            (a.get("helper") for kind, a in rule.statements if kind == "CT"), None
        )
        if name != "ftp":
            return None
        found = path.rule_helpers.get((rule.origin, dport)) or path.rule_helpers.get(
            (rule.origin, real_dport)
        )
        return found or Inspection("ftp", (dport,), origin=rule.origin)
    return path.by_port.get(dport) or path.by_port.get(real_dport)


# --------------------------------------------------------------------------------------------------
# conntrack events


def after(conn: NfConnection, now: float, ev: list) -> None:
    """Conntrack's UPDATE event when this accepted packet changed the TCP state, SEEN_REPLY or
    ASSURED (the kernel delivers cached events when a packet is confirmed, so the changes a dropped
    packet made are reported with the next one that passes)."""
    if conn.closed:
        return
    trk = conn.tcp
    snapshot = (trk.state if trk is not None else None, conn.seen_reply(), conn.is_assured())
    if snapshot != conn.reported:
        ev.append(ct_event("UPDATE", conn, now))


def ct_event(kind: str, conn: NfConnection, now: float) -> CtEvent:
    trk = conn.tcp
    conn.reported = (trk.state if trk is not None else None, conn.seen_reply(), conn.is_assured())
    v = conn.version
    fwd, rev = conn.halves
    o = fwd.key
    r = rev.key
    left = conn.deadline() - now
    timeout = int(left + 1e-6) if left > 0 else None
    return CtEvent(
        now,
        kind,
        conn.id,
        conn.proto,
        (addr_to_str(v, o[2]), addr_to_str(v, o[4]), o[3], o[5]),
        (addr_to_str(v, r[2]), addr_to_str(v, r[4]), r[3], r[5]),
        timeout,
        trk.state.name if trk is not None else None,
        conn.icmp,
        conn.seen_reply(),
        conn.is_assured(),
        conn.helper_name,
        1 + conn.children,
    )


def destroyed(conn: Connection, now: float, ev: list) -> None:
    """The teardown's hook on netfilter's path: conntrack's DESTROY event."""
    if isinstance(conn, NfConnection):
        ev.append(ct_event("DESTROY", conn, now))
        if conn.master is not None:
            conn.master.children -= 1


def entries(fw, now: float) -> list[CtEvent]:
    """Every live connection as ``conntrack -L`` shows it at ``now``."""
    out = []
    for conn in fw.conns.by_id.values():
        if isinstance(conn, NfConnection) and conn.deadline() > now:
            out.append(ct_event("", conn, now))
    return out


# --------------------------------------------------------------------------------------------------
# -m connlimit (nf_conncount)


class CountList:
    """One group of a ``-m connlimit`` rule (nf_conncount_list): the original tuples it counted, in the
    order they joined, and the jiffy and length of its last cleaning."""

    __slots__ = ("entries", "last_gc", "last_gc_count")

    def __init__(self, tup: tuple, jiffy: int) -> None:
        self.entries = [tup]
        self.last_gc = jiffy
        self.last_gc_count = 0

    def add(self, tup: tuple, confirmed: bool, by_key: dict, jiffy: int) -> None:
        """``__nf_conncount_add`` for a connection not yet assured."""
        entries = self.entries
        fresh = len(entries) - self.last_gc_count < CONNCOUNT_GC_MAX_COLLECT
        if not confirmed and jiffy == self.last_gc and fresh:
            entries.append(tup)  # cleaned this jiffy already: added without a look
            return
        collected = 0
        i = 0
        while i < len(entries):
            if collected > CONNCOUNT_GC_MAX_COLLECT:
                break
            t = entries[i]
            found = by_key.get(t)
            if found is None:
                del entries[i]
                collected += 1
                continue
            if t == tup:
                return  # counted already
            trk = found.conn.tcp
            if trk is not None and trk.state in CLOSED_TCP:
                del entries[i]
                collected += 1
                continue
            i += 1
        self.last_gc = jiffy
        self.last_gc_count = len(entries)
        entries.append(tup)

    def collect(self, by_key: dict, jiffy: int) -> None:
        """``nf_conncount_gc_list``: drop what is gone or closed, once per jiffy."""
        if jiffy == self.last_gc:
            return
        entries = self.entries
        collected = 0
        i = 0
        while i < len(entries):
            found = by_key.get(entries[i])
            if found is None or (found.conn.tcp is not None and found.conn.tcp.state in CLOSED_TCP):
                del entries[i]
                collected += 1
                continue
            i += 1
            if collected > CONNCOUNT_GC_MAX_COLLECT:
                break
        self.last_gc = jiffy
        self.last_gc_count = len(entries)


def connlimit(path, groups: dict, key: int) -> int:
    """``-m connlimit`` as xt_connlimit counts (nf_conncount_count_skb, Linux 6.18 with its stable
    fixes): ``groups`` is the asking rule's own table (masked address -> ``CountList``), ``key`` the
    packet's masked address. Returns the group's count after the packet's connection was counted.

    A connection joins the list once, by its original tuple, when a packet of it reaches the rule
    before it is confirmed (its first packet) or before it is ASSURED; a packet of an assured
    connection only has the list cleaned (``nf_conncount_gc_list``). Cleaning removes the tuples
    whose connection is gone from the table (ended, or never confirmed: a refused SYN) or closed
    (TIME_WAIT, CLOSE), walking the list in order, stopping at the packet's own entry or after
    ``CONNCOUNT_GC_MAX_COLLECT`` + 1 removals; within one jiffy (1/``HZ`` s of the packet times) a
    list is cleaned once, so a burst of SYNs counts the refused ones until the next jiffy, as in the
    kernel. Not modelled: the kernel's cleaning of other groups met on the way to a new one.
    """
    flow = path.ct_flow
    p = path.ct_pkt
    by_key = path.fw.conns.by_key
    conn = None
    half = flow.half if flow is not None else None
    if half is not None:
        conn = half.conn
    elif flow is not None and flow.new:
        tup = (p.version, p.proto, *flow.orig)
    else:
        # No connection of its own (INVALID, UNTRACKED, before conntrack): the kernel looks the
        # packet's tuple up, and counts the connection it belongs to if there is one.
        tup = (p.version, p.proto, p.src, p.sport, p.dst, p.dport)
        found = by_key.get(tup)
        if found is not None:
            conn = found.conn
    if conn is not None:
        tup = conn.halves[0].key
    jiffy = int(path.ct_now * HZ)
    lst = groups.get(key)
    if lst is None or not lst.entries:
        groups[key] = CountList(tup, jiffy)
        return 1
    if conn is not None and isinstance(conn, NfConnection) and conn.is_assured():
        lst.collect(by_key, jiffy)
    else:
        lst.add(tup, conn is not None, by_key, jiffy)
    return len(lst.entries)


def timeout_policy(path, conn: NfConnection, args: dict, now: float) -> None:
    """``ct timeout set "NAME"`` on a connection not yet confirmed (nft_ct_timeout_obj_eval): its own
    timeouts from now on (the policy's states, the sysctls' for the others), and its timer set to the
    first one (syn_sent for TCP, unreplied for UDP: the kernel's values[0])."""
    import dataclasses

    from ..policy import NF_CT_TIMEOUT_STATES

    proto = {PROTO_TCP: "tcp", PROTO_UDP: "udp"}.get(conn.proto, "icmp")
    fields = NF_CT_TIMEOUT_STATES[proto]
    override = {fields[s]: float(v) for s, v in args["policy"].items() if fields.get(s)}
    conn.ct_settings = dataclasses.replace(path.settings, **override)
    first = getattr(conn.ct_settings, next(iter(fields.values())))
    trk = conn.tcp
    if trk is not None:
        trk._timeout = first  # what the tracker refreshes with until the next state
    conn.last = now
    lifecycle.set_timeout(path.fw, conn, first, trk.state.name if trk is not None else "idle", now)
