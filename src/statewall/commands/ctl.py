"""``statewall ctl [--name NAME] COMMAND ...``: ask a running ``statewall run`` (its control channel).

``show conn [detail]``, ``show xlate``, ``show service-policy``, ``show asp drop``, ``show log [N]``,
``show interface``, ``show capture``, ``capture IFACE start FILE`` / ``capture IFACE stop`` and
``reload``; keywords may be abbreviated as on the ASA. Without ``--name`` the one firewall running is
asked (an error names them when there are several). Exit 0 when the firewall answered, 1 when it
refused the command or could not be reached, 2 for a usage error. See ``statewall.live.ctl``.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import EXIT_FAILURE, EXIT_OK, UsageError


def _name(args: argparse.Namespace) -> str:
    from ..live.ctl import running

    if args.name:
        return args.name
    names = running(args.ctl_dir)
    if len(names) == 1:
        return names[0]
    if not names:
        raise UsageError(f"no firewall is running (no control socket in {args.ctl_dir})")
    raise UsageError(f"several firewalls are running, say which with --name: {', '.join(names)}")


def _command(words: list[str]) -> str:
    # The firewall writes captures from its own working directory: hand it an absolute path.
    if len(words) == 4 and "capture".startswith(words[0].lower()) and "start".startswith(words[2].lower()):
        words = [*words[:3], os.path.abspath(words[3])]
    return " ".join(words)


def run(args: argparse.Namespace) -> int:
    from ..live.ctl import CtlError, request

    if not args.words:
        raise UsageError("missing command (e.g. show conn; 'help' lists them)")
    name = _name(args)
    try:
        ok, text = request(name, _command(args.words), directory=args.ctl_dir, timeout=args.timeout)
    except CtlError as exc:
        raise UsageError(str(exc)) from None
    except (OSError, TimeoutError) as exc:
        print(f"statewall ctl: cannot reach {name!r}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if ok:
        sys.stdout.write(text)
        return EXIT_OK
    sys.stderr.write(text)
    return EXIT_FAILURE


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ctl",
        help="ask a running firewall: show conn/xlate/log/..., reload, capture",
        description="Send one command to a running `statewall run` through its control socket: "
        "show conn [detail] | show xlate | show service-policy | show asp drop | show log [N] | "
        "show interface | show capture | capture IFACE start FILE | capture IFACE stop | reload | help.",
    )
    p.add_argument("--name", metavar="NAME", help="the firewall's name (statewall run --name)")
    p.add_argument("--ctl-dir", default="/run/statewall", metavar="DIR", help="where control sockets are")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="wait at most this long")
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND", help="e.g. show conn detail")
    p.set_defaults(func=run)
