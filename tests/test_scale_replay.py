"""Sharded replay (``statewall replay --workers N``): the same answers as one process, from N engines.

Given a configuration and a capture, one process's replay is the answer key; the same capture replayed
in 1, 2 and 4 shards (in this process, on a Dask ``LocalCluster`` of worker processes started for the
replay, and on a running cluster named by its scheduler's address) must give the same summary, the same
events and the same packets out of every interface, byte for byte (``shard_compare``: a host's PAT port
may be another one of its shard's ports). The captures: Zeek's FTP traces (one client) and a generated
busy site (many inside hosts, PAT, passive FTP, pings, ICMP errors, hosts of equal security level,
per-client limits; ``bench.busytrace``).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
from pathlib import Path

import pytest
from bench.busytrace import config, write_trace
from bench.shard_compare import Reference, compare

from statewall import craft
from statewall.cli import main
from statewall.config import parse_policy
from statewall.engine import Firewall
from statewall.nat import port_owner
from statewall.pcapio import PcapngWriter, PcapWriter, read_comments
from statewall.replay import replay
from statewall.scale.replay import replay as sharded_replay
from statewall.scale.replay import shard_policy
from statewall.scale.shardkey import ShardKey, shard_of_host
from test_ftp_zeek import CONFIG6
from zeek_ftp import PAT, asa_front

SEED = b"statewall-shards"


def a(text: str) -> int:
    return int(ipaddress.ip_address(text))


def one_process(policy, capture: Path, out: Path, drain: float, report: bool = True) -> Path:
    replay(policy, [(None, capture)], out, drain=drain, firewall=Firewall(policy, seed=SEED), report=report)
    return out


@pytest.fixture(scope="module")
def cluster():
    """A running Dask cluster of two worker processes: what ``--cluster ADDRESS`` names."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    ) as lc:
        yield lc.scheduler_address


# ------------------------------------------------------------------------------------------------
# The shard key


BUSY = parse_policy(config(), "busy.cfg")


def test_an_inside_hosts_request_and_its_reply_have_the_inside_hosts_shard() -> None:
    key = ShardKey(BUSY, 4)
    host, server = a("10.1.3.7"), a("198.51.100.9")
    want = shard_of_host(4, host, 4)
    req = craft.udp_packet(4, host, server, 40000, 443, b"q")
    rep = craft.udp_packet(4, server, host, 443, 40000, b"r")
    assert key(req) == key(rep) == want
    # An ICMP error from a router on the path belongs to the connection it quotes, not to the router.
    err = craft.icmp_error(4, a("192.0.2.100"), host, 3, 3, bytes(req))
    assert key(err) == want
    # An outside client's connection to an inside server is the server's.
    syn = craft.tcp_packet(4, server, host, 5555, 80, 1, 0, 0x02, 1000)
    assert key(syn) == want


def test_between_hosts_of_equal_level_the_initiator_owns_the_pair() -> None:
    key = ShardKey(BUSY, 4)
    lab = a("10.2.0.9")
    # An inside host whose own shard is another one than the lab host's.
    inside = next(
        h for h in range(a("10.1.0.2"), a("10.1.0.99")) if shard_of_host(4, h, 4) != shard_of_host(4, lab, 4)
    )
    first = craft.tcp_packet(4, lab, inside, 30000, 80, 1, 0, 0x02, 1000)
    assert key(first) == shard_of_host(4, lab, 4)
    # Every later packet between the two, either way and on any port, follows the first.
    back = craft.tcp_packet(4, inside, lab, 20, 30001, 1, 0, 0x02, 1000)
    assert key(back) == shard_of_host(4, lab, 4)


def test_one_shard_owns_everything_and_unreadable_packets_go_to_shard_0() -> None:
    assert ShardKey(BUSY, 1)(craft.udp_packet(4, a("10.1.0.5"), a("1.1.1.1"), 1, 2)) == 0
    assert ShardKey(BUSY, 4)(b"\x45\x00") == 0


