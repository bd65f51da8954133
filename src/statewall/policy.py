"""The neutral policy model: what the firewall enforces, free of any configuration dialect.

Each dialect (``statewall.dialects.asa``, later ``statewall.dialects.iptables``) parses its text into a
``Policy`` and prints a ``Policy`` back; the engine only ever sees these dataclasses. Every element
remembers where it came from (``Origin``: file, line, text) so that logs, ``packet-tracer`` and drop
explanations can quote the configuration line responsible.

Addresses are ``ipaddress`` objects here (configuration time); the engine converts them to integers once
when it compiles the policy.

Tunables carry the name a user would type and their default in one place (see ``Timeouts`` and
``ConntrackSettings``), as netfilter does with its sysctls.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

# IP protocol numbers used throughout.
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a policy element came from: ``file:line`` and the line's text (prompt stripped)."""

    file: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


BUILTIN = Origin("<builtin>", 0, "")


# --------------------------------------------------------------------------------------------------
# Interfaces and routes


@dataclass(slots=True)
class Interface:
    """A firewall interface. ``name`` is the logical name (ASA ``nameif``), ``hardware`` the port."""

    name: str
    hardware: str = ""
    security_level: int = 0
    ipv4: list[ipaddress.IPv4Interface] = field(default_factory=list)
    ipv6: list[ipaddress.IPv6Interface] = field(default_factory=list)
    mtu: int = 1500
    speed: str | None = None
    duplex: str | None = None
    shutdown: bool = False
    description: str | None = None
    origin: Origin = BUILTIN
    # ASA failover standby address of the primary IPv4 address (``ip address A M standby S``).
    standby_ipv4: ipaddress.IPv4Address | None = None
    # IPv6 processing with only a link-local address (ASA ``ipv6 enable``).
    ipv6_enable: bool = False
    # A management-only interface accepts traffic to the box but forwards none through it.
    management_only: bool = False
    vlan: int | None = None  # 802.1Q tag of a subinterface
    # Where the IPv4 address comes from when it is not configured: ASA ``ip address dhcp [setroute]`` or
    # ``ip address pppoe [setroute]``. The address is then unknown to statewall (not modelled).
    address_source: str | None = None
    # Interface sub-commands kept as written (link aggregation, routing protocol timers, ...), in order.
    other: list[tuple[Origin, str]] = field(default_factory=list)

    def addresses(self) -> list[IPInterface]:
        return [*self.ipv4, *self.ipv6]


@dataclass(slots=True)
class Route:
    """A static route: ``network`` reached through ``interface`` via ``gateway`` (None = connected)."""

    interface: str
    network: IPNetwork
    gateway: IPAddress | None = None
    distance: int = 1
    origin: Origin = BUILTIN
    # ASA ``track N`` / ``tunneled`` as written: kept and printed back, not acted on (not modelled).
    option: str | None = None


# --------------------------------------------------------------------------------------------------
# Matching


@dataclass(frozen=True, slots=True)
class PortMatch:
    """A port condition: ``op`` is one of eq, neq, lt, gt, range (inclusive ``low``..``high``)."""

    op: Literal["eq", "neq", "lt", "gt", "range"]
    low: int
    high: int | None = None

    def matches(self, port: int) -> bool:
        op = self.op
        if op == "eq":
            return port == self.low
        if op == "neq":
            return port != self.low
        if op == "lt":
            return port < self.low
        if op == "gt":
            return port > self.low
        return self.low <= port <= (self.high if self.high is not None else self.low)


@dataclass(frozen=True, slots=True)
class Match:
    """A dialect-free packet condition. Empty tuples / None mean "any".

    ``protocol`` None means any IP protocol (ASA ``ip``). Address lists match if any network
    contains the address; ``*_negate`` inverts the whole list (iptables ``!``). ``icmp_type`` /
    ``icmp_code`` apply to ICMP and ICMPv6. ``tcp_flags`` is (mask, compare) as in
    ``--tcp-flags mask comp``. ``ctstates`` holds conntrack states (NEW, ESTABLISHED, RELATED,
    INVALID, UNTRACKED). ``in_interface`` / ``out_interface`` name interfaces; a trailing ``+`` matches
    every name with that prefix (iptables ``-i eth+``). The later ``*_negate`` flags invert one
    condition each, as iptables' ``!`` does: the port list, the flag test, the ICMP type, the state set,
    an interface.
    """

    protocol: int | None = None
    protocol_negate: bool = False
    sources: tuple[IPNetwork, ...] = ()
    source_negate: bool = False
    destinations: tuple[IPNetwork, ...] = ()
    destination_negate: bool = False
    source_ports: tuple[PortMatch, ...] = ()
    destination_ports: tuple[PortMatch, ...] = ()
    icmp_type: int | None = None
    icmp_code: int | None = None
    tcp_flags: tuple[int, int] | None = None
    ctstates: frozenset[str] = frozenset()
    in_interface: str | None = None
    out_interface: str | None = None
    family: Literal[4, 6] | None = None
    in_interface_negate: bool = False
    out_interface_negate: bool = False
    source_ports_negate: bool = False
    destination_ports_negate: bool = False
    tcp_flags_negate: bool = False
    icmp_negate: bool = False
    ctstates_negate: bool = False


# --------------------------------------------------------------------------------------------------
# Access control


@dataclass(slots=True)
class NetworkObject:
    """A named set of addresses (ASA ``object network`` / ``object-group network``, an ipset).

    ``members`` keep the definition as written so that it prints back: each is a network, an
    inclusive (first, last) address range, or the name of another ``NetworkObject`` (nested group).
    ``networks`` is the flattened result (ranges summarised, nested groups expanded), which is what
    matching uses.
    """

    name: str
    group: bool = False  # True for an object-group, False for a single object
    members: list[IPNetwork | tuple[IPAddress, IPAddress] | str] = field(default_factory=list)
    networks: list[IPNetwork] = field(default_factory=list)
    description: str | None = None
    origin: Origin = BUILTIN
    # ASA ``fqdn [v4|v6] NAME``: addresses known only by resolving NAME (not modelled: no networks).
    fqdn: str | None = None


