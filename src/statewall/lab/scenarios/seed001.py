"""``seed001``: a download over a smaller-MTU tunnel stalls where ICMP "fragmentation needed" is
blocked (a PMTUD black hole); the seed's TCPMSS clamp to 1347 makes it work.

::

    client 192.168.1.10 --- [statewall] --- router ==MTU 1400== ... --- server 198.51.100.10
                          inside   outside  (drops its own ICMP         (HTTP, python -m http.server)
                                             frag-needed)

The link between the firewall and the router has MTU 1400 and stands in for the IPsec tunnel of the
seed (a real xfrm tunnel would add nothing the firewall sees: its packets are the inner ones). The
router drops the ICMP "fragmentation needed" it generates (nftables, output and forward hooks), as the
elements of the seed's path did, so the server never learns the path MTU.

statewall plays the seed's appliance with an iptables ruleset (the dialect statewall reads for Linux
boxes; the tunnel is its interface ``outside`` on device ``ipsec0``): masquerading, no clamp. The
client downloads a file over HTTP with curl; the server's full segments (1448 bytes of data, 1500-byte
packets) do not fit the tunnel and vanish, and the download stalls until curl's time limit.

The fix is the seed's own rule, verbatim with its prompt, ``iptables -t mangle -A POSTROUTING -o ipsec0
-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1347`` (1347 = 1500 - (73 + 20 + 60), which
``statewall mss --mtu 1500 --ipsec aes256-sha1`` works out), added with ``statewall ctl reload``: the
client's SYN leaves through ipsec0 with MSS 1347 (``statewall ctl capture outside`` shows it), the
server sends 1387-byte packets and the same download completes, byte for byte; ``statewall ctl show
iptables mangle`` counts the clamped SYN. Then the same appliance written in nftables (masquerade in an
``ip nat`` table) with the seed's clamp as nft writes it, ``oifname "ipsec0" ... tcp flags syn / syn,rst
tcp option maxseg size set 1347`` in an inet table at the mangle priority of POSTROUTING: the download
completes and the SYN leaves with MSS 1347. Then
the same site with an ASA: its default ``sysopt connection tcpmss 1380`` would still leave 1420-byte
packets, ``sysopt connection tcpmss 1347`` makes the download work.
"""

from __future__ import annotations

import os
import re
import time

from ... import mss
from ..netns import wait_for
from ..topology import FirewallTopology, Side
from . import ScenarioRun, scenario
from ._seedlab import PY, Firewall, Transfer, curl_ftp, file_facts, make_file, nft, nft_counter, show_lines

CLIENT, SERVER, ROUTER = "192.168.1.10", "198.51.100.10", "203.0.113.254"
TUNNEL_MTU = 1400
FILE_BYTES = 32 << 20
STALL_LIMIT = 10
FIX_LIMIT = 60

# The appliance of the seed as statewall reads a Linux box: interfaces from its header, the tunnel as
# the interface "outside" on device ipsec0, masquerading to it; the seed's rule is added as the fix.
SOPHOS = """\
#@statewall hostname XGS116_XN02
#@statewall interface inside dev Port1 address 192.168.1.1/24
#@statewall interface outside dev ipsec0 address 203.0.113.1/24 mtu 1400
#@statewall route 198.51.100.0/24 via 203.0.113.254 dev outside
iptables -t nat -A POSTROUTING -o ipsec0 -j MASQUERADE
"""
SEED_RULE = (
    "XGS116_XN02_SFOS 19.5.2 MR-2-Build624# iptables -t mangle -A POSTROUTING -o ipsec0 -p tcp -m tcp "
    "--tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1347\n"
)

# The same appliance written in nftables, and the seed's clamp as nft writes it (one rule per family in
# an inet table at the mangle priority of POSTROUTING, where the iptables rule sat).
SOPHOS_NFT = """\
#@statewall hostname XGS116_XN02
#@statewall interface inside dev Port1 address 192.168.1.1/24
#@statewall interface outside dev ipsec0 address 203.0.113.1/24 mtu 1400
#@statewall route 198.51.100.0/24 via 203.0.113.254 dev outside
table ip nat {
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname "ipsec0" masquerade
\t}
}
"""
SEED_RULE_NFT = """\
table inet mangle {
\tchain postrouting {
\t\ttype filter hook postrouting priority mangle; policy accept;
\t\toifname "ipsec0" meta nfproto ipv4 tcp flags syn / syn,rst counter tcp option maxseg size set 1347
\t}
}
"""

# The same site with an ASA, for the ASA's form of the clamp.
ASA = """\
: statewall lab seed001: the site's firewall, PAT to the outside, the remote network through the tunnel
ASA Version 9.1(1)
hostname site-fw
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 203.0.113.1 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 192.168.1.1 255.255.255.0
global (outside) 1 interface
nat (inside) 1 0.0.0.0 0.0.0.0
route outside 198.51.100.0 255.255.255.0 203.0.113.254 1
"""

