"""The replay adapter: captures in, what the firewall would have done out.

This module owns the offline driving of the engine: merging several captures into one timeline,
choosing each packet's ingress interface (given per capture, or ``auto``: the interface through which
the routing table reaches the packet's source), advancing the engine's clock to each packet's
timestamp before handing it over, and writing the results to a directory:

    <iface>.pcap   what left each interface (raw IP, the packet's timestamp), one file per interface
    log.txt        ASA syslog lines, in order (for an iptables ruleset: the kernel's LOG lines and
                   conntrack -E lines, ``statewall.logfmt.linux``)
    events.jsonl   every event as one JSON object per line
    summary.json   packet, drop, connection and translation counts

A capture records a session between hosts that never saw the firewall's translations. Before a packet
from the responder's side is received it goes through ``fw.replay_rewrite``, which carries it into the
coordinates the firewall gave that connection (the mapped address and port, later sequence offsets and
FTP data ports), so that a capture of a working session also works through a translating policy.

Time is only ever the capture's: timers fire up to the last packet's time plus ``drain`` seconds, so
the log says what would have happened during the capture, not after an arbitrary wait.
"""

from __future__ import annotations

import heapq
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

from .events import Drop, Event
from .logfmt import linux
from .logfmt.asa import format_event
from .logfmt.counters import Counters
from .logfmt.jsonl import event_to_json
from .pcapio import CaptureReader, PcapWriter
from .policy import Policy

# Below this much capture data a progress bar would only flicker.
PROGRESS_MIN_BYTES = 2 * 1024 * 1024
_PROGRESS_EVERY = 512  # packets between progress updates: a redraw per packet would dominate


class _Result(Protocol):
    packets: list[tuple[str, bytearray]]
    events: list[Event]


class FirewallLike(Protocol):
    """What replay needs from ``statewall.engine.Firewall``."""

    def receive(self, iface: str, data: bytes | bytearray, now: float) -> _Result: ...
    def advance(self, now: float) -> _Result: ...
    def ingress_for(self, data: bytes | bytearray) -> str | None: ...
    def replay_rewrite(self, iface: str, data: bytes | bytearray, now: float) -> bytearray: ...


class ReplayError(Exception):
    """The replay cannot start (e.g. a capture names an interface the configuration lacks)."""


def output_name(iface: str) -> str:
    """File name for an interface's output capture; names with path characters are made safe."""
    return re.sub(r"[^\w.-]", "_", iface) + ".pcap"


class _Outputs:
    """The files of OUTDIR, written as events and packets arrive (nothing is held in memory)."""

    def __init__(
        self,
        outdir: Path,
        interfaces: Iterable[str],
        stack: ExitStack,
        hostname: str | None,
        formatter=format_event,
    ) -> None:
        self.outdir = outdir
        self.stack = stack
        self.hostname = hostname
        self.format_event = formatter
        self.writers: dict[str, PcapWriter] = {}
        self.log = stack.enter_context(open(outdir / "log.txt", "w", encoding="utf-8"))  # noqa: SIM115
        self.jsonl = stack.enter_context(open(outdir / "events.jsonl", "w", encoding="utf-8"))  # noqa: SIM115
        self.counters = Counters()
        self.log_lines = 0
        # Every configured interface gets a file, empty if nothing left through it, so that "no
        # packets" is visible rather than a missing file.
        for iface in interfaces:
            self.writer(iface)

    def writer(self, iface: str) -> PcapWriter:
        w = self.writers.get(iface)
        if w is None:
            w = self.stack.enter_context(PcapWriter(self.outdir / output_name(iface)))
            self.writers[iface] = w
        return w

    def packets(self, packets: Sequence[tuple[str, bytes | bytearray]], now: float) -> None:
        for iface, data in packets:
            self.writer(iface).write(data, now)

    def events(self, events: Sequence[Event]) -> None:
        self.counters.feed(events)
        for ev in events:
            for line in self.format_event(ev, hostname=self.hostname, timestamp=True):
                self.log.write(line + "\n")
                self.log_lines += 1
            self.jsonl.write(event_to_json(ev) + "\n")


