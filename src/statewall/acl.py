"""Access control: access lists compiled to matchers, bound to interfaces, and the ASA's security levels.

Owns the decision "may this new flow be created?" for the ASA model (reference A.6): the ingress
interface's ``access-group ... in`` (then the global one), the egress ``out`` list, and, where no access
list is bound, the security-level default: higher to lower allowed, lower to higher denied, equal levels
denied unless ``same-security-traffic permit`` says otherwise. Hit counters live on the compiled rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from .policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, AccessRule, Match, Policy

_L4_PORTS = (PROTO_TCP, PROTO_UDP)


class CompiledMatch:
    """A ``policy.Match`` with networks turned into (version, network, mask) integers."""

    __slots__ = (
        "protocol",
        "protocol_negate",
        "sources",
        "source_negate",
        "destinations",
        "destination_negate",
        "source_ports",
        "destination_ports",
        "icmp_type",
        "icmp_code",
        "family",
    )

    def __init__(self, m: Match) -> None:
        self.protocol = m.protocol
        self.protocol_negate = m.protocol_negate
        self.sources = tuple(_net(n) for n in m.sources)
        self.source_negate = m.source_negate
        self.destinations = tuple(_net(n) for n in m.destinations)
        self.destination_negate = m.destination_negate
        self.source_ports = m.source_ports
        self.destination_ports = m.destination_ports
        self.icmp_type = m.icmp_type
        self.icmp_code = m.icmp_code
        self.family = m.family

    def matches(
        self, version: int, proto: int, src: int, sport: int, dst: int, dport: int, itype: int, icode: int
    ) -> bool:
        if self.family is not None and self.family != version:
            return False
        p = self.protocol
        # The protocol must match exactly (ASA "icmp" is not "icmp6").
        if p is not None and (p == proto) == self.protocol_negate:
            return False
        if self.sources and _in_nets(version, src, self.sources) == self.source_negate:
            return False
        if self.destinations and _in_nets(version, dst, self.destinations) == self.destination_negate:
            return False
        if proto in _L4_PORTS:
            for pm in self.source_ports:
                if not pm.matches(sport):
                    return False
            for pm in self.destination_ports:
                if not pm.matches(dport):
                    return False
        elif self.source_ports or self.destination_ports:
            return False
        if self.icmp_type is not None:
            if proto not in (PROTO_ICMP, PROTO_ICMPV6) or itype != self.icmp_type:
                return False
            if self.icmp_code is not None and icode != self.icmp_code:
                return False
        return True


def _net(n) -> tuple[int, int, int]:
    bits = 32 if n.version == 4 else 128
    mask = ((1 << bits) - 1) ^ ((1 << (bits - n.prefixlen)) - 1)
    return (n.version, int(n.network_address), mask)


def _in_nets(version: int, addr: int, nets: tuple[tuple[int, int, int], ...]) -> bool:
    # A plain loop: cheaper than any() over a generator on this per-new-flow path.
    for v, net, mask in nets:  # noqa: SIM110
        if v == version and addr & mask == net:
            return True
    return False


class CompiledRule:
    """An ACE compiled for matching, with its hit count. An ACE naming network objects or groups has
    ``elements``: the (sources, destinations) pairs the ASA expands it into, in the order ``show
    access-list`` prints them (every source network with every destination network), each counting
    its own hits in ``element_hits`` (the first element holding the flow's two addresses)."""

    __slots__ = ("rule", "match", "permit", "hits", "log", "elements", "element_hits")

    def __init__(self, rule: AccessRule, objects: dict | None = None) -> None:
        self.rule = rule
        self.match = CompiledMatch(rule.match)
        self.permit = rule.action == "permit"
        self.hits = 0
        self.log = rule.log
        self.elements: tuple = ()
        src = objects.get(rule.source_object) if objects and rule.source_object else None
        dst = objects.get(rule.destination_object) if objects and rule.destination_object else None
        if src is not None or dst is not None:
            srcs = [(_net(n),) for n in src.networks] if src is not None else [()]
            dsts = [(_net(n),) for n in dst.networks] if dst is not None else [()]
            self.elements = tuple((s, d) for s in srcs for d in dsts)
        self.element_hits = [0] * len(self.elements)

    def count_element(self, version: int, src: int, dst: int) -> None:
        """Count a hit on the first element holding ``src`` and ``dst`` (an element without one side
        holds any address there)."""
        for i, (s, d) in enumerate(self.elements):
            if (not s or _in_nets(version, src, s)) and (not d or _in_nets(version, dst, d)):
                self.element_hits[i] += 1
                return


@dataclass(slots=True)
class AclDecision:
    """Outcome of the access check for a new flow.

    ``permitted``; ``rule`` the entry that decided (None = implicit deny or security-level default);
    ``acl`` the list's name (None when security levels decided); ``reason`` a short explanation.
    """

    permitted: bool
    rule: CompiledRule | None
    acl: str | None
    reason: str
    logged: list[CompiledRule]
    matched: tuple[CompiledRule, ...] = ()  # the entries counted (a permitted decision)

    def count_again(self, version: int, src: int, dst: int) -> None:
        """Count the hits of this decision's entries once more: a new flow of the same class whose
        decision the engine kept (``statewall.engine.flowclass``) counts as ``check`` would."""
        for cr in self.matched:
            cr.hits += 1
            if cr.elements:
                cr.count_element(version, src, dst)


class AccessControl:
    """The access lists bound to interfaces, compiled once per policy."""

    def __init__(self, policy: Policy) -> None:
        self.levels = {name: itf.security_level for name, itf in policy.interfaces.items()}
        self.same_inter = policy.same_security_inter
        self.same_intra = policy.same_security_intra
        compiled: dict[str, list[CompiledRule]] = {
            name: [CompiledRule(r, policy.network_objects) for r in acl.rules if not r.inactive]
            for name, acl in policy.access_lists.items()
        }
        self.compiled = compiled
        self.inbound: dict[str, tuple[str, list[CompiledRule]]] = {}
        self.outbound: dict[str, tuple[str, list[CompiledRule]]] = {}
        self.global_: tuple[str, list[CompiledRule]] | None = None
        self.group_origin: dict[tuple[str | None, str], object] = {}
        for g in policy.access_groups:
            rules = compiled.get(g.acl, [])
            if g.interface is None:
                self.global_ = (g.acl, rules)
            elif g.direction == "in":
                self.inbound[g.interface] = (g.acl, rules)
            else:
                self.outbound[g.interface] = (g.acl, rules)
            self.group_origin[(g.interface, g.direction)] = g.origin

    @staticmethod
    def _first(rules, version, proto, src, sport, dst, dport, itype, icode, logged):
        for cr in rules:
            if cr.match.matches(version, proto, src, sport, dst, dport, itype, icode):
                cr.hits += 1
                if cr.elements:
                    cr.count_element(version, src, dst)
                if cr.log:
                    logged.append(cr)
                return cr
        return None

    def check(
        self,
        in_iface: str,
        out_iface: str,
        version: int,
        proto: int,
        src: int,
        sport: int,
        dst: int,
        dport: int,
        itype: int = 0,
        icode: int = 0,
    ) -> AclDecision:
        logged: list[CompiledRule] = []
        lin = self.levels.get(in_iface, 0)
        lout = self.levels.get(out_iface, 0)
        if in_iface == out_iface:
            if not self.same_intra:
                return AclDecision(
                    False, None, None, "same-security-traffic intra-interface not permitted", []
                )
        elif lin == lout and not self.same_inter:
            return AclDecision(False, None, None, "same-security-traffic inter-interface not permitted", [])
        bound = self.inbound.get(in_iface)
        args = (version, proto, src, sport, dst, dport, itype, icode, logged)
        if bound is not None or self.global_ is not None:
            # Interface rules first, then global rules; the implicit deny closes the global list.
            decided = None
            acl_name = None
            for group in (bound, self.global_):
                if group is None:
                    continue
                acl_name = group[0]
                decided = self._first(group[1], *args)
                if decided is not None:
                    break
            if decided is None:
                return AclDecision(False, None, acl_name, "implicit deny", logged)
            if not decided.permit:
                return AclDecision(False, decided, decided.rule.acl, "denied by rule", logged)
            reason = "permitted by rule"
        elif lin > lout or (lin == lout and self.same_inter) or (in_iface == out_iface and self.same_intra):
            decided = None
            reason = f"security-level {lin} to {lout}: higher to lower is permitted"
        else:
            return AclDecision(
                False, None, None, f"security-level {lin} to {lout}: lower to higher needs an access list", []
            )
        out_bound = self.outbound.get(out_iface)
        if out_bound is not None:
            cr = self._first(out_bound[1], *args)
            if cr is None:
                return AclDecision(False, None, out_bound[0], "implicit deny (out)", logged)
            if not cr.permit:
                return AclDecision(False, cr, out_bound[0], "denied by rule (out)", logged)
            matched = (decided, cr) if decided is not None else (cr,)
        else:
            matched = (decided,) if decided is not None else ()
        return AclDecision(True, decided, decided.rule.acl if decided else None, reason, logged, matched)
