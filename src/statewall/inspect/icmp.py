"""ICMP inspection (ASA ``inspect icmp``): one echo reply per echo request, the session closed on it.

Owns what the ASA's ICMP inspection engine does to an echo session (Cisco ASA firewall configuration
guide, "ICMP Inspection": "The ICMP inspection engine ensures that there is only one response for each
request, and that the sequence number is correct"):

- each echo request's sequence number is remembered on the connection (keyed by the identifier, as
  the ASA's ``show conn`` shows ``faddr/0 gaddr/ID laddr/ID``);
- an echo reply must carry the sequence number of a request still waiting; it answers that request,
  and once none waits the connection is closed as soon as the reply is forwarded (302021 at once, as
  a real ASA logs it; see fir3net's "ICMP inspect and the connection table");
- a reply with a sequence number no request sent, or one that arrives when no session waits for it, is
  dropped with 313004 "Denied ICMP type=0, from laddr A on interface outside to B: no matching
  session" (asp-drop ``inspect-icmp-seq-num-not-matched``). The new-flow stages refuse the second
  case (``statewall.engine.asa.limits``).

ICMP error inspection (``inspect icmp error``: the intermediate hops' addresses translated by the NAT
rules) is the ASA's related-error path's (``statewall.engine.icmp.related_error``).

Without ``inspect icmp`` the ASA's ICMP connections are unidirectional, and there is no inspector: the
request's connection does not match its reply, which needs an access rule of its own and builds its own
connection (``statewall.engine.asa.stateless``; docs/asa.md, "ICMP without inspection").
"""

from __future__ import annotations

from ..events import DropReason
from .refusal import Refusal

ECHO_REQUESTS = frozenset({(4, 8), (6, 128)})
ECHO_REPLIES = frozenset({(4, 0), (6, 129)})


class _NoSeqAdj:
    __slots__ = ()
    active = False


_NO_SEQADJ = _NoSeqAdj()


def echo_seq(pkt) -> int:
    """An echo message's sequence number (the codec gives its identifier as both ports)."""
    at = pkt.l4off + 6
    return int.from_bytes(pkt.buf[at : at + 2], "big")


class IcmpInspector:
    """The ICMP inspection state of one echo connection (the requester's side is the ORIGINAL half)."""

    __slots__ = ("conn", "origin", "pending", "close_after", "use", "seqadj")

    def __init__(self, conn, origin=None, use=None) -> None:
        self.conn = conn
        self.origin = origin  # the ``inspect icmp`` line
        self.pending: set[int] = set()  # sequence numbers of the requests waiting for their reply
        self.close_after = False
        self.use = use
        self.seqadj = _NO_SEQADJ

    def closed(self, now: float) -> None:
        """The session is gone: nothing outlives it."""

    def to_live(self, direction: int, pkt) -> None:
        """Replay: no sequence space to carry (ICMP)."""

    def inspect(self, half, pkt, now: float, ev: list) -> Refusal | None:
        kind = (pkt.version, pkt.icmp_type)
        refusal = None
        if half.dir == 0 and kind in ECHO_REQUESTS:
            self.pending.add(echo_seq(pkt))
        elif half.dir == 1 and kind in ECHO_REPLIES:
            seq = echo_seq(pkt)
            if seq in self.pending:
                self.pending.discard(seq)
                self.close_after = not self.pending
            else:
                refusal = Refusal(
                    f"echo reply seq {seq} answers no waiting request (inspect icmp: one reply per request)",
                    origin=self.origin,
                    reason=DropReason.INSPECT_ICMP_SEQ,
                )
        if self.use is not None:
            self.use.count_inspected("icmp", refusal is not None)
        return refusal
