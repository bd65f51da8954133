"""Loading a configuration file: which dialect it is written in, and parsing it with that dialect.

Every command that takes ``-c FILE`` goes through ``load_config`` (``load_policy``, the ``--asa-version``
default, the warnings) so that dialect detection lives in one place; the live loop's ``reload`` reads
the file again through the same function. A file is ASA/PIX unless its content says otherwise: an
``iptables-save`` dump (``*filter`` tables, ``:CHAIN POLICY`` lines, ``-A`` rules, ``COMMIT``) or a
script of ``iptables`` commands is the iptables dialect; a file with an nft ``table FAMILY NAME {``
block or ``flush ruleset`` is the nftables dialect. Dialects are modules ``statewall.dialects.<name>``
exposing ``parse(text, filename)`` and ``render(policy)``.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from types import ModuleType

from .dialects.errors import ConfigError
from .policy import Policy

DIALECTS = ("asa", "iptables", "nftables")

# Lines only an iptables ruleset has. ASA commands never start with '*', '-' or 'iptables'; an ASA
# line may start with ':' (``: Saved``), so a chain line must have iptables-save's policy form.
_IPTABLES_LINE = re.compile(
    r"^\s*(\*(filter|nat|mangle|raw|security)\s*$"
    r"|:\S+ (ACCEPT|DROP|RETURN|-) \[\d+:\d+\]"
    r"|-[AIN] \S"
    r"|COMMIT\s*$"
    r"|ip6?tables(-restore)?\s"
    r"|(ipchains|sysctl|#@statewall)\s|net\.(ipv4\.)?netfilter\.|echo\s.*/proc/sys/|.*[#$]\s+ip6?tables\s)"
)


# An nftables ruleset: a table block, flush ruleset or an nft -f script's add table (nft list ruleset,
# nft -f).
_NFTABLES_LINE = re.compile(
    r"^\s*(table\s+(ip|ip6|inet|arp|bridge|netdev)\s+\S+\s*\{|flush\s+ruleset\s*$"
    r"|(add|create)\s+table\s+\S+)"
)


def detect_dialect(text: str) -> str:
    """``nftables`` when a line opens an nft table, ``iptables`` when any line is unmistakably
    iptables, else ``asa``."""
    if any(_NFTABLES_LINE.match(line) for line in text.splitlines()):
        return "nftables"
    for line in text.splitlines():
        if _IPTABLES_LINE.match(line):
            return "iptables"
    return "asa"


def dialect_module(name: str, filename: str = "<config>") -> ModuleType:
    """The dialect's module; a ConfigError naming the file when that dialect is not available."""
    if name not in DIALECTS:
        raise ConfigError(filename, 1, 1, f"unknown configuration dialect {name!r}")
    try:
        return importlib.import_module(f"statewall.dialects.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"statewall.dialects.{name}":
            raise
        raise ConfigError(
            filename, 1, 1, f"this is an {name} configuration, which statewall cannot read yet"
        ) from None


def parse_policy(text: str, filename: str, dialect: str | None = None) -> Policy:
    """Parse configuration text in ``dialect`` (detected from the content when None)."""
    module = dialect_module(dialect or detect_dialect(text), filename)
    return module.parse(text, filename)


def load_policy(path: str | os.PathLike[str], dialect: str | None = None) -> Policy:
    """Read and parse a configuration file. Raises OSError if unreadable, ConfigError if malformed."""
    filename = os.fspath(path)
    # Configurations pasted from consoles sometimes carry Latin-1 in descriptions; a stray byte must
    # not stop the parse of everything else.
    with open(filename, encoding="utf-8", errors="replace") as f:
        text = f.read()
    return parse_policy(text, filename, dialect)


def render_policy(policy: Policy) -> str:
    """The policy printed back in the dialect it was written in."""
    return dialect_module(policy.dialect, policy.source_file or "<config>").render(policy)


# ``--asa-version``: the release a configuration without an "ASA Version" header is taken for (set by
# the command line's option, reset whenever a parser is built; statewall.commands).
asa_version_default: str | None = None


def load_config(path: str | os.PathLike[str], *, show_warnings: bool = True) -> Policy:
    """``load_policy`` for ``-c FILE``: the ``--asa-version`` default applied, warnings (unknown
    commands) to stderr. Raises OSError if unreadable, ConfigError if malformed."""
    policy = load_policy(path)
    if asa_version_default is not None and policy.dialect == "asa" and not policy.version:
        policy.version = asa_version_default
    if show_warnings:
        for warning in policy.warnings:
            print(warning, file=sys.stderr)
    return policy
