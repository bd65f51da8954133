"""The nftables tables of a Policy printed as ``nft list ruleset`` prints them.

Owns the printed form: tables, then in each its sets, then its chains, one blank line between them,
tabs for indentation; a base chain's ``type ... hook ... priority ...; policy ...;`` with the
priority's name (``filter``, ``mangle + 10``) as nft 1.0 prints it; each rule's matches, statements
and verdict in nft's canonical spelling (numeric ports, ``ct state established,related``, ``tcp
flags syn / fin,syn,rst,ack``). ``counters`` (``Netfilter.counters`` of the table, keyed by chain and
rule index) replace the loaded ``counter packets N bytes M`` after a replay.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...policy import PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, NfRule, NfSet, NfTable, Policy
from ..iptables import names
from .keys import KEY_TYPES, format_time, value_text
from .parser import (
    HOOKS,
    ICMP_CODES,
    ICMP_NAMES,
    ICMPV6_CODES,
    ICMPV6_NAMES,
    PRIORITY_NAMES,
    REJECT_ICMP,
    REJECT_ICMPV6,
    TCP_FLAG_BITS,
)

_HOOK_NAMES = {v: k for k, v in HOOKS.items()}
_CT_ORDER = ("INVALID", "ESTABLISHED", "RELATED", "NEW", "UNTRACKED")
_CT_BITS = {"INVALID": 1, "ESTABLISHED": 2, "RELATED": 4, "NEW": 8, "UNTRACKED": 64}
_FLAG_ORDER = ("fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr")
_PROTO_NAMES = dict(names.SAVE_PROTOCOL_NAMES)  # /etc/protocols' names, as nft prints them
_LEVELS = {v: k for k, v in names.LOG_LEVELS.items() if k not in ("err", "warn", "panic")}
_REJECT_NAMES = {v: k for table in (REJECT_ICMP, REJECT_ICMPV6) for k, v in table.items()}
_ICMP_BY_TYPE = {v: k for k, v in ICMP_NAMES.items()}
_ICMPV6_BY_TYPE = {v: k for k, v in ICMPV6_NAMES.items()}

Counters = Mapping[tuple[str, str, int], tuple[int, int]]


def render(policy: Policy, counters: Counters | None = None) -> str:
    """The policy as an nft file: statewall's header (``#@statewall`` lines, comments to nft), then the
    ruleset as ``list_ruleset`` prints it. ``parse(render(p))`` gives ``p`` back."""
    from ..iptables.render import header

    lines = header(policy)
    return ("\n".join(lines) + "\n" if lines else "") + list_ruleset(policy, counters)


Elements = Mapping[str, list[tuple[tuple, float | None, float | None]]]


def list_ruleset(policy: Policy, counters: Counters | None = None, elements: Elements | None = None) -> str:
    """``nft list ruleset``. ``counters``: ``(table label, chain, rule index) -> (packets, bytes)``;
    ``elements``: the dynamic and timeout sets' elements after a replay (``Netfilter.nft_elements``)."""
    out: list[str] = []
    for table in policy.nft_tables:
        out.extend(table_lines(policy, table, counters, elements))
    return "\n".join(out) + ("\n" if out else "")


