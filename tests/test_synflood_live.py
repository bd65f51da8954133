"""Connection limits, TCP Intercept and DCD against real TCP stacks: ``statewall run`` in the lab's
standard topology (inside host 192.168.1.10, outside host 203.0.113.2), root only.

* DCD with a short idle timeout: a real connection kept idle survives its idle timeout because both
  kernels answer the probes; once the outside host drops everything (nftables), the probes go
  unanswered and the connection is freed with RSTs (``idle ... reset``): the inside application sees
  its connection reset.
* A SYN flood from hping3 with random sources against a listening server behind
  ``embryonic-conn-max``, while a real client connects and transfers data through the intercept.

Every wait is bounded; nothing is asserted about how long anything took.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from fixtures import ASA_INTERFACES
from requires import live_reason

ROOT_REASON = live_reason("ip", "nft")

pytestmark = [pytest.mark.root, pytest.mark.skipif(ROOT_REASON is not None, reason=ROOT_REASON or "")]

HEAD = "ASA Version 9.1(2)\nhostname {name}\n" + ASA_INTERFACES


@pytest.fixture
def topo():
    from statewall.lab.netns import Lab
    from statewall.lab.topology import FirewallTopology

    with Lab() as lab:
        yield FirewallTopology(lab).build()


def start(topo, tmp_path, config: str, name: str) -> str:
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(config)
    log = tmp_path / "events.jsonl"
    extra = ["--name", name, "--ctl-dir", str(tmp_path)]
    topo.start_firewall(str(cfg), log_file=str(log), log_format="json", extra=extra)
    return str(log)


def ctl(tmp_path, name: str, *words: str) -> str:
    argv = [sys.executable, "-m", "statewall.cli", "ctl", "--name", name, "--ctl-dir", str(tmp_path), *words]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def events(log: str) -> list[dict]:
    try:
        with open(log) as fp:
            return [json.loads(line) for line in fp if line.strip()]
    except FileNotFoundError:
        return []


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def dcd_counters(tmp_path, name: str) -> tuple[int, int, int]:
    text = ctl(tmp_path, name, "show", "service-policy")
    m = re.search(r"DCD: client-probe (\d+), server-probe (\d+), conn-expiration (\d+)", text)
    assert m, text
    return int(m[1]), int(m[2]), int(m[3])


GONE = """\
table inet gone {
  chain in {
    type filter hook input priority -200; policy drop;
  }
}
"""

DCD_CONFIG = (
    HEAD
    + """\
class-map IDLE
 match port tcp eq 5002
policy-map P
 class IDLE
  set connection timeout idle 0:00:03 reset dcd 0:00:01 3
service-policy P global
"""
)


@pytest.mark.timeout(120)
def test_dcd_keeps_a_live_idle_connection_and_frees_one_whose_end_is_gone(topo, tmp_path):
    from statewall.lab.topology import OUTSIDE

    name = "dcdlab"
    log = start(topo, tmp_path, DCD_CONFIG.format(name=name), name)
    inside, outside = topo.host("inside"), topo.host("outside")

    def listen():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 5002))
        s.listen(1)
        s.settimeout(15)
        return s

    lsock = outside.call(listen)
    accepted = outside.start(lsock.accept)
    client = inside.call(socket.create_connection, (OUTSIDE.host, 5002), timeout=15)
    server, _ = accepted.result(timeout=15)
    server.settimeout(15)
    try:
        client.sendall(b"hello")
        assert server.recv(100) == b"hello"
        # Idle for more than two idle timeouts: DCD probes, both kernels answer, the connection stays.
        wait_for(lambda: dcd_counters(tmp_path, name)[0] >= 2, 30, "two DCD rounds answered")
        probes = dcd_counters(tmp_path, name)
        assert probes[2] == 0
        assert not [e for e in events(log) if e["event"] == "ConnTeardown"]
        client.sendall(b"still here")
        assert server.recv(100) == b"still here"
        server.sendall(b"and back")
        client.settimeout(15)
        assert client.recv(100) == b"and back"

        # The outside host goes silent: probes go unanswered, and after three the connection is freed
        # with a RST to each end.
        outside.run(["nft", "-f", "-"], input=GONE, timeout=10)
        teardown = wait_for(
            lambda: [
                e for e in events(log) if e["event"] == "ConnTeardown" and e["responder"]["port"] == 5002
            ],
            30,
            "the connection to be freed",
        )
        assert teardown[0]["reason"] == "Flow timed out with reset"
        client_probes, server_probes, expired = dcd_counters(tmp_path, name)
        assert expired == 1 and server_probes >= probes[1] + 3
        with pytest.raises(ConnectionResetError):
            client.recv(100)  # the inside application learns its peer is gone
    finally:
        client.close()
        server.close()
        lsock.close()
    assert topo.stop_firewall() == 0


FLOOD_CONFIG = (
    HEAD
    + """\
