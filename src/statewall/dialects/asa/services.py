"""ASA service objects: ``object-group service`` (both forms), ``object-group protocol``, ``object-group
icmp-type`` and the ``ServiceEntry`` lists access-list entries expand them to; ``time-range``.

Forms (Cisco ASA configuration guides 8.2 "Configuring Object Groups", 9.x "Objects for Access Control"):

    object-group service NAME                    service-object PROTO
                          service-object {tcp|udp|tcp-udp|sctp} [source OP P] [destination OP P]
                          service-object {tcp|udp|tcp-udp} {eq|range ...}   (8.2: the destination)
                                                 service-object icmp|icmp6 [TYPE [CODE]]
                                                 service-object object SVC
                                                 group-object NAME
    object-group service NAME {tcp|udp|tcp-udp}  port-object {eq P | range P1 P2}, group-object NAME
    object-group protocol NAME                   protocol-object PROTO, group-object NAME
    object-group icmp-type NAME                  icmp-object TYPE, group-object NAME

Objects and object groups share one name space (Cisco, "Guidelines for Objects"): a name defined as one
kind cannot be defined as another. A nested group must exist before it is named and be of the same kind.
``object service`` is read by ``objnat`` (twice NAT uses it) and registered here for access lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...policy import PROTO_ICMP, PROTO_ICMPV6, PortMatch, ServiceEntry, ServiceObject, TimeRange
from . import names
from .lexer import Cursor, Line
from .modes import Handler, Mode

if TYPE_CHECKING:
    from .parser import Parser

PORT_PROTOCOLS = ("tcp", "udp", "tcp-udp", "sctp")
_PROTO_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}
_OPS = ("eq", "neq", "lt", "gt", "range")


def name_taken(p: Parser, name: str, kind: str) -> str | None:
    """The kind ``name`` is already defined as, when it is not ``kind`` (one name space for all objects)."""
    obj = p.policy.network_objects.get(name)
    if obj is not None:
        other = "network object-group" if obj.group else "network object"
        return None if other == kind else other
    svc = p.policy.service_objects.get(name)
    if svc is not None:
        other = f"{svc.kind} object-group" if svc.group else "service object"
        return None if other == kind else other
    return None


def protocol_number(c: Cursor, tok) -> int | None:
    """``ip`` (None: any), a protocol name or number."""
    if tok.word == "ip":
        return None
    if tok.text.isdigit():
        return c.integer_of(tok, 0, 255, "protocol")
    number = names.PROTOCOLS.get(tok.word)
    if number is None:
        raise c.error(tok, f"unknown protocol '{tok.text}'")
    return number


def port_match(c: Cursor, protocol: str) -> PortMatch:
    """``OP PORT`` or ``range P1 P2`` for ``protocol`` (tcp, udp, tcp-udp, sctp)."""
    op = c.keyword(_OPS, "port operator")
    table = "tcp" if protocol == "sctp" else protocol
    low = c.port(table)
    if op != "range":
        return PortMatch(op, low)  # type: ignore[arg-type]
    high_tok = c.peek_token()
    high = c.port(table)
    if high < low:
        raise c.error(high_tok, f"port range {low}-{high} is empty")
    return PortMatch("range", low, high)


def icmp_type(c: Cursor, protocol: int, tok) -> int:
    table = names.ICMP_TYPES if protocol == PROTO_ICMP else names.ICMP6_TYPES
    if tok.text.isdigit():
        return c.integer_of(tok, 0, 255, "ICMP type")
    if tok.word in table:
        return table[tok.word]
    raise c.error(tok, f"unknown ICMP type '{tok.text}'")


def service_line(p: Parser, c: Cursor) -> list[ServiceEntry]:
    """The entries of ``PROTO [source OP P] [destination OP P]`` / ``PROTO OP P`` / ``icmp [TYPE [CODE]]``
    (the cursor is at PROTO); ``tcp-udp`` gives a TCP and a UDP entry."""
    proto_tok = c.next("protocol")
    word = proto_tok.word
    if word in PORT_PROTOCOLS:
        src: tuple[PortMatch, ...] = ()
        dst: tuple[PortMatch, ...] = ()
        while not c.at_end():
            if c.peek() in _OPS:  # the 8.2 form: the destination port
                dst = (port_match(c, word),)
                continue
            side = c.keyword(("source", "destination"), "service port side")
            if side == "source":
                src = (port_match(c, word),)
            else:
                dst = (port_match(c, word),)
        protos = (6, 17) if word == "tcp-udp" else (_PROTO_NUMBERS[word],)
        return [ServiceEntry(proto, src, dst) for proto in protos]
    proto = protocol_number(c, proto_tok)
    if proto in (PROTO_ICMP, PROTO_ICMPV6) and not c.at_end():
        itype = icmp_type(c, proto, c.next("ICMP type"))
        code = c.integer(0, 255, "ICMP code") if not c.at_end() else None
        c.end()
        return [ServiceEntry(proto, icmp_type=itype, icmp_code=code)]
    c.end()
    return [ServiceEntry(proto)]


def _group_kind(kind: str) -> str:
    return f"{kind} object-group"


def object_group(p: Parser, c: Cursor, type_word: str) -> None:
    """``object-group service|protocol|icmp-type NAME ...`` (the cursor is after the type)."""
    tok = c.next("object-group name")
    port_protocol = None
    if type_word == "service" and not c.at_end():
        port_protocol = c.keyword(("tcp", "udp", "tcp-udp"), "service protocol")
    c.end()
    kind = (
        "port"
        if port_protocol
        else {"service": "service", "protocol": "protocol"}.get(type_word, "icmp-type")
    )
    taken = name_taken(p, tok.text, _group_kind(kind))
    if taken is not None:
        raise c.error(tok, f"'{tok.text}' is already defined as a {taken} (objects share one name space)")
    obj = p.policy.service_objects.get(tok.text)
    if obj is None:
        obj = ServiceObject(tok.text, kind, True, port_protocol, origin=p.origin(c.line))  # type: ignore[arg-type]
        p.policy.service_objects[tok.text] = obj
    elif obj.port_protocol != port_protocol:
        raise c.error(tok, f"object-group '{tok.text}' was defined for {obj.port_protocol or 'services'}")
    words = {
        "service": {"service-object", "port-object", "group-object", "description"},
        "port": {"port-object", "group-object", "description"},
        "protocol": {"protocol-object", "group-object", "description"},
        "icmp-type": {"icmp-object", "group-object", "description"},
    }[kind]

    def sub(p: Parser, c: Cursor) -> None:
        _member(p, c, obj)

    def accepts(line: Line) -> bool:
        return line.words[0] in words

    p.open_mode(Mode(f"object-group {type_word}", sub, accepts))


def _member(p: Parser, c: Cursor, obj: ServiceObject) -> None:
    first = c.next("object-group command")
    word = first.word
    text = c.line.text
    if word == "description":
        obj.description = c.rest() or None
        return
    if word == "group-object":
        tok = c.next("object-group name")
        c.end()
        ref = p.policy.service_objects.get(tok.text)
        if ref is None or not ref.group or ref.kind != obj.kind or ref is obj:
            raise c.error(tok, f"object-group '{tok.text}' is not a defined {obj.kind} object-group")
        p.use(tok.text)
        entries = list(ref.entries)
    elif word == "service-object" and obj.kind == "service":
        if c.peek() == "object":
            c.next("object")
            tok = c.next("service object name")
            c.end()
            ref = p.policy.service_objects.get(tok.text)
            if ref is None or ref.group:
                raise c.error(tok, f"service object '{tok.text}' is not defined")
            p.use(tok.text)
            entries = list(ref.entries)
        else:
            entries = service_line(p, c)
    elif word == "port-object" and obj.kind in ("port", "service"):
        if obj.port_protocol is None:
            raise c.error(first, "port-object needs a protocol: object-group service NAME tcp|udp|tcp-udp")
        pm = port_match(c, obj.port_protocol)
        c.end()
        entries = [ServiceEntry(destination_ports=(pm,))]
    elif word == "protocol-object" and obj.kind == "protocol":
        proto = protocol_number(c, c.next("protocol"))
        c.end()
        entries = [ServiceEntry(proto)]
    elif word == "icmp-object" and obj.kind == "icmp-type":
        itype = icmp_type(c, PROTO_ICMP, c.next("ICMP type"))
        c.end()
        entries = [ServiceEntry(PROTO_ICMP, icmp_type=itype)]
    else:
        raise c.error(first, f"'{first.text}' does not belong in a {obj.kind} object-group")
    sets = p.group_sets.get(obj.name)
    if sets is None:
        sets = p.group_sets[obj.name] = (set(obj.members), set(obj.entries))
    members, known = sets
    if text not in members:
        members.add(text)
        obj.members.append(text)
    for e in entries:
        if e not in known:
            known.add(e)
            obj.entries.append(e)


def object_group_command(p: Parser, c: Cursor) -> bool:
    """Dispatch ``object-group service|protocol|icmp-type``; False for other types."""
    kind = c.peek()
    if kind not in ("service", "protocol", "icmp-type"):
        return False
    c.next("object-group type")
    object_group(p, c, kind)
    return True


# --------------------------------------------------------------------------------------------------
# time-range


def time_range(p: Parser, c: Cursor) -> None:
    """``time-range NAME`` with ``absolute [start T D M Y] [end T D M Y]`` and ``periodic DAYS T to [DAYS] T``
    lines, kept as written. Access-list entries naming one are active only in that time; statewall does
    not evaluate time ranges (each such entry is reported as not modelled)."""
    tok = c.next("time-range name")
    c.end()
    tr = p.policy.time_ranges.get(tok.text)
    if tr is None:
        tr = TimeRange(tok.text, origin=p.origin(c.line))
        p.policy.time_ranges[tok.text] = tr
    p.no_effect()  # by itself; the entries that name it say what is not modelled

    def sub(p: Parser, c: Cursor) -> None:
        word = c.keyword(("absolute", "periodic", "no"), "time-range command")
        if word == "no":
            c.rest()
        else:
            _time_spec(c, word)
        tr.lines.append(c.line.text)
        p.no_effect()

    def accepts(line: Line) -> bool:
        return line.words[0] in ("absolute", "periodic")

    p.open_mode(Mode("time-range", sub, accepts))


_DAYS = frozenset(
    {
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "daily",
        "weekdays",
        "weekend",
    }
)
_MONTHS = frozenset(
    {
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    }
)


def _time(c: Cursor) -> None:
    tok = c.next("time (hh:mm)")
    parts = tok.text.split(":")
    if len(parts) != 2 or not all(x.isdigit() for x in parts) or int(parts[0]) > 23 or int(parts[1]) > 59:
        raise c.error(tok, f"invalid time '{tok.text}' (expected hh:mm)")


def _time_spec(c: Cursor, word: str) -> None:
    if word == "absolute":
        while not c.at_end():
            c.keyword(("start", "end"), "absolute keyword")
            _time(c)
            c.integer(1, 31, "day")
            month = c.next("month")
            if month.word not in _MONTHS:
                raise c.error(month, f"invalid month '{month.text}'")
            c.integer(1993, 2035, "year")
        return
    day = c.next("days")
    if day.word not in _DAYS:
        raise c.error(day, f"invalid day '{day.text}'")
    while c.peek() in _DAYS:
        c.next("day")
    _time(c)
    c.keyword(("to",), "keyword")
    while c.peek() in _DAYS:
        c.next("day")
    _time(c)
    c.end()


COMMANDS: dict[str, Handler] = {"time-range": time_range}
