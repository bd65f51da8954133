"""The compiled loop's wait (``statewall.live._tunpump.wait``) on pipes standing in for TUNs.

``wait`` sleeps in ``epoll_wait`` and drains the ready ports in C: the fast path's packets are forwarded
and written there, and it returns to Python only with a packet for the Python path, another ready
descriptor or at the timeout. Pipes carry one packet per read and write as a TUN without a
virtio-net header does (header length 0), so no root is needed.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time

import pytest
from bench.run import BENCH_CONFIG

from statewall import craft
from statewall.dialects.asa import parse
from statewall.engine import Firewall

_tunpump = pytest.importorskip("statewall.live._tunpump", reason="the C pump is not built (no compiler)")

# The bench's policy: PAT to the interface, an access list, the default normalizer, randomization.
CONFIG = BENCH_CONFIG
CLIENT, SERVER = 0x0A000002, 0xC6336407
M = 0xFFFFFFFF


@pytest.fixture
def pipes():
    made = []

    def pipe():
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        made.extend((r, w))
        return r, w

    ep = select.epoll()
    yield pipe, ep
    ep.close()
    for fd in made:
        os.close(fd)


def _firewall():
    fw = Firewall(parse(CONFIG, "pump.cfg"), seed=1)
    if getattr(fw, "fast", None) is None:
        pytest.skip("no compiled fast path")
    return fw


def _established(fw):
    """A connection offloaded to the fast path; returns the client's next data segment."""
    syn = craft.tcp_packet(4, CLIENT, SERVER, 40000, 80, 1000, 0, 0x02, 64240)
    out = fw.receive("inside", syn, 1.0).packets[0][1]
    mport = int.from_bytes(out[20:22], "big")
    dc = (int.from_bytes(out[24:28], "big") - 1000) & M
    synack = craft.tcp_packet(4, SERVER, 0xC0000201, 80, mport, 5000, (1001 + dc) & M, 0x12, 65535)
    back = fw.receive("outside", synack, 1.0).packets[0][1]
    ds = (int.from_bytes(back[24:28], "big") - 5000) & M
    seq = 1001
    for _ in range(3):  # offloaded at the second payload from one side
        seg = craft.tcp_packet(
            4, CLIENT, SERVER, 40000, 80, seq, (5001 + ds) & M, 0x18, 64240, payload=b"x" * 100
        )
        assert fw.receive("inside", seg, 1.0).packets
        seq += 100
    assert len(fw.fast) == 1
    return craft.tcp_packet(
        4, CLIENT, SERVER, 40000, 80, seq, (5001 + ds) & M, 0x18, 64240, payload=b"y" * 100
    )


@pytest.fixture(params=[0, 4], ids=["writev", "io_uring"])
def uring(request):
    """The pump's writes one writev each, or through io_uring 4 per submission (when built with it)."""
    if not _tunpump.uring(request.param):
        pytest.skip("built without liburing")
    yield request.param
    _tunpump.uring(0)


def test_fast_path_packet_is_forwarded_without_returning(pipes, uring):
    pipe, ep = pipes
    fw = _firewall()
    seg = _established(fw)
    r_in, w_in = pipe()
    r_out, w_out = pipe()
    ep.register(r_in, select.EPOLLIN)
    os.write(w_in, seg)
    hits = fw.fast.table.hits
    (conn,) = fw.conns
    counted = (fw.stats["packets_in"], fw.stats["forwarded"], conn.bytes)
    ports = (("inside", r_in, 0, -1), ("outside", w_out, 0, -1))
    rx, tx, pending, other = _tunpump.wait(fw.fast.table, ep.fileno(), ports, 64, 0.05, 0.0, 1000.0)
    assert pending is None and other is None  # returned at the timeout, nothing for Python
    assert rx[0][1:4] == (1, len(seg), 0) and rx[1][1] == 0
    assert tx[1] == (1, len(seg), 0) and tx[0] == (0, 0, 0)
    assert fw.fast.table.hits == hits + 1
    # counted as Firewall.receive counts it: the engine's counters and clock, the connection's activity
    # (the pump's clock is the monotonic one plus the epoch given, 1000 here)
    assert (fw.stats["packets_in"], fw.stats["forwarded"], conn.bytes) == tuple(
        n + k for n, k in zip(counted, (1, 1, 100))
    )
    assert fw.now == conn.last > 1000.0
    out = os.read(r_out, 65536)
    assert len(out) == len(seg) and out[12:16] == bytes.fromhex("c0000201")  # PAT'd source


