"""The ASA's logging pipeline applied to events: which messages each destination gets and what their
lines look like, as the configuration's ``logging`` and ``clock`` commands say (``Policy.logging``).

Owns the rules of the CLI configuration guide's logging chapter and the command reference:

- nothing is logged anywhere without ``logging enable``;
- ``logging message N level L`` changes a message's severity (the ``%ASA-L-`` in its text too),
  ``no logging message N`` silences it;
- a destination (``logging buffered|trap|console|monitor``) takes the messages at its level or more
  severe, or those of a ``logging list`` (by level, optionally within a message class, or by id range);
- ``logging timestamp`` prints local time as ``Sep 19 2007 06:55:58`` (``clock timezone`` and
  ``clock summer-time`` decide local), ``logging timestamp rfc5424`` prints UTC as
  ``2018-06-27T12:17:46Z`` (9.10(1) and later; syslog messages guide, "What's New");
- ``logging device-id`` puts ``<id> : `` before the message in non-EMBLEM messages
  (``<166>2018-06-27T12:17:46Z asa : %ASA-6-110002: ...``, same guide);
- a syslog server gets ``<PRI>`` + the line, PRI = facility * 8 + severity (facility 20 by default,
  so an informational message is ``<166>``); ``format emblem`` gives ``<PRI>:`` + ``Mmm dd hh:mm:ss
  ZONE: %ASA-class-L-N: text`` (the message class from the guide's class table; no device id, as the
  configuration guide's "Including the Device ID in Non-EMBLEM Format Syslog Messages" says).

A configuration with no ``logging`` command at all keeps statewall's behaviour from before it read
them: every message, timestamped in UTC (``LoggingSettings.configured`` is False).

``log.txt`` (replay) and ``show logging`` (live) hold the internal buffer, ``logging buffered``; when a
configuration sets no buffered level but a trap level they hold what the syslog servers get, so that
the file is never silently empty while the box logs. ``destination`` says which.
"""

from __future__ import annotations

import calendar
import ipaddress
import time as _time
from collections.abc import Iterable
from datetime import UTC, datetime

