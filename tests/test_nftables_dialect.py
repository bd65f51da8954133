"""The nftables dialect: ``nft list ruleset`` output and ``nft -f`` files read into the neutral model, run
at the kernel's priorities, printed back as ``nft list ruleset`` prints them (checked against nft in a
namespace as root), and refused with ``file:line:col`` where statewall does not model a construct.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP

from statewall import craft
from statewall.config import load_policy
from statewall.dialects.errors import ConfigError
from statewall.dialects.iptables import parse as parse_iptables
from statewall.dialects.nftables import list_ruleset, parse, parse_file, render
from statewall.netfilter import Context, Netfilter
from statewall.packet import decode, str_to_addr

CONFIGS = Path(__file__).parent / "configs"
NFT_FILES = [
    "seed001-nft.nft",
    "nft-host.nft",
    "nft-vmap.nft",
    "firewalld-nftables.nft",
    "docker-29-nftables.nft",
    "nft-sets.nft",
    "nft-commands.nft",
    "kube-proxy-nftables.nft",
    "nft-maps-marks.nft",
    "nft-server.nft",
    "nft-ipsec.nft",
    "podman-netavark.nft",
    "nft-nat-families.nft",
]
SYN, ACK = 0x02, 0x10


def ip(text: str) -> int:
    return str_to_addr(text)[1]


def tcp(src, dst, sport, dport, flags=SYN, *, mss=None):
    v = 6 if ":" in src else 4
    options = craft.tcp_option_mss(mss) if mss is not None else b""
    return decode(craft.tcp_packet(v, ip(src), ip(dst), sport, dport, 1000, 0, flags, 64240, options))


@pytest.mark.parametrize("name", NFT_FILES)
def test_an_nft_ruleset_loads_and_prints_back(name):
    policy = load_policy(CONFIGS / name)
    assert policy.dialect == "nftables"
    said = [w.message.split(":")[0] for w in policy.warnings]
    assert said == (["ipsec"] if name == "nft-ipsec.nft" else [])
    again = parse(render(policy), "again")
    assert render(again) == render(policy)


def _nft_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("nft") is None:
        return False
    return subprocess.run(["unshare", "-n", "nft", "list", "ruleset"], capture_output=True).returncode == 0


@pytest.mark.root
@pytest.mark.skipif(not _nft_available(), reason="needs root, unshare and nft")
@pytest.mark.parametrize("name", NFT_FILES)
def test_the_kernel_lists_an_nft_ruleset_as_statewall_does(name):
    path = CONFIGS / name
    kernel = subprocess.run(
        ["unshare", "-n", "bash", "-c", f"nft -f {path} && nft list ruleset"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert list_ruleset(parse_file(path)) == kernel


def test_seed001_in_nft_clamps_syns_into_the_tunnel_per_family_and_counts_them():
    policy = parse_file(CONFIGS / "seed001-nft.nft")
    nf = Netfilter(policy)
    syn4 = tcp("192.168.1.10", "10.9.0.5", 40000, 443, mss=1460)
    d = nf.traverse("POSTROUTING", syn4, Context("lan", "ipsec0", "NEW"))
    assert [(a.kind, a.args) for a in d.actions] == [("TCPMSS", {"old": 1460, "new": 1347, "added": False})]
    assert syn4.mss() == 1347
    syn6 = tcp("2001:db8:1::10", "2001:db8:9::5", 40000, 443, mss=1440)
    nf.traverse("POSTROUTING", syn6, Context("lan", "ipsec0", "NEW"))
    assert syn6.mss() == 1327
    # nft only lowers an MSS that is there: no option is added (nft_exthdr), unlike xt_TCPMSS.
    bare = tcp("192.168.1.10", "10.9.0.5", 40001, 443)
    assert nf.traverse("POSTROUTING", bare, Context("lan", "ipsec0", "NEW")).actions == []
    assert bare.mss() is None
    # Not toward the tunnel, not a SYN: untouched.
    other = tcp("192.168.1.10", "8.8.8.8", 40002, 443, mss=1460)
    nf.traverse("POSTROUTING", other, Context("lan", "wan", "NEW"))
    assert other.mss() == 1460
    listing = list_ruleset(policy, nf.nft_counters()).splitlines()
    assert listing[3].endswith("counter packets 2 bytes 84 tcp option maxseg size set 1347")  # 44 + 40
    assert listing[4].endswith("counter packets 1 bytes 64 tcp option maxseg size set 1327")


def test_host_ruleset_sets_helpers_nat_reject_and_jumps():
    policy = parse_file(CONFIGS / "nft-host.nft")
    nf = Netfilter(policy)

    def hook(name, pkt, inp, out, state="NEW"):
        return nf.traverse(name, pkt, Context(inp, out, state))

    assert hook("INPUT", tcp("198.51.100.9", "203.0.113.40", 4000, 22), "wan", None).rule.origin.line == 27
    d = hook("INPUT", tcp("203.0.113.9", "203.0.113.40", 4000, 22), "wan", None)
    assert d.verdict == "ACCEPT" and d.rule.origin.text == "tcp dport { 22, 80, 443 } ct state new accept"
    d = hook("INPUT", tcp("203.0.113.9", "203.0.113.40", 4000, 23), "wan", None)
    assert d.verdict == "DROP" and d.rule is None  # the policy, after the log statement's line
    assert d.actions[0].args["text"].startswith("input drop: IN=eth0 OUT= MAC= SRC=203.0.113.9")
    # dnat in the ip nat table; ct status dnat then lets the first packet through forward.
    pkt = tcp("203.0.113.9", "203.0.113.40", 4001, 8080)
    ctx = Context("wan", None, "NEW")
    d = nf.traverse("PREROUTING", pkt, ctx)
    assert [a.kind for a in d.actions] == ["DNAT"] and ctx.ct_nat == {"DNAT"}
    ctx.out_iface = "lan"
    assert nf.traverse("FORWARD", pkt, ctx).rule.origin.text == "ct status dnat accept"
    # LAN out: the jump, the ftp helper statement, reject with tcp reset, the clamp, accept.
    d = hook("FORWARD", tcp("192.168.1.20", "93.184.216.34", 4002, 21), "lan", "wan")
    assert [(a.kind, a.args["helper"]) for a in d.actions] == [("CT", "ftp")] and d.verdict == "ACCEPT"
    d = hook("FORWARD", tcp("192.168.1.20", "93.184.216.34", 4003, 25), "lan", "wan")
    assert d.verdict == "DROP" and d.actions[0].args["reply"] == ("tcp-reset",)
    d = hook("FORWARD", tcp("203.0.113.9", "192.168.1.20", 4004, 80), "wan", "lan")
    assert d.actions[0].args["with"] == "icmp-admin-prohibited"
    assert d.actions[0].args["reply"] == ("icmp", 3, 13)
    # masquerade leaves through eth0 only.
    d = hook("POSTROUTING", tcp("192.168.1.20", "93.184.216.34", 4005, 443), "lan", "wan")
    assert [a.kind for a in d.actions] == ["MASQUERADE"]


def test_base_chains_run_by_priority_around_conntrack_and_beside_iptables_tables():
    # An nft chain at raw + 5 (-295) runs after iptables' raw table (-300), before conntrack (-200);
    # one at filter + 10 after iptables' filter table; mangle - 10 before iptables' mangle.
    text = (
        "#@statewall interface lan address 10.0.0.1/24\n"
        "table ip t {\n"
        "\tchain pre_raw {\n\t\ttype filter hook prerouting priority raw + 5; policy accept;\n"
        '\t\tlog prefix "nft-raw "\n\t}\n'
        "\tchain fwd_late {\n\t\ttype filter hook forward priority filter + 10; policy accept;\n"
        '\t\tlog prefix "nft-late "\n\t}\n'
        "\tchain fwd_early {\n\t\ttype filter hook forward priority mangle - 10; policy drop;\n"
        '\t\tlog prefix "nft-early " accept\n\t}\n'
        "}\n"
    )
    policy = parse(text, "p.nft")
    legacy = parse_iptables(
        "iptables -t mangle -A FORWARD -j LOG --log-prefix 'ipt-mangle '\n"
        "iptables -A FORWARD -j LOG --log-prefix 'ipt-filter '\n"
        "iptables -t raw -A PREROUTING -j LOG --log-prefix 'ipt-raw '\n",
        "i.rules",
    )
    policy.netfilter = legacy.netfilter
    nf = Netfilter(policy)
    pkt = tcp("10.0.0.5", "10.9.9.9", 4000, 80)
    ctx = Context("lan", "lan", "INVALID")
    raw = nf.traverse("PREROUTING", pkt, ctx, Netfilter.before_conntrack("PREROUTING"))
    assert [a.args["text"].split(" ")[0] for a in raw.actions] == ["ipt-raw", "nft-raw"]
    after = nf.traverse("PREROUTING", pkt, ctx, Netfilter.after_conntrack("PREROUTING"))
    assert after.actions == []  # the raw-priority chain does not run again after conntrack
    fwd = nf.traverse("FORWARD", pkt, Context("lan", "lan", "NEW"))
    assert [a.args["text"].split(" ")[0] for a in fwd.actions] == [
        "nft-early",
        "ipt-mangle",
        "ipt-filter",
        "nft-late",
    ]


CHAIN = "table ip f {\n\tchain a {\n\t\ttype filter hook input priority 0;\n\t\t%s\n\t}\n}\n"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "table inet f {\n\tmap m {\n\t\ttype ether_addr : verdict\n\t}\n}\n",
            "3:8",
            "maps of type ether_addr is not modelled",
        ),
        (
            "table inet f {\n\tmap m {\n\t\ttype ipv4_addr : verdict\n"
            "\t\telements = { 10.0.0.0/8 : accept }\n\t}\n}\n",
            "2:6",
            "add 'flags interval' to the map",
        ),
        (CHAIN % "numgen random mod 2 0 accept", "4:23", "numgen other than as a verdict map's key"),
        (CHAIN % "numgen inc mod 0 vmap { 0 : accept }", "4:3", "modulus must not be 0"),
        (CHAIN % "meta mark set meta mark", "4:26", "'|', '^' or '&' and a number expected"),
        (CHAIN % "ip daddr . tcp dport vmap @m", "4:29", "map m does not exist in table f"),
        (
            "table inet f {\n\tmap m {\n\t\ttype ipv4_addr : ether_addr\n\t}\n}\n",
            "3:20",
            "maps of type ether_addr is not modelled",
        ),
        ("table inet f {\n\tflowtable ft {\n\t}\n}\n", "2:12", "flowtable ft: no hook"),
        (CHAIN % "ct mark vmap { 1 : accept }", "4:11", "vmap on this key"),
        (CHAIN % "tcp dport vmap @ports", "4:18", "map ports does not exist in table f"),
        (
            "table ip f {\n\tchain a {\n\t\tjump b\n\t}\n\tchain b {\n\t\tjump a\n\t}\n}\n",
            "6:8",
            "chains jump in a loop: a -> b -> a",
        ),
        ("table ip f {\n\tchain a {\n\t\tjump nowhere\n\t}\n}\n", "3:8", "chain 'nowhere' does not exist"),
        (CHAIN % "ip saddr 10.0.0.300 drop", "4:12", "bad address"),
        (CHAIN % "snat to 1.2.3.4", "4:3", "only valid in a nat chain"),
        (
            "table ip f {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t}\n"
            "\tchain a {\n\t\tadd @s { ip saddr }\n\t}\n}\n",
            "7:7",
            "set s is an interval set: no updates from the packet path",
        ),
        (
            "table ip f {\n\tset s {\n\t\ttype ipv4_addr . inet_service\n\t}\n"
            "\tchain a {\n\t\tip saddr @s\n\t}\n}\n",
            "6:12",
            "set s holds ipv4_addr . inet_service, the key is ipv4_addr",
        ),
        (CHAIN % "limit rate 10 kbytes/second burst 5 packets", "4:39", "takes its burst in bytes"),
        ("add rule inet f input accept\n", "1:15", "table inet f does not exist"),
        ("add table inet f\nadd rule inet f input accept\n", "2:17", "chain input does not exist"),
        ("add table ip f\nadd chain ip f c\nadd rule ip f c position 3 accept\n", "3:17", "rule position"),
        ("add table ip f\ncreate chain ip f c\ncreate chain ip f c\n", "3:19", "already exists"),
        ("add table ip f\ndelete table ip f\n", "2:1", "the delete command"),
        (
            'table netdev n {\n\tchain c {\n\t\ttype filter hook ingress device "eth0" priority 0;\n'
            "\t\tct state new drop\n\t}\n}\n",
            "4:3",
            "not available in a netdev table",
        ),
        (
            "table netdev n {\n\tchain c {\n\t\ttype filter hook ingress priority 0;\n\t}\n}\n",
            "3:28",
            "hook ingress needs its device",
        ),
        (CHAIN % "ip saddr . tcp dport { 10.0.0.1 . 22 : accept }", "4:40", "maps other than verdict maps"),
    ],
)
def test_what_nft_dialect_does_not_model_or_the_kernel_refuses_is_located(text, where, message):
    with pytest.raises(ConfigError) as e:
        parse(text, "x.nft")
    assert str(e.value).startswith(f"x.nft:{where}: ") and message in str(e.value)


def test_verdict_maps_dispatch_on_state_interface_protocol_and_port():
    nf = Netfilter(parse_file(CONFIGS / "nft-vmap.nft"))

    def verdict(pkt, inp="eth0", state="NEW"):
        d = nf.traverse("INPUT", pkt, Context(inp, None, state))
        return d.verdict, d.chain

    assert verdict(tcp("203.0.113.9", "203.0.113.40", 4000, 443), state="ESTABLISHED") == ("ACCEPT", "input")
    assert verdict(tcp("203.0.113.9", "203.0.113.40", 4000, 443), state="INVALID") == ("DROP", "input")
    assert verdict(tcp("203.0.113.9", "203.0.113.40", 4000, 22)) == ("ACCEPT", "input")
    assert verdict(tcp("203.0.113.9", "203.0.113.40", 4000, 8042)) == ("DROP", "input")
    assert verdict(tcp("203.0.113.9", "203.0.113.40", 4000, 443)) == ("DROP", "input")  # the policy
    # eth1 jumps to lan: DNS accepted there; anything else returns and meets the rest of input.
    dns = decode(craft.udp_packet(4, ip("192.168.1.5"), ip("192.168.1.1"), 5000, 53, b"q"))
    assert verdict(dns, inp="eth1") == ("ACCEPT", "lan")
    assert verdict(tcp("192.168.1.5", "192.168.1.1", 4000, 80), inp="eth1") == ("ACCEPT", "input")


def test_anonymous_sets_of_protocols_and_interface_names():
    nf = Netfilter(parse_file(CONFIGS / "nft-vmap.nft"))
    syn = tcp("192.168.1.5", "8.8.8.8", 4000, 443)
    assert nf.traverse("FORWARD", syn, Context("eth1", "eth0", "NEW")).verdict == "ACCEPT"
    assert nf.traverse("FORWARD", syn, Context("wg0", "eth0", "NEW")).verdict == "ACCEPT"
    assert nf.traverse("FORWARD", syn, Context("eth2", "eth0", "NEW")).verdict == "DROP"
    ping = decode(craft.icmp_echo(4, ip("203.0.113.9"), ip("192.168.1.5"), 1, 1))
    assert nf.traverse("FORWARD", ping, Context("eth0", "eth1", "NEW")).verdict == "ACCEPT"


def test_firewalld_nftables_backend_zones_rpfilter_and_icmpx_reject():
    nf = Netfilter(parse_file(CONFIGS / "firewalld-nftables.nft"))

    def inp(pkt, dev, state="NEW"):
        ctx = Context(dev, None, "INVALID")
        raw = nf.traverse("PREROUTING", pkt, ctx, Netfilter.before_conntrack("PREROUTING"))
        if raw.verdict != "ACCEPT":
            return raw
        ctx.ctstate = state
        return nf.traverse("INPUT", pkt, ctx)

    assert inp(tcp("10.0.2.2", "10.0.2.15", 4000, 22), "enp0s3").verdict == "ACCEPT"
    d = inp(tcp("10.0.2.2", "10.0.2.15", 4000, 25), "enp0s3")
    assert d.verdict == "DROP" and d.actions[0].args["reply"] == ("icmp", 3, 13)  # icmpx admin-prohibited
    d = inp(tcp("2001:db8:2::1", "2001:db8:2::15", 4000, 25), "enp0s3")
    assert d.actions[0].args["reply"] == ("icmp", 1, 1)  # the same reject, in IPv6's words
    dns = decode(craft.udp_packet(4, ip("192.168.122.50"), ip("192.168.122.1"), 5000, 53, b"q"))
    assert inp(dns, "virbr0").rule.origin.text == "udp dport domain ct state new,untracked accept"
    # IPv6 rpfilter: a source that no route sends back out of enp0s8 is dropped before conntrack.
    d = inp(tcp("2001:db8:99::1", "2001:db8:2::15", 4000, 22), "enp0s8")
    assert d.verdict == "DROP" and d.rule.origin.text == "meta nfproto ipv6 fib saddr . iif oif missing drop"
    assert inp(tcp("2001:db8:99::1", "2001:db8:2::15", 4000, 22), "enp0s3").verdict == "ACCEPT"


def test_firewalld_rpfilter_with_the_mark_in_its_lookup():
    # firewalld 1.x writes its IPv6 rpfilter as `fib saddr . mark . iif oif missing`: the mark can only
    # choose a table through `ip rule fwmark`, which statewall does not model (said as a warning); the
    # lookup is the one table's, as for the form without the mark, and the rule prints back as written.
    text = (
        "table inet firewalld {\n\tchain filter_PREROUTING {\n"
        "\t\ttype filter hook prerouting priority filter + 10; policy accept;\n"
        "\t\tmeta nfproto ipv6 fib saddr . mark . iif oif missing drop\n\t}\n}\n"
    )
    policy = parse(text, "fw.nft")
    [w] = policy.warnings
    assert w.origin.line == 4 and "ip rule fwmark" in w.message
    assert "fib saddr . mark . iif oif missing drop" in render(policy)
    assert render(parse(render(policy), "again")) == render(policy)
    nf = Netfilter(policy)
    ctx = Context("eth0", None, "INVALID")
    d = nf.traverse("PREROUTING", tcp("2001:db8:99::1", "2001:db8:2::15", 4000, 22), ctx)
    assert d.verdict == "DROP"  # no route back at all: the same answer as without the mark
    assert nf.traverse("PREROUTING", tcp("192.0.2.1", "192.0.2.2", 4000, 22), ctx).verdict == "ACCEPT"
    with pytest.raises(ConfigError, match="not modelled"):
        parse(text.replace("oif missing drop", "type local drop"), "fw.nft")


def test_tables_of_other_families_are_said_and_skipped():
    policy = parse(
        "table bridge filter {\n\tchain INPUT {\n\t\ttype filter hook input priority -200;\n\t}\n}\n", "b.nft"
    )
    assert policy.nft_tables == []
    assert [w.message.split(":")[0] for w in policy.warnings][:1] == ["table bridge filter"]


def test_docker_nftables_backend_publishes_masquerades_and_drops_direct_access():
    nf = Netfilter(parse_file(CONFIGS / "docker-29-nftables.nft"))
    syn = tcp("198.51.100.7", "203.0.113.10", 40000, 8080)
    ctx = Context("eth0", None, "INVALID")
    assert nf.traverse("PREROUTING", syn, ctx, Netfilter.before_conntrack("PREROUTING")).verdict == "ACCEPT"
    ctx.ctstate = "NEW"
    d = nf.traverse("PREROUTING", syn, ctx, Netfilter.after_conntrack("PREROUTING"))
    [dnat] = d.actions
    assert (
        dnat.kind == "DNAT"
        and str(dnat.args["addresses"][0]) == "192.0.2.2"
        and dnat.args["ports"] == (80, 80)
    )
    # After the DNAT (the engine rewrites the packet), FORWARD dispatches on oifname to bridge1's chain.
    fwd = tcp("198.51.100.7", "192.0.2.2", 40000, 80)
    d = nf.traverse("FORWARD", fwd, Context("eth0", "bridge1", "NEW"))
    assert d.verdict == "ACCEPT" and d.chain == "filter-forward-in__bridge1"
    d = nf.traverse("FORWARD", tcp("198.51.100.7", "192.0.2.2", 40000, 22), Context("eth0", "bridge1", "NEW"))
    assert d.verdict == "DROP" and d.rule.origin.text.endswith('drop comment "UNPUBLISHED PORT DROP"')
    # Straight to the container's address from outside: raw-PREROUTING's drop, before conntrack.
    direct = tcp("198.51.100.7", "192.0.2.2", 40001, 80)
    d = nf.traverse(
        "PREROUTING", direct, Context("eth0", None, "INVALID"), Netfilter.before_conntrack("PREROUTING")
    )
    assert d.verdict == "DROP" and d.chain == "raw-PREROUTING"
    # The container's own traffic leaves masqueraded.
    out = tcp("192.0.2.2", "8.8.8.8", 5000, 53)
    d = nf.traverse("POSTROUTING", out, Context("bridge1", "eth0", "NEW"))
    assert [a.kind for a in d.actions] == ["MASQUERADE"]


def test_openwrt_fw4_zones_syn_flood_mld_and_the_mss_clamp():
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import ICMPv6MLQuery, ICMPv6PacketTooBig, IPv6

    nf = Netfilter(parse_file(CONFIGS / "openwrt-fw4.nft"))

    def inp(pkt, dev="wan0", state="NEW", now=0.0):
        return nf.traverse("INPUT", pkt, Context(dev, None, state, now=now))

    # wan: WireGuard allowed, anything else TCP gets a reset, UDP an ICMP port unreachable.
    wg = decode(craft.udp_packet(4, ip("203.0.113.9"), ip("198.51.100.30"), 4000, 51820, b"q"))
    assert inp(wg).verdict == "ACCEPT"
    d = inp(tcp("203.0.113.9", "198.51.100.30", 4000, 22))
    assert d.verdict == "DROP" and d.actions[0].args["reply"] == ("tcp-reset",)
    dns = decode(craft.udp_packet(4, ip("203.0.113.9"), ip("198.51.100.30"), 4000, 53, b"q"))
    assert inp(dns).actions[0].args["reply"] == ("icmp", 3, 3)
    # MLD from a link-local source: the (type, code) pair set; from elsewhere: rejected.
    mld = decode(bytes(IPv6(src="fe80::1", dst="ff02::1", hlim=1) / ICMPv6MLQuery()))
    assert inp(mld).rule.origin.text.startswith("ip6 saddr fe80::/10 icmpv6 type . icmpv6 code")
    quoted = IPv6(src="2001:db8::2", dst="2001:db8::1") / TCP(sport=443, dport=40000)
    too_big = decode(bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6PacketTooBig() / quoted))
    assert inp(too_big).verdict == "ACCEPT"
    # SYN flood protection: 50 at once pass the limit (burst 50), the 51st is dropped in syn_flood
    # (a fresh ruleset: the SYN from wan above took a token too).
    nf = Netfilter(parse_file(CONFIGS / "openwrt-fw4.nft"))
    verdicts = [inp(tcp("192.168.1.5", "192.168.1.1", 5000 + i, 22), dev="br-lan").verdict for i in range(51)]
    assert verdicts[:50] == ["ACCEPT"] * 50
    d = inp(tcp("192.168.1.5", "192.168.1.1", 6000, 22), dev="br-lan")
    assert d.verdict == "DROP" and d.chain == "syn_flood"
    # lan to wan: the clamp (rt mtu) in mangle_forward, then accepted, then masqueraded.
    syn = tcp("192.168.1.5", "93.184.216.34", 40000, 443, mss=1460)
    d = nf.traverse("FORWARD", syn, Context("br-lan", "wan0", "NEW", path_mtu=1492, reverse_mtu=1500))
    assert d.verdict == "ACCEPT" and syn.mss() == 1452
    assert [a.kind for a in nf.traverse("POSTROUTING", syn, Context("br-lan", "wan0", "NEW")).actions] == [
        "MASQUERADE"
    ]


# --------------------------------------------------------------------------------------------------
# Through the engine: replay, the listing's counters, NAT and REJECT on netfilter's path


def _syn(src, dst, sport, dport, mss):
    v = 6 if ":" in src else 4
    return craft.tcp_packet(v, ip(src), ip(dst), sport, dport, 1000, 0, SYN, 64240, craft.tcp_option_mss(mss))


def test_seed001_in_nft_replayed_clamps_into_the_tunnel_and_nft_list_ruleset_counts_it(tmp_path):
    import contextlib
    import io

    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    from statewall.cli import main
    from statewall.pcapio import PcapWriter, read_packets
    from statewall.replay import replay

    cap = tmp_path / "syns.pcap"
    syns = [
        _syn("192.168.1.10", "10.9.0.5", 40000, 443, 1460),
        _syn("192.168.1.10", "10.9.0.5", 40001, 443, 1200),  # smaller: left alone
        _syn("2001:db8:1::10", "2001:db8:9::5", 40002, 443, 1440),
        _syn("192.168.1.10", "203.0.113.9", 40004, 443, 1460),  # to the internet: not ipsec0
    ]
    with PcapWriter(cap) as w:
        for i, data in enumerate(syns):
            w.write(data, 10.0 + i)
    path = CONFIGS / "seed001-nft.nft"
    summary = replay(load_policy(path), [(None, cap)], tmp_path / "out")
    assert summary["forwarded"] == 4 and summary["dropped"] == 0
    on_ipsec0 = [p for _, p in read_packets(tmp_path / "out" / "ipsec0.pcap")]
    mss = [dict(((IPv6 if d[0] >> 4 == 6 else IP)(d))[TCP].options)["MSS"] for d in on_ipsec0]
    assert mss == [1347, 1200, 1327]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["nft", "-c", str(path), "list", "ruleset", "--after-replay", str(cap)]) == 0
    lines = buf.getvalue().splitlines()
    assert "counter packets 2 bytes 88 tcp option maxseg size set 1347" in lines[3]
    assert "counter packets 1 bytes 64 tcp option maxseg size set 1327" in lines[4]


def test_the_host_ruleset_through_the_engine_port_forward_masquerade_and_reject():
    from scapy.layers.inet import IP

    from statewall.engine import Firewall

    fw = Firewall(parse_file(CONFIGS / "nft-host.nft"))

    def send(iface, data, now=[1000.0]):  # noqa: B006 -- one clock for the test
        now[0] += 0.01
        return [(o, IP(bytes(p))) for o, p in fw.receive(iface, data, now[0]).packets]

    syn = craft.tcp_packet(4, ip("203.0.113.9"), ip("203.0.113.40"), 4001, 8080, 1000, 0, SYN, 64240)
    [(out, pkt)] = send("wan", syn)
    assert (out, pkt.dst, pkt.dport) == ("lan", "192.168.1.10", 80)  # dnat, then ct status dnat accept
    syn = craft.tcp_packet(4, ip("192.168.1.20"), ip("93.184.216.34"), 4002, 443, 1000, 0, SYN, 64240)
    [(out, pkt)] = send("lan", syn)
    assert (out, pkt.src) == ("wan", "203.0.113.40")  # masquerade
    syn = craft.tcp_packet(4, ip("192.168.1.20"), ip("93.184.216.34"), 4003, 25, 1000, 0, SYN, 64240)
    [(out, rst)] = send("lan", syn)
    assert out == "lan" and rst["TCP"].flags & 0x04  # reject with tcp reset


def test_ct_helper_set_in_a_forward_chain_attaches_ftp_through_the_engine():
    from statewall.engine import Firewall
    from statewall.events import CtEvent

    fw = Firewall(parse_file(CONFIGS / "nft-host.nft"))
    syn = craft.tcp_packet(4, ip("192.168.1.20"), ip("93.184.216.34"), 40000, 21, 1000, 0, SYN, 64240)
    res = fw.receive("lan", syn, 1000.0)
    assert [(e.helper, e.orig[3]) for e in res.events if isinstance(e, CtEvent)] == [("ftp", 21)]
    web = craft.tcp_packet(4, ip("192.168.1.20"), ip("93.184.216.34"), 40001, 443, 1000, 0, SYN, 64240)
    res = fw.receive("lan", web, 1000.1)
    assert [e.helper for e in res.events if isinstance(e, CtEvent)] == [None]


# --------------------------------------------------------------------------------------------------
# Sets by key, timeouts, dynamic sets, meters, th, limit over and byte limits, log group


def udp(src, dst, sport, dport, data=b"q"):
    return decode(craft.udp_packet(4, ip(src), ip(dst), sport, dport, data))


def _input(nf, pkt, now, inp="eth0"):
    d = nf.traverse("INPUT", pkt, Context(inp, None, "NEW", now=now))
    return d.verdict, (d.rule.origin.text if d.rule is not None else "policy"), d.actions


def test_an_ssh_flood_fills_the_blocklist_which_then_times_out():
    nf = Netfilter(parse_file(CONFIGS / "nft-sets.nft"))
    attacker, other = "198.51.100.7", "198.51.100.8"
    # burst 3: three SYNs are under the meter's limit; the fourth is over it, goes to the
    # blocklist with an NFLOG line, and is dropped.
    for i in range(3):
        assert _input(nf, tcp(attacker, "203.0.113.40", 4000 + i, 22), 10 + i)[0] == "ACCEPT"
    verdict, rule, actions = _input(nf, tcp(attacker, "203.0.113.40", 4003, 22), 13)
    assert verdict == "DROP" and "meter ssh" in rule
    assert [(a.kind, a.args.get("nflog_group")) for a in actions] == [("LOG", 5)]
    assert actions[0].args["text"].startswith("ssh-flood IN=eth0 ")
    # Blocked now for anything, for the set's 10 minutes; another source has its own bucket.
    assert _input(nf, tcp(attacker, "203.0.113.40", 4004, 443), 14)[1].startswith("ip saddr @blocklist")
    assert _input(nf, tcp(other, "203.0.113.40", 4000, 22), 14)[0] == "ACCEPT"
    assert _input(nf, tcp(attacker, "203.0.113.40", 4005, 443), 13 + 599)[1].startswith("ip saddr @blocklist")
    assert _input(nf, tcp(attacker, "203.0.113.40", 4006, 443), 13 + 601)[1] == "policy"
    assert [k for k, _, _ in nf.nft_elements(13 + 601)["inet filter blocklist"]] == []


def test_concatenations_marks_interface_sets_and_th():
    nf = Netfilter(parse_file(CONFIGS / "nft-sets.nft"))
    assert _input(nf, tcp("192.168.1.10", "192.168.1.1", 4000, 22), 1, "eth1")[0] == "ACCEPT"
    assert _input(nf, tcp("192.168.1.10", "192.168.1.1", 4000, 443), 1, "eth1")[0] == "DROP"
    assert _input(nf, tcp("192.168.1.20", "192.168.1.1", 4000, 443), 1, "eth1")[0] == "ACCEPT"
    assert _input(nf, tcp("192.168.1.31", "192.168.1.1", 4000, 8081), 1, "eth1")[0] == "ACCEPT"
    assert _input(nf, tcp("192.168.1.31", "192.168.1.1", 4000, 8080), 1, "eth1")[0] == "DROP"
    # th dport: DNS over UDP and TCP from the interfaces of @lan_ifs, not from the outside.
    assert _input(nf, udp("192.168.1.10", "192.168.1.1", 5000, 53), 1, "wg0")[0] == "ACCEPT"
    assert _input(nf, tcp("192.168.1.10", "192.168.1.1", 5000, 53), 1, "eth1")[0] == "ACCEPT"
    assert _input(nf, udp("198.51.100.7", "203.0.113.40", 5000, 53), 1, "eth0")[0] == "DROP"
    ctx = Context("eth0", None, "NEW", now=1.0, mark=2)
    assert nf.traverse("INPUT", tcp("198.51.100.7", "203.0.113.40", 1, 9999), ctx).verdict == "ACCEPT"


def test_th_reads_the_transport_header_whatever_the_protocol():
    ping = decode(craft.icmp_echo(4, ip("10.0.0.1"), ip("10.0.0.2"), 1, 1))
    csum = ping.buf[ping.l4off + 2] << 8 | ping.buf[ping.l4off + 3]
    nf = Netfilter(parse(CHAIN % f"th dport {csum} counter drop", "x.nft"))
    assert nf.traverse("INPUT", ping, Context("eth0", None, "NEW")).verdict == "DROP"  # the checksum


def test_update_refreshes_an_element_and_add_does_not():
    text = (
        "table ip f {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\ttimeout 10s\n\t}\n"
        "\tchain a {\n\t\ttype filter hook input priority 0;\n"
        "\t\tip saddr @s drop\n\t\ttcp dport 1 add @s { ip saddr }\n"
        "\t\ttcp dport 2 update @s { ip saddr timeout 20s }\n\t}\n}\n"
    )
    for port, seen_until in ((1, 10), (2, 20)):
        nf = Netfilter(parse(text, "x.nft"))
        rt = nf.nft_set("ip f s")
        assert _input(nf, tcp("10.0.0.1", "10.0.0.2", 1000, port), 0)[0] == "ACCEPT"
        assert rt.contains((ip("10.0.0.1"),), seen_until - 0.5)
        assert not rt.contains((ip("10.0.0.1"),), seen_until + 0.5)
    assert list_ruleset(parse(text, "x.nft")).count("flags dynamic,timeout") == 1


def test_limit_over_and_byte_limits_count_as_nft_limit_does():
    nf = Netfilter(parse(CHAIN % "limit rate over 2/second burst 2 packets drop", "x.nft"))
    verdicts = [_input(nf, tcp("10.0.0.1", "10.0.0.2", 1000 + i, 80), 1.0)[0] for i in range(4)]
    assert verdicts == ["ACCEPT", "ACCEPT", "DROP", "DROP"]
    assert _input(nf, tcp("10.0.0.1", "10.0.0.2", 999, 80), 1.5)[0] == "ACCEPT"  # a token back
    # 100 bytes/second, burst 20 bytes: a bucket of 120 bytes; a 40-byte SYN costs 40.
    nf = Netfilter(parse(CHAIN % "limit rate 100 bytes/second burst 20 bytes accept\n\t\tdrop", "x.nft"))
    verdicts = [_input(nf, tcp("10.0.0.1", "10.0.0.2", 1000 + i, 80), 1.0)[0] for i in range(4)]
    assert verdicts == ["ACCEPT", "ACCEPT", "ACCEPT", "DROP"]
    assert _input(nf, tcp("10.0.0.1", "10.0.0.2", 999, 80), 1.4)[0] == "ACCEPT"


def test_data_maps_give_nat_and_marks_their_values_and_a_miss_ends_the_rule():
    text = (
        "table ip f {\n\tchain a {\n\t\ttype filter hook input priority 0;\n"
        "\t\tct mark set ip saddr map { 10.0.0.0/8 : 0x00000007 } counter packets 0 bytes 0\n"
        "\t\tmeta mark set ct mark\n\t}\n\n"
        "\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        "\t\tsnat to ip saddr map { 10.0.0.0/8 : 192.0.2.1 }\n\t}\n}\n"
    )
    policy = parse(text, "x.nft")
    assert list_ruleset(policy) == text.replace("priority 0;", "priority filter; policy accept;")
    nf = Netfilter(policy)
    ctx = Context("eth0", None, "NEW")
    nf.traverse("INPUT", tcp("10.1.2.3", "192.0.2.9", 1000, 80), ctx)
    assert (ctx.ct_mark, ctx.mark) == (7, 7)
    ctx = Context("eth0", None, "NEW")
    nf.traverse("INPUT", tcp("172.16.0.1", "192.0.2.9", 1000, 80), ctx)
    assert (ctx.ct_mark, ctx.mark) == (0, 0)
    assert nf.nft_counters()[("ip f", "a", 0)] == (1, 40)  # the miss stopped before the counter
    d = nf.traverse("POSTROUTING", tcp("10.1.2.3", "198.51.100.1", 1000, 80), Context(None, "eth0", "NEW"))
    assert [(a.kind, str(a.args["addresses"][0])) for a in d.actions] == [("SNAT", "192.0.2.1")]


def test_a_ct_timeout_policy_gives_the_connection_its_own_timeouts_state_by_state():
    from statewall.engine import Firewall

    text = (
        "#@statewall interface lan dev eth1 address 192.168.1.1/24\n"
        "#@statewall interface wan dev eth0 address 203.0.113.1/24\n"
        "table inet f {\n\tct timeout short {\n\t\tprotocol tcp\n\t\tl3proto ip\n"
        "\t\tpolicy = { syn_sent : 5, established : 90 }\n\t}\n\n"
        "\tct timeout dns {\n\t\tprotocol udp\n\t\tl3proto ip\n"
        "\t\tpolicy = { unreplied : 3, replied : 7 }\n\t}\n\n"
        "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n"
        '\t\ttcp dport 22 ct timeout set "short"\n\t\tudp dport 53 ct timeout set "dns"\n\t}\n}\n'
    )
    fw = Firewall(parse(text, "x.nft"))
    c, s = ip("192.168.1.10"), ip("203.0.113.9")

    def seg(src, dst, sp, dp, seq, ack, flags):
        return craft.tcp_packet(4, src, dst, sp, dp, seq, ack, flags, 64240, b"")

    fw.receive("lan", seg(c, s, 5000, 22, 100, 0, SYN), 10.0)
    conn = next(iter(fw.conns.by_key.values())).conn
    assert conn.deadline() == 15.0  # syn_sent
    fw.receive("wan", seg(s, c, 22, 5000, 900, 101, SYN | ACK), 11.0)
    assert conn.deadline() == 11.0 + 60  # syn_recv: the sysctl's 60 s
    fw.receive("lan", seg(c, s, 5000, 22, 101, 901, ACK), 12.0)
    assert conn.deadline() == 12.0 + 90  # established: the policy's
    fw.receive("lan", craft.udp_packet(4, c, s, 5001, 53, b"q"), 20.0)
    udp = next(h.conn for h in fw.conns.by_key.values() if h.conn.proto == 17)
    assert udp.deadline() == 23.0
    fw.receive("lan", seg(c, s, 5002, 80, 100, 0, SYN), 30.0)  # no policy: the sysctl's 120 s
    other = next(h.conn for h in fw.conns.by_key.values() if h.conn.responder.port == 80)
    assert other.deadline() == 150.0


def test_a_full_set_takes_no_new_element_until_one_expires():
    text = (
        "table ip f {\n\tset s {\n\t\ttype ipv4_addr\n\t\tsize 2\n\t\tflags timeout\n\t\ttimeout 10s\n\t}\n"
        "\tchain a {\n\t\ttype filter hook input priority 0;\n"
        "\t\tadd @s { ip saddr } counter packets 0 bytes 0 accept\n\t}\n}\n"
    )
    nf = Netfilter(parse(text, "x.nft"))
    got = [_input(nf, tcp(f"10.0.0.{i}", "10.0.0.99", 1000, 80), i)[1] for i in (1, 2, 3)]
    assert got[:2] == [got[0]] * 2 and got[0].startswith("add @s") and got[2] == "policy"
    assert _input(nf, tcp("10.0.0.3", "10.0.0.99", 1000, 80), 11.5)[1].startswith(
        "add @s"
    )  # 10.0.0.1 expired
    assert nf.nft_counters()[("ip f", "a", 0)][0] == 3


def test_every_error_of_an_nft_ruleset_is_reported_in_one_pass():
    text = """\
