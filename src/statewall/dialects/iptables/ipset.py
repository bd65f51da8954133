"""ipset definitions beside an iptables ruleset: ``ipset save`` lines (``create NAME TYPE ...``,
``add NAME ENTRY``) and ``ipset create|add`` commands, into ``NfSet``.

Owns the set types statewall evaluates: ``hash:ip``, ``hash:net``, ``bitmap:ip``, ``hash:ip,port``,
``hash:net,port``, ``bitmap:port``, ``hash:ip,port,ip``, ``hash:ip,port,net``, ``hash:net,net`` and
``list:set``. Other types, and entries marked ``nomatch``, are refused with a located error naming
them. Entry timeouts are kept as written but not counted down (an entry stays for the whole replay).
"""

from __future__ import annotations

import ipaddress

from ...policy import NfSet, Origin
from ..errors import ConfigError
from . import names
from .lexer import Token

SET_TYPES: dict[str, tuple[str, ...]] = {
    "hash:ip": ("ip",),
    "hash:net": ("net",),
    "bitmap:ip": ("ip",),
    "hash:ip,port": ("ip", "port"),
    "hash:net,port": ("net", "port"),
    "bitmap:port": ("port",),
    "hash:ip,port,ip": ("ip", "port", "ip"),
    "hash:ip,port,net": ("ip", "port", "net"),
    "hash:net,net": ("net", "net"),
    "list:set": ("set",),
}
# create options that take a value, and flags.
_VALUED = frozenset(
    {
        "family",
        "hashsize",
        "maxelem",
        "timeout",
        "range",
        "netmask",
        "bucketsize",
        "initval",
        "size",
        "markmask",
    }
)
_FLAGS = frozenset({"counters", "comment", "skbinfo", "forceadd"})
_PORT_PROTOS = {"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136}


def _err(file: str, tok: Token, message: str) -> ConfigError:
    return ConfigError(file, tok.line, tok.col, message)


def create(sets: dict[str, NfSet], file: str, origin: Origin, toks: list[Token]) -> None:
    """``create NAME TYPE [options]`` (``toks`` start at NAME)."""
    if len(toks) < 2:
        raise _err(file, toks[0] if toks else Token("", origin.line, 1), "ipset create NAME TYPE expected")
    name, kind = toks[0], toks[1]
    if kind.text not in SET_TYPES:
        raise _err(
            file,
            kind,
            f"ipset: set type {kind.text!r} is not modelled (statewall knows {', '.join(SET_TYPES)})",
        )
    family = 4
    options = []
    i = 2
    while i < len(toks):
        opt = toks[i]
        if opt.text in _VALUED:
            if i + 1 >= len(toks):
                raise _err(file, opt, f"ipset: option {opt.text} needs a value")
            value = toks[i + 1].text
            if opt.text == "family":
                if value not in ("inet", "inet6"):
                    raise _err(file, toks[i + 1], f"ipset: unknown family {value!r} (inet or inet6)")
                family = 6 if value == "inet6" else 4
            options.append(f"{opt.text} {value}")
            i += 2
        elif opt.text in _FLAGS:
            options.append(opt.text)
            i += 1
        else:
            raise _err(file, opt, f"ipset: unknown create option {opt.text!r}")
    if name.text in sets:
        raise _err(
            file,
            name,
            f"ipset: set {name.text} already exists "
            "(Set cannot be created: set with the same name already exists)",
        )
    sets[name.text] = NfSet(
        name.text, kind.text, family, SET_TYPES[kind.text], origin=origin, options=options
    )


def add(sets: dict[str, NfSet], file: str, toks: list[Token]) -> None:
    """``add NAME ENTRY [timeout N] [comment ...] ...``."""
    if len(toks) < 2:
        raise _err(file, toks[0] if toks else Token("", 1, 1), "ipset add NAME ENTRY expected")
    name, entry = toks[0], toks[1]
    s = sets.get(name.text)
    if s is None:
        raise _err(file, name, f"ipset: The set with the given name does not exist ({name.text})")
    for extra in toks[2:]:
        if extra.text == "nomatch":
            raise _err(file, extra, "ipset: nomatch entries are not modelled")
    parts = entry.text.split(",")
    if len(parts) != len(s.dims):
        raise _err(file, entry, f"ipset: {entry.text!r} is not an entry of a {s.kind} set")
    member = []
    for dim, part in zip(s.dims, parts, strict=True):
        if dim in ("ip", "net"):
            member.append(_address(file, entry, part, s.family, dim))
        elif dim == "port":
            member.append(_port(file, entry, part))
        else:
            member.append(part)
    s.members.append(tuple(member))
    s.text.append(entry.text)


def _address(file: str, tok: Token, text: str, family: int, dim: str) -> tuple[int, int]:
    try:
        if "-" in text:
            a, b = (ipaddress.ip_address(x) for x in text.split("-", 1))
            lo, hi, version = int(a), int(b), a.version
        else:
            net = ipaddress.ip_network(text, strict=False)
            lo, hi, version = int(net.network_address), int(net.broadcast_address), net.version
    except ValueError:
        raise _err(file, tok, f"ipset: bad address {text!r}") from None
    if version != family or hi < lo:
        raise _err(file, tok, f"ipset: {text!r} is not an IPv{family} address or range")
    return (lo, hi)


def _port(file: str, tok: Token, text: str) -> tuple[int, int, int]:
    proto_s, colon, port_s = text.rpartition(":") if ":" in text else ("tcp", ":", text)
    proto = _PORT_PROTOS.get(proto_s.lower())
    if proto is None:
        proto = names.PROTOCOLS.get(proto_s.lower())
    if proto is None:
        raise _err(file, tok, f"ipset: unknown protocol {proto_s!r}")
    lo_s, _, hi_s = port_s.partition("-")
    ports = []
    for p in (lo_s, hi_s or lo_s):
        if p.isdigit() and int(p) <= 65535:
            ports.append(int(p))
        elif p in names.SERVICES:
            ports.append(names.SERVICES[p])
        else:
            raise _err(file, tok, f"ipset: bad port {p!r}")
    return (proto, ports[0], ports[1])


def save_lines(sets: dict[str, NfSet]) -> list[str]:
    """The sets as ``ipset save`` prints them."""
    out = []
    for s in sets.values():
        out.append(" ".join(["create", s.name, s.kind, *s.options]))
        out.extend(f"add {s.name} {t}" for t in s.text)
    return out
