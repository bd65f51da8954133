"""``statewall demo``: run the demo scenarios (``statewall.demo``) and tell what happened."""

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
        return EXIT_OK
    try:
        scenarios = demo.select(args.scenario)
    except DemoError as exc:
        raise UsageError(str(exc)) from None
    root = demo.is_root()
    try:
        with tempfile.TemporaryDirectory(prefix="statewall-demo-") as tmp:
            base = Path(args.outdir) if args.outdir else Path(tmp)
            for s in scenarios:
                if s.needs_root and not root:
                    print(f"skipping {s.name}: it needs root (network namespaces)")
                    continue
                _run_one(s, base / s.name, args.max_log)
            if args.outdir:
                print(f"captures, logs and summaries are in {base}")
            else:
                print("(run with -o DIR to keep the captures, logs and summaries)")
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
    p.add_argument("-o", "--outdir", metavar="DIR", help="keep captures and results in DIR")
    p.add_argument("--max-log", type=int, default=200, metavar="N", help="print at most N log lines")
    p.set_defaults(func=run)
