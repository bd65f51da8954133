"""replay: how captures are fed to the engine, and what comes out of a replay of seed 000's session.

The first half drives ``replay`` with a recording stand-in for the engine, to pin down the adapter's
own duties (timeline, clock, ingress, rewrite hook, output files, drain). The second half replays real
sessions through the real engine and seed 000's configuration.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import NamedTuple

import dpkt
import pytest
from scapy.layers.inet import IP, TCP, UDP

from statewall import demo
from statewall.config import parse_policy
from statewall.events import Drop, DropReason, Event, XlateTeardown
from statewall.logfmt.asa import format_event
from statewall.pcapio import PcapWriter, read_packets
from statewall.policy import Interface, Policy
from statewall.replay import ReplayError, replay


class Result(NamedTuple):
    packets: list[tuple[str, bytearray]]
    events: list[Event]


def udp(src: str, dst: str, dport: int = 53, payload: bytes = b"x") -> bytes:
    return bytes(IP(src=src, dst=dst) / UDP(sport=1000, dport=dport) / payload)


class RecordingFirewall:
    """Forwards between inside and outside; drops UDP to port 23; one timer at ``timer_at``.

    ``ingress_for`` places 10.x sources on inside and 192.168.x on outside; others have no route.
    ``replay_rewrite`` marks packets from outside by setting the IP TTL to 99, so tests can see that
    the rewritten bytes are the ones received.
    """

    def __init__(self, timer_at: float | None = None) -> None:
        self.calls: list[tuple] = []
        self.timer_at = timer_at

    def advance(self, now: float) -> Result:
        self.calls.append(("advance", now))
        if self.timer_at is not None and now >= self.timer_at:
            at, self.timer_at = self.timer_at, None
            ev = XlateTeardown(
                at, "dynamic", 17, "inside", "10.0.0.2", 1000, "outside", "192.168.9.30", 1000, 30.0
            )
            return Result([("outside", bytearray(udp("192.168.9.30", "192.168.9.2", 9)))], [ev])
        return Result([], [])

    def ingress_for(self, data: bytes) -> str | None:
        src = dpkt.ip.IP(bytes(data)).src
        return {10: "inside", 192: "outside"}.get(src[0])

    def sent_by_box(self, iface: str, data: bytes) -> bool:
        return False  # every packet given arrived where its capture says

    def replay_rewrite(self, iface: str, data: bytes, now: float) -> bytearray:
        self.calls.append(("rewrite", iface, now))
        buf = bytearray(data)
        if iface == "outside":
            buf[8] = 99
        return buf

    def receive(self, iface: str, data: bytes | bytearray, now: float) -> Result:
        self.calls.append(("receive", iface, bytes(data), now))
        ip = dpkt.ip.IP(bytes(data))
        if ip.data.dport == 23:
            drop = Drop(now, DropReason.ACL_DROP, iface, 17, "10.0.0.2", 1000, "192.168.9.2", 23, acl="IN")
            return Result([], [drop])
        return Result([("outside" if iface == "inside" else "inside", bytearray(data))], [])


POLICY = Policy(
    interfaces={
        "inside": Interface("inside", security_level=100),
        "outside": Interface("outside", security_level=0),
        "dmz": Interface("dmz", security_level=50),
    },
    source_file="fake.cfg",
)


def capture(path: Path, packets: list[tuple[float, bytes]]) -> Path:
    with PcapWriter(path) as w:
        for ts, p in packets:
            w.write(p, ts)
    return path


def test_captures_are_merged_by_time_and_the_clock_advances_before_each_packet(tmp_path: Path) -> None:
    a = capture(
        tmp_path / "a.pcap", [(1.0, udp("10.0.0.2", "192.168.9.2")), (3.0, udp("10.0.0.3", "192.168.9.2"))]
    )
    b = capture(
        tmp_path / "b.pcap", [(2.0, udp("192.168.9.2", "10.0.0.2")), (3.0, udp("192.168.9.3", "10.0.0.2"))]
    )
    fw = RecordingFirewall()
    replay(POLICY, [("inside", a), ("outside", b)], tmp_path / "out", firewall=fw)
    steps = [(c[0], c[1], c[-1]) if c[0] != "advance" else c for c in fw.calls]
    assert steps == [
        ("advance", 1.0), ("rewrite", "inside", 1.0), ("receive", "inside", 1.0),
        ("advance", 2.0), ("rewrite", "outside", 2.0), ("receive", "outside", 2.0),
        # equal timestamps keep the order the captures were given in
        ("advance", 3.0), ("rewrite", "inside", 3.0), ("receive", "inside", 3.0),
        ("advance", 3.0), ("rewrite", "outside", 3.0), ("receive", "outside", 3.0),
    ]  # fmt: skip
    received = [c[2] for c in fw.calls if c[0] == "receive"]
    # What the engine receives is what replay_rewrite returned (TTL 99 marks a rewritten packet).
    assert [p[8] for p in received] == [64, 99, 64, 99]


def test_packets_cut_short_by_the_snap_length_are_reported_not_replayed(tmp_path: Path, capsys) -> None:
    # A capture taken with -s 96: the first packet is cut, the second fits.
    big, small = udp("10.0.0.2", "192.168.9.2", payload=b"x" * 200), udp("10.0.0.3", "192.168.9.2")
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 96, 101)  # LINKTYPE_RAW
    records = struct.pack("<IIII", 1, 0, 96, len(big)) + big[:96]
    records += struct.pack("<IIII", 2, 0, len(small), len(small)) + small
    cap = tmp_path / "snapped.pcap"
    cap.write_bytes(header + records)
    fw = RecordingFirewall()
    summary = replay(POLICY, [(None, cap)], tmp_path / "out", firewall=fw)
    assert [c[2] for c in fw.calls if c[0] == "receive"] == [small]
    assert summary["truncated"] == 1 and summary["unassigned"] == 0
    assert summary["captures"][0]["truncated"] == 1 and summary["captures"][0]["snaplen"] == 96
    from statewall import cli

    cfg = tmp_path / "fw.cfg"
    cfg.write_text(
        "interface Ethernet0\n nameif inside\n security-level 100\n ip address 10.0.0.1 255.255.255.0\n"
        "interface Ethernet1\n nameif outside\n security-level 0\n ip address 192.168.9.1 255.255.255.0\n"
    )
    assert cli.main(["replay", "-c", str(cfg), "-o", str(tmp_path / "out2"), str(cap)]) == 0
    err = capsys.readouterr().err
    assert f"1 packet(s) of {cap} not replayed: truncated by the capture (snaplen 96)" in err
    assert "no route reaches" not in err


def test_the_clock_never_goes_back(tmp_path: Path) -> None:
    p = udp("10.0.0.2", "192.168.9.2")
    cap = capture(tmp_path / "c.pcap", [(10.0, p), (9.0, p), (11.0, p)])
    fw = RecordingFirewall()
    summary = replay(POLICY, [("inside", cap)], tmp_path / "out", firewall=fw)
    assert [c[1] for c in fw.calls if c[0] == "advance"] == [10.0, 10.0, 11.0]
    assert summary["reordered"] == 1


def test_auto_ingress_uses_the_route_to_the_source_and_counts_the_unroutable(tmp_path: Path) -> None:
    packets = [udp("10.0.0.2", "192.168.9.2"), udp("192.168.9.2", "10.0.0.2"), udp("172.16.0.1", "10.0.0.2")]
    cap = capture(tmp_path / "c.pcap", [(1.0, packets[0]), (2.0, packets[1]), (3.0, packets[2])])
    fw = RecordingFirewall()
    summary = replay(POLICY, [(None, cap)], tmp_path / "out", firewall=fw)
    assert [c[1] for c in fw.calls if c[0] == "receive"] == ["inside", "outside"]
    assert summary["packets_in"] == 2 and summary["unassigned"] == 1
    assert summary["captures"][0]["unassigned"] == 1 and summary["captures"][0]["ingress"] == "auto"


def test_outputs_per_interface_log_events_and_summary(tmp_path: Path) -> None:
    packets = [
        (100.0, udp("10.0.0.2", "192.168.9.2")),
        (100.5, udp("10.0.0.2", "192.168.9.2", dport=23)),
        (101.25, udp("192.168.9.2", "10.0.0.2")),
    ]
    cap = capture(tmp_path / "c.pcap", packets)
    out = tmp_path / "out"
    summary = replay(POLICY, [(None, cap)], out, firewall=RecordingFirewall())

    outside = list(read_packets(out / "outside.pcap"))
    inside = list(read_packets(out / "inside.pcap"))
    assert outside == [(100.0, packets[0][1])]
    assert [ts for ts, _ in inside] == [101.25] and inside[0][1][8] == 99
    # An interface nothing left through still gets its (empty) capture.
    assert list(read_packets(out / "dmz.pcap")) == []

    drop = Drop(100.5, DropReason.ACL_DROP, "inside", 17, "10.0.0.2", 1000, "192.168.9.2", 23, acl="IN")
    assert (out / "log.txt").read_text().splitlines() == format_event(drop)
    (record,) = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert record["event"] == "Drop" and record["reason"] == "acl-drop" and record["time"] == 100.5

    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == summary
    assert summary["packets_in"] == 3
    assert (summary["forwarded"], summary["dropped"], summary["held"]) == (2, 1, 0)
    assert summary["drops_by_reason"] == {"acl-drop": 1}
    assert summary["packets_out"] == {"dmz": 0, "inside": 1, "outside": 1}
    assert (summary["first_time"], summary["last_time"]) == (100.0, 101.25)


@pytest.mark.parametrize("drain,fires", [(0.0, False), (10.0, False), (60.0, True)])
def test_timers_run_only_up_to_the_last_packet_plus_drain(tmp_path: Path, drain: float, fires: bool) -> None:
    cap = capture(tmp_path / "c.pcap", [(100.0, udp("10.0.0.2", "192.168.9.2"))])
    fw = RecordingFirewall(timer_at=130.0)
    out = tmp_path / "out"
    summary = replay(POLICY, [(None, cap)], out, firewall=fw, drain=drain)
    advances = [c[1] for c in fw.calls if c[0] == "advance"]
    assert advances == ([100.0, 100.0 + drain] if drain else [100.0])
    assert summary["xlates"]["torn_down"] == int(fires)
    generated = list(read_packets(out / "outside.pcap"))
    # A packet the engine generates in advance() is stamped with the time it was asked to reach.
    assert [ts for ts, _ in generated] == ([100.0, 160.0] if fires else [100.0])


def test_refusals_before_anything_is_written(tmp_path: Path) -> None:
    cap = capture(tmp_path / "c.pcap", [(1.0, udp("10.0.0.2", "192.168.9.2"))])
    with pytest.raises(ReplayError, match="no interface named 'wan'"):
        replay(POLICY, [("wan", cap)], tmp_path / "o1", firewall=RecordingFirewall())
    with pytest.raises(ReplayError, match="auto is off"):
        replay(POLICY, [(None, cap)], tmp_path / "o2", ingress_auto=False, firewall=RecordingFirewall())
    with pytest.raises(ReplayError, match="no capture"):
        replay(POLICY, [], tmp_path / "o3", firewall=RecordingFirewall())
    with pytest.raises(ReplayError, match="drain"):
        replay(POLICY, [(None, cap)], tmp_path / "o4", drain=-1, firewall=RecordingFirewall())
    assert not any((tmp_path / d).exists() for d in ("o1", "o2", "o3", "o4"))


def test_progress_bar_on_a_large_replay_does_not_change_results(tmp_path: Path, monkeypatch) -> None:
    import statewall.replay as replay_module

    monkeypatch.setattr(replay_module, "PROGRESS_MIN_BYTES", 0)
    cap = capture(tmp_path / "c.pcap", [(float(i), udp("10.0.0.2", "192.168.9.2")) for i in range(1500)])
    summary = replay(POLICY, [(None, cap)], tmp_path / "out", progress=True, firewall=RecordingFirewall())
    assert summary["forwarded"] == 1500


# --------------------------------------------------------------------------------------------------
# The real engine, seed 000's configuration


@pytest.fixture(scope="module")
def seed000() -> Policy:
    text, name = demo.demo_config("seed000.cfg")
    return parse_policy(text, name)


@pytest.fixture(scope="module")
def ftp_session() -> list[tuple[float, bytes]]:
    return demo.ftp_control_session(("10.0.0.2", 38003), ("192.168.9.2", 21), demo.SEED000_START)


def messages(out: Path) -> list[str]:
    """log.txt without the timestamp prefix."""
    return [line.split(": ", 1)[1] for line in (out / "log.txt").read_text().splitlines()]


def test_seed000_ftp_session_through_pat(tmp_path: Path, seed000: Policy, ftp_session) -> None:
    cap = capture(tmp_path / "ftp.pcap", ftp_session)
    out = tmp_path / "out"
    summary = replay(seed000, [(None, cap)], out, drain=60.0)
    assert messages(out) == [
        "%ASA-6-305011: Built dynamic TCP translation from inside:10.0.0.2/38003 "
        "to outside:192.168.9.30/38003",
        "%ASA-6-302013: Built outbound TCP connection 1 for outside:192.168.9.2/21 (192.168.9.2/21) "
        "to inside:10.0.0.2/38003 (192.168.9.30/38003)",
        "%ASA-6-302014: Teardown TCP connection 1 for outside:192.168.9.2/21 to inside:10.0.0.2/38003 "
        "duration 0:00:05 bytes 151 TCP FINs from outside",
        "%ASA-6-305012: Teardown dynamic TCP translation from inside:10.0.0.2/38003 "
        "to outside:192.168.9.30/38003 duration 0:00:35",
    ]
    to_server = [p for _, p in ftp_session if p[12:16] == bytes([10, 0, 0, 2])]
    to_client = [p for _, p in ftp_session if p[12:16] != bytes([10, 0, 0, 2])]
    outside = [dpkt.ip.IP(p) for _, p in read_packets(out / "outside.pcap")]
    inside = [dpkt.ip.IP(p) for _, p in read_packets(out / "inside.pcap")]
    assert len(outside) == len(to_server) and len(inside) == len(to_client)
    assert {(ip.src, ip.data.sport) for ip in outside} == {(bytes([192, 168, 9, 30]), 38003)}
    assert {(ip.dst, ip.data.dport) for ip in inside} == {(bytes([10, 0, 0, 2]), 38003)}
    assert [bytes(ip.data.data) for ip in outside] == [bytes(dpkt.ip.IP(p).data.data) for p in to_server]
    # Forwarding is routing: each packet leaves with its TTL one lower.
    assert {ip.ttl for ip in outside + inside} == {64}  # the ASA keeps the TTL
    assert summary["forwarded"] == summary["packets_in"] == len(ftp_session)
    assert summary["dropped"] == 0


def test_without_drain_the_log_stops_at_the_last_packet(tmp_path: Path, seed000: Policy, ftp_session) -> None:
    cap = capture(tmp_path / "ftp.pcap", ftp_session)
    replay(seed000, [(None, cap)], tmp_path / "out")
    ids = [m.split(":", 1)[0] for m in messages(tmp_path / "out")]
    # The PAT slot is freed 30 s after the connection closes, which is after the capture ends.
    assert ids == ["%ASA-6-305011", "%ASA-6-302013", "%ASA-6-302014"]


def test_one_capture_per_side_gives_the_same_story(tmp_path: Path, seed000: Policy, ftp_session) -> None:
    client_side = capture(tmp_path / "in.pcap", [(t, p) for t, p in ftp_session if p[12] == 10])
    server_side = capture(tmp_path / "out.pcap", [(t, p) for t, p in ftp_session if p[12] != 10])
    replay(seed000, [("inside", client_side), ("outside", server_side)], tmp_path / "pinned", drain=60)
    replay(seed000, [(None, capture(tmp_path / "all.pcap", ftp_session))], tmp_path / "auto", drain=60)
    assert messages(tmp_path / "pinned") == messages(tmp_path / "auto")


def test_inbound_connection_is_refused_and_counted(tmp_path: Path, seed000: Policy) -> None:
    syn = bytes(IP(src="192.168.9.2", dst="10.0.0.2") / TCP(sport=40000, dport=22, flags="S"))
    out = tmp_path / "out"
    summary = replay(seed000, [(None, capture(tmp_path / "c.pcap", [(demo.SEED000_START, syn)]))], out)
    assert summary["dropped"] == 1 and summary["forwarded"] == 0
    (reason,) = summary["drops_by_reason"]
    assert reason in {"sp-security-failed", "acl-drop", "no-xlate"}
    assert list(read_packets(out / "inside.pcap")) == []
    (record,) = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert (record["event"], record["interface"], record["dport"]) == ("Drop", "outside", 22)
