"""``seed004``: FTP through NAT, active and passive, client behind PAT and server behind a static; a
transfer that outlasts the control connection's idle timeout survives only while data activity keeps
the control connection alive.

::

    inside host 192.168.0.10 (client) -- [statewall, ASA 8.2, inspect ftp] -- outside host 198.51.100.20
                192.168.0.21 (server)     PAT to 198.51.100.7                  (client and server)
                                          static 198.51.100.21 <-> 192.168.0.21

Each host runs a real FTP server (pyftpdlib) and a real client (curl). The firewall's FTP inspection
(the ASA's default ``inspect ftp``) opens the data connections each side announces and rewrites the
announcements of the translated side: the inside client's ``PORT`` (active, through PAT), the inside
server's ``227`` (passive, through the static). All four combinations download a file and compare
SHA-256 with the original.

Then seed 004's warning: a long transfer leaves the control connection idle, and when its idle timer
runs out first the final ``226`` has nowhere to go. The lab shortens ``timeout conn`` to a few seconds
(``statewall run --timeout-override conn=4``: the ASA does not accept less than 0:05:00, and a demo
should not take five minutes) and uploads for longer than that, held to 1 MB/s (curl paces an upload
at the sender; a download would first fill the receiver's socket buffers at full speed). With the
inspection's ``data_refreshes_control`` off (``--ftp-data-refreshes-control off``, what Linux's
conntrack does) the control connection idles out mid-transfer (302014 ``Idle Timeout``), the server's
``226`` is refused (106015) and curl never hears the transfer finish, although the server stored every
byte. With it on (statewall's default, what the seed's ``ip_masq_ftp`` did: every data packet stamps
its control connection) the same transfer completes.

Last, the seed's own Linux box: statewall runs the NetMAX ruleset of the FAQ (``CT --helper ftp``,
``MASQUERADE``, the FORWARD rules, ``ipchains -M -S`` with the tcp timeout shortened from 7200 s to
the lab's 4) on its iptables path. Active and passive downloads work through the masquerade; with the
refresh off the control connection's conntrack entry is destroyed mid-transfer (``conntrack -E``:
``[DESTROY] ... dport=21 ... helper=ftp``) and the server's 226 turns up as a ``[NEW] ... [UNREPLIED]``
stranger, not translated back; with it on the entry lives through the transfer, which completes.
"""

from __future__ import annotations

import os

from ..topology import FirewallTopology, Side
from . import ScenarioRun, scenario
from ._seedlab import Firewall, FtpServer, Transfer, curl_ftp, file_facts, make_file, show_lines

INSIDE_HOST, INSIDE_SERVER, OUTSIDE_HOST = "192.168.0.10", "192.168.0.21", "198.51.100.20"
PAT, STATIC = "198.51.100.7", "198.51.100.21"

CONFIG = """\
: statewall lab seed004: FTP through PAT (clients inside) and through a static (the server inside)
ASA Version 8.2(1)
hostname netmax
interface Ethernet0
 nameif outside
 security-level 0
 ip address 198.51.100.7 255.255.255.0
interface Ethernet1
 nameif inside
 security-level 100
 ip address 192.168.0.1 255.255.255.0
access-list outside_in extended permit tcp any host 198.51.100.21 eq ftp
access-group outside_in in interface outside
global (outside) 1 interface
nat (inside) 1 192.168.0.0 255.255.255.0
static (inside,outside) 198.51.100.21 192.168.0.21 netmask 255.255.255.255
"""

IDLE = 4  # seconds: timeout conn for the lab
FILE_BYTES = 4 << 20
LONG_BYTES = 8 << 20
LONG_RATE = "1M"  # curl's --limit-rate: 8 s of data connection, twice the idle timeout
MODES_LIMIT = 30
LONG_LIMIT = 20
STALL_LIMIT = 14  # the data takes 8 s; then curl waits for a 226 that cannot come


def build(run: ScenarioRun):
    inside = Side("inside", "192.168.0.1/24", INSIDE_HOST)
    outside = Side("outside", "198.51.100.7/24", OUTSIDE_HOST)
    topo = FirewallTopology(run.lab, (inside, outside)).build()
    # The inside host is a client (its first address, behind PAT) and the server behind the static (its
    # second address: a static translates everything its host sends, so it cannot be the client's).
    topo.host("inside").addr("eth0", f"{INSIDE_SERVER}/24")
    return topo, topo.host("inside"), topo.host("outside")


