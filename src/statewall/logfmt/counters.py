"""Counters derived from events (drops per reason, connections, xlates, ACL hits) and the ASA's
``show asp drop`` listing.

Counters are computed from the same events as the logs, so a summary can never disagree with the
log it accompanies. ``to_summary`` is what replay writes to ``summary.json``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ..events import (
    AclHit,
    ConnBuilt,
    ConnTeardown,
    Drop,
    DropReason,
    Event,
    IcmpSent,
    XlateBuilt,
    XlateTeardown,
)
from .asa import protocol_name

# Reasons the ASA counts under "Flow drop" (a whole connection refused or torn down by a feature)
# rather than "Frame drop" (one packet discarded). The ASA's per-packet TCP normaliser drops such as
# tcp-mss-exceeded or tcp-seq-past-win are frame drops even though they happen on a connection.
# nat-rpf-failed is a flow drop in [ASP-B] (below).
FLOW_DROPS: frozenset[DropReason] = frozenset(
    {DropReason.INTERCEPT, DropReason.INSPECT_FTP, DropReason.NAT_RPF_FAILED}
)

# Counts right-aligned to this column, as the ASA prints them.
_ASP_WIDTH = 80


class Counters:
    """Running totals over a stream of events. Feed it every event the engine returns."""

    __slots__ = (
        "drops",
        "conns_built",
        "conns_torn_down",
        "teardown_reasons",
        "xlates_built",
        "xlates_torn_down",
        "acl_hits",
        "icmp_sent",
        "xlate_hits",
        "untranslate_hits",
        "drops_by_interface",
        "interface_io",
    )

    def __init__(self) -> None:
        self.drops: Counter[DropReason] = Counter()
        self.conns_built: Counter[str] = Counter()  # by protocol keyword
        self.conns_torn_down: Counter[str] = Counter()
        self.teardown_reasons: Counter[str] = Counter()
        self.xlates_built = 0
        self.xlates_torn_down = 0
        self.acl_hits: Counter[tuple[str, str]] = Counter()  # (acl, action)
        self.icmp_sent = 0
        # Translations built per NAT rule (by the rule's origin): show nat's translate_hits.
        self.xlate_hits: Counter[object] = Counter()
        # Connections opened to a rule's mapped address (UN-NAT) per rule: show nat's untranslate_hits.
        self.untranslate_hits: Counter[object] = Counter()
        self.drops_by_interface: Counter[str] = Counter()
        # Per interface: [packets in, bytes in, packets out, bytes out] (fed by the adapter: ``packet``).
        self.interface_io: dict[str, list[int]] = {}

    def packet(self, iface: str, size: int, *, out: bool) -> None:
        """One packet into (``out`` False) or out of an interface (show interface's counters)."""
        io = self.interface_io.get(iface)
        if io is None:
            io = self.interface_io[iface] = [0, 0, 0, 0]
        i = 2 if out else 0
        io[i] += 1
        io[i + 1] += size

    def feed(self, events: Iterable[Event]) -> None:
        for ev in events:
            if isinstance(ev, Drop):
                self.drops[ev.reason] += 1
                self.drops_by_interface[ev.interface] += 1
            elif isinstance(ev, ConnBuilt):
                self.conns_built[protocol_name(ev.protocol)] += 1
                if ev.untranslated_by is not None:
                    self.untranslate_hits[ev.untranslated_by] += 1
            elif isinstance(ev, ConnTeardown):
                self.conns_torn_down[protocol_name(ev.protocol)] += 1
                if ev.reason:
                    self.teardown_reasons[ev.reason] += 1
            elif isinstance(ev, XlateBuilt):
                self.xlates_built += 1
                if ev.origin is not None:
                    self.xlate_hits[ev.origin] += 1
            elif isinstance(ev, XlateTeardown):
                self.xlates_torn_down += 1
            elif isinstance(ev, AclHit):
                self.acl_hits[(ev.acl, ev.action)] += 1
            elif isinstance(ev, IcmpSent):
                self.icmp_sent += 1

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    def to_summary(self) -> dict[str, Any]:
        """Plain JSON-ready dict; drop reasons keyed by their ``show asp drop`` keyword, in the
        order of the ``DropReason`` list so two summaries diff cleanly."""
        acl_hits: dict[str, dict[str, int]] = {}
        for (acl, action), n in sorted(self.acl_hits.items()):
            acl_hits.setdefault(acl, {})[action] = n
        return {
            "dropped": self.dropped,
            "drops_by_reason": {r.keyword: self.drops[r] for r in DropReason if self.drops[r]},
            "connections_built": dict(sorted(self.conns_built.items())),
            "connections_torn_down": dict(sorted(self.conns_torn_down.items())),
            "teardown_reasons": dict(sorted(self.teardown_reasons.items())),
            "xlates_built": self.xlates_built,
            "xlates_torn_down": self.xlates_torn_down,
            "acl_hits": acl_hits,
            "icmp_sent": self.icmp_sent,
            "interfaces": {
                iface: {
                    "packets_in": io[0],
                    "bytes_in": io[1],
                    "packets_out": io[2],
                    "bytes_out": io[3],
                    "drops": self.drops_by_interface[iface],
                }
                for iface, io in sorted(self.interface_io.items())
            },
        }


# statewall reasons whose keyword an ASA does not have, shown under the ASA's nearest counter (the ASA
# counts them there; show asp drop command usage, Cisco ASA command reference):
#   to-the-box   traffic to the box that no management service takes hits the default deny rule
#                (710003 "TCP access denied by ACL"), counted as acl-drop;
#   no-xlate     8.2's inbound packet with no translation is refused by nat-control's implicit rule
#                (106011), counted as acl-drop;
#   bad-ip-cksum the ASA counts a wrong IP header checksum as invalid-ip-header.
ASA_NEAREST: dict[DropReason, DropReason] = {
    DropReason.TO_THE_BOX: DropReason.ACL_DROP,
    DropReason.NAT_NO_XLATE: DropReason.ACL_DROP,
    DropReason.BAD_IP_CHECKSUM: DropReason.INVALID_IP_HEADER,
}
# The reasons whose keyword and description are the ASA's, checked against two real lists: [ASP-A] a
# real ASA's "capture NAME type asp-drop ?" (an 8.x/9.x release: keyword and description per line) and
# [ASP-B] a 9.8(3) "show asp drop" (Frame drop / Flow drop), both kept as text in public repositories
# (a Russian CCIE Security notebook; a network CLI simulator's command fixtures). Where statewall had
# named a reason differently, it now uses the ASA's word: unsupported-ip-version, tcp-bad-option-list,
# bad-tcp-flags, tcp-syn-ooo, tcpnorm-win-variation, tcpnorm-rexmit-bad (and the ASA's descriptions:
# "IP option drop", "IPv6 bad EH", "ttl exceeded", ...), and ipv6-sp-security-failed as [ASP-A] lists it
# (an earlier statewall spelled it with underscores, as no ASA list does).
ASA_VERIFIED: frozenset[DropReason] = frozenset(
    {
        DropReason.INVALID_IP_VERSION,  # unsupported-ip-version [ASP-A, ASP-B]
        DropReason.INVALID_IP_HEADER,
        DropReason.INVALID_IP_LENGTH,
        DropReason.INVALID_IP_OPTION,
        DropReason.INVALID_IPV6_EXTENSION,  # ipv6-bad-eh [ASP-A]
        DropReason.IPV6_EXTENSION_ORDER,  # ipv6-bad-eh-order [ASP-A]
        DropReason.FRAGMENT_OVERLAP,  # security-failed [ASP-A, ASP-B]
        DropReason.INVALID_TCP_LENGTH,
        DropReason.INVALID_TCP_OPTIONS,  # tcp-bad-option-list [ASP-A, ASP-B]
        DropReason.INVALID_TCP_FLAGS,  # bad-tcp-flags [ASP-A, ASP-B]
        DropReason.BAD_TCP_CHECKSUM,  # bad-tcp-cksum [ASP-A]
        DropReason.INVALID_UDP_LENGTH,
        DropReason.ACL_DROP,
        DropReason.SECURITY_LEVEL,
        DropReason.SP_SECURITY_FAILED,
        DropReason.IPV6_SP_SECURITY_FAILED,
        DropReason.NO_ROUTE,
        DropReason.RPF_VIOLATED,
        DropReason.TTL_EXPIRED,  # ttl-exceeded [ASP-B]
        DropReason.NAT_FAILED,  # nat-xlate-failed [ASP-B]
        DropReason.NAT_RPF_FAILED,  # nat-rpf-failed [ASP-B] (under Flow drop)
        DropReason.NO_MCAST_INTERFACE,  # no-mcast-intrf [ASP-A]
        DropReason.TCP_NOT_SYN,
        DropReason.TCP_3WHS_FAILED,
        DropReason.TCP_SEQ_SYN_DIFF,  # tcp-seq-syn-diff [ASP-A]
        DropReason.TCP_ACK_SYN_DIFF,  # tcp-ack-syn-diff [ASP-A]
        DropReason.TCP_SYN_ON_CONN,  # tcp-syn-ooo [ASP-A]
        DropReason.TCP_SYNACK_ON_CONN,  # tcp-synack-ooo [ASP-A]
        DropReason.TCP_RST_SYN_IN_WINDOW,
        DropReason.TCP_SEQ_PAST_WINDOW,
        DropReason.TCP_INVALID_ACK,
        DropReason.TCP_MSS_EXCEEDED,
        DropReason.TCP_SYNACK_DATA,
        DropReason.TCP_SYN_DATA,
        DropReason.TCP_RESERVED_SET,
        DropReason.TCP_WINDOW_VARIATION,  # tcpnorm-win-variation [ASP-A]
        DropReason.TCP_BAD_RETRANSMISSION,  # tcpnorm-rexmit-bad [ASP-A]
        DropReason.TCP_BUFFER_TIMEOUT,
        DropReason.TCP_BUFFER_FULL,
        DropReason.TCP_DUP_IN_QUEUE,  # tcp-dup-in-queue [ASP-A]
        DropReason.CONN_LIMIT,
        DropReason.INTERCEPT_INVALID,  # intercept-unexpected [ASP-A, ASP-B]
        DropReason.FLOW_EXPIRED,
        DropReason.ICMP_NO_SESSION,  # inspect-icmp-error-no-existing-conn [ASP-A, ASP-B]
    }
)
# Reasons no ASA counter corresponds to: netfilter's and Linux's own (conntrack INVALID, SYNPROXY, the
# kernel's reassembly, martians, source routes, the conntrack table), and the ones statewall names
# itself where neither list has the ASA's word (fragment checks, UDP/ICMP checksums, an unknown
# interface, a tcp-map option drop, TTL evasion, TCP Intercept's own SYN handling, FTP inspection's
# refusals, an unsupported protocol, an internal error). ``show asp drop`` lists them after the ASA's
# table, apart, as statewall's; packet-tracer prints no Drop-reason line for them.
NOT_ASA: frozenset[DropReason] = frozenset(
    r for r in DropReason if r not in ASA_VERIFIED and r not in ASA_NEAREST
)


def asa_drop_counts(
    counters: Mapping[DropReason, int],
) -> tuple[dict[DropReason, int], dict[DropReason, int]]:
    """(the counts under the ASA's own keywords, the counts no ASA keyword takes)."""
    asa: dict[DropReason, int] = {}
    other: dict[DropReason, int] = {}
    for reason, n in counters.items():
        if not n:
            continue
        if reason in NOT_ASA:
            other[reason] = other.get(reason, 0) + n
        else:
            shown = ASA_NEAREST.get(reason, reason)
            asa[shown] = asa.get(shown, 0) + n
    return asa, other


def _asp_section(title: str, rows: list[tuple[DropReason, int]], last_clearing: str) -> list[str]:
    lines = [f"{title}:"]
    for reason, n in rows:
        label = f"  {reason.description} ({reason.keyword})"
        count = str(n)
        lines.append(label + " " * max(1, _ASP_WIDTH - len(label) - len(count)) + count)
    return [*lines, "", f"Last clearing: {last_clearing}"]


def format_show_asp_drop(counters: Mapping[DropReason, int], *, last_clearing: str = "Never") -> str:
    """``show asp drop``: non-zero reasons under ``Frame drop:`` then ``Flow drop:``, each section
    closed by its ``Last clearing:`` line, in ``DropReason`` order, with the ASA's keywords only
    (``ASA_NEAREST``); drops no ASA counter takes (``NOT_ASA``) follow, apart, as statewall's."""
    asa, other = asa_drop_counts(counters)
    frame = [(r, asa[r]) for r in DropReason if asa.get(r) and r not in FLOW_DROPS]
    flow = [(r, asa[r]) for r in DropReason if asa.get(r) and r in FLOW_DROPS]
    lines = _asp_section("Frame drop", frame, last_clearing)
    lines.append("")
    lines += _asp_section("Flow drop", flow, last_clearing)
    if other:
        lines += ["", "statewall: drops no ASA counter takes (statewall's own keywords, not an ASA's):"]
        lines += [f"statewall:   {r.description} ({r.keyword}) {n}" for r, n in other.items()]
    return "\n".join(lines) + "\n"
