"""TCP tracking as netfilter does it: each test is a short conversation and what conntrack says.

Segments are written like tcpdump prints them (flags, seq, ack, win, len) and fed to ``TcpTracker``
with their direction (``o`` = the side that opened, ``r`` = the reply side). The expectations are the
kernel's (nf_conntrack_proto_tcp.c, 6.x); tests/test_tcptrack_kernel.py checks the same kind of
conversation against the real kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from statewall.policy import ConntrackSettings
from statewall.tcptrack import (
    ACCEPT,
    IGNORE,
    INVALID,
    ORIGINAL,
    REPLY,
    TCP_CONNTRACKS,
    TcpState,
    TcpTracker,
    tcp_error,
)

S = TcpState
_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}
DIRS = {"o": ORIGINAL, "r": REPLY}


@dataclass
class Seg:
    """A stand-in for ``statewall.packet.Packet`` with just what the tracker reads."""

    flags: int
    seq: int
    ack: int = 0
    window: int = 65535
    payload_len: int = 0
    ws: int | None = None
    sackok: bool = False
    sacks: list[tuple[int, int]] = field(default_factory=list)

    @property
    def doff(self) -> int:
        """Header length in bytes, as the codec gives it."""
        opt = (3 if self.ws is not None else 0) + (2 if self.sackok else 0)
        opt += 2 + 8 * len(self.sacks) if self.sacks else 0
        return 20 + (opt + 3) // 4 * 4

    def wscale(self):
        return self.ws

    def sack_permitted(self) -> bool:
        return self.sackok

    def sack_blocks(self):
        return list(self.sacks)

    def sack_edge(self, ack: int) -> int:
        for _left, right in self.sacks:
            if ((ack - right) & 0xFFFFFFFF) > 0x7FFFFFFF:  # after(right, ack)
                ack = right
        return ack


def seg(flags: str, seq: int, ack: int = 0, win: int = 65535, length: int = 0, **kw) -> Seg:
    bits = 0
    for ch in flags:
        bits |= _FLAGS[ch]
    return Seg(bits, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, win, length, **kw)


def cfg(**kw) -> ConntrackSettings:
    return ConntrackSettings(**kw)


DEFAULT = cfg()


def handshake(c_isn=1000, s_isn=5000, cwin=64240, swin=65160, cws=None, sws=None, sackok=False, st=DEFAULT):
    """SYN, SYN/ACK, ACK; returns the tracker in ESTABLISHED."""
    trk, why = TcpTracker.new(seg("S", c_isn, win=cwin, ws=cws, sackok=sackok), st)
    assert why is None and trk.state == S.SYN_SENT
    assert trk.packet(REPLY, seg("SA", s_isn, c_isn + 1, swin, ws=sws, sackok=sackok), st)[0] == ACCEPT
    assert trk.state == S.SYN_RECV
    assert trk.packet(ORIGINAL, seg("A", c_isn + 1, s_isn + 1, cwin), st)[0] == ACCEPT
    assert trk.state == S.ESTABLISHED
    return trk


def play(trk, steps, st=DEFAULT):
    """Feed ``(dir, segment, verdict, state[, reason substring])`` steps; assert each outcome."""
    for i, step in enumerate(steps):
        d, pkt, want, state = step[:4]
        verdict, reason = trk.packet(DIRS[d], pkt, st)
        assert verdict == want, f"step {i}: {verdict.name} ({reason}), expected {want.name}"
        assert trk.state == state, f"step {i}: state {trk.state.name}, expected {state.name}"
        if len(step) > 4:
            assert reason is not None and step[4] in reason, f"step {i}: reason {reason!r}"
    return trk


# --------------------------------------------------------------------------------------------------
# The table itself


def test_table_shape_and_kernel_cells():
    assert len(TCP_CONNTRACKS) == 2
    assert all(len(d) == 6 and all(len(row) == 10 for row in d) for d in TCP_CONNTRACKS)
    # A few cells that changed between 3.x and 6.x (reference B.2): the client's SYN/ACK in SYN_RECV
    # is a simultaneous-open retransmission (sSR, was sIG) and a server SYN in TIME_WAIT reopens.
    assert TCP_CONNTRACKS[ORIGINAL][1][S.SYN_RECV] == S.SYN_RECV
    assert TCP_CONNTRACKS[REPLY][0][S.TIME_WAIT] == S.SYN_SENT
    assert TCP_CONNTRACKS[ORIGINAL][3][S.NONE] == S.ESTABLISHED  # pickup


# --------------------------------------------------------------------------------------------------
# Opening


def test_three_way_handshake_states_timeouts_and_assured():
    trk, why = TcpTracker.new(seg("S", 1000, win=64240), DEFAULT)
    assert trk.state == S.SYN_SENT and trk.timeout(DEFAULT) == 120 and not trk.seen_reply
    assert trk.packet(REPLY, seg("SA", 5000, 1001), DEFAULT) == (ACCEPT, None)
    assert trk.state == S.SYN_RECV and trk.timeout(DEFAULT) == 60 and trk.seen_reply
    assert not trk.assured
    assert trk.packet(ORIGINAL, seg("A", 1001, 5001), DEFAULT) == (ACCEPT, None)
    # SYN_RECV -> ESTABLISHED with a reply seen: ASSURED, and the five-day timeout.
    assert trk.state == S.ESTABLISHED and trk.assured and trk.timeout(DEFAULT) == 432000


@pytest.mark.parametrize(
    "flags, reason",
    [
        ("SA", "invalid new"),  # too late, no reason to do anything
        ("FA", "invalid new"),
        ("R", "invalid new"),
        ("RA", "invalid new"),
        ("", "invalid tcp flag combination"),  # tcp_error runs first
        ("F", "invalid tcp flag combination"),
        ("SF", "invalid tcp flag combination"),
        ("SR", "invalid tcp flag combination"),
        ("FSRPAU", "invalid tcp flag combination"),
    ],
)
def test_first_packet_that_cannot_create_a_connection(flags, reason):
    trk, why = TcpTracker.new(seg(flags, 1), DEFAULT)
    assert trk is None and why.startswith(reason)


def test_valid_flag_sets_ignore_psh_ece_cwr():
    for flags in ("S", "SU", "SA", "R", "RA", "FA", "FAU", "A", "AU", "SEC", "PA", "FPA", "AEC"):
        assert tcp_error(seg(flags, 0).flags) is None, flags
    for flags in ("", "F", "SF", "SR", "SFA", "RF", "RFA", "U", "P", "FSRPAUEC"):
        assert tcp_error(seg(flags, 0).flags) == "invalid tcp flag combination", flags


def test_bad_flag_combination_on_an_existing_connection_is_invalid_and_changes_nothing():
    trk = handshake()
    assert trk.packet(ORIGINAL, seg("SF", 1001, 5001), DEFAULT) == (INVALID, "invalid tcp flag combination")
    assert trk.state == S.ESTABLISHED


def test_syn_retransmission_does_not_renew_the_timer():
    trk, _ = TcpTracker.new(seg("S", 1000), DEFAULT)
    assert trk.expires(0.0, 0.0) == 120.0
    assert trk.packet(ORIGINAL, seg("S", 1000), DEFAULT) == (ACCEPT, None)
    assert trk.state == S.SYN_SENT
    # Port reuse by a client or NAT box must not keep the entry alive forever.
    assert not trk.refreshed and trk.expires(50.0, 120.0) == 120.0


def test_ack_before_synack_is_invalid_and_reply_ack_is_ignored():
    trk, _ = TcpTracker.new(seg("S", 1000), DEFAULT)
    play(
        trk,
        [
            ("o", seg("A", 1001, 5001), INVALID, S.SYN_SENT, "(index 3) in dir 0 invalid, state SYN_SENT"),
            ("r", seg("A", 77, 1001), IGNORE, S.SYN_SENT, "(index 3) in dir 1 ignored, state SYN_SENT"),
        ],
    )


def test_rst_answering_syn_closes_and_deletes_the_entry():
    trk, _ = TcpTracker.new(seg("S", 1000), DEFAULT)
    assert trk.packet(REPLY, seg("RA", 0, 1001, 0), DEFAULT) == (ACCEPT, None)
    # "If only reply is a RST, we can consider ourselves not to have an established connection".
    assert trk.state == S.CLOSE and trk.dead and trk.rst_seen


def test_simultaneous_open_goes_through_syn_sent2():
    trk, _ = TcpTracker.new(seg("S", 1000, ws=7, sackok=True), DEFAULT)
    play(
        trk,
        [
            ("r", seg("S", 5000, ws=7, sackok=True), ACCEPT, S.SYN_SENT2),
            ("o", seg("SA", 1000, 5001, ws=7, sackok=True), ACCEPT, S.SYN_RECV),
            ("r", seg("SA", 5000, 1001, ws=7, sackok=True), IGNORE, S.SYN_RECV),
            # The reply side's ACK finishes a simultaneous open (the table alone would say SYN_RECV).
            ("r", seg("A", 5001, 1001), ACCEPT, S.ESTABLISHED),
        ],
    )
    assert trk.timeout(DEFAULT) == 432000


def test_syn_sent2_has_its_builtin_two_minutes():
    trk, _ = TcpTracker.new(seg("S", 1000), DEFAULT)
    trk.packet(REPLY, seg("S", 5000), DEFAULT)
    assert trk.state == S.SYN_SENT2 and trk.timeout(DEFAULT) == 120.0


# --------------------------------------------------------------------------------------------------
# Closing


def test_client_closes_first():
    trk = handshake()
    play(
        trk,
        [
            ("o", seg("PA", 1001, 5001, length=100), ACCEPT, S.ESTABLISHED),
            ("r", seg("A", 5001, 1101), ACCEPT, S.ESTABLISHED),
            ("o", seg("FA", 1101, 5001), ACCEPT, S.FIN_WAIT),
            ("r", seg("A", 5001, 1102), ACCEPT, S.CLOSE_WAIT),
            ("r", seg("FA", 5001, 1102), ACCEPT, S.LAST_ACK),
            ("o", seg("A", 1102, 5002), ACCEPT, S.TIME_WAIT),
        ],
    )
    assert trk.fin_seen(ORIGINAL) and trk.fin_acked(ORIGINAL)
    assert trk.fin_seen(REPLY) and trk.fin_acked(REPLY)
    assert trk.timeout(DEFAULT) == 120 and not trk.rst_seen


def test_server_closes_first_and_half_close_timers():
    trk = handshake()
    trk.packet(REPLY, seg("FA", 5001, 1001), DEFAULT)
    assert trk.state == S.FIN_WAIT and trk.fin_seen(REPLY) and not trk.fin_acked(REPLY)
    # The FIN is outstanding data: the unacknowledged cap (300 s) beats FIN_WAIT's 120? No: only
    # timeouts *longer* than 300 are capped, so FIN_WAIT keeps its 120.
    assert trk.timeout(DEFAULT) == 120
    trk.packet(ORIGINAL, seg("A", 1001, 5002), DEFAULT)
    assert trk.state == S.CLOSE_WAIT and trk.fin_acked(REPLY) and not trk.fin_seen(ORIGINAL)
    assert trk.timeout(DEFAULT) == 60
    trk.packet(ORIGINAL, seg("FA", 1001, 5002), DEFAULT)
    assert trk.state == S.LAST_ACK and trk.timeout(DEFAULT) == 30


def test_simultaneous_close():
    trk = handshake()
    play(
        trk,
        [
            ("o", seg("FA", 1001, 5001), ACCEPT, S.FIN_WAIT),
            ("r", seg("FA", 5001, 1001), ACCEPT, S.LAST_ACK),  # FIN seen both ways
            ("o", seg("A", 1002, 5002), ACCEPT, S.TIME_WAIT),
            ("r", seg("A", 5002, 1002), ACCEPT, S.TIME_WAIT),  # retransmitted last ACK
        ],
    )


# --------------------------------------------------------------------------------------------------
# RST


def test_exact_rst_closes_with_the_close_timeout():
    trk = handshake()
    trk.packet(REPLY, seg("A", 5001, 1001), DEFAULT)
    assert trk.packet(ORIGINAL, seg("R", 1001), DEFAULT) == (ACCEPT, None)
    assert trk.state == S.CLOSE and trk.timeout(DEFAULT) == 10 and trk.rst_seen and trk.rst_dir == ORIGINAL
    assert not trk.dead  # a reply was seen: the entry lingers for its timeout


def test_rst_in_window_but_not_exact_keeps_established_for_a_challenge_ack():
    trk = handshake()
    trk.packet(REPLY, seg("A", 5001, 1001), DEFAULT)
    v, _ = trk.packet(ORIGINAL, seg("R", 1500), DEFAULT)  # in window, td_maxack is 1001
    assert v == ACCEPT and trk.state == S.ESTABLISHED and not trk.rst_seen
    assert trk.timeout(DEFAULT) == 10  # netfilter still picks the RST timeout


def test_rst_with_seq_before_maxack_is_invalid_unless_ignore_invalid_rst():
    trk = handshake()
    trk.packet(REPLY, seg("PA", 5001, 1001, length=50), DEFAULT)
    trk.packet(ORIGINAL, seg("A", 1001, 5051), DEFAULT)  # td_maxack(orig) = 5051
    assert trk.packet(REPLY, seg("R", 5020), DEFAULT) == (INVALID, "invalid rst")
    assert trk.state == S.ESTABLISHED
    st = cfg(tcp_ignore_invalid_rst=True)
    # With the sysctl, the RST goes on to the window check (in window: keep state, challenge ACK).
    assert trk.packet(REPLY, seg("R", 5020), st)[0] == ACCEPT
    # ... and be_liberal alone does not help an invalid RST.
    assert trk.packet(REPLY, seg("R", 5020), cfg(tcp_be_liberal=True)) == (INVALID, "invalid rst")


def test_rst_ending_a_data_train_closes():
    trk = handshake()
    trk.packet(ORIGINAL, seg("A", 1001, 5001), DEFAULT)
    play(
        trk,
        [
            ("r", seg("PA", 5001, 1001, length=19), ACCEPT, S.ESTABLISHED),
            # foo > bar: R at the end of the data just sent, though the ACK for it is not seen yet.
            ("r", seg("R", 5020, 1001), ACCEPT, S.CLOSE),
        ],
    )


def test_rst_in_closing_states_is_taken_without_checks():
    trk = handshake()
    trk.packet(ORIGINAL, seg("FA", 1001, 5001), DEFAULT)
    assert trk.state == S.FIN_WAIT
    # Far out of any window, still closes: the tuple may already be reused.
    assert trk.packet(REPLY, seg("R", 999999), DEFAULT) == (ACCEPT, None)
    assert trk.state == S.CLOSE


# --------------------------------------------------------------------------------------------------
# The window: van Rooij's four bounds, with netfilter's words


def test_seq_over_upper_bound_is_invalid():
    trk = handshake(swin=1000)  # the server grants 1000 bytes
    v, why = trk.packet(ORIGINAL, seg("PA", 1001 + 5000, 5001, length=100), DEFAULT)
    assert v == INVALID and why == "SEQ is over upper bound 2002 (over the window of the receiver)"


def test_empty_ack_with_seq_over_the_window_is_invalid_in_6x():
    # 3.x skipped the seq checks for data-less segments; 6.x checks them.
    trk = handshake(swin=1000)
    v, why = trk.packet(ORIGINAL, seg("A", 1001 + 5000, 5001), DEFAULT)
    assert v == INVALID and why.startswith("SEQ is over upper bound")


def test_a_little_more_than_the_window_is_ignored_but_remembered():
    trk = handshake(swin=1000)
    trk.packet(REPLY, seg("A", 5001, 1001, 1000), DEFAULT)
    # 1000 bytes allowed from 1001: td_maxend is 2001. A segment starting past it, at 2002, fails I
    # but overshoots by only end - td_maxend + 1 = 102 bytes, within the receiver's window.
    assert trk.packet(ORIGINAL, seg("PA", 1001, 5001, length=1000), DEFAULT)[0] == ACCEPT
    v, why = trk.packet(ORIGINAL, seg("PA", 2002, 5001, length=100), DEFAULT)
    assert v == IGNORE and why == "102 bytes more than expected"
    # td_end moved, so the receiver's ACK for that data is not "ACKed data not seen yet".
    assert trk.packet(REPLY, seg("A", 5001, 2102, 1000), DEFAULT)[0] == ACCEPT


def test_ack_over_upper_bound_is_invalid():
    trk = handshake()
    v, why = trk.packet(REPLY, seg("A", 5001, 1001 + 10), DEFAULT)  # ACKs 10 bytes never sent
    assert v == INVALID and why == "ACK is over upper bound 1002 (ACKed data not seen yet)"
    assert trk.state == S.ESTABLISHED


def test_seq_under_lower_bound_is_ignored():
    trk = handshake(swin=1000, cwin=1000)
    for i in range(5):
        trk.packet(ORIGINAL, seg("PA", 1001 + 900 * i, 5001, length=900), DEFAULT)
        trk.packet(REPLY, seg("A", 5001, 1001 + 900 * (i + 1), 1000), DEFAULT)
    # An old segment, far below td_end - receiver's max window: already ACKed data retransmitted.
    v, why = trk.packet(ORIGINAL, seg("PA", 1001, 5001, length=10), DEFAULT)
    assert v == IGNORE and why.startswith("SEQ is under lower bound") and "already ACKed" in why


def test_ack_under_lower_bound_is_ignored():
    trk = handshake()
    v, why = trk.packet(REPLY, seg("A", 5001, 1001 - 100000), DEFAULT)
    assert v == IGNORE and why.startswith("ignored ACK under lower bound")


def test_ignored_and_invalid_segments_leave_the_timer_alone():
    trk = handshake()
    trk.packet(REPLY, seg("A", 5001, 1001 + 10), DEFAULT)
    assert not trk.refreshed and trk.expires(5.0, 99.0) == 99.0


# --------------------------------------------------------------------------------------------------
# Window scaling


def test_window_scaling_applies_when_both_syns_carry_it():
    trk = handshake(cws=7, sws=2, cwin=64240, swin=65160)
    o, r = trk.seen
    assert (o.td_scale, r.td_scale) == (7, 2)
    # SYN windows are never scaled: after the handshake the client may send up to 65160 bytes.
    assert o.td_maxend == 1001 + 65160
    trk.packet(REPLY, seg("A", 5001, 1001, 1000), DEFAULT)  # 1000 << 2 = 4000 bytes
    assert o.td_maxend == 1001 + 65160  # the edge never moves back
    trk.packet(REPLY, seg("A", 5001, 1001, 20000), DEFAULT)  # 20000 << 2 = 80000
    assert o.td_maxend == 1001 + 80000
    assert trk.packet(ORIGINAL, seg("PA", 1001 + 80000, 5001, length=1), DEFAULT)[0] == ACCEPT
    v, _ = trk.packet(ORIGINAL, seg("PA", 1001 + 80001 + 100000, 5001, length=1), DEFAULT)
    assert v == INVALID


def test_window_scaling_off_unless_both_sides_offer_it():
    trk = handshake(cws=7, sws=None, cwin=1000, swin=1000)
    assert trk.seen[0].td_scale == 0 and trk.seen[1].td_scale == 0
    assert trk.seen[1].td_maxend == 5001 + 1000
    trk.packet(ORIGINAL, seg("A", 1001, 5001, 2000), DEFAULT)
    assert trk.seen[1].td_maxend == 5001 + 2000  # unscaled (2000 << 7 had it been scaled)


def test_window_scale_is_clamped_to_14():
    trk = handshake(cws=15, sws=20)
    assert trk.seen[0].td_scale == 14 and trk.seen[1].td_scale == 14


def test_zero_window_selects_the_retrans_timeout():
    trk = handshake()
    trk.packet(REPLY, seg("A", 5001, 1001, 0), DEFAULT)
    assert trk.timeout(DEFAULT) == 300  # min(ESTABLISHED, max_retrans) after a zero window


# --------------------------------------------------------------------------------------------------
# SACK


def test_sack_edge_is_the_ack_when_sack_permitted():
    trk = handshake(sackok=True)
    trk.packet(ORIGINAL, seg("PA", 1001, 5001, length=1000), DEFAULT)
    # Selective ACK of bytes that were sent: fine.
    assert trk.packet(REPLY, seg("A", 5001, 1001, sacks=[(1501, 2001)]), DEFAULT)[0] == ACCEPT
    # A SACK block beyond anything sent: the "ack" is over the upper bound.
    v, why = trk.packet(REPLY, seg("A", 5001, 1001, sacks=[(2001, 3001)]), DEFAULT)
    assert v == INVALID and why.startswith("ACK is over upper bound 2002")


def test_sack_blocks_are_not_read_without_sack_permitted():
    trk = handshake(sackok=False)
    trk.packet(ORIGINAL, seg("PA", 1001, 5001, length=1000), DEFAULT)
    assert trk.packet(REPLY, seg("A", 5001, 1001, sacks=[(2001, 3001)]), DEFAULT)[0] == ACCEPT


def test_seed_003_unshifted_sack_blocks_behind_a_seq_shifting_middlebox():
    """Seed 003: a PIX randomises the ISN of the server behind it, and conntrack runs on that server.

    The PIX shifts the server's seq on the way out and the client's ack back on the way in, but
    leaves the SACK blocks in the shifted space. Conntrack on the server side then sees SACK edges
    far past anything the server sent: INVALID, and ``--state INVALID -j DROP`` resets the scp.
    ``tcp_be_liberal`` makes conntrack accept them.
    """
    shift = 0x10000  # the PIX's ISN offset for the server
    isn = 5000  # the server's real ISN, which is what conntrack on the server side sees

    def conversation(st):
        trk, _ = TcpTracker.new(seg("S", 1000, ws=7, sackok=True), st)
        out = [trk.packet(REPLY, seg("SA", isn, 1001, ws=7, sackok=True), st)[0]]
        out.append(trk.packet(ORIGINAL, seg("A", 1001, isn + 1, 502), st)[0])
        out.append(trk.packet(REPLY, seg("PA", isn + 1, 1001, 502, length=1400), st)[0])
        out.append(trk.packet(REPLY, seg("PA", isn + 1401, 1001, 502, length=1400), st)[0])
        # The client lost the first segment: its ack was shifted back, its SACK block was not.
        sack = (isn + shift + 1401, isn + shift + 2801)
        out.append(trk.packet(ORIGINAL, seg("A", 1001, isn + 1, 502, sacks=[sack]), st))
        return out

    out = conversation(DEFAULT)
    assert out[:4] == [ACCEPT] * 4
    assert out[4] == (INVALID, "ACK is over upper bound 7802 (ACKed data not seen yet)")
    assert conversation(cfg(tcp_be_liberal=True))[4] == (ACCEPT, None)


# --------------------------------------------------------------------------------------------------
# be_liberal and loose pickup


def test_be_liberal_accepts_window_failures_but_not_table_invalids():
    st = cfg(tcp_be_liberal=True)
    trk = handshake(swin=1000, st=st)
    assert trk.packet(ORIGINAL, seg("PA", 1001 + 5000, 5001, length=100), st) == (ACCEPT, None)
    assert trk.packet(REPLY, seg("A", 5001, 1001 + 9999), st) == (ACCEPT, None)
    # Not a window check: a SYN/ACK from the client in ESTABLISHED is still invalid.
    assert trk.packet(ORIGINAL, seg("SA", 1001, 5001), st)[0] == INVALID


def test_loose_pickup_of_an_established_connection():
    trk, why = TcpTracker.new(seg("A", 123456, 987654, 500, length=10), DEFAULT)
    assert why is None and trk.state == S.ESTABLISHED and not trk.assured
    # Both directions get SACK_PERM|BE_LIBERAL; no five-day timer without a reply.
    assert trk.seen[0].flags & 0x0A == 0x0A and trk.seen[1].flags & 0x0A == 0x0A
    assert trk.timeout(DEFAULT) == 300
    assert trk.packet(REPLY, seg("A", 987654, 123466, 500), DEFAULT)[0] == ACCEPT
    assert trk.seen_reply and not trk.assured
    assert trk.packet(ORIGINAL, seg("A", 123466, 987654, 500), DEFAULT)[0] == ACCEPT
    assert trk.assured and trk.timeout(DEFAULT) == 432000


def test_no_pickup_when_loose_is_off():
    trk, why = TcpTracker.new(seg("A", 123456, 987654), cfg(tcp_loose=False))
    assert trk is None and why.startswith("invalid new")
    # A SYN still opens.
    assert TcpTracker.new(seg("S", 1), cfg(tcp_loose=False))[0] is not None


# --------------------------------------------------------------------------------------------------
# Retransmissions and timeouts


def test_retransmission_counter_selects_max_retrans_timeout():
    trk = handshake()
    trk.packet(REPLY, seg("A", 5001, 1001), DEFAULT)
    assert trk.timeout(DEFAULT) == 432000
    same = ("o", seg("A", 1001, 5001, 64240), ACCEPT, S.ESTABLISHED)
    play(trk, [same])  # first one: remembered, retrans = 0
    play(trk, [same, same])
    assert trk.retrans == 2 and trk.timeout(DEFAULT) == 432000
    play(trk, [same])
    assert trk.retrans == 3 and trk.timeout(DEFAULT) == 300  # tcp_max_retrans = 3
    play(trk, [("o", seg("A", 1001, 5001, 64000), ACCEPT, S.ESTABLISHED)])  # window changed
    assert trk.retrans == 0 and trk.timeout(DEFAULT) == 432000
    assert trk.timeout(cfg(tcp_max_retrans=1)) == 432000  # the value is chosen at packet time


def test_unacknowledged_data_caps_the_timeout():
    trk = handshake()
    trk.packet(ORIGINAL, seg("PA", 1001, 5001, length=100), DEFAULT)
    assert trk.timeout(DEFAULT) == 300
    trk.packet(REPLY, seg("A", 5001, 1101), DEFAULT)
    assert trk.timeout(DEFAULT) == 432000


def test_out_of_window_fin_answering_fin_shrinks_an_assured_timer():
    trk = handshake()
    trk.packet(REPLY, seg("A", 5001, 1001), DEFAULT)
    assert trk.expires(0.0, 0.0) == 432000
    # Both ends believe the connection over, conntrack sees their FINs out of window.
    assert trk.packet(ORIGINAL, seg("FA", 900000, 5001), DEFAULT)[0] == INVALID
    assert trk.expires(10.0, 432000.0) == 432000.0  # first one only remembered
    assert trk.packet(REPLY, seg("FA", 900000, 1001), DEFAULT)[0] == INVALID
    assert trk.expires(10.0, 432000.0) == 310.0
    assert trk.expires(10.0, 100.0) == 100.0  # short timers are left alone


# --------------------------------------------------------------------------------------------------
# Reopening, ignored SYNs and resynchronisation


def test_syn_into_time_wait_reopens_after_a_fin_close():
    trk = handshake()
    play(
        trk,
        [
            ("o", seg("FA", 1001, 5001), ACCEPT, S.FIN_WAIT),
            ("r", seg("FA", 5001, 1002), ACCEPT, S.LAST_ACK),
            ("o", seg("A", 1002, 5002), ACCEPT, S.TIME_WAIT),
        ],
    )
    syn = seg("S", 777777)
    assert trk.packet(ORIGINAL, syn, DEFAULT) == (ACCEPT, "reopen")
    assert trk.reopen
    new, why = TcpTracker.new(syn, DEFAULT)
    assert new.state == S.SYN_SENT


def test_syn_after_own_rst_reopens_but_not_after_the_peers():
    trk = handshake()
    trk.packet(ORIGINAL, seg("R", 1001), DEFAULT)
    assert trk.state == S.CLOSE
    assert trk.packet(ORIGINAL, seg("S", 2000), DEFAULT) == (ACCEPT, "reopen")

    trk = handshake()
    trk.packet(REPLY, seg("R", 5001), DEFAULT)
    v, why = trk.packet(ORIGINAL, seg("S", 2000), DEFAULT)
    assert v == IGNORE and why == "packet (index 0) in dir 0 ignored, state CLOSE" and not trk.reopen


def test_syn_in_established_is_ignored_then_synack_resyncs():
    trk = handshake()
    # The client abandoned the connection we still hold and opens a new one on the same tuple.
    assert trk.packet(ORIGINAL, seg("S", 90000, ws=5, sackok=True), DEFAULT)[0] == IGNORE
    assert trk.state == S.ESTABLISHED
    # The server's SYN/ACK acknowledges that SYN: client and server are in sync, we catch up.
    assert trk.packet(REPLY, seg("SA", 70000, 90001, ws=3, sackok=True), DEFAULT) == (ACCEPT, None)
    assert trk.state == S.SYN_RECV
    assert trk.seen[0].td_scale == 5 and trk.seen[1].td_scale == 3
    assert trk.packet(ORIGINAL, seg("A", 90001, 70001), DEFAULT)[0] == ACCEPT
    assert trk.state == S.ESTABLISHED


def test_challenge_ack_in_last_ack_is_not_the_last_ack():
    trk = handshake()
    play(
        trk,
        [
            ("r", seg("FA", 5001, 1001), ACCEPT, S.FIN_WAIT),
            ("o", seg("FA", 1001, 5002), ACCEPT, S.LAST_ACK),
            ("o", seg("S", 50000), IGNORE, S.LAST_ACK),  # spurious SYN
            # RFC 5961: the server answers with a challenge ACK, which does not ACK our last FIN.
            ("r", seg("A", 5002, 1002), IGNORE, S.LAST_ACK, "challenge-ack ignored"),
            ("r", seg("A", 5002, 1002), ACCEPT, S.TIME_WAIT),
        ],
    )


def test_ack_offset_undoes_sequence_adjustment():
    """NAT/FTP seq adjustment: the server saw the client's seq shifted by +40 after a rewrite."""
    trk = handshake()
    trk.packet(ORIGINAL, seg("PA", 1001, 5001, length=100), DEFAULT)
    # The server ACKs 1101 + 40 (the mangled stream); without the offset that is data never seen.
    assert trk.packet(REPLY, seg("A", 5001, 1141), DEFAULT)[0] == INVALID
    assert trk.packet(REPLY, seg("A", 5001, 1141), DEFAULT, ack_offset=40) == (ACCEPT, None)


