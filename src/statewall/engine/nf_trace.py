"""netfilter's path as packet-tracer sees it: what each hook stage reports while the tracer listens.

Owns ``walk`` (a hook's tables over one packet: ``Netfilter.traverse`` itself when no one listens; one
table at a time while packet-tracer does), ``report_table`` (the rules of one table the packet matched,
in the order the kernel's ``ipt_do_table`` met them, as ``Hit`` lines) and ``ct_line`` (conntrack's
outcome in ``nft monitor trace``'s words). The lines are read back from the rules' own counters, which
move exactly for the rules a packet matched (and for a chain's policy when it decided), so the trace is
the walk the engine took, never a second evaluation: the kernel's ``-j TRACE`` (``ipt_do_table``'s
``trace_packet``: ``TRACE: table:chain:rule|return|policy:N``) and ``nft monitor trace`` (nftables'
``src/trace.c``: ``trace id ID FAMILY TABLE CHAIN rule ... (verdict accept)``, ``... policy drop``)
report the same steps.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from ..netfilter import Context, Decision, Netfilter
from ..packet import Packet, addr_to_str
from ..policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from ..tcptrack import REPLY
from .nf_conntrack import NfFlow


class Hit(NamedTuple):
    """One line of a hook's trace: a rule the packet matched (``kind`` "rule", with its ``verdict``:
    accept, drop, continue, jump CHAIN, goto CHAIN, return), the chain policy that decided ("policy"),
    or the packet as the table's base chain saw it ("packet": ``verdict`` is its description, ``ct``
    conntrack's state in ``nft monitor trace``'s words, "" before conntrack)."""

    kind: str
    table: str
    chain: str
    verdict: str
    number: int = 0  # the rule's position in its chain (iptables -L --line-numbers); 0 for a policy
    ct: str = ""
    note: str = ""  # what the rule's target did besides its verdict (TCPMSS, LOG, NAT, REJECT)


def walk(
    nf: Netfilter, trace, phase: str, hook: str, pkt: Packet, ctx: Context, tables, flow=None
) -> Decision:
    """``nf.traverse(hook, pkt, ctx, tables)``; while packet-tracer listens (``trace`` a list), one base
    chain at a time in the same order (an iptables table's, or an nftables table's base chain on this
    hook), reporting under ``phase`` the packet as each saw it and what its rules decided
    (``report_table``). ``flow``: conntrack's outcome, None before conntrack."""
    if trace is None:
        return nf.traverse(hook, pkt, ctx, tables)
    actions: list = []
    last = Decision("ACCEPT", actions, None, hook, "")
    for slot in nf.hook_slots(hook, pkt.version, tables):
        seen = packet_text(nf, pkt, ctx)
        table, base, before = nf.slot_rules(slot, pkt.version)
        nf.vmap_seen = []
        try:
            d = nf.run_slot(slot, hook, pkt, ctx)
            seen_maps = nf.vmap_seen
        finally:
            nf.vmap_seen = None
        if d is None:
            continue  # nat for a packet that is not NEW, an ingress chain of another device
        name = d.table
        after = nf.slot_rules(slot, pkt.version)[2]
        hits = Counter({k: n[0] - before.get(k, (0, 0))[0] for k, n in after.items()})
        if +hits:
            ct = ct_text(flow) if flow is not None else ""
            trace.append((phase, f"{name} {base}", True, None, Hit("packet", name, base, seen, 0, ct)))
        report_table(trace, phase, base, table, name, +hits, d, seen_maps)
        actions.extend(d.actions)
        last = Decision(d.verdict, actions, d.rule, d.chain, d.table)
        if d.verdict != "ACCEPT":
            return last
    return last


