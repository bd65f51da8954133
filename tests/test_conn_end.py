"""The connection's end and its timers (issue 18, session 8): the lifecycle calls the compiled fast path
makes (``AsaLifecycle.established`` at the handshake's last ACK, ``half_closed`` once a FIN is
acknowledged, ``fins_closed``'s teardown at the last ACK), the translation's expiry in
``Firewall.advance`` and the calendar (``statewall.timers``) under them.

Each of these takes shortcuts (a timer queued again only when its deadline moves earlier, the
Connection's and the translation's fields read where they are kept, a bucket of the calendar handed out
in an inner loop, one appended in order not sorted again). Every scenario runs with the fast path on and
off, whose events must be the same texts at the same simulated times (the Python path is the
definition), and each checks the times a shortcut would move."""

from __future__ import annotations

import heapq
import random

import pytest

from fixtures import BROWSING_INTERFACES
from sim_tcp import Net, TcpHost
from statewall import craft
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import ConnTeardown, XlateBuilt, XlateTeardown
from statewall.logfmt.asa import format_event
from statewall.packet import str_to_addr
from statewall.timers import Timers
from traffic import Link

CLIENT = "10.1.1.5"
SERVER = "198.51.100.10"
MAPPED = "203.0.113.1"

CONFIG = (
    "ASA Version 9.1(2)\n"
    + BROWSING_INTERFACES
    + """\
route outside 0.0.0.0 0.0.0.0 203.0.113.254
access-list INSIDE_IN extended permit tcp 10.1.1.0 255.255.255.0 any
access-group INSIDE_IN in interface inside
global (outside) 1 interface
nat (inside) 1 10.1.1.0 255.255.255.0
{timeouts}
class-map WEB
 match port tcp eq www
policy-map P
 class WEB
  set connection timeout {class_timeouts}
service-policy P global
"""
)

FAST = pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "python-path"])


def lab(fast: bool, class_timeouts: str, timeouts: str = "", config: str = CONFIG):
    fw = Firewall(parse(config.format(timeouts=timeouts, class_timeouts=class_timeouts), "end.cfg"), seed=3,
                  fast_path=fast)  # fmt: skip
    server = TcpHost("outside", SERVER)
    server.listen(80, b"hello")
    client = TcpHost("inside", CLIENT)
    net = Net(fw, [server, client])
    return fw, net, server, client


def log(net: Net, start: int = 0) -> list[str]:
    """The teardowns and translations logged from event ``start`` on, with their times."""
    return [
        f"{e.time:.1f} {line}"
        for e in net.events[start:]
        if isinstance(e, (ConnTeardown, XlateBuilt, XlateTeardown))
        for line in format_event(e, timestamp=False)
    ]


def open_conn(net: Net, client: TcpHost, sport: int = 40001) -> None:
    net.send(client, client.connect(SERVER, 80, sport))
    net.sendall(client, client.send(sport, SERVER, 80, b"GET"))
    assert bytes(client.conn(sport, SERVER, 80).received) == b"hello"


def after(net: Net, start: int) -> list[str]:
    """The log from event ``start`` on, then what 30 s more add (the translation's expiry)."""
    now = log(net, start)
    net.advance(30)
    return [*now, "(30 s later)", *log(net, start)[len(now) :]]


def used_fast_path(fw, fast: bool) -> None:
    if fast and fw.fast is not None:
        assert fw.fast.hits > 0


def both(scenario) -> list[str]:
    """``scenario(fast)``'s log with the fast path on and off: the same."""
    on, off = scenario(True), scenario(False)
    assert on == off
    return on


# --------------------------------------------------------------------------------------------------
# The connection's timers