def fetch(run: ScenarioRun, ns, server: FtpServer, via: str, name: str, what: str, *, active: bool,
          limit: float, rate: str | None = None) -> Transfer:  # fmt: skip
    """curl downloads ``name`` from ``server`` at address ``via``; what the server had, what arrived."""
    out = os.path.join(run.lab.workdir(), f"got-{what.split()[0]}-{name}")
    extra = ("--limit-rate", rate) if rate else ()
    code, secs, err = curl_ftp(
        run, ns, f"ftp://{via}/{name}", download=out, active=active, epsv=False, max_time=limit, extra=extra
    )
    size, sha = file_facts(server.path(name))
    got, got_sha = file_facts(out)
    t = Transfer(what, size, sha, got, got_sha, code, secs, f" ({err})" if code and err else "")
    t.report(run)
    return t


def store(
    run: ScenarioRun, ns, server: FtpServer, local: str, name: str, what: str, limit: float
) -> Transfer:
    """curl uploads ``local`` as ``name``, held to ``LONG_RATE`` (an upload paces on the sender's side,
    where a download would fill the receiver's socket buffer at full speed first)."""
    code, secs, err = curl_ftp(
        run, ns, f"ftp://{OUTSIDE_HOST}/{name}", upload=local, epsv=False, max_time=limit,
        extra=("--limit-rate", LONG_RATE),
    )  # fmt: skip
    size, sha = file_facts(local)
    got, got_sha = file_facts(server.path(name))
    t = Transfer(what, size, sha, got, got_sha, code, secs, f" ({err})" if code and err else "")
    t.report(run)
    return t


@scenario("seed004", "seed 004: FTP active/passive through PAT and static NAT; data keeps the control alive")
def seed004(run: ScenarioRun) -> None:
    topo, inside, outside = build(run)
    run.say(
        f"topology: client {INSIDE_HOST} (PAT {PAT}) and server {INSIDE_SERVER} (static {STATIC}) - "
        f"statewall - client and server {OUTSIDE_HOST}"
    )
    inside_ftp = FtpServer(run, inside, INSIDE_SERVER)
    outside_ftp = FtpServer(run, outside, OUTSIDE_HOST)
    for server in (inside_ftp, outside_ftp):
        make_file(server.path("file.bin"), FILE_BYTES, seed=2)
    override = ["--timeout-override", f"conn={IDLE}"]

    fw = Firewall(run, topo)
    fw.start(CONFIG, extra=override)
    run.say("FTP through the firewall, inspect ftp (the ASA's default), PORT and PASV (227)")
    for what, ns, server, via, active in (
        ("active, client inside through PAT (PORT rewritten)", inside, outside_ftp, OUTSIDE_HOST, True),
        ("passive, client inside through PAT", inside, outside_ftp, OUTSIDE_HOST, False),
        ("active, server inside behind the static", outside, inside_ftp, STATIC, True),
        ("passive, server inside behind the static (227 rewritten)", outside, inside_ftp, STATIC, False),
    ):
        t = fetch(run, ns, server, via, "file.bin", what, active=active, limit=MODES_LIMIT)
        same = "match" if t.sent_sha == t.received_sha else "differ"
        run.check(f"{what}: complete", t.complete, f"{t.received} of {t.sent} bytes, sha256 {same}")
    lines = fw.new_log()
    show_lines(run, lines, r"-303002:", most=4, what="303002")
    run.check("the inspection logged each transfer (303002)", sum("-303002:" in line for line in lines) >= 4)
    code = fw.stop()
    run.check("statewall run exits cleanly", code == 0, f"exit code {code}")

    long_what = f"curl -T long.bin (STOR, passive) at {LONG_RATE}B/s, client inside through PAT"
    long_file = os.path.join(run.lab.workdir(), "long.bin")
    make_file(long_file, LONG_BYTES, seed=3)
    run.say(f"broken: timeout conn {IDLE} s, data activity does not refresh the control connection")
    fw = Firewall(run, topo, role="fw-off")
    fw.start(CONFIG, extra=[*override, "--ftp-data-refreshes-control", "off"])
    t = store(run, inside, outside_ftp, long_file, "long-off.bin", long_what, STALL_LIMIT)
    if t.received == t.sent:
        run.say("    (the server stored every byte; its 226 never reached the client)")
    lines = fw.new_log()
    idle = show_lines(run, lines, r"-302014:.*/21 .*Idle Timeout", most=1)
    refused = show_lines(run, lines, r"-106015:.*from 198\.51\.100\.20/21 ", most=1, what="106015")
    run.check("curl never hears the transfer finish", t.code != 0, f"curl exit {t.code}")
    run.check("the control connection idled out mid-transfer", idle >= 1, f"{idle} lines")
    run.check("the server's reply on it was refused", refused >= 1, f"{refused} lines")
    code = fw.stop()
    run.check("statewall run exits cleanly", code == 0, f"exit code {code}")

    run.say(
        f"fixed: timeout conn {IDLE} s, every data packet refreshes the control connection (as ip_masq_ftp)"
    )
    fw = Firewall(run, topo, role="fw-on")
    fw.start(CONFIG, extra=override)
    t = store(run, inside, outside_ftp, long_file, "long-on.bin", long_what, LONG_LIMIT)
    lines = fw.new_log()
    same = "match" if t.sent_sha == t.received_sha else "differ"
    run.check("the long transfer completes", t.complete, f"{t.received} of {t.sent} bytes, sha256 {same}")
    run.check(
        "the transfer outlasted the idle timeout",
        t.seconds > IDLE,
        f"{t.seconds:.1f} s > timeout conn {IDLE} s",
    )
    idle = [line for line in lines if "-302014:" in line and "Idle Timeout" in line and "/21 " in line]
    run.check("the control connection did not idle out", not idle, f"{len(idle)} lines")
    show_lines(run, lines, r"-303002:", most=1)
    code = fw.stop()
    run.check("statewall run exits cleanly", code == 0, f"exit code {code}")

    linux_box(run, topo, inside, outside, outside_ftp, long_file)


