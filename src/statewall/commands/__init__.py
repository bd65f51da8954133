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
import re

from .. import config
from ..policy import Policy

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A command was given arguments it cannot use (exit code 2)."""


# ``--asa-version``: the release a configuration without an "ASA Version" header is taken for. Kept in
# ``statewall.config`` (reset whenever a parser is built, set by the option's action) so that every
# command taking ``-c``, and the live loop's reload, honours it without passing it along.


class _AsaVersion(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if not re.match(r"^\d+\.\d+(\(\d+[^)]*\)\S*)?$", str(values)):
            parser.error(f"--asa-version: invalid release {values!r} (expected e.g. 8.2 or 8.2(1))")
        config.asa_version_default = str(values) if "(" in str(values) else f"{values}(1)"
        setattr(namespace, self.dest, config.asa_version_default)


class _AsaPlatform(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from ..dialects.asa import platform

        found = platform.lookup(str(values))
        if found is None:
            parser.error(f"--asa-platform: unknown ASA model {values!r} (known: {platform.known()})")
        config.asa_platform = found
        setattr(namespace, self.dest, found.name)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    config.asa_version_default = None
    config.asa_platform = None
    parser.add_argument(
        "-c", "--config", required=True, metavar="FILE", help="configuration file (ASA/PIX syntax)"
    )
    parser.add_argument(
        "--asa-version",
        action=_AsaVersion,
        metavar="X.Y(Z)",
        help="the ASA release a configuration without an 'ASA Version' line is for (defaults that "
        "changed between releases, e.g. exceed-mss drop before 9.0)",
    )
    parser.add_argument(
        "--asa-platform",
        action=_AsaPlatform,
        metavar="MODEL",
        help="the ASA model the configuration runs on, for its connection limit (e.g. 5506-X, "
        "'5506-X security-plus', 5555-X, '5585-X SSP-20', or a show version 'Hardware:' line; default: a "
        "transcript's show version, else the 5516-X's 250000)",
    )


def load_config(path: str, *, show_warnings: bool = True) -> Policy:
    """``statewall.config.load_config`` for a command: an unreadable file is a usage error."""
    try:
        return config.load_config(path, show_warnings=show_warnings)
    except OSError as exc:
        raise UsageError(f"cannot read configuration {path}: {exc.strerror or exc}") from None
