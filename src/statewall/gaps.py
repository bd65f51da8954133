"""Which configured-but-not-modelled features (``Policy.unmodelled``) a forwarded packet runs into.

Owns the question "would a real box have done something here that statewall does not?" for one packet
the engine forwarded, so that packet-tracer and replay can say so instead of presenting the packet's
fate as the box's. One kind of record carries enough to be matched per packet:

- a VPN entry with its traffic selector and interface (ASA ``crypto map NAME SEQ match address ACL`` on a
  map applied with ``crypto map NAME interface IFACE``): a packet leaving through that interface that
  the access list permits would be encrypted and sent to the peer. IPsec access lists match the
  addresses as they leave the box (mapped, after NAT; Cisco ASA configuration guide, "Real IP addresses
  in ACLs": IPsec ACLs keep the mapped addresses);

And, for packet-tracer (one packet, so the cost of resolving the service policies does not matter), the
inspections of the ASA's service policies that apply to the packet's flow and that statewall does not
implement (``inspections``).

Responder data on an embryonic connection (``EMBRYONIC_DATA``): what an ASA does with a segment carrying
data from the responder before the initiator's ACK completed the three-way handshake has no Cisco source
statewall could find (docs/asa.md); statewall's tracker forwards it when it is in window, as
netfilter's does. A segment without SYN is meant (a SYN-ACK's data is the tcp-map's ``synack-data``,
modelled). Not a configuration feature, so ``statewall check`` has nothing to warn about and
packet-tracer (it traces a flow's first packet) never meets it; each such segment a replay of an ASA
configuration forwarded is counted (``GapMatcher.embryonic_data``, given the replay's engine).

A through packet whose source is one of the ASA's own interface addresses (``OWN_SOURCE``): Linux drops
it as a martian source (``ip-local-source``, the iptables dialect); what an ASA does with it has no
Cisco source statewall could find (docs/asa.md), so the ASA dialect forwards it as its access rules and
security levels allow, and a replay of an ASA configuration counts each such packet it forwarded.

Other records (time ranges, the DNS inspection map's unmodelled lines) are named by ``statewall check``
and ``show service-policy``; they are not matched per packet here. (ICMP without ``inspect icmp`` is
modelled, not a gap: the ASA's stages keep no session for it, ``statewall.engine.asa.stateless``.)
"""

from __future__ import annotations

from .acl import CompiledMatch
from .conntrack import REPLY
from .engine.state import asa_version_before
from .inspect import MODELLED_ENGINES
from .packet import DecodeError, decode
from .policy import BUILTIN, Origin, Policy, Unmodelled
from .tcptrack import TcpState

EMBRYONIC_DATA = "responder data on an embryonic connection"
_EMBRYONIC_ACTION = (
    "unknown: no Cisco source says whether an ASA forwards data from the responder before the "
    "initiator's ACK completes the handshake (statewall forwards it when it is in window)"
)
OWN_SOURCE = "a source that is the ASA's own interface address"
_OWN_SOURCE_ACTION = (
    "unknown: no Cisco source says what an ASA does with a through packet from one of its own interface "
    "addresses (statewall forwards it as the access rules and security levels allow)"
)
# The tracker's states before the three-way handshake completed (SYN_SENT2: a simultaneous open).
_EMBRYONIC = frozenset({TcpState.NONE, TcpState.SYN_SENT, TcpState.SYN_RECV, TcpState.SYN_SENT2})


