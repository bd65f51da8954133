"""``statewall run --workers N`` (statewall.live.workers, statewall.live.steer): the steering program's
answers, the control channel's merge, and a live run through PAT with two workers between namespaces."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
import textwrap

import pytest
from tests.requires import live_reason

from statewall.config import parse_policy
from statewall.engine import Firewall
from statewall.lab.topology import ASA_INTERFACES
from statewall.live import steer
from statewall.live.workers import merge_answers
from statewall.nat import port_owner

ROOT_REASON = live_reason("hping3")
needs_root = pytest.mark.skipif(ROOT_REASON is not None, reason=ROOT_REASON or "")

CONFIG = (
    """\
ASA Version 9.8(1)
hostname mq
"""
    + ASA_INTERFACES
    + """\
interface Ethernet2
 nameif dmz
 security-level 50
 ip address 10.50.0.1 255.255.255.0
object network inside-net
 subnet 192.168.1.0 255.255.255.0
 nat (inside,outside) dynamic interface
object network web
 host 10.50.0.10
 nat (dmz,outside) static 203.0.113.80
object network pool
 range 198.51.100.10 198.51.100.13
object network pool-net
 subnet 192.168.2.0 255.255.255.0
 nat (inside,outside) dynamic pool
route outside 0.0.0.0 0.0.0.0 203.0.113.254
route inside 192.168.2.0 255.255.255.0 192.168.1.254
access-list outside_in extended permit icmp any any
access-list outside_in extended permit tcp any host 10.50.0.10 eq 80
access-group outside_in in interface outside
"""
)


def _ip4(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(l4),
            1,
            0,
            64,
            proto,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        + l4
    )


def _tcp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x10, 1000, 0, 0)


def _addr(a: str) -> int:
    return int.from_bytes(socket.inet_aton(a), "big")


def _hash(a: str) -> int:
    return steer.host_hash(_addr(a))


@pytest.fixture(scope="module")
def programs():
    if ROOT_REASON is not None:
        pytest.skip(ROOT_REASON)
    fw = Firewall(parse_policy(CONFIG, "mq.cfg"))
    fds = {iface: steer.load(steer.program(fw, iface)) for iface in ("inside", "outside", "dmz")}
    yield fds
    for fd in fds.values():
        import os

        os.close(fd)


@pytest.mark.root
@needs_root
def test_steering_program_keys_every_packet_by_its_inside_host(programs):
    run = steer.test_run
    inside, outside, dmz = programs["inside"], programs["outside"], programs["dmz"]
    host = "192.168.1.10"
    # An inside host's request: its source.
    assert run(inside, _ip4(host, "8.8.8.8", 6, _tcp(40000, 443))) == _hash(host)
    # The reply through PAT (the interface address): the port's block, whose owner allocated it.
    for port in (1024, 40000, 65535):
        q = run(outside, _ip4("8.8.8.8", "203.0.113.1", 6, _tcp(443, port)))
        assert q == port >> 9
        assert q % 2 == port_owner(port, 2) and q % 4 == port_owner(port, 4)
    # An ICMP echo reply to the PAT address: its identifier's block.
    echo = struct.pack("!BBHHH", 0, 0, 0, 5000, 1)
    assert run(outside, _ip4("8.8.8.8", "203.0.113.1", 1, echo)) == 5000 >> 9
    # A dynamic NAT pool's i-th address: i.
    assert run(outside, _ip4("8.8.8.8", "198.51.100.12", 6, _tcp(443, 1234))) == 2
    # A static's mapped address: the real server's hash (the server's own replies key by it on dmz).
    assert run(outside, _ip4("8.8.8.8", "203.0.113.80", 6, _tcp(1234, 80))) == _hash("10.50.0.10")
    assert run(dmz, _ip4("10.50.0.10", "8.8.8.8", 6, _tcp(80, 1234))) == _hash("10.50.0.10")
    # Untranslated to an inside host (identity, routed): the destination; between inside and dmz the
    # inside end, both ways.
    assert run(outside, _ip4("8.8.8.8", host, 6, _tcp(1, 2))) == _hash(host)
    assert run(dmz, _ip4("10.50.0.10", host, 6, _tcp(80, 3333))) == _hash(host)
    assert run(inside, _ip4(host, "10.50.0.10", 6, _tcp(3333, 80))) == _hash(host)
    # A host behind an inside router (a static route): still its own address.
    assert run(outside, _ip4("8.8.8.8", "192.168.2.7", 6, _tcp(1, 2))) == _hash("192.168.2.7")
    # An ICMP error about a PAT'ed connection: the quoted source port's block.
    quoted = _ip4("203.0.113.1", "8.8.8.8", 17, struct.pack("!HHHH", 41000, 53, 8, 0))
    error = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
    assert run(outside, _ip4("8.8.4.4", "203.0.113.1", 1, error)) == 41000 >> 9
    # An error from a router on the inside about the host's packet: the host (the quoted source).
    quoted = _ip4(host, "8.8.8.8", 6, _tcp(40000, 443))
    error = struct.pack("!BBHI", 11, 0, 0, 0) + quoted
    assert run(inside, _ip4("192.168.1.254", host, 1, error)) == _hash(host)
    # Equal levels (two inside hosts): symmetric.
    a, b = "192.168.1.10", "192.168.1.20"
    sym = steer.host_hash(_addr(a) ^ _addr(b))
    assert run(inside, _ip4(a, b, 6, _tcp(1, 2))) == run(inside, _ip4(b, a, 6, _tcp(2, 1))) == sym
    # IPv6: both addresses folded, symmetric.
    v6 = struct.pack("!IHBB16s16s", 6 << 28, 20, 6, 64, b"\x20\x01" + b"\0" * 13 + b"\x01", b"\xfe" * 16)
    v6r = struct.pack("!IHBB16s16s", 6 << 28, 20, 6, 64, b"\xfe" * 16, b"\x20\x01" + b"\0" * 13 + b"\x01")
    assert run(inside, v6 + _tcp(1, 2)) == run(outside, v6r + _tcp(2, 1))


def test_nat_one_to_one_pool_addresses_are_split_between_workers():
    fws = []
    for k in range(2):
        fw = Firewall(parse_policy(CONFIG, "mq.cfg"))
        fw.nat.port_share = (k, 2)
        fws.append(fw)
    view = fws[0].nat.steering_view(["inside", "outside", "dmz"])
    pool = [a for v, a, i, m in view["one_to_one"]]
    assert [i for _v, _a, i, _m in view["one_to_one"]] == [0, 1, 2, 3]
    for k, fw in enumerate(fws):
        from scapy.layers.inet import IP, TCP

        syn = bytearray(bytes(IP(src="192.168.2.5", dst="8.8.8.8") / TCP(sport=1000, dport=80, flags="S")))
        res = fw.receive("inside", syn, 1.0)
        assert res.packets, "translated and forwarded"
        mapped = int.from_bytes(bytes(res.packets[0][1][12:16]), "big")
        assert pool.index(mapped) % 2 == k


def test_ctl_merge_sums_tables_and_counters():
    conn = [
        (True, "1 in use, 3 most used\nTCP outside a inside b\n"),
        (True, "2 in use, 2 most used\nx\ny\n"),
    ]
    ok, text = merge_answers("show conn", conn)
    assert ok and text.splitlines() == ["3 in use, 5 most used", "TCP outside a inside b", "x", "y"]
    asp = [
        (True, "Frame drop:\n  No route to host (no-route)  2\n\nLast clearing: Never\n"),
        (
            True,
            "Frame drop:\n  No route to host (no-route)  3\n  Bad TCP (tcp-x)  1\n\nLast clearing: Never\n",
        ),
    ]
    ok, text = merge_answers("sh asp drop", asp)
    assert "No route to host (no-route)  5" in text and "Bad TCP (tcp-x)" in text and text.count("Last") == 1
    ok, text = merge_answers("show route", [(True, "r\n"), (False, "boom\n")])
    assert not ok and text.splitlines() == ["worker 0:", "  r", "worker 1: ERROR", "  boom"]


# --------------------------------------------------------------------------------------------------
# Live: two workers between namespaces.

_SERVER = textwrap.dedent(
    """
    import hashlib, socket, sys, threading
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 5001)); s.listen(256); print("listening", flush=True)
    def serve(c, peer):
        h = hashlib.sha256(); n = 0
        with c:
            while True:
                b = c.recv(65536)
                if not b: break
                h.update(b); n += len(b)
            c.sendall(f"{peer[0]} {peer[1]} {n} {h.hexdigest()}".encode())
    while True:
        c, peer = s.accept()
        threading.Thread(target=serve, args=(c, peer), daemon=True).start()
    """
)

_CLIENT = textwrap.dedent(
    """
    import hashlib, json, os, socket, sys, threading
    dst, sources, per, size = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4])
    out = []
    def one(src, i):
        data = os.urandom(size)
        try:
            c = socket.create_connection((dst, 5001), timeout=30, source_address=(src, 0))
            c.sendall(data); c.shutdown(socket.SHUT_WR)
            ans = b""
            while True:
                b = c.recv(4096)
                if not b: break
                ans += b
            c.close()
            mapped, mport, n, digest = ans.decode().split()
            out.append({"src": src, "ok": int(n) == size and digest == hashlib.sha256(data).hexdigest(),
                        "mapped": mapped, "mport": int(mport)})
        except OSError as e:
            out.append({"src": src, "ok": False, "error": str(e)})
    ts = [threading.Thread(target=one, args=(s, i)) for s in sources for i in range(per)]
    for t in ts: t.start()
    for t in ts: t.join()
    print(json.dumps(out))
    """
)


@pytest.fixture
def mq_topo():
    if ROOT_REASON is not None:
        pytest.skip(ROOT_REASON)
    from statewall.lab.netns import Lab
    from statewall.lab.topology import FirewallTopology

    with Lab() as lab:
        yield FirewallTopology(lab, multi_queue=True).build()


SMOKE_ICMP = (
    """\
