"""The ASA's ``fragment`` command: the fragment database limits of virtual reassembly.

``fragment size|chain|timeout N [interface]`` (Cisco ASA command reference, ``fragment``): ``size``
1-30000 fragments waiting (default 200), ``chain`` 1-8200 fragments per datagram (24), ``timeout``
1-30 seconds (5). Without an interface the value applies to every interface. ``fragment reassembly
full|virtual`` is kept but only virtual reassembly, the default, is modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...policy import FragmentSettings, Policy
from .lexer import Cursor
from .modes import Handler

if TYPE_CHECKING:
    from .parser import Parser

# Field -> (lowest, highest) as the ASA accepts them.
_RANGES = {"size": (1, 30000), "chain": (1, 8200), "timeout": (1, 30)}


def fragment(p: Parser, c: Cursor) -> None:
    first = c.peek_token()
    if first is not None and first.word == "reassembly":
        c.next("keyword")
        mode = c.keyword(("full", "virtual"), "reassembly mode")
        c.rest()
        p.keep(c.line)
        if mode == "full":
            p.gap(c.line, "full fragment reassembly", "reassemble fragments and fragment them again")
        return
    which = c.keyword(tuple(_RANGES), "fragment setting")
    lo, hi = _RANGES[which]
    value = c.integer(lo, hi, f"fragment {which}")
    ifc_tok = c.peek_token()
    if ifc_tok is not None:
        c.next("interface")
        c.end()
        name = ifc_tok.text
        p.require(
            lambda: name in p.policy.interfaces,
            c.error(ifc_tok, f"fragment refers to unknown interface '{name}'"),
        )
        settings = p.policy.fragment_by_interface.setdefault(name, FragmentSettings())
    else:
        settings = p.policy.fragment
    setattr(settings, which, value)
    settings.origins[which] = p.origin(c.line)


def render(policy: Policy) -> list[str]:
    """The lines that set values other than the defaults: all interfaces first, then per interface."""
    lines = []
    default = FragmentSettings()
    for which in _RANGES:
        value = getattr(policy.fragment, which)
        if value != getattr(default, which) or which in policy.fragment.origins:
            lines.append(f"fragment {which} {value}")
    for name, settings in policy.fragment_by_interface.items():
        lines += [
            f"fragment {which} {getattr(settings, which)} {name}"
            for which in _RANGES
            if which in settings.origins
        ]
    return lines


COMMANDS: dict[str, Handler] = {"fragment": fragment}
