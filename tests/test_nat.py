"""NAT: ASA 8.2 pools and PAT through the engine, endpoint-independent mapping, port classes, xlate
timers with their 305010/305012 lines, exhausted pools with 305006, ``show xlate`` after a replay, and
Linux's allocator for the iptables targets, checked against the kernel where this machine can run it."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.utils import wrpcap

from fixtures import kinds
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import Drop, DropReason, XlateBuilt, XlateTeardown
from statewall.logfmt.asa import format_event
from statewall.nat import NatFailure, PortSet, _search
from statewall.nf_nat import NfNat, NfRange, jhash2, nf_best_address, nf_range

BASE = """\
ASA Version 8.2(5)
hostname fw
interface Ethernet0
 nameif outside
 security-level 0
 ip address 192.0.2.1 255.255.255.0
interface Ethernet1
 nameif inside
 security-level 100
 ip address 10.0.0.1 255.255.255.0
route outside 0.0.0.0 0.0.0.0 192.0.2.254 1
route inside 10.0.0.0 255.0.0.0 10.0.0.254 1
"""
OUTSIDE_IP = "192.0.2.1"
SERVER = "203.0.113.9"


def fw_with(*lines: str) -> Firewall:
    return Firewall(parse(BASE + "".join(line + "\n" for line in lines), "nat.cfg"))


def log(events) -> list[str]:
    return [line for ev in events for line in format_event(ev, timestamp=False)]


def udp_out(fw: Firewall, src: str, sport: int, dst: str = SERVER, dport: int = 123, now: float = 1.0):
    # NTP: a UDP service no default inspection takes (DNS on 53 would want a DNS message).
    res = fw.receive("inside", bytes(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / b"q"), now)
    out = [IP(bytes(data)) for iface, data in res.packets if iface == "outside"]
    return res, (out[0] if out else None)


def addr(text: str) -> int:
    return int(ipaddress.ip_address(text))


# --------------------------------------------------------------------------------------------------
# Pools (ASA 8.2 global)


def test_global_range_hands_out_one_address_per_host_then_falls_back_to_interface_pat():
    fw = fw_with(
        "global (outside) 1 198.51.100.10-198.51.100.11",
        "global (outside) 1 interface",
        "nat (inside) 1 10.0.0.0 255.255.255.0",
    )
    seen = []
    for n, host in enumerate(("10.0.0.2", "10.0.0.3", "10.0.0.4")):
        res, pkt = udp_out(fw, host, 4000 + n)
        seen.append((pkt.src, pkt[UDP].sport))
        (xb,) = kinds(res.events, XlateBuilt)
        assert xb.real_address == host
    assert seen == [("198.51.100.10", 4000), ("198.51.100.11", 4001), (OUTSIDE_IP, 4002)]
    # A one-to-one slot covers every port of its host: a second flow builds no new xlate.
    res, pkt = udp_out(fw, "10.0.0.2", 9999)
    assert (pkt.src, pkt[UDP].sport) == ("198.51.100.10", 9999) and not kinds(res.events, XlateBuilt)


def test_dynamic_nat_slot_and_pat_slot_log_305009_and_305011():
    fw = fw_with(
        "global (outside) 1 198.51.100.10-198.51.100.10",
        "global (outside) 2 198.51.100.20-198.51.100.29",
        "nat (inside) 1 10.0.0.2 255.255.255.255",
        "nat (inside) 2 10.0.0.0 255.255.255.0",
    )
    res, _ = udp_out(fw, "10.0.0.2", 4000)
    assert log(kinds(res.events, XlateBuilt)) == [
        "%ASA-6-305011: Built dynamic UDP translation from inside:10.0.0.2/4000 to outside:198.51.100.10/4000"
    ]
    res, _ = udp_out(fw, "10.0.0.3", 4000)
    assert log(kinds(res.events, XlateBuilt)) == [
        "%ASA-6-305009: Built dynamic translation from inside:10.0.0.3 to outside:198.51.100.20"
    ]


def test_exhausted_dynamic_pool_drops_with_305006_regular():
    fw = fw_with("global (outside) 1 198.51.100.10-198.51.100.11", "nat (inside) 1 10.0.0.0 255.255.255.0")
    udp_out(fw, "10.0.0.2", 4000)
    udp_out(fw, "10.0.0.3", 4000)
    res, pkt = udp_out(fw, "10.0.0.4", 4000)
    assert pkt is None
    (drop,) = kinds(res.events, Drop)
    assert (
        drop.reason is DropReason.NAT_FAILED and drop.origin.text == "nat (inside) 1 10.0.0.0 255.255.255.0"
    )
    assert log(res.events) == [
        "%ASA-3-305006: regular translation creation failed for udp src inside:10.0.0.4/4000 "
        f"dst outside:{SERVER}/123"
    ]
    assert fw.drops[DropReason.NAT_FAILED] == 1


def test_exhausted_pat_class_drops_with_305006_portmap():
    """511 ports in the 1-511 class of the interface address: the 512th privileged source fails."""
    fw = fw_with("global (outside) 1 interface", "nat (inside) 1 10.0.0.0 255.255.0.0")
    mapped = set()
    for n in range(511):
        _, pkt = udp_out(fw, f"10.0.{n // 250 + 1}.{n % 250 + 2}", 111)
        mapped.add(pkt[UDP].sport)
    assert mapped == set(range(1, 512))
    res, pkt = udp_out(fw, "10.0.9.9", 111)
    assert pkt is None
    assert log(res.events) == [
        "%ASA-3-305006: portmap translation creation failed for udp src inside:10.0.9.9/111 "
        f"dst outside:{SERVER}/123"
    ]
    # Other classes are unaffected.
    _, pkt = udp_out(fw, "10.0.9.9", 40000)
    assert pkt[UDP].sport == 40000


def test_pat_needs_ports():
    """GRE through PAT fails as on the ASA (no ports to tell flows apart): 305006 portmap."""
    fw = fw_with("global (outside) 1 interface", "nat (inside) 1 10.0.0.0 255.255.255.0")
    res = fw.receive("inside", bytes(IP(src="10.0.0.2", dst=SERVER, proto=47) / (b"\x00" * 8)), 1.0)
    assert res.packets == []
    assert log(res.events) == [
        f"%ASA-3-305006: portmap translation creation failed for gre src inside:10.0.0.2 dst outside:{SERVER}"
    ]


# --------------------------------------------------------------------------------------------------
# Endpoint-independent mapping and port classes


PAT = ("global (outside) 1 interface", "nat (inside) 1 10.0.0.0 255.255.255.0")


def test_udp_mapping_is_endpoint_independent():
    """RFC 4787 REQ-1: the same internal endpoint keeps its mapping to every destination."""
    fw = fw_with(*PAT)
    _, first = udp_out(fw, "10.0.0.2", 700)  # take 700 so that the next host's 700 must move
    _, a = udp_out(fw, "10.0.0.3", 700, dst="203.0.113.9")
    _, b = udp_out(fw, "10.0.0.3", 700, dst="198.51.100.77", dport=123)
    _, c = udp_out(fw, "10.0.0.3", 700, dst="203.0.113.200", dport=5060)
    assert first[UDP].sport == 700
    assert a[UDP].sport != 700 and a[UDP].sport == b[UDP].sport == c[UDP].sport
    assert a.src == b.src == c.src == OUTSIDE_IP
    assert len(fw.nat.xlates) == 2  # one slot per internal endpoint, not per destination


def test_tcp_mapping_is_endpoint_independent():
    """RFC 5382 REQ-1: likewise for TCP, while the first connection is still open."""
    fw = fw_with(*PAT)
    fw.receive("inside", bytes(IP(src="10.0.0.9", dst=SERVER) / TCP(sport=50000, dport=80, flags="S")), 1.0)
    ports = []
    for dst in ("203.0.113.9", "203.0.113.10", "198.51.100.1"):
        syn = IP(src="10.0.0.2", dst=dst) / TCP(sport=50000, dport=443, flags="S", seq=1)
        res = fw.receive("inside", bytes(syn), 2.0)
        ports.append(IP(bytes(res.packets[0][1]))[TCP].sport)
    assert ports[0] != 50000 and ports == [ports[0]] * 3
    # An answer from a third destination reaches the host through the same mapped port.
    assert len({x.mapped_port for x in fw.nat.xlates.values()}) == 2


@pytest.mark.parametrize(
    ("real_port", "low", "high"), [(100, 1, 511), (700, 512, 1023), (40000, 1024, 65535)]
)
def test_a_moved_port_stays_in_its_class(real_port, low, high):
    fw = fw_with(*PAT)
    _, first = udp_out(fw, "10.0.0.2", real_port)
    _, moved = udp_out(fw, "10.0.0.3", real_port)
    assert first[UDP].sport == real_port
    assert moved[UDP].sport != real_port and low <= moved[UDP].sport <= high


def test_icmp_echo_identifiers_are_translated_and_kept_when_free():
    # No inspect icmp: the reply comes in by an access rule of its own, through the request's PAT slot.
    fw = fw_with(
        *PAT,
        "access-list OUT extended permit icmp any any echo-reply",
        "access-group OUT in interface outside",
    )
    a = fw.receive("inside", bytes(IP(src="10.0.0.2", dst=SERVER) / ICMP(type=8, id=77, seq=1)), 1.0)
    b = fw.receive("inside", bytes(IP(src="10.0.0.3", dst=SERVER) / ICMP(type=8, id=77, seq=1)), 1.0)
    ida = IP(bytes(a.packets[0][1]))[ICMP].id
    idb = IP(bytes(b.packets[0][1]))[ICMP].id
    assert ida == 77 and idb != 77
    reply = IP(src=SERVER, dst=OUTSIDE_IP) / ICMP(type=0, id=idb, seq=1)
    (iface, data) = fw.receive("outside", bytes(reply), 1.1).packets[0]
    back = IP(bytes(data))
    assert iface == "inside" and back.dst == "10.0.0.3" and back[ICMP].id == 77
    del back[ICMP].chksum
    assert IP(bytes(back))[ICMP].chksum == IP(bytes(data))[ICMP].chksum


def test_static_port_mapping_reserves_its_port_from_pat():
    fw = fw_with(
        *PAT,
        "static (inside,outside) tcp interface 8080 10.0.0.5 www netmask 255.255.255.255",
    )
    syn = IP(src="10.0.0.2", dst=SERVER) / TCP(sport=8080, dport=80, flags="S")
    out = IP(bytes(fw.receive("inside", bytes(syn), 1.0).packets[0][1]))
    assert out.src == OUTSIDE_IP and out[TCP].sport != 8080 and 1024 <= out[TCP].sport <= 65535


# --------------------------------------------------------------------------------------------------
# nat 0 and statics


def test_nat_0_access_list_exempts_what_it_permits():
    fw = fw_with(
        "access-list NONAT extended permit ip 10.0.0.0 255.255.255.0 172.16.0.0 255.255.0.0",
        "nat (inside) 0 access-list NONAT",
        *PAT,
    )
    _, vpn = udp_out(fw, "10.0.0.2", 4000, dst="172.16.3.4")
    _, web = udp_out(fw, "10.0.0.2", 4001, dst=SERVER)
    assert vpn.src == "10.0.0.2" and web.src == OUTSIDE_IP


def test_policy_static_translates_only_toward_its_access_list_destination():
    fw = fw_with(
        *PAT,
        "access-list POL extended permit ip host 10.0.0.5 host 203.0.113.9",
        "static (inside,outside) 198.51.100.5 access-list POL",
        "access-list OUT extended permit tcp any host 198.51.100.5 eq 22",
        "access-group OUT in interface outside",
    )
    _, partner = udp_out(fw, "10.0.0.5", 5000, dst="203.0.113.9")
    _, other = udp_out(fw, "10.0.0.5", 5001, dst="203.0.113.10")
    assert (partner.src, other.src) == ("198.51.100.5", OUTSIDE_IP)
    syn = IP(src="203.0.113.9", dst="198.51.100.5") / TCP(sport=40000, dport=22, flags="S")
    (iface, data) = fw.receive("outside", bytes(syn), 2.0).packets[0]
    assert iface == "inside" and IP(bytes(data)).dst == "10.0.0.5"
    stranger = IP(src="203.0.113.10", dst="198.51.100.5") / TCP(sport=40000, dport=22, flags="S")
    assert fw.receive("outside", bytes(stranger), 2.0).packets == []


def test_static_network_keeps_the_host_part_both_ways():
    fw = fw_with(
        "static (inside,outside) 198.51.100.0 10.0.1.0 netmask 255.255.255.0",
        "access-list OUT extended permit tcp any 198.51.100.0 255.255.255.0 eq 22",
        "access-group OUT in interface outside",
    )
    _, out = udp_out(fw, "10.0.1.77", 5000)
    assert out.src == "198.51.100.77"
    syn = IP(src=SERVER, dst="198.51.100.42") / TCP(sport=40000, dport=22, flags="S")
    (iface, data) = fw.receive("outside", bytes(syn), 2.0).packets[0]
    assert iface == "inside" and IP(bytes(data)).dst == "10.0.1.42"


def test_dynamic_nat_slot_accepts_connections_to_its_mapped_address_while_it_lives():
    fw = fw_with(
        "global (outside) 1 198.51.100.10-198.51.100.20",
        "nat (inside) 1 10.0.0.0 255.255.255.0",
        "access-list OUT extended permit udp any any",
        "access-group OUT in interface outside",
    )
    udp_out(fw, "10.0.0.2", 4000)
    probe = IP(src="198.51.100.200", dst="198.51.100.10") / UDP(sport=1, dport=7)
    (iface, data) = fw.receive("outside", bytes(probe), 2.0).packets[0]
    assert iface == "inside" and IP(bytes(data)).dst == "10.0.0.2"
    # The inbound connection holds the slot too: it outlives the outbound one (gone at 121 s).
    fw.advance(121.5 + 10800)
    assert len(fw.nat.xlates) == 1
    # Once the slot has timed out (3 h after its last connection), the address leads nowhere.
    fw.advance(122.0 + 10800 + 1)
    assert fw.nat.xlates == {}
    res = fw.receive("outside", bytes(probe), 20000.0)
    assert res.packets == [] and kinds(res.events, Drop)


# --------------------------------------------------------------------------------------------------
# Timers


def test_pat_xlate_idles_out_30_seconds_after_its_last_connection():
    fw = fw_with(*PAT)
    udp_out(fw, "10.0.0.2", 4000, now=10.0)
    udp_out(fw, "10.0.0.2", 4000, dst="203.0.113.10", now=70.0)  # a second conn on the same slot
    # The first UDP conn idles out at 130, the second at 190; the slot then waits pat-xlate (0:00:30)
    # and has lived 3:30 when it goes.
    assert kinds(fw.advance(219.0).events, XlateTeardown) == []
    res = fw.advance(221.0)
    assert log(kinds(res.events, XlateTeardown)) == [
        "%ASA-6-305012: Teardown dynamic UDP translation from inside:10.0.0.2/4000 to "
        f"outside:{OUTSIDE_IP}/4000 duration 0:03:30"
    ]


def test_dynamic_nat_xlate_idles_out_after_timeout_xlate():
    fw = fw_with("global (outside) 1 198.51.100.10-198.51.100.20", "nat (inside) 1 10.0.0.0 255.255.255.0")
    udp_out(fw, "10.0.0.2", 4000, now=0.0)
    # UDP conn gone at 120 s; the one-to-one slot lives 3:00:00 more.
    assert kinds(fw.advance(120.0 + 10799).events, XlateTeardown) == []
    res = fw.advance(120.0 + 10801)
    assert log(kinds(res.events, XlateTeardown)) == [
        "%ASA-6-305010: Teardown dynamic translation from inside:10.0.0.2 to outside:198.51.100.10 "
        "duration 3:02:00"
    ]
    # The address went back to the pool: the next host gets it.
    _, pkt = udp_out(fw, "10.0.0.3", 1, now=20000.0)
    assert pkt.src == "198.51.100.10"


def test_timeout_xlate_and_pat_xlate_are_configurable():
    fw = fw_with(*PAT, "timeout xlate 1:00:00", "timeout pat-xlate 0:01:00")
    udp_out(fw, "10.0.0.2", 4000, now=0.0)
    assert kinds(fw.advance(179.0).events, XlateTeardown) == []
    assert len(kinds(fw.advance(181.0).events, XlateTeardown)) == 1


# --------------------------------------------------------------------------------------------------
# show xlate after a replay


def test_replay_prints_show_xlate_and_show_conn_as_the_tables_stood(tmp_path):
    from statewall.cli import main

    cfg = tmp_path / "fw.cfg"
    cfg.write_text(BASE + "global (outside) 1 interface\nnat (inside) 1 10.0.0.0 255.255.255.0\n")
    packets = [
        IP(src="10.0.0.2", dst=SERVER) / UDP(sport=700, dport=123) / b"a",
        IP(src="10.0.0.3", dst=SERVER) / UDP(sport=700, dport=123) / b"b",
    ]
    for t, p in zip((1000.0, 1005.0), packets):
        p.time = t
    wrpcap(str(tmp_path / "in.pcap"), packets)
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(
            [
                "replay",
                "-c",
                str(cfg),
                "-o",
                str(tmp_path / "out"),
                "--ingress",
                f"inside={tmp_path / 'in.pcap'}",
                "--show",
                "xlate",
                "--show",
                "conn",
                "--drain",
                "600",
            ]
        )
    assert rc == 0
    text = buf.getvalue()
    xlate = text[text.index("2 in use") :]
    lines = xlate.splitlines()
    assert lines[0] == "2 in use, 2 most used"
    # ASA Version 8.2: show xlate's 8.2 form, no legend (8.2 command reference).
    assert lines[1] == f"PAT Global {OUTSIDE_IP}(700) Local 10.0.0.2(700)"
    assert lines[2].startswith(f"PAT Global {OUTSIDE_IP}(") and lines[2].endswith(") Local 10.0.0.3(700)")
    assert f"UDP outside {SERVER}:123 inside 10.0.0.2:700, idle 0:00:05, bytes 1, flags " in text
    assert "2 in use, 2 most used\nUDP outside" in text  # show conn: both UDP conns (drained later)


# --------------------------------------------------------------------------------------------------
# Linux's allocator (iptables SNAT / MASQUERADE / DNAT / REDIRECT)


def table() -> NfNat:
    return NfNat()


class Conntrack:
    """The reply tuples in use, as the kernel's conntrack hash holds them."""

    def __init__(self) -> None:
        self.replies: set[tuple] = set()

    def snat(self, nat: NfNat, src, sport, dst, dport, rng, proto=17):
        def used(a, p):
            return (proto, dst, dport, a, p) in self.replies

        x = nat.translate("src", 4, proto, src, sport, dst, dport, rng, used, 0.0)
        self.replies.add((proto, dst, dport, x.mapped_addr, x.mapped_port))
        return x


