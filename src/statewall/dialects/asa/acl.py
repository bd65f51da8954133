"""ASA access control: ``access-list`` (extended, the short 8.2 form, standard, remark),
``access-group``, and the network objects access lists name (``object network``,
``object-group network``).

An access-list line becomes one ``AccessRule`` whose ``Match`` holds the resolved addresses; a rule
written with an object remembers the object's name so that it prints back the same way.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...policy import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    AccessGroup,
    AccessList,
    AccessRule,
    IPNetwork,
    Match,
    NetworkObject,
    PortMatch,
    ServiceEntry,
)
from . import names, objnat, passthrough, services
from .lexer import Cursor, Line, Token
from .modes import Handler, Mode

if TYPE_CHECKING:
    from .parser import Parser

_NAME = re.compile(r"^[A-Za-z0-9_.\-+@:]{1,241}$")
_PORT_OPS = ("eq", "neq", "lt", "gt", "range")
PORT_PROTOCOLS = {6: "tcp", 17: "udp", 132: "sctp"}
ANY4 = ipaddress.IPv4Network("0.0.0.0/0")
ANY6 = ipaddress.IPv6Network("::/0")
_TRAILERS = ("log", "inactive", "time-range")


# --------------------------------------------------------------------------------------------------
# access-list


def access_list(p: Parser, c: Cursor) -> None:
    name_tok = c.next("access-list name")
    if not _NAME.match(name_tok.text):
        raise c.error(name_tok, f"invalid access-list name '{name_tok.text}'")
    position = None
    if c.accept("line"):
        position = c.integer(1, 2**31 - 1, "line number")
    kind_tok = c.peek_token()
    if kind_tok is None:
        raise c.error(None, "missing access-list type")
    word = kind_tok.word
    acl = p.policy.access_lists.get(name_tok.text)
    if word == "remark":
        c.next("remark")
        text = c.rest()
        if not text:
            raise c.error(None, "missing remark text")
        acl = acl or _new_acl(p, name_tok.text)
        acl.remarks.append((len(acl.rules), text, p.origin(c.line)))
        return
    if word in ("ethertype", "webtype"):
        passthrough.keep_not_modelled(p, c, f"access-list {word}")
        return
    if word == "extended" or word == "standard":
        c.next("type")
    elif word not in ("permit", "deny"):
        raise c.error(kind_tok, f"invalid access-list type '{kind_tok.text}' (expected extended or standard)")
    kind = "standard" if word == "standard" else "extended"
    if acl is not None and acl.rules and acl.kind != kind:
        raise c.error(kind_tok, f"access-list '{acl.name}' is {acl.kind}; cannot add a {kind} entry")
    action = c.keyword(("permit", "deny"), "action")
    if kind == "standard":
        match, dst_obj = _standard(p, c)
        rules = [
            AccessRule(name_tok.text, action, match, origin=p.origin(c.line), destination_object=dst_obj)
        ]
    else:
        try:
            rules = _extended(p, c, name_tok.text, action)
        except _NotApplied as exc:
            p.gap(
                c.line,
                "identity-based access control",
                f"match this entry on {exc.what}",
                acl=name_tok.text,
                message=f"this entry matches on {exc.what}, which statewall cannot know: the entry is not "
                "applied (not modelled)",
            )
            p.keep(c.line)  # printed back as written
            return
    fqdn = [n for r in rules[:1] for n in (r.source_object, r.destination_object) if n in p.fqdn_objects]
    if fqdn:
        p.gap(
            c.line,
            "FQDN object",
            f"match the addresses {p.fqdn_objects[fqdn[0]]} resolves to",
            acl=name_tok.text,
            message=f"this entry names FQDN object {fqdn[0]}, which statewall cannot resolve: the entry is "
            "not applied (not modelled)",
        )
        p.keep(c.line)  # printed back as written
        return
    acl = acl or _new_acl(p, name_tok.text)
    acl.kind = kind
    if acl.remarks and acl.remarks[-1][0] == len(acl.rules):
        for rule in rules:
            rule.remark = acl.remarks[-1][1]  # the remark written just above the rule explains it
    if position is None:
        acl.rules.extend(rules)
        return
    # "line N" counts entries as written; an entry written with groups is several elements.
    index, seen = len(acl.rules), 0
    for i, r in enumerate(acl.rules):
        if r.element == 0:
            seen += 1
            if seen == position:
                index = i
                break
    acl.rules[index:index] = rules


def _new_acl(p: Parser, name: str) -> AccessList:
    acl = AccessList(name)
    p.policy.access_lists[name] = acl
    return acl


def _standard(p: Parser, c: Cursor) -> tuple[Match, str | None]:
    """Standard entries match the destination address only (route maps, NAT exemption lists)."""
    nets, obj = address(p, c, "destination")
    c.end()
    return Match(destinations=nets, family=_family(nets)), obj


def _extended(p: Parser, c: Cursor, acl: str, action: str) -> list[AccessRule]:
    """An extended entry, expanded into one rule per combination of the groups it names (the ASA's
    access-list elements)."""
    proto_tok = c.next("protocol")
    entries, proto_obj = _protocol(p, c, proto_tok)
    with_ports = [e for e in entries if e.source_ports or e.destination_ports or e.icmp_type is not None]
    port_proto = _port_protocol(entries) if not with_ports else None
    identity = _identity(c)
    sources, src_obj = address(p, c, "source")
    sports, sports_obj = _ports(p, c, port_proto)
    identity = _identity(c) or identity
    destinations, dst_obj = address(p, c, "destination")
    dports, dports_obj = _ports(p, c, port_proto)
    icmps: list[tuple[int | None, int | None]] = [(None, None)]
    icmp_obj = None
    protos = {e.protocol for e in entries}
    if protos & {PROTO_ICMP, PROTO_ICMPV6} and not with_ports and c.peek() not in (None, *_TRAILERS):
        icmps, icmp_obj = _icmp_alternatives(p, c, PROTO_ICMPV6 if PROTO_ICMPV6 in protos else PROTO_ICMP)
    family = _family(sources + destinations)
    base = AccessRule(
        acl,
        action,  # type: ignore[arg-type]
        Match(),
        origin=p.origin(c.line),
        source_object=src_obj,
        destination_object=dst_obj,
        protocol_object=proto_obj,
        source_ports_object=sports_obj,
        destination_ports_object=dports_obj,
        icmp_object=icmp_obj,
    )
    _trailer(p, c, base)
    if identity:
        raise _NotApplied(identity)
    rules: list[AccessRule] = []
    seen: set[Match] = set()
    for e in entries:
        for sp in sports if sports is not None else [e.source_ports]:
            for dp in dports if dports is not None else [e.destination_ports]:
                for itype, icode in icmps if e.icmp_type is None else [(e.icmp_type, e.icmp_code)]:
                    match = Match(
                        protocol=e.protocol,
                        sources=sources,
                        destinations=destinations,
                        source_ports=sp,
                        destination_ports=dp,
                        icmp_type=itype,
                        icmp_code=icode,
                        family=family,
                    )
                    if match not in seen:
                        seen.add(match)
                        rules.append(dataclasses.replace(base, match=match, element=len(rules)))
    return rules


class _NotApplied(Exception):
    """An entry that matches on something statewall cannot know (users, security groups)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


