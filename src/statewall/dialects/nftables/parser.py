"""An nftables ruleset (``nft list ruleset`` output, ``nft -f`` files) into the neutral model.

Owns the grammar statewall reads and what each piece becomes:

- ``flush ruleset``; ``table ip|ip6|inet NAME { ... }`` (other families are refused: they do not
  filter routed IP traffic); ``define``/``$NAME``.
- ``chain NAME { type filter|nat|route hook H priority P; policy accept|drop; ... }`` becomes an
  ``NfChain`` with ``kind``, ``hook`` and ``priority`` (the names raw, mangle, dstnat, filter,
  security, srcnat with ``+ N``/``- N``, or a number); a chain without ``type`` is a regular chain.
- ``set NAME { type ipv4_addr|ipv6_addr|inet_service; [flags interval;] [elements = { ... }] }``
  becomes an ``NfSet`` (``@NAME`` in a rule is ``-m set``); ``ct helper NAME { type "ftp" protocol
  tcp; }`` an object ``ct helper set "NAME"`` attaches.
- A rule becomes an ``NfRule``: its matches (``iifname``, ``oifname``, ``ip``/``ip6 saddr``/``daddr``
  with prefixes, ranges, anonymous and named sets, ``ip protocol``, ``meta l4proto``, ``meta
  nfproto``, ``tcp``/``udp sport``/``dport``, ``tcp flags``, ``icmp``/``icmpv6 type``, ``ct state``,
  ``ct status``, ``ct mark``, ``meta mark``, ``meta pkttype``, ``fib daddr type``, ``ct helper``,
  ``limit rate``, ``!=``) in ``Match`` and extensions as the iptables dialect keys them; its
  statements (``counter``, ``log``, ``meta mark set``, ``ct mark set``, ``tcp option maxseg size set
  N | rt mtu``, ``notrack``, ``ct helper set``) in ``statements``; its verdict (``accept``, ``drop``,
  ``reject``, ``return``, ``jump``, ``goto``, ``snat``, ``dnat``, ``masquerade``, ``redirect``) as
  the target.

Also read: sets by key type and concatenations, timeouts, ``add``/``update @set`` and meters
(``statewall.nft_sets`` runs them), data maps, ``th``, ``limit rate over`` and byte limits, ``log
group``, flowtables and ``flow add``, ``ct timeout`` objects, netdev (and inet) ingress chains, and
the command forms of ``nft -f`` scripts (``add``/``insert`` ...). Anything else (``queue``, ``fwd``,
other stateful objects, the arp and bridge families' rules) is refused as ``file:line:col: ... is
not modelled``, and nothing is returned.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

from ...policy import (
    NF_CT_TIMEOUT_STATES,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    Match,
    NfChain,
    NfCtTimeout,
    NfExtension,
    NfFlowtable,
    NfRule,
    NfTable,
    Origin,
    Policy,
    PortMatch,
    Warning_,
)
from ..errors import ConfigError, ConfigErrors
from ..iptables import names
from .lexer import Token, tokens
from .sets import SetSyntax

HOOKS = {
    "prerouting": "PREROUTING",
    "input": "INPUT",
    "forward": "FORWARD",
    "output": "OUTPUT",
    "postrouting": "POSTROUTING",
}
# nft's priority names (src/rule.c std_prios): the kernel's NF_IP_PRI_* numbers.
PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
_NAMED_HOOK = {"dstnat": "prerouting", "srcnat": "postrouting"}
# A NAT statement's bracketed IPv6 address or range, and its ports: [a], [a]:p, [a]-[b]:p-q.
_BRACKETED = re.compile(r"\[([^\]]+)\](?:-\[([^\]]+)\])?(?::(.+))?$")
# Where the kernel runs each NAT statement (the hooks its validate function allows).
_NAT_HOOKS = {
    "snat": ("POSTROUTING", "INPUT"),
    "dnat": ("PREROUTING", "OUTPUT"),
    "redirect": ("PREROUTING", "OUTPUT"),
    "masquerade": ("POSTROUTING",),
}
# The kernel's nat chains run after conntrack (NF_IP_PRI_CONNTRACK, -200): nft_chain_validate_hooks
# refuses a nat chain at or before it (EOPNOTSUPP).
NAT_PRIORITY_MIN = -200
FAMILIES = ("ip", "ip6", "inet")
TCP_FLAG_BITS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ecn": 64, "cwr": 128}
CT_STATES = {
    "new": "NEW",
    "established": "ESTABLISHED",
    "related": "RELATED",
    "invalid": "INVALID",
    "untracked": "UNTRACKED",
}
ICMP_NAMES = {
    "echo-reply": 0,
    "destination-unreachable": 3,
    "source-quench": 4,
    "redirect": 5,
    "echo-request": 8,
    "router-advertisement": 9,
    "router-solicitation": 10,
    "time-exceeded": 11,
    "parameter-problem": 12,
    "timestamp-request": 13,
    "timestamp-reply": 14,
}
ICMPV6_NAMES = {
    "destination-unreachable": 1,
    "packet-too-big": 2,
    "time-exceeded": 3,
    "parameter-problem": 4,
    "echo-request": 128,
    "echo-reply": 129,
    "mld-listener-query": 130,
    "mld-listener-report": 131,
    "nd-router-solicit": 133,
    "nd-router-advert": 134,
    "nd-neighbor-solicit": 135,
    "nd-neighbor-advert": 136,
    "nd-redirect": 137,
    "router-renumbering": 138,
    "ind-neighbor-solicit": 141,
    "ind-neighbor-advert": 142,
    "mld2-listener-report": 143,
    "mld-listener-done": 132,
}
# nft's ICMP and ICMPv6 code names (icmp_code_tbl, icmpv6_code_tbl).
ICMP_CODES = {
    "net-unreachable": 0,
    "host-unreachable": 1,
    "prot-unreachable": 2,
    "port-unreachable": 3,
    "frag-needed": 4,
    "net-prohibited": 9,
    "host-prohibited": 10,
    "admin-prohibited": 13,
}
ICMPV6_CODES = {
    "no-route": 0,
    "admin-prohibited": 1,
    "addr-unreachable": 3,
    "port-unreachable": 4,
    "policy-fail": 5,
    "reject-route": 6,
}
# reject with icmp[x] type NAME -> the iptables reject type the model keeps.
REJECT_ICMP = {
    "net-unreachable": "icmp-net-unreachable",
    "host-unreachable": "icmp-host-unreachable",
    "prot-unreachable": "icmp-proto-unreachable",
    "port-unreachable": "icmp-port-unreachable",
    "net-prohibited": "icmp-net-prohibited",
    "host-prohibited": "icmp-host-prohibited",
    "admin-prohibited": "icmp-admin-prohibited",
}
REJECT_ICMPV6 = {
    "no-route": "icmp6-no-route",
    "admin-prohibited": "icmp6-adm-prohibited",
    "addr-unreachable": "icmp6-addr-unreachable",
    "port-unreachable": "icmp6-port-unreachable",
    "policy-fail": "icmp6-policy-fail",
    "reject-route": "icmp6-reject-route",
}
# reject with icmpx type NAME (nft's family-independent codes).
REJECT_ICMPX = {
    "port-unreachable": "icmp-port-unreachable",
    "admin-prohibited": "icmp-admin-prohibited",
    "no-route": "icmp-net-unreachable",
    "host-unreachable": "icmp-host-unreachable",
}
REJECT_ICMPX6 = {
    "port-unreachable": "icmp6-port-unreachable",
    "admin-prohibited": "icmp6-adm-prohibited",
    "no-route": "icmp6-no-route",
    "host-unreachable": "icmp6-addr-unreachable",
}
_END = frozenset({"\n", ";", "}"})
_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
_BYTE_UNITS = {"bytes": 1, "kbytes": 1024, "mbytes": 1024 * 1024}
_VERDICTS = frozenset({"accept", "drop", "return", "jump", "goto", "continue"})


@dataclass(slots=True)
class _Rule:
    """A rule being read: what becomes the NfRule."""

    fields: dict = field(default_factory=dict)
    extensions: list[NfExtension] = field(default_factory=list)
    statements: list[tuple[str, dict]] = field(default_factory=list)
    target: str = ""
    target_args: dict = field(default_factory=dict)
    goto: bool = False
    counter: bool = False
    counters: tuple[int, int] = (0, 0)
    family: int | None = None
    comment: str | None = None
    implied_nfproto: bool = False


class Parser(SetSyntax):
    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.toks = tokens(text, file)
        self.i = 0
        self.lines = text.split("\n")
        self.policy = Policy(dialect="nftables", source_file=file)
        self.helpers: dict[str, str] = {}
        self.jumps: list[tuple[NfTable, str, Token]] = []
        # Each NAT statement (table, chain, its word): where the kernel allows it (check_nat_hooks).
        self.nat_uses: list[tuple[NfTable, str, Token]] = []
        self.errors: list[ConfigError] = []
        self.ipsec_said = False  # the warning that IPsec is not modelled, given once

    # -- tokens ------------------------------------------------------------------------------------

    def peek(self, skip_newlines: bool = False) -> Token | None:
        if skip_newlines:
            while self.i < len(self.toks) and self.toks[self.i].newline:
                self.i += 1
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self, what: str = "more") -> Token:
        tok = self.peek()
        if tok is None:
            last = self.toks[-1] if self.toks else Token("", 1, 1)
            raise ConfigError(self.file, last.line, last.col, f"unexpected end of file ({what} expected)")
        self.i += 1
        return tok

    def expect(self, text: str) -> Token:
        tok = self.next(repr(text))
        if tok.text != text or tok.quoted:
            raise self.error(tok, f"{text!r} expected, not {tok.text!r}")
        return tok

    def error(self, tok: Token, message: str) -> ConfigError:
        return ConfigError(self.file, tok.line, tok.col, message)

    def not_modelled(self, tok: Token, what: str | None = None) -> ConfigError:
        return self.error(tok, f"nft: {what or repr(tok.text)} is not modelled by statewall")

    def origin(self, tok: Token) -> Origin:
        text = self.lines[tok.line - 1].strip() if 0 < tok.line <= len(self.lines) else ""
        return Origin(self.file, tok.line, text)

    def at_end(self) -> bool:
        tok = self.peek()
        return tok is None or (tok.text in _END and not tok.quoted)

    # -- the file ----------------------------------------------------------------------------------

    def run(self) -> Policy:
        """Read the whole ruleset; every error found is raised at the end, in file order
        (``ConfigErrors``), and nothing is returned then. After an error the reader resumes at the next
        rule, the next statement of the table, or the next command (``failed``)."""
        while True:
            tok = self.peek(skip_newlines=True)
            if tok is None:
                break
            start = self.i
            try:
                self.top_level()
            except ConfigError as exc:
                self.failed(exc, start)
        for table in self.policy.nft_tables:
            try:
                self.check_nat_hooks(table, self.check_jumps(table))
            except ConfigError as exc:
                self.errors.extend(exc.errors)
        if self.errors:
            raise ConfigErrors(self.errors, self.policy.warnings)
        return self.policy

    def failed(self, exc: ConfigError, start: int) -> None:
        """Keep ``exc`` and go on after the statement that began at token ``start``: up to the end of
        its line at brace depth 0 (past the blocks and anonymous sets it opened: a rule's ``{ a, b }``
        does not end it); a ``}`` of an enclosing block is left for that block."""
        self.errors.extend(exc.errors)
        depth = 0
        i = start
        toks = self.toks
        while i < len(toks):
            t = toks[i]
            if not t.quoted:
                if t.text == "{":
                    depth += 1
                elif t.text == "}":
                    if depth == 0:
                        break
                    depth -= 1
                elif t.text in ("\n", ";") and depth == 0 and i > start:
                    i += 1
                    break
            i += 1
        self.i = min(max(i, start + 1), len(toks))

    def top_level(self) -> None:
        """One top-level statement: a table block, ``flush``, or a command."""
        tok = self.peek(skip_newlines=True)
        assert tok is not None
        self.i += 1
        if tok.text == ";":
            return
        if tok.text == "flush":
            what = self.next("ruleset")
            if what.text == "ruleset":
                self.policy.nft_tables.clear()
                self.policy.nf_sets.clear()
            else:
                self.flush(tok, what)
        elif tok.text == "table":
            self.table(tok)
        elif tok.text in ("add", "create", "insert"):
            self.command(tok)
        elif tok.text in ("chain", "rule", "set", "map", "element", "flowtable"):
            self.i -= 1  # "chain inet f c { ... }": nft's add without the word
            self.command(tok)
        elif tok.text in ("delete", "destroy", "replace", "reset", "include", "list", "rename"):
            raise self.not_modelled(tok, f"the {tok.text} command")
        else:
            raise self.error(tok, f"table, flush ruleset or define expected, not {tok.text!r}")

    # -- the command forms (nft -f scripts: add table, add chain, add rule, insert rule, ...) --------

    def family_table(self, what: Token, create: bool = False) -> NfTable:
        """``[FAMILY] TABLE`` (the family ip when unsaid, as nft takes it)."""
        fam = self.next("a family or a table")
        if fam.text in FAMILIES or fam.text in ("arp", "bridge", "netdev"):
            if fam.text not in FAMILIES and fam.text != "netdev":
                raise self.not_modelled(fam, f"the {fam.text} family in a command")
            name = self.next("a table name")
            family = fam.text
        else:
            name, family = fam, "ip"
        table = next((t for t in self.policy.nft_tables if t.family == family and t.name == name.text), None)
        if table is None:
            if not create:
                raise self.error(
                    name, f"table {family} {name.text} does not exist (No such file or directory)"
                )
            table = NfTable(name.text, origin=self.origin(name), family=family)
            self.policy.nft_tables.append(table)
        return table

    def command(self, verb: Token) -> None:
        """``add|create|insert OBJECT ...``: what a table block declares, one object a line."""
        what = self.next("table, chain, rule, set, map, element or flowtable")
        if what.text == "table":
            start = self.i
            fam = self.next("a family or a table")
            if fam.text in ("arp", "bridge") or self.peek() is None or self.peek().text != "{":
                self.i = start
                table = self.family_table(what, create=True)
                if self.peek() is not None and self.peek().text == "{":
                    self.i = start
                    self.table(what)
                return
            self.i = start
            if fam.text not in FAMILIES:
                # "add table NAME { ... }": the ip family.
                self.toks.insert(self.i, Token("ip", fam.line, fam.col))
            self.table(what)
            return
        table = self.family_table(what)
        if what.text == "chain":
            name = self.toks[self.i] if self.i < len(self.toks) else None
            nxt = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
            if name is not None and (nxt is None or nxt.text != "{"):
                self.i += 1
                if name.text in table.chains:
                    if verb.text == "create":
                        raise self.error(name, f"chain {name.text} already exists (File exists)")
                    return
                table.chains[name.text] = NfChain(name.text, None, origin=self.origin(name))
                return
            self.chain(table, exists_ok=verb.text != "create")
        elif what.text == "rule":
            name = self.next("a chain")
            chain = table.chains.get(name.text)
            if chain is None:
                raise self.error(
                    name,
                    f"chain {name.text} does not exist in table {table.name} (No such file or directory)",
                )
            nxt = self.peek()
            if nxt is not None and nxt.text in ("position", "handle", "index"):
                raise self.not_modelled(nxt, f"rule {nxt.text} (rules are placed in order)")
            rule = self.rule(table, chain)
            if verb.text == "insert":
                chain.rules.insert(0, rule)
            else:
                chain.rules.append(rule)
        elif what.text == "set":
            self.set_(table)
        elif what.text == "map":
            self.named_vmap(table)
        elif what.text == "flowtable":
            self.flowtable(table)
        elif what.text == "element":
            self.add_elements(table)
        elif what.text == "ct":
            self.ct_object(table, what)
        else:
            raise self.not_modelled(what, f"{verb.text} {what.text}")

    def flush(self, tok: Token, what: Token) -> None:
        """``flush table|chain|set ...``: their rules or elements go (``flush ruleset`` is above)."""
        if what.text == "table":
            table = self.family_table(what)
            for chain in table.chains.values():
                chain.rules.clear()
        elif what.text == "chain":
            table = self.family_table(what)
            name = self.next("a chain")
            chain = table.chains.get(name.text)
            if chain is None:
                raise self.error(name, f"chain {name.text} does not exist in table {table.name}")
            chain.rules.clear()
        elif what.text in ("set", "map"):
            table = self.family_table(what)
            name = self.next("a set")
            s = self.policy.nf_sets.get(f"{table.family} {table.name} {name.text}")
            if s is None:
                raise self.error(name, f"{what.text} {name.text} does not exist in table {table.name}")
            s.members.clear()
            s.text.clear()
            s.timeouts.clear()
            s.values.clear()
        else:
            raise self.not_modelled(what, f"flush {what.text}")

    def table(self, start: Token) -> None:
        fam = self.next("a family")
        if fam.text not in FAMILIES and fam.text != "netdev":
            if fam.text in ("arp", "bridge"):
                # Not routed IP traffic: said, and skipped as a whole.
                name = self.next("a table name")
                self.expect("{")
                depth = 1
                while depth:
                    tok = self.next("'}'")
                    if not tok.quoted:
                        depth += {"{": 1, "}": -1}.get(tok.text, 0)
                self.policy.warnings.append(
                    Warning_(
                        self.origin(start),
                        f"table {fam.text} {name.text}: the {fam.text} family is not modelled "
                        "(statewall filters routed IP traffic); its rules are ignored",
                    )
                )
                return
            raise self.error(fam, f"table family {fam.text!r}: ip, ip6, inet or netdev")
        name = self.next("a table name")
        table = next(
            (t for t in self.policy.nft_tables if t.family == fam.text and t.name == name.text), None
        )
        if table is None:
            table = NfTable(name.text, origin=self.origin(start), family=fam.text)
            self.policy.nft_tables.append(table)
        self.expect("{")
        for tok in self.statements(start, "table"):
            at = self.i - 1
            try:
                self.table_statement(table, tok)
            except ConfigError as exc:
                self.failed(exc, at)

    def table_statement(self, table: NfTable, tok: Token) -> None:
        """One statement of a table block: a chain, set, map, flowtable or ct object."""
        if tok.text == "chain":
            self.chain(table)
        elif tok.text == "set":
            self.set_(table)
        elif tok.text == "ct":
            self.ct_object(table, tok)
        elif tok.text == "comment":
            table.comments[""] = self.next("a comment").text
        elif tok.text == "flags":
            while not self.at_end():
                self.i += 1
        elif tok.text == "map":
            self.named_vmap(table)
        elif tok.text == "flowtable":
            self.flowtable(table)
        elif tok.text in ("counter", "quota", "limit", "secmark", "synproxy"):
            raise self.not_modelled(tok, f"{tok.text} objects")
        else:
            raise self.error(tok, f"chain, set or ct helper expected in a table, not {tok.text!r}")

    def statements(self, opener: Token, what: str) -> Iterator[Token]:
        """The first word of each statement in the ``{ ... }`` of a table, set or map, up to and past its
        ``}``; newlines and ``;`` skipped. Without a ``}`` the error points at ``opener``."""
        while True:
            tok = self.peek(skip_newlines=True)
            if tok is None:
                raise self.error(opener, f"'}}' expected: the {what} is never closed")
            self.i += 1
            if tok.text == "}":
                return
            if tok.text == ";":
                continue
            yield tok

    def named_vmap(self, table: NfTable) -> None:
        """``map NAME { type K [. K ...] : verdict; [flags interval;] [comment "..."] elements = { k :
        verdict, ... } }``: a verdict map (``NfTable.vmaps``). Keyed by ``ifname`` or ``inet_service``
        alone its entries are ``(value, verdict, chain)``; keyed by any other set type or a
        concatenation (kube-proxy's ``ipv4_addr . inet_proto . inet_service``) ``(parts, verdict,
        chain)`` with one ``(lo, hi)`` (or name) per key part, as a set's members."""
        name = self.next("a map name")
        self.expect("{")
        kinds: list[str] | None = None
        entries: list = []
        flags: list[str] = []
        for tok in self.statements(name, "map"):
            if tok.text == "type" and not self.verdict_map_ahead():
                self.data_map(table, name, tok)
                return
            if tok.text == "type":
                kinds = [t.text for t in self.type_list("a key type")]
                self.expect(":")
                self.expect("verdict")
            elif tok.text == "elements":
                if kinds is None:
                    raise self.error(tok, "the map's type comes before its elements")
                self.expect("=")
                entries = self.verdict_entries(self.expect("{"), kinds, table)
            elif tok.text == "comment":
                table.comments[name.text] = self.next("a comment").text
            elif tok.text == "flags":
                flags += self.set_flags(("interval", "constant"), "map")
            elif tok.text in ("counter", "size", "policy"):
                while not self.at_end():
                    self.i += 1
            else:
                raise self.error(tok, f"map: type or elements expected, not {tok.text!r}")
        if kinds is None:
            raise self.error(name, f"map {name.text}: no type")
        self.check_intervals(name, kinds, entries, flags)
        table.vmaps[name.text] = (" . ".join(kinds), tuple(entries))
        if flags:
            table.vmap_flags[name.text] = tuple(flags)
        table.sets_order.append(name.text)

    def flowtable(self, table: NfTable) -> None:
        """``flowtable NAME { hook ingress priority P; devices = { a, b }; [counter;] [flags offload;] }``."""
        name = self.next("a flowtable name")
        if name.text in table.flowtables:
            raise self.error(name, f"flowtable {name.text} already exists in table {table.name}")
        self.expect("{")
        ft = NfFlowtable(name.text, origin=self.origin(name))
        hooked = False
        for tok in self.statements(name, "flowtable"):
            if tok.text == "hook":
                hook = self.next("ingress")
                if hook.text != "ingress":
                    raise self.error(hook, f"a flowtable hooks ingress, not {hook.text}")
                self.expect("priority")
                ft.priority = self.priority()
                hooked = True
            elif tok.text == "devices":
                self.expect("=")
                ft.devices = tuple(t.text for t in self.braced())
            elif tok.text == "counter":
                ft.counter = True
            elif tok.text == "flags":
                while not self.at_end():
                    flag = self.next()
                    if flag.text != "offload":
                        raise self.error(flag, f"flowtable flag {flag.text!r}: offload")
                    ft.hw_offload = True
            else:
                raise self.error(
                    tok, f"flowtable: hook, devices, counter or flags expected, not {tok.text!r}"
                )
        if not hooked:
            raise self.error(name, f"flowtable {name.text}: no hook (hook ingress priority P)")
        table.flowtables[name.text] = ft

    def flow_offload(self, r: _Rule, tok: Token, table: NfTable, chain: NfChain) -> None:
        """``flow add @NAME`` (``flow offload @NAME``, the older spelling): nft_flow_offload."""
        verb = self.next("add")
        if verb.text not in ("add", "offload"):
            raise self.not_modelled(verb, f"flow {verb.text}")
        ref = self.next("@flowtable")
        name = ref.text.removeprefix("@")
        if name not in table.flowtables:
            raise self.error(ref, f"flowtable {name} does not exist in table {table.name}")
        if chain.hook is not None and chain.hook != "FORWARD":
            raise self.error(tok, "flow add is only valid in a forward chain (Operation not supported)")
        r.statements.append(
            ("FLOW_OFFLOAD", {"flowtable": f"{table.family} {table.name} {name}", "name": name})
        )

    def chain_placeholder(self, table: NfTable) -> NfChain:
        return NfChain(f"map in table {table.name}")

    def ct_timeout(self, table: NfTable) -> None:
        """``ct timeout NAME { protocol tcp|udp|icmp; [l3proto ip|ip6|inet;] policy = { s : T, ... } }``."""
        name = self.next("a timeout name")
        self.expect("{")
        proto = None
        l3 = table.family if table.family != "inet" else "ip"
        policy: dict[str, float] = {}
        for tok in self.statements(name, "ct timeout"):
            if tok.text == "protocol":
                proto = self.next("tcp, udp or icmp")
                if proto.text not in NF_CT_TIMEOUT_STATES:
                    raise self.not_modelled(proto, f"ct timeout for protocol {proto.text}")
            elif tok.text == "l3proto":
                l3 = self.next("ip or ip6").text
            elif tok.text == "policy":
                if proto is None:
                    raise self.error(tok, "ct timeout: the protocol comes before the policy")
                self.expect("=")
                brace = self.expect("{")
                for state in self.listed(brace):
                    if state.text not in NF_CT_TIMEOUT_STATES[proto.text]:
                        raise self.error(state, f"unknown {proto.text} timeout state {state.text!r}")
                    self.expect(":")
                    policy[state.text] = self.duration(self.next("a time"))
            elif tok.text == "comment":
                self.next("a comment")
            else:
                raise self.error(tok, f"ct timeout: protocol, l3proto or policy expected, not {tok.text!r}")
        if proto is None:
            raise self.error(name, "ct timeout: protocol expected")
        table.ct_timeouts[name.text] = NfCtTimeout(name.text, proto.text, l3, policy, self.origin(name))

    def ct_object(self, table: NfTable, start: Token) -> None:
        kind = self.next("helper")
        if kind.text == "timeout":
            self.ct_timeout(table)
            return
        if kind.text != "helper":
            raise self.not_modelled(kind, f"ct {kind.text} objects")
        name = self.next("a helper name")
        self.expect("{")
        helper = None
        proto = "tcp"
        while True:
            tok = self.peek(skip_newlines=True)
            if tok is None:
                raise self.error(name, "'}' expected")
            self.i += 1
            if tok.text == "}":
                break
            if tok.text == "type":
                helper = self.next("a helper type")
                if helper.text not in names.HELPERS:
                    raise self.error(helper, f"ct helper: no conntrack helper named {helper.text!r}")
                if self.peek() is not None and self.peek().text == "protocol":
                    self.i += 1
                    proto = self.next("tcp or udp").text
            while not self.at_end():
                self.i += 1
        if helper is None:
            raise self.error(name, "ct helper: type expected")
        self.helpers[f"{table.family} {table.name} {name.text}"] = helper.text
        table.helpers[name.text] = (helper.text, proto)

    def chain(self, table: NfTable, exists_ok: bool = True) -> None:
        """``chain NAME { ... }``: declared, or (nft's add) added to when it exists already."""
        name = self.next("a chain name")
        chain = table.chains.get(name.text)
        if chain is not None and not exists_ok:
            raise self.error(name, f"chain {name.text} already exists in table {table.family} {table.name}")
        if chain is None:
            chain = NfChain(name.text, None, origin=self.origin(name))
            table.chains[name.text] = chain
        self.expect("{")
        while True:
            tok = self.peek(skip_newlines=True)
            if tok is None:
                raise self.error(name, "'}' expected: the chain is never closed")
            if tok.text == "}":
                self.i += 1
                return
            if tok.text == ";":
                self.i += 1
                continue
            at = self.i
            try:
                self.chain_statement(table, chain, tok)
            except ConfigError as exc:
                self.failed(exc, at)

    def chain_statement(self, table: NfTable, chain: NfChain, tok: Token) -> None:
        """One statement of a chain: its base-chain header, policy, comment, or a rule."""
        if tok.text == "type":
            self.i += 1
            self.base_chain(chain, tok, table)
        elif tok.text == "policy":
            self.i += 1
            pol = self.next("accept or drop")
            if pol.text not in ("accept", "drop"):
                raise self.error(pol, "policy accept or drop expected")
            if chain.hook is None:
                raise self.error(pol, "a regular chain has no policy")
            chain.policy = pol.text.upper()
        elif tok.text == "comment":
            self.i += 1
            table.comments["chain " + chain.name] = self.next("a comment").text
        else:
            chain.rules.append(self.rule(table, chain))

    def base_chain(self, chain: NfChain, start: Token, table: NfTable) -> None:
        kind = self.next("filter, nat or route")
        if kind.text not in ("filter", "nat", "route"):
            raise self.error(kind, f"chain type {kind.text!r}: filter, nat or route")
        self.expect("hook")
        hook = self.next("a hook")
        if table.family == "netdev" and hook.text != "ingress":
            raise self.not_modelled(hook, f"the netdev {hook.text} hook (ingress is read)")
        if hook.text == "ingress":
            if table.family not in ("netdev", "inet") or kind.text != "filter":
                raise self.error(hook, "hook ingress: a filter chain of a netdev or inet table")
            self.ingress_chain(chain, table)
            return
        if hook.text not in HOOKS:
            raise self.error(hook, f"unknown hook {hook.text!r}")
        if kind.text == "nat" and hook.text == "forward":
            raise self.error(hook, "nat chains hook prerouting, input, output or postrouting")
        tok = self.next("priority")
        if tok.text == "device":
            self.next("a device")
            tok = self.next("priority")
        if tok.text != "priority":
            raise self.error(tok, f"'priority' expected, not {tok.text!r}")
        # The chain is a base chain from here on, even if its priority is refused below: its policy
        # statement is then no second error.
        chain.kind = kind.text
        chain.hook = HOOKS[hook.text]
        chain.policy = "ACCEPT"
        at = self.peek()
        chain.priority = self.priority()
        # nft accepts the names dstnat and srcnat only where they mean something (src/rule.c's
        # std_prio_family_hook_compat): dstnat at prerouting, srcnat at postrouting.
        named = _NAMED_HOOK.get(at.text) if at is not None else None
        if named is not None and hook.text != named:
            raise self.error(
                at, f"invalid priority expression value in this context: nft names {at.text} only at {named}"
            )
        if kind.text == "nat" and chain.priority <= NAT_PRIORITY_MIN:
            raise self.error(
                at,
                f"a nat chain's priority must be above {NAT_PRIORITY_MIN} (conntrack's): the kernel refuses "
                "this chain (Operation not supported)",
            )
        chain.kind = kind.text
        chain.hook = HOOKS[hook.text]
        chain.policy = "ACCEPT"

    def ingress_chain(self, chain: NfChain, table: NfTable) -> None:
        """``... hook ingress device "eth0" | devices = { a, b } priority P;``: a chain run on the
        packets those devices receive, before PREROUTING (``engine/nf_path.py``)."""
        tok = self.next("device")
        if tok.text == "device":
            chain.devices = (self.next("a device").text,)
        elif tok.text == "devices":
            self.expect("=")
            chain.devices = tuple(t.text for t in self.braced())
        else:
            raise self.error(tok, "hook ingress needs its device (device NAME or devices = { ... })")
        self.expect("priority")
        chain.priority = self.priority()
        chain.kind = "filter"
        chain.hook = "INGRESS"
        chain.policy = "ACCEPT"

    def priority(self) -> int:
        tok = self.next("a priority")
        text = tok.text
        if text.lstrip("-").isdigit():
            value = int(text)
        elif text in PRIORITY_NAMES:
            value = PRIORITY_NAMES[text]
            nxt = self.peek()
            if nxt is not None and nxt.text in ("+", "-"):
                self.i += 1
                num = self.next("a number")
                if not num.text.isdigit():
                    raise self.error(num, "a number expected")
                value += int(num.text) if nxt.text == "+" else -int(num.text)
        else:
            raise self.error(tok, f"unknown priority {text!r} (a number or {', '.join(PRIORITY_NAMES)})")
        return value

    # -- values ------------------------------------------------------------------------------------

    def joined(self, tok: Token) -> Token:
        """``a,b,c`` written without spaces (``ct state established,related``) as one token."""
        text = tok.text
        while True:
            comma = self.peek()
            after = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
            end = tok.col + len(text)
            if (
                comma is None
                or after is None
                or comma.text != ","
                or comma.quoted
                or comma.line != tok.line
                or comma.col != end
                or after.col != end + 1
                or after.newline
            ):
                return Token(text, tok.line, tok.col, tok.quoted)
            self.i += 2
            text += "," + after.text

    def braced(self) -> list[Token]:
        """``{ a, b, c }`` (newlines allowed) or a single value."""
        tok = self.next("a value")
        if tok.text != "{":
            return [self.joined(tok)]
        out = []
        for t in self.listed(tok):
            if t.text in (":", "."):
                raise self.not_modelled(t, "maps and concatenations")
            nxt = self.peek()
            if nxt is not None and nxt.text.startswith(":") and not nxt.quoted:
                raise self.not_modelled(t, "maps and verdict maps")
            out.append(t)
        return out

    def listed(self, brace: Token) -> Iterator[Token]:
        """The items of the ``{ a, b, ... }`` that ``brace`` opened, up to and past its ``}``; newlines
        and commas between them skipped."""
        while True:
            t = self.peek(skip_newlines=True)
            if t is None:
                raise self.error(brace, "'}' expected")
            self.i += 1
            if t.text == "}":
                return
            if t.text == ",":
                continue
            yield t

    def values(self) -> tuple[bool, list[Token]]:
        """An optional ``!=``/``==`` and a value, anonymous set or ``@set``."""
        neg = False
        tok = self.peek()
        if tok is not None and tok.text in ("!=", "=="):
            self.i += 1
            neg = tok.text == "!="
        tok = self.peek()
        if tok is not None and tok.text in ("vmap", "map"):
            raise self.not_modelled(
                tok,
                f"{tok.text} on this key (verdict maps on ct state, iifname, oifname, "
                "meta l4proto and tcp/udp ports are read)",
            )
        return neg, self.braced()

    def vmap(
        self, r: _Rule, table: NfTable, chain: NfChain, key: str, convert, proto: int | None = None
    ) -> None:
        """``KEY vmap { value : verdict, ... }``: an anonymous verdict map (the rule's target VMAP with
        ``key``, ``proto`` and ``entries``: (value, verdict, chain or None) in the order written)."""
        start = self.next("vmap")
        if r.target:
            raise self.error(start, "a rule has one verdict")
        ref = self.peek()
        if ref is not None and ref.text.startswith("@"):
            self.i += 1
            found = table.vmaps.get(ref.text[1:])
            want = {
                "iifname": "ifname",
                "oifname": "ifname",
                "dport": "inet_service",
                "sport": "inet_service",
            }
            if found is None:
                raise self.error(ref, f"map {ref.text[1:]} does not exist in table {table.name}")
            if found[0] != want.get(key):
                raise self.error(ref, f"map {ref.text[1:]} is keyed by {found[0]}, not by {key}")
            r.target = "VMAP"
            r.target_args = {"key": key, "proto": proto, "entries": found[1], "map": ref.text[1:]}
            return
        self.vmap_entries(r, table, chain, convert, key, proto)

    def vmap_entries(
        self, r: _Rule, table: NfTable, chain: NfChain, convert, key: str = "", proto=None
    ) -> None:
        brace = self.next("{")
        if brace.text != "{":
            raise self.error(brace, "'{' or @map expected")
        entries = []
        for tok in self.listed(brace):
            value = convert(tok)
            colon = self.next("':'")
            if colon.text != ":":
                raise self.error(colon, "':' and a verdict expected")
            verdict = self.next("a verdict")
            target = None
            if verdict.text in ("jump", "goto"):
                target_tok = self.next("a chain")
                self.jumps.append((table, chain.name, target_tok))
                target = target_tok.text
            elif verdict.text not in ("accept", "drop", "return", "continue"):
                raise self.error(verdict, f"unknown verdict {verdict.text!r}")
            entries.append((value, verdict.text, target))
        if not entries:
            raise self.error(brace, "an empty verdict map")
        r.target = "VMAP"
        r.target_args = {"key": key, "proto": proto, "entries": tuple(entries)}

    def vmap_ahead(self) -> bool:
        tok = self.peek()
        return tok is not None and tok.text == "vmap" and not tok.quoted

    def address_range(self, tok: Token, family: int) -> tuple[int, int]:
        text = tok.text
        try:
            if "-" in text and "/" not in text:
                a, b = (ipaddress.ip_address(x) for x in text.split("-", 1))
                lo, hi, v = int(a), int(b), a.version
            else:
                net = ipaddress.ip_network(text, strict=False)
                lo, hi, v = int(net.network_address), int(net.broadcast_address), net.version
        except ValueError:
            raise self.error(tok, f"bad address {text!r}") from None
        if v != family:
            raise self.error(tok, f"{text} is not an IPv{family} address")
        return lo, hi

    def port_range(self, tok: Token) -> tuple[int, int]:
        lo_s, _, hi_s = tok.text.partition("-")
        if hi_s and not (lo_s.isdigit() and hi_s.isdigit()):
            lo_s, hi_s = tok.text, ""  # a service name with a dash (dhcpv6-client)
        out = []
        for part in (lo_s, hi_s or lo_s):
            if part.isdigit() and int(part) <= 65535:
                out.append(int(part))
            elif part in names.SERVICES:
                out.append(names.SERVICES[part])
            else:
                # nft resolves a service name as getservbyname does (/etc/services).
                try:
                    out.append(socket.getservbyname(part))
                except OSError:
                    try:
                        out.append(socket.getservbyname(part, "udp"))
                    except OSError:
                        raise self.error(tok, f"bad port {tok.text!r}") from None
        if out[0] > out[1]:
            raise self.error(tok, f"bad port range {tok.text!r}")
        return out[0], out[1]

    def number_range(self, tok: Token) -> tuple[int, int]:
        """``N`` or ``a-b`` (numbers as ``number`` reads them): ``(low, high)``, low never above high."""
        lo, dash, hi = tok.text.partition("-")
        low = self.number(Token(lo, tok.line, tok.col))
        high = self.number(Token(hi, tok.line, tok.col)) if dash else low
        if low > high:
            raise self.error(tok, f"bad range {tok.text!r}")
        return low, high

    def number(self, tok: Token) -> int:
        try:
            value = int(tok.text, 0)
        except ValueError:
            raise self.error(tok, f"a number expected, not {tok.text!r}") from None
        if not 0 <= value <= 0xFFFFFFFF:
            raise self.error(tok, f"{tok.text} is out of range")
        return value

    # -- rules -------------------------------------------------------------------------------------

    def rule(self, table: NfTable, chain: NfChain) -> NfRule:
        self.table_now, self.chain_now = table, chain
        start = self.peek()
        assert start is not None
        r = _Rule()
        verdict_tok = None
        layout: list[str] = []
        while not self.at_end():
            before = (set(r.fields), len(r.extensions), len(r.statements), r.family, r.target == "VMAP")
            tok = self.next()
            word = tok.text
            after = self.peek()
            self.element(r, tok, table, chain, verdict_tok)
            if word == "meta" and after is not None and after.text in ("iif", "oif"):
                word = after.text  # meta iif: listed as iif
            if word in _VERDICTS or word in ("reject", "snat", "dnat", "masquerade", "redirect"):
                verdict_tok = tok
            layout.extend(_layout(r, before, word))
        if not r.target and not r.statements and not r.counter and not r.fields and not r.extensions:
            raise self.error(start, "empty rule")
        rule = self.finish(r, start)
        if r.implied_nfproto and (r.counter or r.statements):
            # The dependency nft adds for "reject with icmp|icmpv6" in an inet table: listed (first)
            # only when a statement stands between the matches and the reject, as nft 1.0.6 lists it.
            layout.insert(0, f"nfproto{r.family}")
        rule.layout = tuple(layout)
        return rule

    def element(
        self, r: _Rule, tok: Token, table: NfTable, chain: NfChain, verdict_tok: Token | None
    ) -> None:
        """One match, statement or verdict of a rule, starting at ``tok``."""
        word = tok.text
        if tok.quoted:
            raise self.error(tok, f"unexpected string {word!r}")
        if verdict_tok is not None and word != "comment":
            raise self.error(tok, f"nothing may follow the verdict {verdict_tok.text!r} but a comment")
        if self.keyed_ahead(tok):
            self.key_match(r, tok, table)
        elif word in ("add", "update"):
            self.dynset(r, tok, table)
        elif word == "meter":
            self.meter(r, tok, table)
        elif word == "flow":
            self.flow_offload(r, tok, table, chain)
        elif word in ("iifname", "oifname", "iif", "oif"):
            self.interface(r, tok, table, chain)
        elif word in ("ip", "ip6"):
            self.ip_match(r, tok, table)
        elif word in ("tcp", "udp"):
            self.l4(r, tok)
        elif word in ("icmp", "icmpv6"):
            self.icmp(r, tok)
        elif word == "meta":
            self.meta(r, tok)
        elif word == "mark":  # nft's shorthand for meta mark
            self.mark(r, copy_from="ct", copy_mode="restore", set_target="MARK", match="mark")
        elif word == "ct":
            self.ct(r, tok, table)
        elif word == "fib":
            self.fib(r, tok)
        elif word == "numgen":
            self.numgen(r, tok, table)
        elif word == "ipsec":
            self.ipsec(r, tok)
        elif word == "th":
            raise self.not_modelled(self.peek() or tok, f"th {(self.peek() or tok).text}")
        elif word == "limit":
            self.limit(r, tok)
        elif word == "counter":
            r.counter = True
            if self.peek() is not None and self.peek().text == "packets":
                self.i += 1
                p = self.number(self.next("a count"))
                self.expect("bytes")
                b = self.number(self.next("a count"))
                r.counters = (p, b)
        elif word == "log":
            self.log(r)
        elif word == "notrack":
            r.statements.append(("NOTRACK", {}))
        elif word in ("accept", "drop", "return", "continue"):
            verdict_tok = tok
            if word != "continue":
                r.target = word.upper()
        elif word in ("jump", "goto"):
            verdict_tok = tok
            target = self.next("a chain")
            self.jumps.append((table, chain.name, target))
            r.target = target.text
            r.goto = word == "goto"
        elif word == "reject":
            verdict_tok = tok
            self.reject(r, table)
        elif word in ("snat", "dnat"):
            verdict_tok = tok
            self.nat(r, tok, chain)
        elif word in ("masquerade", "redirect"):
            verdict_tok = tok
            self.masquerade(r, tok, chain)
        elif word == "comment":
            r.comment = self.next("a comment").text
        elif word == "queue":
            raise self.not_modelled(tok, "queue")
        elif word == "xt":
            # iptables-nft's compatibility expressions (a match or target nft cannot express): nft lists
            # only their name, never their options, so the rule cannot be read back from this listing.
            kind = self.peek()
            what = f"xt {kind.text}" if kind is not None else "xt"
            raise self.error(
                tok,
                f"nft: {what} ... is an iptables-nft compatibility expression whose options `nft list "
                "ruleset` does not show; give statewall this table as `iptables-save` prints it",
            )
        else:
            raise self.not_modelled(tok, f"{word!r} in a rule")

    # -- keys: set lookups, concatenations, dynamic sets, meters ------------------------------------

    def check_nat_hooks(self, table: NfTable, graph: dict[str, list[tuple[str, Token]]]) -> None:
        """The kernel runs snat only at postrouting and input, dnat and redirect at prerouting and
        output, masquerade at postrouting (nft_nat_validate, nft_masq_validate, nft_redir_validate,
        through the jumps of the base chain): elsewhere it refuses the rule (Operation not supported)."""
        uses: dict[str, list[Token]] = {}
        for t, chain_name, tok in self.nat_uses:
            if t is table:
                uses.setdefault(chain_name, []).append(tok)
        if not uses:
            return
        for base in table.chains.values():
            if base.hook is None or base.kind != "nat":
                continue
            seen, todo = {base.name}, [base.name]
            while todo:
                name = todo.pop()
                for tok in uses.get(name, ()):
                    allowed = _NAT_HOOKS[tok.text]
                    if base.hook not in allowed:
                        where = " or ".join(h.lower() for h in allowed)
                        via = "" if name == base.name else f" (reached from {base.name})"
                        raise self.error(
                            tok,
                            f"{tok.text} runs only at {where}, not at {base.hook.lower()}{via}: the kernel "
                            "refuses this rule (Operation not supported)",
                        )
                for kid, _tok in graph.get(name, ()):
                    if kid not in seen:
                        seen.add(kid)
                        todo.append(kid)

    def check_jumps(self, table: NfTable) -> dict[str, list[tuple[str, Token]]]:
        """Every jump names a regular chain of the table; no loop (nf_tables refuses both, ELOOP).
        Returns the jumps, by the chain they leave: (target, its token)."""
        graph: dict[str, list[tuple[str, Token]]] = {}
        for t, source, target in self.jumps:
            if t is not table:
                continue
            chain = table.chains.get(target.text)
            if chain is None:
                raise self.error(
                    target, f"chain {target.text!r} does not exist in table {table.family} {table.name}"
                )
            if chain.hook is not None:
                raise self.error(target, f"cannot jump to base chain {target.text}")
            graph.setdefault(source, []).append((target.text, target))
        color: dict[str, int] = {}
        for root in table.chains:
            if color.get(root):
                continue
            color[root] = 1
            path = [root]
            stack = [iter(graph.get(root, ()))]
            while stack:
                step = next(stack[-1], None)
                if step is None:
                    stack.pop()
                    color[path.pop()] = 2
                    continue
                kid, tok = step
                if color.get(kid) == 1:
                    cycle = " -> ".join([*path[path.index(kid) :], kid])
                    raise self.error(
                        tok, f"chains jump in a loop: {cycle} (Too many levels of symbolic links)"
                    )
                if not color.get(kid):
                    color[kid] = 1
                    path.append(kid)
                    stack.append(iter(graph.get(kid, ())))
        return graph

    def finish(self, r: _Rule, start: Token) -> NfRule:
        fields = dict(r.fields)
        if r.family is not None:
            fields["family"] = r.family
        match = Match(**fields)
        modules: list[str] = []
        if match.protocol in (PROTO_TCP, PROTO_UDP) and (
            match.source_ports or match.destination_ports or match.tcp_flags is not None
        ):
            modules.append("tcp" if match.protocol == PROTO_TCP else "udp")
        if match.icmp_type is not None:
            modules.append("icmp" if match.protocol == PROTO_ICMP else "icmp6")
        if match.ctstates:
            modules.append("conntrack")
        extensions = list(r.extensions)
        if r.comment is not None:
            extensions.append(NfExtension("comment", {"comment": r.comment}))
        modules += [e.name for e in extensions]
        return NfRule(
            match=match,
            target=r.target,
            target_args=r.target_args,
            matches_extra=extensions,
            modules=tuple(modules),
            goto=r.goto,
            counters=r.counters,
            origin=self.origin(start),
            statements=r.statements,
            counter=r.counter,
        )

    def set_family(self, r: _Rule, tok: Token, family: int) -> None:
        if r.family is not None and r.family != family:
            raise self.error(tok, "a rule cannot match both IPv4 and IPv6")
        r.family = family

    def interface(
        self, r: _Rule, tok: Token, table: NfTable | None = None, chain: NfChain | None = None
    ) -> None:
        if self.vmap_ahead() and table is not None and chain is not None:
            key = "iifname" if tok.text.startswith("i") else "oifname"
            self.vmap(r, table, chain, key, lambda t: t.text)
            return
        neg, vals = self.values()
        if len(vals) != 1:
            side = "in" if tok.text.startswith("i") else "out"
            r.extensions.append(
                NfExtension("ifname", {"side": side, "names": tuple(v.text for v in vals), "negate": neg})
            )
            return
        name = vals[0].text
        if name.endswith("*"):
            name = name[:-1] + "+"
        key = "in_interface" if tok.text.startswith("i") else "out_interface"
        r.fields[key] = name
        r.fields[key + "_negate"] = neg

    def ipsec_warning(self, tok: Token) -> None:
        if not self.ipsec_said:
            self.ipsec_said = True
            self.policy.warnings.append(
                Warning_(
                    self.origin(tok),
                    "ipsec: IPsec (xfrm policies and states) is not modelled: no packet is decrypted or "
                    "encrypted in statewall, so `meta ipsec exists` and `ipsec in|out ...` never hold",
                )
            )

    def ipsec(self, r: _Rule, tok: Token) -> None:
        """``ipsec in|out [spnum N] reqid N | spi N | ip saddr A | ip daddr A | ip6 saddr A | ip6 daddr
        A`` (nft_xfrm): a field of the SA the packet came in or goes out by."""
        direction = self.next("in or out")
        if direction.text not in ("in", "out"):
            raise self.error(direction, f"ipsec {direction.text!r}: in or out")
        spnum = 0
        if self.peek() is not None and self.peek().text == "spnum":
            self.i += 1
            spnum = self.number(self.next("a number"))
        key = self.next("reqid, spi, ip or ip6")
        if key.text in ("ip", "ip6"):
            side = self.next("saddr or daddr")
            if side.text not in ("saddr", "daddr"):
                raise self.error(side, f"ipsec {direction.text} {key.text} {side.text!r}: saddr or daddr")
            field = f"{key.text} {side.text}"
            self.set_family(r, key, 4 if key.text == "ip" else 6)
        elif key.text in ("reqid", "spi"):
            field = key.text
        else:
            raise self.error(key, f"ipsec {direction.text} {key.text!r}: reqid, spi, ip or ip6")
        neg, vals = self.values()
        value = vals[0].text if field.startswith("ip") else str(self.number(vals[0]))
        self.ipsec_warning(tok)
        r.extensions.append(
            NfExtension(
                "nftipsec",
                {
                    "kind": "sa",
                    "dir": direction.text,
                    "spnum": spnum,
                    "field": field,
                    "value": value,
                    "negate": neg,
                },
            )  # fmt: skip
        )

    def ttl_match(self, r: _Rule, tok: Token, what: Token) -> None:
        """``ip ttl`` / ``ip6 hoplimit`` ``[OP] N | a-b | { ... }`` (OP one of == != < > <= >=): the
        TTL or hop limit the packet has at this hook."""
        op = "=="
        nxt = self.peek()
        if nxt is not None and nxt.text in ("==", "!=", "<", ">", "<=", ">=") and not nxt.quoted:
            op = self.next().text
        vals = self.braced()
        ranges = []
        for v in vals:
            low, high = self.number_range(v)
            if high > 255:
                raise self.error(v, f"bad {what.text} {v.text!r} (0 to 255)")
            ranges.append((low, high))
        if op not in ("==", "!=") and (len(ranges) != 1 or ranges[0][0] != ranges[0][1]):
            raise self.error(vals[0], f"{op} takes one number")
        r.extensions.append(
            NfExtension(
                "nftttl",
                {
                    "field": f"{tok.text} {what.text}",
                    "op": op,
                    "ranges": tuple(ranges),
                    "braced": len(vals) > 1 or self.toks[self.i - 1].text == "}",
                },
            )
        )

    def ip_match(self, r: _Rule, tok: Token, table: NfTable) -> None:
        family = 4 if tok.text == "ip" else 6
        self.set_family(r, tok, family)
        what = self.next("saddr, daddr or protocol")
        if what.text in ("protocol", "nexthdr"):
            neg, vals = self.values()
            self.protocol(r, vals, neg)
            return
        if what.text == ("ttl" if family == 4 else "hoplimit"):
            self.ttl_match(r, tok, what)
            return
        if what.text not in ("saddr", "daddr"):
            raise self.not_modelled(what, f"{tok.text} {what.text}")
        neg, vals = self.values()
        side = "src" if what.text == "saddr" else "dst"
        if len(vals) == 1 and vals[0].text.startswith("@"):
            keyname = f"{tok.text} {what.text}"
            r.extensions.append(NfExtension("nftset", self.set_ref(vals[0], table, (keyname,), neg)))
            return
        nets = []
        ranges = []
        for v in vals:
            if "-" in v.text and "/" not in v.text:
                ranges.append((v, *self.address_range(v, family)))
            else:
                try:
                    net = ipaddress.ip_network(v.text, strict=False)
                except ValueError:
                    raise self.error(v, f"bad address {v.text!r}") from None
                if net.version != family:
                    raise self.error(v, f"{v.text} is not an IPv{family} address")
                nets.append(net)
        if ranges:
            if nets or len(ranges) > 1:
                raise self.not_modelled(ranges[0][0], "sets mixing address ranges")
            _, lo, hi = ranges[0]
            cls = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
            r.extensions.append(
                NfExtension(
                    "iprange",
                    {
                        "src_range": (cls(lo), cls(hi)) if side == "src" else None,
                        "dst_range": (cls(lo), cls(hi)) if side == "dst" else None,
                        "src_negate": neg and side == "src",
                        "dst_negate": neg and side == "dst",
                    },
                )
            )
            return
        key = "sources" if side == "src" else "destinations"
        r.fields[key] = tuple(nets)
        r.fields["source_negate" if side == "src" else "destination_negate"] = neg

    def protocol_number(self, tok: Token) -> int:
        proto = names.PROTOCOLS.get(tok.text) or {"icmpv6": PROTO_ICMPV6}.get(tok.text)
        if proto is None:
            if not tok.text.isdigit():
                raise self.error(tok, f"unknown protocol {tok.text!r}")
            proto = int(tok.text)
        return proto

    def protocol(self, r: _Rule, vals: list[Token], neg: bool) -> None:
        if len(vals) != 1:
            protos = tuple(sorted({self.protocol_number(v) for v in vals}))
            r.extensions.append(NfExtension("l4proto", {"protos": protos, "negate": neg}))
            return
        text = vals[0].text
        proto = names.PROTOCOLS.get(text) or ({"icmpv6": PROTO_ICMPV6}.get(text))
        if proto is None:
            if not text.isdigit():
                raise self.error(vals[0], f"unknown protocol {text!r}")
            proto = int(text)
        r.fields["protocol"] = proto
        r.fields["protocol_negate"] = neg

    def l4(self, r: _Rule, tok: Token) -> None:
        proto = PROTO_TCP if tok.text == "tcp" else PROTO_UDP
        if r.fields.get("protocol") not in (None, proto):
            raise self.error(tok, f"the rule already matches protocol {r.fields['protocol']}")
        r.fields["protocol"] = proto
        what = self.next("sport, dport or flags")
        if what.text in ("sport", "dport") and self.vmap_ahead():
            self.vmap(r, self.table_now, self.chain_now, what.text, self.port_range, proto)
        elif what.text in ("sport", "dport"):
            neg, vals = self.values()
            key = "source_ports" if what.text == "sport" else "destination_ports"
            if len(vals) == 1 and vals[0].text.startswith("@"):
                keyname = f"{tok.text} {what.text}"
                r.extensions.append(
                    NfExtension("nftset", self.set_ref(vals[0], self.table_now, (keyname,), neg))
                )
                return
            ports = []
            for v in vals:
                lo, hi = self.port_range(v)
                ports.append(PortMatch("range", lo, hi) if lo != hi else PortMatch("eq", lo))
            r.fields[key] = tuple(ports)
            r.fields[key + "_negate"] = neg
        elif what.text == "flags" and tok.text == "tcp":
            self.tcp_flags(r, what)
        elif what.text == "option" and tok.text == "tcp":
            self.tcp_option(r, what)
        else:
            raise self.not_modelled(what, f"{tok.text} {what.text}")

    def flag_list(self, tok: Token) -> int:
        value = 0
        for name in tok.text.split(","):
            bit = TCP_FLAG_BITS.get(name)
            if bit is None:
                raise self.error(tok, f"unknown TCP flag {name!r}")
            value |= bit
        return value

    def tcp_flags(self, r: _Rule, start: Token) -> None:
        tok = self.next("flags")
        neg = False
        if tok.text == "&":
            # tcp flags & (fin|syn|rst|ack) == syn
            self.expect("(")
            mask = 0
            while True:
                t = self.next("a flag")
                if t.text == ")":
                    break
                if t.text != "|":
                    mask |= self.flag_list(t)
            op = self.next("== or !=")
            if op.text not in ("==", "!="):
                raise self.error(op, "== or != expected")
            comp = self.flag_list(self.joined(self.next("flags")))
            r.fields["tcp_flags"] = (mask, comp)
            r.fields["tcp_flags_negate"] = op.text == "!="
            return
        if tok.text in ("!=", "=="):
            neg = tok.text == "!="
            tok = self.next("flags")
        comp = self.flag_list(self.joined(tok))
        nxt = self.peek()
        if nxt is not None and nxt.text == "/":
            self.i += 1
            mask = self.flag_list(self.joined(self.next("a mask")))
        else:
            if bin(comp).count("1") != 1:
                raise self.not_modelled(tok, "'any of these flags' matches")
            mask = comp
        r.fields["tcp_flags"] = (mask, comp)
        r.fields["tcp_flags_negate"] = neg

    def tcp_option(self, r: _Rule, start: Token) -> None:
        opt = self.next("maxseg")
        if opt.text != "maxseg":
            raise self.not_modelled(opt, f"tcp option {opt.text}")
        self.expect("size")
        self.expect("set")
        value = self.next("a size or rt mtu")
        if value.text == "rt":
            self.expect("mtu")
            r.statements.append(("TCPMSS", {"clamp": True, "nft": True}))
        else:
            r.statements.append(("TCPMSS", {"mss": self.number(value), "nft": True}))

    def icmp(self, r: _Rule, tok: Token) -> None:
        v6 = tok.text == "icmpv6"
        self.set_family(r, tok, 6 if v6 else 4)
        r.fields["protocol"] = PROTO_ICMPV6 if v6 else PROTO_ICMP
        what = self.next("type")
        if what.text != "type":
            raise self.not_modelled(what, f"{tok.text} {what.text}")
        if self.peek() is not None and self.peek().text == ".":
            self.icmp_type_code(r, tok, v6)
            return
        neg, vals = self.values()
        table = ICMPV6_NAMES if v6 else ICMP_NAMES
        types = []
        for v in vals:
            t = table.get(v.text, int(v.text) if v.text.isdigit() else None)
            if t is None:
                raise self.error(v, f"unknown ICMP type {v.text!r}")
            types.append(t)
        if len(types) == 1:
            r.fields.update(icmp_type=types[0], icmp_negate=neg)
        else:
            proto = PROTO_ICMPV6 if v6 else PROTO_ICMP
            r.extensions.append(
                NfExtension("icmptypes", {"proto": proto, "types": tuple(types), "negate": neg})
            )

    def icmp_type_code(self, r: _Rule, tok: Token, v6: bool) -> None:
        """``icmpv6 type . icmpv6 code { a . b, ... }`` (fw4's Allow-MLD and Allow-ICMPv6 rules): the
        one concatenation statewall reads, as a set of (type, code) pairs."""
        self.expect(".")
        again = self.next(tok.text)
        if again.text != tok.text:
            raise self.not_modelled(again, "this concatenation")
        self.expect("code")
        types = ICMPV6_NAMES if v6 else ICMP_NAMES
        codes = ICMPV6_CODES if v6 else ICMP_CODES
        brace = self.next("{")
        if brace.text != "{":
            raise self.not_modelled(brace, "a concatenation against a named set")
        pairs = []
        for t in self.listed(brace):
            self.expect(".")
            c = self.next("a code")
            ty = types.get(t.text, int(t.text) if t.text.isdigit() else None)
            co = codes.get(c.text, int(c.text) if c.text.isdigit() else None)
            if ty is None:
                raise self.error(t, f"unknown ICMP type {t.text!r}")
            if co is None:
                raise self.error(c, f"unknown ICMP code {c.text!r}")
            pairs.append((ty, co))
        proto = PROTO_ICMPV6 if v6 else PROTO_ICMP
        r.extensions.append(
            NfExtension("icmptypecodes", {"proto": proto, "pairs": tuple(pairs), "negate": False})
        )

    def meta(self, r: _Rule, tok: Token) -> None:
        what = self.next("a meta key")
        if what.text in ("l4proto",) and self.vmap_ahead():
            self.vmap(r, self.table_now, self.chain_now, "l4proto", self.protocol_number)
        elif what.text in ("l4proto",):
            neg, vals = self.values()
            self.protocol(r, vals, neg)
        elif what.text == "protocol":
            # meta protocol ip|ip6 (the ethertype; netdev rules): statewall sees IP packets only.
            neg, vals = self.values()
            if len(vals) != 1 or vals[0].text not in ("ip", "ip6"):
                raise self.not_modelled(vals[0], "this meta protocol match (ip or ip6 is read)")
            version = 4 if vals[0].text == "ip" else 6
            r.extensions.append(NfExtension("ethertype", {"version": version, "negate": neg}))
        elif what.text == "nfproto":
            neg, vals = self.values()
            if neg or len(vals) != 1 or vals[0].text not in ("ipv4", "ipv6"):
                raise self.not_modelled(vals[0], "this nfproto match")
            self.set_family(r, vals[0], 4 if vals[0].text == "ipv4" else 6)
        elif what.text in ("iifname", "oifname", "iif", "oif"):
            self.interface(r, what)
        elif what.text == "mark":
            self.mark(r, copy_from="ct", copy_mode="restore", set_target="MARK", match="mark")
        elif what.text in ("ipsec", "secpath"):
            # meta ipsec (meta secpath, its older name) exists|missing: whether the packet was decrypted.
            neg, vals = self.values()
            if len(vals) != 1 or vals[0].text not in ("exists", "missing"):
                raise self.error(vals[0], f"meta {what.text}: exists or missing")
            self.ipsec_warning(what)
            r.extensions.append(
                NfExtension("nftipsec", {"kind": "secpath", "exists": (vals[0].text == "exists") != neg})
            )
        elif what.text == "pkttype":
            neg, vals = self.values()
            if vals[0].text not in ("unicast", "broadcast", "multicast", "host"):
                raise self.error(vals[0], f"unknown packet type {vals[0].text!r}")
            r.extensions.append(NfExtension("pkttype", {"type": vals[0].text, "negate": neg}))
        else:
            raise self.not_modelled(what, f"meta {what.text}")

    def mark(self, r: _Rule, copy_from: str, copy_mode: str, set_target: str, match: str) -> None:
        """The rest of `meta mark ...` or `ct mark ...`: `set <copy_from> mark` copies the other mark
        across (CONNMARK `copy_mode`), `set N` sets this one (`set_target`), `set [meta] mark OP N ...`
        changes it bit by bit (`|`/`or`, `^`/`xor`, `&`/`and`: kube-proxy's masquerade mark), `N` or
        `& MASK == N` matches it (`match`)."""
        own = "meta" if set_target == "MARK" else "ct"
        nxt = self.peek()
        if nxt is not None and nxt.text == "set":
            self.i += 1
            value = self.next("a value")
            if self.keyed_map_ahead(value):
                mapped = self.map_ref(r, value, self.table_now, ("mark",))
                r.statements.append(
                    (set_target, {"mode": "set", "value": 0, "mask": 0xFFFFFFFF, "map": mapped})
                )
                return
            if value.text == copy_from:
                self.expect("mark")
                r.statements.append(
                    ("CONNMARK", {"mode": copy_mode, "nfmask": 0xFFFFFFFF, "ctmask": 0xFFFFFFFF})
                )
            elif value.text == "mark" or (
                value.text == own and self.peek() is not None and self.peek().text == "mark"
            ):
                if value.text == own:
                    self.i += 1
                keep, flip = self.mark_ops()
                # The target's (mark & ~mask) ^ value: keep's cleared bits are the mask.
                r.statements.append((set_target, {"mode": "set", "value": flip, "mask": ~keep & 0xFFFFFFFF}))
            else:
                r.statements.append(
                    (set_target, {"mode": "set", "value": self.number(value), "mask": 0xFFFFFFFF})
                )
            return
        mask = 0xFFFFFFFF
        if nxt is not None and nxt.text in ("&", "and"):
            self.i += 1
            mask = self.number(self.next("a mask"))
        neg, vals = self.values()
        value = self.number(vals[0])
        r.extensions.append(NfExtension(match, {"value": value, "mask": mask, "negate": neg}))

    def mark_ops(self) -> tuple[int, int]:
        """``OP N [OP N ...]`` after ``mark set mark``, with nft's (C's) precedence, ``&`` before ``^``
        before ``|``: the change as the kernel's bitwise expression holds it, ``(mark & keep) ^ flip``."""
        ops = {"|": "|", "or": "|", "^": "^", "xor": "^", "&": "&", "and": "&"}
        terms: list = ["mark"]  # the mark, then (op, number) pairs
        while self.peek() is not None and self.peek().text in ops:
            op = ops[self.next().text]
            terms.append((op, self.number(self.next("a number"))))
        if len(terms) == 1:
            raise self.error(self.peek() or self.toks[self.i - 1], "'|', '^' or '&' and a number expected")
        return _bitwise(terms)

    def ct(self, r: _Rule, tok: Token, table: NfTable) -> None:
        if table.family == "netdev":
            raise self.error(tok, "ct expressions are not available in a netdev table (Protocol error)")
        what = self.next("a ct key")
        if what.text == "state" and self.vmap_ahead():

            def state(t: Token) -> str:
                if t.text not in CT_STATES:
                    raise self.error(t, f"unknown ct state {t.text!r}")
                return CT_STATES[t.text]

            self.vmap(r, table, self.chain_now, "ct_state", state)
        elif what.text == "state":
            neg, vals = self.values()
            states = set()
            for v in vals:
                for word in v.text.split(","):
                    if word not in CT_STATES:
                        raise self.error(v, f"unknown ct state {word!r}")
                    states.add(CT_STATES[word])
            r.fields.update(ctstates=frozenset(states), ctstates_negate=neg)
        elif what.text == "status":
            neg, vals = self.values()
            states = set()
            for v in vals:
                for word in v.text.split(","):
                    if word not in ("dnat", "snat"):
                        raise self.not_modelled(v, f"ct status {word}")
                    states.add(word.upper())
            r.fields.update(ctstates=frozenset(states), ctstates_negate=neg)
        elif what.text == "mark":
            self.mark(r, copy_from="meta", copy_mode="save", set_target="CONNMARK", match="connmark")
        elif what.text == "count":
            # nft_connlimit: the connections this rule has seen (one list per rule, as xt_connlimit's
            # with a zero mask); `over` matches above the limit, without it up to it.
            above = self.peek() is not None and self.peek().text == "over"
            if above:
                self.i += 1
            limit = self.number(self.next("a count"))
            r.extensions.append(
                NfExtension("connlimit", {"limit": limit, "above": above, "mask": 0, "daddr": False})
            )
        elif what.text == "timeout":
            self.expect("set")
            name = self.next("a timeout object")
            obj = table.ct_timeouts.get(name.text)
            if obj is None:
                raise self.error(name, f"ct timeout {name.text!r} is not declared in table {table.name}")
            proto = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "icmp": PROTO_ICMP}[obj.protocol]
            r.statements.append(
                ("CTTIMEOUT", {"object": name.text, "protocol": proto, "policy": dict(obj.policy)})
            )
        elif what.text == "helper":
            nxt = self.peek()
            if nxt is not None and nxt.text == "set":
                self.i += 1
                name = self.next("a helper object")
                helper = self.helpers.get(f"{table.family} {table.name} {name.text}")
                if helper is None:
                    raise self.error(name, f"ct helper {name.text!r} is not declared in table {table.name}")
                r.statements.append(
                    ("CT", {"notrack": False, "helper": helper, "zone": None, "object": name.text})
                )
                return
            neg, vals = self.values()
            r.extensions.append(NfExtension("helper", {"helper": vals[0].text, "negate": neg}))
        else:
            raise self.not_modelled(what, f"ct {what.text}")

    def fib(self, r: _Rule, tok: Token) -> None:
        what = self.next("daddr or saddr")
        if what.text not in ("daddr", "saddr"):
            raise self.not_modelled(what, f"fib {what.text}")
        limit_in = mark = False
        nxt = self.peek()
        if nxt is not None and nxt.text == ".":
            self.i += 1
            key = self.next("iif or mark")
            if key.text == "mark":
                # fib saddr . mark . iif (firewalld's rpfilter): the lookup takes the packet's mark
                # into account, which selects only through policy routing rules (ip rule fwmark).
                # statewall routes by one table, so the mark changes no answer; said once.
                self.policy.warnings.append(
                    Warning_(
                        self.origin(key),
                        "fib ... . mark: routing by the packet's mark (ip rule fwmark) is not modelled; "
                        "the lookup uses the one routing table, as it does for a packet without a mark",
                    )
                )
                self.expect(".")
                key = self.next("iif")
                mark = True
            if key.text != "iif":
                raise self.error(key, f"'iif' expected, not {key.text!r}")
            limit_in = True
        nxt = self.peek()
        if what.text == "saddr" and limit_in and nxt is not None and nxt.text == "oif":
            # fib saddr . iif oif missing: the reverse path check (rpfilter): no route back to the
            # source through the interface the packet came in on.
            self.i += 1
            neg = False
            if self.peek() is not None and self.peek().text in ("!=", "=="):
                neg = self.next().text == "!="
            word = self.next("missing or exists")
            if word.text not in ("missing", "exists"):
                raise self.not_modelled(word, f"fib saddr . iif oif {word.text}")
            r.extensions.append(
                NfExtension("rpfilter", {"missing": (word.text == "missing") != neg, "mark": mark})
            )
            return
        if mark:
            raise self.not_modelled(what, f"fib {what.text} . mark . iif type")
        self.expect("type")
        neg, vals = self.values()
        types = frozenset(v.text.upper() for v in vals)
        key = "src" if what.text == "saddr" else "dst"
        r.extensions.append(
            NfExtension(
                "addrtype",
                {
                    "src_type": types if key == "src" else None,
                    "dst_type": types if key == "dst" else None,
                    "src_negate": neg and key == "src",
                    "dst_negate": neg and key == "dst",
                    "limit_in": limit_in,
                    "limit_out": False,
                },
            )
        )

    def limit(self, r: _Rule, tok: Token) -> None:
        args = self.limit_args()
        if args["over"] or args["bytes"]:
            r.extensions.append(NfExtension("nftlimit", args))
            return
        # A packet limit as xt_limit keys it (the same bucket: unit/rate per packet, burst of them).
        avg = 10000 * args["unit"] // args["rate"]
        r.extensions.append(NfExtension("limit", {"avg": avg, "burst": args["burst"] or 5}))

    def limit_args(self) -> dict:
        """``rate [over] N/UNIT`` or ``rate [over] N [k|m]bytes/UNIT``, ``[burst N packets|bytes]``
        after ``limit``: nft_limit's rate, unit (seconds), burst, over, bytes."""
        self.expect("rate")
        over = False
        nxt = self.peek()
        if nxt is not None and nxt.text == "over":
            self.i += 1
            over = True
        rate = self.next("a rate")
        scale = 0
        count, _, unit = rate.text.partition("/")
        if not unit:
            size = self.next("bytes/UNIT")
            word, _, unit = size.text.partition("/")
            scale = _BYTE_UNITS.get(word, 0)
            if not scale:
                raise self.error(
                    size, f"bad rate unit {size.text!r} (bytes, kbytes or mbytes per second ...)"
                )
        mult = _RATE_UNITS.get(unit)
        if not count.isdigit() or mult is None or int(count) == 0:
            raise self.error(rate, f"bad rate {rate.text!r} (N/second, /minute, /hour, /day, /week)")
        burst = 0
        nxt = self.peek()
        if nxt is not None and nxt.text == "burst":
            self.i += 1
            burst = self.number(self.next("a burst"))
            unit_tok = self.peek()
            if unit_tok is not None and unit_tok.text == "packets":
                self.i += 1
                if scale:
                    raise self.error(unit_tok, "a byte rate takes its burst in bytes")
            elif unit_tok is not None and unit_tok.text in _BYTE_UNITS:
                self.i += 1
                if not scale:
                    raise self.error(unit_tok, "a packet rate takes its burst in packets")
                burst *= _BYTE_UNITS[unit_tok.text]
        elif not scale:
            burst = 5
        return {
            "rate": int(count) * (scale or 1),
            "unit": mult,
            "burst": burst,
            "over": over,
            "bytes": bool(scale),
        }

    def log(self, r: _Rule) -> None:
        args: dict = {"prefix": "", "level": 4, "flags": 0}
        while True:
            nxt = self.peek()
            if nxt is None or nxt.text not in ("prefix", "level", "flags", "group"):
                break
            self.i += 1
            value = self.next("a value")
            if nxt.text == "prefix":
                args["prefix"] = value.text
            elif nxt.text == "level":
                if value.text not in names.LOG_LEVELS:
                    raise self.error(value, f"unknown log level {value.text!r}")
                args["level"] = names.LOG_LEVELS[value.text]
            elif nxt.text == "group":
                args["group"] = self.number(value)
            else:
                bits = {"tcp": 0, "ip": 4, "all": 7}
                if value.text == "tcp":
                    kind = self.next("sequence or options")
                    args["flags"] |= 1 if kind.text == "sequence" else 2
                    while self.peek() is not None and self.peek().text == ",":
                        self.i += 1
                        kind = self.next("sequence or options")
                        args["flags"] |= 1 if kind.text == "sequence" else 2
                elif value.text in bits:
                    if value.text == "ip":
                        self.expect("options")
                    args["flags"] |= bits[value.text]
                else:
                    raise self.not_modelled(value, f"log flags {value.text}")
        if "group" in args:
            # log group N: the packet goes to nfnetlink_log group N (NFLOG), not to the kernel log.
            if args["level"] != 4 or args["flags"]:
                raise self.error(self.toks[self.i - 1], "log group takes no level or flags (nfnetlink_log)")
            r.statements.append(("NFLOG", {"group": args["group"], "prefix": args["prefix"], "nft": True}))
            return
        r.statements.append(("LOG", args))

    def reject(self, r: _Rule, table: NfTable) -> None:
        r.target = "REJECT"
        nxt = self.peek()
        if table.family == "inet" and nxt is not None and nxt.text == "with" and r.family is None:
            # "reject with icmp|icmpv6 ..." in an inet table holds for its family only: nft adds the
            # "meta nfproto" dependency in front of the rule.
            after = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
            if after is not None and after.text in ("icmp", "icmpv6"):
                r.family = 4 if after.text == "icmp" else 6
                r.implied_nfproto = True
        family = r.family or (6 if table.family == "ip6" else 4)
        with_ = "icmp-port-unreachable" if family == 4 else "icmp6-port-unreachable"
        if table.family == "inet":
            with_ = "icmpx-port-unreachable"  # nft's default in an inet table: the packet's own family's
        default = with_
        nxt = self.peek()
        if nxt is not None and nxt.text == "with":
            self.i += 1
            kind = self.next("icmp, icmpv6, icmpx or tcp")
            if kind.text == "tcp":
                self.expect("reset")
                with_ = "tcp-reset"
                if r.fields.get("protocol") != PROTO_TCP:
                    raise self.error(kind, "reject with tcp reset needs a tcp match (meta l4proto tcp)")
            else:
                name = self.next("an ICMP type")
                if name.text == "type":
                    name = self.next("an ICMP type")
                if kind.text == "icmp":
                    table_ = REJECT_ICMP
                elif kind.text == "icmpv6":
                    table_ = REJECT_ICMPV6
                elif kind.text == "icmpx":
                    table_ = {k: "icmpx-" + k for k in REJECT_ICMPX}
                else:
                    raise self.error(kind, "icmp, icmpv6, icmpx or tcp expected")
                if name.text not in table_:
                    raise self.error(name, f"unknown reject type {name.text!r}")
                with_ = table_[name.text]
        # nft lists a reject of its family's default kind (port unreachable) without its "with" (the
        # "nft" key: a kind to print), as long as no family was implied for it.
        explicit = nxt is not None and nxt.text == "with"
        r.target_args = {"with": with_, "nft": explicit and (with_ != default or r.implied_nfproto)}

    def nat(self, r: _Rule, tok: Token, chain: NfChain) -> None:
        if chain.kind is not None and chain.kind != "nat":
            raise self.error(tok, f"{tok.text} is only valid in a nat chain")
        self.nat_uses.append((self.table_now, chain.name, tok))
        nxt = self.peek()
        word = None
        if nxt is not None and nxt.text in ("ip", "ip6"):
            self.i += 1
            word = nxt.text
        self.expect("to")
        value = self.next("an address")
        if self.keyed_map_ahead(value):
            table = self.table_now
            fam = word or ("ip6" if table.family == "ip6" else "ip")
            addr = "ipv6_addr" if fam == "ip6" else "ipv4_addr"
            # The value type: an address, or an address . port (nft's "dnat ip to ... map { k : a . p }").
            data = (addr,)
            if self.map_value_parts() == 2:
                data = (addr, "inet_service")
            r.target = tok.text.upper()
            r.target_args = {"addresses": None, "ports": None, "random": False, "persistent": False,
                             "map": self.map_ref(r, value, table, data), "word": word}  # fmt: skip
            if tok.text == "snat":
                r.target_args["random_fully"] = False
            self.nat_flags(r)
            return
        text = value.text
        addr_part, port_part = text, ""
        bracketed = _BRACKETED.match(text) if text.startswith("[") else None
        if bracketed is not None:  # [a]:p, [a]-[b], [a]-[b]:p-q: IPv6 addresses before a port
            first, last, port = bracketed.groups()
            addr_part, port_part = first if last is None else f"{first}-{last}", port or ""
        elif text.count(":") == 1:
            addr_part, _, port_part = text.partition(":")
        try:
            first, _, last = addr_part.partition("-")
            a = ipaddress.ip_address(first)
            b = ipaddress.ip_address(last) if last else a
        except ValueError:
            raise self.error(value, f"bad address {addr_part!r}") from None
        ports = None
        if port_part:
            lo, _, hi = port_part.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise self.error(value, f"bad port {port_part!r}")
            ports = (int(lo), int(hi or lo))
            self.ports_need_protocol(r, value)
        r.target = tok.text.upper()
        r.target_args = {"addresses": (a, b), "ports": ports, "random": False, "persistent": False}
        if tok.text == "snat":
            r.target_args["random_fully"] = False
        self.nat_flags(r)

    def nat_flags(self, r: _Rule) -> None:
        while self.peek() is not None and self.peek().text in ("random", "fully-random", "persistent"):
            flag = self.next()
            key = {"random": "random", "fully-random": "random_fully", "persistent": "persistent"}[flag.text]
            r.target_args[key] = True
            if self.peek() is not None and self.peek().text == ",":
                self.i += 1

    def masquerade(self, r: _Rule, tok: Token, chain: NfChain) -> None:
        if chain.kind is not None and chain.kind != "nat":
            raise self.error(tok, f"{tok.text} is only valid in a nat chain")
        self.nat_uses.append((self.table_now, chain.name, tok))
        r.target = tok.text.upper()
        r.target_args = {"ports": None, "random": False}
        if tok.text == "masquerade":
            r.target_args["random_fully"] = False
        nxt = self.peek()
        if nxt is not None and nxt.text == "to":
            self.i += 1
            value = self.next("a port")
            lo, _, hi = value.text.lstrip(":").partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise self.error(value, f"bad port {value.text!r}")
            self.ports_need_protocol(r, value)
            r.target_args["ports"] = (int(lo), int(hi or lo))
        self.nat_flags(r)

    def ports_need_protocol(self, r: _Rule, value: Token) -> None:
        """A NAT statement's ports need the rule to match a transport protocol first, as nft insists."""
        if r.fields.get("protocol") is None and not any(e.name == "l4proto" for e in r.extensions):
            raise self.error(value, "transport protocol mapping is only valid after transport protocol match")


