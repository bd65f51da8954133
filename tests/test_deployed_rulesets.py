"""Linux as it is deployed: the rulesets Docker, ufw, firewalld and OpenWrt's fw3 write load whole, print
back as the kernel prints them, and do to traffic what the kernel does.

The rulesets are in tests/configs (each file says where its rules come from). As root, each is loaded
into iptables-legacy (and its sets into ipset) in a private network namespace, and the kernel's
``iptables-save`` and ``iptables -nvxL`` must be statewall's, line for line.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import iptables_kernel
from statewall import craft
from statewall.dialects.errors import ConfigError
from statewall.dialects.iptables import format_listing, parse, parse_file, render
from statewall.events import Drop, IcmpSent, NfLog
from statewall.netfilter import Context, Netfilter
from statewall.packet import decode, str_to_addr
from traffic import Link

CONFIGS = Path(__file__).parent / "configs"
BATFISH = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "batfish" / "networks" / "example"
RULESETS = [
    "docker-27-portmap.rules",
    "docker-20-default.rules",
    "ufw.rules",
    "ufw6.rules",
    "firewalld-iptables.rules",
    "openwrt-fw3.rules",
    "iptables-modules.rules",
    "kube-proxy-iptables.rules",
    "libvirt-default.rules",
    "strongswan-ipsec.rules",
]
SYN, ACK, RST = 0x02, 0x10, 0x04


def ip(text: str) -> int:
    return str_to_addr(text)[1]


def tcp(src, dst, sport, dport, flags=SYN, seq=1000, ack=0, *, mss=None):
    options = craft.tcp_option_mss(mss) if mss is not None else b""
    return craft.tcp_packet(
        4, ip(src), ip(dst), sport, dport, seq, ack if flags & ACK else 0, flags, 64240, options
    )


def udp(src, dst, sport, dport):
    return craft.udp_packet(4, ip(src), ip(dst), sport, dport, b"q")


def wire(name: str) -> Link:
    return Link.iptables((CONFIGS / name).read_text(), filename=name)


def drops(w: Link) -> list[Drop]:
    return w.of(Drop)


# --------------------------------------------------------------------------------------------------
# Loading and printing back


@pytest.mark.parametrize("name", RULESETS)
def test_a_deployed_ruleset_loads_whole_and_prints_back(name):
    policy = parse_file(CONFIGS / name)
    # What a routing box cannot do is said, not hidden: physdev (bridge ports) never holds.
    said = sorted({w.message.split(":")[0] for w in policy.warnings})
    expected = {
        "iptables-modules.rules": ["physdev"],
        "libvirt-default.rules": ["CHECKSUM --checksum-fill is not modelled"],
        "strongswan-ipsec.rules": ["policy"],
    }
    assert said == expected.get(name, [])
    again = parse(render(policy), "again")
    assert render(again) == render(policy)


@pytest.mark.skipif(not BATFISH.is_dir(), reason="the shared corpus is not on this machine")
@pytest.mark.parametrize("host", ["host1", "host2"])
def test_the_batfish_iptables_examples_load(host):
    policy = parse_file(BATFISH / "live" / "iptables" / f"{host}.iptables")
    assert policy.netfilter and policy.netfilter["filter"].chains["INPUT"].policy == "DROP"
    assert policy.warnings == []


def _kernel_views(path: Path) -> tuple[dict[str, str], str]:
    """Load the file into iptables-legacy (its sets into ipset) in a fresh namespace: the listings of
    its tables and iptables-save."""
    text = path.read_text()
    sets = "\n".join(ln for ln in text.splitlines() if ln.startswith(("create ", "add "))) + "\n"
    rules = "\n".join(ln for ln in text.splitlines() if not ln.startswith(("create ", "add ", "#@"))) + "\n"
    policy = parse_file(path)
    prog = "ip6tables-legacy" if policy.ip6_netfilter and not policy.netfilter else "iptables-legacy"
    tables = list(policy.ip6_netfilter or {}) if prog.startswith("ip6") else list(policy.netfilter or {})
    marker = "=====SECTION "
    body = ["set -e"]
    if sets.strip():
        body.append("ipset restore <<'EOF'\n" + sets + "EOF")
    body.append(f"{prog}-restore <<'EOF'\n" + rules + "EOF")
    for t in tables:
        body += [f"echo '{marker}{t}'", f"{prog} -t {t} -nvxL"]
    body += [f"echo '{marker}save'", f"{prog}-save | grep -v '^#'"]
    sections = iptables_kernel.run_sections(body, marker)
    save = sections.pop("save")
    return {t: iptables_kernel.protocol_names(v) for t, v in sections.items()}, save


def _ipset_available() -> bool:
    return (
        subprocess.run(["unshare", "-n", "ipset", "list"], capture_output=True, check=False).returncode == 0
    )


@pytest.mark.root
@pytest.mark.skipif(not iptables_kernel.available(), reason="needs root, unshare and iptables-legacy")
@pytest.mark.parametrize("name", RULESETS)
def test_the_kernel_lists_and_saves_a_deployed_ruleset_as_statewall_does(name):
    path = CONFIGS / name
    policy = parse_file(path)
    if policy.nf_sets and not _ipset_available():
        pytest.skip("needs ipset")
    listings, save = _kernel_views(path)
    family = 6 if policy.ip6_netfilter and not policy.netfilter else 4
    for table, kernel in listings.items():
        assert format_listing(policy, table, {}, family=family).strip() == kernel.strip(), table
    assert iptables_kernel.save_tables(render(policy)) == iptables_kernel.save_tables(save)


def test_modules_that_are_still_refused_name_themselves_where_they_are_written():
    with pytest.raises(ConfigError) as e:
        parse("iptables -A INPUT -m string --algo bm --string evil -j DROP", "s.sh")
    assert str(e.value).startswith("s.sh:1:22: Couldn't load match `string': unknown match")
    with pytest.raises(ConfigError) as e:
        parse("create s hash:mac\n", "s.sets")
    assert str(e.value).startswith("s.sets:1:10: ipset: set type 'hash:mac' is not modelled")
    with pytest.raises(ConfigError, match="Set nosuch doesn't exist"):
        parse("iptables -A FORWARD -m set --match-set nosuch src -j DROP", "s.sh")
    with pytest.raises(ConfigError, match="the mac match .*would be reached from OUTPUT"):
        parse("iptables -A OUTPUT -m mac --mac-source 00:11:22:33:44:55 -j DROP", "m.sh")
    with pytest.raises(ConfigError, match="TRACE is only valid in the raw table"):
        parse("iptables -A INPUT -j TRACE", "t.sh")
    with pytest.raises(ConfigError, match="hitcount \\(21\\) is larger than packets to be remembered"):
        parse("iptables -A INPUT -m recent --rcheck --hitcount 21 -j DROP", "r.sh")


# --------------------------------------------------------------------------------------------------
# Docker


def test_docker27_publishes_a_port_masquerades_its_containers_and_isolates_its_networks():
    w = wire("docker-27-portmap.rules")
    # -p 8080:80: the client's SYN to the host's address goes to the container, the reply comes back
    # from the host's address (DOCKER nat chain, reached through -m addrtype --dst-type LOCAL).
    [(out, syn)] = w.send("eth0", tcp("198.51.100.7", "203.0.113.10", 40000, 8080)).pairs()
    assert (out, syn.dst, syn.dport, syn.ttl) == ("bridge1", "192.0.2.2", 80, 63)
    [(out, synack)] = w.send(
        "bridge1", tcp("192.0.2.2", "198.51.100.7", 80, 40000, SYN | ACK, 5000, 1001)
    ).pairs()
    assert (out, synack.src, synack.sport) == ("eth0", "203.0.113.10", 8080)
    # The container's own traffic leaves masqueraded (MASQUERADE ! -o bridge1).
    [(out, q)] = w.send("bridge1", udp("192.0.2.2", "8.8.8.8", 5353, 53)).pairs()
    assert (out, q.src) == ("eth0", "203.0.113.10")
    # A port that is not published, reached by routing straight to the container: DOCKER's DROP.
    assert w.send("eth0", tcp("198.51.100.7", "192.0.2.2", 40001, 22)) == []
    assert drops(w)[-1].origin.text == "-A DOCKER ! -i bridge1 -o bridge1 -j DROP"
    # docker0's containers do not reach bridge1's (DOCKER-ISOLATION-STAGE-2).
    assert w.send("docker0", tcp("172.17.0.5", "192.0.2.2", 40002, 80)) == []
    assert drops(w)[-1].origin.text == "-A DOCKER-ISOLATION-STAGE-2 -o bridge1 -j DROP"
    # The client's ACK is ESTABLISHED toward a bridge: the set match and conntrack let it through.
    [(out, ack)] = w.send("eth0", tcp("198.51.100.7", "203.0.113.10", 40000, 8080, ACK, 1001, 5001)).pairs()
    assert (out, ack.dst) == ("bridge1", "192.0.2.2")
    counters = w.fw.netfilter.counters("filter")
    assert counters[("FORWARD", 1)][0] == 1 and counters[("DOCKER", 0)][0] == 1


def test_docker20_forward_policy_drop_and_the_hairpin_masquerade():
    w = wire("docker-20-default.rules")
    [(out, syn)] = w.send("eth0", tcp("198.51.100.7", "203.0.113.10", 40000, 8080)).pairs()
    assert (out, syn.dst, syn.dport) == ("docker0", "172.17.0.2", 80)
    # Anything else toward the containers from outside meets FORWARD's DROP policy via DOCKER.
    assert w.send("eth0", tcp("198.51.100.7", "172.17.0.2", 40001, 22)) == []
    assert drops(w)[-1].origin.text == ":FORWARD DROP [0:0]"
    # The host's own LOCAL address from a container goes through DOCKER too, but RETURNs there
    # (-A DOCKER -i docker0 -j RETURN): 8080 on the host is not translated for containers.
    nf = Netfilter(parse_file(CONFIGS / "docker-20-default.rules"))
    pkt = decode(tcp("172.17.0.3", "203.0.113.10", 40003, 8080))
    d = nf.traverse("PREROUTING", pkt, Context("docker0", None, "NEW"), ("nat",))
    assert d.actions == [] and d.chain == "PREROUTING"


# --------------------------------------------------------------------------------------------------
# Kubernetes (kube-proxy, iptables mode)


def test_kube_proxy_balances_a_service_over_its_endpoints_and_each_connection_keeps_its_own():
    w = wire("kube-proxy-iptables.rules")
    backends = {}
    for i in range(600):
        # A NodePort from outside: KUBE-NODEPORTS (addrtype LOCAL), KUBE-MARK-MASQ, then one of the
        # three endpoints by -m statistic --mode random (1/3, then 1/2 of the rest, then the rest).
        [(out, syn)] = w.send("eth0", tcp("192.168.1.50", "192.168.1.10", 20000 + i, 30080)).pairs()
        assert (out, syn.dport, syn.src) == ("cni0", 8080, "10.244.0.1")  # masqueraded toward the pod
        backends[i] = syn.dst
        # The rest of the connection goes where its first packet went: conntrack's NAT, no new draw.
        [(out, back)] = w.send(
            "cni0", tcp(syn.dst, "10.244.0.1", 8080, syn.sport, SYN | ACK, 5000, 1001)
        ).pairs()
        assert (out, back.src, back.sport, back.dport) == ("eth0", "192.168.1.10", 30080, 20000 + i)
        [(out, ack)] = w.send(
            "eth0", tcp("192.168.1.50", "192.168.1.10", 20000 + i, 30080, ACK, 1001, 5001)
        ).pairs()
        assert ack.dst == syn.dst
    shares = {b: sum(1 for v in backends.values() if v == b) for b in set(backends.values())}
    assert set(shares) == {"10.244.1.5", "10.244.2.6", "10.244.3.7"}
    assert all(140 <= n <= 260 for n in shares.values()), shares  # 200 each expected; a binomial's 5 sigma


def test_statistic_random_thresholds_nth_counters_and_negation():
    nf = _nf(
        "iptables -A FORWARD -p tcp --dport 1 -m statistic --mode random --probability 0 -j ACCEPT\n"
        "iptables -A FORWARD -p tcp --dport 1 -m statistic --mode random ! --probability 1 -j ACCEPT\n"
        "iptables -A FORWARD -p tcp --dport 2 -m statistic --mode random --probability 1 -j ACCEPT\n"
        "iptables -A FORWARD -p tcp --dport 3 -m statistic --mode nth --every 3 --packet 0 -j ACCEPT\n"
        "iptables -A FORWARD -p tcp --dport 4 -m statistic --mode nth --every 3 --packet 2 -j ACCEPT\n"
        "iptables -A FORWARD -p tcp --dport 5 -m statistic --mode nth ! --every 2 --packet 1 -j ACCEPT\n"
        "iptables -A FORWARD -p tcp --dport 6 -m statistic --mode random --probability 0.25 -j ACCEPT\n"
        "iptables -P FORWARD DROP\n"
    )

    def verdicts(port, n):
        return "".join(_verdict(nf, _pkt(dport=port)).verdict[0] for _ in range(n))

    assert verdicts(1, 50) == "D" * 50  # probability 0 never, ! probability 1 never
    assert verdicts(2, 50) == "A" * 50
    # nth: one counter per rule that starts at n-1-p; the packet that wraps it to 0 matches. --packet 0
    # matches the first packet and every third after it; --packet 2 the third.
    assert verdicts(3, 7) == "ADDADDA"
    assert verdicts(4, 7) == "DDADDAD"
    assert verdicts(5, 6) == "ADADAD"  # ! --every 2 --packet 1: all but every second from the second
    hits = verdicts(6, 4000).count("A")
    assert 850 <= hits <= 1150  # 1000 expected


@pytest.mark.parametrize(
    "rule, message",
    [
        ("-m statistic --probability 0.5", '"--mode" must be specified'),
        ("-m statistic --mode fair", 'Bad mode "fair"'),
        ("-m statistic --mode random", "--probability must be specified"),
        ("-m statistic --mode random --probability 1.5", "from 0 to 1"),
        ("-m statistic --mode random --every 2 --packet 0", "only be used in nth mode"),
        ("-m statistic --mode nth --probability 0.5", "only be used in random mode"),
        ("-m statistic --mode nth --every 3", '"--every" also requires "--packet"'),
        ("-m statistic --mode nth --every 3 --packet 3", "0 <= p <= n-1"),
        ("-m statistic --mode nth --every 0 --packet 0", "--every"),
    ],
)
def test_statistic_refuses_what_iptables_refuses(rule, message):
    with pytest.raises(ConfigError, match=message):
        _nf(f"iptables -A FORWARD {rule} -j ACCEPT\n")


def test_libvirt_masquerades_its_guests_to_unprivileged_ports_and_rejects_the_rest():
    w = wire("libvirt-default.rules")
    # A guest's connection leaves masqueraded (MASQUERADE --to-ports 1024-65535 for TCP and UDP).
    [(out, syn)] = w.send("virbr0", tcp("192.168.122.50", "198.51.100.7", 800, 443)).pairs()
    assert (out, syn.src) == ("eth0", "192.168.1.20") and 1024 <= syn.sport <= 65535
    # Its reply comes back (LIBVIRT_FWI: RELATED,ESTABLISHED to the guests' network).
    [(out, back)] = w.send(
        "eth0", tcp("198.51.100.7", "192.168.1.20", 443, syn.sport, SYN | ACK, 5000, 1001)
    ).pairs()
    assert (out, back.dst, back.dport) == ("virbr0", "192.168.122.50", 800)
    # A new connection from outside toward a guest: LIBVIRT_FWI's REJECT (port unreachable).
    [(out, err)] = w.send("eth0", tcp("198.51.100.7", "192.168.122.50", 40000, 22)).pairs()
    assert out == "eth0" and err.proto == 1
    assert (
        drops(w)[-1].origin.text == "-A LIBVIRT_FWI -o virbr0 -j REJECT --reject-with icmp-port-unreachable"
    )


def test_policy_without_ipsec_and_the_tcpmss_match():
    # statewall has no xfrm state: --pol none always holds, --pol ipsec never (warned at load). The
    # tcpmss match reads the MSS option; a segment without one matches only `! --mss`.
    nf = _nf(
        "iptables -A FORWARD -p tcp --dport 1 -m policy --dir out --pol ipsec -j ACCEPT\n"
        "iptables -A FORWARD -p tcp --dport 1 -m policy --dir out --pol none -j REJECT\n"
        "iptables -A FORWARD -p tcp --dport 2 -m tcpmss --mss 1361:1536 -j ACCEPT\n"
        "iptables -A FORWARD -p tcp --dport 2 -m tcpmss ! --mss 1000 -j REJECT\n"
        "iptables -P FORWARD DROP\n"
    )
    assert _verdict(nf, _pkt(dport=1)).rule.origin.line == 4

    def mss(value):
        pkt = decode(tcp("203.0.113.5", "10.0.0.5", 40000, 2, mss=value))
        d = _verdict(nf, pkt)
        return "policy" if d.rule is None else d.rule.origin.line

    assert [mss(1460), mss(1361), mss(1536), mss(1360), mss(1000), mss(None)] == [5, 5, 5, 6, "policy", 6]


# --------------------------------------------------------------------------------------------------
# ufw


def test_ufw_limit_rejects_the_sixth_ssh_connection_in_thirty_seconds_and_logs_it():
    w = wire("ufw.rules")
    for i in range(5):
        assert w.send("eth0", tcp("203.0.113.5", "198.51.100.20", 41000 + i, 22), dt=1.0) == []
    assert not drops(w)
    [(out, icmp)] = w.send("eth0", tcp("203.0.113.5", "198.51.100.20", 41005, 22), dt=1.0).pairs()
    assert (out, icmp.type, icmp.code) == ("eth0", 3, 3)  # ufw-user-limit: REJECT port-unreachable
    assert w.of(NfLog)[-1].text.startswith(
        "[UFW LIMIT BLOCK] IN=eth0 OUT= MAC= SRC=203.0.113.5 DST=198.51.100.20 LEN=40 TOS=0x00 PREC=0x00 "
        "TTL=64 ID=0 PROTO=TCP SPT=41005 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0"
    )
    assert w.of(IcmpSent)
    # 30 s after the first five, ssh is open again (--seconds 30 --hitcount 6 counts fresh stamps).
    w.wait(31.0)
    assert w.send("eth0", tcp("203.0.113.5", "198.51.100.20", 41010, 22)) == []
    assert len([d for d in drops(w) if d.dport == 22]) == 1


def test_ufw_default_deny_logs_and_drops_and_not_local_traffic_never_reaches_the_user_rules():
    w = wire("ufw.rules")
    assert w.send("eth0", tcp("203.0.113.5", "198.51.100.20", 42000, 80)) == []  # allowed, delivered
    assert not drops(w)
    w.send("eth0", tcp("203.0.113.5", "198.51.100.20", 42001, 8080))
    assert w.of(NfLog)[-1].text.startswith("[UFW BLOCK] IN=eth0 OUT= MAC= SRC=203.0.113.5")
    assert drops(w)[-1].origin.text == ":INPUT DROP [0:0]"
    # Netbios from the LAN is ufw-after-input's skip-to-policy: dropped without a log line.
    logs = len(w.of(NfLog))
    w.send("eth0", udp("198.51.100.9", "198.51.100.20", 5000, 137))
    assert drops(w)[-1].origin.text == "-A ufw-skip-to-policy-input -j DROP" and len(w.of(NfLog)) == logs


# --------------------------------------------------------------------------------------------------
# firewalld and OpenWrt


def test_firewalld_accepts_its_services_forwards_its_ports_and_rejects_the_rest():
    w = wire("firewalld-iptables.rules")
    assert w.send("eth0", tcp("198.51.100.7", "203.0.113.20", 40000, 22)) == []
    assert not drops(w)  # IN_public_allow: ssh, NEW
    [(out, syn)] = w.send("eth0", tcp("198.51.100.7", "203.0.113.20", 40001, 8080)).pairs()
    assert (out, syn.dst, syn.dport) == ("eth1", "10.0.0.5", 80)  # the forward-port, --ctstate DNAT
    [(out, rej)] = w.send("eth0", tcp("198.51.100.7", "203.0.113.20", 40002, 25)).pairs()
    assert (out, rej.type, rej.code) == ("eth0", 3, 10)  # icmp-host-prohibited
    [(out, q)] = w.send("eth1", udp("10.0.0.5", "8.8.8.8", 5000, 53)).pairs()
    assert (out, q.src) == ("eth0", "203.0.113.20")  # POST_public_allow ! -o lo -j MASQUERADE


def test_openwrt_fw3_masquerades_lan_clamps_mss_forwards_a_port_and_rejects_wan():
    w = wire("openwrt-fw3.rules")
    [(out, syn)] = w.send("lan", tcp("192.168.1.10", "93.184.216.34", 40000, 443, mss=1460)).pairs()
    assert (out, syn.src) == ("wan", "198.51.100.30")
    assert dict((o[0], o[1]) for o in syn["TCP"].options if isinstance(o, tuple))["MSS"] == 1460  # MTU 1500
    [(out, fwd)] = w.send("wan", tcp("203.0.113.9", "198.51.100.30", 41000, 8080)).pairs()
    assert (out, fwd.dst, fwd.dport) == ("lan", "192.168.1.10", 80)
    [(out, rst)] = w.send("wan", tcp("203.0.113.9", "198.51.100.30", 41001, 22)).pairs()
    assert out == "wan" and rst["TCP"].flags & RST  # zone_wan_src_REJECT -> reject: tcp-reset
    [(out, unreach)] = w.send("wan", udp("203.0.113.9", "198.51.100.30", 41002, 161)).pairs()
    assert (out, unreach.type, unreach.code) == ("wan", 3, 3)


# --------------------------------------------------------------------------------------------------
# The modules one by one, at the traversal


def _nf(text: str, **header) -> Netfilter:
    lines = [
        "#@statewall interface eth0 address 198.51.100.20/24",
        "#@statewall interface eth1 address 10.0.0.1/24",
    ]
    return Netfilter(parse("\n".join(lines) + "\n" + text, "m.rules"))


def _pkt(src="203.0.113.5", dst="10.0.0.5", dport=80, flags=SYN):
    return decode(tcp(src, dst, 40000, dport, flags))


def _verdict(nf, pkt, hook="FORWARD", ctx=None, tables=None):
    return nf.traverse(hook, pkt, ctx or Context("eth0", "eth1", "NEW"), tables)


def test_addrtype_knows_the_box_s_own_broadcast_and_multicast_addresses():
    nf = _nf(
        "iptables -A INPUT -m addrtype --dst-type LOCAL -j ACCEPT\n"
        "iptables -A INPUT -m addrtype --dst-type BROADCAST -j REJECT\n"
        "iptables -A INPUT -m addrtype --dst-type MULTICAST --limit-iface-in -j ACCEPT\n"
        "iptables -A INPUT -m addrtype --dst-type LOCAL --limit-iface-in -j DROP\n"
        "iptables -P INPUT DROP\n"
    )
    ctx = lambda: Context("eth0", None, "NEW")  # noqa: E731
    assert _verdict(nf, _pkt(dst="10.0.0.1"), "INPUT", ctx()).rule.origin.line == 3  # LOCAL: any interface's
    assert _verdict(nf, _pkt(dst="127.0.0.9"), "INPUT", ctx()).rule.origin.line == 3
    assert _verdict(nf, _pkt(dst="198.51.100.255"), "INPUT", ctx()).rule.origin.line == 4
    assert _verdict(nf, _pkt(dst="255.255.255.255"), "INPUT", ctx()).rule.origin.line == 4
    assert _verdict(nf, _pkt(dst="224.0.0.251"), "INPUT", ctx()).rule.origin.line == 5
    assert _verdict(nf, _pkt(dst="10.9.9.9"), "INPUT", ctx()).verdict == "DROP"


def test_mark_connmark_and_their_targets_follow_the_kernel_arithmetic():
    nf = _nf(
        "iptables -t mangle -A PREROUTING -i eth0 -j MARK --set-mark 0x1/0xff\n"
        "iptables -t mangle -A PREROUTING -j MARK --or-mark 0x100\n"
        "iptables -t mangle -A PREROUTING -m mark --mark 0x101 -j CONNMARK --save-mark\n"
        "iptables -t mangle -A PREROUTING -j MARK --and-mark 0xff00\n"
        "iptables -t mangle -A PREROUTING -m connmark --mark 0x101 -j CONNMARK --restore-mark --mask 0xff\n"
    )
    ctx = Context("eth0", None, "NEW", mark=0xAB00)
    nf.traverse("PREROUTING", _pkt(), ctx, ("mangle",))
    # (0xab00 & ~0xff) ^ 1 = 0xab01; | 0x100 = 0xab01 (bit already set); save: ctmark 0xab01 ... the
    # mark match 0x101 (full mask) does not hold for 0xab01, so ctmark stays 0.
    assert (ctx.mark, ctx.ct_mark) == (0xAB00, 0)
    ctx = Context("eth0", None, "NEW")
    nf.traverse("PREROUTING", _pkt(), ctx, ("mangle",))
    # 1; 0x101; saved to ctmark; and 0xff00 -> 0x100; restore low byte of ctmark: 0x101.
    assert (ctx.mark, ctx.ct_mark) == (0x101, 0x101)


def test_recent_set_rcheck_update_and_remove():
    nf = _nf(
        "iptables -A INPUT -p tcp --dport 1 -m recent --set --name knock\n"
        "iptables -A INPUT -p tcp --dport 2 -m recent --remove --name knock\n"
        "iptables -A INPUT -p tcp --dport 22 -m recent --rcheck --seconds 10 --name knock -j ACCEPT\n"
        "iptables -P INPUT DROP\n"
    )

    def to(port, now):
        return nf.traverse(
            "INPUT", _pkt(dst="198.51.100.20", dport=port), Context("eth0", None, "NEW", now=now)
        )

    assert to(22, 0.0).verdict == "DROP"
    to(1, 1.0)
    assert to(22, 5.0).verdict == "ACCEPT"
    assert to(22, 11.5).verdict == "DROP"  # the knock is 10.5 s old
    to(1, 20.0)
    to(2, 21.0)
    assert to(22, 22.0).verdict == "DROP"


def test_sets_iprange_and_length():
    nf = _nf(
        "create bad hash:net family inet\nadd bad 192.0.2.0/24\nadd bad 198.51.100.7\n"
        "create web hash:ip,port family inet\nadd web 10.0.0.5,tcp:80\n"
        "iptables -A FORWARD -m set --match-set bad src -j DROP\n"
        "iptables -A FORWARD -m set --match-set web dst,dst -j ACCEPT\n"
        "iptables -A FORWARD -m iprange --src-range 203.0.113.10-203.0.113.20 -j ACCEPT\n"
        "iptables -A FORWARD -m length --length 0:40 -j REJECT\n"
        "iptables -P FORWARD DROP\n"
    )
    assert _verdict(nf, _pkt(src="192.0.2.77")).rule.origin.line == 8
    assert _verdict(nf, _pkt(src="198.51.100.7")).rule.origin.line == 8
    assert _verdict(nf, _pkt(src="198.51.100.8")).rule.origin.line == 9
    assert _verdict(nf, _pkt(src="198.51.100.8", dport=81)).rule.origin.line == 11  # 40 bytes
    assert _verdict(nf, _pkt(src="203.0.113.15", dport=81)).rule.origin.line == 10


def test_hashlimit_time_physdev_and_pkttype():
    nf = _nf(
        "iptables -A FORWARD -m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 2 --hashlimit-mode srcip "
        "--hashlimit-name h -j ACCEPT\n"
        "iptables -A FORWARD -m physdev --physdev-is-bridged -j ACCEPT\n"
        "iptables -A FORWARD -m time --timestart 22:00 --timestop 06:00 -j REJECT\n"
        "iptables -P FORWARD DROP\n"
    )
    noon, night = 1_767_268_800.0, 1_767_225_600.0 + 23 * 3600  # 2026-01-01 12:00 and 23:00 UTC
    verdicts = [_verdict(nf, _pkt(), ctx=Context("eth0", "eth1", "NEW", now=noon)).verdict for _ in range(3)]
    assert verdicts == ["ACCEPT", "ACCEPT", "DROP"]  # burst 2, then the bridged rule cannot hold
    assert (
        _verdict(nf, _pkt(src="203.0.113.6"), ctx=Context("eth0", "eth1", "NEW", now=noon)).verdict
        == "ACCEPT"
    )
    assert (
        _verdict(nf, _pkt(src="203.0.113.5"), ctx=Context("eth0", "eth1", "NEW", now=night)).verdict
        == "ACCEPT"
    )
    for _ in range(2):
        _verdict(nf, _pkt(src="203.0.113.7"), ctx=Context("eth0", "eth1", "NEW", now=night))
    d = _verdict(nf, _pkt(src="203.0.113.7"), ctx=Context("eth0", "eth1", "NEW", now=night))
    assert d.rule.origin.line == 5  # 23:00 is inside 22:00-06:00


def test_trace_and_nflog_write_the_kernel_s_lines():
    nf = _nf(
        "iptables -t raw -A PREROUTING -p tcp --dport 80 -j TRACE\n"
        "iptables -N web\niptables -A web -p tcp -j NFLOG --nflog-prefix seen --nflog-group 3\n"
        "iptables -A FORWARD -j web\niptables -A FORWARD -j ACCEPT\n"
    )
    ctx = Context("eth0", "eth1", "NEW")
    pkt = _pkt()
    nf.traverse("PREROUTING", pkt, ctx, ("raw",))
    d = nf.traverse("FORWARD", pkt, ctx)
    lines = [a.args["text"] for a in d.actions]
    tail = (
        "IN=eth0 OUT=eth1 MAC= SRC=203.0.113.5 DST=10.0.0.5 LEN=40 TOS=0x00 PREC=0x00 TTL=64 ID=0 PROTO=TCP"
    )
    assert lines[0].startswith("TRACE: filter:FORWARD:rule:1 " + tail + " SPT=40000 DPT=80 SEQ=1000 ACK=0 ")
    assert lines[1].startswith("TRACE: filter:web:rule:1 " + tail)
    assert lines[2].startswith("seen" + tail)
    assert lines[3].startswith("TRACE: filter:web:return:2 " + tail)
    assert lines[4].startswith("TRACE: filter:FORWARD:rule:2 " + tail)
    assert d.actions[2].args["nflog_group"] == 3


def test_ipsets_may_come_from_an_ipset_save_file_beside_the_ruleset(tmp_path):
    text = (CONFIGS / "docker-27-portmap.rules").read_text().splitlines()
    sets = [ln for ln in text if ln.startswith(("create ", "add "))]
    (tmp_path / "sets.ipset").write_text("\n".join(sets) + "\n")
    rules = ["#@statewall ipset sets.ipset"] + [ln for ln in text if not ln.startswith(("create ", "add "))]
    (tmp_path / "docker.rules").write_text("\n".join(rules) + "\n")
    policy = parse_file(tmp_path / "docker.rules")
    assert render(policy) == render(parse_file(CONFIGS / "docker-27-portmap.rules"))
    (tmp_path / "sets.ipset").write_text("create x hash:ip\nadd y 10.0.0.1\n")
    with pytest.raises(ConfigError) as e:
        parse_file(tmp_path / "docker.rules")
    assert (
        str(e.value)
        == f"{tmp_path / 'sets.ipset'}:2:5: ipset: The set with the given name does not exist (y)"
    )


def test_ufw6_drops_routing_header_0_and_takes_neighbour_discovery_only_with_hop_limit_255():
    from scapy.layers.inet6 import ICMPv6ND_NS, IPv6, IPv6ExtHdrRouting

    nf = Netfilter(parse_file(CONFIGS / "ufw6.rules"))

    def verdict(pkt):
        return nf.traverse("INPUT", decode(bytes(pkt)), Context("eth0", None, "NEW"))

    ns = IPv6(src="fe80::2", dst="ff02::1:ff00:20", hlim=255) / ICMPv6ND_NS(tgt="2001:db8:20::20")
    assert verdict(ns).rule.origin.text.startswith(
        "-A ufw6-before-input -p ipv6-icmp -m icmp6 --icmpv6-type 135"
    )
    ns.hlim = 64  # from beyond the link: not neighbour discovery ufw takes
    assert verdict(ns).verdict == "DROP" and verdict(ns).rule is None
    rh0 = IPv6(src="2001:db8:99::1", dst="2001:db8:20::20") / IPv6ExtHdrRouting(
        type=0, addresses=["2001:db8::1"]
    )
    rh0 = rh0 / TCP_SYN_80
    d = verdict(rh0)
    assert d.verdict == "DROP" and d.rule.origin.text == "-A ufw6-before-input -m rt --rt-type 0 -j DROP"


def _tcp_syn_80():
    from scapy.layers.inet import TCP

    return TCP(sport=40000, dport=80, flags="S")


TCP_SYN_80 = _tcp_syn_80()


def test_connection_marks_directions_and_status_last_the_connection_through_the_engine():
    rules = "\n".join(
        [
            "#@statewall interface eth0 address 203.0.113.1/24",
            "#@statewall interface eth1 address 10.0.0.1/24",
            "iptables -t mangle -A PREROUTING -i eth0 -m conntrack --ctstate NEW -j CONNMARK --set-mark 7",
            "iptables -t mangle -A PREROUTING -j CONNMARK --restore-mark",
            "iptables -A FORWARD -m connmark --mark 7 -m conntrack --ctdir REPLY "
            "-j LOG --log-prefix 'reply7 '",
            "iptables -A FORWARD -m mark --mark 7 -m conntrack --ctdir ORIGINAL --ctstatus SEEN_REPLY "
            "-j LOG --log-prefix 'orig7 '",
        ]
    )
    w = Link.iptables(rules)
    assert w.send("eth0", tcp("203.0.113.9", "10.0.0.5", 40000, 80))  # NEW: ctmark 7 set
    assert not w.of(NfLog)
    assert w.send("eth1", tcp("10.0.0.5", "203.0.113.9", 80, 40000, SYN | ACK, 5000, 1001))
    assert [e.text.split(" ")[0] for e in w.of(NfLog)] == ["reply7"]  # the reply sees the mark
    assert w.send("eth0", tcp("203.0.113.9", "10.0.0.5", 40000, 80, ACK, 1001, 5001))
    # The client's ACK: the mark restored into the packet, ORIGINAL, the reply seen.
    assert [e.text.split(" ")[0] for e in w.of(NfLog)] == ["reply7", "orig7"]
