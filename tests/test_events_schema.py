"""Given events, expect events.jsonl records in the documented schema (docs/events.md): ISO 8601
timestamps with their zone, no field name ending in an underscore, ECS names beside statewall's, and a
flow id (the Community ID) on every event about a packet or a connection, drops included."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from statewall import cli
from statewall.events import ConnBuilt, Drop, DropReason, Endpoint, XlateBuilt
from statewall.logfmt.jsonl import community_id, event_record
from statewall.policy import PROTO_TCP
from test_show_offline import CONFIG, capture

T = 1_190_184_958.25


def test_community_id_matches_the_specification_vector():
    # community-id-spec's README: TCP 128.232.110.120:34855 -> 66.35.250.204:80, seed 0.
    assert community_id(6, "128.232.110.120", 34855, "66.35.250.204", 80) == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    assert community_id(6, "66.35.250.204", 80, "128.232.110.120", 34855) == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


def test_a_drop_and_the_connection_it_belongs_to_share_the_flow_id():
    built = ConnBuilt(
        T, 7, PROTO_TCP, "outbound",
        Endpoint("inside", "10.0.0.2", 38003, "10.0.0.2", 38003),
        Endpoint("outside", "192.168.9.2", 21, "192.168.9.2", 21),
    )  # fmt: skip
    drop = Drop(T, DropReason.TCP_MSS_EXCEEDED, "inside", PROTO_TCP, "10.0.0.2", 38003, "192.168.9.2", 21)
    b, d = event_record(built), event_record(drop)
    assert b["network.community_id"] == d["network.community_id"]
    assert d["event.kind"] == "alert" and d["event.reason"] == "TCP data exceeded MSS"
    assert (d["source.ip"], d["source.port"], d["destination.port"]) == ("10.0.0.2", 38003, 21)
    assert d["observer.ingress.interface.name"] == "inside" and d["network.transport"] == "tcp"
    assert b["event.code"] == "302013" and b["log.level"] == "informational" and b["conn_id"] == 7
    assert b["@timestamp"] == "2007-09-19T06:55:58.250000+00:00"


def test_translation_kind_is_xlate_type():
    ev = XlateBuilt(T, "dynamic", PROTO_TCP, "inside", "10.0.0.2", 1025, "outside", "192.0.2.1", 1025)
    rec = event_record(ev)
    assert rec["xlate_type"] == "dynamic" and "kind_" not in rec
    assert (rec["source.nat.ip"], rec["source.nat.port"]) == ("192.0.2.1", 1025)


def test_every_record_of_a_replay_follows_the_schema(tmp_path: Path, capsys):
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    assert (
        cli.main(["replay", "-c", str(cfg), "-o", str(out), "--json", str(capture(tmp_path / "c.pcap"))]) == 0
    )
    capsys.readouterr()
    records = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert {r["event"] for r in records} >= {"ConnBuilt", "XlateBuilt", "Drop"}
    for r in records:
        assert not any(k.endswith("_") for k in r)
        assert datetime.fromisoformat(r["@timestamp"]).utcoffset() is not None
        if r["event"] in ("ConnBuilt", "Drop"):
            assert r["network.community_id"].startswith("1:")


def test_a_drop_of_a_connections_packet_carries_its_conn_id(tmp_path: Path, capsys):
    # seed 000 through 8.2: the oversized segments of the FTP control connection are dropped (419001).
    from test_seed000 import CONFIGS
    from test_seed000 import capture as ftp_capture

    out = tmp_path / "out"
    args = ["replay", "-c", str(CONFIGS / "seed000.cfg"), "--asa-version", "8.2(1)", "-o", str(out), "--json"]
    assert cli.main([*args, str(ftp_capture(tmp_path / "ftp.pcap"))]) == 0
    capsys.readouterr()
    records = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    (built,) = [r for r in records if r["event"] == "ConnBuilt"]
    mss = [r for r in records if r["event"] == "Drop" and r["reason"] == "tcp-mss-exceeded"]
    assert mss and {r["conn_id"] for r in mss} == {built["conn_id"]}
    assert {r["network.community_id"] for r in mss} == {built["network.community_id"]}


def _asdict_record(ev) -> dict:
    """What ``Event.to_dict`` made before it was compiled per type: ``dataclasses.asdict``, then enum
    members as their keyword and origins as file, line and text."""
    import dataclasses
    import enum

    d = dataclasses.asdict(ev)
    for k, v in list(d.items()):
        if isinstance(v, enum.Enum):
            d[k] = v.value[0] if isinstance(v.value, tuple) else v.value
    d["event"] = type(ev).__name__
    return d


def test_every_event_of_a_busy_replay_converts_as_asdict_did(tmp_path: Path) -> None:
    """``Event.to_dict`` (one compiled dict display per type) gives what ``dataclasses.asdict`` gave,
    key for key and in the same order, for every event of a replayed site (an ASA behind PAT: built,
    teardown, translations, drops, FTP, ICMP) and of an iptables ruleset (conntrack events, LOG)."""
    from bench.busytrace import config, write_trace

    from statewall.config import parse_policy
    from statewall.engine import Firewall
    from statewall.pcapio import read_packets
    from test_scale_replay import BUSY_IPTABLES

    trace = tmp_path / "busy.pcap"
    write_trace(trace, 600)
    kinds: set[str] = set()
    for text, name in ((config(), "busy.cfg"), (BUSY_IPTABLES + "iptables -A FORWARD -j LOG\n", "fw.rules")):
        fw = Firewall(parse_policy(text, name), seed=b"to-dict")
        events = []
        for ts, data in read_packets(trace):
            events += fw.advance(ts).events
            iface = fw.ingress_for(data)
            if iface is not None:
                events += fw.receive(iface, fw.replay_rewrite(iface, data, ts), ts).events
        events += fw.advance(ts + 600).events
        for ev in events:
            new, old = ev.to_dict(), _asdict_record(ev)
            assert list(new.items()) == list(old.items()), ev
            kinds.add(type(ev).__name__)
    assert {"ConnBuilt", "ConnTeardown", "XlateBuilt", "XlateTeardown", "Drop", "FtpTransfer"} <= kinds
    assert {"CtEvent", "NfLog"} <= kinds


def test_iso_time_is_what_datetime_writes() -> None:
    """``iso_time`` makes the date and time once per second and the microseconds itself: the same text
    as ``datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")``, rounding included; and
    the log's ``format_timestamp`` likewise."""
    import random
    from datetime import UTC

    from statewall.logfmt.asa import format_timestamp
    from statewall.logfmt.jsonl import iso_time

    rng = random.Random(7)
    times = [T, 0.0, 1.0, -1.5, 1_700_000_000.0, 1_700_000_000.9999995, 1_700_000_000.9999994]
    times += [1_700_000_000 + k * 1e-6 + 5e-7 for k in range(2000)]
    times += [rng.uniform(-1e9, 4e9) for _ in range(20000)]
    times += [rng.randrange(1_600_000_000, 1_800_000_000) + rng.randrange(10**6) / 1e6 for _ in range(20000)]
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    for t in times:
        d = datetime.fromtimestamp(t, UTC)
        assert iso_time(t) == d.isoformat(timespec="microseconds"), t
        # The ASA's log timestamp, made once per second the same way.
        assert format_timestamp(t) == f"{months[d.month - 1]} {d.day:02d} {d.year} {d:%H:%M:%S}", t
