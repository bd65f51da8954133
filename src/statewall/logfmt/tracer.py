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
the XML carries only the ASA's elements. A phase statewall does not model sits where the ASA prints it,
with ``Result: NOT MODELLED`` (``<result>NOT MODELLED</result>``, ``"result": "NOT MODELLED"`` and
``"modelled": false`` in the JSON) and an Additional Information line saying what a real ASA would do.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field
from xml.sax.saxutils import escape


@dataclass(slots=True)
class TracePhase:
    """One phase: ``config`` lines as the ASA shows them (empty when it shows none), ``info`` the
    Additional Information lines, ``lookup`` the ``detailed`` rule-lookup lines. ``modelled`` False:
    a phase the ASA would have (a crypto map's encryption, an inspection) that no stage of statewall
    carries out, printed in the ASA's place for it with ``Result: NOT MODELLED`` (``statewall.gaps``)."""

    type: str
    subtype: str = ""
    allowed: bool = True
    config: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    lookup: list[str] = field(default_factory=list)
    modelled: bool = True

    @property
    def result(self) -> str:
        if not self.modelled:
            return NOT_MODELLED
        return "ALLOW" if self.allowed else "DROP"


# The Result of a phase statewall does not model: never ALLOW or DROP, so that nobody takes it for the
# ASA's verdict.
NOT_MODELLED = "NOT MODELLED"


@dataclass(slots=True)
class TraceResult:
    input_interface: str
    output_interface: str | None
    allowed: bool
    drop_keyword: str | None = None
    drop_description: str | None = None
    # statewall's explanation: lines printed after the ASA's text.
    notes: list[str] = field(default_factory=list)


# The ``ip/id=``, ``tag=any`` and ``input_ifc=`` form of the lookup lines: ASA 9.x outputs have it
# (identity firewall, 8.4(2), added the user identity ``id``); 8.2 outputs have ``src ip=..., mask=...,
# port=0`` and no interface line. The 8.3/8.4 boundary is inferred, not from release notes.
LOOKUP_IDENTITY = (8, 4)


def _pointer(key: str, release: tuple[int, int]) -> str:
    """The id/user_data the ASA prints are memory addresses (64-bit from 9.x, 32-bit before): statewall
    prints a stable CRC-32 of the rule instead, in the same width."""
    crc = zlib.crc32(key.encode())
    return f"0x7f{crc:010x}" if release >= LOOKUP_IDENTITY else f"0x{crc:08x}"


def lookup_lines(lk, release: tuple[int, int]) -> list[str]:
    """The ``detailed`` form's rule lines for a ``statewall.engine.context.Lookup``, as the ASA prints
    them (9.x: `` in  id=0x7fffde1286c0, priority=11, domain=permit, deny=true`` / ``        hits=N,
    user_data=0x6, cs_id=0x0, use_real_addr, flags=0x0, protocol=0`` / ``        src ip/id=0.0.0.0,
    mask=0.0.0.0, port=0, tag=any`` / ``        dst ip/id=..., tag=any, dscp=0x0`` / ``
    input_ifc=outside, output_ifc=any``; 8.2: ``src ip=``/``dst ip=`` without tag and interfaces)."""
    new = release >= LOOKUP_IDENTITY
    user = _pointer(lk.key + "/user_data", release) if lk.user_data else "0x0"
    flags = "".join(f"{f}, " for f in lk.flags)
    ip = "ip/id" if new else "ip"
    tag = ", tag=any" if new else ""
    lines = [
        f" {lk.direction:<3} id={_pointer(lk.key, release)}, priority={lk.priority}, domain={lk.domain}, "
        f"deny={'true' if lk.deny else 'false'}",
        f"        hits={lk.hits}, user_data={user}, cs_id=0x0, {flags}flags=0x0, protocol={lk.protocol}",
        f"        src {ip}={lk.src[0]}, mask={lk.src[1]}, port={lk.src[2]}{tag}",
        f"        dst {ip}={lk.dst[0]}, mask={lk.dst[1]}, port={lk.dst[2]}{tag}, dscp=0x0",
    ]
    if new:
        lines.append(f"        input_ifc={lk.input_ifc}, output_ifc={lk.output_ifc}")
    return lines


def format_text(phases: list[TracePhase], result: TraceResult, *, detailed: bool = False) -> str:
    lines: list[str] = []
    for n, ph in enumerate(phases, 1):
        lines += [
            f"Phase: {n}",
            f"Type: {ph.type}",
            f"Subtype: {ph.subtype}",
            f"Result: {ph.result}",
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


def format_xml(phases: list[TracePhase], result: TraceResult, *, detailed: bool = False) -> str:
    """The ``xml`` form; with ``detailed`` each phase's ``<extra>`` also holds its rule lookup, as the
    text form's Additional Information does."""
    out: list[str] = []
    for n, ph in enumerate(phases, 1):
        extra = (
            [*ph.info, " Forward Flow based lookup yields rule:", *ph.lookup]
            if detailed and ph.lookup
            else ph.info
        )
        out += [
            "<Phase>",
            f"<id>{n}</id>",
            f"<type>{escape(ph.type)}</type>",
            f"<subtype>{escape(ph.subtype)}</subtype>",
            f"<result>{ph.result}</result>",
            f"<config>{escape(chr(10).join(ph.config))}</config>",
            f"<extra>{escape(chr(10).join(extra))}</extra>",
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
        "phases": [{"id": n, **asdict(ph), "result": ph.result} for n, ph in enumerate(phases, 1)],
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
