"""``iptables -L`` output: a table's chains with their rules and counters, column for column.

Owns the listing format of iptables 1.8 (print_header / print_firewall and each extension's
``print``): ``-n`` (numeric), ``-v`` (counters and interfaces), ``-x`` (exact counters instead of
K/M/G) and ``--line-numbers``. Two deliberate choices: the "prot" column shows protocol names
(``tcp``), as iptables does except 1.8.9, which printed numbers with ``-n`` (netfilter bugzilla
1729); and without ``-n`` statewall resolves no host names (it never asks a resolver), printing
``anywhere`` and service names only.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...policy import BUILTIN, NfChain, NfRule, NfTable, Policy, PortMatch
from . import modules, names
from .render import module_instances, nat_range, netmap_to, rate, rule_spec
from .tables import BUILTIN_CHAINS, new_table, references

Counters = Mapping[tuple[str, int], tuple[int, int]]
_PORT_NAMES = {}
for _name, _port in names.SERVICES.items():
    _PORT_NAMES.setdefault(_port, _name)


def format_listing(
    policy: Policy,
    table: str,
    counters: Counters | None = None,
    numeric: bool = True,
    verbose: bool = True,
    exact: bool = True,
    *,
    family: int = 4,
    chain: str | None = None,
    line_numbers: bool = False,
) -> str:
    """``iptables -t TABLE -L [CHAIN]`` with the given flags (``-n -v -x`` by default).

    ``counters`` maps ``(chain, rule index)`` to ``(packets, bytes)``, with index -1 for a built-in
    chain's policy (``Netfilter.counters`` returns this); None lists the counters the rules were
    loaded with. A table the policy does not have is listed as Linux has it: empty, policies ACCEPT.
    """
    nft, chains = _listed(policy, table, family, chain)
    blocks = []
    for c in chains:
        blocks.append(_chain_block(nft, c, counters, numeric, verbose, exact, family, line_numbers))
    return "\n".join(blocks)


def format_rules(
    policy: Policy,
    table: str,
    counters: Counters | None = None,
    verbose: bool = False,
    *,
    family: int = 4,
    chain: str | None = None,
) -> str:
    """``iptables -t TABLE -S [CHAIN]``: the rules as commands; ``verbose`` adds ``-c packets bytes``."""
    nft, chains = _listed(policy, table, family, chain)
    lines = []
    for c in chains:
        if c.policy is not None:
            p, b = counters.get((c.name, -1), (0, 0)) if counters is not None else c.counters
            lines.append(f"-P {c.name} {c.policy}" + (f" -c {p} {b}" if verbose else ""))
        else:
            lines.append(f"-N {c.name}")
    for c in chains:
        for index, rule in enumerate(c.rules):
            counts = counters.get((c.name, index), (0, 0)) if counters is not None else rule.counters
            spec = rule_spec(rule, family, counts if verbose else None)
            lines.append(f"-A {c.name}" + (f" {spec}" if spec else ""))
    return "\n".join(lines) + "\n"


def _listed(policy: Policy, table: str, family: int, chain: str | None) -> tuple[NfTable, list[NfChain]]:
    """The table ``-t`` names (as Linux has one the policy lacks: empty, policies ACCEPT) and the chains
    to list: ``chain``, or all of them in iptables' order."""
    tables = (policy.ip6_netfilter if family == 6 else policy.netfilter) or {}
    if table not in BUILTIN_CHAINS:
        raise ValueError(f"table {table!r} does not exist")
    nft = tables.get(table) or new_table(table, BUILTIN)
    chains = _chains(nft)
    if chain is not None:
        if chain not in nft.chains:
            raise ValueError(f"chain {chain!r} does not exist in table {table}")
        chains = [nft.chains[chain]]
    return nft, chains


def _chains(table: NfTable) -> list[NfChain]:
    builtins = [table.chains[n] for n in BUILTIN_CHAINS[table.name] if n in table.chains]
    return builtins + sorted((c for c in table.chains.values() if c.policy is None), key=lambda c: c.name)


def print_num(number: int, exact: bool, notable: bool = False) -> str:
    """xtables_print_num: ``%8llu `` exact, else up to five digits then K, M, G, T."""
    if exact:
        return f"{number} " if notable else f"{number:8d} "
    if number <= 99999:
        return f"{number} " if notable else f"{number:5d} "
    for unit in "KMG":
        number = (number + 500) // 1000
        if number <= 9999:
            return f"{number}{unit} " if notable else f"{number:4d}{unit} "
    number = (number + 500) // 1000
    return f"{number}T " if notable else f"{number:4d}T "


