"""A Policy printed as an ASA ``show running-config``, in the ASA's order.

The text parses back to the same Policy (origins aside): that is the contract tests hold it to.
Kept lines (``Policy.passthrough``) are printed in their sections between the modelled parts.
"""

from __future__ import annotations

import ipaddress

from ...policy import (
    PROTO_ICMPV6,
    AccessList,
    AccessRule,
    Interface,
    IPNetwork,
    NatRule,
    NetworkObject,
    Policy,
    PortMatch,
    ServiceObject,
)
from . import fragment, mpf, names, objnat, passthrough, timeouts, xlate
from . import platform as platforms
from .acl import ANY4, ANY6, PORT_PROTOCOLS


def render(policy: Policy) -> str:
    kept: dict[int, list[str]] = {}
    for block in passthrough.blocks_of(policy.passthrough):
        kept.setdefault(passthrough.section(block[0][1]), []).extend(text for _, text in block)

    out: list[str] = [": Saved", ":"]
    hardware = platforms.hardware_line(policy.platform) if policy.platform else None
    if hardware is not None:
        out += [hardware, ":"]
    if policy.version:
        out.append(f"ASA Version {policy.version}")
    out += ["!", f"hostname {policy.hostname}"]
    out += kept.get(passthrough.HEAD, [])
    for itf in sorted([*policy.interfaces.values(), *policy.unnamed_interfaces], key=lambda i: i.hardware):
        out += ["!", *_interface(itf)]
    out.append("!")
    out += kept.get(passthrough.AFTER_INTERFACES, [])
    if policy.same_security_inter:
        out.append("same-security-traffic permit inter-interface")
    if policy.same_security_intra:
        out.append("same-security-traffic permit intra-interface")
    aliases = _names(policy)
    for obj in policy.network_objects.values():
        out += _object(obj, policy, aliases)
    out += kept.get(passthrough.OBJECTS, [])
    for svc in policy.service_objects.values():
        if svc.group:
            kind = {"port": "service", "icmp-type": "icmp-type", "protocol": "protocol"}.get(
                svc.kind, "service"
            )
            out.append(
                f"object-group {kind} {svc.name}" + (f" {svc.port_protocol}" if svc.port_protocol else "")
            )
            if svc.description:
                out.append(f" description {svc.description}")
            out += [f" {m}" for m in svc.members]
    for tr in policy.time_ranges.values():
        out += [f"time-range {tr.name}", *(f" {line}" for line in tr.lines)]
    for acl in policy.access_lists.values():
        out += _access_list(acl, policy.network_objects, policy.service_objects, aliases)
    out += kept.get(passthrough.AFTER_ACLS, [])
    out += [
        f"mtu {itf.name} {itf.mtu}" for itf in sorted(policy.interfaces.values(), key=lambda i: i.hardware)
    ]
    out += kept.get(passthrough.AFTER_MTU, [])
    if policy.nat_control:
        out.append("nat-control")
    out += _nat([r for r in policy.nat_rules if r.section == 0])
    out += objnat.render(policy.nat_rules)
    out += kept.get(passthrough.NAT, [])
    for group in policy.access_groups:
        where = "global" if group.interface is None else f"{group.direction} interface {group.interface}"
        out.append(f"access-group {group.acl} {where}")
    for route in policy.routes:
        text = _route(route.interface, route.network, route.gateway, route.distance)
        out.append(text + (f" {route.option}" if route.option else ""))
    out += [f"ip verify reverse-path interface {name}" for name in policy.reverse_path]
    out += timeouts.render(policy.timeouts)
    out += fragment.render(policy)
    out += xlate.render(policy)
    out += kept.get(passthrough.BODY, [])
    out += mpf.render_sysopt(policy)
    framework = [
        *mpf.render_tcp_maps(policy),
        *mpf.render_class_maps(policy),
        *mpf.render_ip_options_maps(policy),
        *kept.get(passthrough.MPF, []),
        *mpf.render_policy_maps(policy),
        *mpf.render_service_policies(policy),
    ]
    if framework:
        out += ["!", *framework, "!"]
    out += kept.get(passthrough.TAIL, [])
    out += mpf.render_faults(policy)
    out.append(": end")
    return "\n".join(out) + "\n"


