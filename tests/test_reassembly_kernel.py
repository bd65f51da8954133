"""Differential against the kernel: the same fragments through a Linux router with conntrack (which
defragments before conntrack and fragments again on output), through statewall's Linux reassembly
and through statewall's engine running the router as an iptables policy must leave as the same
fragments, byte for byte.

Three namespaces unique to this run (tests/netns_util.py): ``a`` -- ``fw`` -- ``b``; ``fw`` forwards
with conntrack loaded (its nftables guard), so ``nf_defrag_ipv4``/``nf_defrag_ipv6`` gather every
fragment. Fragments crafted with scapy are injected from ``a`` towards an address behind ``fb``; what
``fw`` sends on ``fb`` is captured, and compared with what ``LinuxDefrag`` + ``fragment_out`` make of
the same fragments after forwarding (TTL / hop limit minus one, no translation). IPv6 fragments leave
with an identification the kernel draws from a keyed hash (``ipv6_select_ident``), so that field is
left out of the comparison. When the kernel answers fragmentation-needed or packet-too-big instead,
statewall must answer with the same MTU.

Needs root, ``ip`` and ``nft``; skipped with the reason otherwise. Namespaces are removed even on
failure.
"""

from __future__ import annotations

import select
import socket
import time

import pytest
from scapy.all import (
    IP,
    TCP,
    UDP,
    IPOption,
    IPOption_Security,
    IPv6,
    IPv6ExtHdrFragment,
    Raw,
    fragment,
    fragment6,
)

from netns_util import ETH_P_ALL, Lab, in_netns, missing_prerequisites, sh
from statewall.config import parse_policy
from statewall.engine import Firewall
from statewall.reassembly import LinuxDefrag, fragment_out

_why_not = missing_prerequisites()

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(_why_not is not None, reason=f"kernel differential: {_why_not}"),
]

V6_SRC, V6_DST = "fd77:1::1", "fd77:2::100"
# Sources of the test's packets and of fw's answers to them: everything else on the wire is ignored.
_OURS = {
    (4, socket.inet_aton("10.77.1.1")),
    (4, socket.inet_aton("10.77.1.254")),
    (6, socket.inet_pton(socket.AF_INET6, V6_SRC)),
    (6, socket.inet_pton(socket.AF_INET6, "fd77:1::fe")),
    (6, socket.inet_pton(socket.AF_INET6, "fe80::77:ff:fe00:1fe")),  # fa's link-local address (its MAC)
    (6, socket.inet_pton(socket.AF_INET6, "fe80::1")),  # a0's link-local source (test_addrclass_kernel)
}


