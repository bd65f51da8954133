"""Data during the ASA's three-way handshake, and the ASA's own words for what it refuses there.

What Cisco documents, and statewall does: data on the responder's SYN-ACK is dropped by default
(tcp-map ``synack-data drop``, asp-drop ``tcp-synack-data``) and passes with ``synack-data allow``; data
on the initiator's ACK is an ordinary segment. What Cisco does not document: data from the responder
after its SYN-ACK and before the initiator's ACK (docs/asa.md). statewall forwards it when it is in
window and says so wherever a user would take the result for the box's: replay counts each such segment
as not modelled (``statewall.gaps.EMBRYONIC_DATA``), in one process and sharded.

A second SYN (or SYN-ACK) with another initial sequence number on an embryonic connection is dropped as
``tcp-seq-syn-diff`` with 419002, as the ASA does; a retransmission passes.

And no ASA drop speaks netfilter: no Linux-only reason, no conntrack words, no ``ctstate`` detail, on
handshake anomalies, under TCP Intercept, and across a fuzzed stream.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from fixtures import CLIENT, MAPPED, PIX_NO_NAT, PIX_PAT, SERVER
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import Drop, DropReason
from statewall.gaps import EMBRYONIC_DATA
from statewall.logfmt.asa import format_event
from statewall.logfmt.counters import ASA_VERIFIED, format_show_asp_drop
from statewall.pcapio import PcapWriter
from statewall.tcptrack import InvalidReason
from traffic import Conversation, Host, Link

# Reasons and words that are netfilter's or Linux's own: none may name an ASA drop.
LINUX_ONLY = frozenset(
    {
        DropReason.TCP_INVALID,
        DropReason.CT_TABLE_FULL,
        DropReason.SOURCE_ROUTE,
        DropReason.SYNPROXY,
        DropReason.SYNPROXY_INVALID,
        DropReason.REASM_OVERLAP,
        DropReason.REASM_DUPLICATE,
        DropReason.REASM_TIMEOUT,
        DropReason.REASM_FAILED,
        DropReason.REASM_MEMORY,
        DropReason.MARTIAN_SOURCE,
        DropReason.MARTIAN_DESTINATION,
        DropReason.MCAST_NOT_FORWARDED,
        DropReason.IPV6_ADDR_ERROR,
        DropReason.IPV6_BEYOND_SCOPE,
    }
)
NETFILTER_WORDS = (*(r.value for r in InvalidReason), "ctstate", "conntrack", "nf_conntrack", "sysctl")


def netfilter_wording(d: Drop) -> str | None:
    """What in an ASA drop is netfilter's, or None."""
    if d.reason in LINUX_ONLY:
        return f"reason {d.reason.keyword}"
    if "ctstate" in d.detail:
        return f"detail {d.detail}"
    for text in (d.message or "", d.hint or ""):
        for word in NETFILTER_WORDS:
            if word in text:
                return f"{word!r} in {text!r}"
    return None


def tcp_map(options: str) -> str:
    """PIX_NO_NAT with a tcp-map of ``options`` applied to all traffic."""
    lines = "".join(f" {o}\n" for o in options.strip().splitlines())
    return (
        PIX_NO_NAT
        + f"tcp-map norm\n{lines}class-map all\n match any\npolicy-map global_policy\n class all\n"
        + "  set connection advanced-options norm\nservice-policy global_policy global\n"
    )


def hosts(config: str = PIX_NO_NAT, port: int = 40000) -> Conversation:
    """A client inside and a server outside, as a capture shows them (the replay hook carries them)."""
    return Conversation(
        Link.asa(config, "hs.cfg", now=10.0, seed=7),
        Host(CLIENT, port, "inside", isn=1000),
        Host(SERVER, 80, "outside", isn=50000),
        acks="capture",
        syn_options=[("MSS", 1460)],
    )


def no_netfilter_words(drops) -> None:
    found = [(d.reason.keyword, w) for d in drops if (w := netfilter_wording(d)) is not None]
    assert not found, found


# --------------------------------------------------------------------------------------------------
# (b) data on the SYN-ACK, (c) data on the initiator's ACK: Cisco's tcp-map says