def test_queued_writes_go_out_before_a_packet_for_python(pipes, uring):
    """Fast-path packets queued for io_uring are written before the wait returns a packet for the
    Python path (which the loop then writes after them: the order of a connection's packets holds).
    Datagram sockets here, so that two packets are two reads."""
    _pipe, ep = pipes
    fw = _firewall()
    seg = _established(fw)
    a_in, b_in = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a_out, b_out = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a_in, b_in, a_out, b_out:
        a_in.setblocking(False)
        ep.register(a_in.fileno(), select.EPOLLIN)
        stray = craft.tcp_packet(4, CLIENT, SERVER, 40001, 80, 1, 0, 0x02, 64240)
        b_in.send(seg)
        b_in.send(stray)
        ports = (("inside", a_in.fileno(), 0, -1), ("outside", a_out.fileno(), 0, -1))
        rx, tx, pending, other = _tunpump.wait(fw.fast.table, ep.fileno(), ports, 64, 5.0, 0.0, 0.0)
        assert pending is not None and bytes(pending[1]) == bytes(stray) and pending[4] is None
        assert rx[0][1] == 2 and tx[1] == (1, len(seg), 0)
        b_out.setblocking(False)
        assert len(b_out.recv(65536)) == len(seg)  # already written when the wait returned


def test_collect_hands_over_new_flows_packets_read_after_one_for_python(pipes, uring):
    """``collect``: after a packet for the Python path of a flow the fast path's table holds no record
    for, the wait reads on: the fast path forwards what it takes, and the next packets for the Python
    path join the list, in their order, up to N; it stops at one whose flow the table may hold (an
    offloaded connection's RST, which the fast path declines), so nothing behind it is forwarded before
    the Python path has seen it. Written before the wait returns: what the fast path took."""
    _pipe, ep = pipes
    fw = _firewall()
    seg0, seg1, seg2 = _segments(fw, 3)
    a_in, b_in = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a_out, b_out = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a_in, b_in, a_out, b_out:
        a_in.setblocking(False)
        b_out.setblocking(False)
        ep.register(a_in.fileno(), select.EPOLLIN)
        syns = [craft.tcp_packet(4, CLIENT, SERVER, 41000 + i, 80, 1, 0, 0x02, 64240) for i in range(6)]
        rst = bytearray(seg2)
        rst[33] = 0x14  # RST|ACK of the offloaded connection: declined, and its flow is the table's
        ports = (("inside", a_in.fileno(), 0, -1), ("outside", a_out.fileno(), 0, -1))

        def wait(collect):
            return _tunpump.wait(fw.fast.table, ep.fileno(), ports, 64, 5.0, 0.0, 0.0, False, collect)

        for pkt in (seg0, syns[0], seg1, syns[1], syns[2], syns[3], syns[4]):
            b_in.send(pkt)
        hits = fw.fast.table.hits
        rx, tx, pending, other = wait(3)
        assert type(pending) is list and other is None
        assert [bytes(p[1]) for p in pending] == [bytes(x) for x in syns[:4]]
        assert [p[0] for p in pending] == [0] * 4 and [p[4] for p in pending] == [None] * 4
        assert [p[3] for p in pending] == sorted(p[3] for p in pending)
        assert fw.fast.table.hits == hits + 2  # both segments, the second between the SYNs
        assert rx[0][:2] == (6, 6) and tx[1] == (2, len(seg0) + len(seg1), 0)
        assert [len(b_out.recv(65536)) for _ in range(2)] == [len(seg0), len(seg1)]
        # syns[4] is next: then the RST, whose flow the table holds, ends the list; seg2 stays queued
        b_in.send(bytes(rst))
        b_in.send(seg2)
        rx, tx, pending, other = wait(8)
        assert [bytes(p[1]) for p in pending] == [bytes(syns[4]), bytes(rst)]
        with pytest.raises(BlockingIOError):
            b_out.recv(65536)
        rx, tx, pending, other = wait(0)  # without collect: as before, the fast path's
        assert pending is None and tx[1] == (1, len(seg2), 0)