def _chain_block(
    table: NfTable,
    chain: NfChain,
    counters: Counters | None,
    numeric: bool,
    verbose: bool,
    exact: bool,
    family: int,
    line_numbers: bool,
) -> str:
    lines = []
    if chain.policy is not None:
        p, b = counters.get((chain.name, -1), (0, 0)) if counters is not None else chain.counters
        if verbose:
            lines.append(
                f"Chain {chain.name} (policy {chain.policy} {print_num(p, exact, True)}packets, "
                f"{print_num(b, exact, True)}bytes)"
            )
        else:
            lines.append(f"Chain {chain.name} (policy {chain.policy})")
    else:
        lines.append(f"Chain {chain.name} ({references(table, chain.name)} references)")
    head = ""
    if line_numbers:
        head += f"{'num':<4} "
    if verbose:
        head += f"{'pkts':>8} {'bytes':>10} " if exact else f"{'pkts':>5} {'bytes':>5} "
    head += f"{'target':<9} "
    head += " prot opt"
    if verbose:
        head += f" {'in':<6} {'out':<6} "
    head += f" {'source':<19} "
    head += f" {'destination':<19} "
    lines.append(head)
    for index, rule in enumerate(chain.rules):
        pk, by = counters.get((chain.name, index), (0, 0)) if counters is not None else rule.counters
        lines.append(_rule_line(rule, index, pk, by, numeric, verbose, exact, family, line_numbers))
    return "\n".join(lines) + "\n"


def _addr(nets: tuple, negate: bool, numeric: bool, family: int) -> str:
    if not nets:
        text = "anywhere" if not numeric else ("0.0.0.0/0" if family == 4 else "::/0")
    else:
        net = nets[0]
        if net.prefixlen == 0 and not numeric:
            text = "anywhere"
        elif net.prefixlen == net.max_prefixlen:
            text = str(net.network_address)
        else:
            text = f"{net.network_address}/{net.prefixlen}"
    return ("!" if negate else " ") + f"{text:<19} "


def _protocol(proto: int | None, numeric: bool) -> str:
    p = proto or 0
    if not numeric and p in names.SAVE_PROTOCOL_NAMES:
        return names.SAVE_PROTOCOL_NAMES[p]
    return names.LISTING_PROTOCOL_NAMES.get(p, str(p))


def _rule_line(
    rule: NfRule,
    index: int,
    pkts: int,
    nbytes: int,
    numeric: bool,
    verbose: bool,
    exact: bool,
    family: int,
    line_numbers: bool,
) -> str:
    m = rule.match
    out = ""
    if line_numbers:
        out += f"{index + 1:<4} "
    if verbose:
        out += print_num(pkts, exact) + print_num(nbytes, exact)
    target = "CT" if rule.target == "NOTRACK" else rule.target
    out += f"{target:<9} "
    out += ("!" if m.protocol_negate else " ") + f"{_protocol(m.protocol, numeric):<5}"
    frag = rule.fragment
    out += ("!" if frag is False else "-") + ("f" if frag is not None else "-") + " "
    if verbose:
        any_if = "*" if numeric else "any"
        in_if = ("!" if m.in_interface_negate else "") + (m.in_interface or any_if)
        out_if = ("!" if m.out_interface_negate else "") + (m.out_interface or any_if)
        out += f" {in_if:<6} {out_if:<6} "
    out += _addr(m.sources, m.source_negate, numeric, family)
    out += _addr(m.destinations, m.destination_negate, numeric, family)
    if rule.goto:
        out += "[goto] "
    for name, _folded, args in module_instances(rule):
        out += match_text(name, args, numeric)
    out += target_text(rule, family)
    return out


def _port(port: int, numeric: bool) -> str:
    return str(port) if numeric else _PORT_NAMES.get(port, str(port))


def _port_field(name: str, pm: PortMatch | None, negate: bool, numeric: bool) -> str:
    """libxt_tcp print_ports: ``spt:N``, ``spts:A:B``, ``!`` after the colon; 0:65535 is not shown."""
    if pm is None:
        return ""
    low = pm.low
    high = pm.high if pm.op == "range" and pm.high is not None else pm.low
    if low == 0 and high == 65535 and not negate:
        return ""
    inv = "!" if negate else ""
    if low == high:
        return f" {name}:{inv}{_port(low, numeric)}"
    return f" {name}s:{inv}{_port(low, numeric)}:{_port(high, numeric)}"


def _hexflags(value: int) -> str:
    return f"0x{value:02X}"


