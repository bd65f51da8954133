"""The ASA's data path: an existing connection's packet, or a new flow through the session setup stages.

Owns the order of work of the ASA (reference A.6) and nothing else: ``process`` looks the packet's
connection up (a packet of a known connection arriving where it should goes to the established-flow
stage, ``statewall.engine.forward``; an ICMP error quoting a connection to ``statewall.engine.icmp``,
after the access rules unless its class inspects ICMP errors; a bare ACK under TCP
Intercept to ``statewall.engine.asa_policy``) and runs ``new_flow`` for the rest: the stages below, in
this order, each a function of a ``NewFlow`` context that returns False when it stopped the packet and
reports its phase to packet-tracer (``statewall.tracer`` prints exactly these; ``NewFlow.report`` takes
the phase's configuration lines and, for the ``detailed`` form, its classifier rule, ``Lookup``). The
order is the ASA's phase order (9.x outputs: ACCESS-LIST, CONN-SETTINGS, NAT, IP-OPTIONS, INSPECT,
FLOW-CREATION):

=====================  ==============  ====================================================
stage                  phase           decides
=====================  ==============  ====================================================
``lookup``             FLOW-LOOKUP     management-only interface; a TCP flow starts with a SYN
                                       (TCP-STATE)
``rpf_check``          RPF-CHECK       ``ip verify reverse-path``: the route back to the source
                                       leaves by the interface the packet came in on
``unnat``              UN-NAT          an expected connection (inspection), a static owning the
                                       destination, a PAT slot an ICMP reply is for; else a
                                       packet for the box itself
``route``              ROUTE-LOOKUP    the egress interface
``access_list``        ACCESS-LIST     access rules, security levels (against mapped addresses
                                       before ASA 8.3, real ones after)
``conn_settings``      CONN-SETTINGS   the flow's class and its ``set connection`` settings
                                       (only with service policies; class-map access lists
                                       against mapped addresses before ASA 8.3)
``source_nat``         NAT             NAT's reverse path (rpf-check: a static's real address
                                       reached from its mapped side, 305013); the source
                                       translation (a twice NAT rule's too); an
                       (NAT-EXEMPT)    exemption names its rule (8.2 prints it as NAT-EXEMPT);
                                       8.2's translation requirements (nat-control, 305005)
``ip_options``         IP-OPTIONS      IPv4 options without ``inspect ip-options`` are dropped
``inspect``            INSPECT         the inspections statewall implements that the class
                                       applies (only with service policies); an echo reply
                                       no session waits for under ``inspect icmp`` (313004)
``stateless``          FLOW-CREATION   IPv4 ICMP its class does not inspect (``inspect icmp``):
                                       its connection will be unidirectional; an ICMP error
                                       without ``inspect icmp error`` is forwarded with its
                                       translations, no connection (only with service policies)
``track``              TCP-STATE       the TCP tracker starts with the first segment
``limits``             CONN-SETTINGS   connection limits, TCP Intercept (only with service policies)
``build``              FLOW-CREATION   the connection, its halves (only the ORIGINAL one found
                                       by packets when unidirectional), translations, class
                                       settings
=====================  ==============  ====================================================

The same stages serve a Linux box whose policy has no netfilter rulesets (the lab's), with conntrack's
settings and lifecycle (``statewall.engine.compiled``).
"""

from __future__ import annotations

from .. import ipoptions, mpf
from ..conntrack import Connection, Half, known_address, known_port, make_halves, reply_key
from ..events import AclHit, ConnBuilt, DropReason, xlate_built
from ..inspect import MODELLED_ENGINES
from ..inspect.icmp import ECHO_REPLIES
from ..limits import ADMIT
from ..nat import NatFailure
from ..packet import Packet
from ..policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from ..tcptrack import TcpTracker
from . import asa_policy, forward, icmp, ip_in, lifecycle
from .context import Lookup, NewFlow, addr_str, drop, run, stage
from .flowclass import UNKNOWN
from .state import asa_version_before

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10
HANDSHAKE_FLAGS = TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN


def process(fw, iface: str, pkt: Packet, now: float, out: list, ev: list, gso_size: int) -> None:
    """A packet the lookup in ``Firewall.receive`` did not send straight to the established-flow stage."""
    half = fw.conns.by_key.get((pkt.version, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport))
    if half is None:
        if pkt.is_icmp_error:
            special = ip_in.special(fw, pkt)
            if special is not None:  # the slow-path address checks hold for errors too
                drop(fw, ev, special.asa, iface, pkt, now, message=special.what)
                return
            if _icmp_error(fw, iface, pkt, now, out, ev):
                return
            # Without ``inspect icmp error``, an error quoting no connection is an ICMP packet of its
            # own: the new-flow stages judge it (``stateless``).
        elif (
            pkt.proto == PROTO_TCP
            and pkt.flags & HANDSHAKE_FLAGS == TCP_ACK
            and fw.intercept is not None
            and fw.intercept.engaged(now)
            and asa_policy.intercept_ack(fw, iface, pkt, now, out, ev)
        ):
            return
        half = new_flow(fw, iface, pkt, now, out, ev)
        if half is None:
            return
        # The tracker was created from this packet and has already processed it.
        forward.established(fw, half, pkt, now, out, ev, gso_size, first=True)
        return
    if half.in_iface != iface:
        drop(
            fw,
            ev,
            DropReason.RPF_VIOLATED,
            iface,
            pkt,
            now,
            egress=half.out_iface,
            message=f"connection {half.conn.id} expects this direction on {half.in_iface}",
        )
        return
    forward.established(fw, half, pkt, now, out, ev, gso_size)