def table_lines(
    policy: Policy, table: NfTable, counters: Counters | None = None, elements: Elements | None = None
) -> list[str]:
    out = [f"table {table.family} {table.name} {{"]
    if "" in table.comments:
        out.append(f'\tcomment "{table.comments[""]}"')
    blocks: list[list[str]] = []
    for name, (helper, proto) in table.helpers.items():
        blocks.append(
            [
                f"\tct helper {name} {{",
                f'\t\ttype "{helper}" protocol {proto}',
                f"\t\tl3proto {table.family}",
                "\t}",
            ]
        )
    for obj in table.ct_timeouts.values():
        blocks.append(ct_timeout_lines(obj))
    prefix = f"{table.family} {table.name} "
    for name in table.sets_order:
        if name in table.vmaps:
            key_type, entries = table.vmaps[name]
            blocks.append(
                vmap_lines(name, key_type, entries, table.vmap_flags.get(name, ()), table.comments.get(name))
            )
        elif prefix + name in policy.nf_sets:
            now = elements.get(prefix + name) if elements is not None else None
            blocks.append(set_lines(policy.nf_sets[prefix + name], now, table.comments.get(name)))
    for ft in table.flowtables.values():
        lines = [
            f"\tflowtable {ft.name} {{",
            f"\t\thook ingress priority {priority_text(ft.priority)}",
            "\t\tdevices = { " + ", ".join(ft.devices) + " }",
        ]
        if ft.hw_offload:
            lines.append("\t\tflags offload")
        if ft.counter:
            lines.append("\t\tcounter")
        lines.append("\t}")
        blocks.append(lines)
    label = f"{table.family} {table.name}"
    for chain in table.chains.values():
        lines = [f"\tchain {chain.name} {{"]
        if "chain " + chain.name in table.comments:
            lines.append(f'\t\tcomment "{table.comments["chain " + chain.name]}"')
        if chain.hook == "INGRESS":
            # nft names only "filter" (0) at ingress; one device quoted, several sorted in braces.
            prio = "filter" if not chain.priority else str(chain.priority)
            if len(chain.devices) == 1:
                where = f'device "{chain.devices[0]}"'
            else:
                where = "devices = { " + ", ".join(sorted(chain.devices)) + " }"
            policy = (chain.policy or "ACCEPT").lower()
            lines.append(f"\t\ttype filter hook ingress {where} priority {prio}; policy {policy};")
        elif chain.hook is not None:
            prio = priority_text(chain.priority or 0, chain.hook)
            lines.append(
                f"\t\ttype {chain.kind} hook {_HOOK_NAMES[chain.hook]} priority {prio}; "
                f"policy {(chain.policy or 'ACCEPT').lower()};"
            )
        for i, rule in enumerate(chain.rules):
            c = counters.get((label, chain.name, i)) if counters is not None else None
            lines.append("\t\t" + rule_text(policy, rule, c, table.family))
        lines.append("\t}")
        blocks.append(lines)
    for i, block in enumerate(blocks):
        if i:
            out.append("")
        out.extend(block)
    out.append("}")
    return out


# nft's own defaults for a ct timeout policy (src/ct.c): the states it lists are those that differ.
_CT_TIMEOUT_DEFAULTS = {
    "tcp": {"syn_sent": 120, "syn_recv": 60, "established": 432000, "fin_wait": 120, "close_wait": 60,
            "last_ack": 30, "time_wait": 120, "close": 10, "syn_sent2": 120, "retrans": 300, "unack": 300},
    "udp": {"unreplied": 30, "replied": 180},
    "icmp": {"timeout": 30},
}  # fmt: skip


def ct_timeout_lines(obj) -> list[str]:
    """``ct timeout NAME { ... }`` as nft 1.0.6 lists it (only the states that are not its defaults)."""
    defaults = _CT_TIMEOUT_DEFAULTS[obj.protocol]
    states = [
        f"{state} : {round(obj.policy[state])}"  # whole seconds, as the kernel keeps them
        for state in defaults
        if state in obj.policy and obj.policy[state] != defaults[state]
    ]
    return [
        f"\tct timeout {obj.name} {{",
        f"\t\tprotocol {obj.protocol}",
        f"\t\tl3proto {obj.l3proto}",
        "\t\tpolicy = { " + ", ".join(states) + " }",
        "\t}",
    ]


# How many elements nft prints per line in a set or map declaration, by key type (checked with nft 1.0.6).
_PER_LINE = {"inet_service": 5, "ipv4_addr": 2, "ipv6_addr": 1, "ifname": 1, "mark": 5, "inet_proto": 5}


def _elements(items: list[str], per_line: int) -> str:
    """``elements = { a, b,\n\t\t\t     c }``: nft's wrapping of a declaration's elements."""
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "\t\telements = { " + ",\n\t\t\t     ".join(lines) + " }"


_FLAG_PRINT_ORDER = ("constant", "dynamic", "interval", "timeout")