def test_the_idle_timer_moves_earlier_at_the_handshakes_last_ack():
    # The embryonic timer (10 minutes) is queued at the SYN; the handshake's last ACK puts the
    # connection on its 2-minute idle timeout, earlier: the timer must be queued again for it.
    def scenario(fast):
        fw, net, _, client = lab(fast, "embryonic 0:10:00 idle 0:02:00 half-closed 0:01:00")
        open_conn(net, client)
        used_fast_path(fw, fast)
        start = len(net.events)
        net.advance(119.9)
        assert log(net, start) == []
        net.advance(0.2)
        return after(net, start)

    assert both(scenario) == [
        f"1120.0 %ASA-6-302014: Teardown TCP connection 1 for outside:{SERVER}/80 to inside:{CLIENT}/40001 "
        "duration 0:02:00 bytes 8 Idle Timeout",
        "(30 s later)",
        f"1150.0 %ASA-6-305012: Teardown dynamic TCP translation from inside:{CLIENT}/40001 to "
        f"outside:{MAPPED}/40001 duration 0:02:30",
    ]


def test_the_half_closed_timer_moves_earlier_once_a_fin_is_acknowledged():
    def scenario(fast):
        fw, net, _, client = lab(fast, "embryonic 0:10:00 idle 1:00:00 half-closed 0:00:30")
        open_conn(net, client)
        net.advance(5)
        net.sendall(client, [client.close(40001, SERVER, 80)])  # the server ACKs the FIN: half-closed
        used_fast_path(fw, fast)
        start = len(net.events)
        net.advance(29.9)
        assert log(net, start) == []
        net.advance(0.2)
        return after(net, start)

    assert both(scenario) == [
        f"1035.0 %ASA-6-302014: Teardown TCP connection 1 for outside:{SERVER}/80 to inside:{CLIENT}/40001 "
        "duration 0:00:35 bytes 8 FIN Timeout",
        "(30 s later)",
        f"1065.0 %ASA-6-305012: Teardown dynamic TCP translation from inside:{CLIENT}/40001 to "
        f"outside:{MAPPED}/40001 duration 0:01:05",
    ]


def test_a_timer_moved_later_by_activity_then_earlier_by_the_close():
    # Idle 2 minutes: the embryonic timer pops at 30 s and is queued again at the idle deadline (120 s);
    # data at 100 s moves the deadline to 220 s (found when the 120 s timer pops, queued again); the
    # close at 150 s puts the connection on its 60 s half-closed timeout: 210 s, earlier than 220 s.
    def scenario(fast):
        fw, net, _, client = lab(fast, "embryonic 0:00:30 idle 0:02:00 half-closed 0:01:00")
        open_conn(net, client)
        net.advance(100)
        net.sendall(client, client.send(40001, SERVER, 80, b"more"))
        net.advance(50)
        net.sendall(client, [client.close(40001, SERVER, 80)])
        used_fast_path(fw, fast)
        start = len(net.events)
        net.advance(59.9)
        assert log(net, start) == []
        net.advance(0.2)
        return after(net, start)

    assert both(scenario) == [
        f"1210.0 %ASA-6-302014: Teardown TCP connection 1 for outside:{SERVER}/80 to inside:{CLIENT}/40001 "
        "duration 0:03:30 bytes 12 FIN Timeout",
        "(30 s later)",
        f"1240.0 %ASA-6-305012: Teardown dynamic TCP translation from inside:{CLIENT}/40001 to "
        f"outside:{MAPPED}/40001 duration 0:04:00",
    ]


def test_data_after_the_half_close_keeps_the_connection_on_its_half_closed_timeout():
    # The client closed its side; the server goes on sending, each segment the connection's activity:
    # the half-closed timeout counts from the last one.
    def scenario(fast):
        fw, net, server, client = lab(fast, "embryonic 0:00:30 idle 1:00:00 half-closed 0:01:00")
        open_conn(net, client)
        net.sendall(client, [client.close(40001, SERVER, 80)])
        for _ in range(3):
            net.advance(40)
            net.sendall(server, server.send(80, MAPPED, 40001, b"late data"))  # PAT keeps the port
        used_fast_path(fw, fast)
        start = len(net.events)
        net.advance(59.9)
        assert log(net, start) == []
        net.advance(0.2)
        return log(net, start)

    lines = both(scenario)
    assert lines[0].startswith("1180.0 %ASA-6-302014: Teardown TCP connection 1 ")
    assert lines[0].endswith("duration 0:03:00 bytes 35 FIN Timeout")


