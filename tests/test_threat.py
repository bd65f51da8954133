"""Basic threat detection's 733100, told as the ASA guides tell it: burst rates over 20 s (rate-1) and
120 s (rate-2), average rates over 600 s and 3600 s, the syn-attack defaults 200/100 and 160/80, at
most one message per rate type and burst period, and the message's exact text.
"""

from __future__ import annotations

import ipaddress
import random

from fixtures import ASA_WEB
from sim_tcp import SYN, Net, TcpHost
from statewall import craft, threat
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import Drop, DropReason, ThreatRate
from statewall.logfmt.asa import format_event

SERVER = "192.168.1.10"

CFG = (
    "{version}\n"
    + ASA_WEB
    + """\
class-map WEB
 match port tcp eq www
policy-map PROTECT
 class WEB
  set connection {limits}
service-policy PROTECT interface outside
"""
)


def spoofed_syn(rng: random.Random) -> bytearray:
    src = rng.randrange(0x0B000000, 0xC0000000)
    while src >> 24 == 127:  # a loopback source never reaches the flood's subject (sp-security-failed)
        src = rng.randrange(0x0B000000, 0xC0000000)
    dst = int(ipaddress.ip_address(SERVER))
    return craft.tcp_packet(4, src, dst, rng.randrange(1024, 65535), 80, rng.getrandbits(32), 0, SYN, 29200)


def flood(limits: str, n: int, per_second: float, *, start: float = 1000.0, version="ASA Version 9.1(2)"):
    fw = Firewall(parse(CFG.format(version=version, limits=limits), "threat.cfg"), seed=5)
    server = TcpHost("inside", SERVER)
    server.listen(80)
    net = Net(fw, [server], now=start)
    rng = random.Random(1)
    for i in range(n):
        net.now = start + (i + 1) / per_second
        net.send("outside", spoofed_syn(rng))
    return fw, net


def test_burst_intervals_are_a_thirtieth_of_the_rate_interval_or_10_s():
    assert [threat.burst_interval(s) for s in (600, 3600, 60, 300)] == [20, 120, 10, 10]
    assert threat.DEFAULT_RATES[threat.SYN_ATTACK] == ((600, 100, 200), (3600, 80, 160))


def test_a_syn_flood_logs_syn_attck_once_its_burst_rate_passes_200_per_second():
    # 500 SYNs per second for 10 s, all within one 20 s burst interval: the 4001st intercepted SYN makes
    # the burst rate 4001 / 20 > 200 and is logged; the rest of the period stays quiet.
    fw, net = flood("embryonic-conn-max 10", 5000, 500.0)
    intercepted = [d for d in net.of(Drop) if d.reason is DropReason.INTERCEPT]
    assert len(intercepted) == 4990
    (ev,) = net.of(ThreatRate)
    assert (ev.trigger, ev.total) == ("burst", 4001)
    assert format_event(ev, timestamp=False) == [
        "%ASA-4-733100: [ SYN attck] drop rate-1 exceeded. Current burst rate is 200 per second, max "
        "configured rate is 200; Current average rate is 6 per second, max configured rate is 100; "
        "Cumulative total count is 4001"
    ]
    assert fw.threat.categories[threat.SYN_ATTACK].total == 4990
    assert fw.threat.categories[threat.CONN_LIMIT].total == 0


def test_the_next_burst_period_may_log_again_and_a_slow_flood_never_does():
    # 30 s at 500/s: the period [1000, 1020) has 9 989 intercepted SYNs, [1020, 1040) 5 000; each period
    # logs at its 4001st. The cumulative count goes on.
    fw, net = flood("embryonic-conn-max 10", 15000, 500.0)
    first, second = net.of(ThreatRate)
    assert (first.total, second.total) == (4001, 9989 + 4001)
    assert (int(first.time // 20), int(second.time // 20)) == (50, 51)
    _, quiet = flood("embryonic-conn-max 10", 3000, 150.0)  # 150/s < 200/s: 20 s carry 3000 < 4000
    assert quiet.of(ThreatRate) == []


def test_a_sustained_rate_exceeds_the_average_and_logs_once_per_burst_period():
    # 150 SYN drops per second for 15 minutes: never a burst over 200/s, but the 600 s average passes
    # 100/s once the last 30 intervals hold more than 60 000 drops.
    bt = threat.BasicThreat()
    ev: list = []
    t = 0.0
    while t < 900.0:
        bt.drop(threat.SYN_ATTACK, t, ev)
        t += 1 / 150
    assert ev and all(e.trigger == "average" and e.rate_id == 1 for e in ev)
    periods = [int(e.time // 20) for e in ev]
    assert len(periods) == len(set(periods))  # one message per burst period
    first = ev[0]
    assert first.average_rate >= 100 and first.burst_rate < 200
    line = format_event(first, timestamp=False)[0]
    assert line.startswith("%ASA-4-733100: [ SYN attck] drop rate-1 exceeded. Current burst rate is ")
    assert f"Current average rate is {first.average_rate} per second, max configured rate is 100;" in line
    # rate-2 (3600 s, 80/s) needs 288 000 drops in its 30 intervals: not reached in 15 minutes.
    assert not [e for e in ev if e.rate_id == 2]


def test_connection_limit_refusals_are_conn_limit_drops():
    fw, net = flood("conn-max 10", 50, 100.0)
    refused = [d for d in net.of(Drop) if d.reason is DropReason.CONN_LIMIT]
    assert len(refused) == 40 and fw.threat.categories[threat.CONN_LIMIT].total == 40
    bt = threat.BasicThreat()
    ev: list = []
    for i in range(8001):
        bt.drop(threat.CONN_LIMIT, 40.0 + i / 1000, ev)
    (e,) = ev
    assert format_event(e, timestamp=False) == [
        "%ASA-4-733100: [ Conn limit] drop rate-1 exceeded. Current burst rate is 400 per second, max "
        "configured rate is 400; Current average rate is 13 per second, max configured rate is 100; "
        "Cumulative total count is 8001"
    ]


def test_before_8_0_there_is_no_threat_detection():
    fw, net = flood("embryonic-conn-max 10", 5000, 500.0, version="PIX Version 7.2(4)")
    assert fw.threat is None and net.of(ThreatRate) == []
