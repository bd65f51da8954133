"""Where the engine's time goes, per packet: the workloads of docs/performance.md and a profile reader.

Workloads (each builds its firewall and packets outside the timing, then feeds ``Firewall.receive``):

- ``tcp``: established TCP flows through PAT, the normalizer and sequence randomization, 512-byte data
  segments and their ACKs with NOP NOP timestamp options, 1000 flows round-robin (as ``bench.run``'s
  replay line);
- ``udp``: one UDP flow through PAT, 64-byte datagrams;
- ``conn``: whole short connections (handshake, one byte from the server, FINs both ways), one host,
  packets crafted inside the timing;
- ``newconn``: the new-connection line without the crafting: 8 packets per connection (SYN, SYN-ACK,
  ACK, a data segment each way, the server's FIN, the client's FIN/ACK, the last ACK) from 4 hosts
  with random ephemeral ports (so PAT ports collide between hosts), 1000 connections per simulated
  second with ``advance`` every 50 connections; 32 000 connections untimed first, so that the
  translations expire 30 s after their last connection as they do in ``statewall run`` (the steady
  state: about 25 000 translations held). The packets are recorded once through a firewall with the
  same seed, then replayed through a fresh one: the engine is deterministic, so every packet is
  forwarded as recorded (checked).

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


NEWCONN_HOSTS = 4
NEWCONN_RATE = 1000.0  # connections per simulated second
NEWCONN_ADVANCE = 50  # connections between advance() calls
NEWCONN_WARMUP = 32_000  # untimed: past the 30 s PAT translation timeout


def _record_newconn(total: int, seed: int = 1) -> tuple[list, int]:
    """The operations of ``total`` short connections: ("r", iface, bytes, now) or ("a", now), and the
    number of packets the firewall sent for them."""
    import random

    fw = Firewall(parse(BENCH_CONFIG, "bench.cfg"), seed=seed)
    rng = random.Random(seed)
    ops: list = []
    sent = 0
    opt = craft.tcp_option_mss(1460)

    def rx(iface, data, now):
        nonlocal sent
        ops.append(("r", iface, bytes(data), now))
        res = fw.receive(iface, data, now)
        if fw.stats["dropped"]:
            raise SystemExit(f"drops while recording: {dict(fw.drops)}")
        sent += len(res.packets)
        return res.packets

    for i in range(total):
        now = 1.0 + i / NEWCONN_RATE
        if i % NEWCONN_ADVANCE == 0:
            ops.append(("a", now))
            sent += len(fw.advance(now).packets)
        client = CLIENT_BASE + 2 + i % NEWCONN_HOSTS
        sport = rng.randrange(32768, 61000)
        syn = craft.tcp_packet(4, client, SERVER, sport, 80, 1000, 0, 0x02, 64240, options=opt)
        out = rx("inside", syn, now)[0][1]
        mapped = int.from_bytes(out[12:16], "big")
        mport = int.from_bytes(out[20:22], "big")
        dc = (int.from_bytes(out[24:28], "big") - 1000) & M
        synack = craft.tcp_packet(4, SERVER, mapped, 80, mport, 5000, (1001 + dc) & M, 0x12, 65535, opt)
        back = rx("outside", synack, now)[0][1]
        ds = (int.from_bytes(back[24:28], "big") - 5000) & M
        rx("inside", craft.tcp_packet(4, client, SERVER, sport, 80, 1001, (5001 + ds) & M, 0x10, 64240), now)
        req = b"GET / HTTP/1.0\r\n\r\n"
        rx(
            "inside",
            craft.tcp_packet(4, client, SERVER, sport, 80, 1001, (5001 + ds) & M, 0x18, 64240, payload=req),
            now,
        )
        c = 1001 + len(req)
        rx(
            "outside",
            craft.tcp_packet(
                4, SERVER, mapped, 80, mport, 5001, (c + dc) & M, 0x18, 65535, payload=b"y" * 200
            ),
            now,
        )
        rx("outside", craft.tcp_packet(4, SERVER, mapped, 80, mport, 5201, (c + dc) & M, 0x11, 65535), now)
        rx("inside", craft.tcp_packet(4, client, SERVER, sport, 80, c, (5202 + ds) & M, 0x11, 64240), now)
        rx(
            "outside",
            craft.tcp_packet(4, SERVER, mapped, 80, mport, 5202, (c + 1 + dc) & M, 0x10, 65535),
            now,
        )
    return ops, sent


def newconn(passes: int, chunk: int = 4000, warmup: int = NEWCONN_WARMUP):
    """A fresh firewall, the recorded operations (``warmup`` connections, then ``chunk`` per pass),
    the number of packets they send and the operations' pass boundaries (the first: the warm-up)."""
    ops, sent = _record_newconn(warmup + chunk * passes)
    bounds = [0]
    n = 0
    for j, op in enumerate(ops):  # boundaries: the first operation of every chunk-th connection
        if op[0] == "r" and op[1] == "inside" and op[2][33] & 0x12 == 0x02:  # a SYN from inside
            if n >= warmup and (n - warmup) % chunk == 0:
                bounds.append(j)
            n += 1
    bounds.append(len(ops))
    yield Firewall(parse(BENCH_CONFIG, "bench.cfg"), seed=1), ops, sent, bounds


