"""``statewall show running-config -c FILE``: print a configuration back as the firewall holds it."""

from __future__ import annotations

import argparse

from ..config import render_policy
from . import EXIT_OK, UsageError, add_config_argument, load_config

# The ASA accepts any unambiguous abbreviation of a keyword ("show run").
WHAT = ("running-config",)


def _expand(word: str) -> str:
    matches = [w for w in WHAT if w.startswith(word.lower())]
    if len(matches) != 1:
        raise UsageError(f"unknown show target {word!r} (known: {', '.join(WHAT)})")
    return matches[0]


def run(args: argparse.Namespace) -> int:
    _expand(args.what)
    policy = load_config(args.config)
    text = render_policy(policy)
    print(text, end="" if text.endswith("\n") else "\n")
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "show",
        help="show running-config: print a configuration in ASA syntax",
        description="show running-config: the configuration as statewall understood it, in ASA form. "
        "The output parses back to the same policy.",
    )
    p.add_argument(
        "what", metavar="running-config", help="what to show (running-config; abbreviations allowed)"
    )
    add_config_argument(p)
    p.set_defaults(func=run)
