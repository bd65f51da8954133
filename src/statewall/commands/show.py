"""``statewall show CMD -c FILE [--after-replay CAPTURE ...]``: the ASA's show commands, offline.

``show running-config [policy-map]`` prints a configuration back as the firewall holds it;
``show service-policy`` the service policies it applies (counters at 0: no traffic has passed). The
table commands (``conn [detail|count]``, ``xlate``, ``local-host``, ``access-list [NAME]``, ``nat``,
``route``, ``interface``, ``asp drop``) show the firewall's tables as they stand after the captures
named with ``--after-replay`` (and ``--ingress IFACE=CAPTURE``) went through it, in the form of the
configuration's ``ASA Version`` (``statewall.showtables``); without a capture, as they stand before
any traffic.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

from ..config import render_policy
from ..logfmt.mpf import format_running_config_policy_map, format_show_service_policy
from . import EXIT_OK, UsageError, add_config_argument, load_config

# The ASA accepts any unambiguous abbreviation of a keyword ("show run").
WHAT = (
    "running-config",
    "service-policy",
    "conn",
    "xlate",
    "local-host",
    "access-list",
    "nat",
    "route",
    "interface",
    "asp",
)
_TABLES = frozenset(WHAT[2:])


def _expand(word: str) -> str:
    if word.lower() in WHAT:
        return word.lower()
    matches = [w for w in WHAT if w.startswith(word.lower())]
    if len(matches) != 1:
        raise UsageError(f"unknown show target {word!r} (known: {', '.join(WHAT)})")
    return matches[0]


def interface_counts(summary: dict[str, Any]) -> dict[str, Any]:
    """``show interface``'s counters from a replay summary's ``interfaces``."""
    from ..showtables import InterfaceCounts

    return {name: InterfaceCounts(**c) for name, c in summary.get("interfaces", {}).items()}


def show_after_replay(policy, words: list[str], captures: list[tuple[str | None, str]]) -> str:
    """Replay ``captures`` (possibly none) through ``policy`` and show ``words`` at the end."""
    from ..engine import Firewall
    from ..logfmt.counters import Counters
    from ..pcapio import CaptureError
    from ..replay import ReplayError, replay
    from ..showtables import ShowError, show

    fw = Firewall(policy)
    if not captures:
        try:
            return show(fw, words, 0.0)
        except ShowError as exc:
            raise UsageError(str(exc)) from None
    counters = Counters()
    seen: dict[str, Any] = {}

    def at_end(f: Any, now: float) -> None:
        seen["now"] = now

    with tempfile.TemporaryDirectory(prefix="statewall-show-") as tmp:
        try:
            summary = replay(policy, captures, tmp, firewall=fw, at_end=at_end, counters=counters)
        except (ReplayError, CaptureError) as exc:
            raise UsageError(str(exc)) from None
    try:
        return show(
            fw,
            words,
            seen.get("now"),
            interfaces=interface_counts(summary),
            xlate_hits=counters.xlate_hits,
            untranslate_hits=counters.untranslate_hits,
        )
    except ShowError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    what = _expand(args.what)
    policy = load_config(args.config)
    if what in _TABLES:
        if policy.dialect != "asa":
            raise UsageError(f"show {what} is an ASA command (an iptables ruleset: statewall iptables ...)")
        captures: list[tuple[str | None, str]] = [(None, p) for p in args.after_replay or []]
        for value in args.ingress or []:
            iface, sep, path = value.partition("=")
            if not sep or not iface or not path:
                raise UsageError(f"--ingress takes IFACE=CAPTURE, not {value!r}")
            captures.append((iface, path))
        text = show_after_replay(policy, [what, *args.section], captures)
        sys.stdout.write(text)
        return EXIT_OK
    if args.after_replay or args.ingress:
        raise UsageError(f"show {what} does not depend on traffic (no --after-replay)")
    section = args.section[0] if args.section else None
    if len(args.section) > 1 or (
        section is not None and (what != "running-config" or section != "policy-map")
    ):
        raise UsageError(f"unknown show target {args.what} {' '.join(args.section)!r}")
    if what == "service-policy":
        text = format_show_service_policy(policy)
    elif section == "policy-map":
        text = format_running_config_policy_map(policy)
    else:
        text = render_policy(policy)
    print(text, end="" if text.endswith("\n") else "\n")
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "show",
        help="the ASA's show commands: running-config, conn, xlate, access-list, nat, route, ...",
        description="show running-config: the configuration as statewall understood it, in ASA form (it "
        "parses back to the same policy). show conn [detail|count], xlate, local-host, access-list "
        "[NAME], nat, route, interface, asp drop: the firewall's tables after --after-replay CAPTURE "
        "went through it, as the configuration's ASA Version prints them. 'show iptables ...' and 'show "
        "ip6tables ...' are the iptables and ip6tables commands (statewall show iptables -c FILE -t "
        "mangle -L -n -v -x).",
    )
    p.add_argument(
        "what",
        metavar="running-config|service-policy|conn|xlate|local-host|access-list|nat|route|interface|asp",
        help="what to show (abbreviations allowed)",
    )
    p.add_argument(
        "section",
        nargs="*",
        metavar="ARG",
        help="running-config policy-map; conn detail|count; access-list NAME; asp drop",
    )
    add_config_argument(p)
    p.add_argument(
        "--after-replay",
        action="append",
        metavar="CAPTURE",
        help="replay this capture through the configuration first (ingress from the routing table); "
        "repeatable",
    )
    p.add_argument(
        "--ingress", action="append", metavar="IFACE=CAPTURE", help="a capture entering on IFACE; repeatable"
    )
    p.set_defaults(func=run)