@dataclass(slots=True)
class AccessRule:
    """One access-control entry. ``action`` is permit or deny; ``log`` asks for a per-hit log.

    ``source_object`` / ``destination_object`` name the ``NetworkObject`` the match's addresses were
    taken from (None when written inline), so that the rule prints back as written; ``interface NAME``
    (with the blank) when they are an interface's own addresses (ASA 9.x ``interface NAME``).
    """

    acl: str
    action: Literal["permit", "deny"]
    match: Match
    log: bool = False
    log_level: int | None = None
    log_interval: int | None = None
    remark: str | None = None
    inactive: bool = False
    origin: Origin = BUILTIN
    source_object: str | None = None
    destination_object: str | None = None
    # Object names an ASA entry was written with, so that it prints back as written: the protocol
    # position (``object-group NAME`` / ``object NAME``: a protocol or service group, a service object),
    # the port positions (a port group), the ICMP type position (an icmp-type group), each as
    # "object-group NAME" or "object NAME".
    protocol_object: str | None = None
    source_ports_object: str | None = None
    destination_ports_object: str | None = None
    icmp_object: str | None = None
    # ``time-range NAME``: the entry is active only during that time range (see ``TimeRange``).
    time_range: str | None = None
    # An entry written with groups matches their combinations; the ASA expands it into elements, and so
    # does the model: one AccessRule per element, all with the same origin, ``element`` 0, 1, 2, ...
    # (only element 0 is printed back).
    element: int = 0


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """One service a service object or group stands for: a protocol (None: any IP protocol) with its
    source and destination ports (TCP/UDP/SCTP) or ICMP type and code."""

    protocol: int | None = None
    source_ports: tuple[PortMatch, ...] = ()
    destination_ports: tuple[PortMatch, ...] = ()
    icmp_type: int | None = None
    icmp_code: int | None = None


@dataclass(slots=True)
class ServiceObject:
    """A named set of services (ASA ``object service``, ``object-group service|protocol|icmp-type``).

    ``kind`` says where an access-list entry may name it: ``service`` (object service and service
    groups: the protocol position), ``protocol`` (protocol groups), ``port`` (``object-group service
    NAME tcp|udp|tcp-udp``: a port position; ``port_protocol`` is that protocol), ``icmp-type`` (the
    ICMP type position). ``members`` are the lines as written (for printing back); ``entries`` the
    flattened services, nested groups expanded.
    """

    name: str
    kind: Literal["service", "protocol", "port", "icmp-type"]
    group: bool = True
    port_protocol: str | None = None
    members: list[str] = field(default_factory=list)
    entries: list[ServiceEntry] = field(default_factory=list)
    description: str | None = None
    origin: Origin = BUILTIN


@dataclass(slots=True)
class TimeRange:
    """``time-range NAME`` with its ``absolute`` / ``periodic`` lines as written."""

    name: str
    lines: list[str] = field(default_factory=list)
    origin: Origin = BUILTIN


@dataclass(slots=True)
class AccessList:
    """An ordered list of rules. ``kind`` standard lists (ASA) match the destination address only."""

    name: str
    rules: list[AccessRule] = field(default_factory=list)
    remarks: list[tuple[int, str, Origin]] = field(default_factory=list)  # (index before rule, text)
    kind: Literal["extended", "standard"] = "extended"


@dataclass(slots=True)
class AccessGroup:
    """Binds an access list to an interface in a direction (``in``/``out``) or globally."""

    acl: str
    interface: str | None  # None = global
    direction: Literal["in", "out"] = "in"
    origin: Origin = BUILTIN


# --------------------------------------------------------------------------------------------------
# NAT


@dataclass(slots=True)
class NatPool:
    """A set of mapped addresses (ASA ``global``): ``interface`` True means the egress address (PAT).

    Ranges of several addresses are handed out one address per host (dynamic NAT) until none is
    left; single addresses and the interface are then shared by port (PAT fallback), as the ASA does
    with a ``global`` range beside a ``global`` host or ``interface``, and with an 8.3+ mapped object
    holding ranges and hosts. ``pat_pool`` (8.3+ ``pat-pool``) shares every address by port instead;
    ``round_robin`` gives a new host the next address rather than the first with a free port (a host
    keeps its address while it has translations); ``flat`` allocates from 1024-65535 whatever the
    real port (``include_reserve``: 1-65535) instead of the real port's range class.
    """

    interface: bool = False
    addresses: list[IPNetwork] = field(default_factory=list)  # host or range expanded to networks
    ranges: list[tuple[IPAddress, IPAddress]] = field(default_factory=list)
    pat: bool = True
    pat_pool: bool = False
    round_robin: bool = False
    flat: bool = False
    include_reserve: bool = False
    # ``pat-pool OBJ block-allocation``: each real host gets blocks of ports (``PortBlockSettings``).
    block_allocation: bool = False


@dataclass(slots=True)
class NatRule:
    """A translation rule in the neutral form.

    kind:
      - ``dynamic``: sources in ``real`` arriving on ``real_interface`` leaving by ``mapped_interface``
        (None = any) are translated to ``pool`` (PAT when the pool is an interface or ``pool.pat``).
      - ``static``: one-to-one ``real`` <-> ``mapped`` (hosts or equal-size networks), optionally
        for one protocol and port (``real_port`` <-> ``mapped_port``: static PAT / port redirection).
      - ``exempt``: matching traffic is not translated (ASA ``nat 0 access-list``).
    ``nat_id`` is the ASA 8.2 NAT id tying ``nat`` to ``global``. ``match`` restricts the rule
    further (policy NAT, twice NAT destination). ``acl`` names an access list whose permit rules select
    the traffic instead of ``real`` (ASA ``nat 0 access-list``, policy NAT). A static rule whose mapped
    side is the egress interface's address has an empty ``mapped`` and ``pool.interface`` True. Limits
    are ASA ``nat`` line options (``udp_max_conns`` for UDP, the others for TCP).
    """

    kind: Literal["dynamic", "static", "exempt"]
    real_interface: str
    mapped_interface: str | None
    real: tuple[IPNetwork, ...] = ()
    mapped: tuple[IPNetwork, ...] = ()
    pool: NatPool | None = None
    protocol: int | None = None
    real_port: int | None = None
    mapped_port: int | None = None
    match: Match | None = None
    nat_id: int | None = None
    max_conns: int = 0
    embryonic_limit: int = 0
    randomseq: bool = True
    origin: Origin = BUILTIN
    pool_origins: tuple[Origin, ...] = ()
    acl: str | None = None
    udp_max_conns: int = 0
    # ASA 8.3+ NAT (object NAT and twice NAT). ``section`` orders the NAT table as the ASA does: 1 manual
    # (twice) rules in configuration order, 2 object NAT (statics before dynamics, then fewer real
    # addresses, lower address, object name), 3 manual rules after ``after-auto``; 0 is an ASA 8.2 rule.
    # ``real_object`` names the object the real side came from (object NAT: the object holding the
    # rule), ``mapped_object`` the mapped side's (None: inline address, ``interface`` or ``any``).
    section: int = 0
    real_object: str | None = None
    mapped_object: str | None = None
    # Twice NAT's destination: packets to ``destination_mapped`` go to ``destination_real`` (``destination
    # static MAPPED REAL``); the ports of its ``service`` objects likewise. ``destination_interface``: the
    # mapped destination is the real interface's address (the packet arrives there addressed to it).
    destination_real: tuple[IPNetwork, ...] = ()
    destination_mapped: tuple[IPNetwork, ...] = ()
    destination_real_object: str | None = None
    destination_mapped_object: str | None = None
    destination_interface: bool = False
    destination_real_port: int | None = None
    destination_mapped_port: int | None = None
    real_service: str | None = None  # ``service REAL MAPPED`` object names, printed back as written
    mapped_service: str | None = None
    interface_ipv6: bool = False  # ``interface ipv6``: the interface's IPv6 address is the mapped one
    # Options: a ``unidirectional`` static only translates connections its real side starts; ``dns``
    # (DNS reply rewriting) is kept but not acted on; ``inactive`` rules do nothing.
    unidirectional: bool = False
    no_proxy_arp: bool = False
    route_lookup: bool = False
    net_to_net: bool = False
    dns: bool = False
    inactive: bool = False
    description: str | None = None


