"""The sharded replay (``--workers``) on captures that hold both directions of their link, and on a
server behind an iptables DNAT captured on either side (issue 13, item 5's leftovers).

Each shard decides where a packet arrives as one process does (``statewall.replay.Arrivals``): the
firewall's own output in a capture is left out and counted (``sent_by_firewall``; with ``--ingress
auto`` a copy of what *this shard* emitted moments before, ``RecentOutput``), and a fixed DNAT is carried
across the box. That works when the shard key (``statewall.scale.shardkey``) sends the copy to the shard
that emitted it: a packet from the box's own address is its destination's, a static's mapped address
stands for its real one. A dynamic translation's mapped coordinates do not say the inside host: with
more than one shard they are keyed by the peer and named in ``shards.not_modelled``; one shard replays
them as one process. Every run is compared with one process's (``bench.shard_compare``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.shard_compare import compare
from scapy.layers.inet import IP, TCP

from fixtures import ASA_WEB, MAPPED, PIX_NO_NAT, SERVER
from statewall.config import parse_policy
from statewall.engine import Firewall
from statewall.replay import replay
from statewall.scale.replay import KEYED_BY_PEER
from statewall.scale.replay import replay as sharded_replay
from statewall.scale.shardkey import ShardKey, shard_of_host
from test_replay_dnat import GATEWAY, both_sides, one_side
from test_replay_own_output import MASQUERADE_FTP, _captures, _close, _ftp_session, _link
from test_scale_replay import a
from traffic import Conversation, Host, Link

SEED = 7  # the recording Link's secret: a box's randomized numbers in the captures are the replay's own

NO_NAT_RULES = MASQUERADE_FTP.replace("-A POSTROUTING -o eth0 -j MASQUERADE\n", "")
# The published web server behind a static of its own (ASA 9 object NAT).
WEB_STATIC = ASA_WEB + "object network WEB\n host 192.168.1.10\n nat (inside,outside) static 203.0.113.10\n"
WEB_REAL, WEB_MAPPED = "192.168.1.10", "203.0.113.10"


def one_process(config: str, name: str, paths: list[Path], out: Path) -> dict:
    policy = parse_policy(config, name)
    return replay(policy, [(None, p) for p in paths], out, report=False, firewall=Firewall(policy, seed=SEED))


def sharded(config: str, name: str, paths: list[Path], out: Path, **kw) -> dict:
    policy = parse_policy(config, name)
    kw.setdefault("inline", True)
    return sharded_replay(policy, [(None, p) for p in paths], out, report=False, seed=SEED, **kw)


def sessions(link: Link, pairs) -> None:
    """A short TCP session between each (client, server) of ``pairs``, every step forwarded."""
    for client, server in pairs:
        c = Conversation(link, client, server)
        c.open()
        assert c.client("PA", b"GET / HTTP/1.0\r\n\r\n")
        assert c.server("PA", b"HTTP/1.0 200 OK\r\n\r\n" + b"z" * 120)
        _close(c, "b")


@pytest.mark.parametrize("dialect", ["asa", "iptables"])
def test_two_way_captures_without_translation_in_two_shards_equal_one_process(tmp_path, dialect):
    # Two inside hosts of different shards; each shard recognises its own hosts' output.
    assert shard_of_host(4, a("10.0.0.2"), 2) != shard_of_host(4, a("10.0.0.4"), 2)
    config, name = (PIX_NO_NAT, "nonat.cfg") if dialect == "asa" else (NO_NAT_RULES, "fwd.rules")
    link = (
        Link.asa(config, name, now=10.0, seed=SEED)
        if dialect == "asa"
        else Link.iptables(config, name, now=10.0)
    )
    sessions(
        link,
        [
            (Host(h, 40000 + i, "inside"), Host(SERVER, 80, "outside"))
            for i, h in enumerate(["10.0.0.2", "10.0.0.4"])
        ],
    )
    assert not link.drops()
    paths, sent = _captures(tmp_path / "caps", link)
    ref = one_process(config, name, paths, tmp_path / "one")
    assert ref["sent_by_firewall"] == sent["inside"] + sent["outside"] and ref["drops_by_reason"] == {}
    got = sharded(config, name, paths, tmp_path / "two", shards=2)
    compare(tmp_path / "one", tmp_path / "two")
    assert all(got["shards"]["packets"]) and got["shards"]["not_modelled"] == {}


def test_a_server_behind_a_static_captured_on_both_sides_in_two_shards_equals_one_process(tmp_path):
    # The clients' packets to the mapped address and the server's from it (outside), the same packets
    # with the real address (inside): keyed by the server, whichever face a capture holds.
    clients = ["198.51.100.8", "198.51.100.7"]
    assert shard_of_host(4, a(clients[0]), 2) != shard_of_host(4, a(WEB_REAL), 2)
    link = Link.asa(WEB_STATIC, "web.cfg", now=10.0, seed=SEED)
    sessions(
        link,
        [
            (Host(c, 42000 + i, "outside", to=WEB_MAPPED), Host(WEB_REAL, 80, "inside"))
            for i, c in enumerate(clients)
        ],
    )
    assert not link.drops()
    paths, sent = _captures(tmp_path / "caps", link)
    ref = one_process(WEB_STATIC, "web.cfg", paths, tmp_path / "one")
    assert ref["sent_by_firewall"] == sent["inside"] + sent["outside"] and ref["drops_by_reason"] == {}
    sharded(WEB_STATIC, "web.cfg", paths, tmp_path / "two", shards=2)
    compare(tmp_path / "one", tmp_path / "two")


@pytest.mark.parametrize("dialect", ["asa", "iptables"])
def test_ftp_through_pat_captured_both_ways_in_one_shard_equals_one_process(tmp_path, dialect):
    config, name, link = _link(dialect)
    _ftp_session(link)
    paths, sent = _captures(tmp_path / "caps", link)
    ref = one_process(config, name, paths, tmp_path / "one")
    assert ref["drops_by_reason"] == {} and ref["sent_by_firewall"] == sent["inside"] + sent["outside"]
    got = sharded(config, name, paths, tmp_path / "shard", shards=1)
    compare(tmp_path / "one", tmp_path / "shard")
    assert got["shards"]["not_modelled"] == {}


def test_pat_captured_on_its_translated_side_in_two_shards_is_named_not_modelled(tmp_path):
    # The box's output and the server's replies on the outside link carry the mapped address: which
    # inside host they belong to is not in them. Keyed by the server, they are counted.
    config, name, link = _link("asa")
    _ftp_session(link)
    paths, _ = _captures(tmp_path / "caps", link)
    got = sharded(config, name, paths, tmp_path / "two", shards=2)
    ref = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert ref["shards"]["not_modelled"] == got["shards"]["not_modelled"]
    n = got["shards"]["not_modelled"][KEYED_BY_PEER]
    # Every packet that arrived on the outside link touches the mapped address (the server's): keyed
    # by the server, away from the client's connection; so is the box's output there, which the
    # server's shard did not emit. One process's answer is not the shards' (one shard's is).
    assert shard_of_host(4, a(SERVER), 2) != shard_of_host(4, a("10.0.0.2"), 2)
    arrived = sum(1 for _, way, i, _ in link.record if i == "outside" and way == "in")
    one = one_process(config, name, paths, tmp_path / "one")
    assert n >= arrived > 0 and got["sent_by_firewall"] < one["sent_by_firewall"]


@pytest.mark.parametrize("side", ["uplink", "lan", "both"])
def test_a_dnat_captured_on_either_side_in_two_shards_equals_one_process(tmp_path, side):
    # The client and the box's published address fall in different shards: the server's reply from
    # the published address is the client's (a packet from the box's own address is its destination's).
    assert shard_of_host(4, a("198.51.100.7"), 2) != shard_of_host(4, a("192.0.2.1"), 2)
    text = GATEWAY.read_text()
    if side == "both":
        paths = both_sides(tmp_path)
    else:
        paths = [one_side(tmp_path, side)]
    ref = one_process(text, GATEWAY.name, paths, tmp_path / "one")
    assert ref["forwarded"] == 8 and ref["dnat_carried"] == {"uplink": 3, "lan": 5, "both": 0}[side]
    got = sharded(text, GATEWAY.name, paths, tmp_path / "two", shards=2)
    compare(tmp_path / "one", tmp_path / "two")
    assert got["dnat_carried"] == ref["dnat_carried"] and got["dnat_not_carried"] == []


def test_the_shard_key_of_the_boxs_own_address_and_of_a_statics_mapped_one():
    key = ShardKey(parse_policy(WEB_STATIC, "web.cfg"), 2)
    client = "198.51.100.8"

    def shard(src, dst, sport=40000, dport=80):
        return key(bytes(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport)))

    real = shard_of_host(4, a(WEB_REAL), 2)
    # A static's mapped address is its real host's, either way, as the real address is.
    assert shard(client, WEB_MAPPED) == shard(WEB_MAPPED, client) == shard(client, WEB_REAL) == real
    assert not key.peer
    # The box's own address: the other end's, both ways.
    mine = shard_of_host(4, a(client), 2)
    assert shard(client, "203.0.113.1", dport=22) == shard("203.0.113.1", client, sport=22) == mine
    # An interface PAT address hides inside hosts: keyed by the peer, and said so.
    pat = ShardKey(parse_policy(_link("asa")[0], "pat.cfg"), 2)
    assert pat(bytes(IP(src=MAPPED, dst=SERVER) / TCP(sport=1024, dport=21))) == shard_of_host(
        4, a(SERVER), 2
    )
    assert pat.peer
    assert pat(bytes(IP(src="10.0.0.2", dst=SERVER) / TCP(sport=1024, dport=21))) == shard_of_host(
        4, a("10.0.0.2"), 2
    )
    assert not pat.peer
