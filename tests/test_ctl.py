"""The control channel (``statewall.live.ctl``): what each command answers from a live engine, what a
``reload`` keeps and what it changes, the socket served from the loop's epoll, and (as root) the
``capture`` of a bound interface and ``statewall ctl`` against ``statewall run``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from scapy.layers.inet import ICMP, IP, TCP

from requires import live_reason
from statewall.config import parse_policy
from statewall.engine import Firewall, compiled, state
from statewall.events import ConnBuilt, Drop, DropReason
from statewall.lab.topology import ASA_INTERFACES
from statewall.live import ctl
from statewall.live.ctl import Commands, CtlError, CtlServer, EventLog, reload_firewall, request
from statewall.live.loop import Loop
from statewall.pcapio import read_packets
from traffic import Conversation, Host, Link

CONFIG = """\
ASA Version 8.2(1)
hostname ctltest
interface Ethernet0
 nameif outside
 security-level 0
 ip address 192.168.9.30 255.255.255.0
interface Ethernet1
 nameif inside
 security-level 100
 ip address 10.0.0.1 255.255.255.0
global (outside) 1 interface
nat (inside) 1 10.0.0.0 255.0.0.0
route outside 0.0.0.0 0.0.0.0 192.168.9.2 1
"""
# The same firewall, now refusing new connections to port 5001 from inside.
DENY_5001 = CONFIG + (
    "access-list inside_in extended deny tcp any any eq 5001\n"
    "access-list inside_in extended permit ip any any\n"
    "access-group inside_in in interface inside\n"
)
CLIENT, SERVER, MAPPED = "10.0.0.2", "192.168.9.2", "192.168.9.30"


def firewall(text: str = CONFIG) -> Firewall:
    return Firewall(parse_policy(text, "fw.cfg"))


def tcp(fw: Firewall, sport: int, dport: int = 5001, now: float = 1000.0) -> Conversation:
    """A client inside talking to the server outside through ``fw``; the hosts speak as a capture
    without the firewall shows them and the replay hook carries them into the connection's numbers."""
    return Conversation(
        Link(fw, now),
        Host(CLIENT, sport, "inside", isn=1000, window=64240),
        Host(SERVER, dport, "outside", to=MAPPED, isn=9000, window=65535),
        acks="capture",
        fin_counts=False,
    )


# --------------------------------------------------------------------------------------------------
# reload


def test_every_engine_attribute_is_either_rebuilt_or_kept_by_reload():
    """A new Firewall attribute must be classified (state to keep, or compiled from the config)."""
    for text in (
        CONFIG,
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
    ):
        fw = Firewall(parse_policy(text, "fw.cfg"))
        known = set(compiled.REBUILT) | set(state.KEPT) | set(compiled.MERGED)
        assert set(vars(fw)) - known == set(), "classify in statewall.engine (compiled.REBUILT or state.KEPT)"
        assert not set(compiled.REBUILT) & set(state.KEPT)
        nat_known = set(compiled.NAT_KEPT) | set(compiled.NAT_REBUILT) | set(compiled.NAT_MERGED)
        assert set(vars(fw.nat)) - nat_known == set(), "classify in statewall.engine.compiled (NAT_*)"


def test_reload_keeps_connections_and_translations_and_applies_the_new_rules_to_new_ones():
    fw = firewall()
    old = tcp(fw, sport=40000)
    old.open()
    conn_id = next(e.conn_id for e in old.events if isinstance(e, ConnBuilt))
    xlates = dict(fw.nat.xlates)

    report = reload_firewall(fw, parse_policy(DENY_5001, "fw.cfg"))
    assert (report.connections, report.xlates, report.unclassified) == (1, 1, [])
    assert list(fw.conns.by_id) == [conn_id]
    assert fw.nat.xlates == xlates
    # The connection built before the reload still forwards both ways, translated as before.
    out = old.client("PA", b"x" * 100)
    assert len(out) == 1 and out[0].src == MAPPED
    assert len(old.server("A")) == 1
    # A new connection to the same port meets the new access list.
    new = tcp(fw, sport=40001, now=old.now)
    assert new.client("S") == []
    drops = [e for e in new.events if isinstance(e, Drop)]
    assert drops and drops[0].reason == DropReason.ACL_DROP and drops[0].acl == "inside_in"
    # Another port is still allowed, and PAT does not hand out the port the old slot holds.
    other = tcp(fw, sport=40000, dport=22, now=new.now)
    other.open()
    assert len(fw.conns) == 2 and len(fw.nat.xlates) == 1


def test_reload_keeps_the_pat_port_of_a_live_slot_in_use():
    fw = firewall()
    tcp(fw, sport=40000).open()
    reload_firewall(fw, parse_policy(CONFIG, "fw.cfg"))
    in_use = fw.nat._mapped_in_use
    assert any(40000 in ports for ports in in_use.values()), in_use