# --------------------------------------------------------------------------------------------------
# Timeouts and tunables


@dataclass(slots=True)
class Timeouts:
    """Global idle timeouts in seconds (ASA ``timeout`` command). 0 means never.

    Defaults are the ASA's (reference A.3): conn 1:00:00, half-closed 0:10:00, embryonic 0:00:30,
    udp 0:02:00, icmp 0:00:02, xlate 3:00:00, pat-xlate 0:00:30.
    """

    conn: float = 3600.0
    half_closed: float = 600.0
    embryonic: float = 30.0
    udp: float = 120.0
    icmp: float = 2.0
    xlate: float = 10800.0
    pat_xlate: float = 30.0
    sunrpc: float = 600.0
    h323: float = 300.0
    # Freed TCP slots linger after a normal close before the tuple can be reused (ASA ~60 s is
    # internal; it is not a configurable timeout, so it is not printed back).
    tcp_linger: float = 0.0
    origins: dict[str, Origin] = field(default_factory=dict)
    # Dialect timeouts statewall does not act on (ASA sip, mgcp, uauth, ...), keyword -> value as the
    # dialect prints it, kept so that they print back.
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ConntrackSettings:
    """netfilter-style tunables, named as the sysctl without the ``nf_conntrack_`` prefix.

    Defaults are Linux's (reference B.1/B.2). Used by the Linux-dialect tracker; the ASA dialect keeps
    the defaults.
    """

    tcp_be_liberal: bool = False
    tcp_loose: bool = True
    tcp_ignore_invalid_rst: bool = False
    tcp_max_retrans: int = 3
    # nf_conntrack_max: the table's bound. Linux sizes it from memory (nf_conntrack_init_start,
    # nf_conntrack_core.c): 262144 on a 64-bit machine with more than 4 GB, 65536 with more than 1 GB.
    # The ASA's stages use the platform's connection limit instead (engine.compiled.ASA_CONN_MAX)
    # unless this is set explicitly. 0: no bound.
    max: int = 262144
    checksum: bool = True
    tcp_timeout_syn_sent: float = 120.0
    tcp_timeout_syn_recv: float = 60.0
    tcp_timeout_established: float = 432000.0
    tcp_timeout_fin_wait: float = 120.0
    tcp_timeout_close_wait: float = 60.0
    tcp_timeout_last_ack: float = 30.0
    tcp_timeout_time_wait: float = 120.0
    tcp_timeout_close: float = 10.0
    tcp_timeout_max_retrans: float = 300.0
    tcp_timeout_unacknowledged: float = 300.0
    udp_timeout: float = 30.0
    udp_timeout_stream: float = 120.0
    icmp_timeout: float = 30.0
    origins: dict[str, Origin] = field(default_factory=dict)
    # ``nf_conntrack_helper``: attach helpers by port without a ``CT --helper`` rule (reference B.3).
    # Kernels before 4.7 defaulted to 1; later ones to 0, and 6.0 removed the switch.
    helper: bool = False


@dataclass(slots=True)
class DefragSettings:
    """Linux fragment reassembly tunables, named as the sysctls (defaults: net/ipv4/ip_fragment.c,
    net/ipv6/netfilter/nf_conntrack_reasm.c). IPv4 conntrack defragmentation uses the host's IPv4
    reassembly settings; IPv6 has its own ``nf_conntrack_frag6_*``. Used by the iptables dialect.
    """

    ipfrag_time: float = 30.0  # net.ipv4.ipfrag_time
    ipfrag_high_thresh: int = 4 * 1024 * 1024  # net.ipv4.ipfrag_high_thresh
    # net.ipv4.ipfrag_max_dist: fragments from one source between two of the same datagram before its
    # queue is started again (ip_frag_too_far); 0 turns the check off.
    ipfrag_max_dist: int = 64
    frag6_timeout: float = 60.0  # net.netfilter.nf_conntrack_frag6_timeout
    frag6_high_thresh: int = 4 * 1024 * 1024  # net.netfilter.nf_conntrack_frag6_high_thresh
    origins: dict[str, Origin] = field(default_factory=dict)


@dataclass(slots=True)
class PortBlockSettings:
    """The ASA's PAT port block allocation (``xlate block-allocation size N`` 1-4096 ports per block,
    default 512; ``xlate block-allocation maximum-per-host N`` 1-8 blocks, default 4; Cisco ASA command
    reference, ``xlate block-allocation``), for ``pat-pool OBJ block-allocation`` rules.
    ``interim_logging`` (``pba-interim-logging SECONDS``): each block held is logged again (305017)
    every SECONDS."""

    size: int = 512
    max_per_host: int = 4
    interim_logging: int | None = None
    origins: dict[str, Origin] = field(default_factory=dict)