# ASA 9.x identity firewall and TrustSec arguments before an address ("user_argument",
# "security_group_argument" of the access-list extended command).
_IDENTITY = {
    "user": "user",
    "user-group": "user group",
    "object-group-user": "user object-group",
    "security-group": "security group",
    "object-group-security": "security object-group",
}


def _identity(c: Cursor) -> str | None:
    word = c.peek()
    if word not in _IDENTITY:
        return None
    c.next(word)
    if word == "security-group":
        c.keyword(("name", "tag"), "security-group keyword")
    name = c.next(f"{_IDENTITY[word]} name")
    return f"{_IDENTITY[word]} {name.text}"


def _port_protocol(entries: list[ServiceEntry]) -> str | None:
    """The protocol whose port names an entry's port positions use: tcp, udp, sctp or tcp-udp; None when
    some protocol of the entry has no ports."""
    words = {PORT_PROTOCOLS.get(e.protocol) if e.protocol is not None else None for e in entries}
    if None in words:
        return None
    if words == {"tcp", "udp"}:
        return "tcp-udp"
    return words.pop() if len(words) == 1 else None


def _protocol(p: Parser, c: Cursor, tok: Token) -> tuple[list[ServiceEntry], str | None]:
    """The protocol position: a protocol, ``object-group`` (protocol or service group) or ``object``
    (service object). Returns the entries and, for a named one, how it was written."""
    if tok.word in ("object-group", "object"):
        name_tok = c.next(f"{tok.word} name")
        svc = p.policy.service_objects.get(name_tok.text)
        wanted = ("service", "protocol") if tok.word == "object-group" else ("service",)
        if svc is None or svc.kind not in wanted or svc.group != (tok.word == "object-group"):
            what = "protocol or service object-group" if tok.word == "object-group" else "service object"
            raise c.error(name_tok, f"'{name_tok.text}' is not a defined {what}")
        if not svc.entries:
            raise c.error(name_tok, f"{tok.word} '{name_tok.text}' is empty")
        p.use(name_tok.text)
        return list(svc.entries), f"{tok.word} {name_tok.text}"
    return [ServiceEntry(services.protocol_number(c, tok))], None


