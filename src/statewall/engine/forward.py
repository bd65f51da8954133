"""Forwarding: what every accepted packet goes through on its way out, on both dialects' paths.

Owns the established-flow stage of the ASA's stages (``established``: a packet of a known connection,
from the normalizer and TCP tracking to the wire, with the compiled fast path as its leaf — see
``statewall.fastpath``) and the steps both paths share: the router checks (``ttl_mtu``: TTL and egress
MTU, answered with ICMP), application inspection (``inspect``: the helper reads the payload and may
refuse it), the NAT rewrite of a connection's half (``rewrite``; netfilter's path splits it around its
hooks: ``rewrite_dst``/``rewrite_src``), the sequence adjustment (``adjust_seq``), the emit (``emit``:
counters, the connection's bytes, the first fragment's note for the later ones) and later fragments
(``later_fragment``).
"""

from __future__ import annotations

from .. import ipoptions, mss, normalizer
from ..conntrack import ORIGINAL, REPLY, Half, seen_with
from ..events import DropReason
from ..packet import Packet
from ..policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from ..tcptrack import INVALID, InvalidReason, TcpState
from . import asa_policy, icmp, lifecycle
from .context import drop

TCP_SYN = 0x02
TCP_ACK = 0x10

# The ASA's names for what its TCP state machine refuses on an established connection, where the
# normalizer map (compiled.ASA.invalid_drops) has none; a SYN or SYN-ACK on it otherwise.
_ASA_INVALID = {
    InvalidReason.SEQ_UNDER: DropReason.TCP_SEQ_PAST_WINDOW,
    InvalidReason.OVER_WINDOW: DropReason.TCP_SEQ_PAST_WINDOW,
    InvalidReason.ACK_UNDER: DropReason.TCP_INVALID_ACK,
    InvalidReason.BAD_FLAGS: DropReason.INVALID_TCP_FLAGS,
    InvalidReason.SYN_IN_WINDOW: DropReason.TCP_RST_SYN_IN_WINDOW,
    InvalidReason.SYN_ON_CONN: DropReason.TCP_SYN_ON_CONN,
}

# The tracker's states at which a TCP connection may be offloaded (statewall.fastpath.FastPath.eligible).
_OFFLOAD_STATES = (TcpState.SYN_SENT, TcpState.SYN_RECV, TcpState.ESTABLISHED)

# ASA ``fragment timeout`` default: how long later fragments may follow their first one.
FRAGMENT_TIMEOUT = 5.0