def test_seq_offset_restores_rewritten_sequence_numbers():
    trk = handshake()
    off = 0x7000_0000
    assert trk.packet(ORIGINAL, seg("PA", 1001 + off, 5001, length=10), DEFAULT)[0] == INVALID
    assert trk.packet(ORIGINAL, seg("PA", 1001 + off, 5001, length=10), DEFAULT, seq_offset=off)[0] == ACCEPT


def test_sequence_numbers_wrap():
    trk = handshake(c_isn=0xFFFFFFF0, s_isn=0xFFFFFF00)
    play(
        trk,
        [
            ("o", seg("PA", 0xFFFFFFF1, 0xFFFFFF01, length=100), ACCEPT, S.ESTABLISHED),
            ("r", seg("A", 0xFFFFFF01, (0xFFFFFFF1 + 100) & 0xFFFFFFFF), ACCEPT, S.ESTABLISHED),
            ("r", seg("A", 0xFFFFFF01, (0xFFFFFFF1 + 200) & 0xFFFFFFFF), INVALID, S.ESTABLISHED),
        ],
    )


# --------------------------------------------------------------------------------------------------
# Robustness


_flag_sets = st.sampled_from(["S", "SA", "A", "PA", "FA", "R", "RA", "", "SF", "FPA", "AU", "SEC"])
_segments = st.tuples(
    st.sampled_from([ORIGINAL, REPLY]),
    _flag_sets,
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 65535),
    st.integers(0, 3000),
    st.one_of(st.none(), st.integers(0, 20)),
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), max_size=3),
)


