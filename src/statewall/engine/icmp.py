"""ICMP the engine handles itself: errors about tracked connections, errors it sends, echo to the box.

Owns the key by which an ICMP error finds the connection it quotes (``quoted_key``: the quoted packet's
tuple reversed; for an ICMP query its identifier, which the codec gives as both ports, so both dialects
find an echo's connection the same way), the forwarding of such an error on the ASA's stages
(``related_error``, RFC 5508 translation), the errors the box answers with (``time_exceeded``,
``too_big``) and the box's own echo replies (``echo_reply``, ``to_the_box``).
"""

from __future__ import annotations

from .. import craft
from ..events import DropReason
from ..nat import NatFailure
from ..packet import Packet
from ..policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from . import ip_in
from .context import drop

ICMP_ECHO = frozenset({(4, 8), (4, 0), (6, 128), (6, 129)})
ICMP_ECHO_REQUEST = frozenset({(4, 8), (6, 128)})


def quoted_key(inner: Packet) -> tuple:
    """The connection-table key of the half an ICMP error's quoted packet travelled the other way on.
    For an ICMP query (echo, timestamp, ...) the codec gives the identifier as both ports."""
    return (inner.version, inner.proto, inner.dst, inner.dport, inner.src, inner.sport)


def related_error(fw, iface: str, pkt: Packet, now: float, out: list, ev: list) -> None:
    """An ICMP error on the ASA's stages: forwarded when it quotes a connection of this direction,
    translated as that connection is (RFC 5508)."""
    inner = pkt.inner()
    half = fw.conns.by_key.get(quoted_key(inner))
    if half is not None and half.conn.fast is not None:
        fw.fast.unoffload(half.conn)
    if half is None or half.in_iface != iface:
        drop(
            fw,
            ev,
            DropReason.ICMP_NO_SESSION,
            iface,
            pkt,
            now,
            message="ICMP error quotes no existing connection",
        )
        return
    eff = half.conn.mpf
    if eff is None or eff.decrement_ttl:  # the ASA keeps the TTL without decrement-ttl (forward)
        if pkt.ttl <= 1:
            time_exceeded(fw, iface, pkt, now, out, ev)
            return
        pkt.set_ttl(pkt.ttl - 1)
    # RFC 5508: translate the outer destination and the quoted packet, which travelled the other way.
    outer_dst = pkt.dst
    if half.new_dst is not None:
        pkt.set_dst(half.new_dst)
    if pkt.src == inner.dst:
        if half.new_src is not None:
            pkt.set_src(half.new_src)  # the translated end itself reports the error
    elif _inspects_errors(fw, half, pkt, outer_dst):
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


def _inspects_errors(fw, half, pkt: Packet, outer_dst: int) -> bool:
    """Does the class of this ICMP error itself (not of the connection it quotes) say ``inspect icmp
    error``? Resolved for the error as it arrived."""
    sp = fw.service_policies
    if sp is None:
        return False
    eff = sp.resolve(
        half.in_iface, half.out_iface, pkt.version, pkt.proto, pkt.src, 0, outer_dst, 0, pkt.icmp_type,
        pkt.icmp_code, count=False,
    )  # fmt: skip
    return eff.inspects_engine("icmp error") is not None


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
