"""Typed events: the single source for syslog text (each dialect), JSON lines, counters and reports.

The engine emits these and nothing else; ``statewall.logfmt`` turns them into text. An event carries
facts (addresses as text, interface names, numbers, the policy ``Origin`` responsible), never
pre-formatted log lines, so that every output format is derived from the same data.

An address field of a connection's or a translation's events (``Endpoint.address``,
``XlateBuilt.real_address``, ``AclHit.src``, ...) reads as text, but the engine may store it as
``(ip version, integer)``: the text is made when something first reads it. A firewall logging nothing
(``statewall run --log-format none``) keeps its events as objects for ``show log`` and never formats
the addresses of the thousands of connections it builds and tears down. In the same way a connection's
ends (``ConnBuilt``, ``ConnTeardown``) may be given as compact records, tuples of their values, made into
``Endpoint`` objects when first read; a record holds values, never the connection, so an event read
late says what was true when it was made.
"""

from __future__ import annotations

import copy
import enum
import keyword
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from .policy import Origin


def _address(slot) -> property:
    """An address field of a slots dataclass: stored as given, text or ``(version, integer)``; read as
    text (formatted once, on the first read, and kept). ``slot`` is the field's own slot descriptor,
    the storage; writing goes straight to it (a C call: the dataclass ``__init__`` writes every field)."""

    def read(obj):
        value = slot.__get__(obj)
        if type(value) is tuple:
            value = _addr_to_str()(value[0], value[1])
            slot.__set__(obj, value)
        return value

    return property(read, slot.__set__)


def _addr_to_str():
    """``packet.addr_to_str``, imported on first use (packet imports this module); an import statement
    at each read cost as much as formatting the address."""
    global _ADDR_TO_STR
    if _ADDR_TO_STR is None:
        from .packet import addr_to_str

        _ADDR_TO_STR = addr_to_str
    return _ADDR_TO_STR


_ADDR_TO_STR = None


def _endpoint(slot) -> property:
    """An end of a connection's event (``ConnBuilt``, ``ConnTeardown``): stored as given, an ``Endpoint``
    or the compact record ``(interface, version, address, port, mapped address, mapped port)`` the
    engine gathers on the packet path; read as an ``Endpoint`` (made once, on the first read, and
    kept). The record holds the values themselves, never the connection: what is read later is what
    was true when the event was made."""

    def read(obj):
        value = slot.__get__(obj)
        if type(value) is tuple:
            iface, v, addr, port, maddr, mport = value
            value = Endpoint(iface, (v, addr), port, (v, maddr), mport)
            slot.__set__(obj, value)
        return value

    return property(read, slot.__set__)


def _lazy(field, *names: str):
    """Let the fields ``names`` of a slots dataclass take a compact value that ``field`` (``_endpoint``
    or ``_address``) makes into the field's object when it is first read."""

    def wrap(cls):
        for name in names:
            setattr(cls, name, field(cls.__dict__[name]))
        return cls

    return wrap


def _lazy_ends(*names: str):
    """Fields that take an end's compact record for its ``Endpoint``."""
    return _lazy(_endpoint, *names)


def _lazy_addresses(*names: str):
    """Fields that take ``(version, integer)`` for their text."""
    return _lazy(_address, *names)


