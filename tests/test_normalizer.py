"""The TCP normalizer, check by check: given a tcp-map (or the ASA's defaults), this segment, expect this
drop, rewrite or pass. Hosts are simulated as a capture taken without the firewall would show them; the
engine's replay hook carries their numbers into the ones the firewall gave the connection, as the
replay adapter does."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP

from fixtures import CLIENT, PIX_NO_NAT, SERVER
from statewall.dialects.asa import parse
from statewall.events import ConnTeardown, Drop, DropReason
from statewall.logfmt.mpf import format_show_service_policy
from statewall.normalizer import exceed_mss_default
from traffic import Conversation, Host, Link


def with_map(options: str, header: str = "") -> str:
    """PIX_NO_NAT plus a tcp-map with ``options`` applied to all traffic through a global class."""
    lines = "".join(f" {o}\n" for o in options.strip().splitlines())
    return (
        header
        + PIX_NO_NAT
        + f"tcp-map norm\n{lines}class-map all\n match any\npolicy-map global_policy\n class all\n"
        + "  set connection advanced-options norm\nservice-policy global_policy global\n"
    )


def hosts(config: str, dport: int = 80, **fw) -> Conversation:
    """A client inside and a server outside talking TCP through one firewall (its randomization from
    a fixed seed); the hosts speak as a capture shows them and the replay hook carries them. The
    handshake announces MSS 1460 both ways unless told otherwise."""
    return Conversation(
        Link.asa(config, "norm.cfg", now=10.0, **{"seed": 7, **fw}),
        Host(CLIENT, 40000, "inside", isn=1000),
        Host(SERVER, dport, "outside", isn=50000),
        acks="capture",
        syn_options=[("MSS", 1460)],
    )


# --------------------------------------------------------------------------------------------------
# exceed-mss and its release-dependent default


@pytest.mark.parametrize(
    "header, default",
    [
        ("ASA Version 8.2(1)\n", "drop"),
        ("PIX Version 7.2(1)\n", "drop"),
        ("ASA Version 9.1(2)\n", "allow"),
        ("", "allow"),
    ],
)
def test_exceed_mss_default_follows_the_declared_release(header: str, default: str):
    assert exceed_mss_default(parse(header + PIX_NO_NAT).version) == default
    h = hosts(header + PIX_NO_NAT)
    h.open(synack=[("MSS", 1000)])
    passed = h.send("c", "PA", b"x" * 1001)
    assert bool(passed) == (default == "allow")
    if default == "drop":
        (drop,) = h.drops()
        assert (drop.reason, drop.detail["mss"], drop.detail["data"]) == (
            DropReason.TCP_MSS_EXCEEDED,
            1000,
            1001,
        )
        assert drop.origin is None and "default before ASA 9.0" in drop.message
        assert drop.hint.startswith("sysopt connection tcpmss minimum 1001, or exceed-mss allow")


def test_exceed_mss_drop_in_a_tcp_map_names_its_line():
    h = hosts(with_map("exceed-mss drop", "ASA Version 9.1(2)\n"))
    h.open(synack=[("MSS", 1000)])
    assert h.send("c", "PA", b"x" * 1000)
    assert not h.send("c", "PA", b"x" * 1200)
    (drop,) = h.drops()
    assert drop.origin.text == "exceed-mss drop" and drop.origin.line == 12


# --------------------------------------------------------------------------------------------------
# Handshake checks


def test_synack_with_data_is_dropped_by_default_and_syn_data_allowed():
    h = hosts(PIX_NO_NAT)
    assert h.send("c", "S", b"early data")  # syn-data allow
    assert not h.send("s", "SA", b"banner")
    assert [d.reason for d in h.drops()] == [DropReason.TCP_SYNACK_DATA]
    h = hosts(with_map("synack-data allow\nsyn-data drop"))
    assert not h.send("c", "S", b"early data")
    assert [d.reason for d in h.drops()] == [DropReason.TCP_SYN_DATA]


def test_the_handshake_ack_must_acknowledge_the_synack_exactly():
    h = hosts(PIX_NO_NAT)
    h.send("c", "S")
    h.send("s", "SA")
    assert not h.send("c", "A", ack=h.b.nxt - 1)
    (drop,) = h.drops()
    assert drop.reason == DropReason.TCP_INVALID_ACK and "does not acknowledge the SYN-ACK" in drop.message
    assert h.send("c", "A")


def test_invalid_ack_and_seq_past_window_allow_let_the_tracker_invalid_through():
    h = hosts(PIX_NO_NAT)
    h.open()
    assert not h.send("c", "PA", b"x", ack=h.b.nxt + 5000)  # acknowledges data never sent
    assert not h.send("c", "PA", b"y", seq=h.a.nxt + 200000)  # far beyond the server's window
    assert [d.reason for d in h.drops()] == [DropReason.TCP_INVALID_ACK, DropReason.TCP_SEQ_PAST_WINDOW]
    assert [d.hint for d in h.drops()] == [
        "invalid-ack allow in a tcp-map applied to this flow",
        "seq-past-window allow in a tcp-map applied to this flow",
    ]
    h = hosts(with_map("invalid-ack allow\nseq-past-window allow"))
    h.open()
    assert h.send("c", "PA", b"x", ack=h.b.nxt + 5000)
    assert h.send("c", "PA", b"y", seq=h.a.nxt + 200000)


# --------------------------------------------------------------------------------------------------
# Header clean-up


def test_urgent_flag_and_pointer_are_cleared_by_default():
    h = hosts(PIX_NO_NAT)
    h.open()
    (out,) = h.send("c", "PAU", b"!", urgptr=1)
    assert out[TCP].flags == "PA" and out[TCP].urgptr == 0
    h = hosts(with_map("urgent-flag allow"))
    h.open()
    (out,) = h.send("c", "PAU", b"!", urgptr=1)
    assert out[TCP].flags == "PAU" and out[TCP].urgptr == 1


@pytest.mark.parametrize("action", ["allow", "clear", "drop"])
def test_reserved_bits(action: str):
    h = hosts(with_map(f"reserved-bits {action}"))
    h.open()
    out = h.send("c", "PA", b"r", reserved=4)
    if action == "drop":
        assert not out and [d.reason for d in h.drops()] == [DropReason.TCP_RESERVED_SET]
    else:
        assert out[0][TCP].reserved == (4 if action == "allow" else 0)
        ref = IP(bytes(out[0]))
        del ref[TCP].chksum
        assert IP(bytes(ref))[TCP].chksum == out[0][TCP].chksum


def test_tcp_options_defaults_clear_unknown_kinds_and_keep_the_usual_ones():
    h = hosts(PIX_NO_NAT)
    syn = [("MSS", 1300), ("SAckOK", b""), ("WScale", 7), ("Timestamp", (1, 0)), (34, b""), (30, b"\x00\x00")]
    (out,) = h.send("c", "S", options=syn)
    kinds = [o[0] for o in out[TCP].options if o[0] not in ("NOP", "EOL")]
    assert kinds == ["MSS", "SAckOK", "WScale", "Timestamp"]  # TFO (34) and MPTCP (30) cleared
    assert len(bytes(out[TCP])) == len(bytes(TCP(options=syn)))  # cleared in place, as NOPs


def test_tcp_options_knobs_clear_and_drop():
    h = hosts(
        with_map(
            "tcp-options selective-ack clear\ntcp-options timestamp clear\ntcp-options window-scale clear"
        )
    )
    (out,) = h.send("c", "S", options=[("MSS", 1300), ("SAckOK", b""), ("WScale", 7), ("Timestamp", (1, 0))])
    assert [o[0] for o in out[TCP].options if o[0] not in ("NOP", "EOL")] == ["MSS"]
    h = hosts(with_map("tcp-options range 19 19 drop"))
    assert not h.send("c", "S", options=[("MSS", 1300), (19, b"\x00" * 16)])
    assert [d.reason for d in h.drops()] == [DropReason.TCP_OPTION_DROP]
    h = hosts(with_map("tcp-options md5 allow"))
    (out,) = h.send("c", "S", options=[("MSS", 1300), (19, b"\x00" * 16)])
    assert "MD5" in [o[0] for o in out[TCP].options]  # scapy names option 19


def test_ttl_evasion_protection_keeps_the_lowest_ttl_seen():
    h = hosts(PIX_NO_NAT)
    h.open()
    # (The ASA keeps the TTL otherwise: no set connection decrement-ttl.)
    assert h.send("c", "PA", b"a", ttl=20)[0].ttl == 20
    assert h.send("c", "PA", b"b", ttl=64)[0].ttl == 20  # not higher than before
    h = hosts(with_map("no ttl-evasion-protection"))
    h.open()
    h.send("c", "PA", b"a", ttl=20)
    assert h.send("c", "PA", b"b", ttl=64)[0].ttl == 64


def test_checksum_verification():
    h = hosts(with_map("checksum-verification"))
    h.open()
    assert not h.send("c", "PA", b"z", chksum=0x1234)
    assert [d.reason for d in h.drops()] == [DropReason.BAD_TCP_CHECKSUM]
    assert h.send("c", "PA", b"z")
    assert hosts(PIX_NO_NAT).send("c", "S", chksum=0x1234)  # off by default


def test_window_variation_drop_ends_the_connection():
    h = hosts(with_map("window-variation drop"))
    h.open()
    assert h.send("s", "A", window=8000)
    assert not h.send("s", "A", window=1000)
    assert [d.reason for d in h.drops()] == [DropReason.TCP_WINDOW_VARIATION]
    (td,) = [e for e in h.events if isinstance(e, ConnTeardown)]
    assert td.reason == "TCP unexpected window size variation"


# --------------------------------------------------------------------------------------------------
# A segment the firewall drops teaches the normalizer nothing (forged segments with the right 4-tuple)


def forged_far(h: Conversation) -> int:
    """A sequence number far outside the client's window."""
    return (h.a.nxt + 0x40000000) & 0xFFFFFFFF


