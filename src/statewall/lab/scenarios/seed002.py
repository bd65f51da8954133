"""``seed002``: connection limits and TCP Intercept against a real SYN flood, and Dead Connection Detection
against a real idle connection and a dead one (the seed's ASA 8.2 chapter "Configuring Connection Limits
and Timeouts").

::

    web server 192.168.1.10 ---- inside [statewall, ASA 9.1] outside ---- 203.0.113.2 clients, hping3
    (HTTP on 80, echo on 5002)          policy on the outside                 (--rand-source flood)

The web server is a Linux host without SYN cookies of its own (``tcp_syncookies = 0``), listening with
a backlog of 128: a SYN flood fills that queue with half-open connections and every later SYN,
legitimate or not, is dropped by the server until the entries time out (``tcp_synack_retries = 2``:
about 7 s). The firewall's outside policy sets ``embryonic-conn-max 50 per-client-embryonic-max 10``
for the web class.

1. Per client: one outside host opens 30 half-open connections of its own (hping3 from its address,
   the answers left unanswered). Its first 10 reach the server; from the 11th the firewall answers
   with SYN cookies (201012, rate-limited as the ASA does).
2. Protected: ``hping3 --rand-source`` sends 10 000 spoofed SYNs at ~1000/s. 50 reach the server, the
   rest are answered by the firewall (201010 for each, 733100 "[ SYN attck]" once the burst rate passes
   200/s), and the server's half-open count (``ss state syn-recv`` in its namespace) stays at the limit.
   Meanwhile two curl downloads and a Python (urllib) download from the outside complete through the
   intercept, byte for byte.
3. Unprotected: the same flood with the limits removed (``statewall ctl reload``): the server's queue
   fills (its half-open count reaches its backlog) and a curl download cannot even connect.
4. DCD. The echo class has ``set connection timeout idle 0:00:03 reset``: an idle but live connection
   is reset after 3 s (302014 ``Flow timed out with reset``) and the application's next exchange fails.
   With ``dcd 0:00:01 3`` added, the same idle connection survives well past its idle timeout (both
   kernels answer the probes; ``show service-policy`` counts them) and still carries data. Then the
   outside host drops everything (nftables): the probes go unanswered and after three rounds the
   connection is freed with a RST to the inside server (302014 ``Flow timed out with reset``).

Every wait is bounded; everything the scenario starts belongs to the lab, which removes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time

from ..netns import LabError, Namespace, wait_for
from ..topology import INSIDE, OUTSIDE, FirewallTopology
from . import ScenarioRun, scenario
from ._seedlab import PY, Firewall, Transfer, curl_ftp, file_facts, make_file, nft, show_lines

SERVER, CLIENT = INSIDE.host, OUTSIDE.host
EMBRYONIC_MAX, PER_CLIENT_MAX = 50, 10
BACKLOG = 128
FLOOD_SYNS = 10_000
FLOOD_GAP_US = 1000  # hping3 -i u1000: about 1000 SYNs per second, 10 s of flood
PAGE_BYTES = 2 << 20
IDLE, DCD_RETRY, DCD_RETRIES = 3, 1, 3
ECHO_PORT = 5002

CONFIG = """\
: statewall lab seed002: a web server inside, connection limits and timeouts on the outside
ASA Version 9.1(2)
hostname edge
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 203.0.113.1 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 192.168.1.1 255.255.255.0
access-list OUTSIDE_IN extended permit tcp any host 192.168.1.10 eq www
access-list OUTSIDE_IN extended permit tcp any host 192.168.1.10 eq 5002
access-group OUTSIDE_IN in interface outside
route outside 0.0.0.0 0.0.0.0 203.0.113.2 1
class-map WEB
 match port tcp eq www
class-map IDLE
 match port tcp eq 5002
policy-map OUTSIDE
 class WEB
{web}
 class IDLE
  set connection timeout idle 0:00:03 reset{dcd}
service-policy OUTSIDE interface outside
"""
LIMITS = f"  set connection embryonic-conn-max {EMBRYONIC_MAX} per-client-embryonic-max {PER_CLIENT_MAX}"
# Without limits the class still has a setting of its own, so that the policy-map keeps its shape.
NO_LIMITS = "  set connection random-sequence-number enable"
DCD = f" dcd 0:00:0{DCD_RETRY} {DCD_RETRIES}"

# The web server: a backlog of 128 (python -m http.server listens with 5, which no limit could protect).
WEB_SERVER = r"""
import functools, http.server, sys
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = int(sys.argv[3])
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
Server((sys.argv[1], 80), handler).serve_forever()
"""
PY_CLIENT = r"""
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=20) as r, open(sys.argv[2], "wb") as f:
    f.write(r.read())