class DropReason(enum.Enum):
    """Why a packet was dropped. Value = (keyword as ``show asp drop`` prints it, description).

    Where the ASA has the reason, keyword and description are the ASA's, checked against a real ASA's
    ``capture NAME type asp-drop ?`` list and a 9.8 ``show asp drop`` (``logfmt.counters.ASA_VERIFIED``
    names those); the other keywords are statewall's or Linux's, and ``show asp drop`` lists them apart
    as such (or under the ASA's nearest counter, ``logfmt.counters.ASA_NEAREST``).
    """

    # Frame / decode checks (the packet itself is malformed)
    INVALID_IP_VERSION = ("unsupported-ip-version", "Unsupported IP version")
    INVALID_IP_HEADER = ("invalid-ip-header", "Invalid IP header")
    INVALID_IP_LENGTH = ("invalid-ip-length", "Invalid IP length")
    INVALID_IP_OPTION = ("invalid-ip-option", "IP option drop")
    BAD_IP_CHECKSUM = ("bad-ip-cksum", "Bad IP checksum")
    INVALID_IPV6_EXTENSION = ("ipv6-bad-eh", "IPv6 bad EH")
    IPV6_EXTENSION_ORDER = ("ipv6-bad-eh-order", "IPv6 EH not in proper order")
    INVALID_FRAGMENT = ("invalid-fragment", "Invalid IP fragment")
    FRAGMENT_TIMEOUT = ("fragment-reassembly-timeout", "Fragment reassembly timeout")
    FRAGMENT_LIMIT = ("fragment-chain-limit", "Fragment chain exceeds limit")
    # Reassembly (statewall.reassembly). ASA: its fragment database (209003) and the teardrop check the
    # ASA counts as an early security check; Linux: the kernel's reassembly counters and drop reasons
    # (IpExtReasmOverlaps, IpReasmFails, IpReasmTimeout; SKB_DROP_REASON_DUP_FRAG).
    FRAGMENT_DB_FULL = ("fragment-database-limit", "Fragment database limit exceeded")
    FRAGMENT_OVERLAP = ("security-failed", "Early security checks failed")
    REASM_OVERLAP = ("reasm-overlaps", "Overlapping fragments: the whole datagram is discarded (RFC 5722)")
    REASM_DUPLICATE = ("dup-frag", "Duplicate fragment")
    REASM_TIMEOUT = ("frag-reasm-timeout", "Fragment reassembly timed out")
    REASM_FAILED = ("reasm-fails", "Fragment reassembly failed")
    REASM_MEMORY = ("reasm-memory", "Fragment reassembly memory limit reached")
    INVALID_TCP_LENGTH = ("invalid-tcp-hdr-length", "Invalid TCP Length")
    INVALID_TCP_OPTIONS = ("tcp-bad-option-list", "TCP option list invalid")
    INVALID_TCP_FLAGS = ("bad-tcp-flags", "Bad TCP flags")
    BAD_TCP_CHECKSUM = ("bad-tcp-cksum", "Bad TCP checksum")
    INVALID_UDP_LENGTH = ("invalid-udp-length", "Invalid UDP Length")
    BAD_UDP_CHECKSUM = ("bad-udp-cksum", "Bad UDP checksum")
    INVALID_ICMP = ("invalid-icmp", "Invalid ICMP packet")
    BAD_ICMP_CHECKSUM = ("bad-icmp-cksum", "Bad ICMP checksum")
    UNKNOWN_INTERFACE = ("unknown-interface", "Packet arrived on an unknown interface")
    # Policy
    ACL_DROP = ("acl-drop", "Flow is denied by configured rule")
    SECURITY_LEVEL = ("sp-security-failed", "Slowpath security checks failed")
    NO_ROUTE = ("no-route", "No route to host")
    RPF_VIOLATED = ("rpf-violated", "Reverse-path verify failed")
    SOURCE_ROUTE = ("source-route", "Source-routed packet (accept_source_route 0)")
    CT_TABLE_FULL = ("nf-conntrack-table-full", "nf_conntrack: table full, dropping packet")
    TTL_EXPIRED = ("ttl-exceeded", "ttl exceeded")
    NAT_FAILED = ("nat-xlate-failed", "NAT failed")
    # A flow to the real address of a host a static translates, from the static's mapped side (305013).
    NAT_RPF_FAILED = ("nat-rpf-failed", "NAT reverse path failed")
    NAT_NO_XLATE = ("no-xlate", "No translation for an inbound packet")
    TO_THE_BOX = ("to-the-box", "Traffic addressed to the firewall itself")
    # Addresses never forwarded as unicast (statewall.addrclass). ASA: its slow-path address checks
    # (the IPv4 one shares the security-level keyword, as on the ASA) and multicast without a route;
    # Linux: ip_route_input_slow's martians, multicast without multicast routing, ip6_rcv_core's and
    # ip6_forward's address checks.
    SP_SECURITY_FAILED = ("sp-security-failed", "Slowpath security checks failed (address checks)")
    IPV6_SP_SECURITY_FAILED = ("ipv6-sp-security-failed", "IPv6 slowpath security checks failed")
    NO_MCAST_INTERFACE = ("no-mcast-intrf", "FP no mcast output intrf")
    MARTIAN_SOURCE = ("martian-source", "Martian source address")
    MARTIAN_DESTINATION = ("martian-destination", "Martian destination address")
    # Linux, IPv4: a packet arriving from a link with one of the box's own addresses as its source
    # (fib_validate_source, accept_local 0; the kernel's SKB_DROP_REASON_IP_LOCAL_SOURCE).
    IP_LOCAL_SOURCE = ("ip-local-source", "Martian source: the firewall's own address (accept_local 0)")
    MCAST_NOT_FORWARDED = ("mc-not-forwarded", "Multicast not forwarded without multicast routing")
    IPV6_ADDR_ERROR = ("ipv6-in-addr-errors", "IPv6 source or destination not acceptable")
    IPV6_BEYOND_SCOPE = ("ipv6-beyond-scope", "Link-local address beyond its scope")
    # Connection state
    TCP_NOT_SYN = ("tcp-not-syn", "First TCP packet not SYN")
    TCP_3WHS_FAILED = ("tcp-3whs-failed", "TCP failed 3 way handshake")
    # A second SYN (SYN-ACK) on an embryonic ASA connection with another initial sequence number (419002).
    TCP_SEQ_SYN_DIFF = ("tcp-seq-syn-diff", "TCP SEQ in SYN/SYNACK invalid")
    # A SYN-ACK whose acknowledgment is not for the SYN (ASA: statewall.normalizer).
    TCP_ACK_SYN_DIFF = ("tcp-ack-syn-diff", "TCP ACK in SYNACK invalid")
    # A SYN or SYN-ACK on an established ASA connection (keywords and words of show asp drop).
    TCP_SYN_ON_CONN = ("tcp-syn-ooo", "TCP SYN on established conn")
    TCP_SYNACK_ON_CONN = ("tcp-synack-ooo", "TCP SYNACK on established conn")
    TCP_RST_SYN_IN_WINDOW = ("tcp-rst-syn-in-win", "TCP RST/SYN in window")
    TCP_SEQ_PAST_WINDOW = ("tcp-seq-past-win", "TCP packet SEQ past window")
    TCP_INVALID_ACK = ("tcp-invalid-ack", "TCP invalid ACK")
    TCP_INVALID = ("ctstate-invalid", "Conntrack marked the packet INVALID")
    TCP_MSS_EXCEEDED = ("tcp-mss-exceeded", "TCP data exceeded MSS")
    TCP_SYNACK_DATA = ("tcp-synack-data", "TCP SYNACK with data")
    TCP_SYN_DATA = ("tcp-syn-data", "TCP SYN with data")
    TCP_RESERVED_SET = ("tcp-reserved-set", "TCP reserved flags set")
    TCP_OPTION_DROP = ("tcp-option-drop", "TCP option dropped by tcp-map")
    TCP_WINDOW_VARIATION = ("tcpnorm-win-variation", "TCP unexpected window size variation")
    TCP_BAD_RETRANSMISSION = ("tcpnorm-rexmit-bad", "TCP bad retransmission")
    TCP_BUFFER_TIMEOUT = ("tcp-buffer-timeout", "TCP Out-of-Order packet buffer timeout")
    TCP_BUFFER_FULL = ("tcp-buffer-full", "TCP Out-of-Order packet buffer full")
    TCP_DUP_IN_QUEUE = ("tcp-dup-in-queue", "TCP dup of packet in Out-of-Order queue")
    TCP_TTL_EVASION = ("tcp-ttl-evasion", "TCP TTL evasion attempt")
    CONN_LIMIT = ("conn-limit", "Connection limit reached")
    INTERCEPT = ("tcp-intercept", "TCP Intercept consumed the packet")
    INTERCEPT_INVALID = ("intercept-unexpected", "Intercept unexpected packet")
    SYNPROXY = ("synproxy", "SYNPROXY consumed the packet")
    SYNPROXY_INVALID = ("synproxy-cookie-invalid", "SYNPROXY: ACK without a valid SYN cookie")
    INSPECT_FTP = ("inspect-ftp", "FTP inspection")
    # DNS inspection (statewall.inspect.dns), the ASA's own counters (show asp drop).
    INSPECT_DNS_TOO_LONG = ("inspect-dns-pak-too-long", "DNS Inspect packet too long")
    INSPECT_DNS_ID = ("inspect-dns-id-not-matched", "DNS Inspect id not matched")
    INSPECT_DNS_INVALID = ("inspect-dns-invalid-pak", "DNS Inspect invalid packet")
    # ICMP inspection (statewall.inspect.icmp): an echo reply no waiting request asked for (313004).
    INSPECT_ICMP_SEQ = ("inspect-icmp-seq-num-not-matched", "ICMP Inspect seq num not matched")
    FLOW_EXPIRED = ("flow-expired", "Expired flow")
    ICMP_NO_SESSION = ("inspect-icmp-error-no-existing-conn", "ICMP Error Inspect no existing conn")
    UNSUPPORTED_PROTOCOL = ("unsupported-protocol", "IP protocol not supported")
    INTERNAL_ERROR = ("internal-error", "Internal error while processing the packet")

    @property
    def keyword(self) -> str:
        return self.value[0]

    @property
    def description(self) -> str:
        return self.value[1]

    @classmethod
    def from_keyword(cls, keyword: str) -> DropReason:
        for member in cls:
            if member.value[0] == keyword:
                return member
        raise KeyError(keyword)


