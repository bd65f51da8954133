"""netfilter's data path: the hooks one packet crosses, in Linux's order, around conntrack.

Owns the order of work for a policy with netfilter rulesets (``NfPath``; the compiled rulesets are
``self.nf``, whose counters ``statewall iptables --after-replay`` lists). Every packet of such a policy
goes through ``STAGES``, each a function of an ``NfPacket`` context returning False when it stopped the
packet, reporting its hook as its phase:

==================  ===============  ============================================================
stage               phase            decides
==================  ===============  ============================================================
``raw``             raw PREROUTING   ``CT --notrack``, ``CT --helper``; a bad IPv4 header checksum
``conntrack``       CONNTRACK        ctstate, connection (``statewall.engine.nf_conntrack``)
``prerouting``      PREROUTING       mangle and nat PREROUTING; the destination side of NAT
``route``           ROUTE-LOOKUP     the egress, or INPUT for the box's own addresses
``ip_forward``      IP-FORWARD       TTL and MTU before FORWARD (``statewall.engine.forward``)
``forward_hook``    FORWARD          filter FORWARD (SYNPROXY's target)
``postrouting``     POSTROUTING      mangle and nat POSTROUTING
``confirm``         CONFIRM          the new connection enters the table, with its source binding
``emit``            EMIT             inspection, the source side of NAT, sequence adjustment, out
==================  ===============  ============================================================

While packet-tracer listens (``Firewall.trace_log``) each stage reports its phase: the hooks every rule
the packet matched, conntrack its ctstate, route and NAT their answers (``statewall.engine.nf_trace``).

Later packets are translated by their connection, the destination side before routing and the source
side after POSTROUTING, as the kernel's NAT hooks do, so FORWARD rules see the real destination of a
reply to a masqueraded connection.

What conntrack decides is the ruleset's to act on: INVALID is a ctstate, not a drop. A packet that is
INVALID or UNTRACKED has no connection, so Linux neither translates it nor shows it to a helper, and
neither does statewall (an INVALID reply to a masqueraded connection goes to the box itself). A packet
a rule drops yields one ``Drop``: ACL_DROP naming ``table/chain`` and the rule (or the chain's policy),
TCP_INVALID with conntrack's reason when the packet was INVALID. REJECT sends its reply first. LOG
yields ``NfLog`` events; connections yield ``CtEvent`` NEW, UPDATE and DESTROY as ``conntrack -E``
reports them.

Where statewall differs from Linux: packets the box answers itself go no further than INPUT (an echo
request is answered; nothing else is delivered), and its echo replies and ICMP errors do not traverse
OUTPUT; fragments are not reassembled before conntrack (a first fragment carries the connection, later
ones follow it). What SYNPROXY sends (``statewall.synproxy``) and REJECT's replies go through OUTPUT
and POSTROUTING (``local_out``), as the kernel sends them with ``ip_local_out``. A connection a
flowtable offloaded (``flow add @ft``) is forwarded at ingress, before ``raw`` (``nf_flowtable``).
"""

from __future__ import annotations

from .. import craft
from ..conntrack import Half
from ..events import DropReason, IcmpSent, NfLog
from ..netfilter import HOOK_TABLES, Context, Decision, Netfilter
from ..packet import Packet, addr_to_str, decode
from ..policy import PROTO_TCP, PROTO_UDP, Inspection
from ..synproxy import SynProxy
from ..tcptrack import InvalidReason
from . import forward, ip_in, nf_flowtable, nf_local, nf_trace
from . import nf_conntrack as ct
from .context import drop, run, stage
from .nf_conntrack import NfFlow
from .nf_trace import walk

_TCP_RST = 0x04
_DST_NAT = frozenset({"DNAT"})

_RAW_PRE = Netfilter.before_conntrack("PREROUTING")
_PRE = Netfilter.after_conntrack("PREROUTING")
_PRE_NONAT = tuple(t for t in _PRE if t != "nat")
_FORWARD = HOOK_TABLES["FORWARD"]
_POST = HOOK_TABLES["POSTROUTING"]
_POST_NONAT = tuple(t for t in _POST if t != "nat")

