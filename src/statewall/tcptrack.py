"""TCP connection tracking exactly as Linux netfilter does it (nf_conntrack_proto_tcp.c, 6.x).

This module owns everything that decides what a TCP segment means to a tracked connection: the
state table (``TCP_CONNTRACKS``, two directions x six flag classes x ten states, as data), Guido van
Rooij's window tracking with netfilter's four bounds, the re-synchronisation tricks for SYNs and
SYN/ACKs the tracker is not sure about, RST validation, the retransmission counter and the choice of
timeout after each packet. It never sees bytes, sockets or clocks: the engine hands it decoded packets
and asks for a verdict; docs/tcptrack.md lists what is tracked and every deviation from Linux.

Verdicts follow netfilter's three outcomes:

``ACCEPT``  the segment is part of the connection and updated its state (``tcp_packet`` returned
            NF_ACCEPT after ``tcp_in_window`` said yes).
``IGNORE``  the segment belongs to the connection but the tracker is not sure about it, so state and
            timer are left alone; the packet itself is *not* invalid (NF_ACCEPT without update).
``INVALID`` netfilter returns -NF_ACCEPT: conntrack does not drop, the packet gets ctstate INVALID
            and the ruleset decides. ``reason`` carries netfilter's own log words.

Life cycle, as the engine drives it::

    trk, reason = TcpTracker.new(pkt, settings)      # tcp_new + the first tcp_packet, done here
    verdict, reason = trk.packet(direction, pkt, settings)   # every later packet
    expiry = trk.expires(now, expiry)                # timer after the packet (refresh/keep/shrink)
    if trk.reopen: ...                               # SYN into TIME_WAIT/CLOSE: kill, new(pkt) again
    if trk.dead: ...                                 # RST with no reply ever seen: delete now

Sequence numbers are 32-bit and compared modulo 2**32 (``before``/``after`` as in the kernel).
"""

from __future__ import annotations

import enum

__all__ = [
    "ACCEPT",
    "IGNORE",
    "INVALID",
    "ORIGINAL",
    "REPLY",
    "InvalidReason",
    "Reason",
    "TCP_CONNTRACKS",
    "TcpState",
    "TcpTracker",
    "Verdict",
    "tcp_error",
]

ORIGINAL = 0
REPLY = 1


class Verdict(enum.IntEnum):
    """netfilter's ``nf_ct_tcp_action``: what a segment did to its connection."""

    IGNORE = 0
    INVALID = 1
    ACCEPT = 2


ACCEPT = Verdict.ACCEPT
IGNORE = Verdict.IGNORE
INVALID = Verdict.INVALID


class InvalidReason(enum.Enum):
    """Why conntrack did not take a packet as part of a connection (ctstate INVALID, or a segment the
    TCP tracker IGNOREs): a closed list, the value being netfilter's log words for it. Code decides by
    the member (``Reason.kind``), never by the text."""

    # The TCP tracker (nf_conntrack_proto_tcp.c)
    BAD_FLAGS = "invalid tcp flag combination"
    INVALID_NEW = "invalid new"
    NOT_SYN = "invalid new (not a SYN and tcp_loose is off)"
    INVALID_STATE = "packet invalid in its state"
    IGNORED_STATE = "packet ignored in its state"
    INVALID_RST = "invalid rst"
    RST_IN_WINDOW = "rst in window but not the next expected sequence number"
    SYN_IN_WINDOW = "syn on an established connection, in window"
    SYN_ON_CONN = "syn on an established connection, out of window"
    CHALLENGE_ACK = "challenge-ack ignored"
    OVER_WINDOW = "bytes more than expected"
    SEQ_OVER = "SEQ is over upper bound"
    ACK_OVER = "ACK is over upper bound"
    SEQ_UNDER = "SEQ is under lower bound"
    ACK_UNDER = "ignored ACK under lower bound"
    REOPEN = "reopen"
    # conntrack around the protocol trackers (nf_conntrack_core.c, nf_conntrack_proto_icmp.c)
    BAD_CHECKSUM = "bad checksum"
    INVALID_ICMP_ERROR = "invalid icmp error"
    ICMP_ERROR_UNTRACKED = "icmp error for no tracked connection"


class Reason(str):
    """An ``InvalidReason`` with the words of this occurrence (netfilter's log line, numbers included):
    a string for the message, ``kind`` for code."""

    def __new__(cls, kind: InvalidReason, text: str | None = None):
        self = super().__new__(cls, kind.value if text is None else text)
        self.kind = kind
        return self

    def __reduce__(self):
        return (Reason, (self.kind, str(self)))


R = InvalidReason


class TcpState(enum.IntEnum):
    """The conntrack TCP states, numbered as ``enum tcp_conntrack`` (``/proc/net/nf_conntrack`` names)."""

    NONE = 0
    SYN_SENT = 1
    SYN_RECV = 2
    ESTABLISHED = 3
    FIN_WAIT = 4
    CLOSE_WAIT = 5
    LAST_ACK = 6
    TIME_WAIT = 7
    CLOSE = 8
    SYN_SENT2 = 9


# TCP header flag bits.
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

# Per-direction flags, with the kernel's values (they show in ``conntrack -L`` and netlink).
F_WINDOW_SCALE = 0x01
F_SACK_PERM = 0x02
F_CLOSE_INIT = 0x04
F_BE_LIBERAL = 0x08
F_DATA_UNACKNOWLEDGED = 0x10
F_MAXACK_SET = 0x20
F_EXP_CHALLENGE_ACK = 0x40
F_SIMULTANEOUS_OPEN = 0x80
# statewall's own bits, above the kernel's byte, for the ASA's connection flags and teardown reasons.
F_FIN_SEEN = 0x100
F_FIN_ACKED = 0x200

TCP_MAX_WSCALE = 14
MAXACKWINCONST = 66000
_M = 0xFFFFFFFF


def before(a: int, b: int) -> bool:
    """``a`` precedes ``b`` in 32-bit sequence space (the kernel's ``before()``)."""
    return ((a - b) & _M) > 0x7FFFFFFF


def after(a: int, b: int) -> bool:
    return ((b - a) & _M) > 0x7FFFFFFF


# --------------------------------------------------------------------------------------------------
# The state table
#
# We are the man in the middle: every packet passes us but may still be lost on its way, and we
# assume the ends never receive a segment we did not see. We always try to guess the state of the
# current *sender*. Two outcomes are not states:
#   _IV  the packet is truly invalid (ctstate INVALID, no state change);
#   _IG  the packet may be valid or not and the receiver may answer it with a closing RST or a
#        SYN/ACK, so we let it through without learning from it (IGNORE).