@pytest.mark.parametrize("ttl", [1, 3])
def test_a_dropped_low_ttl_segment_does_not_lower_the_ttl_floor(ttl: int):
    h = hosts(PIX_NO_NAT)
    h.open()
    h.send("c", "PA", b"forged", seq=forged_far(h), ttl=ttl)
    assert not [i for i, _ in h.out[3:] if i == "outside"]  # dropped
    # (The ASA keeps the TTL without set connection decrement-ttl: TTL 1 is no reason to drop.)
    assert [d.reason for d in h.drops()] == [DropReason.TCP_SEQ_PAST_WINDOW]
    (out,) = h.send("c", "PA", b"real", ttl=64)
    assert out.ttl == 64  # the floor is what forwarded segments carried (64), not the forged one's


def test_a_dropped_forged_ack_does_not_move_the_window_edge():
    h = hosts(with_map("window-variation drop"))
    h.open()
    assert h.send("s", "A", window=8000)
    forged = (h.a.nxt + (1 << 30)) & 0xFFFFFFFF
    assert not h.send("s", "A", ack=forged, window=8000)  # acknowledges data never sent: invalid ACK
    assert [d.reason for d in h.drops()] == [DropReason.TCP_INVALID_ACK]
    assert h.send("s", "A", window=8000)
    assert h.send("c", "PA", b"still here")
    assert not [e for e in h.events if isinstance(e, ConnTeardown)]


