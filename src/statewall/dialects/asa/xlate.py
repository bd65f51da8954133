"""The ASA's ``xlate`` command: PAT port block allocation.

``xlate block-allocation size N`` (ports per block, 1-4096, default 512) and ``xlate block-allocation
maximum-per-host N`` (blocks a host may hold, 1-8, default 4) set what ``pat-pool OBJ block-allocation``
rules hand out (Cisco ASA command reference, ``xlate block-allocation``; ``statewall.nat``).
``xlate block-allocation pba-interim-logging SECONDS`` (21600-604800) logs every block held again
(305017) every SECONDS (``statewall.nat.NatTable.next_interim_round``). Other ``xlate`` lines
(``xlate per-session``) are kept as written, not modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...policy import Policy, PortBlockSettings
from . import passthrough
from .lexer import Cursor
from .modes import Handler

if TYPE_CHECKING:
    from .parser import Parser

# Setting -> (field, lowest, highest) as the ASA accepts them.
_RANGES = {
    "size": ("size", 1, 4096),
    "maximum-per-host": ("max_per_host", 1, 8),
    "pba-interim-logging": ("interim_logging", 21600, 604800),
}


def xlate(p: Parser, c: Cursor) -> None:
    if c.peek() != "block-allocation":
        passthrough.keep_not_modelled(
            p, c, f"xlate {c.peek() or ''}".strip(), "choose per-session or multi-session PAT"
        )
        return
    c.next("block-allocation")
    which = c.keyword(tuple(_RANGES), "block-allocation setting")
    name, lo, hi = _RANGES[which]
    value = c.integer(lo, hi, f"xlate block-allocation {which}")
    c.end()
    settings = p.policy.port_blocks
    setattr(settings, name, value)
    settings.origins[name] = p.origin(c.line)


def render(policy: Policy) -> list[str]:
    """The ``xlate block-allocation`` lines that were configured (or differ from the defaults)."""
    out = []
    settings, default = policy.port_blocks, PortBlockSettings()
    for which, (name, _lo, _hi) in _RANGES.items():
        value = getattr(settings, name)
        if value is not None and (value != getattr(default, name) or name in settings.origins):
            out.append(f"xlate block-allocation {which} {value}")
    return out


COMMANDS: dict[str, Handler] = {"xlate": xlate}
