"""packet-tracer: one synthetic packet through a fresh engine, phase by phase, in the ASA's layout.

The tracer does not simulate anything of its own: it builds the packet the ASA command describes (a TCP
SYN, a UDP datagram or an ICMP echo), hands it to a ``Firewall`` listening to its new-flow stages
(``Firewall.new_flow_stages``, ``statewall.engine.asa``: flow lookup, UN-NAT, route lookup, access
list, NAT, connection settings, flow creation), and prints the phase each stage reported with the
configuration line behind it. The phases are the stages' own (each stage declares the phases it may
report; a report under any other phase is a bug, refused here), so the tracer and the engine cannot
drift apart. The verdict is the engine's own.
"""

from __future__ import annotations

import ipaddress

from . import craft
from .engine import Firewall
from .events import Drop
from .logfmt.counters import ASA_NEAREST
from .logfmt.tracer import TracePhase, TraceResult, format_json, format_text, format_xml
from .policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Policy

_PROTOS = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "icmp": PROTO_ICMP, "icmp6": PROTO_ICMPV6}


class TracerError(ValueError):
    pass


def build_packet(proto: str, src: str, sport: int, dst: str, dport: int) -> bytearray:
    try:
        s = ipaddress.ip_address(src)
        d = ipaddress.ip_address(dst)
    except ValueError as e:
        raise TracerError(str(e)) from None
    if s.version != d.version:
        raise TracerError("source and destination must be of the same IP version")
    v = s.version
    p = proto.lower()
    if p == "tcp":
        opt = craft.tcp_option_mss(1460 if v == 4 else 1440)
        return craft.tcp_packet(v, int(s), int(d), sport, dport, 0x1000, 0, 0x02, window=64240, options=opt)
    if p == "udp":
        return craft.udp_packet(v, int(s), int(d), sport, dport, b"")
    if p in ("icmp", "icmp6"):
        # For ICMP the ASA syntax gives type and code where TCP has ports; an echo request is traced.
        return craft.icmp_echo(v, int(s), int(d), 1, 1, b"", reply=False)
    raise TracerError(f"unsupported protocol '{proto}' (tcp, udp, icmp)")


def stage_phases(fw: Firewall) -> list[str]:
    """The phases the engine's new-flow stages report, in stage order."""
    return [phase for st in fw.new_flow_stages for phase in st.phases]


def trace(
    policy: Policy, iface: str, proto: str, src: str, sport: int, dst: str, dport: int
) -> tuple[list[TracePhase], TraceResult]:
    """Trace one packet entering ``iface``: the phases as the ASA prints them and the result, with
    statewall's own explanation in ``TraceResult.notes`` (``statewall.logfmt.tracer`` lays them out).

    What the ASA prints is kept apart from what statewall adds: ROUTE-LOOKUP's Config is empty (the ASA
    names no configuration line there), ACCESS-LIST's Config is the access-group line and the ACE that
    matched, or ``Implicit Rule`` when none did (the implicit deny, the security levels), and its
    Additional Information is empty; statewall's sentence for each decision goes to the notes.
    """
    if iface not in policy.interfaces:
        raise TracerError(f"interface '{iface}' does not exist")
    fw = Firewall(policy, fast_path=False)
    fw.trace_log = []
    res = fw.receive(iface, build_packet(proto, src, sport, dst, dport), 0.0)
    stages = stage_phases(fw)
    phases: list[TracePhase] = []
    notes: list[str] = []
    for typ, subtype, ok, origin, info in fw.trace_log:
        if typ not in stages:
            raise RuntimeError(
                f"phase {typ} reported by no stage of {[s.__name__ for s in fw.new_flow_stages]}"
            )
        phase = TracePhase(typ, subtype, ok)
        text = origin.text if origin is not None and origin.text else ""
        if typ == "ACCESS-LIST":
            if text.startswith("access-list"):
                group = fw.acl.group_origin.get((iface, "in")) or fw.acl.group_origin.get((None, "in"))
                phase.config = [group.text, text] if group is not None and group.text else [text]
            else:
                phase.config = ["Implicit Rule"]
            if info:
                notes.append(f"ACCESS-LIST: {info}")
        elif typ == "ROUTE-LOOKUP":
            phase.info = [info]
            if text:
                notes.append(f"ROUTE-LOOKUP: the route is {origin.file}:{origin.line}: {text}")
        else:
            phase.config = [text] if text else []
            phase.info = [info] if info else []
        phases.append(phase)
    drops = [e for e in res.events if isinstance(e, Drop)]
    allowed = bool(res.packets) and not drops
    egress = res.packets[0][0] if res.packets else (drops[0].egress if drops and drops[0].egress else None)
    result = TraceResult(iface, egress, allowed)
    if drops:
        d = drops[0]
        # The ASA's keyword (its nearest where statewall's own reason has none, logfmt.counters).
        shown = ASA_NEAREST.get(d.reason, d.reason)
        result.drop_keyword, result.drop_description = shown.keyword, shown.description
        if shown is not d.reason:
            notes.append(f"statewall's drop reason: ({d.reason.keyword}) {d.reason.description}")
        if d.message:
            notes.append(d.message)
        if d.origin is not None and d.origin.text:
            notes.append(f"decided by {d.origin.file}:{d.origin.line}: {d.origin.text}")
        if d.hint:
            notes.append(f"to let it through: {d.hint}")
    result.notes = notes
    return phases, result


def packet_tracer(
    policy: Policy,
    iface: str,
    proto: str,
    src: str,
    sport: int,
    dst: str,
    dport: int,
    detailed: bool = False,
    output: str = "text",
) -> tuple[str, bool]:
    """Trace one packet entering ``iface``; returns (the output in the ASA's layout, allowed).
    ``output``: ``text`` (with ``detailed``: each phase's configuration line located), ``xml`` (the
    ASA's ``packet-tracer ... xml``) or ``json``."""
    phases, result = trace(policy, iface, proto, src, sport, dst, dport)
    if output == "xml":
        return format_xml(phases, result), result.allowed
    if output == "json":
        return format_json(phases, result), result.allowed
    return format_text(phases, result, detailed=detailed), result.allowed
