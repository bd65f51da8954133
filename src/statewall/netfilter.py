"""Netfilter's rule traversal: which tables and chains one packet goes through, and what they decide.

Owns the evaluation of iptables/ip6tables rulesets (``Policy.netfilter``, ``Policy.ip6_netfilter``) as
the kernel's ``ipt_do_table`` does it: a hook's built-in chain, jumps (``-j``) and gotos (``-g``) into
user chains, RETURN, the chain policy, per-rule packet and byte counters (bytes are the IP total
length), ``-m limit`` token buckets, and the target extensions. It is pure and sans-IO: the caller
gives the packet (a decoded ``statewall.packet.Packet``), a ``Context`` and the time.

How the engine uses it::

    nf = Netfilter(policy)                       # compiles every table once
    ctx = Context(in_iface="inside", out_iface="outside", ctstate="NEW", now=t)
    d = nf.traverse("PREROUTING", pkt, ctx, nf.before_conntrack("PREROUTING"))   # raw
    ...                                          # conntrack: ctx.ctstate, CT/NOTRACK actions of d
    d = nf.traverse("PREROUTING", pkt, ctx, nf.after_conntrack("PREROUTING"))    # mangle, nat
    d = nf.traverse("FORWARD", pkt, ctx)         # mangle, filter, security
    d = nf.traverse("POSTROUTING", pkt, ctx)     # mangle, nat
    verdict, actions = d                         # "ACCEPT" or "DROP", list of Action
    nf.counters("mangle")                        # (chain, rule index) -> (packets, bytes)

``HOOK_TABLES`` lists the tables of each hook in the kernel's priority order, with ``"conntrack"``
where connection tracking runs; ``traverse`` visits the nat table only for a packet whose ctstate is
NEW (the kernel consults nat chains once per connection) and stops at the first DROP.
``evaluate(hook, table, pkt, ctx)`` walks one table.

Actions (``Action.kind``) tell the engine what the targets asked for:

- ``LOG``: ``args["text"]`` is the kernel's log line (``<prefix>IN=.. OUT=.. MAC= SRC=..``), ``level``.
- ``TCPMSS``: already applied to the packet here (``old``, ``new`` MSS; ``added`` when the option was
  inserted), so that later rules and tables see the rewritten segment as they do in Linux.
- ``REJECT``: ``with`` and ``reply`` (("icmp", type, code) or ("tcp-reset",)); the verdict is DROP and
  the engine sends the reply.
- ``SNAT``, ``DNAT``, ``MASQUERADE``, ``REDIRECT``, ``NETMAP``: the target's arguments; the verdict is
  ACCEPT and the engine binds the connection's translation (nat table, first packet only; NETMAP maps the
  destination in PREROUTING/OUTPUT, the source in POSTROUTING/INPUT).
- ``CT`` (``notrack``, ``helper``, ``zone``) and ``NOTRACK``: for the conntrack step that follows raw.
- ``SYNPROXY``: the target's options; a SYN or a bare ACK is taken (verdict DROP) for the engine's
  SYN proxy.

The caller hands over what Linux would: whole datagrams where the kernel reassembles first (before
INPUT in ip_local_deliver, before PREROUTING when conntrack's nf_defrag is loaded), single fragments
elsewhere. ``Context`` names interfaces by the policy's logical names or by device names; rules match device
names (``Interface.hardware``). ``Context.ctstate`` is what conntrack decided; ``master_helper`` is
the helper of the master connection of an expected (RELATED) one, for ``-m helper``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from . import craft
from .packet import Packet
from .policy import (
    NF_REJECT_REPLIES,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    NfChain,
    NfRule,
    NfTable,
    Policy,
    PortMatch,
    nf_module_instances,
)

HOOKS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
# Tables by hook in the kernel's priority order (NF_IP_PRI_*): raw -300, conntrack -200, mangle -150,
# nat (destination) -100, filter 0, security 50, nat (source) 100.
HOOK_TABLES: dict[str, tuple[str, ...]] = {
    "PREROUTING": ("raw", "conntrack", "mangle", "nat"),
    "INPUT": ("mangle", "filter", "security", "nat"),
    "FORWARD": ("mangle", "filter", "security"),
    "OUTPUT": ("raw", "conntrack", "mangle", "nat", "filter", "security"),
    "POSTROUTING": ("mangle", "nat"),
}
CTSTATES = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED")
XT_LIMIT_SCALE = 10000

_ACCEPT, _DROP, _RETURN, _JUMP, _GOTO, _NONE, _EXT = range(7)
_TCP_FLAG_NAMES = (
    ("CWR", 0x80),
    ("ECE", 0x40),
    ("URG", 0x20),
    ("ACK", 0x10),
    ("PSH", 0x08),
    ("RST", 0x04),
    ("SYN", 0x02),
    ("FIN", 0x01),
)


@dataclass(slots=True)
class Context:
    """What the traversal needs to know besides the packet.

    ``in_iface``/``out_iface``: logical or device names (None where the hook has none). ``ctstate``:
    NEW, ESTABLISHED, RELATED, INVALID or UNTRACKED. ``ct_nat``: "SNAT"/"DNAT" when the connection is
    translated (``--ctstate SNAT``). ``master_helper``: the helper of the master connection of an
    expected one. ``now``: seconds, for ``-m limit``. ``path_mtu``/``reverse_mtu``: route MTUs toward
    the destination and back toward the source for ``--clamp-mss-to-pmtu`` (None: the MTU of the out
    and in interface). ``mac``: the link-layer header to print in LOG lines (None: ``MAC=`` empty, as
    for a device without one). ``connlimit``: ``(groups, key) -> connections`` counts the packet's
    connection for a ``-m connlimit`` rule, ``groups`` being that rule's own table of the connections
    it counted by masked address (nf_conncount_data) and ``key`` the packet's masked address; the
    count includes this connection (None: this connection alone).
    """

    in_iface: str | None = None
    out_iface: str | None = None
    ctstate: str = "NEW"
    ct_nat: frozenset[str] = frozenset()
    master_helper: str | None = None
    now: float = 0.0
    path_mtu: int | None = None
    reverse_mtu: int | None = None
    mac: bytes | None = None
    connlimit: Callable[[dict, int], int] | None = None


class Action(NamedTuple):
    kind: str
    args: dict
    rule: NfRule


class Decision:
    """A table's (or a hook's) outcome. Unpacks as ``verdict, actions``.

    ``rule`` is the rule whose target decided (None when a chain policy did), ``chain`` the chain it
    is in (or whose policy applied), ``table`` the table.
    """

    __slots__ = ("verdict", "actions", "rule", "chain", "table")

    def __init__(
        self, verdict: str, actions: list[Action], rule: NfRule | None, chain: str, table: str
    ) -> None:
        self.verdict = verdict
        self.actions = actions
        self.rule = rule
        self.chain = chain
        self.table = table

    def __iter__(self):
        yield self.verdict
        yield self.actions

    def __repr__(self) -> str:
        return f"Decision({self.verdict}, {self.table}/{self.chain}, {len(self.actions)} actions)"


# --------------------------------------------------------------------------------------------------
# Compiled rules


Check = Callable[[Packet, Context, "_Iface"], bool]


class _Iface(NamedTuple):
    """The packet's device names, resolved once per traversal."""

    inp: str
    out: str


