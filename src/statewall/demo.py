"""``statewall demo`` / ``make demo``: seed scenarios replayed end to end, told in plain words.

Each scenario builds a capture of traffic that worked between two hosts (with scapy, as a sniffer on
the wire would have recorded it, without any firewall), replays it through a seed's configuration,
prints the firewall's log, its ``show asp drop`` counters and the replay summary, and explains from
the events what happened. ``SCENARIOS`` is the list ``statewall demo`` runs; scenarios that need root
(the live lab) are added to it with ``needs_root=True`` and are skipped, saying so, otherwise.

The seed configurations ship as package data (``statewall/demo_configs``) so the demo runs from an
installed package as well as from a checkout.
"""

from __future__ import annotations

import calendar
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .config import parse_policy
from .policy import Policy

# Seed 000's log line is dated "Sep 19 2007 06:55:58"; the demo's capture starts then.
SEED000_START = float(calendar.timegm((2007, 9, 19, 6, 55, 58)))


class DemoError(Exception):
    """A scenario could not run (a missing optional tool, for instance)."""


def demo_config(name: str) -> tuple[str, str]:
    """(text, display name) of a packaged seed configuration."""
    ref = resources.files("statewall") / "demo_configs" / name
    return ref.read_text(encoding="utf-8"), f"demo_configs/{name}"


@dataclass(slots=True)
class Scenario:
    """One demo: a configuration, a capture builder, how long timers may run after the last packet,
    and a narrator that turns the replay's events into plain sentences."""

    name: str
    title: str
    config: str  # file in statewall/demo_configs
    build: Callable[[Path], list[tuple[str | None, Path]]]  # writes captures into a directory
    narrate: Callable[[Policy, list[dict[str, Any]], dict[str, Any]], list[str]]
    drain: float = 0.0
    needs_root: bool = False


# --------------------------------------------------------------------------------------------------
# Seed 000: an FTP control session from inside to outside through PAT


class _TcpPeer:
    """One end of a scripted TCP conversation: keeps its own sequence number and what it has acked."""

    def __init__(self, ip: str, port: int, isn: int, mss: int) -> None:
        self.ip, self.port, self.seq, self.ack, self.mss = ip, port, isn, 0, mss


def ftp_control_session(
    client: tuple[str, int], server: tuple[str, int], start: float
) -> list[tuple[float, bytes]]:
    """An FTP control connection as a sniffer beside the client would record it.

    Three-way handshake with MSS options (client 1460, server 1390 as in seed 000), the 220 banner,
    USER / PASS / PWD / QUIT with their replies, then the server closes and both FINs are acked.
    """
    try:
        from scapy.layers.inet import IP, TCP
    except ImportError as exc:  # scapy ships with the test extras; the demo builds its capture with it
        raise DemoError("the demo builds its capture with scapy: pip install scapy") from exc

    c = _TcpPeer(client[0], client[1], isn=0x2A5C1F00, mss=1460)
    s = _TcpPeer(server[0], server[1], isn=0x6E1B3A00, mss=1390)
    out: list[tuple[float, bytes]] = []
    t = start

    def send(src: _TcpPeer, dst: _TcpPeer, flags: str, payload: bytes = b"", gap: float = 0.02) -> None:
        nonlocal t
        t += gap
        opts = [("MSS", src.mss), ("SAckOK", b""), ("NOP", None), ("WScale", 7)] if "S" in flags else []
        seg = IP(src=src.ip, dst=dst.ip, ttl=64, id=(len(out) * 101) & 0xFFFF, flags="DF") / TCP(
            sport=src.port,
            dport=dst.port,
            seq=src.seq,
            ack=src.ack if "A" in flags else 0,
            flags=flags,
            window=64240 if "S" in flags else 501,
            options=opts,
        )
        if payload:
            seg = seg / payload
        out.append((t, bytes(seg)))
        src.seq = (src.seq + len(payload) + ("S" in flags) + ("F" in flags)) & 0xFFFFFFFF
        dst.ack = src.seq

    send(c, s, "S", gap=0.0)
    send(s, c, "SA", gap=0.031)
    send(c, s, "A", gap=0.0004)
    send(s, c, "PA", b"220 (vsFTPd 2.0.5)\r\n", gap=0.045)
    send(c, s, "A", gap=0.0003)
    for command, reply in (
        (b"USER anonymous\r\n", b"331 Please specify the password.\r\n"),
        (b"PASS guest@example.com\r\n", b"230 Login successful.\r\n"),
        (b"PWD\r\n", b'257 "/"\r\n'),
        (b"QUIT\r\n", b"221 Goodbye.\r\n"),
    ):
        send(c, s, "PA", command, gap=1.2)
        send(s, c, "PA", reply, gap=0.033)
        send(c, s, "A", gap=0.0003)
    send(s, c, "FA", gap=0.001)
    send(c, s, "FA", gap=0.0005)
    send(s, c, "A", gap=0.03)
    return out