def test_collect_reads_no_more_than_a_batch_behind_the_first(pipes):
    """A stream of the fast path's packets behind a new flow's SYN does not hold the wait: it reads at
    most ``batch`` more packets after the SYN (forwarding them) and returns with the SYN; the rest stays
    queued for the next wait."""
    _pipe, ep = pipes
    fw = _firewall()
    segs = _segments(fw, 12)
    ports = _Ports(ep, False)
    try:
        ports.b_in.send(_syn_to(1))
        for seg in segs:
            ports.b_in.send(seg)
        ports.b_in.send(_syn_to(2))
        rx, tx, pending, other = _tunpump.wait(
            fw.fast.table, ep.fileno(), ports.ports, 5, 5.0, 0.0, 0.0, False, 16
        )
        assert [_tag(p[1]) for p in pending] == [1001]
        assert rx[0][:2] == (6, 6) and tx[1][0] == 5  # the SYN, then 5 reads: the batch
        assert [_tag(p) for p in ports.out()] == [0, 1, 2, 3, 4]
    finally:
        ports.close()


def _closing(fw):
    """A connection offloaded at its SYN and closed by both FINs through ``receive``: the segment that
    ends its close (the client's ACK of the server's FIN), which tears it down."""
    syn = craft.tcp_packet(4, CLIENT, SERVER, 40000, 80, 1000, 0, 0x02, 64240)
    out = fw.receive("inside", syn, 1.0).packets[0][1]
    mport = int.from_bytes(out[20:22], "big")
    dc = (int.from_bytes(out[24:28], "big") - 1000) & M
    synack = craft.tcp_packet(4, SERVER, 0xC0000201, 80, mport, 5000, (1001 + dc) & M, 0x12, 65535)
    assert fw.receive("outside", synack, 1.0).packets
    for iface, pkt in (
        ("inside", craft.tcp_packet(4, CLIENT, SERVER, 40000, 80, 1001, 5001, 0x10, 64240)),
        ("inside", craft.tcp_packet(4, CLIENT, SERVER, 40000, 80, 1001, 5001, 0x11, 64240)),
        ("outside", craft.tcp_packet(4, SERVER, 0xC0000201, 80, mport, 5001, (1002 + dc) & M, 0x11, 65535)),
    ):
        res = fw.receive(iface, pkt, 1.1)
        assert res.packets and not res.events
    assert len(fw.conns) == len(fw.fast) == 1
    return craft.tcp_packet(4, CLIENT, SERVER, 40000, 80, 1002, 5002, 0x10, 64240)


@pytest.mark.parametrize("events", [True, False], ids=["events", "none"])
def test_the_segment_that_ends_a_close_with_and_without_an_events_list(pipes, uring, events):
    """With an events list the wait's fast path takes the segment that ends a connection's close as the
    engine's front door does: forwarded, written, the lifecycle's teardown called (the connection
    gone) and its events appended to the list; without one (as pump()), that segment goes to the
    Python path untouched."""
    pipe, ep = pipes
    fw = _firewall()
    ref = _firewall()
    last = _closing(fw)
    assert _closing(ref) == last
    expected = ref.receive("inside", bytearray(last), 2.0)
    r_in, w_in = pipe()
    r_out, w_out = pipe()
    ep.register(r_in, select.EPOLLIN)
    os.write(w_in, last)
    ports = (("inside", r_in, 0, -1), ("outside", w_out, 0, -1))
    got = [] if events else None
    rx, tx, pending, other = _tunpump.wait(
        fw.fast.table, ep.fileno(), ports, 64, 0.05 if events else 5.0, 0.0, 0.0, False, 0, got
    )
    if not events:
        assert bytes(pending[1]) == bytes(last) and pending[4] is None
        assert len(fw.conns) == 1 and tx[1] == (0, 0, 0)
        return
    assert pending is None and tx[1] == (1, len(last), 0)
    assert os.read(r_out, 65536) == bytes(expected.packets[0][1])
    assert [type(e).__name__ for e in got] == [type(e).__name__ for e in expected.events]
    assert [e.conn_id for e in got if hasattr(e, "conn_id")] == [
        e.conn_id for e in expected.events if hasattr(e, "conn_id")
    ]
    assert len(fw.conns) == len(fw.fast) == 0
    with pytest.raises(TypeError):
        _tunpump.wait(fw.fast.table, ep.fileno(), ports, 64, 0.0, 0.0, 0.0, False, 0, ())


