"""Linux's text from events: what a Linux firewall running an iptables ruleset writes.

Owns two formats, derived from the engine's typed events like every other output (``statewall.events``):

- ``NfLog`` -> the kernel's LOG line as syslog stores it: ``Jan  2 03:04:05 fw kernel: <prefix>IN=eth1
  OUT=eth0 MAC= SRC=... `` (the kernel's text itself, ``statewall.netfilter.log_line``, keeps its
  trailing space; the syslog header is rsyslog's traditional one, without the optional printk time).
- ``CtEvent`` -> a ``conntrack -E`` line, ``    [NEW] tcp      6 120 SYN_SENT src=10.0.0.2 dst=...
  sport=... dport=... [UNREPLIED] src=... dst=... sport=... dport=...``, `` [UPDATE] ...``,
  ``[DESTROY] ...``; timed, with ``conntrack -E -o timestamp``'s ``[seconds.microseconds]<TAB>`` in
  front. ``conntrack_line(..., listing=True)`` is the ``conntrack -L`` row of the same connection
  (``... [ASSURED] mark=0 use=1``; ``helper=ftp`` before the use count, or at the end of an event).

Checked against conntrack-tools 1.4.7 on Linux 6.18: the type is right-aligned in nine columns, the
protocol name left-aligned in eight, the timeout is left out of a DESTROY for an expired entry (a flushed
one still has it), ICMP tuples print ``type= code= id=``, addresses as ``inet_ntop`` writes them.
Other events have no Linux text (``format_event`` returns no line for them).
"""

from __future__ import annotations

import time as _time
from collections.abc import Iterable

from ..events import CtEvent, Event, NfLog

_PROTO_NAMES = {
    6: "tcp",
    17: "udp",
    1: "icmp",
    58: "icmpv6",
    132: "sctp",
    33: "dccp",
    136: "udplite",
    47: "gre",
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def syslog_timestamp(t: float) -> str:
    """RFC 3164's ``Mmm dd hh:mm:ss`` (day padded with a space) in UTC, as rsyslog writes kern.log."""
    tm = _time.gmtime(t)
    return f"{_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"


def _tuple(protocol: int, t: tuple[str, str, int, int], icmp: tuple[int, int] | None) -> str:
    src, dst, sport, dport = t
    if icmp is not None:
        return f"src={src} dst={dst} type={icmp[0]} code={icmp[1]} id={sport}"
    if protocol in (6, 17, 132, 33, 136):
        return f"src={src} dst={dst} sport={sport} dport={dport}"
    return f"src={src} dst={dst}"


def conntrack_line(ct: CtEvent, *, listing: bool = False) -> str:
    """One connection as libnetfilter_conntrack's default output prints it: an event line
    (``conntrack -E``) or, with ``listing``, a row of ``conntrack -L``."""
    name = _PROTO_NAMES.get(ct.protocol, "unknown")
    words = [f"{name:<8} {ct.protocol}"]
    if ct.timeout is not None:
        words.append(str(ct.timeout))
    if ct.state is not None:
        words.append(ct.state)
    icmp = ct.icmp
    words.append(_tuple(ct.protocol, ct.orig, (icmp[0], icmp[1]) if icmp else None))
    if not ct.replied:
        words.append("[UNREPLIED]")
    words.append(_tuple(ct.protocol, ct.reply, (icmp[2], 0) if icmp else None))
    if ct.assured:
        words.append("[ASSURED]")
    if listing:
        # The mark is always dumped for a listing, only when set for an event.
        words.append("mark=0")
    if ct.helper:
        words.append(f"helper={ct.helper}")
    if listing:
        words.append(f"use={ct.use}")
        return " ".join(words)
    return f"{'[' + ct.type + ']':>9} " + " ".join(words)


def conntrack_listing(entries: Iterable[CtEvent]) -> str:
    """``conntrack -L``: one row per connection, in the order given (the kernel walks its hash table;
    statewall lists connections as they were created, so that listings compare)."""
    return "".join(conntrack_line(e, listing=True) + "\n" for e in entries)


def format_event(event: Event, *, hostname: str | None = None, timestamp: bool = True) -> list[str]:
    """The Linux lines for one event: a LOG line or a conntrack event line; none for other events."""
    if isinstance(event, NfLog):
        if not timestamp:
            return [f"kernel: {event.text}"]
        host = f"{hostname} " if hostname else ""
        return [f"{syslog_timestamp(event.time)} {host}kernel: {event.text}"]
    if isinstance(event, CtEvent):
        line = conntrack_line(event)
        if not timestamp:
            return [line]
        sec = int(event.time)
        usec = int(round((event.time - sec) * 1_000_000))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        return [f"[{sec}.{usec:06d}]\t{line}"]
    return []


def format_events(
    events: Iterable[Event], *, hostname: str | None = None, timestamp: bool = True
) -> list[str]:
    """``format_event`` over a sequence, in order (what replay writes to ``log.txt`` for iptables)."""
    return [line for ev in events for line in format_event(ev, hostname=hostname, timestamp=timestamp)]


__all__ = ["conntrack_line", "conntrack_listing", "format_event", "format_events", "syslog_timestamp"]