def _build_seed000(outdir: Path) -> list[tuple[str | None, Path]]:
    from .pcapio import PcapWriter

    path = outdir / "seed000-ftp-control.pcap"
    with PcapWriter(path) as w:
        for ts, pkt in ftp_control_session(("10.0.0.2", 38003), ("192.168.9.2", 21), SEED000_START):
            w.write(pkt, ts)
    # One capture of both directions, as a sniffer beside the client saw it: each packet's ingress
    # comes from the routing table.
    return [(None, path)]


def _line(origin: dict[str, Any] | None) -> str:
    """``'text' (line N)`` for an event's configuration origin, or empty."""
    if isinstance(origin, dict) and origin.get("text"):
        return f"'{origin['text'].strip()}' (line {origin['line']})"
    return ""


def _narrate_seed000(policy: Policy, events: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for ev in events:
        by_kind.setdefault(ev["event"], []).append(ev)
    lines: list[str] = []
    xlates = by_kind.get("XlateBuilt", [])
    if xlates:
        x = xlates[0]
        itf = policy.interfaces.get(x["mapped_interface"])
        own = itf is not None and any(str(a.ip) == x["mapped_address"] for a in itf.addresses())
        whose = f"the {x['mapped_interface']} interface's own address" if own else "an address of its pool"
        rule = _line(x.get("origin"))
        pools = [
            f"'{o.text.strip()}' (line {o.line})"
            for r in policy.nat_rules
            if x.get("origin") and r.origin.line == x["origin"]["line"]
            for o in r.pool_origins
        ]
        by = f", by {rule}" + (f" with {', '.join(pools)}" if pools else "") if rule else ""
        kept = (
            "; its own port was free, so PAT kept it"
            if x["real_port"] == x["mapped_port"]
            else f"; its port was taken, so PAT chose {x['mapped_port']}"
        )
        lines.append(
            f"PAT: the client {x['real_address']}/{x['real_port']} on {x['real_interface']} appears on "
            f"{x['mapped_interface']} as {x['mapped_address']}/{x['mapped_port']}, {whose}{by}{kept}."
        )
    else:
        lines.append("No translation was built: the client's address left the firewall unchanged.")
    built = by_kind.get("ConnBuilt", [])
    if built:
        b = built[0]
        i, r = b["initiator"], b["responder"]
        lines.append(
            f"The client's SYN arrived on {i['interface']} (security level "
            f"{policy.interfaces[i['interface']].security_level}) for {r['address']}/{r['port']} on "
            f"{r['interface']} (level {policy.interfaces[r['interface']].security_level}): {b['direction']} "
            f"traffic, allowed without an access list, so connection {b['conn_id']} was built."
        )
    else:
        lines.append("No connection was built: the first packet was refused (see the drops above).")
    torn = by_kind.get("ConnTeardown", [])
    if torn:
        t = torn[0]
        lines.append(
            f"Connection {t['conn_id']} was torn down after {t['duration']:.1f} s and {t['bytes']} bytes: "
            f"{t['reason'] or 'no reason given'}"
            + (f", started from {t['closed_by']}" if t.get("closed_by") else "")
            + "."
        )
    elif built:
        lines.append("The connection was still open when the capture ended.")
    freed = by_kind.get("XlateTeardown", [])
    if freed:
        lines.append(
            f"With no connection left using it, the translation was freed after its idle timeout "
            f"(timeout pat-xlate {policy.timeouts.pat_xlate:g} s)."
        )
    out = summary["packets_out"]
    lines.append(
        f"{summary['packets_in']} packets in, {summary['forwarded']} forwarded "
        f"({', '.join(f'{n} out of {iface}' for iface, n in out.items())}), {summary['dropped']} dropped."
    )
    return lines


SCENARIOS: list[Scenario] = [
    Scenario(
        name="seed000-ftp",
        title="Seed 000: an FTP client inside, the server outside, PAT to the outside interface",
        config="seed000.cfg",
        build=_build_seed000,
        narrate=_narrate_seed000,
        # Long enough for the PAT slot's 30 s idle timer to run out after the connection closes,
        # so the log shows 305012 as well.
        drain=60.0,
    ),
]


# --------------------------------------------------------------------------------------------------
# Running


def run_scenario(scenario: Scenario, outdir: Path) -> tuple[Policy, dict[str, Any], list[dict[str, Any]]]:
    """Build the scenario's captures in ``outdir``, replay them, return (policy, summary, events)."""
    from .replay import replay

    text, name = demo_config(scenario.config)
    policy = parse_policy(text, name)
    outdir.mkdir(parents=True, exist_ok=True)
    captures = scenario.build(outdir)
    summary = replay(policy, captures, outdir / "replay", drain=scenario.drain)
    with open(outdir / "replay" / "events.jsonl", encoding="utf-8") as f:
        events = [json.loads(line) for line in f]
    return policy, summary, events


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def select(names: list[str] | None) -> list[Scenario]:
    if not names:
        return list(SCENARIOS)
    known = {s.name: s for s in SCENARIOS}
    missing = [n for n in names if n not in known]
    if missing:
        raise DemoError(f"unknown scenario(s): {', '.join(missing)} (known: {', '.join(known)})")
    return [known[n] for n in names]
