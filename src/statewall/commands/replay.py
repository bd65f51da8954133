"""``statewall replay``: captures through a configuration; per-interface captures, logs, a summary and the
report (``report.html``) out.

    statewall replay -c CONFIG [--ingress auto | --ingress IFACE=CAPTURE ...] -o OUTDIR [CAPTURE ...]
                     [--drain SECONDS] [--json] [--max-log N] [--show conn|xlate|asp-drop ...]
                     [--workers N] [--cluster ADDRESS]

Captures named with ``--ingress IFACE=CAPTURE`` enter the firewall on IFACE; the others (positional)
get each packet's ingress from the routing table (the interface that reaches its source). The work is
``statewall.replay``'s; this module reads the command line and prints the outcome. ``--show`` prints
the ASA's ``show conn`` / ``show xlate`` / ``show asp drop`` as the tables stood after the last packet,
before ``--drain`` lets timers run (reference A.5); ``--show conn-detail``, ``conn-count``,
``local-host``, ``access-list``, ``nat``, ``route``, ``interface`` the others ``statewall.showtables``
has, in the configuration's release form.

``--workers N`` spreads the replay over N shards, one per process of a Dask ``LocalCluster``, each owning
the connections of its inside hosts (``statewall.scale``; docs/scale.md); ``--cluster ADDRESS`` runs
the shards on the workers of a running Dask scheduler. Without ``--workers`` a capture set larger than
``AUTO_SHARD_BYTES`` uses one shard per core; a smaller one runs in this process, where starting worker
processes would cost more than it saves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..events import DropReason
from ..logfmt.counters import Counters, format_show_asp_drop
from ..replay import ReplayError, replay
from . import EXIT_OK, UsageError, add_config_argument, load_config

# Below this much capture data one process is faster than starting a cluster (~2 s, about what one
# process spends on 50 000 packets).
AUTO_SHARD_BYTES = 64 * 1024 * 1024


def choose_workers(args: argparse.Namespace, captures: list[tuple[str | None, str]], policy) -> int:
    """How many shards: ``--workers``, else (with ``--cluster``) the cluster's choice, else one per core
    for big captures and 1 for small ones. ``--show`` needs the tables of one engine."""
    if args.workers is not None:
        if args.workers < 1:
            raise UsageError("--workers must be at least 1")
        if args.workers > 1 and args.show:
            raise UsageError("--show prints one engine's tables: use it with --workers 1")
        return args.workers
    if args.show:
        return 1
    if args.cluster:
        return 0  # one shard per worker of the cluster
    size = 0
    for _, path in captures:
        with contextlib.suppress(OSError):  # the replay names a missing file
            size += os.path.getsize(path)
    return (os.cpu_count() or 1) if size >= AUTO_SHARD_BYTES else 1


def parse_ingress(values: list[str]) -> list[tuple[str, str]]:
    """``--ingress`` values -> [(iface, capture)]. ``auto`` is what positional captures always get;
    naming it only says so."""
    pinned: list[tuple[str, str]] = []
    for value in values:
        if value == "auto":
            continue
        iface, sep, path = value.partition("=")
        if not sep or not iface or not path:
            raise UsageError(f"--ingress takes 'auto' or IFACE=CAPTURE, not {value!r}")
        pinned.append((iface, path))
    return pinned


def print_report(
    summary: dict[str, Any], outdir: Path, max_log: int, *, always_asp: bool = False, asp: bool = True
) -> None:
    """The log (up to ``max_log`` lines), a summary table and, when anything was dropped (or
    ``always_asp``), the ``show asp drop`` counters (not when ``asp`` is False: ``--show`` prints them)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    log = outdir / "log.txt"
    with open(log, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i == max_log:
                console.print(f"... {summary['log_lines'] - max_log} more lines in {log}", markup=False)
                break
            console.print(line.rstrip("\n"), markup=False, soft_wrap=True)
    if summary["log_lines"]:
        console.print()

    table = Table(title="replay summary", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("packets in", str(summary["packets_in"]))
    table.add_row("forwarded", str(summary["forwarded"]))
    table.add_row("dropped", str(summary["dropped"]))
    if summary["held"]:
        table.add_row("held (awaiting more fragments)", str(summary["held"]))
    for cap in summary["captures"]:
        if cap.get("truncated"):
            print(
                f"statewall replay: {cap['truncated']} packet(s) of {cap['path']} not replayed: truncated by "
                f"the capture (snaplen {cap['snaplen']})",
                file=sys.stderr,
            )
    if summary["unassigned"]:
        table.add_row("not replayed (no route to the source)", str(summary["unassigned"]))
    if summary.get("sent_by_firewall"):
        table.add_row("not replayed (the firewall's own output)", str(summary["sent_by_firewall"]))
    if summary.get("dnat_carried"):
        table.add_row("carried across a DNAT (server captured on one side)", str(summary["dnat_carried"]))
    for rule in summary.get("dnat_not_carried", ()):
        print(f"statewall replay: not carried across (captures of either side replay as taken): {rule}",
              file=sys.stderr)  # fmt: skip
    for what, n in summary.get("shards", {}).get("not_modelled", {}).items():
        print(f"statewall replay: not modelled in shards: {n} packet(s) {what}", file=sys.stderr)
    for reason, n in summary["drops_by_reason"].items():
        table.add_row(f"  drop: {reason}", str(n))
    for feature, n in summary.get("not_modelled", {}).items():
        table.add_row(f"  forwarded, but {feature} not modelled", str(n))
    conns = summary["connections"]
    table.add_row("connections built / torn down", f"{conns['built']} / {conns['torn_down']}")
    xl = summary["xlates"]
    table.add_row("translations built / torn down", f"{xl['built']} / {xl['torn_down']}")
    for iface, n in summary["packets_out"].items():
        table.add_row(f"out of {iface} ({summary['outputs']['captures'][iface]})", str(n))
    console.print(table)
    console.print(f"results in {outdir}", markup=False)
    if summary["outputs"].get("report"):
        console.print(f"report: {outdir / summary['outputs']['report']}", markup=False)
    if (summary["drops_by_reason"] or always_asp) and asp:
        counts = {DropReason.from_keyword(k): n for k, n in summary["drops_by_reason"].items()}
        console.print()
        console.print("show asp drop", style="bold")
        console.print(format_show_asp_drop(counts), markup=False, end="")


def run(args: argparse.Namespace) -> int:
    captures: list[tuple[str | None, str]] = list(parse_ingress(args.ingress or []))
    captures += [(None, path) for path in args.captures]
    if not captures:
        raise UsageError("no capture given (CAPTURE ... or --ingress IFACE=CAPTURE)")
    policy = load_config(args.config)
    outdir = Path(args.outdir)
    shows = list(dict.fromkeys(args.show or []))
    from ..syslog import parse_target

    try:
        syslog = [parse_target(t) for t in args.syslog]
    except ValueError as exc:
        raise UsageError(f"--syslog: {exc}") from None
    tables: dict[str, str] = {}

    counters = Counters()
    ends: dict[str, Any] = {}

    def at_end(fw: Any, now: float) -> None:
        tables.update(show_tables(fw, now, [n for n in shows if n not in _FROM_COUNTERS]))
        ends.update(fw=fw, now=now)

    workers = choose_workers(args, captures, policy)
    if syslog and (workers != 1 or args.cluster):
        raise UsageError("--syslog sends one process's messages: use it with --workers 1")
    try:
        if workers == 1 and not args.cluster:
            summary = replay(
                policy,
                captures,
                outdir,
                ingress_auto=True,
                progress=sys.stdout.isatty(),
                drain=args.drain,
                at_end=at_end if shows else None,
                fast_path=not args.no_fast_path,
                syslog=syslog,
                counters=counters,
                report=not args.no_report,
            )
        else:
            from ..scale.replay import replay as sharded_replay

            summary = sharded_replay(
                policy,
                captures,
                outdir,
                workers=workers or None,
                cluster=args.cluster,
                drain=args.drain,
                fast_path=not args.no_fast_path,
                report=not args.no_report,
            )
    except ReplayError as exc:
        raise UsageError(str(exc)) from None
    late = [n for n in shows if n in _FROM_COUNTERS]
    if late and ends:
        from .show import interface_counts

        tables.update(
            show_tables(
                ends["fw"],
                ends["now"],
                late,
                interfaces=interface_counts(summary),
                xlate_hits=counters.xlate_hits,
                untranslate_hits=counters.untranslate_hits,
            )
        )
    if args.json:
        print(json.dumps({**summary, "show": tables} if shows else summary, indent=2))
    else:
        print_report(summary, outdir, args.max_log, asp="asp-drop" not in shows)
        for name in shows:
            print(f"\nshow {name.replace('-', ' ')}")
            print(tables.get(name, ""), end="")
    for cap in summary["captures"]:
        if cap.get("truncated"):
            print(
                f"statewall replay: {cap['truncated']} packet(s) of {cap['path']} not replayed: truncated by "
                f"the capture (snaplen {cap['snaplen']})",
                file=sys.stderr,
            )
    if summary["unassigned"]:
        print(
            f"statewall replay: {summary['unassigned']} packet(s) not replayed: no route reaches their "
            "source (use --ingress IFACE=CAPTURE)",
            file=sys.stderr,
        )
    return EXIT_OK


SHOW_TABLES = (
    "conn",
    "conn-detail",
    "conn-count",
    "xlate",
    "local-host",
    "access-list",
    "nat",
    "route",
    "interface",
    "asp-drop",
)
# Shown from what the replay counted rather than from the tables at the last packet.
_FROM_COUNTERS = ("nat", "interface")


def _words(name: str) -> list[str]:
    return [name] if name in ("access-list", "local-host") else name.split("-")


def show_tables(fw: Any, now: float, names: list[str], **counts: Any) -> dict[str, str]:
    """The ASA's listings of ``fw``'s tables at ``now`` (``statewall.showtables``), by ``SHOW_TABLES``
    name; ``counts`` are ``showtables.show``'s ``interfaces``, ``xlate_hits`` and ``untranslate_hits``."""
    from ..showtables import show

    return {name: show(fw, _words(name), now, **counts) for name in names}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "replay",
        help="replay pcap/pcapng captures through a configuration",
        description="Feed captures through the firewall in timestamp order. Writes OUTDIR/<iface>.pcap "
        "(what left each interface), arrived/<iface>.pcap (what reached it), log.txt (ASA syslog), "
        "events.jsonl, summary.json and report.html (the report; statewall report OUTDIR writes it again).",
    )
    add_config_argument(p)
    p.add_argument(
        "--ingress",
        action="append",
        metavar="auto|IFACE=CAPTURE",
        help="where a capture's packets enter: IFACE=CAPTURE pins a capture to an interface (what the "
        "firewall itself sent out there, if the capture holds it, is left out and counted); 'auto' "
        "(the default for positional captures) uses the interface that routes to each packet's source, "
        "and leaves out a copy, in another capture, of a packet the firewall emitted within the last "
        "second (equal but for what it rewrote) and carries a server behind a "
        "fixed iptables DNAT captured on either side (the rules it cannot invert are named)",
    )
    p.add_argument("-o", "--outdir", required=True, metavar="OUTDIR", help="directory for the results")
    p.add_argument("captures", nargs="*", metavar="CAPTURE", help="pcap or pcapng files (ingress auto)")
    p.add_argument(
        "--drain",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after the last packet, let timers run this much longer (default 0: stop at the capture's end)",
    )
    p.add_argument("--json", action="store_true", help="print summary.json instead of the log and table")
    p.add_argument(
        "--no-fast-path",
        action="store_true",
        help="every packet on the engine's Python path (no compiled fast path for established connections)",
    )
    p.add_argument(
        "--syslog",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="send every message to this syslog server over UDP (default port 514) with the ASA's "
        "framing (<PRI> from 'logging facility', 20 by default); repeatable",
    )
    p.add_argument(
        "--no-report",
        action="store_true",
        help="do not write report.html (it costs ~14 s of CPU per million packets; statewall report "
        "OUTDIR writes it later from the other files)",
    )
    p.add_argument(
        "--max-log", type=int, default=200, metavar="N", help="print at most N log lines (default 200)"
    )
    p.add_argument(
        "--show",
        action="append",
        choices=SHOW_TABLES,
        help="print the ASA's show conn / conn detail / conn count / xlate / local-host / access-list / "
        "route / asp drop as they stood after the last packet, before --drain, and show nat / interface "
        'with what the replay counted (repeatable; with --json under "show")',
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="replay in N shards, one per worker process (Dask LocalCluster), each owning its inside "
        "hosts' connections; default: one per core for captures over 64 MiB, else one process",
    )
    p.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run the shards on a running Dask scheduler's workers (e.g. tcp://10.0.0.5:8786); one shard "
        "per worker unless --workers says how many",
    )
    p.set_defaults(func=run)
