"""Docker's, ufw's, firewalld's and OpenWrt fw3's rulesets (and the nftables rulesets Docker and
firewalld write) against the kernel: the same ruleset loaded
into iptables-legacy in a namespace (fw, between a and b) and into statewall, the same packets through
both, the same packets out (NAT rewrites included), the same REJECT replies and the same rule
counters.

The rulesets are tests/configs/docker-20-default.rules, ufw.rules, firewalld-iptables.rules and
openwrt-fw3.rules with the lab's interfaces and addresses put in place of the host's (the outside is
fa, the containers', internal zone's or LAN's side fb). What leaves is compared with its addresses,
ports and MSS option. REJECT's replies leave through OUTPUT and POSTROUTING in both, as RELATED to
the rejected packet's connection (test_reject_replies_pass_output_and_postrouting_as_the_kernels_do).
Known difference, left out of the counter comparison where it arises (ufw): the kernel's own stack
answers SYNs to closed local ports with RSTs that pass OUTPUT; statewall runs no stack.
Packets come from the lab's ghost addresses, which no stack owns, so no host answers and perturbs
the comparison.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

import iptables_kernel
from netns_util import Capture, Lab, missing_prerequisites, sh
from statewall import craft
from statewall.dialects.iptables import format_listing, parse
from statewall.engine import Firewall
from statewall.packet import str_to_addr

CONFIGS = Path(__file__).parent / "configs"
HEADER = "#@statewall interface fa address 10.77.1.254/24\n#@statewall interface fb address 10.77.2.254/24\n"
KERNEL_REASON = missing_prerequisites() or (
    None if shutil.which("iptables-legacy") else "needs iptables-legacy"
)
SYN = 0x02
PACKET_OUTGOING = 4

DOCKER = [
    ("docker0", "fb"),
    ("eth0", "fa"),
    ("172.17.0.0/16", "10.77.2.0/24"),
    ("172.17.0.2", "10.77.2.100"),
]
UFW = [("eth0", "fa")]


def adapted(name: str, subs: list[tuple[str, str]]) -> str:
    text = "\n".join(ln for ln in (CONFIGS / name).read_text().splitlines() if not ln.startswith("#@"))
    for old, new in subs:
        text = text.replace(old, new)
    return text + "\n"


def tcp(src: str, dst: str, sport: int, dport: int, ip_id: int) -> bytes:
    return craft.tcp_packet(
        4, str_to_addr(src)[1], str_to_addr(dst)[1], sport, dport, 1000, 0, SYN, 64240, b"", b"", ip_id=ip_id
    )


def _outcome(ifname: str, ip: bytes) -> tuple:
    ihl = (ip[0] & 15) * 4
    src = ".".join(str(b) for b in ip[12:16])
    dst = ".".join(str(b) for b in ip[16:20])
    if ip[9] == 1:
        return (ifname, "icmp", src, dst, ip[ihl], ip[ihl + 1])
    out = (
        ifname,
        "tcp",
        src,
        int.from_bytes(ip[ihl : ihl + 2], "big"),
        dst,
        int.from_bytes(ip[ihl + 2 : ihl + 4], "big"),
    )
    mss = _mss(ip[ihl:])
    return out if mss is None else (*out, f"mss {mss}")


def _mss(tcp: bytes) -> int | None:
    """The MSS option of a TCP header, if it has one (a clamp may have added or lowered it)."""
    doff = (tcp[12] >> 4) * 4
    i = 20
    while i < doff:
        kind = tcp[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if kind == 2 and i + 4 <= doff:
            return int.from_bytes(tcp[i + 2 : i + 4], "big")
        i += max(2, tcp[i + 1])
    return None


def _ident(ip: bytes) -> int:
    """The IP id of the packet, or of the packet an ICMP error quotes."""
    ihl = (ip[0] & 15) * 4
    if ip[9] == 1:
        inner = ip[ihl + 8 :]
        return int.from_bytes(inner[4:6], "big") if len(inner) >= 20 else -1
    return int.from_bytes(ip[4:6], "big")


def _send_through_fw(lab: Lab, traffic: list[tuple[str, bytes]]) -> list[list[tuple]]:
    """Inject each packet on its side of the lab and return, per packet, what fw sent after it."""
    cap = Capture(lab)
    try:
        injectors = {"a": lab.injector("a"), "b": lab.injector("b")}
        outs = []
        seen = 0
        for side, ip in traffic:
            injectors[side].send(lab.eth_header(side) + ip)

            def left(records, seen=seen):
                return [r for r in records[seen:] if r[1] == PACKET_OUTGOING]

            # What fw sent after this packet: the packet itself, a translation of it, a REJECT's
            # reply (whatever IP id the kernel gave it). Nothing within 0.4 s is a drop.
            cap.wait_for(lambda recs, left=left: bool(left(recs)), 0.4)
            time.sleep(0.05)
            records = cap.snapshot()
            outs.append(sorted(_outcome(r[0], r[2]) for r in left(records)))
            seen = len(records)
        for s in injectors.values():
            s.close()
    finally:
        cap.close()
    return outs


def _kernel(
    rules: str, traffic: list[tuple[str, bytes]], tables=("filter", "nat")
) -> tuple[list[list[tuple]], dict[str, str]]:
    with Lab() as lab:
        sh("ip", "netns", "exec", lab.fw, "iptables-legacy-restore", input=rules)
        outs = _send_through_fw(lab, traffic)
        listings = {
            t: iptables_kernel.protocol_names(
                sh("ip", "netns", "exec", lab.fw, "iptables-legacy", "-t", t, "-nvxL")
            )
            for t in tables
        }
    return outs, listings


def _replay(fw: Firewall, traffic: list[tuple[str, bytes]]) -> tuple[list[list[tuple]], float]:
    """``traffic`` through ``fw``, a packet every 50 ms from t=1000 (``a`` arrives on fa, ``b`` on fb):
    what left for each packet, as ``_outcome`` tuples in sorted order, and the time of the last."""
    outs = []
    now = 1000.0
    for side, ip in traffic:
        now += 0.05
        res = fw.receive("fa" if side == "a" else "fb", ip, now)
        outs.append(sorted(_outcome(o, bytes(p)) for o, p in res.packets))
    return outs, now


def _statewall(
    rules: str, traffic: list[tuple[str, bytes]], tables=("filter", "nat")
) -> tuple[list[list[tuple]], dict[str, str], object]:
    policy = parse(HEADER + rules, "lab.rules")
    fw = Firewall(policy)
    outs, _ = _replay(fw, traffic)
    nf = fw.netfilter
    listings = {t: format_listing(policy, t, nf.counters(t)) for t in tables if t in policy.netfilter}
    return outs, listings, fw


def _forwarding_chains(listing: str) -> str:
    """The listing without OUTPUT and the chains only OUTPUT reaches: there the kernel counts what its
    own stack sends (RSTs for closed ports, and the ICMP errors REJECT sends, which leave through
    LOCAL_OUT), which statewall does not route through its rules."""
    blocks = listing.strip().split("\n\n")
    return "\n\n".join(
        b for b in blocks if not b.startswith("Chain OUTPUT") and "-output " not in b.split("\n")[0]
    )


def _compare(rules: str, traffic: list[tuple[str, bytes]], tables=("filter", "nat")) -> list[list[tuple]]:
    """The same packets out and every chain's counters equal, OUTPUT and POSTROUTING included."""
    k_out, k_list = _kernel(rules, traffic, tables)
    s_out, s_list, _fw = _statewall(rules, traffic, tables)
    assert s_out == k_out
    for table, ours in s_list.items():
        if table in tables:
            assert ours.strip() == k_list[table].strip(), table
    return s_out


