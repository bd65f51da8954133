"""``statewall report OUTDIR [-c CONFIG]``: write OUTDIR/report.html again from a replay's results.

Every ``statewall replay`` writes the report itself; this renders it again from what the replay left
in OUTDIR (``events.jsonl``, ``arrived/``, the output captures, ``summary.json``), for instance after
an upgrade of statewall or with the configuration file named when the one recorded in
``summary.json`` has moved. The work is ``statewall.report``'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import EXIT_OK, UsageError


def run(args: argparse.Namespace) -> int:
    from ..report import write_report

    outdir = Path(args.outdir)
    if not (outdir / "events.jsonl").is_file() or not (outdir / "summary.json").is_file():
        raise UsageError(f"{outdir}: not a replay's output directory (no events.jsonl and summary.json)")
    text = None
    if args.config:
        try:
            text = Path(args.config).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"{args.config}: {exc.strerror}") from None
    path = write_report(outdir, text)
    print(path)
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a replay's HTML report (OUTDIR/report.html) again",
        description="Render OUTDIR/report.html from the results statewall replay wrote in OUTDIR: summary, "
        "drops by reason with the configuration line and the fix, a timeline of the connections, a ladder "
        "diagram per connection, the configuration with hit counts, and what happened to each connection. "
        "One self-contained file; it needs no network.",
    )
    p.add_argument("outdir", metavar="OUTDIR", help="a directory statewall replay wrote")
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="the configuration the replay ran (default: the file OUTDIR/summary.json names, if it exists)",
    )
    p.set_defaults(func=run)
