"""The match modules and targets of deployed rulesets (Docker, ufw, firewalld, OpenWrt fw3, kube-proxy,
libvirt, strongSwan): their options, checks, iptables-save form and ``iptables -L`` form.

Owns ``addrtype``, ``mark``, ``connmark``, the ``conntrack`` options beyond ``--ctstate``, ``recent``,
``set``, ``iprange``, ``length``, ``statistic``, ``policy``, ``tcpmss``, ``pkttype``, ``mac``,
``hashlimit``, ``time``, ``physdev`` and the targets ``MARK``, ``CONNMARK``, ``NFLOG``, ``TRACE`` and
``CHECKSUM``. Each is a ``Spec``: its option handlers (as ``rules.MODULE_OPTIONS`` has them), a
``finish`` that fills defaults and makes the checks of the libxt extension and the kernel's checkentry,
``save`` (the words iptables-save prints) and ``listing`` (what ``iptables -L`` prints). ``register``
adds them to ``rules``. The ``args`` keys of each are listed at its handlers; ``statewall.netfilter``
evaluates them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from ...policy import PROTO_TCP, PROTO_UDP
from . import names
from .rules import Cursor, RuleContext, Token, _Module, _Target, parse_uint

OptionHandler = Callable[[Cursor, Token, bool, _Module, RuleContext], None]
TargetHandler = Callable[[Cursor, Token, _Target, RuleContext], None]


@dataclass(slots=True)
class Spec:
    options: dict[str, tuple[OptionHandler, bool]]
    finish: Callable[[Cursor, _Module, RuleContext], None]
    save: Callable[[dict], list[str]]
    listing: Callable[[dict, bool], str]


@dataclass(slots=True)
class TargetSpec:
    options: dict[str, TargetHandler]
    finish: Callable[[Cursor, _Target, RuleContext], None]
    save: Callable[[dict], list[str]]
    listing: Callable[[dict], str]
    table: str | None = None
    hooks: frozenset[str] | None = None
    extra: dict = field(default_factory=dict)


def _neg(flag: object) -> str:
    return "! " if flag else ""


def parse_u32(cur: Cursor, tok: Token, text: str | None = None) -> int:
    text = tok.text if text is None else text
    try:
        value = int(text, 0)
    except ValueError:
        raise cur.error(tok, f"Bad value {text!r} (a number, 0x for hexadecimal)") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise cur.error(tok, f"Bad value {text!r} (0 to 0xffffffff)")
    return value


def parse_value_mask(cur: Cursor, tok: Token) -> tuple[int, int]:
    """``value[/mask]``, the mask all ones when absent."""
    value, slash, mask = tok.text.partition("/")
    return parse_u32(cur, tok, value), (parse_u32(cur, tok, mask) if slash else 0xFFFFFFFF)


# --------------------------------------------------------------------------------------------------
# addrtype: src_type / dst_type (frozenset of route types or None), src_negate, dst_negate,
# limit_in, limit_out.

# The route types of rtnetlink.h in their bit order (libxt_addrtype's rtn_names).
ADDR_TYPES = (
    "UNSPEC",
    "UNICAST",
    "LOCAL",
    "BROADCAST",
    "ANYCAST",
    "MULTICAST",
    "BLACKHOLE",
    "UNREACHABLE",
    "PROHIBIT",
    "THROW",
    "NAT",
    "XRESOLVE",
)


def _addrtype_types(key: str) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        tok = cur.value(opt, "a list of address types")
        out = set()
        for word in tok.text.split(","):
            if word.upper() not in ADDR_TYPES:
                raise cur.error(tok, f"addrtype: bad type {word!r} ({', '.join(ADDR_TYPES)})")
            out.add(word.upper())
        mod.args[key + "_type"] = frozenset(out)
        mod.args[key + "_negate"] = negate

    return handle


def _addrtype_limit(key: str) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        mod.args[key] = True

    return handle


def _addrtype_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    a = mod.args
    for key in ("src", "dst"):
        a.setdefault(key + "_type", None)
        a.setdefault(key + "_negate", False)
    a.setdefault("limit_in", False)
    a.setdefault("limit_out", False)
    if a["limit_in"] and a["limit_out"]:
        raise cur.error(mod.token, "addrtype: you can't specify both --limit-iface-in and --limit-iface-out")
    if a["limit_in"] and ctx.builtin_chain and ctx.chain in ("OUTPUT", "POSTROUTING"):
        raise cur.error(mod.token, "addrtype: --limit-iface-in is not valid in OUTPUT or POSTROUTING")
    if a["limit_out"] and ctx.builtin_chain and ctx.chain in ("PREROUTING", "INPUT"):
        raise cur.error(mod.token, "addrtype: --limit-iface-out is not valid in PREROUTING or INPUT")


def _types(types: frozenset[str]) -> str:
    return ",".join(t for t in ADDR_TYPES if t in types)


def _addrtype_save(a: dict) -> list[str]:
    words = ["-m", "addrtype"]
    for key in ("src", "dst"):
        if a[key + "_type"] is not None:
            words.append(f"{_neg(a[key + '_negate'])}--{key}-type {_types(a[key + '_type'])}")
    if a["limit_in"]:
        words.append("--limit-iface-in")
    if a["limit_out"]:
        words.append("--limit-iface-out")
    return words


def _addrtype_listing(a: dict, numeric: bool) -> str:
    text = " ADDRTYPE match"
    for key in ("src", "dst"):
        if a[key + "_type"] is not None:
            text += f" {key}-type {'!' if a[key + '_negate'] else ''}{_types(a[key + '_type'])}"
    if a["limit_in"]:
        text += " limit-in"
    if a["limit_out"]:
        text += " limit-out"
    return text


# --------------------------------------------------------------------------------------------------
# mark / connmark: value, mask, negate.


def _mark(cur, opt, negate, mod, ctx) -> None:
    mod.args["value"], mod.args["mask"] = parse_value_mask(cur, cur.value(opt, "value[/mask]"))
    mod.args["negate"] = negate


def _mark_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    if "value" not in mod.args:
        raise cur.error(mod.token, f"{mod.name} match: option --mark must be given")


def _mark_text(a: dict) -> str:
    return f"0x{a['value']:x}" + ("" if a["mask"] == 0xFFFFFFFF else f"/0x{a['mask']:x}")


def _mark_save(name: str) -> Callable[[dict], list[str]]:
    return lambda a: ["-m", name, f"{_neg(a['negate'])}--mark {_mark_text(a)}"]


def _mark_listing(name: str) -> Callable[[dict, bool], str]:
    # libxt_mark prints " mark match[ !] 0x..", libxt_connmark " connmark match [!] 0x.." (two spaces).
    if name == "mark":
        return lambda a, numeric: f" mark match{' !' if a['negate'] else ''} {_mark_text(a)}"
    return lambda a, numeric: f" connmark match {'!' if a['negate'] else ''} {_mark_text(a)}"


# --------------------------------------------------------------------------------------------------
# conntrack beyond --ctstate: dir (ORIGINAL/REPLY), status (frozenset), status_negate, proto,
# proto_negate. A conntrack module with any of these stays an extension (does not fold into Match).

CT_STATUSES = ("EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED")


def _ctdir(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "ORIGINAL or REPLY")
    if tok.text.upper() not in ("ORIGINAL", "REPLY"):
        raise cur.error(tok, f"conntrack: bad --ctdir {tok.text!r} (ORIGINAL or REPLY)")
    mod.args["dir"] = tok.text.upper()


def _ctstatus(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "a list of statuses")
    out = set()
    for word in tok.text.split(","):
        if word.upper() not in (*CT_STATUSES, "NONE"):
            raise cur.error(tok, f"conntrack: bad status {word!r} ({', '.join(CT_STATUSES)}, NONE)")
        if word.upper() != "NONE":
            out.add(word.upper())
    mod.args["status"] = frozenset(out)
    mod.args["status_negate"] = negate


def _ctproto(cur, opt, negate, mod, ctx) -> None:
    from .rules import parse_protocol

    proto = parse_protocol(cur, cur.value(opt, "a protocol"))
    if proto == 0:
        raise cur.error(opt, "conntrack: --ctproto 0 is not allowed")
    mod.args["proto"] = proto
    mod.args["proto_negate"] = negate


CONNTRACK_EXTRA = {
    "--ctdir": (_ctdir, False),
    "--ctstatus": (_ctstatus, True),
    "--ctproto": (_ctproto, True),
}


def conntrack_save(a: dict) -> list[str]:
    words = ["-m", "conntrack"]
    if "states" in a:
        words.append(
            f"{_neg(a.get('negate'))}--ctstate {','.join(s for s in names.CTSTATES if s in a['states'])}"
        )
    if "proto" in a:
        words.append(f"{_neg(a.get('proto_negate'))}--ctproto {a['proto']}")
    if "status" in a:
        words.append(f"{_neg(a.get('status_negate'))}--ctstatus {_status_text(a['status'])}")
    if "dir" in a:
        words.append(f"--ctdir {a['dir']}")
    return words


def _status_text(status: frozenset[str]) -> str:
    return ",".join(s for s in CT_STATUSES if s in status) or "NONE"


def conntrack_listing(a: dict, numeric: bool) -> str:
    text = ""
    if "states" in a:
        states = ",".join(s for s in names.CTSTATES if s in a["states"])
        text += f"{' !' if a.get('negate') else ''} ctstate {states}"
    if "proto" in a:
        text += f"{' !' if a.get('proto_negate') else ''} ctproto {a['proto']}"
    if "status" in a:
        text += f"{' !' if a.get('status_negate') else ''} ctstatus {_status_text(a['status'])}"
    if "dir" in a:
        text += f" ctdir {a['dir']}"
    return text


# --------------------------------------------------------------------------------------------------
# recent: mode (SET, CHECK, UPDATE, REMOVE), name, side (source/dest), seconds, hitcount, reap, ttl,
# mask (an address), negate. xt_recent remembers ip_pkt_list_tot (20) packets per address.

RECENT_PKT_LIST_TOT = 20
_RECENT_MODES = {"--set": "SET", "--rcheck": "CHECK", "--update": "UPDATE", "--remove": "REMOVE"}


def _recent_mode(cur, opt, negate, mod, ctx) -> None:
    if "mode" in mod.args:
        raise cur.error(opt, "recent: only one of `--set', `--rcheck', `--update' or `--remove' may be set")
    mod.args["mode"] = _RECENT_MODES[opt.text]
    mod.args["negate"] = negate


def _recent_num(key: str, high: int) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        mod.args[key] = parse_uint(cur, cur.value(opt, "a number"), 0, high, opt.text)

    return handle


def _recent_name(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "a name")
    if not tok.text or len(tok.text) >= 200:
        raise cur.error(tok, "recent: --name must be 1 to 199 characters")
    mod.args["name"] = tok.text


def _recent_side(side: str) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        mod.args["side"] = side

    return handle


def _recent_flag(key: str) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        mod.args[key] = True

    return handle


def _recent_mask(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "an address mask")
    try:
        mask = ipaddress.ip_address(tok.text)
    except ValueError:
        raise cur.error(tok, f"recent: bad --mask {tok.text!r}") from None
    if mask.version != ctx.family:
        raise cur.error(tok, f"recent: bad --mask {tok.text!r}")
    mod.args["mask"] = mask


def _recent_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    a = mod.args
    if "mode" not in a:
        raise cur.error(
            mod.token, "recent: you must specify one of `--set', `--rcheck', `--update' or `--remove'"
        )
    a.setdefault("name", "DEFAULT")
    a.setdefault("side", "source")
    a.setdefault("seconds", 0)
    a.setdefault("hitcount", 0)
    a.setdefault("reap", False)
    a.setdefault("ttl", False)
    a.setdefault("mask", ipaddress.ip_address("255.255.255.255" if ctx.family == 4 else "ffff:" * 7 + "ffff"))
    # recent_mt_check: --seconds/--hitcount/--reap/--rttl go with --rcheck and --update only.
    if a["mode"] in ("SET", "REMOVE") and (a["seconds"] or a["hitcount"] or a["reap"] or a["ttl"]):
        raise cur.error(
            mod.token,
            "recent: --seconds, --hitcount, --rttl and --reap need --rcheck or --update (Invalid argument)",
        )
    if a["reap"] and not a["seconds"]:
        raise cur.error(mod.token, "recent: --reap needs --seconds (Invalid argument)")
    if a["hitcount"] > RECENT_PKT_LIST_TOT:
        raise cur.error(
            mod.token,
            f"recent: hitcount ({a['hitcount']}) is larger than packets to be remembered "
            f"({RECENT_PKT_LIST_TOT}) (Invalid argument)",
        )


_RECENT_OPT = {"SET": "--set", "CHECK": "--rcheck", "UPDATE": "--update", "REMOVE": "--remove"}


def _recent_save(a: dict) -> list[str]:
    words = ["-m", "recent", f"{_neg(a['negate'])}{_RECENT_OPT[a['mode']]}"]
    if a["seconds"]:
        words.append(f"--seconds {a['seconds']}")
    if a["reap"]:
        words.append("--reap")
    if a["hitcount"]:
        words.append(f"--hitcount {a['hitcount']}")
    if a["ttl"]:
        words.append("--rttl")
    words.append(f"--name {a['name']}")
    words.append(f"--mask {a['mask']}")
    words.append("--rsource" if a["side"] == "source" else "--rdest")
    return words


def _recent_listing(a: dict, numeric: bool) -> str:
    text = f"{' !' if a['negate'] else ''} recent: {a['mode']}"
    if a["seconds"]:
        text += f" seconds: {a['seconds']}"
    if a["reap"]:
        text += " reap"
    if a["hitcount"]:
        text += f" hit_count: {a['hitcount']}"
    if a["ttl"]:
        text += " TTL-Match"
    text += f" name: {a['name']} side: {a['side']} mask: {a['mask']}"
    return text


# --------------------------------------------------------------------------------------------------
# set: name, dirs (tuple of "src"/"dst", one per dimension), negate, return_nomatch,
# update_counters.


def _match_set(cur, opt, negate, mod, ctx) -> None:
    name = cur.value(opt, "a set name")
    dirs = cur.value(opt, "src and/or dst flags")
    parts = tuple(dirs.text.split(","))
    if not parts or any(p not in ("src", "dst") for p in parts) or len(parts) > 6:
        raise cur.error(dirs, f"set: bad flags {dirs.text!r} (src or dst, comma separated, at most 6)")
    mod.args.update({"name": name.text, "dirs": parts, "negate": negate})


def _set_flag(key: str, value: bool) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        mod.args[key] = value if not negate else not value

    return handle


def _set_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    if "name" not in mod.args:
        raise cur.error(mod.token, "set match: option --match-set must be given")
    mod.args.setdefault("return_nomatch", False)
    mod.args.setdefault("update_counters", True)


def _set_save(a: dict) -> list[str]:
    words = ["-m", "set", f"{_neg(a['negate'])}--match-set {a['name']} {','.join(a['dirs'])}"]
    if a["return_nomatch"]:
        words.append("--return-nomatch")
    if not a["update_counters"]:
        words.append("! --update-counters")
    return words


def _set_listing(a: dict, numeric: bool) -> str:
    text = f"{' !' if a['negate'] else ''} match-set {a['name']} {','.join(a['dirs'])}"
    if a["return_nomatch"]:
        text += " return-nomatch"
    if not a["update_counters"]:
        text += " ! update-counters"
    return text


# --------------------------------------------------------------------------------------------------
# iprange: src_range / dst_range ((first, last) addresses or None), src_negate, dst_negate.


def _iprange(key: str) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        tok = cur.value(opt, "an address range")
        first, _, last = tok.text.partition("-")
        try:
            a = ipaddress.ip_address(first)
            b = ipaddress.ip_address(last) if last else a
        except ValueError:
            raise cur.error(tok, f"iprange: bad address range {tok.text!r}") from None
        if a.version != ctx.family or b.version != ctx.family:
            raise cur.error(tok, f"iprange: {tok.text!r} is not an IPv{ctx.family} range")
        mod.args[key + "_range"] = (a, b)
        mod.args[key + "_negate"] = negate

    return handle


def _iprange_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    a = mod.args
    if "src_range" not in a and "dst_range" not in a:
        raise cur.error(mod.token, "iprange match: you must specify `--src-range' or `--dst-range'")
    for key in ("src", "dst"):
        a.setdefault(key + "_range", None)
        a.setdefault(key + "_negate", False)


def _iprange_save(a: dict) -> list[str]:
    words = ["-m", "iprange"]
    for key in ("src", "dst"):
        if a[key + "_range"] is not None:
            lo, hi = a[key + "_range"]
            words.append(f"{_neg(a[key + '_negate'])}--{key}-range {lo}-{hi}")
    return words


def _iprange_listing(a: dict, numeric: bool) -> str:
    text = ""
    for key, word in (("src", "source"), ("dst", "destination")):
        if a[key + "_range"] is not None:
            lo, hi = a[key + "_range"]
            text += f" {word} IP range{' !' if a[key + '_negate'] else ''} {lo}-{hi}"
    return text


# --------------------------------------------------------------------------------------------------
# length: low, high, negate (the IP total length, IPv6 payload length plus 40).


def _length(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "a length or range")
    low_s, colon, high_s = tok.text.partition(":")
    low = parse_uint(cur, tok, 0, 65535, "--length") if not colon else 0
    if colon:
        low = parse_uint(cur, Token(low_s, tok.line, tok.col), 0, 65535, "--length") if low_s else 0
        high = parse_uint(cur, Token(high_s, tok.line, tok.col), 0, 65535, "--length") if high_s else 65535
    else:
        high = low
    if low > high:
        raise cur.error(tok, f"length: bad range {tok.text!r} (min > max)")
    mod.args.update({"low": low, "high": high, "negate": negate})


def _length_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    if "low" not in mod.args:
        raise cur.error(mod.token, "length match: option --length must be given")


def _length_text(a: dict) -> str:
    return str(a["low"]) if a["low"] == a["high"] else f"{a['low']}:{a['high']}"


# --------------------------------------------------------------------------------------------------
# pkttype: type (unicast, broadcast, multicast, host, otherhost), negate.

PKT_TYPES = ("unicast", "broadcast", "multicast", "host", "otherhost")


def _pkttype(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "a packet type")
    if tok.text.lower() not in PKT_TYPES:
        raise cur.error(tok, f"pkttype: bad type {tok.text!r} ({', '.join(PKT_TYPES)})")
    mod.args.update({"type": tok.text.lower(), "negate": negate})


def _pkttype_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    if "type" not in mod.args:
        raise cur.error(mod.token, "pkttype match: option --pkt-type must be given")


# --------------------------------------------------------------------------------------------------
# mac: source (6 bytes), negate. The kernel allows it in PREROUTING, INPUT and FORWARD only
# (tables.MATCH_HOOKS).


def _mac(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "a MAC address")
    parts = tok.text.split(":")
    try:
        raw = bytes(int(p, 16) for p in parts)
    except ValueError:
        raw = b""
    if len(parts) != 6 or len(raw) != 6 or any(len(p) not in (1, 2) for p in parts):
        raise cur.error(tok, f"mac: bad MAC address {tok.text!r}")
    mod.args.update({"source": raw, "negate": negate})


def _mac_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    if "source" not in mod.args:
        raise cur.error(mod.token, "mac match: option --mac-source must be given")


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)  # xtables_print_mac


# --------------------------------------------------------------------------------------------------
# hashlimit: avg (seconds between packets times 1 000 000, XT_HASHLIMIT_SCALE_v2), burst, above,
# mode (tuple of srcip, dstip, srcport, dstport), name, srcmask, dstmask, expire (ms).

HASHLIMIT_SCALE = 1000000
_HL_MODES = ("srcip", "srcport", "dstip", "dstport")


def _hl_rate(above: bool) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        tok = cur.value(opt, "a rate")
        rate, slash, unit = tok.text.partition("/")
        mult = 1
        if slash:
            for word, m in (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400)):
                if unit and word.startswith(unit.lower()):
                    mult = m
                    break
            else:
                raise cur.error(tok, f"hashlimit: bad rate {tok.text!r}")
        if not rate.isdigit() or int(rate) == 0:
            raise cur.error(tok, f"hashlimit: bad rate {tok.text!r}")
        avg = HASHLIMIT_SCALE * mult // int(rate)
        if avg == 0:
            raise cur.error(tok, f"hashlimit: rate too fast {tok.text!r}")
        # "! --hashlimit-above" is --hashlimit-upto and the other way round.
        mod.args.update({"avg": avg, "above": above != negate})

    return handle


def _hl_mode(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "a mode")
    modes = tok.text.split(",")
    if any(m not in _HL_MODES for m in modes):
        raise cur.error(tok, f"hashlimit: bad mode {tok.text!r} ({', '.join(_HL_MODES)})")
    mod.args["mode"] = tuple(m for m in _HL_MODES if m in modes)


def _hl_name(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "a name")
    if not tok.text or len(tok.text) > 31:
        raise cur.error(tok, "hashlimit: --hashlimit-name must be 1 to 31 characters")
    mod.args["name"] = tok.text


def _hl_num(key: str, low: int, high: int) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        mod.args[key] = parse_uint(cur, cur.value(opt, "a number"), low, high, opt.text)

    return handle


def _hashlimit_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    a = mod.args
    if "avg" not in a:
        raise cur.error(mod.token, "hashlimit: option --hashlimit-upto or --hashlimit-above must be given")
    if "name" not in a:
        raise cur.error(mod.token, "hashlimit: option --hashlimit-name must be given")
    bits = 32 if ctx.family == 4 else 128
    a.setdefault("burst", 5)
    a.setdefault("mode", ())
    a.setdefault("srcmask", bits)
    a.setdefault("dstmask", bits)
    a.setdefault("expire", 10000)
    if a["srcmask"] > bits or a["dstmask"] > bits:
        raise cur.error(mod.token, f"hashlimit: a mask is at most {bits}")


def _hl_rate_text(avg: int) -> str:
    from .render import rate

    return rate(avg, HASHLIMIT_SCALE)


def _hashlimit_save(a: dict) -> list[str]:
    words = ["-m", "hashlimit", f"--hashlimit-{'above' if a['above'] else 'upto'} {_hl_rate_text(a['avg'])}"]
    words.append(f"--hashlimit-burst {a['burst']}")
    if a["mode"]:
        words.append(f"--hashlimit-mode {','.join(a['mode'])}")
    words.append(f"--hashlimit-name {a['name']}")
    return words


def _hashlimit_listing(a: dict, numeric: bool) -> str:
    text = f" limit: {'above' if a['above'] else 'up to'} {_hl_rate_text(a['avg'])} burst {a['burst']}"
    if a["mode"]:
        text += f" mode {'-'.join(a['mode'])}"
    return text


# --------------------------------------------------------------------------------------------------
# time: start, stop (seconds of the day), weekdays (frozenset 1..7, Monday 1), monthdays
# (frozenset 1..31), datestart, datestop (seconds since the epoch), contiguous, kerneltz.

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _time_of_day(key: str) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        tok = cur.value(opt, "hh:mm[:ss]")
        parts = tok.text.split(":")
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
            raise cur.error(tok, f"time: invalid time {tok.text!r} (hh:mm[:ss])")
        h, m = int(parts[0]), int(parts[1])
        s = int(parts[2]) if len(parts) == 3 else 0
        if h > 23 or m > 59 or s > 59:
            raise cur.error(tok, f"time: invalid time {tok.text!r}")
        mod.args[key] = h * 3600 + m * 60 + s

    return handle


def _weekdays(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "a list of days")
    out = set()
    for word in tok.text.split(","):
        if word.isdigit() and 1 <= int(word) <= 7:
            out.add(int(word))
        elif word[:3].capitalize() in _DAYS and len(word) >= 2:
            out.add(_DAYS.index(word[:3].capitalize()) + 1)
        else:
            raise cur.error(tok, f"time: invalid weekday {word!r}")
    mod.args["weekdays"] = frozenset(out) if not negate else frozenset(range(1, 8)) - out


def _monthdays(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "a list of days")
    out = set()
    for word in tok.text.split(","):
        if not word.isdigit() or not 1 <= int(word) <= 31:
            raise cur.error(tok, f"time: invalid monthday {word!r}")
        out.add(int(word))
    mod.args["monthdays"] = frozenset(out) if not negate else frozenset(range(1, 32)) - out


def _date(key: str) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        import datetime as dt

        tok = cur.value(opt, "YYYY[-MM[-DD[Thh[:mm[:ss]]]]]")
        text = tok.text
        for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d", "%Y-%m", "%Y"):
            try:
                when = dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
                break
            except ValueError:
                continue
        else:
            raise cur.error(tok, f"time: invalid date {text!r}")
        mod.args[key] = int(when.timestamp())

    return handle


def _time_flag(key: str) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        mod.args[key] = not negate if key != "kerneltz" else True

    return handle


def _time_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    a = mod.args
    a.setdefault("start", 0)
    a.setdefault("stop", 86399)
    a.setdefault("weekdays", frozenset(range(1, 8)))
    a.setdefault("monthdays", frozenset(range(1, 32)))
    a.setdefault("datestart", 0)
    a.setdefault("datestop", 2**31 - 1)
    a.setdefault("contiguous", False)
    a.setdefault("kerneltz", False)
    if a["kerneltz"] and ctx.warn:
        ctx.warn("time: --kerneltz is evaluated as UTC (statewall has no kernel time zone)")


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _time_words(a: dict, save: bool) -> list[str]:
    import datetime as dt

    words = []
    if a["start"] != 0 or a["stop"] != 86399:
        words.append(f"--timestart {_hms(a['start'])}" if save else f"from {_hms(a['start'])}")
        words.append(f"--timestop {_hms(a['stop'])}" if save else f"to {_hms(a['stop'])}")
    if a["monthdays"] != frozenset(range(1, 32)):
        days = ",".join(str(d) for d in sorted(a["monthdays"]))
        words.append(f"--monthdays {days}" if save else f"on {days}")
    if a["weekdays"] != frozenset(range(1, 8)):
        days = ",".join(_DAYS[d - 1] for d in sorted(a["weekdays"]))
        words.append(f"--weekdays {days}" if save else f"on {days}")
    for key, opt in (("datestart", "--datestart"), ("datestop", "--datestop")):
        default = 0 if key == "datestart" else 2**31 - 1
        # libxt_time's save prints --datestop even at its default (INT_MAX); its print does not.
        if a[key] != default or (save and key == "datestop"):
            fmt = "%Y-%m-%dT%H:%M:%S" if save else "%Y-%m-%d %H:%M:%S"
            text = dt.datetime.fromtimestamp(a[key], dt.UTC).strftime(fmt)
            words.append(
                f"{opt} {text}"
                if save
                else f"{'starting from' if key == 'datestart' else 'until date'} {text}"
            )
    if a["contiguous"]:
        words.append("--contiguous" if save else "contiguous")
    if a["kerneltz"]:
        words.append("--kerneltz" if save else "KERNELTZ")
    elif not save:
        words.append("UTC")
    return words


# --------------------------------------------------------------------------------------------------
# physdev: in, out (bridge port names or None), in_negate, out_negate, is_in, is_out, is_bridged
# (None: not given, True/False: given, False when negated).


def _physdev_name(key: str) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        from .rules import parse_interface

        mod.args[key] = parse_interface(cur, cur.value(opt, "an interface"))
        mod.args[key + "_negate"] = negate

    return handle


def _physdev_is(key: str) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        mod.args[key] = not negate

    return handle


def _physdev_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    a = mod.args
    if not a:
        raise cur.error(mod.token, "physdev: no option given")
    for key in ("in", "out"):
        a.setdefault(key, None)
        a.setdefault(key + "_negate", False)
    for key in ("is_in", "is_out", "is_bridged"):
        a.setdefault(key, None)
    if ctx.warn:
        ctx.warn("physdev: statewall routes and never bridges; a bridge-port condition never holds")


def _physdev_save(a: dict) -> list[str]:
    words = ["-m", "physdev"]
    if a["in"] is not None:
        words.append(f"{_neg(a['in_negate'])}--physdev-in {a['in']}")
    if a["is_in"] is not None:
        words.append(f"{_neg(not a['is_in'])}--physdev-is-in")
    if a["out"] is not None:
        words.append(f"{_neg(a['out_negate'])}--physdev-out {a['out']}")
    if a["is_out"] is not None:
        words.append(f"{_neg(not a['is_out'])}--physdev-is-out")
    if a["is_bridged"] is not None:
        words.append(f"{_neg(not a['is_bridged'])}--physdev-is-bridged")
    return words


def _physdev_listing(a: dict, numeric: bool) -> str:
    text = " PHYSDEV match"
    if a["in"] is not None:
        text += f"{' !' if a['in_negate'] else ''} --physdev-in {a['in']}"
    if a["is_in"] is not None:
        text += f"{' !' if not a['is_in'] else ''} --physdev-is-in"
    if a["out"] is not None:
        text += f"{' !' if a['out_negate'] else ''} --physdev-out {a['out']}"
    if a["is_out"] is not None:
        text += f"{' !' if not a['is_out'] else ''} --physdev-is-out"
    if a["is_bridged"] is not None:
        text += f"{' !' if not a['is_bridged'] else ''} --physdev-is-bridged"
    return text


# --------------------------------------------------------------------------------------------------
# ttl (IPv4) / hl (IPv6): op (eq, lt, gt, ne), value. rt (IPv6 routing header): type, type_negate,
# segsleft ((low, high) or None), segsleft_negate, length, length_negate.

_TTL_OPS = {"eq": "==", "lt": "<", "gt": ">", "ne": "!="}


def _ttl(op: str) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        if "op" in mod.args:
            raise cur.error(opt, f"{mod.name}: only one of --{mod.name}-eq, -lt or -gt")
        value = parse_uint(cur, cur.value(opt, "a number"), 0, 255, opt.text)
        mod.args.update({"op": "ne" if op == "eq" and negate else op, "value": value})

    return handle


def _ttl_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    if "op" not in mod.args:
        raise cur.error(mod.token, f"{mod.name} match: one of --{mod.name}-eq, -lt or -gt is needed")
    want = 4 if mod.name == "ttl" else 6
    if ctx.family != want:
        raise cur.error(mod.token, f"the {mod.name} match is for {'iptables' if want == 4 else 'ip6tables'}")


def _ttl_save(a: dict, name: str) -> list[str]:
    op = a["op"]
    if op == "ne":
        return ["-m", name, f"! --{name}-eq {a['value']}"]
    return ["-m", name, f"--{name}-{op} {a['value']}"]


def _ttl_listing(a: dict, name: str) -> str:
    word = "TTL" if name == "ttl" else "HL"
    op = {"eq": "==", "ne": "!=", "lt": "<", "gt": ">"}[a["op"]]
    return f" {word} match {word} {op} {a['value']}"


def _rt_type(cur, opt, negate, mod, ctx) -> None:
    mod.args["type"] = parse_uint(cur, cur.value(opt, "a type"), 0, 255, "--rt-type")
    mod.args["type_negate"] = negate


def _rt_segsleft(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "a number or range")
    low, colon, high = tok.text.partition(":")
    lo = parse_uint(cur, Token(low or "0", tok.line, tok.col), 0, 0xFFFFFFFF, "--rt-segsleft")
    hi = (
        parse_uint(cur, Token(high or "4294967295", tok.line, tok.col), 0, 0xFFFFFFFF, "--rt-segsleft")
        if colon
        else lo
    )
    mod.args["segsleft"] = (lo, hi)
    mod.args["segsleft_negate"] = negate


def _rt_len(cur, opt, negate, mod, ctx) -> None:
    mod.args["length"] = parse_uint(cur, cur.value(opt, "a length"), 0, 0xFFFFFFFF, "--rt-len")
    mod.args["length_negate"] = negate


def _rt_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    if ctx.family != 6:
        raise cur.error(mod.token, "the rt match is for ip6tables")
    for key in ("type", "segsleft", "length"):
        mod.args.setdefault(key, None)
        mod.args.setdefault(key + "_negate", False)


def _rt_save(a: dict) -> list[str]:
    words = ["-m", "rt"]
    if a["type"] is not None:
        words.append(f"{_neg(a['type_negate'])}--rt-type {a['type']}")
    if a["segsleft"] is not None:
        lo, hi = a["segsleft"]
        words.append(f"{_neg(a['segsleft_negate'])}--rt-segsleft {lo}" + (f":{hi}" if hi != lo else ""))
    if a["length"] is not None:
        words.append(f"{_neg(a['length_negate'])}--rt-len {a['length']}")
    return words


def _rt_listing(a: dict, numeric: bool) -> str:
    text = " rt"
    if a["type"] is not None:
        text += f" type:{'!' if a['type_negate'] else ''}{a['type']}"
    if a["segsleft"] is not None:
        lo, hi = a["segsleft"]
        inv = "!" if a["segsleft_negate"] else ""
        text += f" segslefts:{inv}{lo}" if lo == hi else f" segslefts:{inv}{lo}:{hi}"
    if a["length"] is not None:
        text += f" length:{'!' if a['length_negate'] else ''}{a['length']}"
    return text


# --------------------------------------------------------------------------------------------------
# statistic (xt_statistic, kube-proxy's load balancing): mode ("random" or "nth"), negate, and for random
# probability (the kernel's 31-bit threshold, lround(0x80000000 * p)), for nth every (n, as written) and
# packet (the counter's start, 0 <= p <= n-1). libxt_statistic's guided options: --mode is mandatory,
# --probability goes with random mode only, --every and --packet with nth mode only and each requires
# the other.


def _statistic_mode(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "a mode")
    if tok.text not in ("random", "nth"):
        raise cur.error(tok, f'statistic: Bad mode "{tok.text}"')
    mod.args["mode"] = tok.text


def _statistic_probability(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "a probability")
    try:
        p = float(tok.text)
    except ValueError:
        p = -1.0
    if not 0.0 <= p <= 1.0:
        raise cur.error(tok, f'statistic: --probability "{tok.text}": a number from 0 to 1')
    mod.args["probability"] = round(0x80000000 * p)
    mod.args["negate"] = mod.args.get("negate", False) or negate


def _statistic_every(cur, opt, negate, mod, ctx) -> None:
    mod.args["every"] = parse_uint(cur, cur.value(opt, "a number"), 1, 0xFFFFFFFF, "--every")
    mod.args["negate"] = mod.args.get("negate", False) or negate


def _statistic_packet(cur, opt, negate, mod, ctx) -> None:
    mod.args["packet"] = parse_uint(cur, cur.value(opt, "a number"), 0, 0xFFFFFFFF, "--packet")


def _statistic_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    a = mod.args
    if "mode" not in a:
        raise cur.error(mod.token, 'statistic: option "--mode" must be specified')
    a.setdefault("negate", False)
    if a["mode"] == "random":
        if "every" in a or "packet" in a:
            raise cur.error(mod.token, "statistic: --every and --packet can only be used in nth mode")
        if "probability" not in a:
            raise cur.error(mod.token, "statistic: --probability must be specified when using random mode")
        return
    if "probability" in a:
        raise cur.error(mod.token, "statistic: --probability can only be used in random mode")
    if "every" not in a or "packet" not in a:
        given, other = ("every", "packet") if "every" in a else ("packet", "every")
        if given not in a:
            raise cur.error(
                mod.token, "statistic: --every and --packet must be specified when using nth mode"
            )
        raise cur.error(mod.token, f'statistic: option "--{given}" also requires "--{other}"')
    if a["packet"] > a["every"] - 1:
        raise cur.error(mod.token, "statistic: the --packet p must be 0 <= p <= n-1")


def _statistic_words(a: dict, prefix: str) -> list[str]:
    bang = ["!"] if a["negate"] else []
    if a["mode"] == "random":
        return [
            f"{prefix}mode",
            "random",
            *bang,
            f"{prefix}probability",
            f"{a['probability'] / 0x80000000:.11f}",
        ]
    words = [f"{prefix}mode", "nth", *bang, f"{prefix}every", str(a["every"])]
    if a["packet"] or prefix:
        words += [f"{prefix}packet", str(a["packet"])]
    return words


# --------------------------------------------------------------------------------------------------
# policy (xt_policy, IPsec): dir ("in"/"out"), pol ("none"/"ipsec"), strict, elements (a list of dicts:
# reqid, spi, proto, mode, tunnel_src, tunnel_dst, each with "<key>_negate"), the last element the one
# the options write into until --next.

_POLICY_ELEMENT = ("reqid", "spi", "proto", "mode", "tunnel_src", "tunnel_dst")
_POLICY_PROTOS = {"ah": 51, "esp": 50, "ipcomp": 108}


def _policy_flag(key: str, values: tuple[str, ...]) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        tok = cur.value(opt, " or ".join(values))
        if tok.text not in values:
            raise cur.error(tok, f"policy match: {opt.text} {tok.text!r}: {' or '.join(values)}")
        mod.args[key] = tok.text

    return handle


def _policy_element(key: str) -> OptionHandler:
    def handle(cur, opt, negate, mod, ctx) -> None:
        tok = cur.value(opt, "a value")
        elements = mod.args.setdefault("elements", [{}])
        e = elements[-1]
        if key in e:
            raise cur.error(opt, f"policy match: double {opt.text} option")
        if key in ("reqid", "spi"):
            value: object = parse_u32(cur, tok)
        elif key == "proto":
            value = _POLICY_PROTOS.get(tok.text)
            if value is None:
                value = parse_uint(cur, tok, 0, 255, "--proto")
            if value not in (50, 51, 108):
                raise cur.error(tok, "policy match: protocol must be ah/esp/ipcomp")
        elif key == "mode":
            if tok.text not in ("tunnel", "transport"):
                raise cur.error(tok, f"policy match: mode {tok.text!r}: tunnel or transport")
            value = tok.text
        else:
            try:
                value = ipaddress.ip_network(tok.text, strict=False)
            except ValueError:
                raise cur.error(tok, f"policy match: bad address {tok.text!r}") from None
        e[key] = value
        e[key + "_negate"] = negate

    return handle


def _policy_next(cur, opt, negate, mod, ctx) -> None:
    elements = mod.args.setdefault("elements", [{}])
    if not elements[-1]:
        raise cur.error(opt, "policy match: empty policy element")
    elements.append({})


def _policy_strict(cur, opt, negate, mod, ctx) -> None:
    mod.args["strict"] = True


def _policy_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    a = mod.args
    if "dir" not in a:
        raise cur.error(mod.token, "policy match: neither --dir in nor --dir out specified")
    if "pol" not in a:
        raise cur.error(mod.token, "policy match: --pol none|ipsec must be given")
    a.setdefault("strict", False)
    elements = [e for e in a.setdefault("elements", []) if e]
    if a["pol"] == "none" and (a["strict"] or elements):
        raise cur.error(mod.token, "policy match: policy none but --strict or policy elements given")
    a["elements"] = elements
    if ctx.warn:
        ctx.warn(
            "policy: IPsec (xfrm policies and states) is not modelled: no packet is IPsec-protected in "
            "statewall, so --pol ipsec never holds and --pol none always does"
        )


def _policy_words(a: dict, prefix: str) -> list[str]:
    words = [f"{prefix}dir", a["dir"], f"{prefix}pol", a["pol"]]
    if a["strict"]:
        words.append(f"{prefix}strict")
    for i, e in enumerate(a["elements"]):
        for key in _POLICY_ELEMENT:
            if key not in e:
                continue
            value = e[key]
            if key == "proto":
                value = {v: k for k, v in _POLICY_PROTOS.items()}[value] if prefix else value
            words += (["!"] if e[key + "_negate"] else []) + [f"{prefix}{key.replace('_', '-')}", str(value)]
        if i + 1 < len(a["elements"]):
            words.append(f"{prefix}next")
    return words


# --------------------------------------------------------------------------------------------------
# tcpmss (xt_tcpmss): low, high (the MSS option's value range), negate. -p tcp only.


def _tcpmss(cur, opt, negate, mod, ctx) -> None:
    tok = cur.value(opt, "an MSS or range")
    lo, colon, hi = tok.text.partition(":")
    low = parse_uint(cur, Token(lo, tok.line, tok.col), 0, 65535, "--mss")
    high = parse_uint(cur, Token(hi, tok.line, tok.col), 0, 65535, "--mss") if colon else low
    mod.args.update({"low": low, "high": high, "negate": negate})


def _tcpmss_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    if "low" not in mod.args:
        raise cur.error(mod.token, "tcpmss match: You must specify `--mss'")


def _tcpmss_text(a: dict) -> str:
    return str(a["low"]) if a["low"] == a["high"] else f"{a['low']}:{a['high']}"


def _no_finish(cur: Cursor, mod: _Module, ctx: RuleContext) -> None:
    return None


SPECS: dict[str, Spec] = {
    "ttl": Spec(
        {"--ttl-eq": (_ttl("eq"), True), "--ttl-lt": (_ttl("lt"), False), "--ttl-gt": (_ttl("gt"), False)},
        _ttl_finish,
        lambda a: _ttl_save(a, "ttl"),
        lambda a, numeric: _ttl_listing(a, "ttl"),
    ),
    "hl": Spec(
        {"--hl-eq": (_ttl("eq"), True), "--hl-lt": (_ttl("lt"), False), "--hl-gt": (_ttl("gt"), False)},
        _ttl_finish,
        lambda a: _ttl_save(a, "hl"),
        lambda a, numeric: _ttl_listing(a, "hl"),
    ),
    "rt": Spec(
        {"--rt-type": (_rt_type, True), "--rt-segsleft": (_rt_segsleft, True), "--rt-len": (_rt_len, True)},
        _rt_finish,
        _rt_save,
        _rt_listing,
    ),
    "addrtype": Spec(
        {
            "--src-type": (_addrtype_types("src"), True),
            "--dst-type": (_addrtype_types("dst"), True),
            "--limit-iface-in": (_addrtype_limit("limit_in"), False),
            "--limit-iface-out": (_addrtype_limit("limit_out"), False),
        },
        _addrtype_finish,
        _addrtype_save,
        _addrtype_listing,
    ),
    "mark": Spec({"--mark": (_mark, True)}, _mark_finish, _mark_save("mark"), _mark_listing("mark")),
    "connmark": Spec(
        {"--mark": (_mark, True)}, _mark_finish, _mark_save("connmark"), _mark_listing("connmark")
    ),
    "recent": Spec(
        {
            "--set": (_recent_mode, True),
            "--rcheck": (_recent_mode, True),
            "--update": (_recent_mode, True),
            "--remove": (_recent_mode, True),
            "--seconds": (_recent_num("seconds", 0xFFFFFFFF), False),
            "--hitcount": (_recent_num("hitcount", 0xFFFFFFFF), False),
            "--reap": (_recent_flag("reap"), False),
            "--rttl": (_recent_flag("ttl"), False),
            "--name": (_recent_name, False),
            "--rsource": (_recent_side("source"), False),
            "--rdest": (_recent_side("dest"), False),
            "--mask": (_recent_mask, False),
        },
        _recent_finish,
        _recent_save,
        _recent_listing,
    ),
    "set": Spec(
        {
            "--match-set": (_match_set, True),
            "--set": (_match_set, True),
            "--return-nomatch": (_set_flag("return_nomatch", True), False),
            "--update-counters": (_set_flag("update_counters", True), True),
        },
        _set_finish,
        _set_save,
        _set_listing,
    ),
    "iprange": Spec(
        {"--src-range": (_iprange("src"), True), "--dst-range": (_iprange("dst"), True)},
        _iprange_finish,
        _iprange_save,
        _iprange_listing,
    ),
    "length": Spec(
        {"--length": (_length, True)},
        _length_finish,
        lambda a: ["-m", "length", f"{_neg(a['negate'])}--length {_length_text(a)}"],
        lambda a, numeric: f" length {'!' if a['negate'] else ''}{_length_text(a)}",
    ),
    "statistic": Spec(
        {
            "--mode": (_statistic_mode, False),
            "--probability": (_statistic_probability, True),
            "--every": (_statistic_every, True),
            "--packet": (_statistic_packet, False),
        },
        _statistic_finish,
        lambda a: ["-m", "statistic", *_statistic_words(a, "--")],
        lambda a, numeric: " statistic " + " ".join(_statistic_words(a, "")),
    ),
    "policy": Spec(
        {
            "--dir": (_policy_flag("dir", ("in", "out")), False),
            "--pol": (_policy_flag("pol", ("none", "ipsec")), False),
            "--strict": (_policy_strict, False),
            "--reqid": (_policy_element("reqid"), True),
            "--spi": (_policy_element("spi"), True),
            "--proto": (_policy_element("proto"), True),
            "--mode": (_policy_element("mode"), True),
            "--tunnel-src": (_policy_element("tunnel_src"), True),
            "--tunnel-dst": (_policy_element("tunnel_dst"), True),
            "--next": (_policy_next, False),
        },
        _policy_finish,
        lambda a: ["-m", "policy", *_policy_words(a, "--")],
        lambda a, numeric: " policy match " + " ".join(_policy_words(a, "")),
    ),
    "tcpmss": Spec(
        {"--mss": (_tcpmss, True)},
        _tcpmss_finish,
        lambda a: ["-m", "tcpmss", f"{_neg(a['negate'])}--mss {_tcpmss_text(a)}"],
        lambda a, numeric: f" tcpmss match {'!' if a['negate'] else ''}{_tcpmss_text(a)}",
    ),
    "pkttype": Spec(
        {"--pkt-type": (_pkttype, True)},
        _pkttype_finish,
        lambda a: ["-m", "pkttype", f"{_neg(a['negate'])}--pkt-type {a['type']}"],
        lambda a, numeric: f" PKTTYPE {'!' if a['negate'] else ''}= {a['type']}",
    ),
    "mac": Spec(
        {"--mac-source": (_mac, True)},
        _mac_finish,
        lambda a: ["-m", "mac", f"{_neg(a['negate'])}--mac-source {_mac_text(a['source'])}"],
        lambda a, numeric: f" MAC {'! ' if a['negate'] else ''}{_mac_text(a['source'])}",
    ),
    "hashlimit": Spec(
        {
            "--hashlimit-upto": (_hl_rate(False), True),
            "--hashlimit-above": (_hl_rate(True), True),
            "--hashlimit": (_hl_rate(False), True),
            "--hashlimit-burst": (_hl_num("burst", 1, 10000), False),
            "--hashlimit-mode": (_hl_mode, False),
            "--hashlimit-name": (_hl_name, False),
            "--hashlimit-srcmask": (_hl_num("srcmask", 0, 128), False),
            "--hashlimit-dstmask": (_hl_num("dstmask", 0, 128), False),
            "--hashlimit-htable-expire": (_hl_num("expire", 0, 0xFFFFFFFF), False),
            "--hashlimit-htable-size": (_hl_num("size", 0, 0xFFFFFFFF), False),
            "--hashlimit-htable-max": (_hl_num("max", 0, 0xFFFFFFFF), False),
            "--hashlimit-htable-gcinterval": (_hl_num("gcinterval", 0, 0xFFFFFFFF), False),
        },
        _hashlimit_finish,
        _hashlimit_save,
        _hashlimit_listing,
    ),
    "time": Spec(
        {
            "--timestart": (_time_of_day("start"), False),
            "--timestop": (_time_of_day("stop"), False),
            "--weekdays": (_weekdays, True),
            "--monthdays": (_monthdays, True),
            "--datestart": (_date("datestart"), False),
            "--datestop": (_date("datestop"), False),
            "--contiguous": (_time_flag("contiguous"), False),
            "--kerneltz": (_time_flag("kerneltz"), False),
            "--utc": (lambda cur, opt, negate, mod, ctx: None, False),
            "--localtz": (_time_flag("kerneltz"), False),
        },
        _time_finish,
        lambda a: ["-m", "time", *_time_words(a, True)],
        lambda a, numeric: " TIME " + " ".join(_time_words(a, False)),
    ),
    "physdev": Spec(
        {
            "--physdev-in": (_physdev_name("in"), True),
            "--physdev-out": (_physdev_name("out"), True),
            "--physdev-is-in": (_physdev_is("is_in"), True),
            "--physdev-is-out": (_physdev_is("is_out"), True),
            "--physdev-is-bridged": (_physdev_is("is_bridged"), True),
        },
        _physdev_finish,
        _physdev_save,
        _physdev_listing,
    ),
}


# --------------------------------------------------------------------------------------------------
# Targets. MARK / CONNMARK keep the kernel's form: ``mode`` (set: (mark & ~mask) ^ value; save;
# restore), ``value``, ``mask`` (xt_mark_tginfo2, xt_connmark_tginfo1); save/restore have
# ``nfmask`` and ``ctmask``. NFLOG: ``group``, ``prefix``, ``range``, ``threshold``. TRACE: none.


def _xmark(kind: str) -> TargetHandler:
    def handle(cur, opt, tgt, ctx) -> None:
        if "mode" in tgt.args:
            raise cur.error(opt, f"{tgt.name} target: only one action may be given")
        tok = cur.value(opt, "a value")
        if kind == "set-xmark":
            value, mask = parse_value_mask(cur, tok)
        elif kind == "set-mark":
            value, mask = parse_value_mask(cur, tok)
            mask |= value  # libxt_MARK: --set-mark clears the mask's bits and sets the value's
        elif kind == "and-mark":
            value, mask = 0, ~parse_u32(cur, tok) & 0xFFFFFFFF
        elif kind == "or-mark":
            value = mask = parse_u32(cur, tok)
        else:  # xor-mark
            value, mask = parse_u32(cur, tok), 0
        tgt.args.update({"mode": "set", "value": value, "mask": mask})

    return handle


def _connmark_copy(mode: str) -> TargetHandler:
    def handle(cur, opt, tgt, ctx) -> None:
        if "mode" in tgt.args:
            raise cur.error(opt, "CONNMARK target: only one action may be given")
        tgt.args["mode"] = mode

    return handle


def _connmark_mask(key: str) -> TargetHandler:
    def handle(cur, opt, tgt, ctx) -> None:
        value = parse_u32(cur, cur.value(opt, "a mask"))
        if key == "both":
            tgt.args["nfmask"] = tgt.args["ctmask"] = value
        else:
            tgt.args[key] = value

    return handle


def _mark_target_finish(cur: Cursor, tgt: _Target, ctx: RuleContext) -> None:
    if "mode" not in tgt.args:
        raise cur.error(tgt.token, f"{tgt.name} target: an action (--set-xmark, --set-mark, ...) is required")
    if tgt.name == "CONNMARK" and tgt.args["mode"] in ("save", "restore"):
        tgt.args.setdefault("nfmask", 0xFFFFFFFF)
        tgt.args.setdefault("ctmask", 0xFFFFFFFF)
    elif "nfmask" in tgt.args or "ctmask" in tgt.args:
        raise cur.error(
            tgt.token, "CONNMARK target: --mask, --nfmask and --ctmask go with --save-mark or --restore-mark"
        )


def _xmark_words(name: str, a: dict, save: bool) -> list[str]:
    v, m = a["value"], a["mask"]
    if save:
        return [f"--set-xmark 0x{v:x}/0x{m:x}"]
    if v == 0:
        return [f"{name} and 0x{~m & 0xFFFFFFFF:x}"]
    if v == m:
        return [f"{name} or 0x{v:x}"]
    if m == 0:
        return [f"{name} xor 0x{v:x}"]
    if m == 0xFFFFFFFF:
        return [f"{name} set 0x{v:x}"]
    return [f"{name} xset 0x{v:x}/0x{m:x}"]


def _connmark_words(a: dict, save: bool) -> list[str]:
    if a["mode"] == "set":
        return _xmark_words("CONNMARK", a, save)
    word = "--save-mark" if a["mode"] == "save" else "--restore-mark"
    if save:
        return [word, f"--nfmask 0x{a['nfmask']:x}", f"--ctmask 0x{a['ctmask']:x}"]
    text = f"CONNMARK {a['mode']}"
    if a["nfmask"] != 0xFFFFFFFF or a["ctmask"] != 0xFFFFFFFF:
        text += f" mask 0x{a['ctmask']:x}" if a["mode"] == "save" else f" mask 0x{a['nfmask']:x}"
    return [text]


def _nflog_group(cur, opt, tgt, ctx) -> None:
    tgt.args["group"] = parse_uint(cur, cur.value(opt, "a group"), 0, 65535, "--nflog-group")


def _nflog_prefix(cur, opt, tgt, ctx) -> None:
    tok = cur.value(opt, "a prefix")
    if len(tok.text) > 63:
        raise cur.error(tok, "NFLOG: --nflog-prefix is at most 63 characters")
    tgt.args["prefix"] = tok.text


def _nflog_num(key: str) -> TargetHandler:
    def handle(cur, opt, tgt, ctx) -> None:
        tgt.args[key] = parse_uint(cur, cur.value(opt, "a number"), 0, 0xFFFFFFFF, opt.text)

    return handle


def _nflog_finish(cur: Cursor, tgt: _Target, ctx: RuleContext) -> None:
    tgt.args.setdefault("group", 0)
    tgt.args.setdefault("prefix", "")


def _nflog_words(a: dict, save: bool) -> list[str]:
    from .render import save_string

    words = []
    if save:
        if a["prefix"]:
            words.append(f"--nflog-prefix {save_string(a['prefix'])}")
        if a["group"]:
            words.append(f"--nflog-group {a['group']}")
        if a.get("range"):
            words.append(f"--nflog-range {a['range']}")
        if a.get("threshold"):
            words.append(f"--nflog-threshold {a['threshold']}")
        return words
    if a["prefix"]:
        words.append(f'nflog-prefix "{a["prefix"]}"')
    if a["group"]:
        words.append(f"nflog-group {a['group']}")
    return words


def _trace_finish(cur: Cursor, tgt: _Target, ctx: RuleContext) -> None:
    return None


# CHECKSUM (xt_CHECKSUM, mangle only; libvirt's rule for DHCP replies to its guests): fill (True).


def _checksum_fill(cur, opt, tgt, ctx) -> None:
    tgt.args["fill"] = True


def _checksum_finish(cur: Cursor, tgt: _Target, ctx: RuleContext) -> None:
    if not tgt.args.get("fill"):
        raise cur.error(tgt.token, "CHECKSUM target: Parameter --checksum-fill is required")
    if ctx.warn:
        ctx.warn(
            "CHECKSUM --checksum-fill is not modelled: a checksum left partial by the TUN's offload "
            "stays partial and the receiving kernel completes it; only a receiver that reads a partial "
            "checksum as wrong (the old DHCP clients libvirt added this rule for) would see a difference"
        )


TARGETS: dict[str, TargetSpec] = {
    "MARK": TargetSpec(
        {
            "--set-xmark": _xmark("set-xmark"),
            "--set-mark": _xmark("set-mark"),
            "--and-mark": _xmark("and-mark"),
            "--or-mark": _xmark("or-mark"),
            "--xor-mark": _xmark("xor-mark"),
        },
        _mark_target_finish,
        lambda a: _xmark_words("MARK", a, True),
        lambda a: " " + " ".join(_xmark_words("MARK", a, False)),
    ),
    "CONNMARK": TargetSpec(
        {
            "--set-xmark": _xmark("set-xmark"),
            "--set-mark": _xmark("set-mark"),
            "--and-mark": _xmark("and-mark"),
            "--or-mark": _xmark("or-mark"),
            "--xor-mark": _xmark("xor-mark"),
            "--save-mark": _connmark_copy("save"),
            "--restore-mark": _connmark_copy("restore"),
            "--nfmask": _connmark_mask("nfmask"),
            "--ctmask": _connmark_mask("ctmask"),
            "--mask": _connmark_mask("both"),
        },
        _mark_target_finish,
        lambda a: _connmark_words(a, True),
        lambda a: " " + " ".join(_connmark_words(a, False)),
    ),
    "NFLOG": TargetSpec(
        {
            "--nflog-group": _nflog_group,
            "--nflog-prefix": _nflog_prefix,
            "--nflog-range": _nflog_num("range"),
            "--nflog-size": _nflog_num("range"),
            "--nflog-threshold": _nflog_num("threshold"),
        },
        _nflog_finish,
        lambda a: _nflog_words(a, True),
        lambda a: "".join(" " + w for w in _nflog_words(a, False)),
    ),
    # xt_TRACE: raw table only.
    "TRACE": TargetSpec({}, _trace_finish, lambda a: [], lambda a: "", table="raw"),
    "CHECKSUM": TargetSpec(
        {"--checksum-fill": _checksum_fill},
        _checksum_finish,
        lambda a: ["--checksum-fill"],
        lambda a: " CHECKSUM fill",
        table="mangle",
    ),
}


def register() -> None:
    """Add the modules and targets to the rule grammar of ``rules``."""
    from . import rules

    for name, spec in SPECS.items():
        rules.MODULES.add(name)
        rules.MODULE_OPTIONS[name] = spec.options
        rules.MODULE_FINISH[name] = spec.finish
    rules.MODULE_OPTIONS["conntrack"].update(CONNTRACK_EXTRA)
    for name, tspec in TARGETS.items():
        rules.TARGET_EXTENSIONS.add(name)
        rules.TARGET_OPTIONS[name] = tspec.options
        rules.TARGET_FINISH[name] = tspec.finish
        if tspec.table is not None:
            rules.TARGET_TABLE[name] = tspec.table


PORT_PROTOS = (PROTO_TCP, PROTO_UDP)
__all__ = ["ADDR_TYPES", "SPECS", "TARGETS", "conntrack_listing", "conntrack_save", "register"]
