"""Netfilter's rule traversal: which tables and chains one packet goes through, and what they decide.

Owns the evaluation of iptables/ip6tables rulesets (``Policy.netfilter``, ``Policy.ip6_netfilter``) as
the kernel's ``ipt_do_table`` does it, and of nftables rulesets (``Policy.nft_tables``) as
``nft_do_chain`` does: a hook's base chains in priority order, jumps (``-j``, ``jump``) and gotos
into user chains, RETURN, the chain policy, per-rule packet and byte counters (bytes are the IP total
length), the match modules' state (``-m limit``, ``recent`` lists, ``hashlimit`` buckets), nft
statements and verdict maps, and the target extensions. It is pure and sans-IO: the caller gives the
packet (a decoded ``statewall.packet.Packet``), a ``Context`` and the time. It reads the neutral model
only; no dialect is imported here.

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

``HOOK_TABLES`` lists the iptables tables of each hook in the kernel's priority order, with
``"conntrack"`` where connection tracking runs. ``traverse`` runs the base chains of a hook sorted by
priority (``table_priority``: NF_IP_PRI_RAW -300, conntrack -200, mangle -150, dstnat -100, filter 0,
security 50, srcnat 100; an nft base chain at its own number), on the side of conntrack the given
tables are on, nat chains only for a packet whose ctstate is NEW (the kernel consults nat chains once
per connection), and stops at the first DROP. ``evaluate(hook, table, pkt, ctx)`` walks one
iptables table.

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

from . import craft, nft_sets
from .packet import Packet
from .policy import (
    NF_REJECT_ICMPX,
    NF_REJECT_REPLIES,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    Match,
    NfChain,
    NfRule,
    NfTable,
    Policy,
    PortMatch,
    nf_module_instances,
)

HOOKS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
# (``INGRESS``: nftables ingress chains; HOOK_TABLES has it, with no iptables table.)
# Tables by hook in the kernel's priority order (NF_IP_PRI_*): raw -300, conntrack -200, mangle -150,
# nat (destination) -100, filter 0, security 50, nat (source) 100.
HOOK_TABLES: dict[str, tuple[str, ...]] = {
    "PREROUTING": ("raw", "conntrack", "mangle", "nat"),
    "INPUT": ("mangle", "filter", "security", "nat"),
    "FORWARD": ("mangle", "filter", "security"),
    "OUTPUT": ("raw", "conntrack", "mangle", "nat", "filter", "security"),
    "POSTROUTING": ("mangle", "nat"),
    "INGRESS": (),  # nftables only: netdev (and inet) ingress chains, before PREROUTING
}
CTSTATES = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED")
# enum nf_ip_hook_priorities (include/uapi/linux/netfilter_ipv4.h): where each table and conntrack
# sit at a hook. nftables base chains take any number; the names nft accepts map to these.
CONNTRACK_DEFRAG_PRIORITY = -400
RAW_PRIORITY = -300
CONNTRACK_PRIORITY = -200
MANGLE_PRIORITY = -150
DSTNAT_PRIORITY = -100
FILTER_PRIORITY = 0
SECURITY_PRIORITY = 50
SRCNAT_PRIORITY = 100


def table_priority(table: str, hook: str) -> int:
    """The priority of an iptables table's built-in chain at ``hook``."""
    if table == "nat":
        return DSTNAT_PRIORITY if hook in ("PREROUTING", "OUTPUT") else SRCNAT_PRIORITY
    return {"raw": RAW_PRIORITY, "mangle": MANGLE_PRIORITY, "filter": FILTER_PRIORITY}.get(
        table, SECURITY_PRIORITY
    )


XT_LIMIT_SCALE = 10000
# A statement's outcome that stops the rule without a verdict (nft's NFT_BREAK: a data map without
# the packet's key); the next rule follows.
BREAK = "BREAK"


def _counter_after(rule: NfRule, k: int) -> bool:
    """Whether the nft rule's ``counter`` comes after its statement ``k`` (as written)."""
    layout = rule.layout
    if "counter" not in layout or f"stmt:{k}" not in layout:
        return False
    return layout.index(f"stmt:{k}") < layout.index("counter")


def _mapped(t: str, a: dict, value: tuple) -> dict:
    """A statement's arguments with the value a data map gave it."""
    out = dict(a)
    out.pop("map", None)
    if t in ("SNAT", "DNAT"):
        lo, hi = value[0]
        cls = (
            ipaddress.IPv4Address
            if lo <= 0xFFFFFFFF and a["map"]["data"][0] == "ipv4_addr"
            else ipaddress.IPv6Address
        )
        out["addresses"] = (cls(lo), cls(hi))
        out["ports"] = tuple(value[1]) if len(value) > 1 else None
    else:  # MARK / CONNMARK set
        out["value"] = value[0][0]
    return out


