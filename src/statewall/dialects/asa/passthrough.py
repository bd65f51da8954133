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

from ...policy import Origin, Unmodelled
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
    "mac-address": HEAD,
    "nat-control": AFTER_MTU,  # "no nat-control" (the 8.x default) is kept; nat-control itself is modelled
    "community-list": BODY,
    "crashinfo": BODY,
    "sla": BODY,
    "track": BODY,
    "dns-group-map": AFTER_INTERFACES,
    "dns-group": AFTER_INTERFACES,
    "access-list": OBJECTS,
    "object-group": OBJECTS,
    "time-range": OBJECTS,
    "multicast-routing": BODY,
    "pim": BODY,
    "igmp": BODY,
    "vpn": BODY,
    "service-module": BODY,
    "quota": BODY,
    "hpm": BODY,
    "anyconnect": BODY,
    "sysopt": BODY,
    "compression": BODY,
    "tls-proxy": BODY,
    "phone-proxy": BODY,
    "ctl-file": BODY,
    "zone": BODY,
    "nve": BODY,
    "scansafe": BODY,
    "dynamic-filter": BODY,
    "url-server": BODY,
    "filter": BODY,
    "virtual": BODY,
    "auto-update": BODY,
    "mode": HEAD,
    "cluster": BODY,
    "xlate": BODY,
    "cts": BODY,
    # Further commands of 8.x/9.x running-configs.
    "vpn-addr-assign": BODY,
    "tunnel-group-map": BODY,
    "group-delimiter": BODY,
    "ldap": BODY,
    "dhcp-client": BODY,
    "tftp-server": BODY,
    "object-group-search": BODY,
    "forward-reference": BODY,
    "asp": BODY,
    "coredump": BODY,
    "checkheaps": BODY,
    "memory": BODY,
    "hw-module": BODY,
    "fips": BODY,
    "password-policy": BODY,
    "password": HEAD,
    "key": HEAD,
    "rest-api": BODY,
    "url-block": BODY,
    "url-cache": BODY,
    "mroute": BODY,
    "vxlan": BODY,
    "mac-address-table": BODY,
    "mac-learn": BODY,
    "pki": BODY,
    "crl": BODY,
}

# What a line of a kept command does to traffic through the box, by its first word(s): (feature, what a
# real ASA does). A command absent from here (and from the refinements in ``classify``) changes nothing
# for traffic through the box: management access, AAA for the box, SNMP, NTP, logging, banners, ...
AFFECTS: dict[str, tuple[str, str]] = {
    "crypto": ("VPN", "encrypt and decrypt the traffic of its tunnels"),
    "isakmp": ("VPN", "negotiate IPsec tunnels"),
    "webvpn": ("VPN", "terminate clientless and AnyConnect VPN sessions"),
    "group-policy": ("VPN", "apply VPN group policies (filters, split tunnels) to tunnel traffic"),
    "tunnel-group": ("VPN", "terminate VPN tunnels"),
    "vpdn": ("VPN", "run PPPoE/L2TP sessions"),
    "vpn-sessiondb": ("VPN", "limit VPN sessions"),
    "vpn": ("VPN", "apply VPN settings"),
    "anyconnect": ("VPN", "terminate AnyConnect sessions"),
    "dynamic-access-policy-record": ("VPN", "apply dynamic access policies to VPN sessions"),
    "failover": ("failover", "share connections and addresses with a standby unit"),
    "monitor-interface": ("failover", "fail over when the interface fails"),
    "cluster": ("clustering", "share traffic with the other units of a cluster"),
    "router": ("dynamic routing", "learn and advertise routes"),
    "route-map": ("dynamic routing", "filter and change routes"),
    "prefix-list": ("dynamic routing", "filter routes"),
    "community-list": ("dynamic routing", "match BGP communities"),
    "multicast-routing": ("multicast routing", "forward multicast traffic"),
    "pim": ("multicast routing", "run PIM"),
    "igmp": ("multicast routing", "track multicast group members"),
    "priority-queue": ("QoS", "queue priority traffic first"),
    "wccp": ("WCCP redirection", "redirect web traffic to a cache engine"),
    "dhcprelay": ("DHCP relay", "relay DHCP requests between interfaces"),
    "sla": ("route tracking", "withdraw tracked routes when their SLA monitor fails"),
    "track": ("route tracking", "withdraw tracked routes when their SLA monitor fails"),
    "fragment": ("fragment limits", "limit and reassemble fragments per interface"),
    "firewall": ("transparent firewall mode", "bridge between interfaces instead of routing"),
    "mode": ("multiple context mode", "split the box into security contexts"),
    "xlate": ("per-session PAT", "choose per-session or multi-session PAT"),
    "zone": ("traffic zones", "balance connections between the interfaces of a zone"),
    "tls-proxy": ("TLS proxy", "terminate and re-encrypt TLS"),
    "phone-proxy": ("phone proxy", "proxy IP phone traffic"),
    "scansafe": ("cloud web security", "redirect web traffic to the cloud service"),
    "dynamic-filter": ("botnet traffic filter", "drop traffic to known botnet addresses"),
    "url-server": ("URL filtering", "filter web traffic by URL"),
    "filter": ("URL/ActiveX/Java filtering", "filter web traffic"),
    "virtual": ("virtual HTTP/telnet", "authenticate through-traffic users"),
    "cts": ("TrustSec", "tag and filter traffic by security group"),
    "nve": ("VXLAN", "encapsulate traffic"),
    "quota": ("management session quota", "limit management sessions"),
    "compression": ("VPN", "compress tunnel traffic"),
    "vpn-addr-assign": ("VPN", "assign addresses to VPN clients"),
    "tunnel-group-map": ("VPN", "map certificates to tunnel groups"),
    "url-block": ("URL filtering", "filter web traffic by URL"),
    "url-cache": ("URL filtering", "filter web traffic by URL"),
    "mroute": ("multicast routing", "forward multicast traffic"),
    "vxlan": ("VXLAN", "encapsulate traffic"),
    "ctl-file": ("phone proxy", "proxy IP phone traffic"),
}


