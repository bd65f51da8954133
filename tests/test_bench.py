"""The bench's own lines work and say what they measured (never how fast: that is `make bench`'s job)."""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess

import pytest
from bench import live, run


def test_short_connection_replay_forwards_every_packet_as_recorded():
    res = run.bench_short(200, warmup=100)
    assert res["same_as_recorded"] is True
    assert res["packets"] == 200 * 8
    assert res["pps"] > 0 and res["cpu_seconds"] >= 0 and res["pps_best"] >= res["pps_cpu"]


def test_idle_line_extrapolates_to_ten_million_and_says_so():
    res = run.bench_idle(500, reserve=0)
    assert res["connections"] == 500 and res["extrapolated"] is True
    assert res["rss_at_10m"] == res["rss_before"] + res["bytes_per_connection"] * run.IDLE_TARGET


def test_idle_line_stops_early_on_a_machine_without_memory_to_spare():
    res = run.bench_idle(1500, reserve=1 << 60, step=1000)  # "less than an exabyte available"
    assert res["connections"] == 1000 and res["stopped"] and res["extrapolated"]


def _args(**kw):
    base = dict(packets=1000, flows=10, short_connections=100, connections=100, only=None, bulk_seconds=8)
    return argparse.Namespace(**{**base, **kw})


def test_rows_give_the_ratio_to_the_baseline_measured_in_the_same_run():
    # Compared: the best chunk in CPU time of the best run on each side (a shared machine's noise).
    replay = [{"pps": 300.0, "pps_best": 290.0}, {"pps": 330.0, "pps_best": 310.0}]
    short = [{"pps": 80.0, "pps_best": 80.0}]
    baseline = {
        "commit": "1eadc69",
        "replay": [{"pps": 100.0, "pps_best": 100.0}, {"pps": 120.0, "pps_best": 90.0}],
        "short": [{"pps": 40.0, "pps_best": 40.0}],
        "memory": [],
    }
    rows = run.build_rows(None, replay, [], _args(), short, None, baseline)
    by = {r["what"]: r for r in rows}
    base_row = next(r for w, r in by.items() if w.startswith("replay, ") and "[1eadc69]" in w)
    ours = next(r for w, r in by.items() if w.startswith("replay, ") and "[" not in w)
    assert base_row["statewall"] == "100 pkt/s" and base_row["met"] is None
    assert ours["ratio"] == 3.1 and ours["met"] is True and ours["target"] == "≥ 1.5 × 1eadc69"
    short_row = next(r for w, r in by.items() if w.startswith("replay of short") and "[" not in w)
    assert short_row["ratio"] == 2.0 and short_row["met"] is False
    assert "| - |" in run.markdown(rows, 3)  # the baseline rows meet no target of their own


def test_without_a_baseline_the_replay_targets_are_not_judged():
    rows = run.build_rows(None, [{"pps": 300.0}], [], _args(only="replay"))
    assert [r["met"] for r in rows] == [None] and rows[0]["ratio"] is None


def test_udp_flooder_rotates_over_its_source_addresses(tmp_path):
    # The workers' 64-byte line needs one flow per inside host (a single flow stays on one worker):
    # the flooder sends from each address of its list, here two loopback addresses to a local socket.
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler for the flooder")
    tools = live.compile_tools(str(tmp_path))
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    try:
        out = subprocess.run(
            [tools["udpflood"], "127.0.0.1", str(port), "0.2", "64", "127.0.0.1,127.0.0.2"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        sink.setblocking(False)
        seen: dict[str, int] = {}
        sizes = set()
        while True:
            try:
                data, (addr, _) = sink.recvfrom(2048)
            except BlockingIOError:
                break
            seen[addr] = seen.get(addr, 0) + 1
            sizes.add(len(data))
    finally:
        sink.close()
    assert out.startswith("sent ") and int(out.split()[1]) > 0
    assert set(seen) == {"127.0.0.1", "127.0.0.2"} and sizes == {64}
    bad = subprocess.run([tools["udpflood"], "127.0.0.1", str(port), "0.1", "64", "not-an-address"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert bad.returncode == 2 and "bad source address" in bad.stderr
