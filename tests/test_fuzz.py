"""The engine under fuzzed traffic, bounded for the suite (``make fuzz`` runs millions: bench/fuzz.py).

Given each kind of configuration -- an ASA with PAT, ``inspect ftp`` and a tcp-map; an iptables
ruleset with conntrack, NAT, the FTP helper and TCPMSS; and an nftables ruleset of the same kind -- and
a seeded stream of real, mutated and random packets (tests/fuzzing.py), expect:

- no exception out of the engine and no ``internal-error`` drop, ever (asserted);
- no packet forwarded that the independent header checker (tests/header_check.py: RFC 1812, RFC 8200,
  RFC 4291, RFC 9293 and the reference) says any firewall must drop (asserted; the summary is printed
  with ``-s`` and kept on the test's report). The last class left, TTL/hop limit 0 forwarded by an ASA
  that does not lower the TTL, is dropped since statewall took the standards' reading for it
  (``engine.icmp.ttl_zero``; Cisco does not say).
"""

from __future__ import annotations

import pytest

from fuzzing import CONFIGS, fuzz

PACKETS = 25_000  # per configuration: some seconds each on a quiet machine


@pytest.mark.parametrize("config", list(CONFIGS))
def test_fuzzed_traffic_raises_nothing_and_forwards_nothing_a_firewall_must_drop(config, record_property):
    res = fuzz(config, PACKETS, seed=2026)
    print("\n" + res.summary())
    record_property("fuzz", res.summary())
    assert res.exceptions == [], res.summary()
    assert not res.findings, res.summary()
    # The stream reached state and both outcomes: not a run of packets all refused at the door.
    assert res.packets == PACKETS and res.forwarded > PACKETS // 10 and res.dropped > PACKETS // 10


# --------------------------------------------------------------------------------------------------
# The checker itself: it passes ordinary packets and names each rule it holds the engine to


def _v4(**kw) -> bytes:
    from scapy.layers.inet import IP, TCP

    tcp = kw.pop("tcp", {})
    return bytes(IP(src=kw.pop("src", "10.0.0.2"), dst=kw.pop("dst", "198.51.100.7"), **kw) / TCP(**tcp))


def test_the_header_checker_passes_ordinary_packets():
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt

    from header_check import must_drop

    for pkt in (
        _v4(tcp={"flags": "S"}),
        _v4(tcp={"flags": "SA"}),
        _v4(tcp={"flags": "FA"}),
        _v4(tcp={"flags": "R"}),
        _v4(ttl=1, tcp={"flags": "PA"}),
        bytes(IP(src="10.0.0.2", dst="198.51.100.7") / UDP() / b"q"),
        bytes(IP(src="10.0.0.2", dst="198.51.100.7") / ICMP()),
        bytes(IPv6(src="2001:db8:1::2", dst="2001:db8:5::5") / IPv6ExtHdrDestOpt() / UDP() / b"q"),
    ):
        assert must_drop(pkt) is None, pkt.hex()


RULES = [
    (lambda: _v4(tcp={"flags": "SF"}), "TCP SYN+FIN"),
    (lambda: _v4(tcp={"flags": "SR"}), "TCP SYN+RST"),
    (lambda: _v4(tcp={"flags": ""}), "TCP null segment: no SYN, FIN, RST or ACK"),
    (lambda: _v4(tcp={"flags": "FPU"}), "TCP FIN without ACK"),
    (lambda: _v4(src="127.0.0.1"), "IPv4 martian source in 127.0.0.0/8"),
    (lambda: _v4(src="0.1.2.3"), "IPv4 martian source in 0.0.0.0/8"),
    (lambda: _v4(src="224.0.0.251"), "IPv4 martian source in 224.0.0.0/4"),
    (lambda: _v4(dst="255.255.255.255"), "IPv4 limited broadcast destination"),
    (lambda: _v4(dst="239.1.2.3"), "IPv4 multicast destination"),
    (lambda: _v4(ttl=0), "IPv4 TTL 0"),
    (lambda: _v4(chksum=0x1234), "IPv4 header checksum"),
    (lambda: _v4(len=60), "IPv4 total length beyond the bytes received"),
    (lambda: _v4(flags="MF", frag=8191, proto=6), "IPv4 fragment beyond 65535 bytes"),
    (lambda: _v4(tcp={"dataofs": 4}), "TCP data offset below 5"),
]


@pytest.mark.parametrize("make, rule", RULES, ids=[rule for _, rule in RULES])
def test_the_header_checker_names_each_rule(make, rule):
    from header_check import must_drop

    assert must_drop(make()).split(" (", 1)[0] == rule


def test_the_header_checker_holds_ipv6_to_rfc_4291():
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6

    from header_check import must_drop

    def v6(src, dst) -> str:
        return must_drop(bytes(IPv6(src=src, dst=dst) / UDP())).split(" (", 1)[0]

    assert v6("fe80::1", "2001:db8:5::5") == "IPv6 link-local source or destination"
    assert v6("2001:db8:1::2", "ff02::fb") == "IPv6 multicast destination"
    assert v6("ff02::1", "2001:db8:5::5") == "IPv6 multicast source"
    assert v6("::", "2001:db8:5::5") == "IPv6 unspecified or loopback source"
    assert v6("2001:db8:1::2", "::1") == "IPv6 unspecified or loopback destination"
