"""Netfilter tables being built: the commands that change them and the checks the kernel makes.

Owns the built-in chains of each table, the chain commands (``-A -I -D -R -N -X -F -P -E``) and the
check the kernel runs when a table is replaced: which hooks reach every chain (``mark_source_chains``),
loops between chains, and each target's hooks (DNAT only from PREROUTING/OUTPUT, MASQUERADE only from
POSTROUTING, ``--clamp-mss-to-pmtu`` not from PREROUTING/INPUT, ...). A command that would leave a
table the kernel refuses raises ``ConfigError`` and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...policy import NfChain, NfRule, NfTable, Origin
from ..errors import ConfigError
from .lexer import Token

# Built-in chains of each table, in the order the kernel (and iptables-save) lists them.
BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
# The order iptables-save prints tables in (the kernel's registration order as listed by
# /proc/net/ip_tables_names on a typical system is not stable; iptables-save follows it). statewall
# prints a fixed order.
TABLE_ORDER = ("raw", "mangle", "nat", "filter", "security")

# Hooks a target may be reached from (the kernel's xt_target.hooks and checkentry functions).
TARGET_HOOKS: dict[str, frozenset[str]] = {
    "MASQUERADE": frozenset({"POSTROUTING"}),
    "SNAT": frozenset({"POSTROUTING", "INPUT"}),
    "DNAT": frozenset({"PREROUTING", "OUTPUT"}),
    "REDIRECT": frozenset({"PREROUTING", "OUTPUT"}),
    "NETMAP": frozenset({"PREROUTING", "POSTROUTING", "OUTPUT", "INPUT"}),
    "REJECT": frozenset({"INPUT", "FORWARD", "OUTPUT"}),
    "SYNPROXY": frozenset({"INPUT", "FORWARD"}),
    "CT": frozenset({"PREROUTING", "OUTPUT"}),
    "NOTRACK": frozenset({"PREROUTING", "OUTPUT"}),
}
CLAMP_HOOKS = frozenset({"FORWARD", "OUTPUT", "POSTROUTING"})
CHAIN_NAME_MAX = 28  # XT_EXTENSION_MAXNAMELEN - 1


def new_table(name: str, origin: Origin) -> NfTable:
    table = NfTable(name, origin=origin)
    for chain in BUILTIN_CHAINS[name]:
        table.chains[chain] = NfChain(chain, policy="ACCEPT")
    return table


def rule_key(rule: NfRule) -> tuple:
    """What makes two rules the same rule for ``-D``: everything but counters and origin."""
    return (
        rule.match,
        rule.target,
        sorted(rule.target_args.items(), key=lambda kv: kv[0]),
        [(e.name, sorted(e.args.items(), key=lambda kv: kv[0])) for e in rule.matches_extra],
        rule.modules,
        rule.goto,
        rule.fragment,
    )


@dataclass(slots=True)
class RuleSite:
    """Where a rule's target was written, for errors found when its table is checked."""

    file: str
    token: Token | None


@dataclass(slots=True)
class Ruleset:
    """The tables of one family while a file is read. ``sites`` locates each rule (by id)."""

    family: int
    tables: dict[str, NfTable] = field(default_factory=dict)
    sites: dict[int, RuleSite] = field(default_factory=dict)

    def table(self, name: str, origin: Origin) -> NfTable:
        if name not in self.tables:
            self.tables[name] = new_table(name, origin)
        return self.tables[name]


def check_chain_name(file: str, tok: Token, name: str) -> None:
    if len(name) > CHAIN_NAME_MAX:
        raise ConfigError(
            file,
            tok.line,
            tok.col,
            f"chain name `{name}' too long (must be under {CHAIN_NAME_MAX + 1} chars)",
        )
    if not name or name[0] in "-!" or name in ("ACCEPT", "DROP", "RETURN", "QUEUE"):
        raise ConfigError(file, tok.line, tok.col, f"invalid chain name `{name}'")
    from .rules import TARGET_EXTENSIONS

    if name in TARGET_EXTENSIONS:
        raise ConfigError(file, tok.line, tok.col, f"chain name may not clash with target name `{name}'")


def references(table: NfTable, chain: str) -> int:
    """How many rules jump or go to ``chain`` (the "N references" of a listing)."""
    return sum(1 for c in table.chains.values() for r in c.rules if r.target == chain)


def check_table(table: NfTable, ruleset: Ruleset, file: str, blame: Token | None, fallback: Token) -> None:
    """The kernel's checks when the table is loaded; ``blame`` is the token of the command being
    applied (None: blame the offending rule, as iptables-restore's COMMIT does, or ``fallback``)."""
    hooks: dict[str, set[str]] = {name: set() for name in table.chains}

    def walk(chain: str, hook: str, path: list[str]) -> None:
        if chain in path:
            cycle = " -> ".join([*path[path.index(chain) :], chain])
            raise _blame(
                file,
                blame,
                None,
                ruleset,
                fallback,
                f"chains jump in a loop: {cycle} (Too many levels of symbolic links)",
            )
        if hook in hooks[chain] and path:
            return
        hooks[chain].add(hook)
        for rule in table.chains[chain].rules:
            if rule.target in table.chains and rule.target not in BUILTIN_CHAINS[table.name]:
                walk(rule.target, hook, [*path, chain])

    for builtin in BUILTIN_CHAINS[table.name]:
        walk(builtin, builtin, [])
    for name, chain in table.chains.items():
        reached = hooks[name]
        if not reached:
            continue
        for rule in chain.rules:
            allowed = TARGET_HOOKS.get(rule.target)
            what = rule.target
            if rule.target == "TCPMSS" and rule.target_args.get("clamp"):
                allowed, what = CLAMP_HOOKS, "TCPMSS --clamp-mss-to-pmtu"
            if allowed is not None and not reached <= allowed:
                bad = ", ".join(sorted(reached - allowed))
                where = f" (chain {name}, line {rule.origin.line})" if blame is not None else ""
                raise _blame(
                    file,
                    blame,
                    rule,
                    ruleset,
                    fallback,
                    f"{what}{where} would be reached from {bad}; the kernel allows it only in "
                    f"{', '.join(sorted(allowed))}",
                )


def _blame(
    file: str, blame: Token | None, rule: NfRule | None, ruleset: Ruleset, fallback: Token, message: str
) -> ConfigError:
    if blame is not None:
        return ConfigError(file, blame.line, blame.col, message)
    if rule is not None:
        site = ruleset.sites.get(id(rule))
        if site is not None and site.token is not None:
            return ConfigError(site.file, site.token.line, site.token.col, message)
        return ConfigError(rule.origin.file, rule.origin.line, 1, message)
    return ConfigError(file, fallback.line, fallback.col, message)