def test_a_dropped_forged_copy_is_not_the_data_retransmissions_are_held_to():
    h = hosts(with_map("check-retransmission"))
    h.open()
    forged_ack = (h.b.nxt + (1 << 30)) & 0xFFFFFFFF
    start = h.a.nxt
    assert not h.send("c", "PA", b"EVIL!", seq=start, ack=forged_ack)  # the tracker refuses its ACK
    (out,) = h.send("c", "PA", b"hello", seq=start)
    assert bytes(out[TCP].payload) == b"hello"
    assert [d.reason for d in h.drops()] == [DropReason.TCP_INVALID_ACK]


def test_normalizer_counters_count_only_forwarded_rewrites():
    h = hosts(PIX_NO_NAT)
    h.open()
    assert h.send("c", "PA", b"a", ttl=20)
    counters = h.fw.service_policies.default_counters
    assert counters["ttl_modified"] == 0 and counters["urgent_cleared"] == 0
    assert not h.send("c", "UA", b"forged", seq=forged_far(h), ttl=64, urgptr=1)
    assert counters["ttl_modified"] == 0 and counters["urgent_cleared"] == 0
    assert h.send("c", "UA", b"b", ttl=64, urgptr=1)
    assert counters["ttl_modified"] == 1 and counters["urgent_cleared"] == 1