def report_table(trace: list, phase: str, base: str, table, name: str, hits, d, maps=()) -> None:
    """The rules of ``table`` (labelled ``name``) the packet matched from its base chain ``base``, in
    the order the kernel met them: ``hits`` are the per-rule counters this packet moved (``(chain,
    index) -> packets``), walked from the base chain through jumps, gotos and returns to the rule that
    decided (``d.rule``), or to the chain policy. ``maps``: what each nftables verdict map the packet
    met did, in order (``Netfilter.vmap_seen``): its entry's jump or goto is followed as a rule's."""
    outcomes: dict[int, list] = {}
    for rule, outcome in maps:
        outcomes.setdefault(id(rule), []).append(outcome)
    ok = d.verdict == "ACCEPT"

    def line(chain: str, i: int, rule, verdict: str) -> None:
        note = "; ".join(filter(None, (action_text(a) for a in d.actions if a.rule is rule)))
        hit = Hit("rule", name, chain, verdict, i + 1, "", note)
        trace.append((phase, f"{name} {chain}", verdict != "drop", rule.origin, hit))

    def vmap_target(rule) -> tuple[str, str | None] | None:
        """What the verdict map of ``rule`` did with the packet this time (None: no entry)."""
        left = outcomes.get(id(rule))
        return left.pop(0) if left else None

    def chain_walk(chain: str) -> bool:
        for i, rule in enumerate(table.chains[chain].rules):
            if hits[(chain, i)] <= 0:
                continue
            hits[(chain, i)] -= 1
            if rule is d.rule:
                line(chain, i, rule, d.verdict.lower())
                return True
            target, goto = rule.target, rule.goto
            if target == "VMAP":
                found = vmap_target(rule)
                if found is not None and found[1] is not None:
                    goto = found[0] == "goto"
                    target = found[1]
                elif found is not None and found[0] == "return":
                    target = "RETURN"
            if target in table.chains:
                line(chain, i, rule, f"{'goto' if goto else 'jump'} {target}")
                if chain_walk(target):
                    return True
                if goto:
                    return False  # the goto's chain returns to this chain's caller
            elif target == "RETURN":
                line(chain, i, rule, "return")
                return False
            else:
                line(chain, i, rule, "continue")
        return False

    if base in table.chains and not chain_walk(base) and hits[(base, -1)] > 0:
        chain = table.chains[base]
        trace.append(
            (phase, f"{name} {base}", ok, chain.origin, Hit("policy", name, base, d.verdict.lower(), 0))
        )


def ct_text(flow: NfFlow) -> str:
    """Conntrack's outcome as ``nft monitor trace`` prints it (trace_print_ct: direction, state, id)."""
    text = ""
    if flow.half is not None and not flow.new:
        text = f"ct direction {'reply' if flow.half.dir == REPLY else 'original'} "
    text += f"ct state {flow.state.lower()}"
    if flow.half is not None:
        text += f" ct id {flow.conn_id}"
    return text


def ct_line(flow: NfFlow) -> str:
    """What conntrack decided (``ct_text``), with statewall's reason for INVALID."""
    text = ct_text(flow)
    if flow.why is not None:
        text += f" (INVALID: {flow.why})"
        if flow.conn_id is not None:
            text += f" on connection id {flow.conn_id}"
    elif flow.new:
        text += " (a new connection, confirmed if the packet is accepted)"
    return text


def endpoint(v: int, addr: int, port: int) -> str:
    return f"{addr_to_str(v, addr)}:{port}" if v == 4 else f"[{addr_to_str(v, addr)}]:{port}"


def tuple_text(pkt: Packet) -> str:
    v = pkt.version
    return f"{endpoint(v, pkt.src, pkt.sport)} -> {endpoint(v, pkt.dst, pkt.dport)}"


def bound(c, ok: bool, xl) -> None:
    """PREROUTING's destination binding of a new connection (``nf_conntrack.bind_dst``)."""
    if not ok:
        c.report(False, "destination NAT failed")
    elif xl is not None:
        v = xl.version
        c.report(
            True,
            f"DNAT {endpoint(v, xl.real_addr, xl.real_port)} -> "
            f"{endpoint(v, xl.mapped_addr, xl.mapped_port)}",
            origin=xl.rule.origin if xl.rule is not None else None,
        )


