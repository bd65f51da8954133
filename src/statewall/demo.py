"""``statewall demo`` / ``make demo``: seed scenarios replayed end to end, told in plain words.

Each scenario builds a capture of traffic that worked between two hosts (with scapy, as a sniffer on
the wire would have recorded it, without any firewall), replays it through a seed's configuration,
prints the firewall's log, its ``show asp drop`` counters and the replay summary, and explains from
the events what happened. ``SCENARIOS`` is the list ``statewall demo`` runs without root.

As root, ``statewall demo`` (``make demo``) runs ``LIVE`` instead: each seed's lab scenario
(``statewall.lab.scenarios``) with real stacks in network namespaces, broken and then fixed, and a
summary per seed of what broke, the lines that show it and what fixed it; a seed whose scenario is
not in the lab yet keeps its slot and says so.

The seed configurations ship as package data (``statewall/demo_configs``) so the demo runs from an
installed package as well as from a checkout.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import time
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
    version: str | None = None  # the release a configuration without a version header is taken for


# --------------------------------------------------------------------------------------------------
# Seed 000: an FTP control session from inside to outside through PAT


class _TcpPeer:
    """One end of a scripted TCP conversation: keeps its own sequence number and what it has acked."""

    def __init__(self, ip: str, port: int, isn: int, mss: int) -> None:
        self.ip, self.port, self.seq, self.ack, self.mss = ip, port, isn, 0, mss


class _Recording:
    """Scripted TCP segments as a sniffer records them: ``packets`` is a list of (time, IPv4 bytes)."""

    def __init__(self, start: float) -> None:
        self.t = start
        self.packets: list[tuple[float, bytes]] = []

    def send(self, src: _TcpPeer, dst: _TcpPeer, flags: str, payload: bytes = b"", gap: float = 0.02) -> None:
        """One segment from ``src`` to ``dst``, ``gap`` seconds after the last; both peers' sequence
        numbers move on as the segment's payload, SYN and FIN take them."""
        from scapy.layers.inet import IP, TCP

        self.t += gap
        opts = [("MSS", src.mss), ("SAckOK", b""), ("NOP", None), ("WScale", 7)] if "S" in flags else []
        seg = IP(src=src.ip, dst=dst.ip, ttl=64, id=(len(self.packets) * 101) & 0xFFFF, flags="DF") / TCP(
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
        self.packets.append((self.t, bytes(seg)))
        src.seq = (src.seq + len(payload) + ("S" in flags) + ("F" in flags)) & 0xFFFFFFFF
        dst.ack = src.seq


def ftp_control_session(
    client: tuple[str, int], server: tuple[str, int], start: float
) -> list[tuple[float, bytes]]:
    """An FTP control connection as a sniffer beside the client would record it.

    Three-way handshake with MSS options (client 1460, server 1390 as in seed 000), the 220 banner,
    USER / PASS / PWD / QUIT with their replies, then the server closes and both FINs are acked.
    """
    try:
        import scapy.layers.inet  # noqa: F401
    except ImportError as exc:  # scapy ships with the test extras; the demo builds its capture with it
        raise DemoError("the demo builds its capture with scapy: pip install scapy") from exc

    c = _TcpPeer(client[0], client[1], isn=0x2A5C1F00, mss=1460)
    s = _TcpPeer(server[0], server[1], isn=0x6E1B3A00, mss=1390)
    recording = _Recording(start)
    send = recording.send

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
    return recording.packets


def _build_seed000(outdir: Path) -> list[tuple[str | None, Path]]:
    from .pcapio import PcapWriter

    path = outdir / "seed000-ftp-control.pcap"
    with PcapWriter(path) as w:
        for ts, pkt in ftp_control_session(("10.0.0.2", 38003), ("192.168.9.2", 21), SEED000_START):
            w.write(pkt, ts)
    # One capture of both directions, as a sniffer beside the client saw it: each packet's ingress
    # comes from the routing table.
    return [(None, path)]


def ftp_upload_session(
    client: tuple[str, int], server: tuple[str, int], start: float, data_port: int = 20000, segments: int = 3
) -> list[tuple[float, bytes]]:
    """Seed 000's failing upload as a sniffer beside the client recorded it (no firewall in between).

    The control connection logs in, goes passive (the server's 227 names ``data_port``) and sends STOR;
    the client opens the data connection with MSS 1460, the server answers with 1390 as in the seed,
    and the client sends ``segments`` full 1460-byte segments anyway, each acknowledged by the
    server; then 226, QUIT and both connections closed.
    """
    try:
        import scapy.layers.inet  # noqa: F401
    except ImportError as exc:
        raise DemoError("the demo builds its capture with scapy: pip install scapy") from exc

    recording = _Recording(start)
    send = recording.send

    c = _TcpPeer(client[0], client[1], isn=0x2A5C1F00, mss=1460)
    s = _TcpPeer(server[0], server[1], isn=0x6E1B3A00, mss=1390)
    send(c, s, "S", gap=0.0)
    send(s, c, "SA", gap=0.031)
    send(c, s, "A", gap=0.0004)
    send(s, c, "PA", b"220 (vsFTPd 2.0.5)\r\n", gap=0.045)
    send(c, s, "A", gap=0.0003)
    h = [int(x) for x in server[0].split(".")]
    pasv = f"227 Entering Passive Mode ({h[0]},{h[1]},{h[2]},{h[3]},{data_port >> 8},{data_port & 255}).\r\n"
    for command, reply in (
        (b"USER anonymous\r\n", b"331 Please specify the password.\r\n"),
        (b"PASS guest@example.com\r\n", b"230 Login successful.\r\n"),
        (b"TYPE I\r\n", b"200 Switching to Binary mode.\r\n"),
        (b"PASV\r\n", pasv.encode()),
    ):
        send(c, s, "PA", command, gap=0.3)
        send(s, c, "PA", reply, gap=0.033)
        send(c, s, "A", gap=0.0003)
    dc = _TcpPeer(client[0], client[1] + 1, isn=0x11D00000, mss=1460)
    ds = _TcpPeer(server[0], data_port, isn=0x5E700000, mss=1390)
    send(dc, ds, "S", gap=0.01)
    send(ds, dc, "SA", gap=0.031)
    send(dc, ds, "A", gap=0.0004)
    send(c, s, "PA", b"STOR upload.bin\r\n", gap=0.01)
    send(s, c, "PA", b"150 Ok to send data.\r\n", gap=0.033)
    send(c, s, "A", gap=0.0003)
    for i in range(segments):
        send(dc, ds, "PA" if i == segments - 1 else "A", bytes([0x41 + i]) * 1460, gap=0.002)
        send(ds, dc, "A", gap=0.03)
    send(dc, ds, "FA", gap=0.001)
    send(ds, dc, "FA", gap=0.03)
    send(dc, ds, "A", gap=0.0004)
    send(s, c, "PA", b"226 Transfer complete.\r\n", gap=0.01)
    send(c, s, "A", gap=0.0003)
    send(c, s, "PA", b"QUIT\r\n", gap=0.3)
    send(s, c, "PA", b"221 Goodbye.\r\n", gap=0.033)
    send(s, c, "FA", gap=0.001)
    send(c, s, "FA", gap=0.0005)
    send(s, c, "A", gap=0.03)
    return recording.packets


def _build_seed000_upload(outdir: Path) -> list[tuple[str | None, Path]]:
    from .pcapio import PcapWriter

    path = outdir / "seed000-ftp-upload.pcap"
    with PcapWriter(path) as w:
        for ts, pkt in ftp_upload_session(("10.0.0.2", 38003), ("192.168.9.2", 21), SEED000_START):
            w.write(pkt, ts)
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


def _narrate_seed000_upload(
    policy: Policy, events: list[dict[str, Any]], summary: dict[str, Any]
) -> list[str]:
    built = {e["conn_id"]: e for e in events if e["event"] == "ConnBuilt"}
    drops = [e for e in events if e["event"] == "Drop" and e["reason"] == "tcp-mss-exceeded"]
    lines: list[str] = []
    control = next((b for b in built.values() if b["responder"]["port"] == 21), None)
    if control is not None:
        lines.append(
            f"Connection {control['conn_id']} is the FTP control session: the client logs in, sends PASV "
            "and the server's 227 names the port of the data connection; FTP inspection opens it."
        )
    for cid in sorted({d["detail"].get("conn") for d in drops if d.get("detail")} - {None}):
        b = built.get(cid)
        if b is None:
            continue
        i, r = b["initiator"], b["responder"]
        mine = [d for d in drops if d["detail"].get("conn") == cid]
        d = mine[0]
        lines.append(
            f"Data connection {cid}: {i['address']}/{i['port']} to {r['address']}/{r['port']}. The client "
            f"sent {len(mine)} segment(s) of {d['detail'].get('data')} bytes to a server that advertised MSS "
            f"{d['detail'].get('mss')}; each was dropped with 419001 ({d['message']})."
        )
        if d.get("hint"):
            lines.append(f"What lets them through: {d['hint']}.")
    if not drops:
        lines.append("Nothing exceeded the MSS: no segment was dropped.")
    lines.append(
        f"{summary['packets_in']} packets in, {summary['forwarded']} forwarded, {summary['dropped']} dropped."
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
    Scenario(
        name="seed000-upload",
        title="Seed 000: an FTP upload through the seed's ASA 8.2, MSS exceeded on the data connection",
        config="seed000.cfg",
        build=_build_seed000_upload,
        narrate=_narrate_seed000_upload,
        drain=60.0,
        # The seed's box runs a release before 9.0, where exceed-mss drop is the default.
        version="8.2(1)",
    ),
]


# --------------------------------------------------------------------------------------------------
# Running


def run_scenario(scenario: Scenario, outdir: Path) -> tuple[Policy, dict[str, Any], list[dict[str, Any]]]:
    """Build the scenario's captures in ``outdir``, replay them, return (policy, summary, events)."""
    from .replay import replay

    text, name = demo_config(scenario.config)
    policy = parse_policy(text, name)
    if scenario.version and not policy.version:
        policy.version = scenario.version
    outdir.mkdir(parents=True, exist_ok=True)
    captures = scenario.build(outdir)
    summary = replay(policy, captures, outdir / "replay", drain=scenario.drain, config_text=text)
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


# --------------------------------------------------------------------------------------------------
# The live lab: each seed broken and fixed with real stacks (root)


@dataclass(slots=True)
class LiveScenario:
    """A seed's scenario in the lab (``statewall.lab.scenarios``): what it breaks, the lines of its
    output that show the failure (``evidence``, regular expressions), and what fixes it."""

    seed: str
    lab: str  # the lab scenario's name
    title: str
    broke: str
    fixed: str
    evidence: tuple[str, ...]
    owner: str = ""  # for a slot whose scenario is not in the lab yet: whose it is


LIVE: list[LiveScenario] = [
    LiveScenario(
        "000",
        "seed000",
        "Seed 000: FTP through an ASA 8.2, MSS exceeded",
        "curl's FTP upload stalls: the client sends 1460-byte segments to a server that announced 1390, "
        "and exceed-mss drop (the default before 9.0) drops each one",
        "solution A (sysopt connection tcpmss minimum 1460) and solution B (the seed's tcp-map with "
        "exceed-mss allow for the FTP hosts), each by statewall ctl reload",
        (r"%ASA-4-419001", r"segments held to mss .* outside 1460", r"class ftp-map"),
    ),
    LiveScenario(
        "001",
        "seed001",
        "Seed 001: a smaller-MTU tunnel and a PMTUD black hole",
        "an HTTP download through a 1400-byte tunnel stalls: the server's 1500-byte packets vanish and "
        "the ICMP that would say so is dropped",
        "the seed's own rule, iptables -t mangle ... -j TCPMSS --set-mss 1347; the same clamp written in "
        "nftables (tcp option maxseg size set 1347); and on an ASA, sysopt connection tcpmss 1347",
        (
            r"frag-needed messages were lost",
            r"data bytes per segment, path MTU",
            r"TCPMSS set 1347",
            r"SYN left",
            r"tcp option maxseg size set 1347",
            r"statewall run \(nftables\) exits cleanly",
        ),
    ),
    LiveScenario(
        "002",
        "seed002",
        "Seed 002: connection limits, TCP Intercept, dead connection detection",
        "a SYN flood against a server while legitimate clients connect; idle and dead connections",
        "the intercept holds; DCD keeps the idle connection and frees the dead one",
        (r"%ASA-\d-2010\d\d", r"%ASA-\d-733\d\d\d", r"DCD"),
        owner="the limits / TCP Intercept / DCD work (issue 6)",
    ),
    LiveScenario(
        "003",
        "seed003",
        "Seed 003: a PIX's untranslated SACK blocks and Linux conntrack",
        "a long transfer from a Linux host dropping ct INVALID crawls to a stall: SACK edges arrive "
        "shifted by the firewall's sequence offset and conntrack drops every SACKing segment",
        "nf_conntrack_tcp_be_liberal = 1 on the host, or SACK translation (the fault off) by reload",
        (r"dropped SACKing segments", r"carries SACK"),
    ),
    LiveScenario(
        "004",
        "seed004",
        "Seed 004: FTP through NAT and the idle control connection",
        "active and passive FTP through PAT and a static work; a transfer longer than timeout conn loses "
        "its control connection when data does not refresh it: curl never gets the 226",
        "data activity keeps the control connection alive (statewall's default, as ip_masq_ftp did), on "
        "the ASA and on the seed's own NetMAX ruleset",
        (
            r"-303002:",
            r"Idle Timeout",
            r"-106015:",
            r"\[DESTROY\] tcp .*dport=21 .*helper=ftp",
            r"\[UNREPLIED\]",
        ),
    ),
]


def select_live(names: list[str] | None) -> list[LiveScenario]:
    """The live scenarios named (``seed000`` or ``000``), or all of them."""
    if not names:
        return list(LIVE)
    by_name = {s.lab: s for s in LIVE} | {s.seed: s for s in LIVE}
    return [by_name[n] for n in names if n in by_name]


class _Tee:
    """A ScenarioRun's output: printed as it comes, and kept for the summary."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.out.write(text)
        self.lines += text.splitlines()
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def run_live(
    scenarios: list[LiveScenario], out: Any, *, offload: bool = True, record: Path | None = None
) -> bool:
    """Run each seed's lab scenario (root: namespaces, TUNs), then a summary per seed: what broke,
    the lines that show it, what fixed it, and whether every check held. True when all passed.
    ``record``: each firewall run is recorded under ``record/<seed>/`` (``statewall run --record``)
    and its report.html written there; the summary prints each report's path.

    Each scenario gets a lab of its own, removed afterwards whatever happened; a scenario that raises
    counts as failed and the next one still runs.
    """
    from .lab.netns import Lab, LabError
    from .lab.scenarios import ScenarioRun, load_all

    registry = load_all()
    results: list[tuple[LiveScenario, ScenarioRun | None, list[str], float]] = []
    for s in scenarios:
        print(f"== {s.title}", file=out, flush=True)
        sc = registry.get(s.lab)
        if sc is None:
            print(
                f"  (no '{s.lab}' scenario in the lab yet: {s.owner or 'not written'})\n",
                file=out,
                flush=True,
            )
            results.append((s, None, [], 0.0))
            continue
        tee = _Tee(out)
        started = time.monotonic()
        run: ScenarioRun | None = None
        try:
            with Lab() as lab:
                rec = None
                if record is not None:
                    rec = str(record / s.lab)
                    os.makedirs(rec, mode=0o700, exist_ok=True)
                run = ScenarioRun(lab, offload=offload, out=tee, record=rec)
                try:
                    sc.func(run)
                except (LabError, OSError, ValueError, RuntimeError) as exc:
                    run.check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
        except LabError as exc:  # the lab could not remove everything
            if run is not None:
                run.check("lab removed", False, str(exc))
        results.append((s, run, tee.lines, time.monotonic() - started))
        print(file=out, flush=True)
    return _summary(results, out)


def _summary(results: list, out: Any) -> bool:
    print("== What broke, what shows it, what fixed it", file=out)
    ok = True
    for s, run, lines, secs in results:
        if run is None:
            print(f"seed {s.seed}: not run (no lab scenario yet)", file=out)
            continue
        passed = run.passed
        ok = ok and passed
        held = sum(1 for _, good, _ in run.checks if good)
        verdict = "PASSED" if passed else "FAILED"
        print(f"seed {s.seed}: {verdict} ({held}/{len(run.checks)} checks, {secs:.0f} s)", file=out)
        print(f"  broke:  {s.broke}", file=out)
        for pattern in s.evidence:
            hit = next((line.strip() for line in lines if re.search(pattern, line)), None)
            if hit is not None:
                print(f"  shown:  {hit}", file=out)
        print(f"  fixed:  {s.fixed}", file=out)
        for path in run.reports:
            print(f"  report: {path}", file=out)
        for what, good, detail in run.checks:
            if not good:
                print(f"  FAILED: {what}" + (f": {detail}" if detail else ""), file=out)
    out.flush()
    return ok
