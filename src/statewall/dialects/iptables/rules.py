"""One iptables rule specification to ``NfRule`` objects: generic options, match modules, targets.

Owns the grammar of a rule (``-p -s -d -i -o -f -m -j -g -c`` and the options of each module and
target) and the checks iptables and the kernel make on a rule by itself: unknown options, modules and
targets, malformed values, a module without the protocol it needs, TCPMSS without a SYN match, a
target outside its table. Checks that depend on which hooks reach a chain (``--clamp-mss-to-pmtu`` in
PREROUTING, DNAT in POSTROUTING) are the table's, in ``tables``.

Module options are kept as ``NfExtension(name, args)``; the first instance of ``tcp``, ``udp``,
``icmp``, ``icmp6``, ``state``, ``conntrack`` and a ``multiport --sports/--dports`` whose direction has
no tcp/udp port is folded into ``Match`` instead. The ``args`` of each module:

- tcp / udp: ``sport``, ``dport`` (a ``PortMatch`` or None), ``sport_negate``, ``dport_negate``;
  tcp also ``flags`` ((mask, comp) or None) and ``flags_negate``.
- icmp / icmp6: ``type`` (None: any), ``code`` (None: any code), ``negate``.
- multiport: ``dir`` (sports, dports or ports), ``ports`` (tuple of PortMatch), ``negate``.
- state / conntrack: ``states`` (frozenset), ``negate``.
- limit: ``avg`` (seconds between packets, times XT_LIMIT_SCALE 10000, as the kernel stores it),
  ``burst``.
- comment: ``comment``. helper: ``helper``, ``negate``.
- connlimit: ``limit``, ``above`` (False for --connlimit-upto), ``mask`` (prefix length), ``daddr``.

Target arguments (``NfRule.target_args``): REJECT ``with``; LOG ``prefix``, ``level``, ``flags``
(NF_LOG_* bits); SNAT/DNAT ``addresses`` ((first, last) or None), ``ports`` ((first, last) or None),
``random``, ``persistent``; MASQUERADE and REDIRECT ``ports``, ``random``; NETMAP ``addresses`` (the
network's first and last address); TCPMSS ``mss`` (an int) or
``clamp`` (True); CT ``notrack``, ``helper``, ``zone``; SYNPROXY ``mss``, ``wscale``, ``sack_perm``,
``timestamp``, ``ecn``; NOTRACK none.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Container
from dataclasses import dataclass, field, replace

from ...policy import (
    NF_FOLDED_MODULES,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    Match,
    NfExtension,
    NfRule,
    Origin,
    PortMatch,
    nf_folded_owners,
)
from ..errors import ConfigError
from . import names
from .lexer import Token

BUILTIN_TARGETS = frozenset({"ACCEPT", "DROP", "RETURN"})
TARGET_EXTENSIONS = set(
    {"REJECT", "LOG", "MASQUERADE", "SNAT", "DNAT", "REDIRECT", "NETMAP"}
    | {"TCPMSS", "CT", "NOTRACK", "SYNPROXY"}
)
MODULES = set(
    {
        "tcp",
        "udp",
        "icmp",
        "icmp6",
        "multiport",
        "state",
        "conntrack",
        "limit",
        "comment",
        "helper",
        "connlimit",
    }
)
# Modules whose first instance lives in Match.
_FOLDED = NF_FOLDED_MODULES
# The kernel refuses a target outside its table (xt_target.table).
TARGET_TABLE = {
    "REJECT": "filter",
    "MASQUERADE": "nat",
    "SNAT": "nat",
    "DNAT": "nat",
    "REDIRECT": "nat",
    "NETMAP": "nat",
    "CT": "raw",
    "NOTRACK": "raw",
}
XT_LIMIT_SCALE = 10000
IFNAMSIZ = 16
LOG_PREFIX_MAX = 29


@dataclass(slots=True)
class RuleContext:
    """Where a rule is being parsed: the file, the family, the table and the chain it goes to."""

    file: str
    family: int
    table: str
    chain: str
    origin: Origin
    builtin_chain: bool = True
    # Names that may be jumped to: the table's user chains at this point of the file.
    chains: Container[str] = frozenset()
    warn: Callable[[str], None] | None = None


@dataclass(slots=True)
class _Module:
    name: str
    token: Token
    args: dict[str, object] = field(default_factory=dict)
    options: set[str] = field(default_factory=set)


@dataclass(slots=True)
class ParsedRule:
    """The result of a rule specification: the rules (one per source x destination) and where things
    were written, for error messages that come later (hook checks)."""

    rules: list[NfRule]
    target_token: Token | None
    counters: tuple[int, int] | None


class Cursor:
    """Tokens of one command with a position; errors point at the current token."""

    def __init__(self, tokens: list[Token], file: str, end_col: int = 1) -> None:
        self.tokens = tokens
        self.i = 0
        self.file = file
        self.end_line = tokens[-1].line if tokens else 1
        self.end_col = (tokens[-1].col + len(tokens[-1].text)) if tokens else end_col

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self) -> Token | None:
        tok = self.peek()
        if tok is not None:
            self.i += 1
        return tok

    def value(self, after: Token, what: str) -> Token:
        """The value of option ``after``: the next token, which must exist."""
        tok = self.next()
        if tok is None or tok.is_operator:
            raise ConfigError(self.file, after.line, after.col, f"option {after.text!r} requires {what}")
        return tok

    def error(self, tok: Token | None, message: str) -> ConfigError:
        if tok is None:
            return ConfigError(self.file, self.end_line, self.end_col, message)
        return ConfigError(self.file, tok.line, tok.col, message)


# --------------------------------------------------------------------------------------------------
# Values


def parse_protocol(cur: Cursor, tok: Token) -> int:
    text = tok.text.lower()
    for name, num in names.CHAIN_PROTOCOLS:
        if text == name:
            return num
    if text in names.PROTOCOLS:
        return names.PROTOCOLS[text]
    if text.isdigit() and int(text) <= 255:
        return int(text)
    raise cur.error(tok, f"unknown protocol {tok.text!r} specified")


def parse_networks(
    cur: Cursor, tok: Token, family: int
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``-s``/``-d``: comma-separated addresses, each with an optional /prefix or /netmask."""
    out = []
    for part in tok.text.split(","):
        if not part:
            raise cur.error(tok, f"host/network {tok.text!r} not found")
        addr, _, mask = part.partition("/")
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            raise cur.error(tok, f"host/network {addr!r} not found") from None
        if ip.version != family:
            raise cur.error(
                tok, f"{addr} is not an IPv{family} address ({'ip6tables' if family == 4 else 'iptables'})"
            )
        bits = ip.max_prefixlen
        if mask:
            if mask.isdigit():
                if int(mask) > bits:
                    raise cur.error(tok, f"invalid mask {mask!r} specified")
                prefix = int(mask)
            else:
                try:
                    m = int(ipaddress.ip_address(mask))
                except ValueError:
                    raise cur.error(tok, f"invalid mask {mask!r} specified") from None
                inv = ~m & ((1 << bits) - 1)
                if inv & (inv + 1):
                    raise cur.error(tok, f"invalid mask {mask!r} specified")
                prefix = bits - inv.bit_length()
        else:
            prefix = bits
        # iptables keeps address & mask: 10.0.0.1/255.255.0.0 is 10.0.0.0/16.
        out.append(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
    return out


def parse_port(cur: Cursor, tok: Token, text: str) -> int:
    if text.isdigit():
        port = int(text)
        if port <= 65535:
            return port
    elif text in names.SERVICES:
        return names.SERVICES[text]
    raise cur.error(tok, f"invalid port/service {text!r} specified")


def parse_port_range(cur: Cursor, tok: Token, text: str | None = None) -> PortMatch:
    """``port``, ``a:b``, ``:b`` (0:b) or ``a:`` (a:65535)."""
    text = tok.text if text is None else text
    if ":" in text:
        low_s, _, high_s = text.partition(":")
        low = parse_port(cur, tok, low_s) if low_s else 0
        high = parse_port(cur, tok, high_s) if high_s else 65535
        if low > high:
            raise cur.error(tok, "invalid portrange (min > max)")
        # iptables stores a port as the range port:port; a:a prints back as a single port.
        return PortMatch("range", low, high) if low != high else PortMatch("eq", low)
    return PortMatch("eq", parse_port(cur, tok, text))


def parse_interface(cur: Cursor, tok: Token) -> str:
    if len(tok.text) >= IFNAMSIZ:
        raise cur.error(tok, f"interface name {tok.text!r} must be shorter than IFNAMSIZ ({IFNAMSIZ - 1})")
    if not tok.text:
        raise cur.error(tok, "empty interface name")
    return tok.text


def parse_tcp_flags(cur: Cursor, tok: Token) -> int:
    if tok.text.upper() == "ALL":
        return names.TCP_FLAGS_ALL
    if tok.text.upper() == "NONE":
        return 0
    value = 0
    for name in tok.text.split(","):
        bit = names.TCP_FLAGS.get(name.upper())
        if bit is None:
            raise cur.error(tok, f"Unknown TCP flag {name!r}")
        value |= bit
    return value


def parse_icmp_type(cur: Cursor, tok: Token, family: int) -> tuple[int | None, int | None]:
    """(type, code): None type is "any", None code any code."""
    table = names.ICMP_TYPES if family == 4 else names.ICMPV6_TYPES
    entry = table.get(tok.text) or table.get(tok.text.lower())
    if entry is not None:
        t, lo, hi = entry
        if t == 0xFF:
            return None, None
        return t, (lo if lo == hi else None)
    t_s, slash, c_s = tok.text.partition("/")
    if not t_s.isdigit() or int(t_s) > 255 or (slash and (not c_s.isdigit() or int(c_s) > 255)):
        raise cur.error(tok, f"Invalid ICMP{'v6' if family == 6 else ''} type {tok.text!r}")
    if family == 4 and int(t_s) == 0xFF and not slash:
        return None, None
    return int(t_s), (int(c_s) if slash else None)


def parse_states(cur: Cursor, tok: Token, allowed: tuple[str, ...]) -> frozenset[str]:
    out = set()
    for s in tok.text.split(","):
        if s.upper() not in allowed:
            raise cur.error(tok, f"Bad state {s!r}")
        out.add(s.upper())
    return frozenset(out)


def parse_limit_rate(cur: Cursor, tok: Token) -> int:
    """``N[/second|/minute|/hour|/day]`` (any prefix of the unit) as the kernel's ``avg``."""
    rate, slash, unit = tok.text.partition("/")
    mult = 1
    if slash:
        unit = unit.lower()
        for word, m in (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400)):
            if unit and word.startswith(unit):
                mult = m
                break
        else:
            raise cur.error(tok, f"bad rate {tok.text!r}")
    if not rate.isdigit() or int(rate) == 0:
        raise cur.error(tok, f"bad rate {tok.text!r}")
    avg = XT_LIMIT_SCALE * mult // int(rate)
    if avg == 0:
        raise cur.error(tok, f"Rate too fast {tok.text!r}")
    return avg