@dataclass(slots=True)
class FragmentSettings:
    """The ASA's fragment database limits for an interface (``fragment size|chain|timeout N [ifc]``;
    Cisco ASA command reference, ``fragment``): ``size`` fragments may wait for reassembly (1-30000),
    a datagram may come in ``chain`` fragments (1-8200), and must be complete ``timeout`` seconds after
    its first fragment (1-30). ``origins`` names the line that set each field.
    """

    size: int = 200
    chain: int = 24
    timeout: int = 5
    origins: dict[str, Origin] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Modular policy framework (ASA class-map / policy-map / tcp-map / service-policy)


@dataclass(slots=True)
class ClassMatch:
    """One ``match`` of a traffic class.

    kind ``any``; ``access-list`` (``acl`` names the list; its permit entries select the flow);
    ``port`` (``protocol`` tcp/udp and ``ports``, e.g. ``match port tcp eq 21``);
    ``default-inspection-traffic`` (the default ports of every inspection engine).
    """

    kind: Literal["any", "access-list", "port", "default-inspection-traffic"]
    acl: str | None = None
    protocol: int | None = None
    ports: PortMatch | None = None
    origin: Origin = BUILTIN


@dataclass(slots=True)
class ClassMap:
    """A layer 3/4 traffic class (``class-map NAME``): a flow belongs to it when all matches match."""

    name: str
    matches: list[ClassMatch] = field(default_factory=list)
    description: str | None = None
    origin: Origin = BUILTIN
    # ``match`` lines statewall does not evaluate (dscp, precedence, ...), kept as written; a class with
    # one selects no traffic in statewall.
    other: list[tuple[Origin, str]] = field(default_factory=list)


@dataclass(slots=True)
class ConnectionSettings:
    """``set connection ...`` of one class; None means "not set here" (a lower-precedence policy or the
    default applies). Times are seconds, 0 means never.

    Defaults when nothing sets them (reference A.3): limits 0 (unlimited), random-sequence-number on,
    embryonic 30 s, idle = the global ``timeout conn``, half-closed = the global ``timeout
    half-closed``, DCD off (retry interval 15 s, 5 retries), the default tcp-map.
    """

    conn_max: int | None = None
    embryonic_conn_max: int | None = None
    per_client_max: int | None = None
    per_client_embryonic_max: int | None = None
    random_sequence_number: bool | None = None
    timeout_embryonic: float | None = None
    timeout_idle: float | None = None
    idle_reset: bool | None = None  # ``idle hh:mm:ss reset``: RST both ends on idle expiry
    timeout_half_closed: float | None = None
    dcd: bool | None = None
    dcd_retry_interval: float = 15.0
    dcd_max_retries: int = 5
    tcp_map: str | None = None  # ``set connection advanced-options NAME``
    # ``set connection decrement-ttl``: the ASA lowers the TTL (and answers time exceeded) only for
    # the classes that say so; without it transit packets keep their TTL.
    decrement_ttl: bool | None = None
    origins: dict[str, Origin] = field(default_factory=dict)  # field name -> line that set it


@dataclass(slots=True)
class Inspect:
    """``inspect ENGINE [options]`` in a class: ``engine`` as typed (``ftp``, ``h323 h225``, ``dns``),
    ``strict`` for ``inspect ftp strict``, ``map`` an inspect policy-map name when one is given,
    ``max_length`` the 7.x/8.0 ``inspect dns maximum-length N``."""

    engine: str
    strict: bool = False
    map: str | None = None
    origin: Origin = BUILTIN
    max_length: int | None = None


@dataclass(slots=True)
class PolicyClass:
    """One ``class NAME`` inside a policy-map with its actions. ``other`` keeps actions statewall
    does not model (police, priority, ips, ...) verbatim so that they print back."""

    class_map: str
    connection: ConnectionSettings | None = None
    inspects: list[Inspect] = field(default_factory=list)
    other: list[tuple[Origin, str]] = field(default_factory=list)
    origin: Origin = BUILTIN


@dataclass(slots=True)
class PolicyMap:
    """A layer 3/4 ``policy-map NAME``: classes in order; for each feature the first matching class
    that configures it wins."""

    name: str
    classes: list[PolicyClass] = field(default_factory=list)
    description: str | None = None
    origin: Origin = BUILTIN


@dataclass(slots=True)
class TcpMap:
    """A TCP normalizer profile (``tcp-map NAME``), defaults as the ASA's (reference A.1).

    ``exceed_mss`` None means the release's default: ``drop`` before ASA 9.0, ``allow`` from 9.0
    (see ``statewall.normalizer``). ``option_ranges`` are the ``tcp-options range L U ACTION`` lines
    as configured, applied in order over the default (6-7 and 9-255 clear). ``md5`` overrides the range
    action for option 19 when set. ``queue_timeout`` is seconds.
    """

    name: str
    check_retransmission: bool = False
    checksum_verification: bool = False
    exceed_mss: Literal["allow", "drop"] | None = None
    invalid_ack: Literal["allow", "drop"] = "drop"
    seq_past_window: Literal["allow", "drop"] = "drop"
    reserved_bits: Literal["allow", "clear", "drop"] = "allow"
    syn_data: Literal["allow", "drop"] = "allow"
    synack_data: Literal["allow", "drop"] = "drop"
    queue_limit: int = 0
    queue_timeout: float = 4.0
    selective_ack: Literal["allow", "clear"] = "allow"
    timestamp: Literal["allow", "clear"] = "allow"
    window_scale: Literal["allow", "clear"] = "allow"
    md5: Literal["allow", "clear", "drop"] | None = None
    option_ranges: list[tuple[int, int, str]] = field(default_factory=list)
    ttl_evasion_protection: bool = True
    urgent_flag: Literal["allow", "clear"] = "clear"
    window_variation: Literal["allow", "drop"] = "allow"
    description: str | None = None
    origin: Origin = BUILTIN
    origins: dict[str, Origin] = field(default_factory=dict)  # option field -> line that set it


@dataclass(slots=True)
class ServicePolicy:
    """``service-policy NAME global | interface IFC``: ``interface`` None is the (single) global one."""

    policy_map: str
    interface: str | None = None
    origin: Origin = BUILTIN


@dataclass(slots=True)
class Inspection:
    """An application inspection (ALG) attached to TCP connections to ``ports``, dialect-free.

    ASA ``inspect ftp [strict]`` in the policy applying to the flow, iptables ``-j CT --helper ftp``.
    ``enabled`` False records an explicit refusal (ASA ``no inspect ftp``) so that it overrides a
    dialect's default. ``data_refreshes_control``: activity on a data connection keeps its control
    connection from idling out (Linux 2.2 ip_masq_ftp, seed 004); a named switch so that a lab can
    show the failure without it.
    """

    protocol: Literal["ftp"] = "ftp"
    ports: tuple[int, ...] = (21,)
    strict: bool = False
    origin: Origin = BUILTIN
    enabled: bool = True
    data_refreshes_control: bool = True


