"""The new-flow classification kept per class (``statewall.engine.flowclass``) against the stages run
for every first packet: the same packets out, the same events, counters, hit counts, translations and
connections, packet for packet; and a reload applies from the next first packet on."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statewall import craft
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import DropReason
from statewall.logfmt.tables import show_conn, show_xlate
from statewall.packet import str_to_addr

BASE = """\
ASA Version 9.1(2)
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 192.0.2.1 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 10.0.0.1 255.255.255.0
interface GigabitEthernet0/2
 nameif dmz
 security-level 50
 ip address 172.16.0.1 255.255.255.0
object network inside-net
 subnet 10.0.0.0 255.255.255.0
 nat (inside,outside) dynamic interface
object network pool
 range 203.0.113.100 203.0.113.101
object network special
 host 10.0.0.9
 nat (inside,outside) dynamic pool
object network web
 host 172.16.0.80
 nat (dmz,outside) static 192.0.2.80
access-list INSIDE_IN extended permit tcp any any eq www log
access-list INSIDE_IN extended deny tcp any any eq telnet log
access-list INSIDE_IN extended permit tcp any any
access-list INSIDE_IN extended permit udp any any
access-list INSIDE_IN extended permit icmp any any
access-group INSIDE_IN in interface inside
access-list OUTSIDE_IN extended permit tcp any host 172.16.0.80 eq www log
access-list OUTSIDE_IN extended permit tcp any host 10.0.0.9
access-list OUTSIDE_IN extended permit tcp any 203.0.113.0 255.255.255.0
access-list OUTSIDE_IN extended permit icmp any any
access-group OUTSIDE_IN in interface outside
access-list WEB_CLASS extended permit tcp any any eq 8080
class-map web
 match access-list WEB_CLASS
policy-map global_policy
 class web
  set connection timeout idle 0:05:00