# --------------------------------------------------------------------------------------------------
# The close on the fast path and the translation's expiry


def full_close(net: Net, server: TcpHost, client: TcpHost, sport: int = 40001, mapped: str = MAPPED) -> None:
    """The server closes first (to the client's mapped address; PAT keeps its port), the client
    answers with its own FIN, the server ACKs it (the last ACK: the teardown)."""
    net.sendall(server, [server.close(80, mapped, sport)])
    net.sendall(client, [client.close(sport, SERVER, 80)])


def test_the_close_and_the_translations_expiry_30_seconds_later():
    def scenario(fast):
        fw, net, server, client = lab(fast, "embryonic 0:00:30 idle 1:00:00 half-closed 0:01:00")
        open_conn(net, client)
        net.advance(3)
        full_close(net, server, client)
        used_fast_path(fw, fast)
        assert len(fw.conns) == 0
        start = len(net.events)
        net.advance(29.9)
        assert log(net, start) == []
        net.advance(0.2)
        return log(net)

    assert both(scenario) == [
        f"1000.0 %ASA-6-305011: Built dynamic TCP translation from inside:{CLIENT}/40001 to "
        f"outside:{MAPPED}/40001",
        # "from outside": the server's FIN came first
        f"1003.0 %ASA-6-302014: Teardown TCP connection 1 for outside:{SERVER}/80 to inside:{CLIENT}/40001 "
        "duration 0:00:03 bytes 8 TCP FINs from outside",
        f"1033.0 %ASA-6-305012: Teardown dynamic TCP translation from inside:{CLIENT}/40001 to "
        f"outside:{MAPPED}/40001 duration 0:00:33",
    ]


def test_a_translation_taken_again_before_its_expiry_expires_after_its_last_connection():
    def scenario(fast):
        fw, net, server, client = lab(fast, "embryonic 0:00:30 idle 1:00:00 half-closed 0:01:00")
        open_conn(net, client)
        full_close(net, server, client)  # at 1000: the translation idle, its timer at 1030
        net.advance(10)
        client.conns.clear()  # both ends forget the closed connection (its port used again)
        server.conns.clear()
        open_conn(net, client)  # the same real port: the same translation, held again
        net.advance(25)  # past 1030: still held
        assert [e for e in net.events if isinstance(e, XlateTeardown)] == []
        full_close(net, server, client)  # at 1035: idle again, until 1065
        net.advance(29.9)
        assert [e for e in net.events if isinstance(e, XlateTeardown)] == []
        net.advance(0.2)
        used_fast_path(fw, fast)
        return log(net)

    lines = both(scenario)
    # 305011 and the first teardown at 1000, no 305011 at 1010 (the same translation), the second
    # teardown at 1035, the 305012 30 s later
    assert [line.split(" %")[0] for line in lines] == ["1000.0", "1000.0", "1035.0", "1065.0"]
    assert lines[-1].endswith("duration 0:01:05")  # from the translation's first connection on


@pytest.mark.parametrize("between", ["reload", "snapshot"])
def test_the_translations_expiry_across_a_reload_or_a_restore(between):
    def scenario(fast):
        fw, net, server, client = lab(fast, "embryonic 0:00:30 idle 1:00:00 half-closed 0:01:00")
        open_conn(net, client)
        full_close(net, server, client)
        net.advance(10)
        if between == "reload":
            fw.reload(fw.policy)
        else:
            again = Firewall(fw.policy, seed=3, fast_path=fast)
            again.restore(fw.snapshot())
            net.fw = again
        start = len(net.events)
        net.advance(19.9)
        assert log(net, start) == []
        net.advance(0.2)
        return log(net, start)

    assert both(scenario) == [
        f"1030.0 %ASA-6-305012: Teardown dynamic TCP translation from inside:{CLIENT}/40001 to "
        f"outside:{MAPPED}/40001 duration 0:00:30"
    ]