# The seed's own Linux box (tests/configs/seed004-netmax.rules): the 2.4 ruleset for passive-FTP clients
# behind NAT with the FTP helper, and the 2.2 masquerading timeouts, the tcp one shortened from 7200 s.
NETMAX = f"""\
#@statewall hostname netmax
#@statewall interface inside dev eth1 address 192.168.0.1/24
#@statewall interface outside dev eth0 address 198.51.100.7/24
ipchains -M -S {IDLE} 10 160
iptables -t raw -A PREROUTING -i eth1 -p tcp --dport 21 -j CT --helper ftp
iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A FORWARD -i eth1 -s 192.168.0.0/24 -p tcp --sport 1025:65535 --dport 21 -j ACCEPT
iptables -A FORWARD -i eth1 -s 192.168.0.0/24 -p tcp --sport 1025:65535 --dport 1025:65535 -j ACCEPT
iptables -A FORWARD -i eth0 -p tcp -d 192.168.0.0/24 --dport 6000:6009 -j DROP
iptables -P FORWARD DROP
"""


def linux_box(run: ScenarioRun, topo, inside, outside, outside_ftp: FtpServer, long_file: str) -> None:
    """The same story on the seed's NetMAX ruleset (statewall's iptables path, conntrack's words)."""
    # The server still retransmits the 226 of the broken case to a mapping that is gone; end that.
    outside.run(["ss", "-K", "-t", "sport = :21"], timeout=10, check=False)
    what = f"curl -T long.bin (STOR, passive) at {LONG_RATE}B/s, client inside masqueraded"
    for refresh in ("off", "on"):
        how = "data does not refresh" if refresh == "off" else "data refreshes (as ip_masq_ftp)"
        run.say(
            f"the seed's Linux box: NetMAX ruleset, ipchains -M -S {IDLE} 10 160, {how} the control entry"
        )
        fw = Firewall(run, topo, role=f"netmax-{refresh}")
        fw.start(NETMAX, extra=["--ftp-data-refreshes-control", refresh])
        if refresh == "off":
            for active in (True, False):
                label = f"{'active' if active else 'passive'}, client inside masqueraded (CT --helper ftp)"
                t = fetch(run, inside, outside_ftp, OUTSIDE_HOST, "file.bin", label, active=active,
                          limit=MODES_LIMIT)  # fmt: skip
                run.check(f"{label}: complete", t.complete, f"{t.received} of {t.sent} bytes")
            fw.new_log()
        t = store(run, inside, outside_ftp, long_file, f"long-netmax-{refresh}.bin", what,
                  STALL_LIMIT if refresh == "off" else LONG_LIMIT)  # fmt: skip
        lines = fw.new_log()
        gone = [
            line for line in lines if "[DESTROY]" in line and "dport=21 " in line and "ESTABLISHED" in line
        ]
        if refresh == "off":
            show_lines(run, gone, r".", most=1)
            stray = show_lines(run, lines, r"\[NEW\] tcp .* sport=21 .*\[UNREPLIED\]", most=1)
            run.check("conntrack: curl never hears the transfer finish", t.code != 0, f"curl exit {t.code}")
            run.check(
                "conntrack: the control entry expired mid-transfer", len(gone) >= 1, f"{len(gone)} lines"
            )
            run.check("conntrack: the server's reply is a stranger now", stray >= 1, f"{stray} lines")
            outside.run(["ss", "-K", "-t", "sport = :21"], timeout=10, check=False)
        else:
            same = "match" if t.sent_sha == t.received_sha else "differ"
            run.check(
                "conntrack: the long transfer completes",
                t.complete,
                f"{t.received} of {t.sent} bytes, sha256 {same}",
            )
            run.check("conntrack: the control entry lived through it", not gone, f"{len(gone)} expired")
        code = fw.stop()
        run.check("statewall run exits cleanly", code == 0, f"exit code {code}")
