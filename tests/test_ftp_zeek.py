"""Zeek's real FTP captures replayed through FTP inspection: every connection of the answer key passes.

Three captures nobody on this project wrote (../shared/corpus/zeek, see its README):

* ``ftp/ipv4.pcap``: a client on 141.142.220.0/24 logs in to 199.233.217.249, two passive (227) and
  two active (PORT) data connections. Zeek's conn.log lists five connections. Replayed with the client
  network ``inside`` (level 100) behind PAT to the outside interface 203.0.113.1 and an inside access
  list that permits only the FTP control port: every packet of every one of those five connections
  must leave, in both directions, and nothing else may be opened. The data connections exist only
  because FTP inspection expected them; on the outside the PORT commands name 203.0.113.1, and the
  sequence numbers after them are shifted by the four bytes each rewrite removed.
* ``ftp/ipv6.pcap``: EPSV (229) and EPRT over IPv6, six connections, without NAT.
* ``ftp/retr.pcap``: a RETR over an EPSV data connection; Zeek extracted the file
  (``thefile``). Through PAT and inspection it must arrive byte for byte in the client's capture.

Replay carries the server's captured packets into the live coordinates (mapped address and port,
acknowledgements in the shifted sequence space, the mapped data port of an active connection), so a
session captured without a firewall runs as it would have through one.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path

import dpkt
import pytest

from statewall.pcapio import read_packets
from zeek_ftp import OUTSIDE_IP, asa_front, checksums_ok, run, zeek_log

NO_INSPECT = (
    "policy-map global_policy\n class inspection_default\n  no inspect ftp\n"
    "service-policy global_policy global\n"
)


def config4(client_net: str, inside_ip: str, pat: bool) -> str:
    text = asa_front(inside_ip)
    text += f"access-list INSIDE_IN extended permit tcp {client_net} 255.255.255.0 any eq ftp\n"
    text += "access-group INSIDE_IN in interface inside\n"
    if pat:
        text += f"global (outside) 1 interface\nnat (inside) 1 {client_net} 255.255.255.0\n"
    return text


CONFIG6 = """hostname fw
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ipv6 address 2001:db8:ffff::1/64
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ipv6 address 2001:470:1f11:81f::1/64
ipv6 route outside ::/0 2001:db8:ffff::2
access-list INSIDE_IN extended permit tcp 2001:470:1f11:81f::/64 any eq ftp
access-group INSIDE_IN in interface inside
"""


# -------------------------------------------------------------------------------------------------
# Helpers


def _addr(b: bytes) -> str:
    return str(ipaddress.ip_address(b))


def segments(path: Path) -> list[tuple[str, int, str, int, int, int, int, bytes, bool]]:
    """(src, sport, dst, dport, seq, ack, flags, payload, checksums ok) of every TCP packet."""
    out = []
    for _, raw in read_packets(path):
        ip = dpkt.ip.IP(raw) if raw[0] >> 4 == 4 else dpkt.ip6.IP6(raw)
        tcp = ip.data
        assert isinstance(tcp, dpkt.tcp.TCP)
        out.append(
            (
                _addr(ip.src),
                tcp.sport,
                _addr(ip.dst),
                tcp.dport,
                tcp.seq,
                tcp.ack,
                tcp.flags,
                bytes(tcp.data),
                checksums_ok(raw),
            )
        )
    return out


def _signed(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def ends(row: dict[str, str]) -> tuple[tuple[str, int], tuple[str, int]]:
    norm = lambda a: str(ipaddress.ip_address(a))  # noqa: E731
    return (norm(row["id.orig_h"]), int(row["id.orig_p"])), (norm(row["id.resp_h"]), int(row["id.resp_p"]))


def unmapped(segs, mapped: str | None, client: str):
    """Outside packets with the PAT address put back to the client's (PAT kept every port here)."""
    if mapped is None:
        return segs
    out = []
    for s, sp, d, dp, *rest in segs:
        out.append((client if s == mapped else s, sp, client if d == mapped else d, dp, *rest))
    return out


def per_connection(segs, rows) -> Counter:
    """Packets per (Zeek uid, direction): 'orig' from originator to responder, 'resp' back."""
    count: Counter = Counter()
    for row in rows:
        o, r = ends(row)
        for s, sp, d, dp, *_ in segs:
            if ((s, sp), (d, dp)) == (o, r):
                count[row["uid"], "orig"] += 1
            elif ((s, sp), (d, dp)) == (r, o):
                count[row["uid"], "resp"] += 1
    return count