def _icmp_error(fw, iface: str, pkt: Packet, now: float, out: list, ev: list) -> bool:
    """An ICMP error no connection's key names: True when it was forwarded or dropped here, False when
    the new-flow stages are to judge it as an ICMP packet of its own.

    An error quoting a connection of this direction goes with it (translated as the connection is,
    ``icmp.related_error``): at once under ``inspect icmp error`` (its class's), otherwise only when
    the access rules of the interface it arrived on let it in (the ASA's ICMP without inspection:
    ``icmp.stateless``; an unreachable or time-exceeded from outside needs an access rule,
    as "permit icmp any any unreachable / time-exceeded" on the outside interface shows in every ASA
    traceroute and path-MTU how-to). An error quoting none is dropped (313005) where errors are
    matched to connections (a Linux box, ICMPv6), else left to the new-flow stages."""
    half = icmp.quoted_half(fw, iface, pkt)
    stateless = icmp.stateless(fw, pkt)
    if half is None:
        origin = None
        if stateless:
            # The error's class, towards where it is addressed (the box itself included: 313005 names
            # "dst identity:ADDRESS" for an error to the box's own address).
            route = fw.routes.lookup(pkt.version, pkt.dst)
            eff = fw.service_policies.resolve(
                iface, route.interface if route is not None else iface, pkt.version, pkt.proto, pkt.src, 0,
                pkt.dst, 0, pkt.icmp_type, pkt.icmp_code, count=False,
            )  # fmt: skip
            ins = eff.inspects_engine("icmp error")
            if ins is None:
                return False
            origin = ins.origin
        icmp.no_session(fw, iface, pkt, now, ev, origin=origin)
        return True
    inspected = icmp.inspects_errors(fw, half, pkt)
    if stateless and not inspected:
        # The access rules, as for a new flow's first packet, between the quoted connection's
        # interfaces (its real address after 8.3: the connection's translation says it).
        c = NewFlow(fw, iface, pkt, now, out, ev, False)
        c.egress = half.out_iface
        if half.new_dst is not None:
            c.real_dst = half.new_dst
        c.stage = access_list
        if not access_list(c):
            return True
    icmp.related_error(fw, half, iface, pkt, now, out, ev, inspected)
    return True


def new_flow(
    fw, iface: str, pkt: Packet, now: float, out: list, ev: list, validated: bool = False
) -> Half | None:
    """The new-flow stages (``fw.new_flow_stages``) over ``pkt``: the new connection's ORIGINAL half,
    or None when a stage stopped it. ``validated``: the SYN TCP Intercept sends on for a client that
    answered its cookie."""
    c = NewFlow(fw, iface, pkt, now, out, ev, validated)
    classes = fw.flow_classes
    if classes is None or c.trace is not None:
        stages = fw.new_flow_stages
    else:
        # The stages before NAT answered for this flow's class already (statewall.engine.flowclass).
        stages = classes.classify(c, run, _acl_hits)
        if stages is None:
            return None
    if not run(stages, c):
        return None
    if c.kept is not None and c.kept.key is not None:
        classes.keep(c.kept)
    return c.half


@stage("FLOW-LOOKUP", "TCP-STATE")
def lookup(c: NewFlow) -> bool:
    c.report(True, "Found no matching flow, creating a new flow")
    itf = c.itf
    if itf.management_only:
        c.drop(
            DropReason.SECURITY_LEVEL, origin=itf.origin, message=f"interface {c.iface} is management-only"
        )
        return False
    pkt = c.pkt
    special = ip_in.special(c.fw, pkt)
    if special is not None:
        # Multicast, broadcast, martian or link-local: the ASA's slow-path address checks
        # (statewall.addrclass); multicast routing is not modelled.
        c.report(False, special.what)
        c.drop(special.asa, message=special.what)
        return False
    if c.proto == PROTO_TCP and pkt.flags & HANDSHAKE_FLAGS != TCP_SYN and not c.fw.ct.tcp_loose:
        c.report(False, "First TCP packet not SYN", phase="TCP-STATE")
        c.drop(DropReason.TCP_NOT_SYN, hint="a TCP connection must start with a SYN through the firewall")
        return False
    return True


@stage("RPF-CHECK")
def rpf_check(c: NewFlow) -> bool:
    """Unicast RPF (ASA ``ip verify reverse-path interface NAME``): the first packet of a flow arriving on
    such an interface must have a source whose route leaves by that interface; otherwise it is dropped,
    106021 "Deny ... reverse path check", asp-drop rpf-violated (Cisco ASA command reference, "ip verify
    reverse-path"). Later packets of the flow are held to the connection's interfaces (``process``)."""
    origin = c.fw.policy.reverse_path.get(c.iface)
    if origin is None:
        return True
    v, src = c.v, c.pkt.src
    back = c.fw.routes.lookup(v, src)
    if back is not None and back.interface == c.iface:
        c.report(
            True, f"route to {addr_str(v, src)} leaves by {c.iface}", subtype="reverse-path", origin=origin
        )
        return True
    where = "no route" if back is None else f"the route leaves by {back.interface}"
    c.report(False, f"{where} back to {addr_str(v, src)}", subtype="reverse-path", origin=origin)
    c.drop(
        DropReason.RPF_VIOLATED,
        origin=origin,
        message=f"{where} back to the source {addr_str(v, src)}, not {c.iface}",
        hint=f"route {addr_str(v, src)} through {c.iface}, or remove 'ip verify reverse-path interface "
        f"{c.iface}'",
    )
    return False


