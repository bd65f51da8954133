"""The Cisco ASA / PIX configuration dialect: ``parse`` text into a ``Policy``, ``render`` it back.

Accepts a running-config (``show running-config``, indented sub-commands, ``!`` separators) and pasted
console transcripts (``pixfirewall(config-if)#`` prompts, ``configure terminal``, ``exit``). An
unknown command is a warning in ``Policy.warnings``; a malformed known command raises ``ConfigError``
(``file:line:col: message``) and nothing is returned. ``render(parse(x))`` parses to the same Policy.

Modules: ``lexer`` (prompts, tokens, typed values), ``parser`` (modes, dispatch, end-of-file checks),
one module per command family (``device``, ``interfaces``, ``acl``, ``nat``, ``timeouts``,
``passthrough``), ``names`` (symbolic ports, protocols, ICMP types) and ``render``.
"""

from __future__ import annotations

from pathlib import Path

from ...policy import Policy
from ..errors import ConfigError
from .parser import parse
from .render import render

__all__ = ["ConfigError", "parse", "parse_file", "render"]


def parse_file(path: str | Path) -> Policy:
    """Parse the configuration file at ``path``; errors and origins name the path as given."""
    return parse(Path(path).read_text(encoding="utf-8", errors="replace"), str(path))
