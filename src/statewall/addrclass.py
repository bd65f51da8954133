"""Addresses a router never forwards as unicast, and when an ICMP error may be sent at all.

This module owns the classification of a packet's addresses before routing: multicast, limited and
directed broadcast, "this network" and loopback, link-local, and what each box does with them. It is
compiled once from the policy (the connected networks give the directed broadcasts) and is pure:
``Classifier.check(version, src, dst)`` returns None for an ordinary packet or a ``Special`` that says
what the packet is and, per dialect, what happens to it.

Linux (the iptables dialect), IPv4 - net/ipv4/route.c ``ip_route_input_slow`` before any FORWARD
rule: a multicast, limited-broadcast or 0.0.0.0/8 source is a martian source, a loopback source or
destination is martian (``route_localnet`` off), a 0.0.0.0/8 destination is a martian destination:
all dropped (``log_martians`` prints "martian source"/"martian destination"). A limited broadcast,
and a directed broadcast of a connected network (``fib`` type RTN_BROADCAST; ``bc_forwarding`` off),
is delivered to the box itself (``brd_input`` -> ``local_input``: the INPUT path), never forwarded. A
multicast destination goes to ``ip_route_input_mc`` only when the box joined the group or routes
multicast; otherwise the route lookup fails and the packet is dropped. A directed-broadcast source is
refused by ``fib_validate_source`` only with ``rp_filter`` on, which statewall does not model (off). A
source that is one of the box's own addresses is refused by ``fib_validate_source`` whatever
``rp_filter`` says (``accept_local`` 0): that needs the box's addresses, not the address's class, and is
the netfilter path's routing stage (``engine.nf_path.route``, ``ip-local-source``; IPv6 forwards it).
IPv6 - net/ipv6/ip6_input.c ``ip6_rcv_core`` drops a multicast or loopback source and a loopback
destination (RFC 4291 2.5.3, 2.7); a multicast destination goes to ``ip6_mc_input``, which forwards
only with multicast routing (``mforwarding``) and otherwise delivers it locally or drops it;
net/ipv6/ip6_output.c ``ip6_forward`` decides about link-local addresses, after routing and after
the hop limit check (a hop limit of 1 draws Time Exceeded first), so these are ``linux_routed``: a
link-local destination is routed only on the arrival device (``rt6_need_strict``: its fe80::/64
route), so the packet goes back out onto its own link, through FORWARD, with its hop limit lowered;
a link-local source is answered with Destination Unreachable "beyond scope of source address"
(code 2) and dropped only when the packet would leave through another interface (leaving through the
one it came in on, it takes the redirect branch, which does not look at the source). The neighbour
discovery redirect the kernel may send on such a hairpin is not modelled (statewall sends no ICMPv6
redirects). Checked against the kernel in tests/test_addrclass_kernel.py.

ASA - its slow-path address checks (Cisco, ``show asp drop`` command usage): through-the-box IPv4 to
or from 0.0.0.0, from a 0.x.x.x source, to or from a broadcast address, or from a multicast/class E
source is dropped as ``sp-security-failed``; IPv6 with a link-local source or destination or a
multicast destination as ``ipv6-sp-security-failed``. IPv4 multicast without ``multicast-routing`` has
no output interface: ``no-mcast-intrf``. Multicast routing is not modelled in either dialect
(``statewall check`` says so when the configuration enables it).

``icmp_error_forbidden`` is the rule every ICMP error the firewall sends must pass (RFC 1122 3.2.2,
RFC 1812 4.3.2.7, RFC 4443 2.4 (e)): never about an ICMP error, a packet to a multicast or broadcast
address, a non-first IPv4 fragment, or a source that does not name one host.
"""

from __future__ import annotations

from dataclasses import dataclass

from .events import DropReason
from .packet import addr_to_str
from .policy import PROTO_ICMP, PROTO_ICMPV6, Policy

__all__ = ["Classifier", "Special", "icmp_error_forbidden"]