"""

# The outside host's own answers to the server's SYN-ACKs (its RSTs) never leave: its hping3
# connections stay half-open, as a real client's unanswered ones would.
NO_RST = """\
table inet sw_norst {
  chain out { type filter hook output priority 0; policy accept;
    ip daddr 192.168.1.10 tcp dport 80 tcp flags & rst == rst counter drop
  }
}
"""
GONE = """\
table inet sw_gone {
  chain in { type filter hook input priority -200; policy drop; }
}
"""


def config(web: str, dcd: str = "") -> str:
    return CONFIG.format(web=web, dcd=dcd)


def build(run: ScenarioRun):
    topo = FirewallTopology(run.lab).build()
    server, outside = topo.host("inside"), topo.host("outside")
    # SYN-ACKs to spoofed sources leave towards the outside host, which does not forward: they vanish.
    topo.fw.route("default", via=CLIENT)
    server.sysctl("net.ipv4.tcp_syncookies", 0)
    server.sysctl("net.ipv4.tcp_synack_retries", 2)
    server.sysctl("net.ipv4.tcp_max_syn_backlog", 4 * BACKLOG)
    return topo, server, outside


def syn_recv(server: Namespace, port: int = 80) -> int:
    """The server's half-open connections on ``port`` (``ss state syn-recv``)."""
    res = server.run(["ss", "-Htn", "state", "syn-recv", "sport", "=", f":{port}"], timeout=10, check=False)
    return sum(1 for line in res.stdout.splitlines() if line.strip())


