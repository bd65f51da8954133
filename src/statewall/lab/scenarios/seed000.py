"""``seed000``: FTP uploads through an ASA 8.2 die on 419001 (MSS exceeded); solutions A and B fix them.

The seed's network, with real stacks::

    client 10.0.0.2 --- router --- inside 10.0.0.1 [statewall, ASA 8.2(1)] outside 192.168.9.30 --- server
                        (nftables: SYN-ACK MSS -> 1460)                                      192.168.9.2
                                                                                     (advmss 1390 back)

The FTP server (pyftpdlib) advertises MSS 1390: its route back to the firewall's PAT address carries
``advmss 1390``. A router on the inside rewrites the MSS of SYN-ACKs on their way to the client to 1460
(the kind of middlebox that made the seed's client believe 1460), so the client (timestamps off: its
segments carry exactly MSS bytes) sends 1460-byte segments. The rewrite is a raw nftables payload
write (``@th,176,16 set 1460`` where the first option is an MSS): the kernel's ``tcp option maxseg
size set`` and ``TCPMSS`` refuse to raise an MSS ("increase can cause connection to stall",
nft_exthdr.c). A raw write leaves the TCP checksum alone, which is right only for a packet whose
checksum is still partial: the firewall's SYN-ACKs are, with offloads, so this scenario always runs
the firewall with offloads (``--no-offload`` is ignored, saying why).

The firewall holds the server to the 1390 it announced; before ASA 9.0 ``exceed-mss`` drops
by default, so every full segment is dropped with the seed's line ``%ASA-4-419001: ... reason: MSS
exceeded, MSS 1390, data 1460`` and curl's upload (STOR: the client sends the full segments) stalls
until its time limit. Then the configuration is reloaded (``statewall ctl reload``, connections kept)
with solution A (``sysopt connection tcpmss minimum 1460``), then with solution B (the seed's
access-list / class-map / tcp-map / policy-map / service-policy transcript, verbatim), and the same
upload completes each time, byte for byte.

Offloads: the client's TSO super-packets reach the engine whole with ``gso_size`` 1460 and the MSS
check judges that segment size (docs/live.md): the failure reproduces with offloads on.
"""

from __future__ import annotations

import os
import re

from ..topology import FirewallTopology, Side
from . import ScenarioRun, scenario
from ._seedlab import (
    Firewall,
    FtpServer,
    Transfer,
    curl_ftp,
    file_facts,
    make_file,
    nft,
    nft_counter,
    show_lines,
)

# The seed's configuration as typed on the firewall (prompts and all); the lab declares the release.
SEED_CONFIG = """\
pixfirewall(config)#interface Ethernet0
pixfirewall(config-if)#speed 100
pixfirewall(config-if)#duplex full
pixfirewall(config-if)#nameif outside
pixfirewall(config-if)#security-level 0
pixfirewall(config-if)#ip address 192.168.9.30 255.255.255.0
pixfirewall(config-if)#exit
pixfirewall(config)#interface Ethernet1
pixfirewall(config-if)#speed 100
pixfirewall(config-if)#duplex full
pixfirewall(config-if)#nameif inside
pixfirewall(config-if)#security-level 100
pixfirewall(config-if)#ip address 10.0.0.1 255.255.255.0
pixfirewall(config-if)#exit
pixfirewall(config)#global (outside) 1 interface
pixfirewall(config)#nat (inside) 1 10.0.0.0 255.0.0.0
pixfirewall(config)#route outside 0.0.0.0 0.0.0.0 192.168.9.2 1
"""

SOLUTION_A = "firewall(config)#sysopt connection tcpmss minimum 1460\n"

SOLUTION_B = """\
pixfirewall(config)#access-list ftp-list permit tcp host 10.0.0.2 host 192.168.9.2
pixfirewall(config)#
pixfirewall#configure terminal
pixfirewall(config)#
pixfirewall(config)#class-map ftp-map
pixfirewall(config-cmap)#match access-list ftp-list
pixfirewall(config-cmap)#exit
pixfirewall(config)#tcp-map mss-map
pixfirewall(config-tcp-map)#exceed-mss allow
pixfirewall(config-tcp-map)#exit
pixfirewall(config)#policy-map ftp-map
pixfirewall(config-pmap)#class ftp-map
pixfirewall(config-pmap-c)#set connection advanced-options mss-map
pixfirewall(config-pmap-c)#exit
pixfirewall(config-pmap)#exit
pixfirewall(config)#service-policy ftp-map interface outside
pixfirewall#
"""

