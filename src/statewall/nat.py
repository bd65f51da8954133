"""NAT: translation rules compiled from the policy, the xlate table and port allocation.

Owns every translation slot (``Xlate``), the mapped addresses and ports in use, and the one port
allocator both dialects use. The engine asks two questions for a new flow: ``untranslate_destination``
(UN-NAT: does a rule own the destination the initiator used?) and ``translate_source`` (which mapped
address and port does the initiator get?), passing the first answer to the second so that a twice NAT
rule translates both ends of the flow it matched.

Rules are evaluated in the ASA's order, first match wins (``asa_order``): ASA 8.2 rules by kind (``nat
0`` exemption, then statics, then dynamic ``nat``/``global``), then ASA 8.3+ section 1 (manual, twice
NAT, in configuration order), section 2 (object NAT: statics before dynamics, fewer real addresses
first, then the lower address, then the object's name) and section 3 (``after-auto`` manual rules). A
static rule is bidirectional: its mapped side owns destinations (UN-NAT) unless ``unidirectional``; a
twice NAT rule with a ``destination`` matches only packets sent to its mapped destination.

Connections hold references to their xlates; an xlate's idle timer starts only when its last connection
is gone (ASA behaviour, reference A.3): ``timeout pat-xlate`` (0:00:30) for PAT slots and ``timeout
xlate`` (3:00:00) for dynamic one-to-one slots. Static translations never expire.

Mappings are endpoint-independent (RFC 4787 REQ-1, RFC 5382 REQ-1): the same real address and port keep
the same mapped address and port whatever the destination, for as long as the slot lives. The real
source port is kept when it is free, as Linux and the ASA both do; otherwise a port is taken from the
same range class (1-511, 512-1023, 1024-65535), so a privileged source port stays privileged. Dynamic
pools hand out one address per host from their ranges and fall back to PAT on their single addresses
and the interface; an exhausted pool raises ``NatFailure`` (the engine drops with NAT_FAILED, 305006).

Linux's NAT (``nf_nat``: SNAT, MASQUERADE, DNAT, REDIRECT, NETMAP bindings, one per connection) is
``statewall.nf_nat``; it shares ``Xlate``, ``NatFailure`` and the port search (``_search``) with this
module.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, filterfalse, islice

from .acl import CompiledMatch
from .interning import Interner
from .packet import addr_to_str
from .policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, NatRule, Policy

# The ASA keeps a mapped port in the real port's class; Linux's classes differ below 1024 (see
# ``_nf_port_class``).
_PORT_CLASSES = ((1, 511), (512, 1023), (1024, 65535))
_PORT_PROTOCOLS = frozenset({PROTO_TCP, PROTO_UDP, 132, 33})  # TCP, UDP, SCTP, DCCP
_ICMP_PROTOCOLS = frozenset({PROTO_ICMP, PROTO_ICMPV6})
_M32 = 0xFFFFFFFF
# nf_nat_core.c: at most this many ports are tried before the search window is halved.
NF_NAT_MAX_ATTEMPTS = 128


def _port_class(port: int) -> tuple[int, int]:
    if 1024 <= port <= 65535:
        return 1024, 65535  # the usual case: an ephemeral port
    for lo, hi in _PORT_CLASSES:
        if lo <= port <= hi:
            return lo, hi
    return 1024, 65535


def _search(
    lo: int, hi: int, start: int, taken: Callable[[int], bool], attempts: int | None = None
) -> int | None:
    """The first port of ``lo..hi`` not ``taken``, trying from offset ``start`` upward and wrapping; at
    most ``attempts`` ports are tried (None: the whole range). The one allocator loop of this module.

    The ports are tried in C (``filterfalse`` over two ranges), not by a Python loop: when several
    hosts share ephemeral ports a PAT address's busy stretches are long (tens of ports per search at
    ~25 000 translations on one address), and each Python iteration cost ~0.15 µs.
    """
    size = hi - lo + 1
    if size <= 0:
        return None
    first = lo + start % size
    order = chain(range(first, hi + 1), range(lo, first))
    if attempts is not None and attempts < size:
        order = islice(order, max(attempts, 0))
    return next(filterfalse(taken, order), None)


_WORD = (1 << 64) - 1


class PortSet:
    """The mapped ports (or ICMP identifiers) in use on one address: a bitmap of 1024 words of 64 ports
    and a summary with a bit per full word. Adding, removing and finding the next free port from any
    point (``next_free``) cost the same however many ports are taken: a few word operations, never a
    walk over the taken ones (a scan fell from ~7 500 to ~130 new connections per second at 90 % of
    one address's ports; ``bench/pat.py``)."""

    __slots__ = ("words", "full", "count")

    def __init__(self, ports: Iterable[int] = ()) -> None:
        self.words = [0] * 1024
        self.full = 0  # bit w: words[w] has all 64 ports taken
        self.count = 0
        for p in ports:
            self.add(p)

    def __contains__(self, port: int) -> bool:
        return bool((self.words[port >> 6] >> (port & 63)) & 1)

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        for w, word in enumerate(self.words):
            while word:
                low = word & -word
                yield (w << 6) + low.bit_length() - 1
                word ^= low

    def add(self, port: int) -> None:
        w = port >> 6
        bit = 1 << (port & 63)
        word = self.words[w]
        if not word & bit:
            word |= bit
            self.words[w] = word
            self.count += 1
            if word == _WORD:
                self.full |= 1 << w

    def discard(self, port: int) -> None:
        w = port >> 6
        bit = 1 << (port & 63)
        word = self.words[w]
        if word & bit:
            if word == _WORD:
                self.full &= ~(1 << w)
            self.words[w] = word ^ bit
            self.count -= 1

    def next_free(self, start: int, end: int) -> int | None:
        """The lowest free port of ``start..end``, or None."""
        if start > end:
            return None
        w = start >> 6
        free = ~self.words[w] & _WORD & ~((1 << (start & 63)) - 1)
        if not free:
            rest = ~self.full >> (w + 1)  # the words after w that are not full (bits past 1023 too)
            w += (rest & -rest).bit_length()
            if w >= 1024:
                return None
            free = ~self.words[w] & _WORD
        port = (w << 6) + (free & -free).bit_length() - 1
        return port if port <= end else None

    def search(self, lo: int, hi: int, start: int) -> int | None:
        """``_search`` over this set: the first free port of ``lo..hi`` from offset ``start``, wrapping."""
        size = hi - lo + 1
        if size <= 0:
            return None
        first = lo + start % size
        port = self.next_free(first, hi)
        return port if port is not None else self.next_free(lo, first - 1)


# A shard of a sharded replay (statewall.scale) hands out the ports of its own blocks only: block b =
# port >> 9 (512 ports: the size of the ASA's PAT port blocks, ``xlate block-allocation size`` default;
# blocks 0 and 1 are exactly its privileged classes 1-511 and 512-1023) belongs to shard b % count, as
# an ASA cluster gives each unit PAT port blocks of its own. Two shards translating to one address then
# never choose the same port, and a translated reply names its shard by its destination port.
PORT_BLOCK_BITS = 9


def port_owner(port: int, count: int) -> int:
    """The shard whose blocks hold ``port`` (a PAT port or ICMP identifier) when ``count`` share them."""
    return (port >> PORT_BLOCK_BITS) % count


def _own_ranges(lo: int, hi: int, first: int, index: int, count: int) -> Iterator[tuple[int, int]]:
    """The stretches ``(start, end)`` of ``lo..hi`` in shard ``index``'s blocks, from ``first`` upward,
    wrapping to ``lo``."""
    size = 1 << PORT_BLOCK_BITS
    for a, b in ((first, hi), (lo, first - 1)):
        block = a >> PORT_BLOCK_BITS
        while a <= b:
            end = min(b, (block + 1) * size - 1)
            if block % count == index:
                yield a, end
            block += 1
            a = end + 1


def _all(version: int) -> int:
    return (1 << (32 if version == 4 else 128)) - 1


class Xlate:
    """One translation slot: real (interface, address, port) <-> mapped (interface, address, port).

    ``kind`` is ``static`` or ``dynamic`` (the words of 305011) or ``nf`` (an iptables mapping, one per
    connection); ``flags`` are ``show xlate``'s (``ri`` PAT, ``i`` dynamic NAT, ``s`` static, ``r``
    port-mapped, ``I`` identity, ``T`` twice).

    Memory (a million idle connections, docs/performance.md): what many translations have in common
    (``kind``, ``version``, ``proto``, the two interfaces, ``pat``, ``rule``, ``timeout``, ``flags``,
    ``entry``) is one tuple shared by every translation with the same values (``_shared``), read
    through properties; a translation keeps only its addresses, ports, counters, times and key. None of
    these is written after the translation is made but ``refcount`` and ``idle_since``.
    """

    __slots__ = ("_c", "real_addr", "real_port", "mapped_addr", "mapped_port", "refcount", "created",
                 "idle_since", "key")  # fmt: skip

    def __init__(
        self,
        kind,
        version,
        proto,
        real_iface,
        real_addr,
        real_port,
        mapped_iface,
        mapped_addr,
        mapped_port,
        pat,
        rule,
        created,
        timeout,
        key,
        flags="",
        entry=None,
    ):
        self._c = _shared(kind, version, proto, real_iface, mapped_iface, pat, rule, timeout, flags, entry)
        self.real_addr = real_addr
        self.real_port = real_port
        self.mapped_addr = mapped_addr
        self.mapped_port = mapped_port
        self.refcount = 0
        self.created = created
        self.idle_since = created
        self.key = key

    kind = property(lambda self: self._c[0])
    version = property(lambda self: self._c[1])
    proto = property(lambda self: self._c[2])
    real_iface = property(lambda self: self._c[3])
    mapped_iface = property(lambda self: self._c[4])
    pat = property(lambda self: self._c[5])
    rule = property(lambda self: self._c[6])
    timeout = property(lambda self: self._c[7])
    flags = property(lambda self: self._c[8])
    entry = property(lambda self: self._c[9])

    def __setstate__(self, state) -> None:
        # A pickle (state snapshot) holds ``(None, {slot: value})``; one written before the shared tuple
        # (format version 1) names the shared fields one by one.
        slots = state[1] if isinstance(state, tuple) else state
        if "_c" not in slots:
            slots = dict(slots)
            slots["_c"] = _shared(*(slots.pop(n, None) for n in _SHARED_FIELDS))
        for name, value in slots.items():
            object.__setattr__(self, name, value)


# (events.xlate_event reads the shared tuple by these positions.)
_SHARED_FIELDS = ("kind", "version", "proto", "real_iface", "mapped_iface", "pat", "rule", "timeout", "flags",
                  "entry")  # fmt: skip
# Xlate's shared tuples, by their values (the rule and the entry by identity: the tuple holds them, so
# their ids stay theirs while it is kept); bounded, past the bound sharing starts over.
_SHARED: dict = {}


def _shared(kind, version, proto, real_iface, mapped_iface, pat, rule, timeout, flags, entry) -> tuple:
    k = (kind, version, proto, real_iface, mapped_iface, pat, id(rule), timeout, flags, id(entry))
    got = _SHARED.get(k)
    if got is None:
        if len(_SHARED) >= 4096:
            _SHARED.clear()
        got = _SHARED[k] = (kind, version, proto, real_iface, mapped_iface, pat, rule, timeout, flags, entry)
    return got


# A PAT translation's key: ``(("pat", rule order, version, proto, real interface, mapped interface),
# real address, real port)``, the first tuple shared by every translation of one rule, protocol and pair
# of interfaces (memory: 64 bytes a key instead of the 104 of one flat 8-tuple, which state snapshots of
# format version 1 hold; ``pat_key_of_v1`` reads theirs).
_pat_prefix = Interner(1 << 12)


def pat_key(order, version, proto, in_iface, src, sport, out_iface) -> tuple:
    return (_pat_prefix(("pat", order, version, proto, in_iface, out_iface)), src, sport)


def pat_key_of_v1(key: tuple) -> tuple:
    """The key of format version 1's ``("pat", order, version, proto, in_iface, src, sport, out_iface)``;
    any other key as it is."""
    if len(key) == 8 and key[0] == "pat":
        _, order, version, proto, in_iface, src, sport, out_iface = key
        return pat_key(order, version, proto, in_iface, src, sport, out_iface)
    return key


class NatFailure(Exception):
    """No mapped address or port could be found (pool exhausted).

    ``xlate_kind`` is the word 305006 starts with: ``portmap`` (PAT) or ``regular`` (dynamic NAT).
    ``rule`` is the rule that applied (a ``NatRule``, or an ``NfRule`` for iptables); it has ``origin``.
    """

    def __init__(self, rule, message: str, xlate_kind: str = "portmap", **detail) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.xlate_kind = xlate_kind
        self.detail = detail  # more fields for the drop's message (block_limit: 305016)


# --------------------------------------------------------------------------------------------------
# Compiled rules


class _Addrs:
    """An ordered set of addresses of one IP version as inclusive spans; the n-th address of a real side
    maps to the n-th of its mapped side (wrapping when the sides differ in size, as the ASA's
    many-to-few and few-to-many statics do)."""

    __slots__ = ("version", "spans", "size")

    def __init__(self, version: int, spans: list[tuple[int, int]]) -> None:
        self.version = version
        self.spans = spans
        self.size = sum(hi - lo + 1 for lo, hi in spans)

    @classmethod
    def of(cls, nets: Iterable) -> _Addrs | None:
        spans: list[tuple[int, int]] = []
        version = 0
        for n in nets:
            version = n.version
            spans.append((int(n.network_address), int(n.broadcast_address)))
        return cls(version, spans) if spans else None

    def index(self, addr: int) -> int | None:
        base = 0
        for lo, hi in self.spans:
            if lo <= addr <= hi:
                return base + addr - lo
            base += hi - lo + 1
        return None

    def at(self, i: int) -> int:
        i %= self.size
        for lo, hi in self.spans:
            n = hi - lo + 1
            if i < n:
                return lo + i
            i -= n
        raise IndexError(i)  # unreachable: i < size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Addrs) and (self.version, self.spans) == (other.version, other.spans)

    __hash__ = None  # type: ignore[assignment]


def _map(src: _Addrs | None, dst: _Addrs | None, addr: int) -> int | None:
    """``addr`` of ``src`` carried to ``dst`` by position; None when ``src`` does not hold it. A side
    that is None is "any": the address stays."""
    if src is None:
        return addr
    i = src.index(addr)
    if i is None:
        return None
    return addr if dst is None else dst.at(i)


class _Entry:
    """One rule compiled for matching. ``real_iface``/``mapped_iface`` None mean any interface."""

    __slots__ = (
        "rule",
        "order",
        "kind",
        "real_iface",
        "mapped_iface",
        "version",
        "real",
        "mapped",
        "proto",
        "real_port",
        "mapped_port",
        "has_dst",
        "dst_real",
        "dst_mapped",
        "dport_real",
        "dport_mapped",
        "selectors",
        "match",
        "nat_addrs",
        "pat_addrs",
        "interface",
        "pba",
        "pat_pool",
        "round_robin",
        "port_range",
        "rr",
        "sticky",
        "bidirectional",
        "identity",
        "route_lookup",
        "twice",
    )

    def __init__(self, rule: NatRule, order: int) -> None:
        self.rule = rule
        self.order = order
        self.kind = rule.kind
        self.real_iface = rule.real_interface if rule.real_interface not in ("", "any") else None
        self.mapped_iface = rule.mapped_interface if rule.mapped_interface not in (None, "", "any") else None
        self.version: int | None = None
        self.real: _Addrs | None = None
        self.mapped: _Addrs | None = None
        self.proto = rule.protocol
        self.real_port = rule.real_port
        self.mapped_port = rule.mapped_port
        self.has_dst = False
        self.dst_real: _Addrs | None = None
        self.dst_mapped: _Addrs | None = None
        self.dport_real = rule.destination_real_port
        self.dport_mapped = rule.destination_mapped_port
        self.selectors: list[tuple[bool, CompiledMatch]] | None = None
        self.match = CompiledMatch(rule.match) if rule.match is not None else None
        self.nat_addrs: list[tuple[int, int]] = []
        self.pat_addrs: list[tuple[int, int]] = []
        self.interface = False
        # pat-pool OBJ block-allocation: ports from per-host blocks, their xlates not logged (305014/15).
        self.pba = rule.pool is not None and rule.pool.block_allocation
        self.pat_pool = False
        self.round_robin = False
        self.port_range: tuple[int, int] | None = None
        self.rr = 0
        self.sticky: dict[tuple[int, int], list] = {}  # (version, real host) -> [mapped addr, xlates]
        self.bidirectional = rule.kind == "static" and not rule.unidirectional
        self.identity = False
        self.route_lookup = rule.route_lookup
        self.twice = rule.section in (1, 3)

    def flags(self, pat: bool) -> str:
        if self.kind == "static":
            f = "s" + ("r" if pat else "") + ("I" if self.identity else "")
        else:
            f = "ri" if pat else "i"
        return f + ("T" if self.twice else "")


class _Hit(tuple):
    """UN-NAT's answer: ``(real_dst, real_dport, egress, hit)`` where ``hit.rule`` is the rule.

    ``reverse``: a static rule's mapped side owned the destination (the flow runs from mapped to real);
    otherwise a twice NAT rule's destination matched a flow from its real side. ``xlate`` is set when a
    live dynamic NAT slot owned the destination instead of a rule.
    """

    __slots__ = ()

    def __new__(cls, real_dst: int, real_dport: int, egress: str | None, hit: _Match):
        return super().__new__(cls, (real_dst, real_dport, egress, hit))


@dataclass(slots=True)
class _Match:
    entry: _Entry | None
    reverse: bool
    xlate: Xlate | None = None

    @property
    def rule(self):
        return self.entry.rule if self.entry is not None else self.xlate.rule  # type: ignore[union-attr]


def _kind_rank(rule: NatRule) -> int:
    return {"exempt": 0, "static": 1}.get(rule.kind, 2)


def _object_key(rule: NatRule) -> tuple:
    """Section 2's order: statics first, then fewer real addresses, lower first address, object name."""
    size = sum(n.num_addresses for n in rule.real) if rule.real else 1 << 128
    first = min((int(n.network_address) for n in rule.real), default=0)
    return (0 if rule.kind == "static" else 1, size, first, rule.real_object or "")


def asa_order(rules: Iterable[NatRule]) -> list[NatRule]:
    """``rules`` in the order the ASA evaluates them (see the module docstring); stable otherwise."""
    rules = list(rules)
    legacy = sorted((r for r in rules if r.section == 0), key=_kind_rank)
    manual = [r for r in rules if r.section == 1]
    auto = sorted((r for r in rules if r.section == 2), key=_object_key)
    after = [r for r in rules if r.section == 3]
    other = [r for r in rules if r.section not in (0, 1, 2, 3)]
    return [*legacy, *manual, *auto, *after, *other]


def _pool_addresses(rule: NatRule) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(one-to-one addresses, PAT addresses) of a dynamic rule's pool, each as (version, address)."""
    pool = rule.pool
    nat: list[tuple[int, int]] = []
    pat: list[tuple[int, int]] = []
    if pool is None:
        return nat, pat
    ranges = list(pool.ranges)
    if not ranges:
        for net in pool.addresses:
            ranges.append((net.network_address, net.broadcast_address))
    for lo, hi in ranges:
        into = pat if (lo == hi or pool.pat_pool) else nat
        for a in range(int(lo), int(hi) + 1):
            into.append((lo.version, a))
    return nat, pat


# --------------------------------------------------------------------------------------------------
# The table


class PortBlock:
    """A block of ports of a mapped address held by one real host (port block allocation)."""

    __slots__ = (
        "version",
        "real_iface",
        "real_addr",
        "mapped_iface",
        "mapped_addr",
        "start",
        "end",
        "in_use",
    )

    def __init__(self, version, real_iface, real_addr, mapped_iface, mapped_addr, start, end) -> None:
        self.version = version
        self.real_iface = real_iface
        self.real_addr = real_addr
        self.mapped_iface = mapped_iface
        self.mapped_addr = mapped_addr
        self.start = start
        self.end = end
        self.in_use = 0  # translations holding a port of it


class PbaTick:
    """The next round of port block interim logging (``xlate block-allocation pba-interim-logging
    SECONDS``, 305017), queued on the engine's timers at ``due``."""

    __slots__ = ("due",)

    def __init__(self, due: float) -> None:
        self.due = due


class NatTable:
    def __init__(self, policy: Policy, iface_address) -> None:
        # iface_address(iface, version, near) -> int | None: the interface's own address for PAT.
        self._iface_address = iface_address
        self.timeouts = policy.timeouts
        self.entries: list[_Entry] = []
        self.xlates: dict[tuple, Xlate] = {}
        self._mapped_in_use: dict[tuple[int, int, int], PortSet] = {}  # (version, proto, addr) -> ports
        self._hosts_in_use: set[tuple[int, int]] = set()  # dynamic one-to-one mapped addresses
        self._nat_hosts: dict[tuple[int, str, int], Xlate] = {}  # (version, mapped iface, addr)
        self.most_used = 0
        self.port_share: tuple[int, int] | None = None  # (shard, shards) of a sharded replay: PORT_BLOCK_BITS
        # Port block allocation (``pat-pool OBJ block-allocation``; ``xlate block-allocation``): the blocks
        # of each mapped address, (version, address) -> {first port: PortBlock}; each host's blocks on
        # an address, (version, real address, mapped address) -> [first ports]; and the blocks allocated
        # and released since the engine last took them (``take_block_events``: 305014/305015).
        self.pba_size = policy.port_blocks.size
        self.pba_max = policy.port_blocks.max_per_host
        self._pba_blocks: dict[tuple[int, int], dict[int, PortBlock]] = {}
        self._pba_hosts: dict[tuple[int, int, int], list[int]] = {}
        self.pba_events: list[tuple[bool, PortBlock]] = []
        # Interim logging: every ``pba_interim`` seconds each block held is logged again (305017);
        # ``pba_tick`` is the round queued on the engine's timers (None while no block is held).
        self.pba_interim = policy.port_blocks.interim_logging
        self.pba_tick: PbaTick | None = None
        for order, rule in enumerate(asa_order(policy.nat_rules)):
            if rule.inactive:
                continue
            self._compile(rule, order, policy)

    def _compile(self, rule: NatRule, order: int, policy: Policy) -> None:
        e = _Entry(rule, order)
        if rule.acl is not None:
            # The access list selects the traffic (ASA 8.2 nat 0 / policy NAT / policy static): the
            # first matching entry decides, permit = the rule applies.
            acl = policy.access_lists.get(rule.acl)
            e.selectors = [
                (ace.action == "permit", CompiledMatch(ace.match))
                for ace in (acl.rules if acl is not None else [])
                if not ace.inactive
            ]
        e.real = _Addrs.of(rule.real)
        if e.real is None and rule.kind == "static" and rule.acl is not None:
            # ASA 8.2 policy static: the real host is the access list's source (the same in every entry).
            acl = policy.access_lists.get(rule.acl)
            for ace in acl.rules if acl is not None else []:
                if ace.action == "permit" and not ace.inactive and ace.match.sources:
                    e.real = _Addrs.of(ace.match.sources[:1])
                    break
        if e.real is not None:
            e.version = e.real.version
        if rule.kind == "static":
            mapped = list(rule.mapped)
            if not mapped and rule.pool is not None and rule.pool.interface:
                # ``static (dmz,outside) tcp interface www ...`` / ``static interface service ...``: the
                # mapped side is the mapped interface's own address (port forwarding to the box).
                version = e.version or 4
                a = self._iface_address(e.mapped_iface or "", version, None)
                if a is None:
                    return
                mapped = [ipaddress.ip_network((a, 32 if version == 4 else 128))]
            e.mapped = _Addrs.of(mapped) if mapped else e.real
            if e.mapped is not None and e.version is None:
                e.version = e.mapped.version
            e.identity = e.mapped == e.real and e.mapped_port == e.real_port
            if (
                e.mapped is not None
                and e.mapped.size == 1
                and e.mapped_port is not None
                and e.proto is not None
            ):
                # A static port mapping owns its mapped port: PAT never hands it out.
                self._ports(e.mapped.version, e.proto, e.mapped.spans[0][0]).add(e.mapped_port)
        elif rule.kind == "dynamic":
            pool = rule.pool
            e.nat_addrs, e.pat_addrs = _pool_addresses(rule)
            e.interface = pool is None or pool.interface
            if pool is not None:
                e.pat_pool = pool.pat_pool
                e.round_robin = pool.round_robin
                if pool.flat:
                    e.port_range = (1, 65535) if pool.include_reserve else (1024, 65535)
        if rule.destination_mapped or rule.destination_real or rule.destination_interface:
            e.has_dst = True
            dmapped = list(rule.destination_mapped)
            if rule.destination_interface:
                # ``destination static interface REAL``: the original packet arrives on the real
                # interface addressed to that interface (Cisco: the option needs a specific real
                # interface, FTD's interfaceInOriginalDestination its sourceInterface).
                version = e.version or (rule.destination_real[0].version if rule.destination_real else 4)
                a = self._iface_address(e.real_iface or "", version, None)
                if a is None:
                    return
                dmapped = [ipaddress.ip_network((a, 32 if version == 4 else 128))]
            e.dst_mapped = _Addrs.of(dmapped)
            e.dst_real = _Addrs.of(rule.destination_real) or e.dst_mapped
            if e.dst_mapped is None:
                e.dst_mapped = e.dst_real
            if e.version is None and e.dst_real is not None:
                e.version = e.dst_real.version
            e.identity = e.identity and e.dst_real == e.dst_mapped and e.dport_real == e.dport_mapped
        elif e.dport_mapped is not None:
            e.has_dst = True  # a destination service alone: any destination, its port translated
        self.entries.append(e)

    def _ports(self, version: int, proto: int, addr: int) -> PortSet:
        key = (version, proto, addr)
        used = self._mapped_in_use.get(key)
        if used is None:
            used = self._mapped_in_use[key] = PortSet()
        return used

    # ---------------------------------------------------------------------------------------------
    # Matching

    @staticmethod
    def _selected(e: _Entry, version, proto, src, sport, dst, dport) -> bool:
        if e.match is not None and not e.match.matches(version, proto, src, sport, dst, dport, 0, 0):
            return False
        if e.selectors is None:
            return True
        for permit, match in e.selectors:
            if match.matches(version, proto, src, sport, dst, dport, 0, 0):
                return permit
        return False

    @staticmethod
    def _real_side(e: _Entry, version, proto, in_iface, src, sport) -> bool:
        """Does a flow from ``src``/``sport`` entering ``in_iface`` come from the rule's real side?"""
        if e.real_iface is not None and e.real_iface != in_iface:
            return False
        if e.version is not None and e.version != version:
            return False
        if e.real is not None and e.real.index(src) is None:
            return False
        if e.proto is not None and e.proto != proto:
            return False
        return e.real_port is None or e.real_port == sport

    def _serves(self, e: _Entry, version: int, out_iface: str | None) -> bool:
        """A dynamic rule applies only to traffic its pool has addresses for (``interface`` means the
        egress address of the flow's IP version; a v4 pool does not translate IPv6)."""
        if e.kind != "dynamic":
            return True
        for v, _ in e.nat_addrs:
            if v == version:
                return True
        for v, _ in e.pat_addrs:
            if v == version:
                return True
        return e.interface and self._iface_address(out_iface or "", version, None) is not None

    def steering_view(self, iface_names: Iterable[str]) -> dict[str, list]:
        """The mapped addresses behind which a translated host hides, for a live firewall's TUN steering
        (``statewall.live.steer``), which must send a reply to the worker owning its real host:

        * ``pat``: ``(version, address, mapped interface or None)`` shared by port (PAT pools, single
          pool addresses, ``interface``): the worker is the destination port's block owner
          (``port_owner``), since each worker allocates from its own blocks (``port_share``);
        * ``one_to_one``: ``(version, address, index, mapped interface or None)`` of dynamic NAT pools:
          the pool's ``index``-th address belongs to worker ``index % workers`` (``_dynamic``);
        * ``static``: ``(version, mapped _Addrs, real _Addrs, protocol, mapped port, mapped interface,
          real interface)`` of static rules that change the address: the worker is the real host's.
        """
        out: dict[str, list] = {"pat": [], "one_to_one": [], "static": []}
        for e in self.entries:
            if e.kind == "dynamic":
                out["one_to_one"].extend((v, a, i, e.mapped_iface) for i, (v, a) in enumerate(e.nat_addrs))
                out["pat"].extend((v, a, e.mapped_iface) for v, a in e.pat_addrs)
                if e.interface:
                    for name in [e.mapped_iface] if e.mapped_iface else iface_names:
                        for v in (4, 6):
                            a = self._iface_address(name, v, None)
                            if a is not None:
                                out["pat"].append((v, a, name))
            elif (
                e.kind == "static"
                and e.mapped is not None
                and e.real is not None
                and e.mapped.spans != e.real.spans
            ):
                out["static"].append(
                    (e.version, e.mapped, e.real, e.proto, e.mapped_port, e.mapped_iface, e.real_iface)
                )
        return out

    def untranslate_destination(self, version, proto, in_iface, dst, dport, src=None, sport=None):
        """For a new flow entering ``in_iface``: ``(real_dst, real_dport, egress, hit)`` or None.

        ``egress`` is the interface the rule names for the real destination (None: route lookup);
        ``hit.rule`` is the rule. Pass ``hit`` to ``translate_source`` for the same flow.
        """
        for e in self.entries:
            if e.version is not None and e.version != version:
                continue
            if e.bidirectional:
                if e.mapped_iface is not None and e.mapped_iface != in_iface:
                    pass
                elif (real := self._reverse(e, version, proto, dst, dport, src, sport)) is not None:
                    egress = None if e.route_lookup else e.real_iface
                    return _Hit(real[0], real[1], egress, _Match(e, True))
            if e.has_dst and src is not None and e.kind != "exempt":
                if not self._real_side(e, version, proto, in_iface, src, sport):
                    continue
                real_dst = _map(e.dst_mapped, e.dst_real, dst)
                if real_dst is None:
                    continue
                if e.dport_mapped is not None and (e.proto != proto or e.dport_mapped != dport):
                    continue
                if not self._selected(e, version, proto, src, sport, dst, dport):
                    continue
                real_dport = e.dport_real if e.dport_real is not None else dport
                if e.kind == "dynamic" and not self._serves(e, version, e.mapped_iface):
                    continue
                egress = None if e.route_lookup else e.mapped_iface
                return _Hit(real_dst, real_dport, egress, _Match(e, False))
        x = self._nat_hosts.get((version, in_iface, dst))
        if x is not None:
            # A live dynamic NAT slot: hosts may open connections to its mapped address (ASA).
            return _Hit(x.real_addr, dport, x.real_iface, _Match(None, True, x))
        return None

    def reply_slot(self, version, proto, in_iface, dst, dport):
        """UN-NAT by a live PAT slot for an ICMP query reply entering ``in_iface`` (an echo reply that no
        connection matches: no ``inspect icmp``): ``(real address, real identifier, real interface,
        hit)`` when a PAT slot of ``proto`` maps ``dst``/``dport`` (the identifier the codec gives as
        both ports), else None. The ASA untranslates such a reply through the xlate its request built
        (305011 "Built dynamic ICMP translation"). Only addresses with a port in use are searched."""
        used = self._mapped_in_use.get((version, proto, dst))
        if used is None or dport not in used:
            return None
        for x in self.xlates.values():
            if (
                x.pat
                and x.kind == "dynamic"
                and x.proto == proto
                and x.mapped_port == dport
                and x.mapped_addr == dst
                and x.mapped_iface == in_iface
                and x.version == version
            ):
                return _Hit(x.real_addr, x.real_port, x.real_iface, _Match(None, True, x))
        return None

    def reverse_static(self, version, proto, real_iface, mapped_iface, addr, port, peer, peer_port):
        """NAT's reverse path check for a new flow from ``peer``/``peer_port`` entering ``mapped_iface``,
        addressed to ``addr``/``port`` (a destination no rule untranslated) and routed out of
        ``real_iface``: the reverse flow (from ``addr`` into ``real_iface``, out of ``mapped_iface`` to
        the peer) is looked up in the rules' order, and when the first rule translating its source is
        a static that changes ``addr`` (or its port), the flow is asymmetric: ``(rule, mapped address,
        mapped port, bidirectional)``; else None (no rule, an identity rule, an exemption, a dynamic
        rule). A lookup only: no translation slot is made.

        A real ASA drops such a flow: asp-drop ``nat-rpf-failed``, syslog 305013 "Asymmetric NAT rules
        matched for forward and reverse flows" (Cisco ASA syslog messages guide, 305013: "An attempt to
        connect to a mapped host using its actual address was rejected"). Replay's carrying of a capture
        taken on a static's real side asks the same question (``Firewall._static_mapped_dst``)."""
        e = self._source_entry(version, proto, real_iface, mapped_iface, addr, port, peer, peer_port)
        if e is None or e.kind != "static" or e.identity or e.has_dst:
            return None
        mapped = _map(e.real, e.mapped, addr)
        mport = e.mapped_port if e.mapped_port is not None else port
        if mapped is None or (mapped == addr and mport == port):
            return None
        return e.rule, mapped, mport, e.bidirectional

    def _reverse(self, e: _Entry, version, proto, dst, dport, src, sport) -> tuple[int, int] | None:
        """A flow to a static rule's mapped side: (real destination, real port) or None."""
        real_dst = _map(e.mapped, e.real, dst)
        if real_dst is None:
            return None
        if e.mapped_port is not None:
            if e.proto != proto or e.mapped_port != dport:
                return None
            real_dport = e.real_port if e.real_port is not None else dport
        else:
            real_dport = dport
        if e.has_dst:
            # Twice NAT seen from its destination: the initiator is the real destination.
            if src is None or (e.dst_real is not None and e.dst_real.index(src) is None):
                return None
            if e.dport_real is not None and (e.proto != proto or e.dport_real != sport):
                return None
        # Policy static: the access list names the real host as source, the peer as destination.
        if (e.selectors is not None or e.match is not None) and (
            src is None or not self._selected(e, version, proto, real_dst, real_dport, src, sport or 0)
        ):
            return None
        return real_dst, real_dport

    # ---------------------------------------------------------------------------------------------
    # Source translation

    def translate_source(self, version, proto, in_iface, out_iface, src, sport, dst, dport, now, via=None):
        """The xlate for a new flow's initiator, or None when no rule translates it.

        ``dst``/``dport`` are the real destination (after UN-NAT); ``via`` is UN-NAT's hit for this flow.
        Returns ``(xlate, created)``; raises ``NatFailure`` when a rule applies but no slot is free.
        """
        m = via if isinstance(via, _Match) else None
        if m is not None and m.entry is not None:
            e = m.entry
            if not m.reverse:
                return self._apply(e, version, proto, in_iface, out_iface, src, sport, now)
            if e.has_dst:
                return self._twice_reverse(e, version, proto, in_iface, out_iface, src, sport, now)
        e = self._source_entry(version, proto, in_iface, out_iface, src, sport, dst, dport)
        if e is None:
            return None, False
        return self._apply(e, version, proto, in_iface, out_iface, src, sport, now)

    def source_entry(self, version, proto, in_iface, out_iface, src, sport, dst, dport) -> _Entry | None:
        """The rule translating a new flow's source when UN-NAT found none (what ``translate_source``
        looks up): a compiled entry for ``apply_entry``, or None. The engine keeps it per class of flow
        (``statewall.engine.flowclass``): it depends on the rules only."""
        return self._source_entry(version, proto, in_iface, out_iface, src, sport, dst, dport)

    def apply_entry(self, e: _Entry, version, proto, in_iface, out_iface, src, sport, now):
        """``translate_source`` with the rule ``source_entry`` found: ``(xlate or None, created)``;
        raises ``NatFailure``."""
        return self._apply(e, version, proto, in_iface, out_iface, src, sport, now)

    def owns_mapped(self, version: int, iface: str, addr: int) -> bool:
        """Does a live dynamic NAT slot map onto ``addr`` on ``iface`` (UN-NAT by xlate)?"""
        return bool(self._nat_hosts) and (version, iface, addr) in self._nat_hosts

    def _source_entry(self, version, proto, in_iface, out_iface, src, sport, dst, dport) -> _Entry | None:
        """The first rule translating a new flow's source (without UN-NAT's hit), or None."""
        for e in self.entries:
            if e.has_dst and not (e.identity or e.kind == "exempt"):
                continue  # twice NAT with a translated destination applies only through UN-NAT
            if not self._real_side(e, version, proto, in_iface, src, sport):
                continue
            if e.mapped_iface is not None and e.mapped_iface != out_iface:
                continue
            if e.has_dst and (e.dst_real is not None and e.dst_real.index(dst) is None):
                continue
            if not self._selected(e, version, proto, src, sport, dst, dport):
                continue
            if not self._serves(e, version, out_iface):
                continue
            return e
        return None

    def exempting_rule(self, version, proto, in_iface, out_iface, src, sport, dst, dport, via=None):
        """The exemption or identity rule that leaves a new flow's source untranslated, if one does
        (packet-tracer's NAT-EXEMPT phase names it); None when no rule applies or one translates."""
        m = via if isinstance(via, _Match) else None
        e = m.entry if m is not None and m.entry is not None else None
        if e is None:
            e = self._source_entry(version, proto, in_iface, out_iface, src, sport, dst, dport)
        return e.rule if e is not None and (e.kind == "exempt" or e.identity) else None

    # ---------------------------------------------------------------------------------------------
    # ASA 8.2's translation requirements (Cisco ASA 8.2 configuration guide, "NAT Control" and "Dynamic
    # NAT Implementation"): which flows a real 8.2 box refuses for want of a translation (305005).

    def source_rule(self, version, proto, in_iface, out_iface, src, sport, dst, dport) -> NatRule | None:
        """The rule that covers a new flow's source towards ``out_iface`` (a translation, ``nat 0``
        identity or exemption, an identity static), or None when no rule does."""
        e = self._source_entry(version, proto, in_iface, out_iface, src, sport, dst, dport)
        return e.rule if e is not None else None

    def dynamic_rule_elsewhere(self, version, proto, in_iface, src, sport, dst, dport) -> NatRule | None:
        """An 8.2 ``nat`` rule (dynamic NAT/PAT) whose real side holds this source on ``in_iface``,
        whatever interfaces its globals are on: "real addresses in a NAT rule must be translated on all
        lower or same security interfaces" (Cisco ASA 8.2 configuration guide), nat-control or not."""
        for e in self.entries:
            if e.kind != "dynamic" or e.rule.section != 0:
                continue
            if self._real_side(e, version, proto, in_iface, src, sport) and self._selected(
                e, version, proto, src, sport, dst, dport
            ):
                return e.rule
        return None

    def dynamic_on(self, iface: str) -> bool:
        """Does an 8.2 dynamic NAT rule take its real addresses from ``iface``? (With nat-control, its
        traffic to a same-security interface then needs a translation too.)"""
        return any(
            e.kind == "dynamic" and e.rule.section == 0 and e.real_iface == iface for e in self.entries
        )

    def _apply(self, e: _Entry, version, proto, in_iface, out_iface, src, sport, now):
        if e.kind == "exempt" or e.identity:
            return None, False
        if e.kind == "static":
            mapped = _map(e.real, e.mapped, src)
            port_mapped = e.mapped_port is not None
            return self._static(
                e,
                version,
                proto,
                in_iface,
                out_iface,
                src,
                sport if port_mapped else 0,
                src if mapped is None else mapped,
                e.mapped_port if port_mapped else 0,
                now,
            )
        return self._dynamic(e, version, proto, in_iface, out_iface, src, sport, now)

    def _twice_reverse(self, e: _Entry, version, proto, in_iface, out_iface, src, sport, now):
        """A flow from a twice NAT rule's real destination to its mapped source: the initiator appears
        at the mapped destination (``destination static MAPPED REAL`` read backwards)."""
        mapped = _map(e.dst_real, e.dst_mapped, src)
        port_mapped = e.dport_real is not None
        if (mapped is None or mapped == src) and not port_mapped:
            return None, False
        return self._static(
            e,
            version,
            proto,
            in_iface,
            out_iface,
            src,
            sport if port_mapped else 0,
            src if mapped is None else mapped,
            (e.dport_mapped or 0) if port_mapped else 0,
            now,
        )

    def _static(self, e, version, proto, in_iface, out_iface, src, rport, maddr, mport, now):
        pat = bool(rport or mport)
        key = ("static", e.order, version, proto if pat else 0, in_iface, src, rport, out_iface)
        x = self.xlates.get(key)
        if x is None:
            x = Xlate(
                "static",
                version,
                proto if pat else 0,
                in_iface,
                src,
                rport,
                out_iface,
                maddr,
                mport,
                pat,
                e.rule,
                now,
                0.0,
                key,
                e.flags(pat),
                e,
            )
            self._add(x)
        return x, False  # statics exist by configuration; no 305011 for them

    def _dynamic(self, e: _Entry, version, proto, in_iface, out_iface, src, sport, now):
        key = ("nat", e.order, version, in_iface, src, out_iface)
        x = self.xlates.get(key)
        if x is not None:
            return x, False  # one-to-one: every protocol and port of the host
        pkey = pat_key(e.order, version, proto, in_iface, src, sport, out_iface)
        x = self.xlates.get(pkey)
        if x is not None:
            return x, False  # endpoint-independent: the same mapping whatever the destination
        share = self.port_share
        for i, (v, a) in enumerate(e.nat_addrs):
            if share is not None and i % share[1] != share[0]:
                continue  # a shard (worker) hands out the pool's i-th address when i % shards is its own
            if v == version and (v, a) not in self._hosts_in_use:
                self._hosts_in_use.add((v, a))
                x = Xlate(
                    "dynamic",
                    version,
                    0,
                    in_iface,
                    src,
                    0,
                    out_iface,
                    a,
                    0,
                    False,
                    e.rule,
                    now,
                    self.timeouts.xlate,
                    key,
                    e.flags(False),
                    e,
                )
                self._nat_hosts[(version, out_iface, a)] = x
                self._add(x)
                return x, True
        candidates = [a for v, a in e.pat_addrs if v == version]
        if e.interface:
            a = self._iface_address(out_iface, version, None)
            if a is not None:
                candidates.append(a)
        if not candidates:
            if any(v == version for v, _ in e.nat_addrs):
                raise NatFailure(e.rule, "dynamic NAT pool exhausted", "regular")
            raise NatFailure(
                e.rule, f"no {('IPv4', 'IPv6')[version == 6]} address for PAT on {out_iface}", "portmap"
            )
        if proto not in _PORT_PROTOCOLS and proto not in _ICMP_PROTOCOLS:
            # PAT tells flows apart by port; a protocol without ports cannot share the address.
            raise NatFailure(e.rule, f"protocol {proto} has no ports to translate", "portmap")
        sticky = e.sticky.get((version, src))
        if sticky is not None and sticky[0] in candidates:
            # A host keeps its PAT address while it has translations (ASA PAT pool stickiness).
            candidates.remove(sticky[0])
            candidates.insert(0, sticky[0])
        elif e.round_robin and len(candidates) > 1:
            k = e.rr % len(candidates)
            candidates = candidates[k:] + candidates[:k]
            e.rr += 1
        for maddr in candidates:
            if e.pba:
                mport = self._pba_port(e, version, proto, in_iface, src, sport, out_iface, maddr)
            else:
                mport = self._alloc_port(version, proto, maddr, sport, e.port_range)
            if mport is None:
                continue
            x = Xlate(
                "dynamic",
                version,
                proto,
                in_iface,
                src,
                sport,
                out_iface,
                maddr,
                mport,
                True,
                e.rule,
                now,
                self.timeouts.pat_xlate,
                pkey,
                e.flags(True),
                e,
            )
            self._add(x)
            if len(candidates) > 1 or e.pat_pool:
                held = e.sticky.setdefault((version, src), [maddr, 0])
                if held[0] == maddr:
                    held[1] += 1
            return x, True
        if e.pba:
            # No address of the pool has a block free for this host (Cisco ASA syslog 305016, port
            # block exhaustion in the PAT pool): named by the address it would have had first.
            pool = e.rule.mapped_object or "pool"
            first = addr_to_str(version, candidates[0])
            raise NatFailure(
                e.rule,
                f"port block exhaustion in PAT pool '{pool}' IP {first}",
                pba="pool",
                pool_name=pool,
                pool_address=first,
            )
        raise NatFailure(e.rule, "all PAT ports in use", "portmap")

    def _pba_port(self, e, version, proto, in_iface, src, sport, out_iface, maddr) -> int | None:
        """A port for host ``src`` from its port blocks on ``maddr``, a new block when they are full
        (Cisco ASA configuration guide, PAT with port block allocation: blocks come from 1024-65535
        only, a host's connections take ports within its blocks, another block is allocated when all
        its blocks' ports are in use, up to ``xlate block-allocation maximum-per-host``). Within a block
        the ASA picks a random port; here the search starts at the real port's offset in the block, so
        that a replay is reproducible. None when the address has no free block (the next address of
        the pool is tried); NatFailure when the host holds its maximum of blocks, all full."""
        used = self._ports(version, proto, maddr)
        mine = self._pba_hosts.setdefault((version, src, maddr), [])
        blocks = self._pba_blocks.setdefault((version, maddr), {})
        for start in mine:
            b = blocks[start]
            p = _search(start, b.end, sport, used.__contains__)
            if p is not None:
                return self._pba_take(used, b, p)
        if len(mine) >= self.pba_max:
            if not mine:
                self._pba_hosts.pop((version, src, maddr), None)
            raise NatFailure(
                e.rule,
                f"reaching per-host PAT port block limit of {self.pba_max}",
                block_limit=self.pba_max,
                pba="host",
            )
        size = self.pba_size
        share = self.port_share
        for start in range(1024, 65536, size):
            end = min(start + size - 1, 65535)
            if start in blocks:
                continue
            if share is not None and not (
                port_owner(start, share[1]) == share[0] == port_owner(end, share[1])
            ):
                continue  # a worker's (shard's) blocks lie in its own 512-port blocks
            b = blocks[start] = PortBlock(version, in_iface, src, out_iface, maddr, start, end)
            mine.append(start)
            self.pba_events.append((True, b))
            return self._pba_take(used, b, _search(start, end, sport, used.__contains__))
        if not mine:
            self._pba_hosts.pop((version, src, maddr), None)
        return None

    @staticmethod
    def _pba_take(used: PortSet, b: PortBlock, port: int | None) -> int | None:
        if port is not None:
            used.add(port)
            b.in_use += 1
        return port

    def _pba_release(self, x: Xlate) -> None:
        """``x`` (a translation within a block) is gone: the block is freed with its last one."""
        blocks = self._pba_blocks.get((x.version, x.mapped_addr))
        mine = self._pba_hosts.get((x.version, x.real_addr, x.mapped_addr))
        if not blocks or not mine:
            return
        for start in mine:
            b = blocks[start]
            if start <= x.mapped_port <= b.end:
                b.in_use -= 1
                if b.in_use <= 0:
                    del blocks[start]
                    mine.remove(start)
                    if not mine:
                        del self._pba_hosts[(x.version, x.real_addr, x.mapped_addr)]
                    self.pba_events.append((False, b))
                return

    def next_interim_round(self, now: float) -> PbaTick | None:
        """The round of interim logging to queue now that a block is held, None when one is queued or
        interim logging is off. Rounds fall on the whole multiples of the interval on the engine's
        clock (the ASA counts from when the command was entered, which a capture does not show), so
        that every engine of a sharded replay logs at the instants one engine would."""
        if not self.pba_interim or self.pba_tick is not None:
            return None
        n = self.pba_interim
        self.pba_tick = PbaTick((now // n + 1) * n)
        return self.pba_tick

    def interim_round(self, tick: PbaTick) -> tuple[list[PortBlock], PbaTick | None]:
        """The blocks held at round ``tick`` (by mapped address and first port), and the next round
        to queue (None when no block is held, or interim logging is off: the next allocation queues
        one)."""
        if tick is not self.pba_tick:
            return [], None  # not the table's round (one of a snapshot taken before it was queued)
        held = [b for _key, blocks in sorted(self._pba_blocks.items()) for _s, b in sorted(blocks.items())]
        if not held or not self.pba_interim:
            self.pba_tick = None
            return (held if self.pba_interim else []), None
        self.pba_tick = PbaTick(tick.due + self.pba_interim)
        return held, self.pba_tick

    def take_block_events(self) -> list[tuple[bool, PortBlock]]:
        """The port blocks allocated (True) and released (False) since the last call, in order."""
        out, self.pba_events = self.pba_events, []
        return out

    def _alloc_port(
        self, version: int, proto: int, maddr: int, want: int, port_range: tuple[int, int] | None = None
    ) -> int | None:
        """The real port when it is free on ``maddr``, else the next free one of its class (ASA PAT)."""
        used = self._mapped_in_use.get((version, proto, maddr))
        if used is None:
            used = self._ports(version, proto, maddr)
        if proto in _ICMP_PROTOCOLS:
            lo, hi = 0, 65535  # echo identifiers: one class
        elif port_range is not None:
            lo, hi = port_range
        elif 1024 <= want <= 65535:
            lo, hi = 1024, 65535  # _port_class's usual case: an ephemeral port
        else:
            lo, hi = _port_class(want or 1024)
        if self.port_share is not None:
            # A shard: the real port if it is free and in one of its blocks, else the next free port of
            # its blocks in the same class.
            first = want if lo <= want <= hi else lo
            for start, end in _own_ranges(lo, hi, first, *self.port_share):
                p = used.next_free(start, end)
                if p is not None:
                    used.add(p)
                    return p
            return None
        # ``want not in used``, the bitmap read here (a method call per new translation otherwise).
        if (
            lo <= want <= hi
            and not (used.words[want >> 6] >> (want & 63)) & 1
            and (want or proto in _ICMP_PROTOCOLS)
        ):
            used.add(want)
            return want
        start = (want - lo + 1) if lo <= want <= hi else 0
        if start and want < hi:
            # PortSet.search's first look, written out (most new translations of a busy address): the
            # ports after the taken one in its word of the bitmap. Nothing free there: the search.
            first = want + 1
            w = first >> 6
            free = ~used.words[w] & _WORD & ~((1 << (first & 63)) - 1)
            if free:
                p = (w << 6) + (free & -free).bit_length() - 1
                if p <= hi:
                    used.add(p)
                    return p
        p = used.search(lo, hi, start)
        if p is not None:
            used.add(p)
        return p

    def _add(self, x: Xlate) -> None:
        self.xlates[x.key] = x
        if len(self.xlates) > self.most_used:
            self.most_used = len(self.xlates)

    # ---------------------------------------------------------------------------------------------
    # Lifetime

    def acquire(self, x: Xlate) -> None:
        x.refcount += 1

    def release(self, x: Xlate, now: float) -> bool:
        """Drop one connection's hold; True when the slot became idle and must be timed."""
        n = x.refcount - 1
        if n > 0:
            x.refcount = n
            return False
        x.refcount = 0
        x.idle_since = now
        c = x._c  # kind at 0, timeout at 7 (the shared tuple, without the properties)
        return c[0] != "static" and c[7] > 0

    def expire(self, x: Xlate, now: float) -> float | None:
        """Remove ``x`` if idle long enough; otherwise return the time to look again (None: never)."""
        c = x._c  # kind at 0, timeout at 7 (the shared tuple, without the properties)
        timeout = c[7]
        if x.refcount > 0 or c[0] == "static" or timeout <= 0 or self.xlates.get(x.key) is not x:
            return None  # held, permanent, or already gone (a second timer queued for it)
        due = x.idle_since + timeout
        if due > now:
            return due
        self.remove(x)
        return -1.0

    def remove(self, x: Xlate) -> None:
        xlates = self.xlates
        key = x.key
        if xlates.get(key) is not x:
            return
        del xlates[key]
        # (kind, version, proto, real iface, mapped iface, pat, rule, timeout, flags, entry): the shared
        # tuple read once rather than through a property per field (per expired translation).
        kind, version, proto, _, mapped_iface, pat, _, _, _, e = x._c
        if kind != "dynamic":
            return
        if pat:
            used = self._mapped_in_use.get((version, proto, x.mapped_addr))
            if used is not None:
                used.discard(x.mapped_port)
            if e is not None:
                if e.pba:
                    self._pba_release(x)
                sticky = e.sticky
                if sticky:  # a pool's stickiness (an empty dict holds no host)
                    held = sticky.get((version, x.real_addr))
                    if held is not None and held[0] == x.mapped_addr:
                        held[1] -= 1
                        if held[1] <= 0:
                            del sticky[(version, x.real_addr)]
        else:
            self._hosts_in_use.discard((version, x.mapped_addr))
            self._nat_hosts.pop((version, mapped_iface, x.mapped_addr), None)