class HalfOpenWatch:
    """Samples the server's half-open count in the background (every 0.2 s) until stopped."""

    def __init__(self, server: Namespace) -> None:
        self.server = server
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="syn-recv", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(LabError):
                self.samples.append(syn_recv(self.server))
            self._stop.wait(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(15)
        return max(self.samples, default=0)


def hping3(outside: Namespace, *args: str) -> subprocess.Popen:
    return outside.popen(["hping3", *args, SERVER], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_proc(proc: subprocess.Popen, timeout: float) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise LabError(f"{' '.join(proc.args[4:])} did not end within {timeout} s") from None


def log_lines(fw: Firewall) -> list[str]:
    """Everything the firewall logged so far (its log file: ``show log`` keeps only 2000 lines)."""
    try:
        with open(fw.log_file) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def downloads(run: ScenarioRun, outside: Namespace, sha: str, tag: str, limit: float) -> list[Transfer]:
    """Two curl downloads and a Python one, side by side, from the outside host."""
    url = f"http://{SERVER}/page.bin"
    work = run.lab.workdir()
    procs = []
    started = time.monotonic()
    for i in (1, 2):
        out = os.path.join(work, f"{tag}-curl{i}.bin")
        argv = ["curl", "-sS", "--max-time", str(limit), "--connect-timeout", str(limit / 2), "-o", out, url]
        procs.append(
            (f"curl {url}", out, outside.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        )
    out = os.path.join(work, f"{tag}-python.bin")
    procs.append(
        (
            "python urllib",
            out,
            outside.popen([PY, "-c", PY_CLIENT, url, out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
        )
    )
    done = []
    for what, out, proc in procs:
        try:
            _, err = proc.communicate(timeout=limit + 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        got, got_sha = file_facts(out)
        note = f" ({err.decode(errors='replace').strip()[-120:]})" if proc.returncode and err else ""
        t = Transfer(what, PAGE_BYTES, sha, got, got_sha, proc.returncode, time.monotonic() - started, note)
        t.report(run)
        done.append(t)
    return done


def within(seconds: float, predicate) -> bool:
    """Wait (bounded) for ``predicate``; whether it held. For what a check judges afterwards."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def policy_line(fw: Firewall, pattern: str) -> str:
    text = fw.ctl("show service-policy")
    return next((line.strip() for line in text.splitlines() if re.search(pattern, line)), "")


@scenario(
    "seed002",
    "seed 002: SYN flood against embryonic-conn-max (TCP Intercept) and without; DCD keeps an idle "
    "connection and frees a dead one",
)
def seed002(run: ScenarioRun) -> None:
    if shutil.which("hping3") is None:
        raise LabError("seed002 needs hping3 (make debs installs it)")
    topo, server, outside = build(run)
    run.say(
        f"topology: web server {SERVER} (no SYN cookies, backlog {BACKLOG}) - statewall - {CLIENT} "
        "(clients, hping3)"
    )
    fw = Firewall(run, topo)
    fw.start(config(LIMITS))
    www = os.path.join(run.lab.workdir(), "www")
    os.makedirs(www)
    sha = make_file(os.path.join(www, "page.bin"), PAGE_BYTES)
    web = server.popen(
        [PY, "-c", WEB_SERVER, SERVER, www, str(BACKLOG)],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(run.lab.workdir(), "web.log"), "w"),  # noqa: SIM115 -- the lab ends it
    )
    wait_for(
        lambda: web.poll() is None and server.run(["ss", "-Hltn", "sport = :80"], check=False).stdout.strip(),
        timeout=15,
        what="the web server",
    )

    # 1. One client's own half-open connections: the per-client limit.
    run.say(
        f"per client: {CLIENT} opens 30 half-open connections of its own (per-client-embryonic-max "
        f"{PER_CLIENT_MAX})"
    )
    nft(outside, NO_RST)
    wait_proc(hping3(outside, "-S", "-p", "80", "-c", "30", "-i", "u20000"), 30)
    within(10, lambda: any("-201012:" in line for line in log_lines(fw)))
    lines = log_lines(fw)
    n = show_lines(run, lines, r"-201012:", most=1, what="201012")
    run.check(
        f"the client's connections beyond {PER_CLIENT_MAX} were intercepted (201012)",
        n >= 1,
        f"{n} line(s): the ASA logs 201012 at most once per 10 s",
    )

    # 2. The flood against the limits, with real clients in it.
    run.say(
        f"protected: embryonic-conn-max {EMBRYONIC_MAX} on the outside; hping3 --rand-source sends "
        f"{FLOOD_SYNS} spoofed SYNs while three clients download {PAGE_BYTES} bytes"
    )
    seen = len(lines)
    watch = HalfOpenWatch(server)
    flood = hping3(
        outside, "-S", "-p", "80", "--rand-source", "-c", str(FLOOD_SYNS), "-i", f"u{FLOOD_GAP_US}"
    )
    try:
        line = wait_for(
            lambda: policy_line(fw, rf"current embryonic conns {EMBRYONIC_MAX}\b"),
            timeout=20,
            what="the embryonic limit to be reached",
        )
        run.say(f"    show service-policy: {line}")
        got = downloads(run, outside, sha, "protected", 30)
        wait_proc(flood, 60)
    finally:
        half_open = watch.stop()
    within(5, lambda: any("-733100:" in x for x in log_lines(fw)[seen:]))
    lines = log_lines(fw)[seen:]
    n201010 = show_lines(run, lines, r"-201010:", most=2, what="201010")
    n733100 = show_lines(run, lines, r"-733100:", most=2, what="733100")
    run.say(f"    the server's half-open connections (ss state syn-recv), most seen: {half_open}")
    run.check(
        "the clients' downloads complete through the intercept",
        all(t.complete for t in got),
        ", ".join(
            f"{t.received} bytes, sha256 {'match' if t.sent_sha == t.received_sha else 'differ'}" for t in got
        ),
    )
    run.check(
        f"the server's half-open count stays at the limit ({EMBRYONIC_MAX})",
        0 < half_open <= EMBRYONIC_MAX + len(got),
        f"at most {half_open}",
    )
    run.check(
        "the firewall answered the flood with SYN cookies (201010)",
        n201010 > FLOOD_SYNS // 2,
        f"{n201010} lines",
    )
    run.check("threat detection logged the SYN attack rate (733100)", n733100 >= 1, f"{n733100} line(s)")

    # 3. The same flood without the limits.
    run.say("unprotected: the same flood with the limits removed (statewall ctl reload)")
    answer = fw.reload(config(NO_LIMITS)).splitlines()
    run.say(f"    statewall ctl reload: {answer[0]}")
    wait_for(lambda: syn_recv(server) == 0, timeout=20, what="the server's queue to drain")
    watch = HalfOpenWatch(server)
    flood = hping3(
        outside, "-S", "-p", "80", "--rand-source", "-c", str(FLOOD_SYNS), "-i", f"u{FLOOD_GAP_US}"
    )
    try:
        time.sleep(1.0)  # the flood is under way
        url = f"http://{SERVER}/page.bin"
        out = os.path.join(run.lab.workdir(), "unprotected.bin")
        code, secs, err = curl_ftp(run, outside, url, download=out, max_time=8)
        got_bytes, _ = file_facts(out)
        run.say(
            f"    curl {url}: exit {code} after {secs:.1f} s{f' ({err})' if err else ''}, {got_bytes} bytes"
        )
        wait_proc(flood, 60)
    finally:
        half_open = watch.stop()
    run.say(f"    the server's half-open connections, most seen: {half_open} (its backlog is {BACKLOG})")
    run.check(
        "without the limits the flood fills the server's queue",
        half_open >= BACKLOG * 3 // 4,
        f"at most {half_open} half-open",
    )
    run.check(
        "and a legitimate client cannot connect", code != 0 and got_bytes < PAGE_BYTES, f"curl exit {code}"
    )
    wait_for(lambda: syn_recv(server) == 0, timeout=20, what="the server's queue to drain")

    # 4. Dead Connection Detection.
    idle_connections(run, fw, server, outside)
    code = fw.stop()
    run.check("statewall run exits cleanly", code == 0, f"exit code {code}")


def echo_server(server: Namespace) -> socket.socket:
    def listen() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((SERVER, ECHO_PORT))
        s.listen(4)
        s.settimeout(15)
        return s

    return server.call(listen)


def connect(
    outside: Namespace, server: Namespace, lsock: socket.socket
) -> tuple[socket.socket, socket.socket]:
    accepted = server.start(lsock.accept)
    client = outside.call(socket.create_connection, (SERVER, ECHO_PORT), timeout=15)
    conn, _ = accepted.result(timeout=15)
    for s in (client, conn):
        s.settimeout(5)
    client.sendall(b"hello")
    if conn.recv(100) != b"hello":
        raise LabError("the echo connection does not carry data")
    return client, conn


def exchange(client: socket.socket, conn: socket.socket) -> str:
    """One round trip after the idle time; what happened."""
    try:
        client.sendall(b"still here")
        if conn.recv(100) != b"still here":
            return "the server got something else"
        conn.sendall(b"and back")
        return "ok" if client.recv(100) == b"and back" else "the client got something else"
    except ConnectionResetError:
        return "connection reset"
    except TimeoutError:
        return "no answer"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def teardowns(fw: Firewall, seen: int) -> list[str]:
    return [line for line in log_lines(fw)[seen:] if "-302014:" in line and f"{SERVER}/{ECHO_PORT} " in line]


def idle_connections(run: ScenarioRun, fw: Firewall, server: Namespace, outside: Namespace) -> None:
    lsock = echo_server(server)
    try:
        run.say(
            f"broken: set connection timeout idle 0:00:0{IDLE} reset, no DCD: an idle but live connection"
        )
        answer = fw.reload(config(LIMITS)).splitlines()
        run.say(f"    statewall ctl reload: {answer[0]}")
        seen = len(log_lines(fw))
        client, conn = connect(outside, server, lsock)
        with client, conn:
            wait_for(lambda: teardowns(fw, seen), timeout=IDLE + 10, what="the idle timeout")
            show_lines(run, teardowns(fw, seen), r"-302014:", most=1)
            outcome = exchange(client, conn)
        run.check(
            "the idle connection is torn down at its idle timeout",
            bool(teardowns(fw, seen)) and "Flow timed out with reset" in teardowns(fw, seen)[0],
            outcome,
        )
        run.check("and the application's next exchange fails", outcome != "ok", outcome)

        run.say(f"fixed: set connection timeout idle 0:00:0{IDLE} reset{DCD} (Dead Connection Detection)")
        answer = fw.reload(config(LIMITS, DCD)).splitlines()
        run.say(f"    statewall ctl reload: {answer[0]}")
        seen = len(log_lines(fw))
        client, conn = connect(outside, server, lsock)
        with client, conn:
            # Idle for three idle timeouts: each time both kernels answer the probes.
            time.sleep(3 * IDLE + DCD_RETRY)
            probes = policy_line(fw, r"DCD: client-probe")
            run.say(f"    idle {3 * IDLE + DCD_RETRY} s, show service-policy: {probes}")
            outcome = exchange(client, conn)
            run.check(
                "DCD keeps the idle connection past its idle timeout",
                outcome == "ok" and not teardowns(fw, seen),
                f"{outcome}; {probes}",
            )
            run.check(
                "the firewall probed both ends",
                re.search(r"client-probe [1-9]", probes) is not None
                and re.search(r"server-probe [1-9]", probes) is not None,
                probes,
            )

            run.say(f"dead: {CLIENT} drops everything (nftables); the probes go unanswered")
            nft(outside, GONE)
            wait_for(
                lambda: teardowns(fw, seen),
                timeout=IDLE + DCD_RETRY * (DCD_RETRIES + 2) + 15,
                what="the dead connection to be freed",
            )
            lines = teardowns(fw, seen)
            show_lines(run, lines, r"-302014:", most=1)
            conn.settimeout(5)
            try:
                conn.recv(100)
                server_saw = "no reset"
            except ConnectionResetError:
                server_saw = "reset"
            except TimeoutError:
                server_saw = "nothing"
            expired = policy_line(fw, r"DCD: client-probe")
            run.say(f"    show service-policy: {expired}")
            run.check(
                "the dead connection is freed with reset",
                "Flow timed out with reset" in lines[0] and "conn-expiration 1" in expired,
                lines[0].split("-302014: ", 1)[-1],
            )
            run.check("the inside server learns its peer is gone", server_saw == "reset", server_saw)
    finally:
        lsock.close()