POOL = """\
ASA Version 9.8(1)
{interfaces}
object network PATPOOL
 range 203.0.113.10 203.0.113.11
object network LAN
 subnet 10.1.1.0 255.255.255.0
 nat (inside,outside) dynamic pat-pool PATPOOL round-robin
access-list INSIDE_IN extended permit tcp 10.1.1.0 255.255.255.0 any
access-group INSIDE_IN in interface inside
route outside 0.0.0.0 0.0.0.0 203.0.113.254
{{timeouts}}
""".format(interfaces=BROWSING_INTERFACES.rstrip("\n"))


def test_a_host_keeps_its_pool_address_only_while_it_holds_translations():
    # Round robin over two addresses; a host sticks to the one it has while it holds a translation on
    # it. Its last translation's expiry ends that: the next connection takes the next address.
    def mapped(net: Net) -> list[str]:
        return [e.mapped_address for e in net.events if isinstance(e, XlateBuilt)]

    def scenario(fast):
        fw = Firewall(parse(POOL.format(timeouts=""), "pool.cfg"), seed=3, fast_path=fast)
        server = TcpHost("outside", SERVER)
        server.listen(80, b"hello")
        client = TcpHost("inside", CLIENT)
        net = Net(fw, [server, client])
        open_conn(net, client, 40001)
        full_close(net, server, client, 40001, mapped(net)[-1])
        net.advance(5)
        open_conn(net, client, 40002)  # the first translation still idle: the same address
        full_close(net, server, client, 40002, mapped(net)[-1])
        net.advance(40)  # both expired
        open_conn(net, client, 40003)  # round robin's next address
        return mapped(net)

    assert both(scenario) == ["203.0.113.10", "203.0.113.10", "203.0.113.11"]


# --------------------------------------------------------------------------------------------------
# The calendar against a heap of (time, sequence number, object): the order it defines


class HeapTimers:
    def __init__(self) -> None:
        self.heap: list = []
        self.n = 0

    def schedule(self, when, obj) -> None:
        heapq.heappush(self.heap, (when, self.n, obj))
        self.n += 1

    def pop_due(self, now):
        while self.heap and self.heap[0][0] <= now:
            yield heapq.heappop(self.heap)[2]


def drive(timers, seed: int) -> list:
    """Queue and hand out entries at random, the consumer queueing more while it is handed some: at a
    time already due (in an earlier second, in the bucket being handed out) or later."""
    rng = random.Random(seed)
    got = []
    now = 0.0
    ids = iter(range(10**9))
    for _ in range(60):
        for _ in range(rng.randrange(0, 80)):
            # mostly in order of time, as the owners queue (a bucket appended in order), some not
            when = now + rng.choice([30.0, 30.0, rng.uniform(0, 40), rng.randrange(0, 5)])
            timers.schedule(when, next(ids))
        now += rng.uniform(0, 8)
        for obj in timers.pop_due(now):
            got.append((now, obj))
            r = rng.random()
            if r < 0.1:
                timers.schedule(now - rng.uniform(0, 6), next(ids))  # already due, maybe an earlier second
            elif r < 0.2:
                timers.schedule(now + rng.uniform(0, 3), next(ids))
    got.append(("left", len(timers) if hasattr(timers, "__len__") else len(timers.heap)))
    return got


@pytest.mark.parametrize("seed", range(12))
def test_the_calendar_hands_out_what_a_heap_would(seed):
    assert drive(Timers(), seed) == drive(HeapTimers(), seed)


def test_an_entry_queued_meanwhile_in_an_earlier_second_comes_next():
    t = Timers()
    for when, obj in [(5.1, "a"), (5.2, "b"), (5.3, "c")]:
        t.schedule(when, obj)
    got = []
    for obj in t.pop_due(10.0):
        got.append(obj)
        if obj == "a":
            t.schedule(3.5, "early")  # a new bucket before the one being handed out
    assert got == ["a", "early", "b", "c"]