# The router loses its own "fragmentation needed" messages (locally generated: output hook; forward
# covers any from further along).
BLACK_HOLE = """\
table inet sw_pmtud {
  chain out { type filter hook output priority 0; policy accept;
    icmp type destination-unreachable icmp code frag-needed counter drop
  }
  chain c { type filter hook forward priority 0; policy accept;
    icmp type destination-unreachable icmp code frag-needed counter drop
  }
}
"""


def build(run: ScenarioRun):
    lab = run.lab
    inside = Side("inside", "192.168.1.1/24", CLIENT)
    outside = Side("outside", "203.0.113.1/24", ROUTER, mtu=TUNNEL_MTU, gateway=False)
    topo = FirewallTopology(lab, (inside, outside)).build()
    client, router = topo.host("inside"), topo.host("outside")
    # The firewall namespace's kernel sends what the engine routes to the remote network to the router.
    topo.fw.route("198.51.100.0/24", via=ROUTER)
    server = lab.netns("server")
    lab.veth(server, "eth0", router, "s0")
    server.addr("eth0", f"{SERVER}/24")
    server.route("default", via="198.51.100.1")
    # Classic PMTUD only: no probing that would find the MTU by itself after a black hole.
    server.sysctl("net.ipv4.tcp_mtu_probing", 0)
    router.addr("s0", "198.51.100.1/24")
    router.sysctl("net.ipv4.ip_forward", 1)
    for key in ("all", "default"):
        router.sysctl(f"net.ipv4.conf.{key}.rp_filter", 0)
    nft(router, BLACK_HOLE)
    return topo, client, router, server


def server_mss(server) -> str:
    """What the server's TCP says about its connection to port 80 (``ss -ti``: mss, pmtu, ...).

    Asked again for up to 2 s when the answer has no ``mss`` yet (the connection between its
    handshake and its first segment, or ss racing the kernel's socket dump)."""
    out = ""
    for _ in range(10):
        out = " ".join(
            server.run(["ss", "-tinH", "state", "established", "sport = :80"], timeout=10).stdout.split()
        )
        if re.search(r"\bmss:\d+", out):
            break
        time.sleep(0.2)
    return out


def _mss(seen: list[str]) -> int:
    m = re.search(r"\bmss:(\d+)", seen[0]) if seen else None
    return int(m.group(1)) if m else 0


def _segment(seen: list[str]) -> str:
    # ss's "mss" is the data per segment: the MSS the peer announced less the options always sent.
    return f"{_mss(seen)} data bytes per segment"


def _pmtu(seen: list[str]) -> str:
    m = re.search(r"\bpmtu:(\d+)", seen[0]) if seen else None
    return f"path MTU {m.group(1)} as far as it knows" if m else "path MTU unknown"


def download(run: ScenarioRun, client, url: str, name: str, limit: float, sent: tuple[int, str], during=None):
    out = os.path.join(run.lab.workdir(), name)
    extra = ("--limit-rate", "8M") if during is not None else ()
    code, secs, err = curl_ftp(run, client, url, download=out, max_time=limit, extra=extra, during=during)
    got, got_sha = file_facts(out)
    t = Transfer(
        f"curl {url}", sent[0], sent[1], got, got_sha, code, secs, f" ({err})" if code and err else ""
    )
    t.report(run)
    return t


def syn_mss(pcap: str) -> int | None:
    """The MSS option of the first SYN (without ACK) in ``pcap``: what the server was told."""
    import dpkt

    from ...pcapio import read_packets

    for _ts, data in read_packets(pcap):
        tcp = dpkt.ip.IP(data).data
        if isinstance(tcp, dpkt.tcp.TCP) and tcp.flags & dpkt.tcp.TH_SYN and not tcp.flags & dpkt.tcp.TH_ACK:
            for kind, value in dpkt.tcp.parse_opts(tcp.opts):
                if kind == dpkt.tcp.TCP_OPT_MSS and len(value) == 2:
                    return int.from_bytes(value, "big")
    return None


def fixed(run: ScenarioRun, fw: Firewall, client, router, url: str, name: str, sha: str, clamp: int) -> None:
    """A download that must complete, the server told ``clamp``, nothing lost in the tunnel."""
    holes = sum(n for _, n in nft_counter(router, "sw_pmtud"))
    pcap = os.path.join(run.lab.workdir(), f"{name}.pcap")
    fw.ctl(f"capture outside start {pcap}")
    t = download(run, client, url, name, FIX_LIMIT, (FILE_BYTES, sha))
    fw.ctl("capture outside stop")
    after = sum(n for _, n in nft_counter(router, "sw_pmtud"))
    same = "match" if t.sent_sha == t.received_sha else "differ"
    run.check("the download completes", t.complete, f"{t.received} of {t.sent} bytes, sha256 {same}")
    run.check("no packet needed fragmenting", after == holes, f"{after - holes} more frag-needed dropped")
    told = syn_mss(pcap)
    run.say(f"    statewall ctl capture outside: the client's SYN left for the server with MSS {told}")
    run.check(f"the server was told MSS {clamp}", told == clamp, f"MSS {told}")