def established(
    fw, half: Half, pkt: Packet, now: float, out: list, ev: list, gso_size: int, first: bool = False
) -> None:
    """A packet of ``half``'s connection that arrived where it should (``first``: the packet that
    created the connection, already tracked)."""
    conn = half.conn
    if conn.fast is not None:
        fw.fast.unoffload(conn)  # the compiled path handed this packet back: its state first
    trk = conn.tcp
    helper = conn.helper
    norm = conn.norm
    if conn.intercept is not None and asa_policy.intercepted(fw, half, pkt, now, out, ev):
        return
    if conn.dcd is not None and lifecycle.dcd_answer(fw, half, pkt, now):
        return
    done = 0
    if norm is not None:
        # The tcp-map decides first and learns only once the segment leaves (normalizer.learn below):
        # a segment dropped anywhere on the way teaches the connection nothing.
        done = asa_policy.normalize(fw, half, norm, pkt, now, out, ev, gso_size)
        if done is None:
            return
    # Linux lowers the TTL and answers time exceeded; the ASA forwards transit packets with their TTL
    # unless the connection's class says ``set connection decrement-ttl`` (Cisco ASA firewall
    # configuration guide, "Connection Settings": then a TTL-1 packet is dropped, but the connection
    # is opened for the packets after it). The router's checks come before tracking so that a packet
    # they refuse is never tracked.
    ttl = pkt.ttl
    eff = conn.mpf
    if pkt.l3_len > 20 and eff is not None and not first:
        # The ASA's IP options rule (statewall.ipoptions) for the later packets (the first one met
        # the IP-OPTIONS stage, statewall.engine.asa); Linux's is netfilter's path's.
        why = ipoptions.asa_refusal(pkt, eff, fw.policy.ip_options_maps)
        if why is not None:
            hint = "inspect ip-options (in the connection's class) allows router alert"
            drop(fw, ev, DropReason.INVALID_IP_OPTION, half.in_iface, pkt, now, egress=half.out_iface,
                 message=why, hint=hint)  # fmt: skip
            return
    dec = 1 if eff is None or eff.decrement_ttl else 0
    if dec and ttl <= 1:
        icmp.time_exceeded(fw, half.in_iface, pkt, now, out, ev)
        return
    if not ttl:
        icmp.ttl_zero(fw, half.in_iface, pkt, now, ev, half.out_iface)
        return
    mtu = fw.interfaces[half.out_iface].mtu
    size = pkt.total_len if not gso_size else pkt.l3_len + (pkt.doff or 8) + gso_size
    if fw.reasm_dg is not None:
        size = fw.reasm_dg.frag_max_size  # it leaves as fragments of at most the size received
    if size > mtu and not icmp.too_big(fw, half.in_iface, pkt, mtu, now, out, ev):
        return
    shift = conn.seqrand
    if trk is not None and not first:
        if shift is not None:
            # Randomized (and perhaps inspected): acks come back in the shifted numbers.
            verdict, why = trk.packet(half.dir, pkt, fw.ct, ack_offset=shift.ack_offset(half.dir, pkt.ack))
        elif helper is not None and helper.seqadj.active:
            # Inspection rewrites changed lengths: this side's acks are in the adjusted space.
            verdict, why = trk.packet(
                half.dir, pkt, fw.ct, ack_offset=helper.seqadj.ack_offset(half.dir, pkt.ack)
            )
        else:
            verdict, why = trk.packet(half.dir, pkt, fw.ct)
        if trk.reopen:
            # A fresh SYN reusing the tuple of a closing connection: the old one goes, the SYN
            # starts a new one (netfilter's TIME_WAIT reopen).
            lifecycle.teardown(fw, conn, now, "TCP FINs", None, out, ev)
            nhalf = fw.new_flow(half.in_iface, pkt, now, out, ev)
            if nhalf is not None:
                established(fw, nhalf, pkt, now, out, ev, gso_size, first=True)
            return
        if verdict == INVALID and not (norm is not None and normalizer.allows_invalid(norm, why)):
            # The ASA refuses the segment with the normalizer check of the same meaning (a closed map
            # from the tracker's reason, empty for a Linux box: TCP_INVALID).
            reason = fw.invalid_drops.get(why.kind, DropReason.TCP_INVALID) if why else DropReason.TCP_INVALID
            message, detail = str(why or "INVALID"), {"ctstate": "INVALID", "conn": conn.id}
            if fw.box.name == "asa":
                # The ASA's own words, never conntrack's: a segment its TCP state machine refuses
                # before the three-way handshake completed (responder data on an embryonic
                # connection included) is tcp-3whs-failed.
                if trk.state < TcpState.ESTABLISHED or trk.state == TcpState.SYN_SENT2:
                    reason = DropReason.TCP_3WHS_FAILED
                elif reason is DropReason.TCP_INVALID:
                    # What is left is a SYN or SYN-ACK the state table refuses on an established
                    # connection (a SYN from the responder, a SYN-ACK from either side).
                    syn = DropReason.TCP_SYNACK_ON_CONN if pkt.flags & TCP_ACK else DropReason.TCP_SYN_ON_CONN
                    reason = _ASA_INVALID.get(why.kind if why else None, syn)
                message, detail = reason.description, {"conn": conn.id}
            hint = origin = None
            if norm is not None:
                # seq-past-window / invalid-ack: the tcp-map line and the change that allows it.
                knob, hint = normalizer.invalid_hint(why)
                origin = norm.profile.tm.origins.get(knob) if knob else None
            drop(
                fw,
                ev,
                reason,
                half.in_iface,
                pkt,
                now,
                egress=half.out_iface,
                origin=origin,
                hint=hint,
                message=message,
                detail=detail,
            )
            return
        if (
            norm is not None
            and norm.profile.window_drop
            and asa_policy.window_varied(fw, half, norm, pkt, now, out, ev)
        ):
            return
    if helper is not None:
        # The normalizer learns the segment as sent, not as the inspector may rewrite it.
        seq = pkt.seq
        plen = pkt.payload_len
        data = pkt.payload() if norm is not None and norm.sent is not None and plen else None
        if not inspect(fw, half, pkt, now, out, ev, half.in_iface, half.out_iface):
            return
        if norm is not None:
            asa_policy.learn(half, norm, pkt, done, seq, plen, data)
    elif norm is not None:
        asa_policy.learn(half, norm, pkt, done, pkt.seq, pkt.payload_len, None)
    if norm is not None and pkt.flags & TCP_SYN:
        mss.sysopt_rewrite(pkt, fw.policy.sysopt_tcpmss, fw.policy.sysopt_tcpmss_minimum)
    nat = half.nat
    if nat is not None:
        pkt.forward_nat4(ttl - dec, nat)  # TTL and NAT: two writes, one update per checksum
    elif half.rewrites and pkt.version == 4 and (pkt.proto == PROTO_TCP or pkt.proto == PROTO_UDP):
        pkt.forward_nat4(ttl - dec, half.compile_nat())
    else:
        if dec:
            pkt.set_ttl(ttl - 1)
        if half.rewrites:
            rewrite(half, pkt)
    if shift is not None:
        shift.adjust(half.dir, pkt)  # randomization, with any inspection corrections (after NAT)
    elif helper is not None and helper.seqadj.active:
        helper.seqadj.adjust(half.dir, pkt)
    plen = pkt.payload_len
    conn.last = now
    again = False  # not this direction's first payload
    if plen:
        conn.bytes += plen
        seen = conn.data_seen
        again = seen[half.dir]
        if not again:
            conn.data_seen = seen_with(seen, half.dir)
    fw.stats["forwarded"] += 1
    out.append((half.out_iface, pkt.buf))
    if pkt.mf:
        note_first_fragment(fw, half, pkt, now)
    if helper is not None and getattr(helper, "close_after", False):
        # DNS guard: this reply answered the last waiting query; the connection goes once it is
        # forwarded (statewall.inspect.dns).
        lifecycle.teardown(fw, conn, now, "Flow closed by inspection", None, out, ev)
        return
    fast = fw.fast
    if trk is not None:
        fw.lifecycle.after_tcp(fw, conn, half, pkt, now, out, ev)
        if norm is not None and norm.held[half.dir] and not conn.closed:
            # Segments queued behind this one are in order now.
            for held in normalizer.release(norm, half.dir):
                established(fw, half, held.pkt, now, out, ev, held.gso_size)
        if (again or not plen) and fast is not None and trk.state in _OFFLOAD_STATES:
            fast.offload(conn)  # the next segments go through the compiled path
    elif again and conn.proto == PROTO_UDP and fast is not None:
        fast.offload(conn)
    # A TCP connection is offloaded at its SYN (SYN_SENT: the SYN-ACK answering it and the handshake's
    # last ACK are then the compiled path's, on the ASA's stages), at its SYN-ACK when the Python path
    # took that (SYN_RECV), or at the end of its handshake (the ACK without data that
    # makes it ESTABLISHED), where its record replaces its Python objects (statewall.fastpath: an idle
    # connection costs its record, not an object graph), or at the second payload from one side;
    # UDP at the second payload: a short exchange (one query and its answer) is over before
    # offloading and taking back would pay off.


