"""ICMP the engine handles itself: errors about tracked connections, uninspected ICMP, errors, echo.

Owns the key by which an ICMP error finds the connection it quotes (``quoted_key``, ``quoted_half``:
the quoted packet's tuple reversed; for an ICMP query its identifier, which the codec gives as both
ports, so both dialects find an echo's connection the same way), the forwarding of such an error on the
ASA's stages (``related_error``, RFC 5508 translation; 313005 for one quoting nothing: ``no_session``),
the ASA's ICMP without inspection (``stateless``: IPv4 ICMP no class inspects has unidirectional
connections; ``forward_stateless`` sends an error no class inspects on with its translations), the
errors the box answers with (``time_exceeded``, ``too_big``) and the box's own echo replies
(``echo_reply``, ``to_the_box``).
"""

from __future__ import annotations

from .. import craft
from ..events import DropReason, xlate_built
from ..nat import NatFailure
from ..packet import Packet
from ..policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from . import ip_in
from .context import addr_str, drop

ICMP_ECHO = frozenset({(4, 8), (4, 0), (6, 128), (6, 129)})
ICMP_ECHO_REQUEST = frozenset({(4, 8), (6, 128)})
# IPv4 ICMP queries (echo, timestamp, information, address mask) and their replies: the identifier is
# the codec's port; a reply is what UN-NAT looks a PAT slot up for (``NatTable.reply_slot``).
QUERY_TYPES_V4 = frozenset({0, 8, 13, 14, 15, 16, 17, 18})
QUERY_REPLIES_V4 = frozenset({0, 14, 16, 18})
# (version, type) of every ICMP query and reply whose identifier a connection's half may rewrite.
ICMP_QUERIES = ICMP_ECHO | frozenset((4, t) for t in QUERY_TYPES_V4)


def quoted_key(inner: Packet) -> tuple:
    """The connection-table key of the half an ICMP error's quoted packet travelled the other way on.
    For an ICMP query (echo, timestamp, ...) the codec gives the identifier as both ports."""
    return (inner.version, inner.proto, inner.dst, inner.dport, inner.src, inner.sport)


def quoted_half(fw, iface: str, pkt: Packet):
    """The half of the connection an ICMP error quotes, when that connection runs this way (the quoted
    packet travelled the other way on it): None when it quotes none, or one of the other direction."""
    half = fw.conns.by_key.get(quoted_key(pkt.inner()))
    if half is not None and half.conn.fast is not None:
        fw.fast.unoffload(half.conn)
    return half if half is not None and half.in_iface == iface else None


def stateless(fw, pkt: Packet) -> bool:
    """Is ICMP unidirectional for this packet unless its class inspects it: IPv4 ICMP on the ASA (whose
    stages resolve service policies). Without ``inspect icmp`` the ASA matches no reply to its
    request: "For connectionless protocols such as ICMP, however, the ASA establishes unidirectional
    sessions, so you either need access rules to allow ICMP in both directions ..., or you need to
    enable the ICMP inspection engine" (Cisco ASA configuration guide, "Access Rules for Returning
    Traffic"). Each direction meets the access rules of the interface it arrives on and, let through,
    builds a connection of its own (302020/302021: fir3net, "Cisco ASA - ICMP Inspect and the
    Connection Table", logs of a ping without inspection: one connection for the request, one for the
    reply; the syslog guide's explanation of 302020 speaks of ``inspect icmp`` only):
    ``statewall.engine.asa.stateless``. Without ``inspect icmp error`` an ICMP error is judged by the
    access rules too (``statewall.engine.asa.process``) and builds no connection. A Linux box tracks
    ICMP statefully (conntrack); ICMPv6 keeps its sessions (the ICMP inspection guide speaks of IPv4)."""
    return fw.service_policies is not None and pkt.version == 4