# --------------------------------------------------------------------------------------------------
# Netfilter rulesets (iptables / ip6tables)


@dataclass(slots=True)
class NfExtension:
    """An iptables match module with its parsed options, for what ``Match`` does not hold.

    ``name`` is the module (``limit``, ``comment``, ``helper``, ``connlimit``, ``multiport``, or a
    second ``tcp``/``state``/... whose fields in ``Match`` are already taken); ``args`` are its options
    as values, keyed as ``statewall.dialects.iptables`` documents for each module.
    """

    name: str
    args: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class NfRule:
    """One rule of a netfilter chain: ``match``, the extra match modules, and the target.

    ``target`` is a built-in verdict (ACCEPT, DROP, RETURN), a target extension (REJECT, LOG, SNAT,
    DNAT, MASQUERADE, REDIRECT, TCPMSS, CT, NOTRACK, SYNPROXY) with ``target_args``, a user chain, or
    "" for a rule without target (it only counts). ``goto`` is ``-g`` (jump without return).
    ``modules`` are the ``-m`` modules in the order written (an implicit ``-m tcp`` included), which
    is the order netfilter evaluates them in and iptables-save prints them in. ``fragment`` is ``-f``
    (True: non-first fragments only; False: ``! -f``). ``counters`` are the packet and byte counts the
    rule was loaded with (``iptables-save -c``).
    """

    match: Match
    target: str
    target_args: dict[str, object] = field(default_factory=dict)
    matches_extra: list[NfExtension] = field(default_factory=list)
    modules: tuple[str, ...] = ()
    goto: bool = False
    fragment: bool | None = None
    counters: tuple[int, int] = (0, 0)
    origin: Origin = BUILTIN
    # Statements that act and continue, run in order before ``target`` when the rule matches (an nft
    # rule's ``log``, ``meta mark set``, ``tcp option maxseg size set``, ...): (target name, args) as
    # ``target``/``target_args`` take them. ``counter`` is nft's explicit counter statement (its
    # counters print back); iptables rules always count.
    statements: list[tuple[str, dict]] = field(default_factory=list)
    counter: bool = False
    # The order a dialect wrote the rule's parts in, for printing it back the same way (nft: "iif",
    # "saddr", "dport", "ext:0", "counter", "stmt:0", "verdict", ...); empty: the dialect's own order.
    layout: tuple[str, ...] = ()


# Match modules whose first instance lives in ``NfRule.match`` rather than in ``matches_extra``.
NF_FOLDED_MODULES = frozenset({"tcp", "udp", "icmp", "icmp6", "state", "conntrack", "multiport"})

# What the kernel sends for each REJECT type (ipt_REJECT.c / ip6t_REJECT.c): ("icmp", type, code) in
# the packet's family, or ("tcp-reset",).
NF_REJECT_REPLIES: dict[str, tuple] = {
    "icmp-net-unreachable": ("icmp", 3, 0),
    "icmp-host-unreachable": ("icmp", 3, 1),
    "icmp-proto-unreachable": ("icmp", 3, 2),
    "icmp-port-unreachable": ("icmp", 3, 3),
    "icmp-net-prohibited": ("icmp", 3, 9),
    "icmp-host-prohibited": ("icmp", 3, 10),
    "icmp-admin-prohibited": ("icmp", 3, 13),
    "icmp6-no-route": ("icmp", 1, 0),
    "icmp6-adm-prohibited": ("icmp", 1, 1),
    "icmp6-addr-unreachable": ("icmp", 1, 3),
    "icmp6-port-unreachable": ("icmp", 1, 4),
    "icmp6-policy-fail": ("icmp", 1, 5),
    "icmp6-reject-route": ("icmp", 1, 6),
    "tcp-reset": ("tcp-reset",),
}
# nft's "reject with icmpx TYPE" (NFT_REJECT_ICMPX_*): the same name in the packet's own family.
NF_REJECT_ICMPX: dict[str, dict[int, str]] = {
    "icmpx-port-unreachable": {4: "icmp-port-unreachable", 6: "icmp6-port-unreachable"},
    "icmpx-admin-prohibited": {4: "icmp-admin-prohibited", 6: "icmp6-adm-prohibited"},
    "icmpx-no-route": {4: "icmp-net-unreachable", 6: "icmp6-no-route"},
    "icmpx-host-unreachable": {4: "icmp-host-unreachable", 6: "icmp6-addr-unreachable"},
}


def nf_folded_owners(rule: NfRule) -> list[bool]:
    """For each entry of ``rule.modules``: True when that instance lives in ``rule.match`` (folded),
    False when it is the next entry of ``rule.matches_extra`` with that name."""
    remaining: dict[str, int] = {}
    for e in rule.matches_extra:
        remaining[e.name] = remaining.get(e.name, 0) + 1
    counts: dict[str, int] = {}
    for name in rule.modules:
        counts[name] = counts.get(name, 0) + 1
    out = []
    seen: dict[str, int] = {}
    for name in rule.modules:
        seen[name] = seen.get(name, 0) + 1
        folded_count = counts[name] - remaining.get(name, 0)
        out.append(name in NF_FOLDED_MODULES and seen[name] <= folded_count)
    return out


def nf_folded_args(name: str, rule: NfRule) -> dict:
    """A folded module's options, read back from ``rule.match`` (keys as for ``NfExtension.args``)."""
    m = rule.match
    if name in ("tcp", "udp"):
        ports_are_multiport = "multiport" in rule.modules and sum(
            1 for e in rule.matches_extra if e.name == "multiport"
        ) < sum(1 for n in rule.modules if n == "multiport")
        args: dict = {"sport": None, "dport": None, "sport_negate": False, "dport_negate": False}
        if not ports_are_multiport:
            if m.source_ports:
                args.update(sport=m.source_ports[0], sport_negate=m.source_ports_negate)
            if m.destination_ports:
                args.update(dport=m.destination_ports[0], dport_negate=m.destination_ports_negate)
        args.update(flags=m.tcp_flags, flags_negate=m.tcp_flags_negate)
        return args
    if name in ("icmp", "icmp6"):
        return {"type": m.icmp_type, "code": m.icmp_code, "negate": m.icmp_negate}
    if name in ("state", "conntrack"):
        return {"states": m.ctstates, "negate": m.ctstates_negate}
    if name == "multiport":
        if m.source_ports:
            return {"dir": "sports", "ports": m.source_ports, "negate": m.source_ports_negate}
        return {"dir": "dports", "ports": m.destination_ports, "negate": m.destination_ports_negate}
    raise ValueError(f"module {name} is never folded into Match")