def test_other_packets_come_back_with_their_port(pipes):
    pipe, ep = pipes
    fw = _firewall()
    r_in, w_in = pipe()
    r_out, w_out = pipe()
    ep.register(r_in, select.EPOLLIN)
    ep.register(r_out, select.EPOLLIN)
    syn = craft.tcp_packet(4, SERVER, 0xC0000201, 80, 1234, 1, 0, 0x02, 65535)
    os.write(w_out, b"x")  # the outside port is r_out here: readable, but its 1-byte read is no packet
    os.write(w_in, syn)
    ports = (("inside", r_in, 0, -1), ("outside", r_out, 1, -1))
    rx, tx, pending, other = _tunpump.wait(fw.fast.table, ep.fileno(), ports, 64, 5.0, 100.0, 0.0)
    assert other is None
    k, data, hdr, now, egress = pending
    assert (k, bytes(data), hdr, egress) == (0, bytes(syn), b"", None)
    assert now > 100.0  # the loop's clock: monotonic + epoch
    assert rx[0][1] == 1


def test_a_descriptor_that_is_no_port_is_handed_back(pipes):
    pipe, ep = pipes
    fw = _firewall()
    r_in, _w_in = pipe()
    r_ctl, w_ctl = pipe()
    ep.register(r_in, select.EPOLLIN)
    ep.register(r_ctl, select.EPOLLIN)
    os.write(w_ctl, b"\0")
    ports = (("inside", r_in, 0, -1),)
    rx, _tx, pending, other = _tunpump.wait(fw.fast.table, ep.fileno(), ports, 64, 5.0, 0.0, 0.0)
    assert pending is None and other == [(r_ctl, select.EPOLLIN)]
    assert os.read(r_ctl, 8) == b"\0"  # not read by the wait
    assert rx == ((0, 0, 0, 0, 0),)


def test_nothing_ready_returns_empty_at_the_timeout(pipes):
    pipe, ep = pipes
    fw = _firewall()
    r_in, _w_in = pipe()
    ep.register(r_in, select.EPOLLIN)
    rx, tx, pending, other = _tunpump.wait(
        fw.fast.table, ep.fileno(), (("inside", r_in, 0, -1),), 64, 0.01, 0.0, 0.0
    )
    assert (rx, tx, pending, other) == (((0, 0, 0, 0, 0),), ((0, 0, 0),), None, None)


def test_wait_wants_the_fast_paths_table(pipes):
    _pipe, ep = pipes
    with pytest.raises(TypeError):
        _tunpump.wait(object(), ep.fileno(), (), 64, 0.0, 0.0, 0.0)


# ------------------------------------------------------------------------------------------------
# The reads through io_uring (``uring_reads``; ``wait(..., ring=True)``): one multishot read per port
# with provided buffers, the port's fd in blocking mode while it is armed. SEQPACKET socket pairs stand
# in for the TUNs here: one packet per read, pollable, as a TUN is.


@pytest.fixture(params=[0, 1, 2], ids=["signal", "coop", "defer"])
def ring(request):
    """Ring reads on with 4 buffers per port (few, so that the multishot read runs out of buffers and is
    armed again many times), the kernel's reads run at once, cooperatively or deferred to the wait; off,
    with the reads cancelled, afterwards."""
    if not _tunpump.uring_reads(4, request.param):
        pytest.skip("no io_uring multishot read here (liburing, Linux 6.7)")
    yield request.param
    _tunpump.uring_reads_stop()
    _tunpump.uring_reads(0)


