"""The per-packet context of the engine: what one packet's trip returns, and the one place a drop is made.

Owns ``Result`` (packets to send and events), ``drop`` (the only function that sets a drop reason: it
counts the reason in ``Firewall.drops`` — what ``show asp drop`` prints — and appends the ``Drop``
event the logs, JSON and reports are made from, so the two can never disagree) and ``NewFlow``, the
context a new flow's stages share (``statewall.engine.asa``): each stage reads what the stages before
it found and records its own answer there, and reports its phase to packet-tracer when one is listening.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..events import Drop, DropReason, Event
from ..packet import Packet, addr_to_str
from ..policy import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, Origin


class Result(NamedTuple):
    packets: list[tuple[str, bytearray]]
    events: list[Event]


# Result(out, ev) without the generated __new__ (per packet).
new_result = tuple.__new__

# Event text: the codec's formatter (same text as ipaddress, without building an object per call).
addr_str = addr_to_str


def drop(
    fw,
    ev: list,
    reason: DropReason,
    iface: str | None,
    pkt: Packet | None,
    now: float,
    *,
    egress: str | None = None,
    acl: str | None = None,
    origin: Origin | None = None,
    hint: str | None = None,
    message: str = "",
    detail: dict | None = None,
    about: tuple[int, int, int, int] | None = None,
) -> None:
    """Drop ``pkt`` for ``reason``: counted once (``fw.drops``, ``show asp drop``) and one ``Drop`` event.
    Without a decoded packet, ``about`` may give (IP version, protocol, source, destination) for the
    event (a packet refused before decode: a bad header checksum, a fragment)."""
    fw.drops[reason] += 1
    fw.stats["dropped"] += 1
    if pkt is None:
        if about is not None:
            v, proto, src, dst = about
            ev.append(
                Drop(now, reason, iface, protocol=proto, src=addr_str(v, src), dst=addr_str(v, dst),
                     message=message, detail=detail or {})
            )  # fmt: skip
            return
        ev.append(Drop(now, reason, iface, message=message, detail=detail or {}))
        return
    v = pkt.version
    proto = pkt.proto
    is_icmp = proto in (PROTO_ICMP, PROTO_ICMPV6)
    # The connection the packet belongs to, when it belongs to one (events.jsonl's conn_id on drops).
    half = fw.conns.by_key.get((v, proto, pkt.src, pkt.sport, pkt.dst, pkt.dport))
    ev.append(
        Drop(
            now,
            reason,
            iface,
            protocol=proto,
            src=addr_str(v, pkt.src),
            sport=pkt.sport if not is_icmp else 0,
            dst=addr_str(v, pkt.dst),
            dport=pkt.dport if not is_icmp else 0,
            tcp_flags=pkt.flags if proto == PROTO_TCP else None,
            icmp_type=pkt.icmp_type if is_icmp else None,
            icmp_code=pkt.icmp_code if is_icmp else None,
            egress=egress,
            acl=acl,
            origin=origin,
            hint=hint,
            message=message,
            detail=detail or {},
            conn_id=half.conn.id if half is not None else None,
        )
    )


class NewFlow:
    """One packet that starts a flow, on its way through the new-flow stages of its dialect.

    The stages fill it in order: ``exp`` (an expectation it fulfils), ``unnat`` and ``real_dst``/
    ``real_dport`` (UN-NAT), ``route``/``egress``, ``dec`` (the access decision), ``xl``/``created``/
    ``msrc``/``msport`` (source NAT), ``trk`` (the TCP tracker its first segment started), ``eff`` and
    ``admission`` (the class settings and the limits' admission), ``oneway`` (the connection will be
    unidirectional: the ASA's ICMP without inspection, ``statewall.engine.asa.stateless``), then
    ``half``: the new connection's ORIGINAL half, set by the last stage. ``kept``: the flow's class when
    the stages before NAT were answered from (or kept in) ``statewall.engine.flowclass``.
    """

    __slots__ = (
        "fw", "iface", "pkt", "now", "out", "ev", "validated", "trace", "stage", "itf", "v", "proto",
        "icmp_type", "icmp_code", "exp", "unnat", "real_dst", "real_dport", "egress", "route", "dec",
        "acl_dst", "acl_dport", "xl", "created", "msrc", "msport", "trk", "eff", "admission", "half", "kept",
        "oneway",
    )  # fmt: skip

    def __init__(self, fw, iface: str, pkt: Packet, now: float, out: list, ev: list, validated: bool) -> None:
        self.fw = fw
        self.iface = iface
        self.pkt = pkt
        self.now = now
        self.out = out
        self.ev = ev
        self.validated = validated
        self.trace = fw.trace_log
        self.stage = None
        self.itf = fw.interfaces[iface]
        self.v = pkt.version
        proto = self.proto = pkt.proto
        icmp = proto in (PROTO_ICMP, PROTO_ICMPV6)
        self.icmp_type = pkt.icmp_type if icmp else 0
        self.icmp_code = pkt.icmp_code if icmp else 0
        self.exp = self.unnat = self.route = self.egress = self.dec = self.xl = None
        self.real_dst = pkt.dst
        self.real_dport = pkt.dport
        self.acl_dst = self.acl_dport = None
        self.created = self.oneway = False
        self.msrc = pkt.src
        self.msport = pkt.sport
        self.trk = self.eff = self.admission = self.half = self.kept = None

    def report(
        self,
        ok: bool,
        info: str,
        *,
        subtype: str = "",
        origin: Origin | None = None,
        phase=None,
        config: list[str] | None = None,
        lookup: Lookup | None = None,
    ):
        """The running stage's answer, for packet-tracer (nothing is kept unless it listens). A stage
        reports under its own ``phase``; a stage that takes two decisions names the second one's.
        ``config``: the configuration lines the ASA prints under Config, when they are not just
        ``origin``'s line (a class with its policy map and service policy); ``lookup``: the rule the
        ``detailed`` form prints under "Forward Flow based lookup yields rule:"."""
        if self.trace is not None:
            self.trace.append((phase or self.stage.phase, subtype, ok, origin, info, config, lookup))

    def drop(self, reason: DropReason, **kw) -> None:
        drop(self.fw, self.ev, reason, self.iface, self.pkt, self.now, **kw)


@dataclass(slots=True)
class Lookup:
    """The classifier rule a phase's decision came from, as packet-tracer's ``detailed`` form prints
    it (``in  id=0x..., priority=13, domain=permit, deny=false`` and its match lines). ``domain`` and
    ``priority`` are the ASA's (from real outputs, ``statewall.logfmt.tracer``); ``key`` is what the
    printed id is derived from (the ASA prints a memory address: statewall a stable hash of it);
    ``src``/``dst`` are (address, mask, port) as text; ``flags`` the words the ASA prints between
    ``cs_id`` and ``flags=`` (``use_real_addr``, ``reverse``)."""

    domain: str
    priority: int
    key: str
    deny: bool = False
    hits: int = 0
    protocol: int = 0
    src: tuple[str, str, int] = ("0.0.0.0", "0.0.0.0", 0)
    dst: tuple[str, str, int] = ("0.0.0.0", "0.0.0.0", 0)
    flags: tuple[str, ...] = ()
    input_ifc: str = "any"
    output_ifc: str = "any"
    direction: str = "in"
    user_data: bool = False


def stage(phase: str, *also: str):
    """Mark a function as a pipeline stage reporting under ``phase`` (packet-tracer's Type) and,
    for a stage that also decides something else on the way, the other phases it may report."""

    def mark(fn):
        fn.phase = phase
        fn.phases = (phase, *also)
        return fn

    return mark


def run(stages, ctx) -> bool:
    """Run ``stages`` in order over ``ctx``; False as soon as one stops the packet (it dropped, answered
    or queued it), True when every stage let it through."""
    for st in stages:
        ctx.stage = st
        if not st(ctx):
            return False
    return True