def nf_module_instances(rule: NfRule) -> list[tuple[str, bool, dict]]:
    """(name, folded, args) of each match module of the rule, in the order written, which is the
    order netfilter evaluates them in."""
    out = []
    extras = list(rule.matches_extra)
    for name, folded in zip(rule.modules, nf_folded_owners(rule), strict=True):
        if folded:
            out.append((name, True, nf_folded_args(name, rule)))
        else:
            idx = next(i for i, e in enumerate(extras) if e.name == name)
            out.append((name, False, extras.pop(idx).args))
    return out


@dataclass(slots=True)
class NfSet:
    """An ipset (``ipset create NAME TYPE``) that ``-m set --match-set`` rules look addresses and ports up in.

    ``kind`` is the ipset type (``hash:net``, ``hash:ip,port``, ...), ``dims`` its dimensions (``ip``,
    ``net``, ``port``, ``set``), ``family`` 4 or 6. Each member is a tuple with one element per
    dimension: ``(first, last)`` integer addresses for ip/net, ``(protocol, low, high)`` for port, a
    set name for ``list:set``. ``text`` keeps each member as written, ``options`` the create options
    (``timeout``, ``hashsize``, ...) as written.
    """

    name: str
    kind: str
    family: int = 4
    dims: tuple[str, ...] = ()
    members: list[tuple] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    origin: Origin = BUILTIN
    # An nftables set read by key type (``dims`` are then the key types, ``ipv4_addr``,
    # ``inet_service``, ... one per part of a concatenation; members ``(lo, hi)`` per part, a name
    # for ``ifname``): its ``flags`` (interval, timeout, dynamic, constant), default element
    # ``timeout`` and ``size``; ``timeouts`` per member ``(timeout, expires)`` in seconds or None.
    # ``meter``: the set a rule's ``meter NAME { ... }`` creates (nft lists it in the rule).
    keyed: bool = False
    flags: tuple[str, ...] = ()
    timeout: float | None = None
    size: int | None = None
    timeouts: list = field(default_factory=list)
    meter: bool = False
    # An nftables data map (``map NAME { type K : V; ... }``): the value types (``ipv4_addr``,
    # ``ipv4_addr . inet_service``, ``mark``, ...) and each member's value, one ``(lo, hi)`` per part.
    data: tuple[str, ...] = ()
    values: list[tuple] = field(default_factory=list)


@dataclass(slots=True)
class NfChain:
    """A chain: built-in ones have a ``policy`` (ACCEPT or DROP), user chains None."""

    name: str
    policy: str | None = None
    rules: list[NfRule] = field(default_factory=list)
    counters: tuple[int, int] = (0, 0)  # the policy's counters (built-in chains)
    origin: Origin = BUILTIN
    # An nftables base chain: its ``kind`` (filter, nat, route), ``hook`` (PREROUTING, INPUT, FORWARD,
    # OUTPUT, POSTROUTING) and ``priority`` (the kernel's number). None for iptables chains, whose
    # table says all of that, and for nftables regular chains.
    kind: str | None = None
    hook: str | None = None
    priority: int | None = None
    # An nftables ingress chain (hook INGRESS, a netdev or inet table): the devices it is hooked on.
    devices: tuple[str, ...] = ()


@dataclass(slots=True)
class NfTable:
    """A netfilter table (filter, nat, mangle, raw, security) and its chains by name."""

    name: str
    chains: dict[str, NfChain] = field(default_factory=dict)
    origin: Origin = BUILTIN
    # nftables: the table's family (ip, ip6, inet); None for an iptables table. ``helpers``: its
    # ``ct helper`` objects, name -> (helper, protocol).
    family: str | None = None
    helpers: dict[str, tuple[str, str]] = field(default_factory=dict)
    # nftables verdict maps: name -> (key type, ((key, verdict, chain or None), ...)); ``sets_order``:
    # the names of its sets and maps in the order they were declared (nft lists them so).
    vmaps: dict[str, tuple[str, tuple]] = field(default_factory=dict)
    vmap_flags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # a verdict map's flags
    sets_order: list[str] = field(default_factory=list)
    # nftables flowtables by name (``flow add @NAME`` offloads a connection to one).
    flowtables: dict[str, NfFlowtable] = field(default_factory=dict)
    # nftables ``ct timeout`` objects by name (``ct timeout set "NAME"``).
    ct_timeouts: dict[str, NfCtTimeout] = field(default_factory=dict)
    # nftables comments of the table (key ""), of its sets and maps (their names) and of its chains
    # ("chain NAME"), as nft lists them.
    comments: dict[str, str] = field(default_factory=dict)


# A ct timeout policy's states (nft's names, in the order nft lists them) -> ConntrackSettings fields.
NF_CT_TIMEOUT_STATES: dict[str, dict[str, str]] = {
    "tcp": {
        "syn_sent": "tcp_timeout_syn_sent",
        "syn_recv": "tcp_timeout_syn_recv",
        "established": "tcp_timeout_established",
        "fin_wait": "tcp_timeout_fin_wait",
        "close_wait": "tcp_timeout_close_wait",
        "last_ack": "tcp_timeout_last_ack",
        "time_wait": "tcp_timeout_time_wait",
        "close": "tcp_timeout_close",
        "syn_sent2": "",
        "retrans": "tcp_timeout_max_retrans",
        "unack": "tcp_timeout_unacknowledged",
    },
    "udp": {"unreplied": "udp_timeout", "replied": "udp_timeout_stream"},
    "icmp": {"timeout": "icmp_timeout"},
}


@dataclass(slots=True)
class NfCtTimeout:
    """An nftables ``ct timeout NAME { protocol P; l3proto F; policy = { state : seconds, ... } }``:
    the timeouts a connection it is attached to gets instead of the sysctl ones, for the states it
    names (``NF_CT_TIMEOUT_STATES``)."""

    name: str
    protocol: str
    l3proto: str
    policy: dict[str, float] = field(default_factory=dict)
    origin: Origin = BUILTIN


