"""Which shard owns a packet: the inside host's.

A shard is one engine (``Firewall``) that sees every packet of the hosts it owns and nothing else, so
that all state of a host stays in one place: its connections in both directions, its FTP data
connections (the client is one of their two ends whichever side opens them), its per-client limits and
its PAT translations. The owner is found from the packet alone, the routing table and the interfaces'
security levels, with one small table for traffic between hosts of equal level:

* The packet's two ends are placed by the routing table: it enters from the interface that reaches
  its source (or the interface a capture is pinned to) and leaves by the one that reaches its
  destination. The end on the side of the higher security level is the inside host: an inside client's
  request, the outside server's reply to it, an outside client's request to an inside server and an
  active-FTP data connection opened from outside towards the client all map to the same host.
* An ICMP error travels from a router (anywhere) to one end of a connection it quotes; it belongs to
  the connection, so the key is computed from the quoted packet (its source, destination and their
  interfaces), not from the error's own addresses.
* Between two ends of equal level (two inside hosts, same-security interfaces, an iptables ruleset,
  which has no levels) the owner is the initiator's: the first packet seen between an unordered
  address pair fixes its shard (the sender's), and every later packet between the pair, either way and
  on any port (FTP data, ICMP errors about them), follows it. The table is bounded (``PAIR_TABLE_MAX``):
  a pair idle long enough to be evicted starts over with whoever speaks next.
* A packet to the firewall itself belongs to its source, and one from the firewall's own address to
  its destination: a connection between the box (or a published port of it, an iptables DNAT's
  client side, a server's reply captured there) and a host is that host's.
* An address a static translation maps (ASA ``static``, object and twice NAT statics that change the
  address) stands for its real address: a server captured outside its static, the firewall's output
  to it captured there and the same packets captured inside are keyed alike.
* An address behind which a dynamic translation hides hosts (PAT and dynamic NAT pools, an interface's
  PAT address, iptables ``SNAT --to-source`` addresses and a ``MASQUERADE`` interface's address) is
  keyed by the other end, like the box's own. Not modelled with more than one shard: which inside
  host such a packet belongs to is not in the packet. A capture taken on the translated side of a
  dynamic translation (the firewall's output there, a post-NAT reply) is therefore not keyed by the
  inside host, and the mapped port it carries is the capturing box's choice while each shard allocates
  from its own port blocks; ``peer`` says so of the packet just keyed (the summary counts them). One shard
  (``--workers 1``) replays them as one process does.
* A packet the key cannot read (too short, not IP) goes to shard 0, whose engine drops and counts it as
  one process would.

Captures taken without the firewall record hosts' own addresses, so replies carry the inside host's
real address and need no translation table here. Live, a reply arrives at the mapped address: there
the TUN steering program takes the owner from the PAT port block (``live/steer.py``; each worker
allocates from its own blocks, docs/scale.md).
"""

from __future__ import annotations

import zlib
from typing import Any

from ..nat import NatTable
from ..policy import Policy
from ..routing import RouteTable

# Unordered address pairs of equal level remembered with their initiator's shard.
PAIR_TABLE_MAX = 1 << 20

_ICMP4_ERRORS = frozenset({3, 4, 5, 11, 12})  # unreachable, source quench, redirect, time exceeded, parameter


def shard_of_host(version: int, addr: int, count: int) -> int:
    """The shard of one host: a stable hash of its address (the same in every process and run)."""
    if count == 1:
        return 0
    return zlib.crc32(addr.to_bytes(16 if version == 6 else 4, "big")) % count


def _flow(data: bytes | bytearray) -> tuple[int, int, int, bool] | None:
    """(version, source, destination, quoted) of the flow a packet belongs to; for an ICMP error the
    quoted packet's (``quoted`` True). None when the header is not there."""
    if len(data) < 20:
        return None
    version = data[0] >> 4
    if version == 4:
        ihl = (data[0] & 15) * 4
        q = ihl + 8
        first_fragment = not ((data[6] & 0x1F) or data[7])
        icmp_error = data[9] == 1 and first_fragment and len(data) >= q + 20 and data[ihl] in _ICMP4_ERRORS
        if icmp_error and data[q] >> 4 == 4:
            src = int.from_bytes(data[q + 12 : q + 16], "big")
            return 4, src, int.from_bytes(data[q + 16 : q + 20], "big"), True
        return 4, int.from_bytes(data[12:16], "big"), int.from_bytes(data[16:20], "big"), False
    if version == 6 and len(data) >= 40:
        if data[6] == 58 and len(data) >= 48 + 40 and data[40] < 128 and data[48] >> 4 == 6:
            q = 48  # an ICMPv6 error (types 1-4) right after the fixed header
            src, dst = (
                int.from_bytes(data[q + 8 : q + 24], "big"),
                int.from_bytes(data[q + 24 : q + 40], "big"),
            )
            return 6, src, dst, True
        return 6, int.from_bytes(data[8:24], "big"), int.from_bytes(data[24:40], "big"), False
    return None


