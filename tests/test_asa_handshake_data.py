"""Data during the ASA's three-way handshake, and the ASA's own words for what it refuses there.

What Cisco documents, and statewall does: data on the responder's SYN-ACK is dropped by default
(tcp-map ``synack-data drop``, asp-drop ``tcp-synack-data``) and passes with ``synack-data allow``; data
on the initiator's ACK is an ordinary segment. What Cisco does not document: data from the responder
after its SYN-ACK and before the initiator's ACK (docs/asa.md). statewall forwards it when it is in
window and says so wherever a user would take the result for the box's: replay counts each such segment
as not modelled (``statewall.gaps.EMBRYONIC_DATA``), in one process and sharded.

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

from fixtures import CLIENT, PIX_NO_NAT, SERVER
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import Drop, DropReason
from statewall.gaps import EMBRYONIC_DATA
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


@pytest.mark.parametrize("sharded", [False, True], ids=["one-process", "sharded"])
def test_replay_counts_responder_data_on_an_embryonic_connection_as_not_modelled(tmp_path, sharded):
    from statewall.replay import replay
    from statewall.scale.replay import replay as sharded_replay

    policy = parse(PIX_NO_NAT, "hs.cfg")
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
# No netfilter wording in an ASA drop


def test_tcp_intercepts_server_handshake_refusal_is_in_the_asas_words():
    # The server answers TCP Intercept's SYN with a SYN-ACK acknowledging beyond it: the normalizer's
    # invalid ACK, with the ASA's description, not conntrack's "ACK is over upper bound" and ctstate.
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
    assert d.reason is DropReason.TCP_INVALID_ACK and d.message == "TCP invalid ACK"
    assert set(d.detail) == {"conn"}
    no_netfilter_words([d])


@pytest.mark.parametrize(
    "script",
    [
        "client data before the SYN-ACK",
        "responder data out of window",
        "client ACK beyond the server's data",
        "RST out of window before the handshake",
        "SYN-ACK from the client",
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