def set_lines(s: NfSet, live: list | None = None, comment: str | None = None) -> list[str]:
    """A set declaration as nft 1.0.6 lists it: type, size, flags, timeout, elements (an element's
    own timeout when it differs from the set's, the ``expires`` it was loaded with). ``live``: the
    elements as a replay left them, ``(key values, timeout, seconds left)``, listed instead."""
    if live is not None:
        s = _with_elements(s, live)
    kind = s.kind.removeprefix("nft:")
    if s.data:
        lines = [f"\tmap {s.name} {{", f"\t\ttype {kind} : {' . '.join(s.data)}"]
    else:
        lines = [f"\tset {s.name} {{", f"\t\ttype {kind}"]
    if s.size is not None:
        lines.append(f"\t\tsize {s.size}")
    flags = [f for f in _FLAG_PRINT_ORDER if f in s.flags]
    if flags:
        lines.append("\t\tflags " + ",".join(flags))
    if s.timeout is not None:
        lines.append(f"\t\ttimeout {format_time(s.timeout)}")
    if comment is not None:
        lines.append(f'\t\tcomment "{comment}"')
    if s.text:
        timeouts = s.timeouts or [None] * len(s.text)
        items = []
        for text, tmo in zip(s.text, timeouts, strict=True):
            if tmo is not None:
                if tmo[0] is not None and tmo[0] != s.timeout:
                    text += f" timeout {format_time(tmo[0])}"
                if tmo[1] is not None:
                    text += f" expires {format_time(tmo[1])}"
            items.append(text)
        if len(s.members) == len(items):
            # nft lists a set's elements sorted by value (interface names as the little-endian
            # numbers their bytes make: "wg0" before "eth1").
            tree = "interval" in s.flags
            items = [
                t
                for _, t in sorted(
                    zip(s.members, items, strict=True), key=lambda mt: _order(mt[0], tree, tuple(s.dims))
                )
            ]
        lines.append(_elements(items, _PER_LINE.get(kind, 1)))
    lines.append("\t}")
    return lines


def _with_elements(s: NfSet, live: list) -> NfSet:
    import dataclasses

    members, text, timeouts = [], [], []
    for key, timeout, left in live:
        parts = tuple(v if isinstance(v, str) else (v, v) for v in key)
        members.append(parts)
        text.append(" . ".join(value_text(k, p) for k, p in zip(s.dims, parts, strict=True)))
        timeouts.append(None if timeout is None and left is None else (timeout, left))
    return dataclasses.replace(s, members=members, text=text, timeouts=timeouts)


_KEY_BYTES = {"ipv4_addr": (4, "big"), "ipv6_addr": (16, "big"), "inet_service": (2, "big"),
              "inet_proto": (1, "big"), "mark": (4, "little")}  # fmt: skip


def _order(member: tuple, tree: bool, kinds: tuple | None = None) -> tuple:
    """An element's place in nft's listing: by value; names of an interval set (a tree, memcmp) by
    their bytes, of a hash set as the little-endian numbers their bytes make; a concatenation outside
    an interval set as the little-endian number its parts' bytes make one after the other (nft's
    mergesort, concat_expr_msort_value); in an interval set, in the order they were added."""
    if kinds is not None and len(kinds) > 1 and tree:
        return ()  # an interval set of concatenations (pipapo) lists its elements as they were added
    if kinds is not None and len(kinds) > 1:
        data = b""
        for kind, p in zip(kinds, member, strict=True):
            if isinstance(p, str):
                data += p.rstrip("*").encode()[:16].ljust(16, b"\0")
            else:
                size, order = _KEY_BYTES.get(kind, (4, "big"))
                data += int(p[0]).to_bytes(size, order)
        return ((2, int.from_bytes(data, "little")),)
    order = "big" if tree else "little"
    return tuple(
        (0, int.from_bytes(p.rstrip("*").encode()[:16].ljust(16, b"\0"), order))
        if isinstance(p, str)
        else (1, p)
        for p in member
    )


def vmap_lines(
    name: str, key_type: str, entries: tuple, flags: tuple = (), comment: str | None = None
) -> list[str]:
    """A verdict map's declaration as nft 1.0.6 lists it: its elements sorted as its sets' are (nft's
    mergesort of the key's bytes), one per line for a concatenation."""
    kinds = tuple(key_type.split(" . "))
    single = len(kinds) == 1 and kinds[0] in ("ifname", "inet_service")
    items = []
    tree = "interval" in flags
    for value, verdict, chain in sorted(
        entries, key=lambda e: _order((e[0],) if single else e[0], tree, None if single else kinds)
    ):
        if single and key_type == "ifname":
            text = f'"{value}"'
        elif single:
            lo, hi = value
            text = str(lo) if lo == hi else f"{lo}-{hi}"
        else:
            text = _keyed_text(kinds, value)
        items.append(f"{text} : {verdict}" + (f" {chain}" if chain else ""))
    lines = [f"\tmap {name} {{", f"\t\ttype {key_type} : verdict"]
    flag_words = [f for f in _FLAG_PRINT_ORDER if f in flags]
    if flag_words:
        lines.append("\t\tflags " + ",".join(flag_words))
    if comment is not None:
        lines.append(f'\t\tcomment "{comment}"')
    if items:
        lines.append(_elements(items, _PER_LINE.get(key_type, 1)))
    lines.append("\t}")
    return lines


