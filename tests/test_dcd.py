"""Dead Connection Detection, told as the ASA guide tells it: on idle expiry the firewall probes both ends;
if both answer, the idle timer restarts; otherwise, after the configured probes at the configured
interval, the connection is freed (with resets when ``idle ... reset`` is set). Probe answers are the
firewall's: they never reach the other end. Simulated ends (``sim_tcp``) answer a keep-alive only
when it lands exactly one below what they expect, as a TCP stack does.
"""

from __future__ import annotations

import random

from scapy.layers.inet import TCP

from fixtures import ASA_WEB
from sim_tcp import RST, SYN, Net, TcpHost
from statewall import craft
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import ConnTeardown
from statewall.logfmt.asa import format_event
from statewall.logfmt.mpf import format_show_service_policy
from traffic import Link

SERVER = "192.168.1.10"
CLIENT = "198.51.100.1"
M = 0xFFFFFFFF

CFG = (
    "ASA Version 9.1(2)\n"
    + ASA_WEB
    + """\
class-map WEB
 match port tcp eq www
policy-map P
 class WEB
{settings}service-policy P interface outside
"""
)


def lab(timeouts: str = "idle 0:05:00 dcd 0:00:10 3", extra: str = ""):
    settings = f"  set connection timeout {timeouts}\n" + (f"  set connection {extra}\n" if extra else "")
    fw = Firewall(parse(CFG.format(settings=settings), "dcd.cfg"), seed=9)
    server = TcpHost("inside", SERVER, isn=3_000_000_000)
    server.listen(80, b"hello")
    client = TcpHost("outside", CLIENT, isn=4_000_000_000)
    net = Net(Link(fw), [server, client])
    net.send(client, client.connect(SERVER, 80, 40001))
    net.sendall(client, client.send(40001, SERVER, 80, b"GET"))
    assert bytes(client.conn(40001, SERVER, 80).received) == b"hello"
    return fw, net, server, client


def recording(net: Net) -> Link:
    """What the firewall sends each end, with the time, from now on."""
    link = net.fw
    link.forget()
    return link


def ends(client: TcpHost, server: TcpHost):
    return client.conn(40001, SERVER, 80), server.conn(80, CLIENT, 40001)


def teardowns(net: Net) -> list[str]:
    return [line for e in net.of(ConnTeardown) for line in format_event(e, timestamp=False)]


def dcd_counters(fw) -> str:
    text = format_show_service_policy(fw.policy, fw.service_policies.uses).splitlines()
    return next(line.strip() for line in text if "client-probe" in line)


def test_both_ends_answer_so_the_connection_outlives_its_idle_timeout():
    fw, net, server, client = lab()
    c, s = ends(client, server)
    t0 = net.now
    wire = recording(net)
    net.advance(300.5)
    # One probe each, at the idle expiry, as the peer would send a keep-alive: seq one below what the
    # end expects (in its own numbers, though the firewall randomizes the client's), ack = what it sent.
    ((tc, pc),), ((ts, ps),) = wire.left("outside"), wire.left("inside")
    assert abs(tc - (t0 + 300)) < 0.01 and abs(ts - (t0 + 300)) < 0.01
    assert (pc.src, pc[TCP].sport, pc.dst, pc[TCP].dport) == (SERVER, 80, CLIENT, 40001)
    assert (pc[TCP].flags, pc[TCP].seq, pc[TCP].ack, len(pc[TCP].payload)) == (
        "A",
        (c.rcv_nxt - 1) & M,
        c.snd_nxt,
        0,
    )
    assert (ps.src, ps[TCP].sport, ps.dst, ps[TCP].dport) == (CLIENT, 40001, SERVER, 80)
    assert (ps[TCP].seq, ps[TCP].ack) == ((s.rcv_nxt - 1) & M, s.snd_nxt)
    # Both answered; the answers stayed with the firewall (only the probes reached the ends).
    assert client.answers == server.answers == 1
    assert len(wire.emitted()) == 2
    assert fw.stats["dcd_answers"] == 2
    # The idle timer restarted at the answers: nothing at 599 s, a second round at 600 s.
    net.advance(298)
    assert len(fw.conns) == 1 and len(wire.emitted()) == 2
    net.advance(2)
    assert len(wire.emitted()) == 4 and len(fw.conns) == 1
    assert dcd_counters(fw) == "DCD: client-probe 2, server-probe 2, conn-expiration 0"
    # The connection still works.
    net.sendall(client, client.send(40001, SERVER, 80, b"more"))
    assert bytes(s.received) == b"GETmore"
    assert teardowns(net) == []