# Flag classes ("index"), in the kernel's order: RST wins, then SYN(+ACK), FIN, ACK, nothing.
I_SYN, I_SYNACK, I_FIN, I_ACK, I_RST, I_NONE = range(6)
_INDEX_NAMES = ("syn", "synack", "fin", "ack", "rst", "none")

_IV = 10  # TCP_CONNTRACK_MAX
_IG = 11  # TCP_CONNTRACK_IGNORE

sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2 = TcpState

# fmt: off
TCP_CONNTRACKS = (
    (  # ORIGINAL direction (the side that sent the first packet)
        #  sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
        (  sSS, sSS, _IG, _IG, _IG, _IG, _IG, sSS, sSS, sS2),  # syn
        # A SYN opens (NO) or is retransmitted (SS, S2). Past SYN_SENT a SYN in window is an error
        # the receiver will answer with RST -- or we hold a dead connection the client abandoned:
        # ignore it and learn from the answer. TIME_WAIT/CLOSE may be reopened (RFC 1122).
        (  _IV, _IV, sSR, _IV, _IV, _IV, _IV, _IV, _IV, sSR),  # synack
        # The client cannot send SYN then SYN/ACK, except in simultaneous open (S2 -> SR, and a late
        # retransmission of it in SR). Anything later is too late to mean anything.
        (  _IV, _IV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, _IV),  # fin
        # No FIN before the SYN/ACK reply. SR/ES: close started. FW/CW: FIN from both sides, wait
        # for the last ACK (or it is a retransmitted FIN); LA stays LA.
        (  sES, _IV, sES, sES, sCW, sCW, sTW, sTW, sCL, _IV),  # ack
        # NO -> ES is a mid-stream pickup (tcp_loose). An ACK before the SYN/ACK is invalid.
        # FW -> CW: the close request was acknowledged. LA -> TW: the last ACK (RFC 5961 challenge
        # ACKs are caught in code, below).
        (  _IV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),  # rst
        (  _IV, _IV, _IV, _IV, _IV, _IV, _IV, _IV, _IV, _IV),  # none
    ),
    (  # REPLY direction
        #  sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
        (  _IV, sS2, _IV, _IV, _IV, _IV, _IV, sSS, _IV, sS2),  # syn
        # SS -> S2: simultaneous open (and its retransmission in S2). Other SYNs from the server are
        # invalid, except in TIME_WAIT where the connection is reopened with the roles switched.
        (  _IV, sSR, _IG, _IG, _IG, _IG, _IG, _IG, _IG, sSR),  # synack
        # SS/S2 -> SR: the standard (or simultaneous) open. Later SYN/ACKs are retransmissions or
        # answers to a SYN we ignored: ignore them (a SYN/ACK matching an ignored SYN resyncs, below).
        (  _IV, _IV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, _IV),  # fin
        # Same as the original direction: the server may not FIN before the handshake.
        (  _IV, _IG, sSR, sES, sCW, sCW, sTW, sTW, sCL, _IG),  # ack
        # An ACK answering a SYN may come from a half-open connection (or be a challenge ACK):
        # ignore it. SR stays SR (it may answer a late retransmitted SYN); the third ACK comes from
        # the client.
        (  _IV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),  # rst
        (  _IV, _IV, _IV, _IV, _IV, _IV, _IV, _IV, _IV, _IV),  # none
    ),
)
# fmt: on

# tcp_error(): the flag combinations a TCP segment may carry; PSH, ECE and CWR never matter.
_VALID_FLAGS = frozenset(
    {
        SYN,
        SYN | URG,
        SYN | ACK,
        RST,
        RST | ACK,
        FIN | ACK,
        FIN | ACK | URG,
        ACK,
        ACK | URG,
    }
)
_FLAG_OK = tuple((f & (FIN | SYN | RST | ACK | URG)) in _VALID_FLAGS for f in range(256))


def _index_of(flags: int) -> int:
    if flags & RST:
        return I_RST
    if flags & SYN:
        return I_SYNACK if flags & ACK else I_SYN
    if flags & FIN:
        return I_FIN
    if flags & ACK:
        return I_ACK
    return I_NONE


_INDEX = tuple(_index_of(f) for f in range(256))


def tcp_error(flags: int) -> str | None:
    """netfilter's ``tcp_error()`` flag check: the reason a segment is INVALID before any lookup.

    The other two ``tcp_error`` checks need the bytes: a truncated header is the codec's
    ``DecodeError`` and the checksum (``ConntrackSettings.checksum``) is verified by the engine.
    """
    if _FLAG_OK[flags & 0xFF]:
        return None
    return _WHY_BAD_FLAGS


_WHY_BAD_FLAGS = Reason(R.BAD_FLAGS)
# Pre-built results: returning a constant tuple keeps the accepting path free of allocation.
_R_ACCEPT = (ACCEPT, None)
_R_REOPEN = (ACCEPT, Reason(R.REOPEN))
_R_BAD_FLAGS = (INVALID, _WHY_BAD_FLAGS)
_R_INVALID_RST = (INVALID, Reason(R.INVALID_RST))
_R_RST_IN_WINDOW = (INVALID, Reason(R.RST_IN_WINDOW))
_R_SYN_IN_WINDOW = (INVALID, Reason(R.SYN_IN_WINDOW))
_R_SYN_ON_CONN = (INVALID, Reason(R.SYN_ON_CONN))
_R_CHALLENGE = (IGNORE, Reason(R.CHALLENGE_ACK))

# Timer actions after a packet (see ``TcpTracker.expires``).
_RST_KEEP = -1  # _check_rst: window-check the RST but keep the old state

_T_KEEP = 0  # leave the timer alone (IGNORE, INVALID, SYN retransmission in SYN_SENT)
_T_SET = 1  # refresh: expires = now + timeout
_T_SHRINK = 2  # nf_tcp_handle_invalid: lower a long timer to the unacknowledged timeout

# Settings attribute per state, for the timeout table.
_STATE_TIMEOUT = (
    None,
    "tcp_timeout_syn_sent",
    "tcp_timeout_syn_recv",
    "tcp_timeout_established",
    "tcp_timeout_fin_wait",
    "tcp_timeout_close_wait",
    "tcp_timeout_last_ack",
    "tcp_timeout_time_wait",
    "tcp_timeout_close",
    None,  # SYN_SENT2 has no sysctl: the kernel's built-in 2 minutes
)
SYN_SENT2_TIMEOUT = 120.0


