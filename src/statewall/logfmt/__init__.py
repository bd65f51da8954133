"""Events to text: ASA syslog lines (``asa``), JSON lines (``jsonl``), counters and ``show asp drop``
(``counters``), ``show conn`` / ``show xlate`` (``asa``).

Every output is derived from the engine's typed events (``statewall.events``); nothing here touches
engine state.
"""

from .asa import (
    MESSAGES,
    ConnRecord,
    Message,
    XlateRecord,
    drop_fields,
    format_duration,
    format_event,
    format_events,
    format_show_conn,
    format_show_xlate,
    format_tcp_flags,
    messages_for,
    protocol_name,
)
from .counters import FLOW_DROPS, Counters, format_show_asp_drop
from .jsonl import event_record, event_to_json, write_jsonl

__all__ = [
    "FLOW_DROPS",
    "MESSAGES",
    "ConnRecord",
    "Counters",
    "Message",
    "XlateRecord",
    "drop_fields",
    "event_record",
    "event_to_json",
    "format_duration",
    "format_event",
    "format_events",
    "format_show_asp_drop",
    "format_show_conn",
    "format_show_xlate",
    "format_tcp_flags",
    "messages_for",
    "protocol_name",
    "write_jsonl",
]