@dataclass(slots=True)
class _Bucket:
    """xt_limit's token bucket in seconds: ``cost`` per packet, up to ``cap``, refilled by time."""

    cost: float
    cap: float
    credit: float
    prev: float | None = None

    def take(self, now: float) -> bool:
        if self.prev is None:
            self.prev = now
        elif now > self.prev:
            self.credit = min(self.cap, self.credit + (now - self.prev))
            self.prev = now
        if self.credit >= self.cost:
            self.credit -= self.cost
            return True
        return False


@dataclass(slots=True)
class _CRule:
    rule: NfRule
    checks: list[Check]
    kind: int
    jump: int = -1  # index of the target chain for _JUMP/_GOTO
    pkts: int = 0
    bytes: int = 0


@dataclass(slots=True)
class _CChain:
    name: str
    policy: str | None
    rules: list[_CRule] = field(default_factory=list)
    pkts: int = 0
    bytes: int = 0


@dataclass(slots=True)
class _CTable:
    name: str
    chains: list[_CChain]
    index: dict[str, int]


def _iface_check(name: str, negate: bool, attr: str) -> Check:
    if name.endswith("+"):
        prefix = name[:-1]

        def check(pkt, ctx, ifs) -> bool:
            return getattr(ifs, attr).startswith(prefix) != negate

    else:

        def check(pkt, ctx, ifs) -> bool:
            return (getattr(ifs, attr) == name) != negate

    return check


