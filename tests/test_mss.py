"""MSS: the clamp calculator (seed 001), the ASA's ``sysopt connection tcpmss`` rewrite of SYNs, and
the MSS each side is held to (536 / 1220 when a SYN carries none)."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from statewall import cli, mss
from statewall.dialects.asa import parse
from statewall.engine import Firewall
from statewall.events import Drop, DropReason
from statewall.packet import decode

# --------------------------------------------------------------------------------------------------
# The calculator: seed 001 and the other common transforms, each number worked out by hand


def test_seed001_aes256_sha1_is_1347_and_1327_for_ipv6():
    # 73 = outer IPv4 20 + ESP header 8 + AES IV 16 + padding at most 15 + trailer 2 + SHA1-96 ICV 12
    assert mss.clamp(1500, "aes256-sha1").ipsec_overhead == 73
    assert mss.clamp(1500, "aes256-sha1").mss == 1500 - (73 + 20 + 60) == 1347
    assert mss.clamp(1500, "aes256-sha1", ipv6=True).mss == 1500 - (73 + 40 + 60) == 1327


@pytest.mark.parametrize(
    "transform, overhead",
    [
        ("3des-md5", 20 + 8 + 8 + 7 + 2 + 12),
        ("3des-sha1", 20 + 8 + 8 + 7 + 2 + 12),
        ("aes128-sha1", 20 + 8 + 16 + 15 + 2 + 12),
        ("aes128-sha256", 20 + 8 + 16 + 15 + 2 + 16),
        ("aes256-sha384", 20 + 8 + 16 + 15 + 2 + 24),
        ("aes256-sha512", 20 + 8 + 16 + 15 + 2 + 32),
        ("aes128gcm", 20 + 8 + 8 + 3 + 2 + 16),
        ("aes256gcm16", 20 + 8 + 8 + 3 + 2 + 16),
        ("aes256gcm8", 20 + 8 + 8 + 3 + 2 + 8),
    ],
)
def test_common_transforms(transform: str, overhead: int):
    c = mss.clamp(1500, transform)
    assert c.ipsec_overhead == overhead
    assert c.mss == 1500 - overhead - 20 - 60


def test_nat_t_and_gre_add_their_headers():
    base = mss.clamp(1500, "aes256-sha1").mss
    assert mss.clamp(1500, "aes256-sha1", nat_t=True).mss == base - 8
    assert mss.clamp(1500, "aes256-sha1", gre=True).mss == base - 24
    assert mss.clamp(1500, "aes256-sha1", nat_t=True, gre=True).mss == base - 32
    assert mss.clamp(1500, "aes256-sha1", outer_ipv6=True).mss == base - 20
    assert mss.clamp(1400, "aes256-sha1").mss == base - 100


@pytest.mark.parametrize("bad", ["aes256", "aes256-foo", "rot13-sha1", "aes256gcm-sha1", "a-b-c"])
def test_unknown_transforms_are_refused(bad: str):
    with pytest.raises(mss.CalcError):
        mss.clamp(1500, bad)


def test_cli_prints_the_arithmetic_and_the_value(capsys):
    assert cli.main(["mss", "--mtu", "1500", "--ipsec", "aes256-sha1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "= 1347  MSS" in out
    assert "   (73) IPsec overhead of aes256-sha1 (the lines above)" in out
    assert "-   12  HMAC-SHA1-96 ICV" in out and "-   60  TCP header with up to 40 bytes of options" in out
    assert "  ASA:       sysopt connection tcpmss 1347" in out
    assert cli.main(["mss", "--mtu", "1500", "--ipsec", "aes256-sha1", "--ipv6", "-q"]) == 0
    assert capsys.readouterr().out == "1327\n"
    assert cli.main(["mss", "--ipsec", "aes256-foo"]) == 2
    assert "unknown integrity 'foo'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# sysopt connection tcpmss through the engine

CFG = """interface Ethernet0
 nameif outside
 security-level 0
 ip address 192.168.9.30 255.255.255.0
 ipv6 address 2001:db8:9::30/64
interface Ethernet1
 nameif inside
 security-level 100
 ip address 10.0.0.1 255.255.255.0
 ipv6 address 2001:db8:1::1/64