# Conntrack's reasons for INVALID that a sysctl would have let through, for a dropped packet's hint.
INVALID_HINTS = {
    InvalidReason.SEQ_OVER: "net.netfilter.nf_conntrack_tcp_be_liberal = 1",
    InvalidReason.ACK_OVER: "net.netfilter.nf_conntrack_tcp_be_liberal = 1",
    InvalidReason.INVALID_RST: "net.netfilter.nf_conntrack_tcp_ignore_invalid_rst = 1",
    InvalidReason.NOT_SYN: "net.netfilter.nf_conntrack_tcp_loose = 1",
    InvalidReason.BAD_CHECKSUM: "net.netfilter.nf_conntrack_checksum = 0",
}


class NfPacket:
    """One packet on netfilter's path: what the stages found so far."""

    __slots__ = (
        "path", "fw", "iface", "pkt", "now", "out", "ev", "gso_size", "ctx", "bad_csum", "notrack",
        "helper_rule", "flow", "half", "conn", "egress", "accepted_by", "actions", "stage", "trace",
        "ct_timeout",
    )  # fmt: skip

    def __init__(self, path, iface: str, pkt: Packet, now: float, out: list, ev: list, gso_size: int) -> None:
        self.path = path
        self.fw = path.fw
        self.iface = iface
        self.pkt = pkt
        self.now = now
        self.out = out
        self.ev = ev
        self.gso_size = gso_size
        self.ctx = Context(iface, None, "INVALID", now=now, connlimit=path.connlimit)
        self.bad_csum = None
        self.notrack = False
        self.helper_rule = None
        self.flow: NfFlow | None = None
        self.half: Half | None = None
        self.conn = None
        self.egress: str | None = None
        self.accepted_by = None
        self.actions: list = []
        self.stage = None
        self.trace = path.fw.trace_log
        self.ct_timeout: dict | None = None  # a ct timeout policy for the new connection

    def report(self, ok: bool, info, *, subtype: str = "", origin=None, phase=None) -> None:
        """The running stage's answer, for packet-tracer (nothing is kept unless it listens)."""
        if self.trace is not None:
            self.trace.append((phase or self.stage.phase, subtype, ok, origin, info))

    def hook(self, hook: str, tables: tuple[str, ...]) -> Decision:
        """``hook``'s ``tables`` over the packet (``Netfilter.traverse``), reported under the stage's
        phase (``statewall.engine.nf_trace``)."""
        return walk(self.path.nf, self.trace, self.stage.phase, hook, self.pkt, self.ctx, tables, self.flow)


@stage("raw PREROUTING")
def raw(c: NfPacket) -> bool:
    path, pkt = c.path, c.pkt
    if path.settings.checksum:
        c.bad_csum = pkt.verify_checksums()
        if c.bad_csum is DropReason.BAD_IP_CHECKSUM:
            drop(c.fw, c.ev, c.bad_csum, c.iface, pkt, c.now, message="bad IPv4 header checksum (ip_rcv)")
            c.report(False, "bad IPv4 header checksum: dropped by ip_rcv before any hook")
            return False
    path.ct_pkt = pkt
    path.ct_flow = None
    path.ct_now = c.now
    # raw PREROUTING: before conntrack, state matches see INVALID as in the kernel.
    d = c.hook("PREROUTING", _RAW_PRE)
    if d.actions:
        for a in d.actions:
            k = a.kind
            if k == "LOG":
                c.ev.append(NfLog(c.now, a.args["text"], a.args["level"], "PREROUTING", a.rule.origin))
            elif k == "NOTRACK" or (k == "CT" and a.args.get("notrack")):
                c.notrack = True
            elif k == "CT" and a.args.get("helper"):
                c.helper_rule = a.rule
    if d.verdict != "ACCEPT":
        path.refused(d, "PREROUTING", c.iface, None, pkt, c.ctx, None, None, c.now, c.out, c.ev)
        return False
    return True


