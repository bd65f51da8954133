"""Zeek's ``ftp/ipv6.pcap`` replayed through an IPv6 prefix translation with FTP inspection.

The capture (../shared/corpus/zeek, see its README) holds one control connection from
2001:470:1f11:81f:c999:d94:aa7c:2e3e to 2001:470:4867:99::21, three EPSV (229) data connections and two
EPRT ones; Zeek's conn.log lists the six. ``test_ftp_zeek.py`` replays it without NAT; here the client's
/64 is translated on the outside:

* ASA: a static network object NAT, ``object network inside-v6`` / ``subnet 2001:470:1f11:81f::/64`` /
  ``nat (inside,outside) static inside-v6-mapped`` with the mapped object ``2001:db8:5::/64``. Static
  NAT66 maps address by position: the prefix is replaced, the interface identifier kept, and every
  checksum is recomputed (incrementally) for the new address. That is the ASA's NAT66 and not RFC 6296
  NPTv6, whose checksum-neutral mapping changes a 16-bit word of the address instead so that the
  transport checksum stays as it was: NPTv6 is stateless and has no ALG, so an EPRT would still name
  the inside address; an FTP inspection rewrites the payload anyway and must fix the checksum whatever
  the address mapping does. The same with the /64 behind PAT on the outside interface's address
  (``nat (inside,outside) dynamic interface``), where each EPRT port gets a PAT slot of its own.
* iptables: ``ip6tables -t nat -A POSTROUTING -s 2001:470:1f11:81f::/64 -j SNAT --to-source ...`` with
  ``-j CT --helper ftp``: the control connection gets the SNAT address (one, or the one of a range
  Linux's hash picks), the data connections follow their master (``nf_nat_follow_master``). With
  ``-j NETMAP --to 2001:db8:5::/64`` the client gets the ASA static's address (network bits from the
  rule, host bits its own); NETMAP's mapping is also checked against the kernel's, in a namespace.

Either way every packet of the six connections must leave, in both directions, nothing else may open,
the EPRT commands must name the mapped address (``nf_nat_ftp``'s ``%pI6``: eight groups of four hex
digits, three characters longer than the client's compressed form), the client's later control
segments move up by three bytes per EPRT while the server's acknowledgements reach the client exactly
as captured, the server's active data connections to the mapped address reach the real client, and
the data arrives byte for byte.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

from statewall import craft
from statewall.dialects.errors import ConfigError
from statewall.dialects.iptables import parse, render
from statewall.dialects.iptables.listing import format_listing
from statewall.engine import Firewall
from statewall.pcapio import read_packets
from test_ftp_zeek import CONFIG6, NO_INSPECT, _signed, check_forwarded_completely, ends, segments, stream
from zeek_ftp import checksums_ok, run, zeek_log

BASELINE = "scripts.base.protocols.ftp.ftp-ipv6"
CLIENT = "2001:470:1f11:81f:c999:d94:aa7c:2e3e"
CLIENT_NET = ipaddress.ip_network("2001:470:1f11:81f::/64")
MAPPED_NET = ipaddress.ip_network("2001:db8:5::/64")
# Position mapping: the mapped /64 with the client's interface identifier.
MAPPED = "2001:db8:5:0:c999:d94:aa7c:2e3e"

NAT66 = """object network inside-v6-mapped
 subnet 2001:db8:5::/64
object network inside-v6
 subnet 2001:470:1f11:81f::/64
object network inside-v6
 nat (inside,outside) static inside-v6-mapped
"""

# The same client behind PAT on the outside interface's address (every port was free, so kept).
PAT66 = """object network inside-v6
 subnet 2001:470:1f11:81f::/64
 nat (inside,outside) dynamic interface