@stage("UN-NAT")
def unnat(c: NewFlow) -> bool:
    fw, pkt, v = c.fw, c.pkt, c.v
    # An expected data connection (inspection) is RELATED: its expectation says where it goes.
    exp = c.exp = (
        fw.expect.find(v, c.proto, c.iface, pkt.src, pkt.dst, pkt.dport, c.now) if fw.expect else None
    )
    # UN-NAT: a static translation owning the destination the initiator used.
    found = c.unnat = (
        exp.unnat
        if exp is not None
        else fw.nat.untranslate_destination(v, c.proto, c.iface, pkt.dst, pkt.dport, pkt.src, pkt.sport)
    )
    if found is None and c.proto == PROTO_ICMP and c.icmp_type in icmp.QUERY_REPLIES_V4 and exp is None:
        # An ICMP reply to a PAT address: untranslated by the slot its request built (the reply of a
        # ping whose request's connection is unidirectional: ``stateless``).
        found = c.unnat = fw.nat.reply_slot(v, c.proto, c.iface, pkt.dst, pkt.dport)
    if found is not None:
        c.real_dst, c.real_dport, c.egress, static = found
        if c.trace is not None:
            c.report(
                True,
                f"Untranslate {addr_str(v, pkt.dst)}/{pkt.dport} to {addr_str(v, c.real_dst)}/{c.real_dport}",
                subtype="static" if static is not None else "expected",
                origin=static.rule.origin if static is not None else exp.origin,
            )
        return True
    local = fw.routes.local_interface(v, pkt.dst)
    if local is not None:
        icmp.to_the_box(fw, c.iface, local, pkt, c.now, c.out, c.ev)
        return False
    return True


@stage("ROUTE-LOOKUP")
def route(c: NewFlow) -> bool:
    fw, v, real_dst = c.fw, c.v, c.real_dst
    found = c.route = fw.routes.lookup(v, real_dst)
    sub = "Resolve Egress Interface"
    if found is None:
        c.report(False, f"no route to {addr_str(v, real_dst)}", subtype=sub)
        c.drop(DropReason.NO_ROUTE, hint=f"add a route for {addr_str(v, real_dst)}")
        return False
    if c.egress is None:
        c.egress = found.interface
    if c.trace is not None:
        hop = addr_str(v, found.gateway) if found.gateway else addr_str(v, real_dst)
        c.report(True, f"found next-hop {hop} using egress ifc  {c.egress}", subtype=sub, origin=found.origin)
    if c.egress not in fw.interfaces:
        c.drop(DropReason.NO_ROUTE, message=f"egress {c.egress} is down")
        return False
    return True


@stage("ACCESS-LIST")
def access_list(c: NewFlow) -> bool:
    fw, pkt, v, iface, egress = c.fw, c.pkt, c.v, c.iface, c.egress
    # Access rules (against mapped addresses before ASA 8.3, real ones after).
    acl_dst = c.acl_dst = pkt.dst if fw.acl_on_mapped else c.real_dst
    acl_dport = c.acl_dport = pkt.dport if fw.acl_on_mapped else c.real_dport
    dec = c.dec = (
        fw.acl.check(
            iface, egress, v, c.proto, pkt.src, pkt.sport, acl_dst, acl_dport, c.icmp_type, c.icmp_code
        )
        if c.exp is None
        else c.exp.decision
    )
    if dec.logged:
        _acl_hits(c, dec)
    if dec.permitted:
        c.report(
            True,
            dec.reason,
            subtype="log" if dec.rule else "",
            origin=dec.rule.rule.origin if dec.rule else None,
            lookup=_ace_lookup(c, dec) if c.trace is not None else None,
        )
        return True
    origin = dec.rule.rule.origin if dec.rule else fw.acl.group_origin.get((iface, "in"))
    c.report(False, dec.reason, origin=origin, lookup=_ace_lookup(c, dec) if c.trace is not None else None)
    if dec.acl is not None:
        hint = (
            f"permit this flow in access-list {dec.acl}"
            if dec.rule is None
            else f"the deny entry of access-list {dec.acl} matches; permit the flow before it"
        )
        c.drop(DropReason.ACL_DROP, egress=egress, acl=dec.acl, origin=origin, message=dec.reason, hint=hint)
    elif "lower to higher" in dec.reason:
        # The ASA counts the security-level default deny as an ACL drop (implicit rule) and logs
        # 106001 / 106006 / 106014 for it.
        c.drop(
            DropReason.ACL_DROP,
            egress=egress,
            origin=c.itf.origin,
            message=dec.reason,
            hint=f"bind an access list permitting this flow: access-group NAME in interface {iface}",
        )
    else:
        hint = (
            "same-security-traffic permit intra-interface"
            if iface == egress
            else "same-security-traffic permit inter-interface"
        )
        c.drop(DropReason.SECURITY_LEVEL, egress=egress, origin=c.itf.origin, message=dec.reason, hint=hint)
    return False


