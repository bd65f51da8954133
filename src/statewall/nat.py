"""NAT: translation rules compiled from the policy, the xlate table and PAT port allocation.

Owns every translation slot (``Xlate``) and the mapped ports in use. The engine asks two questions for a
new flow: ``untranslate_destination`` (UN-NAT: does a static translation own the destination the
initiator used?) and ``translate_source`` (which mapped address and port does the initiator get?).
Connections hold references to their xlates; an xlate's idle timer starts only when its last connection
is gone (ASA behaviour, reference A.3): ``timeout pat-xlate`` (0:00:30) for PAT slots and ``timeout
xlate`` (3:00:00) for dynamic one-to-one slots. Static translations never expire.

Mappings are endpoint-independent (RFC 4787 REQ-1, RFC 5382 REQ-1): the same real address and port keep
the same mapped port whatever the destination, for as long as the slot lives. The real source port is
kept when it is free, as Linux and the ASA both do; otherwise a port is taken from the same range class
(1-511, 512-1023, 1024-65535), so a privileged source port stays privileged.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .acl import CompiledMatch, _in_nets, _net
from .policy import NatRule, Policy

_PORT_CLASSES = ((1, 511), (512, 1023), (1024, 65535))


def _port_class(port: int) -> tuple[int, int]:
    for lo, hi in _PORT_CLASSES:
        if lo <= port <= hi:
            return lo, hi
    return 1024, 65535


class Xlate:
    """One translation slot: real (interface, address, port) <-> mapped (interface, address, port)."""

    __slots__ = (
        "kind",
        "version",
        "proto",
        "real_iface",
        "real_addr",
        "real_port",
        "mapped_iface",
        "mapped_addr",
        "mapped_port",
        "pat",
        "rule",
        "refcount",
        "created",
        "idle_since",
        "timeout",
        "key",
    )

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
    ):
        self.kind = kind
        self.version = version
        self.proto = proto
        self.real_iface = real_iface
        self.real_addr = real_addr
        self.real_port = real_port
        self.mapped_iface = mapped_iface
        self.mapped_addr = mapped_addr
        self.mapped_port = mapped_port
        self.pat = pat
        self.rule = rule
        self.refcount = 0
        self.created = created
        self.idle_since = created
        self.timeout = timeout
        self.key = key


@dataclass(slots=True)
class _Dynamic:
    rule: NatRule
    real_iface: str
    mapped_iface: str | None
    nets: tuple
    match: CompiledMatch | None
    pool_interface: bool
    pool_addrs: list[tuple[int, int]]  # (version, address)
    pat: bool


@dataclass(slots=True)
class _Static:
    rule: NatRule
    real_iface: str
    mapped_iface: str
    version: int
    real_net: int
    mapped_net: int
    mask: int
    proto: int | None
    real_port: int | None
    mapped_port: int | None


class NatFailure(Exception):
    """No mapped address or port could be found (pool exhausted)."""

    def __init__(self, rule: NatRule, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class NatTable:
    def __init__(self, policy: Policy, iface_address) -> None:
        # iface_address(iface, version, near) -> int | None: the interface's own address for PAT.
        self._iface_address = iface_address
        self.timeouts = policy.timeouts
        self.exempt: list[tuple[str, tuple, list[tuple[bool, CompiledMatch]], NatRule]] = []
        self.statics: list[_Static] = []
        self.dynamics: list[_Dynamic] = []
        for rule in policy.nat_rules:
            if rule.kind == "exempt":
                selectors: list[tuple[bool, CompiledMatch]] = []
                if rule.match is not None:
                    selectors.append((True, CompiledMatch(rule.match)))
                if rule.acl is not None and rule.acl in policy.access_lists:
                    for ace in policy.access_lists[rule.acl].rules:
                        if not ace.inactive:
                            selectors.append((ace.action == "permit", CompiledMatch(ace.match)))
                self.exempt.append((rule.real_interface, tuple(_net(n) for n in rule.real), selectors, rule))
            elif rule.kind == "static":
                mapped_nets = list(rule.mapped)
                if not mapped_nets and rule.pool is not None and rule.pool.interface:
                    # ``static (dmz,outside) tcp interface www ...``: the mapped side is the mapped
                    # interface's own address (port forwarding to the box's address).
                    for real in rule.real:
                        a = iface_address(rule.mapped_interface or "", real.version, None)
                        if a is not None:
                            bits = 32 if real.version == 4 else 128
                            mapped_nets.append(ipaddress.ip_network((a, bits)))
                elif not mapped_nets:
                    mapped_nets = list(rule.real)
                for real, mapped in zip(rule.real, mapped_nets):
                    _, rnet, mask = _net(real)
                    _, mnet, _ = _net(mapped)
                    self.statics.append(
                        _Static(
                            rule,
                            rule.real_interface,
                            rule.mapped_interface or "",
                            real.version,
                            rnet,
                            mnet,
                            mask,
                            rule.protocol,
                            rule.real_port,
                            rule.mapped_port,
                        )
                    )
            else:
                pool = rule.pool
                addrs: list[tuple[int, int]] = []
                if pool is not None:
                    for net in pool.addresses:
                        for a in net if net.num_addresses <= 65536 else [net.network_address]:
                            addrs.append((net.version, int(a)))
                    for lo, hi in pool.ranges:
                        for a in range(int(lo), int(hi) + 1):
                            addrs.append((lo.version, a))
                self.dynamics.append(
                    _Dynamic(
                        rule,
                        rule.real_interface,
                        rule.mapped_interface,
                        tuple(_net(n) for n in rule.real),
                        CompiledMatch(rule.match) if rule.match else None,
                        bool(pool is None or pool.interface),
                        addrs,
                        bool(pool is None or pool.interface or pool.pat),
                    )
                )
        self.xlates: dict[tuple, Xlate] = {}
        self._mapped_in_use: dict[tuple[int, int, int], set[int]] = {}  # (version, proto, addr) -> ports
        self._hosts_in_use: set[tuple[int, int]] = set()  # dynamic one-to-one mapped addresses
        self.most_used = 0

    # ---------------------------------------------------------------------------------------------
    # UN-NAT: statics own destinations

    def untranslate_destination(self, version, proto, in_iface, dst, dport):
        """For a new flow entering ``in_iface``: (real_dst, real_dport, real_iface, static) or None."""
        for st in self.statics:
            if st.mapped_iface != in_iface or st.version != version:
                continue
            if dst & st.mask != st.mapped_net:
                continue
            if st.proto is not None:
                if st.proto != proto or st.mapped_port != dport:
                    continue
                return (st.real_net | (dst & ~st.mask & _all(version)), st.real_port, st.real_iface, st)
            return (st.real_net | (dst & ~st.mask & _all(version)), dport, st.real_iface, st)
        return None

    # ---------------------------------------------------------------------------------------------
    # Source translation

    def is_exempt(self, version, proto, in_iface, src, sport, dst, dport) -> NatRule | None:
        for iface, nets, selectors, rule in self.exempt:
            if iface != in_iface:
                continue
            if nets and not _in_nets(version, src, nets):
                continue
            if selectors:
                # The access list decides: the first matching entry, permit = exempt (ASA nat 0 acl).
                for permit, match in selectors:
                    if match.matches(version, proto, src, sport, dst, dport, 0, 0):
                        if permit:
                            return rule
                        break
                continue
            return rule
        return None

    def find_static_source(self, version, proto, in_iface, out_iface, src, sport):
        for st in self.statics:
            if st.real_iface != in_iface or st.mapped_iface != out_iface or st.version != version:
                continue
            if src & st.mask != st.real_net:
                continue
            if st.proto is not None and (st.proto != proto or st.real_port != sport):
                continue
            return st
        return None

    def find_dynamic(self, version, proto, in_iface, out_iface, src, sport, dst, dport) -> _Dynamic | None:
        for dyn in self.dynamics:
            if dyn.real_iface != in_iface:
                continue
            if dyn.mapped_iface is not None and dyn.mapped_iface != out_iface:
                continue
            if dyn.nets and not _in_nets(version, src, dyn.nets):
                continue
            if dyn.match is not None and not dyn.match.matches(version, proto, src, sport, dst, dport, 0, 0):
                continue
            return dyn
        return None

    def translate_source(self, version, proto, in_iface, out_iface, src, sport, dst, dport, now):
        """The xlate for a new flow's initiator, or None when no rule translates it.

        Returns ``(xlate, created)``; raises ``NatFailure`` when a rule applies but no slot is free.
        """
        if self.is_exempt(version, proto, in_iface, src, sport, dst, dport) is not None:
            return None, False
        st = self.find_static_source(version, proto, in_iface, out_iface, src, sport)
        if st is not None:
            mapped = st.mapped_net | (src & ~st.mask & _all(version))
            mport = st.mapped_port if st.proto is not None else sport
            key = (
                "static",
                version,
                st.proto if st.proto is not None else 0,
                in_iface,
                src,
                sport if st.proto is not None else 0,
                out_iface,
            )
            x = self.xlates.get(key)
            if x is None:
                x = Xlate(
                    "static",
                    version,
                    proto,
                    in_iface,
                    src,
                    sport if st.proto else 0,
                    out_iface,
                    mapped,
                    mport if st.proto else 0,
                    st.proto is not None,
                    st.rule,
                    now,
                    0.0,
                    key,
                )
                self._add(x)
                return x, False  # statics exist by configuration; no 305011 for them
            return x, False
        dyn = self.find_dynamic(version, proto, in_iface, out_iface, src, sport, dst, dport)
        if dyn is None:
            return None, False
        if dyn.pat:
            key = ("pat", version, proto, in_iface, src, sport, out_iface)
            x = self.xlates.get(key)
            if x is not None:
                return x, False
            maddr = self._pool_address(dyn, version, out_iface, dst)
            if maddr is None:
                raise NatFailure(
                    dyn.rule, f"no {('IPv4', 'IPv6')[version == 6]} address for PAT on {out_iface}"
                )
            mport = self._alloc_port(version, proto, maddr, sport)
            if mport is None:
                raise NatFailure(dyn.rule, "all PAT ports in use")
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
                dyn.rule,
                now,
                self.timeouts.pat_xlate,
                key,
            )
            self._add(x)
            return x, True
        key = ("nat", version, 0, in_iface, src, 0, out_iface)
        x = self.xlates.get(key)
        if x is not None:
            return x, False
        for v, a in dyn.pool_addrs:
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
                    dyn.rule,
                    now,
                    self.timeouts.xlate,
                    key,
                )
                self._add(x)
                return x, True
        raise NatFailure(dyn.rule, "dynamic NAT pool exhausted")

    def _pool_address(self, dyn: _Dynamic, version: int, out_iface: str, dst: int) -> int | None:
        if dyn.pool_interface:
            return self._iface_address(out_iface, version, dst)
        for v, a in dyn.pool_addrs:
            if v == version:
                return a
        return None

    def _alloc_port(self, version: int, proto: int, maddr: int, want: int) -> int | None:
        used = self._mapped_in_use.setdefault((version, proto, maddr), set())
        if want and want not in used:
            used.add(want)
            return want
        lo, hi = _port_class(want or 1024)
        span = hi - lo + 1
        start = (want - lo + 1) % span if want else 0
        for i in range(span):
            p = lo + (start + i) % span
            if p not in used:
                used.add(p)
                return p
        return None

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
        x.refcount -= 1
        if x.refcount <= 0:
            x.refcount = 0
            x.idle_since = now
            return x.kind != "static" and x.timeout > 0
        return False

    def expire(self, x: Xlate, now: float) -> float | None:
        """Remove ``x`` if idle long enough; otherwise return the time to look again (None: never)."""
        if x.refcount > 0 or x.kind == "static" or x.timeout <= 0:
            return None
        due = x.idle_since + x.timeout
        if due > now:
            return due
        self.remove(x)
        return -1.0

    def remove(self, x: Xlate) -> None:
        if self.xlates.get(x.key) is not x:
            return
        del self.xlates[x.key]
        if x.pat:
            used = self._mapped_in_use.get((x.version, x.proto, x.mapped_addr))
            if used is not None:
                used.discard(x.mapped_port)
        elif x.kind == "dynamic":
            self._hosts_in_use.discard((x.version, x.mapped_addr))


def _all(version: int) -> int:
    return (1 << (32 if version == 4 else 128)) - 1