# nft 1.0.6 names dstnat only at prerouting and srcnat only at postrouting (std_prio_lookup).
_NAMED_AT = {"dstnat": "PREROUTING", "srcnat": "POSTROUTING"}


def priority_text(value: int, hook: str | None = None) -> str:
    """nft 1.0's priority: the standard name when within 10 of it (``filter + 5``), else the number."""
    names_ = [(n, b) for n, b in PRIORITY_NAMES.items() if _NAMED_AT.get(n, hook) == hook]
    for name, base in names_:
        if value == base:
            return name
    for name, base in names_:
        if 0 < abs(value - base) <= 10:
            return f"{name} {'+' if value > base else '-'} {abs(value - base)}"
    return str(value)


def _ne(neg: bool) -> str:
    return "!= " if neg else ""


def _values(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _net(net) -> str:
    addr = net.network_address
    text = str(addr)
    mapped = getattr(addr, "ipv4_mapped", None)
    if mapped is not None:
        text = f"::ffff:{mapped}"  # nft prints IPv4-mapped addresses dotted
    return text if net.prefixlen == net.max_prefixlen else f"{text}/{net.prefixlen}"


def _ports(ports) -> list[str]:
    return [
        f"{p.low}-{p.high}" if p.op == "range" and p.high not in (None, p.low) else str(p.low) for p in ports
    ]


def _flags(value: int) -> str:
    return ",".join(f for f in _FLAG_ORDER if value & TCP_FLAG_BITS[f])


def rule_text(
    policy: Policy, rule: NfRule, counters: tuple[int, int] | None = None, family: str = "ip"
) -> str:
    """The rule as nft lists it in a table of ``family``."""
    parts = _parts(policy, rule, counters, family)
    layout = rule.layout or tuple(parts)
    words = []
    for key in layout:
        words.extend(parts.get(key, []))
    return " ".join(w for w in words if w)


def _parts(
    policy: Policy, rule: NfRule, counters: tuple[int, int] | None, family: str = "ip"
) -> dict[str, list[str]]:
    """Each part of the rule in nft's spelling, keyed as ``NfRule.layout`` names them (in nft's own
    order when the rule has no layout)."""
    m = rule.match
    parts: dict[str, list[str]] = {}
    if m.in_interface is not None:
        name = m.in_interface.replace("+", "*")
        parts["iif"] = [f'iifname {_ne(m.in_interface_negate)}"{name}"']
        parts["iifidx"] = [f'iif {_ne(m.in_interface_negate)}"{name}"']
    if m.out_interface is not None:
        name = m.out_interface.replace("+", "*")
        parts["oif"] = [f'oifname {_ne(m.out_interface_negate)}"{name}"']
        parts["oifidx"] = [f'oif {_ne(m.out_interface_negate)}"{name}"']
    fam = "ip6" if m.family == 6 else "ip"
    if m.family is not None:
        parts[f"nfproto{m.family}"] = [f"meta nfproto ipv{m.family}"]
    l4 = m.protocol in (PROTO_TCP, PROTO_UDP) and (m.source_ports or m.destination_ports or m.tcp_flags)
    # An ICMP type (or a set of them) implies its protocol: nft lists no l4proto dependency before it.
    icmp = m.icmp_type is not None
    icmp_set = any(e.name == "icmptypes" and e.args["proto"] == m.protocol for e in rule.matches_extra)
    # In an inet table "ip protocol tcp" also means IPv4: nft lists it even before "tcp dport", whose
    # own dependency (meta l4proto) it is not; in an ip or ip6 table it is that dependency, left out.
    kept = l4 and family == "inet" and m.family is not None and "proto" in rule.layout
    if m.protocol is not None and (kept or (not l4 and not icmp and not icmp_set)):
        proto = _PROTO_NAMES.get(m.protocol, str(m.protocol))
        if m.family is not None and rule.layout and f"nfproto{m.family}" not in rule.layout:
            parts["proto"] = [
                f"{fam} {'nexthdr' if m.family == 6 else 'protocol'} {_ne(m.protocol_negate)}{proto}"
            ]
        else:
            parts["proto"] = [f"meta l4proto {_ne(m.protocol_negate)}{proto}"]
    if m.sources:
        parts["saddr"] = [f"{fam} saddr {_ne(m.source_negate)}{_values([_net(n) for n in m.sources])}"]
    if m.destinations:
        parts["daddr"] = [
            f"{fam} daddr {_ne(m.destination_negate)}{_values([_net(n) for n in m.destinations])}"
        ]
    for i, ext in enumerate(rule.matches_extra):
        if ext.name != "comment":
            parts[f"ext:{i}"] = _extension(policy, ext.name, ext.args, fam)
    if l4:
        name = "tcp" if m.protocol == PROTO_TCP else "udp"
        if m.source_ports:
            parts["sport"] = [f"{name} sport {_ne(m.source_ports_negate)}{_values(_ports(m.source_ports))}"]
        if m.destination_ports:
            parts["dport"] = [
                f"{name} dport {_ne(m.destination_ports_negate)}{_values(_ports(m.destination_ports))}"
            ]
        if m.tcp_flags is not None:
            mask, comp = m.tcp_flags
            one = mask == comp and bin(mask).count("1") == 1
            text = _flags(comp) if one else f"{_flags(comp)} / {_flags(mask)}"
            parts["tcpflags"] = [f"tcp flags {_ne(m.tcp_flags_negate)}{text}"]
    if icmp:
        v6 = m.protocol == PROTO_ICMPV6
        by_type = _ICMPV6_BY_TYPE if v6 else _ICMP_BY_TYPE
        kind = "icmpv6" if v6 else "icmp"
        parts["icmp"] = [f"{kind} type {_ne(m.icmp_negate)}{by_type.get(m.icmp_type, m.icmp_type)}"]
    if m.ctstates:
        words = []
        nat = m.ctstates & {"DNAT", "SNAT"}
        if nat:
            words.append(f"ct status {_ne(m.ctstates_negate)}{','.join(s.lower() for s in sorted(nat))}")
        states = [s.lower() for s in _CT_ORDER if s in m.ctstates]
        if states:
            words.append(f"ct state {_ne(m.ctstates_negate)}{','.join(states)}")
        parts["ct"] = words
    if rule.counter:
        p, b = counters if counters is not None else rule.counters
        parts["counter"] = [f"counter packets {p} bytes {b}"]
    for i, (name, args) in enumerate(rule.statements):
        parts[f"stmt:{i}"] = [_statement(name, args)]
    parts["verdict"] = _verdict(rule, family)
    for ext in rule.matches_extra:
        if ext.name == "comment":
            parts["comment"] = [f'comment "{ext.args["comment"]}"']
    return parts


def _extension(policy: Policy, name: str, a: dict, fam: str) -> list[str]:
    if name == "set":
        s = policy.nf_sets[str(a["name"])]
        side = "saddr" if a["dirs"][0] == "src" else "daddr"
        return [f"{fam} {side} {_ne(a['negate'])}@{s.name}"]
    if name == "nftset":
        keys = " . ".join(a["keys"])
        if a.get("set"):
            return [f"{keys} {_ne(a['negate'])}@{a['name']}"]
        kinds = [KEY_TYPES[k] for k in a["keys"]]
        items = [" . ".join(value_text(k, v) for k, v in zip(kinds, m, strict=True)) for m in a["elements"]]
        text = "{ " + ", ".join(items) + " }" if a.get("braced") else items[0]
        return [f"{keys} {_ne(a['negate'])}{text}"]
    if name == "dynset":
        body = " . ".join(a["keys"])
        if a.get("timeout") is not None:
            body += f" timeout {format_time(a['timeout'])}"
        if a.get("limit"):
            body += " " + _limit_text(a["limit"])
        if a.get("meter"):
            return [f"meter {a['name']} size {a['size']} {{ {body} }}"]
        return [f"{a['op']} @{a['name']} {{ {body} }}"]
    if name == "ethertype":
        return [f"meta protocol {_ne(a['negate'])}{'ip' if a['version'] == 4 else 'ip6'}"]
    if name == "nftlimit":
        return [_limit_text(a)]
    if name == "iprange":
        out = []
        for key, side in (("src", "saddr"), ("dst", "daddr")):
            if a[key + "_range"] is not None:
                lo, hi = a[key + "_range"]
                out.append(f"{fam} {side} {_ne(a[key + '_negate'])}{lo}-{hi}")
        return out
    if name == "nftttl":
        texts = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in a["ranges"]]
        value = "{ " + ", ".join(texts) + " }" if a["braced"] else texts[0]
        op = "" if a["op"] == "==" else a["op"] + " "
        return [f"{a['field']} {op}{value}"]
    if name == "nftipsec":
        if a["kind"] == "secpath":
            return [f"meta ipsec {'exists' if a['exists'] else 'missing'}"]
        spnum = f" spnum {a['spnum']}" if a["spnum"] else ""
        return [f"ipsec {a['dir']}{spnum} {a['field']} {_ne(a['negate'])}{a['value']}"]
    if name == "connlimit":
        return [f"ct count {'over ' if a['above'] else ''}{a['limit']}"]
    if name in ("mark", "connmark"):
        head = "meta mark" if name == "mark" else "ct mark"
        if a["mask"] != 0xFFFFFFFF:  # nft prints the comparison after a mask with its operator
            return [f"{head} & 0x{a['mask']:08x} {'!=' if a['negate'] else '=='} 0x{a['value']:08x}"]
        return [f"{head} {_ne(a['negate'])}0x{a['value']:08x}"]
    if name == "pkttype":
        return [f"meta pkttype {_ne(a['negate'])}{a['type']}"]
    if name == "helper":
        return [f'ct helper {_ne(a["negate"])}"{a["helper"]}"']
    if name == "addrtype":
        out = []
        for key, side in (("src", "saddr"), ("dst", "daddr")):
            if a[key + "_type"] is not None:
                iif = " . iif" if a["limit_in"] else ""
                types = [t.lower() for t in sorted(a[key + "_type"])]
                out.append(f"fib {side}{iif} type {_ne(a[key + '_negate'])}{_values(types)}")
        return out
    if name == "limit":
        per_second = 10000 / int(a["avg"])
        for unit, mult in (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400)):
            value = per_second * mult
            if abs(value - round(value)) < 1e-9 and round(value) >= 1:
                text = f"limit rate {round(value)}/{unit}"
                break
        else:
            text = f"limit rate {round(per_second * 86400)}/day"
        return [text + (f" burst {a['burst']} packets" if a["burst"] != 5 else "")]
    if name == "comment":
        return []
    if name == "icmptypes":
        v6 = a["proto"] == PROTO_ICMPV6
        by_type = _ICMPV6_BY_TYPE if v6 else _ICMP_BY_TYPE
        types = [str(by_type.get(t, t)) for t in sorted(a["types"])]
        return [f"{'icmpv6' if v6 else 'icmp'} type {_ne(a['negate'])}{_values(types)}"]
    if name == "icmptypecodes":
        v6 = a["proto"] == PROTO_ICMPV6
        by_type = _ICMPV6_BY_TYPE if v6 else _ICMP_BY_TYPE
        codes = {v: k for k, v in (ICMPV6_CODES if v6 else ICMP_CODES).items()}
        kind = "icmpv6" if v6 else "icmp"
        pairs = [f"{by_type.get(t, t)} . {codes.get(c, c)}" for t, c in a["pairs"]]
        return [f"{kind} type . {kind} code {{ {', '.join(pairs)} }}"]
    if name == "rpfilter":
        mark = ". mark " if a.get("mark") else ""
        return [f"fib saddr {mark}. iif oif {'missing' if a['missing'] else 'exists'}"]
    if name == "l4proto":
        return [
            f"meta l4proto {_ne(a['negate'])}{_values([_PROTO_NAMES.get(p, str(p)) for p in a['protos']])}"
        ]
    if name == "ifname":
        names_ = [f'"{n}"' for n in a["names"]]
        return [f"{'iifname' if a['side'] == 'in' else 'oifname'} {_ne(a['negate'])}{_values(names_)}"]
    return [f"# {name} (not printable in nft)"]