def _segments(fw, n):
    """n consecutive data segments of an offloaded connection, each with its index in its payload."""
    first = _established(fw)
    seq = int.from_bytes(first[24:28], "big")
    ack = int.from_bytes(first[28:32], "big")
    return [
        craft.tcp_packet(
            4, CLIENT, SERVER, 40000, 80, (seq + 100 * i) & M, ack, 0x18, 64240, payload=b"%04d" % i * 25
        )
        for i in range(n)
    ]


def _syn(i):
    return craft.tcp_packet(4, CLIENT, SERVER, 41000 + i, 80, 1, 0, 0x02, 64240)


class _Ports:
    """Two SEQPACKET pairs as the ports inside and outside, the inside one in the epoll only when not
    read through the ring."""

    def __init__(self, ep, ring):
        self.a_in, self.b_in = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.a_out, self.b_out = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (self.a_in, self.a_out, self.b_out):
            s.setblocking(False)
        if not ring:
            ep.register(self.a_in.fileno(), select.EPOLLIN)
        self.ports = (("inside", self.a_in.fileno(), 0, -1), ("outside", self.a_out.fileno(), 0, -1))

    def close(self):
        for s in (self.a_in, self.b_in, self.a_out, self.b_out):
            s.close()

    def out(self):
        got = []
        with contextlib.suppress(BlockingIOError):
            while True:
                got.append(self.b_out.recv(65536))
        return got


def _run_until(fw, ep, ports, n, ring):
    """Call wait until n packets were read; a packet for the Python path is written to the outside pair
    as it came (as the loop writes it, after the fast path's queued writes). Returns the reads."""
    reads = idle = 0
    while idle < 3:  # three waits in a row that read nothing: the rest is not coming
        idle += 1
        rx, _tx, pending, other = _tunpump.wait(
            fw.fast.table, ep.fileno(), ports.ports, 64, 0.2, 0.0, 0.0, ring
        )
        assert other is None
        reads += rx[0][0]
        if rx[0][0]:
            idle = 0
        if pending is not None:
            assert pending[0] == 0 and pending[4] is None
            ports.a_out.send(bytes(pending[1]))
        if reads >= n:
            return reads
    return reads


def _index(pkt):
    """The index a packet carries: a data segment's payload, or a SYN's source port."""
    return int(pkt[40:44]) if len(pkt) > 40 else 1000 + int.from_bytes(pkt[20:22], "big") - 41000


@pytest.mark.parametrize("mode", ["ring", "epoll"])
def test_ring_reads_keep_the_order_and_deliver_every_packet(pipes, ring, mode):
    """Fast-path segments with packets for the Python path among them: every packet comes out, in the
    order it went in, through the ring (4 buffers for 120 packets: armed again after each run-out) as
    through epoll and read()."""
    _pipe, ep = pipes
    fw = _firewall()
    segs = _segments(fw, 100)
    ports = _Ports(ep, mode == "ring")
    try:
        sent = []
        for i, seg in enumerate(segs):
            ports.b_in.send(seg)
            sent.append(i)
            if i % 5 == 2:
                ports.b_in.send(_syn(i))
                sent.append(1000 + i)
        before = _tunpump.uring_stats()
        assert _run_until(fw, ep, ports, len(sent), mode == "ring") == len(sent)
        assert [_index(p) for p in ports.out()] == sent
        used_ring = _tunpump.uring_stats() != before
        assert used_ring == (mode == "ring")
    finally:
        ports.close()


def test_ring_reads_take_packets_that_come_while_armed(pipes, ring):
    """The queue empty with the reads armed (between two waits, and during one): what comes later is
    read and forwarded, nothing lost."""
    _pipe, ep = pipes
    fw = _firewall()
    segs = _segments(fw, 30)
    ports = _Ports(ep, True)
    try:
        rx, tx, pending, other = _tunpump.wait(
            fw.fast.table, ep.fileno(), ports.ports, 64, 0.02, 0.0, 0.0, True
        )
        assert (rx[0][0], pending, other) == (0, None, None)  # armed, nothing read, the timeout
        for seg in segs[:10]:
            ports.b_in.send(seg)  # while armed and nobody waits
        assert _run_until(fw, ep, ports, 10, True) == 10

        def later():
            time.sleep(0.05)
            for seg in segs[10:]:
                ports.b_in.send(seg)

        t = threading.Thread(target=later)
        t.start()
        try:
            assert _run_until(fw, ep, ports, 20, True) == 20  # sleeping in io_uring_enter when they come
        finally:
            t.join()
        assert [_index(p) for p in ports.out()] == list(range(30))
    finally:
        ports.close()


