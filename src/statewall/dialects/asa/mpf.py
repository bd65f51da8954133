"""The ASA's modular policy framework and TCP options: ``class-map``, ``policy-map`` (``class``,
``set connection ...``, ``inspect ...``), ``tcp-map``, ``service-policy``, ``sysopt connection tcpmss``,
and statewall's own ``statewall fault NAME`` (lab fault injection), parsed into ``statewall.policy``
and printed back.

Owns the syntax, the ranges (reference A.1-A.3, seed 002) and the running-config form: several
``set connection`` lines typed in a class are combined into one line for the limits and one for the
timeouts, as the ASA's ``show running-config policy-map`` shows them. The meaning (which class a flow
falls into, precedence of interface over global policies) is ``statewall.mpf``'s.

Forms that are valid but not modelled (``class-map type inspect``, ``policy-map type inspect``,
``police``, ``priority``, other ``sysopt`` options) are kept as
written with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ...inspect import MODELLED_ENGINES
from ...mpf import CLASS_DEFAULT, DEFAULT_CLASS, DEFAULT_GLOBAL_POLICY, DEFAULT_INSPECTIONS
from ...policy import (
    BUILTIN,
    PROTO_TCP,
    PROTO_UDP,
    ClassMap,
    ClassMatch,
    ConnectionSettings,
    DnsInspectMap,
    Inspect,
    IpOptionsInspectMap,
    Policy,
    PolicyClass,
    PolicyMap,
    PortMatch,
    ServicePolicy,
    TcpMap,
)
from . import names, passthrough
from .lexer import Cursor, Line, Token, format_duration
from .modes import Handler, Mode

if TYPE_CHECKING:
    from .parser import Parser

_HOURS_1193 = 1193 * 3600
_NAME = re.compile(r"^[A-Za-z0-9_][\w.\-]{0,39}$")

# Inspection engines the ASA knows; two-word engines name their second word.
_ENGINES = frozenset(
    {
        "ctiqbe",
        "dcerpc",
        "dns",
        "esmtp",
        "ftp",
        "gtp",
        "h323",
        "http",
        "icmp",
        "ils",
        "im",
        "ip-options",
        "ipsec-pass-thru",
        "ipv6",
        "mgcp",
        "mmp",
        "netbios",
        "pptp",
        "radius-accounting",
        "rsh",
        "rtsp",
        "scansafe",
        "sip",
        "skinny",
        "snmp",
        "sqlnet",
        "sunrpc",
        "tftp",
        "waas",
        "xdmcp",
    }
)
_TWO_WORD = {"h323": ("h225", "ras"), "icmp": ("error",)}

# What a real ASA does for the inspections statewall does not implement (Cisco ASA firewall configuration
# guide, "Inspection of Basic Internet Protocols").
_INSPECT_ACTIONS = {
    "sip": "open pinholes for SIP media and translate SIP addresses",
    "h323 h225": "open pinholes for H.323 calls",
    "h323 ras": "open pinholes for H.323 RAS",
    "esmtp": "check and mask ESMTP commands",
    "tftp": "open pinholes for TFTP data",
    "sunrpc": "open pinholes for RPC services",
}

# DNS inspection map lines statewall keeps but does not apply (statewall.inspect.dns applies
# message-length maximum and dns-guard): what a real ASA does with them.
_DNS_MAP_GAPS = {
    "match": "match DNS messages and drop, mask or log them",
    "id-randomization": "randomize DNS query identifiers",
    "nat-rewrite": "rewrite A records of DNS replies by NAT",
    "id-mismatch": "count DNS identifier mismatches and log them",
    "tsig": "enforce TSIG resource records",
    "protocol-enforcement": "check DNS messages' labels and pointers",
}

# Policy-map class actions that are valid but not modelled: kept verbatim in PolicyClass.other.
_KEPT_ACTIONS = frozenset(
    {"police", "priority", "shape", "user-statistics", "flow-export", "ips", "csc", "service-policy"}
)


def release(policy: Policy) -> tuple[int, int]:
    """(major, minor) of the declared ASA/PIX release, (99, 0) when none is declared (newest)."""
    m = re.match(r"^(\d+)\.(\d+)", policy.version or "")
    return (int(m[1]), int(m[2])) if m else (99, 0)


def _limit_max(p: Parser) -> int:
    # 8.x configuration guides give 0..65535 for the connection limits, 9.x guides 0..2000000.
    return 65535 if release(p.policy) < (9, 0) else 2000000


def _name(c: Cursor, what: str) -> Token:
    tok = c.next(what)
    if not _NAME.match(tok.text):
        raise c.error(tok, f"invalid {what} '{tok.text}'")
    return tok


def _word_in(words: frozenset[str]):
    def accepts(line: Line) -> bool:
        w = line.words
        return w[0] in words or (w[0] == "no" and len(w) > 1 and w[1] in words)

    return accepts


# --------------------------------------------------------------------------------------------------
# class-map


_M = TypeVar("_M")


def _open_map(p: Parser, c: Cursor, maps: dict[str, _M], make: Callable[..., _M], name: str) -> _M:
    """The map ``name`` that a ``class-map``/``policy-map``/``tcp-map`` line opens: the one configured
    before (a map's lines may come in several blocks), else a new one, which replaces a built-in
    default of that name (``inspection_default``, ``global_policy``)."""
    m = maps.get(name)
    if m is None or m.origin is BUILTIN:
        m = maps[name] = make(name, origin=p.origin(c.line))
    return m


def class_map(p: Parser, c: Cursor) -> None:
    if c.peek() == "type":
        passthrough.keep_not_modelled(p, c, f"class-map type {c.peek(1) or ''}".strip())
        return
    tok = _name(c, "class-map name")
    c.end()
    if tok.text == CLASS_DEFAULT:
        raise c.error(tok, "class-default is the built-in class; it cannot be defined")
    cm = _open_map(p, c, p.policy.class_maps, ClassMap, tok.text)

    def sub(p: Parser, c: Cursor) -> None:
        _class_map_line(p, c, cm)

    p.open_mode(Mode("class-map", sub, _word_in(frozenset({"match", "description"}))))


def _class_map_line(p: Parser, c: Cursor, cm: ClassMap) -> None:
    negate = c.accept("no") is not None
    word = c.keyword(("match", "description"), "class-map command")
    if word == "description":
        cm.description = None if negate else c.rest()
        return
    kind_tok = c.next("match criterion")
    kind = kind_tok.word
    origin = p.origin(c.line)
    if kind == "any":
        c.end()
        match = ClassMatch("any", origin=origin)
    elif kind == "access-list":
        acl_tok = c.next("access-list name")
        c.end()
        p.require(
            lambda: acl_tok.text in p.policy.access_lists,
            c.error(acl_tok, f"class-map {cm.name} refers to unknown access-list '{acl_tok.text}'"),
        )
        match = ClassMatch("access-list", acl=acl_tok.text, origin=origin)
        # Before 8.3 the ASA matches class-map access lists against the addresses as the packet arrives
        # (mapped), from 8.3 against real ones (Cisco's 8.3 migration guide); the engine does the same
        # (statewall.engine.asa, the CONN-SETTINGS stage).
    elif kind == "port":
        proto_word = c.keyword(("tcp", "udp"), "protocol")
        op = c.keyword(("eq", "range"), "port operator")
        low = c.port(proto_word)
        ports = PortMatch("eq", low)
        if op == "range":
            high_tok = c.peek_token()
            high = c.port(proto_word)
            if high < low:
                raise c.error(high_tok, f"port range {low}-{high} is empty")
            ports = PortMatch("range", low, high)
        c.end()
        proto = PROTO_TCP if proto_word == "tcp" else PROTO_UDP
        match = ClassMatch("port", protocol=proto, ports=ports, origin=origin)
    elif kind == "default-inspection-traffic":
        c.end()
        match = ClassMatch("default-inspection-traffic", origin=origin)
    elif kind in _OTHER_MATCHES:
        # Valid, but statewall cannot tell which flows it selects: the class matches nothing here.
        c.rest()
        p.gap(
            c.line,
            f"class-map match {kind}",
            f"select the traffic of class {cm.name} by {kind}",
            col=kind_tok.col,
            message=f"match {kind_tok.text} is not modelled: class {cm.name} selects no traffic in "
            "statewall; kept as written",
        )
        cm.other.append((origin, c.line.text))
        return
    else:
        raise c.error(
            kind_tok,
            f"invalid match '{kind_tok.text}' (expected any, access-list, port, default-inspection-traffic, "
            f"{', '.join(sorted(_OTHER_MATCHES))})",
        )
    if negate:
        cm.matches = [m for m in cm.matches if (m.kind, m.acl, m.protocol, m.ports) != _key(match)]
        return
    # One criterion per class, except that default-inspection-traffic may narrow an access-list.
    kinds = {m.kind for m in cm.matches} | {match.kind}
    if len(cm.matches) >= 1 and kinds != {"access-list", "default-inspection-traffic"}:
        raise c.error(kind_tok, f"class-map {cm.name} already has a match criterion")
    cm.matches.append(match)


# class-map match criteria of the ASA that statewall does not evaluate (Cisco ASA command reference, "match").
_OTHER_MATCHES = frozenset(
    {
        "dscp",
        "precedence",
        "flow",
        "rtp",
        "tunnel-group",
        "region",
        "cmd",
        "request-command",
        "user-statistics",
    }
)


def _key(m: ClassMatch) -> tuple:
    return (m.kind, m.acl, m.protocol, m.ports)


# --------------------------------------------------------------------------------------------------
# policy-map, class, set connection, inspect


_PMAP_WORDS = passthrough.SUBCOMMANDS["policy-map"]


class _PolicyMapMode:
    """policy-map > class sub-modes; ``current`` is the open class (None at the policy-map level)."""

    def __init__(self, pm: PolicyMap) -> None:
        self.pm = pm
        self.current: PolicyClass | None = None
        self.class_indent = 0

    def handle(self, p: Parser, c: Cursor) -> None:
        line = c.line
        first = line.words[0]
        if first == "class" or (first == "no" and len(line.words) > 1 and line.words[1] == "class"):
            self.class_indent = line.indent
            self._class(p, c)
            return
        if first == "description":
            c.next("description")
            self.pm.description = c.rest()
            return
        if line.prompt_mode == "config-pmap":
            raise c.error(line.tokens[0], f"'{line.tokens[0].text}' needs a class (class NAME first)")
        if self.current is None:
            raise c.error(
                line.tokens[0], f"'{line.tokens[0].text}' outside a class of policy-map {self.pm.name}"
            )
        _class_action(p, c, self.current)

    def _class(self, p: Parser, c: Cursor) -> None:
        negate = c.accept("no") is not None
        c.next("class")
        tok = _name(c, "class-map name")
        c.end()
        pm = self.pm
        if negate:
            pm.classes = [pc for pc in pm.classes if pc.class_map != tok.text]
            self.current = None
            return
        # inspection_default is part of the factory configuration a transcript is typed onto.
        if tok.text not in (CLASS_DEFAULT, DEFAULT_CLASS):
            p.require(
                lambda: tok.text in p.policy.class_maps,
                c.error(tok, f"policy-map {pm.name} refers to unknown class-map '{tok.text}'"),
            )
        for pc in pm.classes:
            if pc.class_map == tok.text:
                self.current = pc
                return
        pc = PolicyClass(tok.text, origin=p.origin(c.line))
        # class-default always stays last, as the ASA keeps it.
        if pm.classes and pm.classes[-1].class_map == CLASS_DEFAULT:
            pm.classes.insert(len(pm.classes) - 1, pc)
        else:
            pm.classes.append(pc)
        self.current = pc

    def accepts(self, line: Line) -> bool:
        w = line.words
        return w[0] in _PMAP_WORDS or (w[0] == "no" and len(w) > 1 and w[1] in _PMAP_WORDS)

    def on_exit(self, line: Line) -> bool:
        if line.prompt_mode:
            if line.prompt_mode.endswith("-c"):
                self.current = None
                return False
            return True
        if self.current is not None:
            self.current = None
            return False
        return True


def policy_map(p: Parser, c: Cursor) -> None:
    if c.peek() == "type" and c.peek(1) == "inspect" and c.peek(2) == "dns" and c.peek(3) is not None:
        _dns_map(p, c)
        return
    if c.peek() == "type" and c.peek(1) == "inspect" and c.peek(2) == "ip-options" and c.peek(3) is not None:
        _ip_options_map(p, c)
        return
    if c.peek() == "type":
        passthrough.keep_not_modelled(p, c, f"policy-map type {c.peek(1) or ''}".strip())
        return
    tok = _name(c, "policy-map name")
    c.end()
    pm = _open_map(p, c, p.policy.policy_maps, PolicyMap, tok.text)
    mode = _PolicyMapMode(pm)
    p.open_mode(Mode("policy-map", mode.handle, mode.accepts, mode.on_exit))


def _dns_map(p: Parser, c: Cursor) -> None:
    """``policy-map type inspect dns NAME`` (e.g. the factory ``preset_dns_map``): its ``parameters``
    read into ``DnsInspectMap``; kept as written for printing. ``message-length maximum`` and
    ``dns-guard`` are applied by DNS inspection (statewall.inspect.dns); the other parameters and the
    map's ``match`` rules are named as not modelled at their lines (Cisco ASA firewall configuration
    guide, "DNS Inspection")."""
    tokens = c.line.tokens
    name = tokens[4].text
    if len(tokens) > 5:
        raise c.error(tokens[5], f"unexpected '{tokens[5].text}'")
    dm = DnsInspectMap(name, origin=p.origin(c.line))
    p.policy.dns_inspect_maps[name] = dm
    passthrough.keep_block(p, c)
    mode = p.modes[-1]
    keep = mode.handle

    def handle(p: Parser, c: Cursor) -> None:
        keep(p, c)
        negate = c.accept("no") is not None
        tok = c.next("parameter")
        word = tok.word
        if word in ("parameters", "description"):
            c.rest()
            return
        if word in _DNS_MAP_GAPS and not negate:
            p.gap(
                c.line,
                f"inspect dns {word}",
                _DNS_MAP_GAPS[word],
                message=f"DNS inspection map {name}: {word} is not modelled; kept as written",
                col=tok.col,
            )
        if word in ("match", "drop", "drop-connection", "log", "mask", "enforce"):
            c.rest()
            return
        if word == "message-length":
            c.keyword(("maximum",), "keyword")
            side = c.accept("client", "server")
            tok = c.next("length")
            if tok.word == "auto" and side is not None:
                value: int | str = "auto"
            else:
                value = c.integer_of(tok, 512, 65535, "message-length maximum")
            c.end()
            if side is None:
                dm.message_length_max = None if negate else int(value)
            elif side.word == "client":
                dm.message_length_client = None if negate else value
            else:
                dm.message_length_server = None if negate else value
            return
        flags = {
            "dns-guard": "dns_guard",
            "id-randomization": "id_randomization",
            "protocol-enforcement": "protocol_enforcement",
            "nat-rewrite": "nat_rewrite",
        }
        if word in flags:
            c.end()
            setattr(dm, flags[word], not negate)
            return
        c.rest()  # id-mismatch, tsig enforced, tcp-inspection, ...: kept as written

    mode.handle = handle


# ``policy-map type inspect ip-options`` parameters statewall models: the option's type byte.
IP_OPTION_WORDS = {"eool": 0, "nop": 1, "router-alert": 148}
# ASA 9.5(1)'s further parameters (any option by name, ``default action``): kept, not modelled.
_IP_OPTION_MORE = frozenset(
    {
        "basic-security",
        "commercial-security",
        "default",
        "exp-flow-control",
        "exp-measure",
        "extended-security",
        "imi-traffic-descriptor",
        "quick-start",
        "record-route",
        "stream-id",
        "timestamp",
    }
)
_IP_OPTIONS_WORDS = frozenset({"parameters", "description", *IP_OPTION_WORDS, *_IP_OPTION_MORE})


def _ip_options_map(p: Parser, c: Cursor) -> None:
    """``policy-map type inspect ip-options NAME`` into ``IpOptionsInspectMap``: ``parameters``, then per
    option ``[no] eool|nop|router-alert action allow|clear`` (``statewall.ipoptions`` applies them)."""
    for word in ("type", "inspect", "ip-options"):
        c.next(word)
    tok = _name(c, "ip-options inspect map name")
    c.end()
    m = _open_map(p, c, p.policy.ip_options_maps, IpOptionsInspectMap, tok.text)
    state = {"params": False}

    def handle(p: Parser, c: Cursor) -> None:
        negate = c.accept("no") is not None
        word_tok = c.next("ip-options map command")
        word = word_tok.word
        if word == "description" and not state["params"]:
            m.description = None if negate else c.rest()
        elif word == "parameters":
            c.end()
            state["params"] = True
        elif word in IP_OPTION_WORDS:
            if negate:
                # ``no router-alert action ...``: back to the map's default, dropped.
                c.rest()
                m.actions.pop(IP_OPTION_WORDS[word], None)
                return
            c.keyword(("action",), "action")
            m.actions[IP_OPTION_WORDS[word]] = c.keyword(("allow", "clear"), f"{word} action")
            c.end()
        elif word in _IP_OPTION_MORE:
            text = c.line.text.strip()
            c.rest()
            m.other.append((p.origin(c.line), text))
            p.gap(
                c.line,
                f"ip-options inspect map parameter '{word}'",
                f"apply '{text}' to packets with that IP option",
                message=f"'{text}' in policy-map type inspect ip-options {m.name} is not modelled "
                "(statewall models eool, nop and router-alert; other options are dropped); kept as written",
            )
        else:
            raise c.error(word_tok, f"unknown ip-options map command '{word_tok.text}'")

    def on_exit(line: Line) -> bool:
        if state["params"]:
            state["params"] = False
            return False
        return True

    p.open_mode(Mode("policy-map type inspect ip-options", handle, _word_in(_IP_OPTIONS_WORDS), on_exit))


def render_ip_options_maps(policy: Policy) -> list[str]:
    """The ip-options inspect maps as ``show running-config`` prints them."""
    out: list[str] = []
    names = {v: k for k, v in IP_OPTION_WORDS.items()}
    for m in policy.ip_options_maps.values():
        out.append(f"policy-map type inspect ip-options {m.name}")
        if m.description:
            out.append(f" description {m.description}")
        out.append(" parameters")
        for t, action in sorted(m.actions.items()):
            out.append(f"  {names[t]} action {action}")
        out += [f"  {text}" for _, text in m.other]
    return out


def _class_action(p: Parser, c: Cursor, pc: PolicyClass) -> None:
    negate = c.accept("no") is not None
    tok = c.next("class action")
    word = tok.word
    if word == "set":
        c.keyword(("connection",), "set keyword")
        if pc.connection is None:
            pc.connection = ConnectionSettings()
        _set_connection(p, c, pc, negate)
        if pc.connection is not None and _empty(pc.connection):
            pc.connection = None
    elif word == "inspect":
        ins = _inspect(p, c)
        pc.inspects = [i for i in pc.inspects if i.engine != ins.engine]
        if not negate:
            pc.inspects.append(ins)
            if ins.engine not in MODELLED_ENGINES:
                p.gap(
                    c.line,
                    f"inspect {ins.engine}",
                    _INSPECT_ACTIONS.get(
                        ins.engine, f"inspect {ins.engine} traffic (application inspection)"
                    ),
                    col=tok.col,
                )
    elif word in _KEPT_ACTIONS:
        p.warn(c.line, f"{word} is not modelled yet; kept as written")
        text = c.line.text
        pc.other = [(o, t) for o, t in pc.other if t != text.removeprefix("no ")]
        if not negate:
            pc.other.append((p.origin(c.line), text))
    else:
        raise c.error(tok, f"unknown policy-map class action '{tok.text}'")


def _empty(cs: ConnectionSettings) -> bool:
    fields = _LIMITS + _TIMEOUTS + ("random_sequence_number", "tcp_map", "decrement_ttl")
    return all(getattr(cs, f) is None for f in fields)


_LIMITS = ("conn_max", "embryonic_conn_max", "per_client_embryonic_max", "per_client_max")
_LIMIT_WORDS = {
    "conn-max": "conn_max",
    "embryonic-conn-max": "embryonic_conn_max",
    "per-client-embryonic-max": "per_client_embryonic_max",
    "per-client-max": "per_client_max",
}
_TIMEOUTS = ("timeout_embryonic", "timeout_idle", "timeout_half_closed", "dcd")


def _set_connection(p: Parser, c: Cursor, pc: PolicyClass, negate: bool) -> None:
    cs = pc.connection
    assert cs is not None
    origin = p.origin(c.line)
    first = c.peek_token()
    if first is None:
        raise c.error(None, "missing set connection parameter")
    if first.word == "advanced-options":
        c.next("advanced-options")
        name_tok = c.next("tcp-map name")
        c.end()
        if name_tok.word == "tcp-state-bypass":
            p.warn(c.line, "tcp-state-bypass is not modelled yet; kept as written")
            pc.other.append((origin, c.line.text))
            return
        if negate:
            cs.tcp_map = None
            return
        p.require(
            lambda: name_tok.text in p.policy.tcp_maps,
            c.error(name_tok, f"set connection advanced-options refers to unknown tcp-map '{name_tok.text}'"),
        )
        cs.tcp_map = name_tok.text
        cs.origins["tcp_map"] = origin
        return
    if first.word == "decrement-ttl":
        c.next("decrement-ttl")
        c.end()
        cs.decrement_ttl = None if negate else True
        if not negate:
            cs.origins["decrement_ttl"] = origin
        return
    if first.word == "timeout":
        c.next("timeout")
        _set_timeouts(p, c, cs, negate, origin)
        return
    if c.at_end():
        raise c.error(None, "missing set connection parameter")
    while not c.at_end():
        tok = c.next("set connection parameter")
        word = tok.word
        if word in _LIMIT_WORDS:
            field_ = _LIMIT_WORDS[word]
            if negate:
                setattr(cs, field_, None)
                if c.peek_token() is not None and c.peek_token().text.isdigit():  # type: ignore[union-attr]
                    c.next("number")
                continue
            setattr(cs, field_, c.integer(0, _limit_max(p), word))
            cs.origins[field_] = origin
        elif word == "random-sequence-number":
            if negate:
                cs.random_sequence_number = None
                c.accept("enable", "disable")
                continue
            cs.random_sequence_number = c.keyword(("enable", "disable"), "random-sequence-number") == "enable"
            cs.origins["random_sequence_number"] = origin
        else:
            raise c.error(tok, f"unknown set connection parameter '{tok.text}'")


def _duration_in(p: Parser, c: Cursor, what: str, low: int, high: int, zero: bool) -> float:
    tok, seconds = c.duration(what)
    if not (low <= seconds <= high or (zero and seconds == 0)):
        span = f"{format_duration(low)}..{format_duration(high)}"
        raise c.error(tok, f"{what} must be {'0 or ' if zero else ''}{span}")
    return float(seconds)


def _half_closed_min(p: Parser) -> int:
    # 0:05:00 up to 9.1(1), 0:00:30 from 9.1(2) (reference A.3).
    m = re.match(r"^(\d+)\.(\d+)(?:\((\d+))?", p.policy.version or "")
    if m and (int(m[1]), int(m[2]), int(m[3] or 0)) >= (9, 1, 2):
        return 30
    return 300


def _idle_min(p: Parser) -> int:
    # 0:05:00 in the 8.2 guide (seed 002); the 9.x guides allow 0:0:1.
    m = re.match(r"^(\d+)\.", p.policy.version or "")
    return 1 if m and int(m[1]) >= 9 else 300


def _set_timeouts(p: Parser, c: Cursor, cs: ConnectionSettings, negate: bool, origin) -> None:
    """``set connection timeout [embryonic T] [idle|tcp T [reset]] [half-closed T] [dcd [R [N]]]``."""
    if c.at_end():
        raise c.error(None, "missing set connection timeout parameter")
    while not c.at_end():
        tok = c.next("timeout parameter")
        word = tok.word
        if word == "embryonic":
            if negate:
                cs.timeout_embryonic = None
                _skip_duration(c)
                continue
            cs.timeout_embryonic = _duration_in(
                p, c, "set connection timeout embryonic", 5, _HOURS_1193, True
            )
            cs.origins["timeout_embryonic"] = origin
        elif word in ("idle", "tcp"):
            # "tcp" is the 8.2(1) spelling of "idle".
            if negate:
                cs.timeout_idle = cs.idle_reset = None
                _skip_duration(c)
                c.accept("reset")
                continue
            cs.timeout_idle = _duration_in(
                p, c, f"set connection timeout {word}", _idle_min(p), _HOURS_1193, True
            )
            cs.idle_reset = c.accept("reset") is not None
            cs.origins["timeout_idle"] = origin
        elif word == "half-closed":
            if negate:
                cs.timeout_half_closed = None
                _skip_duration(c)
                continue
            cs.timeout_half_closed = _duration_in(
                p, c, "set connection timeout half-closed", _half_closed_min(p), _HOURS_1193, True
            )
            cs.origins["timeout_half_closed"] = origin
        elif word == "dcd":
            if negate:
                cs.dcd = None
                cs.dcd_retry_interval, cs.dcd_max_retries = 15.0, 5
                _skip_duration(c)
                if c.peek_token() is not None and c.peek_token().text.isdigit():  # type: ignore[union-attr]
                    c.next("max-retries")
                continue
            cs.dcd = True
            cs.dcd_retry_interval, cs.dcd_max_retries = 15.0, 5
            nxt = c.peek_token()
            if nxt is not None and ":" in nxt.text:
                cs.dcd_retry_interval = _duration_in(
                    p, c, "set connection timeout dcd retry-interval", 1, 24 * 3600, False
                )
                nxt = c.peek_token()
                if nxt is not None and nxt.text.isdigit():
                    cs.dcd_max_retries = c.integer(1, 255, "dcd max-retries")
            cs.origins["dcd"] = origin
        else:
            raise c.error(tok, f"unknown set connection timeout parameter '{tok.text}'")


def _skip_duration(c: Cursor) -> None:
    nxt = c.peek_token()
    if nxt is not None and (":" in nxt.text or nxt.text == "0"):
        c.next("duration")


def _inspect(p: Parser, c: Cursor) -> Inspect:
    origin = p.origin(c.line)
    tok = c.next("inspection engine")
    engine = tok.word
    if engine not in _ENGINES:
        raise c.error(tok, f"unknown inspection engine '{tok.text}'")
    second = _TWO_WORD.get(engine)
    if second is not None:
        if engine == "h323":
            engine += " " + c.keyword(second, "h323 inspection")
        elif c.accept(*second):
            engine += " " + second[0]
    strict = engine == "ftp" and c.accept("strict") is not None
    map_name = None
    max_length = None
    if engine == "dns" and c.accept("maximum-length") is not None:
        # ASA 7.x/8.0's form (their factory global_policy says "inspect dns maximum-length 512").
        max_length = c.integer(512, 65535, "DNS maximum-length")
    elif not c.at_end():
        map_tok = _name(c, "inspect map name")
        map_name = map_tok.text
        if engine == "ip-options" and map_name not in p.policy.ip_options_maps:
            # The ASA takes only a map defined before (policy-map type inspect ip-options NAME).
            raise c.error(map_tok, f"policy-map type inspect ip-options {map_name} is not defined")
    c.end()
    return Inspect(engine, strict, map_name, origin, max_length)


# --------------------------------------------------------------------------------------------------
# tcp-map


_TCP_MAP_WORDS = passthrough.SUBCOMMANDS["tcp-map"]
# option -> (TcpMap field, allowed values)
_CHOICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "exceed-mss": ("exceed_mss", ("allow", "drop")),
    "invalid-ack": ("invalid_ack", ("allow", "drop")),
    "seq-past-window": ("seq_past_window", ("allow", "drop")),
    "reserved-bits": ("reserved_bits", ("allow", "clear", "drop")),
    "syn-data": ("syn_data", ("allow", "drop")),
    "synack-data": ("synack_data", ("allow", "drop")),
    "urgent-flag": ("urgent_flag", ("allow", "clear")),
    "window-variation": ("window_variation", ("allow", "drop", "allow-connection", "drop-connection")),
}
_SWITCHES = {
    "check-retransmission": "check_retransmission",
    "checksum-verification": "checksum_verification",
    "ttl-evasion-protection": "ttl_evasion_protection",
}
_OPTION_KINDS = {"selective-ack": "selective_ack", "timestamp": "timestamp", "window-scale": "window_scale"}


def tcp_map(p: Parser, c: Cursor) -> None:
    tok = _name(c, "tcp-map name")
    c.end()
    tm = _open_map(p, c, p.policy.tcp_maps, TcpMap, tok.text)

    def sub(p: Parser, c: Cursor) -> None:
        _tcp_map_line(p, c, tm)

    def close() -> None:
        _check_tcp_map(p, tm)

    p.open_mode(Mode("tcp-map", sub, _word_in(_TCP_MAP_WORDS), on_close=close))


def _tcp_map_line(p: Parser, c: Cursor, tm: TcpMap) -> None:
    negate = c.accept("no") is not None
    tok = c.next("tcp-map command")
    word = tok.word
    origin = p.origin(c.line)
    defaults = TcpMap(tm.name)
    if word == "description":
        tm.description = None if negate else c.rest()
    elif word in _SWITCHES:
        c.end()
        setattr(tm, _SWITCHES[word], not negate)
        tm.origins[_SWITCHES[word]] = origin
    elif word in _CHOICES:
        field_, allowed = _CHOICES[word]
        if negate:
            c.accept(*allowed)
            c.end()
            setattr(tm, field_, getattr(defaults, field_))
            tm.origins.pop(field_, None)
            return
        value = c.keyword(allowed, word)
        c.end()
        setattr(tm, field_, value.removesuffix("-connection"))
        tm.origins[field_] = origin
    elif word == "queue-limit":
        if negate:
            tm.queue_limit, tm.queue_timeout = 0, 4.0
            return
        tm.queue_limit = c.integer(0, 250, "queue-limit")
        if c.accept("timeout"):
            t_tok = c.peek_token()
            tm.queue_timeout = float(c.integer(1, 20, "queue-limit timeout"))
            if tm.queue_limit == 0:
                raise c.error(t_tok, "queue-limit timeout needs a queue limit of 1 or more")
        else:
            tm.queue_timeout = 4.0
        c.end()
        tm.origins["queue_limit"] = origin
    elif word == "tcp-options":
        _tcp_options(p, c, tm, negate, origin)
    else:
        raise c.error(tok, f"unknown tcp-map command '{tok.text}'")


def _tcp_options(p: Parser, c: Cursor, tm: TcpMap, negate: bool, origin) -> None:
    kind_tok = c.next("tcp-options kind")
    kind = kind_tok.word
    if kind in _OPTION_KINDS:
        field_ = _OPTION_KINDS[kind]
        if negate:
            c.accept("allow", "clear")
            setattr(tm, field_, "allow")
        else:
            setattr(tm, field_, c.keyword(("allow", "clear"), f"tcp-options {kind}"))
            tm.origins[field_] = origin
        c.end()
    elif kind == "md5":
        if negate:
            c.accept("allow", "clear", "drop")
            tm.md5 = None
        else:
            tm.md5 = c.keyword(("allow", "clear", "drop"), "tcp-options md5")  # type: ignore[assignment]
            tm.origins["md5"] = origin
        c.end()
    elif kind == "range":
        low_tok = c.peek_token()
        low = c.integer(6, 255, "tcp-options range lower bound")
        high_tok = c.peek_token()
        high = c.integer(6, 255, "tcp-options range upper bound")
        for t, v in ((low_tok, low), (high_tok, high)):
            if v == 8:
                raise c.error(t, "option 8 is the timestamp (use tcp-options timestamp)")
        if high < low:
            raise c.error(high_tok, f"tcp-options range {low} {high} is empty")
        if negate:
            c.accept("allow", "clear", "drop")
            c.end()
            tm.option_ranges = [r for r in tm.option_ranges if (r[0], r[1]) != (low, high)]
            return
        action = c.keyword(("allow", "clear", "drop"), "tcp-options range action")
        c.end()
        tm.option_ranges = [r for r in tm.option_ranges if (r[0], r[1]) != (low, high)]
        tm.option_ranges.append((low, high, action))
        tm.origins[f"range {low} {high}"] = origin
    else:
        raise c.error(kind_tok, f"unknown tcp-options kind '{kind_tok.text}'")


def _check_tcp_map(p: Parser, tm: TcpMap) -> None:
    # The ASA refuses seq-past-window allow with out-of-order buffering (reference A.1).
    if tm.seq_past_window == "allow" and tm.queue_limit > 0:
        origin = tm.origins.get("seq_past_window") or tm.origin
        from ..errors import ConfigError

        raise ConfigError(
            origin.file, origin.line, 1, f"tcp-map {tm.name}: seq-past-window allow needs queue-limit 0"
        )


# --------------------------------------------------------------------------------------------------
# service-policy, sysopt, statewall fault, no


def service_policy(p: Parser, c: Cursor, negate: bool = False) -> None:
    name_tok = c.next("policy-map name")
    where = c.keyword(("global", "interface"), "service-policy scope")
    ifc_tok = c.next("interface name") if where == "interface" else None
    c.end()
    interface = ifc_tok.text if ifc_tok is not None else None
    sps = p.policy.service_policies
    if negate:
        sps[:] = [s for s in sps if not (s.policy_map == name_tok.text and s.interface == interface)]
        p.keep(c.line)  # remembered so that the factory default global policy is not assumed
        return
    p.require(
        lambda: name_tok.text in p.policy.policy_maps,
        c.error(name_tok, f"service-policy refers to unknown policy-map '{name_tok.text}'"),
    )
    if ifc_tok is not None:
        p.require(
            lambda: ifc_tok.text in p.policy.interfaces,
            c.error(ifc_tok, f"service-policy refers to unknown interface '{ifc_tok.text}'"),
        )
    for s in sps:
        if s.interface == interface and s.policy_map != name_tok.text and s.origin is not BUILTIN:
            scope = "global" if interface is None else f"interface {interface}"
            raise c.error(
                name_tok,
                f"policy-map {s.policy_map} is already the {scope} service-policy (only one per "
                f"{'device' if interface is None else 'interface'}; remove it with no service-policy first)",
            )
    sps[:] = [s for s in sps if s.interface != interface]
    sps.append(ServicePolicy(name_tok.text, interface, p.origin(c.line)))


def sysopt(p: Parser, c: Cursor, negate: bool = False) -> None:
    if c.peek() != "connection" or c.peek(1) != "tcpmss":
        passthrough.keep_not_modelled(p, c, f"sysopt {c.peek() or ''}".strip())
        return
    c.next("connection")
    c.next("tcpmss")
    minimum = c.accept("minimum") is not None
    field_ = "sysopt_tcpmss_minimum" if minimum else "sysopt_tcpmss"
    if negate:
        if c.peek_token() is not None:
            c.next("bytes")
        c.end()
        setattr(p.policy, field_, 0 if minimum else 1380)
        p.policy.sysopt_origins.pop(field_, None)
        return
    tok = c.next("bytes")
    if not tok.text.isdigit() or not (int(tok.text) == 0 or 48 <= int(tok.text) <= 65535):
        raise c.error(tok, "sysopt connection tcpmss must be 0 or 48..65535")
    c.end()
    setattr(p.policy, field_, int(tok.text))
    p.policy.sysopt_origins[field_] = p.origin(c.line)


def statewall_command(p: Parser, c: Cursor) -> None:
    """``statewall fault NAME``: a named fault injection for the lab (``statewall.seqrand.FAULTS``)."""
    from ...seqrand import FAULTS

    c.keyword(("fault",), "statewall keyword")
    tok = c.next("fault name")
    if tok.word not in FAULTS:
        raise c.error(tok, f"unknown fault '{tok.text}' (known: {', '.join(sorted(FAULTS))})")
    c.end()
    p.policy.faults.add(tok.word)


_NO_HANDLED = {"service-policy": service_policy, "sysopt": sysopt}


def no(p: Parser, c: Cursor) -> None:
    word = c.peek()
    if word in _NO_HANDLED:
        c.next("command")
        _NO_HANDLED[word](p, c, negate=True)
        return
    if word in ("class-map", "policy-map", "tcp-map") and c.peek(1) != "type":
        c.next("command")
        tok = c.next(f"{word} name")
        c.end()
        table = {
            "class-map": p.policy.class_maps,
            "policy-map": p.policy.policy_maps,
            "tcp-map": p.policy.tcp_maps,
        }[word]
        table.pop(tok.text, None)
        return
    passthrough.COMMANDS["no"](p, c)


def finish(p: Parser) -> None:
    """The ASA's factory defaults: class-map inspection_default when a policy map uses it without
    defining it, and the global policy when the configuration sets no global service policy."""
    policy = p.policy
    uses_default_class = any(
        pc.class_map == DEFAULT_CLASS for pm in policy.policy_maps.values() for pc in pm.classes
    )
    if uses_default_class and DEFAULT_CLASS not in policy.class_maps:
        policy.class_maps[DEFAULT_CLASS] = ClassMap(
            DEFAULT_CLASS, [ClassMatch("default-inspection-traffic")], origin=BUILTIN
        )
    if any(sp.interface is None for sp in policy.service_policies):
        return
    removed = any(
        text.split()[:2] == ["no", "service-policy"] and text.split()[-1] == "global"
        for block in p.blocks
        for _, text in block
    )
    if removed or DEFAULT_GLOBAL_POLICY in policy.policy_maps:
        return
    if DEFAULT_CLASS not in policy.class_maps:
        policy.class_maps[DEFAULT_CLASS] = ClassMap(
            DEFAULT_CLASS, [ClassMatch("default-inspection-traffic")], origin=BUILTIN
        )
    elif policy.class_maps[DEFAULT_CLASS].matches != [ClassMatch("default-inspection-traffic")]:
        return  # a user class of that name: the factory policy would mean something else
    policy.policy_maps[DEFAULT_GLOBAL_POLICY] = PolicyMap(
        DEFAULT_GLOBAL_POLICY,
        [PolicyClass(DEFAULT_CLASS, inspects=[Inspect(e) for e in DEFAULT_INSPECTIONS])],
        origin=BUILTIN,
    )
    policy.service_policies.append(ServicePolicy(DEFAULT_GLOBAL_POLICY, None, BUILTIN))


COMMANDS: dict[str, Handler] = {
    "class-map": class_map,
    "policy-map": policy_map,
    "tcp-map": tcp_map,
    "service-policy": service_policy,
    "sysopt": sysopt,
    "statewall": statewall_command,
    "no": no,
}


# --------------------------------------------------------------------------------------------------
# Printing back


def render_sysopt(policy: Policy) -> list[str]:
    # Printed when configured, even to the default value, so that it reads back the same.
    out = []
    if policy.sysopt_tcpmss != 1380 or "sysopt_tcpmss" in policy.sysopt_origins:
        out.append(f"sysopt connection tcpmss {policy.sysopt_tcpmss}")
    if policy.sysopt_tcpmss_minimum or "sysopt_tcpmss_minimum" in policy.sysopt_origins:
        out.append(f"sysopt connection tcpmss minimum {policy.sysopt_tcpmss_minimum}")
    return out


def render_tcp_maps(policy: Policy) -> list[str]:
    out: list[str] = []
    for tm in policy.tcp_maps.values():
        if tm.origin is BUILTIN:
            continue
        out.append(f"tcp-map {tm.name}")
        out += [f"  {line}" for line in tcp_map_lines(tm, release(policy))]
    return out


def tcp_map_lines(tm: TcpMap, rel: tuple[int, int] = (99, 0)) -> list[str]:
    """The non-default options of ``tm`` as the ASA prints them."""
    d = TcpMap(tm.name)
    lines = []
    if tm.description:
        lines.append(f"description {tm.description}")
    if tm.check_retransmission:
        lines.append("check-retransmission")
    if tm.checksum_verification:
        lines.append("checksum-verification")
    if tm.exceed_mss is not None:
        lines.append(f"exceed-mss {tm.exceed_mss}")
    if tm.invalid_ack != d.invalid_ack:
        lines.append(f"invalid-ack {tm.invalid_ack}")
    if (tm.queue_limit, tm.queue_timeout) != (d.queue_limit, d.queue_timeout):
        timeout = f" timeout {int(tm.queue_timeout)}" if tm.queue_timeout != d.queue_timeout else ""
        lines.append(f"queue-limit {tm.queue_limit}{timeout}")
    for word, (field_, _) in _CHOICES.items():
        if word in ("exceed-mss", "invalid-ack"):
            continue
        value = getattr(tm, field_)
        if value != getattr(d, field_):
            if word == "window-variation" and rel >= (9, 0):
                value += "-connection"
            lines.append(f"{word} {value}")
    for word, field_ in _OPTION_KINDS.items():
        if getattr(tm, field_) != getattr(d, field_):
            lines.append(f"tcp-options {word} {getattr(tm, field_)}")
    if tm.md5 is not None:
        lines.append(f"tcp-options md5 {tm.md5}")
    lines += [f"tcp-options range {low} {high} {action}" for low, high, action in tm.option_ranges]
    if not tm.ttl_evasion_protection:
        lines.append("no ttl-evasion-protection")
    return lines


def render_class_maps(policy: Policy) -> list[str]:
    out: list[str] = []
    for cm in policy.class_maps.values():
        if cm.origin is BUILTIN:
            continue
        out.append(f"class-map {cm.name}")
        if cm.description:
            out.append(f" description {cm.description}")
        for m in cm.matches:
            out.append(f" match {_match_text(m)}")
        out += [f" {text}" for _, text in cm.other]
    return out


def _match_text(m: ClassMatch) -> str:
    if m.kind == "access-list":
        return f"access-list {m.acl}"
    if m.kind == "port":
        proto = "tcp" if m.protocol == PROTO_TCP else "udp"
        pm = m.ports
        assert pm is not None
        if pm.op == "range":
            high = names.port_name(pm.high or pm.low, proto)
            return f"port {proto} range {names.port_name(pm.low, proto)} {high}"
        return f"port {proto} eq {names.port_name(pm.low, proto)}"
    return m.kind


def connection_lines(cs: ConnectionSettings, rel: tuple[int, int] = (99, 0)) -> list[str]:
    """``set connection`` lines of one class, combined as the ASA's running-config shows them."""
    lines = []
    limits = ""
    for word, field_ in _LIMIT_WORDS.items():
        value = getattr(cs, field_)
        if value is not None:
            limits += f" {word} {value}"
    if cs.random_sequence_number is not None:
        limits += f" random-sequence-number {'enable' if cs.random_sequence_number else 'disable'}"
    if limits:
        lines.append("set connection" + limits)
    timeouts = ""
    if cs.timeout_embryonic is not None:
        timeouts += f" embryonic {format_duration(cs.timeout_embryonic)}"
    if cs.timeout_idle is not None:
        # 8.2(1) and earlier call the idle timeout "tcp".
        timeouts += f" {'tcp' if rel < (8, 2) else 'idle'} {format_duration(cs.timeout_idle)}"
        if cs.idle_reset:
            timeouts += " reset"
    if cs.timeout_half_closed is not None:
        timeouts += f" half-closed {format_duration(cs.timeout_half_closed)}"
    if cs.dcd:
        timeouts += " dcd"
        if (cs.dcd_retry_interval, cs.dcd_max_retries) != (15.0, 5):
            timeouts += f" {format_duration(cs.dcd_retry_interval)} {cs.dcd_max_retries}"
    if timeouts:
        lines.append("set connection timeout" + timeouts)
    if cs.tcp_map is not None:
        lines.append(f"set connection advanced-options {cs.tcp_map}")
    if cs.decrement_ttl:
        lines.append("set connection decrement-ttl")
    return lines


