"""DNS inspection (ASA ``inspect dns [MAP]``): DNS guard and the message-length limits, on UDP.

Owns what the ASA's DNS inspection engine does to the packets of one UDP connection to a DNS server
(Cisco ASA firewall configuration guide, "DNS Inspection"; "How DNS Application Inspection Works"):

- **DNS guard** (``dns-guard``, on unless the map says ``no dns-guard``): each query's identifier is
  remembered; a reply must carry the identifier of a query still waiting (else it is dropped,
  asp-drop ``inspect-dns-id-not-matched``), and it answers that query: one reply per query. "The ASA
  tears down the DNS session associated with a DNS query as soon as the DNS reply is forwarded": once
  no query is waiting after a reply, the connection is closed (``close_after``), so a second reply
  arrives as a new flow and meets the access rules.
- **message-length maximum** (``policy-map type inspect dns``, the factory ``preset_dns_map`` says 512):
  a DNS message longer than the limit is dropped with 410001 "Dropped UDP DNS reply from ...; packet
  length N bytes exceeds configured limit of 512 bytes", asp-drop ``inspect-dns-pak-too-long``.
  ``message-length maximum client N`` / ``server N`` set the limit of the client's (queries) and the
  server's (replies) messages; ``client auto`` (in the 9.x preset map) lets a reply be as long as the
  EDNS0 UDP payload size its query advertised (RFC 6891's OPT record), as Cisco's fix for DNSSEC answers
  (CSCta35563) describes. ``inspect dns`` without a map checks no length (the configuration guide: "If
  you enter the inspect dns command without the maximum-length option, DNS packet size is not
  checked"); the factory policy's ``inspect dns`` is ``inspect dns preset_dns_map``.
- A UDP payload too short for a DNS header is dropped (``inspect-dns-invalid-pak``).

Not modelled (parsed, kept in ``DnsInspectMap``): DNS rewrite of A records by NAT (``nat-rewrite``),
``id-randomization``, ``protocol-enforcement``'s label checks, ``match`` rules, DNS over TCP.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..events import DropReason
from ..policy import BUILTIN, DnsInspectMap, Inspect, Origin, Policy
from .refusal import Refusal

# The factory ``policy-map type inspect dns preset_dns_map`` (9.x: ``parameters / message-length maximum
# client auto / message-length maximum 512``).
PRESET = "preset_dns_map"
_PRESET_MAP = DnsInspectMap(PRESET, message_length_max=512, message_length_client="auto")
DNS_HEADER = 12
_OPT = 41  # the EDNS0 pseudo resource record (RFC 6891)


@dataclass(frozen=True, slots=True)
class DnsLimits:
    """What one ``inspect dns`` line enforces: the map's parameters resolved."""

    guard: bool = True
    query_max: int | None = None  # None: not checked
    reply_max: int | None = None
    reply_edns: bool = False  # ``client auto``: a reply may be as long as its query's EDNS0 size
    origin: Origin = BUILTIN


def limits_for(policy: Policy, ins: Inspect) -> DnsLimits:
    """The limits of ``inspect dns [MAP]`` under ``policy`` (the map defined there, or the factory
    preset map; the factory policy's ``inspect dns`` is the preset map's)."""
    if ins.max_length is not None:
        # 7.x/8.0's ``inspect dns maximum-length N``: one limit for every DNS message.
        return DnsLimits(query_max=ins.max_length, reply_max=ins.max_length, origin=ins.origin)
    name = ins.map or (PRESET if ins.origin is BUILTIN else None)
    if name is None:
        return DnsLimits(origin=ins.origin)
    dm = policy.dns_inspect_maps.get(name)
    if dm is None:
        dm = _PRESET_MAP if name == PRESET else DnsInspectMap(name)
    client, server = dm.message_length_client, dm.message_length_server
    return DnsLimits(
        guard=dm.dns_guard,
        query_max=client if isinstance(client, int) else dm.message_length_max,
        reply_max=server if isinstance(server, int) else dm.message_length_max,
        reply_edns=client == "auto",
        origin=dm.origin if dm.origin is not BUILTIN else ins.origin,
    )


