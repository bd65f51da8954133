"""Connections survive a restart: a firewall's state as a snapshot, restored into a new engine in a new
process's place. A connection established through PAT (and, on the ASA, with sequence randomization)
continues after snapshot -> new Firewall -> restore with the same mapped port and sequence offsets: the
next segment leaves with exactly the bytes the first engine would have sent."""

from __future__ import annotations

import os
import pickle

import pytest
from scapy.layers.inet import TCP

from fixtures import CLIENT, MAPPED, PIX_PAT, SERVER
from statewall.dialects.asa import parse
from statewall.dialects.iptables import parse as parse_iptables
from statewall.engine import Firewall, SnapshotError
from statewall.engine import snapshot as snap
from statewall.showtables import show
from traffic import Conversation, Host, Link, decode

NAT = """\
#@statewall interface lan dev eth1 address 192.168.0.1/24
#@statewall interface wan dev eth0 address 198.51.100.7/24
#@statewall route 0.0.0.0/0 via 198.51.100.1 dev wan
iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A FORWARD -i eth1 -j ACCEPT
iptables -P FORWARD DROP
"""
LAN_CLIENT, LAN_OTHER, WAN_SERVER, PUBLIC = "192.168.0.10", "192.168.0.11", "203.0.113.5", "198.51.100.7"


def established(dialect: str) -> Conversation:
    """A client's TCP connection through PAT, some data each way (the compiled fast path offloads it)."""
    if dialect == "asa":
        link = Link.asa(PIX_PAT)  # no seed: the randomization secret is the process's own
        conv = Conversation(
            link, Host(CLIENT, 40000, "inside", to=SERVER), Host(SERVER, 80, "outside", to=MAPPED)
        )
    else:
        link = Link.iptables(NAT)
        # Another host holds source port 40000 on the public address first: ours gets another port.
        Conversation(link, Host(LAN_OTHER, 40000, "lan"), Host(WAN_SERVER, 443, "wan", to=PUBLIC)).open()
        conv = Conversation(
            link, Host(LAN_CLIENT, 40000, "lan", isn=5000), Host(WAN_SERVER, 443, "wan", to=PUBLIC, isn=9000)
        )
    (syn,) = conv.client("S")
    conv.b.to_port = syn[TCP].sport  # the server answers the mapped port
    assert conv.server("SA") and conv.client("A")
    for _ in range(4):
        conv.client("PA", b"x" * 200)
        conv.server("A")
        conv.server("PA", b"y" * 300)
        conv.client("A")
    return conv


@pytest.mark.parametrize("dialect", ["asa", "iptables"])
def test_a_connection_continues_through_a_restored_engine_with_its_port_and_offsets(dialect):
    conv = established(dialect)
    first = conv.fw
    if dialect == "asa":
        # Given: randomization shifted the client's numbers and PAT chose the port.
        assert conv.a.shift != 0
        assert first.fast is None or len(first.fast) == 1  # offloaded: the snapshot reads the leaf's state
    (syn,) = [p for oif, p in conv.out if TCP in p and p[TCP].flags & 0x02 and oif != conv.a.iface][:1]
    mapped_port = syn[TCP].sport
    data = first.snapshot()
    if first.fast is not None:
        # The offloaded connection is carried by its compiled record alone (statewall.fastpath): the
        # snapshot made its objects to pickle them and dropped them again.
        assert [f.shared is not None for f in first.fast.table.flows()] == [True]
        assert type(next(iter(first.conns))).__name__ == "OffloadedConnection"

    # The process restarts: a new engine for the same configuration, its own secret, then the state.
    policy = parse(PIX_PAT, "fw.cfg") if dialect == "asa" else parse_iptables(NAT, "t.rules")
    second = Firewall(policy)
    assert second.seq_secret != first.seq_secret or dialect != "asa"
    counts = second.restore(data)
    assert counts["connections"] == len(first.conns) and counts["translations"] >= 1
    assert second.seq_secret == first.seq_secret

    now = conv.now + 1.0
    for who, payload in (("a", b"after the restart"), ("b", b"and the answer")):
        me = conv.host(who)
        seg = bytes(conv.segment(who, "PA", payload))
        a = first.receive(me.iface, seg, now)
        b = second.receive(me.iface, seg, now)
        assert a.packets and [(i, bytes(p)) for i, p in a.packets] == [(i, bytes(p)) for i, p in b.packets]
        assert not b.events
        me.nxt = (me.nxt + len(payload)) & 0xFFFFFFFF
        out = decode(b.packets[0][1])
        if who == "a":
            assert out[TCP].sport == mapped_port
            assert out[TCP].seq == (seg_seq := decode(seg)[TCP].seq) + conv.a.shift & 0xFFFFFFFF, seg_seq
        now += 0.01
    assert second.drops == first.drops