def test_ring_stop_returns_what_was_read_and_gives_the_fd_back(pipes, ring):
    """uring_reads_stop with reads armed: the packets the kernel read behind a packet for Python come
    back in order, the fd is non-blocking again and the ring reads no more."""
    _pipe, ep = pipes
    fw = _firewall()
    segs = _segments(fw, 3)
    ports = _Ports(ep, True)
    try:
        ports.b_in.send(_syn(0))
        for seg in segs:
            ports.b_in.send(seg)
        time.sleep(0.01)
        rx, _tx, pending, _other = _tunpump.wait(
            fw.fast.table, ep.fileno(), ports.ports, 64, 1.0, 0.0, 0.0, True
        )
        assert bytes(pending[1]) == bytes(_syn(0))
        assert os.get_blocking(ports.a_in.fileno())  # blocking while the ring reads it
        left = _tunpump.uring_reads_stop()
        assert [(fd, bytes(p)) for fd, p in left] == [(ports.a_in.fileno(), bytes(s)) for s in segs]
        assert os.get_blocking(ports.a_in.fileno()) is False
        ports.b_in.send(segs[0])
        time.sleep(0.01)
        assert ports.a_in.recv(65536) == bytes(segs[0])  # the fd's own read: the ring took it no more
        assert _tunpump.uring_reads_stop() == []  # nothing armed: a no-op
    finally:
        ports.close()


def test_ring_wait_hands_back_a_descriptor_that_is_no_port(pipes, ring):
    """The loop's other descriptors (the wake-up pipe, the control channel) stay in its epoll, which
    the ring watches: a ready one comes back to Python as with epoll_wait, unread, and so do packets
    read in the same wait."""
    pipe, ep = pipes
    fw = _firewall()
    segs = _segments(fw, 2)
    ports = _Ports(ep, True)
    r_ctl, w_ctl = pipe()
    ep.register(r_ctl, select.EPOLLIN)
    try:
        rx, _tx, pending, other = _tunpump.wait(
            fw.fast.table, ep.fileno(), ports.ports, 64, 0.02, 0.0, 0.0, True
        )
        assert (rx[0][0], pending, other) == (0, None, None)  # armed: the poll on the epoll too
        os.write(w_ctl, b"\0")
        rx, _tx, pending, other = _tunpump.wait(
            fw.fast.table, ep.fileno(), ports.ports, 64, 5.0, 0.0, 0.0, True
        )
        assert pending is None and other == [(r_ctl, select.EPOLLIN)]
        assert os.read(r_ctl, 8) == b"\0"
        for seg in segs:
            ports.b_in.send(seg)
        assert _run_until(fw, ep, ports, 2, True) == 2  # the poll armed again, the reads still there
        assert [_index(p) for p in ports.out()] == [0, 1]
    finally:
        ports.close()


def test_ring_reads_need_a_power_of_two():
    with pytest.raises(ValueError):
        _tunpump.uring_reads(3)
    with pytest.raises(ValueError):
        _tunpump.uring_reads(512)


class _SocketTun:
    """A SEQPACKET socket in place of a TUN without a virtio-net header, for ``Port``."""

    def __init__(self, fd):
        self.fd = fd
        self.header_len = self.offloads = 0
        self.vnet_hdr = False
        self.mtu = 1500


def _syn_to(i):
    """A new connection's SYN, its index in its destination port (which PAT keeps)."""
    return craft.tcp_packet(4, CLIENT, SERVER, 41000 + i, 2000 + i, 1, 0, 0x02, 64240)


def _tag(pkt):
    return int(pkt[40:44]) if len(pkt) > 40 else 1000 + int.from_bytes(pkt[22:24], "big") - 2000


def _expect(ports, n, timeout=10.0):
    got, end = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:
        got += ports.out()
        time.sleep(0.005)
    return got


def _stop(loop, t, ports):
    """The loop stopped, its thread joined, the loop and the ports closed."""
    loop.stop()
    t.join(10)
    loop.close()
    ports.close()
    assert not t.is_alive()


