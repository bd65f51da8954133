"""ASA 8.3+ address translation: object NAT (``nat`` inside ``object network``), twice NAT (the top-level
``nat ... source ...``) and the ``object service`` definitions twice NAT names.

Owns how these lines become ``NatRule``s and how such rules print back. Object NAT rules are section 2
of the ASA's NAT table, one rule per object (a later ``nat`` line in the same object replaces the
earlier one); twice NAT rules are section 1, or section 3 after ``after-auto``, in the order written
unless a line number places them. Objects are looked up when the whole file is read, so a rule may name
an object defined further down; ``finish`` resolves the names to addresses and appends the rules to
``Policy.nat_rules`` after the ASA 8.2 ones (``statewall.nat.asa_order`` is the evaluation order).

Forms (ASA 8.4/9.x):

    nat [(real,mapped)] dynamic {interface [ipv6] | OBJ [interface [ipv6]] | HOST-IP |
                                 pat-pool OBJ [round-robin] [flat [include-reserve]] [block-allocation]
                                 [interface [ipv6]]} [dns]
    nat [(real,mapped)] static {OBJ | IP | interface [ipv6]} [net-to-net] [dns]
                               [service {tcp|udp|sctp} REAL-PORT MAPPED-PORT] [no-proxy-arp] [route-lookup]
    nat [(real,mapped)] [LINE | after-auto [LINE]] source {static|dynamic} {OBJ|any} MAPPED
        [destination static {OBJ|interface [ipv6]|any} {OBJ|any}] [service SVC-OBJ SVC-OBJ] [net-to-net]
        [dns] [unidirectional] [no-proxy-arp] [route-lookup] [inactive] [description TEXT]

The first service object of a twice NAT rule holds the real source port and the mapped destination
port, the second the mapped source port and the real destination port (both ``eq``). As the ASA's
guidelines require, a dynamic NAT pool object holds ranges (one address per host) and hosts (the PAT
fallback), never a subnet. ``block-allocation`` PAT gives each host blocks of ports (``xlate
block-allocation``; ``statewall.nat``). ``extended`` PAT is kept as written and not applied (reported as
not modelled), and translation between IPv4 and IPv6 is refused, rather than translated differently
from the ASA.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...policy import BUILTIN, PROTO_TCP, PROTO_UDP, NatPool, NatRule, NetworkObject, Origin, PortMatch
from . import names
from .lexer import Cursor, Line, Token
from .modes import Mode
from .services import port_match

if TYPE_CHECKING:
    from .parser import Parser

_PAIR = re.compile(r"^\(([^(),\s]+),([^(),\s]+)\)$")
_SERVICE_PROTOCOLS = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "sctp": 132}
_PROTOCOL_WORDS = {v: k for k, v in _SERVICE_PROTOCOLS.items()}
MAX_LINE = 2147483647


class NotModelledNat(Exception):
    """A valid NAT rule in a form statewall does not model: it is kept as written and not applied."""

    def __init__(self, feature: str, action: str, col: int) -> None:
        super().__init__(feature)
        self.feature, self.action, self.col = feature, action, col


def not_applied(p: Parser, c: Cursor, exc: NotModelledNat, head: str | None = None) -> None:
    """Report ``exc`` at the line, and keep the line (under ``head``, an object's first line) to print."""
    p.gap(
        c.line,
        exc.feature,
        exc.action,
        col=exc.col,
        message=f"{exc.feature} is not modelled (a real ASA would {exc.action}); this NAT rule is kept as "
        "written and not applied",
    )
    if head is None:
        p.keep(c.line)
    else:
        p.keep_text(p.origin(c.line), head)
        p.keep(c.line, 1)


@dataclass(slots=True)
class ServiceObject:
    """``object service NAME`` with its ``service PROTO [source OP PORT] [destination OP PORT]``."""

    name: str
    protocol: int | None = None
    source: PortMatch | None = None
    destination: PortMatch | None = None
    origin: Origin = BUILTIN


@dataclass(slots=True)
class _Pending:
    """A rule read but not resolved: the names it uses, with the tokens to blame for a bad one."""

    rule: NatRule
    cursor: Cursor
    position: int | None = None
    real: Token | None = None  # None: ``any`` (or the object holding an object NAT rule)
    mapped: Token | None = None
    mapped_inline: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    dst_mapped: Token | None = None
    dst_real: Token | None = None
    services: tuple[Token, Token] | None = None


@dataclass(slots=True)
class State:
    """What this module keeps while a file is read (``Parser.objnat``)."""

    services: dict[str, ServiceObject] = field(default_factory=dict)
    objects: dict[str, _Pending] = field(default_factory=dict)  # object NAT, by object name
    manual: list[_Pending] = field(default_factory=list)  # twice NAT, sections 1 and 3, as read


# --------------------------------------------------------------------------------------------------
# object service


def object_service(p: Parser, c: Cursor) -> None:
    """``object service NAME`` and its ``service``/``description`` lines, kept as written for printing,
    read for twice NAT, and registered as a ``ServiceObject`` for access lists (``services``)."""
    from ...policy import ServiceObject as Service
    from . import services

    name_tok = c.next("object name")
    c.end()
    taken = services.name_taken(p, name_tok.text, "service object")
    if taken is not None:
        # Objects and object groups share one name space (Cisco, "Guidelines for Objects").
        raise c.error(
            name_tok, f"'{name_tok.text}' is already defined as a {taken} (objects share one name space)"
        )
    svc = ServiceObject(name_tok.text, origin=p.origin(c.line))
    p.objnat.services[name_tok.text] = svc
    neutral = p.policy.service_objects.get(name_tok.text)
    if neutral is None:
        neutral = Service(name_tok.text, "service", group=False, origin=p.origin(c.line))
        p.policy.service_objects[name_tok.text] = neutral
    p.keep(c.line)

    def sub(p: Parser, c: Cursor) -> None:
        p.keep(c.line, 1)
        word = c.next("object command").word
        if word == "description":
            neutral.description = c.rest() or None
            return
        if word != "service":
            raise c.error(c.line.tokens[0], f"unknown object service command '{c.line.tokens[0].text}'")
        start = c.pos
        neutral.entries = services.service_line(p, c)
        neutral.members = [c.line.text]
        c.pos = start
        proto_tok = c.next("protocol")
        svc.source = svc.destination = None
        if proto_tok.word == "tcp-udp":
            svc.protocol = None  # usable in access lists; NAT needs one protocol (refused there)
            c.rest()
            return
        svc.protocol = _SERVICE_PROTOCOLS.get(proto_tok.word) or names.PROTOCOLS.get(proto_tok.word)
        if svc.protocol is None:
            if proto_tok.word == "ip":
                c.rest()
                return
            if not proto_tok.text.isdigit():
                raise c.error(proto_tok, f"unknown protocol '{proto_tok.text}'")
            svc.protocol = c.integer_of(proto_tok, 0, 255, "protocol")
        if proto_tok.word not in _SERVICE_PROTOCOLS:
            c.rest()  # icmp TYPE [CODE] and other protocols: read by services.service_line
            return
        while not c.at_end():
            side = c.keyword(("source", "destination"), "service port side")
            match = _port_match(c, proto_tok.word)
            if side == "source":
                svc.source = match
            else:
                svc.destination = match
        c.end()

    def accepts(line: Line) -> bool:
        return line.words[0] in ("service", "description")

    p.open_mode(Mode("object service", sub, accepts))


def _port_match(c: Cursor, proto: str) -> PortMatch:
    if proto not in _SERVICE_PROTOCOLS:
        raise c.error(c.peek_token(), f"ports are only valid for tcp, udp and sctp, not {proto}")
    return port_match(c, proto)


# --------------------------------------------------------------------------------------------------
# Shared pieces of both forms


def _interfaces(p: Parser, c: Cursor) -> tuple[str, str]:
    """``(real,mapped)``; ``any`` on either side, and both when the pair is left out."""
    tok = c.peek_token()
    if tok is None or not _PAIR.match(tok.text):
        return "any", "any"
    c.next("interfaces")
    m = _PAIR.match(tok.text)
    assert m is not None
    for name in m.groups():
        if name.lower() != "any":
            p.require(
                lambda name=name: name in p.policy.interfaces,
                c.error(tok, f"nat refers to unknown interface '{name}'"),
            )
    real, mapped = m.groups()
    return ("any" if real.lower() == "any" else real), ("any" if mapped.lower() == "any" else mapped)


def _address(tok: Token) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(tok.text)
    except ValueError:
        return None


def _interface_keyword(c: Cursor, rule: NatRule) -> None:
    if c.accept("ipv6"):
        rule.interface_ipv6 = True


def _dynamic_mapped(c: Cursor, pend: _Pending, inline_ok: bool) -> None:
    """The mapped side of a dynamic rule: ``interface``, an object, a host, ``pat-pool OBJ``; an object
    or pool may be followed by ``interface`` (PAT on the interface once the pool is used up)."""
    rule = pend.rule
    tok = c.next("mapped address")
    if tok.word == "interface":
        rule.pool = NatPool(interface=True, pat=True)
        _interface_keyword(c, rule)
        return
    pool = NatPool(pat=True)
    rule.pool = pool
    if tok.word == "pat-pool":
        pool.pat_pool = True
        tok = c.next("PAT pool object")
        pend.mapped = tok
        rule.mapped_object = tok.text
        while True:
            opt = c.peek_token()
            if opt is None:
                break
            if opt.word == "round-robin":
                pool.round_robin = True
            elif opt.word == "flat":
                pool.flat = True
            elif opt.word == "include-reserve" and pool.flat:
                pool.include_reserve = True
            elif opt.word == "block-allocation":
                # Blocks of ports per host (xlate block-allocation size / maximum-per-host).
                pool.block_allocation = True
            elif opt.word == "extended":
                raise NotModelledNat("extended PAT", "allocate PAT ports per destination", opt.col)
            else:
                break
            c.next("option")
    elif inline_ok and (addr := _address(tok)) is not None:
        pend.mapped_inline = addr
        pool.ranges.append((addr, addr))
        pool.addresses.append(ipaddress.ip_network(addr))
    else:
        pend.mapped = tok
        rule.mapped_object = tok.text
    iface_tok = c.peek_token()
    if c.accept("interface"):
        pool.interface = True
        _interface_keyword(c, rule)
    if pool.block_allocation and (pool.flat or pool.interface):
        # Cisco ASA configuration guide, PAT with port block allocation: the rule may be round-robin but
        # cannot also be flat, include-reserve, extended or fall through to interface PAT.
        bad = iface_tok if pool.interface and iface_tok is not None else tok
        raise c.error(bad, "block-allocation cannot be combined with flat, include-reserve or interface")


def _static_mapped(c: Cursor, pend: _Pending, inline_ok: bool) -> None:
    """The mapped side of a static rule: an object, an address (object NAT), ``interface``, ``any``."""
    rule = pend.rule
    tok = c.next("mapped address")
    if tok.word == "interface":
        rule.pool = NatPool(interface=True)
        _interface_keyword(c, rule)
    elif tok.word == "any" and not inline_ok:
        pass  # ``source static any any``: identity
    elif inline_ok and (addr := _address(tok)) is not None:
        pend.mapped_inline = addr
    elif "/" in tok.text and inline_ok:
        raise c.error(tok, f"invalid mapped address '{tok.text}'")
    else:
        pend.mapped = tok
        rule.mapped_object = tok.text


def _options(p: Parser, c: Cursor, pend: _Pending, twice: bool) -> None:
    rule = pend.rule
    seen_destination = False
    while not c.at_end():
        tok = c.next("option")
        word = tok.word
        if word == "net-to-net":
            rule.net_to_net = True
        elif word == "dns":
            rule.dns = True
            p.warn(c.line, "the dns option (DNS reply rewriting) is not modelled; kept")
        elif word == "no-proxy-arp":
            rule.no_proxy_arp = True
        elif word == "route-lookup":
            rule.route_lookup = True
        elif word == "unidirectional" and twice:
            rule.unidirectional = True
        elif word == "inactive" and twice:
            rule.inactive = True
        elif word == "description" and twice:
            rule.description = c.rest() or None
            if rule.description is None:
                raise c.error(None, "missing description text")
        elif word == "destination" and twice and not seen_destination:
            seen_destination = True
            c.keyword(("static",), "destination NAT type")
            mapped = c.next("mapped destination")
            if mapped.word == "interface":
                if rule.real_interface in (None, "", "any"):
                    raise c.error(mapped, "destination static interface needs a specific real interface")
                rule.destination_interface = True
                _interface_keyword(c, rule)
            elif mapped.word != "any":
                pend.dst_mapped = mapped
                rule.destination_mapped_object = mapped.text
            real = c.next("real destination")
            if real.word != "any":
                pend.dst_real = real
                rule.destination_real_object = real.text
        elif word == "service" and twice:
            first, second = c.next("service object"), c.next("mapped service object")
            pend.services = (first, second)
            rule.real_service, rule.mapped_service = first.text, second.text
        elif word == "service" and rule.kind == "static":
            proto_tok = c.next("protocol")
            if proto_tok.word not in _SERVICE_PROTOCOLS:
                raise c.error(
                    proto_tok, f"invalid service protocol '{proto_tok.text}' (expected tcp, udp or sctp)"
                )
            table = "tcp" if proto_tok.word == "sctp" else proto_tok.word
            rule.protocol = _SERVICE_PROTOCOLS[proto_tok.word]
            rule.real_port = c.port(table)
            rule.mapped_port = c.port(table)
        else:
            raise c.error(tok, f"unexpected '{tok.text}'")


# --------------------------------------------------------------------------------------------------
# Object NAT and twice NAT


def object_nat(p: Parser, c: Cursor, obj: NetworkObject) -> None:
    """`` nat ...`` inside ``object network NAME`` (the cursor is after ``nat``)."""
    real_ifc, mapped_ifc = _interfaces(p, c)
    kind = c.keyword(("static", "dynamic"), "NAT type")
    rule = NatRule(kind, real_ifc, mapped_ifc, section=2, real_object=obj.name, origin=p.origin(c.line))  # type: ignore[arg-type]
    pend = _Pending(rule, c)
    try:
        if kind == "dynamic":
            _dynamic_mapped(c, pend, inline_ok=True)
        else:
            _static_mapped(c, pend, inline_ok=True)
    except NotModelledNat as exc:
        not_applied(p, c, exc, f"object network {obj.name}")
        return
    _options(p, c, pend, twice=False)
    # One NAT rule per object: a new line replaces the one before (ASA).
    p.objnat.objects[obj.name] = pend


def twice_nat(p: Parser, c: Cursor) -> None:
    """The top-level ``nat [(real,mapped)] [LINE | after-auto [LINE]] source ...`` (twice NAT)."""
    real_ifc, mapped_ifc = _interfaces(p, c)
    section = 3 if c.accept("after-auto") else 1
    position = None
    tok = c.peek_token()
    if tok is not None and tok.text.isdigit():
        position = c.integer(1, MAX_LINE, "line number")
    tok = c.peek_token()
    if tok is not None and tok.word in ("static", "dynamic"):
        raise c.error(tok, "object NAT belongs in 'object network NAME'; twice NAT starts with 'source'")
    c.keyword(("source",), "keyword")
    kind = c.keyword(("static", "dynamic"), "NAT type")
    rule = NatRule(kind, real_ifc, mapped_ifc, section=section, origin=p.origin(c.line))  # type: ignore[arg-type]
    pend = _Pending(rule, c, position)
    real = c.next("real source")
    if real.word != "any":
        pend.real = real
        rule.real_object = real.text
    try:
        if kind == "dynamic":
            _dynamic_mapped(c, pend, inline_ok=False)
        else:
            _static_mapped(c, pend, inline_ok=False)
    except NotModelledNat as exc:
        not_applied(p, c, exc)
        return
    _options(p, c, pend, twice=True)
    p.objnat.manual.append(pend)


# --------------------------------------------------------------------------------------------------
# End of file: names to addresses


def _object(p: Parser, pend: _Pending, tok: Token) -> NetworkObject:
    obj = p.policy.network_objects.get(tok.text)
    if obj is None:
        raise pend.cursor.error(tok, f"unknown object '{tok.text}'")
    if not obj.networks:
        raise pend.cursor.error(tok, f"object '{tok.text}' has no address")
    return obj


def _members(p: Parser, obj: NetworkObject) -> list:
    """An object's members with nested objects expanded, in order."""
    out: list = []
    stack = [iter(obj.members)]  # iterative: groups may nest thousands deep
    while stack:
        m = next(stack[-1], None)
        if m is None:
            stack.pop()
        elif isinstance(m, str):
            stack.append(iter(p.policy.network_objects[m].members))
        else:
            out.append(m)
    return out


def _pool_from(p: Parser, pend: _Pending, tok: Token, pool: NatPool) -> None:
    for m in _members(p, _object(p, pend, tok)):
        if isinstance(m, tuple):
            first, last = m
        elif m.num_addresses == 1:
            first = last = m.network_address
        else:
            raise pend.cursor.error(
                tok, f"object '{tok.text}' holds a subnet; a dynamic NAT pool holds ranges and hosts"
            )
        pool.ranges.append((first, last))
        pool.addresses.extend(ipaddress.summarize_address_range(first, last))


def _service(p: Parser, pend: _Pending, tok: Token) -> ServiceObject:
    svc = p.objnat.services.get(tok.text)
    if svc is None:
        raise pend.cursor.error(tok, f"unknown service object '{tok.text}'")
    if svc.protocol not in _PROTOCOL_WORDS:
        raise pend.cursor.error(tok, f"service object '{tok.text}' is not tcp, udp or sctp")
    for m in (svc.source, svc.destination):
        if m is not None and m.op != "eq":
            raise pend.cursor.error(tok, f"service object '{tok.text}': NAT needs 'eq' ports")
    return svc


def _resolve(p: Parser, pend: _Pending) -> None:
    rule = pend.rule
    c = pend.cursor
    if rule.section == 2:
        owner = p.policy.network_objects[rule.real_object or ""]
        if not owner.networks:
            raise c.error(c.line.tokens[0], f"object '{owner.name}' has no address to translate")
        rule.real = tuple(owner.networks)
    elif pend.real is not None:
        rule.real = tuple(_object(p, pend, pend.real).networks)
    if pend.mapped is not None:
        if rule.kind == "dynamic":
            assert rule.pool is not None
            _pool_from(p, pend, pend.mapped, rule.pool)
        else:
            rule.mapped = tuple(_object(p, pend, pend.mapped).networks)
    elif pend.mapped_inline is not None and rule.kind == "static":
        # An inline address maps a real subnet to the subnet of the same size that starts there.
        addr = pend.mapped_inline
        prefix = addr.max_prefixlen
        if (
            len(rule.real) == 1
            and int(addr) & ~int(rule.real[0].netmask) & ((1 << addr.max_prefixlen) - 1) == 0
        ):
            prefix = rule.real[0].prefixlen
        rule.mapped = (ipaddress.ip_network((addr, prefix)),)
    if pend.dst_mapped is not None:
        rule.destination_mapped = tuple(_object(p, pend, pend.dst_mapped).networks)
    if pend.dst_real is not None:
        rule.destination_real = tuple(_object(p, pend, pend.dst_real).networks)
    if pend.services is not None:
        first, second = (_service(p, pend, t) for t in pend.services)
        if first.protocol != second.protocol:
            raise c.error(pend.services[1], "the two service objects name different protocols")
        rule.protocol = first.protocol
        if first.source is not None or second.source is not None:
            if first.source is None or second.source is None:
                raise c.error(pend.services[0], "both service objects must give the source port")
            rule.real_port, rule.mapped_port = first.source.low, second.source.low
        if first.destination is not None or second.destination is not None:
            if first.destination is None or second.destination is None:
                raise c.error(pend.services[0], "both service objects must give the destination port")
            rule.destination_mapped_port, rule.destination_real_port = (
                first.destination.low,
                second.destination.low,
            )
    versions = {
        n.version for n in (*rule.real, *rule.mapped, *rule.destination_real, *rule.destination_mapped)
    } | {lo.version for lo, _ in (rule.pool.ranges if rule.pool is not None else [])}
    if len(versions) > 1:
        raise NotModelledNat("NAT46/NAT64", "translate between IPv4 and IPv6 addresses", c.line.tokens[0].col)


def _placed(pendings: list[_Pending]) -> list[_Pending]:
    """Manual rules in table order: as read, a line number inserting its rule at that position."""
    out: list[_Pending] = []
    for pend in pendings:
        if pend.position is None:
            out.append(pend)
        else:
            out.insert(min(pend.position, len(out) + 1) - 1, pend)
    return out


def _not_applied_late(p: Parser, pend: _Pending, exc: NotModelledNat) -> None:
    """``not_applied`` for a rule found unmodellable once the whole file is read: its line's fate is
    corrected, and it is kept (inside its object for object NAT) to print back."""
    from ...policy import Unmodelled, Warning_

    line = pend.cursor.line
    origin = p.origin(line)
    message = (
        f"{exc.feature} is not modelled (a real ASA would {exc.action}); this NAT rule is kept as written "
        "and not applied"
    )
    p.policy.warnings.append(Warning_(origin, message, exc.col, gap=exc.feature))
    p.policy.unmodelled.append(Unmodelled(exc.feature, exc.action, origin, exc.col))
    p.policy.fates[:] = [(o, "not-modelled" if o.line == line.number else f) for o, f in p.policy.fates]
    if pend.rule.section == 2:
        p.keep_text(origin, f"object network {pend.rule.real_object}")
        p.keep(line, 1)
    else:
        p.keep(line)


def finish(p: Parser) -> None:
    """Resolve every object and twice NAT rule and append them (sections 1, 2, 3) to the policy."""
    st = p.objnat
    manual = _placed([x for x in st.manual if x.rule.section == 1])
    after = _placed([x for x in st.manual if x.rule.section == 3])
    auto = list(st.objects.values())
    skipped: set[int] = set()
    for pend in (*manual, *auto, *after):
        try:
            p._run(lambda pend=pend: _resolve(p, pend))
        except NotModelledNat as exc:
            _not_applied_late(p, pend, exc)
            skipped.add(id(pend))
    manual = [x for x in manual if id(x) not in skipped]
    after = [x for x in after if id(x) not in skipped]
    auto = [x for x in auto if id(x) not in skipped]
    from ...nat import asa_order

    ordered = asa_order([pend.rule for pend in auto])
    p.policy.nat_rules.extend([*(x.rule for x in manual), *ordered, *(x.rule for x in after)])


# --------------------------------------------------------------------------------------------------
# Printing back


def render(rules: list[NatRule]) -> list[str]:
    """Twice NAT lines (section 1), object NAT blocks (section 2), ``after-auto`` lines (section 3), in
    the order of ``rules`` within each section, as ``show running-config`` prints them."""
    out: list[str] = []
    out += [_twice(r) for r in rules if r.section == 1]
    for r in rules:
        if r.section == 2:
            out += [f"object network {r.real_object}", f" {_object_line(r)}"]
    out += [_twice(r) for r in rules if r.section == 3]
    return out


def _ifcs(rule: NatRule) -> str:
    return f"({rule.real_interface or 'any'},{rule.mapped_interface or 'any'})"


def _iface_word(rule: NatRule) -> str:
    return "interface ipv6" if rule.interface_ipv6 else "interface"


def _dynamic_text(rule: NatRule) -> str:
    pool = rule.pool or NatPool(interface=True)
    if pool.pat_pool:
        text = f"pat-pool {rule.mapped_object}"
        text += " round-robin" if pool.round_robin else ""
        text += " flat" if pool.flat else ""
        text += " include-reserve" if pool.include_reserve else ""
        text += " block-allocation" if pool.block_allocation else ""
    elif rule.mapped_object is not None:
        text = rule.mapped_object
    elif pool.ranges:
        text = str(pool.ranges[0][0])
    else:
        return _iface_word(rule)
    return text + (f" {_iface_word(rule)}" if pool.interface else "")


def _static_text(rule: NatRule) -> str:
    if rule.mapped_object is not None:
        return rule.mapped_object
    if rule.pool is not None and rule.pool.interface:
        return _iface_word(rule)
    if rule.mapped and rule.section == 2:
        return str(rule.mapped[0].network_address)
    return "any"


def _tail(rule: NatRule) -> str:
    out = ""
    if rule.net_to_net:
        out += " net-to-net"
    if rule.dns:
        out += " dns"
    if rule.section == 2 and rule.protocol is not None and rule.real_port is not None:
        proto = _PROTOCOL_WORDS[rule.protocol]
        table = "tcp" if proto == "sctp" else proto
        out += (
            f" service {proto} {names.port_name(rule.real_port, table)}"
            f" {names.port_name(rule.mapped_port or 0, table)}"
        )
    if rule.unidirectional:
        out += " unidirectional"
    if rule.no_proxy_arp:
        out += " no-proxy-arp"
    if rule.route_lookup:
        out += " route-lookup"
    if rule.inactive:
        out += " inactive"
    if rule.description:
        out += f" description {rule.description}"
    return out


def _object_line(rule: NatRule) -> str:
    mapped = _dynamic_text(rule) if rule.kind == "dynamic" else _static_text(rule)
    return f"nat {_ifcs(rule)} {rule.kind} {mapped}{_tail(rule)}"


def _twice(rule: NatRule) -> str:
    text = f"nat {_ifcs(rule)}" + (" after-auto" if rule.section == 3 else "")
    mapped = _dynamic_text(rule) if rule.kind == "dynamic" else _static_text(rule)
    text += f" source {rule.kind} {rule.real_object or 'any'} {mapped}"
    if rule.destination_interface or rule.destination_mapped_object or rule.destination_real_object:
        dmapped = (
            ("interface ipv6" if rule.destination_interface and rule.interface_ipv6 else "interface")
            if rule.destination_interface
            else (rule.destination_mapped_object or "any")
        )
        text += f" destination static {dmapped} {rule.destination_real_object or 'any'}"
    if rule.real_service and rule.mapped_service:
        text += f" service {rule.real_service} {rule.mapped_service}"
    return text + _tail(rule)
