"""``statewall demo``: run the demo scenarios (``statewall.demo``) and tell what happened.

Each replay writes its ``report.html`` (``statewall.report``) and the demo prints its path; each live
scenario's firewall runs are recorded (``statewall run --record``) under ``DIR/live/<seed>/`` and get
their report too, whose paths the summary prints. Without ``-o`` the results go to a new directory
under the system's temporary directory, kept.

As root it first replays seed 000's captured control session (one connection's whole log), then runs
each seed's live lab scenario, broken and fixed, with a summary (exit 1 when a check failed); without
root, or with ``--replay``, the replay demo only, saying why.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .. import demo
from ..demo import DemoError
from . import EXIT_FAILURE, EXIT_OK, UsageError
from .replay import print_report


def _run_one(scenario: demo.Scenario, outdir: Path, max_log: int) -> None:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    console.print(f"== {scenario.title}", style="bold", markup=False)
    _text, config_name = demo.demo_config(scenario.config)
    policy, summary, events = demo.run_scenario(scenario, outdir)
    for cap in summary["captures"]:
        console.print(
            f"configuration {config_name}; capture {cap['path']}: {cap['ip']} packets, ingress "
            f"{cap['ingress']}"
            + (f"; timers run {scenario.drain:g} s past the last packet" if scenario.drain else ""),
            markup=False,
        )
    console.print()
    print_report(summary, outdir / "replay", max_log, always_asp=True)
    console.print()
    console.print("What happened:", style="bold")
    for line in scenario.narrate(policy, events, summary):
        console.print(f"  - {line}", markup=False)
    console.print()


def run(args: argparse.Namespace) -> int:
    if args.list:
        for s in demo.SCENARIOS:
            print(f"{s.name:20} {s.title}" + ("  [root]" if s.needs_root else ""))
        for live in demo.LIVE:
            print(f"{live.lab:20} {live.title}  [root, live]")
        return EXIT_OK
    root = demo.is_root()
    # Names pick live scenarios (seed000 or 000) and replay ones; none: everything this user can run.
    live = demo.select_live(args.scenario) if args.scenario or not args.replay else []
    live_names = {x.lab for x in live} | {x.seed for x in live}
    names = [n for n in args.scenario or [] if n not in live_names]
    live_ok = True
    if live and root:
        if not args.scenario:
            # Everything: first the replay of seed 000's control session (one connection's whole log:
            # 305011, 302013, 302014, 305012, in seconds), then every seed live, broken and fixed.
            replay_rc = _run_replays(demo.select(None), args, root)
            if replay_rc != EXIT_OK:
                return replay_rc
        # Each live firewall run is recorded (statewall run --record) and gets its report.html.
        base = Path(args.outdir) if args.outdir else Path(tempfile.mkdtemp(prefix="statewall-demo-live-"))
        live_ok = demo.run_live(live, sys.stdout, record=base / "live")
        print(f"the live runs' recordings and reports are in {base / 'live'}", flush=True)
        if not args.scenario or not names:
            return EXIT_OK if live_ok else EXIT_FAILURE
    elif live:
        what = "skipping them" if args.scenario else "running the replay demo instead"
        print(
            "not root: the live scenarios (each seed broken and fixed with real TCP stacks in network "
            f"namespaces) need root; {what}\n",
            flush=True,
        )
        if args.scenario and not names:
            return EXIT_OK
    try:
        scenarios = demo.select(names or None)
    except DemoError as exc:
        raise UsageError(str(exc)) from None
    rc = _run_replays(scenarios, args, root)
    return rc if rc != EXIT_OK else (EXIT_OK if live_ok else EXIT_FAILURE)


def _run_replays(scenarios: list[demo.Scenario], args: argparse.Namespace, root: bool) -> int:
    try:
        # Kept either way: each scenario's report.html is what the demo points at.
        base = Path(args.outdir) if args.outdir else Path(tempfile.mkdtemp(prefix="statewall-demo-"))
        for s in scenarios:
            if s.needs_root and not root:
                print(f"skipping {s.name}: it needs root (network namespaces)")
                continue
            _run_one(s, base / s.name, args.max_log)
        print(
            f"captures, logs, summaries and reports are in {base}"
            + ("" if args.outdir else " (-o DIR to choose)")
        )
    except DemoError as exc:
        print(f"statewall demo: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="replay the seed scenarios and explain what the firewall did",
        description="Build a capture of each seed scenario, replay it through the seed's configuration, "
        "and print the log, the drop counters, the summary and a plain account of what happened.",
    )
    p.add_argument("scenario", nargs="*", help="scenario names (default: all; see --list)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--replay", action="store_true", help="the replay demo even as root")
    p.add_argument("-o", "--outdir", metavar="DIR", help="keep captures and results in DIR")
    p.add_argument("--max-log", type=int, default=200, metavar="N", help="print at most N log lines")
    p.set_defaults(func=run)
