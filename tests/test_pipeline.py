"""The engine as a pipeline of named stages: packet-tracer reads the stages' phases, reload keeps the
state and rebuilds what is compiled, and the path follows what the policy contains."""

from __future__ import annotations

from collections import Counter
from ipaddress import ip_address

import pytest

from statewall import craft
from statewall.config import parse_policy
from statewall.engine import Firewall, asa, compiled, nf_path, state
from statewall.events import ConnBuilt, Drop, DropReason
from statewall.tracer import packet_tracer, stage_phases

CONFIG = """\
ASA Version 9.8(1)
hostname pipeline
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 192.0.2.1 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 10.0.0.1 255.255.255.0
object network inside-net
 subnet 10.0.0.0 255.255.255.0
 nat (inside,outside) dynamic interface
route outside 0.0.0.0 0.0.0.0 192.0.2.254
"""
DENY_53 = CONFIG + (
    "access-list inside_in extended deny udp any any eq 53\n"
    "access-list inside_in extended permit ip any any\n"
    "access-group inside_in in interface inside\n"
)
CLIENT, SERVER = int(ip_address("10.0.0.2")), int(ip_address("198.51.100.7"))


def udp(sport: int, dport: int = 53) -> bytearray:
    # A DNS query header: port 53 is inspected (statewall.inspect.dns) and wants a DNS message.
    return craft.udp_packet(4, CLIENT, SERVER, sport, dport, b"\x00\x01\x01\x00" + bytes(8))


def built(events) -> list[int]:
    return [e.conn_id for e in events if isinstance(e, ConnBuilt)]


def types(text: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Type: ")]


def test_packet_tracer_prints_the_phases_the_stages_report_in_stage_order():
    policy = parse_policy(CONFIG, "fw.cfg")
    fw = Firewall(policy)
    order = stage_phases(fw)
    text, allowed = packet_tracer(policy, "inside", "udp", "10.0.0.2", 5000, "198.51.100.7", 53)
    assert allowed
    # The factory policy's DNS inspection is modelled: its INSPECT phase, as a real ASA prints it.
    assert types(text) == [
        "FLOW-LOOKUP", "ROUTE-LOOKUP", "ACCESS-LIST", "NAT", "NAT", "IP-OPTIONS", "INSPECT", "FLOW-CREATION"
    ]  # fmt: skip
    assert [order.index(t) for t in types(text)] == sorted(order.index(t) for t in types(text))
    text, allowed = packet_tracer(
        parse_policy(DENY_53, "fw.cfg"), "inside", "udp", "10.0.0.2", 1, "198.51.100.7", 53
    )
    assert not allowed and types(text) == ["FLOW-LOOKUP", "ROUTE-LOOKUP", "ACCESS-LIST"]


def test_a_stage_reporting_a_phase_it_does_not_declare_is_refused(monkeypatch):
    """The tracer cannot print a phase no stage of the engine declares: the two cannot drift apart."""
    monkeypatch.setattr(asa.route, "phases", ("ROUTE",))
    with pytest.raises(RuntimeError, match="ROUTE-LOOKUP reported by no stage"):
        packet_tracer(parse_policy(CONFIG, "fw.cfg"), "inside", "udp", "10.0.0.2", 5000, "198.51.100.7", 53)


def test_the_path_follows_what_the_policy_contains():
    fw = Firewall(parse_policy(CONFIG, "fw.cfg"))
    assert fw.nf_path is None and fw.path is asa.process
    assert fw.new_flow_stages == (
        asa.lookup, asa.unnat, asa.route, asa.access_list, asa.conn_settings, asa.source_nat, asa.ip_options,
        asa.inspect, asa.stateless, asa.track, asa.limits, asa.build,
    )  # fmt: skip
    nf = Firewall(parse_policy("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\nCOMMIT\n", "fw.rules"))
    assert nf.nf_path is not None and nf.path is nf_path.process and nf.new_flow_stages == ()
    assert nf.fast is None  # netfilter's rules count every packet: nothing is offloaded


def test_reload_keeps_connections_counters_and_ids_and_rebuilds_the_rules():
    fw = Firewall(parse_policy(CONFIG, "fw.cfg"))
    first = built(fw.receive("inside", udp(5000), 1.0).events)
    fw.receive("inside", bytearray(b"\x45" + bytes(19)), 1.0)  # a malformed packet: one drop counted
    drops, acl, stats = dict(fw.drops), fw.acl, dict(fw.stats)
    assert first == [1] and sum(drops.values()) == 1

    dropped, unknown = fw.reload(parse_policy(DENY_53, "fw.cfg"))
    assert (dropped, unknown) == (0, [])
    assert fw.acl is not acl and list(fw.conns.by_id) == [1]
    assert dict(fw.drops) == drops and fw.stats["packets_in"] == stats["packets_in"]
    # The connection from before goes on; a new one meets the new access list.
    assert len(fw.receive("inside", udp(5000), 2.0).packets) == 1
    res = fw.receive("inside", udp(5001), 2.0)
    assert [e.reason for e in res.events if isinstance(e, Drop)] == [DropReason.ACL_DROP]
    # Ids go on from where they were.
    assert built(fw.receive("inside", udp(5002, 123), 3.0).events) == [2]


def test_a_reload_that_cannot_compile_changes_nothing():
    fw = Firewall(parse_policy(CONFIG, "fw.cfg"))
    fw.receive("inside", udp(5000), 1.0)
    before = {name: getattr(fw, name) for name in compiled.REBUILT + compiled.MERGED + state.KEPT}
    bad = parse_policy(CONFIG, "fw.cfg")
    bad.faults = ("no-such-fault",)
    with pytest.raises(ValueError, match="unknown fault"):
        fw.reload(bad)
    assert all(getattr(fw, name) is value for name, value in before.items())


def test_show_asp_drop_and_the_drop_events_come_from_the_same_count():
    fw = Firewall(parse_policy(DENY_53, "fw.cfg"))
    events = []
    for data, iface in (
        (udp(5000), "inside"),  # denied by the access list
        (bytearray(b"\x45" + bytes(19)), "inside"),  # malformed
        (udp(5001, 80), "dmz"),  # an interface the firewall does not have
        (craft.tcp_packet(4, CLIENT, SERVER, 5002, 80, 1, 1, 0x10), "inside"),  # no SYN, no connection
    ):
        events += fw.receive(iface, data, 1.0).events
    reasons = Counter(e.reason for e in events if isinstance(e, Drop))
    assert reasons == fw.drops and sum(reasons.values()) == 4 == fw.stats["dropped"]
