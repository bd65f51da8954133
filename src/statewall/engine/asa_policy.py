"""The ASA's per-connection policy: the modular policy framework's class settings, the TCP normalizer,
MSS rewriting, sequence randomization, connection limits and TCP Intercept.

Owns what a new connection of the ASA's stages gets from its class (``apply_policy``: timeouts, the
tcp-map's normalizer state, randomization; ``inspector_for``: the inspection the class names), the
normalizer's check of each segment (``normalize``, ``expire_held``), the refusal of a flow over a limit
(``limit_refusal``: a drop, or a SYN cookie under TCP Intercept) and TCP Intercept's handshake on the
server side (``intercept_ack``, ``intercepted``, ``intercept_failed``). The state lives in the modules
named: ``statewall.mpf``, ``.normalizer``, ``.seqrand``, ``.limits``, ``.intercept``, ``.threat``.
"""

from __future__ import annotations

from .. import craft, intercept, normalizer, seqrand, threat
from ..conntrack import ORIGINAL, REPLY, Connection, Half
from ..events import DropReason
from ..inspect.dns import DnsInspector
from ..inspect.dns import limits_for as dns_limits
from ..inspect.icmp import IcmpInspector
from ..limits import DENY
from ..nat import Xlate
from ..normalizer import NormState
from ..packet import Packet, decode
from ..policy import PROTO_TCP, Inspection
from ..tcptrack import INVALID, InvalidReason
from . import forward, lifecycle
from .context import drop

TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

# ``set connection`` limit keywords, for the hint of a refused connection (statewall.limits kinds).
LIMIT_KEYWORDS = {
    "conn": "conn-max",
    "embryonic": "embryonic-conn-max",
    "per-client": "per-client-max",
    "per-client-embryonic": "per-client-embryonic-max",
}


def inspector_for(fw, conn: Connection, dport: int, real_dport: int, eff):
    """The FTP inspector a new TCP connection gets, if any.

    With service policies the classes that apply to this very connection decide, so an interface
    service policy's ``inspect ftp`` covers its own interface's traffic only (the ASA's scoping), and
    ``strict`` is that class's. An explicit ``policy.inspections`` list (iptables ``CT --helper``, the
    lab's switches) is by port, as Linux assigns helpers.
    """
    if eff is not None and not fw.policy.inspections:
        ins = eff.inspects_engine("ftp")
        if ins is None:
            return None
        inspection = Inspection("ftp", (real_dport,), ins.strict, ins.origin)
        return fw.inspectors.attach_inspection(conn, inspection)
    return fw.inspectors.attach(conn, dport, real_dport)


def dns_inspector_for(fw, conn: Connection, eff):
    """The DNS inspector a new UDP connection gets when its class says ``inspect dns [MAP]``, if any
    (statewall.inspect.dns)."""
    for ins, use in eff.inspects:
        if ins.engine == "dns":
            return DnsInspector(conn, dns_limits(fw.policy, ins), use)
    return None


def icmp_inspector_for(conn: Connection, eff):
    """The ICMP inspector a new echo connection gets when its class says ``inspect icmp``, if any
    (statewall.inspect.icmp)."""
    for ins, use in eff.inspects:
        if ins.engine == "icmp":
            return IcmpInspector(conn, ins.origin, use)
    return None