"""
OUTSIDE_V6 = "2001:db8:ffff::1"

IP6TABLES = """\
#@statewall interface inside dev eth1 address 2001:470:1f11:81f::1/64
#@statewall interface outside dev eth0 address 2001:db8:ffff::1/64
#@statewall route ::/0 via 2001:db8:ffff::2 dev outside
ip6tables -P FORWARD DROP
ip6tables -t raw -A PREROUTING -i eth1 -p tcp --dport 21 -j CT --helper ftp
ip6tables -t nat -A POSTROUTING -s 2001:470:1f11:81f::/64 -o eth0 -j {target}
ip6tables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
ip6tables -A FORWARD -i eth1 -p tcp --dport 21 -j ACCEPT
"""


@pytest.fixture(scope="module")
def ipv6(corpus_dir: Path) -> Path:
    path = corpus_dir / "zeek" / "Traces" / "ftp" / "ipv6.pcap"
    if not path.is_file():
        pytest.skip(f"Zeek FTP trace not found at {path}")
    return path


def unmapped(segs, mapped: str):
    """Outside packets with the mapped client address put back to the real one (ports are kept)."""
    put_back = lambda a: CLIENT if a == mapped else a  # noqa: E731
    return [(put_back(s), sp, put_back(d), dp, *rest) for s, sp, d, dp, *rest in segs]


def eprt(addr: str) -> bytes:
    """EPRT's address as nf_nat_ftp prints it (``%pI6``), and as the client sent it (compressed)."""
    return f"EPRT |2|{ipaddress.IPv6Address(addr).exploded}|".encode()


def check_through_nat66(capture: Path, outdir: Path, rows, events, mapped: str) -> None:
    """The acceptance: every connection complete, nothing else, EPRT mapped, sequence space, data."""
    captured = segments(capture)
    inside = segments(outdir / "inside.pcap")
    outside_raw = segments(outdir / "outside.pcap")
    assert all(s[-1] for s in inside + outside_raw), "a checksum is wrong"
    # Outside, the client exists only at its mapped address, every port kept.
    assert {s[0] for s in outside_raw} == {mapped} and CLIENT not in {s[2] for s in outside_raw}
    # Inside, the server's packets (replies and its active data connections) go to the real client.
    assert {s[2] for s in inside} == {CLIENT}
    outside = unmapped(outside_raw, mapped)
    check_forwarded_completely(
        captured, inside, outside, rows, lambda h: ipaddress.ip_address(h) in CLIENT_NET
    )

    # Exactly Zeek's six connections were built (in real coordinates), no other.
    built = [e for e in events if e["event"] == "ConnBuilt"]
    seen = {
        (
            (e["initiator"]["address"], e["initiator"]["port"]),
            (e["responder"]["address"], e["responder"]["port"]),
        )
        for e in built
    }
    assert len(built) == 6 and seen == {ends(r) for r in rows}
    # The two active ones were opened by the server toward the mapped address.
    active = [e for e in built if e["initiator"]["interface"] == "outside"]
    assert sorted(e["responder"]["port"] for e in active) == [49189, 49190]
    assert {e["responder"]["mapped_address"] for e in active} == {mapped}

    # The control connection outside: the EPRT arguments name the mapped address, nothing else changed.
    control = next(r for r in rows if r["service"] == "ftp")
    c, s = ends(control)
    sent = stream(captured, c, s)
    assert sent.count(b"EPRT |2|" + CLIENT.encode() + b"|") == 2
    assert stream(outside, c, s) == sent.replace(b"EPRT |2|" + CLIENT.encode() + b"|", eprt(mapped))
    assert stream(inside, s, c) == stream(captured, s, c)
    for row in rows:
        o, r = ends(row)
        if row["service"] == "ftp-data":
            client_sent = o[0] == CLIENT
            assert stream(outside if client_sent else inside, o, r) == stream(captured, o, r)
            assert stream(inside if client_sent else outside, r, o) == stream(captured, r, o)

    # Sequence numbers: each EPRT grew by three characters, so the client's segments after it move up
    # by three (after both, six); the EPRT segment itself keeps its number. Shifts are taken from the
    # SYN's (the ASA also randomizes the client's initial sequence number).
    grow = len(eprt(mapped)) - len(b"EPRT |2|" + CLIENT.encode() + b"|")
    assert grow == 3
    cap_c = [x for x in captured if (x[0], x[1]) == c and (x[2], x[3]) == s]
    out_c = [x for x in outside if (x[0], x[1]) == c and (x[2], x[3]) == s]
    isn = (out_c[0][4] - cap_c[0][4]) & 0xFFFFFFFF
    shifts = [_signed(o[4] - k[4] - isn) for k, o in zip(cap_c, out_c, strict=True)]
    want, before = [], 0
    for k in cap_c:
        want.append(before)
        before += grow if k[7].startswith(b"EPRT") else 0
    assert shifts == want and want[-1] == 6
    # The client's acknowledgements are untouched (the server's replies were not rewritten) ...
    assert [o[5] for o in out_c] == [k[5] for k in cap_c]
    # ... and the server's, which live count the longer EPRTs, reach the client in its own space.
    cap_s = [x for x in captured if (x[0], x[1]) == s and (x[2], x[3]) == c]
    in_s = [x for x in inside if (x[0], x[1]) == s and (x[2], x[3]) == c]
    assert [(x[4], x[5]) for x in in_s] == [(x[4], x[5]) for x in cap_s]


