"""ICMP the engine handles itself: errors about tracked connections, errors it sends, echo to the box.

Owns the key by which an ICMP error finds the connection it quotes (``quoted_key``: the quoted packet's
tuple reversed; for an ICMP query its identifier, which the codec gives as both ports, so both dialects
find an echo's connection the same way), the forwarding of such an error on the ASA's stages
(``related_error``, RFC 5508 translation), the errors the box answers with (``time_exceeded``,
``too_big``) and the box's own echo replies (``echo_reply``, ``to_the_box``).
"""

from __future__ import annotations

from .. import craft
from ..events import DropReason, IcmpSent
from ..packet import Packet
from ..policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from .context import addr_str, drop

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
    if pkt.ttl <= 1:
        time_exceeded(fw, iface, pkt, now, out, ev)
        return
    pkt.set_ttl(pkt.ttl - 1)
    # RFC 5508: translate the outer destination and the quoted packet, which travelled the other way.
    if half.new_dst is not None:
        pkt.set_dst(half.new_dst)
    if half.new_src is not None and pkt.src == inner.dst:
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


def time_exceeded(fw, iface: str, pkt: Packet, now: float, out: list, ev: list) -> None:
    drop(fw, ev, DropReason.TTL_EXPIRED, iface, pkt, now)
    if pkt.is_icmp_error:
        return  # never answer an error with an error (RFC 1812 4.3.2.7)
    src = fw.routes.interface_address(iface, pkt.version, pkt.src)
    if src is None:
        return
    t = 11 if pkt.version == 4 else 3
    reply = craft.icmp_error(pkt.version, src, pkt.src, t, 0, bytes(pkt.buf[: pkt.total_len]))
    out.append((iface, reply))
    ev.append(
        IcmpSent(
            now,
            iface,
            t,
            0,
            addr_str(pkt.version, src),
            addr_str(pkt.version, pkt.src),
            "time exceeded in transit",
        )
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
    if pkt.is_icmp_error:
        return False
    src = fw.routes.interface_address(iface, pkt.version, pkt.src)
    if src is not None:
        t, c = (3, 4) if pkt.version == 4 else (2, 0)
        data = bytes(pkt.buf[: pkt.total_len])
        out.append((iface, craft.icmp_error(pkt.version, src, pkt.src, t, c, data, mtu=mtu)))
        ev.append(
            IcmpSent(
                now,
                iface,
                t,
                c,
                addr_str(pkt.version, src),
                addr_str(pkt.version, pkt.src),
                f"fragmentation needed, MTU {mtu}",
            )
        )
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
