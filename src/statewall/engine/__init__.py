"""The engine: one firewall, sans-IO.

``Firewall.receive(iface, packet, now)`` and ``Firewall.advance(now)`` are the whole interface: bytes and
time in, packets to send and events out. The engine never reads a clock, a socket or a file; replay, the
live TUN loop, the lab and the CLI are adapters around it. ``Firewall.reload(policy)`` puts a new policy
under a running engine.

The engine is a pipeline of named stages over one state (docs/design.md draws it):

- ingress (here: ``Firewall.receive`` offers the packet to the fast path's leaf first, then
  ``Firewall.ingress``): the IP layer (``ip_in``: the IPv4 header checksum, then reassembly of
  fragments as the box does it; a reassembled datagram leaves as fragments again at the end), decode
  (a malformed packet is dropped with its reason), then the established-flow stage for a packet of a
  known connection arriving where it should
  (``forward.established``, with the compiled fast path as its leaf: ``statewall.fastpath``), else
  the sanity checks (unknown interface; a later fragment follows its first one) and the policy's path;
- the path: the ASA's (``asa``: connection lookup, then the new-flow stages UN-NAT, route, access list,
  NAT, limits, build) or netfilter's (``nf_path``: raw, conntrack, PREROUTING, route, FORWARD,
  POSTROUTING, confirm), chosen by what the policy contains (``compiled``);
- shared stages: ``forward`` (TTL/MTU, inspection, rewrite, sequence adjustment, emit, fragments),
  ``icmp`` (errors about connections, errors the box sends, echo to the box), ``lifecycle`` (timeouts
  and teardown, as a table per box);
- ``context``: the per-packet context and ``drop``, the one place a drop is counted and reported.

``state`` lists what the engine keeps (and a reload keeps); ``compiled`` what it builds from the policy;
``snapshot`` turns the kept state into bytes and back (``Firewall.snapshot``/``restore``: connections
across a restart of an adapter, which stores the bytes).
"""

from __future__ import annotations

from .. import fastpath
from ..conntrack import Connection
from ..dcd import Probe
from ..events import DropReason, Event, XlateTeardown, xlate_event
from ..expect import Expectation
from ..nat import PbaTick, Xlate
from ..normalizer import NormState
from ..packet import DecodeError, decode
from ..policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Policy
from . import asa, asa_policy, capture_space, compiled, forward, ip_in, lifecycle, snapshot, state
from .context import Result, drop, new_result
from .forward import FRAGMENT_TIMEOUT
from .lifecycle import asa_conn_flags
from .snapshot import SnapshotError

__all__ = ["FRAGMENT_TIMEOUT", "Firewall", "Result", "SnapshotError", "asa_conn_flags"]