def ttl_mtu(fw, iface: str, egress: str, pkt: Packet, now: float, out: list, ev: list, gso_size: int) -> bool:
    """The router's checks before a packet leaves through ``egress``: False when it was answered
    (time exceeded, fragmentation needed) instead. The caller lowers the TTL."""
    if pkt.ttl <= 1:
        icmp.time_exceeded(fw, iface, pkt, now, out, ev)
        return False
    mtu = fw.interfaces[egress].mtu
    size = pkt.total_len if not gso_size else pkt.l3_len + (pkt.doff or 8) + gso_size
    if fw.reasm_dg is not None:
        size = fw.reasm_dg.frag_max_size  # it leaves as fragments of at most the size received
    return size <= mtu or icmp.too_big(fw, iface, pkt, mtu, now, out, ev)


def inspect(
    fw, half: Half, pkt: Packet, now: float, out: list, ev: list, iface: str, egress: str | None
) -> bool:
    """Application inspection reads the payload as sent, before NAT, and may rewrite it; False when it
    refused the packet (dropped, and the connection closed if the inspector says so)."""
    conn = half.conn
    refusal = conn.helper.inspect(half, pkt, now, ev)
    if refusal is None:
        return True
    drop(
        fw,
        ev,
        refusal.reason,
        iface,
        pkt,
        now,
        egress=egress,
        origin=refusal.origin,
        message=refusal.message,
        detail={"conn": conn.id, **refusal.detail},
    )
    if refusal.close:
        lifecycle.teardown(fw, conn, now, "Flow closed by inspection", iface, out, ev)
    return False