def test_snat_keeps_the_tuple_when_it_is_free_and_moves_within_the_class_otherwise():
    nat, ct = table(), Conntrack()
    rng = NfRange(addr("192.0.2.1"), addr("192.0.2.1"))
    a = ct.snat(nat, addr("10.0.0.2"), 700, addr(SERVER), 53, rng)
    b = ct.snat(nat, addr("10.0.0.3"), 700, addr(SERVER), 53, rng)
    c = ct.snat(nat, addr("10.0.0.4"), 700, addr("203.0.113.10"), 53, rng)  # other destination: no clash
    d = ct.snat(nat, addr("10.0.0.5"), 100, addr(SERVER), 53, rng)
    e = ct.snat(nat, addr("10.0.0.6"), 100, addr(SERVER), 53, rng)
    assert (a.mapped_port, c.mapped_port, d.mapped_port) == (700, 700, 100)
    assert 600 <= b.mapped_port <= 1023 and b.mapped_port != 700  # Linux's class: 600-1023
    assert 1 <= e.mapped_port <= 511 and e.mapped_port != 100


def test_snat_port_range_and_the_existing_mapping_of_the_source():
    nat, ct = table(), Conntrack()
    rng = NfRange(addr("192.0.2.1"), addr("192.0.2.1"), 20000, 20009)
    a = ct.snat(nat, addr("10.0.0.2"), 5000, addr(SERVER), 53, rng)
    assert 20000 <= a.mapped_port <= 20009
    # The same source to another destination: the mapping it already has (find_appropriate_src).
    b = ct.snat(nat, addr("10.0.0.2"), 5000, addr("203.0.113.10"), 53, rng)
    assert (b.mapped_addr, b.mapped_port) == (a.mapped_addr, a.mapped_port)
    # Ten ports to one destination: the eleventh source finds none.
    for n in range(9):
        ct.snat(nat, addr(f"10.0.1.{n + 1}"), 5000, addr(SERVER), 53, rng)
    with pytest.raises(NatFailure) as info:
        ct.snat(nat, addr("10.0.2.1"), 5000, addr(SERVER), 53, rng)
    assert info.value.message == "all ports in use"


