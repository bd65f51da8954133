"""Live benchmarks for `make bench`: statewall and the kernel side by side in the same namespace topology.

Two labs with the standard topology (``statewall.lab.topology``: inside host - firewall namespace -
outside host, as ``statewall lab run smoke`` builds it), measured alternately so that a busy machine
hurts both alike:

- ``kernel``: the firewall namespace forwards by itself. Its steering rules into the TUNs are removed,
  it gets the firewall's addresses, and nftables does what the ASA policy does: conntrack (only
  established/related and new inside -> outside TCP/UDP from the inside network pass: the access
  list) and masquerade to the outside interface (PAT).
- ``statewall``: ``statewall run`` on the TUNs with offloads (TSO super-packets), an ASA 9.x policy with
  PAT, an access list on inside, and the defaults that make every TCP connection go through the
  normalizer and sequence-number randomization. Started afresh for every measurement.

Measurements (each returns a dict; the caller takes medians):

- ``bulk``: one iperf3 TCP stream inside -> outside for 8 s; bits/s the receiver counted.
- ``small``: 64-byte UDP datagrams from a C ``sendmmsg`` flooder (pinned to CPU 0) through one
  established flow (the workers line: one flow from each of 16 inside hosts, rotating); the rate is what
  an nftables counter at the outside host's prerouting hook (priority -300, before its own conntrack; it
  drops them) counted in a steady-state window. The forwarder works on CPU 1: statewall's process is
  pinned there, and the kernel gets RPS to CPU 1 on the firewall's inside veth (else it forwards in the
  flooder's softirq on CPU 0 and CPU 1 idles). Two or more ``--workers`` are not pinned: the scheduler
  spreads them over both CPUs, beside the flooder.
- ``conns``: new TCP connections per second: a C epoll client keeps 32 short connections in flight
  against a C server that writes one byte and closes; completed connections in the window / window.

Machine-wide CPU use (``/proc/stat``) and, for statewall, its process's CPU are recorded with each
measurement: on a 2-vCPU machine the endpoints and the forwarder share the CPUs, which is often what
limits. The C tools are compiled with ``gcc -O2`` into the lab's private directory at bench time.
Everything runs under timeouts; the labs remove their namespaces and processes on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from statewall.lab.netns import Lab, LabError, Namespace, wait_for
from statewall.lab.topology import INSIDE, OUTSIDE, FirewallTopology

C_DIR = Path(__file__).resolve().parent / "c"
TOOLS = ("udpflood", "connsrv", "connload")

IPERF_PORT = 5201
CONN_PORT = 8080
SINK_PORT = 9
CONN_CONCURRENCY = 32

STATEWALL_CONFIG = f"""\
: make bench: PAT to the outside address, an access list on inside, normalizer and randomization on
ASA Version 9.8(1)
hostname bench
interface Ethernet0
 nameif outside
 security-level 0
 ip address {OUTSIDE.firewall_ip} 255.255.255.0
interface Ethernet1
 nameif inside
 security-level 100
 ip address {INSIDE.firewall_ip} 255.255.255.0
access-list inside_in extended permit tcp 192.168.1.0 255.255.255.0 any
access-list inside_in extended permit udp 192.168.1.0 255.255.255.0 any
access-group inside_in in interface inside
global (outside) 1 interface
nat (inside) 1 192.168.1.0 255.255.255.0
"""

# The same policy for the kernel: stateful forwarding with an access list, masquerade (PAT) outside.
KERNEL_RULESET = """\
table ip swbench {
  chain filter_forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ct state invalid drop
    iifname "v-inside" oifname "v-outside" ip saddr 192.168.1.0/24 meta l4proto { tcp, udp } accept
  }
  chain nat_postrouting {
    type nat hook postrouting priority 100; policy accept;
    oifname "v-outside" masquerade
  }
}
"""

# At the outside host: count and drop the flood before anything else looks at it.
SINK_RULESET = f"""\
table ip swsink {{
  counter hits {{ }}
  chain count_drop {{
    type filter hook prerouting priority -300; policy accept;
    udp dport {SINK_PORT} counter name hits drop
  }}
}}
"""


def compile_tools(workdir: str) -> dict[str, str]:
    """Compile the C tools into ``workdir``; returns name -> path (empty when gcc is missing)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return {}
    tools = {}
    for name in TOOLS:
        out = os.path.join(workdir, name)
        subprocess.run([gcc, "-O2", "-o", out, str(C_DIR / f"{name}.c")], check=True, timeout=120)
        tools[name] = out
    return tools


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _proc_cpu(pid: int | None) -> int:
    """utime + stime of ``pid`` and its threads, and of its running children (``statewall run --workers``:
    the workers), in jiffies (0 when gone)."""
    if pid is None:
        return 0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    parts = stat.rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12]) + sum(_proc_cpu(int(c)) for c in children)