def classify(words: list[str]) -> tuple[str, str] | None:
    """(feature, action) when the kept line beginning with ``words`` affects traffic through the box but
    is not modelled; None when it has no effect on that traffic."""
    if not words:
        return None
    if words[0] == "no" and len(words) > 1:
        # "no X" turns a feature off or back to its default (no failover, no arp permit-nonconnected,
        # no threat-detection statistics ...); only VPN and connection options stay in play.
        if words[1] not in ("crypto", "isakmp", "sysopt"):
            return None
        words = words[1:]
    first = words[0]
    if first == "dynamic-access-policy-record" and words[1:] == ["dfltaccesspolicy"]:
        return None  # the factory default record, present in every configuration
    second = words[1] if len(words) > 1 else ""
    if first == "crypto" and second in ("ca", "key", "checksum", "engine", "logging"):
        return None  # the box's own certificates and keys
    if first == "aaa":
        if second in ("authentication", "authorization", "accounting") and "match" in words:
            return ("cut-through proxy AAA", "authenticate users before passing their traffic")
        if second == "authentication" and len(words) > 2 and words[2] in ("include", "exclude"):
            return ("cut-through proxy AAA", "authenticate users before passing their traffic")
        return None  # AAA for management sessions (ssh/telnet/http/console/enable)
    if first == "threat-detection":
        if "shun" in words:
            return ("threat-detection shun", "shun (block) hosts it finds scanning")
        return None  # statistics and rate monitoring only
    if first == "ip" and second in ("audit", "local"):
        return (
            ("IP audit signatures", "drop or reset traffic matching IPS signatures")
            if second == "audit"
            else ("VPN", "assign addresses to VPN clients")
        )
    if first == "ipv6":
        if second in ("icmp", "nd", "dhcprelay", "router", "neighbor") and second != "dhcprelay":
            return None
        return ("IPv6 settings", f"apply 'ipv6 {second}'")
    if first == "service" and second in ("resetinbound", "resetoutside", "resetoutbound"):
        return ("TCP resets for denied traffic", "send a RST for TCP packets its access lists deny")
    if first == "sysopt":
        return ("connection options", f"apply 'sysopt {' '.join(words[1:3])}'")
    if first == "access-list":
        return ("access-list " + (words[2] if len(words) > 2 else ""), "filter traffic with it")
    if first == "arp" and second == "permit-nonconnected":
        return ("ARP for non-connected subnets", "answer ARP for non-connected subnets")
    return AFFECTS.get(first)