def _interface(itf: Interface) -> list[str]:
    lines = [f"interface {itf.hardware}"]
    if itf.description:
        lines.append(f" description {itf.description}")
    if itf.speed:
        lines.append(f" speed {itf.speed}")
    if itf.duplex:
        lines.append(f" duplex {itf.duplex}")
    if itf.shutdown:
        lines.append(" shutdown")
    if itf.vlan is not None:
        lines.append(f" vlan {itf.vlan}")
    if itf.name:
        lines += [f" nameif {itf.name}", f" security-level {itf.security_level}"]
    else:
        lines.append(" no nameif")
        lines.append(f" security-level {itf.security_level}" if itf.security_level else " no security-level")
    for addr in itf.ipv4:
        standby = f" standby {itf.standby_ipv4}" if itf.standby_ipv4 else ""
        lines.append(f" ip address {addr.ip} {addr.netmask}{standby}")
    if itf.address_source and not itf.ipv4:
        lines.append(f" ip address {itf.address_source}")
    elif not itf.ipv4:
        lines.append(" no ip address")
    for addr6 in itf.ipv6:
        if addr6.ip.is_link_local and addr6.network.prefixlen == 64:
            lines.append(f" ipv6 address {addr6.ip} link-local")
        else:
            lines.append(f" ipv6 address {addr6.with_prefixlen}")
    if itf.ipv6_enable:
        lines.append(" ipv6 enable")
    if itf.management_only:
        lines.append(" management-only")
    lines += [f" {text}" for _, text in itf.other]
    return lines


def _net(net: IPNetwork, aliases: dict[str, str] | None = None) -> str:
    """An address as ASA commands write it: ``host A``, ``A M`` (IPv4) or ``X/len`` (IPv6); with
    ``names`` enabled, an address that has a ``name`` is shown by its name, as the ASA shows it."""
    addr = str(net.network_address)
    if aliases:
        addr = aliases.get(addr, addr)
    if net.prefixlen == net.max_prefixlen:
        return f"host {addr}"
    if isinstance(net, ipaddress.IPv4Network):
        return f"{addr} {net.netmask}"
    return net.with_prefixlen


def _names(policy: Policy) -> dict[str, str]:
    """address -> name of the ``name`` lines, when ``names`` is on (ASA 8.x: names replace addresses)."""
    texts = [text for _, text in policy.passthrough]
    if "names" not in texts:
        return {}
    out: dict[str, str] = {}
    for text in texts:
        words = text.split()
        if len(words) >= 3 and words[0] == "name":
            out.setdefault(words[1], words[2])
    return out


def _object(obj: NetworkObject, policy: Policy, aliases: dict[str, str] | None = None) -> list[str]:
    if obj.group:
        lines = [f"object-group network {obj.name}"]
        if obj.description:
            lines.append(f" description {obj.description}")
        for member in obj.members:
            if isinstance(member, str):
                nested = policy.network_objects[member]
                lines.append(
                    f" group-object {member}" if nested.group else f" network-object object {member}"
                )
            elif isinstance(member, tuple):
                continue  # groups have no ranges; parse never puts one here
            else:
                lines.append(f" network-object {_net(member, aliases)}")
        return lines
    lines = [f"object network {obj.name}"]
    for member in obj.members:
        if isinstance(member, tuple):
            lines.append(f" range {member[0]} {member[1]}")
        elif isinstance(member, str):
            continue
        elif member.prefixlen == member.max_prefixlen:
            lines.append(f" host {member.network_address}")
        else:
            lines.append(f" subnet {_net(member)}")
    if obj.fqdn:
        lines.append(f" fqdn {obj.fqdn}")
    if obj.description:
        lines.append(f" description {obj.description}")
    return lines


def _address(
    nets: tuple[IPNetwork, ...],
    obj: str | None,
    objects: dict[str, NetworkObject],
    aliases: dict[str, str] | None = None,
) -> str:
    if obj is not None and obj.startswith("interface "):
        return obj  # 9.x "interface NAME": the interface's own addresses
    if obj is not None:
        return f"{'object-group' if objects[obj].group else 'object'} {obj}"
    if not nets:
        return "any"
    (net,) = nets  # an address written inline is a single network
    if net == ANY4:
        return "any4"
    if net == ANY6:
        return "any6"
    return _net(net, aliases)


def _ports(ports: tuple[PortMatch, ...], protocol: str) -> str:
    out = ""
    for pm in ports:
        low = names.port_name(pm.low, protocol)
        if pm.op == "range":
            out += f" range {low} {names.port_name(pm.high if pm.high is not None else pm.low, protocol)}"
        else:
            out += f" {pm.op} {low}"
    return out