_FIELD_PARTS = (
    ("in_interface", "iif"),
    ("out_interface", "oif"),
    ("sources", "saddr"),
    ("destinations", "daddr"),
    ("source_ports", "sport"),
    ("destination_ports", "dport"),
    ("tcp_flags", "tcpflags"),
    ("icmp_type", "icmp"),
    ("ctstates", "ct"),
)


def _layout(r: _Rule, before: tuple, word: str) -> list[str]:
    """What the element just read added to the rule, as layout keys."""
    fields, n_ext, n_stmt, family, had_vmap = before
    if r.target == "VMAP" and not had_vmap:
        return ["verdict"]
    added = set(r.fields) - fields
    out = [part for key, part in _FIELD_PARTS if key in added]
    if word in ("iif", "oif"):  # by interface index: listed as written, matched by name as iifname
        out = [f"{part}idx" if part in ("iif", "oif") else part for part in out]
    if not out and "protocol" in added and len(r.extensions) == n_ext:
        out.append("proto")
    if word == "meta" and r.family != family and not out:
        out.append(f"nfproto{r.family}")
    out += [f"ext:{i}" for i in range(n_ext, len(r.extensions)) if r.extensions[i].name != "comment"]
    out += [f"stmt:{i}" for i in range(n_stmt, len(r.statements))]
    if word == "counter":
        out.append("counter")
    elif word in _VERDICTS or word in ("reject", "snat", "dnat", "masquerade", "redirect"):
        out.append("verdict")
    elif word == "comment":
        out.append("comment")
    return out