def test_data_on_the_syn_ack_is_dropped_by_default_as_the_asa_counts_it():
    h = hosts()
    assert h.send("a", "S", options=[("MSS", 1460)])
    assert not h.send("b", "SA", b"early", options=[("MSS", 1460)])
    (d,) = h.drops()
    assert d.reason is DropReason.TCP_SYNACK_DATA and d.reason.keyword == "tcp-synack-data"
    assert d.reason.description == "TCP SYNACK with data"  # the show asp drop line's words
    no_netfilter_words([d])


def test_synack_data_allow_lets_the_syn_ack_and_its_data_through():
    h = hosts(tcp_map("synack-data allow"))
    assert h.send("a", "S", options=[("MSS", 1460)])
    step = h.send("b", "SA", b"early", options=[("MSS", 1460)])
    ((iface, pkt),) = step.pairs()
    assert iface == "inside" and bytes(pkt[TCP].payload) == b"early" and h.drops() == []


def test_the_initiators_data_on_its_handshake_ack_is_an_ordinary_segment():
    h = hosts()
    assert h.send("a", "S", options=[("MSS", 1460)])
    assert h.send("b", "SA", options=[("MSS", 1460)])
    step = h.send("a", "PA", b"GET / HTTP/1.0\r\n\r\n")
    ((iface, pkt),) = step.pairs()
    assert iface == "outside" and bytes(pkt[TCP].payload) == b"GET / HTTP/1.0\r\n\r\n"
    assert h.drops() == []
    assert h.send("b", "PA", b"HTTP/1.0 200 OK\r\n\r\n")  # established: the answer passes


# --------------------------------------------------------------------------------------------------
# (a) responder data before the initiator's ACK: not modelled, and said so


def test_responder_data_before_the_handshake_ack_is_forwarded_when_in_window():
    # What statewall does (no Cisco source says what the ASA does; docs/asa.md): in window, it passes.
    h = hosts()
    assert h.send("a", "S", options=[("MSS", 1460)])
    assert h.send("b", "SA", options=[("MSS", 1460)])
    assert h.send("b", "PA", b"220 banner\r\n")
    assert h.drops() == []


def test_responder_data_out_of_window_before_the_ack_fails_the_handshake_in_the_asas_words():
    h = hosts()
    assert h.send("a", "S", options=[("MSS", 1460)])
    assert h.send("b", "SA", options=[("MSS", 1460)])
    assert not h.send("b", "PA", b"x", seq=50001 + 10**6)
    (d,) = h.drops()
    assert d.reason is DropReason.TCP_3WHS_FAILED and d.message == "TCP failed 3 way handshake"
    no_netfilter_words([d])


def _handshake_capture(tmp_path: Path, early: bool) -> list[tuple[str, Path]]:
    """An FTP-like exchange (the server speaks first) captured on both sides; with ``early`` the
    server's banner arrives before the client's handshake ACK, as a capture on a lossy path shows it."""
    c, s = CLIENT, SERVER

    def tcp(src, dst, sport, dport, flags, seq, ack, data=b""):
        pkt = IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
        return pkt / Raw(data) if data else pkt

    banner = tcp(s, c, 2121, 40000, "PA", 5001, 1001, b"220 hi\r\n")
    # The handshake's ACK: with ``early`` the client has the banner and acknowledges it too.
    ack = tcp(c, s, 40000, 2121, "A", 1001, 5009 if early else 5001)
    packets = [
        ("inside", tcp(c, s, 40000, 2121, "S", 1000, 0)),
        ("outside", tcp(s, c, 2121, 40000, "SA", 5000, 1001)),
        *((("outside", banner), ("inside", ack)) if early else (("inside", ack), ("outside", banner))),
        ("inside", tcp(c, s, 40000, 2121, "PA", 1001, 5009, b"USER a\r\n")),
        ("outside", tcp(s, c, 2121, 40000, "PA", 5009, 1009, b"331 pw\r\n")),
    ]
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = {"inside": tmp_path / "inside.pcap", "outside": tmp_path / "outside.pcap"}
    with PcapWriter(paths["inside"]) as wi, PcapWriter(paths["outside"]) as wo:
        for n, (iface, p) in enumerate(packets):
            (wi if iface == "inside" else wo).write(bytes(p), float(n))
    return [("inside", paths["inside"]), ("outside", paths["outside"])]


