"""Drivers that put packets through a Firewall the way the tests tell their stories.

``Wire`` is the iptables path's: one Firewall and its clock, a packet in, what left out (decoded by
scapy), and the events gathered on the way.
"""

from __future__ import annotations

from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6

from statewall.dialects.iptables import parse
from statewall.engine import Firewall
from statewall.events import CtEvent, Drop, DropReason
from statewall.logfmt.linux import conntrack_line, conntrack_listing


class Wire:
    """A Firewall and a clock: ``send`` hands one packet over and returns what left, decoded by scapy.

    ``fw`` keyword arguments (``seed``, ...) go to the Firewall; ``filename`` is the one its
    configuration lines are attributed to."""

    def __init__(self, rules: str, now: float = 1000.0, *, filename: str = "t.rules", **fw) -> None:
        self.fw = Firewall(parse(rules, filename), **fw)
        self.now = now
        self.events: list = []

    def send(self, iface: str, data, dt: float = 0.01) -> list[tuple[str, IP]]:
        self.now += dt
        res = self.fw.receive(iface, data, self.now)
        self.events += res.events
        return [(o, (IPv6 if p[0] >> 4 == 6 else IP)(bytes(p))) for o, p in res.packets]

    def advance(self, dt: float) -> None:
        self.now += dt
        self.events += self.fw.advance(self.now).events

    def of(self, cls) -> list:
        return [e for e in self.events if isinstance(e, cls)]

    def drops(self, reason: DropReason) -> list[Drop]:
        return [e for e in self.of(Drop) if e.reason is reason]

    def ct_lines(self) -> list[str]:
        """``conntrack -E``'s lines for what happened so far."""
        return [conntrack_line(e) for e in self.of(CtEvent)]

    def listing(self) -> list[str]:
        """``conntrack -L``'s lines now."""
        return conntrack_listing(self.fw.conntrack_entries(self.now)).splitlines()