def _family(nets: tuple[IPNetwork, ...]) -> int | None:
    """The IP version a rule can only match, when its addresses say so (any4, host A, a v6 prefix)."""
    versions = {n.version for n in nets}
    return versions.pop() if len(versions) == 1 else None


def address(p: Parser, c: Cursor, what: str) -> tuple[tuple[IPNetwork, ...], str | None]:
    """An ACL address: any, any4, any6, host A, A M, X/len, object NAME, object-group NAME."""
    tok = c.next(f"{what} address")
    word = tok.word
    if word == "any":
        return (), None
    if word == "any4":
        return (ANY4,), None
    if word == "any6":
        return (ANY6,), None
    if word == "host":
        host = c.next(f"{what} host")
        text = p.hosts.get(host.text, host.text)
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise c.error(host, f"invalid IP address '{host.text}'") from None
        return (ipaddress.ip_network(addr),), None
    if word in ("object", "object-group"):
        name_tok = c.next("object name")
        obj = p.policy.network_objects.get(name_tok.text)
        if obj is None:
            _unmodelled_object(p, c, name_tok)
            raise c.error(name_tok, f"unknown {word} '{name_tok.text}'")
        if obj.group != (word == "object-group"):
            actual = "object-group" if obj.group else "object"
            raise c.error(name_tok, f"'{name_tok.text}' is an {actual}, not an {word}")
        p.use(obj.name)
        return tuple(obj.networks), obj.name
    if word == "interface":
        # 9.x: the interface's own addresses (traffic to the box's address on that interface).
        name_tok = c.next("interface name")
        for rec in p.hardware.values():
            if rec.itf.name == name_tok.text:
                addrs = [ipaddress.ip_network(a.ip) for a in rec.itf.addresses()]
                if not addrs:
                    raise c.error(name_tok, f"interface '{name_tok.text}' has no address")
                return tuple(addrs), f"interface {name_tok.text}"
        raise c.error(name_tok, f"unknown interface '{name_tok.text}'")
    if "/" in tok.text:
        prefix = c.ipv6_prefix_of(tok)
        if prefix.network.network_address != prefix.ip:
            raise c.error(tok, f"prefix '{tok.text}' has bits outside its length")
        return (prefix.network,), None
    addr = c.ipv4_of(tok, p.hosts)
    return (c.network(tok, c.netmask(), addr),), None


def _unmodelled_object(p: Parser, c: Cursor, name_tok: Token) -> None:
    """Refuse a rule naming an object whose kind statewall cannot match (a user or security group):
    dropping or widening the rule would silently change what passes."""
    kind = p.unmodelled_objects.get(name_tok.text)
    if kind is not None:
        raise c.error(name_tok, f"access lists cannot use {kind} '{name_tok.text}' (not modelled)")