def _addr_check(nets: tuple, negate: bool, attr: str) -> Check:
    pairs = [(int(n.network_address), int(n.netmask)) for n in nets]

    def check(pkt, ctx, ifs) -> bool:
        a = getattr(pkt, attr)
        return any(a & mask == net for net, mask in pairs) != negate

    return check


def _port_test(ports: tuple[PortMatch, ...]) -> Callable[[int], bool]:
    ranges = [(p.low, p.high if p.op == "range" and p.high is not None else p.low) for p in ports]
    if len(ranges) == 1:
        lo, hi = ranges[0]
        return lambda port: lo <= port <= hi
    return lambda port: any(lo <= port <= hi for lo, hi in ranges)


def _l4_check(proto: int, args: dict) -> Check:
    """tcp/udp match: ports and flags; never a non-first fragment or a packet without its header."""
    sport = _port_test((args["sport"],)) if args.get("sport") is not None else None
    dport = _port_test((args["dport"],)) if args.get("dport") is not None else None
    sneg = bool(args.get("sport_negate"))
    dneg = bool(args.get("dport_negate"))
    flags = args.get("flags")
    fneg = bool(args.get("flags_negate"))

    def check(pkt, ctx, ifs) -> bool:
        if pkt.proto != proto or pkt.frag_offset or not pkt.has_l4:
            return False
        if sport is not None and sport(pkt.sport) == sneg:
            return False
        if dport is not None and dport(pkt.dport) == dneg:
            return False
        return flags is None or ((pkt.flags & flags[0]) == flags[1]) != fneg

    return check


def _icmp_check(proto: int, args: dict) -> Check:
    t = args.get("type")
    c = args.get("code")
    neg = bool(args.get("negate"))

    def check(pkt, ctx, ifs) -> bool:
        if pkt.proto != proto or pkt.frag_offset or not pkt.has_l4:
            return False
        hit = t is None or (pkt.icmp_type == t and (c is None or pkt.icmp_code == c))
        return hit != neg

    return check


def _multiport_check(args: dict) -> Check:
    test = _port_test(args["ports"])
    direction = args["dir"]
    neg = bool(args["negate"])

    def check(pkt, ctx, ifs) -> bool:
        if pkt.frag_offset or not pkt.has_l4:
            return False
        if direction == "sports":
            hit = test(pkt.sport)
        elif direction == "dports":
            hit = test(pkt.dport)
        else:
            hit = test(pkt.sport) or test(pkt.dport)
        return hit != neg

    return check


def _state_check(args: dict) -> Check:
    states = frozenset(args["states"])
    neg = bool(args["negate"])

    def check(pkt, ctx, ifs) -> bool:
        hit = ctx.ctstate in states or bool(states & ctx.ct_nat)
        return hit != neg

    return check


def _limit_check(args: dict) -> Check:
    cost = int(args["avg"]) / XT_LIMIT_SCALE
    bucket = _Bucket(cost, cost * int(args["burst"]), cost * int(args["burst"]))

    def check(pkt, ctx, ifs) -> bool:
        return bucket.take(ctx.now)

    return check


def _helper_check(args: dict) -> Check:
    name = str(args["helper"])
    neg = bool(args["negate"])

    def check(pkt, ctx, ifs) -> bool:
        # xt_helper matches only expected connections, by their master's helper.
        return (ctx.master_helper is not None and ctx.master_helper == name) != neg

    return check