def test_reload_refuses_a_configuration_without_a_bound_interface_and_changes_nothing():
    fw = firewall()
    tcp(fw, sport=40000).open()
    policy_before, acl_before = fw.policy, fw.acl
    with pytest.raises(CtlError, match="interface.*inside"):
        shut = CONFIG.replace(
            " ip address 10.0.0.1 255.255.255.0\n", " ip address 10.0.0.1 255.255.255.0\n shutdown\n"
        )
        reload_firewall(fw, parse_policy(shut, "fw.cfg"))
    assert fw.policy is policy_before and fw.acl is acl_before and len(fw.conns) == 1


def test_reload_command_reports_a_parse_error_and_keeps_running():
    fw = firewall()

    def bad():
        return parse_policy(CONFIG + "access-list x extended permit tcp any any eq notaport\n", "fw.cfg")

    cmds = Commands(fw, reload=bad, source="fw.cfg")
    with pytest.raises(CtlError, match="unchanged"):
        cmds.execute("reload")
    ok = Commands(fw, reload=lambda: parse_policy(DENY_5001, "fw.cfg"), source="fw.cfg")
    text = ok.execute("reload")
    assert text.startswith("reloaded fw.cfg\nkept: 0 connections")
    assert fw.policy.access_groups


def test_reload_takes_the_timeout_overrides_again():
    source = ctl.PolicySource("unused", {"conn": 8.0}, data_refreshes_control=False)
    policy = parse_policy(CONFIG, "fw.cfg")
    source.apply(policy)
    assert policy.timeouts.conn == 8.0
    assert policy.inspections and not policy.inspections[0].data_refreshes_control
    assert ctl.parse_timeout_override("pat-xlate=5") == ("pat_xlate", 5.0)
    with pytest.raises(ValueError, match="NAME=SECONDS"):
        ctl.parse_timeout_override("bogus=1")


# --------------------------------------------------------------------------------------------------
# show commands


def test_show_commands_answer_from_the_engine():
    fw = firewall()
    log = EventLog()
    cmds = Commands(fw, log=log)
    s = tcp(fw, sport=40000)
    s.open()
    s.client("PA", b"hello")
    log.add(s.events)

    conn = cmds.execute("show conn")
    assert conn.startswith("1 in use")
    assert f"TCP outside {SERVER}:5001 inside {CLIENT}:40000" in conn
    assert cmds.execute("s conn") == conn  # the ASA's abbreviations
    detail = cmds.execute("sh conn det")
    # ASA Version 8.2(1): the 8.x form; statewall's own facts follow on "statewall:" lines.
    assert f"TCP outside:{SERVER}/5001 inside:{CLIENT}/40000,\n    flags " in detail
    assert "Initiator:" not in detail and "statewall: conn 1," in detail
    assert f"translated inside:{CLIENT}/40000 to {MAPPED}/40000" in detail
    assert "tcp ESTABLISHED" in detail and "sequence numbers randomized: inside +0x" in detail
    # 8.2's show xlate form (8.2 command reference).
    assert "PAT Global 192.168.9.30(40000) Local 10.0.0.2(40000)" in cmds.execute("show xlate")
    assert "Built outbound TCP connection 1" in cmds.execute("show log")
    assert cmds.execute("show log 1").count("\n") == 1
    assert "Global policy:" in cmds.execute("show service-policy")

    # A drop shows in show asp drop and in the log.
    bad = tcp(fw, sport=40002)
    bad.server("A")  # no connection: 106015
    log.add(bad.events)
    assert "(tcp-not-syn)" in cmds.execute("show asp drop")
    assert "-106015:" in cmds.execute("show log 1")


SOPHOS = """\
#@statewall hostname XGS116_XN02
#@statewall interface inside dev Port1 address 192.168.1.1/24
#@statewall interface outside dev ipsec0 address 203.0.113.1/24 mtu 1400
#@statewall route 198.51.100.0/24 via 203.0.113.254 dev outside
iptables -t nat -A POSTROUTING -o ipsec0 -j MASQUERADE
XGS116_XN02_SFOS 19.5.2 MR-2-Build624# iptables -t mangle -A POSTROUTING -o ipsec0 -p tcp -m tcp \
--tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1347
"""