table inet filter {
  chain forward {
    type filter hook forward priority 0; policy drop;
    tcp dport 99999 accept
    ct state bogus accept
    tcp dport { 22, 80 } accept
    jump nowhere
  }
  chain input {
    type filter hook sideways priority 0;
    accept
  }
  quota q { over 10 mbytes }
}
table ip nat {
  chain pre { type nat hook prerouting priority dstnat; policy accept; dnat to 1.2.3.4.5 }
}
table inet later { chain c { type filter hook input priority 0; accept; } }
"""
    with pytest.raises(ConfigError) as info:
        parse(text, "e.nft")
    # The reader resumes at the next rule, the next statement of the table, or the next table.
    assert [str(e) for e in info.value.errors] == [
        "e.nft:4:15: bad port '99999'",
        "e.nft:5:14: unknown ct state 'bogus'",
        "e.nft:7:10: chain 'nowhere' does not exist in table inet filter",
        "e.nft:10:22: unknown hook 'sideways'",
        "e.nft:13:3: nft: quota objects is not modelled by statewall",
        "e.nft:16:80: bad address '1.2.3.4.5'",
    ]


# --------------------------------------------------------------------------------------------------
# Kubernetes kube-proxy in nftables mode: verdict maps keyed by concatenations, numgen, mark bits


def _kube_link():
    from statewall.engine import Firewall
    from traffic import Link

    return Link(Firewall(parse_file(CONFIGS / "kube-proxy-nftables.nft")), 1000.0)


def _raw(src, dst, sport, dport, flags=SYN, seq=1000, ack=0):
    return craft.tcp_packet(4, ip(src), ip(dst), sport, dport, seq, ack if flags & ACK else 0, flags, 64240)


def test_kube_proxy_nft_balances_a_nodeport_over_its_endpoints_and_masquerades_it():
    w = _kube_link()
    backends = []
    for i in range(600):
        # NodePort: services' second map (fib daddr type local, meta l4proto . th dport), the external
        # chain's masquerade mark, the service chain's numgen random mod 3, the endpoint's DNAT.
        [(out, syn)] = w.send("eth0", _raw("192.168.1.50", "192.168.1.10", 20000 + i, 30080)).pairs()
        assert (out, syn.dport, syn.src) == ("cni0", 8080, "10.244.0.1")  # masquerade: the mark was set
        backends.append(syn.dst)
        [(out, back)] = w.send(
            "cni0", _raw(syn.dst, "10.244.0.1", 8080, syn.sport, SYN | ACK, 5000, 1001)
        ).pairs()
        assert (out, back.src, back.sport) == ("eth0", "192.168.1.10", 30080)
        [(out, ack)] = w.send(
            "eth0", _raw("192.168.1.50", "192.168.1.10", 20000 + i, 30080, ACK, 1001, 5001)
        ).pairs()
        assert ack.dst == syn.dst  # conntrack's NAT: no new draw for the connection's later packets
    shares = {b: backends.count(b) for b in set(backends)}
    assert set(shares) == {"10.244.1.5", "10.244.2.6", "10.244.3.7"}
    assert all(140 <= n <= 260 for n in shares.values()), shares


def test_kube_proxy_nft_cluster_ip_from_a_pod_is_not_masqueraded_and_other_ports_are_rejected():
    w = _kube_link()
    # A pod reaching the ClusterIP: service-ips (ip daddr . meta l4proto . th dport), no masquerade
    # mark for a source inside 10.244.0.0/16, so it keeps its own address.
    [(out, syn)] = w.send("cni0", _raw("10.244.5.9", "10.96.0.10", 33000, 80)).pairs()
    assert out == "cni0" and syn.src == "10.244.5.9" and syn.dst in ("10.244.1.5", "10.244.2.6", "10.244.3.7")
    # Another port of the ClusterIP: no map entry; cluster-ips-check rejects it (ICMP port unreachable).
    [(out, icmp)] = w.send("cni0", _raw("10.244.5.9", "10.96.0.10", 33001, 81)).pairs()
    assert out == "cni0" and icmp.proto == 1 and (icmp[ICMP].type, icmp[ICMP].code) == (3, 3)


def test_numgen_inc_counts_from_zero_and_marks_change_bit_by_bit():
    policy = parse(
        "table ip t {\n\tchain c {\n\t\ttype filter hook forward priority 0; policy drop;\n"
        "\t\ttcp dport 1 numgen inc mod 3 offset 10 vmap { 10 : accept, 11-12 : drop }\n"
        "\t\ttcp dport 2 mark set mark or 0x4000\n"
        "\t\ttcp dport 2 meta mark set meta mark ^ 0x1 | 0x10 & 0xf0\n"
        "\t\ttcp dport 2 meta mark & 0x4011 == 0x4011 accept\n"
        "\t\ttcp dport 3 ip saddr . tcp sport vmap { 10.0.0.1 . 5 : accept, 10.0.0.0/24 . 6 : accept }\n"
        "\t}\n}\n",
        "t.nft",
    )
    nf = Netfilter(policy)
    verdicts = [nf.traverse("FORWARD", tcp("10.0.0.1", "10.0.0.2", 4000, 1), Context("a", "b", "NEW")).verdict
                for _ in range(7)]  # fmt: skip
    assert verdicts == ["ACCEPT", "DROP", "DROP"] * 2 + ["ACCEPT"]
    ctx = Context("a", "b", "NEW")
    ctx.mark = 0x100
    # (0x100 | 0x4000), then ^ 0x1 | (0x10 & 0xf0): C's precedence, & before ^ before |.
    assert nf.traverse("FORWARD", tcp("10.0.0.1", "10.0.0.2", 4000, 2), ctx).verdict == "ACCEPT"
    assert ctx.mark == 0x4111

    def by_key(src, sport):
        return nf.traverse("FORWARD", tcp(src, "10.0.0.2", sport, 3), Context("a", "b", "NEW")).verdict

    assert [by_key("10.0.0.1", 5), by_key("10.0.0.7", 6), by_key("10.0.0.7", 5), by_key("10.0.1.1", 6)] == [
        "ACCEPT", "ACCEPT", "DROP", "DROP"
    ]  # fmt: skip


def test_packet_tracer_follows_an_nft_ruleset_through_its_maps(capsys):
    from statewall.cli import main

    code = main(["packet-tracer", "-c", str(CONFIGS / "kube-proxy-nftables.nft"),
                 "input", "eth0", "tcp", "192.168.1.50", "40000", "192.168.1.10", "30080"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    lines = [
        ln.split("  (")[0].split(" rule ")[0] for ln in out.splitlines() if ln.startswith("  PREROUTING")
    ]
    assert lines[:8] == [
        "  PREROUTING      ALLOW ip kube-proxy filter-prerouting",
        "  PREROUTING      ALLOW ip kube-proxy filter-prerouting policy ACCEPT",
        "  PREROUTING      ALLOW ip kube-proxy nat-prerouting",
        "  PREROUTING      ALLOW ip kube-proxy services",  # service-ips: no entry (continue)
        "  PREROUTING      ALLOW ip kube-proxy services",  # service-nodeports: goto external-...
        "  PREROUTING      ALLOW ip kube-proxy external-ULMVA6XW-default/web/tcp/http",
        "  PREROUTING      ALLOW ip kube-proxy mark-for-masquerade",
        "  PREROUTING      ALLOW ip kube-proxy external-ULMVA6XW-default/web/tcp/http",
    ]
    assert "vmap @service-ips (verdict continue)" in out
    assert "vmap @service-nodeports (verdict goto external-ULMVA6XW-default/web/tcp/http)" in out
    assert "trace id " in out and " ip kube-proxy nat-prerouting rule jump services" in out
    assert "Action: allow" in out and "output-interface: cni0" in out


def test_a_host_ruleset_hop_limits_ttl_ct_count_and_reject_kinds():
    policy = parse_file(CONFIGS / "nft-server.nft")
    nf = Netfilter(policy)

    def inp(pkt, dev="eth0", state="NEW"):
        return nf.traverse("INPUT", pkt, Context(dev, None, state))

    # Neighbour discovery only with hop limit 255 (what a router cannot forward).
    na = decode(craft.icmp_query(6, ip("fe80::1"), ip("fe80::2"), 136, 0, 0, 0, ttl=255))
    assert inp(na).verdict == "ACCEPT"
    d = inp(decode(craft.icmp_query(6, ip("fe80::1"), ip("fe80::2"), 136, 0, 0, 0, ttl=64)))
    assert d.verdict == "DROP" and d.rule.origin.text.startswith("log prefix")
    # The plain reject of an inet table answers in the packet's own family (icmpx port unreachable).
    d = inp(tcp("2001:db8::9", "2001:db8::1", 4000, 8080))
    assert d.actions[-1].args["reply"] == ("icmp", 1, 4)  # ICMPv6 destination unreachable, port
    d = inp(tcp("192.0.2.9", "192.0.2.1", 4000, 8080))
    assert d.actions[-1].args["reply"] == ("icmp", 3, 3)
    # ct count over 20: the 21st connection to port 25 that reached the rule is reset.
    conns = {}
    nf2 = Netfilter(policy)
    verdicts = []
    for i in range(22):
        ctx = Context("eth0", None, "NEW")
        ctx.connlimit = lambda groups, addr, i=i: (
            conns.setdefault((id(groups), addr), set()).add(i) or len(conns[(id(groups), addr)])
        )
        d = nf2.traverse("INPUT", tcp("192.0.2.9", "192.0.2.1", 4000 + i, 25), ctx)
        verdicts.append(d.rule.origin.text if d.rule is not None else "policy")
    # Up to 20 the rule does not match (the log-and-reject rule at the end takes them); above, reset.
    assert all(v.startswith("log prefix") for v in verdicts[:20])
    assert verdicts[20:] == ["tcp dport 25 ct count over 20 reject with tcp reset"] * 2


@pytest.mark.parametrize(
    ("match", "ttls"),
    [
        ("ip ttl 64", {64}),
        ("ip ttl != 64", set(range(256)) - {64}),
        ("ip ttl < 5", set(range(5))),
        ("ip ttl <= 5", set(range(6))),
        ("ip ttl > 250", set(range(251, 256))),
        ("ip ttl >= 250", set(range(250, 256))),
        ("ip ttl 1-3", {1, 2, 3}),
        ("ip ttl { 1, 64, 128 }", {1, 64, 128}),
        ("ip ttl != { 1, 64 }", set(range(256)) - {1, 64}),
    ],
)
def test_ttl_comparisons_ranges_and_sets(match, ttls):
    nf = Netfilter(parse(CHAIN % f"{match} accept\n\t\tdrop", "t.nft"))
    hit = set()
    for t in range(256):
        pkt = tcp("192.0.2.9", "192.0.2.1", 4000, 22)
        pkt.set_ttl(t)
        if nf.traverse("INPUT", pkt, Context("eth0", None, "NEW")).verdict == "ACCEPT":
            hit.add(t)
    assert hit == ttls


def test_a_plain_reject_in_an_inet_table_answers_in_the_packet_s_family():
    nf = Netfilter(
        parse(
            "table inet t {\n\tchain c {\n\t\ttype filter hook input priority 0;\n\t\treject\n\t}\n}\n",
            "r.nft",
        )
    )
    for src, dst, reply in (
        ("2001:db8::9", "2001:db8::1", ("icmp", 1, 4)),
        ("192.0.2.9", "192.0.2.1", ("icmp", 3, 3)),
    ):
        pkt = tcp(src, dst, 4000, 22)
        d = nf.traverse("INPUT", pkt, Context("eth0", None, "NEW"))
        assert d.actions[-1].args["with"].startswith("icmp6" if pkt.version == 6 else "icmp-")
        assert d.actions[-1].args["reply"] == reply


def test_an_iptables_nft_listing_does_what_its_iptables_save_form_does():
    # The same Docker ruleset read as iptables-save prints it and as `nft list ruleset` lists it on a
    # host running iptables-nft: every packet of a mixed conversation set gets the same fate.
    from statewall.dialects.iptables import parse_file as parse_iptables_file
    from statewall.engine import Firewall

    fws = [
        Firewall(parse_iptables_file(CONFIGS / "docker-20-default.rules")),
        Firewall(parse_file(CONFIGS / "docker-20-iptables-nft.nft")),
    ]
    packets = [
        ("eth0", craft.tcp_packet(4, ip("198.51.100.7"), ip("203.0.113.10"), 40000, 8080, 1, 0, SYN, 64240)),
        (
            "docker0",
            craft.tcp_packet(4, ip("172.17.0.2"), ip("198.51.100.7"), 80, 40000, 9, 2, SYN | ACK, 64240),
        ),
        ("eth0", craft.tcp_packet(4, ip("198.51.100.7"), ip("172.17.0.2"), 40001, 22, 1, 0, SYN, 64240)),
        ("docker0", craft.udp_packet(4, ip("172.17.0.3"), ip("8.8.8.8"), 5353, 53, b"q")),
        ("eth0", craft.udp_packet(4, ip("8.8.8.8"), ip("203.0.113.10"), 53, 5353, b"a")),
        ("docker0", craft.tcp_packet(4, ip("172.17.0.3"), ip("203.0.113.10"), 40002, 8080, 1, 0, SYN, 64240)),
        ("eth0", craft.tcp_packet(4, ip("198.51.100.8"), ip("203.0.113.10"), 40003, 22, 1, 0, SYN, 64240)),
    ]
    seen = []
    for fw in fws:
        out = []
        for i, (iface, data) in enumerate(packets):
            res = fw.receive(iface, bytearray(data), 1.0 + i)
            out.append(sorted((o, bytes(p)) for o, p in res.packets))
        seen.append(out)
    assert seen[0] == seen[1]
    assert seen[0][0] and seen[0][3]  # the published port and the container's own traffic went through


def test_an_iptables_nft_compatibility_expression_is_refused_with_what_to_do():
    text = "table ip filter {\n\tchain c {\n\t\ttcp dport 22 ct state new xt match recent counter\n\t}\n}\n"
    with pytest.raises(ConfigError, match="iptables-nft compatibility expression .* `iptables-save`"):
        parse(text, "u.nft")


def test_ipsec_expressions_without_ipsec():
    # No packet is decrypted in statewall (warned): `meta ipsec missing` holds, `exists` and every SA
    # field (`ipsec in reqid 1`, negated too) never do; the LAN's unencrypted traffic takes the second rule.
    nf = Netfilter(parse_file(CONFIGS / "nft-ipsec.nft"))
    d = nf.traverse("FORWARD", tcp("10.1.0.5", "198.51.100.1", 4000, 443), Context("eth1", "eth0", "NEW"))
    assert d.verdict == "ACCEPT" and d.rule.origin.text.startswith("meta ipsec missing")
    d = nf.traverse("FORWARD", tcp("10.9.0.5", "198.51.100.1", 4000, 443), Context("eth1", "eth0", "NEW"))
    assert d.verdict == "DROP" and d.rule is None  # the policy: no SA rule held
    policy = parse(CHAIN % "ipsec in reqid != 1 accept\n\t\tdrop", "n.nft")
    d = Netfilter(policy).traverse(
        "INPUT", tcp("10.9.0.5", "10.1.0.1", 4000, 22), Context("eth0", None, "NEW")
    )
    assert d.rule.origin.text == "drop"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("type nat hook output priority dstnat;", "nft names dstnat only at prerouting"),
        ("type filter hook input priority srcnat;", "nft names srcnat only at postrouting"),
        ("type filter hook forward priority dstnat - 10;", "nft names dstnat only at prerouting"),
        ("type nat hook prerouting priority raw;", "a nat chain's priority must be above -200"),
        ("type nat hook postrouting priority -200;", "a nat chain's priority must be above -200"),
    ],
)
def test_chain_priorities_nft_refuses_are_refused(header, message):
    """nft accepts the names dstnat and srcnat only at prerouting and postrouting, and the kernel no nat
    chain at or before conntrack's -200 (each checked against nft 1.0.6 and Linux 6.18): an error at
    the priority, and the chain's policy no second one."""
    text = f"table inet t {{\n\tchain c {{\n\t\t{header} policy accept;\n\t}}\n}}\n"
    with pytest.raises(ConfigError) as info:
        parse(text, "prio.nft")
    (err,) = info.value.errors
    assert (err.line, err.col) == (3, text.splitlines()[2].index("priority") + len("priority") + 2)
    assert message in err.message


