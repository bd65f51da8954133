"""Basic threat detection (ASA ``threat-detection basic-threat``): drop rates, and 733100 when one is
exceeded.

Owns the rate statistics of the drop categories statewall feeds it -- ``syn-attack`` (SYNs TCP
Intercept answered with a cookie: the "incomplete session" of a SYN flood) and ``conn-limit-drop``
(connections a connection limit refused) -- and the decision to log 733100. The engine calls
``BasicThreat.drop(category, now, ev)`` for each such drop; it appends a ``ThreatRate`` event when a
rate is exceeded.

What the ASA does (configuration guide, "Basic Threat Detection Statistics"; syslog guide, 733100):

* Each category has rates: ``rate-1`` averaged over 600 s, ``rate-2`` over 3600 s (``threat-detection
  rate CATEGORY rate-interval N average-rate A burst-rate B``). The burst interval is 1/30 of the rate
  interval or 10 s, whichever is larger: 20 s and 120 s.
* The count of each completed burst interval is stored, 30 of them. The average rate is the sum of the
  30 completed intervals over the rate interval -- unless the unfinished interval already holds more
  events than the oldest stored one, when it is the last 29 plus the unfinished one. The burst rate is
  the events of the current burst interval over its length.
* For each event the average and the burst rate are checked against their limits; each rate type
  logs at most one message per burst period, so both exceeded give two messages. The message carries
  both rates, their limits and the category's cumulative count: ``%ASA-4-733100: [ SYN attck] drop
  rate-1 exceeded. Current burst rate is 250 per second, max configured rate is 200; Current average
  rate is 8 per second, max configured rate is 100; Cumulative total count is 5000``. Rates print as
  whole numbers per second, truncated; the comparison is on the exact rate (a logged average can read
  "5 per second, max configured rate is 5").

Defaults (``show running-config all threat-detection``, 8.4 / 9.x guides): syn-attack average 100/s
and burst 200/s for rate-1, 80/s and 160/s for rate-2; conn-limit-drop 100/400 and 80/320. Basic threat
detection is on by default from 8.0(2); statewall models the defaults (the configuration commands are
not read: ``threat-detection`` lines pass through unparsed). The object is written with the space
devices print after the bracket (``[ Scanning]``, ``[ SYN attck]``); Cisco's message guide shows it
without.
"""

from __future__ import annotations

from collections import deque

from .events import ThreatRate

SYN_ATTACK = "syn-attack"
CONN_LIMIT = "conn-limit-drop"

# The object 733100 names for each category (the syslog guide's list).
OBJECTS = {SYN_ATTACK: "SYN attck", CONN_LIMIT: "Conn limit"}

# category -> ((rate-interval s, average-rate /s, burst-rate /s) for rate-1, for rate-2)
DEFAULT_RATES: dict[str, tuple[tuple[int, int, int], ...]] = {
    SYN_ATTACK: ((600, 100, 200), (3600, 80, 160)),
    CONN_LIMIT: ((600, 100, 400), (3600, 80, 320)),
}
INTERVALS_KEPT = 30  # completed burst intervals stored per rate
MIN_BURST_INTERVAL = 10


def burst_interval(rate_interval: int) -> int:
    """1/30 of the rate interval or 10 s, whichever is larger."""
    return max(rate_interval // INTERVALS_KEPT, MIN_BURST_INTERVAL)


class Rate:
    """One configured rate (``rate-N``) of one category: the counts of its last 30 burst intervals."""

    __slots__ = (
        "rate_id",
        "interval",
        "burst",
        "average_limit",
        "burst_limit",
        "done",
        "current",
        "bucket",
        "logged",
    )

    def __init__(self, rate_id: int, interval: int, average_limit: int, burst_limit: int) -> None:
        self.rate_id = rate_id
        self.interval = interval
        self.burst = burst_interval(interval)
        self.average_limit = average_limit
        self.burst_limit = burst_limit
        self.done: deque[int] = deque([0] * INTERVALS_KEPT, maxlen=INTERVALS_KEPT)
        self.current = 0
        self.bucket: int | None = None
        # The burst period in which a message was last logged for the burst rate, for the average.
        self.logged = {"burst": -1, "average": -1}

    def _advance(self, now: float) -> None:
        bucket = int(now // self.burst)
        if self.bucket is None:
            self.bucket = bucket
            return
        if bucket <= self.bucket:
            return
        self.done.append(self.current)
        for _ in range(min(bucket - self.bucket - 1, INTERVALS_KEPT)):
            self.done.append(0)  # burst intervals without events
        self.current = 0
        self.bucket = bucket

    def rates(self) -> tuple[float, float]:
        """(burst rate, average rate) in events per second, as the ASA computes them now."""
        done = self.done
        total = sum(done)
        if self.current > done[0]:
            total += self.current - done[0]  # the last 29 completed plus the unfinished one
        return self.current / self.burst, total / self.interval

    def event(self, now: float) -> list[str]:
        """Count one event; the rate types exceeded that may log in this burst period."""
        self._advance(now)
        self.current += 1
        burst, average = self.rates()
        out = []
        for kind, value, limit in (
            ("burst", burst, self.burst_limit),
            ("average", average, self.average_limit),
        ):
            if value > limit and self.logged[kind] != self.bucket:
                self.logged[kind] = self.bucket
                out.append(kind)
        return out


class Category:
    """One drop category (``syn-attack``...): its rates and cumulative count."""

    __slots__ = ("name", "object", "rates", "total")

    def __init__(self, name: str, rates: tuple[tuple[int, int, int], ...]) -> None:
        self.name = name
        self.object = OBJECTS[name]
        self.rates = [Rate(i, interval, avg, burst) for i, (interval, avg, burst) in enumerate(rates, 1)]
        self.total = 0


class BasicThreat:
    """Basic threat detection of one firewall."""

    __slots__ = ("categories",)

    def __init__(self, rates: dict[str, tuple[tuple[int, int, int], ...]] | None = None) -> None:
        rates = DEFAULT_RATES if rates is None else rates
        self.categories = {name: Category(name, r) for name, r in rates.items()}

    def drop(self, category: str, now: float, ev: list) -> None:
        """One drop of ``category`` at ``now``: 733100 events for the rates it pushes over their limits."""
        cat = self.categories.get(category)
        if cat is None:
            return
        cat.total += 1
        for rate in cat.rates:
            for trigger in rate.event(now):
                burst, average = rate.rates()
                ev.append(
                    ThreatRate(
                        now,
                        cat.object,
                        rate.rate_id,
                        int(burst),
                        rate.burst_limit,
                        int(average),
                        rate.average_limit,
                        cat.total,
                        trigger,
                    )
                )


__all__ = ["CONN_LIMIT", "DEFAULT_RATES", "OBJECTS", "SYN_ATTACK", "BasicThreat", "Rate", "burst_interval"]
