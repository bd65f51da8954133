"""``statewall run -c CONFIG --bind IFACE=DEVICE[@NETNS] ...``: the firewall inline on TUN devices.

Each ``--bind`` attaches one firewall interface (the configuration's ``nameif``) to a TUN device,
created if it does not exist, in network namespace NETNS (a name from ``ip netns`` or a path; default:
the namespace ``statewall`` runs in). By default the TUNs carry the virtio-net header with TSO/USO
offloads, so super-packets of up to 64 KB pass as one; ``--no-offload`` uses plain ``IFF_TUN``.
Events go to ``--log`` (default stderr) as ASA syslog lines or JSON lines. The command prints one
``statewall run: forwarding ...`` line once every TUN is open, runs until SIGINT or SIGTERM, then
prints its interface counters and the ``show asp drop`` table and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO

from ..events import Event
from . import EXIT_OK, UsageError, add_config_argument, load_config


def parse_bind(text: str) -> tuple[str, str, str | None]:
    """``IFACE=DEVICE[@NETNS]`` -> (iface, device, netns or None)."""
    iface, sep, rest = text.partition("=")
    if not sep or not iface or not rest:
        raise UsageError(f"--bind {text!r}: expected IFACE=DEVICE[@NETNS]")
    device, _, netns = rest.partition("@")
    if not device or len(device.encode()) > 15:
        raise UsageError(f"--bind {text!r}: device name must be 1 to 15 bytes")
    return iface, device, netns or None


def _event_writer(fmt: str, fp: IO[str], hostname: str):
    if fmt == "none":
        return None
    if fmt == "json":
        from ..logfmt.jsonl import event_to_json

        def write(events: list[Event]) -> None:
            for ev in events:
                fp.write(event_to_json(ev))
                fp.write("\n")

        return write
    from ..logfmt.asa import format_event

    def write_asa(events: list[Event]) -> None:
        for ev in events:
            for line in format_event(ev, hostname=hostname):
                fp.write(line)
                fp.write("\n")

    return write_asa


def run(args: argparse.Namespace) -> int:
    # Imported here so that `statewall --help` works where the live path cannot (no /dev/net/tun).
    from ..engine import Firewall
    from ..live.loop import Loop, Port
    from ..live.tun import open_tun

    policy = load_config(args.config)
    binds = [parse_bind(b) for b in args.bind]
    names = [b[0] for b in binds]
    for name in names:
        if name not in policy.interfaces:
            known = ", ".join(sorted(policy.interfaces)) or "none"
            raise UsageError(f"--bind {name}: the configuration has no interface {name!r} (it has: {known})")
    if len(set(names)) != len(names):
        raise UsageError("each interface can be bound once")
    unbound = sorted(set(policy.interfaces) - set(names))
    if unbound:
        print(
            f"statewall run: interfaces without --bind (their traffic is dropped): {', '.join(unbound)}",
            file=sys.stderr,
        )

    fw = Firewall(policy)
    ports: list[Port] = []
    log_fp: IO[str] = sys.stderr if args.log == "-" else open(args.log, "a", encoding="utf-8")  # noqa: SIM115
    try:
        for name, device, netns in binds:
            tun = open_tun(device, netns, offload=not args.no_offload, txqueuelen=args.txqueuelen)
            ports.append(Port(name, tun))
        loop = Loop(
            fw, ports, tick=args.tick, on_events=_event_writer(args.log_format, log_fp, policy.hostname)
        )
        loop.on_tick = log_fp.flush
        ready = "statewall run: forwarding " + " ".join(f"{p.name}={p.tun.describe()}" for p in ports)
        try:
            # Signals stop the loop from before the ready line on: whoever waits for that line and
            # then sends SIGTERM gets a clean exit, not the default action.
            with loop.stop_on_signals():
                print(ready, flush=True)
                loop.run()
        finally:
            loop.close()
        log_fp.flush()
        print_summary(loop, fw)
    finally:
        for p in ports:
            p.tun.close()
        if log_fp is not sys.stderr:
            log_fp.close()
    return EXIT_OK


def print_summary(loop, fw) -> None:
    counters = loop.counters()
    print("statewall run: stopped; " + json.dumps(counters, separators=(",", ":")), flush=True)
    drops = getattr(fw, "drops", None)
    if drops:
        from ..logfmt.counters import format_show_asp_drop

        print(format_show_asp_drop(drops), flush=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the firewall inline on TUN devices",
        description="Forward between TUN devices through the engine until SIGINT/SIGTERM. "
        "IFACE is the configuration's interface name (nameif); DEVICE a TUN device, created if "
        "missing; NETNS a network namespace name (ip netns) or path.",
    )
    add_config_argument(p)
    p.add_argument(
        "--bind",
        action="append",
        required=True,
        metavar="IFACE=DEVICE[@NETNS]",
        help="attach an interface to a TUN device (repeat for each interface)",
    )
    p.add_argument(
        "--no-offload",
        action="store_true",
        help="plain TUN: no virtio-net header, no TSO/USO super-packets (slower)",
    )
    p.add_argument("--log", default="-", metavar="FILE", help="where events go (default: stderr)")
    p.add_argument(
        "--log-format",
        choices=("asa", "json", "none"),
        default="asa",
        help="ASA syslog lines (default), JSON lines, or nothing",
    )
    p.add_argument("--tick", type=float, default=0.1, metavar="SECONDS", help="timer resolution (0.1)")
    p.add_argument(
        "--txqueuelen",
        type=int,
        default=None,
        metavar="N",
        help="TUN transmit queue length (the kernel default is 500)",
    )
    p.set_defaults(func=run)