def parse(text: str, filename: str) -> Policy:
    """Parse nftables text into a Policy (``Policy.nft_tables``, sets in ``Policy.nf_sets``).

    ``#@statewall`` lines (interfaces, routes, sysctls: comments to nft) declare what the box has, as
    in iptables files.
    """
    from ..iptables import parse as parse_iptables

    header = "\n".join(ln if ln.lstrip().startswith("#@statewall") else "" for ln in text.split("\n"))
    base = parse_iptables(header, filename)
    policy = Parser(text, filename).run()
    policy.interfaces = base.interfaces
    policy.routes = base.routes
    policy.hostname = base.hostname
    policy.conntrack = base.conntrack
    policy.defrag = base.defrag
    policy.passthrough = base.passthrough
    policy.warnings = base.warnings + policy.warnings
    policy.netfilter = {}
    policy.ip6_netfilter = {}
    return policy


_M32 = 0xFFFFFFFF


def _combine(a, op: str, b):
    """``a op b`` where either is the mark as ``(keep, flip)`` (``(mark & keep) ^ flip``) or a number."""
    if isinstance(a, int) and isinstance(b, int):
        return a & b if op == "&" else a ^ b if op == "^" else a | b
    (keep, flip), n = (a, b) if isinstance(b, int) else (b, a)
    if op == "&":
        return keep & n, flip & n
    if op == "^":
        return keep, flip ^ n
    return keep & ~n & _M32, (flip & ~n) | n


def _bitwise(terms: list) -> tuple[int, int]:
    """The mark and the ``(op, number)`` pairs after it, folded with ``&`` before ``^`` before ``|``."""
    items = [(_M32, 0), *terms[1:]]
    levels: list = [items[0]]
    for op, n in items[1:]:
        levels.append(op)
        levels.append(n)
    for want in ("&", "^", "|"):
        out = [levels[0]]
        for j in range(1, len(levels), 2):
            if levels[j] == want:
                out[-1] = _combine(out[-1], want, levels[j + 1])
            else:
                out += [levels[j], levels[j + 1]]
        levels = out
    result = levels[0]
    return result if not isinstance(result, int) else (0, result)