from ..events import Event
from ..policy import LoggingSettings, Policy
from .asa import NEWEST, _prefix, messages_for, release_of

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Message classes by the first three digits of the id (syslog messages guide, "Messages Listed by
# Class"), for the ids statewall prints; ``logging list ... class C`` and EMBLEM's ``%ASA-class-``.
MESSAGE_CLASSES: dict[int, str] = {
    **{
        k: "session" for k in (106, 108, 201, 302, 303, 304, 305, 314, 405, 406, 407, 500, 502, 607, 608, 609)
    },
    **{k: "ha" for k in (101, 102, 103, 104, 105, 210, 311, 709)},
    **{k: "ip" for k in (209, 215, 313, 317, 408)},
    **{
        k: "sys"
        for k in (199, 211, 214, 216, 306, 307, 315, 414, 604, 605, 606, 610, 612, 614, 615, 701, 711)
    },
    **{k: "config" for k in (111, 112, 208, 308)},
    **{k: "vpn" for k in (316, 320, 402, 404, 501, 602, 702, 713, 714, 715)},
    110: "bridge",
    419: "session",
    733: "session",
}


def message_class(asa_id: int) -> str:
    return MESSAGE_CLASSES.get(asa_id // 1000, "sys")


def _clock(d: _time.struct_time) -> str:
    return f"{d.tm_hour:02d}:{d.tm_min:02d}:{d.tm_sec:02d}"


def _nth_weekday(year: int, month: int, week: int, weekday: int) -> int:
    """Day of month of the ``week``-th ``weekday`` (0 Monday) of a month; week 5 is the last one."""
    first_wd, days = calendar.monthrange(year, month)
    first = 1 + (weekday - first_wd) % 7
    if week >= 5:
        return first + 7 * ((days - first) // 7)
    return first + 7 * (week - 1)


class AsaLog:
    """One configuration's logging: filters, severities, time zone, device id, syslog framing."""

    def __init__(self, policy: Policy | None = None, *, version: str | None = None) -> None:
        self.settings: LoggingSettings = policy.logging if policy is not None else LoggingSettings()
        self.release = release_of(version if version is not None else (policy.version if policy else None))
        self.hostname = policy.hostname if policy is not None else "statewall"
        self._device_id = self._device(policy)
        # ACEs naming object groups, by origin: their elements, so that 106023 and 106100 name the
        # element that matched as show access-list does.
        self._elements: dict[object, list] = {}
        if policy is not None and policy.dialect == "asa":
            from .show import ace_elements

            for acl in policy.access_lists.values():
                for rule in acl.rules:
                    if rule.source_object or rule.destination_object:
                        elements = ace_elements(rule, policy.network_objects, policy.service_objects)
                        if elements:
                            self._elements[rule.origin] = elements
        s = self.settings
        if not s.configured:
            self.destination: str | None = "all"
        elif not s.enabled:
            self.destination = None
        else:
            self.destination = next((d for d in ("buffered", "trap") if getattr(s, d) is not None), None)

    # -- configuration ---------------------------------------------------------------------------

    def _device(self, policy: Policy | None) -> str | None:
        did = self.settings.device_id
        if did is None or policy is None:
            return None
        kind, value = did
        if kind == "string":
            return value
        if kind == "ipaddress":
            itf = policy.interfaces.get(value)
            if itf is not None and itf.ipv4:
                return str(itf.ipv4[0].ip)
            if itf is not None and itf.ipv6:
                return str(itf.ipv6[0].ip)
            return None
        # hostname; context-name in single-context mode has no context, the hostname stands for it.
        return policy.hostname

    def severity(self, asa_id: int, default: int) -> int | None:
        """The message's severity after ``logging message N level L``; None when it is disabled."""
        s = self.settings
        if asa_id in s.disabled:
            return None
        return s.message_levels.get(asa_id, default)

    def admits(self, destination: str, asa_id: int, severity: int) -> bool:
        s = self.settings
        if destination == "all":
            return True
        if not s.enabled:
            return False
        rule = getattr(s, destination)
        if rule is None:
            return False
        if isinstance(rule, int):
            return severity <= rule
        lst = s.lists.get(rule)
        if lst is None:
            return False
        if any(lo <= asa_id <= hi for lo, hi in lst.messages):
            return True
        cls = message_class(asa_id)
        return any(severity <= lvl and (c is None or c == cls) for lvl, c in lst.levels)

    def messages(self, event: Event) -> list[tuple[int, int, str]]:
        """``(id, severity, text)`` for the messages the box writes for ``event`` (disabled ones gone,
        severities as configured)."""
        out = []
        for asa_id, sev, text in messages_for(event, self.release):
            level = self.severity(asa_id, sev)
            if level is not None:
                if asa_id in (106023, 106100) and self._elements:
                    text = self._element_hash(event, text)
                out.append((asa_id, level, text))
        return out

    def _element_hash(self, event: Event, text: str) -> str:
        elements = self._elements.get(getattr(event, "origin", None))
        src, dst = getattr(event, "src", ""), getattr(event, "dst", "")
        if not elements or not src or not text.endswith(", 0x0]"):
            return text
        try:
            s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        except ValueError:
            return text
        for e in elements:
            if all(any(a in n for n in nets) for a, nets in ((s, e.sources), (d, e.destinations)) if nets):
                return f"{text[: -len(', 0x0]')]}, 0x{e.hash:x}]"
        return text

    # -- time ------------------------------------------------------------------------------------

    def utc_offset(self, t: float) -> tuple[int, str]:
        """Minutes east of UTC at ``t`` and the zone's name (summer time included)."""
        name, offset = self.settings.timezone
        st = self.settings.summer_time
        if st is None:
            return offset, name
        std = t + offset * 60
        year = _time.gmtime(std).tm_year
        if st.recurring:

            def at(rule: tuple[int, int, int, int]) -> float:
                week, wd, month, minutes = rule
                day = _nth_weekday(year, month, week, wd)
                return calendar.timegm((year, month, day, 0, 0, 0)) + minutes * 60

            start, end = at(st.start), at(st.end) - st.offset * 60  # the end is given in summer time
            inside = start <= std < end if start < end else not end <= std < start
        else:

            def at_date(point: tuple[int, int, int, int]) -> float:
                y, month, day, minutes = point
                return calendar.timegm((y, month, day, 0, 0, 0)) + minutes * 60

            inside = at_date(st.start) <= std < at_date(st.end) - st.offset * 60
        return (offset + st.offset, st.zone) if inside else (offset, name)

    def timestamp(self, t: float) -> str:
        """The ``logging timestamp`` text for ``t`` (local time; RFC 5424 form in UTC)."""
        if self.settings.timestamp == "rfc5424":
            return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        offset, _ = self.utc_offset(t)
        d = _time.gmtime(t + offset * 60)
        return f"{_MONTHS[d.tm_mon - 1]} {d.tm_mday:02d} {d.tm_year} {_clock(d)}"

    # -- lines -----------------------------------------------------------------------------------

    def _stamped(self) -> bool:
        return self.settings.timestamp != "" or not self.settings.configured

    def line(self, t: float, asa_id: int, severity: int, text: str) -> str:
        """One message as a buffer holds it and a (non-EMBLEM) syslog server gets it after ``<PRI>``."""
        ts = self.timestamp(t) if self._stamped() else None
        dev = self._device_id
        if dev:
            head = f"{ts} {dev} : " if ts else f"{dev} : "
        else:
            head = f"{ts}: " if ts else ""
        return f"{head}%ASA-{severity}-{asa_id}: {text}"

    def emblem_line(self, t: float, asa_id: int, severity: int, text: str) -> str:
        head = ""
        if self._stamped():
            offset, zone = self.utc_offset(t)
            d = _time.gmtime(t + offset * 60)
            head = f"{_MONTHS[d.tm_mon - 1]} {d.tm_mday:02d} {_clock(d)} {zone}: "
        return f":{head}%ASA-{message_class(asa_id)}-{severity}-{asa_id}: {text}"

    def lines(self, event: Event, destination: str | None = None) -> list[str]:
        """The lines ``destination`` (default: the log's, see the module docstring) holds for ``event``."""
        dest = destination or self.destination
        if dest is None:
            return []
        return [
            self.line(event.time, asa_id, sev, text)
            for asa_id, sev, text in self.messages(event)
            if self.admits(dest, asa_id, sev)
        ]

    def format_event(self, event: Event, *, hostname: str | None = None, timestamp: bool = True) -> list[str]:
        """``logfmt.asa.format_event``'s signature: the log's lines for ``event``. Without any
        ``logging`` command, ``hostname`` and ``timestamp`` keep their old meaning (UTC, every message)."""
        if not self.settings.configured:
            msgs = self.messages(event)
            if not msgs:
                return []
            head = _prefix(event.time, hostname, timestamp)
            return [f"{head}%ASA-{sev}-{asa_id}: {text}" for asa_id, sev, text in msgs]
        return self.lines(event)

    def format_events(self, events: Iterable[Event]) -> list[str]:
        return [line for ev in events for line in self.lines(ev)]

    def frames(self, event: Event, emblem: bool = False) -> list[tuple[int, str]]:
        """``(severity, message)`` datagrams for a syslog server: ``<PRI>`` and the line, as ``logging
        trap`` filters them (all of the log's messages when no trap level is set)."""
        dest = "trap" if self.settings.trap is not None else self.destination
        if dest is None:
            return []
        fac = self.settings.facility
        out = []
        for asa_id, sev, text in self.messages(event):
            if not self.admits(dest, asa_id, sev):
                continue
            body = (
                self.emblem_line(event.time, asa_id, sev, text)
                if emblem
                else self.line(event.time, asa_id, sev, text)
            )
            out.append((sev, f"<{fac * 8 + sev}>{body}"))
        return out


__all__ = ["MESSAGE_CLASSES", "NEWEST", "AsaLog", "message_class"]
