"""TCP sequence number randomization (ASA ``set connection random-sequence-number``, pf ``modulate
state``), and the lab's fault that reproduces the old PIX bug of seed 003.

Owns the per-connection offsets. The ASA replaces the initial sequence number of a connection's SYN
with an unpredictable one; from then on every segment from that side has the same offset added to
``seq``, and every segment from the other side has it taken off ``ack`` and off both edges of each
SACK block (the SACK blocks name the randomized side's data in the numbers its peer saw). Timestamps
are left alone: they are not sequence numbers.

The shift is applied together with the FTP inspector's payload-length corrections
(``statewall.seqadj``), in one object per connection (``SeqShift``): forwarding (``adjust``), the
tracker's view (``ack_offset``: window tracking sees each side's own sequence space) and replay
(``to_live``) each make one call, whatever shifts a connection carries.

The offset is a keyed hash (BLAKE2b) of the connection's tuple and original ISN under a secret that
belongs to one ``Firewall``: unpredictable from outside, reproducible in tests that give a seed. The
ASA randomizes the initiator's ISN (``for_connection``); ``install`` takes either direction, as pf's
``modulate state`` would need.

``FAULTS`` lists deliberate misbehaviours a lab may switch on by name; none is on by default.
``pix-sack-bug`` leaves SACK blocks untranslated, as the PIX did in seed 003: the randomized side
receives SACK edges in the shifted numbers, and a Linux tracker in front of it marks those segments
INVALID ("ACK is over upper bound"). It is a fault, not a mode: it exists to reproduce the failure.
"""

from __future__ import annotations

import hashlib
import os
import struct

FAULT_PIX_SACK = "pix-sack-bug"

FAULTS: dict[str, str] = {
    FAULT_PIX_SACK: "leave SACK blocks untranslated when randomizing sequence numbers (old PIX, seed 003)",
}

_M = 0xFFFFFFFF
_ACK = 0x10


def make_secret(seed: int | bytes | str | None = None) -> bytes:
    """A per-firewall key: random unless a seed is given (tests, reproducible labs)."""
    if seed is None:
        return os.urandom(16)
    if isinstance(seed, int):
        seed = seed.to_bytes(16, "big", signed=False)
    elif isinstance(seed, str):
        seed = seed.encode()
    return hashlib.blake2b(seed, digest_size=16).digest()


def offset_for(secret: bytes, version: int, src: int, sport: int, dst: int, dport: int, isn: int) -> int:
    """A non-zero 32-bit offset for the side whose SYN carried ``isn``."""
    h = _keyed(secret).copy()
    if version == 6:
        h.update(src.to_bytes(16, "big") + dst.to_bytes(16, "big") + _PORTS_ISN.pack(sport, dport, isn))
    else:
        h.update(_V4_INPUT.pack(src, dst, sport, dport, isn))
    off = int.from_bytes(h.digest(), "big")
    return off or 1  # an offset of 0 would leave the ISN as it was


# The hash's input: source, destination, source port, destination port, ISN, big-endian.
_V4_INPUT = struct.Struct(">IIHHI")
_PORTS_ISN = struct.Struct(">HHI")
# The keyed BLAKE2b state of each secret, copied per connection: keying a new hash object compresses
# the key's block again, half of what one offset cost (5.2 -> 2.6 µs per SYN, measured alone).
_KEYED: dict[bytes, object] = {}


def _keyed(secret: bytes):
    h = _KEYED.get(secret)
    if h is None:
        if len(_KEYED) >= 64:  # firewalls of one process (tests make many): bounded
            _KEYED.clear()
        h = _KEYED[secret] = hashlib.blake2b(key=secret, digest_size=4)
    return h


