"""Replay: the sequence space a captured segment's acknowledgements are written in.

A connection the firewall shifts (the ASA's sequence randomization, the FTP inspector's rewrites:
``statewall.seqrand``, ``statewall.seqadj``) has two spaces per direction: the numbers the sender
wrote (its *own* space) and the numbers the receiver got (the *live* space). A capture of the
receiver's answers shows its acks (and SACK edges) in one of them, and which depends on where the
capture was taken:

- without the firewall (a trace of the two hosts talking directly, or on the sender's side of it):
  the acks name the peer's data as the peer sent it (``own``); replay adds the live shifts;
- on the far side of a box that translated the connection (a real post-NAT capture, as
  ``--ingress outside=`` gives it): the acks name the data as that box forwarded it, already
  shifted by its rewrites and its randomization (``Space.rand`` the box's random offset, which may
  differ from ours, ``Space.adj`` its length changes). Shifting them again made 14 false
  ``tcp-invalid-ack`` drops in a kernel-captured active FTP session.

Which one a capture holds is read from the capture itself, per connection and direction, and kept
(``Connection.replay_space``): a segment addressed to the peer's *mapped* address in a REPLY
direction can only have been captured after the translation (``post_nat``), and its SYN-ACK's ack
tells the other box's random offset exactly. Otherwise the acks are checked against the tracker's
view of the peer's data (``td_end``, in its own space): the reading under which an ack lands on, or
at least inside, what the peer has sent is the capture's. When both readings fit (an offset small
enough, no segment ends on either) the capture is taken as written without the firewall, as before.
"""

from __future__ import annotations

from ..conntrack import REPLY
from ..tcptrack import MAXACKWINCONST

__all__ = ["Space", "post_nat", "to_live"]

_M = 0xFFFFFFFF
_SYN = 0x02
_ACK = 0x10


class Space:
    """How one direction's captured acks relate to the peer's own numbers: ``own = ack - rand``, then
    ``adj`` (True when the capture already holds the rewrites' length changes: undone first)."""

    __slots__ = ("rand", "adj")

    def __init__(self, rand: int, adj: bool | None) -> None:
        self.rand = rand
        self.adj = adj  # None: not known yet (no rewrite, or every ack fitted both readings)

    def __repr__(self) -> str:
        return f"Space(rand={self.rand:#x}, adj={self.adj})"


def post_nat(half) -> bool:
    """A segment of ``half`` that arrived in its key's coordinates was captured after the translation:
    a REPLY half whose destination is the initiator's mapped address or port (the responder can only
    have learnt those from the translated packets)."""
    if half.dir != REPLY:
        return False
    _, _, _, _, dst, dport = half.key
    return (half.new_dst is not None and half.new_dst != dst) or (
        half.new_dport is not None and half.new_dport != dport
    )


def _after(a: int, b: int) -> bool:
    return ((b - a) & _M) > 0x7FFFFFFF


def _seqadj(conn):
    shift = conn.seqrand
    sa = shift.seqadj if shift is not None else getattr(conn.helper, "seqadj", None)
    return sa if sa is not None and sa.active else None


def to_live(half, pkt, found_live: bool) -> None:
    """Carry the acks and SACK edges of a captured segment of ``half`` into the live space.

    ``found_live``: the segment arrived in the half's own key (its addresses need no rewrite), so the
    capture may have been taken after a translating box; otherwise it was taken without one.
    """
    conn = half.conn
    d = half.dir
    flags = pkt.flags
    if not flags & _ACK:
        return
    shift = conn.seqrand
    ours = 0
    if shift is not None:
        ours = shift.offsets[1 - d]
    sa = _seqadj(conn)
    trk = conn.tcp
    if not found_live or trk is None:
        _apply(pkt, d, sa, ours, 0, False)
        return
    spaces = conn.replay_space
    if spaces is None:
        conn.replay_space = spaces = [None, None]
    sp = spaces[d]
    end = trk.seen[1 - d].td_end
    win = max(trk.seen[d].td_maxwin, MAXACKWINCONST)
    ack = pkt.ack
    if sp is None:
        evidence = post_nat(half)
        if flags & _SYN and evidence:
            # The SYN-ACK of a post-NAT capture: its ack is the initiator's ISN + 1 as that box sent it.
            rand = (ack - end) & _M
        elif _fits(ack - ours, end, win) and not _fits(ack, end, win):
            rand = ours
        else:
            rand = 0
        spaces[d] = sp = Space(rand, True if evidence else None)
    if sa is not None and sp.adj is None:
        sp.adj = _decide_adj(sa, d, (ack - sp.rand) & _M, end, win)
    if sp.rand == ours and (sp.adj or sa is None):
        return  # written in the live space already: left alone
    _apply(pkt, d, sa, ours, sp.rand, bool(sp.adj))


def _fits(own: int, end: int, win: int) -> bool:
    """An ack (own space) the tracker accepts: not past the peer's data, not below its window."""
    own &= _M
    return not _after(own, end) and not _after((end - win) & _M, own)


def _decide_adj(sa, d: int, raw: int, end: int, win: int) -> bool | None:
    """Whether acks of this direction hold the rewrites (True), not (False), or cannot tell (None)."""
    undone = (raw - sa.ack_offset(d, raw)) & _M
    if undone == raw:
        return None
    if undone == end and raw != end:
        return True
    if raw == end:
        return False
    fits_raw, fits_undone = _fits(raw, end, win), _fits(undone, end, win)
    if fits_undone and not fits_raw:
        return True
    if fits_raw and not fits_undone:
        return False
    return None


def _apply(pkt, d: int, sa, ours: int, rand: int, adj: bool) -> None:
    """Rewrite the ack and SACK edges: out of the capture's space (``rand``, ``adj``) into the peer's
    own numbers, then into the live space (the rewrites' shifts, then our random offset)."""

    def live(x: int, edge_end: bool) -> int:
        x = (x - rand) & _M
        if sa is not None:
            if adj:
                x = (x - sa.ack_offset(d, x)) & _M
            # SeqAdj.to_live: the shift of the byte before an ack or a right edge, of a left edge's own.
            other = sa.ways[1 - d]
            x = (x + other.offset((x - 1) & _M if edge_end else x)) & _M
        return (x + ours) & _M

    ack = pkt.ack
    new = live(ack, True)
    if new != ack:
        pkt.set_ack(new)
    if pkt.doff > 20:
        for i, (left, right) in enumerate(pkt.sack_blocks()):
            nl, nr = live(left, False), live(right, True)
            if nl != left or nr != right:
                pkt.set_sack_block(i, nl, nr)
