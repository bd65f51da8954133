"""The lab: namespaces, links, routes and processes it creates, and that it removes all of them, also when
the body raises or the process gets SIGTERM; the standard topology; ``statewall lab``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from requires import live_reason
from statewall.lab.netns import Lab, LabError, our_namespaces, wait_for

ROOT_REASON = live_reason("ip", tun=False)

needs_root = pytest.mark.skipif(ROOT_REASON is not None, reason=ROOT_REASON or "")


def ip_netns_list() -> str:
    return subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True
    ).stdout


@pytest.mark.root
@needs_root
def test_namespaces_are_removed_even_when_the_body_raises():
    with pytest.raises(RuntimeError, match="scenario broke"), Lab() as lab:
        a, b = lab.netns("a"), lab.netns("b")
        lab.veth(a, "eth0", b, "eth0")
        sleeper = a.popen(["sleep", "300"])
        workdir = lab.workdir()
        assert lab.prefix in ip_netns_list()
        raise RuntimeError("scenario broke")
    listing = ip_netns_list()
    assert lab.prefix not in listing, listing
    assert our_namespaces(lab.prefix) == []
    assert sleeper.poll() is not None, "the process started in the lab is still running"
    assert not os.path.exists(workdir)


@pytest.mark.root
@needs_root
def test_namespaces_are_removed_on_sigterm(tmp_path):
    script = textwrap.dedent(
        """
        import sys, time
        from statewall.lab.netns import Lab
        with Lab() as lab:
            a = lab.netns("a")
            sleeper = a.popen(["sleep", "300"])
            print(lab.prefix, sleeper.pid, flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        prefix, pid = proc.stdout.readline().split()
        assert prefix.startswith("sw-")
        assert our_namespaces(prefix)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert our_namespaces(prefix) == []
    # The process started in the lab was ended by the lab (and reaped once its parent exited).
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10, what=f"pid {pid} to go away")


@pytest.mark.root
@needs_root
def test_links_addresses_routes_and_sysctls():
    with Lab() as lab:
        a, b = lab.netns("a"), lab.netns("b")
        lab.veth(a, "eth0", b, "eth1", mtu=1400)
        a.addr("eth0", "10.9.0.1/24")
        b.addr("eth1", "10.9.0.2/24")
        a.route("10.99.0.0/16", via="10.9.0.2", advmss=1390)
        b.sysctl("net.ipv4.ip_forward", 1)
        assert b.read_sysctl("net.ipv4.ip_forward") == "1"
        assert a.read_sysctl("net.ipv4.ip_forward") == "0"  # sysctls are per namespace
        assert b.read_sysctl("net/ipv4/ip_forward") == "1"  # the path form, for names with dots
        routes = a.run(["ip", "route", "show", "10.99.0.0/16"]).stdout
        assert "via 10.9.0.2" in routes and "advmss 1390" in routes
        assert "mtu 1400" in a.run(["ip", "link", "show", "eth0"]).stdout
        # The Python callable runs in the namespace: it sees the namespace's links.
        names = a.call(socket_names)
        assert "eth0" in names and "eth1" not in names
        res = a.run(["python3", "-c", "print(1)"])
        assert res.stdout.strip() == "1"
        with pytest.raises(LabError, match="exited"):
            a.run(["false"])


def socket_names() -> list[str]:
    import socket

    return [name for _, name in socket.if_nameindex()]


@pytest.mark.root
@needs_root
def test_random_loss_and_netem():
    with Lab() as lab:
        a, b = lab.netns("a"), lab.netns("b")
        lab.veth(a, "eth0", b, "eth0")
        if shutil.which("nft"):
            a.random_loss("eth0", 1.5)
            ruleset = a.run(["nft", "list", "ruleset"]).stdout
            assert 'oifname "eth0" numgen random mod 10000 < 150' in ruleset
        try:
            a.netem("eth0", delay_ms=5, loss=1)
        except LabError as exc:
            assert "netem" in str(exc)  # this kernel has no sch_netem: the error says so
        else:
            assert "netem" in a.run(["tc", "qdisc", "show", "dev", "eth0"]).stdout


@pytest.mark.root
@needs_root
def test_call_raises_the_callables_error_and_is_bounded():
    with Lab() as lab:
        a = lab.netns("a")
        with pytest.raises(ZeroDivisionError):
            a.call(lambda: 1 / 0)
        with pytest.raises(LabError, match="timed out"):
            a.call(time.sleep, 2, timeout=0.2)


def test_wait_for_is_bounded():
    with pytest.raises(LabError, match="timed out"):
        wait_for(lambda: False, timeout=0.1, what="nothing")
    assert wait_for(lambda: 5, timeout=0.1) == 5


@pytest.mark.root
@needs_root
@pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun")
def test_standard_topology_routes_each_side_into_its_tun():
    from statewall.lab.topology import FirewallTopology

    with Lab() as lab:
        topo = FirewallTopology(lab).build()
        fw = topo.fw
        assert topo.binds() == [f"inside=t-inside@{fw.name}", f"outside=t-outside@{fw.name}"]
        rules = fw.run(["ip", "rule", "show"]).stdout
        assert "iif v-inside lookup 100" in rules and "iif v-outside lookup 101" in rules
        assert "default dev t-inside" in fw.run(["ip", "route", "show", "table", "100"]).stdout
        assert fw.read_sysctl("net.ipv4.conf.v-outside.proxy_arp") == "1"
        tun = fw.run(["ip", "-d", "link", "show", "t-outside"]).stdout
        assert "persist on" in tun and "UP" in tun
        assert "default via 192.168.1.1" in topo.host("inside").run(["ip", "route"]).stdout
        # Only the lab's namespace sees the TUNs.
        assert "t-inside" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert our_namespaces(lab.prefix) == []


def test_lab_list_shows_smoke():
    res = subprocess.run(
        [sys.executable, "-m", "statewall.cli", "lab", "list"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("smoke ") or "\nsmoke " in res.stdout


@pytest.mark.root
@needs_root
@pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun")
@pytest.mark.skipif(not shutil.which("hping3"), reason="needs hping3 for the ping")
@pytest.mark.timeout(240)
def test_lab_run_smoke_passes_and_leaves_nothing():
    res = subprocess.run(
        [sys.executable, "-m", "statewall.cli", "lab", "run", "smoke"],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "scenario smoke: PASSED" in res.stdout
    assert "checksums match" in res.stdout
    line = next(x for x in res.stdout.splitlines() if "statewall run: stopped; " in x)
    counters = json.loads(line.split("; ", 1)[1])
    assert counters["interfaces"]["inside"]["rx_packets"] > 0
    # Other test runs may create namespaces meanwhile; none of this run's may remain.
    topology = next(x for x in res.stdout.splitlines() if x.startswith("topology: "))
    mine = set(topology.split()[1:])
    assert not (mine & set(our_namespaces())), sorted(mine & set(our_namespaces()))
    assert "Traceback" not in res.stderr