def _family(pid: int) -> list[int]:
    """``pid`` and its children's pids, recursively (``statewall run --workers``: the supervisor and its
    workers, forked before the bench pins anything)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(p for c in children for p in _family(int(c)))]


# A profiler for the measured window (bench/profile_live.py sets it): called with statewall's pid at
# the start of each measurement, it returns a function that stops it. None: no profiling (make bench).
PROFILER = None


class CpuMeter:
    """CPU used between ``start()`` and ``stop()``: machine-wide (in CPUs) and by one process (cores)."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid
        self.hz = os.sysconf("SC_CLK_TCK")
        self._profiling = None

    def start(self) -> None:
        if PROFILER is not None and self.pid is not None:
            self._profiling = PROFILER(self.pid)
        self.t0 = time.monotonic()
        self.busy0, self.total0 = _cpu_times()
        self.proc0 = _proc_cpu(self.pid)

    def stop(self) -> dict:
        if self._profiling is not None:
            self._profiling()
        wall = time.monotonic() - self.t0
        busy, total = _cpu_times()
        ncpu = os.cpu_count() or 1
        res = {"machine_cpus_busy": round(ncpu * (busy - self.busy0) / max(total - self.total0, 1), 2)}
        if self.pid is not None:
            res["firewall_cores"] = round((_proc_cpu(self.pid) - self.proc0) / self.hz / wall, 2)
        return res