def _acl_hits(c: NewFlow, dec) -> None:
    """106100 for each logged entry of the access decision (with its hit count after this flow)."""
    pkt, v = c.pkt, c.v
    for cr in dec.logged:
        c.ev.append(
            AclHit(
                c.now,
                cr.rule.acl,
                "permitted" if cr.permit else "denied",
                c.proto,
                c.iface,
                (v, pkt.src),  # addresses as (version, int): formatted if a log reads them
                pkt.sport,
                c.egress,
                (v, c.acl_dst),
                c.acl_dport,
                cr.hits,
                origin=cr.rule.origin,
            )
        )


def _net_text(nets) -> tuple[str, str]:
    """(address, mask) of a rule's first network as the ``detailed`` lookup prints them."""
    if not nets:
        return ("0.0.0.0", "0.0.0.0")
    net = nets[0]
    return (str(net.network_address), str(net.netmask))


def _ace_lookup(c: NewFlow, dec) -> Lookup | None:
    """The rule behind an access decision for packet-tracer's ``detailed`` form: an ACE (priority 13,
    ``domain=permit``, ``deny`` for a deny entry) or an access list's implicit deny (priority 11), as
    ASA 9.x prints them (Cisco FTD command reference, packet-tracer example; public 9.x outputs). The
    security levels' implicit permit has no lookup statewall can name: none is printed."""
    real = () if c.fw.acl_on_mapped else ("use_real_addr",)
    if dec.rule is not None:
        rule = dec.rule.rule
        m = rule.match
        ports = m.destination_ports
        port = ports[0].low if len(ports) == 1 and ports[0].op == "eq" else 0
        return Lookup(
            "permit", 13, f"ace {rule.origin.file}:{rule.origin.line}", deny=not dec.permitted,
            hits=dec.rule.hits, protocol=m.protocol or 0, src=(*_net_text(m.sources), 0),
            dst=(*_net_text(m.destinations), port), flags=real, input_ifc=c.iface, user_data=True,
        )  # fmt: skip
    if dec.acl is not None:
        return Lookup("permit", 11, f"implicit {dec.acl}", deny=True, flags=real, input_ifc=c.iface)
    return None


@stage("CONN-SETTINGS")
def conn_settings(c: NewFlow) -> bool:
    """The flow's class (ASA modular policy framework, ``statewall.mpf``): the connection settings
    that will apply to it, resolved once with the addresses the access rules saw (real ones from 8.3,
    the mapped destination before). A class that sets any (``set connection
    ...``) is packet-tracer's CONN-SETTINGS phase with the class, its policy map and service policy
    (ASA 9.x packet-tracer output); without one the ASA prints no such phase."""
    fw, pkt = c.fw, c.pkt
    # Class-map access lists match what the access rules match: before ASA 8.3 the addresses as the
    # packet arrived (the mapped destination), from 8.3 the real ones (Cisco's 8.3 migration guide lists
    # access-group and MPF class-map ACLs among the features that moved to real addresses).
    eff = c.eff = fw.service_policies.resolve(
        c.iface, c.egress, c.v, c.proto, pkt.src, pkt.sport, c.acl_dst, c.acl_dport, c.icmp_type,
        c.icmp_code,
        count=False,
    )  # fmt: skip
    if c.trace is not None and eff.set_by:
        uses = list({id(u): u for u in eff.set_by.values()}.values())
        config: list[str] = []
        for use in uses:
            config += mpf.class_config(fw.policy, use, mpf.connection_lines(fw.policy, use))
        c.report(True, "", config=config, lookup=_class_lookup(c, "conn-set", 7, uses[0], ("use_real_addr",)))
    return True


def _class_lookup(c: NewFlow, domain: str, priority: int, use, flags=()) -> Lookup:
    """The classifier rule of a class for the ``detailed`` form: its protocol and destination port
    when the class matches a port (``match port``, ``match default-inspection-traffic``), else any."""
    cm = c.fw.policy.class_maps.get(use.class_map)
    by_port = cm is not None and any(m.kind in ("port", "default-inspection-traffic") for m in cm.matches)
    port = c.real_dport if by_port and c.proto != PROTO_ICMP else 0
    return Lookup(domain, priority, f"{domain} {use.policy_map} {use.class_map}", flags=flags,
                  protocol=c.proto if by_port else 0, dst=("0.0.0.0", "0.0.0.0", port), input_ifc=c.iface,
                  user_data=True)  # fmt: skip


