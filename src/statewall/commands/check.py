"""``statewall check -c FILE``: parse a configuration, report every problem in one pass, and account for
every line.

Errors and warnings are printed together in file order as ``file:line:col: ...``; a configuration with an
error is not applied (exit 2). Each line of an ASA configuration has one fate: modelled (applied by the
engine), no effect on traffic through the box (management, AAA for the box, SNMP, ...: counted on one
line, listed with ``--verbose``), or not modelled (a warning naming the gap). ``--strict`` makes warnings
errors; ``--json`` prints the same as one JSON document. The iptables and nftables dialects go through
the same driver, and their parsers also report every error of a file in one pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from ..dialects.errors import ConfigError
from ..policy import NfTable, Policy, Warning_
from . import EXIT_OK, EXIT_USAGE, UsageError, add_config_argument, load_config


def netfilter_tables(policy: Policy) -> list[tuple[str, NfTable]]:
    """The iptables/ip6tables tables (``filter``, ``ip6 nat``) and nftables tables (``table inet
    fw``) of a Linux configuration, labelled as the summary names them, in the order loaded."""
    out: list[tuple[str, NfTable]] = []
    for prefix, tables in (("", policy.netfilter), ("ip6 ", policy.ip6_netfilter)):
        out += [
            (prefix + name, t)
            for name, t in (tables or {}).items()
            if any(c.rules for c in t.chains.values())
        ]
    out += [(f"table {t.family} {t.name}", t) for t in policy.nft_tables]
    return out


def summarize(policy: Policy) -> str:
    """One line counting what the configuration defines, e.g. ``OK: 2 interfaces, 3 access rules, ...``;
    for iptables and nftables the rules and chains of each table (they have no access lists)."""
    if policy.dialect in ("iptables", "nftables"):
        parts = [_count(len(policy.interfaces), "interface")]
        for label, table in netfilter_tables(policy):
            rules = sum(len(c.rules) for c in table.chains.values())
            parts.append(f"{label}: {_count(rules, 'rule')} in {_count(len(table.chains), 'chain')}")
        if policy.nf_sets:
            parts.append(_count(len(policy.nf_sets), "set"))  # data maps among them
        vmaps = sum(len(t.vmaps) for t in policy.nft_tables)
        if vmaps:
            parts.append(_count(vmaps, "verdict map"))
        parts += [_count(len(policy.routes), "route"), _count(len(policy.warnings), "warning")]
        return "OK: " + ", ".join(parts)
    rules = sum(len(acl.rules) for acl in policy.access_lists.values())
    parts = [
        _count(len(policy.interfaces), "interface"),
        _count(rules, "access rule"),
        _count(len(policy.access_lists), "access list"),
        _count(len(policy.access_groups), "access group"),
        _count(len(policy.nat_rules), "NAT rule"),
        _count(len(policy.routes), "route"),
        _count(len(policy.warnings), "warning"),
    ]
    return "OK: " + ", ".join(parts)


def chain_lines(policy: Policy) -> list[str]:
    """``--verbose`` for iptables and nftables: each chain with its hook or policy and rule count."""
    out = []
    for label, table in netfilter_tables(policy):
        for chain in table.chains.values():
            if chain.hook is not None:
                kind = (
                    f"{chain.kind} hook {chain.hook.lower()} priority {chain.priority}, policy {chain.policy}"
                )
            elif chain.policy is not None:
                kind = f"built-in, policy {chain.policy}"
            else:
                kind = "user chain" if not policy.nft_tables else "regular chain"
            out.append(f"{label} chain {chain.name} ({kind}): {_count(len(chain.rules), 'rule')}")
    return out


def fates(policy: Policy) -> dict[str, int]:
    """How many configuration lines have each fate."""
    counts = {"modelled": 0, "no-effect": 0, "not-modelled": 0}
    for _, fate in policy.fates:
        counts[fate] = counts.get(fate, 0) + 1
    return counts


def fate_line(policy: Policy) -> str:
    c = fates(policy)
    return (
        f"lines: {c['modelled']} modelled, {c['no-effect']} with no effect on traffic through the box, "
        f"{c['not-modelled']} not modelled"
    )


def platform_line(policy: Policy) -> str | None:
    """The ASA platform the configuration runs with and its connection limit, and where that came from
    (--asa-platform, a transcript's show version, or statewall's default); None for other dialects."""
    if policy.dialect != "asa":
        return None
    if policy.platform is None:
        from ..dialects.asa import platform

        p = platform.default()
        return f"platform: {p.name}, connection limit {p.conn_max} (default; set it with --asa-platform)"
    from ..dialects.asa import platform

    origin = policy.conntrack.origins.get("max")
    if origin is None:
        where = "--asa-platform"
    elif origin.text.lstrip().startswith(":"):
        where = f"the running-config's Hardware line at {origin.file}:{origin.line}"
    else:
        where = f"show version at {origin.file}:{origin.line}"
    line = f"platform: {policy.platform}, connection limit {policy.conntrack.max} (from {where})"
    found = platform.lookup(policy.platform)
    plus = None if origin is None or found is None else platform.licence_unknown(found, origin.text)
    if plus is not None:
        model = policy.platform.removeprefix("ASA ")
        line += (
            f"; a running-config does not name the licence: with Security Plus the limit is {plus} "
            f"(--asa-platform '{model} security-plus')"
        )
    return line


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _record(severity: str, file: str, line: int, col: int, message: str, gap: str | None = None) -> dict:
    out = {"severity": severity, "file": file, "line": line, "col": col, "message": message}
    if gap is not None:
        out["gap"] = gap
    return out


def _warning_record(w: Warning_, strict: bool) -> dict:
    return _record("error" if strict else "warning", w.origin.file, w.origin.line, w.col, w.message, w.gap)


def _text(rec: dict) -> str:
    # Line 0: a finding about the configuration as a whole, not about one of its lines.
    where = rec["file"] + (f":{rec['line']}" if rec["line"] else "")
    where += f":{rec['col']}" if rec["col"] else ""
    prefix = "" if rec["severity"] == "error" and "strict" not in rec else f"{rec['severity']}: "
    return f"{where}: {prefix}{rec['message']}"


def run(args: argparse.Namespace) -> int:
    strict = args.strict
    try:
        policy = load_config(args.config, show_warnings=False)
    except ConfigError as exc:
        records = [_record("error", e.file, e.line, e.col, e.message) for e in exc.errors]
        records += [_warning_record(w, False) for w in getattr(exc, "warnings", [])]
        records.sort(key=lambda r: (r["line"], r["col"]))
        errors = sum(r["severity"] == "error" for r in records)
        if args.json:
            print(json.dumps({"file": args.config, "ok": False, "problems": records}, indent=1))
        else:
            for rec in records:
                print(_text(rec), file=sys.stderr)
            print(
                f"FAILED: {_count(errors, 'error')}, {_count(len(records) - errors, 'warning')}; "
                "nothing of this configuration is applied",
                file=sys.stderr,
            )
        return EXIT_USAGE
    except UsageError:
        raise
    records = [_warning_record(w, strict) for w in policy.warnings]
    for rec in records:
        if strict:
            rec["strict"] = True
    records.sort(key=lambda r: (r["line"] or float("inf"), r["col"]))  # policy-wide findings last
    failed = strict and bool(records)
    if args.json:
        doc = {
            "file": args.config,
            "ok": not failed,
            "dialect": policy.dialect,
            "problems": [{k: v for k, v in r.items() if k != "strict"} for r in records],
            # Per-line fates: the ASA dialect accounts for every line; None where a dialect does not.
            "lines": fates(policy) if policy.fates else None,
            "platform": platform_line(policy),
            "not_modelled": [
                {
                    "feature": u.feature,
                    "action": u.action,
                    "line": u.origin.line,
                    "col": u.col,
                    "acl": u.acl,
                    "interface": u.interface,
                }
                for u in policy.unmodelled
            ],
        }
        if policy.dialect in ("iptables", "nftables"):
            doc["tables"] = {
                label: {name: len(c.rules) for name, c in t.chains.items()}
                for label, t in netfilter_tables(policy)
            }
        if args.verbose:
            doc["no_effect"] = [o.line for o, fate in policy.fates if fate == "no-effect"]
        print(json.dumps(doc, indent=1))
        return EXIT_USAGE if failed else EXIT_OK
    for rec in records:
        print(_text(rec), file=sys.stderr)
    if args.verbose:
        for line in chain_lines(policy):
            print(line)
        for origin, fate in policy.fates:
            if fate == "no-effect":
                print(f"{origin.file}:{origin.line}: no effect on traffic through the box: {origin.text}")
    if failed:
        print(f"FAILED (--strict): {_count(len(records), 'warning')} treated as errors", file=sys.stderr)
        return EXIT_USAGE
    print(summarize(policy))
    features = Counter(w.gap for w in policy.warnings if w.gap)
    if features:
        print("not modelled: " + ", ".join(f"{name} ({n})" for name, n in sorted(features.items())))
    if policy.fates:
        print(fate_line(policy))
    if (line := platform_line(policy)) is not None:
        print(line)
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check",
        help="validate a configuration file",
        description="Parse a configuration and report every error and warning in one pass, in file order, "
        "as file:line:col: message; exit 2 when there is an error (nothing is applied). For an ASA "
        "configuration, say how many lines are modelled, have no effect on traffic through the box, or "
        "are not modelled (each line not modelled is a warning naming the gap); for iptables and "
        "nftables, how many rules and chains each table has (--verbose: per chain).",
    )
    add_config_argument(p)
    p.add_argument(
        "--strict", action="store_true", help="treat warnings as errors (exit 2 when there is one)"
    )
    p.add_argument("--json", action="store_true", help="print the problems and line counts as JSON")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also list the lines with no effect on traffic (iptables, nftables: each chain's rules)",
    )
    p.set_defaults(func=run)