CLIENT, SERVER, PAT = "10.0.0.2", "192.168.9.2", "192.168.9.30"
ROUTER = "10.0.0.254"
SERVER_MSS = 1390
FILE_BYTES = 8 << 20
STALL_LIMIT = 10  # seconds curl gets in the broken case (the upload stalls at its first full segment)
FIX_LIMIT = 60

# On the router, SYN-ACKs towards the client leave with MSS 1460 (the middlebox of the story). Linux
# puts MSS first among the options (kind 2, length 4 at byte 20 of the TCP header).
ROUTER_NFT = """\
table inet sw_mss {
  chain c { type filter hook forward priority mangle; policy accept;
    oifname "c0" tcp flags & (syn | ack) == (syn | ack) @th,160,16 0x0204 counter @th,176,16 set 1460
  }
}
"""


def build(run: ScenarioRun) -> tuple[FirewallTopology, object, object, object]:
    lab = run.lab
    inside = Side("inside", "10.0.0.1/24", ROUTER)
    outside = Side("outside", "192.168.9.30/24", SERVER, gateway=False)
    topo = FirewallTopology(lab, (inside, outside)).build()
    router, server = topo.host("inside"), topo.host("outside")
    client = lab.netns("client")
    lab.veth(client, "eth0", router, "c0")
    client.addr("eth0", f"{CLIENT}/24")
    client.route("default", via="10.0.0.1")
    # Segments carry exactly MSS bytes without timestamps (the seed's "data 1460"); no MTU probing.
    client.sysctl("net.ipv4.tcp_timestamps", 0)
    client.sysctl("net.ipv4.tcp_mtu_probing", 0)
    # The router answers ARP for the client on the firewall's side and for the firewall on the client's.
    router.sysctl("net.ipv4.ip_forward", 1)
    for key in ("all", "default", "eth0", "c0"):
        router.sysctl(f"net.ipv4.conf.{key}.rp_filter", 0)
    for ifname in ("eth0", "c0"):
        router.sysctl(f"net.ipv4.conf.{ifname}.proxy_arp", 1)
        router.sysctl(f"net.ipv4.neigh.{ifname}.proxy_delay", 0)
    router.route(f"{CLIENT}/32", dev="c0")
    nft(router, ROUTER_NFT)
    # The server's route back to the firewall's PAT address advertises MSS 1390.
    server.route(f"{PAT}/32", dev="eth0", advmss=SERVER_MSS)
    return topo, client, router, server


def data_conn(fw: Firewall) -> str:
    """``show conn detail`` of the newest FTP data connection (not on port 21)."""
    entries: list[list[str]] = []
    for line in fw.ctl("show conn detail").splitlines()[1:]:
        if not line.startswith(" "):
            entries.append([])
        if entries:
            entries[-1].append(line)
    data = [e for e in entries if f"{SERVER}/21 " not in e[0]]
    return "\n".join(data[-1]) if data else ""


def upload(
    run: ScenarioRun, client, ftp: FtpServer, local: str, name: str, limit: float, during=None
) -> Transfer:
    """curl uploads ``local`` as ``name`` (STOR, passive); what left and what the server stored.

    With ``during``, curl is held to 4 MB/s so that the firewall can be looked at mid-transfer."""
    size, sha = file_facts(local)
    extra = ("--limit-rate", "4M") if during is not None else ()
    code, secs, err = curl_ftp(
        run, client, f"ftp://{SERVER}/{name}", upload=local, max_time=limit, extra=extra, during=during
    )
    got, got_sha = file_facts(ftp.path(name))
    what = f"curl -T upload.bin ftp://{SERVER}/{name}"
    t = Transfer(what, size, sha, got, got_sha, code, secs, f" ({err})" if code and err else "")
    t.report(run)
    return t


