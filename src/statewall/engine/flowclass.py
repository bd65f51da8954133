"""The classification of new flows kept per class: the next first packet of the same class skips the
lookups that would only find the same answers again.

A firewall's session setup asks the same questions of every first packet of a flow: is its address
special, where does its destination untranslate to, which route and egress, what do the access lists
say, which service-policy class and settings, which NAT rule translates its source. For a host that
opens connection after connection to the same server (a browser, a client pool, the bench's short
connections) every answer is the same except the source port, which the rules usually do not look
at. ``FlowClasses`` keeps the answers of the stages before source NAT (``asa.stages``: lookup, the
reverse-path check, UN-NAT, the route, the access lists, the class settings) and the NAT rule that
source NAT found, per class of flow: the ingress interface, the protocol, the addresses, the
destination port, ICMP type and code, and the source port only when some access list, class map or
NAT rule of the policy looks at one (``_reads_source_port``).

It never changes a verdict and never skips what the stages count or log:

* only a class whose stages all let the packet through, and whose flow became a connection, is kept;
  a packet a stage would stop takes the stages every time;
* what depends on state rather than on the configuration is asked every time: an expectation (while
  any is live the cache is not used at all: an FTP data connection may arrive as any class), a live
  dynamic NAT slot owning the destination (UN-NAT by xlate), the TCP flags of the first segment
  (anything but a SYN takes the stages, which refuse it), the NAT port (source NAT allocates per
  flow), the IP options, inspections, tracking, limits and the connection's making (the stages after
  NAT run as always);
* the access decision's hit counters are counted again for every flow (``AclDecision.count_again``)
  and its logged entries log again (106100), with the flow's own ports;
* packet-tracer (``Firewall.trace_log``) takes the stages, which report each phase.

The cache belongs to the compiled policy (``statewall.engine.compiled.REBUILT``): a reload or a
restored snapshot builds a new, empty one, so a changed access list, NAT rule or class applies from
the next first packet on. At most ``MAX`` classes are kept; past it the cache starts again.
"""

from __future__ import annotations

from ..policy import PROTO_TCP
from . import known_syn

MAX = 16_384

_SYN = 0x02
_HANDSHAKE = 0x17  # SYN, ACK, RST, FIN


class FlowClass:
    """What the stages before source NAT found for one class of flow, and the NAT rule (``nat``:
    an entry of ``NatTable``, None for no rule, ``UNKNOWN`` until source NAT has looked)."""

    __slots__ = ("unnat", "real_dst", "real_dport", "egress", "route", "dec", "acl_dst", "acl_dport",
                 "eff", "nat", "key", "syn", "tries")  # fmt: skip

    def __init__(self, c) -> None:
        self.unnat = c.unnat
        self.real_dst = c.real_dst
        self.real_dport = c.real_dport
        self.egress = c.egress
        self.route = c.route
        self.dec = c.dec
        self.acl_dst = c.acl_dst
        self.acl_dport = c.acl_dport
        self.eff = c.eff
        self.nat = UNKNOWN
        self.key = None  # the class's key until it is kept
        self.syn = None  # the template of the class's SYN (statewall.engine.known_syn), once made
        self.tries = 0  # SYNs of the class that tried to become its template


UNKNOWN = object()  # FlowClass.nat before source NAT has looked


def _reads_source_port(policy, nat) -> bool:
    """Does any rule of the policy look at a flow's source port? An access list entry (the access
    groups', class maps' and policy NAT's lists are all access lists), or a NAT rule with a real port,
    a destination service or its own match."""
    for acl in policy.access_lists.values():
        for rule in acl.rules:
            if rule.match.source_ports:
                return True
    return any(
        e.real_port is not None or e.dport_real is not None or e.match is not None or e.selectors is not None
        for e in nat.entries
    )


class FlowClasses:
    """The kept classes of one compiled policy (module docstring)."""

    __slots__ = ("prefix", "rest", "all", "by_sport", "kept", "hits", "misses")

    def __init__(self, stages: tuple, source_nat, policy, nat) -> None:
        i = stages.index(source_nat)
        self.all = stages
        self.prefix = stages[:i]
        self.rest = stages[i:]
        self.by_sport = _reads_source_port(policy, nat)
        self.kept: dict[tuple, FlowClass] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.kept)

    def keep(self, k: FlowClass) -> None:
        """Keep a class whose first flow became a connection: a flow stopped later (a limit, TCP
        Intercept's cookie, a NAT failure) keeps nothing, so that a flood of SYNs from spoofed
        sources, which never become connections under TCP Intercept, fills no table."""
        kept = self.kept
        if len(kept) >= MAX:
            kept.clear()
        kept[k.key] = k
        k.key = None

    def classify(self, c, run, acl_hits):
        """The stages ``c`` still has to run: after its class's kept answers were put into it (the
        ACL's counters and logs counted again by ``acl_hits``), or after the stages before NAT ran
        (and their answers were kept); None when one of them stopped the packet."""
        fw = c.fw
        pkt = c.pkt
        proto = c.proto
        if fw.expect or (proto == PROTO_TCP and pkt.flags & _HANDSHAKE != _SYN):
            return self.all
        key = (c.iface, c.v, proto, pkt.src, pkt.dst, pkt.dport, pkt.sport if self.by_sport else -1,
               c.icmp_type, c.icmp_code)  # fmt: skip
        k = self.kept.get(key)
        if k is None:
            self.misses += 1
            if not run(self.prefix, c):
                return None
            unnat = c.unnat
            if c.exp is None and (unnat is None or unnat[3].entry is not None):
                c.kept = k = FlowClass(c)
                k.key = key  # kept once the flow becomes a connection (``keep``)
            return self.rest
        if k.unnat is None and fw.nat.owns_mapped(c.v, c.iface, pkt.dst):
            return self.all  # a live dynamic NAT slot holds the destination now: UN-NAT finds it
        self.hits += 1
        c.kept = k
        c.unnat = k.unnat
        c.real_dst = k.real_dst
        c.real_dport = k.real_dport
        c.egress = k.egress
        c.route = k.route
        dec = c.dec = k.dec
        c.acl_dst = k.acl_dst
        c.acl_dport = k.acl_dport
        c.eff = k.eff
        if dec is not None:
            dec.count_again(c.v, pkt.src, k.acl_dst)
            if dec.logged:
                acl_hits(c, dec)
        if proto == PROTO_TCP:
            return known_syn.stages_for(self, k, c)
        return self.rest