def test_a_bucket_queued_out_of_order_comes_out_by_time_equal_times_in_order():
    t = Timers()
    for when, obj in [(7.5, "a"), (7.2, "b"), (7.5, "c"), (7.2, "d"), (7.9, "e")]:
        t.schedule(when, obj)
    assert list(t.pop_due(7.5)) == ["b", "d", "a", "c"]
    t.schedule(7.6, "f")  # into the ordered bucket, in place
    assert list(t.pop_due(8.0)) == ["f", "e"]
    assert len(t) == 0 and t.next_deadline() is None


def test_a_large_bucket_handed_out_in_parts_drops_what_it_handed_out():
    # Past 1024 entries handed out of one bucket, it forgets them (compaction) while handing out more.
    t, ref = Timers(), HeapTimers()
    for i in range(5000):
        for q in (t, ref):
            q.schedule(100 + i / 10000, i)
    got, want = [], []
    for k in range(1, 12):
        now = 100 + k * 450 / 10000
        for q, out in ((t, got), (ref, want)):
            for obj in q.pop_due(now):
                out.append(obj)
                if obj % 700 == 0:
                    q.schedule(now + 0.01, -obj)  # into the same bucket, after what was handed out
    assert got == want


@FAST
def test_crossing_fins_the_teardown_names_the_first_closer(fast):
    # The client's FIN and the server's cross; the client acknowledges the server's, then the server's
    # ACK of the client's FIN comes last, from outside: the teardown names the side whose FIN came
    # first (the ASA's "from inside"), not the one the last ACK came from.
    fw, net, server, client = lab(fast, "embryonic 0:00:30 idle 1:00:00 half-closed 0:01:00")
    open_conn(net, client)
    ((_, cfin),) = fw.receive("inside", client.close(40001, SERVER, 80), net.now).packets  # not yet delivered
    ((_, sfin),) = fw.receive("outside", server.close(80, MAPPED, 40001), net.now).packets
    start = len(net.events)
    net.sendall(client, client.deliver(sfin))
    assert len(fw.conns) == 1
    net.sendall(server, server.deliver(cfin))  # the last ACK
    used_fast_path(fw, fast)
    assert len(fw.conns) == 0
    (line,) = log(net, start)
    assert line.endswith("duration 0:00:00 bytes 8 TCP FINs from inside")


def test_linux_a_timer_moved_earlier_by_the_close():
    # netfilter's path names each timeout after the tracker's state (``set_timeout``): ESTABLISHED's
    # 5 days, then TIME_WAIT's 120 s once the connection closed, far earlier than the queued timer.
    def tcp(src, dst, sport, dport, flags, seq, ack=0):
        return craft.tcp_packet(
            4, str_to_addr(src)[1], str_to_addr(dst)[1], sport, dport, seq, ack, flags, 64240
        )

    w = Link.iptables(
        "#@statewall interface fa address 10.66.1.254/24\n#@statewall interface fb address 10.66.2.254/24\n"
        "iptables -t nat -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.66.2.1:5555\n"
    )
    c, s, d = "10.66.1.1", "10.66.9.9", "10.66.2.1"
    syn, ack, fin = 0x02, 0x10, 0x01
    w.send("fa", tcp(c, s, 35578, 80, syn, 1))
    w.send("fb", tcp(d, c, 5555, 35578, syn | ack, 50, 2))
    w.send("fa", tcp(c, s, 35578, 80, ack, 2, 51))
    w.wait(130.0)  # SYN_SENT's timer came due: queued again at ESTABLISHED's deadline
    assert w.listing()[0].startswith("tcp      6 431870 ESTABLISHED ")  # 5 days from the last ACK
    w.send("fb", tcp(d, c, 5555, 35578, fin | ack, 51, 2))
    w.send("fa", tcp(c, s, 35578, 80, fin | ack, 2, 52))
    w.send("fb", tcp(d, c, 5555, 35578, ack, 52, 3))
    assert w.listing()[0].startswith("tcp      6 120 TIME_WAIT ")
    w.wait(119.9)
    assert not any(line.startswith("[DESTROY]") for line in w.ct_lines())
    w.wait(0.2)
    assert w.ct_lines()[-1].startswith("[DESTROY] tcp      6 TIME_WAIT src=10.66.1.1 dst=10.66.9.9 ")
    assert w.listing() == []
