"""How long a ``--state-interval`` write stops the forwarding loop, with N connections (engine only).

`python -m bench.state_pause [--connections 10000]`: N embryonic PAT connections (as docs/state.md's
figures), then the loop thread's pause for one write, measured both ways: the write made in the loop
(``save_state``: snapshot, pickle, write, fsync, rename) and the background writer
(``StateWriter.start``: a fork; the child pickles and writes). The child's own time to finish the file
is printed too. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from statewall.commands.run import StateWriter, save_state
from statewall.dialects.asa import parse
from statewall.engine import Firewall

from .pat import syn
from .run import BENCH_CONFIG


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    fw = Firewall(parse(BENCH_CONFIG, "bench.cfg"), seed=1)
    now = 100.0
    for i in range(args.connections):
        fw.receive("inside", syn(i), now)
    print(f"{len(fw.conns)} connections")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "fw.state")
        for _ in range(args.runs):
            t0 = time.perf_counter()
            save_state(fw, path)
            t1 = time.perf_counter()
            print(f"in the loop:   the loop stops {1000 * (t1 - t0):8.1f} ms ({os.path.getsize(path)} bytes)")
        writer = StateWriter(fw, path)
        for _ in range(args.runs):
            os.unlink(path)
            t0 = time.perf_counter()
            writer.start()
            t1 = time.perf_counter()
            writer.wait()
            t2 = time.perf_counter()
            print(
                f"in a child:    the loop stops {1000 * (t1 - t0):8.1f} ms "
                f"(the child's file complete after {1000 * (t2 - t0):.0f} ms, {os.path.getsize(path)} bytes)"
            )


if __name__ == "__main__":
    main()
