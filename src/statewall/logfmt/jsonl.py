"""Events as JSON lines (``events.jsonl``): one object per event, schema in docs/events.md.

Each record carries the event's own fields (statewall's names: the same facts the syslog line is made
from) and, beside them, the names of Elastic's Common Schema (ECS) where one fits: ``@timestamp`` (ISO
8601 with its zone), ``event.kind`` / ``event.action`` / ``event.code`` / ``event.reason``,
``log.level`` / ``log.syslog.severity.code``, ``source.*`` / ``destination.*``, ``network.transport``,
``network.iana_number``, ``network.community_id`` (the Community ID flow hash, v1, of the packet's
tuple as it arrived: one value for every event of a flow seen on that side, drops included),
``observer.ingress.interface.name`` / ``observer.egress.interface.name``, ``rule.name`` /
``rule.ruleset``. ECS keys are written dotted (``"source.ip"``), which Elasticsearch and the ECS tools
read as the nested fields. No field name ends in an underscore: the translation kind is ``xlate_type``.

Keys come in a fixed order (``@timestamp``, ``event``, ``time``, ``asa_id``, ``asa_severity``, the
event's own fields in declaration order, then the ECS fields) so files diff cleanly between runs.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import socket
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

from ..events import (
    AclHit,
    ConnBuilt,
    ConnTeardown,
    CtEvent,
    Drop,
    Event,
    FtpTransfer,
    IcmpSent,
    NfLog,
    XlateBuilt,
    XlateTeardown,
)
from ..policy import LOG_LEVELS
from .asa import messages_for, protocol_name, utc_second

SCHEMA = "statewall.events/2"

# Renamed fields of the event dataclasses (a trailing underscore is Python's, not a schema's).
_RENAMED = {"kind_": "xlate_type"}

# ECS event.action per event type.
_ACTIONS = {
    "ConnBuilt": "connection-built",
    "ConnTeardown": "connection-teardown",
    "XlateBuilt": "translation-built",
    "XlateTeardown": "translation-teardown",
    "PortBlockAllocated": "port-block-allocated",
    "PortBlockReleased": "port-block-released",
    "PortBlockActive": "port-block-active",
    "Drop": "packet-dropped",
    "AclHit": "access-list-hit",
    "IcmpSent": "icmp-sent",
    "FtpTransfer": "ftp-transfer",
    "NfLog": "netfilter-log",
    "CtEvent": "conntrack-event",
    "ThreatRate": "threat-rate-exceeded",
}

# Community ID v1 (https://github.com/corelight/community-id-spec): ICMP types that pair as request
# and reply map to a "port" pair so that both directions hash alike; others are one-way.
_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17, 10: 9, 9: 10}
_ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130}


# A connection's built and teardown events (and a flow's drops) hash one tuple: kept for the next.
@functools.lru_cache(maxsize=1 << 14)
def community_id(
    protocol: int,
    src: str,
    sport: int,
    dst: str,
    dport: int,
    icmp: tuple[int, int] | None = None,
    seed: int = 0,
) -> str | None:
    """The Community ID (v1, base64 SHA-1) of a flow tuple; None for addresses that do not parse."""
    try:
        ab = socket.inet_pton(socket.AF_INET6 if ":" in src else socket.AF_INET, src)
        bb = socket.inet_pton(socket.AF_INET6 if ":" in dst else socket.AF_INET, dst)
    except (OSError, TypeError):
        return None
    one_way = False
    if icmp is not None and protocol in (1, 58):
        itype, code = icmp
        pairs = _ICMP4_PAIRS if protocol == 1 else _ICMP6_PAIRS
        sport, dport = itype, pairs.get(itype, code)
        one_way = itype not in pairs
    if not one_way and (ab, sport) > (bb, dport):
        ab, bb, sport, dport = bb, ab, dport, sport
    data = seed.to_bytes(2, "big") + ab + bb + bytes([protocol, 0])
    if protocol in (1, 6, 17, 58, 132):
        data += sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()  # noqa: S324 - the spec's hash


def iso_time(t: float) -> str:
    """ISO 8601 in UTC with its offset and microseconds: ``2007-09-19T06:55:58.250000+00:00``.

    ``datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")``, with the date and time of
    day made once per second: the microseconds are rounded as ``fromtimestamp`` rounds them (the
    fraction times 10^6, half to even, carried into the seconds at 10^6)."""
    second, us = utc_second(t)
    head = _ISO_SECONDS.get(second)
    if head is None:
        if len(_ISO_SECONDS) > 4096:
            _ISO_SECONDS.clear()
        head = _ISO_SECONDS[second] = datetime.fromtimestamp(second, UTC).isoformat()[:19]
    return f"{head}.{us:06d}+00:00"


_ISO_SECONDS: dict[int, str] = {}


def _flow(
    event: Event,
) -> tuple[int, str, int, str, int, str | None, str | None, tuple[int, int] | None] | None:
    """(protocol, src, sport, dst, dport, ingress, egress, icmp) of the packet an event is about."""
    if isinstance(event, Drop):
        icmp = (event.icmp_type or 0, event.icmp_code or 0) if event.icmp_type is not None else None
        return (
            event.protocol,
            event.src,
            event.sport,
            event.dst,
            event.dport,
            event.interface,
            event.egress,
            icmp,
        )
    if isinstance(event, (ConnBuilt, ConnTeardown)):
        i, r = event.initiator, event.responder
        icmp = (event.icmp_type, event.icmp_code or 0) if event.icmp_type is not None else None
        # The first packet as it arrived: from the initiator's real address to the address it sent to.
        return (
            event.protocol,
            i.address,
            i.port,
            r.mapped_address,
            r.mapped_port,
            i.interface,
            r.interface,
            icmp,
        )
    if isinstance(event, AclHit):
        return (
            event.protocol,
            event.src,
            event.sport,
            event.dst,
            event.dport,
            event.in_interface,
            event.out_interface,
            None,
        )
    if isinstance(event, FtpTransfer):
        i, r = event.initiator, event.responder
        return (6, i.address, i.port, r.address, r.port, i.interface, r.interface, None)
    if isinstance(event, CtEvent):
        src, dst, sport, dport = event.orig
        icmp = (event.icmp[0], event.icmp[1]) if event.icmp else None
        return (event.protocol, src, sport, dst, dport, None, None, icmp)
    return None


def _ecs(event: Event, record: dict[str, Any]) -> dict[str, Any]:
    kind = event.kind
    ecs: dict[str, Any] = {"event.kind": "alert" if isinstance(event, Drop) else "event"}
    ecs["event.action"] = _ACTIONS.get(kind, kind)
    if "asa_id" in record:
        ecs["event.code"] = str(record["asa_id"])
        sev = record["asa_severity"]
        ecs["log.level"] = LOG_LEVELS[sev]
        ecs["log.syslog.severity.code"] = sev
    elif isinstance(event, NfLog):
        ecs["log.level"] = LOG_LEVELS[event.level] if 0 <= event.level < 8 else str(event.level)
        ecs["log.syslog.severity.code"] = event.level
    if isinstance(event, Drop):
        ecs["event.reason"] = event.reason.description
    elif isinstance(event, ConnTeardown) and event.reason:
        ecs["event.reason"] = event.reason
    flow = _flow(event)
    if flow is not None:
        proto, src, sport, dst, dport, ingress, egress, icmp = flow
        if src:
            ecs["source.ip"] = src
            ecs["destination.ip"] = dst
            if proto in (6, 17, 132):
                ecs["source.port"] = sport
                ecs["destination.port"] = dport
            cid = community_id(proto, src, sport, dst, dport, icmp)
            if cid is not None:
                ecs["network.community_id"] = cid
        if proto:
            ecs["network.iana_number"] = str(proto)
            ecs["network.transport"] = protocol_name(proto)
        if ingress:
            ecs["observer.ingress.interface.name"] = ingress
        if egress:
            ecs["observer.egress.interface.name"] = egress
    elif isinstance(event, IcmpSent):
        ecs["source.ip"], ecs["destination.ip"] = event.src, event.dst
        ecs["observer.egress.interface.name"] = event.interface
    elif isinstance(event, (XlateBuilt, XlateTeardown)):
        ecs["source.ip"] = event.real_address
        ecs["source.nat.ip"] = event.mapped_address
        if event.protocol:
            ecs["source.port"] = event.real_port
            ecs["source.nat.port"] = event.mapped_port
    acl = getattr(event, "acl", None)
    if acl:
        ecs["rule.name"] = acl
    origin = getattr(event, "origin", None)
    if origin is not None:
        ecs["rule.ruleset"] = origin.file
    return ecs


def event_record(event: Event) -> dict[str, Any]:
    """The JSON-ready dict for one event (enums as keywords, addresses as text, floats kept)."""
    fields = event.to_dict()
    record: dict[str, Any] = {
        "@timestamp": iso_time(event.time),
        "event": fields.pop("event"),
        "time": fields.pop("time"),
    }
    msgs = messages_for(event)
    if msgs:
        record["asa_id"], record["asa_severity"], _ = msgs[0]
    if _RENAMED.keys() & fields.keys():
        for key, value in fields.items():
            record[_RENAMED.get(key, key)] = value
    else:
        record.update(fields)
    record.update(_ecs(event, record))
    return record


# default=str: ``detail`` is free-form, and a stray non-JSON value must not lose the event.
_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str).encode


def event_to_json(event: Event) -> str:
    """One line of JSON (no trailing newline)."""
    return _ENCODE(event_record(event))


def write_jsonl(fp: IO[str], events: Iterable[Event]) -> int:
    """Write one line per event to ``fp``; returns the number written."""
    n = 0
    for ev in events:
        fp.write(event_to_json(ev))
        fp.write("\n")
        n += 1
    return n