@pytest.mark.root
@pytest.mark.skipif(KERNEL_REASON is not None, reason=KERNEL_REASON or "")
def test_docker_publishing_masquerade_and_policy_agree_with_the_kernel():
    a, b = Lab.ghost_a, Lab.ghost_b
    traffic = [
        ("a", tcp(a, Lab.fa_ip, 40000, 8080, 101)),  # published: DNAT to the container's :80
        ("a", tcp(a, b, 40001, 22, 102)),  # routed straight to the container, port not published
        ("a", tcp(a, b, 40002, 80, 103)),  # routed straight to the published port: DOCKER accepts
        ("b", tcp(b, a, 50000, 443, 104)),  # the container out: masqueraded behind fa
    ]
    outs = _compare(adapted("docker-20-default.rules", DOCKER), traffic)
    assert outs[0] == [("fb", "tcp", a, 40000, b, 80)]
    assert outs[1] == []
    assert outs[3] == [("fa", "tcp", Lab.fa_ip, 50000, a, 443)]


@pytest.mark.root
@pytest.mark.skipif(KERNEL_REASON is not None, reason=KERNEL_REASON or "")
def test_ufw_limit_and_default_deny_agree_with_the_kernel():
    a = Lab.ghost_a
    traffic = [("a", tcp(a, Lab.fa_ip, 41000 + i, 22, 200 + i)) for i in range(7)]
    traffic += [("a", tcp(a, Lab.fa_ip, 42000, 8080, 300)), ("a", tcp(a, Lab.ghost_b, 42001, 80, 301))]
    k_out, k_list = _kernel(adapted("ufw.rules", UFW), traffic)
    s_out, s_list, _fw = _statewall(adapted("ufw.rules", UFW), traffic)

    # The kernel's own TCP stack answers the accepted SYNs to closed ports with a RST; statewall has no
    # local stack. Everything else -- the REJECTs of the limit, the silence of the drops -- agrees.
    def no_local_rst(outs):
        return [[o for o in out if not (o[1] == "tcp" and o[2] == Lab.fa_ip)] for out in outs]

    assert no_local_rst(k_out) == s_out
    assert [len(o) for o in s_out[5:7]] == [1, 1] and s_out[5][0][1:6:4] == ("icmp", 3)
    assert _forwarding_chains(s_list["filter"]) == _forwarding_chains(k_list["filter"])


