"""``statewall nft``: an nftables ruleset listed as ``nft list ruleset`` lists it.

    statewall nft -c FILE list ruleset

The file is read by the nftables dialect (``nft list ruleset`` output or an ``nft -f`` file with
statewall's ``#@statewall`` header); the listing is what ``nft list ruleset`` prints after ``nft -f
FILE``, counters included.
"""

from __future__ import annotations

import argparse
import sys

from ..dialects.nftables import list_ruleset
from . import EXIT_OK, UsageError, add_config_argument, load_config


def run(args: argparse.Namespace) -> int:
    policy = load_config(args.config)
    if policy.dialect != "nftables":
        raise UsageError(f"{args.config} is not an nftables configuration (it reads as {policy.dialect})")
    if args.words != ["list", "ruleset"]:
        raise UsageError(f"nft {' '.join(args.words)}: statewall knows 'nft list ruleset'")
    sys.stdout.write(list_ruleset(policy))
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "nft",
        help="list an nftables configuration as nft list ruleset does",
        description="nft list ruleset for a configuration in the nftables dialect.",
    )
    add_config_argument(p)
    p.add_argument("words", nargs="+", metavar="list ruleset", help="the nft command: list ruleset")
    p.set_defaults(func=run)
