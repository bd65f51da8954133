"""A real FTP session (Zeek's ftp/ipv4.pcap) replayed through an ASA configuration, with and without PAT.

The capture was taken without any firewall: the client 141.142.220.235 (our inside network) logs in to
199.233.217.249 (outside), lists and retrieves over two passive (PASV) and two active (PORT) data
connections. Zeek's conn.log for it is the answer key: five connections, their endpoints and packet
counts.

Given the client's network on ``inside`` (security level 100), everything else ``outside`` (level 0)
and an inside access list that lets the client reach FTP's control port only, the control connection
must pass in full both ways, with PAT as without (with PAT, ``outside.pcap`` carries the outside
interface's address). With FTP inspection turned off (``no inspect ftp``: the ASA inspects FTP by
default) nothing opens the data connections: the passive ones are refused by the inside access list,
the active ones by the outside's lower security level, and every later packet of them has no
connection (tcp-not-syn).

Without that access list the ASA lets higher-to-lower traffic through on security levels alone, so the
passive data connections pass while the active ones are still refused: the second half checks that.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dpkt
import pytest

from statewall.pcapio import read_packets
from zeek_ftp import NO_FTP_INSPECTION, OUTSIDE_IP, PAT, asa_front, checksums_ok, run, zeek_log

CLIENT_NET = "141.142.220.0 255.255.255.0"

BASE = asa_front()
INSIDE_FTP_ONLY = f"""access-list INSIDE_IN extended permit tcp {CLIENT_NET} any eq ftp
access-group INSIDE_IN in interface inside
"""


def _inet(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def tcp_tuples(packets: list[tuple[float, bytes]]) -> list[tuple[str, int, str, int, bytes, bytes]]:
    """(src, sport, dst, dport, payload, raw) of every TCP packet."""
    out = []
    for _, raw in packets:
        ip = dpkt.ip.IP(raw)
        assert isinstance(ip.data, dpkt.tcp.TCP)
        tcp = ip.data
        out.append((_inet(ip.src), tcp.sport, _inet(ip.dst), tcp.dport, bytes(tcp.data), raw))
    return out


@pytest.fixture(scope="module")
def answer(corpus_dir: Path) -> dict:
    conns = zeek_log(corpus_dir, "scripts.base.protocols.ftp.ftp-ipv4")
    control = [c for c in conns if c["service"] == "ftp"]
    data = [c for c in conns if c["service"] == "ftp-data"]
    assert len(control) == 1 and len(data) == 4
    return {"control": control[0], "data": data}


def _endpoints(row: dict[str, str]) -> tuple[tuple[str, int], tuple[str, int]]:
    return (row["id.orig_h"], int(row["id.orig_p"])), (row["id.resp_h"], int(row["id.resp_p"]))


def _split(tuples, row):
    """Packets of one Zeek connection in the capture: (originator->responder, responder->originator)."""
    orig, resp = _endpoints(row)
    fwd = [t for t in tuples if (t[0], t[1]) == orig and (t[2], t[3]) == resp]
    rev = [t for t in tuples if (t[0], t[1]) == resp and (t[2], t[3]) == orig]
    return fwd, rev


@pytest.mark.parametrize("pat", [False, True], ids=["no-nat", "pat"])
def test_control_connection_passes_and_data_connections_are_dropped(
    tmp_path: Path, zeek_ftp_ipv4: Path, answer: dict, pat: bool
) -> None:
    config = BASE + INSIDE_FTP_ONLY + (PAT if pat else "") + NO_FTP_INSPECTION
    summary, events = run(config, zeek_ftp_ipv4, tmp_path)
    out = tmp_path
    captured = tcp_tuples(list(read_packets(zeek_ftp_ipv4)))
    control = answer["control"]
    (client, cport), (server, sport) = _endpoints(control)
    c2s, s2c = _split(captured, control)
    # The capture is what Zeek saw: 38 packets from the client, 25 from the server.
    assert (len(c2s), len(s2c)) == (int(control["orig_pkts"]), int(control["resp_pkts"])) == (38, 25)

    outside = tcp_tuples(list(read_packets(out / "outside.pcap")))
    inside = tcp_tuples(list(read_packets(out / "inside.pcap")))
    mapped = OUTSIDE_IP if pat else client
    # Every client packet of the control connection left by outside, from the mapped address (PAT
    # keeps the client's port, which is free), payloads unchanged and in order; and nothing else did.
    assert [(s, sp, d, dp) for s, sp, d, dp, _, _ in outside] == [(mapped, cport, server, sport)] * len(c2s)
    assert [t[4] for t in outside] == [t[4] for t in c2s]
    # Every server packet came back to the client's real address and port on inside.
    assert [(s, sp, d, dp) for s, sp, d, dp, _, _ in inside] == [(server, sport, client, cport)] * len(s2c)
    assert [t[4] for t in inside] == [t[4] for t in s2c]
    assert all(checksums_ok(t[5]) for t in outside + inside)

    # The four data connections: not one packet forwarded, every packet dropped with its reason.
    drops = [e for e in events if e["event"] == "Drop"]
    for row in answer["data"]:
        fwd, rev = _split(captured, row)
        (oh, op), (rh, rp) = _endpoints(row)
        ends = {(oh, op), (rh, rp)}
        assert not [t for t in outside + inside if {(t[0], t[1]), (t[2], t[3])} == ends]
        mine = [d for d in drops if {(d["src"], d["sport"]), (d["dst"], d["dport"])} == ends]
        assert len(mine) == len(fwd) + len(rev), row["uid"]
        first, rest = mine[0], mine[1:]
        assert (first["src"], first["sport"], first["tcp_flags"]) == (oh, op, 0x02)  # the SYN
        if first["interface"] == "inside":
            # PASV: the client opens it; the inside access list only permits the control port.
            assert oh == client
            assert first["reason"] == "acl-drop" and first["acl"] == "INSIDE_IN"
        else:
            # PORT: the server opens it from the lower security level; nothing permits it.
            assert oh == server and first["interface"] == "outside"
            assert first["reason"] in {"sp-security-failed", "acl-drop"}
        assert {d["reason"] for d in rest} == {"tcp-not-syn"}

    assert summary["packets_in"] == 95
    assert summary["forwarded"] == len(c2s) + len(s2c) == 63
    assert summary["dropped"] == 95 - 63 == sum(summary["drops_by_reason"].values())
    assert summary["packets_out"] == {"inside": 25, "outside": 38}
    assert summary["connections"]["built"] == summary["connections"]["torn_down"] == 1

    log = (out / "log.txt").read_text().splitlines()
    built = [line for line in log if "%ASA-6-302013:" in line]
    assert len(built) == 1
    assert built[0].endswith(
        f"Built outbound TCP connection 1 for outside:{server}/{sport} ({server}/{sport}) "
        f"to inside:{client}/{cport} ({mapped}/{cport})"
    )
    xlates = [line for line in log if "%ASA-6-305011:" in line]
    if pat:
        assert [x.split(": ", 1)[1] for x in xlates] == [
            f"%ASA-6-305011: Built dynamic TCP translation from inside:{client}/{cport} "
            f"to outside:{OUTSIDE_IP}/{cport}"
        ]
    else:
        assert xlates == []
    assert (
        [line for line in log if "%ASA-6-302014:" in line][0].split(" bytes ")[1].startswith("3326 TCP FINs")
    )


@pytest.mark.parametrize("pat", [False, True], ids=["no-nat", "pat"])
def test_without_an_inside_acl_passive_data_passes_on_security_levels(
    tmp_path: Path, zeek_ftp_ipv4: Path, answer: dict, pat: bool
) -> None:
    summary, events = run(BASE + (PAT if pat else "") + NO_FTP_INSPECTION, zeek_ftp_ipv4, tmp_path)
    out = tmp_path
    captured = tcp_tuples(list(read_packets(zeek_ftp_ipv4)))
    client = answer["control"]["id.orig_h"]
    mapped = OUTSIDE_IP if pat else client
    outside = tcp_tuples(list(read_packets(out / "outside.pcap")))
    inside = tcp_tuples(list(read_packets(out / "inside.pcap")))
    passive = [r for r in answer["data"] if r["id.orig_h"] == client]
    active = [r for r in answer["data"] if r["id.orig_h"] != client]
    assert len(passive) == len(active) == 2
    for row in passive:
        fwd, rev = _split(captured, row)
        (_, op), (rh, rp) = _endpoints(row)
        sent = [t for t in outside if (t[2], t[3]) == (rh, rp)]
        back = [t for t in inside if (t[0], t[1]) == (rh, rp)]
        assert [(t[0], t[1]) for t in sent] == [(mapped, op)] * len(fwd)
        assert [t[4] for t in back] == [t[4] for t in rev] and len(back) == len(rev)
    for row in active:
        (oh, op), (rh, rp) = _endpoints(row)
        ends = {(oh, op), (rh, rp)}
        assert not [t for t in outside + inside if {(t[0], t[1]), (t[2], t[3])} == ends]
    reasons = Counter(e["reason"] for e in events if e["event"] == "Drop")
    assert set(reasons) <= {"sp-security-failed", "acl-drop", "tcp-not-syn"}
    assert reasons["sp-security-failed"] + reasons["acl-drop"] == 2  # one refused SYN per active conn
    assert summary["connections"]["built"] == 3