_V4_MULTICAST = (0xE0000000, 4)
_V4_CLASS_E = (0xF0000000, 4)
_V4_ZERONET = (0x00000000, 8)
_V4_LOOPBACK = (0x7F000000, 8)
_V4_LIMITED_BROADCAST = 0xFFFFFFFF
_V6_MULTICAST = (0xFF << 120, 8)
_V6_LINK_LOCAL = (0xFE80 << 112, 10)
_V6_LOOPBACK = 1
_V6_UNSPECIFIED = 0

# ICMPv6 errors that may answer a packet to a multicast address (RFC 4443 2.4 (e.3)): packet too big,
# and parameter problem code 2 (an unrecognised option whose type asks for a report).
_V6_MULTICAST_EXCEPTIONS = frozenset({(2, 0), (4, 2)})


def _in(addr: int, prefix: tuple[int, int], bits: int) -> bool:
    net, plen = prefix
    return addr >> (bits - plen) == net >> (bits - plen)


@dataclass(frozen=True, slots=True)
class Special:
    """A packet whose addresses forbid forwarding it as unicast.

    ``what`` says why in words ("multicast destination 239.1.2.3"); ``asa`` and ``linux`` are the drop
    reasons of each dialect, or None for Linux when the packet is delivered to the box itself
    (``to_box``: broadcasts go to INPUT) or forwarded (``linux_routed``). ``icmp`` is the ICMP error
    Linux answers with, if any. ``linux_routed``: Linux does not stop it before routing; ip6_forward
    decides (``linux``/``icmp`` then say what it does to a link-local source leaving another way).
    """

    what: str
    asa: DropReason
    linux: DropReason | None
    to_box: bool = False
    icmp: tuple[int, int] | None = None
    # Linux routes it and ip6_forward decides (a link-local address): see the module docstring.
    linux_routed: bool = False