FIREWALLD = [("eth0", "fa"), ("eth1", "fb"), ("10.0.0.5:80", "10.77.2.100:80")]
FW3 = [("eth0.2", "fa"), ("br-lan", "fb"), ("192.168.1.10:80", "10.77.2.100:80")]


@pytest.mark.root
@pytest.mark.skipif(KERNEL_REASON is not None, reason=KERNEL_REASON or "")
def test_firewalld_forward_port_masquerade_and_reject_agree_with_the_kernel():
    a, b = Lab.ghost_a, Lab.ghost_b
    traffic = [
        ("a", tcp(a, Lab.fa_ip, 40000, 8080, 401)),  # the forward-port to the internal host
        ("a", tcp(a, Lab.fa_ip, 40001, 25, 402)),  # not a service: REJECT icmp-host-prohibited
        ("a", tcp(a, b, 40002, 80, 403)),  # routed from public to internal: nothing allows it
        ("b", tcp(b, a, 50000, 443, 404)),  # internal out to public: masqueraded
    ]
    outs = _compare(adapted("firewalld-iptables.rules", FIREWALLD), traffic)
    assert outs[0] == [("fb", "tcp", a, 40000, b, 80)]
    assert outs[1] == [("fa", "icmp", Lab.fa_ip, a, 3, 10)]
    assert outs[3] == [("fa", "tcp", Lab.fa_ip, 50000, a, 443)]


@pytest.mark.root
@pytest.mark.skipif(KERNEL_REASON is not None, reason=KERNEL_REASON or "")
def test_openwrt_fw3_masquerade_mss_clamp_port_forward_and_reject_agree_with_the_kernel():
    a, b = Lab.ghost_a, Lab.ghost_b
    traffic = [
        ("b", tcp(b, a, 50000, 443, 501)),  # lan to wan: masqueraded, an MSS option added by the clamp
        ("a", tcp(a, Lab.fa_ip, 40000, 8080, 502)),  # the port forward
        ("a", tcp(a, Lab.fa_ip, 40001, 22, 503)),  # wan input: reject with tcp-reset
        ("a", tcp(a, b, 40002, 80, 504)),  # wan to lan without a forward: reject
    ]
    # nat: the RSTs (REJECT --reject-with tcp-reset) leave through LOCAL_OUT and POSTROUTING, where
    # nat POSTROUTING counts them (their connection's source binding is not made yet).
    outs = _compare(adapted("openwrt-fw3.rules", FW3), traffic)
    # xt_TCPMSS adds the option a SYN lacks: min(PMTU - 40, 536) (RFC 879's default).
    assert outs[0] == [("fa", "tcp", Lab.fa_ip, 50000, a, 443, "mss 536")]
    assert outs[1] == [("fb", "tcp", a, 40000, b, 80)]
    assert outs[2] == [("fa", "tcp", Lab.fa_ip, 22, a, 40001)]  # the RST