# --------------------------------------------------------------------------------------------------
# Retransmissions and the out-of-order queue


def test_check_retransmission_refuses_different_data_at_the_same_sequence():
    h = hosts(with_map("check-retransmission"))
    h.open()
    start = h.a.nxt
    assert h.send("c", "PA", b"hello")
    assert h.send("c", "PA", b"hello", seq=start)  # an honest retransmission
    assert not h.send("c", "PA", b"HELLO", seq=start)
    assert [d.reason for d in h.drops()] == [DropReason.TCP_BAD_RETRANSMISSION]


def test_queue_limit_reorders_and_times_out():
    h = hosts(with_map("queue-limit 2 timeout 3"))
    h.open()
    start = h.a.nxt
    assert h.send("c", "PA", b"BBBB", seq=start + 4) == []  # a gap before it: held
    out = h.send("c", "PA", b"AAAA", seq=start)
    assert [bytes(p[TCP].payload) for p in out] == [b"AAAA", b"BBBB"]
    h.a.nxt = start + 8
    assert h.send("c", "PA", b"DDDD", seq=start + 12) == []
    assert h.send("c", "PA", b"EEEE", seq=start + 16) == []
    assert h.send("c", "PA", b"FFFF", seq=start + 20) == []  # a third one: the queue holds two
    assert [d.reason for d in h.drops()] == [DropReason.TCP_BUFFER_FULL]
    res = h.fw.advance(h.now + 3.5)
    assert [e.reason for e in res.events if isinstance(e, Drop)] == [DropReason.TCP_BUFFER_TIMEOUT] * 2
    assert h.fw.service_policies.uses[("global", "global_policy", "all")].counters["ooo_timeout_drops"] == 2


def test_without_a_queue_out_of_order_segments_pass_but_inspected_flows_get_three():
    h = hosts(PIX_NO_NAT)
    h.open()
    assert h.send("c", "PA", b"later", seq=h.a.nxt + 100)
    ftp = hosts(PIX_NO_NAT, dport=21)  # the factory global policy inspects FTP: implicit queue of 3
    ftp.open()
    assert ftp.send("c", "PA", b"NOOP\r\n", seq=ftp.a.nxt + 6) == []
    out = ftp.send("c", "PA", b"NOOP\r\n")
    assert len(out) == 2


def test_show_service_policy_counts_the_normalizer():
    h = hosts(with_map("exceed-mss drop"))
    h.open(synack=[("MSS", 500)])
    h.send("c", "PA", b"x" * 600)
    h.send("c", "PAU", b"x", urgptr=1)
    text = format_show_service_policy(h.fw.policy, h.fw.service_policies.uses)
    assert "        Exceeded MSS drops: 1                  SYN with data drops: 0" in text.splitlines()
    assert "        IP TTL modified: 0                     Urgent flag cleared: 1" in text.splitlines()


def test_show_service_policy_counts_inspected_packets():
    ftp = hosts(PIX_NO_NAT, dport=21)
    ftp.open()
    ftp.send("c", "PA", b"NOOP\r\n")
    web = hosts(PIX_NO_NAT)
    web.open()
    text = format_show_service_policy(ftp.fw.policy, ftp.fw.service_policies.uses)
    assert "      Inspect: ftp, packet 4, drop 0, reset-drop 0" in text.splitlines()
    assert "      Inspect: dns, packet 0, drop 0, reset-drop 0" in text.splitlines()
