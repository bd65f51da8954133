"""nftables sets at run time: lookups by key (concatenations too), elements that time out, dynamic
updates from the packet path (``add @s { ... }``, ``update @s { ... }``, meters) and nft's ``limit``
(packets or bytes, ``over``), per rule or per set element.

Owns the state those have: each set's elements with their expiry and per-element limit, created on
the ``Netfilter`` that uses them (``Netfilter.nft_set``). Reads the neutral model only
(``NfSet`` with ``keyed``, its key types and elements; keys are named as nft names them, ``ip saddr``,
``tcp dport``, ``th dport``, ``meta l4proto``, ``iifname``, ``meta mark``).

Behaviour, as the kernel's:

- A key that the packet does not have (``tcp dport`` of a UDP packet, ``ip saddr`` of an IPv6 one in
  an inet table, any port of a non-first fragment) fails the rule, negated or not: nft puts the
  protocol dependency in front of it. ``th`` reads the transport header's bytes whatever the
  protocol (nft_payload's NFT_PAYLOAD_TRANSPORT_HEADER), not in a non-first fragment.
- Elements with a timeout expire that long after the set is loaded; statewall's clock starts at the
  first packet the set sees (the engine has no load time). An expired element is gone for lookups.
- ``add`` inserts the key when it is absent (an existing element keeps its expiry), ``update``
  inserts or refreshes the expiry (nft_dynset_eval); the timeout is the statement's, else the set's.
  A set at its ``size`` takes no new element and the rule stops there (NFT_BREAK). A statement's
  stateful expression (``limit``) runs on the element, its own bucket per element, and stops the rule
  as the limit does.
- ``limit`` (nft_limit.c): a token bucket in nanoseconds; packets cost ``unit/rate`` each with a
  bucket of ``burst`` (5 when unsaid) of them; bytes cost ``unit * len / rate`` with a bucket of
  ``unit * (rate + burst) / rate``. It matches while there are tokens, ``over`` while there are none.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from .packet import Packet
from .policy import PROTO_TCP, PROTO_UDP, NfSet

_NS = 1_000_000_000


class NftLimit:
    """One nft ``limit`` (a rule's, or a set element's own copy)."""

    __slots__ = ("rate", "nsecs", "bytes", "invert", "max", "cost", "tokens", "last")

    def __init__(self, args: dict) -> None:
        self.rate = int(args["rate"])
        self.nsecs = int(args["unit"]) * _NS
        self.bytes = bool(args["bytes"])
        self.invert = bool(args["over"])
        burst = int(args["burst"])
        if not self.bytes and burst == 0:
            burst = 5  # NFT_LIMIT_PKT_BURST_DEFAULT
        if self.bytes:
            self.max = self.nsecs * (self.rate + burst) // self.rate
            self.cost = 0
        else:
            self.cost = self.nsecs // self.rate
            self.max = self.cost * burst
        self.tokens = self.max
        self.last: int | None = None

    def match(self, now: float, length: int) -> bool:
        t = round(now * _NS)
        if self.last is None:
            self.last = t
        tokens = min(self.max, self.tokens + max(0, t - self.last))
        self.last = max(self.last, t)
        cost = self.nsecs * length // self.rate if self.bytes else self.cost
        if tokens >= cost:
            self.tokens = tokens - cost
            return not self.invert
        self.tokens = tokens
        return self.invert


Reader = Callable[[Packet, object, object], object]


def _addr(version: int, attr: str) -> Reader:
    def read(pkt, ctx, ifs):
        return getattr(pkt, attr) if pkt.version == version else None

    return read


def _port(proto: int | None, attr: str, offset: int) -> Reader:
    if proto is not None:

        def read(pkt, ctx, ifs):
            if pkt.proto != proto or pkt.frag_offset or not pkt.has_l4:
                return None
            return getattr(pkt, attr)

        return read

    def raw(pkt, ctx, ifs):
        if pkt.frag_offset:
            return None
        at = pkt.l4off + offset
        if at + 2 > pkt.end:
            return None
        return pkt.buf[at] << 8 | pkt.buf[at + 1]

    return raw


READERS: dict[str, Reader] = {
    "ip saddr": _addr(4, "src"),
    "ip daddr": _addr(4, "dst"),
    "ip6 saddr": _addr(6, "src"),
    "ip6 daddr": _addr(6, "dst"),
    "tcp sport": _port(PROTO_TCP, "sport", 0),
    "tcp dport": _port(PROTO_TCP, "dport", 2),
    "udp sport": _port(PROTO_UDP, "sport", 0),
    "udp dport": _port(PROTO_UDP, "dport", 2),
    "th sport": _port(None, "sport", 0),
    "th dport": _port(None, "dport", 2),
    "meta l4proto": lambda pkt, ctx, ifs: pkt.proto,
    "iifname": lambda pkt, ctx, ifs: ifs.inp,
    "oifname": lambda pkt, ctx, ifs: ifs.out,
    "meta iifname": lambda pkt, ctx, ifs: ifs.inp,
    "meta oifname": lambda pkt, ctx, ifs: ifs.out,
    "meta mark": lambda pkt, ctx, ifs: ctx.mark,
}


def key_reader(keys: tuple[str, ...]) -> Callable[[Packet, object, object], tuple | None]:
    """The packet's key for ``keys`` (a tuple, one value per part), or None when it lacks a part."""
    readers = [READERS[k] for k in keys]

    def read(pkt, ctx, ifs):
        out = []
        for r in readers:
            v = r(pkt, ctx, ifs)
            if v is None:
                return None
            out.append(v)
        return tuple(out)

    return read


