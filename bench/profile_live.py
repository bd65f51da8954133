"""Where ``statewall run``'s time goes in the live benchmark lines: perf samples of the firewall process.

``python -m bench.profile_live small|bulk|conns`` (root) builds one statewall lab as ``make bench`` does,
runs the line once while ``perf record -e cpu-clock`` samples the ``statewall run`` process (the one
software event every kernel offers; no hardware counters are needed), and prints the share of samples
per part: the kernel (system calls: reading the TUN, and writing it, which includes the kernel's own
forwarding of the packet to the next hop), the compiled fast path and the C pump, the Python
interpreter (the engine's Python path and the loop), and the rest; then the top symbols.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from bench import live
from statewall.lab.netns import Lab

PARTS = (
    ("kernel (system calls: TUN read, TUN write with the kernel's forwarding)", ("[kernel",)),
    ("compiled fast path (_fastpath)", ("_fastpath",)),
    ("C pump (_tunpump)", ("_tunpump",)),
    ("Python interpreter (engine's Python path, loop)", ("python", "libpython")),
    ("C library", ("libc",)),
)


def part_of(dso: str) -> str:
    for name, keys in PARTS:
        if any(k in dso for k in keys):
            return name
    return "other"


# ``--syscalls``: what perf stat counts instead of sampling (tracepoints every kernel with ftrace has).
SYSCALL_EVENTS = (
    "raw_syscalls:sys_enter",
    "syscalls:sys_enter_read",
    "syscalls:sys_enter_write",
    "syscalls:sys_enter_writev",
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_io_uring_enter",
    "context-switches",
)


def profile(
    line: str, seconds: float, out: str, variant: str = "statewall", syscalls: bool = False, extra=()
) -> dict:
    samples: list[str] = []

    def start(pid: int):
        path = os.path.join(out, f"{line}-{pid}.data")
        if syscalls:
            cmd = ["perf", "stat", "-x", ",", "-o", path, "-e", ",".join(SYSCALL_EVENTS), "-p", str(pid)]
        else:
            cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-p", str(pid), "-o", path]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop() -> None:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
            samples.append(path)

        return stop

    live.PROFILER = start
    try:
        with Lab() as lab:
            tools = live.compile_tools(lab.workdir())
            opts = (*live.VARIANTS.get(variant, ()), *extra)
            bench = live.LiveBench(lab, "statewall", tools, opts).build()
            res = {"bulk": lambda: bench.bulk(int(seconds)), "small": bench.small, "conns": bench.conns}[line]
            result = res() if line == "bulk" else res(seconds)
            counters = bench.stopped
    finally:
        live.PROFILER = None
    if syscalls:
        counts: collections.Counter[str] = collections.Counter()
        for path in samples:
            with open(path) as f:
                for row in f:
                    parts = row.strip().split(",")
                    if len(parts) > 2 and parts[0].isdigit():
                        counts[parts[2]] += int(parts[0])
        return {"line": line, "result": result, "counters": counters, "counts": counts}
    by_part: collections.Counter[str] = collections.Counter()
    by_sym: collections.Counter[str] = collections.Counter()
    total = 0
    for path in samples:
        rep = subprocess.run(
            ["perf", "report", "-i", path, "--no-children", "--sort", "dso,sym", "--stdio", "-q", "-F",
             "overhead,sample,dso,sym", "--percent-limit", "0"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        for row in rep.stdout.splitlines():
            parts = row.split(None, 3)
            if len(parts) < 4 or not parts[0].endswith("%"):
                continue
            n = int(parts[1])
            dso, sym = parts[2], parts[3].strip()
            total += n
            by_part[part_of(dso)] += n
            by_sym[f"{dso} {sym}"] += n
    return {"line": line, "result": result, "counters": counters, "samples": total, "parts": by_part,
            "symbols": by_sym}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.profile_live", description=__doc__.split("\n\n")[0])
    ap.add_argument("line", choices=("bulk", "small", "conns"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument(
        "--variant",
        choices=("statewall", *live.VARIANTS),
        default="statewall",
        help="a loop variant of bench.live (e.g. statewall-pywait: the wait in Python)",
    )
    ap.add_argument(
        "--syscalls",
        action="store_true",
        help="count system calls and context switches of the firewall (perf stat) instead of sampling; "
        "per connection (conns) or per packet forwarded (small, bulk)",
    )
    ap.add_argument("--opt", action="append", default=[], help="one more statewall run argument")
    args = ap.parse_args(argv)
    why = live.available()
    if why is not None or shutil.which("perf") is None:
        print(f"bench.profile_live: {why or 'no perf (Debian package linux-perf)'}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sw-perf-") as out:
        rep = profile(args.line, args.seconds, out, args.variant, args.syscalls, tuple(args.opt))
    print(f"{args.line} [{args.variant} {' '.join(args.opt)}]: {live._short(args.line, rep['result'])}")
    if args.syscalls:
        res = rep["result"]
        # perf stat counts over the measured window: per connection completed in it (conns), per
        # datagram the sink counted in it (small), per second (bulk).
        per = res.get("completed") or res.get("received") or args.seconds
        unit = "connection" if "completed" in res else "datagram" if "received" in res else "second"
        for name, n in rep["counts"].most_common():
            print(f"  {n:>12,}  {n / per:8.2f} per {unit}  {name}")
        for line in rep["counters"]:  # the firewall's own counters, over its whole run
            c = json.loads(line.split("; ", 1)[1])
            rx = sum(i["rx_packets"] for i in c["interfaces"].values())
            tx = sum(i["tx_packets"] for i in c["interfaces"].values())
            print(f"  whole run: {rx:,} packets read, {tx:,} written; fast path {c.get('fast_path')}")
        return 0
    total = max(rep["samples"], 1)
    print(f"{rep['samples']} samples of statewall run")
    for name, n in rep["parts"].most_common():
        print(f"  {100 * n / total:5.1f} %  {name}")
    print("top symbols:")
    for name, n in rep["symbols"].most_common(args.top):
        print(f"  {100 * n / total:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