@stage("CONNTRACK")
def conntrack(c: NfPacket) -> bool:
    path = c.path
    if c.notrack:
        flow = NfFlow("UNTRACKED")
    elif c.bad_csum is not None:
        flow = NfFlow("INVALID", why=ct.Reason(InvalidReason.BAD_CHECKSUM))
    else:
        flow = ct.track(path, c.iface, c.pkt, c.now, c.out, c.ev)
        if flow.new and not ct.room(path, c.now, c.out, c.ev):
            drop(
                path.fw, c.ev, DropReason.CT_TABLE_FULL, c.iface, c.pkt, c.now,
                hint=f"a larger net.netfilter.nf_conntrack_max than {path.settings.max}",
                message="nf_conntrack: table full, dropping packet",
            )  # fmt: skip
            return False
    c.flow = flow
    half = c.half = flow.half
    conn = c.conn = half.conn if half is not None else None
    ctx = c.ctx
    ctx.ctstate = flow.state
    path.ct_flow = flow
    if conn is not None:
        ctx.ct_nat = conn.ct_nat
        # The connection's mark, the packet's direction and the status bits, for CONNMARK, connmark,
        # --ctdir and --ctstatus (the mark is stored back at CONFIRM).
        ctx.ct_mark = conn.mark
        ctx.ct_dir = "ORIGINAL" if half is conn.halves[0] else "REPLY"
        ctx.ct_status = conn.status()
        if conn.master is not None:
            ctx.master_helper = conn.master.helper_name
    elif flow.exp is not None:
        ctx.master_helper = flow.exp.master.helper_name
    if c.trace is not None:
        c.report(True, nf_trace.ct_line(flow))
    return True


def _later_helper(c: NfPacket, actions: list) -> None:
    """An nftables ``ct helper set`` after conntrack (any hook before the connection is confirmed)
    attaches the helper as a raw-table ``CT --helper`` rule does (nft_ct_helper_obj_eval); ``ct
    timeout set`` there gives the connection its timeout policy (nft_ct_timeout_obj_eval: only to a
    connection not yet confirmed of the object's protocol; in raw, before conntrack, it does nothing,
    as the kernel shows)."""
    if c.flow is not None and c.flow.new:
        for a in actions:
            if a.kind == "CT" and a.args.get("helper"):
                c.helper_rule = a.rule
            elif a.kind == "CTTIMEOUT" and a.args["protocol"] == c.pkt.proto:
                c.ct_timeout = a.args


@stage("PREROUTING")
def prerouting(c: NfPacket) -> bool:
    """mangle and nat PREROUTING; then the destination side of the translation."""
    path, flow, pkt = c.path, c.flow, c.pkt
    d = c.hook("PREROUTING", _PRE if flow.new else _PRE_NONAT)
    if d.actions:
        path.logs(d.actions, "PREROUTING", c.now, c.ev)
        _later_helper(c, d.actions)
    if d.verdict != "ACCEPT":
        path.refused(d, "PREROUTING", c.iface, None, pkt, c.ctx, flow, None, c.now, c.out, c.ev)
        return False
    half = c.half
    if flow.new:
        bound = ct.bind_dst(path, flow, d.actions, c.iface, pkt, c.now, c.ev)
        xl = flow.xl_dst
        if xl is not None and (xl.mapped_addr != xl.real_addr or xl.mapped_port != xl.real_port):
            # nf_nat_setup_info (nf_nat_core.c) sets IPS_DST_NAT once the binding changes the tuple, so
            # the first packet's FORWARD rules already match --ctstate DNAT (xt_conntrack's state bits).
            c.ctx.ct_nat = _DST_NAT
        if c.trace is not None:
            nf_trace.bound(c, bound, xl)
        return bound
    if half is not None:
        if flow.error:
            forward.error_dst(half, pkt)
        elif half.rewrites:
            forward.rewrite_dst(half, pkt)
    return True


