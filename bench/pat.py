"""New connections per second through PAT as one address's ports fill up (engine time only).

`python -m bench.pat`: the ASA's PAT to the interface address, every new connection from another
inside host with the same source port, so each one after the first needs the allocator to find a free
port. The table is filled to each level with connections that stay open, then a batch of new
connections is timed. A free-port structure whose cost does not grow with use keeps the rate flat;
a scan for the next free port falls with the fill. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import gc
import time

from statewall import craft
from statewall.dialects.asa import parse
from statewall.engine import Firewall

from .run import BENCH_CONFIG

PORTS = 65535 - 1024 + 1  # the ephemeral class one mapped address offers
SPORT = 40000


def syn(i: int) -> bytes:
    src = (10 << 24) | (i + 2)  # 10.0.0.2 upwards: a host per connection (10.0.0.0/16 is inside)
    return bytes(
        craft.tcp_packet(4, src, (198 << 24) | (51 << 16) | (100 << 8) | 7, SPORT, 80, 1000, 0, 0x02, 64240)
    )


def rate_at(fill: int, batch: int) -> float:
    fw = Firewall(parse(BENCH_CONFIG, "bench.cfg"))
    now = 1000.0
    receive = fw.receive
    for i in range(fill):
        receive("inside", syn(i), now)
    packets = [syn(fill + i) for i in range(batch)]
    gc.collect()
    t0 = time.perf_counter()
    for p in packets:
        receive("inside", p, now)
    dt = time.perf_counter() - t0
    assert len(fw.conns) == fill + batch, len(fw.conns)
    return batch / dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=400)
    args = ap.parse_args(argv)
    print(f"{'ports in use':>14} {'fill':>6} {'new conn/s':>11}")
    for frac in (0.0, 0.5, 0.9, 0.98, 0.99):
        fill = min(int(PORTS * frac), PORTS - args.batch)
        r = rate_at(fill, args.batch)
        print(f"{fill:>14} {fill / PORTS:>6.1%} {r:>11.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
