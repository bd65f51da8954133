"""``statewall check -c FILE``: parse a configuration and say whether the engine can use it."""

from __future__ import annotations

import argparse

from ..policy import Policy
from . import EXIT_OK, add_config_argument, load_config


def summarize(policy: Policy) -> str:
    """One line counting what the configuration defines, e.g. ``OK: 2 interfaces, 3 access rules, ...``."""
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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def run(args: argparse.Namespace) -> int:
    policy = load_config(args.config)  # warnings go to stderr as they are found
    print(summarize(policy))
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check",
        help="validate a configuration file",
        description="Parse a configuration; print its warnings and a count of what it defines. "
        "Exit 2 with file:line:col on the first malformed command.",
    )
    add_config_argument(p)
    p.set_defaults(func=run)
