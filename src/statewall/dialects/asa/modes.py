"""What a command module needs to open a sub-mode: the ``Mode`` record and the handler signature.

Kept apart from ``parser`` so that command modules can open modes without importing the interpreter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .lexer import Cursor, Line

if TYPE_CHECKING:
    from .parser import Parser

Handler = Callable[["Parser", Cursor], None]


def _always(line: Line) -> bool:
    return True


def _never(line: Line) -> bool:
    return False


@dataclass(slots=True)
class Mode:
    """An open sub-mode. ``handle`` gets each sub-command with the cursor at its first token.

    ``accepts`` says whether an unindented line is one of the mode's sub-commands (pasted transcripts
    do not indent); ``on_exit`` handles an ``exit`` typed in the mode and returns True when the mode
    closes (nested sub-modes such as policy-map > class need two); ``on_close`` finishes what the
    mode was building.
    """

    name: str
    handle: Handler
    accepts: Callable[[Line], bool] = _never
    on_exit: Callable[[Line], bool] = _always
    on_close: Callable[[], None] | None = None