def _rule(
    rule: AccessRule,
    objects: dict[str, NetworkObject],
    services: dict[str, ServiceObject],
    aliases: dict[str, str] | None = None,
) -> str:
    m = rule.match
    named = (rule.protocol_object or "").split()[-1:]
    # A service object or service group in the protocol position carries the ports and ICMP types.
    service = bool(named) and named[0] in services and services[named[0]].kind == "service"
    proto = "ip" if m.protocol is None else names.PROTOCOL_NAMES.get(m.protocol, str(m.protocol))
    port_proto = PORT_PROTOCOLS.get(m.protocol, "tcp") if m.protocol is not None else "tcp"
    port_proto = "tcp" if port_proto == "sctp" else port_proto
    if rule.protocol_object:
        proto = rule.protocol_object
    text = f"access-list {rule.acl} extended {rule.action} {proto}"
    text += f" {_address(m.sources, rule.source_object, objects, aliases)}"
    if rule.source_ports_object:
        text += f" {rule.source_ports_object}"
    elif not service:
        text += _ports(m.source_ports, port_proto)
    text += f" {_address(m.destinations, rule.destination_object, objects, aliases)}"
    if rule.destination_ports_object:
        text += f" {rule.destination_ports_object}"
    elif not service:
        text += _ports(m.destination_ports, port_proto)
    if rule.icmp_object:
        text += f" {rule.icmp_object}"
    elif m.icmp_type is not None and not service:
        table = names.ICMP6_TYPE_NAMES if m.protocol == PROTO_ICMPV6 else names.ICMP_TYPE_NAMES
        text += f" {table.get(m.icmp_type, str(m.icmp_type))}"
        if m.icmp_code is not None:
            text += f" {m.icmp_code}"
    if rule.log:
        text += " log"
        if rule.log_level is not None:
            text += f" {rule.log_level}"
        if rule.log_interval is not None:
            text += f" interval {rule.log_interval}"
    if rule.time_range:
        text += f" time-range {rule.time_range}"
    if rule.inactive:
        text += " inactive"
    return text


def _access_list(
    acl: AccessList,
    objects: dict[str, NetworkObject],
    services: dict[str, ServiceObject],
    aliases: dict[str, str] | None = None,
) -> list[str]:
    lines: list[str] = []
    remarks = list(acl.remarks)
    for index, rule in enumerate(acl.rules):
        while remarks and remarks[0][0] <= index:
            lines.append(f"access-list {acl.name} remark {remarks.pop(0)[1]}")
        if rule.element:
            continue
        if acl.kind == "standard":
            target = _address(rule.match.destinations, rule.destination_object, objects, aliases)
            lines.append(f"access-list {acl.name} standard {rule.action} {target}")
        else:
            lines.append(_rule(rule, objects, services, aliases))
    lines += [f"access-list {acl.name} remark {text}" for _, text, _ in remarks]
    return lines


def _nat(rules: list[NatRule]) -> list[str]:
    globals_: list[str] = []
    nats: list[str] = []
    statics: list[str] = []
    for rule in rules:
        if rule.kind == "static":
            statics.append(_static(rule))
            continue
        if rule.kind == "dynamic" and rule.pool is not None:
            ifc, nat_id = rule.mapped_interface, rule.nat_id
            if rule.pool.interface:
                globals_.append(f"global ({ifc}) {nat_id} interface")
            for first, last in rule.pool.ranges:
                globals_.append(f"global ({ifc}) {nat_id} {first}" + (f"-{last}" if last != first else ""))
        real = f"access-list {rule.acl}" if rule.acl else " ".join(_net4(n) for n in rule.real)
        nats.append(f"nat ({rule.real_interface}) {rule.nat_id or 0} {real}{_limits(rule)}")
    return list(dict.fromkeys(globals_)) + list(dict.fromkeys(nats)) + statics


def _net4(net: IPNetwork) -> str:
    return f"{net.network_address} {net.netmask}"


def _limits(rule: NatRule) -> str:
    out = ""
    if rule.max_conns or rule.embryonic_limit:
        out += f" tcp {rule.max_conns} {rule.embryonic_limit}"
    if rule.udp_max_conns:
        out += f" udp {rule.udp_max_conns}"
    if not rule.randomseq:
        out += " norandomseq"
    return out


def _static(rule: NatRule) -> str:
    proto = {6: "tcp ", 17: "udp "}.get(rule.protocol or 0, "")
    mapped = str(rule.mapped[0].network_address) if rule.mapped else "interface"
    if proto:
        mapped += f" {names.port_name(rule.mapped_port or 0, proto.strip())}"
    if rule.acl:
        real = f"access-list {rule.acl}"
        prefix = rule.mapped[0].prefixlen if rule.mapped else 32
    else:
        real = str(rule.real[0].network_address)
        prefix = rule.real[0].prefixlen
        if proto:
            real += f" {names.port_name(rule.real_port or 0, proto.strip())}"
    mask = ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask
    interfaces = f"({rule.real_interface},{rule.mapped_interface})"
    return f"static {interfaces} {proto}{mapped} {real} netmask {mask}{_limits(rule)}"


def _route(interface: str, network: IPNetwork, gateway: object, distance: int) -> str:
    if isinstance(network, ipaddress.IPv6Network):
        return f"ipv6 route {interface} {network.with_prefixlen} {gateway} {distance}"
    return f"route {interface} {network.network_address} {network.netmask} {gateway} {distance}"
