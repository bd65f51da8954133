"""The live data path: one thread, one epoll, every TUN of the firewall, the engine in between.

Owns the forwarding loop of ``statewall run``. Each readable TUN is drained (up to ``batch`` reads, then
the next one gets its turn; epoll is level-triggered so nothing is lost); each packet goes to
``Firewall.receive`` and whatever comes back is written to the egress interface's TUN. ``advance`` runs
on the real clock every ``tick`` seconds (or earlier when the engine says a timer is due). SIGINT and
SIGTERM, or ``stop()`` from another thread, end the loop after the packet in hand.

Per packet the loop reads into one preallocated buffer, copies the IP packet out (the engine may keep
it), and writes with ``writev`` so that the virtio-net header is never glued to the packet. A forwarded
packet that comes back as the very object that went in, with the same length, is written with the
header it arrived with: a super-packet stays a super-packet and a partial checksum stays partial (the
engine, told ``csum_partial``, keeps it partial). Everything else (packets the engine built, resized or
copied, super-packets towards a TUN that cannot take them) goes through ``_send``, which derives the
header from the packet, and segments or completes checksums in Python where the egress cannot.

Clock: ``now`` is ``time.monotonic()`` shifted once to the epoch, so it never jumps and event times
read as wall-clock time in logs.

Other file descriptors can be served from the same epoll (``watch``): the control channel
(``statewall.live.ctl``) answers ``statewall ctl`` there, in this thread, between drains, so that its
commands see the engine between packets and never race it. A ``Port.tap`` (the ASA's ``capture``) is
given each packet of its interface: arriving before the engine, leaving as written. A ``Port.record``
(``statewall run --record``, ``statewall.live.record``) is given the same, told which is which, with the
time the engine is given for an arriving packet.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .tun import TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6, Tun
from .vnet import (
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP_L4,
    NO_OFFLOAD_HDR,
    PROTO_TCP,
    PROTO_UDP,
    VNET_HDR_LEN,
    fill_l4_checksum,
    header_for,
    l4_offset,
    segment,
)

try:
    from . import _tunpump
except ImportError:  # built without a compiler (or without statewall._fastpath): the Python loop only
    _tunpump = None

# Largest read: an IP packet (GSO super-packets are capped at 64 KB) plus the virtio-net header.
READ_SIZE = 65536 + VNET_HDR_LEN + 64

_COUNTERS = (
    "rx_packets", "rx_bytes", "rx_super", "rx_errors",
    "tx_packets", "tx_bytes", "tx_errors", "tx_segmented", "tx_csum_completed",
)  # fmt: skip


class Port:
    """One firewall interface bound to one TUN, with its counters."""

    __slots__ = ("name", "tun", "fd", "hl", "offloads", "mode", "mtu", "reader", "tap", "record", *_COUNTERS)

    def __init__(self, name: str, tun: Tun) -> None:
        self.name = name
        self.tun = tun
        self.fd = tun.fd
        self.hl = tun.header_len
        self.offloads = tun.offloads if tun.vnet_hdr else 0
        # Ports with equal ``mode`` can take each other's packets with the header they arrived with.
        self.mode = self.offloads if tun.vnet_hdr else -1
        self.mtu = tun.mtu
        # FileIO.readinto returns None on EAGAIN instead of raising: no exception per drained fd.
        self.reader = open(tun.fd, "rb", buffering=0, closefd=False)  # noqa: SIM115 -- lives with the port
        # tap(pkt) sees every packet of this interface (a capture); None costs one test per packet.
        self.tap: Callable[[bytearray], None] | None = None
        # record(pkt, now, leaving): the run recorded as a replay's output directory (--record);
        # ``now`` is the engine's time for an arriving packet, None for one leaving.
        self.record: Callable[[bytearray, float | None, bool], None] | None = None
        for c in _COUNTERS:
            setattr(self, c, 0)

    def counters(self) -> dict[str, int]:
        return {c: getattr(self, c) for c in _COUNTERS}


class Loop:
    """The epoll loop around one engine. ``fw`` needs ``receive`` and ``advance`` (``Firewall``)."""

    def __init__(
        self,
        fw: Any,
        ports: Iterable[Port],
        *,
        tick: float = 0.1,
        batch: int = 256,
        on_events: Callable[[list], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        compiled: bool = True,
        spin: float = 0.0,
        uring: int = 32,
        uring_reads: int = 0,
        uring_taskrun: int = 0,
        collect: int = 0,
    ) -> None:
        self.fw = fw
        self.ports = list(ports)
        if len({p.name for p in self.ports}) != len(self.ports):
            raise ValueError("two ports with the same interface name")
        self.by_name = {p.name: p for p in self.ports}
        self.tick = tick
        self.batch = batch
        self.on_events = on_events
        # Called after each advance: where a log file gets flushed, ~10 times a second.
        self.on_tick = on_tick
        self.events = 0
        self.unknown_egress = 0
        self.advances = 0
        self.started = 0.0
        self._epoch = time.time() - time.monotonic()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping = False
        self._buf = bytearray(READ_SIZE)
        self._mv = memoryview(self._buf)
        params = inspect.signature(fw.receive).parameters
        # Engines that cannot be told the segment size of a super-packet are simply not told.
        self._gso_kw = "gso_size" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        # The fast path's C pump when both are built and the engine has a fast path (``_drain``).
        self._pump = _tunpump.pump if _tunpump is not None else None
        # The compiled loop (``_run``): the epoll wait and the TUNs' drains in one C call, so that a
        # wake-up for the fast path's packets runs no Python. ``compiled=False`` keeps the Python wait
        # around the pump (the bench's comparison); ``spin``: seconds the C wait polls without sleeping
        # after the last packet before it sleeps (0: sleep at once; docs/performance.md, "Fewer crossings").
        self._wait = _tunpump.wait if _tunpump is not None and compiled else None
        self.spin = spin
        # After a new flow's packet for the Python path, the compiled wait reads on in the same TUN, the
        # fast path forwarding what it takes, and hands over up to ``collect`` more new flows' packets
        # with it, stopping at one whose flow the fast path may hold (``_tunpump.collect_more``):
        # several Python-path packets per return, run back to back while the interpreter's caches are
        # warm, each flow's order kept (0: one per return; ``statewall run`` sets 16).
        self.collect = collect
        self.collected = 0  # packets handed over behind a first one (``collect``)
        # The compiled wait's events: the fast path ends a connection's close itself (the lifecycle's
        # teardown called from C) and appends the teardown's events here (``_tunpump.wait``'s events).
        self._c_events: list = []
        self.waits = 0  # calls of the compiled wait: returns to Python, each after one or more wake-ups
        # io_uring batches of the pump's TUN writes, ``uring`` at a time (0: one writev each; 32 measured
        # best for small packets, docs/performance.md). The setting is the C module's, so the process's:
        # the last Loop made decides. 0 when the extension was built without liburing.
        self.uring = uring if _tunpump is not None and _tunpump.uring(uring) else 0
        # The compiled loop's reads through io_uring (``_tunpump.wait_ring``): one multishot read per TUN
        # with ``uring_reads`` buffers, its fd in blocking mode, one io_uring_enter to wait and reap them
        # (0: read() each packet after epoll_wait; docs/performance.md). The buffers are the process's;
        # 0 when unavailable (no liburing, Linux < 6.7, io_uring disabled, more TUNs than the ring takes).
        # ``uring_taskrun``: when the kernel's reads run (0: at once, 1: cooperatively, 2: deferred to
        # the ring's wait; ``_tunpump.uring_reads``).
        self.uring_reads = (
            uring_reads
            if uring_reads
            and self._wait is not None
            and len(self.ports) <= getattr(_tunpump, "RING_PORTS_MAX", 0)
            and _tunpump.uring_reads(uring_reads, uring_taskrun)
            else 0
        )
        self._ring = False  # the ring's reads are armed: the TUNs are out of the epoll, in blocking mode
        self._outs = tuple((p.name, p.fd, p.hl, p.mode) for p in self.ports)
        deadline = getattr(fw, "next_deadline", None)
        self._next_deadline = deadline if callable(deadline) else None
        # fd -> (epoll events, callback(events)): served from the loop's epoll (the control channel).
        self._watched: dict[int, tuple[int, Callable[[int], None]]] = {}
        self._ep: select.epoll | None = None

    # ---------------------------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() + self._epoch

    def stop(self) -> None:
        """Ask the loop to end; safe from signal handlers and other threads."""
        self._stopping = True
        with contextlib.suppress(OSError):  # pipe full (a wake-up is pending anyway) or loop closed
            os.write(self._wake_w, b"\0")

    def close(self) -> None:
        for p in self.ports:
            p.reader.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def watch(self, fd: int, events: int, callback: Callable[[int], None]) -> None:
        """Serve ``fd`` from the loop: ``callback(events)`` runs in the loop thread when it is ready.

        Call from the loop thread (a callback) or before ``run()``; calling again changes the events.
        The callback must not block or raise: the packets wait while it runs.
        """
        new = fd not in self._watched
        self._watched[fd] = (events, callback)
        if self._ep is not None:
            if new:
                self._ep.register(fd, events)
            else:
                self._ep.modify(fd, events)

    def unwatch(self, fd: int) -> None:
        """Stop serving ``fd`` (before closing it)."""
        if self._watched.pop(fd, None) is not None and self._ep is not None:
            with contextlib.suppress(OSError):
                self._ep.unregister(fd)

    def counters(self) -> dict[str, Any]:
        return {
            "interfaces": {p.name: p.counters() for p in self.ports},
            "events": self.events,
            "unknown_egress": self.unknown_egress,
            "advances": self.advances,
            "fast_path": self.fast_path_counters(),
        }

    def fast_path_counters(self) -> dict[str, Any] | None:
        """The engine's compiled fast path (statewall.fastpath): connections in it now, packets it
        forwarded, packets it handed to the Python path, connections offloaded and taken back; and
        whether the C pump read them, whether the compiled loop waited (and how often it returned to
        Python). None when the engine has none."""
        fast = getattr(self.fw, "fast", None)
        if fast is None:
            return None
        return {
            "connections": len(fast),
            "packets": fast.table.hits,
            "handed_back": fast.table.misses,
            "offloads": fast.offloads,
            "syns": fast.syns,
            "returns": fast.returns,
            "pump": self._pump is not None,
            "compiled_loop": self._wait is not None,
            "waits": self.waits,
            "uring": self.uring,
            "uring_reads": self.uring_reads,
            "collected": self.collected,
        }

    @contextlib.contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM call ``stop()`` while the body runs (main thread only).

        Install it before announcing readiness: a signal that comes before ``run()`` then still ends
        the loop cleanly (``run`` returns at once) instead of killing the process.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {sig: signal.signal(sig, lambda _s, _f: self.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def run(self, *, handle_signals: bool = False) -> None:
        """Forward until ``stop()`` (or SIGINT/SIGTERM when ``handle_signals``, main thread only)."""
        with self.stop_on_signals() if handle_signals else contextlib.nullcontext():
            ep = select.epoll()
            try:
                by_fd = {}
                for p in self.ports:
                    ep.register(p.fd, select.EPOLLIN)
                    by_fd[p.fd] = p
                ep.register(self._wake_r, select.EPOLLIN)
                for fd, (events, _cb) in self._watched.items():
                    ep.register(fd, events)
                self._ep = ep
                self._run(ep, by_fd)
            finally:
                if self._ring:  # the run ended by an exception: the ring's reads go, their packets too
                    _tunpump.uring_reads_stop()
                    self._ring = False
                self._ep = None
                ep.close()

    def _run(self, ep: select.epoll, by_fd: dict[int, Port]) -> None:
        mono = time.monotonic
        epoch = self._epoch
        tick = self.tick
        wake = self._wake_r
        drain = self._drain
        poll = ep.poll
        next_deadline = self._next_deadline
        watched = self._watched
        self.started = mono() + epoch
        next_advance = self.started + tick
        cwait = self._wait
        ports = self.ports
        while not self._stopping:
            now = mono() + epoch
            if now >= next_advance:
                self._advance(now)
                next_advance = now + tick
                if next_deadline is not None:
                    due = next_deadline()
                    if due is not None and due < next_advance:
                        next_advance = max(due, now + 0.001)
            fast = getattr(self.fw, "fast", None) if cwait is not None else None
            if fast is not None and not any(p.tap or p.record for p in ports):
                if self.uring_reads and not self._ring:
                    for p in ports:  # the ring reads them: out of the epoll
                        ep.unregister(p.fd)
                    self._ring = True
                self._compiled_wait(cwait, ep.fileno(), fast.table, max(0.0, next_advance - now), by_fd)
                continue
            if self._ring:
                self._ring_off(ep)
            for fd, ev in poll(max(0.0, next_advance - now)):
                if fd == wake:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake, 512)
                    continue
                port = by_fd.get(fd)
                if port is not None:
                    drain(port)
                else:
                    w = watched.get(fd)
                    if w is not None:
                        w[1](ev)
        if self._ring:
            self._ring_off(ep)
        self._advance(mono() + epoch)

    def _ring_off(self, ep: select.epoll) -> None:
        """Back from the ring's reads to epoll and read() (a capture or a recording began, or the loop
        ends): cancel the reads, put the TUNs back in the epoll, and handle the packets the kernel had
        already read, in their order, as ``_drain`` would."""
        left = _tunpump.uring_reads_stop()
        self._ring = False
        by_fd = {p.fd: p for p in self.ports}
        for p in self.ports:
            ep.register(p.fd, select.EPOLLIN)
        receive = self.fw.receive
        for fd, raw in left:
            port = by_fd[fd]
            hl = port.hl
            if len(raw) <= hl:
                continue
            data = bytearray(raw[hl:])
            if port.tap is not None:
                port.tap(data)
            port.rx_packets += 1
            port.rx_bytes += len(data)
            if hl and raw[1]:
                port.rx_super += 1
            now = self.now()
            if port.record is not None:
                now = round(now, 6)
                port.record(data, now, False)
            self._handle(port, data, raw[:hl], now, None, receive)

    def _compiled_wait(self, cwait: Callable, epfd: int, table: Any, timeout: float, by_fd: dict) -> None:
        """One call of the C wait (``_tunpump.wait``): it sleeps in epoll_wait and drains the TUNs until
        a packet for the Python path, another ready fd, the timeout or a signal; then the counters, that
        packet (``_handle``) and the other fds here."""
        events = self._c_events
        rx, tx, pending, other = cwait(
            table, epfd, self._outs, self.batch, timeout, self._epoch, self.spin, self._ring, self.collect,
            events,
        )  # fmt: skip
        self.waits += 1
        for p, (_used, n, nb, sup, err), (tp, tb, te) in zip(self.ports, rx, tx):
            if n:
                p.rx_packets += n
                p.rx_bytes += nb
                p.rx_super += sup
            if err:
                p.rx_errors += 1
            if tp or te:
                p.tx_packets += tp
                p.tx_bytes += tb
                p.tx_errors += te
        if events:
            # The teardowns of the closes the fast path ended in this wait, before any later packet's.
            self._c_events = []
            self._events(events)
        if type(pending) is list:
            # New flows' packets the fast path passed on, in their order (``collect``).
            receive = type(self.fw).receive.__get__(self.fw)
            self.collected += len(pending) - 1
            for k, data, hdr, now, egress in pending:
                self._handle(self.ports[k], data, hdr, now, egress, receive)
        elif pending is not None:
            k, data, hdr, now, egress = pending
            # The fast path already passed on it: straight to the Python path.
            self._handle(self.ports[k], data, hdr, now, egress, type(self.fw).receive.__get__(self.fw))
        if other is not None:
            for fd, ev in other:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(fd, 512)
                    continue
                port = by_fd.get(fd)
                if port is not None:  # a TUN whose read failed: the Python drain counts and reports it
                    self._drain(port)
                    continue
                w = self._watched.get(fd)
                if w is not None:
                    w[1](ev)

    def _advance(self, now: float) -> None:
        self.advances += 1
        res = self.fw.advance(now)
        for egress, pkt in res.packets:
            out = self.by_name.get(egress)
            if out is None:
                self.unknown_egress += 1
                continue
            self._send(out, pkt, None, False, 0, 0)
        if res.events:
            self._events(res.events)
        if self.on_tick is not None:
            self.on_tick()

    def _events(self, events: list) -> None:
        self.events += len(events)
        if self.on_events is not None:
            self.on_events(events)

    # ---------------------------------------------------------------------------------------------
    # The hot path: everything bound to locals, one function call per readable fd, not per packet.

    def _drain(self, port: Port) -> None:
        fast = getattr(self.fw, "fast", None)
        if self._pump is not None and fast is not None and not any(p.tap or p.record for p in self.ports):
            self._pump_drain(port, fast.table)
            return
        readinto = port.reader.readinto
        buf = self._buf
        mv = self._mv
        hdr = mv[:VNET_HDR_LEN]
        hl = port.hl
        tap = port.tap
        record = port.record
        handle = self._handle
        receive = self.fw.receive
        mono = time.monotonic
        epoch = self._epoch
        rx = rxb = sup = 0
        try:
            for _ in range(self.batch):
                try:
                    n = readinto(mv)
                except OSError:
                    port.rx_errors += 1
                    break
                if n is None:
                    break
                if n <= hl:
                    continue
                data = buf[hl:n]
                if tap is not None:
                    tap(data)
                rx += 1
                rxb += n - hl
                if hl and buf[1]:
                    sup += 1
                if record is not None:
                    # On the microsecond, as a capture's times are: the recorded arrival and the
                    # engine's event for it then carry the same time (the report pairs them by it).
                    now = round(mono() + epoch, 6)
                    record(data, now, False)
                    handle(port, data, hdr, now, None, receive)
                    continue
                handle(port, data, hdr, mono() + epoch, None, receive)
        finally:
            port.rx_packets += rx
            port.rx_bytes += rxb
            port.rx_super += sup

    def _pump_drain(self, port: Port, table: Any) -> None:
        """``_drain`` with the C pump (``statewall.live._tunpump``): the fast path's packets are read,
        forwarded and written without Python; it stops at each packet the engine's Python path must
        see, which ``_handle`` takes as the loop above would."""
        pump = self._pump
        outs = self._outs
        ports = self.ports
        handle = self._handle
        # The fast path already passed on what the pump hands over: straight to the Python path.
        receive = type(self.fw).receive.__get__(self.fw)
        left = self.batch
        while left > 0:
            used, rx, rxb, sup, tx, pending, read_error = pump(
                table, port.fd, port.hl, port.name, port.mode, outs, left, self._epoch
            )
            port.rx_packets += rx
            port.rx_bytes += rxb
            port.rx_super += sup
            for p, (tp, tb, te) in zip(ports, tx):
                if tp or te:
                    p.tx_packets += tp
                    p.tx_bytes += tb
                    p.tx_errors += te
            if read_error:
                port.rx_errors += 1
                return
            left -= used
            if pending is None:
                return
            data, hdr, now, egress = pending
            handle(port, data, hdr, now, egress, receive)

    def _handle(
        self, port: Port, data: bytearray, hdr: Any, now: float, egress: str | None, receive: Callable
    ) -> None:
        """One packet read from ``port`` (``hdr`` its virtio-net header): to the engine unless the fast
        path already forwarded it to ``egress``, then out.

        A forwarded packet that comes back as the very object that went in, with the same length, is
        written with the header it arrived with (module docstring); anything else goes through
        ``_send``.
        """
        hl = port.hl
        partial = False
        gso_type = gso_size = 0
        if hl:
            partial = hdr[0] & F_NEEDS_CSUM == F_NEEDS_CSUM
            gso_type = hdr[1]
            if gso_type:
                gso_size = hdr[4] | hdr[5] << 8
        if egress is not None:
            packets, events = [(egress, data)], None
        else:
            if not hl:
                res = receive(port.name, data, now)
            elif gso_type and self._gso_kw:
                res = receive(port.name, data, now, csum_partial=partial, gso_size=gso_size)
            else:
                res = receive(port.name, data, now, csum_partial=partial)
            packets, events = res.packets, res.events
        n = len(data)
        for egress_name, pkt in packets:
            out = self.by_name.get(egress_name)
            if out is None:
                self.unknown_egress += 1
            elif pkt is data and out.mode == port.mode and len(pkt) == n:
                try:
                    if hl:
                        os.writev(out.fd, (hdr, pkt))
                    else:
                        os.write(out.fd, pkt)
                    out.tx_packets += 1
                    out.tx_bytes += n
                    if out.tap is not None:
                        out.tap(pkt)
                    if out.record is not None:
                        out.record(pkt, None, True)
                except OSError:
                    out.tx_errors += 1
            else:
                self._send(out, pkt, data, partial, gso_type, gso_size)
        if events:
            self._events(events)

    def _send(
        self,
        out: Port,
        pkt: bytearray,
        data: bytearray | None,
        in_partial: bool,
        gso_type: int,
        gso_size: int,
    ) -> None:
        """Write a packet whose header cannot be the one it arrived with.

        ``data`` is the received packet (None for packets from ``advance``); the checksum state of
        ``pkt`` is known only when it *is* that packet. For anything else the TCP/UDP checksum is
        recomputed: as a pseudo-header seed sent with ``NEEDS_CSUM`` where the egress TUN finishes it
        (cheap), or complete where it cannot.
        """
        try:
            self._write_packets(out, pkt, data, in_partial, gso_type, gso_size)
        except OSError:
            out.tx_errors += 1
        except (ValueError, IndexError):
            # Not an IP packet we can reason about (the engine built it): send it as it is.
            try:
                if out.hl:
                    os.writev(out.fd, (NO_OFFLOAD_HDR, pkt))
                else:
                    os.write(out.fd, pkt)
                out.tx_packets += 1
                out.tx_bytes += len(pkt)
                if out.tap is not None:
                    out.tap(pkt)
                if out.record is not None:
                    out.record(pkt, None, True)
            except OSError:
                out.tx_errors += 1

    def _write_packets(
        self,
        out: Port,
        pkt: bytearray,
        data: bytearray | None,
        in_partial: bool,
        gso_type: int,
        gso_size: int,
    ) -> None:
        plen = len(pkt)
        version = pkt[0] >> 4
        fragment = version == 4 and bool(pkt[6] & 0x3F or pkt[7])
        l4off, proto = l4_offset(pkt)
        if fragment or proto not in (PROTO_TCP, PROTO_UDP):
            self._write(out, NO_OFFLOAD_HDR, pkt)
            return
        derived = pkt is data
        known_complete = derived and not in_partial
        known_partial = derived and in_partial
        oversize = plen > out.mtu
        if oversize:
            hdr_len = l4off + ((pkt[l4off + 12] >> 4) * 4 if proto == PROTO_TCP else 8)
            seg_size = gso_size or (out.mtu - hdr_len)
            if proto == PROTO_TCP:
                need = TUN_F_TSO4 if version == 4 else TUN_F_TSO6
            else:
                need = TUN_F_USO4 if version == 4 else TUN_F_USO6
            can = out.hl and out.offloads & TUN_F_CSUM and out.offloads & need
            if not can:
                kind = (GSO_TCPV4 if version == 4 else GSO_TCPV6) if proto == PROTO_TCP else GSO_UDP_L4
                segs = segment(pkt, kind, seg_size)
                out.tx_segmented += 1
                for seg in segs:
                    self._write(out, NO_OFFLOAD_HDR, seg)
                return
            if not known_partial:
                fill_l4_checksum(pkt, l4off, proto, partial=True)
            hdr = header_for(pkt, gso_size=seg_size, ecn=bool(gso_type & GSO_ECN)).pack()
            self._write(out, hdr, pkt)
            return
        if known_complete:
            self._write(out, NO_OFFLOAD_HDR, pkt)
        elif out.hl and out.offloads & TUN_F_CSUM:
            if not known_partial:
                fill_l4_checksum(pkt, l4off, proto, partial=True)
            self._write(out, header_for(pkt).pack(), pkt)
        else:
            fill_l4_checksum(pkt, l4off, proto, partial=False)
            out.tx_csum_completed += 1
            self._write(out, NO_OFFLOAD_HDR, pkt)

    @staticmethod
    def _write(out: Port, hdr: bytes, pkt: bytearray) -> None:
        if out.hl:
            os.writev(out.fd, (hdr, pkt))
        else:
            os.write(out.fd, pkt)
        out.tx_packets += 1
        out.tx_bytes += len(pkt)
        if out.tap is not None:
            out.tap(pkt)
        if out.record is not None:
            out.record(pkt, None, True)