def test_global_limits_are_divided_as_the_asa_divides_them_between_cores() -> None:
    """Seed 002: "the ASA allows up to n-1 extra connections and embryonic connections, where n is the
    number of cores": each shard admits ceil(limit / n); per-client limits stay whole (a host is in
    one shard)."""
    text = config() + (
        "class-map ALL\n match any\npolicy-map global_policy\n class ALL\n"
        "  set connection conn-max 6 embryonic-conn-max 4 per-client-max 3\n"
    )
    policy = parse_policy(text, "limits.cfg")

    def settings(p):
        return [c.connection for m in p.policy_maps.values() for c in m.classes if c.connection]

    whole = [s for s in settings(policy) if s.conn_max]
    parts = [s for s in settings(shard_policy(policy, 4)) if s.conn_max]
    assert [(s.conn_max, s.embryonic_conn_max, s.per_client_max) for s in whole] == [(6, 4, 3)]
    assert [(s.conn_max, s.embryonic_conn_max, s.per_client_max) for s in parts] == [(2, 1, 3)]
    assert 4 * 2 <= 6 + 4 - 1 and 4 * 1 <= 4 + 4 - 1
    assert shard_policy(policy, 1) is policy


def test_a_reached_conn_max_admits_at_most_n_minus_1_more_in_n_shards(tmp_path: Path) -> None:
    """Twelve inside hosts each open one web connection while a class allows 6: one process refuses the
    last six (201011); four shards each admit ceil(6/4) = 2 of their own hosts', at most 6 + 3 in all,
    which is what the ASA documents for its cores. This is where a sharded replay's answers differ."""
    policy = parse_policy(config().replace("per-client-max 8", "conn-max 6 per-client-max 8"), "cm.cfg")
    capture = tmp_path / "twelve.pcap"
    server = a("198.51.100.7")
    with PcapWriter(capture) as w:
        for k in range(12):
            host, t = a("10.1.0.10") + k, 1000.0 + k
            w.write(craft.tcp_packet(4, host, server, 40000, 80, 1, 0, 0x02, 64240), t)
            w.write(craft.tcp_packet(4, server, host, 80, 40000, 9, 2, 0x12, 65160), t + 0.0001)
            w.write(craft.tcp_packet(4, host, server, 40000, 80, 2, 10, 0x10, 64240), t + 0.0002)
    one = one_process(policy, capture, tmp_path / "one", drain=0)
    s1 = json.loads((one / "summary.json").read_text())
    assert s1["connections"]["built"] == 6 and s1["drops_by_reason"]["conn-limit"] == 6
    got = sharded_replay(policy, [(None, capture)], tmp_path / "four", shards=4, inline=True, seed=SEED)
    per_shard = got["shards"]["connections_built"]
    assert all(n <= 2 for n in per_shard) and sum(per_shard) <= 6 + 4 - 1
    hosts_per_shard = [0] * 4
    for k in range(12):
        hosts_per_shard[shard_of_host(4, a("10.1.0.10") + k, 4)] += 1
    assert per_shard == [min(2, n) for n in hosts_per_shard]


# ------------------------------------------------------------------------------------------------
# Same answers


# Each Zeek capture's client network on ``inside``, with and without PAT to the outside interface.
ZEEK_FRONTS = {
    "ipv4": (asa_front(), PAT),
    "retr": (
        asa_front("141.142.228.254"),
        "global (outside) 1 interface\nnat (inside) 1 141.142.228.0 255.255.255.0\n",
    ),
    "ipv6": (
        CONFIG6,
        "object network inside-v6\n subnet 2001:470:1f11:81f::/64\n nat (inside,outside) dynamic interface\n",
    ),
}


@pytest.mark.parametrize("pat", [False, True], ids=["no-nat", "pat"])
@pytest.mark.parametrize("name", sorted(ZEEK_FRONTS))
def test_zeek_ftp_captures_in_1_2_and_4_shards_equal_one_process(
    tmp_path: Path, corpus_dir: Path, name: str, pat: bool
) -> None:
    capture = corpus_dir / "zeek" / "Traces" / "ftp" / f"{name}.pcap"
    front, nat = ZEEK_FRONTS[name]
    policy = parse_policy(front + (nat if pat else ""), "zeek.cfg")
    ref = one_process(policy, capture, tmp_path / "one", drain=600)
    summary = json.loads((ref / "summary.json").read_text())
    assert summary["unassigned"] == 0 and summary["forwarded"] > 60  # the front fits the capture
    for shards in (1, 2, 4):
        out = tmp_path / f"s{shards}"
        sharded_replay(policy, [(None, capture)], out, shards=shards, inline=True, drain=600, seed=SEED)
        compare(ref, out)


