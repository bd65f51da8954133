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
    "ip-options": ((46, 0, 65535),),  # RSVP (its messages carry Router Alert)
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
    "ip-options",
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

    def count_inspected(self, engine: str, refused: bool) -> None:
        """One packet through ``inspect <engine>`` (show service-policy's ``packet``) and, when the
        inspection refused it, one ``inspect_<engine>_drops``."""
        self.inspect_packets[engine] += 1
        if refused:
            self.counters[f"inspect_{engine}_drops"] += 1


@dataclass(frozen=True, slots=True)
class Effective:
    """The settings a connection runs with once every service policy is resolved (shared by the
    connections that resolve alike, so never changed).

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
    decrement_ttl: bool = False
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


# At most this many resolved class settings are kept (``ServicePolicies.resolve``); past it the cache
# starts again. A key is one (interfaces, protocol, port, access-list outcomes) combination.
_CACHE_MAX = 4096


def _acl_permits(entries, v, proto, src, sport, dst, dport, itype, icode) -> bool:
    """``match access-list``: the flow's first matching entry is a permit."""
    for permit, cm in entries:
        if cm.matches(v, proto, src, sport, dst, dport, itype, icode):
            return permit
    return False


class ServicePolicies:
    """The configuration's service policies compiled for lookups, with their per-class counters.

    ``resolve`` answers from a cache: what the classes decide depends only on the interfaces (which
    service policies apply), the protocol, the responder's port (``match port``, the default
    inspection ports) and the outcome of the access lists that ``match access-list`` classes name, so
    connections with the same such key share one ``Effective`` (never changed once made). The cache
    belongs to this object: a reload builds a new one, and replacing ``uses`` (a reload carrying the
    counters over) empties it.
    """

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
        self._uses: dict[tuple[str, str, str], ClassUse] = {}
        self.default_counters: Counter = Counter()  # the default normalizer's (no class tcp-map)
        self.default_tcp_map = TcpMap("default")
        # The protocols whose destination port a class can look at: the default inspection ports and
        # ``match port``; for the others the port is left out of the cache key.
        self._port_protos = frozenset(
            {PROTO_TCP, PROTO_UDP}
            | {data[0] for cc in self.classes.values() for kind, data in cc.matchers if kind == "port"}  # type: ignore[index]
        )
        # (ingress, egress) -> (the scopes in precedence order, the access lists their classes match)
        self._plans: dict[tuple[str, str], tuple[tuple, tuple]] = {}
        self._cache: dict[tuple, Effective] = {}
        # The engine's compiled normalizer profiles for these classes' tcp-maps, by (id of the tcp-map,
        # inspected): one per map instead of one per connection (the maps live as long as this object).
        self.profiles: dict[tuple[int, bool], object] = {}

    @property
    def uses(self) -> dict[tuple[str, str, str], ClassUse]:
        """(scope, policy-map, class-map) -> its counters, made when a class first applies."""
        return self._uses

    @uses.setter
    def uses(self, uses: dict[tuple[str, str, str], ClassUse]) -> None:
        self._uses = uses
        self._cache.clear()  # cached settings point at the counters being replaced

    def _use(self, scope: str, pm: PolicyMap, pc: PolicyClass) -> ClassUse:
        key = (scope, pm.name, pc.class_map)
        use = self._uses.get(key)
        if use is None:
            use = self._uses[key] = ClassUse(scope, pm.name, pc.class_map)
        return use

    def _plan(self, in_iface: str, out_iface: str) -> tuple[tuple, tuple]:
        scopes: list[tuple[str, PolicyMap]] = []
        for iface in (in_iface, out_iface):
            pm = self.by_interface.get(iface)
            if pm is not None and all(s != iface for s, _ in scopes):
                scopes.append((iface, pm))
        if self.global_ is not None:
            scopes.append(("global", self.global_))
        acls: list = []
        for _, pm in scopes:
            for pc in pm.classes:
                cc = self.classes.get(pc.class_map)
                if cc is None:
                    continue
                for kind, data in cc.matchers:
                    if kind == "acl" and all(data is not a for a in acls):
                        acls.append(data)
        plan = self._plans[(in_iface, out_iface)] = (tuple(scopes), tuple(acls))
        return plan

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
        refused or intercepted by a limit; ``admitted`` counts it once it is created. The answer is
        shared with the other connections of the same key: never change it.
        """
        plan = self._plans.get((in_iface, out_iface))
        if plan is None:
            plan = self._plan(in_iface, out_iface)
        key: tuple = (in_iface, out_iface, proto, dport if proto in self._port_protos else 0)
        if plan[1]:
            key += tuple(
                _acl_permits(entries, version, proto, src, sport, dst, dport, icmp_type, icmp_code)
                for entries in plan[1]
            )
        eff = self._cache.get(key)
        if eff is None:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            eff = self._cache[key] = self._resolve(
                plan[0], (version, proto, src, sport, dst, dport, icmp_type, icmp_code)
            )
        if count:
            for use in eff.uses:
                use.connections += 1
        return eff

    def _resolve(self, scopes: tuple, key: tuple) -> Effective:
        """Walk the scopes' classes for one flow (``key``: the arguments of ``_CompiledClass.matches``)."""
        proto, dport = key[1], key[5]
        tcp_map = self.default_tcp_map
        tcp_map_use: ClassUse | None = None
        conn: dict[str, object] = {}
        origins: dict[str, Origin] = {}
        set_by: dict[str, ClassUse] = {}
        inspects: tuple[tuple[Inspect, ClassUse], ...] | None = None
        uses: list[ClassUse] = []
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
                    if cs.tcp_map is not None and tcp_map_use is None:
                        tm = self.policy.tcp_maps.get(cs.tcp_map)
                        if tm is not None:
                            tcp_map = tm
                            tcp_map_use = self._use(scope, pm, pc)
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
        conn.pop("tcp_map", None)
        return Effective(
            tcp_map,
            tcp_map_use,
            **conn,  # type: ignore[arg-type]
            inspects=inspects or (),
            uses=tuple(uses),
            origins=origins,
            set_by=set_by,
        )

    @staticmethod
    def admitted(eff: Effective) -> None:
        """A connection with these settings was created: count it in its classes."""
        for use in eff.uses:
            use.connections += 1


