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
* A packet to the firewall itself belongs to its source; a packet the key cannot read (too short, not
  IP) goes to shard 0, whose engine drops and counts it as one process would.

Captures record hosts' own addresses (they were taken without the firewall), so replies carry the
inside host's real address and need no translation table here. Live, a reply arrives at the mapped
address: there the PAT port block says the owner (``nat`` allocates each shard's ports from its own
blocks; docs/scale.md).
"""

from __future__ import annotations

import zlib

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
        if self.routes.local_interface(version, dst) is not None:
            return shard_of_host(version, src, count)
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

    def __call__(self, data: bytes | bytearray, pinned: str | None = None) -> int:
        if self.count == 1:
            return 0
        flow = _flow(data)
        if flow is None:
            return 0
        version, src, dst, quoted = flow
        # A pinned interface is where the packet itself entered; a quoted packet went the other way.
        return self.owner(version, src, dst, None if quoted else pinned)