@_lazy_addresses("address", "mapped_address")
@dataclass(slots=True)
class Endpoint:
    """One end of a connection as the firewall sees it: real and mapped (translated) address (each
    also accepted as ``(version, integer)``, formatted when first read)."""

    interface: str
    address: str
    port: int
    mapped_address: str
    mapped_port: int


_ATOMS = frozenset({str, int, float, bool, type(None)})
# Each dataclass's converter to a dict (``_converter``), made on first use.
_CONVERTERS: dict[type, Any] = {}
# Each event type's ``to_dict`` (``_converter``), made on first use.
_TO_DICT: dict[type, Any] = {}


def _plain(value: Any) -> Any:
    """``dataclasses.asdict`` of a value, value for value: dataclasses (endpoints, origins) as dicts,
    lists, tuples and dicts rebuilt, anything else a deep copy. asdict deep-copies every number and
    string too, which cost more than the rest of an event's JSON line; those (and enum members, their
    own deep copy) are immutable and kept."""
    t = type(value)
    if t in _ATOMS:
        return value
    conv = _CONVERTERS.get(t)
    if conv is not None:
        return conv(value)
    if hasattr(t, "__dataclass_fields__"):
        return _converter(t, False)(value)
    if t is list:
        return [_plain(v) for v in value]
    if t is tuple:
        return tuple(_plain(v) for v in value)
    if t is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value
    return copy.deepcopy(value)