class _NoSeqAdj:
    """DNS inspection never changes a payload's length: nothing to adjust (the engine asks)."""

    __slots__ = ()
    active = False


_NO_SEQADJ = _NoSeqAdj()


class DnsInspector:
    """The DNS inspection state of one UDP connection (the client's side is the ORIGINAL half)."""

    __slots__ = ("conn", "limits", "pending", "close_after", "use", "seqadj")

    def __init__(self, conn, limits: DnsLimits, use=None) -> None:
        self.conn = conn
        self.limits = limits
        # Query identifier -> the EDNS0 UDP payload size its query advertised (0: none).
        self.pending: dict[int, int] = {}
        self.close_after = False  # the engine closes the connection once this packet is forwarded
        self.use = use  # the class's counters (show service-policy), if any
        self.seqadj = _NO_SEQADJ

    def closed(self, now: float) -> None:
        """The connection is gone: nothing of it outlives it (no expectations)."""

    def to_live(self, direction: int, pkt) -> None:
        """Replay: DNS inspection shifts no sequence numbers (UDP)."""

    def inspect(self, half, pkt, now: float, ev: list) -> Refusal | None:
        refusal = self._check(half.dir, pkt)
        if self.use is not None:
            self.use.count_inspected("dns", refusal is not None)
        return refusal

    def _check(self, direction: int, pkt) -> Refusal | None:
        data = pkt.payload()
        size = len(data)
        lim = self.limits
        if size < DNS_HEADER:
            return Refusal(
                f"UDP payload of {size} bytes is too short for a DNS header",
                reason=DropReason.INSPECT_DNS_INVALID,
            )
        qid = int.from_bytes(data[0:2], "big")
        if direction == 0:  # the client's query
            if lim.query_max is not None and size > lim.query_max:
                return self._too_long("query", size, lim.query_max)
            self.pending[qid] = _edns_size(data) if lim.reply_edns else 0
            return None
        # The server's reply.
        waiting = self.pending.get(qid)
        if lim.guard and waiting is None:
            return Refusal(
                f"DNS reply id {qid} answers no waiting query (DNS guard: one reply per query)",
                reason=DropReason.INSPECT_DNS_ID,
            )
        limit = lim.reply_max
        if waiting and limit is not None:
            limit = max(limit, waiting)
        if limit is not None and size > limit:
            return self._too_long("reply", size, limit)
        if lim.guard:
            del self.pending[qid]
            if not self.pending:
                self.close_after = True
        return None

    def _too_long(self, kind: str, size: int, limit: int) -> Refusal:
        return Refusal(
            f"DNS {kind} of {size} bytes exceeds the configured limit of {limit} bytes",
            reason=DropReason.INSPECT_DNS_TOO_LONG,
            origin=self.limits.origin,
            detail={"dns_kind": kind, "length": size, "limit": limit},
        )


def _edns_size(msg: bytes) -> int:
    """The UDP payload size a query's EDNS0 OPT record advertises (0: none, or a message this reader
    cannot walk). The OPT record sits in the additional section; names may be compressed."""
    try:
        qd, an, ns, ar = (int.from_bytes(msg[i : i + 2], "big") for i in (4, 6, 8, 10))
        at = DNS_HEADER
        for _ in range(qd):
            at = _skip_name(msg, at) + 4
        for n in range(an + ns + ar):
            at = _skip_name(msg, at)
            rtype = int.from_bytes(msg[at : at + 2], "big")
            rclass = int.from_bytes(msg[at + 2 : at + 4], "big")
            rdlen = int.from_bytes(msg[at + 8 : at + 10], "big")
            if rtype == _OPT and n >= an + ns:
                return rclass
            at += 10 + rdlen
    except IndexError:
        return 0
    return 0


def _skip_name(msg: bytes, at: int) -> int:
    """The offset after the name at ``at`` (labels, ending in a zero byte or a compression pointer)."""
    while True:
        n = msg[at]
        if n == 0:
            return at + 1
        if n & 0xC0 == 0xC0:
            return at + 2
        at += 1 + n