@stage("NAT")
def source_nat(c: NewFlow) -> bool:
    fw, pkt, v = c.fw, c.pkt, c.v
    nat = fw.nat
    kept = c.kept
    try:
        # The real address and port as the one object per value the halves of other connections
        # share (memory: the translation keeps them as long as the connection; the first connection
        # with a value shares the packet's own, which its halves then keep for the others).
        src, sport = known_address(pkt.src), known_port(pkt.sport)
        if kept is not None and c.unnat is None:
            # The class's rule, found once (statewall.engine.flowclass); the port is this flow's.
            e = kept.nat
            if e is UNKNOWN:
                if c.egress != c.iface and nat.entries and not _nat_reverse_path(c):
                    return False
                e = kept.nat = nat.source_entry(
                    v, c.proto, c.iface, c.egress, pkt.src, pkt.sport, c.real_dst, c.real_dport
                )
            xl, c.created = (
                nat.apply_entry(e, v, c.proto, c.iface, c.egress, src, sport, c.now)
                if e is not None
                else (None, False)
            )
        else:
            reverse = c.unnat is None and c.exp is None and c.egress != c.iface and nat.entries
            if reverse and not _nat_reverse_path(c):
                return False
            # A twice NAT rule found by UN-NAT translates the source too (``via``).
            xl, c.created = nat.translate_source(
                v, c.proto, c.iface, c.egress, src, sport, c.real_dst, c.real_dport, c.now,
                via=c.unnat[3] if c.unnat is not None else None,
            )  # fmt: skip
    except NatFailure as e:
        c.report(False, e.message, origin=e.rule.origin)
        c.drop(
            DropReason.NAT_FAILED,
            egress=c.egress,
            origin=e.rule.origin,
            message=e.message,
            detail={"xlate_kind": e.xlate_kind, **e.detail},
        )
        return False
    c.xl = xl
    if xl is None:
        if fw.nat_required and c.exp is None and not _translation_not_required(c):
            return False
        if c.trace is not None:
            # An exemption (8.2 ``nat 0 access-list``) or identity rule names itself to packet-tracer.
            via = c.unnat[3] if c.unnat is not None else None
            rule = fw.nat.exempting_rule(
                v, c.proto, c.iface, c.egress, pkt.src, pkt.sport, c.real_dst, c.real_dport, via=via
            )
            c.report(True, "No translation", origin=rule.origin if rule is not None else None)
            _per_session(c)
        return True
    c.msrc = xl.mapped_addr
    c.msport = xl.mapped_port if xl.pat else pkt.sport
    if c.trace is not None:  # the phase's text only for packet-tracer (formatting it costs per flow)
        c.report(
            True,
            f"{'Dynamic' if xl.kind == 'dynamic' else 'Static'} translate "
            f"{addr_str(v, pkt.src)}/{pkt.sport} to {addr_str(v, c.msrc)}/{c.msport}",
            origin=xl.rule.origin,
            lookup=Lookup("nat", 6, f"nat {xl.rule.origin.file}:{xl.rule.origin.line}",
                          src=(*_net_text(xl.rule.real), 0), input_ifc=c.iface, output_ifc=c.egress,
                          user_data=True),
        )  # fmt: skip
        _per_session(c)
    return True


def _per_session(c: NewFlow) -> None:
    """9.x's per-session NAT lookup, a phase of its own after NAT (``Type: NAT``, ``Subtype:
    per-session``, Config and Additional Information empty). 9.0 added per-session PAT and the
    default ``xlate per-session permit`` rules (TCP, UDP to port 53); every 9.x packet-tracer
    output of a flow through the box shows the phase, for TCP and ICMP alike and with no NAT rule
    configured too (public ASAv 9.x lab outputs, the ``detailed`` one printing ``domain=nat-per-session,
    priority=0`` with ``reverse, use_real_addr`` and ``protocol=6`` for a TCP flow). Before 9.0 there
    is no such lookup. ``xlate per-session`` lines of the configuration are not modelled (the default
    rules are the ones looked up)."""
    if asa_version_before(c.fw.policy.version, 9, 0):
        return
    default = c.proto == PROTO_TCP or (c.proto == PROTO_UDP and c.real_dport == 53)
    c.report(
        True,
        "",
        subtype="per-session",
        lookup=Lookup("nat-per-session", 0, f"nat-per-session {c.proto}", flags=("reverse", "use_real_addr"),
                      protocol=c.proto, dst=("0.0.0.0", "0.0.0.0", 53 if c.proto == PROTO_UDP else 0))
        if default
        else None,
    )  # fmt: skip


@stage("IP-OPTIONS")
def ip_options(c: NewFlow) -> bool:
    """The ASA's IP options rule for the flow's first packet (``statewall.ipoptions``; the later
    packets are checked in ``statewall.engine.forward``). The ASA prints this phase for every traced
    packet, its Config empty (ASA 8.2 and 9.x packet-tracer outputs), with the ``inspect-ip-options``
    rule in the ``detailed`` form."""
    pkt = c.pkt
    lookup = (
        Lookup(
            "inspect-ip-options", 0, "inspect-ip-options", deny=True, flags=("reverse",), input_ifc=c.iface
        )
        if c.trace is not None
        else None
    )
    if pkt.l3_len > 20 and c.eff is not None:
        why = ipoptions.asa_refusal(pkt, c.eff, c.fw.policy.ip_options_maps)
        if why is not None:
            c.report(False, why, lookup=lookup)
            _unbind(c)
            c.drop(DropReason.INVALID_IP_OPTION, egress=c.egress, message=why,
                   hint="inspect ip-options (in the connection's class) allows router alert")  # fmt: skip
            return False
    c.report(True, "", lookup=lookup)
    return True


