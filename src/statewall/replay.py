"""The replay adapter: captures in, what the firewall would have done out.

This module owns the offline driving of the engine: merging several captures into one timeline,
choosing each packet's ingress interface (given per capture, or ``auto``: the interface through which
the routing table reaches the packet's source), advancing the engine's clock to each packet's
timestamp before handing it over, and writing the results to a directory:

    <iface>.pcap   what left each interface (raw IP, the packet's timestamp), one file per interface;
                   pcapng, each packet commented with its connection id and verdict
    asp-drop.pcap  every packet the firewall dropped, as it arrived, commented with the drop reason
                   (the ASA's "capture NAME type asp-drop"), pcapng
    log.txt        ASA syslog lines, in order (for an iptables ruleset: the kernel's LOG lines and
                   conntrack -E lines, ``statewall.logfmt.linux``)
    events.jsonl   every event as one JSON object per line
    summary.json   packet, drop, connection and translation counts
    arrived/<iface>.pcap  each packet as it reached the firewall (after the rewrite below)
    report.html    the report of all of it (``statewall.report``)

A capture records a session between hosts that never saw the firewall's translations. Before a packet
from the responder's side is received it goes through ``fw.replay_rewrite``, which carries it into the
coordinates the firewall gave that connection (the mapped address and port, later sequence offsets and
FTP data ports), so that a capture of a working session also works through a translating policy.

A capture of a link holds both directions: the firewall's own output in it is left out and counted
(``sent_by_firewall``), by ``fw.sent_by_box`` for a capture pinned to an interface and, for one read
with ``auto``, by ``RecentOutput`` (a copy of a packet the firewall emitted moments before).

With ``auto`` and an iptables ruleset, a server behind a DNAT whose translation is fixed, captured
on either side of the box, is carried across it first (``statewall.replay_dnat``).

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
from .gaps import GapMatcher
from .logfmt import linux
from .logfmt.asalog import AsaLog
from .logfmt.counters import ASA_NEAREST, NOT_ASA, Counters
from .logfmt.jsonl import event_to_json
from .packet import DecodeError, decode
from .pcapio import CaptureReader, PcapngWriter, PcapWriter
from .policy import Policy
from .report import REPORT_NAME, write_report

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
    def sent_by_box(self, iface: str, data: bytes | bytearray) -> bool: ...
    def replay_rewrite(self, iface: str, data: bytes | bytearray, now: float) -> bytearray: ...


class ReplayError(Exception):
    """The replay cannot start (e.g. a capture names an interface the configuration lacks)."""


# The dropped packets, as the ASA's "capture NAME type asp-drop" holds them.
ASP_DROP = "asp-drop.pcap"


def conn_id_of(fw: Any, data: bytes | bytearray, events: Sequence[Event]) -> int | None:
    """The id of the connection a received packet belongs to: one its events name, else the
    connection table's entry for its tuple (None when it has none)."""
    for ev in events:
        cid = getattr(ev, "conn_id", None)
        if cid is not None:
            return cid
    conns = getattr(fw, "conns", None)
    by_key = getattr(conns, "by_key", None)
    if by_key is None:
        return None
    try:
        pkt = decode(bytearray(data))
    except DecodeError:
        return None
    # peek: a connection its record holds alone is read through a view, its halves not made again.
    lookup = getattr(by_key, "peek", by_key.get)
    half = lookup((pkt.version, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport))
    return half.conn.id if half is not None else None


def counter_summary(counters: dict) -> dict:
    """The summary's entries made from the event counters: connections, translations, access-list
    hits, ICMP sent, per-interface counts. One process's replay, the sharded replay's merge and a
    recorded live run write them alike."""
    return {
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
        "interfaces": counters["interfaces"],
    }


def output_name(iface: str) -> str:
    """File name for an interface's output capture; names with path characters are made safe."""
    return re.sub(r"[^\w.-]", "_", iface) + ".pcap"