@stage("ROUTE-LOOKUP", "INPUT")
def route(c: NfPacket) -> bool:
    fw, pkt, flow, half = c.fw, c.pkt, c.flow, c.half
    v = pkt.version
    if v == 4 and fw.routes.local_interface(4, pkt.src) is not None:
        # The routing decision after PREROUTING (raw, conntrack, mangle, nat: their rules have run)
        # and before INPUT or FORWARD: ip_rcv_finish -> ip_route_input_slow (net/ipv4/route.c) asks
        # fib_validate_source (net/ipv4/fib_frontend.c) about the source of every packet, forwarded,
        # local or broadcast, of any conntrack state. A source that is one of the box's own addresses
        # on any interface (inet_lookup_ifaddr_rcu; with rp_filter on, __fib_validate_source's lookup
        # finds RTN_LOCAL) is refused with -EINVAL unless the arrival interface's accept_local is set
        # (default 0; not modelled, check warns): ip_handle_martian_source counts it and, with
        # log_martians, prints "martian source" (SKB_DROP_REASON_IP_LOCAL_SOURCE in kernels whose
        # fib_validate_source returns drop reasons).
        # Dropped before ip_forward: no TTL check, no ICMP error; a new connection is never
        # confirmed, so conntrack -E says nothing. IPv6 has no such check (ip6_rcv_core, ip6_forward
        # look at multicast, loopback and link-local sources only): forwarded. Checked against the
        # kernel in tests/test_addrclass_kernel.py.
        ct.discard(c.path, flow)
        dst, src = addr_to_str(v, pkt.dst), addr_to_str(v, pkt.src)
        drop(
            fw, c.ev, DropReason.IP_LOCAL_SOURCE, c.iface, pkt, c.now,
            message=f"martian source {dst} from {src} (the firewall's own address), on {c.iface}",
        )  # fmt: skip
        return False
    if half is not None and not flow.new and not flow.error:
        egress = half.out_iface
        local = egress is None
        if c.trace is not None and not local:
            nf_trace.routed(c, None, egress, False)
    else:
        local = fw.routes.local_interface(v, pkt.dst) is not None
        egress = None
        special = None if local else ip_in.special(fw, pkt)
        if special is not None and special.linux_routed:
            # A link-local address: routed, and ip6_forward decides (ip_forward below).
            special = None
            if ip_in.link_local(pkt.dst):
                # rt6_need_strict: the lookup is bound to the arrival device, whose fe80::/64 route
                # sends the packet back onto its own link (an interface with IPv6 has that route).
                itf = fw.interfaces.get(c.iface)
                if itf is not None and (itf.ipv6 or itf.ipv6_enable):
                    local = False
                    egress = c.iface
                    if c.trace is not None:
                        nf_trace.routed(c, None, egress, False)
        if special is not None:
            # ip_route_input_slow / ip6_rcv_core (statewall.addrclass): a broadcast is the box's
            # own; martians and multicast without multicast routing are dropped.
            if special.to_box:
                local = True
            else:
                ct.discard(c.path, flow)
                drop(fw, c.ev, special.linux, c.iface, pkt, c.now, message=special.what)
                if special.icmp is not None:
                    ip_in.send_error(fw, c.iface, pkt, special.icmp, c.now, c.out, c.ev)
                return False
        if not local and egress is None:
            found = fw.routes.lookup(v, pkt.dst)
            if found is None or found.interface not in fw.interfaces:
                ct.discard(c.path, flow)
                drop(
                    fw, c.ev, DropReason.NO_ROUTE, c.iface, pkt, c.now,
                    hint=f"add a route for {addr_to_str(v, pkt.dst)}",
                    message="no route" if found is None else f"egress {found.interface} is down",
                )  # fmt: skip
                if c.trace is not None:
                    nf_trace.routed(c, found, None, False)
                return False
            egress = found.interface
            if c.trace is not None:
                nf_trace.routed(c, found, egress, False)
    if v == 4 and pkt.ipv4_options and source_routed(pkt):
        # ip_rcv_finish_core (net/ipv4/ip_input.c): after the route lookup, ip_rcv_options drops a
        # packet whose options carry a loose or strict source route (LSRR 131, SSRR 137; found by
        # ip_options_compile, net/ipv4/ip_options.c) when the interface's accept_source_route is 0,
        # the default for IPv4 (net.ipv4.conf.*.accept_source_route), forwarded or to the box alike.
        # It logs "source route option A -> B" only with log_martians (default 0).
        ct.discard(c.path, flow)
        drop(
            fw, c.ev, DropReason.SOURCE_ROUTE, c.iface, pkt, c.now,
            message="source route option (accept_source_route is 0)",
        )  # fmt: skip
        return False
    if local:
        if c.trace is not None:
            nf_trace.routed(c, None, None, True)
        c.path.deliver(flow, c.iface, pkt, c.ctx, c.now, c.out, c.ev)
        return False
    c.egress = egress
    return True


