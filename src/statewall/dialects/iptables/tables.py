"""Netfilter tables being built: the commands that change them and the checks the kernel makes.

Owns the built-in chains of each table, the chain commands (``-A -I -D -R -N -X -F -P -E``) and the
check the kernel runs when a table is replaced: which hooks reach every chain (``mark_source_chains``),
loops between chains, and each target's hooks (DNAT only from PREROUTING/OUTPUT, MASQUERADE only from
POSTROUTING, ``--clamp-mss-to-pmtu`` not from PREROUTING/INPUT, ...). A command that would leave a
table the kernel refuses raises ``ConfigError`` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ...policy import NfChain, NfRule, NfTable, Origin
from ..errors import ConfigError
from .lexer import Token

# Hooks a match may be reached from (xt_match.hooks): the mac match needs a received frame.
MATCH_HOOKS: dict[str, frozenset[str]] = {"mac": frozenset({"PREROUTING", "INPUT", "FORWARD"})}

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
    # Each table's reachability, kept up to date command by command (commands outside restore blocks).
    reach: dict[str, Reach] = field(default_factory=dict)

    def table(self, name: str, origin: Origin) -> NfTable:
        if name not in self.tables:
            self.tables[name] = new_table(name, origin)
        return self.tables[name]


class UserChains:
    """The user chains of a table as a live view (``name in chains``), for rules that jump."""

    __slots__ = ("table",)

    def __init__(self, table: NfTable) -> None:
        self.table = table

    def __contains__(self, name: object) -> bool:
        chain = self.table.chains.get(name)  # type: ignore[arg-type]
        return chain is not None and chain.policy is None


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


# iptables-nft: a rule that jumps from a chain 15 jumps below its base chain is refused with EMLINK
# ("RULE_APPEND failed (Too many links)"): nf_tables validates jumps against NFT_JUMP_STACK_SIZE (16).
# iptables-legacy has no depth limit (ip_tables.c sizes its jump stack by the number of chains).
NFT_MAX_DEPTH = 15


class Reach:
    """Which hooks reach each chain of a table, how deep, and its jumps, kept as the table grows.

    The kernel checks a whole table whenever one command replaces it; statewall gets the same answer
    without walking the table again for every command: adding rules only adds hooks to the chains
    below, so ``add`` checks only what the new rules change. A command that removes or renames
    (``-D -R -F -X -E``) marks the table ``dirty``; the next check walks it whole (``full``). Every
    walk is iterative: no Python recursion, whatever the depth of the chains.
    """

    def __init__(self, table: NfTable, nft: bool = False) -> None:
        self.table = table
        self.nft = nft
        self.hooks: dict[str, set[str]] = {}
        self.depth: dict[str, int] = {}
        self.children: dict[str, dict[str, int]] = {}
        self.dirty = True
        self.deep_warned = False

    def _target(self, rule: NfRule) -> str | None:
        chain = self.table.chains.get(rule.target)
        return rule.target if chain is not None and chain.policy is None else None

    # -- the whole table ---------------------------------------------------------------------------

    def full(self, ctx: CheckContext) -> None:
        table = self.table
        self.children = {name: {} for name in table.chains}
        for name, chain in table.chains.items():
            kids = self.children[name]
            for rule in chain.rules:
                t = self._target(rule)
                if t is not None:
                    kids[t] = kids.get(t, 0) + 1
        builtins = [b for b in BUILTIN_CHAINS[table.name] if b in table.chains]
        order = self._dfs(builtins, ctx)  # raises on a loop; post-order of what the hooks reach
        self.hooks = {name: set() for name in table.chains}
        self.depth = {}
        for b in builtins:
            self.hooks[b].add(b)
            self.depth[b] = 0
        # Reverse post-order is a topological order of the reached chains (no loops remain).
        for name in reversed(order):
            hs = self.hooks[name]
            d = self.depth.get(name)
            for kid in self.children[name]:
                self.hooks[kid] |= hs
                if d is not None and d + 1 > self.depth.get(kid, -1):
                    self.depth[kid] = d + 1
        self.dirty = False
        for name in self.table.chains:
            self._check_rules(name, ctx)
        for name in reversed(order):
            self._check_depth(name, ctx)

    def _dfs(self, roots: list[str], ctx: CheckContext, closing: tuple[str, str] | None = None) -> list[str]:
        """Post-order of the chains below ``roots``; a loop among them is the kernel's ELOOP.
        ``closing`` is a jump (from, to) just added, named first in the loop's path when it closes it."""
        white, gray, black = 0, 1, 2
        color: dict[str, int] = {}
        order: list[str] = []
        for root in roots:
            if color.get(root, white) != white:
                continue
            color[root] = gray
            path = [root]
            stack = [iter(self.children.get(root, ()))]
            while stack:
                kid = next(stack[-1], None)
                if kid is None:
                    stack.pop()
                    done = path.pop()
                    color[done] = black
                    order.append(done)
                    continue
                c = color.get(kid, white)
                if c == gray:
                    cycle = [*path[path.index(kid) :], kid]
                    if closing is not None and closing[1] == cycle[0] and closing[0] in cycle:
                        at = cycle.index(closing[0])
                        cycle = [*cycle[at:-1], *cycle[:at], closing[0]]
                    shown = " -> ".join(cycle)
                    if len(cycle) > 9:
                        shown = (
                            f"{' -> '.join(cycle[:4])} -> ... ({len(cycle) - 1} chains) ... -> "
                            f"{' -> '.join(cycle[-4:])}"
                        )
                    raise ctx.error(
                        None, f"chains jump in a loop: {shown} (Too many levels of symbolic links)"
                    )
                if c == white:
                    color[kid] = gray
                    path.append(kid)
                    stack.append(iter(self.children.get(kid, ())))
        return order

    # -- one command -------------------------------------------------------------------------------

    def new_chain(self, name: str) -> None:
        if not self.dirty:
            self.hooks[name] = set()
            self.children[name] = {}

    def add(self, chain: str, rules: list[NfRule], ctx: CheckContext) -> None:
        """Rules were added to ``chain``: check them and what their jumps now reach."""
        if self.dirty:
            self.full(ctx)
            return
        kids = self.children[chain]
        jumps = []
        for rule in rules:
            t = self._target(rule)
            if t is not None:
                kids[t] = kids.get(t, 0) + 1
                jumps.append(t)
        reached = self.hooks[chain]
        if not reached:
            return  # the kernel checks what the hooks reach only
        for rule in rules:
            self._check_rule(chain, rule, reached, ctx)
        builtin = self.table.chains[chain].policy is not None
        for target in jumps:
            if not builtin or not self.hooks[target]:
                # A jump from a user chain may close a loop; a chain nothing reached before may hold one.
                self._dfs([target], ctx, closing=(chain, target))
            self._spread(chain, target, ctx)

    def _spread(self, start: str, target: str, ctx: CheckContext) -> None:
        """Hooks and depth of ``start`` flow down through ``target``'s chains (no loops: checked)."""
        hooks = self.hooks[start]
        depth = self.depth.get(start, 0) + 1
        todo = [(target, depth)]
        while todo:
            name, d = todo.pop()
            new_hooks = hooks - self.hooks[name]
            deeper = d > self.depth.get(name, -1)
            if not new_hooks and not deeper:
                continue
            if new_hooks:
                self.hooks[name] |= new_hooks
                self._check_rules(name, ctx)
            if deeper:
                self.depth[name] = d
                self._check_depth(name, ctx)
            for kid in self.children[name]:
                if hooks - self.hooks[kid] or d + 1 > self.depth.get(kid, -1):
                    todo.append((kid, d + 1))

    # -- the checks --------------------------------------------------------------------------------

    def _check_rules(self, name: str, ctx: CheckContext) -> None:
        reached = self.hooks[name]
        if reached:
            for rule in self.table.chains[name].rules:
                self._check_rule(name, rule, reached, ctx)

    def _check_rule(self, name: str, rule: NfRule, reached: set[str], ctx: CheckContext) -> None:
        for ext in rule.matches_extra:
            hooks = MATCH_HOOKS.get(ext.name)
            if hooks is not None and not reached <= hooks:
                where = f" (chain {name}, line {rule.origin.line})" if ctx.blame is not None else ""
                raise ctx.error(
                    rule,
                    f"the {ext.name} match{where} would be reached from "
                    f"{', '.join(sorted(reached - hooks))}; "
                    f"the kernel allows it only in {', '.join(sorted(hooks))}",
                )
        allowed = TARGET_HOOKS.get(rule.target)
        what = rule.target
        if rule.target == "TCPMSS" and rule.target_args.get("clamp"):
            allowed, what = CLAMP_HOOKS, "TCPMSS --clamp-mss-to-pmtu"
        if allowed is not None and not reached <= allowed:
            bad = ", ".join(sorted(reached - allowed))
            where = f" (chain {name}, line {rule.origin.line})" if ctx.blame is not None else ""
            raise ctx.error(
                rule,
                f"{what}{where} would be reached from {bad}; the kernel allows it only in "
                f"{', '.join(sorted(allowed))}",
            )

    def _check_depth(self, name: str, ctx: CheckContext) -> None:
        if self.depth.get(name, 0) <= NFT_MAX_DEPTH:
            return
        message = (
            f"chain {name} is {self.depth[name]} jumps below its built-in chain; iptables-nft refuses "
            f"more than {NFT_MAX_DEPTH} (Too many links)"
        )
        if self.nft:
            # Blame the jump that goes one level too deep, as iptables-nft-restore names its line.
            above = self.depth[name] - 1
            culprit = next(
                (
                    r
                    for c, chain in self.table.chains.items()
                    if self.depth.get(c) == above
                    for r in chain.rules
                    if r.target == name
                ),
                None,
            )
            raise ctx.error(culprit, message)
        if not self.deep_warned and ctx.warn is not None:
            self.deep_warned = True
            ctx.warn(message + "; iptables-legacy accepts it")


@dataclass(slots=True)
class CheckContext:
    file: str
    blame: Token | None
    ruleset: Ruleset
    fallback: Token
    warn: Callable[[str], None] | None = None

    def error(self, rule: NfRule | None, message: str) -> ConfigError:
        return _blame(self.file, self.blame, rule, self.ruleset, self.fallback, message)


def check_table(
    table: NfTable,
    ruleset: Ruleset,
    file: str,
    blame: Token | None,
    fallback: Token,
    *,
    nft: bool = False,
    warn: Callable[[str], None] | None = None,
) -> None:
    """The kernel's checks when the table is loaded, over the whole table; ``blame`` is the token of
    the command being applied (None: blame the offending rule, as iptables-restore's COMMIT does, or
    ``fallback``)."""
    Reach(table, nft).full(CheckContext(file, blame, ruleset, fallback, warn))


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