@pytest.mark.parametrize(
    ("nat", "mapped"),
    [(NAT66, MAPPED), (PAT66, OUTSIDE_V6)],
    ids=["static-prefix", "pat-interface"],
)
def test_asa_nat66_with_ftp_inspection(
    tmp_path: Path, ipv6: Path, corpus_dir: Path, nat: str, mapped: str
) -> None:
    rows = zeek_log(corpus_dir, BASELINE)
    assert len(rows) == 6
    summary, events = run(CONFIG6 + nat, ipv6, tmp_path)
    assert summary["packets_in"] == summary["forwarded"] == 136 and summary["dropped"] == 0
    assert summary["connections"]["teardown_reasons"] == {"TCP FINs": 6}
    check_through_nat66(ipv6, tmp_path, rows, events, mapped)


def test_static_nat66_recomputes_checksums_rather_than_preserving_them(tmp_path: Path, ipv6: Path) -> None:
    """The mapped address keeps the interface identifier, and the TCP checksum changes with it: NAT66
    as the ASA does it, not NPTv6's checksum-neutral mapping (see the module docstring)."""
    run(CONFIG6 + NAT66, ipv6, tmp_path)
    real = ipaddress.IPv6Address(CLIENT)
    captured = [dpkt.ip6.IP6(raw) for _, raw in read_packets(ipv6)]
    outside = [dpkt.ip6.IP6(raw) for _, raw in read_packets(tmp_path / "outside.pcap")]
    cap_syn = next(p for p in captured if p.data.flags == dpkt.tcp.TH_SYN and p.data.dport == 21)
    out_syn = next(p for p in outside if p.data.flags == dpkt.tcp.TH_SYN and p.data.dport == 21)
    mapped = ipaddress.IPv6Address(out_syn.src)
    assert out_syn.data.sport == cap_syn.data.sport and mapped in MAPPED_NET
    assert int(mapped) & (2**64 - 1) == int(real) & (2**64 - 1) and str(mapped) == MAPPED
    # Put the real source back and recompute: the checksum differs, so the address change was not
    # checksum-neutral (NPTv6's would be) and the segment leaving outside carries one updated for it.
    assert checksums_ok(bytes(out_syn))
    back = dpkt.ip6.IP6(bytes(out_syn))
    back.src = real.packed
    back.data.sum = 0
    assert dpkt.ip6.IP6(bytes(back)).data.sum != out_syn.data.sum


def test_nat66_without_inspection_the_eprt_names_the_inside_address(tmp_path: Path, ipv6: Path) -> None:
    summary, _ = run(CONFIG6 + NAT66 + NO_INSPECT, ipv6, tmp_path)
    # The server is told to connect to an address that does not exist outside; no data connection opens
    # (the EPSV ones are refused by the inside access list, which permits only FTP).
    assert summary["connections"]["built"] == 1
    eprts = [x[7] for x in segments(tmp_path / "outside.pcap") if x[7].startswith(b"EPRT")]
    assert [e.startswith(b"EPRT |2|" + CLIENT.encode() + b"|") for e in eprts] == [True, True]