def test_an_iptables_firewall_shows_conntrack_its_counters_and_linux_logs():
    fw = firewall(SOPHOS)
    log = EventLog()
    cmds = Commands(fw, log=log)
    syn = IP(src="192.168.1.10", dst="198.51.100.10") / TCP(
        sport=40000, dport=80, flags="S", options=[("MSS", 1460)]
    )
    res = fw.receive("inside", bytes(syn), 100.0)
    log.add(res.events)
    assert IP(bytes(res.packets[0][1]))[TCP].options == [("MSS", 1347)]
    mangle = cmds.execute("show iptables mangle")
    assert "       1       44 TCPMSS     tcp  --  *      ipsec0" in mangle
    conn = cmds.execute("show conn")
    assert conn.startswith("tcp      6 120 SYN_SENT src=192.168.1.10 dst=198.51.100.10 sport=40000 dport=80")
    assert "dst=203.0.113.1 sport=80 dport=40000" in conn  # masqueraded
    assert "[NEW] tcp      6 120 SYN_SENT src=192.168.1.10" in cmds.execute("show log")
    with pytest.raises(CtlError, match="no modular policy framework"):
        cmds.execute("show service-policy")
    with pytest.raises(CtlError, match="runs no iptables policy"):
        Commands(firewall()).execute("show iptables")


@pytest.mark.parametrize(
    "line, message",
    [
        ("", "empty command"),
        ("frobnicate", "Invalid command"),
        ("show c", "Ambiguous show target"),  # conn or capture
        ("show", "show what"),
        ("show conn sideways", "show conn"),
        ("show asp", "show asp drop"),
        ("show log many", "show log"),
        ("reload now", "no arguments"),
        ("reload", "not started from a configuration file"),
        ("capture inside start /tmp/x.pcap", "forwarding loop"),
    ],
)
def test_refused_commands_say_why(line, message):
    cmds = Commands(firewall())
    with pytest.raises(CtlError, match=message):
        cmds.execute(line)


def test_event_log_keeps_the_last_events():
    log = EventLog(size=3)
    fw = firewall()
    for port in range(5):
        log.add(
            fw.receive("outside", bytes(IP(src=SERVER, dst=MAPPED) / TCP(dport=port, flags="A")), 1.0).events
        )
    assert log.total == 5
    lines = log.lines("h")
    assert len(lines) == 3 and "/2 flags" in lines[0]


# --------------------------------------------------------------------------------------------------
# The socket, served from a real loop (no TUNs needed)


@pytest.fixture
def served(tmp_path):
    fw = firewall()
    loop = Loop(fw, [], tick=0.05)
    cmds = Commands(fw, loop, reload=lambda: parse_policy(DENY_5001, "fw.cfg"), source="fw.cfg")
    server = CtlServer(loop, cmds, "t1", directory=str(tmp_path))
    server.start()
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        yield fw, cmds, server, str(tmp_path)
    finally:
        loop.stop()
        thread.join(10)
        server.close()
        loop.close()
    assert not thread.is_alive()
    assert not os.path.exists(server.path), "the socket is removed on close"


def test_socket_answers_commands_and_errors(served):
    fw, _cmds, server, d = served
    assert ctl.running(d) == ["t1"]
    ok, text = request("t1", "show conn", directory=d)
    assert ok and text.startswith("0 in use")
    ok, text = request("t1", "show nothing", directory=d)
    assert not ok and "Invalid show target" in text
    ok, text = request("t1", "reload", directory=d)
    assert ok and "kept: 0 connections" in text
    assert fw.policy.access_groups
    assert server.served == 3 and server.clients == {}


def test_socket_writes_a_long_answer_as_the_client_reads_it(served):
    fw, cmds, _server, d = served
    events = []
    for port in range(1, 1800):
        events += fw.receive(
            "outside", bytes(IP(src=SERVER, dst=MAPPED) / TCP(dport=port, flags="A")), 1.0
        ).events
    cmds.log.add(events)
    ok, text = request("t1", "show log", directory=d)
    lines = text.splitlines()
    assert ok and len(lines) == len(events) and sum(map(len, lines)) > 200_000
    assert lines[-1].endswith("flags ACK  on interface outside")


def test_a_second_firewall_cannot_take_a_live_name(served):
    _fw, _cmds, server, d = served
    other = CtlServer(Loop(firewall(), []), Commands(firewall()), "t1", directory=d)
    with pytest.raises(CtlError, match="already running"):
        other.start()


def test_a_stale_socket_is_replaced(tmp_path):
    import socket

    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "t2.sock"))
    stale.close()  # bound, nobody listening: what a killed firewall leaves
    loop = Loop(firewall(), [])
    server = CtlServer(loop, Commands(firewall()), "t2", directory=str(tmp_path))
    server.start()
    server.close()
    loop.close()


def test_names_are_checked():
    with pytest.raises(CtlError, match="invalid name"):
        ctl.socket_path("../etc/passwd")


# --------------------------------------------------------------------------------------------------
# As root: statewall run with its channel, statewall ctl, and a capture of real traffic

ROOT_REASON = live_reason("hping3")
needs_root = pytest.mark.skipif(ROOT_REASON is not None, reason=ROOT_REASON or "")