def inspects_errors(fw, half, pkt: Packet) -> bool:
    """Does the class of this ICMP error itself (not of the connection it quotes) say ``inspect icmp
    error``? Resolved for the error as it arrived, between the quoted connection's interfaces."""
    sp = fw.service_policies
    if sp is None:
        return False
    eff = sp.resolve(
        half.in_iface, half.out_iface, pkt.version, pkt.proto, pkt.src, 0, pkt.dst, 0, pkt.icmp_type,
        pkt.icmp_code, count=False,
    )  # fmt: skip
    return eff.inspects_engine("icmp error") is not None


def no_session(fw, iface: str, pkt: Packet, now: float, ev: list, egress=None, origin=None) -> None:
    """An ICMP error quoting no connection of this direction, where errors are matched to connections
    (``inspect icmp error`` on the ASA, conntrack's RELATED on Linux): dropped, 313005 "No matching
    connection for ICMP error message: icmp src outside:A dst identity:B (type 3, code 4) on outside
    interface.  Original IP payload: ..." (the quoted packet; ``identity`` is the ASA's name for
    itself as the destination, as a logged 313005 shows for an error to the box's own address)."""
    inner = pkt.inner()
    ports = inner.proto in (PROTO_TCP, PROTO_UDP)
    detail = {
        "inner_proto": _INNER_NAMES.get(inner.proto) or f"protocol {inner.proto}",
        "inner_src": addr_str(inner.version, inner.src),
        "inner_sport": inner.sport if ports else 0,
        "inner_dst": addr_str(inner.version, inner.dst),
        "inner_dport": inner.dport if ports else 0,
    }
    if egress is None and fw.routes.local_interface(pkt.version, pkt.dst) is not None:
        egress = "identity"
    drop(fw, ev, DropReason.ICMP_NO_SESSION, iface, pkt, now, egress=egress, origin=origin,
         message="ICMP error quotes no existing connection", detail=detail)  # fmt: skip


_INNER_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmp6"}


def related_error(
    fw, half, iface: str, pkt: Packet, now: float, out: list, ev: list, inspected: bool
) -> None:
    """An ICMP error quoting ``half``'s connection (``quoted_half``), let through (by the error
    inspection, or by the access rules): forwarded translated as that connection is (RFC 5508);
    ``inspected``: its class says ``inspect icmp error``, which translates an intermediate hop's
    address too."""
    inner = pkt.inner()
    eff = half.conn.mpf
    if eff is None or eff.decrement_ttl:  # the ASA keeps the TTL without decrement-ttl (forward)
        if pkt.ttl <= 1:
            time_exceeded(fw, iface, pkt, now, out, ev)
            return
        pkt.set_ttl(pkt.ttl - 1)
    elif not pkt.ttl:
        ttl_zero(fw, iface, pkt, now, ev, half.out_iface)
        return
    # RFC 5508: translate the outer destination and the quoted packet, which travelled the other way.
    outer_dst = pkt.dst
    if half.new_dst is not None:
        pkt.set_dst(half.new_dst)
    if pkt.src == inner.dst:
        if half.new_src is not None:
            pkt.set_src(half.new_src)  # the translated end itself reports the error
    elif inspected:
        _translate_hop(fw, half, pkt, outer_dst, now)
    elif half.new_src is not None:
        # An intermediate hop behind the translated end: without ICMP error inspection the ASA creates
        # no translation for it, and "all the intermediate hops appear with the mapped destination IP
        # address" (Cisco ASA firewall configuration guide, "ICMP Error Inspection").
        pkt.set_src(half.new_src)
    if half.rewrites:
        if half.new_dst is not None:
            inner.set_src(half.new_dst)
        if half.new_src is not None:
            inner.set_dst(half.new_src)
        if inner.proto in (PROTO_TCP, PROTO_UDP):
            if half.new_dport is not None:
                inner.set_sport(half.new_dport)
            if half.new_sport is not None:
                inner.set_dport(half.new_sport)
        elif half.new_sport is not None:
            inner.set_icmp_id(half.new_sport)
        pkt.fix_icmp_checksum()
    shift = half.conn.seqrand
    if shift is not None and inner.proto == PROTO_TCP:
        # The quoted segment went the other way with its seq shifted: its sender gets its own back.
        shift.restore_quoted(1 - half.dir, inner)
    half.conn.last = now
    fw.stats["forwarded"] += 1
    out.append((half.out_iface, pkt.buf))