def test_a_new_connection_after_the_restore_takes_another_port_and_the_next_id():
    conv = established("iptables")
    second = Firewall(parse_iptables(NAT, "t.rules"))
    second.restore(conv.fw.snapshot())
    assert second.next_id == conv.fw.next_id
    # A third host with the same source port: both restored mappings hold their ports, so another one.
    taken = {40000, conv.b.to_port}
    link = Link(second, conv.now + 1)
    c3 = Conversation(link, Host("192.168.0.12", 40000, "lan"), Host(WAN_SERVER, 443, "wan", to=PUBLIC))
    (syn,) = c3.client("S")
    assert syn.src == PUBLIC and syn[TCP].sport not in taken
    assert len(second.conns) == 3


def test_a_snapshot_of_another_box_or_version_or_garbage_is_refused_and_changes_nothing():
    asa_state = established("asa").fw.snapshot()
    linux = Firewall(parse_iptables(NAT, "t.rules"))
    with pytest.raises(SnapshotError, match="of a asa configuration, this one is iptables"):
        linux.restore(asa_state)
    header, body = pickle.loads(asa_state)
    with pytest.raises(SnapshotError, match="format version 99"):
        Firewall(parse(PIX_PAT, "fw.cfg")).restore(pickle.dumps(({**header, "version": 99}, body)))
    for junk in (b"", b"not a pickle", asa_state[:40]):
        with pytest.raises(SnapshotError, match="not a statewall state snapshot"):
            linux.restore(junk)
    assert len(linux.conns) == 0 and snap.VERSION == 2 and snap.READS == (1, 2)


# --------------------------------------------------------------------------------------------------
# The run adapter's state file (statewall run --state FILE)


def test_the_state_file_is_written_atomically_0600_and_restored(tmp_path, capsys):
    from statewall.commands.run import load_state, save_state

    conv = established("asa")
    path = tmp_path / "fw.state"
    path.write_bytes(b"the previous state")
    assert save_state(conv.fw, str(path))
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["fw.state"]  # no temporary file left behind
    fw = Firewall(parse(PIX_PAT, "fw.cfg"))
    assert load_state(fw, str(path))
    err = capsys.readouterr().err
    assert f"restored 1 connections, 1 translations and 0 expectations from {path}" in err
    assert len(fw.conns) == 1 and fw.seq_secret == conv.fw.seq_secret


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no state file {path} yet; starting with no connections"),
        (b"\x80\x05garbage", "state {path} not restored: not a statewall state snapshot"),
        ("iptables", "state {path} not restored: the state snapshot is of a iptables configuration"),
    ],
)
def test_a_missing_damaged_or_mismatched_state_file_is_reported_and_ignored(
    tmp_path, capsys, content, message
):
    from statewall.commands.run import load_state, save_state

    path = tmp_path / "fw.state"
    if content == "iptables":
        assert save_state(established("iptables").fw, str(path))
    elif content is not None:
        path.write_bytes(content)
    fw = Firewall(parse(PIX_PAT, "fw.cfg"))
    assert not load_state(fw, str(path))
    assert message.format(path=path) in capsys.readouterr().err
    assert len(fw.conns) == 0


def test_a_state_file_others_can_write_is_not_restored(tmp_path, capsys):
    """Unpickling runs what the file says: a file another user could have written is refused."""
    from statewall.commands.run import load_state, save_state

    path = tmp_path / "fw.state"
    assert save_state(established("asa").fw, str(path))
    path.chmod(0o622)
    fw = Firewall(parse(PIX_PAT, "fw.cfg"))
    assert not load_state(fw, str(path))
    assert "writable by its owner only (it is uid" in capsys.readouterr().err
    assert len(fw.conns) == 0


def test_a_state_file_that_cannot_be_written_is_reported_and_the_firewall_goes_on(tmp_path, capsys):
    from statewall.commands.run import save_state

    assert not save_state(established("asa").fw, str(tmp_path / "missing-dir" / "fw.state"))
    assert "cannot write state" in capsys.readouterr().err


def test_a_snapshot_restored_under_a_changed_configuration_is_put_under_it_as_a_reload_does():
    """The connection keeps its translation and offsets; a new connection meets the new rules."""
    conv = established("asa")
    changed = (
        PIX_PAT
        + "access-list inside_in extended deny tcp any any\naccess-group inside_in in interface inside\n"
    )
    second = Firewall(parse(changed, "fw.cfg"))
    second.restore(conv.fw.snapshot())
    link = conv.link
    link.fw = second
    step = conv.client("PA", b"still here")
    assert step and step[0][TCP].seq == (conv.a.nxt - len(b"still here") + conv.a.shift) & 0xFFFFFFFF
    assert bytes(step[0][TCP].payload) == b"still here"
    other = Conversation(
        link, Host(CLIENT, 40001, "inside", to=SERVER), Host(SERVER, 80, "outside", to=MAPPED)
    )
    assert not other.client("S") and link.drops()


