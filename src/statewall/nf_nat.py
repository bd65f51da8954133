"""Linux's NAT (nf_nat_core.c): the bindings of iptables' SNAT, MASQUERADE, DNAT, REDIRECT and NETMAP.

Owns the mappings of netfilter's path (``NfNat``: one ``Xlate`` of kind ``nf`` per bound side of a
connection, living exactly as long as it) and Linux's allocator: ``NfNat.translate`` allocates as the
kernel's ``get_unique_tuple`` does: keep the tuple when it is in range and unused, else reuse the
mapping the same source already has, else choose the address by the kernel's hash of the addresses
(``nf_best_address``) and search the port range (``nf_nat_l4proto_unique_tuple``) through the same
``_search`` as the ASA's PAT (``statewall.nat``, which owns the ASA's rules and slots).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .nat import (
    _ICMP_PROTOCOLS,
    _M32,
    _PORT_PROTOCOLS,
    NF_NAT_MAX_ATTEMPTS,
    NatFailure,
    Xlate,
    _own_ranges,
    _search,
    port_owner,
)


class NfNat:
    """The nf_nat bindings of one firewall: state (a policy reload keeps them)."""

    __slots__ = ("nf", "by_src", "port_share")

    def __init__(self) -> None:
        self.nf: dict[tuple, Xlate] = {}  # iptables mappings, one per connection
        self.by_src: dict[tuple, list[Xlate]] = {}
        # (shard, shards) of a sharded replay: source NAT picks ports (ICMP identifiers) of this shard's
        # blocks only (nat.PORT_BLOCK_BITS), so that two shards never map two connections to the same
        # tuple; None: the whole range, as Linux does.
        self.port_share: tuple[int, int] | None = None

    def acquire(self, x: Xlate) -> None:
        x.refcount += 1

    def release(self, x: Xlate, now: float = 0.0) -> bool:
        """Drop one connection's hold; a mapping lives exactly as long as its connection (False: it
        never waits on a timer)."""
        x.refcount -= 1
        if x.refcount <= 0:
            x.refcount = 0
            x.idle_since = now
            self.remove(x)
        return False

    def remove(self, x: Xlate) -> None:
        if self.nf.get(x.key) is x:
            del self.nf[x.key]
            same = self.by_src.get(x.key[2:6])
            if same is not None and x in same:
                same.remove(x)
                if not same:
                    del self.by_src[x.key[2:6]]

    def translate(
        self,
        manip: str,
        version: int,
        proto: int,
        src: int,
        sport: int,
        dst: int,
        dport: int,
        rng: NfRange,
        used: Callable[[int, int], bool],
        now: float,
        rule=None,
    ) -> Xlate:
        """Bind one new connection's ``manip`` side (``src``: SNAT/MASQUERADE, ``dst``: DNAT/REDIRECT)
        as Linux's ``get_unique_tuple`` does; ``used(addr, port)`` says whether the connection tuple with
        that side changed to ``addr``/``port`` is already tracked (the kernel's
        ``nf_nat_used_as_tuple``). Returns an ``Xlate`` of kind ``nf`` (``mapped_addr``/``mapped_port``
        are the new values); the connection holds it (``acquire``/``release``) and it goes with it.
        Raises ``NatFailure`` when no unique tuple is left.
        """
        is_src = manip == "src"
        addr, port = (src, sport) if is_src else (dst, dport)
        has_ports = proto in _PORT_PROTOCOLS or proto in _ICMP_PROTOCOLS
        share = getattr(self, "port_share", None) if is_src and has_ports else None
        if share is not None:
            # A shard's port range: the blocks of its own, everything else as if taken by another shard.
            index, count = share
            taken = used

            def used(a: int, p: int, taken=taken) -> bool:
                return port_owner(p, count) != index or taken(a, p)

        choice = None
        if is_src and not rng.random_all:
            # 1) Keep the tuple if it is in range and unused; else the mapping this source already has.
            if rng.holds(addr, port if has_ports else None):
                if not used(addr, port):
                    choice = (addr, port)
            else:
                for old in self.by_src.get((version, proto, src, sport), ()):
                    a, p = old.mapped_addr, old.mapped_port
                    if rng.holds(a, p if has_ports else None) and not used(a, p):
                        choice = (a, p)
                        break
        if choice is None:
            # 2) The address by the kernel's hash of the tuple's addresses, 3) the port if it fits.
            a = addr
            if rng.addr_lo is not None and rng.addr_hi is not None:
                a = nf_best_address(version, src, dst, rng.addr_lo, rng.addr_hi, rng.persistent)
            keep = not has_ports or (
                not rng.random_all
                and (
                    (rng.port_lo is not None and rng.port_in(port) and (rng.single_port or not used(a, port)))
                    or (rng.port_lo is None and not used(a, port))
                )
            )
            if keep:
                choice = (a, port)
            else:
                p = _nf_unique_port(is_src, proto, a, port, src, sport, dst, dport, rng, used, share)
                if p is None:
                    raise NatFailure(rule, "all ports in use", "portmap")
                choice = (a, p)
        key = ("nf", manip, version, proto, src, sport, dst, dport)
        x = Xlate(
            "nf",
            version,
            proto,
            "",
            addr,
            port,
            "",
            choice[0],
            choice[1],
            has_ports,
            rule,
            now,
            0.0,
            key,
            "",
        )
        old = self.nf.get(key)
        if old is not None:
            self.remove(old)
        self.nf[key] = x
        if is_src:
            self.by_src.setdefault((version, proto, src, sport), []).append(x)
        return x


# --------------------------------------------------------------------------------------------------
# Linux's allocator (nf_nat_core.c)


@dataclass(frozen=True, slots=True)
class NfRange:
    """A nat target's range (the kernel's ``nf_nat_range2``): addresses ``addr_lo``..``addr_hi`` (None:
    the address is kept), ports ``port_lo``..``port_hi`` (None: not specified), and the flags
    ``--random``, ``--random-fully``, ``--persistent``."""

    addr_lo: int | None = None
    addr_hi: int | None = None
    port_lo: int | None = None
    port_hi: int | None = None
    random: bool = False
    random_fully: bool = False
    persistent: bool = False

    @property
    def random_all(self) -> bool:
        """NF_NAT_RANGE_PROTO_RANDOM_ALL: either flag makes the port a random one even when the
        original is free."""
        return self.random or self.random_fully

    @property
    def single_port(self) -> bool:
        return self.port_lo is not None and self.port_lo == self.port_hi

    def port_in(self, port: int) -> bool:
        return self.port_lo is not None and self.port_hi is not None and self.port_lo <= port <= self.port_hi

    def holds(self, addr: int, port: int | None) -> bool:
        """The kernel's ``nf_in_range``: the address (when the range maps addresses) and the port (when
        it specifies ports) are inside."""
        if self.addr_lo is not None and self.addr_hi is not None and not self.addr_lo <= addr <= self.addr_hi:
            return False
        return port is None or self.port_lo is None or self.port_in(port)


def nf_range(
    target: str, args: Mapping[str, object], iface_addr: int | None = None, original: int | None = None
) -> NfRange:
    """The range of a ``SNAT``/``DNAT``/``MASQUERADE``/``REDIRECT``/``NETMAP`` rule's arguments, as the
    iptables dialect stores them (``addresses``: (first, last) addresses or None, ``ports``: (lo, hi) or
    None, ``random``, ``random_fully``, ``persistent``). MASQUERADE maps to ``iface_addr``, the egress
    interface's address; REDIRECT to ``iface_addr``, the ingress interface's. NETMAP maps ``original``
    (the source in POSTROUTING/INPUT, the destination in PREROUTING/OUTPUT) to the one address with the
    rule's network bits and the original's host bits, as xt_NETMAP.c does (mask = ~(first ^ last))."""
    ports = args.get("ports")
    plo, phi = ports if isinstance(ports, tuple) else (None, None)
    if target in ("MASQUERADE", "REDIRECT"):
        lo = hi = iface_addr
    elif target == "NETMAP" and original is not None and isinstance(args.get("addresses"), tuple):
        first, last = (int(a) for a in args["addresses"])  # type: ignore[union-attr]
        mask = ~(first ^ last)
        lo = hi = (original & ~mask) | (first & mask)
    else:
        addresses = args.get("addresses")
        if isinstance(addresses, tuple):
            lo, hi = int(addresses[0]), int(addresses[1])
        else:
            lo = hi = None
    return NfRange(
        lo,
        hi,
        plo,
        phi,
        bool(args.get("random")),
        bool(args.get("random_fully")),
        bool(args.get("persistent")),
    )


def _nf_port_class(port: int) -> tuple[int, int]:
    """Linux's port classes when a rule names no ports: below 512, 600-1023 ("credential passing" above
    512 is left alone), and 1024-65535."""
    if port < 512:
        return 1, 511
    if port < 1024:
        return 600, 1023
    return 1024, 65535


def _nf_unique_port(
    is_src, proto, addr, port, src, sport, dst, dport, rng: NfRange, used, share=None
) -> int | None:
    """``nf_nat_l4proto_unique_tuple``: a free port of the range (or of the port's class), searched
    from an offset - random for source NAT in the kernel, a hash of the tuple here so that a replay is
    reproducible - in windows of at most 128 ports, halved after each miss down to 16.

    ``share`` (shard, shards): the range is the shard's own blocks of it, searched as if they were one
    contiguous range (the kernel's search over a smaller range)."""
    if proto in _ICMP_PROTOCOLS:
        lo, hi = (0, 65535) if rng.port_lo is None else (rng.port_lo, rng.port_hi or rng.port_lo)
    elif rng.port_lo is None:
        if not is_src:
            return port  # a destination's port is never changed without a range
        lo, hi = _nf_port_class(port)
    else:
        lo, hi = min(rng.port_lo, rng.port_hi or rng.port_lo), max(rng.port_lo, rng.port_hi or rng.port_lo)
    at = None
    if share is not None:
        spans = list(_own_ranges(lo, hi, lo, *share))
        starts = []
        total = 0
        for a, b in spans:
            starts.append(total)
            total += b - a + 1
        if not total:
            return None

        def at(i: int) -> int:
            k = bisect_right(starts, i) - 1
            return spans[k][0] + i - starts[k]

        lo, hi = 0, total - 1
    size = hi - lo + 1
    rounds = 0
    off = 0 if not is_src and not rng.random_all else _offset(src, sport, dst, dport, 0)
    attempts = min(size, NF_NAT_MAX_ATTEMPTS)
    while True:
        if at is None:
            p = _search(lo, hi, off % size, lambda q: used(addr, q), attempts)
        else:
            i = _search(lo, hi, off % size, lambda q: used(addr, at(q)), attempts)
            p = at(i) if i is not None else None
        if p is not None:
            return p
        if attempts >= size or attempts < 16:
            return None
        attempts //= 2
        rounds += 1
        off = _offset(src, sport, dst, dport, rounds)


def _offset(src: int, sport: int, dst: int, dport: int, salt: int) -> int:
    words = [src & _M32, (src >> 32) & _M32, dst & _M32, (dst >> 32) & _M32, (sport << 16 | dport) & _M32]
    return jhash2(words, salt) & 0xFFFF


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M32


def jhash2(words: list[int], initval: int) -> int:
    """Linux's ``jhash2`` (Bob Jenkins' lookup3 over 32-bit words), as nf_nat hashes addresses."""
    a = b = c = (0xDEADBEEF + (len(words) << 2) + initval) & _M32
    k = list(words)
    while len(k) > 3:
        a = (a + k[0]) & _M32
        b = (b + k[1]) & _M32
        c = (c + k[2]) & _M32
        # __jhash_mix
        a = (a - c) & _M32
        a ^= _rol(c, 4)
        c = (c + b) & _M32
        b = (b - a) & _M32
        b ^= _rol(a, 6)
        a = (a + c) & _M32
        c = (c - b) & _M32
        c ^= _rol(b, 8)
        b = (b + a) & _M32
        a = (a - c) & _M32
        a ^= _rol(c, 16)
        c = (c + b) & _M32
        b = (b - a) & _M32
        b ^= _rol(a, 19)
        a = (a + c) & _M32
        c = (c - b) & _M32
        c ^= _rol(b, 4)
        b = (b + a) & _M32
        k = k[3:]
    if not k:
        return c
    if len(k) == 3:
        c = (c + k[2]) & _M32
    if len(k) >= 2:
        b = (b + k[1]) & _M32
    a = (a + k[0]) & _M32
    # __jhash_final
    c ^= b
    c = (c - _rol(b, 14)) & _M32
    a ^= c
    a = (a - _rol(c, 11)) & _M32
    b ^= a
    b = (b - _rol(a, 25)) & _M32
    c ^= b
    c = (c - _rol(b, 16)) & _M32
    a ^= c
    a = (a - _rol(c, 4)) & _M32
    b ^= a
    b = (b - _rol(a, 14)) & _M32
    c ^= b
    c = (c - _rol(b, 24)) & _M32
    return c


def _raw_words(version: int, addr: int) -> list[int]:
    """An address as ``union nf_inet_addr``'s four u32 words read on a little-endian host (x86)."""
    raw = addr.to_bytes(4 if version == 4 else 16, "big").ljust(16, b"\0")
    return [int.from_bytes(raw[i : i + 4], "little") for i in range(0, 16, 4)]


def _host_words(version: int, addr: int) -> list[int]:
    raw = addr.to_bytes(4 if version == 4 else 16, "big").ljust(16, b"\0")
    return [int.from_bytes(raw[i : i + 4], "big") for i in range(0, 16, 4)]


def nf_best_address(version: int, src: int, dst: int, lo: int, hi: int, persistent: bool = False) -> int:
    """``find_best_ips_proto``: the address of ``lo..hi`` the kernel gives a connection from ``src`` to
    ``dst`` - a hash of both, so that a client keeps its address (``--persistent``: of the source only)."""
    if lo == hi:
        return lo
    last = 0 if version == 4 else 3
    s, d = _raw_words(version, src), _raw_words(version, dst)
    j = jhash2(s, 0 if persistent else d[last])
    lo_w, hi_w = _host_words(version, lo), _host_words(version, hi)
    out = [0, 0, 0, 0]
    full = False
    for i in range(last + 1):
        if not full:
            minip, dist = lo_w[i], (hi_w[i] - lo_w[i] + 1) & _M32
        else:
            minip, dist = 0, _M32
        out[i] = (minip + ((j * dist) >> 32)) & _M32
        if out[i] != hi_w[i]:
            full = True
        if not persistent:
            j ^= d[i]
    if version == 4:
        return out[0]
    return (out[0] << 96) | (out[1] << 64) | (out[2] << 32) | out[3]