# Counting rules by ctstate in every table's OUTPUT and POSTROUTING: where REJECT's replies go.
REJECT_PATH = """*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A OUTPUT -m conntrack --ctstate NEW
-A OUTPUT -m conntrack --ctstate RELATED
-A OUTPUT -m conntrack --ctstate INVALID
-A OUTPUT -m conntrack --ctdir REPLY
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -m conntrack --ctstate RELATED
-A OUTPUT -m conntrack --ctstate ESTABLISHED
-A POSTROUTING -m conntrack --ctstate NEW
-A POSTROUTING -m conntrack --ctstate RELATED
-A POSTROUTING -p tcp --tcp-flags RST RST
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -m conntrack --ctstate RELATED
-A OUTPUT
-A POSTROUTING -m conntrack --ctstate RELATED
-A POSTROUTING -p tcp
-A POSTROUTING -p icmp
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset
-A INPUT -p tcp --dport 23 -j REJECT
-A FORWARD -p tcp --dport 80 -j REJECT
-A FORWARD -p tcp --dport 81 -j REJECT --reject-with tcp-reset
-A FORWARD -p tcp --dport 82 -j ACCEPT
-A FORWARD -p tcp --dport 83 -j REJECT --reject-with tcp-reset
-A OUTPUT -m conntrack --ctstate RELATED
-A OUTPUT -m conntrack --ctstate INVALID
-A OUTPUT -p tcp --dport 40005 -j DROP
COMMIT
"""


@pytest.mark.root
@pytest.mark.skipif(KERNEL_REASON is not None, reason=KERNEL_REASON or "")
def test_reject_replies_pass_output_and_postrouting_as_the_kernels_do():
    a, b = Lab.ghost_a, Lab.ghost_b
    traffic = [
        ("a", tcp(a, Lab.fa_ip, 40000, 22, 701)),  # INPUT: reset
        ("a", tcp(a, Lab.fa_ip, 40001, 23, 702)),  # INPUT: port unreachable
        ("a", tcp(a, b, 40002, 80, 703)),  # FORWARD: port unreachable
        ("a", tcp(a, b, 40003, 81, 704)),  # FORWARD: reset
        ("a", tcp(a, b, 40005, 83, 706)),  # FORWARD: a reset that filter OUTPUT drops
    ]
    outs = _compare(REJECT_PATH, traffic, tables=("raw", "mangle", "nat", "filter"))
    assert outs[0] == [("fa", "tcp", Lab.fa_ip, 22, a, 40000)]
    assert outs[2] == [("fa", "icmp", Lab.fa_ip, a, 3, 3)]
    assert outs[4] == []


# --------------------------------------------------------------------------------------------------
# nftables: the same ruleset through nft -f and through statewall


def _nft_kernel(ruleset: str, table: str, traffic: list[tuple[str, bytes]]) -> tuple[list[list[tuple]], str]:
    with Lab() as lab:
        sh("ip", "netns", "exec", lab.fw, "nft", "-f", "-", input=ruleset)
        outs = _send_through_fw(lab, traffic)
        listing = sh("ip", "netns", "exec", lab.fw, "nft", "list", "table", *table.split())
    return outs, listing


