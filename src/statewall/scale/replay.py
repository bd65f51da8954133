"""Sharded replay: one replay spread over shards on Dask distributed, merged into one process's outputs.

``replay(policy, captures, outdir, workers=N)`` writes the same files as ``statewall.replay.replay``
(per-interface pcapng captures with their comments, ``arrived/``, ``asp-drop.pcap``, ``log.txt`` through
the configuration's logging filters, ``events.jsonl``, ``summary.json``, ``report.html``) from N engines
instead of one:

1. The driver (this process) reads the captures in timestamp order, a chunk of ``CHUNK`` packets at a
   time, numbers every packet (its global index) and hands each to the shard of its inside host
   (``shardkey.ShardKey``). No shard and no chunk holds more than ``CHUNK`` packets.
2. A shard (``ShardEngine``, a Dask actor on one worker process) owns one ``Firewall`` built from the
   policy with its share of the global limits (``shard_policy``). It receives its packets as one process
   would and lets its timers fire at the global packet where one process would have fired them: every
   shard gets every chunk's timeline (the packet indices where time moves), so an expiry due at time t
   happens at the first packet of the whole capture at or after t (and never before the packet after
   the one that queued it), exactly as one process's ``advance`` at every packet does. Its outputs come
   back as records keyed by (global index, phase: 0 timers / 1 the packet itself).
3. The driver merges each chunk's records of all shards by key into the output files while the shards
   work on the next chunk (a chunk's records are final: every shard has swept its timers up to the
   chunk's last packet). Counters and totals of the summary are summed.

Each shard places its packets as one process does (``statewall.replay.Arrivals``: the firewall's own
output in a two-way capture left out and counted, a fixed iptables DNAT carried in auto mode), from its
own emissions; the shard key sends both faces of a packet to one shard (``shardkey``).

What may differ from one process (docs/scale.md): the PAT port chosen for a host (each shard allocates
from its own port blocks) and everything that carries that port; the order of outputs that one timer
sweep at one instant produced in different shards (here by shard, there by queue order); which
connections a global limit (class ``conn-max``, ``embryonic-conn-max``) refuses once it is reached,
since each shard holds its share of it; and, not modelled, packets captured in a dynamic translation's
mapped coordinates (keyed by their peer, counted in the summary's ``shards.not_modelled``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import time
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..events import ConnBuilt, ConnTeardown, Drop
from ..gaps import GapMatcher
from ..logfmt import linux
from ..logfmt.asalog import AsaLog
from ..logfmt.counters import ASA_NEAREST, Counters
from ..logfmt.jsonl import event_to_json
from ..pcapio import CaptureReader, PcapngWriter, PcapWriter
from ..policy import Policy
from ..replay import (
    ASP_DROP,
    Arrivals,
    ReplayError,
    conn_id_of,
    counter_summary,
    merged_captures,
    output_name,
)
from ..report import REPORT_NAME, write_report
from .shardkey import ShardKey

# Packets read, keyed and sent to the shards at a time: bounds the driver's and each shard's memory.
CHUNK = 16384

_TIMERS, _PACKET = 0, 1  # phases of one global index: the timer sweep before the packet, the packet
# A shard's connection number N is written as _PLACEHOLDER + N; the merge puts the box's number there.
# Thirteen digits: no count, port or address field of a log line or event reaches it.
_PLACEHOLDER = 9_000_000_000_000
_MASTER = 8_000_000_000_000  # the same for the number of a connection's master (``ConnBuilt.master``)


def shard_policy(policy: Policy, count: int) -> Policy:
    """``policy`` with the global limits divided between ``count`` shards, as the ASA divides them
    between its cores: each shard admits ``ceil(limit / count)``, so the whole admits at most
    ``count - 1`` more than the limit (Cisco ASA configuration guide, connection limits: "the ASA allows
    up to n-1 extra connections and embryonic connections, where n is the number of cores").

    Global: a class's ``conn-max`` and ``embryonic-conn-max`` (every host of the class together) and a
    NAT rule's connection limits when its real side is more than one address. Per host and therefore
    exact in the host's shard: ``per-client-max``, ``per-client-embryonic-max`` and the limits of a
    NAT rule for one real host.
    """
    if count == 1:
        return policy
    out = copy.deepcopy(policy)

    def share(limit: int | None) -> int | None:
        return math.ceil(limit / count) if limit else limit

    for pmap in out.policy_maps.values():
        for cls in pmap.classes:
            conn = cls.connection
            if conn is not None:
                conn.conn_max = share(conn.conn_max)
                conn.embryonic_conn_max = share(conn.embryonic_conn_max)
    for rule in out.nat_rules:
        hosts = sum(net.num_addresses for net in rule.real)
        if hosts != 1:
            rule.max_conns = share(rule.max_conns) or 0
            rule.embryonic_limit = share(rule.embryonic_limit) or 0
            rule.udp_max_conns = share(rule.udp_max_conns) or 0
    return out


def port_translation(policy: Policy) -> str | None:
    """The text of the first iptables rule that allocates ports (SNAT, MASQUERADE), None if there is
    none. A sharded replay gives each shard its own port blocks of them (``NfNat.port_share``); a live
    firewall's steering program does not know their addresses (``statewall run --workers`` refuses)."""
    for tables in (policy.netfilter, policy.ip6_netfilter):
        nat = (tables or {}).get("nat")
        for chain in nat.chains.values() if nat is not None else ():
            for r in chain.rules:
                if r.target in ("SNAT", "MASQUERADE"):
                    return r.origin.text.strip() or r.target
    return None


class ShardEngine:
    """One shard: an engine for the packets of the hosts it owns, and their outputs as records.

    Run as a Dask actor (one per worker process) or in the driver's own process (``inline``). The
    driver calls ``feed`` once per chunk, in order, then ``finish`` once.
    """

    def __init__(
        self,
        policy: Policy,
        shard: int,
        count: int,
        ingress: Sequence[str | None],
        fast_path: bool = True,
        hostname: str | None = None,
        seed: bytes | None = None,
    ) -> None:
        from ..engine import Firewall

        self.shard = shard
        # One secret for every shard, as one box has one: a connection's randomized sequence numbers
        # and SYN cookies do not depend on the shard it fell in.
        self.fw = Firewall(shard_policy(policy, count), seed=seed, fast_path=fast_path)
        if count > 1:
            # PAT ports from this shard's own blocks (statewall.nat.PORT_BLOCK_BITS): no two shards
            # give one mapped port of an address to two hosts.
            self.fw.nat.port_share = (shard, count)
            # The same for an iptables ruleset's SNAT and MASQUERADE (Linux's allocator, nf_nat).
            self.fw.nf_nat.port_share = (shard, count)
        self.hostname = hostname
        # Where each packet arrives and which are the box's own output, as one process decides it
        # (statewall.replay.Arrivals): this shard's emissions are the ones its packets can copy.
        self.arrivals = Arrivals(policy, self.fw, ingress)
        # An engine running an iptables ruleset logs as Linux does; an ASA's messages pass the
        # configuration's logging filters (AsaLog), as one process's do.
        self.linux = getattr(self.fw, "netfilter", None) is not None
        self.format = linux.format_event if self.linux else AsaLog(policy).format_event
        self.counters = Counters()
        # Forwarded packets a real box would have treated in a way statewall does not model (gaps).
        self.gaps = GapMatcher(policy, self.fw)
        self.not_modelled: Counter[str] = Counter()
        self.last = -1  # global index of this shard's last timer sweep or packet
        self.packets_in = self.forwarded = self.dropped_on_receive = 0
        # Packets handed over that the shard key placed by their peer, an end being a dynamic
        # translation's mapped address (shardkey: not modelled with more than one shard).
        self.keyed_by_peer = 0
        self.unassigned: Counter[int] = Counter()
        self.sent_by_firewall: Counter[int] = Counter()
        self._out: list[tuple] = []
        self._cidx: list[int] = []
        self._cnow: list[float] = []
        self.cpu = 0.0  # processor seconds of this thread in feed and finish
        self.chunks = 0  # chunks fed so far

    # One process calls ``advance(now)`` before every packet; a timer queued for time d therefore runs
    # at the first packet whose time is >= d, and not before the packet after the sweep or packet that
    # queued it. ``_sweep_until`` finds those packets in the chunk's timeline and runs the sweeps there.
    def _sweep_until(self, upto: int) -> None:
        fw, cidx, cnow = self.fw, self._cidx, self._cnow
        while True:
            due = fw.next_deadline()
            if due is None:
                return
            k = bisect_left(cnow, due)
            if k == len(cnow):
                return  # due after this chunk's last time
            at = max(cidx[k], self.last + 1)
            if at > upto:
                return
            self._advance(at, cnow[bisect_right(cidx, at) - 1])

    def _advance(self, index: int, now: float) -> None:
        res = self.fw.advance(now)
        self.last = index
        if res.packets:
            self.arrivals.emitted(res.packets, now)
        self._emit(index, _TIMERS, now, res.packets, res.events)

    def _emit(self, index: int, phase: int, now: float, packets, events, cid=None, forwarded=False) -> None:
        """Records of one sweep or packet: output packets (kind 0: with ``forwarded`` the received
        packet's output, commented with its connection ``cid``, this shard's number), then events."""
        out = self._out
        count = self.counters.packet
        for iface, data in packets:
            count(iface, len(data), out=True)
            out.append((index, phase, 0, iface, now, bytes(data), cid, forwarded))
        if events:
            self.counters.feed(events)
            fmt, host = self.format, self.hostname
            for ev in events:
                local = getattr(ev, "conn_id", None)
                if local is None:
                    out.append(
                        (index, phase, 1, fmt(ev, hostname=host, timestamp=True), event_to_json(ev), None)
                    )
                else:
                    # Connection numbers are the box's, in the order connections were built (a shard
                    # numbers its own from 1): formatted with a placeholder number the merge replaces.
                    ev.conn_id = _PLACEHOLDER + local
                    master = getattr(ev, "master", None)  # an FTP data connection's control connection
                    if master is not None:
                        ev.master = _MASTER + master
                    lines = fmt(ev, hostname=host, timestamp=True)
                    role = 1 if type(ev) is ConnBuilt else 2 if type(ev) is ConnTeardown else 0
                    out.append((index, phase, 2, lines, event_to_json(ev), local, role, master))

    def feed(self, chunk: bytes) -> bytes:
        """One chunk, pickled: ``(number, packets, cidx, cnow, end)``, the packets ``(global index, time,
        capture, bytes, keyed by peer)`` of this shard in a chunk that ends at global index ``end``,
        ``cidx``/``cnow`` the chunk's timeline (its first index and every index where the time moves,
        with the time). Returns the chunk's output records, pickled.

        Both ways the chunk travels as one pickled blob: Dask would otherwise walk a list of tuples
        element by element (measured: 4x the engine's own time for a chunk of 8 000 packets)."""
        started = time.thread_time()
        seq, packets, cidx, cnow, end = pickle.loads(chunk)
        if seq != self.chunks:
            raise RuntimeError(f"shard {self.shard}: chunk {seq} arrived when chunk {self.chunks} was due")
        self.chunks += 1
        self._cidx, self._cnow = cidx, cnow
        fw, arrivals = self.fw, self.arrivals
        for index, now, capture, data, peer in packets:
            self._sweep_until(index)
            if self.last < index:
                self._advance(index, now)
            self.last = index
            placed = arrivals.place(capture, data, now)
            if placed is None:
                self.sent_by_firewall[capture] += 1  # the box's own output (statewall.replay)
                continue
            iface, data = placed
            if iface is None:
                self.unassigned[capture] += 1
                continue
            self.packets_in += 1
            if peer:
                self.keyed_by_peer += 1
            self.counters.packet(iface, len(data), out=False)
            arrived = fw.replay_rewrite(iface, data, now)
            # What reached the interface (arrived/<iface>.pcap), kind 3.
            # The engine rewrites what it forwards in place (NAT): the gaps read it as it arrived.
            as_arrived = bytes(arrived)
            self._out.append((index, _PACKET, 3, iface, now, as_arrived))
            res = fw.receive(iface, arrived, now)
            if res.packets:
                arrivals.emitted(res.packets, now, capture, data)
            if self.gaps.active and res.packets:
                for u in self.gaps.forwarded(iface, res.packets, as_arrived):
                    self.not_modelled[u.feature] += 1
            events = res.events
            drop = next((ev for ev in events if type(ev) is Drop), None) if events else None
            cid = conn_id_of(fw, arrived, events) if res.packets or drop is not None else None
            if drop is not None:
                # asp-drop.pcap, kind 4, as statewall.replay._Outputs.dropped words it (the merge adds the
                # connection's number).
                reason = drop.reason if self.linux else ASA_NEAREST.get(drop.reason, drop.reason)
                text = f"Drop-reason: ({reason.keyword}) {reason.description}; ingress {drop.interface}"
                self._out.append((index, _PACKET, 4, text, now, bytes(arrived), cid))
                self.dropped_on_receive += 1
            elif res.packets:
                self.forwarded += 1
            self._emit(index, _PACKET, now, res.packets, events, cid, True)
        self._sweep_until(end)
        out, self._out = self._out, []
        blob = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
        self.cpu += time.thread_time() - started
        return blob

    def finish(self, total: int, drain_end: float | None) -> dict[str, Any]:
        """After the last chunk: the drain's sweep (keyed after every packet) and the shard's totals."""
        started = time.thread_time()
        if drain_end is not None:
            res = self.fw.advance(drain_end)
            self._emit(total, _TIMERS, drain_end, res.packets, res.events)
        out, self._out = self._out, []
        records = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
        self.cpu += time.thread_time() - started
        return {
            "cpu": self.cpu,
            "records": records,
            "counters": self.counters,
            "packets_in": self.packets_in,
            "forwarded": self.forwarded,
            "dropped_on_receive": self.dropped_on_receive,
            "unassigned": dict(self.unassigned),
            "sent_by_firewall": dict(self.sent_by_firewall),
            "not_modelled": dict(self.not_modelled),
            "dnat": self.arrivals.dnat_summary(),
            "keyed_by_peer": self.keyed_by_peer,
        }


class _Inline:
    """Shards in this process, one after the other (one worker, or tests)."""

    def __init__(self, count: int, args: tuple) -> None:
        self.count = count
        self.shards = [ShardEngine(args[0], i, count, *args[1:]) for i in range(count)]

    def submit(self, shard: int, method: str, *args: Any) -> Any:
        return getattr(self.shards[shard], method)(*args)

    @staticmethod
    def result(shard: int, handle: Any) -> Any:
        return handle

    def close(self) -> None:
        pass


class _Dask:
    """Shards as Dask actors, spread over the cluster's workers in turn."""

    def __init__(self, count: int | None, args: tuple, workers: int | None, cluster: str | None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise ReplayError(f"--workers/--cluster need dask distributed ({exc})") from None
        self._cluster = None
        if cluster is None:
            import logging

            # One single-threaded process per worker (the engine is pure Python: threads would share one
            # interpreter lock); the scheduler's HTTP server on a free loopback port (a fixed one would
            # collide with another cluster, a public one would serve anyone); the nanny's memory limit stays
            # the default share of the machine, so a runaway shard is restarted, not the machine swapped.
            self._cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR,
            )
            self.client = Client(self._cluster)
            # The workers register with the scheduler one by one: place no actor before all are there.
            self.client.wait_for_workers(workers, timeout=120)
        else:
            try:
                self.client = Client(cluster, timeout=30)
            except OSError as exc:
                raise ReplayError(f"--cluster {cluster}: cannot reach the scheduler ({exc})") from None
        addresses = sorted(self.client.ncores())  # every worker (scheduler_info may list only some)
        if not addresses:
            self.close()
            raise ReplayError("the Dask cluster has no workers")
        self.workers = addresses
        # Without a number given, one shard per worker of the cluster.
        self.count = count = count or len(addresses)
        futures = [
            self.client.submit(
                ShardEngine, args[0], i, count, *args[1:], actor=True, workers=[addresses[i % len(addresses)]]
            )
            for i in range(count)
        ]
        self.actors = [self._wait(i, f) for i, f in enumerate(futures)]

    @staticmethod
    def _wait(shard: int, future: Any) -> Any:
        try:
            return future.result()
        except Exception as exc:
            raise ReplayError(
                f"shard {shard}: its worker failed ({type(exc).__name__}: {exc}); the replay stops, the "
                "outputs so far are incomplete"
            ) from exc

    def submit(self, shard: int, method: str, *args: Any) -> Any:
        return getattr(self.actors[shard], method)(*args)

    def result(self, shard: int, handle: Any) -> Any:
        return self._wait(shard, handle)

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def replay(
    policy: Policy,
    captures: Sequence[tuple[str | None, str | os.PathLike[str]]],
    outdir: str | os.PathLike[str],
    *,
    workers: int | None = None,
    shards: int | None = None,
    cluster: str | None = None,
    inline: bool = False,
    drain: float = 0.0,
    hostname: str | None = None,
    fast_path: bool = True,
    seed: bytes | None = None,
    chunk: int = CHUNK,
    config_text: str | None = None,
    report: bool = True,
) -> dict[str, Any]:
    """Replay ``captures`` through ``policy`` in ``shards`` shards (default: one per worker).
    ``report=False``: no report.html (``statewall report OUTDIR`` writes it later).

    ``workers``: processes of a Dask ``LocalCluster`` started for this replay (default: the machine's
    cores); ``cluster``: a running scheduler's address instead (its workers run the shards, which need
    statewall installed). ``inline``: every shard in this process, one after the other (no Dask; the
    answers are the same). ``seed``: the firewall's secret (sequence randomization, SYN cookies),
    random unless given; every shard gets the same one. Writes and returns what
    ``statewall.replay.replay`` does; the summary adds ``shards``: how many, where they ran and how the
    packets and connections fell between them.
    """
    if not captures:
        raise ReplayError("no capture to replay")
    for iface, path in captures:
        if iface is not None and iface not in policy.interfaces:
            known = ", ".join(sorted(policy.interfaces)) or "none"
            raise ReplayError(f"{os.fspath(path)}: no interface named {iface!r} (interfaces: {known})")
    if drain < 0:
        raise ReplayError("--drain must not be negative")
    if workers is None and cluster is None:
        workers = os.cpu_count() or 1
    if (workers is not None and workers < 1) or (shards is not None and shards < 1):
        raise ReplayError("--workers must be at least 1")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    ingress = [iface for iface, _ in captures]
    args = (policy, ingress, fast_path, hostname, seed if seed is not None else os.urandom(16))

    with ExitStack() as stack:
        runner: _Inline | _Dask
        if inline:
            runner = _Inline(shards or workers or 1, args)
        else:
            runner = _Dask(shards or workers, args, workers, cluster)
        stack.callback(runner.close)
        count = runner.count
        key = ShardKey(policy, count)
        readers = [stack.enter_context(CaptureReader(path)) for _, path in captures]
        merger = _Merger(out, policy.interfaces, stack)
        in_shard = [0] * count

        first: float | None = None
        now = float("-inf")
        reordered = 0
        total = 0
        in_flight: deque[list[Any]] = deque()
        sent = 0
        stream = merged_captures(readers)
        truncated: Counter[int] = Counter()
        while True:
            parts: list[list[tuple[int, float, int, bytes]]] = [[] for _ in range(count)]
            cidx: list[int] = []
            cnow: list[float] = []
            n = 0
            for ts, capture, _seq, data, cut in stream:
                if first is None:
                    first = ts
                if ts < now:
                    reordered += 1  # replayed at the latest time seen, as one process does
                else:
                    now = ts
                if not cnow or now != cnow[-1]:
                    cidx.append(total)
                    cnow.append(now)
                if cut:
                    # Cut short by the snap length: not handed to any engine, as one process does.
                    truncated[capture] += 1
                else:
                    parts[key(data, ingress[capture])].append((total, now, capture, data, key.peer))
                total += 1
                n += 1
                if n == chunk:
                    break
            if n:
                # Sent at once, before the previous chunk's results are waited for: a shard always has
                # its next chunk queued (calls to one actor run in the order sent; ``feed`` checks it).
                for i, part in enumerate(parts):
                    in_shard[i] += len(part)
                blobs = [
                    pickle.dumps((sent, p, cidx, cnow, total - 1), pickle.HIGHEST_PROTOCOL) for p in parts
                ]
                in_flight.append([runner.submit(i, "feed", blob) for i, blob in enumerate(blobs)])
                sent += 1
            # The oldest chunk in flight is merged and written while the shards work on the newer one.
            while in_flight and (len(in_flight) > 1 or not n):
                merger.add([runner.result(i, handle) for i, handle in enumerate(in_flight.popleft())])
            if n == 0:
                break
        last = now if first is not None else None
        drain_end = last + drain if last is not None and drain > 0 else None
        handles = [runner.submit(i, "finish", total, drain_end) for i in range(count)]
        totals = [runner.result(i, h) for i, h in enumerate(handles)]
        merger.add([t.pop("records") for t in totals])
        packets_out, log_lines = merger.packets_out(), merger.log_lines
        arrived = sorted(merger.arrived)
        capture_rows = [
            {
                "path": os.fspath(path),
                "ingress": iface or "auto",
                "format": r.format,
                **r.stats.to_dict(),
                "truncated": truncated[i],
                "snaplen": r.snaplen,
            }
            for i, ((iface, path), r) in enumerate(zip(captures, readers))
        ]

    counters = Counters()
    unassigned: Counter[int] = Counter()
    sent_by_firewall: Counter[int] = Counter()
    not_modelled: Counter[str] = Counter()
    for t in totals:
        _add_counters(counters, t["counters"])
        unassigned.update({int(k): v for k, v in t["unassigned"].items()})
        sent_by_firewall.update({int(k): v for k, v in t["sent_by_firewall"].items()})
        not_modelled.update(t["not_modelled"])
    c = counters.to_summary()
    packets_in = sum(t["packets_in"] for t in totals)
    forwarded = sum(t["forwarded"] for t in totals)
    summary: dict[str, Any] = {
        "config": policy.source_file,
        "captures": [
            {**row, "unassigned": unassigned[i], "sent_by_firewall": sent_by_firewall[i]}
            for i, row in enumerate(capture_rows)
        ],
        "first_time": first,
        "last_time": last,
        "drain": drain,
        "packets_in": packets_in,
        "forwarded": forwarded,
        "dropped": c["dropped"],
        "held": packets_in - forwarded - sum(t["dropped_on_receive"] for t in totals),
        "unassigned": sum(unassigned.values()),
        "sent_by_firewall": sum(sent_by_firewall.values()),
        "truncated": sum(truncated.values()),
        "reordered": reordered,
        "drops_by_reason": c["drops_by_reason"],
        "not_modelled": dict(sorted(not_modelled.items())),
        "packets_out": packets_out,
        **counter_summary(c),
        "log_lines": log_lines,
        "outputs": {
            "log": "log.txt",
            "events": "events.jsonl",
            "captures": {iface: output_name(iface) for iface in packets_out},
            "asp_drop": ASP_DROP,
            "arrived": {iface: output_name(iface) for iface in arrived},
            "report": REPORT_NAME if report else None,
        },
        "shards": {
            "count": count,
            "runner": "inline" if inline else (cluster or f"LocalCluster({workers} processes)"),
            "packets": in_shard,
            "connections_built": [sum(t["counters"].conns_built.values()) for t in totals],
            "cpu_seconds": [round(t["cpu"], 3) for t in totals],
            "not_modelled": _not_modelled_in_shards(totals),
        },
    }
    dnat = [t["dnat"] for t in totals if t["dnat"]]
    if dnat:
        # Every shard reads the same DNAT rules (the same not-carried list); each carried its own
        # hosts' packets.
        summary["dnat_carried"] = sum(d["dnat_carried"] for d in dnat)
        summary["dnat_not_carried"] = dnat[0]["dnat_not_carried"]
    with open(out / "summary.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=False)
        f.write("\n")
    if report:
        write_report(out, config_text)
    return summary


# What the sharded replay does not model (docs/scale.md), as summary.json's ``shards.not_modelled``
# names it: the packets replayed by another rule than one process's, counted.
KEYED_BY_PEER = (
    "in a dynamic translation's mapped coordinates (the firewall's output or a reply captured on the "
    "translated side): keyed by the peer, not the inside host; --workers 1 replays them as one process"
)


def _not_modelled_in_shards(totals: Sequence[dict[str, Any]]) -> dict[str, int]:
    n = sum(t["keyed_by_peer"] for t in totals)
    return {KEYED_BY_PEER: n} if n else {}


def _add_counters(total: Counters, part: Counters) -> None:
    total.drops.update(part.drops)
    total.conns_built.update(part.conns_built)
    total.conns_torn_down.update(part.conns_torn_down)
    total.teardown_reasons.update(part.teardown_reasons)
    total.xlates_built += part.xlates_built
    total.xlates_torn_down += part.xlates_torn_down
    total.acl_hits.update(part.acl_hits)
    total.icmp_sent += part.icmp_sent
    total.xlate_hits.update(part.xlate_hits)
    total.drops_by_interface.update(part.drops_by_interface)
    for iface, io in part.interface_io.items():
        mine = total.interface_io.setdefault(iface, [0, 0, 0, 0])
        for i, n in enumerate(io):
            mine[i] += n


class _Merger:
    """The outputs of all shards, written into OUTDIR's files in (global index, phase, shard) order.

    Fed once per chunk with every shard's records of it: after a chunk, a shard has run every timer
    sweep up to the chunk's last packet, so nothing later can sort before what the chunk holds, and
    each chunk is merged and written while the shards work on the next one.

    Connections are numbered here, from 1 in the order they were built, as one engine numbers them:
    a shard's number for a connection is replaced by the merged one in every event that names it. The
    numbers of the shards' live connections are the merge's only state besides the open files.
    """

    def __init__(self, out: Path, interfaces: Sequence[str], stack: ExitStack) -> None:
        self.out = out
        self.stack = stack
        self.writers: dict[str, PcapngWriter] = {}
        self.arrived: dict[str, PcapWriter] = {}
        for iface in interfaces:
            self.writer(iface)
        self.asp_drop = stack.enter_context(PcapngWriter(out / ASP_DROP))
        self.log = stack.enter_context(open(out / "log.txt", "w", encoding="utf-8"))  # noqa: SIM115
        self.jsonl = stack.enter_context(open(out / "events.jsonl", "w", encoding="utf-8"))  # noqa: SIM115
        self.log_lines = 0
        self.next_id = 1
        self.ids: dict[tuple[int, int], int] = {}
        self.torn: dict[tuple[int, int], int] = {}
        self.at: tuple[int, int] = (-1, -1)

    def writer(self, iface: str) -> PcapngWriter:
        w = self.writers.get(iface)
        if w is None:
            w = self.writers[iface] = self.stack.enter_context(PcapngWriter(self.out / output_name(iface)))
        return w

    def arrival(self, iface: str) -> PcapWriter:
        w = self.arrived.get(iface)
        if w is None:
            (self.out / "arrived").mkdir(exist_ok=True)
            w = self.arrived[iface] = self.stack.enter_context(
                PcapWriter(self.out / "arrived" / output_name(iface))
            )
        return w

    def number(self, shard: int, local: int) -> int:
        """The box's number of a shard's connection; one not built yet is numbered now: a packet's
        record names its connection before the event that built it (one process numbers at the build,
        which happens while that same packet is handled, so the order is the same)."""
        number = self.ids.get((shard, local)) or self.torn.get((shard, local))
        if number is None:
            number = self.ids[(shard, local)] = self.next_id
            self.next_id += 1
        return number

    def add(self, blobs: Sequence[bytes]) -> None:
        """One chunk's records of every shard (pickled, in shard order), in (global index, phase,
        shard) order and, within that, in the order the shard emitted them."""
        # Each shard's records are in (index, phase) order already: one stable sort of them all, shard
        # after shard, merges them (Timsort takes the sorted runs as they are).
        records: list[tuple] = []
        owner: list[int] = []
        for shard, b in enumerate(blobs):
            part = pickle.loads(b)
            records += part
            owner += [shard] * len(part)
        if len(blobs) > 1:
            keys = [r[0] * 2 + r[1] for r in records]  # (global index, phase) as one number
            order: Iterable[int] = sorted(range(len(records)), key=keys.__getitem__)
        else:
            order = range(len(records))
        log, jsonl, ids, torn = self.log, self.jsonl, self.ids, self.torn
        for k in order:
            rec, shard = records[k], owner[k]
            index, phase = rec[0], rec[1]
            if (index, phase) != self.at:
                # A connection torn down is named until the end of the sweep or packet that tore it
                # down (conntrack's DESTROY follows the teardown), then never again.
                self.at = (index, phase)
                torn.clear()
            kind = rec[2]
            if kind == 0:
                comment = None
                if rec[7]:
                    comment = (
                        "forwarded" if rec[6] is None else f"conn {self.number(shard, rec[6])}; forwarded"
                    )
                self.writer(rec[3]).write(rec[5], rec[4], comment)
                continue
            if kind == 3:
                self.arrival(rec[3]).write(rec[5], rec[4])
                continue
            if kind == 4:
                text = rec[3] if rec[6] is None else f"{rec[3]}; conn {self.number(shard, rec[6])}"
                self.asp_drop.write(rec[5], rec[4], text)
                continue
            lines, text = rec[3], rec[4]
            if kind == 2:
                local = (shard, rec[5])
                if rec[6] == 1:  # built (numbered already if a packet's record named it first)
                    number = self.number(shard, rec[5])
                elif rec[6] == 2:  # torn down: named again at most in this sweep or packet
                    number = torn[local] = ids.pop(local, None) or torn.get(local, rec[5])
                else:
                    number = ids.get(local) or torn.get(local, rec[5])
                marker, num = str(_PLACEHOLDER + rec[5]), str(number)
                lines, text = [line.replace(marker, num) for line in lines], text.replace(marker, num)
                if rec[7] is not None:
                    marker, num = str(_MASTER + rec[7]), str(ids.get((shard, rec[7]), rec[7]))
                    lines, text = [line.replace(marker, num) for line in lines], text.replace(marker, num)
            for line in lines:
                log.write(line + "\n")
            self.log_lines += len(lines)
            jsonl.write(text + "\n")

    def packets_out(self) -> dict[str, int]:
        return {iface: w.count for iface, w in sorted(self.writers.items())}