def _connlimit_check(args: dict, family: int) -> Check:
    limit = int(args["limit"])
    above = bool(args["above"])
    prefix = int(args["mask"])
    daddr = bool(args["daddr"])
    bits = 32 if family == 4 else 128
    mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
    # This rule's own count (xt_connlimit's nf_conncount_data, one per rule instance): masked address ->
    # the connections this rule has counted. A connection counts only in the rules it reached, so a
    # rule limiting port 22 never counts connections to port 80.
    groups: dict[int, list] = {}

    def check(pkt, ctx, ifs) -> bool:
        addr = (pkt.dst if daddr else pkt.src) & mask
        count = ctx.connlimit(groups, addr) if ctx.connlimit is not None else 1
        return (count > limit) if above else (count <= limit)

    return check


def _module_check(name: str, args: dict, family: int) -> Check | None:
    if name == "tcp":
        return _l4_check(PROTO_TCP, args)
    if name == "udp":
        return _l4_check(PROTO_UDP, args)
    if name == "icmp":
        return _icmp_check(PROTO_ICMP, args)
    if name == "icmp6":
        return _icmp_check(PROTO_ICMPV6, args)
    if name == "multiport":
        return _multiport_check(args)
    if name in ("state", "conntrack"):
        return _state_check(args)
    if name == "limit":
        return _limit_check(args)
    if name == "helper":
        return _helper_check(args)
    if name == "connlimit":
        return _connlimit_check(args, family)
    return None  # comment: always matches


def _compile_checks(rule: NfRule, family: int) -> list[Check]:
    """The rule's tests in netfilter's order: the IP header part, then each module as written."""
    m = rule.match
    checks: list[Check] = []
    if m.sources:
        checks.append(_addr_check(m.sources, m.source_negate, "src"))
    if m.destinations:
        checks.append(_addr_check(m.destinations, m.destination_negate, "dst"))
    if m.in_interface is not None:
        checks.append(_iface_check(m.in_interface, m.in_interface_negate, "inp"))
    if m.out_interface is not None:
        checks.append(_iface_check(m.out_interface, m.out_interface_negate, "out"))
    if m.protocol:
        proto, neg = m.protocol, m.protocol_negate
        checks.append(lambda pkt, ctx, ifs: (pkt.proto == proto) != neg)
    if rule.fragment is not None:
        want = rule.fragment
        checks.append(lambda pkt, ctx, ifs: (pkt.frag_offset != 0) == want)
    for name, _folded, args in nf_module_instances(rule):
        check = _module_check(name, args, family)
        if check is not None:
            checks.append(check)
    return checks


# --------------------------------------------------------------------------------------------------
# The traversal