@pytest.mark.parametrize(
    "statement",
    ["snat to 1.2.3.4:5", "masquerade to :5", "redirect to :8080", "dnat to [2001:db8::2]:80"],
)
def test_nat_ports_without_a_transport_protocol_match_are_refused(statement):
    """nft: "transport protocol mapping is only valid after transport protocol match"."""
    fam = "ip6" if "[" in statement else "ip"
    hook = (
        "prerouting priority dstnat"
        if statement.startswith(("dnat", "redirect"))
        else "postrouting priority 100"
    )
    text = f"table {fam} t {{\n\tchain c {{\n\t\ttype nat hook {hook};\n\t\t{statement}\n\t}}\n}}\n"
    with pytest.raises(ConfigError) as info:
        parse(text, "ports.nft")
    assert "transport protocol mapping is only valid after transport protocol match" in str(info.value)
    parse(text.replace(statement, "meta l4proto tcp " + statement), "ports.nft")


@pytest.mark.parametrize(
    ("hook", "statement", "allowed"),
    [
        ("postrouting", "meta l4proto tcp dnat to 1.2.3.4:80", "prerouting or output"),
        ("input", "meta l4proto tcp redirect to :80", "prerouting or output"),
        ("prerouting", "meta l4proto tcp snat to 1.2.3.4:80", "postrouting or input"),
        ("output", "masquerade", "postrouting"),
        ("prerouting", "jump x", "postrouting"),  # through the jump: the regular chain's masquerade
    ],
)
def test_nat_statements_where_the_kernel_refuses_them_are_refused(hook, statement, allowed):
    """The kernel allows snat at postrouting and input, dnat and redirect at prerouting and output,
    masquerade at postrouting, also through jumps from the base chain (checked against Linux 6.18)."""
    text = (
        "table ip t {\n\tchain x {\n\t\tmasquerade\n\t}\n"
        f"\tchain c {{\n\t\ttype nat hook {hook} priority 100;\n\t\t{statement}\n\t}}\n}}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse(text, "nathooks.nft")
    (err,) = info.value.errors
    assert f"runs only at {allowed}, not at {hook}" in err.message
    assert err.line == (3 if statement == "jump x" else 7)
    right = "prerouting" if statement.split()[-3:][0] in ("dnat", "redirect") else "postrouting"
    parse(text.replace(f"hook {hook} ", f"hook {right} "), "nathooks.nft")


def test_an_inet_tables_translation_to_the_other_family_leaves_the_packet_alone():
    """nft_nat_inet_eval runs a nat expression only on packets of its own family: ``dnat ip6 to`` does
    nothing to an IPv4 packet and its rule goes on (the next rule's ``dnat ip to`` translates it), and
    the other way round."""
    text = (
        "table inet a {\n\tchain n {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
        "\t\ttcp dport 8081 dnat ip6 to [2001:db8::2]:80\n\t\ttcp dport 8081 dnat ip to 10.0.0.9:80\n\t}\n}\n"
    )
    nf = Netfilter(parse(text, "inetnat.nft"))
    for src, dst, to in (
        ("192.0.2.1", "192.0.2.2", "10.0.0.9"),
        ("2001:db8::9", "2001:db8::1", "2001:db8::2"),
    ):
        d = nf.traverse("PREROUTING", tcp(src, dst, 4000, 8081), Context("eth0", None, "NEW"))
        (nat,) = [a for a in d.actions if a.kind == "DNAT"]
        assert str(nat.args["addresses"][0]) == to and nat.args["ports"] == (80, 80)