@pytest.mark.root
@pytest.mark.skipif(KERNEL_REASON is not None, reason=KERNEL_REASON or "")
def test_docker_nftables_backend_agrees_with_the_kernel_packets_and_counters():
    from statewall.dialects.nftables import parse as parse_nft
    from statewall.dialects.nftables.render import table_lines

    text = (CONFIGS / "docker-29-nftables.nft").read_text()
    for old, new in (("bridge1", "fb"), ("192.0.2.0/24", "10.77.2.0/24"), ("192.0.2.2", "10.77.2.100")):
        text = text.replace(old, new)
    ruleset = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
    a, b = Lab.ghost_a, Lab.ghost_b
    traffic = [
        ("a", tcp(a, Lab.fa_ip, 40000, 8080, 601)),  # published: DNAT to the container
        ("a", tcp(a, b, 40001, 80, 602)),  # straight to the container: raw's DROP DIRECT ACCESS
        ("b", tcp(b, a, 50000, 443, 603)),  # the container out: masqueraded
        ("a", tcp(a, Lab.fa_ip, 40002, 8080, 604)),  # published again, a second connection
    ]
    k_out, k_listing = _nft_kernel(ruleset, "ip docker-bridges", traffic)
    policy = parse_nft(HEADER + ruleset, "docker.nft")
    fw = Firewall(policy)
    s_out, _ = _replay(fw, traffic)
    assert s_out == k_out
    assert s_out[0] == [("fb", "tcp", a, 40000, b, 80)] and s_out[1] == []
    assert s_out[2] == [("fa", "tcp", Lab.fa_ip, 50000, a, 443)]
    ours = "\n".join(table_lines(policy, policy.nft_tables[0], fw.netfilter.nft_counters())) + "\n"
    # The chains with their counters; the maps' elements come out of a hash table in the kernel's
    # order, which depends on the names, so they are compared as sets.
    assert _without_maps(ours) == _without_maps(k_listing)
    assert _map_elements(ours) == _map_elements(k_listing)


@pytest.mark.root
@pytest.mark.skipif(KERNEL_REASON is not None, reason=KERNEL_REASON or "")
def test_firewalld_nftables_backend_agrees_with_the_kernel_packets():
    """firewalld's own nftables tables (tests/configs/firewalld-nftables.nft, all three) with its
    public zone on fa and libvirt's zone on fb: zone to zone forwarding through the FWDI/FWDO chains,
    and the zone's final REJECT (icmpx admin-prohibited) for a port the zone does not open. Packets
    the kernel's own stack would answer (a service the zone accepts) are left out: statewall runs no
    stack."""
    from statewall.dialects.nftables import parse as parse_nft

    text = (CONFIGS / "firewalld-nftables.nft").read_text()
    for old, new in (('"enp0s3"', '"fa"'), ('"virbr0"', '"fb"')):
        text = text.replace(old, new)
    ruleset = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
    a, b = Lab.ghost_a, Lab.ghost_b
    traffic = [
        ("a", tcp(a, b, 40000, 80, 801)),  # public -> libvirt: FWDO_libvirt accepts
        ("b", tcp(b, a, 50000, 443, 802)),  # libvirt -> public: FWDI_libvirt accepts
        ("a", tcp(a, Lab.fa_ip, 40001, 25, 803)),  # public's INPUT: not a service, REJECT
        ("a", tcp(a, b, 40000, 80, 804)),  # the first connection's SYN again
    ]
    k_out, _listing = _nft_kernel(ruleset, "inet firewalld", traffic)
    fw = Firewall(parse_nft(HEADER + ruleset, "firewalld.nft"))
    s_out, _ = _replay(fw, traffic)
    assert s_out == k_out
    assert s_out[0] == [("fb", "tcp", a, 40000, b, 80)]
    assert s_out[1] == [("fa", "tcp", b, 50000, a, 443)]
    assert s_out[2] == [("fa", "icmp", Lab.fa_ip, a, 3, 13)]


def _without_maps(listing: str) -> str:
    blocks = listing.split("\n\n")
    return "\n\n".join(
        b for b in blocks if not b.removeprefix("table ip docker-bridges {\n").startswith("\tmap ")
    )


def _map_elements(listing: str) -> set[str]:
    import re

    return set(re.findall(r'"[^"]+" : [a-z]+ [\w-]+', listing))


# Sets as hand-written rulesets use them: concatenations (named and anonymous), th, a meter, a set the
# packet path fills (add) and checks, limit rate over, a byte limit, log group.
NFT_SETS = """table inet t {
	set seen {
		type ipv4_addr
		flags timeout
		timeout 1m
	}

	set pairs {
		type ipv4_addr . inet_service
		elements = { 10.77.1.100 . 81 }
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		ip saddr . tcp dport @pairs counter drop
		ip saddr . tcp dport { 10.77.1.100 . 82 } counter drop
		th dport 83 counter drop
		tcp dport 84 meter m { ip saddr limit rate over 1/minute burst 2 packets } counter drop
		tcp dport 86 ip saddr @seen counter drop
		tcp dport 85 add @seen { ip saddr } counter
		tcp dport 87 limit rate over 2/minute burst 1 packets counter drop
		tcp dport 88 limit rate 10 bytes/second burst 110 bytes counter accept
		tcp dport 88 counter drop
		log prefix "fwd " group 2
	}
}
"""