def test_dnat_keeps_the_port_without_a_range_and_maps_into_one_with_it():
    nat = table()
    never = lambda a, p: False  # noqa: E731
    x = nat.translate(
        "dst",
        4,
        6,
        addr(SERVER),
        40000,
        addr("192.0.2.1"),
        80,
        NfRange(addr("10.0.0.5"), addr("10.0.0.5")),
        never,
        0.0,
    )
    assert (x.mapped_addr, x.mapped_port) == (addr("10.0.0.5"), 80)
    rng = nf_range("REDIRECT", {"ports": (3128, 3128)}, addr("10.0.0.1"))
    y = nat.translate("dst", 4, 6, addr("10.0.0.2"), 40000, addr(SERVER), 80, rng, never, 0.0)
    assert (y.mapped_addr, y.mapped_port) == (addr("10.0.0.1"), 3128)


def test_random_flags_move_even_a_free_port():
    """--random and --random-fully are NF_NAT_RANGE_PROTO_RANDOM_ALL: the kernel skips keeping the port."""
    never = lambda a, p: False  # noqa: E731
    for flags in ({}, {"random": True}, {"random_fully": True}):
        nat = table()
        rng = nf_range("MASQUERADE", flags, addr("192.0.2.1"))
        x = nat.translate("src", 4, 17, addr("10.0.0.2"), 5000, addr(SERVER), 53, rng, never, 0.0)
        if flags:
            assert x.mapped_port != 5000 and 1024 <= x.mapped_port <= 65535
        else:
            assert x.mapped_port == 5000