@stage("INSPECT")
def inspect(c: NewFlow) -> bool:
    """The application inspections the flow's class applies that statewall implements
    (``statewall.inspect.MODELLED_ENGINES``; the connection gets its inspector when it is built), one
    INSPECT phase each with the class, its policy map and service policy, as the ASA prints them.
    Inspections statewall does not implement are named NOT MODELLED by ``statewall packet-tracer``.
    An echo reply that opens no session is refused here when the class inspects ICMP (313004,
    ``statewall.inspect.icmp``)."""
    eff = c.eff
    if eff is None or c.fw.policy.inspections:
        return True
    if c.proto in (PROTO_ICMP, PROTO_ICMPV6) and (c.v, c.icmp_type) in ECHO_REPLIES and eff.inspects:
        ins = eff.inspects_engine("icmp")
        if ins is not None:
            c.report(False, "echo reply without a matching echo session", subtype="icmp", origin=ins.origin)
            _unbind(c)
            c.drop(
                DropReason.INSPECT_ICMP_SEQ,
                egress=c.egress,
                origin=ins.origin,
                message="echo reply without a matching echo session (inspect icmp)",
            )
            return False
    if c.trace is None:
        return True
    for ins, use in c.eff.inspects:
        # An engine inspects its own protocols only (an ``inspect dns`` in a ``match any`` class says
        # nothing to a TCP flow); IP options have their own phase.
        engine_protos = {p for p, _, _ in mpf.DEFAULT_INSPECTION_TRAFFIC.get(ins.engine, ())}
        if ins.engine not in MODELLED_ENGINES or ins.engine == "ip-options" or c.proto not in engine_protos:
            continue
        action = ins.origin.text or f"inspect {ins.engine}"
        c.report(True, "", subtype="np-inspect", config=mpf.class_config(c.fw.policy, use, [action]),
                 lookup=_class_lookup(c, "inspect-" + ins.engine.replace(" ", "-"), 70, use))  # fmt: skip
    return True


@stage("FLOW-CREATION")
def stateless(c: NewFlow) -> bool:
    """IPv4 ICMP whose class does not inspect it (``inspect icmp``; ``icmp.stateless``): the ASA
    "establishes unidirectional sessions" for it (Cisco ASA configuration guide, "Access Rules for
    Returning Traffic"). An ICMP packet that is not an error and that the access rules let through
    builds a connection of its direction only (``oneway``, built by ``build``: 302020, ``timeout icmp``
    idle, 302021): the later packets of that direction (the same ping's next requests) ride it, while
    its answer finds no connection, meets the access rules of the interface it arrives on and, let
    in, builds a unidirectional connection of its own (fir3net, "Cisco ASA - ICMP Inspect and the
    Connection Table": without ICMP inspection two separate connections are created, one for the
    request and one for the reply). An ICMP error gets here only when its class does not inspect
    errors (``process``): it is forwarded with its translations and builds no connection
    (``icmp.forward_stateless``). Other packets go on to build their connection."""
    eff = c.eff
    if c.proto != PROTO_ICMP or eff is None or not icmp.stateless(c.fw, c.pkt) or c.exp is not None:
        return True
    if not c.pkt.is_icmp_error:
        c.oneway = eff.inspects_engine("icmp") is None
        return True
    c.report(True, "No connection: ICMP errors are not inspected for this flow (no inspect icmp error), "
             "so it passes on the access rules alone; packet dispatched to next module")  # fmt: skip
    icmp.forward_stateless(c)
    return False


def _nat_reverse_path(c: NewFlow) -> bool:
    """NAT's reverse path check (ASA packet-tracer's NAT phase, subtype rpf-check): a flow that no rule
    untranslated, whose reverse flow a static would translate (``NatTable.reverse_static``: the
    destination is the real address of a host a static maps onto the ingress interface), is
    asymmetric. The ASA drops it: asp-drop ``nat-rpf-failed``, 305013 "Asymmetric NAT rules matched for
    forward and reverse flows; Connection for tcp src outside:... dst inside:... denied due to NAT
    reverse path failure" (Cisco ASA syslog messages guide, 305013: "An attempt to connect to a mapped
    host using its actual address was rejected"; its advice: use the mapped address). False after
    dropping it. Replay carries such a packet, captured on the static's real side, to the mapped
    address before the engine sees it (``Firewall._static_real_side``)."""
    fw, pkt, v = c.fw, c.pkt, c.v
    hit = fw.nat.reverse_static(v, c.proto, c.egress, c.iface, pkt.dst, pkt.dport, pkt.src, pkt.sport)
    if hit is None:
        return True
    rule, mapped, mport = hit[0], hit[1], hit[2]
    port = f"/{mport}" if c.proto in (PROTO_TCP, PROTO_UDP) and rule.mapped_port is not None else ""
    why = (
        f"{addr_str(v, pkt.dst)} is the real address of a host translated to {addr_str(v, mapped)}{port} "
        f"on {c.iface}: the reverse flow would be translated, this one is not"
    )
    c.report(False, why, subtype="rpf-check", origin=rule.origin)
    c.drop(
        DropReason.NAT_RPF_FAILED,
        egress=c.egress,
        origin=rule.origin,
        message=f"NAT reverse path failure: {why}",
        hint=f"connect to the mapped address {addr_str(v, mapped)}{port} from {c.iface}",
    )
    return False