def warm_up(fw, ops) -> int:
    """Run the recorded ``ops`` of the ``newconn`` workload through ``fw``, untimed: the packets out."""
    got = 0
    for op in ops:
        if op[0] == "r":
            got += len(fw.receive(op[1], bytearray(op[2]), op[3]).packets)
        else:
            got += len(fw.advance(op[1]).packets)
    return got


def measure_newconn(passes: int, chunk: int = 4000) -> list[float]:
    """µs per connection (8 packets, advance included) of each pass of ``chunk`` connections."""
    fw, ops, sent, bounds = next(newconn(passes, chunk))
    receive, advance = fw.receive, fw.advance
    times = []
    got = warm_up(fw, ops[: bounds[1]])
    gc.collect()
    gc.freeze()
    for a, b in zip(bounds[1:], bounds[2:]):
        part = [(op[1], bytearray(op[2]), op[3]) if op[0] == "r" else (None, None, op[1]) for op in ops[a:b]]
        t0 = time.perf_counter()
        for iface, data, now in part:
            if iface is None:
                got += len(advance(now).packets)
            else:
                got += len(receive(iface, data, now).packets)
        times.append((time.perf_counter() - t0) / chunk * 1e6)
    gc.unfreeze()
    if fw.stats["dropped"] or got != sent:
        raise SystemExit(f"replay differs from the recording: {got} sent of {sent}, drops {dict(fw.drops)}")
    return times


def measure(what: str, passes: int) -> list[float]:
    """µs per packet (per connection for ``conn``, crafting included) of each pass."""
    if what == "newconn":
        return measure_newconn(passes)
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
            start = next(
                (
                    i
                    for i, fr in enumerate(frames)
                    if fr.startswith(("Firewall.receive ", "Firewall.ingress "))
                ),
                None,
            )
            # Only the timed loops: not the handshakes that set the tcp workload up.
            if start is None or not any(
                fr.startswith(("measure ", "run_conn ", "measure_newconn "))
                for fr in frames[start - 2 : start]
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
    ap.add_argument("what", nargs="?", choices=("tcp", "udp", "conn", "newconn"), default="tcp")
    ap.add_argument("--passes", type=int, default=6)
    ap.add_argument("--report", metavar="RAW", help="read a py-spy raw profile instead")
    args = ap.parse_args(argv)
    if args.report:
        report(args.report)
        return 0
    times = measure(args.what, args.passes)
    unit = {
        "conn": "µs/connection (6 packets, crafting included)",
        "newconn": "µs/connection (8 packets, no crafting)",
    }.get(args.what, "µs/packet")
    print(f"{args.what}: best {min(times):.2f}, median {statistics.median(times):.2f} {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