class _Peer:
    """One direction's window data (``struct ip_ct_tcp_state``), in van Rooij's notation.

    td_end    highest seq + len this side has sent
    td_maxend highest ack + window the *other* side advertised: the right edge this side may reach
    td_maxwin largest window this side advertised (plus growth), the receive window it grants
    td_maxack highest ack this side has sent (valid once F_MAXACK_SET)
    td_scale  window scale this side announced (0 unless both SYNs carried the option)
    """

    __slots__ = ("td_end", "td_maxend", "td_maxwin", "td_maxack", "td_scale", "flags", "fin_end")

    def __init__(self) -> None:
        self.td_end = 0
        self.td_maxend = 0
        self.td_maxwin = 0
        self.td_maxack = 0
        self.td_scale = 0
        self.flags = 0
        self.fin_end = 0

    def reset(self) -> None:
        """``nf_ct_tcp_state_reset``: forget the window, keep only BE_LIBERAL."""
        self.td_end = self.td_maxend = self.td_maxwin = self.td_maxack = self.td_scale = 0
        self.flags &= F_BE_LIBERAL

    def __repr__(self) -> str:
        return (
            f"_Peer(end={self.td_end}, maxend={self.td_maxend}, maxwin={self.td_maxwin}, "
            f"maxack={self.td_maxack}, scale={self.td_scale}, flags={self.flags:#x})"
        )


def _parse_options(pkt, peer: _Peer) -> None:
    """``tcp_options()``: window scale and SACK-permitted from a SYN into ``peer``.

    Like the kernel, a segment without options leaves the previous values alone (``doff`` is in bytes).
    """
    if pkt.doff <= 20:
        return
    peer.td_scale = 0
    peer.flags &= F_BE_LIBERAL
    if pkt.sack_permitted():
        peer.flags |= F_SACK_PERM
    ws = pkt.wscale()
    if ws is not None:
        peer.td_scale = ws if ws <= TCP_MAX_WSCALE else TCP_MAX_WSCALE
        peer.flags |= F_WINDOW_SCALE


# The windows SYNs announce are a few values (64240, 65535, 29200, ...): a connection's td_maxwin from
# its SYNs is one shared int object per value instead of its own (memory of idle connections).
_WINDOWS: dict[int, int] = {}


def _shared_window(win: int) -> int:
    """``win`` (a 16-bit window from a SYN) as the one int object shared for its value."""
    got = _WINDOWS.get(win)
    if got is None:
        _WINDOWS[win] = got = win  # at most 65 536 entries
    return got


def _seg_end(seq: int, pkt, flags: int) -> int:
    """``segment_seq_plus_len``: the sequence number just after this segment (SYN and FIN count)."""
    return (seq + pkt.payload_len + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) & _M