class Outputs:
    """The files of OUTDIR, written as events and packets arrive (nothing is held in memory); a live
    run records through it too (statewall.live.record)."""

    def __init__(
        self,
        outdir: Path,
        interfaces: Iterable[str],
        stack: ExitStack,
        hostname: str | None,
        formatter,
        counters: Counters | None = None,
    ) -> None:
        self.outdir = outdir
        self.stack = stack
        self.hostname = hostname
        self.format_event = formatter
        self.writers: dict[str, PcapngWriter] = {}
        self.arrived: dict[str, PcapWriter] = {}
        self.log = stack.enter_context(open(outdir / "log.txt", "w", encoding="utf-8"))  # noqa: SIM115
        self.jsonl = stack.enter_context(open(outdir / "events.jsonl", "w", encoding="utf-8"))  # noqa: SIM115
        self.counters = counters if counters is not None else Counters()
        self.log_lines = 0
        self.sender: Any = None
        self.linux = False
        self.asp_drop = stack.enter_context(PcapngWriter(outdir / ASP_DROP))
        # Every configured interface gets a file, empty if nothing left through it, so that "no
        # packets" is visible rather than a missing file.
        for iface in interfaces:
            self.writer(iface)

    def writer(self, iface: str) -> PcapngWriter:
        w = self.writers.get(iface)
        if w is None:
            w = self.stack.enter_context(PcapngWriter(self.outdir / output_name(iface)))
            self.writers[iface] = w
        return w

    def arrival(self, iface: str, data: bytes | bytearray, now: float) -> None:
        w = self.arrived.get(iface)
        if w is None:
            (self.outdir / "arrived").mkdir(exist_ok=True)
            w = self.stack.enter_context(PcapWriter(self.outdir / "arrived" / output_name(iface)))
            self.arrived[iface] = w
        w.write(data, now)

    def packets(
        self, packets: Sequence[tuple[str, bytes | bytearray]], now: float, comment: str | None = None
    ) -> None:
        for iface, data in packets:
            self.writer(iface).write(data, now, comment)
            self.counters.packet(iface, len(data), out=True)

    def dropped(self, data: bytes | bytearray, now: float, drop: Drop, conn_id: int | None) -> None:
        """The received packet the engine dropped, into asp-drop.pcap with its reason (``capture NAME
        type asp-drop`` on the ASA; ``show capture NAME detail`` prints ``Drop-reason: (kw) text``)."""
        reason = drop.reason if self.linux else ASA_NEAREST.get(drop.reason, drop.reason)
        # A reason no ASA counter has is named as statewall's, never in the ASA's "Drop-reason:" words.
        head = "statewall-reason" if not self.linux and reason in NOT_ASA else "Drop-reason"
        text = f"{head}: ({reason.keyword}) {reason.description}; ingress {drop.interface}"
        if conn_id is not None:
            text += f"; conn {conn_id}"
        self.asp_drop.write(data, now, text)

    def flush(self) -> None:
        """Everything written so far, on disk (a live recording read while it runs)."""
        for w in (*self.writers.values(), *self.arrived.values(), self.asp_drop):
            w.flush()
        self.log.flush()
        self.jsonl.flush()

    def events(self, events: Sequence[Event]) -> None:
        self.counters.feed(events)
        for ev in events:
            for line in self.format_event(ev, hostname=self.hostname, timestamp=True):
                self.log.write(line + "\n")
                self.log_lines += 1
            self.jsonl.write(event_to_json(ev) + "\n")
        if self.sender is not None:
            self.sender.send_events(events)


# How long after the firewall emitted a packet a copy of it in another capture is recognised as that
# output (``RecentOutput``): a capture of the egress link holds it microseconds to milliseconds later.
OWN_OUTPUT_WINDOW = 1.0


def _hop_blank(data: bytes | bytearray) -> bytearray | None:
    """The packet with the fields every hop rewrites blanked: IPv4's TTL and header checksum, IPv6's
    hop limit (an ASA forwards without decrementing, Linux decrements)."""
    if len(data) >= 20 and data[0] >> 4 == 4:
        b = bytearray(data)
        b[8] = 0
        b[10:12] = b"\0\0"
        return b
    if len(data) >= 40 and data[0] >> 4 == 6:
        b = bytearray(data)
        b[7] = 0
        return b
    return None


def _ip_header(b: bytearray) -> int:
    """The IP header's length (IPv6: the fixed header)."""
    return (b[0] & 15) * 4 if b[0] >> 4 == 4 else 40


def _headers(b: bytearray) -> int:
    """The length of the IP and TCP/UDP headers (0 when the packet has neither, or is cut short)."""
    if b[0] >> 4 == 4:
        ip, proto = (b[0] & 15) * 4, b[9]
    else:
        ip, proto = 40, b[6]
    if proto == 6 and len(b) >= ip + 20:
        return ip + (b[ip + 12] >> 4) * 4
    if proto == 17 and len(b) >= ip + 8:
        return ip + 8
    return 0