def _merged(readers: Sequence[CaptureReader]) -> Iterator[tuple[float, int, int, bytes, bool]]:
    """All packets of all captures by timestamp; ties keep capture order, then file order. The last
    field says whether the capture cut the packet short (``_truncated``)."""

    def keyed(index: int, reader: CaptureReader) -> Iterator[tuple[float, int, int, bytes, bool]]:
        for seq, (ts, data) in enumerate(reader):
            yield ts, index, seq, data, reader.last_snapped and _truncated(data)

    return heapq.merge(*(keyed(i, r) for i, r in enumerate(readers)))


def _truncated(ip: bytes) -> bool:
    """The IP packet is shorter than its header says (of a frame the snap length cut)."""
    n = len(ip)
    if n >= 4 and ip[0] >> 4 == 4:
        return int.from_bytes(ip[2:4], "big") > n
    if n >= 6 and ip[0] >> 4 == 6:
        return 40 + int.from_bytes(ip[4:6], "big") > n
    return n < 20


def replay(
    policy: Policy,
    captures: Sequence[tuple[str | None, str | os.PathLike[str]]],
    outdir: str | os.PathLike[str],
    ingress_auto: bool = True,
    progress: bool = False,
    *,
    drain: float = 0.0,
    firewall: FirewallLike | None = None,
    hostname: str | None = None,
    at_end: Callable[[FirewallLike, float], None] | None = None,
    fast_path: bool = True,
) -> dict[str, Any]:
    """Replay ``captures`` (``(ingress interface or None for auto, path)``) through ``policy``.

    Writes OUTDIR's files (see the module docstring) and returns the summary also written to
    ``summary.json``. ``firewall`` replaces the engine built from ``policy`` (tests, or a caller that
    wants to inspect the engine afterwards). ``at_end(firewall, time)`` is called after the last packet,
    before the drain, while the tables still hold what the capture left in them (``--show``).
    ``fast_path=False`` keeps every packet of the engine built here on its Python path.
    """
    if not captures:
        raise ReplayError("no capture to replay")
    for iface, path in captures:
        if iface is None and not ingress_auto:
            raise ReplayError(f"{os.fspath(path)}: no ingress interface given and --ingress auto is off")
        if iface is not None and iface not in policy.interfaces:
            known = ", ".join(sorted(policy.interfaces)) or "none"
            raise ReplayError(f"{os.fspath(path)}: no interface named {iface!r} (interfaces: {known})")
    if drain < 0:
        raise ReplayError("--drain must not be negative")
    if firewall is None:
        from .engine import Firewall

        firewall = Firewall(policy, fast_path=fast_path)
    fw = firewall
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)

    with ExitStack() as stack:
        readers = [stack.enter_context(CaptureReader(path)) for _, path in captures]
        ingress = [iface for iface, _ in captures]
        # An engine running an iptables ruleset logs as Linux does.
        linux_log = getattr(fw, "netfilter", None) is not None
        outputs = _Outputs(
            out, policy.interfaces, stack, hostname, linux.format_event if linux_log else format_event
        )
        bar = _progress_bar(stack, readers) if progress else None

        packets_in = forwarded = dropped_on_receive = unassigned = reordered = truncated = 0
        per_capture_unassigned: Counter[int] = Counter()
        per_capture_truncated: Counter[int] = Counter()
        first: float | None = None
        now = float("-inf")
        for n, (ts, index, _seq, data, cut) in enumerate(_merged(readers)):
            if first is None:
                first = ts
            if ts < now:
                # The engine's clock never goes back; a capture written out of order is replayed in
                # arrival order at the latest time seen.
                reordered += 1
            else:
                now = ts
            res = fw.advance(now)
            if res.packets:
                outputs.packets(res.packets, now)
            if res.events:
                outputs.events(res.events)
            if cut:
                # Cut short by the capture's snap length: what the firewall saw cannot be known, so
                # it is not handed over (and said so), rather than dropped for its length.
                truncated += 1
                per_capture_truncated[index] += 1
                continue
            iface = ingress[index] or fw.ingress_for(data)
            if iface is None:
                # No route back to the source: the firewall could not have received it on any
                # interface we could name, so it is not handed over at all (and said so).
                unassigned += 1
                per_capture_unassigned[index] += 1
                continue
            packets_in += 1
            res = fw.receive(iface, fw.replay_rewrite(iface, data, now), now)
            if res.packets:
                outputs.packets(res.packets, now)
            if res.events:
                outputs.events(res.events)
                if any(type(ev) is Drop for ev in res.events):
                    dropped_on_receive += 1
                elif res.packets:
                    forwarded += 1
            elif res.packets:
                forwarded += 1
            if bar is not None and n % _PROGRESS_EVERY == 0:
                bar.update(sum(r.position for r in readers))
        last = now if first is not None else None
        if at_end is not None and last is not None:
            at_end(fw, last)
        if last is not None and drain > 0:
            end = last + drain
            res = fw.advance(end)
            outputs.packets(res.packets, end)
            outputs.events(res.events)
        if bar is not None:
            bar.update(sum(r.size for r in readers))

        counters = outputs.counters.to_summary()
        summary: dict[str, Any] = {
            "config": policy.source_file,
            "captures": [
                {
                    "path": os.fspath(path),
                    "ingress": iface or "auto",
                    "format": reader.format,
                    **reader.stats.to_dict(),
                    "unassigned": per_capture_unassigned[i],
                    "truncated": per_capture_truncated[i],
                    "snaplen": reader.snaplen,
                }
                for i, ((iface, path), reader) in enumerate(zip(captures, readers))
            ],
            "first_time": first,
            "last_time": last,
            "drain": drain,
            "packets_in": packets_in,
            "forwarded": forwarded,
            "dropped": counters["dropped"],
            # Received but neither forwarded nor dropped yet (e.g. fragments awaiting the rest).
            "held": packets_in - forwarded - dropped_on_receive,
            "unassigned": unassigned,
            # Not replayed: cut short by the capture's snap length (see captures[].snaplen).
            "truncated": truncated,
            "reordered": reordered,
            "drops_by_reason": counters["drops_by_reason"],
            "packets_out": {iface: w.count for iface, w in sorted(outputs.writers.items())},
            "connections": {
                "built": sum(counters["connections_built"].values()),
                "torn_down": sum(counters["connections_torn_down"].values()),
                "built_by_protocol": counters["connections_built"],
                "torn_down_by_protocol": counters["connections_torn_down"],
                "teardown_reasons": counters["teardown_reasons"],
            },
            "xlates": {"built": counters["xlates_built"], "torn_down": counters["xlates_torn_down"]},
            "acl_hits": counters["acl_hits"],
            "icmp_sent": counters["icmp_sent"],
            "log_lines": outputs.log_lines,
            "outputs": {
                "log": "log.txt",
                "events": "events.jsonl",
                "captures": {iface: output_name(iface) for iface in sorted(outputs.writers)},
            },
        }
    with open(out / "summary.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=False)
        f.write("\n")
    return summary


class _Bar:
    def __init__(self, progress: Any, task: Any) -> None:
        self._progress = progress
        self._task = task

    def update(self, completed: int) -> None:
        self._progress.update(self._task, completed=completed)


def _progress_bar(stack: ExitStack, readers: Sequence[CaptureReader]) -> _Bar | None:
    total = sum(r.size for r in readers)
    if total < PROGRESS_MIN_BYTES:
        return None
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    progress = stack.enter_context(
        Progress(
            TextColumn("replaying"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
    )
    return _Bar(progress, progress.add_task("replay", total=total))
