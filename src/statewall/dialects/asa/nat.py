"""ASA 8.2 address translation: ``global``, ``nat`` (dynamic NAT/PAT, ``nat 0`` exemption, policy NAT
with an access list) and ``static`` (host, network and port statics).

``nat`` and ``global`` lines are tied by their NAT id at the end of the file, as the ASA does: a
``nat`` line becomes one dynamic ``NatRule`` per interface that has a ``global`` with the same id,
with the pool built from those globals. ASA 8.3+ object NAT and twice NAT are ``objnat``'s; a top-level
``nat (real,mapped) ...`` or ``nat ... source ...`` goes there.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...policy import PROTO_TCP, PROTO_UDP, NatPool, NatRule, Origin
from . import objnat
from .lexer import Cursor, Line, Token
from .modes import Handler

if TYPE_CHECKING:
    from .parser import Parser

_ONE = re.compile(r"^\(([^(),\s]+)\)$")
_PAIR = re.compile(r"^\(([^(),\s]+),([^(),\s]+)\)$")
MAX_NAT_ID = 2147483647


@dataclass(slots=True)
class GlobalLine:
    nat_id: int
    interface: str
    first: ipaddress.IPv4Address | None  # None: the interface's own address (PAT)
    last: ipaddress.IPv4Address | None
    origin: Origin
    line: Line


@dataclass(slots=True)
class NatLine:
    nat_id: int
    interface: str
    real: ipaddress.IPv4Network | None
    acl: str | None
    max_conns: int
    embryonic_limit: int
    udp_max_conns: int
    randomseq: bool
    origin: Origin
    line: Line


def _interface(p: Parser, c: Cursor, command: str) -> str:
    tok = c.next("(interface)")
    m = _ONE.match(tok.text)
    if not m:
        raise c.error(tok, f"invalid interface '{tok.text}' (expected (name))")
    _require_interface(p, c, m.group(1), tok, command)
    return m.group(1)


def _require_interface(p: Parser, c: Cursor, name: str, tok: Token, command: str) -> None:
    p.require(
        lambda: name in p.policy.interfaces,
        c.error(tok, f"{command} refers to unknown interface '{name}'"),
    )


def _require_acl(p: Parser, c: Cursor, tok: Token, command: str) -> None:
    p.require(
        lambda: tok.text in p.policy.access_lists,
        c.error(tok, f"{command} refers to unknown access-list '{tok.text}'"),
    )


def global_(p: Parser, c: Cursor) -> None:
    """``global (outside) 1 interface`` | ``global (outside) 1 A[-B] [netmask M]``."""
    ifc = _interface(p, c, "global")
    nat_id = c.integer(1, MAX_NAT_ID, "global id")
    tok = c.next("global address")
    first = last = None
    if tok.word != "interface":
        first_text, _, last_text = tok.text.partition("-")
        first = c.ipv4_of(Token(first_text, tok.col), p.hosts)
        last = first
        if last_text:
            last = c.ipv4_of(Token(last_text, tok.col + len(first_text) + 1), p.hosts)
            if last < first:
                raise c.error(tok, f"invalid range '{tok.text}'")
        if c.accept("netmask"):
            c.netmask()  # the mask of the mapped network; it does not change which addresses are used
    c.end()
    p.nat_globals.append(GlobalLine(nat_id, ifc, first, last, p.origin(c.line), c.line))


def _limits(p: Parser, c: Cursor) -> tuple[int, int, int, bool]:
    """``[dns] [[tcp] max_conns [emb_limit]] [udp udp_max_conns] [norandomseq]``."""
    max_conns = emb = udp = 0
    randomseq = True
    while not c.at_end():
        tok = c.peek_token()
        assert tok is not None
        if c.accept("norandomseq"):
            randomseq = False
        elif c.accept("dns"):
            p.warn(c.line, "the dns option (DNS reply rewriting) is not modelled; ignored")
        elif c.accept("udp"):
            udp = c.integer(0, 65535, "udp max connections")
        elif tok.word == "tcp" or tok.text.isdigit():
            c.accept("tcp")
            max_conns = c.integer(0, 65535, "tcp max connections")
            nxt = c.peek_token()
            if nxt is not None and nxt.text.isdigit():
                emb = c.integer(0, 65535, "embryonic limit")
        elif tok.word == "outside":
            raise objnat.NotModelledNat(
                "outside NAT",
                "translate the source addresses of traffic from the lower security level",
                tok.col,
            )
        else:
            raise c.error(tok, f"unexpected '{tok.text}'")
    return max_conns, emb, udp, randomseq


def _classful(addr: ipaddress.IPv4Address) -> int:
    """The ASA's default mask when a nat line gives none: the address class's."""
    first = int(addr) >> 24
    if int(addr) == 0:
        return 0
    return 8 if first < 128 else 16 if first < 192 else 24


def nat(p: Parser, c: Cursor) -> None:
    """``nat (inside) ID A [M] [options]`` | ``nat (inside) ID access-list ACL [options]``."""
    first, second = c.peek(), c.peek(1)
    if first is not None and (
        _PAIR.match(first) or first in ("source", "after-auto") or (first.isdigit() and second == "source")
    ):
        objnat.twice_nat(p, c)
        return
    ifc = _interface(p, c, "nat")
    nat_id = c.integer(0, MAX_NAT_ID, "nat id")
    real = acl = None
    if c.accept("access-list"):
        acl_tok = c.next("access-list name")
        _require_acl(p, c, acl_tok, "nat")
        acl = acl_tok.text
    else:
        addr_tok = c.next("real address")
        addr = c.ipv4_of(addr_tok, p.hosts)
        nxt = c.peek_token()
        if nxt is not None and (nxt.text == "0" or "." in nxt.text):
            prefix = c.netmask()
        else:
            prefix = _classful(addr)
        real = c.network(addr_tok, prefix, addr)
    try:
        max_conns, emb, udp, randomseq = _limits(p, c)
    except objnat.NotModelledNat as exc:
        objnat.not_applied(p, c, exc)
        return
    p.nat_items.append(
        NatLine(nat_id, ifc, real, acl, max_conns, emb, udp, randomseq, p.origin(c.line), c.line)
    )


def static(p: Parser, c: Cursor) -> None:
    """``static (real,mapped) [tcp|udp] MAPPED [MPORT] REAL [RPORT] | MAPPED access-list ACL``
    ``[netmask M] [options]``."""
    pair_tok = c.next("(real_interface,mapped_interface)")
    m = _PAIR.match(pair_tok.text)
    if not m:
        raise c.error(pair_tok, f"invalid interfaces '{pair_tok.text}' (expected (real,mapped))")
    real_ifc, mapped_ifc = m.groups()
    _require_interface(p, c, real_ifc, pair_tok, "static")
    _require_interface(p, c, mapped_ifc, pair_tok, "static")
    proto_word = c.accept("tcp", "udp")
    protocol = {"tcp": PROTO_TCP, "udp": PROTO_UDP}[proto_word.word] if proto_word else None
    mapped_tok = c.next("mapped address")
    mapped_addr = None if mapped_tok.word == "interface" else c.ipv4_of(mapped_tok, p.hosts)
    mapped_port = c.port(proto_word.word) if proto_word else None
    real_tok = real_addr = real_port = acl = None
    if c.accept("access-list"):
        acl_tok = c.next("access-list name")
        _require_acl(p, c, acl_tok, "static")
        acl = acl_tok.text
    else:
        real_tok = c.next("real address")
        real_addr = c.ipv4_of(real_tok, p.hosts)
        real_port = c.port(proto_word.word) if proto_word else None
    prefix = c.netmask() if c.accept("netmask") else 32
    try:
        max_conns, emb, udp, randomseq = _limits(p, c)
    except objnat.NotModelledNat as exc:
        raise c.error(c.line.tokens[-1], f"unexpected '{exc.feature.split()[0]}'") from None
    real = (c.network(real_tok, prefix, real_addr),) if real_tok is not None and real_addr is not None else ()
    mapped = (c.network(mapped_tok, prefix, mapped_addr),) if mapped_addr is not None else ()
    rule = NatRule(
        "static",
        real_ifc,
        mapped_ifc,
        real=real,
        mapped=mapped,
        pool=NatPool(interface=True) if mapped_addr is None else None,
        protocol=protocol,
        real_port=real_port,
        mapped_port=mapped_port,
        max_conns=max_conns,
        embryonic_limit=emb,
        udp_max_conns=udp,
        randomseq=randomseq,
        origin=p.origin(c.line),
        acl=acl,
    )
    _unique_mapping(p, c, rule, mapped_tok)
    p.nat_items.append(rule)


def _unique_mapping(p: Parser, c: Cursor, rule: NatRule, tok: Token) -> None:
    """The ASA refuses a static whose mapped address (and port) another static already maps to a
    different real address: a mapped address must lead to one host (Cisco ASA 8.2 configuration guide,
    "Configuring Static NAT")."""
    if not rule.mapped or not rule.real:
        return
    key = (rule.mapped_interface, rule.mapped[0], rule.protocol, rule.mapped_port)
    other = p.static_mapped.get(key)
    if other is not None and other.real != rule.real:
        raise c.error(
            tok,
            f"mapped address {rule.mapped[0].network_address} on {rule.mapped_interface} is already mapped "
            f"to {other.real[0].network_address} by line {other.origin.line}; a static cannot map it to "
            f"{rule.real[0].network_address} too",
        )
    p.static_mapped[key] = rule


def _pool(lines: list[GlobalLine]) -> NatPool:
    pool = NatPool(interface=any(g.first is None for g in lines), pat=False)
    for g in lines:
        if g.first is None or g.last is None:
            continue
        pool.ranges.append((g.first, g.last))
        pool.addresses.extend(ipaddress.summarize_address_range(g.first, g.last))
    # The interface address and single-address globals are shared by port (PAT); ranges are
    # handed out one address per host.
    pool.pat = pool.interface or any(first == last for first, last in pool.ranges)
    return pool


def finish(p: Parser) -> None:
    """Tie nat lines to globals by NAT id; keep (and warn about) the halves that have no partner."""
    globals_by_id: dict[int, list[GlobalLine]] = {}
    for g in p.nat_globals:
        globals_by_id.setdefault(g.nat_id, []).append(g)
    used: set[int] = set()
    for item in p.nat_items:
        if isinstance(item, NatRule):
            p.policy.nat_rules.append(item)
            continue
        assert isinstance(item, NatLine)
        real = (item.real,) if item.real is not None else ()
        common = dict(
            real=real,
            acl=item.acl,
            nat_id=item.nat_id,
            max_conns=item.max_conns,
            embryonic_limit=item.embryonic_limit,
            udp_max_conns=item.udp_max_conns,
            randomseq=item.randomseq,
            origin=item.origin,
        )
        if item.nat_id == 0:
            p.policy.nat_rules.append(NatRule("exempt", item.interface, None, **common))  # type: ignore[arg-type]
            continue
        lines = globals_by_id.get(item.nat_id)
        if not lines:
            p.warn(item.line, f"nat id {item.nat_id} has no global; this line translates nothing")
            p.keep(item.line)
            continue
        used.add(item.nat_id)
        for ifc in dict.fromkeys(g.interface for g in lines):
            mine = [g for g in lines if g.interface == ifc]
            p.policy.nat_rules.append(
                NatRule(
                    "dynamic",
                    item.interface,
                    ifc,
                    pool=_pool(mine),
                    pool_origins=tuple(g.origin for g in mine),
                    **common,  # type: ignore[arg-type]
                )
            )
    for g in p.nat_globals:
        if g.nat_id not in used:
            p.warn(g.line, f"global id {g.nat_id} is not used by any nat line")
            p.keep(g.line)


COMMANDS: dict[str, Handler] = {
    "global": global_,
    "nat": nat,
    "static": static,
}