def _inspect_text(ins: Inspect) -> str:
    text = f"inspect {ins.engine}"
    if ins.strict:
        text += " strict"
    if ins.map:
        text += f" {ins.map}"
    if ins.max_length is not None:
        text += f" maximum-length {ins.max_length}"
    return text


def policy_map_lines(pm: PolicyMap, rel: tuple[int, int] = (99, 0)) -> list[str]:
    out = [f"policy-map {pm.name}"]
    if pm.description:
        out.append(f" description {pm.description}")
    for pc in pm.classes:
        out.append(f" class {pc.class_map}")
        out += [f"  {_inspect_text(i)}" for i in pc.inspects]
        if pc.connection is not None:
            out += [f"  {line}" for line in connection_lines(pc.connection, rel)]
        out += [f"  {text}" for _, text in pc.other]
    return out


def render_policy_maps(policy: Policy) -> list[str]:
    out: list[str] = []
    rel = release(policy)
    for pm in policy.policy_maps.values():
        if pm.origin is not BUILTIN:
            out += policy_map_lines(pm, rel)
    return out


def render_service_policies(policy: Policy) -> list[str]:
    out = []
    for sp in policy.service_policies:
        if sp.origin is BUILTIN:
            continue
        where = "global" if sp.interface is None else f"interface {sp.interface}"
        out.append(f"service-policy {sp.policy_map} {where}")
    return out


def render_faults(policy: Policy) -> list[str]:
    return [f"statewall fault {name}" for name in sorted(policy.faults)]