class _Router:
    """The lab with IPv6 forwarding in fw and one capture socket on fw's interfaces."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        sh("ip", "netns", "exec", lab.fw, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=0")
        sh("ip", "netns", "exec", lab.fw, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
        sh("ip", "-n", lab.fw, "addr", "add", "fd77:1::fe/64", "dev", "fa", "nodad")
        sh("ip", "-n", lab.fw, "addr", "add", "fd77:2::fe/64", "dev", "fb", "nodad")
        sh(
            "ip",
            "-n",
            lab.fw,
            "neigh",
            "replace",
            V6_DST,
            "lladdr",
            lab.MACS["b0"],
            "dev",
            "fb",
            "nud",
            "permanent",
        )
        sh(
            "ip",
            "-n",
            lab.fw,
            "neigh",
            "replace",
            V6_SRC,
            "lladdr",
            lab.MACS["a0"],
            "dev",
            "fa",
            "nud",
            "permanent",
        )
        self.inject = lab.injector("a")
        macs = bytes.fromhex(lab.MACS["fa"].replace(":", "")) + bytes.fromhex(lab.MACS["a0"].replace(":", ""))
        self.eth4, self.eth6 = macs + b"\x08\x00", macs + b"\x86\xdd"
        with in_netns(lab.fw):
            self.cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))

    def mtu(self, value: int) -> None:
        sh("ip", "-n", self.lab.fw, "link", "set", "fb", "mtu", str(value))

    def send(self, frags) -> tuple[list[bytes], list[bytes]]:
        """Inject ``frags``; (what left on fb, ICMP errors sent back on fa) about our test traffic."""
        self._read(0.02)
        for f in frags:
            raw = bytes(f)
            self.inject.send((self.eth4 if raw[0] >> 4 == 4 else self.eth6) + raw)
        got = self._read(0.4)
        out = [p for ifc, p in got if ifc == "fb"]
        back = [p for ifc, p in got if ifc == "fa"]
        return out, back

    def _read(self, seconds: float) -> list[tuple[str, bytes]]:
        got = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r, _, _ = select.select([self.cap], [], [], 0.02)
            if not r:
                continue
            data, addr = self.cap.recvfrom(70000)
            if addr[2] != 4 or addr[0] not in ("fa", "fb"):  # PACKET_OUTGOING only
                continue
            ip = data[14:]
            if ip[:1] and (ip[0] >> 4, ip[12:16] if ip[0] >> 4 == 4 else ip[8:24]) in _OURS:
                got.append((addr[0], ip))
        return got


@pytest.fixture(scope="module")
def router():
    with Lab() as lab:
        r = _Router(lab)
        yield r
        r.cap.close()
        r.inject.close()


def _statewall(frags, mtu: int) -> tuple[list[bytes], int | None]:
    """LinuxDefrag, one forwarding step (TTL/hop limit - 1), fragment_out."""
    d = LinuxDefrag()
    done = []
    for f in frags:
        res = d.push("fa", bytearray(bytes(f)), 0.0)
        assert res is not None
        if res[0] is not None:
            done.append(res[0])
    if not done:
        return [], None
    dg = done[0]
    data = bytearray(dg.data)
    if dg.version == 4:
        from statewall.packet import decode

        decode(data).set_ttl(data[8] - 1)
    else:
        data[7] -= 1
    out, too_big = fragment_out(data, dg, mtu)
    return [bytes(o) for o in out], too_big


def _engine(frags, mtu: int) -> tuple[list[bytes], int | None]:
    """The same fragments through statewall's engine with the lab's router as an iptables policy."""
    policy = parse_policy(
        f"#@statewall interface fa address 10.77.1.254/24 address fd77:1::fe/64\n"
        f"#@statewall interface fb address 10.77.2.254/24 address fd77:2::fe/64 mtu {mtu}\n"
        "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n",
        "lab.rules",
        dialect="iptables",
    )
    fw = Firewall(policy)
    out, too_big = [], None
    for f in frags:
        res = fw.receive("fa", bytes(f), 1.0)
        out += [bytes(p) for iface, p in res.packets if iface == "fb"]
        for iface, p in res.packets:
            if iface == "fa":
                too_big = IP(p).payload.nexthopmtu if p[0] >> 4 == 4 else IPv6(p).payload.mtu
    return out, too_big


def _mask_v6_ident(pkts: list[bytes]) -> list[bytes]:
    out = []
    for p in pkts:
        ip = IPv6(p)
        if ip.haslayer(IPv6ExtHdrFragment):
            ip[IPv6ExtHdrFragment].id = 0
        out.append(bytes(ip))
    return out


def _udp4(size=3000, **kw):
    return (
        IP(src="10.77.1.1", dst="10.77.2.100", id=4242, ttl=64, **kw)
        / UDP(sport=1000, dport=2000)
        / Raw(b"x" * size)
    )


def _with(frags, **changes):
    out = []
    for i, f in enumerate(frags):
        g = IP(bytes(f))
        for k, v in changes.items():
            setattr(g, k, v(i, g) if callable(v) else v)
        del g.chksum
        out.append(IP(bytes(g)))
    return out


def _v4_cases():
    # Route MTUs stay >= 1280: below it the kernel turns IPv6 off on the interface.
    base = fragment(_udp4(), fragsize=1000)
    big = fragment(_udp4(), fragsize=1480)
    # An experimental option without the copied flag (forwarding leaves it alone: record route and
    # timestamp would be filled in by the kernel's option processing, which this test does not model).
    opts = [IPOption(b"\x1e\x04\x00\x00"), IPOption_Security()]
    with_opts = IP(src="10.77.1.1", dst="10.77.2.100", id=77, options=opts) / UDP() / Raw(b"o" * 2000)
    syn = IP(src="10.77.1.1", dst="10.77.2.100", id=9) / TCP(
        sport=40000, dport=80, flags="S", options=[("MSS", 1460)]
    )
    overlap = _with(base[1:2], frag=lambda i, g: g.frag - 1)
    return {
        "in order": (base, 1500),
        "reversed": (base[::-1], 1500),
        "shuffled": ([base[2], base[0], base[3], base[1]], 1500),
        "DF on every fragment": (_with(base, flags=lambda i, g: g.flags | 2), 1500),
        "a TTL per fragment": (_with(base, ttl=lambda i, g: 64 - 7 * i), 1500),
        "duplicate": ([base[0], base[1], base[1], base[2], base[3]], 1500),
        "cut to a smaller route MTU": (big, 1280),
        "DF and a smaller route MTU": (_with(big, flags=lambda i, g: g.flags | 2), 1280),
        "options, only the copied ones after the first": (fragment(with_opts, fragsize=800), 1500),
        "SYN with 8 bytes of TCP in the first fragment": (fragment(syn, fragsize=8), 1500),
        "teardrop overlap": ([base[0], *overlap], 1500),
    }


@pytest.mark.parametrize("case", list(_v4_cases()))
def test_ipv4_fragments_leave_as_the_kernel_sends_them(router, case):
    frags, mtu = _v4_cases()[case]
    router.mtu(mtu)
    try:
        kernel, back = router.send(frags)
    finally:
        router.mtu(1500)
    ours, too_big = _statewall(frags, mtu)
    assert ours == kernel
    assert _engine(frags, mtu) == (ours, too_big)
    if too_big is not None:
        icmp = [IP(p) for p in back if IP(p).proto == 1 and IP(p).payload.type == 3]
        assert [(i.payload.code, i.payload.nexthopmtu) for i in icmp] == [(4, too_big)]


def _v6_cases():
    pkt = IPv6(src=V6_SRC, dst=V6_DST, hlim=64) / IPv6ExtHdrFragment(id=0xABCD) / UDP(sport=1, dport=2)
    pkt = pkt / Raw(b"y" * 3000)
    base = fragment6(pkt, 1000)
    evil = IPv6(bytes(base[1]))
    evil[IPv6ExtHdrFragment].offset -= 1
    return {
        "in order": (base, 1500),
        "reversed": (base[::-1], 1500),
        "duplicate": ([base[0], base[0], *base[1:]], 1500),
        "larger than the route MTU": (fragment6(pkt, 1500), 1280),
        "overlap": ([base[0], IPv6(bytes(evil))], 1500),
    }


@pytest.mark.parametrize("case", list(_v6_cases()))
def test_ipv6_fragments_leave_as_the_kernel_sends_them(router, case):
    frags, mtu = _v6_cases()[case]
    router.mtu(mtu)
    try:
        kernel, back = router.send(frags)
    finally:
        router.mtu(1500)
    kernel = [p for p in kernel if IPv6(p).nh != 58]
    ours, too_big = _statewall(frags, mtu)
    assert _mask_v6_ident(ours) == _mask_v6_ident(kernel)
    engine, engine_too_big = _engine(frags, mtu)
    assert _mask_v6_ident(engine) == _mask_v6_ident(kernel) and engine_too_big == too_big
    if too_big is not None:
        ptb = [IPv6(p) for p in back if IPv6(p).nh == 58 and IPv6(p).payload.type == 2]
        assert [p.payload.mtu for p in ptb] == [too_big]


@pytest.mark.parametrize("max_dist", [64, 0])
def test_ipfrag_max_dist_as_the_kernel_applies_it(router, max_dist):
    # A datagram's first fragment, 66 fragments of 33 other datagrams from the same source, then its
    # last one: with net.ipv4.ipfrag_max_dist 64 (the default) the kernel starts its queue again
    # (ip_frag_too_far) and it never leaves; with 0 the check is off and it does.
    a = fragment(_udp4(1200), fragsize=1000)
    others = []
    for i in range(33):
        g = (
            IP(src="10.77.1.1", dst="10.77.2.100", id=100 + i)
            / UDP(sport=1000, dport=2000)
            / Raw(b"y" * 1200)
        )
        others += fragment(g, fragsize=1000)
    frags = [a[0], *others, a[1]]
    sysctl = ("ip", "netns", "exec", router.lab.fw, "sysctl", "-q", "-w")
    sh(*sysctl, f"net.ipv4.ipfrag_max_dist={max_dist}")
    try:
        kernel, _ = router.send(frags)
    finally:
        sh(*sysctl, "net.ipv4.ipfrag_max_dist=64")
    policy = parse_policy(
        "#@statewall interface fa address 10.77.1.254/24\n"
        "#@statewall interface fb address 10.77.2.254/24\n"
        f"#@statewall sysctl net.ipv4.ipfrag_max_dist={max_dist}\n"
        "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n",
        "lab.rules",
        dialect="iptables",
    )
    fw = Firewall(policy)
    ours = []
    for f in frags:
        ours += [bytes(p) for iface, p in fw.receive("fa", bytes(f), 1.0).packets if iface == "fb"]
    # The datagram the check is about: gone or through in both. (The capture socket does not always
    # keep all of the 68 frames sent at once: what the kernel let through is compared as a subset.)
    kernel_ids = {IP(p).id for p in kernel}
    our_ids = {IP(p).id for p in ours}
    assert (4242 in kernel_ids) is (max_dist == 0) and (4242 in our_ids) is (max_dist == 0)
    assert our_ids - {4242} == set(range(100, 133)) and set(kernel) <= set(ours)