route outside 0.0.0.0 0.0.0.0 192.168.9.2 1
ipv6 route outside ::/0 2001:db8:9::2
"""


def syn_mss(fw: Firewall, options, v6: bool = False, flags: str = "S", sport: int = 40000):
    if v6:
        pkt = IPv6(src="2001:db8:1::2", dst="2001:db8:9::2") / TCP(
            sport=sport, dport=80, flags=flags, options=options
        )
    else:
        pkt = IP(src="10.0.0.2", dst="192.168.9.2") / TCP(sport=sport, dport=80, flags=flags, options=options)
    res = fw.receive("inside", bytes(pkt), 1.0)
    assert len(res.packets) == 1, res.events
    return decode(res.packets[0][1]).mss()


def test_the_asa_lowers_mss_above_1380_by_default_and_leaves_smaller_ones():
    fw = Firewall(parse(CFG))
    assert syn_mss(fw, [("MSS", 1460)]) == 1380
    assert syn_mss(fw, [("MSS", 1300)], sport=40001) == 1300
    assert syn_mss(fw, [], sport=40002) is None  # no option is added


def test_sysopt_maximum_minimum_and_off():
    fw = Firewall(parse(CFG + "sysopt connection tcpmss 1200\nsysopt connection tcpmss minimum 1000\n"))
    assert syn_mss(fw, [("MSS", 1460)]) == 1200
    assert syn_mss(fw, [("MSS", 536)], sport=40001) == 1000
    assert syn_mss(fw, [("MSS", 1100)], sport=40002) == 1100
    assert syn_mss(fw, [], sport=40003) is None
    off = Firewall(parse(CFG + "sysopt connection tcpmss 0\n"))
    assert syn_mss(off, [("MSS", 9000)]) == 9000
    assert syn_mss(off, [("MSS", 1460)], v6=True) == 1460


def test_checksums_stay_right_after_the_rewrite():
    fw = Firewall(parse(CFG))
    pkt = IP(src="10.0.0.2", dst="192.168.9.2") / TCP(
        sport=40000, dport=80, flags="S", options=[("MSS", 1460)]
    )
    out = IP(bytes(fw.receive("inside", bytes(pkt), 1.0).packets[0][1]))
    ref = out.copy()
    del ref.chksum, ref[TCP].chksum
    ref = IP(bytes(ref))
    assert (out.chksum, out[TCP].chksum) == (ref.chksum, ref[TCP].chksum)


# --------------------------------------------------------------------------------------------------
# What a receiver is held to


def test_advertised_defaults_when_absent():
    four = decode(bytearray(bytes(IP() / TCP(flags="S"))))
    six = decode(bytearray(bytes(IPv6() / TCP(flags="S"))))
    assert mss.advertised(four) == (536, False) and mss.advertised(six) == (1220, False)
    assert mss.receive_limit(536, False, 1460) == 536  # no option: nothing was raised
    assert mss.receive_limit(1390, True, 1460) == 1460
    assert mss.receive_limit(1390, True, 0) == 1390


def _handshake_then_data(fw: Firewall, server_opts, size: int, v6: bool = False):
    if v6:
        c, s, ip = "2001:db8:1::2", "2001:db8:9::2", IPv6
    else:
        c, s, ip = "10.0.0.2", "192.168.9.2", IP
    events = []
    for iface, pkt in (
        (
            "inside",
            ip(src=c, dst=s) / TCP(sport=40000, dport=80, flags="S", seq=100, options=[("MSS", 1460)]),
        ),
        (
            "outside",
            ip(src=s, dst=c) / TCP(sport=80, dport=40000, flags="SA", seq=900, ack=101, options=server_opts),
        ),
        ("inside", ip(src=c, dst=s) / TCP(sport=40000, dport=80, flags="A", seq=101, ack=901)),
        (
            "inside",
            ip(src=c, dst=s) / TCP(sport=40000, dport=80, flags="PA", seq=101, ack=901) / Raw(b"x" * size),
        ),
    ):
        data = fw.replay_rewrite(iface, bytes(pkt), 1.0)
        events += fw.receive(iface, data, 1.0).events
    return [e for e in events if isinstance(e, Drop)]


def test_a_server_without_mss_option_is_held_to_536_or_1220():
    drops = _handshake_then_data(Firewall(parse("ASA Version 8.2(1)\n" + CFG)), [], 537)
    assert [(d.reason, d.detail["mss"], d.detail["data"]) for d in drops] == [
        (DropReason.TCP_MSS_EXCEEDED, 536, 537)
    ]
    assert "no MSS option: 536 assumed" in drops[0].message
    drops = _handshake_then_data(Firewall(parse("ASA Version 8.2(1)\n" + CFG)), [], 1221, v6=True)
    assert [(d.detail["mss"], d.detail["data"]) for d in drops] == [(1220, 1221)]
    assert _handshake_then_data(Firewall(parse("ASA Version 8.2(1)\n" + CFG)), [], 1220, v6=True) == []