def test_masquerade_releases_its_mapping_with_the_connection():
    nat = table()
    rng = nf_range("MASQUERADE", {}, addr("192.0.2.1"))
    x = nat.translate("src", 4, 17, addr("10.0.0.2"), 5000, addr(SERVER), 53, rng, lambda a, p: False, 0.0)
    nat.acquire(x)
    assert x.mapped_addr == addr("192.0.2.1") and nat.nf
    assert nat.release(x, 1.0) is False and nat.nf == {}


def test_address_choice_is_the_kernels_hash():
    lo, hi = addr("198.51.100.10"), addr("198.51.100.20")
    chosen = [nf_best_address(4, addr(f"10.9.0.{i}"), addr("192.0.2.77"), lo, hi) for i in range(1, 9)]
    # As Linux 6.x chose for these eight sources (see test_snat_address_range_against_the_kernel).
    assert [str(ipaddress.ip_address(a)).rsplit(".", 1)[1] for a in chosen] == [
        "18",
        "11",
        "12",
        "19",
        "16",
        "13",
        "18",
        "18",
    ]
    # --persistent: the destination does not count.
    p1 = nf_best_address(4, addr("10.9.0.1"), addr("192.0.2.77"), lo, hi, persistent=True)
    p2 = nf_best_address(4, addr("10.9.0.1"), addr("203.0.113.5"), lo, hi, persistent=True)
    assert p1 == p2 and lo <= p1 <= hi
    assert jhash2([1, 2, 3, 4], 0) != jhash2([1, 2, 3, 5], 0)


