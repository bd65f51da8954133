"""Given a configuration that logs to a syslog server, a real rsyslog receives exactly statewall's log.

rsyslog (Debian's package) runs in a network namespace of its own, listening on that namespace's
loopback for UDP (514) and TCP (1470, the ASA's default TCP port); statewall replays seed 000's FTP
session (8.2: every oversized segment is dropped with 419001) with ``--syslog`` and the lines rsyslog
writes must be, after rsyslog's own prefix, byte for byte the lines of ``log.txt``, each with the PRI
the ASA would put on it (facility 20 by default: ``<166>`` for informational).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netns_util import in_netns
from statewall import cli
from statewall.config import parse_policy
from statewall.replay import replay
from statewall.syslog import Target
from test_seed000 import CONFIGS, capture

RSYSLOGD = shutil.which("rsyslogd") or (
    "/usr/sbin/rsyslogd" if os.path.exists("/usr/sbin/rsyslogd") else None
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or RSYSLOGD is None or shutil.which("ip") is None,
    reason="needs root (a network namespace), iproute2 and rsyslog (Debian package rsyslog)",
)

LOGGING = """
hostname fw
logging enable
logging timestamp
logging device-id hostname
logging buffered informational
logging trap informational
"""

# rsyslog's own prefix is its reception time and the sender's address; then the PRI it parsed and the
# message exactly as received after the PRI (the property rawmsg-after-pri).
RSYSLOG_CONF = """
global(workDirectory="{dir}")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="514")
input(type="imtcp" address="127.0.0.1" port="1470")
template(name="exact" type="string"
         string="%timegenerated:::date-rfc3339% %fromhost-ip% <%pri%> %rawmsg-after-pri%\\n")
*.* action(type="omfile" file="{out}" template="exact")
"""
LINE = re.compile(r"^\S+ 127\.0\.0\.1 <(\d+)> (.*)$")


@pytest.fixture
def rsyslog(tmp_path: Path):
    ns = f"sw-rsys-{os.getpid()}-{secrets.token_hex(3)}"
    out = tmp_path / "rsyslog.out"
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(dir=tmp_path, out=out))
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, RSYSLOGD, "-n", "-f", str(conf), "-i", str(tmp_path / "pid")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _wait_ready(ns, out, proc)
        yield ns, out
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _wait_ready(ns: str, out: Path, proc: subprocess.Popen) -> None:
    # rsyslog has no readiness signal here: a probe on each input, until both are written.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rsyslogd exited: {proc.stderr.read().decode(errors='replace')}")
        with in_netns(ns):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"<14>probe-udp", ("127.0.0.1", 514))
            try:
                with socket.create_connection(("127.0.0.1", 1470), timeout=1) as s:
                    s.sendall(b"<14>probe-tcp\n")
            except OSError:
                pass
        time.sleep(0.2)
        text = out.read_text() if out.exists() else ""
        if "probe-udp" in text and "probe-tcp" in text:
            return
    raise RuntimeError("rsyslogd did not come up")


def _received(out: Path, count: int) -> list[tuple[int, str]]:
    deadline = time.monotonic() + 10
    while True:
        lines = [LINE.match(x) for x in out.read_text().splitlines() if "probe-" not in x]
        got = [(int(m.group(1)), m.group(2)) for m in lines if m]
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def _expected(log: Path) -> list[tuple[int, str]]:
    lines = log.read_text().splitlines()
    return [(20 * 8 + int(re.search(r"%ASA-(\d)-", x).group(1)), x) for x in lines]


def test_replay_syslog_udp_lines_equal_the_log(rsyslog, tmp_path: Path, capsys):
    ns, out = rsyslog
    cfg = tmp_path / "fw.cfg"
    cfg.write_text((CONFIGS / "seed000.cfg").read_text() + LOGGING)
    cap = capture(tmp_path / "ftp.pcap")
    outdir = tmp_path / "replay"
    with in_netns(ns):
        code = cli.main(
            ["replay", "-c", str(cfg), "--asa-version", "8.2(1)", "-o", str(outdir), "--json"]
            + ["--syslog", "127.0.0.1", str(cap)]
        )
    assert code == 0, capsys.readouterr().err
    expected = _expected(outdir / "log.txt")
    assert any("%ASA-4-419001" in x for _, x in expected) and any("302013" in x for _, x in expected)
    assert all(x.split(" : ")[0].endswith(" fw") for _, x in expected)  # timestamp, device id
    assert _received(out, len(expected)) == expected


def test_tcp_1470_is_framed_by_line_feeds(rsyslog, tmp_path: Path):
    ns, out = rsyslog
    text = (CONFIGS / "seed000.cfg").read_text() + LOGGING + "logging message 302013 level 5\n"
    policy = parse_policy(text, "fw.cfg")
    policy.version = "8.2(1)"
    outdir = tmp_path / "replay"
    with in_netns(ns):
        replay(
            policy,
            [(None, capture(tmp_path / "ftp.pcap"))],
            outdir,
            syslog=[Target("127.0.0.1", 1470, "tcp")],
        )
    expected = _expected(outdir / "log.txt")
    assert any(x.startswith(("Sep", "Oct")) and "%ASA-5-302013" in x for _, x in expected)
    assert _received(out, len(expected)) == expected


RUN_CONFIG = """\
ASA Version 9.12(4)
hostname edge
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 203.0.113.1 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 192.168.1.1 255.255.255.0
logging enable
logging timestamp
logging device-id hostname
logging trap informational
logging host inside 127.0.0.1 tcp/1470
"""


@pytest.mark.root
@pytest.mark.timeout(120)
def test_statewall_run_sends_to_its_logging_host(rsyslog, tmp_path: Path):
    # statewall run in rsyslog's namespace, its TUNs there too: the namespace's own stack sends a
    # datagram into the inside TUN, the firewall builds the connection, and the configuration's
    # "logging host" (TCP 1470) gets the messages its log file holds.
    ns, out = rsyslog
    cfg = tmp_path / "fw.cfg"
    cfg.write_text(RUN_CONFIG)
    log = tmp_path / "run.log"
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "statewall.cli", "run", "-c", str(cfg)]
    argv += ["--bind", "inside=swi0", "--bind", "outside=swo0", "--no-ctl", "--log", str(log)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("statewall run: forwarding"):
                break
        else:
            raise AssertionError("statewall run did not start")
        subprocess.run(["ip", "-n", ns, "addr", "add", "192.168.1.10/24", "dev", "swi0"], check=True)
        subprocess.run(["ip", "-n", ns, "route", "add", "203.0.113.0/24", "dev", "swi0"], check=True)
        with in_netns(ns), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"query", ("203.0.113.2", 53))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "302015" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    lines = log.read_text().splitlines()
    built = [x for x in lines if "%ASA-6-302015: Built outbound UDP connection" in x]
    assert built and built[0].split(" : ")[0].endswith(" edge")
    assert _received(out, len(lines)) == [(166, x) for x in lines]