def routed(c, found, egress: str | None, local: bool) -> None:
    """The route lookup's answer: ``found`` the route (None: none, or a connection's own way)."""
    dst = addr_to_str(c.pkt.version, c.pkt.dst)
    if local:
        c.report(True, f"{dst} is an address of the box: INPUT")
    elif found is not None and egress is not None:
        c.report(True, f"{dst}: route {found.describe()} dev {egress}", origin=found.origin)
    elif egress is not None:
        c.report(True, f"{dst}: out {egress}, the way of its connection")
    else:
        why = "no route" if found is None else f"the route's interface {found.interface} is down"
        c.report(False, f"{dst}: {why}", origin=found.origin if found is not None else None)


def confirmed(c, half) -> None:
    """``nf_conntrack_confirm``: the new connection, with its source binding (``nf_conntrack.confirm``)."""
    if not c.flow.new:
        return
    if half is None:
        c.report(False, "the connection was not confirmed")
        return
    conn = half.conn
    v = conn.version
    _, _, src, sport, dst, dport = conn.halves[1].key
    text = (
        f"new connection id {conn.id}, reply {addr_to_str(v, src)}:{sport} -> {addr_to_str(v, dst)}:{dport}"
    )
    nat = [x for x in conn.xlates if x.rule is not None]
    if conn.ct_nat:
        text += f" ({' '.join(sorted(conn.ct_nat))})"
    c.report(True, text, origin=nat[-1].rule.origin if nat else None)


_TCP_FLAGS = ((0x01, "fin"), (0x02, "syn"), (0x04, "rst"), (0x08, "psh"), (0x10, "ack"), (0x20, "urg"))


def packet_text(nf: Netfilter, pkt: Packet, ctx: Context) -> str:
    """The packet as ``nft monitor trace``'s ``packet:`` line shows it (trace_print_packet: the
    interfaces, then the network and transport headers' fields)."""
    v = pkt.version
    fam = "ip" if v == 4 else "ip6"
    out = []
    if ctx.in_iface:
        out.append(f'iif "{nf.device(ctx.in_iface)}"')
    if ctx.out_iface:
        out.append(f'oif "{nf.device(ctx.out_iface)}"')
    out.append(f"{fam} saddr {addr_to_str(v, pkt.src)} {fam} daddr {addr_to_str(v, pkt.dst)}")
    out.append(f"ip ttl {pkt.ttl}" if v == 4 else f"ip6 hoplimit {pkt.ttl}")
    out.append(f"ip length {pkt.total_len}" if v == 4 else f"ip6 length {pkt.total_len}")
    if pkt.proto == PROTO_TCP:
        flags = "|".join(name for bit, name in _TCP_FLAGS if pkt.flags & bit)
        out.append(f"tcp sport {pkt.sport} tcp dport {pkt.dport} tcp flags == {flags or '0x0'}")
        mss = pkt.mss()
        if mss is not None:
            out.append(f"tcp option maxseg size {mss}")
    elif pkt.proto == PROTO_UDP:
        out.append(f"udp sport {pkt.sport} udp dport {pkt.dport}")
    elif pkt.proto in (PROTO_ICMP, PROTO_ICMPV6):
        name = "icmp" if pkt.proto == PROTO_ICMP else "icmpv6"
        out.append(f"{name} type {pkt.icmp_type} {name} code {pkt.icmp_code}")
    return " ".join(out)


def action_text(a) -> str:
    """What a target did (``netfilter.Action``), in words."""
    args = a.args
    if a.kind == "TCPMSS":
        if "error" in args:
            return f"TCPMSS: {args['error']}"
        if args.get("added"):
            return f"TCPMSS: MSS option {args['new']} added"
        return f"TCPMSS: MSS {args['old']} -> {args['new']}"
    if a.kind == "LOG":
        return f"LOG: {args['text']}"
    if a.kind == "REJECT":
        return f"REJECT: answered with {args['with']}"
    return ""  # NAT targets: the binding is the stage's own line; CT, NOTRACK: conntrack's
