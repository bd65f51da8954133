"""Netfilter's path for the box's own traffic: what INPUT delivers to it (``deliver``) and what it sends
itself (``local_out``: SYNPROXY's packets, through raw and conntrack OUTPUT, OUTPUT, POSTROUTING, as
the kernel's ``ip_local_out``). Both are ``NfPath`` methods (``engine/nf_path.py``); they live here so
that the forwarding stages stay one readable file.
"""

from __future__ import annotations

from ..conntrack import Half
from ..events import DropReason, LocalDelivery, NfLog
from ..netfilter import HOOK_TABLES, Context, Netfilter
from ..packet import Packet
from ..policy import PROTO_TCP, PROTO_UDP
from . import forward, icmp
from . import nf_conntrack as ct
from .context import drop
from .nf_conntrack import NfFlow
from .nf_trace import walk

_INPUT = HOOK_TABLES["INPUT"]
_INPUT_NONAT = tuple(t for t in _INPUT if t != "nat")
_POST = HOOK_TABLES["POSTROUTING"]
_POST_NONAT = tuple(t for t in _POST if t != "nat")
_RAW_OUT = Netfilter.before_conntrack("OUTPUT")
_OUT = Netfilter.after_conntrack("OUTPUT")
_OUT_NONAT = tuple(t for t in _OUT if t != "nat")


def deliver(path, flow: NfFlow, iface: str, pkt: Packet, ctx: Context, now: float, out, ev) -> None:
    """A packet for one of the box's own addresses: INPUT decides; an accepted echo request is
    answered, anything else is taken in (statewall runs no services)."""
    fw = path.fw
    d = walk(path.nf, fw.trace_log, "INPUT", "INPUT", pkt, ctx, _INPUT if flow.new else _INPUT_NONAT, flow)
    if d.actions:
        path.logs(d.actions, "INPUT", now, ev)
    if d.verdict != "ACCEPT":
        if d.rule is not None and d.rule.target == "SYNPROXY":
            ct.discard(path, flow)
            path.synproxy.target(d.rule, flow.state, iface, None, pkt, now, out, ev)
            return
        path.refused(d, "INPUT", iface, None, pkt, ctx, flow, flow.half, now, out, ev)
        return
    half = flow.half
    if flow.new:
        half = ct.confirm(path, flow, d.actions, iface, None, pkt, d.rule, None, now, ev)
        if half is None:
            return
    if half is not None:
        half.conn.mark = ctx.ct_mark
    fw.stats["to_the_box"] += 1
    answered = icmp.is_echo_request(pkt)
    v = pkt.version
    ports = pkt.proto in (PROTO_TCP, PROTO_UDP)
    ev.append(
        LocalDelivery(now, iface, pkt.proto, (v, pkt.src), pkt.sport if ports else 0, (v, pkt.dst),
                      pkt.dport if ports else 0, ctx.ctstate or "", answered)
    )  # fmt: skip
    if answered:
        icmp.echo_reply(iface, pkt, out)
        if half is not None and not flow.error:
            # The reply leaves through conntrack as the connection's answer.
            conn = half.conn
            conn.replied = True
            ct.after(conn, now, ev)
        return
    if half is not None and not flow.error:
        ct.after(half.conn, now, ev)


