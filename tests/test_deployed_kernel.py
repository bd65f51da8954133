"""Docker's, ufw's, firewalld's and OpenWrt fw3's rulesets against the kernel: the same ruleset loaded
into iptables-legacy in a namespace (fw, between a and b) and into statewall, the same packets through
both, the same packets out (NAT rewrites included), the same REJECT replies and the same rule
counters.

The rulesets are tests/configs/docker-20-default.rules, ufw.rules, firewalld-iptables.rules and
openwrt-fw3.rules with the lab's interfaces and addresses put in place of the host's (the outside is
fa, the containers', internal zone's or LAN's side fb). What leaves is compared with its addresses,
ports and MSS option. Known difference, left out of the counter comparison: the kernel's own stack
(RSTs for closed local ports) and the replies REJECT sends, which leave through OUTPUT and
POSTROUTING in the kernel but pass none of statewall's chains.
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


def _kernel(rules: str, traffic: list[tuple[str, bytes]]) -> tuple[list[list[tuple]], dict[str, str]]:
    with Lab() as lab:
        sh("ip", "netns", "exec", lab.fw, "iptables-legacy-restore", input=rules)
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
        listings = {
            t: iptables_kernel.protocol_names(
                sh("ip", "netns", "exec", lab.fw, "iptables-legacy", "-t", t, "-nvxL")
            )
            for t in ("filter", "nat")
        }
    return outs, listings


def _statewall(
    rules: str, traffic: list[tuple[str, bytes]]
) -> tuple[list[list[tuple]], dict[str, str], object]:
    policy = parse(HEADER + rules, "lab.rules")
    fw = Firewall(policy)
    outs = []
    now = 1000.0
    for side, ip in traffic:
        now += 0.05
        res = fw.receive("fa" if side == "a" else "fb", ip, now)
        outs.append(sorted(_outcome(o, bytes(p)) for o, p in res.packets))
    nf = fw.netfilter
    listings = {
        t: format_listing(policy, t, nf.counters(t)) for t in ("filter", "nat") if t in policy.netfilter
    }
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
    k_out, k_list = _kernel(rules, traffic)
    s_out, s_list, _fw = _statewall(rules, traffic)
    assert s_out == k_out
    for table, ours in s_list.items():
        if table in tables:
            assert _forwarding_chains(ours) == _forwarding_chains(k_list[table]), table
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
    # nat: the kernel's RSTs (REJECT --reject-with tcp-reset) leave through LOCAL_OUT and POSTROUTING,
    # where nat counts them; statewall's replies do not pass its chains. The filter table agrees.
    outs = _compare(adapted("openwrt-fw3.rules", FW3), traffic, tables=("filter",))
    # xt_TCPMSS adds the option a SYN lacks: min(PMTU - 40, 536) (RFC 879's default).
    assert outs[0] == [("fa", "tcp", Lab.fa_ip, 50000, a, 443, "mss 536")]
    assert outs[1] == [("fb", "tcp", a, 40000, b, 80)]
    assert outs[2] == [("fa", "tcp", Lab.fa_ip, 22, a, 40001)]  # the RST
