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
)
from . import fragment, mpf, names, objnat, passthrough, timeouts
from .acl import ANY4, ANY6, PORT_PROTOCOLS


def render(policy: Policy) -> str:
    kept: dict[int, list[str]] = {}
    for block in passthrough.blocks_of(policy.passthrough):
        kept.setdefault(passthrough.section(block[0][1]), []).extend(text for _, text in block)

    out: list[str] = [": Saved", ":"]
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
    for obj in policy.network_objects.values():
        out += _object(obj, policy)
    out += kept.get(passthrough.OBJECTS, [])
    for acl in policy.access_lists.values():
        out += _access_list(acl, policy.network_objects)
    out += kept.get(passthrough.AFTER_ACLS, [])
    out += [f"mtu {name} {itf.mtu}" for name, itf in policy.interfaces.items()]
    out += kept.get(passthrough.AFTER_MTU, [])
    out += _nat([r for r in policy.nat_rules if r.section == 0])
    out += objnat.render(policy.nat_rules)
    out += kept.get(passthrough.NAT, [])
    for group in policy.access_groups:
        where = "global" if group.interface is None else f"{group.direction} interface {group.interface}"
        out.append(f"access-group {group.acl} {where}")
    for route in policy.routes:
        out.append(_route(route.interface, route.network, route.gateway, route.distance))
    out += timeouts.render(policy.timeouts)
    out += fragment.render(policy)
    out += kept.get(passthrough.BODY, [])
    out += mpf.render_sysopt(policy)
    framework = [
        *mpf.render_tcp_maps(policy),
        *mpf.render_class_maps(policy),
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
    if not itf.ipv4:
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
    return lines


def _net(net: IPNetwork) -> str:
    """An address as ASA commands write it: ``host A``, ``A M`` (IPv4) or ``X/len`` (IPv6)."""
    if net.prefixlen == net.max_prefixlen:
        return f"host {net.network_address}"
    if isinstance(net, ipaddress.IPv4Network):
        return f"{net.network_address} {net.netmask}"
    return net.with_prefixlen


def _object(obj: NetworkObject, policy: Policy) -> list[str]:
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
                lines.append(f" network-object {_net(member)}")
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
    if obj.description:
        lines.append(f" description {obj.description}")
    return lines


def _address(nets: tuple[IPNetwork, ...], obj: str | None, objects: dict[str, NetworkObject]) -> str:
    if obj is not None:
        return f"{'object-group' if objects[obj].group else 'object'} {obj}"
    if not nets:
        return "any"
    (net,) = nets  # an address written inline is a single network
    if net == ANY4:
        return "any4"
    if net == ANY6:
        return "any6"
    return _net(net)


def _ports(ports: tuple[PortMatch, ...], protocol: str) -> str:
    out = ""
    for pm in ports:
        low = names.port_name(pm.low, protocol)
        if pm.op == "range":
            out += f" range {low} {names.port_name(pm.high if pm.high is not None else pm.low, protocol)}"
        else:
            out += f" {pm.op} {low}"
    return out


def _rule(rule: AccessRule, objects: dict[str, NetworkObject]) -> str:
    m = rule.match
    proto = "ip" if m.protocol is None else names.PROTOCOL_NAMES.get(m.protocol, str(m.protocol))
    port_proto = PORT_PROTOCOLS.get(m.protocol, "tcp") if m.protocol is not None else "tcp"
    port_proto = "tcp" if port_proto == "sctp" else port_proto
    text = f"access-list {rule.acl} extended {rule.action} {proto}"
    text += f" {_address(m.sources, rule.source_object, objects)}"
    text += _ports(m.source_ports, port_proto)
    text += f" {_address(m.destinations, rule.destination_object, objects)}"
    text += _ports(m.destination_ports, port_proto)
    if m.icmp_type is not None:
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
    if rule.inactive:
        text += " inactive"
    return text


def _access_list(acl: AccessList, objects: dict[str, NetworkObject]) -> list[str]:
    lines: list[str] = []
    remarks = list(acl.remarks)
    for index, rule in enumerate(acl.rules):
        while remarks and remarks[0][0] <= index:
            lines.append(f"access-list {acl.name} remark {remarks.pop(0)[1]}")
        if acl.kind == "standard":
            target = _address(rule.match.destinations, rule.destination_object, objects)
            lines.append(f"access-list {acl.name} standard {rule.action} {target}")
        else:
            lines.append(_rule(rule, objects))
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