def _near(base: int, x: int) -> int:
    # Keep most numbers close to the conversation so the interesting branches are reached.
    return (base + (x % 4000) - 2000) & 0xFFFFFFFF if x % 5 else x


def _snapshot(trk) -> tuple:
    peers = tuple(tuple(getattr(p, f) for f in p.__slots__) for p in trk.seen)
    return tuple(getattr(trk, f) for f in trk.__slots__ if f != "seen") + peers


@hsettings(max_examples=300, deadline=None)
@given(
    rest=st.lists(
        st.tuples(
            st.sampled_from([ORIGINAL, REPLY]),
            st.sampled_from(["A", "PA", "A", "PA", "AU", "FA", "R", "S"]),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 65535),
            st.integers(0, 3000),
            st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), max_size=2),
        ),
        max_size=40,
    ),
    sackok=st.booleans(),
    scale=st.booleans(),
    offset=st.sampled_from([0, 0, 7, 0xFFFFFF00]),
    liberal=st.booleans(),
)
def test_the_established_fast_path_is_the_general_path(rest, sackok, scale, offset, liberal):
    """``packet()`` takes a shortcut for in-window ACK segments in ESTABLISHED: verdicts and every
    field must come out as the general path (``_packet`` + SEEN_REPLY) leaves them."""
    st_ = cfg(tcp_be_liberal=liberal)
    ws = 7 if scale else None
    fast = handshake(cws=ws, sws=ws, sackok=sackok, st=st_)
    slow = handshake(cws=ws, sws=ws, sackok=sackok, st=st_)
    assert _snapshot(fast) == _snapshot(slow)
    for d, fl, sq, ak, win, ln, sacks in rest:
        base_seq, base_ack = (1001, 5001) if d == ORIGINAL else (5001, 1001)
        p = seg(fl, _near(base_seq, sq), _near(base_ack, ak), win, ln, sacks=sacks)
        got = fast.packet(d, p, st_, ack_offset=offset)
        want = slow._packet(d, p, st_, 0, offset)
        if d and want[0] is not INVALID:
            slow.seen_reply = True
        assert got == want
        assert _snapshot(fast) == _snapshot(slow)


