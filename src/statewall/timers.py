"""Timers: when connections and translations expire.

Owns the expiry queue. Packets never touch it: a passing packet only stamps ``last`` on its connection.
Each object is queued once at its earliest possible deadline; when that time comes, the owner recomputes
the real deadline from ``last`` and the timeout that applies now and either expires the object or queues
it again. That keeps per-packet work at one attribute store (lazy rescheduling, as pf's purge thread and
conntrack's gc do in spirit).

The queue is a binary heap ordered by (time, order of scheduling), kept in three parallel arrays instead
of one ``(when, seq, obj)`` tuple per entry: a million queued connections cost 24 bytes each (the time
object is usually the one the owner keeps in its ``queued_at``) instead of ~130 (a tuple, a sequence
integer and a list slot; docs/performance.md). Objects come out in the same order as from ``heapq`` over
those tuples: the order is total (every entry has its own sequence number).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Any


class Timers:
    __slots__ = ("_when", "_order", "_objs", "_seq")

    def __init__(self) -> None:
        self._when: list[float] = []  # heap order, parallel to _order and _objs
        self._order = array("Q")  # scheduling order: ties in time come out first-scheduled first
        self._objs: list[Any] = []
        self._seq = 0

    def schedule(self, when: float, obj: Any) -> None:
        self._seq = seq = self._seq + 1
        whens = self._when
        order = self._order
        objs = self._objs
        pos = len(whens)
        whens.append(when)
        order.append(seq)
        objs.append(obj)
        # Sift up (heapq._siftdown): a later deadline, the usual case, stops at the first comparison.
        while pos:
            parent = (pos - 1) >> 1
            pw = whens[parent]
            if when < pw or (when == pw and seq < order[parent]):
                whens[pos] = pw
                order[pos] = order[parent]
                objs[pos] = objs[parent]
                pos = parent
            else:
                break
        whens[pos] = when
        order[pos] = seq
        objs[pos] = obj

    def _pop(self) -> Any:
        """Remove and return the first object (heapq.heappop's algorithm over the three arrays)."""
        whens = self._when
        order = self._order
        objs = self._objs
        when = whens.pop()
        seq = order.pop()
        obj = objs.pop()
        end = len(whens)
        if not end:
            return obj
        first = objs[0]
        # Move the smaller child up until a leaf, then sift the last entry up from there.
        pos = 0
        child = 1
        while child < end:
            right = child + 1
            if right < end:
                cw = whens[child]
                rw = whens[right]
                if not (cw < rw or (cw == rw and order[child] < order[right])):
                    child = right
            whens[pos] = whens[child]
            order[pos] = order[child]
            objs[pos] = objs[child]
            pos = child
            child = 2 * pos + 1
        while pos:
            parent = (pos - 1) >> 1
            pw = whens[parent]
            if when < pw or (when == pw and seq < order[parent]):
                whens[pos] = pw
                order[pos] = order[parent]
                objs[pos] = objs[parent]
                pos = parent
            else:
                break
        whens[pos] = when
        order[pos] = seq
        objs[pos] = obj
        return first

    def pop_due(self, now: float) -> Iterator[Any]:
        """Yield every queued object whose queued time is <= now (each once; re-``schedule`` to keep it)."""
        whens = self._when
        while whens and whens[0] <= now:
            yield self._pop()

    def next_deadline(self) -> float | None:
        return self._when[0] if self._when else None

    def __len__(self) -> int:
        return len(self._when)
