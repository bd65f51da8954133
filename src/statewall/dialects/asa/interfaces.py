"""ASA interfaces and routing: ``interface`` and its sub-mode, ``mtu``, ``route``, ``ipv6 route``.

An interface is configured by its hardware name and known to the rest of the configuration by its
``nameif``; records are kept by hardware name while parsing and become ``Policy.interfaces`` (by
nameif) or ``Policy.unnamed_interfaces`` at the end of the file.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...policy import Interface, Route
from . import passthrough
from .lexer import Cursor, Line, Token
from .modes import Handler, Mode

if TYPE_CHECKING:
    from .parser import Parser

_HARDWARE = re.compile(r"^[A-Za-z][A-Za-z-]*\d+(?:/\d+)*(?:\.\d+)?$")
_NAMEIF = re.compile(r"^[A-Za-z0-9][\w.\-]{0,47}$")
SPEEDS = ("auto", "10", "100", "1000", "10000", "nonegotiate")
DUPLEXES = ("auto", "full", "half")


@dataclass(slots=True)
class InterfaceRecord:
    itf: Interface
    level_set: bool = False  # security-level given explicitly (else "nameif inside" implies 100)


# Sub-commands recognised in interface mode when a transcript does not indent them. Those not in
# _SUBCOMMANDS are valid ASA interface commands that statewall does not model (warned, not kept).
_SUBCOMMANDS = frozenset(
    {"speed", "duplex", "nameif", "security-level", "shutdown", "description", "management-only", "vlan"}
)
_UNMODELLED = frozenset(
    {
        "mac-address",
        "channel-group",
        "nve-only",
        "pppoe",
        "delay",
        "ospf",
        "flowcontrol",
        "media-type",
        "member-interface",
        "lacp",
        "igmp",
        "pim",
        "rip",
        "authentication",
        "multicast",
        "switchport",
        "mode",
        "bridge-group",
        "zone-member",
        "port-channel",
        "hello-interval",
        "dead-interval",
        "encapsulation",
        "power",
        "dhcp",
        "dhcprelay",
        "nat-assigned",
        "policy-route",
    }
)
_IP_SUBCOMMANDS = {
    "ip": frozenset({"address", "ospf", "verify"}),
    "ipv6": frozenset({"address", "enable", "nd", "link-local", "ospf", "dhcp"}),
}
# What an interface sub-command that is kept but not modelled does: (feature, what a real ASA does).
_FEATURES = {
    "channel-group": ("EtherChannel membership", "carry this interface's traffic in a port-channel"),
    "member-interface": ("redundant interface membership", "carry the redundant interface's traffic"),
    "lacp": ("EtherChannel membership", "negotiate the port-channel"),
    "port-channel": ("EtherChannel settings", "balance traffic over the port-channel's members"),
    "switchport": ("switch port VLAN membership", "switch this port's traffic into its VLAN"),
    "pppoe": ("PPPoE", "run a PPPoE session on this interface"),
    "ospf": ("dynamic routing", "run OSPF on this interface"),
    "ip": ("dynamic routing", "run OSPF on this interface"),
    "eigrp": ("dynamic routing", "run EIGRP on this interface"),
    "rip": ("dynamic routing", "run RIP on this interface"),
    "pim": ("multicast routing", "run PIM on this interface"),
    "igmp": ("multicast routing", "track multicast members on this interface"),
    "multicast": ("multicast routing", "forward multicast on this interface"),
    "failover": ("failover", "fail over with this interface"),
    "bridge-group": ("transparent firewall mode", "bridge this interface"),
    "zone-member": ("traffic zones", "balance connections in its zone"),
    "encapsulation": ("802.1Q encapsulation", "tag this subinterface's frames"),
    "policy-route": ("policy-based routing", "route this interface's traffic by its route-map"),
}


def _accepts(line: Line) -> bool:
    words = line.words
    if words[0] == "no" and len(words) > 1:
        words = words[1:]
    if words[0] in _SUBCOMMANDS or words[0] in _UNMODELLED:
        return True
    return len(words) > 1 and words[1] in _IP_SUBCOMMANDS.get(words[0], ())


def interface(p: Parser, c: Cursor) -> None:
    tok = c.next("interface")
    if not _HARDWARE.match(tok.text):
        raise c.error(tok, f"invalid interface '{tok.text}'")
    c.end()
    rec = p.hardware.get(tok.text)
    if rec is None:
        rec = InterfaceRecord(Interface(name="", hardware=tok.text, origin=p.origin(c.line)))
        p.hardware[tok.text] = rec
    p.open_mode(Mode("interface", lambda p, c: _subcommand(p, c, rec), _accepts))


def _subcommand(p: Parser, c: Cursor, rec: InterfaceRecord) -> None:
    itf = rec.itf
    negate = c.accept("no") is not None
    word = c.next("interface command").word
    if word == "nameif":
        if negate:
            itf.name = ""
            return
        tok = c.next("interface name")
        if not _NAMEIF.match(tok.text):
            raise c.error(tok, f"invalid interface name '{tok.text}'")
        c.end()
        for other in p.hardware.values():
            if other is not rec and other.itf.name == tok.text:
                raise c.error(tok, f"nameif '{tok.text}' used twice")
        itf.name = tok.text
        if tok.text.lower() == "inside" and not rec.level_set:
            itf.security_level = 100  # the ASA's own default for an interface named inside
    elif word == "security-level":
        itf.security_level = 0 if negate else c.integer(0, 100, "security-level")
        rec.level_set = not negate
        c.end()
    elif word == "ip":
        if c.peek() != "address":
            _other(p, c, itf, "ip" if c.peek() == "ospf" else "ip-" + (c.peek() or ""))
            return
        c.keyword(("address",), "ip command")
        if negate:
            itf.ipv4, itf.standby_ipv4 = [], None
            return
        _ip_address(p, c, itf)
    elif word == "ipv6":
        _ipv6(p, c, itf, negate)
    elif word == "speed":
        p.no_effect()  # kept in the model and printed back; nothing statewall forwards depends on it
        itf.speed = None if negate else c.keyword(SPEEDS, "speed")
        c.end()
    elif word == "duplex":
        p.no_effect()
        itf.duplex = None if negate else c.keyword(DUPLEXES, "duplex")
        c.end()
    elif word == "description":
        p.no_effect()
        itf.description = None if negate else (c.rest() or None)
    elif word == "shutdown":
        c.end()
        itf.shutdown = not negate
    elif word == "management-only":
        c.end()
        itf.management_only = not negate
    elif word == "vlan":
        itf.vlan = None if negate else c.integer(1, 4094, "vlan")
        c.end()
    else:
        _other(p, c, itf, word)


def _other(p: Parser, c: Cursor, itf: Interface, word: str) -> None:
    """An interface sub-command kept as written: no effect on traffic through the box (mac-address,
    delay, flowcontrol, ...) or an effect statewall does not model (link aggregation, routing)."""
    c.rest()
    itf.other.append((p.origin(c.line), c.line.text))
    feature = _FEATURES.get(word)
    if feature is None:
        p.no_effect()
    else:
        p.gap(
            c.line,
            feature[0],
            feature[1],
            message=f"interface command '{c.line.text}' is not modelled ({feature[0]}); kept as written",
        )


def _ip_address(p: Parser, c: Cursor, itf: Interface) -> None:
    if c.peek() in ("dhcp", "pppoe"):
        source = c.next("address source").word
        if c.accept("setroute"):
            source += " setroute"
        c.end()
        itf.address_source = source
        p.gap(
            c.line,
            f"ip address {source}",
            "learn this interface's address (and with setroute a default route) at run time",
            message=f"ip address {source} is not modelled: statewall does not know this interface's address",
        )
        return
    addr_tok = c.next("IP address")
    addr = c.ipv4_of(addr_tok)
    prefix = c.netmask()
    standby = None
    if c.accept("standby"):
        standby = c.ipv4("standby address")
    c.end()
    itf.ipv4 = [ipaddress.IPv4Interface((addr, prefix))]
    itf.standby_ipv4 = standby


def _ipv6(p: Parser, c: Cursor, itf: Interface, negate: bool) -> None:
    sub = c.keyword(("address", "enable", "nd", "link-local", "ospf", "dhcp"), "ipv6 command")
    if sub == "enable":
        c.end()
        itf.ipv6_enable = not negate
        return
    if sub != "address":
        _other(p, c, itf, "ipv6-" + sub)
        return
    tok = c.next("IPv6 address")
    if c.peek() == "link-local":
        # "ipv6 address fe80::1 link-local": the link-local address is on a /64.
        c.next("link-local")
        c.end()
        try:
            value = ipaddress.IPv6Interface(f"{tok.text}/64")
        except ValueError:
            raise c.error(tok, f"invalid IPv6 address '{tok.text}'") from None
        if not value.ip.is_link_local:
            raise c.error(tok, f"'{tok.text}' is not a link-local address")
    else:
        value = c.ipv6_prefix_of(tok)
        if c.accept("standby"):
            c.ipv6("standby address")  # failover only; the active unit's behaviour is unchanged
        c.end()
    if negate:
        itf.ipv6 = [a for a in itf.ipv6 if a != value]
    elif value not in itf.ipv6:
        itf.ipv6.append(value)


def mtu(p: Parser, c: Cursor) -> None:
    name_tok = c.next("interface name")
    value = c.integer(64, 65535, "mtu")
    c.end()

    def apply() -> bool:
        itf = p.policy.interfaces.get(name_tok.text)
        if itf is None:
            return False
        itf.mtu = value
        return True

    p.require(apply, c.error(name_tok, f"mtu refers to unknown interface '{name_tok.text}'"))


def _require_interface(p: Parser, c: Cursor, tok: Token, command: str) -> None:
    p.require(
        lambda: tok.text in p.policy.interfaces,
        c.error(tok, f"{command} refers to unknown interface '{tok.text}'"),
    )


def route(p: Parser, c: Cursor) -> None:
    option = None
    ifc = c.next("interface name")
    if ifc.word == "null0":
        c.rest()
        p.gap(c.line, "null0 route", "drop traffic to this network (black hole)")
        p.keep(c.line)
        return
    addr_tok = c.next("network")
    addr = c.ipv4_of(addr_tok, p.hosts)
    network = c.network(addr_tok, c.netmask(), addr)
    gateway = c.ipv4("gateway", p.hosts)
    distance = 1
    tok = c.peek_token()
    if tok is not None and tok.text.isdigit():
        distance = c.integer(1, 255, "distance")
    if c.peek() in ("track", "tunneled"):
        tok = c.peek_token()
        p.gap(
            c.line,
            f"route {c.peek()}",
            "withdraw the route when its tracked object fails"
            if c.peek() == "track"
            else "route VPN traffic",
            col=tok.col if tok else None,
            message=f"route option '{c.peek()}' is not modelled; the route is always installed",
        )
        option = c.rest()
    c.end()
    _require_interface(p, c, ifc, "route")
    p.policy.routes.append(Route(ifc.text, network, gateway, distance, p.origin(c.line), option))


def ipv6(p: Parser, c: Cursor) -> None:
    """Top-level ``ipv6``: ``ipv6 route`` is modelled; the rest does not affect forwarding."""
    if c.peek() != "route":
        passthrough.COMMANDS["ipv6"](p, c)  # kept, with its fate
        return
    c.next("route")
    ifc = c.next("interface name")
    tok, prefix = c.ipv6_prefix("IPv6 prefix")
    if prefix.network.network_address != prefix.ip:
        raise c.error(tok, f"prefix '{tok.text}' has bits outside its length")
    gateway = c.ipv6("gateway")
    distance = 1
    if not c.at_end():
        distance = c.integer(1, 254, "distance")
    c.end()
    _require_interface(p, c, ifc, "ipv6 route")
    p.policy.routes.append(Route(ifc.text, prefix.network, gateway, distance, p.origin(c.line)))


def finish(p: Parser) -> None:
    """Interfaces by nameif; unnamed ones are kept apart (they pass no traffic)."""
    for rec in p.hardware.values():
        if rec.itf.name:
            p.policy.interfaces[rec.itf.name] = rec.itf
        else:
            p.policy.unnamed_interfaces.append(rec.itf)
    # In the order a running-config prints them, so that printing and reading back keeps the list.
    p.policy.unnamed_interfaces.sort(key=lambda i: i.hardware)


COMMANDS: dict[str, Handler] = {
    "interface": interface,
    "mtu": mtu,
    "route": route,
    "ipv6": ipv6,
}