class ShardKey:
    """``shard(data, pinned_iface)`` -> the index of the shard that owns the packet (0..count-1)."""

    def __init__(self, policy: Policy, count: int) -> None:
        if count < 1:
            raise ValueError("at least one shard")
        self.count = count
        self.routes = RouteTable(policy)
        self.levels = {name: itf.security_level for name, itf in policy.interfaces.items()}
        self.pairs: dict[tuple[int, int, int], int] = {}
        self._route_cache: dict[tuple[int, int], str | None] = {}
        self.statics, self.hidden, self.hidden_spans = _translations(policy, self.routes)
        # Whether the last packet keyed was keyed by its peer because an end was a dynamic
        # translation's mapped address (with more than one shard: not modelled, see the module's
        # docstring).
        self.peer = False

    def _iface(self, version: int, addr: int) -> str | None:
        key = (version, addr)
        cache = self._route_cache
        hit = cache.get(key, False)
        if hit is not False:
            return hit
        route = self.routes.lookup(version, addr)
        iface = route.interface if route is not None else None
        if len(cache) >= PAIR_TABLE_MAX:
            cache.clear()
        cache[key] = iface
        return iface

    def owner(self, version: int, src: int, dst: int, in_iface: str | None) -> int:
        """The shard of a flow from ``src`` to ``dst`` entering on ``in_iface`` (None: by route)."""
        count = self.count
        if count == 1:
            return 0
        statics = self.statics
        if statics:
            real = _real(statics, version, dst)
            if real is not None:
                dst = real
            real = _real(statics, version, src)
            if real is not None:
                src, in_iface = real, None  # entered from where its real host sits
        routes = self.routes
        if routes.local_interface(version, dst) is not None:
            if self._hidden(version, dst):
                self.peer = True
            return shard_of_host(version, src, count)
        if routes.local_interface(version, src) is not None:
            if self._hidden(version, src):
                self.peer = True
            return shard_of_host(version, dst, count)
        if self.hidden or self.hidden_spans:
            if self._hidden(version, dst):
                self.peer = True
                return shard_of_host(version, src, count)
            if self._hidden(version, src):
                self.peer = True
                return shard_of_host(version, dst, count)
        if in_iface is None:
            in_iface = self._iface(version, src)
        out_iface = self._iface(version, dst)
        lin = self.levels.get(in_iface) if in_iface is not None else None
        lout = self.levels.get(out_iface) if out_iface is not None else None
        if lin is not None and lout is not None and lin != lout:
            return shard_of_host(version, src if lin > lout else dst, count)
        if lin is None or lout is None:
            return shard_of_host(version, src, count)
        pair = (version, src, dst) if src < dst else (version, dst, src)
        shard = self.pairs.get(pair)
        if shard is None:
            shard = shard_of_host(version, src, count)  # the first sender seen is the initiator
            if len(self.pairs) >= PAIR_TABLE_MAX:
                for old in list(self.pairs)[: PAIR_TABLE_MAX // 2]:  # the oldest half
                    del self.pairs[old]
            self.pairs[pair] = shard
        return shard

    def _hidden(self, version: int, addr: int) -> bool:
        if (version, addr) in self.hidden:
            return True
        return any(v == version and lo <= addr <= hi for v, lo, hi in self.hidden_spans)

    def __call__(self, data: bytes | bytearray, pinned: str | None = None) -> int:
        self.peer = False
        if self.count == 1:
            return 0
        flow = _flow(data)
        if flow is None:
            return 0
        version, src, dst, quoted = flow
        # A pinned interface is where the packet itself entered; a quoted packet went the other way.
        return self.owner(version, src, dst, None if quoted else pinned)


def _real(statics: list[tuple[int, Any, Any]], version: int, addr: int) -> int | None:
    """The real address a static translation maps ``addr`` from, None when none does."""
    for v, mapped, real in statics:
        if v == version:
            i = mapped.index(addr)
            if i is not None:
                return real.at(i)
    return None


def _translations(policy: Policy, routes: RouteTable) -> tuple[list, set, list]:
    """(statics as (version, mapped, real) address sets, the set of (version, address) and the list of
    (version, low, high) ranges behind which dynamic translations hide hosts): the ASA's NAT table
    (``NatTable.steering_view``, as the live steering program reads it) and an iptables ruleset's
    source NAT."""
    table = NatTable(policy, routes.interface_address)
    view = table.steering_view(list(policy.interfaces))
    statics = [(v, mapped, real) for v, mapped, real, *_ in view["static"]]
    hidden = {(v, a) for v, a, _ in view["pat"]} | {(v, a) for v, a, _i, _ in view["one_to_one"]}
    spans: list[tuple[int, int, int]] = []
    devices = {itf.hardware or name: name for name, itf in policy.interfaces.items()}
    for version, tables in ((4, policy.netfilter), (6, policy.ip6_netfilter)):
        for table_ in (tables or {}).values():
            for chain in table_.chains.values():
                for rule in chain.rules:
                    if rule.target == "SNAT" and rule.target_args.get("addresses"):
                        lo, hi = rule.target_args["addresses"]
                        spans.append((version, int(lo), int(hi)))
                    elif rule.target == "MASQUERADE":
                        out = rule.match.out_interface
                        names = (
                            [devices.get(out, out)]
                            if out and not out.endswith("+")
                            else list(policy.interfaces)
                        )
                        for name in names:
                            a = routes.interface_address(name, version) if name else None
                            if a is not None:
                                hidden.add((version, a))
    return statics, hidden, spans
