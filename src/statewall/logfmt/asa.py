"""ASA syslog text from events, byte for byte as the ASA prints it (reference A.4), and the ASA's
``show conn`` / ``show xlate`` listings (A.5).

This module owns the ASA message catalogue: message ids, their default severities and templates, and
the small rules the ASA applies everywhere (``H:MM:SS`` durations, TCP flag lists with a space after
each flag, protocol names, the outside end printed first). Drops go through ``MESSAGES``, a table
from drop reason to candidate messages, so a feature that gains a syslog message adds a row, not code.

The engine never formats text; replay, the CLI and the demo call ``format_event`` on its events.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from string import Formatter

from ..events import (
    AclHit,
    ConnBuilt,
    ConnTeardown,
    Drop,
    DropReason,
    Endpoint,
    Event,
    FtpBounce,
    FtpLowPort,
    FtpTransfer,
    PortBlockActive,
    PortBlockAllocated,
    PortBlockReleased,
    ThreatRate,
    XlateBuilt,
    XlateTeardown,
)
from ..policy import BUILTIN, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Origin

# --------------------------------------------------------------------------------------------------
# Small formatting rules shared by every message

# Lower-case names as 106023/106100/110003 print them; the upper-case form is used by 302xxx/305xxx.
_PROTO_NAMES = {
    PROTO_ICMP: "icmp",
    PROTO_TCP: "tcp",
    PROTO_UDP: "udp",
    47: "gre",
    50: "esp",
    51: "ah",
    PROTO_ICMPV6: "icmp6",
    132: "sctp",
}
_PORT_PROTOCOLS = frozenset({PROTO_TCP, PROTO_UDP})
_ICMP_PROTOCOLS = frozenset({PROTO_ICMP, PROTO_ICMPV6})

# TCP flag bits in the order the ASA lists them. Real logs show "FIN PSH ACK", "SYN ACK" and "RST ACK",
# i.e. ascending bit order; URG/ECE/CWR follow the same rule (not seen in samples).
_TCP_FLAG_NAMES = (
    (0x01, "FIN"),
    (0x02, "SYN"),
    (0x04, "RST"),
    (0x08, "PSH"),
    (0x10, "ACK"),
    (0x20, "URG"),
    (0x40, "ECE"),
    (0x80, "CWR"),
)

# strftime's %b follows the C locale; the ASA always prints English month names.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --------------------------------------------------------------------------------------------------
# Releases: the configuration's "ASA Version" chooses some message and show forms.

# No version header: the newest forms.
NEWEST = (99, 0)
_RELEASE = re.compile(r"^(\d+)\.(\d+)")


def release_of(version: str | None) -> tuple[int, int]:
    """``8.2(1)`` -> (8, 2); None or unreadable -> ``NEWEST``."""
    m = _RELEASE.match(version or "")
    return (int(m.group(1)), int(m.group(2))) if m else NEWEST


# 302014 names the side that started the teardown ("TCP FINs from outside") from 9.0 on; 8.x logs end
# at the reason [C17, C22 (8.x samples), C23 (9.x samples)].
TEARDOWN_FROM = (9, 0)
# 302020/302021 end with "type N code N" from 9.0 on (9.x messages guide; 8.x samples end at laddr).
ICMP_TYPE_CODE = (9, 0)


def ace_hash(origin: Origin | None) -> int:
    """The hash ``show access-list`` prints after an ACE and 106023/106100 print first in their
    ``[0x..., 0x0]`` pair. The ASA's own values come from its internal hash and cannot be reproduced;
    statewall's are stable per ACE: CRC-32 of the ACE's configuration line, 0 for the implicit deny."""
    if origin is None or origin is BUILTIN or not origin.text:
        return 0
    return zlib.crc32(" ".join(origin.text.split()).encode())


def hash_pair(origin: Origin | None) -> str:
    # The second value hashes the object-group element that matched; statewall matches the ACE as a
    # whole and prints 0x0, as the ASA does for an ACE without object groups.
    return f"[0x{ace_hash(origin):x}, 0x0]"


def protocol_name(protocol: int) -> str:
    """Lower-case protocol keyword (``tcp``); unknown numbers print as the ASA does: ``protocol 103``."""
    return _PROTO_NAMES.get(protocol) or f"protocol {protocol}"


def protocol_upper(protocol: int) -> str:
    """Upper-case protocol name as in ``Built outbound TCP connection`` (ICMPv6 conns print ICMP)."""
    if protocol == PROTO_ICMPV6:
        return "ICMP"
    name = _PROTO_NAMES.get(protocol)
    return name.upper() if name else f"protocol {protocol}"


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` with unpadded hours that may exceed 24 (``26:03:09``); fractions are truncated."""
    s = max(0, int(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def format_tcp_flags(flags: int) -> str:
    """The ASA's flag list: each flag followed by one space, so ``flags SYN  on interface`` reads
    with two spaces once the template adds its own."""
    return "".join(f"{name} " for bit, name in _TCP_FLAG_NAMES if flags & bit)


def utc_second(t: float) -> tuple[int, int]:
    """``t`` as (whole second, microseconds) the way ``datetime.fromtimestamp`` splits it: the
    fraction times 10^6 rounded half to even, 10^6 of them carried into the seconds."""
    frac, whole = math.modf(t)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        us -= 1_000_000
        whole += 1.0
    elif us < 0:
        us += 1_000_000
        whole -= 1.0
    return int(whole), us


def format_timestamp(t: float) -> str:
    """``Sep 19 2007 06:55:58`` (UTC): the ASA's ``logging timestamp`` form.

    Of ``datetime.fromtimestamp(t, UTC)``, made once per second: the second is the one fromtimestamp
    rounds to (the fraction's microseconds half to even, 10^6 of them carried into the seconds)."""
    second, _ = utc_second(t)
    text = _TIMESTAMPS.get(second)
    if text is None:
        if len(_TIMESTAMPS) > 4096:
            _TIMESTAMPS.clear()
        d = datetime.fromtimestamp(second, UTC)
        text = _TIMESTAMPS[second] = f"{_MONTHS[d.month - 1]} {d.day:02d} {d.year} {d:%H:%M:%S}"
    return text


_TIMESTAMPS: dict[int, str] = {}


def _prefix(t: float, hostname: str | None, timestamp: bool) -> str:
    # Buffer/console form is "<ts>: %ASA-..."; with a device id the ASA writes "<ts> <host> : %ASA-...".
    if hostname:
        return f"{format_timestamp(t)} {hostname} : " if timestamp else f"{hostname} : "
    return f"{format_timestamp(t)}: " if timestamp else ""


# --------------------------------------------------------------------------------------------------
# Message catalogue for drops


@dataclass(frozen=True, slots=True)
class Message:
    """One ASA syslog message a drop can produce.

    ``when`` holds (field, value) pairs that must all equal the drop's formatting fields (see
    ``drop_fields``) for this row to apply; the first matching row of a reason wins. A row also
    applies only when the drop carries every field its template names (``needs``): a drop whose
    ``detail`` lacks them is counted but not logged, rather than breaking a replay halfway.
    """

    asa_id: int
    severity: int
    template: str
    when: tuple[tuple[str, object], ...] = ()
    needs: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        names = {name for _, name, _, _ in Formatter().parse(self.template) if name}
        object.__setattr__(self, "needs", frozenset(names))

    def matches(self, fields: Mapping[str, object]) -> bool:
        return self.needs <= fields.keys() and all(fields.get(k) == v for k, v in self.when)


def _m(asa_id: int, severity: int, template: str, **when: object) -> Message:
    return Message(asa_id, severity, template, tuple(when.items()))


# The catalogue reads best as a table, one message per row; keep the formatter from exploding it.
# fmt: off
_ACL_TAIL = 'by access-group "{acl}" {hashes}'

# Denied by the interface's default (security levels) rather than by a named access list.
_IMPLICIT_DENY = (
    _m(106001, 2, "Inbound TCP connection denied from {src}/{sport} to {dst}/{dport} flags {flags} "
       "on interface {ifc}", l4="tcp"),
    _m(106006, 2, "Deny inbound UDP from {src}/{sport} to {dst}/{dport} on interface {ifc}", l4="udp"),
    _m(106014, 3, "Deny inbound icmp src {ifc}:{src} dst {egress}:{dst} (type {type}, code {code})",
       l4="icmp"),
    _m(106010, 3, "Deny inbound {proto} src {ifc}:{src} dst {egress}:{dst}"),
)

_CONN_LIMIT_TAIL = ("{count}/{limit} for {direction} packet from {src}/{sport} to {dst}/{dport} "
                    "on interface {ifc}")

# Fields a drop's ``detail`` must carry for some messages:
#   TCP_MSS_EXCEEDED: mss, data
#   CONN_LIMIT:       kind (conn | embryonic | per-client | per-client-embryonic), count, limit,
#                     direction (input | output, default input); rate_limited (True: counted, not
#                     logged: 201012 is rate-limited by the ASA, statewall.limits)
#   INTERCEPT:        as CONN_LIMIT (kind embryonic | per-client-embryonic) for a SYN answered with a
#                     cookie; without them (a client's packet while the server is reached) no message
#   NAT_FAILED:       xlate_kind (portmap | regular | identity | outbound static, default portmap);
#                     no_group (True: no NAT rule for a flow that needs one, 305005); pba (host:
#                     the host's block limit, with block_limit; pool: no free block, with pool_name
#                     and pool_address; 305016)
#   INSPECT_DNS_TOO_LONG: dns_kind (query | reply), length, limit (statewall.inspect.dns)
#   ICMP_NO_SESSION:  inner_proto (keyword), inner_src, inner_sport, inner_dst, inner_dport: the
#                     packet the ICMP error quotes
#   FRAGMENT_DB_FULL, FRAGMENT_LIMIT, INVALID_FRAGMENT: id, proto_name and limit / elements / size and
#                     max (statewall.reassembly puts them on the first fragment of a discarded set)
# Reasons absent from this table have no ASA syslog message; they are only counted.
MESSAGES: dict[DropReason, tuple[Message, ...]] = {
    DropReason.TCP_NOT_SYN: (
        _m(106015, 6, "Deny TCP (no connection) from {src}/{sport} to {dst}/{dport} flags {flags} "
           "on interface {ifc}", l4="tcp"),
    ),
    DropReason.ACL_DROP: (
        _m(106023, 4, "Deny {proto} src {ifc}:{src}/{sport} dst {egress}:{dst}/{dport} " + _ACL_TAIL,
           has_acl=True, ports=True),
        _m(106023, 4, "Deny {proto} src {ifc}:{src} dst {egress}:{dst} (type {type}, code {code}) "
           + _ACL_TAIL, has_acl=True, l4="icmp"),
        _m(106023, 4, "Deny {proto} src {ifc}:{src} dst {egress}:{dst} " + _ACL_TAIL, has_acl=True),
        *_IMPLICIT_DENY,
    ),
    DropReason.SECURITY_LEVEL: _IMPLICIT_DENY,
    DropReason.TCP_MSS_EXCEEDED: (
        _m(419001, 4, "Dropping TCP packet from {ifc}:{src}/{sport} to {egress}:{dst}/{dport}, "
           "reason: MSS exceeded, MSS {mss}, data {data}", l4="tcp"),
    ),
    # A second SYN or SYN-ACK with another initial sequence number on an embryonic connection
    # (statewall.normalizer): the words of real ASA logs ("%ASA-4-419002: Duplicate TCP SYN from
    # outside2:104.237.142.206/80 to pub_uag:8.37.98.29/443 with different initial sequence number";
    # logstash's firewalls spec has another), where Cisco's syslog guide prints "Received duplicate TCP
    # SYN ... number." for the same message.
    DropReason.TCP_SEQ_SYN_DIFF: (
        _m(419002, 4, "Duplicate TCP SYN from {ifc}:{src}/{sport} to {egress}:{dst}/{dport} with "
           "different initial sequence number", l4="tcp"),
    ),
    DropReason.NO_ROUTE: (
        _m(110003, 6, "Routing failed to locate next hop for {proto} from {ifc}:{src}/{sport} "
           "to {egress}:{dst}/{dport}"),
    ),
    DropReason.RPF_VIOLATED: (
        _m(106021, 1, "Deny {PROTO} reverse path check from {src} to {dst} on interface {ifc}"),
    ),
    DropReason.NAT_NO_XLATE: (
        _m(106011, 3, "Deny inbound (No xlate) {proto} src {ifc}:{src}/{sport} dst {ifc}:{dst}/{dport}",
           ports=True),
        _m(106011, 3, "Deny inbound (No xlate) {proto} src {ifc}:{src} dst {ifc}:{dst} "
           "(type {type}, code {code})", l4="icmp"),
        _m(106011, 3, "Deny inbound (No xlate) {proto} src {ifc}:{src} dst {ifc}:{dst}"),
    ),
    DropReason.NAT_FAILED: (
        # ASA 8.2: no NAT rule for a flow that needs one (nat-control, or a nat id without a global on
        # the egress); Cisco's syslog guide, 305005.
        _m(305005, 3, "No translation group found for {proto} src {ifc}:{src}/{sport} "
           "dst {egress}:{dst}/{dport}", no_group=True, ports=True),
        _m(305005, 3, "No translation group found for {proto} src {ifc}:{src} dst {egress}:{dst} "
           "(type {type}, code {code})", no_group=True, l4="icmp"),
        _m(305005, 3, "No translation group found for {proto} src {ifc}:{src} dst {egress}:{dst}",
           no_group=True),
        # Port block allocation: the host holds its maximum of blocks, all full, or the PAT pool has no
        # free block left (Cisco ASA syslog 305016, its three forms: the connection's with a reason,
        # and for a flow without ports the pool's alone).
        _m(305016, 3, "Unable to create {proto} connection from {ifc}:{src}/{sport} to "
           "{egress}:{dst}/{dport} due to reaching per-host PAT port block limit of {block_limit}.",
           ports=True, pba="host"),
        _m(305016, 3, "Unable to create {proto} connection from {ifc}:{src}/{sport} to "
           "{egress}:{dst}/{dport} due to port block exhaustion in PAT pool '{pool_name}' IP "
           "{pool_address}.", ports=True, pba="pool"),
        _m(305016, 3, "Port blocks exhausted in PAT pool '{pool_name}' IP {pool_address}. Unable to "
           "create connection.", pba="pool"),
        _m(305006, 3, "{xlate_kind} translation creation failed for {proto} src {ifc}:{src}/{sport} "
           "dst {egress}:{dst}/{dport}", ports=True),
        _m(305006, 3, "{xlate_kind} translation creation failed for {proto} src {ifc}:{src} "
           "dst {egress}:{dst} (type {type}, code {code})", l4="icmp"),
        # A protocol without ports (GRE through PAT).
        _m(305006, 3, "{xlate_kind} translation creation failed for {proto} src {ifc}:{src} "
           "dst {egress}:{dst}"),
    ),
    # NAT reverse path failure: a flow to a statically translated host's real address from the
    # static's mapped side (Cisco ASA syslog messages guide, 305013, its TCP/UDP, ICMP and other
    # protocols forms; real logs print "Connection for tcp src outside:...").
    DropReason.NAT_RPF_FAILED: (
        _m(305013, 5, "Asymmetric NAT rules matched for forward and reverse flows; Connection for {proto} "
           "src {ifc}:{src}/{sport} dst {egress}:{dst}/{dport} denied due to NAT reverse path failure",
           ports=True),
        _m(305013, 5, "Asymmetric NAT rules matched for forward and reverse flows; Connection for {proto} "
           "src {ifc}:{src} dst {egress}:{dst} (type {type}, code {code}) denied due to NAT reverse "
           "path failure", l4="icmp"),
        _m(305013, 5, "Asymmetric NAT rules matched for forward and reverse flows; Connection for "
           "protocol {proto} src {ifc}:{src} dst {egress}:{dst} denied due to NAT reverse path failure"),
    ),
    DropReason.ICMP_NO_SESSION: (
        _m(313005, 4, "No matching connection for ICMP error message: {proto} src {ifc}:{src} "
           "dst {egress}:{dst} (type {type}, code {code}) on {ifc} interface.  Original IP payload: "
           "{inner_proto} src {inner_src}/{inner_sport} dst {inner_dst}/{inner_dport}.", l4="icmp"),
    ),
    DropReason.INSPECT_ICMP_SEQ: (
        _m(313004, 4, "Denied ICMP type={type}, from laddr {src} on interface {ifc} to {dst}: "
           "no matching session", l4="icmp"),
    ),
    DropReason.INSPECT_DNS_TOO_LONG: (
        _m(410001, 4, "Dropped UDP DNS {dns_kind} from {ifc}:{src}/{sport} to {egress}:{dst}/{dport}; "
           "packet length {length} bytes exceeds configured limit of {limit} bytes", l4="udp"),
    ),
    DropReason.CONN_LIMIT: (
        _m(201010, 6, "Embryonic connection limit exceeded " + _CONN_LIMIT_TAIL, kind="embryonic"),
        _m(201011, 3, "Connection limit exceeded " + _CONN_LIMIT_TAIL, kind="conn"),
        _m(201012, 6, "Per-client embryonic connection limit exceeded " + _CONN_LIMIT_TAIL,
           kind="per-client-embryonic", rate_limited=False),
        _m(201013, 3, "Per-client connection limit exceeded " + _CONN_LIMIT_TAIL, kind="per-client"),
    ),
    # Fragment reassembly (statewall.reassembly): one line per discarded set, on its first fragment.
    DropReason.FRAGMENT_DB_FULL: (
        _m(209003, 4, "Fragment database limit of {limit} exceeded: src = {src}, dest = {dst}, "
           "proto = {proto_name}, id = {id}"),
    ),
    DropReason.INVALID_FRAGMENT: (
        _m(209004, 4, "Invalid IP fragment, size = {size} exceeds maximum size = {max}: src = {src}, "
           "dest = {dst}, proto = {proto_name}, id = {id}"),
    ),
    # Real logs print two spaces before "src" in this one.
    DropReason.FRAGMENT_LIMIT: (
        _m(209005, 4, "Discard IP fragment set with more than {elements} elements:  src = {src}, "
           "dest = {dst}, proto = {proto_name}, id = {id}"),
    ),
}
# fmt: on
# A SYN that TCP Intercept answered reports the embryonic limit that sent it there.
MESSAGES[DropReason.INTERCEPT] = tuple(
    m for m in MESSAGES[DropReason.CONN_LIMIT] if m.asa_id in (201010, 201012)
)

# Values used when a drop's detail does not say otherwise.
_DETAIL_DEFAULTS = {
    "direction": "input",
    "xlate_kind": "portmap",
    "kind": "conn",
    "rate_limited": False,
    "no_group": False,
    "pba": "",
}


def _l4_class(protocol: int) -> str:
    if protocol == PROTO_TCP:
        return "tcp"
    if protocol == PROTO_UDP:
        return "udp"
    if protocol in _ICMP_PROTOCOLS:
        return "icmp"
    return "other"


def drop_fields(drop: Drop) -> dict[str, object]:
    """The names a ``MESSAGES`` template or ``when`` condition may use for one drop.

    Ports print as 0 for protocols without ports, as the ASA does (``icmp from WAN:2.2.2.2/0``); a
    drop with no known egress names its ingress interface on both sides.
    """
    has_ports = drop.protocol in _PORT_PROTOCOLS
    fields: dict[str, object] = dict(_DETAIL_DEFAULTS)
    fields.update(drop.detail)
    fields.update(
        ifc=drop.interface,
        egress=drop.egress or drop.interface,
        src=drop.src,
        dst=drop.dst,
        sport=drop.sport if has_ports else 0,
        dport=drop.dport if has_ports else 0,
        proto=protocol_name(drop.protocol),
        PROTO=protocol_upper(drop.protocol),
        flags=format_tcp_flags(drop.tcp_flags or 0),
        type=drop.icmp_type or 0,
        code=drop.icmp_code or 0,
        acl=drop.acl or "",
        hashes=hash_pair(drop.origin),
        has_acl=bool(drop.acl),
        ports=has_ports,
        l4=_l4_class(drop.protocol),
    )
    return fields


def _drop_messages(drop: Drop) -> list[tuple[int, int, str]]:
    rows = MESSAGES.get(drop.reason)
    if not rows or not drop.src:
        # No addresses means the packet never decoded far enough for the ASA to name it.
        return []
    fields = drop_fields(drop)
    for row in rows:
        if row.matches(fields):
            return [(row.asa_id, row.severity, row.template.format_map(fields))]
    return []


# --------------------------------------------------------------------------------------------------
# Connections, translations, ACL hits


def _outside_first(ev: ConnBuilt | ConnTeardown) -> tuple[Endpoint, Endpoint]:
    # The ASA names the lower-security end first: the initiator of an inbound conn, the responder of
    # an outbound one (A.4, 302013 example).
    if ev.direction == "inbound":
        return ev.initiator, ev.responder
    return ev.responder, ev.initiator


def _sock(ep: Endpoint) -> str:
    return f"{ep.interface}:{ep.address}/{ep.port}"


def _mapped(ep: Endpoint) -> str:
    return f"({ep.mapped_address}/{ep.mapped_port})"


def _icmp_addrs(ev: ConnBuilt | ConnTeardown) -> str:
    # faddr = outside end, gaddr = inside end's mapped address, laddr = inside end's real address.
    # Only the initiator's side carries the echo identifier; the responder's prints 0 (real logs:
    # outbound "faddr x/0 gaddr y/7 laddr z/7", inbound "faddr x/18425 gaddr y/0 laddr z/0").
    far, near = _outside_first(ev)
    far_port = far.port if far is ev.initiator else 0
    near_real, near_mapped = (near.port, near.mapped_port) if near is ev.initiator else (0, 0)
    return (
        f"faddr {far.address}/{far_port} gaddr {near.mapped_address}/{near_mapped} "
        f"laddr {near.address}/{near_real}"
    )


def _icmp_tail(ev: ConnBuilt | ConnTeardown, release: tuple[int, int]) -> str:
    itype = getattr(ev, "icmp_type", None)
    if release < ICMP_TYPE_CODE or itype is None:
        return ""
    return f" type {itype} code {getattr(ev, 'icmp_code', 0) or 0}"


def _conn_built(ev: ConnBuilt, release: tuple[int, int] = NEWEST) -> list[tuple[int, int, str]]:
    if ev.protocol in _ICMP_PROTOCOLS:
        return [
            (
                302020,
                6,
                f"Built {ev.direction} ICMP connection for {_icmp_addrs(ev)}{_icmp_tail(ev, release)}",
            )
        ]
    asa_id = {PROTO_TCP: 302013, PROTO_UDP: 302015}.get(ev.protocol)
    if asa_id is None:
        return []
    far, near = _outside_first(ev)
    text = (
        f"Built {ev.direction} {protocol_upper(ev.protocol)} connection {ev.conn_id} "
        f"for {_sock(far)} {_mapped(far)} to {_sock(near)} {_mapped(near)}"
    )
    return [(asa_id, 6, text)]


def _conn_teardown(ev: ConnTeardown, release: tuple[int, int] = NEWEST) -> list[tuple[int, int, str]]:
    if ev.protocol in _ICMP_PROTOCOLS:
        return [(302021, 6, f"Teardown ICMP connection for {_icmp_addrs(ev)}{_icmp_tail(ev, release)}")]
    far, near = _outside_first(ev)
    head = f"connection {ev.conn_id} for {_sock(far)} to {_sock(near)} "
    tail = f"duration {format_duration(ev.duration)} bytes {ev.bytes}"
    if ev.protocol == PROTO_UDP:
        return [(302016, 6, f"Teardown UDP {head}{tail}")]
    if ev.protocol != PROTO_TCP:
        return []
    text = f"Teardown TCP {head}{tail}"
    if ev.reason:
        text += f" {ev.reason}"
    if ev.closed_by and release >= TEARDOWN_FROM:
        text += f" from {ev.closed_by}"
    return [(302014, 6, text)]


def _xlate_text(ev: XlateBuilt | XlateTeardown, verb: str) -> tuple[int, str]:
    # Port translations are 305011/305012; whole-address ones (protocol 0) are 305009/305010.
    if ev.protocol:
        return (
            305011 if verb == "Built" else 305012,
            f"{verb} {ev.kind_} {protocol_upper(ev.protocol)} translation from "
            f"{ev.real_interface}:{ev.real_address}/{ev.real_port} "
            f"to {ev.mapped_interface}:{ev.mapped_address}/{ev.mapped_port}",
        )
    return (
        305009 if verb == "Built" else 305010,
        f"{verb} {ev.kind_} translation from {ev.real_interface}:{ev.real_address} "
        f"to {ev.mapped_interface}:{ev.mapped_address}",
    )


def _xlate_built(ev: XlateBuilt) -> list[tuple[int, int, str]]:
    asa_id, text = _xlate_text(ev, "Built")
    return [(asa_id, 6, text)]


def _xlate_teardown(ev: XlateTeardown) -> list[tuple[int, int, str]]:
    asa_id, text = _xlate_text(ev, "Teardown")
    return [(asa_id, 6, f"{text} duration {format_duration(ev.duration)}")]


def _port_block(ev: PortBlockAllocated | PortBlockReleased | PortBlockActive) -> list[tuple[int, int, str]]:
    # Cisco ASA syslog messages 305014 "Allocated num_of_blocks block of ports for translation from
    # real_interface:real_host_ip to real_dest_interface:real_dest_ip/real_dest_port_start-
    # real_dest_port_end", 305015 "Released block_size block of ports ..." (port block allocation
    # PAT) and 305017 (severity 3) "Pba-interim-logging: Active Active_ICMP block of ports for
    # translation from source:device_IP to destination:device_IP/Active_Port-Block" (interim logging);
    # the number is the block's size in ports (the guide's field names do not say more for 305014 and
    # 305017), the destination the mapped address and range.
    kind = type(ev)
    tail = (
        f"block of ports for translation from {ev.real_interface}:{ev.real_address} to "
        f"{ev.mapped_interface}:{ev.mapped_address}/{ev.port_start}-{ev.port_end}"
    )
    if kind is PortBlockActive:
        return [(305017, 3, f"Pba-interim-logging: Active {ev.block_size} {tail}")]
    if kind is PortBlockAllocated:
        return [(305014, 6, f"Allocated {ev.block_size} {tail}")]
    return [(305015, 6, f"Released {ev.block_size} {tail}")]


def _acl_hit(ev: AclHit) -> list[tuple[int, int, str]]:
    # The first match of a flow logs at once ("first hit"); later matches are summed per interval.
    when = "first hit" if ev.hits <= 1 else f"{ev.interval or 300}-second interval"
    text = (
        f"access-list {ev.acl} {ev.action} {protocol_name(ev.protocol)} "
        f"{ev.in_interface}/{ev.src}({ev.sport}) -> {ev.out_interface}/{ev.dst}({ev.dport}) "
        f"hit-cnt {ev.hits} {when} {hash_pair(ev.origin)}"
    )
    return [(106100, ev.level if ev.level is not None else 6, text)]


def _ftp_transfer(ev: FtpTransfer) -> list[tuple[int, int, str]]:
    c, s = ev.initiator, ev.responder
    return [
        (
            303002,
            6,
            f"FTP connection from {c.interface}:{c.address}/{c.port} to {s.interface}:{s.address}/"
            f"{s.port}, user {ev.user} {ev.action} file {ev.filename}",
        )
    ]


def _ftp_low_port(ev: FtpLowPort) -> list[tuple[int, int, str]]:
    # Cisco, ASA syslog messages, 406001: "FTP port command low port: IP_address/port to IP_address on
    # interface interface_name" -- the port announced is below 1024; the ASA drops the packet and
    # terminates the connection.
    return [
        (
            406001,
            4,
            f"FTP port command low port: {ev.address}/{ev.port} to {ev.peer} on interface {ev.interface}",
        )
    ]


def _ftp_bounce(ev: FtpBounce) -> list[tuple[int, int, str]]:
    # Cisco, ASA syslog messages, 406002: "%ASA-4-406002: FTP port command different address:
    # IP_address(IP_address) to IP_address on interface interface_name" -- the sender, the address
    # its command named, the peer; the ASA drops the packet and terminates the connection. Real logs
    # show it for a 227 reply too ("10.1.2.3(1.2.3.4) to 10.1.0.1 on interface outside").
    return [
        (
            406002,
            4,
            f"FTP port command different address: {ev.sender}({ev.announced}) to {ev.peer} "
            f"on interface {ev.interface}",
        )
    ]


def _threat_rate(ev: ThreatRate) -> list[tuple[int, int, str]]:
    # Devices print a space after the bracket ("[ Scanning]"); the message guide shows none.
    text = (
        f"[ {ev.object}] drop rate-{ev.rate_id} exceeded. Current burst rate is {ev.burst_rate} per second, "
        f"max configured rate is {ev.burst_limit}; Current average rate is {ev.average_rate} per second, "
        f"max configured rate is {ev.average_limit}; Cumulative total count is {ev.total}"
    )
    return [(733100, 4, text)]


_FORMATTERS = {
    ThreatRate: _threat_rate,
    FtpTransfer: _ftp_transfer,
    FtpLowPort: _ftp_low_port,
    FtpBounce: _ftp_bounce,
    ConnBuilt: _conn_built,
    ConnTeardown: _conn_teardown,
    XlateBuilt: _xlate_built,
    XlateTeardown: _xlate_teardown,
    PortBlockAllocated: _port_block,
    PortBlockReleased: _port_block,
    PortBlockActive: _port_block,
    Drop: _drop_messages,
    AclHit: _acl_hit,
}


_VERSIONED = frozenset({ConnBuilt, ConnTeardown})


def messages_for(event: Event, release: tuple[int, int] = NEWEST) -> list[tuple[int, int, str]]:
    """``(message id, severity, text)`` for each syslog message the ASA writes for ``event``, in the
    form of ``release`` (``release_of("8.2(1)")``; default the newest).

    Events the ASA does not log (e.g. ``IcmpSent``, most frame drops) give an empty list.
    """
    kind = type(event)
    fmt = _FORMATTERS.get(kind)
    if fmt is None:
        return []
    if kind in _VERSIONED:
        return fmt(event, release)  # type: ignore[operator]
    return fmt(event)  # type: ignore[operator]


def format_event(
    event: Event, *, hostname: str | None = None, timestamp: bool = True, release: tuple[int, int] = NEWEST
) -> list[str]:
    """The syslog lines for one event: ``<ts>: %ASA-<sev>-<id>: <text>``; with a hostname
    ``<ts> <host> : %ASA-...``; without the timestamp the line starts at ``%ASA`` (or ``<host> : ``).
    Every message, in UTC: ``logfmt.asalog.AsaLog`` applies a configuration's ``logging`` commands."""
    msgs = messages_for(event, release)
    if not msgs:
        return []
    prefix = _prefix(event.time, hostname, timestamp)
    return [f"{prefix}%ASA-{sev}-{asa_id}: {text}" for asa_id, sev, text in msgs]


def format_events(
    events: Iterable[Event], *, hostname: str | None = None, timestamp: bool = True
) -> list[str]:
    """``format_event`` over a sequence, in order (what replay writes to ``log.txt``)."""
    return [line for ev in events for line in format_event(ev, hostname=hostname, timestamp=timestamp)]


# --------------------------------------------------------------------------------------------------
# show conn / show xlate


@dataclass(frozen=True, slots=True)
class ConnRecord:
    """One row of ``show conn``: the engine builds these from its connection table.

    ``last_activity`` is on the same clock as the ``now`` given to ``format_show_conn``; ``flags`` is
    the ASA flag string (``UIO``, ``saA``, ...), empty when there are none. ``initiator`` /
    ``responder`` are the two ends' addresses for 9.x's ``show conn detail`` (left out when not
    given); ``notes`` are statewall's own facts about the connection, printed after the ASA's lines.
    """

    protocol: int
    outside_if: str
    outside_ip: str
    outside_port: int
    inside_if: str
    inside_ip: str
    inside_port: int
    last_activity: float
    bytes: int
    flags: str = ""
    created: float | None = None  # for ``show conn detail``: uptime and the idle timeout that applies
    timeout: float = 0.0
    conn_id: int | None = None
    initiator: str | None = None
    responder: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class XlateRecord:
    """One row of ``show xlate``. ``kind`` is ``PAT`` (port translation) or ``NAT`` (whole address);
    ``timeout`` is the xlate's idle timeout in seconds (PAT default 30)."""

    protocol: int
    real_if: str
    real_ip: str
    real_port: int
    mapped_if: str
    mapped_ip: str
    mapped_port: int
    last_activity: float
    timeout: float
    flags: str = "ri"
    kind: str = "PAT"


def _in_use(count: int, most_used: int | None) -> str:
    return f"{count} in use, {max(count, most_used or 0)} most used"


def short_duration(seconds: float) -> str:
    """The compact durations of ``show conn detail``: ``0s``, ``39s``, ``2m0s``, ``1h0m``, ``1D19h``."""
    s = max(0, int(seconds))
    d, h, m = s // 86400, s // 3600 % 24, s // 60 % 60
    if d:
        return f"{d}D{h}h"
    if h:
        return f"{h}h{m}m"
    if m:
        return f"{m}m{s % 60}s"
    return f"{s}s"


# 8.x's legend (8.4 command reference) and 9.x's, which names initiator and responder where 8.x says
# inside and outside (9.x command reference, show conn).
_CONN_LEGEND_8 = (
    "Flags: A - awaiting inside ACK to SYN, a - awaiting outside ACK to SYN,\n"
    "       B - initial SYN from outside, C - CTIQBE media, D - DNS, d - dump,\n"
    "       E - outside back connection, F - outside FIN, f - inside FIN,\n"
    "       G - group, g - MGCP, H - H.323, h - H.225.0, I - inbound data,\n"
    "       i - incomplete, J - GTP, j - GTP data, K - GTP t3-response\n"
    "       k - Skinny media, M - SMTP data, m - SIP media, n - GUP\n"
    "       O - outbound data, P - inside back connection, p - Phone-proxy TFTP connection,\n"
    "       q - SQL*Net data, R - outside acknowledged FIN,\n"
    "       R - UDP SUNRPC, r - inside acknowledged FIN, S - awaiting inside SYN,\n"
    "       s - awaiting outside SYN, T - SIP, t - SIP transient, U - up,\n"
    "       V - VPN orphan, W - WAAS,\n"
    "       X - inspected by service module"
)
_CONN_LEGEND = _CONN_LEGEND_8
_CONN_LEGEND_9 = (
    "Flags: A - awaiting responder ACK to SYN, a - awaiting initiator ACK to SYN,\n"
    "       b - TCP state-bypass or nailed,\n"
    "       C - CTIQBE media, c - cluster centralized,\n"
    "       D - DNS, d - dump, E - outside back connection, e - semi-distributed,\n"
    "       F - initiator FIN, f - responder FIN,\n"
    "       G - group, g - MGCP, H - H.323, h - H.225.0, I - initiator data,\n"
    "       i - incomplete, J - GTP, j - GTP data, K - GTP t3-response\n"
    "       k - Skinny media, L - decap tunnel, M - SMTP data, m - SIP media\n"
    "       N - inspected by Snort (1 - preserve-connection enabled, 2 - preserve-connection in effect)\n"
    "       n - GUP, O - responder data, o - offloaded,\n"
    "       P - inside back connection, p - passenger flow\n"
    "       q - SQL*Net data, R - initiator acknowledged FIN,\n"
    "       R - UDP SUNRPC, r - responder acknowledged FIN,\n"
    "       T - SIP, t - SIP transient, U - up,\n"
    "       V - VPN orphan, v - M3UA W - WAAS,\n"
    "       w - secondary domain backup,\n"
    "       X - inspected by service module,\n"
    "       x - per session, Y - director stub flow, y - backup stub flow,\n"
    "       Z - Scansafe redirection, z - forwarding stub flow\n"
)
# show conn detail's 9.x form from 9.0 on (statewall's choice of release; 8.4 prints the 8.x form).
CONN_DETAIL_9 = (9, 0)


def _detail_rows(c: ConnRecord, now: float, release: tuple[int, int]) -> list[str]:
    created = c.created if c.created is not None else c.last_activity
    times = (
        f"idle {short_duration(now - c.last_activity)}, uptime {short_duration(now - created)}, "
        f"timeout {short_duration(c.timeout)}, bytes {c.bytes}"
    )
    proto = protocol_upper(c.protocol)
    outside, inside = f"{c.outside_ip}/{c.outside_port}", f"{c.inside_ip}/{c.inside_port}"
    if release < CONN_DETAIL_9:
        rows = [
            f"{proto} {c.outside_if}:{outside} {c.inside_if}:{inside},",
            f"    flags {c.flags or '-'}, {times}",
        ]
    else:
        # 9.x: a space after each interface's colon, and one before the comma that ends the flags.
        # The flags, then the Snort flags (N1...; statewall has none), then the comma; the platform's
        # "Rx-RingNum N, Internal-Data0/1" after the bytes is left out.
        rows = [
            f"{proto} {c.outside_if}: {outside} {c.inside_if}: {inside},",
            f"    flags {c.flags or '-'} , {times}",
        ]
        if c.protocol == PROTO_TCP:
            # 9.x names the two ends of TCP connections only.
            initiator, responder = c.initiator, c.responder
            if initiator is None:
                # The B flag says who sent the first SYN.
                outside_first = "B" in c.flags
                initiator = c.outside_ip if outside_first else c.inside_ip
                responder = c.inside_ip if outside_first else c.outside_ip
            rows.append(f"  Initiator: {initiator}, Responder: {responder}")
    rows += [f"  statewall: {note}" for note in c.notes]
    return rows


def format_show_conn(
    conns: Sequence[ConnRecord],
    now: float,
    *,
    most_used: int | None = None,
    detail: bool = False,
    release: tuple[int, int] = NEWEST,
) -> str:
    """``show conn`` (8.4+ layout): ``TCP outside 10.23.232.217:443 inside 192.168.1.3:52427, idle
    0:01:02, bytes 4504, flags UIO``. ``most_used`` is the table's high-water mark.

    ``detail``: the flag legend, then per connection, before 9.0 ``TCP outside:10.10.49.10/23
    inside:10.1.1.15/1026,`` and ``    flags UIO, idle 39s, uptime 1D19h, timeout 1h0m, bytes 1940435``;
    from 9.0 ``TCP outside: 10.10.49.10/23 inside: 10.1.1.15/1026,``, ``    flags UIO , idle 39s, ...``
    and, for TCP, ``  Initiator: 10.1.1.15, Responder: 10.10.49.10``, a blank line between connections
    (9.x's ``Connection lookup keyid`` line is an internal hash statewall does not have, and the
    platform's ``Rx-RingNum``: both left out). statewall's own facts follow each connection, on lines
    that start ``  statewall:``.
    """
    lines = [_in_use(len(conns), most_used)]
    if detail:
        nine = release >= CONN_DETAIL_9
        lines.append(_CONN_LEGEND_9 if nine else _CONN_LEGEND_8)
        for i, c in enumerate(conns):
            if nine and i:
                lines.append("")  # 9.x separates connections with a blank line
            lines += _detail_rows(c, now, release)
        return "\n".join(lines) + "\n"
    for c in conns:
        lines.append(
            f"{protocol_upper(c.protocol)} {c.outside_if} {c.outside_ip}:{c.outside_port} "
            f"{c.inside_if} {c.inside_ip}:{c.inside_port}, idle {format_duration(now - c.last_activity)}, "
            f"bytes {c.bytes}, flags {c.flags or '-'}"
        )
    return "\n".join(lines) + "\n"


def format_show_conn_count(count: int, most_used: int | None = None) -> str:
    """``show conn count``: ``54 in use, 123 most used`` (9.x command reference)."""
    return _in_use(count, most_used) + "\n"


_XLATE_LEGEND = (
    "Flags: D - DNS, e - extended, I - identity, i - dynamic, r - portmap,\n"
    "       s - static, T - twice, N - net-to-net"
)


# 8.3 rewrote NAT and show xlate with it; 8.2 and earlier print "PAT Global ... Local ..." lines with
# no legend (8.2 command reference, show xlate).
XLATE_83 = (8, 3)


def format_show_xlate(
    xlates: Sequence[XlateRecord],
    now: float,
    *,
    most_used: int | None = None,
    release: tuple[int, int] = NEWEST,
) -> str:
    """``show xlate``: 8.3+ ``TCP PAT from inside:10.20.33.2/54676 to outside:192.0.2.3/54676 flags ri
    idle 1:48:12 timeout 0:00:30``; before 8.3 ``PAT Global 192.150.49.1(1024) Local 10.1.1.15(1028)``
    and ``Global 192.150.49.1 Local 10.1.1.15``."""
    if release < XLATE_83:
        lines = [_in_use(len(xlates), most_used)]
        for x in xlates:
            if x.kind == "PAT":
                lines.append(f"PAT Global {x.mapped_ip}({x.mapped_port}) Local {x.real_ip}({x.real_port})")
            else:
                lines.append(f"Global {x.mapped_ip} Local {x.real_ip}")
        return "\n".join(lines) + "\n"
    lines = [_in_use(len(xlates), most_used), _XLATE_LEGEND]
    for x in xlates:
        tail = (
            f"flags {x.flags} idle {format_duration(now - x.last_activity)} "
            f"timeout {format_duration(x.timeout)}"
        )
        if x.kind == "PAT":
            lines.append(
                f"{protocol_upper(x.protocol)} PAT from {x.real_if}:{x.real_ip}/{x.real_port} "
                f"to {x.mapped_if}:{x.mapped_ip}/{x.mapped_port} {tail}"
            )
        else:
            lines.append(f"NAT from {x.real_if}:{x.real_ip} to {x.mapped_if}:{x.mapped_ip} {tail}")
    return "\n".join(lines) + "\n"
