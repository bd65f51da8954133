"""``statewall run --record OUTDIR``: a live run written as a replay's output directory.

Owns OUTDIR while the firewall runs. It holds the same files ``statewall replay`` writes, made by the
same writer (``statewall.replay``'s outputs), so that ``statewall report OUTDIR`` renders the run as it
renders a replay: ``arrived/<iface>.pcap`` (each packet as it reached the firewall, stamped with the
time the engine was given), ``<iface>.pcap`` (what left), ``asp-drop.pcap`` (what was dropped, with its
reason), ``log.txt``, ``events.jsonl``, and on stop ``summary.json`` and, unless told otherwise,
``report.html``.

The loop hands each packet to ``Port.record`` (``statewall.live.loop``) and every event to
``events``; both run in the loop's thread. Recording turns the compiled pump off (every packet passes
through Python to be written), so a recorded run forwards more slowly, as one with a ``capture`` does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..events import Drop, Event
from ..logfmt import linux
from ..logfmt.asalog import AsaLog
from ..logfmt.counters import Counters
from ..policy import Policy
from ..replay import ASP_DROP, Outputs, counter_summary, output_name
from ..report import REPORT_NAME, write_report


class Recorder:
    """OUTDIR's writer for one run (module docstring). ``clock()`` is the loop's time, for packets
    leaving (an arriving packet carries the engine's own time)."""

    def __init__(self, outdir: str | os.PathLike[str], policy: Policy, clock: Callable[[], float]) -> None:
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.policy = policy
        self.clock = clock
        self.stack = ExitStack()
        self.linux = policy.netfilter is not None
        fmt = linux.format_event if self.linux else AsaLog(policy).format_event
        self.out = Outputs(self.outdir, policy.interfaces, self.stack, None, fmt, Counters())
        self.out.linux = self.linux
        self.first: float | None = None
        self.last: float | None = None
        self.packets_in = self.forwarded = self.dropped_on_receive = 0
        # The packet being handled: its interface, bytes as it arrived, time; whether it left.
        self._arrival: tuple[str, bytes, float] | None = None
        self._left = False
        self.closed = False

    def hook(self, iface: str) -> Callable[[bytearray, float | None, bool], None]:
        """``Port.record`` for interface ``iface``."""
        out = self.out

        def record(pkt: bytearray, now: float | None, leaving: bool) -> None:
            if leaving:
                t = self.clock()
                out.packets(((iface, pkt),), t)
                self._left = True
                self.last = t
                return
            self._settle()
            assert now is not None
            if self.first is None:
                self.first = now
            self.last = now
            self.packets_in += 1
            out.counters.packet(iface, len(pkt), out=False)
            data = bytes(pkt)  # the engine may rewrite it in place
            out.arrival(iface, data, now)
            self._arrival = (iface, data, now)
            self._left = False

        return record

    def _settle(self) -> None:
        """The packet handled last: forwarded when something left while it was handled."""
        if self._arrival is not None and self._left:
            self.forwarded += 1
        self._arrival = None
        self._left = False

    def events(self, events: Sequence[Event]) -> None:
        """The loop's events: into log.txt and events.jsonl; a drop of the packet in hand into
        asp-drop.pcap."""
        arrival = self._arrival
        if arrival is not None:
            drop = next((ev for ev in events if type(ev) is Drop and ev.time == arrival[2]), None)
            if drop is not None:
                self.out.dropped(arrival[1], arrival[2], drop, getattr(drop, "conn_id", None))
                self.dropped_on_receive += 1
                self._arrival = None
        self.out.events(events)

    def close(self, *, report: bool = True, config_text: str | None = None) -> Path:
        """Finish OUTDIR: the files closed, ``summary.json``, and ``report.html`` unless ``report`` is
        False. Returns OUTDIR."""
        if self.closed:
            return self.outdir
        self.closed = True
        self._settle()
        self.stack.close()
        self._write_summary(self._summary(report))
        if report:
            write_report(self.outdir, config_text)
        return self.outdir

    def sync(self) -> Path:
        """The recording so far on disk, with a ``summary.json`` of it, for a reader while the run goes
        on (the web view's report); loop thread. Returns OUTDIR."""
        if not self.closed:
            self.out.flush()
            self._write_summary(self._summary(False))
        return self.outdir

    def _write_summary(self, summary: dict[str, Any]) -> None:
        tmp = self.outdir / "summary.json.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        os.replace(tmp, self.outdir / "summary.json")

    def _summary(self, report: bool) -> dict[str, Any]:
        counters = self.out.counters.to_summary()
        summary: dict[str, Any] = {
            "config": self.policy.source_file,
            "live": True,
            "captures": [],
            "first_time": self.first,
            "last_time": self.last,
            "packets_in": self.packets_in,
            "forwarded": self.forwarded,
            "dropped": counters["dropped"],
            "held": max(0, self.packets_in - self.forwarded - self.dropped_on_receive),
            "drops_by_reason": counters["drops_by_reason"],
            "packets_out": {iface: w.count for iface, w in sorted(self.out.writers.items())},
            **counter_summary(counters),
            "log_lines": self.out.log_lines,
            "outputs": {
                "log": "log.txt",
                "events": "events.jsonl",
                "captures": {iface: output_name(iface) for iface in sorted(self.out.writers)},
                "asp_drop": ASP_DROP,
                "arrived": {iface: output_name(iface) for iface in sorted(self.out.arrived)},
                "report": REPORT_NAME if report else None,
            },
        }
        return summary


def attach(recorder: Recorder, ports: Iterable[Any]) -> None:
    """Give each port the recorder's hook."""
    for port in ports:
        port.record = recorder.hook(port.name)