def _field_value(value: Any) -> Any:
    """An event's own field in ``to_dict``: an enum member as its keyword (its value's first item),
    anything else as ``_plain`` makes it (an ``Origin`` as its file, line and text)."""
    if isinstance(value, enum.Enum):
        v = value.value
        return v[0] if isinstance(v, tuple) else v
    return _plain(value)


def _atomic(hint: Any) -> bool:
    """The annotation admits only numbers, strings, booleans and None."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return all(a in _ATOMS for a in args)


def _converter(cls: type, event: bool) -> Any:
    """``cls``'s dataclass as a dict: one dict display over its fields in declaration order, those
    annotated as numbers or strings taken as they are, the others through ``_plain`` (an event's own
    fields through ``_field_value``); an event's ends with ``event``, its type's name."""
    hints = typing.get_type_hints(cls)
    items = []
    for f in fields(cls):
        value = f"o.{f.name}" if f.name.isidentifier() and not keyword.iskeyword(f.name) else None
        if value is None:
            value = f"getattr(o, {f.name!r})"
        items.append(f"{f.name!r}: {value if _atomic(hints[f.name]) else f'V({value})'}")
    if event:
        items.append(f"'event': {cls.__name__!r}")
    namespace: dict[str, Any] = {"V": _field_value if event else _plain}
    exec(f"def convert(o):\n    return {{{', '.join(items)}}}\n", namespace)  # noqa: S102 - our own text
    fn = namespace["convert"]
    (_TO_DICT if event else _CONVERTERS)[cls] = fn
    return fn


@dataclass(slots=True)
class Event:
    time: float

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        """The event's fields by name in declaration order, then ``event``: its type's name. Enum
        members as their keyword, endpoints and origins as dicts (what ``dataclasses.asdict`` makes of
        them), addresses as text."""
        fn = _TO_DICT.get(type(self))
        return (fn or _converter(type(self), True))(self)


@_lazy_ends("initiator", "responder")
@dataclass(slots=True)
class ConnBuilt(Event):
    """A connection was created (ASA 302013 TCP / 302015 UDP / 302020 ICMP).

    ``direction`` is ``inbound`` when the initiator is on the lower-security interface. ``initiator``
    and ``responder`` are the two ends; the ASA prints the outside end first (see logfmt.asa).
    ``master`` is the id of the connection whose inspection let this one in (an FTP data connection's
    control connection), None for a connection of its own. ``untranslated_by`` is the NAT rule whose
    mapped address the initiator used (UN-NAT: a static, a twice NAT rule): ``show nat``'s
    untranslate_hits.
    """

    conn_id: int
    protocol: int
    direction: str
    initiator: Endpoint
    responder: Endpoint
    origin: Origin | None = None
    master: int | None = None
    # ICMP connections: the type and code of the packet that opened it (302020's "type N code N").
    icmp_type: int | None = None
    icmp_code: int | None = None
    untranslated_by: Origin | None = None


@_lazy_ends("initiator", "responder")
@dataclass(slots=True)
class ConnTeardown(Event):
    """A connection was removed (302014 / 302016 / 302021). ``reason`` is the ASA's text."""

    conn_id: int
    protocol: int
    direction: str
    initiator: Endpoint
    responder: Endpoint
    duration: float
    bytes: int
    reason: str
    closed_by: str | None = None  # interface that started the teardown (``from <ifc>``)
    icmp_type: int | None = None  # ICMP connections: as ConnBuilt's (302021's "type N code N")
    icmp_code: int | None = None


