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
from .logfmt.asa import release_of
from .logfmt.counters import ASA_NEAREST, NOT_ASA
from .logfmt.show import NAT_83
from .logfmt.tracer import TracePhase, TraceResult, format_json, format_text, format_xml, lookup_lines
from .policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Policy

_PROTOS = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "icmp": PROTO_ICMP, "icmp6": PROTO_ICMPV6}


# IPv4 ICMP error types (unreachable, source quench, redirect, time exceeded, parameter problem).
_ICMP_ERRORS_V4 = frozenset({3, 4, 5, 11, 12})


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
        # For ICMP the ASA syntax gives type and code where TCP has ports: the message of that type
        # and code (identifier 1, sequence 1). An error would need the packet it quotes, which the
        # command does not give: not modelled.
        if (v == 4 and sport in _ICMP_ERRORS_V4) or (v == 6 and sport < 128):
            raise TracerError(
                f"tracing an ICMP error (type {sport}) is not modelled: it needs the packet it quotes"
            )
        return craft.icmp_query(v, int(s), int(d), sport, dport, 1, 1)
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
    Additional Information is empty; statewall's sentence for each decision goes to the notes. NAT
    phases follow the configured release (``nat_phase``); a flow no NAT rule applies to has no NAT
    phase, as on the ASA.
    """
    if iface not in policy.interfaces:
        raise TracerError(f"interface '{iface}' does not exist")
    release = release_of(policy.version)
    fw = Firewall(policy, fast_path=False)
    fw.trace_log = []
    packet = build_packet(proto, src, sport, dst, dport)
    arrived = bytes(packet)  # the engine rewrites the packet in place (NAT)
    res = fw.receive(iface, packet, 0.0)
    stages = stage_phases(fw)
    rules = {r.origin: r for r in policy.nat_rules}
    phases: list[TracePhase] = []
    notes: list[str] = []
    drops = [e for e in res.events if isinstance(e, Drop)]
    egress = res.packets[0][0] if res.packets else (drops[0].egress if drops and drops[0].egress else None)
    for typ, subtype, ok, origin, info, config, lookup in fw.trace_log:
        if typ not in stages:
            raise RuntimeError(
                f"phase {typ} reported by no stage of {[s.__name__ for s in fw.new_flow_stages]}"
            )
        phase = TracePhase(typ, subtype, ok)
        text = origin.text if origin is not None and origin.text else ""
        rule = rules.get(origin) if origin is not None and typ in ("NAT", "UN-NAT") else None
        if typ == "ACCESS-LIST":
            if text.startswith("access-list"):
                group = fw.acl.group_origin.get((iface, "in")) or fw.acl.group_origin.get((None, "in"))
                phase.config = [group.text, text] if group is not None and group.text else [text]
                phase.config += object_group_lines(policy, origin)
            else:
                phase.config = ["Implicit Rule"]
            if info:
                notes.append(f"ACCESS-LIST: {info}")
        elif typ == "ROUTE-LOOKUP":
            phase.info = [info]
            if text:
                notes.append(f"ROUTE-LOOKUP: the route is {origin.file}:{origin.line}: {text}")
        elif typ == "NAT" and rule is None and info == "No translation":
            notes.append("NAT: no translation rule applies to this flow (the ASA prints no NAT phase)")
            continue
        elif rule is not None:
            nat_phase(phase, policy, rule, info, iface, egress, release)
        else:
            phase.config = list(config) if config is not None else [text] if text else []
            phase.info = [info] if info else []
        if lookup is not None:
            phase.lookup = lookup_lines(lookup, release)
        phases.append(phase)
    allowed = bool(res.packets) and not drops
    if allowed and place_not_modelled(phases, not_modelled(policy, iface, arrived, *res.packets[0])):
        notes.append("the phases marked NOT MODELLED are what a real ASA would also do to this packet; "
                     "statewall does not, and its Action above leaves them out")  # fmt: skip
    if allowed:
        from .gaps import GapMatcher

        gap = GapMatcher(policy, fw).own_source_gap(arrived)
        if gap is not None:
            notes.append(f"not modelled: {gap.feature}: {gap.action}")
    result = TraceResult(iface, egress, allowed)
    if drops:
        d = drops[0]
        # The ASA's keyword (its nearest where statewall's own reason has none, logfmt.counters).
        shown = ASA_NEAREST.get(d.reason, d.reason)
        if shown in NOT_ASA:
            # No ASA counter has this reason: no Drop-reason line in the ASA's words (logfmt.counters).
            notes.append(f"statewall's drop reason (no ASA counter): ({shown.keyword}) {shown.description}")
        else:
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


def not_modelled(policy: Policy, iface: str, arrived: bytes, egress: str, data) -> list[TracePhase]:
    """The phases a real ASA would add to this allowed packet that no stage of statewall carries out
    (``statewall.gaps``): an inspection of the flow's class that statewall does not implement (``Type:
    INSPECT``, subtype the engine) and a crypto map whose access list selects the packet leaving by the
    map's interface (``Type: VPN``, ``Subtype: encrypt``); each with ``Result: NOT MODELLED``, the
    configuration line, and what the ASA would do."""
    from .gaps import GapMatcher, inspections

    found = inspections(policy, iface, arrived, egress, data) + GapMatcher(policy).applicable(
        iface, egress, data
    )
    out: list[TracePhase] = []
    for u in found:
        inspect = u.feature.startswith("inspect ")
        subtype = u.feature.removeprefix("inspect ") if inspect else "encrypt"
        phase = TracePhase("INSPECT" if inspect else "VPN", subtype, modelled=False)
        phase.config = [u.origin.text]
        where = f" ({u.origin.file}:{u.origin.line})" if u.origin.line else ""
        phase.info = [f"a real ASA would {u.action}; statewall does not model {u.feature}{where}"]
        out.append(phase)
    return out


def place_not_modelled(phases: list[TracePhase], extra: list[TracePhase]) -> bool:
    """Put the NOT MODELLED phases where the ASA prints such phases: an inspection with the INSPECT
    phases (after the last one, else after IP-OPTIONS), a VPN encrypt phase after NAT, IP-OPTIONS and
    the inspections and before FLOW-CREATION (a public ASA 9.x output, CORP-ASA1's: ... NAT, NAT
    per-session, IP-OPTIONS, FOVER, FLOW-EXPORT, VPN encrypt, ..., FLOW-CREATION). True when there were
    any."""

    def after_last(*types: str) -> int:
        for i in range(len(phases) - 1, -1, -1):
            if phases[i].type in types:
                return i + 1
        return len(phases)

    def before_creation() -> int:
        return next((i for i, ph in enumerate(phases) if ph.type == "FLOW-CREATION"), len(phases))

    for ph in extra:
        if ph.type == "INSPECT":
            at = (
                after_last("INSPECT")
                if any(p.type == "INSPECT" for p in phases)
                else after_last("IP-OPTIONS")
            )
            phases.insert(min(at, before_creation()), ph)
        else:
            phases.insert(before_creation(), ph)
    return bool(extra)


def object_group_lines(policy: Policy, origin) -> list[str]:
    """The object groups an ACE names, each with its definition as written, as ACCESS-LIST's Config
    prints them after the ACE (ASA 9.x outputs: ``object-group network DM_INLINE_NETWORK_4`` /
    `` network-object 192.168.242.0 255.255.255.0``; ``object-group service DM_INLINE_SERVICE_4`` /
    `` service-object icmp``)."""
    from .dialects.asa.render import _object

    rule = next((r for acl in policy.access_lists.values() for r in acl.rules if r.origin == origin), None)
    if rule is None:
        return []
    lines: list[str] = []
    for name in (rule.protocol_object, rule.source_object, rule.source_ports_object,
                 rule.destination_object, rule.destination_ports_object, rule.icmp_object):  # fmt: skip
        if not name:
            continue
        name = name.removeprefix("object-group ").removeprefix("object ")
        obj = policy.network_objects.get(name)
        if obj is not None and obj.group:
            lines += _object(obj, policy)
            continue
        svc = policy.service_objects.get(name)
        if svc is not None and svc.group:
            kind = {"port": "service", "icmp-type": "icmp-type", "protocol": "protocol"}.get(
                svc.kind, "service"
            )
            lines.append(
                f"object-group {kind} {svc.name}" + (f" {svc.port_protocol}" if svc.port_protocol else "")
            )
            lines += [f" {m}" for m in svc.members]
    return lines


def _spec(nets, any_word: str = "any") -> str:
    """A network as 8.2's NAT match lines print it: ``host A``, ``A M`` or ``any``."""
    if not nets:
        return any_word
    net = nets[0]
    if net.prefixlen == 0:
        return any_word
    if net.prefixlen == net.max_prefixlen:
        return f"host {net.network_address}"
    return f"{net.network_address} {net.netmask}"