class Classifier:
    """The address checks of one policy (its connected networks' directed broadcasts)."""

    __slots__ = ("_broadcasts", "_v4_networks")

    def __init__(self, policy: Policy) -> None:
        self._broadcasts: set[int] = set()
        self._v4_networks: set[int] = set()
        for itf in policy.interfaces.values():
            for addr in itf.ipv4:
                net = addr.network
                if net.prefixlen <= 30:  # /31 and /32 have no broadcast address (RFC 3021)
                    self._broadcasts.add(int(net.broadcast_address))
                    self._v4_networks.add(int(net.network_address))

    def is_broadcast(self, version: int, dst: int) -> bool:
        """Limited broadcast or the directed broadcast of a connected network."""
        return version == 4 and (dst == _V4_LIMITED_BROADCAST or dst in self._broadcasts)

    def check(self, version: int, src: int, dst: int) -> Special | None:
        """What a router does with a through packet from ``src`` to ``dst``, when it is not ordinary."""
        if version == 4:
            return self._check4(src, dst)
        return self._check6(src, dst)

    def _check4(self, src: int, dst: int) -> Special | None:
        a = addr_to_str
        asa = DropReason.SP_SECURITY_FAILED
        if _in(src, _V4_MULTICAST, 32) or _in(src, _V4_CLASS_E, 32):
            return Special(f"source {a(4, src)} is not a host address", asa, DropReason.MARTIAN_SOURCE)
        if _in(src, _V4_ZERONET, 32):
            # 0.0.0.0 to 255.255.255.255 (DHCP) is for the box itself on Linux (brd_input).
            if src == 0 and dst == _V4_LIMITED_BROADCAST:
                return Special(f"broadcast from {a(4, src)}", asa, None, to_box=True)
            return Special(f"source {a(4, src)} is in 0.0.0.0/8", asa, DropReason.MARTIAN_SOURCE)
        if _in(src, _V4_LOOPBACK, 32):
            return Special(f"loopback source {a(4, src)}", asa, DropReason.MARTIAN_SOURCE)
        if _in(dst, _V4_MULTICAST, 32):
            return Special(
                f"multicast destination {a(4, dst)} (multicast routing is not modelled)",
                DropReason.NO_MCAST_INTERFACE,
                DropReason.MCAST_NOT_FORWARDED,
            )
        if dst == _V4_LIMITED_BROADCAST:
            return Special("limited broadcast 255.255.255.255", asa, None, to_box=True)
        if dst in self._broadcasts:
            return Special(f"directed broadcast {a(4, dst)} of a connected network", asa, None, to_box=True)
        if _in(dst, _V4_ZERONET, 32) or _in(dst, _V4_CLASS_E, 32):
            return Special(
                f"destination {a(4, dst)} is not a host address", asa, DropReason.MARTIAN_DESTINATION
            )
        if _in(dst, _V4_LOOPBACK, 32):
            return Special(f"loopback destination {a(4, dst)}", asa, DropReason.MARTIAN_DESTINATION)
        return None

    def _check6(self, src: int, dst: int) -> Special | None:
        a = addr_to_str
        asa = DropReason.IPV6_SP_SECURITY_FAILED
        if _in(src, _V6_MULTICAST, 128) or src == _V6_LOOPBACK:
            return Special(f"source {a(6, src)} is not a host address", asa, DropReason.IPV6_ADDR_ERROR)
        if dst in (_V6_LOOPBACK, _V6_UNSPECIFIED):
            what = f"destination {a(6, dst)} is not a node's address"
            return Special(what, asa, DropReason.IPV6_ADDR_ERROR)
        if _in(dst, _V6_MULTICAST, 128):
            return Special(
                f"multicast destination {a(6, dst)} (multicast routing is not modelled)",
                asa,
                DropReason.MCAST_NOT_FORWARDED,
            )
        if src == _V6_UNSPECIFIED:
            return Special("unspecified source ::", asa, DropReason.IPV6_ADDR_ERROR)
        if _in(src, _V6_LINK_LOCAL, 128):
            if _in(dst, _V6_LINK_LOCAL, 128):
                return Special(f"link-local source {a(6, src)} and destination", asa, None, linux_routed=True)
            return Special(
                f"link-local source {a(6, src)}",
                asa,
                DropReason.IPV6_BEYOND_SCOPE,
                icmp=(1, 2),
                linux_routed=True,
            )
        if _in(dst, _V6_LINK_LOCAL, 128):
            return Special(f"link-local destination {a(6, dst)}", asa, None, linux_routed=True)
        return None


def icmp_error_forbidden(
    version: int,
    src: int,
    dst: int,
    *,
    proto: int,
    icmp_error: bool,
    frag_offset: int = 0,
    broadcast: bool = False,
    error: tuple[int, int] | None = None,
) -> str | None:
    """Why no ICMP error may be sent about this packet, or None when one may.

    ``icmp_error``: the packet is itself an ICMP error; ``broadcast``: its destination is a broadcast
    address (``Classifier.is_broadcast``); ``error``: the (type, code) about to be sent (ICMPv6 allows
    packet too big and parameter problem code 2 about multicast packets).
    """
    if icmp_error and proto in (PROTO_ICMP, PROTO_ICMPV6):
        return "the packet is an ICMP error"
    if version == 4:
        if _in(dst, _V4_MULTICAST, 32) or broadcast or dst == _V4_LIMITED_BROADCAST:
            return "the packet was sent to a multicast or broadcast address"
        if frag_offset:
            return "the packet is a non-first fragment"
        if (
            _in(src, _V4_ZERONET, 32)
            or _in(src, _V4_LOOPBACK, 32)
            or _in(src, _V4_MULTICAST, 32)
            or _in(src, _V4_CLASS_E, 32)
        ):
            return "the packet's source does not name one host"
        return None
    if _in(dst, _V6_MULTICAST, 128) and error not in _V6_MULTICAST_EXCEPTIONS:
        return "the packet was sent to a multicast address"
    if src == _V6_UNSPECIFIED or _in(src, _V6_MULTICAST, 128):
        return "the packet's source does not name one node"
    return None