access-list OUTSIDE_IN extended permit tcp any host 192.168.1.10 range 5001 5003
access-group OUTSIDE_IN in interface outside
access-list PROTECTED extended permit tcp any host 192.168.1.10 range 5001 5003
class-map SERVER
 match access-list PROTECTED
policy-map P
 class SERVER
  set connection embryonic-conn-max 50
service-policy P interface outside
"""
)

SYN_COUNTER = """\
table inet syns {
  chain in {
    type filter hook input priority -200; policy accept;
    ip saddr != 203.0.113.2 tcp dport { 5001, 5003 } tcp flags & (syn | ack) == syn counter
  }
}
"""


@pytest.mark.timeout(180)
@pytest.mark.skipif(not shutil.which("hping3"), reason="needs hping3")
def test_hping3_syn_flood_with_random_sources_while_a_client_connects(topo, tmp_path):
    from statewall.lab import transfer
    from statewall.lab.topology import INSIDE, OUTSIDE

    name = "floodlab"
    log = start(topo, tmp_path, FLOOD_CONFIG.format(name=name), name)
    inside, outside = topo.host("inside"), topo.host("outside")
    inside.run(["nft", "-f", "-"], input=SYN_COUNTER, timeout=10)

    def listen():
        # The flood's target: a listening port in the same class as the client's, so that the spoofed
        # SYNs stay embryonic (answered, never completed) instead of being reset.
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("0.0.0.0", 5003))
        s.listen(1024)
        return s

    target = inside.call(listen)
    flood = outside.popen(
        ["hping3", "-S", "-p", "5003", "--rand-source", "-c", "2000", "-i", "u200", INSIDE.host],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # The class reaches its embryonic limit within the first SYNs; from then on the firewall answers.
        wait_for(
            lambda: "current embryonic conns 50" in ctl(tmp_path, name, "show", "service-policy"),
            30,
            "the embryonic limit to be reached",
        )
        sent, received = transfer.between(outside, inside, INSIDE.host, 4 << 20, port=5001, timeout=60)
        flood.wait(timeout=60)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait(5)
        target.close()
    assert sent["error"] is None and received["error"] is None, (sent, received)
    assert sent["bytes"] == received["bytes"] == 4 << 20 and sent["sha256"] == received["sha256"]
    # The client went through the intercept: its SYN was answered by the firewall (201010).
    evs = events(log)
    intercepted = [e for e in evs if e["event"] == "Drop" and e["reason"] == "tcp-intercept"]
    assert any(e["src"] == OUTSIDE.host for e in intercepted)
    assert len(intercepted) > 100
    # At most 50 spoofed SYNs ever reached the server: the rest were answered with cookies.
    ruleset = inside.run(["nft", "list", "table", "inet", "syns"], timeout=10).stdout
    m = re.search(r"counter packets (\d+)", ruleset)
    assert m, ruleset
    assert int(m[1]) <= 50
    print(
        f"\nlive flood: {len(intercepted)} SYNs answered with cookies, {m[1]} spoofed SYNs reached the server"
    )
    assert topo.stop_firewall() == 0