@scenario("seed001", "seed 001: PMTUD black hole behind a 1400-byte tunnel; the seed's TCPMSS clamp (1347)")
def seed001(run: ScenarioRun) -> None:
    lab = run.lab
    topo, client, router, server = build(run)
    run.say(
        f"topology: client {CLIENT} - statewall - router, tunnel MTU {TUNNEL_MTU}, ICMP frag-needed "
        f"dropped - server {SERVER}"
    )
    fw = Firewall(run, topo)
    fw.start(SOPHOS)
    root = os.path.join(lab.workdir(), "www")
    os.makedirs(root)
    sha = make_file(os.path.join(root, "big.bin"), FILE_BYTES)
    web = server.popen(
        [PY, "-m", "http.server", "80", "--bind", SERVER, "--directory", root],
        stdout=open(os.devnull, "w"),  # noqa: SIM115 -- the lab ends the process; the file goes with it
        stderr=open(os.path.join(lab.workdir(), "http.log"), "w"),  # noqa: SIM115
    )
    wait_for(
        lambda: web.poll() is None and server.run(["ss", "-Hltn", "sport = :80"], check=False).stdout.strip(),
        timeout=15,
        what="the HTTP server",
    )
    url = f"http://{SERVER}/big.bin"

    run.say(
        "broken: the appliance's iptables ruleset (masquerade, no clamp): 1500-byte packets, 1400-byte tunnel"
    )
    seen: list[str] = []
    t = download(
        run, client, url, "broken.bin", STALL_LIMIT, (FILE_BYTES, sha),
        during=lambda: seen.append(server_mss(server)),
    )  # fmt: skip
    holes = sum(n for _, n in nft_counter(router, "sw_pmtud"))
    run.check("the download stalls", not t.complete, f"{t.received} of {t.sent} bytes arrived")
    run.check("the router's frag-needed messages were lost", holes > 0, f"{holes} ICMP frag-needed dropped")
    run.say(f"    the server's TCP, mid-transfer (ss -ti): {_segment(seen)}, {_pmtu(seen)}")
    show_lines(run, fw.new_log(), r"\[NEW\] tcp .*dport=80 ", most=1)
    # The server would retransmit the stalled response for many minutes: abort it (RST) so that what
    # follows is about the new download only.
    server.run(["ss", "-K", "-t", "sport = :80"], timeout=10, check=False)

    calc = mss.clamp(1500, "aes256-sha1")
    run.say(
        f"fixed by the seed's rule: MSS {calc.mss} = 1500 - ({calc.ipsec_overhead} + 20 + 60) "
        "(statewall mss --mtu 1500 --ipsec aes256-sha1)"
    )
    run.say(f"    {SEED_RULE.strip()}")
    answer = fw.reload(SOPHOS + SEED_RULE).splitlines()
    run.say(f"    statewall ctl reload: {answer[0]}; {answer[1]}")
    fixed(run, fw, client, router, url, "fixed.bin", sha, calc.mss)
    rules = [line for line in fw.ctl("show iptables mangle").splitlines() if "TCPMSS" in line]
    for line in rules:
        run.say(f"    statewall ctl show iptables mangle: {' '.join(line.split())}")
    packets = int(rules[0].split()[0]) if rules else 0
    run.check("the TCPMSS rule clamped the SYN", packets >= 1, f"{packets} packets")
    code = fw.stop()
    run.check("statewall run exits cleanly", code == 0, f"exit code {code}")

    run.say(f"the same appliance in nftables, fixed by the seed's clamp as nft writes it (MSS {calc.mss})")
    server.run(["ss", "-K", "-t", "sport = :80"], timeout=10, check=False)
    fw = Firewall(run, topo, role="nft")
    fw.start(SOPHOS_NFT)
    for line in SEED_RULE_NFT.strip().splitlines():
        run.say(f"    {line}")
    answer = fw.reload(SOPHOS_NFT + SEED_RULE_NFT).splitlines()
    run.say(f"    statewall ctl reload: {answer[0]}")
    fixed(run, fw, client, router, url, "fixed-nft.bin", sha, calc.mss)
    code = fw.stop()
    run.check("statewall run (nftables) exits cleanly", code == 0, f"exit code {code}")

    run.say(
        f"fixed on an ASA instead: sysopt connection tcpmss {calc.mss} (its default 1380 is not enough here)"
    )
    server.run(["ss", "-K", "-t", "sport = :80"], timeout=10, check=False)
    fw = Firewall(run, topo, role="asa")
    fw.start(ASA + f"sysopt connection tcpmss {calc.mss}\n")
    fixed(run, fw, client, router, url, "fixed-asa.bin", sha, calc.mss)
    code = fw.stop()
    run.check("statewall run (ASA) exits cleanly", code == 0, f"exit code {code}")