def local_out(
    path, pkt: Packet, iface: str, now: float, out: list, ev: list, *, half: Half | None = None,
    ctstate: str | None = None, rule=None, attach=None, reply_to: NfFlow | None = None,
) -> Half | None:  # fmt: skip
    """A packet the box sends itself (SYNPROXY's), as ``ip_local_out`` sends it: routed, then raw,
    conntrack, mangle, nat and filter OUTPUT, then POSTROUTING. Returns its connection's half, or None
    when it has none or was dropped.

    ``half`` with ``ctstate``: the packet belongs to that direction of a connection already (the
    kernel sets the conntrack entry on it before sending) and is not tracked again; ``ctstate``
    alone: it has no connection (``UNTRACKED``). Otherwise conntrack finds or creates its connection,
    whose original direction arrives on ``iface``; a new one is confirmed with ``rule`` as its origin
    and gets ``attach(seqadj)`` as its SYNPROXY state (the kernel's template extension).

    ``reply_to``: the packet is REJECT's reply (a TCP reset or an ICMP error) to a packet whose
    conntrack outcome was ``reply_to``. nf_send_reset and icmp_send give the reply the rejected
    packet's connection (``nf_ct_attach``: IP_CT_RELATED_REPLY) before ``ip_local_out``, so every
    OUTPUT and POSTROUTING chain, raw included, sees it as ``RELATED`` in the reply direction, and it
    is never confirmed; with no connection to attach (untracked, invalid) it is ``INVALID``. nat
    OUTPUT does not run (the destination binding was made in PREROUTING); nat POSTROUTING runs for
    a reset to a connection not yet confirmed (nf_nat_inet_fn: the source binding is not initialized)
    and never for an ICMP error (nf_nat_icmp_reply_translation returns first). Checked against
    iptables-legacy in a namespace (tests/test_deployed_kernel.py).
    """
    fw = path.fw
    nf = path.nf
    v = pkt.version
    if half is not None:
        egress = half.out_iface
    elif fw.routes.local_interface(v, pkt.dst) is not None:
        egress = None
    else:
        found = fw.routes.lookup(v, pkt.dst)
        if found is None or found.interface not in fw.interfaces:
            drop(fw, ev, DropReason.NO_ROUTE, iface, pkt, now, message="no route for its own packet")
            return None
        egress = found.interface
    ctx = Context(None, egress, "INVALID", now=now, connlimit=path.connlimit)
    if reply_to is not None:
        return _reject_reply(path, reply_to, pkt, ctx, iface, egress, now, out, ev)
    path.ct_pkt = pkt
    path.ct_flow = None
    path.ct_now = now
    d = nf.traverse("OUTPUT", pkt, ctx, _RAW_OUT)
    notrack = False
    for a in d.actions:
        if a.kind == "LOG":
            ev.append(NfLog(now, a.args["text"], a.args["level"], "OUTPUT", a.rule.origin))
        elif a.kind == "NOTRACK" or (a.kind == "CT" and a.args.get("notrack")):
            notrack = True
    if d.verdict != "ACCEPT":
        path.refused(d, "OUTPUT", iface, egress, pkt, ctx, None, None, now, [], ev)
        return None
    tracked = half is None and ctstate is None and not notrack
    if half is not None:
        flow = NfFlow(ctstate or "ESTABLISHED", half)
    elif not tracked:
        flow = NfFlow(ctstate or "UNTRACKED")
    else:
        flow = ct.track(path, iface, pkt, now, out, ev)
    ctx.ctstate = flow.state
    path.ct_flow = flow
    if flow.half is not None:
        conn = flow.half.conn
        ctx.ct_nat = conn.ct_nat
        ctx.ct_mark = conn.mark
        ctx.ct_dir = "ORIGINAL" if flow.half is conn.halves[0] else "REPLY"
        ctx.ct_status = conn.status()
    d = nf.traverse("OUTPUT", pkt, ctx, _OUT if flow.new else _OUT_NONAT)
    if d.actions:
        path.logs(d.actions, "OUTPUT", now, ev)
    if d.verdict != "ACCEPT":
        path.refused(d, "OUTPUT", iface, egress, pkt, ctx, flow, flow.half, now, [], ev)
        return None
    if flow.new:
        if not ct.bind_dst(path, flow, d.actions, iface, pkt, now, ev):
            return None
    elif tracked and flow.half is not None and flow.half.rewrites and not flow.error:
        forward.rewrite_dst(flow.half, pkt)
    d = nf.traverse("POSTROUTING", pkt, ctx, _POST if flow.new else _POST_NONAT)
    if d.actions:
        path.logs(d.actions, "POSTROUTING", now, ev)
    if d.verdict != "ACCEPT":
        path.refused(d, "POSTROUTING", iface, egress, pkt, ctx, flow, flow.half, now, [], ev)
        return None
    half = flow.half
    if flow.new:
        half = ct.confirm(path, flow, d.actions, iface, egress, pkt, rule, None, now, ev)
        if half is None:
            return None
    if half is not None:
        half.conn.mark = ctx.ct_mark
        if attach is not None:
            helper = half.conn.helper
            half.conn.synproxy = attach(helper.seqadj if helper is not None else None)
    if half is not None and not flow.error:
        conn = half.conn
        if tracked and half.rewrites:
            forward.rewrite_src(half, pkt)
        sp = conn.synproxy
        if sp is not None:
            path.synproxy.hook(conn, half, pkt, now, out, ev)
            if sp.seqadj.active:
                sp.seqadj.adjust(half.dir, pkt)
        if tracked:
            ct.after(conn, now, ev)
    if egress is None:
        fw.stats["to_the_box"] += 1
        return half
    out.append((egress, pkt.buf))
    return half


def _reject_reply(path, orig: NfFlow, pkt: Packet, ctx: Context, iface, egress, now, out, ev) -> None:
    """REJECT's reply through OUTPUT and POSTROUTING with the rejected packet's connection attached
    (``local_out``'s ``reply_to``)."""
    nf = path.nf
    half = orig.half
    conn = half.conn if half is not None else None
    if (orig.new or conn is not None) and not orig.error and orig.state not in ("INVALID", "UNTRACKED"):
        ctx.ctstate = "RELATED"
        ctx.ct_dir = "REPLY"
        if conn is not None:
            ctx.ct_nat = conn.ct_nat
            ctx.ct_mark = conn.mark
            ctx.ct_status = conn.status()
    nat_post = ctx.ctstate == "RELATED" and orig.new and pkt.proto == PROTO_TCP
    post = _POST if nat_post else _POST_NONAT
    for hook, tables in (("OUTPUT", _RAW_OUT + _OUT_NONAT), ("POSTROUTING", post)):
        d = nf.traverse(hook, pkt, ctx, tables, nat=nat_post)
        if d.actions:
            path.logs(d.actions, hook, now, ev)
        if d.verdict != "ACCEPT":
            path.refused(d, hook, iface, egress, pkt, ctx, None, None, now, [], ev)
            return
    if egress is None:
        path.fw.stats["to_the_box"] += 1
        return
    out.append((egress, pkt.buf))


# -- refusals ----------------------------------------------------------------------------------