def source_routed(pkt) -> bool:
    """Whether an IPv4 packet's options carry a loose or strict source route."""
    return any(t == 131 or t == 137 for t, _, _ in pkt.ipv4_options)


@stage("IP-FORWARD")
def ip_forward(c: NfPacket) -> bool:
    """ip_forward: TTL and MTU are checked, and the TTL lowered, before the FORWARD hook."""
    pkt = c.pkt
    if pkt.version == 6 and pkt.ttl > 1 and c.egress != c.iface and ip_in.link_local(pkt.src):
        # ip6_forward (net/ipv6/ip6_output.c), after the hop limit check and outside the redirect
        # branch (leaving by another interface than it came in): a link-local source is answered
        # with Destination Unreachable, beyond scope of source address, and dropped.
        special = ip_in.special(c.fw, pkt)
        ct.discard(c.path, c.flow)
        drop(c.fw, c.ev, special.linux, c.iface, pkt, c.now, message=special.what)
        ip_in.send_error(c.fw, c.iface, pkt, special.icmp, c.now, c.out, c.ev)
        if c.trace is not None:
            c.report(False, f"{special.what}: beyond its scope on {c.egress}")
        return False
    if not forward.ttl_mtu(c.fw, c.iface, c.egress, pkt, c.now, c.out, c.ev, c.gso_size):
        ct.discard(c.path, c.flow)
        if c.trace is not None:
            c.report(False, f"TTL {pkt.ttl}, length {pkt.total_len}: refused by ip_forward")
        return False
    if c.trace is not None:
        c.report(True, f"TTL {pkt.ttl} -> {pkt.ttl - 1}")
    pkt.set_ttl(pkt.ttl - 1)
    c.ctx.out_iface = c.egress
    return True


@stage("FORWARD")
def forward_hook(c: NfPacket) -> bool:
    path = c.path
    d = c.hook("FORWARD", _FORWARD)
    if d.actions:
        path.logs(d.actions, "FORWARD", c.now, c.ev)
        _later_helper(c, d.actions)
        for a in d.actions:
            if a.kind == "FLOW_OFFLOAD":  # offloaded as the statement runs, whatever follows
                nf_flowtable.offload(path, c, a.args)
    if d.verdict != "ACCEPT":
        if d.rule is not None and d.rule.target == "SYNPROXY":
            ct.discard(path, c.flow)
            path.synproxy.target(d.rule, c.flow.state, c.iface, c.egress, c.pkt, c.now, c.out, c.ev)
            return False
        path.refused(d, "FORWARD", c.iface, c.egress, c.pkt, c.ctx, c.flow, c.half, c.now, c.out, c.ev)
        return False
    c.accepted_by = d.rule
    return True


@stage("POSTROUTING")
def postrouting(c: NfPacket) -> bool:
    path = c.path
    d = c.hook("POSTROUTING", _POST if c.flow.new else _POST_NONAT)
    if d.actions:
        path.logs(d.actions, "POSTROUTING", c.now, c.ev)
        _later_helper(c, d.actions)
    if d.verdict != "ACCEPT":
        path.refused(d, "POSTROUTING", c.iface, c.egress, c.pkt, c.ctx, c.flow, c.half, c.now, c.out, c.ev)
        return False
    c.actions = d.actions
    return True


@stage("CONFIRM")
def confirm(c: NfPacket) -> bool:
    flow = c.flow
    if not flow.new:
        if c.conn is not None:
            c.conn.mark = c.ctx.ct_mark
        return True
    half = ct.confirm(
        c.path, flow, c.actions, c.iface, c.egress, c.pkt, c.accepted_by, c.helper_rule, c.now, c.ev
    )
    if c.trace is not None:
        nf_trace.confirmed(c, half)
    if half is None:
        return False
    c.half = half
    c.conn = half.conn
    c.conn.mark = c.ctx.ct_mark
    if c.ct_timeout is not None:
        ct.timeout_policy(c.path, c.conn, c.ct_timeout, c.now)
    return True