@dataclass(slots=True)
class NfFlowtable:
    """An nftables flowtable: ``hook ingress priority P; devices = { ... }``. An established
    connection a rule's ``flow add @NAME`` offloads is forwarded at the ingress of these devices,
    past every hook (``statewall.engine.nf_flowtable``). ``counter`` and ``flags offload`` (hardware)
    are kept for the listing."""

    name: str
    priority: int = 0
    devices: tuple[str, ...] = ()
    counter: bool = False
    hw_offload: bool = False
    origin: Origin = BUILTIN


# --------------------------------------------------------------------------------------------------
# Logging (ASA ``logging ...``, ``clock timezone``, ``clock summer-time``)

# Syslog severities by the keyword the ASA accepts for them (``logging trap informational``).
LOG_LEVELS = (
    "emergencies",
    "alerts",
    "critical",
    "errors",
    "warnings",
    "notifications",
    "informational",
    "debugging",
)


@dataclass(slots=True)
class LoggingList:
    """``logging list NAME level L [class C]`` / ``logging list NAME message N[-M]``: a message is in
    the list when any of its entries takes it. ``levels`` entries are (level, class or None),
    ``messages`` inclusive id ranges."""

    name: str
    levels: list[tuple[int, str | None]] = field(default_factory=list)
    messages: list[tuple[int, int]] = field(default_factory=list)
    origin: Origin = BUILTIN


@dataclass(slots=True)
class LoggingHost:
    """``logging host IF IP [udp/PORT | tcp/PORT] [format emblem]``: a syslog server that gets every
    message the ``logging trap`` filter admits (UDP 514 and TCP 1470 by default, as the ASA)."""

    interface: str
    address: IPAddress
    transport: Literal["udp", "tcp"] = "udp"
    port: int = 514
    emblem: bool = False
    origin: Origin = BUILTIN


@dataclass(slots=True)
class SummerTime:
    """``clock summer-time ZONE recurring [start end] [offset]`` or ``... date start end [offset]``.

    Recurring rules are (week 1..5 or 5 = last, weekday 0 = Monday, month 1..12, minutes after
    midnight), applied every year in local standard time; a ``date`` rule holds two absolute
    (year, month, day, minutes) points. ``offset`` is in minutes (60 by default)."""

    zone: str
    recurring: bool = True
    start: tuple[int, int, int, int] = (2, 6, 3, 120)  # US rule: second Sunday in March, 2:00
    end: tuple[int, int, int, int] = (1, 6, 11, 120)  # first Sunday in November, 2:00
    offset: int = 60
    origin: Origin = BUILTIN


@dataclass(slots=True)
class LoggingSettings:
    """What the ASA's logging commands set. ``configured`` is False when the configuration has no
    ``logging`` command at all (statewall then writes every message with a timestamp, its long-standing
    behaviour; see docs/events.md). Destination filters hold a level (0..7) or a list name; None means
    the destination is off."""

    configured: bool = False
    enabled: bool = False
    timestamp: Literal["", "legacy", "rfc5424"] = ""
    trap: int | str | None = None
    buffered: int | str | None = None
    console: int | str | None = None
    monitor: int | str | None = None
    # hostname | ipaddress | string | context-name, with its value (interface name, string).
    device_id: tuple[str, str] | None = None
    message_levels: dict[int, int] = field(default_factory=dict)
    disabled: set[int] = field(default_factory=set)
    lists: dict[str, LoggingList] = field(default_factory=dict)
    facility: int = 20
    hosts: list[LoggingHost] = field(default_factory=list)
    # ``clock timezone NAME HOURS [MINUTES]``: the zone name and its offset from UTC in minutes.
    timezone: tuple[str, int] = ("UTC", 0)
    summer_time: SummerTime | None = None
    origins: dict[str, Origin] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Policy


@dataclass(slots=True)
class Warning_:
    """A non-fatal finding while parsing (e.g. an unknown command)."""

    origin: Origin
    message: str
    col: int = 0  # 1-based column of the token it is about; 0 when the dialect gives none
    # The feature a "not modelled" warning is about (see ``Unmodelled``); None for other warnings.
    gap: str | None = None

    def __str__(self) -> str:
        where = f"{self.origin.file}:{self.origin.line}"
        if self.col:
            where += f":{self.col}"
        return f"{where}: warning: {self.message}"


@dataclass(slots=True)
class Unmodelled:
    """A configured feature that affects traffic through the box but that statewall does not model.

    Carried in the model so that every tool can say so where a user would otherwise be misled:
    ``feature`` names it ("VPN", "inspect dns", "reverse-path check"), ``action`` says what a real box
    does there ("encrypt", "drop packets failing the reverse-path check"). ``acl`` names the access list
    selecting the traffic it applies to and ``interface`` the interface, when the feature has them (a
    crypto map's ``match address`` and the interface it is applied to).
    """

    feature: str
    action: str
    origin: Origin
    col: int = 1
    acl: str | None = None
    interface: str | None = None


# The fate of a configuration line (``Policy.fates``): applied by the engine, valid but without effect on
# traffic through the box (management, AAA for the box, SNMP, ...), or affecting traffic but not modelled.
FATES = ("modelled", "no-effect", "not-modelled")


@dataclass(slots=True)
class DnsInspectMap:
    """``policy-map type inspect dns NAME`` (``preset_dns_map``) parameters, as the ASA defines them:
    ``message-length maximum N`` (512 in the preset map; None: no limit), ``client``/``server`` limits,
    ``dns-guard`` (one answer per query, the connection torn down after it), ``id-randomization``,
    ``protocol-enforcement``, ``nat-rewrite``."""

    name: str
    message_length_max: int | None = None
    message_length_client: int | str | None = None
    message_length_server: int | str | None = None
    dns_guard: bool = True
    id_randomization: bool = False
    protocol_enforcement: bool = True
    nat_rewrite: bool = True
    origin: Origin = BUILTIN


@dataclass(slots=True)
class IpOptionsInspectMap:
    """``policy-map type inspect ip-options NAME``: under ``parameters``, ``eool``, ``nop`` and
    ``router-alert`` each ``action allow`` (pass the packet as it is) or ``action clear`` (remove the
    option, then pass it); an option a map does not list is dropped (Cisco ASA firewall configuration
    guide, "IP Options Inspection"; Cisco Security Manager user guide, IP Options maps). ``actions``
    maps the option's type byte (0, 1, 148) to its action; ``other`` keeps parameters lines statewall
    does not model (ASA 9.5's further options and ``default action``), as written, in order."""

    name: str
    actions: dict[int, str] = field(default_factory=dict)
    description: str | None = None
    other: list[tuple[Origin, str]] = field(default_factory=list)
    origin: Origin = BUILTIN