def _translation_not_required(c: NewFlow) -> bool:
    """ASA 8.2: a flow no NAT rule translates may still need one (Cisco ASA 8.2 configuration guide,
    "NAT Control" and "Dynamic NAT Implementation"):

    - a source that an 8.2 ``nat`` rule names must be translated on every lower or same security
      interface it goes to (a ``global`` with that id there, or a static); nat-control or not;
    - with ``nat-control``, every flow to a lower security interface must match a NAT rule (``nat 0``
      identity and exemption, identity statics included), and so must a flow to a same security
      interface from an interface that has dynamic NAT.

    False after dropping the flow with 305005 "No translation group found"."""
    fw, pkt, v = c.fw, c.pkt, c.v
    nat = fw.nat
    if nat.source_rule(v, c.proto, c.iface, c.egress, pkt.src, pkt.sport, c.real_dst, c.real_dport):
        return True  # a rule covers it: nat 0, identity, or a static that keeps the address
    lin = c.itf.security_level
    lout = fw.interfaces[c.egress].security_level
    if lin < lout:
        return True  # to a higher level: only outside NAT (not modelled) requires a translation
    rule = nat.dynamic_rule_elsewhere(v, c.proto, c.iface, pkt.src, pkt.sport, c.real_dst, c.real_dport)
    why = f"nat id {rule.nat_id} has no global on {c.egress}" if rule is not None else ""
    origin = rule.origin if rule is not None else None
    pre_83 = fw.acl_on_mapped  # the release is before 8.3 (nat-control exists only there)
    if rule is None and pre_83 and fw.policy.nat_control and (lin > lout or nat.dynamic_on(c.iface)):
        why = "nat-control: no NAT rule matches this flow"
        origin = fw.policy.nat_control_origin
    if not why:
        return True
    c.report(False, f"No translation group found: {why}", origin=origin)
    c.drop(
        DropReason.NAT_FAILED,
        egress=c.egress,
        origin=origin,
        message=f"no translation group found ({why})",
        hint=f"translate {addr_str(v, pkt.src)} towards {c.egress} (a global with the nat's id, a "
        "static, or nat 0 to exempt it)",
        detail={"no_group": True},
    )
    return False


def _unbind(c: NewFlow) -> None:
    """A flow stopped after source NAT gives back a slot made for it."""
    if c.xl is not None and c.created:
        c.fw.nat.remove(c.xl)


@stage("TCP-STATE")
def track(c: NewFlow) -> bool:
    """TCP tracking starts with this packet."""
    if c.proto != PROTO_TCP:
        return True
    fw = c.fw
    trk, why = TcpTracker.new(c.pkt, fw.ct)
    if trk is None:
        c.drop(fw.box.new_tcp_invalid, egress=c.egress, message=str(why or "invalid new"))
        _unbind(c)
        return False
    c.trk = trk
    return True


@stage("CONN-SETTINGS")
def limits(c: NewFlow) -> bool:
    """Connection limits (ASA): the flow's class decides, before a connection exists."""
    fw, pkt, eff = c.fw, c.pkt, c.eff
    verdict = fw.limits.decide(
        eff, asa_policy.nat_rules(c.xl, c.unnat), c.proto, c.v, pkt.src, c.now, validated=c.validated
    )
    if verdict.action != ADMIT:
        c.report(False, f"{verdict.kind} limit reached", origin=verdict.origin)
        _unbind(c)
        asa_policy.limit_refusal(fw, c.iface, c.egress, pkt, verdict, c.now, c.out, c.ev)
        return False
    c.admission = verdict.admission
    return True


