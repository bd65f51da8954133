"""The ``statewall`` command line: finds the subcommands and maps failures to exit codes.

Subcommands are the modules of ``statewall.commands`` (see that package's docstring); this file
discovers them with ``pkgutil`` so that nobody edits it to add one. Exit codes: 0 ok, 1 runtime
failure, 2 configuration or usage error (a ``ConfigError`` is printed as ``file:line:col: message``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback
from collections.abc import Sequence

from . import __version__, commands
from .commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError
from .dialects.errors import ConfigError
from .pcapio import CaptureError


class _HelpFormatter(argparse.HelpFormatter):
    """Keeps each command and its help on one line.

    argparse measures subcommand names without the indent they are printed with, so a long name
    ("packet-tracer") gets its help pushed to the next line; this counts that indent.
    """

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction) and action.choices:
            longest = max(len(name) for name in action.choices)
            self._action_max_length = max(
                self._action_max_length, longest + self._current_indent + self._indent_increment
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="statewall",
        description="A stateful firewall that behaves like Cisco ASA and Linux netfilter.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"statewall {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{commands.__name__}.{info.name}")
        except Exception as exc:  # noqa: BLE001 -- one broken command must not take the others down
            print(f"statewall: command module {info.name!r} failed to load: {exc}", file=sys.stderr)
            continue
        register = getattr(module, "register", None)
        if callable(register):
            register(sub)
    return parser


# ``statewall show iptables -c FILE -L -n -v -x`` is the spelling issue readers know from ``show``;
# it is the ``iptables`` command itself.
_SHOW_ALIASES = ("iptables", "ip6tables")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    if len(words) > 1 and words[0] == "show" and words[1] in _SHOW_ALIASES:
        words = words[1:]
    argv = words
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help / --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(func(args) or EXIT_OK)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"statewall {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CaptureError, OSError) as exc:
        print(f"statewall {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 -- report, with the traceback, instead of dying without a code
        traceback.print_exc()
        print(f"statewall {args.command}: internal error (traceback above)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
