"""The modular policy framework: which class a new connection falls into, and what that decides.

Owns the resolution of the ASA's ``class-map`` / ``policy-map`` / ``service-policy`` model (the
dataclasses live in ``statewall.policy``) into one ``Effective`` record per connection: the TCP
normalizer profile (tcp-map), connection limits and timeouts, sequence randomization, DCD and the
inspections. The engine asks once, when it creates a connection; nothing here runs per packet.

How the ASA decides, and how statewall does it:

* A policy map's classes are tried in order; for each *feature* (connection settings, inspection) the
  first matching class that configures the feature wins within that policy map.
* An interface service policy applies to traffic entering or leaving its interface (the connection
  features are bidirectional); the global one to every flow. Precedence: the ingress interface's
  policy, then the egress interface's, then the global one. Connection settings merge per parameter
  (an interface class that sets only ``advanced-options`` keeps the global class's ``conn-max``);
  inspection is taken whole from the first policy with a matching inspecting class.
* ``match default-inspection-traffic`` selects the default ports of every inspection engine, and an
  ``inspect`` in such a class applies only to its own engine's ports (``inspect ftp`` in
  ``class inspection_default`` inspects TCP/21, not DNS).
* Classes match the connection's first packet with real (untranslated) addresses and the responder's
  port; ``match access-list`` selects flows whose first matching entry is a permit.
* Without any matching tcp-map the ASA's default normalizer applies (``TcpMap`` defaults).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .acl import CompiledMatch
from .policy import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    ClassMap,
    ConnectionSettings,
    Inspect,
    Origin,
    Policy,
    PolicyClass,
    PolicyMap,
    TcpMap,
)

# The ASA's default inspection ports (``match default-inspection-traffic``): engine -> (protocol,
# first port, last port) ranges; None as protocol = the engine's own IP protocol (ICMP).
DEFAULT_INSPECTION_TRAFFIC: dict[str, tuple[tuple[int, int, int], ...]] = {
    "ctiqbe": ((PROTO_TCP, 2748, 2748),),
    "dcerpc": ((PROTO_TCP, 135, 135),),
    "dns": ((PROTO_UDP, 53, 53),),
    "ftp": ((PROTO_TCP, 21, 21),),
    "gtp": ((PROTO_UDP, 2123, 2123), (PROTO_UDP, 3386, 3386)),
    "h323 h225": ((PROTO_TCP, 1720, 1720),),
    "h323 ras": ((PROTO_UDP, 1718, 1719),),
    "http": ((PROTO_TCP, 80, 80),),
    "icmp": ((PROTO_ICMP, 0, 0), (PROTO_ICMPV6, 0, 0)),
    "icmp error": ((PROTO_ICMP, 0, 0), (PROTO_ICMPV6, 0, 0)),
    "ils": ((PROTO_TCP, 389, 389),),
    "ipsec-pass-thru": ((PROTO_UDP, 500, 500),),
    "mgcp": ((PROTO_UDP, 2427, 2427), (PROTO_UDP, 2727, 2727)),
    "netbios": ((PROTO_UDP, 137, 138),),
    "pptp": ((PROTO_TCP, 1723, 1723),),
    "radius-accounting": ((PROTO_UDP, 1646, 1646),),
    "rsh": ((PROTO_TCP, 514, 514),),
    "rtsp": ((PROTO_TCP, 554, 554),),
    "sip": ((PROTO_TCP, 5060, 5060), (PROTO_UDP, 5060, 5060)),
    "skinny": ((PROTO_TCP, 2000, 2000),),
    "esmtp": ((PROTO_TCP, 25, 25),),
    "snmp": ((PROTO_UDP, 161, 162),),
    "sqlnet": ((PROTO_TCP, 1521, 1521),),
    "sunrpc": ((PROTO_TCP, 111, 111), (PROTO_UDP, 111, 111)),
    "tftp": ((PROTO_UDP, 69, 69),),
    "xdmcp": ((PROTO_UDP, 177, 177),),
}

# The ASA's factory-default global policy (8.x/9.x): applied when a configuration sets none.
DEFAULT_GLOBAL_POLICY = "global_policy"
DEFAULT_CLASS = "inspection_default"
DEFAULT_INSPECTIONS = (
    "dns",
    "ftp",
    "h323 h225",
    "h323 ras",
    "netbios",
    "rsh",
    "rtsp",
    "skinny",
    "esmtp",
    "sqlnet",
    "sunrpc",
    "tftp",
    "sip",
    "xdmcp",
)
CLASS_DEFAULT = "class-default"  # the class every policy map implicitly has, matching everything

# The DCD retry interval and retry count travel with ``dcd`` (they have values even when unset).
_CONN_FIELDS = tuple(
    f for f in ConnectionSettings.__slots__ if f not in ("origins", "dcd_retry_interval", "dcd_max_retries")
)


def default_port_match(engine: str, proto: int, port: int) -> bool:
    """True when ``proto``/``port`` is one of ``engine``'s default inspection ports."""
    for p, low, high in DEFAULT_INSPECTION_TRAFFIC.get(engine, ()):
        if p == proto and (proto in (PROTO_ICMP, PROTO_ICMPV6) or low <= port <= high):
            return True
    return False