def _ports(
    p: Parser, c: Cursor, protocol: str | None
) -> tuple[list[tuple[PortMatch, ...]] | None, str | None]:
    """A port position: None when absent, else the alternatives (one per port of a port group) and, for a
    group, how it was written."""
    op_tok = c.peek_token()
    if op_tok is not None and op_tok.word == "object-group" and c.pos + 1 < len(c.line.tokens):
        name_tok = c.line.tokens[c.pos + 1]
        svc = p.policy.service_objects.get(name_tok.text)
        if svc is not None and svc.kind == "port":
            if protocol is None:
                raise c.error(op_tok, "port groups are only valid for tcp, udp and sctp")
            if protocol != "tcp-udp" and svc.port_protocol not in (protocol, "tcp-udp"):
                raise c.error(
                    name_tok, f"port group '{name_tok.text}' is for {svc.port_protocol}, not {protocol}"
                )
            c.pos += 2
            p.use(name_tok.text)
            return [e.destination_ports for e in svc.entries], f"object-group {name_tok.text}"
    if op_tok is None or op_tok.word not in _PORT_OPS:
        return None, None
    if protocol is None:
        raise c.error(op_tok, "ports are only valid for tcp, udp and sctp")
    return [(services.port_match(c, "tcp" if protocol == "sctp" else protocol),)], None


def _icmp_alternatives(
    p: Parser, c: Cursor, protocol: int
) -> tuple[list[tuple[int | None, int | None]], str | None]:
    if c.peek() == "object-group":
        c.next("object-group")
        name_tok = c.next("icmp-type object-group name")
        svc = p.policy.service_objects.get(name_tok.text)
        if svc is None or svc.kind != "icmp-type":
            raise c.error(name_tok, f"'{name_tok.text}' is not a defined icmp-type object-group")
        p.use(name_tok.text)
        return [(e.icmp_type, e.icmp_code) for e in svc.entries], f"object-group {name_tok.text}"
    return [_icmp(c, protocol)], None


def _icmp(c: Cursor, protocol: int) -> tuple[int, int | None]:
    tok = c.next("ICMP type")
    table = names.ICMP_TYPES if protocol == PROTO_ICMP else names.ICMP6_TYPES
    if tok.text.isdigit():
        icmp_type = c.integer_of(tok, 0, 255, "ICMP type")
    elif tok.word in table:
        icmp_type = table[tok.word]
    else:
        raise c.error(tok, f"unknown ICMP type '{tok.text}'")
    code = None
    nxt = c.peek_token()
    if nxt is not None and nxt.text.isdigit():
        code = c.integer(0, 255, "ICMP code")
    return icmp_type, code


def _trailer(p: Parser, c: Cursor, rule: AccessRule) -> None:
    """``log [level] [interval secs] | log disable | log default``, ``inactive``, ``time-range``."""
    while not c.at_end():
        tok = c.next("option")
        if tok.word == "log":
            rule.log = True
            if c.accept("disable"):
                rule.log = False
                continue
            if c.accept("default"):
                continue
            level_tok = c.peek_token()
            if level_tok is not None and level_tok.text.isdigit():
                rule.log_level = c.integer(0, 7, "log level")
            elif level_tok is not None and level_tok.word in names.LOG_LEVELS:
                c.next("log level")
                rule.log_level = names.LOG_LEVELS[level_tok.word]
            if c.accept("interval"):
                rule.log_interval = c.integer(1, 600, "log interval")
        elif tok.word == "inactive":
            rule.inactive = True
        elif tok.word == "time-range":
            name_tok = c.next("time-range name")
            rule.time_range = name_tok.text
            p.use(name_tok.text)
            p.require(
                lambda name=name_tok.text: name in p.policy.time_ranges,
                c.error(name_tok, f"time-range '{name_tok.text}' does not exist"),
            )
            # Active only part of the time on an ASA; statewall does not evaluate time ranges.
            p.gap(
                c.line,
                "time-range",
                f"apply this entry only during time-range {name_tok.text}",
                col=tok.col,
                acl=rule.acl,
                message=f"time-range {name_tok.text} is not modelled: statewall applies this entry at all "
                "times, a real ASA only during the time range",
            )
        else:
            raise c.error(tok, f"unexpected '{tok.text}'")


# --------------------------------------------------------------------------------------------------
# access-group