class Netfilter:
    """The compiled rulesets of a policy (both families) and their counters."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._devices = {name: itf.hardware or name for name, itf in policy.interfaces.items()}
        self._mtus: dict[str, int] = {}
        for name, itf in policy.interfaces.items():
            self._mtus[name] = itf.mtu
            self._mtus[itf.hardware or name] = itf.mtu
        self._tables: dict[int, dict[str, _CTable]] = {
            4: {n: self._compile(t, 4) for n, t in (policy.netfilter or {}).items()},
            6: {n: self._compile(t, 6) for n, t in (policy.ip6_netfilter or {}).items()},
        }

    @staticmethod
    def before_conntrack(hook: str) -> tuple[str, ...]:
        tables = HOOK_TABLES[hook]
        return tables[: tables.index("conntrack")] if "conntrack" in tables else ()

    @staticmethod
    def after_conntrack(hook: str) -> tuple[str, ...]:
        tables = HOOK_TABLES[hook]
        return tables[tables.index("conntrack") + 1 :] if "conntrack" in tables else tables

    def _compile(self, table: NfTable, family: int) -> _CTable:
        order = list(table.chains)
        index = {name: i for i, name in enumerate(order)}
        chains = []
        for name in order:
            chain: NfChain = table.chains[name]
            cc = _CChain(name, chain.policy, pkts=chain.counters[0], bytes=chain.counters[1])
            for rule in chain.rules:
                t = rule.target
                if t == "ACCEPT":
                    kind, jump = _ACCEPT, -1
                elif t == "DROP":
                    kind, jump = _DROP, -1
                elif t == "RETURN":
                    kind, jump = _RETURN, -1
                elif t == "":
                    kind, jump = _NONE, -1
                elif t in index:
                    kind, jump = (_GOTO if rule.goto else _JUMP), index[t]
                else:
                    kind, jump = _EXT, -1
                cr = _CRule(
                    rule, _compile_checks(rule, family), kind, jump, rule.counters[0], rule.counters[1]
                )
                cc.rules.append(cr)
            chains.append(cc)
        return _CTable(table.name, chains, index)

    def device(self, name: str | None) -> str:
        """The device name rules match for a logical interface name (or the name itself)."""
        if name is None:
            return ""
        return self._devices.get(name, name)

    # -- evaluation --------------------------------------------------------------------------------

    def traverse(
        self, hook: str, pkt: Packet, ctx: Context, tables: tuple[str, ...] | None = None
    ) -> Decision:
        """Every table of ``hook`` (or the ``tables`` given, in that order) until one drops.

        The decision is that of the last table the policy has (its rule, chain and table), with the
        actions of all of them.
        """
        actions: list[Action] = []
        last = Decision("ACCEPT", actions, None, hook, "")
        present = self._tables[pkt.version]
        for name in tables if tables is not None else HOOK_TABLES[hook]:
            if name not in present:
                continue  # a table the policy lacks accepts; "conntrack" is only a marker
            if name == "nat" and ctx.ctstate != "NEW":
                continue
            d = self.evaluate(hook, name, pkt, ctx)
            actions.extend(d.actions)
            last = Decision(d.verdict, actions, d.rule, d.chain, d.table)
            if d.verdict != "ACCEPT":
                return last
        return last

    def evaluate(self, hook: str, table: str, pkt: Packet, ctx: Context) -> Decision:
        """Walk ``table``'s built-in chain for ``hook`` as ipt_do_table does."""
        family = pkt.version
        ct = self._tables[family].get(table)
        if ct is None or hook not in ct.index:
            return Decision("ACCEPT", [], None, hook, table)
        ifs = _Iface(self.device(ctx.in_iface), self.device(ctx.out_iface))
        chains = ct.chains
        base = chains[ct.index[hook]]
        chain = base
        i = 0
        stack: list[tuple[_CChain, int]] = []
        actions: list[Action] = []
        size = pkt.total_len
        while True:
            rules = chain.rules
            if i >= len(rules):
                if stack and chain is not base:
                    chain, i = stack.pop()
                    continue
                return self._policy(base, size, actions, table)
            cr = rules[i]
            i += 1
            for check in cr.checks:
                if not check(pkt, ctx, ifs):
                    break
            else:
                cr.pkts += 1
                cr.bytes += size
                kind = cr.kind
                if kind == _NONE:
                    continue
                if kind == _ACCEPT:
                    return Decision("ACCEPT", actions, cr.rule, chain.name, table)
                if kind == _DROP:
                    return Decision("DROP", actions, cr.rule, chain.name, table)
                if kind == _RETURN:
                    if stack:
                        chain, i = stack.pop()
                        continue
                    return self._policy(base, size, actions, table)
                if kind == _JUMP:
                    stack.append((chain, i))
                    chain, i = chains[cr.jump], 0
                    continue
                if kind == _GOTO:
                    chain, i = chains[cr.jump], 0
                    continue
                verdict = self._target(cr.rule, pkt, ctx, ifs, actions)
                if verdict is not None:
                    return Decision(verdict, actions, cr.rule, chain.name, table)
                size = pkt.total_len  # TCPMSS may have grown the packet

    def _policy(self, base: _CChain, size: int, actions: list[Action], table: str) -> Decision:
        base.pkts += 1
        base.bytes += size
        return Decision(base.policy or "ACCEPT", actions, None, base.name, table)

    def _target(
        self, rule: NfRule, pkt: Packet, ctx: Context, ifs: _Iface, actions: list[Action]
    ) -> str | None:
        """Run a target extension; a verdict ends the table, None continues with the next rule."""
        t = rule.target
        a = rule.target_args
        if t == "LOG":
            text = log_line(
                pkt,
                str(a.get("prefix", "")),
                ifs.inp or None,
                ifs.out or None,
                ctx.mac,
                int(a.get("flags", 0)),
            )
            actions.append(Action("LOG", {"text": text, "level": int(a.get("level", 4))}, rule))
            return None
        if t == "TCPMSS":
            return self._tcpmss(rule, pkt, ctx, actions)
        if t == "REJECT":
            actions.append(
                Action("REJECT", {"with": a["with"], "reply": NF_REJECT_REPLIES[str(a["with"])]}, rule)
            )
            return "DROP"
        if t in ("SNAT", "DNAT", "MASQUERADE", "REDIRECT", "NETMAP"):
            actions.append(Action(t, dict(a), rule))
            return "ACCEPT"
        if t in ("CT", "NOTRACK"):
            actions.append(Action(t, dict(a), rule))
            return None
        if t == "SYNPROXY":
            flags = pkt.flags
            syn_only = flags & 0x17 == 0x02
            ack_only = flags & 0x17 == 0x10
            if pkt.proto == PROTO_TCP and (syn_only or ack_only):
                actions.append(Action("SYNPROXY", dict(a), rule))
                return "DROP"
            return None
        return None

    def _tcpmss(self, rule: NfRule, pkt: Packet, ctx: Context, actions: list[Action]) -> str | None:
        """xt_TCPMSS (reference B.5): lower an MSS above the target value, add one when absent."""
        if pkt.frag_offset or pkt.proto != PROTO_TCP or not pkt.has_l4:
            return None
        v6 = pkt.version == 6
        if rule.target_args.get("clamp"):
            minlen = 60 if v6 else 40
            mtus = [
                m
                for m in (
                    ctx.path_mtu if ctx.path_mtu is not None else self._mtus.get(ctx.out_iface or ""),
                    ctx.reverse_mtu if ctx.reverse_mtu is not None else self._mtus.get(ctx.in_iface or ""),
                )
                if m is not None
            ]
            mtu = min(mtus) if mtus else 1500
            if mtu <= minlen:
                actions.append(Action("TCPMSS", {"error": f"unknown or invalid path-MTU ({mtu})"}, rule))
                return "DROP"
            newmss = mtu - minlen
        else:
            newmss = int(rule.target_args["mss"])
        old = pkt.mss()
        if old is not None:
            # "Never increase MSS, even when setting it."
            if old <= newmss:
                return None
            pkt.set_mss(newmss)
            actions.append(Action("TCPMSS", {"old": old, "new": newmss, "added": False}, rule))
            return None
        # No MSS option: RFC 879's default applies; add one only to a SYN without data and with room.
        if pkt.payload_len or pkt.doff >= 60:
            return None
        value = min(newmss, 1220 if v6 else 536)
        if pkt.insert_tcp_option(craft.tcp_option_mss(value)):
            actions.append(Action("TCPMSS", {"old": None, "new": value, "added": True}, rule))
        return None

    # -- counters ----------------------------------------------------------------------------------

    def counters(self, table: str, family: int = 4) -> dict[tuple[str, int], tuple[int, int]]:
        """``(chain, rule index) -> (packets, bytes)``, index -1 for a built-in chain's policy."""
        ct = self._tables[family].get(table)
        out: dict[tuple[str, int], tuple[int, int]] = {}
        if ct is None:
            return out
        for chain in ct.chains:
            if chain.policy is not None:
                out[(chain.name, -1)] = (chain.pkts, chain.bytes)
            for i, cr in enumerate(chain.rules):
                out[(chain.name, i)] = (cr.pkts, cr.bytes)
        return out


