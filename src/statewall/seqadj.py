"""Sequence adjustment after a payload rewrite changed a TCP segment's length (nf_conntrack_seqadj.c).

Owns, per connection, the two directions' corrections. When an application inspection (the FTP
inspector) replaces ``PORT 10,0,0,2,4,1`` by ``PORT 192,168,9,30,4,1`` the client's byte stream grows by
four bytes on its way to the server: every later sequence number the client sends must be moved up by
four, every acknowledgement the server sends back for that data moved down by four, and SACK blocks
with them, or both ends see the other acknowledge data that was never sent.

Like Linux, each direction keeps one ``correction_pos`` (the sequence number, in the sender's own
space, of the segment whose length changed) and two offsets: ``offset_before`` for segments at or
before it (retransmissions of older data) and ``offset_after`` for those after it. A new change is
recorded only when the previous one has been taken into account (``before == after``) or the new
segment lies after ``correction_pos``: a retransmitted rewritten segment therefore does not add its
delta twice. Only the most recent correction is exact; a retransmission of data older than the one
before it gets ``offset_before`` -- the kernel's known limit, kept.

The connection tracker sees packets as they arrive, before adjustment: a sender's own sequence
numbers are never adjusted in its view, but acknowledgements come back in the adjusted space.
``ack_offset`` gives the tracker what to subtract (``nf_ct_seq_offset(ct, !dir, ack - 1)``).
"""

from __future__ import annotations

__all__ = ["SeqAdj"]

_M = 0xFFFFFFFF


def _after(a: int, b: int) -> bool:
    """``a`` follows ``b`` in 32-bit sequence space (the kernel's ``after()``)."""
    return ((b - a) & _M) > 0x7FFFFFFF


class _Way:
    """One direction's correction (``struct nf_ct_seqadj``)."""

    __slots__ = ("correction_pos", "offset_before", "offset_after")

    def __init__(self) -> None:
        self.correction_pos = 0
        self.offset_before = 0
        self.offset_after = 0

    def offset(self, seq: int) -> int:
        """The shift of the sender's sequence number ``seq`` (original space)."""
        return self.offset_after if _after(seq, self.correction_pos) else self.offset_before

    def __repr__(self) -> str:
        return f"_Way(pos={self.correction_pos}, before={self.offset_before}, after={self.offset_after})"


class SeqAdj:
    """The corrections of one connection, indexed by direction (0 ORIGINAL, 1 REPLY)."""

    __slots__ = ("ways", "active")

    def __init__(self) -> None:
        self.ways = (_Way(), _Way())
        # False until a length change was recorded: the forwarding path skips all of this until then.
        self.active = False

    def set(self, direction: int, seq: int, off: int) -> bool:
        """``nf_ct_seqadj_set``: the segment of ``direction`` starting at ``seq`` grew by ``off`` bytes.

        Returns True when the change was recorded (False for 0 or a retransmission already counted).
        """
        if off == 0:
            return False
        self.active = True
        way = self.ways[direction]
        if way.offset_before == way.offset_after or _after(seq & _M, way.correction_pos):
            way.correction_pos = seq & _M
            way.offset_before = way.offset_after
            way.offset_after += off
            return True
        return False

    def init(self, direction: int, off: int) -> None:
        """``nf_ct_seqadj_init``: every segment of ``direction`` moves by ``off`` (SYNPROXY's splice: the
        server's numbers into the cookie's). An offset of 0 changes nothing, as in the kernel."""
        if off == 0:
            return
        self.active = True
        way = self.ways[direction]
        way.offset_before = way.offset_after = off & _M

    def seq_offset(self, direction: int, seq: int) -> int:
        """``nf_ct_seq_offset``: the shift applied to the sender's sequence number ``seq``."""
        return self.ways[direction].offset(seq)

    def ack_offset(self, direction: int, ack: int) -> int:
        """What the tracker subtracts from an ack (and SACK edges) sent in ``direction``.

        The ack refers to the other direction's data, which was shifted on its way: this is the shift
        of the byte just before ``ack`` (``nf_ct_seq_offset(ct, !dir, ack - 1)``), computed as the
        kernel does on the adjusted value.
        """
        return self.ways[1 - direction].offset((ack - 1) & _M)

    def adjust(self, direction: int, pkt) -> None:
        """``nf_ct_seq_adjust``: move a forwarded segment of ``direction`` into the receiver's space.

        seq gains this direction's offset; ack loses the other direction's (looked up, as in the kernel,
        with the other offset_before subtracted first); each SACK block edge likewise.
        """
        this = self.ways[direction]
        other = self.ways[1 - direction]
        seq = pkt.seq
        seqoff = this.offset_after if _after(seq, this.correction_pos) else this.offset_before
        ack = pkt.ack
        ackoff = (
            other.offset_after
            if _after((ack - other.offset_before) & _M, other.correction_pos)
            else other.offset_before
        )
        if seqoff:
            pkt.set_seq((seq + seqoff) & _M)
        if ackoff:
            pkt.set_ack((ack - ackoff) & _M)
        if pkt.doff > 20 and (other.offset_before or other.offset_after):
            self._sack(pkt, other)

    @staticmethod
    def _sack(pkt, other: _Way) -> None:
        """``nf_ct_sack_adjust``: SACK blocks acknowledge the other direction's data too."""
        pos, before, after = other.correction_pos, other.offset_before, other.offset_after
        for i, (left, right) in enumerate(pkt.sack_blocks()):
            nl = (left - (after if _after((left - before) & _M, pos) else before)) & _M
            nr = (right - (after if _after((right - before) & _M, pos) else before)) & _M
            if nl != left or nr != right:
                pkt.set_sack_block(i, nl, nr)

    def to_live(self, direction: int, pkt) -> None:
        """Carry a captured segment of ``direction`` into the acknowledgement space it would have live.

        For replay: a capture taken without the firewall holds acks and SACK edges for the other
        direction's data as it was sent; live, the sender received that data shifted by the rewrites and
        acknowledges it in the shifted space (the inverse of what ``adjust`` undoes).
        """
        other = self.ways[1 - direction]
        if not (other.offset_before or other.offset_after):
            return
        ack = pkt.ack
        off = other.offset((ack - 1) & _M)
        if off and pkt.flags & 0x10:
            pkt.set_ack((ack + off) & _M)
        if pkt.doff > 20:
            for i, (left, right) in enumerate(pkt.sack_blocks()):
                nl = (left + other.offset(left)) & _M
                nr = (right + other.offset((right - 1) & _M)) & _M
                if nl != left or nr != right:
                    pkt.set_sack_block(i, nl, nr)

    def __repr__(self) -> str:
        return f"SeqAdj({self.ways[0]!r}, {self.ways[1]!r})"
