"""``statewall nft``: an nftables ruleset listed as ``nft list ruleset`` lists it.

    statewall nft -c FILE list ruleset [--after-replay CAPTURE ...] [--ingress IFACE=CAPTURE ...] [--log]

The file is read by the nftables dialect (``nft list ruleset`` output or an ``nft -f`` file with
statewall's ``#@statewall`` header); the listing is what ``nft list ruleset`` prints after ``nft -f
FILE``. With ``--after-replay`` the captures run through the engine first, as ``statewall replay``
runs them (netfilter's path, the nftables chains at their priorities), and the rules' counters are
those the replay left, the dynamic and timeout sets' elements those it left (with their ``expires``
from the replay's last packet); ``--log`` prints the ``log`` statements' lines.
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
    counters = elements = None
    if args.after_replay or args.ingress:
        from .iptables import replay_after

        replay = replay_after(policy, args)
        counters = replay.netfilter.nft_counters()
        elements = replay.netfilter.nft_elements(replay.now)
        if args.log:
            for line in replay.logs:
                print(f"kernel: {line}")
    elif args.log:
        raise UsageError("--log prints the log lines of --after-replay")
    sys.stdout.write(list_ruleset(policy, counters, elements))
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "nft",
        help="list an nftables configuration as nft list ruleset does",
        description="nft list ruleset for a configuration in the nftables dialect, optionally after "
        "running captures through it (--after-replay).",
    )
    add_config_argument(p)
    p.add_argument("words", nargs="+", metavar="list ruleset", help="the nft command: list ruleset")
    p.add_argument(
        "--after-replay",
        nargs="+",
        metavar="CAPTURE",
        help="run these captures through the rules first (ingress from the routes)",
    )
    p.add_argument("--ingress", action="append", metavar="IFACE=CAPTURE", help="a capture entering on IFACE")
    p.add_argument("--log", action="store_true", help="print the log statements' lines of the replay")
    p.set_defaults(func=run)