# --------------------------------------------------------------------------------------------------
# LOG


def log_line(
    pkt: Packet, prefix: str, in_dev: str | None, out_dev: str | None, mac: bytes | None, flags: int = 0
) -> str:
    """The line the kernel's LOG target writes (nf_log_syslog.c), without the syslog header.

    ``MAC=`` follows ``IN=`` whenever there is an input device; statewall sees IP packets only, so
    unless ``mac`` is given it stays empty, as the kernel prints it for a device without a link-layer
    header. ``flags`` are the LOG options (NF_LOG_TCPSEQ 1, TCPOPT 2, IPOPT 4).
    """
    out = [f"{prefix}IN={in_dev or ''} OUT={out_dev or ''} "]
    if in_dev:
        out.append("MAC=" + (":".join(f"{b:02x}" for b in mac) if mac else "") + " ")
    if pkt.version == 4:
        _dump_ipv4(out, pkt, flags, top=True)
    else:
        _dump_ipv6(out, pkt, flags, top=True)
    return "".join(out)


def _u16(buf, off: int) -> int:
    return (buf[off] << 8) | buf[off + 1]


def _u32(buf, off: int) -> int:
    return int.from_bytes(buf[off : off + 4], "big")


def _dump_tcp(out: list[str], pkt: Packet, fragment: bool, flags: int) -> None:
    out.append("PROTO=TCP ")
    if fragment:
        return
    if not pkt.has_l4 or pkt.doff == 0:
        out.append(f"INCOMPLETE [{pkt.end - pkt.l4off} bytes] ")
        return
    out.append(f"SPT={pkt.sport} DPT={pkt.dport} ")
    if flags & 0x01:
        out.append(f"SEQ={pkt.seq} ACK={pkt.ack} ")
    out.append(f"WINDOW={pkt.window} ")
    out.append(f"RES=0x{(pkt.reserved << 2) & 0xFF:02x} ")
    for name, bit in _TCP_FLAG_NAMES:
        if pkt.flags & bit:
            out.append(name + " ")
    out.append(f"URGP={pkt.urgptr} ")
    if flags & 0x02 and pkt.doff > 20:
        opts = pkt.buf[pkt.l4off + 20 : pkt.l4off + pkt.doff]
        out.append("OPT (" + "".join(f"{b:02X}" for b in opts) + ") ")


