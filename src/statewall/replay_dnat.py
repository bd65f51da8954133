"""Replay (``--ingress auto``): a server behind an iptables DNAT, captured on either side of the box,
carried into the connection's coordinates. Owned by ``statewall.replay``; never used on a live packet.

A port forward (``-A PREROUTING -i eth0 -p tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80``)
gives one connection two faces: the client talks to the published address and port (the box's own
address, 8080), the server answers from its real ones (10.0.0.5:80). A capture taken on one link holds
only one face, and read as it is it does not cross the box:

- on the published side, the server's replies come from the box's own address and port 8080; live
  they left the server from 10.0.0.5:80 and arrived on the server's side, where the kernel's
  conntrack turned them back (nf_nat_packet on the reply direction, net/netfilter/nf_nat_core.c);
- on the server's side, the client's packets are addressed to 10.0.0.5:80; live they arrived on the
  published side addressed to the box, and PREROUTING's DNAT rewrote them (nf_nat_ipv4_fn at
  NF_INET_PRE_ROUTING, net/netfilter/nf_nat_proto.c).

The inversion is sound only where the rule's translation is one address and one port and its
conditions can be read without running the ruleset: a rule of the ``nat`` table's built-in PREROUTING
chain whose matches are protocol, addresses, ports and input interface (no other module, no state), with
every rule before it in that chain equally readable (an earlier one that would take the packet first
stops the carrying). An address range, a port range mapped onto one port, an nft map, a REDIRECT,
NETMAP, a rule behind ``-j CHAIN`` or with another match module is not carried: its rule is named in
the replay's summary (``dnat_not_carried``). The published address of a client's packet captured on
the server's side is the rule's ``-d`` when that is one address, else the input interface's one address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .packet import PROTO_TCP, PROTO_UDP, DecodeError, decode
from .policy import Match, NfRule, Policy
from .routing import RouteTable

_READABLE_MODULES = frozenset({"tcp", "udp"})


@dataclass(frozen=True, slots=True)
class _Forward:
    rule: NfRule
    index: int  # position in PREROUTING
    version: int
    proto: int
    real: int
    real_port: int | None  # None: the port is kept
    published_port: int | None  # the one --dport the rule takes (None: any)
    published: int | None  # the address a client used (rule's -d, else the interface's), if one
    in_iface: str | None  # logical interface of -i


def _readable(rule: NfRule) -> bool:
    m = rule.match
    return (
        not rule.matches_extra
        and set(rule.modules) <= _READABLE_MODULES
        and not rule.statements
        and rule.fragment is None
        and not rule.goto
        and not m.ctstates
        and m.tcp_flags is None
        and m.icmp_type is None
        and m.out_interface is None
    )


def _iface_ok(m: Match, dev: str) -> bool:
    if m.in_interface is None:
        return True
    name = m.in_interface
    hit = dev.startswith(name[:-1]) if name.endswith("+") else dev == name
    return hit != m.in_interface_negate


def _ports_ok(ports, negate: bool, port: int) -> bool:
    if not ports:
        return True
    return any(p.matches(port) for p in ports) != negate


def _addrs_ok(nets, negate: bool, version: int, addr: int) -> bool:
    if not nets:
        return True
    ip = ipaddress.ip_address(addr) if version == 6 or addr > 0xFFFFFFFF else ipaddress.IPv4Address(addr)
    return any(ip.version == n.version and ip in n for n in nets) != negate


def _matches(
    m: Match, version: int, proto: int, src: int, sport: int, dst: int, dport: int, dev: str
) -> bool:
    if m.family is not None and m.family != version:
        return False
    if m.protocol is not None and (m.protocol == proto) == m.protocol_negate:
        return False
    return (
        _iface_ok(m, dev)
        and _addrs_ok(m.sources, m.source_negate, version, src)
        and _addrs_ok(m.destinations, m.destination_negate, version, dst)
        and _ports_ok(m.source_ports, m.source_ports_negate, sport)
        and _ports_ok(m.destination_ports, m.destination_ports_negate, dport)
    )


class DnatCarry:
    """The fixed DNAT rules of a policy, inverted for replay; ``not_carried`` names the others."""

    def __init__(self, policy: Policy) -> None:
        self.routes = RouteTable(policy)
        self.devices = {name: itf.hardware or name for name, itf in policy.interfaces.items()}
        by_dev = {dev: name for name, dev in self.devices.items()}
        self.chains: dict[int, list[NfRule]] = {}
        self.forwards: list[_Forward] = []
        self.not_carried: list[str] = []
        self.carried = 0
        # Every DNAT-like rule, for the question a capture on the server's side asks: which rule
        # could have sent a client to this real address and port? More than one: not carried.
        self.producers: list[NfRule] = []
        nft_nat = False
        for version, tables in ((4, policy.netfilter), (6, policy.ip6_netfilter)):
            for tname, table in (tables or {}).items():
                for chain in table.chains.values():
                    nft_dnat = chain.kind == "nat" and chain.hook in ("PREROUTING", "OUTPUT")
                    for rule in chain.rules:
                        if rule.target in ("DNAT", "NETMAP"):
                            self.producers.append(rule)
                        if rule.target in ("DNAT", "REDIRECT", "NETMAP") and (
                            tname != "nat" or chain.name != "PREROUTING" or table.family is not None
                        ):
                            self._name(rule, "not in iptables' nat PREROUTING")
                        elif nft_dnat and rule.target in ("DNAT", "REDIRECT", "NETMAP"):
                            self._name(rule, "an nftables chain")
                    if chain.kind == "nat" and chain.hook == "PREROUTING" and chain.rules:
                        nft_nat = True
                if tname != "nat" or table.family is not None or "PREROUTING" not in table.chains:
                    continue
                rules = table.chains["PREROUTING"].rules
                self.chains[version] = rules
                blocked = False
                for i, rule in enumerate(rules):
                    if rule.target not in ("DNAT", "REDIRECT", "NETMAP"):
                        if not _readable(rule) and rule.target != "LOG":
                            blocked = True  # what follows may never see the packet: not readable
                        continue
                    why = self._why_not(rule, blocked)
                    if why is not None:
                        self._name(rule, why)
                        continue
                    fwd = self._forward(rule, i, version, by_dev)
                    if fwd is None:
                        self._name(rule, "its published address is not one address")
                    else:
                        self.forwards.append(fwd)

        if nft_nat:
            # An nftables nat chain at prerouting may translate the packet first: nothing is read.
            for fwd in self.forwards:
                self._name(fwd.rule, "beside an nftables nat chain")
            self.forwards = []

    def _name(self, rule: NfRule, why: str) -> None:
        where = f"{rule.origin.file}:{rule.origin.line}" if rule.origin.line else rule.origin.file
        self.not_carried.append(f"{where}: {rule.origin.text or rule.target} ({why})")

    @staticmethod
    def _why_not(rule: NfRule, blocked: bool) -> str | None:
        if rule.target != "DNAT":
            return f"{rule.target} is not a fixed translation"
        if blocked:
            return "after a rule replay cannot read"
        if not _readable(rule):
            return "a condition replay cannot read"
        a = rule.target_args
        if "map" in a or not a.get("addresses"):
            return "a map"
        lo, hi = a["addresses"]
        if lo != hi:
            return "an address range"
        ports = a.get("ports")
        if ports is not None and ports[0] != ports[1]:
            return "a port range"
        m = rule.match
        if m.protocol not in (PROTO_TCP, PROTO_UDP) or m.protocol_negate:
            return "not one of TCP or UDP"
        if ports is not None and _one_port(m) is None:
            return "several published ports onto one"
        return None

    def _forward(self, rule: NfRule, index: int, version: int, by_dev: dict[str, str]) -> _Forward | None:
        m, a = rule.match, rule.target_args
        ports = a.get("ports")
        in_iface = None
        if m.in_interface is not None and not m.in_interface_negate and not m.in_interface.endswith("+"):
            in_iface = by_dev.get(m.in_interface, m.in_interface if m.in_interface in self.devices else None)
        published = None
        if len(m.destinations) == 1 and not m.destination_negate and m.destinations[0].num_addresses == 1:
            published = int(m.destinations[0].network_address)
        elif not m.destinations and in_iface is not None:
            published = self.routes.interface_address(in_iface, version)
        return _Forward(
            rule,
            index,
            version,
            m.protocol,
            int(a["addresses"][0]),
            ports[0] if ports is not None else None,
            _one_port(m),
            published,
            in_iface,
        )

    def _first(self, fwd: _Forward, src: int, sport: int, dst: int, dport: int, dev: str) -> bool:
        """Would PREROUTING give the client's first packet (src:sport -> dst:dport on ``dev``) to
        ``fwd``'s rule, no earlier rule taking it?"""
        rules = self.chains[fwd.version]
        for rule in rules[: fwd.index]:
            # Any rule that decides or jumps (a user chain: taken as deciding) and matches first.
            if rule.target not in ("", "LOG") and _matches(
                rule.match, fwd.version, fwd.proto, src, sport, dst, dport, dev
            ):
                return False
        return _matches(fwd.rule.match, fwd.version, fwd.proto, src, sport, dst, dport, dev)

    def carry(self, data: bytes | bytearray, iface: str, known) -> tuple[str, bytes | bytearray]:
        """(ingress, packet) of a captured packet read with ``--ingress auto`` on ``iface`` (the
        interface its source routes through): a reply from a DNAT'd server captured on the published
        side, or a client's packet captured on the server's side, as it arrived live; anything else as
        it is. ``known(pkt)``: the packet belongs to a connection the engine holds (left alone)."""
        if not self.forwards:
            return iface, data
        try:
            pkt = decode(bytearray(data))
        except DecodeError:
            return iface, data
        if pkt.proto not in (PROTO_TCP, PROTO_UDP) or pkt.frag_offset or not pkt.has_l4 or known(pkt):
            return iface, data
        routes = self.routes
        v = pkt.version
        for fwd in self.forwards:
            if fwd.version != v or fwd.proto != pkt.proto:
                continue
            real_route = routes.lookup(v, fwd.real)
            if real_route is None:
                continue
            dev = self.devices.get(fwd.in_iface or iface, iface)
            # The server's reply on the published side: from the published address (the box's own,
            # or the rule's -d), to a client behind the rule's input interface.
            client = routes.lookup(v, pkt.dst)
            published_src = routes.local_interface(v, pkt.src) is not None or pkt.src == fwd.published
            reply = pkt.proto != PROTO_TCP or pkt.flags & 0x12 != 0x02  # never a bare SYN
            if (
                published_src
                and reply
                and client is not None
                and client.interface != real_route.interface
                and (fwd.in_iface is None or client.interface == fwd.in_iface)
                and (fwd.real_port is None or fwd.published_port == pkt.sport)
                and self._first(fwd, pkt.dst, pkt.dport, pkt.src, pkt.sport, self.devices[client.interface])
            ):
                buf = bytearray(data)
                out = decode(buf)
                out.set_src(fwd.real)
                if fwd.real_port is not None and fwd.real_port != out.sport:
                    out.set_sport(fwd.real_port)
                self.carried += 1
                return real_route.interface, buf
            # A client's packet on the server's side: to the real address and port, from a client
            # behind the published side (auto ingress already puts it there).
            if (
                pkt.dst == fwd.real
                and (fwd.real_port is None or pkt.dport == fwd.real_port)
                and fwd.published is not None
                and iface != real_route.interface
                and (fwd.in_iface is None or iface == fwd.in_iface)
            ):
                dport = fwd.published_port if fwd.real_port is not None else pkt.dport
                if dport is None or not self._first(fwd, pkt.src, pkt.sport, fwd.published, dport, dev):
                    continue
                if any(r is not fwd.rule and _may_produce(r, fwd.real, pkt.dport) for r in self.producers):
                    continue  # another rule may have sent the client here: which one is unknown
                buf = bytearray(data)
                out = decode(buf)
                out.set_dst(fwd.published)
                if dport != out.dport:
                    out.set_dport(dport)
                self.carried += 1
                return iface, buf
        return iface, data


def _may_produce(rule: NfRule, addr: int, port: int) -> bool:
    """Could ``rule``'s translation send a connection to ``addr``:``port``? (A map or NETMAP: taken
    as yes.)"""
    a = rule.target_args
    if rule.target != "DNAT" or "map" in a or not a.get("addresses"):
        return True
    lo, hi = a["addresses"]
    if not int(lo) <= addr <= int(hi):
        return False
    ports = a.get("ports")
    return ports is None or ports[0] <= port <= ports[1]


def _one_port(m: Match) -> int | None:
    """The one destination port a rule matches (``--dport N``), else None."""
    ports = m.destination_ports
    if len(ports) == 1 and not m.destination_ports_negate:
        p = ports[0]
        if p.op == "eq" or (p.op == "range" and (p.high is None or p.high == p.low)):
            return p.low
    return None