service-policy global_policy global
route outside 0.0.0.0 0.0.0.0 192.0.2.254 1
route dmz 203.0.113.0 255.255.255.0 172.16.0.254 1
"""
# A rule that looks at the source port: the classes are kept per source port too.
BY_SPORT = BASE.replace(
    "access-list INSIDE_IN extended permit tcp any any\n",
    "access-list INSIDE_IN extended deny tcp any eq 4444 any log\n"
    "access-list INSIDE_IN extended permit tcp any any\n",
)
CONFIGS = {"base": BASE, "by-sport": BY_SPORT}

INSIDE = ["10.0.0.2", "10.0.0.3", "10.0.0.9"]
OUTSIDE = ["198.51.100.7", "198.51.100.8"]
DMZ = ["172.16.0.80"]
TARGETS = {
    "inside": OUTSIDE + ["172.16.0.80"],
    "outside": ["192.0.2.80", "192.0.2.1", "203.0.113.100", "203.0.113.101", "10.0.0.2"],
    "dmz": OUTSIDE,
}
SOURCES = {"inside": INSIDE, "outside": OUTSIDE, "dmz": DMZ}


def packet(rnd: random.Random, spec) -> tuple[str, bytearray]:
    iface, kind, src_i, dst_i, dport, sport = spec
    src = str_to_addr(SOURCES[iface][src_i % len(SOURCES[iface])])[1]
    dst = str_to_addr(TARGETS[iface][dst_i % len(TARGETS[iface])])[1]
    if kind == "udp":
        return iface, craft.udp_packet(4, src, dst, sport, dport, b"q")
    if kind == "icmp":
        return iface, craft.icmp_echo(4, src, dst, sport, 1)
    flags = {"syn": 0x02, "ack": 0x10, "synack": 0x12}[kind]
    return iface, craft.tcp_packet(4, src, dst, sport, dport, 1000, 0 if kind == "syn" else 5, flags, 64240)


def state(fw: Firewall) -> list:
    hits = [(cr.hits, list(cr.element_hits)) for rules in fw.acl.compiled.values() for cr in rules]
    return [
        hits,
        dict(fw.stats),
        dict(fw.drops),
        show_conn(fw, detail=True, now=fw.now),
        show_xlate(fw, now=fw.now),
    ]


def run_both(config: str, steps: list) -> tuple[Firewall, Firewall]:
    kept = Firewall(parse(config, "t.cfg"), seed=3)
    plain = Firewall(parse(config, "t.cfg"), seed=3)
    plain.flow_classes = None  # every first packet through every stage
    assert kept.flow_classes is not None
    rnd = random.Random(0)
    now = 10.0
    for n, (dt, spec) in enumerate(steps):
        now += dt
        iface, data = packet(rnd, spec)
        results = []
        for fw in (kept, plain):
            adv = fw.advance(now)
            res = fw.receive(iface, bytearray(data), now)
            results.append(
                (
                    [(i, bytes(p)) for i, p in adv.packets + res.packets],
                    [repr(e) for e in adv.events + res.events],
                )
            )
        assert results[0] == results[1], f"step {n}: {spec}"
        assert state(kept) == state(plain), f"state after step {n}: {spec}"
    return kept, plain


SPEC = st.tuples(
    st.sampled_from(["inside", "inside", "inside", "outside", "dmz"]),
    st.sampled_from(["syn", "syn", "syn", "udp", "icmp", "ack", "synack"]),
    st.integers(0, 2),
    st.integers(0, 4),
    st.sampled_from([80, 80, 23, 8080, 443, 53]),
    st.sampled_from([4444, 30000, 30001, 30002, 40000]),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=st.sampled_from(sorted(CONFIGS)),
    steps=st.lists(st.tuples(st.sampled_from([0.0, 0.0, 0.5, 20.0, 200.0]), SPEC), min_size=1, max_size=40),
)
def test_kept_classes_change_nothing(config, steps):
    run_both(CONFIGS[config], steps)


def test_repeated_first_packets_are_answered_from_their_class():
    steps = [(0.01, ("inside", "syn", i % 2, 0, 80, 30000 + i)) for i in range(40)]
    steps += [(0.01, ("inside", "udp", 0, 1, 53, 30000 + i)) for i in range(10)]
    steps += [(0.01, ("outside", "syn", i % 2, 0, 80, 30000 + i)) for i in range(10)]
    kept, _ = run_both(BASE, steps)
    classes = kept.flow_classes
    # Two inside hosts to one server, one UDP class, two outside hosts to the published server.
    assert len(classes) == 5
    assert classes.hits == 60 - 5
    assert not classes.by_sport


def test_a_rule_on_the_source_port_keeps_classes_per_port():
    steps = [(0.01, ("inside", "syn", 0, 0, 8080, sport)) for sport in (30000, 4444, 30001, 4444)]
    kept, _ = run_both(BY_SPORT, steps)
    classes = kept.flow_classes
    assert classes.by_sport
    assert kept.drops[DropReason.ACL_DROP] == 2  # refused flows are never kept
    assert (len(classes), classes.hits) == (2, 0)


def test_a_live_dynamic_nat_slot_is_found_before_the_kept_class():
    """UN-NAT by xlate: an outside host's flow to the pool address is routed to the dmz until 10.0.0.9
    holds the address's slot, then it goes to 10.0.0.9, though the class was kept before."""
    steps = [(0.01, ("outside", "syn", 0, 2, 22, 30000 + i)) for i in range(2)]  # to 203.0.113.100
    steps.append((0.01, ("inside", "syn", 2, 0, 443, 31000)))  # 10.0.0.9 takes 203.0.113.100
    steps += [(0.01, ("outside", "syn", 0, 2, 22, 30002 + i)) for i in range(2)]
    kept, plain = run_both(BASE, steps)
    egress = [c.halves[0].out_iface for c in sorted(kept.conns, key=lambda c: c.id)]
    assert egress == ["dmz", "dmz", "outside", "inside", "inside"]
    assert kept.flow_classes.hits == 1


def _syn(fw: Firewall, sport: int, dport: int = 80, now: float = 10.0):
    data = craft.tcp_packet(4, 0x0A000002, 0xC6336407, sport, dport, 1000, 0, 0x02, 64240)
    return fw.receive("inside", data, now)


def test_a_reload_applies_from_the_next_first_packet():
    fw = Firewall(parse(BASE, "t.cfg"), seed=1)
    for sport in (30000, 30001):
        assert _syn(fw, sport).packets
    assert fw.flow_classes.hits == 1
    # The access list now refuses the class the engine kept.
    fw.reload(parse(BASE.replace("permit tcp any any eq www log", "deny tcp any any eq www log"), "t.cfg"))
    res = _syn(fw, 30002)
    assert not res.packets and fw.drops[DropReason.ACL_DROP] == 1
    # NAT: the inside network now leaves through the pool, not the interface.
    pool = BASE.replace("nat (inside,outside) dynamic interface", "nat (inside,outside) dynamic pool")
    fw.reload(parse(pool, "t.cfg"))
    out = _syn(fw, 30003).packets[0][1]
    assert out[12:16] in (bytes([203, 0, 113, 100]), bytes([203, 0, 113, 101]))
    # The class settings: port 8080's idle timeout, then another one after the reload.
    _syn(fw, 30004, 8080)
    fw.reload(parse(BASE.replace("timeout idle 0:05:00", "timeout idle 0:07:00"), "t.cfg"))
    _syn(fw, 30005, 8080)
    _syn(fw, 30006, 8080)
    timeouts = {c.halves[0].key[3]: c.mpf.timeout_idle if c.mpf else None for c in fw.conns}
    assert timeouts[30004] != timeouts[30005] == timeouts[30006]