def access_group(p: Parser, c: Cursor) -> None:
    name_tok = c.next("access-list name")
    where = c.keyword(("in", "out", "global"), "direction")
    ifc_tok = None
    if where != "global":
        c.keyword(("interface",), "keyword")
        ifc_tok = c.next("interface name")
        c.accept("per-user-override", "control-plane")
    c.end()
    p.require(
        lambda: name_tok.text in p.policy.access_lists,
        c.error(name_tok, f"access-group refers to unknown access-list '{name_tok.text}'"),
    )
    if ifc_tok is not None:
        p.require(
            lambda: ifc_tok.text in p.policy.interfaces,
            c.error(ifc_tok, f"access-group refers to unknown interface '{ifc_tok.text}'"),
        )
    interface = ifc_tok.text if ifc_tok is not None else None
    direction = "in" if where == "global" else where
    group = AccessGroup(name_tok.text, interface, direction, p.origin(c.line))  # type: ignore[arg-type]
    # One access list per interface and direction (and one global): a new binding replaces the old.
    groups = p.policy.access_groups
    groups[:] = [g for g in groups if (g.interface, g.direction) != (interface, direction)]
    groups.append(group)


# --------------------------------------------------------------------------------------------------
# object network / object-group network


def flatten(p: Parser, obj: NetworkObject) -> list[IPNetwork]:
    out: list[IPNetwork] = []
    for member in obj.members:
        if isinstance(member, str):
            nets = p.policy.network_objects[member].networks
        elif isinstance(member, tuple):
            nets = list(ipaddress.summarize_address_range(*member))  # type: ignore[arg-type]
        else:
            nets = [member]
        out.extend(n for n in nets if n not in out)
    return out


def object_(p: Parser, c: Cursor) -> None:
    kind = c.keyword(("network", "service"), "object type")
    if kind == "service":
        objnat.object_service(p, c)  # read for twice NAT; access lists still refuse them
        return
    obj = _object_named(p, c, group=False)

    def sub(p: Parser, c: Cursor) -> None:
        word = c.next("object command").word
        if word == "nat":
            objnat.object_nat(p, c, obj)  # object NAT (8.3+)
            return
        if word == "description":
            obj.description = c.rest() or None
            return
        if word == "fqdn":
            # The ASA resolves the name and matches the addresses it gets; statewall cannot: the object
            # has no address, and an entry naming it is not applied (said where it is used).
            family = c.accept("v4", "v6")
            name_tok = c.next("fully qualified domain name")
            c.end()
            obj.members, obj.networks = [], []
            obj.fqdn = (f"{family.word} " if family else "") + name_tok.text
            p.fqdn_objects[obj.name] = name_tok.text
            p.gap(c.line, "FQDN object", f"resolve {name_tok.text} and match the addresses it resolves to")
            return
        obj.members = [_object_value(p, c, word)]
        c.end()
        obj.networks = flatten(p, obj)

    def accepts(line: Line) -> bool:
        # An unindented "nat [(inside,outside)] static|dynamic ..." is object NAT; "nat (inside) 1 ..." is
        # 8.2 NAT and "nat (inside,outside) source ..." twice NAT.
        words = line.words
        if words[0] == "nat":
            kind = words[2] if len(words) > 2 and "," in words[1] else words[1] if len(words) > 1 else ""
            return kind in ("static", "dynamic")
        return words[0] in ("host", "subnet", "range", "fqdn", "description")

    p.open_mode(Mode("object network", sub, accepts))


def _object_value(p: Parser, c: Cursor, word: str) -> IPNetwork | tuple:
    if word == "host":
        tok = c.next("host address")
        try:
            return ipaddress.ip_network(ipaddress.ip_address(p.hosts.get(tok.text, tok.text)))
        except ValueError:
            raise c.error(tok, f"invalid IP address '{tok.text}'") from None
    if word == "subnet":
        tok = c.next("subnet")
        if "/" in tok.text:
            prefix = c.ipv6_prefix_of(tok)
            if prefix.network.network_address != prefix.ip:
                raise c.error(tok, f"prefix '{tok.text}' has bits outside its length")
            return prefix.network
        return c.network(tok, c.netmask(), c.ipv4_of(tok, p.hosts))
    if word == "range":
        first_tok = c.next("first address")
        last_tok = c.next("last address")
        try:
            first = ipaddress.ip_address(first_tok.text)
        except ValueError:
            raise c.error(first_tok, f"invalid IP address '{first_tok.text}'") from None
        try:
            last = ipaddress.ip_address(last_tok.text)
        except ValueError:
            raise c.error(last_tok, f"invalid IP address '{last_tok.text}'") from None
        if last.version != first.version or last < first:
            raise c.error(last_tok, f"invalid range {first_tok.text}-{last_tok.text}")
        return (first, last)
    raise c.error(c.line.tokens[0], f"unknown object command '{c.line.tokens[0].text}'")