class Firewall:
    """A stateful firewall enforcing one ``Policy``.

    Public state besides the interface methods: ``policy``, ``interfaces``, ``conns`` (the connection
    table), ``nat``, ``expect``, ``timers``, ``drops`` (``show asp drop``), ``stats``, ``now``,
    ``service_policies``, ``limits``, ``intercept``, ``threat``, ``netfilter`` (an iptables policy's
    rulesets and counters) and:

    - ``fast``: the compiled fast path (``statewall.fastpath.FastPath``: ``hits``, ``offloads``,
      ``sync()``, ``flush()``, ``len()``), None when it is off or not built;
    - ``nf_path``: netfilter's path (``statewall.engine.nf_path.NfPath``, its ``synproxy``), None for a
      policy without netfilter rulesets;
    - ``replay_index``: the index of translated halves ``replay_rewrite`` keeps (None until a replay
      adapter first asks);
    - ``trace_log``: packet-tracer's list of the stages' phases while it listens (None otherwise).
    """

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
        state.init_state(self, policy, seed)
        compiled.install(self, compiled.compile_policy(self, policy, faults, fast_path))

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

        A packet of an offloaded connection is the established-flow stage's compiled leaf's to forward
        (``statewall.fastpath``): it parses what it needs itself, before anything is decoded, and
        hands back (None, the packet untouched) every packet it is not sure of; those take
        ``ingress``. With the extension built, the class's ``receive`` is this same front door
        compiled (``statewall._fastpath.Entry``, a method descriptor, so a call costs no more than
        the leaf's own work); a call with keyword arguments runs this Python definition.
        """
        offer = self.fast_offer
        if offer is not None:
            res = offer(iface, data, now, csum_partial, gso_size)
            if res is not None:
                return res
        return self.ingress(iface, data, now, csum_partial, gso_size)

    def ingress(
        self, iface: str, data: bytes | bytearray, now: float, csum_partial: bool = False, gso_size: int = 0
    ) -> Result:
        """``receive`` without the compiled leaf: the IP layer (``ip_in``), decode, then the
        established-flow stage for a packet of a known connection arriving where it should, else the
        checks and the policy's path."""
        out: list[tuple[str, bytearray]] = []
        ev: list[Event] = []
        self.stats["packets_in"] += 1
        if now > self.now:
            self.now = now
        buf = data if type(data) is bytearray else bytearray(data)
        # The IP layer first (ip_in): the header checksum, then reassembly of fragments.
        if not ip_in.header_ok(self, iface, buf, now, ev):
            return Result(out, ev)
        dg, goes_on = ip_in.reassemble(self, iface, buf, now, ev)
        if not goes_on:
            return Result(out, ev)
        if dg is not None:
            buf = dg.data
            self.reasm_dg = dg
        try:
            pkt = decode(buf, partial_csum=csum_partial)
        except DecodeError as e:
            self.reasm_dg = None
            drop(self, ev, e.reason, iface, None, now, message=e.message)
            return Result(out, ev)
        try:
            # A packet of an existing connection arriving where it should goes straight to the
            # established-flow stage; everything else takes the checks below and the policy's path.
            half = (
                self.conns.by_key.get((pkt.version, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport))
                if pkt.has_l4 and self.nf_path is None
                else None
            )
            if half is not None and half.in_iface == iface:
                forward.established(self, half, pkt, now, out, ev, gso_size)
            elif iface not in self.interfaces:
                drop(self, ev, DropReason.UNKNOWN_INTERFACE, iface, pkt, now)
            elif pkt.is_fragment and not pkt.has_l4:
                # Non-first fragments carry no ports; they follow the flow of their datagram. Without
                # reassembly we forward them along the route like the kernel's non-defragmenting path.
                forward.later_fragment(self, iface, pkt, now, out, ev)
            else:
                self.path(self, iface, pkt, now, out, ev, gso_size)
        except DecodeError as e:  # e.g. a malformed quoted packet in an ICMP error, or bad TCP options
            drop(self, ev, e.reason, iface, pkt, now, message=e.message)
        except Exception as e:  # noqa: BLE001 - the engine must never raise for a packet; count it instead
            drop(self, ev, DropReason.INTERNAL_ERROR, iface, pkt, now, message=f"{type(e).__name__}: {e}")
        if self.nat.pba_events:
            # Blocks freed on the way (a flow stopped after its translation was made) are logged too.
            ev.extend(lifecycle.block_events(self, now))
        if dg is not None:
            # A reassembled datagram leaves as fragments again, cut as the box cuts them.
            self.reasm_dg = None
            ip_in.refragment(self, dg, buf, iface, now, out, ev)
        return new_result(Result, (out, ev))  # Result(out, ev) without the generated __new__ (per packet)

    receive = fastpath.front_door(receive, ingress)

    def advance(self, now: float) -> Result:
        """Let time pass: expire connections and translations due by ``now``."""
        out: list[tuple[str, bytearray]] = []
        ev: list[Event] = []
        if now > self.now:
            self.now = now
        timers = self.timers
        nat = self.nat
        for obj in timers.pop_due(now):
            if type(obj) is Xlate:  # a NAT slot: most of what comes due on a box translating (PAT)
                again = nat.expire(obj, now)
                if again is None:
                    continue
                if again > 0:
                    timers.schedule(again, obj)
                    continue
                shared = obj._c  # its timeout at 7, its entry at 9 (the shared tuple's)
                until = obj.idle_since + shared[7]
                e = shared[9]
                if e is not None and e.pba:
                    ev.extend(lifecycle.block_events(self, until))  # 305015, not 305012
                else:
                    ev.append(xlate_event(XlateTeardown, obj, until, until - obj.created))
            elif isinstance(obj, Connection):
                if obj.closed:
                    continue
                due = obj.deadline()
                if due > now:
                    obj.queued_at = due
                    timers.schedule(due, obj)
                    continue
                lifecycle.expire(self, obj, due, out, ev)
            elif isinstance(obj, Expectation):
                self.expect.expire(obj, now)
            elif isinstance(obj, NormState):
                asa_policy.expire_held(self, obj, now, ev)
            elif isinstance(obj, Probe):
                lifecycle.dcd_round(self, obj, out, ev)
            elif type(obj) is PbaTick:
                lifecycle.interim_blocks(self, obj, ev)  # 305017
            else:  # nothing else is queued (the NAT slot's expiry used to take anything else, and failed)
                raise TypeError(f"no expiry for a queued {type(obj).__name__}")
        forward.expire_fragments(self, now)
        ip_in.expire(self, now, ev)
        return Result(out, ev)

    def next_deadline(self) -> float | None:
        due = self.timers.next_deadline()
        frag = self.reasm.next_deadline if self.reasm.queues else None
        if frag is None:
            return due
        return frag if due is None else min(due, frag)

    def reload(self, policy: Policy) -> tuple[int, list[str]]:
        """Put ``policy`` under this running engine: connections, translations, expectations, timers,
        counters and ids are kept (``state.KEPT``); everything compiled from the policy is rebuilt
        (``compiled.REBUILT``/``MERGED``: ``statewall.engine.compiled.reload`` says how the NAT slots
        and service-policy counters move). Existing connections keep their egress, translation, TCP
        state, class settings and inspector; new ones get the new policy. Raises ValueError, changing
        nothing, when the new policy cannot be compiled. Returns the number of unused static
        translations dropped (the new statics make them again) and the engine attributes reload does
        not know (kept as they were)."""
        return compiled.reload(self, policy)

    def snapshot(self) -> bytes:
        """The state ``reload`` keeps, as bytes for ``restore`` in a later process: connections,
        translations, expectations, timers, counters, ids and the randomization secret
        (``statewall.engine.snapshot``). The adapter stores it; the engine never touches a file."""
        return snapshot.snapshot(self)

    def restore(self, data: bytes) -> dict:
        """Put a ``snapshot`` under this engine's policy as ``reload`` would: connections continue with
        their translations and sequence offsets. Raises ``snapshot.SnapshotError`` (a ValueError),
        changing nothing, for a damaged snapshot, another format version or another box (ASA against
        Linux). Returns the counts restored (``connections``, ``translations``, ``expectations``,
        ``statics_dropped``)."""
        return snapshot.restore(self, data)

    def new_flow(self, iface: str, pkt, now: float, out: list, ev: list, validated: bool = False):
        """The ASA's new-flow stages over ``pkt`` (``asa.new_flow``): the new connection's ORIGINAL half
        or None."""
        return asa.new_flow(self, iface, pkt, now, out, ev, validated)

    def drop(self, ev: list, reason: DropReason, iface: str | None, pkt, now: float, **kw) -> None:
        """Drop a packet with ``reason`` (``context.drop``), for the engine's helpers (SYNPROXY)."""
        drop(self, ev, reason, iface, pkt, now, **kw)

    def conntrack_entries(self, now: float | None = None) -> list:
        """An iptables policy's connections as ``conntrack -L`` shows them at ``now`` (default: the
        engine's clock), as ``CtEvent`` rows for ``statewall.logfmt.linux.conntrack_listing``; [] for a
        policy without netfilter rulesets."""
        if self.nf_path is None:
            return []
        return self.nf_path.conntrack_entries(self.now if now is None else now)

    def ingress_for(self, data: bytes | bytearray) -> str | None:
        """The interface through which the routing table reaches the packet's source."""
        try:
            pkt = decode(bytearray(data))
        except DecodeError:
            return None
        route = self.routes.lookup(pkt.version, pkt.src)
        if route is None:
            return None
        # A source that is a static translation's mapped address is a host behind the translation
        # captured after it: it arrives on the real side.
        real = self._static_real(pkt, route.interface)
        return real[2] if real is not None else route.interface

    def sent_by_box(self, iface: str, data: bytes | bytearray) -> bool:
        """Replay, a capture taken on ``iface``'s link: was this packet one the firewall itself sent
        out through ``iface``? A capture of a link holds both directions, so the box's output is in it
        too: a packet whose destination is reached through ``iface`` and whose source is one of the
        box's own addresses (a translated or a self-made packet) or is reached through another
        interface (a packet forwarded from there). Fed back in, it would arrive on the wrong side of
        its connection (an ASA drops it as tcp-not-syn); replay leaves it out and counts it."""
        try:
            pkt = decode(bytearray(data))
        except DecodeError:
            return False
        routes = self.routes
        out = routes.lookup(pkt.version, pkt.dst)
        if out is None or out.interface != iface or routes.local_interface(pkt.version, pkt.dst):
            return False
        if routes.local_interface(pkt.version, pkt.src) is not None:
            return True
        back = routes.lookup(pkt.version, pkt.src)
        return back is not None and back.interface != iface

    def _static_real(self, pkt, mapped_iface: str) -> tuple[int, int, str] | None:
        """(real address, real port, real interface) of ``pkt``'s source when it is the mapped address
        of a static translation on ``mapped_iface`` (a server's reply captured outside it), else None."""
        hit = self.nat.untranslate_destination(
            pkt.version, pkt.proto, mapped_iface, pkt.src, pkt.sport, pkt.dst, pkt.dport
        )
        if hit is None:
            return None
        real_src, real_sport, egress = hit[0], hit[1], hit[2]
        if egress is None:
            route = self.routes.lookup(pkt.version, real_src)
            egress = route.interface if route is not None else None
        if egress is None or egress == mapped_iface:
            return None
        return real_src, real_sport, egress

    def _static_mapped_dst(self, iface: str, pkt) -> tuple[int, int] | None:
        """(mapped address, mapped port) for a packet arriving on ``iface`` addressed to the real
        address of a host a bidirectional static maps onto ``iface`` (its real side routed through
        another interface), else None. A packet of a connection the table already holds is left.

        The question is NAT's reverse path check (``NatTable.reverse_static``), the one the ASA's NAT
        stage asks of a live packet (``engine.asa.source_nat``: dropped, 305013): replay carries a
        captured packet to the mapped address exactly when it could not have crossed the firewall as
        captured and a static offers the address the client used live."""
        if (pkt.version, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport) in self.conns.by_key:
            return None
        route = self.routes.lookup(pkt.version, pkt.dst)
        if route is None or route.interface == iface:
            return None
        hit = self.nat.reverse_static(
            pkt.version, pkt.proto, route.interface, iface, pkt.dst, pkt.dport, pkt.src, pkt.sport
        )
        if hit is None or not hit[3]:
            return None  # a unidirectional static: live no client could use its mapped address
        return hit[1], hit[2]

    def _static_real_side(self, iface: str, pkt) -> None:
        """A static captured on its real side: a client's packet to the host's real address, arriving
        on the static's mapped side (and belonging to no connection the replay knows otherwise). Live
        it was addressed to the mapped address (addressed to the real one, the ASA would have dropped
        it: NAT reverse path failure, ``engine.asa.source_nat``); its acks were captured without the
        firewall. Applied by ``replay_rewrite`` only, never to a live packet."""
        mapped = self._static_mapped_dst(iface, pkt)
        if mapped is None:
            return
        pkt.set_dst(mapped[0])
        if mapped[1] != pkt.dport and pkt.proto in (PROTO_TCP, PROTO_UDP):
            pkt.set_dport(mapped[1])
        known = self.conns.by_key.peek((pkt.version, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport))
        if known is not None and (known.conn.seqrand is not None or known.conn.helper is not None):
            capture_space.to_live(known, pkt, False)

    def replay_rewrite(self, iface: str, data: bytes | bytearray, now: float) -> bytearray:
        """Carry a captured packet from a responder into the coordinates the firewall gave its connection.

        A capture taken without the firewall in the path shows the responder answering the initiator's
        real address and port. Live, it would have answered the mapped ones; this returns the packet as
        it would have arrived, so that a replayed session flows as between live hosts.

        The first call starts the index of translated halves this needs: connections created from then
        on are indexed (a replay adapter calls this for every packet, from the first one on).
        """
        index = self.replay_index
        if index is None:
            self.replay_index = index = {}
        buf = bytearray(data)
        if not index and not self.expect.announced and not self.shifting and not self.nat.entries:
            return buf
        try:
            pkt = decode(buf)
        except DecodeError:
            return buf
        route = self.routes.lookup(pkt.version, pkt.src)
        if route is not None and route.interface != iface and self.nat.entries:
            # A host behind a static translation, captured on the translated side of it (its
            # mapped address as the source): the packet as it left the host, from its real address.
            real = self._static_real(pkt, route.interface)
            if real is not None and real[2] == iface:
                pkt.set_src(real[0])
                if real[1] != pkt.sport and pkt.proto in (PROTO_TCP, PROTO_UDP):
                    pkt.set_sport(real[1])
        key = (pkt.version, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
        known = self.conns.by_key.peek(key)  # read only: a view where the compiled record holds it
        if known is not None:
            if known.conn.seqrand is not None or known.conn.helper is not None:
                # Its acks answer data the firewall shifted (randomization, inspection rewrites),
                # unless the capture was taken after a box that shifted them already
                # (capture_space: read from the capture, per connection and direction).
                capture_space.to_live(known, pkt, True)
            return buf
        half = index.get(key)
        if half is None or half.conn.closed or half.in_iface != iface:
            exp = self.expect.for_replay(pkt.version, pkt.proto, iface, pkt.src, pkt.dst, pkt.dport)
            if exp is not None:
                # The first packet of an announced data connection, sent where it was announced.
                forward.retarget(pkt, exp.dst, exp.dport)
            elif self.nat.entries:
                self._static_real_side(iface, pkt)
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