def class_config(policy: Policy, use: ClassUse, actions: list[str]) -> list[str]:
    """The configuration lines packet-tracer's CONN-SETTINGS and INSPECT phases print for a class
    application (``use``) and its ``actions`` (``set connection ...``, ``inspect ftp``), laid out as
    the ASA prints them (ASA 9.x packet-tracer output: ``class-map NAME`` with its ``match`` lines
    indented one space, ``policy-map NAME``, `` class NAME`` and the actions indented two spaces, then
    ``service-policy NAME global|interface IFC``)."""
    cm = policy.class_maps.get(use.class_map)
    lines = [f"class-map {use.class_map}"]
    if cm is not None and cm.matches:
        lines += [f" {m.origin.text.strip()}" for m in cm.matches if m.origin.text]
    elif use.class_map == CLASS_DEFAULT:
        lines.append(" match any")
    elif use.class_map == DEFAULT_CLASS:
        lines.append(" match default-inspection-traffic")
    lines += [f"policy-map {use.policy_map}", f" class {use.class_map}"]
    lines += [f"  {a.strip()}" for a in actions]
    scope = "global" if use.scope == "global" else f"interface {use.scope}"
    lines.append(f"service-policy {use.policy_map} {scope}")
    return lines


def connection_lines(policy: Policy, use: ClassUse) -> list[str]:
    """The ``set connection ...`` lines of the class ``use`` applies, as written, in line order."""
    pm = policy.policy_maps.get(use.policy_map)
    for pc in pm.classes if pm is not None else ():
        if pc.class_map == use.class_map and pc.connection is not None:
            seen = sorted({o.line: o.text for o in pc.connection.origins.values() if o.text}.items())
            return [text for _, text in seen]
    return []
