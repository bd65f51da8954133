"""The Linux netfilter dialect: iptables/ip6tables rulesets and conntrack tunables into a ``Policy``.

Reads ``iptables-save``/``ip6tables-save`` files and scripts or console transcripts of ``iptables``
commands, sysctl settings of conntrack (including the old ``ip_conntrack_*`` names and Linux 2.2's
``ipchains -M -S``) and statewall's header (``#@statewall interface|route|...``, comments to iptables)
that declares what iptables files do not: interfaces, addresses, routes. ``render`` prints the policy
back as an iptables-save file; ``format_listing`` prints a table as ``iptables -L -n -v -x`` does.
A malformed or refused command raises ``ConfigError`` (``file:line:col: message``) and nothing is
returned; lines that are not iptables commands are warnings.

Modules: ``lexer`` (shell and restore words, prompts), ``names`` (protocols, services, ICMP types,
flags), ``rules`` (one rule specification), ``tables`` (chain commands and the kernel's table checks),
``parser`` (the file), ``render`` (iptables-save) and ``listing`` (iptables -L). See docs/iptables.md.
"""

from __future__ import annotations

from pathlib import Path

from ...policy import Policy
from ..errors import ConfigError
from . import modules as _modules
from .listing import format_listing, format_rules
from .parser import parse
from .render import render, rule_spec

_modules.register()

__all__ = ["ConfigError", "format_listing", "format_rules", "parse", "parse_file", "render", "rule_spec"]


def parse_file(path: str | Path) -> Policy:
    """Parse the iptables file at ``path``; errors and origins name the path as given."""
    return parse(Path(path).read_text(encoding="utf-8", errors="replace"), str(path))