def _dump_udp(out: list[str], pkt: Packet, fragment: bool) -> None:
    out.append("PROTO=UDP ")
    if fragment:
        return
    out.append(f"SPT={pkt.sport} DPT={pkt.dport} LEN={pkt.udp_len} ")


def _dump_ipv4(out: list[str], pkt: Packet, flags: int, top: bool) -> None:
    buf = pkt.buf
    o = pkt.ipoff
    out.append(f"SRC={ipaddress.IPv4Address(pkt.src)} DST={ipaddress.IPv4Address(pkt.dst)} ")
    tos = pkt.tos
    out.append(
        f"LEN={pkt.total_len} TOS=0x{tos & 0x1E:02X} PREC=0x{tos & 0xE0:02X} TTL={pkt.ttl} ID={pkt.ip_id} "
    )
    frag = _u16(buf, o + 6)
    if frag & 0x8000:
        out.append("CE ")
    if frag & 0x4000:
        out.append("DF ")
    if frag & 0x2000:
        out.append("MF ")
    if frag & 0x1FFF:
        out.append(f"FRAG:{frag & 0x1FFF} ")
    hl = (buf[o] & 15) << 2
    if flags & 0x04 and hl > 20:
        out.append("OPT (" + "".join(f"{b:02X}" for b in buf[o + 20 : o + hl]) + ") ")
    fragment = bool(frag & 0x1FFF)
    proto = pkt.proto
    if proto == PROTO_TCP:
        _dump_tcp(out, pkt, fragment, flags)
    elif proto in (PROTO_UDP, 136):
        if proto == 136:
            out.append("PROTO=UDPLITE ")
            if not fragment:
                out.append(
                    f"SPT={_u16(buf, pkt.l4off)} DPT={_u16(buf, pkt.l4off + 2)} "
                    f"LEN={_u16(buf, pkt.l4off + 4)} "
                )
        else:
            _dump_udp(out, pkt, fragment)
    elif proto == PROTO_ICMP:
        out.append("PROTO=ICMP ")
        if not fragment:
            _dump_icmp(out, pkt, flags, top)
    elif proto == 51:
        if not fragment:
            out.append("PROTO=AH ")
            if pkt.end - pkt.l4off >= 8:
                out.append(f"SPI=0x{_u32(buf, pkt.l4off + 4):x} ")
    elif proto == 50:
        out.append("PROTO=ESP ")
        if not fragment and pkt.end - pkt.l4off >= 4:
            out.append(f"SPI=0x{_u32(buf, pkt.l4off):x} ")
    else:
        out.append(f"PROTO={proto} ")


