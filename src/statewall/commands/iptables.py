"""``statewall iptables`` / ``statewall ip6tables``: a ruleset listed as the real tools list it.

    statewall iptables -c FILE [-t TABLE] -L [CHAIN] [-n] [-v] [-x] [--line-numbers]
                       [--after-replay CAPTURE ...] [--ingress IFACE=CAPTURE ...]
    statewall iptables -c FILE [-t TABLE] -S [CHAIN] [-v]
    statewall iptables -c FILE --save                    (iptables-save, both families and the header)
    statewall iptables -c FILE --after-replay CAPTURE ... --conntrack   (conntrack -L after the replay)
    statewall iptables -c FILE --after-replay CAPTURE ... --events      (conntrack -E of the replay)

Short options combine as iptables' do (``-nvxL``). With ``--after-replay`` the captures run through the
engine first, as ``statewall replay`` runs them (``EngineReplay`` below), and the
counters, LOG lines (``--log``) and connections are those the engine's netfilter path left.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..dialects.iptables import format_listing, format_rules, render
from ..dialects.iptables.tables import BUILTIN_CHAINS
from ..events import CtEvent, NfLog
from ..logfmt.linux import conntrack_line, conntrack_listing
from ..policy import Policy
from . import EXIT_OK, UsageError, add_config_argument, load_config


def run(args: argparse.Namespace) -> int:
    family = 6 if args.command == "ip6tables" else 4
    policy = load_config(args.config)
    if policy.dialect != "iptables":
        raise UsageError(f"{args.config} is not an iptables configuration (it reads as {policy.dialect})")
    if args.table not in BUILTIN_CHAINS:
        raise UsageError(f"can't initialize {args.command} table `{args.table}': Table does not exist")
    if args.save:
        sys.stdout.write(render(policy))
        return EXIT_OK
    counters = None
    replay = None
    if args.after_replay or args.ingress:
        replay = replay_after(policy, args)
        counters = replay.netfilter.counters(args.table, family)
        if args.log:
            for line in replay.logs:
                print(f"kernel: {line}")
        if args.events:
            for line in replay.conntrack_events:
                print(line)
    if args.conntrack or args.events:
        if replay is None:
            raise UsageError("--conntrack and --events tell what happened during --after-replay")
        if args.conntrack:
            sys.stdout.write(replay.conntrack_listing())
            return EXIT_OK
        if args.list is None and args.list_rules is None:
            return EXIT_OK  # the events were the question
    if args.list_rules is not None:
        chain = args.list_rules or None
        try:
            text = format_rules(policy, args.table, counters, args.verbose, family=family, chain=chain)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        sys.stdout.write(text)
        return EXIT_OK
    if args.list is None:
        raise UsageError("one of -L, -S or --save is needed")
    try:
        text = format_listing(
            policy,
            args.table,
            counters,
            numeric=args.numeric,
            verbose=args.verbose,
            exact=args.exact,
            family=family,
            chain=args.list or None,
            line_numbers=args.line_numbers,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sys.stdout.write(text)
    return EXIT_OK


def replay_after(policy: Policy, args: argparse.Namespace) -> EngineReplay:
    """Run the captures of ``--after-replay`` (ingress chosen by routing) and ``--ingress IFACE=CAPTURE``
    through the engine, as ``iptables`` and ``nft`` both do before listing their counters."""
    from ..pcapio import CaptureError
    from ..replay import ReplayError

    captures: list[tuple[str | None, str]] = [(None, path) for path in args.after_replay or []]
    for value in args.ingress or []:
        iface, sep, path = value.partition("=")
        if not sep or not iface or not path:
            raise UsageError(f"--ingress takes IFACE=CAPTURE, not {value!r}")
        itf = policy.interfaces.get(iface) or policy.interface_by_hardware(iface)
        if itf is None:
            raise UsageError(f"--ingress {value}: no interface {iface!r} in {args.config}")
        captures.append((itf.name, path))
    replay = EngineReplay(policy)
    try:
        replay.run(captures)
    except (CaptureError, ReplayError) as exc:
        raise UsageError(str(exc)) from None
    return replay


def _add(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help=f"list an iptables configuration's rules and counters as {name} -L -n -v -x does",
        description=f"{name} -L/-S/--save for a configuration in the iptables dialect, optionally "
        "after running captures through it (--after-replay).",
    )
    add_config_argument(p)
    p.add_argument("-t", "--table", default="filter", help="table (filter, nat, mangle, raw, security)")
    p.add_argument("-L", "--list", nargs="?", const="", default=None, metavar="CHAIN", help="list the rules")
    p.add_argument(
        "-S",
        "--list-rules",
        nargs="?",
        const="",
        default=None,
        metavar="CHAIN",
        help="print the rules as commands",
    )
    p.add_argument("--save", action="store_true", help="print the whole configuration as iptables-save does")
    p.add_argument("-n", "--numeric", action="store_true", help="numeric addresses and ports")
    p.add_argument("-v", "--verbose", action="store_true", help="counters and interfaces")
    p.add_argument("-x", "--exact", action="store_true", help="exact counters instead of K/M/G")
    p.add_argument("--line-numbers", action="store_true", help="number the rules")
    p.add_argument(
        "--after-replay",
        nargs="+",
        metavar="CAPTURE",
        help="run these captures through the rules first (ingress from the routes)",
    )
    p.add_argument("--ingress", action="append", metavar="IFACE=CAPTURE", help="a capture entering on IFACE")
    p.add_argument("--log", action="store_true", help="print the LOG target's lines of the replay")
    p.add_argument(
        "--conntrack", action="store_true", help="print the connections after the replay (conntrack -L)"
    )
    p.add_argument(
        "--events", action="store_true", help="print the replay's connection events (conntrack -E)"
    )
    p.set_defaults(func=run, command=name)


def register(subparsers: argparse._SubParsersAction) -> None:
    _add(subparsers, "iptables")
    _add(subparsers, "ip6tables")


class EngineReplay:
    """Captures through the engine for an iptables policy, as ``statewall replay`` runs them (merged by
    time, ingress from the routes or given, responders carried into the translated coordinates), keeping
    the events; the engine's tables hold the counters afterwards (``statewall iptables --after-replay``).
    """

    def __init__(self, policy: Policy) -> None:
        from ..engine import Firewall  # not imported for `statewall --help`

        self.fw = Firewall(policy)
        if self.fw.netfilter is None:
            raise ValueError("not an iptables policy: the engine runs it on the ASA's path")
        self.netfilter = self.fw.netfilter
        self.events: list = []
        self.now = 0.0  # the replay's clock: the last time given (nft sets' expiry is listed from it)

    # The replay adapter's view of a firewall (statewall.replay.FirewallLike), recording the events.
    def receive(self, iface: str, data, now: float):
        self.now = max(self.now, now)
        res = self.fw.receive(iface, data, now)
        self.events.extend(res.events)
        return res

    def advance(self, now: float):
        self.now = max(self.now, now)
        res = self.fw.advance(now)
        self.events.extend(res.events)
        return res

    def ingress_for(self, data):
        return self.fw.ingress_for(data)

    def sent_by_box(self, iface: str, data) -> bool:
        return self.fw.sent_by_box(iface, data)

    def replay_rewrite(self, iface: str, data, now: float):
        return self.fw.replay_rewrite(iface, data, now)

    def run(self, captures: Sequence[tuple[str | None, str]]) -> dict:
        """Replay ``captures`` (``(logical ingress or None, path)``); returns replay's summary. The
        output captures and logs go to a directory removed afterwards."""
        import tempfile

        from ..replay import replay as replay_captures

        with tempfile.TemporaryDirectory(prefix="statewall-nf-") as tmp:
            return replay_captures(self.fw.policy, captures, tmp, firewall=self)

    @property
    def logs(self) -> list[str]:
        """The LOG target's lines, in order."""
        return [e.text for e in self.events if isinstance(e, NfLog)]

    @property
    def conntrack_events(self) -> list[str]:
        """``conntrack -E``'s lines, in order."""
        return [conntrack_line(e) for e in self.events if isinstance(e, CtEvent)]

    def conntrack_listing(self) -> str:
        """``conntrack -L`` at the last packet's time."""
        return conntrack_listing(self.fw.conntrack_entries())