SMOKE = (
    """\
ASA Version 8.2(1)
hostname ctlsmoke
"""
    + ASA_INTERFACES
    + """\
access-list outside_in extended permit icmp any any
access-group outside_in in interface outside
global (outside) 1 interface
nat (inside) 1 0.0.0.0 0.0.0.0
timeout icmp 0:01:00
policy-map global_policy
 class inspection_default
  inspect icmp
service-policy global_policy global
"""
)


@pytest.mark.root
@needs_root
@pytest.mark.timeout(120)
def test_statewall_ctl_against_statewall_run_with_a_capture(tmp_path):
    from statewall.lab.netns import Lab, wait_for
    from statewall.lab.topology import OUTSIDE, FirewallTopology

    cfg = tmp_path / "fw.cfg"
    cfg.write_text(SMOKE)
    pcap = tmp_path / "inside.pcap"
    with Lab() as lab:
        name = lab.prefix
        topo = FirewallTopology(lab).build()
        topo.start_firewall(
            str(cfg), extra=["--name", name, "--ctl-dir", str(tmp_path), "--capture-dir", str(tmp_path)]
        )
        # Printed right after the ready line (the socket listens before it).
        wait_for(
            lambda: any(str(tmp_path / f"{name}.sock") in line for line in topo.firewall_output),
            timeout=10,
            what="the control channel line",
        )

        def statewall_ctl(*words: str) -> subprocess.CompletedProcess:
            argv = [sys.executable, "-m", "statewall.cli", "ctl", "--ctl-dir", str(tmp_path), *words]
            return subprocess.run(argv, capture_output=True, text=True, timeout=30)

        res = statewall_ctl("capture", "inside", "start", str(pcap))
        assert res.returncode == 0, res.stderr
        ping = topo.host("inside").run(
            ["hping3", "--icmp", "-c", "2", "-i", "u200000", OUTSIDE.host], timeout=15, check=False
        )
        assert "2 packets received" in ping.stdout + ping.stderr
        res = statewall_ctl("capture", "inside", "stop")  # --name left out: the only firewall there
        assert res.returncode == 0 and "packets written" in res.stdout, res.stderr
        # inspect icmp closes an echo session on the reply that answers it; a ping nobody answers keeps
        # its session, which outlives the ctl commands (timeout icmp 0:01:00: the default 2 s can pass
        # while a loaded machine starts two Python processes).
        topo.host("inside").run(["hping3", "--icmp", "-c", "1", "203.0.113.99"], timeout=15, check=False)
        res = statewall_ctl("show", "conn")
        assert res.returncode == 0 and "ICMP outside 203.0.113.99" in res.stdout, res.stdout
        res = statewall_ctl("show", "bogus")
        assert res.returncode == 1 and "Invalid show target" in res.stderr
        assert topo.stop_firewall() == 0
    assert not (tmp_path / f"{name}.sock").exists()
    packets = [IP(bytes(p)) for _ts, p in read_packets(str(pcap))]
    icmp = [(p.src, p.dst, p[ICMP].type) for p in packets if p.haslayer(ICMP)]
    # Both directions on the inside interface: requests as the host sent them, replies as forwarded.
    assert icmp.count(("192.168.1.10", OUTSIDE.host, 8)) == 2
    assert icmp.count((OUTSIDE.host, "192.168.1.10", 0)) == 2


def test_show_log_follows_the_logging_configuration_and_reload_refreshes_it():
    """``show log`` prints what log.txt would hold under the running configuration's logging lines
    (here: timestamps off by default, device-id hostname, 302013 disabled), and a ``reload`` with other
    logging lines changes what it prints. Layout ``DEVICE : %ASA-6-N: ...`` as
    ``statewall.logfmt.asalog`` writes log.txt (Cisco syslog guide, ``logging device-id``)."""
    logging_a = "logging enable\nlogging buffered informational\nlogging device-id hostname\n"
    logging_a += "no logging message 302013\n"
    logging_b = "logging enable\nlogging buffered informational\nlogging device-id string EDGE1\n"
    fw = firewall(CONFIG + logging_a)
    log = EventLog()
    texts = iter([CONFIG + logging_b])
    policies: list = []
    cmds = Commands(fw, log=log, reload=lambda: parse_policy(next(texts), "fw.cfg"),
                    on_reload=[policies.append])  # fmt: skip
    s = tcp(fw, sport=40000)
    s.open()
    log.add(s.events)
    shown = cmds.execute("show log")
    assert "302013" not in shown  # disabled by "no logging message 302013"
    assert shown.splitlines()[0].startswith("ctltest : %ASA-6-305011: Built dynamic TCP translation")
    cmds.execute("reload")
    assert [p is fw.policy for p in policies] == [True]  # the loop's log and syslog are told
    after = cmds.execute("show log")
    assert after.splitlines()[0].startswith("EDGE1 : %ASA-6-305011: Built dynamic TCP translation")
    assert "EDGE1 : %ASA-6-302013: Built outbound TCP connection 1" in after
