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


def packet_tracer(
    policy: Policy, iface: str, proto: str, src: str, sport: int, dst: str, dport: int, detailed: bool = False
) -> tuple[str, bool]:
    """Trace one packet entering ``iface``; returns (text in the ASA's layout, allowed)."""
    if iface not in policy.interfaces:
        raise TracerError(f"interface '{iface}' does not exist")
    fw = Firewall(policy, fast_path=False)
    fw.trace_log = []
    res = fw.receive(iface, build_packet(proto, src, sport, dst, dport), 0.0)
    phases = stage_phases(fw)
    lines: list[str] = []
    for n, (typ, subtype, ok, origin, info) in enumerate(fw.trace_log, 1):
        if typ not in phases:
            raise RuntimeError(
                f"phase {typ} reported by no stage of {[s.__name__ for s in fw.new_flow_stages]}"
            )
        lines += [
            f"Phase: {n}",
            f"Type: {typ}",
            f"Subtype: {subtype}",
            f"Result: {'ALLOW' if ok else 'DROP'}",
            "Config:",
        ]
        if origin is not None and origin.text:
            lines.append(origin.text)
            if detailed:
                lines.append(f"  ({origin.file}:{origin.line})")
        elif typ == "ACCESS-LIST":
            lines.append("Implicit Rule")
        lines += ["Additional Information:", info, ""]
    drops = [e for e in res.events if isinstance(e, Drop)]
    allowed = bool(res.packets) and not drops
    egress = res.packets[0][0] if res.packets else (drops[0].egress if drops and drops[0].egress else None)
    lines += ["Result:", f"input-interface: {iface}", "input-status: up", "input-line-status: up"]
    if egress:
        lines += [f"output-interface: {egress}", "output-status: up", "output-line-status: up"]
    lines.append(f"Action: {'allow' if allowed else 'drop'}")
    if drops:
        d = drops[0]
        lines.append(f"Drop-reason: ({d.reason.keyword}) {d.reason.description}")
        if d.message:
            lines += ["", f"statewall: {d.message}"]
        if d.origin is not None and d.origin.text:
            lines.append(f"statewall: decided by {d.origin.file}:{d.origin.line}: {d.origin.text}")
        if d.hint:
            lines.append(f"statewall: to let it through: {d.hint}")
    return "\n".join(lines) + "\n", allowed
