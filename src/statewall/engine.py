"""The engine: one firewall, sans-IO.

``Firewall.receive(iface, packet, now)`` and ``Firewall.advance(now)`` are the whole interface: bytes and
time in, packets to send and events out. The engine never reads a clock, a socket or a file; replay, the
live TUN loop, the lab and the CLI are adapters around it.

Order of work (the ASA's data path, reference A.6): decode, existing-connection lookup (the fast path),
then for a new flow: TCP state check (a non-SYN without a connection is dropped, 106015), UN-NAT of a
static destination, route lookup, access rules / security levels, source NAT, connection creation.
Every packet that passes then goes through the same forwarding step: TCP tracking, TTL, MTU, NAT
rewrite. A policy of the iptables dialect takes netfilter's path instead (``statewall.engine_netfilter``:
raw, conntrack, mangle, nat, routing, filter, POSTROUTING), over the same connection table and timers.

This module orchestrates; state lives in the modules that own it: ``conntrack`` (connections),
``tcptrack`` (TCP state and windows), ``nat`` (translations), ``acl``, ``routing``, ``timers``.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from . import craft, dcd, fastpath, intercept, mss, normalizer, seqrand, threat
from .acl import AccessControl
from .conntrack import ORIGINAL, REPLY, Connection, ConnTable, Half
from .engine_netfilter import NfPath
from .events import (
    AclHit,
    ConnBuilt,
    ConnTeardown,
    Drop,
    DropReason,
    Endpoint,
    Event,
    IcmpSent,
    XlateBuilt,
    XlateTeardown,
)
from .expect import Expectation, ExpectTable
from .inspect import Inspectors
from .limits import ADMIT, DENY, Limits
from .mpf import ServicePolicies
from .nat import NatFailure, NatTable, Xlate
from .netfilter import Netfilter
from .normalizer import NormState
from .packet import DecodeError, Packet, addr_to_str, decode
from .policy import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    ConntrackSettings,
    Inspection,
    Origin,
    Policy,
)
from .routing import RouteTable
from .tcptrack import F_FIN_ACKED, INVALID, TcpState, TcpTracker
from .timers import Timers

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

_ICMP_ECHO = {(4, 8), (4, 0), (6, 128), (6, 129)}
_ICMP_ECHO_REQUEST = {(4, 8), (6, 128)}

# netfilter's INVALID reasons -> the ASA normalizer check that refuses the same packet.
_INVALID_TO_DROP = (
    ("SEQ is over", DropReason.TCP_SEQ_PAST_WINDOW),
    ("ACK is over", DropReason.TCP_INVALID_ACK),
    ("invalid rst", DropReason.TCP_RST_SYN_IN_WINDOW),
)

# ASA ``fragment timeout`` default: how long later fragments may follow their first one.
FRAGMENT_TIMEOUT = 5.0

_EMBRYONIC = frozenset({TcpState.SYN_SENT, TcpState.SYN_RECV, TcpState.SYN_SENT2})
_HANDSHAKE_FLAGS = TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN
# ``set connection`` limit keywords, for the hint of a refused connection (statewall.limits kinds).
_LIMIT_KEYWORDS = {
    "conn": "conn-max",
    "embryonic": "embryonic-conn-max",
    "per-client": "per-client-max",
    "per-client-embryonic": "per-client-embryonic-max",
}


class Result(NamedTuple):
    packets: list[tuple[str, bytearray]]
    events: list[Event]


_new_result = tuple.__new__


# Event text: the codec's formatter (same text as ipaddress, without building an object per call).
addr_str = addr_to_str


def _asa_version_before(version: str | None, major: int, minor: int) -> bool:
    if not version:
        return False
    try:
        parts = version.split("(")[0].split(".")
        return (int(parts[0]), int(parts[1])) < (major, minor)
    except (ValueError, IndexError):
        return False


class Firewall:
    """A stateful firewall enforcing one ``Policy``."""

    def __init__(
        self,
        policy: Policy,
        *,
        seed: int | bytes | str | None = None,
        faults: frozenset[str] | set[str] | tuple[str, ...] = (),
        fast_path: bool = True,
    ) -> None:
        """``seed`` makes the sequence randomization reproducible (tests, labs); ``faults`` names
        deliberate misbehaviours to switch on (``statewall.seqrand.FAULTS``), added to the policy's;
        ``fast_path=False`` keeps every packet on the Python path (``statewall.fastpath``)."""
        self.policy = policy
        self.interfaces = {n: i for n, i in policy.interfaces.items() if not i.shutdown}
        self.routes = RouteTable(policy)
        self.acl = AccessControl(policy)
        self.nat = NatTable(policy, self.routes.interface_address)
        self.conns = ConnTable()
        self.timers = Timers()
        self.timeouts = policy.timeouts
        self.asa = policy.dialect == "asa"
        if self.asa:
            # The ASA's normalizer needs a SYN to start a flow (reference A.1) and has no "loose" pickup.
            ct = ConntrackSettings(
                **{f: getattr(policy.conntrack, f) for f in ConntrackSettings.__slots__ if f != "origins"}
            )
            ct.tcp_loose = False
            self.ct = ct
        else:
            self.ct = policy.conntrack
        # ASA before 8.3 matches access lists against mapped (global) addresses; 8.3+ against real ones.
        self.acl_on_mapped = self.asa and _asa_version_before(policy.version, 8, 3)
        # The ASA's modular policy framework: per-connection settings, the TCP normalizer, MSS rewriting
        # and sequence randomization (statewall.mpf, .normalizer, .mss, .seqrand).
        self.faults = frozenset(faults) | frozenset(policy.faults)
        unknown = self.faults - set(seqrand.FAULTS)
        if unknown:
            known = ", ".join(seqrand.FAULTS)
            raise ValueError(f"unknown fault(s) {', '.join(sorted(unknown))} (known: {known})")
        self.service_policies = ServicePolicies(policy) if self.asa else None
        self._seq_secret = seqrand.make_secret(seed)
        self._shifting = False  # a connection's sequence numbers are shifted: replay must follow
        self.drops: Counter[DropReason] = Counter()
        self.stats = Counter()
        self._next_id = 1
        self.now = 0.0
        self._trace: list | None = None
        # How captures taken without the firewall show each translated half (replay_rewrite): None
        # until a replay adapter first calls replay_rewrite, so that a firewall that never replays
        # keeps no entry per connection (memory, docs/performance.md).
        self._replay_index: dict[tuple, Half] | None = None
        self._frag_flows: dict[tuple, tuple[Half, float]] = {}
        # Application inspection (FTP) and the data connections it announced (statewall.expect).
        self.expect = ExpectTable(self.nat, self.timers)
        self.inspectors = Inspectors(policy, self.expect)
        # Connection limits and TCP Intercept (statewall.limits, statewall.intercept): the ASA's; the
        # iptables dialect's connlimit is a match of statewall.netfilter.
        self.limits = Limits() if self.asa else None
        self.intercept = intercept.Intercept(intercept.make_secret(self._seq_secret)) if self.asa else None
        # Basic threat detection (733100 for the rates of those drops), on by default from ASA 8.0(2).
        threats = self.asa and not _asa_version_before(policy.version, 8, 0)
        self.threat = threat.BasicThreat() if threats else None
        # A ruleset of the iptables dialect runs on netfilter's path instead of the ASA's
        # (statewall.engine_netfilter); ``netfilter`` holds its tables and their counters.
        self._nf: NfPath | None = None
        self.netfilter: Netfilter | None = None
        rulesets = policy.netfilter is not None or policy.ip6_netfilter is not None
        if policy.dialect == "iptables" and rulesets:
            self._nf = NfPath(self)
            self.netfilter = self._nf.nf
        # Established connections offloaded to the compiled fast path (statewall.fastpath): the ASA
        # path only; the iptables path counts every packet per rule, as the kernel does without a
        # flowtable.
        use_fast = fast_path and fastpath.AVAILABLE and self.asa and self._nf is None
        self._fast: fastpath.FastPath | None = fastpath.FastPath(self) if use_fast else None
        if self._fast is not None:
            self._fast.attach(self, Result)  # self.receive: the compiled path in front of receive()

    # ---------------------------------------------------------------------------------------------
    # Public interface

    def receive(
        self,
        iface: str,
        data: bytes | bytearray,
        now: float,
        *,
        csum_partial: bool = False,
        gso_size: int = 0,
    ) -> Result:
        """Process one IP packet that arrived on ``iface`` at time ``now``.

        With the fast path on, the instance's ``receive`` is ``statewall._fastpath``'s (bound in
        ``FastPath.attach``): it forwards the packets of offloaded connections itself and calls this
        method for every other packet.
        """
        out: list[tuple[str, bytearray]] = []
        ev: list[Event] = []
        self.stats["packets_in"] += 1
        if now > self.now:
            self.now = now
        buf = data if type(data) is bytearray else bytearray(data)
        try:
            pkt = decode(buf, partial_csum=csum_partial)
        except DecodeError as e:
            self._drop(ev, e.reason, iface, None, now, message=e.message)
            return Result(out, ev)
        try:
            # The fast path (packet-io.md): a packet of an existing connection arriving where it should
            # goes straight to forwarding; everything else takes _process, which looks again.
            half = (
                self.conns.by_key.get((pkt.version, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport))
                if pkt.has_l4 and self._nf is None
                else None
            )
            if half is not None and half.in_iface == iface:
                self._forward(half, pkt, now, out, ev, gso_size)
            else:
                self._process(iface, pkt, now, out, ev, gso_size)
        except DecodeError as e:  # e.g. a malformed quoted packet in an ICMP error, or bad TCP options
            self._drop(ev, e.reason, iface, pkt, now, message=e.message)
        except Exception as e:  # noqa: BLE001 - the engine must never raise for a packet; count it instead
            self._drop(ev, DropReason.INTERNAL_ERROR, iface, pkt, now, message=f"{type(e).__name__}: {e}")
        return _new_result(Result, (out, ev))  # Result(out, ev) without the generated __new__ (per packet)

    def advance(self, now: float) -> Result:
        """Let time pass: expire connections and translations due by ``now``."""
        out: list[tuple[str, bytearray]] = []
        ev: list[Event] = []
        if now > self.now:
            self.now = now
        timers = self.timers
        for obj in timers.pop_due(now):
            if isinstance(obj, Connection):
                if obj.closed:
                    continue
                due = obj.deadline()
                if due > now:
                    obj.queued_at = due
                    timers.schedule(due, obj)
                    continue
                if obj.fast is not None:
                    self._fast.unoffload(obj)
                self._expire_conn(obj, due, out, ev)
            elif isinstance(obj, Expectation):
                self.expect.expire(obj, now)
            elif isinstance(obj, NormState):
                self._expire_held(obj, now, ev)
            elif isinstance(obj, dcd.Probe):
                self._dcd_round(obj, out, ev)
            elif isinstance(obj, Xlate):
                again = self.nat.expire(obj, now)
                if again is None:
                    continue
                if again > 0:
                    timers.schedule(again, obj)
                else:
                    ev.append(
                        self._xlate_event(
                            XlateTeardown,
                            obj,
                            obj.idle_since + obj.timeout,
                            duration=obj.idle_since + obj.timeout - obj.created,
                        )
                    )
        if self._frag_flows:
            for key in [k for k, (_, until) in self._frag_flows.items() if until < now]:
                del self._frag_flows[key]
        return Result(out, ev)

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def ingress_for(self, data: bytes | bytearray) -> str | None:
        """The interface through which the routing table reaches the packet's source."""
        try:
            pkt = decode(bytearray(data))
        except DecodeError:
            return None
        route = self.routes.lookup(pkt.version, pkt.src)
        return route.interface if route else None

    def replay_rewrite(self, iface: str, data: bytes | bytearray, now: float) -> bytearray:
        """Carry a captured packet from a responder into the coordinates the firewall gave its connection.

        A capture taken without the firewall in the path shows the responder answering the initiator's
        real address and port. Live, it would have answered the mapped ones; this returns the packet as
        it would have arrived, so that a replayed session flows as between live hosts.

        The first call starts the index of translated halves this needs: connections created from then
        on are indexed (a replay adapter calls this for every packet, from the first one on).
        """
        index = self._replay_index
        if index is None:
            self._replay_index = index = {}
        buf = bytearray(data)
        if not index and not self.expect.announced and not self._shifting:
            return buf
        try:
            pkt = decode(buf)
        except DecodeError:
            return buf
        key = (pkt.version, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
        known = self.conns.by_key.get(key)
        if known is not None:
            if known.conn.seqrand is not None:
                # Its acks answer data the firewall shifted (randomization, inspection rewrites).
                known.conn.seqrand.to_live(known.dir, pkt)
            elif known.conn.helper is not None:
                # Its acks answer data that inspection rewrites shifted.
                known.conn.helper.to_live(known.dir, pkt)
            return buf
        half = index.get(key)
        if half is None or half.conn.closed or half.in_iface != iface:
            exp = self.expect.for_replay(pkt.version, pkt.proto, iface, pkt.src, pkt.dst, pkt.dport)
            if exp is not None:
                # The first packet of an announced data connection, sent where it was announced.
                if exp.dst != pkt.dst:
                    pkt.set_dst(exp.dst)
                if exp.dport != pkt.dport:
                    pkt.set_dport(exp.dport)
            return buf
        _, _, _, _, mdst, mdport = half.key
        if mdst != pkt.dst:
            pkt.set_dst(mdst)
        if mdport != pkt.dport:
            if pkt.proto in (PROTO_ICMP, PROTO_ICMPV6):
                pkt.set_icmp_id(mdport)
            else:
                pkt.set_dport(mdport)
        if half.conn.seqrand is not None:
            half.conn.seqrand.to_live(half.dir, pkt)
        elif half.conn.helper is not None:
            half.conn.helper.to_live(half.dir, pkt)
        return buf

    # ---------------------------------------------------------------------------------------------
    # Packet path

    def _process(self, iface: str, pkt: Packet, now: float, out: list, ev: list, gso_size: int) -> None:
        if iface not in self.interfaces:
            self._drop(ev, DropReason.UNKNOWN_INTERFACE, iface, pkt, now)
            return
        if pkt.is_fragment and not pkt.has_l4:
            # Non-first fragments carry no ports; they follow the flow of their datagram. Without
            # reassembly we forward them along the route like the kernel's non-defragmenting path
            # (on both dialects' paths).
            self._forward_fragment(iface, pkt, now, out, ev)
            return
        if self._nf is not None:
            self._nf.process(iface, pkt, now, out, ev, gso_size)
            return
        key = (pkt.version, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
        half = self.conns.by_key.get(key)
        if half is None:
            if pkt.is_icmp_error:
                self._icmp_error(iface, pkt, now, out, ev)
                return
            if (
                pkt.proto == PROTO_TCP
                and pkt.flags & _HANDSHAKE_FLAGS == TCP_ACK
                and self.intercept is not None
                and self.intercept.engaged(now)
                and self._intercept_ack(iface, pkt, now, out, ev)
            ):
                return
            half = self._new_flow(iface, pkt, now, out, ev)
            if half is None:
                return
            # The tracker was created from this packet and has already processed it.
            self._forward(half, pkt, now, out, ev, gso_size, first=True)
            return
        if half.in_iface != iface:
            self._drop(
                ev,
                DropReason.RPF_VIOLATED,
                iface,
                pkt,
                now,
                egress=half.out_iface,
                message=f"connection {half.conn.id} expects this direction on {half.in_iface}",
            )
            return
        self._forward(half, pkt, now, out, ev, gso_size)

    def _forward(
        self, half: Half, pkt: Packet, now: float, out: list, ev: list, gso_size: int, first: bool = False
    ) -> None:
        conn = half.conn
        if conn.fast is not None:
            self._fast.unoffload(conn)  # the compiled path handed this packet back: its state first
        trk = conn.tcp
        helper = conn.helper
        norm = conn.norm
        if conn.intercept is not None and self._intercepted(half, pkt, now, out, ev):
            return
        if conn.dcd is not None and self._dcd_answer(half, pkt, now):
            return
        if norm is not None and self._normalize(half, norm, pkt, now, out, ev, gso_size):
            return
        shift = conn.seqrand
        if trk is not None and not first:
            if shift is not None:
                # Randomized (and perhaps inspected): acks come back in the shifted numbers.
                verdict, why = trk.packet(
                    half.dir, pkt, self.ct, ack_offset=shift.ack_offset(half.dir, pkt.ack)
                )
            elif helper is not None and helper.seqadj.active:
                # Inspection rewrites changed lengths: this side's acks are in the adjusted space.
                verdict, why = trk.packet(
                    half.dir, pkt, self.ct, ack_offset=helper.seqadj.ack_offset(half.dir, pkt.ack)
                )
            else:
                verdict, why = trk.packet(half.dir, pkt, self.ct)
            if trk.reopen:
                # A fresh SYN reusing the tuple of a closing connection: the old one goes, the SYN
                # starts a new one (netfilter's TIME_WAIT reopen).
                self._teardown(conn, now, "TCP FINs", None, out, ev)
                nhalf = self._new_flow(half.in_iface, pkt, now, out, ev)
                if nhalf is not None:
                    self._forward(nhalf, pkt, now, out, ev, gso_size, first=True)
                return
            if verdict == INVALID and not (norm is not None and normalizer.allows_invalid(norm, why)):
                reason = DropReason.TCP_INVALID
                hint = origin = None
                if self.asa:
                    for prefix, r in _INVALID_TO_DROP:
                        if why and why.startswith(prefix):
                            reason = r
                            break
                    if norm is not None:
                        # seq-past-window / invalid-ack: the tcp-map line and the change that allows it.
                        knob, hint = normalizer.invalid_hint(why)
                        origin = norm.profile.tm.origins.get(knob) if knob else None
                self._drop(
                    ev,
                    reason,
                    half.in_iface,
                    pkt,
                    now,
                    egress=half.out_iface,
                    origin=origin,
                    hint=hint,
                    message=why or "INVALID",
                    detail={"ctstate": "INVALID", "conn": conn.id},
                )
                return
        # statewall is a router hop: it decrements TTL and answers time-exceeded. A real ASA does not
        # by default (it is invisible to traceroute unless `set connection decrement-ttl`); we follow
        # the router behaviour on purpose, because the lab puts statewall where a router stands.
        ttl = pkt.ttl
        if ttl <= 1:
            self._time_exceeded(half.in_iface, pkt, now, out, ev)
            return
        mtu = self.interfaces[half.out_iface].mtu
        size = pkt.total_len if not gso_size else pkt.l3_len + (pkt.doff or 8) + gso_size
        if size > mtu and not self._too_big(half.in_iface, pkt, mtu, now, out, ev):
            return
        if helper is not None:
            # Application inspection reads the payload as sent, before NAT, and may rewrite it.
            refusal = helper.inspect(half, pkt, now, ev)
            if refusal is not None:
                self._drop(
                    ev,
                    DropReason.INSPECT_FTP,
                    half.in_iface,
                    pkt,
                    now,
                    egress=half.out_iface,
                    origin=refusal.origin,
                    message=refusal.message,
                    detail={"conn": conn.id},
                )
                if refusal.close:
                    self._teardown(conn, now, "Flow closed by inspection", half.in_iface, out, ev)
                return
        if norm is not None and pkt.flags & TCP_SYN:
            mss.sysopt_rewrite(pkt, self.policy.sysopt_tcpmss, self.policy.sysopt_tcpmss_minimum)
        nat = half.nat
        if nat is not None:
            pkt.forward_nat4(ttl - 1, nat)  # TTL and NAT: two writes, one update per checksum
        elif half.rewrites and pkt.version == 4 and (pkt.proto == PROTO_TCP or pkt.proto == PROTO_UDP):
            pkt.forward_nat4(ttl - 1, half.compile_nat())
        else:
            pkt.set_ttl(ttl - 1)
            if half.rewrites:
                self._rewrite(half, pkt)
        if shift is not None:
            shift.adjust(half.dir, pkt)  # randomization, with any inspection corrections (after NAT)
        elif helper is not None and helper.seqadj.active:
            helper.seqadj.adjust(half.dir, pkt)
        plen = pkt.payload_len
        conn.last = now
        again = False  # not this direction's first payload
        if plen:
            conn.bytes += plen
            seen = conn.data_seen
            again = seen[half.dir]
            seen[half.dir] = True
        self.stats["forwarded"] += 1
        out.append((half.out_iface, pkt.buf))
        if pkt.mf:
            # First fragment of a datagram: its later fragments follow this half (FRAGMENT_TIMEOUT s).
            self._frag_flows[(pkt.version, pkt.proto, half.key[2], half.key[4], pkt.ip_id)] = (
                half,
                now + FRAGMENT_TIMEOUT,
            )
        if trk is not None:
            self._tcp_after(conn, half, pkt, now, out, ev)
            if norm is not None and norm.held[half.dir] and not conn.closed:
                # Segments queued behind this one are in order now.
                for held in normalizer.release(norm, half.dir):
                    self._forward(half, held.pkt, now, out, ev, held.gso_size)
            if again and self._fast is not None and trk.state == TcpState.ESTABLISHED:
                self._fast.offload(conn)  # the next segments go through the compiled path
        elif again and conn.proto == PROTO_UDP and self._fast is not None:
            self._fast.offload(conn)
        # Offloaded at the second payload from one side: a short exchange (a request and its answer,
        # one DNS query) is over before offloading and taking back would pay off.

    # ---------------------------------------------------------------------------------------------
    # Modular policy framework: normalizer, MSS, sequence randomization (ASA)

    def _inspector_for(self, conn: Connection, dport: int, real_dport: int, eff):
        """The FTP inspector a new TCP connection gets, if any.

        ASA: the classes that apply to this very connection decide, so an interface service policy's
        ``inspect ftp`` covers its own interface's traffic only (the ASA's scoping), and ``strict`` is
        that class's. An explicit ``policy.inspections`` list (iptables ``CT --helper``, the lab's
        switches) is by port, as Linux assigns helpers.
        """
        if self.asa and eff is not None and not self.policy.inspections:
            ins = eff.inspects_engine("ftp")
            if ins is None:
                return None
            inspection = Inspection("ftp", (real_dport,), ins.strict, ins.origin)
            return self.inspectors.attach_inspection(conn, inspection)
        return self.inspectors.attach(conn, dport, real_dport)

    def _apply_policy(
        self, conn, iface, egress, pkt, real_dst, real_dport, itype, icode, xl, unnat, eff=None
    ) -> None:
        """Resolve the new connection's class settings (unless the limits check already did) and give
        a TCP connection its normalizer state and sequence randomization."""
        sp = self.service_policies
        if eff is None:
            eff = sp.resolve(
                iface, egress, pkt.version, pkt.proto, pkt.src, pkt.sport, real_dst, real_dport, itype, icode
            )
        else:
            sp.admitted(eff)
        conn.mpf = eff
        if not (
            eff.timeout_embryonic is None and eff.timeout_idle is None and eff.timeout_half_closed is None
        ):
            # The class's timeouts replace the global ones (idle for every protocol).
            conn.tmo = (eff.timeout_embryonic, eff.timeout_idle, eff.timeout_half_closed)
        if conn.proto != PROTO_TCP:
            return
        use = eff.tcp_map_use
        helper = conn.helper
        # One compiled profile per tcp-map (and inspected or not) of these service policies.
        pkey = (id(eff.tcp_map), helper is not None)
        profile = sp.profiles.get(pkey)
        if profile is None:
            profile = sp.profiles[pkey] = normalizer.Profile(
                eff.tcp_map, self.policy.version, asa=True, inspected=helper is not None
            )
        counters = use.counters if use is not None else sp.default_counters
        conn.norm = norm = NormState(profile, counters, self.policy.sysopt_tcpmss_minimum, conn)
        if helper is not None:
            ftp = next(((i, u) for i, u in eff.inspects if i.engine == "ftp"), None)
            if ftp is not None:
                norm.inspected = (ftp[0].engine, ftp[1])
        # Randomization is off if the class or either NAT rule (norandomseq) turns it off (seed 002).
        xl_rule = xl.rule if xl is not None else None
        unnat_rule = unnat[3].rule if unnat is not None and unnat[3] is not None else None
        if (
            eff.random_sequence_number
            and (not xl_rule or getattr(xl_rule, "randomseq", True))
            and (not unnat_rule or getattr(unnat_rule, "randomseq", True))
        ):
            shift = seqrand.for_connection(self._seq_secret, pkt, faults=self.faults)
            if conn.helper is not None:
                shift.seqadj = conn.helper.seqadj
            conn.seqrand = shift
            self._shifting = True

    def _normalize(
        self, half: Half, norm: NormState, pkt: Packet, now: float, out, ev, gso_size: int
    ) -> bool:
        """The tcp-map checks before tracking; True when the segment was dropped or queued."""
        conn = half.conn
        if norm.inspected is not None:
            norm.inspected[1].inspect_packets[norm.inspected[0]] += 1  # show service-policy
        shift = conn.seqrand
        ack_offset = shift.ack_offset(half.dir, pkt.ack) if shift is not None else 0
        refusal = normalizer.check(norm, half.dir, pkt, conn.tcp, ack_offset, now, gso_size)
        if refusal is None:
            return False
        if refusal is normalizer.HOLD:
            due = norm.deadline()
            if norm.queued_at == 0.0 or due < norm.queued_at:
                norm.queued_at = due
                self.timers.schedule(due, norm)
            return True
        self._drop(
            ev,
            refusal.reason,
            half.in_iface,
            pkt,
            now,
            egress=half.out_iface,
            origin=refusal.origin,
            hint=refusal.hint,
            message=refusal.message,
            detail={**(refusal.detail or {}), "conn": conn.id},
        )
        if refusal.teardown:
            self._teardown(conn, now, refusal.teardown, half.in_iface, out, ev)
        return True

    def _expire_held(self, norm: NormState, now: float, ev: list) -> None:
        """Out-of-order segments that waited past the tcp-map's queue timeout are dropped."""
        norm.queued_at = 0.0
        conn = norm.conn
        if conn is None or conn.closed:
            return
        for d, held in normalizer.expire(norm, now):
            half = conn.halves[d]
            self._drop(
                ev,
                DropReason.TCP_BUFFER_TIMEOUT,
                half.in_iface,
                held.pkt,
                now,
                egress=half.out_iface,
                origin=norm.profile.tm.origins.get("queue_limit"),
                hint="a longer queue-limit timeout in the tcp-map",
                message=f"out-of-order segment waited {norm.profile.queue_timeout:g} s for earlier data",
                detail={"conn": conn.id},
            )
        due = norm.deadline()
        if due != float("inf"):
            norm.queued_at = due
            self.timers.schedule(due, norm)

    def _rewrite(self, half: Half, pkt: Packet) -> None:
        if half.new_src is not None:
            pkt.set_src(half.new_src)
        if half.new_dst is not None:
            pkt.set_dst(half.new_dst)
        if pkt.proto == PROTO_TCP or pkt.proto == PROTO_UDP:
            if half.new_sport is not None:
                pkt.set_sport(half.new_sport)
            if half.new_dport is not None:
                pkt.set_dport(half.new_dport)
        elif half.new_sport is not None and (pkt.version, pkt.icmp_type) in _ICMP_ECHO:
            pkt.set_icmp_id(half.new_sport)

    def _tcp_after(self, conn: Connection, half: Half, pkt: Packet, now: float, out: list, ev: list) -> None:
        """Timeout choice and teardown after a TCP segment went through."""
        trk = conn.tcp
        state = trk.state
        if self.asa:
            flags = pkt.flags
            if flags & TCP_RST:
                side = self.interfaces[half.in_iface].security_level
                other = self.interfaces[half.out_iface].security_level
                self._teardown(
                    conn, now, "TCP Reset-I" if side >= other else "TCP Reset-O", half.in_iface, out, ev
                )
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
                    self._teardown(conn, now, "TCP FINs", conn.closer or half.in_iface, out, ev)
                    return
                if state in _EMBRYONIC:
                    self._set_timeout(conn, _timeout(tmo, 0, self.timeouts.embryonic), "embryonic", now)
                    return
            adm = conn.limit
            if adm is not None and adm.embryonic:
                adm.established()
            seen = trk.seen
            if (seen[0].flags | seen[1].flags) & F_FIN_ACKED:
                self._set_timeout(conn, _timeout(tmo, 2, self.timeouts.half_closed), "half-closed", now)
                return
            # The idle refresh of nearly every segment: _set_timeout written out.
            timeout = self.timeouts.conn if tmo is None or tmo[1] is None else tmo[1]
            conn.timeout = timeout
            conn.timeout_kind = "idle"
            if timeout > 0:
                due = conn.last + timeout
                queued = conn.queued_at
                if queued == 0.0 or due < queued:
                    conn.queued_at = due
                    self.timers.schedule(due, conn)
        else:
            self._set_timeout(conn, trk.timeout(self.ct), state.name, now)

    def _set_timeout(self, conn: Connection, timeout: float, kind: str, now: float) -> None:
        conn.timeout = timeout
        conn.timeout_kind = kind
        if timeout > 0:
            due = conn.last + timeout
            # Queue again only if the new deadline is earlier than the one already queued.
            if conn.queued_at == 0.0 or due < conn.queued_at:
                conn.queued_at = due
                self.timers.schedule(due, conn)

    # ---------------------------------------------------------------------------------------------
    # New flows

    def _new_flow(
        self, iface: str, pkt: Packet, now: float, out: list, ev: list, validated: bool = False
    ) -> Half | None:
        """``validated``: the SYN TCP Intercept sends on for a client that answered its cookie."""
        trace = self._trace
        v = pkt.version
        proto = pkt.proto
        itf = self.interfaces[iface]
        if trace is not None:
            trace.append(("FLOW-LOOKUP", "", True, None, "Found no matching flow, creating a new flow"))
        if itf.management_only:
            self._drop(
                ev,
                DropReason.SECURITY_LEVEL,
                iface,
                pkt,
                now,
                origin=itf.origin,
                message=f"interface {iface} is management-only",
            )
            return None
        if proto == PROTO_TCP:
            flags = pkt.flags
            if flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) != TCP_SYN and (
                self.asa or not self.ct.tcp_loose
            ):
                if trace is not None:
                    trace.append(("TCP-STATE", "", False, None, "First TCP packet not SYN"))
                self._drop(
                    ev,
                    DropReason.TCP_NOT_SYN,
                    iface,
                    pkt,
                    now,
                    hint="a TCP connection must start with a SYN through the firewall",
                )
                return None
        icmp_type = pkt.icmp_type if proto in (PROTO_ICMP, PROTO_ICMPV6) else 0
        icmp_code = pkt.icmp_code if proto in (PROTO_ICMP, PROTO_ICMPV6) else 0

        # An expected data connection (inspection) is RELATED: its expectation says where it goes.
        exp = self.expect.find(v, proto, iface, pkt.src, pkt.dst, pkt.dport, now) if self.expect else None
        # UN-NAT: a static translation owning the destination the initiator used.
        unnat = (
            exp.unnat
            if exp is not None
            else self.nat.untranslate_destination(v, proto, iface, pkt.dst, pkt.dport, pkt.src, pkt.sport)
        )
        if unnat is not None:
            real_dst, real_dport, egress, static = unnat
            if trace is not None:
                trace.append(
                    (
                        "UN-NAT",
                        "static" if static is not None else "expected",
                        True,
                        static.rule.origin if static is not None else exp.origin,
                        f"Untranslate {addr_str(v, pkt.dst)}/{pkt.dport} to "
                        f"{addr_str(v, real_dst)}/{real_dport}",
                    )
                )
        else:
            real_dst, real_dport, egress = pkt.dst, pkt.dport, None
            local = self.routes.local_interface(v, pkt.dst)
            if local is not None:
                self._to_the_box(iface, local, pkt, now, out, ev)
                return None
        route = self.routes.lookup(v, real_dst)
        if route is None:
            if trace is not None:
                trace.append(
                    (
                        "ROUTE-LOOKUP",
                        "Resolve Egress Interface",
                        False,
                        None,
                        f"no route to {addr_str(v, real_dst)}",
                    )
                )
            self._drop(
                ev, DropReason.NO_ROUTE, iface, pkt, now, hint=f"add a route for {addr_str(v, real_dst)}"
            )
            return None
        if egress is None:
            egress = route.interface
        if trace is not None:
            trace.append(
                (
                    "ROUTE-LOOKUP",
                    "Resolve Egress Interface",
                    True,
                    route.origin,
                    f"found next-hop {addr_str(v, route.gateway) if route.gateway else addr_str(v, real_dst)}"
                    f" using egress ifc  {egress}",
                )
            )
        if egress not in self.interfaces:
            self._drop(ev, DropReason.NO_ROUTE, iface, pkt, now, message=f"egress {egress} is down")
            return None

        # Access rules (against mapped addresses before ASA 8.3, real ones after).
        acl_dst = pkt.dst if self.acl_on_mapped else real_dst
        acl_dport = pkt.dport if self.acl_on_mapped else real_dport
        dec = (
            self.acl.check(
                iface, egress, v, proto, pkt.src, pkt.sport, acl_dst, acl_dport, icmp_type, icmp_code
            )
            if exp is None
            else exp.decision
        )
        for cr in dec.logged:
            ev.append(
                AclHit(
                    now,
                    cr.rule.acl,
                    "permitted" if cr.permit else "denied",
                    proto,
                    iface,
                    (v, pkt.src),  # addresses as (version, int): formatted if a log reads them
                    pkt.sport,
                    egress,
                    (v, acl_dst),
                    acl_dport,
                    cr.hits,
                    origin=cr.rule.origin,
                )
            )
        if not dec.permitted:
            origin = dec.rule.rule.origin if dec.rule else self.acl.group_origin.get((iface, "in"))
            if trace is not None:
                trace.append(("ACCESS-LIST", "", False, origin, dec.reason))
            if dec.acl is not None:
                hint = (
                    f"permit this flow in access-list {dec.acl}"
                    if dec.rule is None
                    else f"the deny entry of access-list {dec.acl} matches; permit the flow before it"
                )
                self._drop(
                    ev,
                    DropReason.ACL_DROP,
                    iface,
                    pkt,
                    now,
                    egress=egress,
                    acl=dec.acl,
                    origin=origin,
                    message=dec.reason,
                    hint=hint,
                )
            elif "lower to higher" in dec.reason:
                # The ASA counts the security-level default deny as an ACL drop (implicit rule) and logs
                # 106001 / 106006 / 106014 for it.
                self._drop(
                    ev,
                    DropReason.ACL_DROP,
                    iface,
                    pkt,
                    now,
                    egress=egress,
                    origin=itf.origin,
                    message=dec.reason,
                    hint=f"bind an access list permitting this flow: access-group NAME in interface {iface}",
                )
            else:
                hint = (
                    "same-security-traffic permit intra-interface"
                    if iface == egress
                    else "same-security-traffic permit inter-interface"
                )
                self._drop(
                    ev,
                    DropReason.SECURITY_LEVEL,
                    iface,
                    pkt,
                    now,
                    egress=egress,
                    origin=itf.origin,
                    message=dec.reason,
                    hint=hint,
                )
            return None
        if trace is not None:
            trace.append(
                (
                    "ACCESS-LIST",
                    "log" if dec.rule else "",
                    True,
                    dec.rule.rule.origin if dec.rule else None,
                    dec.reason,
                )
            )

        # Source translation.
        try:
            # A twice NAT rule found by UN-NAT translates the source too (``via``).
            xl, created = self.nat.translate_source(
                v,
                proto,
                iface,
                egress,
                pkt.src,
                pkt.sport,
                real_dst,
                real_dport,
                now,
                via=unnat[3] if unnat is not None else None,
            )
        except NatFailure as e:
            if trace is not None:
                trace.append(("NAT", "", False, e.rule.origin, e.message))
            self._drop(
                ev,
                DropReason.NAT_FAILED,
                iface,
                pkt,
                now,
                egress=egress,
                origin=e.rule.origin,
                message=e.message,
                detail={"xlate_kind": e.xlate_kind},
            )
            return None
        msrc, msport = (
            (xl.mapped_addr, xl.mapped_port if xl.pat else pkt.sport) if xl else (pkt.src, pkt.sport)
        )
        if trace is not None:
            if xl is not None:
                trace.append(
                    (
                        "NAT",
                        "",
                        True,
                        xl.rule.origin,
                        f"{'Dynamic' if xl.kind == 'dynamic' else 'Static'} translate "
                        f"{addr_str(v, pkt.src)}/{pkt.sport} to {addr_str(v, msrc)}/{msport}",
                    )
                )
            else:
                trace.append(("NAT", "", True, None, "No translation"))

        # TCP tracking starts with this packet.
        trk = None
        if proto == PROTO_TCP:
            trk, why = TcpTracker.new(pkt, self.ct)
            if trk is None:
                self._drop(
                    ev,
                    DropReason.TCP_INVALID if not self.asa else DropReason.INVALID_TCP_FLAGS,
                    iface,
                    pkt,
                    now,
                    egress=egress,
                    message=why or "invalid new",
                )
                if xl is not None and created:
                    self._xlate_unused(xl, now)
                return None

        # Connection limits (ASA): the flow's class decides, before a connection exists.
        eff = admission = None
        if self.service_policies is not None:
            eff = self.service_policies.resolve(
                iface, egress, v, proto, pkt.src, pkt.sport, real_dst, real_dport, icmp_type, icmp_code,
                count=False,
            )  # fmt: skip
            verdict = self.limits.decide(
                eff, self._nat_rules(xl, unnat), proto, v, pkt.src, now, validated=validated
            )
            if verdict.action != ADMIT:
                if trace is not None:
                    trace.append(
                        ("CONN-SETTINGS", "", False, verdict.origin, f"{verdict.kind} limit reached")
                    )
                if xl is not None and created:
                    self._xlate_unused(xl, now)
                self._limit_refusal(iface, egress, pkt, verdict, now, out, ev)
                return None
            admission = verdict.admission

        conn_id = self._next_id
        self._next_id += 1
        lin = itf.security_level
        lout = self.interfaces[egress].security_level
        direction = "outbound" if lin >= lout else "inbound"
        # The ends for ConnBuilt, their addresses as (version, int) (formatted if a log reads them).
        # The connection keeps none: they are what its ORIGINAL half says (Connection.initiator).
        initiator = Endpoint(iface, (v, pkt.src), pkt.sport, (v, msrc), msport)
        responder = Endpoint(egress, (v, real_dst), real_dport, (v, pkt.dst), pkt.dport)
        conn = Connection(
            conn_id, v, proto, now, direction, None, None, dec.rule.rule.origin if dec.rule else None
        )
        conn.tcp = trk
        conn.limit = admission
        echo = proto in (PROTO_ICMP, PROTO_ICMPV6) and (v, icmp_type) in _ICMP_ECHO
        fwd_key = (v, proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
        if echo:
            rev_key = (v, proto, real_dst, msport, msrc, msport)
        else:
            rev_key = (v, proto, real_dst, real_dport, msrc, msport)
        if rev_key in self.conns.by_key:
            if admission is not None:
                admission.release()
            self._drop(
                ev,
                DropReason.NAT_FAILED,
                iface,
                pkt,
                now,
                egress=egress,
                message="the translated tuple is in use by another connection",
            )
            return None
        fwd = Half(
            conn,
            ORIGINAL,
            iface,
            egress,
            fwd_key,
            msrc if msrc != pkt.src else None,
            msport if msport != pkt.sport else None,
            real_dst if real_dst != pkt.dst else None,
            real_dport if real_dport != pkt.dport else None,
        )
        rev = Half(
            conn,
            REPLY,
            egress,
            iface,
            rev_key,
            pkt.dst if real_dst != pkt.dst else None,
            (pkt.sport if echo else pkt.dport)
            if (msport != pkt.sport if echo else real_dport != pkt.dport)
            else None,
            pkt.src if msrc != pkt.src else None,
            pkt.sport if msport != pkt.sport else None,
        )
        if echo and rev.new_sport is not None:
            rev.new_dport = None  # one identifier field: set_icmp_id from new_sport
        conn.halves = (fwd, rev)
        if xl is not None:
            self.nat.acquire(xl)
            conn.xlates = (xl,)
            if created:
                ev.append(
                    XlateBuilt(
                        now,
                        xl.kind,
                        xl.proto,
                        xl.real_iface,
                        (xl.version, xl.real_addr),  # formatted if a log reads them
                        xl.real_port,
                        xl.mapped_iface,
                        (xl.version, xl.mapped_addr),
                        xl.mapped_port,
                        origin=xl.rule.origin,
                    )
                )
            if rev.rewrites:
                self._index_for_replay(
                    (v, proto, real_dst, real_dport if not echo else pkt.sport, pkt.src, pkt.sport), rev
                )
        held = unnat[3].xlate if unnat is not None and unnat[3] is not None else None
        if held is not None and held is not xl:
            # A connection to a dynamic NAT slot's mapped address keeps the slot alive (UN-NAT by xlate).
            self.nat.acquire(held)
            conn.xlates = (*conn.xlates, held)
        self.conns.add(conn)
        if exp is not None:
            # RELATED: linked to its master, holding the translation slot its announcement reserved.
            self.expect.consume(exp, conn, now)
            if fwd.new_dst is not None or fwd.new_dport is not None:
                # Replay: a capture shows this data connection going to the real address and port.
                self._index_for_replay((v, proto, pkt.src, pkt.sport, real_dst, real_dport), fwd)
        elif self.inspectors and proto == PROTO_TCP:
            conn.helper = self._inspector_for(conn, pkt.dport, real_dport, eff)
        if self.service_policies is not None:
            self._apply_policy(
                conn, iface, egress, pkt, real_dst, real_dport, icmp_type, icmp_code, xl, unnat, eff
            )
        tmo = conn.tmo
        t = self.timeouts
        if proto == PROTO_TCP:
            self._set_timeout(
                conn, _timeout(tmo, 0, t.embryonic) if self.asa else trk.timeout(self.ct), "embryonic", now
            )
        elif proto == PROTO_UDP:
            self._set_timeout(conn, _timeout(tmo, 1, t.udp) if self.asa else self.ct.udp_timeout, "idle", now)
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            icmp = _timeout(tmo, 1, t.icmp) if self.asa else self.ct.icmp_timeout
            self._set_timeout(conn, icmp, "idle", now)
        else:
            self._set_timeout(conn, _timeout(tmo, 1, t.conn) if self.asa else 600.0, "idle", now)
        self.stats["connections"] += 1
        ev.append(ConnBuilt(now, conn_id, proto, direction, initiator, responder, origin=conn.origin))
        if trace is not None:
            trace.append(
                (
                    "FLOW-CREATION",
                    "",
                    True,
                    None,
                    f"New flow created with id {conn_id}, packet dispatched to next module",
                )
            )
        return fwd

    # ---------------------------------------------------------------------------------------------
    # Teardown and expiry

    def _teardown(
        self, conn: Connection, now: float, reason: str, by: str | None, out: list, ev: list
    ) -> None:
        if conn.closed:
            return
        if conn.fast is not None:
            self._fast.unoffload(conn)
        self.conns.remove(conn)
        if conn.limit is not None:
            conn.limit.release()
            conn.limit = None
        conn.dcd = None
        if self._nf is None:
            # An ASA connection keeps no ends of its own (_new_flow): they are what its ORIGINAL half
            # says, here with (version, int) addresses, formatted only if a log reads them.
            fwd = conn.halves[0]
            v, _, src, sport, dst, dport = fwd.key
            initiator = Endpoint(
                fwd.in_iface,
                (v, src),
                sport,
                (v, src if fwd.new_src is None else fwd.new_src),
                sport if fwd.new_sport is None else fwd.new_sport,
            )
            responder = Endpoint(
                fwd.out_iface,
                (v, dst if fwd.new_dst is None else fwd.new_dst),
                dport if fwd.new_dport is None else fwd.new_dport,
                (v, dst),
                dport,
            )
        else:
            initiator, responder = conn.initiator, conn.responder
        ev.append(
            ConnTeardown(
                now,
                conn.id,
                conn.proto,
                conn.direction,
                initiator,
                responder,
                now - conn.created,
                conn.bytes,
                reason,
                by,
            )
        )
        if self._nf is not None:
            self._nf.destroyed(conn, now, ev)
        for x in conn.xlates:
            if self.nat.release(x, now):
                self.timers.schedule(now + x.timeout, x)
        if conn.helper is not None:
            conn.helper.closed(now)
        if conn.replay_keys:
            # Only this connection's own entries: a scan of the whole index made teardown O(table).
            index = self._replay_index
            for key in conn.replay_keys:
                held = index.get(key)
                if held is not None and held.conn is conn:
                    del index[key]

    def _index_for_replay(self, key: tuple, half: Half) -> None:
        """Remember how a capture taken without the firewall shows ``half``'s packets (replay_rewrite),
        once a replay adapter asked for it (nothing is kept per connection otherwise)."""
        index = self._replay_index
        if index is None:
            return
        index[key] = half
        conn = half.conn
        if conn.replay_keys is None:
            conn.replay_keys = [key]
        else:
            conn.replay_keys.append(key)

    def _expire_conn(self, conn: Connection, due: float, out: list, ev: list) -> None:
        if conn.proto == PROTO_TCP:
            if conn.intercept is not None:
                self._intercept_failed(conn, due, out, ev)
                return
            kind = conn.timeout_kind
            if kind == "idle":
                eff = conn.mpf
                if eff is not None and eff.dcd and conn.tcp.state == TcpState.ESTABLISHED:
                    self._dcd_start(conn, due, out)
                    return
                self._idle_teardown(conn, due, out, ev)
                return
            reason = {"embryonic": "SYN Timeout", "half-closed": "FIN Timeout"}.get(kind, "Idle Timeout")
        else:
            reason = ""
        self._teardown(conn, due, reason, None, out, ev)

    def _idle_teardown(self, conn: Connection, when: float, out: list, ev: list) -> None:
        """An idle TCP connection goes; with ``idle ... reset`` both ends get a RST first."""
        eff = conn.mpf
        if eff is not None and eff.idle_reset and conn.tcp is not None:
            out.append(dcd.reset(conn, ORIGINAL))
            out.append(dcd.reset(conn, REPLY))
            self._teardown(conn, when, "Flow timed out with reset", None, out, ev)
        else:
            self._teardown(conn, when, "Idle Timeout", None, out, ev)

    # ---------------------------------------------------------------------------------------------
    # Connection limits, TCP Intercept, Dead Connection Detection (ASA)

    @staticmethod
    def _nat_rules(xl: Xlate | None, unnat) -> list:
        """The NAT rules a flow uses: its source translation's and the static its destination hit."""
        rules = []
        if xl is not None and xl.rule is not None:
            rules.append(xl.rule)
        static = unnat[3] if unnat else None
        if static is not None:
            rules.append(static.rule)
        return rules

    def _limit_refusal(self, iface: str, egress: str, pkt: Packet, verdict, now: float, out, ev) -> None:
        """A limit refused a new flow: drop it (201011/201013) or answer its SYN with a cookie
        (201010/201012)."""
        inbound = self.interfaces[iface].security_level < self.interfaces[egress].security_level
        detail = verdict.detail("input" if inbound else "output")
        if verdict.action == DENY:
            self._drop(
                ev,
                DropReason.CONN_LIMIT,
                iface,
                pkt,
                now,
                egress=egress,
                origin=verdict.origin,
                hint=f"a higher {_LIMIT_KEYWORDS[verdict.kind]} than {verdict.limit}",
                message=f"{verdict.kind} limit {verdict.limit} reached ({verdict.count} connections)",
                detail=detail,
            )
            if self.threat is not None:
                self.threat.drop(threat.CONN_LIMIT, now, ev)
            return
        synack = self.intercept.answer(pkt, now, self.policy.sysopt_tcpmss, self.policy.sysopt_tcpmss_minimum)
        out.append((iface, synack))
        self._drop(
            ev,
            DropReason.INTERCEPT,
            iface,
            pkt,
            now,
            egress=egress,
            origin=verdict.origin,
            message=f"{verdict.kind} limit {verdict.limit} reached: answered with a SYN cookie",
            detail=detail,
        )
        if self.threat is not None:
            self.threat.drop(threat.SYN_ATTACK, now, ev)

    def _intercept_ack(self, iface: str, pkt: Packet, now: float, out: list, ev: list) -> bool:
        """A bare ACK with no connection while cookies are out: True when TCP Intercept took it."""
        ic = self.intercept
        idx = ic.validate(pkt, now)
        if idx is None:
            if not ic.aimed_at(pkt.version, pkt.dst, pkt.dport, now):
                return False  # a stray ACK elsewhere: the ordinary no-connection drop
            self._drop(
                ev,
                DropReason.INTERCEPT_INVALID,
                iface,
                pkt,
                now,
                message="ACK without a valid SYN cookie towards a destination under TCP Intercept",
            )
            return True
        syn = decode(ic.client_syn(pkt, idx))
        half = self._new_flow(iface, syn, now, out, ev, validated=True)
        if half is None:
            # The client believes it is connected: tell it the connection was refused after all.
            out.append((iface, craft.tcp_reset_for(pkt)))
            return True
        conn = half.conn
        self._forward(half, syn, now, out, ev, 0, first=True)
        if conn.closed:
            return True
        policy = self.policy
        told = intercept.advertised_mss(
            intercept.MSS_TABLE[pkt.version][idx], policy.sysopt_tcpmss, policy.sysopt_tcpmss_minimum
        )
        cookie = (pkt.ack - 1) & 0xFFFFFFFF
        intercept.prepare(conn, intercept.Pending(cookie, bytes(pkt.buf[: pkt.total_len]), told))
        self._shifting = True
        return True

    def _intercepted(self, half: Half, pkt: Packet, now: float, out: list, ev: list) -> bool:
        """A segment of a connection TCP Intercept opened whose server has not answered yet; True when
        it was consumed here."""
        conn = half.conn
        flags = pkt.flags
        if half.dir == ORIGINAL:
            if flags & TCP_RST:
                return False  # the client gives up: its RST goes on to the server
            self._drop(
                ev,
                DropReason.INTERCEPT,
                half.in_iface,
                pkt,
                now,
                egress=half.out_iface,
                message="the server has not answered TCP Intercept's SYN yet",
                detail={"conn": conn.id},
            )
            return True
        if flags & TCP_RST:
            pending = conn.intercept
            conn.intercept = None
            out.append(intercept.client_reset(conn, pending))
            self.intercept.stats["server_failures"] += 1
            self._teardown(conn, now, "Flow terminated by TCP Intercept", half.in_iface, out, ev)
            return True
        if flags & (TCP_SYN | TCP_ACK) != TCP_SYN | TCP_ACK:
            self._drop(
                ev,
                DropReason.INTERCEPT_INVALID,
                half.in_iface,
                pkt,
                now,
                egress=half.out_iface,
                message="the server sent something other than a SYN-ACK to TCP Intercept's SYN",
                detail={"conn": conn.id},
            )
            return True
        norm = conn.norm
        if norm is not None and self._normalize(half, norm, pkt, now, out, ev, 0):
            return True
        shift = conn.seqrand
        verdict, why = conn.tcp.packet(REPLY, pkt, self.ct, ack_offset=shift.ack_offset(REPLY, pkt.ack))
        if verdict == INVALID:
            over = why is not None and why.startswith("ACK is over")
            self._drop(
                ev,
                DropReason.TCP_INVALID_ACK if over else DropReason.TCP_INVALID,
                half.in_iface,
                pkt,
                now,
                egress=half.out_iface,
                message=why or "INVALID",
                detail={"ctstate": "INVALID", "conn": conn.id},
            )
            return True
        ack, update = intercept.splice(conn, pkt)
        self._forward(conn.halves[ORIGINAL], decode(ack), now, out, ev, 0)
        if not conn.closed:
            self._forward(half, decode(update), now, out, ev, 0)
        return True

    def _intercept_failed(self, conn: Connection, due: float, out: list, ev: list) -> None:
        """The server never answered the SYN TCP Intercept sent for a validated client."""
        pending = conn.intercept
        conn.intercept = None
        out.append(intercept.client_reset(conn, pending))
        self.intercept.stats["server_failures"] += 1
        self._teardown(conn, due, "Flow terminated by TCP Intercept", None, out, ev)

    def _dcd_start(self, conn: Connection, due: float, out: list) -> None:
        """Idle expiry with DCD: probe both ends instead of freeing the connection."""
        eff = conn.mpf
        use = eff.set_by.get("dcd")
        probe = dcd.Probe(conn, eff.dcd_retry_interval, eff.dcd_max_retries, use.counters if use else None)
        conn.dcd = probe
        conn.queued_at = 0.0  # the idle timer is re-armed when probing ends with the connection alive
        out += probe.send(due)
        self.timers.schedule(probe.due, probe)

    def _dcd_round(self, probe: dcd.Probe, out: list, ev: list) -> None:
        conn = probe.conn
        if conn.closed or conn.dcd is not probe:
            return  # answered, or the connection was used or ended meanwhile
        when = probe.due
        if probe.exhausted:
            conn.dcd = None
            probe.counters["dcd_expirations"] += 1
            self._idle_teardown(conn, when, out, ev)
            return
        out += probe.send(when)
        self.timers.schedule(probe.due, probe)

    def _dcd_answer(self, half: Half, pkt: Packet, now: float) -> bool:
        """A segment while DCD probes: True when it is a probe's answer (consumed, never forwarded)."""
        conn = half.conn
        probe = conn.dcd
        if probe.answers(half.dir, pkt):
            self.stats["dcd_answers"] += 1
            if probe.alive:
                conn.dcd = None
                conn.last = now
                self._set_timeout(conn, conn.timeout, "idle", now)
            return True
        # Anything else is the connection in use: it goes on as usual. The idle timer is armed again
        # now, not after forwarding, so that a segment dropped further on leaves the connection to expire.
        conn.dcd = None
        if conn.queued_at == 0.0:
            self._set_timeout(conn, conn.timeout, conn.timeout_kind, now)
        return False

    def _xlate_unused(self, xl: Xlate, now: float) -> None:
        self.nat.remove(xl)

    def _xlate_event(self, cls, x: Xlate, now: float, **kw):
        v = x.version
        return cls(
            now,
            x.kind,
            x.proto,
            x.real_iface,
            addr_str(v, x.real_addr),
            x.real_port,
            x.mapped_iface,
            addr_str(v, x.mapped_addr),
            x.mapped_port,
            **kw,
        )

    # ---------------------------------------------------------------------------------------------
    # ICMP: errors about tracked connections, errors the firewall sends, the box's own echo

    def _icmp_error(self, iface: str, pkt: Packet, now: float, out: list, ev: list) -> None:
        inner = pkt.inner()
        key = (inner.version, inner.proto, inner.dst, inner.dport, inner.src, inner.sport)
        if (inner.version, inner.icmp_type) in _ICMP_ECHO and inner.proto in (PROTO_ICMP, PROTO_ICMPV6):
            key = (inner.version, inner.proto, inner.dst, inner.icmp_id, inner.src, inner.icmp_id)
        half = self.conns.by_key.get(key)
        if half is not None and half.conn.fast is not None:
            self._fast.unoffload(half.conn)
        if half is None or half.in_iface != iface:
            self._drop(
                ev,
                DropReason.ICMP_NO_SESSION,
                iface,
                pkt,
                now,
                message="ICMP error quotes no existing connection",
            )
            return
        if pkt.ttl <= 1:
            self._time_exceeded(iface, pkt, now, out, ev)
            return
        pkt.set_ttl(pkt.ttl - 1)
        # RFC 5508: translate the outer destination and the quoted packet, which travelled the other way.
        if half.new_dst is not None:
            pkt.set_dst(half.new_dst)
        if half.new_src is not None and pkt.src == inner.dst:
            pkt.set_src(half.new_src)
        if half.rewrites:
            if half.new_dst is not None:
                inner.set_src(half.new_dst)
            if half.new_src is not None:
                inner.set_dst(half.new_src)
            if inner.proto in (PROTO_TCP, PROTO_UDP):
                if half.new_dport is not None:
                    inner.set_sport(half.new_dport)
                if half.new_sport is not None:
                    inner.set_dport(half.new_sport)
            elif half.new_sport is not None:
                inner.set_icmp_id(half.new_sport)
            pkt.fix_icmp_checksum()
        shift = half.conn.seqrand
        if shift is not None and inner.proto == PROTO_TCP:
            # The quoted segment went the other way with its seq shifted: its sender gets its own back.
            shift.restore_quoted(1 - half.dir, inner)
        half.conn.last = now
        self.stats["forwarded"] += 1
        out.append((half.out_iface, pkt.buf))

    def _icmp_source(self, iface: str, version: int, toward: int) -> int | None:
        return self.routes.interface_address(iface, version, toward)

    def _time_exceeded(self, iface: str, pkt: Packet, now: float, out: list, ev: list) -> None:
        self._drop(ev, DropReason.TTL_EXPIRED, iface, pkt, now)
        if pkt.is_icmp_error:
            return  # never answer an error with an error (RFC 1812 4.3.2.7)
        src = self._icmp_source(iface, pkt.version, pkt.src)
        if src is None:
            return
        t = 11 if pkt.version == 4 else 3
        reply = craft.icmp_error(pkt.version, src, pkt.src, t, 0, bytes(pkt.buf[: pkt.total_len]))
        out.append((iface, reply))
        ev.append(
            IcmpSent(
                now,
                iface,
                t,
                0,
                addr_str(pkt.version, src),
                addr_str(pkt.version, pkt.src),
                "time exceeded in transit",
            )
        )

    def _too_big(self, iface: str, pkt: Packet, mtu: int, now: float, out: list, ev: list) -> bool:
        """A packet larger than the egress MTU: True to forward anyway (IPv4 without DF is left to the
        next hop), False after answering with fragmentation-needed / packet-too-big."""
        if pkt.version == 4 and not pkt.df:
            return True
        self._drop(
            ev,
            DropReason.INVALID_IP_LENGTH,
            iface,
            pkt,
            now,
            message=f"packet of {pkt.total_len} bytes exceeds MTU {mtu} with DF set",
        )
        if pkt.is_icmp_error:
            return False
        src = self._icmp_source(iface, pkt.version, pkt.src)
        if src is not None:
            t, c = (3, 4) if pkt.version == 4 else (2, 0)
            out.append(
                (
                    iface,
                    craft.icmp_error(
                        pkt.version, src, pkt.src, t, c, bytes(pkt.buf[: pkt.total_len]), mtu=mtu
                    ),
                )
            )
            ev.append(
                IcmpSent(
                    now,
                    iface,
                    t,
                    c,
                    addr_str(pkt.version, src),
                    addr_str(pkt.version, pkt.src),
                    f"fragmentation needed, MTU {mtu}",
                )
            )
        return False

    def _to_the_box(self, iface: str, local: str, pkt: Packet, now: float, out: list, ev: list) -> None:
        v = pkt.version
        if (
            local == iface
            and pkt.proto in (PROTO_ICMP, PROTO_ICMPV6)
            and (v, pkt.icmp_type) in _ICMP_ECHO_REQUEST
        ):
            # The ASA answers pings to the address of the interface they arrive on.
            start = pkt.l4off + 8
            seq = int.from_bytes(pkt.buf[pkt.l4off + 6 : pkt.l4off + 8], "big")
            reply = craft.icmp_echo(
                v, pkt.dst, pkt.src, pkt.icmp_id, seq, bytes(pkt.buf[start : pkt.total_len]), reply=True
            )
            out.append((iface, reply))
            self.stats["to_the_box"] += 1
            return
        self._drop(
            ev,
            DropReason.TO_THE_BOX,
            iface,
            pkt,
            now,
            message=f"addressed to the firewall's own address on {local}",
        )

    def _forward_fragment(self, iface: str, pkt: Packet, now: float, out: list, ev: list) -> None:
        # A later fragment belongs to a datagram whose first fragment created or used a connection;
        # translate its addresses the way that first fragment was translated. Fragments arriving before
        # their first fragment are dropped (statewall does not queue them; the ASA's virtual
        # reassembly would).
        entry = self._frag_flows.get((pkt.version, pkt.proto, pkt.src, pkt.dst, pkt.ip_id))
        if entry is not None and entry[1] >= now and not entry[0].conn.closed:
            half = entry[0]
            if half.in_iface != iface:
                self._drop(ev, DropReason.RPF_VIOLATED, iface, pkt, now)
                return
            if pkt.ttl <= 1:
                self._time_exceeded(iface, pkt, now, out, ev)
                return
            pkt.set_ttl(pkt.ttl - 1)
            if half.new_src is not None:
                pkt.set_src(half.new_src)
            if half.new_dst is not None:
                pkt.set_dst(half.new_dst)
            self.stats["forwarded"] += 1
            out.append((half.out_iface, pkt.buf))
            return
        self._drop(
            ev,
            DropReason.INVALID_FRAGMENT,
            iface,
            pkt,
            now,
            message="fragment of a datagram whose first fragment was not seen",
        )

    # ---------------------------------------------------------------------------------------------
    # Drops

    def _drop(
        self,
        ev: list,
        reason: DropReason,
        iface: str,
        pkt: Packet | None,
        now: float,
        *,
        egress: str | None = None,
        acl: str | None = None,
        origin: Origin | None = None,
        hint: str | None = None,
        message: str = "",
        detail: dict | None = None,
    ) -> None:
        self.drops[reason] += 1
        self.stats["dropped"] += 1
        if pkt is None:
            ev.append(Drop(now, reason, iface, message=message, detail=detail or {}))
            return
        v = pkt.version
        proto = pkt.proto
        is_icmp = proto in (PROTO_ICMP, PROTO_ICMPV6)
        ev.append(
            Drop(
                now,
                reason,
                iface,
                protocol=proto,
                src=addr_str(v, pkt.src),
                sport=pkt.sport if not is_icmp else 0,
                dst=addr_str(v, pkt.dst),
                dport=pkt.dport if not is_icmp else 0,
                tcp_flags=pkt.flags if proto == PROTO_TCP else None,
                icmp_type=pkt.icmp_type if is_icmp else None,
                icmp_code=pkt.icmp_code if is_icmp else None,
                egress=egress,
                acl=acl,
                origin=origin,
                hint=hint,
                message=message,
                detail=detail or {},
            )
        )

    # ---------------------------------------------------------------------------------------------
    # Tables for show commands

    def conn_records(self) -> list:
        """``show conn`` rows (``logfmt.asa.ConnRecord``), outside end first as the ASA prints them."""
        from .logfmt.asa import ConnRecord

        rows = []
        for conn in self.conns:
            ini, res = conn.initiator, conn.responder
            outside, inside = (res, ini) if conn.inside_is_initiator else (ini, res)
            # The ASA shows the inside host's real address and the outside host's address as seen.
            rows.append(
                ConnRecord(
                    conn.proto,
                    outside.interface,
                    outside.address,
                    outside.port,
                    inside.interface,
                    inside.address,
                    inside.port,
                    conn.last,
                    conn.bytes,
                    asa_conn_flags(conn),
                    conn.created,
                    conn.timeout,
                )
            )
        return rows

    def show_conn(self, *, detail: bool = False) -> str:
        """``show conn [detail]`` as the ASA prints it, with the table's high-water mark."""
        from .logfmt.asa import format_show_conn

        return format_show_conn(self.conn_records(), self.now, most_used=self.conns.most_used, detail=detail)

    def xlate_records(self) -> list:
        from .logfmt.asa import XlateRecord

        # A slot in use is as idle as the most recently active of its connections.
        active: dict[int, float] = {}
        for conn in self.conns:
            for x in conn.xlates:
                if conn.last > active.get(id(x), float("-inf")):
                    active[id(x)] = conn.last
        rows = []
        for x in self.nat.xlates.values():
            v = x.version
            flags = x.flags or ("ri" if x.pat else ("s" if x.kind == "static" else "i"))
            rows.append(
                XlateRecord(
                    x.proto,
                    x.real_iface,
                    addr_str(v, x.real_addr),
                    x.real_port,
                    x.mapped_iface,
                    addr_str(v, x.mapped_addr),
                    x.mapped_port,
                    x.idle_since if x.refcount == 0 else active.get(id(x), self.now),
                    x.timeout,
                    flags,
                    "PAT" if x.pat else "NAT",
                )
            )
        return rows


def _timeout(tmo: tuple | None, i: int, default: float) -> float:
    """A connection's class timeout ``i`` (embryonic, idle, half-closed) when its class sets one."""
    if tmo is None:
        return default
    value = tmo[i]
    return default if value is None else value


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
