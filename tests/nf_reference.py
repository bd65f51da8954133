"""The reference path for netfilter's hooks, kept in the tests to compare the engine against.

- ``packet_path(nf, pkt, in_iface, now, conntrack, route)``: the hooks one packet crosses, for a caller
  with its own conntrack and routing; it stops at the first DROP and returns every action (LOG lines,
  TCPMSS rewrites already applied, NAT targets, REJECT replies).
- ``NetfilterReplay``: a small reference tracker (``statewall.tcptrack`` for TCP, seen-reply for UDP and
  ICMP, RELATED for ICMP errors about a tracked connection, no address translation) that runs captures
  through ``packet_path`` without the engine.
- ``conntrack_line``: a reference-tracker connection as ``conntrack -L`` or ``-E`` prints it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from statewall.events import CtEvent
from statewall.logfmt.linux import conntrack_line as _format_ct
from statewall.netfilter import Action, Context, Decision, Netfilter
from statewall.packet import DecodeError, Packet, addr_to_str, decode
from statewall.pcapio import CaptureReader
from statewall.policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Policy
from statewall.routing import RouteTable
from statewall.tcptrack import INVALID, REPLY, TcpTracker

_ECHO = {(4, 8): (4, 0), (4, 0): (4, 8), (6, 128): (6, 129), (6, 129): (6, 128)}


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