@pytest.mark.parametrize("config", [PIX_NO_NAT, PIX_PAT], ids=["no-nat", "pat"])
@pytest.mark.parametrize("sharded", [False, True], ids=["one-process", "sharded"])
def test_replay_counts_responder_data_on_an_embryonic_connection_as_not_modelled(tmp_path, sharded, config):
    """Through PAT too: the engine rewrites a forwarded packet in place, the count reads it as it arrived."""
    from statewall.replay import replay
    from statewall.scale.replay import replay as sharded_replay

    policy = parse(config, "hs.cfg")
    for early, counted in ((True, {EMBRYONIC_DATA: 1}), (False, {})):
        caps = _handshake_capture(tmp_path / str(early), early)
        out = tmp_path / f"out-{early}"
        if sharded:
            summary = sharded_replay(policy, caps, out, shards=2, inline=True, report=False)
        else:
            summary = replay(policy, caps, out, report=False)
        assert summary["forwarded"] == 6 and summary["dropped"] == 0, summary
        assert summary["not_modelled"] == counted, (early, summary["not_modelled"])


def test_replay_of_an_iptables_ruleset_names_no_asa_gap(tmp_path):
    # The Linux tracker is Linux's own: its handling of such data is modelled, nothing is counted.
    from statewall.dialects.iptables import parse as parse_iptables
    from statewall.replay import replay

    rules = (
        "#@statewall interface inside dev eth1 address 10.0.0.1/24\n"
        "#@statewall interface outside dev eth0 address 192.168.9.30/24\n"
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    )
    policy = parse_iptables(rules, "t.rules")
    summary = replay(policy, _handshake_capture(tmp_path, True), tmp_path / "out", report=False)
    assert summary["forwarded"] == 6 and summary["not_modelled"] == {}


