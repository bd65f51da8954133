"""Seed 003 by replay: a Cisco PIX shifts the sequence numbers of an scp upload but leaves the SACK blocks
of the answers unshifted, and the Linux firewall in front of the application server, whose ruleset drops
``--state INVALID``, drops every segment that carries such a SACK block; the workaround from the
netfilter list, ``ip_conntrack_tcp_be_liberal = 1``, lets the whole transfer through.

The transfer is recorded beside the application server (10.20.0.5, on the Linux firewall's ``dmz``
side) uploading to 198.51.100.20 beyond the PIX. One segment is lost beyond the PIX, so the receiver
acknowledges the later ones with SACK blocks until it is retransmitted. The PIX is statewall's own
ASA-dialect engine with sequence randomization and the ``pix-sack-bug`` fault: the capture goes through
it first, and what its inside interface emits (the answers with shifted acks put back but SACK blocks
left as the receiver wrote them) is what the Linux firewall receives from the PIX. That capture, merged
with the server's own packets, is replayed through seed 003's ruleset (``tests/configs/seed003-pix.rules``).
"""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from statewall.cli import main
from statewall.dialects.asa import parse as parse_asa
from statewall.dialects.iptables import parse
from statewall.engine import Firewall
from statewall.packet import str_to_addr
from statewall.pcapio import PcapWriter, read_packets
from statewall.replay import replay
from statewall.seqrand import FAULT_PIX_SACK, make_secret, offset_for

CONFIGS = Path(__file__).parent / "configs"
SEED003 = (CONFIGS / "seed003-pix.rules").read_text()
# The ruleset before the workaround: the file without its two be_liberal lines.
STRICT = "".join(ln for ln in SEED003.splitlines(keepends=True) if "be_liberal" not in ln)

SERVER, REMOTE = "10.20.0.5", "198.51.100.20"  # the application server (scp client) and its peer
SPORT, ISN = 40022, 0x1000_0000
SEG, N, LOST = 1000, 8, 3
SACKING = N - LOST - 1  # duplicate ACKs carrying SACK blocks
TCP_STATES = {
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
}

# The PIX between the Linux firewall (10.10.0.2) and the rest of the world.
PIX = """\
hostname pix
interface Ethernet0
 nameif outside
 security-level 0
 ip address 198.51.100.1 255.255.255.0
interface Ethernet1
 nameif inside
 security-level 100
 ip address 10.10.0.1 255.255.255.0
route inside 10.20.0.0 255.255.0.0 10.10.0.2 1
"""


def _ip(text: str) -> int:
    return str_to_addr(text)[1]


def upload() -> list[tuple[float, bytes]]:
    """The scp upload as a sniffer beside the application server records it: SACK permitted, window
    scaling, timestamps; segment LOST is lost beyond the PIX the first time."""
    r_isn = 0x7000_0000
    t = 500.0
    out: list[tuple[float, bytes]] = []
    ts = [100]

    def seg(src, dst, sport, dport, flags, seq, ack, payload=b"", opts=None, sack=None):
        nonlocal t
        t += 0.002
        ts[0] += 1
        options = opts if opts is not None else [("NOP", None), ("NOP", None), ("Timestamp", (ts[0], 1))]
        if sack:
            options = options + [("NOP", None), ("NOP", None), ("SAck", tuple(sack))]
        window = 64240 if "S" in flags else 502
        p = IP(src=src, dst=dst, ttl=64) / TCP(
            sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=window, options=options
        )
        out.append((t, bytes(p / Raw(payload) if payload else p)))

    def c(flags, seq, ack, payload=b"", **kw):
        seg(SERVER, REMOTE, SPORT, 22, flags, seq, ack, payload, **kw)

    def r(flags, seq, ack, **kw):
        seg(REMOTE, SERVER, 22, SPORT, flags, seq, ack, **kw)

    syn = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]
    c("S", ISN, 0, opts=syn)
    r("SA", r_isn, ISN + 1, opts=syn)
    c("A", ISN + 1, r_isn + 1)
    base = ISN + 1
    for i in range(N):
        c("PA", base + i * SEG, r_isn + 1, bytes([65 + i]) * SEG)
    hole = base + LOST * SEG
    r("A", r_isn + 1, hole)
    for last in range(LOST + 1, N):
        r("A", r_isn + 1, hole, sack=[hole + SEG, base + (last + 1) * SEG])
    c("PA", hole, r_isn + 1, bytes([65 + LOST]) * SEG)
    r("A", r_isn + 1, base + N * SEG)
    c("FA", base + N * SEG, r_isn + 1)
    r("FA", r_isn + 1, base + N * SEG + 1)
    c("A", base + N * SEG + 1, r_isn + 2)
    return out


def _seed_showing_the_bug() -> int:
    """A randomization secret whose offset pushes the unshifted SACK edges above what was sent (the
    other half of the offsets puts them below, where netfilter ignores them)."""
    for seed in range(32):
        off = offset_for(make_secret(seed), 4, _ip(SERVER), SPORT, _ip(REMOTE), 22, ISN)
        if off < 0x8000_0000:
            return seed
    raise AssertionError("no seed with an offset in the lower half")


