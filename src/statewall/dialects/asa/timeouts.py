"""The ASA's global ``timeout`` command: keywords, their ranges (reference A.3) and the way
``show running-config`` groups them on lines.

Modelled timeouts set ``Policy.timeouts`` fields; the others (sip, mgcp, uauth, ...) are valid but do
not affect statewall, so they are kept in ``Timeouts.extra`` and printed back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...policy import Timeouts
from .lexer import Cursor, format_duration
from .modes import Handler

if TYPE_CHECKING:
    from .parser import Parser

_MAX = 1193 * 3600  # the ASA's ceiling for every idle timeout


@dataclass(frozen=True, slots=True)
class Spec:
    field: str | None  # Timeouts field, None for a timeout kept in Timeouts.extra
    minimum: int  # seconds
    maximum: int = _MAX
    zero: bool = True  # 0 means "never"


TIMEOUTS: dict[str, Spec] = {
    "xlate": Spec("xlate", 60),
    "pat-xlate": Spec("pat_xlate", 30, 300, zero=False),
    "conn": Spec("conn", 300),
    "half-closed": Spec("half_closed", 300),  # 30 s from 9.1(2), see _minimum
    "udp": Spec("udp", 60),
    "icmp": Spec("icmp", 2, zero=False),
    "embryonic": Spec("embryonic", 5),
    "sunrpc": Spec("sunrpc", 60),
    "h323": Spec("h323", 0),
    "h225": Spec(None, 0),
    "mgcp": Spec(None, 0),
    "mgcp-pat": Spec(None, 0),
    "sip": Spec(None, 0),
    "sip_media": Spec(None, 0),
    "sip-invite": Spec(None, 0),
    "sip-disconnect": Spec(None, 0),
    "sip-provisional-media": Spec(None, 0),
    "uauth": Spec(None, 0),
    "tcp-proxy-reassembly": Spec(None, 0),
    "floating-conn": Spec(None, 0),
    "conn-holddown": Spec(None, 0),
    "igp stale-route": Spec(None, 0),
    # 9.x additions (Cisco ASA command reference, "timeout").
    "sctp": Spec(None, 60),
    "icmp-error": Spec(None, 0),
    "gsn": Spec(None, 0),
    "tcp-state-bypass": Spec(None, 0),
    "edns": Spec(None, 0),
}

# What a real ASA does with the timeouts statewall keeps but does not model (Cisco ASA command
# reference, "timeout"), for check's warning; the others are idle timeouts of protocols' connections.
_PROTOCOL_IDLE = "expire idle connections of those protocols after these times"
EFFECTS: dict[str, str] = {
    "uauth": "make a cut-through proxy user authenticate again after this time",
    "tcp-proxy-reassembly": "drop segments buffered for TCP proxy reassembly after this idle time",
    "floating-conn": "close connections on a worse route this long after a better route appears",
    "conn-holddown": "keep a connection this long after its route disappears before freeing it",
    "igp stale-route": "keep stale routing protocol (IGP) routes this long before removing them",
}

# How show running-config groups the keywords on lines; each line prints the keywords it has.
_LINES: tuple[tuple[str, ...], ...] = (
    ("xlate",),
    ("pat-xlate",),
    ("conn", "half-closed", "udp", "sctp", "icmp"),
    ("icmp-error",),
    ("embryonic",),
    ("sunrpc", "h323", "h225", "mgcp", "mgcp-pat"),
    ("sip", "sip_media", "sip-invite", "sip-disconnect"),
    ("sip-provisional-media", "uauth"),
    ("tcp-proxy-reassembly",),
    ("floating-conn",),
    ("conn-holddown",),
    ("igp stale-route",),
    ("gsn",),
    ("tcp-state-bypass",),
    ("edns",),
)
# Printed even when they have their default value, as the ASA does.
_ALWAYS = frozenset({"xlate", "conn", "half-closed", "udp", "icmp", "sunrpc", "h323"})


def _version(text: str | None) -> tuple[int, int, int] | None:
    m = re.match(r"^(\d+)\.(\d+)(?:\((\d+))?", text or "")
    return (int(m[1]), int(m[2]), int(m[3] or 0)) if m else None


def _minimum(p: Parser, keyword: str, spec: Spec) -> int:
    if keyword == "half-closed":
        version = _version(p.policy.version)
        if version is not None and version >= (9, 1, 2):
            return 30
    return spec.minimum


def timeout(p: Parser, c: Cursor) -> None:
    """``timeout conn 1:00:00 half-closed 0:10:00 udp 0:02:00 ...``: several keywords on one line."""
    if c.at_end():
        raise c.error(None, "missing timeout keyword")
    unmodelled: list[str] = []
    while not c.at_end():
        kw_tok = c.next("timeout keyword")
        keyword = kw_tok.word
        if keyword == "igp":
            c.keyword(("stale-route",), "igp timeout")
            keyword = "igp stale-route"
        spec = TIMEOUTS.get(keyword)
        if spec is None:
            raise c.error(kw_tok, f"unknown timeout '{kw_tok.text}'")
        dur_tok, seconds = c.duration(f"timeout {keyword}")
        low = _minimum(p, keyword, spec)
        if not (low <= seconds <= spec.maximum or (spec.zero and seconds == 0)):
            span = f"{format_duration(low)}..{format_duration(spec.maximum)}"
            raise c.error(dur_tok, f"timeout {keyword} must be {'0 or ' if spec.zero else ''}{span}")
        if spec.field is None:
            unmodelled.append(keyword)
            value = format_duration(seconds)
            if keyword == "uauth":
                qualifier = c.accept("absolute", "inactivity")
                value += f" {qualifier.word}" if qualifier else ""
            p.policy.timeouts.extra[keyword] = value
        else:
            setattr(p.policy.timeouts, spec.field, float(seconds))
            p.policy.timeouts.origins[spec.field] = p.origin(c.line)
    if unmodelled == ["floating-conn"] and p.policy.timeouts.extra.get("floating-conn") == "0:00:00":
        p.no_effect()  # 0 turns the feature off
    elif unmodelled and len(unmodelled) == len([t for t in c.line.tokens if ":" in t.text or t.text == "0"]):
        effects = list(dict.fromkeys(EFFECTS.get(k, _PROTOCOL_IDLE) for k in unmodelled))
        p.gap(c.line, "timeout " + ", ".join(unmodelled), "; ".join(effects))


def render(timeouts: Timeouts) -> list[str]:
    defaults = Timeouts()
    lines = []
    for group in _LINES:
        parts = []
        for keyword in group:
            spec = TIMEOUTS[keyword]
            if spec.field is None:
                if keyword in timeouts.extra:
                    parts.append(f"{keyword} {timeouts.extra[keyword]}")
                continue
            value = getattr(timeouts, spec.field)
            if keyword in _ALWAYS or value != getattr(defaults, spec.field):
                parts.append(f"{keyword} {format_duration(value)}")
        if parts:
            lines.append("timeout " + " ".join(parts))
    return lines


COMMANDS: dict[str, Handler] = {"timeout": timeout}