def any_default_port(proto: int, port: int) -> bool:
    return any(default_port_match(engine, proto, port) for engine in DEFAULT_INSPECTION_TRAFFIC)


@dataclass(slots=True)
class ClassUse:
    """Counters of one class as applied by one service policy (``show service-policy``)."""

    scope: str  # "global" or the interface name
    policy_map: str
    class_map: str
    connections: int = 0
    counters: Counter = field(default_factory=Counter)  # normalizer / inspection counters by name
    inspect_packets: Counter = field(default_factory=Counter)  # engine -> packets inspected


@dataclass(slots=True)
class Effective:
    """The settings one connection runs with once every service policy is resolved.

    ``tcp_map`` is never None (the default profile when no class sets one); ``tcp_map_use`` is the
    class application that chose it (None for the default), whose counters the normalizer updates.
    ``inspects`` are the inspections that apply to this flow, each with the class use that chose it.
    ``origins`` name the configuration line behind each connection setting.
    """

    tcp_map: TcpMap
    tcp_map_use: ClassUse | None = None
    conn_max: int = 0
    embryonic_conn_max: int = 0
    per_client_max: int = 0
    per_client_embryonic_max: int = 0
    random_sequence_number: bool = True
    timeout_embryonic: float | None = None  # None: the global ``timeout`` applies
    timeout_idle: float | None = None
    idle_reset: bool = False
    timeout_half_closed: float | None = None
    dcd: bool = False
    dcd_retry_interval: float = 15.0
    dcd_max_retries: int = 5
    inspects: tuple[tuple[Inspect, ClassUse], ...] = ()
    uses: tuple[ClassUse, ...] = ()
    origins: dict[str, Origin] = field(default_factory=dict)
    # The class application that set each connection setting: limits count per class (statewall.limits)
    # and DCD counts its probes there.
    set_by: dict[str, ClassUse] = field(default_factory=dict)

    def inspects_engine(self, engine: str) -> Inspect | None:
        for ins, _ in self.inspects:
            if ins.engine == engine:
                return ins
        return None


class _CompiledClass:
    __slots__ = ("name", "matchers")

    def __init__(self, cm: ClassMap | None, acls: dict[str, list[tuple[bool, CompiledMatch]]]) -> None:
        self.name = cm.name if cm is not None else CLASS_DEFAULT
        # Each matcher: ("any"|"acl"|"port"|"dit", data)
        self.matchers: list[tuple[str, object]] = []
        if cm is None:
            self.matchers.append(("any", None))
            return
        for m in cm.matches:
            if m.kind == "any":
                self.matchers.append(("any", None))
            elif m.kind == "access-list":
                self.matchers.append(("acl", acls.get(m.acl or "", [])))
            elif m.kind == "port":
                self.matchers.append(("port", (m.protocol, m.ports)))
            else:
                self.matchers.append(("dit", None))

    def matches(self, v, proto, src, sport, dst, dport, itype, icode) -> bool:
        if not self.matchers:
            return False
        for kind, data in self.matchers:
            if kind == "any":
                continue
            if kind == "acl":
                hit = False
                for permit, cm in data:  # type: ignore[attr-defined]
                    if cm.matches(v, proto, src, sport, dst, dport, itype, icode):
                        hit = permit
                        break
                if not hit:
                    return False
            elif kind == "port":
                p, ports = data  # type: ignore[misc]
                if proto != p or ports is None or not ports.matches(dport):
                    return False
            elif not any_default_port(proto, dport):
                return False
        return True

    @property
    def default_inspection(self) -> bool:
        return any(kind == "dit" for kind, _ in self.matchers)


