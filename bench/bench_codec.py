"""Micro-benchmark of the packet codec's hot path: decode and NAT-style rewrites, in ns per packet.

Prints numbers only (no assertions); compare with docs packet-io.md (parse ~340 ns with two bare
``Struct.unpack_from`` calls, SNAT rewrite with incremental checksums ~900 ns).
Run: ``.venv/bin/python -m bench.bench_codec`` or ``.venv/bin/python bench/bench_codec.py``.
"""

from __future__ import annotations

import statistics
import time

from statewall import craft
from statewall.checksum import internet_checksum
from statewall.packet import decode

N = 20_000
PASSES = 7


def _ns_per_packet(fn, packets) -> float:
    """Median over passes of the time per packet of ``fn(packet)``."""
    runs = []
    for _ in range(PASSES):
        t0 = time.perf_counter_ns()
        for buf in packets:
            fn(buf)
        runs.append((time.perf_counter_ns() - t0) / len(packets))
    return statistics.median(runs)


def main() -> None:
    ts = craft.tcp_options(craft.tcp_option_timestamps(1, 2))
    ack = craft.tcp_packet(4, 0x0A000001, 0xC6336407, 40000, 443, 1, 2, 0x10, 501, options=ts)
    data = craft.tcp_packet(
        4, 0x0A000001, 0xC6336407, 40000, 443, 1, 2, 0x18, 501, options=ts, payload=b"x" * 1448
    )
    syn = craft.tcp_packet(
        4,
        0x0A000001,
        0xC6336407,
        40000,
        443,
        1,
        0,
        0x02,
        64240,
        options=craft.tcp_options(
            craft.tcp_option_mss(1460),
            craft.tcp_option_sack_permitted(),
            craft.tcp_option_timestamps(1, 0),
            craft.tcp_option_wscale(7),
        ),
    )
    udp6 = craft.udp_packet(6, 0x20010DB8 << 96 | 1, 0x20010DB8 << 96 | 2, 5353, 53, b"q" * 64)
    mapped = 0xCB007109

    results = []
    acks = [bytearray(ack) for _ in range(N)]
    results.append(("decode IPv4+TCP (NOP NOP TS)", _ns_per_packet(decode, acks)))
    syns = [bytearray(syn) for _ in range(N)]
    results.append(("decode IPv4+TCP SYN (options walked)", _ns_per_packet(decode, syns)))
    udps = [bytearray(udp6) for _ in range(N)]
    results.append(("decode IPv6+UDP", _ns_per_packet(decode, udps)))

    def snat(buf):
        p = decode(buf)
        p.set_src(mapped)
        p.set_sport(1024)

    results.append(("decode + set_src + set_sport", _ns_per_packet(snat, [bytearray(ack) for _ in range(N)])))

    def snat_combined(buf):
        decode(buf).rewrite_src(mapped, 1024)

    results.append(
        (
            "decode + rewrite_src(addr, port)",
            _ns_per_packet(snat_combined, [bytearray(ack) for _ in range(N)]),
        )
    )
    pkts = [decode(bytearray(ack)) for _ in range(N)]
    results.append(
        ("rewrite_src only (decoded packet)", _ns_per_packet(lambda p: p.rewrite_src(mapped, 1024), pkts))
    )
    pkts = [decode(bytearray(ack)) for _ in range(N)]
    results.append(("set_ttl only", _ns_per_packet(lambda p: p.set_ttl(63), pkts)))
    pkts = [decode(bytearray(ack)) for _ in range(N)]
    results.append(("verify_checksums, 52-byte ACK", _ns_per_packet(lambda p: p.verify_checksums(), pkts)))
    pkts = [decode(bytearray(data)) for _ in range(N // 10)]
    results.append(
        ("verify_checksums, 1500-byte segment", _ns_per_packet(lambda p: p.verify_checksums(), pkts))
    )
    blobs = [bytes(data[20:])] * (N // 10)
    results.append(("internet_checksum, 1480 bytes", _ns_per_packet(internet_checksum, blobs)))

    width = max(len(name) for name, _ in results)
    for name, ns in results:
        print(f"{name:<{width}}  {ns:8.0f} ns/packet  {1e3 / ns:6.2f} Mpps")


if __name__ == "__main__":
    main()
