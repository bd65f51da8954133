"""Dead Connection Detection (ASA ``set connection timeout dcd [retry-interval [max-retries]]``), and the
segments the firewall writes into a tracked TCP connection on its own: DCD probes and the RSTs of
``idle ... reset``.

Owns the probing of one idle connection (``Probe``) and the crafting of those segments from the
tracked sequence state. The engine starts a probe when an established connection's idle timer expires
with DCD set (half-closed and embryonic ones are never probed), hands it the segments that arrive
meanwhile, and runs its rounds from the timer queue.

What the ASA does (reference A.3; Cisco TAC's description of the probes):

* A probe is an RFC 1122 keep-alive: a bare ACK with ``seq = SND.NXT - 1`` -- one below what the
  receiving end expects from its peer, so it falls just left of the window -- and ``ack`` = what that
  end has sent. A live TCP answers such a segment with an ACK for what it expects; a host that lost
  the connection answers with a RST, a host that is gone does not answer.
* Each end is probed as if by its peer (the peer's addresses as that end knows them, its sequence
  numbers shifted as the firewall shifts them: randomization, inspection rewrites, TCP Intercept).
* Answers are consumed: they never reach the other end, which did not ask anything.
* When both ends answered, the connection's activity time becomes now and its idle timer restarts.
  An end that has not answered is probed again every ``retry-interval``; after ``max-retries`` probes
  without both answers the connection is freed (with a RST to each end when ``idle ... reset`` is set).
  Any other segment of the connection ends the probing: the connection is in use.

``show service-policy`` counts per class: ``dcd_client_probes`` (to the initiator),
``dcd_server_probes`` and ``dcd_expirations``.
"""

from __future__ import annotations

from collections import Counter

from . import craft

_M = 0xFFFFFFFF
_FIN = 0x01
_SYN = 0x02
_RST = 0x04
_ACK = 0x10
_PROBE_KEYS = ("dcd_client_probes", "dcd_server_probes")


def seq_seen_by_peer(conn, sender: int, seq: int) -> int:
    """``sender``'s sequence number ``seq`` (in its own numbers) as its peer receives it."""
    shift = conn.seqrand
    if shift is not None:
        sa = shift.seqadj
        if sa is not None and sa.active:
            seq += sa.seq_offset(sender, seq)
        return (seq + shift.offsets[sender]) & _M
    helper = conn.helper
    if helper is not None and helper.seqadj.active:
        return (seq + helper.seqadj.seq_offset(sender, seq)) & _M
    return seq & _M


def segment_to(conn, receiver: int, flags: int, behind: int = 0) -> tuple[str, bytearray]:
    """(interface, segment) sent to the ``receiver`` end as if by its peer: seq = the peer's next
    sequence number minus ``behind``, ack = what the receiver has sent, from the tracker's state."""
    sender = 1 - receiver
    seen = conn.tcp.seen
    half = conn.halves[receiver]
    # Packets toward an end look like the reverse of that end's own packets as they arrive.
    v, _, src, sport, dst, dport = half.key
    peer = seen[sender]
    seq = seq_seen_by_peer(conn, sender, (peer.td_end - behind) & _M)
    window = min(0xFFFF, peer.td_maxwin >> peer.td_scale) if not flags & _RST else 0
    pkt = craft.tcp_packet(v, dst, src, dport, sport, seq, seen[receiver].td_end, flags, window=window)
    return half.in_iface, pkt


def keepalive(conn, receiver: int) -> tuple[str, bytearray]:
    """A DCD probe for the ``receiver`` end."""
    return segment_to(conn, receiver, _ACK, behind=1)


def reset(conn, receiver: int) -> tuple[str, bytearray]:
    """A RST for the ``receiver`` end, at exactly the sequence number it expects (RFC 5961 accepts it)."""
    return segment_to(conn, receiver, _RST | _ACK)


class Probe:
    """The probing of one idle connection (``Connection.dcd``); queued on the engine's timers.

    ``rounds`` counts the probe rounds sent, ``answered[d]`` whether end ``d`` (0 initiator, 1
    responder) has answered, ``due`` when the next round (or the verdict) is due.
    """

    __slots__ = ("conn", "interval", "max_retries", "rounds", "answered", "due", "counters")

    def __init__(self, conn, interval: float, max_retries: int, counters: Counter | None) -> None:
        self.conn = conn
        self.interval = interval
        self.max_retries = max_retries
        self.rounds = 0
        self.answered = [False, False]
        self.due = 0.0
        self.counters = counters if counters is not None else Counter()

    @property
    def exhausted(self) -> bool:
        return self.rounds >= self.max_retries

    @property
    def alive(self) -> bool:
        return self.answered[0] and self.answered[1]

    def send(self, now: float) -> list[tuple[str, bytearray]]:
        """One round: a probe to each end that has not answered yet; the next round is due after
        ``retry-interval``."""
        out = []
        for d in (0, 1):
            if not self.answered[d]:
                out.append(keepalive(self.conn, d))
                self.counters[_PROBE_KEYS[d]] += 1
        self.rounds += 1
        self.due = now + self.interval
        return out

    def answers(self, direction: int, pkt) -> bool:
        """True when this segment from ``direction`` is its end's answer to a probe (then consumed).

        The answer to a keep-alive is a bare ACK at the sender's next sequence number; a segment with
        data, SYN, FIN or RST is the connection in use, not an answer.
        """
        if pkt.flags & (_SYN | _FIN | _RST | _ACK) != _ACK or pkt.payload_len:
            return False
        if self.rounds == 0 or pkt.seq != self.conn.tcp.seen[direction].td_end:
            return False
        self.answered[direction] = True
        return True
