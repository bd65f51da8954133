"""``statewall lab list`` and ``statewall lab run NAME [--keep]``: real traffic through the firewall in
network namespaces built for the occasion (``statewall.lab``), checked, and removed afterwards.

``run`` exits 0 when every check of the scenario held, 1 otherwise; ``--keep`` leaves the namespaces
(and the firewall process, if the scenario left it running) for inspection and prints how to remove
them. Needs root and ``/dev/net/tun``.
"""

from __future__ import annotations

import argparse
import os

from . import EXIT_FAILURE, EXIT_OK, UsageError


def _scenarios():
    from ..lab.scenarios import load_all

    return load_all()


def list_scenarios(args: argparse.Namespace) -> int:
    scenarios = _scenarios()
    width = max((len(n) for n in scenarios), default=0)
    for name in sorted(scenarios):
        print(f"{name:<{width}}  {scenarios[name].summary}")
    return EXIT_OK


def run_scenario(args: argparse.Namespace) -> int:
    from ..lab.netns import Lab, LabError
    from ..lab.scenarios import ScenarioRun

    scenarios = _scenarios()
    if args.name not in scenarios:
        raise UsageError(f"no scenario {args.name!r} (have: {', '.join(sorted(scenarios)) or 'none'})")
    if os.geteuid() != 0:
        raise UsageError("the lab needs root (network namespaces, TUN devices)")
    if not os.path.exists("/dev/net/tun"):
        raise UsageError("the lab needs /dev/net/tun")
    sc = scenarios[args.name]
    print(f"scenario {sc.name}: {sc.summary}", flush=True)
    with Lab(keep=args.keep) as lab:
        run = ScenarioRun(lab, offload=not args.no_offload)
        try:
            sc.func(run)
        except LabError as exc:
            run.check("scenario ran to the end", False, str(exc))
        if args.keep:
            print(lab.describe(), flush=True)
    verdict = "PASSED" if run.passed else "FAILED"
    print(
        f"scenario {sc.name}: {verdict} ({sum(ok for _, ok, _ in run.checks)}/{len(run.checks)} checks)",
        flush=True,
    )
    return EXIT_OK if run.passed else EXIT_FAILURE


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "lab",
        help="run scenarios with real hosts in network namespaces",
        description="Build network namespaces with real TCP stacks around `statewall run`, run a "
        "scenario, check its outcome, and remove everything (even on failure). Needs root.",
    )
    sub = p.add_subparsers(dest="lab_command", metavar="SUBCOMMAND", required=True)
    ls = sub.add_parser("list", help="list the scenarios")
    ls.set_defaults(func=list_scenarios)
    r = sub.add_parser("run", help="run one scenario")
    r.add_argument("name", metavar="NAME")
    r.add_argument("--keep", action="store_true", help="leave namespaces and processes for inspection")
    r.add_argument("--no-offload", action="store_true", help="run the firewall without TUN offloads")
    r.set_defaults(func=run_scenario)