@hsettings(max_examples=300, deadline=None)
@given(
    isn=st.integers(0, 2**32 - 1),
    win=st.sampled_from([0, 1, 64240, 65535]) | st.integers(0, 65535),
    length=st.sampled_from([0, 0, 1, 1460]),
    ws=st.one_of(st.none(), st.integers(0, 20)),
    sackok=st.booleans(),
    liberal=st.booleans(),
    max_retrans=st.sampled_from([3, 0]),
    rest=st.lists(_segments, max_size=12),
)
def test_the_first_syn_shortcut_is_the_general_path(isn, win, length, ws, sackok, liberal, max_retrans, rest):
    """``new`` writes the plain opening SYN out (``_first_syn``): every field must come out as the
    general path (``_packet``) leaves it, and the two trackers go on alike."""
    st_ = cfg(tcp_be_liberal=liberal, tcp_max_retrans=max_retrans)
    p = seg("S", isn, 0, win, length, ws=ws, sackok=sackok)
    fast, why = TcpTracker.new(p, st_)
    slow = TcpTracker._new_general(p, st_)
    assert why is None and _snapshot(fast) == _snapshot(slow)
    assert fast.timeout(st_) == slow.timeout(st_) and fast.expires(1.0, 2.0) == slow.expires(1.0, 2.0)
    for d, fl, sq, ak, w, ln, ws2, sok, sacks in rest:
        base_seq, base_ack = (isn, 0) if d == ORIGINAL else (5000, isn + 1)
        q = seg(fl, _near(base_seq, sq), _near(base_ack, ak), w, ln, ws=ws2, sackok=sok, sacks=sacks)
        assert fast.packet(d, q, st_) == slow.packet(d, q, st_)
        assert _snapshot(fast) == _snapshot(slow)
        if fast.reopen:
            break