def stream(segs, src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """One direction's payload reassembled by sequence number (retransmissions collapse)."""
    data: dict[int, bytes] = {}
    for s, sp, d, dp, seq, _ack, _fl, payload, _ok in segs:
        if (s, sp) == src and (d, dp) == dst and payload:
            data[seq] = payload
    out = b""
    base = min(data) if data else 0
    for seq in sorted(data):
        off = (seq - base) & 0xFFFFFFFF
        assert off <= len(out), f"gap in the stream at {seq}"
        out = out[:off] + data[seq] + out[off + len(data[seq]) :]
    return out


def check_forwarded_completely(captured, inside, outside, rows, client_side) -> None:
    """Every packet of every Zeek connection left, each direction by the other side's interface."""
    want = per_connection(captured, rows)
    assert sum(want.values()) == len(captured)
    for row in rows:
        assert want[row["uid"], "orig"] == int(row["orig_pkts"]), row["uid"]
        assert want[row["uid"], "resp"] == int(row["resp_pkts"]), row["uid"]
    got_in = per_connection(inside, rows)
    got_out = per_connection(outside, rows)
    assert sum(got_in.values()) == len(inside) and sum(got_out.values()) == len(outside)
    for row in rows:
        (oh, _), _ = ends(row)
        from_client = "orig" if client_side(oh) else "resp"
        from_server = "resp" if from_client == "orig" else "orig"
        uid = row["uid"]
        assert got_out[uid, from_client] == want[uid, from_client], (uid, "outside")
        assert got_in[uid, from_server] == want[uid, from_server], (uid, "inside")
        assert got_out[uid, from_server] == got_in[uid, from_client] == 0


# -------------------------------------------------------------------------------------------------
# ipv4.pcap: PAT, PORT and 227


@pytest.fixture(scope="module")
def ipv4(corpus_dir: Path) -> Path:
    path = corpus_dir / "zeek" / "Traces" / "ftp" / "ipv4.pcap"
    if not path.is_file():
        pytest.skip(f"Zeek FTP trace not found at {path}")
    return path


def test_ipv4_every_connection_passes_through_pat_with_ftp_inspection(
    tmp_path: Path, ipv4: Path, corpus_dir: Path
) -> None:
    rows = zeek_log(corpus_dir, "scripts.base.protocols.ftp.ftp-ipv4")
    assert len(rows) == 5
    summary, events = run(config4("141.142.220.0", "141.142.220.254", pat=True), ipv4, tmp_path)
    captured = segments(ipv4)
    client = "141.142.220.235"
    inside = segments(tmp_path / "inside.pcap")
    outside_raw = segments(tmp_path / "outside.pcap")
    assert all(s[-1] for s in inside + outside_raw)
    # On the outside the client is the interface address, with every port kept (all were free).
    assert {s[0] for s in outside_raw} == {OUTSIDE_IP} and client not in {s[2] for s in outside_raw}
    outside = unmapped(outside_raw, OUTSIDE_IP, client)
    check_forwarded_completely(captured, inside, outside, rows, lambda h: h == client)

    # Exactly Zeek's five connections were built, nothing else; nothing was dropped.
    built = [e for e in events if e["event"] == "ConnBuilt"]
    seen = {
        (
            (e["initiator"]["address"], e["initiator"]["port"]),
            (e["responder"]["address"], e["responder"]["port"]),
        )
        for e in built
    }
    assert len(built) == 5 and seen == {ends(r) for r in rows}
    assert summary["packets_in"] == summary["forwarded"] == 95 and summary["dropped"] == 0
    assert summary["connections"]["torn_down"] == 5
    assert summary["connections"]["teardown_reasons"] == {"TCP FINs": 5}
    # The active ones came in from the lower security level with no access list: RELATED only.
    assert sorted(e["direction"] for e in built) == ["inbound", "inbound", "outbound", "outbound", "outbound"]

    # The PORT commands name the mapped address outside; everything else arrived byte for byte.
    control = next(r for r in rows if r["service"] == "ftp")
    c, s = ends(control)
    sent = stream(captured, c, s)
    assert b"PORT 141,142,220,235,131,46\r\n" in sent and b"PORT 141,142,220,235,147,203\r\n" in sent
    assert stream(outside, c, s) == sent.replace(b"PORT 141,142,220,235,", b"PORT 203,0,113,1,")
    assert stream(inside, s, c) == stream(captured, s, c)
    for row in rows:
        o, r = ends(row)
        if row["service"] == "ftp-data":
            assert stream(outside if o[0] == client else inside, o, r) == stream(captured, o, r)
            assert stream(inside if o[0] == client else outside, r, o) == stream(captured, r, o)

    # Sequence numbers: the client's control segments after each PORT moved back four bytes (the
    # address shrank from 15 to 11 characters); the server's acknowledgements reached the client in
    # its own space, exactly as captured.
    cap_c = [x for x in captured if (x[0], x[1]) == c and (x[2], x[3]) == s]
    out_c = [x for x in outside if (x[0], x[1]) == c and (x[2], x[3]) == s]
    # (The ASA also randomizes the client's initial sequence number: shifts are taken from the SYN's.)
    isn = (out_c[0][4] - cap_c[0][4]) & 0xFFFFFFFF
    shifts = [_signed(o[4] - k[4] - isn) for k, o in zip(cap_c, out_c)]
    first_port = next(i for i, k in enumerate(cap_c) if k[7].startswith(b"PORT"))
    assert set(shifts[: first_port + 1]) == {0} and set(shifts) == {0, -4, -8} and shifts[-1] == -8
    cap_s = [x for x in captured if (x[0], x[1]) == s and (x[2], x[3]) == c]
    in_s = [x for x in inside if (x[0], x[1]) == s and (x[2], x[3]) == c]
    assert [(x[4], x[5]) for x in in_s] == [(x[4], x[5]) for x in cap_s]

    # The 303002 audit: robots.txt retrieved twice by anonymous.
    transfers = [e for e in events if e["event"] == "FtpTransfer"]
    assert [(t["user"], t["action"], t["filename"]) for t in transfers] == [
        ("anonymous", "Retrieved", "robots.txt")
    ] * 2


def test_ipv4_without_inspection_only_the_control_connection_passes(tmp_path: Path, ipv4: Path) -> None:
    summary, events = run(config4("141.142.220.0", "141.142.220.254", pat=True) + NO_INSPECT, ipv4, tmp_path)
    assert summary["connections"]["built"] == 1
    assert summary["forwarded"] == 63 and summary["dropped"] == 32
    # The PORT commands leave with the client's private address: the classic breakage behind PAT.
    ports = [x[7] for x in segments(tmp_path / "outside.pcap") if x[7].startswith(b"PORT")]
    assert ports == [b"PORT 141,142,220,235,131,46\r\n", b"PORT 141,142,220,235,147,203\r\n"]


@pytest.mark.parametrize("other_box", [False, True], ids=["same-randomization", "another-asa"])
def test_ipv4_server_side_captured_after_the_translation_is_left_as_captured(
    tmp_path: Path, ipv4: Path, other_box: bool
) -> None:
    # The loop closed: the client's packets from the inside capture, the server's from a capture taken
    # outside a translating ASA (post-NAT: to the PAT address, acks already in the shifted space: the
    # FTP rewrites' -4 bytes per PORT and the box's random ISN offset). Such a capture is what the
    # first replay's arrived/outside.pcap holds. Replayed again, none of it may be shifted a second
    # time; "another-asa" replays it through a box whose randomization differs from the capture's.
    from statewall.config import parse_policy
    from statewall.engine import Firewall
    from statewall.pcapio import PcapWriter
    from statewall.replay import replay

    policy = parse_policy(config4("141.142.220.0", "141.142.220.254", pat=True), "zeek-ftp.cfg")
    first = tmp_path / "first"
    replay(policy, [(None, ipv4)], first, firewall=Firewall(policy, seed=1))
    client = ipaddress.ip_address("141.142.220.235").packed
    client_side, server_side = tmp_path / "client.pcap", tmp_path / "server-post-nat.pcap"
    with PcapWriter(client_side) as w:
        for ts, raw in read_packets(ipv4):
            if raw[12:16] == client:
                w.write(raw, ts)
    with PcapWriter(server_side) as w:
        for ts, raw in read_packets(first / "arrived" / "outside.pcap"):
            assert raw[16:20] == ipaddress.ip_address(OUTSIDE_IP).packed  # post-NAT: to the PAT address
            w.write(raw, ts)
    out = tmp_path / "second"
    summary = replay(
        policy,
        [("inside", client_side), ("outside", server_side)],
        out,
        firewall=Firewall(policy, seed=2 if other_box else 1),
    )
    assert summary["drops_by_reason"] == {} and summary["forwarded"] == summary["packets_in"] == 95
    assert summary["connections"]["built"] == 5 and summary["connections"]["teardown_reasons"] == {
        "TCP FINs": 5
    }
    # The client gets the server's segments acknowledging its own numbers, exactly as in the original
    # trace (only the ISNs of the server's active data connections differ: the ASA randomizes them).
    captured = [x for x in segments(ipv4) if x[2] == "141.142.220.235"]
    server_in = segments(out / "inside.pcap")
    assert [x[:4] + x[5:8] for x in server_in] == [x[:4] + x[5:8] for x in captured]
    assert [x[4] for x in server_in if x[3] == 50003] == [x[4] for x in captured if x[3] == 50003]


# -------------------------------------------------------------------------------------------------
# ipv6.pcap: EPSV and EPRT, no NAT


def test_ipv6_eprt_and_epsv_connections_all_pass(tmp_path: Path, corpus_dir: Path) -> None:
    capture = corpus_dir / "zeek" / "Traces" / "ftp" / "ipv6.pcap"
    if not capture.is_file():
        pytest.skip(f"Zeek FTP trace not found at {capture}")
    rows = zeek_log(corpus_dir, "scripts.base.protocols.ftp.ftp-ipv6")
    assert len(rows) == 6
    summary, events = run(CONFIG6, capture, tmp_path)
    captured = segments(capture)
    inside = segments(tmp_path / "inside.pcap")
    outside = segments(tmp_path / "outside.pcap")
    assert all(s[-1] for s in inside + outside)
    client_net = ipaddress.ip_network("2001:470:1f11:81f::/64")
    check_forwarded_completely(
        captured, inside, outside, rows, lambda h: ipaddress.ip_address(h) in client_net
    )
    built = [e for e in events if e["event"] == "ConnBuilt"]
    assert len(built) == 6 and summary["dropped"] == 0
    assert sorted(e["direction"] for e in built) == ["inbound"] * 2 + ["outbound"] * 4
    control = next(r for r in rows if r["service"] == "ftp")
    c, s = ends(control)
    sent = stream(outside, c, s)
    # Without NAT the EPRT arguments are the client's own, unchanged.
    assert (
        sent == stream(captured, c, s) and sent.count(b"EPRT |2|2001:470:1f11:81f:c999:d94:aa7c:2e3e|") == 2
    )

    # Without inspection the two EPRT connections (inbound) and the three EPSV ones (refused by the
    # inside access list) do not open.
    summary, _ = run(CONFIG6 + NO_INSPECT, capture, tmp_path / "no-inspect")
    assert summary["connections"]["built"] == 1


# -------------------------------------------------------------------------------------------------
# retr.pcap: the file arrives intact


@pytest.mark.parametrize("pat", [True, False], ids=["pat", "no-nat"])
def test_retr_file_arrives_byte_for_byte(tmp_path: Path, corpus_dir: Path, pat: bool) -> None:
    capture = corpus_dir / "zeek" / "Traces" / "ftp" / "retr.pcap"
    thefile = corpus_dir / "zeek" / "Baseline" / "scripts.base.frameworks.file-analysis.ftp" / "thefile"
    if not capture.is_file() or not thefile.is_file():
        pytest.skip(f"Zeek retr trace or its extracted file not found under {corpus_dir}")
    expected = thefile.read_bytes()
    if expected.startswith(b"### BTest"):
        # btest-diff prepends one header line to every baseline.
        expected = expected.split(b"\n", 1)[1]
    assert len(expected) == 16557
    summary, events = run(config4("141.142.228.0", "141.142.228.254", pat), capture, tmp_path)
    assert summary["dropped"] == 0 and summary["connections"]["built"] == 2
    data_conn = [e for e in events if e["event"] == "ConnBuilt"][1]
    server = (data_conn["responder"]["address"], data_conn["responder"]["port"])
    client = (data_conn["initiator"]["address"], data_conn["initiator"]["port"])
    assert server == ("141.142.192.162", 38141)  # the port the 229 announced
    inside = segments(tmp_path / "inside.pcap")
    assert stream(inside, server, client) == expected
    assert all(s[-1] for s in inside)