class ServicePolicies:
    """The configuration's service policies compiled for lookups, with their per-class counters."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        acls = {
            name: [(r.action == "permit", CompiledMatch(r.match)) for r in acl.rules if not r.inactive]
            for name, acl in policy.access_lists.items()
        }
        self.classes = {name: _CompiledClass(cm, acls) for name, cm in policy.class_maps.items()}
        self.classes[CLASS_DEFAULT] = _CompiledClass(None, acls)
        self.global_: PolicyMap | None = None
        self.by_interface: dict[str, PolicyMap] = {}
        for sp in policy.service_policies:
            pm = policy.policy_maps.get(sp.policy_map)
            if pm is None:
                continue
            if sp.interface is None:
                self.global_ = pm
            else:
                self.by_interface[sp.interface] = pm
        self.uses: dict[tuple[str, str, str], ClassUse] = {}
        self.default_counters: Counter = Counter()  # the default normalizer's (no class tcp-map)
        self.default_tcp_map = TcpMap("default")

    def _use(self, scope: str, pm: PolicyMap, pc: PolicyClass) -> ClassUse:
        key = (scope, pm.name, pc.class_map)
        use = self.uses.get(key)
        if use is None:
            use = self.uses[key] = ClassUse(scope, pm.name, pc.class_map)
        return use

    def resolve(
        self,
        in_iface: str,
        out_iface: str,
        version: int,
        proto: int,
        src: int,
        sport: int,
        dst: int,
        dport: int,
        icmp_type: int = 0,
        icmp_code: int = 0,
        *,
        count: bool = True,
    ) -> Effective:
        """The settings for a new connection (real addresses; ``dport`` the responder's port).

        ``count=False`` leaves the classes' connection counters alone, for a flow that may still be
        refused or intercepted by a limit; ``admitted`` counts it once it is created.
        """
        scopes: list[tuple[str, PolicyMap]] = []
        for iface in (in_iface, out_iface):
            pm = self.by_interface.get(iface)
            if pm is not None and all(s != iface for s, _ in scopes):
                scopes.append((iface, pm))
        if self.global_ is not None:
            scopes.append(("global", self.global_))
        eff = Effective(self.default_tcp_map)
        conn: dict[str, object] = {}
        origins: dict[str, Origin] = {}
        set_by: dict[str, ClassUse] = {}
        inspects: tuple[tuple[Inspect, ClassUse], ...] | None = None
        uses: list[ClassUse] = []
        key = (version, proto, src, sport, dst, dport, icmp_type, icmp_code)
        for scope, pm in scopes:
            conn_done = inspect_done = False
            for pc in pm.classes:
                if conn_done and inspect_done:
                    break
                cc = self.classes.get(pc.class_map)
                if cc is None or not cc.matches(*key):
                    continue
                applied = False
                if not conn_done and pc.connection is not None:
                    conn_done = True
                    applied = True
                    cs = pc.connection
                    for name in _CONN_FIELDS:
                        value = getattr(cs, name)
                        if value is not None and name not in conn:
                            conn[name] = value
                            set_by[name] = self._use(scope, pm, pc)
                            if name in cs.origins:
                                origins[name] = cs.origins[name]
                            if name == "dcd":
                                conn["dcd_retry_interval"] = cs.dcd_retry_interval
                                conn["dcd_max_retries"] = cs.dcd_max_retries
                    if cs.tcp_map is not None and eff.tcp_map_use is None:
                        tm = self.policy.tcp_maps.get(cs.tcp_map)
                        if tm is not None:
                            eff.tcp_map = tm
                            eff.tcp_map_use = self._use(scope, pm, pc)
                if not inspect_done and pc.inspects:
                    chosen = tuple(
                        i
                        for i in pc.inspects
                        if not cc.default_inspection or default_port_match(i.engine, proto, dport)
                    )
                    if chosen:
                        inspect_done = True
                        applied = True
                        if inspects is None:
                            use = self._use(scope, pm, pc)
                            inspects = tuple((i, use) for i in chosen)
                if applied:
                    use = self._use(scope, pm, pc)
                    if use not in uses:
                        uses.append(use)
        for name, value in conn.items():
            if name == "tcp_map":
                continue
            setattr(eff, name, value)
        eff.inspects = inspects or ()
        eff.uses = tuple(uses)
        if count:
            self.admitted(eff)
        eff.origins = origins
        eff.set_by = set_by
        return eff

    @staticmethod
    def admitted(eff: Effective) -> None:
        """A connection with these settings was created: count it in its classes."""
        for use in eff.uses:
            use.connections += 1