def _loop_thread(fw, ports, reads, taskrun=0, collect=0):
    from statewall.live.loop import Loop, Port

    loop = Loop(
        fw,
        [Port("inside", _SocketTun(ports.a_in.fileno())), Port("outside", _SocketTun(ports.a_out.fileno()))],
        uring_reads=reads,
        uring_taskrun=taskrun,
        collect=collect,
    )
    t = threading.Thread(target=loop.run)
    t.start()
    return loop, t


def test_loop_reads_through_the_ring_and_back_to_epoll_for_a_capture(pipes, ring):
    """The loop with ring reads: in order; a capture (a tap) takes it back to epoll and read() with the
    packets already read handed to the Python path first; at the end the fds are non-blocking again."""
    _pipe, ep = pipes
    fw = _firewall()
    segs = _segments(fw, 60)
    ports = _Ports(ep, True)
    loop, t = _loop_thread(fw, ports, 4, ring)
    try:
        sent = []
        for i, seg in enumerate(segs[:40]):
            ports.b_in.send(seg)
            sent.append(i)
            if i % 7 == 3:
                ports.b_in.send(_syn_to(i))
                sent.append(1000 + i)
        assert [_tag(p) for p in _expect(ports, len(sent))] == sent
        assert loop._ring and loop.fast_path_counters()["uring_reads"] == 4
        seen = []
        loop.ports[0].tap = seen.append  # a capture: every packet through Python from now on
        # The loop is in the ring's wait: it reads the SYN (for Python: it returns) and, most likely,
        # the segments behind it, which it then hands to Python as it leaves the ring for the capture.
        ports.b_in.send(_syn_to(99))
        for seg in segs[40:]:
            ports.b_in.send(seg)
        assert [_tag(p) for p in _expect(ports, 21)] == [1099, *range(40, 60)]
        assert [t for t in map(_tag, seen) if t < 1000] == list(range(40, 60))
        assert not loop._ring
    finally:
        _stop(loop, t, ports)


def test_loop_stops_cleanly_with_the_reads_in_flight(pipes, ring):
    """stop() while the ring's reads wait: the loop ends, the reads are cancelled, the fds are
    non-blocking again, and a packet sent afterwards is still in the queue (nobody took it)."""
    _pipe, ep = pipes
    fw = _firewall()
    segs = _segments(fw, 3)
    ports = _Ports(ep, True)
    try:
        loop, t = _loop_thread(fw, ports, 4, ring)
        ports.b_in.send(segs[0])
        assert [_tag(p) for p in _expect(ports, 1)] == [0]
        assert loop._ring and os.get_blocking(ports.a_in.fileno())
        loop.stop()
        t.join(10)
        assert not t.is_alive() and not loop._ring
        assert os.get_blocking(ports.a_in.fileno()) is False
        ports.b_in.send(segs[1])
        time.sleep(0.02)
        assert ports.a_in.recv(65536) == bytes(segs[1])
        loop.close()
    finally:
        ports.close()


def test_loop_falls_back_to_epoll_without_the_ring(pipes, monkeypatch):
    """Where the ring cannot be had (no liburing, Linux < 6.7, io_uring disabled) the loop reads with
    epoll and read(), and says so (uring_reads 0)."""
    _pipe, ep = pipes
    monkeypatch.setattr(_tunpump, "uring_reads", lambda n, taskrun=0: False)
    fw = _firewall()
    segs = _segments(fw, 10)
    ports = _Ports(ep, True)
    loop, t = _loop_thread(fw, ports, 64)
    try:
        for seg in segs:
            ports.b_in.send(seg)
        assert [_tag(p) for p in _expect(ports, 10)] == list(range(10))
        assert not loop._ring and loop.fast_path_counters()["uring_reads"] == 0
        assert os.get_blocking(ports.a_in.fileno()) is False
    finally:
        loop.stop()
        t.join(10)
        loop.close()
        ports.close()