# Recognised commands whose effect on forwarding statewall does not model yet: (section, feature).
NOT_MODELLED: dict[str, tuple[int, str]] = {
    "class-map": (MPF, "the modular policy framework"),
    "policy-map": (MPF, "the modular policy framework"),
    "tcp-map": (MPF, "the modular policy framework"),
    "service-policy": (MPF, "the modular policy framework"),
    "fragment": (BODY, "limit and reassemble fragments per interface"),
    "firewall": (HEAD, "bridge between interfaces instead of routing (transparent mode)"),
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
    """Keep this top-level line and the sub-lines that follow it; the sub-lines have the fate the
    top-level line had (set before this call)."""
    line = c.line
    block = _Block(line.words[0])
    p.keep(line)
    fate = p.fate

    def sub(p: Parser, c: Cursor) -> None:
        p.keep(c.line, block.depth(c.line))
        p.fate = fate

    p.open_mode(Mode(f"kept {block.head}", sub, block.accepts, block.on_exit))


def _kept(p: Parser, c: Cursor) -> None:
    words = c.line.words
    if words[0] == "no" and (len(words) < 2 or (words[1] not in KEPT and words[1] not in NOT_MODELLED)):
        p.gap(
            c.line,
            f"'{c.line.text}'",
            "remove or reset a setting",
            message=f"'{c.line.text}' is not supported (not modelled); ignored",
        )
        return
    kind = classify(words)
    if kind is None:
        p.no_effect()
    elif words[:2] == ["crypto", "map"]:
        _crypto_map(p, c)
    else:
        p.gap(c.line, kind[0], kind[1])
    keep_block(p, c)


def _crypto_map(p: Parser, c: Cursor) -> None:
    """``crypto map NAME SEQ match address ACL`` and ``crypto map NAME interface IFACE``: what a real ASA
    encrypts, recorded so that packet-tracer and replay can name the VPN a packet would enter."""
    tokens = c.line.tokens
    words = c.line.words
    name = tokens[2].text if len(tokens) > 2 else ""
    acl = iface = None
    if len(words) >= 6 and words[4:6] == ["match", "address"] and len(tokens) > 6:
        acl = tokens[6].text
        p.use(acl)
    elif len(words) >= 5 and words[3] == "interface":
        iface = tokens[4].text
    p.gap(
        c.line,
        f"VPN (crypto map {name})",
        "encrypt the traffic its access list selects and send it to the peer",
        acl=acl,
        interface=iface,
    )


def finish_crypto_maps(p: Parser) -> None:
    """One ``Unmodelled`` record per crypto map entry applied to an interface, with both its access list
    and its interface: the traffic a real ASA would encrypt."""
    applied: dict[str, str] = {}
    entries: list[tuple[str, str, Origin]] = []
    for u in p.policy.unmodelled:
        if not u.feature.startswith("VPN (crypto map "):
            continue
        name = u.feature.removeprefix("VPN (crypto map ").rstrip(")")
        if u.interface:
            applied[name] = u.interface
        elif u.acl:
            entries.append((name, u.acl, u.origin))
    for name, acl, origin in entries:
        if name in applied:
            p.policy.unmodelled.append(
                Unmodelled(
                    f"VPN (crypto map {name})",
                    f"encrypt traffic matching access-list {acl} and send it through {applied[name]}",
                    origin,
                    acl=acl,
                    interface=applied[name],
                )
            )


def _not_modelled(p: Parser, c: Cursor) -> None:
    word = c.line.words[0]
    p.gap(c.line, word, NOT_MODELLED[word][1])
    keep_block(p, c)


def keep_not_modelled(p: Parser, c: Cursor, what: str, action: str = "apply it to traffic") -> None:
    """A recognised line of a modelled command whose particular form is not modelled yet."""
    message = f"{what} is not modelled yet (a real ASA would {action}); kept as written"
    p.gap(c.line, what, action, message=message)
    keep_block(p, c)


def _enable(p: Parser, c: Cursor) -> None:
    # "enable password ..." is configuration; a bare "enable" is the exec command (parser handles it).
    keep_block(p, c)


COMMANDS: dict[str, Handler] = {
    **{word: _kept for word in KEPT},
    **{word: _not_modelled for word in NOT_MODELLED},
    "no": _kept,
}
