"""Events back from their JSON lines: ``events.jsonl`` read into the typed events they were written from,
so that the report's syslog lines come from ``statewall.logfmt`` exactly as ``log.txt``'s did.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .. import events as ev_mod
from ..events import DropReason, Endpoint, Event
from ..policy import Origin

_CLASSES: dict[str, type[Event]] = {
    name: obj
    for name, obj in vars(ev_mod).items()
    if isinstance(obj, type) and issubclass(obj, Event) and obj is not Event
}


def _value(name: str, value: Any, cls: type[Event]) -> Any:
    if isinstance(value, dict) and {"interface", "address", "port"} <= value.keys():
        return Endpoint(**value)
    if name == "origin" and isinstance(value, dict):
        return Origin(value.get("file", ""), value.get("line", 0), value.get("text", ""))
    if name == "reason" and cls is ev_mod.Drop and isinstance(value, str):
        return DropReason.from_keyword(value)
    if isinstance(value, list):
        return tuple(value)
    return value


def event_from_record(record: dict[str, Any]) -> Event | None:
    """The event a JSON line was written from; None for a kind this version does not know."""
    cls = _CLASSES.get(record.get("event", ""))
    if cls is None:
        return None
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in record:
            kwargs[f.name] = _value(f.name, record[f.name], cls)
    try:
        return cls(**kwargs)
    except (TypeError, KeyError, ValueError):
        return None
