"""What a configuration checker finds in a valid ASA configuration (as Batfish's analyses do), as warnings:

- an access-list entry that can never match, because one earlier entry of the same list matches
  everything it matches (only single earlier entries are considered, not unions of several);
- network and service objects, object-groups and time-ranges defined but never named by any command;
- access lists applied nowhere: no access-group, NAT, class-map, crypto map or other command names them;
- interfaces whose IPv4 subnets overlap.

(``nat`` ids without a ``global`` and the reverse are found by ``nat.finish``.) The checks run once the
file parsed without error and cost time linear in the number of entries: earlier entries are indexed by
the networks they match, so an entry is compared only with those that could cover it.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ...policy import AccessList, AccessRule, Match, PortMatch, Warning_

if TYPE_CHECKING:
    from .parser import Parser

_ANY = "any"


def run(p: Parser) -> None:
    for acl in p.policy.access_lists.values():
        _shadowed(p, acl)
    _unused(p)
    _overlapping_interfaces(p)


# --------------------------------------------------------------------------------------------------
# Shadowed entries


def _intervals(ports: tuple[PortMatch, ...]) -> list[tuple[int, int]]:
    """The ports a condition list matches (every condition must hold), as sorted disjoint intervals."""
    out = [(0, 65535)]
    for pm in ports:
        if pm.op == "eq":
            allowed = [(pm.low, pm.low)]
        elif pm.op == "lt":
            allowed = [(0, pm.low - 1)]
        elif pm.op == "gt":
            allowed = [(pm.low + 1, 65535)]
        elif pm.op == "neq":
            allowed = [(0, pm.low - 1), (pm.low + 1, 65535)]
        else:
            allowed = [(pm.low, pm.high if pm.high is not None else pm.low)]
        out = [(max(a, c), min(b, d)) for a, b in out for c, d in allowed if max(a, c) <= min(b, d)]
    return out


def _ports_cover(a: tuple[PortMatch, ...], b: tuple[PortMatch, ...]) -> bool:
    if not a:
        return True
    big = _intervals(a)
    return all(any(x <= lo and hi <= y for x, y in big) for lo, hi in _intervals(b))


def _nets_cover(a: tuple, b: tuple) -> bool:
    if not a:
        return True
    if not b:
        return False
    return all(any(n.version == m.version and n.subnet_of(m) for m in a) for n in b)  # type: ignore[arg-type]


def covers(a: Match, b: Match) -> bool:
    """Whether every packet ``b`` matches is matched by ``a`` (ASA entries: no negations)."""
    if a.protocol is not None and a.protocol != b.protocol:
        return False
    if a.family is not None and a.family != b.family:
        return False
    if not _nets_cover(a.sources, b.sources) or not _nets_cover(a.destinations, b.destinations):
        return False
    if not _ports_cover(a.source_ports, b.source_ports) or not _ports_cover(
        a.destination_ports, b.destination_ports
    ):
        return False
    if a.icmp_type is not None and (a.icmp_type != b.icmp_type):
        return False
    return a.icmp_code is None or a.icmp_code == b.icmp_code


def _key(nets: tuple) -> list:
    return [(n.version, n.prefixlen, int(n.network_address)) for n in nets] or [_ANY]


def _supernets(nets: tuple, lengths: set[tuple[int, int]]) -> list:
    """Index keys of every network that could contain the first of ``nets``."""
    out: list = [_ANY]
    if not nets:
        return out
    n = nets[0]
    bits = n.max_prefixlen
    addr = int(n.network_address)
    for version, length in lengths:
        if version == n.version and length <= n.prefixlen:
            mask = ((1 << bits) - 1) ^ ((1 << (bits - length)) - 1)
            out.append((version, length, addr & mask))
    return out


def _shadowed(p: Parser, acl: AccessList) -> None:
    index: dict[tuple, list[AccessRule]] = {}
    src_lengths: set[tuple[int, int]] = set()
    dst_lengths: set[tuple[int, int]] = set()
    i = 0
    rules = acl.rules
    while i < len(rules):
        j = i + 1
        while j < len(rules) and rules[j].element != 0:
            j += 1
        elements = [r for r in rules[i:j] if not r.inactive]
        if elements:
            culprit = None
            for r in elements:
                found = None
                for sk in _supernets(r.match.sources, src_lengths):
                    for dk in _supernets(r.match.destinations, dst_lengths):
                        for cand in index.get((sk, dk), ()):
                            if covers(cand.match, r.match):
                                found = cand
                                break
                        if found:
                            break
                    if found:
                        break
                if found is None:
                    culprit = None
                    break
                culprit = culprit or found
            if culprit is not None:
                first = elements[0]
                p.policy.warnings.append(
                    Warning_(
                        first.origin,
                        f"access-list {acl.name}: this entry can never match: the entry at line "
                        f"{culprit.origin.line} ('{culprit.origin.text}') matches everything it matches",
                        1,
                    )
                )
            for r in elements:
                for n in r.match.sources:
                    src_lengths.add((n.version, n.prefixlen))
                for n in r.match.destinations:
                    dst_lengths.add((n.version, n.prefixlen))
                for sk in _key(r.match.sources):
                    for dk in _key(r.match.destinations):
                        index.setdefault((sk, dk), []).append(r)
        i = j


# --------------------------------------------------------------------------------------------------
# Defined but never used


def _referenced(p: Parser) -> set[str]:
    policy = p.policy
    used = set(p.used_names)
    used.update(g.acl for g in policy.access_groups)
    for r in policy.nat_rules:
        for name in (
            r.acl,
            r.real_object,
            r.mapped_object,
            r.destination_real_object,
            r.destination_mapped_object,
            r.real_service,
            r.mapped_service,
        ):
            if name:
                used.add(name)
    for cm in policy.class_maps.values():
        used.update(m.acl for m in cm.matches if m.acl)
    for acl in policy.access_lists.values():
        for rule in acl.rules:
            for name in (rule.source_object, rule.destination_object):
                if name:
                    used.add(name)
    for obj in policy.network_objects.values():
        used.update(m for m in obj.members if isinstance(m, str))
    # Kept commands (crypto map match address, route-map match ip address, group-policy vpn-filter,
    # split-tunnel lists, capture, ...) name lists and objects anywhere after their first two words.
    for _, text in policy.passthrough:
        words = text.split()
        if words[:1] == ["access-list"]:
            continue
        used.update(words[1:])
    return used


def _unused(p: Parser) -> None:
    used = _referenced(p)
    policy = p.policy
    objects = [
        *(
            (o.name, "object-group" if o.group else "object", o.origin)
            for o in policy.network_objects.values()
        ),
        *(
            (o.name, f"{o.kind} object-group" if o.group else "service object", o.origin)
            for o in policy.service_objects.values()
        ),
        *((t.name, "time-range", t.origin) for t in policy.time_ranges.values()),
    ]
    for name, kind, origin in objects:
        if name in used:
            continue
        if kind == "object" and any(r.real_object == name for r in policy.nat_rules):
            continue
        p.policy.warnings.append(Warning_(origin, f"{kind} {name} is defined but never used", 1))
    for acl in policy.access_lists.values():
        if acl.name in used or not acl.rules:
            continue
        origin = acl.rules[0].origin
        p.policy.warnings.append(
            Warning_(
                origin,
                f"access-list {acl.name} is applied nowhere (no access-group, NAT, class-map or other "
                "command uses it)",
                1,
            )
        )


# --------------------------------------------------------------------------------------------------
# Interfaces


def _overlapping_interfaces(p: Parser) -> None:
    nets: list[tuple[ipaddress.IPv4Network, str, object]] = []
    for itf in p.policy.interfaces.values():
        for addr in itf.ipv4:
            nets.append((addr.network, itf.name, itf.origin))
    nets.sort(key=lambda x: (int(x[0].network_address), x[0].prefixlen))
    for i, (net, name, origin) in enumerate(nets):
        for other, other_name, _ in nets[i + 1 :]:
            if int(other.network_address) > int(net.broadcast_address):
                break
            if other_name != name:
                p.policy.warnings.append(
                    Warning_(
                        origin,  # type: ignore[arg-type]
                        f"interface {name} ({net}) overlaps interface {other_name} ({other})",
                        1,
                    )
                )