def _pool_text(policy: Policy, rule, egress: str | None) -> str:
    """8.2's ``dynamic translation to pool N (...)`` parenthesis: the interface address for interface
    PAT (``61.88.171.148 [Interface PAT]``), else the global's addresses."""
    pool = rule.pool
    if pool is None:
        return "No matching global"
    if pool.interface:
        itf = policy.interfaces.get(rule.mapped_interface or egress or "")
        addr = itf.ipv4[0].ip if itf is not None and itf.ipv4 else "0.0.0.0"
        return f"{addr} [Interface PAT]"
    if pool.ranges:
        first, last = pool.ranges[0]
        return f"{first} - {last}"
    return str(pool.addresses[0].network_address) if pool.addresses else "No matching global"


def _match_82(policy: Policy, rule, egress: str | None) -> str:
    """8.2's ``match ip inside 10.1.1.0 255.255.255.0 outside any`` line of a NAT rule."""
    out_if = rule.mapped_interface or egress or "any"
    if rule.acl:
        acl = policy.access_lists.get(rule.acl)
        first = next((r for r in acl.rules if r.action == "permit"), None) if acl is not None else None
        if first is not None:
            m = first.match
            proto = {None: "ip", 1: "icmp", 6: "tcp", 17: "udp"}.get(m.protocol, str(m.protocol))
            return (
                f"  match {proto} {rule.real_interface} {_spec(m.sources)} {out_if} {_spec(m.destinations)}"
            )
    return f"  match ip {rule.real_interface} {_spec(rule.real)} {out_if} any"


