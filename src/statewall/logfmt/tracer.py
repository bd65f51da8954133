"""packet-tracer's output as the ASA prints it: text (``packet-tracer ... [detailed]``), XML
(``packet-tracer ... xml``) and JSON, from phase records that ``statewall.tracer`` takes from the
pipeline's own stages.

Layout from the Cisco ASA command reference (packet-tracer) and real output: numbered blocks of
``Phase:`` / ``Type:`` / ``Subtype:`` / ``Result: ALLOW|DROP`` / ``Config:`` (the configuration lines
the phase used, or ``Implicit Rule``, or nothing) / ``Additional Information:`` (with ``detailed``,
also the ``Forward Flow based lookup yields rule:`` block), each followed by a blank line; then the
``Result:`` block (``input-interface``, ``input-status``, ``input-line-status``, ``output-*``,
``Action: allow|drop`` and ``Drop-reason: (keyword) description``). The XML form has ``<Phase>``
elements with ``<id>``, ``<type>``, ``<subtype>``, ``<result>``, ``<config>``, ``<extra>``, then
``<result>`` with the same fields and ``<drop-reason>``.

statewall's own explanation (why, the configuration line, the change that lets the packet through)
comes after the ASA's text, on lines that start ``statewall:``, and under ``statewall`` in the JSON;
the XML carries only the ASA's elements.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from xml.sax.saxutils import escape


@dataclass(slots=True)
class TracePhase:
    """One phase: ``config`` lines as the ASA shows them (empty when it shows none), ``info`` the
    Additional Information lines, ``lookup`` the ``detailed`` rule-lookup lines."""

    type: str
    subtype: str = ""
    allowed: bool = True
    config: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    lookup: list[str] = field(default_factory=list)


@dataclass(slots=True)
class TraceResult:
    input_interface: str
    output_interface: str | None
    allowed: bool
    drop_keyword: str | None = None
    drop_description: str | None = None
    # statewall's explanation: lines printed after the ASA's text.
    notes: list[str] = field(default_factory=list)


def format_text(phases: list[TracePhase], result: TraceResult, *, detailed: bool = False) -> str:
    lines: list[str] = []
    for n, ph in enumerate(phases, 1):
        lines += [
            f"Phase: {n}",
            f"Type: {ph.type}",
            f"Subtype: {ph.subtype}",
            f"Result: {'ALLOW' if ph.allowed else 'DROP'}",
            "Config:",
            *ph.config,
            "Additional Information:",
            *ph.info,
        ]
        if detailed and ph.lookup:
            lines += [" Forward Flow based lookup yields rule:", *ph.lookup]
        lines.append("")
    lines += [
        "Result:",
        f"input-interface: {result.input_interface}",
        "input-status: up",
        "input-line-status: up",
    ]
    if result.output_interface:
        lines += [
            f"output-interface: {result.output_interface}",
            "output-status: up",
            "output-line-status: up",
        ]
    lines.append(f"Action: {'allow' if result.allowed else 'drop'}")
    if not result.allowed and result.drop_keyword:
        lines.append(f"Drop-reason: ({result.drop_keyword}) {result.drop_description}")
    if result.notes:
        lines.append("")
        lines += [f"statewall: {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def format_xml(phases: list[TracePhase], result: TraceResult) -> str:
    out: list[str] = []
    for n, ph in enumerate(phases, 1):
        out += [
            "<Phase>",
            f"<id>{n}</id>",
            f"<type>{escape(ph.type)}</type>",
            f"<subtype>{escape(ph.subtype)}</subtype>",
            f"<result>{'ALLOW' if ph.allowed else 'DROP'}</result>",
            f"<config>{escape(chr(10).join(ph.config))}</config>",
            f"<extra>{escape(chr(10).join(ph.info))}</extra>",
            "</Phase>",
        ]
    out += [
        "<result>",
        f"<input-interface>{escape(result.input_interface)}</input-interface>",
        "<input-status>up</input-status>",
        "<input-line-status>up</input-line-status>",
    ]
    if result.output_interface:
        out += [
            f"<output-interface>{escape(result.output_interface)}</output-interface>",
            "<output-status>up</output-status>",
            "<output-line-status>up</output-line-status>",
        ]
    out.append(f"<action>{'allow' if result.allowed else 'drop'}</action>")
    if not result.allowed and result.drop_keyword:
        out.append(
            f"<drop-reason>({result.drop_keyword}) {escape(result.drop_description or '')}</drop-reason>"
        )
    out.append("</result>")
    return "\n".join(out) + "\n"


def format_json(phases: list[TracePhase], result: TraceResult) -> str:
    data = {
        "phases": [{"id": n, **asdict(ph)} for n, ph in enumerate(phases, 1)],
        "result": {
            "input_interface": result.input_interface,
            "output_interface": result.output_interface,
            "action": "allow" if result.allowed else "drop",
            "drop_reason": (
                {"keyword": result.drop_keyword, "description": result.drop_description}
                if not result.allowed and result.drop_keyword
                else None
            ),
        },
        "statewall": result.notes,
    }
    return json.dumps(data, indent=2) + "\n"