def emit(fw, half: Half, egress: str, pkt: Packet, now: float, out: list) -> None:
    """A packet of ``half``'s connection leaves through ``egress`` (netfilter's path: after its hooks)."""
    conn = half.conn
    plen = pkt.payload_len
    if plen:
        conn.bytes += plen
        if not conn.data_seen[half.dir]:
            conn.data_seen = seen_with(conn.data_seen, half.dir)
    fw.stats["forwarded"] += 1
    out.append((egress, pkt.buf))
    if pkt.mf:
        note_first_fragment(fw, half, pkt, now)


def note_first_fragment(fw, half: Half, pkt: Packet, now: float) -> None:
    """First fragment of a datagram: its later fragments follow this half (FRAGMENT_TIMEOUT s)."""
    fw.frag_flows[(pkt.version, pkt.proto, half.key[2], half.key[4], pkt.ip_id)] = (
        half,
        now + FRAGMENT_TIMEOUT,
    )


def later_fragment(fw, iface: str, pkt: Packet, now: float, out: list, ev: list) -> None:
    """A later fragment belongs to a datagram whose first fragment created or used a connection;
    translate its addresses the way that first fragment was translated. Fragments arriving before
    their first fragment are dropped (statewall does not queue them; the ASA's virtual reassembly
    and the kernel's defragmentation would). Both dialects' paths."""
    entry = fw.frag_flows.get((pkt.version, pkt.proto, pkt.src, pkt.dst, pkt.ip_id))
    if entry is not None and entry[1] >= now and not entry[0].conn.closed:
        half = entry[0]
        if half.in_iface != iface:
            drop(fw, ev, DropReason.RPF_VIOLATED, iface, pkt, now)
            return
        if pkt.ttl <= 1:
            icmp.time_exceeded(fw, iface, pkt, now, out, ev)
            return
        pkt.set_ttl(pkt.ttl - 1)
        if half.new_src is not None:
            pkt.set_src(half.new_src)
        if half.new_dst is not None:
            pkt.set_dst(half.new_dst)
        fw.stats["forwarded"] += 1
        out.append((half.out_iface, pkt.buf))
        return
    drop(
        fw,
        ev,
        DropReason.INVALID_FRAGMENT,
        iface,
        pkt,
        now,
        message="fragment of a datagram whose first fragment was not seen",
    )