@pytest.mark.root
@pytest.mark.timeout(180)
def test_statewall_run_reads_the_tuns_through_the_ring(tmp_path):
    """``statewall run --uring-reads 8`` on real TUNs with offloads: a 16 MB transfer through PAT and
    the fast path arrives whole, with no read or write errors, and the counters say the ring read."""
    from test_live import ROOT_REASON, _assert_transfer

    if ROOT_REASON is not None:
        pytest.skip(ROOT_REASON)
    if not _tunpump.uring_reads(8):
        pytest.skip("no io_uring multishot read here (liburing, Linux 6.7)")
    _tunpump.uring_reads(0)
    import json

    from statewall.lab.netns import Lab
    from statewall.lab.scenarios.smoke import CONFIG
    from statewall.lab.topology import FirewallTopology

    cfg = tmp_path / "fw.cfg"
    cfg.write_text(CONFIG)
    with Lab() as lab:
        topo = FirewallTopology(lab).build()
        topo.start_firewall(str(cfg), extra=["--uring-reads", "8"])
        _assert_transfer(topo, 16 << 20)
        assert topo.stop_firewall() == 0
    summary = next(line for line in topo.firewall_output if line.startswith("statewall run: stopped; "))
    counters = json.loads(summary.split("; ", 1)[1])
    fast = counters["fast_path"]
    assert fast["uring_reads"] == 8 and fast["packets"] > 100, fast
    for side in counters["interfaces"].values():
        assert side["rx_errors"] == side["tx_errors"] == 0
    assert counters["interfaces"]["inside"]["rx_super"] > 0


def test_statewall_run_wants_a_power_of_two_of_buffers(tmp_path):
    import subprocess
    import sys

    from statewall.lab.scenarios.smoke import CONFIG

    cfg = tmp_path / "fw.cfg"
    cfg.write_text(CONFIG)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "statewall.cli",
            "run",
            "-c",
            str(cfg),
            "--bind",
            "inside=t-x",
            "--uring-reads",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "--uring-reads: 0 or a power of two up to 256" in res.stderr


@pytest.mark.parametrize("collect", [1, 4, 64])
def test_loop_collecting_keeps_the_order_and_the_engines_decisions(pipes, collect):
    """``Loop(collect=N)``: SYNs of new connections (the Python path) among an offloaded connection's
    segments (the fast path's): every packet comes out, each flow's in the order sent, and the
    engine ends as the same engine fed the same packets one by one does (its connections, counters,
    the fast path's table); the loop counts what it collected (packets queued before it starts wait
    behind the first SYN)."""
    _pipe, ep = pipes
    fw = _firewall()
    segs = _segments(fw, 40)
    ref = _firewall()
    assert _segments(ref, 40) == segs
    ports = _Ports(ep, False)
    ep.unregister(ports.a_in.fileno())  # the loop's own epoll takes it
    sent, packets = [], []
    for i, seg in enumerate(segs):
        packets.append(seg)
        sent.append(i)
        if i % 3 == 1:
            packets.append(_syn_to(i))
            sent.append(1000 + i)
    for pkt in packets[:30]:  # queued before the loop starts: packets wait behind each SYN
        ports.b_in.send(pkt)
    loop, t = _loop_thread(fw, ports, 0, collect=collect)
    try:
        for pkt in packets[30:]:
            ports.b_in.send(pkt)
        got = [_tag(p) for p in _expect(ports, len(sent))]
        counters = loop.fast_path_counters()
    finally:
        _stop(loop, t, ports)
    # Each flow's packets in their order (the offloaded connection's segments, the SYNs among
    # themselves); a segment may pass a SYN waiting for the Python path.
    assert sorted(got) == sorted(sent)
    assert [x for x in got if x < 1000] == [x for x in sent if x < 1000]
    assert [x for x in got if x >= 1000] == [x for x in sent if x >= 1000]
    for pkt in packets:
        ref.receive("inside", bytearray(pkt), fw.now)
    assert sorted((c.id, c.initiator, c.responder) for c in fw.conns) == sorted(
        (c.id, c.initiator, c.responder) for c in ref.conns
    )
    assert {k: fw.stats[k] for k in ("packets_in", "forwarded")} == {
        k: ref.stats[k] for k in ("packets_in", "forwarded")
    }
    assert len(fw.fast) == len(ref.fast)
    assert counters["collected"] > 0
