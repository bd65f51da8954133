"""The ASA's ``logging ...`` commands and the clock settings that shape log timestamps (``clock timezone``,
``clock summer-time``), parsed into ``Policy.logging`` (``statewall.policy.LoggingSettings``).

Every line is also kept verbatim so that a running-config prints back as written. Syntax and defaults
from the Cisco ASA command reference (``logging host``: UDP 514, TCP 1470; ``logging facility``: 20;
``clock summer-time ... recurring`` without dates: the US rule) and the CLI configuration guide's
logging chapter. Forms whose effect statewall does not model (``logging rate-limit``, the ASDM, mail
and SNMP destinations, ...) are kept with a warning that says so.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ...policy import LOG_LEVELS, LoggingHost, LoggingList, SummerTime
from .lexer import Cursor, Token
from .modes import Handler

if TYPE_CHECKING:
    from .parser import Parser

# Destinations statewall writes to: the buffer is log.txt / ``show logging``, trap the syslog servers.
_DESTINATIONS = ("trap", "buffered", "console", "monitor")
# Forms that change which messages a destination gets, not modelled: said so, kept.
_NOT_MODELLED = frozenset({"rate-limit", "class"})
# Accepted and kept: destinations statewall does not have (ASDM, mail, SNMP history, flash, FTP),
# buffer sizes, queueing, the standby unit. They change nothing statewall writes.
_KEPT = frozenset(
    {
        "asdm",
        "asdm-buffer-size",
        "buffer-size",
        "debug-trace",
        "emblem",
        "flash-bufferwrap",
        "flash-maximum-allocation",
        "flash-minimum-free",
        "from-address",
        "ftp-bufferwrap",
        "ftp-server",
        "hide",
        "history",
        "mail",
        "permit-hostdown",
        "queue",
        "recipient-address",
        "savelog",
        "standby",
    }
)
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")  # fmt: skip
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _level(c: Cursor, tok: Token) -> int:
    if tok.text.isdigit():
        return c.integer_of(tok, 0, 7, "logging level")
    for i, name in enumerate(LOG_LEVELS):
        # The ASA takes any unambiguous abbreviation ("informational", "info", "debug").
        if name.startswith(tok.word) and len(tok.word) >= 2:
            return i
    raise c.error(tok, f"invalid logging level '{tok.text}' (0..7 or {', '.join(LOG_LEVELS)})")


def _level_or_list(p: Parser, c: Cursor) -> int | str:
    tok = c.next("logging level or list")
    if not tok.text.isdigit() and not any(n.startswith(tok.word) for n in LOG_LEVELS):
        name = tok.text
        p.require(
            lambda: name in p.policy.logging.lists,
            c.error(tok, f"logging list '{name}' is not defined"),
        )
        return name
    return _level(c, tok)


def _message_id(c: Cursor) -> int:
    return c.integer(100000, 999999, "syslog message id")


def _time_of_day(c: Cursor, what: str) -> int:
    tok = c.next(what)
    hh, sep, mm = tok.text.partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or int(hh) > 23 or int(mm) > 59:
        raise c.error(tok, f"invalid time '{tok.text}' (expected hh:mm)")
    return int(hh) * 60 + int(mm)


def _month(c: Cursor, tok: Token) -> int:
    for i, name in enumerate(_MONTHS):
        if len(tok.word) >= 3 and name.startswith(tok.word):
            return i + 1
    raise c.error(tok, f"invalid month '{tok.text}'")


def logging(p: Parser, c: Cursor, negate: bool = False) -> None:
    settings = p.policy.logging
    settings.configured = True
    origin = p.origin(c.line)
    tok = c.next("logging command")
    what = tok.word
    if what in _NOT_MODELLED:
        p.warn(c.line, f"logging {what} is not modelled (it changes which messages are logged); kept")
        p.keep(c.line)
        return
    if what in _KEPT:
        p.keep(c.line)
        return
    if what == "enable":
        c.end()
        settings.enabled = not negate
    elif what == "timestamp":
        form = "rfc5424" if c.accept("rfc5424") else "legacy"
        c.end()
        settings.timestamp = "" if negate else form
    elif what in _DESTINATIONS:
        value = None if negate else _level_or_list(p, c)
        if negate and not c.at_end():
            c.next("level")
        c.end()
        setattr(settings, what, value)
    elif what == "device-id":
        if negate:
            settings.device_id = None
            c.rest()
        else:
            kind = c.keyword(
                ("hostname", "ipaddress", "string", "context-name", "cluster-id"), "device-id type"
            )
            value = ""
            if kind == "ipaddress":
                itok = c.next("interface name")
                value = itok.text
                c.accept("system")
                p.require(
                    lambda: value in p.policy.interfaces,
                    c.error(itok, f"logging device-id names unknown interface '{value}'"),
                )
            elif kind == "string":
                stok = c.next("device-id string")
                if len(stok.text) > 15:
                    raise c.error(stok, "device-id string is at most 15 characters")
                value = stok.text
            elif kind == "cluster-id":
                p.warn(c.line, "logging device-id cluster-id is not modelled (no cluster); kept")
            c.end()
            settings.device_id = (kind, value)
    elif what == "message":
        msg = _message_id(c)
        if c.accept("level"):
            level = _level(c, c.next("level"))
            c.end()
            if negate:
                settings.message_levels.pop(msg, None)
            else:
                settings.message_levels[msg] = level
        else:
            c.end()
            if negate:
                settings.disabled.add(msg)
            else:
                settings.disabled.discard(msg)
    elif what == "list":
        name = c.next("list name").text
        lst = settings.lists.setdefault(name, LoggingList(name, origin=origin))
        kind = c.keyword(("level", "message"), "list criterion")
        if kind == "level":
            level = _level(c, c.next("level"))
            cls = c.next("class name").word if c.accept("class") else None
            lst.levels.append((level, cls))
        else:
            rtok = c.next("message id or range")
            low, sep, high = rtok.text.partition("-")
            if not low.isdigit() or (sep and not high.isdigit()):
                raise c.error(rtok, f"invalid message range '{rtok.text}' (expected N or N-M)")
            lo, hi = int(low), int(high or low)
            if not 100000 <= lo <= hi <= 999999:
                raise c.error(rtok, "message ids are 100000..999999, low to high")
            lst.messages.append((lo, hi))
        c.end()
        if negate:
            settings.lists.pop(name, None)
    elif what == "facility":
        facility = 20 if negate else c.integer(16, 23, "logging facility")
        c.end()
        settings.facility = facility
    elif what == "host":
        _host(p, c, negate)
    else:
        raise c.error(tok, f"unknown logging command '{tok.text}'")
    settings.origins[what] = origin
    p.keep(c.line)


def _host(p: Parser, c: Cursor, negate: bool) -> None:
    settings = p.policy.logging
    itok = c.next("interface name")
    atok = c.next("syslog server address")
    try:
        addr = ipaddress.ip_address(p.hosts.get(atok.text, atok.text))
    except ValueError:
        raise c.error(atok, f"invalid IP address '{atok.text}'") from None
    if negate:
        settings.hosts = [h for h in settings.hosts if not (h.interface == itok.text and h.address == addr)]
        c.rest()
        return
    transport, port, emblem = "udp", 514, False
    while not c.at_end():
        tok = c.next("logging host option")
        proto, sep, port_text = tok.word.partition("/")
        if proto in ("udp", "tcp", "17", "6"):
            transport = "tcp" if proto in ("tcp", "6") else "udp"
            port = 1470 if transport == "tcp" else 514
            if sep:
                if not port_text.isdigit() or not 1025 <= int(port_text) <= 65535 and int(port_text) != 514:
                    # The ASA accepts ports 1025-65535 (and UDP 514).
                    raise c.error(tok, f"invalid syslog port '{port_text}' (1025..65535)")
                port = int(port_text)
        elif tok.word == "format":
            c.keyword(("emblem",), "format")
            emblem = True
        elif tok.word == "secure":
            raise c.error(tok, "logging host ... secure (TLS) is not modelled")
        else:
            raise c.error(tok, f"unexpected '{tok.text}'")
    host = LoggingHost(itok.text, addr, transport, port, emblem, origin=p.origin(c.line))
    settings.hosts.append(host)
    p.expect(
        lambda: itok.text in p.policy.interfaces,
        c.line,
        itok.col,
        f"logging host names unknown interface '{itok.text}': no messages are sent to this host",
        lambda: settings.hosts.remove(host),
    )


def clock(p: Parser, c: Cursor) -> None:
    """``clock timezone NAME HOURS [MINUTES]``; ``clock summer-time ...``. Other clock lines are kept."""
    word = c.peek()
    if word == "timezone":
        c.next("timezone")
        name = c.next("time zone name").text
        htok = c.next("hours offset")
        try:
            hours = int(htok.text)
        except ValueError:
            raise c.error(htok, f"invalid hours offset '{htok.text}'") from None
        if not -23 <= hours <= 23:
            raise c.error(htok, "hours offset must be -23..23")
        minutes = c.integer(0, 59, "minutes offset") if not c.at_end() else 0
        c.end()
        p.policy.logging.timezone = (name, hours * 60 + (-minutes if hours < 0 else minutes))
    elif word == "summer-time":
        c.next("summer-time")
        p.policy.logging.summer_time = _summer_time(p, c)
    p.keep(c.line)


def _summer_time(p: Parser, c: Cursor) -> SummerTime:
    zone = c.next("time zone name").text
    kind = c.keyword(("recurring", "date"), "summer-time form")
    st = SummerTime(zone, recurring=kind == "recurring", origin=p.origin(c.line))
    if kind == "recurring":
        if c.at_end() or (c.peek() or "").isdigit() and c.peek(1) is None:
            if not c.at_end():
                st.offset = c.integer(1, 1440, "offset")
            c.end()
            return st
        points = []
        for _ in range(2):
            wtok = c.next("week")
            if wtok.word == "last":
                week = 5
            elif wtok.text.isdigit() and 1 <= int(wtok.text) <= 4:
                week = int(wtok.text)
            else:
                raise c.error(wtok, f"invalid week '{wtok.text}' (1..4 or last)")
            dtok = c.next("weekday")
            day = next(
                (i for i, n in enumerate(_WEEKDAYS) if len(dtok.word) >= 3 and n.startswith(dtok.word)), None
            )
            if day is None:
                raise c.error(dtok, f"invalid weekday '{dtok.text}'")
            month = _month(c, c.next("month"))
            points.append((week, day, month, _time_of_day(c, "time")))
        st.start, st.end = points[0], points[1]
    else:
        points = []
        for _ in range(2):
            a = c.next("day or month")
            b = c.next("month or day")
            day_tok, month_tok = (a, b) if a.text.isdigit() else (b, a)
            day = c.integer_of(day_tok, 1, 31, "day")
            month = _month(c, month_tok)
            year = c.integer(1993, 2100, "year")
            points.append((year, month, day, _time_of_day(c, "time")))
        st.start, st.end = points[0], points[1]
    if not c.at_end():
        st.offset = c.integer(1, 1440, "offset")
    c.end()
    return st


def no(p: Parser, c: Cursor) -> None:
    """``no logging ...`` here; every other ``no`` command goes where it went before."""
    if c.peek() == "logging":
        c.next("logging")
        logging(p, c, negate=True)
        return
    from . import mpf  # the policy framework owns the other "no" forms

    mpf.COMMANDS["no"](p, c)


COMMANDS: dict[str, Handler] = {"logging": logging, "clock": clock, "no": no}
