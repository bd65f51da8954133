"""Timers: when connections and translations expire.

Owns the expiry queue. Packets never touch it: a passing packet only stamps ``last`` on its connection.
Each object is queued once at its earliest possible deadline; when that time comes, the owner recomputes
the real deadline from ``last`` and the timeout that applies now and either expires the object or queues
it again. That keeps per-packet work at one attribute store (lazy rescheduling, as pf's purge thread and
conntrack's gc do in spirit).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any


class Timers:
    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = 0

    def schedule(self, when: float, obj: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, obj))

    def pop_due(self, now: float) -> Iterator[Any]:
        """Yield every queued object whose queued time is <= now (each once; re-``schedule`` to keep it)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            yield heapq.heappop(heap)[2]

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