# -- against the kernel ----------------------------------------------------------------------------


def _kernel_unavailable() -> str | None:
    for tool in ("unshare", "iptables-legacy", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link add t0 type veth peer name t1 && iptables-legacy -t nat -nL"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot build a namespace with veth and iptables-legacy: {probe.stderr.strip()}"
    return None


def kernel_snat(rule: str, sources: list[tuple[str, int]], dst: str, dport: int, tmp) -> dict:
    """Send one UDP datagram from each (address, port) through ``rule`` in a private namespace; the
    kernel's mapped (address, port) for each, from /proc/net/nf_conntrack."""
    sender = tmp / "send.py"
    sender.write_text(
        textwrap.dedent(
            f"""
            import socket
            for a, p in {sources!r}:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((a, p))
                s.sendto(b"x", ("{dst}", {dport}))
                s.close()
            """
        )
    )
    script = textwrap.dedent(
        f"""
        set -e
        ip link add d0 type veth peer name d1
        ip link set d1 up
        ip addr add 192.0.2.1/24 dev d0
        ip link set d0 up
        ip link set lo up
        for a in {" ".join(sorted({a for a, _ in sources}))}; do ip addr add $a/32 dev lo; done
        iptables-legacy -t nat -A POSTROUTING -o d0 -p udp {rule}
        python3 {sender}
        cat /proc/net/nf_conntrack
        """
    )
    out = subprocess.run(
        ["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, check=True
    ).stdout
    mapped = {}
    for line in out.splitlines():
        kv = [w.split("=", 1) for w in line.split() if "=" in w]
        if len(kv) >= 8 and kv[0][0] == "src":
            mapped[(kv[0][1], int(kv[2][1]))] = (kv[5][1], int(kv[7][1]))
    return mapped


@pytest.mark.skipif(_kernel_unavailable() is not None, reason="no namespace with iptables-legacy here")
def test_snat_address_range_against_the_kernel(tmp_path):
    sources = [(f"10.9.0.{i}", 5000) for i in range(1, 13)]
    kernel = kernel_snat(
        "-j SNAT --to-source 198.51.100.10-198.51.100.20", sources, "192.0.2.77", 53, tmp_path
    )
    nat, ct = table(), Conntrack()
    rng = nf_range(
        "SNAT", {"addresses": (ipaddress.ip_address("198.51.100.10"), ipaddress.ip_address("198.51.100.20"))}
    )
    for a, p in sources:
        x = ct.snat(nat, addr(a), p, addr("192.0.2.77"), 53, rng)
        k_addr, k_port = kernel[(a, p)]
        assert str(ipaddress.ip_address(x.mapped_addr)) == k_addr
        if k_port == p:
            assert x.mapped_port == p  # kept when free, as the kernel kept it
        else:
            # A clash: the kernel searched from a random offset; both moved within 1024-65535.
            assert x.mapped_port != p and 1024 <= x.mapped_port <= 65535 and 1024 <= k_port <= 65535


@pytest.mark.skipif(_kernel_unavailable() is not None, reason="no namespace with iptables-legacy here")
def test_masquerade_port_range_against_the_kernel(tmp_path):
    sources = [("10.9.0.3", 40001), ("10.9.0.1", 5000), ("10.9.0.2", 5000)]
    kernel = kernel_snat("-j MASQUERADE --to-ports 40000-40003", sources, "192.0.2.77", 53, tmp_path)
    nat, ct = table(), Conntrack()
    rng = nf_range("MASQUERADE", {"ports": (40000, 40003)}, addr("192.0.2.1"))
    ours = {}
    for a, p in sources:
        x = ct.snat(nat, addr(a), p, addr("192.0.2.77"), 53, rng)
        ours[(a, p)] = (str(ipaddress.ip_address(x.mapped_addr)), x.mapped_port)
    assert {k: v[0] for k, v in ours.items()} == {k: v[0] for k, v in kernel.items()}
    for mapped in (ours, kernel):
        ports = [port for _, port in mapped.values()]
        assert all(40000 <= port <= 40003 for port in ports) and len(set(ports)) == 3
    # A source port already inside the range is kept by both.
    assert ours[("10.9.0.3", 40001)] == kernel[("10.9.0.3", 40001)] == ("192.0.2.1", 40001)


# --------------------------------------------------------------------------------------------------
# The free-port structure: the same answers as a scan over a set of taken ports


@settings(max_examples=200, deadline=None)
@given(
    taken=st.lists(st.integers(0, 65535), max_size=300),
    freed=st.lists(st.integers(0, 65535), max_size=50),
    dense=st.sampled_from([(0, 0), (1024, 65535), (1024, 9000), (0, 511), (60000, 65535)]),
    cls=st.sampled_from([(1024, 65535), (1, 511), (512, 1023), (0, 65535), (2000, 2100)]),
    start=st.integers(0, 70000),
)
def test_portset_finds_the_port_a_scan_would(taken, freed, dense, cls, start):
    ref = set(taken) | set(range(dense[0], dense[1]))
    ports = PortSet(ref)
    for p in freed:
        ports.discard(p)
        ref.discard(p)
    assert len(ports) == len(ref) and set(ports) == ref
    assert all(p in ports for p in taken if p in ref)
    lo, hi = cls
    assert ports.search(lo, hi, start) == _search(lo, hi, start, ref.__contains__)


def test_portset_full_and_last_free():
    ports = PortSet(range(65536))
    assert ports.search(1024, 65535, 7) is None
    ports.discard(1024)
    assert ports.search(1024, 65535, 60000) == 1024
