"""Where the engine's time goes, per packet: the workloads of docs/performance.md and a profile reader.

Workloads (each builds its firewall and packets outside the timing, then feeds ``Firewall.receive``):

- ``tcp``: established TCP flows through PAT, the normalizer and sequence randomization, 512-byte data
  segments and their ACKs with NOP NOP timestamp options, 1000 flows round-robin (as ``bench.run``'s
  replay line);
- ``udp``: one UDP flow through PAT, 64-byte datagrams;
- ``conn``: whole short connections (handshake, one byte from the server, FINs both ways).

``python -m bench.profile tcp`` prints the best and median µs per packet of several passes. Sampled
profiles come from py-spy (not a dependency: ``.venv/bin/pip install py-spy``)::

    py-spy record -r 2000 -f raw -o tcp.raw -- .venv/bin/python -m bench.profile tcp
    .venv/bin/python -m bench.profile --report tcp.raw

The report gives each function's share of the samples inside ``Firewall.receive`` (inclusive and
self); times per packet are those shares of the measured µs per packet. A sampler leaves the code's
speed alone, where cProfile's per-call hook would double it and favour functions with few calls.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections import Counter

from statewall import craft
from statewall.dialects.asa import parse
from statewall.engine import Firewall

from .run import BENCH_CONFIG, CLIENT_BASE, SERVER, _handshake

M = 0xFFFFFFFF
TS = craft.tcp_options(craft.tcp_option_timestamps(1, 2))


def tcp(passes: int, chunk: int = 100_000, flows: int = 1000):
    fw = Firewall(parse(BENCH_CONFIG, "bench.cfg"), seed=1)
    state = []
    for i in range(flows):
        client = CLIENT_BASE + 2 + i
        mport, dc, ds = _handshake(fw, client, 20000, 1.0)
        state.append([client, mport, dc, ds, 1001])
    mapped = 0xC0000201  # the outside interface address: BENCH_CONFIG's PAT
    k = 0
    for _ in range(passes):
        trace = []
        while len(trace) < chunk:
            st = state[k % flows]
            k += 1
            client, mport, dc, ds, cseq = st
            data = craft.tcp_packet(
                4, client, SERVER, 20000, 80, cseq, (5001 + ds) & M, 0x18, 64240, TS, payload=b"x" * 512
            )
            trace.append(("inside", data))
            cseq = (cseq + 512) & M
            ack = craft.tcp_packet(4, SERVER, mapped, 80, mport, 5001, (cseq + dc) & M, 0x10, 65535, TS)
            trace.append(("outside", ack))
            st[4] = cseq
        yield fw, trace


def udp(passes: int, chunk: int = 200_000):
    fw = Firewall(parse(BENCH_CONFIG, "bench.cfg"), seed=1)
    for _ in range(passes):
        yield (
            fw,
            [
                ("inside", craft.udp_packet(4, CLIENT_BASE + 2, SERVER, 5000, 9, b"x" * 64))
                for _ in range(chunk)
            ],
        )


def conn(passes: int, chunk: int = 5000):
    """Six packets per connection; the client varies its port as a real one does (PAT keeps it)."""
    fw = Firewall(parse(BENCH_CONFIG, "bench.cfg"), seed=1)
    mapped = 0xC0000201
    n = 0
    for _ in range(passes):
        yield fw, chunk, n, mapped
        n += chunk


def run_conn(fw, chunk: int, base: int, mapped: int) -> None:
    client = CLIENT_BASE + 2
    r = fw.receive
    for i in range(base, base + chunk):
        sport = 1024 + i % 64000
        mport, dc, ds = _handshake(fw, client, sport, 1.0)
        r(
            "outside",
            craft.tcp_packet(4, SERVER, mapped, 80, mport, 5001, (1001 + dc) & M, 0x19, 65535, payload=b"x"),
            1.0,
        )
        r("inside", craft.tcp_packet(4, client, SERVER, sport, 80, 1001, (5003 + ds) & M, 0x11, 64240), 1.0)
        r("outside", craft.tcp_packet(4, SERVER, mapped, 80, mport, 5003, (1002 + dc) & M, 0x10, 65535), 1.0)


def measure(what: str, passes: int) -> list[float]:
    """µs per packet (per connection for ``conn``, crafting included) of each pass."""
    times = []
    if what == "conn":
        for fw, chunk, base, mapped in conn(passes):
            t0 = time.perf_counter()
            run_conn(fw, chunk, base, mapped)
            times.append((time.perf_counter() - t0) / chunk * 1e6)
        return times
    for fw, trace in (tcp if what == "tcp" else udp)(passes):
        receive = fw.receive
        dropped = fw.stats["dropped"]
        gc.collect()
        gc.freeze()
        t0 = time.perf_counter()
        for iface, data in trace:
            receive(iface, data, 1.0)
        times.append((time.perf_counter() - t0) / len(trace) * 1e6)
        gc.unfreeze()
        if fw.stats["dropped"] != dropped:
            raise SystemExit(f"drops in the workload: {dict(fw.drops)}")
    return times


def report(path: str, top: int = 25) -> None:
    """Inclusive and self shares of the samples under ``Firewall.receive`` in a py-spy raw file (those
    of the timed loops only)."""
    incl: Counter = Counter()
    own: Counter = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, n = line.rsplit(" ", 1)
            frames = stack.split(";")
            start = next((i for i, fr in enumerate(frames) if fr.startswith("Firewall.receive ")), None)
            # Only the timed loops: not the handshakes that set the tcp workload up.
            if start is None or not any(
                fr.startswith(("measure ", "run_conn ")) for fr in frames[start - 2 : start]
            ):
                continue
            count = int(n)
            total += count
            names = [fr.split(" (")[0] for fr in frames[start:]]
            own[names[-1]] += count
            for name in set(names):
                incl[name] += count
    if not total:
        raise SystemExit("no samples inside Firewall.receive")
    print(f"{total} samples inside Firewall.receive")
    print(f"{'function':40} {'inclusive':>9} {'self':>6}")
    for name, count in incl.most_common(top):
        print(f"{name:40} {100 * count / total:8.1f}% {100 * own[name] / total:5.1f}%")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.profile", description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="?", choices=("tcp", "udp", "conn"), default="tcp")
    ap.add_argument("--passes", type=int, default=6)
    ap.add_argument("--report", metavar="RAW", help="read a py-spy raw profile instead")
    args = ap.parse_args(argv)
    if args.report:
        report(args.report)
        return 0
    times = measure(args.what, args.passes)
    unit = "µs/connection (6 packets, crafting included)" if args.what == "conn" else "µs/packet"
    print(f"{args.what}: best {min(times):.2f}, median {statistics.median(times):.2f} {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