def element_matches(member: tuple, key: tuple) -> bool:
    for want, v in zip(member, key, strict=True):
        if isinstance(want, str):
            if not (v == want or (want.endswith("*") and isinstance(v, str) and v.startswith(want[:-1]))):
                return False
        elif not want[0] <= v <= want[1]:
            return False
    return True


class RuntimeSet:
    """A set's elements as the packet path sees and changes them."""

    __slots__ = ("spec", "exact", "ranges", "starts", "merged", "start", "pending")

    def __init__(self, spec: NfSet) -> None:
        self.spec = spec
        # exact key -> [expiry or None, per-element limit or None, its timeout or None]
        self.exact: dict[tuple, list] = {}
        self.ranges: list[tuple[tuple, float | None]] = []
        self.start: float | None = None
        self.pending: list[tuple[tuple, float | None]] = []  # elements whose timeout starts with the clock
        interval = "interval" in spec.flags
        timeouts = spec.timeouts or [None] * len(spec.members)
        for member, tmo in zip(spec.members, timeouts, strict=True):
            life = spec.timeout
            if tmo is not None:
                life = tmo[1] if tmo[1] is not None else tmo[0] if tmo[0] is not None else life
            point = all(not isinstance(p, str) and p[0] == p[1] for p in member)
            if point and not interval:
                key = tuple(p[0] for p in member)
                if life is None:
                    self.exact[key] = [None, None, None]
                else:
                    self.pending.append((key, life))
            else:
                self.ranges.append((member, life))
        # A one-part numeric interval set without timeouts: merged ranges, found by bisection.
        self.merged: list[list[int]] | None = None
        self.starts: list[int] = []
        if len(spec.dims) == 1 and spec.dims[0] != "ifname" and all(life is None for _, life in self.ranges):
            merged: list[list[int]] = []
            for ((lo, hi),) in sorted(m for m, _ in self.ranges):
                if merged and lo <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            self.merged = merged
            self.starts = [m[0] for m in merged]

    def _clock(self, now: float) -> None:
        if self.start is None:
            self.start = now
            for key, life in self.pending:
                self.exact[key] = [now + life, None, life]
            self.ranges = [(m, None if life is None else now + life) for m, life in self.ranges]
            self.pending = []

    def find(self, key: tuple, now: float) -> list | None:
        """The live exact element for ``key`` (expired ones are removed), or None."""
        self._clock(now)
        e = self.exact.get(key)
        if e is not None and e[0] is not None and e[0] <= now:
            del self.exact[key]
            return None
        return e

    def contains(self, key: tuple, now: float) -> bool:
        if self.find(key, now) is not None:
            return True
        if self.merged is not None:
            v = key[0]
            i = bisect.bisect_right(self.starts, v) - 1
            return i >= 0 and v <= self.merged[i][1]
        return any((exp is None or exp > now) and element_matches(m, key) for m, exp in self.ranges)

    def live(self, now: float) -> int:
        self._clock(now)
        gone = [k for k, e in self.exact.items() if e[0] is not None and e[0] <= now]
        for k in gone:
            del self.exact[k]
        return len(self.exact)

    def update(
        self, op: str, key: tuple, timeout: float | None, limit: dict | None, now: float, length: int
    ) -> bool:
        """``add`` or ``update`` the element; False stops the rule (a full set, a limit)."""
        e = self.find(key, now)
        spec = self.spec
        life = timeout if timeout is not None else spec.timeout
        if e is None:
            size = spec.size if spec.size is not None else 65535
            if len(self.exact) >= size and self.live(now) >= size:  # expired ones make room
                return False
            e = self.exact[key] = [
                now + life if life is not None else None,
                NftLimit(limit) if limit is not None else None,
                life,
            ]
        elif op == "update" and e[0] is not None and life is not None:
            e[0] = now + life
            e[2] = life
        if limit is not None:
            if e[1] is None:
                e[1] = NftLimit(limit)
            return e[1].match(now, length)
        return True

    def elements(self, now: float) -> list[tuple[tuple, float | None, float | None]]:
        """The live exact elements as ``(key, timeout, seconds left)`` (a listing after a replay)."""
        self.live(now)
        return [(k, e[2], None if e[0] is None else e[0] - now) for k, e in self.exact.items()]