@pytest.mark.parametrize("moved, survives", [(2, True), (40, False)])
def test_after_a_kill_the_state_is_the_last_writes_and_a_connection_that_moved_past_the_window_stalls(
    moved, survives
):
    """kill -9 (docs/state.md): the restarted firewall has the state of the last periodic write. A
    connection that moved less than a window since then continues; one that moved 40 segments of
    1000 bytes past an 8 KB window has its data dropped as past the window and its ACKs as invalid."""
    conv = established("asa")
    written = conv.fw.snapshot()
    for _ in range(moved):  # what the killed process saw after its last write
        assert conv.client("PA", b"z" * 1000) and conv.server("A")
    restarted = Firewall(parse(PIX_PAT, "fw.cfg"))
    restarted.restore(written)
    conv.link.fw = restarted
    data, ack = conv.client("PA", b"q" * 1000), conv.server("A")
    assert bool(data) is bool(ack) is survives
    if not survives:
        assert [d.reason.name for d in conv.drops()] == ["TCP_SEQ_PAST_WINDOW", "TCP_INVALID_ACK"]


def test_the_interval_writer_writes_in_a_child_the_state_of_the_instant_it_started(tmp_path):
    """``--state-interval``'s writes leave the loop at once (a fork): the file holds the state as it was
    when the write began, whatever the loop did meanwhile, and one write runs at a time."""
    from statewall.commands.run import StateWriter

    conv = established("asa")
    path = tmp_path / "fw.state"
    writer = StateWriter(conv.fw, str(path))
    assert writer.start()
    assert writer.pid is not None and writer.pid != os.getpid()
    # One write at a time: a second start while the child writes is skipped (or, once it is done, is
    # the next write).
    second = writer.start()
    assert (second and writer.started == 2) or (not second and writer.skipped == 1)
    # The loop goes on: the connection closes in the parent while the child writes.
    conv.client("RA")
    assert len(conv.fw.conns) == 0
    writer.wait()
    assert writer.pid is None and writer.failed == 0
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw.state"]
    fw = Firewall(parse(PIX_PAT, "fw.cfg"))
    assert fw.restore(path.read_bytes())["connections"] == 1  # the instant's state: still open


def test_the_interval_writer_reports_a_failed_write_and_the_firewall_goes_on(tmp_path, capfd):
    from statewall.commands.run import StateWriter

    writer = StateWriter(established("asa").fw, str(tmp_path / "missing-dir" / "fw.state"))
    assert writer.start()
    writer.wait()
    assert writer.failed == 1
    assert "cannot write state" in capfd.readouterr().err


# Written by statewall at format version 1 (before the translations' shared fields and PAT's shorter
# key, docs/performance.md "Where the memory goes"): ``established("asa")``'s firewall, snapshotted.
V1_SNAPSHOT = os.path.join(os.path.dirname(__file__), "data", "state-v1-asa-pat.snapshot")
V1_NOW = 1000.19
V1_XLATE = """\
1 in use, 1 most used
Flags: D - DNS, e - extended, I - identity, i - dynamic, r - portmap,
       s - static, T - twice, N - net-to-net
TCP PAT from inside:10.0.0.2/40000 to outside:192.168.9.30/40000 flags ri idle 0:00:00 timeout 0:00:30
"""
V1_CONN = """\
1 in use, 1 most used
TCP outside 192.168.9.2:80 inside 10.0.0.2:40000, idle 0:00:00, bytes 2000, flags UIO
"""


def test_a_snapshot_of_format_version_1_is_restored_and_its_pat_mapping_found_again():
    with open(V1_SNAPSHOT, "rb") as f:
        data = f.read()
    assert pickle.loads(data)[0]["version"] == 1
    fw = Firewall(parse(PIX_PAT, "fw.cfg"))
    counts = fw.restore(data)
    assert counts["connections"] == 1 and counts["translations"] == 1
    assert show(fw, ["xlate"], V1_NOW) == V1_XLATE
    assert show(fw, ["conn"], V1_NOW) == V1_CONN
    (x,) = fw.nat.xlates.values()
    assert (x.kind, x.version, x.proto, x.real_iface, x.mapped_iface, x.pat, x.flags) == (
        "dynamic", 4, 6, "inside", "outside", True, "ri",
    )  # fmt: skip
    # The same client port to another server: PAT's endpoint-independent mapping finds the restored
    # translation by its key (the same mapped port, no second translation).
    link = Link(fw, V1_NOW + 1)
    conv = Conversation(link, Host(CLIENT, 40000, "inside", to=SERVER), Host(SERVER, 8080, "outside"))
    (syn,) = conv.client("S")
    assert syn.src == MAPPED and syn[TCP].sport == 40000
    assert len(fw.nat.xlates) == 1 and x.refcount == 2
    # Its key is now the short one (nat.pat_key), and the next snapshot is of the current version.
    assert len(x.key) == 3 and x.key[0][0] == "pat" and fw.nat.xlates[x.key] is x
    again = Firewall(parse(PIX_PAT, "fw.cfg"))
    assert pickle.loads(fw.snapshot())[0]["version"] == snap.VERSION
    assert again.restore(fw.snapshot())["connections"] == 2
    assert show(again, ["xlate"], V1_NOW + 1).startswith("1 in use")