def _map_text(m: dict) -> str:
    """``KEY [. KEY] map { k : v, ... }`` or ``... map @NAME``."""
    keys = " . ".join(m["keys"])
    if m.get("set"):
        return f"{keys} map @{m['name']}"
    kinds = [KEY_TYPES[k] for k in m["keys"]]
    items = []
    for member, value in zip(m["elements"], m["values"], strict=True):
        k = " . ".join(value_text(t, p) for t, p in zip(kinds, member, strict=True))
        v = " . ".join(value_text(t, p) for t, p in zip(m["data"], value, strict=True))
        items.append(f"{k} : {v}")
    return f"{keys} map {{ {', '.join(items)} }}"


def _limit_text(a: dict) -> str:
    """nft's limit: ``limit rate [over] N/unit [burst N packets]``, byte rates in the largest of
    bytes, kbytes, mbytes that divides them (nft's get_rate), a byte burst only when there is one."""
    unit = {1: "second", 60: "minute", 3600: "hour", 86400: "day", 604800: "week"}[int(a["unit"])]
    over = "over " if a["over"] else ""
    if not a["bytes"]:
        burst = f" burst {a['burst']} packets" if a["burst"] not in (0, 5) else ""
        return f"limit rate {over}{a['rate']}/{unit}{burst}"

    def size(n: int) -> str:
        names_ = ("bytes", "kbytes", "mbytes")
        i = 0
        while i < 2 and n and n % 1024 == 0:
            n //= 1024
            i += 1
        return f"{n} {names_[i]}"

    burst = f" burst {size(int(a['burst']))}" if a["burst"] else ""
    return f"limit rate {over}{size(int(a['rate']))}/{unit}{burst}"