@_lazy_addresses("real_address", "mapped_address")
@dataclass(slots=True)
class XlateBuilt(Event):
    """A translation slot was created (305011)."""

    kind_: str  # "dynamic" or "static"
    protocol: int
    real_interface: str
    real_address: str
    real_port: int
    mapped_interface: str
    mapped_address: str
    mapped_port: int
    origin: Origin | None = None


@_lazy_addresses("real_address", "mapped_address")
@dataclass(slots=True)
class XlateTeardown(Event):
    """A translation slot was freed (305012)."""

    kind_: str
    protocol: int
    real_interface: str
    real_address: str
    real_port: int
    mapped_interface: str
    mapped_address: str
    mapped_port: int
    duration: float


def xlate_event(cls, x, now: float, *more):
    """A translation slot's ``XlateBuilt`` or ``XlateTeardown`` (``cls``) from the slot ``x``
    (``nat.Xlate``), then ``more``, the event's further fields in order (a teardown's duration); its
    addresses are formatted only if a log reads them. The fields the slot shares with others (kind,
    version, protocol, interfaces: ``Xlate._c``) are read from that tuple at once rather than through
    five properties (per new or expired translation), the rest given by position (a call with
    keywords cost more)."""
    c = x._c  # (kind, version, proto, real_iface, mapped_iface, pat, rule, timeout, flags, entry)
    v = c[1]
    return cls(
        now, c[0], c[2], c[3], (v, x.real_addr), x.real_port, c[4], (v, x.mapped_addr), x.mapped_port, *more
    )