@stage("FLOW-CREATION")
def build(c: NewFlow) -> bool:
    fw, pkt, v, proto, iface, egress, now, ev = c.fw, c.pkt, c.v, c.proto, c.iface, c.egress, c.now, c.ev
    real_dst, real_dport, msrc, msport = c.real_dst, c.real_dport, c.msrc, c.msport
    xl, unnat, exp, dec, admission = c.xl, c.unnat, c.exp, c.dec, c.admission
    ct_max = fw.ct.max
    if ct_max and len(fw.conns) >= ct_max:
        # The platform's connection limit (engine.compiled.ASA_CONN_MAX): no room for another one.
        c.report(False, f"platform connection limit {ct_max} reached")
        _unbind(c)
        if admission is not None:
            admission.release()
        inbound = c.itf.security_level < fw.interfaces[egress].security_level
        c.drop(
            DropReason.CONN_LIMIT,
            egress=egress,
            hint="fewer connections, or a larger platform connection limit",
            message=f"platform connection limit {ct_max} reached",
            detail={
                "kind": "conn",
                "count": len(fw.conns),
                "limit": ct_max,
                "direction": "input" if inbound else "output",
            },
        )
        return False
    conn_id = fw.next_id
    fw.next_id += fw.id_step
    lin = c.itf.security_level
    lout = fw.interfaces[egress].security_level
    direction = "outbound" if lin >= lout else "inbound"
    # The ends for ConnBuilt as compact records (interface, version, address, port, mapped address,
    # mapped port): the event makes its Endpoints, and their address texts, only if something reads
    # them (a log, a sink, a listing). The connection keeps none: they are what its ORIGINAL half says
    # (Connection.initiator).
    initiator = (iface, v, pkt.src, pkt.sport, msrc, msport)
    responder = (egress, v, real_dst, real_dport, pkt.dst, pkt.dport)
    conn = Connection(
        conn_id, v, proto, now, direction, None, None, dec.rule.rule.origin if dec.rule else None
    )
    conn.tcp = c.trk
    conn.limit = admission
    echo = proto in (PROTO_ICMP, PROTO_ICMPV6) and (v, c.icmp_type) in icmp.ICMP_ECHO
    # An ICMP query (echo, timestamp, ...): its identifier is the codec's both ports.
    query = echo or (proto == PROTO_ICMP and c.icmp_type in icmp.QUERY_TYPES_V4)
    oneway = c.oneway
    fwd_key = (v, proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
    if oneway and query and msport == pkt.sport:
        # A query's identifier leaves as UN-NAT gave it back (a reply through its request's PAT slot).
        msport = real_dport
    xlated = (msrc, msport, real_dst, real_dport)
    rkey = reply_key(fwd_key, xlated, query)
    if not oneway and rkey in fw.conns.by_key:
        # (A unidirectional connection waits for no reply: its reply tuple may be another's.)
        if admission is not None:
            admission.release()
        c.drop(
            DropReason.NAT_FAILED,
            egress=egress,
            message="the translated tuple is in use by another connection",
        )
        return False
    fwd, rev = make_halves(conn, iface, egress, fwd_key, xlated, query, rkey)
    conn.halves = (fwd, rev)
    if xl is not None:
        fw.nat.acquire(xl)
        conn.xlates = (xl,)
        if c.created and xl.entry is not None and xl.entry.pba:
            # Port block allocation logs the block (305014), not the translations within it.
            ev.extend(lifecycle.block_events(fw, now))
        elif c.created:
            ev.append(xlate_built(xl, now))
        if rev.rewrites and not oneway:
            key = (v, proto, real_dst, real_dport if not query else pkt.sport, pkt.src, pkt.sport)
            lifecycle.index_for_replay(fw, key, rev)
    held = unnat[3].xlate if unnat is not None and unnat[3] is not None else None
    if held is not None and held is not xl:
        # A connection to a dynamic NAT slot's mapped address keeps the slot alive (UN-NAT by xlate).
        fw.nat.acquire(held)
        conn.xlates = (*conn.xlates, held)
    fw.conns.add(conn, oneway)
    if exp is not None:
        # RELATED: linked to its master, holding the translation slot its announcement reserved.
        fw.expect.consume(exp, conn, now)
        if fwd.new_dst is not None or fwd.new_dport is not None:
            # Replay: a capture shows this data connection going to the real address and port.
            lifecycle.index_for_replay(fw, (v, proto, pkt.src, pkt.sport, real_dst, real_dport), fwd)
    elif fw.inspectors and proto == PROTO_TCP:
        conn.helper = asa_policy.inspector_for(fw, conn, pkt.dport, real_dport, c.eff)
    elif proto == PROTO_UDP and c.eff is not None and c.eff.inspects:
        conn.helper = asa_policy.dns_inspector_for(fw, conn, c.eff)
    elif echo and not oneway and c.eff is not None and c.eff.inspects:
        conn.helper = asa_policy.icmp_inspector_for(conn, c.eff)
    if fw.service_policies is not None:
        asa_policy.apply_policy(
            fw, conn, iface, egress, pkt, real_dst, real_dport, c.icmp_type, c.icmp_code, xl, unnat, c.eff
        )
    fw.lifecycle.opened(fw, conn, now)
    fw.stats["connections"] += 1
    # An expected connection names its master (the FTP control connection that announced it).
    master = exp.master.id if exp is not None else None
    icmp_type = icmp_code = None
    if proto in (PROTO_ICMP, PROTO_ICMPV6):
        # 302020/302021 print the type and code that opened an ICMP connection (9.x).
        icmp_type, icmp_code = conn.icmp = (c.icmp_type, c.icmp_code)
    ev.append(
        ConnBuilt(
            now,
            conn_id,
            proto,
            direction,
            initiator,
            responder,
            origin=conn.origin,
            master=master,
            icmp_type=icmp_type,
            icmp_code=icmp_code,
            untranslated_by=unnat[3].rule.origin if unnat is not None and unnat[3] is not None else None,
        )
    )
    if c.trace is not None:
        c.report(True, f"New flow created with id {conn_id}, packet dispatched to next module")
    c.half = fwd
    return True


def stages(has_service_policies: bool, reverse_path: bool = False) -> tuple:
    """The new-flow stages of a policy: the limits stage only where service policies can set limits,
    the reverse-path stage only where an interface has ``ip verify reverse-path``."""
    first = (lookup, rpf_check) if reverse_path else (lookup,)
    if has_service_policies:
        return (*first, unnat, route, access_list, conn_settings, source_nat, ip_options, inspect,
                stateless, track, limits, build)  # fmt: skip
    return (*first, unnat, route, access_list, source_nat, ip_options, track, build)