def _masked(b: bytearray, mask: tuple[int, ...]) -> bytes:
    for w in mask:
        b[4 * w : 4 * w + 4] = b"\0\0\0\0"
    return bytes(b)


class RecentOutput:
    """What the firewall emitted in the last ``OWN_OUTPUT_WINDOW`` seconds, for ``--ingress auto``.

    A capture not tied to a link may hold both directions of one: the firewall's own output is in it
    too, and fed back in it arrives on the wrong side of its connection (the ASA drops it as
    tcp-not-syn). The real box's output is not byte for byte the firewall's: it chose its own mapped
    port, random sequence offset, MSS. So a packet read from one capture is taken for the firewall's
    output when, at most the window after the firewall emitted a packet caused by a packet of
    *another* capture (or by a timer), it equals that emission in every byte the firewall did not
    rewrite: the IP header whole (addresses, IP id, length, flags; TTL/hop limit and the header
    checksum aside), and of the rest every 32-bit word where the emission equals the captured packet
    that caused it; the words the firewall rewrote there (ports, sequence and acknowledgement numbers,
    an option, a checksum, a PORT argument) are compared with neither. A copy in the capture its cause
    came from is never taken: there it could be the next genuine packet of the same host (a capture
    holding both links in one file is not recognised). Each emission stands for one captured copy;
    anything that differs in a byte the firewall left alone (a spoofed packet) is replayed."""

    def __init__(self, window: float = OWN_OUTPUT_WINDOW) -> None:
        self.window = window
        # (blanked words, masked bytes) -> [(emitted at, capture of the cause or -1)]
        self.sent: dict[tuple[tuple[int, ...], bytes], list[tuple[float, int]]] = {}
        self.masks: Counter[tuple[int, ...]] = Counter()
        self.order: list[tuple[float, tuple[tuple[int, ...], bytes]]] = []  # by time, for expiry
        self._head = 0

    def emitted(self, packets: Sequence[tuple[str, bytes | bytearray]], now: float, cause: int,
                source: bytes | bytearray | None) -> None:  # fmt: skip
        """``packets`` left the firewall at ``now``; ``source`` is the captured packet (of capture
        ``cause``) whose receipt emitted them, None for a timer's output."""
        src = _hop_blank(source) if source is not None else None
        for _iface, data in packets:
            out = _hop_blank(data)
            if out is None:
                continue
            ip = _ip_header(out)
            mask: tuple[int, ...] = ()
            if src is not None and _ip_header(src) == ip:
                if len(src) == len(out):
                    end = len(out)
                else:
                    # A rewrite that changed the payload's length (an FTP PORT): the transport
                    # header's rewritten words are blanked, the payload must be identical.
                    end = _headers(out) if 0 < _headers(out) == _headers(src) else ip
                mask = tuple(sorted({i // 4 for i in range(ip, end) if out[i] != src[i]}))
            key = (mask, _masked(out, mask))
            self.sent.setdefault(key, []).append((now, cause))
            self.masks[mask] += 1
            self.order.append((now, key))

    def _expire(self, now: float) -> None:
        order, head, horizon = self.order, self._head, now - self.window
        while head < len(order) and order[head][0] < horizon:
            key = order[head][1]
            entries = self.sent.get(key)
            if entries and entries[0][0] < horizon:
                del entries[0]
                if not entries:
                    del self.sent[key]
                self.masks[key[0]] -= 1
                if not self.masks[key[0]]:
                    del self.masks[key[0]]
            head += 1
        if head > 4096 and head * 2 > len(order):
            del order[:head]
            head = 0
        self._head = head

    def take(self, data: bytes | bytearray, now: float, capture: int) -> bool:
        """Is ``data``, read from capture ``capture`` at ``now``, the firewall's recent output? If so
        the emission it copies is used up."""
        if not self.sent:
            return False
        self._expire(now)
        blank = _hop_blank(data)
        if blank is None:
            return False
        for mask in list(self.masks):
            if mask and 4 * mask[-1] >= len(blank):
                continue
            key = (mask, _masked(bytearray(blank), mask))
            entries = self.sent.get(key)
            if not entries:
                continue
            for i, (_t, cause) in enumerate(entries):
                if cause != capture:
                    del entries[i]
                    if not entries:
                        del self.sent[key]
                    self.masks[mask] -= 1
                    if not self.masks[mask]:
                        del self.masks[mask]
                    return True
        return False


class Arrivals:
    """Where each captured packet arrives, decided alike by one process's replay and by every shard of
    a sharded one (``statewall.scale.replay``, which gives each shard its own ``Arrivals``).

    ``place`` answers for a packet of capture ``capture`` (``ingress[capture]``: its pinned interface,
    None for ``auto``): None when it is the firewall's own output (pinned: ``fw.sent_by_box``; auto: a
    copy of a recent emission, ``RecentOutput``), else ``(interface or None when no route reaches its
    source, packet)``, the packet carried across a fixed iptables DNAT in auto mode (``DnatCarry``).
    ``emitted`` is told everything the engine sends out (``cause``: the capture of the packet that
    caused it, -1 for a timer's output)."""

    def __init__(self, policy: Policy, fw: FirewallLike, ingress: Sequence[str | None]) -> None:
        self.fw = fw
        self.ingress = list(ingress)
        # With a capture not tied to a link, the firewall's recent output, to recognise it there.
        self.recent = RecentOutput() if any(i is None for i in self.ingress) else None
        self.dnat: Any = None
        self._by_key: dict = {}
        if self.recent is not None and (policy.netfilter or policy.ip6_netfilter):
            from .replay_dnat import DnatCarry

            self.dnat = DnatCarry(policy)
            engine = fw if hasattr(fw, "conns") else getattr(fw, "fw", fw)
            self._by_key = getattr(getattr(engine, "conns", None), "by_key", {})

    def _known(self, pkt: Any) -> bool:
        return (pkt.version, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport) in self._by_key

    def place(
        self, capture: int, data: bytes | bytearray, now: float
    ) -> tuple[str | None, bytes | bytearray] | None:
        iface = self.ingress[capture]
        if iface is not None:
            # The capture of the link holds the firewall's own output too: it left by this
            # interface, it did not arrive there.
            return None if self.fw.sent_by_box(iface, data) else (iface, data)
        if self.recent is not None and self.recent.take(data, now, capture):
            return None  # the packet it emitted on some interface moments ago (RecentOutput)
        iface = self.fw.ingress_for(data)
        if self.dnat is not None and iface is not None:
            # A server behind a fixed DNAT captured on either side of the box: as it arrived live
            # (statewall.replay_dnat).
            return self.dnat.carry(data, iface, self._known)
        return iface, data

    def emitted(
        self,
        packets: Sequence[tuple[str, bytes | bytearray]],
        now: float,
        cause: int = -1,
        source: bytes | bytearray | None = None,
    ) -> None:
        if self.recent is not None and packets:
            self.recent.emitted(packets, now, cause, source)

    def dnat_summary(self) -> dict[str, Any]:
        """The summary's DNAT entries: with ``--ingress auto`` and an iptables ruleset with DNAT
        rules, the packets of a server behind a fixed DNAT carried across it and the rules replay
        does not carry (``statewall.replay_dnat``); nothing otherwise."""
        d = self.dnat
        if d is None or not (d.forwards or d.not_carried):
            return {}
        return {"dnat_carried": d.carried, "dnat_not_carried": list(d.not_carried)}


def merged_captures(readers: Sequence[CaptureReader]) -> Iterator[tuple[float, int, int, bytes, bool]]:
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
    syslog: Sequence[Any] = (),
    counters: Counters | None = None,
    config_text: str | None = None,
    report: bool = True,
) -> dict[str, Any]:
    """Replay ``captures`` (``(ingress interface or None for auto, path)``) through ``policy``.

    Writes OUTDIR's files (see the module docstring) and returns the summary also written to
    ``summary.json``. ``firewall`` replaces the engine built from ``policy`` (tests, or a caller that
    wants to inspect the engine afterwards). ``at_end(firewall, time)`` is called after the last packet,
    before the drain, while the tables still hold what the capture left in them (``--show``).
    ``fast_path=False`` keeps every packet of the engine built here on its Python path. ``syslog``:
    ``statewall.syslog.Target`` servers that get every message as the configuration's ``logging trap``
    admits it (ASA dialect). ``counters``: the ``Counters`` to feed (a caller that shows tables built
    from them afterwards: show nat, show interface). ``config_text`` is the configuration's text for
    the report's hit counts when ``policy.source_file`` is not a file to read it from; ``report=False``
    writes no ``report.html`` (``statewall report OUTDIR`` can write it later).
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
        asalog = AsaLog(policy)
        outputs = Outputs(
            out,
            policy.interfaces,
            stack,
            hostname,
            linux.format_event if linux_log else asalog.format_event,
            counters,
        )
        outputs.linux = linux_log
        if syslog and not linux_log:
            from .syslog import SyslogSender

            outputs.sender = stack.enter_context(SyslogSender(asalog, syslog))
        bar = _progress_bar(stack, readers) if progress else None

        packets_in = forwarded = dropped_on_receive = unassigned = reordered = truncated = sent_by_fw = 0
        # Forwarded packets a real box would have treated in a way statewall does not model (a crypto
        # map would have encrypted them, ...), by feature: counted apart, never as plainly forwarded.
        gaps = GapMatcher(policy, fw)
        not_modelled: Counter[str] = Counter()
        per_capture_unassigned: Counter[int] = Counter()
        per_capture_truncated: Counter[int] = Counter()
        per_capture_sent: Counter[int] = Counter()
        # Which interface each packet arrives on, and which are the firewall's own output.
        arrivals = Arrivals(policy, fw, ingress)
        first: float | None = None
        now = float("-inf")
        for n, (ts, index, _seq, data, cut) in enumerate(merged_captures(readers)):
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
                arrivals.emitted(res.packets, now)
            if res.events:
                outputs.events(res.events)
            if cut:
                # Cut short by the capture's snap length: what the firewall saw cannot be known, so
                # it is not handed over (and said so), rather than dropped for its length.
                truncated += 1
                per_capture_truncated[index] += 1
                continue
            placed = arrivals.place(index, data, now)
            if placed is None:
                # The capture holds the firewall's own output too: it left the box, it did not
                # arrive (counted, not handed over).
                sent_by_fw += 1
                per_capture_sent[index] += 1
                continue
            iface, data = placed
            if iface is None:
                # No route back to the source: the firewall could not have received it on any
                # interface we could name, so it is not handed over at all (and said so).
                unassigned += 1
                per_capture_unassigned[index] += 1
                continue
            packets_in += 1
            outputs.counters.packet(iface, len(data), out=False)
            arrived = fw.replay_rewrite(iface, data, now)
            outputs.arrival(iface, arrived, now)
            # The engine rewrites what it forwards in place (NAT): the gaps read it as it arrived.
            as_arrived = bytes(arrived) if gaps.active else arrived
            res = fw.receive(iface, arrived, now)
            if res.packets:
                arrivals.emitted(res.packets, now, index, data)
            if gaps.active and res.packets:
                for u in gaps.forwarded(iface, res.packets, as_arrived):
                    not_modelled[u.feature] += 1
            events = res.events
            drop = next((ev for ev in events if type(ev) is Drop), None) if events else None
            if res.packets or drop is not None:
                cid = conn_id_of(fw, arrived, events)
                if drop is not None:
                    outputs.dropped(arrived, now, drop, cid)
                if res.packets:
                    outputs.packets(
                        res.packets, now, f"conn {cid}; forwarded" if cid is not None else "forwarded"
                    )
            if events:
                outputs.events(events)
            if drop is not None:
                dropped_on_receive += 1
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
                    "sent_by_firewall": per_capture_sent[i],
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
            # Not replayed: the firewall's own output, in a capture of the link it left by (pinned:
            # Firewall.sent_by_box; auto: a copy of what it emitted moments before, RecentOutput).
            "sent_by_firewall": sent_by_fw,
            # Not replayed: cut short by the capture's snap length (see captures[].snaplen).
            "truncated": truncated,
            "reordered": reordered,
            "drops_by_reason": counters["drops_by_reason"],
            "not_modelled": dict(sorted(not_modelled.items())),
            "packets_out": {iface: w.count for iface, w in sorted(outputs.writers.items())},
            **counter_summary(counters),
            "log_lines": outputs.log_lines,
            "outputs": {
                "log": "log.txt",
                "events": "events.jsonl",
                "captures": {iface: output_name(iface) for iface in sorted(outputs.writers)},
                "asp_drop": ASP_DROP,
                "arrived": {iface: output_name(iface) for iface in sorted(outputs.arrived)},
                "report": REPORT_NAME if report else None,
            },
        }
    summary.update(arrivals.dnat_summary())
    with open(out / "summary.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=False)
        f.write("\n")
    if report:
        write_report(out, config_text)
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