@pytest.mark.parametrize(
    "to",
    ["2001:db8:5::1", "2001:db8:5::-2001:db8:5::ffff:ffff:ffff:ffff"],
    ids=["one-address", "prefix-range"],
)
def test_ip6tables_snat_with_the_ftp_helper(tmp_path: Path, ipv6: Path, corpus_dir: Path, to: str) -> None:
    rows = zeek_log(corpus_dir, BASELINE)
    summary, events = run(IP6TABLES.format(target=f"SNAT --to-source {to}"), ipv6, tmp_path)
    assert summary["packets_in"] == summary["forwarded"] == 136 and summary["dropped"] == 0
    control = next(e for e in events if e["event"] == "ConnBuilt")
    mapped = control["initiator"]["mapped_address"]
    lo, _, hi = to.partition("-")
    assert ipaddress.ip_address(lo) <= ipaddress.ip_address(mapped) <= ipaddress.ip_address(hi or lo)
    # Every data connection follows its master's mapping, whatever address the range gave it.
    check_through_nat66(ipv6, tmp_path, rows, events, mapped)


# -------------------------------------------------------------------------------------------------
# ip6tables NETMAP: the prefix translation itself (xt_NETMAP.c)


def test_ip6tables_netmap_with_the_ftp_helper(tmp_path: Path, ipv6: Path, corpus_dir: Path) -> None:
    summary, events = run(IP6TABLES.format(target="NETMAP --to 2001:db8:5::/64"), ipv6, tmp_path)
    assert summary["packets_in"] == summary["forwarded"] == 136 and summary["dropped"] == 0
    # The network bits from the rule, the host bits from the client: the ASA static's address.
    check_through_nat66(ipv6, tmp_path, zeek_log(corpus_dir, BASELINE), events, MAPPED)


NETMAP_BOTH_WAYS = """\
#@statewall interface inside dev eth1 address 2001:470:1f11:81f::1/64
#@statewall interface outside dev eth0 address 2001:db8:ffff::1/64
#@statewall route ::/0 via 2001:db8:ffff::2 dev outside
ip6tables -t nat -A PREROUTING -i eth0 -d 2001:db8:5::/64 -j NETMAP --to 2001:470:1f11:81f::7/64
ip6tables -t nat -A POSTROUTING -o eth0 -s 2001:470:1f11:81f::/64 -j NETMAP --to 2001:db8:5::/64
"""


