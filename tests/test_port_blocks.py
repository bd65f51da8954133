"""PAT port block allocation (``pat-pool OBJ block-allocation``, ``xlate block-allocation``): the dialect
accepts and prints it, the engine gives each host blocks of ports and logs 305014/305015/305016 instead
of a 305011/305012 per translation, and each block held again every interim logging interval (305017)
(Cisco ASA configuration guide, PAT with port block allocation; Cisco ASA syslog messages
305014-305017)."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP

from statewall.config import parse_policy
from statewall.dialects.asa.render import render
from statewall.dialects.errors import ConfigErrors
from statewall.engine import Firewall
from statewall.events import (
    PortBlockActive,
    PortBlockAllocated,
    PortBlockReleased,
    XlateBuilt,
    XlateTeardown,
)
from statewall.lab.topology import ASA_INTERFACES
from statewall.logfmt.asa import format_event
from statewall.nat import port_owner

FRONT = (
    """ASA Version 9.8(1)
hostname pba
"""
    + ASA_INTERFACES
    + """\
route outside 0.0.0.0 0.0.0.0 203.0.113.254
object network pool
 host 203.0.113.9
object network inside-net
 subnet 192.168.1.0 255.255.255.0
"""
)


def config(
    settings: str = "xlate block-allocation size 4\nxlate block-allocation maximum-per-host 2\n",
) -> str:
    return FRONT + " nat (inside,outside) dynamic pat-pool pool block-allocation\n" + settings


def syn(src: str, sport: int, dst: str = "8.8.8.8") -> bytearray:
    return bytearray(bytes(IP(src=src, dst=dst) / TCP(sport=sport, dport=80, flags="S")))


def lines(events) -> list[str]:
    return [line for ev in events for line in format_event(ev, timestamp=False)]


def test_the_dialect_accepts_block_allocation_and_prints_it_back() -> None:
    policy = parse_policy(config(), "pba.cfg")
    assert policy.port_blocks.size == 4 and policy.port_blocks.max_per_host == 2
    assert policy.nat_rules[0].pool.block_allocation
    text = render(policy)
    assert " nat (inside,outside) dynamic pat-pool pool block-allocation" in text
    assert "xlate block-allocation size 4" in text and "xlate block-allocation maximum-per-host 2" in text
    again = parse_policy(text, "again.cfg")
    assert again.port_blocks.size == 4 and again.nat_rules[0].pool.block_allocation
    # Defaults: 512 ports, 4 blocks per host; a policy that never says so prints nothing.
    plain = parse_policy(FRONT, "plain.cfg")
    assert (plain.port_blocks.size, plain.port_blocks.max_per_host) == (512, 4)
    assert "block-allocation" not in render(plain)


@pytest.mark.parametrize(
    "line, message",
    [
        ("xlate block-allocation size 5000", "1..4096"),
        ("xlate block-allocation maximum-per-host 9", "1..8"),
        ("xlate block-allocation size", "missing xlate block-allocation size"),
    ],
)
def test_out_of_range_settings_are_located_errors(line: str, message: str) -> None:
    with pytest.raises(ConfigErrors) as err:
        parse_policy(FRONT + line + "\n", "bad.cfg")
    text = str(err.value)
    assert text.startswith("bad.cfg:16:") and message in text, text


def test_block_allocation_cannot_fall_back_to_the_interface_or_be_flat() -> None:
    for opts in ("flat block-allocation", "block-allocation interface"):
        with pytest.raises(ConfigErrors, match="block-allocation cannot be combined"):
            parse_policy(FRONT + f" nat (inside,outside) dynamic pat-pool pool {opts}\n", "bad.cfg")


INTERIM = 21600  # the shortest interval the ASA takes (6 hours)
T0 = 100 * INTERIM + 5.0  # a little after a round


def udp(src: str, sport: int) -> bytearray:
    return bytearray(bytes(IP(src=src, dst="8.8.8.8") / UDP(sport=sport, dport=123) / b"ntp"))


def interim_firewall() -> Firewall:
    """Two hosts, each holding one block through a UDP connection idle for a day (timeout udp 24 h)."""
    policy = parse_policy(
        config(
            "xlate block-allocation size 4\nxlate block-allocation pba-interim-logging 21600\n"
            "timeout udp 24:00:00\n"
        ),
        "pba.cfg",
    )
    assert policy.port_blocks.interim_logging == INTERIM
    assert not any("interim" in u.feature for u in policy.unmodelled)
    fw = Firewall(policy)
    assert fw.receive("inside", udp("192.168.1.5", 40000), T0).packets
    assert fw.receive("inside", udp("192.168.1.6", 40000), T0 + 10).packets
    return fw


def test_interim_logging_logs_each_held_block_again_at_every_round_of_the_engines_clock() -> None:
    """``xlate block-allocation pba-interim-logging 21600``: every 6 hours each block held is logged
    again (Cisco ASA syslog 305017, severity 3). Rounds fall on whole multiples of the interval of the
    engine's own clock, which only packets and ``advance`` move (sans-IO), and are queued on its timers:
    ``next_deadline`` names the next one. The blocks are released with their connections a day later,
    and no round follows."""
    fw = interim_firewall()
    first_round = 101 * INTERIM
    assert fw.next_deadline() == first_round
    assert fw.advance(first_round - 1).events == []
    events = fw.advance(first_round).events
    assert lines(events) == [
        "%ASA-3-305017: Pba-interim-logging: Active 4 block of ports for translation from "
        f"inside:192.168.1.{h} to outside:203.0.113.9/{start}-{start + 3}"
        for h, start in ((5, 1024), (6, 1028))
    ]
    assert all(isinstance(ev, PortBlockActive) and ev.time == first_round for ev in events)
    later = fw.advance(T0 + 2 * 86400).events
    active = [ev.time for ev in later if isinstance(ev, PortBlockActive)]
    released = [ev.time for ev in later if isinstance(ev, PortBlockReleased)]
    # Rounds at 102..104 x 6 h while the connections live (until T0 + 1 day + the PAT xlate's 30 s).
    assert sorted(set(active)) == [k * INTERIM for k in (102, 103, 104)] and len(active) == 6
    assert len(released) == 2 and max(active) < min(released)
    assert fw.next_deadline() is None


def test_interim_rounds_come_in_time_order_whatever_advance_steps_by() -> None:
    """One ``advance`` across a day gives the events that many small steps give, in the same order:
    the rounds are timers among the connections' and translations' (a block released before a round
    is not in it)."""
    one, steps = interim_firewall(), interim_firewall()
    # A third host's SYN is never answered: its block goes with it a minute later, before any round.
    for fw in (one, steps):
        assert fw.receive("inside", syn("192.168.1.7", 40000), T0 + 20).packets
    whole = one.advance(T0 + 2 * 86400).events
    stepped = []
    t = T0
    while t < T0 + 2 * 86400:
        t += 997.0
        stepped += steps.advance(min(t, T0 + 2 * 86400)).events
    assert [(type(ev).__name__, ev.time, getattr(ev, "port_start", None)) for ev in whole] == [
        (type(ev).__name__, ev.time, getattr(ev, "port_start", None)) for ev in stepped
    ]
    assert any(isinstance(ev, PortBlockActive) for ev in whole)
    assert 1032 not in {ev.port_start for ev in whole if isinstance(ev, PortBlockActive)}
    assert [ev.port_start for ev in whole if isinstance(ev, PortBlockReleased)][0] == 1032


def test_interim_logging_survives_a_reload_and_a_snapshot() -> None:
    """The next round is state (``NatTable.pba_tick``, with the timers): a reload keeps it and a
    restored snapshot goes on with it, one round at a time."""
    fw = interim_firewall()
    fw.reload(fw.policy)
    assert fw.next_deadline() == 101 * INTERIM
    copy = Firewall(fw.policy)
    copy.restore(fw.snapshot())
    events = copy.advance(101 * INTERIM).events
    assert [ev.port_start for ev in events if isinstance(ev, PortBlockActive)] == [1024, 1028]
    assert copy.next_deadline() == 102 * INTERIM


def test_a_pool_without_a_free_block_refuses_with_305016s_pool_form() -> None:
    """A PAT pool whose blocks are all held refuses a new host with 305016's port block exhaustion
    form (Cisco ASA syslog 305016: the connection's, naming the pool and its address; for a flow
    without ports the pool's alone), not the per-host limit's."""
    policy = parse_policy(
        config("xlate block-allocation size 4096\nxlate block-allocation maximum-per-host 1\n"), "p"
    )
    fw = Firewall(policy)
    # 1024-65535 in blocks of 4096: 16 blocks (the last one of 3072 ports), one per host.
    for h in range(16):
        assert fw.receive("inside", syn(f"192.168.1.{10 + h}", 40000), 1.0).packets
    res = fw.receive("inside", syn("192.168.1.99", 40000), 2.0)
    assert not res.packets
    assert lines(res.events) == [
        "%ASA-3-305016: Unable to create tcp connection from inside:192.168.1.99/40000 to "
        "outside:8.8.8.8/80 due to port block exhaustion in PAT pool 'pool' IP 203.0.113.9."
    ]
    ping = bytearray(bytes(IP(src="192.168.1.99", dst="8.8.8.8") / ICMP(id=7, seq=1)))
    res = fw.receive("inside", ping, 3.0)
    assert lines(res.events) == [
        "%ASA-3-305016: Port blocks exhausted in PAT pool 'pool' IP 203.0.113.9. Unable to create connection."
    ]
    # A host that holds its block still gets ports of it; the per-host limit keeps its own form.
    assert fw.receive("inside", syn("192.168.1.10", 40001), 4.0).packets


def test_a_host_gets_blocks_of_ports_up_to_its_maximum_and_they_are_released_with_their_last_xlate() -> None:
    fw = Firewall(parse_policy(config(), "pba.cfg"))
    events = []
    ports = []
    for i in range(10):
        res = fw.receive("inside", syn("192.168.1.5", 40000 + i), 1.0 + i / 10)
        events += res.events
        if res.packets:
            ports.append(int.from_bytes(bytes(res.packets[0][1][20:22]), "big"))
    # Two blocks of 4 ports from 1024 (blocks start at 1024): 8 connections, then the per-host limit.
    assert sorted(ports) == list(range(1024, 1032))
    log = lines(events)
    assert (
        log.count(
            "%ASA-6-305014: Allocated 4 block of ports for translation from inside:192.168.1.5 to "
            "outside:203.0.113.9/1024-1027"
        )
        == 1
    )
    assert (
        "%ASA-6-305014: Allocated 4 block of ports for translation from inside:192.168.1.5 to "
        "outside:203.0.113.9/1028-1031" in log
    )
    assert (
        log.count(
            "%ASA-3-305016: Unable to create tcp connection from inside:192.168.1.5/40008 to "
            "outside:8.8.8.8/80 due to reaching per-host PAT port block limit of 2."
        )
        == 1
    )
    # The translations within a block are not logged.
    assert not any(isinstance(ev, XlateBuilt) for ev in events)
    # Another host gets blocks of its own.
    res = fw.receive("inside", syn("192.168.1.6", 40000), 2.0)
    assert int.from_bytes(bytes(res.packets[0][1][20:22]), "big") == 1032
    assert isinstance(res.events[0], PortBlockAllocated) and res.events[0].port_start == 1032
    # The connections time out (SYN timeout 30 s), the translations after them (pat-xlate 30 s): each
    # block is released with its last translation, and no 305012 is logged.
    later = fw.advance(200.0).events
    released = [ev for ev in later if isinstance(ev, PortBlockReleased)]
    assert sorted((ev.real_address, ev.port_start) for ev in released) == [
        ("192.168.1.5", 1024), ("192.168.1.5", 1028), ("192.168.1.6", 1032),
    ]  # fmt: skip
    assert not any(isinstance(ev, XlateTeardown) for ev in later)
    assert (
        "%ASA-6-305015: Released 4 block of ports for translation from inside:192.168.1.6 to "
        "outside:203.0.113.9/1032-1035" in lines(later)
    )
    # The blocks are free again: the host starts over at the first one.
    res = fw.receive("inside", syn("192.168.1.5", 50000), 201.0)
    assert res.events[0].port_start == 1024


def test_protocols_share_the_hosts_blocks() -> None:
    fw = Firewall(parse_policy(config(), "pba.cfg"))
    fw.receive("inside", syn("192.168.1.5", 40000), 1.0)
    # NTP: DNS on 53 is inspected, and an empty DNS datagram is dropped
    udp = bytearray(bytes(IP(src="192.168.1.5", dst="8.8.8.8") / UDP(sport=5353, dport=123)))
    res = fw.receive("inside", udp, 1.1)
    assert 1024 <= int.from_bytes(bytes(res.packets[0][1][20:22]), "big") <= 1027
    assert not any(isinstance(ev, PortBlockAllocated) for ev in res.events)


def test_a_worker_allocates_blocks_inside_its_own_512_port_blocks() -> None:
    """With port_share (a shard of a sharded replay, a worker of statewall run --workers) a block is
    taken only when all its ports are in the shard's own 512-port blocks, so that a reply's port names
    its owner (nat.port_owner) as for plain PAT."""
    policy = parse_policy(
        config("xlate block-allocation size 256\nxlate block-allocation maximum-per-host 8\n"), "p"
    )
    for shard in range(3):
        fw = Firewall(policy)
        fw.nat.port_share = (shard, 3)
        starts = []
        for h in range(6):
            res = fw.receive("inside", syn(f"192.168.1.{10 + h}", 40000), 1.0)
            starts += [ev.port_start for ev in res.events if isinstance(ev, PortBlockAllocated)]
        assert len(starts) == 6 and len(set(starts)) == 6
        assert all(port_owner(s, 3) == shard == port_owner(s + 255, 3) for s in starts)


def test_a_reload_keeps_the_blocks() -> None:
    policy = parse_policy(config(), "pba.cfg")
    fw = Firewall(policy)
    fw.receive("inside", syn("192.168.1.5", 40000), 1.0)
    fw.reload(parse_policy(config(), "pba.cfg"))
    res = fw.receive("inside", syn("192.168.1.5", 40001), 2.0)
    # The same block (no second 305014), the next port of it.
    assert int.from_bytes(bytes(res.packets[0][1][20:22]), "big") == 1025
    assert not any(isinstance(ev, PortBlockAllocated) for ev in res.events)
