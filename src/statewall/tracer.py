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
        # A datagram to the DNS port carries a DNS query header (id 1, recursion desired, no question),
        # so that DNS inspection (statewall.inspect.dns) sees a DNS message, as with a real query.
        payload = b"\x00\x01\x01\x00" + bytes(8) if dport == 53 else b""
        return craft.udp_packet(v, int(s), int(d), sport, dport, payload)
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


# --------------------------------------------------------------------------------------------------
# netfilter's path (a configuration with iptables rulesets)
#
# The same synthetic packet through netfilter's stages (``statewall.engine.nf_path.STAGES``: raw,
# conntrack, PREROUTING, route, ip_forward, FORWARD, POSTROUTING, confirm, emit). The hooks' lines are
# printed as ``nft monitor trace`` prints a traced packet (nftables src/trace.c: ``trace id ID FAMILY
# TABLE CHAIN packet: ...``, ``... conntrack: ct state ...``, ``... rule RULE (verdict accept)``,
# ``... policy drop``), with the rule as the configuration wrote it, as ``xtables-monitor --trace``
# prints an iptables rule; then statewall's own account, apart: every stage's phase with the
# configuration line behind it, and for a drop the reason, the line that decided and the fix.


def nf_stage_phases(fw: Firewall) -> list[str]:
    """The phases netfilter's stages report, in stage order."""
    from .engine import nf_path

    return [phase for st in nf_path.STAGES for phase in st.phases]


def nf_interface(policy: Policy, name: str) -> str | None:
    """The policy's interface called ``name``, by its logical name or its device name (``eth1``)."""
    if name in policy.interfaces:
        return name
    return next((n for n, itf in policy.interfaces.items() if itf.hardware == name), None)


def netfilter_tracer(
    policy: Policy, iface: str, proto: str, src: str, sport: int, dst: str, dport: int, detailed: bool = False
) -> tuple[str, bool]:
    """Trace one synthetic packet (``build_packet``) entering ``iface`` (logical or device name) through
    a fresh engine running a policy with netfilter rulesets; returns (text, allowed)."""
    fw = Firewall(policy, fast_path=False)
    return netfilter_trace(fw, iface, build_packet(proto, src, sport, dst, dport), 0.0, detailed)


def netfilter_trace(
    fw: Firewall, iface: str, data: bytes, now: float, detailed: bool = False
) -> tuple[str, bool]:
    """Trace the packet ``data`` entering ``iface`` of ``fw`` (an engine on netfilter's path, with the
    connections earlier packets left in it) at ``now``; returns (text, allowed)."""
    from zlib import crc32

    from .engine.nf_trace import Hit

    if fw.nf_path is None:
        raise TracerError("the configuration has no netfilter rulesets")
    name = nf_interface(fw.policy, iface)
    if name is None:
        raise TracerError(f"interface '{iface}' does not exist")
    data = bytearray(data)
    family = "ip" if data[0] >> 4 == 4 else "ip6"
    tid = f"{crc32(bytes(data)):08x}"
    fw.trace_log = []
    to_the_box = fw.stats["to_the_box"]
    try:
        res = fw.receive(name, data, now)
        log = fw.trace_log
    finally:
        fw.trace_log = None
    phases = nf_stage_phases(fw)
    kernel: list[str] = []
    ours: list[str] = []
    for typ, _subtype, ok, origin, info in log:
        if typ not in phases:
            raise RuntimeError(f"phase {typ} reported by no stage of netfilter's path")
        where = f"  ({origin.file}:{origin.line})" if origin is not None and origin.line else ""
        if isinstance(info, Hit):
            head = f"trace id {tid} {family} {info.table} {info.chain}"
            if info.kind == "packet":
                if info.ct:
                    kernel.append(f"{head} conntrack: {info.ct}")
                kernel.append(f"{head} packet: {info.verdict}")
                continue
            if info.kind == "policy":
                kernel.append(f"{head} policy {info.verdict}")
                text = f"{info.table} {info.chain} policy {info.verdict.upper()}"
            else:
                kernel.append(f"{head} rule {origin.text} (verdict {info.verdict})")
                text = f"{info.table} {info.chain} rule {info.number}: {origin.text} (verdict {info.verdict})"
                if info.note:
                    text += f"; {info.note}"
        else:
            text = str(info)
            if detailed and origin is not None and origin.text:
                text += f"  [{origin.text}]"
        ours.append(f"  {typ:<15} {'ALLOW' if ok else 'DROP ':<5} {text}{where}")
    drops = [e for e in res.events if isinstance(e, Drop)]
    delivered = fw.stats["to_the_box"] > to_the_box  # INPUT accepted it: the box takes it in
    allowed = (bool(res.packets) or delivered) and not drops
    lines = kernel + ["", "statewall: the packet's stages"] + ours + [""]
    lines.append(f"input-interface: {name} ({fw.netfilter.device(name)})")
    if delivered:
        lines.append("output: the box itself (INPUT)")
    elif res.packets:
        out = res.packets[0][0]
        lines.append(f"output-interface: {out} ({fw.netfilter.device(out)})")
    lines.append(f"Action: {'allow' if allowed else 'drop'}")
    if drops:
        d = drops[0]
        lines.append(f"statewall: dropped: ({d.reason.keyword}) {d.reason.description}")
        if d.message:
            lines.append(f"statewall: why: {d.message}")
        if d.origin is not None and d.origin.text:
            lines.append(f"statewall: decided by {d.origin.file}:{d.origin.line}: {d.origin.text}")
        if d.hint:
            lines.append(f"statewall: to let it through: {d.hint}")
    return "\n".join(lines) + "\n", allowed
