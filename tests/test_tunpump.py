"""The compiled loop's wait (``statewall.live._tunpump.wait``) on pipes standing in for TUNs.

``wait`` sleeps in ``epoll_wait`` and drains the ready ports in C: the fast path's packets are forwarded
and written there, and it returns to Python only with a packet for the Python path, another ready
descriptor or at the timeout. Pipes carry one packet per read and write as a TUN without a
virtio-net header does (header length 0), so no root is needed.
"""

from __future__ import annotations

import os
import select
import socket

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