def through_the_pix(tmp_path: Path, faults=frozenset({FAULT_PIX_SACK})) -> Path:
    """The capture the Linux firewall would take: the application server's packets as sent, the
    peer's answers as the PIX's inside interface emitted them."""
    pix = Firewall(parse_asa(PIX, "pix.cfg"), seed=_seed_showing_the_bug(), faults=faults)
    cap = tmp_path / "linux-fw.pcap"
    with PcapWriter(cap) as w:
        for t, data in upload():
            from_server = IP(data).src == SERVER
            if from_server:
                w.write(data, t)
                pix.receive("inside", data, t)
            else:
                # The peer answers the PIX's (shifted) numbers, as it would live.
                res = pix.receive("outside", pix.replay_rewrite("outside", data, t), t)
                for iface, out in res.packets:
                    assert iface == "inside"
                    w.write(bytes(out), t)
    return cap


def test_the_pix_leaves_the_sack_blocks_in_its_own_numbers():
    seed = _seed_showing_the_bug()
    off = offset_for(make_secret(seed), 4, _ip(SERVER), SPORT, _ip(REMOTE), 22, ISN)
    pix = Firewall(parse_asa(PIX, "pix.cfg"), seed=seed, faults={FAULT_PIX_SACK})
    sacks = []
    for t, data in upload():
        if IP(data).src == SERVER:
            pix.receive("inside", data, t)
            continue
        for _, out in pix.receive("outside", pix.replay_rewrite("outside", data, t), t).packets:
            opts = dict((k, v) for k, v in IP(bytes(out))[TCP].options if k == "SAck")
            if opts:
                sacks.append((IP(data)[TCP].options[-1][1], opts["SAck"]))
    # Acks come back in the server's own numbers; SACK edges stay shifted by the offset.
    assert len(sacks) == SACKING
    for sent, got in sacks:
        assert tuple((x + off) & 0xFFFFFFFF for x in sent) == got


def test_seed003_ruleset_marks_the_sacking_segments_invalid_and_drops_them(tmp_path):
    cap = through_the_pix(tmp_path)
    summary = replay(parse(STRICT, "seed003-pix.rules"), [(None, cap)], tmp_path / "out")
    drops = [rec for rec in _jsonl(tmp_path / "out" / "events.jsonl") if rec["event"] == "Drop"]
    assert summary["drops_by_reason"] == {"ctstate-invalid": SACKING}
    assert {d["acl"] for d in drops} == {"filter/FORWARD"}
    assert all(d["message"].startswith("ACK is over upper bound") for d in drops)
    assert {d["origin"]["text"] for d in drops} == {"iptables -A FORWARD -m state --state INVALID -j DROP"}
    assert {d["hint"] for d in drops} == {"net.netfilter.nf_conntrack_tcp_be_liberal = 1"}
    assert {d["detail"]["ctstate"] for d in drops} == {"INVALID"}
    # The dropped segments are the duplicate ACKs; everything else reached the application server.
    to_server = [IP(p) for _, p in read_packets(tmp_path / "out" / "dmz.pcap")]
    assert not any(_has_sack(p) for p in to_server)
    assert len(to_server) == sum(1 for _, p in upload() if IP(p).src == REMOTE) - SACKING
    # iptables -nvxL FORWARD after the replay: the INVALID rule counted them.
    out = _cli(["iptables", "-c", _write(tmp_path, STRICT), "-nvxL", "FORWARD", "--after-replay", str(cap)])
    sacking_bytes = sum(len(p) for _, p in read_packets(cap) if _has_sack(IP(p)))
    assert out[2].split()[:3] == [str(SACKING), str(sacking_bytes), "DROP"]


def test_with_be_liberal_the_transfer_passes_completely(tmp_path):
    cap = through_the_pix(tmp_path)
    summary = replay(parse(SEED003, "seed003-pix.rules"), [(None, cap)], tmp_path / "out")
    assert summary["dropped"] == 0
    assert summary["forwarded"] == summary["packets_in"] == len(upload())
    to_server = [IP(p) for _, p in read_packets(tmp_path / "out" / "dmz.pcap")]
    assert sum(1 for p in to_server if _has_sack(p)) == SACKING
    log = (tmp_path / "out" / "log.txt").read_text().splitlines()
    # conntrack -E tells the connection's life: NEW, the handshake, the close.
    states = [next(w for w in ln.split() if w in TCP_STATES) for ln in log if "\t" in ln]
    assert states[:3] == ["SYN_SENT", "SYN_RECV", "ESTABLISHED"]
    assert states[-1] == "TIME_WAIT"


def test_without_the_fault_the_strict_ruleset_lets_the_transfer_through(tmp_path):
    cap = through_the_pix(tmp_path, faults=frozenset())
    summary = replay(parse(STRICT, "seed003-pix.rules"), [(None, cap)], tmp_path / "out")
    assert summary["dropped"] == 0 and summary["forwarded"] == len(upload())


def _has_sack(p: IP) -> bool:
    return any(k == "SAck" for k, _ in p[TCP].options)


def _jsonl(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "seed003.rules"
    path.write_text(text)
    return str(path)


def _cli(argv: list[str]) -> list[str]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    return buf.getvalue().splitlines()