def _statement(name: str, a: dict) -> str:
    if name == "LOG":
        words = ["log"]
        if a.get("prefix"):
            words.append(f'prefix "{a["prefix"]}"')
        if a.get("level", 4) != 4:
            words.append(f"level {_LEVELS.get(int(a['level']), a['level'])}")
        flags = int(a.get("flags", 0))
        if flags == 7:
            words.append("flags all")
        else:
            tcp = [w for bit, w in ((1, "sequence"), (2, "options")) if flags & bit]
            if tcp:
                words.append("flags tcp " + ",".join(tcp))
            if flags & 4:
                words.append("flags ip options")
        return " ".join(words)
    if name == "CTTIMEOUT":
        return f'ct timeout set "{a["object"]}"'
    if name == "FLOW_OFFLOAD":
        return f"flow add @{a['name']}"
    if name == "NFLOG":
        prefix = f'prefix "{a["prefix"]}" ' if a.get("prefix") else ""
        return f"log {prefix}group {a['group']}"
    if name == "TCPMSS":
        return "tcp option maxseg size set " + ("rt mtu" if a.get("clamp") else str(a["mss"]))
    if name == "NOTRACK":
        return "notrack"
    if name in ("MARK", "CONNMARK") and a.get("map"):
        return f"{'meta' if name == 'MARK' else 'ct'} mark set {_map_text(a['map'])}"
    if name == "MARK":
        return f"meta mark set {_mark_value('meta mark', a)}"
    if name == "CONNMARK":
        if a["mode"] == "save":
            return "ct mark set meta mark"
        if a["mode"] == "restore":
            return "meta mark set ct mark"
        return f"ct mark set {_mark_value('ct mark', a)}"
    if name == "CT":
        return f'ct helper set "{a.get("object") or a.get("helper")}"'
    return f"# {name}"