def xlate_built(x, now: float) -> XlateBuilt:
    """``xlate_event(XlateBuilt, x, now, x.rule.origin)``: a new translation's 305011."""
    c = x._c
    v = c[1]
    return XlateBuilt(
        now,
        c[0],
        c[2],
        c[3],
        (v, x.real_addr),
        x.real_port,
        c[4],
        (v, x.mapped_addr),
        x.mapped_port,
        c[6].origin,
    )


@_lazy_addresses("real_address", "mapped_address")
@dataclass(slots=True)
class _PortBlock(Event):
    """A host's block of PAT ports ``port_start``-``port_end`` on ``mapped_address`` (the fields of the
    two port block events below; formatters tell them apart by their type)."""

    real_interface: str
    real_address: str
    mapped_interface: str
    mapped_address: str
    block_size: int
    port_start: int
    port_end: int


@dataclass(slots=True)
class PortBlockAllocated(_PortBlock):
    """A block of PAT ports was given to a host (port block allocation, 305014); the translations
    within it are not logged."""


@dataclass(slots=True)
class PortBlockReleased(_PortBlock):
    """A host's block of PAT ports was freed with its last translation (305015)."""


@dataclass(slots=True)
class PortBlockActive(_PortBlock):
    """A host's block of PAT ports was still held at a round of interim logging (``xlate
    block-allocation pba-interim-logging SECONDS``, 305017)."""


@dataclass(slots=True)
class Drop(Event):
    """A packet was dropped. Exactly one per dropped packet.

    ``interface`` is where it arrived; ``egress`` where it would have gone (when known). ``acl`` names
    the access list for ACL drops; ``origin`` is the configuration line responsible, and ``hint`` the
    change that would let the packet through, when there is one. ``detail`` holds reason-specific
    facts (e.g. ``{"mss": 1390, "data": 1460}``) used by the log formatters.
    """

    reason: DropReason
    interface: str
    protocol: int = 0
    src: str = ""
    sport: int = 0
    dst: str = ""
    dport: int = 0
    tcp_flags: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    egress: str | None = None
    acl: str | None = None
    origin: Origin | None = None
    hint: str | None = None
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    # The connection the dropped packet belongs to (None for a packet of no connection: a denied first
    # packet, a stray segment, a malformed packet).
    conn_id: int | None = None


@_lazy_addresses("src", "dst")
@dataclass(slots=True)
class AclHit(Event):
    """An access-control entry with ``log`` matched a packet (106100)."""

    acl: str
    action: str  # permitted / denied / est-allowed
    protocol: int
    in_interface: str
    src: str
    sport: int
    out_interface: str
    dst: str
    dport: int
    hits: int
    origin: Origin | None = None
    # The ACE's ``log [level] [interval secs]``: syslog severity (ASA default 6) and the reporting
    # interval printed as ``<n>-second interval`` once ``hits`` > 1 (ASA default 300).
    level: int | None = None
    interval: int | None = None


@dataclass(slots=True)
class IcmpSent(Event):
    """The firewall generated an ICMP error itself (time exceeded, fragmentation needed, ...)."""

    interface: str
    icmp_type: int
    icmp_code: int
    src: str
    dst: str
    reason: str = ""


@_lazy_addresses("src", "dst")
@dataclass(slots=True)
class LocalDelivery(Event):
    """A packet for one of the firewall's own addresses (or a broadcast it takes for itself) was taken
    in: netfilter's INPUT accepted it (iptables dialect). ``ctstate`` is what conntrack said (NEW,
    ESTABLISHED, RELATED, INVALID, UNTRACKED); ``answered`` when the box replied (an echo request).
    Every packet to the box is either this or a ``Drop``: none passes unreported."""

    interface: str
    protocol: int
    src: str
    sport: int
    dst: str
    dport: int
    ctstate: str = ""
    answered: bool = False