def test_an_end_that_is_gone_is_probed_max_retries_times_at_the_interval_then_freed():
    fw, net, server, client = lab()
    t0 = net.now
    server.alive = False  # the server vanished without a word
    wire = recording(net)
    net.advance(340)
    to_server = [round(t - t0, 3) for t, _ in wire.left("inside")]
    to_client = [round(t - t0, 3) for t, _ in wire.left("outside")]
    assert to_server == [300.0, 310.0, 320.0]  # max-retries 3, retry-interval 10 s
    assert to_client == [300.0]  # it answered the first probe and is not asked again
    (line,) = teardowns(net)
    assert line == (
        "%ASA-6-302014: Teardown TCP connection 1 for outside:198.51.100.1/40001 to inside:192.168.1.10/80 "
        "duration 0:05:30 bytes 8 Idle Timeout"
    )
    assert dcd_counters(fw) == "DCD: client-probe 1, server-probe 3, conn-expiration 1"


def test_with_reset_a_dead_connection_ends_with_a_rst_to_each_end():
    fw, net, server, client = lab("idle 0:05:00 reset dcd 0:00:02 2")
    c, _ = ends(client, server)
    expect_client = c.rcv_nxt
    server.alive = False
    wire = recording(net)
    net.advance(310)
    rsts = [(i, p) for _, i, p in wire.emitted() if p[TCP].flags & RST]
    assert sorted(i for i, _ in rsts) == ["inside", "outside"]
    assert dict(rsts)["outside"][TCP].seq == expect_client
    assert not client.conns  # the live end accepted the RST
    assert [round(t - wire.emitted()[0][0], 3) for t, p in wire.left("inside") if not p[TCP].flags & RST] == [
        0.0,
        2.0,
    ]
    (line,) = teardowns(net)
    assert line.endswith("duration 0:05:04 bytes 8 Flow timed out with reset")


def test_traffic_during_probing_ends_it():
    fw, net, server, client = lab()
    server.alive = False
    net.advance(305)  # first round sent; the server has not answered
    server.alive = True
    net.sendall(client, client.send(40001, SERVER, 80, b"x"))  # the client speaks: the connection is in use
    net.advance(60)
    assert teardowns(net) == []
    assert bytes(server.conn(80, CLIENT, 40001).received) == b"GETx"


def test_half_closed_connections_are_not_probed():
    fw, net, server, client = lab("idle 0:05:00 half-closed 0:05:00 dcd 0:00:10 3")
    net.sendall(client, [client.close(40001, SERVER, 80)])
    wire = recording(net)
    net.advance(301)
    assert wire.emitted() == []
    (line,) = teardowns(net)
    assert line.endswith("FIN Timeout")


def test_probes_follow_the_intercept_splice():
    # The client knows the server by the cookie: its probe must come in those numbers to be answered.
    settings = "  set connection embryonic-conn-max 1\n  set connection timeout idle 0:05:00 dcd 0:00:10 3\n"
    cfg = CFG.format(settings=settings)
    fw = Firewall(parse(cfg, "dcd.cfg"), seed=9)
    server = TcpHost("inside", SERVER)
    server.listen(80, b"hello")
    client = TcpHost("outside", CLIENT)
    net = Net(Link(fw), [server, client])
    rng = random.Random(1)
    spoof = craft.tcp_packet(4, rng.getrandbits(31), server.a, 1, 80, 5, 0, SYN, 1000)
    net.send("outside", spoof)  # the class is at its embryonic limit: the client goes through the intercept
    net.send(client, client.connect(SERVER, 80, 40001))
    net.sendall(client, client.send(40001, SERVER, 80, b"GET"))
    assert fw.intercept.stats["valid_acks"] == 1
    net.advance(300.5)
    assert client.answers == server.answers == 1
    assert not [e for e in net.of(ConnTeardown) if e.initiator.port == 40001]
    assert dcd_counters(fw) == "DCD: client-probe 1, server-probe 1, conn-expiration 0"


def test_a_segment_dropped_during_probing_does_not_keep_the_connection_forever():
    fw, net, server, client = lab()
    server.alive = False
    net.advance(305)  # probing; the server is silent
    c = client.conn(40001, SERVER, 80)
    # A segment far outside the window: it stops the probing but the tracker drops it.
    bogus = craft.tcp_packet(
        4, client.a, server.a, 40001, 80, (c.snd_nxt + 0x40000000) & M, c.rcv_nxt, 0x10, 100
    )
    net.send(client, bogus)
    assert fw.drops and len(fw.conns) == 1
    net.advance(300)  # idle again: probed again, and freed since the server is still gone
    (line,) = teardowns(net)
    assert line.endswith("Idle Timeout")
