"""`make bench`: statewall's performance next to the kernel's, measured, printed as a table and saved as JSON.

Measures what issue 8 asks for, each the median of ``--runs`` runs (3 by default):

1. bulk TCP: one iperf3 stream inside -> outside for 8 s, through the kernel (nftables conntrack +
   masquerade) and through ``statewall run`` (PAT, access list, normalizer, randomization, TSO
   super-packets), in the same namespace topology (``bench.live``; root only);
2. small packets: 64-byte UDP datagrams through an established flow at full load, forwarded pkt/s;
3. new TCP connections per second through PAT and an access list (a C epoll client, a C server);
4. replay: engine packets per second over a generated trace of established TCP flows (engine time
   only: decoding, lookup, normalizer, tracking, NAT, randomization, counters; no file I/O), the
   garbage collector on as in the adapters (the trace itself frozen out of its way);
5. memory: bytes per tracked connection with a million idle connections in the table (RSS growth);
6. sharded replay (``--only shards``): a generated busy site (``bench.busytrace``: 100 000 connections
   of many inside hosts, FTP, per-client limits) replayed by ``statewall replay`` in one process and in
   1 and 2 shards on a Dask ``LocalCluster``, and in 2 shards on a cluster already running: wall time
   and packets per second of the whole replay (reading, engine, formatting, writing, the merge).

The table gives the ratio statewall / kernel where the kernel has a counterpart (for memory the
kernel's figure is its ``nf_conntrack`` slab object) and the issue's target. Numbers are never
asserted anywhere: this prints and records them. Results go to ``bench/results/<UTC>.json`` with a
description of the machine; ``--markdown`` also prints the table as the README shows it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

from statewall import craft
from statewall.dialects.asa import parse
from statewall.engine import Firewall

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parent.parent

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

# The memory line needs a million PAT translations: more than one address's 64,512 ports. A pool of
# 32 addresses handed out round-robin, each host keeping its own (ASA 8.3+ object NAT): 32 hosts with
# 31,250 connections each, every real port kept.
POOL_CONFIG = """\
ASA Version 9.8(1)
interface Ethernet0
 nameif outside
 security-level 0
 ip address 192.0.2.1 255.255.255.0
interface Ethernet1
 nameif inside
 security-level 100
 ip address 10.0.0.1 255.255.0.0
object network PATPOOL
 range 192.0.2.10 192.0.2.41
object network LAN
 subnet 10.0.0.0 255.255.0.0
 nat (inside,outside) dynamic pat-pool PATPOOL round-robin