def apply_policy(
    fw, conn, iface, egress, pkt, real_dst, real_dport, itype, icode, xl, unnat, eff=None
) -> None:
    """Resolve the new connection's class settings (unless the limits check already did) and give
    a TCP connection its normalizer state and sequence randomization."""
    sp = fw.service_policies
    if eff is None:
        eff = sp.resolve(
            iface, egress, pkt.version, pkt.proto, pkt.src, pkt.sport, real_dst, real_dport, itype, icode
        )
    else:
        sp.admitted(eff)
    conn.mpf = eff
    if not (eff.timeout_embryonic is None and eff.timeout_idle is None and eff.timeout_half_closed is None):
        # The class's timeouts replace the global ones (idle for every protocol).
        conn.tmo = (eff.timeout_embryonic, eff.timeout_idle, eff.timeout_half_closed)
    if conn.proto != PROTO_TCP:
        return
    use = eff.tcp_map_use
    helper = conn.helper  # (a property over the connection's rare fields: read once)
    # One compiled profile per tcp-map (and inspected or not) of these service policies.
    pkey = (id(eff.tcp_map), helper is not None)
    profile = sp.profiles.get(pkey)
    if profile is None:
        profile = sp.profiles[pkey] = normalizer.Profile(
            eff.tcp_map, fw.policy.version, asa=True, inspected=helper is not None
        )
    counters = use.counters if use is not None else sp.default_counters
    conn.norm = norm = NormState(profile, counters, fw.policy.sysopt_tcpmss_minimum, conn)
    if helper is not None:
        ftp = next(((i, u) for i, u in eff.inspects if i.engine == "ftp"), None)
        if ftp is not None:
            norm.inspected = (ftp[0].engine, ftp[1])
    # Randomization is off if the class or either NAT rule (norandomseq) turns it off (seed 002).
    xl_rule = xl.rule if xl is not None else None
    unnat_rule = unnat[3].rule if unnat is not None and unnat[3] is not None else None
    if (
        eff.random_sequence_number
        and (not xl_rule or getattr(xl_rule, "randomseq", True))
        and (not unnat_rule or getattr(unnat_rule, "randomseq", True))
    ):
        shift = seqrand.for_connection(fw.seq_secret, pkt, faults=fw.faults)
        if helper is not None:
            shift.seqadj = helper.seqadj
        conn.seqrand = shift
        fw.shifting = True


def normalize(fw, half: Half, norm: NormState, pkt: Packet, now: float, out, ev, gso_size: int) -> int | None:
    """The tcp-map checks before tracking: None when the segment was dropped or queued, else the
    rewrites made (``normalizer.DID_*``), which ``normalizer.learn`` counts once it is forwarded."""
    refusal = normalizer.check(norm, half.dir, pkt, half.conn.tcp, _ack_offset(half, pkt), now, gso_size)
    if type(refusal) is int:
        return refusal
    if refusal is normalizer.HOLD:
        due = norm.deadline()
        if norm.queued_at == 0.0 or due < norm.queued_at:
            norm.queued_at = due
            fw.timers.schedule(due, norm)
        return None
    _refuse(fw, half, refusal, pkt, now, out, ev)
    return None


def window_varied(fw, half: Half, norm: NormState, pkt: Packet, now: float, out, ev) -> bool:
    """``window-variation drop`` after tracking: True when the segment was dropped and the connection
    ended."""
    refusal = normalizer.window_varied(norm, half.dir, pkt, half.conn.tcp, _ack_offset(half, pkt))
    if refusal is None:
        return False
    _refuse(fw, half, refusal, pkt, now, out, ev)  # this refusal always ends the connection
    return True


def _ack_offset(half: Half, pkt: Packet) -> int:
    """How far the firewall's sequence-number randomisation moved this segment's ack (0 without it)."""
    shift = half.conn.seqrand
    return shift.ack_offset(half.dir, pkt.ack) if shift is not None else 0


def _refuse(fw, half: Half, refusal: normalizer.Refusal, pkt: Packet, now: float, out, ev) -> None:
    """Drop the segment as the normalizer's ``refusal`` says, and end the connection when it asks to."""
    conn = half.conn
    drop(
        fw,
        ev,
        refusal.reason,
        half.in_iface,
        pkt,
        now,
        egress=half.out_iface,
        origin=refusal.origin,
        hint=refusal.hint,
        message=refusal.message,
        detail={**(refusal.detail or {}), "conn": conn.id},
    )
    if refusal.teardown:
        lifecycle.teardown(fw, conn, now, refusal.teardown, half.in_iface, out, ev)


def learn(
    half: Half, norm: NormState, pkt: Packet, done: int, seq: int, plen: int, data: bytes | None
) -> None:
    """A segment the normalizer passed is being forwarded: what it teaches the normalizer, and the
    inspection class's packet count (show service-policy)."""
    if norm.inspected is not None:
        norm.inspected[1].inspect_packets[norm.inspected[0]] += 1
    conn = half.conn
    shift = conn.seqrand
    ack_offset = shift.ack_offset(half.dir, pkt.ack) if shift is not None else 0
    normalizer.learn(norm, half.dir, pkt, conn.tcp, ack_offset, done, seq, plen, data)


