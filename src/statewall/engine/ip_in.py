"""The IP layer of ingress and egress: what both boxes do with a packet before they look at its flow.

Owns the stages in front of decode and the one at the very end of the trip:

- ``header_ok``: a bad IPv4 header checksum is dropped first, on both boxes (Linux ``ip_rcv_core``
  counts it in InCsumErrors before any netfilter hook; the ASA's ``invalid-ip-header`` asp-drop);
- ``reassemble``: fragments go to the box's reassembly (``statewall.reassembly``: Linux's
  defragmentation before conntrack, the ASA's virtual reassembly); what it discards is dropped here
  with its reason, one drop per fragment, and a complete datagram continues as one packet;
- ``refragment``: a datagram that was reassembled leaves as fragments again, cut as the box cuts them
  (``statewall.reassembly.fragment_out``), or is answered with fragmentation-needed / packet-too-big;
- ``special``: addresses a router never forwards as unicast (``statewall.addrclass``), for the
  dialect's path to drop with its own reason or (Linux) to take to the box itself.
"""

from __future__ import annotations

import struct

from .. import craft
from ..addrclass import Special, icmp_error_forbidden
from ..checksum import ones_sum
from ..events import DropReason, IcmpSent
from ..packet import Packet
from ..policy import PROTO_ICMP, PROTO_ICMPV6
from ..reassembly import Datagram, Discard, fragment_out, is_fragment
from .context import addr_str, drop

_H10 = struct.Struct("!10H").unpack_from


def header_ok(fw, iface: str, buf, now: float, ev: list) -> bool:
    """False (and dropped) when an IPv4 header's checksum is wrong."""
    if len(buf) < 20 or buf[0] >> 4 != 4:
        return True
    hl = (buf[0] & 15) << 2
    if hl == 20:
        s = sum(_H10(buf))
        s = (s & 0xFFFF) + (s >> 16)
        if (s & 0xFFFF) + (s >> 16) == 0xFFFF:
            return True
    elif hl < 20 or hl > len(buf) or ones_sum(buf, 0, hl) == 0xFFFF:
        return True  # a malformed header is the decoder's to name
    reason = DropReason.INVALID_IP_HEADER if fw.box.name == "asa" else DropReason.BAD_IP_CHECKSUM
    about = (4, buf[9], int.from_bytes(buf[12:16], "big"), int.from_bytes(buf[16:20], "big"))
    drop(fw, ev, reason, iface, None, now, about=about, message="IPv4 header checksum is wrong")
    return False


def reassemble(fw, iface: str, buf, now: float, ev: list) -> tuple[Datagram | None, bool]:
    """(the datagram ``buf`` completed, whether the packet goes on): a fragment is held or dropped
    (False), or completes its datagram (which goes on); anything else goes on as it is."""
    if not is_fragment(buf) or iface not in fw.interfaces:
        return None, True
    got = fw.reasm.push(iface, buf, now)
    if got is None:
        return None, True
    dg, discards = got
    if discards:
        drop_discards(fw, discards, now, ev)
    return dg, dg is not None


def drop_discards(fw, discards: list[Discard], now: float, ev: list) -> None:
    for d in discards:
        about = (d.version, d.proto, d.src, d.dst)
        drop(fw, ev, d.reason, d.interface, None, now, about=about, message=d.message, detail=d.detail)


def expire(fw, now: float, ev: list) -> None:
    """Datagrams whose reassembly time ran out."""
    reasm = fw.reasm
    if reasm.queues:
        discards = reasm.expire(now)
        if discards:
            drop_discards(fw, discards, now, ev)


def refragment(fw, dg: Datagram, buf, iface: str, now: float, out: list, ev: list) -> None:
    """Replace the reassembled datagram ``buf`` among the packets to send by its fragments."""
    for i, (egress, data) in enumerate(out):
        if data is not buf:
            continue
        mtu = fw.interfaces[egress].mtu if egress in fw.interfaces else 65535
        frags, too_big = fragment_out(buf, dg, mtu)
        if too_big is not None:
            del out[i]
            _too_big(fw, iface, buf, too_big, now, out, ev)
        else:
            out[i : i + 1] = [(egress, f) for f in frags]
        return


def _too_big(fw, iface: str, buf, mtu: int, now: float, out: list, ev: list) -> None:
    from ..packet import decode

    pkt = decode(bytearray(buf))
    drop(fw, ev, DropReason.INVALID_IP_LENGTH, iface, pkt, now,
         message=f"received fragments of up to {mtu} bytes and more exceed MTU {mtu}")  # fmt: skip
    send_error(fw, iface, pkt, (3, 4) if pkt.version == 4 else (2, 0), now, out, ev, mtu=mtu)


def send_error(fw, iface: str, pkt: Packet, error: tuple[int, int], now: float, out, ev, *, mtu=None) -> None:
    """An ICMP error about ``pkt`` back out ``iface``, unless none may be sent about it
    (``statewall.addrclass.icmp_error_forbidden``)."""
    v = pkt.version
    why_not = icmp_error_forbidden(
        v, pkt.src, pkt.dst, proto=pkt.proto,
        icmp_error=pkt.is_icmp_error and pkt.proto in (PROTO_ICMP, PROTO_ICMPV6),
        frag_offset=pkt.frag_offset, broadcast=fw.addrs.is_broadcast(v, pkt.dst), error=error,
    )  # fmt: skip
    if why_not is not None:
        return
    if fw.routes.local_interface(v, pkt.src) is not None:
        # Addressed to one of the box's own addresses, the error is delivered to the box itself
        # (icmp_send / icmp6_send route it locally): nothing leaves (the kernel, an IPv6 packet
        # forwarded from the box's own address with hop limit 1: tests/test_addrclass_kernel.py).
        return
    src = fw.routes.interface_address(iface, v, pkt.src)
    if src is None:
        return
    t, c = error
    out.append((iface, craft.icmp_error(v, src, pkt.src, t, c, bytes(pkt.buf[pkt.ipoff : pkt.end]), mtu=mtu)))
    text = _ERROR_TEXT.get((v, t, c), "").format(mtu=mtu)
    ev.append(IcmpSent(now, iface, t, c, addr_str(v, src), addr_str(v, pkt.src), text))


_ERROR_TEXT = {
    (4, 11, 0): "time exceeded in transit",
    (6, 3, 0): "time exceeded in transit",
    (4, 3, 4): "fragmentation needed, MTU {mtu}",
    (6, 2, 0): "fragmentation needed, MTU {mtu}",
    (6, 1, 2): "beyond scope of source address",
}


def link_local(addr: int) -> bool:
    """An IPv6 address in fe80::/10 (link-local unicast)."""
    return addr >> 118 == 0x3FA


def special(fw, pkt: Packet) -> Special | None:
    """The packet's addresses forbid forwarding it as unicast (``statewall.addrclass``)."""
    return fw.addrs.check(pkt.version, pkt.src, pkt.dst)