class LiveBench:
    """One lab: the standard topology with either the kernel or ``statewall run`` forwarding."""

    def __init__(
        self,
        lab: Lab,
        mode: str,
        tools: dict[str, str],
        extra: tuple[str, ...] = (),
        *,
        multi_queue: bool = False,
    ) -> None:
        assert mode in ("kernel", "statewall")
        self.lab = lab
        self.mode = mode
        self.extra = list(extra)  # more ``statewall run`` options (a loop variant)
        self.tools = tools
        self.topo = FirewallTopology(lab, (INSIDE, OUTSIDE), multi_queue=multi_queue)
        self.workers = 1  # statewall run --workers (multi_queue TUNs for more than one)
        self.sources: list[str] = []  # the connection line's inside hosts (the inside host's address)
        self.config = os.path.join(lab.workdir(), "bench.cfg")
        self.stopped: list[str] = []  # statewall's "stopped; {counters}" line of each measurement
        # The kernel's RPS mask on the firewall's veths ("0": none, the kernel forwards in the sender's
        # softirq; KERNEL_VARIANTS: over every CPU).
        self.rps = "0"

    @property
    def inside(self) -> Namespace:
        return self.topo.host("inside")

    @property
    def outside(self) -> Namespace:
        return self.topo.host("outside")

    @property
    def fw(self) -> Namespace:
        assert self.topo.fw is not None
        return self.topo.fw

    def build(self) -> LiveBench:
        topo = self.topo.build()
        with open(self.config, "w") as f:
            f.write(STATEWALL_CONFIG)
        if self.mode == "kernel":
            fw = self.fw
            # Forward by the main table instead of steering into the TUNs (rules 1000 + i).
            for i in range(len(topo.sides)):
                fw.run(["ip", "rule", "del", "pref", str(1000 + i)])
            fw.addr(INSIDE.veth, INSIDE.firewall)
            fw.addr(OUTSIDE.veth, OUTSIDE.firewall)
            fw.run(["nft", "-f", "-"], input=KERNEL_RULESET, timeout=10)
            if self.rps != "0":
                for side in (INSIDE, OUTSIDE):
                    fw.run(["sh", "-c", f"echo {self.rps} > /sys/class/net/{side.veth}/queues/rx-0/rps_cpus"])
        # Short connections: the client may use every port and reuse them at once; the server queues.
        self.inside.sysctl("net.ipv4.ip_local_port_range", "1024 65535")
        self.inside.sysctl("net.ipv4.tcp_tw_reuse", 1)
        self.outside.sysctl("net.core.somaxconn", 4096)
        self.outside.sysctl("net.ipv4.tcp_max_syn_backlog", 8192)
        self.outside.run(["nft", "-f", "-"], input=SINK_RULESET, timeout=10)
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.outside.popen(["iperf3", "-s", "-p", str(IPERF_PORT)], **quiet)
        if "connsrv" in self.tools:
            self.outside.popen([self.tools["connsrv"], str(CONN_PORT)], **quiet)
        for port in (IPERF_PORT, CONN_PORT) if "connsrv" in self.tools else (IPERF_PORT,):
            wait_for(lambda p=port: self._listening(p), timeout=10, what=f"a server on port {port}")
        return self

    def _listening(self, port: int) -> bool:
        res = self.outside.run(["ss", "-Hltn", f"sport = :{port}"], check=False, timeout=10)
        return bool(res.stdout.strip())

    @contextlib.contextmanager
    def firewall(self):
        """The forwarder for one measurement: yields statewall's pid (None for the kernel)."""
        if self.mode == "kernel":
            # Connections of the previous measurement would linger in TIME_WAIT for minutes (best effort:
            # without the conntrack tool they just take table space).
            self.fw.run(["conntrack", "-F"], check=False, timeout=10)
            yield None
            return
        proc = self.topo.start_firewall(
            self.config, extra=["--log-format", "none", "--workers", str(self.workers), *self.extra]
        )
        try:
            yield proc.pid
        finally:
            self.topo.stop_firewall()
            self.stopped += [
                ln for ln in self.topo.firewall_output if ln.startswith("statewall run: stopped")
            ]

    def bulk(self, seconds: int = 8) -> dict:
        with self.firewall() as pid:
            meter = CpuMeter(pid)
            meter.start()
            res = self.inside.run(
                [
                    "timeout", str(seconds + 15), "iperf3", "-c", OUTSIDE.host, "-p", str(IPERF_PORT),
                    "-t", str(seconds), "-J",
                ],
                check=False,
                timeout=seconds + 30,
            )  # fmt: skip
            cpu = meter.stop()
        try:
            report = json.loads(res.stdout)
        except json.JSONDecodeError:
            return {"error": (res.stdout + res.stderr).strip()[-300:], **cpu}
        if "error" in report:
            return {"error": report["error"], **cpu}
        end = report["end"]
        return {
            "bits_per_second": end["sum_received"]["bits_per_second"],
            "retransmits": end["sum_sent"].get("retransmits"),
            "seconds": end["sum_received"]["seconds"],
            **cpu,
        }

    def _sink_count(self) -> int:
        res = self.outside.run(["nft", "-j", "list", "counter", "ip", "swsink", "hits"], timeout=10)
        for item in json.loads(res.stdout)["nftables"]:
            if "counter" in item:
                return int(item["counter"]["packets"])
        raise LabError("no counter in the sink's ruleset")

    def small(self, seconds: float = 5.0, payload: int = 64) -> dict:
        if "udpflood" not in self.tools:
            return {"error": "no C compiler for the flooder"}
        two = (os.cpu_count() or 1) >= 2
        rps = f"/sys/class/net/{INSIDE.veth}/queues/rx-0/rps_cpus"
        with self.firewall() as pid:
            # One forwarding process goes to CPU 1 (with its workers: --workers 1 forks one); two or more
            # workers are left to the scheduler on both CPUs, beside the flooder (there is no free core).
            if two and pid is not None and self.workers == 1:
                for p in _family(pid):
                    pin_one = ["taskset", "-a", "-p", "-c", "1", str(p)]
                    subprocess.run(pin_one, capture_output=True, timeout=10)
            if two and pid is None:
                self.fw.run(["sh", "-c", f"echo 2 > {rps}"], timeout=10)
            pin = ["taskset", "-c", "0"] if two else []
            flood = self.inside.popen(
                [
                    *pin, self.tools["udpflood"], OUTSIDE.host, str(SINK_PORT), str(seconds + 2),
                    str(payload), *([",".join(self.sources)] if self.sources else []),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            try:
                time.sleep(1.0)  # the flow exists and queues are in their steady state
                meter = CpuMeter(pid)
                c0, t0 = self._sink_count(), time.monotonic()
                meter.start()
                time.sleep(seconds)
                c1, t1 = self._sink_count(), time.monotonic()
                cpu = meter.stop()
                out, _ = flood.communicate(timeout=seconds + 15)
            finally:
                if flood.poll() is None:
                    flood.kill()
                    flood.wait(5)
                if two and pid is None:
                    self.fw.run(["sh", "-c", f"echo {self.rps} > {rps}"], timeout=10)
        words = out.split()
        sent = int(words[1]) if len(words) > 1 and words[0] == "sent" else None
        return {"pps": (c1 - c0) / (t1 - t0), "received": c1 - c0, "flooder_sent": sent, **cpu}

    def conns(self, seconds: float = 5.0, concurrency: int = CONN_CONCURRENCY) -> dict:
        if "connload" not in self.tools:
            return {"error": "no C compiler for the load tool"}
        with self.firewall() as pid:
            meter = CpuMeter(pid)
            meter.start()
            res = self.inside.run(
                [
                    "timeout", str(int(seconds) + 15), self.tools["connload"], OUTSIDE.host, str(CONN_PORT),
                    str(seconds), str(concurrency), *([",".join(self.sources)] if self.sources else []),
                ],
                check=False,
                timeout=seconds + 30,
            )  # fmt: skip
            cpu = meter.stop()
        words = res.stdout.split()
        if len(words) < 10 or words[0] != "completed":
            return {"error": (res.stdout + res.stderr).strip()[-300:], **cpu}
        fields = dict(zip(words[0::2], words[1::2]))
        completed = int(fields["completed"])
        return {
            "per_second": completed / seconds,
            "completed": completed,
            "late": int(fields["late"]),
            "failed": int(fields["failed"]),
            "unfinished": int(fields["unfinished"]),
            **cpu,
        }


def available() -> str | None:
    """Why the live benchmarks cannot run here (None when they can)."""
    if os.geteuid() != 0:
        return "not root"
    for cmd in ("ip", "nft", "iperf3", "taskset", "ss"):
        if shutil.which(cmd) is None:
            return f"{cmd} is missing"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


# Variants of ``statewall run`` that ``run_live(variants=...)`` can measure next to the default, in the
# same run: the loop's wait in Python around the C pump (before the compiled loop), the compiled loop
# polling 200 µs before it sleeps, its TUN writes one writev each instead of the default io_uring
# batches of 32, and its TUN reads through io_uring (a multishot read per TUN, 64 buffers) instead of
# epoll_wait and a read() per packet (docs/performance.md: 8 buffers, and --uring-taskrun coop and
# defer, were measured as statewall-ringreads8, -ringreads8-defer, -ringreads-coop and -ringreads-defer,
# and did no better).
VARIANTS = {
    "statewall-pywait": ("--python-wait",),
    "statewall-poll200": ("--poll-us", "200"),
    "statewall-writev": ("--uring", "0"),
    "statewall-ringreads": ("--uring-reads", "64"),
    # The firewall on CPU 1, the kernel's work for what it writes on CPU 0 (RPS on its TUNs); then also
    # polling the TUNs for 1 ms after traffic before sleeping (the firewall's CPU is its own).
    "statewall-steer": ("--cpu", "1", "--steer-cpus", "0"),
    "statewall-steer-poll": ("--cpu", "1", "--steer-cpus", "0", "--poll-us", "1000"),
    # One Python-path packet per return of the compiled wait (before session 9's --collect 16 default).
    "statewall-nocollect": ("--collect", "0"),
}
# The kernel with RPS on the firewall namespace's veths: each forwarded packet's work on a CPU of the
# flow's hash, over every CPU, instead of in the sending host's softirq (the fair reference for
# statewall-steer).
KERNEL_VARIANTS = {"kernel-rps": lambda: format((1 << (os.cpu_count() or 1)) - 1, "x")}


def make_bench(lab: Lab, mode: str, tools: dict[str, str]) -> LiveBench:
    """The LiveBench of a mode of ``run_live``: kernel, statewall, or a variant of either."""
    kernel = mode == "kernel" or mode in KERNEL_VARIANTS
    bench = LiveBench(lab, "kernel" if kernel else "statewall", tools, VARIANTS.get(mode, ()))
    if mode in KERNEL_VARIANTS:
        bench.rps = KERNEL_VARIANTS[mode]()
    return bench.build()


def run_live(
    runs: int,
    *,
    bulk_seconds: int = 8,
    seconds: float = 5.0,
    say=print,
    variants: tuple[str, ...] = (),
    tests: tuple[str, ...] = ("bulk", "small", "conns"),
) -> dict:
    """Every live measurement (of ``tests``) ``runs`` times, kernel and statewall (and each of
    ``variants``, names of ``VARIANTS``) alternating; raw results per mode."""
    modes = ("kernel", "statewall", *variants)
    results: dict[str, dict[str, list]] = {m: {"bulk": [], "small": [], "conns": []} for m in modes}
    with contextlib.ExitStack() as stack:
        labs = {m: stack.enter_context(Lab()) for m in modes}
        tools = compile_tools(labs["kernel"].workdir())
        benches = {m: make_bench(labs[m], m, tools) for m in modes}
        for r in range(runs):
            for test in tests:
                for mode, bench in benches.items():
                    if test == "bulk":
                        res = bench.bulk(bulk_seconds)
                    elif test == "small":
                        res = bench.small(seconds)
                    else:
                        res = bench.conns(seconds)
                    results[mode][test].append(res)
                    say(f"  run {r + 1}/{runs} {test:5} {mode:17} {_short(test, res)}")
        for m in modes[1:]:
            results[m]["counters"] = benches[m].stopped
    return results


WORKER_SOURCES = [f"192.168.1.{20 + i}" for i in range(16)]


def run_workers(
    runs: int, *, seconds: float = 5.0, counts=(1, 2), say=print, tests=("conns", "small")
) -> dict:
    """The ``statewall run --workers`` lines from 16 inside hosts (the steering key): new TCP connections
    per second (``conns``) and 64-byte UDP datagrams per second, one flow per host (``small``: a single
    flow stays on one worker by design), with 1 and 2 workers and the kernel, alternating; raw results per
    mode and test."""
    modes = ("kernel", *(f"workers={n}" for n in counts))
    results: dict[str, dict[str, list]] = {m: {t: [] for t in tests} for m in modes}
    with Lab() as klab, Lab() as slab:
        tools = compile_tools(klab.workdir())
        kernel = LiveBench(klab, "kernel", tools).build()
        sw = LiveBench(slab, "statewall", tools, multi_queue=True).build()
        for bench in (kernel, sw):
            bench.sources = WORKER_SOURCES
            for a in WORKER_SOURCES:
                bench.inside.addr("eth0", f"{a}/24")
            # 16 hosts behind one PAT address reuse mapped ports within the server's TIME_WAIT (60 s), and
            # a SYN whose (randomized) sequence number is below the old connection's is not taken: the
            # server keeps no TIME_WAIT here, so that the line measures the forwarder, not that wait.
            bench.outside.sysctl("net.ipv4.tcp_max_tw_buckets", 0)
        for r in range(runs):
            for test in tests:
                for mode in modes:
                    bench = kernel if mode == "kernel" else sw
                    if mode != "kernel":
                        sw.workers = int(mode.split("=")[1])
                    res = bench.conns(seconds) if test == "conns" else bench.small(seconds)
                    results[mode][test].append(res)
                    say(f"  run {r + 1}/{runs} {test:5} {mode:9} {_short(test, res)}")
        results["counters"] = sw.stopped  # type: ignore[assignment]
    return results


def _short(test: str, res: dict) -> str:
    if "error" in res:
        return f"error: {res['error']}"
    cpu = f" (machine {res['machine_cpus_busy']} CPUs busy" + (
        f", firewall {res['firewall_cores']} cores)" if "firewall_cores" in res else ")"
    )
    if test == "bulk":
        return f"{res['bits_per_second'] / 1e9:.2f} Gbit/s, {res['retransmits']} retransmits" + cpu
    if test == "small":
        return f"{res['pps']:,.0f} pkt/s (flooder sent {res.get('flooder_sent') or 0:,})" + cpu
    return f"{res['per_second']:,.0f} conn/s ({res['failed']} failed, {res['late']} late)" + cpu


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.live --variants NAME,... [--runs N]``: the live lines, kernel, statewall and the
    variants named (of ``VARIANTS``) alternating, saved to bench/results/ as ``bench.run`` saves them."""
    import argparse
    import datetime as _dt

    from bench.run import RESULTS, machine

    ap = argparse.ArgumentParser(prog="bench.live", description=main.__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="", help="comma-separated names of VARIANTS (default: none)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--lines", default="bulk,small,conns", help="which lines (default: bulk,small,conns)")
    ap.add_argument("--bulk-seconds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = [v for v in variants if v not in VARIANTS and v not in KERNEL_VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {[*VARIANTS, *KERNEL_VARIANTS]}")
    why = available()
    if why is not None:
        print(f"bench.live: {why}")
        return 2
    result = {
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "args": {**vars(args), "only": "live", "variants": list(variants)},
        "loadavg_start": os.getloadavg(),
    }
    tests = tuple(t for t in args.lines.split(",") if t)
    if not set(tests) <= {"bulk", "small", "conns"}:
        ap.error(f"--lines: bulk, small, conns; not {args.lines}")
    result["live"] = run_live(
        args.runs, bulk_seconds=args.bulk_seconds, seconds=args.seconds, variants=variants, tests=tests
    )
    result["loadavg_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (result["time"].replace(":", "").replace("+0000", "Z") + ".json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