@hsettings(max_examples=400, deadline=None)
@given(
    first=_segments,
    rest=st.lists(_segments, max_size=30),
    liberal=st.booleans(),
    loose=st.booleans(),
    ign=st.booleans(),
)
def test_random_segment_sequences_never_raise(first, rest, liberal, loose, ign):
    st_ = cfg(tcp_be_liberal=liberal, tcp_loose=loose, tcp_ignore_invalid_rst=ign)

    def mk(t):
        d, fl, sq, ak, win, ln, ws, sok, sacks = t
        return d, seg(fl, _near(1000, sq), _near(5000, ak), win, ln, ws=ws, sackok=sok, sacks=sacks)

    _, p = mk(first)
    trk, why = TcpTracker.new(p, st_)
    if trk is None:
        assert why
        return
    for t in rest:
        d, p = mk(t)
        verdict, reason = trk.packet(d, p, st_)
        assert verdict in (ACCEPT, IGNORE, INVALID)
        assert (reason is None) == (verdict == ACCEPT) or reason == "reopen"
        assert isinstance(trk.state, TcpState)
        assert trk.timeout(st_) >= 0
        if trk.reopen:
            trk, why = TcpTracker.new(p, st_)
            assert trk is not None
        if trk.dead:
            return


# --------------------------------------------------------------------------------------------------
# With the real codec: scapy-built packets decoded by statewall.packet