class SeqShift:
    """One connection's randomization: ``offsets[d]`` is added to the seq of direction ``d``'s segments.

    Composed with the FTP inspector's ``SeqAdj`` (``seqadj``, None when not inspected) so that the engine
    has one call per job: ``ack_offset`` for the tracker, ``adjust`` when forwarding, ``to_live`` for
    replays. The random offset is applied outside the ``SeqAdj``: its correction positions are in
    the sender's own numbers, so an acknowledgement is first taken out of the random offset and then
    handed to ``SeqAdj`` in the space it was written for; seq gets the random offset after ``SeqAdj``'s.
    """

    # The two offsets are slots of their own (``offsets`` is their pair, built when asked: no tuple per
    # connection), and ``pix-sack-bug`` (a lab fault) is a class attribute, True only in
    # ``_PixSeqShift``: three slots in all (memory, docs/performance.md).
    __slots__ = ("_off0", "_off1", "seqadj")

    sack_untranslated = False

    def __init__(self, original: int, reply: int = 0, *, sack_untranslated: bool = False) -> None:
        self._off0 = original & _M
        self._off1 = reply & _M
        self.seqadj = None
        if sack_untranslated:
            self.__class__ = _PixSeqShift

    @property
    def offsets(self) -> tuple[int, int]:
        """``offsets[d]`` is added to the seq of direction ``d``'s segments."""
        return (self._off0, self._off1)

    @offsets.setter
    def offsets(self, pair: tuple[int, int]) -> None:
        self._off0, self._off1 = pair

    def ack_offset(self, direction: int, ack: int) -> int:
        """What the tracker subtracts from this direction's ack and SACK edges."""
        peer = self._off0 if direction else self._off1
        sa = self.seqadj
        if sa is not None and sa.active:
            return (peer + sa.ack_offset(direction, (ack - peer) & _M)) & _M
        return peer

    def adjust(self, direction: int, pkt) -> None:
        """Carry a forwarded segment from its sender's numbers into those its receiver knows."""
        if direction:
            own = self._off1
            peer = self._off0
        else:
            own = self._off0
            peer = self._off1
        written = sack_edges(pkt) if self.sack_untranslated else None
        if peer and pkt.flags & _ACK:
            pkt.set_ack((pkt.ack - peer) & _M)
            if pkt.doff > 20:
                for i, (left, right) in enumerate(pkt.sack_blocks()):
                    pkt.set_sack_block(i, (left - peer) & _M, (right - peer) & _M)
        sa = self.seqadj
        if sa is not None and sa.active:
            sa.adjust(direction, pkt)
        if own:
            pkt.set_seq((pkt.seq + own) & _M)
        if written:
            untranslate_sack(pkt, written)

    def to_live(self, direction: int, pkt) -> None:
        """A segment captured without the firewall, as its sender would have written it through it: its
        acks and SACK edges name the peer's data in the numbers the peer's segments arrived with."""
        sa = self.seqadj
        if sa is not None and sa.active:
            sa.to_live(direction, pkt)
        peer = self._off0 if direction else self._off1
        if peer and pkt.flags & _ACK:
            pkt.set_ack((pkt.ack + peer) & _M)
            if pkt.doff > 20:
                for i, (left, right) in enumerate(pkt.sack_blocks()):
                    pkt.set_sack_block(i, (left + peer) & _M, (right + peer) & _M)

    def restore_quoted(self, direction: int, inner) -> None:
        """A segment of ``direction`` quoted in an ICMP error going back to its sender: its own seq."""
        own = self._off1 if direction else self._off0
        if own:
            inner.set_seq((inner.seq - own) & _M)


class _PixSeqShift(SeqShift):
    """A SeqShift with the ``pix-sack-bug`` fault: SACK blocks left untranslated."""

    __slots__ = ()
    sack_untranslated = True


def for_connection(secret: bytes, pkt, *, faults: frozenset[str] | set[str] = frozenset()) -> SeqShift:
    """Randomize a new connection from its SYN (ASA: the initiator's ISN is replaced)."""
    off = offset_for(secret, pkt.version, pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.seq)
    if faults and FAULT_PIX_SACK in faults:
        return SeqShift(off, 0, sack_untranslated=True)
    return SeqShift(off)


def sack_edges(pkt) -> list[tuple[int, int]] | None:
    """The SACK blocks as the sender wrote them, for the ``pix-sack-bug`` fault to put back."""
    if pkt.doff <= 20:
        return None
    return pkt.sack_blocks() or None


def untranslate_sack(pkt, blocks: list[tuple[int, int]]) -> None:
    """The ``pix-sack-bug`` fault: undo the SACK translation, leaving the edges the sender wrote."""
    for i, (left, right) in enumerate(blocks):
        pkt.set_sack_block(i, left, right)