@pytest.mark.root
@pytest.mark.skipif(KERNEL_REASON is not None, reason=KERNEL_REASON or "")
def test_nft_sets_meters_and_limits_agree_with_the_kernel_packets_counters_and_elements():
    import re

    from statewall.dialects.nftables import parse as parse_nft
    from statewall.dialects.nftables.render import table_lines

    a, b = Lab.ghost_a, Lab.ghost_b
    ports = [81, 82, 83, 84, 84, 84, 84, 86, 85, 86, 87, 87, 87, 88, 88, 88, 88, 88, 89]
    traffic = [("a", tcp(a, b, 40000 + i, p, 800 + i)) for i, p in enumerate(ports)]
    k_out, k_listing = _nft_kernel(NFT_SETS, "inet t", traffic)
    policy = parse_nft(HEADER + NFT_SETS, "sets.nft")
    fw = Firewall(policy)
    s_out, now = _replay(fw, traffic)
    assert s_out == k_out
    passed = [p for p, out in zip(ports, s_out, strict=True) if out]
    assert passed == [84, 84, 86, 85, 87, 88, 88, 88, 89]
    nf = fw.netfilter
    lines = table_lines(policy, policy.nft_tables[0], nf.nft_counters(), nf.nft_elements(now))
    ours = "\n".join(lines) + "\n"

    def timeless(listing: str) -> str:  # what is left of an element's timeout depends on the clock
        return re.sub(r" expires [0-9a-z]+", "", listing)

    assert timeless(ours) == timeless(k_listing)
    assert "elements = { 10.77.1.100 }" in timeless(ours)


# Data maps: a port forward by map (address, and address . port), marks from a map; a port without
# an entry leaves the rule (NFT_BREAK).
NFT_MAPS = """table ip t {
	map portfwd {
		type inet_service : ipv4_addr . inet_service
		elements = { 8080 : 10.77.2.100 . 80 }
	}

	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		dnat ip to tcp dport map @portfwd
		dnat to tcp dport map { 8081 : 10.77.2.100 }
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		meta mark set tcp dport map { 22 : 0x00000002, 80 : 0x00000001 } counter
		meta mark 0x00000001 counter
		meta mark 0x00000002 counter drop
		counter
	}
}
"""


@pytest.mark.root
@pytest.mark.skipif(KERNEL_REASON is not None, reason=KERNEL_REASON or "")
def test_nft_data_maps_agree_with_the_kernel():
    from statewall.dialects.nftables import parse as parse_nft
    from statewall.dialects.nftables.render import table_lines

    a, b = Lab.ghost_a, Lab.ghost_b
    traffic = [
        ("a", tcp(a, Lab.fa_ip, 40000, 8080, 901)),  # to b:80 by @portfwd, then marked 1
        ("a", tcp(a, Lab.fa_ip, 40001, 8081, 902)),  # to b:8081 by the anonymous map, no mark
        ("a", tcp(a, b, 40002, 22, 903)),  # marked 2: dropped
        ("a", tcp(a, b, 40003, 443, 904)),  # no entry: the mark rule stops, nothing marked
    ]
    k_out, k_listing = _nft_kernel(NFT_MAPS, "ip t", traffic)
    policy = parse_nft(HEADER + NFT_MAPS, "maps.nft")
    fw = Firewall(policy)
    s_out, _ = _replay(fw, traffic)
    assert s_out == k_out
    assert s_out[0] == [("fb", "tcp", a, 40000, b, 80)] and s_out[1] == [("fb", "tcp", a, 40001, b, 8081)]
    assert s_out[2] == []
    ours = "\n".join(table_lines(policy, policy.nft_tables[0], fw.netfilter.nft_counters())) + "\n"
    assert ours == k_listing


# ct timeout objects: set before conntrack (raw) they do nothing, after it (prerouting at filter,
# forward) the new connection takes the policy's timeouts, the first one (syn_sent) at once.
NFT_CT_TIMEOUT = """table ip t {
	ct timeout early {
		protocol tcp
		l3proto ip
		policy = { syn_sent : 7, established : 100 }
	}

	ct timeout late {
		protocol tcp
		l3proto ip
		policy = { syn_sent : 9, established : 200 }
	}

	chain raw {
		type filter hook prerouting priority raw; policy accept;
		tcp dport 81 ct timeout set "early"
	}

	chain pre {
		type filter hook prerouting priority filter; policy accept;
		tcp dport 82 ct timeout set "late"
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		tcp dport 83 ct timeout set "late"
	}
}
"""


