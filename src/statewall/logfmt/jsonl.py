"""Events as JSON lines: one object per event, carrying every field of the event (the same facts the
syslog line is made from) plus its kind and, when the ASA logs it, the message id and severity.

Keys come in a fixed order (``event``, ``time``, ``asa_id``, ``asa_severity``, then the event's own
fields in declaration order) so files diff cleanly between runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import IO, Any

from ..events import Event
from .asa import messages_for


def event_record(event: Event) -> dict[str, Any]:
    """The JSON-ready dict for one event (enums as keywords, addresses as text, floats kept)."""
    fields = event.to_dict()
    record: dict[str, Any] = {"event": fields.pop("event"), "time": fields.pop("time")}
    msgs = messages_for(event)
    if msgs:
        record["asa_id"], record["asa_severity"], _ = msgs[0]
    record.update(fields)
    return record


def event_to_json(event: Event) -> str:
    """One line of JSON (no trailing newline)."""
    # default=str: ``detail`` is free-form, and a stray non-JSON value must not lose the event.
    return json.dumps(event_record(event), separators=(",", ":"), default=str)


def write_jsonl(fp: IO[str], events: Iterable[Event]) -> int:
    """Write one line per event to ``fp``; returns the number written."""
    n = 0
    for ev in events:
        fp.write(event_to_json(ev))
        fp.write("\n")
        n += 1
    return n
