"""`make bench`: statewall's performance, measured, printed as a table and saved as JSON.

Measures what issue 8 asks for, each as the median of several runs:

- replay: engine packets per second over a generated capture of established TCP flows (engine time
  only: decoding, lookup, tracking, NAT, counters; no file I/O inside the timing);
- memory: bytes per tracked connection with many idle connections in the table (tracemalloc);
- live (root only, when the lab is available): bulk TCP with iperf3 through `statewall run` and through
  the kernel's nftables conntrack + masquerade in the same namespace topology, small UDP packets,
  and new connections per second.

Numbers are never asserted anywhere: this prints and records them. Results go to
``bench/results/<UTC timestamp>.json`` with a description of the machine.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from statewall import craft
from statewall.dialects.asa import parse
from statewall.engine import Firewall

RESULTS = Path(__file__).resolve().parent / "results"

BENCH_CONFIG = """\
interface Ethernet0
 nameif outside
 security-level 0
 ip address 192.0.2.1 255.255.255.0
interface Ethernet1
 nameif inside
 security-level 100
 ip address 10.0.0.1 255.255.0.0
access-list inside_in extended permit tcp 10.0.0.0 255.255.0.0 any
access-list inside_in extended permit udp 10.0.0.0 255.255.0.0 any
access-group inside_in in interface inside
global (outside) 1 interface
nat (inside) 1 10.0.0.0 255.255.0.0
route outside 0.0.0.0 0.0.0.0 192.0.2.254 1
"""

SERVER = 0xC6336407  # 198.51.100.7
CLIENT_BASE = 0x0A000000  # 10.0.0.0
MAPPED = 0xC0000201  # 192.0.2.1


def _handshake(fw: Firewall, client: int, sport: int, now: float) -> tuple[int, int, int]:
    """Open one TCP connection through PAT and sequence randomization.

    Returns (mapped port, client offset, server offset): each host must acknowledge the sequence
    numbers the firewall forwarded to it, not the ones its peer sent.
    """
    opt = craft.tcp_option_mss(1460)
    syn = craft.tcp_packet(4, client, SERVER, sport, 80, 1000, 0, 0x02, 64240, options=opt)
    out = fw.receive("inside", syn, now).packets[0][1]
    mport = int.from_bytes(out[20:22], "big")
    dc = (int.from_bytes(out[24:28], "big") - 1000) & 0xFFFFFFFF
    synack = craft.tcp_packet(4, SERVER, MAPPED, 80, mport, 5000, (1001 + dc) & 0xFFFFFFFF, 0x12, 65535)
    back = fw.receive("outside", synack, now).packets[0][1]
    ds = (int.from_bytes(back[24:28], "big") - 5000) & 0xFFFFFFFF
    fw.receive(
        "inside",
        craft.tcp_packet(4, client, SERVER, sport, 80, 1001, (5001 + ds) & 0xFFFFFFFF, 0x10, 64240),
        now,
    )
    return mport, dc, ds


def bench_replay(packets: int, flows: int) -> dict:
    """Engine packets/s on established flows: data one way, ACKs back, as a bulk transfer looks."""
    fw = Firewall(parse(BENCH_CONFIG, "bench.cfg"))
    now = 1.0
    state = []
    for i in range(flows):
        client = CLIENT_BASE + 2 + i % 60000
        sport = 20000 + i // 60000
        mport, dc, ds = _handshake(fw, client, sport, now)
        state.append([client, sport, mport, dc, ds, 1001])
    trace: list[tuple[str, bytearray]] = []
    payload = b"x" * 512
    i = 0
    m = 0xFFFFFFFF
    while len(trace) < packets:
        st = state[i % flows]
        client, sport, mport, dc, ds, cseq = st
        trace.append(
            (
                "inside",
                craft.tcp_packet(
                    4, client, SERVER, sport, 80, cseq, (5001 + ds) & m, 0x18, 64240, payload=payload
                ),
            )
        )
        cseq = (cseq + len(payload)) & m
        trace.append(
            ("outside", craft.tcp_packet(4, SERVER, MAPPED, 80, mport, 5001, (cseq + dc) & m, 0x10, 65535))
        )
        st[5] = cseq
        i += 1
    receive = fw.receive
    base_fwd, base_drop = fw.stats["forwarded"], fw.stats["dropped"]
    gc.disable()
    t0 = time.perf_counter()
    for iface, data in trace:
        receive(iface, data, now)
    dt = time.perf_counter() - t0
    gc.enable()
    return {
        "packets": len(trace),
        "flows": flows,
        "seconds": dt,
        "pps": len(trace) / dt,
        "forwarded": fw.stats["forwarded"] - base_fwd,
        "dropped": fw.stats["dropped"] - base_drop,
    }


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def bench_memory(connections: int) -> dict:
    """Bytes per tracked connection (TCP, established through PAT): resident memory growth / count.

    RSS rather than tracemalloc: tracemalloc slows a million handshakes past any patience, and RSS is
    what the machine actually pays.
    """
    fw = Firewall(parse(BENCH_CONFIG, "bench.cfg"))
    gc.collect()
    base = _rss()
    for i in range(connections):
        _handshake(fw, CLIENT_BASE + 2 + i % 60000, 20000 + i // 60000, 1.0)
    gc.collect()
    used = _rss() - base
    n = len(fw.conns)
    return {"connections": n, "bytes": used, "bytes_per_connection": used / max(n, 1)}


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().split()[1]
        info["memory_kib"] = int(mem)
    except OSError:
        pass
    return info


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.packets, args.connections, args.runs = 20_000, 20_000, 1
    rows = []
    replay_runs = [bench_replay(args.packets, args.flows) for _ in range(args.runs)]
    rows.append(
        (
            "replay, established TCP flows (engine time)",
            f"{_median(replay_runs, 'pps'):,.0f} pkt/s",
            "500,000 pkt/s",
            _median(replay_runs, "pps") / 500_000,
        )
    )
    # One memory run: a million handshakes take minutes, and the figure barely varies.
    mem_runs = [bench_memory(args.connections)]
    bpc = _median(mem_runs, "bytes_per_connection")
    rows.append(
        (f"memory, {args.connections:,} TCP connections", f"{bpc:,.0f} B/conn", "1,024 B/conn", 1024 / bpc)
    )
    result = {
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "replay": replay_runs,
        "memory": mem_runs,
        "table": [{"what": w, "statewall": s, "target": t, "ratio_to_target": r} for w, s, t, r in rows],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (result["time"].replace(":", "").replace("+0000", "Z") + ".json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"statewall benchmarks (median of {args.runs})")
        for col in ("what", "statewall", "target", "statewall / target"):
            table.add_column(col)
        for w, s, t, r in rows:
            table.add_row(w, s, t, f"{r:.2f}")
        Console().print(table)
    except ImportError:  # pragma: no cover - rich is a dependency; plain text if it is missing
        for row in rows:
            print(*row, sep="\t")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
