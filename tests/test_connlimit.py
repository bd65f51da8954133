"""``-m connlimit`` counted as xt_connlimit counts: per rule, the connections that reached the rule,
grouped by ``--connlimit-mask`` of the source (or ``--connlimit-daddr`` destination), closed ones
(TIME_WAIT, CLOSE) and refused ones no longer counted.

Each script is played twice: through the engine with simulated hosts, and -- as root, where the kernel
has xt_connlimit -- through the kernel's own FORWARD path between real sockets in network namespaces.
Both must give the outcomes the script expects, which is what makes statewall's count the kernel's.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import socket
import threading
import time

import pytest

from netns_util import Lab, in_netns, missing_prerequisites, sh
from sim_tcp import Net, TcpHost
from statewall.dialects.iptables import parse
from statewall.engine import Firewall
from statewall.events import Drop, DropReason

HEADER = "#@statewall interface fa address 10.77.1.254/24\n#@statewall interface fb address 10.77.2.254/24\n"
SERVER = "10.77.2.1"
CLIENT, NEIGHBOUR = "10.77.1.1", "10.77.1.2"

# Port 22 and port 80 each have their own limit: the old per-group count let connections to port 80
# use up port 22's.
PER_RULE = """\
iptables -A FORWARD -p tcp --syn --dport 22 -m connlimit --connlimit-above 2 -j REJECT --reject-with tcp-reset
iptables -A FORWARD -p tcp --syn --dport 80 -m connlimit --connlimit-above 3 -j REJECT --reject-with tcp-reset
iptables -A FORWARD -j ACCEPT
"""
PER_RULE_SCRIPT = [
    ("open", CLIENT, 80, True),
    ("open", CLIENT, 80, True),
    ("open", CLIENT, 80, True),
    ("open", CLIENT, 22, True),
    ("open", CLIENT, 22, True),
    ("open", CLIENT, 22, False),  # the third to port 22: 3 > 2
    ("open", CLIENT, 80, False),  # the fourth to port 80: 4 > 3
    ("open", NEIGHBOUR, 22, True),  # mask 32: another host has its own count
    ("close", 3),  # a port-22 connection ends (TIME_WAIT): it no longer counts
    ("open", CLIENT, 22, True),
    ("open", CLIENT, 22, False),
]

# --connlimit-upto with a /24 mask: the two clients share one count; --connlimit-daddr counts per server.
MASKED = """\
iptables -A FORWARD -p tcp --syn --dport 80 -m connlimit --connlimit-upto 3 --connlimit-mask 24 -j ACCEPT
iptables -A FORWARD -p tcp --syn --dport 80 -j REJECT --reject-with tcp-reset
iptables -A FORWARD -p tcp --syn --dport 22 -m connlimit --connlimit-above 1 --connlimit-daddr \\
    -j REJECT --reject-with tcp-reset