def _mark_value(head: str, a: dict) -> str:
    """A mark's new value as nft lists it: the number, or the old mark's bits changed as the kernel's
    bitwise expression ``(mark & keep) ^ flip`` says — bits cleared (``&``), flipped (``^``) and set
    (``|``), in that order (nft's netlink_parse_bitwise_bool)."""
    keep, flip = ~int(a["mask"]) & 0xFFFFFFFF, int(a["value"])
    if keep == 0:
        return f"0x{flip:08x}"
    words = [head]
    cleared = ~keep & ~flip & 0xFFFFFFFF
    if cleared:
        words.append(f"& 0x{~cleared & 0xFFFFFFFF:08x}")
    if keep & flip:
        words.append(f"^ 0x{keep & flip:08x}")
    if ~keep & flip:
        words.append(f"| 0x{~keep & flip & 0xFFFFFFFF:08x}")
    return " ".join(words)


def _keyed_text(types: tuple, parts: tuple) -> str:
    return " . ".join(value_text(k, p) for k, p in zip(types, parts, strict=True))


def _vmap(a: dict) -> str:
    key = a["key"]
    if key == "keys":
        head = " . ".join(a["keys"])
        if a.get("map"):
            return f"{head} vmap @{a['map']}"
        entries = sorted(a["entries"], key=lambda e: _order(e[0], False, tuple(a["types"])))
        words = [
            f"{_keyed_text(a['types'], v)} : {verdict}" + (f" {c}" if c else "") for v, verdict, c in entries
        ]
        return f"{head} vmap {{ {', '.join(words)} }}"
    if key == "numgen":
        head = f"numgen {a['mode']} mod {a['mod']}" + (f" offset {a['offset']}" if a["offset"] else "")
        words = []
        for (lo, hi), verdict, c in sorted(a["entries"], key=lambda e: e[0]):
            words.append(f"{lo if lo == hi else f'{lo}-{hi}'} : {verdict}" + (f" {c}" if c else ""))
        return f"{head} vmap {{ {', '.join(words)} }}"
    if a.get("map"):
        head = {"ct_state": "ct state", "l4proto": "meta l4proto"}.get(key, key)
        if key in ("sport", "dport"):
            head = f"{'tcp' if a['proto'] == PROTO_TCP else 'udp'} {key}"
        return f"{head} vmap @{a['map']}"
    words = []
    entries = list(a["entries"])
    # nft lists integer keys in ascending order (ct state by its bit: invalid 1, established 2,
    # related 4, new 8, untracked 64), names as they were added.
    if key == "ct_state":
        entries.sort(key=lambda e: _CT_BITS.get(e[0], 0))
    elif key in ("l4proto", "sport", "dport"):
        entries.sort(key=lambda e: e[0])
    for value, verdict, chain in entries:
        if key == "ct_state":
            text = str(value).lower()
        elif key in ("iifname", "oifname"):
            text = f'"{value}"'
        elif key == "l4proto":
            text = _PROTO_NAMES.get(value, str(value))
        else:
            lo, hi = value
            text = str(lo) if lo == hi else f"{lo}-{hi}"
        words.append(f"{text} : {verdict}" + (f" {chain}" if chain else ""))
    head = {"ct_state": "ct state", "l4proto": "meta l4proto"}.get(key, key)
    if key in ("sport", "dport"):
        head = f"{'tcp' if a['proto'] == PROTO_TCP else 'udp'} {key}"
    return f"{head} vmap {{ {', '.join(words)} }}"


