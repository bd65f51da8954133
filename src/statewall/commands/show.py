"""``statewall show running-config [policy-map] -c FILE``: print a configuration back as the firewall
holds it; ``show service-policy``: the service policies it applies, class by class (counters at 0: no
traffic has passed)."""

from __future__ import annotations

import argparse

from ..config import render_policy
from ..logfmt.mpf import format_running_config_policy_map, format_show_service_policy
from . import EXIT_OK, UsageError, add_config_argument, load_config

# The ASA accepts any unambiguous abbreviation of a keyword ("show run").
WHAT = ("running-config", "service-policy")


def _expand(word: str) -> str:
    matches = [w for w in WHAT if w.startswith(word.lower())]
    if len(matches) != 1:
        raise UsageError(f"unknown show target {word!r} (known: {', '.join(WHAT)})")
    return matches[0]


def run(args: argparse.Namespace) -> int:
    what = _expand(args.what)
    if args.section is not None and (what != "running-config" or args.section != "policy-map"):
        raise UsageError(f"unknown show target {args.what} {args.section!r}")
    policy = load_config(args.config)
    if what == "service-policy":
        text = format_show_service_policy(policy)
    elif args.section == "policy-map":
        text = format_running_config_policy_map(policy)
    else:
        text = render_policy(policy)
    print(text, end="" if text.endswith("\n") else "\n")
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "show",
        help="show running-config: print a configuration in ASA syntax",
        description="show running-config: the configuration as statewall understood it, in ASA form. "
        "The output parses back to the same policy. 'show iptables ...' and 'show ip6tables ...' are the "
        "iptables and ip6tables commands (statewall show iptables -c FILE -t mangle -L -n -v -x).",
    )
    p.add_argument(
        "what",
        metavar="running-config|service-policy",
        help="what to show (abbreviations allowed)",
    )
    p.add_argument(
        "section", nargs="?", metavar="policy-map", help="running-config policy-map: that part only"
    )
    add_config_argument(p)
    p.set_defaults(func=run)