def expire_fragments(fw, now: float) -> None:
    flows = fw.frag_flows
    if flows:
        for key in [k for k, (_, until) in flows.items() if until < now]:
            del flows[key]


# --------------------------------------------------------------------------------------------------
# The NAT rewrite of a connection's half. The ASA rewrites both sides at once after its checks;
# netfilter's path splits it as the kernel's NAT hooks do: the destination side in PREROUTING (before
# routing), the source side after POSTROUTING. For ICMP queries the identifier changes with the source
# of the original direction and is given back with the reply's destination.


def retarget(pkt: Packet, dst: int, dport: int) -> None:
    """Send ``pkt`` to ``dst``/``dport`` (an expected connection's destination)."""
    if dst != pkt.dst:
        pkt.set_dst(dst)
    if dport != pkt.dport:
        pkt.set_dport(dport)


def rewrite(half: Half, pkt: Packet) -> None:
    if half.new_src is not None:
        pkt.set_src(half.new_src)
    if half.new_dst is not None:
        pkt.set_dst(half.new_dst)
    if pkt.proto == PROTO_TCP or pkt.proto == PROTO_UDP:
        if half.new_sport is not None:
            pkt.set_sport(half.new_sport)
        if half.new_dport is not None:
            pkt.set_dport(half.new_dport)
    elif half.new_sport is not None and (pkt.version, pkt.icmp_type) in icmp.ICMP_QUERIES:
        pkt.set_icmp_id(half.new_sport)


def rewrite_dst(half: Half, pkt: Packet) -> None:
    if half.new_dst is not None:
        pkt.set_dst(half.new_dst)
    if pkt.proto == PROTO_TCP or pkt.proto == PROTO_UDP:
        if half.new_dport is not None:
            pkt.set_dport(half.new_dport)
    elif half.dir == REPLY and half.new_sport is not None and pkt.proto in (PROTO_ICMP, PROTO_ICMPV6):
        pkt.set_icmp_id(half.new_sport)


def rewrite_src(half: Half, pkt: Packet) -> None:
    if half.new_src is not None:
        pkt.set_src(half.new_src)
    if pkt.proto == PROTO_TCP or pkt.proto == PROTO_UDP:
        if half.new_sport is not None:
            pkt.set_sport(half.new_sport)
    elif half.dir == ORIGINAL and half.new_sport is not None and pkt.proto in (PROTO_ICMP, PROTO_ICMPV6):
        pkt.set_icmp_id(half.new_sport)


def error_dst(half: Half, pkt: Packet) -> None:
    """An ICMP error RELATED to ``half``'s connection, travelling ``half``'s way: its destination and
    the quoted packet's source (RFC 5508), before routing."""
    if half.new_dst is not None:
        pkt.set_dst(half.new_dst)
    if not half.rewrites:
        return
    inner = pkt.inner()
    if half.new_dst is not None:
        inner.set_src(half.new_dst)
    if inner.proto in (PROTO_TCP, PROTO_UDP):
        if half.new_dport is not None:
            inner.set_sport(half.new_dport)
    elif half.dir == REPLY and half.new_sport is not None:
        inner.set_icmp_id(half.new_sport)
    pkt.fix_icmp_checksum()


def error_src(half: Half, pkt: Packet) -> None:
    """The other side of ``error_dst``: the error's source when the peer itself sent it, and the
    quoted packet's destination, after POSTROUTING."""
    if not half.rewrites:
        return
    inner = pkt.inner()
    if half.new_src is not None:
        if pkt.src == inner.dst:
            pkt.set_src(half.new_src)
        inner.set_dst(half.new_src)
    if inner.proto in (PROTO_TCP, PROTO_UDP):
        if half.new_sport is not None:
            inner.set_dport(half.new_sport)
    elif half.dir == ORIGINAL and half.new_sport is not None:
        inner.set_icmp_id(half.new_sport)
    pkt.fix_icmp_checksum()