def _user2credits(user: int) -> int:
    # xt_limit.c: HZ * CREDITS_PER_JIFFY is 32000 for HZ 250 and HZ 1000 alike.
    hz_cpj = 32000
    if user > 0xFFFFFFFF // hz_cpj:
        return (user // XT_LIMIT_SCALE) * hz_cpj
    return (user * hz_cpj) // XT_LIMIT_SCALE


def parse_uint(cur: Cursor, tok: Token, low: int, high: int, what: str) -> int:
    if not tok.text.isdigit() or not low <= int(tok.text) <= high:
        raise cur.error(tok, f"invalid {what} {tok.text!r} (must be {low}-{high})")
    return int(tok.text)


def parse_nat_range(cur: Cursor, tok: Token, family: int, want_ports: bool) -> dict[str, object]:
    """``--to-source``/``--to-destination``: ``[a[-b]][:p[-q]]``; IPv6 addresses in brackets with ports."""
    text = tok.text
    addr_part, port_part = text, ""
    if family == 6:
        if text.startswith("["):
            end = text.find("]")
            if end < 0:
                raise cur.error(tok, f"invalid address range {text!r}")
            addr_part, rest = text[1:end], text[end + 1 :]
            if rest and not rest.startswith(":"):
                raise cur.error(tok, f"invalid address range {text!r}")
            port_part = rest[1:]
        elif text.startswith(":"):
            addr_part, port_part = "", text[1:]
    else:
        addr_part, _, port_part = text.partition(":")
    addresses = None
    if addr_part:
        first, _, last = addr_part.partition("-")
        try:
            a = ipaddress.ip_address(first)
            b = ipaddress.ip_address(last) if last else a
        except ValueError:
            raise cur.error(tok, f"Bad IP address {addr_part!r}") from None
        if a.version != family or b.version != family or int(b) < int(a):
            raise cur.error(tok, f"Bad IP address range {addr_part!r}")
        addresses = (a, b)
    ports = None
    if port_part or text.endswith(":"):
        if not want_ports:
            raise cur.error(tok, "Need TCP, UDP, SCTP or DCCP with port specification")
        ports = parse_nat_ports(cur, tok, port_part)
    if addresses is None and ports is None:
        raise cur.error(tok, f"Bad IP address {text!r}")
    return {"addresses": addresses, "ports": ports}


def parse_nat_ports(cur: Cursor, tok: Token, text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    if not first.isdigit() or (last and not last.isdigit()):
        raise cur.error(tok, f"Port {text!r} not valid")
    lo, hi = int(first), int(last) if last else int(first)
    if lo == 0 or hi > 65535 or hi < lo:
        raise cur.error(tok, f"Port range {text!r} invalid")
    return (lo, hi)


# --------------------------------------------------------------------------------------------------
# Match modules: each option handler reads its value(s) and stores them in the module's args.

OptionHandler = Callable[[Cursor, Token, bool, _Module, RuleContext], None]


def _ports_opt(key: str) -> OptionHandler:
    def handle(cur: Cursor, opt: Token, negate: bool, mod: _Module, ctx: RuleContext) -> None:
        mod.args[key] = parse_port_range(cur, cur.value(opt, "a port or range"))
        mod.args[key + "_negate"] = negate

    return handle


def _tcp_flags(cur: Cursor, opt: Token, negate: bool, mod: _Module, ctx: RuleContext) -> None:
    if "flags" in mod.args:
        raise cur.error(opt, "Only one of `--syn' or `--tcp-flags' allowed")
    mask = parse_tcp_flags(cur, cur.value(opt, "a flag mask"))
    comp = parse_tcp_flags(cur, cur.value(opt, "the flags to compare"))
    mod.args["flags"] = (mask, comp)
    mod.args["flags_negate"] = negate


def _syn(cur: Cursor, opt: Token, negate: bool, mod: _Module, ctx: RuleContext) -> None:
    if "flags" in mod.args:
        raise cur.error(opt, "Only one of `--syn' or `--tcp-flags' allowed")
    mod.args["flags"] = names.SYN_FLAGS
    mod.args["flags_negate"] = negate


def _icmp_type(cur: Cursor, opt: Token, negate: bool, mod: _Module, ctx: RuleContext) -> None:
    t, c = parse_icmp_type(cur, cur.value(opt, "an ICMP type"), 4 if mod.name == "icmp" else 6)
    mod.args.update({"type": t, "code": c, "negate": negate})


def _multiport(direction: str) -> OptionHandler:
    def handle(cur: Cursor, opt: Token, negate: bool, mod: _Module, ctx: RuleContext) -> None:
        if "dir" in mod.args:
            raise cur.error(
                opt, f"multiport: option {opt.text!r} cannot be used together with --{mod.args['dir']}"
            )
        tok = cur.value(opt, "a list of ports")
        ports = []
        for part in tok.text.split(","):
            ports.append(parse_port_range(cur, tok, part))
        # A range takes two of the 15 slots (XT_MULTI_PORTS).
        if sum(2 if p.op == "range" else 1 for p in ports) > 15:
            raise cur.error(tok, "too many ports specified")
        mod.args.update({"dir": direction, "ports": tuple(ports), "negate": negate})

    return handle


def _states(allowed: tuple[str, ...]) -> OptionHandler:
    def handle(cur: Cursor, opt: Token, negate: bool, mod: _Module, ctx: RuleContext) -> None:
        mod.args["states"] = parse_states(cur, cur.value(opt, "a list of states"), allowed)
        mod.args["negate"] = negate

    return handle


def _limit(cur: Cursor, opt: Token, negate: bool, mod: _Module, ctx: RuleContext) -> None:
    mod.args["avg"] = parse_limit_rate(cur, cur.value(opt, "a rate"))


def _limit_burst(cur: Cursor, opt: Token, negate: bool, mod: _Module, ctx: RuleContext) -> None:
    mod.args["burst"] = parse_uint(cur, cur.value(opt, "a number"), 0, 10000, "--limit-burst")


def _comment(cur: Cursor, opt: Token, negate: bool, mod: _Module, ctx: RuleContext) -> None:
    tok = cur.value(opt, "a comment")
    if len(tok.text) > 255:
        raise cur.error(tok, "comment may not be longer than 255 characters")
    mod.args["comment"] = tok.text


def _helper(cur: Cursor, opt: Token, negate: bool, mod: _Module, ctx: RuleContext) -> None:
    tok = cur.value(opt, "a helper name")
    mod.args.update({"helper": tok.text, "negate": negate})


def _connlimit_count(above: bool) -> OptionHandler:
    def handle(cur: Cursor, opt: Token, negate: bool, mod: _Module, ctx: RuleContext) -> None:
        if "limit" in mod.args:
            raise cur.error(opt, "connlimit: only one of --connlimit-upto or --connlimit-above")
        mod.args["limit"] = parse_uint(cur, cur.value(opt, "a number"), 0, 0xFFFFFFFF, opt.text)
        # "! --connlimit-above n" is --connlimit-upto n and the other way round.
        mod.args["above"] = above != negate

    return handle


def _connlimit_mask(cur: Cursor, opt: Token, negate: bool, mod: _Module, ctx: RuleContext) -> None:
    mod.args["mask"] = parse_uint(
        cur, cur.value(opt, "a prefix length"), 0, 32 if ctx.family == 4 else 128, opt.text
    )


def _connlimit_addr(daddr: bool) -> OptionHandler:
    def handle(cur: Cursor, opt: Token, negate: bool, mod: _Module, ctx: RuleContext) -> None:
        mod.args["daddr"] = daddr

    return handle


# Each module's options: option -> (handler, can be negated with "!").
MODULE_OPTIONS: dict[str, dict[str, tuple[OptionHandler, bool]]] = {
    "tcp": {
        "--sport": (_ports_opt("sport"), True),
        "--source-port": (_ports_opt("sport"), True),
        "--dport": (_ports_opt("dport"), True),
        "--destination-port": (_ports_opt("dport"), True),
        "--tcp-flags": (_tcp_flags, True),
        "--syn": (_syn, True),
    },
    "udp": {
        "--sport": (_ports_opt("sport"), True),
        "--source-port": (_ports_opt("sport"), True),
        "--dport": (_ports_opt("dport"), True),
        "--destination-port": (_ports_opt("dport"), True),
    },
    "icmp": {"--icmp-type": (_icmp_type, True)},
    "icmp6": {"--icmpv6-type": (_icmp_type, True)},
    "multiport": {
        "--sports": (_multiport("sports"), True),
        "--source-ports": (_multiport("sports"), True),
        "--dports": (_multiport("dports"), True),
        "--destination-ports": (_multiport("dports"), True),
        "--ports": (_multiport("ports"), True),
    },
    "state": {"--state": (_states(names.STATES), True)},
    "conntrack": {"--ctstate": (_states(names.CTSTATES), True)},
    "limit": {"--limit": (_limit, False), "--limit-burst": (_limit_burst, False)},
    "comment": {"--comment": (_comment, False)},
    "helper": {"--helper": (_helper, True)},
    "connlimit": {
        "--connlimit-upto": (_connlimit_count(False), True),
        "--connlimit-above": (_connlimit_count(True), True),
        "--connlimit-mask": (_connlimit_mask, False),
        "--connlimit-saddr": (_connlimit_addr(False), False),
        "--connlimit-daddr": (_connlimit_addr(True), False),
    },
}
# The protocol a module needs (-p), as the kernel's xt_match.proto / libxt_multiport check.
MODULE_PROTOCOL = {"tcp": {PROTO_TCP}, "udp": {PROTO_UDP}, "icmp": {PROTO_ICMP}, "icmp6": {PROTO_ICMPV6}}
# -p NAME loads this module when an option only it knows appears (iptables' implicit match).
IMPLICIT_MODULE = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmp6"}


# The finishing checks of the modules and targets of ``modules`` (registered there).
MODULE_FINISH: dict[str, Callable] = {}
TARGET_FINISH: dict[str, Callable] = {}


def _finish_module(cur: Cursor, mod: _Module, ctx: RuleContext) -> NfExtension:
    args = mod.args
    name = mod.name
    if name in MODULE_FINISH:
        MODULE_FINISH[name](cur, mod, ctx)
        return NfExtension(name, dict(args))
    if name in ("tcp", "udp"):
        for key in ("sport", "dport"):
            args.setdefault(key, None)
            args.setdefault(key + "_negate", False)
        if name == "tcp":
            args.setdefault("flags", None)
            args.setdefault("flags_negate", False)
    elif name in ("icmp", "icmp6"):
        args.setdefault("type", None)
        args.setdefault("code", None)
        args.setdefault("negate", False)
    elif name == "multiport":
        if "dir" not in args:
            raise cur.error(mod.token, "multiport expects an option")
    elif name == "conntrack" and set(args) - {"states", "negate"}:
        # --ctdir, --ctstatus, --ctproto (with or without --ctstate).
        if ("dir" in args or "status" in args) and ctx.warn:
            ctx.warn(
                "conntrack: --ctdir and --ctstatus are not modelled across packets: statewall's engine "
                "does not report a packet's direction or its connection's status yet (every packet "
                "counts as ORIGINAL, no status bit set)"
            )
    elif name in ("state", "conntrack"):
        if "states" not in args:
            raise cur.error(
                mod.token, f"{name} match: option --{'state' if name == 'state' else 'ctstate'} must be given"
            )
    elif name == "limit":
        args.setdefault("avg", XT_LIMIT_SCALE * 3600 // 3)  # default 3/hour
        args.setdefault("burst", 5)
        product = (args["avg"] * args["burst"]) & 0xFFFFFFFF
        if args["burst"] == 0 or _user2credits(product) < _user2credits(args["avg"]):
            raise cur.error(mod.token, "limit: Numerical result out of range (rate times burst overflows)")
    elif name == "comment":
        if "comment" not in args:
            raise cur.error(mod.token, "comment match: option --comment must be given")
    elif name == "helper":
        if "helper" not in args:
            raise cur.error(mod.token, "helper match: option --helper must be given")
    elif name == "connlimit":
        if "limit" not in args:
            raise cur.error(
                mod.token, "connlimit: option --connlimit-upto or --connlimit-above must be given"
            )
        args.setdefault("mask", 32 if ctx.family == 4 else 128)
        args.setdefault("daddr", False)
    return NfExtension(name, dict(args))


# --------------------------------------------------------------------------------------------------
# Targets


@dataclass(slots=True)
class _Target:
    name: str
    token: Token
    args: dict[str, object] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)


TargetHandler = Callable[[Cursor, Token, _Target, RuleContext], None]


def _once(cur: Cursor, opt: Token, tgt: _Target, key: str | None = None) -> None:
    key = key or opt.text
    if key in tgt.seen:
        raise cur.error(opt, f"{tgt.name}: option {opt.text!r} can only be used once")
    tgt.seen.add(key)


def _reject_with(cur: Cursor, opt: Token, tgt: _Target, ctx: RuleContext) -> None:
    _once(cur, opt, tgt)
    tok = cur.value(opt, "a reject type")
    table = names.REJECT_TYPES_V4 if ctx.family == 4 else names.REJECT_TYPES_V6
    if tok.text not in table:
        raise cur.error(tok, f"unknown reject type {tok.text!r}")
    tgt.args["with"] = table[tok.text]


def _log_prefix(cur: Cursor, opt: Token, tgt: _Target, ctx: RuleContext) -> None:
    _once(cur, opt, tgt)
    tok = cur.value(opt, "a prefix")
    if "\n" in tok.text:
        raise cur.error(tok, "Newlines not allowed in --log-prefix")
    prefix = tok.text
    if len(prefix) > LOG_PREFIX_MAX:
        # iptables 1.8 truncates (the kernel keeps 29 bytes and a NUL); older versions refused.
        if ctx.warn:
            ctx.warn(
                f"--log-prefix longer than {LOG_PREFIX_MAX} characters is truncated to "
                f"{prefix[:LOG_PREFIX_MAX]!r}"
            )
        prefix = prefix[:LOG_PREFIX_MAX]
    tgt.args["prefix"] = prefix


def _log_level(cur: Cursor, opt: Token, tgt: _Target, ctx: RuleContext) -> None:
    _once(cur, opt, tgt)
    tok = cur.value(opt, "a level")
    if tok.text.isdigit() and int(tok.text) <= 7:
        tgt.args["level"] = int(tok.text)
    elif tok.text.lower() in names.LOG_LEVELS:
        tgt.args["level"] = names.LOG_LEVELS[tok.text.lower()]
    else:
        raise cur.error(tok, f"log level {tok.text!r} unknown")


def _log_flag(bit: int) -> TargetHandler:
    def handle(cur: Cursor, opt: Token, tgt: _Target, ctx: RuleContext) -> None:
        tgt.args["flags"] = int(tgt.args.get("flags", 0)) | bit

    return handle


def _to_ports(cur: Cursor, opt: Token, tgt: _Target, ctx: RuleContext) -> None:
    _once(cur, opt, tgt)
    tok = cur.value(opt, "a port or port range")
    tgt.args["ports"] = parse_nat_ports(cur, tok, tok.text)
    tgt.seen.add("needs-port-proto")


def _nat_to(cur: Cursor, opt: Token, tgt: _Target, ctx: RuleContext) -> None:
    _once(cur, opt, tgt, "--to")
    tok = cur.value(opt, "an address")
    rng = parse_nat_range(cur, tok, ctx.family, True)
    if rng["ports"] is not None:
        tgt.seen.add("needs-port-proto")
    tgt.args.update(rng)


def _netmap_to(cur: Cursor, opt: Token, tgt: _Target, ctx: RuleContext) -> None:
    """``NETMAP --to address[/mask]``: kept as the network's first and last address (the kernel's range),
    host bits of the address dropped as libxt_NETMAP drops them."""
    _once(cur, opt, tgt)
    tok = cur.value(opt, "an address/mask")
    try:
        net = ipaddress.ip_network(tok.text, strict=False)
    except ValueError:
        raise cur.error(tok, f"Bad IP address {tok.text!r}") from None
    if net.version != ctx.family:
        raise cur.error(tok, f"Bad IP address {tok.text!r}")
    tgt.args["addresses"] = (net.network_address, net.broadcast_address)


def _flag(key: str) -> TargetHandler:
    def handle(cur: Cursor, opt: Token, tgt: _Target, ctx: RuleContext) -> None:
        tgt.args[key] = True

    return handle


def _set_mss(cur: Cursor, opt: Token, tgt: _Target, ctx: RuleContext) -> None:
    if "mss" in tgt.args or "clamp" in tgt.args:
        raise cur.error(opt, "TCPMSS target: Only one option may be specified")
    # XT_TCPMSS_CLAMP_PMTU is 0xffff; the largest settable MSS is one below.
    tgt.args["mss"] = parse_uint(cur, cur.value(opt, "an MSS"), 0, 0xFFFE, "--set-mss value")


def _clamp(cur: Cursor, opt: Token, tgt: _Target, ctx: RuleContext) -> None:
    if "mss" in tgt.args or "clamp" in tgt.args:
        raise cur.error(opt, "TCPMSS target: Only one option may be specified")
    tgt.args["clamp"] = True


def _ct_helper(cur: Cursor, opt: Token, tgt: _Target, ctx: RuleContext) -> None:
    _once(cur, opt, tgt)
    tok = cur.value(opt, "a helper name")
    if tok.text not in names.HELPERS:
        raise cur.error(tok, f"CT: no conntrack helper named {tok.text!r}")
    if tok.text != "ftp" and ctx.warn:
        ctx.warn(f"statewall inspects ftp only; the {tok.text} helper is attached but does nothing")
    tgt.args["helper"] = tok.text


def _ct_zone(cur: Cursor, opt: Token, tgt: _Target, ctx: RuleContext) -> None:
    _once(cur, opt, tgt)
    tgt.args["zone"] = parse_uint(cur, cur.value(opt, "a zone"), 0, 65535, "--zone")


def _synproxy_num(key: str, high: int) -> TargetHandler:
    def handle(cur: Cursor, opt: Token, tgt: _Target, ctx: RuleContext) -> None:
        tgt.args[key] = parse_uint(cur, cur.value(opt, "a number"), 0, high, opt.text)

    return handle


TARGET_OPTIONS: dict[str, dict[str, TargetHandler]] = {
    "REJECT": {"--reject-with": _reject_with},
    "LOG": {
        "--log-prefix": _log_prefix,
        "--log-level": _log_level,
        **{opt: _log_flag(bit) for opt, bit in names.LOG_FLAGS},
    },
    "MASQUERADE": {
        "--to-ports": _to_ports,
        "--random": _flag("random"),
        "--random-fully": _flag("random_fully"),
    },
    "REDIRECT": {"--to-ports": _to_ports, "--random": _flag("random")},
    "NETMAP": {"--to": _netmap_to},
    "SNAT": {
        "--to-source": _nat_to,
        "--to": _nat_to,
        "--random": _flag("random"),
        "--random-fully": _flag("random_fully"),
        "--persistent": _flag("persistent"),
    },
    "DNAT": {
        "--to-destination": _nat_to,
        "--to": _nat_to,
        "--random": _flag("random"),
        "--persistent": _flag("persistent"),
    },
    "TCPMSS": {"--set-mss": _set_mss, "--clamp-mss-to-pmtu": _clamp},
    "CT": {"--notrack": _flag("notrack"), "--helper": _ct_helper, "--zone": _ct_zone},
    "NOTRACK": {},
    "SYNPROXY": {
        "--mss": _synproxy_num("mss", 65535),
        "--wscale": _synproxy_num("wscale", 14),
        "--sack-perm": _flag("sack_perm"),
        "--timestamp": _flag("timestamp"),
        "--ecn": _flag("ecn"),
    },
}


def _finish_target(
    cur: Cursor, tgt: _Target, proto: int | None, proto_negate: bool, ctx: RuleContext
) -> dict:
    a = tgt.args
    name = tgt.name
    port_proto = proto in names.PORT_PROTOCOLS and not proto_negate
    if "needs-port-proto" in tgt.seen and not port_proto:
        raise cur.error(tgt.token, "Need TCP, UDP, SCTP or DCCP with port specification")
    if name == "REJECT":
        a.setdefault("with", "icmp-port-unreachable" if ctx.family == 4 else "icmp6-port-unreachable")
        if a["with"] == "tcp-reset" and (proto != PROTO_TCP or proto_negate):
            raise cur.error(
                tgt.token,
                "REJECT --reject-with tcp-reset is only valid with -p tcp (TCP_RESET invalid for non-tcp)",
            )
    elif name == "LOG":
        a.setdefault("prefix", "")
        a.setdefault("level", 4)
        a.setdefault("flags", 0)
    elif name in ("SNAT", "DNAT"):
        if "addresses" not in a and "ports" not in a:
            opt = "--to-source" if name == "SNAT" else "--to-destination"
            raise cur.error(tgt.token, f"{name}: option {opt!r} must be specified")
        a.setdefault("random", False)
        a.setdefault("persistent", False)
        if name == "SNAT":
            a.setdefault("random_fully", False)
    elif name == "NETMAP":
        if "addresses" not in a:
            raise cur.error(tgt.token, "NETMAP: option '--to' must be specified")
    elif name in ("MASQUERADE", "REDIRECT"):
        a.setdefault("ports", None)
        a.setdefault("random", False)
        if name == "MASQUERADE":
            a.setdefault("random_fully", False)
    elif name == "TCPMSS":
        if "mss" not in a and "clamp" not in a:
            raise cur.error(tgt.token, "TCPMSS target: At least one parameter is required")
        if proto != PROTO_TCP or proto_negate:
            raise cur.error(tgt.token, "TCPMSS target: only valid for protocol 6 (-p tcp)")
    elif name == "CT":
        a.setdefault("notrack", False)
        a.setdefault("helper", None)
        a.setdefault("zone", None)
    elif name in TARGET_FINISH:
        TARGET_FINISH[name](cur, tgt, ctx)
    elif name == "SYNPROXY":
        if proto != PROTO_TCP or proto_negate:
            raise cur.error(tgt.token, "SYNPROXY target: only valid for protocol 6 (-p tcp)")
        a.setdefault("mss", None)
        a.setdefault("wscale", None)
        for key in ("sack_perm", "timestamp", "ecn"):
            a.setdefault(key, False)
    return dict(a)


# --------------------------------------------------------------------------------------------------
# The rule


def _invert(cur: Cursor, negate: Token | None, opt: Token, allowed: bool) -> bool:
    if negate is None:
        return False
    if not allowed:
        raise cur.error(negate, f"cannot have ! before {opt.text!r}")
    return True


def parse_rule(cur: Cursor, ctx: RuleContext, *, delete: bool = False) -> ParsedRule:
    """Read a rule specification from the cursor to its end (or to a shell operator).

    Raises ConfigError at the first problem. ``delete`` is -D: counters cannot be set.
    """
    proto: int | None = None
    proto_negate = False
    sources: list = []
    src_negate = False
    dests: list = []
    dst_negate = False
    in_if = out_if = None
    in_neg = out_neg = False
    fragment: bool | None = None
    modules: list[_Module] = []
    target: _Target | None = None
    target_tok: Token | None = None
    goto = False
    counters = None
    seen_generic: set[str] = set()
    family = ctx.family

    def once(opt: Token, key: str) -> None:
        if key in seen_generic:
            raise cur.error(opt, f"multiple {key} flags not allowed")
        seen_generic.add(key)

    while True:
        tok = cur.peek()
        if tok is None or tok.is_operator:
            break
        cur.next()
        negate_tok = None
        if tok.text == "!" and not tok.quoted:
            negate_tok = tok
            tok = cur.next()
            if tok is None or tok.is_operator:
                raise cur.error(negate_tok, "! must be followed by an option")
            if tok.text == "!":
                raise cur.error(tok, "multiple consecutive ! not allowed")
        opt = tok.text
        if opt in ("-p", "--protocol"):
            once(tok, "-p")
            proto_negate = _invert(cur, negate_tok, tok, True)
            proto = parse_protocol(cur, cur.value(tok, "a protocol"))
            if proto == 0:
                proto = None
                if proto_negate:
                    raise cur.error(tok, "rule would never match protocol")
        elif opt in ("-s", "--source", "--src"):
            once(tok, "-s")
            src_negate = _invert(cur, negate_tok, tok, True)
            sources = parse_networks(cur, cur.value(tok, "an address"), family)
        elif opt in ("-d", "--destination", "--dst"):
            once(tok, "-d")
            dst_negate = _invert(cur, negate_tok, tok, True)
            dests = parse_networks(cur, cur.value(tok, "an address"), family)
        elif opt in ("-i", "--in-interface"):
            once(tok, "-i")
            in_neg = _invert(cur, negate_tok, tok, True)
            in_if = parse_interface(cur, cur.value(tok, "an interface"))
            if ctx.builtin_chain and ctx.chain in ("OUTPUT", "POSTROUTING"):
                raise cur.error(tok, f"Can't use -i with {ctx.chain}")
        elif opt in ("-o", "--out-interface"):
            once(tok, "-o")
            out_neg = _invert(cur, negate_tok, tok, True)
            out_if = parse_interface(cur, cur.value(tok, "an interface"))
            if ctx.builtin_chain and ctx.chain in ("INPUT", "PREROUTING"):
                raise cur.error(tok, f"Can't use -o with {ctx.chain}")
        elif opt in ("-f", "--fragment"):
            if family == 6:
                raise cur.error(tok, "`-f' is not supported in IPv6, use -m frag instead")
            once(tok, "-f")
            fragment = not _invert(cur, negate_tok, tok, True)
        elif opt in ("-m", "--match"):
            _invert(cur, negate_tok, tok, False)
            name_tok = cur.value(tok, "a match name")
            name = name_tok.text
            if name == "icmpv6":
                name = "icmp6"
            if name not in MODULES:
                raise cur.error(
                    name_tok,
                    f"Couldn't load match `{name_tok.text}': unknown match "
                    f"(statewall knows {', '.join(sorted(MODULES))})",
                )
            if name == "icmp" and family == 6 or name == "icmp6" and family == 4:
                raise cur.error(
                    name_tok, f"the {name} match is for {'ip6tables' if name == 'icmp6' else 'iptables'}"
                )
            modules.append(_Module(name, name_tok))
        elif opt in ("-j", "--jump", "-g", "--goto"):
            _invert(cur, negate_tok, tok, False)
            if target is not None:
                raise cur.error(tok, "multiple -j flags not allowed")
            name_tok = cur.value(tok, "a target")
            target_tok = name_tok
            goto = opt in ("-g", "--goto")
            tname = name_tok.text
            if goto:
                if tname not in ctx.chains:
                    raise cur.error(
                        name_tok, f"Couldn't load target `{tname}': -g needs a user-defined chain"
                    )
            elif tname not in BUILTIN_TARGETS and tname not in TARGET_EXTENSIONS and tname not in ctx.chains:
                raise cur.error(name_tok, f"Couldn't load target `{tname}': no such chain or target")
            target = _Target(tname, name_tok)
        elif opt in ("-c", "--set-counters"):
            if delete:
                raise cur.error(tok, "-c cannot be used with -D")
            p = cur.value(tok, "packet and byte counts")
            b = cur.value(tok, "packet and byte counts")
            if not p.text.isdigit() or not b.text.isdigit():
                raise cur.error(p, "-c packets bytes: both must be numbers")
            counters = (int(p.text), int(b.text))
        elif opt.startswith("-"):
            # An option of the target, of a loaded module (latest first) or of the implicit one.
            if target is not None and opt in TARGET_OPTIONS.get(target.name, {}):
                _invert(cur, negate_tok, tok, False)
                TARGET_OPTIONS[target.name][opt](cur, tok, target, ctx)
                continue
            mod = next((m for m in reversed(modules) if opt in MODULE_OPTIONS[m.name]), None)
            if mod is None and proto in IMPLICIT_MODULE and not proto_negate:
                implicit = IMPLICIT_MODULE[proto]
                wrong_family = implicit == "icmp" and family == 6 or implicit == "icmp6" and family == 4
                if not wrong_family and opt in MODULE_OPTIONS[implicit]:
                    mod = _Module(implicit, tok)
                    modules.append(mod)
            if mod is None:
                raise cur.error(tok, f'unknown option "{opt}"')
            handler, negatable = MODULE_OPTIONS[mod.name][opt]
            negate = _invert(cur, negate_tok, tok, negatable)
            if opt in mod.options and mod.name not in ("connlimit",):
                raise cur.error(tok, f"{mod.name}: option {opt!r} can only be used once")
            mod.options.add(opt)
            handler(cur, tok, negate, mod, ctx)
        else:
            raise cur.error(tok, f"Bad argument `{opt}'")

    # Modules that need a protocol.
    for mod in modules:
        need = MODULE_PROTOCOL.get(mod.name)
        if need is not None and (proto not in need or proto_negate):
            raise cur.error(
                mod.token,
                f"the {mod.name} match is only valid with "
                f"-p {mod.name if mod.name != 'icmp6' else 'ipv6-icmp'}",
            )
        if mod.name == "multiport" and (proto not in names.PORT_PROTOCOLS or proto_negate):
            raise cur.error(
                mod.token, "multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'"
            )
    extensions = [_finish_module(cur, m, ctx) for m in modules]

    tname = ""
    targs: dict = {}
    if target is not None:
        tname = target.name
        if tname in TARGET_OPTIONS:
            targs = _finish_target(cur, target, proto, proto_negate, ctx)
        if ctx.table == "nat" and tname == "DROP":
            raise cur.error(
                target.token,
                'The "nat" table is not intended for filtering, the use of DROP is therefore inhibited.',
            )
        table_needed = TARGET_TABLE.get(tname)
        if table_needed is not None and table_needed != ctx.table:
            raise cur.error(target.token, f"{tname} is only valid in the {table_needed} table")
        if tname == "TCPMSS" and not any(
            e.name == "tcp"
            and e.args["flags"] is not None
            and e.args["flags"][1] & 0x02
            and not e.args["flags_negate"]
            for e in extensions
        ):
            raise cur.error(
                target.token,
                "TCPMSS target: Only works on TCP SYN packets (add --syn or --tcp-flags SYN,RST SYN)",
            )

    base = Match(
        protocol=proto,
        protocol_negate=proto_negate,
        source_negate=src_negate,
        destination_negate=dst_negate,
        in_interface=in_if,
        out_interface=out_if,
        in_interface_negate=in_neg,
        out_interface_negate=out_neg,
        family=family,
    )
    match, extras = fold(base, extensions)
    rules = []
    for s in sources or [None]:
        for d in dests or [None]:
            m = replace(
                match, sources=(s,) if s is not None else (), destinations=(d,) if d is not None else ()
            )
            rules.append(
                NfRule(
                    match=m,
                    target=tname,
                    target_args=dict(targs),
                    matches_extra=[NfExtension(e.name, dict(e.args)) for e in extras],
                    modules=tuple(e.name for e in extensions),
                    goto=goto,
                    fragment=fragment,
                    counters=counters or (0, 0),
                    origin=ctx.origin,
                )
            )
    return ParsedRule(rules, target_tok, counters)


def fold(base: Match, extensions: list[NfExtension]) -> tuple[Match, list[NfExtension]]:
    """Move the first instance of each Match-able module into ``base``; the rest stay extensions.

    A ``multiport --sports/--dports`` folds only when no tcp/udp module of the rule sets ports, so
    that the ports in Match always belong to one module.
    """
    fields: dict[str, object] = {}
    extras: list[NfExtension] = []
    port_modules = [e for e in extensions if e.name in ("tcp", "udp")]
    l4_has_ports = bool(port_modules) and (
        port_modules[0].args["sport"] is not None or port_modules[0].args["dport"] is not None
    )
    taken: set[str] = set()
    for ext in extensions:
        a = ext.args
        name = ext.name
        if name in ("tcp", "udp") and "l4" not in taken:
            taken.add("l4")
            if a["sport"] is not None:
                fields.update(source_ports=(a["sport"],), source_ports_negate=a["sport_negate"])
            if a["dport"] is not None:
                fields.update(destination_ports=(a["dport"],), destination_ports_negate=a["dport_negate"])
            if name == "tcp" and a["flags"] is not None:
                fields.update(tcp_flags=a["flags"], tcp_flags_negate=a["flags_negate"])
        elif name in ("icmp", "icmp6") and "icmp" not in taken:
            taken.add("icmp")
            fields.update(icmp_type=a["type"], icmp_code=a["code"], icmp_negate=a["negate"])
        elif name in ("state", "conntrack") and "ct" not in taken and set(a) <= {"states", "negate"}:
            taken.add("ct")
            fields.update(ctstates=a["states"], ctstates_negate=a["negate"])
        elif name == "multiport" and a["dir"] != "ports" and not l4_has_ports and "mp" not in taken:
            taken.add("mp")
            key = "source_ports" if a["dir"] == "sports" else "destination_ports"
            fields.update({key: a["ports"], key + "_negate": a["negate"]})
        else:
            extras.append(ext)
    return replace(base, **fields), extras


owner_of_match = nf_folded_owners