class TcpTracker:
    """The TCP part of one connection (``struct ip_ct_tcp`` plus the ASSURED/SEEN_REPLY bits).

    Public attributes: ``state`` (TcpState), ``assured``, ``seen_reply``, ``last_dir``, ``reopen``,
    ``dead``, ``refreshed``; methods ``fin_seen(dir)``, ``fin_acked(dir)``, ``rst_seen``,
    ``timeout(settings)`` and ``expires(now, expiry)``. ``seen`` holds the two directions' windows.
    """

    __slots__ = (
        "state",
        "seen",
        "assured",
        "seen_reply",
        "last_dir",
        "last_index",
        "last_seq",
        "last_ack",
        "last_end",
        "last_win",
        "_aux",
        "retrans",
        "reopen",
        "dead",
        "_timer",
        "_timeout",
    )

    def __init__(self) -> None:
        self.state = TcpState.NONE
        self.seen = (_Peer(), _Peer())
        self.assured = False
        self.seen_reply = False
        self.last_dir = ORIGINAL
        self.last_index = I_NONE
        self.last_seq = 0
        self.last_ack = 0
        self.last_end = 0
        self.last_win = 0
        # last_flags (bits 0-15), last_wscale (16-19) and rst_dir + 1 (20-21): read and written on
        # the rare paths only (ignored SYNs, simultaneous open, RSTs), one slot for three (memory).
        self._aux = 0
        self.retrans = 0
        self.reopen = False
        self.dead = False
        self._timer = _T_KEEP
        self._timeout = 0.0

    @property
    def last_flags(self) -> int:
        """The flags noted from an ignored segment (``struct ip_ct_tcp.last_flags``)."""
        return self._aux & 0xFFFF

    @last_flags.setter
    def last_flags(self, value: int) -> None:
        self._aux = (self._aux & ~0xFFFF) | (value & 0xFFFF)

    @property
    def last_wscale(self) -> int:
        """The window scale noted from an ignored SYN (``struct ip_ct_tcp.last_wscale``)."""
        return (self._aux >> 16) & 0xF

    @last_wscale.setter
    def last_wscale(self, value: int) -> None:
        self._aux = (self._aux & ~0xF0000) | ((value & 0xF) << 16)

    @property
    def rst_dir(self) -> int:
        """The direction of the RST that closed the connection (-1 before one)."""
        return ((self._aux >> 20) & 3) - 1

    @rst_dir.setter
    def rst_dir(self, direction: int) -> None:
        self._aux = (self._aux & ~0x300000) | (((direction + 1) & 3) << 20)

    # ----------------------------------------------------------------------------------------------
    # Creation: tcp_new() followed by the first tcp_packet(), as nf_conntrack_in does.

    @classmethod
    def new(cls, pkt, settings, *, seq_offset: int = 0, ack_offset: int = 0):
        """Track a new flow from its first packet (ORIGINAL direction).

        Returns ``(tracker, None)`` with the first packet already processed (Linux runs
        ``tcp_packet`` on the first packet right after ``tcp_new``; do not call ``packet()`` for it
        again), or ``(None, reason)`` when netfilter would not create a connection: the packet is
        then ctstate INVALID.
        """
        flags = pkt.flags
        if not _FLAG_OK[flags & 0xFF]:
            return None, _WHY_BAD_FLAGS
        index = _INDEX[flags & 0xFF]
        new_state = TCP_CONNTRACKS[ORIGINAL][index][sNO]
        if new_state >= _IV:
            return None, Reason(R.INVALID_NEW)
        trk = cls()
        sender = trk.seen[ORIGINAL]
        seq = (pkt.seq - seq_offset) & _M
        sender.td_end = _seg_end(seq, pkt, flags)
        win = pkt.window
        sender.td_maxwin = _shared_window(win) if win else 1
        if new_state == sSS:
            sender.td_maxend = sender.td_end
            _parse_options(pkt, sender)
            if flags == SYN and not seq_offset and not ack_offset:
                trk._first_syn(pkt, seq, settings)
                return trk, None
        elif not settings.tcp_loose:
            # Mid-stream pickup is off (required for SYNPROXY): no connection for a non-SYN.
            return None, Reason(R.NOT_SYN)
        else:
            # We are in the middle of a connection whose history is lost: take what the packet
            # says, and assume SACK and liberal window checking because the window scale is unknown.
            sender.td_maxend = (sender.td_end + sender.td_maxwin) & _M
            sender.flags = F_SACK_PERM | F_BE_LIBERAL
            trk.seen[REPLY].flags = F_SACK_PERM | F_BE_LIBERAL
        trk.last_index = I_NONE
        trk._packet(ORIGINAL, pkt, settings, seq_offset, ack_offset)
        return trk, None

    @classmethod
    def _new_general(cls, pkt, settings):
        """``new`` without ``_first_syn``'s shortcut (for the tests that hold the two equal)."""
        trk = cls()
        sender = trk.seen[ORIGINAL]
        sender.td_end = _seg_end(pkt.seq, pkt, pkt.flags)
        win = pkt.window
        sender.td_maxwin = _shared_window(win) if win else 1
        sender.td_maxend = sender.td_end
        _parse_options(pkt, sender)
        trk.last_index = I_NONE
        trk._packet(ORIGINAL, pkt, settings, 0, 0)
        return trk

    def _first_syn(self, pkt, seq: int, settings) -> None:
        """``_packet`` for the plain SYN (flags SYN alone) that opens a connection, with ``new`` having
        set the sender's window data: NONE -> SYN_SENT, written out (every new TCP connection).

        What the general path does for it: no ACK, so the ack is taken as the receiver's td_end (0,
        nothing seen from it); bounds I to IV all hold (seq is below the sender's td_maxend, the end
        of the SYN itself; the receiver's window is still 0); the sender's maxwin is already this
        window and its td_end this end, so only the receiver learns: td_maxend = ack + win (1 for a
        zero window). Then the common ``in_window:`` tail."""
        self.reopen = False
        self._timer = _T_KEEP
        win = pkt.window
        receiver = self.seen[REPLY]
        receiver.td_maxend = (win + (win == 0)) & _M
        receiver.flags &= ~F_DATA_UNACKNOWLEDGED
        self._in_window_done(ORIGINAL, I_SYN, SYN, pkt, seq, sNO, sSS, settings)

    # ----------------------------------------------------------------------------------------------
    # Every packet: nf_conntrack_tcp_packet()

    def packet(self, direction: int, pkt, settings, *, seq_offset: int = 0, ack_offset: int = 0):
        """Process one segment of this connection; returns ``(verdict, reason)``.

        ``reason`` is None for a plain ACCEPT, ``"reopen"`` when ``self.reopen`` was set, otherwise
        netfilter's log text for the IGNORE/INVALID decision.

        ``seq_offset`` is subtracted from the segment's seq: an engine that rewrote seq before
        tracking (ASA ISN randomisation) hands the tracker the original numbers back.
        ``ack_offset`` is subtracted from ack and SACK edges before the window check: it is
        ``nf_ct_seq_offset(ct, !dir, ack - 1)``, the shift NAT/FTP sequence adjustment applied to the
        *other* direction's seq, which this ack refers to.
        """
        flags = pkt.flags
        if self.state == sES and _INDEX[flags & 0xFF] == I_ACK and not seq_offset:
            # The fast path: an ESTABLISHED connection's segment with ACK and without SYN, FIN or RST,
            # nearly every segment. It is the general path below (_packet, _tcp_in_window,
            # _in_window_done) written out for this case, whose table entry is ES -> ES. A sender
            # without a window yet, or a segment failing a bound, takes the general path instead,
            # before anything was changed.
            sender = self.seen[direction]
            receiver = self.seen[1 - direction]
            s_maxwin = sender.td_maxwin
            if s_maxwin:
                seq = pkt.seq
                ack = sack = pkt.ack
                end = (seq + pkt.payload_len) & _M
                if receiver.flags & F_SACK_PERM and pkt.doff > 20:
                    sack = pkt.sack_edge(sack)
                if ack_offset:
                    ack = (ack - ack_offset) & _M
                    sack = (sack - ack_offset) & _M
                s_end = sender.td_end
                s_maxend = sender.td_maxend
                r_end = receiver.td_end
                r_maxwin = receiver.td_maxwin
                maxackwin = s_maxwin if s_maxwin > MAXACKWINCONST else MAXACKWINCONST
                if (
                    ((seq - s_maxend - 1) & _M) > 0x7FFFFFFF  # I
                    and ((sack - r_end - 1) & _M) > 0x7FFFFFFF  # III
                    and not (r_maxwin and ((s_end - r_maxwin - 1 - end) & _M) <= 0x7FFFFFFF)  # II
                    and ((r_end - maxackwin - 1 - sack) & _M) > 0x7FFFFFFF  # IV
                ):
                    self.reopen = False
                    win_raw = pkt.window
                    win = win_raw << sender.td_scale
                    # Learn about the sender.
                    swin = (win + sack - ack) & _M
                    if s_maxwin < swin:
                        sender.td_maxwin = swin
                    if ((s_end - end) & _M) > 0x7FFFFFFF:  # after(end, td_end)
                        sender.td_end = end
                        sender.flags |= F_DATA_UNACKNOWLEDGED
                    if not sender.flags & F_MAXACK_SET:
                        sender.td_maxack = ack
                        sender.flags |= F_MAXACK_SET
                    elif ((sender.td_maxack - ack) & _M) > 0x7FFFFFFF:  # after(ack, td_maxack)
                        sender.td_maxack = ack
                    # Learn about the receiver.
                    if r_maxwin and ((s_maxend - end) & _M) > 0x7FFFFFFF:  # overshoot
                        receiver.td_maxwin = (r_maxwin + end - s_maxend) & _M
                    if ((receiver.td_maxend - 1 - sack - win) & _M) > 0x7FFFFFFF:
                        receiver.td_maxend = (sack + win + (win == 0)) & _M
                    if ack == r_end:
                        receiver.flags &= ~F_DATA_UNACKNOWLEDGED
                    # Retransmission counter.
                    if (
                        self.last_dir == direction
                        and self.last_seq == seq
                        and self.last_ack == ack
                        and self.last_end == end
                        and self.last_win == win_raw
                    ):
                        self.retrans += 1
                    else:
                        self.last_dir = direction
                        self.last_seq = seq
                        self.last_ack = ack
                        self.last_end = end
                        self.last_win = win_raw
                        self.retrans = 0
                    if receiver.flags & F_FIN_SEEN and ((ack - receiver.fin_end) & _M) <= 0x7FFFFFFF:
                        receiver.flags |= F_FIN_ACKED
                    # The in_window tail for ES -> ES.
                    self.last_index = I_ACK
                    timeout = settings.tcp_timeout_established
                    if (
                        self.retrans >= settings.tcp_max_retrans
                        and timeout > settings.tcp_timeout_max_retrans
                    ):
                        timeout = settings.tcp_timeout_max_retrans
                    elif (sender.flags | receiver.flags) & F_DATA_UNACKNOWLEDGED and (
                        timeout > settings.tcp_timeout_unacknowledged
                    ):
                        timeout = settings.tcp_timeout_unacknowledged
                    elif self.last_win == 0 and timeout > settings.tcp_timeout_max_retrans:
                        timeout = settings.tcp_timeout_max_retrans
                    self._timer = _T_SET
                    if not self.seen_reply:
                        if timeout > settings.tcp_timeout_unacknowledged:
                            timeout = settings.tcp_timeout_unacknowledged
                    elif not self.assured:
                        self.assured = True
                    self._timeout = timeout
                    if direction:
                        self.seen_reply = True
                    return _R_ACCEPT
        res = self._packet(direction, pkt, settings, seq_offset, ack_offset)
        if direction and res[0] is not INVALID:
            # nf_conntrack_in marks SEEN_REPLY once the protocol tracker let a reply packet through
            # (ignored ones included) -- after tcp_packet, which therefore still sees it unset.
            self.seen_reply = True
        return res

    def _packet(self, direction, pkt, settings, seq_offset, ack_offset):
        flags = pkt.flags
        self.reopen = False
        self._timer = _T_KEEP
        if not _FLAG_OK[flags & 0xFF]:
            return _R_BAD_FLAGS
        seq = (pkt.seq - seq_offset) & _M if seq_offset else pkt.seq

        old_state = self.state
        index = _INDEX[flags & 0xFF]
        new_state = TCP_CONNTRACKS[direction][index][old_state]

        if new_state == sSS and old_state >= sTW:
            # RFC 1122 allows a new SYN to reopen a connection in TIME_WAIT. We also take it when the
            # client aborted (RST) and starts again while we still hold the old entry. The
            # connection is killed and the packet looked up again (the engine creates a new one).
            if (self.seen[direction].flags | self.seen[1 - direction].flags) & F_CLOSE_INIT or (
                self.last_dir == direction and self.last_index == I_RST
            ):
                self.reopen = True
                return _R_REOPEN
            new_state = _IG  # otherwise treat as the ignored case below
        if new_state == _IG:
            if (
                index == I_SYNACK
                and self.last_index == I_SYN
                and self.last_dir != direction
                and pkt.ack == self.last_end
            ):
                # This SYN/ACK acknowledges a SYN we ignored: client and server are in sync and we
                # are not. Take the values noted from that SYN and go on as SYN_SENT -> SYN_RECV.
                self._resync_from_ignored_syn(direction)
                old_state = sSS
                new_state = sSR
            elif index == I_SYN and sES <= old_state <= sLA and getattr(settings, "syn_on_conn_drop", False):
                # The ASA drops a SYN on an established connection and keeps the connection, where
                # Linux lets it through for the receiver's challenge ACK (RFC 5961) and notes it here.
                # Its show asp drop names the two cases: "TCP RST/SYN in window" (tcp-rst-syn-in-win)
                # when the sequence number falls in the window, "TCP SYN on established conn"
                # (tcp-syn-ooo) otherwise (Cisco, show asp drop command usage; the drop keywords of
                # capture type asp-drop). The window is the RST check's: from what the receiver
                # acknowledged last to the highest number the receiver's window allows. Decided before
                # anything is noted, so the dropped SYN teaches the tracker nothing.
                other = self.seen[1 - direction]
                low = other.td_maxack if other.flags & F_MAXACK_SET else self.seen[direction].td_end
                if before(seq, low) or after(seq, self.seen[direction].td_maxend):
                    return _R_SYN_ON_CONN
                return _R_SYN_IN_WINDOW
            else:
                return self._ignored(direction, index, pkt, flags, seq, old_state)
        elif new_state == _IV:
            # No SYNPROXY special case: statewall has no SYNPROXY target.
            return (
                INVALID,
                Reason(
                    R.INVALID_STATE,
                    f"packet (index {index}) in dir {direction} invalid, state {TcpState(old_state).name}",
                ),
            )
        elif new_state == sTW:
            # RFC 5961 makes stacks answer spurious SYNs with a challenge ACK; in LAST_ACK that ACK
            # must not be taken for the one acknowledging the last FIN.
            if (
                old_state == sLA
                and index == I_ACK
                and self.last_dir != direction
                and self.last_index == I_SYN
                and self.last_flags & F_EXP_CHALLENGE_ACK
            ):
                self.last_flags &= ~F_EXP_CHALLENGE_ACK
                return _R_CHALLENGE
        elif new_state == sS2:
            # The table alone cannot follow a simultaneous open: remember we are in one.
            self.last_flags |= F_SIMULTANEOUS_OPEN
        elif new_state == sSR:
            if direction == REPLY and index == I_ACK and self.last_flags & F_SIMULTANEOUS_OPEN:
                new_state = sES
        elif new_state == sCL and index == I_RST:
            r = self._check_rst(direction, pkt, seq, old_state, settings)
            if r is not None:
                if r is _R_INVALID_RST:
                    return r
                if r == _RST_KEEP:  # RST sequence not exact: keep the state for a challenge ACK
                    if not getattr(settings, "rst_exact", False):
                        new_state = old_state
                    elif (snd := self.seen[direction]).td_end != seq and not after(seq, snd.td_maxend):
                        # The ASA drops it instead (show asp drop "TCP RST/SYN in window",
                        # tcp-rst-syn-in-win: an RST on an established connection whose sequence number
                        # is inside the window but not the next one expected; Cisco's show asp drop
                        # command usage). The next expected number is what the receiver acknowledged
                        # last or what the sender sent last, both seen here (the latter closes). Decided
                        # before the window check, which would learn from it; an RST beyond the window
                        # falls to that check and its own reason.
                        return _R_RST_IN_WINDOW
                else:  # in_window without the window check
                    return self._in_window_done(direction, index, flags, pkt, seq, old_state, r, settings)

        res = self._tcp_in_window(direction, index, pkt, flags, seq, ack_offset, settings)
        if res is not _R_ACCEPT:
            if res[0] == INVALID:
                self._handle_invalid(direction, index, settings)
            return res
        return self._in_window_done(direction, index, flags, pkt, seq, old_state, new_state, settings)

    def _check_rst(self, direction, pkt, seq, old_state, settings):
        """The RST cases of ``tcp_packet``.

        Returns None to go on with the window check, ``_R_INVALID_RST``, ``_RST_KEEP`` to keep the old
        state (then window-check), or a state to jump to ``in_window`` with (skipping the window
        check).
        """
        # Closing states: the tuple may already be reused and our window data outdated, so a RST
        # is taken without checks.
        if old_state in (sFW, sLA, sTW, sCL, sCW):
            return sCL
        other = self.seen[1 - direction]
        keep = False
        # td_maxack may be outdated if we let a SYN through earlier.
        if other.flags & F_MAXACK_SET and self.last_index != I_SYN:
            established = old_state == sES and self.assured
            if seq == 0 and not established:
                # Most likely the answer to a SYN we let through above: check it as any segment.
                return None
            if before(seq, other.td_maxack) and not settings.tcp_ignore_invalid_rst:
                return _R_INVALID_RST
            if not established or seq == other.td_maxack:
                return None
            if self.last_index == I_ACK and self.last_dir == direction and seq == self.last_end:
                # The RST ends a train: data then RST at the data's end, in the same direction.
                return None
            # RFC 5961: the RST is in window but not exact; the receiver will send a challenge ACK,
            # so keep the state.
            keep = True
        ack = pkt.ack
        if (
            (self.seen_reply and self.last_index == I_SYN and self.last_dir != direction)
            or (not self.assured and self.last_index == I_ACK)
        ) and ack == self.last_end:
            # RST answering a SYN (a) or an ACK (c) we let through while ignoring it: we held a
            # half-open connection. Delete it without a window check -- it may ACK what we ignored.
            return old_state if keep else sCL
        if old_state == sSS and self.last_index == I_ACK and self.last_dir == REPLY and seq == self.last_ack:
            # Reset in response to a challenge ACK we let through earlier.
            return old_state if keep else sCL
        return _RST_KEEP if keep else None

    def _ignored(self, direction, index, pkt, flags, seq, old_state):
        """``TCP_CONNTRACK_IGNORE``: our entry may be out of sync; let the packet pass, learn from it.

        a) a SYN in ORIGINAL, b) a SYN/ACK in REPLY, c) an ACK in REPLY after the initial SYN. If the
        packet is invalid to the receiver, the receiver's RST will tell us (see ``_check_rst``).
        """
        self.last_index = index
        self.last_dir = direction
        self.last_seq = seq
        self.last_end = _seg_end(seq, pkt, flags)
        self.last_win = pkt.window
        if index == I_SYN and direction == ORIGINAL:
            # a) A SYN in ORIGINAL: note its options; if it is valid the server's SYN/ACK brings us
            # back in sync (above), else the server answers with a challenge ACK (RFC 5961).
            self.last_flags = 0
            self.last_wscale = 0
            if pkt.doff > 20:
                if pkt.sack_permitted():
                    self.last_flags |= F_SACK_PERM
                ws = pkt.wscale()
                if ws is not None:
                    self.last_flags |= F_WINDOW_SCALE
                    self.last_wscale = ws if ws <= TCP_MAX_WSCALE else TCP_MAX_WSCALE
            if old_state == sLA:
                # In LAST_ACK the challenge ACK would look like the ACK of the last FIN.
                self.last_flags |= F_EXP_CHALLENGE_ACK
        if old_state == sSS and index == I_ACK and direction == REPLY:
            # A possible challenge ACK answering the SYN.
            self.last_ack = pkt.ack
        return (
            IGNORE,
            Reason(
                R.IGNORED_STATE,
                f"packet (index {index}) in dir {direction} ignored, state {TcpState(old_state).name}",
            ),
        )

    def _resync_from_ignored_syn(self, direction):
        ld = self.last_dir
        peer = self.seen[ld]
        peer.td_end = self.last_end
        peer.td_maxend = self.last_end
        peer.td_maxwin = self.last_win if self.last_win else 1
        peer.td_scale = self.last_wscale
        self.last_flags &= ~F_EXP_CHALLENGE_ACK
        peer.flags = self.last_flags
        self.seen[direction].reset()

    def fits_window(self, direction, pkt, ack_offset=0) -> bool:
        """Whether a segment from ``direction`` passes the four bounds of ``_tcp_in_window`` as the
        connection stands, without learning from it (the normalizer asks before it queues an
        out-of-order segment). True while a side's window is not known yet."""
        sender = self.seen[direction]
        receiver = self.seen[1 - direction]
        if sender.td_maxwin == 0 or receiver.td_maxwin == 0:
            return True
        flags = pkt.flags
        seq = pkt.seq
        end = (seq + pkt.payload_len + (flags & FIN) + ((flags & SYN) >> 1)) & _M
        if flags & ACK:
            sack = pkt.ack
            if receiver.flags & F_SACK_PERM and pkt.doff > 20:
                sack = pkt.sack_edge(sack)
            sack = (sack - ack_offset) & _M
        else:
            sack = receiver.td_end
        maxackwin = sender.td_maxwin if sender.td_maxwin > MAXACKWINCONST else MAXACKWINCONST
        return (
            not after(seq, sender.td_maxend)
            and not before(end, (sender.td_end - receiver.td_maxwin) & _M)
            and not after(sack, receiver.td_end)
            and not before(sack, (receiver.td_end - maxackwin) & _M)
        )

    # ----------------------------------------------------------------------------------------------
    # tcp_in_window(): van Rooij's four bounds

    def _tcp_in_window(self, direction, index, pkt, flags, seq, ack_offset, settings):
        """Check the segment against both sides' windows and learn from it.

        I    seq  <= sender.td_maxend                      (upper bound for data)
        II   end  >= sender.td_end - receiver.td_maxwin    (lower bound for data)
        III  sack <= receiver.td_end                       (upper bound for the (s)ack)
        IV   sack >= receiver.td_end - MAXACKWINDOW         (lower bound for the (s)ack)

        ``sack`` is the highest right edge of the SACK blocks (when the receiver announced
        SACK-permitted), else the ack. Returns ``_R_ACCEPT`` or an (IGNORE|INVALID, reason) pair.
        """
        sender = self.seen[direction]
        receiver = self.seen[1 - direction]
        ack = sack = pkt.ack
        win_raw = pkt.window
        win = win_raw
        end = (seq + pkt.payload_len + (flags & FIN) + ((flags & SYN) >> 1)) & _M  # _seg_end

        if receiver.flags & F_SACK_PERM and pkt.doff > 20:
            sack = pkt.sack_edge(sack)

        # NAT/helper sequence adjustment of the other direction (nf_ct_seq_offset).
        if ack_offset:
            ack = (ack - ack_offset) & _M
            sack = (sack - ack_offset) & _M

        if sender.td_maxwin == 0:
            # First packet from this side.
            if flags & SYN:
                self._init_sender(sender, receiver, pkt, end, win, direction)
                if not flags & ACK:
                    return _R_ACCEPT  # simultaneous open
            else:
                # In the middle of a connection whose history we lost: use what the packet says.
                sender.td_end = end
                swin = (win << sender.td_scale) & _M
                sender.td_maxwin = swin if swin else 1
                sender.td_maxend = (end + sender.td_maxwin) & _M
                if receiver.td_maxwin == 0:
                    # Nothing seen from the other side yet: make III and IV pass until we do.
                    receiver.td_end = receiver.td_maxend = sack
                elif sack == (receiver.td_end + 1) & _M:
                    # Likely a reply to a keepalive: needed for III.
                    receiver.td_end = (receiver.td_end + 1) & _M
        elif flags & SYN and after(end, sender.td_end) and self.state in (sSS, sSR):
            # RFC 793: a reinitialised TCP need not wait if it uses higher sequence numbers. Start
            # this side again as for the first SYN(/ACK): seq, ack and options may all differ.
            self._init_sender(sender, receiver, pkt, end, win, direction)
            if direction == REPLY and not flags & ACK:
                return _R_ACCEPT

        if not flags & ACK:
            # No ACK: pretend it acknowledged everything.
            ack = sack = receiver.td_end
        elif flags & RST and ack == 0:
            # Broken stacks set ACK in RSTs with a zero ack.
            ack = sack = receiver.td_end

        if flags & RST and seq == 0 and self.state == sSS:
            # RST answering a SYN.
            seq = end = sender.td_end

        # The four checks and the updates below spell out before()/after() inline (this is the
        # per-packet hot path): ((a - b) & _M) > 0x7FFFFFFF is before(a, b). The window data they
        # read are taken into locals once; none of them is written before its last read.
        s_end = sender.td_end
        s_maxend = sender.td_maxend
        s_maxwin = sender.td_maxwin
        r_end = receiver.td_end
        r_maxwin = receiver.td_maxwin
        maxackwin = s_maxwin if s_maxwin > MAXACKWINCONST else MAXACKWINCONST
        if ((seq - s_maxend - 1) & _M) <= 0x7FFFFFFF:  # I fails: seq > td_maxend
            overshot = (end - s_maxend + 1) & _M
            ack_ok = after(sack, (r_end - maxackwin - 1) & _M)
            in_recv_win = bool(r_maxwin) and after(end, (s_end - r_maxwin - 1) & _M)
            if in_recv_win and ack_ok and overshot <= r_maxwin and before(sack, (r_end + 1) & _M):
                # Some TCPs send more than the receive window allows. If the ruleset lets this
                # through and the peer ACKs it, every later packet would fail III: so remember the
                # data (td_end) even though we do not accept the segment.
                sender.td_end = end
                sender.flags |= F_DATA_UNACKNOWLEDGED
                return self._failed(
                    sender, settings, IGNORE, Reason(R.OVER_WINDOW, f"{overshot} bytes more than expected")
                )
            return self._failed(
                sender,
                settings,
                INVALID,
                Reason(
                    R.SEQ_OVER,
                    f"SEQ is over upper bound {(s_maxend + 1) & _M} (over the window of the receiver)",
                ),
            )

        if ((sack - r_end - 1) & _M) <= 0x7FFFFFFF:  # III fails: sack > receiver.td_end
            return self._failed(
                sender,
                settings,
                INVALID,
                Reason(R.ACK_OVER, f"ACK is over upper bound {(r_end + 1) & _M} (ACKed data not seen yet)"),
            )

        # II fails: end < sender.td_end - receiver.td_maxwin (only once the receiver's window is known)
        if r_maxwin and ((s_end - r_maxwin - 1 - end) & _M) <= 0x7FFFFFFF:
            return self._failed(
                sender,
                settings,
                IGNORE,
                Reason(
                    R.SEQ_UNDER,
                    f"SEQ is under lower bound {(s_end - r_maxwin - 1) & _M} "
                    "(already ACKed data retransmitted)",
                ),
            )
        if ((r_end - maxackwin - 1 - sack) & _M) <= 0x7FFFFFFF:  # IV fails: sack too old
            return self._failed(
                sender,
                settings,
                IGNORE,
                Reason(
                    R.ACK_UNDER,
                    f"ignored ACK under lower bound {(r_end - maxackwin - 1) & _M} (possible overly delayed)",
                ),
            )

        # RFC 1323 window scaling, never on SYN segments.
        if not flags & SYN:
            win <<= sender.td_scale

        # Learn about the sender.
        if ack == r_end:
            # It acknowledges all the receiver sent (the handshake's ACKs do): the td_maxack and
            # last_ack stored below share the receiver's td_end object (memory of idle connections).
            ack = r_end
        swin = (win + sack - ack) & _M
        if s_maxwin < swin:
            sender.td_maxwin = swin
        if ((s_end - end) & _M) > 0x7FFFFFFF:  # after(end, td_end)
            sender.td_end = end
            sender.flags |= F_DATA_UNACKNOWLEDGED
        if flags & ACK:
            if not sender.flags & F_MAXACK_SET:
                sender.td_maxack = ack
                sender.flags |= F_MAXACK_SET
            elif ((sender.td_maxack - ack) & _M) > 0x7FFFFFFF:  # after(ack, td_maxack)
                sender.td_maxack = ack

        # Learn about the receiver.
        if r_maxwin and ((s_maxend - end) & _M) > 0x7FFFFFFF:  # overshoot
            receiver.td_maxwin = (r_maxwin + end - s_maxend) & _M
        if ((receiver.td_maxend - 1 - sack - win) & _M) > 0x7FFFFFFF:  # after(sack + win, maxend - 1)
            receiver.td_maxend = (sack + win + (win == 0)) & _M
        if ack == r_end:
            receiver.flags &= ~F_DATA_UNACKNOWLEDGED

        # Retransmission counter: identical ACK-class segments in a row.
        if index == I_ACK:
            if (
                self.last_dir == direction
                and self.last_seq == seq
                and self.last_ack == ack
                and self.last_end == end
                and self.last_win == win_raw
            ):
                self.retrans += 1
            else:
                if end == seq:
                    # No data: seq, end and (for the handshake's last ACK, after which a connection
                    # may idle for hours) the sender's td_end are one value: keep one int object.
                    seq = end = sender.td_end if seq == sender.td_end else seq
                if win_raw == sender.td_maxwin:
                    win_raw = sender.td_maxwin  # the same for an unchanged, unscaled window
                self.last_dir = direction
                self.last_seq = seq
                self.last_ack = ack
                self.last_end = end
                self.last_win = win_raw
                self.retrans = 0

        # ASA bookkeeping (not netfilter's): the other side acknowledged this side's FIN.
        if receiver.flags & F_FIN_SEEN and flags & ACK and not before(ack, receiver.fin_end):
            receiver.flags |= F_FIN_ACKED
        return _R_ACCEPT

    @staticmethod
    def _failed(sender, settings, verdict, reason):
        """``nf_tcp_log_invalid``: with be_liberal every window failure is an ACCEPT (no learning)."""
        if sender.flags & F_BE_LIBERAL or settings.tcp_be_liberal:
            return _R_ACCEPT
        return (verdict, reason)

    @staticmethod
    def _init_sender(sender, receiver, pkt, end, win, direction):
        """``tcp_init_sender``: a SYN/ACK answering a SYN, or a SYN from the reply side."""
        sender.td_end = sender.td_maxend = end
        sender.td_maxwin = _shared_window(win) if win else 1
        _parse_options(pkt, sender)
        # RFC 1323: window scaling applies in either direction only if both sides sent the option.
        if direction == REPLY and not (sender.flags & F_WINDOW_SCALE and receiver.flags & F_WINDOW_SCALE):
            sender.td_scale = 0
            receiver.td_scale = 0

    def _handle_invalid(self, direction, index, settings):
        """``nf_tcp_handle_invalid``: a FIN/RST out of window answering the other side's FIN/RST.

        Both ends think the connection is over while we do not: do not keep an ASSURED entry for
        days, shrink its timer to the unacknowledged timeout.
        """
        if not self.assured or index not in (I_RST, I_FIN):
            return
        if self.last_dir != direction and self.last_index in (I_FIN, I_RST):
            self._timer = _T_SHRINK
            self._timeout = settings.tcp_timeout_unacknowledged
        else:
            self.last_index = index
            self.last_dir = direction

    def _in_window_done(self, direction, index, flags, pkt, seq, old_state, new_state, settings):
        """The ``in_window:`` tail of tcp_packet: commit the state, choose the timeout."""
        self.last_index = index
        self.last_dir = direction
        self.state = new_state
        me = self.seen[direction]
        if old_state != new_state and new_state == sFW:
            me.flags |= F_CLOSE_INIT
        if flags & FIN and not me.flags & F_FIN_SEEN:
            me.flags |= F_FIN_SEEN
            me.fin_end = _seg_end(seq, pkt, flags)
        if index == I_RST and new_state == sCL:
            self.rst_dir = direction

        if new_state == sS2:
            timeout = SYN_SENT2_TIMEOUT
        else:
            timeout = getattr(settings, _STATE_TIMEOUT[new_state])
        if self.retrans >= settings.tcp_max_retrans and timeout > settings.tcp_timeout_max_retrans:
            timeout = settings.tcp_timeout_max_retrans
        elif index == I_RST:
            timeout = settings.tcp_timeout_close
        elif (self.seen[0].flags | self.seen[1].flags) & F_DATA_UNACKNOWLEDGED and (
            timeout > settings.tcp_timeout_unacknowledged
        ):
            timeout = settings.tcp_timeout_unacknowledged
        elif self.last_win == 0 and timeout > settings.tcp_timeout_max_retrans:
            timeout = settings.tcp_timeout_max_retrans

        self._timer = _T_SET
        if not self.seen_reply:
            if flags & RST:
                # The only reply is a RST: a common failure, no connection to keep -- delete it.
                self.dead = True
                self._timeout = timeout
                return _R_ACCEPT
            if index == I_SYN and old_state == sSS:
                # Do not renew the timer on SYN retransmissions, or port reuse by a client or NAT
                # box could keep the entry alive forever.
                self._timer = _T_KEEP
                return _R_ACCEPT
            if new_state == sES and timeout > settings.tcp_timeout_unacknowledged:
                # ESTABLISHED without a reply: a loose pickup; no five-day timer for it.
                timeout = settings.tcp_timeout_unacknowledged
        elif not self.assured and old_state in (sSR, sES) and new_state == sES:
            # A valid ACK in ESTABLISHED after SYN_RECV, or a valid answer for a picked-up
            # connection.
            self.assured = True
        self._timeout = timeout
        return _R_ACCEPT

    # ----------------------------------------------------------------------------------------------
    # What the engine reads

    def timeout(self, settings) -> float:
        """The idle timeout netfilter chose with the last packet that refreshed the timer (B.2)."""
        return self._timeout

    @property
    def refreshed(self) -> bool:
        """True when the last packet refreshed the timer (``expiry = now + timeout``)."""
        return self._timer == _T_SET

    def expires(self, now: float, expiry: float) -> float:
        """The connection's expiry time after the last packet, given the current one."""
        t = self._timer
        if t == _T_SET:
            return now + self._timeout
        if t == _T_SHRINK:
            left = expiry - now
            # Timers already short are left alone; long ones drop to the unacknowledged timeout.
            if left >= 120.0 and left > self._timeout:
                return now + self._timeout
        return expiry

    def fin_seen(self, direction: int) -> bool:
        """A FIN from ``direction`` was accepted."""
        return bool(self.seen[direction].flags & F_FIN_SEEN)

    def fin_acked(self, direction: int) -> bool:
        """The FIN from ``direction`` was acknowledged by the other side."""
        return bool(self.seen[direction].flags & F_FIN_ACKED)

    @property
    def rst_seen(self) -> bool:
        """An accepted RST closed the connection (``rst_dir`` says who sent it)."""
        return self.rst_dir >= 0

    def __repr__(self) -> str:
        return (
            f"TcpTracker({self.state.name}, assured={self.assured}, seen_reply={self.seen_reply}, "
            f"orig={self.seen[0]!r}, reply={self.seen[1]!r})"
        )