def match_text(name: str, a: dict, numeric: bool) -> str:
    """One match module as the listing prints it (each extension's ``print``)."""
    if name in ("tcp", "udp"):
        text = f" {name}"
        text += _port_field("spt", a.get("sport"), bool(a.get("sport_negate")), numeric)
        text += _port_field("dpt", a.get("dport"), bool(a.get("dport_negate")), numeric)
        if name == "tcp" and a.get("flags") is not None:
            mask, comp = a["flags"]
            inv = "!" if a.get("flags_negate") else ""
            if numeric:
                text += f" flags:{inv}{_hexflags(mask)}/{_hexflags(comp)}"
            else:
                text += f" flags:{inv}{_flag_names(mask)}/{_flag_names(comp)}"
        return text
    if name in ("icmp", "icmp6"):
        text = " icmp" if name == "icmp" else " ipv6-icmp"
        if a.get("negate"):
            text += " !"
        t = a.get("type")
        c = a.get("code")
        text += f"type {0xFF if t is None else t}"
        if t is not None and c is not None:
            text += f" code {c}"
        return text
    if name == "multiport":
        text = f" multiport {a['dir']} "
        if a.get("negate"):
            text += " !"
        parts = []
        for p in a["ports"]:
            if p.op == "range" and p.high is not None and p.high != p.low:
                parts.append(f"{_port(p.low, numeric)}:{_port(p.high, numeric)}")
            else:
                parts.append(_port(p.low, numeric))
        return text + ",".join(parts)
    if name == "conntrack" and set(a) - {"states", "negate"}:
        return modules.conntrack_listing(a, numeric)
    if name in modules.SPECS:
        return modules.SPECS[name].listing(a, numeric)
    if name in ("state", "conntrack"):
        states = ",".join(s for s in names.CTSTATES if s in a["states"])
        word = "state" if name == "state" else "ctstate"
        return f"{' !' if a.get('negate') else ''} {word} {states}"
    if name == "limit":
        return f" limit: avg {rate(int(a['avg']))} burst {a['burst']}"
    if name == "comment":
        return f" /* {a['comment']} */"
    if name == "helper":
        return f' helper match {"! " if a.get("negate") else ""}"{a["helper"]}"'
    if name == "connlimit":
        direction = "dst" if a.get("daddr") else "src"
        return f" #conn {direction}/{a['mask']} {'>' if a['above'] else '<='} {a['limit']}"
    return f" {name}"


def _flag_names(value: int) -> str:
    if value == names.TCP_FLAGS_ALL:
        return "ALL"
    if value == 0:
        return "NONE"
    return ",".join(n for n, bit in names.TCP_FLAGS.items() if value & bit)


def target_text(rule: NfRule, family: int) -> str:
    """The target extension's part of the listing line."""
    t = rule.target
    a = rule.target_args
    if t == "REJECT":
        return f" reject-with {a['with']}"
    if t == "LOG":
        text = f" LOG flags {a.get('flags', 0)} level {a.get('level', 4)}"
        if a.get("prefix"):
            text += f' prefix "{a["prefix"]}"'
        return text
    if t == "MASQUERADE":
        text = ""
        if a.get("ports") is not None:
            lo, hi = a["ports"]
            text += f" masq ports: {lo}" + (f"-{hi}" if hi != lo else "")
        if a.get("random"):
            text += " random"
        if a.get("random_fully"):
            text += " random-fully"
        return text
    if t == "NETMAP":
        return f" to:{netmap_to(a)}"
    if t in ("SNAT", "DNAT"):
        text = f" to:{nat_range(a, family)}"
        if a.get("random"):
            text += " random"
        if a.get("random_fully"):
            text += " random-fully"
        if a.get("persistent"):
            text += " persistent"
        return text
    if t == "REDIRECT":
        text = ""
        if a.get("ports") is not None:
            lo, hi = a["ports"]
            text += f" redir ports {lo}" + (f"-{hi}" if hi != lo else "")
        if a.get("random"):
            text += " random"
        return text
    if t == "TCPMSS":
        return " TCPMSS clamp to PMTU" if a.get("clamp") else f" TCPMSS set {a['mss']}"
    if t == "CT":
        text = " CT"
        if a.get("notrack"):
            text += " notrack"
        if a.get("helper"):
            text += f" helper {a['helper']}"
        if a.get("zone") is not None:
            text += f" zone {a['zone']}"
        return text
    if t == "NOTRACK":
        return " NOTRACK"
    if t in modules.TARGETS:
        return modules.TARGETS[t].listing(a)
    if t == "SYNPROXY":
        text = " SYNPROXY "
        if a.get("sack_perm"):
            text += "sack-perm "
        if a.get("timestamp"):
            text += "timestamp "
        if a.get("wscale") is not None:
            text += f"wscale {a['wscale']} "
        if a.get("mss") is not None:
            text += f"mss {a['mss']} "
        if a.get("ecn"):
            text += "ecn "
        return text
    return ""


__all__ = ["format_listing", "format_rules", "match_text", "print_num", "target_text"]
