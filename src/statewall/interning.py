"""One shared object per equal value: how per-connection numbers and pairs that repeat across
connections (addresses, checksum deltas, TTL and MSS pairs) are kept once instead of once per connection
(memory, docs/performance.md).

An ``Interner`` is bounded: past ``bound`` values it forgets them all and starts over, which costs only
sharing (equal values, never a wrong one).
"""

from __future__ import annotations


class Interner:
    """``interner(value)`` is the one object kept for values equal to ``value``; ``table`` may be read
    directly by a caller that checks several values at once."""

    __slots__ = ("table", "bound")

    def __init__(self, bound: int) -> None:
        self.table: dict = {}
        self.bound = bound

    def __call__(self, value):
        table = self.table
        got = table.get(value)
        if got is None:
            if len(table) >= self.bound:
                table.clear()
            table[value] = got = value
        return got