@dataclass(slots=True)
class Policy:
    """Everything the engine enforces. ``dialect`` names the language it was written in."""

    dialect: str = "asa"
    hostname: str = "statewall"
    version: str | None = None  # e.g. "8.2(1)" from an "ASA Version" header
    # The ASA platform whose connection limit ``conntrack.max`` holds (``conntrack.origins["max"]``: the
    # show version line, or None when --asa-platform set it); None: the default, engine.compiled's.
    platform: str | None = None
    interfaces: dict[str, Interface] = field(default_factory=dict)  # by logical name
    # Interfaces configured without a logical name (no ASA nameif): they pass no traffic but print back.
    unnamed_interfaces: list[Interface] = field(default_factory=list)
    network_objects: dict[str, NetworkObject] = field(default_factory=dict)  # by name
    routes: list[Route] = field(default_factory=list)
    access_lists: dict[str, AccessList] = field(default_factory=dict)
    access_groups: list[AccessGroup] = field(default_factory=list)
    nat_rules: list[NatRule] = field(default_factory=list)
    timeouts: Timeouts = field(default_factory=Timeouts)
    conntrack: ConntrackSettings = field(default_factory=ConntrackSettings)
    # ASA: traffic between interfaces of the same security level (same-security-traffic permit
    # inter-interface / intra-interface).
    same_security_inter: bool = False
    same_security_intra: bool = False
    # Lines kept verbatim because they do not affect forwarding (speed, duplex are on Interface).
    passthrough: list[tuple[Origin, str]] = field(default_factory=list)
    warnings: list[Warning_] = field(default_factory=list)
    source_file: str = ""
    # Modular policy framework (ASA): definitions by name and the service policies applying them. The
    # ASA's factory default (class inspection_default / policy-map global_policy applied globally) is
    # part of the model with a BUILTIN origin when the configuration sets no global service policy.
    class_maps: dict[str, ClassMap] = field(default_factory=dict)
    policy_maps: dict[str, PolicyMap] = field(default_factory=dict)
    tcp_maps: dict[str, TcpMap] = field(default_factory=dict)
    service_policies: list[ServicePolicy] = field(default_factory=list)
    # ASA ``sysopt connection tcpmss [minimum] N``: MSS options in SYNs above the maximum are lowered,
    # below the minimum raised; 0 disables either (reference A.2). Only the ASA dialect applies them.
    sysopt_tcpmss: int = 1380
    sysopt_tcpmss_minimum: int = 0
    sysopt_origins: dict[str, Origin] = field(default_factory=dict)
    # Named fault injections for the lab (``statewall.seqrand.FAULTS``), off unless named.
    faults: set[str] = field(default_factory=set)
    # Application inspections in the neutral form (``Inspection``). Empty means the dialect said
    # nothing: the ASA dialect then has its factory default (``inspect ftp`` on port 21, see
    # ``statewall.inspect.effective_inspections``); other dialects have none.
    inspections: list[Inspection] = field(default_factory=list)
    # Netfilter rulesets by table name: IPv4 (iptables) and IPv6 (ip6tables). None outside the iptables
    # dialect; a table absent from the dict is as Linux has it before any rule: empty, policies ACCEPT.
    netfilter: dict[str, NfTable] | None = None
    ip6_netfilter: dict[str, NfTable] | None = None
    # Fragment reassembly: the ASA's ``fragment`` settings (all interfaces, and per interface where a
    # line names one) and Linux's reassembly sysctls.
    fragment: FragmentSettings = field(default_factory=FragmentSettings)
    port_blocks: PortBlockSettings = field(default_factory=PortBlockSettings)
    fragment_by_interface: dict[str, FragmentSettings] = field(default_factory=dict)
    defrag: DefragSettings = field(default_factory=DefragSettings)

    def fragment_settings(self, interface: str) -> FragmentSettings:
        """The ``fragment`` settings that apply on ``interface``: what a line naming the interface set,
        else what applies to all interfaces."""
        own = self.fragment_by_interface.get(interface)
        if own is None:
            return self.fragment
        merged = FragmentSettings(origins={**self.fragment.origins, **own.origins})
        for name in ("size", "chain", "timeout"):
            setattr(merged, name, getattr(own if name in own.origins else self.fragment, name))
        return merged

    # ipsets by name (``-m set``), both families.
    nf_sets: dict[str, NfSet] = field(default_factory=dict)
    # nftables tables (``table inet filter { ... }``), in the order written: their base chains run at
    # their hooks by priority, interleaved with the iptables tables' chains and conntrack. Named sets
    # are in ``nf_sets`` as ``TABLE/NAME``.
    nft_tables: list[NfTable] = field(default_factory=list)
    # ASA service objects and groups (``ServiceObject``) and time ranges, by name.
    service_objects: dict[str, ServiceObject] = field(default_factory=dict)
    time_ranges: dict[str, TimeRange] = field(default_factory=dict)
    # Features configured that affect traffic through the box but are not modelled (``Unmodelled``), and
    # every configuration line's fate (``FATES``) in file order, for ``statewall check``.
    unmodelled: list[Unmodelled] = field(default_factory=list)
    fates: list[tuple[Origin, str]] = field(default_factory=list)
    # ASA ``ip verify reverse-path interface NAME``: interfaces with unicast reverse-path checking.
    reverse_path: dict[str, Origin] = field(default_factory=dict)
    # ASA 8.2 ``nat-control``: traffic from a higher to a lower security level needs a translation.
    nat_control: bool = False
    nat_control_origin: Origin | None = None
    # ASA ``policy-map type inspect dns NAME`` parameter maps by name (``DnsInspectMap``).
    dns_inspect_maps: dict[str, DnsInspectMap] = field(default_factory=dict)
    # ASA ``policy-map type inspect ip-options`` maps by name (``IpOptionsInspectMap``).
    ip_options_maps: dict[str, IpOptionsInspectMap] = field(default_factory=dict)
    # ASA ``logging ...`` and ``clock timezone`` / ``clock summer-time`` (what the logs look like).
    logging: LoggingSettings = field(default_factory=LoggingSettings)

    def interface_by_hardware(self, hardware: str) -> Interface | None:
        for itf in self.interfaces.values():
            if itf.hardware == hardware:
                return itf
        return None