def object_group(p: Parser, c: Cursor) -> None:
    if services.object_group_command(p, c):
        return
    kind_tok = c.next("object-group type")
    if kind_tok.word in ("user", "security"):
        name_tok = c.peek_token()
        if name_tok is not None:
            p.unmodelled_objects[name_tok.text] = f"{kind_tok.word} object-group"
        passthrough.keep_not_modelled(
            p, c, f"object-group {kind_tok.word}", "match traffic by user or security group identity"
        )
        return
    if kind_tok.word != "network":
        raise c.error(
            kind_tok,
            f"invalid object-group type '{kind_tok.text}' "
            "(expected network, service, protocol, icmp-type, user or security)",
        )
    obj = _object_named(p, c, group=True)

    def sub(p: Parser, c: Cursor) -> None:
        word = c.next("object-group command").word
        if word == "description":
            obj.description = c.rest() or None
            return
        if word == "group-object" or (word == "network-object" and c.peek() == "object"):
            if word == "network-object":
                c.next("object")
            tok = c.next("object name")
            ref = p.policy.network_objects.get(tok.text)
            if ref is None or ref.group != (word == "group-object") or ref is obj:
                kind = "object-group" if word == "group-object" else "object"
                raise c.error(tok, f"unknown {kind} '{tok.text}'")
            p.use(ref.name)
            if ref.name in p.fqdn_objects:
                p.gap(
                    c.line,
                    "FQDN object",
                    f"match the addresses {p.fqdn_objects[ref.name]} resolves to",
                    message=f"FQDN object {ref.name} is not modelled: entries naming {obj.name} do not match "
                    "its addresses",
                )
            member: object = ref.name
        elif word == "network-object":
            tok = c.next("network")
            if tok.word == "host":
                member = _object_value(p, c, "host")
            else:
                c.pos -= 1
                member = _object_value(p, c, "subnet")
        else:
            raise c.error(c.line.tokens[0], f"unknown object-group command '{c.line.tokens[0].text}'")
        c.end()
        # Sets beside the lists keep adding a member constant-time (groups of thousands exist).
        sets = p.group_sets.get(obj.name)
        if sets is None:
            sets = p.group_sets[obj.name] = (set(obj.members), set(obj.networks))
        members, networks = sets
        if member in members:
            return
        members.add(member)
        obj.members.append(member)  # type: ignore[arg-type]
        if isinstance(member, str):
            nets = p.policy.network_objects[member].networks
        elif isinstance(member, tuple):
            nets = list(ipaddress.summarize_address_range(*member))  # type: ignore[arg-type]
        else:
            nets = [member]  # type: ignore[list-item]
        for n in nets:
            if n not in networks:
                networks.add(n)
                obj.networks.append(n)

    p.open_mode(
        Mode("object-group network", sub, _word_in({"network-object", "group-object", "description"}))
    )


def _object_named(p: Parser, c: Cursor, group: bool) -> NetworkObject:
    tok = c.next("object name")
    if not _NAME.match(tok.text) or len(tok.text) > 64:
        raise c.error(tok, f"invalid object name '{tok.text}'")
    c.end()
    obj = p.policy.network_objects.get(tok.text)
    taken = services.name_taken(p, tok.text, "network object-group" if group else "network object")
    if obj is None and taken is not None:
        # Objects and object groups share one name space (Cisco, "Guidelines for Objects").
        raise c.error(tok, f"'{tok.text}' is already defined as a {taken} (objects share one name space)")
    if obj is None:
        obj = NetworkObject(tok.text, group=group, origin=p.origin(c.line))
        p.policy.network_objects[tok.text] = obj
    elif obj.group != group:
        actual = "object-group" if obj.group else "object"
        raise c.error(tok, f"'{tok.text}' is already an {actual}")
    return obj


def _word_in(words: set[str]) -> Callable[[Line], bool]:
    def accepts(line: Line) -> bool:
        return line.words[0] in words

    return accepts


COMMANDS: dict[str, Handler] = {
    "access-list": access_list,
    "access-group": access_group,
    "object": object_,
    "object-group": object_group,
}