def test_codec_packets_carry_wscale_and_sack_to_the_tracker():
    from scapy.layers.inet import IP, TCP

    from statewall.packet import decode

    def pkt(src, dst, sport, dport, flags, seq, ack=0, win=65535, options=(), data=b""):
        raw = IP(src=src, dst=dst) / TCP(
            sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=win, options=list(options)
        )
        return decode(bytearray(bytes(raw / data) if data else bytes(raw)))

    c, s = ("10.0.0.1", "10.0.0.2")
    syn_opts = [("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]
    trk, _ = TcpTracker.new(pkt(c, s, 4000, 80, "S", 1000, options=syn_opts), DEFAULT)
    assert trk.packet(REPLY, pkt(s, c, 80, 4000, "SA", 5000, 1001, options=syn_opts), DEFAULT)[0] == ACCEPT
    assert trk.seen[0].td_scale == 7 and trk.seen[1].flags & 0x02
    assert trk.packet(ORIGINAL, pkt(c, s, 4000, 80, "A", 1001, 5001, 502), DEFAULT)[0] == ACCEPT
    assert trk.seen[1].td_maxend == 5001 + (502 << 7)
    assert trk.packet(REPLY, pkt(s, c, 80, 4000, "PA", 5001, 1001, data=b"x" * 1000), DEFAULT)[0] == ACCEPT
    sack = [("NOP", None), ("NOP", None), ("SAck", (5501, 7001))]
    v, why = trk.packet(ORIGINAL, pkt(c, s, 4000, 80, "A", 1001, 5001, 502, options=sack), DEFAULT)
    assert v == INVALID and why.startswith("ACK is over upper bound 6002")