iptables -A FORWARD -j ACCEPT
"""
MASKED_SCRIPT = [
    ("open", CLIENT, 80, True),
    ("open", NEIGHBOUR, 80, True),
    ("open", CLIENT, 80, True),
    ("open", NEIGHBOUR, 80, False),  # the /24 has 3: the fourth is not "up to 3"
    ("close", 1),
    ("open", NEIGHBOUR, 80, True),
    ("open", CLIENT, 22, True),
    ("open", NEIGHBOUR, 22, False),  # one connection per server, whoever asks
]

# Without --syn every packet of a connection reaches the match: it is counted once, not per packet.
EVERY_PACKET = """\
iptables -A FORWARD -p tcp --dport 80 -m connlimit --connlimit-above 1 -j REJECT --reject-with tcp-reset
iptables -A FORWARD -j ACCEPT
"""
EVERY_PACKET_SCRIPT = [
    ("open", CLIENT, 80, True),
    ("open", NEIGHBOUR, 80, True),
    ("open", CLIENT, 80, False),
    ("close", 0),
    ("open", CLIENT, 80, True),
]

SCRIPTS = {
    "per-rule": (PER_RULE, PER_RULE_SCRIPT),
    "mask-upto-daddr": (MASKED, MASKED_SCRIPT),
    "every-packet": (EVERY_PACKET, EVERY_PACKET_SCRIPT),
}


def engine_outcomes(rules: str, script) -> tuple[list[bool], Net]:
    fw = Firewall(parse(HEADER + rules, "connlimit.rules"))
    server = TcpHost("fb", SERVER)
    server.listen(22)
    server.listen(80)
    clients = {a: TcpHost("fa", a, isn=7_000_000 * (i + 1)) for i, a in enumerate((CLIENT, NEIGHBOUR))}
    net = Net(fw, [server, *clients.values()])
    opened: list[tuple[TcpHost, int, int]] = []
    outcomes = []
    sport = 40000
    for step in script:
        net.advance(0.05)
        if step[0] == "open":
            _, src, dport, _expected = step
            host = clients[src]
            sport += 1
            net.send(host, host.connect(SERVER, dport, sport))
            c = host.conns.get((sport, server.a, dport))  # gone when a RST refused it
            outcomes.append(c is not None and c.established)
            opened.append((host, sport, dport))
        else:
            host, sp, dport = opened[step[1]]
            net.send(host, host.close(sp, SERVER, dport))
            net.send(server, server.close(dport, host.addr, sp))
    return outcomes, net


def expected(script) -> list[bool]:
    return [step[3] for step in script if step[0] == "open"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_engine_counts_per_rule_as_xt_connlimit(name):
    rules, script = SCRIPTS[name]
    outcomes, net = engine_outcomes(rules, script)
    assert outcomes == expected(script)
    refused = [d for d in net.of(Drop) if d.reason is DropReason.ACL_DROP]
    assert len(refused) == outcomes.count(False)
    assert all(d.message == "rejected with tcp-reset" for d in refused)


# --------------------------------------------------------------------------------------------------
# The kernel: the same scripts through xt_connlimit


KERNEL_REASON = missing_prerequisites() or (
    None if shutil.which("iptables-legacy") else "needs iptables-legacy"
)


class _Server:
    """Listening sockets on 22 and 80 in ``b``; accepted sockets by peer, closed on request."""

    def __init__(self, lab: Lab) -> None:
        self.listeners = []
        with in_netns(lab.b):
            for port in (22, 80):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((SERVER, port))
                s.listen(64)
                s.settimeout(0.2)
                self.listeners.append(s)
        self.accepted: dict[tuple[str, int], socket.socket] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for s in self.listeners:
                with contextlib.suppress(OSError):
                    conn, peer = s.accept()
                    self.accepted[peer] = conn

    def close_peer(self, peer) -> None:
        deadline = time.monotonic() + 5
        while peer not in self.accepted and time.monotonic() < deadline:
            time.sleep(0.01)
        conn = self.accepted.pop(peer)
        conn.settimeout(5)
        assert conn.recv(10) == b""  # the client's FIN arrived
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in [*self.listeners, *self.accepted.values()]:
            s.close()


def kernel_outcomes(rules: str, script) -> list[bool]:
    with Lab() as lab:
        sh("ip", "-n", lab.a, "addr", "add", f"{NEIGHBOUR}/24", "dev", "a0")
        lab.conntrack_settings(tcp_loose=1)
        for line in rules.replace("\\\n", " ").splitlines():
            words = shlex.split(line)
            sh("ip", "netns", "exec", lab.fw, "iptables-legacy", *words[1:])
        server = _Server(lab)
        opened: list[tuple[socket.socket, tuple[str, int]]] = []
        outcomes = []
        try:
            for step in script:
                # One step per few jiffies: within one jiffy the kernel skips cleaning the count.
                time.sleep(0.03)
                if step[0] == "open":
                    _, src, dport, _expected = step
                    with in_netns(lab.a):
                        s = socket.socket()
                    s.bind((src, 0))
                    s.settimeout(3)
                    try:
                        s.connect((SERVER, dport))
                        outcomes.append(True)
                    except ConnectionRefusedError:
                        outcomes.append(False)
                    opened.append((s, s.getsockname()))
                else:
                    s, peer = opened[step[1]]
                    s.shutdown(socket.SHUT_WR)
                    server.close_peer(peer)
                    s.settimeout(5)
                    assert s.recv(10) == b""
                    s.close()
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline and not any(
                        r["sport"] == peer[1] and r["state"] == "TIME_WAIT" for r in lab.conntrack_table()
                    ):
                        time.sleep(0.01)
        finally:
            server.stop()
            for s, _ in opened:
                s.close()
    return outcomes


@pytest.mark.root
@pytest.mark.skipif(KERNEL_REASON is not None, reason=KERNEL_REASON or "")
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_kernel_counts_the_same(name):
    rules, script = SCRIPTS[name]
    assert kernel_outcomes(rules, script) == expected(script)


def test_within_one_jiffy_the_count_is_not_cleaned_again():
    # The kernel cleans a group's list at most once a jiffy (nf_conncount's last_gc): a SYN in the
    # same jiffy as the last cleaning still counts the refused one and the one that just closed.
    fw = Firewall(parse(HEADER + EVERY_PACKET.replace("--dport 80", "--syn --dport 80"), "connlimit.rules"))
    server = TcpHost("fb", SERVER)
    server.listen(80)
    client = TcpHost("fa", CLIENT)
    net = Net(fw, [server, client])

    def open_(sport: int) -> bool:
        net.send(client, client.connect(SERVER, 80, sport))
        c = client.conns.get((sport, server.a, 80))
        return c is not None and c.established

    assert open_(40001)
    net.advance(1.0)
    assert not open_(40002)  # 40001 is still open
    net.send(client, client.close(40001, SERVER, 80))
    net.send(server, server.close(80, CLIENT, 40001))  # 40001 is in TIME_WAIT now, the same jiffy
    assert not open_(40003)
    net.advance(0.01)  # the next jiffies: cleaned again
    assert open_(40004)