def expire_held(fw, norm: NormState, now: float, ev: list) -> None:
    """Out-of-order segments that waited past the tcp-map's queue timeout are dropped."""
    norm.queued_at = 0.0
    conn = norm.conn
    if conn is None or conn.closed:
        return
    for d, held in normalizer.expire(norm, now):
        half = conn.halves[d]
        drop(
            fw,
            ev,
            DropReason.TCP_BUFFER_TIMEOUT,
            half.in_iface,
            held.pkt,
            now,
            egress=half.out_iface,
            origin=norm.profile.tm.origins.get("queue_limit"),
            hint="a longer queue-limit timeout in the tcp-map",
            message=f"out-of-order segment waited {norm.profile.queue_timeout:g} s for earlier data",
            detail={"conn": conn.id},
        )
    due = norm.deadline()
    if due != float("inf"):
        norm.queued_at = due
        fw.timers.schedule(due, norm)


# --------------------------------------------------------------------------------------------------
# Connection limits and TCP Intercept


def nat_rules(xl: Xlate | None, unnat) -> list:
    """The NAT rules a flow uses: its source translation's and the static its destination hit."""
    rules = []
    if xl is not None and xl.rule is not None:
        rules.append(xl.rule)
    static = unnat[3] if unnat else None
    if static is not None:
        rules.append(static.rule)
    return rules


def limit_refusal(fw, iface: str, egress: str, pkt: Packet, verdict, now: float, out, ev) -> None:
    """A limit refused a new flow: drop it (201011/201013) or answer its SYN with a cookie
    (201010/201012)."""
    inbound = fw.interfaces[iface].security_level < fw.interfaces[egress].security_level
    detail = verdict.detail("input" if inbound else "output")
    if verdict.action == DENY:
        drop(
            fw,
            ev,
            DropReason.CONN_LIMIT,
            iface,
            pkt,
            now,
            egress=egress,
            origin=verdict.origin,
            hint=f"a higher {LIMIT_KEYWORDS[verdict.kind]} than {verdict.limit}",
            message=f"{verdict.kind} limit {verdict.limit} reached ({verdict.count} connections)",
            detail=detail,
        )
        if fw.threat is not None:
            fw.threat.drop(threat.CONN_LIMIT, now, ev)
        return
    synack = fw.intercept.answer(pkt, now, fw.policy.sysopt_tcpmss, fw.policy.sysopt_tcpmss_minimum)
    out.append((iface, synack))
    drop(
        fw,
        ev,
        DropReason.INTERCEPT,
        iface,
        pkt,
        now,
        egress=egress,
        origin=verdict.origin,
        message=f"{verdict.kind} limit {verdict.limit} reached: answered with a SYN cookie",
        detail=detail,
    )
    if fw.threat is not None:
        fw.threat.drop(threat.SYN_ATTACK, now, ev)


def intercept_ack(fw, iface: str, pkt: Packet, now: float, out: list, ev: list) -> bool:
    """A bare ACK with no connection while cookies are out: True when TCP Intercept took it."""
    ic = fw.intercept
    idx = ic.validate(pkt, now)
    if idx is None:
        if not ic.aimed_at(pkt.version, pkt.dst, pkt.dport, now):
            return False  # a stray ACK elsewhere: the ordinary no-connection drop
        drop(
            fw,
            ev,
            DropReason.INTERCEPT_INVALID,
            iface,
            pkt,
            now,
            message="ACK without a valid SYN cookie towards a destination under TCP Intercept",
        )
        return True
    syn = decode(ic.client_syn(pkt, idx))
    half = fw.new_flow(iface, syn, now, out, ev, validated=True)
    if half is None:
        # The client believes it is connected: tell it the connection was refused after all.
        out.append((iface, craft.tcp_reset_for(pkt)))
        return True
    conn = half.conn
    forward.established(fw, half, syn, now, out, ev, 0, first=True)
    if conn.closed:
        return True
    policy = fw.policy
    told = intercept.advertised_mss(
        intercept.MSS_TABLE[pkt.version][idx], policy.sysopt_tcpmss, policy.sysopt_tcpmss_minimum
    )
    cookie = (pkt.ack - 1) & 0xFFFFFFFF
    intercept.prepare(conn, intercept.Pending(cookie, bytes(pkt.buf[: pkt.total_len]), told))
    fw.shifting = True
    return True