@dataclass(slots=True)
class FtpTransfer(Event):
    """A file transfer completed on an inspected FTP connection (ASA 303002).

    ``initiator`` is the client's end of the control connection, ``responder`` the server's;
    ``action`` is ``Retrieved`` or ``Stored``.
    """

    conn_id: int
    initiator: Endpoint
    responder: Endpoint
    user: str
    action: str
    filename: str


@_lazy_addresses("sender", "announced", "peer")
@dataclass(slots=True)
class FtpBounce(Event):
    """An inspected FTP control connection announced a data connection for a host other than the
    sender (a PORT/EPRT naming another client, a 227 naming another server): the packet is refused
    (its ``Drop`` is counted as ``inspect-ftp``); the ASA logs 406002 for it.

    ``sender`` is the announcing end's address, ``announced`` the address its command named,
    ``peer`` the other end as the packet was addressed, ``interface`` where it arrived."""

    conn_id: int
    interface: str
    command: str  # PORT, EPRT or 227
    sender: str
    announced: str
    peer: str


@dataclass(slots=True)
class FtpLowPort(Event):
    """An inspected FTP connection announced a data port below 1024 (PORT/EPRT, or 227/229 from the
    server): the ASA drops the packet and ends the connection (406001). ``command`` is PORT, EPRT, 227 or
    229, ``address``/``port`` what it announced, ``peer`` the packet's destination as it arrived,
    ``interface`` where it arrived."""

    conn_id: int
    interface: str
    command: str
    address: str
    port: int
    peer: str


@dataclass(slots=True)
class NfLog(Event):
    """A netfilter ``LOG`` target matched a packet (iptables dialect).

    ``text`` is the kernel's line without the syslog header (``<prefix>IN=eth1 OUT=eth0 MAC= SRC=...``,
    built by ``statewall.netfilter.log_line``); ``level`` the ``--log-level`` (syslog severity,
    default 4); ``hook`` where the packet was; ``origin`` the rule.
    """

    text: str
    level: int = 4
    hook: str = ""
    origin: Origin | None = None


@dataclass(slots=True)
class CtEvent(Event):
    """A conntrack event as ``conntrack -E`` reports it (iptables dialect): ``type`` NEW, UPDATE or DESTROY.

    ``orig`` and ``reply`` are the connection's two tuples, (src, dst, sport, dport) each: ``orig`` as
    the first packet arrived, ``reply`` as the answers arrive, so translations show in it. For ICMP the
    ports are the identifier and ``icmp`` holds (type, code, reply type) of the query. ``timeout`` is
    the number of seconds left (None once expired), ``state`` the TCP state name (None for other
    protocols), ``replied`` the SEEN_REPLY bit (``[UNREPLIED]`` when False), ``assured`` ASSURED, ``helper``
    the helper attached (``ftp``), ``use`` the kernel's reference count (1, plus one per connection
    this one is the master of).
    """

    type: str
    conn_id: int
    protocol: int
    orig: tuple[str, str, int, int]
    reply: tuple[str, str, int, int]
    timeout: int | None = None
    state: str | None = None
    icmp: tuple[int, int, int] | None = None
    replied: bool = False
    assured: bool = False
    helper: str | None = None
    use: int = 1


@dataclass(slots=True)
class ThreatRate(Event):
    """Basic threat detection found a drop rate exceeded (ASA 733100, ``statewall.threat``).

    ``object`` is what 733100 names (``SYN attck``, ``Conn limit``), ``rate_id`` the rate (1: over
    600 s, 2: over 3600 s by default); the rates are whole events per second as the ASA prints them,
    with their configured limits; ``total`` the category's cumulative count; ``trigger`` which rate
    was exceeded (``burst`` or ``average``).
    """

    object: str
    rate_id: int
    burst_rate: int
    burst_limit: int
    average_rate: int
    average_limit: int
    total: int
    trigger: str = "burst"
