"""The ``statewall`` subcommands, one module each, and what they share.

A command module exposes ``register(subparsers)``, which adds its parser (with a one-line ``help``)
and sets ``func`` to a callable ``(args) -> int`` returning the exit code. ``statewall.cli`` finds the
modules of this package by itself, so adding a command means adding a module here and nothing else.

Exit codes are the CLI's contract: 0 ok, 1 runtime failure, 2 configuration or usage error. A command
signals the last with ``UsageError`` (its message printed after the command's name) or by letting a
``ConfigError`` through (printed as ``file:line:col: message``).
"""

from __future__ import annotations

import argparse
import sys

from ..config import load_policy
from ..policy import Policy

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A command was given arguments it cannot use (exit code 2)."""


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", required=True, metavar="FILE", help="configuration file (ASA/PIX syntax)"
    )


def load_config(path: str, *, show_warnings: bool = True) -> Policy:
    """Parse ``-c FILE``; warnings (unknown commands) go to stderr, an unreadable file is a usage error."""
    try:
        policy = load_policy(path)
    except OSError as exc:
        raise UsageError(f"cannot read configuration {path}: {exc.strerror or exc}") from None
    if show_warnings:
        for warning in policy.warnings:
            print(warning, file=sys.stderr)
    return policy