def test_netmap_maps_destinations_in_prerouting_and_prints_as_iptables_does() -> None:
    policy = parse(NETMAP_BOTH_WAYS, "netmap.rules")
    # The host bits of --to are dropped (libxt_NETMAP keeps the network); save and -L print it so.
    saved = render(policy)
    assert "-A PREROUTING -d 2001:db8:5::/64 -i eth0 -j NETMAP --to 2001:470:1f11:81f::/64" in saved
    assert "-A POSTROUTING -s 2001:470:1f11:81f::/64 -o eth0 -j NETMAP --to 2001:db8:5::/64" in saved
    listing = format_listing(policy, "nat", family=6)
    assert "to:2001:470:1f11:81f::/64" in listing and "to:2001:db8:5::/64" in listing
    assert render(parse(saved, "again.rules")) == saved

    fw = Firewall(policy)
    v6 = lambda a: int(ipaddress.IPv6Address(a))  # noqa: E731
    outside_host = "2001:db8:aaaa::9"
    syn = craft.tcp_packet(6, v6(outside_host), v6(MAPPED), 40000, 80, 1, 0, 0x02)
    ((oif, out),) = fw.receive("outside", syn, 1.0).packets
    assert (oif, v6(dpkt.ip6.IP6(bytes(out)).dst)) == ("inside", v6(CLIENT)) and checksums_ok(bytes(out))
    # The answer leaves from the mapped address again (the connection's binding, not the rule).
    synack = craft.tcp_packet(6, v6(CLIENT), v6(outside_host), 80, 40000, 9, 2, 0x12)
    ((oif, out),) = fw.receive("inside", synack, 1.1).packets
    assert (oif, v6(dpkt.ip6.IP6(bytes(out)).src)) == ("outside", v6(MAPPED))


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ("ip6tables -t nat -A POSTROUTING -j NETMAP", "NETMAP: option '--to' must be specified"),
        ("ip6tables -A FORWARD -j NETMAP --to 2001:db8::/64", "NETMAP is only valid in the nat table"),
        ("ip6tables -t nat -A POSTROUTING -j NETMAP --to 10.0.0.0/8", "Bad IP address '10.0.0.0/8'"),
    ],
)
def test_netmap_refusals(rule: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse(rule + "\n", "t.rules")


# -- against the kernel ----------------------------------------------------------------------------

KERNEL_SOURCES = [CLIENT, "2001:470:1f11:81f::1234", "2001:470:1f11:81f:ffff:ffff:ffff:fffe"]
KERNEL_RULE = "-A POSTROUTING -o d0 -p udp -j NETMAP --to 2001:db8:5:a000::/52"


def _kernel_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a network namespace"
    for tool in ("unshare", "ip6tables-legacy", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def kernel_netmap(tmp: Path) -> tuple[dict[str, str], str]:
    """Each source's mapped address in the kernel's conntrack table, and ip6tables-save's NETMAP line."""
    sender = tmp / "send.py"
    sender.write_text(
        "import socket\n"
        f"for a in {KERNEL_SOURCES!r}:\n"
        "    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        "    s.bind((a, 5000))\n"
        "    s.sendto(b'x', ('2001:db8:ffff::77', 53))\n"
        "    s.close()\n"
    )
    script = f"""
        set -e
        ip link add d0 type veth peer name d1
        ip link set d1 up
        ip -6 addr add 2001:db8:ffff::1/64 dev d0 nodad
        ip link set d0 up
        ip link set lo up
        for a in {" ".join(KERNEL_SOURCES)}; do ip -6 addr add $a/128 dev lo nodad; done
        ip6tables-legacy -t nat {KERNEL_RULE}
        ip6tables-legacy-save -t nat | grep NETMAP
        {sys.executable} {sender}
        cat /proc/net/nf_conntrack
        """
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    mapped = {}
    for line in lines[1:]:
        kv = [w.split("=", 1) for w in line.split() if "=" in w]
        if len(kv) >= 6 and kv[0][0] == "src":
            mapped[str(ipaddress.ip_address(kv[0][1]))] = str(ipaddress.ip_address(kv[5][1]))
    return mapped, lines[0]


@pytest.mark.skipif(_kernel_unavailable() is not None, reason="no namespace with ip6tables-legacy here")
def test_netmap_maps_as_the_kernel_does(tmp_path: Path) -> None:
    kernel, saved_line = kernel_netmap(tmp_path)
    assert set(kernel) == set(KERNEL_SOURCES)
    # A /52 keeps the last 12 bits of the client's fourth group (081f): 2001:db8:5:a81f::/64.
    assert kernel[CLIENT] == "2001:db8:5:a81f:c999:d94:aa7c:2e3e"
    policy = parse(
        "#@statewall interface inside dev d1 address 2001:470:1f11:81f::1/64\n"
        "#@statewall interface outside dev d0 address 2001:db8:ffff::1/64\n"
        "#@statewall route ::/0 via 2001:db8:ffff::2 dev outside\n"
        f"ip6tables -t nat {KERNEL_RULE}\n",
        "netmap.rules",
    )
    assert saved_line in render(policy).splitlines()
    fw = Firewall(policy)
    server = int(ipaddress.IPv6Address("2001:db8:ffff::77"))
    for i, src in enumerate(KERNEL_SOURCES):
        datagram = craft.udp_packet(6, int(ipaddress.IPv6Address(src)), server, 5000, 53, b"x")
        ((oif, out),) = fw.receive("inside", datagram, 1.0 + i).packets
        assert oif == "outside" and str(ipaddress.IPv6Address(bytes(out[8:24]))) == kernel[src]