@pytest.mark.root
@pytest.mark.skipif(KERNEL_REASON is not None, reason=KERNEL_REASON or "")
def test_nft_ct_timeout_objects_agree_with_the_kernel():
    from statewall.dialects.nftables import list_ruleset
    from statewall.dialects.nftables import parse as parse_nft

    a, b = Lab.ghost_a, Lab.ghost_b
    traffic = [("a", tcp(a, b, 40000 + p, p, 950 + p)) for p in (80, 81, 82, 83)]
    with Lab() as lab:
        sh("ip", "netns", "exec", lab.fw, "nft", "-f", "-", input=NFT_CT_TIMEOUT)
        _send_through_fw(lab, traffic)
        kernel = {r["dport"]: r["timeout"] for r in lab.conntrack_table()}
        listing = sh("ip", "netns", "exec", lab.fw, "nft", "list", "table", "ip", "t")
    policy = parse_nft(HEADER + NFT_CT_TIMEOUT, "cto.nft")
    assert list_ruleset(policy) == listing
    fw = Firewall(policy)
    now = 1000.0
    for _side, ip in traffic:
        fw.receive("fa", ip, now)
    ours = {h.conn.responder.port: h.conn.deadline() - now for h in fw.conns.by_key.values()}
    assert set(ours) == set(kernel) == {80, 81, 82, 83}
    for port, left in ours.items():
        # The kernel's table shows whole seconds left, a second or two after the packets.
        assert kernel[port] <= left <= kernel[port] + 3, (port, left, kernel[port])
    assert ours[81] == 120 and ours[82] == ours[83] == 9


# Ingress: a netdev chain on fa drops before conntrack and marks what it lets through; the forward
# chain sees the mark.
NFT_INGRESS = """table netdev edge {
	chain in_fa {
		type filter hook ingress device "fa" priority filter; policy accept;
		tcp dport 81 counter packets 0 bytes 0 drop
		meta protocol ip meta mark set 0x00000005
	}
}
table inet t {
	chain forward {
		type filter hook forward priority filter; policy accept;
		meta mark 0x00000005 counter packets 0 bytes 0
		counter packets 0 bytes 0
	}
}
"""


@pytest.mark.root
@pytest.mark.skipif(KERNEL_REASON is not None, reason=KERNEL_REASON or "")
def test_nft_ingress_chains_agree_with_the_kernel():
    from statewall.dialects.nftables import list_ruleset
    from statewall.dialects.nftables import parse as parse_nft

    a, b = Lab.ghost_a, Lab.ghost_b
    traffic = [
        ("a", tcp(a, b, 40000, 80, 971)),  # marked at ingress, counted marked in forward
        ("a", tcp(a, b, 40001, 81, 972)),  # dropped at ingress
        ("b", tcp(b, a, 40002, 80, 973)),  # from fb: no ingress chain there, not marked
    ]
    with Lab() as lab:
        sh("ip", "netns", "exec", lab.fw, "nft", "-f", "-", input=NFT_INGRESS)
        k_out = _send_through_fw(lab, traffic)
        k_listing = sh("ip", "netns", "exec", lab.fw, "nft", "list", "table", "netdev", "edge")
        k_listing += sh("ip", "netns", "exec", lab.fw, "nft", "list", "table", "inet", "t")
    policy = parse_nft(HEADER + NFT_INGRESS, "ingress.nft")
    fw = Firewall(policy)
    s_out, _ = _replay(fw, traffic)
    assert s_out == k_out
    assert [len(o) for o in s_out] == [1, 0, 1]
    from statewall.dialects.nftables.render import table_lines

    counters = fw.netfilter.nft_counters()
    ours = "".join("\n".join(table_lines(policy, t, counters)) + "\n" for t in policy.nft_tables)
    assert ours == k_listing
    assert list_ruleset(parse_nft(NFT_INGRESS, "again.nft")) == NFT_INGRESS