def _dump_icmp(out: list[str], pkt: Packet, flags: int, top: bool) -> None:
    buf = pkt.buf
    l4 = pkt.l4off
    t, c = pkt.icmp_type, pkt.icmp_code
    out.append(f"TYPE={t} CODE={c} ")
    if t in (0, 8):
        out.append(f"ID={_u16(buf, l4 + 4)} SEQ={_u16(buf, l4 + 6)} ")
    elif t == 12:
        out.append(f"PARAMETER={buf[l4 + 4]} ")
    elif t in (3, 4, 5, 11):
        if t == 5:
            out.append(f"GATEWAY={ipaddress.IPv4Address(_u32(buf, l4 + 4))} ")
        inner = pkt.inner()
        if top and inner is not None:
            out.append("[")
            _dump_ipv4(out, inner, flags, top=False)
            out.append("] ")
        if t == 3 and c == 4:
            out.append(f"MTU={_u16(buf, l4 + 6)} ")


def _ip6(value: int) -> str:
    # %pI6: eight groups of four hex digits, no compression.
    h = f"{value:032x}"
    return ":".join(h[i : i + 4] for i in range(0, 32, 4))


def _dump_ipv6(out: list[str], pkt: Packet, flags: int, top: bool) -> None:
    buf = pkt.buf
    o = pkt.ipoff
    out.append(f"SRC={_ip6(pkt.src)} DST={_ip6(pkt.dst)} ")
    word = _u32(buf, o)
    out.append(f"LEN={pkt.total_len} TC={(word >> 20) & 0xFF} HOPLIMIT={pkt.ttl} FLOWLBL={word & 0xFFFFF} ")
    fragment = False
    for kind, off, _ln in pkt.ipv6_ext:
        if flags & 0x04:
            out.append("OPT ( ")
        if kind == 44:
            fo = _u16(buf, off + 2)
            out.append(f"FRAG:{fo & 0xFFF8} ")
            if fo & 1:
                out.append("INCOMPLETE ")
            out.append(f"ID:{_u32(buf, off + 4):08x} ")
            if fo & 0xFFF8:
                fragment = True
        if flags & 0x04:
            out.append(") ")
    proto = pkt.proto
    if proto == PROTO_TCP:
        _dump_tcp(out, pkt, fragment, flags)
    elif proto == PROTO_UDP:
        _dump_udp(out, pkt, fragment)
    elif proto == PROTO_ICMPV6:
        out.append("PROTO=ICMPv6 ")
        if fragment:
            return
        l4 = pkt.l4off
        t, c = pkt.icmp_type, pkt.icmp_code
        out.append(f"TYPE={t} CODE={c} ")
        if t in (128, 129):
            out.append(f"ID={_u16(buf, l4 + 4)} SEQ={_u16(buf, l4 + 6)} ")
        elif t in (1, 2, 3, 4):
            if t == 4:
                out.append(f"POINTER={_u32(buf, l4 + 4):08x} ")
            inner = pkt.inner()
            if top and inner is not None:
                out.append("[")
                _dump_ipv6(out, inner, flags, top=False)
                out.append("] ")
            if t == 2:
                out.append(f"MTU={_u32(buf, l4 + 4)} ")
    else:
        out.append(f"PROTO={proto} ")


__all__ = ["HOOKS", "HOOK_TABLES", "Action", "Context", "Decision", "Netfilter", "log_line"]