def test_the_replay_table_says_responder_data_was_forwarded_but_not_modelled(tmp_path, capsys, monkeypatch):
    from statewall.cli import main

    monkeypatch.setenv("COLUMNS", "200")  # the table's row on one line

    cfg = tmp_path / "hs.cfg"
    cfg.write_text(PIX_NO_NAT)
    (inside, cap_in), (outside, cap_out) = _handshake_capture(tmp_path, True)
    code = main(
        ["replay", "-c", str(cfg), "--ingress", f"{inside}={cap_in}", "--ingress", f"{outside}={cap_out}",
         "-o", str(tmp_path / "out"), "--no-report"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "forwarded, but responder data on an embryonic connection not modelled" in out


# --------------------------------------------------------------------------------------------------
# A second SYN or SYN-ACK with another initial sequence number: tcp-seq-syn-diff and 419002


@pytest.mark.parametrize(
    "script, refused",
    [
        ("SYN again, same ISN", False),
        ("SYN with a higher ISN before the SYN-ACK", True),
        ("SYN with a lower ISN before the SYN-ACK", True),
        ("SYN again after the SYN-ACK, same ISN", False),
        ("SYN with another ISN after the SYN-ACK", True),
        ("SYN-ACK again, same ISN", False),
        ("SYN-ACK with another ISN", True),
    ],
)
def test_a_second_syn_with_another_isn_on_an_embryonic_connection_is_dropped(script, refused):
    h = hosts(port=41000 + len(script))
    assert h.send("a", "S", options=[("MSS", 1460)])
    if "after the SYN-ACK" in script or script.startswith("SYN-ACK"):
        assert h.send("b", "SA", options=[("MSS", 1460)])
    seq = {"same": None, "higher": 6000, "lower": 500, "another": 6000}[
        next(w for w in ("same", "higher", "lower", "another") if w in script)
    ]
    if script.startswith("SYN-ACK"):
        step = h.send("b", "SA", seq=50000 if seq is None else 70000, options=[("MSS", 1460)])
    else:
        step = h.send("a", "S", seq=1000 if seq is None else seq, options=[("MSS", 1460)])
    assert bool(step) is not refused
    if refused:
        (d,) = h.drops()
        assert d.reason is DropReason.TCP_SEQ_SYN_DIFF and d.reason.keyword == "tcp-seq-syn-diff"
        assert "another initial sequence number" in d.message and d.origin is None
        no_netfilter_words([d])
    else:
        assert h.drops() == []
    # The embryonic connection is kept: the handshake ends as it began, and data flows.
    if not script.startswith("SYN-ACK") and "after" not in script:
        assert h.send("b", "SA", options=[("MSS", 1460)])
    assert h.send("a", "A") and h.send("a", "PA", b"hello") and h.send("b", "PA", b"world")
    assert len(h.drops()) == int(refused)


def test_the_drop_is_logged_as_419002_in_the_words_of_real_asa_logs():
    h = hosts()
    assert h.send("a", "S", options=[("MSS", 1460)])
    assert not h.send("a", "S", seq=1001, options=[("MSS", 1460)])
    (d,) = h.drops()
    assert format_event(d, timestamp=False) == [
        f"%ASA-4-419002: Duplicate TCP SYN from inside:{CLIENT}/40000 to outside:{SERVER}/80 with "
        "different initial sequence number"
    ]


def test_show_asp_drop_prints_the_asas_own_line():
    # The line of a real ASA's show asp drop (ThousandEyes' "Cisco ASA breaks Path Visualization").
    assert DropReason.TCP_SEQ_SYN_DIFF in ASA_VERIFIED
    text = format_show_asp_drop({DropReason.TCP_SEQ_SYN_DIFF: 74630})
    assert "  TCP SEQ in SYN/SYNACK invalid (tcp-seq-syn-diff)                         74630\n" in text
    assert text.index("tcp-seq-syn-diff") < text.index("Flow drop:")  # a frame drop


def test_traceroute_syns_with_one_isn_more_each_hop_are_dropped_after_the_first():
    # The scenario Cisco's behaviour was described from: the same four-tuple, TTL and ISN one more
    # each probe. The ASA (no decrement-ttl) passes the first and drops the others.
    link = Link.asa(PIX_NO_NAT, "hs.cfg", now=10.0, seed=7)
    passed = []
    for n in range(1, 6):
        syn = IP(src=CLIENT, dst=SERVER, ttl=n) / TCP(sport=49221, dport=80, flags="S", seq=1642740607 + n)
        passed.append(bool(link.send("inside", bytes(syn))))
    assert passed == [True, False, False, False, False]
    assert [d.reason for d in link.drops()] == [DropReason.TCP_SEQ_SYN_DIFF] * 4


# A Linux box that forwards everything but what conntrack calls INVALID.
LINUX_INVALID_DROP = (
    "#@statewall interface inside dev eth1 address 10.0.0.1/24\n"
    "#@statewall interface outside dev eth0 address 192.168.9.30/24\n"
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    "-A FORWARD -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n"
)


def linux_hosts() -> Conversation:
    """The same client and server through ``LINUX_INVALID_DROP``."""
    return Conversation(
        Link.iptables(LINUX_INVALID_DROP, "t.rules", now=10.0),
        Host(CLIENT, 40000, "inside", isn=1000),
        Host(SERVER, 80, "outside", isn=50000),
        acks="capture",
    )


def test_linux_takes_a_second_syn_with_a_higher_isn_as_a_reinitialized_connection():
    # nf_conntrack_proto_tcp.c tcp_in_window: in SYN_SENT, an original SYN ending after td_end
    # reinitializes the sender (RFC 793, "sequence numbers larger than those recently used").
    h = linux_hosts()
    assert h.send("a", "S")
    assert h.send("a", "S", seq=6000)
    assert h.drops() == []


# --------------------------------------------------------------------------------------------------
# A SYN-ACK that does not acknowledge the SYN: tcp-ack-syn-diff


@pytest.mark.parametrize(
    "ack, refused", [(1001, False), (1000, True), (999, True), (1002, True), (5000, True)]
)
def test_a_syn_ack_must_acknowledge_the_syn(ack, refused):
    h = hosts(port=42000 + ack % 1000)
    assert h.send("a", "S", options=[("MSS", 1460)])
    step = h.send("b", "SA", ack=ack, options=[("MSS", 1460)])
    assert bool(step) is not refused
    if refused:
        (d,) = h.drops()
        assert d.reason is DropReason.TCP_ACK_SYN_DIFF and d.reason.keyword == "tcp-ack-syn-diff"
        assert d.reason.description == "TCP ACK in SYNACK invalid" and d.detail["ack"] == ack
        assert format_event(d) == []  # no syslog message is known for it
        no_netfilter_words([d])
        # The embryonic connection waits for the real SYN-ACK.
        assert h.send("b", "SA", ack=1001, options=[("MSS", 1460)]) and h.send("a", "A")
    else:
        assert h.drops() == []


def test_a_syn_ack_may_acknowledge_only_the_syn_of_a_syn_with_data():
    # TCP Fast Open's fallback: the server takes the SYN, not its data.
    h = hosts()
    assert h.send("a", "S", b"early data", options=[("MSS", 1460)])
    assert h.send("b", "SA", ack=1001, options=[("MSS", 1460)])
    assert h.drops() == []


def test_show_asp_drop_has_the_asas_line_for_a_syn_ack_with_a_bad_ack():
    # A real ASA's show asp drop line (a public repository's saved output).
    assert DropReason.TCP_ACK_SYN_DIFF in ASA_VERIFIED
    text = format_show_asp_drop({DropReason.TCP_ACK_SYN_DIFF: 130})
    assert "  TCP ACK in SYNACK invalid (tcp-ack-syn-diff)                               130\n" in text


def test_linux_takes_a_syn_ack_acknowledging_below_the_syn():
    # nf_conntrack_proto_tcp.c tcp_in_window: the ack's lower bound is a window back, not the SYN; an
    # ack beyond it is INVALID ("ACK is over upper bound").
    for ack, passes in ((1000, True), (1002, False)):
        h = linux_hosts()
        assert h.send("a", "S")
        assert bool(h.send("b", "SA", ack=ack)) is passes
        assert [d.reason for d in h.drops()] == ([] if passes else [DropReason.TCP_INVALID])


# --------------------------------------------------------------------------------------------------
# No netfilter wording in an ASA drop


def test_tcp_intercepts_server_handshake_refusal_is_in_the_asas_words():
    # The server answers TCP Intercept's SYN with a SYN-ACK acknowledging beyond it: the ASA's
    # tcp-ack-syn-diff, not conntrack's "ACK is over upper bound" and ctstate.
    sys.path.insert(0, str(Path(__file__).parent))
    import test_intercept as ti

    fw, _server = ti.web(limit=1)
    net = ti.Net(fw, [])
    ti.fill_embryonic(net, 1, random.Random(6))
    _, sa, _ = ti._cookie_synack(fw, net.now)
    ack = IP(src="198.51.100.9", dst=ti.SERVER) / TCP(
        sport=41000, dport=80, seq=556, ack=sa[TCP].seq + 1, flags="A"
    )
    ((iface, data),) = fw.receive("outside", bytes(ack), net.now + 0.1).packets
    syn = IP(bytes(data))
    assert iface == "inside" and syn[TCP].flags == "S"
    bad = IP(src=ti.SERVER, dst="198.51.100.9") / TCP(
        sport=80, dport=41000, flags="SA", seq=9000, ack=syn[TCP].seq + 5000, options=[("MSS", 1460)]
    )
    res = fw.receive("inside", bytes(bad), net.now + 0.2)
    assert res.packets == []
    (d,) = [e for e in res.events if isinstance(e, Drop)]
    assert d.reason is DropReason.TCP_ACK_SYN_DIFF
    # In the client's own numbers (TCP Intercept's SYN carried its ISN 555, randomized on the way).
    assert d.message == "SYN-ACK acknowledges 5555, where the SYN's next sequence number is 556"
    assert "ctstate" not in d.detail
    no_netfilter_words([d])


@pytest.mark.parametrize(
    "script",
    [
        "client data before the SYN-ACK",
        "responder data out of window",
        "client ACK beyond the server's data",
        "RST out of window before the handshake",
        "SYN-ACK from the client",
        "second SYN-ACK with another sequence number",
    ],
)
def test_handshake_anomalies_are_refused_in_the_asas_words(script):
    h = hosts(port=40000 + len(script))
    assert h.send("a", "S", options=[("MSS", 1460)])
    if script == "client data before the SYN-ACK":
        h.send("a", "PA", b"GET")
    elif script == "SYN-ACK from the client":
        h.send("a", "SA", ack=1)
    else:
        assert h.send("b", "SA", options=[("MSS", 1460)])
        if script == "responder data out of window":
            h.send("b", "PA", b"x", seq=50001 + 10**6)
        elif script == "client ACK beyond the server's data":
            h.send("a", "A", ack=50001 + 10**6)
        elif script == "RST out of window before the handshake":
            h.send("b", "R", seq=50001 + 10**6)
        else:
            h.send("b", "SA", seq=70000, options=[("MSS", 1460)])
    assert h.drops(), "the anomaly was not refused"
    no_netfilter_words(h.drops())


def test_no_asa_drop_speaks_netfilter_across_a_fuzzed_stream():
    import fuzzing

    parser, text = fuzzing.CONFIGS["asa-pat-ftp-tcpmap"]
    fw = Firewall(parser(text), seed=3)
    rnd = random.Random(13)
    stream = fuzzing.packets(rnd)
    now = 1_000_000.0
    drops = []
    for _ in range(6000):
        iface, pkt, dt = next(stream)
        now += dt
        if dt >= 3.0:
            drops += [e for e in fw.advance(now).events if isinstance(e, Drop)]
        drops += [e for e in fw.receive(iface, pkt, now).events if isinstance(e, Drop)]
    assert len(drops) > 1000 and len({d.reason for d in drops}) > 10  # the stream reached the checks
    no_netfilter_words(drops)


# --------------------------------------------------------------------------------------------------
# Replay of captures that hold both directions of their link (issue 13, item 5): the box's own output
# in a capture is recognised and left out, not fed back in on the wrong side of its connection


MASQUERADE = (
    "#@statewall interface inside dev eth1 address 10.0.0.1/24\n"
    "#@statewall interface outside dev eth0 address 192.168.9.30/24\n"
    "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
    "-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n"
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
    "-A FORWARD -i eth1 -o eth0 -j ACCEPT\nCOMMIT\n"
)


def _link_captures(tmp_path: Path, link: Link) -> tuple[list[tuple[str, Path]], dict[str, int]]:
    """A TCP session through ``link`` (PAT to the outside address), captured as a tap on each link
    sees it: what arrived there and what the firewall sent out there, both directions in one file.
    Returns the captures and how many packets of each the firewall sent."""
    h = Conversation(link, Host(CLIENT, 40000, "inside"), Host(SERVER, 80, "outside", to=CLIENT))
    h.b.to = MAPPED
    h.open()
    h.send("a", "PA", b"GET / HTTP/1.0\r\n\r\n")
    h.send("b", "PA", b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 500)
    h.send("a", "A")
    h.send("b", "FA")
    h.send("a", "FA")
    h.send("b", "A")
    caps, sent = [], {}
    tmp_path.mkdir(parents=True, exist_ok=True)
    for iface in ("inside", "outside"):
        path = tmp_path / f"{iface}.pcap"
        with PcapWriter(path) as w:
            for now, way, i, data in link.record:
                if i == iface:
                    w.write(data, now)
                    sent[iface] = sent.get(iface, 0) + (way == "out")
        caps.append((iface, path))
    return caps, sent


@pytest.mark.parametrize("dialect", ["asa", "iptables"])
def test_a_capture_holding_both_directions_of_its_link_is_replayed_without_the_boxs_output(tmp_path, dialect):
    from statewall.config import parse_policy
    from statewall.replay import replay
    from statewall.scale.replay import replay as sharded_replay

    if dialect == "asa":
        config, link = PIX_PAT, Link.asa(PIX_PAT, "pat.cfg", now=10.0, seed=7)
    else:
        config, link = MASQUERADE, Link.iptables(MASQUERADE, "masq.rules", now=10.0)
    caps, sent = _link_captures(tmp_path / "caps", link)
    # The firewall's output is in both files: the server's 4 segments inside, the client's 5 outside.
    assert sent == {"inside": 4, "outside": 5}
    policy = parse_policy(config, "pat.cfg" if dialect == "asa" else "masq.rules")
    for name, run in (("one", replay), ("sharded", sharded_replay)):
        kw = {"shards": 1, "inline": True} if name == "sharded" else {}  # one shard: the live PAT port
        summary = run(policy, caps, tmp_path / f"out-{name}", report=False, **kw)
        # Each packet that arrived is forwarded; none of the firewall's own is fed back in.
        assert summary["drops_by_reason"] == {} and summary["forwarded"] == 9, (name, summary)
        assert summary["sent_by_firewall"] == 9 and summary["packets_in"] == 9
        assert [c["sent_by_firewall"] for c in summary["captures"]] == [4, 5]


def test_a_spoofed_packet_in_an_outside_capture_is_still_replayed(tmp_path):
    # An inside source towards an inside host, captured on outside: not the box's output (it is
    # not headed back out there), so it is handed over and the box judges it.
    from statewall.replay import replay

    cap = tmp_path / "outside.pcap"
    with PcapWriter(cap) as w:
        w.write(bytes(IP(src="10.0.0.9", dst=CLIENT) / TCP(sport=1, dport=2, flags="S")), 1.0)
        w.write(bytes(IP(src=MAPPED, dst=SERVER) / TCP(sport=1024, dport=80, flags="S")), 2.0)
    summary = replay(parse(PIX_PAT, "pat.cfg"), [("outside", cap)], tmp_path / "out", report=False)
    assert summary["packets_in"] == 1 and summary["sent_by_firewall"] == 1
    assert summary["dropped"] == 1  # the spoofed SYN, refused as the box refuses it


def test_replay_shows_the_duplicate_syn_as_the_asa_would(tmp_path):
    # A traceroute-like capture: the drop in asp-drop.pcap with the ASA's Drop-reason line, 419002 in
    # the log, the count under its keyword.
    from statewall.pcapio import read_comments
    from statewall.replay import replay

    cap = tmp_path / "inside.pcap"
    with PcapWriter(cap) as w:
        for n in (1, 2):
            syn = IP(src=CLIENT, dst=SERVER, ttl=n) / TCP(sport=49221, dport=80, flags="S", seq=7000 + n)
            w.write(bytes(syn), float(n))
    out = tmp_path / "out"
    summary = replay(parse(PIX_NO_NAT, "hs.cfg"), [("inside", cap)], out, report=False)
    assert summary["forwarded"] == 1 and summary["drops_by_reason"] == {"tcp-seq-syn-diff": 1}
    ((_, _, comment),) = read_comments(out / "asp-drop.pcap")
    assert comment.startswith("Drop-reason: (tcp-seq-syn-diff) TCP SEQ in SYN/SYNACK invalid; ingress inside")
    log = (out / "log.txt").read_text()
    assert (
        f"%ASA-4-419002: Duplicate TCP SYN from inside:{CLIENT}/49221 to outside:{SERVER}/80 with "
        "different initial sequence number\n" in log
    )


def test_the_embryonic_data_check_leaves_connections_held_by_their_records_alone():
    """The replay's check reads a connection (Keys.peek): the established ones its compiled record
    holds alone keep no halves, as without the check (before, each data segment's check made its
    connection's halves again for good)."""
    from statewall import craft, fastpath
    from statewall.gaps import GapMatcher
    from statewall.packet import str_to_addr

    if not fastpath.AVAILABLE:
        pytest.skip("the compiled fast path was not built")
    c, s = str_to_addr(CLIENT)[1], str_to_addr(SERVER)[1]
    policy = parse(PIX_PAT, "hs.cfg")
    fw = Firewall(policy, seed=1)
    gaps = GapMatcher(policy, fw)
    now = 10.0

    def send(iface, seg):
        nonlocal now
        now += 0.001
        arrived = fw.replay_rewrite(iface, bytearray(seg), now)
        as_arrived = bytes(arrived)
        res = fw.receive(iface, arrived, now)
        assert res.packets and gaps.forwarded(iface, res.packets, as_arrived) == []
        return res.packets[0][1]

    for sport in range(20000, 20020):
        syn = send("inside", craft.tcp_packet(4, c, s, sport, 80, 1000, 0, 0x02, 64240, b"", b""))
        m, mport = int.from_bytes(syn[12:16], "big"), int.from_bytes(syn[20:22], "big")
        send("outside", craft.tcp_packet(4, s, m, 80, mport, 5000, 1001, 0x12, 65160, b"", b""))
        send("inside", craft.tcp_packet(4, c, s, sport, 80, 1001, 5001, 0x10, 64240, b"", b""))
        send("inside", craft.tcp_packet(4, c, s, sport, 80, 1001, 5001, 0x18, 64240, b"", b"GET /\r\n"))
        send("outside", craft.tcp_packet(4, s, m, 80, mport, 5001, 1008, 0x18, 65160, b"", b"ok"))
    assert len(fw.conns) == 20 and fw.fast.dropped_halves == 20
    assert len(dict.keys(fw.conns.by_key)) == 0