def lookup_check(args: dict, env) -> Callable:
    """``KEY [!=] @set`` or ``KEY [. KEY] [!=] { ... }``."""
    read = key_reader(tuple(args["keys"]))
    neg = bool(args["negate"])
    name = args.get("set")
    if name:
        rt = env.nft_set(str(name)) if env is not None else None

        def check(pkt, ctx, ifs) -> bool:
            key = read(pkt, ctx, ifs)
            if key is None:
                return False
            return (rt is not None and rt.contains(key, ctx.now)) != neg

        return check
    members = tuple(args["elements"])

    def anon(pkt, ctx, ifs) -> bool:
        key = read(pkt, ctx, ifs)
        if key is None:
            return False
        return any(element_matches(m, key) for m in members) != neg

    return anon


def dynset_check(args: dict, env) -> Callable:
    """``add|update @set { KEY [timeout T] [limit ...] }`` and ``meter``: changes the set; False stops
    the rule."""
    read = key_reader(tuple(args["keys"]))
    rt = env.nft_set(str(args["set"])) if env is not None else None
    op = str(args["op"])
    timeout = args.get("timeout")
    limit = args.get("limit")

    def check(pkt, ctx, ifs) -> bool:
        key = read(pkt, ctx, ifs)
        if key is None or rt is None:
            return False
        return rt.update(op, key, timeout, limit, ctx.now, pkt.total_len)

    return check


def limit_check(args: dict, env) -> Callable:
    lim = NftLimit(args)
    return lambda pkt, ctx, ifs: lim.match(ctx.now, pkt.total_len)


def map_lookup(args: dict, env) -> Callable:
    """A data map's lookup (``KEY map { k : v }`` / ``map @m``): the packet's value (one ``(lo, hi)``
    per value part), or None when the key is not there (the rule stops: NFT_BREAK)."""
    read = key_reader(tuple(args["keys"]))
    if args.get("set"):
        spec = env.sets.get(str(args["set"])) if env is not None else None
        pairs = list(zip(spec.members, spec.values, strict=True)) if spec is not None else []
    else:
        pairs = list(zip(args["elements"], args["values"], strict=True))
    exact = {}
    for member, value in pairs:
        if all(not isinstance(p, str) and p[0] == p[1] for p in member):
            exact.setdefault(tuple(p[0] for p in member), value)

    def find(pkt, ctx, ifs):
        key = read(pkt, ctx, ifs)
        if key is None:
            return None
        hit = exact.get(key)
        if hit is not None:
            return hit
        return next((v for m, v in pairs if element_matches(m, key)), None)

    return find