def forward_stateless(c) -> None:
    """An ICMP error the ASA neither matches to a connection (no ``inspect icmp error``) nor builds one
    for (``statewall.engine.asa.stateless``; ``c`` the new-flow stages' context, which let it
    through): forwarded with the translations the stages found. A source translation made for it is a
    slot of its own: 305011 when built, held by no connection, so its idle timer (``timeout
    pat-xlate`` / ``xlate``) runs from its last use, then 305012. The TTL is kept unless the class says
    ``set connection decrement-ttl``; the egress MTU is the router's check."""
    fw, pkt, now, ev, out = c.fw, c.pkt, c.now, c.ev, c.out
    eff = c.eff
    dec = 1 if eff is None or eff.decrement_ttl else 0
    xl = c.xl
    if not _router_checks(c, dec):
        if xl is not None and c.created:
            fw.nat.remove(xl)  # a slot made for a packet that never left
        return
    if xl is not None and c.created:
        if xl.entry is not None and xl.entry.pba:
            from .lifecycle import block_events  # (lifecycle's imports lead back here)

            ev.extend(block_events(fw, now))  # port block allocation logs the block (305014)
        else:
            ev.append(xlate_built(xl, now))
        if xl.kind != "static" and xl.timeout > 0:
            fw.timers.schedule(now + xl.timeout, xl)
    for x in _slots(c):
        if x.refcount == 0:
            x.idle_since = now  # used by this packet: its idle time starts again
    if c.real_dst != pkt.dst:
        pkt.set_dst(c.real_dst)
    if c.msrc != pkt.src:
        pkt.set_src(c.msrc)
    if dec:
        pkt.set_ttl(pkt.ttl - 1)
    fw.stats["forwarded"] += 1
    out.append((c.egress, pkt.buf))


def _router_checks(c, dec: int) -> bool:
    """The router's checks before an ICMP error ``forward_stateless`` sends leaves (TTL, egress MTU):
    False when it was answered or dropped instead."""
    fw, pkt = c.fw, c.pkt
    if dec and pkt.ttl <= 1:
        time_exceeded(fw, c.iface, pkt, c.now, c.out, c.ev)
        return False
    if not pkt.ttl:
        ttl_zero(fw, c.iface, pkt, c.now, c.ev, c.egress)
        return False
    mtu = fw.interfaces[c.egress].mtu
    size = fw.reasm_dg.frag_max_size if fw.reasm_dg is not None else pkt.total_len
    return size <= mtu or too_big(fw, c.iface, pkt, mtu, c.now, c.out, c.ev)


def _slots(c) -> list:
    """The dynamic translation slots of an ICMP error ``forward_stateless`` sends: its source's, the
    one UN-NAT found."""
    slots = [c.xl] if c.xl is not None and c.xl.kind == "dynamic" else []
    held = c.unnat[3].xlate if c.unnat is not None and c.unnat[3] is not None else None
    if held is not None and held is not c.xl:
        slots.append(held)
    return slots


def _translate_hop(fw, half, pkt: Packet, outer_dst: int, now: float) -> None:
    """``inspect icmp error``: "the ASA creates translation sessions for intermediate hops that send
    ICMP error messages, based on the NAT configuration" (Cisco ASA firewall configuration guide, "ICMP
    Error Inspection"): the hop's address is translated as a flow from it would be; a hop no rule
    translates keeps its address. A slot made only for this error is given back at once."""
    try:
        xl, created = fw.nat.translate_source(
            pkt.version, pkt.proto, half.in_iface, half.out_iface, pkt.src, 0, outer_dst, 0, now
        )
    except NatFailure:
        return
    if xl is None:
        return
    pkt.set_src(xl.mapped_addr)
    if created:
        fw.nat.remove(xl)