@stage("EMIT")
def emit(c: NfPacket) -> bool:
    fw, pkt, egress, conn, half = c.fw, c.pkt, c.egress, c.conn, c.half
    if conn is None:
        # INVALID or UNTRACKED: no connection, so no translation and no helper.
        fw.stats["forwarded"] += 1
        c.out.append((egress, pkt.buf))
        if c.trace is not None:
            c.report(True, f"out {egress} as {nf_trace.tuple_text(pkt)} (no connection: not translated)")
        return True
    if c.flow.error:
        # A RELATED error refreshes nothing; it only carries its connection's translation.
        forward.error_src(half, pkt)
        fw.stats["forwarded"] += 1
        c.out.append((egress, pkt.buf))
        if c.trace is not None:
            c.report(True, f"out {egress} (an ICMP error RELATED to connection {half.conn.id})")
        return True
    helper = conn.helper
    if helper is not None and not forward.inspect(fw, half, pkt, c.now, c.out, c.ev, c.iface, egress):
        return False
    if half.rewrites:
        forward.rewrite_src(half, pkt)
    sp = conn.synproxy
    if sp is not None:
        # SYNPROXY's hook sees the translated packet before the sequence adjustment, as in the kernel.
        if c.path.synproxy.hook(conn, half, pkt, c.now, c.out, c.ev):
            return False
        if sp.seqadj.active:
            sp.seqadj.adjust(half.dir, pkt)
    elif helper is not None and helper.seqadj.active:
        helper.seqadj.adjust(half.dir, pkt)
    forward.emit(fw, half, egress, pkt, c.now, c.out)
    ct.after(conn, c.now, c.ev)
    if c.trace is not None:
        c.report(True, f"out {egress} as {nf_trace.tuple_text(pkt)}")
    return True


STAGES = (raw, conntrack, prerouting, route, ip_forward, forward_hook, postrouting, confirm, emit)


def process(fw, iface: str, pkt: Packet, now: float, out: list, ev: list, gso_size: int) -> None:
    """One received packet of a policy with netfilter rulesets, on a known interface and with its L4
    header (ingress handled the rest): nftables ingress chains, then ``STAGES`` in order, unless a
    flowtable forwards it at ingress (``statewall.engine.nf_flowtable``)."""
    path = fw.nf_path
    mark = 0
    if path.nf.ingress_devices:
        # nftables ingress chains (netdev, inet): before the flowtable, PREROUTING and conntrack; no
        # connection yet (ct state is invalid there); the mark they set stays with the packet.
        ctx = Context(iface, None, "INVALID", now=now)
        d = path.nf.traverse("INGRESS", pkt, ctx)
        if d.actions:
            path.logs(d.actions, "INGRESS", now, ev)
        if d.verdict != "ACCEPT":
            path.refused(d, "INGRESS", iface, None, pkt, ctx, None, None, now, out, ev)
            return
        mark = ctx.mark
    if path.offload_devices and nf_flowtable.fast(path, iface, pkt, now, out):
        return  # (packet-tracer runs a fresh engine: no connection is offloaded there)
    c = NfPacket(path, iface, pkt, now, out, ev, gso_size)
    c.ctx.mark = mark
    run(STAGES, c)