@scenario(
    "seed000", "seed 000: FTP upload through ASA 8.2 stalls on 419001 (MSS exceeded); solutions A and B"
)
def seed000(run: ScenarioRun) -> None:
    topo, client, router, server = build(run)
    run.say(
        f"topology: client {CLIENT} - router (SYN-ACK MSS to 1460) - statewall - server {SERVER} "
        "(advmss 1390)"
    )
    if not run.offload:
        run.say(
            "  (offloads stay on: the router raises the MSS with a raw nftables payload write, which leaves "
            "the TCP checksum alone; only a SYN-ACK that carries a partial checksum, as the firewall's TUN "
            "passes it with offloads, is completed after that write. The kernel's own 'tcp option maxseg "
            "size set' and TCPMSS never raise an MSS.)"
        )
    fw = Firewall(run, topo)
    fw.start(SEED_CONFIG, extra=["--asa-version", "8.2(1)"], offload=True)
    ftp = FtpServer(run, server, SERVER)
    local = os.path.join(run.lab.workdir(), "upload.bin")
    make_file(local, FILE_BYTES)

    run.say("broken: the seed's configuration on ASA 8.2(1), where exceed-mss drop is the default")
    t = upload(run, client, ftp, local, "broken.bin", STALL_LIMIT)
    lines = fw.new_log()
    n = show_lines(run, lines, r"-419001:", what="419001")
    rewrites = sum(count for _, count in nft_counter(router, "sw_mss"))
    run.check("the router told the client MSS 1460", rewrites >= 2, f"{rewrites} SYN-ACKs rewritten")
    run.check("the upload stalls", not t.complete, f"{t.received} of {t.sent} bytes arrived")
    run.check(
        "419001 'MSS exceeded, MSS 1390, data 1460' is logged",
        any("MSS exceeded, MSS 1390, data 1460" in line for line in lines),
        f"{n} lines",
    )
    # The stalled connection outlives curl (its FIN waits behind the dropped data) and keeps the
    # settings it was built with across the reloads: its retransmissions are not the fixes' business.
    stalled = {m.group(1) for line in lines if (m := re.search(r"inside:10\.0\.0\.2/(\d+) ", line))}

    for label, title, fix, name in (
        ("solution A", "sysopt connection tcpmss minimum 1460", SOLUTION_A, "fixed-a.bin"),
        ("solution B", "the seed's access-list, class-map, tcp-map mss-map (exceed-mss allow), policy-map "
         "and service-policy, verbatim", SOLUTION_B, "fixed-b.bin"),
    ):  # fmt: skip
        run.say(f"fixed by {label}: {title}")
        answer = fw.reload(SEED_CONFIG + fix).splitlines()
        run.say(f"    statewall ctl reload: {answer[0]}; {answer[1]}")
        seen: list[str] = []
        t = upload(
            run, client, ftp, local, name, FIX_LIMIT, during=lambda seen=seen: seen.append(data_conn(fw))
        )
        drops = [line for line in fw.new_log() if "-419001:" in line]
        old = [line for line in drops if re.search(r"inside:10\.0\.0\.2/(\d+) ", line).group(1) in stalled]
        if old:
            run.say(f"    ({len(old)} more 419001 for the stalled connection, which keeps its old settings)")
        drops = [line for line in drops if line not in old]
        same = "match" if t.sent_sha == t.received_sha else "differ"
        run.check(
            f"{label}: the upload completes", t.complete, f"{t.received} of {t.sent} bytes, sha256 {same}"
        )
        run.check(f"{label}: no 419001 for the new connections", not drops, f"{len(drops)} lines")
        detail = seen[0] if seen else ""
        run.say("    statewall ctl show conn detail, mid-transfer (the data connection):")
        for line in detail.splitlines():
            run.say("      " + line)
        if fix is SOLUTION_A:
            # The firewall raised the server's MSS option to 1460 and holds it to that.
            ok = "outside 1460" in detail and "tcp-map default" in detail
        else:
            ok = "class ftp-map (interface outside)" in detail and "tcp-map mss-map" in detail
        run.check(f"{label}: the data connection runs with it", ok)
    code = fw.stop()
    run.check("statewall run exits cleanly", code == 0, f"exit code {code}")