class GapMatcher:
    """The per-packet checkable ``Unmodelled`` records of a policy, compiled once."""

    def __init__(self, policy: Policy, fw=None) -> None:
        self.vpn: list[tuple[Unmodelled, list[tuple[bool, CompiledMatch]]]] = []
        for u in policy.unmodelled:
            if u.acl and u.interface and u.feature.startswith("VPN"):
                acl = policy.access_lists.get(u.acl)
                if acl is not None:
                    rules = [
                        (r.action == "permit", CompiledMatch(r.match)) for r in acl.rules if not r.inactive
                    ]
                    self.vpn.append((u, rules))
        # Responder data on an embryonic connection: the replay's engine, when it runs the ASA's
        # stages for an ASA configuration (its tracker is the one that forwards such data).
        box = getattr(fw, "box", None)
        asa = policy.dialect == "asa" and box is not None and box.name == "asa" and hasattr(fw, "conns")
        self.fw = fw if asa else None
        where = Origin(policy.source_file or "<config>", 0, "")
        self._embryonic = Unmodelled(EMBRYONIC_DATA, _EMBRYONIC_ACTION, where, 0)
        self._own_source = Unmodelled(OWN_SOURCE, _OWN_SOURCE_ACTION, where, 0)
        # The ASA's own addresses as the bytes of a source address (IPv4 and IPv6).
        self._own: set[bytes] = set()
        if self.fw is not None:
            for itf in policy.interfaces.values():
                self._own.update(a.ip.packed for a in (*itf.ipv4, *itf.ipv6))
        self.active = bool(self.vpn) or self.fw is not None

    def forwarded(self, in_iface: str, packets: list, packet_in: bytes | bytearray = b"") -> list:
        """The records a packet that arrived on ``in_iface`` (as ``packet_in``) and left as ``packets``
        (the engine's answer) runs into: ``applicable``, for its first packet out, and responder data
        on an embryonic connection (``embryonic_data``). Both replays count these."""
        if not packets:
            return []
        out_iface, packet_out = packets[0]
        found = self.applicable(in_iface, out_iface, packet_out)
        if self.fw is not None:
            if self.embryonic_data(packet_in):
                found.append(self._embryonic)
            if self.own_source(packet_in):
                found.append(self._own_source)
        return found

    def own_source_gap(self, packet_in: bytes | bytearray) -> Unmodelled | None:
        """The record a packet from one of the ASA's own interface addresses runs into (packet-tracer
        names it beside an allowed trace), None for any other packet."""
        return self._own_source if self.fw is not None and self.own_source(packet_in) else None

    def own_source(self, packet_in: bytes | bytearray) -> bool:
        """Is the forwarded ``packet_in``'s source one of the ASA's own interface addresses?"""
        if len(packet_in) < 20:
            return False
        if packet_in[0] >> 4 == 4:
            return bytes(packet_in[12:16]) in self._own
        return len(packet_in) >= 40 and bytes(packet_in[8:24]) in self._own

    def embryonic_data(self, packet_in: bytes | bytearray) -> bool:
        """Did the forwarded ``packet_in`` (as it arrived) carry data from the responder, without SYN, on
        a connection whose handshake had not completed (the tracker's state after it)? Cheap for other
        packets: an IPv4 one is read from its header; only IPv6 TCP is decoded."""
        n = len(packet_in)
        if n < 40:
            return False
        version = packet_in[0] >> 4
        if version == 4:
            ihl = (packet_in[0] & 0x0F) * 4
            if packet_in[9] != 6 or n < ihl + 20 or packet_in[ihl + 13] & 0x02:
                return False
            total = (packet_in[2] << 8) | packet_in[3]
            if total - ihl - (packet_in[ihl + 12] >> 4) * 4 <= 0:
                return False
        elif version != 6:
            return False
        try:
            pkt = decode(bytearray(packet_in))
        except DecodeError:
            return False
        if pkt.proto != 6 or pkt.flags & 0x02 or not pkt.payload_len:
            return False
        # peek: read only; a connection its compiled record holds alone is not given its halves again.
        half = self.fw.conns.by_key.peek((pkt.version, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport))
        if half is None or half.dir != REPLY:
            return False
        trk = half.conn.tcp
        return trk is not None and trk.state in _EMBRYONIC

    def applicable(
        self, in_iface: str, out_iface: str | None, packet_out: bytes | bytearray | None
    ) -> list[Unmodelled]:
        """The records a packet received on ``in_iface`` and sent on ``out_iface`` (as ``packet_out``)
        runs into."""
        found: list[Unmodelled] = []
        if not self.vpn or out_iface is None or packet_out is None:
            return found
        try:
            pkt = decode(bytearray(packet_out))
        except DecodeError:
            return found
        fields = (
            pkt.version,
            pkt.proto,
            pkt.src,
            pkt.sport,
            pkt.dst,
            pkt.dport,
            pkt.icmp_type,
            pkt.icmp_code,
        )
        for u, rules in self.vpn:
            if u.interface != out_iface:
                continue
            for permit, match in rules:
                if match.matches(*fields):
                    if permit:
                        found.append(u)
                    break
        return found


def inspections(
    policy: Policy,
    in_iface: str,
    packet_in: bytes | bytearray,
    out_iface: str | None,
    packet_out: bytes | bytearray | None,
) -> list[Unmodelled]:
    """The inspections the service policies apply to this packet's flow that statewall does not
    implement, as records (the configuration line, or the factory default policy, as origin)."""
    if policy.dialect != "asa" or out_iface is None or packet_out is None:
        return []
    from .mpf import ServicePolicies

    try:
        first = decode(bytearray(packet_in))
        last = decode(bytearray(packet_out))
    except DecodeError:
        return []
    # The class-map access lists see the destination as it arrived before ASA 8.3, the real one after.
    to = first if asa_version_before(policy.version, 8, 3) else last
    eff = ServicePolicies(policy).resolve(
        in_iface, out_iface, first.version, first.proto, first.src, first.sport, to.dst, to.dport,
        first.icmp_type, first.icmp_code, count=False,
    )  # fmt: skip
    # The line of the class's own `inspect` command: one inspection may be written in several classes.
    written = {
        (u.feature, u.origin.file, u.origin.line): u
        for u in policy.unmodelled
        if u.feature.startswith("inspect ")
    }
    by_feature = {key[0]: u for key, u in written.items()}
    out: list[Unmodelled] = []
    for ins, _use in eff.inspects:
        if ins.engine in MODELLED_ENGINES:
            continue
        feature = f"inspect {ins.engine}"
        known = written.get((feature, ins.origin.file, ins.origin.line)) or by_feature.get(feature)
        if known is not None:
            out.append(known)
        else:
            origin = ins.origin
            if origin is BUILTIN:
                origin = type(origin)("<factory default>", 0, f"policy-map global_policy / {feature}")
            out.append(Unmodelled(feature, f"{feature} traffic (application inspection)", origin))
    return out
