"""The iptables data path: the netfilter hooks one packet crosses, in Linux's order, around conntrack.

Owns the order of work for a policy in the iptables dialect and the Linux side of connection tracking
that the ASA's path does not have (ctstates, NAT bindings per connection, conntrack events):

- ``NfPath``: the engine's path for such a policy (``Firewall`` builds it once and hands every packet
  to ``NfPath.process``). Per packet, as Linux does it: raw PREROUTING (``CT --notrack``, ``CT
  --helper``), conntrack (the same ``TcpTracker`` with ``policy.conntrack``'s settings; UDP, ICMP and
  other protocols by their timeouts; RELATED for ICMP errors and for FTP expectations; a bad L4
  checksum INVALID under ``nf_conntrack_checksum``, a bad IPv4 header dropped before), mangle and nat
  PREROUTING (DNAT/REDIRECT/NETMAP bind the destination of a new connection, and the packet is rewritten at
  once), routing (the box's own addresses go to INPUT), the TTL and MTU checks of ``ip_forward``, filter
  FORWARD, mangle and nat POSTROUTING (SNAT/MASQUERADE/NETMAP bind the source), then the connection is
  confirmed and the source side rewritten. Later packets are translated by their connection, the
  destination side before routing and the source side after POSTROUTING, as the kernel's NAT hooks do,
  so FORWARD rules see the real destination of a reply to a masqueraded connection.
- ``packet_path(nf, pkt, in_iface, now, conntrack, route)``: the same hooks for a caller with its own
  conntrack and routing (the reference tracker below); it stops at the first DROP and returns every
  action (LOG lines, TCPMSS rewrites already applied, NAT targets, REJECT replies).
- ``EngineReplay``: captures through the engine as ``statewall replay`` runs them, keeping the events,
  for ``statewall iptables --after-replay`` (counters, LOG lines, ``conntrack -L``/``-E``).
- ``NetfilterReplay``: a small reference tracker (``statewall.tcptrack`` for TCP, seen-reply for UDP and
  ICMP, RELATED for ICMP errors about a tracked connection, no address translation) that runs captures
  through ``packet_path`` without the engine; kept to compare the engine against.
- ``conntrack_line``: a reference-tracker connection as ``conntrack -L`` or ``-E`` prints it (the
  engine's connections go through ``statewall.logfmt.linux`` from ``CtEvent``s).

What conntrack decides is the ruleset's to act on: INVALID is a ctstate, not a drop. A packet that is
INVALID or UNTRACKED has no connection, so Linux neither translates it nor shows it to a helper, and
neither does statewall (an INVALID reply to a masqueraded connection goes to the box itself). A packet
a rule drops yields one ``Drop``: ACL_DROP naming ``table/chain`` and the rule (or the chain's policy),
TCP_INVALID with conntrack's reason when the packet was INVALID. REJECT sends its reply first. LOG
yields ``NfLog`` events; connections yield ``CtEvent`` NEW, UPDATE and DESTROY as ``conntrack -E``
reports them.

Where statewall differs from Linux: packets the box answers itself go no further than INPUT (an echo
request is answered; nothing else is delivered), and what the box sends (echo replies, REJECT's
replies, ICMP errors) does not traverse OUTPUT; fragments are not reassembled before conntrack (a
first fragment carries the connection, later ones follow it). The exception is SYNPROXY
(``statewall.synproxy``): what it sends goes through OUTPUT and POSTROUTING (``local_out``), as the
kernel's synproxy sends it with ``ip_local_out``, because the connection to the server is created
there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import craft
from .conntrack import ORIGINAL, Connection, Half
from .events import ConnBuilt, CtEvent, DropReason, Endpoint, IcmpSent, NfLog
from .logfmt.linux import conntrack_line as _format_ct
from .logfmt.linux import conntrack_listing
from .nat import NatFailure, NfRange, Xlate, nf_range
from .netfilter import HOOK_TABLES, Action, Context, Decision, Netfilter
from .packet import DecodeError, Packet, addr_to_str, decode
from .policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Inspection, Policy
from .routing import RouteTable
from .synproxy import SynProxy
from .tcptrack import INVALID, REPLY, TcpState, TcpTracker

_ECHO = {(4, 8): (4, 0), (4, 0): (4, 8), (6, 128): (6, 129), (6, 129): (6, 128)}
_PROTO_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmpv6"}

# ICMP queries that may start a connection, and the type their answer has (nf_conntrack_proto_icmp's
# valid_new and invmap; ICMPv6's echo and node information queries).
_ICMP_NEW = {4: {8: 0, 13: 14, 15: 16, 17: 18}, 6: {128: 129, 139: 140}}
# ICMPv6 messages conntrack leaves untracked (nf_conntrack_proto_icmpv6's noct_valid_new: MLD and
# neighbour discovery).
_ICMPV6_UNTRACKED = frozenset({130, 131, 132, 133, 134, 135, 136, 137, 143})
GENERIC_TIMEOUT = 600.0  # nf_conntrack_generic_timeout
UDP_STREAM_AFTER = 2.0  # a UDP connection still active this long after it started is a stream (ASSURED)
FRAGMENT_TIMEOUT = 5.0  # how long later fragments may follow their first one (as the ASA path)
_TCP_RST = 0x04
_CLOSED_TCP = frozenset({TcpState.TIME_WAIT, TcpState.CLOSE})
# nf_conncount: at most this many + 1 stale tuples leave a list per cleaning; HZ for its once-a-jiffy
# cleaning (CONFIG_HZ of the kernels the connlimit tests ran against).
CONNCOUNT_GC_MAX_COLLECT = 64
HZ = 250

_RAW_PRE = Netfilter.before_conntrack("PREROUTING")
_PRE = Netfilter.after_conntrack("PREROUTING")
_PRE_NONAT = tuple(t for t in _PRE if t != "nat")
_FORWARD = HOOK_TABLES["FORWARD"]
_INPUT = HOOK_TABLES["INPUT"]
_INPUT_NONAT = tuple(t for t in _INPUT if t != "nat")
_POST = HOOK_TABLES["POSTROUTING"]
_POST_NONAT = tuple(t for t in _POST if t != "nat")
_RAW_OUT = Netfilter.before_conntrack("OUTPUT")
_OUT = Netfilter.after_conntrack("OUTPUT")
_OUT_NONAT = tuple(t for t in _OUT if t != "nat")

# Conntrack's reasons for INVALID that a sysctl would have let through, for a dropped packet's hint.
_INVALID_HINTS = (
    ("SEQ is over", "net.netfilter.nf_conntrack_tcp_be_liberal = 1"),
    ("ACK is over", "net.netfilter.nf_conntrack_tcp_be_liberal = 1"),
    ("invalid rst", "net.netfilter.nf_conntrack_tcp_ignore_invalid_rst = 1"),
    ("invalid new (not a SYN and tcp_loose is off)", "net.netfilter.nf_conntrack_tcp_loose = 1"),
    ("bad checksum", "net.netfilter.nf_conntrack_checksum = 0"),
)


@dataclass(slots=True)
class CtView:
    """What conntrack says about a packet: its ctstate, the master's helper for an expected
    connection, and "SNAT"/"DNAT" when the connection is translated."""

    ctstate: str
    master_helper: str | None = None
    ct_nat: frozenset[str] = frozenset()


@dataclass(slots=True)
class PathResult:
    """The outcome of one packet: ``verdict`` (ACCEPT or DROP), the deciding ``decision`` (its rule,
    chain and table; None when no table had a say), the ``hook`` it was decided at, ``local`` when the
    packet was for the box, the egress interface, the ctstate conntrack gave it, the helper a raw-table
    ``CT --helper`` attached, and every action in order."""

    verdict: str
    hook: str
    decision: Decision | None
    local: bool
    out_iface: str | None
    ctstate: str
    helper: str | None
    actions: list[Action] = field(default_factory=list)

    @property
    def logs(self) -> list[str]:
        return [a.args["text"] for a in self.actions if a.kind == "LOG"]


Conntrack = Callable[[Packet, str | None], CtView]
Router = Callable[[Packet, list[Action]], str | None]


# --------------------------------------------------------------------------------------------------
# The engine's path


class _CountList:
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
            if trk is not None and trk.state in _CLOSED_TCP:
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
            if found is None or (found.conn.tcp is not None and found.conn.tcp.state in _CLOSED_TCP):
                del entries[i]
                collected += 1
                continue
            i += 1
            if collected > CONNCOUNT_GC_MAX_COLLECT:
                break
        self.last_gc = jiffy
        self.last_gc_count = len(entries)


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

    def seen_reply(self) -> bool:
        trk = self.tcp
        return trk.seen_reply if trk is not None else self.replied

    def is_assured(self) -> bool:
        trk = self.tcp
        return trk.assured if trk is not None else self.assured


class _Flow:
    """One packet's conntrack outcome: its ctstate, the half of the connection it belongs to (None
    when it has none), and for a connection not yet confirmed what confirming it takes."""

    __slots__ = ("state", "half", "why", "conn_id", "new", "trk", "exp", "orig", "xl_dst", "error")

    def __init__(self, state: str, half: Half | None = None, why: str | None = None) -> None:
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


class NfPath:
    """Netfilter's data path inside one ``statewall.engine.Firewall`` (see the module docstring).

    Uses the engine's connection table, timers, NAT table (``NatTable.nf_translate``, Linux's
    allocator), expectation table, inspectors, routes and drop accounting; owns the compiled rulesets
    (``self.nf``, whose counters ``statewall iptables --after-replay`` lists).
    """

    __slots__ = (
        "fw",
        "nf",
        "settings",
        "has_nat",
        "by_port",
        "rule_helpers",
        "_ct_pkt",
        "_ct_flow",
        "_ct_now",
        "synproxy",
    )

    def __init__(self, fw) -> None:
        self.fw = fw
        policy = fw.policy
        self.nf = Netfilter(policy)
        self.settings = fw.ct
        self.has_nat = {4: "nat" in (policy.netfilter or {}), 6: "nat" in (policy.ip6_netfilter or {})}
        # Helpers come from raw-table ``CT --helper`` rules when their packets match them. Inspections not
        # stated by such a rule (``nf_conntrack_helper = 1``, or set by a caller) attach by port, as the
        # kernel's automatic helper assignment did.
        ct_rules = [
            rule.origin
            for tables in (policy.netfilter or {}, policy.ip6_netfilter or {})
            for chain in (tables["raw"].chains.values() if "raw" in tables else ())
            for rule in chain.rules
            if rule.target == "CT" and rule.target_args.get("helper")
        ]
        self.rule_helpers: dict = {}
        self.by_port: dict[int, Inspection] = {}
        # -m connlimit: the packet being evaluated and its conntrack outcome (None before conntrack).
        self._ct_pkt: Packet | None = None
        self._ct_flow: _Flow | None = None
        self._ct_now = 0.0
        self.synproxy = SynProxy(self)
        for port, insp in fw.inspectors.by_port.items():
            if insp.origin in ct_rules:
                self.rule_helpers[(insp.origin, port)] = insp
            else:
                self.by_port[port] = insp

    # -- the packet path ---------------------------------------------------------------------------

    def process(self, iface: str, pkt: Packet, now: float, out: list, ev: list, gso_size: int) -> None:
        """One received packet (``Firewall.receive`` for an iptables policy), on a known interface and
        with its L4 header (``Firewall._process`` handled the rest)."""
        fw = self.fw
        bad_csum = None
        if self.settings.checksum:
            bad_csum = pkt.verify_checksums()
            if bad_csum is DropReason.BAD_IP_CHECKSUM:
                fw._drop(ev, bad_csum, iface, pkt, now, message="bad IPv4 header checksum (ip_rcv)")
                return
        nf = self.nf
        ctx = Context(iface, None, "INVALID", now=now, connlimit=self._connlimit)
        self._ct_pkt = pkt
        self._ct_flow = None
        self._ct_now = now

        # raw PREROUTING: before conntrack, state matches see INVALID as in the kernel.
        d = nf.traverse("PREROUTING", pkt, ctx, _RAW_PRE)
        notrack = False
        helper_rule = None
        if d.actions:
            for a in d.actions:
                k = a.kind
                if k == "LOG":
                    ev.append(NfLog(now, a.args["text"], a.args["level"], "PREROUTING", a.rule.origin))
                elif k == "NOTRACK" or (k == "CT" and a.args.get("notrack")):
                    notrack = True
                elif k == "CT" and a.args.get("helper"):
                    helper_rule = a.rule
        if d.verdict != "ACCEPT":
            self._refused(d, "PREROUTING", iface, None, pkt, ctx, None, None, now, out, ev)
            return

        # conntrack
        if notrack:
            flow = _Flow("UNTRACKED")
        elif bad_csum is not None:
            flow = _Flow("INVALID", why="bad checksum")
        else:
            flow = self._track(iface, pkt, now, out, ev)
        half = flow.half
        conn = half.conn if half is not None else None
        ctx.ctstate = flow.state
        self._ct_flow = flow
        if conn is not None:
            ctx.ct_nat = conn.ct_nat
            if conn.master is not None:
                ctx.master_helper = conn.master.helper_name
        else:
            if flow.exp is not None:
                ctx.master_helper = flow.exp.master.helper_name

        # mangle and nat PREROUTING; then the destination side of the translation
        d = nf.traverse("PREROUTING", pkt, ctx, _PRE if flow.new else _PRE_NONAT)
        if d.actions:
            self._logs(d.actions, "PREROUTING", now, ev)
        if d.verdict != "ACCEPT":
            self._refused(d, "PREROUTING", iface, None, pkt, ctx, flow, None, now, out, ev)
            return
        if flow.new:
            if not self._bind_dst(flow, d.actions, iface, pkt, now, ev):
                return
        elif half is not None:
            if flow.error:
                _error_dst(half, pkt)
            elif half.rewrites:
                _rewrite_dst(half, pkt)

        # routing
        v = pkt.version
        if half is not None and not flow.new and not flow.error:
            egress = half.out_iface
            local = egress is None
        else:
            local = fw.routes.local_interface(v, pkt.dst) is not None
            egress = None
            if not local:
                route = fw.routes.lookup(v, pkt.dst)
                if route is None or route.interface not in fw.interfaces:
                    self._discard(flow)
                    fw._drop(
                        ev,
                        DropReason.NO_ROUTE,
                        iface,
                        pkt,
                        now,
                        hint=f"add a route for {addr_to_str(v, pkt.dst)}",
                        message="no route" if route is None else f"egress {route.interface} is down",
                    )
                    return
                egress = route.interface
        if local:
            self._deliver(flow, iface, pkt, ctx, now, out, ev)
            return

        # ip_forward: TTL and MTU are checked, and the TTL lowered, before the FORWARD hook.
        ttl = pkt.ttl
        if ttl <= 1:
            self._discard(flow)
            fw._time_exceeded(iface, pkt, now, out, ev)
            return
        mtu = fw.interfaces[egress].mtu
        size = pkt.total_len if not gso_size else pkt.l3_len + (pkt.doff or 8) + gso_size
        if size > mtu and not fw._too_big(iface, pkt, mtu, now, out, ev):
            self._discard(flow)
            return
        pkt.set_ttl(ttl - 1)
        ctx.out_iface = egress

        d = nf.traverse("FORWARD", pkt, ctx, _FORWARD)
        if d.actions:
            self._logs(d.actions, "FORWARD", now, ev)
        if d.verdict != "ACCEPT":
            if d.rule is not None and d.rule.target == "SYNPROXY":
                self._discard(flow)
                self.synproxy.target(d.rule, flow.state, iface, egress, pkt, now, out, ev)
                return
            self._refused(d, "FORWARD", iface, egress, pkt, ctx, flow, half, now, out, ev)
            return
        accepted_by = d.rule
        d = nf.traverse("POSTROUTING", pkt, ctx, _POST if flow.new else _POST_NONAT)
        if d.actions:
            self._logs(d.actions, "POSTROUTING", now, ev)
        if d.verdict != "ACCEPT":
            self._refused(d, "POSTROUTING", iface, egress, pkt, ctx, flow, half, now, out, ev)
            return

        if flow.new:
            half = self._confirm(flow, d.actions, iface, egress, pkt, accepted_by, helper_rule, now, ev)
            if half is None:
                return
            conn = half.conn
        if conn is None:
            # INVALID or UNTRACKED: no connection, so no translation and no helper.
            fw.stats["forwarded"] += 1
            out.append((egress, pkt.buf))
            return
        if flow.error:
            # A RELATED error refreshes nothing; it only carries its connection's translation.
            _error_src(half, pkt)
            fw.stats["forwarded"] += 1
            out.append((egress, pkt.buf))
            return
        helper = conn.helper
        if helper is not None:
            refusal = helper.inspect(half, pkt, now, ev)
            if refusal is not None:
                fw._drop(
                    ev,
                    DropReason.INSPECT_FTP,
                    iface,
                    pkt,
                    now,
                    egress=egress,
                    origin=refusal.origin,
                    message=refusal.message,
                    detail={"conn": conn.id},
                )
                if refusal.close:
                    fw._teardown(conn, now, "Flow closed by inspection", iface, out, ev)
                return
        if half.rewrites:
            _rewrite_src(half, pkt)
        sp = conn.synproxy
        if sp is not None:
            # SYNPROXY's hook sees the translated packet before the sequence adjustment, as in the kernel.
            if self.synproxy.hook(conn, half, pkt, now, out, ev):
                return
            if sp.seqadj.active:
                sp.seqadj.adjust(half.dir, pkt)
        elif helper is not None and helper.seqadj.active:
            helper.seqadj.adjust(half.dir, pkt)
        plen = pkt.payload_len
        if plen:
            conn.bytes += plen
            conn.data_seen[half.dir] = True
        fw.stats["forwarded"] += 1
        out.append((egress, pkt.buf))
        if pkt.mf:
            # First fragment of a datagram: its later fragments follow this half.
            fw._frag_flows[(pkt.version, pkt.proto, half.key[2], half.key[4], pkt.ip_id)] = (
                half,
                now + FRAGMENT_TIMEOUT,
            )
        self._after(conn, now, out, ev)

    # -- conntrack ---------------------------------------------------------------------------------

    def _track(self, iface: str, pkt: Packet, now: float, out: list, ev: list) -> _Flow:
        """``nf_conntrack_in``: find or start the packet's connection and run its protocol tracker."""
        if pkt.is_icmp_error:
            # An error belongs to the connection it quotes, never to one of its own (icmp_error).
            return self._related_error(pkt)
        fw = self.fw
        v = pkt.version
        proto = pkt.proto
        key = (v, proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
        half = fw.conns.by_key.get(key)
        if half is not None and half.conn.deadline() <= now:
            # Expired but not yet reaped (the caller did not advance the clock): gone, as for the kernel.
            fw._teardown(half.conn, half.conn.deadline(), "Idle Timeout", None, out, ev)
            half = None
        if half is None:
            return self._new(iface, pkt, now, out, ev)
        conn: NfConnection = half.conn
        d = half.dir
        replied = conn.seen_reply()
        if d == REPLY or replied:
            state = "ESTABLISHED"
        else:
            state = "RELATED" if conn.expected else "NEW"
        settings = self.settings
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
                fw._teardown(conn, now, "TCP FINs", None, out, ev)
                return self._new(iface, pkt, now, out, ev)
            if verdict is INVALID:
                flow = _Flow("INVALID", why=why)
                flow.conn_id = conn.id
                return flow
            if trk.dead:
                # An unanswered connection reset: conntrack deletes it now; the RST itself goes on, with
                # the connection's translation.
                fw._teardown(conn, now, "TCP Reset", None, out, ev)
                return _Flow(state, half)
            expiry = trk.expires(now, conn.deadline())
            if trk.refreshed:
                conn.last = now
            fw._set_timeout(conn, expiry - conn.last, trk.state.name, now)
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
            fw._set_timeout(conn, timeout, "idle", now)
            if d == REPLY:
                conn.replied = True
        return _Flow(state, half)

    def _new(self, iface: str, pkt: Packet, now: float, out: list, ev: list) -> _Flow:
        """A packet without a connection: the one it would start (confirmed only if it is accepted)."""
        v = pkt.version
        proto = pkt.proto
        flow = _Flow("NEW")
        if proto in (PROTO_ICMP, PROTO_ICMPV6):
            t = pkt.icmp_type
            if v == 6 and t in _ICMPV6_UNTRACKED:
                return _Flow("UNTRACKED")
            if t not in _ICMP_NEW[v]:
                return _Flow("INVALID", why="invalid new")
        elif proto == PROTO_TCP:
            trk, why = TcpTracker.new(pkt, self.settings)
            if trk is None:
                return _Flow("INVALID", why=why)
            flow.trk = trk
        fw = self.fw
        if proto == PROTO_TCP and fw.expect:
            exp = fw.expect.find(v, proto, iface, pkt.src, pkt.dst, pkt.dport, now)
            if exp is not None:
                flow.state = "RELATED"
                flow.exp = exp
        flow.new = True
        flow.orig = (pkt.src, pkt.sport, pkt.dst, pkt.dport)
        return flow

    def _related_error(self, pkt: Packet) -> _Flow:
        """An ICMP error quoting a packet of a tracked connection is RELATED to it; else INVALID."""
        inner = pkt.inner()
        if inner is None or not inner.has_l4:
            return _Flow("INVALID", why="invalid icmp error")
        key = (inner.version, inner.proto, inner.dst, inner.dport, inner.src, inner.sport)
        half = self.fw.conns.by_key.get(key)
        if half is None:
            return _Flow("INVALID", why="icmp error for no tracked connection")
        flow = _Flow("RELATED", half)
        flow.error = True
        return flow

    # -- NAT bindings ------------------------------------------------------------------------------

    def _bind_dst(self, flow: _Flow, actions: list, iface: str, pkt: Packet, now: float, ev: list) -> bool:
        """The destination of a new connection: an expectation's, or the nat table's DNAT/REDIRECT, with
        the packet rewritten before routing. False when it was dropped."""
        exp = flow.exp
        if exp is not None:
            # nf_nat_follow_master: the data connection goes where its announcement said.
            if exp.real_dst != pkt.dst:
                pkt.set_dst(exp.real_dst)
            if exp.real_dport != pkt.dport:
                pkt.set_dport(exp.real_dport)
            return True
        nat = None
        for a in actions:
            # NETMAP reached from PREROUTING/OUTPUT maps the destination (xt_NETMAP's HOOK2MANIP).
            if a.kind == "DNAT" or a.kind == "REDIRECT" or a.kind == "NETMAP":
                nat = a
        if nat is None:
            return True
        fw = self.fw
        v = pkt.version
        iface_addr = None
        if nat.kind == "REDIRECT":
            # The incoming interface's first address, as nf_nat_redirect does.
            iface_addr = fw.routes.interface_address(iface, v)
            if iface_addr is None:
                fw._drop(
                    ev,
                    DropReason.NAT_FAILED,
                    iface,
                    pkt,
                    now,
                    origin=nat.rule.origin,
                    message=f"REDIRECT: interface {iface} has no IPv{v} address",
                )
                return False
        src, sport = pkt.src, pkt.sport
        by_key = fw.conns.by_key
        proto = pkt.proto

        def used(addr: int, port: int) -> bool:
            return (v, proto, addr, port, src, sport) in by_key

        try:
            xl = fw.nat.nf_translate(
                "dst", v, proto, src, sport, pkt.dst, pkt.dport,
                nf_range(nat.kind, nat.args, iface_addr, original=pkt.dst), used, now, rule=nat.rule,
            )  # fmt: skip
        except NatFailure as e:
            fw._drop(ev, DropReason.NAT_FAILED, iface, pkt, now, origin=nat.rule.origin, message=e.message)
            return False
        flow.xl_dst = xl
        if xl.mapped_addr != pkt.dst:
            pkt.set_dst(xl.mapped_addr)
        if proto not in (PROTO_ICMP, PROTO_ICMPV6) and xl.mapped_port != pkt.dport:
            pkt.set_dport(xl.mapped_port)
        return True

    def _bind_src(self, flow: _Flow, actions: list, iface: str, egress: str | None, pkt: Packet, now, ev):
        """The source of a new connection after nat POSTROUTING (or INPUT): SNAT/MASQUERADE's, or the
        null binding's, which keeps the source unless its reply tuple is taken. Returns the Xlate (None
        when the source stays), or False when the packet was dropped."""
        fw = self.fw
        v = pkt.version
        proto = pkt.proto
        src, sport, dst, dport = pkt.src, pkt.sport, pkt.dst, pkt.dport
        nat = None
        for a in actions:
            if a.kind == "SNAT" or a.kind == "MASQUERADE" or a.kind == "NETMAP":
                nat = a
        by_key = fw.conns.by_key
        icmp = proto in (PROTO_ICMP, PROTO_ICMPV6)

        def used(addr: int, port: int) -> bool:
            return (v, proto, dst, port if icmp else dport, addr, port) in by_key

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
            if not self.has_nat[v] or not used(src, sport):
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
                    fw._drop(
                        ev,
                        DropReason.NAT_FAILED,
                        iface,
                        pkt,
                        now,
                        egress=egress,
                        origin=rule.origin,
                        message=f"MASQUERADE: interface {egress} has no IPv{v} address",
                    )
                    return False
            rng = nf_range(nat.kind, nat.args, iface_addr, original=src)
        try:
            return fw.nat.nf_translate("src", v, proto, src, sport, dst, dport, rng, used, now, rule=rule)
        except NatFailure as e:
            fw._drop(
                ev,
                DropReason.NAT_FAILED,
                iface,
                pkt,
                now,
                egress=egress,
                origin=rule.origin if rule is not None else None,
                message=e.message,
            )
            return False

    def _discard(self, flow: _Flow) -> None:
        """A new connection that will not be confirmed gives back what it bound."""
        if flow.xl_dst is not None:
            self.fw.nat.remove(flow.xl_dst)
            flow.xl_dst = None

    # -- confirming a connection -------------------------------------------------------------------

    def _confirm(
        self, flow: _Flow, actions, iface, egress, pkt: Packet, accepted_by, helper_rule, now, ev
    ) -> Half | None:
        """``nf_conntrack_confirm``: the accepted first packet's connection enters the table, with the
        source binding of nat POSTROUTING (or INPUT), its helper and its events. The packet keeps its
        original source here; the caller rewrites it with the rest of the source side."""
        fw = self.fw
        xl_src = self._bind_src(flow, actions, iface, egress, pkt, now, ev)
        if xl_src is False:
            self._discard(flow)
            return None
        v = pkt.version
        proto = pkt.proto
        icmp = proto in (PROTO_ICMP, PROTO_ICMPV6)
        src0, sport0, dst0, dport0 = flow.orig
        dst1, dport1 = pkt.dst, pkt.dport
        src1, sport1 = (
            (xl_src.mapped_addr, xl_src.mapped_port) if xl_src is not None else (pkt.src, pkt.sport)
        )
        if icmp:
            dport1 = sport1  # the identifier is the one "port" of both directions
        fwd_key = (v, proto, src0, sport0, dst0, dport0)
        rev_key = (v, proto, dst1, dport1, src1, sport1)
        if rev_key in fw.conns.by_key or fwd_key in fw.conns.by_key:
            if xl_src is not None:
                fw.nat.remove(xl_src)
            self._discard(flow)
            fw._drop(
                ev,
                DropReason.NAT_FAILED,
                iface,
                pkt,
                now,
                egress=egress,
                message="the connection's reply tuple is in use by another connection",
            )
            return None
        conn_id = fw._next_id
        fw._next_id += 1
        itfs = fw.interfaces
        inbound = egress is not None and itfs[iface].security_level < itfs[egress].security_level
        initiator = Endpoint(iface, addr_to_str(v, src0), sport0, addr_to_str(v, src1), sport1)
        responder = Endpoint(egress or iface, addr_to_str(v, dst1), dport1, addr_to_str(v, dst0), dport0)
        origin = accepted_by.origin if accepted_by is not None else None
        conn = NfConnection(
            conn_id, v, proto, now, "inbound" if inbound else "outbound", initiator, responder, origin
        )
        conn.tcp = flow.trk
        fwd = Half(
            conn,
            ORIGINAL,
            iface,
            egress,
            fwd_key,
            src1 if src1 != src0 else None,
            sport1 if sport1 != sport0 else None,
            dst1 if dst1 != dst0 else None,
            dport1 if dport1 != dport0 and not icmp else None,
        )
        rev = Half(
            conn,
            REPLY,
            egress,
            iface,
            rev_key,
            dst0 if dst1 != dst0 else None,
            sport0 if icmp and sport1 != sport0 else (dport0 if dport1 != dport0 and not icmp else None),
            src0 if src1 != src0 else None,
            sport0 if sport1 != sport0 and not icmp else None,
        )
        conn.halves = (fwd, rev)
        nat_flags = set()
        if fwd.new_src is not None or fwd.new_sport is not None:
            nat_flags.add("SNAT")
        if fwd.new_dst is not None or fwd.new_dport is not None:
            nat_flags.add("DNAT")
        conn.ct_nat = frozenset(nat_flags)
        xlates = tuple(x for x in (flow.xl_dst, xl_src) if x is not None)
        for x in xlates:
            fw.nat.acquire(x)
        conn.xlates = xlates
        if icmp:
            t = pkt.icmp_type
            conn.icmp = (t, pkt.icmp_code, _ICMP_NEW[v][t])
        fw.conns.add(conn)
        settings = self.settings
        if flow.trk is not None:
            fw._set_timeout(conn, flow.trk.timeout(settings), flow.trk.state.name, now)
        elif proto == PROTO_UDP:
            fw._set_timeout(conn, settings.udp_timeout, "idle", now)
        elif icmp:
            fw._set_timeout(conn, settings.icmp_timeout, "idle", now)
        else:
            fw._set_timeout(conn, GENERIC_TIMEOUT, "idle", now)
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
                fw._index_for_replay((v, proto, src0, sport0, dst1, dport1), fwd)
        elif proto == PROTO_TCP:
            insp = self._helper_for(helper_rule, dport0, dport1)
            if insp is not None:
                conn.helper = fw.inspectors.attach_inspection(conn, insp)
                conn.helper_name = insp.protocol
        if rev.rewrites and egress is not None:
            # Replay: a capture taken without the firewall shows the answers going to the real source.
            fw._index_for_replay((v, proto, dst1, dport1 if not icmp else sport0, src0, sport0), rev)
        fw.stats["connections"] += 1
        ev.append(ConnBuilt(now, conn_id, proto, conn.direction, initiator, responder, origin=origin))
        ev.append(self._ct_event("NEW", conn, now))
        return fwd

    def _helper_for(self, rule, dport: int, real_dport: int) -> Inspection | None:
        """The inspection of a new TCP connection: the raw-table ``CT --helper`` rule that matched its
        first packet, else an inspection attached by port."""
        if rule is not None:
            name = str(rule.target_args.get("helper"))
            if name != "ftp":
                return None
            found = self.rule_helpers.get((rule.origin, dport)) or self.rule_helpers.get(
                (rule.origin, real_dport)
            )
            return found or Inspection("ftp", (dport,), origin=rule.origin)
        return self.by_port.get(dport) or self.by_port.get(real_dport)

    # -- the box itself ----------------------------------------------------------------------------

    def _deliver(self, flow: _Flow, iface: str, pkt: Packet, ctx: Context, now: float, out, ev) -> None:
        """A packet for one of the box's own addresses: INPUT decides; an accepted echo request is
        answered, anything else is taken in (statewall runs no services)."""
        fw = self.fw
        d = self.nf.traverse("INPUT", pkt, ctx, _INPUT if flow.new else _INPUT_NONAT)
        if d.actions:
            self._logs(d.actions, "INPUT", now, ev)
        if d.verdict != "ACCEPT":
            if d.rule is not None and d.rule.target == "SYNPROXY":
                self._discard(flow)
                self.synproxy.target(d.rule, flow.state, iface, None, pkt, now, out, ev)
                return
            self._refused(d, "INPUT", iface, None, pkt, ctx, flow, flow.half, now, out, ev)
            return
        half = flow.half
        if flow.new:
            half = self._confirm(flow, d.actions, iface, None, pkt, d.rule, None, now, ev)
            if half is None:
                return
        fw.stats["to_the_box"] += 1
        v = pkt.version
        if pkt.proto in (PROTO_ICMP, PROTO_ICMPV6) and (v, pkt.icmp_type) in ((4, 8), (6, 128)):
            start = pkt.l4off + 8
            seq = int.from_bytes(pkt.buf[pkt.l4off + 6 : pkt.l4off + 8], "big")
            reply = craft.icmp_echo(
                v, pkt.dst, pkt.src, pkt.icmp_id, seq, bytes(pkt.buf[start : pkt.total_len]), reply=True
            )
            out.append((iface, reply))
            if half is not None and not flow.error:
                # The reply leaves through conntrack as the connection's answer.
                conn = half.conn
                conn.replied = True
                self._after(conn, now, out, ev)
            return
        if half is not None and not flow.error:
            self._after(half.conn, now, out, ev)

    def local_out(
        self, pkt: Packet, iface: str, now: float, out: list, ev: list, *, half: Half | None = None,
        ctstate: str | None = None, rule=None, attach=None,
    ) -> Half | None:  # fmt: skip
        """A packet the box sends itself (SYNPROXY's), as ``ip_local_out`` sends it: routed, then raw,
        conntrack, mangle, nat and filter OUTPUT, then POSTROUTING. Returns its connection's half, or None
        when it has none or was dropped.

        ``half`` with ``ctstate``: the packet belongs to that direction of a connection already (the
        kernel sets the conntrack entry on it before sending) and is not tracked again; ``ctstate``
        alone: it has no connection (``UNTRACKED``). Otherwise conntrack finds or creates its connection,
        whose original direction arrives on ``iface``; a new one is confirmed with ``rule`` as its origin
        and gets ``attach(seqadj)`` as its SYNPROXY state (the kernel's template extension).
        """
        fw = self.fw
        nf = self.nf
        v = pkt.version
        if half is not None:
            egress = half.out_iface
        elif fw.routes.local_interface(v, pkt.dst) is not None:
            egress = None
        else:
            route = fw.routes.lookup(v, pkt.dst)
            if route is None or route.interface not in fw.interfaces:
                fw._drop(ev, DropReason.NO_ROUTE, iface, pkt, now, message="no route for its own packet")
                return None
            egress = route.interface
        ctx = Context(None, egress, "INVALID", now=now, connlimit=self._connlimit)
        self._ct_pkt = pkt
        self._ct_flow = None
        self._ct_now = now
        d = nf.traverse("OUTPUT", pkt, ctx, _RAW_OUT)
        notrack = False
        for a in d.actions:
            if a.kind == "LOG":
                ev.append(NfLog(now, a.args["text"], a.args["level"], "OUTPUT", a.rule.origin))
            elif a.kind == "NOTRACK" or (a.kind == "CT" and a.args.get("notrack")):
                notrack = True
        if d.verdict != "ACCEPT":
            self._refused(d, "OUTPUT", iface, egress, pkt, ctx, None, None, now, [], ev)
            return None
        tracked = half is None and ctstate is None and not notrack
        if half is not None:
            flow = _Flow(ctstate or "ESTABLISHED", half)
        elif not tracked:
            flow = _Flow(ctstate or "UNTRACKED")
        else:
            flow = self._track(iface, pkt, now, out, ev)
        ctx.ctstate = flow.state
        self._ct_flow = flow
        if flow.half is not None:
            ctx.ct_nat = flow.half.conn.ct_nat
        d = nf.traverse("OUTPUT", pkt, ctx, _OUT if flow.new else _OUT_NONAT)
        if d.actions:
            self._logs(d.actions, "OUTPUT", now, ev)
        if d.verdict != "ACCEPT":
            self._refused(d, "OUTPUT", iface, egress, pkt, ctx, flow, flow.half, now, [], ev)
            return None
        if flow.new:
            if not self._bind_dst(flow, d.actions, iface, pkt, now, ev):
                return None
        elif tracked and flow.half is not None and flow.half.rewrites and not flow.error:
            _rewrite_dst(flow.half, pkt)
        d = nf.traverse("POSTROUTING", pkt, ctx, _POST if flow.new else _POST_NONAT)
        if d.actions:
            self._logs(d.actions, "POSTROUTING", now, ev)
        if d.verdict != "ACCEPT":
            self._refused(d, "POSTROUTING", iface, egress, pkt, ctx, flow, flow.half, now, [], ev)
            return None
        half = flow.half
        if flow.new:
            half = self._confirm(flow, d.actions, iface, egress, pkt, rule, None, now, ev)
            if half is None:
                return None
            if attach is not None:
                helper = half.conn.helper
                half.conn.synproxy = attach(helper.seqadj if helper is not None else None)
        if half is not None and not flow.error:
            conn = half.conn
            if tracked and half.rewrites:
                _rewrite_src(half, pkt)
            sp = conn.synproxy
            if sp is not None:
                self.synproxy.hook(conn, half, pkt, now, out, ev)
                if sp.seqadj.active:
                    sp.seqadj.adjust(half.dir, pkt)
            if tracked:
                self._after(conn, now, out, ev)
        if egress is None:
            fw.stats["to_the_box"] += 1
            return half
        out.append((egress, pkt.buf))
        return half

    # -- refusals ----------------------------------------------------------------------------------

    def _refused(self, d: Decision, hook, iface, egress, pkt: Packet, ctx, flow, half, now, out, ev) -> None:
        """A table dropped the packet: REJECT's reply, then one Drop naming the table, chain and rule."""
        fw = self.fw
        if flow is not None:
            self._discard(flow)
        message = ""
        for a in d.actions:
            if a.kind == "REJECT":
                message = f"rejected with {a.args['with']}"
                self._reject(a.args["reply"], str(a.args["with"]), hook, iface, pkt, flow, now, out, ev)
            elif a.kind == "TCPMSS" and "error" in a.args:
                message = str(a.args["error"])
        chain = d.chain
        table = d.table
        tables = fw.policy.netfilter if pkt.version == 4 else fw.policy.ip6_netfilter
        nc = (tables or {}).get(table)
        nc = nc.chains.get(chain) if nc is not None else None
        rule = d.rule
        if rule is not None:
            origin = rule.origin
            number = next((i for i, r in enumerate(nc.rules, 1) if r is rule), 0) if nc is not None else 0
            where = f"{table}/{chain} rule {number}"
        else:
            origin = nc.origin if nc is not None else None
            where = f"{table}/{chain} policy {d.verdict}"
        detail = {"ctstate": ctx.ctstate, "hook": hook}
        cid = flow.conn_id if flow is not None else None
        if cid is not None:
            detail["conn"] = cid
        if ctx.ctstate == "INVALID":
            why = (flow.why if flow is not None else None) or "ctstate INVALID"
            hint = next((h for prefix, h in _INVALID_HINTS if why.startswith(prefix)), None)
            fw._drop(
                ev,
                DropReason.TCP_INVALID,
                iface,
                pkt,
                now,
                egress=egress,
                acl=f"{table}/{chain}",
                origin=origin,
                hint=hint,
                message=why,
                detail=detail,
            )
            return
        fw._drop(
            ev,
            DropReason.ACL_DROP,
            iface,
            pkt,
            now,
            egress=egress,
            acl=f"{table}/{chain}",
            origin=origin,
            hint=f"an ACCEPT rule for this flow before {where}",
            message=message or f"dropped by {where}",
            detail=detail,
        )

    def _reject(self, reply: tuple, with_: str, hook, iface, pkt: Packet, flow, now, out, ev) -> None:
        """REJECT's answer to the sender, as the sender addressed the packet (a destination translated
        in PREROUTING is put back, as conntrack does for the kernel's reply)."""
        fw = self.fw
        v = pkt.version
        orig = pkt
        if flow is not None and (flow.new or flow.half is not None) and not flow.error:
            dst0, dport0 = (flow.orig[2], flow.orig[3]) if flow.new else (flow.half.key[4], flow.half.key[5])
            if dst0 != pkt.dst or (dport0 != pkt.dport and pkt.proto in (PROTO_TCP, PROTO_UDP)):
                orig = decode(bytearray(pkt.buf[pkt.ipoff : pkt.end]))
                orig.set_dst(dst0)
                if pkt.proto in (PROTO_TCP, PROTO_UDP):
                    orig.set_dport(dport0)
        if reply[0] == "tcp-reset":
            # nf_send_reset: never for a RST, nor for anything but TCP.
            if pkt.proto == PROTO_TCP and not pkt.flags & _TCP_RST:
                out.append((iface, craft.tcp_reset_for(orig)))
            return
        if pkt.is_icmp_error:
            return  # icmp_send never answers an error
        _, t, c = reply
        if hook == "INPUT":
            src = orig.dst
        else:
            back = fw.routes.lookup(v, pkt.src)
            src = fw.routes.interface_address(back.interface if back else iface, v, pkt.src)
        if src is None:
            return
        out.append((iface, craft.icmp_error(v, src, pkt.src, t, c, bytes(orig.buf[orig.ipoff : orig.end]))))
        ev.append(
            IcmpSent(
                now,
                iface,
                t,
                c,
                addr_to_str(v, src),
                addr_to_str(v, pkt.src),
                f"REJECT --reject-with {with_}",
            )
        )

    # -- bookkeeping after a packet ----------------------------------------------------------------

    def _logs(self, actions: list, hook: str, now: float, ev: list) -> None:
        for a in actions:
            if a.kind == "LOG":
                ev.append(NfLog(now, a.args["text"], a.args["level"], hook, a.rule.origin))

    def _after(self, conn: NfConnection, now: float, out: list, ev: list) -> None:
        """Conntrack's UPDATE event when this accepted packet changed the TCP state, SEEN_REPLY or
        ASSURED (the kernel delivers cached events when a packet is confirmed, so the changes a dropped
        packet made are reported with the next one that passes)."""
        if conn.closed:
            return
        trk = conn.tcp
        snapshot = (trk.state if trk is not None else None, conn.seen_reply(), conn.is_assured())
        if snapshot != conn.reported:
            ev.append(self._ct_event("UPDATE", conn, now))

    def _ct_event(self, kind: str, conn: NfConnection, now: float) -> CtEvent:
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

    def destroyed(self, conn: Connection, now: float, ev: list) -> None:
        """``Firewall._teardown``'s hook: conntrack's DESTROY event."""
        if isinstance(conn, NfConnection):
            ev.append(self._ct_event("DESTROY", conn, now))
            if conn.master is not None:
                conn.master.children -= 1

    def _connlimit(self, groups: dict, key: int) -> int:
        """``-m connlimit`` as xt_connlimit counts (nf_conncount_count_skb, Linux 6.18 with its stable
        fixes): ``groups`` is the asking rule's own table (masked address -> ``_CountList``), ``key`` the
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
        flow = self._ct_flow
        p = self._ct_pkt
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
            found = self.fw.conns.by_key.get(tup)
            if found is not None:
                conn = found.conn
        if conn is not None:
            tup = conn.halves[0].key
        jiffy = int(self._ct_now * HZ)
        lst = groups.get(key)
        if lst is None or not lst.entries:
            groups[key] = _CountList(tup, jiffy)
            return 1
        if conn is not None and isinstance(conn, NfConnection) and conn.is_assured():
            lst.collect(self.fw.conns.by_key, jiffy)
        else:
            lst.add(tup, conn is not None, self.fw.conns.by_key, jiffy)
        return len(lst.entries)

    # -- tables --------------------------------------------------------------------------------------

    def conntrack_entries(self, now: float) -> list[CtEvent]:
        """Every live connection as ``conntrack -L`` shows it at ``now``."""
        out = []
        for conn in self.fw.conns.by_id.values():
            if isinstance(conn, NfConnection) and conn.deadline() > now:
                ct = self._ct_event("", conn, now)
                out.append(ct)
        return out

    def conntrack_listing(self, now: float) -> str:
        """``conntrack -L`` at ``now``."""
        return conntrack_listing(self.conntrack_entries(now))


class EngineReplay:
    """Captures through the engine for an iptables policy, as ``statewall replay`` runs them (merged by
    time, ingress from the routes or given, responders carried into the translated coordinates), keeping
    the events; the engine's tables hold the counters afterwards (``statewall iptables --after-replay``).
    """

    def __init__(self, policy: Policy) -> None:
        from .engine import Firewall  # the engine imports this module

        self.fw = Firewall(policy)
        if self.fw.netfilter is None:
            raise ValueError("not an iptables policy: the engine runs it on the ASA's path")
        self.netfilter: Netfilter = self.fw.netfilter
        self.events: list = []

    # The replay adapter's view of a firewall (statewall.replay.FirewallLike), recording the events.
    def receive(self, iface: str, data, now: float):
        res = self.fw.receive(iface, data, now)
        self.events.extend(res.events)
        return res

    def advance(self, now: float):
        res = self.fw.advance(now)
        self.events.extend(res.events)
        return res

    def ingress_for(self, data):
        return self.fw.ingress_for(data)

    def replay_rewrite(self, iface: str, data, now: float):
        return self.fw.replay_rewrite(iface, data, now)

    def run(self, captures: Sequence[tuple[str | None, str]]) -> dict:
        """Replay ``captures`` (``(logical ingress or None, path)``); returns replay's summary. The
        output captures and logs go to a directory removed afterwards."""
        import tempfile

        from .replay import replay

        with tempfile.TemporaryDirectory(prefix="statewall-nf-") as tmp:
            return replay(self.fw.policy, captures, tmp, firewall=self)

    @property
    def logs(self) -> list[str]:
        """The LOG target's lines, in order."""
        return [e.text for e in self.events if isinstance(e, NfLog)]

    @property
    def conntrack_events(self) -> list[str]:
        """``conntrack -E``'s lines, in order."""
        return [_format_ct(e) for e in self.events if isinstance(e, CtEvent)]

    def conntrack_listing(self) -> str:
        """``conntrack -L`` at the last packet's time."""
        return self.fw._nf.conntrack_listing(self.fw.now)


# Translation of a packet by its connection, split as the kernel's NAT hooks split it: the destination
# side in PREROUTING (before routing), the source side after POSTROUTING. For ICMP queries the identifier
# changes with the source of the original direction and is given back with the reply's destination.


def _rewrite_dst(half: Half, pkt: Packet) -> None:
    if half.new_dst is not None:
        pkt.set_dst(half.new_dst)
    if pkt.proto == PROTO_TCP or pkt.proto == PROTO_UDP:
        if half.new_dport is not None:
            pkt.set_dport(half.new_dport)
    elif half.dir == REPLY and half.new_sport is not None and pkt.proto in (PROTO_ICMP, PROTO_ICMPV6):
        pkt.set_icmp_id(half.new_sport)


def _rewrite_src(half: Half, pkt: Packet) -> None:
    if half.new_src is not None:
        pkt.set_src(half.new_src)
    if pkt.proto == PROTO_TCP or pkt.proto == PROTO_UDP:
        if half.new_sport is not None:
            pkt.set_sport(half.new_sport)
    elif half.dir == ORIGINAL and half.new_sport is not None and pkt.proto in (PROTO_ICMP, PROTO_ICMPV6):
        pkt.set_icmp_id(half.new_sport)


def _error_dst(half: Half, pkt: Packet) -> None:
    """An ICMP error RELATED to ``half``'s connection, travelling ``half``'s way: its destination and
    the quoted packet's source (RFC 5508), before routing."""
    if half.new_dst is not None:
        pkt.set_dst(half.new_dst)
    if not half.rewrites:
        return
    inner = pkt.inner()
    if half.new_dst is not None:
        inner.set_src(half.new_dst)
    if inner.proto in (PROTO_TCP, PROTO_UDP):
        if half.new_dport is not None:
            inner.set_sport(half.new_dport)
    elif half.dir == REPLY and half.new_sport is not None:
        inner.set_icmp_id(half.new_sport)
    pkt.fix_icmp_checksum()


def _error_src(half: Half, pkt: Packet) -> None:
    """The other side of ``_error_dst``: the error's source when the peer itself sent it, and the
    quoted packet's destination, after POSTROUTING."""
    if not half.rewrites:
        return
    inner = pkt.inner()
    if half.new_src is not None:
        if pkt.src == inner.dst:
            pkt.set_src(half.new_src)
        inner.set_dst(half.new_src)
    if inner.proto in (PROTO_TCP, PROTO_UDP):
        if half.new_sport is not None:
            inner.set_dport(half.new_sport)
    elif half.dir == ORIGINAL and half.new_sport is not None:
        inner.set_icmp_id(half.new_sport)
    pkt.fix_icmp_checksum()


def packet_path(
    nf: Netfilter, pkt: Packet, in_iface: str, now: float, conntrack: Conntrack, route: Router
) -> PathResult:
    """One received packet through every hook it crosses (see the module docstring)."""
    # Before conntrack there is no connection: state matches in raw see INVALID, as in the kernel.
    ctx = Context(in_iface, None, "INVALID", now=now)
    actions: list[Action] = []

    def done(verdict: str, hook: str, d: Decision | None, local: bool, helper: str | None) -> PathResult:
        return PathResult(verdict, hook, d, local, ctx.out_iface, ctx.ctstate, helper, actions)

    d = nf.traverse("PREROUTING", pkt, ctx, nf.before_conntrack("PREROUTING"))
    actions.extend(d.actions)
    if d.verdict != "ACCEPT":
        return done(d.verdict, "PREROUTING", d, False, None)
    notrack = False
    helper = None
    for a in d.actions:
        if a.kind == "NOTRACK" or (a.kind == "CT" and a.args.get("notrack")):
            notrack = True
        if a.kind == "CT" and a.args.get("helper"):
            helper = str(a.args["helper"])
    view = CtView("UNTRACKED") if notrack else conntrack(pkt, helper)
    ctx.ctstate, ctx.master_helper, ctx.ct_nat = view.ctstate, view.master_helper, view.ct_nat
    d = nf.traverse("PREROUTING", pkt, ctx, nf.after_conntrack("PREROUTING"))
    actions.extend(d.actions)
    if d.verdict != "ACCEPT":
        return done(d.verdict, "PREROUTING", d, False, helper)
    out = route(pkt, [a for a in actions if a.kind in ("DNAT", "REDIRECT")])
    if out is None:
        d = nf.traverse("INPUT", pkt, ctx)
        actions.extend(d.actions)
        return done(d.verdict, "INPUT", d, True, helper)
    ctx.out_iface = out
    d = nf.traverse("FORWARD", pkt, ctx)
    actions.extend(d.actions)
    if d.verdict != "ACCEPT":
        return done(d.verdict, "FORWARD", d, False, helper)
    d = nf.traverse("POSTROUTING", pkt, ctx)
    actions.extend(d.actions)
    return done(d.verdict, "POSTROUTING", d, False, helper)


# --------------------------------------------------------------------------------------------------
# The reference tracker


@dataclass(slots=True)
class _Conn:
    version: int
    proto: int
    orig: tuple[int, int, int, int]  # src, sport, dst, dport as the first packet had them
    icmp: tuple[int, int] | None  # (type, code) of the first ICMP packet
    trk: TcpTracker | None
    helper: str | None
    seen_reply: bool = False
    assured: bool = False
    last: float = 0.0
    timeout: float = 0.0


class NetfilterReplay:
    """Packets through an iptables policy with a connection table of its own; see the module docstring."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.nf = Netfilter(policy)
        self.routes = RouteTable(policy)
        self.settings = policy.conntrack
        self.conns: dict[tuple, tuple[_Conn, int]] = {}
        self.results: list[PathResult] = []
        self.events: list[str] = []  # conntrack -E lines
        self.now = 0.0

    def ingress_for(self, pkt: Packet) -> str | None:
        route = self.routes.lookup(pkt.version, pkt.src)
        return route.interface if route else None

    def feed(self, data: bytes | bytearray, now: float, iface: str | None = None) -> PathResult | None:
        """One captured packet arriving on ``iface`` (None: the interface routing says reaches its
        source). None when the packet cannot be decoded or has no ingress."""
        try:
            pkt = decode(bytearray(data))
        except DecodeError:
            return None
        iface = iface or self.ingress_for(pkt)
        if iface is None:
            return None
        self.now = max(self.now, now)
        pending: list[tuple[_Conn, int, tuple]] = []

        def conntrack(p: Packet, helper: str | None) -> CtView:
            return self._track(p, helper, now, pending)

        def route(p: Packet, nat: list[Action]) -> str | None:
            if self.routes.local_interface(p.version, p.dst) is not None:
                return None
            entry = self.routes.lookup(p.version, p.dst)
            return entry.interface if entry else iface

        result = packet_path(self.nf, pkt, iface, now, conntrack, route)
        if result.verdict == "ACCEPT":
            for conn, direction, key in pending:  # conntrack confirms a new entry once accepted
                if key not in self.conns:
                    self.conns[key] = (conn, direction)
                    self.conns[self._reverse(conn)] = (conn, REPLY)
                    self.events.append(conntrack_line(conn, now, event="NEW"))
        self.results.append(result)
        return result

    def run(self, captures: Sequence[tuple[str | None, str]]) -> int:
        """Replay pcap/pcapng files (``(ingress or None, path)``) merged by time; the packet count."""
        from .pcapio import CaptureReader

        packets: list[tuple[float, int, int, str | None, bytes]] = []
        for index, (iface, path) in enumerate(captures):
            with CaptureReader(path) as reader:
                for seq, (ts, data) in enumerate(reader):
                    packets.append((ts, index, seq, iface, bytes(data)))
        packets.sort(key=lambda p: (p[0], p[1], p[2]))
        for ts, _i, _s, iface, data in packets:
            self.feed(data, ts, iface)
        return len(packets)

    @staticmethod
    def _key(pkt: Packet) -> tuple:
        if pkt.proto in (PROTO_ICMP, PROTO_ICMPV6):
            ident = pkt.icmp_id if (pkt.version, pkt.icmp_type) in _ECHO else 0
            return (pkt.version, pkt.proto, pkt.src, ident, pkt.dst, ident)
        return (pkt.version, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)

    @staticmethod
    def _reverse(conn: _Conn) -> tuple:
        src, sport, dst, dport = conn.orig
        return (conn.version, conn.proto, dst, dport, src, sport)

    def _lookup(self, key: tuple, now: float) -> tuple[_Conn, int] | None:
        hit = self.conns.get(key)
        if hit is None:
            return None
        conn = hit[0]
        if conn.timeout and conn.last + conn.timeout < now:
            self._remove(conn, now)
            return None
        return hit

    def _remove(self, conn: _Conn, now: float) -> None:
        src, sport, dst, dport = conn.orig
        self.conns.pop((conn.version, conn.proto, src, sport, dst, dport), None)
        self.conns.pop(self._reverse(conn), None)
        self.events.append(conntrack_line(conn, now, event="DESTROY"))

    def _track(self, pkt: Packet, helper: str | None, now: float, pending: list) -> CtView:
        if pkt.is_icmp_error:
            inner = pkt.inner()
            if inner is not None:
                found = self._lookup(self._key(inner), now)
                if found is not None:
                    return CtView("RELATED", master_helper=None)
            return CtView("INVALID")
        key = self._key(pkt)
        found = self._lookup(key, now)
        settings = self.settings
        if found is not None:
            conn, direction = found
            state = "ESTABLISHED" if direction == REPLY or conn.seen_reply else "NEW"
            if conn.trk is not None:
                verdict, _why = conn.trk.packet(direction, pkt, settings)
                if conn.trk.reopen:
                    self._remove(conn, now)
                    return self._track(pkt, helper, now, pending)
                if verdict is INVALID:
                    return CtView("INVALID")
                conn.assured = conn.trk.assured
                conn.timeout = conn.trk.timeout(settings)
            if direction == REPLY and not conn.seen_reply:
                conn.seen_reply = True
                if conn.trk is None:
                    conn.assured = True
                    if conn.proto == PROTO_UDP:
                        conn.timeout = settings.udp_timeout_stream
            conn.last = now
            return CtView(state)
        trk = None
        if pkt.proto == PROTO_TCP:
            trk, _why = TcpTracker.new(pkt, settings)
            if trk is None:
                return CtView("INVALID")
            timeout = trk.timeout(settings)
        elif pkt.proto == PROTO_UDP:
            timeout = settings.udp_timeout
        elif pkt.proto in (PROTO_ICMP, PROTO_ICMPV6):
            timeout = settings.icmp_timeout
        else:
            timeout = 600.0  # nf_conntrack_generic_timeout
        k = key
        icmp = (pkt.icmp_type, pkt.icmp_code) if pkt.proto in (PROTO_ICMP, PROTO_ICMPV6) else None
        conn = _Conn(
            pkt.version, pkt.proto, (k[2], k[3], k[4], k[5]), icmp, trk, helper, last=now, timeout=timeout
        )
        pending.append((conn, 0, key))
        return CtView("NEW")

    def conntrack_listing(self) -> str:
        """``conntrack -L``: every connection still alive at the last packet's time."""
        seen = []
        for conn, direction in self.conns.values():
            if direction == 0 and (not conn.timeout or conn.last + conn.timeout >= self.now):
                seen.append(conn)
        return "".join(conntrack_line(c, self.now) + "\n" for c in seen)


# --------------------------------------------------------------------------------------------------
# conntrack -L / -E


_addr = addr_to_str


def conntrack_line(conn: _Conn, now: float, event: str | None = None) -> str:
    """A reference-tracker connection as libnetfilter_conntrack's default output prints it: a row of
    ``conntrack -L`` (``tcp      6 431999 ESTABLISHED src=.. dst=.. sport=.. dport=.. src=.. (reply)
    [ASSURED] mark=0 use=1``) or, with ``event`` (NEW, DESTROY), a ``conntrack -E`` line. The reply
    tuple is the original one reversed: this tracker does not translate."""
    v = conn.version
    src, sport, dst, dport = conn.orig
    left = max(0, int(conn.last + conn.timeout - now)) if conn.timeout else 0
    icmp = None
    if conn.icmp is not None:
        icmp = (conn.icmp[0], conn.icmp[1], _ECHO.get((v, conn.icmp[0]), (v, conn.icmp[0]))[1])
    ct = CtEvent(
        now,
        event or "",
        0,
        conn.proto,
        (_addr(v, src), _addr(v, dst), sport, dport),
        (_addr(v, dst), _addr(v, src), dport, sport),
        None if event == "DESTROY" else left,
        conn.trk.state.name if conn.trk is not None else None,
        icmp,
        conn.seen_reply,
        conn.assured,
    )
    return _format_ct(ct, listing=event is None)


__all__ = [
    "CtView",
    "EngineReplay",
    "NetfilterReplay",
    "NfConnection",
    "NfPath",
    "PathResult",
    "conntrack_line",
    "packet_path",
]
