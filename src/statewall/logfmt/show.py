"""The ASA's ``show access-list``, ``show nat``, ``show route``, ``show interface`` and ``show local-host``
listings, from records and the policy (``statewall.showtables`` builds the records from a firewall).

Layouts from the Cisco ASA command references (8.2, 8.4, 9.x: show access-list, show nat, show route,
show interface, show local-host). What statewall cannot know is left out rather than invented: MAC
addresses, hardware counters (overruns, CRC).
Hashes the ASA prints (``name hash``, the per-ACE value) are statewall's stable CRC-32 values
(``logfmt.asa.ace_hash``), not the ASA's.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..policy import NatRule, Origin, Policy
from .asa import NEWEST, ConnRecord, XlateRecord, ace_hash, format_duration, protocol_upper

# 8.3 rewrote NAT and show nat with it; the L (local) routes of show route came with 9.0.
NAT_83 = (8, 3)
ROUTE_LOCAL = (9, 0)


@dataclass(frozen=True, slots=True)
class AceRecord:
    """One access-control entry: its configuration text (without ``line N``), hit count, origin (for
    the hash) and, for an ACE naming object groups, its expanded elements (text, hash, hit count)."""

    text: str
    hits: int
    origin: Origin | None = None
    elements: tuple[tuple[str, int, int], ...] = ()
    inactive: bool = False


@dataclass(frozen=True, slots=True)
class AclRecord:
    name: str
    entries: tuple[AceRecord, ...]


@dataclass(frozen=True, slots=True)
class AceElement:
    """One element of an ACE that names object groups: its text as ``show access-list`` prints it,
    its hash (CRC-32 of that text: the second value of 106023's and 106100's pair) and its networks."""

    text: str
    hash: int
    sources: tuple
    destinations: tuple


def ace_elements(
    rule, objects: Mapping[str, object], services: Mapping[str, object] | None = None
) -> list[AceElement]:
    """The expanded elements of an ACE naming a network object or group (none for an inline ACE)."""
    from dataclasses import replace

    from ..dialects.asa.render import _rule

    src = objects.get(rule.source_object) if rule.source_object else None
    dst = objects.get(rule.destination_object) if rule.destination_object else None
    if src is None and dst is None:
        return []
    m = rule.match
    out = []
    for s in src.networks if src is not None else [None]:  # type: ignore[attr-defined]
        for d in dst.networks if dst is not None else [None]:  # type: ignore[attr-defined]
            one = replace(
                rule,
                match=replace(
                    m,
                    sources=(s,) if s is not None else m.sources,
                    destinations=(d,) if d is not None else m.destinations,
                ),
                source_object=None if s is not None else rule.source_object,
                destination_object=None if d is not None else rule.destination_object,
            )
            text = _rule(one, objects, services or {})
            out.append(AceElement(text, zlib.crc32(text.encode()), one.match.sources, one.match.destinations))
    return out


def _line_text(text: str, name: str, line: int) -> str:
    # "access-list OUT extended ..." -> "access-list OUT line 3 extended ..."
    head = f"access-list {name} "
    return f"{head}line {line} {text[len(head) :]}" if text.startswith(head) else text


def format_show_access_list(acls: Sequence[AclRecord], *, release: tuple[int, int] = NEWEST) -> str:
    """``show access-list``: the cached-flows header, then per list ``access-list OUT; 2 elements; name
    hash: 0x...`` and per ACE ``access-list OUT line 1 extended permit tcp any host 10.1.1.5 eq www
    (hitcnt=12) 0x...``, object-group ACEs followed by their expanded elements indented two spaces,
    each with its own ``(hitcnt=N)`` (the ACE's count is the sum of its elements')."""
    lines = [
        "access-list cached ACL log flows: total 0, denied 0 (deny-flow-max 4096)",
        "            alert-interval 300",
    ]
    for acl in acls:
        count = sum(max(1, len(e.elements)) for e in acl.entries)
        lines.append(
            f"access-list {acl.name}; {count} elements; name hash: 0x{zlib.crc32(acl.name.encode()):x}"
        )
        for i, e in enumerate(acl.entries, 1):
            tail = " (inactive)" if e.inactive else ""
            lines.append(
                f"{_line_text(e.text, acl.name, i)} (hitcnt={e.hits}){tail} 0x{ace_hash(e.origin):x}"
            )
            for etext, ehash, ehits in e.elements:
                lines.append(f"  {_line_text(etext, acl.name, i)} (hitcnt={ehits}) 0x{ehash:x}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# show nat


def _nat_side(nets: tuple, obj: str | None, interface: bool = False) -> str:
    if interface:
        return "interface"
    if obj:
        return obj
    if not nets:
        return "any"
    net = nets[0]
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _nat_text(rule: NatRule) -> str:
    mapped_if = rule.mapped_interface or "any"
    kind = "static" if rule.kind == "static" else "dynamic"
    real = _nat_side(rule.real, rule.real_object)
    pool_if = rule.pool is not None and rule.pool.interface
    mapped = _nat_side(rule.mapped, rule.mapped_object, interface=pool_if and not rule.mapped)
    if rule.kind == "exempt":
        mapped = real
        kind = "static"
    text = f"({rule.real_interface}) to ({mapped_if}) source {kind} {real} {mapped}"
    if rule.destination_real or rule.destination_mapped:
        dm = _nat_side(rule.destination_mapped, rule.destination_mapped_object, rule.destination_interface)
        dr = _nat_side(rule.destination_real, rule.destination_real_object)
        text += f" destination static {dm} {dr}"
    return text


def format_show_nat(
    policy: Policy,
    hits: Mapping[object, int],
    unhits: Mapping[object, int] | None = None,
    *,
    release: tuple[int, int] = NEWEST,
) -> str:
    """``show nat``: 8.3+ ``Manual NAT Policies (Section 1)`` / ``Auto NAT Policies (Section 2)`` with
    ``1 (inside) to (outside) source dynamic OBJ interface`` and ``    translate_hits = N,
    untranslate_hits = 0``; 8.2 ``NAT policies on Interface inside:`` with ``match ip ...`` lines.
    ``hits`` counts the translations built per rule (by the rule's origin): statewall counts a
    translation slot once when it is built (the ASA counts every connection translated). ``unhits``
    counts the connections opened to the rule's mapped address (UN-NAT), per rule: the reverse
    direction, one per connection, as the twice NAT samples of ``show nat detail`` (2/2 and 1/1 for
    one connection each way) suggest; Cisco's reference does not define the two counters."""
    unhits = unhits or {}
    rules = [r for r in policy.nat_rules if not r.inactive]
    lines: list[str] = []
    if release < NAT_83 or all(r.section == 0 for r in rules):
        by_if: dict[str, list[NatRule]] = {}
        for r in rules:
            by_if.setdefault(r.real_interface, []).append(r)
        for itf, group in by_if.items():
            lines.append(f"NAT policies on Interface {itf}:")
            for r in group:
                real = " ".join(_mask(n) for n in r.real) or "0.0.0.0 0.0.0.0"
                lines.append(f"  match ip {itf} {real} {r.mapped_interface or 'outside'} any")
                if r.kind == "exempt":
                    lines.append("    Identity NAT translation, pool 0")
                elif r.kind == "static":
                    mapped = " ".join(_mask(n) for n in r.mapped) or "interface"
                    lines.append(f"    static translation to {mapped}")
                else:
                    pool = "Interface PAT" if r.pool is not None and r.pool.interface else "pool"
                    lines.append(f"    dynamic translation to pool {r.nat_id or 0} ({pool})")
                t, u = hits.get(r.origin, 0), unhits.get(r.origin, 0)
                lines.append(f"    translate_hits = {t}, untranslate_hits = {u}")
        return "\n".join(lines) + "\n" if lines else ""
    for section, title in ((1, "Manual NAT Policies (Section 1)"), (2, "Auto NAT Policies (Section 2)"),
                           (3, "Manual NAT Policies (Section 3)")):  # fmt: skip
        group = [r for r in rules if r.section == section]
        if not group:
            continue
        lines.append(title)
        for i, r in enumerate(group, 1):
            lines.append(f"{i} {_nat_text(r)}")
            lines.append(
                f"    translate_hits = {hits.get(r.origin, 0)}, untranslate_hits = {unhits.get(r.origin, 0)}"
            )
    return "\n".join(lines) + "\n" if lines else ""


def _mask(net) -> str:
    if isinstance(net, ipaddress.IPv4Network):
        return f"{net.network_address} {net.netmask}"
    return str(net)


# --------------------------------------------------------------------------------------------------
# show route

_ROUTE_CODES_8 = (
    "Codes: C - connected, S - static, I - IGRP, R - RIP, M - mobile, B - BGP\n"
    "       D - EIGRP, EX - EIGRP external, O - OSPF, IA - OSPF inter area\n"
    "       N1 - OSPF NSSA external type 1, N2 - OSPF NSSA external type 2\n"
    "       E1 - OSPF external type 1, E2 - OSPF external type 2, E - EGP\n"
    "       i - IS-IS, L1 - IS-IS level-1, L2 - IS-IS level-2, ia - IS-IS inter area\n"
    "       * - candidate default, U - per-user static route, o - ODR\n"
    "       P - periodic downloaded static route\n"
)
_ROUTE_CODES_9 = (
    "Codes: L - local, C - connected, S - static, R - RIP, M - mobile, B - BGP\n"
    "       D - EIGRP, EX - EIGRP external, O - OSPF, IA - OSPF inter area\n"
    "       N1 - OSPF NSSA external type 1, N2 - OSPF NSSA external type 2\n"
    "       E1 - OSPF external type 1, E2 - OSPF external type 2, V - VPN\n"
    "       i - IS-IS, su - IS-IS summary, L1 - IS-IS level-1, L2 - IS-IS level-2\n"
    "       ia - IS-IS inter area, * - candidate default, U - per-user static route\n"
    "       o - ODR, P - periodic downloaded static route, + - replicated route\n"
)


def format_show_route(policy: Policy, *, release: tuple[int, int] = NEWEST) -> str:
    """``show route`` (IPv4): the codes legend, the gateway of last resort, then static routes
    (``S*  0.0.0.0 0.0.0.0 [1/0] via 192.168.9.2, outside``) and connected networks (``C  10.0.0.0
    255.255.255.0 is directly connected, inside``; 9.0 and later add each interface's ``L`` route)."""
    lines = [(_ROUTE_CODES_8 if release < ROUTE_LOCAL else _ROUTE_CODES_9)]
    static = [r for r in policy.routes if r.network.version == 4 and r.gateway is not None]
    default = next((r for r in static if r.network.prefixlen == 0), None)
    if default is not None:
        lines.append(f"Gateway of last resort is {default.gateway} to network 0.0.0.0\n")
    else:
        lines.append("Gateway of last resort is not set\n")
    rows: list[tuple[int, str]] = []
    for r in static:
        code = "S*" if r.network.prefixlen == 0 else "S"
        rows.append(
            (int(r.network.network_address),
             f"{code:<9}{_mask(r.network)} [{r.distance}/0] via {r.gateway}, {r.interface}")
        )  # fmt: skip
    for name, itf in policy.interfaces.items():
        for addr in itf.ipv4:
            rows.append(
                (
                    int(addr.network.network_address),
                    f"{'C':<9}{_mask(addr.network)} is directly connected, {name}",
                )
            )
            if release >= ROUTE_LOCAL:
                host = ipaddress.ip_network(f"{addr.ip}/32")
                rows.append((int(addr.ip), f"{'L':<9}{_mask(host)} is directly connected, {name}"))
    lines += [text for _, text in sorted(rows, key=lambda r: r[0])]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# show interface


def format_show_interface(policy: Policy, counts: Mapping[str, object]) -> str:
    """``show interface``: per interface its header, MTU and address lines and the ``Traffic
    Statistics for "NAME":`` block with packets and bytes in and out and packets dropped (what this
    firewall counted; hardware counters and the MAC address are left out)."""
    lines = []
    for name, itf in policy.interfaces.items():
        state = "administratively down" if itf.shutdown else "up"
        line_state = "down" if itf.shutdown else "up"
        lines.append(f'Interface {itf.hardware or name} "{name}", is {state}, line protocol is {line_state}')
        lines.append(f"        MTU {itf.mtu}")
        if itf.ipv4:
            a = itf.ipv4[0]
            lines.append(f"        IP address {a.ip}, subnet mask {a.netmask}")
        c = counts.get(name)
        lines.append(f'        Traffic Statistics for "{name}":')
        pin, bin_, pout, bout, drops = (
            (c.packets_in, c.bytes_in, c.packets_out, c.bytes_out, c.drops)
            if c is not None
            else (0, 0, 0, 0, 0)  # type: ignore[attr-defined]
        )
        lines.append(f"        {pin} packets input, {bin_} bytes")
        lines.append(f"        {pout} packets output, {bout} bytes")
        lines.append(f"        {drops} packets dropped")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# show local-host


def _xlate_line(x: XlateRecord, now: float, release: tuple[int, int]) -> str:
    if release < NAT_83:
        return f"PAT Global {x.mapped_ip}({x.mapped_port}) Local {x.real_ip}({x.real_port})"
    return (
        f"{protocol_upper(x.protocol)} PAT from {x.real_if}:{x.real_ip}/{x.real_port} to {x.mapped_if}:"
        f"{x.mapped_ip}/{x.mapped_port} flags {x.flags} idle {format_duration(now - x.last_activity)} "
        f"timeout {format_duration(x.timeout)}"
    )


def format_show_local_host(
    policy: Policy,
    conns: Sequence[ConnRecord],
    xlates: Sequence[XlateRecord],
    now: float,
    *,
    release: tuple[int, int] = NEWEST,
) -> str:
    """``show local-host``: per interface ``Interface inside: N active, N maximum active, 0 denied``,
    then per host ``local host: <10.1.1.15>,`` with its TCP/UDP flow counts, its xlates and conns.
    statewall does not track the interface's high-water mark or per-host limits: ``maximum active``
    is the current count and limits print ``unlimited``."""
    hosts: dict[str, dict[str, tuple[list[ConnRecord], list[XlateRecord]]]] = {
        n: {} for n in policy.interfaces
    }
    for c in conns:
        for itf, ip in ((c.inside_if, c.inside_ip), (c.outside_if, c.outside_ip)):
            hosts.setdefault(itf, {}).setdefault(ip, ([], []))[0].append(c)
    for x in xlates:
        hosts.setdefault(x.real_if, {}).setdefault(x.real_ip, ([], []))[1].append(x)
    lines = []
    for itf, table in hosts.items():
        n = len(table)
        lines.append(f"Interface {itf}: {n} active, {n} maximum active, 0 denied")
        for ip, (hc, hx) in table.items():
            tcp = sum(1 for c in hc if protocol_upper(c.protocol) == "TCP")
            udp = sum(1 for c in hc if protocol_upper(c.protocol) == "UDP")
            embryonic = sum(1 for c in hc if protocol_upper(c.protocol) == "TCP" and "U" not in c.flags)
            lines += [
                f"local host: <{ip}>,",
                f"    TCP flow count/limit = {tcp}/unlimited",
                f"    TCP embryonic count to host = {embryonic}",
                "    TCP intercept watermark = unlimited",
                f"    UDP flow count/limit = {udp}/unlimited",
            ]
            if hx:
                lines.append("  Xlate:")
                lines += [f"    {_xlate_line(x, now, release)}" for x in hx]
            if hc:
                lines.append("  Conn:")
                for c in hc:
                    lines.append(
                        f"    {protocol_upper(c.protocol)} {c.outside_if} {c.outside_ip}:{c.outside_port} "
                        f"{c.inside_if} {c.inside_ip}:{c.inside_port}, idle "
                        f"{format_duration(now - c.last_activity)}, bytes {c.bytes}, flags {c.flags or '-'}"
                    )
    return "\n".join(lines) + "\n"
