"""ASA commands kept verbatim: valid lines that do not affect forwarding, and recognised features that
statewall does not model yet.

Owns the list of such commands, the sub-mode lines that belong to them (a ``class-map`` block, a
``tunnel-group`` block), and where each block is printed back in a running-config (its *section*):
``Policy.passthrough`` holds the blocks ordered by section, so that printing and re-reading a
configuration gives the same list. A feature that becomes modelled (the modular policy framework:
``class-map``, ``policy-map``, ``tcp-map``, ``service-policy``) moves out of ``NOT_MODELLED`` into its
own command module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ...policy import Origin
from .lexer import Cursor, Line
from .modes import Handler, Mode

if TYPE_CHECKING:
    from .parser import Parser

# Sections, in the order a running-config prints them (render.py places each between modelled parts).
HEAD = 0  # after hostname, before the interfaces
AFTER_INTERFACES = 1
OBJECTS = 2  # object definitions statewall does not model, before the access lists that use them
AFTER_ACLS = 3  # before the mtu lines
AFTER_MTU = 4
NAT = 5  # after global / nat / static
BODY = 6  # after routes and timeouts: management, AAA, VPN, ...
MPF = 7  # class-map, policy-map, service-policy
TAIL = 8

# Valid commands that do not affect forwarding through the box.
KEPT: dict[str, int] = {
    "enable": HEAD,
    "passwd": HEAD,
    "domain-name": HEAD,
    "banner": HEAD,
    "names": HEAD,
    "name": HEAD,
    "boot": AFTER_INTERFACES,
    "ftp": AFTER_INTERFACES,
    "clock": AFTER_INTERFACES,
    "dns": AFTER_INTERFACES,
    "dns-guard": AFTER_INTERFACES,
    "pager": AFTER_ACLS,
    "logging": AFTER_ACLS,
    "failover": AFTER_MTU,
    "monitor-interface": AFTER_MTU,
    "icmp": AFTER_MTU,
    "asdm": AFTER_MTU,
    "arp": AFTER_MTU,
    "global": NAT,
    "nat": NAT,
    "ip": BODY,
    "ipv6": BODY,
    "aaa": BODY,
    "aaa-server": BODY,
    "http": BODY,
    "snmp-server": BODY,
    "crypto": BODY,
    "isakmp": BODY,
    "telnet": BODY,
    "ssh": BODY,
    "console": BODY,
    "threat-detection": BODY,
    "webvpn": BODY,
    "group-policy": BODY,
    "tunnel-group": BODY,
    "username": BODY,
    "dhcpd": BODY,
    "dhcprelay": BODY,
    "ntp": BODY,
    "vpdn": BODY,
    "vpn-sessiondb": BODY,
    "dynamic-access-policy-record": BODY,
    "management-access": BODY,
    "call-home": BODY,
    "smtp-server": BODY,
    "privilege": BODY,
    "service": BODY,
    "license": BODY,
    "ssl": BODY,
    "user-identity": BODY,
    "jumbo-frame": BODY,
    "auth-prompt": BODY,
    "priority-queue": BODY,
    "regex": BODY,
    "route-map": BODY,
    "router": BODY,
    "prefix-list": BODY,
    "wccp": BODY,
    "flow-export": BODY,
    "terminal": BODY,
    "prompt": TAIL,
}

# Recognised commands whose effect on forwarding statewall does not model yet: (section, feature).
NOT_MODELLED: dict[str, tuple[int, str]] = {
    "class-map": (MPF, "the modular policy framework"),
    "policy-map": (MPF, "the modular policy framework"),
    "tcp-map": (MPF, "the modular policy framework"),
    "service-policy": (MPF, "the modular policy framework"),
    "sysopt": (BODY, "TCP MSS adjustment and other connection options"),
    "nat-control": (AFTER_MTU, "NAT required for every outbound flow"),
    "firewall": (HEAD, "transparent firewall mode"),
    # Multicast is dropped as on an ASA without multicast routing (statewall.addrclass).
    "multicast-routing": (AFTER_MTU, "multicast routing: multicast is dropped as without it"),
}

# Sub-commands of the blocks above, for pasted transcripts that do not indent them.
_POLICY_MAP_TOP = frozenset({"class", "parameters", "description", "match"})
SUBCOMMANDS: dict[str, frozenset[str]] = {
    "object-group": frozenset(
        {"port-object", "service-object", "protocol-object", "icmp-object", "group-object", "description"}
    ),
    "object": frozenset({"service", "description"}),
    "class-map": frozenset({"match", "description"}),
    "tcp-map": frozenset(
        {
            "check-retransmission",
            "checksum-verification",
            "description",
            "exceed-mss",
            "invalid-ack",
            "queue-limit",
            "reserved-bits",
            "seq-past-window",
            "syn-data",
            "synack-data",
            "tcp-options",
            "ttl-evasion-protection",
            "urgent-flag",
            "window-variation",
            "no",
        }
    ),
    "policy-map": _POLICY_MAP_TOP
    | frozenset(
        {
            "set",
            "inspect",
            "police",
            "priority",
            "shape",
            "user-statistics",
            "flow-export",
            "ips",
            "csc",
            "drop",
            "drop-connection",
            "reset",
            "log",
            "message-length",
            "mask-banner",
            "mask-syst-reply",
            "no",
        }
    ),
}


def section(text: str) -> int:
    """Where a kept block whose first line is ``text`` prints in a running-config."""
    words = text.lower().split()
    word = words[1] if words[0] == "no" and len(words) > 1 else words[0]
    if word in ("object", "object-group"):
        # Object NAT ("object network X" / " nat ...") prints with the NAT lines; other objects
        # print before the access lists.
        return NAT if words[:2] == ["object", "network"] else OBJECTS
    if word == "access-list":
        return OBJECTS
    if word in KEPT:
        return KEPT[word]
    if word in NOT_MODELLED:
        return NOT_MODELLED[word][0]
    return BODY


def ordered(blocks: Iterable[list[tuple[Origin, str]]]) -> list[tuple[Origin, str]]:
    """Blocks flattened in section order (stable), the order in which they are printed back."""
    out: list[tuple[Origin, str]] = []
    for block in sorted(blocks, key=lambda b: section(b[0][1])):
        out.extend(block)
    return out


def blocks_of(passthrough: list[tuple[Origin, str]]) -> list[list[tuple[Origin, str]]]:
    """``Policy.passthrough`` split back into blocks (a top-level line and its indented sub-lines)."""
    out: list[list[tuple[Origin, str]]] = []
    for entry in passthrough:
        if entry[1].startswith(" ") and out:
            out[-1].append(entry)
        else:
            out.append([entry])
    return out


class _Block:
    """Sub-lines of a kept block, indented as the ASA prints them (one blank per level)."""

    def __init__(self, head: str) -> None:
        self.head = head
        self.words = SUBCOMMANDS.get(head)
        self.indents: list[int] = []  # indentation stack of a running-config block
        self.context = 1  # policy-map: 2 inside a "class" (or "parameters") sub-mode

    def accepts(self, line: Line) -> bool:
        if self.words is None:
            # Blocks of commands we only keep: sub-lines are those a running-config indents or a
            # transcript's prompt shows in a sub-mode.
            return line.prompt_mode not in (None, "", "config")
        first = line.words[0]
        return first in self.words or (first == "no" and len(line.words) > 1 and line.words[1] in self.words)

    def depth(self, line: Line) -> int:
        if line.indent > 0:
            while self.indents and self.indents[-1] >= line.indent:
                self.indents.pop()
            self.indents.append(line.indent)
            return len(self.indents)
        if line.prompt_mode:
            # config-pmap-c / config-pmap-p: the class or parameters level inside a policy-map.
            return 2 if line.prompt_mode.endswith(("-c", "-p")) else 1
        if self.head == "policy-map":
            if line.words[0] in _POLICY_MAP_TOP:
                self.context = 2
                return 1
            return self.context
        return 1

    def on_exit(self, line: Line) -> bool:
        if line.prompt_mode:
            return not line.prompt_mode.endswith(("-c", "-p"))
        if self.context == 2:
            self.context = 1
            return False
        return True


def keep_block(p: Parser, c: Cursor) -> None:
    """Keep this top-level line and the sub-lines that follow it."""
    line = c.line
    block = _Block(line.words[0])
    p.keep(line)

    def sub(p: Parser, c: Cursor) -> None:
        p.keep(c.line, block.depth(c.line))

    p.open_mode(Mode(f"kept {block.head}", sub, block.accepts, block.on_exit))


def _kept(p: Parser, c: Cursor) -> None:
    words = c.line.words
    if words[0] == "no" and (len(words) < 2 or (words[1] not in KEPT and words[1] not in NOT_MODELLED)):
        p.warn(c.line, f"'{c.line.text}' is not supported; ignored")
        return
    keep_block(p, c)


def _not_modelled(p: Parser, c: Cursor) -> None:
    word = c.line.words[0]
    p.warn(c.line, f"{word} is not modelled yet ({NOT_MODELLED[word][1]}); kept as written")
    keep_block(p, c)


def keep_not_modelled(p: Parser, c: Cursor, what: str) -> None:
    """A recognised line of a modelled command whose particular form is not modelled yet."""
    p.warn(c.line, f"{what} is not modelled yet; kept as written")
    keep_block(p, c)


def _enable(p: Parser, c: Cursor) -> None:
    # "enable password ..." is configuration; a bare "enable" is the exec command (parser handles it).
    keep_block(p, c)


COMMANDS: dict[str, Handler] = {
    **{word: _kept for word in KEPT},
    **{word: _not_modelled for word in NOT_MODELLED},
    "no": _kept,
}