class NfPath:
    """Netfilter's data path inside one ``statewall.engine.Firewall`` (see the module docstring).

    Uses the engine's connection table, timers, NAT bindings (``statewall.nf_nat``), expectation table,
    inspectors, routes and drop accounting; owns the compiled rulesets (``self.nf``).
    """

    __slots__ = (
        "fw",
        "nf",
        "settings",
        "has_nat",
        "by_port",
        "rule_helpers",
        "ct_pkt",
        "ct_flow",
        "ct_now",
        "synproxy",
        "unassured",
        "flowtable_devices",
        "offload_devices",
    )

    def __init__(self, fw, policy, inspectors) -> None:
        self.fw = fw
        self.nf = Netfilter(policy)
        # nftables flowtables: "family table name" -> their devices; every device one hooks.
        self.flowtable_devices: dict[str, frozenset[str]] = {
            f"{t.family} {t.name} {name}": frozenset(ft.devices)
            for t in policy.nft_tables
            for name, ft in t.flowtables.items()
        }
        self.offload_devices = frozenset().union(*self.flowtable_devices.values())
        self.settings = policy.conntrack
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
        self.ct_pkt: Packet | None = None
        self.ct_flow: NfFlow | None = None
        self.ct_now = 0.0
        self.synproxy = SynProxy(self)
        # Connections confirmed without ASSURED, oldest first: the candidates of early drop (ct.room).
        self.unassured: dict[int, object] = {}
        for port, insp in inspectors.by_port.items():
            if insp.origin in ct_rules:
                self.rule_helpers[(insp.origin, port)] = insp
            else:
                self.by_port[port] = insp

    def connlimit(self, groups: dict, key: int) -> int:
        return ct.connlimit(self, groups, key)

    def destroyed(self, conn, now: float, ev: list) -> None:
        self.unassured.pop(conn.id, None)
        ct.destroyed(conn, now, ev)

    def conntrack_entries(self, now: float) -> list:
        """Every live connection as ``conntrack -L`` shows it at ``now`` (``CtEvent`` rows)."""
        return ct.entries(self.fw, now)

    # -- the box itself ----------------------------------------------------------------------------

    # The box's own traffic: INPUT's delivery and what it sends itself (engine/nf_local.py).
    deliver = nf_local.deliver
    local_out = nf_local.local_out

    def refused(self, d: Decision, hook, iface, egress, pkt: Packet, ctx, flow, half, now, out, ev) -> None:
        """A table dropped the packet: REJECT's reply, then one Drop naming the table, chain and rule."""
        fw = self.fw
        if flow is not None:
            ct.discard(self, flow)
        message = ""
        for a in d.actions:
            if a.kind == "REJECT":
                message = f"rejected with {a.args['with']}"
                self.reject(a.args["reply"], str(a.args["with"]), hook, iface, pkt, flow, now, out, ev)
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
            why = flow.why if flow is not None else None
            hint = INVALID_HINTS.get(why.kind) if why is not None else None
            drop(
                fw, ev, DropReason.TCP_INVALID, iface, pkt, now, egress=egress, acl=f"{table}/{chain}",
                origin=origin, hint=hint, message=str(why or "ctstate INVALID"), detail=detail,
            )  # fmt: skip
            return
        drop(
            fw, ev, DropReason.ACL_DROP, iface, pkt, now, egress=egress, acl=f"{table}/{chain}",
            origin=origin,
            hint=f"an ACCEPT rule for this flow before {where}", message=message or f"dropped by {where}",
            detail=detail,
        )  # fmt: skip

    def reject(self, reply: tuple, with_: str, hook, iface, pkt: Packet, flow, now, out, ev) -> None:
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
                self.reply(craft.tcp_reset_for(orig), iface, flow, now, out, ev)
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
        error = craft.icmp_error(v, src, pkt.src, t, c, bytes(orig.buf[orig.ipoff : orig.end]))
        if not self.reply(error, iface, flow, now, out, ev):
            return
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

    def reply(self, buf, iface, flow, now, out, ev) -> bool:
        """REJECT's reply leaves as the kernel sends it (``ip_local_out``): through OUTPUT and
        POSTROUTING with the rejected packet's connection attached (``nf_local.local_out``). True
        when it left (a chain there may drop it)."""
        before = len(out)
        reply = decode(bytearray(buf))
        self.local_out(reply, iface, now, out, ev, reply_to=flow if flow is not None else NfFlow("INVALID"))
        return len(out) > before

    @staticmethod
    def logs(actions: list, hook: str, now: float, ev: list) -> None:
        for a in actions:
            if a.kind == "LOG":
                ev.append(NfLog(now, a.args["text"], a.args["level"], hook, a.rule.origin))