access-list inside_in extended permit tcp 10.0.0.0 255.255.0.0 any
access-list inside_in extended permit udp 10.0.0.0 255.255.0.0 any
access-group inside_in in interface inside
route outside 0.0.0.0 0.0.0.0 192.0.2.254 1
"""
POOL_HOSTS = 32


def _idle_policy(text: str, name: str):
    """``text`` parsed to run on the ASA 5585-X SSP-60, whose platform limit (10 M concurrent
    connections, statewall.dialects.asa.platform) holds the memory and idle lines' tables: on the
    default model (the 5516-X's 250 000) a million connections would be refused as conn-limit."""
    policy = parse(text, name)
    try:
        from statewall.dialects.asa import platform as asa_platform
    except ImportError:  # a --baseline tree from before the platform limits: it has none to lift
        return policy
    asa_platform.apply(policy, asa_platform.lookup("5585-X SSP-60"), None)
    return policy


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
    mapped = int.from_bytes(out[12:16], "big")
    synack = craft.tcp_packet(4, SERVER, mapped, 80, mport, 5000, (1001 + dc) & 0xFFFFFFFF, 0x12, 65535)
    back = fw.receive("outside", synack, now).packets[0][1]
    ds = (int.from_bytes(back[24:28], "big") - 5000) & 0xFFFFFFFF
    fw.receive(
        "inside",
        craft.tcp_packet(4, client, SERVER, sport, 80, 1001, (5001 + ds) & 0xFFFFFFFF, 0x10, 64240),
        now,
    )
    return mport, dc, ds


# The replay lines time their packets in this many chunks: the best chunk's rate in CPU time is what a
# comparison on a shared machine can use (``_cpu_rates``).
CHUNKS = 10


def _cpu_rates(packets: int, cpu: float, chunks: list[tuple[int, float]]) -> dict:
    """The process's CPU time next to the wall clock: on a shared machine the process gets part of a
    CPU, and other processes' load slows even its CPU time (caches, the other hyperthread), unevenly
    over a run. ``pps_best``: the rate of the chunk that ran fastest in CPU time, the least disturbed
    one (as ``timeit`` takes the minimum), which ``--baseline`` compares. On the replay line it is
    also the steady state: the first chunk holds each flow's first data segment, which the Python path
    offloads (docs/performance.md, "Issue 18: the offline lines")."""
    best = max((n / c for n, c in chunks if c > 0), default=None)
    return {"cpu_seconds": cpu, "pps_cpu": packets / cpu if cpu else None, "pps_best": best}


def bench_replay(packets: int, flows: int) -> dict:
    """Engine packets/s on established flows: data one way, ACKs back, as a bulk transfer looks.

    512-byte data segments and their ACKs, each with the NOP NOP timestamp options Linux puts on every
    segment of an established flow; flows round-robin so that consecutive packets are of different
    connections.
    """
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
    ts = craft.tcp_options(craft.tcp_option_timestamps(1, 2))
    i = 0
    m = 0xFFFFFFFF
    while len(trace) < packets:
        st = state[i % flows]
        client, sport, mport, dc, ds, cseq = st
        trace.append(
            (
                "inside",
                craft.tcp_packet(
                    4, client, SERVER, sport, 80, cseq, (5001 + ds) & m, 0x18, 64240, ts, payload=payload
                ),
            )
        )
        cseq = (cseq + len(payload)) & m
        trace.append(
            (
                "outside",
                craft.tcp_packet(4, SERVER, MAPPED, 80, mport, 5001, (cseq + dc) & m, 0x10, 65535, ts),
            )
        )
        st[5] = cseq
        i += 1
    receive = fw.receive
    base_fwd, base_drop = fw.stats["forwarded"], fw.stats["dropped"]
    # The trace and the connections are old objects by now, as in a long-running firewall: keep the
    # collector's full passes from scanning them, but leave it on for what the engine allocates.
    gc.collect()
    gc.freeze()
    chunk = max(1, len(trace) // CHUNKS)
    clock, cpu_clock = time.perf_counter, time.process_time
    t0, c0 = clock(), cpu_clock()
    cpus = []
    for a in range(0, len(trace), chunk):
        c1 = cpu_clock()
        for iface, data in trace[a : a + chunk]:
            receive(iface, data, now)
        cpus.append((min(chunk, len(trace) - a), cpu_clock() - c1))
    dt, cpu = clock() - t0, cpu_clock() - c0
    gc.unfreeze()
    return {
        "packets": len(trace),
        "flows": flows,
        "seconds": dt,
        "pps": len(trace) / dt,
        **_cpu_rates(len(trace), cpu, cpus),
        "forwarded": fw.stats["forwarded"] - base_fwd,
        "dropped": fw.stats["dropped"] - base_drop,
    }


def bench_short(connections: int, warmup: int = 32_000) -> dict:
    """Engine packets/s (and connections/s) over whole short connections: 8 packets each (SYN, SYN-ACK,
    ACK, a request, a 200-byte answer, the server's FIN, the client's FIN/ACK, the last ACK) from 4
    inside hosts with random ephemeral ports, 1 000 connections per simulated second with ``advance``
    every 50 (``bench.profile``'s ``newconn`` workload). ``warmup`` connections first, untimed, so that
    PAT translations expire 30 s after their last connection as in ``statewall run`` (the steady
    state). The packets are recorded once through a firewall with the same seed, then replayed through
    a fresh one (engine time only, the collector on); every packet must come out as recorded.
    """
    from bench.profile import newconn, warm_up

    per = max(1, connections // CHUNKS)
    connections = per * CHUNKS
    fw, ops, sent, bounds = next(newconn(CHUNKS, per, warmup))
    receive, advance = fw.receive, fw.advance
    got = warm_up(fw, ops[: bounds[1]])
    parts = [
        [(op[1], bytearray(op[2]), op[3]) if op[0] == "r" else (None, None, op[1]) for op in ops[a:b]]
        for a, b in zip(bounds[1:], bounds[2:])
    ]
    packets = sum(1 for part in parts for iface, _d, _n in part if iface is not None)
    gc.collect()
    gc.freeze()
    clock, cpu_clock = time.perf_counter, time.process_time
    t0, c0 = clock(), cpu_clock()
    cpus = []
    for part in parts:
        c1 = cpu_clock()
        for iface, data, now in part:
            if iface is None:
                got += len(advance(now).packets)
            else:
                got += len(receive(iface, data, now).packets)
        cpus.append((sum(1 for iface, _d, _n in part if iface is not None), cpu_clock() - c1))
    dt, cpu = clock() - t0, cpu_clock() - c0
    gc.unfreeze()
    return {
        "connections": connections,
        "warmup": warmup,
        "packets": packets,
        "seconds": dt,
        "pps": packets / dt,
        **_cpu_rates(packets, cpu, cpus),
        "connections_per_second": connections / dt,
        "same_as_recorded": got == sent and not fw.stats["dropped"],
    }


IDLE_TARGET = 10_000_000
# The 10 M line needs more PAT ports than POOL_CONFIG's 32 addresses have (2.06 M): 160 addresses, 160
# hosts with 62 500 connections each (their own address each, every real port kept).
IDLE_HOSTS = 160
IDLE_CONFIG = POOL_CONFIG.replace("range 192.0.2.10 192.0.2.41", "range 192.0.2.10 192.0.2.169")


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def bench_idle(connections: int, reserve: int = 4 << 30, step: int = 100_000) -> dict:
    """Resident memory of the whole process holding ``connections`` idle TCP connections (handshakes
    through a 160-address PAT pool), and the figure extrapolated to 10 M when fewer were opened: the
    process's RSS before the first one plus the measured growth per connection times 10 M (said so in
    the result). It stops early, and extrapolates from what it has, when the machine has less than
    ``reserve`` bytes available (a shared machine must not be pushed into swap or the OOM killer),
    looking every ``step`` connections.
    """
    fw = Firewall(_idle_policy(IDLE_CONFIG, "bench-idle.cfg"))
    gc.collect()
    base = _rss()
    t0 = time.perf_counter()
    done = 0
    stopped = None
    while done < connections:
        end = min(connections, done + step)
        for i in range(done, end):
            _handshake(fw, CLIENT_BASE + 2 + i % IDLE_HOSTS, 1024 + i // IDLE_HOSTS, 1.0)
        done = end
        if done < connections and _mem_available() < reserve:
            stopped = f"stopped at {done:,}: less than {reserve >> 30} GB available"
            break
    gc.collect()
    rss = _rss()
    n = len(fw.conns)
    per = (rss - base) / max(n, 1)
    return {
        "connections": n,
        "asked": connections,
        "seconds": time.perf_counter() - t0,
        "rss_before": base,
        "rss": rss,
        "bytes_per_connection": per,
        "rss_at_10m": rss if n >= IDLE_TARGET else base + per * IDLE_TARGET,
        "extrapolated": n < IDLE_TARGET,
        "stopped": stopped,
    }


def bench_shards(connections: int, workdir: Path) -> list[dict]:
    """The sharded replay line: one process, then 1 and 2 workers of a LocalCluster started by the
    replay (its start counted), then 2 shards on a LocalCluster already running (start not counted).
    The site is behind PAT: each shard allocates from its own port blocks."""
    import logging

    from distributed import LocalCluster

    from bench.busytrace import config, write_trace
    from bench.shard_compare import Reference, compare
    from statewall.config import parse_policy
    from statewall.replay import replay
    from statewall.scale.replay import replay as sharded

    trace = workdir / "busy.pcap"
    info = write_trace(trace, connections)
    policy = parse_policy(config(), "busy.cfg")
    packets = info["packets"]
    rows = []

    seed = b"bench-shards"
    ref = workdir / "one"
    reference: list[Reference] = []  # one process's outputs, read once (after its run)

    def timed(name: str, run) -> None:
        gc.collect()
        out = ref if name == "one process" else workdir / f"run{len(rows)}"
        load = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        summary = run(out)
        dt, driver_cpu = time.perf_counter() - t0, time.process_time() - c0
        same: bool | str = True
        if out != ref:
            try:  # the answers, checked as the tests check them (not a speed assertion)
                if not reference:
                    reference.append(Reference(ref))
                compare(reference[0], out)
            except AssertionError as exc:
                same = str(exc)[:300]
            shutil.rmtree(out, ignore_errors=True)
        rows.append(
            {
                "what": name,
                "seconds": dt,
                "pkt_per_s": packets / dt,
                "packets": packets,
                "connections": summary["connections"]["built"],
                "shards": summary.get("shards"),
                "load_before": load,
                "same_as_one_process": same,
                # Processor seconds: the driver's (this process, all threads) and each shard's (its
                # thread). With a core each, a replay takes about the largest of them: what the line
                # would show on a machine with more cores than busy processes.
                "driver_cpu_seconds": driver_cpu,
                "shard_cpu_seconds": (summary.get("shards") or {}).get("cpu_seconds"),
            }
        )
        shard_cpu = (summary.get("shards") or {}).get("cpu_seconds") or []
        print(
            f"  {name}: {dt:.1f} s, {packets / dt:,.0f} pkt/s; cpu: driver {driver_cpu:.1f} s, shards "
            f"{', '.join(f'{c:.1f}' for c in shard_cpu) or '-'} s (load {load:.1f}; same answers: {same})"
        )

    print(f"shards: {connections:,} connections, {packets:,} packets")
    timed(
        "one process",
        lambda out: replay(policy, [(None, trace)], ref, drain=300, firewall=Firewall(policy, seed=seed)),
    )
    for n in (1, 2):
        timed(
            f"{n} worker(s), LocalCluster",
            lambda out, n=n: sharded(policy, [(None, trace)], out, workers=n, drain=300, seed=seed),
        )
    with LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR
    ) as lc:
        timed(
            "2 shards, running cluster",
            lambda out: sharded(
                policy, [(None, trace)], out, cluster=lc.scheduler_address, drain=300, seed=seed
            ),
        )
    return rows


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def bench_memory(connections: int, trace: bool = False) -> dict:
    """Bytes per tracked connection (TCP, established through PAT): resident memory growth / count.

    RSS rather than tracemalloc: tracemalloc slows a million handshakes past any patience, and RSS is
    what the machine actually pays. ``trace`` adds tracemalloc's view (for a few ten thousand
    connections): bytes per connection by the source line that allocated them, after 200 connections
    that warm the shared caches up (not counted); the RSS figure then includes tracemalloc's own tables.
    """
    import tracemalloc

    fw = Firewall(_idle_policy(POOL_CONFIG, "bench-pool.cfg"))
    warm = 200 if trace else 0
    if trace:
        for i in range(warm):
            _handshake(fw, CLIENT_BASE + 2 + i % POOL_HOSTS, 60000 + i // POOL_HOSTS, 1.0)
    gc.collect()
    base = _rss()
    if trace:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
    for i in range(connections):
        _handshake(fw, CLIENT_BASE + 2 + i % POOL_HOSTS, 1024 + i // POOL_HOSTS, 1.0)
    gc.collect()
    used = _rss() - base
    n = len(fw.conns) - warm
    out = {"connections": n, "bytes": used, "bytes_per_connection": used / max(n, 1)}
    if trace:
        stats = tracemalloc.take_snapshot().compare_to(before, "lineno")
        tracemalloc.stop()
        out["traced_bytes_per_connection"] = sum(st.size_diff for st in stats) / connections
        out["traced_lines"] = [
            (
                f"{st.traceback[0].filename.rsplit('/', 1)[-1]}:{st.traceback[0].lineno}",
                st.size_diff / connections,
            )
            for st in stats
            if abs(st.size_diff) >= connections
        ]
        print(f"tracemalloc: {out['traced_bytes_per_connection']:,.0f} B per connection")
        for where, size in out["traced_lines"]:
            print(f"  {size:8.1f} B  {where}")
    return out


def kernel_conntrack_object() -> int | None:
    """The size of one ``nf_conntrack`` slab object (the kernel's bytes per connection), if visible."""
    try:
        for line in Path("/proc/slabinfo").read_text().splitlines():
            if line.startswith("nf_conntrack "):
                return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
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


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def build_rows(
    live: dict | None,
    replay_runs: list[dict],
    mem_runs: list[dict],
    args,
    short_runs: list[dict] | None = None,
    idle_runs: list[dict] | None = None,
    baseline: dict | None = None,
) -> list[dict]:
    """The table: one dict per line (what, kernel, statewall, ratio, target, met); the targets are
    issue 18's. ``baseline``: {"commit", "replay": runs, "short": runs, "memory": runs} measured in the
    same run (``--baseline``): its lines are added, and the ratio of this tree's to them."""
    rows = []
    if live is not None:
        from bench.live import KERNEL_VARIANTS

        refs = [m for m in live if m == "kernel" or m in KERNEL_VARIANTS]
        pairs = [(r, m) for r in refs for m in live if m not in refs]
        for ref, mode in pairs:
            k, s = live[ref], live[mode]
            label = f" [{mode}]" if mode != "statewall" else ""
            if ref != "kernel":
                label = f" [{mode} against {ref}]"
            for test, key, unit, scale, fmt, what, target in (
                (
                    "bulk",
                    "bits_per_second",
                    "Gbit/s",
                    1e9,
                    "{:.2f}",
                    f"bulk TCP, iperf3 {args.bulk_seconds} s, TSO",
                    0.8,
                ),
                ("small", "pps", "pkt/s", 1, "{:,.0f}", "64-byte UDP, one flow, full load", 0.8),
                ("conns", "per_second", "conn/s", 1, "{:,.0f}", "new TCP connections, PAT + ACL", 0.5),
            ):
                kv, sv = _median(k[test], key), _median(s[test], key)
                ratio = _ratio(sv, kv)
                rows.append(
                    {
                        "what": what + label,
                        "kernel": f"{fmt.format(kv / scale)} {unit}" if kv is not None else "error",
                        "statewall": f"{fmt.format(sv / scale)} {unit}" if sv is not None else "error",
                        "ratio": ratio,
                        "target": f"≥ {target:.2f} × kernel",
                        "met": ratio is not None and ratio >= target,
                    }
                )
    base = baseline or {}
    commit = base.get("commit", "the baseline")

    def offline(what: str, runs: list[dict], key: str, unit: str, line: str, factor: float) -> None:
        if baseline:  # a comparison: the least disturbed chunk in CPU time (``_cpu_rates``), best run
            key = "pps_best"
            what += ", best chunk in CPU time"
            v = max((r[key] for r in runs if r.get(key)), default=None)
        else:
            v = _median(runs, key)
        b = max((r[key] for r in base.get(line) or [] if r.get(key)), default=None) if baseline else None
        if baseline:
            rows.append(
                {
                    "what": f"{what} [{commit}]",
                    "kernel": "-",
                    "statewall": f"{b:,.0f} {unit}" if b is not None else "error",
                    "ratio": None,
                    "target": "(baseline)",
                    "met": None,
                }
            )
        ratio = _ratio(v, b)
        rows.append(
            {
                "what": what,
                "kernel": "-",
                "statewall": f"{v:,.0f} {unit}" if v is not None else "error",
                "ratio": ratio,
                "target": f"≥ {factor:g} × {commit}",
                "met": (ratio is not None and ratio >= factor) if baseline else None,
            }
        )

    only = getattr(args, "only", None)
    if only in (None, "replay"):
        offline(
            f"replay, {args.packets:,} packets over {args.flows:,} TCP flows (engine, 1 core)",
            replay_runs,
            "pps",
            "pkt/s",
            "replay",
            1.5,
        )
    if only in (None, "short") and short_runs is not None:
        offline(
            f"replay of short connections (8 packets each), {args.short_connections:,} (engine, 1 core)",
            short_runs,
            "pps",
            "pkt/s",
            "short",
            4.0,
        )
    if only in (None, "memory"):
        bpc = _median(mem_runs, "bytes_per_connection")
        kobj = kernel_conntrack_object()
        count = mem_runs[0].get("connections", args.connections) if mem_runs else args.connections
        what = f"memory, {count:,} idle TCP connections (PAT pool)"
        if baseline:
            b = _median(base.get("memory") or [], "bytes_per_connection")
            rows.append(
                {
                    "what": f"{what} [{commit}]",
                    "kernel": "-",
                    "statewall": f"{b:,.0f} B/conn" if b is not None else "error",
                    "ratio": _ratio(b, kobj),
                    "target": "(baseline)",
                    "met": None,
                }
            )
        rows.append(
            {
                "what": what,
                "kernel": f"{kobj:,} B/conn (nf_conntrack object)" if kobj else "-",
                "statewall": f"{bpc:,.0f} B/conn" if bpc is not None else "error",
                "ratio": _ratio(bpc, kobj),
                "target": "≤ 1,024 B/conn",
                "met": bpc is not None and bpc <= 1024,
            }
        )
    if idle_runs:
        r = idle_runs[0]
        if "rss_at_10m" in r:
            how = (
                f"extrapolated from {r['connections']:,} ({r['bytes_per_connection']:,.0f} B/conn)"
                if r["extrapolated"]
                else "measured"
            )
            gb = r["rss_at_10m"] / 2**30
            rows.append(
                {
                    "what": f"10 M idle TCP connections, RSS ({how})",
                    "kernel": "-",
                    "statewall": f"{gb:.2f} GiB",
                    "ratio": None,
                    "target": "≤ 12 GiB",
                    "met": gb <= 12,
                }
            )
    return rows


def _met(m: bool | None) -> str:
    return "-" if m is None else "yes" if m else "no"


def markdown(rows: list[dict], runs: int) -> str:
    lines = [
        f"| measurement (median of {runs}) | kernel | statewall | ratio (/ kernel or / [baseline]) "
        "| target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        lines.append(
            f"| {r['what']} | {r['kernel']} | {r['statewall']} | {ratio} | {r['target']} | {_met(r['met'])} |"
        )
    return "\n".join(lines)


def print_table(rows: list[dict], runs: int) -> None:
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency; markdown if it is missing
        print(markdown(rows, runs))
        return
    table = Table(title=f"statewall benchmarks (median of {runs})")
    for col in ("what", "kernel", "statewall", "ratio", "target", "met"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            escape(r["what"]),  # "[1eadc69]", "[statewall-pywait]" are text, not rich markup
            r["kernel"],
            r["statewall"],
            f"{r['ratio']:.2f}" if r["ratio"] is not None else "-",
            r["target"],
            _met(r["met"]),
        )
    Console(width=150).print(table)


def _stage(result: dict, name: str, run) -> list[dict]:
    """``result[name] = run()``; an exception is recorded (and printed) instead of ending the bench."""
    try:
        result[name] = runs = run()
    except Exception as exc:  # noqa: BLE001 - the other lines are still worth having
        print(f"{name} failed: {type(exc).__name__}: {exc}")
        result[name] = []
        result[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
        return []
    return runs


def main(argv: list[str] | None = None) -> int:
    from bench.baseline import BASELINE

    ap = argparse.ArgumentParser(prog="bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--flows", type=int, default=10_000)
    ap.add_argument("--connections", type=int, default=1_000_000)
    ap.add_argument(
        "--short-connections", type=int, default=20_000, help="the short-connection replay line's count"
    )
    ap.add_argument(
        "--short-warmup", type=int, default=32_000, help="short connections before it, untimed (steady state)"
    )
    ap.add_argument("--bulk-seconds", type=int, default=8)
    ap.add_argument("--shard-connections", type=int, default=100_000, help="the sharded replay line's trace")
    ap.add_argument("--seconds", type=float, default=5.0, help="small-packet and connection windows")
    ap.add_argument("--no-live", action="store_true", help="only the offline lines (replay, memory)")
    ap.add_argument("--markdown", action="store_true", help="also print the table as markdown")
    ap.add_argument("--quick", action="store_true", help="small sizes, one run, for a smoke run")
    ap.add_argument(
        "--tracemalloc",
        action="store_true",
        help="the memory line also by allocating source line (slow: use --connections 20000)",
    )
    ap.add_argument(
        "--only",
        choices=("live", "replay", "short", "memory", "shards", "idle", "workers"),
        help="only the live lines, one offline line (replay, short, memory, shards, idle; e.g. --only "
        "memory --connections 200000) or the live statewall run --workers lines (workers: new "
        "connections and 64-byte UDP from 16 inside hosts)",
    )
    ap.add_argument(
        "--idle",
        action="store_true",
        help="also the 10 M idle connections line (RSS; long: not in the default run)",
    )
    ap.add_argument(
        "--idle-connections",
        type=int,
        default=10_000_000,
        help="connections the idle line opens; fewer than 10 M are extrapolated to 10 M (said so)",
    )
    ap.add_argument(
        "--baseline",
        nargs="?",
        const=BASELINE,
        metavar="COMMIT",
        help=f"also measure the replay, short-connection and memory lines of COMMIT (default {BASELINE}, "
        "before issue 18) in the same run, from a temporary git worktree, and give the ratios",
    )
    ap.add_argument(
        "--against",
        metavar="COMMIT",
        help="with --baseline: measure COMMIT (from its own temporary worktree) instead of this tree",
    )
    ap.add_argument(
        "--compare-loop",
        action="store_true",
        help="the live lines also with the Python wait around the C pump and with 200 µs polling",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.packets, args.flows, args.connections, args.runs = 20_000, 1000, 20_000, 1
        args.short_connections, args.short_warmup = 2000, 2000
        args.shard_connections = 5000
        args.bulk_seconds, args.seconds = 2, 2.0
    if args.only == "idle":
        args.idle = True
    result: dict = {
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "args": vars(args),
    }
    live = None
    if args.only not in (None, "live"):
        args.no_live = True
    if not args.no_live:
        from bench import live as live_mod

        why = live_mod.available()
        if why is None:
            variants = tuple(live_mod.VARIANTS) if args.compare_loop else ()
            what = "statewall and its variants" if variants else "statewall"
            print(f"live: {args.runs} runs each, kernel and {what} alternating")
            live = live_mod.run_live(
                args.runs, bulk_seconds=args.bulk_seconds, seconds=args.seconds, variants=variants
            )
        else:
            print(f"live benchmarks skipped: {why}")
            result["live_skipped"] = why
    result["live"] = live
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (result["time"].replace(":", "").replace("+0000", "Z") + ".json")

    def save() -> None:  # after every stage: a later failure keeps what was measured
        path.write_text(json.dumps(result, indent=2) + "\n")

    save()
    wanted = [w for w in ("replay", "short", "memory") if args.only in (None, w)]
    kwargs = {
        "replay": {"packets": args.packets, "flows": args.flows},
        "short": {"connections": args.short_connections, "warmup": args.short_warmup},
        "memory": {"connections": args.connections},
    }
    baseline = None
    runs_of: dict[str, list[dict]] = {w: [] for w in ("replay", "short", "memory")}
    if args.baseline and wanted:
        from bench import baseline as bl

        with contextlib.ExitStack() as stack:
            tree = stack.enter_context(bl.checkout(args.baseline))
            ours = stack.enter_context(bl.checkout(args.against)) if args.against else ROOT
            baseline = {
                "commit": args.baseline,
                "description": bl.describe(tree),
                "against": bl.describe(ours),
            }
            lines = ", ".join(wanted)
            print(f"baseline {baseline['description']}: {lines}, alternating with {baseline['against']}")
            for w in wanted:
                baseline[w] = []
                # One memory run each (minutes for a million, and the figure barely varies).
                for r in range(1 if w == "memory" else args.runs):
                    for name, src, runs in (("baseline", tree, baseline[w]), ("measured", ours, runs_of[w])):
                        res = bl.measure(src, w, **kwargs[w])
                        runs.append(res)
                        print(f"  {w} run {r + 1} {name}: {_short_offline(w, res)}")
                    result["baseline"] = baseline
                    result[w] = runs_of[w]
                    save()
    else:
        for w in wanted:
            if w == "memory":
                print(f"memory: {args.connections:,} connections")
                runs_of[w] = _stage(result, w, lambda: [bench_memory(args.connections, args.tracemalloc)])
            else:
                print(f"{w}: {kwargs[w]}, {args.runs} runs")
                fn = bench_replay if w == "replay" else bench_short
                runs_of[w] = _stage(result, w, lambda fn=fn, w=w: [fn(**kwargs[w]) for _ in range(args.runs)])
                for res in runs_of[w]:
                    print(f"  {_short_offline(w, res)}")
            save()
    idle_runs: list[dict] = []
    if args.idle:
        print(f"idle: {args.idle_connections:,} connections")
        idle_runs = _stage(result, "idle", lambda: [bench_idle(args.idle_connections)])
        save()
    # A live line: not with --no-live (only the offline lines) nor in a baseline comparison.
    if args.only == "workers" or (args.only is None and not args.no_live and not args.baseline):
        from bench import live as live_mod

        why = live_mod.available()
        if why is None:
            print(
                "workers: new connections and 64-byte UDP from 16 inside hosts, kernel and 1/2 workers, "
                f"{args.runs} runs"
            )
            _stage(result, "workers", lambda: live_mod.run_workers(args.runs, seconds=args.seconds))
        else:
            result["workers_skipped"] = why
        save()
        if args.only == "workers":
            print(f"results: {path}")
            return 0
    if args.only == "shards" or (args.only is None and not args.baseline):  # not compared to a baseline
        import tempfile

        with tempfile.TemporaryDirectory(prefix="statewall-shards-") as tmp:
            _stage(result, "shards", lambda: bench_shards(args.shard_connections, Path(tmp)))
        save()
        if args.only == "shards":
            print(f"results: {path}")
            return 0
    rows = build_rows(live, runs_of["replay"], runs_of["memory"], args, runs_of["short"], idle_runs, baseline)
    result["table"] = rows
    result["markdown"] = markdown(rows, args.runs)
    save()
    print_table(rows, args.runs)
    if args.markdown:
        print(result["markdown"])
    print(f"results: {path}")
    return 0


def _short_offline(line: str, res: dict) -> str:
    if "error" in res:
        return f"error: {res['error']}"
    if line == "memory":
        return f"{res['bytes_per_connection']:,.0f} B/conn over {res['connections']:,}"
    extra = f", {res['connections_per_second']:,.0f} conn/s" if line == "short" else ""
    same = "" if res.get("same_as_recorded", True) else " (NOT as recorded)"
    cpu = (
        f" (CPU time: {res['pps_cpu']:,.0f}, best chunk {res['pps_best']:,.0f})" if res.get("pps_cpu") else ""
    )
    return f"{res['pps']:,.0f} pkt/s{cpu}{extra}{same}"


if __name__ == "__main__":
    sys.exit(main())