_ACCEPT, _DROP, _RETURN, _JUMP, _GOTO, _NONE, _EXT, _VMAP, _CONTINUE = range(9)
_NAT_STATUS = {
    "DNAT": "DNAT",
    "REDIRECT": "DNAT",
    "SNAT": "SNAT",
    "MASQUERADE": "SNAT",
    "NETMAP": "NETMAP",
}
# The rule TRACE lines of a chain's end (return, policy) are attributed to: none of the file's.
_TRACE_RULE = NfRule(Match(), "TRACE")
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
    # skb->mark (MARK, -m mark): 0 for a packet as it arrives; the same Context follows the packet
    # through every hook. ct_mark: the connection's mark as the caller keeps it (CONNMARK,
    # -m connmark); the caller stores it back after the hook. ct_dir: ORIGINAL or REPLY, None when the
    # caller does not say (the first packet of a connection is ORIGINAL). ct_status: EXPECTED,
    # SEEN_REPLY, ASSURED, CONFIRMED. trace: TRACE was hit (skb->nf_trace).
    mark: int = 0
    ct_mark: int = 0
    ct_dir: str | None = None
    ct_status: frozenset[str] = frozenset()
    trace: bool = False


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
    """xt_limit's token bucket in nanoseconds: ``cost`` per packet, up to ``cap``, refilled by time.

    Integers, as the kernel counts its credits: a burst of N is N packets exactly, whatever the
    rounding of the cost in seconds would have made of it."""

    cost: int
    cap: int
    credit: int
    prev: int | None = None

    def take(self, now: float) -> bool:
        t = round(now * 1_000_000_000)
        if self.prev is None:
            self.prev = t
        elif t > self.prev:
            self.credit = min(self.cap, self.credit + (t - self.prev))
            self.prev = t
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
    # _VMAP: the key's test and (value, verdict kind, chain index) per entry (an nft verdict map).
    vmap: tuple | None = None


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
    cost = int(args["avg"]) * (1_000_000_000 // XT_LIMIT_SCALE)
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


# --------------------------------------------------------------------------------------------------
# The match modules of deployed rulesets (Docker, ufw, firewalld, OpenWrt fw3)


def addr_type(env: Netfilter | None, version: int, addr: int, dev: str | None = None) -> str:
    """The route type of an address as addrtype sees it (fib_frontend.c inet_addr_type: the local
    table decides LOCAL and BROADCAST, everything else is UNICAST; ip6t: ipv6_addr_type)."""
    if version == 4:
        if addr >> 24 == 0 or addr == 0xFFFFFFFF:
            return "BROADCAST"  # ipv4_is_zeronet || ipv4_is_lbcast
        if addr >> 28 == 0xE:
            return "MULTICAST"
        if env is not None:
            if dev is not None:
                if addr in env.local_by_dev.get(dev, ()) or (dev == "lo" and addr >> 24 == 127):
                    return "LOCAL"
            elif addr in env.local_addrs[4] or addr >> 24 == 127:
                return "LOCAL"
            if addr in env.broadcasts:
                return "BROADCAST"
        elif addr >> 24 == 127:
            return "LOCAL"
        return "UNICAST"
    if addr == 0:
        return "UNSPEC"
    if addr >> 120 == 0xFF:
        return "MULTICAST"
    if env is not None:
        mine = env.local_by_dev.get(dev, set()) if dev is not None else env.local_addrs[6]
        if addr in mine or (addr == 1 and dev in (None, "lo")):
            return "LOCAL"
    return "UNICAST"


def _addrtype_check(args: dict, family: int, env: Netfilter | None) -> Check:
    src_t, dst_t = args["src_type"], args["dst_type"]
    src_n, dst_n = bool(args["src_negate"]), bool(args["dst_negate"])
    limit_in, limit_out = bool(args["limit_in"]), bool(args["limit_out"])

    def check(pkt, ctx, ifs) -> bool:
        dev = ifs.inp if limit_in else (ifs.out if limit_out else None)
        if src_t is not None and (addr_type(env, pkt.version, pkt.src, dev) in src_t) == src_n:
            return False
        return dst_t is None or (addr_type(env, pkt.version, pkt.dst, dev) in dst_t) != dst_n

    return check


def _mark_check(args: dict, family: int, env: Netfilter | None, attr: str = "mark") -> Check:
    value, mask, neg = int(args["value"]), int(args["mask"]), bool(args["negate"])

    def check(pkt, ctx, ifs) -> bool:
        if attr == "ct_mark" and ctx.ctstate in ("INVALID", "UNTRACKED"):
            return False  # xt_connmark: no conntrack, no match
        return ((getattr(ctx, attr) & mask) == value) != neg

    return check


def _conntrack_check(args: dict) -> Check:
    """xt_conntrack beyond --ctstate: a packet without a conntrack entry (INVALID, UNTRACKED) matches
    only a rule that tests nothing but the state."""
    states = frozenset(args["states"]) if "states" in args else None
    neg = bool(args.get("negate"))
    proto, proto_neg = args.get("proto"), bool(args.get("proto_negate"))
    status, status_neg = args.get("status"), bool(args.get("status_negate"))
    direction = args.get("dir")

    def check(pkt, ctx, ifs) -> bool:
        if states is not None and (ctx.ctstate in states or bool(states & ctx.ct_nat)) == neg:
            return False
        if ctx.ctstate in ("INVALID", "UNTRACKED"):
            return False
        if proto is not None and (pkt.proto == proto) == proto_neg:
            return False
        if status is not None and (bool(status) and status <= ctx.ct_status) == status_neg:
            return False
        if direction is not None:
            here = ctx.ct_dir or "ORIGINAL"
            if here != direction:
                return False
        return True

    return check


def _recent_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """xt_recent recent_mt (current kernels): SET adds or refreshes the address and matches; CHECK and
    UPDATE match when the address is in the list (with --seconds: seen that recently; --hitcount: that
    many times), UPDATE then refreshes it; REMOVE matches and removes it. 20 stamps per address,
    100 addresses per list (the least recently seen goes)."""
    mode = args["mode"]
    neg = bool(args["negate"])
    seconds = int(args["seconds"])
    hitcount = int(args["hitcount"])
    reap = bool(args["reap"])
    use_ttl = bool(args["ttl"])
    dest = args["side"] == "dest"
    mask = int(args["mask"])
    tables = env.recent if env is not None else {}
    key = (family, str(args["name"]))

    def check(pkt, ctx, ifs) -> bool:
        table = tables.setdefault(key, {})
        addr = (pkt.dst if dest else pkt.src) & mask
        ttl = pkt.ttl + (1 if ctx.out_iface is not None and ctx.in_iface is not None else 0)
        entry = table.get(addr)
        if entry is not None and use_ttl and entry[1] != ttl:
            entry = None
        now = ctx.now
        hit = neg
        if entry is None:
            if mode != "SET":
                return hit
            if len(table) >= 100:
                del table[next(iter(table))]
            table[addr] = [[now], ttl]
            return not hit
        if mode == "SET":
            hit = not hit
        elif mode == "REMOVE":
            del table[addr]
            return not hit
        else:
            since = now - seconds
            hits = 0
            for stamp in entry[0]:
                if seconds and stamp < since:
                    continue
                hits += 1
                if not hitcount or hits >= hitcount:
                    hit = not hit
                    break
            if reap:
                for other in [a for a, e in table.items() if e[0][-1] < since]:
                    del table[other]
                if addr not in table:
                    return hit
        if mode == "SET" or (mode == "UPDATE" and hit):
            stamps = entry[0]
            stamps.append(now)
            del stamps[:-20]
            entry[1] = ttl
            table[addr] = table.pop(addr)  # most recently seen last
        return hit

    return check


def _set_member_test(sets: dict, name: str, dirs: tuple[str, ...], seen: frozenset = frozenset()):
    import bisect

    s = sets[name]
    if s.dims == ("set",):
        subs = [_set_member_test(sets, m[0], dirs, seen | {name}) for m in s.members if m[0] not in seen]
        return lambda pkt: any(t(pkt) for t in subs)
    dims = s.dims
    if len(dims) == 1 and dims[0] in ("ip", "net"):
        merged: list[list[int]] = []
        for lo, hi in sorted(m[0] for m in s.members):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        starts = [m[0] for m in merged]
        dst = dirs[0] == "dst"

        def one(pkt) -> bool:
            addr = pkt.dst if dst else pkt.src
            i = bisect.bisect_right(starts, addr) - 1
            return i >= 0 and addr <= merged[i][1]

        return one
    members = list(s.members)
    sides = [dirs[i] if i < len(dirs) else dirs[-1] for i in range(len(dims))]

    def many(pkt) -> bool:
        values = []
        for dim, side in zip(dims, sides, strict=True):
            if dim in ("ip", "net"):
                values.append(pkt.dst if side == "dst" else pkt.src)
            else:
                if not pkt.has_l4 or pkt.frag_offset:
                    return False
                values.append((pkt.proto, pkt.dport if side == "dst" else pkt.sport))
        for m in members:
            for dim, v, want in zip(dims, values, m, strict=True):
                if dim == "port":
                    if v[0] != want[0] or not want[1] <= v[1] <= want[2]:
                        break
                elif not want[0] <= v <= want[1]:
                    break
            else:
                return True
        return False

    return many


def _set_check(args: dict, family: int, env: Netfilter | None) -> Check:
    test = _set_member_test(env.sets if env is not None else {}, str(args["name"]), tuple(args["dirs"]))
    neg = bool(args["negate"])
    return lambda pkt, ctx, ifs: test(pkt) != neg


def _iprange_check(args: dict, family: int, env: Netfilter | None) -> Check:
    tests = []
    for key, attr in (("src", "src"), ("dst", "dst")):
        rng = args[key + "_range"]
        if rng is not None:
            tests.append((attr, int(rng[0]), int(rng[1]), bool(args[key + "_negate"])))

    return lambda pkt, ctx, ifs: all((lo <= getattr(pkt, a) <= hi) != neg for a, lo, hi, neg in tests)


class RandomStream:
    """The kernel's random numbers (``get_random_u32()``) as a reproducible stream: SplitMix64 from a
    fixed start, so that a replay or a trace of the same packets draws the same numbers every time."""

    __slots__ = ("state",)

    def __init__(self, seed: int = 0x5EED_5747_E1A1) -> None:
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def u32(self) -> int:
        z = self.state = (self.state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return (z ^ (z >> 31)) & 0xFFFFFFFF


def _statistic_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """xt_statistic statistic_mt: random mode matches when a random number's low 31 bits are below the
    rule's threshold (``lround(0x80000000 * p)``); nth mode counts every packet that reaches the match
    in one counter per rule, starting at n-1-p, and matches when the counter wraps to 0 (each n-th
    packet, the first after p+1... as the kernel's cmpxchg loop does). ``!`` inverts either answer."""
    neg = bool(args["negate"])
    if args["mode"] == "random":
        threshold = int(args["probability"])
        stream = env.random if env is not None else RandomStream()

        def check(pkt, ctx, ifs) -> bool:
            return ((stream.u32() & 0x7FFFFFFF) < threshold) != neg

        return check
    last = int(args["every"]) - 1
    counter = [last - int(args["packet"])]

    def nth(pkt, ctx, ifs) -> bool:
        value = counter[0] = 0 if counter[0] == last else counter[0] + 1
        return (value == 0) != neg

    return nth


def _policy_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """xt_policy without IPsec (statewall models no xfrm policy or state, warned at load): a packet has
    no security path in and no xfrm bundle out, so policy_mt's lookup fails and ``--pol none`` holds
    while ``--pol ipsec`` never does."""
    none = args["pol"] == "none"
    return lambda pkt, ctx, ifs: none


def _nft_ipsec_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """nft ``meta ipsec exists|missing`` and ``ipsec in|out ...`` (nft_xfrm) without IPsec (warned at
    load): no packet has a security path, so ``missing`` holds, ``exists`` does not, and an SA field's
    expression finds no SA and breaks the rule whatever it compares (negated too)."""
    holds = args["kind"] == "secpath" and not args["exists"]
    return lambda pkt, ctx, ifs: holds


def _tcpmss_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """xt_tcpmss: the MSS option's value within [low, high] (``!`` inverts); a segment without the
    option matches only when inverted."""
    lo, hi, neg = int(args["low"]), int(args["high"]), bool(args["negate"])

    def check(pkt, ctx, ifs) -> bool:
        if not pkt.has_l4:
            return False
        mss = pkt.mss()
        return neg if mss is None else (lo <= mss <= hi) != neg

    return check


def _length_check(args: dict, family: int, env: Netfilter | None) -> Check:
    lo, hi, neg = int(args["low"]), int(args["high"]), bool(args["negate"])
    return lambda pkt, ctx, ifs: (lo <= pkt.total_len <= hi) != neg


def _pkttype_check(args: dict, family: int, env: Netfilter | None) -> Check:
    want = {"host": "unicast"}.get(str(args["type"]), str(args["type"]))
    neg = bool(args["negate"])

    def check(pkt, ctx, ifs) -> bool:
        # skb->pkt_type comes from the frame's destination MAC; without one, from the IP destination
        # as xt_pkttype does for looped-back packets.
        mac = ctx.mac
        if mac is not None and len(mac) >= 6:
            kind = "broadcast" if mac[:6] == b"\xff" * 6 else ("multicast" if mac[0] & 1 else "unicast")
        else:
            t = addr_type(env, pkt.version, pkt.dst)
            kind = {"BROADCAST": "broadcast", "MULTICAST": "multicast"}.get(t, "unicast")
        return (kind == want) != neg

    return check


def _mac_check(args: dict, family: int, env: Netfilter | None) -> Check:
    source, neg = bytes(args["source"]), bool(args["negate"])

    def check(pkt, ctx, ifs) -> bool:
        mac = ctx.mac
        if mac is None or len(mac) < 12:
            return False  # xt_mac: no Ethernet header, no match (either way)
        return (bytes(mac[6:12]) == source) != neg

    return check


def _hashlimit_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """xt_hashlimit: one token bucket per key (the --hashlimit-mode fields, addresses masked), shared
    by the rules naming the same table; a key unseen for --hashlimit-htable-expire starts full."""
    cost = int(args["avg"]) * 1000  # ns (the average is in microseconds)
    cap = cost * int(args["burst"])
    above = bool(args["above"])
    mode = tuple(args["mode"])
    bits = 32 if family == 4 else 128
    smask = ((1 << bits) - 1) ^ ((1 << (bits - int(args["srcmask"]))) - 1)
    dmask = ((1 << bits) - 1) ^ ((1 << (bits - int(args["dstmask"]))) - 1)
    expire = int(args["expire"]) / 1000
    store = env.recent if env is not None else {}
    buckets = store.setdefault((family, "hashlimit:" + str(args["name"])), {})  # type: ignore[arg-type]

    def check(pkt, ctx, ifs) -> bool:
        key = (
            pkt.src & smask if "srcip" in mode else None,
            pkt.dst & dmask if "dstip" in mode else None,
            pkt.sport if "srcport" in mode and pkt.has_l4 else None,
            pkt.dport if "dstport" in mode and pkt.has_l4 else None,
        )
        now = round(ctx.now * 1_000_000_000)
        b = buckets.get(key)
        if b is None or now - b[1] > expire * 1_000_000_000:
            b = buckets[key] = [cap, now]
        else:
            b[0] = min(cap, b[0] + (now - b[1]))
            b[1] = now
        if b[0] >= cost:
            b[0] -= cost
            return not above
        return above

    return check


def _time_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """xt_time time_mt, in UTC: the date range, the time of day (a range past midnight wraps, and
    --contiguous counts its early part to the day before), the days of the month and week."""
    import datetime as dt

    start, stop = int(args["start"]), int(args["stop"])
    weekdays, monthdays = frozenset(args["weekdays"]), frozenset(args["monthdays"])
    dstart, dstop = int(args["datestart"]), int(args["datestop"])
    contiguous = bool(args["contiguous"])

    def check(pkt, ctx, ifs) -> bool:
        stamp = int(ctx.now)
        if stamp < dstart or stamp > dstop:
            return False
        tod = stamp % 86400
        if start < stop:
            if not start <= tod <= stop:
                return False
        elif not (tod >= start or tod <= stop):
            return False
        if contiguous and start > stop and tod <= stop:
            stamp -= 86400
        day = dt.datetime.fromtimestamp(stamp, dt.UTC)
        return day.day in monthdays and day.isoweekday() in weekdays

    return check


def _physdev_check(args: dict, family: int, env: Netfilter | None) -> Check:
    # xt_physdev for a packet that was not bridged (statewall routes): every condition given must be
    # one that is negated, or the rule does not match.
    holds = (
        all(v is None or v is False for v in (args["is_in"], args["is_out"], args["is_bridged"]))
        and (args["in"] is None or args["in_negate"])
        and (args["out"] is None or args["out_negate"])
    )
    return lambda pkt, ctx, ifs: holds


def _ttl_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """xt_ttl / ip6t_hl: the TTL or hop limit the packet has at this hook."""
    op, value = str(args["op"]), int(args["value"])
    tests = {
        "eq": lambda t: t == value,
        "ne": lambda t: t != value,
        "lt": lambda t: t < value,
        "gt": lambda t: t > value,
    }
    test = tests[op]
    return lambda pkt, ctx, ifs: test(pkt.ttl)


def _nft_ttl_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """nft ``ip ttl`` / ``ip6 hoplimit``: the value at this hook against a comparison, a range or a
    set (``!=`` negates a range or a set)."""
    op, ranges = str(args["op"]), tuple(args["ranges"])
    value = ranges[0][0]
    if op in ("<", ">", "<=", ">="):
        test = {"<": value.__gt__, ">": value.__lt__, "<=": value.__ge__, ">=": value.__le__}[op]
        return lambda pkt, ctx, ifs: test(pkt.ttl)
    neg = op == "!="
    return lambda pkt, ctx, ifs: any(lo <= pkt.ttl <= hi for lo, hi in ranges) != neg


def _rt_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """ip6t_rt: the packet's routing header (type, segments left, header length in bytes); a packet
    without one does not match."""
    rtype, tneg = args["type"], bool(args["type_negate"])
    segs, sneg = args["segsleft"], bool(args["segsleft_negate"])
    length, lneg = args["length"], bool(args["length_negate"])

    def check(pkt, ctx, ifs) -> bool:
        for kind, off, ln in pkt.ipv6_ext:
            if kind != 43:
                continue
            buf = pkt.buf
            if rtype is not None and (buf[off + 2] == rtype) == tneg:
                return False
            if segs is not None and (segs[0] <= buf[off + 3] <= segs[1]) == sneg:
                return False
            return length is None or (ln == length) != lneg
        return False

    return check


def _l4proto_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """nft ``meta l4proto { a, b }``: one of the protocols."""
    protos, neg = frozenset(args["protos"]), bool(args["negate"])
    return lambda pkt, ctx, ifs: (pkt.proto in protos) != neg


def _ifname_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """nft ``iifname { "a", "b*" }``: one of the names (``*`` a prefix)."""
    attr = "inp" if args["side"] == "in" else "out"
    exact = frozenset(n for n in args["names"] if not n.endswith("*"))
    prefixes = tuple(n[:-1] for n in args["names"] if n.endswith("*"))
    neg = bool(args["negate"])

    def check(pkt, ctx, ifs) -> bool:
        name = getattr(ifs, attr)
        return (name in exact or (bool(prefixes) and name.startswith(prefixes))) != neg

    return check


def _icmptypes_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """nft ``icmp type { a, b }``: an ICMP (or ICMPv6) message of one of the types."""
    proto, types, neg = int(args["proto"]), frozenset(args["types"]), bool(args["negate"])

    def check(pkt, ctx, ifs) -> bool:
        if pkt.proto != proto or pkt.frag_offset or not pkt.has_l4:
            return False
        return (pkt.icmp_type in types) != neg

    return check


def _icmptypecodes_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """nft ``icmpv6 type . icmpv6 code { a . b, ... }``: one of the (type, code) pairs."""
    proto, pairs = int(args["proto"]), frozenset(tuple(p) for p in args["pairs"])

    def check(pkt, ctx, ifs) -> bool:
        if pkt.proto != proto or pkt.frag_offset or not pkt.has_l4:
            return False
        return (pkt.icmp_type, pkt.icmp_code) in pairs

    return check


def _rpfilter_check(args: dict, family: int, env: Netfilter | None) -> Check:
    """nft ``fib saddr . iif oif missing`` (firewalld's IPv6 rpfilter): no route back to the source
    leaves through the interface the packet came in on -- by the policy's routes and connected
    networks (nft_fib: the route lookup for the source, limited to the input interface)."""
    missing = bool(args["missing"])
    routes: list[tuple[int, int, int, str]] = []  # (version, network, mask, device)
    if env is not None:
        policy = env.policy
        for name, itf in policy.interfaces.items():
            for addr in itf.addresses():
                net = addr.network
                routes.append((net.version, int(net.network_address), int(net.netmask), itf.hardware or name))
        for route in policy.routes:
            itf = policy.interfaces.get(route.interface)
            dev = (itf.hardware or route.interface) if itf is not None else route.interface
            net = route.network
            routes.append((net.version, int(net.network_address), int(net.netmask), dev))

    def check(pkt, ctx, ifs) -> bool:
        src = pkt.src
        back = any(v == pkt.version and src & mask == net and dev == ifs.inp for v, net, mask, dev in routes)
        return (not back) == missing

    return check


_EXTRA_CHECKS: dict[str, Callable[[dict, int, Netfilter | None], Check]] = {
    "icmptypes": _icmptypes_check,
    "icmptypecodes": _icmptypecodes_check,
    "rpfilter": _rpfilter_check,
    "l4proto": _l4proto_check,
    "ifname": _ifname_check,
    "ttl": _ttl_check,
    "hl": _ttl_check,
    "nftttl": _nft_ttl_check,
    "rt": _rt_check,
    "addrtype": _addrtype_check,
    "mark": _mark_check,
    "connmark": lambda a, f, e: _mark_check(a, f, e, "ct_mark"),
    "recent": _recent_check,
    "set": _set_check,
    "iprange": _iprange_check,
    "length": _length_check,
    "statistic": _statistic_check,
    "policy": _policy_check,
    "nftipsec": _nft_ipsec_check,
    "tcpmss": _tcpmss_check,
    "pkttype": _pkttype_check,
    "mac": _mac_check,
    "hashlimit": _hashlimit_check,
    "time": _time_check,
    "physdev": _physdev_check,
    # nftables sets by key, dynamic updates and meters, nft's limit (statewall.nft_sets).
    "nftset": lambda a, f, e: nft_sets.lookup_check(a, e),
    "dynset": lambda a, f, e: nft_sets.dynset_check(a, e),
    "nftlimit": lambda a, f, e: nft_sets.limit_check(a, e),
    "ethertype": lambda a, f, e: lambda pkt, ctx, ifs: (pkt.version == a["version"]) != bool(a["negate"]),
}


def _module_check(name: str, args: dict, family: int, env: Netfilter | None = None) -> Check | None:
    if name in _EXTRA_CHECKS:
        return _EXTRA_CHECKS[name](args, family, env)
    if name == "conntrack" and set(args) - {"states", "negate"}:
        return _conntrack_check(args)
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


def _compile_checks(rule: NfRule, family: int, env: Netfilter | None = None) -> list[Check]:
    """The rule's tests in netfilter's order: the IP header part, then each module as written."""
    m = rule.match
    checks: list[Check] = []
    if m.family is not None and m.family != family:
        return [lambda pkt, ctx, ifs: False]  # an inet table's rule for the other family (nfproto)
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
        check = _module_check(name, args, family, env)
        if check is not None:
            checks.append(check)
    return checks


_VERDICT_KINDS = {"accept": _ACCEPT, "drop": _DROP, "return": _RETURN, "jump": _JUMP, "goto": _GOTO}


def _compile_vmap(args: dict, index: dict[str, int], table=None, env: Netfilter | None = None) -> tuple:
    """An nft verdict map: a function finding the packet's entry, and the entries with their chains. A
    named map's entries are the table's as loaded (elements added after the rule was written too)."""
    raw = args["entries"]
    name = args.get("map")
    if name and table is not None and name in table.vmaps:
        key_type, raw = table.vmaps[name]
        if (
            args["key"] == "keys"
            and len(key_type.split(" . ")) == 1
            and key_type in ("ifname", "inet_service")
        ):
            raw = tuple(((value,), verdict, chain) for value, verdict, chain in raw)
    entries = []
    for value, verdict, chain in raw:
        kind = _VERDICT_KINDS.get(verdict, _CONTINUE)
        entries.append((value, kind, index.get(chain, -1) if chain else -1))
    key = args["key"]
    proto = args.get("proto")
    if key == "keys":
        return _keyed_vmap(args, tuple(entries))
    if key == "numgen":
        return _numgen_vmap(args, tuple(entries), env)

    def find(pkt, ctx, ifs, entries):
        if key == "ct_state":
            have = ctx.ctstate
            hit = next((e for e in entries if e[0] == have), None)
        elif key in ("iifname", "oifname"):
            name = ifs.inp if key == "iifname" else ifs.out
            hit = next(
                (e for e in entries if e[0] == name or (e[0].endswith("*") and name.startswith(e[0][:-1]))),
                None,
            )
        elif key == "l4proto":
            hit = next((e for e in entries if e[0] == pkt.proto), None)
        else:  # sport / dport of ``proto``
            if pkt.proto != proto or pkt.frag_offset or not pkt.has_l4:
                return None
            port = pkt.dport if key == "dport" else pkt.sport
            hit = next((e for e in entries if e[0][0] <= port <= e[0][1]), None)
        return None if hit is None else (hit[1], hit[2])

    return find, tuple(entries)


_VERDICT_WORDS = {_ACCEPT: "accept", _DROP: "drop", _RETURN: "return", _JUMP: "jump", _GOTO: "goto",
                  _CONTINUE: "continue"}  # fmt: skip


def _vmap_outcome(hit, chains) -> tuple[str, str | None] | None:
    if hit is None:
        return None
    kind, target = hit
    return _VERDICT_WORDS[kind], chains[target].name if target >= 0 else None


def _keyed_vmap(args: dict, entries: tuple) -> tuple:
    """``KEY [. KEY ...] vmap``: the entry found as a data map finds a value (``nft_sets.map_lookup``:
    the packet's key read as a set lookup reads it, exact keys first); no entry, nothing."""
    lookup = nft_sets.map_lookup(
        {"keys": tuple(args["keys"]), "elements": tuple(e[0] for e in entries), "values": entries}, None
    )

    def find(pkt, ctx, ifs, entries):
        hit = lookup(pkt, ctx, ifs)
        return None if hit is None else (hit[1], hit[2])

    return find, entries


def _numgen_vmap(args: dict, entries: tuple, env: Netfilter | None) -> tuple:
    """``numgen random|inc mod N [offset M] vmap`` (nft_numgen): random is ``reciprocal_scale`` of a
    random number (``(r * N) >> 32``) from the box's stream; inc counts per rule from N-1, so the
    first packet gets 0. Plus the offset; a number no entry holds finds nothing."""
    mod, offset = int(args["mod"]), int(args["offset"])
    if args["mode"] == "random":
        stream = env.random if env is not None else RandomStream()

        def draw() -> int:
            return ((stream.u32() * mod) >> 32) + offset
    else:
        counter = [mod - 1]

        def draw() -> int:
            counter[0] = counter[0] + 1 if counter[0] + 1 < mod else 0
            return counter[0] + offset

    def find(pkt, ctx, ifs, entries):
        n = draw()
        hit = next((e for e in entries if e[0][0] <= n <= e[0][1]), None)
        return None if hit is None else (hit[1], hit[2])

    return find, entries


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
        # addrtype: the box's own addresses (the local routing table) and directed broadcasts.
        self.local_addrs: dict[int, set[int]] = {4: {0x7F000001}, 6: {1}}
        self.local_by_dev: dict[str, set[int]] = {}
        self.broadcasts: set[int] = {0xFFFFFFFF, 0}
        for name, itf in policy.interfaces.items():
            mine = self.local_by_dev.setdefault(itf.hardware or name, set())
            for addr in itf.addresses():
                value = int(addr.ip)
                self.local_addrs[addr.version].add(value)
                mine.add(value)
                if addr.version == 4 and addr.network.prefixlen < 31:
                    self.broadcasts.add(int(addr.network.broadcast_address))
        # -m recent tables by name (xt_recent's, shared by every rule naming them): address -> times.
        self.recent: dict[tuple[int, str], dict[int, list[float]]] = {}
        # The random numbers of -m statistic --mode random and nft's numgen random: one stream for the
        # whole box, as the kernel's get_random_u32() is, but reproducible (``RandomStream``).
        self.random = RandomStream()
        # While packet-tracer listens: each verdict map's outcome, (rule, (verdict, chain) or None).
        self.vmap_seen: list | None = None
        self.sets = policy.nf_sets
        # nftables sets as the packet path changes them (dynamic elements, timeouts), by set key.
        self.nft_runtime: dict[str, nft_sets.RuntimeSet] = {}
        self._maps: dict[int, tuple] = {}  # id(map args) -> (args, compiled lookup)
        self._slot_cache: dict[tuple, list[tuple]] = {}
        # nftables base chains by family and hook: (priority, table, chain index, label, nat).
        self._nft_bases: dict[int, dict[str, list[tuple]]] = {4: {}, 6: {}}
        self._nft_compiled: list[tuple[str, _CTable]] = []
        # ingress chains: (id of the compiled table, chain index) -> the devices they are hooked on.
        self.ingress_devices: dict[tuple[int, int], frozenset[str]] = {}
        for table in policy.nft_tables:
            families = {"ip": (4,), "ip6": (6,), "inet": (4, 6)}.get(table.family or "inet", (4, 6))
            for fam in families:
                ct = self._compile(table, fam, loaded=fam == families[0])
                self._nft_compiled.append((f"{table.family} {table.name}", ct))
                for index, chain in enumerate(table.chains.values()):
                    if chain.hook is not None:
                        label = f"{table.family} {table.name}"
                        slot = (chain.priority or 0, ct, index, label, chain.kind == "nat")
                        self._nft_bases[fam].setdefault(chain.hook, []).append(slot)
                        if chain.hook == "INGRESS":
                            self.ingress_devices[(id(ct), index)] = frozenset(chain.devices)
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

    def _compile(self, table: NfTable, family: int, loaded: bool = True) -> _CTable:
        """Compile a table for one family; ``loaded``: start from the counters it was loaded with (an
        inet table's second family starts from zero, its counters are summed)."""
        order = list(table.chains)
        index = {name: i for i, name in enumerate(order)}
        chains = []
        for name in order:
            chain: NfChain = table.chains[name]
            start = chain.counters if loaded else (0, 0)
            cc = _CChain(name, chain.policy, pkts=start[0], bytes=start[1])
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
                elif t == "VMAP" and "entries" in rule.target_args:
                    kind, jump = _VMAP, -1
                elif t in index:
                    kind, jump = (_GOTO if rule.goto else _JUMP), index[t]
                else:
                    kind, jump = _EXT, -1
                cr = _CRule(
                    rule,
                    _compile_checks(rule, family, self),
                    kind,
                    jump,
                    rule.counters[0] if loaded else 0,
                    rule.counters[1] if loaded else 0,
                )
                if kind == _VMAP:
                    cr.vmap = _compile_vmap(rule.target_args, index, table, self)
                cc.rules.append(cr)
            chains.append(cc)
        return _CTable(table.name, chains, index)

    def _map(self, m: dict):
        found = self._maps.get(id(m))
        if found is None:
            found = self._maps[id(m)] = (m, nft_sets.map_lookup(m, self))
        return found[1]

    def nft_set(self, key: str) -> nft_sets.RuntimeSet | None:
        """The run-time state of the nftables set ``key`` ("family table name"), made on first use."""
        rt = self.nft_runtime.get(key)
        if rt is None and key in self.sets:
            rt = self.nft_runtime[key] = nft_sets.RuntimeSet(self.sets[key])
        return rt

    def nft_elements(self, now: float) -> dict[str, list[tuple[tuple, float | None, float | None]]]:
        """The elements the packet path put in or left in each dynamic or timeout set by ``now``:
        set key -> [(key values, timeout, seconds left)], for ``nft list ruleset`` after a replay."""
        out = {}
        for key, rt in self.nft_runtime.items():
            if {"dynamic", "timeout"} & set(rt.spec.flags) and not rt.spec.meter and rt.start is not None:
                out[key] = rt.elements(now)
        return out

    def device(self, name: str | None) -> str:
        """The device name rules match for a logical interface name (or the name itself)."""
        if name is None:
            return ""
        return self._devices.get(name, name)

    # -- evaluation --------------------------------------------------------------------------------

    def traverse(
        self, hook: str, pkt: Packet, ctx: Context, tables: tuple[str, ...] | None = None, nat: bool = False
    ) -> Decision:
        """Every base chain of ``hook`` by priority until one drops: the iptables tables' built-in
        chains (or those of the ``tables`` given) and the nftables base chains of the same side of
        conntrack as the ``tables`` given (all of them when None).

        nat chains (an iptables nat table, an nftables ``type nat`` chain) run only for a packet
        whose ctstate is NEW (or when ``nat`` says the connection's binding is not initialized yet,
        as for REJECT's reset), and only when ``tables`` includes "nat" (or is None). The decision is
        that of the last chain that ran (its rule, chain and table), with the actions of all of them.
        """
        actions: list[Action] = []
        last = Decision("ACCEPT", actions, None, hook, "")
        for slot in self._slots(hook, pkt.version, tables):
            d = self.run_slot(slot, hook, pkt, ctx, nat)
            if d is None:
                continue
            actions.extend(d.actions)
            last = Decision(d.verdict, actions, d.rule, d.chain, d.table)
            if d.verdict != "ACCEPT":
                return last
        return last

    def hook_slots(self, hook: str, family: int, tables: tuple[str, ...] | None) -> list[tuple]:
        """The base chains ``traverse`` runs for ``hook`` and ``tables``, in its order (packet-tracer
        runs them one at a time, ``run_slot``)."""
        return self._slots(hook, family, tables)

    def run_slot(
        self, slot: tuple, hook: str, pkt: Packet, ctx: Context, nat: bool = False
    ) -> Decision | None:
        """One base chain of ``hook_slots``: its decision, or None when it does not run for this packet
        (a nat chain for a packet that is not NEW, an ingress chain of another device)."""
        prio, ct, index, label, is_nat = slot
        if is_nat and ctx.ctstate != "NEW" and not nat:
            return None
        if hook == "INGRESS" and self.device(ctx.in_iface) not in self.ingress_devices[(id(ct), index)]:
            return None
        d = self._walk(ct, index, hook, label, pkt, ctx)
        if is_nat and d.actions:
            # nf_nat_setup_info sets IPS_DST_NAT / IPS_SRC_NAT on the connection as the nat table
            # binds it, so --ctstate DNAT/SNAT hold for the first packet's later hooks already.
            for a in d.actions:
                kind = _NAT_STATUS.get(a.kind)
                if kind == "NETMAP":
                    kind = "DNAT" if hook in ("PREROUTING", "OUTPUT") else "SNAT"
                if kind is not None and kind not in ctx.ct_nat:
                    ctx.ct_nat = ctx.ct_nat | {kind}
        return d

    def slot_rules(
        self, slot: tuple, family: int
    ) -> tuple[NfTable, str, dict[tuple[str, int], tuple[int, int]]]:
        """What packet-tracer reads of one base chain: the table it belongs to (an iptables table, or
        the nftables table its label names), the base chain's name, and the table's counters
        (``counters``' form)."""
        _prio, ct, index, label, _nat = slot
        if " " in label:  # an nftables table: "family name"
            table = next(t for t in self.policy.nft_tables if f"{t.family} {t.name}" == label)
        else:
            table = (self.policy.netfilter if family == 4 else self.policy.ip6_netfilter)[label]
        return table, ct.chains[index].name, _table_counters(ct)

    def _slots(self, hook: str, family: int, tables: tuple[str, ...] | None) -> list[tuple]:
        key = (hook, family, tables)
        slots = self._slot_cache.get(key)
        if slots is not None:
            return slots
        slots = []
        present = self._tables[family]
        for name in tables if tables is not None else HOOK_TABLES[hook]:
            ct = present.get(name)
            if ct is not None and hook in ct.index:
                slots.append((table_priority(name, hook), ct, ct.index[hook], name, name == "nat"))
        order = HOOK_TABLES[hook]
        phase = "all"
        if tables is not None and "conntrack" in order:
            at = order.index("conntrack")
            sides = {order.index(n) < at for n in tables if n in order and n != "conntrack"}
            phase = "pre" if sides == {True} else "post" if sides == {False} else "all"
        nat_ok = tables is None or "nat" in tables
        for prio, ct, index, label, nat in self._nft_bases[family].get(hook, ()):
            if phase == "pre" and prio >= CONNTRACK_PRIORITY or phase == "post" and prio < CONNTRACK_PRIORITY:
                continue
            if nat and not nat_ok:
                continue
            slots.append((prio, ct, index, label, nat))
        slots.sort(key=lambda s: s[0])  # stable: iptables tables first at equal priority
        self._slot_cache[key] = slots
        return slots

    def evaluate(self, hook: str, table: str, pkt: Packet, ctx: Context) -> Decision:
        """Walk the iptables ``table``'s built-in chain for ``hook`` as ipt_do_table does."""
        ct = self._tables[pkt.version].get(table)
        if ct is None or hook not in ct.index:
            return Decision("ACCEPT", [], None, hook, table)
        return self._walk(ct, ct.index[hook], hook, table, pkt, ctx)

    def _walk(self, ct: _CTable, start: int, hook: str, table: str, pkt: Packet, ctx: Context) -> Decision:
        """One base chain and the chains it jumps to (ipt_do_table, nft_do_chain)."""
        ifs = _Iface(self.device(ctx.in_iface), self.device(ctx.out_iface))
        chains = ct.chains
        base = chains[start]
        chain = base
        i = 0
        stack: list[tuple[_CChain, int]] = []
        actions: list[Action] = []
        size = pkt.total_len
        while True:
            rules = chain.rules
            if i >= len(rules):
                if stack and chain is not base:
                    if ctx.trace:
                        self._trace(table, chain.name, "return", len(rules) + 1, None, pkt, ifs, ctx, actions)
                    chain, i = stack.pop()
                    continue
                if ctx.trace:
                    self._trace(table, base.name, "policy", len(base.rules) + 1, None, pkt, ifs, ctx, actions)
                return self._policy(base, size, actions, table)
            cr = rules[i]
            i += 1
            for check in cr.checks:
                if not check(pkt, ctx, ifs):
                    break
            else:
                cr.pkts += 1
                cr.bytes += size
                if ctx.trace:
                    self._trace(table, chain.name, "rule", i, cr.rule, pkt, ifs, ctx, actions)
                if cr.rule.statements:
                    # An nft rule's statements act in order before its verdict; a data map without
                    # the packet's key stops the rule there (NFT_BREAK).
                    verdict = None
                    counted = size
                    stopped_at = 0
                    for name, args in cr.rule.statements:
                        verdict = self._target(cr.rule, pkt, ctx, ifs, actions, name, args)
                        if verdict is not None:
                            break
                        stopped_at += 1
                    size = pkt.total_len
                    if verdict == BREAK:
                        if _counter_after(cr.rule, stopped_at):  # the counter statement was never reached
                            cr.pkts -= 1
                            cr.bytes -= counted
                        continue
                    if verdict is not None:
                        return Decision(verdict, actions, cr.rule, chain.name, table)
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
                if kind == _VMAP:
                    key, entries = cr.vmap
                    hit = key(pkt, ctx, ifs, entries)
                    if self.vmap_seen is not None:  # packet-tracer reads which entry took the packet
                        self.vmap_seen.append((cr.rule, _vmap_outcome(hit, chains)))
                    if hit is None:
                        continue
                    vkind, target = hit
                    if vkind == _CONTINUE:
                        continue
                    if vkind == _ACCEPT:
                        return Decision("ACCEPT", actions, cr.rule, chain.name, table)
                    if vkind == _DROP:
                        return Decision("DROP", actions, cr.rule, chain.name, table)
                    if vkind == _RETURN:
                        if stack:
                            chain, i = stack.pop()
                            continue
                        return self._policy(base, size, actions, table)
                    if vkind == _JUMP:
                        stack.append((chain, i))
                    chain, i = chains[target], 0
                    continue
                verdict = self._target(cr.rule, pkt, ctx, ifs, actions)
                if verdict is not None and verdict != BREAK:
                    return Decision(verdict, actions, cr.rule, chain.name, table)
                size = pkt.total_len  # TCPMSS may have grown the packet

    def _trace(
        self,
        table: str,
        chain: str,
        kind: str,
        number: int,
        rule: NfRule | None,
        pkt: Packet,
        ifs: _Iface,
        ctx: Context,
        actions: list[Action],
    ) -> None:
        """ip_tables.c trace_packet: ``TRACE: table:chain:rule|return|policy:N`` and the packet, logged
        with every flag (nf_log's trace_loginfo: NF_LOG_DEFAULT_MASK), at level 4."""
        prefix = f"TRACE: {table}:{chain}:{kind}:{number} "
        text = log_line(pkt, prefix, ifs.inp or None, ifs.out or None, ctx.mac, 0x07)
        actions.append(Action("LOG", {"text": text, "level": 4, "trace": True}, rule or _TRACE_RULE))

    def _policy(self, base: _CChain, size: int, actions: list[Action], table: str) -> Decision:
        base.pkts += 1
        base.bytes += size
        return Decision(base.policy or "ACCEPT", actions, None, base.name, table)

    def _target(
        self,
        rule: NfRule,
        pkt: Packet,
        ctx: Context,
        ifs: _Iface,
        actions: list[Action],
        t: str | None = None,
        a: dict | None = None,
    ) -> str | None:
        """Run a target extension (the rule's, or the statement ``t`` with ``a``); a verdict ends
        the table, None continues with the next rule."""
        if t is None:
            t = rule.target
            a = rule.target_args
        assert a is not None
        if "map" in a and a["map"]:
            # An nft data map gives the statement its value: the packet's entry, or the rule stops.
            found = self._map(a["map"])(pkt, ctx, ifs)
            if found is None:
                return BREAK
            a = _mapped(t, a, found)
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
            return self._tcpmss(rule, pkt, ctx, actions, a)
        if t == "MARK":
            # xt_mark.c mark_tg: skb->mark = (skb->mark & ~mask) ^ value.
            ctx.mark = (ctx.mark & ~int(a["mask"]) & 0xFFFFFFFF) ^ int(a["value"])
            return None
        if t == "CONNMARK":
            # xt_connmark.c connmark_tg_shift without shifts.
            mode = a["mode"]
            if mode == "set":
                ctx.ct_mark = (ctx.ct_mark & ~int(a["mask"]) & 0xFFFFFFFF) ^ int(a["value"])
            elif mode == "save":
                ctx.ct_mark = (ctx.ct_mark & ~int(a["ctmask"]) & 0xFFFFFFFF) ^ (ctx.mark & int(a["nfmask"]))
            else:
                ctx.mark = (ctx.mark & ~int(a["nfmask"]) & 0xFFFFFFFF) ^ (ctx.ct_mark & int(a["ctmask"]))
            return None
        if t == "NFLOG":
            # The packet goes to userspace (nfnetlink_log); ulogd's LOGEMU writes this same line.
            text = log_line(pkt, str(a.get("prefix", "")), ifs.inp or None, ifs.out or None, ctx.mac, 0)
            actions.append(
                Action("LOG", {"text": text, "level": 4, "nflog_group": int(a.get("group", 0))}, rule)
            )
            return None
        if t == "TRACE":
            ctx.trace = True  # xt_TRACE: skb->nf_trace = 1
            return None
        if t == "CHECKSUM":
            return None  # not modelled (warned at load): a partial checksum stays partial
        if t == "REJECT":
            w = str(a["with"])
            if w in NF_REJECT_ICMPX:
                w = NF_REJECT_ICMPX[w][pkt.version]
            actions.append(Action("REJECT", {"with": w, "reply": NF_REJECT_REPLIES[w]}, rule))
            return "DROP"
        if t in ("SNAT", "DNAT", "MASQUERADE", "REDIRECT", "NETMAP"):
            addresses = a.get("addresses")
            if addresses and addresses[0].version != pkt.version:
                # An inet table's translation to the other family (snat ip6 to, dnat ip to): the
                # kernel's nat expression does nothing to this packet (nft_nat_inet_eval) and the
                # rule goes on.
                return None
            actions.append(Action(t, dict(a), rule))
            return "ACCEPT"
        if t in ("CT", "NOTRACK", "FLOW_OFFLOAD", "CTTIMEOUT"):
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

    def _tcpmss(self, rule: NfRule, pkt: Packet, ctx: Context, actions: list[Action], a: dict) -> str | None:
        """xt_TCPMSS (reference B.5): lower an MSS above the target value, add one when absent."""
        if pkt.frag_offset or pkt.proto != PROTO_TCP or not pkt.has_l4:
            return None
        v6 = pkt.version == 6
        if a.get("clamp"):
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
            newmss = int(a["mss"])
        old = pkt.mss()
        if old is not None:
            # "Never increase MSS, even when setting it."
            if old <= newmss:
                return None
            pkt.set_mss(newmss)
            actions.append(Action("TCPMSS", {"old": old, "new": newmss, "added": False}, rule))
            return None
        # No MSS option: RFC 879's default applies; add one only to a SYN without data and with room.
        # nftables' "tcp option maxseg size set" only rewrites an option that is there (nft_exthdr).
        if pkt.payload_len or pkt.doff >= 60 or a.get("nft"):
            return None
        value = min(newmss, 1220 if v6 else 536)
        if pkt.insert_tcp_option(craft.tcp_option_mss(value)):
            actions.append(Action("TCPMSS", {"old": None, "new": value, "added": True}, rule))
        return None

    # -- counters ----------------------------------------------------------------------------------

    def nft_counters(self) -> dict[tuple[str, str, int], tuple[int, int]]:
        """nftables rules' ``(table label, chain, rule index) -> (packets, bytes)``, both families of an
        inet table summed (the kernel has one rule)."""
        out: dict[tuple[str, str, int], tuple[int, int]] = {}
        for label, ct in self._nft_compiled:
            for chain in ct.chains:
                for i, cr in enumerate(chain.rules):
                    p, b = out.get((label, chain.name, i), (0, 0))
                    out[(label, chain.name, i)] = (p + cr.pkts, b + cr.bytes)
        return out

    def counters(self, table: str, family: int = 4) -> dict[tuple[str, int], tuple[int, int]]:
        """``(chain, rule index) -> (packets, bytes)``, index -1 for a built-in chain's policy."""
        ct = self._tables[family].get(table)
        return {} if ct is None else _table_counters(ct)


def _table_counters(ct: _CTable) -> dict[tuple[str, int], tuple[int, int]]:
    out: dict[tuple[str, int], tuple[int, int]] = {}
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