def intercepted(fw, half: Half, pkt: Packet, now: float, out: list, ev: list) -> bool:
    """A segment of a connection TCP Intercept opened whose server has not answered yet; True when
    it was consumed here."""
    conn = half.conn
    flags = pkt.flags
    if half.dir == ORIGINAL:
        if flags & TCP_RST:
            return False  # the client gives up: its RST goes on to the server
        drop(
            fw,
            ev,
            DropReason.INTERCEPT,
            half.in_iface,
            pkt,
            now,
            egress=half.out_iface,
            message="the server has not answered TCP Intercept's SYN yet",
            detail={"conn": conn.id},
        )
        return True
    if flags & TCP_RST:
        pending = conn.intercept
        conn.intercept = None
        out.append(intercept.client_reset(conn, pending))
        fw.intercept.stats["server_failures"] += 1
        lifecycle.teardown(fw, conn, now, "Flow terminated by TCP Intercept", half.in_iface, out, ev)
        return True
    if flags & (TCP_SYN | TCP_ACK) != TCP_SYN | TCP_ACK:
        drop(
            fw,
            ev,
            DropReason.INTERCEPT_INVALID,
            half.in_iface,
            pkt,
            now,
            egress=half.out_iface,
            message="the server sent something other than a SYN-ACK to TCP Intercept's SYN",
            detail={"conn": conn.id},
        )
        return True
    norm = conn.norm
    done = 0
    if norm is not None:
        done = normalize(fw, half, norm, pkt, now, out, ev, 0)
        if done is None:
            return True
    shift = conn.seqrand
    verdict, why = conn.tcp.packet(REPLY, pkt, fw.ct, ack_offset=shift.ack_offset(REPLY, pkt.ack))
    if verdict == INVALID:
        # The ASA's words, never conntrack's (TCP Intercept is the ASA's alone). The normalizer has
        # refused a SYN-ACK not acknowledging the SYN (tcp-ack-syn-diff); an acknowledgment beyond
        # what was sent is the tcp-map's invalid ACK (Cisco ASA configuration guide, invalid-ack: an
        # ACK number greater than the next sequence number to be sent); anything else the tracker
        # refuses here fails the handshake, as forward.established names a segment refused before
        # the handshake completed.
        over = why is not None and why.kind is InvalidReason.ACK_OVER
        reason = DropReason.TCP_INVALID_ACK if over else DropReason.TCP_3WHS_FAILED
        drop(
            fw,
            ev,
            reason,
            half.in_iface,
            pkt,
            now,
            egress=half.out_iface,
            message=reason.description,
            detail={"conn": conn.id},
        )
        return True
    if norm is not None:
        if norm.profile.window_drop and window_varied(fw, half, norm, pkt, now, out, ev):
            return True
        learn(
            half, norm, pkt, done, pkt.seq, pkt.payload_len, None
        )  # the SYN-ACK ends here: the splice answers it
    ack, update = intercept.splice(conn, pkt)
    forward.established(fw, conn.halves[ORIGINAL], decode(ack), now, out, ev, 0)
    if not conn.closed:
        forward.established(fw, half, decode(update), now, out, ev, 0)
    return True


def intercept_failed(fw, conn: Connection, due: float, out: list, ev: list) -> None:
    """The server never answered the SYN TCP Intercept sent for a validated client."""
    pending = conn.intercept
    conn.intercept = None
    out.append(intercept.client_reset(conn, pending))
    fw.intercept.stats["server_failures"] += 1
    lifecycle.teardown(fw, conn, due, "Flow terminated by TCP Intercept", None, out, ev)