def time_exceeded(fw, iface: str, pkt: Packet, now: float, out: list, ev: list) -> None:
    """TTL (hop limit) 1 on a packet to forward: dropped, answered with time exceeded where an ICMP
    error may be sent at all (never about an error, a multicast or broadcast packet, a later fragment:
    ``ip_in.send_error``)."""
    drop(fw, ev, DropReason.TTL_EXPIRED, iface, pkt, now)
    ip_in.send_error(fw, iface, pkt, (11, 0) if pkt.version == 4 else (3, 0), now, out, ev)


def ttl_zero(fw, iface: str, pkt: Packet, now: float, ev: list, egress: str) -> None:
    """TTL (hop limit) 0 on a packet the ASA would forward without lowering its TTL (no ``set
    connection decrement-ttl``): dropped, with no ICMP error. Cisco does not say what the ASA does
    with it; statewall takes the safe reading of the standards every forwarding node is held to: RFC
    1812 5.3.1 (a router MUST NOT forward a datagram with a TTL of zero) and RFC 8200 section 3 (a
    packet is discarded when its hop limit was zero when received). No time exceeded is sent: a box
    that does not lower the TTL stays out of traceroute's sight, as the ASA does by default."""
    drop(
        fw,
        ev,
        DropReason.TTL_EXPIRED,
        iface,
        pkt,
        now,
        egress=egress,
        message=f"{'TTL' if pkt.version == 4 else 'hop limit'} 0: never forwarded (RFC 1812 5.3.1, RFC 8200)",
        hint="the sender or a router before the firewall sent it with TTL 0; no setting forwards it",
    )


def too_big(fw, iface: str, pkt: Packet, mtu: int, now: float, out: list, ev: list) -> bool:
    """A packet larger than the egress MTU: True to forward anyway (IPv4 without DF is left to the
    next hop), False after answering with fragmentation-needed / packet-too-big."""
    if pkt.version == 4 and not pkt.df:
        return True
    drop(
        fw,
        ev,
        DropReason.INVALID_IP_LENGTH,
        iface,
        pkt,
        now,
        message=f"packet of {pkt.total_len} bytes exceeds MTU {mtu} with DF set",
    )
    ip_in.send_error(fw, iface, pkt, (3, 4) if pkt.version == 4 else (2, 0), now, out, ev, mtu=mtu)
    return False


def is_echo_request(pkt: Packet) -> bool:
    return pkt.proto in (PROTO_ICMP, PROTO_ICMPV6) and (pkt.version, pkt.icmp_type) in ICMP_ECHO_REQUEST


def echo_reply(iface: str, pkt: Packet, out: list) -> None:
    """The box answers an echo request addressed to it, from the address it was sent to."""
    start = pkt.l4off + 8
    seq = int.from_bytes(pkt.buf[pkt.l4off + 6 : pkt.l4off + 8], "big")
    reply = craft.icmp_echo(
        pkt.version, pkt.dst, pkt.src, pkt.icmp_id, seq, bytes(pkt.buf[start : pkt.total_len]), reply=True
    )
    out.append((iface, reply))


def to_the_box(fw, iface: str, local: str, pkt: Packet, now: float, out: list, ev: list) -> None:
    """The ASA: a packet for one of its own addresses. It answers pings to the address of the interface
    they arrive on; everything else is dropped (statewall runs no services)."""
    if local == iface and is_echo_request(pkt):
        echo_reply(iface, pkt, out)
        fw.stats["to_the_box"] += 1
        return
    drop(
        fw,
        ev,
        DropReason.TO_THE_BOX,
        iface,
        pkt,
        now,
        message=f"addressed to the firewall's own address on {local}",
    )
