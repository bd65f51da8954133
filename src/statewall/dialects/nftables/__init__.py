"""The nftables dialect: ``nft list ruleset`` output and ``nft -f`` files into a ``Policy``.

Tables of the ip, ip6 and inet families go to ``Policy.nft_tables``: base chains (``NfChain.kind``,
``hook``, ``priority``) that ``statewall.netfilter`` runs at their hooks by priority, interleaved
with conntrack as the kernel orders them, and regular chains they jump to; named sets go to
``Policy.nf_sets``. ``render`` prints the tables back as ``nft list ruleset`` does, with counters
after a replay. A malformed or unmodelled construct raises ``ConfigError`` (``file:line:col``) and
nothing is returned. Modules: ``lexer``, ``parser`` (tables, chains, rules), ``sets`` (sets, maps,
keys, dynamic updates, meters: a mixin of the parser), ``keys`` (key types, times, values as nft
prints them), ``render``. See docs/nftables.md.
"""

from __future__ import annotations

from pathlib import Path

from ...policy import Policy
from ..errors import ConfigError
from .parser import parse
from .render import list_ruleset, render

__all__ = ["ConfigError", "list_ruleset", "parse", "parse_file", "render"]


def parse_file(path: str | Path) -> Policy:
    """Parse the nftables file at ``path``; errors and origins name the path as given."""
    return parse(Path(path).read_text(encoding="utf-8", errors="replace"), str(path))