def test_the_logging_lines_filter_a_sharded_replays_log_as_one_processs(
    tmp_path: Path, corpus_dir: Path
) -> None:
    """Each shard formats through the configuration's logging (AsaLog): a disabled message and a level
    that leaves some out give the same log.txt as one process; events.jsonl keeps every event."""
    capture = corpus_dir / "zeek" / "Traces" / "ftp" / "ipv4.pcap"
    logging_lines = "logging enable\nlogging buffered informational\nno logging message 302013\n"
    policy = parse_policy(asa_front() + PAT + logging_lines, "zeek.cfg")
    ref = one_process(policy, capture, tmp_path / "one", drain=600)
    log = (ref / "log.txt").read_text()
    assert "-302013:" not in log and "-302014:" in log
    events = (ref / "events.jsonl").read_text()
    assert '"asa_id":302013' in events
    out = tmp_path / "s2"
    sharded_replay(policy, [(None, capture)], out, shards=2, inline=True, drain=600, seed=SEED)
    compare(ref, out)
    assert "-302013:" not in (out / "log.txt").read_text()


@pytest.fixture(scope="module")
def busy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("busy") / "busy.pcap"
    write_trace(path, 1500)
    return path


def test_a_busy_site_behind_pat_in_1_2_and_4_shards_and_on_clusters_equals_one_process(
    tmp_path: Path, busy: Path, cluster: str
) -> None:
    policy = parse_policy(config(), "busy.cfg")
    ref = one_process(policy, busy, tmp_path / "one", drain=300)
    summary = json.loads((ref / "summary.json").read_text())
    # The trace does what it says: per-client refusals, FTP transfers, equal-level traffic, ICMP.
    assert summary["drops_by_reason"].get("conn-limit", 0) > 0
    assert summary["packets_out"]["lab"] > 0 and summary["connections"]["built_by_protocol"]["icmp"] > 0
    assert "%ASA-6-303002" in (ref / "log.txt").read_text()
    runs = [dict(shards=n, inline=True) for n in (1, 2, 4)]
    runs += [dict(workers=2), dict(cluster=cluster, shards=3)]
    for i, kw in enumerate(runs):
        out = tmp_path / f"run{i}"
        got = sharded_replay(policy, [(None, busy)], out, drain=300, seed=SEED, **kw)
        same = compare(ref, out)
        n = kw.get("shards") or kw.get("workers")
        # Each shard's hosts got ports of its own blocks: most of them not their real port any more.
        assert (same["pat_ports_moved"] > same["translations"] // 3) == (n > 1)
        assert got["shards"]["count"] == n and sum(got["shards"]["packets"]) == summary["packets_in"]
        if n > 1:
            assert all(got["shards"]["connections_built"])  # every shard had hosts
        if kw == {"shards": 4, "inline": True}:
            assert_ports_from_own_blocks(out / "events.jsonl", 4)


@pytest.fixture(scope="session")
def site() -> tuple[Path, dict]:
    """The acceptance's capture, generated once per session: 100 000 connections from 2 000 inside
    hosts and 100 lab hosts behind PAT (``bench.busytrace``: UDP with ICMP errors, web, pings, passive
    FTP sessions, bursts past the per-client limit), about 363 000 packets."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="statewall-site-") as tmp:
        path = Path(tmp) / "site.pcap"
        info = write_trace(path, 100_000)
        yield path, info


# Minutes, not the suite's 5: one process, three sharded runs (1, 2 and 4 workers) and their
# comparisons of ~360 000 packets each (some 400 processor seconds: 3-4 minutes on 2 quiet cores,
# docs/scale.md; a safety net against a hang, not a speed check).
@pytest.mark.timeout(1200)
def test_a_site_of_100_000_connections_in_1_2_and_4_workers_on_a_local_cluster_equals_one_process(
    tmp_path: Path, site: tuple[Path, dict]
) -> None:
    """Issue 19's acceptance at its size: the generated site of 100 000 connections through PAT, with FTP
    and per-client limits that refuse connections, replayed by one process and by 1, 2 and 4 workers
    (a Dask LocalCluster started by the replay; a running cluster named by ``--cluster`` is checked on the
    busy site above, at 1 500 connections, to keep the suite's time): every output
    equals one process's (``shard_compare``: summary, events, every capture byte for byte with its
    comments, log lines) but the PAT port a host got, which the test checks is in its shard's blocks.

    The outputs are compared as digests of one process's, read once (``shard_compare.Reference``);
    report.html, which statewall report makes from these outputs, is left to the busy site above."""
    capture, info = site
    assert info["connections"] >= 100_000
    policy = parse_policy(config(), "busy.cfg")
    one = one_process(policy, capture, tmp_path / "one", drain=300, report=False)
    summary = json.loads((one / "summary.json").read_text())
    assert summary["packets_in"] == info["packets"] > 350_000
    assert summary["connections"]["built"] > 99_000
    # Per-client refusals: 4 of every burst of 12 (201013); FTP transfers (303002); ICMP errors.
    assert summary["drops_by_reason"]["conn-limit"] >= 700
    assert summary["connections"]["built_by_protocol"]["icmp"] > 4000
    log = (one / "log.txt").read_text()
    assert log.count("%ASA-3-201013") >= 700 and log.count("%ASA-6-303002") >= 190
    del log
    ref = Reference(one)
    for n in (1, 2, 4):
        out = tmp_path / f"run{n}"
        got = sharded_replay(policy, [(None, capture)], out, drain=300, seed=SEED, report=False, workers=n)
        assert got["shards"]["count"] == n and sum(got["shards"]["packets"]) == info["packets"]
        same = compare(ref, out)
        # Ports come from blocks even in one shard: most hosts' ports are not their real ones any more.
        assert same["translations"] > 90_000 and same["pat_ports_moved"] > same["translations"] // 2
        # The port a host got is one of its own shard's blocks (block b of 512 ports is shard b mod n's).
        assert len(same["ports"]) > 2000
        for host, ports in same["ports"].items():
            assert {port_owner(p, n) for p in ports} == {shard_of_host(4, a(host), n)}, host
        shutil.rmtree(out)


def assert_ports_from_own_blocks(events: Path, shards: int) -> None:
    """Block b (ports b*512 .. b*512+511) belongs to shard b mod N: every host's mapped ports are in its
    own shard's blocks, so two shards never give one mapped port of an address to two hosts, and a
    translated reply names its shard by its port."""
    owners: dict[str, set[int]] = {}
    for line in events.read_text().splitlines():
        ev = json.loads(line)
        if ev["event"] == "XlateBuilt":
            owners.setdefault(ev["real_address"], set()).add(port_owner(ev["mapped_port"], shards))
    assert len(owners) > 500
    assert all(s == {shard_of_host(4, a(h), shards)} for h, s in owners.items())
    assert set().union(*owners.values()) == set(range(shards))


BUSY_IPTABLES = """\
#@statewall interface inside dev eth1 address 10.1.0.1/16
#@statewall interface lab dev eth2 address 10.2.0.1/16
#@statewall interface outside dev eth0 address 192.0.2.1/24
#@statewall route 0.0.0.0/0 via 192.0.2.254 dev outside
iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
"""


def test_iptables_masquerade_in_1_2_and_4_shards_equals_one_process(tmp_path: Path, busy: Path) -> None:
    """Linux's allocator (nf_nat) in shards: each shard searches its own port blocks as if they were the
    whole range (``NfNat.port_share``), so no two shards map two connections to one tuple; what differs
    from one process is the port chosen, as with the ASA's PAT."""
    policy = parse_policy(BUSY_IPTABLES, "fw.rules")
    ref = one_process(policy, busy, tmp_path / "one", drain=300)
    summary = json.loads((ref / "summary.json").read_text())
    assert summary["connections"]["built"] > 1000 and summary["forwarded"] > 3000
    for shards in (1, 2, 4):
        out = tmp_path / f"s{shards}"
        sharded_replay(policy, [(None, busy)], out, shards=shards, inline=True, drain=300, seed=SEED)
        same = compare(ref, out)
        assert (same["pat_ports_moved"] > same["translations"] // 3) == (shards > 1), same
    # Every masqueraded port of the 4-shard run is in its shard's blocks.
    owners: dict[str, set[int]] = {}
    for line in (tmp_path / "s4" / "events.jsonl").read_text().splitlines():
        ev = json.loads(line)
        if ev["event"] == "ConnBuilt" and ev["initiator"]["mapped_address"] == "192.0.2.1":
            owners.setdefault(ev["initiator"]["address"], set()).add(
                port_owner(ev["initiator"]["mapped_port"], 4)
            )
    assert len(owners) > 500 and all(len(s) == 1 for s in owners.values())
    assert set().union(*owners.values()) == {0, 1, 2, 3}


def test_statewall_replay_workers_2_on_the_command_line(tmp_path: Path, corpus_dir: Path, capsys) -> None:
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(asa_front() + PAT)
    capture = corpus_dir / "zeek" / "Traces" / "ftp" / "ipv4.pcap"
    rc = main(
        ["replay", "-c", str(cfg), "-o", str(tmp_path / "out"), "--workers", "2", "--json", str(capture)]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shards"]["count"] == 2 and summary["connections"]["built"] == 5
    assert (tmp_path / "out" / "outside.pcap").stat().st_size > 24 * 52  # the merged capture


def test_the_comparison_finds_a_changed_event_packet_or_log_line(tmp_path: Path, corpus_dir: Path) -> None:
    """``shard_compare`` is what the tests above rest on: a sharded run whose events, packets or log
    differ from one process's in anything but a PAT port fails it, whichever output differs."""
    capture = corpus_dir / "zeek" / "Traces" / "ftp" / "ipv4.pcap"
    policy = parse_policy(asa_front() + PAT, "zeek.cfg")
    ref = Reference(one_process(policy, capture, tmp_path / "one", drain=600))
    good = tmp_path / "good"
    sharded_replay(policy, [(None, capture)], good, shards=2, inline=True, drain=600, seed=SEED)
    compare(ref, good)

    def spoiled(name: str, spoil) -> Path:
        out = tmp_path / name
        shutil.copytree(good, out)
        spoil(out)
        return out

    def event(out: Path) -> None:
        path = out / "events.jsonl"
        path.write_text(path.read_text().replace('"direction":"outbound"', '"direction":"inbound"', 1))

    def packet(out: Path) -> None:
        path = out / "outside.pcap"
        packets = read_comments(path)
        with PcapngWriter(path) as w:
            for k, (ts, data, comment) in enumerate(packets):
                w.write(data[:-1] + bytes([data[-1] ^ 1]) if k == len(packets) // 2 else data, ts, comment)

    def line(out: Path) -> None:
        path = out / "log.txt"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[1:]))

    for name, spoil, where in (
        ("event", event, "events.jsonl"),
        ("packet", packet, "outside.pcap"),
        ("line", line, "log.txt"),
    ):
        with pytest.raises(AssertionError, match=where):
            compare(ref, spoiled(name, spoil))


def test_two_way_captures_on_a_running_cluster_equal_one_process(tmp_path: Path, cluster: str) -> None:
    # The firewall's own output in captures of both links, recognised by the shard that emitted it
    # (tests/test_scale_replay_own_output.py has the cases, in this process): here on the cluster.
    from test_replay_own_output import _captures
    from test_scale_replay_own_output import NO_NAT_RULES, one_process, sessions, sharded
    from traffic import Host, Link

    link = Link.iptables(NO_NAT_RULES, "fwd.rules", now=10.0)
    sessions(
        link,
        [(Host(h, 41000, "inside"), Host("192.168.9.2", 80, "outside")) for h in ("10.0.0.2", "10.0.0.4")],
    )
    paths, _ = _captures(tmp_path / "caps", link)
    ref = one_process(NO_NAT_RULES, "fwd.rules", paths, tmp_path / "one")
    got = sharded(NO_NAT_RULES, "fwd.rules", paths, tmp_path / "two", cluster=cluster, shards=2, inline=False)
    compare(tmp_path / "one", tmp_path / "two")
    assert got["sent_by_firewall"] == ref["sent_by_firewall"] > 0 and all(got["shards"]["packets"])