def _verdict(rule: NfRule, family: str = "ip") -> list[str]:
    t = rule.target
    a = rule.target_args
    if not t:
        return []
    if t == "VMAP" and "entries" in a:
        return [_vmap(a)]
    if t in ("ACCEPT", "DROP", "RETURN"):
        return [t.lower()]
    if t == "REJECT":
        w = str(a["with"])
        if not a.get("nft"):
            return ["reject"]
        if w == "tcp-reset":
            return ["reject with tcp reset"]
        if w.startswith("icmpx-"):
            return [f"reject with icmpx {w[len('icmpx-') :]}"]
        kind = "icmpv6" if w.startswith("icmp6") else "icmp"
        return [f"reject with {kind} {_REJECT_NAMES.get(w, w)}"]  # nft 1.0 prints no "type"
    if t in ("SNAT", "DNAT") and a.get("map"):
        m = a["map"]
        word = a.get("word") or (
            ("ip6" if m["data"][0] == "ipv6_addr" else "ip") if len(m["data"]) > 1 else None
        )
        return [f"{t.lower()}{' ' + word if word else ''} to {_map_text(m)}" + _nat_flags(a)]
    if t in ("SNAT", "DNAT"):
        lo, hi = a["addresses"]
        ports = a.get("ports")
        # An IPv6 address (each end of a range) in brackets before a port, as nft prints it.
        shown = [f"[{x}]" if ports and x.version == 6 else str(x) for x in (lo, hi)]
        text = shown[0] if lo == hi else f"{shown[0]}-{shown[1]}"
        if ports:
            p, q = ports
            text += f":{p}" if p == q else f":{p}-{q}"
        # In an inet table nft names the address family of the translation.
        word = ("ip6 " if lo.version == 6 else "ip ") if family == "inet" else ""
        return [f"{t.lower()} {word}to {text}" + _nat_flags(a)]
    if t in ("MASQUERADE", "REDIRECT"):
        text = t.lower()
        if a.get("ports"):
            p, q = a["ports"]
            text += f" to :{p}" if p == q else f" to :{p}-{q}"
        return [text + _nat_flags(a)]
    return [f"{'goto' if rule.goto else 'jump'} {t}"]


def _nat_flags(a: dict) -> str:
    flags = [
        name
        for key, name in (
            ("random", "random"),
            ("random_fully", "fully-random"),
            ("persistent", "persistent"),
        )
        if a.get(key)
    ]
    return (" " + ",".join(flags)) if flags else ""


__all__ = ["list_ruleset", "render", "rule_text", "table_lines"]