def nat_phase(phase: TracePhase, policy: Policy, rule, info: str, iface: str, egress, release) -> None:
    """A NAT or UN-NAT phase with its rule as the configured release prints it.

    Before 8.3 (pastebin.com/Mazh1EEb and /xUc1Xzbt, ASA 8.2 ``packet-tracer``; a public parser's
    8.2 samples): the ``nat``/``static`` line, then ``  match ip IF REAL OUT any``, ``    dynamic
    translation to pool N (...)`` / ``    static translation to MAPPED`` / ``    NAT exempt`` and
    ``    translate_hits = N, untranslate_hits = M`` (the fresh engine's counters: 0); an exemption is
    a phase of its own type, NAT-EXEMPT; a one-to-one static's addresses carry ``/0`` and ``using
    netmask M``. From 8.3: the rule's line, an object NAT rule under its ``object network NAME`` line
    (rchapman.com, ASA 9.5(1) output), and ``NAT divert to egress interface IF`` before UN-NAT's
    ``Untranslate`` line."""
    text = rule.origin.text.strip()
    divert = phase.type == "UN-NAT" and phase.subtype == "static"
    if release >= NAT_83:
        phase.config = (
            [f"object network {rule.real_object}", f" {text}"]
            if rule.section == 2 and rule.real_object
            else [text]
        )
        phase.info = ([f"NAT divert to egress interface {egress}"] if divert and egress else []) + (
            [info] if info else []
        )
        return
    if rule.kind == "exempt":
        phase.type = "NAT-EXEMPT"
        action = "    NAT exempt"
        info = ""
    elif rule.kind != "static" and rule.nat_id == 0:
        action = "    Identity NAT translation, pool 0"
    elif rule.kind == "static":
        action = f"    static translation to {_spec(rule.mapped, 'interface').removeprefix('host ')}"
    else:
        action = f"    dynamic translation to pool {rule.nat_id or 0} ({_pool_text(policy, rule, egress)})"
    phase.config = [text, _match_82(policy, rule, egress if phase.type != "UN-NAT" else iface), action,
                    "    translate_hits = 0, untranslate_hits = 0"]  # fmt: skip
    one_to_one = rule.kind == "static" and rule.real_port is None and rule.real
    if one_to_one and info.startswith(("Untranslate ", "Static translate ")):
        # 8.2 prints a one-to-one static's addresses with /0 and its netmask.
        head, _, rest = info.partition(" ")
        if head == "Static":
            head, _, rest = info.partition(" translate ")
            head += " translate"
        a, _, b = rest.partition(" to ")
        info = f"{head} {a.split('/')[0]}/0 to {b.split('/')[0]}/0 using netmask {rule.real[0].netmask}"
    phase.info = ([f"NAT divert to egress interface {egress}"] if divert and egress else []) + (
        [info] if info else []
    )


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
        return format_xml(phases, result, detailed=detailed), result.allowed
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
            # nft monitor trace names an iptables table by its family ("ip filter"); an nftables
            # table's label is its family and name already ("inet firewalld").
            table = info.table if " " in info.table else f"{family} {info.table}"
            head = f"trace id {tid} {table} {info.chain}"
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
