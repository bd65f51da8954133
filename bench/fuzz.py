"""`make fuzz`: millions of fuzzed packets through the three kinds of configuration.

The same seeded traffic and the same independent header checker as the suite's bounded fuzz test
(tests/fuzzing.py, tests/header_check.py), for as long as asked. For each configuration it prints
the packets sent, forwarded and dropped, every exception (anything raised out of the engine, and every
``internal-error`` drop) and every packet forwarded although the checker says any firewall must drop
it, grouped by the checker's rule with one example packet. Both counts must be zero: the exit status
is 1 when either is not (0 otherwise).

Run: ``make fuzz`` (2 000 000 packets per configuration, a few minutes each) or
``.venv/bin/python -m bench.fuzz --packets 5000000 --seed 7 --config asa-pat-ftp-tcpmap``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzzing import CONFIGS, fuzz  # noqa: E402 - the tests' modules, found above


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=2_000_000, help="packets per configuration")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--config", action="append", choices=list(CONFIGS), help="only these (repeatable)")
    args = ap.parse_args(argv)
    bad = 0
    for name in args.config or list(CONFIGS):
        res = fuzz(name, args.packets, seed=args.seed)
        print(res.summary(), flush=True)
        bad += len(res.exceptions) + sum(res.findings.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