ASA Version 9.8(1)
hostname mqlive
"""
    + ASA_INTERFACES
    + """\
object network inside-net
 subnet 192.168.1.0 255.255.255.0
 nat (inside,outside) dynamic interface
access-list outside_in extended permit icmp any any
access-group outside_in in interface outside
"""
)


@pytest.mark.root
@needs_root
@pytest.mark.timeout(240)
def test_two_workers_forward_many_connections_through_pat(mq_topo, tmp_path):
    from statewall.lab.topology import OUTSIDE, read_line
    from statewall.live.ctl import request

    inside, outside = mq_topo.host("inside"), mq_topo.host("outside")
    sources = [f"192.168.1.{20 + i}" for i in range(8)]
    for s in sources:
        inside.addr("eth0", f"{s}/24")
    owners = {s: steer.host_hash(_addr(s)) % 2 for s in sources}
    assert set(owners.values()) == {0, 1}, "the test's hosts must fall on both workers"
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(SMOKE_ICMP)
    log = tmp_path / "events.jsonl"
    ctl_dir = str(tmp_path / "ctl")
    mq_topo.start_firewall(
        str(cfg),
        log_file=str(log),
        log_format="json",
        extra=["--workers", "2", "--ctl-dir", ctl_dir, "--name", "mq", "--timeout-override", "conn=600"],
    )
    assert any("with 2 workers" in line for line in mq_topo.firewall_output)
    server = outside.popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, text=True)
    assert read_line(server, 10).startswith("listening")
    res = inside.run(
        [sys.executable, "-c", _CLIENT, OUTSIDE.host, ",".join(sources), "6", str(200_000)], timeout=120
    )
    results = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(results) == 48 and all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    # Each connection got a port of its host's worker's blocks.
    for r in results:
        assert r["mapped"] == "203.0.113.1" and port_owner(r["mport"], 2) == owners[r["src"]], r
    ok, conns = request("mq", "show xlate", directory=ctl_dir)
    assert ok and conns.splitlines()[0].startswith(("0 in use", f"{len(results)} in use", "1 in use"))
    ok, text = request("mq", "show asp drop", directory=ctl_dir)
    assert ok
    ping = inside.run(["hping3", "--icmp", "-c", "3", "-i", "u100000", OUTSIDE.host], timeout=20, check=False)
    assert "3 packets received" in ping.stdout + ping.stderr
    assert mq_topo.stop_firewall() == 0
    summary = next(line for line in mq_topo.firewall_output if line.startswith("statewall run: stopped; "))
    counters = json.loads(summary.split("; ", 1)[1])
    per = counters["workers"]
    assert len(per) == 2 and counters["restarts"] == 0
    for iface in ("inside", "outside"):
        for c in ("rx_packets", "tx_packets"):
            assert counters["interfaces"][iface][c] == sum(w["interfaces"][iface][c] for w in per)
    # Both workers served connections, and no packet went to a worker without its connection.
    assert all(w["interfaces"]["inside"]["rx_packets"] > 100 for w in per)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    built = [e for e in events if e["event"] == "ConnBuilt" and e["protocol"] == 6]
    assert len(built) == 48
    ids = [e["conn_id"] for e in built]
    assert len(set(ids)) == len(ids), "connection numbers are unique across workers"
    # Worker k numbers k+1, k+1+N, ...: the number says which worker built it, and it is the host's.
    for e in built:
        assert (e["conn_id"] - 1) % 2 == owners[e["initiator"]["address"]], e
    # What one process drops too: the last ACK or FIN/ACK of a connection the firewall already tore
    # down (tcp-not-syn). A packet steered to the wrong worker would be a SYN/ACK or data dropped so,
    # and its transfer would not have completed.
    drops = [(d["interface"], d["tcp_flags"], d["reason"]) for d in events if d["event"] == "Drop"]
    assert all(flags in (16, 17) and reason == "tcp-not-syn" for _i, flags, reason in drops), drops


_HALVES = textwrap.dedent(
    """
    import hashlib, json, socket, sys
    dst, sources = sys.argv[1], sys.argv[2].split(",")
    conns = [socket.create_connection((dst, 5001), timeout=30, source_address=(s, 0)) for s in sources]
    for c in conns:
        c.sendall(b"a" * 1000)
    print("open", flush=True)
    sys.stdin.readline()
    out = []
    for s, c in zip(sources, conns):
        try:
            c.settimeout(4)
            c.sendall(b"b" * 1000); c.shutdown(socket.SHUT_WR)
            ans = b""
            while True:
                b = c.recv(4096)
                if not b: break
                ans += b
            out.append({"src": s, "ok": ans.split()[2] == b"2000"})
        except OSError as e:
            out.append({"src": s, "ok": False, "error": str(e)})
    print(json.dumps(out), flush=True)
    """
)


@pytest.mark.root
@needs_root
@pytest.mark.timeout(240)
def test_a_dead_worker_loses_its_connections_alone_and_starts_again(mq_topo, tmp_path):
    import os
    import signal
    import time

    from statewall.lab.topology import OUTSIDE, read_line
    from statewall.live.ctl import request

    inside, outside = mq_topo.host("inside"), mq_topo.host("outside")
    by_worker: dict[int, str] = {}
    for i in range(20, 60):
        by_worker.setdefault(steer.host_hash(_addr(f"192.168.1.{i}")) % 2, f"192.168.1.{i}")
    sources = [by_worker[0], by_worker[1]]
    for s in sources:
        inside.addr("eth0", f"{s}/24")
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(SMOKE_ICMP)
    ctl_dir = str(tmp_path / "ctl")
    mq_topo.start_firewall(str(cfg), extra=["--workers", "2", "--ctl-dir", ctl_dir, "--name", "mqk"])
    pids = dict(
        w.split("=pid")
        for w in next(x for x in mq_topo.firewall_output if x.startswith("statewall run: workers ")).split()[
            3:
        ]
    )
    server = outside.popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, text=True)
    assert read_line(server, 10).startswith("listening")
    client = inside.popen(
        [sys.executable, "-c", _HALVES, OUTSIDE.host, ",".join(sources)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert read_line(client, 20).startswith("open")
    # Both connections, one per worker, in the merged table.
    ok, conns = request("mqk", "show conn", directory=ctl_dir)
    lines = conns.splitlines()
    assert ok and lines[0].startswith("2 in use"), conns
    assert sum(by_worker[0] in line for line in lines) == sum(by_worker[1] in line for line in lines) == 1
    # A reload goes to every worker (their connections kept) and loads the steering programs again.
    ok, text = request("mqk", "reload", directory=ctl_dir)
    assert ok and text.count("reloaded ") == 2 and "steering programs reloaded" in text, text
    os.kill(int(pids["1"]), signal.SIGKILL)
    deadline = time.monotonic() + 20
    while not any("worker 1 started again" in x for x in mq_topo.firewall_output):
        assert time.monotonic() < deadline, mq_topo.firewall_output
        time.sleep(0.1)
    out, _ = client.communicate("go\n", timeout=30)
    results = {r["src"]: r["ok"] for r in json.loads(out.strip().splitlines()[-1])}
    assert results == {by_worker[0]: True, by_worker[1]: False}
    # The restarted worker serves its hosts' new connections.
    res = inside.run([sys.executable, "-c", _CLIENT, OUTSIDE.host, by_worker[1], "2", "50000"], timeout=60)
    assert all(r["ok"] for r in json.loads(res.stdout.strip().splitlines()[-1]))
    assert mq_topo.stop_firewall() == 0
    summary = next(line for line in mq_topo.firewall_output if line.startswith("statewall run: stopped; "))
    assert json.loads(summary.split("; ", 1)[1])["restarts"] == 1


@pytest.mark.root
@needs_root
@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl for the FTP client")
@pytest.mark.timeout(240)
def test_ftp_through_pat_with_two_workers_active_and_passive(mq_topo, tmp_path):
    """FTP data connections follow their control connection's worker: a passive one is opened by the
    inside host (its own worker by address), an active one by the server towards the PAT port the
    PORT command announced, which the host's worker allocated from its blocks (steered by port)."""
    pytest.importorskip("pyftpdlib")
    import os

    from statewall.lab.scenarios import ScenarioRun
    from statewall.lab.scenarios._seedlab import FtpServer, curl_ftp, file_facts, make_file
    from statewall.lab.topology import OUTSIDE

    inside, outside = mq_topo.host("inside"), mq_topo.host("outside")
    by_worker: dict[int, str] = {}
    for i in range(20, 60):
        by_worker.setdefault(steer.host_hash(_addr(f"192.168.1.{i}")) % 2, f"192.168.1.{i}")
    for s in by_worker.values():
        inside.addr("eth0", f"{s}/24")
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(SMOKE_ICMP)
    log = tmp_path / "events.jsonl"
    mq_topo.start_firewall(
        str(cfg), log_file=str(log), log_format="json", extra=["--workers", "2", "--no-ctl"]
    )
    run = ScenarioRun(mq_topo.lab, out=open(os.devnull, "w"))  # noqa: SIM115 -- closed with the test
    ftp = FtpServer(run, outside, OUTSIDE.host)
    local = str(tmp_path / "up.bin")
    digest = make_file(local, 2 << 20)
    for worker, src in sorted(by_worker.items()):
        for active in (False, True):
            name = f"w{worker}-{'active' if active else 'passive'}.bin"
            code, _secs, err = curl_ftp(
                run, inside, f"ftp://{OUTSIDE.host}/{name}", upload=local, active=active, max_time=60,
                extra=["--interface", src],
            )  # fmt: skip
            assert code == 0, (name, err)
            assert file_facts(ftp.path(name)) == (2 << 20, digest), name
    assert mq_topo.stop_firewall() == 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    data = [e for e in events if e["event"] == "ConnBuilt" and e["master"] is not None]
    assert len(data) == 4, data
    owners = {s: w for w, s in by_worker.items()}
    for e in data:
        # Each data connection was built by its client host's worker (the number says which).
        client = e["initiator"]["address"] if e["direction"] == "outbound" else e["responder"]["address"]
        assert (e["conn_id"] - 1) % 2 == owners[client], e


@pytest.mark.root
@needs_root
def test_steering_program_of_two_dynamic_pools_loads_and_numbers_each_pool_from_0():
    cfg = CONFIG + (
        "object network pool2\n range 198.51.100.20 198.51.100.21\n"
        "object network lab-net\n subnet 192.168.3.0 255.255.255.0\n nat (inside,outside) dynamic pool2\n"
    )
    fw = Firewall(parse_policy(cfg, "mq2.cfg"))
    fd = steer.load(steer.program(fw, "outside"))
    try:
        assert steer.test_run(fd, _ip4("8.8.8.8", "198.51.100.11", 6, _tcp(443, 1234))) == 1
        assert steer.test_run(fd, _ip4("8.8.8.8", "198.51.100.21", 6, _tcp(443, 1234))) == 1
        assert steer.test_run(fd, _ip4("8.8.8.8", "198.51.100.20", 6, _tcp(443, 1234))) == 0
    finally:
        import os

        os.close(fd)
