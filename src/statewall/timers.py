"""Timers: when connections and translations expire.

Owns the expiry queue. Packets never touch it: a passing packet only stamps ``last`` on its connection.
Each object is queued once at its earliest possible deadline; when that time comes, the owner recomputes
the real deadline from ``last`` and the timeout that applies now and either expires the object or queues
it again. That keeps per-packet work at one attribute store (lazy rescheduling, as pf's purge thread and
conntrack's gc do in spirit).

Objects come out in the order of their queued time, and those queued for the same time in the order
they were queued (what a heap of ``(when, sequence number, object)`` gives). The queue is a calendar:
one bucket per second of queued time, each holding two parallel lists (times, objects) in the order
they were queued, and a heap of the bucket numbers. A bucket is sorted (stably, by time: equal times
keep their order) when it is first needed, and from then on takes new entries in place. An entry costs
two list slots, 16 bytes (the time object is usually the one the owner keeps in its ``queued_at``),
instead of a tuple, a sequence number and a heap slot (~130 bytes; docs/performance.md), and queueing
is an append.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

_floor = math.floor
_COMPACT = 1024  # a bucket drops the entries it handed out once that many are behind it


def _second(when: float) -> float:
    """The bucket of a queued time: its second (infinity and NaN are buckets of their own)."""
    try:
        return math.floor(when)
    except (OverflowError, ValueError):
        return when


class _Bucket:
    __slots__ = ("whens", "objs", "start", "ordered")

    def __init__(self) -> None:
        self.whens: list[float] = []
        self.objs: list[Any] = []
        self.start = 0  # entries before it were handed out
        self.ordered = False  # sorted by time; new entries go in place

    def order(self) -> None:
        whens = self.whens
        self.ordered = True
        # Time goes forward and the owners queue most entries at their time plus one timeout: most
        # buckets were appended in order of time already, which the stable sort would keep as they are
        # (a plain sort of the times and one comparison tell, for less than the sort by index).
        ordered = sorted(whens)
        if ordered == whens:
            return
        idx = sorted(range(len(whens)), key=whens.__getitem__)  # stable: equal times keep their order
        objs = self.objs
        self.whens = [whens[i] for i in idx]
        self.objs = [objs[i] for i in idx]


class Timers:
    __slots__ = ("_buckets", "_seconds", "_len")

    def __init__(self) -> None:
        self._buckets: dict[float, _Bucket] = {}
        self._seconds: list[float] = []  # heap of the buckets' seconds, each once
        self._len = 0

    def schedule(self, when: float, obj: Any) -> None:
        try:
            sec = _floor(when)  # _second(when), without its call (per connection and translation)
        except (OverflowError, ValueError):
            sec = when
        b = self._buckets.get(sec)
        if b is None:
            self._buckets[sec] = b = _Bucket()
            heapq.heappush(self._seconds, sec)
        if b.ordered:
            # After every entry queued for a time <= when: the order a sequence number would give.
            i = bisect_right(b.whens, when, b.start)
            b.whens.insert(i, when)
            b.objs.insert(i, obj)
        else:
            b.whens.append(when)
            b.objs.append(obj)
        self._len += 1

    def _first(self) -> _Bucket | None:
        """The bucket holding the earliest entry, ordered (None when nothing is queued)."""
        seconds = self._seconds
        if not seconds:
            return None
        b = self._buckets[seconds[0]]
        if not b.ordered:
            b.order()
        return b

    def pop_due(self, now: float) -> Iterator[Any]:
        """Yield every queued object whose queued time is <= now (each once; re-``schedule`` to keep it).

        The consumer may queue objects between two yields: into the bucket being handed out (in place,
        after the entries handed out: ``start`` is kept current), or into a bucket of an earlier
        second (the heap's first second then changes, and the loop goes back to it)."""
        buckets = self._buckets
        seconds = self._seconds
        while seconds:
            sec = seconds[0]
            b = buckets[sec]
            if not b.ordered:
                b.order()
            whens = b.whens
            objs = b.objs
            i = b.start
            while True:
                if not whens[i] <= now:
                    return
                obj = objs[i]
                objs[i] = None
                i += 1
                self._len -= 1
                if i == len(objs):
                    del buckets[heapq.heappop(seconds)]
                    yield obj
                    break
                if i >= _COMPACT and 2 * i >= len(objs):
                    del whens[:i]
                    del objs[:i]
                    i = 0
                b.start = i
                yield obj
                if seconds[0] is not sec:
                    break  # an earlier bucket was made meanwhile

    def next_deadline(self) -> float | None:
        b = self._first()
        return None if b is None else b.whens[b.start]

    def __len__(self) -> int:
        return self._len
