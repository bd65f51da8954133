"""Routing: which interface (and next hop) reaches an address, and which addresses are the firewall's own.

Owns the compiled route table: connected networks from the interfaces' addresses plus the static routes of
the policy, looked up longest-prefix-first. Connected routes win over static ones of the same prefix, as
on any router (administrative distance 0).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .packet import addr_to_str
from .policy import BUILTIN, Origin, Policy


@dataclass(frozen=True, slots=True)
class RouteEntry:
    interface: str
    version: int
    network: int
    prefixlen: int
    gateway: int | None
    distance: int
    origin: Origin

    def describe(self) -> str:
        cls = ipaddress.IPv4Network if self.version == 4 else ipaddress.IPv6Network
        net = cls((self.network, self.prefixlen))
        return f"{net} via {'connected' if self.gateway is None else _addr(self.version, self.gateway)}"


_addr = addr_to_str


def _mask(version: int, prefixlen: int) -> int:
    bits = 32 if version == 4 else 128
    return ((1 << bits) - 1) ^ ((1 << (bits - prefixlen)) - 1)


class RouteTable:
    """Longest-prefix match over per-prefix-length dictionaries (few prefix lengths in practice)."""

    __slots__ = ("_tables", "_lengths", "_local", "_iface_addrs")

    def __init__(self, policy: Policy) -> None:
        self._tables: dict[int, dict[int, dict[int, RouteEntry]]] = {4: {}, 6: {}}
        self._local: dict[tuple[int, int], str] = {}
        self._iface_addrs: dict[tuple[str, int], list[int]] = {}
        for itf in policy.interfaces.values():
            if itf.shutdown:
                continue
            for addr in itf.addresses():
                v = addr.version
                self._local[(v, int(addr.ip))] = itf.name
                self._iface_addrs.setdefault((itf.name, v), []).append(int(addr.ip))
                net = addr.network
                self._add(
                    RouteEntry(itf.name, v, int(net.network_address), net.prefixlen, None, 0, itf.origin)
                )
        for r in policy.routes:
            if r.interface not in policy.interfaces:
                continue
            gw = int(r.gateway) if r.gateway is not None else None
            self._add(
                RouteEntry(
                    r.interface,
                    r.network.version,
                    int(r.network.network_address),
                    r.network.prefixlen,
                    gw,
                    r.distance,
                    r.origin or BUILTIN,
                )
            )
        self._lengths = {
            v: [(plen, _mask(v, plen)) for plen in sorted(t, reverse=True)] for v, t in self._tables.items()
        }

    def _add(self, entry: RouteEntry) -> None:
        by_len = self._tables[entry.version].setdefault(entry.prefixlen, {})
        old = by_len.get(entry.network)
        if old is None or entry.distance < old.distance:
            by_len[entry.network] = entry

    def lookup(self, version: int, addr: int) -> RouteEntry | None:
        tables = self._tables[version]
        for plen, mask in self._lengths[version]:
            entry = tables[plen].get(addr & mask)
            if entry is not None:
                return entry
        return None

    def local_interface(self, version: int, addr: int) -> str | None:
        """The interface owning ``addr`` if it is one of the firewall's own addresses."""
        return self._local.get((version, addr))

    def interface_address(self, iface: str, version: int, near: int | None = None) -> int | None:
        """An address of ``iface`` in ``version``; the one on the same network as ``near`` if any."""
        addrs = self._iface_addrs.get((iface, version))
        if not addrs:
            return None
        if near is not None:
            for plen, table in self._tables[version].items():
                for entry in table.values():
                    if entry.interface == iface and entry.gateway is None and entry.prefixlen == plen:
                        m = _mask(version, plen)
                        if near & m == entry.network:
                            for a in addrs:
                                if a & m == entry.network:
                                    return a
        return addrs[0]

    def entries(self) -> list[RouteEntry]:
        out = []
        for v in (4, 6):
            for plen, _ in self._lengths[v]:
                out.extend(self._tables[v][plen].values())
        return out
